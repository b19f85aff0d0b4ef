//! The free path (`mm/page_alloc.c`, 6.6): `__free_pages` → `free_pages_check` (the
//! kernel's `BUG: Bad page state`) → `free_pages_prepare` (descriptors reset,
//! `init_on_free`) → this CPU's list (`free_unref_page`, `free_unref_page_commit`,
//! `free_pcppages_bulk`) or the buddy lists (`free_one_page`); draining the per-CPU lists.

use core::fmt;

use core::sync::atomic::Ordering::Relaxed;

use crate::addr::{Pfn, MAX_PAGE_ORDER, PAGE_SIZE};
use crate::mm_types::{Page, PG_BUDDY, PG_HEAD, PG_PCP, PG_RESERVED, PG_SLAB, PG_TAIL};
use crate::percpu::PerCpu;
use crate::platform::Platform;
use crate::vmstat::VmEvents;
use crate::Mm;

use super::buddy::{list_restart, Fpi};
use super::pcp::{order_to_pindex, pcp_allowed_order, pindex_to_order, NR_PCP_LISTS};
use super::*;

impl<P: Platform> Mm<P> {
    /// `__free_pages(page, order)`: give back an allocation. A page that is not the head of
    /// a live allocation of this order is refused with the kernel's bad-page report.
    #[inline]
    pub fn __free_pages(&self, page: &Page, order: u32) -> Result<(), FreeError> {
        // As `alloc_pages`: the order-0 free, nearly every one, with its order a constant;
        // the error in two words, in two registers, unpacked here.
        let freed = if order == 0 {
            self.__free_pages_0(page)
        } else {
            self.__free_pages_n(page, order)
        };
        freed.map_err(FreeErrorWords::unpack_cold)
    }

    /// [`Mm::__free_pages`] of order 0.
    #[inline(never)]
    fn __free_pages_0(&self, page: &Page) -> Result<(), FreeErrorWords> {
        self.__free_pages_order(page, 0)
            .map_err(FreeErrorWords::pack)
    }

    /// [`Mm::__free_pages`] of any order.
    #[inline(never)]
    fn __free_pages_n(&self, page: &Page, order: u32) -> Result<(), FreeErrorWords> {
        self.__free_pages_order(page, order)
            .map_err(FreeErrorWords::pack)
    }

    /// The body of [`Mm::__free_pages`], in line in both of its copies.
    #[inline(always)]
    fn __free_pages_order(&self, page: &Page, order: u32) -> Result<(), FreeError> {
        let pfn = self.mem_map.pfn_of(page).ok_or(FreeError::ForeignPage)?;
        let (zone_idx, flags) = self.free_pages_check(pfn, page, order)?;
        // put_page_testzero(), for the reference that is the only one (1 -> 0); any other
        // count goes out of line.
        if !page.put_testzero() {
            return self.__free_pages_not_only_ref(zone_idx, pfn, (page, flags), order);
        }
        self.free_the_page(zone_idx, pfn, (page, flags), order);
        Ok(())
    }

    /// 6.6 `__free_pages()` when the reference dropped was not the only one (the checks of
    /// [`Mm::free_pages_check`] passed; `flags` are the page's as they read them, before
    /// the reference is dropped, as the kernel reads `PageHead()`): `put_page_testzero()`
    /// drops it, and if that was the last after all (another holder let go meanwhile) the
    /// block is freed; otherwise the page stays with the other holders, and a block that is
    /// not a compound head gives back all but its first page, `while (order-- > 0)
    /// free_the_page(page + (1 << order), order)` (mm/page_alloc.c:4523, 6.6.63): the
    /// last holder's `put_page()` frees that page alone, so its recorded order becomes 0.
    /// A count of 0 (the page was freed meanwhile) is the bad page it always was.
    #[cold]
    #[inline(never)]
    fn __free_pages_not_only_ref(
        &self,
        zone_idx: usize,
        pfn: Pfn,
        (page, flags): (&Page, u32),
        order: u32,
    ) -> Result<(), FreeError> {
        match page.put_ref() {
            None => {
                let e = FreeError::AlreadyFree(pfn);
                self.bad_page(pfn, &e);
                Err(e)
            }
            Some(0) => {
                self.free_the_page(zone_idx, pfn, (page, flags), order);
                Ok(())
            }
            Some(_) => {
                if flags & PG_HEAD == 0 && order > 0 {
                    // The page left behind is an order-0 page from now on, before its
                    // parts go, so that another holder's `__free_pages(page, 0)` finds
                    // it so as soon as possible (a holder between the drop above and
                    // this store is still told of a bad page: kmemlab records the order
                    // the kernel does not).
                    page.set_order(0);
                    for part in (0..order).rev() {
                        self.free_tail_part(zone_idx, pfn + (1 << part), part);
                    }
                }
                Ok(())
            }
        }
    }

