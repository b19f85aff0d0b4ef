//! Corrupted vmalloc and DMA metadata: the `vmap_area` nodes (rb links, ranges, list
//! links), `vm_struct`s (page-array pointer, page count, size), page arrays, the lazily
//! freed list, swiotlb slots, dma-debug entries and DMA pools are overwritten in RAM
//! with zeros, all-ones and seeded random bytes (directly, or by a bus-mastering device),
//! and the machine is then driven through vmalloc, vfree, vmap, the purge,
//! `/proc/vmallocinfo`, DMA map/unmap and the checkers. Every case must end in a kernel
//! report (an oops, a WARN, a BUG, a soft lockup, kmemlab's corruption message), in the
//! checker's finding (corruption the kernel itself would not notice, such as a wrong
//! `subtree_max_size`), or in a clean result — never a Rust panic, a host fault or a
//! hang, and never an operation that fails with nothing said about why.

use crate::fixtures::*;
use kmemlab_mm::arch::pgtable::PgProt;
use kmemlab_mm::dma::{DmaDataDirection as Dir, SwiotlbConfig, DMA_MAPPING_ERROR};
use kmemlab_mm::vmalloc::{VmFlags, VmallocError};
use kmemlab_mm::{Gfp, Mm, Pfn, Profile, VirtAddr, PAGE_SIZE};
use kmemlab_sim::{BusError, Machine, SimPlatform};

/// Offsets in `struct vmap_area` (`crates/mm/src/vmalloc/area.rs`).
mod va {
    pub const START: u64 = 0;
    pub const END: u64 = 8;
    pub const PARENT_COLOR: u64 = 16;
    pub const RIGHT: u64 = 24;
    pub const LEFT: u64 = 32;
    pub const LIST_NEXT: u64 = 40;
    pub const LIST_PREV: u64 = 48;
    pub const VM: u64 = 56;
    pub const FLAGS: u64 = 64;
    pub const ALL: [(&str, u64); 9] = [
        ("va_start", START),
        ("va_end", END),
        ("rb_parent_color", PARENT_COLOR),
        ("rb_right", RIGHT),
        ("rb_left", LEFT),
        ("list.next", LIST_NEXT),
        ("list.prev", LIST_PREV),
        ("vm", VM),
        ("flags", FLAGS),
    ];
}

/// Offsets in `struct vm_struct` (`crates/mm/src/vmalloc/mod.rs`).
mod vm {
    pub const ADDR: u64 = 8;
    pub const SIZE: u64 = 16;
    pub const FLAGS: u64 = 24;
    pub const PAGES: u64 = 32;
    /// `page_order` and `nr_pages`, two u32s.
    pub const ORDER_AND_NR_PAGES: u64 = 40;
    pub const REQUESTED_SIZE: u64 = 64;
    pub const ALL: [(&str, u64); 6] = [
        ("addr", ADDR),
        ("size", SIZE),
        ("flags", FLAGS),
        ("pages", PAGES),
        ("page_order/nr_pages", ORDER_AND_NR_PAGES),
        ("requested_size", REQUESTED_SIZE),
    ];
}

/// What is written over a structure.
const FILLS: [Fill; 5] = [
    Fill::Zeros,
    Fill::Ones,
    Fill::Random(0x9e37_79b9_7f4a_7c15),
    Fill::Random(0x2545_f491_4f6c_dd1d),
    Fill::Random(42),
];

/// Overwrite RAM at direct-map address `at` (a kernel structure), as a stray CPU store.
fn poke(m: &Machine, at: u64, bytes: &[u8]) {
    let phys = m
        .mm()
        .layout()
        .virt_to_phys(at)
        .expect("a direct-map address");
    m.platform().ram().write(phys, bytes).expect("RAM");
}

/// Overwrite RAM at physical address `phys` with a bus-mastering device.
fn dma_poke(m: &Machine, phys: u64, bytes: &[u8]) {
    let evil = m
        .dma_device("evil")
        .unwrap_or_else(|| m.add_dma_device("evil", 64).unwrap());
    evil.load_buffer(bytes);
    evil.write_to_memory(m, phys, bytes.len()).unwrap();
}

/// The areas a scenario works on.
struct World {
    /// Live vmalloc areas.
    areas: Vec<VirtAddr>,
    /// Areas freed and waiting for the purge.
    lazy: Vec<VirtAddr>,
    /// A vmap of two pages, and the pages.
    vmap: VirtAddr,
    vmap_pages: (Pfn, u32),
}

