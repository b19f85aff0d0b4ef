//! The bulk commands (issue 15, item 3): `kmem_cache_alloc_bulk`, `kmem_cache_free_bulk`,
//! `kfree_bulk` and `alloc_pages_bulk`. Their results (lists of addresses, kept as `$name`
//! and `$name0` …), what the kernel's bulk paths do that a loop of single calls would not
//! (one `tid` step and one free fast path per batch, the sheaves), all or nothing, the
//! refusals the kernel reports, and the shell's bounds.

use crate::fixtures::{outcome, shell};
use kmemlab_cli::line_editor::{complete, CompletionNames};
use kmemlab_cli::shell::{Outcome, Shell, MAX_BULK};
use serde_json::Value;

/// Run one line; its JSON object (panics if the command failed or oopsed).
fn exec(sh: &mut Shell, line: &str) -> Value {
    let j = outcome(sh, line).json();
    assert_eq!(j["failed"], false, "{line}: {j}");
    assert_eq!(j["oops"], false, "{line}: {j}");
    j
}

/// Run one line that must fail; its JSON object.
fn fails(sh: &mut Shell, line: &str) -> Value {
    let j = outcome(sh, line).json();
    assert_eq!(j["failed"], true, "{line} should fail: {j}");
    j
}

/// The addresses of a JSON result that is a list of `"0x…"` strings.
fn addrs(result: &Value) -> Vec<u64> {
    result
        .as_array()
        .unwrap_or_else(|| panic!("a list: {result}"))
        .iter()
        .map(|a| {
            let s = a.as_str().unwrap_or_else(|| panic!("a string: {a}"));
            u64::from_str_radix(s.strip_prefix("0x").expect("0x…"), 16).expect("hex")
        })
        .collect()
}

/// The state `info` gives a slab object: its cache and `allocated` or `free`.
fn object_state(sh: &mut Shell, addr: &str) -> (String, String) {
    let r = exec(sh, &format!("info {addr}"))["result"].clone();
    (
        r["cache"].as_str().expect("a slab object").to_string(),
        r["state"].as_str().expect("a state").to_string(),
    )
}

/// The total of a `/sys/kernel/slab/<cache>/<file>` counter.
fn stat(sh: &mut Shell, cache: &str, file: &str) -> u64 {
    let j = exec(sh, &format!("cat /sys/kernel/slab/{cache}/{file}"));
    let text = j["message"].as_str().expect("the file");
    text.split_whitespace().next().unwrap().parse().unwrap()
}

/// CPU 0's transaction id of a cache (`slab <cache>`).
fn tid(sh: &mut Shell, cache: &str) -> u64 {
    exec(sh, &format!("slab {cache}"))["result"]["cpus"][0]["tid"]
        .as_u64()
        .expect("tid")
}

/// The objects of a cache in use, as crash's `kmem -s` counts them (walking its slabs:
/// an object on a CPU freelist is free, which `/proc/slabinfo` does not see).
fn allocated(sh: &mut Shell, cache: &str) -> u64 {
    let j = exec(sh, &format!("kmem -s {cache}"));
    j["result"]["caches"][0]["allocated"]
        .as_u64()
        .unwrap_or_else(|| panic!("kmem -s {cache}: {j}"))
}

fn text_of(o: &Outcome) -> String {
    let mut out = Vec::new();
    o.print_text(&mut out).expect("print");
    String::from_utf8(out).expect("utf-8")
}

