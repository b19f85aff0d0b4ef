//! The zoned buddy page allocator (`mm/page_alloc.c`, following Linux 6.6).
//!
//! * `zone`: zones, migrate types, watermarks and free areas.
//! * [`buddy`]: split, merge and migrate-type fallback under the zone lock.
//! * [`pcp`]: per-CPU lists for orders 0-3 and pageblock order.
//! * this module: the allocation and free paths (`__alloc_pages`,
//!   `get_page_from_freelist`, `rmqueue`, `__free_pages`, ...), and the public API named
//!   after the kernel's.
//! * [`slowpath`]: direct reclaim, retries and the allocation-failure report.
//! * [`check`]: the invariant checker.
//!
//! Everything the allocator keeps in simulated RAM (`struct page`, the per-CPU lists and
//! counters, the pageblock flags) is checked where it is read: a PFN taken from a list
//! must be a block of that list in the zone, a count or factor is used with saturating
//! arithmetic, a list link must point back. What fails is reported as the kernel reports
//! it (`list_del corruption`, `BUG: Bad page state`) and the operation goes on without
//! that block; page contents are written through the door.

pub mod buddy;
mod bulk;
pub mod check;
pub mod pageblock;
pub mod pcp;
pub mod query;
pub mod slowpath;
pub mod sysctl;
mod zone;

use core::fmt;
use core::sync::atomic::Ordering::Relaxed;

pub use pcp::PerCpuPages;
pub use zone::{
    FreeArea, MigrateType, Watermark, Zone, ZoneType, MAX_NR_ZONES, MIGRATE_PCPTYPES, MIGRATE_TYPES,
};

use crate::addr::{Pfn, PhysAddr, VirtAddr, MAX_PAGE_ORDER, PAGE_SIZE};
use crate::context::SleepInAtomic;
use crate::gfp::{Gfp, GfpError};
use crate::mm_types::{Page, PG_HEAD, PG_PCP, PG_TAIL};
use crate::platform::Platform;
use crate::vmstat::VmEvents;
use crate::Mm;
use buddy::{list_add_or_restart, list_restart, Buddy, CorruptionReport, Fpi};
use pcp::{order_to_pindex, pcp_allowed_order, pindex_to_order, NR_PCP_LISTS};

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

    /// `gfp_to_alloc_flags()`: the slow path's flags, min watermark plus the reserve access
    /// the GFP flags grant.
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
            flags.remove(AllocFlags::CPUSET);
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

/// Why one zone could not serve a request, for the failure report.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct ZoneVerdict {
    /// The zone.
    pub zone: ZoneType,
    /// The largest free order, if any.
    pub largest_order: Option<u8>,
    /// The low byte of the attempt's allocation flags: which watermark it checked and
    /// which reserves below it the request could use (kept small: the failure report
    /// travels inside every allocation error).
    pub alloc_flags: u8,
    /// Free pages at the time (`NR_FREE_PAGES`; pages of a zone fit 32 bits up to 16 TiB).
    pub free: u32,
    /// The watermark checked, in pages.
    pub wmark_pages: u32,
    /// The lowmem reserve held back from this request.
    pub reserve: u32,
}

impl ZoneVerdict {
    /// The attempt's allocation flags (their low byte: watermark and reserve access).
    pub fn flags(&self) -> AllocFlags {
        AllocFlags::from_bits_truncate(u32::from(self.alloc_flags))
    }

    /// Which watermark was checked.
    pub fn watermark(&self) -> Watermark {
        self.flags().watermark()
    }

    /// The floor the request could dig down to: the watermark less the reserves its flags
    /// grant (0 with `ALLOC_NO_WATERMARKS`).
    pub fn floor(&self) -> u32 {
        if self.flags().contains(AllocFlags::NO_WATERMARKS) {
            return 0;
        }
        effective_mark(u64::from(self.wmark_pages), self.flags()).max(0) as u32
    }

    /// Who may use the reserves below the watermark, and how much of them.
    fn reserve_rule(&self) -> &'static str {
        let f = self.flags();
        if f.contains(AllocFlags::OOM) {
            "an OOM victim (ALLOC_OOM): half"
        } else if f.contains(AllocFlags::MIN_RESERVE | AllocFlags::NON_BLOCK) {
            "__GFP_HIGH (half) and a non-blocking caller (a further quarter), as GFP_ATOMIC"
        } else if f.contains(AllocFlags::MIN_RESERVE) {
            "__GFP_HIGH: half"
        } else {
            "none"
        }
    }
}

