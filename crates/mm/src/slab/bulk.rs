//! The SLUB bulk interface (`mm/slub.c` of Linux 6.6): `kmem_cache_alloc_bulk`,
//! `kmem_cache_free_bulk` and `kfree_bulk`.
//!
//! Allocation follows `__kmem_cache_alloc_bulk()`: with interrupts disabled, objects are
//! taken straight off this CPU's freelist (one `ALLOC_FASTPATH` each, one `tid` step for
//! the batch); when the freelist runs dry, `___slab_alloc()` refills it (its
//! `ALLOC_SLOWPATH` and the rest counted there). All or nothing: if an object cannot be
//! had, what was taken is freed with `kmem_cache_free_bulk` and the call fails (the
//! kernel returns 0; here the error says why). `slab_post_alloc_hook()`'s initialisation
//! (`init_on_alloc`, `__GFP_ZERO`, the free-pointer wipe of `init_on_free`) runs over the
//! batch once interrupts are on again. Caches with `slab_debug` take the single debug path
//! for each object, as `___slab_alloc()` does for them in the kernel (their CPU slab never
//! has a lockless freelist).
//!
//! Freeing follows `kmem_cache_free_bulk()`: `build_detached_freelist()` gathers the
//! objects of one slab from the end of the array (looking at most three foreign objects
//! ahead, reordering the array as the kernel does), and one `slab_free()` gives the whole
//! detached freelist back: onto the CPU freelist with one exchange if it is the CPU slab
//! (one `FREE_FASTPATH`), else `__slab_free()` with the count (one `FREE_SLOWPATH`).
//!
//! Every pointer is checked as the single free checks it, before anything is linked: not
//! a slab object, the wrong cache (`cache_from_obj: Wrong slab cache`), not the start of an
//! object (`Invalid pointer` with `slab_debug`), already free, or twice in the array (both
//! the hardened freelist's `BUG_ON(object == fp)`, `kernel BUG at mm/slub.c`). A refused
//! pointer is reported and left out; the others are freed, and the first error is returned.
//! `init_on_free` wipes each object, as `slab_free_freelist_hook()` does.
//!
//! With per-CPU sheaves ([`crate::slab::sheaf`], `--slab-percpu sheaves`) both follow
//! Linux 6.18 instead: `kmem_cache_alloc_bulk_noprof()` takes what `alloc_from_pcs_bulk()`
//! can give, then `__kmem_cache_alloc_bulk()` the rest (on failure everything goes
//! straight back to the slabs through `__kmem_cache_free_bulk()`), and
//! `kmem_cache_free_bulk()` of a cache with sheaves runs `free_to_pcs_bulk()`: the checks
//! and reports of the single free to the sheaves (not a slab object, the wrong cache, not
//! the start of an object; a refused pointer replaced by the array's last, as its
//! `slab_free_hook()` loop does), the `init_on_free` wipe, then the sheaves and, for what
//! they cannot take, `__kmem_cache_free_bulk()` (detached freelists without the hooks).
//! Like 6.18's `free_to_pcs()` and `free_to_pcs_bulk()`, it does not look for double
//! frees: an object named twice, or freed already, goes into the sheaves again (the
//! checker, [`Mm::check`], reports an object twice in the sheaves). `kfree_bulk()` never
//! uses sheaves (its cache is NULL), as in 6.18.
//!
//! Tracing: Linux 6.6 emits no `kmem_cache_alloc` / `kmem_cache_free` event per object on
//! the bulk paths (only the single entry points call `trace_kmem_cache_alloc` and
//! `trace_kmem_cache_free`); kmemlab's slab paths emit none either.

use core::sync::atomic::Ordering::Relaxed;

use crate::addr::{Pfn, VirtAddr};
use crate::gfp::Gfp;
use crate::mm_types::Page;
use crate::platform::Platform;
use crate::slab::cache::{KmemCache, KmemCacheRef};
use crate::slab::stats::StatItem;
use crate::slab::{CallSite, SlabError};
use crate::Mm;

