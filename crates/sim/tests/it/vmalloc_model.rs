//! Model-based test of vmalloc: random `vmalloc` / `vzalloc` / `vfree` (also from hard-IRQ
//! context, deferred) / `vmap` / `vunmap` / `vm_map_ram` / `vm_unmap_ram` of 1–256 pages
//! against a reference model of the live areas and of the lazily freed ranges that have not
//! been purged yet.
//!
//! Each new area gets a pattern (one 8-byte tag per page, written through the kernel's
//! page tables), verified when the area is freed. After every step: no two live areas
//! overlap, no new area overlaps a lazily freed range unless a purge ran in that step,
//! and `check_vmalloc_trees()` passes; every 500 steps `check()`.
//! At the end everything is freed and purged and the caches are shrunk, and every page is
//! counted back exactly: free pages now + page-table pages allocated during the run (they
//! stay, as in the kernel) + slab pages gained == free pages at the start.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::Ordering::Relaxed;

use crate::fixtures::{shrink_all_caches, MachineBuilder, GIB, MIB};
use crate::model_driver::{run_model, Model as Driven, Run};
use kmemlab_mm::arch::pgtable::PgProt;
use kmemlab_mm::vmalloc::{VmFlags, VmallocError};
use kmemlab_mm::{Context, Gfp, Mm, Pfn, Profile, VirtAddr, PAGE_SIZE};
use kmemlab_sim::{Machine, SimPlatform};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

const PAGE: u64 = PAGE_SIZE as u64;

#[derive(Clone, Debug)]
enum Kind {
    Vmalloc,
    Vzalloc,
    Vmap(Vec<Pfn>),
    MapRam(Vec<Pfn>),
}

#[derive(Clone, Debug)]
struct Live {
    pages: u64,
    pattern: u8,
    kind: Kind,
}

impl Live {
    /// Bytes of virtual space the area holds: its pages, plus the guard page except for
    /// `vm_map_ram`.
    fn span(&self) -> u64 {
        match self.kind {
            Kind::MapRam(_) => self.pages * PAGE,
            _ => (self.pages + 1) * PAGE,
        }
    }
}

#[derive(Default)]
struct Model {
    /// Live areas by address.
    live: BTreeMap<u64, Live>,
    /// Freed ranges not purged yet: start -> end.
    lazy: BTreeMap<u64, u64>,
    /// Pages of the live areas.
    live_pages: u64,
    ops: HashMap<&'static str, u64>,
}

impl Model {
    fn count(&mut self, op: &'static str) {
        *self.ops.entry(op).or_default() += 1;
    }

    /// Whether `[start, end)` overlaps anything in `map` (start -> end, non-overlapping).
    fn overlaps(map: &BTreeMap<u64, u64>, start: u64, end: u64) -> Option<(u64, u64)> {
        if let Some((&s, &e)) = map.range(..end).next_back()
            && e > start
        {
            return Some((s, e));
        }
        None
    }

    fn live_overlap(&self, start: u64, end: u64) -> Option<(u64, u64)> {
        let (&s, l) = self.live.range(..end).next_back()?;
        (s + l.span() > start).then_some((s, s + l.span()))
    }
}

/// Where page `i` of an area with `pattern` keeps its 8-byte tag.
fn tag_offset(pattern: u8, i: u64) -> u64 {
    (pattern as u64 * 8 + i * 64) % PAGE
}

fn tag(pattern: u8, i: u64) -> [u8; 8] {
    [
        pattern,
        i as u8,
        (i >> 8) as u8,
        0xa5,
        !pattern,
        0x5a,
        pattern.wrapping_mul(3),
        0xc3,
    ]
}

