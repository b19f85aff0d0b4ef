//! The page walker: x86 page-table entries read out of simulated RAM, level by level
//! (the hardware walk on a TLB miss), and the translation or fault reason it yields.

use std::fmt;

use kmemlab_mm::arch::pgtable::{entry_flag_names, PagingMode, _PAGE_PRESENT, _PAGE_RW};
use kmemlab_mm::{Mm, PhysAddr, VirtAddr};

use crate::machine::SimPlatform;

/// Reads page-table entries out of physical memory for the walker.
pub trait PtMemory {
    /// Entry `index` (of `entry_size` bytes, 4 or 8) of the table at `table`, read with one
    /// atomic load; `None` if that entry is not in RAM.
    fn read_entry(&self, table: PhysAddr, index: usize, entry_size: usize) -> Option<u64>;

    /// Is `phys` below the end of the machine's memory? A leaf that maps a frame past it
    /// is corrupted, and the walk faults.
    fn below_ram_end(&self, phys: PhysAddr) -> bool;
}

/// The kernel's page tables in the machine's RAM, read through the kernel's door
/// (`Mm::peek_pt_entry`: a table that is not a page of RAM is refused, never touched).
pub struct RamTables<'a> {
    mm: &'a Mm<SimPlatform>,
}

impl<'a> RamTables<'a> {
    /// The tables of `mm`.
    pub fn new(mm: &'a Mm<SimPlatform>) -> Self {
        RamTables { mm }
    }
}

impl PtMemory for RamTables<'_> {
    fn read_entry(&self, table: PhysAddr, index: usize, entry_size: usize) -> Option<u64> {
        if entry_size != self.mm.paging().entry_size {
            return None;
        }
        self.mm.peek_pt_entry(table, index).ok()
    }

    fn below_ram_end(&self, phys: PhysAddr) -> bool {
        phys.0 < self.mm.platform().ram().span()
    }
}

/// One level of a walk: the table read, the slot, and what was in it.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct WalkStep {
    /// The level's name (`PGD`, `PUD`, `PMD`, `PTE`).
    pub level: &'static str,
    /// The physical address of the table.
    pub table: PhysAddr,
    /// The slot of the address in that table.
    pub index: usize,
    /// The raw entry.
    pub entry: u64,
}

/// Where a translation came from.
#[derive(Copy, Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub enum Source {
    /// A hit in the L1 DTLB.
    L1Tlb,
    /// A hit in the L2 STLB.
    L2Tlb,
    /// A page walk.
    PageWalk,
}

/// A virtual address translated.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct Translation {
    /// The address translated.
    pub vaddr: VirtAddr,
    /// The physical address behind it.
    pub phys: PhysAddr,
    /// The size of the page that maps it: 4 KiB, 2 MiB, 4 MiB or 1 GiB.
    pub page_size: u64,
    /// The leaf entry's bits (frame included), as the walk found them or the TLB cached them.
    pub entry: u64,
    /// Whether a write is allowed (`_PAGE_RW` at every level).
    pub writable: bool,
    /// TLB hit or page walk.
    pub source: Source,
}

impl Translation {
    /// The physical address of the first byte of the page.
    pub fn page_phys(&self) -> PhysAddr {
        PhysAddr(self.phys.0 & !(self.page_size - 1))
    }
}

/// Why an address could not be accessed.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum FaultReason {
    /// Not a canonical x86_64 address (or above 4 GiB on i386): the CPU raises #GP.
    NonCanonical,
    /// No top-level table (CR3 is 0).
    NoPageTable,
    /// The entry at this level is not present.
    NotPresent {
        /// The level's name.
        level: &'static str,
    },
    /// A write to a page that is not writable.
    ReadOnly,
    /// A table entry points outside RAM.
    TableNotRam {
        /// The level whose table could not be read.
        level: &'static str,
        /// The table's physical address.
        table: PhysAddr,
    },
    /// The entry at this level has bits set that must be zero (above `MAXPHYADDR`, `PS`
    /// in a PML4E, inside a large page's frame): the CPU's reserved-bit violation.
    ReservedBits {
        /// The level's name.
        level: &'static str,
    },
    /// The translation points outside RAM (a hole, or past the end).
    NotRam {
        /// The physical address.
        phys: PhysAddr,
    },
}

/// A walk of the page tables for one address, level by level (no TLB involved).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Walk {
    /// The address walked.
    pub vaddr: VirtAddr,
    /// The entries read, top level first.
    pub steps: Vec<WalkStep>,
    /// The translation, or why there is none.
    pub result: Result<Translation, FaultReason>,
}

