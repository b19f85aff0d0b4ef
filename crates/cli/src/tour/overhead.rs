//! Contrast F, overhead: what one kmalloc and one vmalloc of 64 KiB cost, counted (PTE
//! writes, page-table pages, TLB shootdowns and the IPIs they send) and timed on the host
//! (wall clock, averaged over a batch), and the TLB misses of touching every page once.

use std::sync::atomic::Ordering::Relaxed;
use std::time::Instant;

use kmemlab_mm::{Context, Gfp, Mm, VirtAddr, PAGE_SIZE};
use kmemlab_sim::{Machine, SimPlatform};
use serde_json::json;

use super::{second_cpu, Tour};

const SIZE: usize = 64 << 10;
/// Operations per timed batch.
const BATCH: usize = 200;

/// Counters read before and after an operation.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct Cost {
    pte_writes: u64,
    page_tables: u64,
    shootdowns: u64,
    ipis: u64,
}

fn snapshot(machine: &Machine) -> Cost {
    let mm = machine.mm();
    let s = mm.vmalloc_stats();
    let f = machine.tlb_flush_stats();
    Cost {
        pte_writes: s.pte_set.load(Relaxed) + s.pte_cleared.load(Relaxed),
        page_tables: mm.nr_pagetable_pages(),
        shootdowns: f.shootdowns,
        ipis: f.ipis,
    }
}

/// Run `f` and return its result with the counters it moved.
fn measure<R>(machine: &Machine, f: impl FnOnce() -> R) -> (R, Cost) {
    let before = snapshot(machine);
    let r = f();
    let after = snapshot(machine);
    let cost = Cost {
        pte_writes: after.pte_writes - before.pte_writes,
        page_tables: after.page_tables - before.page_tables,
        shootdowns: after.shootdowns - before.shootdowns,
        ipis: after.ipis - before.ipis,
    };
    (r, cost)
}

/// One row of the table.
struct Row {
    op: &'static str,
    cost: Cost,
    /// Host nanoseconds per operation, when wall-clock timing is on.
    ns: Option<f64>,
}

const CLAIM_F: &str = "overhead: vmalloc writes a PTE per page, pays one TLB shootdown per purge and a TLB miss per page touched; kmalloc writes no PTE and flushes nothing";
/// The claims this section decides.
pub const CLAIMS: &[(&str, &str)] = &[("F", CLAIM_F)];

