//! The read-only views of a session's machine: `/proc` files, zones, slabs, vmalloc,
//! page-table walks, CPUs, `info`, and the frames' legend. Each reads the kernel's own
//! structures (through the checked door) or runs the shell's read-only command, so what
//! the page shows is what the shell shows.

use kmemlab_mm::addr::MAX_PAGE_ORDER;
use kmemlab_mm::arch::pgtable::entry_flag_names;
use kmemlab_mm::mm_types::{PG_LARGE_KMALLOC, PG_SLAB};
use kmemlab_mm::slab::cache::TRACK_SIZE;
use kmemlab_mm::slab::debug::{
    TrackItem, POISON_END, POISON_FREE, SLUB_RED_ACTIVE, SLUB_RED_INACTIVE,
};
use kmemlab_mm::slab::{KmemCache, KmemCacheRef, SlabFlags};
use kmemlab_mm::{Hardware, MigrateType, Mm, Page, Pfn, VirtAddr, PAGE_SHIFT, PAGE_SIZE};
use kmemlab_sim::SimPlatform;
use serde_json::{json, Value};

use super::frames;
use super::session::Machine;
use super::ApiError;
use crate::output::addr;
use crate::shell::Outcome;

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
        if mm.mem_map().get(pfn).is_none() || frames::max_pfn(mm) <= pfn {
            return Err(ApiError::bad_request(format!(
                "pfn {pfn:#x} has no struct page"
            )));
        }
        let info = crate::describe::page_info(mm, Pfn(pfn));
        let message = info.line();
        let owner = frame_owner(mm, pfn);
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
    let Some(page) = map.get(pfn) else {
        return Value::Null;
    };
    let head_pfn = if page.is_tail() { page.word() } else { pfn };
    let Some(head) = map
        .get(head_pfn)
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
        mm.page_address(mm.mem_map().page(pfn)).map(|a| a.0),
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
    let head = mm.mem_map().page(head_pfn);
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
        .map(|z| json!({"name": z.name(), "start_pfn": z.zone_start_pfn, "end_pfn": z.zone_end_pfn()}))
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
        "max_pfn": frames::max_pfn(mm),
        "pageblock_order": kmemlab_mm::addr::PAGEBLOCK_ORDER,
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
    let rows: Vec<Value> = crate::describe::zones(mm)
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

/// The caches in `/proc/slabinfo` order.
fn caches(mm: &Mm<SimPlatform>) -> Vec<KmemCacheRef> {
    let mut v = Vec::new();
    mm.for_each_cache(|s| {
        v.push(s.handle());
        None::<()>
    });
    v
}

/// The `slab_debug` letters of a cache's flags.
fn debug_letters(flags: SlabFlags) -> String {
    [
        (SlabFlags::CONSISTENCY_CHECKS, 'F'),
        (SlabFlags::RED_ZONE, 'Z'),
        (SlabFlags::POISON, 'P'),
        (SlabFlags::STORE_USER, 'U'),
    ]
    .into_iter()
    .filter(|(f, _)| flags.contains(*f))
    .map(|(_, c)| c)
    .collect()
}

/// One slabinfo row with `tools/mm/slabinfo.c`'s figures.
fn slab_row(mm: &Mm<SimPlatform>, index: usize, s: &KmemCache) -> Value {
    let i = kmemlab_mm::procfs::slab_info(mm, s);
    let order = s.oo().order;
    let slab_bytes = (PAGE_SIZE as u64) << order.min(MAX_PAGE_ORDER);
    // slabinfo.c: `slab_size(s) = s->slabs * (page_size << s->order)`, and the loss
    // `slab_size(s) - s->objects * s->object_size` (objects in use).
    let total_bytes = i.num_slabs.saturating_mul(slab_bytes);
    let loss = total_bytes.saturating_sub(i.active_objs.saturating_mul(s.object_size() as u64));
    let cpu_slabs = (0..mm.platform().nr_cpus())
        .filter_map(|cpu| mm.cpu_slab_state(s.handle(), cpu).ok())
        .filter(|c| c.slab.is_some())
        .count();
    let partial = mm
        .node_slab_state(s.handle())
        .map(|n| n.nr_partial)
        .unwrap_or(0);
    json!({
        "index": index, "name": s.name().as_str(), "object_size": s.object_size(),
        "size": s.size(), "objs_per_slab": s.oo().objects, "order": order,
        "active_objs": i.active_objs, "num_objs": i.num_objs, "slabs": i.num_slabs,
        "partial": partial, "cpu_slabs": cpu_slabs, "total_bytes": total_bytes,
        "loss": loss, "debug": debug_letters(s.flags()),
    })
}

