//! The allocation path (`mm/page_alloc.c`, 6.6): `alloc_pages` → `prepare_alloc_pages`
//! → `get_page_from_freelist` (each zone of the zonelist against its watermark) →
//! `rmqueue` (this CPU's list, `rmqueue_pcplist` / `rmqueue_bulk`, or the buddy lists,
//! `rmqueue_buddy`) → `prep_new_page` / `post_alloc_hook` (refcount, `init_on_alloc`,
//! compound pages); the HighAtomic reserve. The slow path is `slowpath.rs`.

use core::sync::atomic::Ordering::Relaxed;

use crate::addr::{Pfn, MAX_PAGE_ORDER, PAGE_SIZE};
use crate::gfp::Gfp;
use crate::mem::BadAccess;
use crate::memory_model::{ListCorruption, PageList};
use crate::mm_types::{Page, PG_HEAD, PG_PCP, PG_TAIL};
use crate::percpu::PerCpu;
use crate::platform::Platform;
use crate::vmstat::VmEvents;
use crate::Mm;

use super::buddy::list_add_or_restart;
use super::pcp::{order_to_pindex, pcp_allowed_order};
use super::*;

impl<P: Platform> Mm<P> {
    /// `alloc_pages(gfp, order)`: 2^order physically contiguous pages. Returns the first
    /// page's descriptor (`struct page *`), or an error saying what failed and why.
    ///
    /// `__alloc_pages()` (6.6): `prepare_alloc_pages()`, then `get_page_from_freelist()`
    /// with the low watermark, then the slow path. The first zone of the zonelist (the
    /// preferred zone, which serves nearly every request) is tried here, in line
    /// (`Mm::zone_alloc`); the rest of the zonelist, the pass without ALLOC_NOFRAGMENT
    /// and the slow path follow out of line (`Mm::alloc_pages_rest`), in
    /// `get_page_from_freelist()`'s order.
    #[inline]
    pub fn alloc_pages(&self, gfp: Gfp, order: u32) -> Result<&Page, PageAllocError> {
        // The same path twice, once with the order a constant 0: nearly every request is
        // of order 0, and its copy has no shifts, order tests or list-index arithmetic
        // left to do at run time. Both answer an error in one word, so that their result
        // comes back in two registers; it is unpacked here, in the caller, out of line.
        let page = if order == 0 {
            self.alloc_pages_0(gfp)
        } else {
            self.alloc_pages_n(gfp, order)
        };
        page.map_err(|e| self.alloc_pages_error(e))
    }

    /// [`Mm::alloc_pages`] of order 0.
    #[inline(never)]
    fn alloc_pages_0(&self, gfp: Gfp) -> Result<&Page, AllocErrorWord> {
        self.alloc_pages_order(gfp, 0)
    }

    /// [`Mm::alloc_pages`] of any order.
    #[inline(never)]
    fn alloc_pages_n(&self, gfp: Gfp, order: u32) -> Result<&Page, AllocErrorWord> {
        self.alloc_pages_order(gfp, order)
    }

    /// The [`PageAllocError`] of a failed [`Mm::alloc_pages`], from the word its copy
    /// answered; the CPU of a `SleepInAtomic` is the caller's, the one the splat named
    /// (the allocation ran on the caller's CPU, and this runs on it still).
    #[cold]
    #[inline(never)]
    fn alloc_pages_error(&self, err: AllocErrorWord) -> PageAllocError {
        err.unpack(|| self.platform.smp_processor_id() as u32)
    }

    /// The body of [`Mm::alloc_pages`], in line in both of its copies.
    #[inline(always)]
    fn alloc_pages_order(&self, gfp: Gfp, order: u32) -> Result<&Page, AllocErrorWord> {
        let (ac, this_cpu) = match self.prepare_alloc_pages_on(gfp, order) {
            Ok(prepared) => prepared,
            Err(e) => return Err(AllocErrorWord::pack(e)),
        };
        let flags = AllocFlags::WMARK_LOW | self.alloc_flags_nofragment(&ac);
        // `build_zonelists()` made `preferred` the first zone of this zonelist.
        let Some(preferred) = self.page_alloc.zonelists[ac.highest_zoneidx].preferred else {
            return self.alloc_pages_rest(&ac, flags, None);
        };
        let zone = &self.page_alloc.zones[preferred];
        // The zone's index is `preferred` itself, known here to be in range.
        match self.zone_alloc((preferred, zone), &ac, flags, (preferred, this_cpu)) {
            Some((_, page)) => Ok(page),
            None => self.alloc_pages_rest(&ac, flags, Some(zone)),
        }
    }

