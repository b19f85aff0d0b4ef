//! Contrast G and question Q2, size: physical memory is fragmented until no order-10 block
//! is free anywhere, so a 4 MiB kmalloc (one order-10 block) fails while a 64 MiB vmalloc
//! (order-0 pages) succeeds and kvmalloc falls back to vmalloc; then the hard limits:
//! KMALLOC_MAX_SIZE for kmalloc, the vmalloc area for vmalloc.

use kmemlab_mm::page_alloc::AllocFlags;
use kmemlab_mm::slab::kmalloc::KMALLOC_MAX_SIZE;
use kmemlab_mm::{Gfp, Mm, VirtAddr, Watermark, ZoneType, MAX_PAGE_ORDER, PAGE_SIZE};
use kmemlab_sim::{format_size, fragment, FragmentPattern, Fragmented, Machine, SimPlatform};
use serde_json::json;

use super::Tour;
use crate::commands::vmalloc::runs;

/// The flags vmalloc takes its pages with.
const VMALLOC_GFP: Gfp = Gfp::GFP_KERNEL.union(Gfp::__GFP_HIGHMEM);

/// Order-0 pages that requests of `gfp` may still take: in each zone of their zonelist,
/// the free pages above what `__zone_watermark_ok()` keeps back from them (the min
/// watermark, the zone's lowmem reserve against their highest zone, and the HighAtomic
/// reserve).
fn spare_pages(mm: &Mm<SimPlatform>, gfp: Gfp) -> u64 {
    let class = mm.zone_index(gfp.gfp_zone().unwrap_or(ZoneType::Normal));
    mm.zonelist(class)
        .map(|z| {
            let kept =
                z.wmark(Watermark::Min) + z.lowmem_reserve[class] + z.nr_reserved_highatomic();
            z.free_pages().saturating_sub(kept)
        })
        .sum()
}

/// Pages a vmalloc of `bytes` takes: its data pages and, for its page tables, page array
/// and slab metadata, at most 1/128 more plus 16.
fn vmalloc_need(bytes: usize) -> u64 {
    let pages = bytes.div_ceil(PAGE_SIZE) as u64;
    pages + pages / 128 + 16
}

/// The vmalloc of the experiment: 64 MiB, or a quarter of what vmalloc may take on a
/// small machine (at least 1 MiB).
fn vmalloc_size(spare_pages: u64) -> usize {
    ((spare_pages * PAGE_SIZE as u64 / 4) & !((1 << 20) - 1)).clamp(1 << 20, 64 << 20) as usize
}

/// Why no zone can serve kmalloc(KMALLOC_MAX_SIZE) now (an order-10 GFP_KERNEL request:
/// `__zone_watermark_ok()` at the min watermark of the slow path, which wants a free
/// block of that order too), or `None` if one can.
fn order10_refusal(mm: &Mm<SimPlatform>) -> Option<String> {
    let gfp = Gfp::GFP_KERNEL;
    let order = MAX_PAGE_ORDER;
    let class = mm.zone_index(gfp.gfp_zone().unwrap_or(ZoneType::Normal));
    let flags = AllocFlags::from_gfp(gfp, order);
    mm.drain_all_pages();
    let fits = mm.zonelist(class).any(|z| {
        let min = z.wmark(Watermark::Min);
        mm.zone_watermark_ok(z, order, min, class, flags, z.free_pages())
    });
    (!fits).then(|| {
        let largest = largest_free_order(mm).map_or("none".into(), |o| o.to_string());
        format!(
            "no zone can serve an order-{order} GFP_KERNEL request even with the pinned pages back (largest free order {largest}), so kmalloc(KMALLOC_MAX_SIZE) cannot be shown to succeed"
        )
    })
}

const CLAIM_G: &str = "size: with no order-10 block free, kmalloc(4M) fails, a large vmalloc succeeds and kvmalloc(4M) falls back to vmalloc; kmalloc above KMALLOC_MAX_SIZE is refused outright";
const CLAIM_Q2: &str = "how big can it be? kmalloc: at most KMALLOC_MAX_SIZE (4 MiB, one order-10 block); vmalloc: as much as free pages and the vmalloc area allow, fragmented or not";
/// The claims this section decides.
pub const CLAIMS: &[(&str, &str)] = &[("G", CLAIM_G), ("Q2", CLAIM_Q2)];

