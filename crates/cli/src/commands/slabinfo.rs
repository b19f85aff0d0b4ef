//! `slabinfo`: the kernel's `tools/mm/slabinfo.c` (Linux 6.6) on the machine's
//! `/sys/kernel/slab` tree.
//!
//! As the tool does, it reads each cache directory's files (through the same renderer as
//! `cat /sys/kernel/slab/<cache>/<file>`, keeping the leading number as `get_obj()` does),
//! the alias links, then prints the default table (`slabcache()`), a report (`-r`,
//! `report()` and `slab_stats()`), totals (`-T`, `totals()`), aliases (`-a`, `alias()`),
//! or the activity format (`-D`); sorted by name, size (`-S`), loss (`-L`), activity
//! (`-A`) or partial slabs (`-P`).

use std::fmt::Write;

use kmemlab_mm::slab::KmemCacheRef;
use kmemlab_mm::{Mm, PAGE_SIZE};
use kmemlab_sim::SimPlatform;
use serde_json::json;

use super::Command;
use crate::shell::{Shell, Value};

/// This module's shell commands.
pub(super) const COMMANDS: &[Command] = &[
    Command {
        name: "slabinfo",
        usage: USAGE,
        help: "tools/mm/slabinfo: caches from /sys/kernel/slab (-r report, -T totals, -L loss, -S size, -A activity, -D activity format, -a aliases)",
        mutates: false,
        run: slabinfo,
    },
];

/// The usage line.
pub const USAGE: &str = "[-aADeBfilLPrSTUz1...] [-N lines] [slab-regexp]";

/// The options `main()` of slabinfo.c takes that this command has.
#[derive(Default)]
struct Options {
    show_alias: bool,
    sort_active: bool,
    show_bytes: bool,
    show_activity: bool,
    show_empty: bool,
    show_first_alias: bool,
    show_inverted: bool,
    show_slab: bool,
    sort_loss: bool,
    sort_partial: bool,
    show_report: bool,
    sort_size: bool,
    show_totals: bool,
    unreclaim_only: bool,
    include_zero: bool,
    show_single_ref: bool,
    output_lines: Option<usize>,
    pattern: Option<String>,
}

fn parse_options(args: &[&str]) -> Result<Options, String> {
    let mut o = Options::default();
    let mut args = args.iter();
    while let Some(&arg) = args.next() {
        let Some(letters) = arg.strip_prefix('-').filter(|l| !l.is_empty()) else {
            if o.pattern.is_some() {
                return Err(format!(
                    "more than one slab pattern ('{arg}'); usage: {USAGE}"
                ));
            }
            o.pattern = Some(arg.to_string());
            continue;
        };
        for c in letters.chars() {
            match c {
                'a' => o.show_alias = true,
                'A' => o.sort_active = true,
                'B' => o.show_bytes = true,
                'D' => o.show_activity = true,
                'e' => o.show_empty = true,
                'f' => o.show_first_alias = true,
                'i' => o.show_inverted = true,
                'l' => o.show_slab = true,
                'L' => o.sort_loss = true,
                'P' => o.sort_partial = true,
                'r' => o.show_report = true,
                'S' => o.sort_size = true,
                'T' => o.show_totals = true,
                'U' => o.unreclaim_only = true,
                'z' => o.include_zero = true,
                '1' => o.show_single_ref = true,
                'N' => {
                    let n = args
                        .next()
                        .ok_or("-N needs a number of lines")?
                        .parse::<i64>()
                        .map_err(|_| "-N needs a number of lines".to_string())?;
                    o.output_lines = Some(n.max(1) as usize);
                }
                _ => return Err(format!("slabinfo: Invalid option '{c}'; usage: {USAGE}")),
            }
        }
    }
    if !o.show_alias && !o.show_report {
        o.show_slab = true;
    }
    Ok(o)
}

