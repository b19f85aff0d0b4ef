//! Host safety end to end: every input bounded before the host spends memory on it, every
//! failed write to standard output reported, and addresses in JSON as exact strings. Each
//! test fails on the code before these bounds (a panic, an allocation sized by the
//! input, a silent exit 0, a wrong name, an integer JSON cannot hold).

use std::path::PathBuf;
use std::process::Output;

use crate::fixtures::{kmemlab, run, stderr, stdout};

/// A file in a fresh directory of the test's own.
fn temp_file(test: &str, name: &str, bytes: &[u8]) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("kmemlab-bounds-{}-{test}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let path = dir.join(name);
    std::fs::write(&path, bytes).expect("write the file");
    path
}

fn assert_no_panic(o: &Output) {
    let e = stderr(o);
    assert!(
        !e.contains("panicked") && !e.contains("memory allocation"),
        "{e}"
    );
    assert!(
        o.status.code().is_some(),
        "killed by a signal: {:?}",
        o.status
    );
}

#[test]
fn vmap_counts_are_checked_before_the_page_array_is_built() {
    let o = kmemlab(
        &["shell"],
        "p = alloc_pages GFP_KERNEL 0\n\
         ! vmap p 0xffffffffffffffff\n\
         ! vmap p 100000000\n\
         ! vmap p 0\n\
         v = vmap p 1\n\
         vunmap v\n",
    );
    assert_no_panic(&o);
    let text = stdout(&o);
    assert!(o.status.success(), "{text}{}", stderr(&o));
    assert_eq!(
        text.matches("failed as expected: vmap: count").count(),
        3,
        "{text}"
    );
    assert!(text.contains("is outside 1 ..= totalram_pages"), "{text}");
}

#[test]
fn dma_lengths_are_bounded_by_the_machine_and_the_device() {
    let o = kmemlab(
        &["shell"],
        "dev nic mask=64\n\
         dev isa mask=24\n\
         b = kmalloc 4096 GFP_KERNEL\n\
         d = dma_map_single nic b 4096 DMA_FROM_DEVICE\n\
         ! dma nic to d 512M\n\
         ! dma nic from d 512M\n\
         ! dma nic to d 60G\n\
         ! dma isa to 0x100000 32M\n\
         dma nic to d 4096 0x5a\n\
         dma_unmap_single nic d 4096 DMA_FROM_DEVICE\n",
    );
    assert_no_panic(&o);
    let text = stdout(&o);
    assert!(o.status.success(), "{text}{}", stderr(&o));
    assert_eq!(
        text.matches("more than kmemlab moves in one dma command (64 MiB)")
            .count(),
        2,
        "{text}"
    );
    assert!(
        text.contains("larger than the machine's RAM"),
        "60G on a 1G machine: {text}"
    );
    assert!(
        text.contains("more than 24 address bits can reach (16777216 bytes)"),
        "{text}"
    );
    assert!(
        text.contains("0x1000  (bytes written by the device)"),
        "{text}"
    );
}

#[test]
fn holes_are_validated_with_clear_errors() {
    for (args, needle) in [
        (
            vec!["--hole", "1G-2G", "--hole", "1500M-3G", "proc", "meminfo"],
            "holes 1G-2G and 1500M-3G overlap",
        ),
        (
            vec!["--hole", "3G-3500M", "--pci-hole", "proc", "meminfo"],
            "holes 3G-3500M and 3G-4G overlap",
        ),
        (
            vec!["--hole", "0-2T", "--ram", "32G", "proc", "meminfo"],
            "hole 0-2T ends above 512G, the highest physical address kmemlab simulates",
        ),
        (
            vec!["--hole", "100M-100M", "proc", "meminfo"],
            "hole '100M-100M' is empty",
        ),
    ] {
        let o = kmemlab(&args, "");
        assert_no_panic(&o);
        assert_eq!(o.status.code(), Some(2), "{args:?}");
        assert!(stderr(&o).contains(needle), "{args:?}: {}", stderr(&o));
    }
    // Holes that do not overlap still boot.
    let o = kmemlab(
        &[
            "--hole",
            "256M-260M",
            "--hole",
            "260M-300M",
            "proc",
            "meminfo",
        ],
        "",
    );
    assert!(o.status.success(), "{}", stderr(&o));
}