/// `GET …/slabs`.
pub fn slabs(m: &Machine) -> Value {
    let mm = m.shell.machine.mm();
    let rows: Vec<Value> = caches(mm)
        .into_iter()
        .enumerate()
        .filter_map(|(i, r)| mm.cache(r).ok().map(|s| slab_row(mm, i, s)))
        .collect();
    json!(rows)
}

/// A cache by name or index.
fn find_cache(mm: &Mm<SimPlatform>, key: &str) -> Result<KmemCacheRef, ApiError> {
    let list = caches(mm);
    if let Ok(i) = key.parse::<usize>()
        && let Some(r) = list.get(i)
    {
        return Ok(*r);
    }
    list.into_iter()
        .find(|&r| mm.cache(r).is_ok_and(|s| s.name().as_str() == key))
        .ok_or_else(|| {
            ApiError::not_found(format!(
                "no slab cache '{}'",
                key.chars().take(64).collect::<String>()
            ))
        })
}

/// The byte layout of one object slot (from the slot's start, the left red zone first).
fn layout(s: &KmemCache) -> Vec<Value> {
    let rlp = s.red_left_pad() as u64;
    let (object, inuse, size) = (s.object_size() as u64, s.inuse() as u64, s.size() as u64);
    let mut parts = Vec::new();
    let mut push = |kind: &str, from: u64, to: u64| {
        if to > from {
            parts.push(json!({"kind": kind, "offset": from, "len": to - from}));
        }
    };
    push("redzone", 0, rlp);
    push("object", rlp, rlp + object);
    push(
        if s.flags().contains(SlabFlags::RED_ZONE) {
            "redzone"
        } else {
            "padding"
        },
        rlp + object,
        rlp + inuse,
    );
    // `get_info_end()`: a free pointer stored after the object comes first.
    let mut at = rlp + inuse;
    if s.fp_offset() as u64 >= inuse {
        push("freepointer", at, at + 8);
        at += 8;
    }
    if s.flags().contains(SlabFlags::STORE_USER) {
        push("track", at, at + 2 * TRACK_SIZE as u64);
        at += 2 * TRACK_SIZE as u64;
    }
    push("padding", at.min(size), size);
    parts
}

/// The largest object slot a view reads: a slab of the largest order. A cache whose
/// sizes (read from RAM) claim more is corrupted, and its objects show as damaged.
const MAX_SLOT: u64 = (PAGE_SIZE as u64) << MAX_PAGE_ORDER;

/// The bytes of the slot holding `object`, if the cache's sizes are sane and RAM has them.
fn read_slot(mm: &Mm<SimPlatform>, s: &KmemCache, object: u64) -> Option<Vec<u8>> {
    let (rlp, size) = (s.red_left_pad() as u64, s.size() as u64);
    let sane = size <= MAX_SLOT
        && rlp.saturating_add(s.object_size() as u64) <= size
        && rlp.saturating_add(s.inuse() as u64) <= size
        && s.object_size() <= s.inuse();
    if !sane {
        return None;
    }
    let mut slot = vec![0u8; size as usize];
    mm.kread_bytes(object.wrapping_sub(rlp), &mut slot).ok()?;
    Some(slot)
}

/// The letter of one object: `a` allocated, `f` free, `p` free with its poison intact,
/// `r` a red zone or poison found damaged.
fn object_letter(mm: &Mm<SimPlatform>, s: &KmemCache, object: u64, free: bool) -> char {
    let flags = s.flags();
    let rlp = s.red_left_pad() as u64;
    let (size, inuse, osize) = (s.size() as u64, s.inuse() as u64, s.object_size() as u64);
    let Some(slot) = read_slot(mm, s, object) else {
        return 'r';
    };
    if flags.contains(SlabFlags::RED_ZONE) {
        let want = if free {
            SLUB_RED_INACTIVE
        } else {
            SLUB_RED_ACTIVE
        };
        let left = &slot[..rlp as usize];
        let right = &slot[(rlp + osize) as usize..(rlp + inuse).min(size) as usize];
        if left.iter().chain(right).any(|&b| b != want) {
            return 'r';
        }
    }
    if !free {
        return 'a';
    }
    if flags.contains(SlabFlags::OBJECT_POISON) && osize > 0 {
        let body = &slot[rlp as usize..(rlp + osize) as usize];
        let (last, rest) = body.split_last().unwrap_or((&POISON_END, &[]));
        // The free pointer may sit inside the object (at `fp_offset`): skipped.
        let fp = s.fp_offset() as usize;
        let poisoned = rest
            .iter()
            .enumerate()
            .all(|(i, &b)| b == POISON_FREE || (i >= fp && i < fp + 8));
        return if poisoned && *last == POISON_END {
            'p'
        } else {
            'r'
        };
    }
    'f'
}

