//! The bulk interfaces: `kmem_cache_alloc_bulk` / `kmem_cache_free_bulk` / `kfree_bulk`
//! and `alloc_pages_bulk_array` / `alloc_pages_bulk_list` (Linux 6.6 `mm/slub.c` and
//! `mm/page_alloc.c`): correctness, SLUB statistics as the kernel counts them in bulk,
//! all-or-nothing failure, bad pointers in a bulk free (each reported as the single free
//! reports it, the rest freed), and the page array filled only where it is empty.

use std::collections::HashSet;
use std::sync::atomic::Ordering::Relaxed;

use crate::fixtures::*;
use kmemlab_mm::memory_model::PageList;
use kmemlab_mm::slab::sheaf::SlabPercpu;
use kmemlab_mm::slab::stats::StatItem;
use kmemlab_mm::slab::{KmemCacheRef, SlabConfig, SlabError, SlabFlags};
use kmemlab_mm::{Gfp, Mm, Page, VirtAddr};
use kmemlab_sim::{Machine, SimPlatform};
use rand::seq::SliceRandom;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

fn check(mm: &Mm<SimPlatform>) {
    mm.check().unwrap_or_else(|e| panic!("check(): {e}"));
}

fn bugs(m: &Machine) -> u64 {
    m.mm().events().bug_slab.load(Relaxed)
}

/// A small machine without slab debugging, with SLUB statistics.
fn plain() -> Machine {
    plain_with(SlabPercpu::CpuSlab)
}

/// [`plain`] with the given per-CPU layer.
fn plain_with(percpu: SlabPercpu) -> Machine {
    MachineBuilder::small()
        .seed(5)
        .slab(SlabConfig {
            slub_stats: true,
            debug: SlabFlags::empty(),
            percpu,
            ..SlabConfig::default()
        })
        .boot()
}

fn stat(mm: &Mm<SimPlatform>, r: KmemCacheRef, item: StatItem) -> u64 {
    mm.slub_stat(r, item)
        .expect("live cache")
        .expect("stats on")
}

/// Fill each object with its own byte and check that none overlaps another.
fn assert_distinct_and_writable(mm: &Mm<SimPlatform>, objs: &[VirtAddr], size: usize) {
    let unique: HashSet<_> = objs.iter().collect();
    assert_eq!(unique.len(), objs.len(), "an object handed out twice");
    for (i, &p) in objs.iter().enumerate() {
        mm.copy_to_kernel(p, &vec![i as u8; size]).unwrap();
    }
    for (i, &p) in objs.iter().enumerate() {
        let mut buf = vec![0; size];
        mm.copy_from_kernel(p, &mut buf).unwrap();
        assert!(buf.iter().all(|&b| b == i as u8), "object {i} overwritten");
    }
}

