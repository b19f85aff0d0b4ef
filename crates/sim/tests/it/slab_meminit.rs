//! The kernel's `lib/test_meminit.c`, ported: with `init_on_alloc=1` and/or
//! `init_on_free=1`, kmalloc and kmem_cache objects never show a previous user's bytes;
//! caches with a constructor keep what the constructor wrote (the kernel skips both
//! initialisations for them); `__GFP_ZERO` always zeroes.
//!
//! `test_pages` (the page allocator's own init_on_alloc/free) is in `page_meminit.rs`.
//! Not ported: the `SLAB_TYPESAFE_BY_RCU` cases (no RCU caches).

use crate::fixtures::*;
use kmemlab_mm::slab::{KmemCacheRef, SlabFlags};
use kmemlab_mm::{Gfp, Mm, VirtAddr};
use kmemlab_sim::{Machine, SimPlatform};

const GARBAGE_INT: u32 = 0x09A7_BA9E;
const GARBAGE_BYTE: u8 = 0x9E;
const CTOR_BYTES: usize = 4;
const CTOR_PATTERN: u32 = 0x4141_4141;

/// The three machines test_meminit is meant for.
fn init_machines() -> Vec<(&'static str, Machine)> {
    vec![
        (
            "init_on_alloc",
            MachineBuilder::small().seed(9).init_on(true, false).boot(),
        ),
        (
            "init_on_free",
            MachineBuilder::small().seed(9).init_on(false, true).boot(),
        ),
        (
            "init_on_alloc+init_on_free",
            MachineBuilder::small().seed(9).init_on(true, true).boot(),
        ),
    ]
}

fn read(mm: &Mm<SimPlatform>, p: VirtAddr, len: usize) -> Vec<u8> {
    let mut buf = vec![0; len];
    mm.copy_from_kernel(p, &mut buf).unwrap();
    buf
}

/// `count_nonzero_bytes()`.
fn count_nonzero_bytes(mm: &Mm<SimPlatform>, p: VirtAddr, size: usize) -> usize {
    read(mm, p, size).iter().filter(|&&b| b != 0).count()
}

/// `fill_with_garbage_skip()`.
fn fill_with_garbage_skip(mm: &Mm<SimPlatform>, p: VirtAddr, size: usize, skip: usize) {
    let mut buf = Vec::with_capacity(size - skip);
    while buf.len() + 4 <= size - skip {
        buf.extend_from_slice(&GARBAGE_INT.to_le_bytes());
    }
    buf.resize(size - skip, GARBAGE_BYTE);
    mm.copy_to_kernel(VirtAddr(p.0 + skip as u64), &buf)
        .unwrap();
}

fn fill_with_garbage(mm: &Mm<SimPlatform>, p: VirtAddr, size: usize) {
    fill_with_garbage_skip(mm, p, size, 0);
}

/// `do_kmalloc_size()`: allocate, dirty, free, allocate again: no dirty byte may show.
fn do_kmalloc_size(mm: &Mm<SimPlatform>, size: usize) -> bool {
    let buf = mm.kmalloc(size, Gfp::GFP_KERNEL).unwrap();
    fill_with_garbage(mm, buf, size);
    mm.kfree(buf).unwrap();
    let buf = mm.kmalloc(size, Gfp::GFP_KERNEL).unwrap();
    let failed = count_nonzero_bytes(mm, buf, size) != 0;
    fill_with_garbage(mm, buf, size);
    mm.kfree(buf).unwrap();
    failed
}

#[test]
fn test_kvmalloc_kmalloc_part() {
    for (name, m) in init_machines() {
        let failures: Vec<usize> = m.run(|mm| {
            (0..20)
                .map(|i| 1usize << i)
                .filter(|&size| do_kmalloc_size(mm, size))
                .collect()
        });
        assert!(
            failures.is_empty(),
            "{name}: kmalloc sizes {failures:?} showed old bytes"
        );
        m.mm().check().unwrap();
    }
}

