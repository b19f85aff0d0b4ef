//! Shell commands of the slab allocator (`mm/slub.c`, `mm/slab_common.c`): kmalloc and
//! its family, the `kmem_cache_*` API and `slab`, one cache's state.

use kmemlab_mm::{Mm, Pfn, VirtAddr};
use kmemlab_sim::SimPlatform;
use serde_json::json;

use super::vmalloc as vm;
use super::Command;
use crate::describe::page_info;
use crate::output::{addr as addr_json, opt_addr};
use crate::shell::{Shell, Value};

/// This module's shell commands.
pub(super) const COMMANDS: &[Command] = &[
    Command {
        name: "kmalloc",
        usage: "<size> <gfp>",
        help: "a kmalloc object; returns its address",
        mutates: true,
        run: kmalloc,
    },
    Command {
        name: "kzalloc",
        usage: "<size> <gfp>",
        help: "a zeroed kmalloc object",
        mutates: true,
        run: kzalloc,
    },
    Command {
        name: "kcalloc",
        usage: "<n> <size> <gfp>",
        help: "a zeroed array (overflow checked)",
        mutates: true,
        run: kcalloc,
    },
    Command {
        name: "krealloc",
        usage: "<addr> <size> <gfp>",
        help: "resize (in place while it fits)",
        mutates: true,
        run: krealloc,
    },
    Command {
        name: "kfree",
        usage: "<addr>",
        help: "free a kmalloc object (NULL is a no-op)",
        mutates: true,
        run: kfree,
    },
    Command {
        name: "ksize",
        usage: "<addr>",
        help: "usable size of a kmalloc object",
        mutates: false,
        run: ksize,
    },
    Command {
        name: "kmem_cache_create",
        usage: "<name> <size> [align] [flags] [NULL]",
        help: "a cache; flags like SLAB_HWCACHE_ALIGN|SLAB_RED_ZONE",
        mutates: true,
        run: kmem_cache_create,
    },
    Command {
        name: "kmem_cache_alloc",
        usage: "<cache> <gfp>",
        help: "an object of a cache",
        mutates: true,
        run: kmem_cache_alloc,
    },
    Command {
        name: "kmem_cache_free",
        usage: "<cache> <addr>",
        help: "free an object to its cache",
        mutates: true,
        run: kmem_cache_free,
    },
    Command {
        name: "kmem_cache_alloc_bulk",
        usage: "<cache> <gfp> <n>",
        help: "n objects of a cache in one call, all or none; returns the list (name it: $name, $name0 ...)",
        mutates: true,
        run: kmem_cache_alloc_bulk,
    },
    Command {
        name: "kmem_cache_free_bulk",
        usage: "<cache> <addr>...",
        help: "free objects (or whole lists, $name) to their cache in one call",
        mutates: true,
        run: kmem_cache_free_bulk,
    },
    Command {
        name: "kfree_bulk",
        usage: "<addr>...",
        help: "kmem_cache_free_bulk(NULL, ...): each object to the cache its slab names",
        mutates: true,
        run: kfree_bulk,
    },
    Command {
        name: "kmem_cache_destroy",
        usage: "<cache>",
        help: "destroy a cache (refused while objects remain)",
        mutates: true,
        run: kmem_cache_destroy,
    },
    Command {
        name: "kmem_cache_shrink",
        usage: "<cache>",
        help: "give a cache's empty slabs back; returns pages freed",
        mutates: true,
        run: kmem_cache_shrink,
    },
    Command {
        name: "slab",
        usage: "<cache>",
        help: "a cache's layout, per-CPU and per-node state",
        mutates: false,
        run: slab_state,
    },
];

pub(super) fn slab_object_info(mm: &Mm<SimPlatform>, addr: VirtAddr) -> Option<Value> {
    let o = mm.object_info(addr)?;
    let s = mm.cache(o.cache).ok()?;
    let page = page_info(mm, Pfn(mm.layout().virt_to_phys(o.object.0)? >> 12));
    let slab_page = mm.struct_page_address(mm.mem_map().page(o.slab_pfn)).0;
    let mut obj = json!({
        "cache": s.name().as_str(),
        "object": addr_json(o.object.0),
        "offset_in_object": o.offset_in_object,
        "index": o.index,
        "object_size": s.object_size(),
        "size": s.size(),
        "slab_pfn": o.slab_pfn.raw(),
        "slab_page": addr_json(slab_page),
        "offset_in_slab": o.offset_in_slab,
        "pfn": page.pfn,
        "phys": opt_addr(mm.layout().virt_to_phys(addr.0)),
        "zone": page.zone,
        "state": if o.free { "free" } else { "allocated" },
    });
    let extent = vm::kmalloc_extent(mm, o.object, s.object_size() as u64);
    if let (Some(obj), serde_json::Value::Object(extent)) = (obj.as_object_mut(), extent) {
        obj.extend(extent);
    }
    let text = format!(
        "{} object {:#x} (index {} in the slab at pfn {:#x}, struct page {:#x}, offset {:#x}), {} of {} bytes ({} with metadata){}; phys {:#x}, pfn {:#x}, zone {}",
        s.name(),
        o.object.0,
        o.index,
        o.slab_pfn.raw(),
        slab_page,
        o.offset_in_slab,
        if o.free { "free" } else { "allocated" },
        s.object_size(),
        s.size(),
        if o.offset_in_object > 0 { format!(", address is {} bytes inside", o.offset_in_object) } else { String::new() },
        mm.layout().virt_to_phys(addr.0).unwrap_or(0),
        page.pfn,
        page.zone
    );
    Some(Value::Object(obj, text))
}

