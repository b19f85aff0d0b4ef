//! Model-based test of the page allocator: long random sequences of allocations and frees
//! (random orders, GFP flags, CPUs and contexts) on several machine shapes, checked
//! against a reference model of the live allocations and against the invariant checker.

use std::collections::BTreeMap;

use crate::fixtures::*;
use crate::model_driver::{run_model, Model, Run};
use kmemlab_mm::{
    Context, Gfp, MigrateType, Mm, PageAllocError, Pfn, Profile, ZoneType, PAGE_SIZE,
};
use kmemlab_sim::{Hole, Machine, SimPlatform};
use rand::Rng;
use rand_chacha::ChaCha8Rng;

/// One live allocation in the reference model.
#[derive(Clone, Debug)]
struct Live {
    order: u32,
    gfp: Gfp,
    zone: ZoneType,
    /// The byte written over the whole allocation.
    tag: u8,
}

fn random_order(rng: &mut ChaCha8Rng) -> u32 {
    match rng.gen_range(0..100) {
        0..=44 => 0,
        45..=59 => 1,
        60..=69 => 2,
        70..=79 => 3,
        80..=94 => rng.gen_range(4..=8),
        _ => rng.gen_range(9..=10),
    }
}

fn random_gfp(rng: &mut ChaCha8Rng) -> Gfp {
    let base = match rng.gen_range(0..9) {
        0 | 1 => Gfp::GFP_KERNEL,
        2 => Gfp::GFP_ATOMIC,
        3 => Gfp::GFP_NOWAIT,
        4 => Gfp::GFP_DMA,
        5 => Gfp::GFP_KERNEL | Gfp::GFP_DMA,
        6 => Gfp::GFP_DMA32 | [Gfp::GFP_KERNEL, Gfp::GFP_ATOMIC][rng.gen_range(0..2)],
        7 => Gfp::GFP_HIGHUSER_MOVABLE,
        _ => Gfp::GFP_HIGHUSER,
    };
    let mut gfp = base;
    if rng.gen_bool(0.3) {
        gfp |= Gfp::__GFP_COMP;
    }
    if rng.gen_bool(0.2) {
        gfp |= Gfp::__GFP_ZERO;
    }
    if !gfp.contains(Gfp::__GFP_MOVABLE) && rng.gen_bool(0.15) {
        gfp |= Gfp::__GFP_RECLAIMABLE;
    }
    if rng.gen_bool(0.5) {
        gfp |= Gfp::__GFP_NOWARN;
    }
    gfp
}

fn read_phys(machine: &Machine, pfn: Pfn, offset: usize, buf: &mut [u8]) {
    machine
        .mm()
        .platform()
        .ram()
        .read(pfn.phys().0 + offset as u64, buf)
        .unwrap_or_else(|| panic!("pfn {:#x} is RAM", pfn.raw()));
}

/// A failure is spurious when some allowed zone is comfortably above its high watermark
/// (plus its largest boost, the lowmem reserve and the request) and holds a free block of the order on a
/// list the request may use (ignoring HighAtomic reserves): the allocator must then have
/// succeeded.
fn assert_failure_justified(mm: &Mm<SimPlatform>, profile: Profile, gfp: Gfp, order: u32) {
    let allowed = allowed_zones(profile, gfp);
    let highest = zone_idx(mm, *allowed.last().unwrap());
    for zone in mm.zones().iter().filter(|z| allowed.contains(&z.zone_type)) {
        if zone.managed_pages == 0 {
            continue;
        }
        let snap = mm.free_area_snapshot(zone);
        // Pages on HighAtomic lists are off limits to ordinary requests, and a request
        // without reserve access also counts every HighAtomic pageblock as unusable
        // (`nr_reserved_highatomic`, an over-estimate the kernel makes on purpose).
        let highatomic_free: u64 = (0..=10).map(|o| snap.per_type[3][o] << o).sum();
        let reserved_blocks = zone
            .zone_start_pfn
            .range_to(zone.zone_end_pfn())
            .step_by(512)
            .filter(|&pfn| mm.pageblock_migratetype(pfn) == MigrateType::HighAtomic)
            .count() as u64;
        let unusable = if gfp.allows_blocking() {
            highatomic_free.max(reserved_blocks * 512)
        } else {
            highatomic_free
        };
        let usable = zone.free_pages().saturating_sub(unusable);
        let has_block = (order as usize..=10).any(|o| (0..3).any(|mt| snap.per_type[mt][o] > 0));
        // The watermarks may have carried a boost at the failure (boost_watermark(),
        // 6.6: up to max(pageblock, high * watermark_boost_factor / 10000) in zones of at
        // least four pageblocks) that kswapd has taken back since.
        let max_boost = if zone.managed_pages >= 4 * 512 {
            (zone.watermark[2] * 15_000 / 10_000).max(512)
        } else {
            0
        };
        let needed = zone.watermark[2] + max_boost + zone.lowmem_reserve[highest] + (1 << order);
        assert!(
            !(has_block && usable > needed),
            "spurious failure: order {order} {gfp:?} but zone {} has {usable} usable free pages \
             (needs {needed}) and a free block of the order",
            zone.name()
        );
    }
}

