//! How the kernel reports what went wrong, and what it does next (`kernel/panic.c`,
//! `arch/x86/kernel/dumpstack.c`, `arch/x86/mm/fault.c`, `include/asm-generic/bug.h`,
//! Linux 6.6).
//!
//! Three grades, as in the kernel:
//! - a **WARN** ([`Mm::warn_report`]) prints `WARNING: CPU: … at file:line`, taints `W`
//!   and carries on;
//! - an **oops** ([`Mm::oops`], and its common causes [`Mm::bad_page_fault`],
//!   [`Mm::general_protection_fault`], [`Mm::kernel_bug`]) prints the oops header with
//!   its counter, taints `D`, and kills the operation that hit it: the front end sees
//!   [`Mm::take_oopses`] non-zero and fails the command;
//! - a **panic** ([`Mm::panic`]) prints `Kernel panic - not syncing: …` and halts the
//!   machine: [`Mm::halted`] stays true until a reboot (a new `Mm`).
//!
//! None of these is a Rust panic: each returns to its caller, which stops what it was
//! doing along its ordinary error path.

use core::fmt;
use core::sync::atomic::{AtomicBool, AtomicU32, Ordering::Relaxed};

use crate::platform::Platform;
use crate::Mm;

/// The kernel's taint flags (`include/linux/panic.h`), by bit number.
pub mod taint {
    /// `TAINT_BAD_PAGE` ('B'): a bad page was found (`bad_page()`).
    pub const BAD_PAGE: u32 = 5;
    /// `TAINT_DIE` ('D'): the kernel has oopsed.
    pub const DIE: u32 = 7;
    /// `TAINT_WARN` ('W'): a WARN fired.
    pub const WARN: u32 = 9;
    /// `TAINT_SOFTLOCKUP` ('L'): a soft lockup was seen.
    pub const SOFTLOCKUP: u32 = 14;
}

/// `taint_flags[]` of 6.6: the letter when set, and the one printed when clear (only the
/// first flag, proprietary modules, prints `G` when clear).
const TAINT_LETTERS: [(char, char); 19] = [
    ('P', 'G'),
    ('F', ' '),
    ('S', ' '),
    ('R', ' '),
    ('M', ' '),
    ('B', ' '),
    ('U', ' '),
    ('D', ' '),
    ('A', ' '),
    ('W', ' '),
    ('C', ' '),
    ('I', ' '),
    ('O', ' '),
    ('E', ' '),
    ('L', ' '),
    ('K', ' '),
    ('X', ' '),
    ('T', ' '),
    ('N', ' '),
];

/// A taint mask, printed as `print_tainted()` prints it: `Not tainted`, or `Tainted: `
/// followed by one letter (or blank) per flag.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Default)]
pub struct Taint(pub u32);

impl Taint {
    /// Is flag `bit` (one of [`taint`]) set?
    pub fn has(self, bit: u32) -> bool {
        self.0 & (1 << bit) != 0
    }
}

impl fmt::Display for Taint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0 == 0 {
            return f.write_str("Not tainted");
        }
        f.write_str("Tainted: ")?;
        for (bit, (set, clear)) in TAINT_LETTERS.iter().enumerate() {
            let c = if self.has(bit as u32) { *set } else { *clear };
            fmt::Write::write_char(f, c)?;
        }
        Ok(())
    }
}

/// The kernel's record of what has gone wrong (`tainted_mask`, `die_counter`, the
/// panic state), kept in the host, not in simulated RAM, so corruption cannot forge it.
#[derive(Default)]
pub struct Reports {
    taint: AtomicU32,
    die_counter: AtomicU32,
    /// Oopses since the front end last asked.
    pending_oopses: AtomicU32,
    halted: AtomicBool,
}

impl Reports {
    /// No taint, no oops.
    pub const fn new() -> Reports {
        Reports {
            taint: AtomicU32::new(0),
            die_counter: AtomicU32::new(0),
            pending_oopses: AtomicU32::new(0),
            halted: AtomicBool::new(false),
        }
    }
}

/// The release string printed in reports (`init_utsname()->release`, `version`).
pub const KERNEL_RELEASE: &str = "6.6.0-kmemlab #1";

impl<P: Platform> Mm<P> {
    /// The taint mask (`/proc/sys/kernel/tainted`).
    pub fn tainted(&self) -> Taint {
        Taint(self.reports.taint.load(Relaxed))
    }

    /// `add_taint()`.
    pub(crate) fn add_taint(&self, bit: u32) {
        self.reports.taint.fetch_or(1 << bit, Relaxed);
    }

    /// Has the machine panicked? A halted machine's state is kept for a post-mortem, but
    /// nothing more should run on it.
    pub fn halted(&self) -> bool {
        self.reports.halted.load(Relaxed)
    }

    /// How many oopses happened since the last call: non-zero means the operation just run
    /// was killed and its command failed.
    pub fn take_oopses(&self) -> u32 {
        self.report_deferred_faults();
        self.reports.pending_oopses.swap(0, Relaxed)
    }

    /// Faults that a structure with no console recorded (a `struct page` lookup past
    /// `mem_map` from a corrupted link), reported now as the oops they were.
    pub(crate) fn report_deferred_faults(&self) {
        self.report_recorded_list_corruption();
        if let Some((_, phys)) = self.mem_map.take_faults() {
            // `pfn_to_page()` is `mem_map + pfn` in the linear map: an address past the
            // direct map's end is what the faulting load would have used.
            let va = self.layout.page_offset.wrapping_add(phys);
            self.bad_page_fault(va, false);
        }
    }

