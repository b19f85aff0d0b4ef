//! Callers' mistakes with kmalloc and kmem_cache: kfree of a stack-like address, of a
//! vmalloc address, of an address inside an object, twice; kmem_cache_free to the wrong
//! cache. Each is a clear error (with the kernel's report where the kernel prints one),
//! never a panic, and `check()` passes after.

use std::sync::atomic::Ordering::Relaxed;

use crate::fixtures::*;
use kmemlab_mm::slab::{KmemCacheRef, Reason, SlabError, SlabFlags};
use kmemlab_mm::{Gfp, Mm, VirtAddr};
use kmemlab_sim::{Machine, SimPlatform};

fn check(mm: &Mm<SimPlatform>) {
    mm.check().unwrap_or_else(|e| panic!("check(): {e}"));
}

fn bugs(m: &Machine) -> u64 {
    m.mm().events().bug_slab.load(Relaxed)
}

/// The allocator still works: a burst of allocations of every class, written and freed.
fn still_works(m: &Machine) {
    m.run(|mm| {
        let mut live = Vec::new();
        for size in [8, 24, 64, 96, 100, 192, 256, 1000, 4096, 8192, 20_000] {
            for _ in 0..20 {
                let p = mm.kmalloc(size, Gfp::GFP_KERNEL).unwrap();
                mm.copy_to_kernel(p, &vec![size as u8; size]).unwrap();
                live.push((p, size));
            }
        }
        let mut seen = std::collections::HashSet::new();
        for &(p, size) in &live {
            assert!(seen.insert(p), "{p} handed out twice");
            let mut buf = vec![0; size];
            mm.copy_from_kernel(p, &mut buf).unwrap();
            assert!(buf.iter().all(|&b| b == size as u8), "{p} overwritten");
        }
        for (p, _) in live {
            mm.kfree(p).unwrap();
        }
    });
    check(&m.mm());
}

#[test]
fn kfree_of_a_stack_address_is_refused() {
    let m = MachineBuilder::small()
        .seed(11)
        .slab_debug(SlabFlags::empty())
        .boot();
    for addr in [
        0x7ffd_1234_0000u64,
        0x7ffd_1234_5678,
        0x1000,
        17,
        0xdead_beef,
        u64::MAX,
    ] {
        let r = m.run(|mm| mm.kfree(VirtAddr(addr)));
        assert!(
            matches!(r, Err(SlabError::NotSlabObject(a, _)) if a == VirtAddr(addr)),
            "kfree({addr:#x}): {r:?}"
        );
        let r = m.run(|mm| mm.ksize(VirtAddr(addr)));
        assert!(r.is_err(), "ksize({addr:#x}): {r:?}");
        let r = m.run(|mm| mm.krealloc(VirtAddr(addr), 100, Gfp::GFP_KERNEL));
        assert!(r.is_err(), "krealloc({addr:#x}): {r:?}");
        check(&m.mm());
    }
    // NULL and ZERO_SIZE_PTR are no-ops, as in the kernel.
    m.run(|mm| {
        for addr in 0..=16 {
            assert_eq!(mm.kfree(VirtAddr(addr)), Ok(()));
        }
    });
    still_works(&m);
}

#[test]
fn kfree_of_a_vmalloc_address_is_refused() {
    let m = MachineBuilder::small()
        .seed(11)
        .slab_debug(SlabFlags::empty())
        .boot();
    for addr in [
        0xffff_c900_0000_1000u64,
        0xffff_c900_0000_0000,
        0xffff_e8ff_ffff_f000,
    ] {
        let r = m.run(|mm| mm.kfree(VirtAddr(addr)));
        let Err(e) = r else {
            panic!("kfree({addr:#x}) accepted")
        };
        assert!(matches!(e, SlabError::NotSlabObject(..)), "{e:?}");
        assert!(
            e.to_string().contains("vmalloc"),
            "the error should say why: {e}"
        );
        assert!(m.run(|mm| mm.kfree_sensitive(VirtAddr(addr))).is_err());
        check(&m.mm());
    }
    assert_eq!(bugs(&m), 0);
    still_works(&m);
}

