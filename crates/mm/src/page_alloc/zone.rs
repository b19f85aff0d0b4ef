//! Zones and their free areas (`include/linux/mmzone.h`).

use core::fmt;
use core::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};

use crate::addr::{Pfn, NR_PAGE_ORDERS};
use crate::memory_model::PageList;
use crate::sync::SpinLockIrq;

/// Zones per node, in every profile (four: see [`crate::arch::Profile::zone_types`]).
pub const MAX_NR_ZONES: usize = 4;

/// The kind of a zone (`enum zone_type`).
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ZoneType {
    /// Below 16 MiB, for ISA-style devices.
    Dma,
    /// Below 4 GiB, for 32-bit devices (x86_64 only).
    Dma32,
    /// Directly mapped memory above the DMA zones.
    Normal,
    /// i386 memory above 896 MiB, not permanently mapped.
    HighMem,
    /// Memory for movable allocations only (empty unless `kernelcore=` is set).
    Movable,
}

impl ZoneType {
    /// The zone's name as `/proc` prints it.
    pub const fn name(self) -> &'static str {
        match self {
            ZoneType::Dma => "DMA",
            ZoneType::Dma32 => "DMA32",
            ZoneType::Normal => "Normal",
            ZoneType::HighMem => "HighMem",
            ZoneType::Movable => "Movable",
        }
    }

    /// Parse a zone name, case-insensitively.
    pub fn from_name(name: &str) -> Option<ZoneType> {
        [
            ZoneType::Dma,
            ZoneType::Dma32,
            ZoneType::Normal,
            ZoneType::HighMem,
            ZoneType::Movable,
        ]
        .into_iter()
        .find(|z| z.name().eq_ignore_ascii_case(name))
    }
}

impl fmt::Display for ZoneType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Migrate types (`enum migratetype`), grouping pages by mobility so that unmovable
/// allocations do not scatter over all of memory.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[repr(u8)]
pub enum MigrateType {
    /// Kernel allocations that can never move.
    Unmovable = 0,
    /// User pages and page cache: can be migrated or reclaimed.
    Movable = 1,
    /// Reclaimable slab (dentries, inodes): freed by shrinkers.
    Reclaimable = 2,
    /// Pageblocks reserved for high-order atomic allocations.
    HighAtomic = 3,
    /// Pageblocks being isolated (memory hot-remove, CMA); never allocated from.
    Isolate = 4,
}

/// The number of migrate types (`MIGRATE_TYPES`).
pub const MIGRATE_TYPES: usize = 5;
/// Types with per-CPU lists (`MIGRATE_PCPTYPES`).
pub const MIGRATE_PCPTYPES: usize = 3;

impl MigrateType {
    /// All types, in the kernel's order.
    pub const ALL: [MigrateType; MIGRATE_TYPES] = [
        MigrateType::Unmovable,
        MigrateType::Movable,
        MigrateType::Reclaimable,
        MigrateType::HighAtomic,
        MigrateType::Isolate,
    ];

    /// From the numeric value.
    pub const fn from_index(i: usize) -> MigrateType {
        match i {
            0 => MigrateType::Unmovable,
            1 => MigrateType::Movable,
            2 => MigrateType::Reclaimable,
            3 => MigrateType::HighAtomic,
            _ => MigrateType::Isolate,
        }
    }

    /// The name in `/proc/pagetypeinfo` (`migratetype_names`).
    pub const fn name(self) -> &'static str {
        match self {
            MigrateType::Unmovable => "Unmovable",
            MigrateType::Movable => "Movable",
            MigrateType::Reclaimable => "Reclaimable",
            MigrateType::HighAtomic => "HighAtomic",
            MigrateType::Isolate => "Isolate",
        }
    }

    /// The letter `show_free_areas()` prints for a type (`show_migration_types`).
    pub const fn letter(self) -> char {
        match self {
            MigrateType::Unmovable => 'U',
            MigrateType::Movable => 'M',
            MigrateType::Reclaimable => 'E',
            MigrateType::HighAtomic => 'H',
            MigrateType::Isolate => 'I',
        }
    }
}

impl fmt::Display for MigrateType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Index of a watermark in [`Zone::watermark`] (`enum zone_watermarks`).
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum Watermark {
    /// `WMARK_MIN`: below it only reserve-allowed allocations succeed.
    Min = 0,
    /// `WMARK_LOW`: below it kswapd is woken; the fast path's mark.
    Low = 1,
    /// `WMARK_HIGH`: kswapd reclaims until free memory is back above it.
    High = 2,
}

/// The buddy free lists of one zone (`struct free_area[NR_PAGE_ORDERS]`).
pub struct FreeArea {
    /// `free_area[order].free_list[migratetype]`.
    pub free_list: [[PageList; MIGRATE_TYPES]; NR_PAGE_ORDERS],
    /// `free_area[order].nr_free`: blocks of each order.
    pub nr_free: [u64; NR_PAGE_ORDERS],
    /// Blocks of each order on each migrate type's list: kmemlab's own counter (6.6 keeps
    /// only `nr_free` per order and walks the lists for `/proc/pagetypeinfo`), kept as
    /// `nr_free` is, so that a sample of the free area reads counters whatever the RAM.
    /// `Mm::check` holds it to the lists.
    pub nr_free_type: [[u64; MIGRATE_TYPES]; NR_PAGE_ORDERS],
}

