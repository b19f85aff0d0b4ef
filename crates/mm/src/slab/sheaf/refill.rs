//! Sheaves themselves (`mm/slub.c` of Linux 6.18): allocating and freeing a sheaf,
//! `refill_sheaf()` from the slabs, `alloc_full_sheaf()`, and flushing objects back to the
//! slabs (`sheaf_flush_unused()`, `sheaf_flush_main()`, `pcs_flush_all()`).

use crate::gfp::Gfp;
use crate::platform::Platform;
use crate::slab::cache::KmemCache;
use crate::slab::sheaf::pcs_trylock;
use crate::slab::sheaf::SheafHeader;
use crate::slab::sheaf::SheafView;
use crate::slab::sheaf::SlubPercpuSheaves;
use crate::slab::sheaf::PCS_BATCH_MAX;
use crate::slab::sheaf::SHEAF_HEADER;
use crate::slab::stats::StatItem;
use crate::slab::SlabError;
use crate::{Mm, VirtAddr};
use core::ops::Range;
use core::sync::atomic::Ordering::Relaxed;

/// Objects moved between a sheaf and the bulk functions per call, through a host array on
/// the stack: one call for every capacity 7.0's `calculate_sheaf_capacity()` gives with the
/// default kmalloc sizes (at most 123, a sheaf in `kmalloc-1k`), more for larger ones.
const SHEAF_BULK_BATCH: usize = 128;

impl<P: Platform> Mm<P> {
    /// `alloc_empty_sheaf()`: a zeroed sheaf from the kmalloc cache of its size (through
    /// that cache's CPU slab, never its sheaves).
    pub(super) fn alloc_empty_sheaf(&self, s: &KmemCache, gfp: Gfp) -> Option<u64> {
        self.try_alloc_empty_sheaf(s, gfp).ok()
    }

    /// [`Mm::alloc_empty_sheaf`], saying why it failed.
    pub(super) fn try_alloc_empty_sheaf(&self, s: &KmemCache, gfp: Gfp) -> Result<u64, SlabError> {
        let bytes = Self::sheaf_bytes(s);
        let r = self
            .kmalloc_slab(bytes as usize, Gfp::GFP_KERNEL)
            .ok_or(SlabError::TooLarge(bytes as usize))?;
        let k = self.cache_at(r.0)?;
        let va = self.slab_alloc_from(k, gfp & !Gfp::__GFP_ZERO)?;
        self.slab_fill(va, 0, SHEAF_HEADER)?;
        let h: &SheafHeader = self.kview(va).map_err(|e| SlabError::Corrupted {
            addr: e.addr,
            what: crate::slab::Reason::SheafOutsideDirectMap,
        })?;
        h.cache.store(s.self_va.load(Relaxed), Relaxed);
        h.capacity.store(s.sheaf_capacity() as u64, Relaxed);
        self.stat(s, StatItem::SheafAlloc);
        Ok(va)
    }

    /// `free_empty_sheaf()`: back to its kmalloc cache.
    pub(super) fn free_empty_sheaf(&self, s: &KmemCache, va: u64) {
        let Some((pfn, page)) = self.virt_to_slab(VirtAddr(va)) else {
            return;
        };
        let Ok(k) = self.cache(crate::slab::KmemCacheRef(page.slab_cache())) else {
            return;
        };
        if self.object_index_in(k, page, pfn, va).is_some() {
            let _ = self.do_slab_free(k, pfn, va, va, 1);
            self.stat(s, StatItem::SheafFree);
        }
    }

    /// `refill_sheaf()`: fill the sheaf at `va` to capacity from the slabs with
    /// `__kmem_cache_alloc_bulk()`, all or nothing (on failure what was taken goes back
    /// through `__kmem_cache_free_bulk()` and the sheaf is as it was), one `SHEAF_REFILL`
    /// per object added.
    pub(super) fn refill_sheaf(&self, s: &KmemCache, va: u64, gfp: Gfp) -> Result<(), SlabError> {
        if self.sheaf_checked(s, va).is_none() {
            return Err(self.sheaf_corrupt(va));
        }
        let cap = s.sheaf_capacity();
        let Some(mut sheaf) = self.sheaf_view(s, cap, va) else {
            return Err(self.sheaf_corrupt(va));
        };
        let start = sheaf.size;
        if start == cap {
            return Ok(());
        }
        let cpu = self.platform.smp_processor_id();
        let mut objects = [VirtAddr(0); SHEAF_BULK_BATCH];
        let mut filled = start;
        while filled < cap {
            let n = ((cap - filled) as usize).min(SHEAF_BULK_BATCH);
            if let Err((taken, e)) = self.__kmem_cache_alloc_bulk(s, gfp, &mut objects[..n], cpu) {
                let _ = self.__kmem_cache_free_bulk(s, &mut objects[..taken]);
                self.sheaf_free_slots(s, &sheaf, start..filled);
                return Err(e);
            }
            for (i, object) in objects[..n].iter().enumerate() {
                sheaf.set_object(filled + i as u32, object.0);
            }
            filled += n as u32;
        }
        sheaf.set_size(cap);
        self.stat_add(s, StatItem::SheafRefill, (cap - start) as u64);
        Ok(())
    }