    /// What [`Mm::alloc_pages`] does once the first zone of the zonelist (`tried`, if it
    /// had one) could not serve the request: that zone's verdict, the rest of
    /// `get_page_from_freelist()` and the slow path.
    #[inline(never)]
    fn alloc_pages_rest(
        &self,
        ac: &AllocContext,
        flags: AllocFlags,
        tried: Option<&Zone>,
    ) -> Result<&Page, AllocErrorWord> {
        let mut verdicts = [None; MAX_NR_ZONES];
        if let Some(zone) = tried {
            verdicts[zone.idx] = Some(self.verdict(zone, ac, flags));
        }
        match self.get_page_from_freelist_page(ac, flags, &mut verdicts, tried.is_some()) {
            Some((_, page)) => Ok(page),
            None => match self.alloc_pages_slowpath(ac, verdicts) {
                Ok(pfn) => Ok(self.mem_map.page(pfn)),
                Err(e) => Err(AllocErrorWord::pack(e)),
            },
        }
    }

    /// `prepare_alloc_pages()`: validate the request and build its context.
    pub(crate) fn prepare_alloc_pages(
        &self,
        gfp: Gfp,
        order: u32,
    ) -> Result<AllocContext, PageAllocError> {
        self.prepare_alloc_pages_on(gfp, order).map(|(ac, _)| ac)
    }

    /// [`Mm::prepare_alloc_pages`], answering with the context the current CPU's area,
    /// looked up once for the whole allocation.
    #[inline(always)]
    fn prepare_alloc_pages_on(
        &self,
        gfp: Gfp,
        order: u32,
    ) -> Result<(AllocContext, &PerCpu), PageAllocError> {
        if order > 1 {
            self.high_order_checks(gfp, order)?;
        }
        let zone_type = gfp
            .gfp_zone()
            .inspect_err(|_| VmEvents::add(&self.events().warn, 1))?;
        let migratetype = gfp
            .migratetype()
            .inspect_err(|_| VmEvents::add(&self.events().warn, 1))?;
        // The current CPU, read once: the thread that runs a CPU stays on it.
        let cpu = self.platform.smp_processor_id();
        let this_cpu = self.percpu.get(cpu);
        if gfp.allows_blocking() {
            self.might_sleep_in(cpu, this_cpu)
                .map_err(PageAllocError::SleepInAtomic)?;
        }
        let ac = AllocContext {
            gfp,
            order,
            highest_zoneidx: self.zone_index(zone_type),
            migratetype,
            cpu,
        };
        Ok((ac, this_cpu))
    }

    /// The checks only a request above order 1 can meet, out of the order-0 path:
    /// [`Mm::order_too_large`], then `rmqueue()`'s `__GFP_NOFAIL` warning, made here once
    /// per request rather than once per zone tried (it warns once per boot; a request that
    /// kmemlab then refuses for its flags or context, which 6.6 would serve, has printed
    /// it too).
    #[inline(never)]
    fn high_order_checks(&self, gfp: Gfp, order: u32) -> Result<(), PageAllocError> {
        if order > MAX_PAGE_ORDER {
            return Err(self.order_too_large(gfp, order));
        }
        if gfp.contains(Gfp::__GFP_NOFAIL) {
            self.rmqueue_nofail_order_warn();
        }
        Ok(())
    }

    /// 6.6 `__alloc_pages()`: `WARN_ON_ONCE_GFP(order > MAX_ORDER, gfp)`, once per boot
    /// and never for __GFP_NOWARN; the request fails.
    #[cold]
    #[inline(never)]
    fn order_too_large(&self, gfp: Gfp, order: u32) -> PageAllocError {
        VmEvents::add(&self.events().warn, 1);
        const SITE: crate::report::KernelSite = crate::report::KernelSite {
            file: "mm/page_alloc.c",
            line: 4410,
            func: "__alloc_pages",
        };
        crate::report::warn_on_once!(self, !gfp.contains(Gfp::__GFP_NOWARN), SITE);
        PageAllocError::OrderTooLarge(order)
    }

