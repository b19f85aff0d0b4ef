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
    let before = counts(m.mm());
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
    assert_eq!(counts(m.mm()), before);
}

#[test]
fn invalid_gfp_combinations_are_refused() {
    let m = MachineBuilder::new()
        .ram(32 * MIB)
        .cpus(1)
        .no_holes()
        .seed(7)
        .boot();
    let before = counts(m.mm());
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
    assert_eq!(counts(m.mm()), before);
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
        let before = counts(m.mm());
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
        assert_eq!(counts(m.mm()), before, "{profile}");
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
    let boot = BootState::of(m.mm());
    for (order, drain) in [(0, false), (0, true), (3, false), (5, false), (10, true)] {
        let pfn = m.run(|mm| {
            let page = mm.alloc_pages(Gfp::GFP_KERNEL, order).unwrap();
            mm.__free_pages(page, order).unwrap();
            mm.page_to_pfn(page)
        });
        if drain {
            m.mm().drain_all_pages();
        }
        let before = counts(m.mm());
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
        assert_eq!(counts(m.mm()), before, "double free changed the allocator");
    }
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
    let boot = BootState::of(m.mm());
    let (plain, comp) = m.run(|mm| {
        let plain = mm.page_to_pfn(mm.alloc_pages(Gfp::GFP_KERNEL, 2).unwrap());
        let comp = mm.page_to_pfn(
            mm.alloc_pages(Gfp::GFP_KERNEL | Gfp::__GFP_COMP, 3)
                .unwrap(),
        );
        (plain, comp)
    });
    let before = counts(m.mm());
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
        counts(m.mm()),
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
    let before = counts(m.mm());
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
    assert_eq!(counts(mm), before);
}

#[test]
fn free_pages_needs_a_direct_map_address() {
    for profile in [Profile::X86_64, Profile::I386] {
        let m = MachineBuilder::new()
            .profile(profile)
            .ram(1200 * MIB)
            .cpus(1)
            .boot();
        let before = counts(m.mm());
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
        assert_eq!(counts(m.mm()), before, "{profile}");
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
    let before_b = counts(b.mm());
    let pfn = a.run(|mm| mm.page_to_pfn(mm.alloc_pages(Gfp::GFP_KERNEL, 0).unwrap()));
    let page = a.mm().pfn_to_page(pfn).unwrap();
    assert_eq!(
        b.run(|mm| mm.__free_pages(page, 0)),
        Err(FreeError::ForeignPage)
    );
    assert_eq!(counts(b.mm()), before_b);
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