    /// `free_the_page(page + (1 << order), order)` for a part of a non-compound block
    /// whose first page keeps a reference: the part's first page must read as a page
    /// inside an allocated block (`free_page_is_bad()`: no reference, none of the flags
    /// checked at free), or it is reported and the part is not freed, as
    /// `free_pages_prepare()` refuses it. The block was checked to lie in the zone
    /// `zone_idx`, aligned, so each part does too.
    fn free_tail_part(&self, zone_idx: usize, pfn: Pfn, order: u32) {
        let page = self.mem_map.page(pfn);
        let flags = page.flags();
        let checked = PG_RESERVED | PG_BUDDY | PG_PCP | PG_HEAD | PG_TAIL | PG_SLAB;
        if page.refcount() != 0 {
            return self.bad_page_state(pfn, "nonzero _refcount");
        }
        if flags & checked != 0 {
            return self.bad_page_state(pfn, "PAGE_FLAGS_CHECK_AT_FREE flag(s) set");
        }
        self.free_the_page(zone_idx, pfn, (page, flags), order);
    }

    /// `free_the_page()` once the last reference is gone: `free_pages_prepare()` (with
    /// `debug_check_no_obj_freed()`), then this CPU's list for the orders it caches
    /// (`free_unref_page()`), the buddy lists for the rest (`__free_pages_ok()`). `page` is
    /// the descriptor of `pfn`, `flags` its flags as read, `zone_idx` its zone's index.
    #[inline(always)]
    fn free_the_page(&self, zone_idx: usize, pfn: Pfn, (page, flags): (&Page, u32), order: u32) {
        let zone = &self.page_alloc.zones[zone_idx];
        self.debug_check_no_obj_freed(pfn.phys(), (PAGE_SIZE as u64) << order);
        // The current CPU and its per-CPU area, looked up once for both steps.
        let cpu = self.platform.smp_processor_id();
        let this_cpu = self.percpu.get(cpu);
        self.free_pages_prepare(pfn, (page, flags), order, this_cpu);
        if pcp_allowed_order(order, self.pageblock_order()) {
            let pcp = &this_cpu.pcp[zone_idx];
            self.free_unref_page(zone, pfn, page, order, (cpu, pcp));
        } else {
            let mt = self.page_alloc.pageblocks.get(pfn);
            self.free_one_page(zone, (pfn, page), order, mt);
        }
    }

    /// The checks of `free_pages_prepare()` / `free_page_is_bad()`, made before anything
    /// changes so a refused free leaves memory exactly as it was; the index of the zone the
    /// block lies in, whole, and the page's flags as read, when they pass. `page` is the descriptor of
    /// `pfn` (the caller has it, as the kernel passes `struct page *`). The words are read
    /// once each, as free_page_is_bad() tests `page->flags` once; which check failed is
    /// worked out only when one did ([`Mm::free_pages_refused`]).
    #[inline(always)]
    fn free_pages_check(
        &self,
        pfn: Pfn,
        page: &Page,
        order: u32,
    ) -> Result<(usize, u32), FreeError> {
        // The zone as its index in `zones`: a constant on each way out of the search, so
        // that the per-CPU lists are indexed with it unchecked.
        let zone = self.page_alloc.zones.iter().position(|z| z.spans(pfn));
        let (flags, refcount, allocated) = (page.flags(), page.refcount(), page.order());
        if order <= MAX_PAGE_ORDER
            && flags & (PG_RESERVED | PG_SLAB | PG_TAIL) == 0
            && refcount != 0
            && allocated == order
            && pfn.is_aligned(order)
            && let Some(idx) = zone
            // Its first page is in the zone: so is the whole of an order-0 block.
            && (order == 0 || self.page_alloc.zones[idx].spans(pfn + ((1 << order) - 1)))
        {
            return Ok((idx, flags));
        }
        Err(self.free_pages_refused(pfn, order, flags, refcount, allocated))
    }

