//! The buddy allocator proper: free lists per order and migrate type, splitting and
//! merging from page state, and the fallback between migrate types
//! (`mm/page_alloc.c` of Linux 6.6: `__free_one_page`, `expand`, `__rmqueue_smallest`,
//! `__rmqueue_fallback`, `steal_suitable_fallback`, `move_freepages_block`).
//!
//! Everything here runs under the zone lock: a [`Buddy`] is built from the locked
//! [`FreeArea`].
//!
//! The list heads are the kernel's (host memory), but the links and every `struct page`
//! field (flags, order in `private`, migrate type) are in simulated RAM, so each is
//! checked before use: list operations verify their links (`CONFIG_DEBUG_LIST`), a block
//! taken from a list must be a buddy of the list's order inside the zone, and an order or
//! migrate type read from a page must be one that exists. What fails is reported
//! (`list_del corruption`, `BUG: Bad page state`) and the corrupted list is abandoned
//! (its blocks are lost to the allocator), so every operation still ends.

use core::sync::atomic::Ordering::Relaxed;

use crate::addr::{Pfn, MAX_PAGE_ORDER};
use crate::memory_model::{ListCorruption, MemMap, PageList};
use crate::mm_types::PG_BUDDY;
use crate::page_alloc::pageblock::Pageblocks;
use crate::page_alloc::{AllocFlags, FreeArea, MigrateType, Zone, MIGRATE_PCPTYPES, MIGRATE_TYPES};

/// Where the allocator reports the corruption it meets (the `Mm`, whose console it is).
pub(crate) trait CorruptionReport {
    /// `CHECK_DATA_CORRUPTION()` on a list.
    fn list_corruption(&self, c: &ListCorruption);
    /// `bad_page()`: `BUG: Bad page state` for `pfn`, dumped because of `reason`.
    fn bad_page_state(&self, pfn: Pfn, reason: &str);
}

/// `list_add()` of `pfn` to `list` (at the tail with `tail`): a corrupted list is reported,
/// abandoned and restarted with `pfn` alone.
#[inline]
pub(crate) fn list_add_or_restart(
    report: &dyn CorruptionReport,
    map: &MemMap,
    list: &PageList,
    pfn: Pfn,
    tail: bool,
) {
    let added = if tail {
        list.try_push_back(map, pfn)
    } else {
        list.try_push_front(map, pfn)
    };
    if let Err(e) = added {
        list_restart(report, map, list, pfn, &e);
    }
}

/// The slow path of [`list_add_or_restart`], out of line so that the add stays small:
/// report the corruption `e`, abandon `list` and restart it with `pfn` alone.
#[cold]
#[inline(never)]
pub(crate) fn list_restart(
    report: &dyn CorruptionReport,
    map: &MemMap,
    list: &PageList,
    pfn: Pfn,
    e: &ListCorruption,
) {
    report.list_corruption(e);
    list.init();
    // An empty list accepts any page of mem_map; `pfn` was checked by the caller.
    let _ = list.try_push_back(map, pfn);
}

/// Where a freed block goes on its list (`fpi_t`).
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum Fpi {
    /// The head, unless merging looks likely (`FPI_NONE`).
    None,
    /// The tail, so it is handed out last (`FPI_TO_TAIL`, used at boot).
    ToTail,
}

/// The kernel's fallback order when a migrate type's own lists are empty (`fallbacks[]`).
const FALLBACKS: [[MigrateType; MIGRATE_PCPTYPES - 1]; MIGRATE_PCPTYPES] = [
    [MigrateType::Reclaimable, MigrateType::Movable],
    [MigrateType::Reclaimable, MigrateType::Unmovable],
    [MigrateType::Unmovable, MigrateType::Movable],
];

/// A zone's free lists, locked.
pub struct Buddy<'a> {
    pub(crate) map: &'a MemMap,
    pub(crate) blocks: &'a Pageblocks,
    pub(crate) zone: &'a Zone,
    pub(crate) area: &'a mut FreeArea,
    pub(crate) report: &'a dyn CorruptionReport,
    /// `watermark_boost_factor` (0: no boosting).
    pub(crate) boost_factor: u64,
}