fn object_value(mm: &Mm<SimPlatform>, addr: VirtAddr) -> Value {
    match slab_object_info(mm, addr) {
        Some(Value::Object(_, text)) => Value::Address(addr.0, text),
        _ if addr.0 <= 16 => {
            Value::Address(addr.0, "ZERO_SIZE_PTR: kmalloc(0) returns no memory".into())
        }
        _ => {
            let size = mm.ksize(addr).unwrap_or(0);
            Value::Address(
                addr.0,
                format!("large kmalloc: {size} bytes straight from the page allocator"),
            )
        }
    }
}

fn slab_err(e: kmemlab_mm::slab::SlabError) -> String {
    e.to_string()
}

fn kmalloc(sh: &mut Shell, args: &[&str]) -> Result<Value, String> {
    let (size, gfp) = (sh.size(args[0])?, sh.gfp(args[1])?);
    let site = sh.call_site();
    sh.kernel(|mm| {
        mm.kmalloc_caller(size as usize, gfp, site)
            .map(|a| object_value(mm, a))
            .map_err(slab_err)
    })?
}

fn kzalloc(sh: &mut Shell, args: &[&str]) -> Result<Value, String> {
    let (size, gfp) = (sh.size(args[0])?, sh.gfp(args[1])?);
    let site = sh.call_site();
    sh.kernel(|mm| {
        mm.kmalloc_caller(size as usize, gfp | kmemlab_mm::Gfp::__GFP_ZERO, site)
            .map(|a| object_value(mm, a))
            .map_err(slab_err)
    })?
}

fn kcalloc(sh: &mut Shell, args: &[&str]) -> Result<Value, String> {
    let (n, size, gfp) = (sh.number(args[0])?, sh.size(args[1])?, sh.gfp(args[2])?);
    sh.kernel(|mm| {
        mm.kcalloc(n as usize, size as usize, gfp)
            .map(|a| object_value(mm, a))
            .map_err(slab_err)
    })?
}

fn krealloc(sh: &mut Shell, args: &[&str]) -> Result<Value, String> {
    let (p, size, gfp) = (sh.number(args[0])?, sh.size(args[1])?, sh.gfp(args[2])?);
    sh.kernel(|mm| {
        mm.krealloc(VirtAddr(p), size as usize, gfp)
            .map(|a| object_value(mm, a))
            .map_err(slab_err)
    })?
}

fn kfree(sh: &mut Shell, args: &[&str]) -> Result<Value, String> {
    let p = sh.number(args[0])?;
    let site = sh.call_site();
    sh.kernel(|mm| {
        mm.kfree_caller(VirtAddr(p), site)
            .map(|_| Value::None)
            .map_err(slab_err)
    })?
}

fn ksize(sh: &mut Shell, args: &[&str]) -> Result<Value, String> {
    let p = sh.number(args[0])?;
    sh.kernel(|mm| {
        mm.ksize(VirtAddr(p))
            .map(|n| Value::Number(n as u64, "bytes usable".into()))
            .map_err(slab_err)
    })?
}

/// A cache argument: a name given earlier, a cache's name, or a `kmem_cache` address.
fn cache_arg(sh: &Shell, arg: &str) -> Result<kmemlab_mm::slab::KmemCacheRef, String> {
    if let Some(r) = sh.machine.mm().find_cache(arg) {
        return Ok(r);
    }
    let va = sh
        .number(arg)
        .map_err(|_| format!("no cache named '{arg}'"))?;
    let r = kmemlab_mm::slab::KmemCacheRef(va);
    sh.machine.mm().cache(r).map_err(slab_err)?;
    Ok(r)
}

