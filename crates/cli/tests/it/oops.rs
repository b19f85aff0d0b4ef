//! Breaking the machine from the shell (issue 11): an oops kills its command and taints the
//! kernel `D`; a panic halts the machine, which then serves only commands that read, until
//! `reboot` boots a fresh one with the same flags.
//!
//! The oops is a real one: a free page's `lru.next` on CPU 0's per-CPU list is overwritten
//! through the MMU, so the next allocation follows the link outside `mem_map` and the
//! kernel takes the page fault. The panic is a real one too: CPU 0's `pcp->lock` word is
//! overwritten, so the invariant checker's `spin_lock` finds bad magic, and the soft
//! lockup that follows panics the machine.

use crate::fixtures::{kmemlab, stdout};

use kmemlab_cli::shell::{Outcome, Shell};
use kmemlab_cli::MachineArgs;

/// Allocate two pages, free the first onto CPU 0's per-CPU list, and point its `lru.next`
/// (offset 16 of `struct page`) at PFN 0x0fffffff, far outside any machine's `mem_map`.
const CORRUPT_PCP_LINK: &str = "p = alloc_pages GFP_KERNEL 0
q = alloc_pages GFP_KERNEL 0
__free_pages p 0
write p 16 0xffffff0f
";

fn shell() -> Shell {
    Shell::new(MachineArgs::defaults().boot().expect("boot"))
}

/// Run one line, numbered `n`.
fn run(sh: &mut Shell, n: usize, line: &str) -> Outcome {
    sh.exec_line(n, line).expect("a command, not a blank line")
}

fn text(o: &Outcome) -> String {
    let mut out = Vec::new();
    o.print_text(&mut out).expect("print");
    String::from_utf8(out).expect("utf-8")
}

