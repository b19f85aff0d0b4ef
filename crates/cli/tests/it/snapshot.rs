//! `snapshot DIR` and `kmemlab snapshot`: the machine's /proc and /sys/kernel/slab files as
//! a directory tree, checked file by file against `cat`, and read by the real procps tools
//! (`slabtop`, `free`, `vmstat`) with the tree bind-mounted over /proc and /sys in a
//! private mount namespace (`unshare -rm`, `examples/snapshot-mount.sh`). The tools and
//! `unshare` must be installed (`.ci/run` installs procps): a missing one fails the test.

use kmemlab_cli::MachineArgs;
use std::path::{Path, PathBuf};
use std::process::Command;

use kmemlab_cli::shell::Shell;

use crate::fixtures::{kmemlab, stderr, stdout};

/// A fresh, absent directory under the test binary's temporary directory.
fn scratch(name: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("snapshot-{name}"));
    let _ = std::fs::remove_dir_all(&dir);
    let _ = std::fs::remove_file(&dir);
    std::fs::create_dir_all(dir.parent().expect("a parent")).expect("the tmp dir");
    dir
}

fn shell(flags: &[&str]) -> Shell {
    let mut sh = crate::fixtures::shell(flags);
    sh.host_files = true;
    sh
}

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

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn link(path: &Path) -> String {
    std::fs::read_link(path)
        .unwrap_or_else(|e| panic!("{} is not a link: {e}", path.display()))
        .to_string_lossy()
        .into_owned()
}

/// The workload both the in-process and the binary's machine run: a mergeable cache with
/// a second name merged into it, an unmergeable one, a name with a slash, and objects.
fn workload() -> Vec<String> {
    let mut lines = vec![
        "c = kmem_cache_create my_objs 192".to_string(),
        "kmem_cache_create other_objs 192".to_string(),
        "r = kmem_cache_create red_objs 100 0 SLAB_RED_ZONE".to_string(),
        "kmem_cache_create a/b 1000".to_string(),
    ];
    for _ in 0..50 {
        lines.push("kmem_cache_alloc c GFP_KERNEL".into());
    }
    for _ in 0..30 {
        lines.push("kmem_cache_alloc r GFP_KERNEL".into());
    }
    for _ in 0..40 {
        lines.push("kmalloc 500 GFP_KERNEL".into());
    }
    lines.push("vmalloc 64K".into());
    lines
}

/// Every file is what `cat` prints (with the kernel's final newline); merged caches are
/// links to their `create_unique_id()` directory, unmergeable ones real directories.
#[test]
fn the_tree_holds_what_cat_prints_and_links_as_sysfs() {
    let mut sh = shell(&[]);
    for line in workload() {
        exec(&mut sh, &line);
    }
    let dir = scratch("tree");
    let (json, text) = exec(&mut sh, &format!("snapshot {}", dir.display()));
    assert!(text.starts_with("snapshot in "), "{text}");
    assert!(json["files"].as_u64().unwrap() > 100, "{json}");
    assert_eq!(json["skipped"], serde_json::json!([]), "{json}");

    // The renderer's exact bytes; `cat` shows the same text without trailing blanks.
    for file in kmemlab_mm::procfs::FILES {
        let written = read(&dir.join("proc").join(file));
        let mut rendered = String::new();
        kmemlab_mm::procfs::render(&sh.machine.mm(), file, &mut rendered).unwrap();
        assert_eq!(written, rendered, "{file}");
        // (vmallocinfo is empty when nothing is vmapped.)
        assert!(written.is_empty() || written.ends_with('\n'), "{file}");
        let (_, cat) = exec(&mut sh, &format!("cat /proc/{file}"));
        assert_eq!(written.trim_end(), cat, "{file}");
    }
    let (_, mfk) = exec(&mut sh, "cat /proc/sys/vm/min_free_kbytes");
    assert_eq!(
        read(&dir.join("proc/sys/vm/min_free_kbytes")),
        format!("{mfk}\n")
    );
    assert_eq!(read(&dir.join("proc/sys/kernel/tainted")), "0\n");
    assert_eq!(
        read(&dir.join("sys/kernel/mm/transparent_hugepage/enabled")),
        "always madvise [never]\n"
    );

    let slab = dir.join("sys/kernel/slab");
    // sysfs_slab_add(): the cache's name links to its unique id; the merged name too.
    assert_eq!(link(&slab.join("my_objs")), ":0000192");
    assert_eq!(link(&slab.join("other_objs")), ":0000192");
    assert!(slab.join(":0000192").is_dir());
    assert_eq!(read(&slab.join(":0000192/aliases")), "1\n");
    let (_, objects) = exec(&mut sh, "cat /sys/kernel/slab/my_objs/objects");
    assert_eq!(read(&slab.join("my_objs/objects")), format!("{objects}\n"));
    assert!(objects.starts_with("63 N0=63"), "{objects}");
    // An unmergeable cache's directory has its own name; '/' becomes '!'.
    let red = std::fs::symlink_metadata(slab.join("red_objs")).expect("red_objs");
    assert!(red.is_dir(), "red_objs is a directory");
    assert_eq!(read(&slab.join("red_objs/red_zone")), "1\n");
    assert!(link(&slab.join("a!b")).starts_with(':'));
    // Statistics files only with --slub-stats.
    assert!(!slab.join("red_objs/alloc_fastpath").exists());
}

