//! Sheaves themselves (`mm/slub.c` of Linux 6.18): allocating and freeing a sheaf,
//! `refill_sheaf()` from the slabs, `alloc_full_sheaf()`, and flushing objects back to the
//! slabs (`sheaf_flush_unused()`, `sheaf_flush_main()`, `pcs_flush_all()`).

use crate::gfp::Gfp;
use crate::platform::Platform;
use crate::slab::cache::KmemCache;
use crate::slab::sheaf::pcs_trylock;
use crate::slab::sheaf::SheafHeader;
use crate::slab::sheaf::SlubPercpuSheaves;
use crate::slab::sheaf::PCS_BATCH_MAX;
use crate::slab::sheaf::SHEAF_HEADER;
use crate::slab::stats::StatItem;
use crate::slab::SlabError;
use crate::{Mm, VirtAddr};
use core::sync::atomic::Ordering::Relaxed;

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

    /// `refill_sheaf()`: fill the sheaf at `va` to capacity from the slabs, all or nothing
    /// (`__kmem_cache_alloc_bulk()` frees what it got when it fails).
    pub(super) fn refill_sheaf(&self, s: &KmemCache, va: u64, gfp: Gfp) -> Result<(), SlabError> {
        let h = self
            .sheaf_checked(s, va)
            .ok_or_else(|| self.sheaf_corrupt(va))?;
        let cap = s.sheaf_capacity();
        let start = h.size();
        let cpu = self.platform.smp_processor_id();
        let mut filled = start;
        let mut failure = None;
        while filled < cap {
            match self.slab_alloc_on(s, gfp, cpu) {
                Ok(object) => {
                    if let Err(e) = self.store_word(Self::slot(va, filled), object) {
                        let _ = self.free_to_slab(s, object);
                        failure = Some(e);
                        break;
                    }
                    filled += 1;
                }
                Err(e) => {
                    failure = Some(e);
                    break;
                }
            }
        }
        if let Some(e) = failure {
            for i in start..filled {
                if let Ok(object) = self.load_word(Self::slot(va, i)) {
                    let _ = self.free_to_slab(s, object);
                }
            }
            return Err(e);
        }
        h.set_size(filled);
        self.stat_add(s, StatItem::SheafRefill, (filled - start) as u64);
        Ok(())
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

    /// One object back to its slab (`__kmem_cache_free_bulk()` of one), after checking it
    /// is an object of `s`.
    fn free_to_slab(&self, s: &KmemCache, object: u64) -> Result<(), SlabError> {
        match self.sheaf_object_slab(s, object) {
            Some(pfn) => self.do_slab_free(s, pfn, object, object, 1),
            None => {
                crate::vmstat::VmEvents::add(&self.events().bug_slab, 1);
                Err(self.slab_fault(object, true, crate::slab::Reason::SheafObjectCorrupted))
            }
        }
    }

    /// `sheaf_flush_unused()`: every object of a sheaf no CPU uses back to the slabs.
    pub(super) fn sheaf_flush_unused(&self, s: &KmemCache, va: u64) {
        let Some(h) = self.sheaf(s, va) else {
            self.sheaf_corrupt(va);
            return;
        };
        let size = h.size();
        for i in 0..size {
            match self.load_word(Self::slot(va, i)) {
                Ok(object) => {
                    let _ = self.free_to_slab(s, object);
                }
                Err(_) => break,
            }
        }
        h.set_size(0);
        self.stat_add(s, StatItem::SheafFlush, size as u64);
    }

    /// `sheaf_flush_main()`: empty this CPU's main sheaf in batches of `PCS_BATCH_MAX`,
    /// moved out under the lock and freed without it. True if anything was flushed.
    pub(super) fn sheaf_flush_main(&self, s: &KmemCache, pcs: &SlubPercpuSheaves) -> bool {
        let mut flushed = false;
        let rounds = s.sheaf_capacity() as usize / PCS_BATCH_MAX + 2;
        for _ in 0..rounds {
            let Some(guard) = pcs_trylock(pcs) else {
                return flushed;
            };
            let main_va = pcs.main.load(Relaxed);
            let Some(main) = self.sheaf(s, main_va) else {
                pcs.main.store(0, Relaxed);
                drop(guard);
                self.sheaf_corrupt(main_va);
                return flushed;
            };
            let size = main.size();
            let batch = (size as usize).min(PCS_BATCH_MAX) as u32;
            let mut objects = [0u64; PCS_BATCH_MAX];
            for (i, slot) in objects.iter_mut().enumerate().take(batch as usize) {
                *slot = self
                    .load_word(Self::slot(main_va, size - batch + i as u32))
                    .unwrap_or(0);
            }
            main.set_size(size - batch);
            drop(guard);
            for &object in &objects[..batch as usize] {
                let _ = self.free_to_slab(s, object);
            }
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
        let spare = pcs.spare.swap(0, Relaxed);
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