fn build_world(m: &Machine) -> World {
    m.run(|mm| {
        let mut areas = vec![];
        for i in 0..12 {
            areas.push(mm.vmalloc((1 + i % 4) * PAGE_SIZE).unwrap());
        }
        // Every third goes to the lazy list (too few pages to trigger the purge).
        let lazy: Vec<VirtAddr> = areas.iter().copied().step_by(3).collect();
        for a in &lazy {
            mm.vfree(*a).unwrap();
        }
        areas.retain(|a| !lazy.contains(a));
        let page = mm.alloc_pages(Gfp::GFP_KERNEL, 1).unwrap();
        let first = mm.page_to_pfn(page);
        let vmap = mm
            .vmap(
                &[first, Pfn(first.0 + 1)],
                VmFlags::VM_MAP,
                PgProt::kernel(mm.profile()),
            )
            .unwrap();
        assert!(mm.check().is_ok());
        World {
            areas,
            lazy,
            vmap,
            vmap_pages: (first, 1),
        }
    })
}

/// What running the machine after the corruption showed.
#[derive(Debug, Default)]
struct Outcome {
    /// Operations that failed.
    failed: Vec<String>,
    /// What the checkers found.
    check: Option<String>,
}

/// Drive every vmalloc path over the world: lookups, `/proc/vmallocinfo`, a fresh
/// allocation, frees, the vmap, the purge and the deferred work, then the checks.
fn exercise(m: &Machine, w: &World) -> Outcome {
    let mut out = Outcome::default();
    let mut note = |what: &str, r: Result<(), String>| {
        if let Err(e) = r {
            out.failed.push(format!("{what}: {e}"));
        }
    };
    m.run(|mm| {
        for a in &w.areas {
            if let Some(area) = mm.find_vm_area(*a) {
                assert!(area.usable_size() <= 32 * MIB, "a checked area is bounded");
            }
            let mut n = 0u64;
            let r = mm.vm_area_pfns(*a, |_| n += 1).map(|_| ());
            assert!(n <= 32 * MIB / PAGE_SIZE as u64);
            note("vm_area_pfns", r.map_err(|e| e.to_string()));
        }
        let mut info = String::new();
        let r = kmemlab_mm::procfs::vmallocinfo(mm, &mut info);
        note("vmallocinfo", r.map_err(|e| e.to_string()));
        assert!(info.len() < 1 << 20, "vmallocinfo is bounded");
        match mm.vmalloc(3 * PAGE_SIZE) {
            Ok(p) => {
                let r = mm
                    .copy_to_kernel_virt(p, b"fresh")
                    .map_err(|e| e.to_string());
                note("write fresh", r);
                note("vfree fresh", mm.vfree(p).map_err(|e| e.to_string()));
            }
            Err(e) => note("vmalloc", Err(e.to_string())),
        }
    });
    m.run(|mm| {
        for a in &w.areas {
            note("vfree", mm.vfree(*a).map_err(|e| e.to_string()));
        }
        note("vunmap", mm.vunmap(w.vmap).map_err(|e| e.to_string()));
        let page = mm.pfn_to_page(w.vmap_pages.0).unwrap();
        let _ = mm.__free_pages(page, w.vmap_pages.1);
        mm.purge_vmap_area_lazy();
        mm.run_work();
        let mut info = String::new();
        let _ = kmemlab_mm::procfs::vmallocinfo(mm, &mut info);
        // The machine still allocates (unless the corruption is in the way: reported).
        match mm.vmalloc(PAGE_SIZE) {
            Ok(p) => note("vfree again", mm.vfree(p).map_err(|e| e.to_string())),
            Err(e) => note("vmalloc again", Err(e.to_string())),
        }
        out.check = mm.check().err().map(|e| e.to_string());
        if out.check.is_none() {
            out.check = mm.check().err().map(|e| e.to_string());
        }
    });
    out
}

/// The kernel's reports this suite accepts as "reported": what the kernel (or kmemlab's
/// own checks, in the kernel's style) prints about corruption.
const REPORTS: [&str; 12] = [
    "BUG: unable to handle page fault",
    "general protection fault",
    "kernel BUG at",
    "watchdog: BUG: soft lockup",
    "list_del corruption",
    "list_add corruption",
    "list_add double add",
    "vmalloc: corrupted",
    "vmalloc bug:",
    "Trying to vfree() nonexistent vm area",
    "Trying to vunmap() nonexistent vm area",
    "BUG ",
];

