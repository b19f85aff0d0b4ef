//! The allocation paths (`mm/slub.c` of Linux 6.6): `slab_alloc_node()`'s lockless fast
//! path on this CPU's slab, then `___slab_alloc()`: the CPU slab's freelist, a new CPU slab.

use crate::addr::Pfn;
use crate::gfp::Gfp;
use crate::mm_types::Page;
use crate::platform::Platform;
use crate::slab::cache::{partial_chain_next, KmemCache, KmemCacheCpu};
use crate::slab::slub::SlabCounters;
use crate::slab::slub::NO_OBJECT;
use crate::slab::stats::StatItem;
use crate::slab::SlabError;
use crate::Mm;
use core::sync::atomic::Ordering::Relaxed;

impl<P: Platform> Mm<P> {
    /// `slab_alloc_node()`: the lockless fast path, else `__slab_alloc`.
    ///
    /// Inline in its callers (`kmalloc`, `kmem_cache_alloc`) for the common case: a cache
    /// without debugging, and nothing to initialise (neither `init_on_alloc`,
    /// `init_on_free` nor `__GFP_ZERO`); the rest is [`Mm::slab_alloc_full`], out of line.
    /// The result then reaches the caller in registers, not through a large `Result` in
    /// memory.
    #[inline(always)]
    pub(crate) fn slab_alloc(
        &self,
        s: &KmemCache,
        gfp: Gfp,
        site: crate::slab::CallSite,
        orig_size: u32,
    ) -> Result<u64, SlabError> {
        // The current CPU, read once: the thread that runs a CPU stays on it, interrupts
        // included.
        let cpu = self.platform.smp_processor_id();
        if gfp.allows_blocking() {
            self.might_sleep_on(cpu)
                .map_err(|e| SlabError::Alloc(crate::PageAllocError::SleepInAtomic(e)))?;
        }
        if s.is_debug() || self.slab_may_init(gfp) {
            return self.slab_alloc_full(s, gfp, site, orig_size, cpu);
        }
        // slab_alloc_node() of 6.18: the sheaves first (0: fall back to the slab).
        if s.sheaf_capacity() != 0 {
            let object = self.alloc_from_pcs(s, gfp, cpu)?;
            if object != 0 {
                return Ok(object);
            }
        }
        self.slab_alloc_on(s, gfp, cpu)
    }

    /// Might [`Mm::slab_want_init_on_alloc`] or [`Mm::slab_want_init_on_free`] be true
    /// for an allocation with `gfp` (whatever the cache)?
    #[inline(always)]
    fn slab_may_init(&self, gfp: Gfp) -> bool {
        self.init_on_alloc_enabled() || self.want_init_on_free() || gfp.contains(Gfp::__GFP_ZERO)
    }

    /// [`Mm::slab_alloc`] after its context check, for every cache and flag: the debug
    /// path, the sheaves (6.18), the per-CPU slab, then `slab_post_alloc_hook()`'s
    /// initialisation.
    #[inline(never)]
    fn slab_alloc_full(
        &self,
        s: &KmemCache,
        gfp: Gfp,
        site: crate::slab::CallSite,
        orig_size: u32,
        cpu: usize,
    ) -> Result<u64, SlabError> {
        let object = if s.is_debug() {
            self.alloc_debug_path(s, gfp, site, orig_size)?
        } else if s.sheaf_capacity() != 0 {
            // slab_alloc_node() of 6.18: the sheaves first.
            match self.alloc_from_pcs(s, gfp, cpu)? {
                0 => self.slab_alloc_on(s, gfp, cpu)?,
                object => object,
            }
        } else {
            self.slab_alloc_on(s, gfp, cpu)?
        };
        if self.slab_want_init_on_alloc(gfp, s) {
            // With a kmalloc red zone only the requested bytes are zeroed, so the red zone
            // after them stays intact (slab_post_alloc_hook's `zero_size`).
            let zero_size = if Self::slub_debug_orig_size(s) {
                orig_size
            } else {
                s.object_size()
            };
            self.slab_fill(object, 0, zero_size as u64)?;
        } else if self.slab_want_init_on_free(s) {
            // maybe_wipe_obj_freeptr(): the free pointer stored inside the object is the
            // only byte init_on_free left behind.
            self.store_word(object.wrapping_add(s.fp_offset() as u64), 0)?;
        }
        Ok(object)
    }