#[test]
fn slub_stats_files_are_written_with_slub_stats() {
    let mut sh = shell(&["--slub-stats"]);
    exec(&mut sh, "kmalloc 64 GFP_KERNEL");
    let dir = scratch("stats");
    exec(&mut sh, &format!("snapshot {}", dir.display()));
    let fast = read(&dir.join("sys/kernel/slab/kmalloc-64/alloc_fastpath"));
    assert!(
        fast.split_whitespace()
            .next()
            .unwrap()
            .parse::<u64>()
            .is_ok(),
        "{fast}"
    );
}

/// DIR must be new or empty and creatable; each refusal says why and writes nothing.
#[test]
fn bad_directories_are_clear_errors() {
    let mut sh = shell(&[]);
    let base = scratch("bad");
    std::fs::create_dir_all(&base).unwrap();

    let file = base.join("a-file");
    std::fs::write(&file, "x").unwrap();
    let e = fails(&mut sh, &format!("snapshot {}", file.display()));
    assert!(e.ends_with("a-file exists and is not a directory"), "{e}");
    assert_eq!(read(&file), "x");

    let e = fails(&mut sh, &format!("snapshot {}/under", file.display()));
    assert!(
        e.starts_with("cannot create ") && e.ends_with("a-file/under: Not a directory"),
        "{e}"
    );

    let full = base.join("full");
    std::fs::create_dir_all(&full).unwrap();
    std::fs::write(full.join("keep"), "mine").unwrap();
    let e = fails(&mut sh, &format!("snapshot {}", full.display()));
    assert!(e.contains("is not empty"), "{e}");
    assert_eq!(std::fs::read_dir(&full).unwrap().count(), 1);

    // Not writable even for root: procfs takes no new directories.
    let e = fails(&mut sh, "snapshot /proc/kmemlab-snapshot-test");
    assert!(
        e.starts_with("cannot create /proc/kmemlab-snapshot-test: "),
        "{e}"
    );
    fails(&mut sh, "snapshot");
    fails(&mut sh, "snapshot a b");

    // An empty directory is taken.
    let empty = base.join("empty");
    std::fs::create_dir_all(&empty).unwrap();
    exec(&mut sh, &format!("snapshot {}", empty.display()));
    assert!(empty.join("proc/meminfo").is_file());

    // The binary: exit status 2 and the reason on standard error.
    let o = kmemlab(&["snapshot", &file.display().to_string()], "");
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(
        stderr(&o).starts_with("kmemlab: ") && stderr(&o).contains("is not a directory"),
        "{}",
        stderr(&o)
    );
}

