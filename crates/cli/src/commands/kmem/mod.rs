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
//!
//! Where things are: this file holds the command table, the dispatcher ([`kmem`]), the
//! size helpers and `kmem -f`, `-z`, `-i` and `-v`; `slabs.rs` holds `kmem -s` and `-S`
//! and what a slab object is; `address.rs` holds `kmem ADDR`, `-P` and `-p` (what an
//! address is, page descriptors and free blocks). Start at [`kmem`].

use kmemlab_mm::slab::{KmemCache, KmemCacheRef};
use kmemlab_mm::vmalloc::VmFlags;
use kmemlab_mm::{procfs, Mm, Pfn, VirtAddr, PAGE_SHIFT};
use kmemlab_sim::SimPlatform;
use serde_json::json;

use super::Command;
use crate::output::addr as hex;
use crate::shell::{Shell, Value};

mod address;
mod slabs;

use address::{describe_address, describe_phys, page_descriptor};
use slabs::{cache_slabs, cache_table, describe_slab_object};

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
        ["-s"] => cache_table(&sh.machine.mm(), None),
        ["-s", cache] => match cache_arg(sh, cache) {
            Ok(r) => cache_table(&sh.machine.mm(), Some(r)),
            // crash's `kmem -s ADDR`: the cache and slab holding an address.
            Err(e) => match sh.number(cache).ok().and_then(|a| {
                let found = sh.machine.mm().slab_object(VirtAddr(a))?;
                Some(describe_slab_object(&sh.machine.mm(), a, found))
            }) {
                Some(answer) => answer,
                None => Err(e),
            },
        },
        ["-S", cache] => cache_slabs(&sh.machine.mm(), cache_arg(sh, cache)?),
        ["-f"] => free_lists(&sh.machine.mm()),
        ["-v"] => vmap_areas(&sh.machine.mm()),
        ["-i"] => usage_table(&sh.machine.mm()),
        ["-z"] => zone_stats(&sh.machine.mm()),
        ["-p", pfn] => {
            let pfn = Pfn(sh.number(pfn)?);
            page_descriptor(&sh.machine.mm(), pfn)
        }
        ["-P", phys] => {
            let phys = sh.number(phys)?;
            describe_phys(&sh.machine.mm(), phys, None)
        }
        [flag, ..] if flag.starts_with('-') && !is_known_flag(flag) => {
            Err(format!("invalid option '{flag}'; {}", usage()))
        }
        [flag, ..] if flag.starts_with('-') => Err(usage()),
        [addr] => {
            let addr = sh.number(addr)?;
            describe_address(&sh.machine.mm(), addr)
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

fn struct_page(mm: &Mmp, pfn: Pfn) -> u64 {
    mm.struct_page_address(mm.mem_map().page(pfn)).0
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
            z.zone_start_pfn.phys().0,
            z.zone_start_pfn.raw()
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
            "start_paddr": hex(z.zone_start_pfn.phys().0), "start_mapnr": z.zone_start_pfn.raw(),
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
            "start_pfn": z.zone_start_pfn.raw()}));
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
