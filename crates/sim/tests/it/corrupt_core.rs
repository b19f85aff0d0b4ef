//! Corrupted core structures in simulated RAM: page tables at every level (x86_64 and
//! i386), `struct page` of buddy and per-CPU pages, the pageblock flags and the per-CPU
//! page lists with their lock words, overwritten with zeros, all-ones and seeded random
//! bytes (through the machine's RAM and through a bus-mastering device). Whatever was
//! written, allocating, freeing, vmalloc, the MMU and `check()` must end: in a kernel
//! report (an oops, a WARN, `BUG:` on the console) or a clean result, never a host fault
//! or a Rust panic. A host fault kills this test binary, which fails the run.

use crate::fixtures::*;
use kmemlab_mm::arch::pgtable::PtEntry;
use kmemlab_mm::{Gfp, Mm, Pfn, PhysAddr, Profile, VirtAddr};
use kmemlab_sim::{Machine, SimPlatform};

/// What is written over a structure.
const FILLS: [Fill; 4] = [
    Fill::Zeros,
    Fill::Ones,
    Fill::Random(0x5eed_0001),
    Fill::Random(0xdead_beef_cafe),
];

/// How the bytes reach RAM.
#[derive(Copy, Clone, Debug)]
enum Writer {
    /// A store to physical memory from outside the kernel (the shell's `poke`).
    Ram,
    /// A device's DMA write (`DMA_FROM_DEVICE` to a bus address that is not its buffer).
    Dma,
}

fn ram(m: &Machine) -> &kmemlab_sim::ram::Ram {
    m.platform().ram()
}

fn corrupt(m: &Machine, how: Writer, phys: u64, bytes: &[u8]) {
    match how {
        Writer::Ram => ram(m).write(phys, bytes).expect("target is RAM"),
        Writer::Dma => {
            let dev = m
                .dma_device("rogue")
                .unwrap_or_else(|| m.add_dma_device("rogue", 64).expect("device probes"));
            dev.load_buffer(bytes);
            dev.write_to_memory(m, phys, bytes.len())
                .expect("the bus reaches RAM");
        }
    }
}

/// What running the workload after a corruption showed.
#[derive(Debug, Default)]
struct Outcome {
    oopses: u32,
    console: Vec<String>,
    check: Option<String>,
    mmu_faults: u64,
}

impl Outcome {
    /// Did the kernel say anything about it (or did `check()` find it)?
    fn reported(&self) -> bool {
        self.oopses > 0
            || self.check.is_some()
            || self.mmu_faults > 0
            || self.console.iter().any(|l| {
                l.contains("BUG")
                    || l.contains("WARNING")
                    || l.contains("corruption")
                    || l.contains("Bad pagetable")
                    || l.contains("Kernel panic")
            })
    }
}

/// Allocate and free at every order that has its own path, vmalloc and vfree, drain the
/// per-CPU lists, read the vmalloc area through the MMU, render the free areas, check.
fn exercise(m: &Machine, probe: VirtAddr) -> Outcome {
    let faults_before = m.platform().mmu().faults();
    let check = m.run(|mm| {
        for round in 0..3 {
            let mut held = Vec::new();
            for order in [0, 0, 1, 3, 5, 9, 10] {
                if let Ok(page) = mm.alloc_pages(Gfp::GFP_KERNEL, order) {
                    held.push((page, order));
                }
            }
            let areas: Vec<_> = (0..3)
                .filter_map(|i| mm.vmalloc(4096 << (i + round)).ok())
                .collect();
            for (page, order) in held {
                let _ = mm.__free_pages(page, order);
            }
            for va in areas {
                let _ = mm.vmalloc_to_page(va);
                let _ = mm.vfree(va);
            }
            mm.drain_all_pages();
        }
        let _ = mm.kernel_translate(probe.0);
        let _ = mm.vmalloc_to_page(probe);
        for zone in mm.zones() {
            let _ = mm.free_area_snapshot(zone);
        }
        mm.check().err().map(|e| e.to_string())
    });
    let _ = m.read(probe, 64);
    let oopses = m.mm().take_oopses();
    Outcome {
        oopses,
        console: m.take_console(),
        check,
        mmu_faults: m.platform().mmu().faults() - faults_before,
    }
}