/// One cache directory, as `struct slabinfo` holds it.
#[derive(Clone, Default, serde::Serialize)]
struct SlabDir {
    name: String,
    #[serde(skip)]
    refs: u32,
    aliases: u64,
    align: u64,
    cache_dma: u64,
    cpu_slabs: u64,
    destroy_by_rcu: u64,
    hwcache_align: u64,
    object_size: u64,
    objects: u64,
    objects_partial: u64,
    objs_per_slab: u64,
    order: u64,
    partial: u64,
    poison: u64,
    reclaim_account: u64,
    red_zone: u64,
    sanity_checks: u64,
    slab_size: u64,
    slabs: u64,
    store_user: u64,
    trace: u64,
    alloc_fastpath: u64,
    alloc_slowpath: u64,
    free_fastpath: u64,
    free_slowpath: u64,
    free_frozen: u64,
    free_add_partial: u64,
    free_remove_partial: u64,
    alloc_from_partial: u64,
    alloc_slab: u64,
    alloc_refill: u64,
    free_slab: u64,
    cpuslab_flush: u64,
    deactivate_full: u64,
    deactivate_empty: u64,
    deactivate_to_head: u64,
    deactivate_to_tail: u64,
    deactivate_remote_frees: u64,
    order_fallback: u64,
    cmpxchg_double_cpu_fail: u64,
    cmpxchg_double_fail: u64,
    cpu_partial_alloc: u64,
    cpu_partial_free: u64,
    alloc_node_mismatch: u64,
    deactivate_bypass: u64,
}

/// An alias link: its name and the directory it points to.
struct Alias {
    name: String,
    target: String,
}

/// `get_obj()`: the file's leading number (`atol`), 0 for a missing file.
fn get_obj(mm: &Mm<SimPlatform>, r: KmemCacheRef, file: &str) -> u64 {
    let mut text = String::new();
    match mm.show_slab_attr(r, file, &mut text) {
        Ok(true) => text
            .split(|c: char| !c.is_ascii_digit())
            .next()
            .and_then(|n| n.parse().ok())
            .unwrap_or(0),
        _ => 0,
    }
}

fn read_dir(mm: &Mm<SimPlatform>, name: &str, r: KmemCacheRef) -> SlabDir {
    macro_rules! read {
        ($($f:ident),*) => {
            SlabDir { name: name.to_string(), refs: 0, $( $f: get_obj(mm, r, stringify!($f)), )* }
        };
    }
    read!(
        aliases,
        align,
        cache_dma,
        cpu_slabs,
        destroy_by_rcu,
        hwcache_align,
        object_size,
        objects,
        objects_partial,
        objs_per_slab,
        order,
        partial,
        poison,
        reclaim_account,
        red_zone,
        sanity_checks,
        slab_size,
        slabs,
        store_user,
        trace,
        alloc_fastpath,
        alloc_slowpath,
        free_fastpath,
        free_slowpath,
        free_frozen,
        free_add_partial,
        free_remove_partial,
        alloc_from_partial,
        alloc_slab,
        alloc_refill,
        free_slab,
        cpuslab_flush,
        deactivate_full,
        deactivate_empty,
        deactivate_to_head,
        deactivate_to_tail,
        deactivate_remote_frees,
        order_fallback,
        cmpxchg_double_cpu_fail,
        cmpxchg_double_fail,
        cpu_partial_alloc,
        cpu_partial_free,
        alloc_node_mismatch,
        deactivate_bypass
    )
}

