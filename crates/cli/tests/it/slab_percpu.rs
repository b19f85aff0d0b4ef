//! The front ends on the slab allocator's other per-CPU layer, Linux 6.18's sheaves
//! (`--slab-percpu sheaves`): the tour's per-CPU comparison line and its `slab_percpu`
//! fact, the tour's claims on a sheaves machine, and every shipped example script
//! (`examples/*.kmem`) run by the shell on a sheaves machine with the checks of its own
//! test. (The tour over a grid of sheaves machines is in `tour_grid`, a replayed trace in
//! `replay`, a session's option in `serve_api`, the snapshot in `snapshot`.)

use serde_json::Value;

use crate::fixtures::{kmemlab, stdout};

/// The tour's JSON document with `flags` before the subcommand; the run must succeed.
fn tour_json(flags: &[&str]) -> Value {
    let mut args = flags.to_vec();
    args.extend(["tour", "--json", "--no-wall-clock"]);
    let o = kmemlab(&args, "");
    assert!(
        o.status.success(),
        "{flags:?}: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    serde_json::from_slice(&o.stdout).expect("one JSON document")
}

/// `tour/percpu.rs`'s workload: 20 bursts of 200 kmalloc(64), each then freed.
const WORKLOAD: u64 = 20 * 200;

/// What the comparison line prints for one layer's measurement.
fn printed(layer: &str, m: &Value) -> String {
    let pct = |part: &Value| {
        format!(
            "{:.0}",
            part.as_u64().expect("a count") as f64 * 100.0 / WORKLOAD as f64
        )
    };
    format!(
        "{layer} {}% of allocations and {}% of frees",
        pct(&m["alloc_hits"]),
        pct(&m["free_hits"])
    )
}

/// The default tour prints the per-CPU comparison line, and its numbers are the
/// `slab_percpu` fact of the JSON document.
#[test]
fn the_default_tour_compares_the_per_cpu_layers() {
    let o = kmemlab(&["tour", "--no-wall-clock"], "");
    let text = stdout(&o);
    assert!(o.status.success(), "{text}");
    let v = tour_json(&[]);
    let fact = &v["slab_percpu"];
    assert_eq!(fact["this_machine"], "cpu-slab", "{fact}");
    for layer in ["cpu-slab", "sheaves"] {
        let m = &fact[layer];
        assert_eq!(m["allocs"], WORKLOAD, "{layer}: {fact}");
        assert_eq!(m["frees"], WORKLOAD, "{layer}: {fact}");
        for hits in ["alloc_hits", "free_hits"] {
            assert!(m[hits].as_u64().unwrap() <= WORKLOAD, "{layer}: {fact}");
        }
    }
    let line = format!(
        "   Per-CPU layer (this machine: cpu-slab): 20 bursts of 200 kmalloc(64) then kfree, \
         served per CPU without a slab list: {}; {}.",
        printed("cpu-slab", &fact["cpu-slab"]),
        printed("sheaves", &fact["sheaves"])
    );
    assert!(
        text.lines().any(|l| l == line),
        "no line {line:?} in\n{text}"
    );
    // A burst of 200 fills more than three slabs of kmalloc-64 (64 objects in a page on
    // this 4-CPU x86_64 machine), and 6.6's free fast path (do_slab_free) takes only
    // objects of the CPU's current slab, which frees do not change: at most 64 fast frees
    // a burst. 6.18's free_to_pcs() takes an object of any slab while the main sheaf has
    // room: the sheaves serve more of the frees.
    let cpu_free = fact["cpu-slab"]["free_hits"].as_u64().unwrap();
    assert!(cpu_free <= 20 * 64, "{fact}");
    assert!(
        fact["sheaves"]["free_hits"].as_u64().unwrap() > cpu_free,
        "{fact}"
    );
}

/// On a sheaves machine every claim of the tour holds, and the comparison, which boots
/// its own two machines like this one with only the per-CPU layer chosen, measures
/// exactly what it measures on the default machine.
#[test]
fn the_tour_on_sheaves_holds_every_claim() {
    let v = tour_json(&["--slab-percpu", "sheaves"]);
    let claims = v["claims"].as_array().expect("a claims array");
    assert_eq!(claims.len(), 10, "{}", v["claims"]);
    for c in claims {
        assert_eq!(c["verdict"], "held", "{c}");
        assert_eq!(c["holds"], true, "{c}");
    }
    assert_eq!(v["all_hold"], true);
    assert_eq!(v["invariants_broken"], serde_json::json!([]));
    let fact = &v["slab_percpu"];
    assert_eq!(fact["this_machine"], "sheaves", "{fact}");
    let default = tour_json(&[]);
    for layer in ["cpu-slab", "sheaves"] {
        assert_eq!(fact[layer], default["slab_percpu"][layer], "{layer}");
    }
    let o = kmemlab(&["--slab-percpu", "sheaves", "tour", "--no-wall-clock"], "");
    let text = stdout(&o);
    assert!(o.status.success(), "{text}");
    assert!(
        text.contains("   Per-CPU layer (this machine: sheaves): 20 bursts of 200 kmalloc(64)"),
        "{text}"
    );
}

/// `examples/<name>`.
fn example(name: &str) -> String {
    format!("{}/../../examples/{name}", env!("CARGO_MANIFEST_DIR"))
}

/// Run an example script with `flags` on a sheaves machine: exit status and output.
fn run_example(name: &str, flags: &[&str], after: &[&str]) -> (Option<i32>, String) {
    let script = example(name);
    let mut args = vec!["--slab-percpu", "sheaves"];
    args.extend(flags);
    args.extend(["shell", &script]);
    args.extend(after);
    let o = kmemlab(&args, "");
    (o.status.code(), stdout(&o))
}

/// The 1-based number of the one line of `script` whose command (comment stripped) is
/// `command`.
fn line_of(script: &str, command: &str) -> usize {
    let text = std::fs::read_to_string(script).expect("the example");
    let found: Vec<usize> = text
        .lines()
        .enumerate()
        .filter(|(_, l)| l.split('#').next().unwrap_or("").trim() == command)
        .map(|(i, _)| i + 1)
        .collect();
    assert_eq!(found.len(), 1, "{command:?} in {script}: lines {found:?}");
    found[0]
}

/// The examples run below; every `examples/*.kmem` must be one of them.
const EXAMPLES: [&str; 6] = [
    "basics.kmem",
    "dma.kmem",
    "oops.kmem",
    "reclaim.kmem",
    "slab.kmem",
    "vmalloc.kmem",
];

#[test]
fn every_example_is_run_on_sheaves() {
    let dir = example("");
    let mut found: Vec<String> = std::fs::read_dir(&dir)
        .expect("examples/")
        .map(|e| {
            e.expect("an entry")
                .file_name()
                .to_string_lossy()
                .into_owned()
        })
        .filter(|n| n.ends_with(".kmem"))
        .collect();
    found.sort();
    assert_eq!(
        found, EXAMPLES,
        "add the new example to this module's tests"
    );
}

/// `examples/slab.kmem`: its back-to-back double free is caught by 6.6's free path
/// (`set_freepointer()`'s naive check, a BUG) but not by 6.18's `free_to_pcs()`, which
/// puts the object in the main sheaf a second time: on sheaves that expectation fails,
/// and the script's closing `check` finds the object twice in the sheaves; nothing else
/// differs, and without its `!` the check is the only error. Every other report of the
/// script (the `demo` cache has debug flags, so no sheaves) is as on the CPU slab.
#[test]
fn slab_example_on_sheaves_misses_only_the_naive_double_free() {
    let script = example("slab.kmem");
    let double_free = line_of(&script, "! kfree r");
    let demo_alloc = line_of(&script, "o = kmem_cache_alloc c GFP_KERNEL");
    let check = line_of(&script, "check");
    let check_error =
        format!("error: line {check}: check: invariant broken: slab cache kmalloc-512, slab pfn ");
    let twice = "object in the sheaves twice (a double free: 6.18's free_to_pcs() does not check)";
    let (code, text) = run_example("slab.kmem", &[], &[]);
    assert_eq!(code, Some(1), "{text}");
    let errors: Vec<&str> = text.lines().filter(|l| l.starts_with("error: ")).collect();
    assert_eq!(errors.len(), 2, "{text}");
    assert_eq!(
        errors[0],
        format!("error: line {double_free}: kfree r: expected to fail, but it succeeded"),
        "{text}"
    );
    assert!(
        errors[1].starts_with(&check_error) && errors[1].ends_with(twice),
        "{text}"
    );
    assert!(!text.contains("kernel BUG at mm/slub.c:"), "{text}");
    let needles = [
        "kmalloc-128 object".to_string(),
        "large kmalloc: 131072 bytes".into(),
        "BUG demo (".into(),
        "): Left Redzone overwritten".into(),
        "First byte 0x41 instead of 0xcc".into(),
        "FIX demo: Restoring Left Redzone".into(),
        "Objects remaining in demo on __kmem_cache_shutdown()".into(),
        "slabinfo - version: 2.1".into(),
        // Last: the script's own name, which the edited copy below (on standard input)
        // does not have.
        format!("slab.kmem:{demo_alloc}"),
    ];
    for needle in &needles {
        assert!(text.contains(needle.as_str()), "lacks {needle:?}:\n{text}");
    }

    // The same script with the double free expected to succeed.
    let edited: String = std::fs::read_to_string(&script)
        .unwrap()
        .lines()
        .enumerate()
        .map(|(i, l)| {
            let l = if i + 1 == double_free {
                l.replacen("! kfree r", "kfree r", 1)
            } else {
                l.to_string()
            };
            l + "\n"
        })
        .collect();
    let o = kmemlab(&["--slab-percpu", "sheaves", "shell"], &edited);
    let clean = stdout(&o);
    assert_eq!(o.status.code(), Some(1), "{clean}");
    let errors: Vec<&str> = clean.lines().filter(|l| l.starts_with("error: ")).collect();
    assert_eq!(errors.len(), 1, "{clean}");
    assert!(
        errors[0].starts_with(&check_error) && errors[0].ends_with(twice),
        "{clean}"
    );
    for needle in &needles[..needles.len() - 1] {
        assert!(
            clean.contains(needle.as_str()),
            "lacks {needle:?}:\n{clean}"
        );
    }
    // The object freed twice sits twice in the main sheaf: the next two kmalloc(300)s
    // get the same pointer, as on a 6.18 kernel.
    let twice = "r = kmalloc 300 GFP_KERNEL\nkfree r\nkfree r\na = kmalloc 300 GFP_KERNEL\n\
                 b = kmalloc 300 GFP_KERNEL\n";
    let o = kmemlab(&["--slab-percpu", "sheaves", "shell", "--json"], twice);
    let lines: Vec<Value> = stdout(&o)
        .lines()
        .map(|l| serde_json::from_str(l).expect("JSON per command"))
        .collect();
    assert_eq!(lines.len(), 5, "{}", stdout(&o));
    assert!(lines.iter().all(|l| l["failed"] == false), "{}", stdout(&o));
    assert_eq!(lines[0]["result"], lines[3]["result"]);
    assert_eq!(lines[3]["result"], lines[4]["result"]);
}

/// `examples/basics.kmem` (the page allocator only) as `cli`'s test runs it.
#[test]
fn basics_example_on_sheaves() {
    let (code, text) = run_example("basics.kmem", &[], &[]);
    assert_eq!(code, Some(0), "{text}");
    assert!(text.contains("BUG: Bad page state in process kmemlab/1"));
    assert!(text.contains("failed as expected"));
    assert!(!text.contains("error: line"));
}

/// `examples/vmalloc.kmem` as `cli`'s test runs it.
#[test]
fn vmalloc_example_on_sheaves() {
    let (code, text) = run_example("vmalloc.kmem", &[], &[]);
    assert_eq!(code, Some(0), "{text}");
    for needle in [
        "BUG: unable to handle page fault for address: ffffc90000010000",
        "unpurged vm_area",
        "kernel BUG at mm/vmalloc.c:2579!",
        "VmallocUsed:",
        "PTE  table",
    ] {
        assert!(text.contains(needle), "lacks {needle:?}:\n{text}");
    }
}

/// `examples/dma.kmem` on both profiles, as `cli`'s test runs it.
#[test]
fn dma_example_on_sheaves_on_both_profiles() {
    for profile in ["x86_64", "i386"] {
        let (code, text) = run_example("dma.kmem", &["--profile", profile], &[]);
        assert_eq!(code, Some(0), "{profile}: {text}");
        assert!(!text.contains("error: line"), "{profile}: {text}");
        for needle in [
            "simdma nic: rejecting DMA map of vmalloc memory",
            "DMA-API: simdma nic: device driver tries to free DMA memory it has not allocated",
            ": ab ab ab ab ab ab ab ab ab ab ab ab ab ab ab ab",
            ": cd cd cd cd cd cd cd cd cd cd cd cd cd cd cd cd",
            "zone DMA",
            "beyond the device's address lines",
        ] {
            assert!(
                text.contains(needle),
                "{profile}: lacks {needle:?}:\n{text}"
            );
        }
    }
}

/// `examples/reclaim.kmem` in JSON, as `cli`'s test runs it.
#[test]
fn reclaim_example_on_sheaves() {
    let (code, text) = run_example("reclaim.kmem", &[], &["--json"]);
    assert_eq!(code, Some(0), "{text}");
    crate::cli::assert_reclaim_example(&text);
}

/// `examples/oops.kmem` as `oops`'s test runs it: the oops, expected, then a clean reboot
/// (onto sheaves again: `reboot` keeps the flags).
#[test]
fn oops_example_on_sheaves() {
    let (code, out) = run_example("oops.kmem", &[], &[]);
    assert_eq!(code, Some(0), "{out}");
    crate::oops::assert_oops_example(&out);
}