    /// `alloc_flags_nofragment()`: when the preferred zone is Normal and DMA32 exists,
    /// first try without splitting foreign pageblocks below pageblock order.
    #[inline]
    fn alloc_flags_nofragment(&self, ac: &AllocContext) -> AllocFlags {
        let mut flags = AllocFlags::empty();
        if ac.gfp.contains(Gfp::__GFP_KSWAPD_RECLAIM) {
            flags |= AllocFlags::KSWAPD;
        }
        if self.page_alloc.zonelists[ac.highest_zoneidx].nofragment {
            flags |= AllocFlags::NOFRAGMENT;
        }
        flags
    }

    /// `get_page_from_freelist()`: walk the zonelist, take the first zone whose watermark
    /// allows the request and that has a block.
    pub(crate) fn get_page_from_freelist(
        &self,
        ac: &AllocContext,
        flags: AllocFlags,
        verdicts: &mut [Option<ZoneVerdict>; MAX_NR_ZONES],
    ) -> Option<Pfn> {
        self.get_page_from_freelist_page(ac, flags, verdicts, false)
            .map(|(pfn, _)| pfn)
    }

    /// [`Mm::get_page_from_freelist`] answering the block's first PFN with its descriptor
    /// (what the kernel's `struct page *` carries). With `tried_first`, the first zone of
    /// the first pass was tried already ([`Mm::alloc_pages`]) and its verdict recorded:
    /// the walk starts at the second.
    fn get_page_from_freelist_page(
        &self,
        ac: &AllocContext,
        mut flags: AllocFlags,
        verdicts: &mut [Option<ZoneVerdict>; MAX_NR_ZONES],
        tried_first: bool,
    ) -> Option<(Pfn, &Page)> {
        let preferred = self.page_alloc.zonelists[ac.highest_zoneidx].preferred?;
        let this_cpu = self.percpu.get(ac.cpu);
        let mut skip = usize::from(tried_first);
        loop {
            for zone in self.zonelist(ac.highest_zoneidx).skip(skip) {
                if let Some(found) =
                    self.zone_alloc((zone.idx, zone), ac, flags, (preferred, this_cpu))
                {
                    return Some(found);
                }
                verdicts[zone.idx] = Some(self.verdict(zone, ac, flags));
            }
            skip = 0;
            if flags.contains(AllocFlags::NOFRAGMENT) {
                flags.remove(AllocFlags::NOFRAGMENT);
                continue;
            }
            return None;
        }
    }

    /// One zone of `get_page_from_freelist()`'s walk: its watermark (unless
    /// ALLOC_NO_WATERMARKS), `rmqueue()`, then the counters and `prep_new_page()`.
    /// `None`: the zone cannot serve the request, and the caller records why and goes on
    /// to the next. `idx` is the zone's index (`zone.idx`), `preferred` the zonelist's
    /// first zone's, `this_cpu` the current CPU's area.
    #[inline(always)]
    fn zone_alloc(
        &self,
        (idx, zone): (usize, &Zone),
        ac: &AllocContext,
        flags: AllocFlags,
        (preferred, this_cpu): (usize, &PerCpu),
    ) -> Option<(Pfn, &Page)> {
        if !flags.contains(AllocFlags::NO_WATERMARKS) {
            let mark = zone.wmark(flags.watermark());
            if !self.zone_watermark_fast(zone, ac.order, mark, ac.highest_zoneidx, flags) {
                return None;
            }
        }
        let dips = self.needs_reserves(zone, ac, flags);
        let (pfn, page) = self.rmqueue(zone, ac, flags, &this_cpu.pcp[idx])?;
        this_cpu.events.pgalloc[idx].add(1 << ac.order);
        if idx != preferred {
            VmEvents::add(&self.events().zone_fallback, 1);
        }
        if dips {
            VmEvents::add(&self.events().alloc_reserve, 1);
        }
        self.prep_new_page(pfn, page, ac);
        if flags.contains(AllocFlags::HIGHATOMIC) {
            self.reserve_highatomic_pageblock(zone, pfn);
        }
        Some((pfn, page))
    }

    /// Would `zone` refuse this request without the reserves its flags grant below the
    /// watermark (`ALLOC_MIN_RESERVE`, `ALLOC_NON_BLOCK`, `ALLOC_OOM`)? An allocation
    /// that passes only thanks to them is what `alloc_reserve` counts.
    fn needs_reserves(&self, zone: &Zone, ac: &AllocContext, flags: AllocFlags) -> bool {
        let dig = AllocFlags::MIN_RESERVE | AllocFlags::NON_BLOCK | AllocFlags::OOM;
        if !flags.intersects(dig) || flags.contains(AllocFlags::NO_WATERMARKS) {
            return false;
        }
        let mark = zone.wmark(flags.watermark());
        !self.zone_watermark_ok(
            zone,
            ac.order,
            mark,
            ac.highest_zoneidx,
            flags - dig,
            zone.free_pages(),
        )
    }

