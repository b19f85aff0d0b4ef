//! Page reclaim (`mm/vmscan.c`, `mm/shrinker.c` of Linux 6.6): direct reclaim by the
//! allocating task, and kswapd, the node's background reclaimer.
//!
//! Both ask the registered shrinkers to give pages back, scanning `freeable >> priority`
//! of each at a priority that rises from [`DEF_PRIORITY`] towards 0. The page cache of
//! the simulator registers as one, standing in for the file LRU, so its pages count as
//! `pgscan_*` / `pgsteal_*` as the kernel counts LRU pages: by reclaimer
//! (`pgscan_kswapd`, `pgscan_direct`) and, as file pages, in `pgscan_file` /
//! `pgsteal_file` too (Linux 6.6 `shrink_inactive_list()`). There is no anon LRU, so no
//! `pgscan_anon` / `pgsteal_anon`.
//!
//! kswapd is a state machine the platform drives ([`Mm::kswapd_pending`] and
//! [`Mm::kswapd_run`]), as the kernel's `kswapd()` loop would run on a CPU of its own:
//! asleep on `kswapd_wait`; woken by [`Mm::wakeup_kswapd`] when an allocation finds the
//! node below the low watermark; `balance_pgdat()` until some eligible zone is back above
//! its high watermark; then a short nap (`schedule_timeout(HZ/10)` in the kernel). The
//! nap lasts until the machine next runs kswapd's work: if it was woken meanwhile, the
//! low watermark was hit quickly; if the node is unbalanced again when the nap ends, the
//! high watermark was; otherwise kswapd goes fully to sleep.

use core::sync::atomic::{AtomicBool, AtomicU32, AtomicU8, AtomicUsize, Ordering::Relaxed};

use crate::addr::PAGE_ALLOC_COSTLY_ORDER;
use crate::gfp::Gfp;
use crate::page_alloc::slowpath::MAX_RECLAIM_RETRIES;
use crate::page_alloc::{AllocFlags, Watermark, Zone, MAX_NR_ZONES};
use crate::platform::{Platform, Shrinker};
use crate::vmstat::VmEvents;
use crate::Mm;

/// `SWAP_CLUSTER_MAX`: the batch direct reclaim aims for.
pub const SWAP_CLUSTER_MAX: u64 = 32;
/// `DEF_PRIORITY`: the first round scans 1/4096 of each cache, the last all of it.
pub const DEF_PRIORITY: u32 = 12;
/// How many `balance_pgdat()` passes one [`Mm::kswapd_run`] makes at most before it
/// returns to the platform. The kernel's kswapd loops for as long as the node stays
/// unbalanced and something is reclaimable; a simulated CPU has to come back.
pub const KSWAPD_MAX_PASSES: u32 = 4 * MAX_RECLAIM_RETRIES;

/// Who is reclaiming, which picks the counters (`reclaimer_offset()`).
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum Reclaimer {
    /// The node's kswapd (`pgscan_kswapd`, `pgsteal_kswapd`).
    Kswapd,
    /// An allocating task (`pgscan_direct`, `pgsteal_direct`).
    Direct,
}

/// Pages scanned and reclaimed (`sc->nr_scanned`, `sc->nr_reclaimed`).
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq)]
pub struct ReclaimStats {
    /// Pages looked at.
    pub scanned: u64,
    /// Pages freed.
    pub reclaimed: u64,
}

impl ReclaimStats {
    fn add(&mut self, other: ReclaimStats) {
        self.scanned += other.scanned;
        self.reclaimed += other.reclaimed;
    }
}

const ASLEEP: u8 = 0;
const NAPPING: u8 = 1;
const RUNNING: u8 = 2;

/// Where kswapd is in its loop.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum KswapdState {
    /// Fully asleep on `kswapd_wait` until woken (`schedule()`).
    Asleep,
    /// In the short nap after balancing the node (`schedule_timeout(HZ/10)`).
    Napping,
    /// Reclaiming (`balance_pgdat()`): not on the wait queue, so wake-ups only leave
    /// their order and zone index behind.
    Running,
}

