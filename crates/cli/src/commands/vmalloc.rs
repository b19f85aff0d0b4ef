//! The shell's vmalloc commands: `vmalloc`, `vzalloc`, `vmalloc_huge`, `vfree`, `vmap`,
//! `vunmap`, `vmalloc_to_page`, `purge`, and `info` of a vmalloc area or kmalloc object
//! as physical runs and zones.

use std::collections::{BTreeMap, BTreeSet};

use kmemlab_mm::arch::pgtable::PgProt;
use kmemlab_mm::mm_types::{PG_HEAD, PG_LARGE_KMALLOC};
use kmemlab_mm::vmalloc::{VmArea, VmFlags};
use kmemlab_mm::{Mm, Pfn, VirtAddr, MAX_PAGE_ORDER, PAGE_SHIFT, PAGE_SIZE};
use kmemlab_sim::{format_size, SimPlatform};
use serde_json::json;

use super::Command;
use crate::output::{addr as addr_json, opt_addr};
use crate::shell::{Shell, Value};

/// This module's shell commands.
pub(super) const COMMANDS: &[Command] = &[
    Command {
        name: "vmalloc",
        usage: "<size>",
        help: "virtually contiguous memory (GFP_KERNEL); returns its address",
        mutates: true,
        run: vmalloc,
    },
    Command {
        name: "vzalloc",
        usage: "<size>",
        help: "zeroed vmalloc",
        mutates: true,
        run: vzalloc,
    },
    Command {
        name: "__vmalloc",
        usage: "<size> <gfp>",
        help: "vmalloc with explicit GFP flags",
        mutates: true,
        run: vmalloc_gfp,
    },
    Command {
        name: "vmalloc_huge",
        usage: "<size> [gfp]",
        help: "vmalloc with 2 MiB mappings where possible (x86_64)",
        mutates: true,
        run: vmalloc_huge,
    },
    Command {
        name: "vfree",
        usage: "<addr>",
        help: "free a vmalloc area (deferred from interrupt context)",
        mutates: true,
        run: vfree,
    },
    Command {
        name: "kvmalloc",
        usage: "<size> [gfp]",
        help: "kmalloc, falling back to vmalloc above a page when the flags allow blocking",
        mutates: true,
        run: kvmalloc,
    },
    Command {
        name: "kvzalloc",
        usage: "<size> [gfp]",
        help: "kvmalloc, zeroed",
        mutates: true,
        run: kvzalloc,
    },
    Command {
        name: "kvfree",
        usage: "<addr>",
        help: "free kvmalloc memory: vfree or kfree by address",
        mutates: true,
        run: kvfree,
    },
    Command {
        name: "vmap",
        usage: "<page> <count>",
        help: "map count pages from a struct page into the vmalloc area",
        mutates: true,
        run: vmap,
    },
    Command {
        name: "vunmap",
        usage: "<addr>",
        help: "unmap a vmap area (the pages stay allocated)",
        mutates: true,
        run: vunmap,
    },
    Command {
        name: "vmalloc_to_page",
        usage: "<addr>",
        help: "the struct page behind a vmalloc address",
        mutates: false,
        run: vmalloc_to_page,
    },
    Command {
        name: "purge",
        usage: "",
        help: "vm_unmap_aliases(): purge lazily freed areas now (one TLB flush)",
        mutates: true,
        run: purge,
    },
    Command {
        name: "walk",
        usage: "<addr>",
        help: "the page-table walk of an address, level by level",
        mutates: false,
        run: walk,
    },
    Command {
        name: "read",
        usage: "<addr> <offset> <len>",
        help: "read bytes through this CPU's MMU (TLB, then page tables)",
        mutates: false,
        run: read,
    },
    Command {
        name: "write",
        usage: "<addr> <offset> <0xhex|text>",
        help: "write bytes through this CPU's MMU",
        mutates: true,
        run: write,
    },
    Command {
        name: "tlb",
        usage: "",
        help: "per-CPU TLB counters and TLB shootdowns",
        mutates: false,
        run: tlb,
    },
];

