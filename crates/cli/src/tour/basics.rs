//! The tour's first sections: the physical memory map, boot reservations, zones, the buddy
//! lists, a few page allocations, and kmalloc's size classes, on a freshly booted machine.

use kmemlab_mm::mm_init::MEM_MAP_NAME;
use kmemlab_mm::slab::SlabFlags;
use kmemlab_mm::{procfs, Context, Gfp, Mm, Page, Pfn, PAGE_SIZE};
use kmemlab_sim::{format_size, Machine, SimPlatform};
use serde_json::json;

use crate::output::addr;

use super::Tour;
use crate::commands::vmalloc::{mapped_pfns, raw_pfns, runs};
use crate::describe::{page_info, zones};

pub(super) fn memory_map(t: &mut Tour, machine: &Machine) {
    t.section("The physical memory map (what the firmware reports, e820)");
    let mm = machine.mm();
    let mut rows = Vec::new();
    let mut cursor = 0u64;
    for r in machine.platform().ram().map() {
        if r.start.0 > cursor {
            rows.push(("hole", cursor, r.start.0));
        }
        rows.push(("usable", r.start.0, r.end.0));
        cursor = r.end.0;
    }
    for &(kind, start, end) in &rows {
        t.line(format!(
            "{kind:<7} {start:#014x}-{:#014x}  {:>8}",
            end - 1,
            format_size(end - start)
        ));
    }
    t.line(format!(
        "Page 0 is trimmed from RAM and the first 1 MiB is reserved, as x86 kernels do. The direct map puts physical 0 at {:#x}.",
        mm.layout().page_offset
    ));
    t.fact(
        "memory_map",
        json!(rows
            .iter()
            .map(|(k, s, e)| json!({"type": k, "start": addr(*s), "end": addr(*e)}))
            .collect::<Vec<_>>()),
    );
}

pub(super) fn boot_reservations(t: &mut Tour, machine: &Machine) {
    t.section("What boot took before the buddy allocator started (memblock)");
    let mm = machine.mm();
    let mut merged: Vec<(&str, u64, u64)> = Vec::new();
    for r in mm.memblock().reserved().regions() {
        match merged.last_mut() {
            Some(last) if last.0 == r.name && last.2 == r.base => last.2 = r.end(),
            _ => merged.push((r.name, r.base, r.end())),
        }
    }
    for &(name, start, end) in &merged {
        t.line(format!(
            "{name:<32} {start:#014x}-{:#014x}  {:>8}",
            end - 1,
            format_size(end - start)
        ));
    }
    let pages = mm.mem_map().nr_pages();
    let meminfo = procfs::meminfo_values(&mm);
    t.line(format!(
        "mem_map holds {pages} struct pages of {} bytes each (Linux: 64), for the {} present memory sections: {:.2}% of RAM.",
        std::mem::size_of::<Page>(),
        mm.nr_present_sections(),
        (pages * std::mem::size_of::<Page>() as u64) as f64 * 100.0 / machine.config().ram as f64
    ));
    t.line(format!(
        "MemTotal = {} kB: the RAM less what boot reserved, as /proc/meminfo reports it.",
        meminfo.total * 4
    ));
    t.fact(
        "reserved",
        json!(merged
            .iter()
            .map(|(n, s, e)| json!({"name": n, "start": addr(*s), "end": addr(*e)}))
            .collect::<Vec<_>>()),
    );
    t.fact("mem_map_phys", addr(mm.mem_map_phys().0));
    t.fact("struct_page_bytes", json!(std::mem::size_of::<Page>()));
    t.fact("mem_total_kb", json!(meminfo.total * 4));
    let _ = MEM_MAP_NAME;
}

pub(super) fn zone_table(t: &mut Tour, machine: &Machine) {
    t.section("Zones: where each kind of memory lives");
    let mm = machine.mm();
    t.line(format!(
        "{:<8} {:>18} {:>9} {:>9} {:>9} {:>7} {:>7} {:>7}  protection",
        "zone", "pfn range", "spanned", "present", "managed", "min", "low", "high"
    ));
    let zs = zones(&mm);
    for z in &zs {
        t.line(format!(
            "{:<8} {:>8x}-{:<9x} {:>9} {:>9} {:>9} {:>7} {:>7} {:>7}  {:?}",
            z.name,
            z.start_pfn,
            z.end_pfn - 1,
            z.spanned,
            z.present,
            z.managed,
            z.min,
            z.low,
            z.high,
            z.protection
        ));
    }
    let origin = if mm.thp().enabled() {
        "raised by khugepaged for transparent hugepages (11 pageblocks per zone, at most 5% of lowmem)"
    } else {
        "clamp(sqrt(lowmem_kb * 16), 128, 262144), lowmem counted above the high watermarks once khugepaged has started"
    };
    t.line(format!(
        "min_free_kbytes = {} = {origin}, split over the zones by size.",
        mm.min_free_kbytes()
    ));
    let order: Vec<&str> = zs.iter().rev().map(|z| z.name).collect();
    t.line(format!(
        "Allocations fall back {}; 'protection' is what a lower zone keeps back from requests that could have used a higher one.",
        order.join(" -> ")
    ));
    t.fact("zones", serde_json::to_value(&zs).expect("plain data"));
    t.fact("min_free_kbytes", json!(mm.min_free_kbytes()));
}

