//! The tour's vmalloc section: contrast A (the same 64 KiB through kmalloc and through
//! vmalloc on an aged machine, drawn as two trains), contrast B (the zones behind each,
//! on both profiles), then why vfree flushes lazily (a stale TLB entry, live) and the
//! guard page.

use kmemlab_mm::{Gfp, Mm, Pfn, Profile, VirtAddr};
use kmemlab_sim::{format_size, Machine, MachineConfig, SimPlatform};
use serde_json::json;

use crate::output::addr;

use super::Tour;
use crate::commands::vmalloc::{mapped_pfns, raw_pfns, runs};
use crate::MachineArgs;

const SIZE: usize = 64 << 10;

const CLAIM_A: &str = "continuity: kmalloc memory is one physical run; vmalloc memory is contiguous only virtually, its pages lie in many runs";
const CLAIM_B: &str = "zones: kmalloc comes from low memory (never HighMem); on i386 vmalloc takes HighMem pages, x86_64 has no HighMem";
/// The claims this section decides.
pub const CLAIMS: &[(&str, &str)] = &[("A", CLAIM_A), ("B", CLAIM_B)];

/// Run the section: claims A and B, and two demonstrations (a stale TLB entry, the guard
/// page) whose outcome is a fact with `holds`.
pub fn section(t: &mut Tour, machine: &Machine, args: &MachineArgs) -> Result<(), String> {
    t.section("vmalloc: virtually contiguous, physically scattered");
    let aged = age(machine, 2_000)?;
    t.line(format!(
        "First the machine is aged: a freshly booted one hands out consecutive order-0 pages, which would hide the point. \
         A mixed workload ({} kmalloc objects of 8 B..8 KiB and {} page allocations of orders 0-2, kernel and user (GFP_HIGHUSER) pages, on CPUs 0 and 1, with the machine's seed) \
         ran and freed a random half; it still holds {} pages.",
        aged.objects, aged.page_allocs, aged.pages_held
    ));
    let (k_pfns, v_pfns, k_addr, v_addr) = contrast(machine)?;
    let k_runs = runs(&k_pfns).len();
    let v_runs = runs(&v_pfns).len();
    t.line(format!(
        "kmalloc(64K) = {k_addr}: an order-4 block from the page allocator, {} pages in {k_runs} physical run.",
        k_pfns.len()
    ));
    draw_train(t, "kmalloc", &k_pfns);
    t.line(format!(
        "vmalloc(64K) = {v_addr}: {} order-0 pages mapped one by one, in {v_runs} physical run{}.",
        v_pfns.len(),
        if v_runs == 1 { "" } else { "s" }
    ));
    draw_train(t, "vmalloc", &v_pfns);
    let measured = format!(
        "kmalloc(64K): {} pages in {k_runs} run; vmalloc(64K): {} pages in {v_runs} runs",
        k_pfns.len(),
        v_pfns.len()
    );
    let contiguity_holds = match small_vmalloc_zone(machine, &v_pfns) {
        // A zone this small cannot be aged: its free pages coalesce back into a few blocks
        // between allocations, and vmalloc's bulk allocation (which, like
        // `__alloc_pages_bulk()`, takes the first zone above its low watermark) then finds
        // its pages side by side.
        Some((zone, managed)) if v_runs == 1 => {
            t.does_not_fit(
                "A",
                CLAIM_A,
                format!(
                    "{measured}: vmalloc's pages came from zone {zone}, which manages only {managed} pages, too few to scatter"
                ),
            );
            false
        }
        _ => t.claim("A", CLAIM_A, measured, k_runs == 1 && v_runs > 1),
    };
    t.fact(
        "vmalloc_contrast",
        json!({
            "aged": {"objects": aged.objects, "page_allocs": aged.page_allocs, "pages_held": aged.pages_held},
            "kmalloc": {"virt": addr(k_addr.0), "pfns": raw_pfns(&k_pfns), "phys_runs": k_runs},
            "vmalloc": {"virt": addr(v_addr.0), "pfns": raw_pfns(&v_pfns), "phys_runs": v_runs},
            "holds": contiguity_holds,
        }),
    );
    zones_on_both_profiles(t, machine, args)?;
    stale_tlb(t, machine)?;
    guard_page(t, machine)?;
    Ok(())
}

