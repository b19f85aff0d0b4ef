//! Traces replayed end to end on simulated machines: the two shared Linux 3.5 boot traces
//! (totals checked against numbers computed here from the text; on both per-CPU slab
//! layers), contexts, page events, the odd cases (frees before tracing, NULL, reused
//! pointers), and a stream of millions of lines in bounded memory.

use std::collections::HashMap;
use std::io::{BufReader, Read};
use std::path::PathBuf;

use kmemlab_mm::slab::sheaf::SlabPercpu;
use kmemlab_mm::Profile;
use kmemlab_sim::{Machine, MachineConfig};
use kmemlab_trace::{plot, replay, side_by_side, ReplayOptions, Report, TraceReader};

/// A trace of the repository's `tests/data/traces`; missing is a failure.
fn shared_trace(name: &str) -> PathBuf {
    crate::trace_path(name)
}

fn machine(profile: Profile, cpus: usize) -> Machine {
    Machine::new(MachineConfig {
        profile,
        cpus,
        ..MachineConfig::default()
    })
    .expect("boot")
}

fn replay_text(machine: &Machine, text: &str, options: &ReplayOptions) -> Report {
    let mut reader = TraceReader::new(text.as_bytes(), false);
    replay(machine, &mut reader, options, &mut |_| {}).expect("replay")
}

fn replay_file(machine: &Machine, name: &str) -> Report {
    let file = std::fs::File::open(shared_trace(name)).expect("open the trace");
    let mut reader = TraceReader::new(BufReader::new(file), false);
    let mut progress_calls = 0;
    let report = replay(machine, &mut reader, &ReplayOptions::default(), &mut |_| {
        progress_calls += 1
    })
    .expect("replay");
    assert!(progress_calls >= 1);
    report
}

/// The slab totals, computed from the text with nothing but splitting on whitespace.
#[derive(Debug, Default, PartialEq, Eq)]
struct Totals {
    allocs: u64,
    frees: u64,
    kmalloc: u64,
    cache_allocs: u64,
    requested: u128,
    allocated: u128,
    freed: u128,
    null_frees: u64,
}

fn totals_from_text(text: &str) -> Totals {
    let mut t = Totals::default();
    let mut live: HashMap<String, u64> = HashMap::new();
    for line in text.lines().filter(|l| !l.trim_start().starts_with('#')) {
        let words: Vec<&str> = line.split_whitespace().collect();
        let Some(at) = words.iter().position(|w| {
            matches!(
                *w,
                "kmalloc:" | "kmem_cache_alloc:" | "kfree:" | "kmem_cache_free:"
            )
        }) else {
            continue;
        };
        let field = |key: &str| {
            words[at + 1..]
                .iter()
                .find_map(|w| w.strip_prefix(key))
                .unwrap_or("")
        };
        let ptr = field("ptr=").to_string();
        if words[at].ends_with("alloc:") || words[at] == "kmalloc:" {
            t.allocs += 1;
            if words[at] == "kmalloc:" {
                t.kmalloc += 1;
            } else {
                t.cache_allocs += 1;
            }
            let req: u64 = field("bytes_req=").parse().unwrap();
            let alloc: u64 = field("bytes_alloc=").parse().unwrap();
            t.requested += u128::from(req);
            t.allocated += u128::from(alloc);
            live.insert(ptr, alloc);
        } else {
            t.frees += 1;
            if ptr.is_empty() || ptr == "(null)" {
                t.null_frees += 1;
            } else if let Some(bytes) = live.remove(&ptr) {
                t.freed += u128::from(bytes);
            }
        }
    }
    t
}

fn totals_from_report(r: &Report) -> Totals {
    Totals {
        allocs: r.slab.nr_allocs,
        frees: r.slab.nr_frees,
        kmalloc: r.events["kmalloc"],
        cache_allocs: r.events["kmem_cache_alloc"],
        requested: r.slab.total_requested,
        allocated: r.slab.total_allocated,
        freed: r.slab.total_freed,
        null_frees: r.replay.null_frees,
    }
}

