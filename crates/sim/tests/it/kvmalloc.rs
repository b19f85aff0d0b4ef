//! kvmalloc and friends (`mm/util.c`, `mm/slub.c`): `lib/test_meminit.c`'s `test_kvmalloc`
//! sizes through kvmalloc, zeroing, kvrealloc keeping the contents, the vmalloc fallback
//! under fragmentation (and its absence for non-blocking flags), kvfree of both kinds with
//! every page back, and the refusals (more than INT_MAX, an overflowing array).

use std::sync::atomic::Ordering::Relaxed;

use crate::fixtures::*;
use kmemlab_mm::slab::kmalloc::{KMALLOC_MAX_SIZE, ZERO_SIZE_PTR};
use kmemlab_mm::slab::SlabConfig;
use kmemlab_mm::util::{KvmallocError, INT_MAX};
use kmemlab_mm::{Context, Gfp, Mm, VirtAddr, PAGE_SIZE};
use kmemlab_sim::{Machine, SimPlatform};

const GARBAGE_BYTE: u8 = 0x9E;

fn fill(mm: &Mm<SimPlatform>, p: VirtAddr, size: usize, byte: u8) {
    mm.copy_to_kernel_virt(p, &vec![byte; size]).unwrap();
}

fn read(mm: &Mm<SimPlatform>, p: VirtAddr, size: usize) -> Vec<u8> {
    let mut buf = vec![0; size];
    mm.copy_from_kernel_virt(p, &mut buf).unwrap();
    buf
}

fn count_nonzero_bytes(mm: &Mm<SimPlatform>, p: VirtAddr, size: usize) -> usize {
    read(mm, p, size).iter().filter(|&&b| b != 0).count()
}

/// A recognisable pattern: byte `i` is `(i * 7 + seed) as u8`.
fn pattern(size: usize, seed: u8) -> Vec<u8> {
    (0..size)
        .map(|i| (i as u8).wrapping_mul(7).wrapping_add(seed))
        .collect()
}

/// Free pages counted the way a leak would show: after the lazy purge, with every slab
/// cache shrunk and the per-CPU lists drained; page-table pages (which vmalloc keeps, as
/// the kernel does) counted as free.
fn settled_free_pages(m: &Machine) -> u64 {
    m.run(|mm| mm.purge_vmap_area_lazy());
    shrink_all_caches(m);
    let mm = m.mm();
    mm.check().expect("check() passes");
    mm.check().expect("check() passes");
    mm.zones().iter().map(|z| z.free_pages()).sum::<u64>() + mm.nr_pagetable_pages()
}

/// `test_kvmalloc` (test_meminit.c) with kvmalloc in place of kmalloc and vmalloc: sizes
/// 2^0 … 2^22 (and 2^23, past kmalloc), each allocated, filled with garbage and freed, then
/// allocated again and found zeroed, on the three machines test_meminit is meant for.
#[test]
fn test_kvmalloc_sizes_never_show_old_bytes() {
    for (name, (alloc, free)) in [
        ("init_on_alloc", (true, false)),
        ("init_on_free", (false, true)),
        ("init_on_alloc+init_on_free", (true, true)),
    ] {
        let m = MachineBuilder::small()
            .cpus(1)
            .seed(5)
            .init_on(alloc, free)
            .boot();
        let mut failures = vec![];
        m.run(|mm| {
            // 2^0 … 2^22 from kmalloc (a fresh machine has 4 MiB blocks), 2^23 from vmalloc.
            for i in 0..=23 {
                let size = 1usize << i;
                let p = mm.kvmalloc(size, Gfp::GFP_KERNEL).unwrap();
                assert_eq!(mm.is_vmalloc_addr(p), size > KMALLOC_MAX_SIZE, "{size}");
                fill(mm, p, size, GARBAGE_BYTE);
                mm.kvfree(p).unwrap();
                let p = mm.kvmalloc(size, Gfp::GFP_KERNEL).unwrap();
                if count_nonzero_bytes(mm, p, size) != 0 {
                    failures.push(size);
                }
                fill(mm, p, size, GARBAGE_BYTE);
                mm.kvfree(p).unwrap();
            }
        });
        assert!(
            failures.is_empty(),
            "{name}: old bytes seen at sizes {failures:?}"
        );
        m.mm().check().unwrap();
    }
}