/// Names no directory entry can have are left out and reported as sysfs reports a
/// duplicate; the rest of the tree is written.
#[test]
fn unusable_names_are_skipped_with_the_kernels_words() {
    let mut sh = shell(&[]);
    exec(&mut sh, "kmem_cache_create . 50 0 SLAB_RED_ZONE");
    exec(&mut sh, "kmem_cache_create .. 50");
    let dir = scratch("names");
    let (json, text) = exec(&mut sh, &format!("snapshot {}", dir.display()));
    assert_eq!(
        json["skipped"],
        serde_json::json!([
            "sysfs: cannot create duplicate filename '/kernel/slab/.'",
            "sysfs: cannot create duplicate filename '/kernel/slab/..'"
        ]),
        "{text}"
    );
    assert!(text.contains("\n  skipped: sysfs: cannot create duplicate filename"));
    // `..`'s directory is there under its unique id, only its name's link is not.
    assert_eq!(
        read(&dir.join("sys/kernel/slab/:0000056/object_size")),
        "50\n"
    );
    assert!(dir.join("proc/slabinfo").is_file());
}

/// `kmemlab snapshot` checks DIR before it runs the script.
#[test]
fn the_subcommand_checks_dir_before_the_script() {
    let dir = scratch("busy");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("old"), "").unwrap();
    let script = scratch("busy.kmem");
    std::fs::write(&script, "kmalloc 64 GFP_KERNEL\n").unwrap();
    let o = kmemlab(
        &[
            "snapshot",
            &dir.display().to_string(),
            "--script",
            &script.display().to_string(),
        ],
        "",
    );
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("is not empty"), "{}", stderr(&o));
    assert_eq!(stdout(&o), "", "the script did not run");
}

/// Where the shell runs for someone else (the explorer's console, the fuzzers) it may not
/// write to the host.
#[test]
fn without_host_files_the_command_is_refused() {
    let args = MachineArgs::parse_from([]).expect("flags");
    let mut sh = Shell::new(args.boot().expect("boot"));
    let dir = scratch("refused");
    let e = fails(&mut sh, &format!("snapshot {}", dir.display()));
    assert!(e.contains("host's file system"), "{e}");
    assert!(!dir.exists());
}

/// Run `command` under `unshare -rm` with the snapshot mounted; its standard output.
fn with_snapshot(dir: &Path, command: &[&str]) -> String {
    let mount = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../examples/snapshot-mount.sh"
    );
    let o = Command::new("unshare")
        .args(["-rm", "sh", mount])
        .arg(dir)
        .args(command)
        .output()
        .expect("unshare (util-linux) must be installed: .ci/run installs it");
    assert!(
        o.status.success(),
        "{command:?} in the snapshot: {}\n{}",
        String::from_utf8_lossy(&o.stderr),
        String::from_utf8_lossy(&o.stdout)
    );
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// `(active_objs, num_objs, objsize, objperslab, num_slabs)` of every cache, from the
/// kernel side's own counts.
fn slab_counts(sh: &Shell) -> Vec<(String, [u64; 5])> {
    let mm = sh.machine.mm();
    let mut rows = Vec::new();
    mm.for_each_cache(|s| {
        let i = kmemlab_mm::procfs::slab_info(&mm, s);
        rows.push((
            s.name().to_string(),
            [
                i.active_objs,
                i.num_objs,
                i.objsize.into(),
                i.objperslab.into(),
                i.num_slabs,
            ],
        ));
        None::<()>
    });
    rows
}

/// The numbers of the line of `text` whose first word is `first` (or, with `last`, whose
/// last word is).
fn numbers_of(text: &str, pick: impl Fn(&[&str]) -> bool) -> Vec<u64> {
    let line = text
        .lines()
        .map(|l| l.split_whitespace().collect::<Vec<_>>())
        .find(|w| pick(w))
        .unwrap_or_else(|| panic!("no such line in:\n{text}"));
    line.iter().filter_map(|w| w.parse().ok()).collect()
}

