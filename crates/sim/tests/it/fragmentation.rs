//! External fragmentation and migrate-type fallback: a zone whose free pages are all
//! isolated singles cannot serve order 1 (and a request that may use a lower zone falls
//! back to it), everything merges back once freed, and unmovable allocations claim
//! Movable pageblocks by the kernel's rules.

use std::collections::HashSet;
use std::sync::atomic::Ordering::Relaxed;

use crate::fixtures::*;
use kmemlab_mm::page_alloc::FailReason;
use kmemlab_mm::slab::SlabError;
use kmemlab_mm::{Gfp, MigrateType, Mm, PageAllocError, Pfn, Profile, ZoneType};
use kmemlab_sim::{Machine, SimPlatform};

/// x86_64's `pageblock_nr_pages` (the tests below boot x86_64 unless they say i386).
const PAGEBLOCK: u64 = 512;
/// i386's without PAE: `pageblock_order` is `min(HUGETLB_PAGE_ORDER, MAX_ORDER)`
/// (`include/linux/pageblock-flags.h`, 6.6.63) with `HUGETLB_PAGE_ORDER` = `PMD_SHIFT -
/// PAGE_SHIFT` and the folded PMD's `PMD_SHIFT` = `PGDIR_SHIFT` = 22: order 10.
const I386_PAGEBLOCK: u64 = 1024;

fn alloc(m: &Machine, gfp: Gfp, order: u32) -> Result<Pfn, PageAllocError> {
    m.run(|mm| mm.alloc_pages(gfp, order).map(|p| mm.page_to_pfn(p)))
}

fn free(m: &Machine, pfn: Pfn, order: u32) {
    m.run(|mm| mm.__free_pages(mm.pfn_to_page(pfn).unwrap(), order))
        .unwrap_or_else(|e| panic!("free {:#x}: {e}", pfn.raw()));
}

fn zone_of(mm: &Mm<SimPlatform>, pfn: Pfn) -> ZoneType {
    mm.zone_of_pfn(pfn).expect("pfn in a zone").zone_type
}

/// Free the even page of every pair whose odd buddy is also held, so that no freed page
/// can merge; returns the freed PFNs (they are removed from `held`).
fn free_every_other(m: &Machine, held: &mut Vec<Pfn>) -> Vec<Pfn> {
    let set: HashSet<Pfn> = held.iter().copied().collect();
    let freed: Vec<Pfn> = held
        .iter()
        .copied()
        .filter(|&p| p.is_aligned(1) && set.contains(&(p + 1)))
        .collect();
    for &p in &freed {
        free(m, p, 0);
    }
    let freed_set: HashSet<Pfn> = freed.iter().copied().collect();
    held.retain(|p| !freed_set.contains(p));
    m.mm().drain_all_pages();
    for &p in &freed {
        let mm = m.mm();
        let page = mm.pfn_to_page(p).unwrap();
        assert!(
            page.is_buddy() && page.order() == 0,
            "freed {:#x} merged or vanished",
            p.raw()
        );
    }
    freed
}

