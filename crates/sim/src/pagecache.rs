//! A simulated page cache: clean file pages that workloads fill and that reclaim can
//! drop at once. It registers as a shrinker, as a stand-in for the kernel's file LRU.

use std::collections::VecDeque;
use std::sync::Mutex;

use kmemlab_mm::{Gfp, Mm, Pfn, Shrinker};

use crate::machine::SimPlatform;

/// Clean, droppable file pages, oldest first.
#[derive(Default)]
pub struct PageCache {
    pages: Mutex<VecDeque<Pfn>>,
}

impl PageCache {
    /// Read `nr_pages` pages of "file data" into the cache (GFP_HIGHUSER_MOVABLE, as
    /// `mapping_gfp_mask` is for ordinary files); stops early when memory runs out.
    /// Returns how many pages were added.
    pub fn fill(&self, mm: &Mm<SimPlatform>, nr_pages: u64) -> u64 {
        let gfp = Gfp::GFP_HIGHUSER_MOVABLE | Gfp::__GFP_NOWARN | Gfp::__GFP_NORETRY;
        let mut added = 0;
        while added < nr_pages {
            // Allocate without holding the lock: the allocation may reclaim from us.
            let Ok(page) = mm.alloc_pages(gfp, 0) else {
                break;
            };
            let pfn = mm.page_to_pfn(page);
            self.pages.lock().expect("page cache lock").push_back(pfn);
            added += 1;
        }
        added
    }

    /// Pages in the cache.
    pub fn len(&self) -> u64 {
        self.pages.lock().expect("page cache lock").len() as u64
    }

    /// Is the cache empty?
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Drop every page (`echo 1 > /proc/sys/vm/drop_caches`).
    pub fn drop_all(&self, mm: &Mm<SimPlatform>) -> u64 {
        self.scan(mm, u64::MAX)
    }

    fn scan(&self, mm: &Mm<SimPlatform>, nr: u64) -> u64 {
        let mut freed = 0;
        while freed < nr {
            let Some(pfn) = self.pages.lock().expect("page cache lock").pop_front() else {
                break;
            };
            if let Ok(page) = mm.pfn_to_page(pfn) {
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