/// The (level, physical address of the entry) of every table entry on `va`'s walk.
fn walk_entries(mm: &Mm<SimPlatform>, va: VirtAddr) -> Vec<(usize, u64)> {
    let mode = mm.paging();
    let mut out = Vec::new();
    mm.kernel_walk_tables(va.0, &mut |level, table, _| {
        let index = mode.levels[level].index(va.0);
        out.push((level, table.0 + (index * mode.entry_size) as u64));
    });
    out
}

/// Each level's entry for a vmalloc address, and each level's whole table, overwritten.
#[test]
fn page_tables_at_every_level() {
    for profile in [Profile::X86_64, Profile::I386] {
        let levels = profile.paging().levels.len();
        for level in 0..levels {
            for (i, fill) in FILLS.into_iter().enumerate() {
                for whole_table in [false, true] {
                    let how = if i % 2 == 0 { Writer::Ram } else { Writer::Dma };
                    let m = MachineBuilder::small().profile(profile).seed(11).boot();
                    let va = m.run(|mm| mm.vmalloc(16 << 10)).expect("vmalloc");
                    let entries = m.run(|mm| walk_entries(mm, va));
                    assert_eq!(entries.len(), levels, "{profile}: full walk");
                    let (_, at) = entries[level];
                    let (phys, len) = if whole_table {
                        (at & !0xfff, 4096)
                    } else {
                        (at, profile.paging().entry_size)
                    };
                    corrupt(&m, how, phys, &fill.bytes(len));
                    let out = exercise(&m, va);
                    let _ = m.run(|mm| mm.vfree(va));
                    let _ = m.mm().take_oopses();
                    if matches!(fill, Fill::Ones) {
                        assert!(
                            out.reported(),
                            "{profile} level {level} {fill:?} table={whole_table}: nothing reported: {out:?}"
                        );
                    }
                }
            }
        }
    }
}

/// The checked decoder refuses what the hardware would fault on, with a report.
#[test]
fn pt_entry_reports_corrupted_entries() {
    let m = MachineBuilder::small().seed(11).boot();
    let va = m.run(|mm| mm.vmalloc(8 << 10)).expect("vmalloc");
    let entries = m.run(|mm| walk_entries(mm, va));
    let (_, pmd_entry) = entries[2];
    let table = PhysAddr(pmd_entry & !0xfff);
    let good = m.run(|mm| mm.pt_entry(table, 2, va.0));
    assert!(matches!(good, Ok(PtEntry::Table(_))), "{good:?}");
    // A bit above MAXPHYADDR.
    let mut raw = [0u8; 8];
    ram(&m).read(pmd_entry, &mut raw).expect("RAM");
    let bad = (u64::from_le_bytes(raw) | (1 << 50)).to_le_bytes();
    ram(&m).write(pmd_entry, &bad).expect("RAM");
    let r = m.run(|mm| mm.pt_entry(table, 2, va.0));
    assert!(r.is_err(), "{r:?}");
    assert_eq!(m.mm().take_oopses(), 1);
    let console = m.take_console().join("\n");
    assert!(console.contains("bad pmd"), "{console}");
    assert!(
        console.contains("Corrupted page table at address"),
        "{console}"
    );
    assert!(console.contains("Bad pagetable: 0009 [#1]"), "{console}");
    // The MMU faults on it too, with the reserved-bit error code.
    let e = m.read(va, 8).expect_err("reserved bit");
    assert_eq!(e.error_code(), 0x9);
    // A table that is not RAM: the read of its entry is a page fault.
    let r = m.run(|mm| mm.pt_entry(PhysAddr(1 << 45), 3, va.0));
    assert!(r.is_err());
    assert_eq!(m.mm().take_oopses(), 1);
    assert!(m
        .take_console()
        .iter()
        .any(|l| l.starts_with("BUG: unable to handle page fault for address:")));
}

