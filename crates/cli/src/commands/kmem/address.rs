//! `kmem ADDR`, `kmem -P PHYS` and `kmem -p PFN` (crash's `kmem` address search): what an
//! address is (direct map, vmalloc, `struct page` or physical), the page descriptor, and
//! for a free buddy block, which one (a slab object is `slabs.rs`'s
//! `describe_slab_object`). Start at `describe_address`.

use kmemlab_mm::mm_types::{flag_names, PG_LARGE_KMALLOC};
use kmemlab_mm::page_alloc::query::{FreeBlock, FreeList};
use kmemlab_mm::{Pfn, PhysAddr, VirtAddr};
use serde_json::{json, Value as Json};

use super::slabs::describe_slab_object;
use super::{kaddr, struct_page, Mmp};
use crate::describe::page_info;
use crate::output::addr as hex;
use crate::shell::Value;

// ----- kmem -p --------------------------------------------------------------------------

pub(super) const PAGE_HEADER: &str =
    "      PAGE        PHYSICAL      MAPPING       INDEX CNT FLAGS";

/// crash's `kmem -p` row of one page and its JSON. kmemlab's `struct page` has no
/// `mapping` or `index` of a file page: MAPPING shows the cache of a slab page (the
/// union's `slab_cache`, as crash shows it) and 0 otherwise; INDEX is 0.
pub(super) fn page_row(mm: &Mmp, pfn: Pfn) -> (String, Json) {
    let page = mm.mem_map().page(pfn);
    let mapping = if page.is_slab() { page.slab_cache() } else { 0 };
    let names: Vec<&str> = flag_names(page.flags()).collect();
    let sp = struct_page(mm, pfn);
    let phys = pfn.phys().0;
    let line = format!(
        "{sp:x}  {phys:>8x} {mapping:>16x} {:>8} {:>2} {:x} {}",
        0,
        page.refcount(),
        page.flags(),
        names.join(",")
    )
    .trim_end()
    .to_string();
    let j = json!({"page": hex(sp), "pfn": pfn.raw(), "physical": hex(phys), "mapping": hex(mapping),
        "index": 0, "count": page.refcount(), "flags": page.flags(), "flag_names": names,
        "order": page.order(), "mapcount": page.mapcount()});
    (line, j)
}

/// `kmem -p PFN`.
pub(super) fn page_descriptor(mm: &Mmp, pfn: Pfn) -> Result<Value, String> {
    let (j, text) = page_descriptor_parts(mm, pfn)?;
    Ok(Value::Object(j, text))
}

fn page_descriptor_parts(mm: &Mmp, pfn: Pfn) -> Result<(Json, String), String> {
    let end = mm.mem_map().base_pfn + mm.mem_map().len;
    if !mm.mem_map().contains(pfn) && pfn < end {
        return Err(format!(
            "kmem: pfn {:#x} is outside mem_map: memory section {} is absent (no RAM)",
            pfn.raw(),
            mm.pfn_to_section_nr(pfn)
        ));
    }
    if !mm.mem_map().contains(pfn) {
        return Err(format!(
            "kmem: pfn {:#x} is outside mem_map (pfns {:#x}..{:#x})",
            pfn.raw(),
            mm.mem_map().base_pfn.raw(),
            end.raw()
        ));
    }
    let (line, j) = page_row(mm, pfn);
    let info = page_info(mm, pfn);
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
pub(super) fn describe_address(mm: &Mmp, addr: u64) -> Result<Value, String> {
    if let Some(page) = mm.page_at_struct_address(VirtAddr(addr)) {
        let pfn = mm.page_to_pfn(page);
        let (mut j, text) = page_descriptor_parts(mm, pfn)?;
        j["kind"] = json!("struct page");
        return Ok(Value::Object(
            j,
            format!("{addr:x}: struct page of pfn {:#x}\n{text}", pfn.raw()),
        ));
    }
    if mm.is_vmalloc_addr(VirtAddr(addr)) {
        return describe_vmalloc(mm, addr);
    }
    if let Some(phys) = mm.layout().virt_to_phys(addr) {
        return describe_phys(mm, phys, Some(addr));
    }
    if addr < (mm.mem_map().base_pfn + mm.mem_map().len).phys().0 {
        return describe_phys(mm, addr, None);
    }
    Err(format!(
        "kmem: {addr:#x} is no address of this machine: not in the direct map, the vmalloc area or mem_map, nor a physical address below the end of RAM"
    ))
}

pub(super) fn answer(kind: &str, addr: u64, mut j: Json, text: String) -> Result<Value, String> {
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
        Some(m) if mm.mem_map().contains(m.phys.pfn()) => {
            let pfn = m.phys.pfn();
            let (row, page) = page_row(mm, pfn);
            let mut j = base;
            j["phys"] = hex(m.phys.0);
            j["pfn"] = json!(pfn.raw());
            j["page_size"] = json!(m.page_size);
            j["page"] = page;
            answer(
                "vmalloc",
                addr,
                j,
                format!("{head}\n{addr:x}: offset {offset:#x} in the area, mapped to phys {:x} (pfn {:#x}, {} KiB leaf)\n\n{PAGE_HEADER}\n{row}", m.phys.0, pfn.raw(), m.page_size >> 10),
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
pub(super) fn describe_phys(mm: &Mmp, phys: u64, virt: Option<u64>) -> Result<Value, String> {
    let pfn = PhysAddr(phys).pfn();
    let shown = virt.unwrap_or(phys);
    let in_ram = mm
        .memblock()
        .memory()
        .regions()
        .iter()
        .any(|r| r.base <= phys && phys < r.base + r.size);
    if !in_ram || !mm.mem_map().contains(pfn) {
        return answer(
            "hole",
            shown,
            json!({"phys": hex(phys), "pfn": pfn.raw()}),
            format!(
                "{shown:x}: phys {phys:x} (pfn {:#x}) is a hole: no RAM there",
                pfn.raw()
            ),
        );
    }
    if let Some(v) = virt.or_else(|| mm.layout().phys_to_virt(phys))
        && let Some(found) = mm.slab_object(VirtAddr(v))
    {
        return describe_slab_object(mm, shown, found);
    }
    let (row, page_json) = page_row(mm, pfn);
    let page_text = format!("\n\n{PAGE_HEADER}\n{row}");
    let mut j = json!({"phys": hex(phys), "pfn": pfn.raw(), "page": page_json});
    let page = mm.mem_map().page(pfn);
    if page.is_reserved() {
        let region = mm
            .memblock()
            .reserved()
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
    let head = if page.is_tail() {
        Pfn(page.word())
    } else {
        pfn
    };
    let large = mm.mem_map().get(head).filter(|h| {
        h.flags() & PG_LARGE_KMALLOC != 0
            && head <= pfn
            && pfn - head < 1u64.checked_shl(h.order()).unwrap_or(0)
    });
    if let Some(h) = large {
        let start = mm.layout().phys_to_virt(head.phys().0).unwrap_or(0);
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
    let info = page_info(mm, pfn);
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
    j["head_pfn"] = json!(b.head.raw());
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
            b.head.raw(),
            b.order,
            1u64 << b.order,
            if b.order == 0 { "" } else { "s" },
            b.migratetype.name()
        ),
    )
}
