//! The trace crate's integration tests, one binary: the parser on every format variant
//! ([`parse`]), whole traces replayed end to end ([`replay`]) and the "what if" replays
//! ([`what_if`]), the replay's samples from the allocator's counters ([`replay_cost`]).
//!
//! The traces they read live in the repository, `tests/data/traces/`: a missing file is
//! a failure, never a skip.

use std::path::PathBuf;

mod classes;
mod fidelity;
mod parse;
mod perf_script;
mod perf_tables;
mod pipeline;
mod replay;
mod replay_cost;
mod what_if;

/// The path of `name` in the repository's `tests/data/traces/`; a missing file fails the
/// test that asked for it.
pub fn trace_path(name: &str) -> PathBuf {
    let path = PathBuf::from(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../tests/data/traces/"
    ))
    .join(name);
    assert!(
        path.is_file(),
        "the trace {} is missing: it belongs in the repository's tests/data/traces/",
        path.display()
    );
    path
}