/// The slabs of a cache, by group, each with its objects' letters (for at most
/// `detail` slabs; the rest with counts only).
pub fn slab_detail(m: &Machine, key: &str, detail: usize) -> Result<Value, ApiError> {
    let mm = m.shell.machine.mm();
    let r = find_cache(mm, key)?;
    let s = mm
        .cache(r)
        .map_err(|e| ApiError::not_found(e.to_string()))?;
    let cpu_slabs: Vec<(usize, u64)> = (0..mm.platform().nr_cpus())
        .filter_map(|cpu| Some((cpu, mm.cpu_slab_state(r, cpu).ok()?.slab?)))
        .collect();
    let mut groups = json!({"cpu": [], "cpu_partial": [], "node_partial": [], "full": []});
    let map = mm.mem_map();
    let mut detailed = 0;
    let slab_pages = 1u64 << s.oo().order.min(MAX_PAGE_ORDER);
    for pfn in map.base_pfn..map.base_pfn + map.len {
        let Some(page) = map.get(pfn) else { continue };
        if !page.is_slab() || page.is_tail() || page.slab_cache() != r.0 {
            continue;
        }
        let c = mm.slab_counters(pfn);
        let cpu = cpu_slabs.iter().find(|&&(_, p)| p == pfn).map(|&(c, _)| c);
        let group = match (cpu, c.frozen, c.inuse >= c.objects) {
            (Some(_), _, _) => "cpu",
            (None, true, _) => "cpu_partial",
            (None, false, false) => "node_partial",
            (None, false, true) => "full",
        };
        let base = mm
            .page_address(page)
            .map_or(0, |v| v.0 + s.red_left_pad() as u64);
        let mut slab = json!({
            "pfn": pfn, "addr": addr(base.saturating_sub(s.red_left_pad() as u64)),
            "pages": slab_pages, "inuse": c.inuse, "objects": c.objects, "cpu": cpu,
        });
        if detailed < detail {
            detailed += 1;
            // A slab no CPU holds is all allocated when full and all free when empty;
            // only the others need each object's freelist membership looked up.
            let known = match (c.frozen, c.inuse) {
                (false, 0) => Some(true),
                (false, n) if n >= c.objects => Some(false),
                _ => None,
            };
            let letters: String = (0..c.objects.min(s.oo().objects as u16))
                .map(|i| {
                    let object = base + i as u64 * s.size() as u64;
                    let free = known.unwrap_or_else(|| {
                        mm.object_info(VirtAddr(object)).is_some_and(|o| o.free)
                    });
                    object_letter(mm, s, object, free)
                })
                .collect();
            slab["objects_state"] = json!(letters);
        }
        if let Some(list) = groups[group].as_array_mut() {
            list.push(slab);
        }
    }
    Ok(json!({
        "name": s.name().as_str(), "object_size": s.object_size(), "size": s.size(),
        "objs_per_slab": s.oo().objects, "order": s.oo().order,
        "debug": debug_letters(s.flags()),
        "layout": layout(s),
        "slab_padding": ((PAGE_SIZE as u64) << s.oo().order.min(MAX_PAGE_ORDER))
            .saturating_sub(s.oo().objects as u64 * s.size() as u64),
        "groups": groups,
    }))
}

fn track_json(mm: &Mm<SimPlatform>, s: &KmemCache, object: u64, item: TrackItem) -> Value {
    match mm.get_track(s, object, item) {
        Some(t) if t.when != 0 || t.site.is_some() => json!({
            "caller": t.site.map(|c| c.to_string()),
            "cpu": t.cpu, "pid": t.pid, "when": t.when,
        }),
        _ => Value::Null,
    }
}