/// `read_slab_dir()`: directories (filtered by the pattern, except `:` ones) and links.
fn read_slab_dir(mm: &Mm<SimPlatform>, pattern: &regex::Regex) -> (Vec<SlabDir>, Vec<Alias>) {
    let mut dirs = Vec::new();
    let mut links = Vec::new();
    let mut caches = Vec::new();
    mm.for_each_cache(|s| {
        caches.push((
            s.handle(),
            s.name().to_string(),
            mm.sysfs_slab_dir(s).to_string(),
        ));
        None::<()>
    });
    caches.reverse();
    for (r, name, dir) in &caches {
        if dir.starts_with(':') || pattern.is_match(dir) {
            dirs.push(read_dir(mm, dir, *r));
        }
        if dir != name && pattern.is_match(name) {
            links.push(Alias {
                name: name.clone(),
                target: dir.clone(),
            });
        }
    }
    let dir_of = |r: KmemCacheRef| caches.iter().find(|c| c.0 == r).map(|c| c.2.clone());
    mm.for_each_alias(|name, r| {
        if let Some(target) = dir_of(r)
            && pattern.is_match(name)
        {
            links.push(Alias {
                name: name.to_string(),
                target,
            });
        }
    });
    (dirs, links)
}

/// `store_size()`: a size with one decimal and K, M or G unless `-B`.
fn store_size(value: u64, show_bytes: bool) -> String {
    let (divisor, trailer) = if show_bytes {
        (1, "")
    } else if value > 1_000_000_000 {
        (100_000_000, "G")
    } else if value > 1_000_000 {
        (100_000, "M")
    } else if value > 1000 {
        (100, "K")
    } else {
        (1, "")
    };
    let digits = (value / divisor).to_string();
    if divisor == 1 {
        return digits;
    }
    let (head, last) = digits.split_at(digits.len() - 1);
    format!("{head}.{last}{trailer}")
}

fn page_size() -> u64 {
    PAGE_SIZE as u64
}

/// `slab_size()`: bytes of the cache's slabs.
fn slab_bytes(s: &SlabDir) -> u64 {
    s.slabs * (page_size() << s.order)
}

/// `slab_activity()`.
fn slab_activity(s: &SlabDir) -> u64 {
    s.alloc_fastpath + s.free_fastpath + s.alloc_slowpath + s.free_slowpath
}

/// `slab_waste()`: slab memory less the objects' bytes (`objects * object_size`).
fn slab_waste(s: &SlabDir) -> u64 {
    slab_bytes(s).saturating_sub(s.objects * s.object_size)
}

/// The `slabinfo` shell command.
pub fn slabinfo(sh: &mut Shell, args: &[&str]) -> Result<Value, String> {
    let o = parse_options(args)?;
    let source = o.pattern.as_deref().unwrap_or(".*");
    let pattern = regex::RegexBuilder::new(source)
        .case_insensitive(true)
        .size_limit(1 << 20)
        .build()
        .map_err(|e| format!("slabinfo: Invalid pattern '{source}': {e}"))?;
    let mm = sh.machine.mm();
    let (mut dirs, mut aliases) = read_slab_dir(mm, &pattern);
    let mut out = String::new();
    let json;
    if o.show_alias {
        json = alias(&o, &mut dirs, &mut aliases, &mut out)?;
    } else if o.show_totals {
        json = totals(&dirs, &aliases, o.show_bytes, &mut out);
    } else {
        link_slabs(&mut dirs, &aliases)?;
        let actual = rename_slabs(&o, &mut dirs, &aliases);
        sort_slabs(&o, &mut dirs);
        json = output_slabs(&o, &dirs, actual, mm.slub_stats_enabled(), &mut out);
    }
    Ok(Value::Object(json, out.trim_end_matches('\n').to_string()))
}

/// `link_slabs()`: count the links to each directory.
fn link_slabs(dirs: &mut [SlabDir], aliases: &[Alias]) -> Result<(), String> {
    for a in aliases {
        let s = dirs
            .iter_mut()
            .find(|s| s.name == a.target)
            .ok_or_else(|| format!("Unresolved alias {}", a.target))?;
        s.refs += 1;
    }
    Ok(())
}

/// `find_one_alias()`: the longest alias of a directory, or the first `kmall…` one.
fn find_one_alias<'a>(dir: &str, aliases: &'a [Alias]) -> Option<&'a Alias> {
    let mut best: Option<&Alias> = None;
    for a in aliases.iter().filter(|a| a.target == dir) {
        if best.is_none_or(|b| b.name.len() < a.name.len()) {
            best = Some(a);
            if a.name.starts_with("kmall") {
                return best;
            }
        }
    }
    best
}

