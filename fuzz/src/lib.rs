//! The logic of kmemlab's fuzz targets, as plain functions of the input bytes: libFuzzer
//! calls them from `fuzz_targets/`, and the stable test `crates/cli/tests/fuzz_corpus.rs`
//! compiles the same files (by path) to replay the committed corpora and regressions.
//!
//! The property every target checks is the house rule: whatever the input, the host
//! never panics, crashes or hangs; the machine reports (oops, BUG, WARN) or refuses.

pub mod trace_parse;

pub mod shell;

pub mod mm_ops;