#[test]
fn long_and_binary_script_lines_stop_with_their_line_number() {
    let mut long = b"help kmalloc\n".to_vec();
    long.extend(std::iter::repeat_n(b'a', 100 << 10));
    long.extend_from_slice(b"\nhelp\n");
    let path = temp_file("long", "long.kmem", &long);
    let o = kmemlab(&["shell", path.to_str().unwrap()], "");
    assert_no_panic(&o);
    assert_eq!(o.status.code(), Some(2), "{}", stdout(&o));
    assert!(
        stderr(&o).contains("long.kmem: line 2: the line is longer than 64 KiB"),
        "{}",
        stderr(&o)
    );
    assert!(
        stdout(&o).contains("kmalloc <size> <gfp>"),
        "line 1 ran first"
    );
    // The same from standard input.
    let o = run(&["shell"], &long, false);
    assert_eq!(o.status.code(), Some(2));
    assert!(
        stderr(&o).contains("<stdin>: line 2: the line is longer than 64 KiB"),
        "{}",
        stderr(&o)
    );
    // A line that is not UTF-8, in a file and on standard input.
    let bad = b"help kmalloc\n\xff\xfe bad\nhelp\n";
    let path = temp_file("binary", "bad.kmem", bad);
    let o = kmemlab(&["shell", path.to_str().unwrap()], "");
    assert_eq!(o.status.code(), Some(2));
    assert!(
        stderr(&o).contains("bad.kmem: line 2: the line is not UTF-8 text (byte 0xff at column 1)"),
        "{}",
        stderr(&o)
    );
    let o = run(&["shell"], bad, false);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("<stdin>: line 2: the line is not UTF-8"));
    // A line of exactly 64 KiB, CRLF-terminated, is fine.
    let mut exact = b"help kfree\r\n".to_vec();
    exact.extend(std::iter::repeat_n(b' ', 64 << 10));
    exact.extend_from_slice(b"\r\n# done");
    let path = temp_file("exact", "exact.kmem", &exact);
    let o = kmemlab(&["shell", path.to_str().unwrap()], "");
    assert!(o.status.success(), "{}", stderr(&o));
}

#[test]
fn replay_reports_an_endless_line_and_escapes_garbage() {
    // 2 MiB without a newline: lenient mode skips at most 1 MiB of one line.
    let zeros = temp_file("zeros", "zeros.trace", &vec![0u8; 2 << 20]);
    let o = kmemlab(&["replay", "--lenient", zeros.to_str().unwrap()], "");
    assert_no_panic(&o);
    assert_eq!(o.status.code(), Some(2), "{}", stdout(&o));
    assert!(
        stderr(&o).contains("zeros.trace: line 1: the line is longer than 1 MiB: not a text trace"),
        "{}",
        stderr(&o)
    );
    let o = kmemlab(&["replay", zeros.to_str().unwrap()], "");
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("line 1: the line is longer than 64 KiB"));
    assert!(stderr(&o).len() < 1000, "the zeros are cut: {}", stderr(&o));
    // Terminal escapes and bytes that are not UTF-8 are shown escaped.
    let garbage = temp_file(
        "garbage",
        "garbage.trace",
        b"init-1 [000] .N.. 0.17: kmalloc: call_site=c1 \xff\x1b[31m ptr=\n",
    );
    let o = kmemlab(&["replay", garbage.to_str().unwrap()], "");
    assert_eq!(o.status.code(), Some(2));
    assert!(
        stderr(&o).contains("call_site=c1 \\xff\\x1b[31m ptr="),
        "{}",
        stderr(&o)
    );
    assert!(!o.stderr.iter().any(|&b| b == 0x1b || b == 0xff));
    let o = kmemlab(&["replay", "--lenient", garbage.to_str().unwrap()], "");
    assert!(o.status.success());
    assert!(stdout(&o).contains("\\xff\\x1b[31m"), "{}", stdout(&o));
    assert!(!o.stdout.iter().any(|&b| b == 0x1b || b == 0xff));
}

#[test]
fn replay_refuses_absurd_sizes_and_sums_without_wrapping() {
    let line = |ptr: &str, req: &str| {
        format!("  init-1 [000] .N.. 0.17: kmalloc: call_site=c104de4f ptr={ptr} bytes_req={req} bytes_alloc=32 gfp_flags=GFP_KERNEL\n")
    };
    let wrapped = line("c143de20", "18446744073709551615") + &line("c143de40", "29");
    let path = temp_file("wrapped", "wrapped.trace", wrapped.as_bytes());
    let o = kmemlab(&["replay", path.to_str().unwrap()], "");
    assert_no_panic(&o);
    assert_eq!(o.status.code(), Some(2));
    assert!(
        stderr(&o).contains("line 1: a size is larger than any allocation can be (2^57 bytes)"),
        "{}",
        stderr(&o)
    );
    let o = kmemlab(&["replay", "--lenient", path.to_str().unwrap()], "");
    assert!(o.status.success(), "{}", stderr(&o));
    let text = stdout(&o);
    assert!(text.contains("1 malformed lines skipped"), "{text}");
    assert!(text.contains("Total bytes requested: 29\n"), "{text}");
    // Failed kmallocs of 2^57 bytes are real events: 128 of them sum past u64 exactly.
    let huge: String = (0..128)
        .map(|_| line("(null)", "144115188075855872"))
        .collect();
    let path = temp_file("huge", "huge.trace", huge.as_bytes());
    let o = kmemlab(&["replay", "--json", path.to_str().unwrap()], "");
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(
        stdout(&o).contains("\"total_requested\": 18446744073709551616"),
        "2^64 exactly: {}",
        stdout(&o)
    );
}

