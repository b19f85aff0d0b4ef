//! The Rust-for-Linux-style API (`kmemlab_mm::alloc`): the allocators' size and alignment
//! limits, KBox/KVBox and KVec/KVVec across KMALLOC_MAX_SIZE, failures that leave a
//! container as it was, and drop giving every page back.

use core::alloc::Layout;

use crate::fixtures::*;
use kmemlab_mm::alloc::flags::{__GFP_HIGHMEM, GFP_ATOMIC, GFP_KERNEL, GFP_NOWAIT};
use kmemlab_mm::alloc::{
    AllocError, Allocator, KBox, KVBox, KVVec, KVec, KVmalloc, Kmalloc, VBox, VVec, Vmalloc,
};
use kmemlab_mm::slab::kmalloc::KMALLOC_MAX_SIZE;
use kmemlab_mm::slab::SlabError;
use kmemlab_mm::util::KvmallocError;
use kmemlab_mm::vmalloc::VmallocError;
use kmemlab_mm::Mm;
use kmemlab_mm::{Context, Profile, VirtAddr, ZoneType, PAGE_SIZE};
use kmemlab_sim::{Machine, SimPlatform};

/// KMALLOC_MAX_SIZE + 1 bytes.
type JustTooBig = [u8; KMALLOC_MAX_SIZE + 1];

/// Free pages once the lazy purge has run, every cache is shrunk and the per-CPU lists
/// are drained, page-table pages counted as free (vmalloc keeps them, as the kernel does);
/// `check()` passes.
fn settled_free_pages(m: &Machine) -> u64 {
    m.run(|mm| mm.purge_vmap_area_lazy());
    shrink_all_caches(m);
    let mm = m.mm();
    mm.check().expect("check() passes");
    mm.check().expect("check() passes");
    mm.zones().iter().map(|z| z.free_pages()).sum::<u64>() + mm.nr_pagetable_pages()
}

#[test]
fn kbox_of_kmalloc_max_size_plus_one_fails_and_kvbox_succeeds() {
    let m = MachineBuilder::small().cpus(1).seed(3).boot();
    let before = settled_free_pages(&m);
    m.run(|mm| {
        let e = KBox::<JustTooBig, _>::new_zeroed(mm, GFP_KERNEL).unwrap_err();
        assert_eq!(
            e,
            AllocError::Kmalloc(SlabError::TooLarge(KMALLOC_MAX_SIZE + 1))
        );
        // Exactly KMALLOC_MAX_SIZE is kmalloc's largest.
        let max = KBox::<[u8; KMALLOC_MAX_SIZE], _>::new_zeroed(mm, GFP_KERNEL).unwrap();
        assert!(!mm.is_vmalloc_addr(max.addr()));
        drop(max);

        let b = KVBox::<JustTooBig, _>::new_zeroed(mm, GFP_KERNEL).unwrap();
        assert!(mm.is_vmalloc_addr(b.addr()));
        let area = mm.find_vm_area(b.addr()).unwrap();
        assert_eq!(area.requested_size, KMALLOC_MAX_SIZE as u64 + 1);
        // The last byte is there, zeroed, and writable through the vmalloc mapping.
        let last = kmemlab_mm::VirtAddr(b.addr().0 + KMALLOC_MAX_SIZE as u64);
        let mut byte = [0xff];
        mm.copy_from_kernel_virt(last, &mut byte).unwrap();
        assert_eq!(byte, [0]);
        // A VBox of the same size, too.
        let v = VBox::<JustTooBig, _>::new_zeroed(mm, GFP_KERNEL).unwrap();
        assert!(mm.is_vmalloc_addr(v.addr()));
        mm.check().unwrap();
    });
    assert_eq!(settled_free_pages(&m), before, "drop gave every page back");
}

