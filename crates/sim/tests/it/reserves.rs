//! Watermarks, reserves and reclaim: the kernel's formulas, how deep each kind of request
//! may dig below the min watermark, lowmem reserves, and direct reclaim from the page
//! cache with its retry rules.

use std::sync::atomic::Ordering::Relaxed;

use crate::fixtures::*;
use kmemlab_mm::addr::int_sqrt;
use kmemlab_mm::page_alloc::FailReason;
use kmemlab_mm::{Context, Gfp, Mm, PageAllocError, Pfn, Profile, Watermark, ZoneType};
use kmemlab_sim::{Hole, Machine, SimPlatform};

fn alloc(m: &Machine, gfp: Gfp, order: u32) -> Result<u64, PageAllocError> {
    m.run(|mm| mm.alloc_pages(gfp, order).map(|p| mm.page_to_pfn(p).0))
}

fn free_all(m: &Machine, held: &mut Vec<(u64, u32)>) {
    for (pfn, order) in held.drain(..) {
        m.run(|mm| mm.__free_pages(mm.pfn_to_page(Pfn(pfn)).unwrap(), order))
            .unwrap();
    }
}

/// Allocate order-0 pages with `gfp` until it fails; returns the failure.
fn drain_with(m: &Machine, gfp: Gfp, held: &mut Vec<(u64, u32)>) -> PageAllocError {
    loop {
        match alloc(m, gfp | Gfp::__GFP_NOWARN, 0) {
            Ok(pfn) => held.push((pfn, 0)),
            Err(e) => return e,
        }
    }
}

fn event(
    mm: &Mm<SimPlatform>,
    f: impl Fn(&kmemlab_mm::vmstat::VmEvents) -> &std::sync::atomic::AtomicU64,
) -> u64 {
    f(mm.events()).load(Relaxed)
}

/// `init_per_zone_wmark_min()` and friends, recomputed from the zones' managed pages.
fn assert_watermarks_follow_the_kernel_formula(mm: &Mm<SimPlatform>) {
    let zones = mm.zones();
    let is_high = |zt: ZoneType| matches!(zt, ZoneType::HighMem | ZoneType::Movable);
    let lowmem_pages: u64 = zones
        .iter()
        .filter(|z| !is_high(z.zone_type))
        .map(|z| z.managed_pages)
        .sum();
    // init_per_zone_wmark_min(): from lowmem with the watermarks still zero; then
    // khugepaged's start with THP off (start_stop_khugepaged() ->
    // set_recommended_min_free_kbytes() -> calculate_min_free_kbytes(), 6.6) once more,
    // from nr_free_buffer_pages(): lowmem above each zone's high watermark.
    let first = int_sqrt(lowmem_pages * 4 * 16).clamp(128, 262_144);
    let above_high: u64 = zones
        .iter()
        .filter(|z| !is_high(z.zone_type))
        .map(|z| {
            let m = z.managed_pages;
            let share = first / 4 * m / lowmem_pages;
            let t = (share / 4).max((m / 10_000) * 10 + (m % 10_000) * 10 / 10_000);
            m.saturating_sub(share + 2 * t)
        })
        .sum();
    let min_free_kbytes = int_sqrt(above_high * 4 * 16).clamp(128, 262_144);
    assert_eq!(mm.min_free_kbytes(), min_free_kbytes);
    let pages_min = min_free_kbytes / 4;
    let mut totalreserve = 0;
    for (i, z) in zones.iter().enumerate() {
        let m = z.managed_pages;
        let share = pages_min * m / lowmem_pages;
        let min = if is_high(z.zone_type) {
            (m / 1024).clamp(32, 128)
        } else {
            share
        };
        // mult_frac(managed, watermark_scale_factor = 10, 10000)
        let scale = (m / 10_000) * 10 + (m % 10_000) * 10 / 10_000;
        let t = (share / 4).max(scale);
        assert_eq!(
            z.watermark,
            [min, min + t, min + 2 * t],
            "zone {}",
            z.name()
        );
        let ratio = match z.zone_type {
            ZoneType::Dma | ZoneType::Dma32 => 256,
            ZoneType::Normal => 32,
            _ => 0,
        };
        for j in i + 1..zones.len() {
            let upper: u64 = zones[i + 1..=j].iter().map(|z| z.managed_pages).sum();
            let want = if ratio == 0 || m == 0 {
                0
            } else {
                upper / ratio
            };
            assert_eq!(
                z.lowmem_reserve[j],
                want,
                "{} lowmem_reserve[{j}]",
                z.name()
            );
        }
        let max_reserve = z.lowmem_reserve[i..].iter().copied().max().unwrap_or(0);
        totalreserve += (max_reserve + z.watermark[2]).min(m);
    }
    assert_eq!(mm.totalreserve_pages(), totalreserve);
}