/// The reference model: the live allocations and the counts of what the run did.
struct PageModel {
    /// What boot left (to compare with at the end).
    boot: BootState,
    total_managed: u64,
    /// Live allocations by first PFN.
    live: BTreeMap<Pfn, Live>,
    /// The live allocations' PFNs, to pick one at random.
    keys: Vec<Pfn>,
    live_pages: u64,
    zone_seen: std::collections::HashMap<ZoneType, u64>,
    allocs: u64,
    fails: u64,
    frees: u64,
    zeroed: u64,
    /// Scratch buffers of the largest allocation (order 10).
    fill: Vec<u8>,
    buf: Vec<u8>,
}

impl Model for PageModel {
    type Params = ();

    fn start(_run: &Run<()>, m: &Machine, _rng: &mut ChaCha8Rng) -> PageModel {
        PageModel {
            boot: BootState::of(&m.mm()),
            total_managed: managed(&m.mm()),
            live: BTreeMap::new(),
            keys: Vec::new(),
            live_pages: 0,
            zone_seen: Default::default(),
            allocs: 0,
            fails: 0,
            frees: 0,
            zeroed: 0,
            fill: vec![0u8; PAGE_SIZE << 10],
            buf: vec![0u8; PAGE_SIZE << 10],
        }
    }

