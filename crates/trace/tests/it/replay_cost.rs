//! The replay's memory samples read the allocator's counters (`Mm::free_area_counts`)
//! instead of walking every free list: the counters must say what a walk of the lists
//! says (`Mm::free_area_snapshot`), after replays and after every step of a mix of page
//! allocations that splits, merges and steals pageblocks between migrate types; and the
//! generated 6.18-format trace of `kmemlab_trace::synth` must be what its format says.

use kmemlab_mm::{Context, Gfp, Mm};
use kmemlab_sim::{Machine, MachineConfig, SimPlatform};
use kmemlab_trace::synth::{self, ModernTrace, SynthOptions};
use kmemlab_trace::{replay, Line, LineParser, ReplayOptions, Report, TraceReader};

fn machine(ram: u64) -> Machine {
    Machine::new(MachineConfig {
        ram,
        ..MachineConfig::default()
    })
    .expect("boot")
}

fn replay_bytes(machine: &Machine, text: &[u8], options: &ReplayOptions) -> Report {
    let mut reader = TraceReader::new(text, false);
    replay(machine, &mut reader, options, &mut |_| {}).expect("replay")
}

/// Every populated zone's counters equal a walk of its lists.
fn assert_counters_match_walk(mm: &Mm<SimPlatform>, when: &str) {
    for zone in mm.zones().iter().filter(|z| z.is_populated()) {
        assert_eq!(
            mm.free_area_counts(zone),
            mm.free_area_snapshot(zone),
            "zone {} {when}",
            zone.name()
        );
    }
}

/// The last sample of the time series (taken at the end of the replay) against what a
/// walk of the free lists computes then, as the replay computed every sample before.
fn assert_last_sample_is_the_walks(machine: &Machine, report: &Report) {
    let mm = machine.mm();
    let orders: Vec<i8> = mm
        .zones()
        .iter()
        .filter(|z| z.is_populated())
        .map(|z| {
            mm.free_area_snapshot(z)
                .nr_free
                .iter()
                .rposition(|&n| n > 0)
                .map_or(-1, |o| o as i8)
        })
        .collect();
    let free_pages: u64 = mm.zones().iter().map(|z| z.free_pages()).sum();
    let last = report.samples.last().expect("a final sample");
    assert_eq!(last.largest_free_order, orders);
    assert_eq!(last.free_bytes, free_pages << 12);
    let largest = orders.iter().copied().max().unwrap_or(-1);
    assert_eq!(
        last.largest_free_bytes,
        if largest < 0 { 0 } else { 4096 << largest }
    );
}

#[test]
fn counters_match_a_walk_after_replaying_the_shared_trace() {
    let text = synth::shared_trace_repeated(2).expect("the shared trace");
    for ram in [128u64 << 20, 1 << 30] {
        let m = machine(ram);
        let report = replay_bytes(&m, &text, &ReplayOptions::default());
        assert_eq!(report.check, "ok");
        assert!(report.samples.len() > 10);
        assert_counters_match_walk(&m.mm(), "after the shared trace");
        assert_last_sample_is_the_walks(&m, &report);
    }
}

#[test]
fn counters_match_a_walk_after_replaying_a_modern_trace() {
    let text = synth::modern_trace(&SynthOptions {
        events: 30_000,
        ..SynthOptions::default()
    });
    let m = machine(256 << 20);
    let report = replay_bytes(&m, &text, &ReplayOptions::default());
    assert_eq!(report.check, "ok");
    assert_eq!(report.input.events, 30_000);
    assert_counters_match_walk(&m.mm(), "after the modern trace");
    assert_last_sample_is_the_walks(&m, &report);
}

/// A tiny deterministic generator for the page mix.
fn lcg(state: &mut u64) -> u64 {
    *state = state
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407);
    *state >> 33
}

