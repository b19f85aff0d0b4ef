//! Shell commands of the page allocator (`mm/page_alloc.c`): `alloc_pages`, `__free_pages`,
//! `__get_free_pages`, the `struct page` conversions, `info` and `drain_all_pages`.

use kmemlab_mm::{Mm, Pfn, VirtAddr};
use kmemlab_sim::SimPlatform;

use super::slab::slab_object_info;
use super::vmalloc as vm;
use super::Command;
use crate::describe::page_info;
use crate::shell::{Shell, Value};

/// This module's shell commands.
pub(super) const COMMANDS: &[Command] = &[
    Command {
        name: "alloc_pages",
        usage: "<gfp> <order>",
        help: "2^order contiguous pages; returns the struct page *",
        mutates: true,
        run: alloc_pages,
    },
    Command {
        name: "alloc_pages_bulk",
        usage: "<gfp> <n>",
        help: "up to n order-0 pages in one call (fewer if memory runs short); returns the struct page * list",
        mutates: true,
        run: alloc_pages_bulk,
    },
    Command {
        name: "__free_pages",
        usage: "<page> <order>",
        help: "free pages from alloc_pages",
        mutates: true,
        run: free_pages_cmd,
    },
    Command {
        name: "__get_free_pages",
        usage: "<gfp> <order>",
        help: "alloc_pages and return the direct-map address",
        mutates: true,
        run: get_free_pages,
    },
    Command {
        name: "get_zeroed_page",
        usage: "<gfp>",
        help: "one zeroed page; returns its address",
        mutates: true,
        run: get_zeroed_page,
    },
    Command {
        name: "free_pages",
        usage: "<addr> <order>",
        help: "free by direct-map address (0 is a no-op)",
        mutates: true,
        run: free_pages_addr,
    },
    Command {
        name: "page_address",
        usage: "<page>",
        help: "direct-map address of a struct page",
        mutates: false,
        run: page_address,
    },
    Command {
        name: "virt_to_page",
        usage: "<addr>",
        help: "struct page of a direct-map address",
        mutates: false,
        run: virt_to_page,
    },
    Command {
        name: "page_to_pfn",
        usage: "<page>",
        help: "page frame number of a struct page",
        mutates: false,
        run: page_to_pfn,
    },
    Command {
        name: "pfn_to_page",
        usage: "<pfn>",
        help: "struct page of a page frame number",
        mutates: false,
        run: pfn_to_page,
    },
    Command {
        name: "page_zone",
        usage: "<page>",
        help: "the zone of a page",
        mutates: false,
        run: page_zone,
    },
    Command {
        name: "info",
        usage: "<page|addr>",
        help: "everything about a page or slab object: cache, slab, pfn, phys, zone, state",
        mutates: false,
        run: info,
    },
    Command {
        name: "drain_all_pages",
        usage: "",
        help: "return every CPU's per-CPU lists to the buddy lists",
        mutates: true,
        run: drain_all_pages,
    },
];

fn page_value(mm: &Mm<SimPlatform>, page: &kmemlab_mm::Page) -> Value {
    let info = page_info(mm, mm.page_to_pfn(page));
    Value::Address(info.struct_page, format!("struct page *: {}", info.line()))
}

fn alloc_pages(sh: &mut Shell, args: &[&str]) -> Result<Value, String> {
    let (gfp, order) = (sh.gfp(args[0])?, sh.order(args[1])?);
    sh.kernel(|mm| {
        mm.alloc_pages(gfp, order)
            .map(|p| page_value(mm, p))
            .map_err(|e| e.to_string())
    })?
}

/// `alloc_pages_bulk_array(gfp, nr_pages, page_array)` (Linux 6.6 `include/linux/gfp.h`,
/// `__alloc_pages_bulk()` of `mm/page_alloc.c`) on an array of `n` empty slots: the
/// `struct page *` of each page it populated. Fewer than `n` is not an error (the kernel
/// returns how many); none at all is.
fn alloc_pages_bulk(sh: &mut Shell, args: &[&str]) -> Result<Value, String> {
    let gfp = sh.gfp(args[0])?;
    let n = sh.bulk_count(args[1], "alloc_pages_bulk")?;
    sh.kernel(|mm| {
        let mut array = vec![None; n];
        let populated = mm.alloc_pages_bulk_array(gfp, &mut array);
        // Every page in the array is the caller's, whatever the count says.
        let pages: Vec<&kmemlab_mm::Page> = array.iter().flatten().copied().collect();
        if pages.is_empty() {
            return Err(format!(
                "alloc_pages_bulk: no page allocated (alloc_pages_bulk_array returned {populated} of {n})"
            ));
        }
        let frames = super::runs_text(
            pages
                .iter()
                .map(|p| (mm.page_to_pfn(p).0, mm.page_zone(p).name())),
            |(a, za), (b, zb)| za == zb && b == a.wrapping_add(1),
            |(first, zone), (last, _), _| {
                if first == last {
                    format!("pfn {first:#x} ({zone})")
                } else {
                    format!("pfns {first:#x}-{last:#x} ({zone})")
                }
            },
        );
        let short = if pages.len() < n { ", memory ran short" } else { "" };
        Ok(Value::Addresses(
            pages.iter().map(|p| mm.struct_page_address(p).0).collect(),
            format!(
                "struct page * of {} of {n} order-0 pages (alloc_pages_bulk_array returned {populated}{short}): {frames}",
                pages.len()
            ),
        ))
    })?
}