#[test]
fn a_bulk_allocation_is_a_list_named_whole_and_one_by_one() {
    let mut sh = shell(&["--ram=64M", "--slab-nomerge"]);
    exec(&mut sh, "c = kmem_cache_create demo 96");
    let o = outcome(&mut sh, "objs = kmem_cache_alloc_bulk c GFP_KERNEL 8");
    let j = o.json();
    assert_eq!(j["failed"], false, "{j}");
    let objs = addrs(&j["result"]);
    assert_eq!(objs.len(), 8);
    let mut distinct = objs.clone();
    distinct.sort_unstable();
    distinct.dedup();
    assert_eq!(distinct.len(), 8, "{objs:x?}");
    let message = j["message"].as_str().unwrap();
    assert!(
        message.starts_with(
            "8 objects of demo (kmem_cache_alloc_bulk returned 8): 8 from the slab at pfn 0x"
        ),
        "{message}"
    );
    // For people: the list's line, then each address under its own name.
    let text = text_of(&o);
    let mut lines = text.lines();
    assert_eq!(lines.next(), Some(format!("objs = {message}").as_str()));
    for (i, a) in objs.iter().enumerate() {
        assert_eq!(lines.next(), Some(format!("  objs{i} = {a:#x}").as_str()));
    }
    // Each element by its name is that object, allocated in the cache.
    for (i, a) in objs.iter().enumerate() {
        let r = exec(&mut sh, &format!("info $objs{i}"))["result"].clone();
        assert_eq!(r["object"], format!("{a:#x}"));
        assert_eq!(
            (r["cache"].as_str(), r["state"].as_str()),
            (Some("demo"), Some("allocated"))
        );
    }
    assert_eq!(
        object_state(&mut sh, "objs7"),
        ("demo".into(), "allocated".into())
    );
    // The whole list where one address is wanted: a clear error, nothing freed.
    let e = fails(&mut sh, "kfree $objs");
    assert!(
        e["message"]
            .as_str()
            .unwrap()
            .contains("'objs' is a list of 8 addresses"),
        "{e}"
    );
    assert!(e["kernel"].as_array().unwrap().is_empty(), "{e}");
    // The whole list to the bulk free: every object is free again.
    let freed = exec(&mut sh, "kmem_cache_free_bulk c $objs");
    assert_eq!(freed["result"], Value::Null);
    for i in 0..8 {
        assert_eq!(object_state(&mut sh, &format!("$objs{i}")).1, "free");
    }
    // A name given again forgets the elements the old list had.
    let two = addrs(&exec(&mut sh, "$objs = kmem_cache_alloc_bulk c GFP_KERNEL 2")["result"]);
    assert_eq!(two.len(), 2);
    let gone = fails(&mut sh, "info $objs5");
    assert!(
        gone["message"]
            .as_str()
            .unwrap()
            .contains("neither a number nor a name"),
        "{gone}"
    );
    // Lists and single addresses mix in one bulk free.
    exec(&mut sh, "one = kmem_cache_alloc c GFP_KERNEL");
    exec(&mut sh, "kfree_bulk $objs one");
    assert_eq!(object_state(&mut sh, "one").1, "free");
    assert_eq!(object_state(&mut sh, "objs1").1, "free");
    // A number under the list's name replaces it.
    exec(&mut sh, "objs = kmalloc 64 GFP_KERNEL");
    fails(&mut sh, "info $objs0");
    exec(&mut sh, "kfree $objs");
    exec(&mut sh, "kmem_cache_destroy c");
    // A reboot forgets lists as it forgets every name.
    exec(
        &mut sh,
        "kept = kmem_cache_alloc_bulk kmalloc-64 GFP_KERNEL 2",
    );
    exec(&mut sh, "reboot");
    fails(&mut sh, "kfree_bulk $kept");
    fails(&mut sh, "info $kept1");
    assert!(CompletionNames::of(&sh).vars.is_empty());
    // Without a name, the list is printed by index.
    let o = outcome(&mut sh, "kmem_cache_alloc_bulk kmalloc-64 GFP_KERNEL 3");
    let anon = addrs(&o.json()["result"]);
    let text = text_of(&o);
    assert_eq!(
        text.lines().nth(3),
        Some(format!("  [2] {:#x}", anon[2]).as_str())
    );
}

#[test]
fn completion_offers_a_list_and_its_elements() {
    let mut sh = shell(&["--ram=64M", "--slab-nomerge"]);
    exec(
        &mut sh,
        "objs = kmem_cache_alloc_bulk kmalloc-32 GFP_KERNEL 3",
    );
    exec(&mut sh, "one = kmalloc 8 GFP_KERNEL");
    let names = CompletionNames::of(&sh);
    assert_eq!(names.vars, ["objs", "objs0", "objs1", "objs2", "one"]);
    assert_eq!(
        complete("kfree_bulk $ob", 14, &names).1,
        ["$objs", "$objs0", "$objs1", "$objs2"]
    );
}