/// The zone vmalloc's pages came from and its managed pages, when it manages fewer than
/// `SMALL_ZONE_PAGES` (as the few pages of RAM above 4 GiB on a machine without a PCI hole).
fn small_vmalloc_zone(machine: &Machine, v_pfns: &[Pfn]) -> Option<(&'static str, u64)> {
    const SMALL_ZONE_PAGES: u64 = 1024;
    let mm = machine.mm();
    let page = mm.pfn_to_page(*v_pfns.first()?).ok()?;
    let zone = mm.page_zone(page);
    (zone.managed_pages < SMALL_ZONE_PAGES).then_some((zone.name(), zone.managed_pages))
}

/// What the ageing workload left.
struct Aged {
    objects: u64,
    page_allocs: u64,
    pages_held: u64,
}

/// xorshift64, seeded from the machine's seed.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

/// Allocate a mix of kmalloc objects and pages on CPUs 0 and 1, then free a random half:
/// the per-CPU and buddy free lists end up holding scattered order-0 pages, as on a
/// machine that has been up for a while.
fn age(machine: &Machine, steps: u64) -> Result<Aged, String> {
    let mut rng = Rng(machine.config().seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1);
    let mut objects = Vec::new();
    let mut pages: Vec<(u64, u32)> = Vec::new();
    let cpus = machine.config().cpus.min(2);
    for step in 0..steps {
        let cpu = (step % cpus as u64) as usize;
        let r = rng.next();
        machine
            .on_cpu(cpu, kmemlab_mm::Context::Process, |mm| {
                if r.is_multiple_of(3) {
                    let order = (r >> 8) as u32 % 3;
                    // Kernel pages, and user pages that may live in HighMem.
                    let gfp = if r & 0x10 == 0 {
                        Gfp::GFP_KERNEL
                    } else {
                        Gfp::GFP_HIGHUSER
                    };
                    if let Ok(p) = mm.alloc_pages(gfp, order) {
                        pages.push((mm.page_to_pfn(p).0, order));
                    }
                } else {
                    let size = 8 + (r >> 8) as usize % 8185;
                    if let Ok(p) = mm.kmalloc(size, Gfp::GFP_KERNEL) {
                        objects.push(p);
                    }
                }
            })
            .map_err(|e| e.to_string())?;
    }
    let (n_objects, n_pages) = (objects.len() as u64, pages.len() as u64);
    machine.run(|mm| {
        for (i, p) in std::mem::take(&mut objects).into_iter().enumerate() {
            if rng.next().is_multiple_of(2) || i % 7 == 0 {
                let _ = mm.kfree(p);
            }
        }
        let mut held = 0;
        for (pfn, order) in std::mem::take(&mut pages) {
            if rng.next().is_multiple_of(2) {
                if let Ok(page) = mm.pfn_to_page(Pfn(pfn)) {
                    let _ = mm.__free_pages(page, order);
                }
            } else {
                held += 1u64 << order;
            }
        }
        Ok(Aged {
            objects: n_objects,
            page_allocs: n_pages,
            pages_held: held,
        })
    })
}

/// The same 64 KiB through kmalloc and through vmalloc: their PFNs, page by page.
fn contrast(machine: &Machine) -> Result<(Vec<Pfn>, Vec<Pfn>, VirtAddr, VirtAddr), String> {
    machine.run(|mm| {
        let k = mm
            .kmalloc(SIZE, Gfp::GFP_KERNEL)
            .map_err(|e| e.to_string())?;
        // Each page translated through the page tables, as for vmalloc below.
        let k_pfns = mapped_pfns(mm, k, SIZE as u64)
            .map_err(|va| format!("kmalloc memory: no page table maps {va:#x}"))?;
        let v = mm.vmalloc(SIZE).map_err(|e| e.to_string())?;
        let mut v_pfns = Vec::new();
        mm.vm_area_pfns(v, |p| v_pfns.push(p))
            .map_err(|e| e.to_string())?;
        mm.kfree(k).map_err(|e| e.to_string())?;
        mm.vfree(v).map_err(|e| e.to_string())?;
        Ok((k_pfns, v_pfns, k, v))
    })
}

