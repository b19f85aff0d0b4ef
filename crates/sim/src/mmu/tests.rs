//! Unit tests of the walker, the TLBs, the shootdown and the fault wording.

use super::fault::oops_lines;
use super::*;
use kmemlab_mm::arch::pgtable::_PAGE_RW;
use kmemlab_mm::arch::pgtable::{_KERNPG_TABLE, _PAGE_PSE, I386_2LEVEL, X86_64_4LEVEL};
use kmemlab_mm::{PhysAddr, Profile, VirtAddr};
use std::cell::RefCell;
use std::collections::HashMap;

/// Page tables in a map from entry address to entry.
#[derive(Default)]
struct FakeMem {
    entries: RefCell<HashMap<u64, u64>>,
    limit: u64,
}

impl FakeMem {
    fn new() -> Self {
        FakeMem {
            entries: RefCell::default(),
            limit: 1 << 40,
        }
    }
    fn set(&self, table: u64, index: usize, size: usize, entry: u64) {
        self.entries
            .borrow_mut()
            .insert(table + (index * size) as u64, entry);
    }
}

impl PtMemory for FakeMem {
    fn read_entry(&self, table: PhysAddr, index: usize, size: usize) -> Option<u64> {
        let at = table.0 + (index * size) as u64;
        if at >= self.limit {
            return None;
        }
        Some(self.entries.borrow().get(&at).copied().unwrap_or(0))
    }
    fn below_ram_end(&self, phys: PhysAddr) -> bool {
        phys.0 < self.limit
    }
}

const PGD: u64 = 0x1000;
const KERNEL: u64 = 0x8000_0000_0000_0063 | 0x100; // P RW A D G NX
const VA: u64 = 0xffff_c900_0000_5000;

/// PGD → PUD → PMD → PTE for VA, mapping frame 0x42000.
fn x86_tables(mem: &FakeMem) {
    let m = &X86_64_4LEVEL;
    mem.set(PGD, m.levels[0].index(VA), 8, 0x2000 | _KERNPG_TABLE);
    mem.set(0x2000, m.levels[1].index(VA), 8, 0x3000 | _KERNPG_TABLE);
    mem.set(0x3000, m.levels[2].index(VA), 8, 0x4000 | _KERNPG_TABLE);
    mem.set(0x4000, m.levels[3].index(VA), 8, 0x42000 | KERNEL);
}

#[test]
fn walks_four_levels_and_large_pages() {
    let mem = FakeMem::new();
    x86_tables(&mem);
    let w = walk(&mem, &X86_64_4LEVEL, PhysAddr(PGD), VirtAddr(VA + 0x123));
    let t = w.result.unwrap();
    assert_eq!(t.phys, PhysAddr(0x42123));
    assert_eq!(t.page_size, 4096);
    assert!(t.writable);
    assert_eq!(
        w.steps.iter().map(|s| s.level).collect::<Vec<_>>(),
        ["PGD", "PUD", "PMD", "PTE"]
    );
    assert_eq!(w.steps[3].entry, 0x42000 | KERNEL);
    // A 2 MiB page one PMD slot further.
    let va2 = VA + (2 << 20);
    mem.set(
        0x3000,
        X86_64_4LEVEL.levels[2].index(va2),
        8,
        0x4000_0000 | KERNEL | _PAGE_PSE,
    );
    let t = walk(&mem, &X86_64_4LEVEL, PhysAddr(PGD), VirtAddr(va2 + 0x1234))
        .result
        .unwrap();
    assert_eq!((t.phys.0, t.page_size), (0x4000_0000 + 0x6234, 2 << 20));
    assert!(w.to_string().contains("PTE"));
}

