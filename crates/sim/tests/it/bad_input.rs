//! Callers' mistakes: each is a clear error (with the kernel's report where the kernel
//! prints one), never a panic, and leaves the allocator exactly as it was.

use crate::fixtures::*;
use kmemlab_mm::gfp::GfpError;
use kmemlab_mm::page_alloc::check::CheckReport;
use kmemlab_mm::{FreeError, Gfp, Mm, PageAllocError, Pfn, Profile, VirtAddr};
use kmemlab_sim::{Hole, Machine, SimPlatform};

fn counts(mm: &Mm<SimPlatform>) -> (CheckReport, Vec<u64>) {
    let report = mm.check().unwrap_or_else(|e| panic!("check(): {e}"));
    let free = mm.zones().iter().map(|z| z.free_pages()).collect();
    (report, free)
}

fn bad_page_reported(machine: &Machine, pfn: Pfn) {
    let console = machine.take_console();
    let wanted = format!(
        "BUG: Bad page state in process kmemlab/0  pfn:{:05x}",
        pfn.raw()
    );
    assert!(
        console.first().is_some_and(|l| *l == wanted),
        "expected {wanted:?}, console: {console:?}"
    );
    assert!(
        console
            .iter()
            .any(|l| l.starts_with("page dumped because: ")),
        "no dump_page reason: {console:?}"
    );
}

#[test]
fn order_above_max_is_refused_with_a_warning() {
    let m = MachineBuilder::new()
        .ram(32 * MIB)
        .cpus(2)
        .no_holes()
        .seed(7)
        .boot();
    let before = counts(&m.mm());
    let warns = m
        .mm()
        .events()
        .warn
        .load(std::sync::atomic::Ordering::Relaxed);
    for order in [11, 12, 31, u32::MAX] {
        let r = m.run(|mm| mm.alloc_pages(Gfp::GFP_KERNEL, order).map(|_| ()));
        assert_eq!(r, Err(PageAllocError::OrderTooLarge(order)));
        // 6.6 __alloc_pages(): WARN_ON_ONCE_GFP(order > MAX_ORDER, gfp) at
        // mm/page_alloc.c:4410: the first time only, then silently refused.
        let console = m.take_console();
        let expected = if order == 11 {
            warn_lines(
                0,
                100,
                "kmemlab/0",
                "Not tainted",
                None,
                "mm/page_alloc.c:4410 __alloc_pages",
            )
        } else {
            Vec::new()
        };
        assert_eq!(console, expected, "order {order}");
        // __GFP_NOWARN: same error, nothing printed.
        let r = m.run(|mm| {
            mm.alloc_pages(Gfp::GFP_KERNEL | Gfp::__GFP_NOWARN, order)
                .map(|_| ())
        });
        assert_eq!(r, Err(PageAllocError::OrderTooLarge(order)));
        assert!(m.take_console().is_empty());
        let r = m.run(|mm| mm.__get_free_pages(Gfp::GFP_ATOMIC | Gfp::__GFP_NOWARN, order));
        assert_eq!(r, Err(PageAllocError::OrderTooLarge(order)));
    }
    assert_eq!(
        m.mm()
            .events()
            .warn
            .load(std::sync::atomic::Ordering::Relaxed),
        warns + 12
    );
    assert_eq!(counts(&m.mm()), before);
}

/// 6.6 `rmqueue()`: `WARN_ON_ONCE((gfp_flags & __GFP_NOFAIL) && (order > 1))` at
/// mm/page_alloc.c:2784 (6.6.63): the first such request prints it, later ones do not,
/// and every one is served; order 1 with `__GFP_NOFAIL` and order 2 without are quiet.
#[test]
fn nofail_above_order_one_warns_once_and_is_served() {
    let m = MachineBuilder::new()
        .ram(32 * MIB)
        .cpus(1)
        .no_holes()
        .seed(7)
        .boot();
    let alloc_free = |gfp: Gfp, order: u32| {
        m.run(|mm| {
            let page = mm.alloc_pages(gfp, order).expect("served");
            mm.__free_pages(page, order).expect("freed");
        })
    };
    alloc_free(Gfp::GFP_KERNEL | Gfp::__GFP_NOFAIL, 1);
    alloc_free(Gfp::GFP_KERNEL, 2);
    assert!(m.take_console().is_empty());
    alloc_free(Gfp::GFP_KERNEL | Gfp::__GFP_NOFAIL, 2);
    assert_eq!(
        m.take_console(),
        warn_lines(
            0,
            100,
            "kmemlab/0",
            "Not tainted",
            None,
            "mm/page_alloc.c:2784 rmqueue",
        )
    );
    for order in [2, 3, 10] {
        alloc_free(Gfp::GFP_KERNEL | Gfp::__GFP_NOFAIL, order);
    }
    assert!(m.take_console().is_empty());
    m.mm().check().expect("check() passes");
}

