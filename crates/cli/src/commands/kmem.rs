//! The shell's `kmem` command, after crash's `kmem` (crash-utility `memory.c`,
//! `cmd_kmem()`) and drgn's slab helpers (`slab_object_info()`,
//! `find_containing_slab_cache()`):
//!
//! ```text
//! kmem ADDR        what any address is (direct-map, vmalloc, struct page or physical)
//! kmem -P PHYS     the same for a physical address
//! kmem -s [CACHE]  cache summary: CACHE OBJSIZE ALLOCATED TOTAL SLABS SSIZE NAME
//! kmem -S CACHE    every slab per CPU and per node, objects as FREE / [ALLOCATED]
//! kmem -f          buddy free lists per zone and order, walked and checked with nr_free
//! kmem -v          vmap areas
//! kmem -i          the TOTAL MEM / FREE / USED / ... table
//! kmem -p PFN      the page descriptor
//! kmem -z          per-zone statistics
//! ```
//!
//! Everything here only reads, through the mm crate's checked queries: a corrupted
//! structure is answered as corrupted, never followed.

use kmemlab_mm::mm_types::{flag_names, PG_LARGE_KMALLOC};
use kmemlab_mm::page_alloc::query::{FreeBlock, FreeList};
use kmemlab_mm::slab::query::{ObjectState, SlabObject, SlabPlace, SlabSummary};
use kmemlab_mm::slab::{KmemCache, KmemCacheRef};
use kmemlab_mm::vmalloc::VmFlags;
use kmemlab_mm::{procfs, Hardware, Mm, Pfn, VirtAddr, PAGE_SHIFT};
use kmemlab_sim::SimPlatform;
use serde_json::{json, Value as Json};

use super::Command;
use crate::describe::page_info;
use crate::output::addr as hex;
use crate::shell::{Shell, Value};

/// This module's shell commands.
pub(super) const COMMANDS: &[Command] = &[Command {
    name: "kmem",
    usage: USAGE,
    help: "what an address is, slab caches, free lists, vmap areas, memory usage (crash's kmem)",
    mutates: false,
    run: kmem,
}];

/// The usage line of `kmem`, for the command table.
pub const USAGE: &str = "ADDR | -P PHYS | -s [CACHE|ADDR] | -S CACHE | -f | -v | -i | -p PFN | -z";

type Mmp = Mm<SimPlatform>;

/// `kmem`: crash's forms, each with a JSON result.
pub fn kmem(sh: &mut Shell, args: &[&str]) -> Result<Value, String> {
    let usage = || format!("usage: kmem {USAGE}");
    match args {
        ["-s"] => cache_table(sh.machine.mm(), None),
        ["-s", cache] => match cache_arg(sh, cache) {
            Ok(r) => cache_table(sh.machine.mm(), Some(r)),
            // crash's `kmem -s ADDR`: the cache and slab holding an address.
            Err(e) => match sh.number(cache).ok().and_then(|a| {
                let found = sh.machine.mm().slab_object(VirtAddr(a))?;
                Some(describe_slab_object(sh.machine.mm(), a, found))
            }) {
                Some(answer) => answer,
                None => Err(e),
            },
        },
        ["-S", cache] => cache_slabs(sh.machine.mm(), cache_arg(sh, cache)?),
        ["-f"] => free_lists(sh.machine.mm()),
        ["-v"] => vmap_areas(sh.machine.mm()),
        ["-i"] => usage_table(sh.machine.mm()),
        ["-z"] => zone_stats(sh.machine.mm()),
        ["-p", pfn] => {
            let pfn = sh.number(pfn)?;
            page_descriptor(sh.machine.mm(), pfn)
        }
        ["-P", phys] => {
            let phys = sh.number(phys)?;
            describe_phys(sh.machine.mm(), phys, None)
        }
        [flag, ..] if flag.starts_with('-') && !is_known_flag(flag) => {
            Err(format!("invalid option '{flag}'; {}", usage()))
        }
        [flag, ..] if flag.starts_with('-') => Err(usage()),
        [addr] => {
            let addr = sh.number(addr)?;
            describe_address(sh.machine.mm(), addr)
        }
        _ => Err(usage()),
    }
}

