//! The `kmemlab` crate's integration tests, one binary: the binary end to end (cli, bounds,
//! oops, replay, tour_grid, slab_percpu), the fuzz targets' corpus and the random-script
//! fuzzer, each a module named as its file. What they share (running the binary, test
//! data) is in `fixtures`.
//!
//! Run one module with `cargo test -p kmemlab --test it <module>::`.

mod fixtures;
mod fuzz_targets;

mod architecture_doc;
mod bounds;
mod browser;
mod bulk;
mod cli;
mod fuzz_corpus;
mod kmem;
mod oops;
mod replay;
mod replay_perf;
mod script_fuzz;
mod serve_api;
mod slab_percpu;
mod slabinfo;
mod snapshot;
mod sysctl;
mod tour_grid;