    /// `slab_want_init_on_alloc()` (`mm/slab.h`, 6.6): the page allocator's
    /// `init_on_alloc` key, except for caches with a constructor (their objects keep what
    /// it wrote) and, but for `__GFP_ZERO`, poisoned caches.
    pub(crate) fn slab_want_init_on_alloc(&self, gfp: Gfp, s: &KmemCache) -> bool {
        if self.init_on_alloc_enabled() {
            if s.has_ctor() {
                return false;
            }
            if s.flags().contains(crate::slab::SlabFlags::POISON) {
                return gfp.contains(Gfp::__GFP_ZERO);
            }
            return true;
        }
        gfp.contains(Gfp::__GFP_ZERO)
    }

    /// `slab_want_init_on_free()` (`mm/slab.h`, 6.6): the page allocator's `init_on_free`
    /// key, but not for caches with a constructor or poisoning.
    pub(crate) fn slab_want_init_on_free(&self, s: &KmemCache) -> bool {
        self.want_init_on_free()
            && !s.has_ctor()
            && !s.flags().contains(crate::slab::SlabFlags::POISON)
    }

    /// The per-CPU fast path and slow path, without context checks or initialisation.
    pub(crate) fn slab_alloc_from(&self, s: &KmemCache, gfp: Gfp) -> Result<u64, SlabError> {
        self.slab_alloc_on(s, gfp, self.platform.smp_processor_id())
    }

    /// [`Mm::slab_alloc_from`] on `cpu`, the current CPU.
    #[inline(always)]
    pub(crate) fn slab_alloc_on(
        &self,
        s: &KmemCache,
        gfp: Gfp,
        cpu: usize,
    ) -> Result<u64, SlabError> {
        let c = self.cpu_slab_or_fault(s, cpu)?;
        loop {
            let tid = c.tid.load(Relaxed);
            self.irq_window();
            let object = c.freelist.load(Relaxed);
            let slab = c.slab_pfn();
            let Some(slab) = slab.filter(|_| object != 0) else {
                let flags = self.platform.local_irq_save();
                let r = self.__slab_alloc(s, gfp, c, flags);
                self.platform.local_irq_restore(flags);
                return r;
            };
            let next = self.cpu_next_free(s, c, slab, object)?;
            self.irq_window();
            if Self::cpu_cmpxchg(c, object, tid, next, self.next_tid(tid)) {
                self.stat(s, StatItem::AllocFastpath);
                return Ok(object);
            }
            // note_cmpxchg_failure(): an interrupt ran an operation in between; redo.
            crate::vmstat::VmEvents::add(&self.events().slab_cmpxchg_redo, 1);
            self.stat(s, StatItem::CmpxchgDoubleCpuFail);
        }
    }

