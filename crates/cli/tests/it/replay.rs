//! `kmemlab replay` end to end: the Linux 3.5 SLUB boot trace (tests/data), JSON, SVG, --compare, standard
//! input, strict and lenient parsing.

use crate::fixtures::{kmemlab, test_data};

/// The Linux 3.5 SLUB boot trace (`tests/data/traces/`).
fn slub_trace() -> String {
    test_data("traces/linux-3.5-i386-boot-slub.trace")
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
        "Cache layout size == bytes_alloc: 5,310/6,432 (82.56%)",
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

/// The synthetic Linux 6.6 vmalloc trace (`tests/data/traces/`).
fn vmalloc_fixture() -> String {
    test_data("traces/vmalloc-6.6-x86_64.trace")
}

#[test]
fn vmalloc_events_in_text_and_json() {
    let trace = vmalloc_fixture();
    let o = kmemlab(&["--cpus", "2", "replay", &trace], "");
    let out = text(&o.stdout);
    assert!(o.status.success(), "{}", text(&o.stderr));
    for needle in [
        "SUMMARY (vmalloc)",
        "kmemlab areas reserved: 4 (failures 0, live at end 2)",
        "kmemlab purges: 1 (at the trace's purges 1), 2 areas, 1 TLB flushes",
        "lazy_max_pages: traced 16,384, kmemlab 16,384",
    ] {
        assert!(out.contains(needle), "missing {needle:?}:\n{out}");
    }
    let o = kmemlab(&["--cpus", "2", "replay", &trace, "--json"], "");
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).expect("one JSON object");
    assert_eq!(v["vmalloc"]["traced_allocs"], 5);
    assert_eq!(v["vmalloc"]["traced_purges"], 1);
    assert_eq!(v["vmalloc"]["peak_bytes"], 8192 + 20480 + 2101248);
    assert_eq!(v["vmalloc"]["kmemlab_tlb_flushes"], 1);
}

#[test]
fn kmalloc_sizes_flag_and_its_errors() {
    let trace = slub_trace();
    let sizes = "8,16,24,32,48,64,96,128,192,256,512,1K,2K,4K,8K";
    let o = kmemlab(
        &[
            "--profile",
            "i386",
            "--cpus",
            "1",
            "replay",
            &trace,
            "--kmalloc-sizes",
            sizes,
            "--json",
        ],
        "",
    );
    assert!(o.status.success(), "{}", text(&o.stderr));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["kmalloc_sizes"][2], 24);
    assert_eq!(
        v["slab"]["total_allocated"], 8_711_688,
        "the traced numbers stay"
    );
    assert!(v["fidelity"]["kmalloc_agreed"].as_u64().unwrap() < 2_211);
    assert!(v["caches"]
        .as_array()
        .unwrap()
        .iter()
        .any(|row| row["name"] == "kmalloc-24"));
    for (bad, why) in [
        ("8,16,4096", "must be KMALLOC_MAX_CACHE_SIZE (8192)"),
        ("8,12,8192", "multiple of 8"),
        ("16,8,8192", "must ascend: 8 follows 16"),
        ("8,16K", "larger than KMALLOC_MAX_CACHE_SIZE"),
        ("8,lots,8192", "'lots' is not a size"),
    ] {
        let o = kmemlab(&["replay", &trace, "--kmalloc-sizes", bad], "");
        assert_eq!(o.status.code(), Some(2), "{bad}");
        assert!(text(&o.stderr).contains(why), "{bad}: {}", text(&o.stderr));
    }
}

#[test]
fn kvmalloc_above_and_compare() {
    let trace = slub_trace();
    let o = kmemlab(
        &[
            "--profile",
            "i386",
            "replay",
            &trace,
            "--kvmalloc-above",
            "4K",
            "--json",
        ],
        "",
    );
    assert!(o.status.success(), "{}", text(&o.stderr));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["kvmalloc"]["above"], 4096);
    assert!(v["kvmalloc"]["via_kmalloc"].as_u64().unwrap() > 0);
    assert_eq!(v["kvmalloc"]["via_vmalloc"], 0);
    let o = kmemlab(
        &[
            "--profile",
            "i386",
            "replay",
            &trace,
            "--compare",
            "--kmalloc-sizes 8,16,24,32,64,128,256,512,1K,2K,4K,8K --kvmalloc-above 4096",
        ],
        "",
    );
    let out = text(&o.stdout);
    assert!(o.status.success(), "{}", text(&o.stderr));
    assert!(out.contains("kmalloc sizes 8,16,24,32,64"), "{out}");
    assert!(out.contains("kvmalloc above 4,096"), "{out}");
    let bad = kmemlab(&["replay", &trace, "--kvmalloc-above", "big"], "");
    assert_eq!(bad.status.code(), Some(2));
    assert!(text(&bad.stderr).contains("'big' is not a size"));
}

