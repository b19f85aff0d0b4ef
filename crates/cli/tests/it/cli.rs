//! End-to-end tests of the `kmemlab` binary: what a user runs and what they see.

use crate::fixtures::{kmemlab, shell, stdout};

use kmemlab_cli::shell::Shell;

/// An address from JSON, where every address is a `"0x…"` string.
fn hex(v: &serde_json::Value) -> u64 {
    let text = v
        .as_str()
        .unwrap_or_else(|| panic!("{v} is not an address string"));
    let digits = text.strip_prefix("0x").expect("an address starts with 0x");
    u64::from_str_radix(digits, 16).expect("hex digits")
}

/// An address or number from JSON: a number, or a "0x…" string.
fn num(v: &serde_json::Value) -> u64 {
    match v {
        serde_json::Value::String(s) => {
            u64::from_str_radix(s.trim_start_matches("0x"), 16).unwrap_or_else(|_| panic!("{v}"))
        }
        _ => v.as_u64().unwrap_or_else(|| panic!("not a number: {v}")),
    }
}

/// `(start, end)` of each entry of a JSON array of ranges, `filter` chosen.
fn ranges(v: &serde_json::Value, filter: impl Fn(&serde_json::Value) -> bool) -> Vec<(u64, u64)> {
    v.as_array()
        .unwrap()
        .iter()
        .filter(|r| filter(r))
        .map(|r| (num(&r["start"]), num(&r["end"])))
        .collect()
}

/// Bytes of `usable` that no range of `reserved` covers.
fn uncovered(usable: &[(u64, u64)], reserved: &[(u64, u64)]) -> u64 {
    let mut reserved = reserved.to_vec();
    reserved.sort();
    usable
        .iter()
        .map(|&(start, end)| {
            let mut cursor = start;
            let mut free = 0;
            for &(rs, re) in &reserved {
                if re <= cursor || rs >= end {
                    continue;
                }
                free += rs.saturating_sub(cursor).min(end - cursor);
                cursor = cursor.max(re.min(end));
            }
            free + end.saturating_sub(cursor)
        })
        .sum()
}

/// The `kB` value of a /proc/meminfo line.
fn meminfo_kb(text: &str, label: &str) -> u64 {
    let line = text.lines().find(|l| l.starts_with(label)).unwrap();
    line[label.len()..]
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .unwrap()
}

/// Run one line; its JSON result (panics if the command failed).
fn exec(sh: &mut Shell, line: &str) -> serde_json::Value {
    let o = sh.exec_line(1, line).expect("a command");
    let j = o.json();
    assert_eq!(j["failed"], false, "{line}: {j}");
    j["result"].clone()
}

/// The physical address the MMU finds for `virt` (`walk`).
fn walked_phys(sh: &mut Shell, virt: u64) -> u64 {
    num(&exec(sh, &format!("walk {virt:#x}"))["result"]["phys"])
}

#[test]
fn tour_shows_the_contrasts() {
    let o = kmemlab(&["tour"], "");
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let text = stdout(&o);
    for needle in [
        "Node 0, zone      DMA",
        "zone DMA32",
        "zone DMA\n",
        "BUG: sleeping function called from invalid context",
        "check(): ok.",
    ] {
        assert!(text.contains(needle), "tour lacks {needle:?}:\n{text}");
    }
}