fn write_pattern(mm: &Mm<SimPlatform>, addr: u64, l: &Live, zeroed: bool) {
    for i in 0..l.pages {
        let va = VirtAddr(addr + i * PAGE + tag_offset(l.pattern, i));
        if zeroed {
            let mut b = [0xffu8; 8];
            mm.copy_from_kernel_virt(va, &mut b).unwrap();
            assert_eq!(b, [0; 8], "vzalloc memory at {va} is not zero");
        }
        mm.copy_to_kernel_virt(va, &tag(l.pattern, i))
            .unwrap_or_else(|at| panic!("{at} of a new area is not mapped"));
    }
}

fn verify_pattern(mm: &Mm<SimPlatform>, addr: u64, l: &Live) {
    for i in 0..l.pages {
        let va = VirtAddr(addr + i * PAGE + tag_offset(l.pattern, i));
        let mut b = [0u8; 8];
        mm.copy_from_kernel_virt(va, &mut b)
            .unwrap_or_else(|at| panic!("{at} of a live area is not mapped"));
        assert_eq!(
            b,
            tag(l.pattern, i),
            "area {addr:#x} page {i}: pattern lost"
        );
    }
    // The pages behind a vmap / vm_map_ram are the ones given, and hold the tags.
    if let Kind::Vmap(pfns) | Kind::MapRam(pfns) = &l.kind {
        for (i, &pfn) in pfns.iter().enumerate() {
            assert_eq!(
                mm.vmalloc_to_pfn(VirtAddr(addr + i as u64 * PAGE)),
                Some(pfn)
            );
            let mut b = [0u8; 8];
            mm.platform()
                .ram()
                .read(pfn.phys().0 + tag_offset(l.pattern, i as u64), &mut b)
                .unwrap();
            assert_eq!(b, tag(l.pattern, i as u64));
        }
    }
}

/// What a vmalloc model run needs beyond the machine.
struct VmallocParams {
    /// Live pages at most.
    max_live_pages: u64,
    /// Whether the vmalloc space is small enough that allocations must purge on demand.
    tight: bool,
}

fn slab_pages(mm: &Mm<SimPlatform>) -> u64 {
    mm.slab_pages().total()
}

fn free_pages(mm: &Mm<SimPlatform>) -> u64 {
    mm.zones().iter().map(|z| z.free_pages()).sum()
}

fn alloc_pfns(mm: &Mm<SimPlatform>, n: u64, highmem: bool) -> Option<Vec<Pfn>> {
    let gfp = if highmem {
        Gfp::GFP_HIGHUSER
    } else {
        Gfp::GFP_KERNEL
    };
    let mut v = Vec::with_capacity(n as usize);
    for _ in 0..n {
        match mm.alloc_pages(gfp | Gfp::__GFP_NOWARN, 0) {
            Ok(p) => v.push(mm.page_to_pfn(p)),
            Err(_) => {
                free_pfns(mm, &v);
                return None;
            }
        }
    }
    Some(v)
}

fn free_pfns(mm: &Mm<SimPlatform>, pfns: &[Pfn]) {
    for &pfn in pfns {
        mm.__free_pages(mm.pfn_to_page(pfn).unwrap(), 0).unwrap();
    }
}

/// Free `addr` the way its kind wants, in process context on the current CPU.
fn free_area(mm: &Mm<SimPlatform>, addr: u64, l: &Live) {
    let va = VirtAddr(addr);
    match &l.kind {
        Kind::Vmalloc | Kind::Vzalloc => mm.vfree(va).unwrap(),
        Kind::Vmap(pfns) => {
            mm.vunmap(va).unwrap();
            free_pfns(mm, pfns);
        }
        Kind::MapRam(pfns) => {
            mm.vm_unmap_ram(va, pfns.len()).unwrap();
            free_pfns(mm, pfns);
        }
    }
    assert_eq!(
        mm.kernel_translate(addr),
        None,
        "{va} still mapped after free"
    );
}

/// A vmalloc model run: the model and what the machine held before it.
struct VmallocModel {
    model: Model,
    free0: u64,
    pt0: u64,
    slab0: u64,
    bugs0: u64,
}