fn kmem_cache_create(sh: &mut Shell, args: &[&str]) -> Result<Value, String> {
    let size = sh.size(args[1])?;
    let align = args.get(2).map(|a| sh.number(a)).transpose()?.unwrap_or(0);
    let flags = match args.get(3) {
        Some(f) => kmemlab_mm::slab::SlabFlags::parse_names(f).ok_or_else(|| {
            format!("'{f}' is not slab flags (e.g. SLAB_HWCACHE_ALIGN|SLAB_RED_ZONE, or 0)")
        })?,
        None => kmemlab_mm::slab::SlabFlags::empty(),
    };
    if args.get(4).is_some_and(|c| *c != "NULL") {
        return Err("constructors cannot be given from the shell (use NULL)".into());
    }
    let name = args[0].to_string();
    sh.kernel(|mm| {
        let r = mm.kmem_cache_create(&name, size as usize, align as usize, flags, None).map_err(slab_err)?;
        let s = mm.cache(r).map_err(slab_err)?;
        Ok(Value::Address(
            r.0,
            format!(
                "struct kmem_cache * {}: objects of {} bytes in {} bytes each, {} per slab of {} page(s)",
                s.name(),
                s.object_size(),
                s.size(),
                s.oo().objects,
                1 << s.oo().order
            ),
        ))
    })?
}

fn kmem_cache_alloc(sh: &mut Shell, args: &[&str]) -> Result<Value, String> {
    let (r, gfp) = (cache_arg(sh, args[0])?, sh.gfp(args[1])?);
    let site = sh.call_site();
    sh.kernel(|mm| {
        mm.kmem_cache_alloc_caller(r, gfp, site)
            .map(|a| object_value(mm, a))
            .map_err(|e| slab_err_of(mm, "kmem_cache_alloc", r, e))
    })?
}

fn kmem_cache_free(sh: &mut Shell, args: &[&str]) -> Result<Value, String> {
    let (r, p) = (cache_arg(sh, args[0])?, sh.number(args[1])?);
    let site = sh.call_site();
    sh.kernel(|mm| {
        mm.kmem_cache_free_caller(r, VirtAddr(p), site)
            .map(|_| Value::None)
            .map_err(|e| slab_err_of(mm, "kmem_cache_free", r, e))
    })?
}

/// `kmem_cache_alloc_bulk(s, flags, size, p)` (Linux 6.6 `mm/slub.c`; with sheaves,
/// 6.18's `kmem_cache_alloc_bulk_noprof()`): `n` objects into an array, all or none. The
/// kernel returns `size` or 0; here the objects, or the error that made it give up (what
/// it had taken is freed again).
fn kmem_cache_alloc_bulk(sh: &mut Shell, args: &[&str]) -> Result<Value, String> {
    let (r, gfp) = (cache_arg(sh, args[0])?, sh.gfp(args[1])?);
    let n = sh.bulk_count(args[2], "kmem_cache_alloc_bulk")?;
    let site = sh.call_site();
    sh.kernel(|mm| {
        let mut p = vec![VirtAddr(0); n];
        let got = mm
            .kmem_cache_alloc_bulk_caller(r, gfp, &mut p, site)
            .map_err(|e| slab_err_of(mm, "kmem_cache_alloc_bulk", r, e))?;
        Ok(bulk_objects_value(mm, r, &p[..got]))
    })?
}

/// The objects a bulk allocation returned, and which slabs they came from, in order.
fn bulk_objects_value(
    mm: &Mm<SimPlatform>,
    r: kmemlab_mm::slab::KmemCacheRef,
    objects: &[VirtAddr],
) -> Value {
    let cache = mm
        .cache(r)
        .map_or_else(|_| format!("{:#x}", r.0), |s| s.name().as_str().to_string());
    let slabs = super::runs_text(
        objects
            .iter()
            .map(|&a| mm.object_info(a).map(|o| o.slab_pfn.raw())),
        |a, b| a == b,
        |slab, _, n| match slab {
            Some(pfn) => format!("{n} from the slab at pfn {pfn:#x}"),
            None => format!("{n} outside any slab"),
        },
    );
    Value::Addresses(
        objects.iter().map(|a| a.0).collect(),
        format!(
            "{} objects of {cache} (kmem_cache_alloc_bulk returned {}): {slabs}",
            objects.len(),
            objects.len()
        ),
    )
}

/// `kmem_cache_free_bulk(s, size, p)` (Linux 6.6 `mm/slub.c`; with sheaves, 6.18's
/// `free_to_pcs_bulk()`): the addresses, lists expanded, freed to `s` in one call. The
/// kernel returns nothing; a pointer it refuses is reported on the console and left out,
/// the others are freed, and the first refusal is the command's error. The free track
/// (`slab_debug=U`) names the script line, as the kernel's names the caller (`_RET_IP_`).
fn kmem_cache_free_bulk(sh: &mut Shell, args: &[&str]) -> Result<Value, String> {
    let r = cache_arg(sh, args[0])?;
    let mut p: Vec<VirtAddr> = sh
        .addresses(&args[1..], "kmem_cache_free_bulk")?
        .into_iter()
        .map(VirtAddr)
        .collect();
    let site = sh.call_site();
    sh.kernel(|mm| {
        mm.kmem_cache_free_bulk_caller(r, &mut p, site)
            .map(|_| Value::None)
            .map_err(|e| slab_err_of(mm, "kmem_cache_free_bulk", r, e))
    })?
}