/// How many foreign objects `build_detached_freelist()` looks past (`lookahead = 3`).
const LOOKAHEAD: usize = 3;

impl<P: Platform> Mm<P> {
    /// `kmem_cache_alloc_bulk(cache, gfp, size, p)`: fill all of `p` with objects of the
    /// cache, or none. Returns `p.len()`; on failure every object taken is freed again, `p`
    /// is zeroed and the error is returned (the kernel returns 0).
    ///
    /// ```
    /// use kmemlab_mm::slab::SlabFlags;
    /// use kmemlab_mm::{Gfp, VirtAddr};
    /// use kmemlab_sim::{Machine, MachineConfig};
    ///
    /// let m = Machine::new(MachineConfig { ram: 64 << 20, cpus: 1, ..Default::default() }).unwrap();
    /// m.run(|mm| {
    ///     let c = mm.kmem_cache_create("demo", 96, 0, SlabFlags::empty(), None).unwrap();
    ///     let mut objs = [VirtAddr(0); 32];
    ///     assert_eq!(mm.kmem_cache_alloc_bulk(c, Gfp::GFP_KERNEL, &mut objs), Ok(32));
    ///     mm.kmem_cache_free_bulk(c, &mut objs).unwrap();
    ///     mm.kmem_cache_destroy(c).unwrap();
    /// });
    /// ```
    #[track_caller]
    pub fn kmem_cache_alloc_bulk(
        &self,
        r: KmemCacheRef,
        gfp: Gfp,
        p: &mut [VirtAddr],
    ) -> Result<usize, SlabError> {
        self.kmem_cache_alloc_bulk_caller(r, gfp, p, CallSite::caller())
    }

    /// [`Mm::kmem_cache_alloc_bulk`] recording `caller` as the owner (with tracking).
    pub fn kmem_cache_alloc_bulk_caller(
        &self,
        r: KmemCacheRef,
        gfp: Gfp,
        p: &mut [VirtAddr],
        caller: CallSite,
    ) -> Result<usize, SlabError> {
        self.refuse_boot_cache(r)?;
        let s = self.api_cache(r)?;
        if p.is_empty() {
            return Ok(0);
        }
        let cpu = self.platform.smp_processor_id();
        if gfp.allows_blocking() {
            // slab_pre_alloc_hook(): might_alloc().
            self.might_sleep_on(cpu)
                .map_err(|e| SlabError::Alloc(crate::PageAllocError::SleepInAtomic(e)))?;
        }
        let taken = if s.is_debug() {
            self.alloc_bulk_one_by_one(s, gfp, p, caller)
        } else if s.sheaf_capacity() != 0 {
            return self.alloc_bulk_with_sheaves(s, gfp, p, cpu);
        } else {
            self.__kmem_cache_alloc_bulk(s, gfp, p, cpu).and_then(|()| {
                self.bulk_post_alloc_init(s, gfp, p)
                    .map_err(|e| (p.len(), e))
            })
        };
        match taken {
            Ok(()) => Ok(p.len()),
            Err((taken, e)) => {
                // error: kmem_cache_free_bulk(s, i, p); return 0.
                let _ = self.free_bulk(Some(s), &mut p[..taken], caller);
                p.fill(VirtAddr(0));
                Err(e)
            }
        }
    }