#[test]
fn slub_trace_on_a_matching_i386_machine_agrees_with_every_bytes_alloc() {
    let name = "linux-3.5-i386-boot-slub.trace";
    let text = std::fs::read_to_string(shared_trace(name)).unwrap();
    let m = machine(Profile::I386, 1);
    let r = replay_file(&m, name);
    assert_eq!(m.mm().check().map(|_| ()), Ok(()));
    assert_eq!(r.check, "ok");
    assert_eq!(totals_from_report(&r), totals_from_text(&text));
    assert_eq!(r.input.events, 11_540);
    assert_eq!(r.input.malformed_skipped + r.input.unknown_events, 0);
    assert_eq!(r.fidelity.kmalloc_checked, r.events["kmalloc"]);
    assert_eq!(
        r.fidelity.kmalloc_agreed, r.fidelity.kmalloc_checked,
        "{:?}",
        r.fidelity.mismatches
    );
    // Caches are laid out by kmemlab from the traced object size: four of the traced
    // caches had a larger s->size than SLUB's plain layout gives (a constructor or RCU
    // moving the free pointer out of the object, or an alignment the trace does not say).
    assert_eq!(r.fidelity.cache_checked, r.events["kmem_cache_alloc"]);
    assert_eq!(
        r.fidelity.cache_agreed, 5_310,
        "{:?}",
        r.fidelity.mismatches
    );
    let cache_mismatches: Vec<_> = r
        .fidelity
        .mismatches
        .iter()
        .filter(|m| m.event == "kmem_cache_alloc")
        .map(|m| (m.bytes_req, m.traced, m.kmemlab, m.events))
        .collect();
    assert_eq!(
        cache_mismatches,
        [
            (272, 280, 272, 1100),
            (1292, 1312, 1296, 10),
            (396, 416, 400, 7),
            (132, 160, 136, 5)
        ]
    );
    assert_eq!(r.derived.kmalloc_fidelity_percent, Some(100.0));
    let f = &r.replay;
    assert_eq!(
        f.kmalloc_failures + f.cache_alloc_failures + f.free_failures,
        0
    );
    assert_eq!(
        f.in_softirq, 410,
        "the trace's ..s. lines run in softirq context"
    );
    assert_eq!(
        f.irqs_off, 6,
        "the trace's d... lines run with interrupts off"
    );
    assert_eq!(f.sleep_in_atomic, 0);
    assert!(r.memory.peak_slab_bytes >= r.memory.final_slab_bytes && r.memory.peak_slab_bytes > 0);
    let text_report = r.to_text(10);
    for needle in [
        "SUMMARY (SLAB allocator)",
        "Total bytes requested: 8,630,767",
        "Total bytes wasted on internal fragmentation:",
        "Internal fragmentation:",
        "Cross CPU allocations: 0/8,643",
        " Callsite                           | Total_alloc/Per | Total_req/Per   | Hit      | Ping-pong | Frag",
        "/proc/slabinfo",
        "/proc/buddyinfo",
        "MemTotal:",
        "check(): ok",
    ] {
        assert!(text_report.contains(needle), "the report lacks {needle:?}:\n{text_report}");
    }
}

#[test]
fn slab_trace_replays_on_the_default_machine_and_shows_where_sizes_differ() {
    let name = "linux-3.5-i386-boot-slab.trace";
    let text = std::fs::read_to_string(shared_trace(name)).unwrap();
    let m = machine(Profile::X86_64, 4);
    let r = replay_file(&m, name);
    assert_eq!(m.mm().check().map(|_| ()), Ok(()));
    assert_eq!(totals_from_report(&r), totals_from_text(&text));
    assert_eq!(r.input.events, 10_458);
    // SLAB's smallest kmalloc cache was 32 bytes: kmemlab's SLUB hands out 8.
    assert!(r.fidelity.kmalloc_agreed < r.fidelity.kmalloc_checked);
    assert!(r
        .fidelity
        .mismatches
        .iter()
        .any(|m| m.event == "kmalloc" && m.bytes_req == 6 && m.traced == 32 && m.kmemlab == 8));
    assert_eq!(r.replay.kmalloc_failures + r.replay.cache_alloc_failures, 0);
}

/// A machine with the slab allocator's per-CPU layer `percpu` (`--slab-percpu`).
fn machine_with(profile: Profile, cpus: usize, percpu: SlabPercpu) -> Machine {
    let mut config = MachineConfig {
        profile,
        cpus,
        ..MachineConfig::default()
    };
    config.slab.percpu = percpu;
    Machine::new(config).expect("boot")
}