/// `__vmalloc(size, gfp)` as the shell runs it: on the shell's CPU and context, recording
/// the script line as the caller.
fn vmalloc_with(sh: &Shell, size: u64, gfp: kmemlab_mm::Gfp) -> Result<Value, String> {
    let site = sh.call_site();
    sh.kernel(|mm| {
        mm.__vmalloc_caller(size as usize, gfp, site)
            .map(|a| area_value(mm, a))
            .map_err(|e| e.to_string())
    })?
}

/// `vmalloc <size>`.
pub fn vmalloc(sh: &mut Shell, args: &[&str]) -> Result<Value, String> {
    vmalloc_with(sh, sh.size(args[0])?, kmemlab_mm::Gfp::GFP_KERNEL)
}

/// `vzalloc <size>`.
pub fn vzalloc(sh: &mut Shell, args: &[&str]) -> Result<Value, String> {
    let gfp = kmemlab_mm::Gfp::GFP_KERNEL | kmemlab_mm::Gfp::__GFP_ZERO;
    vmalloc_with(sh, sh.size(args[0])?, gfp)
}

/// `__vmalloc <size> <gfp>`.
pub fn vmalloc_gfp(sh: &mut Shell, args: &[&str]) -> Result<Value, String> {
    vmalloc_with(sh, sh.size(args[0])?, sh.gfp(args[1])?)
}

/// `vmalloc_huge <size> [gfp]`.
pub fn vmalloc_huge(sh: &mut Shell, args: &[&str]) -> Result<Value, String> {
    let size = sh.size(args[0])?;
    let gfp = match args.get(1) {
        Some(g) => sh.gfp(g)?,
        None => kmemlab_mm::Gfp::GFP_KERNEL,
    };
    let site = sh.call_site();
    sh.kernel(|mm| {
        mm.vmalloc_huge_caller(size as usize, gfp, site)
            .map(|a| area_value(mm, a))
            .map_err(|e| e.to_string())
    })?
}

/// `vfree <addr>`.
pub fn vfree(sh: &mut Shell, args: &[&str]) -> Result<Value, String> {
    let addr = VirtAddr(sh.number(args[0])?);
    sh.kernel(|mm| {
        let deferred_before =
            mm.deferred_vfrees(kmemlab_mm::Hardware::smp_processor_id(mm.platform()));
        mm.vfree(addr).map_err(|e| e.to_string())?;
        if mm.deferred_vfrees(kmemlab_mm::Hardware::smp_processor_id(mm.platform()))
            > deferred_before
        {
            return Ok(Value::Text(
                "deferred: queued for this CPU's kworker (vfree from interrupt context)".into(),
            ));
        }
        Ok(Value::Text(format!(
            "freed; {} lazily freed pages wait for the purge (threshold {})",
            mm.vmap_lazy_nr(),
            mm.lazy_max_pages()
        )))
    })?
}

/// `vmap <page> <count>`: map `count` pages starting at a struct page (an `alloc_pages`
/// result of order ≥ log2(count), or any run of allocated pages).
pub fn vmap(sh: &mut Shell, args: &[&str]) -> Result<Value, String> {
    let (page, count) = (sh.number(args[0])?, sh.number(args[1])?);
    let site = sh.call_site();
    sh.kernel(|mm| {
        // vmap() refuses `count > totalram_pages()` before anything else (mm/vmalloc.c,
        // Linux 6.6); the shell checks the same before it builds the page array on the
        // host, which is then at most one entry per page of the machine's RAM.
        let total = mm.totalram_pages();
        if count == 0 || count > total {
            return Err(format!(
                "vmap: count {count} is outside 1 ..= totalram_pages ({total})"
            ));
        }
        let first = mm
            .page_at_struct_address(VirtAddr(page))
            .map(|p| mm.page_to_pfn(p))
            .ok_or_else(|| format!("{page:#x} is not a struct page *"))?;
        let pages: Vec<Pfn> = (0..count).map(|i| Pfn(first.0 + i)).collect();
        let prot = PgProt::kernel(mm.profile());
        mm.vmap_caller(&pages, VmFlags::VM_MAP, prot, site)
            .map(|a| area_value(mm, a))
            .map_err(|e| e.to_string())
    })?
}