#[test]
fn faults_on_missing_entries_and_bad_addresses() {
    let mem = FakeMem::new();
    x86_tables(&mem);
    let m = &X86_64_4LEVEL;
    let w = walk(&mem, m, PhysAddr(PGD), VirtAddr(VA + (1 << 30)));
    assert_eq!(w.result, Err(FaultReason::NotPresent { level: "PUD" }));
    assert_eq!(w.steps.len(), 2);
    let w = walk(&mem, m, PhysAddr(PGD), VirtAddr(0x0000_8000_0000_0000));
    assert_eq!(w.result, Err(FaultReason::NonCanonical));
    assert!(w.steps.is_empty());
    let w = walk(&mem, m, PhysAddr(0), VirtAddr(VA));
    assert_eq!(w.result, Err(FaultReason::NoPageTable));
    // A table pointer past the end of memory.
    mem.set(0x4000, m.levels[3].index(VA), 8, 0);
    mem.set(0x3000, m.levels[2].index(VA), 8, (1 << 41) | _KERNPG_TABLE);
    let w = walk(&mem, m, PhysAddr(PGD), VirtAddr(VA));
    assert!(matches!(
        w.result,
        Err(FaultReason::TableNotRam { level: "PTE", .. })
    ));
    // i386: 4 MiB PSE entry and above-4G addresses.
    let i = &I386_2LEVEL;
    mem.set(PGD, 768, 4, 0x0040_0000 | 0x163 | _PAGE_PSE);
    let t = walk(&mem, i, PhysAddr(PGD), VirtAddr(0xc012_3456))
        .result
        .unwrap();
    assert_eq!((t.phys.0, t.page_size), (0x0052_3456, 4 << 20));
    assert_eq!(
        walk(&mem, i, PhysAddr(PGD), VirtAddr(1 << 32)).result,
        Err(FaultReason::NonCanonical)
    );
}

#[test]
fn corrupted_entries_fault_and_are_never_cached() {
    let mem = FakeMem::new();
    x86_tables(&mem);
    let m = &X86_64_4LEVEL;
    let mmu = Mmu::new(1, Profile::X86_64);
    let tr = |va| mmu.translate(0, &mem, m, PhysAddr(PGD), VirtAddr(va), Access::Read);
    // A bit above MAXPHYADDR in the PMD entry.
    mem.set(
        0x3000,
        m.levels[2].index(VA),
        8,
        (1 << 47) | 0x4000 | _KERNPG_TABLE,
    );
    assert_eq!(tr(VA), Err(FaultReason::ReservedBits { level: "PMD" }));
    // PS in the top level.
    mem.set(0x3000, m.levels[2].index(VA), 8, 0x4000 | _KERNPG_TABLE);
    let pgd_slot = m.levels[0].index(VA);
    mem.set(PGD, pgd_slot, 8, 0x2000 | _KERNPG_TABLE | _PAGE_PSE);
    assert_eq!(tr(VA), Err(FaultReason::ReservedBits { level: "PGD" }));
    // A 2 MiB leaf with a frame bit below its alignment.
    mem.set(PGD, pgd_slot, 8, 0x2000 | _KERNPG_TABLE);
    let va2 = VA + (2 << 20);
    let slot = m.levels[2].index(va2);
    mem.set(0x3000, slot, 8, 0x4000_0000 | 0x2000 | KERNEL | _PAGE_PSE);
    assert_eq!(tr(va2), Err(FaultReason::ReservedBits { level: "PMD" }));
    // A leaf whose frame is past the end of memory.
    mem.set(0x4000, m.levels[3].index(VA), 8, (1 << 41) | KERNEL);
    assert!(matches!(tr(VA), Err(FaultReason::NotRam { .. })));
    assert_eq!(mmu.stats(0).l1_hits + mmu.stats(0).l2_hits, 0);
    let f = PageFault {
        vaddr: VirtAddr(VA),
        access: Access::Read,
        cpu: 0,
        reason: FaultReason::ReservedBits { level: "PMD" },
        addr_bits: 64,
    };
    assert_eq!(f.error_code(), X86_PF_PROT | X86_PF_RSVD);
    assert_eq!(f.error_text(), "reserved bit violation");
}