/// The watermark part of a zone's verdict: which watermark, the reserves the request may
/// use below it, and the lowmem reserve it must leave.
impl fmt::Display for ZoneVerdict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let name = match self.watermark() {
            Watermark::Min => "min",
            Watermark::Low => "low",
            Watermark::High => "high",
        };
        let floor = self.floor();
        if floor < self.wmark_pages {
            write!(
                f,
                "watermark {name} {} less the reserves of {} = floor {floor}",
                self.wmark_pages,
                self.reserve_rule(),
            )?;
        } else if self.watermark() == Watermark::Min {
            write!(
                f,
                "watermark min {floor} (no access to the reserves below it)"
            )?;
        } else {
            write!(f, "watermark {name} {floor}")?;
        }
        write!(f, " + lowmem_reserve {}, ", self.reserve)
    }
}

/// Why the page allocator gave up.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum FailReason {
    /// A non-blocking request (no `__GFP_DIRECT_RECLAIM`): no reclaim, fail at once.
    CannotReclaim,
    /// `__GFP_NORETRY`: one round of reclaim only.
    NoRetry,
    /// An order above PAGE_ALLOC_COSTLY_ORDER without `__GFP_RETRY_MAYFAIL`.
    CostlyOrder,
    /// Reclaim stopped making progress (`MAX_RECLAIM_RETRIES`) and there is no OOM killer.
    ReclaimExhausted,
    /// `__GFP_NOFAIL` retried as long as retrying could change anything.
    NoFailExhausted,
    /// No populated zone is allowed for these flags.
    NoZone,
}

impl FailReason {
    fn describe(self) -> &'static str {
        match self {
            FailReason::CannotReclaim => "the request may not sleep, so no direct reclaim was tried",
            FailReason::NoRetry => "__GFP_NORETRY: gave up after one round of reclaim",
            FailReason::CostlyOrder => {
                "costly order (> PAGE_ALLOC_COSTLY_ORDER 3) without __GFP_RETRY_MAYFAIL: no retries"
            }
            FailReason::ReclaimExhausted => {
                "reclaim made no progress after MAX_RECLAIM_RETRIES (16) rounds, and nothing can be OOM-killed"
            }
            FailReason::NoFailExhausted => {
                "__GFP_NOFAIL: retried until nothing was left to reclaim (the kernel would loop here for ever)"
            }
            FailReason::NoZone => "no populated zone is allowed for these flags",
        }
    }
}

/// A page allocation that failed for lack of memory (what `warn_alloc` reports).
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct AllocFailure {
    /// The flags.
    pub gfp: Gfp,
    /// The order.
    pub order: u32,
    /// The preferred (highest allowed, populated) zone.
    pub preferred: Option<ZoneType>,
    /// Why allocation stopped.
    pub reason: FailReason,
    /// The last verdict of each zone tried, lowest zone first.
    pub zones: [Option<ZoneVerdict>; MAX_NR_ZONES],
    /// Pages reclaimed while trying.
    pub reclaimed: u64,
}

impl fmt::Display for AllocFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "page allocation failure: order:{}, mode:{:?}: {}",
            self.order,
            self.gfp,
            self.reason.describe()
        )?;
        for v in self.zones.iter().flatten().rev() {
            write!(f, "; {}: free {} pages, {}", v.zone, v.free, v)?;
            match v.largest_order.map(u32::from) {
                Some(o) if o >= self.order => write!(f, "largest free block order {o}")?,
                Some(o) => write!(
                    f,
                    "no free block of order {} (largest: order {o})",
                    self.order
                )?,
                None => write!(f, "no free block at all")?,
            }
        }
        if self.reclaimed > 0 {
            write!(f, "; {} pages reclaimed on the way", self.reclaimed)?;
        }
        Ok(())
    }
}

impl core::error::Error for AllocFailure {}

/// Why `alloc_pages` and friends returned no page.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AllocError {
    /// `order > MAX_PAGE_ORDER`.
    OrderTooLarge(u32),
    /// The GFP flags are invalid.
    BadGfp(GfpError),
    /// A blocking request in atomic context: the kernel's `might_sleep` splat.
    SleepInAtomic(SleepInAtomic),
    /// `__get_free_pages` with `__GFP_HIGHMEM`: a HighMem page has no permanent address.
    HighMemHasNoAddress,
    /// Out of memory (or too fragmented) for this request.
    NoMemory(AllocFailure),
}

impl fmt::Display for AllocError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AllocError::OrderTooLarge(o) => write!(
                f,
                "order {o} is larger than MAX_PAGE_ORDER ({MAX_PAGE_ORDER}): WARN_ON_ONCE in __alloc_pages"
            ),
            AllocError::BadGfp(e) => e.fmt(f),
            AllocError::SleepInAtomic(s) => s.fmt(f),
            AllocError::HighMemHasNoAddress => write!(
                f,
                "__get_free_pages with __GFP_HIGHMEM: a HighMem page has no kernel address (VM_BUG_ON)"
            ),
            AllocError::NoMemory(failure) => failure.fmt(f),
        }
    }
}

impl core::error::Error for AllocError {}

impl From<GfpError> for AllocError {
    fn from(e: GfpError) -> Self {
        AllocError::BadGfp(e)
    }
}