/// The reproduction of the issue: a poked upper-level entry sent the next vmalloc's
/// walk to a host address. Now the walk reports a page fault and the machine goes on.
#[test]
fn poked_table_entry_is_an_oops_not_a_host_fault() {
    let m = MachineBuilder::small().seed(11).boot();
    let first = m.run(|mm| mm.vmalloc(8 << 10)).expect("vmalloc");
    let entries = m.run(|mm| walk_entries(mm, first));
    for (level, at) in entries.iter().take(3) {
        ram(&m)
            .write(*at, &[0x41; 6])
            .unwrap_or_else(|| panic!("level {level} is RAM"));
    }
    let _ = m.run(|mm| mm.vmalloc(8 << 10));
    assert!(m.mm().take_oopses() > 0);
}

fn struct_page_phys(mm: &Mm<SimPlatform>, pfn: Pfn) -> u64 {
    mm.mem_map_phys().0
        + (pfn - mm.mem_map().base_pfn) * std::mem::size_of::<kmemlab_mm::Page>() as u64
}

/// PFNs of the first `n` pages of each zone whose descriptor satisfies `pick`.
fn pick_pages(
    mm: &Mm<SimPlatform>,
    n: usize,
    pick: impl Fn(&kmemlab_mm::Page) -> bool,
) -> Vec<Pfn> {
    let mut out = Vec::new();
    for zone in mm.zones().iter().filter(|z| z.managed_pages > 0) {
        let found = zone
            .zone_start_pfn
            .range_to(zone.zone_end_pfn())
            .filter(|&pfn| mm.mem_map().get(pfn).is_some_and(&pick))
            .take(n);
        out.extend(found);
    }
    out
}

/// Overwrite the descriptors `pfns` with `fill`, whole or only the list links, the order
/// (`private`) and the flags word.
fn corrupt_pages(m: &Machine, pfns: &[Pfn], fill: Fill, how: Writer) {
    for (i, &pfn) in pfns.iter().enumerate() {
        let at = m.run(|mm| struct_page_phys(mm, pfn));
        let (offset, len) = match i % 4 {
            0 => (0, 40), // all of it
            1 => (16, 8), // next, prev
            2 => (4, 4),  // private (the order)
            _ => (0, 4),  // flags (PageBuddy, PG_pcp, the migrate type)
        };
        corrupt(m, how, at + offset, &fill.bytes(len));
    }
}

#[test]
fn struct_page_of_buddy_pages() {
    for profile in [Profile::X86_64, Profile::I386] {
        for (i, fill) in FILLS.into_iter().enumerate() {
            let how = if i % 2 == 0 { Writer::Ram } else { Writer::Dma };
            let m = MachineBuilder::small().profile(profile).seed(11).boot();
            m.run(|mm| mm.drain_all_pages());
            let pfns = m.run(|mm| pick_pages(mm, 4, |p| p.is_buddy()));
            assert!(!pfns.is_empty());
            corrupt_pages(&m, &pfns, fill, how);
            let probe = m.run(|mm| mm.vmalloc(4096)).unwrap_or(VirtAddr(0));
            let out = exercise(&m, probe);
            if matches!(fill, Fill::Ones) {
                assert!(out.reported(), "{profile} {fill:?}: {out:?}");
            }
        }
    }
}

/// Pages sitting on per-CPU lists (freed order-0 pages not yet drained).
#[test]
fn struct_page_of_pcp_pages() {
    for profile in [Profile::X86_64, Profile::I386] {
        for (i, fill) in FILLS.into_iter().enumerate() {
            let how = if i % 2 == 0 { Writer::Ram } else { Writer::Dma };
            let m = MachineBuilder::small().profile(profile).seed(11).boot();
            m.run(|mm| {
                let pages: Vec<_> = (0..16)
                    .filter_map(|_| mm.alloc_pages(Gfp::GFP_KERNEL, 0).ok())
                    .collect();
                for p in pages {
                    mm.__free_pages(p, 0).expect("free");
                }
            });
            let pfns = m.run(|mm| pick_pages(mm, 4, |p| p.flags() & (1 << 2) != 0));
            assert!(!pfns.is_empty(), "{profile}: pages on per-CPU lists");
            corrupt_pages(&m, &pfns, fill, how);
            let out = exercise(&m, VirtAddr(0));
            if matches!(fill, Fill::Ones) {
                assert!(out.reported(), "{profile} {fill:?}: {out:?}");
            }
        }
    }
}