/// `kfree_bulk(size, p)` (Linux 6.6 `include/linux/slab.h`: `kmem_cache_free_bulk(NULL,
/// size, p)`): each object freed to the cache its slab names, anything else to `kfree`.
fn kfree_bulk(sh: &mut Shell, args: &[&str]) -> Result<Value, String> {
    let mut p: Vec<VirtAddr> = sh
        .addresses(args, "kfree_bulk")?
        .into_iter()
        .map(VirtAddr)
        .collect();
    let site = sh.call_site();
    sh.kernel(|mm| {
        mm.kfree_bulk_caller(&mut p, site)
            .map(|_| Value::None)
            .map_err(slab_err)
    })?
}

fn kmem_cache_destroy(sh: &mut Shell, args: &[&str]) -> Result<Value, String> {
    let r = cache_arg(sh, args[0])?;
    sh.kernel(|mm| {
        mm.kmem_cache_destroy(r)
            .map(|_| Value::None)
            .map_err(|e| slab_err_of(mm, "kmem_cache_destroy", r, e))
    })?
}

/// A slab error of the function `func`, given the cache `cache`: `SlabError::BadArgs`
/// prints itself as `kmem_cache_create`'s, whichever function refused, so the shell names
/// the right one; the caches a refused free or destroy names are named.
fn slab_err_of(
    mm: &Mm<SimPlatform>,
    func: &str,
    cache: kmemlab_mm::slab::KmemCacheRef,
    e: kmemlab_mm::slab::SlabError,
) -> String {
    match e {
        kmemlab_mm::slab::SlabError::BadArgs(why) => format!("{func}: {why}"),
        other => mm.slab_error_text(cache, other).to_string(),
    }
}

fn kmem_cache_shrink(sh: &mut Shell, args: &[&str]) -> Result<Value, String> {
    let r = cache_arg(sh, args[0])?;
    sh.kernel(|mm| {
        mm.kmem_cache_shrink(r)
            .map(|pages| Value::Number(pages, "pages given back to the page allocator".into()))
            .map_err(slab_err)
    })?
}

fn slab_state(sh: &mut Shell, args: &[&str]) -> Result<Value, String> {
    let r = cache_arg(sh, args[0])?;
    let mm = sh.machine.mm();
    let s = mm.cache(r).map_err(slab_err)?;
    let node = mm.node_slab_state(r).map_err(slab_err)?;
    let mut text = format!(
        "{}: object_size {} size {} align {} offset(fp) {} red_left_pad {} order {} objects/slab {} min_partial {} cpu_partial_slabs {} flags {:?}\n",
        s.name(),
        s.object_size(),
        s.size(),
        s.align(),
        s.fp_offset(),
        s.red_left_pad(),
        s.oo().order,
        s.oo().objects,
        s.min_partial(),
        s.cpu_partial_slabs(),
        s.flags()
    );
    let mut cpus = Vec::new();
    for cpu in 0..sh.machine.config().cpus {
        let c = mm.cpu_slab_state(r, cpu).map_err(slab_err)?;
        if c.slab.is_some() || c.partial_slabs > 0 {
            text.push_str(&format!(
                "  cpu {cpu}: slab {} with {} objects on its lockless freelist, {} partial slab(s), tid {}\n",
                c.slab.map_or("none".to_string(), |p| format!("pfn {:#x}", p.raw())),
                c.freelist_objects,
                c.partial_slabs,
                c.tid
            ));
        }
        cpus.push(json!({"cpu": cpu, "slab": c.slab.map(Pfn::raw), "freelist_objects": c.freelist_objects, "partial_slabs": c.partial_slabs, "tid": c.tid}));
    }
    text.push_str(&format!(
        "  node 0: {} slab(s), {} objects, {} partial slab(s) with {} free objects",
        node.nr_slabs, node.total_objects, node.nr_partial, node.free_on_partial
    ));
    Ok(Value::Object(
        json!({
            "name": s.name().as_str(), "object_size": s.object_size(), "size": s.size(), "align": s.align(),
            "offset": s.fp_offset(), "red_left_pad": s.red_left_pad(), "order": s.oo().order,
            "objects_per_slab": s.oo().objects, "cpus": cpus,
            "node": {"nr_slabs": node.nr_slabs, "total_objects": node.total_objects, "nr_partial": node.nr_partial, "free_on_partial": node.free_on_partial},
        }),
        text,
    ))
}