    /// An allocation (random order, GFP flags, context and API) or the free of a random
    /// live allocation, each checked against the model.
    fn step(&mut self, _run: &Run<()>, m: &Machine, rng: &mut ChaCha8Rng, step: usize, cpu: usize) {
        let profile = m.config().profile;
        let PageModel {
            total_managed,
            live,
            keys,
            live_pages,
            zone_seen,
            allocs,
            fails,
            frees,
            zeroed,
            fill,
            buf,
            ..
        } = self;
        let util = *live_pages as f64 / *total_managed as f64;
        let p_alloc = if util < 0.5 {
            0.65
        } else if util < 0.85 {
            0.5
        } else {
            0.3
        };
        if keys.is_empty() || rng.gen_bool(p_alloc) {
            let order = random_order(rng);
            let gfp = random_gfp(rng);
            let ctx = if !gfp.allows_blocking() && rng.gen_bool(0.3) {
                [Context::Softirq, Context::Hardirq][rng.gen_range(0..2)]
            } else {
                Context::Process
            };
            let api = rng.gen_range(0..4);
            let result: Result<Pfn, PageAllocError> = m
                .on_cpu(cpu, ctx, |mm| {
                    if api == 0 && !gfp.contains(Gfp::__GFP_HIGHMEM) {
                        let addr = mm.__get_free_pages(gfp, order)?;
                        Ok(mm.page_to_pfn(mm.virt_to_page(addr).expect("direct map")))
                    } else {
                        mm.alloc_pages(gfp, order).map(|p| mm.page_to_pfn(p))
                    }
                })
                .expect("CPU is free");
            let console = m.take_console();
            if std::env::var_os("MODEL_TRACE").is_some() {
                eprintln!(
                    "{step} cpu{cpu} {ctx:?} alloc {gfp:?} order {order} api {api} -> {result:?}"
                );
            }
            match result {
                Ok(pfn) => {
                    *allocs += 1;
                    let n = 1u64 << order;
                    let mm = m.mm();
                    assert!(
                        pfn.is_aligned(order),
                        "pfn {:#x} not aligned to order {order}",
                        pfn.raw()
                    );
                    if let Some((&prev, l)) = live.range(..=pfn).next_back() {
                        assert!(
                            prev + (1 << l.order) <= pfn,
                            "step {step}: {:#x}+{n} overlaps live {:#x} order {}",
                            pfn.raw(),
                            prev.raw(),
                            l.order
                        );
                    }
                    if let Some((&next, _)) = live.range(pfn..).next() {
                        assert!(
                            pfn + n <= next,
                            "step {step}: {:#x}+{n} overlaps live {:#x}",
                            pfn.raw(),
                            next.raw()
                        );
                    }
                    let page = mm.pfn_to_page(pfn).expect("allocated pfn is valid");
                    let zone = mm.page_zone(page);
                    assert!(
                        allowed_zones(profile, gfp).contains(&zone.zone_type),
                        "step {step}: {gfp:?} got a page from zone {}",
                        zone.name()
                    );
                    assert!(
                        zone.spans(pfn + (n - 1)),
                        "block crosses the end of its zone"
                    );
                    assert_eq!(page.refcount(), 1);
                    assert_eq!(page.order(), order);
                    let compound = gfp.contains(Gfp::__GFP_COMP) && order > 0;
                    assert_eq!(
                        page.is_head(),
                        compound,
                        "head flag for {gfp:?} order {order}"
                    );
                    for p in (pfn + 1).range_to(pfn + n) {
                        let tail = mm.pfn_to_page(p).expect("valid");
                        assert!(!tail.is_reserved() && !tail.is_buddy());
                        assert_eq!(tail.is_tail(), compound);
                    }
                    assert_eq!(
                        mm.page_address(page).is_some(),
                        zone.zone_type != ZoneType::HighMem,
                        "only HighMem pages lack a direct-map address"
                    );
                    let bytes = (n as usize) * PAGE_SIZE;
                    if gfp.contains(Gfp::__GFP_ZERO) {
                        *zeroed += 1;
                        read_phys(m, pfn, 0, &mut buf[..bytes]);
                        if let Some(at) = buf[..bytes].iter().position(|&b| b != 0) {
                            panic!("step {step}: __GFP_ZERO block {:#x} order {order} has byte {:#x} at {at}", pfn.raw(), buf[at]);
                        }
                    }
                    let tag = rng.gen_range(1..=255u8);
                    fill[..bytes].fill(tag);
                    mm.platform()
                        .ram()
                        .write(pfn.phys().0, &fill[..bytes])
                        .expect("RAM");
                    assert!(console.is_empty(), "unexpected console output: {console:?}");
                    *zone_seen.entry(zone.zone_type).or_default() += 1;
                    *live_pages += n;
                    keys.push(pfn);
                    live.insert(
                        pfn,
                        Live {
                            order,
                            gfp,
                            zone: zone.zone_type,
                            tag,
                        },
                    );
                }
                Err(PageAllocError::NoMemory(failure)) => {
                    *fails += 1;
                    assert_eq!((u32::from(failure.order), failure.gfp), (order, gfp));
                    assert_failure_justified(&m.mm(), profile, gfp, order);
                    let warned = console
                        .iter()
                        .any(|l| l.contains("page allocation failure"));
                    assert_eq!(
                        warned,
                        !gfp.contains(Gfp::__GFP_NOWARN),
                        "warn_alloc printed iff no __GFP_NOWARN: {console:?}"
                    );
                }
                Err(e) => panic!("step {step}: unexpected error for {gfp:?} order {order}: {e}"),
            }
        } else {
            *frees += 1;
            let pfn = keys.swap_remove(rng.gen_range(0..keys.len()));
            let l = live.remove(&pfn).expect("model has it");
            let n = 1u64 << l.order;
            *live_pages -= n;
            let mut head = [0u8; 16];
            for p in pfn.range_to(pfn + n) {
                read_phys(m, p, 0, &mut head);
                assert!(
                head.iter().all(|&b| b == l.tag),
                "step {step}: allocation {:#x} order {} ({:?}, {}) was overwritten at pfn {:#x}",
                pfn.raw(),
                l.order,
                l.gfp,
                l.zone,
                p.raw()
            );
            }
            let ctx = if rng.gen_bool(0.2) {
                Context::Hardirq
            } else {
                Context::Process
            };
            let by_address = rng.gen_bool(0.3);
            if std::env::var_os("MODEL_TRACE").is_some() {
                eprintln!(
                    "{step} cpu{cpu} {ctx:?} free {:#x} order {} {:?}",
                    pfn.raw(),
                    l.order,
                    l.gfp
                );
            }
            let freed = m
                .on_cpu(cpu, ctx, |mm| {
                    let page = mm.pfn_to_page(pfn).expect("valid");
                    match mm.page_address(page) {
                        Some(addr) if by_address => mm.free_pages(addr, l.order),
                        _ => mm.__free_pages(page, l.order),
                    }
                })
                .expect("CPU is free");
            assert_eq!(
                freed,
                Ok(()),
                "step {step}: free of {:#x} order {}",
                pfn.raw(),
                l.order
            );
            let console = m.take_console();
            assert!(console.is_empty(), "unexpected console output: {console:?}");
        }
    }

