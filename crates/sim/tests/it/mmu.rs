//! The boot page tables and the simulated MMU: the direct map translates every lowmem
//! page to its physical address on both profiles, bytes written by the kernel read back
//! through the MMU, `/proc/meminfo` reports the direct map, unmapped addresses fault with
//! the kernel's words, and the TLBs hit, miss and get shot down as on x86.

use crate::fixtures::{MachineBuilder, GIB, MIB};
use kmemlab_mm::arch::init::{EARLY_PGT_NAME, SWAPPER_PG_DIR_NAME};
use kmemlab_mm::{Context, Gfp, Hardware, Profile, VirtAddr};
use kmemlab_sim::mmu::{FaultReason, Source};
use kmemlab_sim::{Hole, Machine};

const PAGE: u64 = 4096;

/// The physical ranges the direct map must cover: `[0, 1 MiB)` and every RAM range below
/// the end of lowmem.
fn lowmem_ranges(m: &Machine) -> Vec<(u64, u64)> {
    let mm = m.mm();
    let end = mm.layout().direct_map_end_phys;
    let mut v = vec![(0, MIB.min(end))];
    for r in mm.memblock().memory().regions() {
        let (s, e) = (r.base.max(MIB), r.end().min(end));
        if s < e {
            v.push((s, e));
        }
    }
    v
}

/// Every page of every lowmem range (all of them: the walk is cheap) translates to its
/// own physical address with kernel protections.
fn assert_direct_map(m: &Machine) {
    let mm = m.mm();
    let po = mm.layout().page_offset;
    for (s, e) in lowmem_ranges(m) {
        let mut phys = s;
        while phys < e {
            let w = m.walk(VirtAddr(po + phys + 0x10));
            let t = w
                .result
                .unwrap_or_else(|r| panic!("{}: {phys:#x} not mapped: {r:?}\n{w}", mm.profile()));
            assert_eq!(t.phys.0, phys + 0x10, "{w}");
            assert!(t.writable);
            assert_ne!(t.entry & (1 << 8), 0, "global");
            if mm.profile() == Profile::X86_64 {
                assert_ne!(t.entry & (1 << 63), 0, "NX");
            }
            phys += PAGE;
        }
    }
    // The last byte of lowmem, and the first page after it.
    let end = mm.layout().direct_map_end_phys;
    let last = m
        .walk(VirtAddr(po + end - 1))
        .result
        .expect("last lowmem byte");
    assert_eq!(last.phys.0, end - 1);
    assert!(
        m.walk(VirtAddr(po + end)).result.is_err(),
        "mapped past lowmem"
    );
}

#[test]
fn x86_64_direct_map_covers_every_page() {
    let m = MachineBuilder::new()
        .ram(GIB + 6 * MIB)
        .cpus(2)
        .holes(vec![
            Hole::LEGACY,
            Hole {
                start: 256 * MIB,
                end: 260 * MIB + 12 * 1024,
            },
        ])
        .seed(1)
        .boot();
    assert_direct_map(&m);
    // The legacy hole is mapped (the ISA range is), but it is not RAM.
    let va = VirtAddr(m.mm().layout().page_offset + 0xa_0000);
    assert_eq!(m.walk(va).result.unwrap().phys.0, 0xa_0000);
    let e = m.read(va, 4).unwrap_err();
    assert!(matches!(e.reason, FaultReason::NotRam { .. }), "{e}");
    // Addresses in the hole past the ISA range are not mapped at all.
    let hole = VirtAddr(m.mm().layout().page_offset + 258 * MIB);
    assert!(matches!(
        m.walk(hole).result,
        Err(FaultReason::NotPresent { .. })
    ));
}

#[test]
fn i386_direct_map_covers_lowmem_and_not_highmem() {
    let m = MachineBuilder::new()
        .profile(Profile::I386)
        .ram(2 * GIB)
        .cpus(2)
        .seed(1)
        .boot();
    assert_direct_map(&m);
    let mm = m.mm();
    let l = mm.layout();
    assert_eq!(l.direct_map_end_phys, 896 * MIB);
    // HighMem pages have no permanent mapping: nothing from the end of lowmem to 4 GiB.
    let mut va = l.page_offset + l.direct_map_end_phys;
    while va < 1 << 32 {
        assert!(m.walk(VirtAddr(va)).result.is_err(), "{va:#x} mapped");
        va += 4 * MIB;
    }
    let page = m.run(|mm| {
        let p = mm.alloc_pages(Gfp::GFP_HIGHUSER, 0).unwrap();
        (mm.page_to_pfn(p), mm.page_address(p))
    });
    assert!(page.0.phys().0 >= 896 * MIB);
    assert_eq!(page.1, None);
    // 4 MiB pages above the first 4 MiB.
    let t = m.walk(VirtAddr(l.page_offset + 100 * MIB)).result.unwrap();
    assert_eq!(t.page_size, 4 * MIB);
    let t = m.walk(VirtAddr(l.page_offset + 2 * MIB)).result.unwrap();
    assert_eq!(t.page_size, PAGE);
    assert_eq!(m.walk(VirtAddr(l.page_offset)).steps.len(), 2);
}