#[test]
fn boxes_hold_values_in_kernel_memory() {
    let m = MachineBuilder::small().cpus(1).seed(3).boot();
    let before = settled_free_pages(&m);
    m.run(|mm| {
        let mut k = KBox::new(mm, [1u64, 2, 3, 4], GFP_KERNEL).unwrap();
        let v = VBox::new(mm, 0x1234_5678u32, GFP_KERNEL).unwrap();
        let kv = KVBox::new(mm, -1i16, GFP_KERNEL).unwrap();
        assert_eq!(k.get(), Ok([1, 2, 3, 4]));
        k.set([5, 6, 7, 8]).unwrap();
        assert_eq!(k.get(), Ok([5, 6, 7, 8]));
        assert_eq!(v.get(), Ok(0x1234_5678));
        assert_eq!(kv.get(), Ok(-1));
        // The bytes are the machine's: the direct map shows the KBox's value.
        let mut raw = [0u8; 8];
        mm.copy_from_kernel(k.addr(), &mut raw).unwrap();
        assert_eq!(u64::from_ne_bytes(raw), 5);
        assert_eq!(mm.ksize(k.addr()), Ok(32));
        assert!(mm.is_vmalloc_addr(v.addr()));
        assert!(!mm.is_vmalloc_addr(kv.addr()));
        // __GFP_ZERO through new_zeroed.
        let z = KBox::<[u32; 64], _>::new_zeroed(mm, GFP_KERNEL).unwrap();
        assert_eq!(z.get(), Ok([0; 64]));
        // A zero-sized value allocates nothing.
        let nothing = KBox::new(mm, [0u64; 0], GFP_KERNEL).unwrap();
        assert_eq!(nothing.get(), Ok([]));
    });
    assert_eq!(settled_free_pages(&m), before);
}

#[test]
fn kvec_past_kmalloc_max_size_fails_cleanly_and_kvvec_grows() {
    let m = MachineBuilder::small().cpus(1).seed(3).boot();
    let before = settled_free_pages(&m);
    m.run(|mm| {
        let elements = KMALLOC_MAX_SIZE / 8; // 4 MiB of u64
        let data: Vec<u64> = (0..elements as u64).map(|i| i * 3 + 1).collect();
        let mut k = KVec::with_capacity(mm, elements, GFP_KERNEL).unwrap();
        for chunk in data.chunks(100_000) {
            k.extend_from_slice(chunk, GFP_KERNEL).unwrap();
        }
        assert_eq!(k.len(), elements);
        assert!(!mm.is_vmalloc_addr(k.addr()));
        let (addr, cap) = (k.addr(), k.capacity());
        assert_eq!(cap, elements, "the buffer is exactly KMALLOC_MAX_SIZE");

        // One more element needs a bigger buffer, which kmalloc cannot give.
        let too_large = AllocError::Kmalloc(SlabError::TooLarge(2 * KMALLOC_MAX_SIZE));
        assert_eq!(k.push(7, GFP_KERNEL), Err(too_large.clone()));
        assert_eq!(k.reserve(1, GFP_KERNEL), Err(too_large.clone()));
        assert_eq!(k.extend_from_slice(&[1, 2], GFP_KERNEL), Err(too_large));
        assert_eq!((k.len(), k.capacity(), k.addr()), (elements, cap, addr));
        assert!(k.iter().eq(data.iter().copied()), "contents unchanged");

        // The same growth in a KVVec moves to vmalloc and keeps every element.
        let mut kv = KVVec::new(mm);
        kv.extend_from_slice(&data, GFP_KERNEL).unwrap();
        assert!(!mm.is_vmalloc_addr(kv.addr()));
        kv.push(7, GFP_KERNEL).unwrap();
        assert!(mm.is_vmalloc_addr(kv.addr()));
        assert_eq!(kv.len(), elements + 1);
        assert_eq!(kv.capacity(), 2 * elements);
        assert!(kv.iter().take(elements).eq(data.iter().copied()));
        assert_eq!(kv.pop(), Some(7));
        // Growing further is vrealloc's.
        kv.reserve(3 * elements, GFP_KERNEL).unwrap();
        assert!(kv.iter().eq(data.iter().copied()));

        // A KVVec that may not block cannot fall back, and stays as it was.
        let mut small = KVVec::new(mm);
        small.extend_from_slice(&data, GFP_KERNEL).unwrap();
        let e = small.push(1, GFP_NOWAIT).unwrap_err();
        assert!(
            matches!(e, AllocError::KVmalloc(KvmallocError::NoFallback { .. })),
            "{e}"
        );
        assert_eq!(small.len(), elements);
        assert!(small.iter().eq(data.iter().copied()));
        mm.check().unwrap();
        mm.check().unwrap();
    });
    assert_eq!(settled_free_pages(&m), before, "drop gave every page back");
}

