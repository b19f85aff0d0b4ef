//! The read-only views of a session's machine: `/proc` files, zones, slabs, vmalloc,
//! page-table walks, CPUs, `info`, and the frames' legend. Each reads the kernel's own
//! structures (through the checked door) or runs the shell's read-only command, so what
//! the page shows is what the shell shows.
//!
//! Where things are: this file holds address parsing, `/proc`, `info`, who owns a frame
//! ([`frame_owner`]), the frames' legend, zones and CPUs; `slabs.rs` the slab caches, their
//! object maps and single objects; `vmalloc.rs` the frames behind an address
//! ([`frames_of`]), vmalloc areas and page-table walks. Start at [`info`].

use kmemlab_mm::addr::MAX_PAGE_ORDER;
use kmemlab_mm::mm_types::{PG_LARGE_KMALLOC, PG_SLAB};
use kmemlab_mm::slab::debug::TrackItem;
use kmemlab_mm::slab::KmemCacheRef;
use kmemlab_mm::{MigrateType, Mm, Page, Pfn, VirtAddr, PAGE_SHIFT, PAGE_SIZE};
use kmemlab_sim::SimPlatform;
use serde_json::{json, Value};

use super::frames;
use super::session::Machine;
use super::ApiError;
use crate::output::addr;
use crate::shell::Outcome;

mod slabs;
mod vmalloc;

pub use slabs::{slab_detail, slab_object, slabs};
pub use vmalloc::{frames_of, vmalloc, vmalloc_area, walk};

/// Parse an address or number given in a path: `0x…` hex or decimal.
pub fn parse_address(text: &str) -> Result<u64, ApiError> {
    let parsed = match text.strip_prefix("0x").or_else(|| text.strip_prefix("0X")) {
        Some(hex) => u64::from_str_radix(hex, 16).ok(),
        None => text.parse().ok(),
    };
    parsed.ok_or_else(|| {
        ApiError::bad_request(format!(
            "'{}' is not an address (0x… hex or decimal)",
            text.chars().take(64).collect::<String>()
        ))
    })
}

/// Run a read-only shell command on the session (as line `lines`, not counted), its
/// kernel lines kept in dmesg.
pub fn read_only_command(m: &mut Machine, line: &str) -> Option<Outcome> {
    let n = m.lines.max(1);
    let outcome = m.shell.exec_line(n, line)?;
    m.dmesg.extend(outcome.kernel.iter().cloned());
    Some(outcome)
}

/// `GET …/proc/{file}`: the text `cat /proc/{file}` prints in the shell.
pub fn proc_file(m: &mut Machine, file: &str) -> Result<String, ApiError> {
    let valid = !file.is_empty()
        && file.len() <= 64
        && file
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '/')
        && !file.contains("//");
    if !valid {
        return Err(ApiError::not_found(format!(
            "no /proc file '{}'",
            file.chars().take(64).collect::<String>()
        )));
    }
    let outcome = read_only_command(m, &format!("cat /proc/{file}"))
        .ok_or_else(|| ApiError::not_found("no /proc file"))?;
    let j = outcome.json();
    let message = j["message"].as_str().unwrap_or_default().to_string();
    if outcome.failed() {
        return Err(ApiError::not_found(message));
    }
    Ok(message + "\n")
}

