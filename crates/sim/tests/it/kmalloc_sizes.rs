//! The kmalloc size table: for every request size 1 … 8192 and a sample above, `ksize`
//! equals what Linux 6.x on x86_64 returns (classes 8, 16, 32, 64, 96, 128, 192, 256, 512,
//! 1k, 2k, 4k, 8k; above 8 KiB `PAGE_SIZE << get_order(size)`; above 4 MiB refused).

use crate::fixtures::*;
use kmemlab_mm::slab::kmalloc::{KMALLOC_MAX_SIZE, ZERO_SIZE_PTR};
use kmemlab_mm::slab::{ArrayOverflow, SlabError, SlabFlags};
use kmemlab_mm::Gfp;
use kmemlab_sim::Machine;

/// What `ksize(kmalloc(size))` is on Linux 6.x x86_64 (SLUB, no debugging): computed
/// independently of the code under test, from the kernel's class list.
fn linux_ksize(size: usize) -> usize {
    const CLASSES: [usize; 13] = [
        8, 16, 32, 64, 96, 128, 192, 256, 512, 1024, 2048, 4096, 8192,
    ];
    if size == 0 {
        return 0;
    }
    if let Some(&c) = CLASSES.iter().find(|&&c| c >= size) {
        return c;
    }
    // kmalloc_large(): PAGE_SIZE << get_order(size).
    let pages = size.div_ceil(4096);
    4096 * pages.next_power_of_two()
}

/// The `kmalloc-*` name of the class serving `size` (`kmalloc_info[]`).
fn linux_class_name(size: usize) -> String {
    match linux_ksize(size) {
        c if c >= 1024 => format!("kmalloc-{}k", c / 1024),
        c => format!("kmalloc-{c}"),
    }
}

#[test]
fn ksize_of_every_size_up_to_8k_matches_linux() {
    let m = MachineBuilder::small()
        .seed(3)
        .slab_debug(SlabFlags::empty())
        .boot();
    let boot = BootState::of(&m.mm());
    m.run(|mm| {
        assert_eq!(mm.kmalloc(0, Gfp::GFP_KERNEL), Ok(ZERO_SIZE_PTR));
        assert_eq!(mm.ksize(ZERO_SIZE_PTR), Ok(0));
        for size in 1..=8192usize {
            let want = linux_ksize(size);
            let p = mm
                .kmalloc(size, Gfp::GFP_KERNEL)
                .unwrap_or_else(|e| panic!("kmalloc({size}): {e}"));
            assert_eq!(mm.ksize(p), Ok(want), "ksize(kmalloc({size}))");
            // The serving cache is the class the kernel would pick.
            let r = mm.kmalloc_slab(size, Gfp::GFP_KERNEL).expect("a class");
            let s = mm.cache(r).unwrap();
            assert_eq!(s.name().as_str(), linux_class_name(size), "size {size}");
            assert_eq!(s.object_size() as usize, want, "size {size}");
            let (pfn, page) = mm.virt_to_slab(p).expect("a slab object");
            assert_eq!(
                page.slab_cache(),
                r.0,
                "size {size}: object not from its class"
            );
            assert!(mm.slab_counters(pfn).inuse >= 1);
            // The whole usable size can be written.
            mm.copy_to_kernel(p, &vec![0x5a; want]).unwrap();
            mm.kfree(p).unwrap();
        }
    });
    shrink_all_caches(&m);
    assert_all_free_but_slabs(&m, &boot);
}

#[test]
fn reclaimable_and_dma_classes_have_the_same_sizes() {
    let m = MachineBuilder::small()
        .seed(3)
        .slab_debug(SlabFlags::empty())
        .boot();
    m.run(|mm| {
        for (gfp, prefix) in [
            (Gfp::GFP_KERNEL | Gfp::__GFP_RECLAIMABLE, "kmalloc-rcl-"),
            (Gfp::GFP_KERNEL | Gfp::GFP_DMA, "dma-kmalloc-"),
        ] {
            for size in (1..=8192usize).step_by(7).chain([8, 96, 192, 8192]) {
                let p = mm.kmalloc(size, gfp).unwrap();
                assert_eq!(mm.ksize(p), Ok(linux_ksize(size)), "{gfp:?} size {size}");
                let (_, page) = mm.virt_to_slab(p).unwrap();
                let s = mm
                    .cache(kmemlab_mm::slab::KmemCacheRef(page.slab_cache()))
                    .unwrap();
                let want = linux_class_name(size).replace("kmalloc-", prefix);
                assert_eq!(s.name().as_str(), want, "{gfp:?} size {size}");
                if gfp.contains(Gfp::GFP_DMA) {
                    // dma-kmalloc-* objects come from ZONE_DMA (below 16 MiB).
                    let page = mm.virt_to_page(p).unwrap();
                    assert_eq!(
                        mm.page_zone(page).zone_type,
                        kmemlab_mm::ZoneType::Dma,
                        "dma-kmalloc object outside ZONE_DMA"
                    );
                }
                mm.kfree(p).unwrap();
            }
        }
    });
    m.mm().check().unwrap();
}