#[test]
fn pageblock_flags() {
    for profile in [Profile::X86_64, Profile::I386] {
        for (i, fill) in FILLS.into_iter().enumerate() {
            let how = if i % 2 == 0 { Writer::Ram } else { Writer::Dma };
            let m = MachineBuilder::small().profile(profile).seed(11).boot();
            let region = m
                .mm()
                .memblock()
                .reserved()
                .regions()
                .iter()
                .find(|r| r.name == kmemlab_mm::mm_init::USEMAP_NAME)
                .map(|r| (r.base, r.size))
                .expect("pageblock flags reserved at boot");
            let len = region.1.min(4096) as usize;
            corrupt(&m, how, region.0, &fill.bytes(len));
            // Whatever the flags say, the machine goes on; nothing is required to be
            // reported, since every byte decodes to some migrate type.
            let _ = exercise(&m, VirtAddr(0));
            m.run(|mm| {
                let p = mm.alloc_pages(Gfp::GFP_KERNEL, 0).expect("memory left");
                mm.__free_pages(p, 0).expect("free");
            });
        }
    }
}

/// `struct per_cpu_pages` of each zone on each CPU: lock word, count, high, batch,
/// free_factor and the list heads.
#[test]
fn per_cpu_lists_and_lock_words() {
    for profile in [Profile::X86_64, Profile::I386] {
        for (i, fill) in FILLS.into_iter().enumerate() {
            for cpu in 0..2 {
                let how = if i % 2 == 0 { Writer::Ram } else { Writer::Dma };
                let m = MachineBuilder::small().profile(profile).seed(11).boot();
                m.run(|mm| {
                    let pages: Vec<_> = (0..8)
                        .filter_map(|_| mm.alloc_pages(Gfp::GFP_KERNEL, 0).ok())
                        .collect();
                    for p in pages {
                        mm.__free_pages(p, 0).expect("free");
                    }
                });
                let base = ram(&m).base() as usize;
                let targets: Vec<(u64, usize)> = m.run(|mm| {
                    mm.per_cpu(cpu)
                        .pcp
                        .iter()
                        .map(|pcp| {
                            let host = pcp as *const _ as usize;
                            ((host - base) as u64, std::mem::size_of_val(pcp))
                        })
                        .collect()
                });
                for (phys, len) in targets {
                    corrupt(&m, how, phys, &fill.bytes(len));
                }
                let out = exercise(&m, VirtAddr(0));
                if matches!(fill, Fill::Ones) {
                    assert!(out.reported(), "{profile} cpu {cpu} {fill:?}: {out:?}");
                }
            }
        }
    }
}

/// Shell arguments reach `__free_pages` with any PFN and order: each wrong one is a clean
/// error.
#[test]
fn free_with_any_pfn_and_order_is_an_error() {
    let m = MachineBuilder::small().seed(11).boot();
    m.run(|mm| {
        let page = mm.alloc_pages(Gfp::GFP_KERNEL, 2).expect("alloc");
        let pfn = mm.page_to_pfn(page);
        for order in [1, 3, 11, 64, u32::MAX] {
            assert!(mm.__free_pages(page, order).is_err(), "order {order}");
        }
        for bad in [
            u64::MAX,
            1 << 40,
            (mm.mem_map().base_pfn + mm.mem_map().len).raw(),
        ] {
            assert!(mm.pfn_to_page(kmemlab_mm::Pfn(bad)).is_err());
        }
        assert!(mm.split_page(page, 40).is_err());
        mm.__free_pages(page, 2).expect("the right order frees");
        assert!(mm.__free_pages(mm.pfn_to_page(pfn).unwrap(), 2).is_err());
        mm.check().expect("allocator intact");
    });
}

/// Byte offsets of `struct page` fields (see `kmemlab_mm::mm_types::Page`).
const PAGE_FLAGS: u64 = 0;
const PAGE_NEXT: u64 = 16;
const PAGE_PREV: u64 = 20;