impl fmt::Display for Walk {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "walk {:#x}", self.vaddr.0)?;
        for s in &self.steps {
            write!(
                f,
                "  {:<4} table {:#012x} [{:>4}] = {:#018x}",
                s.level, s.table.0, s.index, s.entry
            )?;
            let flags: Vec<&str> = entry_flag_names(s.entry).collect();
            if flags.is_empty() {
                writeln!(f, "  (none)")?;
            } else {
                writeln!(f, "  {}", flags.join(" "))?;
            }
        }
        match &self.result {
            Ok(t) => write!(
                f,
                "  -> {:#x} ({} page at {:#x}, {})",
                t.phys.0,
                page_size_name(t.page_size),
                t.page_phys().0,
                if t.writable { "writable" } else { "read-only" }
            ),
            Err(r) => write!(f, "  -> fault: {}", reason_text(r)),
        }
    }
}

/// `4K`, `2M`, `4M`, `1G`.
pub fn page_size_name(size: u64) -> &'static str {
    match size {
        0x1000 => "4K",
        0x20_0000 => "2M",
        0x40_0000 => "4M",
        0x4000_0000 => "1G",
        _ => "?",
    }
}

pub(super) fn reason_text(r: &FaultReason) -> String {
    match r {
        FaultReason::NonCanonical => "non-canonical address".to_string(),
        FaultReason::NoPageTable => "no page table (CR3 is 0)".to_string(),
        FaultReason::NotPresent { level } => format!("{level} entry not present"),
        FaultReason::ReservedBits { level } => format!("{level} entry has reserved bits set"),
        FaultReason::ReadOnly => "write to a read-only page".to_string(),
        FaultReason::TableNotRam { level, table } => {
            format!("{level} table at {:#x} is not RAM", table.0)
        }
        FaultReason::NotRam { phys } => format!("physical address {:#x} is not RAM", phys.0),
    }
}

/// Walk `mode`'s tables from `pgd` for `va`, as the MMU's page walker does on a TLB miss:
/// one entry per level, stopping at a not-present entry or a leaf (a 4 KiB entry, or a
/// `_PAGE_PSE` entry where the level allows large pages).
pub fn walk(mem: &impl PtMemory, mode: &PagingMode, pgd: PhysAddr, va: VirtAddr) -> Walk {
    let mut steps = Vec::with_capacity(mode.levels.len());
    let result = walk_into(mem, mode, pgd, va, &mut steps);
    Walk {
        vaddr: va,
        steps,
        result,
    }
}

fn walk_into(
    mem: &impl PtMemory,
    mode: &PagingMode,
    pgd: PhysAddr,
    va: VirtAddr,
    steps: &mut Vec<WalkStep>,
) -> Result<Translation, FaultReason> {
    if !mode.is_canonical(va.0) {
        return Err(FaultReason::NonCanonical);
    }
    if pgd.0 == 0 {
        return Err(FaultReason::NoPageTable);
    }
    let mut table = pgd;
    let mut writable = true;
    for (level, l) in mode.levels.iter().enumerate() {
        let index = l.index(va.0);
        let entry =
            mem.read_entry(table, index, mode.entry_size)
                .ok_or(FaultReason::TableNotRam {
                    level: l.name,
                    table,
                })?;
        steps.push(WalkStep {
            level: l.name,
            table,
            index,
            entry,
        });
        if entry & _PAGE_PRESENT == 0 {
            return Err(FaultReason::NotPresent { level: l.name });
        }
        if mode.reserved_bits(level, entry) != 0 {
            return Err(FaultReason::ReservedBits { level: l.name });
        }
        writable &= entry & _PAGE_RW != 0;
        let frame = mode.entry_frame(level, entry);
        if mode.is_leaf(level, entry) {
            let span = l.entry_span();
            let phys = PhysAddr(frame | (va.0 & (span - 1)));
            if !mem.below_ram_end(phys) {
                // A frame past the end of memory: a corrupted leaf. (A leaf over a hole
                // below the end, as the direct map's ISA range has, is a real mapping;
                // its accesses are checked page by page.)
                return Err(FaultReason::NotRam { phys });
            }
            return Ok(Translation {
                vaddr: va,
                phys,
                page_size: span,
                entry,
                writable,
                source: Source::PageWalk,
            });
        }
        table = PhysAddr(frame);
    }
    // A format whose last level is not a leaf cannot happen; say "not present" rather
    // than panic.
    Err(FaultReason::NotPresent {
        level: mode.levels.last().map_or("PTE", |l| l.name),
    })
}