#[test]
fn vectors_of_every_allocator() {
    let m = MachineBuilder::small().cpus(1).seed(3).boot();
    let before = settled_free_pages(&m);
    m.run(|mm| {
        let mut k = KVec::new(mm);
        let mut v = VVec::new(mm);
        let mut kv = KVVec::new(mm);
        for i in 0..5000u32 {
            k.push(i, GFP_KERNEL).unwrap();
            v.push(i, GFP_KERNEL).unwrap();
            kv.push(i, GFP_KERNEL).unwrap();
        }
        for (name, items) in [
            ("KVec", k.iter().collect::<Vec<_>>()),
            ("VVec", v.iter().collect()),
            ("KVVec", kv.iter().collect()),
        ] {
            assert_eq!(items, (0..5000).collect::<Vec<_>>(), "{name}");
        }
        assert!(v.addr().0.is_multiple_of(PAGE_SIZE as u64));
        assert_eq!(
            v.set(5000, 1),
            Err(AllocError::OutOfBounds {
                index: 5000,
                len: 5000
            })
        );
        assert_eq!(v.get(5000), None);
        v.set(4999, 1).unwrap();
        assert_eq!(v.pop(), Some(1));
        v.truncate(10);
        assert_eq!(v.len(), 10);
        v.clear();
        assert!(v.is_empty() && v.capacity() >= 5000);
        let w = VVec::<u8, _>::with_capacity(mm, 3 * PAGE_SIZE, GFP_KERNEL).unwrap();
        assert_eq!(mm.find_vm_area(w.addr()).unwrap().nr_pages, 3);
        // Elements of no size take no memory at all.
        let mut unit = KVec::<[u16; 0], _>::new(mm);
        for _ in 0..1000 {
            unit.push([], GFP_KERNEL).unwrap();
        }
        assert_eq!(unit.len(), 1000);
        assert_eq!(unit.capacity(), usize::MAX);
    });
    assert_eq!(settled_free_pages(&m), before, "drop gave every page back");
}

/// `A::realloc` from 100 bytes to three pages keeps the bytes; to size zero it frees.
fn realloc_keeps_the_contents_and_size_zero_frees<A: Allocator>(mm: &Mm<SimPlatform>) {
    let small = Layout::array::<u8>(100).unwrap();
    let big = Layout::array::<u8>(3 * PAGE_SIZE).unwrap();
    let zst = Layout::from_size_align(0, 64).unwrap();
    let bytes: Vec<u8> = (0..100).collect();
    let p = A::alloc(mm, small, GFP_KERNEL).unwrap();
    mm.copy_to_kernel_virt(p, &bytes).unwrap();
    let q = A::realloc(mm, Some(p), big, small, GFP_KERNEL).unwrap();
    let mut back = vec![0u8; 100];
    mm.copy_from_kernel_virt(q, &mut back).unwrap();
    assert_eq!(back, bytes, "{}", A::NAME);
    let freed = A::realloc(mm, Some(q), zst, big, GFP_KERNEL);
    assert_eq!(freed, Ok(kmemlab_mm::VirtAddr(64)), "{}", A::NAME);
}