#[test]
fn tour_json_has_the_same_facts() {
    let o = kmemlab(&["tour", "--json"], "");
    assert!(o.status.success());
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).expect("one JSON object");
    assert_eq!(v["order10"]["order"], 10);
    assert_eq!(v["order10"]["pages"], 1024);
    assert_eq!(v["order10"]["zone"], "DMA32");
    assert_eq!(v["order10_dma"]["zone"], "DMA");
    assert!(hex(&v["order10_dma"]["phys"]) < 16 << 20);
    assert_eq!(v["hardirq_gfp_kernel"]["refused"], true);
    assert_eq!(v["hardirq_atomic"]["state"], "allocated");
    let total = v["check"]["total"].as_u64().unwrap();
    let parts = ["free", "pcp", "allocated", "reserved"]
        .iter()
        .map(|k| v["check"][k].as_u64().unwrap())
        .sum::<u64>();
    assert_eq!(total, parts);
    // MemTotal three ways: as the tour read it; as /proc/meminfo of the same machine
    // prints it; and as the firmware map's usable RAM that no boot reservation covers.
    let meminfo = stdout(&kmemlab(&["proc", "meminfo"], ""));
    let mem_total = meminfo_kb(&meminfo, "MemTotal:");
    assert_eq!(v["mem_total_kb"], mem_total);
    let usable = ranges(&v["memory_map"], |r| r["type"] == "usable");
    let reserved = ranges(&v["reserved"], |_| true);
    assert_eq!(uncovered(&usable, &reserved), mem_total * 1024);
    // The kmalloc section.
    let classes = v["kmalloc_classes"].as_array().unwrap();
    let class = |req: u64| {
        classes
            .iter()
            .find(|c| c["request"] == req)
            .map(|c| {
                (
                    c["cache"].as_str().unwrap().to_string(),
                    c["object"].as_u64().unwrap(),
                )
            })
            .unwrap()
    };
    assert_eq!(class(65), ("kmalloc-96".to_string(), 96));
    assert_eq!(class(129), ("kmalloc-192".to_string(), 192));
    assert_eq!(class(9000), ("(page allocator)".to_string(), 16384));
    // GFP_KERNEL_ACCOUNT: the same class of the kmalloc-cg-* family (kmalloc_type()).
    let accounted = |req: u64| {
        classes.iter().find(|c| c["request"] == req).unwrap()["accounted_cache"]
            .as_str()
            .unwrap()
            .to_string()
    };
    assert_eq!(accounted(65), "kmalloc-cg-96");
    assert_eq!(accounted(3000), "kmalloc-cg-4k");
    assert_eq!(accounted(9000), "(page allocator)");
    // The simulated MMU's walk and the kernel's page-table walk find the same page.
    let o = &v["kmalloc_object"];
    assert_eq!(
        o["pfns"]
            .as_array()
            .unwrap()
            .iter()
            .map(num)
            .collect::<Vec<_>>(),
        [num(&o["phys"]) >> 12]
    );
    assert_eq!(v["hardirq_kmalloc_atomic"]["ok"], true);
    assert_eq!(v["kmalloc_too_large"]["refused"], true);
    assert_eq!(v["double_free"]["caught"], true);
    assert!(v["double_free"]["kernel"]
        .as_array()
        .unwrap()
        .iter()
        // Tainted W by the tour's earlier kmalloc-too-large WARN, as the kernel would be.
        .any(|l| l == "BUG tour_debug (Tainted: G        W         ): Object already free"));
}

#[test]
fn tour_on_i386_uses_highmem() {
    let o = kmemlab(&["--profile", "i386", "--ram", "2G", "tour", "--json"], "");
    assert!(o.status.success());
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let zones: Vec<&str> = v["zones"]
        .as_array()
        .unwrap()
        .iter()
        .map(|z| z["name"].as_str().unwrap())
        .collect();
    assert_eq!(zones, ["DMA", "Normal", "HighMem"]);
    assert_eq!(v["order10"]["zone"], "Normal");
}

#[test]
fn shell_script_meets_expectations_and_exits_zero() {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/../../examples/basics.kmem");
    let o = kmemlab(&["shell", script], "");
    let text = stdout(&o);
    assert!(o.status.success(), "{text}");
    assert!(text.contains("BUG: Bad page state in process kmemlab/1"));
    assert!(text.contains("failed as expected"));
    assert!(!text.contains("error: line"));
}

#[test]
fn shell_reports_unexpected_results_and_fails() {
    let input = "p = alloc_pages GFP_KERNEL 2\n! __free_pages p 2\nbogus 1 2\n__free_pages p 2\n";
    let o = kmemlab(&["shell"], input);
    let text = stdout(&o);
    assert_eq!(o.status.code(), Some(1), "{text}");
    assert!(text.contains("error: line 2: __free_pages p 2: expected to fail, but it succeeded"));
    assert!(text.contains("error: line 3: bogus 1 2: unknown command 'bogus'"));
    assert!(text.contains("error: line 4: __free_pages p 2: BUG: Bad page state"));
}

