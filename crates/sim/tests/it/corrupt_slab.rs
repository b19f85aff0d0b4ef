//! Corrupted slab metadata: `struct page` of slab and large-kmalloc pages, freelists inside
//! free objects, `kmem_cache` and `kmem_cache_node` structures, `kmem_cache_cpu` in the
//! per-CPU areas, and the node partial lists are overwritten with zeros, all-ones and
//! seeded random bytes; then kmalloc / kfree / kmem_cache_* run on both CPUs, a large
//! kmalloc is freed and made, the cache is shrunk and destroyed, `/proc/slabinfo` is read
//! and `check()` runs. Each case must end in a reported kernel event (a `BUG`, `WARNING`,
//! oops or panic on the console) or in a clean result — never a host fault or a Rust
//! panic. The reproductions of the bugs fixed with this test come after.

use crate::fixtures::*;
use kmemlab_mm::slab::cache::KmemCacheNode;
use kmemlab_mm::slab::{KmemCache, KmemCacheRef, SlabError, SlabFlags};
use kmemlab_mm::{Context, Gfp, Mm, VirtAddr};
use kmemlab_sim::{Machine, SimPlatform};

/// `struct kmem_cache` field offsets (`#[repr(C)]`: magic, self_va, cpu_slab, node).
const KMEM_CACHE_SELF_VA: u64 = 8;
const KMEM_CACHE_CPU_SLAB: u64 = 16;
const KMEM_CACHE_NODE: u64 = 24;
/// `struct kmem_cache_node`: the partial list head (after the lock word and nr_partial).
const NODE_PARTIAL: u64 = 16;
/// `struct page`: the list links (`next`, `prev`).
const PAGE_LINKS: u64 = 16;
/// Size of `struct kmem_cache_cpu`.
const KMEM_CACHE_CPU_SIZE: usize = 40;

/// What is written over a structure.
const FILLS: [Fill; 5] = [
    Fill::Zeros,
    Fill::Ones,
    Fill::Random(1),
    Fill::Random(2),
    Fill::Random(3),
];

/// A machine with some slab state worth corrupting: a cache of its own, live and freed
/// objects of it and of kmalloc-64 (so slabs are partial and free objects hold free
/// pointers), partial slabs on the node lists, and a live large kmalloc.
struct Setup {
    m: Machine,
    cache: KmemCacheRef,
    kmalloc_live: Vec<VirtAddr>,
    cache_live: Vec<VirtAddr>,
    kmalloc_freed: Vec<VirtAddr>,
    cache_freed: Vec<VirtAddr>,
    large: VirtAddr,
}

fn setup(debug: SlabFlags) -> Setup {
    let m = MachineBuilder::small().seed(29).slab_debug(debug).boot();
    let cache = m
        .run(|mm| mm.kmem_cache_create("victim", 96, 0, SlabFlags::empty(), None))
        .unwrap();
    let (mut kmalloc_live, mut cache_live) = (Vec::new(), Vec::new());
    m.run(|mm| {
        for i in 0..300u32 {
            let p = mm.kmalloc(64, Gfp::GFP_KERNEL).unwrap();
            mm.copy_to_kernel(p, &[i as u8; 64]).unwrap();
            kmalloc_live.push(p);
            let q = mm.kmem_cache_alloc(cache, Gfp::GFP_KERNEL).unwrap();
            mm.copy_to_kernel(q, &[i as u8; 96]).unwrap();
            cache_live.push(q);
        }
    });
    // Every other object freed: partial slabs with freelists threaded through objects.
    let kmalloc_freed: Vec<VirtAddr> = kmalloc_live.iter().copied().skip(1).step_by(2).collect();
    let cache_freed: Vec<VirtAddr> = cache_live.iter().copied().skip(1).step_by(2).collect();
    kmalloc_live.retain(|p| !kmalloc_freed.contains(p));
    cache_live.retain(|p| !cache_freed.contains(p));
    m.run(|mm| {
        for &p in &kmalloc_freed {
            mm.kfree(p).unwrap();
        }
        for &p in &cache_freed {
            mm.kmem_cache_free(cache, p).unwrap();
        }
        // The per-CPU slabs go back to the node lists (and empty slabs away).
        mm.kmem_cache_shrink(cache).unwrap();
    });
    let large = m.run(|mm| mm.kmalloc(20_000, Gfp::GFP_KERNEL)).unwrap();
    m.mm()
        .check()
        .expect("check() passes before the corruption");
    m.take_console();
    Setup {
        m,
        cache,
        kmalloc_live,
        cache_live,
        kmalloc_freed,
        cache_freed,
        large,
    }
}

