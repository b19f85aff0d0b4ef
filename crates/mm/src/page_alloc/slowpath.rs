//! The allocation slow path (`__alloc_pages_slowpath` and `warn_alloc` of Linux 6.6):
//! kswapd woken, the min watermark with the reserves the flags allow, then direct
//! reclaim, a drain of the per-CPU lists, and retries as long as they can help.
//!
//! kmemlab has no compaction and no OOM killer (there are no processes to kill): direct
//! compaction acts as the kernel's `COMPACT_SKIPPED`, and the OOM step counts as no
//! progress, so the kernel's retry rules end the loop as they would with nothing left to
//! reclaim.

use crate::addr::{Pfn, PAGE_ALLOC_COSTLY_ORDER};
use crate::gfp::Gfp;
use crate::page_alloc::{
    AllocContext, AllocFailure, AllocFailureSummary, AllocFlags, FailReason, MigrateType,
    PageAllocError, ZoneVerdict, MAX_NR_ZONES,
};
use crate::platform::Platform;
use crate::vmstat::VmEvents;
use crate::Mm;

/// `MAX_RECLAIM_RETRIES`.
pub const MAX_RECLAIM_RETRIES: u32 = 16;
/// How many `__GFP_NOFAIL` rounds kmemlab allows once reclaim has nothing left, where the
/// kernel would loop for ever.
pub const NOFAIL_ROUNDS: u32 = 64;

impl<P: Platform> Mm<P> {
    /// `__alloc_pages_slowpath()`.
    pub(crate) fn alloc_pages_slowpath(
        &self,
        ac: &AllocContext,
        mut verdicts: [Option<ZoneVerdict>; MAX_NR_ZONES],
    ) -> Result<Pfn, PageAllocError> {
        let gfp = ac.gfp;
        let can_direct_reclaim = gfp.allows_blocking();
        let costly_order = ac.order > PAGE_ALLOC_COSTLY_ORDER;
        let mut alloc_flags = AllocFlags::from_gfp(gfp, ac.order);
        let mut no_progress_loops = 0u32;
        let mut nofail_rounds = 0u32;
        let mut reclaimed_total = 0u64;

        if self.zonelist(ac.highest_zoneidx).next().is_none() {
            return Err(self.fail(ac, FailReason::NoZone, verdicts, 0));
        }
        let reason = loop {
            // wake_all_kswapds(): on entry, and on every retry "to ensure kswapd doesn't
            // accidentally go to sleep as long as we loop".
            if alloc_flags.contains(AllocFlags::KSWAPD) {
                self.wake_all_kswapds(ac.order, gfp, ac.highest_zoneidx);
            }
            if let Some(pfn) = self.get_page_from_freelist(ac, alloc_flags, &mut verdicts) {
                return Ok(pfn);
            }
            if !can_direct_reclaim {
                break FailReason::CannotReclaim;
            }
            let (page, progress) = self.alloc_pages_direct_reclaim(ac, alloc_flags, &mut verdicts);
            reclaimed_total += progress;
            if let Some(pfn) = page {
                return Ok(pfn);
            }
            if gfp.contains(Gfp::__GFP_NORETRY) {
                break FailReason::NoRetry;
            }
            if costly_order && !gfp.contains(Gfp::__GFP_RETRY_MAYFAIL) {
                break FailReason::CostlyOrder;
            }
            if self.should_reclaim_retry(ac, alloc_flags, progress > 0, &mut no_progress_loops) {
                continue;
            }
            if progress > 0 && self.should_compact_retry(ac, alloc_flags) {
                continue;
            }
            // __alloc_pages_may_oom(): nothing to kill here, so no progress.
            if gfp.contains(Gfp::__GFP_NOFAIL) && nofail_rounds < NOFAIL_ROUNDS {
                nofail_rounds += 1;
                // __alloc_pages_cpuset_fallback(ALLOC_MIN_RESERVE).
                alloc_flags |= AllocFlags::MIN_RESERVE;
                if let Some(pfn) = self.get_page_from_freelist(ac, alloc_flags, &mut verdicts) {
                    return Ok(pfn);
                }
                no_progress_loops = 0;
                continue;
            }
            break if gfp.contains(Gfp::__GFP_NOFAIL) {
                FailReason::NoFailExhausted
            } else {
                FailReason::ReclaimExhausted
            };
        };
        Err(self.fail(ac, reason, verdicts, reclaimed_total))
    }