#[test]
fn invalid_gfp_combinations_are_refused() {
    let m = MachineBuilder::new()
        .ram(32 * MIB)
        .cpus(1)
        .no_holes()
        .seed(7)
        .boot();
    let before = counts(&m.mm());
    let zone_bad = [
        Gfp::GFP_KERNEL | Gfp::__GFP_DMA | Gfp::__GFP_HIGHMEM,
        Gfp::GFP_KERNEL | Gfp::__GFP_DMA | Gfp::__GFP_DMA32,
        Gfp::GFP_ATOMIC | Gfp::__GFP_DMA32 | Gfp::__GFP_HIGHMEM,
        Gfp::GFP_HIGHUSER_MOVABLE | Gfp::__GFP_DMA,
    ];
    for gfp in zone_bad {
        for order in [0, 3] {
            let r = m.run(|mm| mm.alloc_pages(gfp, order).map(|_| ()));
            assert_eq!(
                r,
                Err(PageAllocError::BadGfp(GfpError::BadZoneCombination(gfp))),
                "{gfp:?}"
            );
            let msg = r.unwrap_err().to_string();
            assert!(msg.contains("GFP_ZONE_BAD"), "{msg}");
        }
    }
    let mt_bad = Gfp::GFP_KERNEL | Gfp::__GFP_MOVABLE | Gfp::__GFP_RECLAIMABLE;
    let r = m.run(|mm| mm.alloc_pages(mt_bad, 0).map(|_| ()));
    assert_eq!(
        r,
        Err(PageAllocError::BadGfp(GfpError::BadMigrateType(mt_bad)))
    );
    let r = m.run(|mm| mm.__get_free_pages(mt_bad, 1));
    assert_eq!(
        r,
        Err(PageAllocError::BadGfp(GfpError::BadMigrateType(mt_bad)))
    );
    assert_eq!(counts(&m.mm()), before);
}

#[test]
fn get_free_pages_refuses_highmem() {
    for profile in [Profile::X86_64, Profile::I386] {
        let m = MachineBuilder::new()
            .profile(profile)
            .ram(1200 * MIB)
            .cpus(1)
            .no_holes()
            .boot();
        let before = counts(&m.mm());
        for gfp in [
            Gfp::GFP_HIGHUSER,
            Gfp::GFP_HIGHUSER_MOVABLE,
            Gfp::__GFP_HIGHMEM,
        ] {
            assert_eq!(
                m.run(|mm| mm.__get_free_pages(gfp, 0)),
                Err(PageAllocError::HighMemHasNoAddress)
            );
            assert_eq!(
                m.run(|mm| mm.get_zeroed_page(gfp)),
                Err(PageAllocError::HighMemHasNoAddress)
            );
        }
        assert_eq!(counts(&m.mm()), before, "{profile}");
    }
}

#[test]
fn double_free_is_reported_and_refused() {
    let m = MachineBuilder::new()
        .ram(32 * MIB)
        .cpus(2)
        .no_holes()
        .seed(7)
        .boot();
    let boot = BootState::of(&m.mm());
    for (order, drain) in [(0, false), (0, true), (3, false), (5, false), (10, true)] {
        let pfn = m.run(|mm| {
            let page = mm.alloc_pages(Gfp::GFP_KERNEL, order).unwrap();
            mm.__free_pages(page, order).unwrap();
            mm.page_to_pfn(page)
        });
        if drain {
            m.mm().drain_all_pages();
        }
        let before = counts(&m.mm());
        let bugs = m
            .mm()
            .events()
            .bug_bad_page
            .load(std::sync::atomic::Ordering::Relaxed);
        let r = m.run(|mm| mm.__free_pages(mm.pfn_to_page(pfn).unwrap(), order));
        assert_eq!(r, Err(FreeError::AlreadyFree(pfn)), "order {order}");
        bad_page_reported(&m, pfn);
        assert_eq!(
            m.mm()
                .events()
                .bug_bad_page
                .load(std::sync::atomic::Ordering::Relaxed),
            bugs + 1
        );
        assert_eq!(counts(&m.mm()), before, "double free changed the allocator");
    }
    assert_all_free(&m, &boot, true);
}

