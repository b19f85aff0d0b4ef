//! slabinfo.c's printers: the default one-line-per-cache table (`slabcache()` and its
//! header `first_line()`), the `-r` report (`report()`, `slab_stats()`), the `-a` aliases
//! (`alias()`), and each cache as JSON. Start at `slabcache`.

use std::fmt::Write;

use serde_json::json;

use super::{link_slabs, page_size, slab_bytes, slab_waste, store_size, Alias, Options, SlabDir};

pub(super) fn slab_json(s: &SlabDir) -> serde_json::Value {
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
pub(super) fn slabcache(o: &Options, s: &SlabDir, line: &mut usize, out: &mut String) -> bool {
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
pub(super) fn report(s: &SlabDir, stats: bool, out: &mut String) {
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
pub(super) fn alias(
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
