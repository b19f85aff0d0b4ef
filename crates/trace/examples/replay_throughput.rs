//! The replay benchmark's work without criterion, for profilers that count instructions
//! (`valgrind --tool=callgrind`), whose figures do not depend on what else the machine
//! runs:
//!
//! ```text
//! cargo run --release -p kmemlab-trace --example replay_throughput -- MODE [COPIES] [RAM] [TRACE]
//! ```
//!
//! * `MODE`: `parse` (lines to events only, in batches as the parse thread reads them),
//!   `parse1` (the same one event at a time, `TraceReader::next_event`), `replay` (parse
//!   and replay, the parsing on a second thread where the host has two CPUs:
//!   `ParseThread::Auto`), `replay1` (the same on one thread: `ParseThread::Never`), or
//!   `none` (the trace made and the machine booted, nothing read: the part of a callgrind
//!   count that is neither);
//! * `COPIES`: how many times the trace's events are repeated (default 20, as the
//!   benchmark);
//! * `RAM`: the x86_64 machine's memory, `256M`, `1G`, `24G`, `256G` (default 256M);
//! * `TRACE`: `shared` (default), the Linux 3.5 SLUB boot trace of `tests/data/traces/`,
//!   or `modern`, the 6.18-format trace of `kmemlab_trace::synth` (symbolic call sites,
//!   `name=`, `node=`, `accounted=`), 100,000 events per copy, from seed 1.
//!
//! It prints the events per second, the CPU time of the replaying thread and of the whole
//! process (both threads) over the same span, the boot time, the time of one `Mm::check()` (the
//! report ends with one: a walk of all of `mem_map`, so a per-replay cost that grows with
//! the RAM) and the process's peak resident set (`VmHWM`), which must stay bounded by
//! what the machine's size explains.

use std::time::Instant;

use kmemlab_sim::{parse_size, Machine, MachineConfig};
use kmemlab_trace::{replay, synth, ParseThread, ReplayOptions, TraceReader};

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let mode = args.get(1).map_or("replay", |s| s.as_str());
    let copies: usize = args.get(2).and_then(|s| s.parse().ok()).unwrap_or(20);
    let ram = args.get(3).and_then(|s| parse_size(s)).unwrap_or(256 << 20);
    let kind = args.get(4).map_or("shared", |s| s.as_str());
    let text = match kind {
        "modern" => synth::modern_trace(&synth::SynthOptions {
            events: 100_000 * copies as u64,
            ..synth::SynthOptions::default()
        }),
        _ => synth::shared_trace_repeated(copies).expect("the trace in tests/data/traces"),
    };
    let boot = Instant::now();
    let machine = Machine::new(MachineConfig {
        ram,
        ..MachineConfig::default()
    })
    .expect("boot");
    let boot_secs = boot.elapsed().as_secs_f64();
    let start = Instant::now();
    let (thread_cpu, process_cpu) = (thread_cpu_ns(), process_cpu_ticks());
    let events = match mode {
        "none" => 0,
        "parse" => {
            // In batches, as the replay's parse thread reads.
            let mut reader = TraceReader::new(&text[..], false);
            let (mut batch, mut n) = (Vec::new(), 0u64);
            loop {
                reader
                    .read_batch(&mut batch, 1024, |_, _| {})
                    .expect("parses");
                if batch.is_empty() {
                    break n;
                }
                n += batch.len() as u64;
            }
        }
        "parse1" => {
            // One event at a time (`next_event`, as the explorer's replay reads).
            let mut reader = TraceReader::new(&text[..], false);
            let mut n = 0u64;
            while reader.next_event().expect("parses").is_some() {
                n += 1;
            }
            n
        }
        _ => {
            let options = ReplayOptions {
                parse_thread: if mode == "replay1" {
                    ParseThread::Never
                } else {
                    ParseThread::Auto
                },
                ..ReplayOptions::default()
            };
            let mut reader = TraceReader::new(&text[..], false);
            let report = replay(&machine, &mut reader, &options, &mut |_| {}).expect("replay");
            report.input.events
        }
    };
    let secs = start.elapsed().as_secs_f64();
    let thread_cpu = (thread_cpu_ns() - thread_cpu) as f64 / 1e9;
    let process_cpu = (process_cpu_ticks() - process_cpu) as f64 / 100.0;
    // The report ends with a full `check()`, which walks all of mem_map: timed again
    // here, alone, to tell the per-event cost from that per-replay one.
    let check = Instant::now();
    let checked = machine.mm().check().is_ok();
    let check_secs = check.elapsed().as_secs_f64();
    println!(
        "{mode} {kind} x{copies} on {}: {events} events in {secs:.3} s: {:.2} M events/s \
         (CPU: this thread {thread_cpu:.3} s, the process {process_cpu:.2} s; \
         boot {boot_secs:.3} s, check() {check_secs:.3} s {}, peak RSS {})",
        kmemlab_sim::format_size(ram),
        events as f64 / secs / 1e6,
        if checked { "ok" } else { "FAILED" },
        peak_rss()
    );
}

/// CPU time of the calling thread in ns: the first field of `/proc/thread-self/schedstat`
/// (0 where there is none).
fn thread_cpu_ns() -> u64 {
    std::fs::read_to_string("/proc/thread-self/schedstat")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

/// CPU time of the whole process, every thread's, ended ones included, in clock ticks
/// (`utime + stime` of `/proc/self/stat`, 100 a second on Linux; 0 where there is none).
fn process_cpu_ticks() -> u64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    // The fields after the command's closing parenthesis; utime and stime are the 14th
    // and 15th of the line, the 12th and 13th after it.
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    rest.split_whitespace()
        .skip(11)
        .take(2)
        .filter_map(|f| f.parse::<u64>().ok())
        .sum()
}

/// `VmHWM` of `/proc/self/status`: the peak resident set, as the kernel words it.
fn peak_rss() -> String {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .map(|l| l["VmHWM:".len()..].trim().to_string())
        })
        .unwrap_or_else(|| "unknown".to_string())
}