#[test]
fn watermarks_match_the_kernel_formula() {
    // By hand, for i386 with 1200 MiB (DMA 3840, Normal 222220, HighMem 77920 managed;
    // Normal less swapper_pg_dir, the page table of the first 4 MiB and mem_map: 19
    // present 64 MiB sections of 640 KiB each, `section_map_size()`):
    // lowmem 226060 pages = 904240 kB; int_sqrt(904240 * 16) = 3803 = min_free_kbytes;
    // pages_min 950; Normal: 950 * 222220 / 226060 = 933, t = max(233, 222) -> 933/1166/1399;
    // DMA: 950 * 3840 / 226060 = 16, t = max(4, 3) -> 16/20/24.
    // khugepaged's start (THP never) recomputes from lowmem above high:
    // (3840 - 24) + (222220 - 1399) = 224637 pages = 898548 kB; int_sqrt(898548 * 16) =
    // 3791 = min_free_kbytes; pages_min 947; Normal: 947 * 222220 / 226060 = 930,
    // t = max(232, 222) -> 930/1162/1394; DMA: 947 * 3840 / 226060 = 16 -> 16/20/24;
    // HighMem: min clamp(77920/1024, 32, 128) = 76, t = max(326/4, 77) = 81 -> 76/157/238;
    // lowmem_reserve DMA = (222220/256, 300140/256) = (868, 1172), Normal = 77920/32 = 2435.
    let m = MachineBuilder::new()
        .profile(Profile::I386)
        .ram(1200 * MIB)
        .cpus(2)
        .boot();
    let mm = m.mm();
    let z: Vec<_> = mm
        .zones()
        .iter()
        .map(|z| (z.zone_type, z.managed_pages))
        .collect();
    assert_eq!(
        z[..3],
        [
            (ZoneType::Dma, 3840),
            (ZoneType::Normal, 222_220),
            (ZoneType::HighMem, 77_920)
        ]
    );
    assert_eq!(mm.min_free_kbytes(), 3791);
    assert_eq!(mm.zones()[0].watermark, [16, 20, 24]);
    assert_eq!(mm.zones()[1].watermark, [930, 1162, 1394]);
    assert_eq!(mm.zones()[2].watermark, [76, 157, 238]);
    assert_eq!(mm.zones()[0].lowmem_reserve, [0, 868, 1172, 1172]);
    assert_eq!(mm.zones()[1].lowmem_reserve, [0, 0, 2435, 2435]);
    assert_watermarks_follow_the_kernel_formula(&mm);

    for (ram, profile, holes) in [
        (32 * MIB, Profile::X86_64, vec![]),
        (64 * MIB, Profile::X86_64, vec![Hole::LEGACY]),
        (64 * MIB, Profile::I386, vec![]),
        (5 * GIB, Profile::X86_64, vec![Hole::LEGACY, Hole::PCI]),
        (3 * GIB, Profile::I386, vec![Hole::LEGACY]),
    ] {
        let m = MachineBuilder::new()
            .profile(profile)
            .ram(ram)
            .cpus(2)
            .holes(holes)
            .boot();
        assert_watermarks_follow_the_kernel_formula(&m.mm());
    }
    // A tiny machine is clamped to min_free_kbytes = 128.
    let m = MachineBuilder::new()
        .ram(16 * MIB)
        .cpus(1)
        .no_holes()
        .boot();
    assert!(m.mm().min_free_kbytes() >= 128);
    assert_watermarks_follow_the_kernel_formula(&m.mm());
}

