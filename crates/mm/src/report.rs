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
//!
//! Checks are written with the kernel's macros, which evaluate to their condition:
//! [`warn_on!`](crate::report::warn_on), [`warn_on_once!`](crate::report::warn_on_once),
//! [`warn!`](crate::report::warn) and [`bug!`](crate::report::bug) (`BUG_ON`). Each names the kernel line it mirrors with a
//! [`KernelSite`]; the `*_once` forms keep one flag per site and machine, as
//! `WARN_ON_ONCE`'s `BUGFLAG_ONCE` / `__section(".data.once")` bool does per boot.

use core::fmt;
use core::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering::Relaxed};

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

/// The kernel source line a check mirrors: what `__FILE__`, `__LINE__` and the `%pS` of
/// the WARN's address name (Linux 6.6). `line: 0` marks a kmemlab-only check, one the
/// kernel does not make.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct KernelSite {
    /// The kernel source file, as the kernel prints it (`mm/page_alloc.c`).
    pub file: &'static str,
    /// Its line in Linux 6.6, or 0 for a kmemlab-only check.
    pub line: u32,
    /// The function the WARN is in (`%pS`, without the offset).
    pub func: &'static str,
}

impl KernelSite {
    /// A key for the per-site once flag: FNV-1a over file, line and function.
    const fn key(&self) -> u64 {
        let mut h: u64 = 0xcbf2_9ce4_8422_2325;
        let parts = [self.file.as_bytes(), self.func.as_bytes()];
        let mut p = 0;
        while p < parts.len() {
            let bytes = parts[p];
            let mut i = 0;
            while i < bytes.len() {
                h = (h ^ bytes[i] as u64).wrapping_mul(0x0100_0000_01b3);
                i += 1;
            }
            p += 1;
        }
        (h ^ self.line as u64).wrapping_mul(0x0100_0000_01b3) | 1
    }
}

/// How many `*_ONCE` sites a machine remembers; past that a once-site warns every time
/// (more output, never less).
const ONCE_SITES: usize = 64;

/// The kernel's record of what has gone wrong (`tainted_mask`, `die_counter`, the
/// panic state), kept in the host, not in simulated RAM, so corruption cannot forge it.
pub struct Reports {
    taint: AtomicU32,
    die_counter: AtomicU32,
    /// Oopses since the front end last asked.
    pending_oopses: AtomicU32,
    halted: AtomicBool,
    /// The `*_ONCE` sites that have fired ([`KernelSite::key`]; 0 is a free slot).
    once_done: [AtomicU64; ONCE_SITES],
}

impl Reports {
    /// No taint, no oops.
    pub const fn new() -> Reports {
        Reports {
            taint: AtomicU32::new(0),
            die_counter: AtomicU32::new(0),
            pending_oopses: AtomicU32::new(0),
            halted: AtomicBool::new(false),
            once_done: [const { AtomicU64::new(0) }; ONCE_SITES],
        }
    }
}