    /// Why [`Mm::free_pages_check`] refused the free of `pfn` at `order`, given the
    /// page's flags, refcount and order as it read them: the first failing check in
    /// `free_page_is_bad()`'s order, reported with `bad_page()`.
    #[cold]
    #[inline(never)]
    fn free_pages_refused(
        &self,
        pfn: Pfn,
        order: u32,
        flags: u32,
        refcount: u32,
        allocated: u32,
    ) -> FreeError {
        let err = if order > MAX_PAGE_ORDER {
            FreeError::OrderTooLarge(order)
        } else if flags & PG_RESERVED != 0 {
            FreeError::Reserved(pfn)
        } else if flags & PG_SLAB != 0 {
            FreeError::SlabPage(pfn)
        } else if flags & PG_TAIL != 0 {
            FreeError::TailPage(pfn)
        } else if refcount == 0 {
            FreeError::AlreadyFree(pfn)
        } else {
            // The recorded order differs, the block is misaligned, or it does not lie
            // wholly in one zone (a page of mem_map outside every zone included).
            FreeError::WrongOrder {
                pfn,
                freed: order as u8,
                allocated,
            }
        };
        self.bad_page(pfn, &err);
        err
    }

    /// Is the block of `2^order` pages at `pfn` aligned to its order and inside one zone?
    pub(super) fn block_in_one_zone(&self, pfn: Pfn, order: u32) -> bool {
        pfn.is_aligned(order)
            && self
                .zone_of_pfn(pfn)
                .is_some_and(|z| z.spans(pfn + ((1 << order) - 1)))
    }

    /// `bad_page()`: the kernel's report of a page in a state it should not be in.
    fn bad_page(&self, pfn: Pfn, err: &FreeError) {
        self.bad_page_state(pfn, err.reason());
    }

    /// `bad_page(page, reason)` (`mm/page_alloc.c`, 6.6): `BUG: Bad page state`, the
    /// `dump_page()` lines, and taint `B`. For a PFN without a descriptor only the first
    /// line and the reason are printed.
    #[cold]
    #[inline(never)]
    pub(crate) fn bad_page_state(&self, pfn: Pfn, reason: &str) {
        VmEvents::add(&self.events().bug_bad_page, 1);
        self.add_taint(crate::report::taint::BAD_PAGE);
        let Some(page) = self.mem_map.get(pfn) else {
            self.printk(format_args!(
                "BUG: Bad page state in process {}  pfn:{:05x}",
                self.platform.current_comm(),
                pfn.raw()
            ));
            self.printk(format_args!("page dumped because: {reason}"));
            return;
        };
        self.printk(format_args!(
            "BUG: Bad page state in process {}  pfn:{:05x}",
            self.platform.current_comm(),
            pfn.raw()
        ));
        self.printk(format_args!(
            "page:{:#018x} refcount:{} mapcount:{} mapping:0000000000000000 index:0x0 pfn:{:#x}",
            self.struct_page_address(page).0,
            page.refcount(),
            page.mapcount(),
            pfn.raw()
        ));
        let mut names = crate::mm_types::flag_names(page.flags());
        let mut flags: [&str; 6] = [""; 6];
        let mut n = 0;
        for (slot, name) in flags.iter_mut().zip(&mut names) {
            *slot = name;
            n += 1;
        }
        match n {
            0 => self.printk(format_args!("flags: {:#x}()", page.flags() & 0xff)),
            _ => self.printk(format_args!(
                "flags: {:#x}({})",
                page.flags() & 0xff,
                JoinBar(&flags[..n])
            )),
        }
        self.printk(format_args!("page dumped because: {reason}"));
    }

    /// Reset the descriptors of an allocation about to be freed (compound tails, owner
    /// state), as `free_pages_prepare()` does; `page` is the descriptor of `pfn`, `flags`
    /// its flags as [`Mm::free_pages_check`] read them. The head's flags, order and list
    /// links are left to where it goes: the per-CPU list sets them
    /// ([`Mm::free_unref_page_commit`]), [`Mm::free_one_page`] clears them (its refcount
    /// is 0 already, from `put_page_testzero()`). With `init_on_free` the pages are wiped
    /// here (6.6: `init = want_init_on_free()`, then `kernel_init_pages(page, 1 <<
    /// order)`): the one place it applies to pages, for slabs, large kmallocs and vmalloc
    /// pages alike.
    #[inline(always)]
    fn free_pages_prepare(
        &self,
        pfn: Pfn,
        (page, flags): (&Page, u32),
        order: u32,
        this_cpu: &PerCpu,
    ) {
        if flags & PG_HEAD != 0 {
            for tail in (pfn + 1).range_to(pfn + (1 << order)) {
                self.mem_map.page(tail).reset();
            }
        }
        page.reset_owner();
        if self.want_init_on_free() {
            self.kernel_init_pages(pfn, 1 << order);
        }
        this_cpu.events.pgfree.add(1 << order);
    }