fn buddyinfo(mm: &Mm<SimPlatform>) -> String {
    let mut s = String::new();
    procfs::buddyinfo(mm, &mut s).expect("formatting into a String");
    s
}

pub(super) fn buddy_lists(t: &mut Tour, machine: &Machine) {
    t.section("The buddy free lists: free blocks of 2^order pages per zone (/proc/buddyinfo)");
    let mm = machine.mm();
    t.line(format!(
        "{:<23}{}",
        "order:",
        (0..=10).map(|o| format!("{o:>6} ")).collect::<String>()
    ));
    let text = buddyinfo(&mm);
    t.line(&text);
    t.line("Boot freed every page in the largest aligned blocks it could: most memory sits in order-10 (4 MiB) blocks.");
    t.fact("buddyinfo", json!(text));
}

/// Allocate `gfp` `order` on `cpu` in `ctx`; describe the result.
fn try_alloc(
    machine: &Machine,
    cpu: usize,
    ctx: Context,
    gfp: Gfp,
    order: u32,
) -> Result<(Result<Pfn, String>, Vec<String>), String> {
    let r = machine
        .on_cpu(cpu, ctx, |mm| {
            mm.alloc_pages(gfp, order)
                .map(|p| mm.page_to_pfn(p))
                .map_err(|e| super::explain(mm, e))
        })
        .map_err(|e| e.to_string())?;
    Ok((r, machine.take_console()))
}

/// `__free_pages()` of the `2^order` block at `pfn`.
fn free(machine: &Machine, pfn: Pfn, order: u32) -> Result<(), String> {
    machine.run(|mm| {
        let page = mm.pfn_to_page(pfn).map_err(|e| e.to_string())?;
        mm.__free_pages(page, order).map_err(|e| e.to_string())
    })
}

fn describe_block(t: &mut Tour, machine: &Machine, key: &str, pfn: Pfn, order: u32) {
    let info = page_info(&machine.mm(), pfn);
    let bytes = (PAGE_SIZE as u64) << order;
    let range = match order {
        0 => format!("pfn {:#x} (1 page, 4K), phys {:#x}", pfn.raw(), info.phys),
        _ => format!(
            "pfn {:#x}..{:#x} ({} pages, {}), phys {:#x}..{:#x}",
            pfn.raw(),
            (pfn + (1 << order) - 1).raw(),
            1u64 << order,
            format_size(bytes),
            info.phys,
            info.phys + bytes - 1
        ),
    };
    t.line(format!("-> {range}, zone {}", info.zone));
    match info.virt {
        Some(v) => t.line(format!(
            "   kernel address {v:#x} (direct map: PAGE_OFFSET + phys); struct page at {:#x}",
            info.struct_page
        )),
        None => t.line("   HighMem: no permanent kernel address"),
    }
    t.fact(key, serde_json::to_value(&info).expect("plain data"));
}

/// Print what an allocation of `describe_block` gave, or why it failed (with the
/// kernel's report); record it as fact `key`. Returns the PFN on success.
fn show_block(
    t: &mut Tour,
    machine: &Machine,
    key: &str,
    result: Result<Pfn, String>,
    kernel: &[String],
    order: u32,
) -> Option<Pfn> {
    match result {
        Ok(pfn) => {
            describe_block(t, machine, key, pfn, order);
            Some(pfn)
        }
        Err(e) => {
            for l in kernel.iter().take(2) {
                t.line(format!("  | {l}"));
            }
            t.line(format!("-> failed: {e}"));
            t.fact(key, json!({"failed": e, "kernel": kernel}));
            None
        }
    }
}