/// One call takes the whole batch off the CPU freelist with interrupts disabled: eight
/// `ALLOC_FASTPATH`s but one `tid` step (a single allocation steps it each time), and the
/// free gives the batch back as one detached freelist: one `FREE_FASTPATH`, not eight.
#[test]
fn a_bulk_call_is_one_batch_on_the_fast_path() {
    let mut sh = shell(&["--ram=64M", "--slub-stats", "--slab-nomerge"]);
    exec(&mut sh, "c = kmem_cache_create demo 96");
    // Warm: a CPU slab with its freelist.
    exec(&mut sh, "o = kmem_cache_alloc c GFP_KERNEL");
    exec(&mut sh, "kmem_cache_free c o");
    let t0 = tid(&mut sh, "demo");
    exec(&mut sh, "o = kmem_cache_alloc c GFP_KERNEL");
    let step = tid(&mut sh, "demo") - t0;
    assert!(step > 0);
    exec(&mut sh, "kmem_cache_free c o");
    let (t1, fast, slow) = (
        tid(&mut sh, "demo"),
        stat(&mut sh, "demo", "alloc_fastpath"),
        stat(&mut sh, "demo", "alloc_slowpath"),
    );
    let (free_fast, free_slow) = (
        stat(&mut sh, "demo", "free_fastpath"),
        stat(&mut sh, "demo", "free_slowpath"),
    );
    exec(&mut sh, "objs = kmem_cache_alloc_bulk c GFP_KERNEL 8");
    assert_eq!(stat(&mut sh, "demo", "alloc_fastpath"), fast + 8);
    assert_eq!(stat(&mut sh, "demo", "alloc_slowpath"), slow);
    assert_eq!(
        tid(&mut sh, "demo"),
        t1 + step,
        "one tid step for the batch"
    );
    exec(&mut sh, "kmem_cache_free_bulk c $objs");
    assert_eq!(stat(&mut sh, "demo", "free_fastpath"), free_fast + 1);
    assert_eq!(stat(&mut sh, "demo", "free_slowpath"), free_slow);
    // A cold cache: the freelist runs dry at the start and after a slab's 42 objects, and
    // ___slab_alloc() refills it each time.
    exec(&mut sh, "d = kmem_cache_create cold 96");
    let j = exec(&mut sh, "many = kmem_cache_alloc_bulk d GFP_KERNEL 50");
    let message = j["message"].as_str().unwrap();
    assert!(
        message.contains(": 42 from the slab at pfn 0x"),
        "{message}"
    );
    assert!(message.contains(", 8 from the slab at pfn 0x"), "{message}");
    assert_eq!(stat(&mut sh, "cold", "alloc_slowpath"), 2);
    assert_eq!(stat(&mut sh, "cold", "alloc_slab"), 2);
    assert_eq!(stat(&mut sh, "cold", "alloc_fastpath"), 48);
    assert_eq!(allocated(&mut sh, "cold"), 50);
    exec(&mut sh, "kmem_cache_free_bulk d $many");
    assert_eq!(allocated(&mut sh, "cold"), 0);
    assert!(exec(&mut sh, "check")["message"]
        .as_str()
        .unwrap()
        .starts_with("ok"));
}