/// `GET …/slabs/{cache}/objects/{addr}`: an object's state, owner tracks and bytes.
pub fn slab_object(m: &Machine, key: &str, at: u64) -> Result<Value, ApiError> {
    let mm = m.shell.machine.mm();
    let r = find_cache(mm, key)?;
    let s = mm
        .cache(r)
        .map_err(|e| ApiError::not_found(e.to_string()))?;
    let o = mm
        .object_info(VirtAddr(at))
        .filter(|o| o.cache == r)
        .ok_or_else(|| ApiError::not_found(format!("{at:#x} is not an object of {}", s.name())))?;
    let object = o.object.0;
    let slot_start = object.wrapping_sub(s.red_left_pad() as u64);
    let hex = match read_slot(mm, s, object) {
        Some(slot) => slot
            .chunks(16)
            .enumerate()
            .map(|(i, c)| {
                let bytes: Vec<String> = c.iter().map(|b| format!("{b:02x}")).collect();
                format!("{:#x}: {}", slot_start + 16 * i as u64, bytes.join(" "))
            })
            .collect::<Vec<_>>()
            .join("\n"),
        None => "(the slot cannot be read: the cache's sizes or its memory are bad)".to_string(),
    };
    let letter = object_letter(mm, s, object, o.free);
    let state = match letter {
        'a' => "allocated",
        'p' => "free (poisoned)",
        'r' => "damaged red zone or poison",
        _ => "free",
    };
    Ok(json!({
        "cache": s.name().as_str(), "addr": addr(object), "slot": addr(slot_start),
        "index": o.index, "slab_pfn": o.slab_pfn, "state": state, "free": o.free,
        "alloc": track_json(mm, s, object, TrackItem::Alloc),
        "free_track": track_json(mm, s, object, TrackItem::Free),
        "layout": layout(s),
        "hex": hex,
    }))
}

/// The frames behind address `x` as (first PFN, pages, what): a slab object's slab, a
/// vmalloc address's area (run by run), a `struct page *` or direct-map address's
/// block. Read-only: nothing here reports to the kernel's console.
pub fn frames_of(mm: &Mm<SimPlatform>, x: u64) -> Vec<(u64, u64, String)> {
    let va = VirtAddr(x);
    if let Some(o) = mm.object_info(va) {
        let name = mm
            .cache(o.cache)
            .map_or(String::new(), |s| format!("slab {}", s.name()));
        let pages = mm
            .cache(o.cache)
            .map_or(1, |s| 1u64 << s.oo().order.min(MAX_PAGE_ORDER));
        return vec![(o.slab_pfn, pages, name)];
    }
    if mm.is_vmalloc_addr(va) {
        let mut pfns = Vec::new();
        if mm.vm_area_pfns(va, |p: Pfn| pfns.push(p.0)).is_err() {
            return Vec::new();
        }
        return runs(&pfns)
            .iter()
            .filter_map(|r| {
                Some((
                    r["pfn"].as_u64()?,
                    r["pages"].as_u64()?,
                    "vmalloc".to_string(),
                ))
            })
            .collect();
    }
    let page = mm
        .page_at_struct_address(va)
        .or_else(|| mm.virt_to_page(va).ok());
    let Some(page) = page else {
        return Vec::new();
    };
    let info = crate::describe::page_info(mm, mm.page_to_pfn(page));
    vec![(info.block_pfn, info.pages.max(1), info.state.to_string())]
}

/// The physically contiguous runs of a PFN list.
fn runs(pfns: &[u64]) -> Vec<Value> {
    let mut out: Vec<(u64, u64)> = Vec::new();
    for &p in pfns {
        match out.last_mut() {
            Some((start, n)) if *start + *n == p => *n += 1,
            _ => out.push((p, 1)),
        }
    }
    out.into_iter()
        .map(|(pfn, pages)| json!({"pfn": pfn, "pages": pages}))
        .collect()
}

fn area_json(mm: &Mm<SimPlatform>, a: &kmemlab_mm::vmalloc::VmapAreaInfo) -> Value {
    use kmemlab_mm::vmalloc::VmFlags as F;
    let (state, kind) = match (&a.vm, a.vm_map_ram) {
        (_, true) => ("busy", "vm_map_ram"),
        (None, false) => ("lazy", "unpurged"),
        (Some(vm), _) => (
            "busy",
            [
                (F::VM_IOREMAP, "ioremap"),
                (F::VM_ALLOC, "vmalloc"),
                (F::VM_MAP, "vmap"),
                (F::VM_USERMAP, "user"),
                (F::VM_DMA_COHERENT, "dma-coherent"),
            ]
            .into_iter()
            .find(|(f, _)| vm.flags.contains(*f))
            .map_or("other", |(_, n)| n),
        ),
    };
    let mut v = json!({
        "start": addr(a.start), "end": addr(a.end), "size": a.end.saturating_sub(a.start),
        "state": state, "kind": kind,
    });
    if let Some(vm) = &a.vm {
        let mut pfns = Vec::new();
        let _ = mm.vm_area_pfns(vm.addr, |p: Pfn| pfns.push(p.0));
        v["caller"] = json!(vm.caller.map(|c| c.to_string()));
        v["pages"] = json!(vm.nr_pages);
        v["mapped_pages"] = json!(pfns.len());
        v["guard"] = json!(vm.size.saturating_sub(vm.usable_size()));
        v["phys_runs"] = json!(runs(&pfns).len());
        v["requested_size"] = json!(vm.requested_size);
    }
    v
}

