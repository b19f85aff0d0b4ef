//! `cargo +nightly fuzz run mm_ops`: see fuzz/README.md; the logic is
//! [`kmemlab_fuzz::mm_ops::run`], which crates/cli/tests/fuzz_corpus.rs also replays.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| kmemlab_fuzz::mm_ops::run(data));