fn poke_u32(m: &Machine, phys: u64, value: u32) {
    ram(m).write(phys, &value.to_le_bytes()).expect("RAM");
}

/// A per-CPU list whose next page no longer points back: the allocation that pops its
/// head reports `list_del corruption` as `__list_del_entry_valid_or_report()` does, and
/// is served all the same; `check()` then finds the list broken.
#[test]
fn broken_back_link_on_a_pcp_list_is_list_del_corruption() {
    let m = MachineBuilder::small().cpus(1).seed(3).boot();
    let (a, b, addr_a, addr_b, bogus) = m.run(|mm| {
        let a = mm.alloc_pages(Gfp::GFP_KERNEL, 0).expect("a");
        let b = mm.alloc_pages(Gfp::GFP_KERNEL, 0).expect("b");
        let (pa, pb) = (mm.page_to_pfn(a), mm.page_to_pfn(b));
        let (va, vb) = (mm.struct_page_address(a).0, mm.struct_page_address(b).0);
        mm.__free_pages(b, 0).expect("free b");
        mm.__free_pages(a, 0).expect("free a");
        let bogus = mm.zones().iter().map(|z| z.zone_start_pfn).max().unwrap() + 7;
        (pa, pb, va, vb, bogus)
    });
    let _ = m.take_console();
    // a is the head of the list, b after it; b's prev should be a.
    let b_desc = m.run(|mm| struct_page_phys(mm, b));
    poke_u32(&m, b_desc + PAGE_PREV, bogus.raw() as u32);
    let got = m.run(|mm| {
        let p = mm
            .alloc_pages(Gfp::GFP_KERNEL, 0)
            .map(|p| mm.page_to_pfn(p));
        let check = mm.check();
        mm.drain_all_pages();
        (p, check)
    });
    let console = m.take_console();
    let bogus_addr = m.run(|mm| mm.mem_map().struct_page_va(mm.layout().page_offset, bogus));
    let wanted = format!(
        "list_del corruption. next->prev should be {addr_a:016x}, but was {bogus_addr:016x}. (next={addr_b:016x})"
    );
    assert!(console.contains(&wanted), "{wanted}\n{console:#?}");
    assert!(
        console
            .iter()
            .any(|l| l.starts_with("WARNING: CPU: 0 PID: ")
                && l.ends_with("at lib/list_debug.c:65 __list_del_entry_valid_or_report")),
        "{console:#?}"
    );
    assert!(got.0.is_ok(), "the allocation is served from elsewhere");
    assert_ne!(
        got.0.unwrap(),
        a,
        "the page whose unlink failed is not handed out"
    );
    assert!(got.1.is_err(), "check() sees the abandoned list's pages");
}

/// A cycle on a per-CPU list: `check()` reports it, drain and allocation end.
#[test]
fn a_cycle_on_a_pcp_list_ends() {
    let m = MachineBuilder::small()
        .profile(Profile::I386)
        .cpus(1)
        .seed(5)
        .boot();
    let (a, b) = m.run(|mm| {
        let a = mm.alloc_pages(Gfp::GFP_KERNEL, 0).expect("a");
        let b = mm.alloc_pages(Gfp::GFP_KERNEL, 0).expect("b");
        let (pa, pb) = (mm.page_to_pfn(a), mm.page_to_pfn(b));
        mm.__free_pages(b, 0).expect("free b");
        mm.__free_pages(a, 0).expect("free a");
        (pa, pb)
    });
    // b.next = a, a.prev = b: a -> b -> a -> ...
    let (da, db) = m.run(|mm| (struct_page_phys(mm, a), struct_page_phys(mm, b)));
    poke_u32(&m, db + PAGE_NEXT, a.raw() as u32);
    poke_u32(&m, da + PAGE_PREV, b.raw() as u32);
    let check = m.run(|mm| mm.check());
    assert!(
        matches!(
            check,
            Err(kmemlab_mm::check::CheckError::ListCorrupt { .. })
        ),
        "{check:?}"
    );
    m.run(|mm| {
        mm.drain_all_pages();
        for _ in 0..8 {
            let _ = mm.alloc_pages(Gfp::GFP_KERNEL, 0);
        }
    });
    let console = m.take_console();
    assert!(
        console.iter().any(|l| l.contains("corruption")),
        "{console:#?}"
    );
}