#[test]
fn fragmented_dma_zone_cannot_serve_order_1() {
    let mut m = MachineBuilder::new()
        .ram(32 * MIB)
        .cpus(1)
        .no_holes()
        .seed(7)
        .boot();
    // Without watermark boosting (sysctl.rs tests it): the unmovable fill's fallbacks
    // would boost DMA's watermarks, and kswapd, with nothing to reclaim, would leave the
    // boost in place, moving every mark this test counts against.
    m.sysctl_write("vm.watermark_boost_factor", "0").unwrap();
    let boot = BootState::of(&m.mm());
    let dma = zone_idx(&m.mm(), ZoneType::Dma);
    let gfp = Gfp::GFP_DMA | Gfp::__GFP_NOWARN;

    // Fill ZONE_DMA with single pages until the allocator refuses.
    let mut held = Vec::new();
    let err = loop {
        match alloc(&m, gfp, 0) {
            Ok(pfn) => {
                assert_eq!(zone_of(&m.mm(), pfn), ZoneType::Dma);
                held.push(pfn);
            }
            Err(e) => break e,
        }
    };
    assert!(matches!(err, PageAllocError::NoMemory(_)), "{err}");
    let mm = m.mm();
    let zone = &mm.zones()[dma];
    assert!(held.len() as u64 >= zone.managed_pages - zone.watermark[0] - 1);

    let freed = free_every_other(&m, &mut held);
    assert!(freed.len() as u64 > zone.managed_pages / 3);

    // What is left of order >= 1 in DMA sits in the part boot kept below the watermark;
    // use it up. None of it may contain a page freed above: those cannot merge.
    let freed_set: HashSet<Pfn> = freed.iter().copied().collect();
    let mut pairs = Vec::new();
    while let Ok(pfn) = alloc(&m, gfp, 1) {
        assert!(
            !freed_set.contains(&pfn) && !freed_set.contains(&(pfn + 1)),
            "order-1 block {:#x} made of isolated freed pages",
            pfn.raw()
        );
        pairs.push(pfn);
    }
    assert!(
        (pairs.len() as u64) < zone.watermark[2],
        "{} pairs",
        pairs.len()
    );

    let snap = m.mm().free_area_snapshot(zone);
    assert!(snap.nr_free[0] >= freed.len() as u64);
    assert!(
        snap.nr_free[1..].iter().all(|&n| n == 0),
        "DMA still has higher-order blocks: {:?}",
        snap.nr_free
    );
    assert!(
        zone.free_pages() > zone.watermark[2] + 2,
        "the zone is well above its watermarks: failures below are fragmentation"
    );

    for (gfp, reason) in [
        (Gfp::GFP_DMA | Gfp::__GFP_NOWARN, FailReason::CannotReclaim),
        (
            Gfp::GFP_ATOMIC | Gfp::GFP_DMA | Gfp::__GFP_NOWARN,
            FailReason::CannotReclaim,
        ),
        (
            Gfp::GFP_KERNEL | Gfp::GFP_DMA | Gfp::__GFP_NOWARN,
            FailReason::ReclaimExhausted,
        ),
    ] {
        match alloc(&m, gfp, 1) {
            Err(PageAllocError::NoMemory(summary)) => {
                let f = m.mm().last_alloc_failure().expect("the failure's report");
                assert_eq!(f.summary(), summary);
                assert_eq!(f.reason, reason, "{gfp:?}");
                assert_eq!(f.preferred, Some(ZoneType::Dma));
                let v = f.zones[dma].expect("DMA verdict");
                assert_eq!(v.largest_order, Some(0));
                assert!(
                    f.to_string()
                        .contains("no free block of order 1 (largest: order 0)"),
                    "{f}"
                );
            }
            other => panic!("{gfp:?} order 1 on fragmented DMA: {other:?}"),
        }
    }
    // Without __GFP_NOWARN the kernel's report shows the fragmented free area.
    assert!(alloc(&m, Gfp::GFP_DMA, 1).is_err());
    let console = m.take_console();
    assert!(console[0].contains("page allocation failure: order:1, mode:0x1(GFP_DMA)"));
    let free_area = console
        .iter()
        .find(|l| l.starts_with("Node 0 DMA: "))
        .unwrap();
    assert!(free_area.contains(" 0*8kB 0*16kB "), "{free_area}");

    // Order 0 still works.
    let single = alloc(&m, gfp, 0).expect("order 0 from a fragmented zone");
    free(&m, single, 0);

    for pfn in held {
        free(&m, pfn, 0);
    }
    for pfn in pairs {
        free(&m, pfn, 1);
    }
    assert_all_free(&m, &boot, true);
    let dma_boot = boot.buddyinfo[dma];
    assert!(dma_boot[10] > 0, "boot had order-10 blocks in DMA");
}