fn reported(console: &[String]) -> bool {
    console
        .iter()
        .any(|l| REPORTS.iter().any(|r| l.contains(r)))
}

/// One case: the machine, the world, the corruption, the exercise; then the verdict.
fn case(profile: Profile, what: &str, corrupt: impl FnOnce(&Machine, &World)) -> Vec<String> {
    let m = MachineBuilder::new()
        .profile(profile)
        .ram(32 * MIB)
        .cpus(2)
        .seed(11)
        .swiotlb(SwiotlbConfig::with_slabs(128).below(16 * MIB))
        .boot();
    let w = build_world(&m);
    m.take_console();
    corrupt(&m, &w);
    let out = exercise(&m, &w);
    let console = m.take_console();
    assert!(
        reported(&console) || out.check.is_some() || out.failed.is_empty(),
        "{profile} {what}: operations failed with nothing reported: {out:?}\n{console:#?}"
    );
    console
}

/// Every field of a busy node, of a lazily freed node and of a free-tree node, with every
/// fill.
#[test]
fn corrupted_vmap_area_nodes_are_reported_or_harmless() {
    for fill in FILLS {
        for (name, off) in va::ALL {
            for which in ["busy", "lazy", "free"] {
                let what = format!("{which} vmap_area.{name} = {fill:?}");
                case(Profile::X86_64, &what, |m, w| {
                    let addr = match which {
                        "busy" => w.areas[2],
                        "lazy" => w.lazy[1],
                        _ => VirtAddr(m.mm().layout().vmalloc_end - 64 * PAGE_SIZE as u64),
                    };
                    let node = m.mm().vmap_area_at(addr).expect("a node holds it");
                    poke(m, node.0 + off, &fill.bytes(8));
                });
            }
        }
    }
}

#[test]
fn corrupted_vm_structs_are_reported_or_harmless() {
    for fill in FILLS {
        for (name, off) in vm::ALL {
            let what = format!("vm_struct.{name} = {fill:?}");
            case(Profile::X86_64, &what, |m, w| {
                let area = m.mm().find_vm_area(w.areas[1]).unwrap();
                poke(m, area.vm.0 + off, &fill.bytes(8));
            });
        }
    }
}

#[test]
fn corrupted_page_arrays_are_reported_or_harmless() {
    for profile in [Profile::X86_64, Profile::I386] {
        for fill in FILLS {
            for index in [0u64, 1] {
                let what = format!("pages[{index}] = {fill:?}");
                case(profile, &what, |m, w| {
                    // areas[1] has two pages or more.
                    let area = m.mm().find_vm_area(w.areas[1]).unwrap();
                    assert!(area.nr_pages >= 2);
                    let word = if profile == Profile::X86_64 { 8 } else { 4 };
                    poke(m, area.pages.0 + index * word, &fill.bytes(word as usize));
                });
            }
        }
    }
}