#[test]
fn kfree_of_non_kmalloc_direct_map_memory_is_refused() {
    let m = MachineBuilder::small()
        .seed(11)
        .slab_debug(SlabFlags::empty())
        .boot();
    // A page from the page allocator, and a free page: neither came from kmalloc.
    let r = m.run(|mm| {
        let page = mm.__get_free_pages(Gfp::GFP_KERNEL, 0).unwrap();
        let r = mm.kfree(page);
        mm.free_pages(page, 0).unwrap();
        let r2 = mm.kfree(page);
        (r, r2)
    });
    assert!(matches!(r.0, Err(SlabError::NotSlabObject(..))), "{r:?}");
    assert!(matches!(r.1, Err(SlabError::NotSlabObject(..))), "{r:?}");
    check(&m.mm());
    // Inside a large kmalloc block, and a large block freed twice.
    m.run(|mm| {
        let p = mm.kmalloc(5 * 4096, Gfp::GFP_KERNEL).unwrap();
        for off in [1u64, 8, 4096, 5 * 4096, 8 * 4096 - 8] {
            assert!(
                matches!(
                    mm.kfree(VirtAddr(p.0 + off)),
                    Err(SlabError::NotSlabObject(..))
                ),
                "kfree(large + {off})"
            );
        }
        mm.kfree(p).unwrap();
        assert!(matches!(mm.kfree(p), Err(SlabError::NotSlabObject(..))));
    });
    check(&m.mm());
    still_works(&m);
}

#[test]
fn kfree_of_an_address_inside_an_object_is_refused() {
    for debug in [SlabFlags::empty(), SlabFlags::DEBUG] {
        let m = MachineBuilder::small().seed(11).slab_debug(debug).boot();
        m.take_console();
        for size in [8usize, 64, 96, 192, 1024, 8192] {
            let p = m.run(|mm| mm.kmalloc(size, Gfp::GFP_KERNEL)).unwrap();
            m.run(|mm| mm.copy_to_kernel(p, &vec![0x42; size]).unwrap());
            for off in [1u64, 4, 8, size as u64 / 2, size as u64 - 1] {
                if off == 0 || off >= size as u64 {
                    continue;
                }
                let inside = VirtAddr(p.0 + off);
                let r = m.run(|mm| mm.kfree(inside));
                assert!(
                    matches!(r, Err(SlabError::NotSlabObject(a, _)) if a == inside),
                    "{debug:?}: kfree(kmalloc({size}) + {off}): {r:?}"
                );
                let r = m.run(|mm| mm.ksize(inside));
                assert!(r.is_err(), "ksize(inside): {r:?}");
                if debug.contains(SlabFlags::CONSISTENCY_CHECKS) {
                    let console = m.take_console();
                    assert!(
                        console
                            .iter()
                            .any(|l| l.starts_with("BUG ")
                                && l.contains("): Invalid object pointer")),
                        "{console:?}"
                    );
                }
                check(&m.mm());
            }
            // The object is untouched and still frees normally.
            m.run(|mm| {
                let mut buf = vec![0; size];
                mm.copy_from_kernel(p, &mut buf).unwrap();
                assert!(buf.iter().all(|&b| b == 0x42));
                mm.kfree(p).unwrap();
            });
            check(&m.mm());
        }
        still_works(&m);
    }
}

#[test]
fn double_kfree_is_caught_by_the_naive_check() {
    let m = MachineBuilder::small()
        .seed(11)
        .slab_debug(SlabFlags::empty())
        .boot();
    m.take_console();
    for size in [8usize, 64, 96, 512, 8192] {
        let before = bugs(&m);
        let (first, second) = m.run(|mm| {
            let p = mm.kmalloc(size, Gfp::GFP_KERNEL).unwrap();
            (mm.kfree(p), mm.kfree(p))
        });
        assert_eq!(first, Ok(()));
        assert!(
            matches!(second, Err(SlabError::NotSlabObject(..))),
            "second kfree of kmalloc({size}): {second:?}"
        );
        assert_eq!(bugs(&m), before + 1, "size {size}");
        take_console_expecting(&m, "kernel BUG at mm/slub.c:");
        check(&m.mm());
    }
    // The same with kmem_cache_free on a cache of its own.
    let r = m
        .run(|mm| mm.kmem_cache_create("double_free_test", 40, 0, SlabFlags::empty(), None))
        .unwrap();
    m.run(|mm| {
        let p = mm.kmem_cache_alloc(r, Gfp::GFP_KERNEL).unwrap();
        mm.kmem_cache_free(r, p).unwrap();
        assert!(mm.kmem_cache_free(r, p).is_err());
    });
    check(&m.mm());
    // Nothing was handed out twice afterwards.
    still_works(&m);
    m.run(|mm| mm.kmem_cache_destroy(r)).unwrap();
    check(&m.mm());
}