/// Free blocks that lost `PageBuddy`: taking one off its list is `BUG: Bad page state`
/// (taint `B`), and the allocation goes on with other blocks.
#[test]
fn a_listed_block_without_page_buddy_is_a_bad_page() {
    let m = MachineBuilder::small().cpus(1).seed(9).boot();
    m.run(|mm| mm.drain_all_pages());
    let heads = m.run(|mm| pick_pages(mm, usize::MAX, |p| p.is_buddy() && p.order() == 10));
    assert!(!heads.is_empty());
    for pfn in &heads {
        let at = m.run(|mm| struct_page_phys(mm, *pfn));
        poke_u32(&m, at + PAGE_FLAGS, 0);
    }
    let _ = m.take_console();
    let got = m.run(|mm| mm.alloc_pages(Gfp::GFP_KERNEL, 10).is_ok());
    let console = m.take_console();
    assert!(
        console
            .iter()
            .any(|l| l.starts_with("BUG: Bad page state in process kmemlab/0  pfn:")),
        "{console:#?}"
    );
    assert!(console.iter().any(
        |l| l == "page dumped because: free list entry is not a free block of the list's order"
    ));
    assert!(m.mm().tainted().has(kmemlab_mm::report::taint::BAD_PAGE));
    // Smaller blocks are still there for smaller requests.
    assert!(m.run(|mm| mm.alloc_pages(Gfp::GFP_KERNEL, 3).is_ok()));
    let _ = got;
}

/// Seeded random damage to many descriptors at once (any field, any bytes) around the
/// pages just allocated and freed (held, on per-CPU lists, back in the buddy lists), on
/// both profiles: every run ends.
#[test]
fn random_damage_to_many_descriptors_ends() {
    for seed in 0..24u64 {
        let profile = if seed % 2 == 0 {
            Profile::X86_64
        } else {
            Profile::I386
        };
        let m = MachineBuilder::small().profile(profile).seed(seed).boot();
        let touched: Vec<Pfn> = m.run(|mm| {
            let pages: Vec<_> = (0..32)
                .filter_map(|i| {
                    mm.alloc_pages(Gfp::GFP_KERNEL, i % 4)
                        .ok()
                        .map(|p| (p, i % 4))
                })
                .collect();
            let pfns = pages.iter().map(|(p, _)| mm.page_to_pfn(p)).collect();
            for (p, order) in pages.into_iter().step_by(2) {
                let _ = mm.__free_pages(p, order);
            }
            pfns
        });
        let noise = Fill::Random(0x9e37_79b9_7f4a_7c15u64.wrapping_mul(seed + 1)).bytes(48 * 8);
        for chunk in noise.chunks(8) {
            let near = touched[usize::from(chunk[0]) % touched.len()];
            let pfn = near + u64::from(chunk[1] % 16);
            let offset = u64::from(chunk[2]) % 36;
            let at = m.run(|mm| struct_page_phys(mm, pfn)) + offset;
            corrupt(&m, Writer::Ram, at, &chunk[4..]);
        }
        let out = exercise(&m, VirtAddr(0));
        assert!(
            out.reported(),
            "seed {seed}: damage went unnoticed: {out:?}"
        );
    }
}

/// Byte offsets in `struct per_cpu_pages` (see `kmemlab_mm::page_alloc::PerCpuPages`):
/// the lock word, `count`, `high`, `batch`, `free_factor`, then the list heads
/// (`first`, `last`: 4 bytes each; `u32::MAX` is the head itself).
const PCP_COUNT: u64 = 4;
const PCP_LISTS: u64 = 20;

/// The physical address of CPU `cpu`'s `per_cpu_pages` for the zone whose lists hold
/// pages now, that zone's index and the pages its lists hold.
fn busy_pcp_phys(m: &Machine, cpu: usize) -> (u64, usize, u32) {
    let base = ram(m).base() as usize;
    m.run(|mm| {
        let pcps = &mm.per_cpu(cpu).pcp;
        let zone = (0..pcps.len())
            .find(|&z| pcps[z].count() > 0)
            .expect("some per-CPU list holds pages");
        let host = &pcps[zone] as *const _ as usize;
        ((host - base) as u64, zone, pcps[zone].count())
    })
}

