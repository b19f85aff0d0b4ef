//! The zoned buddy page allocator (`mm/page_alloc.c`, following Linux 6.6).
//!
//! Where to start reading: [`Mm::alloc_pages`] in `alloc.rs` and [`Mm::__free_pages`] in
//! `free.rs`; the state is [`PageAlloc`] below (zones, zonelists, pageblocks, tunables),
//! private to this module and reached from the rest of the kernel through named
//! functions ([`Mm::zones`], [`Mm::totalram_pages`], [`Mm::want_init_on_alloc`], ...).
//!
//! * this file: [`PageAlloc`], boot's entry points (`free_pages_core`,
//!   `build_zonelists`, `init_per_zone_wmark_min`), zones and watermarks
//!   (`zone_watermark_ok`, `zone_watermark_fast`).
//! * `alloc.rs`: the allocation path (`__alloc_pages`, `get_page_from_freelist`,
//!   `rmqueue`, `rmqueue_pcplist`, `rmqueue_bulk`, `prep_new_page`, `post_alloc_hook`).
//! * `free.rs`: the free path (`__free_pages`, `free_pages_prepare`, `free_unref_page`,
//!   `free_pcppages_bulk`, `drain_pages`) and the bad-page report.
//! * `api.rs`: the rest of the API named after the kernel's (`__get_free_pages`,
//!   `page_to_pfn`, `virt_to_page`, `split_page`, free-area counts).
//! * `error.rs`: [`PageAllocError`], [`FreeError`] and the failure report ([`AllocFailure`]).
//! * `zone`: zones, migrate types, watermarks and free areas.
//! * [`buddy`]: split, merge and migrate-type fallback under the zone lock.
//! * [`pcp`]: per-CPU lists for orders 0-3 and pageblock order.
//! * `bulk.rs`: `alloc_pages_bulk`; [`slowpath`]: direct reclaim, retries, `warn_alloc`.
//! * [`sysctl`]: the `/proc/sys/vm` tunables and the watermark setup they drive.
//! * [`check`]: the invariant checker (run by [`Mm::check`]).
//!
//! Lock order (6.6's): `pcp->lock` (this CPU's list, a trylock with interrupts off) →
//! `zone->lock` (`SpinLockIrq<FreeArea>`, taken to refill or drain a per-CPU list and for
//! every buddy operation). No other lock is taken under `zone->lock`; nothing here calls
//! out to the slab, vmalloc or dma (dma-debug sees frees through the debugobjects hook).
//!
//! Everything the allocator keeps in simulated RAM (`struct page`, the per-CPU lists and
//! counters, the pageblock flags) is checked where it is read: a PFN taken from a list
//! must be a block of that list in the zone, a count or factor is used with saturating
//! arithmetic, a list link must point back. What fails is reported as the kernel reports
//! it (`list_del corruption`, `BUG: Bad page state`) and the operation goes on without
//! that block; page contents are written through the door.

mod alloc;
mod api;
pub mod buddy;
mod bulk;
pub mod check;
mod error;
mod free;
pub mod pageblock;
pub mod pcp;
pub mod query;
pub mod slowpath;
pub mod sysctl;
mod zone;

pub use error::{
    AllocFailure, AllocFailureSummary, FailReason, FreeError, PageAllocError, ZoneVerdict,
};
pub use pcp::PerCpuPages;
pub use zone::{
    FreeArea, MigrateType, Watermark, Zone, ZoneType, MAX_NR_ZONES, MIGRATE_PCPTYPES, MIGRATE_TYPES,
};

use crate::addr::{Pfn, MAX_PAGE_ORDER};
use crate::gfp::Gfp;
use crate::platform::Platform;
use crate::Mm;
use buddy::{Buddy, CorruptionReport, Fpi};
pub(crate) use error::AllocErrorWord;
use error::FreeErrorWords;