/// A few page allocations, each described or its failure explained, then everything
/// freed and the invariant checker run. Nothing here is a claim: the section shows.
pub(super) fn allocations(t: &mut Tour, machine: &Machine) -> Result<(), String> {
    t.section("An order-10 allocation: alloc_pages(GFP_KERNEL, 10)");
    let (r, kernel) = try_alloc(machine, 0, Context::Process, Gfp::GFP_KERNEL, 10)?;
    let big = show_block(t, machine, "order10", r, &kernel, 10);
    if big.is_some() {
        t.line("4 MiB of physically contiguous memory: one free order-10 block, taken whole.");
    }
    t.line(buddyinfo(&machine.mm()));

    t.section("The same request with GFP_DMA: alloc_pages(GFP_KERNEL | GFP_DMA, 10)");
    let gfp = Gfp::GFP_KERNEL | Gfp::GFP_DMA;
    let (r, kernel) = try_alloc(machine, 0, Context::Process, gfp, 10)?;
    let dma = show_block(t, machine, "order10_dma", r, &kernel, 10);
    t.line(
        "gfp_zone(GFP_DMA) = ZONE_DMA: only blocks from below 16 MiB will do, for ISA-style devices.",
    );

    let irq_cpu = super::second_cpu(machine);
    t.section(&format!(
        "Interrupt context: CPU {irq_cpu} takes a hard IRQ"
    ));
    t.line("alloc_pages(GFP_KERNEL, 0) may sleep to reclaim memory; an interrupt handler may not sleep:");
    let (refused, kernel) = try_alloc(machine, irq_cpu, Context::Hardirq, Gfp::GFP_KERNEL, 0)?;
    for l in &kernel {
        t.line(format!("  | {l}"));
    }
    let refused_ok = refused.is_err();
    t.line("(the kernel prints this splat and carries on into a bug; kmemlab refuses the allocation and counts it)");
    match &refused {
        Err(e) => t.line(format!("-> refused: {e}")),
        Ok(pfn) => t.line(format!("-> unexpectedly served: pfn {:#x}", pfn.raw())),
    }
    let served = refused.as_ref().ok().copied();
    t.line("alloc_pages(GFP_ATOMIC, 0) never sleeps, and may dip into the reserve below the min watermark:");
    let (atomic, kernel) = try_alloc(machine, irq_cpu, Context::Hardirq, Gfp::GFP_ATOMIC, 0)?;
    let atomic_pfn = show_block(t, machine, "hardirq_atomic", atomic, &kernel, 0);
    t.fact(
        "hardirq_gfp_kernel",
        json!({"refused": refused_ok, "error": refused.err(), "kernel": kernel}),
    );

    t.section("Everything back, and the invariant checker");
    for (pfn, order) in [(big, 10), (dma, 10), (atomic_pfn, 0), (served, 0)] {
        if let Some(pfn) = pfn {
            free(machine, pfn, order)?;
        }
    }
    let Ok(report) = machine.check() else {
        t.check_invariants(machine, "the page allocations");
        return Ok(());
    };
    t.line(format!(
        "check(): ok. {} pages = {} free in buddy lists + {} on per-CPU lists + {} allocated + {} reserved",
        report.total, report.free, report.pcp, report.allocated, report.reserved
    ));
    // 6.6 keeps pageblock-order blocks per CPU too (the THP list, `pcp_allowed_order`):
    // on i386, whose pageblocks are order 10, the order-10 requests above use it.
    let thp_list = if machine.mm().pageblock_order() == 10 {
        "; order 10 is i386's pageblock order, whose blocks 6.6 keeps per CPU too (the THP list), so the order-10 allocations and frees above left blocks there"
    } else {
        ""
    };
    t.line(format!(
        "{} pages wait on per-CPU lists: an order-0 allocation takes a batch from the buddy lists onto its CPU's list, and freed order-0 pages go back there{thp_list}:",
        report.pcp
    ));
    t.line(buddyinfo(&machine.mm()));
    machine.run(|mm| mm.drain_all_pages());
    t.line(
        "drain_all_pages() returns per-CPU pages to the buddy lists, and the buddies merge again:",
    );
    let drained = buddyinfo(&machine.mm());
    t.line(&drained);
    t.fact("buddyinfo_after_drain", json!(drained));
    t.fact(
        "check",
        json!({"total": report.total, "free": report.free, "pcp": report.pcp, "allocated": report.allocated, "reserved": report.reserved}),
    );
    Ok(())
}

