//! The `slabinfo` shell command (`tools/mm/slabinfo.c`), `cat /sys/kernel/slab/...`, and
//! the `--slub-stats` and `--slab-nomerge` boot flags.

use crate::fixtures::shell;
use kmemlab_cli::shell::Shell;

/// Run one line: its JSON result and text (panics if the command failed).
fn exec(sh: &mut Shell, line: &str) -> (serde_json::Value, String) {
    let o = sh.exec_line(1, line).expect("a command");
    let j = o.json();
    assert_eq!(j["failed"], false, "{line}: {j}");
    (
        j["result"].clone(),
        j["message"].as_str().unwrap_or("").to_string(),
    )
}

/// Run one line that must fail: its message.
fn fails(sh: &mut Shell, line: &str) -> String {
    let o = sh.exec_line(1, line).expect("a command");
    let j = o.json();
    assert_eq!(j["failed"], true, "{line} should fail: {j}");
    j["message"].as_str().unwrap_or("").to_string()
}

/// `(active_objs, num_slabs, pagesperslab)` of a /proc/slabinfo row.
fn proc_row(sh: &mut Shell, cache: &str) -> (u64, u64, u64) {
    let (_, text) = exec(sh, "cat /proc/slabinfo");
    let f: Vec<u64> = text
        .lines()
        .find(|l| l.split_whitespace().next() == Some(cache))
        .unwrap_or_else(|| panic!("{cache} in /proc/slabinfo"))
        .split_whitespace()
        .filter_map(|w| w.parse().ok())
        .collect();
    // active_objs num_objs objsize objperslab pagesperslab 0 0 0 active_slabs num_slabs 0
    (f[0], f[9], f[4])
}

fn sys_number(sh: &mut Shell, cache: &str, file: &str) -> u64 {
    let (_, text) = exec(sh, &format!("cat /sys/kernel/slab/{cache}/{file}"));
    text.split_whitespace().next().unwrap().parse().unwrap()
}

#[test]
fn default_table_agrees_with_proc_slabinfo_and_computes_loss() {
    let mut sh = shell(&[]);
    for _ in 0..50 {
        exec(&mut sh, "kmalloc 200 GFP_KERNEL");
    }
    let (json, text) = exec(&mut sh, "slabinfo -L -B");
    let mut lines = text.lines();
    assert_eq!(
        lines.next().unwrap(),
        "Name                   Objects Objsize            Loss Slabs/Part/Cpu  O/S O %Fr %Ef Flg"
    );
    let row = text
        .lines()
        .find(|l| l.starts_with("kmalloc-256 "))
        .expect("kmalloc-256 row");
    let cols: Vec<&str> = row.split_whitespace().collect();
    let (active, slabs, pages) = proc_row(&mut sh, "kmalloc-256");
    let object_size = sys_number(&mut sh, "kmalloc-256", "object_size");
    assert_eq!(cols[1].parse::<u64>().unwrap(), active, "{row}");
    assert_eq!(cols[2].parse::<u64>().unwrap(), object_size, "{row}");
    // Loss = slab memory - objects * object_size, as slab_waste() computes it.
    let loss = slabs * pages * 4096 - active * object_size;
    assert_eq!(cols[3].parse::<u64>().unwrap(), loss, "{row}");
    // Sorted by loss, biggest first.
    let losses: Vec<u64> = json["caches"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["loss"].as_u64().unwrap())
        .collect();
    assert!(losses.windows(2).all(|w| w[0] >= w[1]), "{losses:?}");
    let k = json["caches"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "kmalloc-256")
        .unwrap();
    assert_eq!(k["loss"].as_u64().unwrap(), loss);
    assert_eq!(k["objects"].as_u64().unwrap(), active);
}

#[test]
fn default_sort_is_by_name_and_size_sort_is_biggest_first() {
    let mut sh = shell(&[]);
    let (json, _) = exec(&mut sh, "slabinfo");
    let names: Vec<String> = json["caches"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap().to_lowercase())
        .collect();
    let mut sorted = names.clone();
    sorted.sort();
    assert_eq!(names, sorted);
    assert!(!names.is_empty());
    let (json, text) = exec(&mut sh, "slabinfo -S");
    let sizes: Vec<u64> = json["caches"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["space"].as_u64().unwrap())
        .collect();
    assert!(sizes.windows(2).all(|w| w[0] >= w[1]), "{sizes:?}");
    assert!(text.starts_with("Name                   Objects Objsize           Space "));
}