    /// `check()` passes and counts the model's pages as allocated.
    fn check(&mut self, run: &Run<()>, m: &Machine, step: usize) {
        let PageModel {
            boot,
            total_managed,
            live_pages,
            ..
        } = self;
        let (boot, total_managed, live_pages) = (&*boot, *total_managed, *live_pages);

        let report = m
            .mm()
            .check()
            .unwrap_or_else(|e| panic!("{}: step {step}: check() failed: {e}", run.name));
        assert_eq!(
            report.allocated,
            live_pages + boot.report.allocated,
            "step {step}: allocated pages vs model (plus boot's slab pages)"
        );
        assert_eq!(report.free + report.pcp + report.allocated, total_managed);
    }

    /// Free what is left on random CPUs; every page is free again, as at boot.
    fn finish(self, run: &Run<()>, m: &Machine, rng: &mut ChaCha8Rng) {
        let profile = m.config().profile;
        let ram = m.config().ram;
        let cpus = m.config().cpus;
        let PageModel {
            boot,
            mut live,
            allocs,
            fails,
            frees,
            zeroed,
            zone_seen,
            ..
        } = self;
        println!(
        "{}: {} steps: {allocs} allocations ({zeroed} zeroed), {fails} failures, {frees} frees, \
         zones used {zone_seen:?}, {} still live",
        run.name,
        run.steps,
        live.len()
    );
        assert!(
            allocs > run.steps as u64 / 3,
            "too few allocations succeeded"
        );
        assert!(zeroed > 0);
        let expect_zones: &[ZoneType] = match (profile, ram > 4 * GIB, ram > 896 * MIB) {
            (Profile::X86_64, true, _) => &[ZoneType::Dma, ZoneType::Dma32, ZoneType::Normal],
            (Profile::X86_64, false, _) => &[ZoneType::Dma, ZoneType::Dma32],
            (Profile::I386, _, true) => &[ZoneType::Dma, ZoneType::Normal, ZoneType::HighMem],
            (Profile::I386, _, false) => &[ZoneType::Dma, ZoneType::Normal],
        };
        for z in expect_zones {
            assert!(
                zone_seen.contains_key(z),
                "{}: no allocation came from {z}",
                run.name
            );
        }

        // Free everything that is left, on random CPUs, then everything must be free again.
        for (pfn, l) in std::mem::take(&mut live) {
            let cpu = rng.gen_range(0..cpus);
            m.on_cpu(cpu, Context::Process, |mm| {
                mm.__free_pages(mm.pfn_to_page(pfn).unwrap(), l.order)
            })
            .unwrap()
            .unwrap_or_else(|e| panic!("final free of {:#x}: {e}", pfn.raw()));
        }
        // HighAtomic pageblocks reserved along the way keep their blocks from merging with
        // neighbours of other types, as in the kernel, so only the counts must match boot.
        assert_all_free(m, &boot, false);
        assert!(m.take_console().is_empty());
    }
}