/// The kmalloc section: size classes, the physical pages behind an object, interrupt
/// context, the size limit, and a double free caught by slab_debug. Nothing here is a
/// claim: the section shows.
pub(super) fn kmalloc_section(t: &mut Tour, machine: &Machine) -> Result<(), String> {
    t.section("kmalloc: small objects from the SLUB slab allocator");
    t.line("Requests are rounded up to a size class (kmalloc_index); the difference is waste.");
    t.line(
        "kmalloc_type() picks the cache family: GFP_KERNEL_ACCOUNT (__GFP_ACCOUNT, charged to the",
    );
    t.line("caller's memory cgroup: file tables, pipes, sockets) is served by kmalloc-cg-*:");
    t.line(format!(
        "{:>8}  {:<14} {:<18} {:>8} {:>8}",
        "request", "cache", "GFP_KERNEL_ACCOUNT", "object", "waste"
    ));
    let mut classes = Vec::new();
    for size in [1usize, 13, 65, 100, 129, 200, 700, 1025, 3000, 5000, 9000] {
        let served = size_class(machine, size, Gfp::GFP_KERNEL).and_then(|(name, object)| {
            size_class(machine, size, Gfp::GFP_KERNEL_ACCOUNT).map(|(cg, _)| (name, cg, object))
        });
        match served {
            Ok((name, accounted, object)) => {
                let waste = object - size;
                t.line(format!(
                    "{size:>8}  {name:<14} {accounted:<18} {object:>8} {waste:>7} ({:.0}%)",
                    waste as f64 * 100.0 / object as f64
                ));
                classes.push(
                    json!({"request": size, "cache": name, "accounted_cache": accounted,
                    "object": object, "waste": waste}),
                );
            }
            Err(e) => {
                t.line(format!("{size:>8}  failed: {e}"));
                classes.push(json!({"request": size, "failed": e}));
            }
        }
    }
    t.line("96 and 192 exist because many objects are just above 64 and 128; above 8 KiB kmalloc takes whole pages.");
    t.fact("kmalloc_classes", json!(classes));
    kmalloc_object(t, machine);

    // Interrupt context.
    let irq_cpu = super::second_cpu(machine);
    let atomic = machine
        .on_cpu(irq_cpu, Context::Hardirq, |mm| {
            let p = mm.kmalloc(256, Gfp::GFP_ATOMIC)?;
            mm.kfree(p).map(|_| p)
        })
        .map_err(|e| e.to_string())?;
    let atomic_ok = atomic.is_ok();
    t.line(format!(
        "In hard-IRQ context on CPU {irq_cpu}, kmalloc(256, GFP_ATOMIC): {}",
        match &atomic {
            Ok(p) => format!("{p}, from CPU {irq_cpu}'s own slab, no lock taken"),
            Err(e) => format!("failed: {}", super::explain(&machine.mm(), e)),
        }
    ));
    t.fact("hardirq_kmalloc_atomic", json!({"ok": atomic_ok}));

    // The size limit.
    let too_big = super::run_text(machine, |mm| mm.kmalloc((4 << 20) + 1, Gfp::GFP_KERNEL));
    let kernel = machine.take_console();
    let refused = too_big.is_err();
    t.line(
        "kmalloc(4 MiB + 1): KMALLOC_MAX_SIZE is 4 MiB, the largest block the page allocator has:",
    );
    for l in &kernel {
        t.line(format!("  | {l}"));
    }
    match too_big {
        Err(e) => t.line(format!("-> refused: {e}")),
        Ok(p) => {
            t.line(format!("-> served at {p} (unexpected)"));
            machine.run(|mm| mm.kfree(p)).map_err(|e| e.to_string())?;
        }
    }
    t.fact(
        "kmalloc_too_large",
        json!({"refused": refused, "kernel": kernel}),
    );

    // A double free, caught by slab_debug on a debug cache.
    t.line("A cache created with slab_debug (F, Z, P, U); one object freed twice:");
    match double_free(machine) {
        Ok((caught, kernel)) => {
            for l in kernel.iter().take(12) {
                t.line(format!("  | {l}"));
            }
            if kernel.len() > 12 {
                t.line(format!(
                    "  | ... ({} more lines: the object's bytes, red zones and padding)",
                    kernel.len() - 12
                ));
            }
            t.line(if caught {
                "-> the second free is refused; the object stays where it was, out of circulation."
            } else {
                "-> not caught"
            });
            t.fact("double_free", json!({"caught": caught, "kernel": kernel}));
        }
        Err(e) => {
            t.line(format!("-> the experiment failed: {e}"));
            t.fact("double_free", json!({"caught": false, "failed": e}));
        }
    }
    let mut slabinfo = String::new();
    procfs::slabinfo(&machine.mm(), &mut slabinfo).map_err(|e| e.to_string())?;
    t.line("/proc/slabinfo, the kmalloc rows (objects of CPU slabs count as active, as in the kernel):");
    for l in slabinfo.lines().filter(|l| {
        l.starts_with("kmalloc-") && !l.starts_with("kmalloc-rcl") && !l.starts_with("kmalloc-cg")
    }) {
        t.line(l);
    }
    t.fact("slabinfo", json!(slabinfo));
    super::percpu::percpu_comparison(t, machine);
    Ok(())
}

