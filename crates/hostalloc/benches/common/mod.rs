//! The workload benchmark every `workload_*` bench binary runs under its own
//! `#[global_allocator]` (a global allocator is per binary, so each allocator gets one).
//!
//! `cargo bench -p kmemlab-hostalloc` times it with criterion. With `KMEMLAB_ONESHOT=N`
//! in the environment a binary runs the workload once, its sizes divided by `N`, and
//! exits instead, for `valgrind --tool=callgrind` instruction counts (see
//! docs/EMBEDDING.md).

use criterion::Criterion;
use kmemlab_hostalloc::workload::Workload;

/// Run the benchmark (or one checked pass) for the allocator called `name`.
pub fn main(name: &str) {
    let work = Workload::FULL;
    if let Some(n) = std::env::var_os("KMEMLAB_ONESHOT") {
        let divisor = n
            .to_str()
            .and_then(|n| n.parse().ok())
            .unwrap_or(1u64)
            .max(1);
        let work = Workload {
            map_entries: work.map_entries / divisor,
            json_records: work.json_records / divisor,
            ..work
        };
        let out = work.run();
        assert!(work.check(&out), "{name}: wrong answer {out:?}");
        println!("{name}: workload done, {} JSON bytes", out.json_bytes);
        return;
    }
    let mut c = Criterion::default()
        .sample_size(10)
        .warm_up_time(std::time::Duration::from_secs(1))
        .measurement_time(std::time::Duration::from_secs(20))
        .configure_from_args();
    c.bench_function(&format!("workload/{name}"), |b| {
        b.iter(|| {
            let out = work.run();
            assert!(work.check(&out));
            out.json_bytes
        })
    });
    c.final_summary();
}