#[test]
fn bulk_round_trip_counts_one_stat_per_object_and_one_per_freelist() {
    let m = plain();
    m.take_console();
    let r = m
        .run(|mm| mm.kmem_cache_create("bulk-96", 96, 0, SlabFlags::empty(), None))
        .unwrap();
    m.run(|mm| {
        let mut objs = vec![VirtAddr(0); 300];
        let fast = stat(mm, r, StatItem::AllocFastpath);
        let slow = stat(mm, r, StatItem::AllocSlowpath);
        assert_eq!(
            mm.kmem_cache_alloc_bulk(r, Gfp::GFP_KERNEL, &mut objs),
            Ok(300)
        );
        let fast = stat(mm, r, StatItem::AllocFastpath) - fast;
        let slow = stat(mm, r, StatItem::AllocSlowpath) - slow;
        // __kmem_cache_alloc_bulk(): ALLOC_FASTPATH for each object off the CPU freelist,
        // ALLOC_SLOWPATH for each ___slab_alloc() (one per slab here: 42 objects each).
        assert_eq!(fast + slow, 300, "fast {fast} slow {slow}");
        assert!((300 / 42..=300 / 42 + 1).contains(&slow), "slow {slow}");
        for &p in &objs {
            let (_, page) = mm.virt_to_slab(p).expect("a slab object");
            assert_eq!(page.slab_cache(), r.0);
        }
        assert_distinct_and_writable(mm, &objs, 96);
        objs.shuffle(&mut ChaCha8Rng::seed_from_u64(1));
        let frees = |mm: &Mm<SimPlatform>| {
            stat(mm, r, StatItem::FreeFastpath) + stat(mm, r, StatItem::FreeSlowpath)
        };
        let before = frees(mm);
        mm.kmem_cache_free_bulk(r, &mut objs).unwrap();
        // One slab_free() per detached freelist: fewer than one per object.
        let lists = frees(mm) - before;
        assert!((8..300).contains(&lists), "{lists} slab_free() calls");
        // Everything came back: the next bulk gets 300 distinct objects again.
        assert_eq!(
            mm.kmem_cache_alloc_bulk(r, Gfp::GFP_KERNEL, &mut objs),
            Ok(300)
        );
        assert_distinct_and_writable(mm, &objs, 96);
        mm.kmem_cache_free_bulk(r, &mut objs).unwrap();
    });
    check(&m.mm());
    m.run(|mm| mm.kmem_cache_destroy(r)).unwrap();
    assert!(m.take_console().is_empty());
    assert_eq!(bugs(&m), 0);
}

#[test]
fn bulk_on_a_debug_cache_keeps_every_check() {
    let m = MachineBuilder::small()
        .seed(6)
        .slab_debug(SlabFlags::CONSISTENCY_CHECKS | SlabFlags::RED_ZONE | SlabFlags::POISON)
        .boot();
    m.take_console();
    let r = m
        .run(|mm| mm.kmem_cache_create("bulk-dbg", 40, 0, SlabFlags::empty(), None))
        .unwrap();
    m.run(|mm| {
        let mut objs = vec![VirtAddr(0); 100];
        assert_eq!(
            mm.kmem_cache_alloc_bulk(r, Gfp::GFP_KERNEL, &mut objs),
            Ok(100)
        );
        assert_distinct_and_writable(mm, &objs, 40);
        mm.kmem_cache_free_bulk(r, &mut objs).unwrap();
    });
    assert!(m.take_console().is_empty());
    // A double free in a bulk array is the debug report "Object already free".
    let (r1, r2) = m.run(|mm| {
        let mut objs = vec![VirtAddr(0); 4];
        mm.kmem_cache_alloc_bulk(r, Gfp::GFP_KERNEL, &mut objs)
            .unwrap();
        let mut again = vec![objs[0], objs[1], objs[2], objs[3], objs[1]];
        (mm.kmem_cache_free_bulk(r, &mut again), objs)
    });
    assert!(r1.is_err(), "{r1:?}");
    let console = m.take_console().join("\n");
    assert!(console.contains("Object already free"), "{console}");
    let _ = r2;
    check(&m.mm());
    m.run(|mm| mm.kmem_cache_destroy(r)).unwrap();
}

#[test]
fn bulk_alloc_initialises_as_the_single_path() {
    let m = MachineBuilder::small()
        .seed(7)
        .slab_debug(SlabFlags::empty())
        .init_on(true, false)
        .boot();
    let r = m
        .run(|mm| mm.kmem_cache_create("bulk-init", 128, 0, SlabFlags::empty(), None))
        .unwrap();
    m.run(|mm| {
        let mut objs = vec![VirtAddr(0); 64];
        mm.kmem_cache_alloc_bulk(r, Gfp::GFP_KERNEL, &mut objs)
            .unwrap();
        for &p in &objs {
            mm.copy_to_kernel(p, &[0xa5; 128]).unwrap();
        }
        mm.kmem_cache_free_bulk(r, &mut objs).unwrap();
        mm.kmem_cache_alloc_bulk(r, Gfp::GFP_KERNEL, &mut objs)
            .unwrap();
        for &p in &objs {
            let mut buf = [0xffu8; 128];
            mm.copy_from_kernel(p, &mut buf).unwrap();
            assert_eq!(buf, [0; 128], "init_on_alloc: {p} not zeroed");
        }
        mm.kmem_cache_free_bulk(r, &mut objs).unwrap();
        mm.kmem_cache_destroy(r).unwrap();
    });
    check(&m.mm());
}