impl Driven for VmallocModel {
    type Params = VmallocParams;

    fn start(_run: &Run<VmallocParams>, m: &Machine, _rng: &mut ChaCha8Rng) -> VmallocModel {
        shrink_all_caches(m);
        VmallocModel {
            model: Model::default(),
            free0: free_pages(&m.mm()),
            pt0: m.mm().nr_pagetable_pages(),
            slab0: slab_pages(&m.mm()),
            bugs0: m.mm().vmalloc_stats().bugs.load(Relaxed),
        }
    }

    /// A random allocation or free, the lazy-purge work, then the model against the
    /// kernel's counts and `check_vmalloc_trees()`.
    fn step(
        &mut self,
        run: &Run<VmallocParams>,
        m: &Machine,
        rng: &mut ChaCha8Rng,
        step: usize,
        cpu: usize,
    ) {
        let name = run.name;
        let profile = m.config().profile;
        let prot = PgProt::kernel(profile);
        let highmem = profile == Profile::I386;
        let model = &mut self.model;
        let purges0 = m.mm().vmalloc_stats().purges.load(Relaxed);
        let roll = rng.gen_range(0..100);
        let pages = rng.gen_range(1..=256u64);
        let full = model.live_pages + pages > run.params.max_live_pages;
        let mut new: Option<(u64, Live)> = None;
        let mut freed: Option<(u64, Live)> = None;
        if (roll < 55 && !full) || model.live.is_empty() {
            // Allocate.
            let pattern = rng.r#gen::<u8>();
            let highmem_pages = highmem && rng.gen_bool(0.5);
            let which = rng.gen_range(0..10);
            let r = m.on_cpu(cpu, Context::Process, |mm| {
                let (kind, r): (Kind, Result<VirtAddr, VmallocError>) = match which {
                    0..=4 => (Kind::Vmalloc, mm.vmalloc((pages * PAGE) as usize)),
                    5..=6 => (Kind::Vzalloc, mm.vzalloc((pages * PAGE) as usize)),
                    7..=8 => {
                        let pfns = alloc_pfns(mm, pages, highmem_pages)?;
                        let r = mm.vmap(&pfns, VmFlags::VM_MAP, prot);
                        if r.is_err() {
                            free_pfns(mm, &pfns);
                        }
                        (Kind::Vmap(pfns), r)
                    }
                    _ => {
                        let pfns = alloc_pfns(mm, pages, highmem_pages)?;
                        let r = mm.vm_map_ram(&pfns);
                        if r.is_err() {
                            free_pfns(mm, &pfns);
                        }
                        (Kind::MapRam(pfns), r)
                    }
                };
                let l = Live {
                    pages,
                    pattern,
                    kind,
                };
                match r {
                    Ok(va) => {
                        write_pattern(mm, va.0, &l, matches!(l.kind, Kind::Vzalloc));
                        Some(Ok((va.0, l)))
                    }
                    Err(e) => Some(Err((e, l))),
                }
            });
            match r.unwrap() {
                None => model.count("no pages for vmap"),
                Some(Ok((addr, l))) => {
                    model.count(match l.kind {
                        Kind::Vmalloc => "vmalloc",
                        Kind::Vzalloc => "vzalloc",
                        Kind::Vmap(_) => "vmap",
                        Kind::MapRam(_) => "vm_map_ram",
                    });
                    new = Some((addr, l));
                }
                Some(Err((e, l))) => {
                    // Only running out of virtual space is acceptable (small i386 area),
                    // after the allocator purged and retried.
                    assert!(
                        matches!(e, VmallocError::NoVmapSpace { .. }),
                        "{name}: step {step}: {:?} of {pages} pages failed: {e}",
                        l.kind
                    );
                    model.count("NoVmapSpace");
                }
            }
        } else {
            // Free a random live area (sometimes a vfree from hard-IRQ context, deferred).
            let idx = rng.gen_range(0..model.live.len());
            let (&addr, _) = model.live.iter().nth(idx).unwrap();
            let l = model.live.remove(&addr).unwrap();
            let from_irq = matches!(l.kind, Kind::Vmalloc | Kind::Vzalloc) && rng.gen_ratio(1, 10);
            m.on_cpu(cpu, Context::Process, |mm| verify_pattern(mm, addr, &l))
                .unwrap();
            if from_irq {
                m.on_cpu(cpu, Context::Hardirq, |mm| {
                    mm.vfree(VirtAddr(addr)).unwrap();
                    assert!(mm.deferred_vfrees(cpu) >= 1);
                })
                .unwrap();
                m.on_cpu(cpu, Context::Process, |mm| {
                    if mm.deferred_vfrees(cpu) > 0 {
                        mm.run_work();
                    }
                    assert!(mm.find_vm_area(VirtAddr(addr)).is_none());
                })
                .unwrap();
                model.count("vfree from hardirq");
            } else {
                m.on_cpu(cpu, Context::Process, |mm| free_area(mm, addr, &l))
                    .unwrap();
                model.count(match l.kind {
                    Kind::Vmalloc | Kind::Vzalloc => "vfree",
                    Kind::Vmap(_) => "vunmap",
                    Kind::MapRam(_) => "vm_unmap_ram",
                });
            }
            freed = Some((addr, l));
        }
        let purged_by_op = m.mm().vmalloc_stats().purges.load(Relaxed) != purges0;
        // The kworker: the lazy-purge drain (and any deferred vfree) runs soon after.
        m.on_cpu(cpu, Context::Process, |mm| {
            if mm.work_pending() {
                mm.run_work();
            }
        })
        .unwrap();
        let purged = m.mm().vmalloc_stats().purges.load(Relaxed) != purges0;
        if let Some((addr, l)) = new {
            let end = addr + l.span();
            if let Some((s, e)) = model.live_overlap(addr, end) {
                panic!("{name}: step {step}: new area {addr:#x}..{end:#x} overlaps live {s:#x}..{e:#x}");
            }
            // Only a purge by the allocation itself (no room: purge and retry) may
            // have handed lazily freed ranges back to it.
            if !purged_by_op && let Some((s, e)) = Model::overlaps(&model.lazy, addr, end) {
                panic!("{name}: step {step}: new area {addr:#x}..{end:#x} reuses lazily freed {s:#x}..{e:#x} before a purge");
            }
            assert!(m.mm().is_vmalloc_addr(VirtAddr(addr)));
            assert!(end <= m.mm().layout().vmalloc_end);
            if purged_by_op {
                model.count("purge by an allocation");
            }
            model.live_pages += l.pages;
            model.live.insert(addr, l);
        }
        if purged {
            model.lazy.clear();
            model.count("purge");
        }
        if let Some((addr, l)) = freed {
            model.live_pages -= l.pages;
            if !purged || m.mm().vmap_lazy_nr() > 0 {
                // Lazily freed unless the drain of this very step took it.
                model.lazy.insert(addr, addr + l.span());
            }
        }
        // The model's lazy pages match the kernel's count whenever no purge muddles it.
        if !purged {
            let lazy: u64 = model.lazy.iter().map(|(s, e)| (e - s) / PAGE).sum();
            assert_eq!(
                m.mm().vmap_lazy_nr(),
                lazy,
                "{name}: step {step}: vmap_lazy_nr"
            );
        }
        m.mm()
            .check_vmalloc_trees()
            .unwrap_or_else(|e| panic!("{name}: step {step}: check: {e}"));
    }

