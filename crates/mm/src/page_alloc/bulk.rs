//! The bulk page allocator: `__alloc_pages_bulk()` of Linux 6.6 (`mm/page_alloc.c`) and its
//! two forms, `alloc_pages_bulk_array()` (fill the empty slots of an array) and
//! `alloc_pages_bulk_list()` (add pages to a list threaded through `struct page`).
//!
//! Order-0 pages only, as in the kernel. The zone is chosen once (the first of the zonelist
//! whose low watermark stays met after the whole request), this CPU's per-CPU list lock is
//! taken once, and every page comes off the per-CPU list by `__rmqueue_pcplist()` (which
//! refills the list from the buddy lists in batches). When that path cannot be used (one
//! page wanted, no zone above its watermark, the per-CPU lock busy, or the list empty
//! before the first page) a single `__alloc_pages()` is made instead, with its reclaim and
//! failure report. The result is how many slots are populated: fewer than asked is not an
//! error, and what was had is kept (there is no all-or-nothing here).
//!
//! What the single path does to a page holds here too: `prep_new_page()` (refcount,
//! `__GFP_ZERO`, compound bits are not asked for with order 0), and the per-CPU
//! `pgalloc_<zone>` events, counted once for the batch as `__count_zid_vm_events(PGALLOC,
//! zone_idx(zone), nr_account)` does.

use crate::gfp::Gfp;
use crate::memory_model::PageList;
use crate::mm_types::Page;
use crate::page_alloc::buddy::list_add_or_restart;
use crate::page_alloc::AllocFlags;
use crate::platform::Platform;
use crate::vmstat::VmEvents;
use crate::Mm;

/// Where the bulk allocator puts its pages: the slots of an array (some of them already
/// populated) or a list.
trait PageSink {
    /// Is slot `i` already populated (`page_array[i] != NULL`)? A list has no slots.
    fn populated(&self, i: usize) -> bool;
    /// Put the page at `pfn` in slot `i` (or on the list).
    fn put(&mut self, i: usize, pfn: u64);
}

/// `page_array`: a slice of optional pages.
struct ArraySink<'s, 'a, P: Platform> {
    mm: &'a Mm<P>,
    array: &'s mut [Option<&'a Page>],
}

impl<P: Platform> PageSink for ArraySink<'_, '_, P> {
    fn populated(&self, i: usize) -> bool {
        self.array.get(i).is_some_and(|slot| slot.is_some())
    }
    fn put(&mut self, i: usize, pfn: u64) {
        if let Some(slot) = self.array.get_mut(i) {
            *slot = Some(self.mm.mem_map.page(pfn));
        }
    }
}

/// `page_list`: `list_add(&page->lru, page_list)`.
struct ListSink<'a, P: Platform> {
    mm: &'a Mm<P>,
    list: &'a PageList,
}

impl<P: Platform> PageSink for ListSink<'_, P> {
    fn populated(&self, _: usize) -> bool {
        false
    }
    fn put(&mut self, _: usize, pfn: u64) {
        list_add_or_restart(self.mm, &self.mm.mem_map, self.list, pfn, false);
    }
}

/// A callback for each page, by slot (no slot is populated beforehand).
struct FnSink<F: FnMut(usize, u64)>(F);

impl<F: FnMut(usize, u64)> PageSink for FnSink<F> {
    fn populated(&self, _: usize) -> bool {
        false
    }
    fn put(&mut self, i: usize, pfn: u64) {
        (self.0)(i, pfn)
    }
}

impl<P: Platform> Mm<P> {
    /// `alloc_pages_bulk_array(gfp, nr_pages, page_array)`: fill the empty (`None`) slots of
    /// `page_array` with order-0 pages, taking this CPU's per-CPU list lock once for the
    /// batch. Slots already holding a page are left alone. Returns the number of populated
    /// slots counted from the start: the kernel's `nr_populated` (the array's length when
    /// every slot got a page). Fewer means memory ran short; the pages had are kept.
    ///
    /// ```
    /// use kmemlab_mm::Gfp;
    /// use kmemlab_sim::{Machine, MachineConfig};
    ///
    /// let m = Machine::new(MachineConfig { ram: 64 << 20, cpus: 1, ..Default::default() }).unwrap();
    /// m.run(|mm| {
    ///     let mut pages = [None; 16];
    ///     assert_eq!(mm.alloc_pages_bulk_array(Gfp::GFP_KERNEL, &mut pages), 16);
    ///     for page in pages.into_iter().flatten() {
    ///         mm.__free_pages(page, 0).unwrap();
    ///     }
    /// });
    /// ```
    pub fn alloc_pages_bulk_array<'a>(
        &'a self,
        gfp: Gfp,
        page_array: &mut [Option<&'a Page>],
    ) -> usize {
        let nr_pages = page_array.len();
        self.__alloc_pages_bulk(
            gfp,
            nr_pages,
            &mut ArraySink {
                mm: self,
                array: page_array,
            },
        )
    }