fn read_u64(mm: &Mm<SimPlatform>, va: u64) -> u64 {
    let mut b = [0u8; 8];
    mm.copy_from_kernel(VirtAddr(va), &mut b).unwrap();
    u64::from_le_bytes(b)
}

fn read_u32(mm: &Mm<SimPlatform>, va: u64) -> u32 {
    let mut b = [0u8; 4];
    mm.copy_from_kernel(VirtAddr(va), &mut b).unwrap();
    u32::from_le_bytes(b)
}

fn write(mm: &Mm<SimPlatform>, va: u64, bytes: &[u8]) {
    mm.copy_to_kernel(VirtAddr(va), bytes)
        .unwrap_or_else(|e| panic!("corrupting {va:#x}: {e}"));
}

fn struct_page_of(mm: &Mm<SimPlatform>, addr: VirtAddr) -> u64 {
    mm.struct_page_address(mm.virt_to_page(addr).unwrap()).0
}

fn kmalloc64(mm: &Mm<SimPlatform>) -> u64 {
    mm.find_cache("kmalloc-64").unwrap().0
}

/// The node structure of the cache at `cache`.
fn node_of(mm: &Mm<SimPlatform>, cache: u64) -> u64 {
    assert_eq!(read_u64(mm, cache + KMEM_CACHE_SELF_VA), cache);
    read_u64(mm, cache + KMEM_CACHE_NODE)
}

/// `cpu`'s `kmem_cache_cpu` of the cache at `cache`, in the per-CPU areas.
fn cpu_slab_of(mm: &Mm<SimPlatform>, cache: u64, cpu: u64) -> u64 {
    let ptr = read_u64(mm, cache + KMEM_CACHE_CPU_SLAB);
    let percpu = mm
        .memblock()
        .reserved()
        .regions()
        .iter()
        .find(|r| r.name == kmemlab_mm::mm_init::PERCPU_NAME)
        .expect("the per-CPU areas")
        .base;
    let unit = percpu
        + cpu * kmemlab_mm::percpu::unit_size() as u64
        + std::mem::size_of::<kmemlab_mm::percpu::PerCpu>() as u64;
    mm.layout().page_offset + unit + (ptr & 0xffff_ffff)
}

/// What can be corrupted.
#[derive(Copy, Clone, Debug)]
enum Target {
    SlabStructPage,
    LargeKmallocStructPage,
    FreeObjects,
    KmemCache,
    KmallocKmemCache,
    KmemCacheNode,
    KmemCacheCpu,
    PartialListLinks,
}

const TARGETS: [Target; 8] = [
    Target::SlabStructPage,
    Target::LargeKmallocStructPage,
    Target::FreeObjects,
    Target::KmemCache,
    Target::KmallocKmemCache,
    Target::KmemCacheNode,
    Target::KmemCacheCpu,
    Target::PartialListLinks,
];