    /// `__alloc_pages_direct_reclaim()`: reclaim, retry, and on failure drain every CPU's
    /// lists once and retry again. Returns the page if one came free, and the pages
    /// reclaimed.
    fn alloc_pages_direct_reclaim(
        &self,
        ac: &AllocContext,
        alloc_flags: AllocFlags,
        verdicts: &mut [Option<ZoneVerdict>; MAX_NR_ZONES],
    ) -> (Option<Pfn>, u64) {
        let progress = self.try_to_free_pages(ac.gfp, ac.order);
        if progress == 0 {
            return (None, 0);
        }
        if let Some(pfn) = self.get_page_from_freelist(ac, alloc_flags, verdicts) {
            return (Some(pfn), progress);
        }
        self.unreserve_highatomic_pageblock(ac, false);
        self.drain_all_pages();
        (
            self.get_page_from_freelist(ac, alloc_flags, verdicts),
            progress,
        )
    }

    /// `should_reclaim_retry()`: retry while some zone would pass its min watermark if
    /// everything reclaimable were reclaimed, for at most `MAX_RECLAIM_RETRIES` rounds
    /// without progress.
    fn should_reclaim_retry(
        &self,
        ac: &AllocContext,
        alloc_flags: AllocFlags,
        did_some_progress: bool,
        no_progress_loops: &mut u32,
    ) -> bool {
        if did_some_progress && ac.order <= PAGE_ALLOC_COSTLY_ORDER {
            *no_progress_loops = 0;
        } else {
            *no_progress_loops += 1;
        }
        if *no_progress_loops > MAX_RECLAIM_RETRIES {
            return self.unreserve_highatomic_pageblock(ac, true);
        }
        let reclaimable = self.reclaimable_pages_below(ac.highest_zoneidx);
        let retry = self.zonelist(ac.highest_zoneidx).any(|zone| {
            let available = zone.free_pages() + reclaimable;
            self.zone_watermark_ok(
                zone,
                ac.order,
                zone.wmark(crate::page_alloc::Watermark::Min),
                ac.highest_zoneidx,
                alloc_flags,
                available,
            )
        });
        // Before giving up, exhaust the HighAtomic reserve (the `out:` path of 6.6).
        retry || self.unreserve_highatomic_pageblock(ac, true)
    }

    /// `should_compact_retry()` without CONFIG_COMPACTION: orders 1-3 retry while some
    /// zone is above its min watermark for order 0.
    fn should_compact_retry(&self, ac: &AllocContext, alloc_flags: AllocFlags) -> bool {
        if ac.order == 0 || ac.order > PAGE_ALLOC_COSTLY_ORDER {
            return false;
        }
        self.zonelist(ac.highest_zoneidx).any(|zone| {
            self.zone_watermark_ok(
                zone,
                0,
                zone.wmark(crate::page_alloc::Watermark::Min),
                ac.highest_zoneidx,
                alloc_flags,
                zone.free_pages(),
            )
        })
    }

    /// Count the failure, keep its report as the last failure ([`Mm::last_alloc_failure`])
    /// and print `warn_alloc()`'s report unless `__GFP_NOWARN`; the error carries the
    /// report's summary.
    fn fail(
        &self,
        ac: &AllocContext,
        reason: FailReason,
        zones: [Option<ZoneVerdict>; MAX_NR_ZONES],
        reclaimed: u64,
    ) -> PageAllocError {
        VmEvents::add(&self.events().alloc_fail, 1);
        let failure = AllocFailure {
            gfp: ac.gfp,
            order: ac.order,
            preferred: self
                .zonelist(ac.highest_zoneidx)
                .next()
                .map(|z| z.zone_type),
            reason,
            zones,
            reclaimed,
        };
        *self.page_alloc.last_failure.lock_irqsave(&self.platform) = Some(failure);
        if !ac.gfp.contains(Gfp::__GFP_NOWARN) {
            self.warn_alloc(ac);
        }
        PageAllocError::NoMemory(failure.summary())
    }

    /// The report of the last page allocation on this machine that failed for lack of
    /// memory (on any CPU): the flags, order and reason its error carries
    /// ([`PageAllocError::NoMemory`]), each zone's last verdict and the pages reclaimed on
    /// the way — what Linux 6.6's `warn_alloc()` shows on the console rather than in the
    /// NULL that `alloc_pages()` returns. `None` until an allocation has failed.
    ///
    /// Read it right after the failure: a later failure (another CPU's, or an interrupt's
    /// on this CPU) replaces it.
    pub fn last_alloc_failure(&self) -> Option<AllocFailure> {
        *self.page_alloc.last_failure.lock_irqsave(&self.platform)
    }