#[test]
fn counters_match_a_walk_at_every_step_of_a_page_mix() {
    let m = machine(128 << 20);
    let gfps = [
        Gfp::GFP_KERNEL,
        Gfp::GFP_KERNEL | Gfp::__GFP_RECLAIMABLE,
        Gfp::GFP_HIGHUSER_MOVABLE,
        Gfp::GFP_ATOMIC,
    ];
    m.on_cpu(0, Context::Process, |mm| {
        let mut held = Vec::new();
        let mut rng = 7u64;
        for step in 0..3000u32 {
            if held.len() < 400 && !lcg(&mut rng).is_multiple_of(3) {
                let order = [0, 0, 0, 1, 2, 3, 5, 9][(lcg(&mut rng) % 8) as usize];
                let gfp = gfps[(lcg(&mut rng) % 4) as usize];
                if let Ok(page) = mm.alloc_pages(gfp, order) {
                    held.push((mm.page_to_pfn(page), order));
                }
            } else if !held.is_empty() {
                let i = (lcg(&mut rng) as usize) % held.len();
                let (pfn, order) = held.swap_remove(i);
                let page = mm.pfn_to_page(pfn).expect("a held page");
                mm.__free_pages(page, order).expect("free");
            }
            if step.is_multiple_of(10) {
                mm.drain_all_pages();
            }
            assert_counters_match_walk(mm, &format!("at step {step}"));
        }
        let stolen: u64 = mm
            .zones()
            .iter()
            .map(|z| {
                z.pageblock_steals
                    .load(std::sync::atomic::Ordering::Relaxed)
            })
            .sum();
        assert!(stolen > 0, "the mix moved no pageblock between types");
        assert!(mm.check().is_ok(), "{:?}", mm.check());
    })
    .expect("on cpu 0");
}

#[test]
fn the_modern_trace_is_deterministic_and_takes_the_fast_path() {
    let options = SynthOptions {
        events: 5_000,
        seed: 42,
        ..SynthOptions::default()
    };
    let a = synth::modern_trace(&options);
    assert_eq!(a, synth::modern_trace(&options));
    assert_ne!(
        a,
        synth::modern_trace(&SynthOptions {
            seed: 43,
            ..options.clone()
        })
    );
    let text = String::from_utf8(a).expect("text");
    let mut fast = LineParser::default();
    let mut general = LineParser::default();
    let (mut events, mut named_allocs) = (0, 0);
    for (i, line) in text
        .lines()
        .enumerate()
        .filter(|(_, l)| !l.starts_with('#'))
    {
        let quick = fast.parse_fast_only(i as u64, line.as_bytes());
        let quick = quick.unwrap_or_else(|| panic!("the fast path refused {line:?}"));
        assert_eq!(
            general.parse_general_only(i as u64, line),
            Ok(Line::Event(quick)),
            "{line:?}"
        );
        events += 1;
        named_allocs += line.contains("kmem_cache_alloc: ") as u32;
        assert!(
            line.contains("call_site=") && line.contains('+'),
            "{line:?}"
        );
        if line.contains("alloc: ") {
            assert!(line.contains(" node=") && line.contains(" accounted="));
        }
    }
    assert_eq!(events, 5_000);
    assert!(named_allocs > 500);
}

#[test]
fn a_generated_trace_streams_in_bounded_live_state() {
    let options = SynthOptions {
        events: 50_000,
        max_live: 100,
        ..SynthOptions::default()
    };
    let mut trace = ModernTrace::new(&options);
    let mut out = Vec::new();
    trace.write_header(&mut out);
    let mut lines = 0;
    while trace.write_event(&mut out) {
        lines += 1;
        if out.len() > 1 << 20 {
            out.clear();
        }
    }
    assert_eq!(lines, 50_000);
    let m = machine(256 << 20);
    let text = synth::modern_trace(&options);
    let report = replay_bytes(&m, &text, &ReplayOptions::default());
    // At most max_live objects live at any time, so at most that many at the end.
    assert!(
        report.replay.live_at_end <= 100,
        "{}",
        report.replay.live_at_end
    );
    assert_eq!(
        report.fidelity.kmalloc_checked,
        report.fidelity.kmalloc_agreed
    );
}