    /// `rmqueue()`: per-CPU lists for the orders they cache, else the buddy lists.
    /// A fallback that boosted the zone's watermarks wakes kswapd on the way out (6.6).
    /// Answers the block's first PFN and its descriptor. `pcp` is the current CPU's lists
    /// for `zone`.
    #[inline(always)]
    fn rmqueue(
        &self,
        zone: &Zone,
        ac: &AllocContext,
        flags: AllocFlags,
        pcp: &PerCpuPages,
    ) -> Option<(Pfn, &Page)> {
        // 6.6 jumps to `out:` with the page from the per-CPU list; the end is written
        // out on both ways there, so that this one knows it has its page.
        if pcp_allowed_order(ac.order, self.pageblock_order())
            && let Some(found) = self.rmqueue_pcplist(zone, ac, flags, pcp)
        {
            self.rmqueue_out(zone, flags);
            return Some(found);
        }
        let page = self.rmqueue_buddy_page(zone, ac.order, ac.migratetype, flags);
        self.rmqueue_out(zone, flags);
        page
    }

    /// The end of `rmqueue()` (`out:`): a fallback that boosted the zone's watermarks
    /// wakes kswapd.
    #[inline(always)]
    fn rmqueue_out(&self, zone: &Zone, flags: AllocFlags) {
        // "Separate test+clear to avoid unnecessary atomics"
        if flags.contains(AllocFlags::KSWAPD) && zone.boosted_watermark.load(Relaxed) {
            self.rmqueue_wake_kswapd(zone);
        }
    }

    /// `rmqueue()`'s `WARN_ON_ONCE((gfp_flags & __GFP_NOFAIL) && (order > 1))` (6.6.63,
    /// mm/page_alloc.c:2784), for a request that has both: once per boot; the allocation
    /// goes on.
    #[cold]
    #[inline(never)]
    fn rmqueue_nofail_order_warn(&self) {
        VmEvents::add(&self.events().warn, 1);
        const SITE: crate::report::KernelSite = crate::report::KernelSite {
            file: "mm/page_alloc.c",
            line: 2784,
            func: "rmqueue",
        };
        crate::report::warn_on_once!(self, true, SITE);
    }

    /// The end of `rmqueue()` when the zone's watermark was boosted: clear
    /// ZONE_BOOSTED_WATERMARK and wake kswapd.
    #[cold]
    #[inline(never)]
    fn rmqueue_wake_kswapd(&self, zone: &Zone) {
        zone.boosted_watermark.store(false, Relaxed);
        self.wakeup_kswapd(zone, Gfp::empty(), 0, zone.idx);
    }

    /// `rmqueue_pcplist()`: pop from this CPU's list, refilling it with a batch first.
    #[inline(always)]
    fn rmqueue_pcplist(
        &self,
        zone: &Zone,
        ac: &AllocContext,
        flags: AllocFlags,
        pcp: &PerCpuPages,
    ) -> Option<(Pfn, &Page)> {
        if !pcp.lock.try_lock(ac.cpu) {
            return None;
        }
        pcp.free_factor
            .store(pcp.free_factor.load(Relaxed) >> 1, Relaxed);
        let popped = self.__rmqueue_pcplist(zone, ac.order, ac.migratetype, flags, pcp);
        pcp.lock.unlock();
        popped
    }

    /// `__rmqueue_pcplist()`: pop a block of `order` from the per-CPU list of `mt`, which
    /// the caller has locked, refilling the list with a batch first when it is empty; answers
    /// its first PFN and descriptor.
    #[inline(always)]
    pub(crate) fn __rmqueue_pcplist(
        &self,
        zone: &Zone,
        order: u32,
        mt: MigrateType,
        flags: AllocFlags,
        pcp: &PerCpuPages,
    ) -> Option<(Pfn, &Page)> {
        let pindex = order_to_pindex(mt as usize, order);
        let list = &pcp.lists[pindex];
        match list.try_pop_front_page(&self.mem_map) {
            Ok(Some((pfn, page))) => self.pcp_popped(zone, (pfn, page), order, pcp),
            // The list is empty (its head reads so; nothing was changed).
            Ok(None) => self.pcp_refill_pop(zone, order, mt, flags, (pcp, pindex)),
            Err(e) => self.pcp_list_corrupt(list, &e),
        }
    }