/// `rename_slabs()`: a `:` directory takes its alias's name (`*`, skipped, if none); the
/// number of slabs left.
fn rename_slabs(o: &Options, dirs: &mut [SlabDir], aliases: &[Alias]) -> usize {
    let mut actual = dirs.len();
    for s in dirs.iter_mut().filter(|s| s.name.starts_with(':')) {
        if s.refs > 1 && !o.show_first_alias {
            continue;
        }
        match find_one_alias(&s.name, aliases) {
            Some(a) => s.name = a.name.clone(),
            None => {
                s.name = "*".to_string();
                actual -= 1;
            }
        }
    }
    actual
}

/// `sort_slabs()`: by name, or bigger first by size, activity, loss or partial slabs
/// (ties by name); `-i` inverts.
fn sort_slabs(o: &Options, dirs: &mut [SlabDir]) {
    let by_name = |a: &SlabDir, b: &SlabDir| a.name.to_lowercase().cmp(&b.name.to_lowercase());
    let key = |s: &SlabDir| {
        if o.sort_size {
            Some(slab_bytes(s))
        } else if o.sort_active {
            Some(slab_activity(s))
        } else if o.sort_loss {
            Some(slab_waste(s))
        } else if o.sort_partial {
            Some(s.partial)
        } else {
            None
        }
    };
    dirs.sort_by(|a, b| {
        let order = match (key(a), key(b)) {
            (Some(x), Some(y)) if x != y => y.cmp(&x),
            _ => by_name(a, b),
        };
        if o.show_inverted {
            order.reverse()
        } else {
            order
        }
    });
}

fn output_slabs(
    o: &Options,
    dirs: &[SlabDir],
    actual: usize,
    stats: bool,
    out: &mut String,
) -> serde_json::Value {
    let mut shown = Vec::new();
    let mut line = 0;
    for s in dirs.iter().take(o.output_lines.unwrap_or(usize::MAX)) {
        if s.name == "*" {
            continue;
        }
        if o.show_slab && actual != 1 {
            if slabcache(o, s, &mut line, out) {
                shown.push(s);
            }
        } else if o.show_slab || o.show_report {
            if o.unreclaim_only && s.reclaim_account != 0 {
                continue;
            }
            report(s, stats, out);
            shown.push(s);
        }
    }
    json!({ "caches": shown.iter().map(|s| slab_json(s)).collect::<Vec<_>>() })
}

fn slab_json(s: &SlabDir) -> serde_json::Value {
    let mut v = serde_json::to_value(s).unwrap_or_default();
    if let Some(map) = v.as_object_mut() {
        map.insert("space".into(), json!(slab_bytes(s)));
        map.insert("loss".into(), json!(slab_waste(s)));
    }
    v
}

fn flags_of(s: &SlabDir) -> String {
    let mut flags = String::new();
    for (on, c) in [
        (s.aliases != 0, '*'),
        (s.cache_dma != 0, 'd'),
        (s.hwcache_align != 0, 'A'),
        (s.poison != 0, 'P'),
        (s.reclaim_account != 0, 'a'),
        (s.red_zone != 0, 'Z'),
        (s.sanity_checks != 0, 'F'),
        (s.store_user != 0, 'U'),
        (s.trace != 0, 'T'),
    ] {
        if on {
            flags.push(c);
        }
    }
    flags
}

