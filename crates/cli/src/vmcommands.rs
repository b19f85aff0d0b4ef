//! The shell's vmalloc commands: `vmalloc`, `vzalloc`, `vmalloc_huge`, `vfree`, `vmap`,
//! `vunmap`, `vmalloc_to_page`, `purge`, and `info` of a vmalloc area or kmalloc object
//! as physical runs and zones.

use std::collections::{BTreeMap, BTreeSet};

use kmemlab_mm::arch::pgtable::PgProt;
use kmemlab_mm::vmalloc::{VmArea, VmFlags};
use kmemlab_mm::{Mm, Pfn, VirtAddr, PAGE_SHIFT};
use kmemlab_sim::{format_size, SimPlatform};
use serde_json::json;

use crate::shell::{Shell, Value};

fn want(args: &[&str], n: usize, usage: &str) -> Result<(), String> {
    if args.len() == n {
        Ok(())
    } else {
        Err(format!("usage: {usage}"))
    }
}

/// `vmalloc <size>`.
pub fn vmalloc(sh: &mut Shell, args: &[&str]) -> Result<Value, String> {
    want(args, 1, "vmalloc <size>")?;
    let size = sh.size(args[0])?;
    let site = sh.call_site();
    sh.kernel(|mm| {
        mm.__vmalloc_caller(size as usize, kmemlab_mm::Gfp::GFP_KERNEL, site)
            .map(|a| area_value(mm, a))
            .map_err(|e| e.to_string())
    })?
}

/// `vzalloc <size>`.
pub fn vzalloc(sh: &mut Shell, args: &[&str]) -> Result<Value, String> {
    want(args, 1, "vzalloc <size>")?;
    let size = sh.size(args[0])?;
    let site = sh.call_site();
    let gfp = kmemlab_mm::Gfp::GFP_KERNEL | kmemlab_mm::Gfp::__GFP_ZERO;
    sh.kernel(|mm| {
        mm.__vmalloc_caller(size as usize, gfp, site)
            .map(|a| area_value(mm, a))
            .map_err(|e| e.to_string())
    })?
}

/// `__vmalloc <size> <gfp>`.
pub fn vmalloc_gfp(sh: &mut Shell, args: &[&str]) -> Result<Value, String> {
    want(args, 2, "__vmalloc <size> <gfp>")?;
    let (size, gfp) = (sh.size(args[0])?, sh.gfp(args[1])?);
    let site = sh.call_site();
    sh.kernel(|mm| {
        mm.__vmalloc_caller(size as usize, gfp, site)
            .map(|a| area_value(mm, a))
            .map_err(|e| e.to_string())
    })?
}

/// `vmalloc_huge <size> [gfp]`.
pub fn vmalloc_huge(sh: &mut Shell, args: &[&str]) -> Result<Value, String> {
    if args.is_empty() || args.len() > 2 {
        return Err("usage: vmalloc_huge <size> [gfp]".into());
    }
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
    want(args, 1, "vfree <addr>")?;
    let addr = VirtAddr(sh.number(args[0])?);
    sh.kernel(|mm| {
        let deferred_before =
            mm.deferred_vfrees(kmemlab_mm::Platform::smp_processor_id(mm.platform()));
        mm.vfree(addr).map_err(|e| e.to_string())?;
        if mm.deferred_vfrees(kmemlab_mm::Platform::smp_processor_id(mm.platform()))
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
    want(args, 2, "vmap <page> <count>")?;
    let (page, count) = (sh.number(args[0])?, sh.number(args[1])?);
    let site = sh.call_site();
    sh.kernel(|mm| {
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
    want(args, 1, "vunmap <addr>")?;
    let addr = VirtAddr(sh.number(args[0])?);
    sh.kernel(|mm| {
        mm.vunmap(addr)
            .map(|_| Value::None)
            .map_err(|e| e.to_string())
    })?
}

/// `vmalloc_to_page <addr>`.
pub fn vmalloc_to_page(sh: &mut Shell, args: &[&str]) -> Result<Value, String> {
    want(args, 1, "vmalloc_to_page <addr>")?;
    let addr = VirtAddr(sh.number(args[0])?);
    sh.kernel(|mm| {
        let page = mm
            .vmalloc_to_page(addr)
            .ok_or_else(|| format!("{addr} is not mapped in the vmalloc area"))?;
        let pfn = mm.page_to_pfn(page);
        Ok(Value::Number(
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
pub fn purge(sh: &mut Shell, args: &[&str]) -> Result<Value, String> {
    want(args, 0, "purge")?;
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
            Value::Number(
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
        None => Value::Number(addr.0, "vmalloc area".into()),
    }
}

fn area_pfns(mm: &Mm<SimPlatform>, a: &VmArea) -> Vec<u64> {
    let mut pfns = Vec::new();
    let _ = mm.vm_area_pfns(a.addr, |p| pfns.push(p.0));
    pfns
}

/// Physically contiguous runs of PFNs, in order: `(first, length)`.
pub fn runs(pfns: &[u64]) -> Vec<(u64, u64)> {
    let mut out: Vec<(u64, u64)> = Vec::new();
    for &p in pfns {
        match out.last_mut() {
            Some((first, len)) if *first + *len == p => *len += 1,
            _ => out.push((p, 1)),
        }
    }
    out
}

/// Pages per zone.
fn zones(mm: &Mm<SimPlatform>, pfns: &[u64]) -> BTreeMap<&'static str, u64> {
    let mut z = BTreeMap::new();
    for &p in pfns {
        if let Ok(page) = mm.pfn_to_page(Pfn(p)) {
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
                format!("{p:#x}")
            } else {
                format!("{p:#x}+{n}")
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
        "virt": a.addr.0,
        "size": a.usable_size(),
        "end": end,
        "guard": guard,
        "pfns": pfns,
        "phys_runs": runs.len(),
        "runs": runs,
        "zones": zones,
        "page_tables": tables.len(),
        "leaf_size": leaf_size,
        "nr_pages": a.nr_pages,
        "caller": a.caller.map(|c| c.to_string()),
    });
    Some(Value::Object(obj, text))
}

/// The physical pages behind a kmalloc object (`virt`, `size`, `pfns`, `phys_runs`,
/// `zones`), for `info`'s JSON.
pub fn kmalloc_extent(mm: &Mm<SimPlatform>, addr: VirtAddr, size: u64) -> serde_json::Value {
    let first = mm.layout().virt_to_phys(addr.0).unwrap_or(0) >> PAGE_SHIFT;
    let last = mm
        .layout()
        .virt_to_phys(addr.0 + size.max(1) - 1)
        .unwrap_or(0)
        >> PAGE_SHIFT;
    let pfns: Vec<u64> = (first..=last).collect();
    json!({
        "virt": addr.0,
        "size": size,
        "pfns": pfns,
        "phys_runs": runs(&pfns).len(),
        "zones": zones(mm, &pfns),
    })
}
