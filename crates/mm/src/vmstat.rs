//! Event counters and page-state counters (`mm/vmstat.c`, `include/linux/vmstat.h`,
//! `include/linux/vm_event_item.h`, `include/linux/mmzone.h`).
//!
//! * [`VmEvents`]: global event counters (`enum vm_event_item`), plus a few of kmemlab's
//!   own for the rules the kernel enforces with a splat. The hot per-zone `pgalloc_*` and
//!   `pgfree` live per CPU ([`crate::percpu::PerCpuEvents`]).
//! * [`ZoneStatItem`] / [`NodeStatItem`]: the page counts the kernel keeps per zone
//!   (`zone->vm_stat`) and per node (`pgdat->vm_stat`), as far as kmemlab has the pages
//!   they count: the file LRU of the page cache.

use core::sync::atomic::{AtomicU64, Ordering::Relaxed};

use crate::page_alloc::{Zone, MAX_NR_ZONES};
use crate::platform::Platform;
use crate::Mm;

macro_rules! events {
    ($($(#[$doc:meta])* $name:ident),* $(,)?) => {
        /// The counters.
        #[derive(Default)]
        pub struct VmEvents {
            /// Direct reclaim entered, by the request's highest zone (`allocstall_<zone>`:
            /// `__count_zid_vm_events(ALLOCSTALL, sc->reclaim_idx, 1)`).
            pub allocstall: [AtomicU64; MAX_NR_ZONES],
            $($(#[$doc])* pub $name: AtomicU64,)*
        }

        impl VmEvents {
            /// Every single (not per-zone) counter with its name: the kernel's names for the
            /// kernel's counters, kmemlab's own after them.
            pub fn all(&self) -> impl Iterator<Item = (&'static str, u64)> + '_ {
                [$((stringify!($name), self.$name.load(Relaxed))),*].into_iter()
            }
        }
    };
}

events! {
    /// Pages reclaimed by kswapd (`pgsteal_kswapd`).
    pgsteal_kswapd,
    /// Pages reclaimed by direct reclaim (`pgsteal_direct`).
    pgsteal_direct,
    /// Pages scanned by kswapd (`pgscan_kswapd`).
    pgscan_kswapd,
    /// Pages scanned by direct reclaim (`pgscan_direct`).
    pgscan_direct,
    /// File-LRU pages scanned, by kswapd and direct reclaim alike (`pgscan_file`,
    /// `__count_vm_events(PGSCAN_ANON + file, nr_scanned)` in `shrink_inactive_list()`).
    /// The page cache is the only LRU kmemlab models, so this is always
    /// `pgscan_kswapd + pgscan_direct`; `pgscan_anon` is not kept (there is no anon
    /// memory).
    pgscan_file,
    /// File-LRU pages reclaimed, by kswapd and direct reclaim alike (`pgsteal_file`);
    /// always `pgsteal_kswapd + pgsteal_direct` here, and no `pgsteal_anon`.
    pgsteal_file,
    /// kswapd was woken during its short nap after balancing: the low watermark was hit
    /// again quickly (`kswapd_low_wmark_hit_quickly`).
    kswapd_low_wmark_hit_quickly,
    /// kswapd could not go to sleep because the node was unbalanced again (below high)
    /// when it tried (`kswapd_high_wmark_hit_quickly`).
    kswapd_high_wmark_hit_quickly,
    /// `balance_pgdat()` runs (`pageoutrun`).
    pageoutrun,
    /// Page-cache drops (`echo 1 > /proc/sys/vm/drop_caches`, `drop_pagecache`).
    drop_pagecache,
    /// Allocations that failed (`kmemlab`: the kernel prints a warning instead).
    alloc_fail,
    /// Allocations that succeeded only because their flags let them dig below the
    /// watermark (`ALLOC_MIN_RESERVE` for `__GFP_HIGH`, `ALLOC_NON_BLOCK`, `ALLOC_OOM`):
    /// without those reserves the zone would have refused them (kmemlab's own).
    alloc_reserve,
    /// Per-CPU list drains of all CPUs (`drain_all_pages`).
    drain_all_pages,
    /// Allocations served by a lower zone than the preferred one.
    zone_fallback,
    /// `BUG: sleeping function called from invalid context` splats.
    bug_sleep_in_atomic,
    /// `BUG: Bad page state` reports (double free, wrong order, foreign page).
    bug_bad_page,
    /// `WARNING`s (order too large, bad flags).
    warn,
    /// SLUB fast paths redone because an interrupt changed the CPU's tid
    /// (`note_cmpxchg_failure`).
    slab_cmpxchg_redo,
    /// SLUB `BUG` reports (slab_debug findings, naive double frees).
    bug_slab,
}

impl VmEvents {
    /// Add `n` to a counter.
    #[inline]
    pub fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Relaxed);
    }

    /// `allocstall_*` summed over the zones.
    pub fn allocstall_total(&self) -> u64 {
        self.allocstall.iter().map(|c| c.load(Relaxed)).sum()
    }
}

/// Per-zone page counts (`enum zone_stat_item`), the ones kmemlab has. `NR_FREE_PAGES`
/// is [`Zone::free_pages`].
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum ZoneStatItem {
    /// File pages on the inactive LRU in this zone (`NR_ZONE_INACTIVE_FILE`).
    NrZoneInactiveFile,
    /// File pages on the active LRU in this zone (`NR_ZONE_ACTIVE_FILE`).
    NrZoneActiveFile,
}

/// How many [`ZoneStatItem`]s there are.
pub const NR_ZONE_STAT_ITEMS: usize = 2;

impl ZoneStatItem {
    /// Every item, in the kernel's order.
    pub const ALL: [ZoneStatItem; NR_ZONE_STAT_ITEMS] = [
        ZoneStatItem::NrZoneInactiveFile,
        ZoneStatItem::NrZoneActiveFile,
    ];

    /// The name in `/proc/vmstat` and `/proc/zoneinfo` (`zone_stat_name`).
    pub const fn name(self) -> &'static str {
        match self {
            ZoneStatItem::NrZoneInactiveFile => "nr_zone_inactive_file",
            ZoneStatItem::NrZoneActiveFile => "nr_zone_active_file",
        }
    }
}

/// Per-node page counts (`enum node_stat_item`), the ones kmemlab has.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum NodeStatItem {
    /// File pages on the inactive LRU (`NR_INACTIVE_FILE`).
    NrInactiveFile,
    /// File pages on the active LRU (`NR_ACTIVE_FILE`).
    NrActiveFile,
    /// Pages in the page cache (`NR_FILE_PAGES`).
    NrFilePages,
}

/// How many [`NodeStatItem`]s there are.
pub const NR_NODE_STAT_ITEMS: usize = 3;

impl NodeStatItem {
    /// Every item, in the kernel's order.
    pub const ALL: [NodeStatItem; NR_NODE_STAT_ITEMS] = [
        NodeStatItem::NrInactiveFile,
        NodeStatItem::NrActiveFile,
        NodeStatItem::NrFilePages,
    ];

    /// The name in `/proc/vmstat` (`node_stat_name`).
    pub const fn name(self) -> &'static str {
        match self {
            NodeStatItem::NrInactiveFile => "nr_inactive_file",
            NodeStatItem::NrActiveFile => "nr_active_file",
            NodeStatItem::NrFilePages => "nr_file_pages",
        }
    }
}

