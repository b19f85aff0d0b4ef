//! The replay with its parsing on a second thread (`ParseThread::Always`) against the
//! replay on one (`ParseThread::Never`): the same report to the byte, the same progress
//! calls, the same errors with the same line numbers, on traces long enough to cross many
//! of the parse thread's batches, with new strings and callchains arriving in each.

use std::fmt::Write as _;
use std::io::BufReader;

use kmemlab_sim::{Machine, MachineConfig};
use kmemlab_trace::synth::{self, SynthOptions};
use kmemlab_trace::tables::TableOptions;
use kmemlab_trace::{
    replay, InputStats, ParseThread, ReplayOptions, Report, TraceEvent, TraceReader,
};

/// What one replay produced: the report (or the error's text), the machine's check, and
/// the input counts at each progress call.
#[derive(Debug, PartialEq)]
struct Outcome {
    report: Result<String, String>,
    text: Option<String>,
    progress: Vec<(u64, u64, u64)>,
    check: bool,
}

fn run(text: &[u8], lenient: bool, options: &ReplayOptions, parse: ParseThread) -> Outcome {
    let machine = Machine::new(MachineConfig {
        cpus: 2,
        ..MachineConfig::default()
    })
    .expect("boot");
    let options = ReplayOptions {
        parse_thread: parse,
        ..options.clone()
    };
    let mut reader = TraceReader::new(BufReader::with_capacity(4096, text), lenient);
    let mut progress = Vec::new();
    let result = replay(&machine, &mut reader, &options, &mut |s| {
        progress.push((s.lines, s.bytes, s.events))
    });
    let check = machine.mm().check().is_ok();
    Outcome {
        text: result.as_ref().ok().map(|r: &Report| r.to_text(50)),
        report: result.map(|r| format!("{r:?}")).map_err(|e| e.to_string()),
        progress,
        check,
    }
}

/// Both ways, held to one answer; returns it.
fn same_both_ways(text: &[u8], lenient: bool, options: &ReplayOptions) -> Outcome {
    let one = run(text, lenient, options, ParseThread::Never);
    let two = run(text, lenient, options, ParseThread::Always);
    assert_eq!(one, two);
    one
}

fn small_progress() -> ReplayOptions {
    ReplayOptions {
        progress_every: 997,
        ..ReplayOptions::default()
    }
}

#[test]
fn the_shared_trace_replays_the_same_on_two_threads() {
    let text = synth::shared_trace_repeated(3).expect("the shared trace");
    let out = same_both_ways(&text, false, &small_progress());
    assert!(out.report.is_ok() && out.check);
    // Every 997 lines, and once at the end.
    assert!(out.progress.len() > 30, "{} calls", out.progress.len());
}

#[test]
fn the_modern_trace_replays_the_same_on_two_threads() {
    let text = synth::modern_trace(&SynthOptions {
        events: 20_000,
        ..SynthOptions::default()
    });
    let out = same_both_ways(&text, false, &small_progress());
    assert!(out.text.expect("a report").contains("dentry"));
}

/// A `perf script -g` trace of `n` page allocations and kmallocs in which every event
/// brings a new call-site string and a new chain.
fn new_strings_and_chains(n: u64) -> String {
    let mut text = String::new();
    for i in 0..n {
        let pfn = 0x1000 + 2 * i;
        let ts = 10.0 + i as f64 * 1e-6;
        let _ = writeln!(
            text,
            "     kworker/0:1    20 [00{}] {ts:12.6}: kmem:mm_page_alloc: page=0xffffea0000040000 \
             pfn={pfn:#x} order=0 migratetype=0 gfp_flags=GFP_KERNEL\n\
             \tffffffff81200100 __alloc_pages+0x100 ([kernel.kallsyms])\n\
             \tffffffff8130{:04x} caller_{i}+0x30 ([kernel.kallsyms])\n",
            i % 2,
            i % 0x10000,
        );
        let _ = writeln!(
            text,
            "            perf 24970 [000] {ts:12.6}: kmem:kmalloc: call_site=site_{}+0x1/0x20 \
             ptr={:#x} bytes_req=32 bytes_alloc=32 gfp_flags=GFP_KERNEL node=-1 accounted=false",
            i % 3000,
            0xffff888100000000u64 + 64 * (i % 500),
        );
    }
    text
}

