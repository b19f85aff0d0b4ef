//! `kmem` (crash's `cmd_kmem`, drgn's slab helpers) and the interactive shell's pieces
//! (issue 14, items 3 and 7): every form checked against what another part of the machine
//! says (`info`, `/proc` files, the MMU's walk), bad input, one corrupted slab, the
//! completer, `help CMD` and `$name`.

use crate::fixtures::{outcome, shell};
use kmemlab_cli::line_editor::{complete, CompletionNames};
use kmemlab_cli::shell::Shell;
use serde_json::Value;

/// Run one line; its JSON result (panics if the command failed or oopsed).
fn exec(sh: &mut Shell, line: &str) -> Value {
    let j = outcome(sh, line).json();
    assert_eq!(j["failed"], false, "{line}: {j}");
    assert_eq!(j["oops"], false, "{line}: {j}");
    j["result"].clone()
}

/// Run one line; its text for people.
fn text(sh: &mut Shell, line: &str) -> String {
    let o = outcome(sh, line);
    let mut out = Vec::new();
    o.print_text(&mut out).expect("print");
    String::from_utf8(out).expect("utf-8")
}

/// Run one line that must fail; its error message.
fn error(sh: &mut Shell, line: &str) -> String {
    let j = outcome(sh, line).json();
    assert_eq!(j["failed"], true, "{line} should fail: {j}");
    j["message"].as_str().unwrap_or_default().to_string()
}

fn hex(v: &Value) -> u64 {
    let s = v.as_str().unwrap_or_else(|| panic!("not an address: {v}"));
    u64::from_str_radix(s.trim_start_matches("0x"), 16).expect("hex")
}

fn num(v: &Value) -> u64 {
    v.as_u64().unwrap_or_else(|| panic!("not a number: {v}"))
}

fn cat(sh: &mut Shell, file: &str) -> String {
    text(sh, &format!("cat {file}"))
}

fn meminfo_pages(sh: &mut Shell, label: &str) -> u64 {
    let m = cat(sh, "/proc/meminfo");
    let line = m
        .lines()
        .find(|l| l.starts_with(&format!("{label}:")))
        .unwrap_or_else(|| panic!("no {label} in\n{m}"));
    let kb: u64 = line.split_whitespace().nth(1).unwrap().parse().unwrap();
    kb / 4
}

#[test]
fn kmem_of_a_kmalloc_pointer_names_the_cache_and_index_info_gives_and_sees_the_free() {
    let mut sh = shell(&[]);
    let a = hex(&exec(&mut sh, "a = kmalloc 100 GFP_KERNEL"));
    exec(&mut sh, "b = kmalloc 100 GFP_KERNEL");
    let info = exec(&mut sh, "info a");
    let k = exec(&mut sh, &format!("kmem {a:#x}"));
    assert_eq!(k["kind"], "slab object");
    assert_eq!(k["name"], info["cache"]);
    assert_eq!(k["index"], info["index"]);
    assert_eq!(hex(&k["object"]), a);
    assert_eq!(k["state"], "allocated");
    assert_eq!(k["free"], false);
    // An address inside the object names the same object.
    let inside = exec(&mut sh, &format!("kmem {:#x}", a + 10));
    assert_eq!(inside["index"], info["index"]);
    assert_eq!(num(&inside["offset_in_object"]), 10);
    // The slab row counts the object as allocated; after kfree it is free.
    let allocated_before = num(&k["slab"]["allocated"]);
    exec(&mut sh, "kfree $a");
    let freed = exec(&mut sh, "kmem $a");
    assert_eq!(freed["free"], true, "{freed}");
    assert_eq!(num(&freed["slab"]["allocated"]), allocated_before - 1);
    assert!(
        text(&mut sh, "kmem a").contains(&format!("   {a:x}")),
        "free objects print without brackets"
    );
    assert!(
        text(&mut sh, "kmem b").contains("  ["),
        "allocated objects print in brackets"
    );
}

#[test]
fn kmem_shows_the_owner_track_when_the_cache_records_one() {
    let mut sh = shell(&["--slab-debug=U"]);
    let o = sh.exec_line(7, "a = kmalloc 40 GFP_KERNEL").unwrap();
    assert!(!o.failed());
    let k = exec(&mut sh, "kmem a");
    let site = k["alloc_track"]["site"].as_str().expect("a track");
    assert!(
        site.ends_with(":7"),
        "the call site is the script line: {site}"
    );
    assert!(text(&mut sh, "kmem a").contains("Allocated in <stdin>:7 age="));
    assert!(k["free_track"].is_null(), "never freed: no free track");
    let o = sh.exec_line(9, "kfree a").unwrap();
    assert!(!o.failed());
    let freed = exec(&mut sh, "kmem a");
    assert!(
        freed["free_track"]["site"]
            .as_str()
            .unwrap()
            .ends_with(":9"),
        "{freed}"
    );
}

