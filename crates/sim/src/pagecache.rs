//! A simulated page cache: clean file pages that workloads fill and that reclaim can
//! drop at once. It registers as a shrinker, as a stand-in for the kernel's file LRU, and
//! accounts its pages in the kernel's counters ([`Mm::account_page_cache`]:
//! `NR_FILE_PAGES`, the inactive file LRU), so they show as `Cached:` and
//! `Inactive(file):` in `/proc/meminfo` and as `nr_file_pages` in `/proc/vmstat`.

use std::collections::VecDeque;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Mutex;

use kmemlab_mm::{Gfp, Mm, Pfn, Shrinker, PAGE_SIZE};

use crate::machine::SimPlatform;

/// Clean, droppable file pages, oldest first.
#[derive(Default)]
pub struct PageCache {
    pages: Mutex<VecDeque<Pfn>>,
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
            self.pages.lock().expect("page cache lock").push_back(pfn);
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
        self.pages.lock().expect("page cache lock").len() as u64
    }

    /// Is the cache empty?
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Drop every page (`echo 1 > /proc/sys/vm/drop_caches`, counted as
    /// `drop_pagecache`). Returns the pages freed.
    pub fn drop_all(&self, mm: &Mm<SimPlatform>) -> u64 {
        mm.events().drop_pagecache.fetch_add(1, Relaxed);
        self.scan(mm, u64::MAX)
    }

    /// Evict up to `nr` pages, oldest first: out of the page cache's accounting, then
    /// back to the page allocator.
    fn scan(&self, mm: &Mm<SimPlatform>, nr: u64) -> u64 {
        let mut freed = 0;
        while freed < nr {
            let Some(pfn) = self.pages.lock().expect("page cache lock").pop_front() else {
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
        self.scan(mm, nr_to_scan)
    }
}