#[test]
fn direct_map_counts_add_up_and_show_in_meminfo() {
    for (profile, ram, holes) in [
        (Profile::X86_64, GIB, vec![Hole::LEGACY]),
        (Profile::X86_64, 8 * GIB, vec![Hole::LEGACY, Hole::PCI]),
        (Profile::X86_64, 64 * MIB, vec![]),
        (Profile::I386, 2 * GIB, vec![Hole::LEGACY]),
        (Profile::I386, 512 * MIB, vec![]),
    ] {
        let m = MachineBuilder::new()
            .profile(profile)
            .ram(ram)
            .cpus(1)
            .holes(holes)
            .seed(3)
            .boot();
        let mapped: u64 = lowmem_ranges(&m).iter().map(|(s, e)| e - s).sum();
        let counts = m.mm().direct_map_bytes();
        assert_eq!(counts.iter().sum::<u64>(), mapped, "{profile} {ram:#x}");
        let mut text = String::new();
        kmemlab_mm::procfs::meminfo(&m.mm(), &mut text).unwrap();
        let line = |name: &str| -> Option<u64> {
            text.lines()
                .find(|l| l.starts_with(name))
                .map(|l| l[16..24].trim().parse().unwrap())
        };
        assert_eq!(line("DirectMap4k:"), Some(counts[0] >> 10), "{text}");
        match profile {
            Profile::X86_64 => {
                assert_eq!(line("DirectMap2M:"), Some(counts[1] >> 10));
                assert_eq!(line("DirectMap1G:"), Some(counts[2] >> 10));
                assert_eq!(line("DirectMap4M:"), None);
            }
            Profile::I386 => {
                assert_eq!(line("DirectMap4M:"), Some(counts[1] >> 10));
                assert_eq!(line("DirectMap2M:"), None);
                assert_eq!(counts[2], 0);
            }
        }
        // The lines come last, in show_val_kb's columns.
        assert!(text
            .trim_end()
            .lines()
            .last()
            .unwrap()
            .starts_with("DirectMap"));
        for l in text.lines().filter(|l| l.starts_with("DirectMap")) {
            assert_eq!(l.len(), 27, "{l:?}");
        }
    }
}

#[test]
fn big_machines_map_with_gigabyte_pages_and_few_tables() {
    let m = MachineBuilder::new().ram(64 * GIB).cpus(1).boot();
    let mm = m.mm();
    assert_eq!(mm.direct_map_bytes()[2], 63 * GIB);
    let tables: u64 = mm
        .memblock()
        .reserved()
        .regions()
        .iter()
        .filter(|r| r.name == EARLY_PGT_NAME || r.name == SWAPPER_PG_DIR_NAME)
        .map(|r| r.size / PAGE)
        .sum();
    // swapper_pg_dir, one PUD, the first GiB's PMD, two PTE tables (the first 2 MiB and
    // the 4 KiB tail).
    assert!(tables <= 6, "{tables} page-table pages at boot");
    let t = m
        .walk(VirtAddr(mm.layout().page_offset + 40 * GIB + 5))
        .result
        .unwrap();
    assert_eq!((t.page_size, t.phys.0), (GIB, 40 * GIB + 5));
    assert_eq!(
        m.walk(VirtAddr(mm.layout().page_offset + 40 * GIB))
            .steps
            .len(),
        2
    );
}