fn corrupt(s: &Setup, target: Target, fill: Fill) {
    let mm = s.m.mm();
    let page_size = std::mem::size_of::<kmemlab_mm::Page>();
    match target {
        Target::SlabStructPage => {
            for &p in [&s.kmalloc_live[3], &s.cache_live[7]] {
                write(&mm, struct_page_of(&mm, p), &fill.bytes(page_size));
            }
        }
        Target::LargeKmallocStructPage => {
            write(&mm, struct_page_of(&mm, s.large), &fill.bytes(page_size));
        }
        Target::FreeObjects => {
            for &p in s.kmalloc_freed.iter().take(5) {
                write(&mm, p.0, &fill.bytes(64));
            }
            for &p in s.cache_freed.iter().take(5) {
                write(&mm, p.0, &fill.bytes(96));
            }
        }
        Target::KmemCache => {
            write(
                &mm,
                s.cache.0,
                &fill.bytes(std::mem::size_of::<KmemCache>()),
            );
        }
        Target::KmallocKmemCache => {
            let c = kmalloc64(&mm);
            write(&mm, c, &fill.bytes(std::mem::size_of::<KmemCache>()));
        }
        Target::KmemCacheNode => {
            for c in [s.cache.0, kmalloc64(&mm)] {
                let node = node_of(&mm, c);
                write(&mm, node, &fill.bytes(std::mem::size_of::<KmemCacheNode>()));
            }
        }
        Target::KmemCacheCpu => {
            for c in [s.cache.0, kmalloc64(&mm)] {
                for cpu in 0..2 {
                    let at = cpu_slab_of(&mm, c, cpu);
                    write(&mm, at, &fill.bytes(KMEM_CACHE_CPU_SIZE));
                }
            }
        }
        Target::PartialListLinks => {
            let node = node_of(&mm, s.cache.0);
            let first = read_u32(&mm, node + NODE_PARTIAL);
            assert_ne!(first, u32::MAX, "the victim cache has partial slabs");
            let page =
                mm.struct_page_address(mm.pfn_to_page(kmemlab_mm::Pfn(first as u64)).unwrap());
            write(&mm, page.0 + PAGE_LINKS, &fill.bytes(8));
            // And the second slab's links, and the head itself.
            let second = read_u32(&mm, page.0 + PAGE_LINKS);
            if let Ok(p) = mm.pfn_to_page(kmemlab_mm::Pfn(second as u64)) {
                let at = mm.struct_page_address(p).0 + PAGE_LINKS;
                write(&mm, at, &Fill::Random(9).bytes(8));
            }
            write(&mm, node + NODE_PARTIAL, &fill.bytes(4));
        }
    }
}

/// Run the allocators on `cpu`; errors are collected, a halted machine stops the run.
fn workload(s: &Setup, cpu: usize, errors: &mut Vec<String>) {
    let mut note = |r: Result<(), SlabError>| {
        if let Err(e) = r {
            errors.push(e.to_string());
        }
    };
    s.m.on_cpu(cpu, Context::Process, |mm| {
        // Enough allocations to use every free object the setup left (and so follow
        // every freelist), then all freed again; twice.
        for round in 0..2u8 {
            if mm.halted() {
                return;
            }
            let mut mine = Vec::new();
            for _ in 0..400 {
                match mm.kmalloc(64, Gfp::GFP_KERNEL) {
                    Ok(p) => {
                        let _ = mm.copy_to_kernel(p, &[round; 64]);
                        mine.push(p);
                    }
                    Err(e) => note(Err(e)),
                }
                match mm.kmem_cache_alloc(s.cache, Gfp::GFP_KERNEL) {
                    Ok(p) => mine.push(p),
                    Err(e) => note(Err(e)),
                }
                if mm.halted() {
                    return;
                }
            }
            for p in mine {
                let r = match mm.ksize(p) {
                    Ok(64) => mm.kfree(p),
                    _ => mm.kmem_cache_free(s.cache, p),
                };
                note(r);
                if mm.halted() {
                    return;
                }
            }
        }
    })
    .expect("CPU available");
}

