//! The workload benchmark every `workload_*` bench binary runs under its own
//! `#[global_allocator]` (a global allocator is per binary, so each allocator gets one).
//!
//! `cargo bench -p kmemlab-hostalloc` times it with criterion. With `KMEMLAB_ONESHOT=1`
//! in the environment a binary runs the workload once and exits instead, for
//! `valgrind --tool=callgrind` instruction counts (see docs/EMBEDDING.md).

use criterion::Criterion;
use kmemlab_hostalloc::workload::Workload;

/// Run the benchmark (or one checked pass) for the allocator called `name`.
pub fn main(name: &str) {
    let work = Workload::FULL;
    if std::env::var_os("KMEMLAB_ONESHOT").is_some() {
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
