//! Per-CPU page lists (`struct per_cpu_pages` and its functions in `mm/page_alloc.c` of
//! Linux 6.6): order-0 to order-3 blocks (and pageblock-order blocks, the THP list) are
//! cached per CPU and per zone, refilled from the buddy lists in batches and drained back
//! in batches, so that most allocations and frees never take the zone lock.
//!
//! As in the kernel since 5.19, each set of lists has its own spinlock, taken with a
//! trylock: if an interrupt on the same CPU (or a remote drain) holds it, the caller goes to
//! the buddy lists instead.

use core::sync::atomic::{AtomicU32, Ordering::Relaxed};

use crate::addr::PAGE_ALLOC_COSTLY_ORDER;
use crate::memory_model::PageList;
use crate::page_alloc::MIGRATE_PCPTYPES;
use crate::sync::TryLock;

/// Lists for orders 0..=PAGE_ALLOC_COSTLY_ORDER, one per per-CPU migrate type
/// (`NR_LOWORDER_PCP_LISTS`).
pub const NR_LOWORDER_PCP_LISTS: usize = MIGRATE_PCPTYPES * (PAGE_ALLOC_COSTLY_ORDER as usize + 1);
/// All lists: the low orders plus one for pageblock-order (THP) blocks (`NR_PCP_LISTS`).
pub const NR_PCP_LISTS: usize = NR_LOWORDER_PCP_LISTS + 1;

/// `pcp_allowed_order()`: which orders go through the per-CPU lists: up to
/// `PAGE_ALLOC_COSTLY_ORDER`, and `pageblock_order` (the profile's: THP-sized blocks, 9 on
/// x86_64, 10 on i386; kmemlab's kernels have `CONFIG_TRANSPARENT_HUGEPAGE`).
#[inline]
pub const fn pcp_allowed_order(order: u32, pageblock_order: u32) -> bool {
    order <= PAGE_ALLOC_COSTLY_ORDER || order == pageblock_order
}

/// `order_to_pindex()`: an order above `PAGE_ALLOC_COSTLY_ORDER` can only be
/// `pageblock_order` ([`pcp_allowed_order`]), whose list is the last.
#[inline]
pub const fn order_to_pindex(mt: usize, order: u32) -> usize {
    if order > PAGE_ALLOC_COSTLY_ORDER {
        NR_LOWORDER_PCP_LISTS
    } else {
        MIGRATE_PCPTYPES * order as usize + mt
    }
}

/// `pindex_to_order()`: the last list holds blocks of `pageblock_order`.
#[inline]
pub const fn pindex_to_order(pindex: usize, pageblock_order: u32) -> u32 {
    if pindex == NR_LOWORDER_PCP_LISTS {
        pageblock_order
    } else {
        (pindex / MIGRATE_PCPTYPES) as u32
    }
}

/// One CPU's cached pages for one zone (`struct per_cpu_pages`).
#[repr(C)]
#[derive(Default, zerocopy::FromBytes)]
pub struct PerCpuPages {
    /// `pcp->lock`.
    pub(crate) lock: TryLock,
    /// Pages on the lists (`count`).
    pub(crate) count: AtomicU32,
    /// Drain when `count` reaches this (`high`).
    pub(crate) high: AtomicU32,
    /// Refill and drain chunk (`batch`).
    pub(crate) batch: AtomicU32,
    /// Grows with consecutive frees, halves on each allocation (`free_factor`).
    pub(crate) free_factor: AtomicU32,
    /// The lists, indexed by [`order_to_pindex`].
    pub(crate) lists: [PageList; NR_PCP_LISTS],
}

impl PerCpuPages {
    /// Pages cached on this CPU for this zone.
    #[inline]
    pub fn count(&self) -> u32 {
        self.count.load(Relaxed)
    }
    /// The high mark.
    #[inline]
    pub fn high(&self) -> u32 {
        self.high.load(Relaxed)
    }
    /// The batch size.
    #[inline]
    pub fn batch(&self) -> u32 {
        self.batch.load(Relaxed)
    }