    /// The end of `__rmqueue_pcplist()` for the block `pfn` (with its descriptor) taken off
    /// a list of `pcp`: checked ([`Mm::pcp_page_ok`]) and counted, or dropped.
    #[inline(always)]
    fn pcp_popped<'a>(
        &self,
        zone: &Zone,
        (pfn, page): (Pfn, &'a Page),
        order: u32,
        pcp: &PerCpuPages,
    ) -> Option<(Pfn, &'a Page)> {
        if !self.pcp_page_ok(zone, pfn, page, order) {
            return None;
        }
        pcp.count
            .store(pcp.count().saturating_sub(1 << order), Relaxed);
        Some((pfn, page))
    }

    /// A per-CPU list whose head or first entry fails its check: reported, and abandoned
    /// (`INIT_LIST_HEAD`); nothing is popped.
    #[cold]
    #[inline(never)]
    fn pcp_list_corrupt(&self, list: &PageList, e: &ListCorruption) -> Option<(Pfn, &Page)> {
        self.report_list_corruption(e);
        list.init();
        None
    }

    /// `__rmqueue_pcplist()` on an empty list: the refill ([`Mm::pcp_refill`]), then the
    /// pop from the list refilled.
    #[cold]
    #[inline(never)]
    fn pcp_refill_pop(
        &self,
        zone: &Zone,
        order: u32,
        mt: MigrateType,
        flags: AllocFlags,
        (pcp, pindex): (&PerCpuPages, usize),
    ) -> Option<(Pfn, &Page)> {
        self.pcp_refill(zone, order, mt, flags, (pcp, pindex));
        let list = &pcp.lists[pindex];
        match list.try_pop_front_page(&self.mem_map) {
            Ok(Some((pfn, page))) => self.pcp_popped(zone, (pfn, page), order, pcp),
            Ok(None) => None,
            Err(e) => self.pcp_list_corrupt(list, &e),
        }
    }

    /// The refill of `__rmqueue_pcplist()`: a batch (scaled down for the order, at least
    /// two blocks) from the buddy lists onto the empty list `pindex` of `pcp`, counted.
    #[inline]
    fn pcp_refill(
        &self,
        zone: &Zone,
        order: u32,
        mt: MigrateType,
        flags: AllocFlags,
        (pcp, pindex): (&PerCpuPages, usize),
    ) {
        let mut batch = pcp.batch();
        if batch > 1 {
            batch = (batch >> order).max(2);
        }
        let got = self.rmqueue_bulk(zone, order, batch, pcp, pindex, mt, flags);
        pcp.count
            .store(pcp.count().wrapping_add(got << order), Relaxed);
    }

    /// Is `pfn`, taken off a per-CPU list of `order` for `zone`, such a block: inside the
    /// zone, aligned, marked as on a per-CPU list with that order? One that is not is
    /// reported (`bad_page()` from `check_new_pages()` / `free_pcppages_bulk()`) and
    /// dropped.
    #[inline]
    pub(super) fn pcp_block_ok(&self, zone: &Zone, pfn: Pfn, order: u32) -> bool {
        match self.mem_map.get(pfn) {
            Some(page) => self.pcp_page_ok(zone, pfn, page, order),
            None => {
                self.bad_page_state(pfn, "per-CPU list entry is not a block of the list's order");
                false
            }
        }
    }

    /// [`Mm::pcp_block_ok`] with the descriptor of `pfn` in hand.
    #[inline(always)]
    fn pcp_page_ok(&self, zone: &Zone, pfn: Pfn, page: &Page, order: u32) -> bool {
        let n = 1u64 << order;
        let offset = pfn.raw().wrapping_sub(zone.zone_start_pfn.raw());
        let ok = pfn.is_aligned(order)
            && offset < zone.spanned_pages
            && zone.spanned_pages - offset >= n
            && page.flags() & PG_PCP != 0
            && page.order() == order;
        if !ok {
            self.bad_page_state(pfn, "per-CPU list entry is not a block of the list's order");
        }
        ok
    }