/// Both shared traces on machines with Linux 6.18's sheaves: the checker finds nothing,
/// the totals are the text's, and every figure of what the trace did and of what kmemlab
/// served it (the cache and size class of each request, so each ksize; the contexts;
/// failures: none) is the CPU slab's, because the per-CPU layer decides only where a
/// freed object waits until it is allocated again.
#[test]
fn both_traces_replay_on_sheaves_as_on_the_cpu_slab() {
    for (name, profile, cpus) in [
        ("linux-3.5-i386-boot-slub.trace", Profile::I386, 1),
        ("linux-3.5-i386-boot-slab.trace", Profile::X86_64, 4),
    ] {
        let text = std::fs::read_to_string(shared_trace(name)).unwrap();
        let m = machine_with(profile, cpus, SlabPercpu::Sheaves);
        assert_eq!(m.mm().slab_percpu(), SlabPercpu::Sheaves);
        let sheaves = replay_file(&m, name);
        assert_eq!(m.mm().check().map(|_| ()), Ok(()), "{name}");
        assert_eq!(sheaves.check, "ok", "{name}");
        assert_eq!(
            totals_from_report(&sheaves),
            totals_from_text(&text),
            "{name}"
        );
        let cpu_slab = replay_file(&machine_with(profile, cpus, SlabPercpu::CpuSlab), name);
        // The header names the layer when it is not the default, so the two sides of a
        // `--compare` can be told apart; the default's header is as it always was.
        assert!(sheaves.machine_line().ends_with(", slab-percpu sheaves"));
        assert!(!cpu_slab.machine_line().contains("percpu"));
        assert_eq!(sheaves.machine.slab.percpu, SlabPercpu::Sheaves);
        assert_eq!(sheaves.fidelity, cpu_slab.fidelity, "{name}");
        assert_eq!(sheaves.replay, cpu_slab.replay, "{name}");
        assert_eq!(
            sheaves.derived.kmemlab_allocated, cpu_slab.derived.kmemlab_allocated,
            "{name}"
        );
        assert_eq!(
            sheaves.replay.kmalloc_failures
                + sheaves.replay.cache_alloc_failures
                + sheaves.replay.free_failures,
            0,
            "{name}"
        );
        let report = sheaves.to_text(10);
        for needle in [
            "SUMMARY (SLAB allocator)",
            " Callsite                           | Total_alloc/Per",
            "Slab memory at end:",
            "/proc/slabinfo",
            "/proc/buddyinfo",
            "MemTotal:",
            "check(): ok",
        ] {
            assert!(
                report.contains(needle),
                "{name}: the report lacks {needle:?}"
            );
        }
    }
}

#[test]
fn replay_is_deterministic() {
    let name = "linux-3.5-i386-boot-slub.trace";
    let a = replay_file(&machine(Profile::X86_64, 2), name);
    let b = replay_file(&machine(Profile::X86_64, 2), name);
    assert_eq!(a.to_text(20), b.to_text(20));
}

const HEAD: &str = "task-1";

fn line(cpu: u32, flags: &str, body: &str) -> String {
    format!("{HEAD} [{cpu:03}] {flags} 1.000000: {body}\n")
}

#[test]
fn events_run_on_their_cpu_in_their_context() {
    let mut t = String::new();
    t += &line(
        0,
        "d.h.",
        "kmalloc: call_site=c1 ptr=a0 bytes_req=20 bytes_alloc=32 gfp_flags=GFP_ATOMIC",
    );
    t += &line(1, "..s.", "kfree: call_site=c2 ptr=a0");
    // A GFP_KERNEL allocation traced in hard-IRQ context: the kernel's splat, counted.
    t += &line(
        7,
        "d.h.",
        "kmalloc: call_site=c3 ptr=a1 bytes_req=64 bytes_alloc=64 gfp_flags=GFP_KERNEL",
    );
    t += &line(7, "d.H1", "kfree: call_site=c4 ptr=a1");
    t += &line(
        1,
        "d...",
        "kmalloc: call_site=c5 ptr=a2 bytes_req=8 bytes_alloc=8 gfp_flags=GFP_KERNEL",
    );
    t += &line(1, "d.Z1.", "kfree: call_site=c6 ptr=a2");
    t += &line(0, "b..1.", "kfree: call_site=c6 ptr=(null)");
    let m = machine(Profile::X86_64, 2);
    let r = replay_text(&m, &t, &ReplayOptions::default());
    let c = &r.replay;
    assert_eq!(c.in_hardirq, 3);
    assert_eq!(c.in_softirq, 1);
    assert_eq!(c.in_nmi, 1);
    assert_eq!(c.irqs_off, 1);
    assert_eq!(c.bh_off, 1);
    assert_eq!(c.cpu_wrapped, 2, "CPU 7 of a 2-CPU machine");
    assert_eq!(
        c.sleep_in_atomic, 2,
        "GFP_KERNEL in hard IRQ and with irqs off"
    );
    assert_eq!(
        c.kmalloc_failures, 0,
        "allocated without sleeping after the splat"
    );
    assert!(r
        .messages
        .iter()
        .any(|m| m.starts_with("BUG: sleeping function called from invalid context")));
    assert_eq!(r.slab.total_freed, 32 + 64 + 8);
    // Freed on another CPU than allocated: perf's ping-pong.
    let c1 = r.callsites.iter().find(|s| s.name == "0xc1").unwrap();
    assert_eq!(c1.pingpong, 1);
    assert_eq!(c.null_frees, 1);
    assert_eq!(m.mm().check().map(|_| ()), Ok(()));
    // Every CPU is back in process context with interrupts on.
    for cpu in 0..2 {
        assert_eq!(m.mm().per_cpu(cpu).preempt_count.get(), 0);
    }
}

