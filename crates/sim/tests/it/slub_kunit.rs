//! The kernel's `lib/slub_kunit.c`, ported by name.
//!
//! The kernel's tests corrupt an object, then call `validate_slab_cache()` (the sysfs
//! `validate` walk) and count `slab_errors` (one per `BUG` report and one per `FIX`).
//! kmemlab has no `validate` walk: its checks run, as the kernel's do with
//! `slab_debug=F`, on every allocation and free of a debug cache. So each port adds
//! `SLAB_CONSISTENCY_CHECKS` to the cache and lets the next allocation or free find the
//! corruption; the report is the kernel's (`BUG <cache> (Not tainted): ...`, `FIX ...`),
//! counted in `events().bug_slab`, and `slab_errors` is counted the kunit way from the
//! console (lines starting with `BUG ` or `FIX `).

use std::sync::atomic::Ordering::Relaxed;

use crate::fixtures::*;
use kmemlab_mm::slab::debug::{POISON_END, POISON_FREE, SLUB_RED_ACTIVE};
use kmemlab_mm::slab::{KmemCacheRef, SlabError, SlabFlags};
use kmemlab_mm::{Gfp, Mm, VirtAddr};
use kmemlab_sim::{Machine, SimPlatform};

/// `test_kmem_cache_create()`: a cache with the test's flags, plus the sanity checks that
/// stand in for `validate_slab_cache()`.
fn test_kmem_cache_create(m: &Machine, name: &str, size: usize, flags: SlabFlags) -> KmemCacheRef {
    m.run(|mm| mm.kmem_cache_create(name, size, 0, flags | SlabFlags::CONSISTENCY_CHECKS, None))
        .unwrap_or_else(|e| panic!("kmem_cache_create({name}): {e}"))
}

/// kunit's `slab_errors`: BUG reports and FIX lines since the last call; also returns the
/// console for the assertions.
fn slab_errors(m: &Machine) -> (usize, Vec<String>) {
    let console = m.take_console();
    let n = console
        .iter()
        .filter(|l| l.starts_with("BUG ") || l.starts_with("FIX "))
        .count();
    (n, console)
}

fn has_line(console: &[String], line: &str) -> bool {
    console.iter().any(|l| l == line)
}

/// kunit counts one BUG and one FIX for a clobbered byte found by `validate`; found by a
/// free, the kernel adds `FIX <cache>: Object at 0x... not freed` (free_debug_processing).
fn assert_refused_free(console: &[String], errors: usize, cache: &str, p: VirtAddr) {
    assert_eq!(errors, 3, "BUG, FIX Restoring, FIX not freed: {console:#?}");
    assert!(
        has_line(
            console,
            &format!("FIX {cache}: Object at {:#x} not freed", p.0)
        ),
        "{console:#?}"
    );
}

fn check(mm: &Mm<SimPlatform>) {
    mm.check().unwrap_or_else(|e| panic!("check(): {e}"));
}

fn bugs(m: &Machine) -> u64 {
    m.mm().events().bug_slab.load(Relaxed)
}

fn write(m: &Machine, at: u64, bytes: &[u8]) {
    m.mm().copy_to_kernel(VirtAddr(at), bytes).unwrap();
}

fn read(m: &Machine, at: u64, len: usize) -> Vec<u8> {
    let mut buf = vec![0; len];
    m.mm().copy_from_kernel(VirtAddr(at), &mut buf).unwrap();
    buf
}

/// Allocate from `s` until `want` comes back (or give up after a slab's worth); free the
/// others. The freed-then-corrupted object is the slab freelist's head in debug caches,
/// so this is normally the first allocation.
/// `@offset=` in a report is relative to the start of the slab.
fn slab_offset(m: &Machine, at: u64) -> u64 {
    let mm = m.mm();
    let (_, page) = mm.virt_to_slab(VirtAddr(at)).expect("in a slab");
    at - mm.page_address(page).unwrap().0
}