    /// `rmqueue_bulk()`: move up to `count` blocks from the buddy lists to a per-CPU list.
    #[allow(clippy::too_many_arguments)]
    fn rmqueue_bulk(
        &self,
        zone: &Zone,
        order: u32,
        count: u32,
        pcp: &PerCpuPages,
        pindex: usize,
        mt: MigrateType,
        flags: AllocFlags,
    ) -> u32 {
        let mut locked = self.zone_lock(zone);
        let mut buddy = locked.buddy();
        let mut got = 0;
        while got < count {
            let Some(pfn) = buddy.rmqueue(order, mt, flags) else {
                break;
            };
            let page = self.mem_map.page(pfn);
            page.set_flags_mt(PG_PCP, mt as u32);
            page.set_order(order);
            list_add_or_restart(self, &self.mem_map, &pcp.lists[pindex], pfn, true);
            got += 1;
        }
        got
    }

    /// [`Mm::rmqueue_buddy`] answering the block's descriptor with its PFN.
    #[inline(never)]
    fn rmqueue_buddy_page(
        &self,
        zone: &Zone,
        order: u32,
        mt: MigrateType,
        flags: AllocFlags,
    ) -> Option<(Pfn, &Page)> {
        self.rmqueue_buddy(zone, order, mt, flags)
            .map(|pfn| (pfn, self.mem_map.page(pfn)))
    }

    /// `rmqueue_buddy()`: one block straight from the buddy lists, under the zone lock.
    fn rmqueue_buddy(
        &self,
        zone: &Zone,
        order: u32,
        mt: MigrateType,
        flags: AllocFlags,
    ) -> Option<Pfn> {
        let mut locked = self.zone_lock(zone);
        let mut buddy = locked.buddy();
        let mut pfn = None;
        if flags.contains(AllocFlags::HIGHATOMIC) {
            pfn = buddy.rmqueue_smallest(order, MigrateType::HighAtomic);
        }
        if pfn.is_none() {
            pfn = buddy.rmqueue(order, mt, flags);
        }
        if pfn.is_none() && flags.contains(AllocFlags::OOM) {
            pfn = buddy.rmqueue_smallest(order, MigrateType::HighAtomic);
        }
        pfn
    }

    /// `prep_new_page()`: the block becomes an allocation ([`Mm::post_alloc_hook`]), head
    /// and tails marked for `__GFP_COMP`. `page` is the descriptor of `pfn`.
    #[inline(always)]
    pub(crate) fn prep_new_page(&self, pfn: Pfn, page: &Page, ac: &AllocContext) {
        self.post_alloc_hook(pfn, page, ac);
        if ac.gfp.contains(Gfp::__GFP_COMP) && ac.order > 0 {
            page.set(PG_HEAD);
            for tail in (pfn + 1).range_to(pfn + (1 << ac.order)) {
                let t = self.mem_map.page(tail);
                t.set_flags(PG_TAIL);
                t.set_word(pfn.raw());
            }
        }
    }

    /// `post_alloc_hook()` (6.6): refcount 1, and the pages zeroed when
    /// `!want_init_on_free() && want_init_on_alloc(gfp) && !should_skip_init(gfp)`: with
    /// `init_on_free` the pages were wiped when freed, so even `__GFP_ZERO` skips them.
    /// `should_skip_init()` is false without hardware tag-based KASAN, as here. This is
    /// the one place `init_on_alloc` applies to pages: slabs, large kmallocs and vmalloc
    /// pages all come through it.
    #[inline(always)]
    fn post_alloc_hook(&self, pfn: Pfn, page: &Page, ac: &AllocContext) {
        page.set_flags_mt(0, ac.migratetype as u32);
        page.set_order(ac.order);
        page.set_refcount(1);
        // want_init_on_alloc() tested first: for most requests its flag alone decides.
        if self.want_init_on_alloc(ac.gfp) && !self.want_init_on_free() {
            self.kernel_init_pages(pfn, 1 << ac.order);
        }
    }

    /// `want_init_on_alloc()` (`include/linux/mm.h`, 6.6): `init_on_alloc=1`, or the
    /// caller asked for `__GFP_ZERO`.
    #[inline]
    pub(crate) fn want_init_on_alloc(&self, gfp: Gfp) -> bool {
        gfp.contains(Gfp::__GFP_ZERO) || self.init_on_alloc_enabled()
    }