/// procps reads the snapshot as it reads a kernel's files: slabtop and `vmstat -m` show
/// kmemlab's slab counts, `free` and `vmstat -s` its memory totals.
#[test]
fn procps_tools_read_the_snapshot() {
    let flags = ["--ram", "512M", "--seed", "7"];
    let script = scratch("workload.kmem");
    std::fs::write(&script, workload().join("\n")).unwrap();
    let dir = scratch("tools");
    let mut args: Vec<String> = flags.iter().map(|s| s.to_string()).collect();
    args.extend(["snapshot".into(), dir.display().to_string()]);
    args.extend(["--script".into(), script.display().to_string()]);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let o = kmemlab(&args, "");
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert!(stdout(&o).contains("snapshot in "), "{}", stdout(&o));

    // The same machine and workload in-process: the numbers the tools must print.
    let mut sh = shell(&flags);
    for line in workload() {
        exec(&mut sh, &line);
    }
    let mem = kmemlab_mm::procfs::meminfo_values(&sh.machine.mm());
    let slabs = slab_counts(&sh);

    let top = with_snapshot(&dir, &["slabtop", "-o"]);
    let (active, total) = slabs
        .iter()
        .fold((0, 0), |(a, t), (_, c)| (a + c[0], t + c[1]));
    assert!(
        top.contains(&format!(
            "Active / Total Objects (% used)    : {active} / {total} "
        )),
        "{top}"
    );
    for cache in ["my_objs", "red_objs", "kmalloc-512"] {
        let c = slabs.iter().find(|(n, _)| n == cache).unwrap().1;
        // OBJS ACTIVE USE OBJ-SIZE SLABS OBJ/SLAB CACHE-SIZE NAME
        let row = numbers_of(&top, |w| w.last() == Some(&cache));
        assert_eq!(
            [row[0], row[1], row[2], row[3]],
            [c[1], c[0], c[4], c[3]],
            "{cache}:\n{top}"
        );
        assert!(c[0] > 0, "{cache} has objects");
    }

    let vm_m = with_snapshot(&dir, &["vmstat", "-m"]);
    for (cache, c) in &slabs {
        // Cache Num Total Size Pages (objects per slab)
        let row = numbers_of(&vm_m, |w| w.first() == Some(&cache.as_str()));
        assert_eq!(row, [c[0], c[1], c[2], c[3]], "{cache}:\n{vm_m}");
    }

    let kib = |pages: u64| pages * 4;
    let free = with_snapshot(&dir, &["free", "-k"]);
    // total used free shared buff/cache available
    let row = numbers_of(&free, |w| w.first() == Some(&"Mem:"));
    assert_eq!(row[0], kib(mem.total), "{free}");
    assert_eq!(row[2], kib(mem.free), "{free}");
    assert_eq!(row[5], kib(mem.available), "{free}");

    let vm_s = with_snapshot(&dir, &["vmstat", "-s"]);
    let line = |what: &str| numbers_of(&vm_s, |w| w.join(" ").ends_with(what))[0];
    assert_eq!(line("K total memory"), kib(mem.total), "{vm_s}");
    assert_eq!(line("K free memory"), kib(mem.free), "{vm_s}");

    // Readers of /sys/kernel/slab follow the links as they do on a kernel.
    let sys = with_snapshot(
        &dir,
        &[
            "sh",
            "-c",
            "readlink /sys/kernel/slab/my_objs; cat /sys/kernel/slab/my_objs/objs_per_slab",
        ],
    );
    assert_eq!(sys, ":0000192\n21\n");
}