#[test]
fn kmem_s_counts_agree_with_slabinfo_and_follow_allocations() {
    let mut sh = shell(&[]);
    let before = exec(&mut sh, "kmem -s kmalloc-256");
    let row = &before["caches"][0];
    exec(&mut sh, "x = kmalloc 200 GFP_KERNEL");
    let after = &exec(&mut sh, "kmem -s kmalloc-256")["caches"][0];
    assert_eq!(num(&after["allocated"]), num(&row["allocated"]) + 1);
    // TOTAL and SLABS are /proc/slabinfo's num_objs and num_slabs, for every cache.
    let all = exec(&mut sh, "kmem -s");
    let slabinfo = cat(&mut sh, "/proc/slabinfo");
    let caches = all["caches"].as_array().unwrap();
    assert!(caches.len() > 10);
    for c in caches {
        let name = c["name"].as_str().unwrap();
        let line = slabinfo
            .lines()
            .find(|l| l.split_whitespace().next() == Some(name))
            .unwrap_or_else(|| panic!("{name} not in slabinfo"));
        let f: Vec<&str> = line.split_whitespace().collect();
        assert_eq!(num(&c["total"]).to_string(), f[2], "{name}");
        assert_eq!(num(&c["slabs"]).to_string(), f[14], "{name}");
        assert!(num(&c["allocated"]) <= num(&c["total"]));
    }
}

#[test]
fn kmem_big_s_lists_every_object_once_and_marks_the_allocated_ones() {
    let mut sh = shell(&[]);
    for i in 0..40 {
        exec(&mut sh, &format!("o{i} = kmalloc 1000 GFP_KERNEL"));
    }
    exec(&mut sh, "kfree o3");
    let s = exec(&mut sh, "kmem -S kmalloc-1k");
    let total = num(&s["cache"]["total"]);
    let allocated = num(&s["cache"]["allocated"]);
    let objects: Vec<&Value> = s["slabs"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|slab| slab["objects"].as_array().unwrap())
        .collect();
    assert_eq!(objects.len() as u64, total, "every object once");
    let listed_allocated = objects.iter().filter(|o| o["state"] == "allocated").count() as u64;
    assert_eq!(listed_allocated, allocated);
    let t = text(&mut sh, "kmem -S kmalloc-1k");
    assert_eq!(
        t.lines().filter(|l| l.starts_with("  [")).count() as u64,
        allocated
    );
    assert!(
        t.contains("CPU 0 SLAB:") && t.contains("NODE 0 PARTIAL:") && t.contains("NODE 0 FULL:")
    );
    // o3's slab is no longer CPU 0's: it went back to its slab's own freelist. The last
    // object, freed, is on CPU 0's freelist, as crash marks it `(cpu 0 cache)`.
    let o3 = exec(&mut sh, "kmem o3");
    assert_eq!(o3["state"], "free", "{o3}");
    assert_ne!(o3["slab_place"], "cpu 0 slab");
    exec(&mut sh, "kfree o39");
    let o39 = exec(&mut sh, "kmem o39");
    assert_eq!(o39["state"], "free (cpu cache)");
    assert_eq!(o39["cpu"], 0);
    assert!(text(&mut sh, "kmem o39").contains("(cpu 0 cache)"));
}

#[test]
fn kmem_f_walks_the_free_lists_and_agrees_with_buddyinfo() {
    let mut sh = shell(&[]);
    exec(&mut sh, "p = alloc_pages GFP_KERNEL 3");
    let f = exec(&mut sh, "kmem -f");
    assert_eq!(f["verified"], true, "{f}");
    let buddyinfo = cat(&mut sh, "/proc/buddyinfo");
    for z in f["zones"].as_array().unwrap() {
        let name = z["zone"].as_str().unwrap();
        let line = buddyinfo
            .lines()
            .find(|l| l.split_whitespace().nth(3) == Some(name))
            .unwrap();
        let counts: Vec<u64> = line
            .split_whitespace()
            .skip(4)
            .map(|n| n.parse().unwrap())
            .collect();
        let walked: Vec<u64> = z["areas"]
            .as_array()
            .unwrap()
            .iter()
            .map(|a| num(&a["blocks"]))
            .collect();
        assert_eq!(walked, counts, "{name}");
        assert_eq!(num(&z["walked_pages"]), num(&z["free"]));
    }
    let total: u64 = f["zones"]
        .as_array()
        .unwrap()
        .iter()
        .map(|z| num(&z["free"]))
        .sum();
    assert_eq!(total, meminfo_pages(&mut sh, "MemFree"));
}