/// kvzalloc and kvcalloc zero every size, whichever allocator serves it, on a machine
/// without init_on_alloc, where a plain kvmalloc shows the garbage left behind.
#[test]
fn kvzalloc_and_kvcalloc_zero_every_size() {
    let m = MachineBuilder::small().cpus(1).seed(5).boot();
    m.run(|mm| {
        for size in (0..=22)
            .map(|i| 1usize << i)
            .chain([5 << 20, 9 << 20 | 123])
        {
            let p = mm.kvmalloc(size, Gfp::GFP_KERNEL).unwrap();
            fill(mm, p, size, GARBAGE_BYTE);
            mm.kvfree(p).unwrap();
            let z = mm.kvzalloc(size, Gfp::GFP_KERNEL).unwrap();
            assert_eq!(mm.is_vmalloc_addr(z), size > KMALLOC_MAX_SIZE, "{size}");
            assert_eq!(count_nonzero_bytes(mm, z, size), 0, "kvzalloc({size})");
            fill(mm, z, size, GARBAGE_BYTE);
            mm.kvfree(z).unwrap();
            let c = mm.kvcalloc(size / 4 + 1, 4, Gfp::GFP_KERNEL).unwrap();
            assert_eq!(count_nonzero_bytes(mm, c, size), 0, "kvcalloc({size})");
            mm.kvfree(c).unwrap();
        }
        // Without __GFP_ZERO (or init_on_alloc) the previous user's bytes show: the zeroing
        // above was kvzalloc's doing.
        let p = mm.kvmalloc(128, Gfp::GFP_KERNEL).unwrap();
        fill(mm, p, 128, GARBAGE_BYTE);
        mm.kvfree(p).unwrap();
        let q = mm.kvmalloc(128, Gfp::GFP_KERNEL).unwrap();
        assert!(count_nonzero_bytes(mm, q, 128) > 0);
        mm.kvfree(q).unwrap();
    });
}

/// kvrealloc keeps the contents up to the lesser size through every transition: kmalloc
/// in place, kmalloc to a bigger class, kmalloc to vmalloc, vmalloc growing and shrinking.
#[test]
fn kvrealloc_keeps_the_contents() {
    let m = MachineBuilder::small().cpus(1).seed(5).boot();
    let before = settled_free_pages(&m);
    m.run(|mm| {
        let sizes = [
            20,
            24,   // in place: same kmalloc-32 object
            3000, // kmalloc-4k
            8192, // kmalloc-8k
            1 << 20,
            4 << 20,  // large kmalloc, order 10
            6 << 20,  // beyond kmalloc: vmalloc, the contents copied
            10 << 20, // vrealloc grows
            5 << 20,  // vrealloc shrinks in place
            100,      // still vmalloc (vrealloc keeps its area)
        ];
        let mut p = mm
            .kvrealloc(VirtAddr(0), sizes[0], Gfp::GFP_KERNEL)
            .unwrap();
        let data = pattern(10 << 20, 3);
        mm.copy_to_kernel_virt(p, &data[..sizes[0]]).unwrap();
        let mut old = sizes[0];
        for &size in &sizes[1..] {
            let q = mm.kvrealloc(p, size, Gfp::GFP_KERNEL).unwrap();
            let kept = old.min(size);
            assert_eq!(read(mm, q, kept), data[..kept], "{old} -> {size}");
            let vmalloc = size > KMALLOC_MAX_SIZE || mm.is_vmalloc_addr(p);
            assert_eq!(mm.is_vmalloc_addr(q), vmalloc, "{old} -> {size}");
            if size == 24 || size == 5 << 20 || size == 100 {
                assert_eq!(q, p, "{old} -> {size} is done in place");
            }
            mm.copy_to_kernel_virt(q, &data[..size]).unwrap();
            (p, old) = (q, size);
        }
        // Size 0 frees.
        assert_eq!(mm.kvrealloc(p, 0, Gfp::GFP_KERNEL), Ok(VirtAddr(0)));
        let k = mm.kvmalloc(64, Gfp::GFP_KERNEL).unwrap();
        assert_eq!(mm.kvrealloc(k, 0, Gfp::GFP_KERNEL), Ok(ZERO_SIZE_PTR));
        // An address kmalloc did not return is refused, and nothing happens.
        let page = mm.alloc_pages(Gfp::GFP_KERNEL, 0).unwrap();
        let not_kmalloc = mm.page_address(page).unwrap();
        assert!(matches!(
            mm.kvrealloc(not_kmalloc, 8 << 20, Gfp::GFP_KERNEL),
            Err(KvmallocError::Krealloc(_))
        ));
        mm.__free_pages(page, 0).unwrap();
        mm.check().unwrap();
    });
    assert_eq!(settled_free_pages(&m), before, "every page is back");
}

