//! Execution context: the per-CPU `preempt_count` and the questions asked of it
//! (`include/linux/preempt.h`, `kernel/sched/core.c` `__might_resched`).
//!
//! The layout of the count follows the kernel's: preemption depth in bits 0-7, softirq
//! in 8-15, hard IRQ in 16-19 and NMI in 20-23.

use core::fmt;
use core::sync::atomic::{AtomicU32, Ordering::Relaxed};

/// One level of `preempt_disable()`.
pub const PREEMPT_OFFSET: u32 = 1;
/// Serving a softirq.
pub const SOFTIRQ_OFFSET: u32 = 1 << 8;
/// `local_bh_disable()` (twice the serving offset, as in the kernel).
pub const SOFTIRQ_DISABLE_OFFSET: u32 = 2 * SOFTIRQ_OFFSET;
/// Inside a hard-IRQ handler.
pub const HARDIRQ_OFFSET: u32 = 1 << 16;
/// Inside an NMI handler.
pub const NMI_OFFSET: u32 = 1 << 20;
const SOFTIRQ_MASK: u32 = 0xff << 8;
const HARDIRQ_MASK: u32 = 0xf << 16;
const NMI_MASK: u32 = 0xf << 20;

/// Where `might_alloc()` calls `might_sleep_if()` in Linux 6.6 (`include/linux/sched/mm.h`);
/// the kernel prints this place in its splat.
pub const MIGHT_ALLOC_SITE: (&str, u32) = ("include/linux/sched/mm.h", 306);

/// The kind of context a CPU runs code in.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash)]
pub enum Context {
    /// Ordinary process (task) context: may sleep.
    Process,
    /// Serving a softirq: atomic.
    Softirq,
    /// A hard-IRQ handler: atomic, interrupts disabled.
    Hardirq,
    /// A non-maskable interrupt handler.
    Nmi,
}

impl Context {
    /// The `preempt_count` offset of entering this context.
    pub const fn offset(self) -> u32 {
        match self {
            Context::Process => 0,
            Context::Softirq => SOFTIRQ_OFFSET,
            Context::Hardirq => HARDIRQ_OFFSET,
            Context::Nmi => NMI_OFFSET + HARDIRQ_OFFSET,
        }
    }

    /// Parse `process`, `softirq`, `hardirq` or `nmi`.
    pub fn from_name(name: &str) -> Option<Context> {
        match name {
            "process" | "task" => Some(Context::Process),
            "softirq" => Some(Context::Softirq),
            "hardirq" | "irq" => Some(Context::Hardirq),
            "nmi" => Some(Context::Nmi),
            _ => None,
        }
    }

    /// The name accepted by [`Context::from_name`].
    pub const fn name(self) -> &'static str {
        match self {
            Context::Process => "process",
            Context::Softirq => "softirq",
            Context::Hardirq => "hardirq",
            Context::Nmi => "nmi",
        }
    }
}

impl fmt::Display for Context {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A CPU's `preempt_count`.
#[derive(Default, zerocopy::FromBytes)]
#[repr(transparent)]
pub struct PreemptCount(AtomicU32);

impl PreemptCount {
    /// The raw count (`preempt_count()`).
    #[inline]
    pub fn get(&self) -> u32 {
        self.0.load(Relaxed)
    }
    /// Add an offset (`__preempt_count_add`).
    #[inline]
    pub fn add(&self, offset: u32) {
        self.0.store(self.get().wrapping_add(offset), Relaxed);
    }
    /// Subtract an offset (`__preempt_count_sub`).
    #[inline]
    pub fn sub(&self, offset: u32) {
        self.0.store(self.get().wrapping_sub(offset), Relaxed);
    }
    /// `in_nmi()`.
    #[inline]
    pub fn in_nmi(&self) -> bool {
        self.get() & NMI_MASK != 0
    }
    /// `in_hardirq()`.
    #[inline]
    pub fn in_hardirq(&self) -> bool {
        self.get() & HARDIRQ_MASK != 0
    }
    /// `in_serving_softirq()`.
    #[inline]
    pub fn in_serving_softirq(&self) -> bool {
        self.get() & SOFTIRQ_OFFSET != 0
    }
    /// `in_interrupt()`: hard IRQ, NMI, or softirq (serving or disabled).
    #[inline]
    pub fn in_interrupt(&self) -> bool {
        self.get() & (NMI_MASK | HARDIRQ_MASK | SOFTIRQ_MASK) != 0
    }
    /// `in_task()`: not in NMI, hard IRQ or serving softirq.
    #[inline]
    pub fn in_task(&self) -> bool {
        self.get() & (NMI_MASK | HARDIRQ_MASK | SOFTIRQ_OFFSET) == 0
    }
    /// `in_atomic()`: any non-zero count.
    #[inline]
    pub fn in_atomic(&self) -> bool {
        self.get() != 0
    }
}

/// A rule about context that a caller broke: `might_sleep()` in atomic context.
///
/// 12 bytes (the CPU as a `u32`, as the kernel's `int cpu`), so that it travels inside
/// the allocators' errors and their `Result`s stay within 16 bytes.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct SleepInAtomic {
    /// `in_atomic()` at the time.
    pub in_atomic: bool,
    /// `irqs_disabled()` at the time.
    pub irqs_disabled: bool,
    /// The raw `preempt_count`.
    pub preempt_count: u32,
    /// The CPU.
    pub cpu: u32,
}

const _: () = assert!(core::mem::size_of::<SleepInAtomic>() == 12);

impl fmt::Display for SleepInAtomic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "BUG: sleeping function called from invalid context at {}:{} (in_atomic(): {}, irqs_disabled(): {}, preempt_count: {:x})",
            MIGHT_ALLOC_SITE.0,
            MIGHT_ALLOC_SITE.1,
            self.in_atomic as u8,
            self.irqs_disabled as u8,
            self.preempt_count
        )
    }
}

impl core::error::Error for SleepInAtomic {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn contexts_set_the_kernels_bits() {
        let pc = PreemptCount::default();
        assert!(!pc.in_atomic() && pc.in_task());
        pc.add(Context::Hardirq.offset());
        assert!(pc.in_hardirq() && pc.in_interrupt() && pc.in_atomic() && !pc.in_task());
        assert_eq!(pc.get(), 0x10000);
        pc.sub(Context::Hardirq.offset());
        pc.add(SOFTIRQ_DISABLE_OFFSET);
        assert!(pc.in_interrupt() && pc.in_task() && !pc.in_serving_softirq());
        pc.sub(SOFTIRQ_DISABLE_OFFSET);
        pc.add(Context::Nmi.offset());
        assert!(pc.in_nmi() && pc.in_hardirq());
        pc.sub(Context::Nmi.offset());
        pc.add(PREEMPT_OFFSET);
        assert!(pc.in_atomic() && !pc.in_interrupt());
    }
}