/// `vunmap <addr>`.
pub fn vunmap(sh: &mut Shell, args: &[&str]) -> Result<Value, String> {
    let addr = VirtAddr(sh.number(args[0])?);
    sh.kernel(|mm| {
        mm.vunmap(addr)
            .map(|_| Value::None)
            .map_err(|e| e.to_string())
    })?
}

/// `vmalloc_to_page <addr>`.
pub fn vmalloc_to_page(sh: &mut Shell, args: &[&str]) -> Result<Value, String> {
    let addr = VirtAddr(sh.number(args[0])?);
    sh.kernel(|mm| {
        let page = mm
            .vmalloc_to_page(addr)
            .ok_or_else(|| format!("{addr} is not mapped in the vmalloc area"))?;
        let pfn = mm.page_to_pfn(page);
        Ok(Value::Address(
            mm.struct_page_address(page).0,
            format!(
                "struct page of pfn {:#x} (phys {:#x}, zone {})",
                pfn.0,
                pfn.0 << PAGE_SHIFT,
                mm.page_zone(page).name()
            ),
        ))
    })?
}

/// `purge`: `vm_unmap_aliases()`, the lazy purge now.
pub fn purge(sh: &mut Shell, _: &[&str]) -> Result<Value, String> {
    sh.kernel(|mm| {
        let pages = mm.vmap_lazy_nr();
        let flushes = mm
            .vmalloc_stats()
            .tlb_flushes
            .load(std::sync::atomic::Ordering::Relaxed);
        mm.vm_unmap_aliases();
        let flushed = mm
            .vmalloc_stats()
            .tlb_flushes
            .load(std::sync::atomic::Ordering::Relaxed)
            - flushes;
        Value::Text(format!(
            "purged {pages} lazily freed pages with {flushed} TLB flush{}",
            if flushed == 1 { "" } else { "es" }
        ))
    })
}

/// The value of a new vmalloc/vmap area: its address, with a one-line description.
fn area_value(mm: &Mm<SimPlatform>, addr: VirtAddr) -> Value {
    match mm.find_vm_area(addr) {
        Some(a) => {
            let pfns = area_pfns(mm, &a);
            Value::Address(
                addr.0,
                format!(
                    "{} of virtually contiguous memory, {} pages in {} physical run{}",
                    format_size(a.usable_size()),
                    pfns.len(),
                    runs(&pfns).len(),
                    if runs(&pfns).len() == 1 { "" } else { "s" }
                ),
            )
        }
        None => Value::Address(addr.0, "vmalloc area".into()),
    }
}

fn area_pfns(mm: &Mm<SimPlatform>, a: &VmArea) -> Vec<Pfn> {
    let mut pfns = Vec::new();
    let _ = mm.vm_area_pfns(a.addr, |p| pfns.push(p));
    pfns
}

/// Physically contiguous runs of PFNs, in order: `(first, length)`.
pub fn runs(pfns: &[Pfn]) -> Vec<(Pfn, u64)> {
    let mut out: Vec<(Pfn, u64)> = Vec::new();
    for &p in pfns {
        match out.last_mut() {
            Some((first, len)) if *first + *len == p => *len += 1,
            _ => out.push((p, 1)),
        }
    }
    out
}

/// PFNs as the plain numbers JSON output shows.
pub fn raw_pfns(pfns: &[Pfn]) -> Vec<u64> {
    pfns.iter().map(|p| p.raw()).collect()
}

/// Pages per zone.
fn zones(mm: &Mm<SimPlatform>, pfns: &[Pfn]) -> BTreeMap<&'static str, u64> {
    let mut z = BTreeMap::new();
    for &p in pfns {
        if let Ok(page) = mm.pfn_to_page(p) {
            *z.entry(mm.page_zone(page).name()).or_insert(0) += 1;
        }
    }
    z
}