/// `slabcache()`: one line of the table (the heading before the first); false when the
/// cache is skipped.
fn slabcache(o: &Options, s: &SlabDir, line: &mut usize, out: &mut String) -> bool {
    if o.unreclaim_only && s.reclaim_account != 0 {
        return false;
    }
    if !o.include_zero && !o.show_empty && s.slabs == 0 {
        return false;
    }
    if o.show_empty && s.slabs != 0 {
        return false;
    }
    let size = store_size(
        if o.sort_loss {
            slab_waste(s)
        } else {
            slab_bytes(s)
        },
        o.show_bytes,
    );
    let dist = format!(
        "{}/{}/{}",
        s.slabs.wrapping_sub(s.cpu_slabs),
        s.partial,
        s.cpu_slabs
    );
    if *line == 0 {
        first_line(o, out);
    }
    *line += 1;
    if o.show_activity {
        let total_alloc = s.alloc_fastpath + s.alloc_slowpath;
        let total_free = s.free_fastpath + s.free_slowpath;
        let _ = writeln!(
            out,
            "{:<21} {:>8} {:>10} {:>10} {:>3} {:>3} {:>5} {:>1} {:>4} {:>4}",
            s.name,
            s.objects,
            total_alloc,
            total_free,
            percent(s.alloc_fastpath, total_alloc),
            percent(s.free_fastpath, total_free),
            s.order_fallback,
            s.order,
            s.cmpxchg_double_fail,
            s.cmpxchg_double_cpu_fail
        );
    } else {
        let slab_mem = slab_bytes(s);
        let _ = writeln!(
            out,
            "{:<21} {:>8} {:>7} {:>15} {:>14} {:>4} {:>1} {:>3} {:>3} {}",
            s.name,
            s.objects,
            s.object_size,
            size,
            dist,
            s.objs_per_slab,
            s.order,
            (s.partial * 100).checked_div(s.slabs).unwrap_or(100),
            if s.slabs != 0 {
                s.objects * s.object_size * 100 / slab_mem.max(1)
            } else {
                100
            },
            flags_of(s)
        );
    }
    true
}

/// `a * 100 / b`, 0 when `b` is 0.
fn percent(a: u64, b: u64) -> u64 {
    (a * 100).checked_div(b).unwrap_or(0)
}

fn first_line(o: &Options, out: &mut String) {
    if o.show_activity {
        out.push_str(
            "Name                   Objects      Alloc       Free   %Fast Fallb O CmpX   UL\n",
        );
    } else {
        let _ = writeln!(
            out,
            "Name                   Objects Objsize           {} Slabs/Part/Cpu  O/S O %Fr %Ef Flg",
            if o.sort_loss { " Loss" } else { "Space" }
        );
    }
}

fn on_off(x: u64) -> &'static str {
    if x != 0 {
        "On "
    } else {
        "Off"
    }
}

/// `report()`.
fn report(s: &SlabDir, stats: bool, out: &mut String) {
    let slab_mem = page_size() << s.order;
    let _ = writeln!(
        out,
        "\nSlabcache: {:<15}  Aliases: {:>2} Order : {:>2} Objects: {}",
        s.name, s.aliases, s.order, s.objects
    );
    for (on, text) in [
        (s.hwcache_align, "** Hardware cacheline aligned"),
        (s.cache_dma, "** Memory is allocated in a special DMA zone"),
        (s.destroy_by_rcu, "** Slabs are destroyed via RCU"),
        (s.reclaim_account, "** Reclaim accounting active"),
    ] {
        if on != 0 {
            let _ = writeln!(out, "{text}");
        }
    }
    out.push_str("\nSizes (bytes)     Slabs              Debug                Memory\n");
    out.push_str("------------------------------------------------------------------------\n");
    let _ = writeln!(
        out,
        "Object : {:>7}  Total  : {:>7}   Sanity Checks : {}  Total: {:>7}",
        s.object_size,
        s.slabs,
        on_off(s.sanity_checks),
        s.slabs * slab_mem
    );
    let _ = writeln!(
        out,
        "SlabObj: {:>7}  Full   : {:>7}   Redzoning     : {}  Used : {:>7}",
        s.slab_size,
        s.slabs as i64 - s.partial as i64 - s.cpu_slabs as i64,
        on_off(s.red_zone),
        s.objects * s.object_size
    );
    let _ = writeln!(
        out,
        "SlabSiz: {:>7}  Partial: {:>7}   Poisoning     : {}  Loss : {:>7}",
        slab_mem,
        s.partial,
        on_off(s.poison),
        slab_waste(s)
    );
    let _ = writeln!(
        out,
        "Loss   : {:>7}  CpuSlab: {:>7}   Tracking      : {}  Lalig: {:>7}",
        s.slab_size.saturating_sub(s.object_size),
        s.cpu_slabs,
        on_off(s.store_user),
        s.slab_size.saturating_sub(s.object_size) * s.objects
    );
    let _ = writeln!(
        out,
        "Align  : {:>7}  Objects: {:>7}   Tracing       : {}  Lpadd: {:>7}",
        s.align,
        s.objs_per_slab,
        on_off(s.trace),
        slab_mem.saturating_sub(s.objs_per_slab * s.slab_size) * s.slabs
    );
    let _ = writeln!(out, "\n{} has no kmem_cache operations", s.name);
    for (what, rule) in [
        (
            "allocation",
            "-----------------------------------------------------------------------",
        ),
        (
            "freeing",
            "------------------------------------------------------------------------",
        ),
    ] {
        let _ = writeln!(out, "\n{}: Kernel object {what}\n{rule}\nNo Data", s.name);
    }
    let _ = writeln!(out, "\n{}: No NUMA information available.", s.name);
    if stats {
        slab_stats(s, out);
    }
}