/// A failed kvrealloc leaves the old allocation as it was.
#[test]
fn failed_kvrealloc_leaves_the_old_allocation() {
    let m = MachineBuilder::small().cpus(1).seed(5).boot();
    m.run(|mm| {
        let p = mm.kvmalloc(2 * PAGE_SIZE, Gfp::GFP_KERNEL).unwrap();
        let data = pattern(2 * PAGE_SIZE, 11);
        mm.copy_to_kernel_virt(p, &data).unwrap();
        // More than the machine has: kmalloc refuses, vmalloc refuses.
        let e = mm.kvrealloc(p, 128 << 20, Gfp::GFP_KERNEL).unwrap_err();
        assert!(matches!(e, KvmallocError::Vmalloc { .. }), "{e}");
        // Non-blocking: no vmalloc fallback.
        let e = mm.kvrealloc(p, 8 << 20, Gfp::GFP_NOWAIT).unwrap_err();
        assert!(matches!(e, KvmallocError::NoFallback { .. }), "{e}");
        assert_eq!(read(mm, p, data.len()), data);
        mm.kvfree(p).unwrap();
    });
    m.mm().check().unwrap();
}

/// Take every free page (order 0, reserves included: `__GFP_MEMALLOC`), for `fragment` to
/// give half back.
fn take_every_page(mm: &Mm<SimPlatform>) -> Vec<VirtAddr> {
    let mut pages = vec![];
    let gfp = Gfp::GFP_ATOMIC | Gfp::__GFP_MEMALLOC | Gfp::__GFP_NOWARN;
    // Then ZONE_DMA's pages, which the lowmem reserve keeps from the first requests.
    for gfp in [gfp, gfp | Gfp::GFP_DMA] {
        while let Ok(page) = mm.alloc_pages(gfp, 0) {
            pages.push(mm.page_address(page).unwrap());
        }
    }
    pages.sort();
    pages
}

/// Give back every other page: no two free pages are buddies, so no high-order block is
/// left. Returns the pages still held.
fn fragment(mm: &Mm<SimPlatform>, pages: Vec<VirtAddr>) -> Vec<VirtAddr> {
    let mut kept = vec![];
    for (i, p) in pages.into_iter().enumerate() {
        if i % 2 == 0 {
            mm.free_pages(p, 0).unwrap();
        } else {
            kept.push(p);
        }
    }
    mm.drain_all_pages();
    kept
}

/// The largest order with a free block, over all zones.
fn largest_free_order(mm: &Mm<SimPlatform>) -> Option<usize> {
    mm.zones()
        .iter()
        .filter_map(|z| {
            let snap = mm.free_area_snapshot(z);
            (0..snap.nr_free.len()).rev().find(|&o| snap.nr_free[o] > 0)
        })
        .max()
}

