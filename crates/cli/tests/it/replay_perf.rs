//! `kmemlab replay` with perf kmem's inputs (issue 14, item 5): `--kallsyms FILE` naming
//! raw call sites, malformed symbol files, the size-class hint on the SLAB trace, and
//! `perf script` text on standard input.

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

fn repo_trace(name: &str) -> String {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../tests/data/traces")
        .join(name);
    assert!(path.is_file(), "{} is missing", path.display());
    path.to_string_lossy().into_owned()
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// A file in the target directory's scratch space, unique to the test.
fn scratch(name: &str, contents: &str) -> String {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR"));
    let path = dir.join(name);
    std::fs::write(&path, contents).expect("write scratch file");
    path.to_string_lossy().into_owned()
}

#[test]
fn kallsyms_names_raw_call_sites() {
    // The SLUB trace's busiest kmalloc site is c104de4f; name a function below it.
    let map = scratch(
        "replay_perf_system.map",
        "c1000000 T _text\nc104de00 t getname_flags\nc104e100 T putname\n",
    );
    let trace = repo_trace("linux-3.5-i386-boot-slub.trace");
    let o = kmemlab(
        &["replay", &trace, "--kallsyms", &map, "--top", "100000"],
        "",
    );
    assert!(o.status.success(), "{}", text(&o.stderr));
    let out = text(&o.stdout);
    assert!(out.contains(" getname_flags+0x4f "), "{out}");
    // Every call site is at or above _text: none is left as a raw address.
    assert!(!out.contains(" 0xc1"), "{out}");
    let plain = text(&kmemlab(&["replay", &trace, "--top", "100000"], "").stdout);
    assert!(plain.contains(" 0xc104de4f "), "{plain}");
}

#[test]
fn malformed_kallsyms_files_are_errors_with_the_line() {
    let trace = repo_trace("linux-3.5-i386-boot-slub.trace");
    for (name, contents, needle) in [
        (
            "replay_perf_bad_addr.map",
            "c1000000 T _text\nzz104de00 t foo\n",
            "line 2: the address is not 1 to 16 hex digits",
        ),
        (
            "replay_perf_no_name.map",
            "c1000000 T\n",
            "line 1: no symbol name after the type",
        ),
        (
            "replay_perf_bad_type.map",
            "c1000000 T _text\nc1000010 Tt foo\n",
            "line 2: the symbol type is not one letter",
        ),
        (
            "replay_perf_restricted.map",
            "0000000000000000 T _text\n0000000000000000 t foo\n",
            "every address is 0",
        ),
        ("replay_perf_empty.map", "\n\n", "no symbols in the file"),
    ] {
        let map = scratch(name, contents);
        let o = kmemlab(&["replay", &trace, "--kallsyms", &map], "");
        assert!(!o.status.success(), "{name} accepted");
        let err = text(&o.stderr);
        assert!(err.contains(needle), "{name}: {err}");
        assert!(!err.contains("panicked"), "{err}");
    }
    let o = kmemlab(
        &["replay", &trace, "--kallsyms", "/nonexistent/kallsyms"],
        "",
    );
    assert!(!o.status.success());
    assert!(text(&o.stderr).contains("cannot read /nonexistent/kallsyms"));
}

#[test]
fn slab_trace_prints_the_size_class_hint_and_the_hint_agrees() {
    let trace = repo_trace("linux-3.5-i386-boot-slab.trace");
    let o = kmemlab(&["replay", &trace], "");
    let out = text(&o.stdout);
    let flag = "--kmalloc-sizes 32,64,128,192,256,512,1024,2048,4096,8192";
    assert!(
        out.contains(&format!("{flag} gives 2,088/2,088 (100.00%)")),
        "{out}"
    );
    let sizes = "32,64,128,192,256,512,1024,2048,4096,8192";
    let o = kmemlab(&["--kmalloc-sizes", sizes, "replay", &trace], "");
    let out = text(&o.stdout);
    assert!(
        out.contains("kmalloc ksize == bytes_alloc: 2,088/2,088 (100.00%)"),
        "{out}"
    );
    assert!(!out.contains("other size classes"), "{out}");
}

#[test]
fn perf_script_text_on_standard_input() {
    let perf = "\
            perf 24970 [000]  3442.427504: kmem:kmalloc: call_site=sched_setaffinity+0x127 ptr=0xffff88810475a3e0 bytes_req=32 bytes_alloc=32 gfp_flags=GFP_KERNEL node=-1 accounted=false
\tffffffff812a3b4c __kmalloc+0x1ac ([kernel.kallsyms])
\tffffffff810d1f17 sched_setaffinity+0x127 ([kernel.kallsyms])

            perf 24970 [000]  3442.427700: kmem:kfree: call_site=sched_setaffinity+0x1f2 ptr=0xffff88810475a3e0
";
    let o = kmemlab(&["replay", "-"], perf);
    assert!(o.status.success(), "{}", text(&o.stderr));
    let out = text(&o.stdout);
    assert!(out.contains("events: kfree 1, kmalloc 1"), "{out}");
    assert!(out.contains("0 malformed lines skipped"), "{out}");
    assert!(out.contains("sched_setaffinity+0x127"), "{out}");
}

/// The call-site table's rows: (name, hit, frag percent).
fn callsite_rows(out: &str) -> Vec<(String, u64, f64)> {
    out.lines()
        .skip_while(|l| !l.starts_with(" Callsite"))
        .skip(2)
        .take_while(|l| !l.starts_with("---") && !l.starts_with(" ..."))
        .map(|l| {
            let cols: Vec<&str> = l.split('|').map(str::trim).collect();
            (
                cols[0].to_string(),
                cols[3].parse().expect("hit"),
                cols[5].trim_end_matches('%').parse().expect("frag"),
            )
        })
        .collect()
}

#[test]
fn sort_keys_and_line_count_as_perf_kmem() {
    let trace = repo_trace("linux-3.5-i386-boot-slub.trace");
    let o = kmemlab(&["replay", &trace, "-s", "hit,bytes", "-l", "5"], "");
    assert!(o.status.success(), "{}", text(&o.stderr));
    let rows = callsite_rows(&text(&o.stdout));
    assert_eq!(rows.len(), 5);
    assert!(rows.windows(2).all(|w| w[0].1 >= w[1].1), "{rows:?}");
    assert_eq!(rows[0].1, 1900, "the busiest call site first");

    let o = kmemlab(&["replay", &trace, "--sort", "frag", "--line", "4"], "");
    let rows = callsite_rows(&text(&o.stdout));
    assert_eq!(rows.len(), 4);
    assert!(rows.windows(2).all(|w| w[0].2 >= w[1].2), "{rows:?}");

    for (keys, needle) in [
        ("hit,bogus", "Unknown slab --sort key: 'bogus'"),
        ("order", "Unknown slab --sort key: 'order': a page key"),
        ("", "Unknown slab --sort key: ''"),
    ] {
        let o = kmemlab(&["replay", &trace, "-s", keys], "");
        assert!(!o.status.success(), "{keys} accepted");
        let err = text(&o.stderr);
        assert!(err.contains(needle), "{keys}: {err}");
        assert!(!err.contains("panicked"), "{err}");
    }
}

/// `perf script` of `perf record -g -e 'kmem:*'`: two kmallocs with callchains, a page
/// allocation whose call site is below `__alloc_pages`, and one page freed.
const PERF_SCRIPT_G: &str = "\
            perf   100 [000]    10.000001: kmem:kmalloc: call_site=sched_setaffinity+0x127 ptr=0xffff888100001000 bytes_req=30 bytes_alloc=32 gfp_flags=GFP_KERNEL node=-1 accounted=false
\tffffffff812a3b4c __kmalloc+0x1ac ([kernel.kallsyms])
\tffffffff810d1f17 sched_setaffinity+0x127 ([kernel.kallsyms])

            perf   100 [001]    10.000002: kmem:kmalloc: call_site=do_sys_open+0x20 ptr=0xffff888100002000 bytes_req=64 bytes_alloc=64 gfp_flags=GFP_KERNEL node=-1 accounted=false
\tffffffff812a3b4c __kmalloc+0x1ac ([kernel.kallsyms])
\tffffffff81111020 do_sys_open+0x20 ([kernel.kallsyms])

     kworker/0:1    20 [000]    10.000006: kmem:mm_page_alloc: page=0xffffea0000040000 pfn=0x1000 order=0 migratetype=0 gfp_flags=GFP_KERNEL
\tffffffff81200100 __alloc_pages+0x100 ([kernel.kallsyms])
\tffffffff81300030 pte_alloc_one+0x30 ([kernel.kallsyms])

     kworker/0:1    20 [000]    10.000007: kmem:mm_page_alloc: page=0xffffea0000080000 pfn=0x2000 order=2 migratetype=1 gfp_flags=GFP_KERNEL|__GFP_RECLAIMABLE
\tffffffff81200100 __alloc_pages+0x100 ([kernel.kallsyms])
\tffffffff81400040 new_slab+0x40 ([kernel.kallsyms])

     kworker/0:1    20 [000]    10.000008: kmem:mm_page_free: page=0xffffea0000040000 pfn=0x1000 order=0
";

#[test]
fn caller_alloc_and_page_tables_from_perf_script_with_callchains() {
    let o = kmemlab(&["replay", "-", "--caller", "--alloc"], PERF_SCRIPT_G);
    assert!(o.status.success(), "{}", text(&o.stderr));
    let out = text(&o.stdout);
    for needle in [
        " Callsite                           | Total_alloc/Per",
        " Alloc Ptr                          | Total_alloc/Per",
        " 0xffff888100002000                 |        64/64    |",
        "Callchains of the call sites above (perf script -g), commonest first:\n sched_setaffinity+0x127: 1 of 1 allocations\n\tffffffff812a3b4c __kmalloc+0x1ac\n",
    ] {
        assert!(out.contains(needle), "{needle:?} in\n{out}");
    }
    // No --page: no page tables (the page summary is printed as before).
    assert!(!out.contains("# GFP flags"), "{out}");

    let o = kmemlab(
        &[
            "replay", "-", "--page", "--caller", "--alloc", "-s", "order",
        ],
        PERF_SCRIPT_G,
    );
    assert!(o.status.success(), "{}", text(&o.stderr));
    let out = text(&o.stdout);
    let callers = out
        .find(" Total alloc (KB) | Hits")
        .expect("page caller table");
    let new_slab = out[callers..].find("| new_slab").expect("new_slab row");
    let pte = out[callers..]
        .find("| pte_alloc_one")
        .expect("pte_alloc_one row");
    assert!(new_slab < pte, "-s order puts order 2 first:\n{out}");
    assert!(out.contains(" RECLAIM | K|RC "), "{out}");

    let o = kmemlab(
        &["replay", "-", "--page", "--live", "--caller", "--alloc"],
        PERF_SCRIPT_G,
    );
    assert!(o.status.success(), "{}", text(&o.stderr));
    let out = text(&o.stdout);
    assert!(out.contains("  Live alloc (KB) | Hits"), "{out}");
    assert!(out.contains("| new_slab"), "{out}");
    assert!(
        !out.contains("| pte_alloc_one"),
        "the freed page is not live:\n{out}"
    );
}

#[test]
fn page_sort_keys_and_live_need_page() {
    for (args, needle) in [
        (
            vec!["replay", "-", "--page", "-s", "frag"],
            "Unknown page --sort key: 'frag'",
        ),
        (vec!["replay", "-", "--live"], "--page"),
    ] {
        // Refused before the trace is read: no input, so no write to a closed pipe.
        let o = kmemlab(&args, "");
        assert!(!o.status.success(), "{args:?} accepted");
        let err = text(&o.stderr);
        assert!(err.contains(needle), "{args:?}: {err}");
        assert!(!err.contains("panicked"), "{err}");
    }
}

#[test]
fn a_malformed_callchain_line_is_a_clear_error() {
    let bad = PERF_SCRIPT_G.replace(
        "\tffffffff81111020 do_sys_open+0x20 ([kernel.kallsyms])",
        "\tffffffff81111020 do_sys_open+0x20",
    );
    let o = kmemlab(&["replay", "-"], &bad);
    assert!(!o.status.success());
    let err = text(&o.stderr);
    assert!(
        err.contains("line 7: a callchain frame must read ADDRESS SYMBOL (DSO)"),
        "{err}"
    );
    assert!(!err.contains("panicked"), "{err}");
    let o = kmemlab(&["replay", "-", "--lenient"], &bad);
    assert!(o.status.success(), "{}", text(&o.stderr));
    assert!(text(&o.stdout).contains("1 malformed lines skipped"));
}