/// 6.6 `__free_pages()` (mm/page_alloc.c:4514, 6.6.63) when `put_page_testzero()` does
/// not take the last reference: the free drops one and reports nothing; a block that is no
/// compound head gives back all but its first page (`free_the_page(page + (1 << order),
/// order)` for each lower order), which the last holder's free then takes alone; a compound
/// page stays whole. (kmemlab reported `Bad page state` for a count above 1.)
#[test]
fn a_free_that_is_not_the_last_reference_only_drops_it() {
    let m = MachineBuilder::new()
        .ram(32 * MIB)
        .cpus(1)
        .no_holes()
        .seed(7)
        .boot();
    let boot = BootState::of(&m.mm());
    // Another holder's reference (`get_page()`), written into the descriptor's refcount.
    let set_refcount = |pfn: Pfn, n: u32| {
        let at = m.run(|mm| {
            mm.mem_map_phys().0
                + (pfn - mm.mem_map().base_pfn) * std::mem::size_of::<kmemlab_mm::Page>() as u64
                + 8
        });
        m.mm()
            .platform()
            .ram()
            .write(at, &n.to_le_bytes())
            .expect("RAM");
    };
    let page = |pfn: Pfn| {
        m.run(|mm| {
            let p = mm.pfn_to_page(pfn).unwrap();
            (p.refcount(), p.order())
        })
    };
    let free =
        |pfn: Pfn, order: u32| m.run(|mm| mm.__free_pages(mm.pfn_to_page(pfn).unwrap(), order));
    let allocated = || counts(&m.mm()).0.allocated;
    for (gfp, order) in [
        (Gfp::GFP_KERNEL, 0),
        (Gfp::GFP_KERNEL, 3),
        (Gfp::GFP_KERNEL | Gfp::__GFP_COMP, 3),
        (Gfp::GFP_KERNEL, 10),
    ] {
        let compound = gfp.contains(Gfp::__GFP_COMP);
        let head = m.run(|mm| mm.page_to_pfn(mm.alloc_pages(gfp, order).unwrap()));
        let before = allocated();
        set_refcount(head, 2);
        assert_eq!(free(head, order), Ok(()), "{gfp:?} order {order}");
        assert!(m.take_console().is_empty(), "no bad page");
        let kept = if compound { 1 << order } else { 1 };
        assert_eq!(allocated(), before - (1 << order) + kept, "order {order}");
        let left_order = if compound { order } else { 0 };
        assert_eq!(page(head), (1, left_order), "the other holder's page");
        // The last holder's free: the page alone, or the compound page whole.
        assert_eq!(free(head, left_order), Ok(()));
        assert!(m.take_console().is_empty());
        assert_eq!(allocated(), before - (1 << order));
    }
    // The count is the kernel's atomic_t: -1 drops to -2, and is not the last reference.
    let head = m.run(|mm| mm.page_to_pfn(mm.alloc_pages(Gfp::GFP_KERNEL, 0).unwrap()));
    set_refcount(head, u32::MAX);
    assert_eq!(free(head, 0), Ok(()));
    assert_eq!(page(head), (u32::MAX - 1, 0));
    set_refcount(head, 1);
    assert_eq!(free(head, 0), Ok(()));
    assert!(m.take_console().is_empty());
    assert_all_free(&m, &boot, true);
}