    /// An error's message with the detail of the failure it reports put back: where the
    /// message carries the summary of the last allocation failure
    /// ([`Mm::last_alloc_failure`], as [`PageAllocError::NoMemory`] prints it), the whole
    /// report takes its place — each zone's verdict and what reclaim got back, the words
    /// the error itself printed when it carried the report. Any other message is as it
    /// was. For the tools that show errors to people (the shell, the tour, trace replay).
    pub fn with_alloc_failure_detail<'a>(&self, message: &'a str) -> AllocFailureText<'a> {
        let last = self.last_alloc_failure();
        let at = last.and_then(|f| summary_in(message, &f.summary()));
        AllocFailureText {
            message,
            detail: at.zip(last),
        }
    }

    /// `warn_alloc()`: the first line the kernel prints, then `show_free_areas()` for the
    /// zones the request could use.
    fn warn_alloc(&self, ac: &AllocContext) {
        self.printk(format_args!(
            "{}: page allocation failure: order:{}, mode:{:?}, nodemask=(null),cpuset=/,mems_allowed=0",
            self.platform.current_comm(),
            ac.order,
            ac.gfp
        ));
        self.printk(format_args!(
            "CPU: {} PID: {} Comm: {} Not tainted 6.6.0-kmemlab #1",
            self.platform.smp_processor_id(),
            self.platform.current_pid(),
            self.platform.current_comm()
        ));
        self.printk(format_args!("Mem-Info:"));
        for zone in self.page_alloc.zones[..=ac.highest_zoneidx]
            .iter()
            .filter(|z| z.is_populated())
        {
            self.show_free_area_line(zone);
        }
    }

    /// One line of `show_free_areas()`: `Node 0 DMA: 1*4kB (U) 2*8kB (UM) ... = 15360kB`.
    pub fn show_free_area_line(&self, zone: &crate::page_alloc::Zone) {
        let snap = self.free_area_snapshot(zone);
        let mut line = crate::procfs::LineBuf::new();
        let _ = core::fmt::Write::write_fmt(&mut line, format_args!("Node 0 {}: ", zone.name()));
        let mut total_kb = 0u64;
        for order in 0..crate::addr::NR_PAGE_ORDERS {
            let n = snap.nr_free[order];
            let kb = 4u64 << order;
            total_kb += n * kb;
            let _ = core::fmt::Write::write_fmt(&mut line, format_args!("{n}*{kb}kB "));
            if n > 0 {
                let _ = core::fmt::Write::write_str(&mut line, "(");
                for mt in MigrateType::ALL {
                    if snap.per_type[mt as usize][order] > 0 {
                        let _ = core::fmt::Write::write_char(&mut line, mt.letter());
                    }
                }
                let _ = core::fmt::Write::write_str(&mut line, ") ");
            }
        }
        let _ = core::fmt::Write::write_fmt(&mut line, format_args!("= {total_kb}kB"));
        self.printk(format_args!("{}", line.as_str()));
    }
}

/// Where `message` carries `summary` as its text: the byte range.
fn summary_in(message: &str, summary: &AllocFailureSummary) -> Option<(usize, usize)> {
    const START: &str = "page allocation failure: order:";
    message.match_indices(START).find_map(|(at, _)| {
        let mut rest = TextCursor {
            rest: &message[at..],
            matches: true,
        };
        let _ = core::fmt::Write::write_fmt(&mut rest, format_args!("{summary}"));
        rest.matches.then(|| (at, message.len() - rest.rest.len()))
    })
}

/// A `fmt::Write` that compares what is written with the text ahead of it.
struct TextCursor<'a> {
    rest: &'a str,
    matches: bool,
}

impl core::fmt::Write for TextCursor<'_> {
    fn write_str(&mut self, s: &str) -> core::fmt::Result {
        match self.rest.strip_prefix(s) {
            Some(rest) if self.matches => self.rest = rest,
            _ => self.matches = false,
        }
        Ok(())
    }
}

/// An error's message with the report of the allocation failure it summarises
/// ([`Mm::with_alloc_failure_detail`]).
pub struct AllocFailureText<'a> {
    message: &'a str,
    /// Where the summary is in the message, and the report that replaces it.
    detail: Option<((usize, usize), AllocFailure)>,
}

impl core::fmt::Display for AllocFailureText<'_> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match &self.detail {
            Some(((start, end), failure)) => write!(
                f,
                "{}{failure}{}",
                &self.message[..*start],
                &self.message[*end..]
            ),
            None => f.write_str(self.message),
        }
    }
}