#[test]
fn kmalloc_every_class_many_times() {
    // Not only the head of the freelist: a batch of objects of every class is dirtied and
    // freed, then a batch allocated again (reusing them in another order).
    for (name, m) in init_machines() {
        m.run(|mm| {
            for size in [
                8usize, 16, 24, 32, 64, 96, 128, 192, 256, 512, 1024, 2048, 4096, 8192, 12_000,
            ] {
                let batch: Vec<VirtAddr> = (0..50)
                    .map(|_| {
                        let p = mm.kmalloc(size, Gfp::GFP_KERNEL).unwrap();
                        let ks = mm.ksize(p).unwrap();
                        fill_with_garbage(mm, p, ks);
                        p
                    })
                    .collect();
                for (i, &p) in batch.iter().enumerate() {
                    if i % 2 == 0 {
                        mm.kfree(p).unwrap();
                    }
                }
                for (i, &p) in batch.iter().enumerate().rev() {
                    if i % 2 == 1 {
                        mm.kfree(p).unwrap();
                    }
                }
                let again: Vec<VirtAddr> = (0..50)
                    .map(|_| mm.kmalloc(size, Gfp::GFP_KERNEL).unwrap())
                    .collect();
                for &p in &again {
                    let n = count_nonzero_bytes(mm, p, size);
                    assert_eq!(n, 0, "{name}: kmalloc({size}) at {p} has {n} old bytes");
                }
                for p in again {
                    mm.kfree(p).unwrap();
                }
            }
        });
        m.mm().check().unwrap();
    }
}

fn test_ctor(obj: &mut [u8]) {
    obj[..CTOR_BYTES].copy_from_slice(&CTOR_PATTERN.to_le_bytes());
}

/// `check_buf()` (no RCU): true on failure.
fn check_buf(
    mm: &Mm<SimPlatform>,
    buf: VirtAddr,
    size: usize,
    want_ctor: bool,
    want_zero: bool,
) -> bool {
    let bytes = count_nonzero_bytes(mm, buf, size);
    assert!(!(want_ctor && want_zero));
    if want_zero {
        return bytes != 0;
    }
    if want_ctor {
        read(mm, buf, CTOR_BYTES) != CTOR_PATTERN.to_le_bytes()
    } else {
        bytes != 0
    }
}

/// `do_kmem_cache_size()` without RCU: with the bulk allocations of the kernel's test done
/// as 100 single allocations.
fn do_kmem_cache_size(
    mm: &Mm<SimPlatform>,
    size: usize,
    want_ctor: bool,
    want_zero: bool,
) -> Vec<String> {
    const BULK_SIZE: usize = 100;
    let mut fails = Vec::new();
    let alloc_mask = if want_zero {
        Gfp::GFP_KERNEL | Gfp::__GFP_ZERO
    } else {
        Gfp::GFP_KERNEL
    };
    let c = mm
        .kmem_cache_create(
            "test_cache",
            size,
            1,
            SlabFlags::empty(),
            want_ctor.then_some(test_ctor as fn(&mut [u8])),
        )
        .unwrap();
    for iter in 0..10 {
        if !want_ctor {
            let bulk: Vec<VirtAddr> = (0..BULK_SIZE)
                .map(|_| mm.kmem_cache_alloc(c, alloc_mask).unwrap())
                .collect();
            for &b in &bulk {
                if check_buf(mm, b, size, want_ctor, want_zero) {
                    fails.push(format!("bulk iter {iter}: {b}"));
                }
            }
            for b in bulk {
                mm.kmem_cache_free(c, b).unwrap();
            }
        }
        let buf = mm.kmem_cache_alloc(c, alloc_mask).unwrap();
        if check_buf(mm, buf, size, want_ctor, want_zero) {
            fails.push(format!(
                "iter {iter}: {buf}: {:02x?}",
                read(mm, buf, size.min(32))
            ));
        }
        fill_with_garbage_skip(mm, buf, size, if want_ctor { CTOR_BYTES } else { 0 });
        mm.kmem_cache_free(c, buf).unwrap();
    }
    mm.kmem_cache_destroy(c).unwrap();
    fails
}

/// `do_kmem_cache_size_bulk()`.
fn do_kmem_cache_size_bulk(mm: &Mm<SimPlatform>, size: usize) -> bool {
    let c: KmemCacheRef = mm
        .kmem_cache_create("test_cache", size, size, SlabFlags::empty(), None)
        .unwrap();
    let mut fail = false;
    for _ in 0..1024 {
        if fail {
            break;
        }
        let objects: Vec<VirtAddr> = (0..10)
            .map(|_| mm.kmem_cache_alloc(c, Gfp::GFP_KERNEL).unwrap())
            .collect();
        for &o in &objects {
            if count_nonzero_bytes(mm, o, size) != 0 {
                fail = true;
            }
            fill_with_garbage(mm, o, size);
        }
        for o in objects {
            mm.kmem_cache_free(c, o).unwrap();
        }
    }
    mm.kmem_cache_destroy(c).unwrap();
    fail
}