#[test]
fn a_full_disk_is_an_error_with_status_2() {
    let trace = temp_file(
        "full",
        "one.trace",
        b"init-1 [000] .N.. 0.17: kmalloc: call_site=c1 ptr=c2 bytes_req=29 bytes_alloc=32 gfp_flags=GFP_KERNEL\n",
    );
    let trace = trace.to_str().unwrap();
    for args in [
        vec!["proc", "meminfo"],
        vec!["--ram", "64M", "tour", "--no-wall-clock"],
        vec!["--ram", "64M", "tour", "--json", "--no-wall-clock"],
        vec!["replay", trace],
        vec!["replay", "--json", trace],
        vec!["replay", "--compare", "--cpus 2", trace],
        vec!["shell"],
        vec!["shell", "--json"],
        vec!["--help"],
    ] {
        let o = run(&args, b"help\ncheck\n", true);
        assert_no_panic(&o);
        assert_eq!(o.status.code(), Some(2), "{args:?}: {}", stderr(&o));
        assert_eq!(
            stderr(&o),
            "kmemlab: writing the output: No space left on device\n",
            "{args:?}"
        );
    }
}

#[test]
fn a_bare_slab_debug_keeps_the_subcommand() {
    let script = temp_file("slab_debug", "x.kmem", b"slab kmalloc-64\n");
    let script = script.to_str().unwrap();
    let o = kmemlab(&["--slab-debug", "shell", script], "");
    assert!(o.status.success(), "{}", stderr(&o));
    // All four letters: sanity checks, red zones, poisoning, owner tracking.
    let text = stdout(&o);
    for flag in ["CONSISTENCY_CHECKS", "RED_ZONE", "POISON", "STORE_USER"] {
        assert!(
            text.contains(flag),
            "--slab-debug alone lacks {flag}: {text}"
        );
    }
    let o = kmemlab(&["--slab-debug=Z", "shell", script], "");
    assert!(o.status.success(), "{}", stderr(&o));
    let text = stdout(&o);
    assert!(
        text.contains("RED_ZONE") && !text.contains("POISON"),
        "{text}"
    );
    let o = kmemlab(&["shell", script, "--slab-debug=Q"], "");
    assert_eq!(o.status.code(), Some(2));
    assert!(
        stderr(&o).contains("'Q' is not slab_debug letters"),
        "{}",
        stderr(&o)
    );
    let o = kmemlab(&["--help"], "");
    assert!(
        stdout(&o).contains("--slab-debug[=<LETTERS>]"),
        "{}",
        stdout(&o)
    );
}

#[test]
fn cache_commands_name_themselves_in_errors() {
    let o = kmemlab(
        &["shell"],
        "! kmem_cache_destroy kmalloc-64\n! kmem_cache_alloc kmem_cache GFP_KERNEL\n",
    );
    let text = stdout(&o);
    assert!(o.status.success(), "{text}");
    assert!(
        text.contains("failed as expected: kmem_cache_destroy: the kmalloc and boot caches are never destroyed"),
        "{text}"
    );
    assert!(
        text.contains("failed as expected: kmem_cache_alloc: "),
        "{text}"
    );
    assert!(!text.contains("kmem_cache_create"), "{text}");
}

#[test]
fn proc_help_lists_every_file() {
    let o = kmemlab(&["proc", "--help"], "");
    assert!(o.status.success());
    let text = stdout(&o);
    for file in kmemlab_mm::procfs::FILES {
        assert!(text.contains(file), "proc --help lacks {file}: {text}");
    }
}

/// Every integer in a JSON document, with its path, above 2^53 (which JavaScript and jq
/// would round).
fn unsafe_integers(v: &serde_json::Value, path: &str, found: &mut Vec<String>) {
    match v {
        serde_json::Value::Object(map) => {
            for (k, x) in map {
                unsafe_integers(x, &format!("{path}.{k}"), found);
            }
        }
        serde_json::Value::Array(items) => {
            for (i, x) in items.iter().enumerate() {
                unsafe_integers(x, &format!("{path}[{i}]"), found);
            }
        }
        serde_json::Value::Number(n) if n.as_u64().is_some_and(|n| n > 1 << 53) => {
            found.push(format!("{path} = {n}"))
        }
        _ => {}
    }
}