/// The node's kswapd: the `pg_data_t` fields it uses (`kswapd_wait`, `kswapd_order`,
/// `kswapd_highest_zoneidx`, `kswapd_failures`).
pub struct Kswapd {
    state: AtomicU8,
    /// A wake-up arrived while kswapd was on the wait queue.
    woken: AtomicBool,
    /// `pgdat->kswapd_order`: the largest order a waker asked for.
    order: AtomicU32,
    /// `pgdat->kswapd_highest_zoneidx`; `MAX_NR_ZONES` when no waker asked.
    highest_zoneidx: AtomicUsize,
    /// `pgdat->kswapd_failures`: `balance_pgdat()` runs in a row that reclaimed nothing.
    failures: AtomicU32,
    /// The order and zone index kswapd went to sleep (or nap) for.
    sleep_order: AtomicU32,
    sleep_zoneidx: AtomicUsize,
}

impl Kswapd {
    /// Asleep, as `kswapd()` is once it has found the freshly booted node balanced.
    pub(crate) const fn new() -> Kswapd {
        Kswapd {
            state: AtomicU8::new(ASLEEP),
            woken: AtomicBool::new(false),
            order: AtomicU32::new(0),
            highest_zoneidx: AtomicUsize::new(MAX_NR_ZONES),
            failures: AtomicU32::new(0),
            sleep_order: AtomicU32::new(0),
            sleep_zoneidx: AtomicUsize::new(MAX_NR_ZONES - 1),
        }
    }

    /// `kswapd_highest_zoneidx()`: the waker's zone index, else the previous cycle's;
    /// resets the request (`WRITE_ONCE(pgdat->kswapd_highest_zoneidx, MAX_NR_ZONES)`).
    fn take_highest_zoneidx(&self, prev: usize) -> usize {
        match self.highest_zoneidx.swap(MAX_NR_ZONES, Relaxed) {
            MAX_NR_ZONES => prev,
            idx => idx,
        }
    }
}

/// What one [`Mm::kswapd_run`] did.
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq)]
pub struct KswapdRun {
    /// It ran because it was woken (rather than because its nap ended).
    pub woken: bool,
    /// `balance_pgdat()` passes (each counted as `pageoutrun`).
    pub passes: u32,
    /// Pages scanned and reclaimed.
    pub stats: ReclaimStats,
    /// The node was balanced when kswapd went back to the wait queue.
    pub balanced: bool,
}

/// vmscan's state: the node's kswapd (`pgdat->kswapd*`). Private to `vmscan`.
pub struct Vmscan {
    kswapd: Kswapd,
}

impl Vmscan {
    /// kswapd asleep, as after boot.
    pub(crate) const fn new() -> Vmscan {
        Vmscan {
            kswapd: Kswapd::new(),
        }
    }
}

impl<P: Platform> Mm<P> {
    // ----- direct reclaim ----------------------------------------------------------

    /// `try_to_free_pages()`: one direct-reclaim pass; returns the pages freed.
    pub fn try_to_free_pages(&self, gfp: Gfp, order: u32) -> u64 {
        // do_try_to_free_pages(): __count_zid_vm_events(ALLOCSTALL, sc->reclaim_idx, 1),
        // with sc->reclaim_idx = gfp_zone(gfp_mask).
        let reclaim_idx = gfp
            .gfp_zone()
            .map_or(MAX_NR_ZONES - 1, |z| self.zone_index(z));
        VmEvents::add(&self.events().allocstall[reclaim_idx], 1);
        let nr_to_reclaim = if order > PAGE_ALLOC_COSTLY_ORDER {
            SWAP_CLUSTER_MAX
        } else {
            SWAP_CLUSTER_MAX.max(1 << order)
        };
        let mut done = ReclaimStats::default();
        for priority in (0..=DEF_PRIORITY).rev() {
            done.add(self.shrink_node(
                gfp,
                reclaim_idx,
                priority,
                nr_to_reclaim - done.reclaimed,
                Reclaimer::Direct,
            ));
            if done.reclaimed >= nr_to_reclaim {
                break;
            }
        }
        done.reclaimed
    }