fn alloc_until(m: &Machine, s: KmemCacheRef, want: VirtAddr) -> Vec<VirtAddr> {
    let mut got = Vec::new();
    for _ in 0..64 {
        let p = m.run(|mm| mm.kmem_cache_alloc(s, Gfp::GFP_KERNEL)).unwrap();
        got.push(p);
        if p == want {
            break;
        }
    }
    got
}

#[test]
fn test_clobber_zone() {
    let m = MachineBuilder::small().seed(5).boot();
    let s = test_kmem_cache_create(&m, "TestSlub_RZ_alloc", 64, SlabFlags::RED_ZONE);
    let p = m.run(|mm| mm.kmem_cache_alloc(s, Gfp::GFP_KERNEL)).unwrap();
    m.take_console();
    let before = bugs(&m);
    // p[64] = 0x12: one byte into the right red zone.
    write(&m, p.0 + 64, &[0x12]);
    let r = m.run(|mm| mm.kmem_cache_free(s, p));
    let (errors, console) = slab_errors(&m);
    assert_refused_free(&console, errors, "TestSlub_RZ_alloc", p);
    assert!(
        has_line(
            &console,
            "BUG TestSlub_RZ_alloc (Not tainted): Right Redzone overwritten"
        ),
        "{console:#?}"
    );
    assert!(
        console
            .iter()
            .any(|l| l.starts_with("FIX TestSlub_RZ_alloc: Restoring Right Redzone")),
        "{console:#?}"
    );
    assert!(
        console
            .iter()
            .any(|l| l.contains("First byte 0x12 instead of 0xcc")),
        "{console:#?}"
    );
    assert_eq!(bugs(&m), before + 1);
    // The free was refused: the object stays out of circulation, the red zone restored.
    assert!(
        matches!(r, Err(SlabError::DebugCheck(a, _)) if a == p),
        "{r:?}"
    );
    assert_eq!(read(&m, p.0 + 64, 8), vec![SLUB_RED_ACTIVE; 8]);
    check(&m.mm());
    // The object is never handed out again while it is out of circulation.
    let again: Vec<VirtAddr> = (0..100)
        .map(|_| m.run(|mm| mm.kmem_cache_alloc(s, Gfp::GFP_KERNEL)).unwrap())
        .collect();
    assert!(!again.contains(&p));
    m.run(|mm| {
        again
            .iter()
            .for_each(|&q| mm.kmem_cache_free(s, q).unwrap())
    });
    assert_eq!(slab_errors(&m).0, 0);
    check(&m.mm());
}

#[test]
fn test_clobber_left_zone() {
    // The same in the left red zone (kmemlab's addition: the kernel's kunit suite only
    // writes right of the object).
    let m = MachineBuilder::small().seed(5).boot();
    let s = test_kmem_cache_create(&m, "TestSlub_RZ_left", 64, SlabFlags::RED_ZONE);
    let red_left_pad = m.mm().cache(s).unwrap().red_left_pad() as u64;
    assert!(red_left_pad >= 8);
    let p = m.run(|mm| mm.kmem_cache_alloc(s, Gfp::GFP_KERNEL)).unwrap();
    m.take_console();
    write(&m, p.0 - 1, &[0x12]);
    let r = m.run(|mm| mm.kmem_cache_free(s, p));
    let (errors, console) = slab_errors(&m);
    assert_refused_free(&console, errors, "TestSlub_RZ_left", p);
    assert!(
        has_line(
            &console,
            "BUG TestSlub_RZ_left (Not tainted): Left Redzone overwritten"
        ),
        "{console:#?}"
    );
    assert!(r.is_err());
    assert_eq!(
        read(&m, p.0 - red_left_pad, red_left_pad as usize),
        vec![SLUB_RED_ACTIVE; red_left_pad as usize]
    );
    check(&m.mm());
}