/// Run the section: claims G and Q2.
pub fn section(t: &mut Tour, machine: &Machine) -> Result<(), String> {
    t.section("G. Size: fragmented memory, and the limits");
    let pinned = fragment_all(t, machine)?;
    let largest = largest_free_order(&machine.mm());
    let spare = spare_pages(&machine.mm(), VMALLOC_GFP);
    let big = vmalloc_size(spare);
    let need = vmalloc_need(big) + vmalloc_need(KMALLOC_MAX_SIZE);
    let g_fits = spare >= need;
    let big_fits = spare >= vmalloc_need(big);
    let kmalloc = machine.run(|mm| {
        mm.kmalloc(KMALLOC_MAX_SIZE, Gfp::GFP_KERNEL)
            .map_err(|e| super::explain(mm, e))
    });
    let kmalloc_console = t.take_console(machine);
    let vmalloc = machine.run(|mm| mm.vmalloc(big).map_err(|e| super::explain(mm, e)));
    let kvmalloc = machine.run(|mm| {
        mm.kvmalloc(KMALLOC_MAX_SIZE, Gfp::GFP_KERNEL)
            .map_err(|e| super::explain(mm, e))
    });
    t.take_console(machine);
    let kv_is_vmalloc = kvmalloc
        .as_ref()
        .is_ok_and(|&p| machine.mm().is_vmalloc_addr(p));
    t.line(format!(
        "kmalloc(4M) needs one free order-10 block: {}",
        match &kmalloc {
            Ok(p) => format!("served at {p} (unexpected)"),
            Err(e) => format!("failed: {}", first_clause(e)),
        }
    ));
    for l in kmalloc_console.iter().take(1) {
        t.line(format!("  | {l}"));
    }
    let vmalloc_text = match &vmalloc {
        Ok(v) => {
            let mut pfns = Vec::new();
            let _ = machine.mm().vm_area_pfns(*v, |p| pfns.push(p));
            format!(
                "{v}: {} pages in {} physical runs",
                pfns.len(),
                runs(&pfns).len()
            )
        }
        Err(e) => format!("failed: {e}"),
    };
    t.line(format!(
        "vmalloc({}) needs only order-0 pages: {vmalloc_text}",
        format_size(big as u64)
    ));
    t.line(format!(
        "kvmalloc(4M) tries kmalloc without reclaim or warning, then vmalloc: {}",
        match &kvmalloc {
            Ok(p) if kv_is_vmalloc => format!("{p}, a vmalloc address"),
            Ok(p) => format!("{p}, from kmalloc (unexpected)"),
            Err(e) => format!("failed: {e}"),
        }
    ));
    let (too_big, too_big_calls) = kmalloc_too_big(machine);
    let too_big_console = t.take_console(machine);
    t.line("kmalloc(4M + 1) is above KMALLOC_MAX_SIZE:");
    for l in too_big_console.iter().take(2) {
        t.line(format!("  | {l}"));
    }
    t.line(format!(
        "-> {}; pages allocated or reclaimed while refusing: {too_big_calls}",
        match &too_big {
            Ok(_) => "served (unexpected)".to_string(),
            Err(e) => format!("refused: {e}"),
        }
    ));
    let g_claim = format!(
        "size: with no order-10 block free, kmalloc(4M) fails, a {} vmalloc succeeds{} and kvmalloc(4M) falls back to vmalloc; kmalloc above KMALLOC_MAX_SIZE is refused outright",
        format_size(big as u64),
        if big < 64 << 20 {
            " (not 64M: a quarter of what this small machine has free above its watermarks)"
        } else {
            ""
        }
    );
    let g_holds = if g_fits {
        t.claim(
            "G",
            g_claim,
            format!(
                "largest free order {largest} after pinning {pinned_pages} pages; kmalloc(4M): {}; vmalloc({}): {}; kvmalloc(4M): {}; kmalloc(4M+1): {} with {too_big_calls} page-allocator work",
                ok_or_failed(kmalloc.is_ok()),
                format_size(big as u64),
                ok_or_failed(vmalloc.is_ok()),
                if kv_is_vmalloc { "vmalloc" } else { "not vmalloc" },
                if too_big.is_err() { "refused" } else { "served" },
                pinned_pages = pinned.iter().map(|f| f.report.pinned_pages).sum::<u64>(),
                largest = largest.map_or("none".into(), |o| o.to_string()),
            ),
            largest.is_none_or(|o| o < MAX_PAGE_ORDER)
                && kmalloc.is_err()
                && vmalloc.is_ok()
                && kv_is_vmalloc
                && too_big.is_err()
                && too_big_calls == 0,
        )
    } else {
        t.does_not_fit(
            "G",
            g_claim,
            format!(
                "after fragmenting, vmalloc may take {spare} more pages before the watermarks stop it, but vmalloc({}) beside kvmalloc(4M)'s vmalloc fallback needs up to {need}",
                format_size(big as u64)
            ),
        );
        false
    };
    t.fact(
        "size_fragmented",
        json!({"largest_free_order": largest, "kmalloc_4m": kmalloc.is_ok(), "vmalloc_bytes": big,
            "vmalloc_ok": vmalloc.is_ok(), "kvmalloc_4m_vmalloc": kv_is_vmalloc,
            "kmalloc_too_large_refused": too_big.is_err(), "spare_pages": spare, "fits": g_fits, "holds": g_holds}),
    );
    machine.run(|mm| -> Result<(), String> {
        if let Ok(p) = kmalloc {
            mm.kfree(p).map_err(|e| e.to_string())?;
        }
        if let Ok(v) = vmalloc {
            mm.vfree(v).map_err(|e| e.to_string())?;
        }
        if let Ok(p) = kvmalloc {
            mm.kvfree(p).map_err(|e| e.to_string())?;
        }
        Ok(())
    })?;
    for f in pinned {
        f.undo(machine).map_err(|e| e.to_string())?;
    }
    let big_refusal = (!big_fits).then(|| {
        format!(
            "after fragmenting, vmalloc may take {spare} more pages before the watermarks stop it, fewer than vmalloc({}) needs ({})",
            format_size(big as u64),
            vmalloc_need(big)
        )
    });
    limits(t, machine, vmalloc.is_ok(), big_refusal)?;
    t.check_invariants(machine, "the size section");
    Ok(())
}