    /// `kmem_cache_alloc_bulk_noprof()` of Linux 6.18 for a cache with sheaves: what
    /// `alloc_from_pcs_bulk()` can give, the rest from `__kmem_cache_alloc_bulk()`, then
    /// `slab_post_alloc_hook()` over the whole batch. On failure everything taken goes
    /// straight back to the slabs ("if we ran out of memory, don't bother with freeing
    /// back to the percpu sheaves, we have bigger problems"), `p` is zeroed and the error
    /// is returned (the kernel returns 0).
    fn alloc_bulk_with_sheaves(
        &self,
        s: &KmemCache,
        gfp: Gfp,
        p: &mut [VirtAddr],
        cpu: usize,
    ) -> Result<usize, SlabError> {
        let from_pcs = self.alloc_from_pcs_bulk(s, p, cpu);
        let i = from_pcs.allocated;
        let mut failed = from_pcs.error;
        let rest = if failed.is_none() && i < p.len() {
            self.__kmem_cache_alloc_bulk(s, gfp, &mut p[i..], cpu)
        } else {
            Ok(())
        };
        if let Err((j, e)) = rest {
            // __kmem_cache_alloc_bulk()'s error: label frees what it took.
            let _ = self.__kmem_cache_free_bulk(s, &mut p[i..i + j]);
            failed = Some(e);
        }
        if let Some(e) = failed {
            let _ = self.__kmem_cache_free_bulk(s, &mut p[..i]);
            p.fill(VirtAddr(0));
            return Err(e);
        }
        if let Err(e) = self.bulk_post_alloc_init(s, gfp, p) {
            let _ = self.__kmem_cache_free_bulk(s, p);
            p.fill(VirtAddr(0));
            return Err(e);
        }
        Ok(p.len())
    }

    /// `__kmem_cache_alloc_bulk()` for a cache without debugging: the CPU freelist drained
    /// with interrupts disabled, `___slab_alloc()` when it is empty. On failure, how many
    /// objects were taken (they are in `p[..taken]`) and why.
    pub(crate) fn __kmem_cache_alloc_bulk(
        &self,
        s: &KmemCache,
        gfp: Gfp,
        p: &mut [VirtAddr],
        cpu: usize,
    ) -> Result<(), (usize, SlabError)> {
        let c = self.cpu_slab_or_fault(s, cpu).map_err(|e| (0, e))?;
        let flags = self.platform.local_irq_save();
        for (i, slot) in p.iter_mut().enumerate() {
            let object = c.freelist.load(Relaxed);
            let slab = c.slab_pfn();
            let Some(slab) = slab.filter(|_| object != 0) else {
                // ___slab_alloc() may enable interrupts while it allocates a slab, so the
                // objects taken so far are accounted for by a tid step first.
                c.tid.store(self.next_tid(c.tid.load(Relaxed)), Relaxed);
                match self.__slab_alloc(s, gfp, c, flags) {
                    Ok(object) => *slot = VirtAddr(object),
                    Err(e) => {
                        self.platform.local_irq_restore(flags);
                        return Err((i, e));
                    }
                }
                continue;
            };
            match self.cpu_next_free(s, c, slab, object) {
                Ok(next) => c.freelist.store(next, Relaxed),
                Err(e) => {
                    self.platform.local_irq_restore(flags);
                    return Err((i, e));
                }
            }
            *slot = VirtAddr(object);
            self.stat(s, StatItem::AllocFastpath);
        }
        c.tid.store(self.next_tid(c.tid.load(Relaxed)), Relaxed);
        self.platform.local_irq_restore(flags);
        Ok(())
    }

    /// A debug cache: each object through the single debug path (which initialises it).
    fn alloc_bulk_one_by_one(
        &self,
        s: &KmemCache,
        gfp: Gfp,
        p: &mut [VirtAddr],
        caller: CallSite,
    ) -> Result<(), (usize, SlabError)> {
        for (i, slot) in p.iter_mut().enumerate() {
            match self.slab_alloc(s, gfp, caller, s.object_size()) {
                Ok(object) => *slot = VirtAddr(object),
                Err(e) => return Err((i, e)),
            }
        }
        Ok(())
    }

    /// `slab_post_alloc_hook()`'s initialisation of a batch from a cache without
    /// debugging: zeroed for `init_on_alloc` / `__GFP_ZERO`, else (with `init_on_free`) the
    /// free pointer left in each object wiped (`maybe_wipe_obj_freeptr()`).
    fn bulk_post_alloc_init(
        &self,
        s: &KmemCache,
        gfp: Gfp,
        p: &[VirtAddr],
    ) -> Result<(), SlabError> {
        if self.slab_want_init_on_alloc(gfp, s) {
            for object in p {
                self.slab_fill(object.0, 0, s.object_size() as u64)?;
            }
        } else if self.slab_want_init_on_free(s) {
            for object in p {
                self.store_word(object.0.wrapping_add(s.fp_offset() as u64), 0)?;
            }
        }
        Ok(())
    }