#[test]
fn wrong_order_and_tail_pages_are_refused() {
    let m = MachineBuilder::new()
        .ram(32 * MIB)
        .cpus(1)
        .no_holes()
        .seed(7)
        .boot();
    let boot = BootState::of(&m.mm());
    let (plain, comp) = m.run(|mm| {
        let plain = mm.page_to_pfn(mm.alloc_pages(Gfp::GFP_KERNEL, 2).unwrap());
        let comp = mm.page_to_pfn(
            mm.alloc_pages(Gfp::GFP_KERNEL | Gfp::__GFP_COMP, 3)
                .unwrap(),
        );
        (plain, comp)
    });
    let before = counts(&m.mm());
    let free =
        |pfn: Pfn, order: u32| m.run(|mm| mm.__free_pages(mm.pfn_to_page(pfn).unwrap(), order));

    for wrong in [0, 1, 3, 10] {
        assert_eq!(
            free(plain, wrong),
            Err(FreeError::WrongOrder {
                pfn: plain,
                freed: wrong as u8,
                allocated: 2
            })
        );
        bad_page_reported(&m, plain);
    }
    assert_eq!(free(plain, 11), Err(FreeError::OrderTooLarge(11)));
    bad_page_reported(&m, plain);
    // A page inside a plain (non-compound) allocation is not the head of anything.
    assert_eq!(free(plain + 1, 0), Err(FreeError::AlreadyFree(plain + 1)));
    bad_page_reported(&m, plain + 1);
    // Tails of a compound page.
    for tail in [comp + 1, comp + 7] {
        assert_eq!(free(tail, 0), Err(FreeError::TailPage(tail)));
        bad_page_reported(&m, tail);
        assert_eq!(free(tail, 3), Err(FreeError::TailPage(tail)));
        bad_page_reported(&m, tail);
    }
    assert_eq!(
        free(comp, 2),
        Err(FreeError::WrongOrder {
            pfn: comp,
            freed: 2,
            allocated: 3
        })
    );
    bad_page_reported(&m, comp);
    assert_eq!(
        counts(&m.mm()),
        before,
        "refused frees changed the allocator"
    );

    // The right frees still work afterwards.
    assert_eq!(free(plain, 2), Ok(()));
    assert_eq!(free(comp, 3), Ok(()));
    assert!(m.take_console().is_empty());
    assert_all_free(&m, &boot, true);
}

#[test]
fn pfns_outside_ram_holes_and_reserved_pages() {
    let m = MachineBuilder::new()
        .ram(5 * GIB)
        .cpus(1)
        .holes(vec![Hole::LEGACY, Hole::PCI])
        .boot();
    let before = counts(&m.mm());
    let mm = m.mm();
    let end_pfn = (6 * GIB + MIB) >> 12;
    for pfn in [
        0xa0,                  // legacy hole (640 KiB)
        0xff,                  // last page of the legacy hole
        (3 * GIB) >> 12,       // PCI hole
        ((4 * GIB) >> 12) - 1, // last page of the PCI hole
        end_pfn + 1,           // past the end of RAM
        1 << 40,               // far beyond
        u64::MAX,
    ]
    .map(Pfn)
    {
        assert!(!mm.pfn_valid(pfn), "{:#x}", pfn.raw());
        assert_eq!(
            mm.pfn_to_page(pfn).map(|_| ()),
            Err(FreeError::InvalidPfn(pfn))
        );
    }
    // Valid but reserved: the first MiB, and mem_map itself.
    let mem_map_pfn = mm.mem_map_phys().pfn();
    for pfn in [Pfn(0x1), Pfn(0x10), Pfn(0x9f), mem_map_pfn, mem_map_pfn + 5] {
        let page = mm.pfn_to_page(pfn).unwrap();
        assert!(page.is_reserved(), "{:#x}", pfn.raw());
        assert_eq!(
            m.run(|mm| mm.__free_pages(page, 0)),
            Err(FreeError::Reserved(pfn))
        );
        bad_page_reported(&m, pfn);
    }
    // A page of the first allocatable block is fine to look up.
    assert!(mm.pfn_to_page(Pfn(0x1000)).is_ok());
    assert_eq!(counts(&mm), before);
}

#[test]
fn free_pages_needs_a_direct_map_address() {
    for profile in [Profile::X86_64, Profile::I386] {
        let m = MachineBuilder::new()
            .profile(profile)
            .ram(1200 * MIB)
            .cpus(1)
            .boot();
        let before = counts(&m.mm());
        let layout = *m.mm().layout();
        let not_direct = [
            1,
            0x1234_5000,
            layout.vmalloc_start,
            layout.vmalloc_start + 0x10_0000,
            layout.page_offset - 4096,
            // Just past the direct map (on i386: the first HighMem address would be here).
            layout.page_offset + layout.direct_map_end_phys,
        ];
        for addr in not_direct {
            assert_eq!(
                m.run(|mm| mm.free_pages(VirtAddr(addr), 0)),
                Err(FreeError::NotDirectMapped(VirtAddr(addr))),
                "{profile} {addr:#x}"
            );
        }
        // The legacy hole is direct-mapped address space with no RAM behind it.
        let hole = VirtAddr(layout.page_offset + 0xa0000);
        assert_eq!(
            m.run(|mm| mm.free_pages(hole, 0)),
            Err(FreeError::InvalidPfn(Pfn(0xa0)))
        );
        // free_pages(0) is a no-op, as in the kernel.
        assert_eq!(m.run(|mm| mm.free_pages(VirtAddr(0), 3)), Ok(()));
        assert!(m.take_console().is_empty());
        assert_eq!(counts(&m.mm()), before, "{profile}");
    }
}