fn free_pages_cmd(sh: &mut Shell, args: &[&str]) -> Result<Value, String> {
    let (ptr, order) = (sh.number(args[0])?, sh.order(args[1])?);
    sh.kernel(|mm| {
        let page = mm
            .page_at_struct_address(VirtAddr(ptr))
            .ok_or_else(|| format!("{ptr:#x} is not a struct page * of this machine"))?;
        mm.__free_pages(page, order).map_err(|e| e.to_string())?;
        Ok(Value::None)
    })?
}

fn get_free_pages(sh: &mut Shell, args: &[&str]) -> Result<Value, String> {
    let (gfp, order) = (sh.gfp(args[0])?, sh.order(args[1])?);
    sh.kernel(|mm| {
        addr_value(
            mm,
            mm.__get_free_pages(gfp, order).map_err(|e| e.to_string())?,
        )
    })?
}

fn get_zeroed_page(sh: &mut Shell, args: &[&str]) -> Result<Value, String> {
    let gfp = sh.gfp(args[0])?;
    sh.kernel(|mm| addr_value(mm, mm.get_zeroed_page(gfp).map_err(|e| e.to_string())?))?
}

fn addr_value(mm: &Mm<SimPlatform>, addr: VirtAddr) -> Result<Value, String> {
    let page = mm.virt_to_page(addr).map_err(|e| e.to_string())?;
    let info = page_info(mm, mm.page_to_pfn(page));
    Ok(Value::Address(addr.0, info.line()))
}

fn free_pages_addr(sh: &mut Shell, args: &[&str]) -> Result<Value, String> {
    let (addr, order) = (sh.number(args[0])?, sh.order(args[1])?);
    sh.kernel(|mm| {
        mm.free_pages(VirtAddr(addr), order)
            .map(|_| Value::None)
            .map_err(|e| e.to_string())
    })?
}

fn with_page<T>(
    sh: &mut Shell,
    arg: &str,
    f: impl FnOnce(&Mm<SimPlatform>, &kmemlab_mm::Page) -> T,
) -> Result<T, String> {
    let ptr = sh.number(arg)?;
    sh.kernel(|mm| {
        let page = mm
            .page_at_struct_address(VirtAddr(ptr))
            .ok_or_else(|| format!("{ptr:#x} is not a struct page * of this machine"))?;
        Ok(f(mm, page))
    })?
}

fn page_address(sh: &mut Shell, args: &[&str]) -> Result<Value, String> {
    with_page(sh, args[0], |mm, page| match mm.page_address(page) {
        Some(v) => Ok(Value::Address(v.0, "direct-map address".into())),
        None => Err("HighMem page: no permanent kernel address (kmap it)".to_string()),
    })?
}

fn virt_to_page(sh: &mut Shell, args: &[&str]) -> Result<Value, String> {
    let addr = sh.number(args[0])?;
    sh.kernel(|mm| {
        let page = mm.virt_to_page(VirtAddr(addr)).map_err(|e| e.to_string())?;
        Ok(page_value(mm, page))
    })?
}

fn page_to_pfn(sh: &mut Shell, args: &[&str]) -> Result<Value, String> {
    with_page(sh, args[0], |mm, page| {
        let pfn = mm.page_to_pfn(page);
        Value::Number(pfn.0, format!("pfn, phys {}", pfn.phys()))
    })
}

fn pfn_to_page(sh: &mut Shell, args: &[&str]) -> Result<Value, String> {
    let pfn = sh.number(args[0])?;
    sh.kernel(|mm| {
        let page = mm.pfn_to_page(Pfn(pfn)).map_err(|e| e.to_string())?;
        Ok(page_value(mm, page))
    })?
}

fn page_zone(sh: &mut Shell, args: &[&str]) -> Result<Value, String> {
    with_page(sh, args[0], |mm, page| {
        Value::Text(mm.page_zone(page).name().to_string())
    })
}

fn info(sh: &mut Shell, args: &[&str]) -> Result<Value, String> {
    let x = sh.number(args[0])?;
    if let Some(v) = slab_object_info(&sh.machine.mm(), VirtAddr(x)) {
        return Ok(v);
    }
    if sh.machine.mm().is_vmalloc_addr(VirtAddr(x)) {
        return vm::vmalloc_info(&sh.machine.mm(), VirtAddr(x))
            .ok_or_else(|| format!("{x:#x} is in the vmalloc area but no live area holds it"));
    }
    if let Some(v) = sh.kernel(|mm| vm::large_kmalloc_info(mm, VirtAddr(x)))? {
        return Ok(v);
    }
    sh.kernel(|mm| {
        let pfn = if let Some(page) = mm.page_at_struct_address(VirtAddr(x)) {
            mm.page_to_pfn(page)
        } else {
            let page = mm.virt_to_page(VirtAddr(x)).map_err(|_| {
                format!("{x:#x} is neither a struct page * nor a direct-map address")
            })?;
            mm.page_to_pfn(page)
        };
        let info = page_info(mm, pfn);
        let text = info.line();
        Ok(Value::Object(
            serde_json::to_value(&info).expect("plain data"),
            text,
        ))
    })?
}

fn drain_all_pages(sh: &mut Shell, _: &[&str]) -> Result<Value, String> {
    sh.kernel(|mm| mm.drain_all_pages())?;
    Ok(Value::None)
}