#[test]
fn bulk_alloc_is_all_or_nothing() {
    bulk_all_or_nothing(plain());
    bulk_all_or_nothing(plain_with(SlabPercpu::Sheaves));
}

fn bulk_all_or_nothing(m: Machine) {
    m.take_console();
    let r = m
        .run(|mm| mm.kmem_cache_create("bulk-2k", 2048, 0, SlabFlags::empty(), None))
        .unwrap();
    let gfp = Gfp::GFP_NOWAIT | Gfp::__GFP_NOWARN;
    m.run(|mm| {
        // A CPU slab with free objects on its freelist, then no page left for another.
        let first = mm.kmem_cache_alloc(r, Gfp::GFP_KERNEL).unwrap();
        let mut hog = Vec::new();
        while let Ok(page) = mm.alloc_pages(gfp, 0) {
            hog.push(page);
        }
        let total_before = mm.node_counts(mm.cache(r).unwrap());
        let mut objs = vec![VirtAddr(0); 200];
        let e = mm.kmem_cache_alloc_bulk(r, gfp, &mut objs);
        assert!(matches!(e, Err(SlabError::Alloc(_))), "{e:?}");
        assert!(
            objs.iter().all(|&p| p == VirtAddr(0)),
            "nothing is handed out"
        );
        assert_eq!(mm.node_counts(mm.cache(r).unwrap()), total_before);
        // The objects it took from the CPU freelist went back: the cache has exactly one
        // object in use, and a bulk that fits in the CPU slab succeeds.
        let mut few = vec![VirtAddr(0); 3];
        assert_eq!(mm.kmem_cache_alloc_bulk(r, gfp, &mut few), Ok(3));
        mm.kmem_cache_free_bulk(r, &mut few).unwrap();
        for page in hog {
            mm.__free_pages(page, 0).unwrap();
        }
        mm.kmem_cache_free(r, first).unwrap();
        // kmem_cache_destroy() refuses a cache with objects left.
        mm.kmem_cache_destroy(r).unwrap();
    });
    check(&m.mm());
    assert!(m.take_console().is_empty());
}

#[test]
fn double_free_within_a_bulk_array_is_reported_and_the_rest_freed() {
    double_free_within_a_bulk_array(plain());
}

/// With sheaves, 6.18's `free_to_pcs_bulk()` copies the array into the main sheaf as it
/// is, as `free_to_pcs()` takes a single double free: nothing is reported when it is freed,
/// the checker reports the object twice in the sheaves, and the flush (a shrink) refuses
/// to link it into its slab twice (the hardened freelist's BUG).
#[test]
fn double_free_within_a_bulk_array_goes_into_the_sheaves_as_in_6_18() {
    let m = plain_with(SlabPercpu::Sheaves);
    m.take_console();
    let r = m
        .run(|mm| mm.kmem_cache_create("bulk-df", 64, 0, SlabFlags::empty(), None))
        .unwrap();
    for dup_at in [1usize, 5, 9] {
        let before = bugs(&m);
        let result = m.run(|mm| {
            let mut objs = vec![VirtAddr(0); 10];
            mm.kmem_cache_alloc_bulk(r, Gfp::GFP_KERNEL, &mut objs)
                .unwrap();
            objs.insert(dup_at, objs[0]);
            mm.kmem_cache_free_bulk(r, &mut objs)
        });
        assert_eq!(result, Ok(()), "dup at {dup_at}");
        assert_eq!(bugs(&m), before, "dup at {dup_at}");
        assert!(m.take_console().is_empty());
        let e = m.mm().check().unwrap_err().to_string();
        assert!(e.contains("in the sheaves twice"), "{e}");
        m.run(|mm| mm.kmem_cache_shrink(r).unwrap());
        assert_eq!(bugs(&m), before + 1, "dup at {dup_at}");
        take_console_expecting(&m, "kernel BUG at mm/slub.c:");
        check(&m.mm());
    }
    // An object freed before, in a bulk array: no report either.
    let result = m.run(|mm| {
        let mut objs = vec![VirtAddr(0); 6];
        mm.kmem_cache_alloc_bulk(r, Gfp::GFP_KERNEL, &mut objs)
            .unwrap();
        mm.kmem_cache_free(r, objs[2]).unwrap();
        mm.kmem_cache_free_bulk(r, &mut objs)
    });
    assert_eq!(result, Ok(()));
    assert!(m.mm().check().is_err());
    m.run(|mm| mm.kmem_cache_shrink(r).unwrap());
    m.take_console();
    check(&m.mm());
    m.run(|mm| {
        let mut objs = vec![VirtAddr(0); 200];
        mm.kmem_cache_alloc_bulk(r, Gfp::GFP_KERNEL, &mut objs)
            .unwrap();
        assert_distinct_and_writable(mm, &objs, 64);
        mm.kmem_cache_free_bulk(r, &mut objs).unwrap();
        mm.kmem_cache_destroy(r).unwrap();
    });
    check(&m.mm());
}

