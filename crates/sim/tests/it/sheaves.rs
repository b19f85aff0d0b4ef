//! Slab sheaves (`--slab-percpu sheaves`, Linux 6.18/7.0): kmalloc and kmem_cache objects
//! go through per-CPU sheaves, refills and flushes come in whole sheaves, the barn keeps
//! at most `MAX_FULL_SHEAVES` full ones, frees from other CPUs land in their own sheaves,
//! shrink and destroy give everything back, interrupts at every window lose nothing, a
//! corrupted sheaf is reported rather than followed, and the checker passes throughout.

use crate::fixtures::*;
use crate::slab_irq::{run_sweeps_counting, Source};
use kmemlab_mm::slab::sheaf::{SlabPercpu, MAX_FULL_SHEAVES};
use kmemlab_mm::slab::stats::StatItem;
use kmemlab_mm::slab::{KmemCacheRef, SlabConfig, SlabFlags};
use kmemlab_mm::{Context, Gfp, Mm, VirtAddr};
use kmemlab_sim::{Machine, SimPlatform};

fn sheaves_machine(cpus: usize, stats: bool) -> Machine {
    MachineBuilder::new()
        .ram(64 * MIB)
        .cpus(cpus)
        .no_holes()
        .seed(7)
        .slab(SlabConfig {
            slub_stats: stats,
            nomerge: true,
            percpu: SlabPercpu::Sheaves,
            ..SlabConfig::default()
        })
        .boot()
}

fn stat(mm: &Mm<SimPlatform>, r: KmemCacheRef, item: StatItem) -> u64 {
    mm.slub_stat(r, item).unwrap().expect("statistics are on")
}

fn kmalloc_cache(mm: &Mm<SimPlatform>, size: usize) -> KmemCacheRef {
    mm.kmalloc_slab(size, Gfp::GFP_KERNEL).unwrap()
}

#[test]
fn capacities_follow_linux_7_0() {
    let m = sheaves_machine(2, false);
    m.run(|mm| {
        // 60, 26, 12 and 4 objects, grown to fill the kmalloc class of the sheaf (a
        // 40-byte header): 1024, 256, 192 and 96 bytes.
        for (size, capacity) in [(64, 123), (512, 27), (2048, 19), (8192, 7)] {
            let info = mm.sheaves_info(kmalloc_cache(mm, size)).unwrap();
            assert_eq!(info.capacity, capacity, "kmalloc-{size}");
        }
        let r = mm
            .kmem_cache_create("sheaf_cap", 300, 0, SlabFlags::empty(), None)
            .unwrap();
        assert_eq!(mm.sheaves_info(r).unwrap().capacity, 27);
        // The boot caches and debug caches have none.
        assert!(mm
            .sheaves_info(mm.find_cache("kmem_cache").unwrap())
            .is_none());
        assert!(mm
            .sheaves_info(mm.find_cache("kmem_cache_node").unwrap())
            .is_none());
        let dbg = mm
            .kmem_cache_create("sheaf_dbg", 300, 0, SlabFlags::RED_ZONE, None)
            .unwrap();
        assert!(mm.sheaves_info(dbg).is_none());
        mm.kmem_cache_destroy(dbg).unwrap();
        mm.kmem_cache_destroy(r).unwrap();
    });
    m.mm().check().unwrap();
}

#[test]
fn cpu_slab_machines_have_no_sheaves() {
    let m = MachineBuilder::new()
        .ram(32 * MIB)
        .cpus(2)
        .no_holes()
        .boot();
    assert_eq!(m.mm().slab_percpu(), SlabPercpu::CpuSlab);
    m.run(|mm| assert!(mm.sheaves_info(kmalloc_cache(mm, 64)).is_none()));
}