    /// `___slab_alloc()`, entered with interrupts disabled (`irq` is the state to give
    /// back while a new slab is allocated).
    pub(crate) fn __slab_alloc(
        &self,
        s: &KmemCache,
        gfp: Gfp,
        c: &KmemCacheCpu,
        irq: crate::IrqFlags,
    ) -> Result<u64, SlabError> {
        self.stat(s, StatItem::AllocSlowpath);
        // A slab just made the CPU slab, whose `struct page` was checked to be a slab of
        // `s` on the way (taken off a partial list): the loop's check of the CPU slab
        // need not look it up again while it is still the CPU slab.
        let mut checked: Option<(Pfn, &Page)> = None;
        loop {
            // Only for the pass right after it was set.
            let just_checked = checked.take();
            if let Some(pfn) = c.slab_pfn() {
                let page = match just_checked {
                    Some((known, page)) if known == pfn => page,
                    _ => match self.slab_page_of(s, pfn) {
                        Ok(page) => page,
                        Err(e) => {
                            self.drop_cpu_slab(c, true);
                            return Err(e);
                        }
                    },
                };
                let mut freelist = c.freelist.load(Relaxed);
                if freelist == 0 {
                    freelist = self
                        .get_freelist(s, pfn, page)
                        .inspect_err(|_| self.drop_cpu_slab(c, true))?;
                    self.stat(
                        s,
                        if freelist == 0 {
                            StatItem::DeactivateBypass
                        } else {
                            StatItem::AllocRefill
                        },
                    );
                }
                if freelist != 0 {
                    // load_freelist: the slab was checked above, so only the object is.
                    let next = self
                        .next_free_in(s, page, pfn, freelist)
                        .inspect_err(|_| self.drop_cpu_slab(c, false))?;
                    c.freelist.store(next, Relaxed);
                    c.tid.store(self.next_tid(c.tid.load(Relaxed)), Relaxed);
                    return Ok(freelist);
                }
                // The CPU slab is full: it leaves the CPU, on no list.
                c.set_slab_pfn(None);
                c.tid.store(self.next_tid(c.tid.load(Relaxed)), Relaxed);
            }
            // new_slab: the per-CPU partial list first.
            if let Some(pfn) = c.partial_pfn() {
                let page = self.slab_page_of(s, pfn).inspect_err(|_| {
                    c.set_partial_pfn(None);
                    c.partial_slabs.store(0, Relaxed);
                })?;
                // The link is cleared as the slab leaves the chain, so a chain that
                // loops back (a corrupted link) cannot be walked twice.
                let next = page.next();
                page.set_next(crate::mm_types::NIL);
                c.set_partial_pfn(partial_chain_next(next));
                c.partial_slabs
                    .store(c.partial_slabs.load(Relaxed).saturating_sub(1), Relaxed);
                c.set_slab_pfn(Some(pfn));
                self.stat(s, StatItem::CpuPartialAlloc);
                checked = Some((pfn, page));
                continue;
            }
            // The node's partial list.
            if let Some((pfn, page, freelist)) = self.get_partial(s, c)? {
                self.load_new_cpu_slab(s, c, pfn, freelist);
                checked = Some((pfn, page));
                continue;
            }
            // A new slab, allocated with interrupts enabled as the kernel does.
            self.platform.local_irq_restore(irq);
            self.irq_window();
            let allocated = self.new_slab(s, gfp);
            let _ = self.platform.local_irq_save();
            let pfn = allocated?;
            self.stat(s, StatItem::AllocSlab);
            self.inc_slabs_node(s, pfn)?;
            let freelist = self.get_freelist_of_new(s, pfn);
            self.load_new_cpu_slab(s, c, pfn, freelist);
        }
    }

    /// `kmalloc_fix_flags()`: slab memory must be directly mapped, so `GFP_SLAB_BUG_MASK`
    /// bits are reported and dropped.
    pub(crate) fn kmalloc_fix_flags(&self, gfp: Gfp) -> Gfp {
        let bad = Gfp::__GFP_DMA32 | Gfp::__GFP_HIGHMEM;
        if !gfp.intersects(bad) {
            return gfp;
        }
        let fixed = gfp & !bad;
        crate::vmstat::VmEvents::add(&self.events().warn, 1);
        self.printk(format_args!(
            "Unexpected gfp: {:?}. Fixing up to gfp: {:?}. Fix your code!",
            gfp & bad,
            fixed
        ));
        fixed
    }

    /// A new slab becomes a CPU slab: all its objects go to the CPU.
    fn get_freelist_of_new(&self, s: &KmemCache, pfn: Pfn) -> u64 {
        let page = self.mem_map.page(pfn);
        let old = SlabCounters::unpack(page.word());
        page.set_word(
            SlabCounters {
                freelist: NO_OBJECT,
                inuse: old.objects,
                frozen: true,
                ..old
            }
            .pack(),
        );
        self.fl_va(s, pfn, old.freelist)
    }

    /// `retry_load_slab`: install a frozen slab and its freelist as this CPU's slab; if an
    /// interrupt installed another one meanwhile, that one is deactivated first.
    fn load_new_cpu_slab(&self, s: &KmemCache, c: &KmemCacheCpu, pfn: Pfn, freelist: u64) {
        if let Some(old) = c.slab_pfn() {
            let old_freelist = c.freelist.load(Relaxed);
            c.set_slab_pfn(None);
            c.freelist.store(0, Relaxed);
            self.stat(s, StatItem::CpuslabFlush);
            self.deactivate_slab(s, old, old_freelist);
        }
        c.set_slab_pfn(Some(pfn));
        c.freelist.store(freelist, Relaxed);
        c.tid.store(self.next_tid(c.tid.load(Relaxed)), Relaxed);
    }
}