    /// The full `check()` and the count of vmalloc pages.
    fn check(&mut self, run: &Run<VmallocParams>, m: &Machine, step: usize) {
        let (name, model) = (run.name, &self.model);

        m.mm()
            .check()
            .unwrap_or_else(|e| panic!("{name}: step {step}: check: {e}"));
        m.mm()
            .check()
            .unwrap_or_else(|e| panic!("{name}: step {step}: check(): {e}"));
        let vm_pages: u64 = model
            .live
            .values()
            .filter(|l| matches!(l.kind, Kind::Vmalloc | Kind::Vzalloc))
            .map(|l| l.pages)
            .sum();
        assert_eq!(m.mm().vmalloc_nr_pages(), vm_pages, "{name}: step {step}");
    }

    /// Free everything, purge, shrink, drain: every page comes back.
    fn finish(self, run: &Run<VmallocParams>, m: &Machine, _rng: &mut ChaCha8Rng) {
        let name = run.name;
        let VmallocModel {
            mut model,
            free0,
            pt0,
            slab0,
            bugs0,
        } = self;
        // Free everything, purge, shrink, drain: every page comes back.
        let live: Vec<(u64, Live)> = std::mem::take(&mut model.live).into_iter().collect();
        m.run(|mm| {
            for (addr, l) in &live {
                verify_pattern(mm, *addr, l);
                free_area(mm, *addr, l);
                if mm.work_pending() {
                    mm.run_work();
                }
            }
            mm.run_work();
            mm.purge_vmap_area_lazy();
            assert_eq!(mm.vmap_lazy_nr(), 0);
            assert_eq!(mm.vmalloc_nr_pages(), 0);
        });
        m.mm().check().unwrap();
        m.mm().check().unwrap();
        assert_eq!(
            m.mm().vmalloc_stats().bugs.load(Relaxed),
            bugs0,
            "{name}: a correct workload got a kernel BUG or WARN: {:?}",
            m.take_console()
        );
        shrink_all_caches(m);
        let mm = m.mm();
        let pt = mm.nr_pagetable_pages() - pt0;
        let slab = slab_pages(&mm) as i64 - slab0 as i64;
        assert_eq!(
            free_pages(&mm) as i64 + pt as i64 + slab,
            free0 as i64,
            "{name}: pages lost: free {} now, {free0} at the start, {pt} page-table pages, slab {slab:+}",
            free_pages(&mm)
        );
        let total: u64 = model
            .ops
            .iter()
            .filter(|(k, _)| {
                !matches!(
                    **k,
                    "purge" | "purge by an allocation" | "no pages for vmap"
                )
            })
            .map(|(_, v)| v)
            .sum();
        for op in [
            "vmalloc",
            "vzalloc",
            "vfree",
            "vmap",
            "vunmap",
            "vm_map_ram",
            "vm_unmap_ram",
            "vfree from hardirq",
            "purge",
        ] {
            assert!(
                model.ops.get(op).copied().unwrap_or(0) > 0,
                "{name}: no {op}: {:?}",
                model.ops
            );
        }
        if run.params.tight {
            assert!(
                model.ops.contains_key("purge by an allocation"),
                "{name}: {:?}",
                model.ops
            );
        }
        eprintln!(
            "{name}: {total} operations, {pt} page-table pages: {:?}",
            model.ops
        );
        assert!(
            total >= run.steps as u64 * 9 / 10,
            "{name}: only {total} operations"
        );
    }
}