#[test]
fn test_next_pointer() {
    let m = MachineBuilder::small().seed(5).boot();
    let s = test_kmem_cache_create(&m, "TestSlub_next_ptr_free", 64, SlabFlags::POISON);
    let offset = m.mm().cache(s).unwrap().fp_offset() as u64;
    // With poisoning the free pointer lives after the object.
    assert!(offset >= 64);
    let p = m.run(|mm| mm.kmem_cache_alloc(s, Gfp::GFP_KERNEL)).unwrap();
    m.run(|mm| mm.kmem_cache_free(s, p)).unwrap();
    m.take_console();
    let before = bugs(&m);
    // p[s->offset] = ~p[s->offset]: the free pointer no longer points at an object.
    let byte = read(&m, p.0 + offset, 1)[0];
    write(&m, p.0 + offset, &[!byte]);
    // The next allocation takes p off the freelist and checks it.
    let got = alloc_until(&m, s, p);
    let (errors, console) = slab_errors(&m);
    assert!(
        console.iter().any(|l| l
            == "BUG TestSlub_next_ptr_free (Not tainted): Freepointer corrupt"
            || l == "BUG TestSlub_next_ptr_free (Not tainted): Freechain corrupt"),
        "{console:#?}"
    );
    assert!(errors >= 2, "{console:#?}");
    assert!(bugs(&m) > before);
    // The corrupted object is not handed out.
    assert!(!got.contains(&p), "a corrupted free object was handed out");
    check(&m.mm());
    m.run(|mm| got.iter().for_each(|&q| mm.kmem_cache_free(s, q).unwrap()));
    check(&m.mm());
    // The slab with the broken chain was taken out of use; the cache cannot be destroyed
    // cleanly, as the kernel reports leaked objects for it.
    let r = m.run(|mm| mm.kmem_cache_destroy(s));
    assert!(
        matches!(r, Err(SlabError::ObjectsRemaining { .. })),
        "{r:?}"
    );
    check(&m.mm());
}

#[test]
fn test_next_pointer_found_on_free() {
    // The same corruption, found by the next free's freelist walk (`on_freelist`).
    let m = MachineBuilder::small().seed(5).boot();
    let s = test_kmem_cache_create(&m, "TestSlub_next_ptr_walk", 64, SlabFlags::POISON);
    let offset = m.mm().cache(s).unwrap().fp_offset() as u64;
    let objs: Vec<VirtAddr> = (0..4)
        .map(|_| m.run(|mm| mm.kmem_cache_alloc(s, Gfp::GFP_KERNEL)).unwrap())
        .collect();
    // Same slab for all four (a fresh cache fills one slab first).
    let slab = m.mm().virt_to_slab(objs[0]).unwrap().0;
    assert!(objs
        .iter()
        .all(|&o| m.mm().virt_to_slab(o).unwrap().0 == slab));
    m.run(|mm| mm.kmem_cache_free(s, objs[0])).unwrap();
    m.take_console();
    let byte = read(&m, objs[0].0 + offset, 1)[0];
    write(&m, objs[0].0 + offset, &[!byte]);
    // Freeing another object of the slab walks the freelist (is it already free?).
    let r = m.run(|mm| mm.kmem_cache_free(s, objs[1]));
    let (_, console) = slab_errors(&m);
    assert!(
        has_line(
            &console,
            "BUG TestSlub_next_ptr_walk (Not tainted): Freechain corrupt"
        ),
        "{console:#?}"
    );
    assert_eq!(r, Ok(()), "the free itself is fine");
    // The chain was cut at the corrupt pointer and the slab's counters agree with it.
    check(&m.mm());
    m.run(|mm| {
        mm.kmem_cache_free(s, objs[2]).unwrap();
        mm.kmem_cache_free(s, objs[3]).unwrap();
    });
    check(&m.mm());
    // Allocations keep working and never return an object twice.
    let mut live = std::collections::HashSet::new();
    for _ in 0..200 {
        let q = m.run(|mm| mm.kmem_cache_alloc(s, Gfp::GFP_KERNEL)).unwrap();
        assert!(live.insert(q), "{q} handed out twice");
    }
    check(&m.mm());
}