/// `info` of a vmalloc address: virtual range, guard page, backing PFNs as runs, the zone
/// of each page, and the page-table pages the area uses.
pub fn vmalloc_info(mm: &Mm<SimPlatform>, addr: VirtAddr) -> Option<Value> {
    let a = mm.find_vm_area(addr)?;
    let pfns = area_pfns(mm, &a);
    let runs = runs(&pfns);
    let zones = zones(mm, &pfns);
    let mut tables = BTreeSet::new();
    let levels = mm.paging().levels;
    let mut leaf_size = 4096;
    for i in 0..a.usable_size() >> PAGE_SHIFT {
        mm.kernel_walk_tables(a.addr.0 + (i << PAGE_SHIFT), &mut |level, table, _| {
            if level > 0 {
                tables.insert((levels[level].name, table.0));
            }
        });
        if let Some(m) = mm.kernel_translate(a.addr.0 + (i << PAGE_SHIFT)) {
            leaf_size = leaf_size.max(m.page_size);
        }
    }
    let guard = (!a.flags.contains(VmFlags::VM_NO_GUARD)).then_some(a.addr.0 + a.usable_size());
    let end = a.addr.0 + a.usable_size();
    let kind = if a.flags.contains(VmFlags::VM_ALLOC) {
        "vmalloc"
    } else {
        "vmap"
    };
    let run_text: Vec<String> = runs
        .iter()
        .take(8)
        .map(|(p, n)| {
            if *n == 1 {
                format!("{:#x}", p.raw())
            } else {
                format!("{:#x}+{n}", p.raw())
            }
        })
        .collect();
    let zone_text: Vec<String> = zones.iter().map(|(z, n)| format!("{z} {n}")).collect();
    let text = format!(
        "{kind} area {:#x}-{end:#x} ({}), guard page {}, {} pages in {} physical run{} [{}{}], zones: {}; {} page-table pages below the top level, {} KiB leaves; caller {}",
        a.addr.0,
        format_size(a.usable_size()),
        guard.map_or("none".to_string(), |g| format!("{g:#x}")),
        pfns.len(),
        runs.len(),
        if runs.len() == 1 { "" } else { "s" },
        run_text.join(", "),
        if runs.len() > 8 { ", ..." } else { "" },
        zone_text.join(", "),
        tables.len(),
        leaf_size >> 10,
        a.caller.map_or("?".to_string(), |c| c.to_string()),
    );
    let obj = json!({
        "kind": kind,
        "virt": addr_json(a.addr.0),
        "size": a.usable_size(),
        "end": addr_json(end),
        "guard": opt_addr(guard),
        "pfns": raw_pfns(&pfns),
        "phys_runs": runs.len(),
        "runs": runs.iter().map(|&(p, n)| (p.raw(), n)).collect::<Vec<_>>(),
        "zones": zones,
        "page_tables": tables.len(),
        "leaf_size": leaf_size,
        "nr_pages": a.nr_pages,
        "caller": a.caller.map(|c| c.to_string()),
    });
    Some(Value::Object(obj, text))
}

/// The PFN behind each page of `[addr, addr + size)`, found by walking the kernel page
/// tables page by page (`kernel_translate`, as [`Mm::vm_area_pfns`] does for vmalloc),
/// or the first address no page table maps.
pub fn mapped_pfns(mm: &Mm<SimPlatform>, addr: VirtAddr, size: u64) -> Result<Vec<Pfn>, u64> {
    let page = 1u64 << PAGE_SHIFT;
    let first = addr.0 & !(page - 1);
    let last = addr.0.saturating_add(size.max(1) - 1) & !(page - 1);
    (0..=(last - first) >> PAGE_SHIFT)
        .map(|i| {
            let va = first + (i << PAGE_SHIFT);
            mm.kernel_translate(va).map(|m| m.phys.pfn()).ok_or(va)
        })
        .collect()
}