    /// `kmem_cache_free_bulk(cache, size, p)`: free every object of `p` to `cache`. The
    /// array is reordered (as the kernel's is). Pointers that the single
    /// [`Mm::kmem_cache_free`] would refuse are refused here with the same reports, and the
    /// rest are freed; the first refusal is the error.
    #[track_caller]
    pub fn kmem_cache_free_bulk(
        &self,
        r: KmemCacheRef,
        p: &mut [VirtAddr],
    ) -> Result<(), SlabError> {
        self.kmem_cache_free_bulk_caller(r, p, CallSite::caller())
    }

    /// [`Mm::kmem_cache_free_bulk`] recording `caller` as the freer (with tracking).
    pub fn kmem_cache_free_bulk_caller(
        &self,
        r: KmemCacheRef,
        p: &mut [VirtAddr],
        caller: CallSite,
    ) -> Result<(), SlabError> {
        self.refuse_boot_cache(r)?;
        let s = self.api_cache(r)?;
        self.free_bulk(Some(s), p, caller)
    }

    /// `kfree_bulk(size, p)`: `kmem_cache_free_bulk(NULL, ...)`, each object freed to the
    /// cache its slab names; what is not a slab object goes to `kfree` (large kmalloc
    /// blocks, NULL and `ZERO_SIZE_PTR`, and its refusals).
    #[track_caller]
    pub fn kfree_bulk(&self, p: &mut [VirtAddr]) -> Result<(), SlabError> {
        self.kfree_bulk_caller(p, CallSite::caller())
    }

    /// [`Mm::kfree_bulk`] recording `caller` as the freer (with tracking).
    pub fn kfree_bulk_caller(&self, p: &mut [VirtAddr], caller: CallSite) -> Result<(), SlabError> {
        self.free_bulk(None, p, caller)
    }

    /// The loop of `kmem_cache_free_bulk()`: one detached freelist at a time, from the end
    /// of the array.
    fn free_bulk(
        &self,
        s: Option<&KmemCache>,
        p: &mut [VirtAddr],
        caller: CallSite,
    ) -> Result<(), SlabError> {
        // "freeing to sheaves is so incompatible with the detached freelist so once we go
        // that way, we have to do everything differently" (6.18; never for kfree_bulk).
        if let Some(s) = s.filter(|s| s.sheaf_capacity() != 0 && !s.is_debug()) {
            return self.free_bulk_to_sheaves(s, p);
        }
        let mut result = Ok(());
        let mut size = p.len();
        while size > 0 {
            let (rest, freed) = self.free_detached_freelist(s, &mut p[..size], caller);
            if result.is_ok() {
                result = freed;
            }
            size = rest;
        }
        result
    }

    /// `build_detached_freelist()` and `slab_free()` of the freelist built: the last object
    /// of `p` and those of its slab found before three others are met are freed together.
    /// Returns how much of `p` is left (the objects freed or refused are moved past it).
    fn free_detached_freelist(
        &self,
        s: Option<&KmemCache>,
        p: &mut [VirtAddr],
        caller: CallSite,
    ) -> (usize, Result<(), SlabError>) {
        let size = p.len() - 1;
        let object = p[size];
        let Some((pfn, page)) = self.virt_to_slab(object) else {
            let freed = match s {
                // Handle kmalloc'ed objects (free_large_kmalloc(), NULL).
                None => self.kfree_caller(object, caller),
                Some(_) => Err(SlabError::NotSlabObject(
                    object,
                    crate::slab::Reason::NotInSlabBulkFree,
                )),
            };
            return (size, freed);
        };
        let cache = match s {
            Some(s) if page.slab_cache() != s.self_va.load(Relaxed) => {
                return (
                    size,
                    Err(self.wrong_cache(s, page.slab_cache(), pfn, object)),
                );
            }
            Some(s) => s,
            None => match self.cache_at(page.slab_cache()) {
                Ok(cache) => cache,
                Err(e) => return (size, Err(e)),
            },
        };
        let same = self.gather_slab_objects(p, pfn);
        let freed = self.free_slab_objects(cache, pfn, page, &mut p[same..], caller, s.is_none());
        (same, freed)
    }