#[test]
fn double_kfree_with_slab_debug_f_reports_object_already_free() {
    let m = MachineBuilder::small()
        .seed(11)
        .slab_debug(SlabFlags::parse_slab_debug("F").unwrap())
        .boot();
    m.take_console();
    for size in [8usize, 64, 96, 512, 8192] {
        let before = bugs(&m);
        let (p, first, second) = m.run(|mm| {
            let p = mm.kmalloc(size, Gfp::GFP_KERNEL).unwrap();
            // Another object freed in between: the naive check would not see this one.
            let q = mm.kmalloc(size, Gfp::GFP_KERNEL).unwrap();
            let first = mm.kfree(p);
            mm.kfree(q).unwrap();
            (p, first, mm.kfree(p))
        });
        assert_eq!(first, Ok(()));
        assert!(
            matches!(second, Err(SlabError::DebugCheck(a, Reason::ObjectAlreadyFree)) if a == p),
            "size {size}: {second:?}"
        );
        assert!(bugs(&m) > before);
        let console = m.take_console();
        let class = match size {
            8192 => "kmalloc-8k".to_string(),
            s => format!("kmalloc-{s}"),
        };
        assert!(
            console
                .iter()
                .any(|l| l.starts_with(&format!("BUG {class} ("))
                    && l.ends_with("): Object already free")),
            "{console:?}"
        );
        check(&m.mm());
    }
    still_works(&m);
    // Everything allocated since is distinct and all frees were clean.
    assert!(m.take_console().is_empty());
}

#[test]
fn kmem_cache_free_to_the_wrong_cache_warns_and_refuses() {
    let m = MachineBuilder::small()
        .seed(11)
        .slab_debug(SlabFlags::empty())
        .boot();
    m.take_console();
    let (a, b) = m.run(|mm| {
        (
            mm.kmem_cache_create("cache_a", 64, 0, SlabFlags::empty(), None)
                .unwrap(),
            // Not 64 bytes: two compatible 64-byte caches are one merged cache in 6.6
            // (find_mergeable), and a free between them is no wrong-cache free.
            mm.kmem_cache_create("cache_b", 128, 0, SlabFlags::empty(), None)
                .unwrap(),
        )
    });
    let p = m.run(|mm| mm.kmem_cache_alloc(a, Gfp::GFP_KERNEL)).unwrap();
    m.run(|mm| mm.copy_to_kernel(p, &[0x77; 64]).unwrap());
    let r = m.run(|mm| mm.kmem_cache_free(b, p));
    match r {
        Err(e @ SlabError::WrongCache { actual }) => {
            assert_eq!(actual, a);
            assert_eq!(
                m.mm().slab_error_text(b, e).to_string(),
                "cache_from_obj: Wrong slab cache. cache_b but object is from cache_a"
            );
        }
        other => panic!("kmem_cache_free to the wrong cache: {other:?}"),
    }
    let console = m.take_console();
    assert!(
        console
            .iter()
            .any(|l| l == "cache_from_obj: Wrong slab cache. cache_b but object is from cache_a")
            && console
                .iter()
                .any(|l| l.starts_with("WARNING") && l.contains("cache_from_obj")),
        "{console:?}"
    );
    check(&m.mm());
    // A kmalloc object freed to a cache, and a cache object freed to a kmalloc cache.
    let k = m.run(|mm| mm.kmalloc(64, Gfp::GFP_KERNEL)).unwrap();
    let r = m.run(|mm| mm.kmem_cache_free(a, k));
    assert!(matches!(r, Err(SlabError::WrongCache { .. })), "{r:?}");
    let kmalloc64 = m.mm().find_cache("kmalloc-64").unwrap();
    let r = m.run(|mm| mm.kmem_cache_free(kmalloc64, p));
    assert!(matches!(r, Err(SlabError::WrongCache { .. })), "{r:?}");
    // A non-slab address and a bogus cache handle.
    let r = m.run(|mm| mm.kmem_cache_free(a, VirtAddr(0x7ffd_1234_0000)));
    assert!(matches!(r, Err(SlabError::NotSlabObject(..))), "{r:?}");
    let r = m.run(|mm| mm.kmem_cache_free(KmemCacheRef(0xffff_8880_0000_1234), p));
    assert!(matches!(r, Err(SlabError::BadCache(_))), "{r:?}");
    let r = m.run(|mm| mm.kmem_cache_alloc(KmemCacheRef(0x7ffd_0000_0000), Gfp::GFP_KERNEL));
    assert!(matches!(r, Err(SlabError::BadCache(_))), "{r:?}");
    check(&m.mm());
    // The objects are intact and free properly to their own caches.
    m.run(|mm| {
        let mut buf = [0; 64];
        mm.copy_from_kernel(p, &mut buf).unwrap();
        assert_eq!(buf, [0x77; 64]);
        mm.kmem_cache_free(a, p).unwrap();
        mm.kfree(k).unwrap();
        mm.kmem_cache_destroy(a).unwrap();
        mm.kmem_cache_destroy(b).unwrap();
        // Destroyed: the handle is dead.
        assert!(matches!(
            mm.kmem_cache_alloc(a, Gfp::GFP_KERNEL),
            Err(SlabError::BadCache(_))
        ));
        assert!(matches!(
            mm.kmem_cache_destroy(a),
            Err(SlabError::BadCache(_))
        ));
    });
    assert_eq!(bugs(&m), 0);
    check(&m.mm());
    still_works(&m);
}

