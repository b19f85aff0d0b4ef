//! A simulated page cache: clean file pages that workloads fill and that reclaim can
//! drop at once. It registers as a shrinker, as a stand-in for the kernel's file LRU, and
//! accounts its pages in the kernel's counters ([`Mm::account_page_cache`]:
//! `NR_FILE_PAGES`, the inactive file LRU), so they show as `Cached:` and
//! `Inactive(file):` in `/proc/meminfo` and as `nr_file_pages` in `/proc/vmstat`.

use std::collections::VecDeque;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Mutex;

use kmemlab_mm::page_alloc::MAX_NR_ZONES;
use kmemlab_mm::{Gfp, Mm, Pfn, Shrinker, PAGE_SIZE};

use crate::machine::SimPlatform;

/// Clean, droppable file pages: the inactive file LRU, one list per zone as the
/// kernel's LRU is sorted by zone when reclaim skips ineligible ones, oldest first.
#[derive(Default)]
pub struct PageCache {
    lru: Mutex<Lru>,
}

#[derive(Default)]
struct Lru {
    /// (age, page) per zone index, oldest first.
    zones: [VecDeque<(u64, Pfn)>; MAX_NR_ZONES],
    /// The next page's age.
    next_age: u64,
}

impl Lru {
    fn len_below(&self, reclaim_idx: usize) -> u64 {
        self.zones[..=reclaim_idx.min(MAX_NR_ZONES - 1)]
            .iter()
            .map(|l| l.len() as u64)
            .sum()
    }

    /// The oldest page of the zones at or below `reclaim_idx`.
    fn pop_oldest_below(&mut self, reclaim_idx: usize) -> Option<Pfn> {
        let zone = self.zones[..=reclaim_idx.min(MAX_NR_ZONES - 1)]
            .iter()
            .enumerate()
            .filter_map(|(i, l)| l.front().map(|&(age, _)| (age, i)))
            .min()?
            .1;
        self.zones[zone].pop_front().map(|(_, pfn)| pfn)
    }
}

/// What one [`PageCache::fill_bytes`] did.
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct FillReport {
    /// Pages asked for (the size rounded up to pages).
    pub requested: u64,
    /// Pages read into the cache.
    pub added: u64,
    /// Pages in the cache afterwards.
    pub cached: u64,
}

impl FillReport {
    /// Did memory run short before the whole size was read?
    pub fn stopped_short(&self) -> bool {
        self.added < self.requested
    }
}

impl PageCache {
    /// The flags of a page-cache read: `GFP_HIGHUSER_MOVABLE`, as `mapping_gfp_mask` is
    /// for ordinary files, with `__GFP_NORETRY | __GFP_NOWARN` as `readahead_gfp_mask()`
    /// adds. Unlike the kernel's readahead, which would reclaim the file's older pages to
    /// make room, a fill here does not enter direct reclaim (`__GFP_DIRECT_RECLAIM`
    /// cleared, `__GFP_NOMEMALLOC` so that being non-blocking grants no reserves): it reads
    /// as far as free memory goes, down to the min watermark, and stops there quietly.
    /// Passing the low watermark on the way wakes kswapd, which then trims the cache back
    /// to the high watermark.
    pub const GFP: Gfp = Gfp::GFP_HIGHUSER_MOVABLE
        .difference(Gfp::__GFP_DIRECT_RECLAIM)
        .union(Gfp::__GFP_NORETRY)
        .union(Gfp::__GFP_NOWARN)
        .union(Gfp::__GFP_NOMEMALLOC);