#[test]
fn test_first_word() {
    let m = MachineBuilder::small().seed(5).boot();
    let s = test_kmem_cache_create(&m, "TestSlub_1th_word_free", 64, SlabFlags::POISON);
    let p = m.run(|mm| mm.kmem_cache_alloc(s, Gfp::GFP_KERNEL)).unwrap();
    m.run(|mm| mm.kmem_cache_free(s, p)).unwrap();
    // A free object of a poisoned cache is 0x6b … 0x6b 0xa5.
    let mut want = vec![POISON_FREE; 64];
    want[63] = POISON_END;
    assert_eq!(read(&m, p.0, 64), want);
    m.take_console();
    let before = bugs(&m);
    // *p = 0x78: a write after free.
    write(&m, p.0, &[0x78]);
    let offset = slab_offset(&m, p.0);
    let got = alloc_until(&m, s, p);
    let (errors, console) = slab_errors(&m);
    assert!(
        has_line(
            &console,
            "BUG TestSlub_1th_word_free (Not tainted): Poison overwritten"
        ),
        "{console:#?}"
    );
    assert!(
        console.iter().any(|l| l.contains(&format!(
            "@offset={offset}. First byte 0x78 instead of 0x6b"
        ))),
        "{console:#?}"
    );
    assert!(
        console
            .iter()
            .any(|l| l.starts_with("FIX TestSlub_1th_word_free: Restoring Poison")),
        "{console:#?}"
    );
    // kunit counts 2 (BUG + FIX); the allocation path adds "Marking all objects used".
    assert!(errors >= 2, "{console:#?}");
    assert!(bugs(&m) > before);
    assert!(
        !got.contains(&p),
        "the written-after-free object was handed out"
    );
    check(&m.mm());
}

#[test]
fn test_clobber_50th_byte() {
    let m = MachineBuilder::small().seed(5).boot();
    let s = test_kmem_cache_create(&m, "TestSlub_50th_word_free", 64, SlabFlags::POISON);
    let p = m.run(|mm| mm.kmem_cache_alloc(s, Gfp::GFP_KERNEL)).unwrap();
    m.run(|mm| mm.kmem_cache_free(s, p)).unwrap();
    m.take_console();
    write(&m, p.0 + 50, &[0x9a]);
    let offset = slab_offset(&m, p.0 + 50);
    let got = alloc_until(&m, s, p);
    let (errors, console) = slab_errors(&m);
    assert!(
        has_line(
            &console,
            "BUG TestSlub_50th_word_free (Not tainted): Poison overwritten"
        ),
        "{console:#?}"
    );
    assert!(
        console.iter().any(|l| l.contains(&format!(
            "@offset={offset}. First byte 0x9a instead of 0x6b"
        ))),
        "{console:#?}"
    );
    assert!(errors >= 2);
    assert!(!got.contains(&p));
    check(&m.mm());
}

#[test]
fn test_clobber_redzone_free() {
    let m = MachineBuilder::small().seed(5).boot();
    let s = test_kmem_cache_create(&m, "TestSlub_RZ_free", 64, SlabFlags::RED_ZONE);
    let p = m.run(|mm| mm.kmem_cache_alloc(s, Gfp::GFP_KERNEL)).unwrap();
    m.run(|mm| mm.kmem_cache_free(s, p)).unwrap();
    m.take_console();
    // p[64] = 0xab after the free: the inactive red zone (0xbb) is overwritten.
    write(&m, p.0 + 64, &[0xab]);
    let got = alloc_until(&m, s, p);
    let (errors, console) = slab_errors(&m);
    assert!(
        has_line(
            &console,
            "BUG TestSlub_RZ_free (Not tainted): Right Redzone overwritten"
        ),
        "{console:#?}"
    );
    assert!(
        console
            .iter()
            .any(|l| l.contains("First byte 0xab instead of 0xbb")),
        "{console:#?}"
    );
    assert!(errors >= 2);
    assert!(!got.contains(&p));
    check(&m.mm());
}