#[test]
fn bad_kmem_cache_create_arguments_are_refused() {
    let m = MachineBuilder::small()
        .seed(11)
        .slab_debug(SlabFlags::empty())
        .boot();
    m.run(|mm| {
        for (name, size, align) in [
            ("", 64, 0),
            ("zero", 0, 0),
            ("huge", (4 << 20) + 1, 0),
            ("align3", 64, 3),
            ("align24", 64, 24),
        ] {
            let r = mm.kmem_cache_create(name, size, align, SlabFlags::empty(), None);
            assert!(
                matches!(r, Err(SlabError::BadArgs(_))),
                "{name} {size} {align}: {r:?}"
            );
        }
        // A duplicate name, and the kmalloc caches cannot be destroyed.
        assert!(matches!(
            mm.kmem_cache_create("kmalloc-64", 64, 0, SlabFlags::empty(), None),
            Err(SlabError::BadArgs(_))
        ));
        let k = mm.find_cache("kmalloc-64").unwrap();
        assert!(mm.kmem_cache_destroy(k).is_err());
        assert!(mm.find_cache("kmalloc-64").is_some());
    });
    check(&m.mm());
    // Creating a cache from interrupt context would sleep: refused, not a panic.
    let r = m
        .on_cpu(0, kmemlab_mm::Context::Hardirq, |mm| {
            mm.kmem_cache_create("from_irq", 64, 0, SlabFlags::empty(), None)
        })
        .unwrap();
    assert!(r.is_err(), "{r:?}");
    // kmalloc(GFP_KERNEL) in hard-IRQ context: refused (might_sleep), GFP_ATOMIC works.
    let r = m
        .on_cpu(1, kmemlab_mm::Context::Hardirq, |mm| {
            (
                mm.kmalloc(64, Gfp::GFP_KERNEL),
                mm.kmalloc(64, Gfp::GFP_ATOMIC),
            )
        })
        .unwrap();
    assert!(r.0.is_err(), "GFP_KERNEL in hard IRQ: {:?}", r.0);
    let p = r.1.expect("GFP_ATOMIC in hard IRQ");
    m.run(|mm| mm.kfree(p)).unwrap();
    check(&m.mm());
    still_works(&m);
}