/// With no high-order block left, kvmalloc(4 MiB) falls back to vmalloc; with flags that
/// may not block it fails instead, in process and in interrupt context alike; and a request
/// of at most a page never falls back.
#[test]
fn fallback_to_vmalloc_under_fragmentation() {
    let m = MachineBuilder::small().cpus(1).seed(5).boot();
    let before = settled_free_pages(&m);
    let held = m.run(|mm| {
        let all = take_every_page(mm);
        // Exhausted: a page-sized request is kmalloc's alone; once the slabs' free objects
        // are used up it fails there, and never falls back.
        let mut small = vec![];
        let e = loop {
            match mm.kvmalloc(PAGE_SIZE, Gfp::GFP_KERNEL | Gfp::__GFP_NORETRY) {
                Ok(p) => small.push(p),
                Err(e) => break e,
            }
        };
        assert!(matches!(e, KvmallocError::Kmalloc { .. }), "{e}");
        assert!(small.iter().all(|&p| !mm.is_vmalloc_addr(p)));
        for p in small {
            mm.kvfree(p).unwrap();
        }
        let held = fragment(mm, all);
        // Left above order 0: only the few pages the watermarks hold back even from
        // __GFP_MEMALLOC here, far from an order-9 or order-10 block.
        let largest = largest_free_order(mm);
        assert!(
            largest < Some(9),
            "fragmented: largest free order {largest:?}"
        );
        let stats = mm.kvmalloc_stats();
        let (k0, v0) = (stats.kmalloc, stats.vmalloc);

        // kmalloc alone cannot: no order-10 block.
        let gentle = Gfp::GFP_KERNEL | Gfp::__GFP_NOWARN | Gfp::__GFP_NORETRY;
        assert!(mm.kmalloc(4 << 20, gentle).is_err());
        let p = mm.kvmalloc(4 << 20, Gfp::GFP_KERNEL).unwrap();
        assert!(mm.is_vmalloc_addr(p), "fell back to vmalloc: {p}");
        let stats = mm.kvmalloc_stats();
        assert_eq!(stats.vmalloc, v0 + 1);
        assert_eq!(stats.kmalloc, k0);
        let area = mm.find_vm_area(p).unwrap();
        assert_eq!(area.nr_pages, 1024);
        assert_eq!(area.page_order, 0, "no order-9 pages for a huge mapping");
        let data = pattern(4 << 20, 1);
        mm.copy_to_kernel_virt(p, &data).unwrap();
        assert_eq!(read(mm, p, data.len()), data);
        mm.check().unwrap();

        // May not block: no fallback.
        for gfp in [Gfp::GFP_NOWAIT, Gfp::GFP_ATOMIC] {
            let e = mm.kvmalloc(4 << 20, gfp).unwrap_err();
            assert!(matches!(e, KvmallocError::NoFallback { .. }), "{gfp}: {e}");
        }
        assert_eq!(mm.kvmalloc_stats().no_fallback, 2);
        mm.kvfree(p).unwrap();
        held
    });
    // In a hard interrupt, GFP_ATOMIC: refused without vmalloc's BUG.
    let e = m
        .on_cpu(0, Context::Hardirq, |mm| {
            mm.kvmalloc(4 << 20, Gfp::GFP_ATOMIC)
        })
        .unwrap()
        .unwrap_err();
    assert!(matches!(e, KvmallocError::NoFallback { .. }), "{e}");
    let console = m.take_console().join("\n");
    assert!(!console.contains("kernel BUG"), "{console}");
    m.run(|mm| {
        for page in held {
            mm.free_pages(page, 0).unwrap();
        }
    });
    assert_eq!(settled_free_pages(&m), before, "every page is back");
}

/// kvfree frees kmalloc and vmalloc memory alike; afterwards every page is back.
#[test]
fn kvfree_of_both_kinds_returns_every_page() {
    let m = MachineBuilder::small().cpus(1).seed(5).boot();
    let before = settled_free_pages(&m);
    m.run(|mm| {
        let mut live = vec![];
        for size in [1, 64, 4096, 4097, 3 << 20, 4 << 20, (4 << 20) + 1, 12 << 20] {
            let p = mm.kvmalloc(size, Gfp::GFP_KERNEL).unwrap();
            assert_eq!(mm.is_vmalloc_addr(p), size > KMALLOC_MAX_SIZE, "{size}");
            fill(mm, p, size, 0x5a);
            live.push(p);
        }
        let a = mm.kvmalloc_array(1000, 24, Gfp::GFP_KERNEL).unwrap();
        live.push(a);
        mm.check().unwrap();
        mm.check().unwrap();
        for p in live {
            mm.kvfree(p).unwrap();
        }
        // NULL and ZERO_SIZE_PTR are no-ops; kmalloc(0) is ZERO_SIZE_PTR.
        assert_eq!(mm.kvmalloc(0, Gfp::GFP_KERNEL), Ok(ZERO_SIZE_PTR));
        assert_eq!(mm.kvfree(VirtAddr(0)), Ok(()));
        assert_eq!(mm.kvfree(ZERO_SIZE_PTR), Ok(()));
    });
    assert_eq!(settled_free_pages(&m), before, "every page is back");
    // kvfree of what is not live is refused, with the allocator's complaint.
    m.run(|mm| {
        let v = mm.kvmalloc(8 << 20, Gfp::GFP_KERNEL).unwrap();
        mm.kvfree(v).unwrap();
        assert!(matches!(mm.kvfree(v), Err(KvmallocError::Vfree(_))));
        let k = mm.kvmalloc(100, Gfp::GFP_KERNEL).unwrap();
        mm.kvfree(k).unwrap();
        assert!(mm.kvfree(VirtAddr(k.0 + 8)).is_err());
    });
}