#[test]
fn shell_json_is_one_object_per_command() {
    let input =
        "# comment\ncheck\np = alloc_pages GFP_DMA 0\ninfo p\n! alloc_pages GFP_KERNEL 11\ncheck\n";
    let o = kmemlab(&["shell", "--json"], input);
    assert!(o.status.success(), "{}", stdout(&o));
    let lines: Vec<serde_json::Value> = stdout(&o)
        .lines()
        .map(|l| serde_json::from_str(l).expect("JSON line"))
        .collect();
    assert_eq!(lines.len(), 5);
    let allocated_at_boot = lines[0]["result"]["allocated"].as_u64().unwrap();
    assert_eq!(lines[1]["line"], 3);
    assert!(hex(&lines[1]["result"]) > 0);
    assert_eq!(lines[2]["result"]["zone"], "DMA");
    assert_eq!(lines[2]["result"]["state"], "allocated");
    assert_eq!(lines[3]["ok"], true);
    assert_eq!(lines[3]["failed"], true);
    // 6.6 __warn(): the cut line, then the WARNING of __alloc_pages' WARN_ON_ONCE_GFP.
    assert_eq!(
        lines[3]["kernel"][0],
        "------------[ cut here ]------------"
    );
    let warning = lines[3]["kernel"][1].as_str().unwrap();
    assert!(
        warning.starts_with("WARNING: CPU: 0 PID: ")
            && warning.ends_with(" at mm/page_alloc.c:4410 __alloc_pages"),
        "{warning}"
    );
    assert_eq!(lines[4]["result"]["allocated"], allocated_at_boot + 1);
}

#[test]
fn shell_contexts_and_irq_state() {
    let input = "local_irq_disable\n! alloc_pages GFP_KERNEL 0\nalloc_pages GFP_NOWAIT 0\nlocal_irq_enable\npreempt_disable\n! alloc_pages GFP_KERNEL 0\npreempt_enable\nalloc_pages GFP_KERNEL 0\n! preempt_enable\n! cpu 9\n! ctx sideways\n";
    let o = kmemlab(&["--cpus", "2", "shell"], input);
    let text = stdout(&o);
    assert!(o.status.success(), "{text}");
    assert!(text.contains("in_atomic(): 0, irqs_disabled(): 1"));
    assert!(text.contains("in_atomic(): 1, irqs_disabled(): 0"));
}

#[test]
fn proc_files_print_and_unknown_ones_fail() {
    let o = kmemlab(&["proc", "meminfo"], "");
    assert!(o.status.success());
    assert!(stdout(&o).starts_with("MemTotal:"));
    let o = kmemlab(&["proc", "nosuchfile"], "");
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("no /proc file 'nosuchfile'"));
}

#[test]
fn bad_machine_flags_are_clear_errors() {
    for (args, needle) in [
        (
            vec!["--ram", "1M", "proc", "meminfo"],
            "RAM size 1M is outside 16M ..= 256G",
        ),
        (
            vec!["--cpus", "0", "proc", "meminfo"],
            "0 CPUs is outside 1 ..= 256",
        ),
        (
            vec!["--ram", "lots", "proc", "meminfo"],
            "'lots' is not a size",
        ),
        (
            vec!["--profile", "arm", "proc", "meminfo"],
            "unknown profile 'arm'",
        ),
        (
            vec!["--hole", "8M-4M", "proc", "meminfo"],
            "ends before it starts",
        ),
    ] {
        let o = kmemlab(&args, "");
        assert!(!o.status.success());
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(err.contains(needle), "{args:?}: {err}");
        assert!(!err.contains("panicked"), "{err}");
    }
}

#[test]
fn slab_script_shows_debug_reports() {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/../../examples/slab.kmem");
    let o = kmemlab(&["shell", script], "");
    let text = stdout(&o);
    assert!(o.status.success(), "{text}");
    for needle in [
        "kmalloc-128 object",
        "large kmalloc: 131072 bytes",
        "BUG demo (",
        "): Left Redzone overwritten",
        "First byte 0x41 instead of 0xcc",
        "FIX demo: Restoring Left Redzone",
        "Objects remaining in demo on __kmem_cache_shutdown()",
        "slab.kmem:18",
        "kernel BUG at mm/slub.c:",
        "slabinfo - version: 2.1",
    ] {
        assert!(text.contains(needle), "lacks {needle:?}:\n{text}");
    }
}