fn double_free_within_a_bulk_array(m: Machine) {
    m.take_console();
    let r = m
        .run(|mm| mm.kmem_cache_create("bulk-df", 64, 0, SlabFlags::empty(), None))
        .unwrap();
    for dup_at in [1usize, 5, 9] {
        let before = bugs(&m);
        let result = m.run(|mm| {
            let mut objs = vec![VirtAddr(0); 10];
            mm.kmem_cache_alloc_bulk(r, Gfp::GFP_KERNEL, &mut objs)
                .unwrap();
            // The first object again, adjacent or not.
            objs.insert(dup_at, objs[0]);
            mm.kmem_cache_free_bulk(r, &mut objs)
        });
        assert!(
            matches!(result, Err(SlabError::NotSlabObject(..))),
            "{result:?}"
        );
        assert_eq!(bugs(&m), before + 1, "dup at {dup_at}");
        take_console_expecting(&m, "kernel BUG at mm/slub.c:");
        check(&m.mm());
    }
    // An object freed before, in a bulk array.
    let result = m.run(|mm| {
        let mut objs = vec![VirtAddr(0); 6];
        mm.kmem_cache_alloc_bulk(r, Gfp::GFP_KERNEL, &mut objs)
            .unwrap();
        mm.kmem_cache_free(r, objs[2]).unwrap();
        mm.kmem_cache_free_bulk(r, &mut objs)
    });
    assert!(result.is_err());
    m.take_console();
    check(&m.mm());
    // Nothing is handed out twice afterwards, and nothing was leaked.
    m.run(|mm| {
        let mut objs = vec![VirtAddr(0); 200];
        mm.kmem_cache_alloc_bulk(r, Gfp::GFP_KERNEL, &mut objs)
            .unwrap();
        assert_distinct_and_writable(mm, &objs, 64);
        mm.kmem_cache_free_bulk(r, &mut objs).unwrap();
        mm.kmem_cache_destroy(r).unwrap();
    });
    check(&m.mm());
}

#[test]
fn mixed_caches_and_bad_pointers_in_free_bulk() {
    mixed_caches_and_bad_pointers(plain());
    mixed_caches_and_bad_pointers(plain_with(SlabPercpu::Sheaves));
}