#[test]
fn tlb_hits_after_a_walk_and_stays_stale_until_flushed() {
    let mem = FakeMem::new();
    x86_tables(&mem);
    let mmu = Mmu::new(2, Profile::X86_64);
    let m = &X86_64_4LEVEL;
    let tr = |cpu, va| mmu.translate(cpu, &mem, m, PhysAddr(PGD), VirtAddr(va), Access::Read);
    assert_eq!(tr(0, VA).unwrap().source, Source::PageWalk);
    assert_eq!(tr(0, VA + 8).unwrap().source, Source::L1Tlb);
    assert_eq!(tr(1, VA).unwrap().source, Source::PageWalk);
    let s = mmu.stats(0);
    assert_eq!((s.misses, s.l1_hits, s.l2_hits), (1, 1, 0));
    // The kernel clears the PTE: both CPUs still translate through their TLBs.
    mem.set(0x4000, m.levels[3].index(VA), 8, 0);
    assert_eq!(tr(0, VA).unwrap().phys, PhysAddr(0x42000));
    assert_eq!(tr(1, VA).unwrap().phys, PhysAddr(0x42000));
    // A shootdown of that page reaches every CPU.
    mmu.flush_tlb_kernel_range(VA, VA + 4096);
    assert_eq!(tr(0, VA), Err(FaultReason::NotPresent { level: "PTE" }));
    assert_eq!(tr(1, VA), Err(FaultReason::NotPresent { level: "PTE" }));
    // Not-present translations are not cached: mapping it again is seen at once.
    mem.set(0x4000, m.levels[3].index(VA), 8, 0x77000 | KERNEL);
    assert_eq!(tr(0, VA).unwrap().phys, PhysAddr(0x77000));
    let f = mmu.flush_stats();
    assert_eq!(
        (f.shootdowns, f.ipis, f.full_flushes, f.pages_invalidated),
        (1, 1, 0, 1)
    );
    assert_eq!(mmu.stats(1).single_page_flushes, 1);
    assert_eq!(mmu.stats(1).entries_flushed, 2, "L1 and L2 copies");
}

#[test]
fn l2_catches_l1_evictions_and_lru_keeps_the_hot_entry() {
    let mem = FakeMem::new();
    let m = &X86_64_4LEVEL;
    // 4096 consecutive 4 KiB pages under one PMD... spread over 8 PTE tables.
    let base = 0xffff_8880_0000_0000u64;
    mem.set(PGD, m.levels[0].index(base), 8, 0x2000 | _KERNPG_TABLE);
    mem.set(0x2000, 0, 8, 0x3000 | _KERNPG_TABLE);
    for pmd in 0..8 {
        mem.set(
            0x3000,
            pmd,
            8,
            (0x10_0000 + pmd as u64 * 0x1000) | _KERNPG_TABLE,
        );
        for pte in 0..512 {
            let frame = ((pmd * 512 + pte) as u64) << 12;
            mem.set(0x10_0000 + pmd as u64 * 0x1000, pte, 8, frame | KERNEL);
        }
    }
    let mmu = Mmu::new(1, Profile::X86_64);
    let tr = |va| {
        mmu.translate(0, &mem, m, PhysAddr(PGD), VirtAddr(va), Access::Read)
            .unwrap()
    };
    // 16 sets x 4 ways in L1: five pages of one set evict the least recent.
    let stride = 16 * 4096;
    for i in 0..4 {
        tr(base + i * stride);
    }
    tr(base); // page 0 becomes most recent
    tr(base + 4 * stride); // evicts page 1 from L1
    assert_eq!(tr(base).source, Source::L1Tlb);
    assert_eq!(tr(base + stride).source, Source::L2Tlb);
    assert_eq!(tr(base + stride).source, Source::L1Tlb);
    // Touch 4096 pages: more than L2 holds, so the first ones miss again.
    for p in 0..4096 {
        tr(base + p * 4096);
    }
    let before = mmu.stats(0).misses;
    tr(base + 4096 * 3);
    assert_eq!(mmu.stats(0).misses, before + 1);
}