#[test]
fn allocator_alignment_and_sizes() {
    let m = MachineBuilder::small().cpus(1).seed(3).boot();
    let before = settled_free_pages(&m);
    m.run(|mm| {
        // kmalloc: a power-of-two size is aligned to itself; a padded layout to its align.
        for (size, align) in [
            (8, 8),
            (64, 64),
            (24, 16),
            (256, 256),
            (4096, 4096),
            (8192, 8192),
            (1 << 16, 1 << 16),
        ] {
            let layout = Layout::from_size_align(size, align).unwrap();
            let p = Kmalloc::alloc(mm, layout, GFP_KERNEL).unwrap();
            assert!(
                p.0.is_multiple_of(align as u64),
                "Kmalloc {size}/{align}: {p}"
            );
            Kmalloc::free(mm, p, layout).unwrap();
            if align <= PAGE_SIZE {
                let p = KVmalloc::alloc(mm, layout, GFP_KERNEL).unwrap();
                assert!(
                    p.0.is_multiple_of(align as u64),
                    "KVmalloc {size}/{align}: {p}"
                );
                KVmalloc::free(mm, p, layout).unwrap();
            }
        }
        // vmalloc is page aligned, and gives no more.
        let page = Layout::from_size_align(10, PAGE_SIZE).unwrap();
        let p = Vmalloc::alloc(mm, page, GFP_KERNEL).unwrap();
        assert!(p.0.is_multiple_of(PAGE_SIZE as u64));
        Vmalloc::free(mm, p, page).unwrap();
        let two_pages = Layout::from_size_align(10, 2 * PAGE_SIZE).unwrap();
        for e in [
            Vmalloc::alloc(mm, two_pages, GFP_KERNEL).unwrap_err(),
            KVmalloc::alloc(mm, two_pages, GFP_KERNEL).unwrap_err(),
        ] {
            assert!(
                matches!(
                    e,
                    AllocError::Alignment {
                        align: 8192,
                        max: 4096,
                        ..
                    }
                ),
                "{e}"
            );
        }
        // Kmalloc can: the padded 8 KiB is the kmalloc-8k class, aligned to 8 KiB.
        let p = Kmalloc::alloc(mm, two_pages, GFP_KERNEL).unwrap();
        assert!(p.0.is_multiple_of(2 * PAGE_SIZE as u64));
        Kmalloc::free(mm, p, two_pages).unwrap();
        // Zero-sized layouts allocate nothing and return an aligned dangling address.
        let zst = Layout::from_size_align(0, 64).unwrap();
        let d = Kmalloc::alloc(mm, zst, GFP_KERNEL).unwrap();
        assert_eq!(d.0, 64);
        Kmalloc::free(mm, d, zst).unwrap();
        realloc_keeps_the_contents_and_size_zero_frees::<Kmalloc>(mm);
        realloc_keeps_the_contents_and_size_zero_frees::<Vmalloc>(mm);
        realloc_keeps_the_contents_and_size_zero_frees::<KVmalloc>(mm);
        // A layout too large for a Vec's capacity arithmetic.
        let mut v = KVec::<u64, _>::new(mm);
        assert_eq!(
            v.reserve(usize::MAX / 4, GFP_KERNEL),
            Err(AllocError::CapacityOverflow)
        );
    });
    assert_eq!(settled_free_pages(&m), before, "every page is back");
}

/// Interrupt context: kmalloc with GFP_ATOMIC works; vmalloc is refused as the kernel
/// refuses it (its BUG, reported), and the KVVec is left as it was: nothing panics.
#[test]
fn interrupt_context_and_memory_freed_behind_the_containers_back() {
    let m = MachineBuilder::small().cpus(1).seed(3).boot();
    m.on_cpu(0, Context::Hardirq, |mm| {
        let b = KBox::new(mm, 9u8, GFP_ATOMIC).unwrap();
        assert_eq!(b.get(), Ok(9));
        let e = VBox::new(mm, 9u8, GFP_ATOMIC).unwrap_err();
        assert!(
            matches!(e, AllocError::Vmalloc(VmallocError::InInterrupt(_))),
            "{e}"
        );
        let mut v = KVVec::<u8, _>::new(mm);
        v.push(1, GFP_ATOMIC).unwrap();
        let e = v.reserve(5 << 20, GFP_ATOMIC).unwrap_err();
        assert!(
            matches!(e, AllocError::KVmalloc(KvmallocError::NoFallback { .. })),
            "{e}"
        );
        assert_eq!(v.get(0), Some(1));
    })
    .unwrap();
    assert!(m
        .take_console()
        .iter()
        .any(|l| l.contains("kernel BUG at mm/vmalloc.c")));

    // Someone vfree()s a VBox's memory behind its back: reads fail with an error, and the
    // drop's vfree is refused with the kernel's warning; nothing panics.
    m.run(|mm| {
        let b = VBox::new(mm, 5u64, GFP_KERNEL).unwrap();
        mm.vfree(b.addr()).unwrap();
        assert!(matches!(b.get(), Err(AllocError::Unmapped(_))));
        let mut v = VVec::new(mm);
        v.extend_from_slice(&[1u32, 2, 3], GFP_KERNEL).unwrap();
        mm.vfree(v.addr()).unwrap();
        assert_eq!(v.get(0), None);
        assert_eq!(v.iter().count(), 0);
        assert!(matches!(v.set(0, 1), Err(AllocError::Unmapped(_))));
    });
    let console = m.take_console();
    assert!(
        console
            .iter()
            .any(|l| l.contains("Trying to vfree() nonexistent vm area")),
        "{console:?}"
    );
    m.mm().check().unwrap();
    m.mm().check().unwrap();
}

