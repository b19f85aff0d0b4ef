//! Trace throughput on the Linux 3.5 SLUB boot trace of `tests/data/traces/` (11,540
//! events), in events per second:
//!
//! * `parse`: lines to events only (`TraceReader` over the text in memory);
//! * `parse+replay`: parse and replay on a booted 256 MiB x86_64 machine, the report
//!   (tables, `/proc` files and the final `check()`) included; the boot is not timed.
//!
//! Both run over the trace's events repeated 20 times (230,800 events: a pointer seen
//! again while live frees kmemlab's earlier object first), so per-run costs are spread
//! as over a long trace.

use std::path::PathBuf;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use kmemlab_sim::{Machine, MachineConfig};
use kmemlab_trace::{replay, ReplayOptions, TraceReader};

const COPIES: usize = 20;

fn trace_text() -> Vec<u8> {
    let path = PathBuf::from(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../tests/data/traces/linux-3.5-i386-boot-slub.trace"
    ));
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| {
        panic!(
            "the trace {} (tests/data/traces in the repository): {e}",
            path.display()
        )
    });
    let body: String = text
        .lines()
        .filter(|l| !l.starts_with('#'))
        .flat_map(|l| [l, "\n"])
        .collect();
    body.repeat(COPIES).into_bytes()
}

fn count_events(text: &[u8]) -> u64 {
    let mut reader = TraceReader::new(text, false);
    let mut n = 0;
    while reader.next_event().expect("the trace parses").is_some() {
        n += 1;
    }
    n
}

fn machine() -> Machine {
    Machine::new(MachineConfig {
        ram: 256 << 20,
        ..MachineConfig::default()
    })
    .expect("boot")
}

fn benches(c: &mut Criterion) {
    let text = trace_text();
    let events = count_events(&text);
    let mut g = c.benchmark_group("trace");
    g.throughput(Throughput::Elements(events));
    g.sample_size(10);
    g.measurement_time(Duration::from_secs(10));
    g.bench_function("parse", |b| b.iter(|| count_events(&text)));
    g.bench_function("parse+replay", |b| {
        b.iter_batched(
            machine,
            |m| {
                let mut reader = TraceReader::new(&text[..], false);
                let report = replay(&m, &mut reader, &ReplayOptions::default(), &mut |_| {})
                    .expect("replay");
                (report, m)
            },
            BatchSize::PerIteration,
        )
    });
    g.finish();
}

criterion_group!(trace, benches);
criterion_main!(trace);