#[test]
fn test_kmalloc_redzone_access() {
    // The kernel: a 32-byte kmalloc cache with owner tracking and red zones remembers the
    // requested size (18) and red-zones bytes 18..32; writing p[18] and p[19] is reported
    // as "kmalloc Redzone overwritten".
    let m = MachineBuilder::small()
        .seed(5)
        .slab_debug(SlabFlags::parse_slab_debug("FZU").unwrap())
        .boot();
    let p = m.run(|mm| mm.kmalloc(18, Gfp::GFP_KERNEL)).unwrap();
    m.take_console();
    write(&m, p.0 + 18, &[0xab, 0xab]);
    let r = m.run(|mm| mm.kfree(p));
    let (errors, console) = slab_errors(&m);
    assert!(
        has_line(
            &console,
            "BUG kmalloc-32 (Not tainted): kmalloc Redzone overwritten"
        ),
        "{console:#?}"
    );
    // 2 for kunit's validate walk, plus "Object ... not freed" when a free finds it.
    assert!(errors >= 2);
    assert!(r.is_err());
}

#[test]
fn test_kmalloc_redzone_beyond_the_class() {
    // What applies without orig_size tracking: a write past the class size of a kmalloc
    // object (into the slab_debug red zone) is caught on kfree.
    let m = MachineBuilder::small()
        .seed(5)
        .slab_debug(SlabFlags::parse_slab_debug("FZU").unwrap())
        .boot();
    let p = m.run(|mm| mm.kmalloc(18, Gfp::GFP_KERNEL)).unwrap();
    assert_eq!(m.mm().ksize(p), Ok(32));
    m.take_console();
    write(&m, p.0 + 32, &[0xab, 0xab]);
    let r = m.run(|mm| mm.kfree(p));
    let (errors, console) = slab_errors(&m);
    assert!(
        has_line(
            &console,
            "BUG kmalloc-32 (Not tainted): Right Redzone overwritten"
        ),
        "{console:#?}"
    );
    assert!(
        console.iter().any(|l| l.starts_with("Allocated in ")),
        "owner tracking prints the allocator: {console:#?}"
    );
    assert_refused_free(&console, errors, "kmalloc-32", p);
    assert!(r.is_err());
    check(&m.mm());
}

#[test]
fn test_leak_destroy() {
    let m = MachineBuilder::small().seed(5).boot();
    let s = m
        .run(|mm| mm.kmem_cache_create("TestSlub_leak_destroy", 64, 0, SlabFlags::empty(), None))
        .unwrap();
    let p = m.run(|mm| mm.kmem_cache_alloc(s, Gfp::GFP_KERNEL)).unwrap();
    m.take_console();
    let before = bugs(&m);
    let r = m.run(|mm| mm.kmem_cache_destroy(s));
    assert!(
        matches!(&r, Err(SlabError::ObjectsRemaining { objects: 1 })),
        "{r:?}"
    );
    assert_eq!(
        m.mm().slab_error_text(s, r.unwrap_err()).to_string(),
        "kmem_cache_destroy TestSlub_leak_destroy: Slab cache still has objects (1 remaining); the cache is kept"
    );
    let console = m.take_console();
    assert!(
        has_line(
            &console,
            "BUG TestSlub_leak_destroy (Not tainted): Objects remaining in TestSlub_leak_destroy on __kmem_cache_shutdown()"
        ),
        "{console:#?}"
    );
    // 6.6 kmem_cache_destroy(): WARN(err, "%s %s: Slab cache still has objects when called
    // from %pS", …) at mm/slab_common.c:498; the caller is this test's m.run closure.
    let start = console
        .iter()
        .position(|l| l == "------------[ cut here ]------------")
        .expect("the WARN");
    let msg = &console[start + 1];
    assert!(
        msg.starts_with(
            "kmem_cache_destroy TestSlub_leak_destroy: Slab cache still has objects when called from "
        ) && msg.contains("slub_kunit.rs:"),
        "{msg}"
    );
    assert_eq!(
        console[start..start + 3],
        [
            "------------[ cut here ]------------",
            msg.as_str(),
            "WARNING: CPU: 0 PID: 100 at mm/slab_common.c:498 kmem_cache_destroy"
        ]
    );
    assert_eq!(bugs(&m), before + 1);
    // The cache is kept and still works; freeing the leak lets it go.
    check(&m.mm());
    assert_eq!(m.mm().find_cache("TestSlub_leak_destroy"), Some(s));
    m.run(|mm| {
        mm.kmem_cache_free(s, p).unwrap();
        mm.kmem_cache_destroy(s).unwrap();
    });
    assert_eq!(m.mm().find_cache("TestSlub_leak_destroy"), None);
    assert!(m.take_console().is_empty());
    check(&m.mm());
}

