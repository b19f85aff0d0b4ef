//! `kmem -s [CACHE|ADDR]` (crash's cache summary: CACHE OBJSIZE ALLOCATED TOTAL SLABS
//! SSIZE NAME) and `kmem -S CACHE` (every slab per CPU and per node, its objects as FREE
//! or [ALLOCATED]), from the mm crate's checked slab queries, and what `kmem ADDR` says of a
//! slab object (`describe_slab_object`, with its owner tracks). Start at `cache_table`.

use kmemlab_mm::slab::query::{ObjectState, SlabObject, SlabPlace, SlabSummary};
use kmemlab_mm::slab::KmemCacheRef;
use kmemlab_mm::{Hardware, PAGE_SHIFT};
use serde_json::{json, Value as Json};

use super::address::{answer, page_row, PAGE_HEADER};
use super::{slab_size, struct_page, Mmp};
use crate::output::addr as hex;
use crate::shell::Value;

// ----- kmem -s / -S ---------------------------------------------------------------------

const CACHE_HEADER: &str = "CACHE             OBJSIZE  ALLOCATED     TOTAL  SLABS  SSIZE  NAME";

/// One `kmem -s` row and its JSON; a cache whose slabs are corrupted says so in the row.
fn cache_row(mm: &Mmp, r: KmemCacheRef) -> (String, Json) {
    let Ok(s) = mm.cache(r) else {
        let text = format!(
            "{:<16}  (corrupted: not a live kmem_cache)",
            format!("{:x}", r.0)
        );
        return (
            text,
            json!({"cache": hex(r.0), "corrupted": "not a live kmem_cache"}),
        );
    };
    match mm.slab_usage(r) {
        Ok(u) => (
            format!(
                "{:<16}  {:>7}  {:>9}  {:>8}  {:>5}  {:>5}  {}",
                format!("{:x}", r.0),
                s.object_size(),
                u.allocated,
                u.total,
                u.slabs,
                slab_size(s),
                s.name()
            ),
            json!({"cache": hex(r.0), "name": s.name().as_str(), "objsize": s.object_size(),
                "size": s.size(), "allocated": u.allocated, "total": u.total, "slabs": u.slabs,
                "ssize": 4096u64 << s.oo().order.min(20)}),
        ),
        Err(e) => (
            format!(
                "{:<16}  {:>7}  (corrupted: {e})  {}",
                format!("{:x}", r.0),
                s.object_size(),
                s.name()
            ),
            json!({"cache": hex(r.0), "name": s.name().as_str(), "objsize": s.object_size(),
                "corrupted": e.to_string()}),
        ),
    }
}

/// Every cache, newest first as `/proc/slabinfo` lists them.
fn all_caches(mm: &Mmp) -> Vec<KmemCacheRef> {
    let mut caches = Vec::new();
    mm.for_each_cache(|s| {
        caches.push(s.handle());
        None::<()>
    });
    caches
}

/// `kmem -s [CACHE]`.
pub(super) fn cache_table(mm: &Mmp, only: Option<KmemCacheRef>) -> Result<Value, String> {
    let caches = only.map_or_else(|| all_caches(mm), |r| vec![r]);
    let mut text = String::from(CACHE_HEADER);
    let mut rows = Vec::new();
    for r in caches {
        let (line, row) = cache_row(mm, r);
        text.push('\n');
        text.push_str(&line);
        rows.push(row);
    }
    Ok(Value::Object(json!({"caches": rows}), text))
}

const SLAB_HEADER: &str = "  SLAB              MEMORY            NODE  TOTAL  ALLOCATED  FREE";