#[test]
fn odd_frees_are_counted_not_errors() {
    let mut t = String::new();
    t += &line(0, "....", "kfree: call_site=c1 ptr=dead0000");
    t += &line(
        0,
        "....",
        "kmem_cache_free: call_site=c1 ptr=dead0040 name=dentry",
    );
    t += &line(
        0,
        "....",
        "kmalloc: call_site=c1 ptr=b0 bytes_req=100 bytes_alloc=128 gfp_flags=GFP_KERNEL",
    );
    t += &line(
        0,
        "....",
        "kmalloc: call_site=c1 ptr=b0 bytes_req=100 bytes_alloc=128 gfp_flags=GFP_KERNEL",
    );
    t += &line(
        0,
        "....",
        "kmem_cache_alloc: call_site=c9 ptr=b8 bytes_req=200 bytes_alloc=256 gfp_flags=GFP_KERNEL",
    );
    t += &line(0, "....", "kfree: call_site=c1 ptr=b8");
    t += &line(0, "....", "kmem_cache_free: call_site=c1 ptr=b0");
    t += &line(
        0,
        "....",
        "kmalloc: call_site=c1 ptr=00000000 bytes_req=100 bytes_alloc=0 gfp_flags=GFP_NOWAIT",
    );
    t += &line(
        0,
        "....",
        "kmalloc: call_site=c1 ptr=10 bytes_req=0 bytes_alloc=0 gfp_flags=GFP_KERNEL",
    );
    let m = machine(Profile::X86_64, 1);
    let r = replay_text(&m, &t, &ReplayOptions::default());
    let c = &r.replay;
    assert_eq!(c.untracked_frees, 2);
    assert_eq!(c.reused_live_pointer, 1);
    assert_eq!(c.free_kind_mismatch, 2);
    assert_eq!(c.traced_slab_failures, 1);
    assert_eq!(c.caches_created, 1);
    assert_eq!(c.free_failures, 0);
    assert_eq!(c.live_at_end, 0);
    // The cache is laid out by kmemlab for the traced object size (200 bytes: 200 on
    // x86_64 SLUB), not copied from the traced s->size (256): the check can fail.
    assert_eq!((r.fidelity.cache_checked, r.fidelity.cache_agreed), (1, 0));
    assert_eq!(
        r.fidelity
            .mismatches
            .iter()
            .find(|m| m.event == "kmem_cache_alloc")
            .map(|m| (m.bytes_req, m.traced, m.kmemlab)),
        Some((200, 256, 200))
    );
    assert_eq!(m.mm().check().map(|_| ()), Ok(()));
}