fn is_hex(v: &serde_json::Value) -> bool {
    v.as_str()
        .and_then(|s| s.strip_prefix("0x"))
        .is_some_and(|d| u64::from_str_radix(d, 16).is_ok())
}

#[test]
fn json_addresses_are_hex_strings() {
    let script = "p = alloc_pages GFP_KERNEL 0\n\
                  a = page_address p\n\
                  info p\n\
                  k = kmalloc 100 GFP_KERNEL\n\
                  info k\n\
                  v = vmalloc 16K\n\
                  info v\n\
                  walk v\n\
                  read v 0 16\n\
                  c = kmem_cache_create foo 48\n\
                  o = kmem_cache_alloc c GFP_KERNEL\n\
                  dev nic mask=64\n\
                  d = dma_map_single nic k 100 DMA_TO_DEVICE\n\
                  page_to_pfn p\n\
                  ksize k\n";
    let o = kmemlab(&["shell", "--json"], script);
    assert!(o.status.success(), "{}", stdout(&o));
    let lines: Vec<serde_json::Value> = stdout(&o)
        .lines()
        .map(|l| serde_json::from_str(l).expect("JSON line"))
        .collect();
    let mut found = Vec::new();
    for (i, l) in lines.iter().enumerate() {
        unsafe_integers(l, &format!("line {}", i + 1), &mut found);
    }
    assert!(found.is_empty(), "{found:?}");
    let result = |n: usize| &lines[n - 1]["result"];
    for n in [1, 2, 4, 6, 10, 11, 13] {
        assert!(is_hex(result(n)), "line {n}: {}", result(n));
    }
    for key in ["struct_page", "phys", "virt"] {
        assert!(is_hex(&result(3)[key]), "info p: {key}");
    }
    for key in ["object", "slab_page", "phys", "virt"] {
        assert!(is_hex(&result(5)[key]), "info k: {key}");
    }
    for key in ["virt", "end", "guard"] {
        assert!(is_hex(&result(7)[key]), "info v: {key}");
    }
    assert!(is_hex(&result(8)["virt"]) && is_hex(&result(8)["steps"][0]["table"]));
    assert!(is_hex(&result(8)["steps"][0]["entry"]));
    assert!(is_hex(&result(8)["result"]["phys"]));
    assert!(is_hex(&result(9)["virt"]));
    assert!(is_hex(&result(12)["dma_mask"]));
    // Counts, sizes and PFNs stay numbers.
    assert!(result(14).is_u64() && result(15) == 128);
    assert!(result(3)["pfn"].is_u64() && result(7)["size"].is_u64());
    // The tour and the replay, whole.
    let o = kmemlab(&["--ram", "64M", "tour", "--json", "--no-wall-clock"], "");
    let tour: serde_json::Value = serde_json::from_slice(&o.stdout).expect("tour JSON");
    let mut found = Vec::new();
    unsafe_integers(&tour, "tour", &mut found);
    assert!(found.is_empty(), "{found:?}");
    assert!(is_hex(&tour["kmalloc_object"]["virt"]) && is_hex(&tour["mem_map_phys"]));
    assert!(is_hex(&tour["machine"]["holes"][0]["start"]));
    assert!(is_hex(&tour["dma"]["naive"][0]["vaddr"]));
    assert!(is_hex(&tour["dma_sg_vmalloc"]["segments"][0][0]));
    assert!(tour["dma_sg_vmalloc"]["segments"][0][1].is_u64());
    let trace = temp_file(
        "json",
        "one.trace",
        b"init-1 [000] .N.. 0.17: kmalloc: call_site=ffffffff8113b5e8 ptr=ffff88003e8c6000 bytes_req=29 bytes_alloc=32 gfp_flags=GFP_KERNEL\n",
    );
    let o = kmemlab(
        &["--pci-hole", "replay", "--json", trace.to_str().unwrap()],
        "",
    );
    let report: serde_json::Value = serde_json::from_slice(&o.stdout).expect("replay JSON");
    let mut found = Vec::new();
    unsafe_integers(&report, "replay", &mut found);
    assert!(found.is_empty(), "{found:?}");
    assert_eq!(report["machine"]["holes"][1]["start"], "0xc0000000");
    assert_eq!(report["callsites"][0]["name"], "0xffffffff8113b5e8");
}
