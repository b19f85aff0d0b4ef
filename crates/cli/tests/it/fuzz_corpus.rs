//! The fuzz targets' committed inputs, replayed on the stable toolchain: every file of
//! `fuzz/corpus/<target>/` and `fuzz/regressions/<target>/` goes through the same function
//! libFuzzer calls (the target logic is compiled in from `fuzz/src/` by path), and none
//! may panic. `fuzz/regressions/<target>/pending/` holds reproductions of crashes not
//! fixed yet; they are listed by `pending_reproductions_are_listed` but not replayed.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};

use crate::fuzz_targets::{mm_ops, shell, trace_parse};

fn fuzz_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz")
}

/// The files directly in `dir` (not in subdirectories), sorted; none if it is missing.
fn files_in(dir: &Path) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut files: Vec<PathBuf> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_file() && !p.ends_with("README.md"))
        .collect();
    files.sort();
    files
}

/// Run every corpus and regression file of `target` through `run`; the files that
/// panicked, with the panic's message.
fn replay(target: &str, run: fn(&[u8])) -> (usize, Vec<String>) {
    let dirs = [
        fuzz_dir().join("corpus").join(target),
        fuzz_dir().join("regressions").join(target),
    ];
    let files: Vec<PathBuf> = dirs.iter().flat_map(|d| files_in(d)).collect();
    let mut failures = Vec::new();
    for file in &files {
        let data = std::fs::read(file).expect("a corpus file reads");
        if let Err(panic) = catch_unwind(AssertUnwindSafe(|| run(&data))) {
            let message = panic
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_default();
            failures.push(format!("{}: {message}", file.display()));
        }
    }
    (files.len(), failures)
}

fn assert_replays(target: &str, run: fn(&[u8]), at_least: usize) {
    let (n, failures) = replay(target, run);
    assert!(
        n >= at_least,
        "{target}: only {n} corpus files (expected at least {at_least})"
    );
    assert!(
        failures.is_empty(),
        "{target}: {} of {n} inputs panicked:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

#[test]
fn trace_parse_corpus_replays_without_panic() {
    assert_replays("trace_parse", trace_parse::run, 20);
}

#[test]
fn shell_corpus_replays_without_panic() {
    assert_replays("shell", shell::run, 20);
}

#[test]
fn mm_ops_corpus_replays_without_panic() {
    assert_replays("mm_ops", mm_ops::run, 15);
}

/// The hand-written `mm_ops` sequences are committed as their bytes, in the corpus or
/// (while they crash) in `regressions/mm_ops/pending/` (set
/// `KMEMLAB_WRITE_SEEDS=1` to write them after changing [`mm_ops::seeds`]), and those
/// bytes decode back into the same sequences.
#[test]
fn mm_ops_seeds_are_committed_as_their_encoding() {
    let dir = fuzz_dir().join("corpus/mm_ops");
    for (name, input) in mm_ops::seeds() {
        let bytes = input.encode();
        assert_eq!(mm_ops::Input::decode(&bytes), input, "seed {name}");
        let file = format!("seed-{name}");
        // A seed that crashes today's code waits in pending/ with the other reproductions.
        let pending = fuzz_dir().join("regressions/mm_ops/pending").join(&file);
        let path = if pending.exists() {
            pending
        } else {
            dir.join(&file)
        };
        if std::env::var_os("KMEMLAB_WRITE_SEEDS").is_some() {
            std::fs::write(&path, &bytes).expect("write a seed");
        }
        let committed = std::fs::read(&path).unwrap_or_default();
        assert_eq!(
            committed,
            bytes,
            "{} differs from seed {name}",
            path.display()
        );
    }
}

/// `Input::encode` writes what `arbitrary` reads: for any bytes, decoding, encoding and
/// decoding again gives the same input (every variant and field type is met).
#[test]
fn mm_ops_encoding_matches_arbitrary() {
    use rand::{RngCore, SeedableRng};
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(11);
    for _ in 0..2000 {
        let mut data = vec![0u8; (rng.next_u32() % 512) as usize];
        rng.fill_bytes(&mut data);
        let input = mm_ops::Input::decode(&data);
        assert_eq!(mm_ops::Input::decode(&input.encode()), input);
    }
}

/// Known-crashing reproductions wait in `pending/` (of `fuzz/regressions/<target>/` and
/// of `crates/cli/tests/regressions/`) until their fix lands; this lists them (run with
/// `--nocapture`) and checks they are not empty files.
#[test]
fn pending_reproductions_are_listed() {
    let scripts = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/regressions/pending");
    let dirs = ["trace_parse", "shell", "mm_ops"]
        .map(|t| fuzz_dir().join("regressions").join(t).join("pending"));
    for dir in dirs.iter().chain([&scripts]) {
        for file in files_in(dir) {
            let len = std::fs::metadata(&file).map_or(0, |m| m.len());
            assert!(len > 0, "{} is empty", file.display());
            println!("pending: {}", file.display());
        }
    }
}

/// `KMEMLAB_DECODE_MM_OPS=<file>`: print what an `mm_ops` input decodes to (for reading
/// a crash artifact); without it, decodes an empty input.
#[test]
fn decode_mm_ops_input() {
    let data = std::env::var_os("KMEMLAB_DECODE_MM_OPS")
        .map(|p| std::fs::read(p).expect("the input file"))
        .unwrap_or_default();
    let input = mm_ops::Input::decode(&data);
    println!("{:?}", input.config);
    for op in &input.ops {
        println!("  {op:?}");
    }
    assert!(input.ops.len() <= mm_ops::MAX_OPS);
}

/// `KMEMLAB_RUN_MM_OPS=<file>`: run one `mm_ops` input (for a timeout artifact: attach a
/// debugger or a profiler to this test); without it, runs nothing.
#[test]
fn run_one_mm_ops_input() {
    if let Some(path) = std::env::var_os("KMEMLAB_RUN_MM_OPS") {
        mm_ops::run(&std::fs::read(path).expect("the input file"));
    }
}