#[test]
fn ksize_above_8k_is_page_size_shifted_by_get_order() {
    let m = MachineBuilder::small()
        .seed(3)
        .slab_debug(SlabFlags::empty())
        .boot();
    let boot = BootState::of(&m.mm());
    let mut sizes: Vec<usize> = vec![
        8193,
        12 * 1024,
        16 * 1024,
        16 * 1024 + 1,
        20 * 1024,
        32 * 1024,
        65536,
        65537,
        100_000,
        131_072,
        262_144,
        500_000,
        1 << 20,
        (1 << 20) + 1,
        3 << 20,
        (4 << 20) - 1,
        KMALLOC_MAX_SIZE,
    ];
    sizes.extend((8193..=40_000).step_by(997));
    m.run(|mm| {
        for &size in &sizes {
            let p = mm
                .kmalloc(size, Gfp::GFP_KERNEL)
                .unwrap_or_else(|e| panic!("kmalloc({size}): {e}"));
            assert_eq!(mm.ksize(p), Ok(linux_ksize(size)), "ksize(kmalloc({size}))");
            assert!(
                mm.virt_to_slab(p).is_none(),
                "{size}: large kmalloc is no slab"
            );
            assert_eq!(p.0 % 4096, 0, "large kmalloc is page aligned");
            mm.kfree(p).unwrap();
        }
    });
    m.mm().check().unwrap();
    assert_all_free_but_slabs(&m, &boot);
}

#[test]
fn above_kmalloc_max_size_is_refused_with_the_warning() {
    let m = MachineBuilder::small()
        .seed(3)
        .slab_debug(SlabFlags::empty())
        .boot();
    m.take_console();
    let warns = || {
        m.mm()
            .events()
            .warn
            .load(std::sync::atomic::Ordering::Relaxed)
    };
    for (i, size) in [KMALLOC_MAX_SIZE + 1, 8 << 20, usize::MAX / 2]
        .into_iter()
        .enumerate()
    {
        let before = warns();
        let r = m.run(|mm| mm.kmalloc(size, Gfp::GFP_KERNEL));
        assert_eq!(r, Err(SlabError::TooLarge(size)), "kmalloc({size})");
        let console = m.take_console();
        // kmalloc_large → __alloc_pages' WARN_ON_ONCE_GFP(order > MAX_ORDER): once per boot.
        let warnings = console.iter().filter(|l| l.starts_with("WARNING")).count();
        assert_eq!(
            warnings,
            usize::from(i == 0),
            "kmalloc({size}): {console:?}"
        );
        assert!(warns() > before);
        let r = m.run(|mm| mm.kmalloc(size, Gfp::GFP_KERNEL | Gfp::__GFP_NOWARN));
        assert_eq!(r, Err(SlabError::TooLarge(size)));
        assert!(m.take_console().is_empty(), "__GFP_NOWARN still warned");
    }
    // kmalloc_array / kcalloc overflow: NULL, no allocation.
    m.run(|mm| {
        assert_eq!(
            mm.kmalloc_array(usize::MAX / 2, 3, Gfp::GFP_KERNEL),
            Err(SlabError::Overflow(ArrayOverflow::new(usize::MAX / 2, 3)))
        );
        assert!(matches!(
            mm.kcalloc(1 << 40, 1 << 40, Gfp::GFP_KERNEL),
            Err(SlabError::Overflow { .. })
        ));
    });
    m.mm().check().unwrap();
}

#[test]
fn ksize_with_slab_debug_is_the_object_size() {
    // With red zones or poisoning the usable size is exactly the class size (the bytes
    // behind it are the red zone / free pointer).
    for letters in ["FZPU", "Z", "P", "U"] {
        let m = MachineBuilder::small()
            .seed(3)
            .slab_debug(SlabFlags::parse_slab_debug(letters).unwrap())
            .boot();
        m.run(|mm| {
            for size in (1..=8192usize).step_by(13).chain([8, 64, 96, 192, 8192]) {
                let p = mm.kmalloc(size, Gfp::GFP_KERNEL).unwrap();
                let ks = mm.ksize(p).unwrap();
                let class = linux_ksize(size);
                if letters == "U" {
                    // Only owner tracking: the usable size reaches to s->inuse.
                    assert!(ks >= class, "{letters} size {size}: ksize {ks}");
                } else {
                    assert_eq!(ks, class, "{letters} size {size}");
                }
                mm.kfree(p).unwrap();
            }
        });
        m.mm().check().unwrap();
        assert_eq!(
            m.mm()
                .events()
                .bug_slab
                .load(std::sync::atomic::Ordering::Relaxed),
            0,
            "{letters}: clean use reported a BUG: {:?}",
            m.take_console()
        );
    }
}

/// After a test that freed everything: `check()` passes and only slab pages (kept by the
/// caches' minimum partial lists) differ from boot.
fn assert_all_free_but_slabs(m: &Machine, boot: &BootState) {
    let mm = m.mm();
    mm.drain_all_pages();
    let report = mm.check().unwrap_or_else(|e| panic!("check(): {e}"));
    let slab_pages = mm.slab_pages().total();
    let free: u64 = mm.zones().iter().map(|z| z.free_pages()).sum();
    let boot_free: u64 = boot.free.iter().sum();
    assert!(
        free <= boot_free && boot_free - free <= slab_pages,
        "free {free}, boot {boot_free}, slab pages {slab_pages}: {report:?}"
    );
}