/// The two trains: virtual pages as one train of cars; below, where each car sits in
/// physical memory (a run of adjacent frames is one coupled train, a gap breaks it).
fn draw_train(t: &mut Tour, what: &str, pfns: &[Pfn]) {
    let cars: String = (0..pfns.len())
        .map(|i| format!("[{i:>2}]"))
        .collect::<Vec<_>>()
        .join("");
    t.line(format!("  {what:<8} virtual  {cars}"));
    let mut phys = String::new();
    for (i, p) in pfns.iter().enumerate() {
        let coupled = i > 0 && pfns[i - 1] + 1 == *p;
        phys.push_str(if i == 0 || coupled { "" } else { " " });
        phys.push_str(&format!("[{:>2}]", p.raw() % 100));
    }
    t.line(format!("  {:<8} physical {phys}", ""));
    let list: Vec<String> = runs(pfns)
        .iter()
        .map(|(p, n)| {
            if *n == 1 {
                format!("{:#x}", p.raw())
            } else {
                format!("{:#x}..{:#x}", p.raw(), (*p + (n - 1)).raw())
            }
        })
        .collect();
    t.line(format!(
        "  {:<8} (physical cars show pfn mod 100; runs: {})",
        "",
        list.join(", ")
    ));
}

/// Zones of the pages behind a vmalloc on this machine and on one of the other profile:
/// i386 takes them from HighMem (`__GFP_HIGHMEM`), x86_64 has no HighMem.
fn zones_on_both_profiles(
    t: &mut Tour,
    machine: &Machine,
    args: &MachineArgs,
) -> Result<(), String> {
    let other_profile = match machine.config().profile {
        Profile::X86_64 => Profile::I386,
        Profile::I386 => Profile::X86_64,
    };
    let other = Machine::new(MachineConfig {
        profile: other_profile,
        ram: 2 << 30,
        cpus: machine.config().cpus,
        seed: args.seed,
        ..MachineConfig::default()
    })
    .map_err(|e| e.to_string())?;
    let mut holds = true;
    let mut facts = Vec::new();
    let mut measured = Vec::new();
    for m in [machine, &other] {
        let (k_zone, v_zones) = m.run(zones_of_pair)?;
        let profile = m.config().profile;
        let v_text: Vec<String> = v_zones.iter().map(|(z, n)| format!("{n} in {z}")).collect();
        t.line(format!(
            "{profile}, {} RAM: kmalloc(64K) from {k_zone}; vmalloc(64K) pages: {}.",
            format_size(m.config().ram),
            v_text.join(", ")
        ));
        measured.push(format!(
            "{profile}: kmalloc from {k_zone}, vmalloc {}",
            v_text.join(" + ")
        ));
        let all_high = v_zones.iter().all(|(z, _)| *z == "HighMem");
        let none_high = v_zones.iter().all(|(z, _)| *z != "HighMem");
        holds &= match profile {
            Profile::I386
                if m.mm()
                    .zones()
                    .iter()
                    .any(|z| z.name() == "HighMem" && z.managed_pages > 0) =>
            {
                all_high && k_zone != "HighMem"
            }
            // No HighMem to be had (x86_64 maps all RAM directly; a small i386 machine
            // has none): every page, vmalloc's included, comes from the direct map.
            _ => {
                none_high
                    && !v_zones.is_empty()
                    && k_zone != "HighMem"
                    && m.mm()
                        .zones()
                        .iter()
                        .all(|z| z.name() != "HighMem" || z.managed_pages == 0)
            }
        };
        facts.push(
            json!({"profile": profile.name(), "kmalloc_zone": k_zone, "vmalloc_zones": v_zones}),
        );
    }
    t.line("kmalloc memory must be in the direct map, so never HighMem; vmalloc maps its pages itself, so it asks for __GFP_HIGHMEM and i386 serves it from above 896 MiB first. x86_64 maps all RAM directly and has no HighMem zone.");
    t.fact("vmalloc_zones", json!({"profiles": facts, "holds": holds}));
    t.claim("B", CLAIM_B, measured.join("; "), holds);
    Ok(())
}