#[test]
fn slab_debug_machines_have_no_sheaves() {
    // 6.18: "When slub_debug is enabled for the cache, the sheaf_capacity argument is
    // ignored"; 7.0's calculate_sheaf_capacity() returns 0 with SLAB_DEBUG_FLAGS.
    let m = MachineBuilder::new()
        .ram(32 * MIB)
        .cpus(2)
        .no_holes()
        .slab(SlabConfig {
            debug: SlabFlags::DEBUG,
            percpu: SlabPercpu::Sheaves,
            ..SlabConfig::default()
        })
        .boot();
    m.run(|mm| {
        let mut any = false;
        mm.for_each_cache(|s| {
            any |= mm.sheaves_info(s.handle()).is_some();
            None::<()>
        });
        assert!(!any, "a debug cache got sheaves");
        let p = mm.kmalloc(64, Gfp::GFP_KERNEL).unwrap();
        mm.kfree(p).unwrap();
    });
    m.mm().check().unwrap();
}

#[test]
fn kmalloc_and_kmem_cache_alloc_go_through_the_sheaves() {
    let m = sheaves_machine(2, true);
    let r = m
        .run(|mm| mm.kmem_cache_create("sheaf_obj", 100, 0, SlabFlags::empty(), None))
        .unwrap();
    m.run(|mm| {
        let k64 = kmalloc_cache(mm, 64);
        let (a0, f0) = (
            stat(mm, k64, StatItem::AllocPcs),
            stat(mm, k64, StatItem::FreePcs),
        );
        for _ in 0..1000 {
            let p = mm.kmalloc(64, Gfp::GFP_KERNEL).unwrap();
            let q = mm.kmem_cache_alloc(r, Gfp::GFP_KERNEL).unwrap();
            assert_eq!(mm.ksize(p).unwrap(), 64);
            mm.kfree(p).unwrap();
            mm.kmem_cache_free(r, q).unwrap();
        }
        assert_eq!(stat(mm, k64, StatItem::AllocPcs) - a0, 1000);
        assert_eq!(stat(mm, k64, StatItem::FreePcs) - f0, 1000);
        assert_eq!(stat(mm, r, StatItem::AllocPcs), 1000);
        assert_eq!(stat(mm, r, StatItem::FreePcs), 1000);
        // The first allocation found the main sheaf empty and refilled a whole sheaf;
        // the rest came from it, none from the CPU slab's fast path directly.
        let cap = mm.sheaves_info(r).unwrap().capacity as u64;
        assert_eq!(stat(mm, r, StatItem::SheafRefill), cap);
        assert_eq!(
            stat(mm, r, StatItem::AllocFastpath) + stat(mm, r, StatItem::AllocSlowpath),
            cap
        );
        mm.kmem_cache_destroy(r).unwrap();
    });
    m.mm().check().unwrap();
}