/// The ends of the story: everything set up is freed, the cache shrunk and destroyed,
/// a large kmalloc freed and another made, `/proc/slabinfo` read.
fn teardown(s: &Setup, errors: &mut Vec<String>) {
    let mut note = |r: Result<(), SlabError>| {
        if let Err(e) = r {
            errors.push(e.to_string());
        }
    };
    s.m.run(|mm| {
        for &p in &s.kmalloc_live {
            if mm.halted() {
                return;
            }
            note(mm.kfree(p));
        }
        for &p in &s.cache_live {
            if mm.halted() {
                return;
            }
            note(mm.kmem_cache_free(s.cache, p));
        }
        note(mm.kfree(s.large));
        note(
            mm.kmalloc(30_000, Gfp::GFP_KERNEL)
                .and_then(|p| mm.kfree(p)),
        );
        note(mm.kmem_cache_shrink(s.cache).map(|_| ()));
        let mut text = String::new();
        let _ = kmemlab_mm::procfs::slabinfo(mm, &mut text);
        note(mm.kmem_cache_destroy(s.cache));
    });
}

/// Does the console hold a kernel report?
fn reported(console: &[String]) -> bool {
    const MARKS: [&str; 8] = [
        "BUG",
        "WARNING",
        "Oops",
        "general protection fault",
        "kernel BUG",
        "list_del corruption",
        "Kernel panic",
        "Bad page state",
    ];
    console.iter().any(|l| MARKS.iter().any(|m| l.contains(m)))
}

fn run_case(debug: SlabFlags, target: Target, fill: Fill) {
    let s = setup(debug);
    corrupt(&s, target, fill);
    let mut errors = Vec::new();
    for cpu in [0, 1] {
        workload(&s, cpu, &mut errors);
    }
    if !s.m.mm().halted() {
        teardown(&s, &mut errors);
    }
    let oopses = s.m.mm().take_oopses();
    let check = s.m.mm().check();
    let console = s.m.take_console();
    let clean = errors.is_empty() && check.is_ok() && oopses == 0;
    assert!(
        reported(&console) || clean,
        "{debug:?} {target:?} {fill:?}: neither reported nor clean: errors {errors:?}, check {check:?}, console {console:?}"
    );
}

fn run_all(debug: SlabFlags) {
    for target in TARGETS {
        for fill in FILLS {
            run_case(debug, target, fill);
        }
    }
}

#[test]
fn corrupted_slab_metadata_is_reported_never_a_host_fault() {
    run_all(SlabFlags::empty());
}

#[test]
fn corrupted_slab_metadata_with_slab_debug_is_reported_never_a_host_fault() {
    run_all(SlabFlags::DEBUG);
}

// ----- the reproductions ---------------------------------------------------------------

fn plain_machine() -> Machine {
    setup(SlabFlags::empty()).m
}

/// `a = kmalloc 64` then `write <a> 5000 bytes`: the overflow runs over the rest of the
/// slab and into the next page. The corrupted free pointers are followed no further than
/// the fault the kernel would take; nothing panics, and the machine goes on.
#[test]
fn overflowing_a_kmalloc_object_by_kilobytes_is_an_oops_not_a_panic() {
    for byte in [0x41u8, 0xff, 0x00] {
        let m = plain_machine();
        let a = m.run(|mm| mm.kmalloc(64, Gfp::GFP_KERNEL)).unwrap();
        m.run(|mm| mm.copy_to_kernel(a, &vec![byte; 5000]).unwrap());
        let mut results = Vec::new();
        m.run(|mm| {
            for _ in 0..200 {
                results.push(mm.kmalloc(32, Gfp::GFP_KERNEL).map(|_| ()));
                results.push(mm.kmalloc(64, Gfp::GFP_KERNEL).map(|_| ()));
            }
            results.push(mm.kfree(a));
        });
        let console = m.take_console();
        let _ = m.mm().take_oopses();
        if byte != 0x00 {
            assert!(reported(&console), "{byte:#x}: {console:?}");
        }
        // The allocator still hands out distinct memory.
        let fresh: Vec<VirtAddr> = m.run(|mm| {
            (0..50)
                .filter_map(|_| mm.kmalloc(128, Gfp::GFP_KERNEL).ok())
                .collect()
        });
        let mut sorted = fresh.clone();
        sorted.sort();
        sorted.dedup();
        assert_eq!(sorted.len(), fresh.len());
    }
}