    /// `free_one_page()`: straight to the buddy lists of `zone` under its lock; `page` is
    /// the descriptor of `pfn`, which becomes the all-zero descriptor of a free page first.
    #[inline(never)]
    fn free_one_page(&self, zone: &Zone, (pfn, page): (Pfn, &Page), order: u32, mt: MigrateType) {
        page.reset();
        let mut locked = self.zone_lock(zone);
        locked.buddy().free_one_page(pfn, order, mt, Fpi::None);
    }

    /// `free_unref_page()`: onto this CPU's list, draining a batch once it is too long;
    /// `page` is the descriptor of `pfn`, `pcp` the current CPU's lists for `zone`.
    #[inline(always)]
    fn free_unref_page(
        &self,
        zone: &Zone,
        pfn: Pfn,
        page: &Page,
        order: u32,
        (cpu, pcp): (usize, &PerCpuPages),
    ) {
        // The pageblock's type as its byte in the map: one test for the per-CPU types.
        let raw = self.page_alloc.pageblocks.get_raw(pfn);
        let mt = MigrateType::from_index(raw as usize);
        let pcp_mt = if (raw as usize) < MIGRATE_PCPTYPES {
            mt
        } else {
            match mt {
                MigrateType::Isolate => return self.free_one_page(zone, (pfn, page), order, mt),
                _ => MigrateType::Movable,
            }
        };
        if !pcp.lock.try_lock(cpu) {
            return self.free_one_page(zone, (pfn, page), order, mt);
        }
        self.free_unref_page_commit(zone, pcp, (pfn, page), pcp_mt, mt, order);
        pcp.lock.unlock();
    }

    /// `free_unref_page_commit()` for `pfn` and its descriptor.
    #[inline(always)]
    fn free_unref_page_commit(
        &self,
        zone: &Zone,
        pcp: &PerCpuPages,
        (pfn, page): (Pfn, &Page),
        pcp_mt: MigrateType,
        block_mt: MigrateType,
        order: u32,
    ) {
        let pindex = order_to_pindex(pcp_mt as usize, order);
        page.set_flags_mt(PG_PCP, block_mt as u32);
        page.set_order(order);
        let list = &pcp.lists[pindex];
        if let Err(e) = list.try_push_front_page(&self.mem_map, pfn, page) {
            list_restart(self, &self.mem_map, list, pfn, &e);
        }
        let count = pcp.count().saturating_add(1 << order);
        pcp.count.store(count, Relaxed);
        // 6.6's `pcp->free_factor && order && order <= PAGE_ALLOC_COSTLY_ORDER`, the order
        // tested first: an order-0 free does not read the factor.
        let free_high = order > 0
            && order <= crate::addr::PAGE_ALLOC_COSTLY_ORDER
            && pcp.free_factor.load(Relaxed) > 0;
        let high = pcp.nr_pcp_high(free_high);
        if count >= high {
            let n = pcp.nr_pcp_free(high, pcp.batch(), free_high);
            self.free_pcppages_bulk(zone, n, pcp, pindex);
        }
    }