#[test]
fn page_events_replay_and_summarise_like_perf_kmem_page() {
    let mut t = String::new();
    t += &line(
        0,
        "....",
        "mm_page_alloc: page=f0000000 pfn=100 order=0 migratetype=0 gfp_flags=GFP_KERNEL",
    );
    t += &line(0, "....", "mm_page_alloc: page=f0000020 pfn=0x200 order=3 migratetype=2 gfp_flags=GFP_HIGHUSER_MOVABLE");
    t += &line(
        0,
        "....",
        "mm_page_alloc: page=(null) pfn=0 order=10 migratetype=1 gfp_flags=GFP_KERNEL|__GFP_NOWARN",
    );
    t += &line(0, "....", "mm_page_free: page=f0000000 pfn=100 order=0");
    t += &line(
        0,
        "....",
        "mm_page_free_batched: page=f0000040 pfn=999 order=0 cold=0",
    );
    t += &line(
        0,
        ".....",
        "alloc_vmap_area: va_start: 100 size=8192 align=1 vstart=0x0 vend=0x1000000 failed=0",
    );
    let m = machine(Profile::X86_64, 1);
    let before = m.mm().zones().iter().map(|z| z.free_pages()).sum::<u64>();
    let r = replay_text(&m, &t, &ReplayOptions::default());
    let p = &r.page;
    assert_eq!(
        (p.nr_allocs, p.nr_frees, p.nr_fails, p.nr_nomatch),
        (3, 2, 1, 1)
    );
    assert_eq!(p.alloc_bytes, 4096 + 8 * 4096 + 1024 * 4096);
    assert_eq!(p.order_stats[0][0], 1);
    assert_eq!(p.order_stats[3][2], 1);
    assert_eq!(
        r.replay.live_at_end, 1,
        "the order-3 block is still allocated"
    );
    assert_eq!(r.events["alloc_vmap_area"], 1);
    assert_eq!(r.replay.replayed, 6, "the vmalloc event is replayed too");
    assert_eq!(r.vmalloc.reserved, 1);
    let after = m.mm().zones().iter().map(|z| z.free_pages()).sum::<u64>();
    assert!(after < before);
    assert_eq!(m.mm().check().map(|_| ()), Ok(()));
    let text = r.to_text(5);
    assert!(text.contains("SUMMARY (page allocator)"));
    assert!(
        text.contains("Total allocation failures     :                1   [            4,096 KB ]"),
        "{text}"
    );
    // Without page replay the summary is the same and the machine untouched.
    let m2 = machine(Profile::X86_64, 1);
    let options = ReplayOptions {
        replay_pages: false,
        ..ReplayOptions::default()
    };
    let r2 = replay_text(&m2, &t, &options);
    assert_eq!(r2.page, r.page);
    assert_eq!(r2.replay.live_at_end, 0);
}

#[test]
fn svg_plot_and_side_by_side() {
    let name = "linux-3.5-i386-boot-slub.trace";
    let a = replay_file(&machine(Profile::I386, 1), name);
    let b = replay_file(&machine(Profile::X86_64, 8), name);
    let svg = plot::svg(&a, "replay").expect("svg");
    assert!(
        svg.starts_with("<svg")
            && svg.contains("slab memory")
            && svg.contains("largest free block")
    );
    assert!(a.samples.len() > 10);
    let both = side_by_side(&a, &b);
    assert!(both.contains("A: i386, 1 CPU, 1G RAM"));
    assert!(both.contains("B: x86_64, 8 CPUs, 1G RAM"));
    assert!(both.contains("SUMMARY (SLAB allocator)"));
}

/// An endless-looking trace: `lines` lines of allocations and frees over 1,000 pointers,
/// made on the fly so the test never holds the text.
struct Generated {
    next: u64,
    lines: u64,
    pending: Vec<u8>,
    at: usize,
}

impl Read for Generated {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        if self.at == self.pending.len() {
            if self.next == self.lines {
                return Ok(0);
            }
            let i = self.next;
            self.next += 1;
            let ptr = 0xc1000000 + (i / 2 % 1000) * 64;
            let cpu = i % 4;
            self.pending = if i.is_multiple_of(2) {
                format!("       Web Content-{i}   [{cpu:03}] d..1. {}.{:06}: kmalloc: call_site=site_{}+0x10/0x80 ptr={ptr:x} bytes_req=40 bytes_alloc=64 gfp_flags=GFP_ATOMIC|__GFP_NOWARN\n", i / 1_000_000, i % 1_000_000, i % 3)
            } else {
                format!("  kworker/u8:2-{i}   [{cpu:03}] ..s1. {}.{:06}: kfree: call_site=kfree_site+0x1/0x2 ptr={ptr:x}\n", i / 1_000_000, i % 1_000_000)
            }
            .into_bytes();
            self.at = 0;
        }
        let n = buf.len().min(self.pending.len() - self.at);
        buf[..n].copy_from_slice(&self.pending[self.at..self.at + n]);
        self.at += n;
        Ok(n)
    }
}