/// One slab's row, its objects as `FREE / [ALLOCATED]` (crash marks objects on a CPU's
/// freelist `(cpu N cache)`), and its JSON. `mark` is an object to point at.
fn slab_block(mm: &Mmp, r: KmemCacheRef, slab: &SlabSummary, only: Option<u16>) -> (String, Json) {
    let mut objects = Vec::new();
    let mut lines = Vec::new();
    let walked = mm.for_each_object_in_slab(r, slab.pfn, &mut |i, va, state| {
        if only.is_some_and(|o| o != i) {
            objects.push((i, state));
            return;
        }
        lines.push(match state {
            ObjectState::Allocated => format!("  [{:x}]", va.0),
            ObjectState::Free => format!("   {:x}", va.0),
            ObjectState::FreeOnCpu(cpu) => format!("   {:x}  (cpu {cpu} cache)", va.0),
        });
        objects.push((i, state));
    });
    let memory = mm.layout().phys_to_virt(slab.pfn.phys().0).unwrap_or(0);
    let head = format!("{:x}", struct_page(mm, slab.pfn));
    if let Err(e) = walked {
        let text = format!("{SLAB_HEADER}\n  {head:<16}  {memory:<16x}  (corrupted: {e})");
        return (
            text,
            json!({"slab": hex(struct_page(mm, slab.pfn)), "pfn": slab.pfn.raw(), "corrupted": e.to_string()}),
        );
    }
    let free = objects.iter().filter(|(_, s)| s.is_free()).count();
    let mut text = format!(
        "{SLAB_HEADER}\n  {head:<16}  {memory:<16x}  {:>4}  {:>5}  {:>9}  {:>4}\n  FREE / [ALLOCATED]",
        0,
        slab.objects,
        slab.objects as usize - free,
        free
    );
    for l in &lines {
        text.push('\n');
        text.push_str(l);
    }
    let json_objects: Vec<Json> = objects
        .iter()
        .filter(|(i, _)| only.is_none_or(|o| o == *i))
        .map(|(i, s)| json!({"index": i, "state": state_name(*s), "cpu": cpu_of(*s)}))
        .collect();
    let j = json!({"slab": hex(struct_page(mm, slab.pfn)), "memory": hex(memory), "pfn": slab.pfn.raw(),
        "node": 0, "total": slab.objects, "allocated": slab.objects as usize - free, "free": free,
        "place": place_name(slab.place), "objects": json_objects});
    (text, j)
}

fn state_name(s: ObjectState) -> &'static str {
    match s {
        ObjectState::Allocated => "allocated",
        ObjectState::Free => "free",
        ObjectState::FreeOnCpu(_) => "free (cpu cache)",
    }
}

fn cpu_of(s: ObjectState) -> Option<usize> {
    match s {
        ObjectState::FreeOnCpu(cpu) => Some(cpu),
        _ => None,
    }
}

fn place_name(p: SlabPlace) -> String {
    match p {
        SlabPlace::CpuSlab(cpu) => format!("cpu {cpu} slab"),
        SlabPlace::CpuPartial(cpu) => format!("cpu {cpu} partial"),
        SlabPlace::NodePartial => "node 0 partial".into(),
        SlabPlace::NodeFull => "node 0 full".into(),
        SlabPlace::Unlisted => "node 0 full (on no list)".into(),
    }
}

/// `kmem -S CACHE`: the summary row, then each CPU's slab and partial list, then the
/// node's partial and full slabs, every object listed.
pub(super) fn cache_slabs(mm: &Mmp, r: KmemCacheRef) -> Result<Value, String> {
    let (row, summary) = cache_row(mm, r);
    let mut slabs = Vec::new();
    let walked = mm.for_each_slab_of(r, &mut |s| slabs.push(*s));
    let mut text = format!("{CACHE_HEADER}\n{row}");
    let mut json_slabs = Vec::new();
    let mut section = |text: &mut String, title: String, which: &dyn Fn(SlabPlace) -> bool| {
        text.push_str(&format!("\n{title}:"));
        let mut any = false;
        for slab in slabs.iter().filter(|s| which(s.place)) {
            let (t, j) = slab_block(mm, r, slab, None);
            text.push('\n');
            text.push_str(&t);
            json_slabs.push(j);
            any = true;
        }
        if !any {
            text.push_str("\n  (empty)");
        }
    };
    for cpu in 0..mm.platform().nr_cpus() {
        section(&mut text, format!("CPU {cpu} SLAB"), &|p| {
            p == SlabPlace::CpuSlab(cpu)
        });
        section(&mut text, format!("CPU {cpu} PARTIAL"), &|p| {
            p == SlabPlace::CpuPartial(cpu)
        });
    }
    let node = mm.node_slab_state(r).map_err(|e| e.to_string())?;
    text.push_str(&format!(
        "\nKMEM_CACHE_NODE   NODE  SLABS  PARTIAL  PER-CPU\n{:<16}  {:>4}  {:>5}  {:>7}  {:>7}",
        mm.cache_node_address(r)
            .map_or("-".to_string(), |a| format!("{a:x}")),
        0,
        node.nr_slabs,
        node.nr_partial,
        slabs
            .iter()
            .filter(|s| matches!(s.place, SlabPlace::CpuSlab(_) | SlabPlace::CpuPartial(_)))
            .count()
    ));
    let debug = mm.cache(r).map(|s| s.is_debug()).unwrap_or(false);
    section(&mut text, "NODE 0 PARTIAL".into(), &|p| {
        p == SlabPlace::NodePartial
    });
    section(&mut text, "NODE 0 FULL".into(), &|p| {
        matches!(p, SlabPlace::NodeFull | SlabPlace::Unlisted)
    });
    if !debug {
        text.push_str("\n  (SLUB keeps no full list without slab_debug: full slabs above were found in mem_map)");
    }
    let mut obj = json!({"cache": summary, "slabs": json_slabs,
        "node": {"node": 0, "kmem_cache_node": mm.cache_node_address(r).map(hex),
            "slabs": node.nr_slabs, "partial": node.nr_partial}});
    if let Err(e) = walked {
        text.push_str(&format!("\n  (corrupted: {e}; the walk stopped there)"));
        obj["corrupted"] = json!(e.to_string());
    }
    Ok(Value::Object(obj, text))
}