#[test]
fn model_x86_64_seed_1() {
    run_model::<VmallocModel>(&Run {
        name: "x86_64/512M/seed1",
        machine: MachineBuilder::new()
            .profile(Profile::X86_64)
            .ram(512 * MIB)
            .cpus(2),
        seed: 1,
        steps: 12_500,
        check_every: 500,
        params: VmallocParams {
            max_live_pages: 16_384,
            tight: false,
        },
    });
}

#[test]
fn model_x86_64_seed_2_four_cpus() {
    run_model::<VmallocModel>(&Run {
        name: "x86_64/1G/4cpu/seed2",
        machine: MachineBuilder::new()
            .profile(Profile::X86_64)
            .ram(GIB)
            .cpus(4),
        seed: 2,
        steps: 12_500,
        check_every: 500,
        params: VmallocParams {
            max_live_pages: 32_768,
            tight: false,
        },
    });
}

/// i386 with 512 MiB: all lowmem, ~496 MiB of vmalloc space.
#[test]
fn model_i386_seed_3() {
    run_model::<VmallocModel>(&Run {
        name: "i386/512M/seed3",
        machine: MachineBuilder::new()
            .profile(Profile::I386)
            .ram(512 * MIB)
            .cpus(2),
        seed: 3,
        steps: 12_500,
        check_every: 500,
        params: VmallocParams {
            max_live_pages: 16_384,
            tight: false,
        },
    });
}