/// `GET …/info/{x}`: the shell's `info`; `pfn:N` describes frame N as `info` does a
/// `struct page *` (computed directly: the shell's `info` of a page address asks
/// `ksize()`, which WARNs for a page that is no large kmalloc).
pub fn info(m: &mut Machine, x: &str) -> Result<Value, ApiError> {
    if let Some(pfn) = x.strip_prefix("pfn:") {
        let pfn = parse_address(pfn)?;
        let mm = m.shell.machine.mm();
        if mm.mem_map().get(Pfn(pfn)).is_none() || frames::max_pfn(&mm) <= pfn {
            return Err(ApiError::bad_request(format!(
                "pfn {pfn:#x} has no struct page"
            )));
        }
        let info = crate::describe::page_info(&mm, Pfn(pfn));
        let message = info.line();
        let owner = frame_owner(&mm, pfn);
        return Ok(json!({"result": info, "message": message, "owner": owner}));
    }
    let arg = x.to_string();
    let simple = !arg.is_empty()
        && arg.len() <= 64
        && arg.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
    if !simple {
        return Err(ApiError::bad_request(format!(
            "'{}' is not an address, a number or a name",
            arg.chars().take(64).collect::<String>()
        )));
    }
    let outcome = read_only_command(m, &format!("info {arg}"))
        .ok_or_else(|| ApiError::bad_request("nothing to look up"))?;
    let j = outcome.json();
    if outcome.failed() {
        return Err(ApiError::bad_request(
            j["message"].as_str().unwrap_or_default(),
        ));
    }
    Ok(json!({"result": j["result"], "message": j["message"]}))
}

/// At most this many objects of a slab frame are listed in its owner facts.
const OWNER_OBJECTS: u64 = 64;

/// Who owns frame `pfn` (which has a `struct page`), beyond its `struct page`: the slab
/// cache and objects, the large kmalloc block, the vmalloc area and offset, or the page
/// allocator's block. Read-only and checked: every word read from RAM (the compound
/// head, `slab->slab_cache`, the order) is validated first, and one that does not check
/// out gives a `"corrupt"` field saying what is wrong, never a kernel report.
pub fn frame_owner(mm: &Mm<SimPlatform>, pfn: u64) -> Value {
    let map = mm.mem_map();
    let Some(page) = map.get(Pfn(pfn)) else {
        return Value::Null;
    };
    let head_pfn = if page.is_tail() { page.word() } else { pfn };
    let Some(head) = map
        .get(Pfn(head_pfn))
        .filter(|h| head_pfn <= pfn && !h.is_tail())
    else {
        return json!({"kind": "compound page", "head_pfn": head_pfn,
            "corrupt": format!("the tail page's compound_head {head_pfn:#x} is no head page below pfn {pfn:#x}")});
    };
    let flags: Vec<&str> = kmemlab_mm::mm_types::flag_names(head.flags()).collect();
    let mut owner = if head.test(PG_SLAB) {
        slab_owner(mm, pfn, head_pfn, head)
    } else if head.test(PG_LARGE_KMALLOC) {
        large_kmalloc_owner(mm, pfn, head_pfn)
    } else if let Some(v) = vmalloc_owner(mm, pfn) {
        v
    } else if head.refcount() > 0 && !head.is_reserved() {
        json!({"kind": "page allocator", "head_pfn": head_pfn})
    } else {
        json!({"kind": "none"})
    };
    owner["refcount"] = json!(head.refcount());
    owner["flags"] = json!(flags);
    owner
}

/// A slab frame: its cache, and the objects that overlap it (index, address, free or
/// not, the allocation's call site when owner tracking is on).
fn slab_owner(mm: &Mm<SimPlatform>, pfn: u64, head_pfn: u64, head: &Page) -> Value {
    let r = KmemCacheRef(head.slab_cache());
    let s = match mm.cache(r) {
        Ok(s) => s,
        Err(e) => {
            return json!({"kind": "slab", "slab_pfn": head_pfn,
                "corrupt": format!("slab_cache {:#x} is no live cache: {e}", head.slab_cache())})
        }
    };
    let (Some(base), Some(frame)) = (
        mm.page_address(head).map(|a| a.0),
        mm.page_address(mm.mem_map().page(Pfn(pfn))).map(|a| a.0),
    ) else {
        return json!({"kind": "slab", "cache": s.name().as_str(), "slab_pfn": head_pfn,
            "corrupt": "the slab has no direct-map address"});
    };
    let first_obj = base + s.red_left_pad() as u64;
    let size = u64::from(s.size()).max(1);
    let objects = u64::from(s.oo().objects);
    let first = frame.saturating_sub(first_obj) / size;
    let last = ((frame + PAGE_SIZE as u64 - 1).saturating_sub(first_obj) / size)
        .min(objects.saturating_sub(1));
    let list: Vec<Value> = (first..=last)
        .take(OWNER_OBJECTS as usize)
        .filter_map(|i| {
            let o = mm.object_info(VirtAddr(first_obj + i * size))?;
            let caller = mm
                .get_track(s, o.object.0, TrackItem::Alloc)
                .and_then(|t| t.site)
                .map(|c| c.to_string());
            Some(json!({"index": o.index, "addr": addr(o.object.0), "free": o.free, "caller": caller}))
        })
        .collect();
    let mut v = json!({
        "kind": "slab", "cache": s.name().as_str(), "slab_pfn": head_pfn,
        "object_size": s.object_size(), "objects_per_slab": objects,
        "first_index": first, "last_index": last, "objects": list,
    });
    if objects == 0 || first > last {
        v["corrupt"] = json!("the cache's sizes put no object in this frame");
    }
    v
}