/// Writing into a slab page's `struct page` (here: `slab_cache` pointing into RAM that
/// holds no cache, then past the end of RAM): `kfree` takes the fault the kernel would —
/// it used to turn the pointer into a host address and crash the host.
#[test]
fn kfree_through_a_corrupted_slab_cache_pointer_is_a_page_fault_oops() {
    for bogus in [
        0xffff_8880_0010_0000u64,
        0xffff_8890_0000_0000,
        0xdead_beef_0000_0000,
    ] {
        let m = plain_machine();
        let a = m.run(|mm| mm.kmalloc(64, Gfp::GFP_KERNEL)).unwrap();
        let page = struct_page_of(&m.mm(), a);
        m.run(|mm| write(mm, page + 32, &bogus.to_le_bytes()));
        let r = m.run(|mm| mm.kfree(a));
        assert!(
            matches!(r, Err(SlabError::Corrupted { addr, .. }) if addr == bogus),
            "{r:?}"
        );
        assert_eq!(m.mm().take_oopses(), 1);
        let console = m.take_console();
        let want = if bogus == 0xdead_beef_0000_0000 {
            "general protection fault, probably for non-canonical address 0xdeadbeef00000000"
        } else {
            "BUG: unable to handle page fault for address"
        };
        assert!(console.iter().any(|l| l.contains(want)), "{console:?}");
    }
}

/// Double frees of objects of the internal `vmap_area` cache through `kmem_cache_free`,
/// with no memory written at all: the naive one is the kernel's `BUG_ON`; the one that
/// slips past it (another object freed in between) is accepted as the kernel accepts it
/// without `slab_debug`, and the object is then handed out twice. vmalloc follows the
/// twice-used structures: in a release build (the shell's) that used to panic in
/// `kernel_struct`; in a debug build vmalloc's own `debug_assert!` on its tree still fires
/// (vmalloc's to fix), so that part runs only in release builds.
#[test]
fn double_freeing_vmap_area_objects_does_not_panic() {
    let m = plain_machine();
    let vmap_area = m.run(|mm| mm.find_cache("vmap_area")).unwrap();
    let (a, b) = m.run(|mm| {
        (
            mm.kmem_cache_alloc(vmap_area, Gfp::GFP_KERNEL).unwrap(),
            mm.kmem_cache_alloc(vmap_area, Gfp::GFP_KERNEL).unwrap(),
        )
    });
    m.run(|mm| {
        mm.kmem_cache_free(vmap_area, a).unwrap();
        assert!(matches!(
            mm.kmem_cache_free(vmap_area, a),
            Err(SlabError::NotSlabObject(..))
        ));
        mm.kmem_cache_free(vmap_area, b).unwrap();
        // a, b, a: past the naive check, as in the kernel.
        mm.kmem_cache_free(vmap_area, a).unwrap();
    });
    assert_eq!(m.mm().take_oopses(), 1, "the naive double free is an oops");
    assert!(m
        .take_console()
        .iter()
        .any(|l| l.starts_with("kernel BUG at mm/slub.c:")));
    // The freelist is now a, b, a, b, ...: the object is handed out twice.
    let got: Vec<VirtAddr> = m.run(|mm| {
        (0..3)
            .map(|_| mm.kmem_cache_alloc(vmap_area, Gfp::GFP_KERNEL).unwrap())
            .collect()
    });
    assert_eq!(got[0], got[2], "{got:?}");
    if !cfg!(debug_assertions) {
        m.run(|mm| {
            let live: Vec<VirtAddr> = (0..60).filter_map(|_| mm.vmalloc(4096).ok()).collect();
            for v in live {
                let _ = mm.vfree(v);
            }
        });
        let _ = m.mm().take_oopses();
    }
}

