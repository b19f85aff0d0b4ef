//! Contrast D and question Q3, interrupt context: memory is driven down to the min
//! watermark, then a hard-IRQ handler asks for memory. GFP_ATOMIC may use the reserves
//! below min (`ALLOC_MIN_RESERVE | ALLOC_NON_BLOCK`: down to 3/8 of min), GFP_NOWAIT may
//! not; what may sleep is refused with the kernel's splat, and vfree is handed to a
//! kworker.

use std::sync::atomic::Ordering::Relaxed;

use kmemlab_mm::{Context, Gfp, Mm, Pfn, VirtAddr, Watermark, MAX_PAGE_ORDER};
use kmemlab_sim::{Machine, SimPlatform};
use serde_json::json;

use super::{second_cpu, Tour};

/// The handler's request: small objects, whose slabs are order-0 pages. The handler
/// takes them with GFP_NOWAIT until the slab needs a new page, so that the page
/// allocator's watermark check decides. (An order-0 page, because a high-order atomic
/// allocation below min would also reserve a HighAtomic pageblock, changing the machine
/// for the sections after this one.)
const REQUEST: usize = 8;
/// At most this many objects are taken before giving up on reaching the slab's end.
const MAX_OBJECTS: usize = 1 << 16;

const CLAIM_D: &str = "interrupt context: kmalloc(GFP_ATOMIC) in a hard-IRQ handler succeeds with every zone at its min watermark, where GFP_NOWAIT fails";
const CLAIM_Q3: &str = "what may run in interrupt context? kmalloc(GFP_ATOMIC); kmalloc(GFP_KERNEL) and vmalloc are refused with the kernel's words, and vfree is deferred";
/// The claims this section decides.
pub const CLAIMS: &[(&str, &str)] = &[("D", CLAIM_D), ("Q3", CLAIM_Q3)];

/// Run the section: claims D and Q3.
pub fn section(t: &mut Tour, machine: &Machine) -> Result<(), String> {
    let cpu = second_cpu(machine);
    t.section(&format!(
        "D. Interrupt context: CPU {cpu} takes a hard IRQ while memory is short"
    ));
    let area = machine
        .run(|mm| mm.vmalloc(64 << 10))
        .map_err(|e| e.to_string())?;
    let held = fill_to_min(t, machine)?;
    let (below, zones_text) = zones_below_min(&machine.mm());
    t.line(format!(
        "{} pages taken zone by zone, highest first, with GFP_NOWAIT | __GFP_NOMEMALLOC (no reclaim, no reserves) until the page allocator said no; now {zones_text}.",
        held.iter().map(|&(_, o)| 1u64 << o).sum::<u64>()
    ));
    let reserve_before = machine.mm().events().alloc_reserve.load(Relaxed);
    let (taken, nowait, atomic) = machine
        .on_cpu(cpu, Context::Hardirq, |mm| {
            let mut taken = Vec::new();
            let nowait = loop {
                match mm.kmalloc(REQUEST, Gfp::GFP_NOWAIT | Gfp::__GFP_NOWARN) {
                    Ok(p) if taken.len() < MAX_OBJECTS => taken.push(p),
                    Ok(p) => break Ok(p),
                    Err(e) => break Err(super::explain(mm, e)),
                }
            };
            let atomic = mm
                .kmalloc(REQUEST, Gfp::GFP_ATOMIC)
                .map_err(|e| super::explain(mm, e));
            (taken, nowait, atomic)
        })
        .map_err(|e| e.to_string())?;
    let reserve_used = machine.mm().events().alloc_reserve.load(Relaxed) - reserve_before;
    t.line(format!(
        "In the handler, kmalloc(8, GFP_NOWAIT) served {} objects from the slabs' free objects, then needed a new slab page: {}",
        taken.len(),
        outcome(&nowait)
    ));
    t.line(format!(
        "In the handler, kmalloc(8, GFP_ATOMIC): {}; allocations served from the reserves: {reserve_used}",
        outcome(&atomic)
    ));
    t.line("GFP_ATOMIC carries __GFP_HIGH (min - min/2) and cannot block (a quarter less again), so the watermark it must clear drops from min to 3/8 of min; GFP_NOWAIT has neither privilege.");
    let d_holds = t.claim(
        "D",
        CLAIM_D,
        format!(
            "{zones_text}; GFP_NOWAIT: {} after {} objects; GFP_ATOMIC: {}, {reserve_used} from the reserves",
            short(&nowait),
            taken.len(),
            short(&atomic)
        ),
        below && nowait.is_err() && atomic.is_ok() && reserve_used >= 1,
    );
    t.fact(
        "irq_below_min",
        json!({"zones": zones_text, "below_min": below, "gfp_nowait": nowait.as_ref().err(),
            "gfp_atomic_ok": atomic.is_ok(), "from_reserves": reserve_used, "holds": d_holds}),
    );
    machine.run(|mm| -> Result<(), String> {
        for p in taken.into_iter().chain(nowait.ok()).chain(atomic.ok()) {
            mm.kfree(p).map_err(|e| e.to_string())?;
        }
        Ok(())
    })?;
    release(machine, held)?;
    let failures = machine.mm().kswapd_failures();
    t.line(format!(
        "kswapd was woken while memory was short and found nothing to reclaim (this machine has no page cache): kswapd_failures = {failures}{}.",
        if failures >= 16 {
            ", so the node counts as unreclaimable (node_unreclaimable: 1 in zoneinfo) until some reclaim makes progress, as in the kernel"
        } else {
            ""
        }
    ));
    t.fact("kswapd_failures_after_irq", json!(failures));

    what_may_sleep(t, machine, cpu, area)?;
    t.check_invariants(machine, "the interrupt-context section");
    Ok(())
}