#[test]
fn order_1_falls_back_to_dma_when_dma32_is_fragmented() {
    let m = MachineBuilder::new()
        .ram(32 * MIB)
        .cpus(1)
        .no_holes()
        .seed(7)
        .boot();
    let boot = BootState::of(&m.mm());
    let dma32 = zone_idx(&m.mm(), ZoneType::Dma32);
    let gfp = Gfp::GFP_DMA32 | Gfp::__GFP_NOWARN;

    // Fill DMA32 until the allocator starts handing out DMA pages.
    let mut held = Vec::new();
    loop {
        let pfn = alloc(&m, gfp, 0).expect("DMA still has room");
        if zone_of(&m.mm(), pfn) == ZoneType::Dma {
            free(&m, pfn, 0);
            break;
        }
        held.push(pfn);
    }
    let freed = free_every_other(&m, &mut held);
    let freed_set: HashSet<Pfn> = freed.iter().copied().collect();

    // Use up DMA32's remaining order >= 1 blocks; the first order-1 request DMA32 cannot
    // serve falls back to DMA.
    let fallbacks_before = m.mm().events().zone_fallback.load(Relaxed);
    let mut pairs = Vec::new();
    let fallback = loop {
        let pfn = alloc(&m, gfp, 1).expect("order 1 from DMA32 or DMA");
        if zone_of(&m.mm(), pfn) == ZoneType::Dma {
            break pfn;
        }
        assert!(!freed_set.contains(&pfn) && !freed_set.contains(&(pfn + 1)));
        pairs.push(pfn);
    };
    let mm = m.mm();
    let z32 = &mm.zones()[dma32];
    let snap = m.mm().free_area_snapshot(z32);
    assert!(
        snap.nr_free[1..].iter().all(|&n| n == 0),
        "{:?}",
        snap.nr_free
    );
    assert!(
        z32.free_pages() > z32.watermark[2] + 2,
        "DMA32 is not short of pages"
    );

    // GFP_KERNEL (highest zone Normal, empty here: DMA32 preferred) order 1 lands in DMA,
    // order 0 still in DMA32.
    let k1 = alloc(&m, Gfp::GFP_KERNEL, 1).unwrap();
    assert_eq!(zone_of(&m.mm(), k1), ZoneType::Dma);
    let k0 = alloc(&m, Gfp::GFP_KERNEL, 0).unwrap();
    assert_eq!(zone_of(&m.mm(), k0), ZoneType::Dma32);
    assert!(
        freed_set.contains(&k0),
        "order 0 reuses an isolated free page"
    );
    assert_eq!(
        m.mm().events().zone_fallback.load(Relaxed),
        fallbacks_before + 2,
        "both order-1 requests were served by a lower zone than the preferred one"
    );

    free(&m, fallback, 1);
    free(&m, k1, 1);
    free(&m, k0, 0);
    for pfn in pairs {
        free(&m, pfn, 1);
    }
    for pfn in held {
        free(&m, pfn, 0);
    }
    assert!(m.take_console().is_empty());
    assert_all_free(&m, &boot, true);
    assert!(boot.buddyinfo[dma32][10] > 0);
}

fn pageblock_types(mm: &Mm<SimPlatform>, zt: ZoneType) -> Vec<(Pfn, MigrateType)> {
    pageblock_types_of(mm, zt, PAGEBLOCK)
}

/// The migrate type of every `pageblock`-page block of zone `zt`.
fn pageblock_types_of(
    mm: &Mm<SimPlatform>,
    zt: ZoneType,
    pageblock: u64,
) -> Vec<(Pfn, MigrateType)> {
    let zone = &mm.zones()[zone_idx(mm, zt)];
    let start = zone.zone_start_pfn.align_down(pageblock.trailing_zeros());
    start
        .range_to(zone.zone_end_pfn())
        .step_by(pageblock as usize)
        .map(|pfn| (pfn, mm.pageblock_migratetype(pfn)))
        .collect()
}

/// Pageblocks claimed by another migrate type so far, over all zones.
fn pageblock_steals(m: &Machine) -> u64 {
    m.mm()
        .zones()
        .iter()
        .map(|z| z.pageblock_steals.load(Relaxed))
        .sum()
}