/// A frame of a large kmalloc block: the block's start, size and the frame's offset; the
/// head's order is checked against its tail pages first.
fn large_kmalloc_owner(mm: &Mm<SimPlatform>, pfn: u64, head_pfn: u64) -> Value {
    let head = mm.mem_map().page(Pfn(head_pfn));
    let Some(start) = mm.page_address(head) else {
        return json!({"kind": "large kmalloc", "head_pfn": head_pfn,
            "corrupt": "the block has no direct-map address"});
    };
    let offset = (pfn - head_pfn) << PAGE_SHIFT;
    match crate::commands::vmalloc::large_kmalloc_head(mm, start) {
        Some(Ok(order)) => json!({"kind": "large kmalloc", "head_pfn": head_pfn,
            "addr": addr(start.0), "order": order, "size": (PAGE_SIZE as u64) << order,
            "offset": offset}),
        Some(Err(why)) => json!({"kind": "large kmalloc", "head_pfn": head_pfn,
            "addr": addr(start.0), "offset": offset, "corrupt": why}),
        None => json!({"kind": "large kmalloc", "head_pfn": head_pfn, "addr": addr(start.0),
            "offset": offset, "corrupt": "the head page carries the large-kmalloc type but is free"}),
    }
}

/// The busy vmalloc / vmap area that maps frame `pfn`, its page index, offset and caller
/// (searched through the areas' page arrays, bounded by the pages they map).
fn vmalloc_owner(mm: &Mm<SimPlatform>, pfn: u64) -> Option<Value> {
    let mut areas = Vec::new();
    let _ = mm.for_each_vmap_area(&mut |a| {
        if a.vm.is_some() {
            areas.push(a.start);
        }
        Ok(())
    });
    for start in areas {
        let mut index = 0u64;
        let mut found = None;
        let Ok(vm) = mm.vm_area_pfns(VirtAddr(start), |p: Pfn| {
            if p.0 == pfn && found.is_none() {
                found = Some(index);
            }
            index += 1;
        }) else {
            continue;
        };
        if let Some(i) = found {
            let kind = if vm.flags.contains(kmemlab_mm::vmalloc::VmFlags::VM_ALLOC) {
                "vmalloc"
            } else {
                "vmap"
            };
            return Some(json!({
                "kind": kind, "area": addr(vm.addr.0), "size": vm.usable_size(),
                "index": i, "offset": i << PAGE_SHIFT, "addr": addr(vm.addr.0 + (i << PAGE_SHIFT)),
                "caller": vm.caller.map(|c| c.to_string()),
            }));
        }
    }
    None
}