/// Q3: GFP_KERNEL and vmalloc in the handler are refused with the kernel's words; vfree
/// there is deferred to the CPU's kworker.
fn what_may_sleep(
    t: &mut Tour,
    machine: &Machine,
    cpu: usize,
    area: VirtAddr,
) -> Result<(), String> {
    let kernel = in_irq(machine, cpu, |mm| mm.kmalloc(64, Gfp::GFP_KERNEL))?;
    let kernel_splat = t.take_console(machine);
    let vmalloc = in_irq(machine, cpu, |mm| mm.vmalloc(64 << 10))?;
    let vmalloc_splat = t.take_console(machine);
    t.line("kmalloc(64, GFP_KERNEL) in the handler may sleep to reclaim:");
    for l in kernel_splat.iter().take(3) {
        t.line(format!("  | {l}"));
    }
    t.line(format!("-> {}", outcome(&kernel)));
    t.line("vmalloc(64K) in the handler (it allocates page tables and pages with GFP_KERNEL):");
    for l in vmalloc_splat.iter().take(2) {
        t.line(format!("  | {l}"));
    }
    t.line(format!("-> {}", outcome(&vmalloc)));
    let (queued, still_mapped) = machine
        .on_cpu(cpu, Context::Hardirq, |mm| {
            let r = mm.vfree(area);
            (
                r.map(|_| mm.deferred_vfrees(cpu)),
                mm.find_vm_area(area).is_some(),
            )
        })
        .map_err(|e| e.to_string())?;
    let freed_after = machine.mm().find_vm_area(area).is_none();
    let queued = queued.map_err(|e| e.to_string())?;
    t.line(format!(
        "vfree({area}) in the handler: {queued} area on CPU {cpu}'s deferred list, still mapped: {still_mapped}; after the handler, CPU {cpu}'s kworker freed it: {freed_after}."
    ));
    let first = |lines: &[String]| {
        lines
            .iter()
            .find(|l| l.starts_with("BUG") || l.starts_with("kernel BUG"))
            .cloned()
            .unwrap_or_default()
    };
    let (k_line, v_line) = (first(&kernel_splat), first(&vmalloc_splat));
    t.fact(
        "irq_rules",
        json!({"gfp_kernel": kernel.as_ref().err(), "gfp_kernel_kernel": kernel_splat,
            "vmalloc": vmalloc.as_ref().err(), "vmalloc_kernel": vmalloc_splat,
            "vfree_deferred": queued, "still_mapped": still_mapped, "freed_after": freed_after}),
    );
    t.claim(
        "Q3",
        CLAIM_Q3,
        format!(
            "GFP_KERNEL: {} ('{k_line}'); vmalloc: {} ('{v_line}'); vfree: {queued} deferred, freed after the handler: {freed_after}",
            short(&kernel),
            short(&vmalloc)
        ),
        kernel.is_err()
            && k_line.starts_with("BUG: sleeping function called from invalid context")
            && vmalloc.is_err()
            && v_line.starts_with("kernel BUG at mm/vmalloc.c")
            && queued == 1
            && still_mapped
            && freed_after,
    );
    Ok(())
}