/// Pages per zone, by zone name.
type ZoneCounts = Vec<(&'static str, u64)>;

fn zones_of_pair(mm: &Mm<SimPlatform>) -> Result<(&'static str, ZoneCounts), String> {
    let k = mm
        .kmalloc(SIZE, Gfp::GFP_KERNEL)
        .map_err(|e| e.to_string())?;
    let k_zone = mm
        .page_zone(mm.virt_to_page(k).map_err(|e| e.to_string())?)
        .name();
    let v = mm.vmalloc(SIZE).map_err(|e| e.to_string())?;
    let mut zones: Vec<(&'static str, u64)> = Vec::new();
    mm.vm_area_pfns(v, |p| {
        if let Ok(page) = mm.pfn_to_page(p) {
            let z = mm.page_zone(page).name();
            match zones.iter_mut().find(|(name, _)| *name == z) {
                Some((_, n)) => *n += 1,
                None => zones.push((z, 1)),
            }
        }
    })
    .map_err(|e| e.to_string())?;
    mm.kfree(k).map_err(|e| e.to_string())?;
    mm.vfree(v).map_err(|e| e.to_string())?;
    Ok((k_zone, zones))
}

/// Why the flush exists: a CPU that touched an area keeps its translation in its TLB
/// after `vfree` clears the entry, and reads the freed page through it until the purge's
/// flush reaches it; only then does the address fault.
fn stale_tlb(t: &mut Tour, machine: &Machine) -> Result<bool, String> {
    let other = if machine.config().cpus > 1 { 1 } else { 0 };
    let v = machine
        .run(|mm| mm.vmalloc(SIZE))
        .map_err(|e| e.to_string())?;
    machine
        .run(|_| machine.write(v, b"still here"))
        .map_err(|e| e.to_string())?;
    let read_on = |cpu: usize| -> Result<Result<Vec<u8>, String>, String> {
        machine
            .on_cpu(cpu, kmemlab_mm::Context::Process, |_| {
                machine.read(v, 10).map_err(|e| e.to_string())
            })
            .map_err(|e| e.to_string())
    };
    let first = read_on(other)?;
    machine.run(|mm| mm.vfree(v)).map_err(|e| e.to_string())?;
    let pte_gone = machine.walk(v).result.is_err();
    let stale = read_on(other)?;
    let flushes_before = machine.tlb_flush_stats().shootdowns;
    machine.run(|mm| mm.vm_unmap_aliases());
    let flushes = machine.tlb_flush_stats().shootdowns - flushes_before;
    let after = read_on(other)?;
    let kernel = t.take_console(machine);
    let text = |r: &Result<Vec<u8>, String>| match r {
        Ok(b) => format!("\"{}\"", String::from_utf8_lossy(b)),
        Err(e) => format!("fault: {e}"),
    };
    t.line(format!("Lazy TLB flushing, live: CPU {other} reads a fresh vmalloc area ({}), CPU 0 vfrees it; the PTE is {}.", text(&first), if pte_gone { "cleared" } else { "still there" }));
    t.line(format!("  CPU {other} reads it again before the purge: {} (its TLB still holds the old translation)", text(&stale)));
    t.line(format!(
        "  purge: {flushes} flush_tlb_kernel_range; CPU {other} reads again: {}",
        text(&after)
    ));
    for l in kernel.iter().take(4) {
        t.line(format!("  | {l}"));
    }
    let holds = first.is_ok()
        && pte_gone
        && stale.as_deref().ok() == Some(b"still here".as_slice())
        && after.is_err()
        && flushes == 1;
    t.line("  Until the flush, the freed range stays off the free tree, so nobody else can be handed it while a stale translation exists.");
    t.fact("vmalloc_stale_tlb", json!({"first": first.is_ok(), "pte_cleared": pte_gone, "stale_read": stale.is_ok(), "faults_after_purge": after.is_err(), "flushes": flushes, "holds": holds}));
    Ok(holds)
}

/// A write one byte past the end of a vmalloc area lands in its guard page: a page fault,
/// reported the kernel's way, instead of silently corrupting the next area.
fn guard_page(t: &mut Tour, machine: &Machine) -> Result<bool, String> {
    let v = machine
        .run(|mm| mm.vmalloc(SIZE))
        .map_err(|e| e.to_string())?;
    let last = VirtAddr(v.0 + SIZE as u64 - 1);
    let inside = machine.run(|_| machine.write(last, &[0x5a]));
    let past = machine.run(|_| machine.write(VirtAddr(v.0 + SIZE as u64), &[0x5a]));
    let kernel = t.take_console(machine);
    machine.run(|mm| mm.vfree(v)).map_err(|e| e.to_string())?;
    t.line(format!("vmalloc(64K) = {v}; a byte written at +0xffff {}; one byte past the end, at +0x10000, the guard page:", if inside.is_ok() { "is fine" } else { "faults (unexpected)" }));
    for l in kernel.iter().take(6) {
        t.line(format!("  | {l}"));
    }
    let holds = inside.is_ok() && past.is_err();
    t.fact("vmalloc_guard_page", json!({"inside_ok": inside.is_ok(), "past_end_faults": past.is_err(), "kernel": kernel, "holds": holds}));
    Ok(holds)
}