fn is_known_flag(flag: &str) -> bool {
    matches!(flag, "-s" | "-S" | "-f" | "-v" | "-i" | "-p" | "-P" | "-z")
}

/// A cache: its name, a name given earlier, or a `kmem_cache` address.
fn cache_arg(sh: &Shell, arg: &str) -> Result<KmemCacheRef, String> {
    let mm = sh.machine.mm();
    if let Some(r) = mm.find_cache(arg.trim_start_matches('$')) {
        return Ok(r);
    }
    let r = sh
        .number(arg)
        .map(KmemCacheRef)
        .map_err(|_| format!("kmem: no cache named '{arg}' (kmem -s lists them)"))?;
    mm.cache(r)
        .map(|_| r)
        .map_err(|_| format!("kmem: no cache named '{arg}' (kmem -s lists them)"))
}

// ----- sizes as crash prints them -------------------------------------------------------

/// crash's `pages_to_size()`: `0`, `N KB`, `N.N MB`, `N.N GB` (a `.0` dropped).
fn pages_to_size(pages: u64) -> String {
    let bytes = pages << PAGE_SHIFT;
    let (value, unit) = match bytes {
        0 => return "0".into(),
        b if b >= 1 << 30 => (b as f64 / (1u64 << 30) as f64, "GB"),
        b if b >= 1 << 20 => (b as f64 / (1u64 << 20) as f64, "MB"),
        b => (b as f64 / 1024.0, "KB"),
    };
    let text = format!("{value:.1}");
    format!("{} {unit}", text.strip_suffix(".0").unwrap_or(&text))
}

/// `SSIZE`: a slab's bytes as `4k`, `8k`, ….
fn slab_size(s: &KmemCache) -> String {
    format!("{}k", 4u64 << s.oo().order.min(20))
}

/// A kernel address zero-padded as crash prints one: 16 digits on a 64-bit kernel, 8 on
/// a 32-bit one.
fn kaddr(mm: &Mmp, a: u64) -> String {
    let width = 2 * mm.paging().entry_size.min(8);
    format!("{a:0width$x}")
}