#[test]
fn ksize_and_info_in_json() {
    let input =
        "p = kmalloc 33 GFP_KERNEL\nksize p\ninfo p\nc = kmem_cache_create c1 40\nslab c1\n";
    let o = kmemlab(&["shell", "--json"], input);
    assert!(o.status.success(), "{}", stdout(&o));
    let lines: Vec<serde_json::Value> = stdout(&o)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines[1]["result"], 64);
    assert_eq!(lines[2]["result"]["cache"], "kmalloc-64");
    assert_eq!(lines[2]["result"]["state"], "allocated");
    assert_eq!(lines[2]["result"]["offset_in_object"], 0);
    assert_eq!(lines[4]["result"]["object_size"], 40);
    assert_eq!(lines[4]["result"]["objects_per_slab"], 102);
}

#[test]
fn corrupted_free_pointer_is_reported_not_a_crash() {
    // A non-debug cache: free an object, overwrite its (hardened) free pointer, allocate
    // twice: the first allocation hands out the object, the second follows the corrupted
    // pointer and takes the kernel's general protection fault (an oops: the command fails)
    // instead of the host following it.
    let input = "c = kmem_cache_create plain 64\na = kmem_cache_alloc c GFP_KERNEL\nb = kmem_cache_alloc c GFP_KERNEL\nkmem_cache_free c b\nkmem_cache_free c a\npoke a 32 0xff\npoke a 33 0xff\nx = kmem_cache_alloc c GFP_KERNEL\n! y = kmem_cache_alloc c GFP_KERNEL\nz = kmem_cache_alloc c GFP_KERNEL\n! poke 0xffff888000001000 0 1\n";
    let o = kmemlab(&["shell"], input);
    let text = stdout(&o);
    assert!(
        !String::from_utf8_lossy(&o.stderr).contains("panicked"),
        "{text}"
    );
    assert!(o.status.success(), "{text}");
    assert!(
        text.contains("general protection fault, probably for non-canonical address")
            || text.contains("BUG: unable to handle page fault for address"),
        "{text}"
    );
    assert!(text.contains("z = 0xffff888"), "{text}");
    assert!(text.contains("boot-reserved kernel memory"), "{text}");
}

#[test]
fn the_same_seed_prints_the_same_tour() {
    // Host wall-clock times are the one thing a seed cannot fix.
    let tour = |seed| stdout(&kmemlab(&["--seed", seed, "tour", "--no-wall-clock"], ""));
    let (a, b, c) = (tour("3"), tour("3"), tour("4"));
    assert_eq!(a, b);
    // The seed drives the random freelist order, so object addresses move.
    let body = |t: &str| t.lines().skip(1).collect::<Vec<_>>().join("\n");
    assert_ne!(body(&a), body(&c));
}

