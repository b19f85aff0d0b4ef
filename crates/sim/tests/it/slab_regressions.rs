//! Regressions found in review: each a way a caller could make the slab allocator panic,
//! hang, leak or accept a double free.

use std::sync::Barrier;

use crate::fixtures::MachineBuilder;
use kmemlab_mm::slab::{Reason, SlabConfig, SlabError, SlabFlags};
use kmemlab_mm::{Context, Gfp, Profile, VirtAddr};

#[test]
fn highmem_and_dma32_flags_are_fixed_up_not_fatal() {
    let m = MachineBuilder::new()
        .profile(Profile::I386)
        .ram(1 << 30)
        .cpus(1)
        .boot();
    let c = m
        .run(|mm| mm.kmem_cache_create("hm", 64, 0, SlabFlags::empty(), None))
        .unwrap();
    let p = m
        .run(|mm| mm.kmem_cache_alloc(c, Gfp::GFP_KERNEL | Gfp::__GFP_HIGHMEM))
        .unwrap();
    let big = m
        .run(|mm| mm.kmalloc(20000, Gfp::GFP_KERNEL | Gfp::__GFP_HIGHMEM))
        .unwrap();
    let console = m.take_console();
    assert!(
        console
            .iter()
            .any(|l| l.starts_with("Unexpected gfp:") && l.ends_with("Fix your code!")),
        "{console:?}"
    );
    assert!(m.mm().layout().virt_to_phys(p.0).is_some());
    m.run(|mm| {
        mm.kmem_cache_free(c, p).unwrap();
        mm.kfree(big).unwrap();
    });
    m.mm().check().unwrap();
}

#[test]
fn alignment_is_bounded() {
    let m = MachineBuilder::new().ram(64 << 20).cpus(1).boot();
    for align in [1usize << 31, 1 << 32, 8192] {
        let r = m.run(|mm| mm.kmem_cache_create("al", 8, align, SlabFlags::RED_ZONE, None));
        assert!(matches!(r, Err(SlabError::BadArgs(_))), "{align}: {r:?}");
    }
    assert!(m
        .run(|mm| mm.kmem_cache_create("al", 8, 4096, SlabFlags::RED_ZONE, None))
        .is_ok());
}

#[test]
fn two_cpus_shrinking_at_once_do_not_wait_for_each_other() {
    let m = MachineBuilder::new().ram(64 << 20).cpus(2).boot();
    let c = m
        .run(|mm| mm.kmem_cache_create("both", 64, 0, SlabFlags::empty(), None))
        .unwrap();
    let ready = Barrier::new(2);
    std::thread::scope(|s| {
        for cpu in 0..2 {
            let (m, ready) = (&m, &ready);
            s.spawn(move || {
                m.on_cpu(cpu, Context::Process, |mm| {
                    let p = mm.kmem_cache_alloc(c, Gfp::GFP_KERNEL).unwrap();
                    mm.kmem_cache_free(c, p).unwrap();
                    ready.wait();
                    for _ in 0..50 {
                        mm.kmem_cache_shrink(c).unwrap();
                    }
                })
                .unwrap();
            });
        }
    });
    m.run(|mm| mm.kmem_cache_destroy(c)).unwrap();
    m.mm().check().unwrap();
}

#[test]
fn debug_caches_without_f_still_refuse_a_double_free() {
    for letters in ["Z", "P", "U"] {
        let slab = SlabConfig {
            debug: SlabFlags::parse_slab_debug(letters).unwrap(),
            ..SlabConfig::default()
        };
        let m = MachineBuilder::new()
            .ram(64 << 20)
            .cpus(1)
            .slab(slab)
            .boot();
        let p = m.run(|mm| mm.kmalloc(64, Gfp::GFP_KERNEL)).unwrap();
        m.run(|mm| mm.kfree(p)).unwrap();
        assert!(m.run(|mm| mm.kfree(p)).is_err(), "slab_debug={letters}");
        let a = m.run(|mm| mm.kmalloc(64, Gfp::GFP_KERNEL)).unwrap();
        let b = m.run(|mm| mm.kmalloc(64, Gfp::GFP_KERNEL)).unwrap();
        assert_ne!(a, b, "slab_debug={letters}: one object handed out twice");
        m.mm().check().unwrap();
    }
}

#[test]
fn refused_double_free_with_init_on_free_leaks_nothing() {
    let m = MachineBuilder::new()
        .ram(64 << 20)
        .cpus(1)
        .init_on(false, true)
        .boot();
    let c = m
        .run(|mm| mm.kmem_cache_create("iof", 64, 0, SlabFlags::empty(), None))
        .unwrap();
    let p = m.run(|mm| mm.kmem_cache_alloc(c, Gfp::GFP_KERNEL)).unwrap();
    m.run(|mm| mm.kmem_cache_free(c, p)).unwrap();
    assert!(m.run(|mm| mm.kmem_cache_free(c, p)).is_err());
    m.run(|mm| mm.kmem_cache_shrink(c)).unwrap();
    m.run(|mm| mm.kmem_cache_destroy(c))
        .expect("no object left behind");
    m.mm().check().unwrap();
}