/// Free a few pages so that CPU 0's lists hold some.
fn fill_pcp_lists(m: &Machine) {
    m.run(|mm| {
        let pages: Vec<_> = (0..8)
            .filter_map(|_| mm.alloc_pages(Gfp::GFP_KERNEL, 0).ok())
            .collect();
        for p in pages {
            mm.__free_pages(p, 0).expect("free");
        }
    });
}

/// The fuzz finding `final-hour-timeout-0efe0f2d`: bytes over the per-CPU area leave a
/// list head whose `first` names a page and whose `last` is the head, and a count of
/// 0x0a0a0a0a. `list_empty()` (reading `first`) says the list holds pages, taking its
/// last entry found none, and `free_pcppages_bulk()` went round that list for ever.
/// Now the drain reports `list_del corruption` (the head's `prev->next` is not the
/// head), abandons the list, WARNs about the count, and ends with the count at 0.
#[test]
fn a_pcp_head_with_first_but_no_last_is_list_del_corruption_and_drain_ends() {
    let m = MachineBuilder::new()
        .ram(64 * MIB)
        .cpus(1)
        .profile(Profile::X86_64)
        .holes(vec![])
        .seed(13)
        .boot();
    fill_pcp_lists(&m);
    let (pcp, zone, held) = busy_pcp_phys(&m, 0);
    let _ = m.take_console();
    poke_u32(&m, pcp + PCP_COUNT, 0x0a0a_0a0a);
    // pindex 1 (order 0, the second migrate type): `first` = 0x0a0a0a0a, `last` = head.
    poke_u32(&m, pcp + PCP_LISTS + 8, 0x0a0a_0a0a);
    poke_u32(&m, pcp + PCP_LISTS + 8 + 4, u32::MAX);
    let count = m.run(|mm| {
        mm.drain_all_pages();
        mm.per_cpu(0).pcp[zone].count()
    });
    let console = m.take_console();
    let first_addr = m.run(|mm| {
        mm.mem_map()
            .struct_page_va(mm.layout().page_offset, Pfn(0x0a0a_0a0a))
    });
    let wanted = format!(
        "list_del corruption. prev->next should be (list head), but was {first_addr:016x}. (prev=(list head))"
    );
    assert!(console.contains(&wanted), "{wanted}\n{console:#?}");
    // The real pages went back to the buddy lists first, each lowering the count.
    let left = 0x0a0a_0a0a - held;
    assert!(
        console
            .iter()
            .any(|l| l.starts_with(&format!("pcp->count is {left} for zone "))),
        "{console:#?}"
    );
    assert!(
        console
            .iter()
            .any(|l| l.starts_with("WARNING: CPU: 0 PID: ")
                && l.ends_with("at mm/page_alloc.c:0 free_pcppages_bulk")),
        "{console:#?}"
    );
    assert_eq!(
        count, 0,
        "the drain leaves the count at what the lists hold"
    );
    m.run(|mm| {
        let page = mm
            .alloc_pages(Gfp::GFP_KERNEL, 0)
            .expect("allocation goes on");
        mm.__free_pages(page, 0).expect("free");
    });
}

/// Only the count overwritten, with a value beyond anything the zone could cache: the
/// drain gives back the pages the lists really hold, then WARNs and sets the count to 0;
/// the allocator's books balance again (`check()`).
#[test]
fn a_pcp_count_beyond_the_zone_is_a_warning_and_drain_ends() {
    for value in [u32::MAX, 0x8000_0000, 0x0a0a_0a0a, 1 << 20] {
        let m = MachineBuilder::new()
            .ram(64 * MIB)
            .cpus(1)
            .profile(Profile::I386)
            .holes(vec![])
            .seed(17)
            .boot();
        fill_pcp_lists(&m);
        let (pcp, zone, held) = busy_pcp_phys(&m, 0);
        let _ = m.take_console();
        poke_u32(&m, pcp + PCP_COUNT, value);
        let (count, check) = m.run(|mm| {
            mm.drain_all_pages();
            (mm.per_cpu(0).pcp[zone].count(), mm.check())
        });
        let console = m.take_console();
        assert!(
            console
                .iter()
                .any(|l| l.starts_with(&format!("pcp->count is {} for zone ", value - held))),
            "{value:#x}: {console:#?}"
        );
        assert_eq!(count, 0, "{value:#x}");
        assert!(check.is_ok(), "{value:#x}: {check:?}");
    }
}