/// Every area as `/proc/vmallocinfo` lists them, copied out first: looking into an
/// area (its pages) takes the lock the listing holds.
fn vmap_areas(mm: &Mm<SimPlatform>) -> Vec<kmemlab_mm::vmalloc::VmapAreaInfo> {
    let mut areas = Vec::new();
    let _ = mm.for_each_vmap_area(&mut |a| {
        areas.push(*a);
        Ok(())
    });
    areas
}

/// `GET …/vmalloc`: the areas in address order, then the lazily freed ones.
pub fn vmalloc(m: &Machine) -> Value {
    let mm = m.shell.machine.mm();
    let areas: Vec<Value> = vmap_areas(mm).iter().map(|a| area_json(mm, a)).collect();
    let layout = mm.layout();
    json!({
        "start": addr(layout.vmalloc_start), "end": addr(layout.vmalloc_end),
        "areas": areas,
    })
}

/// `GET …/vmalloc/{addr}`: the area holding `addr` and its train of pages.
pub fn vmalloc_area(m: &Machine, at: u64) -> Result<Value, ApiError> {
    let mm = m.shell.machine.mm();
    let a = mm
        .find_vm_area(VirtAddr(at))
        .ok_or_else(|| ApiError::not_found(format!("no vmalloc area holds {at:#x}")))?;
    let mut pages = Vec::new();
    let mut pfns = Vec::new();
    let _ = mm.vm_area_pfns(a.addr, |p: Pfn| {
        let virt = a.addr.0.wrapping_add(pfns.len() as u64 * PAGE_SIZE as u64);
        pages.push(json!({"index": pfns.len(), "virt": addr(virt), "pfn": p.0}));
        pfns.push(p.0);
    });
    let found = vmap_areas(mm)
        .iter()
        .find(|info| info.start == a.addr.0)
        .map(|info| area_json(mm, info));
    let info = crate::commands::vmalloc::vmalloc_info(mm, VirtAddr(at)).map(|v| match v {
        crate::shell::Value::Object(o, text) => json!({"result": o, "message": text}),
        _ => Value::Null,
    });
    Ok(json!({
        "area": found.unwrap_or(Value::Null),
        "pages": pages,
        "runs": runs(&pfns),
        "info": info,
    }))
}

/// `GET …/walk/{addr}`: the page-table walk level by level and the TLBs holding it.
pub fn walk(m: &Machine, at: u64) -> Value {
    let machine = &m.shell.machine;
    let w = machine.walk(VirtAddr(at));
    let mode = machine.mm().paging();
    let steps: Vec<Value> = w
        .steps
        .iter()
        .map(|s| {
            let present = s.entry & kmemlab_mm::arch::pgtable::_PAGE_PRESENT != 0;
            json!({
                "level": s.level, "table": addr(s.table.0), "index": s.index,
                "entry": addr(s.entry),
                "flags": entry_flag_names(s.entry).collect::<Vec<_>>(),
                "next_pfn": present.then(|| (s.entry & mode.phys_mask) / PAGE_SIZE as u64),
            })
        })
        .collect();
    let result = match &w.result {
        Ok(t) => json!({"phys": addr(t.phys.0), "page_size": t.page_size, "writable": t.writable,
                        "pfn": t.phys.0 / PAGE_SIZE as u64}),
        Err(_) => Value::Null,
    };
    let tlb: Vec<Value> = (0..machine.config().cpus)
        .map(|cpu| {
            let probe = machine.mm().platform().mmu().tlb_probe(cpu, VirtAddr(at));
            json!({"cpu": cpu, "cached": probe.is_some(),
                   "level": probe.map(|p| p.level), "frame": probe.map(|p| addr(p.frame)),
                   "page_size": probe.map(|p| p.page_size)})
        })
        .collect();
    json!({"virt": addr(at), "steps": steps, "result": result, "text": w.to_string(), "tlb": tlb})
}

/// `GET …/cpus`.
pub fn cpus(m: &Machine) -> Value {
    let machine = &m.shell.machine;
    let cpus: Vec<Value> = (0..machine.config().cpus)
        .map(|cpu| {
            let state = m.shell.cpu_state(cpu);
            let s = machine.tlb_stats(cpu);
            let occupancy = machine.mm().platform().mmu().tlb_occupancy(cpu);
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