/// `slab_stats()`: the fast and slow path table, deactivations and compare-exchange
/// retries.
fn slab_stats(s: &SlabDir, out: &mut String) {
    if s.alloc_slab == 0 {
        return;
    }
    let total_alloc = s.alloc_fastpath + s.alloc_slowpath;
    let total_free = s.free_fastpath + s.free_slowpath;
    if total_alloc == 0 {
        return;
    }
    out.push_str("\nSlab Perf Counter       Alloc     Free %Al %Fr\n");
    out.push_str("--------------------------------------------------\n");
    let to_partial = s.deactivate_to_head + s.deactivate_to_tail;
    for (label, a, f) in [
        ("Fastpath", s.alloc_fastpath, s.free_fastpath),
        ("Slowpath", total_alloc - s.alloc_fastpath, s.free_slowpath),
        ("Page Alloc", s.alloc_slab, s.free_slab),
        ("Add partial", to_partial, s.free_add_partial),
        (
            "Remove partial",
            s.alloc_from_partial,
            s.free_remove_partial,
        ),
        ("Cpu partial list", s.cpu_partial_alloc, s.cpu_partial_free),
        (
            "RemoteObj/SlabFrozen",
            s.deactivate_remote_frees,
            s.free_frozen,
        ),
    ] {
        let _ = writeln!(
            out,
            "{label:<20} {a:>8} {f:>8} {:>3} {:>3}",
            a * 100 / total_alloc,
            percent(f, total_free)
        );
    }
    let _ = writeln!(out, "{:<21}{total_alloc:>8} {total_free:>8}\n", "Total");
    if s.cpuslab_flush != 0 {
        let _ = writeln!(out, "Flushes {:>8}", s.cpuslab_flush);
    }
    let total = s.deactivate_full
        + s.deactivate_empty
        + s.deactivate_to_head
        + s.deactivate_to_tail
        + s.deactivate_bypass;
    if total != 0 {
        out.push_str("\nSlab Deactivation             Occurrences %\n");
        out.push_str("-------------------------------------------------\n");
        for (label, n) in [
            ("Slab full", s.deactivate_full),
            ("Slab empty", s.deactivate_empty),
            ("Moved to head of partial list", s.deactivate_to_head),
            ("Moved to tail of partial list", s.deactivate_to_tail),
            ("Deactivation bypass", s.deactivate_bypass),
            ("Refilled from foreign frees", s.alloc_refill),
            ("Node mismatch", s.alloc_node_mismatch),
        ] {
            let pct = (n * 100).checked_div(total).unwrap_or(0);
            let _ = writeln!(out, "{label:<29} {n:>7}  {pct:>3}%");
        }
    }
    if s.cmpxchg_double_fail != 0 || s.cmpxchg_double_cpu_fail != 0 {
        let _ = writeln!(
            out,
            "\nCmpxchg_double Looping\n------------------------\nLocked Cmpxchg Double redos   {}\nUnlocked Cmpxchg Double redos {}",
            s.cmpxchg_double_fail, s.cmpxchg_double_cpu_fail
        );
    }
}