#[test]
fn kmem_i_totals_are_meminfos() {
    let mut sh = shell(&["--ram", "512M"]);
    exec(&mut sh, "x = kmalloc 64 GFP_KERNEL");
    let i = exec(&mut sh, "kmem -i");
    assert_eq!(num(&i["total_mem"]), meminfo_pages(&mut sh, "MemTotal"));
    assert_eq!(num(&i["free"]), meminfo_pages(&mut sh, "MemFree"));
    assert_eq!(num(&i["slab"]), meminfo_pages(&mut sh, "Slab"));
    assert_eq!(num(&i["used"]), num(&i["total_mem"]) - num(&i["free"]));
    let t = text(&mut sh, "kmem -i");
    assert!(t.contains("                 PAGES        TOTAL      PERCENTAGE"));
    let free_line = t
        .lines()
        .find(|l| l.trim_start().starts_with("FREE"))
        .unwrap();
    assert!(free_line.ends_with("% of TOTAL MEM"), "{free_line}");
}

#[test]
fn kmem_of_a_vmalloc_address_gives_the_page_the_mmu_finds_and_the_guard_page() {
    let mut sh = shell(&[]);
    let v = hex(&exec(&mut sh, "v = vmalloc 8K"));
    let k = exec(&mut sh, &format!("kmem {:#x}", v + 0x1010));
    assert_eq!(k["kind"], "vmalloc");
    assert_eq!(num(&k["offset"]), 0x1010);
    let walked = hex(&exec(&mut sh, &format!("walk {:#x}", v + 0x1010))["result"]["phys"]);
    assert_eq!(hex(&k["phys"]), walked);
    assert_eq!(num(&k["pfn"]), walked >> 12);
    let guard = exec(&mut sh, &format!("kmem {:#x}", v + 0x2000));
    assert_eq!(guard["kind"], "guard page");
    // kmem -v lists the area with its guard page.
    let areas = exec(&mut sh, "kmem -v");
    let a = areas["areas"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| hex(&a["start"]) == v)
        .expect("the area");
    assert_eq!(num(&a["size"]), 0x3000);
    assert_eq!(a["kind"], "vmalloc");
    // The backing page, asked by physical address, is an allocated page; the PTE table
    // mapping it is a page table of the last level.
    let by_phys = exec(&mut sh, &format!("kmem -P {walked:#x}"));
    assert_eq!(by_phys["kind"], "page");
    let steps = exec(&mut sh, "walk v")["steps"].clone();
    let pte_table = hex(&steps.as_array().unwrap().last().unwrap()["table"]);
    let pt = exec(&mut sh, &format!("kmem -P {pte_table:#x}"));
    assert_eq!(pt["kind"], "page table");
    assert_eq!(pt["page_table_level"], "PTE");
}

#[test]
fn kmem_tells_free_pcp_large_kmalloc_reserved_and_hole_apart() {
    let mut sh = shell(&[]);
    let p = hex(&exec(&mut sh, "p = __get_free_pages GFP_KERNEL 0"));
    exec(&mut sh, "free_pages p 0");
    let pcp = exec(&mut sh, &format!("kmem {p:#x}"));
    assert_eq!(pcp["kind"], "per-cpu list page", "{pcp}");
    assert_eq!(pcp["on_list"], true);
    // A free buddy block: the zone's highest free block, found on its list.
    let f = exec(&mut sh, "kmem -p 0x200");
    assert!(
        f["flag_names"]
            .as_array()
            .unwrap()
            .iter()
            .any(|n| n == "buddy"),
        "{f}"
    );
    let b = exec(&mut sh, "kmem -P 0x200000");
    assert_eq!(b["kind"], "free buddy block");
    assert_eq!(b["on_list"], true);
    assert!(num(&b["order"]) > 0);
    let l = hex(&exec(&mut sh, "l = kmalloc 20000 GFP_KERNEL"));
    let large = exec(&mut sh, &format!("kmem {:#x}", l + 4096));
    assert_eq!(large["kind"], "large kmalloc");
    assert_eq!(hex(&large["object"]), l);
    let r = exec(&mut sh, "kmem -P 0x1000");
    assert_eq!(r["kind"], "reserved");
    let h = exec(&mut sh, "kmem -P 0xa0000");
    assert_eq!(h["kind"], "hole", "the legacy 640 KiB - 1 MiB hole");
    // A struct page address is the page it describes.
    let page = exec(&mut sh, "q = alloc_pages GFP_KERNEL 0");
    let _ = page;
    let sp = exec(&mut sh, "kmem q");
    assert_eq!(sp["kind"], "struct page");
    assert_eq!(num(&sp["count"]), 1);
}

