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
//! Tracing: Linux 6.6 emits no `kmem_cache_alloc` / `kmem_cache_free` event per object on
//! the bulk paths (only the single entry points call `trace_kmem_cache_alloc` and
//! `trace_kmem_cache_free`); kmemlab's slab paths emit none either.

use core::sync::atomic::Ordering::Relaxed;

use crate::addr::VirtAddr;
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
                .map_err(|e| SlabError::Alloc(crate::AllocError::SleepInAtomic(e)))?;
        }
        let taken = if s.is_debug() {
            self.alloc_bulk_one_by_one(s, gfp, p, caller)
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

    /// `__kmem_cache_alloc_bulk()` for a cache without debugging: the CPU freelist drained
    /// with interrupts disabled, `___slab_alloc()` when it is empty. On failure, how many
    /// objects were taken (they are in `p[..taken]`) and why.
    fn __kmem_cache_alloc_bulk(
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
            let slab = c.slab.load(Relaxed);
            if object == 0 || slab == 0 {
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
            }
            match self.cpu_next_free(s, c, slab - 1, object) {
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
        self.refuse_boot_cache(r)?;
        let s = self.api_cache(r)?;
        self.free_bulk(Some(s), p, CallSite::caller())
    }

    /// `kfree_bulk(size, p)`: `kmem_cache_free_bulk(NULL, ...)`, each object freed to the
    /// cache its slab names; what is not a slab object goes to `kfree` (large kmalloc
    /// blocks, NULL and `ZERO_SIZE_PTR`, and its refusals).
    #[track_caller]
    pub fn kfree_bulk(&self, p: &mut [VirtAddr]) -> Result<(), SlabError> {
        self.free_bulk(None, p, CallSite::caller())
    }

    /// The loop of `kmem_cache_free_bulk()`: one detached freelist at a time, from the end
    /// of the array.
    fn free_bulk(
        &self,
        s: Option<&KmemCache>,
        p: &mut [VirtAddr],
        caller: CallSite,
    ) -> Result<(), SlabError> {
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
        let mut size = p.len() - 1;
        let object = p[size];
        let Some((pfn, page)) = self.virt_to_slab(object) else {
            let freed = match s {
                // Handle kmalloc'ed objects (free_large_kmalloc(), NULL).
                None => self.kfree_caller(object, caller),
                Some(_) => Err(SlabError::NotSlabObject(
                    object,
                    "not in a slab (kmem_cache_free_bulk of non-slab memory)",
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
        // Gather the slab's objects at the end of the array: p[same..] (`same` counts
        // down as they are found; the element they displace moves to where they were).
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
        let freed = self.free_slab_objects(cache, pfn, page, &mut p[same..], caller, s.is_none());
        (same, freed)
    }

    /// Free `objects`, all in the slab at `pfn` of `s`: checked as the single free checks
    /// them, then given back as one detached freelist.
    fn free_slab_objects(
        &self,
        s: &KmemCache,
        pfn: u64,
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
                keep(self.free_object(s, pfn, page, *object, caller));
            }
            return result;
        }
        let valid = self.bulk_checked_objects(s, pfn, objects, &mut keep);
        let objects = &objects[..valid];
        let (Some(&head), Some(&tail)) = (objects.first(), objects.last()) else {
            return result;
        };
        let init = self.slab_want_init_on_free(s);
        let chained = || -> Result<(), SlabError> {
            for (i, object) in objects.iter().enumerate() {
                if init {
                    self.slab_fill(object.0, 0, s.object_size() as u64)?;
                }
                if let Some(next) = objects.get(i + 1) {
                    self.set_freepointer(s, object.0, next.0)?;
                }
            }
            // At most the slab's objects, each once: below MAX_OBJS_PER_PAGE.
            self.slab_free_detached(s, pfn, head.0, tail.0, objects.len() as u16)
        };
        keep(chained());
        result
    }

    /// The checks of the single free for each object of one slab (`object_index`, the
    /// double-free signs) and, since the array may name an object twice, duplicates; the
    /// objects that pass are moved to the front of `objects`, sorted, and counted. Each
    /// refusal is reported and handed to `refused`.
    fn bulk_checked_objects(
        &self,
        s: &KmemCache,
        pfn: u64,
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
                    "not the start of an object (a pointer into the middle of one?)",
                )));
                continue;
            }
            objects[valid] = object;
            valid += 1;
        }
        let objects = &mut objects[..valid];
        objects.sort_unstable();
        let mut kept = 0;
        for i in 0..objects.len() {
            let object = objects[i];
            let twice = kept > 0 && objects[kept - 1] == object;
            if twice || self.looks_free(s, pfn, object.0) {
                refused(Err(self.naive_double_free(s, object.0)));
                continue;
            }
            objects[kept] = object;
            kept += 1;
        }
        kept
    }

    /// `do_slab_free()` of a detached freelist `head` ..= `tail` of `cnt` objects: onto the
    /// CPU freelist with one exchange if the slab is this CPU's, else `__slab_free()`.
    fn slab_free_detached(
        &self,
        s: &KmemCache,
        pfn: u64,
        head: u64,
        tail: u64,
        cnt: u16,
    ) -> Result<(), SlabError> {
        let c = self.this_cpu_slab(s)?;
        loop {
            let tid = c.tid.load(Relaxed);
            self.irq_window();
            if c.slab.load(Relaxed) != pfn + 1 {
                return self.__slab_free_list(s, pfn, head, tail, cnt);
            }
            let freelist = c.freelist.load(Relaxed);
            if freelist == tail || freelist == head {
                return Err(self.naive_double_free(s, tail));
            }
            self.set_freepointer(s, tail, freelist)?;
            self.irq_window();
            if Self::cpu_cmpxchg(c, freelist, tid, head, self.next_tid(tid)) {
                self.stat(s, StatItem::FreeFastpath);
                return Ok(());
            }
            crate::vmstat::VmEvents::add(&self.events().slab_cmpxchg_redo, 1);
            self.stat(s, StatItem::CmpxchgDoubleCpuFail);
        }
    }
}