#[test]
fn a_page_of_another_machine_is_foreign() {
    let a = MachineBuilder::new()
        .ram(32 * MIB)
        .cpus(1)
        .no_holes()
        .seed(7)
        .boot();
    let b = MachineBuilder::new()
        .ram(32 * MIB)
        .cpus(1)
        .no_holes()
        .seed(7)
        .boot();
    let before_b = counts(&b.mm());
    let pfn = a.run(|mm| mm.page_to_pfn(mm.alloc_pages(Gfp::GFP_KERNEL, 0).unwrap()));
    let mm = a.mm();
    let page = mm.pfn_to_page(pfn).unwrap();
    assert_eq!(
        b.run(|mm| mm.__free_pages(page, 0)),
        Err(FreeError::ForeignPage)
    );
    assert_eq!(counts(&b.mm()), before_b);
    assert_eq!(a.run(|mm| mm.__free_pages(page, 0)), Ok(()));
    a.mm().check().unwrap();
}

/// Each layer's error is a `core::error::Error`, so a caller can `?` it into a boxed error
/// and keep the kernel's words.
#[test]
fn each_layers_error_is_a_core_error_with_the_kernels_words() {
    type Call = fn(&Mm<SimPlatform>) -> Result<(), Box<dyn core::error::Error>>;
    let m = MachineBuilder::new().ram(32 * MIB).no_holes().boot();
    let calls: [(&str, Call); 4] = [
        ("MAX_PAGE_ORDER", |mm| {
            Ok(mm.alloc_pages(Gfp::GFP_KERNEL, 11).map(|_| ())?)
        }),
        ("not a direct-map address", |mm| {
            Ok(mm.free_pages(VirtAddr(0x1000), 0)?)
        }),
        ("vmalloc of 0 bytes", |mm| Ok(mm.vmalloc(0).map(|_| ())?)),
        ("does not allow blocking", |mm| {
            Ok(mm.kvmalloc(8 << 20, Gfp::GFP_NOWAIT).map(|_| ())?)
        }),
    ];
    for (words, call) in calls {
        let e = m.run(call).expect_err(words);
        assert!(e.to_string().contains(words), "{e}");
    }
}