#[test]
fn refills_and_flushes_come_in_whole_sheaves_and_the_barn_is_bounded() {
    let m = sheaves_machine(2, true);
    let r = m
        .run(|mm| mm.kmem_cache_create("sheaf_barn", 200, 0, SlabFlags::empty(), None))
        .unwrap();
    let cap = m.mm().sheaves_info(r).unwrap().capacity as usize;
    let n = cap * (MAX_FULL_SHEAVES as usize + 6);
    let objs: Vec<VirtAddr> = m.run(|mm| {
        (0..n)
            .map(|_| mm.kmem_cache_alloc(r, Gfp::GFP_KERNEL).unwrap())
            .collect()
    });
    m.mm().check().unwrap();
    m.run(|mm| {
        // Every refill filled an empty sheaf: whole sheaves only.
        let refilled = stat(mm, r, StatItem::SheafRefill);
        assert!(
            refilled >= n as u64 && refilled.is_multiple_of(cap as u64),
            "{refilled}"
        );
        assert_eq!(stat(mm, r, StatItem::AllocPcs), n as u64);
        for &p in &objs {
            mm.kmem_cache_free(r, p).unwrap();
        }
        let info = mm.sheaves_info(r).unwrap();
        assert!(
            info.barn_full <= MAX_FULL_SHEAVES,
            "barn holds {} full sheaves",
            info.barn_full
        );
        assert_eq!(info.barn_full, MAX_FULL_SHEAVES, "{info:?}");
        // Past the barn's limit, full spare sheaves were flushed to the slabs.
        assert!(stat(mm, r, StatItem::BarnPutFail) > 0);
        assert!(stat(mm, r, StatItem::SheafFlush) >= cap as u64);
        assert!(stat(mm, r, StatItem::SheafFlush).is_multiple_of(cap as u64));
        assert_eq!(stat(mm, r, StatItem::FreePcs), n as u64);
        // Objects in sheaves are in use for their slabs, as /proc/slabinfo counts them.
        let (_, total) = mm.node_counts(mm.cache(r).unwrap());
        let free = mm.free_objects_on_node(mm.cache(r).unwrap());
        assert!(total - free >= info.objects, "{info:?}");
        assert_eq!(
            info.objects,
            (info.cpus[0].0 + info.cpus[0].1.unwrap_or(0)) as u64
                + info.barn_full as u64 * cap as u64
        );
    });
    m.mm().check().unwrap();
    // Allocating again takes full sheaves from the barn.
    m.run(|mm| {
        let get0 = stat(mm, r, StatItem::BarnGet);
        let again: Vec<VirtAddr> = (0..4 * cap)
            .map(|_| mm.kmem_cache_alloc(r, Gfp::GFP_KERNEL).unwrap())
            .collect();
        assert!(stat(mm, r, StatItem::BarnGet) > get0);
        for p in again {
            mm.kmem_cache_free(r, p).unwrap();
        }
        // Shrink empties every sheaf and the barn, and gives every slab back.
        mm.kmem_cache_shrink(r).unwrap();
        let info = mm.sheaves_info(r).unwrap();
        assert_eq!(
            (info.objects, info.barn_full, info.barn_empty),
            (0, 0, 0),
            "{info:?}"
        );
        assert_eq!(mm.node_counts(mm.cache(r).unwrap()), (0, 0));
        mm.kmem_cache_destroy(r).unwrap();
    });
    m.mm().check().unwrap();
}

#[test]
fn frees_from_another_cpu_go_to_that_cpus_sheaves() {
    let m = sheaves_machine(2, true);
    let r = m
        .run(|mm| mm.kmem_cache_create("sheaf_remote", 96, 0, SlabFlags::empty(), None))
        .unwrap();
    let objs: Vec<VirtAddr> = m
        .on_cpu(0, Context::Process, |mm| {
            (0..500)
                .map(|_| mm.kmem_cache_alloc(r, Gfp::GFP_KERNEL).unwrap())
                .collect()
        })
        .unwrap();
    m.on_cpu(1, Context::Process, |mm| {
        for &p in &objs {
            mm.kmem_cache_free(r, p).unwrap();
        }
    })
    .unwrap();
    let info = m.mm().sheaves_info(r).unwrap();
    assert!(
        info.cpus[1].0 > 0,
        "CPU 1's main sheaf took the frees: {info:?}"
    );
    m.mm().check().unwrap();
    // CPU 1 allocates them back from its own sheaves.
    let again: Vec<VirtAddr> = m
        .on_cpu(1, Context::Process, |mm| {
            (0..100)
                .map(|_| mm.kmem_cache_alloc(r, Gfp::GFP_KERNEL).unwrap())
                .collect()
        })
        .unwrap();
    assert!(again.iter().all(|p| objs.contains(p)));
    m.on_cpu(0, Context::Process, |mm| {
        for p in again {
            mm.kmem_cache_free(r, p).unwrap();
        }
    })
    .unwrap();
    // Destroy flushes every CPU's sheaves and the barn first.
    m.run(|mm| mm.kmem_cache_destroy(r)).unwrap();
    m.mm().check().unwrap();
}