/// Q2: with the pinned pages back, kmalloc(KMALLOC_MAX_SIZE) works and one byte more does
/// not; a vmalloc as large as the whole vmalloc area is refused for want of address space.
/// It does not fit when no zone can serve an order-10 block now, or when the vmalloc on
/// fragmented memory did not fit (`big_refusal`).
fn limits(
    t: &mut Tour,
    machine: &Machine,
    vmalloc_ok: bool,
    big_refusal: Option<String>,
) -> Result<(), String> {
    let refusal = order10_refusal(&machine.mm()).or(big_refusal);
    let max = machine.run(|mm| {
        mm.kmalloc(KMALLOC_MAX_SIZE, Gfp::GFP_KERNEL)
            .map_err(|e| super::explain(mm, e))
    });
    let (over, _) = kmalloc_too_big(machine);
    t.take_console(machine);
    let total = machine.mm().layout().vmalloc_total() as usize;
    let whole_area = machine.run(|mm| mm.vmalloc(total).map_err(|e| super::explain(mm, e)));
    let area_console = t.take_console(machine);
    t.line(format!(
        "With the pinned pages given back: kmalloc(4M) {}, kmalloc(4M + 1) {}.",
        match &max {
            Ok(p) => format!("= {p}"),
            Err(e) => format!("failed: {e}"),
        },
        ok_or_failed(over.is_ok())
    ));
    t.line(format!(
        "vmalloc({}), as large as the whole vmalloc area (VmallocTotal):",
        approx_size(total as u64)
    ));
    for l in area_console.iter().take(2) {
        t.line(format!("  | {l}"));
    }
    t.line(format!(
        "-> {}",
        match &whole_area {
            Ok(v) => format!("served at {v} (unexpected)"),
            Err(e) => format!("refused: {e}"),
        }
    ));
    t.line("On x86_64 the 32 TiB area dwarfs RAM, so RAM is the limit (the request exceeds totalram_pages); on i386 the area is about 120 MiB, less than RAM, so address space is the limit (no free vmap_area fits it).");
    let holds = max.is_ok() && over.is_err() && whole_area.is_err() && vmalloc_ok;
    t.fact(
        "size_limits",
        json!({"kmalloc_max_ok": max.is_ok(), "kmalloc_over_refused": over.is_err(),
            "vmalloc_total": total, "vmalloc_whole_area_refused": whole_area.is_err(), "fits": refusal.is_none(), "holds": holds}),
    );
    machine.run(|mm| -> Result<(), String> {
        if let Ok(p) = max {
            mm.kfree(p).map_err(|e| e.to_string())?;
        }
        if let Ok(v) = whole_area {
            mm.vfree(v).map_err(|e| e.to_string())?;
        }
        Ok(())
    })?;
    if let Some(reason) = refusal {
        t.does_not_fit("Q2", CLAIM_Q2, reason);
        return Ok(());
    }
    t.claim(
        "Q2",
        CLAIM_Q2,
        format!(
            "kmalloc(4M): {}, kmalloc(4M+1): {}; vmalloc on fragmented memory: {}; vmalloc({}) = the whole area: {}",
            ok_or_failed(max.is_ok()),
            if over.is_err() { "refused" } else { "served" },
            ok_or_failed(vmalloc_ok),
            approx_size(total as u64),
            match &whole_area {
                Ok(_) => "served".to_string(),
                Err(e) => format!("refused ({e})"),
            }
        ),
        holds,
    );
    Ok(())
}

