//! Simulated CPUs: each has an interrupt flag and an owner. A host thread becomes CPU n
//! by claiming it ([`crate::Machine::on_cpu`], or CPU 0 while it holds
//! [`crate::Machine::mm`]); at most one host thread runs as a given CPU at a time, so
//! per-CPU data is truly per CPU whether the machine is driven from one host thread or
//! from many.

use std::cell::Cell;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

/// One CPU's architectural state that the kernel asks about; a cache line of its own, so
/// that CPUs running on different host threads do not share one.
#[derive(Debug)]
#[repr(align(64))]
pub struct Cpu {
    /// EFLAGS.IF: are interrupts enabled?
    pub(crate) irqs_enabled: AtomicBool,
    /// The token of the host thread running as this CPU, 0 when idle.
    pub(crate) owner: AtomicU64,
    /// The name of the task running on this CPU (`current->comm`).
    pub(crate) comm: String,
    /// Whether the CPU's thread is parked waiting for an IPI to another CPU
    /// ([`IPI_RUNNING`], [`IPI_PARKED`], or [`IPI_BORROWED`] while another waiter runs a
    /// request as this CPU).
    pub(crate) ipi_state: std::sync::atomic::AtomicU8,
}

/// The CPU's thread is running normally.
pub(crate) const IPI_RUNNING: u8 = 0;
/// The CPU's thread waits in an IPI and holds no per-CPU state half-updated.
pub(crate) const IPI_PARKED: u8 = 1;
/// Another waiting thread runs an IPI as this parked CPU.
pub(crate) const IPI_BORROWED: u8 = 2;

impl Cpu {
    pub(crate) fn new(id: usize) -> Cpu {
        Cpu {
            irqs_enabled: AtomicBool::new(true),
            owner: AtomicU64::new(0),
            ipi_state: std::sync::atomic::AtomicU8::new(IPI_RUNNING),
            comm: format!("kmemlab/{id}"),
        }
    }
}

static NEXT_TOKEN: AtomicU64 = AtomicU64::new(1);

thread_local! {
    /// This host thread's identity, for CPU ownership.
    static TOKEN: u64 = NEXT_TOKEN.fetch_add(1, Ordering::Relaxed);
    /// (machine id, CPU) this host thread currently runs as; machine id 0 = none.
    static CURRENT: Cell<(u64, usize)> = const { Cell::new((0, 0)) };
}

/// The calling host thread's token.
pub(crate) fn thread_token() -> u64 {
    TOKEN.with(|t| *t)
}

/// The CPU the calling host thread runs as on machine `machine_id`, if any.
#[inline]
pub(crate) fn current_cpu(machine_id: u64) -> Option<usize> {
    let (m, cpu) = CURRENT.with(|c| c.get());
    (m == machine_id).then_some(cpu)
}

/// Set what the calling thread runs as; returns the previous value.
pub(crate) fn set_current(value: (u64, usize)) -> (u64, usize) {
    CURRENT.with(|c| c.replace(value))
}