fn mixed_caches_and_bad_pointers(m: Machine) {
    m.take_console();
    let (a, b) = m.run(|mm| {
        (
            mm.kmem_cache_create("bulk-a", 72, 0, SlabFlags::empty(), None)
                .unwrap(),
            mm.kmem_cache_create("bulk-b", 136, 0, SlabFlags::empty(), None)
                .unwrap(),
        )
    });
    m.run(|mm| {
        let mut xs = vec![VirtAddr(0); 8];
        let mut ys = vec![VirtAddr(0); 2];
        mm.kmem_cache_alloc_bulk(a, Gfp::GFP_KERNEL, &mut xs)
            .unwrap();
        mm.kmem_cache_alloc_bulk(b, Gfp::GFP_KERNEL, &mut ys)
            .unwrap();
        let inside = VirtAddr(xs[7].0 + 8);
        let page = mm.__get_free_pages(Gfp::GFP_KERNEL, 0).unwrap();
        let mut mixed = vec![
            xs[0],
            ys[0],
            xs[1],
            xs[2],
            inside,
            xs[3],
            page,
            VirtAddr(0x1000),
        ];
        mixed.extend_from_slice(&xs[4..7]);
        let e = mm.kmem_cache_free_bulk(a, &mut mixed);
        assert!(e.is_err());
        let console = m.take_console().join("\n");
        assert!(
            // (bulk-a may be merged into an older cache of its size: its name is printed.)
            console.contains("cache_from_obj: Wrong slab cache.")
                && console.contains("but object is from bulk-b"),
            "{console}"
        );
        // Each refused pointer is still what it was (freeing it properly now succeeds);
        // the rest were freed (kmem_cache_destroy below finds no object left).
        mm.kmem_cache_free(b, ys[0]).unwrap();
        mm.kmem_cache_free(a, xs[7]).unwrap();
        mm.free_pages(page, 0).unwrap();
        // kfree_bulk: each object to its own cache, large kmalloc and NULL too.
        let big = mm.kmalloc(3 * 4096, Gfp::GFP_KERNEL).unwrap();
        let k = mm.kmalloc(100, Gfp::GFP_KERNEL).unwrap();
        let mut all = vec![ys[1], big, VirtAddr(0), k];
        let mut more = vec![VirtAddr(0); 5];
        mm.kmem_cache_alloc_bulk(a, Gfp::GFP_KERNEL, &mut more)
            .unwrap();
        all.extend_from_slice(&more);
        mm.kfree_bulk(&mut all).unwrap();
        mm.kmem_cache_destroy(a).unwrap();
        mm.kmem_cache_destroy(b).unwrap();
    });
    check(&m.mm());
    assert!(m.take_console().is_empty());
}

#[test]
fn page_bulk_fills_only_the_empty_slots() {
    let m = MachineBuilder::small().seed(9).boot();
    let boot = BootState::of(&m.mm());
    m.run(|mm| {
        let pre: Vec<&Page> = (0..3)
            .map(|_| mm.alloc_pages(Gfp::GFP_KERNEL, 0).unwrap())
            .collect();
        let mut array: Vec<Option<&Page>> = vec![None; 40];
        array[0] = Some(pre[0]);
        array[7] = Some(pre[1]);
        array[39] = Some(pre[2]);
        assert_eq!(mm.alloc_pages_bulk_array(Gfp::GFP_KERNEL, &mut array), 40);
        assert!(std::ptr::eq(array[0].unwrap(), pre[0]));
        assert!(std::ptr::eq(array[7].unwrap(), pre[1]));
        assert!(std::ptr::eq(array[39].unwrap(), pre[2]));
        let pfns: HashSet<u64> = array.iter().map(|p| mm.page_to_pfn(p.unwrap()).0).collect();
        assert_eq!(pfns.len(), 40, "a page handed out twice");
        for page in array.iter().flatten() {
            assert_eq!(page.refcount(), 1);
        }
        // An array already full asks for nothing.
        assert_eq!(mm.alloc_pages_bulk_array(Gfp::GFP_KERNEL, &mut array), 40);
        for page in array.into_iter().flatten() {
            mm.__free_pages(page, 0).unwrap();
        }
        // The list form, with __GFP_ZERO.
        let list = PageList::new();
        assert_eq!(
            mm.alloc_pages_bulk_list(Gfp::GFP_KERNEL | Gfp::__GFP_ZERO, 20, &list),
            20
        );
        let mut n = 0;
        while let Ok(Some(pfn)) = list.try_pop_front(mm.mem_map()) {
            let va = VirtAddr(mm.layout().page_offset + pfn.phys().0);
            let mut buf = vec![0xffu8; 4096];
            mm.copy_from_kernel(va, &mut buf).unwrap();
            assert!(buf.iter().all(|&b| b == 0));
            mm.__free_pages(mm.mem_map().page(pfn), 0).unwrap();
            n += 1;
        }
        assert_eq!(n, 20);
    });
    assert_all_free(&m, &boot, false);
    check(&m.mm());
}