#[test]
fn destroy_gives_back_the_sheaves_and_every_page() {
    let m = sheaves_machine(4, false);
    shrink_all_caches(&m);
    let free0: u64 = m.mm().zones().iter().map(|z| z.free_pages()).sum();
    for round in 0..3 {
        let r = m
            .run(|mm| mm.kmem_cache_create("sheaf_life", 700, 0, SlabFlags::empty(), None))
            .unwrap();
        for cpu in 0..4 {
            m.on_cpu(cpu, Context::Process, |mm| {
                let objs: Vec<VirtAddr> = (0..200 + 50 * cpu)
                    .map(|_| mm.kmem_cache_alloc(r, Gfp::GFP_KERNEL).unwrap())
                    .collect();
                for p in objs {
                    mm.kmem_cache_free(r, p).unwrap();
                }
            })
            .unwrap();
        }
        assert!(m.mm().sheaves_info(r).unwrap().objects > 0);
        m.run(|mm| mm.kmem_cache_destroy(r))
            .unwrap_or_else(|e| panic!("round {round}: {e}"));
        m.mm().check().unwrap();
    }
    shrink_all_caches(&m);
    let free1: u64 = m.mm().zones().iter().map(|z| z.free_pages()).sum();
    assert_eq!(free1, free0, "pages lost to sheaves or barns");
}

#[test]
fn irq_at_every_window_with_sheaves() {
    // The interrupt handler allocates and frees on the same CPU; an interrupt in the
    // window inside the sheaves' local_trylock finds them locked and falls back to the
    // slab paths.
    let m = MachineBuilder::new()
        .ram(32 * MIB)
        .cpus(2)
        .no_holes()
        .seed(21)
        .slab_percpu(SlabPercpu::Sheaves)
        .boot();
    let fails0 = m.mm().sheaves_trylock_failures();
    run_sweeps_counting(&m, &[Source::Kmalloc(64), Source::Kmalloc(1024)], 2000);
    assert!(
        m.mm().sheaves_trylock_failures() > fails0,
        "no interrupt ever found the sheaves locked"
    );
}

#[test]
fn irq_at_every_window_of_a_kmem_cache_with_sheaves() {
    let m = MachineBuilder::new()
        .ram(32 * MIB)
        .cpus(3)
        .no_holes()
        .seed(22)
        .slab_percpu(SlabPercpu::Sheaves)
        .boot();
    let r = m
        .run(|mm| mm.kmem_cache_create("irq_sheaf", 5000, 0, SlabFlags::empty(), None))
        .unwrap();
    run_sweeps_counting(&m, &[Source::Cache(r, 5000), Source::Kmalloc(8192)], 1500);
    m.run(|mm| mm.kmem_cache_destroy(r)).unwrap();
    m.mm().check().unwrap();
}

#[test]
fn sheaf_fast_paths_have_two_windows_each() {
    let m = MachineBuilder::new()
        .ram(32 * MIB)
        .cpus(1)
        .no_holes()
        .slab_percpu(SlabPercpu::Sheaves)
        .boot();
    let p = m.run(|mm| mm.kmalloc(64, Gfp::GFP_KERNEL)).unwrap();
    let platform = m.mm().platform();
    platform.inject_irq(0, u64::MAX, Box::new(|_| panic!("must not fire")));
    let w = platform.irq_windows();
    let q = m.run(|mm| mm.kmalloc(64, Gfp::GFP_KERNEL)).unwrap();
    assert_eq!(platform.irq_windows() - w, 2, "kmalloc from the main sheaf");
    let w = platform.irq_windows();
    m.run(|mm| mm.kfree(q)).unwrap();
    assert_eq!(platform.irq_windows() - w, 2, "kfree to the main sheaf");
    platform.cancel_irq();
    m.run(|mm| mm.kfree(p)).unwrap();
}