#[test]
fn the_allocators_own_caches_cannot_be_used_directly() {
    let m = MachineBuilder::new().ram(64 << 20).cpus(1).boot();
    let live = m
        .run(|mm| mm.kmem_cache_create("live", 64, 0, SlabFlags::empty(), None))
        .unwrap();
    for name in ["kmem_cache", "kmem_cache_node"] {
        let r = m.mm().find_cache(name).unwrap();
        assert!(m.run(|mm| mm.kmem_cache_alloc(r, Gfp::GFP_KERNEL)).is_err());
        assert!(m
            .run(|mm| mm.kmem_cache_free(r, kmemlab_mm::VirtAddr(live.0)))
            .is_err());
    }
    assert!(m.mm().cache(live).is_ok(), "the live cache is untouched");
}

#[test]
fn too_many_caches_is_refused_without_leaking() {
    let m = MachineBuilder::new().ram(256 << 20).cpus(1).boot();
    let mut made = 0;
    loop {
        let name = format!("c{made}");
        match m.run(|mm| mm.kmem_cache_create(&name, 32, 0, SlabFlags::empty(), None)) {
            Ok(_) => made += 1,
            Err(SlabError::TooManyCaches) => break,
            Err(e) => panic!("{e}"),
        }
    }
    let before = m.mm().check().unwrap();
    for i in 0..20 {
        let name = format!("extra{i}");
        let r = m.run(|mm| mm.kmem_cache_create(&name, 32, 0, SlabFlags::empty(), None));
        assert_eq!(r, Err(SlabError::TooManyCaches));
    }
    assert_eq!(
        m.mm().check().unwrap(),
        before,
        "failed creates leaked memory"
    );
}

/// A free pointer overwritten inside a free object of a cache without slab_debug (hardened
/// freelist, as a distribution kernel). The allocation that takes the object hands it out
/// (its own address is good) and makes the garbage the head of the CPU's lockless freelist;
/// the next allocation checks that head against the CPU slab in hand (an object boundary
/// inside it) before reading through it, and fails with the fault the kernel would take
/// there, an oops. The CPU freelist is dropped and the cache carries on.
#[test]
fn a_corrupted_free_pointer_on_the_cpu_freelist_is_an_oops_and_the_cache_carries_on() {
    let m = MachineBuilder::new().ram(64 << 20).cpus(1).boot();
    let c = m
        .run(|mm| mm.kmem_cache_create("fp_fast", 64, 0, SlabFlags::empty(), None))
        .unwrap();
    let offset = m.mm().cache(c).unwrap().fp_offset() as u64;
    let a = m.run(|mm| mm.kmem_cache_alloc(c, Gfp::GFP_KERNEL)).unwrap();
    let b = m.run(|mm| mm.kmem_cache_alloc(c, Gfp::GFP_KERNEL)).unwrap();
    // The CPU freelist is now a -> b -> ...
    m.run(|mm| mm.kmem_cache_free(c, b)).unwrap();
    m.run(|mm| mm.kmem_cache_free(c, a)).unwrap();
    m.take_console();
    assert_eq!(m.take_oopses(), 0);
    m.mm()
        .copy_to_kernel(
            VirtAddr(a.0 + offset),
            &0x4141_4141_4141_4141u64.to_le_bytes(),
        )
        .unwrap();
    let first = m.run(|mm| mm.kmem_cache_alloc(c, Gfp::GFP_KERNEL)).unwrap();
    assert_eq!(
        first, a,
        "the object whose free pointer was overwritten comes first"
    );
    let r = m.run(|mm| mm.kmem_cache_alloc(c, Gfp::GFP_KERNEL));
    assert!(
        matches!(
            r,
            Err(SlabError::Corrupted {
                what: Reason::FreelistPointerCorrupted,
                ..
            })
        ),
        "{r:?}"
    );
    let console = m.take_console();
    assert!(
        console.iter().any(|l| {
            l.starts_with("BUG: unable to handle page fault for address:")
                || l.starts_with("general protection fault")
        }),
        "{console:#?}"
    );
    assert!(m.take_oopses() >= 1, "{console:#?}");
    // The dropped CPU freelist is not followed again: the cache hands out good objects.
    let next = m.run(|mm| mm.kmem_cache_alloc(c, Gfp::GFP_KERNEL)).unwrap();
    assert_ne!(next, a);
    m.run(|mm| mm.kmem_cache_free(c, next)).unwrap();
    m.run(|mm| mm.kmem_cache_free(c, a)).unwrap();
    assert!(m.take_console().is_empty());
}