fn struct_page(mm: &Mmp, pfn: u64) -> u64 {
    mm.struct_page_address(mm.mem_map().page(pfn)).0
}

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
fn cache_table(mm: &Mmp, only: Option<KmemCacheRef>) -> Result<Value, String> {
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
    let memory = mm
        .layout()
        .phys_to_virt(slab.pfn << PAGE_SHIFT)
        .unwrap_or(0);
    let head = format!("{:x}", struct_page(mm, slab.pfn));
    if let Err(e) = walked {
        let text = format!("{SLAB_HEADER}\n  {head:<16}  {memory:<16x}  (corrupted: {e})");
        return (
            text,
            json!({"slab": hex(struct_page(mm, slab.pfn)), "pfn": slab.pfn, "corrupted": e.to_string()}),
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
    let j = json!({"slab": hex(struct_page(mm, slab.pfn)), "memory": hex(memory), "pfn": slab.pfn,
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
fn cache_slabs(mm: &Mmp, r: KmemCacheRef) -> Result<Value, String> {
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

// ----- kmem -f / -z / -i ----------------------------------------------------------------

/// `kmem -f`: for each populated zone, the free blocks per order found by walking every
/// free list, checked against `nr_free`, and the pages against `NR_FREE_PAGES`.
fn free_lists(mm: &Mmp) -> Result<Value, String> {
    let mut text = String::from("NODE\n  0");
    let mut zones = Vec::new();
    let mut all_verified = true;
    let mut grand_total = 0;
    for z in mm.zones().iter().filter(|z| z.is_populated()) {
        let snap = mm.free_area_snapshot(z);
        text.push_str(&format!(
            "\nZONE  NAME        SIZE    FREE      MEM_MAP       START_PADDR  START_MAPNR\n{:>3}   {:<7} {:>8} {:>7}  {:<16x}  {:>11x}  {:>11}\nAREA    SIZE  BLOCKS   PAGES  NR_FREE",
            z.idx,
            z.name(),
            z.spanned_pages,
            z.free_pages(),
            struct_page(mm, z.zone_start_pfn),
            z.zone_start_pfn << PAGE_SHIFT,
            z.zone_start_pfn
        ));
        let mut areas = Vec::new();
        let mut pages_total = 0;
        for order in 0..snap.nr_free.len() {
            let blocks: u64 = snap.per_type.iter().map(|t| t[order]).sum();
            let pages = blocks << order;
            pages_total += pages;
            let ok = blocks == snap.nr_free[order];
            all_verified &= ok;
            text.push_str(&format!(
                "\n{order:>3}  {:>6}  {blocks:>6}  {pages:>6}  {:>7}{}",
                format!("{}k", 4u64 << order),
                snap.nr_free[order],
                if ok {
                    ""
                } else {
                    "  (differs: the list walk found other blocks)"
                }
            ));
            areas.push(json!({"order": order, "blocks": blocks, "pages": pages, "nr_free": snap.nr_free[order], "verified": ok}));
        }
        let ok = pages_total == z.free_pages();
        all_verified &= ok;
        grand_total += pages_total;
        text.push_str(&format!(
            "\nzone {} free pages: {pages_total}  ({})",
            z.name(),
            if ok {
                "verified".to_string()
            } else {
                format!("NR_FREE_PAGES says {}", z.free_pages())
            }
        ));
        zones.push(json!({"zone": z.name(), "index": z.idx, "size": z.spanned_pages, "free": z.free_pages(),
            "start_paddr": hex(z.zone_start_pfn << PAGE_SHIFT), "start_mapnr": z.zone_start_pfn,
            "areas": areas, "walked_pages": pages_total, "verified": ok}));
    }
    text.push_str(&format!(
        "\n\nnr_free_pages: {grand_total}  ({})",
        if all_verified {
            "verified"
        } else {
            "NOT verified: see above"
        }
    ));
    Ok(Value::Object(
        json!({"zones": zones, "nr_free_pages": grand_total, "verified": all_verified}),
        text,
    ))
}

/// `kmem -z`: each zone's sizes, watermarks and counters.
fn zone_stats(mm: &Mmp) -> Result<Value, String> {
    use kmemlab_mm::vmstat::ZoneStatItem;
    use kmemlab_mm::Watermark;
    let mut text = String::new();
    let mut zones = Vec::new();
    for z in mm.zones() {
        if !text.is_empty() {
            text.push('\n');
        }
        text.push_str(&format!(
            "NODE: 0  ZONE: {}  NAME: \"{}\"\n  SIZE: {}  PRESENT: {}  MANAGED: {}  MIN/LOW/HIGH: {}/{}/{}\n  PROTECTION: {:?}",
            z.idx,
            z.name(),
            z.spanned_pages,
            z.present_pages,
            z.managed_pages,
            z.wmark(Watermark::Min),
            z.wmark(Watermark::Low),
            z.wmark(Watermark::High),
            z.lowmem_reserve
        ));
        let mut stats = serde_json::Map::new();
        if z.is_populated() {
            text.push_str("\n  VM_STAT:");
            let items = std::iter::once(("NR_FREE_PAGES".to_string(), z.free_pages()))
                .chain(
                    ZoneStatItem::ALL
                        .iter()
                        .map(|i| (i.name().to_uppercase(), z.page_state(*i))),
                )
                .chain(std::iter::once(("PGALLOC".to_string(), mm.pgalloc(z))));
            for (name, n) in items {
                text.push_str(&format!("\n  {name:>22}: {n}"));
                stats.insert(name.to_lowercase(), json!(n));
            }
            text.push_str(&format!(
                "\n  PCP: batch {} high {}; largest free order {}",
                z.pcp_batch,
                z.pcp_high,
                mm.largest_free_order(z)
                    .map_or("none".into(), |o| o.to_string())
            ));
        }
        zones.push(json!({"node": 0, "zone": z.idx, "name": z.name(), "size": z.spanned_pages,
            "present": z.present_pages, "managed": z.managed_pages,
            "min": z.wmark(Watermark::Min), "low": z.wmark(Watermark::Low), "high": z.wmark(Watermark::High),
            "protection": z.lowmem_reserve.to_vec(), "vm_stat": stats,
            "start_pfn": z.zone_start_pfn}));
    }
    Ok(Value::Object(json!({"zones": zones}), text))
}

/// One `kmem -i` line: label, pages, size, and a percentage of `of` (or `----`).
fn usage_line(label: &str, pages: u64, of: Option<(u64, &str)>) -> String {
    let tail = match of {
        None => "         ----".to_string(),
        Some((total, name)) => {
            let pct = (pages as u128 * 100)
                .checked_div(total as u128)
                .unwrap_or(0);
            format!("  {pct:>3}% of TOTAL {name}")
        }
    };
    format!(
        "{label:>13}  {pages:>7}  {:>11}{tail}",
        pages_to_size(pages)
    )
}

/// `kmem -i`: crash's memory usage table. kmemlab has no swap, no hugetlbfs, no shmem,
/// no buffer heads and no user address space, so SHARED, BUFFERS, the huge and swap
/// lines and COMMITTED are 0 because there is nothing of that kind; COMMIT LIMIT is
/// `vm_commit_limit()` with the default `overcommit_ratio` of 50.
fn usage_table(mm: &Mmp) -> Result<Value, String> {
    let m = procfs::meminfo_values(mm);
    let slab = m.sreclaimable + m.sunreclaim;
    let used = m.total.saturating_sub(m.free);
    let (shared, buffers, swap, huge) = (0u64, 0u64, 0u64, 0u64);
    let commit_limit = m.total * 50 / 100 + swap;
    let committed = 0u64;
    let mem = Some((m.total, "MEM"));
    let lines = [
        "                 PAGES        TOTAL      PERCENTAGE".to_string(),
        usage_line("TOTAL MEM", m.total, None),
        usage_line("FREE", m.free, mem),
        usage_line("USED", used, mem),
        usage_line("SHARED", shared, mem),
        usage_line("BUFFERS", buffers, mem),
        usage_line("CACHED", m.cached.saturating_sub(buffers), mem),
        usage_line("SLAB", slab, mem),
        String::new(),
        usage_line("TOTAL HUGE", huge, None),
        usage_line("HUGE FREE", 0, Some((huge, "HUGE"))),
        String::new(),
        usage_line("TOTAL SWAP", swap, None),
        usage_line("SWAP USED", 0, Some((swap, "SWAP"))),
        usage_line("SWAP FREE", 0, Some((swap, "SWAP"))),
        String::new(),
        usage_line("COMMIT LIMIT", commit_limit, None),
        usage_line("COMMITTED", committed, Some((commit_limit, "LIMIT"))),
    ];
    let obj = json!({"total_mem": m.total, "free": m.free, "used": used, "shared": shared,
        "buffers": buffers, "cached": m.cached, "slab": slab, "total_huge": huge, "huge_free": 0,
        "total_swap": swap, "swap_used": 0, "swap_free": 0, "commit_limit": commit_limit,
        "committed": committed, "page_size": 1u64 << PAGE_SHIFT});
    Ok(Value::Object(obj, lines.join("\n")))
}

// ----- kmem -v --------------------------------------------------------------------------

/// `kmem -v`: every vmap area as crash lists them (the size includes the guard page).
fn vmap_areas(mm: &Mmp) -> Result<Value, String> {
    let mut text = String::from(
        "   VMAP_AREA         VM_STRUCT                 ADDRESS RANGE                SIZE",
    );
    let mut areas = Vec::new();
    // The tree lock is held while the walk runs: each area's node is looked up after.
    let mut infos = Vec::new();
    let _ = mm.for_each_vmap_area(&mut |a| {
        infos.push(*a);
        Ok(())
    });
    let w = kaddr(mm, 0).len();
    for a in &infos {
        let node = mm.vmap_area_at(VirtAddr(a.start)).map_or(0, |v| v.0);
        let vm = a.vm.map(|v| v.vm.0);
        let kind = match (&a.vm, a.vm_map_ram) {
            (Some(v), _) if v.flags.contains(VmFlags::VM_ALLOC) => "vmalloc",
            (Some(_), _) => "vmap",
            (None, true) => "vm_map_ram",
            (None, false) => "lazily freed",
        };
        text.push_str(&format!(
            "\n{}  {:<w$}  {} - {}  {:>8}{}",
            kaddr(mm, node),
            vm.map_or(String::new(), |v| kaddr(mm, v)),
            kaddr(mm, a.start),
            kaddr(mm, a.end),
            a.end - a.start,
            if kind == "lazily freed" {
                "  (lazily freed, awaiting purge)"
            } else {
                ""
            }
        ));
        areas.push(
            json!({"vmap_area": hex(node), "vm_struct": vm.map(hex), "start": hex(a.start),
            "end": hex(a.end), "size": a.end - a.start, "kind": kind,
            "nr_pages": a.vm.map(|v| v.nr_pages),
            "caller": a.vm.and_then(|v| v.caller).map(|c| c.to_string())}),
        );
    }
    Ok(Value::Object(json!({"areas": areas}), text))
}

// ----- kmem -p --------------------------------------------------------------------------

const PAGE_HEADER: &str = "      PAGE        PHYSICAL      MAPPING       INDEX CNT FLAGS";

/// crash's `kmem -p` row of one page and its JSON. kmemlab's `struct page` has no
/// `mapping` or `index` of a file page: MAPPING shows the cache of a slab page (the
/// union's `slab_cache`, as crash shows it) and 0 otherwise; INDEX is 0.
fn page_row(mm: &Mmp, pfn: u64) -> (String, Json) {
    let page = mm.mem_map().page(pfn);
    let mapping = if page.is_slab() { page.slab_cache() } else { 0 };
    let names: Vec<&str> = flag_names(page.flags()).collect();
    let sp = struct_page(mm, pfn);
    let line = format!(
        "{sp:x}  {:>8x} {mapping:>16x} {:>8} {:>2} {:x} {}",
        pfn << PAGE_SHIFT,
        0,
        page.refcount(),
        page.flags(),
        names.join(",")
    )
    .trim_end()
    .to_string();
    let j = json!({"page": hex(sp), "pfn": pfn, "physical": hex(pfn << PAGE_SHIFT), "mapping": hex(mapping),
        "index": 0, "count": page.refcount(), "flags": page.flags(), "flag_names": names,
        "order": page.order(), "mapcount": page.mapcount()});
    (line, j)
}

/// `kmem -p PFN`.
fn page_descriptor(mm: &Mmp, pfn: u64) -> Result<Value, String> {
    let (j, text) = page_descriptor_parts(mm, pfn)?;
    Ok(Value::Object(j, text))
}

fn page_descriptor_parts(mm: &Mmp, pfn: u64) -> Result<(Json, String), String> {
    if !mm.mem_map().contains(pfn) && pfn < mm.mem_map().base_pfn + mm.mem_map().len {
        return Err(format!(
            "kmem: pfn {pfn:#x} is outside mem_map: memory section {} is absent (no RAM)",
            mm.pfn_to_section_nr(pfn)
        ));
    }
    if !mm.mem_map().contains(pfn) {
        return Err(format!(
            "kmem: pfn {pfn:#x} is outside mem_map (pfns {:#x}..{:#x})",
            mm.mem_map().base_pfn,
            mm.mem_map().base_pfn + mm.mem_map().len
        ));
    }
    let (line, j) = page_row(mm, pfn);
    let info = page_info(mm, Pfn(pfn));
    let text = format!("{PAGE_HEADER}\n{line}\n  {}", info.line());
    let mut j = j;
    j["zone"] = json!(info.zone);
    j["state"] = json!(info.state);
    j["pageblock_migratetype"] = json!(info.pageblock_migratetype);
    Ok((j, text))
}

// ----- kmem ADDR ------------------------------------------------------------------------

/// `kmem ADDR`: a struct page, a vmalloc address, a direct-map address, or else a
/// physical address of this machine.
fn describe_address(mm: &Mmp, addr: u64) -> Result<Value, String> {
    if let Some(page) = mm.page_at_struct_address(VirtAddr(addr)) {
        let pfn = mm.page_to_pfn(page).0;
        let (mut j, text) = page_descriptor_parts(mm, pfn)?;
        j["kind"] = json!("struct page");
        return Ok(Value::Object(
            j,
            format!("{addr:x}: struct page of pfn {pfn:#x}\n{text}"),
        ));
    }
    if mm.is_vmalloc_addr(VirtAddr(addr)) {
        return describe_vmalloc(mm, addr);
    }
    if let Some(phys) = mm.layout().virt_to_phys(addr) {
        return describe_phys(mm, phys, Some(addr));
    }
    if addr < (mm.mem_map().base_pfn + mm.mem_map().len) << PAGE_SHIFT {
        return describe_phys(mm, addr, None);
    }
    Err(format!(
        "kmem: {addr:#x} is no address of this machine: not in the direct map, the vmalloc area or mem_map, nor a physical address below the end of RAM"
    ))
}

fn answer(kind: &str, addr: u64, mut j: Json, text: String) -> Result<Value, String> {
    j["kind"] = json!(kind);
    j["address"] = hex(addr);
    Ok(Value::Object(j, text))
}

/// A vmalloc address: its area, offset and backing page, or a guard page, or free space.
fn describe_vmalloc(mm: &Mmp, addr: u64) -> Result<Value, String> {
    let Some(area) = mm.find_vm_area(VirtAddr(addr)) else {
        let node = mm.vmap_area_at(VirtAddr(addr));
        return answer(
            "vmalloc (no live area)",
            addr,
            json!({"vmap_area": node.map(|v| hex(v.0))}),
            format!(
                "{addr:x}: vmalloc address in no live vmalloc/vmap area{}",
                if node.is_some() {
                    " (a free or lazily freed range)"
                } else {
                    ""
                }
            ),
        );
    };
    let offset = addr - area.addr.0;
    let head = format!(
        "   VMAP_AREA         VM_STRUCT                 ADDRESS RANGE                SIZE\n{}  {}  {} - {}  {:>8}",
        kaddr(mm, mm.vmap_area_at(area.addr).map_or(0, |v| v.0)),
        kaddr(mm, area.vm.0),
        kaddr(mm, area.addr.0),
        kaddr(mm, area.addr.0 + area.size),
        area.size
    );
    let base = json!({"area": hex(area.addr.0), "size": area.size, "vm_struct": hex(area.vm.0),
        "offset": offset, "caller": area.caller.map(|c| c.to_string())});
    if offset >= area.usable_size() {
        return answer(
            "guard page",
            addr,
            base,
            format!("{head}\n{addr:x}: guard page of the area (offset {offset:#x}; never mapped: an access faults)"),
        );
    }
    match mm.kernel_translate(addr) {
        Some(m) if mm.mem_map().contains(m.phys.0 >> PAGE_SHIFT) => {
            let pfn = m.phys.0 >> PAGE_SHIFT;
            let (row, page) = page_row(mm, pfn);
            let mut j = base;
            j["phys"] = hex(m.phys.0);
            j["pfn"] = json!(pfn);
            j["page_size"] = json!(m.page_size);
            j["page"] = page;
            answer(
                "vmalloc",
                addr,
                j,
                format!("{head}\n{addr:x}: offset {offset:#x} in the area, mapped to phys {:x} (pfn {pfn:#x}, {} KiB leaf)\n\n{PAGE_HEADER}\n{row}", m.phys.0, m.page_size >> 10),
            )
        }
        Some(m) => answer(
            "vmalloc (outside mem_map)",
            addr,
            json!({"phys": hex(m.phys.0), "offset": offset}),
            format!("{head}\n{addr:x}: offset {offset:#x}, mapped to phys {:x}, a frame outside mem_map", m.phys.0),
        ),
        None => answer(
            "vmalloc (unmapped)",
            addr,
            base,
            format!(
                "{head}\n{addr:x}: offset {offset:#x} in the area, not mapped by the page tables"
            ),
        ),
    }
}

/// A physical address (and the direct-map address it was reached by, if any).
fn describe_phys(mm: &Mmp, phys: u64, virt: Option<u64>) -> Result<Value, String> {
    let pfn = phys >> PAGE_SHIFT;
    let shown = virt.unwrap_or(phys);
    let in_ram = mm
        .memblock()
        .memory
        .regions()
        .iter()
        .any(|r| r.base <= phys && phys < r.base + r.size);
    if !in_ram || !mm.mem_map().contains(pfn) {
        return answer(
            "hole",
            shown,
            json!({"phys": hex(phys), "pfn": pfn}),
            format!("{shown:x}: phys {phys:x} (pfn {pfn:#x}) is a hole: no RAM there"),
        );
    }
    if let Some(v) = virt.or_else(|| mm.layout().phys_to_virt(phys))
        && let Some(found) = mm.slab_object(VirtAddr(v))
    {
        return describe_slab_object(mm, shown, found);
    }
    let (row, page_json) = page_row(mm, pfn);
    let page_text = format!("\n\n{PAGE_HEADER}\n{row}");
    let mut j = json!({"phys": hex(phys), "pfn": pfn, "page": page_json});
    let page = mm.mem_map().page(pfn);
    if page.is_reserved() {
        let region = mm
            .memblock()
            .reserved
            .regions()
            .iter()
            .find(|r| r.base <= phys && phys < r.base + r.size);
        j["region"] = json!(region.map(|r| r.name));
        let level = mm.page_table_level(pfn);
        if let Some(level) = level {
            let name = mm.paging().levels[level].name;
            j["page_table_level"] = json!(name);
            return answer("page table", shown, j, format!("{shown:x}: a kernel page table page ({name}, level {level}), reserved at boot{page_text}"));
        }
        return answer(
            "reserved",
            shown,
            j,
            format!(
                "{shown:x}: reserved page{}{page_text}",
                region.map_or(
                    " (no memblock reservation: firmware or a hole inside RAM)".to_string(),
                    |r| format!(" (memblock: {})", r.name)
                )
            ),
        );
    }
    if let Some(b) = mm.free_block_of(pfn) {
        return describe_free_block(shown, j, &b, page_text);
    }
    // A tail's head PFN is read from RAM: it must be a large kmalloc head whose block
    // reaches this page.
    let head = if page.is_tail() { page.word() } else { pfn };
    let large = mm.mem_map().get(head).filter(|h| {
        h.flags() & PG_LARGE_KMALLOC != 0
            && head <= pfn
            && pfn - head < 1u64.checked_shl(h.order()).unwrap_or(0)
    });
    if let Some(h) = large {
        let start = mm.layout().phys_to_virt(head << PAGE_SHIFT).unwrap_or(0);
        j["object"] = hex(start);
        j["order"] = json!(h.order());
        j["size"] = json!(4096u64 << h.order().min(20));
        return answer("large kmalloc", shown, j, format!(
            "{shown:x}: large kmalloc block {start:x} of order {} ({} bytes, offset {:#x}), straight from the page allocator{page_text}",
            h.order(), 4096u64 << h.order().min(20), (pfn - head) * 4096 + (phys & 0xfff)));
    }
    if page.refcount() > 0
        && page.order() == 0
        && let Some(level) = mm.page_table_level(pfn)
    {
        let name = mm.paging().levels[level].name;
        j["page_table_level"] = json!(name);
        return answer(
            "page table",
            shown,
            j,
            format!("{shown:x}: a kernel page table page ({name}, level {level}){page_text}"),
        );
    }
    let info = page_info(mm, Pfn(pfn));
    j["state"] = json!(info.state);
    j["block_pfn"] = json!(info.block_pfn);
    j["order"] = json!(info.order);
    answer(
        "page",
        shown,
        j,
        format!("{shown:x}: {}{page_text}", info.line()),
    )
}

fn describe_free_block(
    shown: u64,
    mut j: Json,
    b: &FreeBlock,
    page_text: String,
) -> Result<Value, String> {
    j["head_pfn"] = json!(b.head);
    j["order"] = json!(b.order);
    j["migratetype"] = json!(b.migratetype.name());
    j["on_list"] = json!(b.on_list);
    let (kind, list) = match b.list {
        FreeList::Buddy => (
            "free buddy block",
            format!("free_area[{}].free_list[{}]", b.order, b.migratetype.name()),
        ),
        FreeList::PerCpu(cpu) => {
            j["cpu"] = json!(cpu);
            (
                "per-cpu list page",
                format!(
                    "CPU {cpu}'s per-CPU list (order {}, {})",
                    b.order,
                    b.migratetype.name()
                ),
            )
        }
    };
    let verdict = if b.on_list {
        format!("on {list}")
    } else {
        j["corrupted"] = json!("marked free but on no free list");
        "corrupted: its struct page says free, but no free list holds it".to_string()
    };
    answer(
        kind,
        shown,
        j,
        format!(
            "{shown:x}: in a {kind} at head pfn {:#x}, order {} ({} page{}), {}; {verdict}{page_text}",
            b.head,
            b.order,
            1u64 << b.order,
            if b.order == 0 { "" } else { "s" },
            b.migratetype.name()
        ),
    )
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
fn describe_slab_object(
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