#[test]
fn tour_claims_all_hold_on_both_profiles() {
    for profile in ["x86_64", "i386"] {
        let o = kmemlab(&["--profile", profile, "--ram", "2G", "tour", "--json"], "");
        assert!(
            o.status.success(),
            "{profile}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        let v: serde_json::Value = serde_json::from_slice(&o.stdout).expect("one JSON object");
        for claim in [
            "vmalloc_contrast",
            "vmalloc_zones",
            "overhead",
            "vmalloc_stale_tlb",
            "vmalloc_guard_page",
        ] {
            assert_eq!(v[claim]["holds"], true, "{profile}: {claim}: {}", v[claim]);
        }
        let claims = v["claims"].as_array().expect("a claims array");
        let ids: Vec<&str> = claims.iter().map(|c| c["id"].as_str().unwrap()).collect();
        let mut sorted = ids.clone();
        sorted.sort();
        assert_eq!(
            sorted,
            ["A", "B", "C", "D", "E", "F", "G", "Q1", "Q2", "Q3"],
            "{profile}"
        );
        for c in claims {
            assert_eq!(c["verdict"], "held", "{profile}: {c}");
            assert_eq!(c["holds"], true, "{profile}: {c}");
            assert!(!c["claim"].as_str().unwrap().is_empty());
            assert!(!c["measured"].as_str().unwrap().is_empty());
        }
        assert_eq!(v["all_hold"], true);
        // Runs counted here from the PFNs the page tables gave, page by page.
        for (kind, one_run) in [("kmalloc", true), ("vmalloc", false)] {
            let side = &v["vmalloc_contrast"][kind];
            let pfns: Vec<u64> = side["pfns"].as_array().unwrap().iter().map(num).collect();
            assert_eq!(pfns.len(), 16, "{profile} {kind}");
            let runs = 1 + pfns.windows(2).filter(|w| w[1] != w[0] + 1).count() as u64;
            assert_eq!(side["phys_runs"], runs, "{profile} {kind}");
            assert_eq!(runs == 1, one_run, "{profile} {kind}: {pfns:?}");
        }
    }
}

#[test]
fn vmalloc_script_runs_and_info_json_has_the_runs() {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/../../examples/vmalloc.kmem");
    let o = kmemlab(&["shell", script], "");
    assert!(
        o.status.success(),
        "{}{}",
        stdout(&o),
        String::from_utf8_lossy(&o.stderr)
    );
    let text = stdout(&o);
    for needle in [
        "BUG: unable to handle page fault for address: ffffc90000010000",
        "unpurged vm_area",
        "kernel BUG at mm/vmalloc.c:2579!",
        "VmallocUsed:",
        "PTE  table",
    ] {
        assert!(
            text.contains(needle),
            "script output lacks {needle:?}:\n{text}"
        );
    }
    let script = "a = vmalloc 40K\ninfo a\nk = kmalloc 100 GFP_KERNEL\ninfo k\n";
    let o = kmemlab(&["shell", "--json"], script);
    assert!(o.status.success());
    let lines: Vec<serde_json::Value> = stdout(&o)
        .lines()
        .map(|l| serde_json::from_str(l).expect("JSON per command"))
        .collect();
    let area = &lines[1]["result"];
    assert_eq!(area["size"], 40 << 10);
    assert_eq!(area["pfns"].as_array().unwrap().len(), 10);
    assert!(area["phys_runs"].as_u64().unwrap() >= 1);
    assert_eq!(
        area["zones"]
            .as_object()
            .unwrap()
            .values()
            .map(|n| n.as_u64().unwrap())
            .sum::<u64>(),
        10
    );
    let object = &lines[3]["result"];
    assert!(hex(&object["virt"]) > 0);
    assert_eq!(object["pfns"].as_array().unwrap().len(), 1);
}

/// `info`'s `pfns` of a kmalloc object, a large kmalloc and a vmalloc area, against the
/// MMU's walk of each page, on both profiles.
#[test]
fn info_pfns_are_what_the_mmu_finds() {
    for profile in ["x86_64", "i386"] {
        let mut sh = shell(&["--profile", profile, "--ram", "256M"]);
        for (line, size) in [
            ("kmalloc 100 GFP_KERNEL", 100u64),
            ("kmalloc 5000 GFP_KERNEL", 5000),
            ("kmalloc 64K GFP_KERNEL", 64 << 10),
            ("vmalloc 40K", 40 << 10),
        ] {
            let p = num(&exec(&mut sh, line));
            let info = exec(&mut sh, &format!("info {p:#x}"));
            let pfns: Vec<u64> = info["pfns"].as_array().unwrap().iter().map(num).collect();
            let pages = (p + size - 1) / 4096 - p / 4096 + 1;
            assert_eq!(pfns.len() as u64, pages, "{profile} {line}: {info}");
            let walked: Vec<u64> = (0..pages)
                .map(|i| walked_phys(&mut sh, (p & !4095) + i * 4096) >> 12)
                .collect();
            assert_eq!(pfns, walked, "{profile} {line}");
            let runs = 1 + walked.windows(2).filter(|w| w[1] != w[0] + 1).count() as u64;
            assert_eq!(info["phys_runs"], runs, "{profile} {line}");
            let zoned: u64 = info["zones"].as_object().unwrap().values().map(num).sum();
            assert_eq!(zoned, pages, "{profile} {line}");
        }
    }
}

/// kmalloc memory is in the direct map: bytes written through the MMU at two objects are
/// where the page walk says, read back by a device at those physical addresses, and
/// the two objects' virtual minus physical addresses are one and the same offset.
#[test]
fn kmalloc_bytes_are_where_the_walk_says() {
    for profile in ["x86_64", "i386"] {
        let mut sh = shell(&["--profile", profile, "--ram", "256M"]);
        exec(&mut sh, "dev probe mask=64");
        let mut offsets = Vec::new();
        for (line, bytes) in [
            ("kmalloc 3000 GFP_KERNEL", "0x5a6b7c8d"),
            ("kmalloc 64K GFP_KERNEL", "0x01020304"),
        ] {
            let p = num(&exec(&mut sh, line));
            exec(&mut sh, &format!("write {p:#x} 16 {bytes}"));
            let phys = walked_phys(&mut sh, p + 16);
            let seen = exec(&mut sh, &format!("dma probe from {phys:#x} 4"));
            let head: Vec<u64> = seen["head"].as_array().unwrap().iter().map(num).collect();
            let expected: Vec<u64> = (2..10)
                .step_by(2)
                .map(|i| u64::from_str_radix(&bytes[i..i + 2], 16).unwrap())
                .collect();
            assert_eq!(head, expected, "{profile} {line}");
            offsets.push((p + 16).wrapping_sub(phys));
        }
        assert_eq!(offsets[0], offsets[1], "{profile}");
    }
}

#[test]
fn dma_script_runs_on_both_profiles() {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/../../examples/dma.kmem");
    for profile in ["x86_64", "i386"] {
        let o = kmemlab(&["--profile", profile, "shell", script], "");
        let text = stdout(&o);
        assert!(o.status.success(), "{profile}: {text}");
        assert!(!text.contains("error: line"), "{profile}: {text}");
        assert!(text.contains("simdma nic: rejecting DMA map of vmalloc memory"));
        assert!(text.contains(
            "DMA-API: simdma nic: device driver tries to free DMA memory it has not allocated"
        ));
        // What the device wrote, the CPU reads: through the direct map, then through the
        // vmalloc mapping of a scatterlist.
        assert!(text.contains(": ab ab ab ab ab ab ab ab ab ab ab ab ab ab ab ab"));
        assert!(text.contains(": cd cd cd cd cd cd cd cd cd cd cd cd cd cd cd cd"));
        assert!(text.contains("zone DMA"));
        assert!(text.contains("beyond the device's address lines"));
    }
}

#[test]
fn dma_commands_refuse_bad_input_clearly() {
    let input = "dma_map_single nope 0 4096 DMA_TO_DEVICE\ndev nic mask=abc\ndev nic mask=32\n\
                 dma_map_single nic 0 4096 SIDEWAYS\ndma_unmap_sg 0x1234\ndma nic sideways 0 16\n";
    let o = kmemlab(&["shell"], input);
    let text = stdout(&o);
    assert_eq!(o.status.code(), Some(1), "{text}");
    assert!(text.contains("no device 'nope' (create it with: dev nope mask=32)"));
    assert!(text.contains("'mask=abc' is not mask=<bits>"));
    assert!(text.contains("'SIDEWAYS' is not a DMA direction"));
    assert!(text.contains("0x1234 is not a scatterlist from dma_map_sg"));
    assert!(text.contains("usage: dma <dev> to|from"));
}

#[test]
fn reclaim_script_fragments_reclaims_and_falls_back() {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/../../examples/reclaim.kmem");
    let o = kmemlab(&["shell", script, "--json"], "");
    let text = stdout(&o);
    assert!(o.status.success(), "{text}");
    assert_reclaim_example(&text);
}

/// What `examples/reclaim.kmem` run with `--json` (its output `text`) must show, whatever
/// the machine's flags: the page cache filled under pressure, kswapd's reclaim, fragmented
/// zones and kvmalloc's vmalloc fallback.
pub(crate) fn assert_reclaim_example(text: &str) {
    let results: Vec<serde_json::Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).expect("one JSON object per command"))
        .collect();
    let by_command = |c: &str| {
        results
            .iter()
            .find(|r| r["command"].as_str() == Some(c))
            .unwrap_or_else(|| panic!("no {c}"))
    };
    let fill = &by_command("pagecache fill 2G")["result"];
    assert!(fill["added"].as_u64().unwrap() > 0);
    assert!(fill["added"].as_u64().unwrap() < fill["requested"].as_u64().unwrap());
    let vmstat = by_command("cat /proc/vmstat")["message"].to_string();
    assert!(vmstat.contains("pgsteal_kswapd"), "{vmstat}");
    let fragments: Vec<&serde_json::Value> = results
        .iter()
        .filter(|r| {
            r["command"]
                .as_str()
                .is_some_and(|c| c.starts_with("fragment "))
        })
        .collect();
    assert!(!fragments.is_empty());
    for r in fragments {
        assert!(
            r["result"]["largest_free_order_after"].as_u64().unwrap() < 10,
            "{r}"
        );
    }
    let k = by_command("kvmalloc 4M")["message"].to_string();
    assert!(k.contains("vmalloc fallback"), "{k}");
    let failed_kmalloc = by_command("kmalloc 4M GFP_KERNEL");
    assert_eq!(failed_kmalloc["failed"], true);
    assert_eq!(failed_kmalloc["ok"], true);
}