/// kvfree_sensitive clears the bytes (through the vmalloc mapping too) before freeing.
/// A `len` past the allocation (the caller's bug) still clears the whole allocation and
/// frees it, with a WARNING and `SensitiveLen` saying so: no secret left, nothing leaked.
#[test]
fn kvfree_sensitive_clears_before_freeing() {
    let m = MachineBuilder::small()
        .cpus(1)
        .seed(5)
        .slab(SlabConfig::default())
        .boot();
    let before = settled_free_pages(&m);
    m.take_console();
    let warn0 = m.mm().events().warn.load(Relaxed);
    m.run(|mm| {
        for size in [48, 6 << 20] {
            for overlong in [false, true] {
                let p = mm.kvmalloc(size, Gfp::GFP_KERNEL).unwrap();
                let usable = if size == 48 { 64 } else { 6 << 20 };
                fill(mm, p, usable, 0x77);
                // Keep a second view of the first page, and of the last bytes, to look at
                // after the free.
                let alias_of = |va: u64| {
                    let pfn = mm.kernel_virt_to_phys(va).unwrap() >> 12;
                    VirtAddr(mm.layout().phys_to_virt(pfn << 12).unwrap() + (va & 0xfff))
                };
                let first = alias_of(p.0);
                let tail = alias_of(p.0 + usable as u64 - 16);
                if overlong {
                    assert_eq!(
                        mm.kvfree_sensitive(p, usable + 4096),
                        Err(KvmallocError::SensitiveLen {
                            addr: p,
                            len: usable + 4096,
                            size: usable,
                        })
                    );
                    // Freed (for kmalloc, `settled_free_pages` below shows it).
                    if mm.is_vmalloc_addr(p) {
                        assert!(mm.find_vm_area(p).is_none(), "{size}: freed");
                    }
                } else {
                    mm.kvfree_sensitive(p, usable).unwrap();
                }
                let mut seen = vec![0xffu8; usable.min(4096 - (p.0 as usize & 0xfff))];
                mm.copy_from_kernel(first, &mut seen).unwrap();
                // Zero but for the free pointer SLUB keeps inside a free object.
                let nonzero = seen.iter().filter(|&&b| b != 0).count();
                assert!(
                    nonzero <= 8,
                    "{size}/{overlong}: cleared ({nonzero} bytes are not)"
                );
                let mut end = [0xffu8; 16];
                mm.copy_from_kernel(tail, &mut end).unwrap();
                assert!(
                    end.iter().filter(|&&b| b != 0).count() <= 8,
                    "{size}/{overlong}: the last bytes are cleared: {end:?}"
                );
            }
        }
    });
    let console = m.take_console();
    let warnings: Vec<_> = console
        .iter()
        .filter(|l| l.starts_with("WARNING") && l.contains("kvfree_sensitive"))
        .collect();
    assert_eq!(warnings.len(), 2, "{console:?}");
    assert_eq!(m.mm().events().warn.load(Relaxed), warn0 + 2);
    assert_eq!(settled_free_pages(&m), before, "nothing leaked");
}

/// The vmalloc-fallback failure says truly what kmalloc was allowed: without direct
/// reclaim by default, with it under __GFP_RETRY_MAYFAIL.
#[test]
fn vmalloc_failure_says_how_kmalloc_was_asked() {
    let m = MachineBuilder::small().cpus(1).seed(5).boot();
    let held = m.run(|mm| {
        let all = take_every_page(mm);
        for (gfp, want, not) in [
            (
                Gfp::GFP_KERNEL | Gfp::__GFP_NOWARN,
                "without direct reclaim",
                "even with",
            ),
            (
                Gfp::GFP_KERNEL | Gfp::__GFP_NOWARN | Gfp::__GFP_RETRY_MAYFAIL,
                "even with direct reclaim",
                "without direct reclaim",
            ),
        ] {
            let e = mm.kvmalloc(2 * PAGE_SIZE, gfp).unwrap_err();
            assert!(matches!(e, KvmallocError::Vmalloc { .. }), "{e}");
            let text = e.to_string();
            assert!(text.contains(want) && !text.contains(not), "{gfp}: {text}");
        }
        all
    });
    m.run(|mm| {
        for page in held {
            mm.free_pages(page, 0).unwrap();
        }
    });
    m.take_console();
    m.mm().check().unwrap();
}