/// Run the section: claim F.
pub fn section(t: &mut Tour, machine: &Machine) -> Result<(), String> {
    t.section("F. Overhead: what one operation costs");
    let mut rows = counted_ops(machine)?;
    let mut untimed = None;
    if t.wall_clock() {
        // Timing is not part of the claim: a batch that does not fit is only reported.
        match timed_ops(machine) {
            Ok(times) => {
                for (row, ns) in rows.iter_mut().zip(times) {
                    row.ns = Some(ns);
                }
            }
            Err(e) => untimed = Some(e),
        }
    }
    t.line(format!(
        "  {:<14} {:>10} {:>12} {:>11} {:>5} {:>12}",
        "operation", "PTE writes", "table pages", "shootdowns", "IPIs", "wall clock"
    ));
    let mut facts = Vec::new();
    for r in &rows {
        let time =
            r.ns.map(|ns| format!("{ns:.0} ns"))
                .unwrap_or_else(|| "-".into());
        t.line(format!(
            "  {:<14} {:>10} {:>12} {:>11} {:>5} {:>12}",
            r.op, r.cost.pte_writes, r.cost.page_tables, r.cost.shootdowns, r.cost.ipis, time
        ));
        facts.push(
            json!({"op": r.op, "pte_writes": r.cost.pte_writes, "page_tables": r.cost.page_tables,
            "shootdowns": r.cost.shootdowns, "ipis": r.cost.ipis, "wall_clock_ns": r.ns}),
        );
    }
    match &untimed {
        Some(e) => t.line(format!(
            "  (wall clock not measured: a batch of {BATCH} does not fit this machine: {e})"
        )),
        None if t.wall_clock() => t.line(format!("  (wall clock: host time per operation, the mean of a batch of {BATCH}; `cargo bench` has the careful figures)")),
        None => {}
    }
    t.line("kmalloc touches no page table: the direct map was built at boot. vmalloc writes one entry per page; vfree clears them but flushes nothing: the range waits, off the free tree, until a purge flushes every lazily freed area at once with one shootdown (here forced by vm_unmap_aliases; normally when fls(nr_cpus) x 32 MiB have piled up).");
    let touch = tlb_misses(t, machine)?;
    let get = |op: &str| {
        rows.iter()
            .find(|r| r.op == op)
            .map(|r| r.cost)
            .unwrap_or_default()
    };
    let pages = (SIZE / PAGE_SIZE) as u64;
    let holds = get("kmalloc(64K)").pte_writes == 0
        && get("kmalloc(64K)").shootdowns == 0
        && get("kfree").shootdowns == 0
        && get("vmalloc(64K)").pte_writes == pages
        && get("vfree (lazy)").pte_writes == pages
        && get("vfree (lazy)").shootdowns == 0
        && get("purge").shootdowns == 1
        && touch.vmalloc_misses == pages
        && touch.kmalloc_misses <= touch.kmalloc_leaves;
    t.fact(
        "overhead",
        json!({"ops": facts, "tlb_misses": {"kmalloc": touch.kmalloc_misses, "kmalloc_leaves": touch.kmalloc_leaves, "vmalloc": touch.vmalloc_misses}, "holds": holds}),
    );
    let time = |op: &str| {
        rows.iter()
            .find(|r| r.op == op)
            .and_then(|r| r.ns)
            .map(|ns| format!(", {ns:.0} ns"))
            .unwrap_or_default()
    };
    t.claim(
        "F",
        CLAIM_F,
        format!(
            "kmalloc(64K): {} PTE writes, {} shootdowns{}, {} TLB miss{} touching 16 pages; vmalloc(64K): {} PTE writes{}, vfree {} shootdowns, purge {} shootdown ({} IPIs), {} TLB misses",
            get("kmalloc(64K)").pte_writes,
            get("kmalloc(64K)").shootdowns,
            time("kmalloc(64K)"),
            touch.kmalloc_misses,
            if touch.kmalloc_misses == 1 { "" } else { "es" },
            get("vmalloc(64K)").pte_writes,
            time("vmalloc(64K)"),
            get("vfree (lazy)").shootdowns,
            get("purge").shootdowns,
            get("purge").ipis,
            touch.vmalloc_misses
        ),
        holds,
    );
    Ok(())
}

/// One kmalloc, kfree, vmalloc, vfree and purge, each with the counters it moved.
fn counted_ops(machine: &Machine) -> Result<Vec<Row>, String> {
    // Start from an empty lazy list, so that the purge below flushes only this area.
    machine.run(|mm| mm.vm_unmap_aliases());
    let (k, kmalloc) = measure(machine, || {
        machine.run(|mm| mm.kmalloc(SIZE, Gfp::GFP_KERNEL))
    });
    let k = k.map_err(|e| e.to_string())?;
    let (r, kfree) = measure(machine, || machine.run(|mm| mm.kfree(k)));
    r.map_err(|e| e.to_string())?;
    let (v, vmalloc) = measure(machine, || machine.run(|mm| mm.vmalloc(SIZE)));
    let v = v.map_err(|e| e.to_string())?;
    let (r, vfree) = measure(machine, || machine.run(|mm| mm.vfree(v)));
    r.map_err(|e| e.to_string())?;
    let (_, purge) = measure(machine, || machine.run(|mm| mm.vm_unmap_aliases()));
    let row = |op, cost| Row { op, cost, ns: None };
    Ok(vec![
        row("kmalloc(64K)", kmalloc),
        row("kfree", kfree),
        row("vmalloc(64K)", vmalloc),
        row("vfree (lazy)", vfree),
        row("purge", purge),
    ])
}

/// Host nanoseconds per operation, in the order of [`counted_ops`]: a batch of each.
fn timed_ops(machine: &Machine) -> Result<Vec<f64>, String> {
    machine.run(|mm| -> Result<Vec<f64>, String> {
        mm.vm_unmap_aliases();
        let per_op = |start: Instant, n: usize| start.elapsed().as_nanos() as f64 / n as f64;
        let start = Instant::now();
        let ks = batch(
            || {
                mm.kmalloc(SIZE, Gfp::GFP_KERNEL)
                    .map_err(|e| super::explain(mm, e))
            },
            |p| {
                let _ = mm.kfree(p);
            },
        )?;
        let kmalloc = per_op(start, BATCH);
        let start = Instant::now();
        for &k in &ks {
            mm.kfree(k).map_err(|e| e.to_string())?;
        }
        let kfree = per_op(start, BATCH);
        let start = Instant::now();
        let vs = batch(
            || mm.vmalloc(SIZE).map_err(|e| super::explain(mm, e)),
            |p| drop(mm.vfree(p)),
        )?;
        let vmalloc = per_op(start, BATCH);
        let start = Instant::now();
        for &v in &vs {
            mm.vfree(v).map_err(|e| e.to_string())?;
        }
        let vfree = per_op(start, BATCH);
        let start = Instant::now();
        mm.vm_unmap_aliases();
        let purge = per_op(start, 1);
        Ok(vec![kmalloc, kfree, vmalloc, vfree, purge])
    })
}