#[test]
fn swiotlb_flags_make_an_isa_device_bounce() {
    let input = "dev isa mask=24\nb = kmalloc 4096 GFP_KERNEL\n\
                 d = dma_map_single isa b 4096 DMA_FROM_DEVICE\ndma isa to d 4096 0x77\n\
                 read b 0 4\ndma_unmap_single isa d 4096 DMA_FROM_DEVICE\nread b 0 4\nkfree b\n";
    let o = kmemlab(
        &["--swiotlb", "1024", "--swiotlb-below", "16M", "shell"],
        input,
    );
    let text = stdout(&o);
    assert!(o.status.success(), "{text}");
    assert!(text.contains("bounced through swiotlb"), "{text}");
    // The device wrote the bounce buffer; the data reaches the buffer at unmap.
    let reads: Vec<&str> = text.lines().filter(|l| l.starts_with("0xffff")).collect();
    assert!(!reads[0].ends_with(": 77 77 77 77"), "{text}");
    assert!(reads[1].ends_with(": 77 77 77 77"), "{text}");
    let bad = kmemlab(&["--swiotlb", "sometimes", "proc", "meminfo"], "");
    assert!(!bad.status.success());
    assert!(
        String::from_utf8_lossy(&bad.stderr).contains("is not force, noforce or a number of slots")
    );
}