#[test]
fn test_leak_destroy_with_debug_lists_the_object() {
    let m = MachineBuilder::small().seed(5).boot();
    let s = test_kmem_cache_create(&m, "TestSlub_leak_dbg", 64, SlabFlags::STORE_USER);
    let p = m.run(|mm| mm.kmem_cache_alloc(s, Gfp::GFP_KERNEL)).unwrap();
    m.take_console();
    let r = m.run(|mm| mm.kmem_cache_destroy(s));
    assert!(matches!(
        r,
        Err(SlabError::ObjectsRemaining { objects: 1, .. })
    ));
    let console = m.take_console();
    assert!(
        console
            .iter()
            .any(|l| l.starts_with(&format!("Object {:#x} @offset=", p.0))),
        "{console:#?}"
    );
    assert!(
        console
            .iter()
            .any(|l| l.starts_with("Allocated in ") && l.contains("slub_kunit.rs")),
        "the owner is this file: {console:#?}"
    );
    m.run(|mm| {
        mm.kmem_cache_free(s, p).unwrap();
        mm.kmem_cache_destroy(s).unwrap();
    });
    check(&m.mm());
}

#[test]
fn test_krealloc_redzone_zeroing() {
    // The kernel builds a 64-byte kmalloc cache with SLAB_KMALLOC|SLAB_STORE_USER|
    // SLAB_RED_ZONE; here the whole machine gets slab_debug=FZU so kmalloc-64 has them.
    let m = MachineBuilder::small()
        .seed(5)
        .slab_debug(SlabFlags::parse_slab_debug("FZU").unwrap())
        .boot();
    m.take_console();
    let gfp = Gfp::GFP_KERNEL | Gfp::__GFP_ZERO;
    let p = m.run(|mm| mm.kmalloc(48, Gfp::GFP_KERNEL)).unwrap();
    write(&m, p.0, &[0xff; 48]);

    // Test shrink: in place, and 40..64 becomes kmalloc red zone.
    let p = m.run(|mm| mm.krealloc(p, 40, gfp)).unwrap();
    assert_eq!(read(&m, p.0, 40), vec![0xff; 40]);
    assert_eq!(read(&m, p.0 + 40, 24), vec![SLUB_RED_ACTIVE; 24]);

    // Test grow within the same 64-byte object: 40..56 zeroed, 56..64 red zone.
    let p = m.run(|mm| mm.krealloc(p, 56, gfp)).unwrap();
    assert_eq!(read(&m, p.0 + 40, 16), vec![0; 16]);
    assert_eq!(read(&m, p.0 + 56, 8), vec![SLUB_RED_ACTIVE; 8]);
    assert_eq!(slab_errors(&m).0, 0, "validate_slab_cache finds nothing");

    write(&m, p.0, &[0xff; 56]);
    // Test grow with allocating a bigger 128-byte object.
    let q = m.run(|mm| mm.krealloc(p, 112, gfp)).unwrap();
    assert_ne!(q, p);
    assert_eq!(read(&m, q.0, 56), vec![0xff; 56]);
    assert_eq!(read(&m, q.0 + 56, 56), vec![0; 56]);
    m.run(|mm| mm.kfree(q)).unwrap();
    let (errors, console) = slab_errors(&m);
    assert_eq!(errors, 0, "{console:#?}");
    assert!(m.mm().check().is_ok());
}

