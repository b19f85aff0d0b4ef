//! `slabinfo`: the kernel's `tools/mm/slabinfo.c` (Linux 6.6) on the machine's
//! `/sys/kernel/slab` tree.
//!
//! As the tool does, it reads each cache directory's files (through the same renderer as
//! `cat /sys/kernel/slab/<cache>/<file>`, keeping the leading number as `get_obj()` does),
//! the alias links, then prints the default table (`slabcache()`), a report (`-r`,
//! `report()` and `slab_stats()`), totals (`-T`, `totals()`), aliases (`-a`, `alias()`),
//! or the activity format (`-D`); sorted by name, size (`-S`), loss (`-L`), activity
//! (`-A`) or partial slabs (`-P`).
//!
//! Where things are: this file holds the command table, the options (`parse_options`), the
//! size helpers and the main flow ([`slabinfo`]: read, link aliases, rename, sort, output);
//! `sysfs.rs` reads the cache directories and alias links; `print.rs` prints the default
//! line (`slabcache()`), the report, the statistics and the aliases; `totals.rs` prints
//! `-T`. Start at [`slabinfo`].

use kmemlab_mm::PAGE_SIZE;
use serde_json::json;

use super::Command;
use crate::shell::{Shell, Value};

mod print;
mod sysfs;
mod totals;

use print::{alias, report, slab_json, slabcache};
use sysfs::read_slab_dir;
use totals::totals;

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
    let (mut dirs, mut aliases) = read_slab_dir(&mm, &pattern);
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