#[test]
fn millions_of_lines_stream_through_in_bounded_memory() {
    const LINES: u64 = 2_000_000;
    let input = BufReader::new(Generated {
        next: 0,
        lines: LINES,
        pending: Vec::new(),
        at: 0,
    });
    let m = machine(Profile::X86_64, 4);
    let mut reader = TraceReader::new(input, false);
    let report = replay(&m, &mut reader, &ReplayOptions::default(), &mut |_| {}).expect("replay");
    assert_eq!(report.input.events, LINES);
    assert_eq!(report.replay.replayed, LINES);
    // The parser keeps only its interned strings (4 call sites, 1 GFP string), the line
    // buffer stays one line long, and the replay's live map ends empty.
    assert!(
        reader.parser().retained_entries() <= 8,
        "{}",
        reader.parser().retained_entries()
    );
    assert!(reader.buffer_capacity() <= 4096);
    assert_eq!(report.replay.live_at_end, 0);
    assert!(report.samples.len() <= 2048);
    assert_eq!(report.slab.total_freed, report.slab.total_allocated);
    assert_eq!(m.mm().check().map(|_| ()), Ok(()));
}

/// Traced sizes are summed exactly however large the trace says they were: 2^57-byte
/// failed kmallocs (the largest the parser accepts) take the totals past `u64`, and a
/// lenient replay counts a `-1` size as malformed instead of summing it.
#[test]
fn totals_do_not_wrap() {
    let huge = "kmalloc: call_site=c1 ptr=(null) bytes_req=144115188075855872 bytes_alloc=144115188075855872 gfp_flags=GFP_KERNEL";
    let mut t = String::new();
    for _ in 0..200 {
        t += &line(0, "....", huge);
    }
    t += &line(0, "....", "kmalloc: call_site=c1 ptr=a0 bytes_req=18446744073709551615 bytes_alloc=32 gfp_flags=GFP_KERNEL");
    t += &line(
        0,
        "....",
        "kmalloc: call_site=c1 ptr=a1 bytes_req=29 bytes_alloc=32 gfp_flags=GFP_KERNEL",
    );
    let m = machine(Profile::X86_64, 1);
    let mut reader = TraceReader::new(t.as_bytes(), true);
    let r = replay(&m, &mut reader, &ReplayOptions::default(), &mut |_| {}).expect("replay");
    assert_eq!(r.input.malformed_skipped, 1);
    assert_eq!(r.slab.nr_allocs, 201);
    assert_eq!(r.slab.total_requested, 200 * (1u128 << 57) + 29);
    assert_eq!(r.slab.total_allocated, 200 * (1u128 << 57) + 32);
    assert_eq!(r.replay.traced_slab_failures, 200);
    let site = r.callsites.iter().find(|s| s.name == "0xc1").unwrap();
    assert_eq!(site.bytes_req, 200 * (1u128 << 57) + 29);
    assert!(r
        .to_text(5)
        .contains("Total bytes requested: 28,823,037,615,171,174,429"));
}

/// Linux 6.6 prints `accounted=true` on a `__GFP_ACCOUNT` kmalloc; such requests replay on
/// `kmalloc-cg-*`, as `kmalloc_type()` serves them, and the others on `kmalloc-*`.
#[test]
fn accounted_kmallocs_replay_on_kmalloc_cg() {
    let mut t = String::new();
    let alloc = |ptr: &str, gfp: &str, accounted: &str| {
        line(
            0,
            "....",
            &format!(
                "kmalloc: call_site=c1 ptr={ptr} bytes_req=100 bytes_alloc=128 gfp_flags={gfp} node=-1 accounted={accounted}"
            ),
        )
    };
    t += &alloc("a0", "GFP_KERNEL_ACCOUNT", "true");
    t += &alloc("a1", "GFP_KERNEL_ACCOUNT|__GFP_ZERO", "true");
    // The flag string without the bit: `accounted=true` still says the request had it.
    t += &alloc("a2", "GFP_KERNEL", "true");
    t += &alloc("a3", "GFP_KERNEL", "false");
    t += &alloc("a4", "GFP_KERNEL_ACCOUNT|__GFP_RECLAIMABLE", "true");
    let m = machine(Profile::X86_64, 2);
    let r = replay_text(&m, &t, &ReplayOptions::default());
    let hits = |name: &str| r.caches.iter().find(|c| c.name == name).map(|c| c.hit);
    assert_eq!(hits("kmalloc-cg-128"), Some(3));
    assert_eq!(hits("kmalloc-128"), Some(1));
    assert_eq!(hits("kmalloc-rcl-128"), Some(1));
    assert_eq!(r.fidelity.kmalloc_agreed, 5);
    assert!(r.proc.slabinfo.contains("kmalloc-cg-128"));
    assert_eq!(m.mm().check().map(|_| ()), Ok(()));
}