/// A set of page counters (`atomic_long_t vm_stat[]`).
pub struct PageStates<const N: usize>([AtomicU64; N]);

impl<const N: usize> PageStates<N> {
    /// All zero.
    pub const fn new() -> Self {
        PageStates([const { AtomicU64::new(0) }; N])
    }

    fn get(&self, i: usize) -> u64 {
        self.0[i].load(Relaxed)
    }

    /// `atomic_long_add`; a count never goes below zero (a caller's bad delta is clamped
    /// rather than wrapped, and `check()` reports the disagreement).
    fn add(&self, i: usize, delta: i64) {
        let _ = self.0[i].fetch_update(Relaxed, Relaxed, |v| Some(v.saturating_add_signed(delta)));
    }
}

impl<const N: usize> Default for PageStates<N> {
    fn default() -> Self {
        Self::new()
    }
}

/// `zone->vm_stat`.
pub type ZoneStats = PageStates<NR_ZONE_STAT_ITEMS>;
/// `pgdat->vm_stat`.
pub type NodeStats = PageStates<NR_NODE_STAT_ITEMS>;

impl Zone {
    /// `zone_page_state(zone, item)`.
    pub fn page_state(&self, item: ZoneStatItem) -> u64 {
        self.vm_stat.get(item as usize)
    }
}

/// vmstat's state: the global event counters (`vm_event_states`, summed) and the node's
/// page counters (`pgdat->vm_stat`). Private to `vmstat`; read and counted through
/// [`Mm::events`], [`Mm::mod_node_page_state`] and [`Mm::node_page_state`].
pub struct VmStat {
    events: VmEvents,
    node_stat: NodeStats,
}

impl VmStat {
    /// All counters zero.
    pub(crate) fn new() -> VmStat {
        VmStat {
            events: VmEvents::default(),
            node_stat: NodeStats::new(),
        }
    }
}

impl<P: Platform> Mm<P> {
    /// Global event counters (`count_vm_event()` adds to them with [`VmEvents::add`]).
    #[inline]
    pub fn events(&self) -> &VmEvents {
        &self.vmstat.events
    }

    /// `mod_zone_page_state(zone, item, delta)`.
    pub fn mod_zone_page_state(&self, zone: &Zone, item: ZoneStatItem, delta: i64) {
        zone.vm_stat.add(item as usize, delta);
    }

    /// `mod_node_page_state(pgdat, item, delta)` (one node).
    pub fn mod_node_page_state(&self, item: NodeStatItem, delta: i64) {
        self.vmstat.node_stat.add(item as usize, delta);
    }

    /// `node_page_state(pgdat, item)`.
    pub fn node_page_state(&self, item: NodeStatItem) -> u64 {
        self.vmstat.node_stat.get(item as usize)
    }

    /// `global_zone_page_state(item)`: summed over the zones.
    pub fn global_zone_page_state(&self, item: ZoneStatItem) -> u64 {
        self.zones().iter().map(|z| z.page_state(item)).sum()
    }

    /// Account `page` (order 0) entering (`+1`) or leaving (`-1`) the page cache, as the
    /// kernel does in two steps: `__filemap_add_folio()` adds it to `NR_FILE_PAGES`, and
    /// `folio_add_lru()` puts a new file folio on the inactive file LRU
    /// (`update_lru_size()`: `NR_INACTIVE_FILE` of the node and `NR_ZONE_INACTIVE_FILE`
    /// of its zone). Removal (`__filemap_remove_folio()` after `lruvec_del_folio()`)
    /// undoes both. kmemlab's page cache keeps no access history, so its pages stay
    /// inactive: nothing is ever activated.
    pub fn account_page_cache(&self, page: &crate::Page, delta: i64) {
        let zone = self.page_zone(page);
        self.mod_node_page_state(NodeStatItem::NrFilePages, delta);
        self.mod_node_page_state(NodeStatItem::NrInactiveFile, delta);
        self.mod_zone_page_state(zone, ZoneStatItem::NrZoneInactiveFile, delta);
    }
}