/// Why a free was refused (each also reported as the kernel's `BUG: Bad page state`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum FreeError {
    /// The PFN is not RAM described by `mem_map` (`pfn_valid()` fails).
    InvalidPfn(Pfn),
    /// The address is not a direct-map address.
    NotDirectMapped(VirtAddr),
    /// The reference does not point into this machine's `mem_map`.
    ForeignPage,
    /// The page is reserved (boot memory, a hole, firmware).
    Reserved(Pfn),
    /// The page is already free (or was never the head of an allocation).
    AlreadyFree(Pfn),
    /// A tail page of a compound allocation.
    TailPage(Pfn),
    /// The order differs from the allocation's.
    WrongOrder {
        /// The page.
        pfn: Pfn,
        /// The order passed to the free.
        freed: u32,
        /// The order it was allocated with.
        allocated: u32,
    },
    /// The page belongs to a slab: free it with `kfree`/`kmem_cache_free`.
    SlabPage(Pfn),
    /// `order > MAX_PAGE_ORDER`.
    OrderTooLarge(u32),
}

impl FreeError {
    /// The line `dump_page` prints after "page dumped because: ".
    pub fn reason(&self) -> &'static str {
        match self {
            FreeError::InvalidPfn(_) => "pfn not valid",
            FreeError::NotDirectMapped(_) => "address not in the direct map",
            FreeError::ForeignPage => "struct page not in this mem_map",
            FreeError::Reserved(_) => "PAGE_FLAGS_CHECK_AT_FREE flag(s) set",
            FreeError::AlreadyFree(_) => "VM_BUG_ON_PAGE(page_ref_count(page) == 0)",
            FreeError::TailPage(_) => "freeing a tail page",
            FreeError::WrongOrder { .. } => "freeing with the wrong order",
            FreeError::SlabPage(_) => "PAGE_FLAGS_CHECK_AT_FREE flag(s) set",
            FreeError::OrderTooLarge(_) => "order > MAX_PAGE_ORDER",
        }
    }
}

impl fmt::Display for FreeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FreeError::InvalidPfn(p) => write!(f, "pfn {p} is not valid RAM (pfn_valid() fails)"),
            FreeError::NotDirectMapped(v) => write!(f, "{v} is not a direct-map address (virt_to_page)"),
            FreeError::ForeignPage => write!(f, "the struct page is not in this machine's mem_map"),
            FreeError::Reserved(p) => write!(f, "BUG: Bad page state: pfn {p} is reserved"),
            FreeError::AlreadyFree(p) => write!(
                f,
                "BUG: Bad page state: pfn {p} has refcount 0: already free, or not the first page of an allocation"
            ),
            FreeError::TailPage(p) => write!(f, "BUG: Bad page state: pfn {p} is a tail page of a compound page"),
            FreeError::WrongOrder { pfn, freed, allocated } => write!(
                f,
                "BUG: Bad page state: pfn {pfn} freed with order {freed} but allocated with order {allocated}"
            ),
            FreeError::SlabPage(p) => write!(f, "BUG: Bad page state: pfn {p} belongs to a slab"),
            FreeError::OrderTooLarge(o) => write!(f, "order {o} is larger than MAX_PAGE_ORDER ({MAX_PAGE_ORDER})"),
        }
    }
}

impl core::error::Error for FreeError {}

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
    /// The migrate type of each pageblock (`pageblock_flags`).
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
}