    /// How many oopses since boot (`die_counter`).
    pub fn oops_count(&self) -> u32 {
        self.reports.die_counter.load(Relaxed)
    }

    /// `dump_stack_print_info()`'s line: CPU, PID, command, taint, release.
    pub(crate) fn print_cpu_line(&self) {
        self.printk(format_args!(
            "CPU: {} PID: {} Comm: {} {} {}",
            self.platform.smp_processor_id(),
            self.platform.current_pid(),
            self.platform.current_comm(),
            self.tainted(),
            KERNEL_RELEASE
        ));
    }

    /// `__WARN_printf()` → `__warn()`: the WARNING line naming `file:line` and `func`, the
    /// message (if any), the CPU line; taints `W` and carries on.
    pub(crate) fn warn_report(&self, file: &str, line: u32, func: &str, msg: fmt::Arguments<'_>) {
        let text = msg.as_str();
        if text != Some("") {
            self.printk(msg);
        }
        self.printk(format_args!(
            "WARNING: CPU: {} PID: {} at {file}:{line} {func}",
            self.platform.smp_processor_id(),
            self.platform.current_pid(),
        ));
        self.print_cpu_line();
        self.printk(format_args!("---[ end trace 0000000000000000 ]---"));
        self.add_taint(taint::WARN);
    }

    /// `__die_header()` and `oops_end()`: `headline: 0000 [#n] PREEMPT SMP NOPTI`, the CPU
    /// line (tainted as it stood before this oops), then taint `D`. The operation that hit
    /// the oops is killed: [`Mm::take_oopses`] reports it to the front end.
    pub(crate) fn oops(&self, headline: fmt::Arguments<'_>, error_code: u16) {
        let n = self.reports.die_counter.fetch_add(1, Relaxed) + 1;
        self.printk(format_args!(
            "{headline}: {error_code:04x} [#{n}] PREEMPT SMP NOPTI"
        ));
        self.print_cpu_line();
        self.add_taint(taint::DIE);
        self.reports.pending_oopses.fetch_add(1, Relaxed);
        self.printk(format_args!("---[ end trace 0000000000000000 ]---"));
    }

    /// `page_fault_oops()` for a kernel access to `addr` that is not mapped (or not RAM):
    /// `BUG: unable to handle page fault for address: …`, the `#PF:` lines, then the
    /// oops.
    pub(crate) fn bad_page_fault(&self, addr: u64, write: bool) {
        self.printk(format_args!(
            "BUG: unable to handle page fault for address: {addr:016x}"
        ));
        self.printk(format_args!(
            "#PF: supervisor {} access in kernel mode",
            if write { "write" } else { "read" }
        ));
        let code: u16 = if write { 0x0002 } else { 0x0000 };
        self.printk(format_args!(
            "#PF: error_code({code:#06x}) - not-present page"
        ));
        self.oops(format_args!("Oops"), code);
    }

    /// `exc_general_protection()` for a non-canonical address: the oops header is the
    /// description itself.
    pub(crate) fn general_protection_fault(&self, addr: u64) {
        self.oops(
            format_args!("general protection fault, probably for non-canonical address {addr:#x}"),
            0,
        );
    }

    /// `BUG()` / `BUG_ON()` → `handle_bug()`: `kernel BUG at file:line!`, then the oops
    /// (`invalid opcode`).
    pub(crate) fn kernel_bug(&self, file: &str, line: u32) {
        self.printk(format_args!("------------[ cut here ]------------"));
        self.printk(format_args!("kernel BUG at {file}:{line}!"));
        self.oops(format_args!("invalid opcode"), 0);
    }

    /// `panic()`: `Kernel panic - not syncing: …` and its end marker; the machine halts.
    pub(crate) fn panic(&self, msg: fmt::Arguments<'_>) {
        self.printk(format_args!("Kernel panic - not syncing: {msg}"));
        self.print_cpu_line();
        self.printk(format_args!(
            "---[ end Kernel panic - not syncing: {msg} ]---"
        ));
        self.reports.halted.store(true, Relaxed);
        self.reports.pending_oopses.fetch_add(1, Relaxed);
    }

    /// `watchdog_timer_fn()`'s report for a lock that could not be taken, then a panic as
    /// with `softlockup_panic=1`: on a simulated machine nothing else could ever release
    /// it, so waiting would hang the host.
    pub(crate) fn soft_lockup(&self, what: &str) {
        self.printk(format_args!(
            "watchdog: BUG: soft lockup - CPU#{} stuck for 22s! [{}:{}]",
            self.platform.smp_processor_id(),
            self.platform.current_comm(),
            self.platform.current_pid(),
        ));
        self.printk(format_args!("spinning on {what}"));
        self.add_taint(taint::SOFTLOCKUP);
        self.panic(format_args!("softlockup: hung tasks"));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    extern crate std;
    use std::string::ToString;

    #[test]
    fn taint_prints_as_print_tainted_does() {
        assert_eq!(Taint(0).to_string(), "Not tainted");
        let t = Taint((1 << taint::DIE) | (1 << taint::WARN));
        assert_eq!(t.to_string(), "Tainted: G      D W         ");
        assert!(t.has(taint::DIE));
        assert!(!t.has(taint::BAD_PAGE));
    }
}
