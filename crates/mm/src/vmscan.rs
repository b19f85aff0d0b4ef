//! Direct reclaim (`mm/vmscan.c`, `mm/shrinker.c`): ask the registered shrinkers to give
//! pages back, in rounds of rising urgency, until a batch is reclaimed.

use crate::addr::PAGE_ALLOC_COSTLY_ORDER;
use crate::gfp::Gfp;
use crate::platform::{Platform, Shrinker};
use crate::vmstat::VmEvents;
use crate::Mm;

/// `SWAP_CLUSTER_MAX`: the batch direct reclaim aims for.
pub const SWAP_CLUSTER_MAX: u64 = 32;
/// `DEF_PRIORITY`: the first round scans 1/4096 of each cache, the last all of it.
pub const DEF_PRIORITY: u32 = 12;

impl<P: Platform> Mm<P> {
    /// `try_to_free_pages()`: one direct-reclaim pass; returns the pages freed.
    pub fn try_to_free_pages(&self, gfp: Gfp, order: u32) -> u64 {
        VmEvents::add(&self.events.allocstall, 1);
        let nr_to_reclaim = if order > PAGE_ALLOC_COSTLY_ORDER {
            SWAP_CLUSTER_MAX
        } else {
            SWAP_CLUSTER_MAX.max(1 << order)
        };
        let mut reclaimed = 0;
        for priority in (0..=DEF_PRIORITY).rev() {
            reclaimed += self.shrink_slab(gfp, priority, nr_to_reclaim - reclaimed);
            if reclaimed >= nr_to_reclaim {
                break;
            }
        }
        reclaimed
    }

    /// `shrink_slab()`: each shrinker scans `freeable >> priority` objects (at least one
    /// batch once priority reaches 0), up to what is still wanted.
    fn shrink_slab(&self, gfp: Gfp, priority: u32, wanted: u64) -> u64 {
        let mut freed = 0u64;
        self.platform.for_each_shrinker(&mut |s: &dyn Shrinker<P>| {
            if freed >= wanted {
                return;
            }
            let freeable = s.count_objects(self);
            if freeable == 0 {
                return;
            }
            let scan = (freeable >> priority).max(1).min(wanted - freed);
            VmEvents::add(&self.events.pgscan_direct, scan);
            let got = s.scan_objects(self, gfp, scan);
            VmEvents::add(&self.events.pgsteal_direct, got);
            freed += got;
        });
        freed
    }

    /// Pages the shrinkers say they could free (`zone_reclaimable_pages`, summed).
    pub fn reclaimable_pages(&self) -> u64 {
        let mut total = 0;
        self.platform
            .for_each_shrinker(&mut |s: &dyn Shrinker<P>| total += s.count_objects(self));
        total
    }
}