    /// `free_pcppages_bulk()` (6.6): give `count` pages back to the buddy lists,
    /// round-robin over the lists starting with `pindex` (skipping the empty ones at
    /// either end, `min_pindex`/`max_pindex`), coldest (tail) pages first.
    ///
    /// `pcp->count` is read from RAM and not trusted. 6.6 clamps `count` to it ("Ensure
    /// proper count is passed which otherwise would stuck in the below
    /// while (list_empty(list)) loop") and trusts it; here it is also clamped to the
    /// zone's managed pages (no CPU can cache more), and the walk ends when every list is
    /// empty, whatever the count said: see [`Mm::pcp_count_corrupt`]. Every round of the
    /// outer loop either takes a block off a list (`count` falls) or leaves one list empty
    /// for good (a list that fails its `list_del` check is abandoned, `INIT_LIST_HEAD`, as
    /// [`crate::memory_model::PageList::pop_back`] does), so it runs at most
    /// `count + NR_PCP_LISTS` times.
    #[inline(never)]
    fn free_pcppages_bulk(&self, zone: &Zone, count: u32, pcp: &PerCpuPages, pindex: usize) {
        let mut count = i64::from(count.min(self.pcp_count_checked(zone, pcp)));
        if count <= 0 {
            return;
        }
        let mut locked = self.zone_lock(zone);
        let mut buddy = locked.buddy();
        let (mut min_pindex, mut max_pindex) = (0usize, NR_PCP_LISTS - 1);
        let mut pindex = pindex.min(NR_PCP_LISTS - 1) as isize - 1;
        while count > 0 {
            let found = loop {
                if min_pindex > max_pindex {
                    break None;
                }
                pindex += 1;
                if pindex as usize > max_pindex {
                    pindex = min_pindex as isize;
                }
                let list = &pcp.lists[pindex as usize];
                if !list.is_empty() {
                    break Some(list);
                }
                if pindex as usize == max_pindex {
                    max_pindex = max_pindex.saturating_sub(1);
                }
                if pindex as usize == min_pindex {
                    min_pindex += 1;
                }
            };
            let Some(list) = found else {
                // Every list is empty although the count said otherwise.
                self.pcp_count_corrupt(zone, pcp);
                return;
            };
            let order = pindex_to_order(pindex as usize, self.pageblock_order());
            let nr_pages = 1i64 << order;
            while count > 0 {
                let pfn = match list.try_pop_back(&self.mem_map) {
                    Ok(Some(pfn)) => pfn,
                    Ok(None) => {
                        // `last` and `first` both the head: nothing to abandon, but
                        // make sure the list reads as empty from now on.
                        list.init();
                        break;
                    }
                    Err(e) => {
                        self.report_list_corruption(&e);
                        list.init();
                        break;
                    }
                };
                count -= nr_pages;
                pcp.count
                    .store(pcp.count().saturating_sub(nr_pages as u32), Relaxed);
                if !self.pcp_block_ok(zone, pfn, order) {
                    continue;
                }
                let mt = MigrateType::from_index(self.mem_map.page(pfn).pcp_migratetype() as usize);
                buddy.free_one_page(pfn, order, mt, Fpi::None);
            }
        }
    }

    /// `pcp->count`, at most the zone's managed pages: no CPU can cache more, and the
    /// bound keeps a walk of lists overwritten in RAM short. A larger count is reported
    /// when the lists run dry before it ([`Mm::pcp_count_corrupt`]).
    fn pcp_count_checked(&self, zone: &Zone, pcp: &PerCpuPages) -> u32 {
        pcp.count()
            .min(zone.managed_pages.min(u64::from(u32::MAX)) as u32)
    }

    /// A `pcp->count` above what the lists hold, found when they are empty. 6.6 has no
    /// check here: its `free_pcppages_bulk()` would spin for ever in
    /// `while (list_empty(list))` with the zone lock held. kmemlab prints the count and a
    /// WARN naming that function (line 0: there is no kernel line to cite), and sets the
    /// count to 0, which is what the empty lists hold.
    #[cold]
    #[inline(never)]
    fn pcp_count_corrupt(&self, zone: &Zone, pcp: &PerCpuPages) {
        self.warn_report(
            "mm/page_alloc.c",
            0,
            "free_pcppages_bulk",
            format_args!(
                "pcp->count is {} for zone {}, but its per-CPU lists are empty",
                pcp.count(),
                zone.name()
            ),
        );
        pcp.count.store(0, Relaxed);
    }

    /// `drain_pages_zone()` (6.6) for every populated zone (`drain_pages()`): this CPU's
    /// lists back to the buddy lists, in one `free_pcppages_bulk()` of the whole count
    /// under `pcp->lock`. That call ends whatever the count read from RAM says (see
    /// [`Mm::free_pcppages_bulk`]), so nothing here loops on the count; a count below what
    /// the lists hold leaves the rest there, as in 6.6 (`check()` reports the mismatch).
    pub fn drain_pages(&self, cpu: usize) {
        let percpu = self.percpu.get(cpu);
        for zone in self.page_alloc.zones.iter().filter(|z| z.managed_pages > 0) {
            let pcp = &percpu.pcp[zone.idx];
            if pcp.count() == 0 {
                continue;
            }
            self.spin_lock(&pcp.lock, "pcp->lock");
            self.free_pcppages_bulk(zone, pcp.count(), pcp, 0);
            pcp.lock.unlock();
        }
    }

    /// `drain_all_pages()`: drain every CPU's lists (the slow path does this before
    /// retrying, since freed pages may be sitting on other CPUs' lists).
    pub fn drain_all_pages(&self) {
        VmEvents::add(&self.events().drain_all_pages, 1);
        for cpu in 0..self.percpu.nr_cpus() {
            self.drain_pages(cpu);
        }
    }
}

/// Formats names joined by `|`.
struct JoinBar<'a>(&'a [&'a str]);

impl fmt::Display for JoinBar<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, name) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str("|")?;
            }
            f.write_str(name)?;
        }
        Ok(())
    }
}