#[test]
fn first_reclaimable_allocation_claims_a_whole_max_order_block() {
    let m = MachineBuilder::new()
        .ram(32 * MIB)
        .cpus(1)
        .no_holes()
        .seed(7)
        .boot();
    let boot = BootState::of(&m.mm());
    // Boot's slab caches already took Unmovable pageblocks, as a real kernel's do; nothing
    // Reclaimable exists yet, so its lists are empty.
    let before = pageblock_types(&m.mm(), ZoneType::Dma32);
    assert!(before.iter().all(|&(_, mt)| mt != MigrateType::Reclaimable));
    assert!(before.iter().any(|&(_, mt)| mt == MigrateType::Movable));
    let steals = |m: &kmemlab_sim::Machine| -> u64 {
        m.mm()
            .zones()
            .iter()
            .map(|z| {
                z.pageblock_steals
                    .load(std::sync::atomic::Ordering::Relaxed)
            })
            .sum()
    };
    let steals_before = steals(&m);

    // Movable allocations change nothing.
    let mv = alloc(&m, Gfp::GFP_HIGHUSER_MOVABLE, 0).unwrap();
    assert_eq!(pageblock_types(&m.mm(), ZoneType::Dma32), before);

    // The first reclaimable page: the Reclaimable lists are empty, so __rmqueue_fallback
    // takes the largest Movable block (order 10, two pageblocks) and, being >= pageblock
    // order, changes the type of its whole range.
    let mt = MigrateType::Reclaimable;
    let gfp = Gfp::GFP_KERNEL | Gfp::__GFP_RECLAIMABLE;
    let pfn = alloc(&m, gfp, 0).unwrap();
    assert_eq!(zone_of(&m.mm(), pfn), ZoneType::Dma32);
    let block = pfn.align_down(10);
    let changed: Vec<Pfn> = pageblock_types(&m.mm(), ZoneType::Dma32)
        .into_iter()
        .filter(|&(_, t)| t == mt)
        .map(|(p, _)| p)
        .collect();
    assert_eq!(changed, vec![block, block + PAGEBLOCK]);
    assert_eq!(steals(&m) - steals_before, 2, "two pageblocks claimed");
    // The rest of the split block is on the new type's lists.
    let snap = m
        .mm()
        .free_area_snapshot(&m.mm().zones()[zone_idx(&m.mm(), ZoneType::Dma32)]);
    let on_list: u64 = (0..=10).map(|o| snap.per_type[mt as usize][o] << o).sum();
    assert_eq!(on_list, 1023, "the split remainder moved with the block");
    free(&m, pfn, 0);
    // The claim survives the free, as in the kernel.
    assert_eq!(m.mm().pageblock_migratetype(pfn), mt);
    free(&m, mv, 0);
    assert_all_free(&m, &boot, true);
}

/// On i386 without PAE a pageblock is an order-10 block (1024 pages, 4 MiB): the first
/// reclaimable page, taking the largest Movable block by `__rmqueue_fallback()`, changes the
/// type of one pageblock, not two (`change_pageblock_range()` over
/// `1 << (current_order - pageblock_order)` blocks).
#[test]
fn i386_first_reclaimable_allocation_claims_one_1024_page_pageblock() {
    let m = MachineBuilder::new()
        .profile(Profile::I386)
        .ram(32 * MIB)
        .cpus(1)
        .no_holes()
        .seed(7)
        .boot();
    assert_eq!(m.mm().pageblock_nr_pages(), I386_PAGEBLOCK);
    let boot = BootState::of(&m.mm());
    let before = pageblock_types_of(&m.mm(), ZoneType::Normal, I386_PAGEBLOCK);
    assert!(before.iter().all(|&(_, mt)| mt != MigrateType::Reclaimable));
    let steals_before = pageblock_steals(&m);

    let mt = MigrateType::Reclaimable;
    let pfn = alloc(&m, Gfp::GFP_KERNEL | Gfp::__GFP_RECLAIMABLE, 0).unwrap();
    assert_eq!(zone_of(&m.mm(), pfn), ZoneType::Normal);
    let block = pfn.align_down(10);
    let changed: Vec<Pfn> = pageblock_types_of(&m.mm(), ZoneType::Normal, I386_PAGEBLOCK)
        .into_iter()
        .filter(|&(_, t)| t == mt)
        .map(|(p, _)| p)
        .collect();
    assert_eq!(changed, vec![block]);
    assert_eq!(
        pageblock_steals(&m) - steals_before,
        1,
        "one pageblock claimed"
    );
    // Both halves of the order-10 block are the one pageblock, and nothing beyond it.
    assert_eq!(m.mm().pageblock_migratetype(block + 512), mt);
    assert_ne!(m.mm().pageblock_migratetype(block + I386_PAGEBLOCK), mt);
    let snap = m
        .mm()
        .free_area_snapshot(&m.mm().zones()[zone_idx(&m.mm(), ZoneType::Normal)]);
    let on_list: u64 = (0..=10).map(|o| snap.per_type[mt as usize][o] << o).sum();
    assert_eq!(on_list, 1023, "the split remainder moved with the block");
    free(&m, pfn, 0);
    assert_eq!(m.mm().pageblock_migratetype(pfn), mt);
    assert_all_free(&m, &boot, true);
}

/// Leave exactly `free_pages` free pages at the start of one fully allocated Movable
/// pageblock of DMA32 (x86_64) or Normal (i386), then make one unmovable allocation: it
/// steals from that pageblock (the largest free block), and claims the pageblock only if at
/// least half of it is free or compatible (`steal_suitable_fallback`).
fn partial_pageblock_steal(free_pages: u64) -> (MigrateType, Pfn, Pfn) {
    partial_pageblock_steal_on(Profile::X86_64, free_pages)
}