    /// Read `nr_pages` pages of "file data" into the cache (see [`PageCache::GFP`]); stops
    /// early, without a failure report, when memory runs short. Returns how many pages
    /// were added.
    pub fn fill(&self, mm: &Mm<SimPlatform>, nr_pages: u64) -> u64 {
        let mut added = 0;
        while added < nr_pages {
            // Allocate without holding the lock: reclaim may call back into the cache.
            let Ok(page) = mm.alloc_pages(Self::GFP, 0) else {
                break;
            };
            mm.account_page_cache(page, 1);
            let pfn = mm.page_to_pfn(page);
            let zone = mm.page_zone(page).idx;
            let mut lru = self.lru.lock().expect("page cache lock");
            let age = lru.next_age;
            lru.next_age += 1;
            lru.zones[zone].push_back((age, pfn));
            added += 1;
        }
        added
    }

    /// Read `bytes` (rounded up to whole pages) into the cache, as [`PageCache::fill`].
    pub fn fill_bytes(&self, mm: &Mm<SimPlatform>, bytes: u64) -> FillReport {
        let requested = bytes.div_ceil(PAGE_SIZE as u64);
        let added = self.fill(mm, requested);
        FillReport {
            requested,
            added,
            cached: self.len(),
        }
    }

    /// Pages in the cache.
    pub fn len(&self) -> u64 {
        self.len_below(MAX_NR_ZONES - 1)
    }

    /// Pages in the cache in zones at or below index `zone_idx`.
    pub fn len_below(&self, zone_idx: usize) -> u64 {
        self.lru
            .lock()
            .expect("page cache lock")
            .len_below(zone_idx)
    }

    /// Is the cache empty?
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Every page in the cache, oldest first per zone (for views).
    pub fn pfns(&self) -> Vec<Pfn> {
        let lru = self.lru.lock().unwrap_or_else(|e| e.into_inner());
        lru.zones
            .iter()
            .flat_map(|l| l.iter().map(|&(_, pfn)| pfn))
            .collect()
    }

    /// Drop every page (`echo 1 > /proc/sys/vm/drop_caches`, counted as
    /// `drop_pagecache`). Returns the pages freed.
    pub fn drop_all(&self, mm: &Mm<SimPlatform>) -> u64 {
        mm.events().drop_pagecache.fetch_add(1, Relaxed);
        self.scan(mm, u64::MAX, MAX_NR_ZONES - 1)
    }

    /// Evict up to `nr` pages of zones at or below `reclaim_idx`, oldest first: out of
    /// the page cache's accounting, then back to the page allocator.
    fn scan(&self, mm: &Mm<SimPlatform>, nr: u64, reclaim_idx: usize) -> u64 {
        let mut freed = 0;
        while freed < nr {
            let next = self
                .lru
                .lock()
                .expect("page cache lock")
                .pop_oldest_below(reclaim_idx);
            let Some(pfn) = next else {
                break;
            };
            if let Ok(page) = mm.pfn_to_page(pfn) {
                mm.account_page_cache(page, -1);
                if mm.__free_pages(page, 0).is_ok() {
                    freed += 1;
                }
            }
        }
        freed
    }
}

impl Shrinker<SimPlatform> for PageCache {
    fn name(&self) -> &str {
        "pagecache"
    }

    fn count_objects(&self, _mm: &Mm<SimPlatform>) -> u64 {
        self.len()
    }

    fn scan_objects(&self, mm: &Mm<SimPlatform>, _gfp: Gfp, nr_to_scan: u64) -> u64 {
        self.scan(mm, nr_to_scan, MAX_NR_ZONES - 1)
    }

    fn count_objects_below(&self, _mm: &Mm<SimPlatform>, reclaim_idx: usize) -> u64 {
        self.len_below(reclaim_idx)
    }

    fn scan_objects_below(
        &self,
        mm: &Mm<SimPlatform>,
        _gfp: Gfp,
        nr_to_scan: u64,
        reclaim_idx: usize,
    ) -> u64 {
        self.scan(mm, nr_to_scan, reclaim_idx)
    }

    /// Every page on the LRU lists, zone by zone.
    fn for_each_file_page(&self, f: &mut dyn FnMut(Pfn)) {
        let lru = self.lru.lock().expect("page cache lock");
        for &(_, pfn) in lru.zones.iter().flatten() {
            f(pfn);
        }
    }
}
