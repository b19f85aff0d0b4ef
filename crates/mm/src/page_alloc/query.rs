//! Read-only questions about free pages for tools (crash's `kmem ADDR` on a free page,
//! `kmem -f`): which free block holds a PFN, and whether the lists really hold it.
//!
//! A `PageBuddy` or per-CPU mark read from `struct page` is a claim, not a fact: each
//! answer says whether the block was found on the list its marks name, walking that list
//! bounded by the zone's pages. Nothing is changed and nothing is reported.

use crate::addr::{Pfn, MAX_PAGE_ORDER};
use crate::mm_types::PG_PCP;
use crate::page_alloc::pcp::{pindex_to_order, NR_PCP_LISTS};
use crate::page_alloc::{MigrateType, Zone, MIGRATE_TYPES};
use crate::platform::Platform;
use crate::Mm;

/// Which kind of free list holds a block.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum FreeList {
    /// The zone's buddy list `free_area[order].free_list[migratetype]`.
    Buddy,
    /// CPU `n`'s per-CPU list of the zone (`per_cpu_pages.lists[pindex]`).
    PerCpu(usize),
}

/// A free block and the list it is on.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct FreeBlock {
    /// The block's first PFN.
    pub head: Pfn,
    /// Its order.
    pub order: u32,
    /// The migrate type of the list it was found on; the pageblock's when it was found
    /// on none.
    pub migratetype: MigrateType,
    /// The kind of list its page flags claim.
    pub list: FreeList,
    /// Was it found on that list? (`false`: the marks in `struct page` are corrupted or
    /// stale.)
    pub on_list: bool,
}

impl<P: Platform> Mm<P> {
    /// The free block (buddy or per-CPU list) that holds `pfn`, if `struct page` marks
    /// one: the aligned head at each order whose mark and order cover `pfn`, then checked
    /// against the lists.
    pub fn free_block_of(&self, pfn: Pfn) -> Option<FreeBlock> {
        let zone = self.zone_of_pfn(pfn)?;
        (0..=MAX_PAGE_ORDER).find_map(|order| {
            let head = pfn.align_down(order);
            let page = self.mem_map.get(head)?;
            if page.order() != order || page.is_tail() {
                return None;
            }
            if page.is_buddy() {
                Some(self.find_on_buddy_lists(zone, head, order))
            } else if page.flags() & PG_PCP != 0 {
                Some(self.find_on_pcp_lists(zone, head, order))
            } else {
                None
            }
        })
    }

    fn find_on_buddy_lists(&self, zone: &Zone, head: Pfn, order: u32) -> FreeBlock {
        let area = zone.free_area.lock_irqsave(&self.platform);
        let found = (0..MIGRATE_TYPES).find(|&mt| {
            area.free_list[order as usize][mt]
                .iter_checked(&self.mem_map, zone.spanned_pages)
                .map_while(Result::ok)
                .any(|p| p == head)
        });
        FreeBlock {
            head,
            order,
            migratetype: found
                .map_or_else(|| self.pageblock_migratetype(head), MigrateType::from_index),
            list: FreeList::Buddy,
            on_list: found.is_some(),
        }
    }

    fn find_on_pcp_lists(&self, zone: &Zone, head: Pfn, order: u32) -> FreeBlock {
        let mut block = FreeBlock {
            head,
            order,
            migratetype: self.pageblock_migratetype(head),
            list: FreeList::PerCpu(0),
            on_list: false,
        };
        for cpu in 0..self.platform.nr_cpus() {
            let pcp = &self.percpu.get(cpu).pcp[zone.idx];
            let pageblock_order = self.pageblock_order();
            for pindex in
                (0..NR_PCP_LISTS).filter(|&i| pindex_to_order(i, pageblock_order) == order)
            {
                let on = pcp.lists[pindex]
                    .iter_checked(&self.mem_map, zone.spanned_pages)
                    .map_while(Result::ok)
                    .any(|p| p == head);
                if on {
                    let mt = self.mem_map.page(head).pcp_migratetype() as usize;
                    block.migratetype = MigrateType::from_index(mt.min(MIGRATE_TYPES - 1));
                    block.list = FreeList::PerCpu(cpu);
                    block.on_list = true;
                    return block;
                }
            }
        }
        block
    }
}