#[test]
fn kernel_bytes_read_back_through_the_mmu() {
    for profile in [Profile::X86_64, Profile::I386] {
        let m = MachineBuilder::new()
            .profile(profile)
            .ram(256 * MIB)
            .cpus(2)
            .seed(5)
            .boot();
        let va = m.run(|mm| mm.__get_free_pages(Gfp::GFP_KERNEL, 1).unwrap());
        let bytes: Vec<u8> = (0..8192u32).map(|i| (i * 7 + 3) as u8).collect();
        m.mm().copy_to_kernel(va, &bytes).unwrap();
        assert_eq!(m.read(va, bytes.len()).unwrap(), bytes);
        // Across the page boundary, from another CPU.
        let got = m
            .on_cpu(1, Context::Process, |_| m.read(VirtAddr(va.0 + 4000), 200))
            .unwrap()
            .unwrap();
        assert_eq!(got, &bytes[4000..4200]);
        // Writes through the MMU are what the kernel sees in its direct map.
        m.write(VirtAddr(va.0 + 4090), b"kmemlab!MMU").unwrap();
        let mut back = [0u8; 11];
        m.mm()
            .copy_from_kernel(VirtAddr(va.0 + 4090), &mut back)
            .unwrap();
        assert_eq!(&back, b"kmemlab!MMU");
        assert_eq!(m.read(va, 0).unwrap(), Vec::<u8>::new());
        assert_eq!(m.page_faults(), 0);
        assert!(m.take_console().is_empty());
    }
}

#[test]
fn vmalloc_area_faults_with_the_kernels_words() {
    let m = MachineBuilder::new().ram(64 * MIB).cpus(2).boot();
    m.take_console();
    let va = VirtAddr(m.mm().layout().vmalloc_start + 0x5000);
    let e = m.write(va, b"x").unwrap_err();
    assert_eq!(e.reason, FaultReason::NotPresent { level: "PUD" });
    assert_eq!(e.error_code(), 2);
    let console = m.take_console();
    assert_eq!(
        console[0],
        "BUG: unable to handle page fault for address: ffffc90000005000"
    );
    assert_eq!(console[1], "#PF: supervisor write access in kernel mode");
    assert_eq!(console[2], "#PF: error_code(0x0002) - not-present page");
    assert!(console[3].starts_with("PGD ") && console[3].contains(" P4D "));
    assert!(console[3].ends_with("PUD 0 "), "{}", console[3]);
    assert_eq!(console[4], "Oops: 0002 [#1] PREEMPT SMP NOPTI");
    assert!(console[5].starts_with("CPU: 0 PID: "));
    let e = m
        .on_cpu(1, Context::Process, |_| m.read(va, 8))
        .unwrap()
        .unwrap_err();
    assert_eq!((e.cpu, e.error_code()), (1, 0));
    let console = m.take_console();
    assert_eq!(console[1], "#PF: supervisor read access in kernel mode");
    assert_eq!(console[4], "Oops: 0000 [#2] PREEMPT SMP NOPTI");
    assert_eq!(m.page_faults(), 2);
    assert!(e.to_string().contains("ffffc90000005000"));
    // A NULL pointer and a non-canonical pointer.
    m.read(VirtAddr(0x10), 1).unwrap_err();
    assert_eq!(
        m.take_console()[0],
        "BUG: kernel NULL pointer dereference, address: 0000000000000010"
    );
    let e = m.read(VirtAddr(0xdead_0000_0000_0100), 1).unwrap_err();
    assert_eq!(e.reason, FaultReason::NonCanonical);
    assert!(m.take_console()[0].starts_with(
        "general protection fault, probably for non-canonical address 0xdead000000000100"
    ));
    // translate() is a lookup: returned, not reported.
    assert!(m.translate(va).is_err());
    assert!(m.take_console().is_empty());

    let m = MachineBuilder::small()
        .profile(Profile::I386)
        .cpus(1)
        .boot();
    m.take_console();
    let va = VirtAddr(m.mm().layout().vmalloc_start);
    m.read(va, 1).unwrap_err();
    let console = m.take_console();
    assert_eq!(
        console[0],
        format!("BUG: unable to handle page fault for address: {:08x}", va.0)
    );
    assert_eq!(console[3], "*pde = 00000000 ");
    assert_eq!(m.mm().nr_pagetable_pages(), 0);
}

#[test]
fn x86_64_preallocates_the_vmalloc_puds() {
    let m = MachineBuilder::small().cpus(1).boot();
    let mm = m.mm();
    assert_eq!(
        mm.nr_pagetable_pages(),
        64,
        "32 TiB / 512 GiB per PGD entry"
    );
    let l = mm.layout();
    let mut va = l.vmalloc_start;
    while va < l.vmalloc_end {
        let w = m.walk(VirtAddr(va));
        assert_eq!(w.steps.len(), 2, "{w}");
        assert_eq!(w.result, Err(FaultReason::NotPresent { level: "PUD" }));
        va += 512 * GIB;
    }
    // The PUD pages come from the page allocator, zeroed.
    let pud = w_table(&m, l.vmalloc_start);
    let pfn = kmemlab_mm::PhysAddr(pud).pfn();
    assert!(mm.pfn_to_page(pfn).unwrap().refcount() >= 1);
    assert!(!mm.memblock().is_reserved(pud));
    mm.check().unwrap();
}