/// A corrupted `cpu_slab` of a cache (its per-CPU offset past the per-CPU areas): every
/// use is the fault the kernel would take, and destroying the cache does not hand the
/// bad offset to the per-CPU allocator.
#[test]
fn a_corrupted_cpu_slab_pointer_is_an_oops_everywhere() {
    let s = setup(SlabFlags::empty());
    let mm = s.m.mm();
    write(
        &mm,
        s.cache.0 + KMEM_CACHE_CPU_SLAB,
        &0x0000_0028_7fff_fff8u64.to_le_bytes(),
    );
    let r = s.m.run(|mm| mm.kmem_cache_alloc(s.cache, Gfp::GFP_KERNEL));
    assert!(matches!(r, Err(SlabError::Corrupted { .. })), "{r:?}");
    let r = s.m.run(|mm| mm.kmem_cache_free(s.cache, s.cache_live[0]));
    assert!(matches!(r, Err(SlabError::Corrupted { .. })), "{r:?}");
    let r = s.m.run(|mm| mm.kmem_cache_destroy(s.cache));
    assert!(r.is_err(), "{r:?}");
    assert!(s.m.mm().take_oopses() >= 2);
    assert!(reported(&s.m.take_console()));
}

/// A corrupted constructor index in a cache with a constructor: the host's table refuses
/// it (the kernel would have jumped to the address), and no host code runs.
#[test]
fn a_corrupted_constructor_index_never_calls_host_code() {
    fn ctor(bytes: &mut [u8]) {
        bytes.fill(0x5c);
    }
    let m = plain_machine();
    let c = m
        .run(|mm| mm.kmem_cache_create("with_ctor", 200, 0, SlabFlags::empty(), Some(ctor)))
        .unwrap();
    let p = m.run(|mm| mm.kmem_cache_alloc(c, Gfp::GFP_KERNEL)).unwrap();
    let mut b = [0u8; 200];
    m.run(|mm| mm.copy_from_kernel(p, &mut b).unwrap());
    assert!(b.iter().all(|&x| x == 0x5c), "the constructor ran");
    let before: Vec<u8> = {
        let mut v = vec![0u8; std::mem::size_of::<KmemCache>()];
        m.run(|mm| mm.copy_from_kernel(VirtAddr(c.0), &mut v).unwrap());
        v
    };
    // `ctor` is the `u32` after the six 64-bit words (magic, self_va, cpu_slab, node,
    // random, random_seq): the constructor's slot plus one, never a code address.
    let slot = u32::from_le_bytes(before[48..52].try_into().unwrap());
    assert!((1..=256).contains(&slot), "ctor slot {slot}");
    // Slot numbers of no cache: each is refused when a new slab needs the constructor.
    for bad in [0x7fff_ffffu32, slot + 1, 257] {
        let mut bytes = before.clone();
        bytes[48..52].copy_from_slice(&bad.to_le_bytes());
        m.run(|mm| write(mm, c.0, &bytes));
        let r = m.run(|mm| {
            let mut last = Ok(VirtAddr(0));
            for _ in 0..100 {
                last = mm.kmem_cache_alloc(c, Gfp::GFP_KERNEL);
                if last.is_err() {
                    break;
                }
            }
            last
        });
        assert!(
            matches!(r, Err(SlabError::Corrupted { .. })),
            "index {bad}: {r:?}"
        );
    }
    let _ = m.mm().take_oopses();
}

/// `free_pages()`-sized bookkeeping of a large kmalloc: a head page whose order was
/// overwritten is refused by `kfree` with `free_large_kmalloc()`'s warning, and the Slab
/// pages of `/proc/meminfo` are left as they were.
#[test]
fn kfree_of_a_large_kmalloc_with_a_corrupted_order_is_refused() {
    let m = plain_machine();
    let a = m.run(|mm| mm.kmalloc(20_000, Gfp::GFP_KERNEL)).unwrap();
    let slab_before = m.mm().slab_pages().unreclaimable();
    let page = struct_page_of(&m.mm(), a);
    for order in [0u32, 1, 5, 40] {
        m.run(|mm| write(mm, page + 4, &order.to_le_bytes()));
        let r = m.run(|mm| mm.kfree(a));
        assert!(
            matches!(r, Err(SlabError::Corrupted { .. })),
            "order {order}: {r:?}"
        );
        assert_eq!(m.mm().slab_pages().unreclaimable(), slab_before);
        let console = m.take_console();
        assert!(
            console.iter().any(|l| l.contains("object pointer"))
                && console
                    .iter()
                    .any(|l| l.starts_with("WARNING") && l.contains("free_large_kmalloc")),
            "{console:?}"
        );
    }
    // With the order restored, the block is freed and its pages leave the Slab count.
    m.run(|mm| write(mm, page + 4, &3u32.to_le_bytes()));
    m.run(|mm| mm.kfree(a)).unwrap();
    assert_eq!(m.mm().slab_pages().unreclaimable(), slab_before - 8);
    m.mm().check().unwrap();
}