/// i386 with 1 GiB: HighMem pages, and only ~112 MiB of vmalloc space for up to 64 MiB
/// live and 64 MiB lazily freed: allocations must purge on demand.
#[test]
fn model_i386_highmem_small_vmalloc_space_seed_4() {
    run_model::<VmallocModel>(&Run {
        name: "i386/1G/seed4",
        machine: MachineBuilder::new()
            .profile(Profile::I386)
            .ram(GIB)
            .cpus(2),
        seed: 4,
        steps: 12_500,
        check_every: 500,
        params: VmallocParams {
            max_live_pages: 16_384,
            tight: true,
        },
    });
}

/// The lowest aligned address in `[start, end)` where `len` bytes fit outside every range
/// of `taken` (start -> end), or `None`.
fn lowest_fit(
    taken: &BTreeMap<u64, u64>,
    start: u64,
    end: u64,
    len: u64,
    align: u64,
) -> Option<u64> {
    let align_up = |x: u64| x.checked_add(align - 1).map(|v| v & !(align - 1));
    let mut cursor = start;
    let mut gaps: Vec<(u64, u64)> = vec![];
    for (&s, &e) in taken.range(..end) {
        if e <= cursor {
            continue;
        }
        if s > cursor {
            gaps.push((cursor, s.min(end)));
        }
        cursor = cursor.max(e);
    }
    if cursor < end {
        gaps.push((cursor, end));
    }
    gaps.into_iter().find_map(|(s, e)| {
        let a = align_up(s)?;
        (a.checked_add(len)? <= e).then_some(a)
    })
}