/// Specific reports for specific corruption: each is what the kernel would print.
#[test]
fn each_kind_of_corruption_gets_the_kernels_report() {
    let has = |c: &[String], s: &str| c.iter().any(|l| l.contains(s));
    // A NULL page in the array: vfree's BUG_ON(!page).
    let c = case(Profile::X86_64, "NULL page", |m, w| {
        let area = m.mm().find_vm_area(w.areas[1]).unwrap();
        poke(m, area.pages.0, &[0; 8]);
    });
    assert!(has(&c, "kernel BUG at mm/vmalloc.c:2836!"), "{c:#?}");
    // A page pointer into nowhere: the fault on dereferencing it.
    let c = case(Profile::X86_64, "wild page", |m, w| {
        let area = m.mm().find_vm_area(w.areas[1]).unwrap();
        poke(m, area.pages.0, &0xdead_0000_0000_0000u64.to_le_bytes());
    });
    assert!(
        has(
            &c,
            "general protection fault, probably for non-canonical address 0xdead000000000000"
        ),
        "{c:#?}"
    );
    // A vm_struct whose size disagrees with its area.
    let c = case(Profile::X86_64, "vm size", |m, w| {
        let area = m.mm().find_vm_area(w.areas[1]).unwrap();
        poke(m, area.vm.0 + vm::SIZE, &u64::MAX.to_le_bytes());
    });
    assert!(has(&c, "vmalloc: corrupted vm_struct"), "{c:#?}");
    // A busy node whose end reaches the top of the address space.
    let c = case(Profile::X86_64, "va_end", |m, w| {
        let node = m.mm().vmap_area_at(w.areas[0]).unwrap();
        poke(m, node.0 + va::END, &u64::MAX.to_le_bytes());
    });
    assert!(has(&c, "vmalloc: corrupted vmap_area"), "{c:#?}");
    // The lowest busy node's left link pointing back at the root: a lookup below it
    // walks round for ever.
    let c = case(Profile::X86_64, "rb cycle", |m, w| {
        let mm = m.mm();
        let first = mm.vmap_area_at(w.areas[0]).unwrap();
        let root = w
            .areas
            .iter()
            .filter_map(|a| mm.vmap_area_at(*a))
            .find(|n| read_u64(m, n.0 + va::PARENT_COLOR) & !1 == 0)
            .expect("one busy node is the root");
        assert_eq!(
            read_u64(m, first.0 + va::LEFT),
            0,
            "the lowest area has no left child"
        );
        poke(m, first.0 + va::LEFT, &root.0.to_le_bytes());
        let below = VirtAddr(w.areas[0].0 - PAGE_SIZE as u64);
        m.run(|mm| assert!(mm.find_vm_area(below).is_none()));
        assert!(mm.halted(), "the soft lockup panics the machine");
    });
    assert!(has(&c, "watchdog: BUG: soft lockup"), "{c:#?}");
    // The lazily freed list pointing back at itself.
    let c = case(Profile::X86_64, "purge list cycle", |m, w| {
        let node = m.mm().vmap_area_at(w.lazy[1]).unwrap();
        poke(m, node.0 + va::LIST_NEXT, &node.0.to_le_bytes());
    });
    assert!(has(&c, "watchdog: BUG: soft lockup"), "{c:#?}");
    // A list neighbour that no longer points back: CONFIG_DEBUG_LIST's report.
    let c = case(Profile::X86_64, "list prev", |m, w| {
        let node = m.mm().vmap_area_at(w.areas[3]).unwrap();
        let prev = read_u64(m, node.0 + va::LIST_PREV);
        assert_ne!(prev, 0);
        poke(m, prev + va::LIST_NEXT, &(node.0 + 8).to_le_bytes());
    });
    assert!(has(&c, "list_del corruption."), "{c:#?}");
}

fn read_u64(m: &Machine, va: u64) -> u64 {
    let phys = m.mm().layout().virt_to_phys(va).unwrap();
    let mut b = [0u8; 8];
    m.platform().ram().read(phys, &mut b).unwrap();
    u64::from_le_bytes(b)
}

/// The hang `info` used to meet: a kmalloc object next to a `vm_struct` is overrun, so
/// the `vm_struct`'s size reads as a huge number. Every lookup now sees a checked area.
#[test]
fn an_overrun_into_a_vm_struct_is_reported_not_looped_on() {
    for fill in [Fill::Ones, Fill::Random(7), Fill::Random(8)] {
        let c = case(Profile::X86_64, "overrun", |m, w| {
            let area = m.mm().find_vm_area(w.areas[1]).unwrap();
            // The overrun starts in the object before and runs 40 bytes into this one.
            let bytes = fill.bytes(96 + 40);
            poke(m, area.vm.0 - 96, &bytes);
            m.run(|mm| {
                assert!(mm.find_vm_area(w.areas[1]).is_none());
                assert!(mm.vm_area_pfns(w.areas[1], |_| {}).is_err());
            });
        });
        assert!(
            c.iter().any(|l| l.contains("vmalloc: corrupted vm_struct")),
            "{c:#?}"
        );
    }
}

/// `kmem_cache_free` of a live node of the `vmap_area` cache (and again, a double free):
/// whatever the slab allocator says, vmalloc survives what it reads afterwards.
#[test]
fn freeing_vmap_area_objects_behind_vmallocs_back_is_survived() {
    for twice in [false, true] {
        case(Profile::X86_64, "kmem_cache_free(vmap_area)", |m, w| {
            m.run(|mm| {
                let cache = mm.find_cache("vmap_area").expect("the vmap_area cache");
                for a in [w.areas[0], w.areas[4], w.lazy[0]] {
                    let node = mm.vmap_area_at(a).unwrap();
                    let _ = mm.kmem_cache_free(cache, node);
                    if twice {
                        let _ = mm.kmem_cache_free(cache, node);
                    }
                }
                // Reused at once: the node now serves two areas.
                for _ in 0..4 {
                    if let Ok(p) = mm.vmalloc(PAGE_SIZE) {
                        let _ = mm.vfree(p);
                    }
                }
            });
        });
    }
}

