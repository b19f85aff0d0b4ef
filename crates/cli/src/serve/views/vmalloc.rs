//! The views of virtual memory: the frames behind an address ([`frames_of`]: a slab
//! object's slab, a vmalloc area's runs, a direct-map block), the vmalloc areas
//! (`/proc/vmallocinfo`'s, with their pages), and a page-table walk through the current
//! CPU's TLB. Start at [`vmalloc`].

use kmemlab_mm::addr::MAX_PAGE_ORDER;
use kmemlab_mm::arch::pgtable::entry_flag_names;
use kmemlab_mm::{Mm, Pfn, VirtAddr, PAGE_SIZE};
use kmemlab_sim::SimPlatform;
use serde_json::{json, Value};

use crate::output::addr;
use crate::serve::session::Machine;
use crate::serve::ApiError;

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
        return vec![(o.slab_pfn.raw(), pages, name)];
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
    let areas: Vec<Value> = vmap_areas(&mm).iter().map(|a| area_json(&mm, a)).collect();
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
    let found = vmap_areas(&mm)
        .iter()
        .find(|info| info.start == a.addr.0)
        .map(|info| area_json(&mm, info));
    let info = crate::commands::vmalloc::vmalloc_info(&mm, VirtAddr(at)).map(|v| match v {
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
            let probe = machine.platform().mmu().tlb_probe(cpu, VirtAddr(at));
            json!({"cpu": cpu, "cached": probe.is_some(),
                   "level": probe.map(|p| p.level), "frame": probe.map(|p| addr(p.frame)),
                   "page_size": probe.map(|p| p.page_size)})
        })
        .collect();
    json!({"virt": addr(at), "steps": steps, "result": result, "text": w.to_string(), "tlb": tlb})
}