/// The augmented free tree's search against a brute-force model: random sizes, random
/// alignments up to 4 MiB and random `[start, end)` windows inside a crowded 64 MiB
/// stretch of the vmalloc area. Every allocation must land exactly at the lowest aligned
/// fit among the space neither live nor lazily freed; when there is none, the allocator
/// purges and the lowest fit counting the lazily freed space is the answer; when there is
/// still none, it fails with `NoVmapSpace`.
#[test]
fn lowest_fit_matches_brute_force() {
    for (profile, seed) in [(Profile::X86_64, 11u64), (Profile::I386, 12)] {
        let m = MachineBuilder::new()
            .profile(profile)
            .ram(512 * MIB)
            .cpus(2)
            .seed(seed)
            .boot();
        let l = *m.mm().layout();
        let win_start = l.vmalloc_start + (16 << 20);
        let win_end = win_start + (64 << 20);
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let mut live: BTreeMap<u64, u64> = BTreeMap::new();
        let mut lazy: BTreeMap<u64, u64> = BTreeMap::new();
        let mut fits = [0u64; 3];
        m.run(|mm| {
            for step in 0..6_000 {
                let purges0 = mm.vmalloc_stats().purges.load(Relaxed);
                if rng.gen_ratio(3, 5) || live.is_empty() {
                    let pages = rng.gen_range(1..=64u64);
                    let align = 1u64 << rng.gen_range(0..=22);
                    let a = rng.gen_range(win_start..win_end) & !(PAGE - 1);
                    let b = rng.gen_range(win_start..win_end) & !(PAGE - 1);
                    let (start, end) = (a.min(b), a.max(b) + PAGE);
                    let len = (pages + 1) * PAGE;
                    let mut blocked = live.clone();
                    blocked.extend(lazy.iter());
                    let expect_now = lowest_fit(&blocked, start, end, len, align);
                    let expect_purged = lowest_fit(&live, start, end, len, align);
                    let r = mm.__vmalloc_node_range(
                        (pages * PAGE) as usize,
                        align,
                        start,
                        end,
                        Gfp::GFP_KERNEL | Gfp::__GFP_NOWARN,
                        PgProt::kernel(profile),
                        VmFlags::empty(),
                        -1,
                        kmemlab_mm::slab::CallSite::caller(),
                    );
                    let purged = mm.vmalloc_stats().purges.load(Relaxed) != purges0;
                    let what =
                        format!("step {step}: {pages}p align {align:#x} in {start:#x}..{end:#x}");
                    if align <= PAGE {
                        // Exactly the lowest fit.
                        match (&r, expect_now, expect_purged) {
                            (Ok(p), Some(x), _) => {
                                assert_eq!(p.0, x, "{what}");
                                assert!(!purged, "{what}");
                                fits[0] += 1;
                            }
                            (Ok(p), None, Some(x)) => {
                                assert_eq!(p.0, x, "{what}: after the purge");
                                assert!(purged, "{what}");
                                fits[1] += 1;
                            }
                            (Err(e), None, None) => {
                                assert!(matches!(e, VmallocError::NoVmapSpace { .. }), "{e}");
                                fits[2] += 1;
                            }
                            (r, a, b) => {
                                panic!("{what}: got {r:?}, expected {a:x?} / after a purge {b:x?}")
                            }
                        }
                    } else {
                        // The kernel searches for a block of size + align - 1 (the
                        // alignment overhead): a fit, not always the lowest one, and
                        // found whenever such a block exists.
                        match &r {
                            Ok(p) => {
                                let blocked = if purged { &live } else { &blocked };
                                assert_eq!(p.0 % align, 0, "{what}");
                                assert!(p.0 >= start && p.0 + len <= end, "{what}: {p}");
                                assert!(
                                    Model::overlaps(blocked, p.0, p.0 + len).is_none(),
                                    "{what}: {p} overlaps a live or unpurged range"
                                );
                                let lowest = if purged { expect_purged } else { expect_now };
                                assert!(lowest.is_some_and(|x| x <= p.0), "{what}");
                                fits[usize::from(purged)] += 1;
                            }
                            Err(e) => {
                                assert!(matches!(e, VmallocError::NoVmapSpace { .. }), "{e}");
                                let big = lowest_fit(&live, start, end, len + align - 1, PAGE);
                                assert!(
                                    big.is_none(),
                                    "{what}: failed though {big:x?} has room for size + align - 1"
                                );
                                fits[2] += 1;
                            }
                        }
                    }
                    if purged {
                        lazy.clear();
                    }
                    if let Ok(p) = r {
                        live.insert(p.0, p.0 + len);
                    }
                } else {
                    let idx = rng.gen_range(0..live.len());
                    let (&s, &e) = live.iter().nth(idx).unwrap();
                    live.remove(&s);
                    mm.vfree(VirtAddr(s)).unwrap();
                    lazy.insert(s, e);
                    if mm.work_pending() {
                        mm.run_work();
                    }
                    if mm.vmalloc_stats().purges.load(Relaxed) != purges0 {
                        lazy.clear();
                    }
                }
                mm.check_vmalloc_trees()
                    .unwrap_or_else(|e| panic!("step {step}: {e}"));
            }
            for &s in live.keys() {
                mm.vfree(VirtAddr(s)).unwrap();
            }
            mm.purge_vmap_area_lazy();
        });
        m.mm().check().unwrap();
        m.mm().check().unwrap();
        eprintln!(
            "{profile}: fits {} / after a purge {} / none {}",
            fits[0], fits[1], fits[2]
        );
        assert!(fits.iter().all(|&n| n > 0), "{profile}: {fits:?}");
    }
}