/// `alias()`: each cache with more than one name, and its aliases (`-i`: one line per
/// alias; `-1`: caches with a single name too).
fn alias(
    o: &Options,
    dirs: &mut [SlabDir],
    aliases: &mut [Alias],
    out: &mut String,
) -> Result<serde_json::Value, String> {
    aliases.sort_by(|a, b| {
        let key = |x: &Alias| {
            if !o.show_inverted {
                x.target.to_lowercase()
            } else {
                x.name.to_lowercase()
            }
        };
        key(a).cmp(&key(b)).then_with(|| a.name.cmp(&b.name))
    });
    link_slabs(dirs, aliases)?;
    let refs = |target: &str| dirs.iter().find(|s| s.name == target).map_or(0, |s| s.refs);
    let mut active: Option<&str> = None;
    let mut listed = Vec::new();
    for a in aliases.iter() {
        if !o.show_single_ref && refs(&a.target) == 1 {
            continue;
        }
        listed.push(json!({ "alias": a.name, "cache": a.target }));
        if o.show_inverted {
            let _ = writeln!(out, "{:<15} -> {}", a.name, a.target);
        } else if active == Some(a.target.as_str()) {
            let _ = write!(out, " {}", a.name);
        } else {
            let _ = write!(out, "\n{:<12} <- {}", a.target, a.name);
            active = Some(&a.target);
        }
    }
    if active.is_some() {
        out.push('\n');
    }
    let text = out.trim_start_matches('\n').to_string();
    *out = text;
    Ok(json!({ "aliases": listed }))
}

/// Minimum, maximum and total of one figure over the caches `totals()` counts.
#[derive(Clone, Copy)]
struct Range {
    min: u64,
    max: u64,
    total: u64,
}

impl Range {
    fn new(min: u64) -> Range {
        Range {
            min,
            max: 0,
            total: 0,
        }
    }
    fn add(&mut self, v: u64) {
        self.min = self.min.min(v);
        self.max = self.max.max(v);
        self.total += v;
    }
}