/// Fragment every populated zone until no free block of MAX_PAGE_ORDER is left; say what
/// was pinned.
fn fragment_all(t: &mut Tour, machine: &Machine) -> Result<Vec<Fragmented>, String> {
    let zones: Vec<&'static str> = machine
        .mm()
        .zones()
        .iter()
        .filter(|z| z.managed_pages > 0)
        .map(|z| z.name())
        .collect();
    let mut done = Vec::new();
    for zone in zones {
        let f = fragment(machine, zone, MAX_PAGE_ORDER, FragmentPattern::Sparse)
            .map_err(|e| e.to_string())?;
        let r = &f.report;
        t.line(format!(
            "fragment {zone}: {} unmovable pages pinned, one in every 4 MiB block; {} pages stay free, largest free order {} -> {}",
            r.pinned_pages,
            r.free_pages,
            r.largest_free_order_before.map_or("none".into(), |o| o.to_string()),
            r.largest_free_order_after.map_or("none".into(), |o| o.to_string()),
        ));
        done.push(f);
    }
    Ok(done)
}

fn largest_free_order(mm: &Mm<SimPlatform>) -> Option<u32> {
    mm.drain_all_pages();
    mm.zones()
        .iter()
        .filter_map(|z| mm.largest_free_order(z))
        .max()
}

/// kmalloc(KMALLOC_MAX_SIZE + 1): the result, and the page-allocator work done on the way
/// (pages allocated plus direct-reclaim stalls), which must be none.
fn kmalloc_too_big(machine: &Machine) -> (Result<VirtAddr, String>, u64) {
    machine.run(|mm| {
        let work = |mm: &Mm<SimPlatform>| {
            mm.zones().iter().map(|z| mm.pgalloc(z)).sum::<u64>() + mm.events().allocstall_total()
        };
        let before = work(mm);
        let r = mm
            .kmalloc(KMALLOC_MAX_SIZE + 1, Gfp::GFP_KERNEL)
            .map_err(|e| super::explain(mm, e));
        (r, work(mm) - before)
    })
}

/// A size for people: whole TiB, GiB or MiB, rounded to the nearest.
fn approx_size(bytes: u64) -> String {
    let (unit, shift) = match bytes {
        b if b >= 1 << 40 => ("TiB", 40),
        b if b >= 1 << 30 => ("GiB", 30),
        _ => ("MiB", 20),
    };
    format!("{} {unit}", (bytes + (1 << (shift - 1))) >> shift)
}

fn ok_or_failed(ok: bool) -> &'static str {
    if ok {
        "succeeded"
    } else {
        "failed"
    }
}

/// The first clause of an allocation error (up to the first "; ").
fn first_clause(e: &str) -> &str {
    e.split("; ").next().unwrap_or(e)
}