impl Default for Reports {
    fn default() -> Reports {
        Reports::new()
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

    /// `__WARN_printf()` → `__warn()` as x86 prints it (`report_bug()`, Linux 6.6):
    /// `------------[ cut here ]------------`, the message (if any), `WARNING: CPU: %d PID:
    /// %d at %s:%d %pS` (the function without its offset), `Modules linked in:`
    /// (`print_modules()`, none here), the CPU line (`show_regs()`, tainted as before this
    /// WARN), `---[ end trace 0000000000000000 ]---`; then taints `W` and carries on.
    pub(crate) fn warn_report(&self, file: &str, line: u32, func: &str, msg: fmt::Arguments<'_>) {
        self.printk(format_args!("------------[ cut here ]------------"));
        if msg.as_str() != Some("") {
            self.printk(msg);
        }
        self.printk(format_args!(
            "WARNING: CPU: {} PID: {} at {file}:{line} {func}",
            self.platform.smp_processor_id(),
            self.platform.current_pid(),
        ));
        self.printk(format_args!("Modules linked in:"));
        self.print_cpu_line();
        self.printk(format_args!("---[ end trace 0000000000000000 ]---"));
        self.add_taint(taint::WARN);
    }

    /// [`Mm::warn_report`] for `site`: the body of [`warn_on!`] and [`warn!`].
    #[doc(hidden)]
    pub(crate) fn warn_at(&self, site: &KernelSite, msg: fmt::Arguments<'_>) {
        self.warn_report(site.file, site.line, site.func, msg);
    }

    /// `BUGFLAG_ONCE`: `true` the first time `site` fires on this machine, `false` after.
    #[doc(hidden)]
    pub(crate) fn warn_once_first(&self, site: &KernelSite) -> bool {
        let key = site.key();
        for slot in &self.reports.once_done {
            match slot.compare_exchange(0, key, Relaxed, Relaxed) {
                Ok(_) => return true,
                Err(k) if k == key => return false,
                Err(_) => {}
            }
        }
        true
    }

    /// [`bug!`]'s body: `kernel BUG at file:line!` and the oops.
    #[doc(hidden)]
    pub(crate) fn bug_at(&self, site: &KernelSite) {
        self.kernel_bug(site.file, site.line);
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

    /// The oops of a kernel access to `addr` that has no RAM behind it, as the CPU
    /// raises it (6.6 `arch/x86/mm/fault.c`, `arch/x86/kernel/traps.c`): a general
    /// protection fault for a non-canonical address (x86_64), else the page fault.
    pub(crate) fn kernel_fault(&self, addr: u64, write: bool) {
        if self.paging().is_canonical(addr) {
            self.bad_page_fault(addr, write);
        } else {
            self.general_protection_fault(addr);
        }
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

/// `WARN_ON(cond)` / `WARN(cond, fmt, …)` of `include/asm-generic/bug.h` (6.6): when
/// `cond` holds, the WARN report for `site` ([`KernelSite`]) with the message, if given;
/// evaluates to `cond`.
macro_rules! warn_on {
    ($mm:expr, $cond:expr, $site:expr $(,)?) => {
        $crate::report::warn_on!($mm, $cond, $site, "")
    };
    ($mm:expr, $cond:expr, $site:expr, $($fmt:tt)+) => {{
        let hit: bool = $cond;
        if hit {
            $mm.warn_at(&$site, format_args!($($fmt)+));
        }
        hit
    }};
}

/// `WARN(cond, fmt, …)`: [`warn_on!`] with its message required.
macro_rules! warn_ {
    ($mm:expr, $cond:expr, $site:expr, $($fmt:tt)+) => {
        $crate::report::warn_on!($mm, $cond, $site, $($fmt)+)
    };
}

/// `WARN_ON_ONCE(cond)` (and, with a message, `WARN_ONCE(cond, fmt, …)`): as [`warn_on!`], printed the
/// first time `site` fires on this machine only; evaluates to `cond` every time.
macro_rules! warn_on_once {
    ($mm:expr, $cond:expr, $site:expr $(,)?) => {
        $crate::report::warn_on_once!($mm, $cond, $site, "")
    };
    ($mm:expr, $cond:expr, $site:expr, $($fmt:tt)+) => {{
        let hit: bool = $cond;
        if hit && $mm.warn_once_first(&$site) {
            $mm.warn_at(&$site, format_args!($($fmt)+));
        }
        hit
    }};
}

/// `BUG_ON(cond)`: when `cond` holds, `kernel BUG at file:line!` for `site` and the oops
/// (taint `D`, the operation is killed); evaluates to `cond` so the caller can return
/// along its error path.
macro_rules! bug {
    ($mm:expr, $cond:expr, $site:expr $(,)?) => {{
        let hit: bool = $cond;
        if hit {
            $mm.bug_at(&$site);
        }
        hit
    }};
}

// `warn` alone would clash with the `#[warn]` attribute.
pub(crate) use {bug, warn_ as warn, warn_on, warn_on_once};

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