#[test]
fn totals_add_up() {
    let mut sh = shell(&[]);
    let (json, text) = exec(&mut sh, "slabinfo -T");
    assert!(
        text.starts_with("Slabcache Totals\n----------------\n"),
        "{text}"
    );
    let (all, _) = exec(&mut sh, "slabinfo -B -z");
    let caches = all["caches"].as_array().unwrap();
    let used: Vec<_> = caches
        .iter()
        .filter(|c| c["slabs"].as_u64().unwrap() != 0 && c["objects"].as_u64().unwrap() != 0)
        .collect();
    let memory: u64 = used.iter().map(|c| c["space"].as_u64().unwrap()).sum();
    let loss: u64 = used.iter().map(|c| c["loss"].as_u64().unwrap()).sum();
    assert_eq!(json["memory_used"].as_u64().unwrap(), memory);
    assert_eq!(json["loss"].as_u64().unwrap(), loss);
    assert_eq!(json["active"].as_u64().unwrap(), used.len() as u64);
    assert!(text.contains("Per Cache         Average"), "{text}");
}

#[test]
fn slub_stats_count_a_warm_pair_and_show_in_the_report() {
    let mut sh = shell(&["--slub-stats"]);
    exec(&mut sh, "kmalloc 64 GFP_KERNEL");
    let alloc = sys_number(&mut sh, "kmalloc-64", "alloc_fastpath");
    let free = sys_number(&mut sh, "kmalloc-64", "free_fastpath");
    let (p, _) = exec(&mut sh, "kmalloc 64 GFP_KERNEL");
    let p = p
        .as_str()
        .map(str::to_string)
        .unwrap_or_else(|| p["addr"].as_str().unwrap().to_string());
    exec(&mut sh, &format!("kfree {p}"));
    assert_eq!(
        sys_number(&mut sh, "kmalloc-64", "alloc_fastpath"),
        alloc + 1
    );
    assert_eq!(sys_number(&mut sh, "kmalloc-64", "free_fastpath"), free + 1);
    let (_, file) = exec(&mut sh, "cat /sys/kernel/slab/kmalloc-64/alloc_fastpath");
    assert!(
        file.starts_with(&format!("{} C", alloc + 1)) && file.contains(" C0="),
        "{file}"
    );
    let (_, report) = exec(&mut sh, "slabinfo -r ^kmalloc-64$");
    assert!(report.contains("Slabcache: kmalloc-64 "), "{report}");
    assert!(
        report.contains("Slab Perf Counter       Alloc     Free %Al %Fr"),
        "{report}"
    );
    let fast = report.lines().find(|l| l.starts_with("Fastpath")).unwrap();
    let cols: Vec<u64> = fast
        .split_whitespace()
        .skip(1)
        .map(|w| w.parse().unwrap())
        .collect();
    assert_eq!(cols[0], alloc + 1, "{fast}");
    assert_eq!(cols[1], free + 1, "{fast}");
    // The activity format's %Fast from the same counters.
    // Two caches: with a single one, slabinfo prints its report whatever the format.
    let (json, text) = exec(&mut sh, "slabinfo -D ^kmalloc-(64|96)$");
    assert!(
        text.starts_with("Name                   Objects      Alloc       Free   %Fast"),
        "{text}"
    );
    let c = &json["caches"][0];
    let total = c["alloc_fastpath"].as_u64().unwrap() + c["alloc_slowpath"].as_u64().unwrap();
    let line = text.lines().nth(1).unwrap();
    let cols: Vec<&str> = line.split_whitespace().collect();
    assert_eq!(cols[2].parse::<u64>().unwrap(), total, "{line}");
    assert_eq!(
        cols[4].parse::<u64>().unwrap(),
        (alloc + 1) * 100 / total,
        "{line}"
    );
}

#[test]
fn without_slub_stats_the_counter_files_do_not_exist() {
    let mut sh = shell(&[]);
    fails(&mut sh, "cat /sys/kernel/slab/kmalloc-64/alloc_fastpath");
    exec(&mut sh, "cat /sys/kernel/slab/kmalloc-64/object_size");
}