#[test]
fn model_x86_64_64m_legacy_hole() {
    run_model::<PageModel>(&Run {
        name: "x86_64 64M legacy hole",
        machine: MachineBuilder::new().ram(64 * MIB).cpus(2),
        seed: 1,
        steps: 25_000,
        check_every: 1,
        params: (),
    });
}

#[test]
fn model_x86_64_32m_one_cpu() {
    run_model::<PageModel>(&Run {
        name: "x86_64 32M 1 CPU",
        machine: MachineBuilder::new().ram(32 * MIB).cpus(1).no_holes(),
        seed: 2,
        steps: 25_000,
        check_every: 1,
        params: (),
    });
}

#[test]
fn model_i386_64m() {
    run_model::<PageModel>(&Run {
        name: "i386 64M",
        machine: MachineBuilder::new()
            .profile(Profile::I386)
            .ram(64 * MIB)
            .cpus(2),
        seed: 3,
        steps: 20_000,
        check_every: 1,
        params: (),
    });
}

#[test]
fn model_i386_1200m_highmem() {
    run_model::<PageModel>(&Run {
        name: "i386 1200M",
        machine: MachineBuilder::new()
            .profile(Profile::I386)
            .ram(1200 * MIB)
            .cpus(4),
        seed: 4,
        steps: 15_000,
        check_every: 1000,
        params: (),
    });
}

#[test]
fn model_x86_64_5g_pci_hole() {
    run_model::<PageModel>(&Run {
        name: "x86_64 5G PCI hole",
        machine: MachineBuilder::new()
            .ram(5 * GIB)
            .cpus(4)
            .holes(vec![Hole::LEGACY, Hole::PCI]),
        seed: 5,
        steps: 15_000,
        check_every: 1000,
        params: (),
    });
}

/// The zone each GFP zone modifier prefers on a fresh machine (plenty of memory: the
/// highest allowed populated zone serves), per the kernel's GFP_ZONE_TABLE.
#[test]
fn gfp_zone_table_prefers_the_highest_allowed_zone() {
    use ZoneType::*;
    let cases: [(Profile, u64, Vec<Hole>, Gfp, ZoneType); 9] = [
        (
            Profile::X86_64,
            5 * GIB,
            vec![Hole::PCI],
            Gfp::GFP_KERNEL,
            Normal,
        ),
        (
            Profile::X86_64,
            5 * GIB,
            vec![Hole::PCI],
            Gfp::GFP_KERNEL | Gfp::GFP_DMA32,
            Dma32,
        ),
        (
            Profile::X86_64,
            5 * GIB,
            vec![Hole::PCI],
            Gfp::GFP_KERNEL | Gfp::GFP_DMA,
            Dma,
        ),
        (
            Profile::X86_64,
            5 * GIB,
            vec![Hole::PCI],
            Gfp::GFP_HIGHUSER_MOVABLE,
            Normal,
        ),
        (Profile::X86_64, 64 * MIB, vec![], Gfp::GFP_KERNEL, Dma32),
        (Profile::I386, 1200 * MIB, vec![], Gfp::GFP_KERNEL, Normal),
        // No ZONE_DMA32 on i386: OPT_ZONE_DMA32 is ZONE_NORMAL.
        (
            Profile::I386,
            1200 * MIB,
            vec![],
            Gfp::GFP_KERNEL | Gfp::GFP_DMA32,
            Normal,
        ),
        (
            Profile::I386,
            1200 * MIB,
            vec![],
            Gfp::GFP_HIGHUSER,
            HighMem,
        ),
        (
            Profile::I386,
            64 * MIB,
            vec![],
            Gfp::GFP_HIGHUSER_MOVABLE,
            Normal,
        ),
    ];
    for (profile, ram, holes, gfp, want) in cases {
        let m = MachineBuilder::new()
            .profile(profile)
            .ram(ram)
            .cpus(1)
            .holes(holes)
            .boot();
        let got = m.run(|mm| {
            let page = mm.alloc_pages(gfp, 0).expect("fresh machine allocates");
            let z = mm.page_zone(page).zone_type;
            mm.__free_pages(page, 0).unwrap();
            z
        });
        assert_eq!(got, want, "{profile} {}M {gfp:?}", ram >> 20);
        m.mm().check().unwrap();
    }
}