/// More than INT_MAX bytes is refused: `WARN_ON_ONCE(!(flags & __GFP_NOWARN))` printed
/// once, counted every time, and silent under __GFP_NOWARN.
#[test]
fn more_than_int_max_is_refused() {
    let m = MachineBuilder::small().cpus(1).seed(5).boot();
    let warn0 = m.mm().events().warn.load(Relaxed);
    m.take_console();
    m.run(|mm| {
        for size in [INT_MAX + 1, usize::MAX, INT_MAX + 1] {
            assert_eq!(
                mm.kvmalloc(size, Gfp::GFP_KERNEL),
                Err(KvmallocError::TooLarge { size })
            );
        }
        assert_eq!(
            mm.kvmalloc(INT_MAX + 1, Gfp::GFP_KERNEL | Gfp::__GFP_NOWARN),
            Err(KvmallocError::TooLarge { size: INT_MAX + 1 })
        );
        assert_eq!(mm.kvmalloc_stats().too_large, 4);
        // Non-blocking flags fail on the fallback rule first, as in the kernel.
        assert!(matches!(
            mm.kvmalloc(INT_MAX + 1, Gfp::GFP_NOWAIT),
            Err(KvmallocError::NoFallback { .. })
        ));
        // INT_MAX itself is allowed to ask vmalloc (which refuses: more than the machine).
        assert!(matches!(
            mm.kvmalloc(INT_MAX, Gfp::GFP_KERNEL | Gfp::__GFP_NOWARN),
            Err(KvmallocError::Vmalloc { .. })
        ));
    });
    // 6.6 kvmalloc_node(): WARN_ON_ONCE(!(flags & __GFP_NOWARN)) at mm/util.c:632, once.
    let console = m.take_console();
    assert_eq!(
        console,
        warn_lines(
            0,
            100,
            "kmemlab/0",
            "Not tainted",
            None,
            "mm/util.c:632 kvmalloc_node"
        )
    );
    assert_eq!(m.mm().events().warn.load(Relaxed), warn0 + 1);
}

/// kvmalloc_array and kvcalloc refuse a product that overflows, allocating nothing.
#[test]
fn kvmalloc_array_overflow_is_refused() {
    let m = MachineBuilder::small().cpus(1).seed(5).boot();
    m.run(|mm| {
        let failures = mm.kvmalloc_stats().failures;
        for (n, size) in [(usize::MAX, 2), (2, usize::MAX), (1 << 33, 1 << 31)] {
            let want = Err(KvmallocError::Overflow { n, size });
            assert_eq!(mm.kvmalloc_array(n, size, Gfp::GFP_KERNEL), want);
            assert_eq!(mm.kvcalloc(n, size, Gfp::GFP_KERNEL), want);
        }
        assert_eq!(mm.kvmalloc_stats().failures, failures);
        // A product that fits is an ordinary kvmalloc.
        let p = mm
            .kvmalloc_array(1 << 10, 1 << 13, Gfp::GFP_KERNEL)
            .unwrap();
        assert!(mm.is_vmalloc_addr(p));
        mm.kvfree(p).unwrap();
    });
}

/// kmalloc_gfp_adjust: above a page, no warning, no direct reclaim unless
/// __GFP_RETRY_MAYFAIL, no __GFP_NOFAIL; the fallback flags are the caller's.
#[test]
fn kmalloc_attempt_flags() {
    use kmemlab_mm::util::kmalloc_gfp_adjust;
    let k = Gfp::GFP_KERNEL;
    assert_eq!(kmalloc_gfp_adjust(k, PAGE_SIZE), k);
    assert_eq!(
        kmalloc_gfp_adjust(k | Gfp::__GFP_NOFAIL, PAGE_SIZE + 1),
        (k & !Gfp::__GFP_DIRECT_RECLAIM) | Gfp::__GFP_NOWARN
    );
    assert_eq!(
        kmalloc_gfp_adjust(k | Gfp::__GFP_RETRY_MAYFAIL, PAGE_SIZE + 1),
        k | Gfp::__GFP_RETRY_MAYFAIL | Gfp::__GFP_NOWARN
    );
    assert!(kmalloc_gfp_adjust(Gfp::GFP_ATOMIC, 1 << 20).contains(Gfp::__GFP_HIGH));
}