#[test]
fn atomic_requests_dig_into_the_reserves_nowait_does_not() {
    let m = MachineBuilder::new()
        .ram(32 * MIB)
        .cpus(1)
        .no_holes()
        .seed(7)
        .boot();
    let boot = BootState::of(&m.mm());
    let mm = m.mm();
    let dma = &mm.zones()[zone_idx(&mm, ZoneType::Dma)];
    let [min, low, _high] = dma.watermark;
    let mut held = Vec::new();

    // GFP_NOWAIT: no reserves; stops exactly at the min watermark (the slow path's mark).
    let e = drain_with(&m, Gfp::GFP_NOWAIT | Gfp::GFP_DMA, &mut held);
    let PageAllocError::NoMemory(summary) = e else {
        panic!("{e}")
    };
    let f = m.mm().last_alloc_failure().expect("the failure's report");
    assert_eq!(f.summary(), summary);
    assert_eq!(f.reason, FailReason::CannotReclaim);
    assert_eq!(dma.free_pages(), min);
    assert!(min < low);
    assert_eq!(
        m.mm().events().allocstall_total(),
        0,
        "no reclaim attempted"
    );
    assert_eq!(event(&m.mm(), |e| &e.alloc_reserve), 0);

    // __GFP_HIGH without the non-blocking bonus (__GFP_NOMEMALLOC): down to min - min/2.
    let half = min - min / 2;
    let before = held.len();
    drain_with(
        &m,
        Gfp::GFP_ATOMIC | Gfp::GFP_DMA | Gfp::__GFP_NOMEMALLOC,
        &mut held,
    );
    assert_eq!(dma.free_pages(), half);
    assert_eq!(held.len() - before, (min - half) as usize);

    // GFP_ATOMIC: a further quarter, min - min/2 - (min - min/2)/4 (37.5 % of min).
    let atomic_floor = half - half / 4;
    let before = held.len();
    drain_with(&m, Gfp::GFP_ATOMIC | Gfp::GFP_DMA, &mut held);
    assert_eq!(dma.free_pages(), atomic_floor);
    assert_eq!(held.len() - before, (half - atomic_floor) as usize);
    assert_eq!(
        event(&m.mm(), |e| &e.alloc_reserve),
        min - atomic_floor,
        "every allocation below min is counted as reserve use"
    );
    // The same from hard-IRQ context.
    let r = m
        .on_cpu(0, Context::Hardirq, |mm| {
            mm.alloc_pages(Gfp::GFP_ATOMIC | Gfp::GFP_DMA | Gfp::__GFP_NOWARN, 0)
                .map(|_| ())
        })
        .unwrap();
    assert!(matches!(r, Err(PageAllocError::NoMemory(_))));
    // GFP_NOWAIT still fails, and so would anything else short of the reserves.
    assert!(alloc(&m, Gfp::GFP_NOWAIT | Gfp::GFP_DMA | Gfp::__GFP_NOWARN, 0).is_err());

    // Freeing one page lets exactly one atomic allocation through again.
    let (pfn, _) = held.pop().unwrap();
    m.run(|mm| mm.__free_pages(mm.pfn_to_page(Pfn(pfn)).unwrap(), 0))
        .unwrap();
    m.mm().drain_all_pages();
    held.push((alloc(&m, Gfp::GFP_ATOMIC | Gfp::GFP_DMA, 0).unwrap(), 0));
    assert!(alloc(&m, Gfp::GFP_ATOMIC | Gfp::GFP_DMA | Gfp::__GFP_NOWARN, 0).is_err());

    free_all(&m, &mut held);
    assert!(m.take_console().is_empty());
    assert_all_free(&m, &boot, true);
}

#[test]
fn lower_zones_keep_their_lowmem_reserve_from_fallbacks() {
    let m = MachineBuilder::new()
        .ram(32 * MIB)
        .cpus(1)
        .no_holes()
        .seed(7)
        .boot();
    let boot = BootState::of(&m.mm());
    let mm = m.mm();
    let (dma, dma32) = (zone_idx(&mm, ZoneType::Dma), zone_idx(&mm, ZoneType::Dma32));
    let mut held = Vec::new();
    // GFP_NOWAIT | GFP_DMA32 may fall back to DMA, but must leave it min + lowmem_reserve[DMA32].
    drain_with(&m, Gfp::GFP_NOWAIT | Gfp::GFP_DMA32, &mut held);
    let z = &mm.zones()[dma];
    assert!(z.lowmem_reserve[dma32] > 0);
    assert_eq!(z.free_pages(), z.watermark[0] + z.lowmem_reserve[dma32]);
    assert_eq!(
        mm.zones()[dma32].free_pages(),
        mm.zones()[dma32].watermark[0]
    );
    // A DMA request is not held back by that reserve.
    let before = held.len();
    drain_with(&m, Gfp::GFP_NOWAIT | Gfp::GFP_DMA, &mut held);
    assert_eq!(held.len() - before, z.lowmem_reserve[dma32] as usize);
    assert_eq!(z.free_pages(), z.watermark[0]);
    free_all(&m, &mut held);
    assert_all_free(&m, &boot, true);
}