    /// `build_detached_freelist()`'s search: the objects of the slab at `pfn` found before
    /// three others are met, gathered at the end of `p` (whose last object is in that
    /// slab, and stays last); returns where they start. The element each displaces moves
    /// to where it was, as in the kernel.
    fn gather_slab_objects(&self, p: &mut [VirtAddr], pfn: Pfn) -> usize {
        let mut size = p.len() - 1;
        let mut same = size;
        let mut lookahead = LOOKAHEAD;
        while size > 0 {
            size -= 1;
            if self.virt_to_slab(p[size]).map(|(other, _)| other) == Some(pfn) {
                same -= 1;
                p.swap(size, same);
                continue;
            }
            lookahead -= 1;
            if lookahead == 0 {
                break;
            }
        }
        same
    }

    /// `__kmem_cache_free_bulk()` (Linux 6.18): objects of `s` that passed the free hooks
    /// already (from the caller's array after `free_to_pcs_bulk()`'s checks, or taken by
    /// this bulk allocation) back to their slabs, one detached freelist per slab, without
    /// the hooks. Each is still confirmed to be an object of `s` before it is linked.
    pub(crate) fn __kmem_cache_free_bulk(
        &self,
        s: &KmemCache,
        p: &mut [VirtAddr],
    ) -> Result<(), SlabError> {
        self.free_bulk_without_hooks(s, p, crate::slab::Reason::SlabObjectCorrupted)
    }

    /// [`Mm::__kmem_cache_free_bulk`] of objects taken from a sheaf (`sheaf_flush_unused()`,
    /// `sheaf_flush_main()`): one that is no object of `s` is reported as the corrupted
    /// sheaf object it is.
    pub(crate) fn __kmem_cache_free_bulk_from_sheaf(
        &self,
        s: &KmemCache,
        p: &mut [VirtAddr],
    ) -> Result<(), SlabError> {
        self.free_bulk_without_hooks(s, p, crate::slab::Reason::SheafObjectCorrupted)
    }

    /// The loop of `__kmem_cache_free_bulk()`; `corrupted` names what a pointer that is no
    /// object of `s` is reported as.
    fn free_bulk_without_hooks(
        &self,
        s: &KmemCache,
        p: &mut [VirtAddr],
        corrupted: crate::slab::Reason,
    ) -> Result<(), SlabError> {
        let mut result = Ok(());
        let mut size = p.len();
        // Each round frees or drops at least the last object.
        while size > 0 {
            let object = p[size - 1];
            let Some(pfn) = self.sheaf_object_slab(s, object.0) else {
                size -= 1;
                crate::vmstat::VmEvents::add(&self.events().bug_slab, 1);
                let e = self.slab_fault(object.0, true, corrupted);
                result = result.and(Err(e));
                continue;
            };
            let same = self.gather_slab_objects(&mut p[..size], pfn);
            let group = &mut p[same..size];
            let kept =
                self.distinct_objects(s, pfn, group, |e| result = result.and(Err(e)), corrupted);
            let freed = self.free_detached_list(s, pfn, &group[..kept], false);
            result = result.and(freed);
            size = same;
        }
        result
    }