/// The SLUB boot trace on a matching machine with Linux 6.18's sheaves: the replay ends
/// with `check(): ok` and its report has every section. What the trace says (its totals)
/// and what kmemlab allocated for it (each request's ksize, its cache's object size) are
/// the CPU slab's: the per-CPU layer decides where a freed object waits, not which cache
/// or size class serves a request. Slab memory differs: the sheaves are kmalloc'd and the
/// objects they hold count as allocated by their slabs.
#[test]
fn replay_on_sheaves_checks_ok_and_sizes_as_the_cpu_slab() {
    let trace = slub_trace();
    let machine = ["--profile", "i386", "--cpus", "1"];
    let run = |percpu: &str, json: bool| {
        let mut args = machine.to_vec();
        args.extend(["--slab-percpu", percpu, "replay", &trace]);
        if json {
            args.push("--json");
        }
        let o = kmemlab(&args, "");
        assert!(o.status.success(), "{percpu}: {}", text(&o.stderr));
        o.stdout
    };
    let out = text(&run("sheaves", false));
    for needle in [
        "kmemlab replay on i386, 1 CPU, 1G RAM, seed 0",
        " Callsite                           | Total_alloc/Per",
        " Cache (kmemlab)                    | Total_alloc/Per",
        "SUMMARY (SLAB allocator)",
        "Total bytes requested: 8,630,767",
        "Total bytes allocated: 8,711,688",
        "Allocation failures",
        "  kmalloc 0, kmem_cache_alloc 0, alloc_pages 0",
        "kmalloc ksize == bytes_alloc: 2,211/2,211 (100.00%)",
        "Cache layout size == bytes_alloc: 5,310/6,432 (82.56%)",
        "Slab memory at end:",
        "/proc/buddyinfo",
        "/proc/slabinfo",
        "/proc/meminfo",
        "check(): ok",
    ] {
        assert!(out.contains(needle), "missing {needle:?}:\n{out}");
    }
    let json = |percpu| -> serde_json::Value {
        serde_json::from_slice(&run(percpu, true)).expect("one JSON object")
    };
    let (sheaves, cpu_slab) = (json("sheaves"), json("cpu-slab"));
    assert_eq!(sheaves["check"], "ok");
    // The report names the layer when it is not the default, in text and in JSON; the
    // default's header and `machine` object are as they always were.
    assert!(out.starts_with("kmemlab replay on i386, 1 CPU, 1G RAM, seed 0, slab-percpu sheaves\n"));
    assert_eq!(sheaves["machine"]["slab_percpu"], "sheaves");
    assert!(cpu_slab["machine"].get("slab_percpu").is_none());
    assert!(text(&run("cpu-slab", false))
        .starts_with("kmemlab replay on i386, 1 CPU, 1G RAM, seed 0\n"));
    for figure in ["slab", "fidelity", "input", "events"] {
        assert_eq!(sheaves[figure], cpu_slab[figure], "{figure}");
    }
    assert_eq!(
        sheaves["derived"]["kmemlab_allocated"],
        cpu_slab["derived"]["kmemlab_allocated"]
    );
    assert_eq!(
        sheaves["replay"]["live_at_end"],
        cpu_slab["replay"]["live_at_end"]
    );
    assert_eq!(sheaves["replay"]["free_failures"], 0);
    let slab_bytes = |v: &serde_json::Value| v["memory"]["final_slab_bytes"].as_u64().unwrap();
    assert!(
        slab_bytes(&sheaves) > slab_bytes(&cpu_slab),
        "sheaves {} bytes, CPU slab {}",
        slab_bytes(&sheaves),
        slab_bytes(&cpu_slab)
    );
}

/// docs/REPLAY.md's dump of `kmemlab replay --help` is the binary's, byte for byte.
#[test]
fn replay_md_shows_the_real_help() {
    let doc = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/REPLAY.md"))
        .expect("docs/REPLAY.md");
    let (_, after) = doc
        .split_once("$ kmemlab replay --help\n")
        .expect("REPLAY.md shows the help");
    let (dump, _) = after.split_once("```").expect("the dump's fence");
    let o = kmemlab(&["replay", "--help"], "");
    assert!(o.status.success());
    assert_eq!(dump, text(&o.stdout));
}