/// The physical pages behind a kmalloc object or large kmalloc block (`virt`, `size`,
/// `pfns`, `phys_runs`, `zones`), each page translated through the page tables, for
/// `info`'s JSON; with `unmapped` instead of the pages if some address is not mapped.
pub fn kmalloc_extent(mm: &Mm<SimPlatform>, addr: VirtAddr, size: u64) -> serde_json::Value {
    match mapped_pfns(mm, addr, size) {
        Ok(pfns) => json!({
            "virt": addr_json(addr.0),
            "size": size,
            "phys_runs": runs(&pfns).len(),
            "zones": zones(mm, &pfns),
            "pfns": raw_pfns(&pfns),
        }),
        Err(va) => json!({"virt": addr_json(addr.0), "size": size, "unmapped": addr_json(va)}),
    }
}

/// `info` of the start of a large kmalloc block (one above the largest kmalloc cache,
/// straight from the page allocator): its size and the physical pages behind it, each
/// page translated through the page tables. `None` if `addr` is not one.
pub fn large_kmalloc_info(mm: &Mm<SimPlatform>, addr: VirtAddr) -> Option<Value> {
    if mm.object_info(addr).is_some() || mm.is_vmalloc_addr(addr) {
        return None;
    }
    // Decided from the struct pages alone: ksize() would WARN (free_large_kmalloc()'s
    // WARN_ON_ONCE) for a page that is no large kmalloc block, and `info` only looks.
    let order = match large_kmalloc_head(mm, addr)? {
        Ok(order) => order,
        Err(corrupt) => {
            let text = format!("large kmalloc {:#x}: corrupt: {corrupt}", addr.0);
            return Some(Value::Object(
                json!({"kind": "large kmalloc", "virt": addr_json(addr.0), "corrupt": corrupt}),
                text,
            ));
        }
    };
    let size = (PAGE_SIZE as u64) << order;
    let extent = kmalloc_extent(mm, addr, size);
    let pfns: Vec<Pfn> = extent["pfns"]
        .as_array()
        .map(|a| a.iter().filter_map(|p| p.as_u64().map(Pfn)).collect())
        .unwrap_or_default();
    let block = runs(&pfns);
    let text = match block.as_slice() {
        [] => format!(
            "large kmalloc {:#x}: {} ({size} bytes), not mapped at {}",
            addr.0,
            format_size(size),
            extent["unmapped"].as_str().unwrap_or("?")
        ),
        _ => {
            let zone_text: Vec<String> = zones(mm, &pfns)
                .iter()
                .map(|(z, n)| format!("{z} {n}"))
                .collect();
            format!(
                "large kmalloc {:#x}: {} straight from the page allocator, {} pages in {} physical run{} starting at pfn {:#x}, zones: {}",
                addr.0,
                format_size(size),
                pfns.len(),
                block.len(),
                if block.len() == 1 { "" } else { "s" },
                block[0].0.raw(),
                zone_text.join(", ")
            )
        }
    };
    let mut obj = json!({"kind": "large kmalloc"});
    if let (Some(o), serde_json::Value::Object(e)) = (obj.as_object_mut(), extent) {
        o.extend(e);
    }
    Some(Value::Object(obj, text))
}

/// Whether `addr` is the start of a live large kmalloc block, read from its `struct
/// page`s as `free_large_kmalloc()` (mm/slab_common.c, 6.6) would find them, without
/// reporting anything: `None` if it is not one (no direct-map address, a page without the
/// large-kmalloc page type, a free page, or not the block's first byte); `Some(Ok(order))`
/// for a consistent block; `Some(Err(why))` when the head page carries the type but its
/// order disagrees with its tail pages (a corrupted `struct page`).
pub fn large_kmalloc_head(mm: &Mm<SimPlatform>, addr: VirtAddr) -> Option<Result<u32, String>> {
    let page = mm.virt_to_page(addr).ok()?;
    let pfn = mm.page_to_pfn(page);
    let head = mm.mem_map().get(pfn)?;
    if head.is_tail() || !head.test(PG_LARGE_KMALLOC) || head.refcount() == 0 {
        return None;
    }
    if mm.page_address(head).map(|a| a.0) != Some(addr.0) {
        return None;
    }
    let order = head.order();
    let tail_of_head = |p: Pfn| {
        mm.mem_map()
            .get(p)
            .is_some_and(|t| t.is_tail() && t.word() == pfn.raw())
    };
    let consistent = (1..=MAX_PAGE_ORDER).contains(&order)
        && head.test(PG_HEAD)
        && tail_of_head(pfn + 1)
        && tail_of_head(pfn + ((1 << order) - 1))
        && !tail_of_head(pfn + (1 << order));
    Some(if consistent {
        Ok(order)
    } else {
        Err(format!(
            "the head page at pfn {:#x} says order {order}, which disagrees with the block's pages",
            pfn.raw()
        ))
    })
}