impl FreeArea {
    const fn new() -> FreeArea {
        FreeArea {
            free_list: [const { [const { PageList::new() }; MIGRATE_TYPES] }; NR_PAGE_ORDERS],
            nr_free: [0; NR_PAGE_ORDERS],
            nr_free_type: [[0; MIGRATE_TYPES]; NR_PAGE_ORDERS],
        }
    }

    /// The highest order with a free block, if any.
    pub fn largest_free_order(&self) -> Option<u32> {
        (0..NR_PAGE_ORDERS as u32)
            .rev()
            .find(|&o| self.nr_free[o as usize] > 0)
    }
}

/// One zone of physical memory (`struct zone`).
pub struct Zone {
    /// Which zone this is.
    pub zone_type: ZoneType,
    /// Its index in the node (`zone_idx()`).
    pub idx: usize,
    /// First PFN spanned (`zone_start_pfn`).
    pub zone_start_pfn: Pfn,
    /// PFNs from the first to the last, holes included (`spanned_pages`).
    pub spanned_pages: u64,
    /// Pages of RAM in the span (`present_pages`).
    pub present_pages: u64,
    /// Pages given to the buddy allocator (`managed_pages`).
    pub managed_pages: u64,
    /// The min / low / high watermarks in pages (`_watermark`), without the boost.
    pub watermark: [u64; 3],
    /// `watermark_boost`: added to every watermark after fragmenting fallbacks
    /// (`boost_watermark()`), taken back by kswapd. Changed under the zone lock.
    pub(crate) watermark_boost: AtomicU64,
    /// `ZONE_BOOSTED_WATERMARK`: boosted since kswapd was last woken for it.
    pub(crate) boosted_watermark: AtomicBool,
    /// Pages kept back from allocations whose highest zone is higher
    /// (`lowmem_reserve`, shown as `protection:` in zoneinfo).
    pub lowmem_reserve: [u64; MAX_NR_ZONES],
    /// The per-CPU list batch (`pcp->batch`).
    pub pcp_batch: u32,
    /// The per-CPU list high mark (`pcp->high`).
    pub pcp_high: u32,
    /// The zone lock and the free lists it protects.
    pub(crate) free_area: SpinLockIrq<FreeArea>,
    /// `NR_FREE_PAGES`: pages in the buddy free lists (per-CPU lists excluded).
    pub(crate) nr_free_pages: AtomicU64,
    /// `nr_reserved_highatomic`: pages in HighAtomic pageblocks. Changed under the zone
    /// lock, read without it, as the kernel does.
    pub(crate) nr_reserved_highatomic: AtomicU64,
    /// Pageblocks claimed by another migrate type in fallback (what the
    /// `mm_page_alloc_extfrag` tracepoint reports as `change_ownership=1`).
    pub pageblock_steals: AtomicU64,
    /// The zone's page counters (`vm_stat`), see [`crate::vmstat::ZoneStatItem`].
    pub(crate) vm_stat: crate::vmstat::ZoneStats,
}

impl Zone {
    /// An empty zone of the given type and index.
    pub(crate) const fn new(zone_type: ZoneType, idx: usize) -> Zone {
        Zone {
            zone_type,
            idx,
            zone_start_pfn: Pfn(0),
            spanned_pages: 0,
            present_pages: 0,
            managed_pages: 0,
            watermark: [0; 3],
            watermark_boost: AtomicU64::new(0),
            boosted_watermark: AtomicBool::new(false),
            lowmem_reserve: [0; MAX_NR_ZONES],
            pcp_batch: 0,
            pcp_high: 0,
            free_area: SpinLockIrq::new(FreeArea::new()),
            nr_free_pages: AtomicU64::new(0),
            nr_reserved_highatomic: AtomicU64::new(0),
            pageblock_steals: AtomicU64::new(0),
            vm_stat: crate::vmstat::ZoneStats::new(),
        }
    }

    /// The zone's name.
    pub const fn name(&self) -> &'static str {
        self.zone_type.name()
    }

    /// `populated_zone()`: does the zone have any RAM?
    pub const fn is_populated(&self) -> bool {
        self.present_pages > 0
    }

    /// `zone_end_pfn()`.
    pub const fn zone_end_pfn(&self) -> Pfn {
        Pfn(self.zone_start_pfn.raw() + self.spanned_pages)
    }

    /// Does the zone span `pfn`?
    #[inline]
    pub const fn spans(&self, pfn: Pfn) -> bool {
        pfn.raw().wrapping_sub(self.zone_start_pfn.raw()) < self.spanned_pages
    }

    /// `zone_page_state(zone, NR_FREE_PAGES)`.
    #[inline]
    pub fn free_pages(&self) -> u64 {
        self.nr_free_pages.load(Relaxed)
    }

    /// `zone->nr_reserved_highatomic`.
    #[inline]
    pub fn nr_reserved_highatomic(&self) -> u64 {
        self.nr_reserved_highatomic.load(Relaxed)
    }

    /// `min_wmark_pages()` / `low_wmark_pages()` / `high_wmark_pages()`: the watermark
    /// plus the boost (`wmark_pages()`, 6.6).
    #[inline]
    pub fn wmark(&self, w: Watermark) -> u64 {
        self.watermark[w as usize] + self.watermark_boost()
    }

    /// `zone->watermark_boost`.
    #[inline]
    pub fn watermark_boost(&self) -> u64 {
        self.watermark_boost.load(Relaxed)
    }
}
