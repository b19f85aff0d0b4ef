//! The rest of the page allocator's API, named after the kernel's: `__get_free_pages`,
//! `free_pages`, `page_to_pfn` / `pfn_to_page` / `page_address` / `virt_to_page`,
//! `split_page`, and the free-area counts `/proc` reads.

use crate::addr::{Pfn, PhysAddr, VirtAddr, MAX_PAGE_ORDER};
use crate::gfp::Gfp;
use crate::mm_types::Page;
use crate::platform::Platform;
use crate::Mm;

use super::*;

impl<P: Platform> Mm<P> {
    /// `__get_free_pages()`: `alloc_pages` and return the direct-map address.
    pub fn __get_free_pages(&self, gfp: Gfp, order: u32) -> Result<VirtAddr, PageAllocError> {
        if gfp.contains(Gfp::__GFP_HIGHMEM) {
            return Err(PageAllocError::HighMemHasNoAddress);
        }
        let page = self.alloc_pages(gfp, order)?;
        self.page_address(page)
            .ok_or(PageAllocError::HighMemHasNoAddress)
    }

    /// `get_zeroed_page()`.
    pub fn get_zeroed_page(&self, gfp: Gfp) -> Result<VirtAddr, PageAllocError> {
        self.__get_free_pages(gfp | Gfp::__GFP_ZERO, 0)
    }

    /// `free_pages(addr, order)`: free by direct-map address; address 0 is a no-op.
    pub fn free_pages(&self, addr: VirtAddr, order: u32) -> Result<(), FreeError> {
        if addr.0 == 0 {
            return Ok(());
        }
        let page = self.virt_to_page(addr)?;
        self.__free_pages(page, order)
    }

    /// `page_to_pfn()`. A descriptor that is not in `mem_map` (the scratch one that a
    /// lookup past it returned) has no PFN: it gets [`INVALID_PFN`], which no check
    /// accepts and whose address the door refuses, and the fault is recorded for the
    /// next report.
    pub fn page_to_pfn(&self, page: &Page) -> Pfn {
        self.mem_map.pfn_of(page).unwrap_or_else(|| {
            self.mem_map.page(INVALID_PFN);
            INVALID_PFN
        })
    }

    /// `pfn_to_page()`, refusing PFNs that `pfn_valid()` refuses.
    pub fn pfn_to_page(&self, pfn: Pfn) -> Result<&Page, FreeError> {
        if !self.pfn_valid(pfn) {
            return Err(FreeError::InvalidPfn(pfn));
        }
        Ok(self.mem_map.page(pfn))
    }

    /// `pfn_valid()`: described by `mem_map` and backed by RAM.
    pub fn pfn_valid(&self, pfn: Pfn) -> bool {
        self.mem_map.contains(pfn) && self.memblock.is_memory(pfn.phys().0, pfn.phys().0 + 1)
    }

    /// `page_address()`: the direct-map address, or `None` for a HighMem page.
    pub fn page_address(&self, page: &Page) -> Option<VirtAddr> {
        let phys = self.page_to_pfn(page).phys();
        self.layout.phys_to_virt(phys.0).map(VirtAddr)
    }

    /// `virt_to_page()` for a direct-map address.
    pub fn virt_to_page(&self, addr: VirtAddr) -> Result<&Page, FreeError> {
        let phys = self
            .layout
            .virt_to_phys(addr.0)
            .ok_or(FreeError::NotDirectMapped(addr))?;
        self.pfn_to_page(PhysAddr(phys).pfn())
    }

    /// `page_zone()`.
    pub fn page_zone(&self, page: &Page) -> &Zone {
        let pfn = self.page_to_pfn(page);
        self.zone_of_pfn(pfn).unwrap_or_else(|| {
            // Only a foreign descriptor lies in no zone (its fault is recorded).
            self.mem_map.page(INVALID_PFN);
            &self.page_alloc.zones[0]
        })
    }

    /// The kernel virtual address of a page's descriptor (what `struct page *` holds):
    /// `mem_map` lives in the direct map.
    pub fn struct_page_address(&self, page: &Page) -> VirtAddr {
        let pfn = self.page_to_pfn(page);
        VirtAddr(self.mem_map.struct_page_va(self.layout.page_offset, pfn))
    }

    /// The descriptor at a `struct page *` address, if it is one.
    pub fn page_at_struct_address(&self, addr: VirtAddr) -> Option<&Page> {
        let pfn = self
            .mem_map
            .pfn_at_struct_va(self.layout.page_offset, addr.0)?;
        self.mem_map.get(pfn)
    }