/// Run `f` in a hard-IRQ handler on `cpu`.
fn in_irq<T, E: ToString>(
    machine: &Machine,
    cpu: usize,
    f: impl FnOnce(&Mm<SimPlatform>) -> Result<T, E>,
) -> Result<Result<T, String>, String> {
    machine
        .on_cpu(cpu, Context::Hardirq, |mm| {
            f(mm).map_err(|e| super::explain(mm, e.to_string()))
        })
        .map_err(|e| e.to_string())
}

fn outcome<T: std::fmt::Display>(r: &Result<T, String>) -> String {
    match r {
        Ok(v) => format!("{v}"),
        Err(e) => format!("refused: {e}"),
    }
}

fn short<T>(r: &Result<T, String>) -> &'static str {
    if r.is_ok() {
        "succeeded"
    } else {
        "failed"
    }
}

/// Take pages without reclaim and without reserves (`GFP_NOWAIT | __GFP_NOMEMALLOC`:
/// being non-blocking grants `ALLOC_NON_BLOCK` and, above order 0, `ALLOC_HIGHATOMIC`,
/// which would also set pageblocks aside as a HighAtomic reserve; `__GFP_NOMEMALLOC`
/// drops both, as `gfp_to_alloc_flags()` of Linux 6.6 does), largest blocks first,
/// draining the per-CPU lists between rounds, until nothing more is given. Each populated
/// zone in turn, highest first, is the request's highest zone (`gfp_zone()`), so that
/// its watermark check adds no `lowmem_reserve`: every zone ends at its min watermark.
/// Returns the blocks taken, as (pfn, order).
fn fill_to_min(t: &mut Tour, machine: &Machine) -> Result<Vec<(u64, u32)>, String> {
    let nowait = Gfp::GFP_NOWAIT | Gfp::__GFP_NOWARN | Gfp::__GFP_NOMEMALLOC;
    let mm = machine.mm();
    let targets: Vec<Gfp> = mm
        .zones()
        .iter()
        .rev()
        .filter(|z| z.managed_pages > 0)
        .filter_map(|z| zone_modifier(&mm, z.idx))
        .collect();
    let mut held = Vec::new();
    for modifier in targets {
        let gfp = nowait | modifier;
        loop {
            let before = held.len();
            machine.run(|mm| {
                for order in (0..=MAX_PAGE_ORDER).rev() {
                    while let Ok(page) = mm.alloc_pages(gfp, order) {
                        held.push((mm.page_to_pfn(page).0, order));
                    }
                }
                mm.drain_all_pages();
            });
            if held.len() == before {
                break;
            }
        }
    }
    t.take_console(machine);
    Ok(held)
}

/// The zone modifier (`__GFP_HIGHMEM`, none, `__GFP_DMA32`, `__GFP_DMA`) whose
/// `gfp_zone()` is zone `idx` on this machine's profile.
fn zone_modifier(mm: &Mm<SimPlatform>, idx: usize) -> Option<Gfp> {
    [
        Gfp::__GFP_HIGHMEM,
        Gfp::empty(),
        Gfp::__GFP_DMA32,
        Gfp::__GFP_DMA,
    ]
    .into_iter()
    .find(|g| g.gfp_zone().is_ok_and(|zt| mm.zone_index(zt) == idx))
}

fn release(machine: &Machine, held: Vec<(u64, u32)>) -> Result<(), String> {
    machine.run(|mm| {
        for (pfn, order) in held {
            let page = mm.pfn_to_page(Pfn(pfn)).map_err(|e| e.to_string())?;
            mm.__free_pages(page, order).map_err(|e| e.to_string())?;
        }
        Ok(())
    })
}

/// Is every populated zone at or below its min watermark, so that an order-0 request
/// without reserves fails its check there? The check (`__zone_watermark_ok()`) counts
/// the free pages less the HighAtomic reserve, which only such requests may not use.
/// And a description.
fn zones_below_min(mm: &Mm<SimPlatform>) -> (bool, String) {
    let mut below = true;
    let mut text = Vec::new();
    for z in mm.zones().iter().filter(|z| z.managed_pages > 0) {
        let (free, min) = (z.free_pages(), z.wmark(Watermark::Min));
        let reserved = z.nr_reserved_highatomic();
        below &= free - free.min(reserved) <= min;
        text.push(if reserved > 0 {
            format!(
                "{} {free} free ({reserved} reserved for high-order atomic requests), min {min}",
                z.name()
            )
        } else {
            format!("{} {free} free, min {min}", z.name())
        });
    }
    (below, text.join("; "))
}
