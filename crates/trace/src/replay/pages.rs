//! The page events: `mm_page_alloc` and `mm_page_free` replayed on the buddy allocator.

use super::{LivePages, Replayer};
use kmemlab_mm::{Gfp, Mm};

use crate::event::TraceEvent;
use crate::stats::{PERF_MIGRATE_TYPES, PERF_ORDERS};
use kmemlab_sim::SimPlatform;

/// The page events. `pfn` arguments are the traced machine's frame numbers (plain `u64`
/// keys of [`Replayer::pages`]); the replaying machine's own blocks are the [`kmemlab_mm::Pfn`]s
/// in [`LivePages`], the only frames handed to its `mm`.
impl Replayer<'_> {
    pub(super) fn page_alloc(
        &mut self,
        mm: &Mm<SimPlatform>,
        ev: &TraceEvent,
        pfn: Option<u64>,
        order: u32,
        migratetype: u32,
        gfp: Gfp,
    ) {
        let bytes = page_bytes(order);
        self.page.nr_allocs += 1;
        self.page.alloc_bytes += bytes;
        let Some(pfn) = pfn else {
            self.page.nr_fails += 1;
            self.page.fail_bytes += bytes;
            return;
        };
        let o = (order as usize).min(PERF_ORDERS - 1);
        let m = (migratetype as usize).min(PERF_MIGRATE_TYPES - 1);
        self.page.order_stats[o][m] += 1;
        if let Some(old) = self.pages.remove(&pfn) {
            self.counters.reused_live_pointer += 1;
            self.free_pages(mm, &old);
        }
        let kpfn = if self.options.replay_pages {
            match self.with_sleep_retry(gfp, |g| mm.alloc_pages(g, order)) {
                Ok(page) => Some(mm.page_to_pfn(page)),
                Err(e) => {
                    self.counters.page_alloc_failures += 1;
                    self.note(mm, ev, &e);
                    None
                }
            }
        } else {
            self.counters.page_events_skipped += 1;
            None
        };
        self.pages.insert(pfn, LivePages { pfn: kpfn, order });
    }

    /// `--live`: perf's order table counts the pages still allocated, so a free takes
    /// its allocation's count back (`evsel__process_page_free_event`).
    pub(super) fn live_page_freed(&mut self, pfn: u64, order: u32) {
        if let Some((order, mt)) = self.tables.page_free(pfn, order) {
            let o = (order as usize).min(PERF_ORDERS - 1);
            let m = (mt as usize).min(PERF_MIGRATE_TYPES - 1);
            let n = &mut self.page.order_stats[o][m];
            *n = n.saturating_sub(1);
        }
    }

    pub(super) fn page_free(&mut self, mm: &Mm<SimPlatform>, pfn: u64, order: u32) {
        let bytes = page_bytes(order);
        self.page.nr_frees += 1;
        self.page.free_bytes += bytes;
        let Some(live) = self.pages.remove(&pfn) else {
            self.page.nr_nomatch += 1;
            self.page.nomatch_bytes += bytes;
            self.counters.untracked_frees += 1;
            return;
        };
        if !self.options.replay_pages {
            self.counters.page_events_skipped += 1;
        }
        if live.order != order {
            self.counters.page_order_mismatch += 1;
        }
        self.free_pages(mm, &live);
    }

    pub(super) fn free_pages(&mut self, mm: &Mm<SimPlatform>, live: &LivePages) {
        let Some(kpfn) = live.pfn else {
            return;
        };
        let result = mm
            .pfn_to_page(kpfn)
            .and_then(|page| mm.__free_pages(page, live.order));
        if let Err(e) = result {
            self.counters.free_failures += 1;
            self.note_message(format!(
                "__free_pages(pfn {:#x}, {}): {e}",
                kpfn.raw(),
                live.order
            ));
        }
    }
}

/// Bytes of a traced block of `order` (the parser keeps orders at or below 20).
pub(super) fn page_bytes(order: u32) -> u128 {
    4096u128 << order.min(64)
}