#[test]
fn page_bulk_gives_what_there_is_when_memory_runs_out() {
    let m = MachineBuilder::small().seed(10).boot();
    let boot = BootState::of(&m.mm());
    let gfp = Gfp::GFP_NOWAIT | Gfp::__GFP_NOWARN;
    m.run(|mm| {
        let mut hog = Vec::new();
        while let Ok(page) = mm.alloc_pages(gfp, 0) {
            hog.push(page);
        }
        // Give a few back: the bulk gets at most those.
        for page in hog.drain(..5) {
            mm.__free_pages(page, 0).unwrap();
        }
        let mut array: Vec<Option<&Page>> = vec![None; 64];
        let got = mm.alloc_pages_bulk_array(gfp, &mut array);
        assert!(got <= 5, "{got}");
        assert!(array[..got].iter().all(Option::is_some));
        assert!(array[got..].iter().all(Option::is_none));
        for page in array.into_iter().flatten().chain(hog) {
            mm.__free_pages(page, 0).unwrap();
        }
    });
    assert_all_free(&m, &boot, false);
    check(&m.mm());
}

#[test]
fn bulk_free_wipes_with_init_on_free_and_bulk_alloc_wipes_the_free_pointer() {
    for percpu in [SlabPercpu::CpuSlab, SlabPercpu::Sheaves] {
        bulk_init_on_free(percpu);
    }
}

fn bulk_init_on_free(percpu: SlabPercpu) {
    let m = MachineBuilder::small()
        .seed(12)
        .slab_debug(SlabFlags::empty())
        .init_on(false, true)
        .slab_percpu(percpu)
        .boot();
    let r = m
        .run(|mm| mm.kmem_cache_create("bulk-iof", 200, 0, SlabFlags::empty(), None))
        .unwrap();
    m.run(|mm| {
        let mut objs = vec![VirtAddr(0); 50];
        mm.kmem_cache_alloc_bulk(r, Gfp::GFP_KERNEL, &mut objs)
            .unwrap();
        for &p in &objs {
            mm.copy_to_kernel(p, &[0x5a; 200]).unwrap();
        }
        mm.kmem_cache_free_bulk(r, &mut objs).unwrap();
        // The same objects come back (LIFO): every byte zero, the free pointer included.
        mm.kmem_cache_alloc_bulk(r, Gfp::GFP_KERNEL, &mut objs)
            .unwrap();
        for &p in &objs {
            let mut buf = [0xffu8; 200];
            mm.copy_from_kernel(p, &mut buf).unwrap();
            assert_eq!(buf, [0; 200], "{p} not wiped");
        }
        mm.kmem_cache_free_bulk(r, &mut objs).unwrap();
        mm.kmem_cache_destroy(r).unwrap();
    });
    check(&m.mm());
}

/// kvmalloc counts on each CPU in its own per-CPU area; the statistics sum them.
#[test]
fn kvmalloc_counters_are_per_cpu_and_summed() {
    let m = MachineBuilder::small().seed(13).boot();
    let before = m.mm().kvmalloc_stats();
    std::thread::scope(|s| {
        for cpu in 0..2 {
            let m = &m;
            s.spawn(move || {
                m.on_cpu(cpu, kmemlab_mm::Context::Process, |mm| {
                    for _ in 0..100 {
                        let p = mm.kvmalloc(64, Gfp::GFP_KERNEL).unwrap();
                        mm.kvfree(p).unwrap();
                    }
                    // kmalloc serves 1 MiB on a fresh machine (an order-8 block).
                    let big = mm
                        .kvmalloc(1 << 20, Gfp::GFP_NOWAIT | Gfp::__GFP_NOWARN)
                        .unwrap();
                    mm.kvfree(big).unwrap();
                })
                .unwrap()
            });
        }
    });
    let after = m.mm().kvmalloc_stats();
    assert_eq!(after.kmalloc, before.kmalloc + 202);
    assert_eq!(after.failures, before.failures);
}