/// With sheaves (6.18): the batch comes out of the CPU's sheaf first and the slabs give
/// the rest; the free puts every object into the sheaves.
#[test]
fn with_sheaves_a_bulk_call_empties_the_sheaf_then_the_slabs() {
    let mut sh = shell(&[
        "--ram=64M",
        "--slub-stats",
        "--slab-nomerge",
        "--slab-percpu=sheaves",
    ]);
    exec(&mut sh, "c = kmem_cache_create demo 96");
    exec(&mut sh, "o = kmem_cache_alloc c GFP_KERNEL");
    exec(&mut sh, "kmem_cache_free c o");
    let capacity = stat(&mut sh, "demo", "sheaf_capacity");
    assert!(capacity > 8 && capacity < 200, "{capacity}");
    let pcs = stat(&mut sh, "demo", "alloc_cpu_sheaf");
    let slab_path =
        stat(&mut sh, "demo", "alloc_fastpath") + stat(&mut sh, "demo", "alloc_slowpath");
    exec(&mut sh, "few = kmem_cache_alloc_bulk c GFP_KERNEL 8");
    assert_eq!(stat(&mut sh, "demo", "alloc_cpu_sheaf"), pcs + 8);
    let slab_path_now =
        stat(&mut sh, "demo", "alloc_fastpath") + stat(&mut sh, "demo", "alloc_slowpath");
    assert_eq!(slab_path_now, slab_path, "the slabs were not asked");
    // More than the sheaf holds: what it has, then the slabs.
    exec(&mut sh, "many = kmem_cache_alloc_bulk c GFP_KERNEL 200");
    let from_sheaf = stat(&mut sh, "demo", "alloc_cpu_sheaf") - (pcs + 8);
    assert!(from_sheaf > 0 && from_sheaf < 200, "{from_sheaf}");
    let from_slabs = stat(&mut sh, "demo", "alloc_fastpath")
        + stat(&mut sh, "demo", "alloc_slowpath")
        - slab_path_now;
    assert_eq!(from_sheaf + from_slabs, 200);
    let free_pcs = stat(&mut sh, "demo", "free_cpu_sheaf");
    let in_slabs = allocated(&mut sh, "demo");
    assert!(in_slabs >= 208, "{in_slabs}");
    exec(&mut sh, "kmem_cache_free_bulk c $few $many");
    assert_eq!(stat(&mut sh, "demo", "free_cpu_sheaf"), free_pcs + 208);
    // Into the sheaves, which the slabs count as in use: none went back to a slab.
    assert_eq!(allocated(&mut sh, "demo"), in_slabs);
    assert_eq!(stat(&mut sh, "demo", "free_fastpath"), 0);
    assert_eq!(stat(&mut sh, "demo", "free_slowpath"), 0);
    assert!(exec(&mut sh, "check")["message"]
        .as_str()
        .unwrap()
        .starts_with("ok"));
}