#[test]
fn direct_reclaim_shrinks_the_page_cache() {
    let m = MachineBuilder::new()
        .ram(32 * MIB)
        .cpus(1)
        .no_holes()
        .seed(7)
        .boot();
    let boot = BootState::of(&m.mm());
    let managed = managed(&m.mm());
    // All in one call on CPU 0: kswapd, woken by the fill, only runs once it returns.
    let mut held = m.run(|_| direct_reclaim_below_min(&m, managed));
    // kswapd ran when the CPU left the kernel and trimmed the cache back to high.
    assert!(event(&m.mm(), |e| &e.pgsteal_kswapd) > 0);
    assert!(m.mm().pgdat_balanced(0, 3));
    free_all(&m, &mut held);
    m.run(|mm| m.page_cache().drop_all(mm));
    assert_all_free(&m, &boot, false);
}

fn direct_reclaim_below_min(m: &Machine, managed: u64) -> Vec<(u64, u32)> {
    // The fill does not reclaim its own pages: it stops quietly at the min watermark.
    let added = m.run(|mm| m.page_cache().fill(mm, managed));
    let filled = m.page_cache().len();
    assert!(added < managed && filled == added);
    assert!(
        filled > managed * 9 / 10,
        "page cache holds {filled} of {managed}"
    );
    let mm = m.mm();
    let zones: Vec<_> = mm.zones().iter().filter(|z| z.managed_pages > 0).collect();
    for z in &zones {
        // low_wmark_pages(): the fill's fallbacks may have boosted it.
        assert!(
            z.free_pages() < z.wmark(Watermark::Low),
            "{} is below low",
            z.name()
        );
    }

    // GFP_NOWAIT: below the low watermark, fails without reclaiming.
    let (stall, steal) = (
        m.mm().events().allocstall_total(),
        event(&m.mm(), |e| &e.pgsteal_direct),
    );
    let mut held = Vec::new();
    let mut nowait_ok = 0;
    let err = loop {
        match alloc(m, Gfp::GFP_NOWAIT | Gfp::__GFP_NOWARN, 0) {
            Ok(pfn) => {
                nowait_ok += 1;
                held.push((pfn, 0));
            }
            Err(e) => break e,
        }
    };
    assert!(
        nowait_ok < 200,
        "NOWAIT only reaches down to min: {nowait_ok}"
    );
    let PageAllocError::NoMemory(summary) = err else {
        panic!("{err}")
    };
    let f = m.mm().last_alloc_failure().expect("the failure's report");
    assert_eq!(f.summary(), summary);
    assert_eq!((f.reason, f.reclaimed), (FailReason::CannotReclaim, 0));
    assert_eq!(m.mm().events().allocstall_total(), stall);
    assert_eq!(event(&m.mm(), |e| &e.pgsteal_direct), steal);
    assert_eq!(m.page_cache().len(), filled);

    // GFP_KERNEL: reclaims from the page cache and succeeds, page after page.
    for _ in 0..500 {
        held.push((
            alloc(m, Gfp::GFP_KERNEL, 0).expect("GFP_KERNEL reclaims"),
            0,
        ));
    }
    let stolen = event(&m.mm(), |e| &e.pgsteal_direct) - steal;
    assert!(m.mm().events().allocstall_total() > stall);
    assert!(stolen >= 500, "pgsteal_direct {stolen}");
    assert_eq!(m.page_cache().len(), filled - stolen);
    assert!(event(&m.mm(), |e| &e.pgscan_direct) >= stolen);
    // __GFP_NORETRY: one round of reclaim is plenty for one page.
    held.push((
        alloc(m, Gfp::GFP_KERNEL | Gfp::__GFP_NORETRY, 0).unwrap(),
        0,
    ));
    // ...and orders 1-3 (not costly) as well.
    for order in 1..=3 {
        held.push((
            alloc(m, Gfp::GFP_KERNEL, order).expect("small order reclaims"),
            order,
        ));
    }
    assert!(m.take_console().is_empty());
    m.mm().check().unwrap();
    held
}