#[test]
fn kmem_p_and_z_agree_with_pfn_to_page_and_zoneinfo() {
    let mut sh = shell(&[]);
    let page = hex(&exec(&mut sh, "pfn_to_page 0x1234"));
    let p = exec(&mut sh, "kmem -p 0x1234");
    assert_eq!(hex(&p["page"]), page);
    assert_eq!(hex(&p["physical"]), 0x1234 << 12);
    let z = exec(&mut sh, "kmem -z");
    let zoneinfo = cat(&mut sh, "/proc/zoneinfo");
    for zone in z["zones"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|z| num(&z["present"]) > 0)
    {
        let name = zone["name"].as_str().unwrap();
        let section = zoneinfo
            .split("Node 0, zone")
            .find(|s| s.split_whitespace().next() == Some(name))
            .unwrap();
        let free: u64 = section
            .lines()
            .find(|l| l.trim_start().starts_with("pages free"))
            .and_then(|l| l.split_whitespace().last())
            .unwrap()
            .parse()
            .unwrap();
        assert_eq!(num(&zone["vm_stat"]["nr_free_pages"]), free, "{name}");
    }
}

#[test]
fn kmem_refuses_bad_input_clearly() {
    let mut sh = shell(&[]);
    assert!(error(&mut sh, "kmem").contains("usage: kmem"));
    assert!(error(&mut sh, "kmem -x").contains("invalid option '-x'"));
    assert!(error(&mut sh, "kmem -s nosuch").contains("no cache named 'nosuch'"));
    assert!(error(&mut sh, "kmem -S").contains("usage"));
    assert!(error(&mut sh, "kmem 0xdead000000000000").contains("no address of this machine"));
    assert!(error(&mut sh, "kmem -p 0xffffffffff").contains("outside mem_map"));
    assert!(error(&mut sh, "kmem $nosuch").contains("neither a number nor a name"));
}

#[test]
fn a_corrupted_free_pointer_is_answered_as_corrupted_without_an_oops() {
    let mut sh = shell(&[]);
    exec(&mut sh, "a = kmalloc 64 GFP_KERNEL");
    exec(&mut sh, "b = kmalloc 64 GFP_KERNEL");
    exec(&mut sh, "kfree a");
    let fp = num(&exec(&mut sh, "slab kmalloc-64")["offset"]);
    // Flip the top byte of a's (free) free pointer: it now leads nowhere in its slab.
    exec(&mut sh, &format!("poke a {} 0x5a", fp + 7));
    let k = exec(&mut sh, "kmem a");
    assert_eq!(k["kind"], "corrupted slab", "{k}");
    assert!(k["corrupted"]
        .as_str()
        .unwrap()
        .contains("Freepointer corrupt"));
    let s = exec(&mut sh, "kmem -s kmalloc-64");
    assert!(s["caches"][0]["corrupted"].is_string(), "{s}");
    let big = exec(&mut sh, "kmem -S kmalloc-64");
    assert!(big.to_string().contains("corrupted"));
    assert_eq!(sh.machine.tainted().0, 0, "reading is not an oops");
}

#[test]
fn help_cmd_prints_the_usage_from_the_command_table() {
    let mut sh = shell(&[]);
    let h = text(&mut sh, "help kmem");
    assert!(
        h.starts_with("kmem ADDR | -P PHYS | -s [CACHE|ADDR] | -S CACHE"),
        "{h}"
    );
    assert!(h.contains("works on a panicked machine too"));
    assert!(error(&mut sh, "help nosuch").contains("no command 'nosuch'"));
}

#[test]
fn dollar_names_work_where_names_do() {
    let mut sh = shell(&[]);
    exec(&mut sh, "$p = kmalloc 32 GFP_KERNEL");
    let k1 = exec(&mut sh, "ksize $p");
    let k2 = exec(&mut sh, "ksize p");
    assert_eq!(k1, k2);
    exec(&mut sh, "c = kmem_cache_create thing 48");
    exec(&mut sh, "o = kmem_cache_alloc $c GFP_KERNEL");
    exec(&mut sh, "kmem_cache_free $c $o");
    exec(&mut sh, "kfree $p");
}