#[test]
fn test_kmemcache() {
    for (name, m) in init_machines() {
        let mut failures = Vec::new();
        m.run(|mm| {
            for i in 0..10 {
                let size = 8usize << i;
                for flags in 0..8 {
                    let ctor = flags & 1 != 0;
                    let rcu = flags & 2 != 0;
                    let zero = flags & 4 != 0;
                    if (ctor && zero) || rcu {
                        continue;
                    }
                    for f in do_kmem_cache_size(mm, size, ctor, zero) {
                        failures.push(format!("size {size} ctor {ctor} zero {zero}: {f}"));
                    }
                }
                if do_kmem_cache_size_bulk(mm, size) {
                    failures.push(format!("bulk size {size}"));
                }
            }
        });
        assert!(failures.is_empty(), "{name}: {failures:#?}");
        m.mm().check().unwrap();
        assert_eq!(m.mm().find_cache("test_cache"), None);
    }
}

#[test]
fn without_init_options_only_gfp_zero_and_ctors_count() {
    // The default machine: no init_on_alloc/free. __GFP_ZERO zeroes, a constructor's bytes
    // survive reuse (the kernel runs constructors once, when the slab is made), and an
    // object freed dirty comes back dirty (nothing wipes it: that is what the options are
    // for).
    let m = MachineBuilder::small().seed(9).init_on(false, false).boot();
    m.run(|mm| {
        for i in 0..10 {
            let size = 8usize << i;
            assert!(
                do_kmem_cache_size(mm, size, false, true).is_empty(),
                "zero {size}"
            );
            assert!(
                do_kmem_cache_size(mm, size, true, false).is_empty(),
                "ctor {size}"
            );
        }
        let p = mm.kmalloc(64, Gfp::GFP_KERNEL).unwrap();
        fill_with_garbage(mm, p, 64);
        mm.kfree(p).unwrap();
        let q = mm.kmalloc(64, Gfp::GFP_KERNEL).unwrap();
        assert_eq!(q, p, "LIFO reuse of the CPU freelist head");
        assert!(count_nonzero_bytes(mm, q, 64) > 0);
        let z = mm.kzalloc(64, Gfp::GFP_KERNEL).unwrap();
        fill_with_garbage(mm, z, 64);
        mm.kfree(z).unwrap();
        let z = mm.kzalloc(64, Gfp::GFP_KERNEL).unwrap();
        assert_eq!(count_nonzero_bytes(mm, z, 64), 0);
        let c = mm.kcalloc(10, 100, Gfp::GFP_KERNEL).unwrap();
        assert_eq!(count_nonzero_bytes(mm, c, 1000), 0);
        for x in [q, z, c] {
            mm.kfree(x).unwrap();
        }
    });
    m.mm().check().unwrap();
}

#[test]
fn kfree_sensitive_wipes_the_whole_object() {
    let m = MachineBuilder::small().seed(9).init_on(false, false).boot();
    m.run(|mm| {
        for size in [8usize, 50, 64, 100, 4000, 8192] {
            let p = mm.kmalloc(size, Gfp::GFP_KERNEL).unwrap();
            let ks = mm.ksize(p).unwrap();
            fill_with_garbage(mm, p, ks);
            mm.kfree_sensitive(p).unwrap();
            // The free pointer is written into the freed object (in its middle for a
            // cache without a constructor): every other byte is zero.
            let fp = mm
                .cache(mm.kmalloc_slab(size, Gfp::GFP_KERNEL).unwrap())
                .unwrap()
                .fp_offset() as usize;
            let bytes = read(mm, p, ks);
            for (i, b) in bytes.iter().enumerate() {
                if !(fp..fp + 8).contains(&i) {
                    assert_eq!(*b, 0, "kmalloc({size}): byte {i} after kfree_sensitive");
                }
            }
        }
    });
    m.mm().check().unwrap();
}