/// The trace above, so that each batch carries strings and chains to the replaying
/// thread, with every table on.
#[test]
fn new_strings_and_chains_reach_the_replay_in_every_batch() {
    let text = new_strings_and_chains(6_000);
    let options = ReplayOptions {
        tables: TableOptions {
            by_pointer: true,
            pages: true,
            live_pages: true,
        },
        ..small_progress()
    };
    let out = same_both_ways(text.as_bytes(), false, &options);
    let report = out.report.expect("a report");
    // The page call sites come from the chains (perf's `find_callsite`).
    assert!(report.contains("\"caller_5999\""), "{report}");
}

/// A malformed line deep in the trace: strict mode stops at it with its line number after
/// replaying every event above it, both ways; lenient mode skips and counts it.
#[test]
fn errors_come_after_the_events_before_them_with_their_line_numbers() {
    let mut text = synth::shared_trace_repeated(1).expect("the shared trace");
    let lines_before = 5_000;
    let at = text
        .iter()
        .enumerate()
        .filter(|&(_, &b)| b == b'\n')
        .nth(lines_before - 1)
        .map(|(i, _)| i + 1)
        .expect("5,000 lines");
    text.splice(
        at..at,
        b"  init-1 [000] .N.. 0.1: kmalloc: call_site=zz ptr=\n".to_vec(),
    );
    let strict = same_both_ways(&text, false, &small_progress());
    let err = strict.report.expect_err("strict mode stops");
    assert!(
        err.starts_with(&format!("line {}:", lines_before + 1)),
        "{err}"
    );
    assert!(strict.check);
    let lenient = same_both_ways(&text, true, &small_progress());
    assert!(lenient
        .report
        .expect("lenient mode goes on")
        .contains("malformed_skipped: 1"));
}

#[test]
fn an_empty_trace_replays_the_same_on_two_threads() {
    let out = same_both_ways(b"", false, &ReplayOptions::default());
    assert_eq!(out.progress, [(0, 0, 0)]);
}

/// What a reader handed out: each event with the input counts (lines, bytes, events,
/// frames) when it was handed out, then how the reading ended.
type Reading = (Vec<(TraceEvent, [u64; 4])>, Option<String>);

fn counts(stats: &InputStats) -> [u64; 4] {
    [
        stats.lines,
        stats.bytes,
        stats.events,
        stats.callchain_frames,
    ]
}

fn one_at_a_time(text: &[u8], lenient: bool) -> Reading {
    let mut reader = TraceReader::new(BufReader::with_capacity(4096, text), lenient);
    let mut events = Vec::new();
    loop {
        match reader.next_event() {
            Ok(Some(ev)) => events.push((ev, counts(reader.stats()))),
            Ok(None) => return (events, None),
            Err(e) => return (events, Some(e.to_string())),
        }
    }
}

fn in_batches(text: &[u8], lenient: bool, max: usize) -> Reading {
    let mut reader = TraceReader::new(BufReader::with_capacity(4096, text), lenient);
    let (mut events, mut batch) = (Vec::new(), Vec::new());
    loop {
        let mut at = Vec::new();
        let read = reader.read_batch(&mut batch, max, |i, stats| at.push((i, counts(stats))));
        assert!(batch.len() <= max);
        // Each event is handed out once, in order, with the counts of its moment.
        assert_eq!(
            at.iter().map(|&(i, _)| i).collect::<Vec<_>>(),
            (0..batch.len()).collect::<Vec<_>>()
        );
        events.extend(batch.iter().zip(&at).map(|(&ev, &(_, c))| (ev, c)));
        match read {
            Err(e) => {
                assert!(batch.is_empty(), "an error comes after the events above it");
                return (events, Some(e.to_string()));
            }
            Ok(()) if batch.is_empty() => return (events, None),
            Ok(()) => {}
        }
    }
}