/// `BATCH` results of `alloc`; on the first error, what was taken is given back with
/// `free` and the error returned.
fn batch(
    mut alloc: impl FnMut() -> Result<VirtAddr, String>,
    free: impl Fn(VirtAddr),
) -> Result<Vec<VirtAddr>, String> {
    let mut taken = Vec::with_capacity(BATCH);
    for _ in 0..BATCH {
        match alloc() {
            Ok(p) => taken.push(p),
            Err(e) => {
                taken.into_iter().for_each(free);
                return Err(e);
            }
        }
    }
    Ok(taken)
}

/// TLB misses on the first touch of every page of a fresh buffer.
struct Touch {
    kmalloc_misses: u64,
    /// Distinct page-table leaves (4K, 2M, 4M or 1G pages) behind the kmalloc buffer.
    kmalloc_leaves: u64,
    vmalloc_misses: u64,
}

/// Touch one byte in every page of a kmalloc(64K) and of a vmalloc(64K) buffer from the
/// second CPU, and count that CPU's TLB misses (page walks).
fn tlb_misses(t: &mut Tour, machine: &Machine) -> Result<Touch, String> {
    let cpu = second_cpu(machine);
    let (k, v) = machine.run(|mm| -> Result<(VirtAddr, VirtAddr), String> {
        let k = mm
            .kmalloc(SIZE, Gfp::GFP_KERNEL)
            .map_err(|e| e.to_string())?;
        let v = mm.vmalloc(SIZE).map_err(|e| e.to_string())?;
        Ok((k, v))
    })?;
    let kmalloc_misses = touch_pages(machine, cpu, k)?;
    let vmalloc_misses = touch_pages(machine, cpu, v)?;
    let kmalloc_leaves = leaves(machine, k);
    machine.run(|mm| free_both(mm, k, v))?;
    t.line(format!(
        "Touching each of the 16 pages once from CPU {cpu}: kmalloc {kmalloc_misses} TLB miss{} (the direct map uses {} large page{} here), vmalloc {vmalloc_misses} misses (one 4K entry per page).",
        if kmalloc_misses == 1 { "" } else { "es" },
        kmalloc_leaves,
        if kmalloc_leaves == 1 { "" } else { "s" },
    ));
    Ok(Touch {
        kmalloc_misses,
        kmalloc_leaves,
        vmalloc_misses,
    })
}

fn free_both(mm: &Mm<SimPlatform>, k: VirtAddr, v: VirtAddr) -> Result<(), String> {
    mm.kfree(k).map_err(|e| e.to_string())?;
    mm.vfree(v).map_err(|e| e.to_string())
}

/// Read one byte of each page on `cpu`; the TLB misses it took.
fn touch_pages(machine: &Machine, cpu: usize, start: VirtAddr) -> Result<u64, String> {
    machine
        .on_cpu(cpu, Context::Process, |_| -> Result<u64, String> {
            let before = machine.tlb_stats(cpu).misses;
            for page in 0..(SIZE / PAGE_SIZE) as u64 {
                machine
                    .read(VirtAddr(start.0 + page * PAGE_SIZE as u64), 1)
                    .map_err(|e| e.to_string())?;
            }
            Ok(machine.tlb_stats(cpu).misses - before)
        })
        .map_err(|e| e.to_string())?
}

/// How many distinct leaf mappings cover the buffer.
fn leaves(machine: &Machine, start: VirtAddr) -> u64 {
    let mut seen: Vec<u64> = Vec::new();
    for page in 0..(SIZE / PAGE_SIZE) as u64 {
        if let Ok(tr) = machine
            .walk(VirtAddr(start.0 + page * PAGE_SIZE as u64))
            .result
        {
            let base = tr.vaddr.0 & !(tr.page_size - 1);
            if !seen.contains(&base) {
                seen.push(base);
            }
        }
    }
    seen.len() as u64
}