/// kmalloc(`size`, `gfp`) and free it: the cache that served it and the object size.
fn size_class(machine: &Machine, size: usize, gfp: Gfp) -> Result<(String, usize), String> {
    machine.run(|mm| {
        let p = mm.kmalloc(size, gfp).map_err(|e| super::explain(mm, e))?;
        let object = mm.ksize(p).map_err(|e| e.to_string());
        let name = mm
            .object_info(p)
            .and_then(|i| {
                mm.cache(i.cache)
                    .ok()
                    .map(|c| c.name().as_str().to_string())
            })
            .unwrap_or_else(|| "(page allocator)".to_string());
        mm.kfree(p).map_err(|e| e.to_string())?;
        Ok((name, object?))
    })
}

/// kmalloc(3000): where its bytes are, found by translating each of its pages through
/// the page tables (the CPU's view), compared with the direct map's arithmetic.
fn kmalloc_object(t: &mut Tour, machine: &Machine) {
    const SIZE: usize = 3000;
    let p = match super::run_text(machine, |mm| mm.kmalloc(SIZE, Gfp::GFP_KERNEL)) {
        Ok(p) => p,
        Err(e) => {
            t.line(format!("kmalloc(3000) failed: {e}"));
            t.fact("kmalloc_object", json!({"failed": e.to_string()}));
            return;
        }
    };
    let mm = machine.mm();
    let page_offset = mm.layout().page_offset;
    let walked = machine.walk(p).result.map(|tr| tr.phys.0);
    let pfns = mapped_pfns(&mm, p, SIZE as u64);
    let runs = pfns.as_ref().map(|p| runs(p).len()).unwrap_or(0);
    match (&walked, &pfns) {
        (Ok(phys), Ok(pfns)) => t.line(format!(
            "kmalloc(3000) = {p}: the page walk finds physical {phys:#x}{}; its 3000 bytes lie in {} page{} forming {runs} physical run{}.",
            if phys.wrapping_add(page_offset) == p.0 {
                format!(" = the address - PAGE_OFFSET ({page_offset:#x}), the direct map")
            } else {
                format!(", not the address - PAGE_OFFSET ({page_offset:#x})")
            },
            pfns.len(),
            if pfns.len() == 1 { "" } else { "s" },
            if runs == 1 { "" } else { "s" },
        )),
        (Err(e), _) => t.line(format!("kmalloc(3000) = {p}: the page walk faults: {e:?}")),
        (_, Err(va)) => t.line(format!("kmalloc(3000) = {p}: no page table maps {va:#x}")),
    }
    t.fact(
        "kmalloc_object",
        json!({"virt": addr(p.0), "phys": walked.as_ref().ok().map(|&a| addr(a)), "page_offset": addr(page_offset),
            "pfns": pfns.as_ref().ok().map(|p| raw_pfns(p)), "phys_runs": runs}),
    );
    if let Err(e) = machine.run(|mm| mm.kfree(p)) {
        t.line(format!("kfree: {e}"));
    }
}

fn double_free(machine: &Machine) -> Result<(bool, Vec<String>), String> {
    machine
        .run(|mm| -> Result<(bool, Vec<String>), String> {
            let flags = SlabFlags::DEBUG;
            let c = mm
                .kmem_cache_create("tour_debug", 64, 0, flags, None)
                .map_err(|e| super::explain(mm, e))?;
            let o = mm
                .kmem_cache_alloc(c, Gfp::GFP_KERNEL)
                .map_err(|e| super::explain(mm, e))?;
            mm.kmem_cache_free(c, o).map_err(|e| e.to_string())?;
            let caught = mm.kmem_cache_free(c, o).is_err();
            mm.kmem_cache_destroy(c).map_err(|e| e.to_string())?;
            Ok((caught, Vec::new()))
        })
        .map(|(caught, _)| (caught, machine.take_console()))
}