/// On i386, `__GFP_HIGHMEM` lets vmalloc place a VVec in HighMem, which has no direct
/// mapping; the elements are still reached through the vmalloc mapping.
#[test]
fn vvec_in_highmem_on_i386() {
    let m = MachineBuilder::new()
        .profile(Profile::I386)
        .ram(GIB)
        .cpus(1)
        .no_holes()
        .boot();
    m.run(|mm| {
        let mut v = VVec::<u32, _>::with_capacity(mm, 1 << 20, GFP_KERNEL | __GFP_HIGHMEM).unwrap();
        v.extend_from_slice(&(0..1 << 20).collect::<Vec<u32>>(), GFP_KERNEL)
            .unwrap();
        let mut zones = std::collections::BTreeSet::new();
        mm.vm_area_pfns(v.addr(), |pfn| {
            zones.insert(mm.zone_of_pfn(pfn).unwrap().zone_type);
        })
        .unwrap();
        assert!(zones.contains(&ZoneType::HighMem), "{zones:?}");
        assert!(v.iter().eq(0..1 << 20));
    });
    m.mm().check().unwrap();
}

/// Kmalloc's alignment holds under slab_debug too: kmalloc caches are aligned to the
/// largest power-of-two divisor of their size (`create_boot_cache`), so red zones do not
/// shift objects off their natural alignment.
#[test]
fn kmalloc_alignment_survives_slab_debug() {
    use kmemlab_mm::slab::SlabFlags;
    let m = MachineBuilder::small()
        .cpus(1)
        .slab_debug(SlabFlags::RED_ZONE | SlabFlags::POISON | SlabFlags::STORE_USER)
        .boot();
    m.run(|mm| {
        for (size, align) in [
            (8, 8),
            (16, 16),
            (48, 16),
            (64, 64),
            (96, 32),
            (256, 256),
            (4096, 4096),
        ] {
            let layout = Layout::from_size_align(size, align).unwrap();
            let mut live = vec![];
            for _ in 0..20 {
                let p = Kmalloc::alloc(mm, layout, GFP_KERNEL).unwrap();
                assert!(p.0.is_multiple_of(align as u64), "{size}/{align}: {p}");
                live.push(p);
            }
            for p in live {
                Kmalloc::free(mm, p, layout).unwrap();
            }
        }
    });
    m.mm().check().unwrap();
}

