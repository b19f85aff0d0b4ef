//! Entering and leaving a traced event's context (process, softirq, hardirq) on its CPU,
//! and the kworker that runs deferred work afterwards.

use super::Replayer;
use kmemlab_mm::context::SOFTIRQ_DISABLE_OFFSET;
use kmemlab_mm::{Context, Hardware, IrqFlags, Mm};

use crate::event::TraceContext;
use kmemlab_sim::SimPlatform;

impl Replayer<'_> {
    /// The CPU's kworker, now that the event's context is left: a lazy-purge drain that
    /// kmemlab's vmalloc scheduled runs at once (the kernel's `schedule_work()` runs it
    /// soon after, before the traced workload moves far on).
    pub(super) fn run_kworker(&mut self, mm: &Mm<SimPlatform>) {
        if mm.work_pending() {
            mm.run_work();
        }
    }

    /// Enter the traced context on top of process context.
    #[inline]
    pub(super) fn enter(&mut self, mm: &Mm<SimPlatform>, ctx: TraceContext) -> Option<IrqFlags> {
        // Most events run in plain process context: nothing to enter or count.
        if ctx == TraceContext::PROCESS {
            return None;
        }
        self.enter_context(mm, ctx)
    }

    pub(super) fn enter_context(
        &mut self,
        mm: &Mm<SimPlatform>,
        ctx: TraceContext,
    ) -> Option<IrqFlags> {
        let hard = matches!(ctx.kind, Context::Hardirq | Context::Nmi);
        let saved = (ctx.irqs_off || hard).then(|| mm.platform().local_irq_save());
        if ctx.bh_off {
            mm.this_cpu().preempt_count.add(SOFTIRQ_DISABLE_OFFSET);
            self.counters.bh_off += 1;
        }
        if ctx.kind == Context::Softirq || ctx.in_softirq {
            mm.enter_context(Context::Softirq);
        }
        if hard {
            mm.enter_context(ctx.kind);
        }
        match ctx.kind {
            Context::Softirq => self.counters.in_softirq += 1,
            Context::Hardirq => self.counters.in_hardirq += 1,
            Context::Nmi => self.counters.in_nmi += 1,
            Context::Process => {}
        }
        if ctx.irqs_off && !hard {
            self.counters.irqs_off += 1;
        }
        saved
    }

    /// Leave what [`Replayer::enter`] entered, in reverse.
    #[inline]
    pub(super) fn exit(
        &mut self,
        mm: &Mm<SimPlatform>,
        ctx: TraceContext,
        saved: Option<IrqFlags>,
    ) {
        if ctx == TraceContext::PROCESS {
            return;
        }
        if matches!(ctx.kind, Context::Hardirq | Context::Nmi) {
            mm.exit_context(ctx.kind);
        }
        if ctx.kind == Context::Softirq || ctx.in_softirq {
            mm.exit_context(Context::Softirq);
        }
        if ctx.bh_off {
            mm.this_cpu().preempt_count.sub(SOFTIRQ_DISABLE_OFFSET);
        }
        if let Some(flags) = saved {
            mm.platform().local_irq_restore(flags);
        }
    }
}