bitflags::bitflags! {
    /// Internal allocation flags (`ALLOC_*` in `mm/internal.h`). The low two bits index
    /// the watermark (`ALLOC_WMARK_MIN` = 0, `LOW` = 1, `HIGH` = 2).
    #[derive(Copy, Clone, Debug, PartialEq, Eq)]
    pub struct AllocFlags: u32 {
        /// Check against the low watermark.
        const WMARK_LOW = 0x01;
        /// Check against the high watermark.
        const WMARK_HIGH = 0x02;
        /// Do not check watermarks at all.
        const NO_WATERMARKS = 0x04;
        /// The OOM victim's access to reserves.
        const OOM = 0x08;
        /// The caller cannot sleep: a further quarter of the reserve.
        const NON_BLOCK = 0x10;
        /// `__GFP_HIGH`: half of the reserve below min.
        const MIN_RESERVE = 0x20;
        /// Respect cpusets.
        const CPUSET = 0x40;
        /// May use CMA areas.
        const CMA = 0x80;
        /// Only steal whole pageblocks from other migrate types (fragmentation avoidance).
        const NOFRAGMENT = 0x100;
        /// May use (and reserve) HighAtomic pageblocks.
        const HIGHATOMIC = 0x200;
        /// May wake kswapd.
        const KSWAPD = 0x800;
    }
}

impl AllocFlags {
    /// `ALLOC_RESERVES`: any of the flags that grant reserve access.
    pub const RESERVES: AllocFlags = AllocFlags::NON_BLOCK
        .union(AllocFlags::MIN_RESERVE)
        .union(AllocFlags::HIGHATOMIC)
        .union(AllocFlags::OOM);

    /// The watermark these flags check against.
    pub fn watermark(self) -> Watermark {
        match self.bits() & 0x3 {
            0 => Watermark::Min,
            1 => Watermark::Low,
            _ => Watermark::High,
        }
    }

    /// `gfp_to_alloc_flags()` (6.6): the slow path's flags, min watermark plus the reserve
    /// access the GFP flags grant.
    pub fn from_gfp(gfp: Gfp, order: u32) -> AllocFlags {
        let mut flags = AllocFlags::CPUSET;
        if gfp.contains(Gfp::__GFP_HIGH) {
            flags |= AllocFlags::MIN_RESERVE;
        }
        if gfp.contains(Gfp::__GFP_KSWAPD_RECLAIM) {
            flags |= AllocFlags::KSWAPD;
        }
        if !gfp.contains(Gfp::__GFP_DIRECT_RECLAIM) {
            if !gfp.contains(Gfp::__GFP_NOMEMALLOC) {
                flags |= AllocFlags::NON_BLOCK;
                if order > 0 {
                    flags |= AllocFlags::HIGHATOMIC;
                }
            }
            // "Ignore cpuset mems for non-blocking __GFP_HIGH (probably GFP_ATOMIC) rather
            // than fail" (6.6): only with ALLOC_MIN_RESERVE; GFP_NOWAIT keeps ALLOC_CPUSET.
            if flags.contains(AllocFlags::MIN_RESERVE) {
                flags.remove(AllocFlags::CPUSET);
            }
        }
        flags
    }
}

/// The watermark after the reserve reductions of `flags` (`__zone_watermark_ok`).
fn effective_mark(mark: u64, flags: AllocFlags) -> i64 {
    let mut min = mark as i64;
    if flags.intersects(AllocFlags::RESERVES) {
        if flags.contains(AllocFlags::MIN_RESERVE) {
            min -= min / 2;
            if flags.contains(AllocFlags::NON_BLOCK) {
                min -= min / 4;
            }
        }
        if flags.contains(AllocFlags::OOM) {
            min -= min / 2;
        }
    }
    min
}

/// What one allocation asks for (`struct alloc_context`).
#[derive(Copy, Clone, Debug)]
pub struct AllocContext {
    /// The flags.
    pub gfp: Gfp,
    /// The order.
    pub order: u32,
    /// The highest zone index that may be used (`highest_zoneidx`).
    pub highest_zoneidx: usize,
    /// The migrate type of the request.
    pub migratetype: MigrateType,
    /// The CPU allocating (`smp_processor_id()`, read once).
    pub cpu: usize,
}