#[test]
fn tour_on_a_small_machine_says_what_it_measured() {
    let o = kmemlab(&["--ram", "128M", "--cpus", "1", "tour", "--json"], "");
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).expect("one JSON object");
    let g = v["claims"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["id"] == "G")
        .expect("claim G");
    assert_eq!(g["holds"], true, "{g}");
    // 64 MiB would not fit: the claim names the size it measured instead.
    assert!(g["claim"].as_str().unwrap().contains("not 64M"), "{g}");
    assert!(v["size_fragmented"]["vmalloc_bytes"].as_u64().unwrap() < 64 << 20);
    assert_eq!(v["kswapd_failures_after_irq"], 16);
}

/// `info` only looks: of a plain page (its `struct page *` or its direct-map address), a
/// vmalloc address, a kmalloc object or a large kmalloc block, it never WARNs or taints.
#[test]
fn info_never_warns_or_taints() {
    let script = "p = alloc_pages GFP_KERNEL 0
info p
a = page_address p
info a
q = alloc_pages GFP_KERNEL 2
b = page_address q
info b
v = vmalloc 65536
info v
k = kmalloc 64 GFP_KERNEL
info k
l = kmalloc 20000 GFP_KERNEL
info l
cat /proc/sys/kernel/tainted
";
    let o = kmemlab(&["--ram", "64M", "shell"], script);
    let out = stdout(&o);
    assert!(o.status.success(), "{out}");
    assert!(!out.contains("WARNING"), "{out}");
    assert!(out.contains("large kmalloc"), "{out}");
    let mut sh = shell(&["--ram=64M"]);
    for line in script.lines().filter(|l| !l.starts_with("cat")) {
        let o = sh.exec_line(1, line).expect("a command");
        let j = o.json();
        assert_eq!(j["failed"], false, "{line}: {j}");
        assert_eq!(j["kernel"], serde_json::json!([]), "{line}: {j}");
        assert_eq!(sh.machine.tainted().to_string(), "Not tainted", "{line}");
    }
}