#[test]
fn completion_offers_commands_names_caches_gfp_flags_and_proc_files() {
    let mut sh = shell(&[]);
    exec(&mut sh, "alpha = kmalloc 8 GFP_KERNEL");
    exec(&mut sh, "alps = kmalloc 8 GFP_KERNEL");
    let names = CompletionNames::of(&sh);
    assert_eq!(names.vars, ["alpha", "alps"]);
    assert!(names.caches.iter().any(|c| c == "kmalloc-96"));
    let c = |line: &str| complete(line, line.len(), &names);
    let (start, got) = c("kmal");
    assert_eq!(start, 0);
    assert!(got.contains(&"kmalloc".to_string()) && got.iter().all(|g| g.starts_with("kmal")));
    assert_eq!(c("x = kmem_cache_cr").1, ["kmem_cache_create"]);
    assert_eq!(c("! kfre").1, ["kfree", "kfree_bulk"]);
    assert_eq!(
        c("kfree $al"),
        (6, vec!["$alpha".to_string(), "$alps".to_string()])
    );
    let (start, got) = c("kmalloc 8 GFP_KERNEL|__GFP_ZE");
    assert_eq!(start, 21);
    assert!(
        got.contains(&"__GFP_ZERO".to_string()) && got.iter().all(|g| g.starts_with("__GFP_ZE"))
    );
    assert!(c("kmalloc 8 GFP_KER").1.contains(&"GFP_KERNEL".to_string()));
    assert_eq!(c("cat /proc/bud").1, ["/proc/buddyinfo"]);
    assert_eq!(c("kmem -s kmalloc-9").1, ["kmalloc-96"]);
    assert_eq!(c("kmem -s alph").1, ["alpha"]);
    // A cursor inside a multi-byte character completes nothing, rather than panicking.
    assert!(complete("kmem é", 6, &names).1.is_empty());
}

/// The interactive path through a pseudo-terminal (rexpect): a completed `$name`, a
/// completed command, an edited line, the history recalled with the Up key, and the
/// history file written at Ctrl-D. The timeout only guards against a hang.
#[cfg(unix)]
#[test]
fn the_interactive_shell_completes_edits_and_keeps_history() {
    let state = std::env::temp_dir().join(format!("kmemlab-pty-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&state);
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_kmemlab"));
    cmd.arg("shell")
        .env("XDG_STATE_HOME", &state)
        .env("TERM", "xterm");
    let mut p = rexpect::session::spawn_command(cmd, Some(60_000)).expect("spawn on a pty");
    let prompt = "kmemlab[cpu0 process]> ";
    p.exp_string(prompt).expect("the prompt");
    p.send_line("a = kmalloc 8 GFP_KERNEL").unwrap();
    p.exp_string("a = 0x").expect("the result");
    // Keys typed before the prompt may be flushed when the editor enters raw mode.
    p.exp_string(prompt).expect("the prompt");
    // `kmem $<Tab>` completes the only name.
    p.send("kmem $\t").unwrap();
    p.flush().unwrap();
    p.send_line("").unwrap();
    p.exp_string("kmalloc-8").expect("kmem $a");
    // Keys typed before the prompt may be flushed when the editor enters raw mode.
    p.exp_string(prompt).expect("the prompt");
    // A command completed from its prefix.
    p.send("kmem_cache_cr\t").unwrap();
    p.flush().unwrap();
    p.send_line(" thing 32").unwrap();
    p.exp_string("struct kmem_cache * thing")
        .expect("the completed command ran");
    // Keys typed before the prompt may be flushed when the editor enters raw mode.
    p.exp_string(prompt).expect("the prompt");
    // "kize $a", then Ctrl-A, Ctrl-F, "s": "ksize $a".
    p.send("kize $a\x01\x06s").unwrap();
    p.flush().unwrap();
    p.send_line("").unwrap();
    p.exp_string("bytes usable").expect("the edited line ran");
    // Keys typed before the prompt may be flushed when the editor enters raw mode.
    p.exp_string(prompt).expect("the prompt");
    // Up recalls it.
    p.send("\x1b[A").unwrap();
    p.flush().unwrap();
    p.send_line("").unwrap();
    p.exp_string("bytes usable").expect("the recalled line ran");
    p.exp_string(prompt).expect("the prompt");
    p.send_control('d').unwrap();
    p.exp_eof().expect("Ctrl-D ends the shell");
    let history = std::fs::read_to_string(state.join("kmemlab/history")).expect("history");
    assert!(history.contains("a = kmalloc 8 GFP_KERNEL"), "{history}");
    assert!(history.contains("ksize $a"), "{history}");
    assert!(history.contains("kmem_cache_create thing 32"), "{history}");
    let _ = std::fs::remove_dir_all(&state);
}