    /// The `init_on_alloc` static key alone (6.6:
    /// `static_branch_maybe(CONFIG_INIT_ON_ALLOC_DEFAULT_ON, &init_on_alloc)`), as the
    /// slab's `slab_want_init_on_alloc()` reads it before it looks at the GFP flags.
    #[inline]
    pub(crate) fn init_on_alloc_enabled(&self) -> bool {
        self.page_alloc.init_on_alloc
    }

    /// `want_init_on_free()` (`include/linux/mm.h`, 6.6): `init_on_free=1`.
    #[inline]
    pub(crate) fn want_init_on_free(&self) -> bool {
        self.page_alloc.init_on_free
    }

    /// `kernel_init_pages()` (6.6): `clear_highpage_kasan_tagged()` on each of `n` pages.
    /// Out of line: a page's worth of zeroes dwarfs the call, and the paths that may call
    /// it (`post_alloc_hook()`, `free_pages_prepare()`) keep a register the fewer.
    #[inline(never)]
    pub(super) fn kernel_init_pages(&self, pfn: Pfn, n: u64) {
        self.clear_pages(pfn, n);
    }

    /// `clear_highpage()` over `n` pages (through a temporary mapping for HighMem, which
    /// here is simply physical memory).
    pub(crate) fn clear_pages(&self, pfn: Pfn, n: u64) {
        self.clear_pages_by(pfn, n, |phys, len| self.ram().fill(phys, 0, len));
    }

    /// [`Mm::clear_pages`] with `clear(phys, len)` doing the `memset(0)` of RAM: a plain
    /// fill, or at boot [`Mm::zero_boot_ram`], which writes only what is not zero already.
    pub(super) fn clear_pages_by(
        &self,
        pfn: Pfn,
        n: u64,
        clear: impl FnOnce(u64, u64) -> Result<(), BadAccess>,
    ) {
        let phys = pfn.phys().0;
        let len = n.saturating_mul(PAGE_SIZE as u64);
        if let Err(e) = clear(phys, len) {
            // A block over a hole: the kernel's store would fault in the direct map.
            let va = self.layout.page_offset.wrapping_add(e.addr);
            self.bad_page_fault(va, true);
        }
    }

    /// `reserve_highatomic_pageblock()`: after a high-order atomic allocation succeeds,
    /// keep its pageblock for such allocations (up to 1% of the zone).
    fn reserve_highatomic_pageblock(&self, zone: &Zone, pfn: Pfn) {
        let max_managed = zone.managed_pages / 100 + self.pageblock_nr_pages();
        if zone.nr_reserved_highatomic() >= max_managed {
            return;
        }
        let mut locked = self.zone_lock(zone);
        if zone.nr_reserved_highatomic() >= max_managed {
            return;
        }
        let mt = self.page_alloc.pageblocks.get(pfn);
        if (mt as usize) >= MIGRATE_PCPTYPES {
            return;
        }
        let mut buddy = locked.buddy();
        if buddy
            .move_freepages_block(pfn, MigrateType::HighAtomic)
            .is_some()
        {
            self.page_alloc.pageblocks.set(pfn, MigrateType::HighAtomic);
            zone.nr_reserved_highatomic
                .fetch_add(self.pageblock_nr_pages(), Relaxed);
        }
    }

    /// `unreserve_highatomic_pageblock()`: give HighAtomic pageblocks back to the request's
    /// type; with `force`, all of them. Returns whether any was released.
    pub(crate) fn unreserve_highatomic_pageblock(&self, ac: &AllocContext, force: bool) -> bool {
        let mut released = false;
        for zone in self.zonelist(ac.highest_zoneidx) {
            let mut locked = self.zone_lock(zone);
            if !force && zone.nr_reserved_highatomic() <= self.pageblock_nr_pages() {
                continue;
            }
            let Some(pfn) = (0..=MAX_PAGE_ORDER).find_map(|o| {
                locked.guard.free_list[o as usize][MigrateType::HighAtomic as usize].first()
            }) else {
                continue;
            };
            if self.page_alloc.pageblocks.get(pfn) == MigrateType::HighAtomic {
                let left = zone
                    .nr_reserved_highatomic()
                    .saturating_sub(self.pageblock_nr_pages());
                zone.nr_reserved_highatomic.store(left, Relaxed);
            }
            self.page_alloc.pageblocks.set(pfn, ac.migratetype);
            let mut buddy = locked.buddy();
            if buddy.move_freepages_block(pfn, ac.migratetype).is_some() {
                released = true;
                if !force {
                    break;
                }
            }
        }
        released
    }
}
