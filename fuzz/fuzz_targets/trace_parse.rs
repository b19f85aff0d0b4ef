//! `cargo +nightly fuzz run trace_parse`: see fuzz/README.md; the logic is
//! [`kmemlab_fuzz::trace_parse::run`], which crates/cli/tests/fuzz_corpus.rs also replays.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| kmemlab_fuzz::trace_parse::run(data));