#[test]
fn ceiling_switches_to_a_full_flush() {
    let mem = FakeMem::new();
    x86_tables(&mem);
    let mmu = Mmu::new(4, Profile::X86_64);
    let m = &X86_64_4LEVEL;
    for cpu in 0..4 {
        mmu.translate(cpu, &mem, m, PhysAddr(PGD), VirtAddr(VA), Access::Read)
            .unwrap();
    }
    mmu.flush_tlb_kernel_range(VA, VA + 33 * 4096);
    let f = mmu.flush_stats();
    assert_eq!((f.full_flushes, f.pages_invalidated, f.ipis), (0, 33, 3));
    assert_eq!(mmu.stats(2).single_page_flushes, 33);
    mmu.flush_tlb_kernel_range(VA, VA + 34 * 4096);
    let f = mmu.flush_stats();
    assert_eq!((f.shootdowns, f.full_flushes, f.ipis), (2, 1, 6));
    assert_eq!(mmu.stats(3).full_flushes, 1);
    mmu.flush_tlb_kernel_range(0, TLB_FLUSH_ALL);
    assert_eq!(mmu.flush_stats().full_flushes, 2);
    // Silly ranges do not panic.
    mmu.flush_tlb_kernel_range(u64::MAX - 4096, u64::MAX - 1);
    mmu.flush_tlb_kernel_range(10 << 20, 0);
}

#[test]
fn write_through_read_only_faults_and_drops_the_entry() {
    let mem = FakeMem::new();
    x86_tables(&mem);
    let m = &X86_64_4LEVEL;
    mem.set(
        0x4000,
        m.levels[3].index(VA),
        8,
        0x42000 | (KERNEL & !_PAGE_RW),
    );
    let mmu = Mmu::new(1, Profile::X86_64);
    let tr = |a| mmu.translate(0, &mem, m, PhysAddr(PGD), VirtAddr(VA), a);
    assert!(!tr(Access::Read).unwrap().writable);
    assert_eq!(tr(Access::Write), Err(FaultReason::ReadOnly));
    // The fault dropped the cached entry: the next read walks again.
    assert_eq!(tr(Access::Read).unwrap().source, Source::PageWalk);
    let f = PageFault {
        vaddr: VirtAddr(VA),
        access: Access::Write,
        cpu: 0,
        reason: FaultReason::ReadOnly,
        addr_bits: 64,
    };
    assert_eq!(f.error_code(), 3);
    assert_eq!(f.error_text(), "permissions violation");
}

#[test]
fn oops_wording_follows_show_fault_oops() {
    let mem = FakeMem::new();
    x86_tables(&mem);
    let va = VirtAddr(VA + (1 << 30));
    let w = walk(&mem, &X86_64_4LEVEL, PhysAddr(PGD), va);
    let f = PageFault {
        vaddr: va,
        access: Access::Write,
        cpu: 1,
        reason: w.result.unwrap_err(),
        addr_bits: 64,
    };
    let lines = oops_lines(&f, &w, Profile::X86_64, 1);
    assert_eq!(
        lines[0],
        "BUG: unable to handle page fault for address: ffffc90040005000"
    );
    assert_eq!(lines[1], "#PF: supervisor write access in kernel mode");
    assert_eq!(lines[2], "#PF: error_code(0x0002) - not-present page");
    assert_eq!(lines[3], "PGD 2063 P4D 2063 PUD 0 ");
    assert_eq!(lines[4], "Oops: 0002 [#1] PREEMPT SMP NOPTI");
    let null = PageFault {
        vaddr: VirtAddr(8),
        access: Access::Read,
        cpu: 0,
        reason: FaultReason::NotPresent { level: "PDE" },
        addr_bits: 32,
    };
    let w = Walk {
        vaddr: VirtAddr(8),
        steps: vec![WalkStep {
            level: "PGD",
            table: PhysAddr(PGD),
            index: 0,
            entry: 0,
        }],
        result: Err(null.reason),
    };
    let lines = oops_lines(&null, &w, Profile::I386, 2);
    assert_eq!(
        lines[0],
        "BUG: kernel NULL pointer dereference, address: 00000008"
    );
    assert_eq!(lines[2], "#PF: error_code(0x0000) - not-present page");
    assert_eq!(lines[3], "*pde = 00000000 ");
    assert_eq!(lines[4], "Oops: 0000 [#2] PREEMPT SMP");
    assert!(f.to_string().contains("not-present page"));
}