/// The page allocator's state (what `mm/page_alloc.c` keeps in `contig_page_data` and its
/// own globals, Linux 6.6): the node's zones and their precomputed zonelists, the
/// pageblock flags (`pageblock_flags`, placed in RAM at boot), the `/proc/sys/vm`
/// tunables and `totalreserve_pages`. Its fields are private to `page_alloc`; the rest of
/// the kernel reaches them through named functions of [`Mm`] ([`Mm::zones`],
/// [`Mm::vm_tunables`], [`Mm::totalreserve_pages`], ...).
pub struct PageAlloc {
    /// `pgdat->node_zones`, lowest first (all four, populated or not).
    zones: [Zone; MAX_NR_ZONES],
    /// What `build_zonelists()` precomputed for each `highest_zoneidx`.
    zonelists: [ZonelistInfo; MAX_NR_ZONES],
    /// The migrate type of each pageblock (`pageblock_flags`), and the profile's
    /// `pageblock_order`.
    pageblocks: pageblock::Pageblocks,
    /// The `/proc/sys/vm` tunables of the page allocator.
    vm: sysctl::VmTunables,
    /// The transparent-hugepage mode (`transparent_hugepage=`, `mm/huge_memory.c`): kept
    /// here because khugepaged's `set_recommended_min_free_kbytes()` moves
    /// `min_free_kbytes`.
    thp: sysctl::Thp,
    /// Boot has finished. Until then `boost_watermark()` does not boost: Linux allocates
    /// its boot caches (`kmem_cache_init()` in `mm_core_init()`) before the watermarks
    /// exist (`init_per_zone_wmark_min()` is a postcore initcall), when "high watermark
    /// may be uninitialised if fragmentation occurs very early in boot so do not boost";
    /// kmemlab sets the watermarks first.
    booted: bool,
    /// High watermarks plus lowmem reserves, not counted as available.
    totalreserve_pages: u64,
    /// The `init_on_alloc` static key (defined in `mm/page_alloc.c`, set by boot's
    /// `mem_debugging_and_hardening_init()`); the slab reads it too
    /// ([`Mm::init_on_alloc_enabled`]).
    init_on_alloc: bool,
    /// The `init_on_free` static key (same places; [`Mm::want_init_on_free`]).
    init_on_free: bool,
    /// The report of the last allocation that failed for lack of memory, kept by the slow
    /// path when it gives up ([`Mm::last_alloc_failure`]); taken only on failure and
    /// by readers, never on a path that succeeds.
    last_failure: crate::sync::SpinLockIrq<Option<AllocFailure>>,
}

impl PageAlloc {
    /// Empty zones of the profile's types, default tunables, no pageblocks yet, the
    /// `init_on_alloc` / `init_on_free` keys off until boot sets them
    /// ([`Mm::set_init_on_keys`]). `pageblock_order` is the profile's ([`crate::arch::Profile::pageblock_order`]).
    pub(crate) fn new(
        types: &[ZoneType; MAX_NR_ZONES],
        pageblock_order: u32,
        thp: sysctl::Thp,
    ) -> PageAlloc {
        PageAlloc {
            zones: core::array::from_fn(|i| Zone::new(types[i], i)),
            zonelists: Default::default(),
            pageblocks: pageblock::Pageblocks::empty(pageblock_order),
            vm: sysctl::VmTunables::defaults(types),
            thp,
            booted: false,
            totalreserve_pages: 0,
            init_on_alloc: false,
            init_on_free: false,
            last_failure: crate::sync::SpinLockIrq::new(None),
        }
    }
}

/// Boot's reaches into the page allocator (`mm/mm_init.c` calls into `mm/page_alloc.c`).
impl<P: Platform> Mm<P> {
    /// The zones of the node, lowest first (all four, populated or not).
    #[inline]
    pub fn zones(&self) -> &[Zone] {
        &self.page_alloc.zones
    }

    /// `min_free_kbytes` in force (computed at boot, raised by khugepaged, or set with
    /// the `vm.min_free_kbytes` sysctl).
    pub fn min_free_kbytes(&self) -> u64 {
        self.page_alloc.vm.min_free_kbytes.max(0) as u64
    }

    /// `pageblock_order`: the order of the blocks that carry a migrate type, the profile's
    /// ([`crate::arch::Profile::pageblock_order`]: 9 on x86_64, 10 on i386).
    #[inline]
    pub fn pageblock_order(&self) -> u32 {
        self.page_alloc.pageblocks.order()
    }

    /// `pageblock_nr_pages`: pages in one pageblock (512 on x86_64, 1024 on i386).
    #[inline]
    pub fn pageblock_nr_pages(&self) -> u64 {
        self.page_alloc.pageblocks.nr_pages()
    }