#[test]
fn merged_caches_are_aliases_and_nomerge_keeps_them_apart() {
    let mut sh = shell(&[]);
    let (a, _) = exec(&mut sh, "kmem_cache_create first_one 200");
    let (b, _) = exec(&mut sh, "kmem_cache_create second 196");
    assert_eq!(a, b, "compatible caches merge");
    let (json, text) = exec(&mut sh, "slabinfo -a");
    assert_eq!(text, ":0000200     <- first_one second");
    assert_eq!(json["aliases"].as_array().unwrap().len(), 2);
    let (_, aliases) = exec(&mut sh, "cat /sys/kernel/slab/second/aliases");
    assert_eq!(aliases, "1");
    let (_, proc) = exec(&mut sh, "cat /proc/slabinfo");
    assert!(proc.contains("first_one "));
    assert!(!proc.contains("second"));

    let mut sh = shell(&["--slab-nomerge"]);
    let (a, _) = exec(&mut sh, "kmem_cache_create first_one 200");
    let (b, _) = exec(&mut sh, "kmem_cache_create second 196");
    assert_ne!(a, b);
    let (_, text) = exec(&mut sh, "slabinfo -a");
    assert_eq!(text, "");
}

#[test]
fn bad_input_is_a_clear_error() {
    let mut sh = shell(&[]);
    assert!(fails(&mut sh, "slabinfo -Q").contains("Invalid option 'Q'"));
    assert!(fails(&mut sh, "slabinfo (").contains("Invalid pattern"));
    assert!(fails(&mut sh, "slabinfo -N").contains("-N needs"));
    assert!(fails(&mut sh, "slabinfo a b").contains("more than one"));
    fails(&mut sh, "cat /sys/kernel/slab/no_such_cache/objects");
    fails(&mut sh, "cat /sys/kernel/slab/kmalloc-64/no_such_file");
    fails(&mut sh, "cat /sys/kernel/slab/kmalloc-64");
    let (_, text) = exec(&mut sh, "slabinfo no_cache_has_this_name");
    assert_eq!(text, "");
}

/// `kmalloc <size> GFP_KERNEL_ACCOUNT` in the shell is served by `kmalloc-cg-*`
/// (`kmalloc_type()`), which `/proc/slabinfo`, `/sys/kernel/slab` and `slabinfo` show
/// beside `kmalloc-*`; `SLAB_ACCOUNT` is accepted by `kmem_cache_create`.
#[test]
fn accounted_kmalloc_uses_kmalloc_cg() {
    let mut sh = shell(&[]);
    let before = proc_row(&mut sh, "kmalloc-cg-128").0;
    exec(&mut sh, "p = kmalloc 100 GFP_KERNEL_ACCOUNT");
    let (info, _) = exec(&mut sh, "info p");
    assert_eq!(info["cache"], "kmalloc-cg-128", "{info}");
    exec(&mut sh, "q = kmalloc 100 GFP_KERNEL");
    let (info, _) = exec(&mut sh, "info q");
    assert_eq!(info["cache"], "kmalloc-128", "{info}");
    let (row, _, pages) = proc_row(&mut sh, "kmalloc-cg-128");
    assert!(row >= before.max(1), "an active kmalloc-cg-128 object");
    assert_eq!(pages, 1);
    assert_eq!(sys_number(&mut sh, "kmalloc-cg-128", "object_size"), 128);
    let (json, _) = exec(&mut sh, "slabinfo");
    assert!(json.to_string().contains("kmalloc-cg-128"), "{json}");
    exec(&mut sh, "kmem_cache_create acct 200 0 SLAB_ACCOUNT");
    exec(&mut sh, "kfree p");
    exec(&mut sh, "kfree q");
}

/// `--nokmem` (`cgroup.memory=nokmem`): no `kmalloc-cg-*` caches; `GFP_KERNEL_ACCOUNT`
/// requests are served by `kmalloc-*`.
#[test]
fn nokmem_has_no_kmalloc_cg() {
    let mut sh = shell(&["--nokmem"]);
    let (_, text) = exec(&mut sh, "cat /proc/slabinfo");
    assert!(!text.contains("kmalloc-cg-"), "{text}");
    exec(&mut sh, "p = kmalloc 100 GFP_KERNEL_ACCOUNT");
    let (info, _) = exec(&mut sh, "info p");
    assert_eq!(info["cache"], "kmalloc-128", "{info}");
}