    /// `kmem_cache_free_bulk()` of Linux 6.18 for a cache with sheaves: the
    /// `slab_free_hook()` loop of `free_to_pcs_bulk()` (each pointer checked as the single
    /// free to the sheaves checks it; a refused one is reported and replaced by the
    /// array's last, `p[i] = p[--size]`), `init_on_free`'s wipe, then `free_to_pcs_bulk()`.
    /// The first refusal or corruption is the error.
    ///
    /// As in 6.18, nothing here looks for an object named twice, or freed already: like
    /// `free_to_pcs()` for a single free, `free_to_pcs_bulk()` copies the pointers into
    /// the main sheaf as they are, and such an object is then twice in the sheaves (the
    /// checker reports it). Only what goes on to the slabs (`__kmem_cache_free_bulk()`)
    /// is refused when it would be linked twice.
    fn free_bulk_to_sheaves(&self, s: &KmemCache, p: &mut [VirtAddr]) -> Result<(), SlabError> {
        let mut result = Ok(());
        let mut size = p.len();
        let init = self.slab_want_init_on_free(s);
        let mut i = 0;
        while i < size {
            match self.bulk_free_hook_check(s, p[i], init) {
                Ok(()) => i += 1,
                Err(e) => {
                    result = result.and(Err(e));
                    size -= 1;
                    p[i] = p[size];
                }
            }
        }
        let objects = &mut p[..size];
        if init {
            for object in objects.iter() {
                let wiped = self.slab_fill(object.0, 0, s.object_size() as u64);
                result = result.and(wiped);
            }
        }
        let freed = self.free_to_pcs_bulk(s, objects);
        result.and(freed)
    }

    /// The checks the single free to the sheaves makes of one pointer given to
    /// `kmem_cache_free_bulk(s, ...)`: a slab object, of `s` (else `cache_from_obj()`'s
    /// report), the start of an object; with `init` (`init_on_free`'s wipe to come), not
    /// free already by the cheap signs, as [`Mm::free_object`] refuses to wipe a free
    /// object (that would cut the freelist it is on).
    fn bulk_free_hook_check(
        &self,
        s: &KmemCache,
        object: VirtAddr,
        init: bool,
    ) -> Result<(), SlabError> {
        let Some((pfn, page)) = self.virt_to_slab(object) else {
            return Err(SlabError::NotSlabObject(
                object,
                crate::slab::Reason::NotInSlabBulkFree,
            ));
        };
        if page.slab_cache() != s.self_va.load(Relaxed) {
            return Err(self.wrong_cache(s, page.slab_cache(), pfn, object));
        }
        if self.object_index_in(s, page, pfn, object.0).is_none() {
            return Err(SlabError::NotSlabObject(
                object,
                crate::slab::Reason::IntoObject,
            ));
        }
        if init && self.looks_free(s, pfn, object.0) {
            return Err(self.naive_double_free(s, object.0));
        }
        Ok(())
    }

    /// Free `objects`, all in the slab at `pfn` of `s`: checked as the single free checks
    /// them, then given back as one detached freelist.
    fn free_slab_objects(
        &self,
        s: &KmemCache,
        pfn: Pfn,
        page: &Page,
        objects: &mut [VirtAddr],
        caller: CallSite,
        kfree: bool,
    ) -> Result<(), SlabError> {
        if kfree {
            for object in objects.iter() {
                self.debug_check_no_obj_freed_virt(*object, s.object_size() as u64);
            }
        }
        let mut result = Ok(());
        let mut keep = |r: Result<(), SlabError>| {
            if result.is_ok() {
                result = r;
            }
        };
        if s.is_debug() {
            // free_debug_processing() checks each object of the list; the debug path here
            // does it object by object.
            for object in objects.iter() {
                keep(self.free_object(
                    s,
                    pfn,
                    page,
                    *object,
                    caller,
                    self.platform.smp_processor_id(),
                ));
            }
            return result;
        }
        let valid = self.bulk_checked_objects(s, pfn, objects, &mut keep);
        let objects = &objects[..valid];
        let init = self.slab_want_init_on_free(s);
        keep(self.free_detached_list(s, pfn, objects, init));
        result
    }