/// `free_pages_check()` tests the descriptor's words in one go and works out which check
/// failed only when one did: over every combination of bad fields (flag bits, refcount,
/// recorded order, freed order, alignment, a page outside every zone, a block that runs
/// past its zone's end), the error and the `page dumped because:` line are those of the
/// first failing check in `free_page_is_bad()`'s order, exactly as the checks one by one
/// gave them before (order > MAX_PAGE_ORDER, PG_reserved, PG_slab, PG_tail, refcount 0,
/// then the order, alignment and zone), and only a block that passes them all is freed.
#[test]
fn free_check_reports_the_first_failing_check_of_every_combination() {
    use kmemlab_mm::mm_types::{PG_HEAD, PG_PCP, PG_RESERVED, PG_SLAB, PG_TAIL};
    const FLAGS: [u32; 11] = [
        0,
        PG_RESERVED,
        PG_SLAB,
        PG_TAIL,
        PG_RESERVED | PG_SLAB,
        PG_RESERVED | PG_TAIL,
        PG_SLAB | PG_TAIL,
        PG_RESERVED | PG_SLAB | PG_TAIL,
        PG_HEAD,
        PG_PCP,
        u32::MAX,
    ];
    // The words of `struct page` the check reads (flags, private: the order, refcount)
    // overwritten; answers what they held.
    let poke = |m: &Machine, pfn: Pfn, words: [u32; 3]| {
        let at = m.run(|mm| {
            mm.mem_map_phys().0
                + (pfn - mm.mem_map().base_pfn) * std::mem::size_of::<kmemlab_mm::Page>() as u64
        });
        let mut bytes = [0u8; 12];
        let ram = m.platform().ram();
        ram.read(at, &mut bytes).expect("RAM");
        let old =
            [0, 1, 2].map(|i| u32::from_le_bytes(bytes[i * 4..i * 4 + 4].try_into().unwrap()));
        for (i, w) in words.iter().enumerate() {
            bytes[i * 4..i * 4 + 4].copy_from_slice(&w.to_le_bytes());
        }
        ram.write(at, &bytes).expect("RAM");
        old
    };
    // 64 MiB and three pages: the last zone ends three pages past an aligned boundary.
    let m = MachineBuilder::new()
        .ram(64 * MIB + 3 * 4096)
        .cpus(1)
        .no_holes()
        .seed(5)
        .boot();
    let (outside, zone_end) = m.run(|mm| {
        let base = mm.mem_map().base_pfn;
        let outside = (0..mm.mem_map().len)
            .map(|i| base + i)
            .find(|&p| mm.zone_of_pfn(p).is_none());
        let end = mm.zones().iter().map(|z| z.zone_end_pfn()).max().unwrap();
        (outside, end)
    });
    assert_eq!(zone_end.raw() % 4, 3, "the last zone's end is not aligned");
    let _ = m.take_console();
    let mut refused = 0;
    for flags in FLAGS {
        for refcount in [0, 1, u32::MAX] {
            for recorded in [0, 1, 2, 3, 11, u32::MAX] {
                for freed in [0, 1, 2, 3, 11, 64, u32::MAX] {
                    // The head of an allocation of order 3, a page inside it (misaligned
                    // for orders above 0), a page outside every zone, and the last aligned
                    // block of order 2 or more in the last zone, which runs past its end.
                    for target in 0..4 {
                        let head = m.run(|mm| {
                            mm.page_to_pfn(mm.alloc_pages(Gfp::GFP_KERNEL, 3).expect("alloc"))
                        });
                        let (pfn, aligned, in_zone) = match target {
                            0 => (head, true, true),
                            1 => (head + 1, freed == 0, true),
                            2 => match outside {
                                Some(p) => (p, p.is_aligned(freed.min(63)), false),
                                None => continue,
                            },
                            _ => {
                                let p = Pfn(zone_end.raw() & !3);
                                (p, p.is_aligned(freed.min(63)), freed < 2)
                            }
                        };
                        let wanted = if freed > kmemlab_mm::MAX_PAGE_ORDER {
                            Err(FreeError::OrderTooLarge(freed))
                        } else if flags & PG_RESERVED != 0 {
                            Err(FreeError::Reserved(pfn))
                        } else if flags & PG_SLAB != 0 {
                            Err(FreeError::SlabPage(pfn))
                        } else if flags & PG_TAIL != 0 {
                            Err(FreeError::TailPage(pfn))
                        } else if refcount == 0 {
                            Err(FreeError::AlreadyFree(pfn))
                        } else if recorded != freed || !aligned || !in_zone {
                            Err(FreeError::WrongOrder {
                                pfn,
                                // At most MAX_PAGE_ORDER here (a larger one is refused
                                // first, above).
                                freed: freed as u8,
                                allocated: recorded,
                            })
                        } else {
                            // The checks pass. With a count above 1 (here 0xffffffff, the
                            // kernel's -1), put_page_testzero() does not take the last
                            // reference: the free only drops one (and gives back the rest of
                            // a block that is no compound head), as 6.6's __free_pages().
                            Ok(())
                        };
                        if wanted.is_ok() && target >= 2 {
                            // Not a page of ours: freeing it for real is a double free.
                            m.run(|mm| mm.__free_pages(mm.pfn_to_page(head).unwrap(), 3))
                                .expect("the block frees at its order");
                            continue;
                        }
                        let old = poke(&m, pfn, [flags, recorded, refcount]);
                        let got =
                            m.run(|mm| mm.__free_pages(mm.mem_map().get(pfn).unwrap(), freed));
                        let case = format!(
                            "flags {flags:#x} refcount {refcount} recorded {recorded} freed {freed} target {target}"
                        );
                        assert_eq!(got, wanted, "{case}");
                        let console = m.take_console();
                        match got {
                            Err(e) => {
                                refused += 1;
                                let because = format!("page dumped because: {}", e.reason());
                                assert_eq!(
                                    console
                                        .iter()
                                        .filter(|l| l.starts_with("BUG: Bad page state"))
                                        .count(),
                                    1,
                                    "{case}: {console:?}"
                                );
                                assert!(console.contains(&because), "{case}: {console:?}");
                                poke(&m, pfn, old);
                                m.run(|mm| {
                                    mm.__free_pages(mm.pfn_to_page(head).unwrap(), 3)
                                        .expect("the block frees at its order")
                                });
                            }
                            Ok(()) => assert!(console.is_empty(), "{case}: {console:?}"),
                        }
                        assert!(m.take_console().is_empty(), "{case}");
                    }
                }
            }
        }
    }
    assert!(refused > 2000, "{refused} refused frees");
}