    /// Where boot placed `mem_map` in physical memory.
    pub fn mem_map_phys(&self) -> PhysAddr {
        PhysAddr(self.mem_map.phys())
    }

    /// Pages allocated from a zone (`pgalloc_<zone>`, summed over the CPUs).
    pub fn pgalloc(&self, zone: &Zone) -> u64 {
        self.percpu.sum(|e| &e.pgalloc[zone.idx])
    }

    /// Pages freed (`pgfree`, summed over the CPUs).
    pub fn pgfree(&self) -> u64 {
        self.percpu.sum(|e| &e.pgfree)
    }

    /// The migrate type of the pageblock holding `pfn`.
    pub fn pageblock_migratetype(&self, pfn: Pfn) -> MigrateType {
        self.page_alloc.pageblocks.get(pfn)
    }

    /// `split_page(page, order)`: a non-compound allocation of 2^order pages becomes 2^order
    /// order-0 allocations, each with its own reference, to be freed one by one (a huge
    /// vmalloc does this so that each small page can be treated on its own).
    pub fn split_page(&self, page: &Page, order: u32) -> Result<(), FreeError> {
        let pfn = self.mem_map.pfn_of(page).ok_or(FreeError::ForeignPage)?;
        // Before the order is compared with the page's: a larger one is no order the
        // allocation could have had (and [`FreeError::WrongOrder`] keeps it in a byte).
        if order > MAX_PAGE_ORDER {
            return Err(FreeError::OrderTooLarge(order));
        }
        if page.is_head()
            || page.is_tail()
            || page.is_slab()
            || page.refcount() != 1
            || page.order() != order
        {
            return Err(FreeError::WrongOrder {
                pfn,
                freed: order as u8,
                allocated: page.order(),
            });
        }
        if !self.block_in_one_zone(pfn, order) {
            return Err(FreeError::OrderTooLarge(order));
        }
        let mt = page.pcp_migratetype();
        for p in pfn.range_to(pfn + (1 << order)) {
            let sub = self.mem_map.page(p);
            sub.set_flags(0);
            sub.set_order(0);
            sub.set_pcp_migratetype(mt);
            sub.set_refcount(1);
        }
        Ok(())
    }

    /// The largest order with a free block in the zone's buddy lists, if any (per-CPU
    /// lists not included).
    pub fn largest_free_order(&self, zone: &Zone) -> Option<u32> {
        zone.free_area
            .lock_irqsave(&self.platform)
            .largest_free_order()
    }

    /// Free blocks per order and migrate type of one zone, from the allocator's counters
    /// (`nr_free` and kmemlab's per-type [`FreeArea::nr_free_type`]) under the zone lock:
    /// O(orders × migrate types) whatever the zone's size, for samples taken often (the
    /// replay's memory time series). [`Mm::check`] holds the counters to the lists.
    pub fn free_area_counts(&self, zone: &Zone) -> FreeAreaSnapshot {
        let area = zone.free_area.lock_irqsave(&self.platform);
        let mut snap = FreeAreaSnapshot {
            nr_free: area.nr_free,
            per_type: [[0; crate::addr::NR_PAGE_ORDERS]; MIGRATE_TYPES],
        };
        for (order, counts) in area.nr_free_type.iter().enumerate() {
            for (mt, &n) in counts.iter().enumerate() {
                snap.per_type[mt][order] = n;
            }
        }
        snap
    }

    /// Free blocks per order and migrate type of one zone, under its lock (for `/proc`):
    /// the per-type counts by walking the lists, as 6.6's `pagetypeinfo_showfree_print()`
    /// does, so O(free blocks); [`Mm::free_area_counts`] reads counters instead.
    pub fn free_area_snapshot(&self, zone: &Zone) -> FreeAreaSnapshot {
        let area = zone.free_area.lock_irqsave(&self.platform);
        let mut snap = FreeAreaSnapshot {
            nr_free: area.nr_free,
            per_type: [[0; crate::addr::NR_PAGE_ORDERS]; MIGRATE_TYPES],
        };
        for (order, lists) in area.free_list.iter().enumerate() {
            for (mt, list) in lists.iter().enumerate() {
                // Bounded by the zone's pages; a broken link ends the count, reported.
                let mut n = 0;
                for pfn in list.iter_checked(&self.mem_map, zone.spanned_pages) {
                    match pfn {
                        Ok(_) => n += 1,
                        Err(e) => {
                            self.report_list_corruption(&e);
                            break;
                        }
                    }
                }
                snap.per_type[mt][order] = n;
            }
        }
        snap
    }
}
