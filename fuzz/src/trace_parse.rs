//! Fuzz target `trace_parse`: arbitrary bytes as a kernel `kmem` trace.
//!
//! 1. Every line goes through the line parser (`LineParser::parse_bytes`), and through the
//!    fast path and the general parser separately: where the fast path accepts a line, the
//!    general parser must read the same event and intern the same strings.
//! 2. The whole input is read by a strict and a lenient `TraceReader`, one event at a
//!    time and in batches, which must agree, and what the lenient one reads is replayed
//!    on a small machine (64 MiB, 2 CPUs); the report is rendered and the machine's
//!    invariants checked. Neither may panic, whatever the trace says.

use kmemlab_mm::Profile;
use kmemlab_sim::{Hole, Machine, MachineConfig};
use kmemlab_trace::{replay, Line, LineParser, ReplayOptions, TraceReader};

/// Inputs longer than this are only parsed, not replayed (libFuzzer's `-max_len` keeps
/// them far shorter; the bound is for corpus files from elsewhere).
pub const MAX_REPLAY_BYTES: usize = 64 << 10;

/// The target: parse, then replay.
pub fn run(data: &[u8]) {
    parse_lines(data);
    read_both_ways(data);
    if data.len() <= MAX_REPLAY_BYTES {
        replay_on_small_machine(data);
    }
}

/// Each line through the parser, and the fast path checked against the general parser:
/// line by line with fresh parsers, and over the whole input with long-lived ones, where
/// the fast path finds strings met on earlier lines by their bytes.
pub fn parse_lines(data: &[u8]) {
    let mut parser = LineParser::default();
    let (mut both, mut general) = (LineParser::default(), LineParser::default());
    for (i, line) in data.split(|&b| b == b'\n').enumerate() {
        let line_no = i as u64 + 1;
        let _ = parser.parse_bytes(line_no, line);
        fast_path_agrees(line_no, line);
        // Only text lines: the general parser cannot read others, and a line the fast
        // path alone read would leave the two parsers' strings apart.
        if let Ok(text) = std::str::from_utf8(line) {
            let quick = both.parse_bytes(line_no, line);
            let slow = general.parse_general_only(line_no, text);
            assert_eq!(quick, slow, "long-lived parsers disagree on {text:?}");
        }
    }
    let _ = parser.unknown_events();
}

/// Where the fast path reads a line, the general parser reads the same event from it and
/// leaves the same interned strings.
fn fast_path_agrees(line_no: u64, line: &[u8]) {
    let mut fast = LineParser::default();
    let Some(quick) = fast.parse_fast_only(line_no, line) else {
        return;
    };
    // The general parser reads text; a line with other bytes is the fast path's alone.
    let Ok(text) = std::str::from_utf8(line) else {
        return;
    };
    let mut general = LineParser::default();
    let slow = general.parse_general_only(line_no, text);
    assert_eq!(
        slow,
        Ok(Line::Event(quick)),
        "the fast path and the general parser disagree on {text:?}"
    );
    assert_eq!(
        fast.symbols.len(),
        general.symbols.len(),
        "interned strings differ for {text:?}"
    );
    for id in 0..fast.symbols.len() as u32 {
        assert_eq!(fast.symbols.name(id), general.symbols.name(id), "{text:?}");
    }
}

/// A strict and a lenient reader, one event at a time and in batches (of a size chosen
/// by the input's length): neither may panic, and both ways hand out the same events with
/// the same counts and stop at the same error (a strict reader at the first malformed
/// line).
fn read_both_ways(data: &[u8]) {
    for lenient in [false, true] {
        let mut one = TraceReader::new(data, lenient);
        let mut single = Vec::new();
        let single_end = loop {
            match one.next_event() {
                Ok(Some(ev)) => single.push((ev, one.stats().clone())),
                Ok(None) => break None,
                Err(e) => break Some(e.to_string()),
            }
        };
        let mut many = TraceReader::new(data, lenient);
        let (mut batched, mut batch) = (Vec::new(), Vec::new());
        let max = [1, 2, 3, 5, 1024][data.len() % 5];
        let batched_end = loop {
            let mut stats = Vec::new();
            let read = many.read_batch(&mut batch, max, |i, s| stats.push((i, s.clone())));
            assert!(batch.len() <= max);
            // Each event of the batch is handed out once, in order.
            let order: Vec<usize> = stats.iter().map(|&(i, _)| i).collect();
            assert_eq!(order, (0..batch.len()).collect::<Vec<_>>());
            batched.extend(batch.iter().copied().zip(stats.into_iter().map(|(_, s)| s)));
            match read {
                Err(e) => break Some(e.to_string()),
                Ok(()) if batch.is_empty() => break None,
                Ok(()) => {}
            }
        };
        assert!(single == batched, "events read in batches of {max} differ");
        assert_eq!(single_end, batched_end);
        assert_eq!(one.stats(), many.stats());
    }
}

/// The machine a trace is replayed on: 64 MiB, 2 CPUs, x86_64 or i386 (chosen by the
/// input's length, so that both are exercised).
fn small_machine(data: &[u8]) -> Machine {
    let profile = if data.len().is_multiple_of(3) {
        Profile::I386
    } else {
        Profile::X86_64
    };
    Machine::new(MachineConfig {
        ram: 64 << 20,
        cpus: 2,
        profile,
        seed: 1,
        holes: vec![Hole::LEGACY],
        ..MachineConfig::default()
    })
    .expect("a 64 MiB machine boots")
}

/// Replay what a lenient reader reads, render the report, check the machine.
pub fn replay_on_small_machine(data: &[u8]) {
    let machine = small_machine(data);
    let options = ReplayOptions {
        replay_pages: data.len().is_multiple_of(2),
        sample_every: 16,
        progress_every: 64,
        kvmalloc_above: data.len().is_multiple_of(5).then_some(4096),
        kallsyms: None,
        tables: kmemlab_trace::tables::TableOptions {
            by_pointer: data.len().is_multiple_of(3),
            pages: data.len().is_multiple_of(3),
            live_pages: data.len().is_multiple_of(6),
        },
        // Both ways of reading: a second parse thread, or the replaying thread alone.
        parse_thread: if data.len().is_multiple_of(4) {
            kmemlab_trace::ParseThread::Always
        } else {
            kmemlab_trace::ParseThread::Never
        },
    };
    let mut reader = TraceReader::new(data, true);
    if let Ok(report) = replay(&machine, &mut reader, &options, &mut |_| {}) {
        let _ = report.to_text(10);
        let _ = report.to_text_with(&kmemlab_trace::TextOptions {
            caller: true,
            alloc: true,
            page: true,
            lines: 10,
            slab_sort: None,
            page_sort: None,
        });
        let _ = report.summary_lines();
        let _ = report.machine_line();
    }
    let _ = machine.take_console();
    let _ = machine.check();
}
