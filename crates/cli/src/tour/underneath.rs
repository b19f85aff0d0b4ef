//! Contrast E, the allocator underneath: kmalloc is served by slabs, and only a new slab
//! calls the page allocator; vmalloc calls the page allocator for every page and writes a
//! page-table entry for each, adding page-table pages when a table is missing.

use std::sync::atomic::Ordering::Relaxed;

use kmemlab_mm::{procfs, Gfp, Mm, VirtAddr, PAGE_SIZE};
use kmemlab_sim::{format_size, Machine, SimPlatform};
use serde_json::json;

use super::Tour;

/// kmalloc objects in the experiment, and their size.
const OBJECTS: usize = 1000;
const OBJECT_SIZE: usize = 256;
/// The vmalloc in the experiment.
const VMALLOC_SIZE: usize = 1 << 20;

/// Counters that tell which allocator did the work.
#[derive(Clone, Copy, Default)]
struct Counts {
    slabs: u64,
    pgalloc: u64,
    pte_writes: u64,
    page_tables: u64,
}

fn counts(mm: &Mm<SimPlatform>) -> Counts {
    let mut slabs = 0;
    mm.for_each_cache(|c| -> Option<()> {
        slabs += procfs::slab_info(mm, c).num_slabs;
        None
    });
    Counts {
        slabs,
        pgalloc: mm.zones().iter().map(|z| mm.pgalloc(z)).sum(),
        pte_writes: mm.vmalloc_stats().pte_set.load(Relaxed),
        page_tables: mm.nr_pagetable_pages(),
    }
}

fn delta(before: Counts, after: Counts) -> Counts {
    Counts {
        slabs: after.slabs - before.slabs,
        pgalloc: after.pgalloc - before.pgalloc,
        pte_writes: after.pte_writes - before.pte_writes,
        page_tables: after.page_tables - before.page_tables,
    }
}

const CLAIM_E: &str = "allocator underneath: kmalloc calls the page allocator once per slab of many objects; vmalloc calls it once per page and writes a PTE per page";
/// The claims this section decides.
pub const CLAIMS: &[(&str, &str)] = &[("E", CLAIM_E)];

/// Run the section: claim E.
pub fn section(t: &mut Tour, machine: &Machine) -> Result<(), String> {
    t.section("E. The allocator underneath");
    let (k, pages_per_slab) = kmalloc_side(machine)?;
    t.line(format!(
        "{OBJECTS} x kmalloc({OBJECT_SIZE}): {} new slab{} of {pages_per_slab} page{}, so {} call{} to the page allocator for {} pages (pgalloc +{}); no PTE written.",
        k.slabs,
        if k.slabs == 1 { "" } else { "s" },
        if pages_per_slab == 1 { "" } else { "s" },
        k.slabs,
        if k.slabs == 1 { "" } else { "s" },
        k.slabs * pages_per_slab,
        k.pgalloc
    ));
    let (v, data_pages) = vmalloc_side(machine)?;
    t.line(format!(
        "vmalloc({}): {data_pages} order-0 pages from the page allocator, {} PTE writes, {} new page-table page{}; pgalloc +{} (the data pages, the tables, and slabs for vm_struct, vmap_area and the page array when one was needed).",
        format_size(VMALLOC_SIZE as u64),
        v.pte_writes,
        v.page_tables,
        if v.page_tables == 1 { "" } else { "s" },
        v.pgalloc
    ));
    t.fact(
        "underneath",
        json!({
            "kmalloc": {"objects": OBJECTS, "size": OBJECT_SIZE, "new_slabs": k.slabs, "pages_per_slab": pages_per_slab, "pgalloc": k.pgalloc, "pte_writes": k.pte_writes},
            "vmalloc": {"size": VMALLOC_SIZE, "data_pages": data_pages, "pte_writes": v.pte_writes, "page_tables": v.page_tables, "pgalloc": v.pgalloc},
        }),
    );
    let holds = k.slabs >= 1
        && k.slabs * 4 <= OBJECTS as u64
        && k.pgalloc == k.slabs * pages_per_slab
        && k.pte_writes == 0
        && data_pages == (VMALLOC_SIZE / PAGE_SIZE) as u64
        && v.pte_writes == data_pages
        && v.pgalloc >= data_pages + v.page_tables;
    t.claim(
        "E",
        CLAIM_E,
        format!(
            "{OBJECTS} kmalloc({OBJECT_SIZE}): {} page-allocator calls ({} pages), 0 PTE writes; vmalloc(1M): {data_pages} pages, {} PTE writes, {} page-table pages",
            k.slabs,
            k.pgalloc,
            v.pte_writes,
            v.page_tables
        ),
        holds,
    );
    Ok(())
}

/// Allocate and free the kmalloc objects; what the allocation moved, and the cache's
/// pages per slab.
fn kmalloc_side(machine: &Machine) -> Result<(Counts, u64), String> {
    machine.run(|mm| -> Result<(Counts, u64), String> {
        let before = counts(mm);
        let mut objects: Vec<VirtAddr> = Vec::with_capacity(OBJECTS);
        let mut failure = None;
        for _ in 0..OBJECTS {
            match mm.kmalloc(OBJECT_SIZE, Gfp::GFP_KERNEL) {
                Ok(p) => objects.push(p),
                Err(e) => {
                    failure = Some(super::explain(mm, e));
                    break;
                }
            }
        }
        let moved = delta(before, counts(mm));
        let pages_per_slab = objects
            .first()
            .and_then(|&p| mm.object_info(p))
            .and_then(|i| mm.cache(i.cache).ok().map(|c| 1u64 << c.oo().order))
            .unwrap_or(1);
        for p in objects {
            mm.kfree(p).map_err(|e| e.to_string())?;
        }
        match failure {
            Some(e) => Err(e),
            None => Ok((moved, pages_per_slab)),
        }
    })
}

/// Allocate and free the vmalloc area; what the allocation moved, and its data pages.
fn vmalloc_side(machine: &Machine) -> Result<(Counts, u64), String> {
    machine.run(|mm| -> Result<(Counts, u64), String> {
        let before = counts(mm);
        let v = mm.vmalloc(VMALLOC_SIZE).map_err(|e| e.to_string())?;
        let moved = delta(before, counts(mm));
        let mut data_pages = 0u64;
        let walked = mm.vm_area_pfns(v, |_| data_pages += 1);
        mm.vfree(v).map_err(|e| e.to_string())?;
        walked.map_err(|e| e.to_string())?;
        Ok((moved, data_pages))
    })
}
