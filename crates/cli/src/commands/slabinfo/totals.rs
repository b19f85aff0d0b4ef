//! `slabinfo -T`: slabinfo.c's `totals()`, the minimum, maximum, average and total of each
//! figure over the caches. Start at `totals`.

use std::fmt::Write;

use serde_json::json;

use super::{slab_bytes, store_size, Alias, SlabDir};

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
pub(super) fn totals(
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