/// Node partial list links that disagree: `list_del corruption` with the kernel's
/// wording when a slab is taken off the list.
#[test]
fn disagreeing_partial_list_links_are_list_del_corruption() {
    let s = setup(SlabFlags::empty());
    let mm = s.m.mm();
    let node = node_of(&mm, s.cache.0);
    let first = read_u32(&mm, node + NODE_PARTIAL);
    let page = mm
        .struct_page_address(mm.pfn_to_page(kmemlab_mm::Pfn(first as u64)).unwrap())
        .0;
    // The first slab's `prev` names another page instead of the list head.
    write(&mm, page + PAGE_LINKS + 4, &(first + 1).to_le_bytes());
    let mut errors = Vec::new();
    workload(&s, 1, &mut errors);
    let console = take_console_expecting(&s.m, "list_del corruption. prev->next should be ");
    assert!(console
        .iter()
        .any(|l| l.starts_with("WARNING") && l.contains("lib/list_debug.c")));
}

/// A set bit above the packed (freelist, counters) fields of a slab's `struct page` word
/// (bits 49..63: no field of the packing) leaves every counter valid, so the slab's checks
/// pass; the compare-exchange must still succeed. It used to compare against the word
/// re-packed without those bits, fail, re-read the same word and loop forever in
/// `__slab_free` (and in `get_freelist`, `acquire_slab`, the unfreezing).
#[test]
fn stray_high_bits_in_a_slab_counters_word_do_not_hang_the_slow_paths() {
    let m = plain_machine();
    // kmalloc-64 slabs hold 64 objects: the first of 200 is on a full slab that is no
    // longer the CPU slab, so its kfree takes __slab_free.
    let objs: Vec<VirtAddr> = m.run(|mm| {
        (0..200)
            .map(|_| mm.kmalloc(64, Gfp::GFP_KERNEL).unwrap())
            .collect()
    });
    // The word (freelist, inuse, objects, frozen) is at offset 24 of `struct page`.
    let word = struct_page_of(&m.mm(), objs[0]) + 24;
    let before = m.run(|mm| read_u64(mm, word));
    m.run(|mm| write(mm, word, &(before | 1 << 63).to_le_bytes()));
    m.run(|mm| {
        for &p in &objs {
            mm.kfree(p).unwrap();
        }
    });
    // The slab and the cache go on working: allocate and free them all again.
    m.run(|mm| {
        let again: Vec<VirtAddr> = (0..200)
            .map(|_| mm.kmalloc(64, Gfp::GFP_KERNEL).unwrap())
            .collect();
        for p in again {
            mm.kfree(p).unwrap();
        }
    });
    m.mm().check().expect("check() passes");
}