/// `GET …/frames/meta`.
pub fn frames_meta(m: &Machine, generation: u64) -> Value {
    let mm = m.shell.machine.mm();
    let zones: Vec<Value> = mm
        .zones()
        .iter()
        .filter(|z| z.is_populated())
        .map(|z| json!({"name": z.name(), "start_pfn": z.zone_start_pfn.raw(), "end_pfn": z.zone_end_pfn().raw()}))
        .collect();
    let states: Vec<Value> = frames::state_names()
        .into_iter()
        .map(|(code, name)| json!({"code": code, "name": name}))
        .collect();
    let mut caches = Vec::new();
    mm.for_each_cache(|s| {
        caches.push(s.name().as_str().to_string());
        None::<()>
    });
    let swiotlb = mm.swiotlb_pool().map(|(start, slots)| {
        json!({"start_pfn": start.0 / PAGE_SIZE as u64, "pages": slots.saturating_mul(2048) / PAGE_SIZE as u64})
    });
    json!({
        "generation": generation,
        "page_size": PAGE_SIZE,
        "max_pfn": frames::max_pfn(&mm),
        "pageblock_order": mm.pageblock_order(),
        "zones": zones,
        "migratetypes": MigrateType::ALL.iter().map(|t| t.name()).collect::<Vec<_>>(),
        "states": states,
        "caches": caches,
        "swiotlb": swiotlb,
    })
}

/// `GET …/zones`: watermarks, free blocks per order and migrate type, per-CPU lists.
pub fn zones(m: &Machine) -> Value {
    let mm = m.shell.machine.mm();
    let nr_cpus = m.shell.machine.config().cpus;
    let rows: Vec<Value> = crate::describe::zones(&mm)
        .into_iter()
        .filter_map(|z| {
            let zone = mm.zones().iter().find(|x| x.name() == z.name && x.is_populated())?;
            let snap = mm.free_area_snapshot(zone);
            let free_area: Vec<Value> = (0..=MAX_PAGE_ORDER as usize)
                .map(|order| {
                    let by_type: serde_json::Map<String, Value> = (0..MigrateType::ALL.len())
                        .map(|t| {
                            (
                                MigrateType::ALL[t].name().to_string(),
                                json!(snap.per_type[t][order]),
                            )
                        })
                        .collect();
                    json!({"order": order, "nr_free": snap.nr_free[order], "by_migratetype": by_type})
                })
                .collect();
            let pcp: Vec<Value> = (0..nr_cpus)
                .map(|cpu| {
                    let p = &mm.per_cpu(cpu).pcp[zone.idx];
                    json!({"cpu": cpu, "count": p.count(), "high": p.high(), "batch": p.batch()})
                })
                .collect();
            let mut v = json!(z);
            v["free_area"] = json!(free_area);
            v["pcp"] = json!(pcp);
            Some(v)
        })
        .collect();
    json!(rows)
}

/// `GET …/cpus`.
pub fn cpus(m: &Machine) -> Value {
    let machine = &m.shell.machine;
    let cpus: Vec<Value> = (0..machine.config().cpus)
        .map(|cpu| {
            let state = m.shell.cpu_state(cpu);
            let s = machine.tlb_stats(cpu);
            let occupancy = machine.platform().mmu().tlb_occupancy(cpu);
            json!({
                "cpu": cpu,
                "context": if cpu == m.shell.cpu { m.shell.ctx.to_string() } else { "process".to_string() },
                "irqs_off": state.irqs_off, "preempt_depth": state.preempt_depth,
                "tlb": {"l1_hits": s.l1_hits, "l2_hits": s.l2_hits, "misses": s.misses,
                        "entries_flushed": s.entries_flushed, "full_flushes": s.full_flushes,
                        "single_page_flushes": s.single_page_flushes,
                        "occupancy": occupancy},
            })
        })
        .collect();
    let f = machine.tlb_flush_stats();
    json!({
        "current": m.shell.cpu,
        "cpus": cpus,
        "flush": {"shootdowns": f.shootdowns, "ipis": f.ipis, "full_flushes": f.full_flushes,
                  "pages_invalidated": f.pages_invalidated},
        "page_faults": machine.page_faults(),
    })
}