/// `build_detached_freelist()` (6.6) links the objects of one slab in the order it finds
/// them, scanning the array from its end: the last element is the list's tail and each
/// one found before it becomes the new head. Freed onto the CPU slab, they come back in
/// that order: for `[z, x, y]` (all of one slab), `z`, `x`, `y`.
#[test]
fn a_bulk_free_links_one_slabs_objects_in_the_kernels_order() {
    let m = plain();
    m.run(|mm| {
        let r = mm
            .kmem_cache_create("bulk-order", 64, 0, SlabFlags::empty(), None)
            .unwrap();
        let mut objs = [VirtAddr(0); 3];
        assert_eq!(
            mm.kmem_cache_alloc_bulk(r, Gfp::GFP_KERNEL, &mut objs),
            Ok(3)
        );
        let slab = |v: VirtAddr| mm.virt_to_page(v).map(|p| p as *const Page);
        assert!(objs.iter().all(|&o| slab(o) == slab(objs[0])), "one slab");
        objs.sort();
        let [x, y, z] = objs;
        let mut freed = [z, x, y];
        mm.kmem_cache_free_bulk(r, &mut freed).unwrap();
        let again: Vec<VirtAddr> = (0..3)
            .map(|_| mm.kmem_cache_alloc(r, Gfp::GFP_KERNEL).unwrap())
            .collect();
        assert_eq!(again, [z, x, y]);
        for o in again {
            mm.kmem_cache_free(r, o).unwrap();
        }
        mm.kmem_cache_destroy(r).unwrap();
        check(mm);
    });
}

/// A slab's `struct page` corrupted to claim 65,535 objects over 256 pages: a bulk free of
/// 17 "objects" past index 32,767 (one detached freelist, so the duplicate search uses
/// its bitmap) is answered, never a host panic (found by review: the bitmap had only
/// MAX_OBJS_PER_PAGE bits, the index is checked against the count read from RAM).
#[test]
fn a_bulk_free_past_a_corrupted_object_count_is_answered() {
    let m = plain();
    let r = m
        .run(|mm| mm.kmem_cache_create("bulk-8", 8, 0, SlabFlags::empty(), None))
        .unwrap();
    let (pfn, desc_phys, tail_phys, base) = m.run(|mm| {
        let mut one = [VirtAddr(0); 1];
        assert_eq!(
            mm.kmem_cache_alloc_bulk(r, Gfp::GFP_KERNEL, &mut one),
            Ok(1)
        );
        let (pfn, page) = mm.virt_to_slab(one[0]).unwrap();
        let tail = mm.pfn_to_page(kmemlab_mm::Pfn(pfn.raw() + 64)).unwrap();
        let po = mm.layout().page_offset;
        (
            pfn,
            mm.struct_page_address(page).0 - po,
            mm.struct_page_address(tail).0 - po,
            po + (pfn.raw() << 12),
        )
    });
    let ram = m.platform().ram();
    ram.write(desc_phys + 4, &8u32.to_le_bytes()).unwrap(); // order 8
    ram.write(desc_phys + 28, &0xffffu16.to_le_bytes()).unwrap(); // 65,535 objects
    ram.write(tail_phys, &kmemlab_mm::mm_types::PG_TAIL.to_le_bytes())
        .unwrap();
    ram.write(tail_phys + 24, &pfn.raw().to_le_bytes()).unwrap();
    let mut objs: Vec<VirtAddr> = (0..17u64)
        .map(|k| VirtAddr(base + (32768 + k) * 8))
        .collect();
    // The kernel would link them too (nothing checks a count); the checker then finds
    // the slab that claims more objects than its order holds.
    assert_eq!(m.run(|mm| mm.kmem_cache_free_bulk(r, &mut objs)), Ok(()));
    assert!(m.check().is_err());
}