#[test]
fn vmap_refuses_impossible_counts_before_any_work() {
    let m = MachineBuilder::new()
        .ram(32 * MIB)
        .cpus(2)
        .seed(11)
        .swiotlb(SwiotlbConfig::with_slabs(128).below(16 * MIB))
        .boot();
    m.run(|mm| {
        let prot = PgProt::kernel(mm.profile());
        let site = kmemlab_mm::slab::CallSite::BOOT;
        let free_before = free_pages(mm);
        for count in [0, mm.totalram_pages() + 1, u64::MAX / 2, u64::MAX] {
            let r = mm.vmap_contiguous_caller(Pfn(1), count, VmFlags::VM_MAP, prot, site);
            assert!(matches!(r, Err(VmallocError::BadArgs(_))), "{count}: {r:?}");
        }
        // Past the end of mem_map.
        let span = mm.platform().ram().span() >> 12;
        let last = (0..span).rev().find(|&p| mm.pfn_valid(Pfn(p))).unwrap();
        let r = mm.vmap_contiguous_caller(Pfn(last), 2, VmFlags::VM_MAP, prot, site);
        assert!(matches!(r, Err(VmallocError::BadArgs(_))), "{r:?}");
        assert_eq!(free_pages(mm), free_before, "nothing was allocated");
        // A sane count works, and maps what it was given.
        let page = mm.alloc_pages(Gfp::GFP_KERNEL, 2).unwrap();
        let first = mm.page_to_pfn(page);
        let a = mm
            .vmap_contiguous_caller(first, 4, VmFlags::VM_MAP, prot, site)
            .unwrap();
        let mut pfns = vec![];
        mm.vm_area_pfns(a, |p| pfns.push(p.0)).unwrap();
        assert_eq!(pfns, (first.0..first.0 + 4).collect::<Vec<_>>());
        mm.vunmap(a).unwrap();
        mm.__free_pages(page, 2).unwrap();
    });
}

fn free_pages(mm: &Mm<SimPlatform>) -> u64 {
    mm.zones().iter().map(|z| z.free_pages()).sum()
}

/// The swiotlb slot array and dma-debug's block overwritten by a device, then streaming
/// DMA and the checks.
#[test]
fn corrupted_swiotlb_slots_and_dma_debug_entries_are_reported_or_harmless() {
    for fill in FILLS {
        for target in ["swiotlb slots", "dma-debug"] {
            let m = MachineBuilder::new()
                .ram(32 * MIB)
                .cpus(2)
                .seed(11)
                .swiotlb(SwiotlbConfig::with_slabs(128).below(16 * MIB))
                .boot();
            let isa = m.add_dma_device("isa", 24).unwrap();
            let dev = isa.device();
            let buf = m.run(|mm| mm.kmalloc(4096, Gfp::GFP_KERNEL)).unwrap();
            let phys = m.mm().layout().virt_to_phys(buf.0).unwrap();
            assert!(phys >= 16 * MIB, "beyond the ISA device: it bounces");
            let a = m.run(|mm| mm.dma_map_single(dev, buf, 2048, Dir::FromDevice));
            m.run(|mm| mm.dma_mapping_error(dev, a)).unwrap();
            let (base, len) = if target == "swiotlb slots" {
                m.mm()
                    .memblock()
                    .reserved()
                    .regions()
                    .iter()
                    .find(|r| r.name == "swiotlb slots")
                    .map(|r| (r.base, r.size))
                    .unwrap()
            } else {
                let (b, l) = m.mm().dma_debug_block().expect("dma-debug is on");
                (b.0, l)
            };
            m.take_console();
            dma_poke(&m, base, &fill.bytes(len as usize));
            m.run(|mm| {
                mm.dma_sync_single_for_cpu(dev, a, 2048, Dir::FromDevice);
                mm.dma_unmap_single(dev, a, 2048, Dir::FromDevice);
                for size in [64, 2048, 4096] {
                    let b = mm.dma_map_single(dev, buf, size, Dir::Bidirectional);
                    if b != DMA_MAPPING_ERROR {
                        mm.dma_sync_single_for_device(dev, b, size, Dir::Bidirectional);
                        mm.dma_unmap_single(dev, b, size, Dir::Bidirectional);
                    }
                }
                let _ = mm.check();
                let _ = mm.dma_stats();
            });
            let console = m.take_console();
            let check = m.mm().check();
            let dma_reports = ["corrupted", "DMA-API", "swiotlb", "software IO TLB"];
            assert!(
                check.is_ok()
                    || console
                        .iter()
                        .any(|l| dma_reports.iter().any(|r| l.contains(r))),
                "{target} {fill:?}: {check:?} {console:#?}"
            );
        }
    }
}

