//! Trace throughput in events per second:
//!
//! * `parse`: the Linux 3.5 SLUB boot trace of `tests/data/traces/` (11,540 events)
//!   repeated 20 times, lines to events only (`TraceReader` over the text in memory);
//! * `parse+replay/shared/RAM`: that text parsed and replayed on a booted x86_64 machine of
//!   256 MiB (the benchmark's old figure), 1 GiB, 24 GiB and 256 GiB, the report (tables,
//!   `/proc` files and the final `check()`) included; the boot is not timed; the parsing
//!   on a second thread where the host has two CPUs (`ParseThread::Auto`), and
//!   `parse+replay/shared/1G/one-thread` the same on one (`ParseThread::Never`);
//! * `parse/modern`, `parse+replay/modern/1G`: 200,000 events of the generated
//!   Linux 6.18-format trace (`kmemlab_trace::synth`: symbolic call sites, `name=`,
//!   `node=`, `accounted=`), generated once before timing.
//!
//! A pointer seen again while live frees kmemlab's earlier object first, so per-run costs
//! are spread as over a long trace. The 256 GiB machine costs the host about 0.34 GB
//! (the written part of its `mem_map`, 40 bytes for every 4 KiB: boot writes only the
//! pieces that are not zero, and `MAP_NORESERVE` RAM is backed only where written); set `KMEMLAB_BENCH_NO_256G=1` to leave it out on a host
//! without that much free memory.

use std::time::Duration;

use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use kmemlab_sim::{Machine, MachineConfig};
use kmemlab_trace::synth::{self, SynthOptions};
use kmemlab_trace::{replay, ParseThread, ReplayOptions, TraceReader};

const COPIES: usize = 20;
const MODERN_EVENTS: u64 = 200_000;

fn count_events(text: &[u8]) -> u64 {
    let mut reader = TraceReader::new(text, false);
    let (mut batch, mut n) = (Vec::new(), 0);
    loop {
        reader
            .read_batch(&mut batch, 1024, |_, _| {})
            .expect("the trace parses");
        if batch.is_empty() {
            return n;
        }
        n += batch.len() as u64;
    }
}

fn machine(ram: u64) -> Machine {
    Machine::new(MachineConfig {
        ram,
        ..MachineConfig::default()
    })
    .expect("boot")
}

/// Parse and replay `text` on a fresh machine of `ram` bytes (booted outside the timing).
fn bench_replay(c: &mut Criterion, name: &str, text: &[u8], ram: u64) {
    bench_replay_with(c, name, text, ram, ParseThread::Auto)
}

fn bench_replay_with(c: &mut Criterion, name: &str, text: &[u8], ram: u64, parse: ParseThread) {
    let options = ReplayOptions {
        parse_thread: parse,
        ..ReplayOptions::default()
    };
    let events = count_events(text);
    let mut g = c.benchmark_group("trace");
    g.throughput(Throughput::Elements(events));
    g.sample_size(10);
    g.measurement_time(Duration::from_secs(10));
    g.bench_function(name, |b| {
        b.iter_batched(
            || machine(ram),
            |m| {
                let mut reader = TraceReader::new(text, false);
                let report = replay(&m, &mut reader, &options, &mut |_| {}).expect("replay");
                (report, m)
            },
            BatchSize::PerIteration,
        )
    });
    g.finish();
}

fn bench_parse(c: &mut Criterion, name: &str, text: &[u8]) {
    let events = count_events(text);
    let mut g = c.benchmark_group("trace");
    g.throughput(Throughput::Elements(events));
    g.sample_size(10);
    g.measurement_time(Duration::from_secs(10));
    g.bench_function(name, |b| b.iter(|| count_events(text)));
    g.finish();
}

fn benches(c: &mut Criterion) {
    let shared = synth::shared_trace_repeated(COPIES).unwrap_or_else(|e| {
        panic!(
            "the trace linux-3.5-i386-boot-slub.trace (tests/data/traces in the repository): {e}"
        )
    });
    bench_parse(c, "parse", &shared);
    bench_replay(c, "parse+replay", &shared, 256 << 20);
    bench_replay_with(
        c,
        "parse+replay/shared/1G/one-thread",
        &shared,
        1 << 30,
        ParseThread::Never,
    );
    let mut sizes = vec![("1G", 1u64 << 30), ("24G", 24 << 30)];
    if std::env::var_os("KMEMLAB_BENCH_NO_256G").is_none() {
        sizes.push(("256G", 256 << 30));
    }
    for (label, ram) in sizes {
        bench_replay(c, &format!("parse+replay/shared/{label}"), &shared, ram);
    }
    let modern = synth::modern_trace(&SynthOptions {
        events: MODERN_EVENTS,
        ..SynthOptions::default()
    });
    bench_parse(c, "parse/modern", &modern);
    bench_replay(c, "parse+replay/modern/1G", &modern, 1 << 30);
}

criterion_group!(trace, benches);
criterion_main!(trace);