/// Under slab_debug the 8 KiB class is aligned to a page only (red zones shift the objects
/// off 8 KiB), so an 8 KiB-aligned layout is refused with `AllocError::Alignment` instead
/// of being served misaligned; what the class does give (a page) still works, and a
/// large kmalloc (above 8 KiB) is aligned to its own size. Custom kmalloc classes are
/// checked the same way: a 64-byte, 64-aligned layout served by a 96-byte class would be
/// 32-aligned.
#[test]
fn kmalloc_refuses_an_alignment_its_class_cannot_give() {
    use kmemlab_mm::slab::kmalloc::KmallocSizes;
    use kmemlab_mm::slab::{SlabConfig, SlabFlags};
    let debug = MachineBuilder::small()
        .cpus(1)
        .slab_debug(SlabFlags::RED_ZONE | SlabFlags::POISON | SlabFlags::STORE_USER)
        .boot();
    debug.run(|mm| {
        let two_pages = Layout::from_size_align(2 * PAGE_SIZE, 2 * PAGE_SIZE).unwrap();
        for _ in 0..8 {
            let e = Kmalloc::alloc(mm, two_pages, GFP_KERNEL).unwrap_err();
            assert_eq!(
                e,
                AllocError::Alignment {
                    allocator: "Kmalloc",
                    align: 2 * PAGE_SIZE,
                    max: PAGE_SIZE,
                }
            );
        }
        // A vector alongside is untouched by the refusals.
        let mut v = KVec::<[u8; 16], _>::new(mm);
        v.push([1; 16], GFP_KERNEL).unwrap();
        let page_aligned = Layout::from_size_align(2 * PAGE_SIZE, PAGE_SIZE).unwrap();
        let mut live = vec![];
        for _ in 0..8 {
            let p = Kmalloc::alloc(mm, page_aligned, GFP_KERNEL).unwrap();
            assert!(p.0.is_multiple_of(PAGE_SIZE as u64), "{p}");
            live.push(p);
        }
        for p in live {
            Kmalloc::free(mm, p, page_aligned).unwrap();
        }
        // Above the largest class: pages, aligned to the block.
        let four_pages = Layout::from_size_align(4 * PAGE_SIZE, 4 * PAGE_SIZE).unwrap();
        let p = Kmalloc::alloc(mm, four_pages, GFP_KERNEL).unwrap();
        assert!(p.0.is_multiple_of(4 * PAGE_SIZE as u64), "{p}");
        Kmalloc::free(mm, p, four_pages).unwrap();
        // KVmalloc may be served by kmalloc: the same check up to a page.
        let p = KVmalloc::alloc(mm, page_aligned, GFP_KERNEL).unwrap();
        assert!(p.0.is_multiple_of(PAGE_SIZE as u64), "{p}");
        KVmalloc::free(mm, p, page_aligned).unwrap();
        assert_eq!(v.get(0), Some([1; 16]));
    });
    debug.mm().check().unwrap();

    let mut sizes: Vec<usize> = vec![8, 16, 32, 48, 96, 192];
    sizes.extend((8..=13).map(|s| 1 << s));
    let custom = MachineBuilder::small()
        .cpus(1)
        .slab(SlabConfig {
            kmalloc_sizes: Some(KmallocSizes::new(&sizes).unwrap()),
            ..SlabConfig::default()
        })
        .boot();
    custom.run(|mm| {
        let layout = Layout::from_size_align(64, 64).unwrap();
        for e in [
            Kmalloc::alloc(mm, layout, GFP_KERNEL).unwrap_err(),
            KVmalloc::alloc(mm, layout, GFP_KERNEL).unwrap_err(),
        ] {
            assert!(
                matches!(
                    e,
                    AllocError::Alignment {
                        align: 64,
                        max: 32,
                        ..
                    }
                ),
                "{e}"
            );
        }
        // 32 is what the 96-byte class gives.
        let layout = Layout::from_size_align(64, 32).unwrap();
        let p = Kmalloc::alloc(mm, layout, GFP_KERNEL).unwrap();
        assert!(p.0.is_multiple_of(32));
        Kmalloc::free(mm, p, layout).unwrap();
    });
    custom.mm().check().unwrap();
}