/// A loop in a CPU's chain of partial slabs (a slab's link pointed back at the slab
/// before it): draining the chain meets a slab it already unfroze, and stops there with
/// the kernel's `VM_BUG_ON(!old.frozen)` in `__unfreeze_partials()`, instead of putting
/// the slabs on the node's list again and again.
#[test]
fn a_loop_in_a_cpu_partial_chain_stops_at_the_unfrozen_slab() {
    let m = plain_machine();
    let cache = m
        .run(|mm| mm.kmem_cache_create("loop", 200, 0, SlabFlags::empty(), None))
        .unwrap();
    // Three slabs' worth of objects: the first two slabs are full, the third the CPU's
    // (200 bytes: a cache of its own, merged with no kmalloc cache).
    let (objects, per_slab) = m.run(|mm| {
        let first = mm.kmem_cache_alloc(cache, Gfp::GFP_KERNEL).unwrap();
        let page = struct_page_of(mm, first);
        let mut objects = vec![first];
        while struct_page_of(mm, *objects.last().unwrap()) == page {
            objects.push(mm.kmem_cache_alloc(cache, Gfp::GFP_KERNEL).unwrap());
        }
        let per_slab = objects.len() - 1;
        for _ in 0..per_slab {
            objects.push(mm.kmem_cache_alloc(cache, Gfp::GFP_KERNEL).unwrap());
        }
        (objects, per_slab)
    });
    let (s0, s1) = (objects[0], objects[per_slab]);
    m.take_console();
    m.run(|mm| {
        // Full -> partial: each joins this CPU's chain, S1 -> S0; then S0 links back to S1.
        mm.kmem_cache_free(cache, s0).unwrap();
        mm.kmem_cache_free(cache, s1).unwrap();
        let pfn1 = mm.page_to_pfn(mm.virt_to_page(s1).unwrap()).raw();
        write(
            mm,
            struct_page_of(mm, s0) + PAGE_LINKS,
            &(pfn1 as u32).to_le_bytes(),
        );
        let _ = mm.kmem_cache_shrink(cache);
    });
    let console = m.take_console().join("\n");
    assert!(
        console.contains("kernel BUG at mm/slub.c:2626!"),
        "{console}"
    );
    assert!(m.mm().take_oopses() > 0);
    // The node's list holds each slab once: its count agrees with it.
    let check = m.mm().check();
    assert!(check.is_ok(), "{check:?}");
}

/// A slab's object count read from its `struct page` below what its order holds is
/// reported in `on_freelist()`'s words, one above in `check_slab()`'s (Linux 6.6), and
/// the slab is taken out of use either way.
#[test]
fn a_wrong_object_count_is_reported_in_the_kernel_words_for_its_direction() {
    for delta in [-1i64, 1] {
        let m = plain_machine();
        let cache = m
            .run(|mm| mm.kmem_cache_create("count", 200, 0, SlabFlags::empty(), None))
            .unwrap();
        // A full slab (the first) and the CPU's (the second). 200 bytes: no kmalloc cache
        // is close enough to merge with (`find_mergeable()`), so the first slab is new.
        let objects = m.run(|mm| {
            let first = mm.kmem_cache_alloc(cache, Gfp::GFP_KERNEL).unwrap();
            let page = struct_page_of(mm, first);
            let mut objects = vec![first];
            while struct_page_of(mm, *objects.last().unwrap()) == page {
                objects.push(mm.kmem_cache_alloc(cache, Gfp::GFP_KERNEL).unwrap());
            }
            objects
        });
        let per_slab = (objects.len() - 1) as i64;
        m.take_console();
        let result = m.run(|mm| {
            let word_at = struct_page_of(mm, objects[0]) + 24;
            let word = read_u64(mm, word_at);
            let count = (word >> 32) & 0xffff;
            assert_eq!(count as i64, per_slab);
            let wrong = (per_slab + delta) as u64;
            write(
                mm,
                word_at,
                &((word & !(0xffff << 32)) | wrong << 32).to_le_bytes(),
            );
            mm.kmem_cache_free(cache, objects[0])
        });
        assert!(result.is_err());
        let console = m.take_console().join("\n");
        let expected = if delta < 0 {
            format!(
                "Wrong number of objects. Found {} but should be {per_slab}",
                per_slab - 1
            )
        } else {
            format!("objects {} > max {per_slab}", per_slab + 1)
        };
        assert!(console.contains(&expected), "{console}");
        assert!(console.contains("Marking all objects used"), "{console}");
    }
}