/// `walk <addr>`: the page-table walk, level by level (the tables only, no TLB).
pub fn walk(sh: &mut Shell, args: &[&str]) -> Result<Value, String> {
    let va = VirtAddr(sh.number(args[0])?);
    let w = sh.machine.walk(va);
    let steps: Vec<serde_json::Value> = w
        .steps
        .iter()
        .map(|s| json!({"level": s.level, "table": addr_json(s.table.0), "index": s.index, "entry": addr_json(s.entry)}))
        .collect();
    let result = match &w.result {
        Ok(t) => {
            json!({"phys": addr_json(t.phys.0), "page_size": t.page_size, "writable": t.writable})
        }
        Err(_) => serde_json::Value::Null,
    };
    Ok(Value::Object(
        json!({"virt": addr_json(va.0), "steps": steps, "result": result}),
        w.to_string(),
    ))
}

/// `read <addr> <offset> <len>`: bytes read through this CPU's MMU (TLB, then tables).
pub fn read(sh: &mut Shell, args: &[&str]) -> Result<Value, String> {
    let (base, off, len) = (
        sh.number(args[0])?,
        sh.number(args[1])?,
        sh.number(args[2])?,
    );
    if len > 1 << 20 {
        return Err("read: at most 1 MiB at a time".into());
    }
    let va = VirtAddr(base.wrapping_add(off));
    let machine = &sh.machine;
    let bytes = sh
        .kernel(|_| machine.read(va, len as usize))?
        .map_err(|e| e.to_string())?;
    let hex: Vec<String> = bytes.iter().map(|b| format!("{b:02x}")).collect();
    let text = hex
        .chunks(16)
        .enumerate()
        .map(|(i, row)| format!("{:#x}: {}", va.0 + i as u64 * 16, row.join(" ")))
        .collect::<Vec<_>>()
        .join("\n");
    Ok(Value::Object(
        json!({"virt": addr_json(va.0), "bytes": bytes}),
        text,
    ))
}

/// `write <addr> <offset> <bytes>`: bytes (`0x` hex, or text) written through the MMU.
pub fn write(sh: &mut Shell, args: &[&str]) -> Result<Value, String> {
    let (base, off) = (sh.number(args[0])?, sh.number(args[1])?);
    let bytes = parse_bytes(args[2])?;
    let va = VirtAddr(base.wrapping_add(off));
    let machine = &sh.machine;
    sh.kernel(|_| machine.write(va, &bytes))?
        .map_err(|e| e.to_string())?;
    Ok(Value::Text(format!(
        "wrote {} bytes at {:#x}",
        bytes.len(),
        va.0
    )))
}

fn parse_bytes(arg: &str) -> Result<Vec<u8>, String> {
    let Some(hex) = arg.strip_prefix("0x") else {
        return Ok(arg.as_bytes().to_vec());
    };
    // Checked as ASCII hex digits first, so that pairs are sliced on byte boundaries that
    // are also character boundaries.
    if !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(format!("'{arg}' is not hex"));
    }
    if hex.is_empty() || hex.len() % 2 != 0 {
        return Err(format!("'{arg}': hex bytes come in pairs of digits"));
    }
    (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).map_err(|_| format!("'{arg}' is not hex")))
        .collect()
}