/// A red zone overwritten on an object that was never freed: the report prints the
/// allocation's owner and no free record (6.6 `print_track()` skips a track whose `addr`
/// is 0; a never-written free track must not read as the first interned call site).
#[test]
fn a_never_freed_object_has_no_free_track_in_the_report() {
    let script = "a = kmalloc 40 GFP_KERNEL\npoke a 40 1\nkfree a\n";
    let o = kmemlab(&["--ram", "64M", "--slab-debug=FZU", "shell"], script);
    let out = stdout(&o);
    assert!(out.contains("Redzone overwritten"), "{out}");
    assert!(out.contains("Allocated in <stdin>:1"), "{out}");
    assert!(!out.contains("Freed in"), "{out}");
}

/// docs/SHELL.md's list of every command is what `help` prints, line for line (a command
/// added to a table, or a usage line changed, without the list following fails here).
#[test]
fn shell_md_lists_every_command_as_help_prints_it() {
    let doc = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/SHELL.md"))
        .expect("docs/SHELL.md");
    let start = doc
        .find("commands (arguments in the kernel's order")
        .expect("SHELL.md lists the commands");
    let (list, _) = doc[start..].split_once("```").expect("the list's fence");
    let o = kmemlab(&["--ram", "16M", "shell"], "help\n");
    assert_eq!(list, stdout(&o));
    for name in [
        "kmem_cache_alloc_bulk",
        "kmem_cache_free_bulk",
        "kfree_bulk",
        "alloc_pages_bulk",
    ] {
        assert!(list.contains(&format!("\n  {name} ")), "{name}");
    }
}

/// docs/SHELL.md's list of the machine flags "for every subcommand" names every flag
/// `kmemlab proc --help` has (proc takes machine flags only).
#[test]
fn shell_md_lists_every_machine_flag() {
    let doc = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/SHELL.md"))
        .expect("docs/SHELL.md");
    let (_, after) = doc
        .split_once("# machine flags, for every subcommand:\n")
        .expect("SHELL.md lists the machine flags");
    let (list, _) = after.split_once("```").expect("the list's fence");
    let named: Vec<&str> = list
        .split(|c: char| c.is_whitespace() || c == '[' || c == '=')
        .filter(|w| w.starts_with("--"))
        .collect();
    let o = kmemlab(&["proc", "--help"], "");
    let help = stdout(&o);
    let flags: Vec<&str> = help
        .lines()
        .filter_map(|l| l.split_whitespace().find(|w| w.starts_with("--")))
        .map(|w| w.trim_end_matches(|c: char| !c.is_ascii_alphanumeric()))
        .map(|w| w.split('[').next().unwrap_or(w))
        .filter(|w| *w != "--help")
        .collect();
    assert!(flags.len() >= 19, "{help}");
    for flag in flags {
        assert!(named.contains(&flag), "SHELL.md does not name {flag}");
    }
}

/// The free track of a bulk free names its caller, the script line, as the kernel's names
/// `_RET_IP_` (6.6 `kmem_cache_free_bulk()` hands it to `slab_free()`), for both bulk
/// frees: a second free of one of their objects prints it.
#[test]
fn a_bulk_free_records_the_script_line_as_its_free_track() {
    let script = "c = kmem_cache_create bulkt 64\n\
                  a = kmem_cache_alloc_bulk c GFP_KERNEL 2\n\
                  kmem_cache_free_bulk c $a\n\
                  kmem_cache_free c $a0\n\
                  b = kmem_cache_alloc_bulk kmalloc-64 GFP_KERNEL 2\n\
                  kfree_bulk $b\n\
                  kfree $b1\n";
    let o = kmemlab(&["--ram", "64M", "--slab-debug=FZU", "shell"], script);
    let out = stdout(&o);
    assert_eq!(out.matches("Object already free").count(), 4, "{out}");
    for (alloc, free) in [(2, 3), (5, 6)] {
        assert!(
            out.contains(&format!("Allocated in <stdin>:{alloc} ")),
            "{out}"
        );
        assert!(out.contains(&format!("Freed in <stdin>:{free} ")), "{out}");
    }
}