    /// `alloc_pages_bulk_list(gfp, nr_pages, list)`: add up to `nr_pages` order-0 pages to
    /// `list` (threaded through the pages' `lru` links, as the kernel's `list_head` is),
    /// taking this CPU's per-CPU list lock once. Returns how many were added. Take each page
    /// off the list before freeing it.
    ///
    /// ```
    /// use kmemlab_mm::memory_model::PageList;
    /// use kmemlab_mm::Gfp;
    /// use kmemlab_sim::{Machine, MachineConfig};
    ///
    /// let m = Machine::new(MachineConfig { ram: 64 << 20, cpus: 1, ..Default::default() }).unwrap();
    /// m.run(|mm| {
    ///     let list = PageList::new();
    ///     assert_eq!(mm.alloc_pages_bulk_list(Gfp::GFP_KERNEL, 8, &list), 8);
    ///     while let Ok(Some(pfn)) = list.try_pop_front(mm.mem_map()) {
    ///         mm.__free_pages(mm.mem_map().page(pfn), 0).unwrap();
    ///     }
    /// });
    /// ```
    pub fn alloc_pages_bulk_list<'a>(
        &'a self,
        gfp: Gfp,
        nr_pages: usize,
        list: &'a PageList,
    ) -> usize {
        self.__alloc_pages_bulk(gfp, nr_pages, &mut ListSink { mm: self, list })
    }

    /// The bulk allocator with a callback: up to `nr_pages` order-0 pages, each handed to
    /// `store(i, pfn)` for slot `i`; returns how many (vmalloc's page array in RAM uses it).
    pub(crate) fn alloc_pages_bulk_fn(
        &self,
        gfp: Gfp,
        nr_pages: usize,
        store: impl FnMut(usize, u64),
    ) -> usize {
        self.__alloc_pages_bulk(gfp, nr_pages, &mut FnSink(store))
    }

    /// `__alloc_pages_bulk()` (Linux 6.6).
    fn __alloc_pages_bulk(&self, gfp: Gfp, nr_pages: usize, sink: &mut impl PageSink) -> usize {
        // Skip populated array elements to determine if any pages need to be allocated.
        let mut nr_populated = 0;
        while nr_populated < nr_pages && sink.populated(nr_populated) {
            nr_populated += 1;
        }
        if nr_pages == nr_populated {
            return nr_populated;
        }
        // Use the single page allocator for one page.
        if nr_pages - nr_populated == 1 {
            return self.alloc_pages_bulk_one(gfp, nr_populated, sink);
        }
        // prepare_alloc_pages(): a refused request (bad flags, the might_sleep splat) is
        // `goto out` with what was there.
        let Ok(ac) = self.prepare_alloc_pages(gfp, 0) else {
            return nr_populated;
        };
        let flags = AllocFlags::WMARK_LOW;
        // Find an allowed local zone that meets the low watermark after the whole batch.
        let zone = self.zonelist(ac.highest_zoneidx).find(|zone| {
            let mark = zone.wmark(flags.watermark()) + nr_pages as u64;
            self.zone_watermark_fast(zone, 0, mark, ac.highest_zoneidx, flags)
        });
        let Some(zone) = zone else {
            return self.alloc_pages_bulk_one(gfp, nr_populated, sink);
        };
        // spin_trylock may fail due to a parallel drain or IRQ reentrancy.
        let pcp = &self.percpu.get(ac.cpu).pcp[zone.idx];
        if !pcp.lock.try_lock(ac.cpu) {
            return self.alloc_pages_bulk_one(gfp, nr_populated, sink);
        }
        let mut nr_account = 0u64;
        while nr_populated < nr_pages {
            // Skip existing pages.
            if sink.populated(nr_populated) {
                nr_populated += 1;
                continue;
            }
            let Some((pfn, page)) = self.__rmqueue_pcplist(zone, 0, ac.migratetype, flags, pcp)
            else {
                // Try and allocate at least one page.
                if nr_account == 0 {
                    pcp.lock.unlock();
                    return self.alloc_pages_bulk_one(gfp, nr_populated, sink);
                }
                break;
            };
            nr_account += 1;
            self.prep_new_page(pfn, page, &ac);
            sink.put(nr_populated, pfn);
            nr_populated += 1;
        }
        pcp.lock.unlock();
        self.percpu.get(ac.cpu).events.pgalloc[zone.idx].add(nr_account);
        if self.page_alloc.zonelists[ac.highest_zoneidx].preferred != Some(zone.idx) {
            VmEvents::add(&self.events().zone_fallback, nr_account);
        }
        nr_populated
    }

    /// The `failed:` label of `__alloc_pages_bulk()`: one page from `__alloc_pages()` (with
    /// its slow path and failure report) into slot `nr_populated`.
    fn alloc_pages_bulk_one(
        &self,
        gfp: Gfp,
        nr_populated: usize,
        sink: &mut impl PageSink,
    ) -> usize {
        match self.alloc_pages(gfp, 0) {
            Ok(page) => {
                let pfn = self.page_to_pfn(page).0;
                sink.put(nr_populated, pfn);
                nr_populated + 1
            }
            Err(_) => nr_populated,
        }
    }
}