/// `TraceReader::read_batch`, which both ways of replaying use, hands out what
/// `next_event` does, event by event with the same callchains and the same counts at each
/// event, and stops at the same error, whatever the batch's size: on callchains, on the
/// shared trace with a malformed line in strict and lenient mode, and on a trace that ends
/// in the middle of a line.
#[test]
fn batches_read_what_one_event_at_a_time_reads() {
    let mut broken = synth::shared_trace_repeated(1).expect("the shared trace");
    broken.splice(
        100_000..100_000,
        b"\n  init-1 [000] .N.. 0.1: kmalloc: call_site=zz ptr=\n".to_vec(),
    );
    let mut cut = new_strings_and_chains(300).into_bytes();
    cut.truncate(cut.len() - 40);
    let texts = [new_strings_and_chains(300).into_bytes(), broken, cut];
    for (t, text) in texts.iter().enumerate() {
        for lenient in [false, true] {
            let one = one_at_a_time(text, lenient);
            assert!(one.0.len() > 300, "text {t}: {} events", one.0.len());
            // The malformed and the cut line stop strict reading, not lenient.
            assert_eq!(one.1.is_some(), t > 0 && !lenient, "text {t}: {:?}", one.1);
            for max in [1, 2, 3, 7, 1024] {
                let batched = in_batches(text, lenient, max);
                assert!(
                    batched == one,
                    "text {t}, lenient {lenient}, batches of {max}"
                );
            }
        }
    }
}

/// The counts at each hand-out, pinned on a small hand-written `perf script -g` trace:
/// an event is handed out once the next event line is read, with its own frames as its
/// chain, past a blank line, an unknown event whose frame is dropped, and a lost-events
/// line; the last one at the end of the input. The same one at a time and in batches.
#[test]
fn each_event_is_handed_out_with_the_counts_of_its_moment() {
    let text = "\
            perf 24970 [000]  3442.427504: kmem:kmalloc: call_site=a+0x1 ptr=0xffff888100000040 bytes_req=32 bytes_alloc=32 gfp_flags=GFP_KERNEL
\tffffffff812a3b4c __kmalloc+0x1ac ([kernel.kallsyms])
\tffffffff810d1f17 sched_setaffinity+0x127 ([kernel.kallsyms])

            perf 24970 [000]  3442.428100: sched:sched_switch: prev_comm=perf prev_pid=24970
\tffffffff810d1f17 schedule+0x27 ([kernel.kallsyms])
CPU:1 [LOST 5 EVENTS]
            perf 24970 [000]  3442.428200: kmem:kfree: call_site=b+0x2 ptr=0xffff888100000040
# the end
";
    // (lines, bytes of the lines read, events, frames) at each hand-out.
    let line_end = |n: usize| {
        text.split_inclusive('\n')
            .take(n)
            .map(str::len)
            .sum::<usize>() as u64
    };
    let expected = [(8, line_end(8), 2, 3), (9, line_end(9), 2, 3)];
    let one = one_at_a_time(text.as_bytes(), false);
    let batched = in_batches(text.as_bytes(), false, 2);
    assert!(one == batched);
    let (events, end) = one;
    assert_eq!(end, None);
    let counts: Vec<_> = events
        .iter()
        .map(|(_, c)| (c[0], c[1], c[2], c[3]))
        .collect();
    assert_eq!(counts, expected);
    // The kmalloc's chain is its own two frames; the kfree has none.
    let mut reader = TraceReader::new(text.as_bytes(), false);
    let first = reader.next_event().unwrap().expect("the kmalloc");
    let second = reader.next_event().unwrap().expect("the kfree");
    let chain = reader.chains().get(first.chain.expect("a chain"));
    assert_eq!(chain.len(), 2);
    assert_eq!(second.chain, None);
    assert_eq!(reader.stats().lost_events, 5);
    assert_eq!(reader.stats().unknown_events, 1);
}