/// Runs of bytes over part of a busy `per_cpu_pages`, as the fuzz finding wrote them:
/// from every 4-byte field on, a word's worth or the rest of the structure, of a small
/// value (neither a page nor the head) or of all-ones (the head). Whatever field pairs
/// that leaves (a head with `first` but no `last`, counts the lists do not hold, a lock
/// word owned by no one), allocating, freeing, draining and `check()` end.
#[test]
fn partial_writes_over_a_pcp_end() {
    let size = pcp_size();
    for byte in [0x0a_u8, 0xff] {
        for offset in (0..size).step_by(4) {
            for len in [4, size - offset] {
                let m = MachineBuilder::new()
                    .ram(64 * MIB)
                    .cpus(1)
                    .profile(Profile::X86_64)
                    .holes(vec![])
                    .seed(23)
                    .boot();
                fill_pcp_lists(&m);
                let (pcp, _, _) = busy_pcp_phys(&m, 0);
                corrupt(&m, Writer::Ram, pcp + offset, &vec![byte; len as usize]);
                let _ = exercise(&m, VirtAddr(0));
            }
        }
    }
}

/// The size of `struct per_cpu_pages`.
fn pcp_size() -> u64 {
    std::mem::size_of::<kmemlab_mm::page_alloc::PerCpuPages>() as u64
}

/// The entry at `at`, as 8 bytes (x86_64).
fn read_u64(m: &Machine, at: u64) -> u64 {
    let mut raw = [0u8; 8];
    ram(m).read(at, &mut raw).expect("RAM");
    u64::from_le_bytes(raw)
}

/// Page tables overwritten into a DAG: every entry of a vmalloc area's PUD table names
/// its PMD table, every entry of that names its PTE table, and every PTE is present.
/// Each table is a page of RAM, but a walk that follows every path visits 512^3 leaves
/// for that one PGD entry (and each PGD entry of the vmalloc range may name the PUD
/// table too): in a sound tree each table has one parent, so a walk that meets more
/// tables than `mem_map` has pages has gone round shared ones. `check()`
/// (which walks every table under the vmalloc range) reports the damage and ends.
#[test]
fn page_tables_made_a_dag_are_walked_in_bounded_time() {
    let m = MachineBuilder::small()
        .profile(Profile::X86_64)
        .seed(11)
        .boot();
    let va = m.run(|mm| mm.vmalloc(8 << 10)).expect("vmalloc");
    let entries = m.run(|mm| walk_entries(mm, va));
    assert_eq!(entries.len(), 4);
    // Each level's table filled with its own entry for `va` (PGD: the vmalloc range's
    // slots only, 64 of them from `va`'s on).
    for (level, at) in entries.iter().copied().rev() {
        let entry = read_u64(&m, at).to_le_bytes();
        let (first, slots) = if level == 0 {
            (at, 64.min((0x1000 - (at & 0xfff)) / 8))
        } else {
            (at & !0xfff, 512)
        };
        let bytes: Vec<u8> = (0..slots).flat_map(|_| entry).collect();
        ram(&m).write(first, &bytes).expect("RAM");
    }
    let check = m.run(|mm| mm.check());
    use kmemlab_mm::check::CheckError::Vmalloc;
    use kmemlab_mm::vmalloc::VmallocCheckError as E;
    assert!(
        matches!(
            check,
            Err(Vmalloc(E::StrayMapping(_) | E::PageTables { .. }))
        ),
        "{check:?}"
    );
    let _ = m.run(|mm| mm.vfree(va));
    let _ = m.mm().take_oopses();
    let _ = m.take_console();
}