/// The rows of a /proc/slabinfo (version 2.1) by its header's columns: every row must have
/// them all, numbers where the header names a number. `(name, [active_objs, num_objs,
/// objsize, objperslab, pagesperslab, active_slabs, num_slabs])`.
fn parse_slabinfo(text: &str) -> Vec<(String, [u64; 7])> {
    let mut lines = text.lines();
    assert_eq!(lines.next(), Some("slabinfo - version: 2.1"), "{text}");
    let header = lines.next().expect("the header");
    assert_eq!(
        header.split_whitespace().collect::<Vec<_>>(),
        [
            "#",
            "name",
            "<active_objs>",
            "<num_objs>",
            "<objsize>",
            "<objperslab>",
            "<pagesperslab>",
            ":",
            "tunables",
            "<limit>",
            "<batchcount>",
            "<sharedfactor>",
            ":",
            "slabdata",
            "<active_slabs>",
            "<num_slabs>",
            "<sharedavail>"
        ]
    );
    lines
        .map(|line| {
            let w: Vec<&str> = line.split_whitespace().collect();
            assert_eq!(w.len(), 16, "{line}");
            assert_eq!(
                (w[6], w[7], w[11], w[12]),
                (":", "tunables", ":", "slabdata")
            );
            let n = |i: usize| -> u64 {
                w[i].parse()
                    .unwrap_or_else(|_| panic!("column {i} of {line:?}"))
            };
            for i in [8, 9, 10, 15] {
                n(i);
            }
            (
                w[0].to_string(),
                [n(1), n(2), n(3), n(4), n(5), n(13), n(14)],
            )
        })
        .collect()
}

/// `kmemlab --slab-percpu sheaves snapshot`: its /proc/slabinfo parses as the default's
/// does, with the same caches in the same order and the same geometry (the per-CPU layer
/// does not lay out slabs), counts that are the machine's own, and slabtop reads it.
#[test]
fn a_sheaves_snapshot_parses_as_the_default() {
    let script = scratch("percpu-workload.kmem");
    std::fs::write(&script, workload().join("\n")).unwrap();
    let mut tables = Vec::new();
    for percpu in ["cpu-slab", "sheaves"] {
        let flags = ["--ram", "512M", "--seed", "7", "--slab-percpu", percpu];
        let dir = scratch(&format!("percpu-{percpu}"));
        let mut args: Vec<String> = flags.iter().map(|s| s.to_string()).collect();
        args.extend(["snapshot".into(), dir.display().to_string()]);
        args.extend(["--script".into(), script.display().to_string()]);
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let o = kmemlab(&args, "");
        assert_eq!(o.status.code(), Some(0), "{percpu}: {}", stderr(&o));
        let rows = parse_slabinfo(&read(&dir.join("proc/slabinfo")));
        for (name, c) in &rows {
            assert!(c[0] <= c[1] && c[5] <= c[6], "{percpu} {name}: {c:?}");
            assert_eq!(c[1], c[3] * c[6], "{percpu} {name}: {c:?}");
        }
        // The same machine and workload in-process: the kernel side's own counts.
        let mut sh = shell(&flags);
        for line in workload() {
            exec(&mut sh, &line);
        }
        let counts: Vec<(String, [u64; 5])> = rows
            .iter()
            .map(|(n, c)| (n.clone(), [c[0], c[1], c[2], c[3], c[6]]))
            .collect();
        assert_eq!(counts, slab_counts(&sh), "{percpu}");
        let top = with_snapshot(&dir, &["slabtop", "-o"]);
        let (active, total) = rows
            .iter()
            .fold((0, 0), |(a, t), (_, c)| (a + c[0], t + c[1]));
        assert!(
            top.contains(&format!(
                "Active / Total Objects (% used)    : {active} / {total} "
            )),
            "{percpu}: {top}"
        );
        tables.push(rows);
    }
    let geometry = |rows: &[(String, [u64; 7])]| -> Vec<(String, [u64; 3])> {
        rows.iter()
            .map(|(n, c)| (n.clone(), [c[2], c[3], c[4]]))
            .collect()
    };
    assert_eq!(geometry(&tables[0]), geometry(&tables[1]));
    // The sheaves (kmalloc'd, holding objects their slabs count as allocated) change the
    // counts: the two tables are not the same.
    assert_ne!(tables[0], tables[1]);
}
