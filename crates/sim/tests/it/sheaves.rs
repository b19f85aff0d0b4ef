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

/// `cat /sys/kernel/slab/<dir>/<attr>`, `None` when there is no such file.
fn sysfs(mm: &Mm<SimPlatform>, dir: &str, attr: &str) -> Option<String> {
    let mut out = String::new();
    mm.sysfs_slab_render(&format!("/sys/kernel/slab/{dir}/{attr}"), &mut out)
        .unwrap()
        .then_some(out)
}

#[test]
fn sysfs_sheaf_capacity_is_6_18s_file() {
    // 6.18's sheaf_capacity_show(): "%u\n", 0 for a cache without sheaves.
    let m = sheaves_machine(2, false);
    m.run(|mm| {
        for (size, name) in [(64, "64"), (512, "512"), (2048, "2k"), (8192, "8k")] {
            let info = mm.sheaves_info(kmalloc_cache(mm, size)).unwrap();
            let file = sysfs(mm, &format!("kmalloc-{name}"), "sheaf_capacity");
            assert_eq!(file, Some(format!("{}\n", info.capacity)), "kmalloc-{name}");
        }
        assert_eq!(
            sysfs(mm, "kmem_cache", "sheaf_capacity").as_deref(),
            Some("0\n")
        );
    });
    // 6.6, the default, has no such file.
    let m = MachineBuilder::new()
        .ram(32 * MIB)
        .cpus(2)
        .no_holes()
        .boot();
    m.run(|mm| {
        assert!(sysfs(mm, "kmem_cache", "order").is_some());
        assert!(sysfs(mm, "kmem_cache", "sheaf_capacity").is_none());
    });
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
    let platform = m.platform();
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

/// Run `f` on CPU 0 in process context.
fn on0<R>(m: &Machine, f: impl FnOnce(&Mm<SimPlatform>) -> R) -> R {
    m.on_cpu(0, Context::Process, f).unwrap()
}

/// CPU 0's main sheaf size, spare size, and the barn's full and empty sheaves.
fn pcs_state(m: &Machine, r: KmemCacheRef) -> (u32, Option<u32>, u32, u32) {
    let info = m.mm().sheaves_info(r).unwrap();
    (
        info.cpus[0].0,
        info.cpus[0].1,
        info.barn_full,
        info.barn_empty,
    )
}

#[test]
fn bulk_alloc_drains_the_main_sheaf_first_in_the_kernels_order() {
    let m = sheaves_machine(2, true);
    let r = on0(&m, |mm| {
        mm.kmem_cache_create("sheaf_bulk", 100, 0, SlabFlags::empty(), None)
    })
    .unwrap();
    let cap = m.mm().sheaves_info(r).unwrap().capacity;
    // One whole sheaf handed out one at a time: the main sheaf is empty again, and
    // three frees put a, b, c on it in that order.
    let objs: Vec<VirtAddr> = on0(&m, |mm| {
        (0..cap)
            .map(|_| mm.kmem_cache_alloc(r, Gfp::GFP_KERNEL).unwrap())
            .collect()
    });
    assert_eq!(pcs_state(&m, r).0, 0);
    let (a, b, c) = (objs[0], objs[1], objs[2]);
    on0(&m, |mm| {
        for p in [a, b, c] {
            mm.kmem_cache_free(r, p).unwrap();
        }
    });
    assert_eq!(pcs_state(&m, r).0, 3);
    let (pcs0, fast0, slow0) = on0(&m, |mm| {
        (
            stat(mm, r, StatItem::AllocPcs),
            stat(mm, r, StatItem::AllocFastpath),
            stat(mm, r, StatItem::AllocSlowpath),
        )
    });
    // alloc_from_pcs_bulk(): memcpy(p, main->objects + main->size - 2, 2).
    let two = on0(&m, |mm| {
        let mut two = [VirtAddr(0); 2];
        assert_eq!(
            mm.kmem_cache_alloc_bulk(r, Gfp::GFP_KERNEL, &mut two),
            Ok(2)
        );
        two
    });
    assert_eq!(two, [b, c], "the top of the main sheaf, in slot order");
    assert_eq!(pcs_state(&m, r).0, 1);
    on0(&m, |mm| {
        assert_eq!(stat(mm, r, StatItem::AllocPcs), pcs0 + 2);
        assert_eq!(
            stat(mm, r, StatItem::AllocFastpath),
            fast0,
            "no slab touched"
        );
        assert_eq!(stat(mm, r, StatItem::AllocSlowpath), slow0);
    });
    // Three more: a from the main sheaf; no spare and no full sheaf in the barn
    // (BARN_GET_FAIL), so the other two come from the CPU slab.
    let (spare, full) = (pcs_state(&m, r).1, pcs_state(&m, r).2);
    assert_eq!((spare, full), (None, 0));
    let three = on0(&m, |mm| {
        let fail0 = stat(mm, r, StatItem::BarnGetFail);
        let mut three = [VirtAddr(0); 3];
        assert_eq!(
            mm.kmem_cache_alloc_bulk(r, Gfp::GFP_KERNEL, &mut three),
            Ok(3)
        );
        assert_eq!(stat(mm, r, StatItem::AllocPcs), pcs0 + 3);
        assert_eq!(stat(mm, r, StatItem::BarnGetFail), fail0 + 1);
        assert_eq!(
            stat(mm, r, StatItem::AllocFastpath) + stat(mm, r, StatItem::AllocSlowpath),
            fast0 + slow0 + 2
        );
        // No sheaf was refilled for a bulk allocation.
        assert_eq!(stat(mm, r, StatItem::SheafRefill), cap as u64);
        three
    });
    assert_eq!(three[0], a);
    assert!(!objs.contains(&three[1]) && !objs.contains(&three[2]));
    assert_eq!(pcs_state(&m, r).0, 0);
    m.mm().check().unwrap();
    on0(&m, |mm| {
        let mut all: Vec<VirtAddr> = objs[3..].to_vec();
        all.extend_from_slice(&two);
        all.extend_from_slice(&three);
        mm.kmem_cache_free_bulk(r, &mut all).unwrap();
        mm.kmem_cache_destroy(r).unwrap();
    });
    m.mm().check().unwrap();
}

#[test]
fn bulk_alloc_spans_main_spare_and_barn_then_falls_back_to_the_slab() {
    let m = sheaves_machine(2, true);
    let r = on0(&m, |mm| {
        mm.kmem_cache_create("sheaf_span", 200, 0, SlabFlags::empty(), None)
    })
    .unwrap();
    let cap = m.mm().sheaves_info(r).unwrap().capacity;
    // Allocated and freed one at a time: the frees fill the main sheaf, the spare and
    // full sheaves in the barn.
    let n = cap as usize * 4 + cap as usize / 2;
    on0(&m, |mm| {
        let objs: Vec<VirtAddr> = (0..n)
            .map(|_| mm.kmem_cache_alloc(r, Gfp::GFP_KERNEL).unwrap())
            .collect();
        for p in objs {
            mm.kmem_cache_free(r, p).unwrap();
        }
    });
    let (main, spare, full, empty0) = pcs_state(&m, r);
    let spare = spare.expect("a spare sheaf");
    assert!(main > 0 && spare > 0 && full >= 1, "{:?}", pcs_state(&m, r));
    let in_sheaves = (main + spare + full * cap) as usize;
    m.mm().check().unwrap();
    let objs = on0(&m, |mm| {
        let before: Vec<u64> = [
            StatItem::AllocPcs,
            StatItem::BarnGet,
            StatItem::BarnGetFail,
            StatItem::AllocFastpath,
            StatItem::AllocSlowpath,
        ]
        .iter()
        .map(|&i| stat(mm, r, i))
        .collect();
        let mut objs = vec![VirtAddr(0); in_sheaves + 7];
        assert_eq!(
            mm.kmem_cache_alloc_bulk(r, Gfp::GFP_KERNEL, &mut objs),
            Ok(objs.len())
        );
        assert_eq!(
            stat(mm, r, StatItem::AllocPcs) - before[0],
            in_sheaves as u64
        );
        assert_eq!(stat(mm, r, StatItem::BarnGet) - before[1], full as u64);
        assert_eq!(stat(mm, r, StatItem::BarnGetFail) - before[2], 1);
        assert_eq!(
            stat(mm, r, StatItem::AllocFastpath) + stat(mm, r, StatItem::AllocSlowpath)
                - before[3]
                - before[4],
            7,
            "the rest from the CPU slab"
        );
        let unique: std::collections::HashSet<_> = objs.iter().collect();
        assert_eq!(unique.len(), objs.len(), "an object handed out twice");
        objs
    });
    // Every sheaf is empty now; each full one taken from the barn left an empty one.
    let full0 = full;
    let (main, spare, full, empty) = pcs_state(&m, r);
    assert_eq!((main, spare, full), (0, Some(0), 0));
    assert_eq!(empty, empty0 + full0);
    m.mm().check().unwrap();
    on0(&m, |mm| {
        let mut objs = objs;
        mm.kmem_cache_free_bulk(r, &mut objs).unwrap();
        mm.kmem_cache_destroy(r).unwrap();
    });
    m.mm().check().unwrap();
}

#[test]
fn bulk_free_fills_the_sheaves_and_exchanges_full_ones_at_the_barn() {
    let m = sheaves_machine(2, true);
    let r = on0(&m, |mm| {
        mm.kmem_cache_create("sheaf_bfree", 64, 0, SlabFlags::empty(), None)
    })
    .unwrap();
    let cap = m.mm().sheaves_info(r).unwrap().capacity as usize;
    // Fill the barn with full sheaves, then take them all back in one bulk: the barn
    // keeps the empty sheaves they came in.
    let n = cap * 5;
    let objs = on0(&m, |mm| {
        let objs: Vec<VirtAddr> = (0..n)
            .map(|_| mm.kmem_cache_alloc(r, Gfp::GFP_KERNEL).unwrap())
            .collect();
        for &p in &objs {
            mm.kmem_cache_free(r, p).unwrap();
        }
        let held = mm.sheaves_info(r).unwrap().objects as usize;
        let mut objs = vec![VirtAddr(0); held];
        mm.kmem_cache_alloc_bulk(r, Gfp::GFP_KERNEL, &mut objs)
            .unwrap();
        // And more than the sheaves can take back, from the slab (BARN_GET_FAIL).
        let mut extra = vec![VirtAddr(0); 2 * cap + 5];
        mm.kmem_cache_alloc_bulk(r, Gfp::GFP_KERNEL, &mut extra)
            .unwrap();
        objs.extend_from_slice(&extra);
        objs
    });
    let (main, spare, full, empties) = pcs_state(&m, r);
    assert_eq!((main, spare, full), (0, Some(0), 0));
    assert!(empties >= 2, "{:?}", pcs_state(&m, r));
    m.mm().check().unwrap();
    // The bulk free: main and spare fill (the spare swapped in), then each full main
    // goes to the barn for an empty one (BARN_PUT) until the barn has none left
    // (BARN_PUT_FAIL), and the rest goes to the slabs.
    on0(&m, |mm| {
        let items = [
            StatItem::FreePcs,
            StatItem::BarnPut,
            StatItem::BarnPutFail,
            StatItem::FreeFastpath,
            StatItem::FreeSlowpath,
        ];
        let before: Vec<u64> = items.iter().map(|&i| stat(mm, r, i)).collect();
        let mut all = objs.clone();
        mm.kmem_cache_free_bulk(r, &mut all).unwrap();
        let d: Vec<u64> = items
            .iter()
            .zip(&before)
            .map(|(&i, b)| stat(mm, r, i) - b)
            .collect();
        let placed = 2 * cap + empties as usize * cap;
        let expect_pcs = placed.min(objs.len());
        assert!(objs.len() > placed, "the test must overflow the sheaves");
        assert_eq!(d[0], expect_pcs as u64, "FREE_PCS");
        assert_eq!(d[1], empties as u64, "BARN_PUT");
        assert_eq!(d[2], 1, "BARN_PUT_FAIL");
        assert!(d[3] + d[4] >= 1, "the rest to the slabs");
        let info = mm.sheaves_info(r).unwrap();
        assert_eq!(info.objects as usize, expect_pcs, "{info:?}");
        // The main sheaf holds the last objects placed, in array order
        // (memcpy(main->objects + main->size, p, batch)): a bulk allocation of as many
        // gets them back in that order.
        let top = info.cpus[0].0 as usize;
        let mut back = vec![VirtAddr(0); top];
        mm.kmem_cache_alloc_bulk(r, Gfp::GFP_KERNEL, &mut back)
            .unwrap();
        assert_eq!(back[..], all[placed - top..placed]);
        mm.kmem_cache_free_bulk(r, &mut back).unwrap();
    });
    m.mm().check().unwrap();
    on0(&m, |mm| mm.kmem_cache_destroy(r)).unwrap();
    m.mm().check().unwrap();
}

#[test]
fn a_corrupted_sheaf_fails_a_bulk_allocation_and_is_not_followed() {
    let m = sheaves_machine(1, false);
    let r = m
        .run(|mm| mm.kmem_cache_create("sheaf_bulk_bad", 128, 0, SlabFlags::empty(), None))
        .unwrap();
    m.take_console();
    // Four objects on the main sheaf; the second from the top becomes a wild pointer.
    let objs: Vec<VirtAddr> = m.run(|mm| {
        let objs: Vec<VirtAddr> = (0..4)
            .map(|_| mm.kmem_cache_alloc(r, Gfp::GFP_KERNEL).unwrap())
            .collect();
        for &p in &objs {
            mm.kmem_cache_free(r, p).unwrap();
        }
        objs
    });
    let info = m.mm().sheaves_info(r).unwrap();
    let size = info.cpus[0].0 as u64;
    assert!(size >= 4);
    let slot = info.mains[0] + 40 + 8 * (size - 2);
    m.run(|mm| mm.kwrite::<u64>(slot, 0xdead_0000_0000_beef).unwrap());
    let (e, arr) = m.run(|mm| {
        let mut arr = [VirtAddr(0); 8];
        (mm.kmem_cache_alloc_bulk(r, Gfp::GFP_KERNEL, &mut arr), arr)
    });
    assert!(e.is_err(), "a wild pointer was handed out: {arr:?}");
    assert!(
        arr.iter().all(|&p| p == VirtAddr(0)),
        "nothing is handed out"
    );
    assert_eq!(m.mm().take_oopses(), 1);
    let console = m.take_console().join("\n");
    assert!(console.contains("general protection fault"), "{console}");
    // The objects it took before the bad one went back to their slab: the machine
    // carries on, and a bulk free through the sheaves works.
    m.run(|mm| {
        let mut more = [VirtAddr(0); 8];
        mm.kmem_cache_alloc_bulk(r, Gfp::GFP_KERNEL, &mut more)
            .unwrap();
        assert!(!more.contains(&VirtAddr(0xdead_0000_0000_beef)));
        mm.kmem_cache_free_bulk(r, &mut more).unwrap();
    });
    assert!(objs.len() == 4);
    assert_eq!(m.mm().take_oopses(), 0);
}

#[test]
fn a_duplicate_in_a_long_bulk_free_goes_into_the_sheaves_as_in_6_18() {
    // 6.18's free_to_pcs_bulk() copies the array into the main sheaf without looking for
    // duplicates (as free_to_pcs() for a single free). With one CPU and an empty barn, the
    // first 123 (the capacity) go into the main sheaf and the rest, the second copy among
    // them, to the slabs (`no_empty`: __kmem_cache_free_bulk()): the object is in a sheaf
    // and free on its slab, which the checker reports.
    let m = sheaves_machine(1, true);
    let r = m
        .run(|mm| mm.kmem_cache_create("sheaf_bulk_dup", 64, 0, SlabFlags::empty(), None))
        .unwrap();
    m.take_console();
    let bugs = || {
        m.mm()
            .events()
            .bug_slab
            .load(std::sync::atomic::Ordering::Relaxed)
    };
    let before = bugs();
    let (result, twice) = m.run(|mm| {
        let mut objs = vec![VirtAddr(0); 300];
        mm.kmem_cache_alloc_bulk(r, Gfp::GFP_KERNEL, &mut objs)
            .unwrap();
        // Named twice, 197 apart.
        objs.insert(200, objs[3]);
        let twice = objs[3];
        (mm.kmem_cache_free_bulk(r, &mut objs), twice)
    });
    assert_eq!(result, Ok(()));
    assert_eq!(bugs(), before, "no report when it is freed");
    assert!(m.take_console().is_empty());
    assert_eq!(m.mm().sheaves_info(r).unwrap().objects, 123);
    let e = m.mm().check().unwrap_err().to_string();
    assert!(
        e.contains("sheaf_bulk_dup") && e.contains("free on its slab's freelist too"),
        "{e}"
    );
    // It is handed out twice (from the sheaf and from its slab), as 6.18's would.
    let got = m.run(|mm| {
        let mut objs = vec![VirtAddr(0); 400];
        mm.kmem_cache_alloc_bulk(r, Gfp::GFP_KERNEL, &mut objs)
            .unwrap();
        objs
    });
    assert_eq!(got.iter().filter(|&&p| p == twice).count(), 2);
    // Freed once (the other copy forgotten), the machine is consistent again.
    let mut once: Vec<VirtAddr> = got.iter().copied().filter(|&p| p != twice).collect();
    once.push(twice);
    m.run(|mm| {
        mm.kmem_cache_free_bulk(r, &mut once).unwrap();
        mm.kmem_cache_destroy(r).unwrap();
    });
    m.mm().check().unwrap();
}

/// `kfree(r); kfree(r)` of a 300-byte kmalloc on a machine with sheaves.
#[test]
fn a_double_free_into_the_sheaves_succeeds_as_in_6_18_and_check_reports_it() {
    let m = sheaves_machine(1, false);
    m.take_console();
    let (x, r) = m.run(|mm| {
        let x = mm.kmalloc(300, Gfp::GFP_KERNEL).unwrap();
        let r = mm.kmalloc(300, Gfp::GFP_KERNEL).unwrap();
        (x, r)
    });
    m.mm().check().unwrap();
    // free_to_pcs() has no double-free check: both frees land in the main sheaf.
    m.run(|mm| {
        mm.kfree(r).unwrap();
        mm.kfree(r).unwrap();
    });
    assert!(m.take_console().is_empty());
    let e = m.mm().check().unwrap_err();
    let text = e.to_string();
    assert!(
        text.contains("kmalloc-512") && text.contains("in the sheaves twice"),
        "{text}"
    );
    // 6.18's alloc_from_pcs() hands the object out twice: two callers share it.
    let (a, b) = m.run(|mm| {
        (
            mm.kmalloc(300, Gfp::GFP_KERNEL).unwrap(),
            mm.kmalloc(300, Gfp::GFP_KERNEL).unwrap(),
        )
    });
    assert_eq!((a, b), (r, r));
    // Out of the sheaves again, the state is consistent (one allocation, used twice).
    m.mm().check().unwrap();
    m.run(|mm| {
        mm.kfree(a).unwrap();
        mm.kfree(x).unwrap();
    });
    m.mm().check().unwrap();
}

/// An object given back to its slab (a shrink flushes the sheaves), then freed again: it
/// is in the main sheaf and on its slab's freelist, not at the head.
#[test]
fn check_reports_an_object_in_a_sheaf_and_on_its_slabs_freelist() {
    let m = sheaves_machine(1, false);
    let r = m
        .run(|mm| mm.kmem_cache_create("sheaf_and_slab", 64, 0, SlabFlags::empty(), None))
        .unwrap();
    let mut objs: Vec<VirtAddr> = m.run(|mm| {
        (0..200)
            .map(|_| mm.kmem_cache_alloc(r, Gfp::GFP_KERNEL).unwrap())
            .collect()
    });
    // Six objects of one slab, the highest address freed first.
    let slab_of = |p: VirtAddr| p.0 >> 12;
    let first = objs[100];
    let mut same: Vec<VirtAddr> = objs
        .iter()
        .copied()
        .filter(|&p| slab_of(p) == slab_of(first))
        .collect();
    same.sort();
    let freed: Vec<VirtAddr> = same.iter().rev().take(6).copied().collect();
    assert_eq!(freed.len(), 6);
    let victim = freed[0];
    objs.retain(|p| !freed.contains(p));
    m.run(|mm| {
        for &p in &freed {
            mm.kmem_cache_free(r, p).unwrap();
        }
        mm.kmem_cache_shrink(r).unwrap();
    });
    m.mm().check().unwrap();
    assert_eq!(m.mm().sheaves_info(r).unwrap().objects, 0);
    // The double free goes into the sheaf without a word (free_to_pcs()).
    m.run(|mm| mm.kmem_cache_free(r, victim)).unwrap();
    let e = m.mm().check().unwrap_err().to_string();
    assert!(
        e.contains("sheaf_and_slab") && e.contains("free on its slab's freelist too"),
        "{e}"
    );
}

/// 6.18's `refill_sheaf()` is one `__kmem_cache_alloc_bulk()` (the CPU freelist drained
/// with interrupts off), and `sheaf_flush_unused()` / `sheaf_flush_main()` are
/// `__kmem_cache_free_bulk()` (one `do_slab_free()` per detached freelist, that is per
/// slab): not a single allocation or free per object.
#[test]
fn refill_and_flush_go_through_the_bulk_functions() {
    let m = sheaves_machine(1, true);
    let r = m
        .run(|mm| mm.kmem_cache_create("sheaf_bulk_fill", 64, 0, SlabFlags::empty(), None))
        .unwrap();
    let cap = m.mm().sheaves_info(r).unwrap().capacity as u64;
    let platform = m.platform();
    platform.inject_irq(0, u64::MAX, Box::new(|_| panic!("must not fire")));
    let w = platform.irq_windows();
    // The first allocation refills an empty sheaf: whole, with interrupts off (the single
    // allocation path would pass two interrupt windows per object).
    let first = m.run(|mm| mm.kmem_cache_alloc(r, Gfp::GFP_KERNEL)).unwrap();
    let windows = platform.irq_windows() - w;
    platform.cancel_irq();
    assert!(
        windows < cap,
        "{windows} interrupt windows for a refill of {cap}"
    );
    let objs: Vec<VirtAddr> = m.run(|mm| {
        assert_eq!(stat(mm, r, StatItem::SheafRefill), cap);
        // Each object off the CPU freelist (ALLOC_FASTPATH) or from ___slab_alloc().
        assert_eq!(
            stat(mm, r, StatItem::AllocFastpath) + stat(mm, r, StatItem::AllocSlowpath),
            cap
        );
        (1..cap)
            .map(|_| mm.kmem_cache_alloc(r, Gfp::GFP_KERNEL).unwrap())
            .chain([first])
            .collect()
    });
    let mut slabs: Vec<u64> = objs.iter().map(|p| p.0 >> 12).collect();
    slabs.sort();
    slabs.dedup();
    m.run(|mm| {
        for &p in &objs {
            mm.kmem_cache_free(r, p).unwrap();
        }
        let frees = |mm: &Mm<SimPlatform>| {
            stat(mm, r, StatItem::FreeFastpath) + stat(mm, r, StatItem::FreeSlowpath)
        };
        let before = frees(mm);
        mm.kmem_cache_shrink(r).unwrap();
        assert_eq!(stat(mm, r, StatItem::SheafFlush), cap);
        // One free per detached freelist: sheaf_flush_main() takes the main sheaf out in
        // batches of PCS_BATCH_MAX (32), each freed as one detached freelist per slab.
        let paths = frees(mm) - before;
        let batches = cap.div_ceil(32);
        assert!(
            paths <= batches + slabs.len() as u64,
            "{paths} frees for {cap} objects of {} slabs",
            slabs.len()
        );
        mm.kmem_cache_destroy(r).unwrap();
    });
    m.mm().check().unwrap();
}

/// The `local_trylock()` failures are counted per CPU in each cache's
/// `slub_percpu_sheaves`; a cache's count outlives it (`pcs_destroy()` folds it in).
#[test]
fn trylock_failures_are_counted_per_cpu_and_kept_after_destroy() {
    let m = sheaves_machine(1, false);
    let r = m
        .run(|mm| mm.kmem_cache_create("sheaf_trylock", 64, 0, SlabFlags::empty(), None))
        .unwrap();
    let p = m.run(|mm| mm.kmem_cache_alloc(r, Gfp::GFP_KERNEL)).unwrap();
    let fails0 = m.mm().sheaves_trylock_failures();
    // The second window of kmem_cache_alloc() is inside the local_trylock: the
    // interrupt's own allocation finds the sheaves locked and takes the slab path.
    let got = std::sync::Arc::new(std::sync::Mutex::new(None));
    let slot = got.clone();
    m.platform().inject_irq(
        0,
        1,
        Box::new(move |mm| {
            *slot.lock().unwrap() = Some(mm.kmem_cache_alloc(r, Gfp::GFP_ATOMIC).unwrap());
        }),
    );
    let q = m.run(|mm| mm.kmem_cache_alloc(r, Gfp::GFP_KERNEL)).unwrap();
    let in_irq = got.lock().unwrap().take().expect("the interrupt ran");
    assert_eq!(m.mm().sheaves_trylock_failures(), fails0 + 1);
    m.run(|mm| {
        for o in [p, q, in_irq] {
            mm.kmem_cache_free(r, o).unwrap();
        }
        mm.kmem_cache_destroy(r).unwrap();
    });
    assert_eq!(m.mm().sheaves_trylock_failures(), fails0 + 1);
    m.mm().check().unwrap();
}