    /// `shrink_node()`: each shrinker scans `freeable >> priority` of its pages in zones up
    /// to `reclaim_idx` (at least one), up to what is still `wanted`, counted for `who`
    /// and as file-LRU pages (`PGSCAN_ANON + file` with `file` true: every shrinker here
    /// stands for the file LRU).
    /// Progress revives a kswapd that gave up on the node ("A successful direct reclaim
    /// run will revive a dormant kswapd": `pgdat->kswapd_failures = 0`).
    fn shrink_node(
        &self,
        gfp: Gfp,
        reclaim_idx: usize,
        priority: u32,
        wanted: u64,
        who: Reclaimer,
    ) -> ReclaimStats {
        let mut done = ReclaimStats::default();
        self.platform.for_each_shrinker(&mut |s: &dyn Shrinker<P>| {
            if done.reclaimed >= wanted {
                return;
            }
            let freeable = s.count_objects_below(self, reclaim_idx);
            if freeable == 0 {
                return;
            }
            let scan = (freeable >> priority).max(1).min(wanted - done.reclaimed);
            let got = s.scan_objects_below(self, gfp, scan, reclaim_idx);
            done.add(ReclaimStats {
                scanned: scan,
                reclaimed: got,
            });
        });
        let (pgscan, pgsteal) = match who {
            Reclaimer::Kswapd => (&self.events().pgscan_kswapd, &self.events().pgsteal_kswapd),
            Reclaimer::Direct => (&self.events().pgscan_direct, &self.events().pgsteal_direct),
        };
        VmEvents::add(pgscan, done.scanned);
        VmEvents::add(pgsteal, done.reclaimed);
        VmEvents::add(&self.events().pgscan_file, done.scanned);
        VmEvents::add(&self.events().pgsteal_file, done.reclaimed);
        if done.reclaimed > 0 {
            self.vmscan.kswapd.failures.store(0, Relaxed);
        }
        done
    }

    /// Pages the shrinkers say they could free (`zone_reclaimable_pages`, summed).
    pub fn reclaimable_pages(&self) -> u64 {
        self.reclaimable_pages_below(MAX_NR_ZONES - 1)
    }

    /// Pages the shrinkers could free from zones at or below index `reclaim_idx`.
    pub fn reclaimable_pages_below(&self, reclaim_idx: usize) -> u64 {
        let mut total = 0;
        self.platform.for_each_shrinker(&mut |s: &dyn Shrinker<P>| {
            total += s.count_objects_below(self, reclaim_idx)
        });
        total
    }

    // ----- kswapd: waking ----------------------------------------------------------

    /// `wakeup_kswapd()`: an allocation of `order` with zones up to `highest_zoneidx`
    /// found `zone` low. Records the order and zone index for kswapd, and wakes it unless
    /// it is reclaiming already, the node is hopeless (`kswapd_failures` reached
    /// `MAX_RECLAIM_RETRIES`: left to direct reclaim), or it is balanced after all.
    pub fn wakeup_kswapd(&self, zone: &Zone, gfp: Gfp, order: u32, highest_zoneidx: usize) {
        let _ = gfp; // cpuset_zone_allowed() and kcompactd: neither exists here.
        if zone.managed_pages == 0 {
            return;
        }
        let k = &self.vmscan.kswapd;
        let _ = k.highest_zoneidx.fetch_update(Relaxed, Relaxed, |cur| {
            (cur == MAX_NR_ZONES || cur < highest_zoneidx).then_some(highest_zoneidx)
        });
        k.order.fetch_max(order, Relaxed);
        // !waitqueue_active(&pgdat->kswapd_wait)
        if k.state.load(Relaxed) == RUNNING {
            return;
        }
        if self.kswapd_failures() >= MAX_RECLAIM_RETRIES
            || (self.pgdat_balanced(order, highest_zoneidx)
                && !self.pgdat_watermark_boosted(highest_zoneidx))
        {
            return;
        }
        k.woken.store(true, Relaxed);
    }

    /// `pgdat_watermark_boosted()`: has a fragmenting fallback boosted the watermarks of a
    /// managed zone at or below `highest_zoneidx`?
    fn pgdat_watermark_boosted(&self, highest_zoneidx: usize) -> bool {
        self.zones()[..=highest_zoneidx.min(MAX_NR_ZONES - 1)]
            .iter()
            .any(|z| z.managed_pages > 0 && z.watermark_boost() > 0)
    }

    /// `wake_all_kswapds()`: the slow path wakes the kswapd of each node in the zonelist
    /// once, for the first managed zone it meets (one node here).
    pub(crate) fn wake_all_kswapds(&self, order: u32, gfp: Gfp, highest_zoneidx: usize) {
        if let Some(zone) = self.zonelist(highest_zoneidx).next() {
            self.wakeup_kswapd(zone, gfp, order, highest_zoneidx);
        }
    }