    /// `totalreserve_pages`: high watermarks plus lowmem reserves, not counted as available.
    pub fn totalreserve_pages(&self) -> u64 {
        self.page_alloc.totalreserve_pages
    }

    /// `totalram_pages()`: the pages the buddy allocator manages, over all zones.
    pub fn totalram_pages(&self) -> u64 {
        self.zones().iter().map(|z| z.managed_pages).sum()
    }

    /// The index of the zone that spans `pfn`, if any.
    pub(crate) fn zone_idx_of(&self, pfn: Pfn) -> Option<usize> {
        self.page_alloc.zones.iter().position(|z| z.spans(pfn))
    }

    /// `calculate_node_totalpages()` (`mm/mm_init.c`) for zone `idx`: where it starts, the
    /// pages it spans (holes included) and the pages present.
    pub(crate) fn init_zone_span(
        &mut self,
        idx: usize,
        start_pfn: Pfn,
        spanned: u64,
        present: u64,
    ) {
        let zone = &mut self.page_alloc.zones[idx];
        zone.zone_start_pfn = start_pfn;
        zone.spanned_pages = spanned;
        zone.present_pages = present;
    }

    /// Install the pageblock flags boot carved out of RAM (`setup_usemap()`), every
    /// pageblock Movable as `memmap_init_range()` leaves it.
    pub(crate) fn init_pageblocks(&mut self, blocks: pageblock::Pageblocks) {
        self.page_alloc.pageblocks = blocks;
        let blocks = &self.page_alloc.pageblocks;
        for block in 0..blocks.len() {
            blocks.set(Pfn(block << blocks.order()), MigrateType::Movable);
        }
    }

    /// `__free_pages_core()` at boot (`memblock_free_pages()`): the block `pfn` of
    /// `order` goes to its zone's free lists at the tail and counts as managed
    /// (`atomic_long_add(nr_pages, &page_zone(page)->managed_pages)`). RAM that no zone
    /// spans (beyond the profile's limits) is not managed; returns whether it was.
    pub(crate) fn free_pages_core(&mut self, pfn: Pfn, order: u32) -> bool {
        let Some(zone_idx) = self.zone_idx_of(pfn) else {
            return false;
        };
        {
            let zone = &self.page_alloc.zones[zone_idx];
            let mut area = zone.free_area.lock_irqsave(&self.platform);
            let mut buddy = Buddy {
                map: &self.mem_map,
                blocks: &self.page_alloc.pageblocks,
                zone,
                area: &mut area,
                report: &*self,
                boost_factor: 0,
            };
            // __free_pages_ok() -> free_pages_prepare(): init_on_free wipes boot memory
            // too, so that every free page is zero and post_alloc_hook() may skip it.
            // The same bytes as kernel_init_pages(), discarded or written only where RAM is
            // not zero already: most boot memory was never written, and stays unbacked on
            // the host.
            if self.want_init_on_free() {
                self.clear_pages_by(pfn, 1 << order, |phys, len| self.zero_boot_ram(phys, len));
            }
            buddy.free_one_page(pfn, order, MigrateType::Movable, Fpi::ToTail);
        }
        self.page_alloc.zones[zone_idx].managed_pages += 1 << order;
        true
    }

    /// `build_zonelists()`: the preferred zone and the NOFRAGMENT decision for each
    /// highest zone index, fixed once the zones are populated.
    pub(crate) fn build_zonelists(&mut self) {
        let dma32_populated = self
            .zones()
            .iter()
            .any(|z| z.zone_type == ZoneType::Dma32 && z.managed_pages > 0);
        for highest in 0..MAX_NR_ZONES {
            let preferred = self.zonelist(highest).next().map(|z| (z.idx, z.zone_type));
            self.page_alloc.zonelists[highest] = ZonelistInfo {
                preferred: preferred.map(|p| p.0),
                nofragment: dma32_populated && preferred.is_some_and(|p| p.1 == ZoneType::Normal),
            };
        }
    }

    /// `init_per_zone_wmark_min()` (6.6): `min_free_kbytes` from lowmem, then the
    /// watermarks (with the per-CPU high and batch that follow them), the lowmem reserves
    /// and `totalreserve_pages` (see [`sysctl`]).
    pub(crate) fn init_per_zone_wmark_min(&mut self) {
        self.calculate_min_free_kbytes();
        self.setup_per_zone_wmarks();
        self.setup_per_zone_lowmem_reserve();
    }