    /// `nr_pcp_high()`: the high mark in force (0 when freeing high-order pages in a burst).
    /// 6.6's `if (unlikely(!high || free_high)) return 0;` then `return high;` (without
    /// the `ZONE_RECLAIM_ACTIVE` clamp): a zero mark is answered as itself, so the test
    /// of it is left out.
    #[inline]
    pub(crate) fn nr_pcp_high(&self, free_high: bool) -> u32 {
        if free_high {
            0
        } else {
            self.high()
        }
    }

    /// `nr_pcp_free()`: how many pages to drain once `high` is reached: a batch, doubled with
    /// each consecutive drain, at most `high - batch`; everything for a high-order burst.
    pub(crate) fn nr_pcp_free(&self, high: u32, batch: u32, free_high: bool) -> u32 {
        if free_high {
            return self.count();
        }
        if high < batch {
            return 1;
        }
        let min_nr_free = batch;
        let max_nr_free = high - batch;
        let factor = self.free_factor.load(Relaxed);
        let scaled = batch.checked_shl(factor).unwrap_or(u32::MAX);
        if scaled < max_nr_free {
            self.free_factor.store(factor.saturating_add(1), Relaxed);
        }
        scaled.clamp(min_nr_free, max_nr_free.max(min_nr_free))
    }
}

/// `zone_batchsize()`: one page per 1024 managed pages, at most 256, divided by four and
/// rounded to 2^n - 1 (odd batches avoid cache aliasing). The caller uses at least 1
/// (`zone_set_pageset_high_and_batch`).
pub fn zone_batchsize(managed_pages: u64) -> u32 {
    let mut batch = (managed_pages >> 10).min((1 << 20) / 4096);
    batch /= 4;
    if batch < 1 {
        batch = 1;
    }
    let n = batch + batch / 2;
    ((1u64 << (63 - n.leading_zeros())) - 1) as u32
}

/// `zone_highsize()` (6.6): `total_pages` (the zone's low watermark, or its managed pages
/// divided by `percpu_pagelist_high_fraction`) shared among the CPUs, at least four
/// batches.
pub fn zone_highsize(total_pages: u64, batch: u32, nr_cpus: usize) -> u32 {
    let high = total_pages / nr_cpus.max(1) as u64;
    high.max((batch as u64) << 2).min(u32::MAX as u64) as u32
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::arch::Profile;

    #[test]
    fn batch_matches_kernel_examples() {
        // 1 GiB zone: min(256, 256) / 4 = 64; rounddown_pow_of_two(96) - 1 = 63.
        assert_eq!(zone_batchsize(262_144), 63);
        // A 16 MiB DMA zone: 3 pages >> 10 = 3 / 4 = 0 -> 1; rounddown(1) - 1 = 0.
        assert_eq!(zone_batchsize(3840), 0);
        assert_eq!(zone_batchsize(4 << 20), 63);
    }

    #[test]
    fn pindex_round_trip() {
        for profile in [Profile::X86_64, Profile::I386] {
            let pageblock_order = profile.pageblock_order();
            for order in 0..=PAGE_ALLOC_COSTLY_ORDER {
                for mt in 0..MIGRATE_PCPTYPES {
                    let pindex = order_to_pindex(mt, order);
                    assert_eq!(pindex_to_order(pindex, pageblock_order), order);
                }
            }
            let thp = order_to_pindex(1, pageblock_order);
            assert_eq!(thp, NR_PCP_LISTS - 1);
            assert_eq!(pindex_to_order(thp, pageblock_order), pageblock_order);
        }
    }

    #[test]
    fn the_thp_list_takes_the_profiles_pageblock_order() {
        // 6.6 pcp_allowed_order(): order <= PAGE_ALLOC_COSTLY_ORDER or == pageblock_order.
        let x86_64 = Profile::X86_64.pageblock_order();
        assert!(pcp_allowed_order(3, x86_64) && pcp_allowed_order(9, x86_64));
        assert!(!pcp_allowed_order(4, x86_64) && !pcp_allowed_order(10, x86_64));
        let i386 = Profile::I386.pageblock_order();
        assert!(pcp_allowed_order(3, i386) && pcp_allowed_order(10, i386));
        assert!(!pcp_allowed_order(4, i386) && !pcp_allowed_order(9, i386));
    }
}