/// One owner track as the kernel's `print_track()` prints it:
/// `Allocated in <site> age=<ns> cpu=<n> pid=<n>`.
fn track_text(mm: &Mmp, what: &str, t: &kmemlab_mm::slab::debug::Track) -> String {
    format!(
        "{what} in {} age={} cpu={} pid={}",
        t.site.map_or("?".to_string(), |s| s.to_string()),
        mm.platform().clock_ns().saturating_sub(t.when),
        t.cpu,
        t.pid
    )
}

/// A slab object: crash's cache row, slab row and the object marked `[ALLOCATED]` or
/// free, then drgn's fields (index, offset) and the owner tracks when recorded.
pub(super) fn describe_slab_object(
    mm: &Mmp,
    addr: u64,
    found: Result<SlabObject, kmemlab_mm::slab::SlabError>,
) -> Result<Value, String> {
    let o = match found {
        Ok(o) => o,
        Err(e) => {
            return answer(
                "corrupted slab",
                addr,
                json!({"corrupted": e.to_string()}),
                format!("{addr:x}: in a slab page, but the slab is corrupted: {e}"),
            )
        }
    };
    let Ok(s) = mm.cache(o.cache) else {
        return Err("kmem: the object's cache went away".into());
    };
    let (row, cache_json) = cache_row(mm, o.cache);
    let (slab_text, slab_json) = slab_block(mm, o.cache, &o.slab, Some(o.index));
    let offset = addr.wrapping_sub(o.object.0);
    let mut text = format!("{CACHE_HEADER}\n{row}\n{slab_text}");
    text.push_str(&format!(
        "\n  object {:x}: index {} of {} in {}, {}{}",
        o.object.0,
        o.index,
        o.slab.objects,
        place_name(o.slab.place),
        state_name(o.state),
        if offset == 0 {
            String::new()
        } else {
            format!(", address is {offset} bytes inside")
        }
    ));
    if let Some(t) = &o.alloc_track {
        text.push_str(&format!("\n  {}", track_text(mm, "Allocated", t)));
    }
    if let Some(t) = &o.free_track {
        text.push_str(&format!("\n  {}", track_text(mm, "Freed", t)));
    }
    let pfn = mm.layout().virt_to_phys(addr).unwrap_or(0) >> PAGE_SHIFT;
    let (page_line, page_json) = page_row(mm, o.slab.pfn);
    text.push_str(&format!("\n\n{PAGE_HEADER}\n{page_line}"));
    let track = |t: &Option<kmemlab_mm::slab::debug::Track>| {
        t.map(|t| json!({"site": t.site.map(|s| s.to_string()), "cpu": t.cpu, "pid": t.pid, "when": t.when}))
    };
    let j = json!({"cache": cache_json, "name": s.name().as_str(), "object": hex(o.object.0),
        "index": o.index, "offset_in_object": offset, "state": state_name(o.state), "cpu": cpu_of(o.state),
        "free": o.state.is_free(), "slab": slab_json, "slab_place": place_name(o.slab.place),
        "pfn": pfn, "alloc_track": track(&o.alloc_track), "free_track": track(&o.free_track),
        "page": page_json});
    answer("slab object", addr, j, text)
}