fn w_table(m: &Machine, va: u64) -> u64 {
    m.walk(VirtAddr(va)).steps[1].table.0
}

#[test]
fn tlb_misses_then_hits_and_shootdowns_reach_every_cpu() {
    let m = MachineBuilder::new().ram(256 * MIB).cpus(3).boot();
    let va = m.run(|mm| mm.__get_free_pages(Gfp::GFP_KERNEL, 0).unwrap());
    let touch = |cpu: usize| {
        m.on_cpu(cpu, Context::Process, |_| m.translate(va).unwrap().source)
            .unwrap()
    };
    let s0 = m.tlb_stats(1);
    assert_eq!(touch(1), Source::PageWalk);
    assert_eq!(touch(1), Source::L1Tlb);
    m.on_cpu(1, Context::Process, |_| m.read(va, 64).unwrap())
        .unwrap();
    let s1 = m.tlb_stats(1);
    assert_eq!(s1.misses - s0.misses, 1);
    assert_eq!(s1.l1_hits - s0.l1_hits, 2);
    assert_eq!(touch(2), Source::PageWalk);
    assert_eq!(touch(0), Source::PageWalk);

    // One page: INVLPG on every CPU, IPIs to the others.
    let f0 = m.tlb_flush_stats();
    let flushes = m.platform().tlb_flushes();
    m.mm()
        .platform()
        .flush_tlb_kernel_range(va, VirtAddr(va.0 + PAGE));
    let f1 = m.tlb_flush_stats();
    assert_eq!(f1.shootdowns - f0.shootdowns, 1);
    assert_eq!(f1.ipis - f0.ipis, 2);
    assert_eq!(f1.pages_invalidated - f0.pages_invalidated, 1);
    assert_eq!(m.platform().tlb_flushes(), flushes + 1);
    for cpu in 0..3 {
        assert_eq!(touch(cpu), Source::PageWalk, "CPU {cpu} kept the entry");
    }
    // 33 pages still go page by page; 34 flush everything, on every CPU.
    let full0: Vec<u64> = (0..3).map(|c| m.tlb_stats(c).full_flushes).collect();
    m.mm()
        .platform()
        .flush_tlb_kernel_range(va, VirtAddr(va.0 + 33 * PAGE));
    assert_eq!(m.tlb_flush_stats().full_flushes, f1.full_flushes);
    m.mm()
        .platform()
        .flush_tlb_kernel_range(va, VirtAddr(va.0 + 34 * PAGE));
    assert_eq!(m.tlb_flush_stats().full_flushes, f1.full_flushes + 1);
    for (cpu, before) in full0.into_iter().enumerate() {
        assert_eq!(m.tlb_stats(cpu).full_flushes, before + 1);
        assert_eq!(touch(cpu), Source::PageWalk);
    }
    let total = m.tlb_stats_total();
    let sum = (0..3).map(|c| m.tlb_stats(c).misses).sum::<u64>();
    assert_eq!(total.misses, sum);
}

#[test]
fn the_l2_tlb_backs_the_l1() {
    let m = MachineBuilder::new().ram(256 * MIB).cpus(1).boot();
    // 4 KiB pages of the first 2 MiB: 16 sets x 4 ways in L1, 1536 entries in L2.
    let po = m.mm().layout().page_offset;
    let set_stride = 16 * PAGE;
    let pages: Vec<VirtAddr> = (0..5)
        .map(|i| VirtAddr(po + MIB + i * set_stride))
        .collect();
    for p in &pages {
        assert_eq!(m.translate(*p).unwrap().page_size, PAGE);
    }
    // The first one was evicted from its L1 set by the fifth, but L2 still has it.
    assert_eq!(m.translate(pages[0]).unwrap().source, Source::L2Tlb);
    assert_eq!(m.translate(pages[0]).unwrap().source, Source::L1Tlb);
    // A 2 MiB page is cached as one entry.
    let big = VirtAddr(po + 100 * MIB);
    assert_eq!(m.translate(big).unwrap().page_size, 2 * MIB);
    assert_eq!(
        m.translate(VirtAddr(big.0 + MIB)).unwrap().source,
        Source::L1Tlb
    );
}