impl Buddy<'_> {
    /// `__add_to_free_list()`: make `pfn` a free block of `order` on the `mt` list.
    pub(crate) fn add_to_free_list(&mut self, pfn: Pfn, order: u32, mt: MigrateType, tail: bool) {
        let page = self.map.page(pfn);
        page.set_flags(PG_BUDDY);
        page.set_pcp_migratetype(mt as u32);
        page.set_order(order);
        let list = &self.area.free_list[order as usize][mt as usize];
        list_add_or_restart(self.report, self.map, list, pfn, tail);
        self.area.nr_free[order as usize] += 1;
        self.area.nr_free_type[order as usize][mt as usize] += 1;
        self.zone.nr_free_pages.fetch_add(1 << order, Relaxed);
    }

    /// The migrate type a free block's page records, if it is one that exists.
    #[inline]
    fn recorded_migratetype(&self, pfn: Pfn) -> Option<usize> {
        let mt = self.map.page(pfn).pcp_migratetype() as usize;
        if mt < MIGRATE_TYPES {
            return Some(mt);
        }
        self.report
            .bad_page_state(pfn, "free block with a migrate type that does not exist");
        None
    }

    /// `list_del()` of `pfn` from `free_list[order][mt]`; a corrupted list is reported and
    /// abandoned. Returns whether `pfn` was unlinked.
    #[inline]
    fn unlink(&mut self, pfn: Pfn, order: u32, mt: usize) -> bool {
        let list = &self.area.free_list[order as usize][mt];
        match list.try_remove(self.map, pfn) {
            Ok(()) => true,
            Err(e) => {
                self.report.list_corruption(&e);
                list.init();
                false
            }
        }
    }

    /// `del_page_from_free_list()`: take a free block off the `mt` list of its order; it
    /// becomes a plain (blank) page. Returns false (block left alone, list abandoned) when
    /// the list is corrupted.
    pub(crate) fn del_from_free_list(&mut self, pfn: Pfn, order: u32, mt: usize) -> bool {
        if !self.unlink(pfn, order, mt) {
            return false;
        }
        let page = self.map.page(pfn);
        page.set_flags(0);
        page.set_order(0);
        let nr_free = &mut self.area.nr_free[order as usize];
        *nr_free = nr_free.saturating_sub(1);
        let nr_free_type = &mut self.area.nr_free_type[order as usize][mt];
        *nr_free_type = nr_free_type.saturating_sub(1);
        self.zone.nr_free_pages.fetch_sub(1 << order, Relaxed);
        true
    }

    /// `move_to_free_list()`: move a free block to another migrate type's list.
    fn move_to_free_list(&mut self, pfn: Pfn, order: u32, mt: MigrateType) {
        let Some(old) = self.recorded_migratetype(pfn) else {
            return;
        };
        if !self.unlink(pfn, order, old) {
            return;
        }
        self.map.page(pfn).set_pcp_migratetype(mt as u32);
        let list = &self.area.free_list[order as usize][mt as usize];
        list_add_or_restart(self.report, self.map, list, pfn, true);
        let counts = &mut self.area.nr_free_type[order as usize];
        counts[old] = counts[old].saturating_sub(1);
        counts[mt as usize] += 1;
    }

    /// Is `pfn`, the first block on the list of `order` and `mt`, really such a free block:
    /// inside the zone, aligned to its order, `PageBuddy` with that order and migrate type?
    /// (`page_is_buddy()` and the checks of `check_new_pages()`.) One that is not is
    /// reported.
    #[inline]
    fn listed_block_ok(&self, pfn: Pfn, order: u32, mt: usize) -> bool {
        let ok = self.zone.spans(pfn)
            && pfn.is_aligned(order)
            && self.zone.spans(pfn + ((1 << order) - 1))
            && self.map.get(pfn).is_some_and(|p| {
                p.is_buddy() && p.order() == order && p.pcp_migratetype() as usize == mt
            });
        if !ok {
            self.report.bad_page_state(
                pfn,
                "free list entry is not a free block of the list's order",
            );
        }
        ok
    }

    /// `page_is_buddy()`: is `pfn` the head of a free block of exactly `order` in this zone?
    #[inline]
    fn is_buddy(&self, pfn: Pfn, order: u32) -> bool {
        if !self.map.contains(pfn) || !self.zone.spans(pfn) {
            return false;
        }
        let page = self.map.page(pfn);
        page.is_buddy() && page.order() == order
    }

    /// `__free_one_page()`: give a block back, merging with its buddy as long as the
    /// buddy is free and of the same order, in O(order) steps from page state alone.
    pub(crate) fn free_one_page(
        &mut self,
        mut pfn: Pfn,
        mut order: u32,
        mt: MigrateType,
        fpi: Fpi,
    ) {
        // A block coming off a per-CPU list still carries PG_PCP and its order: make its
        // head a plain page first, or it stays marked inside the merged block when it
        // merges as the upper half.
        let head = self.map.page(pfn);
        head.set_flags(0);
        head.set_order(0);
        let mut buddy_pfn = pfn;
        while order < MAX_PAGE_ORDER {
            buddy_pfn = pfn.buddy(order);
            if !self.is_buddy(buddy_pfn, order) {
                break;
            }
            // Above pageblock order, Isolate and HighAtomic blocks never merge with others
            // (never on i386, whose pageblock order is MAX_PAGE_ORDER).
            if order >= self.blocks.order() {
                let buddy_mt = self.blocks.get(buddy_pfn);
                if buddy_mt != mt && (!is_mergeable(mt) || !is_mergeable(buddy_mt)) {
                    break;
                }
            }
            let Some(buddy_mt) = self.recorded_migratetype(buddy_pfn) else {
                break;
            };
            if !self.del_from_free_list(buddy_pfn, order, buddy_mt) {
                break;
            }
            pfn = pfn.min(buddy_pfn);
            order += 1;
        }
        let to_tail = fpi == Fpi::ToTail || self.buddy_merge_likely(pfn, buddy_pfn, order);
        self.add_to_free_list(pfn, order, mt, to_tail);
    }

    /// `buddy_merge_likely()`: if the buddy one order up is free, this block will probably
    /// merge soon, so queue it at the tail where it stays free longer.
    fn buddy_merge_likely(&self, pfn: Pfn, buddy_pfn: Pfn, order: u32) -> bool {
        if order >= MAX_PAGE_ORDER - 1 {
            return false;
        }
        let higher = buddy_pfn.min(pfn);
        self.is_buddy(higher.buddy(order + 1), order + 1)
    }

    /// `expand()`: split a block of order `high` down to `low`, putting the upper halves
    /// back on the `mt` free lists.
    fn expand(&mut self, pfn: Pfn, low: u32, mut high: u32, mt: MigrateType) {
        while high > low {
            high -= 1;
            self.add_to_free_list(pfn + (1 << high), high, mt, false);
        }
    }

    /// `__rmqueue_smallest()`: the smallest free block of at least `order` on the `mt`
    /// lists, split to size.
    pub(crate) fn rmqueue_smallest(&mut self, order: u32, mt: MigrateType) -> Option<Pfn> {
        for current in order..=MAX_PAGE_ORDER {
            let list = &self.area.free_list[current as usize][mt as usize];
            let Some(pfn) = list.first() else {
                continue;
            };
            if !self.listed_block_ok(pfn, current, mt as usize) {
                list.init();
                continue;
            }
            if self.del_from_free_list(pfn, current, mt as usize) {
                self.expand(pfn, order, current, mt);
                return Some(pfn);
            }
        }
        None
    }

    /// `find_suitable_fallback()`: the first fallback type with a free block of `order`,
    /// and whether stealing its whole pageblock is allowed.
    fn find_suitable_fallback(
        &self,
        order: u32,
        start: MigrateType,
    ) -> Option<(MigrateType, bool)> {
        if self.area.nr_free[order as usize] == 0 {
            return None;
        }
        FALLBACKS[start as usize]
            .iter()
            .find(|&&mt| !self.area.free_list[order as usize][mt as usize].is_empty())
            .map(|&mt| (mt, can_steal_fallback(order, start, self.blocks.order())))
    }

    /// `__rmqueue_fallback()`: when `start`'s own lists are empty, take a block from another
    /// type: the largest one, so that the pageblock can be claimed whole and types stay
    /// apart; a movable request that may not steal takes the smallest one instead.
    fn rmqueue_fallback(
        &mut self,
        order: u32,
        start: MigrateType,
        alloc_flags: AllocFlags,
    ) -> bool {
        let pageblock_order = self.blocks.order();
        let min_order = if order < pageblock_order && alloc_flags.contains(AllocFlags::NOFRAGMENT) {
            pageblock_order
        } else {
            order
        };
        let mut found = None;
        for current in (min_order..=MAX_PAGE_ORDER).rev() {
            if let Some((mt, can_steal)) = self.find_suitable_fallback(current, start) {
                if !can_steal && start == MigrateType::Movable && current > order {
                    // find_smallest: stealing would not pay off; take the smallest block.
                    found = (order..=MAX_PAGE_ORDER).find_map(|o| {
                        self.find_suitable_fallback(o, start)
                            .map(|(mt, steal)| (o, mt, steal))
                    });
                } else {
                    found = Some((current, mt, can_steal));
                }
                break;
            }
        }
        let Some((current, fallback_mt, can_steal)) = found else {
            return false;
        };
        let list = &self.area.free_list[current as usize][fallback_mt as usize];
        let Some(pfn) = list.first() else {
            return false;
        };
        if !self.listed_block_ok(pfn, current, fallback_mt as usize) {
            // Abandoned: the caller's next round looks at the other lists.
            list.init();
            return true;
        }
        self.steal_suitable_fallback(pfn, current, start, can_steal, alloc_flags);
        true
    }

    /// `steal_suitable_fallback()`: move the found block (and, when allowed, the free pages
    /// of its whole pageblock) to the requesting type; claim the pageblock when at least
    /// half of it is free or already of a compatible type.
    fn steal_suitable_fallback(
        &mut self,
        pfn: Pfn,
        order: u32,
        start: MigrateType,
        whole_block: bool,
        alloc_flags: AllocFlags,
    ) {
        let old_block_type = self.blocks.get(pfn);
        if old_block_type == MigrateType::HighAtomic {
            return self.move_to_free_list(pfn, order, start);
        }
        let (pageblock_order, pageblock_nr_pages) = (self.blocks.order(), self.blocks.nr_pages());
        if order >= pageblock_order {
            // change_pageblock_range(): the block covers whole pageblocks.
            for i in 0..(1u64 << (order - pageblock_order)) {
                self.blocks.set(pfn + i * pageblock_nr_pages, start);
            }
            self.zone
                .pageblock_steals
                .fetch_add(1 << (order - pageblock_order), Relaxed);
            return self.move_to_free_list(pfn, order, start);
        }
        // "Boost watermarks to increase reclaim pressure to reduce the likelihood of
        // future fallbacks. Wake kswapd now as the node may be balanced overall and kswapd
        // will not wake naturally."
        if self.boost_watermark() && alloc_flags.contains(AllocFlags::KSWAPD) {
            self.zone.boosted_watermark.store(true, Relaxed);
        }
        if !whole_block {
            return self.move_to_free_list(pfn, order, start);
        }
        let (free_pages, movable_pages) = match self.move_freepages_block(pfn, start) {
            Some(counts) if counts.0 > 0 => counts,
            _ => return self.move_to_free_list(pfn, order, start),
        };
        // The scan reaches the found block unless a corrupted page before it made it skip;
        // the block itself must move, or the caller would find it again and again.
        if self.map.page(pfn).pcp_migratetype() != start as u32 {
            self.move_to_free_list(pfn, order, start);
        }
        let alike_pages = if start == MigrateType::Movable {
            movable_pages
        } else if old_block_type == MigrateType::Movable {
            pageblock_nr_pages - (free_pages + movable_pages)
        } else {
            0
        };
        // "free_pages + alike_pages >= (1 << (pageblock_order-1))": half a pageblock.
        if free_pages + alike_pages >= pageblock_nr_pages / 2 {
            self.blocks.set(pfn, start);
            self.zone.pageblock_steals.fetch_add(1, Relaxed);
        }
    }

    /// `boost_watermark()` (6.6): raise the zone's boost by a pageblock, up to
    /// `watermark_boost_factor`/10000 of the high watermark (at least a pageblock); not in
    /// zones under four pageblocks, nor before the high watermark is set.
    fn boost_watermark(&self) -> bool {
        let pageblock_nr_pages = self.blocks.nr_pages();
        if self.boost_factor == 0 || pageblock_nr_pages * 4 > self.zone.managed_pages {
            return false;
        }
        let high = self.zone.watermark[crate::page_alloc::Watermark::High as usize];
        let max_boost = crate::sysctl::mult_frac(high, self.boost_factor, 10_000);
        if max_boost == 0 {
            return false;
        }
        let max_boost = max_boost.max(pageblock_nr_pages);
        let boost = self.zone.watermark_boost.load(Relaxed);
        self.zone
            .watermark_boost
            .store((boost + pageblock_nr_pages).min(max_boost), Relaxed);
        true
    }

    /// `move_freepages_block()`: move every free block inside `pfn`'s pageblock to the `mt`
    /// lists; return (free pages moved, movable pages in use), or `None` when the pageblock
    /// crosses the zone boundary.
    pub(crate) fn move_freepages_block(&mut self, pfn: Pfn, mt: MigrateType) -> Option<(u64, u64)> {
        let start = self.blocks.start_pfn(pfn);
        let end = start + self.blocks.nr_pages();
        if !self.zone.spans(start) || !self.zone.spans(end - 1) {
            return None;
        }
        let (mut free, mut movable) = (0, 0);
        let mut cur = start;
        while cur < end {
            let page = self.map.page(cur);
            let order = page.order();
            if page.is_buddy() {
                if order > MAX_PAGE_ORDER || !cur.is_aligned(order) {
                    self.report
                        .bad_page_state(cur, "PageBuddy with an order that cannot be");
                    cur += 1;
                    continue;
                }
                self.move_to_free_list(cur, order, mt);
                free += 1 << order;
                cur += 1 << order;
                continue;
            }
            // The kernel counts PageLRU/__PageMovable pages, every page of a movable folio;
            // here, every page of a block allocated movable.
            if page.refcount() > 0
                && page.pcp_migratetype() == MigrateType::Movable as u32
                && order <= MAX_PAGE_ORDER
            {
                let n = (1u64 << order).min(end - cur);
                movable += n;
                cur += n;
                continue;
            }
            cur += 1;
        }
        Some((free, movable))
    }

    /// `__rmqueue()`: the requested type's own lists, then fallback, then retry.
    pub(crate) fn rmqueue(
        &mut self,
        order: u32,
        mt: MigrateType,
        alloc_flags: AllocFlags,
    ) -> Option<Pfn> {
        loop {
            if let Some(pfn) = self.rmqueue_smallest(order, mt) {
                return Some(pfn);
            }
            if !self.rmqueue_fallback(order, mt, alloc_flags) {
                return None;
            }
        }
    }
}

/// `migratetype_is_mergeable()`: the per-CPU types merge freely with each other.
const fn is_mergeable(mt: MigrateType) -> bool {
    (mt as usize) < MIGRATE_PCPTYPES
}

/// `can_steal_fallback()`: may a request of `order` and type `start` claim a whole
/// pageblock of another type? Large requests always; unmovable and reclaimable ones always,
/// to keep them together; movable ones only from `pageblock_order / 2` up (order 4 on
/// x86_64, 5 on i386). 6.6 tests `order >= pageblock_order` first, implied by the second
/// test; `page_group_by_mobility_disabled` is not modelled.
const fn can_steal_fallback(order: u32, start: MigrateType, pageblock_order: u32) -> bool {
    order >= pageblock_order / 2
        || matches!(start, MigrateType::Reclaimable | MigrateType::Unmovable)
}