/// [`partial_pageblock_steal`] on `profile`.
fn partial_pageblock_steal_on(profile: Profile, free_pages: u64) -> (MigrateType, Pfn, Pfn) {
    // The zone below Normal's fallback (DMA32 on x86_64; i386's GFP_KERNEL zone is
    // Normal, falling back to DMA), and the profile's pageblock.
    let (zt, pageblock, fill_gfp) = match profile {
        Profile::X86_64 => (ZoneType::Dma32, PAGEBLOCK, Gfp::GFP_DMA32),
        Profile::I386 => (ZoneType::Normal, I386_PAGEBLOCK, Gfp::GFP_KERNEL),
    };
    let mut m = MachineBuilder::new()
        .profile(profile)
        .ram(32 * MIB)
        .cpus(1)
        .no_holes()
        .seed(7)
        .boot();
    // Without watermark boosting (sysctl.rs tests it): the movable fill's own fallbacks
    // would boost DMA32 and stop the fill early, leaving larger free blocks elsewhere.
    m.sysctl_write("vm.watermark_boost_factor", "0").unwrap();
    let boot = BootState::of(&m.mm());
    let gfp = fill_gfp | Gfp::__GFP_MOVABLE | Gfp::__GFP_NOWARN;
    let mut held = Vec::new();
    loop {
        let pfn = alloc(&m, gfp, 0).expect("DMA still has room");
        if zone_of(&m.mm(), pfn) == ZoneType::Dma {
            free(&m, pfn, 0);
            break;
        }
        held.push(pfn);
    }
    let set: HashSet<Pfn> = held.iter().copied().collect();
    let block = pageblock_types_of(&m.mm(), zt, pageblock)
        .into_iter()
        .map(|(p, _)| p)
        .find(|&p| p.range_to(p + pageblock).all(|q| set.contains(&q)))
        .expect("a fully allocated pageblock");
    let freed = block..block + free_pages;
    for pfn in block.range_to(freed.end) {
        free(&m, pfn, 0);
    }
    m.mm().drain_all_pages();
    held.retain(|p| !freed.contains(p));
    assert_eq!(free_pages_in(&m.mm(), block, pageblock), free_pages);
    assert_eq!(m.mm().pageblock_migratetype(block), MigrateType::Movable);
    let z32 = zone_idx(&m.mm(), zt);
    let snap = m.mm().free_area_snapshot(&m.mm().zones()[z32]);
    assert!(snap.per_type[MigrateType::Unmovable as usize]
        .iter()
        .all(|&n| n == 0));

    let pfn = alloc(&m, Gfp::GFP_KERNEL, 0).unwrap();
    assert!(
        freed.contains(&pfn),
        "stole {:#x}, not from the pageblock at {:#x} with the largest free block",
        pfn.raw(),
        block.raw()
    );
    let mt = m.mm().pageblock_migratetype(block);
    // Whether or not the pageblock was claimed, its free pages moved to Unmovable.
    let snap = m.mm().free_area_snapshot(&m.mm().zones()[z32]);
    let unmovable_free: u64 = (0..=10)
        .map(|o| snap.per_type[MigrateType::Unmovable as usize][o] << o)
        .sum();
    assert_eq!(unmovable_free, free_pages - 1);
    let others: usize = pageblock_types_of(&m.mm(), zt, pageblock)
        .iter()
        .filter(|&&(p, t)| p != block && t != MigrateType::Movable)
        .count();
    assert_eq!(others, 0, "no other pageblock changed type");

    free(&m, pfn, 0);
    for p in held {
        free(&m, p, 0);
    }
    assert_all_free(&m, &boot, true);
    (mt, block, pfn)
}

#[test]
fn unmovable_steal_claims_a_pageblock_only_when_half_is_free() {
    // 300 and 256 free of 512 (the other pages movable): claimed.
    assert_eq!(partial_pageblock_steal(300).0, MigrateType::Unmovable);
    assert_eq!(partial_pageblock_steal(256).0, MigrateType::Unmovable);
    // 200 free: the block stays Movable; only its free pages were taken over.
    assert_eq!(partial_pageblock_steal(200).0, MigrateType::Movable);
    assert_eq!(partial_pageblock_steal(255).0, MigrateType::Movable);
}