#[test]
fn an_oops_fails_its_command_with_the_kernels_report_and_taints_d() {
    let script = format!(
        "{CORRUPT_PCP_LINK}r = alloc_pages GFP_KERNEL 0\ncat /proc/sys/kernel/tainted\ncat /proc/meminfo\n"
    );
    let o = kmemlab(&["shell"], &script);
    let out = stdout(&o);
    assert_eq!(o.status.code(), Some(1), "an oops fails the script:\n{out}");
    assert!(
        o.stderr.is_empty(),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    // page_fault_oops() and __die_header() of Linux 6.6, in order.
    let report = [
        "  BUG: unable to handle page fault for address: ",
        "  #PF: supervisor read access in kernel mode",
        "  #PF: error_code(0x0000) - not-present page",
        "  Oops: 0000 [#1] PREEMPT SMP NOPTI",
        "  CPU: 0 PID: 100 Comm: kmemlab/0 Not tainted 6.6.0-kmemlab #1",
        "kmemlab: the kernel oopsed in this command; the machine is tainted (D)",
        "error: line 5: alloc_pages GFP_KERNEL 0: the kernel oopsed (see above)",
    ];
    let mut rest = out.as_str();
    for line in report {
        let at = rest
            .find(line)
            .unwrap_or_else(|| panic!("missing, or out of order: {line}\n{out}"));
        rest = &rest[at + line.len()..];
    }
    // TAINT_DIE is bit 7: /proc/sys/kernel/tainted says 128.
    assert!(out.lines().any(|l| l == "128"), "{out}");
    // An oops does not halt the machine: /proc still reads.
    assert!(out.contains("MemTotal:"), "{out}");
    assert!(!out.contains("has panicked"), "{out}");
}

#[test]
fn an_expected_oops_passes_and_its_result_is_not_kept() {
    let script = format!("{CORRUPT_PCP_LINK}! r = alloc_pages GFP_KERNEL 0\n! page_to_pfn r\n");
    let o = kmemlab(&["shell"], &script);
    let out = stdout(&o);
    assert_eq!(o.status.code(), Some(0), "'!' expected the oops:\n{out}");
    assert!(
        out.contains("failed as expected: the kernel oopsed (see above)"),
        "{out}"
    );
    // The oops killed the allocation: its struct page never reached the name.
    assert!(
        out.contains("failed as expected: 'r' is neither a number nor a name given earlier"),
        "{out}"
    );
}

#[test]
fn json_marks_the_oops_and_carries_the_console() {
    let script = format!("{CORRUPT_PCP_LINK}r = alloc_pages GFP_KERNEL 0\n");
    let o = kmemlab(&["shell", "--json"], &script);
    let out = stdout(&o);
    let objects: Vec<serde_json::Value> = out
        .lines()
        .map(|l| serde_json::from_str(l).expect("one JSON object per line"))
        .collect();
    assert_eq!(objects.len(), 5);
    for before in &objects[..4] {
        assert_eq!(before["oops"], false, "{before}");
        assert_eq!(before["tainted"], 0, "{before}");
    }
    let oops = &objects[4];
    assert_eq!(oops["oops"], true);
    assert_eq!(oops["failed"], true);
    assert_eq!(oops["ok"], false);
    assert_eq!(oops["halted"], false);
    assert_eq!(oops["tainted"], 128);
    assert_eq!(oops["result"], serde_json::Value::Null);
    assert_eq!(
        oops["oops_notice"],
        "kmemlab: the kernel oopsed in this command; the machine is tainted (D)"
    );
    let console: Vec<&str> = oops["kernel"]
        .as_array()
        .expect("console lines")
        .iter()
        .map(|l| l.as_str().expect("a line"))
        .collect();
    assert!(
        console.contains(&"Oops: 0000 [#1] PREEMPT SMP NOPTI"),
        "{console:?}"
    );
}

/// The direct-map address of CPU 0's `pcp->lock` for the first zone: the lock is the first
/// word of `struct per_cpu_pages`, which lives in the per-CPU unit in simulated RAM.
fn pcp_lock_address(sh: &Shell) -> u64 {
    let mm = sh.machine.mm();
    let pcp = &mm.per_cpu(0).pcp[0] as *const _ as u64;
    let phys = pcp - mm.platform().ram().base() as u64;
    mm.layout().page_offset + phys
}

#[test]
fn a_panic_halts_the_machine_for_a_post_mortem_until_reboot() {
    let mut sh = shell();
    let lock = pcp_lock_address(&sh);
    let keep = run(&mut sh, 1, "x = kmalloc 64 GFP_KERNEL");
    assert!(keep.met_expectation(), "{}", text(&keep));
    let w = run(&mut sh, 2, &format!("write {lock:#x} 0 0xffffffff"));
    assert!(w.met_expectation(), "{}", text(&w));
    assert!(!sh.machine.halted());

    // The checker takes every pcp->lock: bad magic, soft lockup, panic.
    let panic = run(&mut sh, 3, "check");
    let out = text(&panic);
    assert!(panic.failed() && panic.halted, "{out}");
    assert!(
        out.contains("  BUG: spinlock bad magic on CPU#0, kmemlab/0/100"),
        "{out}"
    );
    assert!(
        out.contains("  watchdog: BUG: soft lockup - CPU#0 stuck for 22s!"),
        "{out}"
    );
    assert!(
        out.contains("  Kernel panic - not syncing: softlockup: hung tasks"),
        "{out}"
    );
    assert!(out.contains(
        "kmemlab: the kernel panicked in this command; the machine is halted \
         (Kernel panic - not syncing: softlockup: hung tasks); \
         'reboot' boots a fresh one with the same flags"
    ));
    assert_eq!(sh.prompt(), "kmemlab[panicked]> ");

    // Commands that change the machine are refused, with the panic's own words...
    for (n, cmd) in [
        "kmalloc 64 GFP_KERNEL",
        "kfree x",
        "alloc_pages GFP_KERNEL 0",
    ]
    .iter()
    .enumerate()
    {
        let refused = run(&mut sh, 10 + n, cmd);
        assert!(refused.failed() && refused.kernel.is_empty(), "{cmd}");
        assert!(
            text(&refused).contains(
                "the machine has panicked (Kernel panic - not syncing: softlockup: hung tasks); \
                 'reboot' boots a fresh one with the same flags"
            ),
            "{cmd}: {}",
            text(&refused)
        );
    }
    // ...and a script may expect that.
    assert!(run(&mut sh, 20, "! kmalloc 64 GFP_KERNEL").met_expectation());

    // Commands that read still serve a post-mortem.
    for (n, cmd) in [
        "cat /proc/meminfo",
        "cat /proc/sys/kernel/tainted",
        "check",
        "info x",
        "dump x 16",
        "help kmalloc",
        "slab kmalloc-64",
    ]
    .iter()
    .enumerate()
    {
        let read = run(&mut sh, 30 + n, cmd);
        assert!(read.met_expectation(), "{cmd}: {}", text(&read));
    }
    let tainted = run(&mut sh, 40, "cat /proc/sys/kernel/tainted");
    // TAINT_SOFTLOCKUP ('L', bit 14): 16384.
    assert!(text(&tainted).contains("16384"), "{}", text(&tainted));

    // reboot: the old kernel's last words, then a fresh, untainted machine.
    let reboot = run(&mut sh, 50, "reboot");
    assert!(reboot.met_expectation(), "{}", text(&reboot));
    assert_eq!(
        reboot.kernel.last().map(String::as_str),
        Some("reboot: Restarting system")
    );
    assert!(
        text(&reboot).contains("kmemlab: booted 1G RAM, 4 CPU(s), x86_64, seed 0: MemTotal "),
        "{}",
        text(&reboot)
    );
    assert!(!sh.machine.halted());
    assert_eq!(sh.machine.tainted().0, 0);
    assert_eq!(sh.prompt(), "kmemlab[cpu0 process]> ");
    let tainted = run(&mut sh, 51, "cat /proc/sys/kernel/tainted");
    assert_eq!(text(&tainted), "0\n");
    // The old machine's names are gone; the new machine allocates and checks clean.
    assert!(run(&mut sh, 52, "! kfree x").met_expectation());
    let alloc = run(&mut sh, 53, "y = kmalloc 64 GFP_KERNEL");
    assert!(
        alloc.met_expectation() && alloc.oops.is_none(),
        "{}",
        text(&alloc)
    );
    let check = run(&mut sh, 54, "check");
    assert!(check.met_expectation(), "{}", text(&check));
}

#[test]
fn an_oops_shows_in_the_prompt_and_reboot_clears_it() {
    let mut sh = shell();
    for (n, line) in CORRUPT_PCP_LINK.lines().enumerate() {
        assert!(run(&mut sh, n + 1, line).met_expectation(), "{line}");
    }
    assert_eq!(sh.prompt(), "kmemlab[cpu0 process]> ");
    let oops = run(&mut sh, 5, "r = alloc_pages GFP_KERNEL 0");
    assert!(oops.failed() && !oops.halted, "{}", text(&oops));
    assert_eq!(sh.machine.mm().oops_count(), 1);
    assert_eq!(sh.prompt(), "kmemlab[cpu0 process, tainted D]> ");
    assert!(run(&mut sh, 6, "reboot").met_expectation());
    assert_eq!(sh.machine.mm().oops_count(), 0);
    assert_eq!(sh.prompt(), "kmemlab[cpu0 process]> ");
}

#[test]
fn reboot_keeps_the_machine_flags() {
    let args =
        MachineArgs::parse_from(["--ram", "64M", "--cpus", "2", "--seed", "7"]).expect("flags");
    let mut sh = Shell::new(args.boot().expect("boot"));
    let before = sh.machine.config().clone();
    run(&mut sh, 1, "cpu 1");
    let reboot = run(&mut sh, 2, "reboot");
    assert!(
        text(&reboot).contains("kmemlab: booted 64M RAM, 2 CPU(s), x86_64, seed 7"),
        "{}",
        text(&reboot)
    );
    assert_eq!(sh.machine.config(), &before);
    // The CPU and context settings start over too.
    assert_eq!(sh.cpu, 0);
}

#[test]
fn the_oops_example_expects_its_oops_and_reboots_clean() {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/../../examples/oops.kmem");
    let o = kmemlab(&["shell", script], "");
    let out = stdout(&o);
    assert_eq!(o.status.code(), Some(0), "{out}");
    assert_oops_example(&out);
}

/// What `examples/oops.kmem` (its output `out`) must show, whatever the machine's flags:
/// the oops, the taint notice, the expected failure, then a clean reboot.
pub(crate) fn assert_oops_example(out: &str) {
    let lines: Vec<&str> = out.lines().collect();
    let at = |line: &str| {
        lines
            .iter()
            .position(|l| *l == line)
            .unwrap_or_else(|| panic!("no line {line:?} in\n{out}"))
    };
    let oops = at("  Oops: 0000 [#1] PREEMPT SMP NOPTI");
    let notice = at("kmemlab: the kernel oopsed in this command; the machine is tainted (D)");
    let expected = at("failed as expected: the kernel oopsed (see above)");
    let restart = at("  reboot: Restarting system");
    assert!(
        oops < notice && notice < expected && expected < restart,
        "{out}"
    );
    // Tainted before the reboot, clean after it.
    assert_eq!(lines[restart - 1], "128", "{out}");
    assert_eq!(lines[restart + 2], "0", "{out}");
    assert!(lines[restart + 3].starts_with("ok: "), "{out}");
}