/// `tlb`: each CPU's TLB counters and the machine's shootdowns.
pub fn tlb(sh: &mut Shell, _: &[&str]) -> Result<Value, String> {
    let m = &sh.machine;
    let mut lines = vec![format!(
        "{:<4} {:>10} {:>10} {:>10} {:>10} {:>12} {:>12}",
        "cpu", "L1 hits", "L2 hits", "misses", "flushed", "full flushes", "invlpg"
    )];
    let mut cpus = Vec::new();
    for cpu in 0..m.config().cpus {
        let s = m.tlb_stats(cpu);
        lines.push(format!(
            "{cpu:<4} {:>10} {:>10} {:>10} {:>10} {:>12} {:>12}",
            s.l1_hits,
            s.l2_hits,
            s.misses,
            s.entries_flushed,
            s.full_flushes,
            s.single_page_flushes
        ));
        cpus.push(json!({"cpu": cpu, "l1_hits": s.l1_hits, "l2_hits": s.l2_hits, "misses": s.misses,
            "entries_flushed": s.entries_flushed, "full_flushes": s.full_flushes, "single_page_flushes": s.single_page_flushes}));
    }
    let f = m.tlb_flush_stats();
    lines.push(format!(
        "shootdowns {} (IPIs {}), full flushes {}, pages invalidated {}, page faults {}",
        f.shootdowns,
        f.ipis,
        f.full_flushes,
        f.pages_invalidated,
        m.page_faults()
    ));
    let obj = json!({"cpus": cpus, "shootdowns": f.shootdowns, "ipis": f.ipis,
        "full_flushes": f.full_flushes, "pages_invalidated": f.pages_invalidated, "page_faults": m.page_faults()});
    Ok(Value::Object(obj, lines.join("\n")))
}

/// `kvmalloc <size> <gfp>` / `kvzalloc`: kmalloc first, vmalloc when that fails and the
/// flags allow blocking. The text says which allocator served it.
fn kvmalloc_with(sh: &Shell, size: u64, gfp: kmemlab_mm::Gfp) -> Result<Value, String> {
    let site = sh.call_site();
    sh.kernel(|mm| {
        let p = mm
            .kvmalloc_node_caller(size as usize, gfp, -1, site)
            .map_err(|e| e.to_string())?;
        Ok(if mm.is_vmalloc_addr(p) {
            match area_value(mm, p) {
                Value::Address(a, text) => Value::Address(a, format!("vmalloc fallback: {text}")),
                other => other,
            }
        } else {
            Value::Address(p.0, format!("kmalloc: {size} bytes, physically contiguous"))
        })
    })?
}

/// `kvmalloc <size> [gfp]`.
pub fn kvmalloc(sh: &mut Shell, args: &[&str]) -> Result<Value, String> {
    kv_args(sh, args, kmemlab_mm::Gfp::empty())
}

/// `kvzalloc <size> [gfp]`.
pub fn kvzalloc(sh: &mut Shell, args: &[&str]) -> Result<Value, String> {
    kv_args(sh, args, kmemlab_mm::Gfp::__GFP_ZERO)
}

fn kv_args(sh: &Shell, args: &[&str], extra: kmemlab_mm::Gfp) -> Result<Value, String> {
    let gfp = match args.get(1) {
        Some(g) => sh.gfp(g)?,
        None => kmemlab_mm::Gfp::GFP_KERNEL,
    };
    kvmalloc_with(sh, sh.size(args[0])?, gfp | extra)
}

/// `kvfree <addr>`: vfree or kfree, as `is_vmalloc_addr` says.
pub fn kvfree(sh: &mut Shell, args: &[&str]) -> Result<Value, String> {
    let addr = VirtAddr(sh.number(args[0])?);
    sh.kernel(|mm| {
        let how = if mm.is_vmalloc_addr(addr) {
            "vfree"
        } else {
            "kfree"
        };
        mm.kvfree(addr)
            .map(|_| Value::Text(format!("freed ({how})")))
            .map_err(|e| e.to_string())
    })?
}