/// A DMA pool's own structure overwritten: its free list and page list, its geometry
/// and its lock word.
#[test]
fn corrupted_dma_pools_are_reported_not_spun_on() {
    let reports = [
        "corrupted pool",
        "BUG: spinlock",
        "BUG: unable to handle page fault",
        "general protection fault",
        "soft lockup",
        "pool_block_err",
    ];
    for fill in FILLS {
        for (name, off, len) in [
            ("lists", 0u64, 16usize),
            ("geometry", 40, 24),
            ("lock", 64, 8),
        ] {
            let m = MachineBuilder::new()
                .ram(32 * MIB)
                .cpus(2)
                .seed(11)
                .swiotlb(SwiotlbConfig::with_slabs(128).below(16 * MIB))
                .boot();
            let nic = m.add_dma_device("nic", 32).unwrap();
            let dev = nic.device();
            let failures = m.run(|mm| {
                let pool = mm.dma_pool_create("corrupt", dev, 64, 8, 0).unwrap();
                let (v, d) = mm.dma_pool_alloc(&pool, Gfp::GFP_KERNEL).unwrap();
                let phys = mm.layout().virt_to_phys(pool.addr().0 + off).unwrap();
                mm.platform().ram().write(phys, &fill.bytes(len)).unwrap();
                let mut failures = mm.dma_pool_free(&pool, v, d).is_err() as u32;
                for _ in 0..3 {
                    match mm.dma_pool_alloc(&pool, Gfp::GFP_KERNEL | Gfp::__GFP_ZERO) {
                        Ok((v, d)) => failures += mm.dma_pool_free(&pool, v, d).is_err() as u32,
                        Err(_) => failures += 1,
                    }
                }
                let _ = mm.dma_pool_info(&pool);
                mm.dma_pool_destroy(pool);
                failures
            });
            let console = m.take_console();
            assert!(
                failures == 0
                    || console
                        .iter()
                        .any(|l| reports.iter().any(|r| l.contains(r))),
                "pool {name} = {fill:?}: {failures} failures, nothing reported: {console:#?}"
            );
            if matches!(fill, Fill::Ones) {
                assert!(
                    console
                        .iter()
                        .any(|l| reports.iter().any(|r| l.contains(r))),
                    "pool {name} = all-ones is reported: {console:#?}"
                );
            }
        }
    }
}

/// A device asked to move more than the machine has: refused before the host allocates.
#[test]
fn absurd_device_transfers_are_refused_before_any_host_allocation() {
    let m = MachineBuilder::new()
        .ram(32 * MIB)
        .cpus(2)
        .seed(11)
        .swiotlb(SwiotlbConfig::with_slabs(128).below(16 * MIB))
        .boot();
    let dev = m.add_dma_device("greedy", 64).unwrap();
    let ram = m.platform().ram().size();
    let whole = (0x10_0000u64, 8 * MIB as usize);
    // A thousand copies of 8 MiB would need 8 GB of host memory to gather.
    let segments = vec![whole; 1000];
    let r = dev.read_segments(&m, &segments);
    assert!(
        matches!(r, Err(BusError::TooLong { ram: r, .. }) if r == ram),
        "{r:?}"
    );
    let r = dev.write_segments(&m, &segments);
    assert!(matches!(r, Err(BusError::TooLong { .. })), "{r:?}");
    let r = dev.read_from_memory(&m, 0x10_0000, usize::MAX);
    assert!(r.is_err());
    assert!(dev.buffer().is_empty(), "nothing was gathered");
    // One whole-RAM-sized segment set is fine.
    dev.read_segments(&m, &[(0x10_0000, 4096), (0x20_0000, 4096)])
        .unwrap();
    assert_eq!(dev.buffer().len(), 8192);
    assert_eq!(dev.counters().2, 3, "three refused transfers counted");
}