#[test]
fn a_bulk_allocation_that_cannot_be_had_whole_takes_nothing() {
    let mut sh = shell(&["--ram=16M", "--slab-nomerge"]);
    exec(&mut sh, "c = kmem_cache_create big 4096");
    let j = fails(
        &mut sh,
        "objs = kmem_cache_alloc_bulk c GFP_KERNEL|__GFP_NORETRY 4096",
    );
    assert!(
        j["message"]
            .as_str()
            .unwrap()
            .starts_with("page allocation failure: order:"),
        "{j}"
    );
    let kernel: Vec<&str> = j["kernel"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(Value::as_str)
        .collect();
    assert!(
        kernel
            .iter()
            .any(|l| l.contains(": page allocation failure: order:")),
        "{kernel:?}"
    );
    // What the call had taken before memory ran out went back, and nothing was named.
    assert_eq!(allocated(&mut sh, "big"), 0);
    fails(&mut sh, "info $objs0");
    let small = addrs(&exec(&mut sh, "kmem_cache_alloc_bulk c GFP_KERNEL 16")["result"]);
    assert_eq!(small.len(), 16);
    assert_eq!(allocated(&mut sh, "big"), 16);
    // Sleeping allocations are refused in interrupt context, as might_alloc() does.
    exec(&mut sh, "ctx hardirq");
    let j = fails(&mut sh, "kmem_cache_alloc_bulk c GFP_KERNEL 4");
    assert!(
        j["message"]
            .as_str()
            .unwrap()
            .starts_with("BUG: sleeping function called from invalid context"),
        "{j}"
    );
    exec(&mut sh, "kmem_cache_alloc_bulk c GFP_ATOMIC 4");
}

#[test]
fn bulk_frees_refuse_what_the_kernel_refuses() {
    let mut sh = shell(&["--ram=64M", "--slab-nomerge"]);
    exec(&mut sh, "d = kmem_cache_create other 96");
    exec(&mut sh, "e = kmem_cache_create third 200");
    exec(&mut sh, "o = kmem_cache_alloc_bulk d GFP_KERNEL 4");
    // The wrong cache: cache_from_obj()'s warning for each object.
    let j = fails(&mut sh, "kmem_cache_free_bulk e $o");
    let warning = "cache_from_obj: Wrong slab cache. third but object is from other";
    assert_eq!(j["message"], warning);
    let warnings = j["kernel"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|l| l.as_str() == Some(warning))
        .count();
    assert_eq!(warnings, 4, "{j}");
    assert_eq!(j["oops"], false);
    // A double free inside the array: the kernel's BUG for the second copy, the object
    // linked once (the slab's freelist has no cycle, as the checker confirms).
    let j = fails(&mut sh, "kmem_cache_free_bulk d $o0 $o1 $o0");
    assert_eq!(j["oops"], true, "{j}");
    assert!(
        j["kernel"].as_array().unwrap().iter().any(|l| l
            .as_str()
            .is_some_and(|l| l.starts_with("kernel BUG at mm/slub.c:"))),
        "{j}"
    );
    assert!(
        j["message"].as_str().unwrap().contains("double free"),
        "{j}"
    );
    assert_eq!(object_state(&mut sh, "o0").1, "free");
    assert_eq!(object_state(&mut sh, "o1").1, "free");
    assert_eq!(object_state(&mut sh, "o2").1, "allocated");
    assert!(exec(&mut sh, "check")["message"]
        .as_str()
        .unwrap()
        .starts_with("ok"));
    exec(&mut sh, "kmem_cache_free_bulk d $o2 $o3");
    assert_eq!(allocated(&mut sh, "other"), 0);
    // kfree_bulk: each object to the cache its slab names, NULL skipped.
    exec(&mut sh, "a = kmem_cache_alloc_bulk d GFP_KERNEL 2");
    exec(&mut sh, "b = kmalloc 100 GFP_KERNEL");
    exec(&mut sh, "kfree_bulk $a 0 b");
    assert_eq!(object_state(&mut sh, "a1").1, "free");
    assert_eq!(object_state(&mut sh, "b").1, "free");
}

#[test]
fn bulk_counts_and_arrays_are_bounded() {
    let mut sh = shell(&["--ram=64M", "--slab-nomerge"]);
    exec(&mut sh, "c = kmem_cache_create tiny 8");
    for (line, why) in [
        (
            "kmem_cache_alloc_bulk c GFP_KERNEL 0",
            "kmem_cache_alloc_bulk: a count of 0 allocates nothing",
        ),
        (
            "alloc_pages_bulk GFP_KERNEL 0",
            "alloc_pages_bulk: a count of 0 allocates nothing",
        ),
        (
            "kmem_cache_alloc_bulk c GFP_KERNEL 4097",
            "kmem_cache_alloc_bulk: 4097 asked: the shell allocates at most 4096 per call",
        ),
        (
            "kmem_cache_alloc_bulk c GFP_KERNEL 0xffffffffffffffff",
            "kmem_cache_alloc_bulk: 18446744073709551615 asked",
        ),
        (
            "alloc_pages_bulk GFP_KERNEL 0x10000000000",
            "alloc_pages_bulk: 1099511627776 asked",
        ),
        (
            "kmem_cache_alloc_bulk nosuch GFP_KERNEL 4",
            "no cache named 'nosuch'",
        ),
        (
            "kmem_cache_alloc_bulk c GFP_KERNEL",
            "usage: kmem_cache_alloc_bulk <cache> <gfp> <n>",
        ),
        (
            "kmem_cache_free_bulk c",
            "usage: kmem_cache_free_bulk <cache> <addr>...",
        ),
        ("kfree_bulk", "usage: kfree_bulk <addr>..."),
        (
            "kfree_bulk $nothing",
            "'$nothing' is neither a number nor a name given earlier",
        ),
    ] {
        let j = fails(&mut sh, line);
        assert!(
            j["message"].as_str().unwrap().starts_with(why),
            "{line}: {j}"
        );
        assert_eq!(j["oops"], false, "{line}");
    }
    // The most one call takes, and one more refused before anything is freed.
    let all = addrs(&exec(&mut sh, "all = kmem_cache_alloc_bulk c GFP_KERNEL 4096")["result"]);
    assert_eq!(all.len(), MAX_BULK);
    assert_eq!(allocated(&mut sh, "tiny"), 4096);
    let j = fails(&mut sh, "kmem_cache_free_bulk c $all 0");
    assert!(
        j["message"]
            .as_str()
            .unwrap()
            .starts_with("kmem_cache_free_bulk: more than 4096 addresses"),
        "{j}"
    );
    assert_eq!(allocated(&mut sh, "tiny"), 4096);
    exec(&mut sh, "kmem_cache_free_bulk c $all");
    assert_eq!(allocated(&mut sh, "tiny"), 0);
}

#[test]
fn alloc_pages_bulk_returns_struct_pages_and_may_return_fewer() {
    let mut sh = shell(&["--ram=16M", "--slab-nomerge"]);
    let j = exec(&mut sh, "pp = alloc_pages_bulk GFP_KERNEL 12");
    let pages = addrs(&j["result"]);
    assert_eq!(pages.len(), 12);
    let message = j["message"].as_str().unwrap();
    assert!(
        message.starts_with(
            "struct page * of 12 of 12 order-0 pages (alloc_pages_bulk_array returned 12): pfn"
        ),
        "{message}"
    );
    let mut pfns = Vec::new();
    for i in 0..12 {
        let r = exec(&mut sh, &format!("page_to_pfn $pp{i}"))["result"].clone();
        pfns.push(r.as_u64().expect("a pfn"));
        let back = exec(&mut sh, &format!("pfn_to_page {}", pfns[i]))["result"].clone();
        assert_eq!(back, format!("{:#x}", pages[i]));
        let info = exec(&mut sh, &format!("info $pp{i}"))["result"].clone();
        assert_eq!(info["pfn"], pfns[i], "{info}");
        assert_eq!(info["state"], "allocated", "{info}");
    }
    pfns.sort_unstable();
    pfns.dedup();
    assert_eq!(pfns.len(), 12);
    exec(&mut sh, "__free_pages $pp0 0");
    // Onto this CPU's per-CPU list.
    assert_eq!(exec(&mut sh, "info $pp0")["result"]["state"], "pcp");
    // No zone stays above its low watermark after 4096 more pages: the single page of the
    // failed: label, and that is not an error.
    let j = exec(
        &mut sh,
        "short = alloc_pages_bulk GFP_KERNEL|__GFP_NORETRY 4096",
    );
    let got = addrs(&j["result"]);
    assert!(!got.is_empty() && got.len() < 4096, "{}", got.len());
    let message = j["message"].as_str().unwrap();
    assert!(
        message.contains(&format!("of {} of 4096", got.len())),
        "{message}"
    );
    assert!(message.contains("memory ran short"), "{message}");
    // None at all is an error: a sleeping allocation in interrupt context.
    exec(&mut sh, "ctx hardirq");
    let j = fails(&mut sh, "none = alloc_pages_bulk GFP_KERNEL 4");
    assert!(
        j["message"].as_str().unwrap().starts_with(
            "alloc_pages_bulk: no page allocated (alloc_pages_bulk_array returned 0 of 4)"
        ),
        "{j}"
    );
    assert!(
        j["kernel"][0]
            .as_str()
            .unwrap()
            .starts_with("BUG: sleeping function called from invalid context"),
        "{j}"
    );
}

#[test]
fn help_describes_the_bulk_commands_as_changing_the_machine() {
    let mut sh = shell(&["--ram=64M", "--slab-nomerge"]);
    for name in [
        "kmem_cache_alloc_bulk",
        "kmem_cache_free_bulk",
        "kfree_bulk",
        "alloc_pages_bulk",
    ] {
        let help = exec(&mut sh, &format!("help {name}"))["message"]
            .as_str()
            .unwrap()
            .to_string();
        assert!(
            help.starts_with(name) && help.contains("refused once the machine has panicked"),
            "{help}"
        );
    }
}