#[test]
fn krealloc_in_place_with_gfp_zero_zeroes_up_to_ksize() {
    let m = MachineBuilder::small().seed(5).boot();
    m.run(|mm| {
        for (size, shrink, grow) in [
            (48usize, 20usize, 60usize),
            (100, 97, 128),
            (3000, 2100, 4096),
        ] {
            let p = mm.kmalloc(size, Gfp::GFP_KERNEL).unwrap();
            let ks = mm.ksize(p).unwrap();
            mm.copy_to_kernel(p, &vec![0xee; ks]).unwrap();
            // Without __GFP_ZERO the spare bytes are left alone.
            assert_eq!(mm.krealloc(p, shrink, Gfp::GFP_KERNEL), Ok(p));
            let mut buf = vec![0; ks];
            mm.copy_from_kernel(p, &mut buf).unwrap();
            assert!(buf.iter().all(|&b| b == 0xee));
            // With __GFP_ZERO, [new_size, ksize) is zeroed.
            assert_eq!(
                mm.krealloc(p, shrink, Gfp::GFP_KERNEL | Gfp::__GFP_ZERO),
                Ok(p)
            );
            mm.copy_from_kernel(p, &mut buf).unwrap();
            assert!(buf[..shrink].iter().all(|&b| b == 0xee));
            assert!(buf[shrink..].iter().all(|&b| b == 0), "size {size}");
            mm.copy_to_kernel(p, &vec![0xdd; ks]).unwrap();
            assert_eq!(
                mm.krealloc(p, grow, Gfp::GFP_KERNEL | Gfp::__GFP_ZERO),
                Ok(p)
            );
            mm.copy_from_kernel(p, &mut buf).unwrap();
            assert!(buf[..grow].iter().all(|&b| b == 0xdd));
            assert!(buf[grow..].iter().all(|&b| b == 0));
            // Larger than ksize: moves, copies, frees the old one.
            let q = mm.krealloc(p, ks + 1, Gfp::GFP_KERNEL).unwrap();
            assert_ne!(q, p);
            let mut nb = vec![0; grow];
            mm.copy_from_kernel(q, &mut nb).unwrap();
            assert!(nb.iter().all(|&b| b == 0xdd));
            // krealloc(p, 0) frees and returns ZERO_SIZE_PTR; krealloc(NULL, n) allocates.
            assert_eq!(
                mm.krealloc(q, 0, Gfp::GFP_KERNEL),
                Ok(kmemlab_mm::slab::kmalloc::ZERO_SIZE_PTR)
            );
            let n = mm.krealloc(VirtAddr(0), 10, Gfp::GFP_KERNEL).unwrap();
            assert_eq!(mm.ksize(n), Ok(16));
            mm.kfree(n).unwrap();
        }
    });
    check(&m.mm());
}

#[test]
fn clean_use_of_debug_caches_reports_nothing() {
    // The counterpart of every test above: with all of slab_debug on and no corruption,
    // no BUG is ever printed, objects are poisoned when free and red-zoned when live.
    let m = MachineBuilder::small()
        .seed(5)
        .slab_debug(SlabFlags::DEBUG)
        .boot();
    m.take_console();
    let s = m
        .run(|mm| mm.kmem_cache_create("TestSlub_clean", 100, 0, SlabFlags::empty(), None))
        .unwrap();
    let mut live = Vec::new();
    m.run(|mm| {
        for i in 0..500usize {
            let p = mm.kmem_cache_alloc(s, Gfp::GFP_KERNEL).unwrap();
            mm.copy_to_kernel(p, &[i as u8; 100]).unwrap();
            live.push(p);
            let k = mm.kmalloc(1 + i % 700, Gfp::GFP_KERNEL).unwrap();
            mm.copy_to_kernel(k, &vec![0x11; 1 + i % 700]).unwrap();
            live.push(k);
            if i % 3 == 0 {
                let q = live.swap_remove(i % live.len());
                if mm.virt_to_slab(q).unwrap().1.slab_cache() == s.0 {
                    mm.kmem_cache_free(s, q).unwrap();
                } else {
                    mm.kfree(q).unwrap();
                }
            }
        }
        for q in live.drain(..) {
            if mm.virt_to_slab(q).unwrap().1.slab_cache() == s.0 {
                mm.kmem_cache_free(s, q).unwrap();
            } else {
                mm.kfree(q).unwrap();
            }
        }
        mm.kmem_cache_destroy(s).unwrap();
    });
    let console = m.take_console();
    assert!(console.is_empty(), "{console:#?}");
    assert_eq!(bugs(&m), 0);
    check(&m.mm());
}