    /// The objects in `slots` of `sheaf` back to their slabs (`__kmem_cache_free_bulk()`),
    /// a host batch at a time; the sheaf's size is the caller's.
    fn sheaf_free_slots(&self, s: &KmemCache, sheaf: &SheafView, slots: Range<u32>) {
        let mut objects = [VirtAddr(0); SHEAF_BULK_BATCH];
        let mut i = slots.start;
        while i < slots.end {
            let n = ((slots.end - i) as usize).min(SHEAF_BULK_BATCH);
            for (k, slot) in objects[..n].iter_mut().enumerate() {
                *slot = VirtAddr(sheaf.object(i + k as u32));
            }
            let _ = self.__kmem_cache_free_bulk_from_sheaf(s, &mut objects[..n]);
            i += n as u32;
        }
    }

    /// `alloc_full_sheaf()`.
    pub(super) fn alloc_full_sheaf(&self, s: &KmemCache, gfp: Gfp) -> Option<u64> {
        let va = self.alloc_empty_sheaf(s, gfp)?;
        if self.refill_sheaf(s, va, gfp).is_err() {
            self.free_empty_sheaf(s, va);
            return None;
        }
        Some(va)
    }

    /// `sheaf_flush_unused()`: every object of a sheaf no CPU uses back to the slabs with
    /// `__kmem_cache_free_bulk()`, counted as `SHEAF_FLUSH`.
    pub(super) fn sheaf_flush_unused(&self, s: &KmemCache, va: u64) {
        let Some(mut sheaf) = self.sheaf_view(s, s.sheaf_capacity(), va) else {
            self.sheaf_corrupt(va);
            return;
        };
        let size = sheaf.size;
        if size == 0 {
            return;
        }
        self.stat_add(s, StatItem::SheafFlush, size as u64);
        self.sheaf_free_slots(s, &sheaf, 0..size);
        sheaf.set_size(0);
    }

    /// `sheaf_flush_main()`: empty this CPU's main sheaf in batches of `PCS_BATCH_MAX`,
    /// copied out under the lock and given to `__kmem_cache_free_bulk()` without it. True
    /// if anything was flushed.
    pub(super) fn sheaf_flush_main(&self, s: &KmemCache, pcs: &SlubPercpuSheaves) -> bool {
        let mut flushed = false;
        let rounds = s.sheaf_capacity() as usize / PCS_BATCH_MAX + 2;
        for _ in 0..rounds {
            let Some(guard) = pcs_trylock(pcs) else {
                return flushed;
            };
            let Ok(mut main) = self.main_view(s, pcs) else {
                // Reported and dropped by main_view().
                drop(guard);
                return flushed;
            };
            let size = main.size;
            let batch = (size as usize).min(PCS_BATCH_MAX) as u32;
            let mut objects = [VirtAddr(0); PCS_BATCH_MAX];
            for (i, slot) in objects.iter_mut().enumerate().take(batch as usize) {
                *slot = VirtAddr(main.object(size - batch + i as u32));
            }
            main.set_size(size - batch);
            drop(guard);
            let _ = self.__kmem_cache_free_bulk_from_sheaf(s, &mut objects[..batch as usize]);
            self.stat_add(s, StatItem::SheafFlush, batch as u64);
            flushed = true;
            if size == batch {
                break;
            }
        }
        flushed
    }

    /// Has `cpu` anything in its sheaves (`has_pcs_used()`)?
    pub(crate) fn pcs_used(&self, s: &KmemCache, cpu: usize) -> bool {
        if s.sheaf_capacity() == 0 {
            return false;
        }
        self.pcs(s, cpu).is_some_and(|pcs| {
            pcs.spare.load(Relaxed) != 0
                || self
                    .sheaf(s, pcs.main.load(Relaxed))
                    .is_some_and(|h| h.size() != 0)
        })
    }

    /// `pcs_flush_all()` on this CPU: the spare flushed and freed, the main flushed (it
    /// stays, empty).
    pub(crate) fn pcs_flush_all(&self, s: &KmemCache) {
        if s.sheaf_capacity() == 0 {
            return;
        }
        let Some(pcs) = self.pcs(s, self.platform.smp_processor_id()) else {
            self.pcs_corrupt(s);
            return;
        };
        let Some(guard) = pcs_trylock(pcs) else {
            return;
        };
        // `spare = pcs->spare; pcs->spare = NULL;` under the lock: plain load and store.
        let spare = pcs.spare.load(Relaxed);
        pcs.spare.store(0, Relaxed);
        drop(guard);
        if spare != 0 {
            if self.sheaf_checked(s, spare).is_some() {
                self.sheaf_flush_unused(s, spare);
                self.free_empty_sheaf(s, spare);
            } else {
                self.sheaf_corrupt(spare);
            }
        }
        self.sheaf_flush_main(s, pcs);
    }
}