#[test]
fn costly_orders_give_up_early_unless_told_to_retry() {
    let m = MachineBuilder::new()
        .ram(32 * MIB)
        .cpus(1)
        .no_holes()
        .seed(7)
        .boot();
    let boot = BootState::of(&m.mm());
    let managed = managed(&m.mm());
    // All in one call on CPU 0, so that kswapd (woken by the fill) stays out of it.
    m.run(|_| costly_orders_below_min(&m, managed));
    m.run(|mm| m.page_cache().drop_all(mm));
    assert_all_free(&m, &boot, false);
}

fn costly_orders_below_min(m: &Machine, managed: u64) {
    m.run(|mm| m.page_cache().fill(mm, managed));
    let cache = m.page_cache().len();

    let try_order = |gfp: Gfp| match alloc(m, gfp | Gfp::__GFP_NOWARN, 10) {
        Err(PageAllocError::NoMemory(summary)) => {
            let f = m.mm().last_alloc_failure().expect("the failure's report");
            assert_eq!(f.summary(), summary);
            Some(f)
        }
        Ok(pfn) => {
            m.run(|mm| mm.__free_pages(mm.pfn_to_page(Pfn(pfn)).unwrap(), 10))
                .unwrap();
            None
        }
        Err(e) => panic!("{e}"),
    };
    // Costly order without __GFP_RETRY_MAYFAIL: one round of reclaim, then give up.
    let f = try_order(Gfp::GFP_KERNEL).expect("a 4 MiB block does not come free from one round");
    assert_eq!(f.reason, FailReason::CostlyOrder);
    assert!(
        f.reclaimed > 0 && f.reclaimed <= 32,
        "reclaimed {}",
        f.reclaimed
    );
    // __GFP_NORETRY stops after that round too, and says so.
    let f = try_order(Gfp::GFP_KERNEL | Gfp::__GFP_NORETRY).unwrap();
    assert_eq!(f.reason, FailReason::NoRetry);
    // GFP_NOWAIT never reclaims.
    let f = try_order(Gfp::GFP_NOWAIT).unwrap();
    assert_eq!((f.reason, f.reclaimed), (FailReason::CannotReclaim, 0));
    // __GFP_RETRY_MAYFAIL passes the costly-order cut-off, but should_reclaim_retry()
    // sees no order-10 block even counting everything reclaimable, and without
    // compaction there is no other retry: the kernel gives up the same way.
    let before = m.page_cache().len();
    let f = try_order(Gfp::GFP_KERNEL | Gfp::__GFP_RETRY_MAYFAIL).unwrap();
    assert_eq!(f.reason, FailReason::ReclaimExhausted);
    assert!(f.reclaimed > 0);
    assert_eq!(before - m.page_cache().len(), f.reclaimed);
    assert!(m.page_cache().len() < cache);
    assert!(m.take_console().is_empty());
}

#[test]
fn nofail_dips_into_the_reserves_when_nothing_can_be_reclaimed() {
    let m = MachineBuilder::new()
        .ram(32 * MIB)
        .cpus(1)
        .no_holes()
        .seed(7)
        .boot();
    let boot = BootState::of(&m.mm());
    let mut held = Vec::new();
    // No page cache: GFP_KERNEL fills memory down to min, then fails after retrying.
    let e = drain_with(&m, Gfp::GFP_KERNEL, &mut held);
    let PageAllocError::NoMemory(summary) = e else {
        panic!("{e}")
    };
    let f = m.mm().last_alloc_failure().expect("the failure's report");
    assert_eq!(f.summary(), summary);
    assert_eq!(f.reason, FailReason::ReclaimExhausted);
    for z in m.mm().zones().iter().filter(|z| z.managed_pages > 0) {
        assert!(
            z.free_pages() <= z.watermark[0] + z.lowmem_reserve[2],
            "{}",
            z.name()
        );
    }
    // __GFP_NOFAIL gets a page from below min (ALLOC_MIN_RESERVE), as the kernel's
    // __alloc_pages_cpuset_fallback does.
    let reserve_uses = event(&m.mm(), |e| &e.alloc_reserve);
    let pfn = alloc(&m, Gfp::GFP_KERNEL | Gfp::__GFP_NOFAIL, 0).expect("NOFAIL succeeds");
    held.push((pfn, 0));
    assert!(event(&m.mm(), |e| &e.alloc_reserve) > reserve_uses);
    free_all(&m, &mut held);
    assert!(m.take_console().is_empty());
    assert_all_free(&m, &boot, true);
}