#[test]
fn a_corrupted_sheaf_is_reported_not_followed() {
    let m = sheaves_machine(1, false);
    let r = m
        .run(|mm| mm.kmem_cache_create("sheaf_bad", 128, 0, SlabFlags::empty(), None))
        .unwrap();
    m.take_console();
    let p = m.run(|mm| mm.kmem_cache_alloc(r, Gfp::GFP_KERNEL)).unwrap();
    m.run(|mm| mm.kmem_cache_free(r, p)).unwrap();
    let info = m.mm().sheaves_info(r).unwrap();
    let (size, _) = info.cpus[0];
    // The object on top of the main sheaf becomes a wild pointer.
    let slot = info.mains[0] + 40 + 8 * (size as u64 - 1);
    m.run(|mm| mm.kwrite::<u64>(slot, 0xdead_0000_0000_beef).unwrap());
    let e = m.run(|mm| mm.kmem_cache_alloc(r, Gfp::GFP_KERNEL));
    assert!(e.is_err(), "a wild pointer was handed out: {e:?}");
    assert_eq!(m.mm().take_oopses(), 1);
    let console = m.take_console().join("\n");
    assert!(console.contains("general protection fault"), "{console}");
    // The machine carries on: the next allocation is a good object.
    let q = m.run(|mm| mm.kmem_cache_alloc(r, Gfp::GFP_KERNEL)).unwrap();
    m.run(|mm| mm.kmem_cache_free(r, q)).unwrap();
    // A main sheaf pointer that leads nowhere: reported, and the cache falls back to
    // its slabs.
    let pcs_main = m.mm().sheaves_info(r).unwrap().mains[0];
    m.run(|mm| mm.kwrite::<u64>(pcs_main + 16, 0).unwrap());
    assert!(m.run(|mm| mm.kmem_cache_alloc(r, Gfp::GFP_KERNEL)).is_err());
    assert_eq!(m.mm().take_oopses(), 1);
    let q = m.run(|mm| mm.kmem_cache_alloc(r, Gfp::GFP_KERNEL)).unwrap();
    m.run(|mm| mm.kmem_cache_free(r, q)).unwrap();
}

#[test]
fn slabinfo_and_check_count_sheaf_objects_once() {
    let m = sheaves_machine(2, false);
    let r = m
        .run(|mm| mm.kmem_cache_create("sheaf_count", 256, 0, SlabFlags::empty(), None))
        .unwrap();
    let objs: Vec<VirtAddr> = m.run(|mm| {
        (0..300)
            .map(|_| mm.kmem_cache_alloc(r, Gfp::GFP_KERNEL).unwrap())
            .collect()
    });
    m.run(|mm| {
        for &p in &objs[..150] {
            mm.kmem_cache_free(r, p).unwrap();
        }
    });
    m.mm().check().unwrap();
    // /proc/slabinfo counts objects in sheaves as active (their slabs count them in
    // use), as the kernel's does; so do objects on the CPU slab's freelist.
    let info = m.mm().sheaves_info(r).unwrap();
    assert!(info.objects > 0);
    let active = m.run(|mm| kmemlab_mm::procfs::slab_info(mm, mm.cache(r).unwrap()).active_objs);
    assert!(active >= 150 + info.objects, "{active} {info:?}");
    // Flushed (shrink), the sheaves' objects are free again: active is what is live.
    m.run(|mm| mm.kmem_cache_shrink(r).unwrap());
    assert_eq!(m.mm().sheaves_info(r).unwrap().objects, 0);
    let active = m.run(|mm| kmemlab_mm::procfs::slab_info(mm, mm.cache(r).unwrap()).active_objs);
    assert_eq!(active, 150);
    m.mm().check().unwrap();
    m.run(|mm| {
        for &p in &objs[150..] {
            mm.kmem_cache_free(r, p).unwrap();
        }
        mm.kmem_cache_destroy(r).unwrap();
    });
    m.mm().check().unwrap();
}
