//! `kmemlab replay` end to end: the shared SLUB trace, JSON, SVG, --compare, standard
//! input, strict and lenient parsing.

use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Output, Stdio};

fn kmemlab(args: &[&str], stdin: &str) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_kmemlab"))
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run kmemlab");
    let mut pipe = child.stdin.take().expect("stdin");
    pipe.write_all(stdin.as_bytes()).expect("write stdin");
    drop(pipe);
    child.wait_with_output().expect("kmemlab output")
}

fn slub_trace() -> String {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../../shared/data/traces/linux-3.5-i386-boot-slub.trace");
    assert!(
        path.is_file(),
        "the shared trace {} is missing: these tests need the project's shared/ folder beside the repository",
        path.display()
    );
    path.to_string_lossy().into_owned()
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[test]
fn replay_prints_perfs_summary_and_full_fidelity_on_a_matching_machine() {
    let trace = slub_trace();
    let o = kmemlab(
        &[
            "--profile",
            "i386",
            "--cpus",
            "1",
            "replay",
            &trace,
            "--top",
            "5",
        ],
        "",
    );
    let out = text(&o.stdout);
    assert!(o.status.success(), "{}", text(&o.stderr));
    assert!(
        o.stderr.is_empty(),
        "no progress bar off a terminal: {}",
        text(&o.stderr)
    );
    for needle in [
        "SUMMARY (SLAB allocator)",
        "Total bytes requested: 8,630,767",
        "Total bytes allocated: 8,711,688",
        "kmalloc ksize == bytes_alloc: 2,211/2,211 (100.00%)",
        "Cache size == bytes_alloc: 6,432/6,432 (100.00%)",
        "check(): ok",
        "/proc/meminfo",
    ] {
        assert!(out.contains(needle), "missing {needle:?}:\n{out}");
    }
}

#[test]
fn replay_json_and_svg() {
    let trace = slub_trace();
    let svg = std::env::temp_dir().join(format!("kmemlab-replay-{}.svg", std::process::id()));
    let svg_arg = svg.to_string_lossy().into_owned();
    let o = kmemlab(&["replay", &trace, "--json", "--svg", &svg_arg], "");
    assert!(o.status.success(), "{}", text(&o.stderr));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).expect("one JSON object");
    assert_eq!(v["slab"]["total_requested"], 8_630_767);
    assert_eq!(v["slab"]["nr_allocs"], 8_643);
    assert_eq!(v["input"]["events"], 11_540);
    assert_eq!(v["machine"]["profile"], "x86_64");
    assert_eq!(v["check"], "ok");
    assert!(v["callsites"].as_array().unwrap().len() > 10);
    let doc = std::fs::read_to_string(&svg).expect("the SVG was written");
    let _ = std::fs::remove_file(&svg);
    assert!(doc.starts_with("<svg") && doc.contains("free memory"));
}

#[test]
fn compare_prints_two_machines_side_by_side() {
    let trace = slub_trace();
    let o = kmemlab(
        &[
            "--profile",
            "i386",
            "replay",
            &trace,
            "--compare",
            "--cpus 8 --ram 256M --profile x86_64",
        ],
        "",
    );
    let out = text(&o.stdout);
    assert!(o.status.success(), "{}", text(&o.stderr));
    assert!(out.contains("A: i386, 4 CPUs, 1G RAM"), "{out}");
    assert!(out.contains("B: x86_64, 8 CPUs, 256M RAM"), "{out}");
    assert_eq!(out.matches("SUMMARY (SLAB allocator)").count(), 2);
    let bad = kmemlab(&["replay", &trace, "--compare", "--cpus lots"], "");
    assert_eq!(bad.status.code(), Some(2));
    assert!(text(&bad.stderr).contains("--compare"));
}

#[test]
fn standard_input_strict_and_lenient() {
    let input = "init-1 [000] .N.. 0.1: kmalloc: call_site=c1 ptr=c2 bytes_req=8 bytes_alloc=8 gfp_flags=GFP_KERNEL\n\
                 init-1 [000] .N.. 0.1: kfree: call_site=c1\n\
                 init-1 [000] .N.. 0.2: kfree: call_site=c1 ptr=c2\n";
    let strict = kmemlab(&["replay", "-"], input);
    assert_eq!(strict.status.code(), Some(2));
    let err = text(&strict.stderr);
    assert!(
        err.contains("line 2:") && err.contains("kfree: call_site=c1"),
        "{err}"
    );
    let lenient = kmemlab(&["replay", "-", "--lenient", "--json"], input);
    assert!(lenient.status.success(), "{}", text(&lenient.stderr));
    let v: serde_json::Value = serde_json::from_slice(&lenient.stdout).unwrap();
    assert_eq!(v["input"]["malformed_skipped"], 1);
    assert_eq!(v["slab"]["total_freed"], 8);
}