    /// Does kswapd have something to do: woken, or its nap is waiting to end?
    #[inline]
    pub fn kswapd_pending(&self) -> bool {
        self.vmscan.kswapd.woken.load(Relaxed) || self.vmscan.kswapd.state.load(Relaxed) == NAPPING
    }

    /// Where kswapd is.
    pub fn kswapd_state(&self) -> KswapdState {
        match self.vmscan.kswapd.state.load(Relaxed) {
            ASLEEP => KswapdState::Asleep,
            NAPPING => KswapdState::Napping,
            _ => KswapdState::Running,
        }
    }

    /// `pgdat->kswapd_failures`.
    pub fn kswapd_failures(&self) -> u32 {
        self.vmscan.kswapd.failures.load(Relaxed)
    }

    // ----- kswapd: the thread ------------------------------------------------------

    /// Run kswapd until it goes back to the wait queue, as the kernel's `kswapd()` loop
    /// does once the scheduler lets it: when woken, `balance_pgdat()` for the order and
    /// zone index the wakers left, then `kswapd_try_to_sleep()`; when only its nap was
    /// pending, the end-of-nap check. Must run in process context (the platform calls it
    /// when a CPU leaves kernel code). Returns at once if another CPU is running it.
    pub fn kswapd_run(&self) -> KswapdRun {
        let k = &self.vmscan.kswapd;
        let Ok(prev) = k
            .state
            .fetch_update(Relaxed, Relaxed, |s| (s != RUNNING).then_some(RUNNING))
        else {
            return KswapdRun::default();
        };
        let woken = k.woken.swap(false, Relaxed);
        let mut run = KswapdRun {
            woken,
            ..KswapdRun::default()
        };
        let (sleep_order, mut highest_zoneidx) =
            (k.sleep_order.load(Relaxed), k.sleep_zoneidx.load(Relaxed));
        if !woken {
            // The nap ran out: "After a short sleep, check if it was a premature sleep."
            if prev != NAPPING || self.prepare_kswapd_sleep(sleep_order, highest_zoneidx) {
                run.balanced = self.pgdat_balanced(sleep_order, highest_zoneidx);
                k.state.store(ASLEEP, Relaxed);
                return run;
            }
            VmEvents::add(&self.events().kswapd_high_wmark_hit_quickly, 1);
        } else if prev == NAPPING {
            // Woken before the nap's timeout (`remaining` != 0): keep the request that
            // slept prematurely if it asked for more.
            VmEvents::add(&self.events().kswapd_low_wmark_hit_quickly, 1);
            k.order.fetch_max(sleep_order, Relaxed);
        }
        for _ in 0..KSWAPD_MAX_PASSES {
            let alloc_order = k.order.swap(0, Relaxed);
            highest_zoneidx = k.take_highest_zoneidx(highest_zoneidx);
            let reclaim_order = self.balance_pgdat(alloc_order, highest_zoneidx, &mut run);
            // kswapd_try_to_sleep(): nap only on a balanced (or hopeless) node; otherwise
            // neither check passes and kswapd goes straight back to reclaim.
            if self.prepare_kswapd_sleep(reclaim_order, highest_zoneidx) {
                run.balanced = self.pgdat_balanced(reclaim_order, highest_zoneidx);
                k.sleep_order.store(reclaim_order, Relaxed);
                k.sleep_zoneidx.store(highest_zoneidx, Relaxed);
                break;
            }
            VmEvents::add(&self.events().kswapd_high_wmark_hit_quickly, 1);
            k.sleep_order.store(reclaim_order, Relaxed);
            k.sleep_zoneidx.store(highest_zoneidx, Relaxed);
        }
        k.state.store(NAPPING, Relaxed);
        run
    }

    /// `prepare_kswapd_sleep()`: may kswapd sleep? On a hopeless node yes ("leave it to
    /// direct reclaim"), otherwise only once it is balanced.
    fn prepare_kswapd_sleep(&self, order: u32, highest_zoneidx: usize) -> bool {
        self.kswapd_failures() >= MAX_RECLAIM_RETRIES || self.pgdat_balanced(order, highest_zoneidx)
    }

