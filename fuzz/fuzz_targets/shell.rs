//! `cargo +nightly fuzz run shell`: see fuzz/README.md; the logic is
//! [`kmemlab_fuzz::shell::run`], which crates/cli/tests/fuzz_corpus.rs also replays.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| kmemlab_fuzz::shell::run(data));