/// The same rule on i386, whose pageblock is 1024 pages: "free_pages + alike_pages >=
/// (1 << (pageblock_order-1))" (6.6 `steal_suitable_fallback()`) asks for 512 free pages,
/// so 300 and 511, enough for a 512-page pageblock, no longer claim it.
#[test]
fn i386_unmovable_steal_claims_a_pageblock_only_when_512_of_1024_are_free() {
    assert_eq!(
        partial_pageblock_steal_on(Profile::I386, 600).0,
        MigrateType::Unmovable
    );
    assert_eq!(
        partial_pageblock_steal_on(Profile::I386, 512).0,
        MigrateType::Unmovable
    );
    assert_eq!(
        partial_pageblock_steal_on(Profile::I386, 511).0,
        MigrateType::Movable
    );
    assert_eq!(
        partial_pageblock_steal_on(Profile::I386, 300).0,
        MigrateType::Movable
    );
}

/// The detail of a failed allocation (each zone's verdict, why the allocator gave up,
/// what reclaim got back) is what it was when it travelled inside the error: the page
/// allocator keeps it as its record of the last failure ([`Mm::last_alloc_failure`]), read
/// here after a page allocation and a kmalloc failed on an exhausted ZONE_DMA. The
/// expected texts are the errors' own words before the detail left them (kmemlab at
/// b875329); Linux 6.6's `warn_alloc()` prints the same facts on the console.
#[test]
fn the_detail_of_a_failed_allocation_is_kept_with_its_words() {
    const PAGES: &str = "page allocation failure: order:0, mode:0x2001(GFP_DMA|__GFP_NOWARN): \
        the request may not sleep, so no direct reclaim was tried; DMA: free 255 pages, \
        watermark min 572 (no access to the reserves below it) + lowmem_reserve 0, \
        largest free block order 7";
    const KMALLOC: &str = "page allocation failure: order:0, \
        mode:0x2cc1(GFP_KERNEL|GFP_DMA|__GFP_NOWARN): reclaim made no progress after \
        MAX_RECLAIM_RETRIES (16) rounds, and nothing can be OOM-killed; DMA: free 255 pages, \
        watermark min 572 (no access to the reserves below it) + lowmem_reserve 0, \
        largest free block order 7";
    let m = MachineBuilder::new()
        .ram(64 << 20)
        .cpus(1)
        .no_holes()
        .seed(7)
        .boot();
    assert_eq!(m.mm().last_alloc_failure(), None);
    let gfp = Gfp::GFP_DMA | Gfp::__GFP_NOWARN;
    let mut held = Vec::new();
    let err = loop {
        match alloc(&m, gfp, 0) {
            Ok(pfn) => held.push(pfn),
            Err(e) => break e,
        }
    };
    let PageAllocError::NoMemory(summary) = err else {
        panic!("{err}")
    };
    let failure = m.mm().last_alloc_failure().expect("the failure's report");
    assert_eq!(failure.summary(), summary);
    assert_eq!(failure.to_string(), PAGES);
    // The error says the first part; the record the rest.
    let said = err.to_string();
    assert!(
        PAGES.starts_with(&said) && said.len() < PAGES.len(),
        "{said}"
    );
    assert_eq!(m.mm().with_alloc_failure_detail(&said).to_string(), PAGES);
    // Wherever a message carries the summary, the detail goes in its place.
    let wrapped = format!("kvmalloc: kmalloc failed ({said}) and no fallback");
    assert_eq!(
        m.mm().with_alloc_failure_detail(&wrapped).to_string(),
        format!("kvmalloc: kmalloc failed ({PAGES}) and no fallback")
    );

    // A kmalloc that needs a new slab from the exhausted zone: the slab's page
    // allocation fails after reclaim, and the record is that failure's.
    let err = m
        .run(|mm| mm.kmalloc(100, Gfp::GFP_KERNEL | Gfp::GFP_DMA | Gfp::__GFP_NOWARN))
        .unwrap_err();
    let SlabError::Alloc(PageAllocError::NoMemory(summary)) = err else {
        panic!("{err}")
    };
    let failure = m.mm().last_alloc_failure().expect("the failure's report");
    assert_eq!(failure.summary(), summary);
    assert_eq!(failure.to_string(), KMALLOC);
    assert_eq!(
        m.mm()
            .with_alloc_failure_detail(&err.to_string())
            .to_string(),
        KMALLOC
    );
    // An older summary is not completed with a newer failure's report.
    assert_eq!(m.mm().with_alloc_failure_detail(&said).to_string(), said);
    for pfn in held {
        free(&m, pfn, 0);
    }
}