    /// `static_branch_enable()` / `static_branch_disable()` of the `init_on_alloc` and
    /// `init_on_free` keys, as boot's `mem_debugging_and_hardening_init()` decides them
    /// (before `memblock_free_all()`, so that `init_on_free` wipes boot memory too).
    pub(crate) fn set_init_on_keys(&mut self, init_on_alloc: bool, init_on_free: bool) {
        self.page_alloc.init_on_alloc = init_on_alloc;
        self.page_alloc.init_on_free = init_on_free;
    }

    /// The end of boot (`system_state = SYSTEM_RUNNING` as far as the page allocator
    /// cares): watermark boosting may start.
    pub(crate) fn page_alloc_booted(&mut self) {
        self.page_alloc.booted = true;
    }
}

impl<P: Platform> Mm<P> {
    // ----- zones -------------------------------------------------------------------

    /// `page_zone()` by PFN.
    #[inline]
    pub fn zone_of_pfn(&self, pfn: Pfn) -> Option<&Zone> {
        self.page_alloc.zones.iter().find(|z| z.spans(pfn))
    }

    /// The index of the zone that a GFP zone type means on this profile: a zone the profile
    /// does not configure means ZONE_NORMAL, as `OPT_ZONE_DMA32` and `OPT_ZONE_HIGHMEM` do
    /// (so `GFP_DMA32` on i386 may use Normal, and `__GFP_HIGHMEM` on x86_64 means Normal).
    #[inline]
    pub fn zone_index(&self, zt: ZoneType) -> usize {
        const X86_64: [usize; NR_ZONE_TYPES] = zone_indices(crate::arch::Profile::X86_64);
        const I386: [usize; NR_ZONE_TYPES] = zone_indices(crate::arch::Profile::I386);
        match self.profile() {
            crate::arch::Profile::X86_64 => X86_64[zt as usize],
            crate::arch::Profile::I386 => I386[zt as usize],
        }
    }

    /// The zonelist for `highest_zoneidx`: populated zones at or below it, highest first.
    pub fn zonelist(&self, highest_zoneidx: usize) -> impl Iterator<Item = &Zone> {
        self.page_alloc.zones[..=highest_zoneidx]
            .iter()
            .rev()
            .filter(|z| z.managed_pages > 0)
    }

    fn zone_lock<'a>(&'a self, zone: &'a Zone) -> ZoneLocked<'a, P> {
        ZoneLocked {
            guard: zone.free_area.lock_irqsave(&self.platform),
            mm: self,
            zone,
        }
    }

    // ----- watermarks --------------------------------------------------------------

    /// `__zone_watermark_unusable_free()`: the pages of a block smaller than the order, and
    /// the HighAtomic reserve unless this request may use it.
    fn unusable_free(zone: &Zone, order: u32, flags: AllocFlags) -> u64 {
        let mut unusable = (1u64 << order) - 1;
        if !flags.intersects(AllocFlags::RESERVES) {
            unusable += zone.nr_reserved_highatomic();
        }
        unusable
    }

    /// `__zone_watermark_ok()`: would `free_pages` stay above the mark (less the reserves
    /// this request may use, plus the lowmem reserve it must leave), with a block of the
    /// order on a list it may use?
    pub fn zone_watermark_ok(
        &self,
        zone: &Zone,
        order: u32,
        mark: u64,
        highest_zoneidx: usize,
        flags: AllocFlags,
        free_pages: u64,
    ) -> bool {
        let free = free_pages as i64 - Self::unusable_free(zone, order, flags) as i64;
        let min = effective_mark(mark, flags);
        if free <= min + zone.lowmem_reserve[highest_zoneidx] as i64 {
            return false;
        }
        if order == 0 {
            return true;
        }
        let area = zone.free_area.lock_irqsave(&self.platform);
        (order..=MAX_PAGE_ORDER).any(|o| {
            area.nr_free[o as usize] > 0
                && ((0..MIGRATE_PCPTYPES).any(|mt| !area.free_list[o as usize][mt].is_empty())
                    || (flags.intersects(AllocFlags::HIGHATOMIC | AllocFlags::OOM)
                        && !area.free_list[o as usize][MigrateType::HighAtomic as usize]
                            .is_empty()))
        })
    }

