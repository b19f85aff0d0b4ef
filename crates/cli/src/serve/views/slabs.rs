//! The slab views: the caches in `/proc/slabinfo` order with their debug flags, one cache's
//! layout and object map (each object's state read through the door, as
//! `slab_debug` would see it), and one object with its alloc/free tracks. Start at
//! [`slab_detail`].

use kmemlab_mm::addr::MAX_PAGE_ORDER;
use kmemlab_mm::slab::cache::TRACK_SIZE;
use kmemlab_mm::slab::debug::{
    TrackItem, POISON_END, POISON_FREE, SLUB_RED_ACTIVE, SLUB_RED_INACTIVE,
};
use kmemlab_mm::slab::{KmemCache, KmemCacheRef, SlabFlags};
use kmemlab_mm::{Hardware, Mm, VirtAddr, PAGE_SIZE};
use kmemlab_sim::SimPlatform;
use serde_json::{json, Value};

use crate::output::addr;
use crate::serve::session::Machine;
use crate::serve::ApiError;

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
    let rows: Vec<Value> = caches(&mm)
        .into_iter()
        .enumerate()
        .filter_map(|(i, r)| mm.cache(r).ok().map(|s| slab_row(&mm, i, s)))
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
    let r = find_cache(&mm, key)?;
    let s = mm
        .cache(r)
        .map_err(|e| ApiError::not_found(e.to_string()))?;
    let cpu_slabs: Vec<(usize, u64)> = (0..mm.platform().nr_cpus())
        .filter_map(|cpu| Some((cpu, mm.cpu_slab_state(r, cpu).ok()?.slab?.raw())))
        .collect();
    let mut groups = json!({"cpu": [], "cpu_partial": [], "node_partial": [], "full": []});
    let map = mm.mem_map();
    let mut detailed = 0;
    let slab_pages = 1u64 << s.oo().order.min(MAX_PAGE_ORDER);
    for pfn in map.base_pfn.range_to(map.base_pfn + map.len) {
        let Some(page) = map.get(pfn) else { continue };
        if !page.is_slab() || page.is_tail() || page.slab_cache() != r.0 {
            continue;
        }
        let c = mm.slab_counters(pfn);
        let cpu = cpu_slabs
            .iter()
            .find(|&&(_, p)| p == pfn.raw())
            .map(|&(c, _)| c);
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
            "pfn": pfn.raw(), "addr": addr(base.saturating_sub(s.red_left_pad() as u64)),
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
                    object_letter(&mm, s, object, free)
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
    let r = find_cache(&mm, key)?;
    let s = mm
        .cache(r)
        .map_err(|e| ApiError::not_found(e.to_string()))?;
    let o = mm
        .object_info(VirtAddr(at))
        .filter(|o| o.cache == r)
        .ok_or_else(|| ApiError::not_found(format!("{at:#x} is not an object of {}", s.name())))?;
    let object = o.object.0;
    let slot_start = object.wrapping_sub(s.red_left_pad() as u64);
    let hex = match read_slot(&mm, s, object) {
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
    let letter = object_letter(&mm, s, object, o.free);
    let state = match letter {
        'a' => "allocated",
        'p' => "free (poisoned)",
        'r' => "damaged red zone or poison",
        _ => "free",
    };
    Ok(json!({
        "cache": s.name().as_str(), "addr": addr(object), "slot": addr(slot_start),
        "index": o.index, "slab_pfn": o.slab_pfn.raw(), "state": state, "free": o.free,
        "alloc": track_json(&mm, s, object, TrackItem::Alloc),
        "free_track": track_json(&mm, s, object, TrackItem::Free),
        "layout": layout(s),
        "hex": hex,
    }))
}