impl PageAlloc {
    /// Empty zones of the profile's types, default tunables, no pageblocks yet.
    pub(crate) fn new(types: &[ZoneType; MAX_NR_ZONES], thp: sysctl::Thp) -> PageAlloc {
        PageAlloc {
            zones: core::array::from_fn(|i| Zone::new(types[i], i)),
            zonelists: Default::default(),
            pageblocks: pageblock::Pageblocks::empty(),
            vm: sysctl::VmTunables::defaults(types),
            thp,
            booted: false,
            totalreserve_pages: 0,
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

    /// `totalreserve_pages`: high watermarks plus lowmem reserves, not counted as available.
    pub fn totalreserve_pages(&self) -> u64 {
        self.page_alloc.totalreserve_pages
    }

    /// `totalram_pages()`: the pages the buddy allocator manages, over all zones.
    pub fn totalram_pages(&self) -> u64 {
        self.zones().iter().map(|z| z.managed_pages).sum()
    }

    /// The index of the zone that spans `pfn`, if any.
    pub(crate) fn zone_idx_of(&self, pfn: u64) -> Option<usize> {
        self.page_alloc.zones.iter().position(|z| z.spans(pfn))
    }

    /// `calculate_node_totalpages()` (`mm/mm_init.c`) for zone `idx`: where it starts, the
    /// pages it spans (holes included) and the pages present.
    pub(crate) fn init_zone_span(&mut self, idx: usize, start_pfn: u64, spanned: u64, present: u64) {
        let zone = &mut self.page_alloc.zones[idx];
        zone.zone_start_pfn = start_pfn;
        zone.spanned_pages = spanned;
        zone.present_pages = present;
    }

    /// Install the pageblock flags boot carved out of RAM (`setup_usemap()`), every
    /// pageblock Movable as `memmap_init_range()` leaves it.
    pub(crate) fn init_pageblocks(&mut self, blocks: pageblock::Pageblocks) {
        self.page_alloc.pageblocks = blocks;
        for block in 0..self.page_alloc.pageblocks.len() {
            self.page_alloc
                .pageblocks
                .set(block * crate::addr::PAGEBLOCK_NR_PAGES, MigrateType::Movable);
        }
    }

    /// `__free_pages_core()` at boot (`memblock_free_pages()`): the block `pfn` of
    /// `order` goes to its zone's free lists at the tail and counts as managed
    /// (`atomic_long_add(nr_pages, &page_zone(page)->managed_pages)`). RAM that no zone
    /// spans (beyond the profile's limits) is not managed; returns whether it was.
    pub(crate) fn free_pages_core(&mut self, pfn: u64, order: u32) -> bool {
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
    pub fn zone_of_pfn(&self, pfn: u64) -> Option<&Zone> {
        self.page_alloc.zones.iter().find(|z| z.spans(pfn))
    }

    /// The index of the zone that a GFP zone type means on this profile: a zone the profile
    /// does not configure means ZONE_NORMAL, as `OPT_ZONE_DMA32` and `OPT_ZONE_HIGHMEM` do
    /// (so `GFP_DMA32` on i386 may use Normal, and `__GFP_HIGHMEM` on x86_64 means Normal).
    pub fn zone_index(&self, zt: ZoneType) -> usize {
        let types = self.profile().zone_types();
        match types.iter().position(|&t| t == zt) {
            Some(i) => i,
            None => types
                .iter()
                .position(|&t| t == ZoneType::Normal)
                .unwrap_or(0),
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

    /// `zone_watermark_fast()`: the order-0 shortcut, then the full check.
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

    // ----- allocation --------------------------------------------------------------

    /// `alloc_pages(gfp, order)`: 2^order physically contiguous pages. Returns the first
    /// page's descriptor (`struct page *`), or an error saying what failed and why.
    pub fn alloc_pages(&self, gfp: Gfp, order: u32) -> Result<&Page, AllocError> {
        let ac = self.prepare_alloc_pages(gfp, order)?;
        let mut verdicts = [None; MAX_NR_ZONES];
        let mut flags = AllocFlags::WMARK_LOW;
        flags |= self.alloc_flags_nofragment(&ac);
        match self.get_page_from_freelist_page(&ac, flags, &mut verdicts) {
            Some((_, page)) => Ok(page),
            None => Ok(self.mem_map.page(self.alloc_pages_slowpath(&ac, verdicts)?)),
        }
    }

    /// `prepare_alloc_pages()`: validate the request and build its context.
    pub(crate) fn prepare_alloc_pages(
        &self,
        gfp: Gfp,
        order: u32,
    ) -> Result<AllocContext, AllocError> {
        if order > MAX_PAGE_ORDER {
            VmEvents::add(&self.events().warn, 1);
            // 6.6 `__alloc_pages()`: `WARN_ON_ONCE_GFP(order > MAX_ORDER, gfp)`, once per
            // boot and never for __GFP_NOWARN.
            const SITE: crate::report::KernelSite = crate::report::KernelSite {
                file: "mm/page_alloc.c",
                line: 4410,
                func: "__alloc_pages",
            };
            crate::report::warn_on_once!(self, !gfp.contains(Gfp::__GFP_NOWARN), SITE);
            return Err(AllocError::OrderTooLarge(order));
        }
        let zone_type = gfp
            .gfp_zone()
            .inspect_err(|_| VmEvents::add(&self.events().warn, 1))?;
        let migratetype = gfp
            .migratetype()
            .inspect_err(|_| VmEvents::add(&self.events().warn, 1))?;
        if gfp.allows_blocking() {
            self.might_sleep().map_err(AllocError::SleepInAtomic)?;
        }
        Ok(AllocContext {
            gfp,
            order,
            highest_zoneidx: self.zone_index(zone_type),
            migratetype,
            cpu: self.platform.smp_processor_id(),
        })
    }

    /// `alloc_flags_nofragment()`: when the preferred zone is Normal and DMA32 exists,
    /// first try without splitting foreign pageblocks below pageblock order.
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
    ) -> Option<u64> {
        self.get_page_from_freelist_page(ac, flags, verdicts)
            .map(|(pfn, _)| pfn)
    }

    /// [`Mm::get_page_from_freelist`] answering the block's first PFN with its descriptor
    /// (what the kernel's `struct page *` carries), so the fast path looks it up once.
    #[inline]
    fn get_page_from_freelist_page(
        &self,
        ac: &AllocContext,
        mut flags: AllocFlags,
        verdicts: &mut [Option<ZoneVerdict>; MAX_NR_ZONES],
    ) -> Option<(u64, &Page)> {
        let preferred = self.page_alloc.zonelists[ac.highest_zoneidx].preferred?;
        loop {
            for zone in self.zonelist(ac.highest_zoneidx) {
                if !flags.contains(AllocFlags::NO_WATERMARKS) {
                    let mark = zone.wmark(flags.watermark());
                    if !self.zone_watermark_fast(zone, ac.order, mark, ac.highest_zoneidx, flags) {
                        verdicts[zone.idx] = Some(self.verdict(zone, ac, flags));
                        continue;
                    }
                }
                let dips = self.needs_reserves(zone, ac, flags);
                if let Some((pfn, page)) = self.rmqueue(zone, ac, flags) {
                    let events = &self.percpu.get(ac.cpu).events;
                    events.pgalloc[zone.idx].add(1 << ac.order);
                    if zone.idx != preferred {
                        VmEvents::add(&self.events().zone_fallback, 1);
                    }
                    if dips {
                        VmEvents::add(&self.events().alloc_reserve, 1);
                    }
                    self.prep_new_page(pfn, page, ac);
                    if flags.contains(AllocFlags::HIGHATOMIC) {
                        self.reserve_highatomic_pageblock(zone, pfn);
                    }
                    return Some((pfn, page));
                }
                verdicts[zone.idx] = Some(self.verdict(zone, ac, flags));
            }
            if flags.contains(AllocFlags::NOFRAGMENT) {
                flags.remove(AllocFlags::NOFRAGMENT);
                continue;
            }
            return None;
        }
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
    /// Answers the block's first PFN and its descriptor.
    fn rmqueue(&self, zone: &Zone, ac: &AllocContext, flags: AllocFlags) -> Option<(u64, &Page)> {
        let mut page = None;
        if pcp_allowed_order(ac.order) {
            page = self.rmqueue_pcplist(zone, ac, flags);
        }
        if page.is_none() {
            page = self
                .rmqueue_buddy(zone, ac.order, ac.migratetype, flags)
                .map(|pfn| (pfn, self.mem_map.page(pfn)));
        }
        // "Separate test+clear to avoid unnecessary atomics"
        if flags.contains(AllocFlags::KSWAPD) && zone.boosted_watermark.load(Relaxed) {
            zone.boosted_watermark.store(false, Relaxed);
            self.wakeup_kswapd(zone, Gfp::empty(), 0, zone.idx);
        }
        page
    }

    /// `rmqueue_pcplist()`: pop from this CPU's list, refilling it with a batch first.
    fn rmqueue_pcplist(
        &self,
        zone: &Zone,
        ac: &AllocContext,
        flags: AllocFlags,
    ) -> Option<(u64, &Page)> {
        let pcp = &self.percpu.get(ac.cpu).pcp[zone.idx];
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
    pub(crate) fn __rmqueue_pcplist(
        &self,
        zone: &Zone,
        order: u32,
        mt: MigrateType,
        flags: AllocFlags,
        pcp: &PerCpuPages,
    ) -> Option<(u64, &Page)> {
        let list = &pcp.lists[order_to_pindex(mt as usize, order)];
        if list.is_empty() {
            let mut batch = pcp.batch();
            if batch > 1 {
                batch = (batch >> order).max(2);
            }
            let got = self.rmqueue_bulk(
                zone,
                order,
                batch,
                pcp,
                order_to_pindex(mt as usize, order),
                mt,
                flags,
            );
            pcp.count
                .store(pcp.count().wrapping_add(got << order), Relaxed);
        }
        let popped = match list.try_pop_front_page(&self.mem_map) {
            Ok(popped) => popped,
            Err(e) => {
                self.report_list_corruption(&e);
                list.init();
                None
            }
        };
        let popped = popped.filter(|&(pfn, page)| self.pcp_page_ok(zone, pfn, page, order));
        if popped.is_some() {
            pcp.count
                .store(pcp.count().saturating_sub(1 << order), Relaxed);
        }
        popped
    }

    /// Is `pfn`, taken off a per-CPU list of `order` for `zone`, such a block: inside the
    /// zone, aligned, marked as on a per-CPU list with that order? One that is not is
    /// reported (`bad_page()` from `check_new_pages()` / `free_pcppages_bulk()`) and
    /// dropped.
    #[inline]
    fn pcp_block_ok(&self, zone: &Zone, pfn: u64, order: u32) -> bool {
        match self.mem_map.get(pfn) {
            Some(page) => self.pcp_page_ok(zone, pfn, page, order),
            None => {
                self.bad_page_state(pfn, "per-CPU list entry is not a block of the list's order");
                false
            }
        }
    }

    /// [`Mm::pcp_block_ok`] with the descriptor of `pfn` in hand.
    #[inline]
    fn pcp_page_ok(&self, zone: &Zone, pfn: u64, page: &Page, order: u32) -> bool {
        let n = 1u64 << order;
        let offset = pfn.wrapping_sub(zone.zone_start_pfn);
        let ok = pfn & (n - 1) == 0
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
            page.set_flags(PG_PCP);
            page.set_pcp_migratetype(mt as u32);
            page.set_order(order);
            list_add_or_restart(self, &self.mem_map, &pcp.lists[pindex], pfn, true);
            got += 1;
        }
        got
    }

    /// `rmqueue_buddy()`: one block straight from the buddy lists, under the zone lock.
    fn rmqueue_buddy(
        &self,
        zone: &Zone,
        order: u32,
        mt: MigrateType,
        flags: AllocFlags,
    ) -> Option<u64> {
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

    /// `prep_new_page()`: the block becomes an allocation: refcount 1, zeroed for
    /// `__GFP_ZERO`, head and tails marked for `__GFP_COMP`. `page` is the descriptor of
    /// `pfn`.
    #[inline]
    pub(crate) fn prep_new_page(&self, pfn: u64, page: &Page, ac: &AllocContext) {
        page.set_flags(0);
        page.set_pcp_migratetype(ac.migratetype as u32);
        page.set_order(ac.order);
        page.set_refcount(1);
        if ac.gfp.contains(Gfp::__GFP_ZERO) {
            self.clear_pages(pfn, 1 << ac.order);
        }
        if ac.gfp.contains(Gfp::__GFP_COMP) && ac.order > 0 {
            page.set(PG_HEAD);
            for tail in pfn + 1..pfn + (1 << ac.order) {
                let t = self.mem_map.page(tail);
                t.set_flags(PG_TAIL);
                t.set_word(pfn);
            }
        }
    }

    /// `clear_highpage()` over `n` pages (through a temporary mapping for HighMem, which
    /// here is simply physical memory).
    pub(crate) fn clear_pages(&self, pfn: u64, n: u64) {
        let phys = Pfn(pfn).phys().0;
        let len = n.saturating_mul(PAGE_SIZE as u64);
        if let Err(e) = self.ram().fill(phys, 0, len) {
            // A block over a hole: the kernel's store would fault in the direct map.
            let va = self.layout.page_offset.wrapping_add(e.addr);
            self.bad_page_fault(va, true);
        }
    }

    /// `reserve_highatomic_pageblock()`: after a high-order atomic allocation succeeds,
    /// keep its pageblock for such allocations (up to 1% of the zone).
    fn reserve_highatomic_pageblock(&self, zone: &Zone, pfn: u64) {
        let max_managed = zone.managed_pages / 100 + crate::addr::PAGEBLOCK_NR_PAGES;
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
                .fetch_add(crate::addr::PAGEBLOCK_NR_PAGES, Relaxed);
        }
    }

    /// `unreserve_highatomic_pageblock()`: give HighAtomic pageblocks back to the request's
    /// type; with `force`, all of them. Returns whether any was released.
    pub(crate) fn unreserve_highatomic_pageblock(&self, ac: &AllocContext, force: bool) -> bool {
        let mut released = false;
        for zone in self.zonelist(ac.highest_zoneidx) {
            let mut locked = self.zone_lock(zone);
            if !force && zone.nr_reserved_highatomic() <= crate::addr::PAGEBLOCK_NR_PAGES {
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
                    .saturating_sub(crate::addr::PAGEBLOCK_NR_PAGES);
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

    // ----- free --------------------------------------------------------------------

    /// `__free_pages(page, order)`: give back an allocation. A page that is not the head of
    /// a live allocation of this order is refused with the kernel's bad-page report.
    pub fn __free_pages(&self, page: &Page, order: u32) -> Result<(), FreeError> {
        let pfn = self.mem_map.pfn_of(page).ok_or(FreeError::ForeignPage)?;
        let zone = self.free_pages_check(pfn.0, page, order)?;
        self.debug_check_no_obj_freed(pfn.phys(), (PAGE_SIZE as u64) << order);
        // put_page_testzero(): of two racing frees, only one takes the reference.
        if !page.put_testzero() {
            let e = FreeError::AlreadyFree(pfn);
            self.bad_page(pfn.0, &e);
            return Err(e);
        }
        let cpu = self.platform.smp_processor_id();
        self.free_pages_prepare(pfn.0, page, order, cpu);
        if pcp_allowed_order(order) {
            self.free_unref_page(zone, pfn.0, page, order, cpu);
        } else {
            let mt = self.page_alloc.pageblocks.get(pfn.0);
            self.free_one_page(zone, pfn.0, order, mt);
        }
        Ok(())
    }

    /// The checks of `free_pages_prepare()` / `free_page_is_bad()`, made before anything
    /// changes so a refused free leaves memory exactly as it was; the zone the block lies
    /// in, whole, when they pass. `page` is the descriptor of `pfn` (the caller has it, as
    /// the kernel passes `struct page *`).
    #[inline]
    fn free_pages_check(&self, pfn: u64, page: &Page, order: u32) -> Result<&Zone, FreeError> {
        let zone = self.zone_of_pfn(pfn);
        let err = if order > MAX_PAGE_ORDER {
            Some(FreeError::OrderTooLarge(order))
        } else if page.is_reserved() {
            Some(FreeError::Reserved(Pfn(pfn)))
        } else if page.is_slab() {
            Some(FreeError::SlabPage(Pfn(pfn)))
        } else if page.is_tail() {
            Some(FreeError::TailPage(Pfn(pfn)))
        } else if page.refcount() == 0 {
            Some(FreeError::AlreadyFree(Pfn(pfn)))
        } else if page.order() != order
            || pfn.trailing_zeros() < order
            || !zone.is_some_and(|z| z.spans(pfn + (1 << order) - 1))
        {
            Some(FreeError::WrongOrder {
                pfn: Pfn(pfn),
                freed: order,
                allocated: page.order(),
            })
        } else {
            None
        };
        match (err, zone) {
            (None, Some(zone)) => Ok(zone),
            // A page of mem_map outside every zone (a hole's page that lost PG_reserved).
            (err, _) => {
                let e = err.unwrap_or(FreeError::InvalidPfn(Pfn(pfn)));
                self.bad_page(pfn, &e);
                Err(e)
            }
        }
    }

    /// Is the block of `2^order` pages at `pfn` aligned to its order and inside one zone?
    fn block_in_one_zone(&self, pfn: u64, order: u32) -> bool {
        pfn.trailing_zeros() >= order
            && self
                .zone_of_pfn(pfn)
                .is_some_and(|z| z.spans(pfn + (1 << order) - 1))
    }

    /// `bad_page()`: the kernel's report of a page in a state it should not be in.
    fn bad_page(&self, pfn: u64, err: &FreeError) {
        self.bad_page_state(pfn, err.reason());
    }

    /// `bad_page(page, reason)` (`mm/page_alloc.c`, 6.6): `BUG: Bad page state`, the
    /// `dump_page()` lines, and taint `B`. For a PFN without a descriptor only the first
    /// line and the reason are printed.
    #[cold]
    #[inline(never)]
    pub(crate) fn bad_page_state(&self, pfn: u64, reason: &str) {
        VmEvents::add(&self.events().bug_bad_page, 1);
        self.add_taint(crate::report::taint::BAD_PAGE);
        let Some(page) = self.mem_map.get(pfn) else {
            self.printk(format_args!(
                "BUG: Bad page state in process {}  pfn:{:05x}",
                self.platform.current_comm(),
                pfn
            ));
            self.printk(format_args!("page dumped because: {reason}"));
            return;
        };
        self.printk(format_args!(
            "BUG: Bad page state in process {}  pfn:{:05x}",
            self.platform.current_comm(),
            pfn
        ));
        self.printk(format_args!(
            "page:{:#018x} refcount:{} mapcount:{} mapping:0000000000000000 index:0x0 pfn:{:#x}",
            self.struct_page_address(page).0,
            page.refcount(),
            page.mapcount(),
            pfn
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
    /// state), as `free_pages_prepare()` does; `page` is the descriptor of `pfn`.
    #[inline]
    fn free_pages_prepare(&self, pfn: u64, page: &Page, order: u32, cpu: usize) {
        if page.is_head() {
            for tail in pfn + 1..pfn + (1 << order) {
                self.mem_map.page(tail).reset();
            }
        }
        page.reset();
        self.percpu.get(cpu).events.pgfree.add(1 << order);
    }

    /// `free_one_page()`: straight to the buddy lists of `zone` under its lock.
    fn free_one_page(&self, zone: &Zone, pfn: u64, order: u32, mt: MigrateType) {
        let mut locked = self.zone_lock(zone);
        locked.buddy().free_one_page(pfn, order, mt, Fpi::None);
    }

    /// `free_unref_page()`: onto this CPU's list, draining a batch once it is too long;
    /// `page` is the descriptor of `pfn`.
    #[inline]
    fn free_unref_page(&self, zone: &Zone, pfn: u64, page: &Page, order: u32, cpu: usize) {
        let mt = self.page_alloc.pageblocks.get(pfn);
        let pcp_mt = match mt {
            MigrateType::Isolate => return self.free_one_page(zone, pfn, order, mt),
            MigrateType::HighAtomic => MigrateType::Movable,
            other => other,
        };
        let pcp = &self.percpu.get(cpu).pcp[zone.idx];
        if !pcp.lock.try_lock(cpu) {
            return self.free_one_page(zone, pfn, order, mt);
        }
        self.free_unref_page_commit(zone, pcp, (pfn, page), pcp_mt, mt, order);
        pcp.lock.unlock();
    }

    /// `free_unref_page_commit()` for `pfn` and its descriptor.
    #[inline]
    fn free_unref_page_commit(
        &self,
        zone: &Zone,
        pcp: &PerCpuPages,
        (pfn, page): (u64, &Page),
        pcp_mt: MigrateType,
        block_mt: MigrateType,
        order: u32,
    ) {
        let pindex = order_to_pindex(pcp_mt as usize, order);
        page.set_flags(PG_PCP);
        page.set_pcp_migratetype(block_mt as u32);
        page.set_order(order);
        let list = &pcp.lists[pindex];
        if let Err(e) = list.try_push_front_page(&self.mem_map, pfn, page) {
            list_restart(self, &self.mem_map, list, pfn, &e);
        }
        let count = pcp.count().saturating_add(1 << order);
        pcp.count.store(count, Relaxed);
        let free_high = pcp.free_factor.load(Relaxed) > 0
            && order > 0
            && order <= crate::addr::PAGE_ALLOC_COSTLY_ORDER;
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
            let order = pindex_to_order(pindex as usize);
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

    // ----- the rest of the API -----------------------------------------------------

    /// `__get_free_pages()`: `alloc_pages` and return the direct-map address.
    pub fn __get_free_pages(&self, gfp: Gfp, order: u32) -> Result<VirtAddr, AllocError> {
        if gfp.contains(Gfp::__GFP_HIGHMEM) {
            return Err(AllocError::HighMemHasNoAddress);
        }
        let page = self.alloc_pages(gfp, order)?;
        self.page_address(page)
            .ok_or(AllocError::HighMemHasNoAddress)
    }

    /// `get_zeroed_page()`.
    pub fn get_zeroed_page(&self, gfp: Gfp) -> Result<VirtAddr, AllocError> {
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
            self.mem_map.page(INVALID_PFN.0);
            INVALID_PFN
        })
    }

    /// `pfn_to_page()`, refusing PFNs that `pfn_valid()` refuses.
    pub fn pfn_to_page(&self, pfn: Pfn) -> Result<&Page, FreeError> {
        if !self.pfn_valid(pfn) {
            return Err(FreeError::InvalidPfn(pfn));
        }
        Ok(self.mem_map.page(pfn.0))
    }

    /// `pfn_valid()`: described by `mem_map` and backed by RAM.
    pub fn pfn_valid(&self, pfn: Pfn) -> bool {
        self.mem_map.contains(pfn.0) && self.memblock.is_memory(pfn.phys().0, pfn.phys().0 + 1)
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
        self.zone_of_pfn(pfn.0).unwrap_or_else(|| {
            // Only a foreign descriptor lies in no zone (its fault is recorded).
            self.mem_map.page(INVALID_PFN.0);
            &self.page_alloc.zones[0]
        })
    }

    /// The kernel virtual address of a page's descriptor (what `struct page *` holds):
    /// `mem_map` lives in the direct map.
    pub fn struct_page_address(&self, page: &Page) -> VirtAddr {
        let pfn = self.page_to_pfn(page).0;
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
        self.page_alloc.pageblocks.get(pfn.0)
    }

    /// `split_page(page, order)`: a non-compound allocation of 2^order pages becomes 2^order
    /// order-0 allocations, each with its own reference, to be freed one by one (a huge
    /// vmalloc does this so that each small page can be treated on its own).
    pub fn split_page(&self, page: &Page, order: u32) -> Result<(), FreeError> {
        let pfn = self.mem_map.pfn_of(page).ok_or(FreeError::ForeignPage)?;
        if page.is_head()
            || page.is_tail()
            || page.is_slab()
            || page.refcount() != 1
            || page.order() != order
        {
            return Err(FreeError::WrongOrder {
                pfn,
                freed: order,
                allocated: page.order(),
            });
        }
        if order > MAX_PAGE_ORDER || !self.block_in_one_zone(pfn.0, order) {
            return Err(FreeError::OrderTooLarge(order));
        }
        let mt = page.pcp_migratetype();
        for p in pfn.0..pfn.0 + (1 << order) {
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

/// The PFN [`Mm::page_to_pfn`] gives a descriptor that is not in `mem_map`: past any
/// physical address, so that the door refuses its frame and `pfn_valid()` fails.
pub const INVALID_PFN: Pfn = Pfn(u64::MAX >> crate::addr::PAGE_SHIFT);

impl<P: Platform> CorruptionReport for Mm<P> {
    fn list_corruption(&self, c: &crate::memory_model::ListCorruption) {
        self.report_list_corruption(c);
    }

    fn bad_page_state(&self, pfn: u64, reason: &str) {
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