/// `totals()`: the summary of every cache with slabs and objects.
fn totals(
    dirs: &[SlabDir],
    aliases: &[Alias],
    show_bytes: bool,
    out: &mut String,
) -> serde_json::Value {
    const MAX: u64 = 1 << 63;
    let (mut objsize, mut partial, mut slabs, mut size) = (
        Range::new(MAX),
        Range::new(MAX),
        Range::new(MAX),
        Range::new(MAX),
    );
    let (mut used, mut waste, mut objects, mut objwaste) = (
        Range::new(MAX),
        Range::new(MAX),
        Range::new(MAX),
        Range::new(MAX),
    );
    let (mut memobj, mut ppart, mut partobj, mut ppartobj) = (
        Range::new(MAX),
        Range::new(100),
        Range::new(MAX),
        Range::new(100),
    );
    let (mut total_objwaste, mut total_objsize) = (0u64, 0u64);
    let mut used_slabs = 0u64;
    for s in dirs.iter().filter(|s| s.slabs != 0 && s.objects != 0) {
        used_slabs += 1;
        let sz = slab_bytes(s);
        let u = s.objects * s.object_size;
        let ow = s.slab_size.saturating_sub(s.object_size);
        objsize.add(s.object_size);
        partial.add(s.partial);
        slabs.add(s.slabs);
        size.add(sz);
        used.add(u);
        waste.add(sz.saturating_sub(u));
        objects.add(s.objects);
        objwaste.add(ow);
        memobj.add(s.slab_size);
        ppart.add((s.partial * 100 / s.slabs).min(100));
        partobj.add(s.objects_partial);
        ppartobj.add((s.objects_partial * 100 / s.objects).min(100));
        total_objwaste += s.objects * ow;
        total_objsize += s.objects * s.slab_size;
    }
    if objects.total == 0 {
        out.push_str("No objects\n");
        return json!({ "caches": dirs.len() });
    }
    let ss = |v: u64| store_size(v, show_bytes);
    let n = used_slabs;
    let alias_targets = dirs.iter().filter(|s| s.name.starts_with(':')).count();
    let _ = writeln!(out, "Slabcache Totals\n----------------");
    let _ = writeln!(
        out,
        "Slabcaches : {:>15}   Aliases  : {:>11}->{:<3}  Active:    {:>3}",
        dirs.len(),
        aliases.len(),
        alias_targets,
        used_slabs
    );
    let _ = writeln!(
        out,
        "Memory used: {:>15}   # Loss   : {:>15}   MRatio:{:>6}%",
        ss(size.total),
        ss(waste.total),
        ss(waste.total * 100 / used.total.max(1))
    );
    let _ = writeln!(
        out,
        "# Objects  : {:>15}   # PartObj: {:>15}   ORatio:{:>6}%",
        ss(objects.total),
        ss(partobj.total),
        ss(partobj.total * 100 / objects.total)
    );
    out.push_str(
        "\nPer Cache         Average              Min              Max            Total\n",
    );
    let _ = writeln!(out, "{}", "-".repeat(39 + 37));
    let row = |out: &mut String, label: &str, r: Range, avg: u64, total: u64, pct: bool| {
        let _ = if pct {
            writeln!(
                out,
                "{label}{:>15}% {:>15}% {:>15}% {:>15}%",
                ss(avg),
                ss(r.min),
                ss(r.max),
                ss(total)
            )
        } else {
            writeln!(
                out,
                "{label:<10}{:>15}  {:>15}  {:>15}  {:>15}",
                ss(avg),
                ss(r.min),
                ss(r.max),
                ss(total)
            )
        };
    };
    row(
        out,
        "#Objects",
        objects,
        objects.total / n,
        objects.total,
        false,
    );
    row(out, "#Slabs", slabs, slabs.total / n, slabs.total, false);
    row(
        out,
        "#PartSlab",
        partial,
        partial.total / n,
        partial.total,
        false,
    );
    row(
        out,
        "%PartSlab",
        ppart,
        ppart.total / n,
        partial.total * 100 / slabs.total,
        true,
    );
    row(
        out,
        "PartObjs",
        partobj,
        partobj.total / n,
        partobj.total,
        false,
    );
    row(
        out,
        "% PartObj",
        ppartobj,
        ppartobj.total / n,
        partobj.total * 100 / objects.total,
        true,
    );
    row(out, "Memory", size, size.total / n, size.total, false);
    row(out, "Used", used, used.total / n, used.total, false);
    row(out, "Loss", waste, waste.total / n, waste.total, false);
    out.push_str("\nPer Object        Average              Min              Max\n");
    let _ = writeln!(out, "{}", "-".repeat(39 + 20));
    for (label, avg, r) in [
        ("Memory    ", total_objsize / objects.total, memobj),
        ("User      ", used.total / objects.total, objsize),
        ("Loss      ", total_objwaste / objects.total, objwaste),
    ] {
        let _ = writeln!(
            out,
            "{label}{:>15}  {:>15}  {:>15}",
            ss(avg),
            ss(r.min),
            ss(r.max)
        );
    }
    json!({
        "slabcaches": dirs.len(),
        "aliases": aliases.len(),
        "alias_targets": alias_targets,
        "active": used_slabs,
        "memory_used": size.total,
        "loss": waste.total,
        "objects": objects.total,
        "partial_objects": partobj.total,
        "used": used.total,
    })
}
