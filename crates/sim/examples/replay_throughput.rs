//! The replay benchmark's work without criterion, for profilers that count instructions
//! (`valgrind --tool=callgrind`), whose figures do not depend on what else the machine
//! runs: `cargo run --release -p kmemlab-sim --example replay_throughput -- parse|replay [COPIES]`
//! parses (and replays, on a 256 MiB x86_64 machine) the Linux 3.5 SLUB boot trace (`tests/data/traces/`)
//! repeated COPIES times (default 20, as the benchmark) and prints the events per second.

use std::path::PathBuf;
use std::time::Instant;

use kmemlab_sim::trace::{replay, ReplayOptions, TraceReader};
use kmemlab_sim::{Machine, MachineConfig};

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let mode = args.get(1).map_or("replay", |s| s.as_str());
    let copies: usize = args.get(2).and_then(|s| s.parse().ok()).unwrap_or(20);
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../tests/data/traces/linux-3.5-i386-boot-slub.trace");
    let text = std::fs::read_to_string(&path).expect("the trace in tests/data of the repository");
    let body: String = text
        .lines()
        .filter(|l| !l.starts_with('#'))
        .flat_map(|l| [l, "\n"])
        .collect();
    let text = body.repeat(copies).into_bytes();
    let machine = Machine::new(MachineConfig {
        ram: 256 << 20,
        ..MachineConfig::default()
    })
    .expect("boot");
    let start = Instant::now();
    let events = match mode {
        "parse" => {
            let mut reader = TraceReader::new(&text[..], false);
            let mut n = 0u64;
            while reader.next_event().expect("parses").is_some() {
                n += 1;
            }
            n
        }
        _ => {
            let mut reader = TraceReader::new(&text[..], false);
            let report = replay(
                &machine,
                &mut reader,
                &ReplayOptions::default(),
                &mut |_| {},
            )
            .expect("replay");
            report.input.events
        }
    };
    let secs = start.elapsed().as_secs_f64();
    println!(
        "{mode}: {events} events in {secs:.3} s: {:.2} M events/s",
        events as f64 / secs / 1e6
    );
}