    /// `pgdat_balanced()`: is some eligible zone (checked bottom-up, lower zones being
    /// usable by the request too) above its high watermark for `order`, lowmem reserve
    /// for `highest_zoneidx` included (`zone_watermark_ok_safe`, no reserve access)? A
    /// node without a managed eligible zone needs no balancing.
    pub fn pgdat_balanced(&self, order: u32, highest_zoneidx: usize) -> bool {
        let mut eligible = self.zones()[..=highest_zoneidx.min(MAX_NR_ZONES - 1)]
            .iter()
            .filter(|z| z.managed_pages > 0)
            .peekable();
        if eligible.peek().is_none() {
            return true;
        }
        eligible.any(|zone| {
            self.zone_watermark_ok(
                zone,
                order,
                zone.wmark(Watermark::High),
                highest_zoneidx,
                AllocFlags::empty(),
                zone.free_pages(),
            )
        })
    }

    /// `balance_pgdat()` (6.6): reclaim at rising priority until the node is balanced for
    /// `order` and `highest_zoneidx`, aiming each round at the sum of the eligible zones'
    /// high watermarks (`kswapd_shrink_node()`). The priority stays when a round scanned
    /// that much and made progress. A high order falls back to order 0 once twice its
    /// size has been reclaimed (`compact_gap()`: compaction's job from there). A pass that
    /// reclaimed nothing counts as a failure.
    ///
    /// Watermark boosts (`boost_watermark()`) make kswapd reclaim their sum even on a
    /// balanced node, at no higher priority than `DEF_PRIORITY - 2`, and stop when that
    /// reclaim makes no progress; an unbalanced node drops the boost reclaim and restarts
    /// as ordinary reclaim. At the end each zone's boost loses what it was at the start.
    /// Returns the order it finished at.
    fn balance_pgdat(&self, order: u32, highest_zoneidx: usize, run: &mut KswapdRun) -> u32 {
        VmEvents::add(&self.events().pageoutrun, 1);
        run.passes += 1;
        let top = highest_zoneidx.min(MAX_NR_ZONES - 1);
        let mut zone_boosts = [0u64; MAX_NR_ZONES];
        for z in self.zones()[..=top].iter().filter(|z| z.managed_pages > 0) {
            zone_boosts[z.idx] = z.watermark_boost();
        }
        let mut nr_boost_reclaim: u64 = zone_boosts.iter().sum();
        let boosted = nr_boost_reclaim > 0;
        let mut order = order;
        let mut total = ReclaimStats::default();
        let mut priority = DEF_PRIORITY;
        let mut balanced_out = false;
        while priority >= 1 {
            let balanced = self.pgdat_balanced(order, highest_zoneidx);
            if !balanced && nr_boost_reclaim > 0 {
                // `goto restart`: ordinary reclaim, from the lowest priority again.
                nr_boost_reclaim = 0;
                priority = DEF_PRIORITY;
                continue;
            }
            if nr_boost_reclaim == 0 && balanced {
                balanced_out = true; // `goto out`: a balanced node is no failure.
                break;
            }
            let mut raise_priority = !(nr_boost_reclaim > 0 && priority == DEF_PRIORITY - 2);
            let nr_to_reclaim: u64 = self.zones()[..=top]
                .iter()
                .filter(|z| z.managed_pages > 0)
                .map(|z| z.wmark(Watermark::High).max(SWAP_CLUSTER_MAX))
                .sum();
            let round = self.shrink_node(
                Gfp::GFP_KERNEL,
                top,
                priority,
                nr_to_reclaim,
                Reclaimer::Kswapd,
            );
            total.add(round);
            if order > 0 && total.reclaimed >= 2u64 << order {
                order = 0;
            }
            if round.scanned.max(round.reclaimed) >= nr_to_reclaim {
                raise_priority = false;
            }
            nr_boost_reclaim -= nr_boost_reclaim.min(round.reclaimed);
            if nr_boost_reclaim > 0 && round.reclaimed == 0 {
                break;
            }
            if raise_priority || round.reclaimed == 0 {
                priority -= 1;
            }
        }
        if !balanced_out && total.reclaimed == 0 {
            self.vmscan.kswapd.failures.fetch_add(1, Relaxed);
        }
        if boosted {
            for z in self.zones()[..=top]
                .iter()
                .filter(|z| zone_boosts[z.idx] > 0)
            {
                // "Increments are under the zone lock"
                let _lock = z.free_area.lock_irqsave(&self.platform);
                let now = z.watermark_boost();
                z.watermark_boost
                    .store(now - now.min(zone_boosts[z.idx]), Relaxed);
            }
        }
        run.stats.add(total);
        order
    }
}