    /// `zone_watermark_fast()`: the order-0 shortcut, then the full check
    /// ([`Mm::zone_watermark_fast_full`], out of line).
    #[inline]
    fn zone_watermark_fast(
        &self,
        zone: &Zone,
        order: u32,
        mark: u64,
        highest: usize,
        flags: AllocFlags,
    ) -> bool {
        let free = zone.free_pages();
        if order == 0 {
            let reserved = Self::unusable_free(zone, 0, flags);
            let usable = free - free.min(reserved);
            if usable > mark + zone.lowmem_reserve[highest] {
                return true;
            }
        }
        self.zone_watermark_fast_full(zone, (order, mark, highest, flags), free)
    }

    /// The rest of `zone_watermark_fast()` once the order-0 shortcut has not decided:
    /// `__zone_watermark_ok()` on `free` pages, and for `__GFP_HIGH` order-0 requests
    /// at the min watermark, the same without the boost.
    #[inline(never)]
    fn zone_watermark_fast_full(
        &self,
        zone: &Zone,
        (order, mark, highest, flags): (u32, u64, usize, AllocFlags),
        free: u64,
    ) -> bool {
        if self.zone_watermark_ok(zone, order, mark, highest, flags, free) {
            return true;
        }
        // "Ignore watermark boosting for __GFP_HIGH order-0 allocations when checking the
        // min watermark. The min watermark is the point where boosting is ignored so that
        // kswapd is woken up when below the low watermark."
        if order == 0
            && flags.contains(AllocFlags::MIN_RESERVE)
            && zone.watermark_boost() > 0
            && flags.watermark() == Watermark::Min
        {
            let unboosted = zone.watermark[Watermark::Min as usize];
            return self.zone_watermark_ok(zone, order, unboosted, highest, flags, free);
        }
        false
    }

    /// Why `zone` could not serve the request: its watermark, free pages and largest
    /// free block, for the allocation-failure report.
    #[inline(never)]
    fn verdict(&self, zone: &Zone, ac: &AllocContext, flags: AllocFlags) -> ZoneVerdict {
        let pages = |n: u64| n.min(u32::MAX as u64) as u32;
        ZoneVerdict {
            zone: zone.zone_type,
            alloc_flags: flags.bits() as u8,
            wmark_pages: pages(zone.wmark(flags.watermark())),
            largest_order: zone
                .free_area
                .lock_irqsave(&self.platform)
                .largest_free_order()
                .map(|o| o as u8),
            free: pages(zone.free_pages()),
            reserve: pages(zone.lowmem_reserve[ac.highest_zoneidx]),
        }
    }
}

/// The kinds of zone ([`ZoneType`]'s variants).
const NR_ZONE_TYPES: usize = ZoneType::Movable as usize + 1;

// The tables indexed by `ZoneType as usize` are NR_ZONE_TYPES long: this match stops the
// build when a variant is added, until the count and `zone_indices()` know it.
const _: () = match ZoneType::Dma {
    ZoneType::Dma | ZoneType::Dma32 | ZoneType::Normal | ZoneType::HighMem | ZoneType::Movable => {}
};

/// [`Mm::zone_index`] of each [`ZoneType`] on `profile`, worked out at compile time: the
/// type's place among the profile's zones, or ZONE_NORMAL's for a type it does not
/// configure (or 0 without a Normal zone).
const fn zone_indices(profile: crate::arch::Profile) -> [usize; NR_ZONE_TYPES] {
    const fn place(types: &[ZoneType; MAX_NR_ZONES], zt: ZoneType) -> Option<usize> {
        let mut i = 0;
        while i < MAX_NR_ZONES {
            if types[i] as usize == zt as usize {
                return Some(i);
            }
            i += 1;
        }
        None
    }
    const ALL: [ZoneType; NR_ZONE_TYPES] = [
        ZoneType::Dma,
        ZoneType::Dma32,
        ZoneType::Normal,
        ZoneType::HighMem,
        ZoneType::Movable,
    ];
    let types = profile.zone_types();
    let normal = match place(&types, ZoneType::Normal) {
        Some(i) => i,
        None => 0,
    };
    let mut table = [0; NR_ZONE_TYPES];
    let mut t = 0;
    while t < NR_ZONE_TYPES {
        table[ALL[t] as usize] = match place(&types, ALL[t]) {
            Some(i) => i,
            None => normal,
        };
        t += 1;
    }
    table
}