/// kmalloc does not refuse `__GFP_HIGHMEM`: it reports it ("Unexpected gfp ... Fix your
/// code!", counted as a WARNING, as `kmalloc_fix_flags()` does) and strips it, so a KBox
/// asked for with it on i386 gets direct-mapped lowmem.
#[test]
fn kbox_with_gfp_highmem_gets_lowmem_and_a_report() {
    let m = MachineBuilder::new()
        .profile(Profile::I386)
        .ram(GIB)
        .cpus(1)
        .no_holes()
        .boot();
    m.take_console();
    let warn0 = m
        .mm()
        .events()
        .warn
        .load(std::sync::atomic::Ordering::Relaxed);
    m.run(|mm| {
        // 16 KiB: a large kmalloc, pages at once; then a small one, from a new slab.
        let big = KBox::<[u32; 4096], _>::new_zeroed(mm, GFP_KERNEL | __GFP_HIGHMEM).unwrap();
        let small = KBox::new(mm, 5u64, GFP_KERNEL | __GFP_HIGHMEM).unwrap();
        for addr in [big.addr(), small.addr()] {
            assert!(!mm.is_vmalloc_addr(addr));
            let pfn = kmemlab_mm::PhysAddr(mm.kernel_virt_to_phys(addr.0).unwrap()).pfn();
            assert_ne!(
                mm.zone_of_pfn(pfn).unwrap().zone_type,
                ZoneType::HighMem,
                "{addr}"
            );
        }
        assert_eq!(big.get().unwrap()[4095], 0);
        assert_eq!(small.get(), Ok(5));
    });
    let console = m.take_console();
    assert!(
        console
            .iter()
            .any(|l| l.contains("Unexpected gfp") && l.contains("Fix your code!")),
        "{console:?}"
    );
    assert!(
        m.mm()
            .events()
            .warn
            .load(std::sync::atomic::Ordering::Relaxed)
            > warn0
    );
    m.mm().check().unwrap();
}

/// `Iter` stops early on memory freed behind the vector's back, so it does not claim an
/// exact size: its lower bound is 0, and what it yields may be fewer than `len()`.
#[test]
fn iter_makes_no_exact_size_promise() {
    let m = MachineBuilder::small().cpus(1).seed(3).boot();
    m.run(|mm| {
        let mut v = VVec::new(mm);
        v.extend_from_slice(&[1u16, 2, 3, 4], GFP_KERNEL).unwrap();
        let mut it = v.iter();
        assert_eq!(it.size_hint(), (0, Some(4)));
        assert_eq!(it.next(), Some(1));
        mm.vfree(v.addr()).unwrap();
        assert_eq!(it.size_hint(), (0, Some(3)));
        assert_eq!(it.next(), None);
        let collected: Vec<u16> = v.iter().collect();
        assert!(collected.len() < v.len());
    });
    m.take_console();
}

/// A vector's elements are where the kernel's mappings put them: each read back through
/// `copy_from_kernel_virt` at its own address, after growths that move the buffer, a
/// `set`, and a KVVec's move from the direct map (kmalloc, its physical address held) to
/// vmalloc (reached through the page tables).
#[test]
fn vector_elements_are_where_the_kernel_mappings_say() {
    let m = MachineBuilder::small().cpus(1).seed(5).boot();
    m.run(|mm| {
        let at = |v: VirtAddr, i: usize| {
            let mut bytes = [0u8; 8];
            mm.copy_from_kernel_virt(VirtAddr(v.0 + 8 * i as u64), &mut bytes)
                .expect("mapped");
            u64::from_le_bytes(bytes)
        };
        let mut k = KVec::<u64, _>::new(mm);
        let mut moved = 0;
        for i in 0..5000u64 {
            let before = k.addr();
            k.push(i * 3 + 1, GFP_KERNEL).unwrap();
            moved += usize::from(k.addr() != before);
        }
        assert!(moved > 5, "the buffer moved {moved} times");
        k.set(17, 99).unwrap();
        for i in 0..5000 {
            let want = if i == 17 { 99 } else { i as u64 * 3 + 1 };
            assert_eq!(
                (at(k.addr(), i), k.get(i)),
                (want, Some(want)),
                "element {i}"
            );
        }
        let elements = KMALLOC_MAX_SIZE / 8;
        let mut kv = KVVec::<u64, _>::with_capacity(mm, elements, GFP_KERNEL).unwrap();
        kv.extend_from_slice(&vec![5; elements], GFP_KERNEL)
            .unwrap();
        assert!(!mm.is_vmalloc_addr(kv.addr()));
        kv.push(6, GFP_KERNEL).unwrap();
        assert!(mm.is_vmalloc_addr(kv.addr()));
        kv.set(3, 7).unwrap();
        for (i, want) in [(0, 5), (3, 7), (elements - 1, 5), (elements, 6)] {
            assert_eq!(
                (at(kv.addr(), i), kv.get(i)),
                (want, Some(want)),
                "element {i}"
            );
        }
        mm.check().unwrap();
    });
}