    /// Link `objects` (distinct objects of the slab at `pfn`, checked) into one detached
    /// freelist, each wiped first with `init`, and give it back with `do_slab_free()`.
    fn free_detached_list(
        &self,
        s: &KmemCache,
        pfn: Pfn,
        objects: &[VirtAddr],
        init: bool,
    ) -> Result<(), SlabError> {
        let (Some(&head), Some(&tail)) = (objects.first(), objects.last()) else {
            return Ok(());
        };
        for (i, object) in objects.iter().enumerate() {
            if init {
                self.slab_fill(object.0, 0, s.object_size() as u64)?;
            }
            if let Some(next) = objects.get(i + 1) {
                self.set_freepointer(s, object.0, next.0)?;
            }
        }
        // At most the slab's objects, each once: below MAX_OBJS_PER_PAGE.
        self.do_slab_free(s, pfn, head.0, tail.0, objects.len() as u16)
    }

    /// The checks of the single free for each object of one slab (`object_index`, the
    /// double-free signs) and, since the array may name an object twice, duplicates; the
    /// objects that pass are moved to the front of `objects`, in their order, and counted.
    /// Each refusal is reported and handed to `refused`.
    fn bulk_checked_objects(
        &self,
        s: &KmemCache,
        pfn: Pfn,
        objects: &mut [VirtAddr],
        refused: &mut impl FnMut(Result<(), SlabError>),
    ) -> usize {
        let mut valid = 0;
        for i in 0..objects.len() {
            let object = objects[i];
            if self.object_index(s, pfn, object.0).is_none() {
                if s.is_debug() {
                    self.slab_err_invalid_pointer(s, pfn, object.0);
                }
                refused(Err(SlabError::NotSlabObject(
                    object,
                    crate::slab::Reason::IntoObject,
                )));
                continue;
            }
            objects[valid] = object;
            valid += 1;
        }
        let objects = &mut objects[..valid];
        let distinct = self.distinct_objects(
            s,
            pfn,
            objects,
            |e| refused(Err(e)),
            crate::slab::Reason::IntoObject,
        );
        let mut kept = 0;
        for i in 0..distinct {
            let object = objects[i];
            if self.looks_free(s, pfn, object.0) {
                refused(Err(self.naive_double_free(s, object.0)));
                continue;
            }
            objects[kept] = object;
            kept += 1;
        }
        kept
    }

    /// The first copy of each object of `objects` (all in the slab at `pfn` of `s`), kept
    /// in their order at the front; returns how many. `build_detached_freelist()` links
    /// the objects in the order it finds them, so that order is kept. An object named
    /// again must not be linked twice (a cycle in the slab's freelist): each later copy is
    /// refused with the hardened freelist's `BUG_ON(object == fp)` report, which the kernel
    /// gives for copies that meet next to each other (it would link the others into a
    /// cycle). A pointer that is no object boundary of the slab is reported as `what`.
    fn distinct_objects(
        &self,
        s: &KmemCache,
        pfn: Pfn,
        objects: &mut [VirtAddr],
        mut refused: impl FnMut(SlabError),
        what: crate::slab::Reason,
    ) -> usize {
        // A short list (most are one object) is searched; a long one gets one bit per
        // object index. A slab holds at most MAX_OBJS_PER_PAGE objects, but the index is
        // checked against the object count read from the slab's `struct page`, which a
        // corruption can make anything up to `u16::MAX`: the bitmap covers every `u16`.
        const SEARCHED: usize = 16;
        let mut seen = if objects.len() > SEARCHED {
            Some([0u64; (u16::MAX as usize + 1) / 64])
        } else {
            None
        };
        let mut kept = 0;
        for i in 0..objects.len() {
            let object = objects[i];
            let Some(idx) = self.object_index(s, pfn, object.0) else {
                crate::vmstat::VmEvents::add(&self.events().bug_slab, 1);
                refused(self.slab_fault(object.0, true, what));
                continue;
            };
            let twice = match &mut seen {
                Some(seen) => {
                    let (word, bit) = (idx as usize / 64, 1u64 << (idx % 64));
                    let twice = seen[word] & bit != 0;
                    seen[word] |= bit;
                    twice
                }
                None => objects[..kept].contains(&object),
            };
            if twice {
                refused(self.naive_double_free(s, object.0));
                continue;
            }
            objects[kept] = object;
            kept += 1;
        }
        kept
    }
}