/// The PFN [`Mm::page_to_pfn`] gives a descriptor that is not in `mem_map`: past any
/// physical address, so that the door refuses its frame and `pfn_valid()` fails.
pub const INVALID_PFN: Pfn = Pfn(u64::MAX >> crate::addr::PAGE_SHIFT);

impl<P: Platform> CorruptionReport for Mm<P> {
    fn list_corruption(&self, c: &crate::memory_model::ListCorruption) {
        self.report_list_corruption(c);
    }

    fn bad_page_state(&self, pfn: Pfn, reason: &str) {
        Mm::bad_page_state(self, pfn, reason);
    }
}

/// What boot precomputes for each `highest_zoneidx` (`build_zonelists`).
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq)]
pub struct ZonelistInfo {
    /// The first populated zone at or below it (`preferred_zoneref`).
    pub preferred: Option<usize>,
    /// Whether `alloc_flags_nofragment()` sets ALLOC_NOFRAGMENT: the preferred zone is
    /// Normal and DMA32 is populated.
    pub nofragment: bool,
}

/// Free-block counts of a zone, copied under its lock.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FreeAreaSnapshot {
    /// Blocks per order (`free_area[order].nr_free`).
    pub nr_free: [u64; crate::addr::NR_PAGE_ORDERS],
    /// Blocks per migrate type and order.
    pub per_type: [[u64; crate::addr::NR_PAGE_ORDERS]; MIGRATE_TYPES],
}

/// A zone with its lock held.
struct ZoneLocked<'a, P: Platform> {
    guard: crate::sync::SpinLockIrqGuard<'a, FreeArea, P>,
    mm: &'a Mm<P>,
    zone: &'a Zone,
}

impl<P: Platform> ZoneLocked<'_, P> {
    fn buddy(&mut self) -> Buddy<'_> {
        Buddy {
            map: &self.mm.mem_map,
            blocks: &self.mm.page_alloc.pageblocks,
            zone: self.zone,
            area: &mut self.guard,
            report: self.mm,
            boost_factor: if self.mm.page_alloc.booted {
                self.mm.page_alloc.vm.watermark_boost_factor.max(0) as u64
            } else {
                0
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A zone type the profile does not configure means ZONE_NORMAL (`OPT_ZONE_DMA32`,
    /// `OPT_ZONE_HIGHMEM`): DMA32 on i386 and HighMem on x86_64 map to Normal's index.
    #[test]
    fn zone_indices_follow_the_profiles() {
        use crate::arch::Profile;
        // Dma, Dma32, Normal, HighMem, Movable.
        assert_eq!(zone_indices(Profile::X86_64), [0, 1, 2, 2, 3]);
        assert_eq!(zone_indices(Profile::I386), [0, 1, 1, 2, 3]);
    }

    /// 6.6 `gfp_to_alloc_flags()` drops ALLOC_CPUSET only for a non-blocking request
    /// with `__GFP_HIGH` (ALLOC_MIN_RESERVE): GFP_ATOMIC ignores cpusets, GFP_NOWAIT and
    /// GFP_KERNEL keep them.
    #[test]
    fn gfp_to_alloc_flags_drops_cpuset_only_for_nonblocking_high() {
        let cpuset = |gfp: Gfp| AllocFlags::from_gfp(gfp, 0).contains(AllocFlags::CPUSET);
        assert!(!cpuset(Gfp::GFP_ATOMIC));
        assert!(!cpuset(Gfp::__GFP_HIGH));
        assert!(cpuset(Gfp::GFP_NOWAIT));
        assert!(cpuset(Gfp::GFP_NOWAIT | Gfp::__GFP_NOMEMALLOC));
        assert!(cpuset(Gfp::empty()));
        assert!(cpuset(Gfp::GFP_KERNEL));
        assert!(cpuset(Gfp::GFP_KERNEL | Gfp::__GFP_HIGH));
        assert_eq!(
            AllocFlags::from_gfp(Gfp::GFP_NOWAIT, 3),
            AllocFlags::CPUSET
                | AllocFlags::KSWAPD
                | AllocFlags::NON_BLOCK
                | AllocFlags::HIGHATOMIC
        );
    }
}
