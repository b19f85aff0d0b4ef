//! The simulated MMU: a page-table walker that reads the kernel's real x86 entries out of
//! simulated RAM, per-CPU TLBs in front of it, the kernel's TLB shootdown
//! (`flush_tlb_kernel_range`, `arch/x86/mm/tlb.c`), and page faults reported as
//! `arch/x86/mm/fault.c` reports them.
//!
//! Every access goes to the accessing CPU's TLB first and walks the tables only on a miss,
//! as the hardware does. So a CPU that holds a translation keeps using it after the kernel
//! clears the entry, until a flush reaches that CPU: exactly why the kernel must flush
//! before it reuses a freed virtual range (vmalloc's lazy purge batches those flushes).
//! Translations of not-present entries are never cached.
//!
//! The TLB geometry is a modern Intel core's data side: an L1 DTLB of 64 entries (4-way)
//! for 4 KiB pages, 32 entries (4-way) for 2 MiB / 4 MiB pages and 4 fully associative
//! entries for 1 GiB pages, backed by a unified 12-way L2 STLB of 1536 entries holding
//! 4 KiB and 2 MiB / 4 MiB translations; replacement is LRU within a set. Kernel mappings
//! are global, so only a full flush (CR4.PGE toggle, `__flush_tlb_all`) or `INVLPG`
//! removes them.

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard};

use kmemlab_mm::arch::pgtable::{entry_flag_names, PagingMode, _PAGE_PRESENT, _PAGE_RW};
use kmemlab_mm::{Mm, PhysAddr, Platform, Profile, VirtAddr, PAGE_SIZE};

use crate::machine::{Machine, SimPlatform};

/// `tlb_single_page_flush_ceiling`: a kernel range flush of more pages than this flushes
/// the whole TLB instead of invalidating page by page.
pub const TLB_SINGLE_PAGE_FLUSH_CEILING: u64 = 33;
/// `TLB_FLUSH_ALL`: an end address meaning "everything".
pub const TLB_FLUSH_ALL: u64 = u64::MAX;

/// L1 DTLB for 4 KiB pages: entries and ways.
pub const L1_4K: (usize, usize) = (64, 4);
/// L1 DTLB for 2 MiB (x86_64) or 4 MiB (i386) pages: entries and ways.
pub const L1_LARGE: (usize, usize) = (32, 4);
/// L1 DTLB for 1 GiB pages: entries and ways (fully associative).
pub const L1_1G: (usize, usize) = (4, 4);
/// The unified L2 STLB (4 KiB and 2 MiB / 4 MiB pages): entries and ways.
pub const L2_STLB: (usize, usize) = (1536, 12);

// Page-fault error code bits (`enum x86_pf_error_code`).
/// The fault was a protection violation, not a missing page (`X86_PF_PROT`).
pub const X86_PF_PROT: u64 = 1 << 0;
/// The access was a write (`X86_PF_WRITE`).
pub const X86_PF_WRITE: u64 = 1 << 1;
/// The access came from user mode (`X86_PF_USER`); never set here.
pub const X86_PF_USER: u64 = 1 << 2;
/// A reserved bit was set in a paging-structure entry (`X86_PF_RSVD`).
pub const X86_PF_RSVD: u64 = 1 << 3;

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

fn reason_text(r: &FaultReason) -> String {
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

/// Per-CPU TLB counters.
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct TlbStats {
    /// Translations found in the L1 DTLB.
    pub l1_hits: u64,
    /// Translations found in the L2 STLB (after an L1 miss).
    pub l2_hits: u64,
    /// Misses in both levels: page walks.
    pub misses: u64,
    /// Valid entries removed by flushes.
    pub entries_flushed: u64,
    /// Whole-TLB flushes, global entries included.
    pub full_flushes: u64,
    /// Single-page invalidations (`INVLPG`).
    pub single_page_flushes: u64,
}

impl std::ops::AddAssign for TlbStats {
    fn add_assign(&mut self, o: TlbStats) {
        self.l1_hits += o.l1_hits;
        self.l2_hits += o.l2_hits;
        self.misses += o.misses;
        self.entries_flushed += o.entries_flushed;
        self.full_flushes += o.full_flushes;
        self.single_page_flushes += o.single_page_flushes;
    }
}

/// Machine-wide TLB shootdown counters (`flush_tlb_kernel_range` calls).
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct TlbFlushStats {
    /// Calls of `flush_tlb_kernel_range`: one shootdown each, on every CPU.
    pub shootdowns: u64,
    /// Inter-processor interrupts sent: `nr_cpus - 1` per shootdown.
    pub ipis: u64,
    /// Shootdowns that flushed everything (more than the ceiling's 33 pages).
    pub full_flushes: u64,
    /// Pages invalidated one by one by the other shootdowns (counted once per shootdown,
    /// not once per CPU).
    pub pages_invalidated: u64,
}

/// A TLB entry found by [`Mmu::tlb_probe`].
#[derive(Copy, Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct TlbProbe {
    /// `"L1"` or `"L2"`.
    pub level: &'static str,
    /// The physical address of the page it maps (possibly stale).
    pub frame: u64,
    /// The page size of the entry.
    pub page_size: u64,
    /// Whether it allows writes.
    pub writable: bool,
}

/// Valid entries and capacity of one CPU's TLB arrays.
#[derive(Copy, Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct TlbOccupancy {
    /// L1 for 4 KiB pages.
    pub l1_4k: (usize, usize),
    /// L1 for large (2 MiB / 4 MiB) pages.
    pub l1_large: (usize, usize),
    /// L1 for 1 GiB pages.
    pub l1_1g: (usize, usize),
    /// The shared second-level TLB.
    pub l2: (usize, usize),
}

/// One cached translation.
#[derive(Copy, Clone, Debug)]
struct TlbEntry {
    /// The virtual page number at this entry's page size.
    vpn: u64,
    /// log2 of the page size.
    shift: u32,
    /// The leaf entry (frame and bits).
    entry: u64,
    /// The physical address of the page.
    frame: u64,
    writable: bool,
    /// Last use, for LRU.
    stamp: u64,
}

/// A set-associative array of entries for the page sizes in `shifts`.
struct SetAssoc {
    sets: usize,
    ways: usize,
    shifts: Vec<u32>,
    slots: Vec<Option<TlbEntry>>,
}

impl SetAssoc {
    fn new((entries, ways): (usize, usize), shifts: &[u32]) -> Self {
        SetAssoc {
            sets: (entries / ways).max(1),
            ways,
            shifts: shifts.to_vec(),
            slots: vec![None; entries],
        }
    }

    fn set(&mut self, vpn: u64) -> &mut [Option<TlbEntry>] {
        let s = (vpn % self.sets as u64) as usize;
        &mut self.slots[s * self.ways..(s + 1) * self.ways]
    }

    fn holds(&self, shift: u32) -> bool {
        self.shifts.contains(&shift)
    }

    /// Look `va` up at every page size this array holds; a hit becomes most recent.
    fn lookup(&mut self, va: u64, stamp: u64) -> Option<TlbEntry> {
        for i in 0..self.shifts.len() {
            let shift = self.shifts[i];
            let vpn = va >> shift;
            for e in self.set(vpn).iter_mut().flatten() {
                if e.shift == shift && e.vpn == vpn {
                    e.stamp = stamp;
                    return Some(*e);
                }
            }
        }
        None
    }

    /// Insert, replacing the same page's entry, else a free way, else the least recent.
    fn insert(&mut self, new: TlbEntry) {
        let set = self.set(new.vpn);
        let slot = set
            .iter()
            .position(|s| s.is_some_and(|e| e.shift == new.shift && e.vpn == new.vpn))
            .or_else(|| set.iter().position(Option::is_none))
            .unwrap_or_else(|| {
                set.iter()
                    .enumerate()
                    .min_by_key(|(_, s)| s.map_or(0, |e| e.stamp))
                    .map_or(0, |(i, _)| i)
            });
        set[slot] = Some(new);
    }

    /// `INVLPG va`: drop every entry, of any size, that maps `va`. Returns how many.
    fn invalidate(&mut self, va: u64) -> u64 {
        let mut n = 0;
        for i in 0..self.shifts.len() {
            let shift = self.shifts[i];
            let vpn = va >> shift;
            for s in self.set(vpn).iter_mut() {
                if s.is_some_and(|e| e.shift == shift && e.vpn == vpn) {
                    *s = None;
                    n += 1;
                }
            }
        }
        n
    }

    /// Look `va` up without making the hit most recent (for views: a look changes nothing).
    fn peek(&self, va: u64) -> Option<TlbEntry> {
        self.shifts.iter().find_map(|&shift| {
            let vpn = va >> shift;
            let s = (vpn % self.sets as u64) as usize;
            self.slots[s * self.ways..(s + 1) * self.ways]
                .iter()
                .flatten()
                .find(|e| e.shift == shift && e.vpn == vpn)
                .copied()
        })
    }

    /// Valid entries and capacity.
    fn occupancy(&self) -> (usize, usize) {
        (
            self.slots.iter().filter(|s| s.is_some()).count(),
            self.slots.len(),
        )
    }

    fn clear(&mut self) -> u64 {
        let n = self.slots.iter().filter(|s| s.is_some()).count() as u64;
        self.slots.iter_mut().for_each(|s| *s = None);
        n
    }
}

/// One CPU's TLBs and counters.
struct CpuTlb {
    l1_4k: SetAssoc,
    l1_large: SetAssoc,
    l1_1g: SetAssoc,
    l2: SetAssoc,
    clock: u64,
    stats: TlbStats,
}

impl CpuTlb {
    fn new(large_shift: u32) -> Self {
        CpuTlb {
            l1_4k: SetAssoc::new(L1_4K, &[12]),
            l1_large: SetAssoc::new(L1_LARGE, &[large_shift]),
            l1_1g: SetAssoc::new(L1_1G, &[30]),
            l2: SetAssoc::new(L2_STLB, &[12, large_shift]),
            clock: 0,
            stats: TlbStats::default(),
        }
    }

    fn l1_for(&mut self, shift: u32) -> Option<&mut SetAssoc> {
        [&mut self.l1_4k, &mut self.l1_large, &mut self.l1_1g]
            .into_iter()
            .find(|a| a.holds(shift))
    }

    /// Probe L1, then L2 (filling L1 on an L2 hit); counts hits, not misses.
    fn lookup(&mut self, va: u64) -> Option<(TlbEntry, Source)> {
        self.clock += 1;
        let stamp = self.clock;
        for a in [&mut self.l1_4k, &mut self.l1_large, &mut self.l1_1g] {
            if let Some(e) = a.lookup(va, stamp) {
                self.stats.l1_hits += 1;
                return Some((e, Source::L1Tlb));
            }
        }
        let e = self.l2.lookup(va, stamp)?;
        self.stats.l2_hits += 1;
        if let Some(l1) = self.l1_for(e.shift) {
            l1.insert(e);
        }
        Some((e, Source::L2Tlb))
    }

    /// Cache a walk's translation in L1 and (but for 1 GiB pages) in L2.
    fn fill(&mut self, t: &Translation) {
        let shift = t.page_size.trailing_zeros();
        let e = TlbEntry {
            vpn: t.vaddr.0 >> shift,
            shift,
            entry: t.entry,
            frame: t.page_phys().0,
            writable: t.writable,
            stamp: self.clock,
        };
        if let Some(l1) = self.l1_for(shift) {
            l1.insert(e);
        }
        if self.l2.holds(shift) {
            self.l2.insert(e);
        }
    }

    fn invlpg(&mut self, va: u64) {
        let mut n = 0;
        for a in [
            &mut self.l1_4k,
            &mut self.l1_large,
            &mut self.l1_1g,
            &mut self.l2,
        ] {
            n += a.invalidate(va);
        }
        self.stats.single_page_flushes += 1;
        self.stats.entries_flushed += n;
    }

    fn flush_all(&mut self) {
        let mut n = 0;
        for a in [
            &mut self.l1_4k,
            &mut self.l1_large,
            &mut self.l1_1g,
            &mut self.l2,
        ] {
            n += a.clear();
        }
        self.stats.full_flushes += 1;
        self.stats.entries_flushed += n;
    }
}

/// The machine's MMU state: one TLB per CPU (each behind a lock, since shootdowns come
/// from other host threads) and the shootdown and fault counters.
pub struct Mmu {
    cpus: Vec<Mutex<CpuTlb>>,
    shootdowns: AtomicU64,
    ipis: AtomicU64,
    full_flushes: AtomicU64,
    pages_invalidated: AtomicU64,
    faults: AtomicU64,
    die_counter: AtomicU64,
}

/// How a CPU touched memory.
#[derive(Copy, Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub enum Access {
    /// A load.
    Read,
    /// A store.
    Write,
}

impl Mmu {
    /// TLBs for `nr_cpus` CPUs of `profile` (2 MiB large pages on x86_64, 4 MiB on i386).
    pub fn new(nr_cpus: usize, profile: Profile) -> Mmu {
        let large_shift = match profile {
            Profile::X86_64 => 21,
            Profile::I386 => 22,
        };
        Mmu {
            cpus: (0..nr_cpus)
                .map(|_| Mutex::new(CpuTlb::new(large_shift)))
                .collect(),
            shootdowns: AtomicU64::new(0),
            ipis: AtomicU64::new(0),
            full_flushes: AtomicU64::new(0),
            pages_invalidated: AtomicU64::new(0),
            faults: AtomicU64::new(0),
            die_counter: AtomicU64::new(0),
        }
    }

    fn tlb(&self, cpu: usize) -> Option<MutexGuard<'_, CpuTlb>> {
        // A poisoned lock only means a panic elsewhere; the TLB itself is still consistent
        // (every update is a whole-entry store).
        self.cpus
            .get(cpu)
            .map(|m| m.lock().unwrap_or_else(|e| e.into_inner()))
    }

    /// Whether `cpu`'s TLBs hold a translation of `va`, and where (L1 first, then L2),
    /// without touching the LRU order or the counters: a look for a view changes nothing.
    pub fn tlb_probe(&self, cpu: usize, va: VirtAddr) -> Option<TlbProbe> {
        let tlb = self.tlb(cpu)?;
        let l1 = [&tlb.l1_4k, &tlb.l1_large, &tlb.l1_1g]
            .into_iter()
            .find_map(|a| a.peek(va.0))
            .map(|e| (e, "L1"));
        let (e, level) = l1.or_else(|| tlb.l2.peek(va.0).map(|e| (e, "L2")))?;
        Some(TlbProbe {
            level,
            frame: e.frame,
            page_size: 1u64 << e.shift,
            writable: e.writable,
        })
    }

    /// How full `cpu`'s TLBs are: valid entries and capacity of L1 (4 KiB, large, 1 GiB)
    /// and L2.
    pub fn tlb_occupancy(&self, cpu: usize) -> Option<TlbOccupancy> {
        let tlb = self.tlb(cpu)?;
        Some(TlbOccupancy {
            l1_4k: tlb.l1_4k.occupancy(),
            l1_large: tlb.l1_large.occupancy(),
            l1_1g: tlb.l1_1g.occupancy(),
            l2: tlb.l2.occupancy(),
        })
    }

    /// Translate `va` for an `access` by `cpu`: its TLB first, then a walk of the tables
    /// from `pgd` (cached on success). A write through a read-only translation faults and
    /// drops that translation, as the hardware does on a fault.
    pub fn translate(
        &self,
        cpu: usize,
        mem: &impl PtMemory,
        mode: &PagingMode,
        pgd: PhysAddr,
        va: VirtAddr,
        access: Access,
    ) -> Result<Translation, FaultReason> {
        let Some(mut tlb) = self.tlb(cpu) else {
            // No such CPU: translate without a TLB.
            return walk(mem, mode, pgd, va).result;
        };
        if let Some((e, source)) = tlb.lookup(va.0) {
            let size = 1u64 << e.shift;
            if access == Access::Write && !e.writable {
                tlb.invlpg(va.0);
                return Err(FaultReason::ReadOnly);
            }
            return Ok(Translation {
                vaddr: va,
                phys: PhysAddr(e.frame | (va.0 & (size - 1))),
                page_size: size,
                entry: e.entry,
                writable: e.writable,
                source,
            });
        }
        tlb.stats.misses += 1;
        let t = walk(mem, mode, pgd, va).result?;
        if access == Access::Write && !t.writable {
            return Err(FaultReason::ReadOnly);
        }
        tlb.fill(&t);
        Ok(t)
    }

    /// `flush_tlb_kernel_range(start, end)` (`arch/x86/mm/tlb.c`): on every CPU, a full
    /// flush (`do_flush_tlb_all`) if the range is `TLB_FLUSH_ALL` or more than
    /// [`TLB_SINGLE_PAGE_FLUSH_CEILING`] pages, else one `INVLPG` per page
    /// (`do_kernel_range_flush`). One shootdown, `nr_cpus - 1` IPIs (`on_each_cpu`
    /// runs the local CPU's part directly).
    pub fn flush_tlb_kernel_range(&self, start: u64, end: u64) {
        self.shootdowns.fetch_add(1, Ordering::Relaxed);
        self.ipis
            .fetch_add(self.cpus.len().saturating_sub(1) as u64, Ordering::Relaxed);
        let page = PAGE_SIZE as u64;
        let full = end == TLB_FLUSH_ALL
            || end.saturating_sub(start) > TLB_SINGLE_PAGE_FLUSH_CEILING * page;
        if full {
            self.full_flushes.fetch_add(1, Ordering::Relaxed);
            for cpu in 0..self.cpus.len() {
                if let Some(mut t) = self.tlb(cpu) {
                    t.flush_all();
                }
            }
            return;
        }
        let mut pages = 0;
        for cpu in 0..self.cpus.len() {
            if let Some(mut t) = self.tlb(cpu) {
                let mut addr = start;
                pages = 0;
                while addr < end {
                    t.invlpg(addr);
                    pages += 1;
                    addr = match addr.checked_add(page) {
                        Some(a) => a,
                        None => break,
                    };
                }
            }
        }
        self.pages_invalidated.fetch_add(pages, Ordering::Relaxed);
    }

    /// `__flush_tlb_all()` on one CPU.
    pub fn flush_all(&self, cpu: usize) {
        if let Some(mut t) = self.tlb(cpu) {
            t.flush_all();
        }
    }

    /// `INVLPG va` on one CPU.
    pub fn invlpg(&self, cpu: usize, va: VirtAddr) {
        if let Some(mut t) = self.tlb(cpu) {
            t.invlpg(va.0);
        }
    }

    /// `cpu`'s TLB counters (zero for a CPU that does not exist).
    pub fn stats(&self, cpu: usize) -> TlbStats {
        self.tlb(cpu).map(|t| t.stats).unwrap_or_default()
    }

    /// The TLB counters summed over all CPUs.
    pub fn stats_total(&self) -> TlbStats {
        let mut sum = TlbStats::default();
        for cpu in 0..self.cpus.len() {
            sum += self.stats(cpu);
        }
        sum
    }

    /// The shootdown counters.
    pub fn flush_stats(&self) -> TlbFlushStats {
        TlbFlushStats {
            shootdowns: self.shootdowns.load(Ordering::Relaxed),
            ipis: self.ipis.load(Ordering::Relaxed),
            full_flushes: self.full_flushes.load(Ordering::Relaxed),
            pages_invalidated: self.pages_invalidated.load(Ordering::Relaxed),
        }
    }

    /// Faults reported so far.
    pub fn faults(&self) -> u64 {
        self.faults.load(Ordering::Relaxed)
    }
}

/// A kernel access that could not complete: a page fault (or, for a non-canonical
/// address, a general protection fault), or a translation that leads outside RAM.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct PageFault {
    /// The faulting address (CR2).
    pub vaddr: VirtAddr,
    /// Load or store.
    pub access: Access,
    /// The CPU that faulted.
    pub cpu: usize,
    /// What went wrong.
    pub reason: FaultReason,
    /// Pointer width of the machine in bits (64 or 32), for printing addresses as `%px`.
    pub addr_bits: u32,
}

impl PageFault {
    /// The x86 page-fault error code: `X86_PF_WRITE` for a store, `X86_PF_PROT` for a
    /// protection violation (always supervisor mode).
    pub fn error_code(&self) -> u64 {
        let mut code = 0;
        if self.access == Access::Write {
            code |= X86_PF_WRITE;
        }
        match self.reason {
            FaultReason::ReadOnly => code |= X86_PF_PROT,
            // The entry was present: a protection fault with the reserved-bit flag.
            FaultReason::ReservedBits { .. } => code |= X86_PF_PROT | X86_PF_RSVD,
            _ => {}
        }
        code
    }

    /// The address as `%px` prints it: zero-padded to the pointer width, no `0x`.
    pub fn px(&self) -> String {
        let digits = (self.addr_bits / 4) as usize;
        format!("{:0digits$x}", self.vaddr.0)
    }

    /// "supervisor read access in kernel mode" (`show_fault_oops`).
    pub fn access_text(&self) -> &'static str {
        match self.access {
            Access::Read => "supervisor read access in kernel mode",
            Access::Write => "supervisor write access in kernel mode",
        }
    }

    /// "not-present page", "reserved bit violation" or "permissions violation"
    /// (`show_fault_oops`).
    pub fn error_text(&self) -> &'static str {
        let code = self.error_code();
        if code & X86_PF_PROT == 0 {
            "not-present page"
        } else if code & X86_PF_RSVD != 0 {
            "reserved bit violation"
        } else {
            "permissions violation"
        }
    }
}

impl fmt::Display for PageFault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.reason {
            FaultReason::NonCanonical => write!(
                f,
                "general protection fault on CPU {}: non-canonical address {:#x}",
                self.cpu, self.vaddr.0
            ),
            FaultReason::NotRam { phys } => write!(
                f,
                "CPU {}: {} of {} reaches physical address {:#x}, which is not RAM",
                self.cpu,
                match self.access {
                    Access::Read => "read",
                    Access::Write => "write",
                },
                self.px(),
                phys.0
            ),
            ref r => write!(
                f,
                "unable to handle page fault for address {} on CPU {}: {}, error_code(0x{:04x}) - {} ({})",
                self.px(),
                self.cpu,
                self.access_text(),
                self.error_code(),
                self.error_text(),
                reason_text(r)
            ),
        }
    }
}

impl std::error::Error for PageFault {}

/// The kernel's lines for a fault (`page_fault_oops` → `show_fault_oops` and
/// `dump_pagetable`, then `__die_header`; `exc_general_protection` for a non-canonical
/// address). The simulator returns the fault to the caller instead of killing the task.
fn oops_lines(fault: &PageFault, walk: &Walk, profile: Profile, die: u64) -> Vec<String> {
    let mut out = Vec::new();
    let suffix = match profile {
        Profile::X86_64 => " PREEMPT SMP NOPTI",
        Profile::I386 => " PREEMPT SMP",
    };
    match fault.reason {
        FaultReason::NonCanonical => {
            out.push(format!(
                "general protection fault, probably for non-canonical address {:#x}: 0000 [#{die}]{suffix}",
                fault.vaddr.0
            ));
            return out;
        }
        FaultReason::NotRam { phys } => {
            // Not a fault the kernel would see: the simulator refuses to touch a hole.
            out.push(format!(
                "kmemlab: {} of {} on CPU {} maps physical address {:#x}, which is not RAM",
                match fault.access {
                    Access::Read => "read",
                    Access::Write => "write",
                },
                fault.px(),
                fault.cpu,
                phys.0
            ));
            return out;
        }
        _ => {}
    }
    if fault.vaddr.0 < PAGE_SIZE as u64 {
        out.push(format!(
            "BUG: kernel NULL pointer dereference, address: {}",
            fault.px()
        ));
    } else {
        out.push(format!(
            "BUG: unable to handle page fault for address: {}",
            fault.px()
        ));
    }
    out.push(format!("#PF: {}", fault.access_text()));
    out.push(format!(
        "#PF: error_code(0x{:04x}) - {}",
        fault.error_code(),
        fault.error_text()
    ));
    // dump_pagetable(): 64-bit prints every level read (P4D folded into the PGD), 2-level
    // i386 prints the PDE and, below a present non-PSE PDE, the PTE.
    let mut line = String::new();
    for (i, s) in walk.steps.iter().enumerate() {
        match profile {
            Profile::X86_64 => {
                line.push_str(&format!("{} {:x} ", s.level, s.entry));
                if i == 0 {
                    line.push_str(&format!("P4D {:x} ", s.entry));
                }
            }
            Profile::I386 => {
                let name = if i == 0 { "*pde" } else { "*pte" };
                line.push_str(&format!("{name} = {:08x} ", s.entry));
            }
        }
    }
    if walk.steps.is_empty() {
        line.push_str("BAD");
    }
    out.push(line);
    out.push(format!(
        "Oops: {:04x} [#{die}]{suffix}",
        fault.error_code() & 0xffff
    ));
    out
}

/// Memory as a CPU sees it: through its TLB and the kernel's page tables.
impl Machine {
    fn mmu(&self) -> &Mmu {
        self.mm().platform().mmu()
    }

    fn addr_bits(&self) -> u32 {
        match self.mm().profile() {
            Profile::X86_64 => 64,
            Profile::I386 => 32,
        }
    }

    /// Translate for an access by the current CPU; on failure, report and count it.
    fn access(&self, va: VirtAddr, access: Access) -> Result<Translation, PageFault> {
        let mm = self.mm();
        let cpu = mm.platform().smp_processor_id();
        let mem = RamTables::new(mm);
        let r = self
            .mmu()
            .translate(cpu, &mem, mm.paging(), mm.kernel_pgd(), va, access);
        let fault = |reason| PageFault {
            vaddr: va,
            access,
            cpu,
            reason,
            addr_bits: self.addr_bits(),
        };
        match r {
            Ok(t) => Ok(t),
            Err(reason) => Err(self.report_fault(fault(reason))),
        }
    }

    /// Print a fault the kernel's way and count it.
    fn report_fault(&self, fault: PageFault) -> PageFault {
        let mm = self.mm();
        let mmu = self.mmu();
        mmu.faults.fetch_add(1, Ordering::Relaxed);
        let die = mmu.die_counter.fetch_add(1, Ordering::Relaxed) + 1;
        let walk = self.walk(fault.vaddr);
        let p = mm.platform();
        for line in oops_lines(&fault, &walk, mm.profile(), die) {
            p.printk(format_args!("{line}"));
        }
        if !matches!(fault.reason, FaultReason::NotRam { .. }) {
            p.printk(format_args!(
                "CPU: {} PID: {} Comm: {} Not tainted 6.6.0-kmemlab #1",
                fault.cpu,
                p.current_pid(),
                p.current_comm()
            ));
        }
        fault
    }

    /// Copy `[vaddr, vaddr + len)` out of kernel memory as the current CPU
    /// (`smp_processor_id()`, CPU 0 outside [`Machine::on_cpu`]) would load it: each page
    /// through that CPU's TLB and the page tables. A fault is printed the kernel's way,
    /// counted, and returned.
    pub fn read(&self, vaddr: VirtAddr, len: usize) -> Result<Vec<u8>, PageFault> {
        let mut out = Vec::with_capacity(len.min(1 << 20));
        self.for_each_chunk(vaddr, len, Access::Read, |phys, range| {
            let start = out.len();
            out.resize(start + range, 0);
            self.mm().platform().ram().read(phys, &mut out[start..])
        })?;
        Ok(out)
    }

    /// Store `bytes` at `vaddr` as the current CPU would, page by page (pages before a
    /// faulting one keep what was written). Nothing is set in the entries (no A/D bits).
    pub fn write(&self, vaddr: VirtAddr, bytes: &[u8]) -> Result<(), PageFault> {
        let mut done = 0;
        self.for_each_chunk(vaddr, bytes.len(), Access::Write, |phys, n| {
            let r = self
                .mm()
                .platform()
                .ram()
                .write(phys, &bytes[done..done + n]);
            done += n;
            r
        })
    }

    /// Walk `[vaddr, vaddr + len)` in pieces that stay inside one 4 KiB page, translating
    /// once per page mapping and calling `f(phys, len)`, which says whether that was RAM.
    fn for_each_chunk(
        &self,
        vaddr: VirtAddr,
        len: usize,
        access: Access,
        mut f: impl FnMut(u64, usize) -> Option<()>,
    ) -> Result<(), PageFault> {
        let page = PAGE_SIZE as u64;
        let mut va = vaddr.0;
        let mut left = len as u64;
        while left > 0 {
            let t = self.access(VirtAddr(va), access)?;
            // Bytes left in this mapping, then copied one 4 KiB frame at a time so that a
            // large page over a hole stops exactly at the hole.
            let mut in_map = (t.page_size - (va & (t.page_size - 1))).min(left);
            let mut phys = t.phys.0;
            while in_map > 0 {
                let n = (page - (phys & (page - 1))).min(in_map);
                if f(phys, n as usize).is_none() {
                    let fault = PageFault {
                        vaddr: VirtAddr(va),
                        access,
                        cpu: self.mm().platform().smp_processor_id(),
                        reason: FaultReason::NotRam {
                            phys: PhysAddr(phys),
                        },
                        addr_bits: self.addr_bits(),
                    };
                    return Err(self.report_fault(fault));
                }
                phys += n;
                va = va.wrapping_add(n);
                in_map -= n;
                left -= n;
            }
        }
        Ok(())
    }

    /// Translate `vaddr` as the current CPU's MMU does for a load: TLB first, then a walk
    /// (counted in the TLB statistics). A failure is returned, not reported: this is a
    /// lookup, not an access.
    pub fn translate(&self, vaddr: VirtAddr) -> Result<Translation, PageFault> {
        let mm = self.mm();
        let cpu = mm.platform().smp_processor_id();
        let mem = RamTables::new(mm);
        self.mmu()
            .translate(cpu, &mem, mm.paging(), mm.kernel_pgd(), vaddr, Access::Read)
            .map_err(|reason| PageFault {
                vaddr,
                access: Access::Read,
                cpu,
                reason,
                addr_bits: self.addr_bits(),
            })
    }

    /// Walk the page tables for `vaddr`, level by level, without the TLB and uncounted.
    pub fn walk(&self, vaddr: VirtAddr) -> Walk {
        let mm = self.mm();
        walk(&RamTables::new(mm), mm.paging(), mm.kernel_pgd(), vaddr)
    }

    /// `cpu`'s TLB counters.
    pub fn tlb_stats(&self, cpu: usize) -> TlbStats {
        self.mmu().stats(cpu)
    }

    /// The TLB counters summed over all CPUs.
    pub fn tlb_stats_total(&self) -> TlbStats {
        self.mmu().stats_total()
    }

    /// The shootdown counters of `flush_tlb_kernel_range`.
    pub fn tlb_flush_stats(&self) -> TlbFlushStats {
        self.mmu().flush_stats()
    }

    /// Faults reported by [`Machine::read`] and [`Machine::write`].
    pub fn page_faults(&self) -> u64 {
        self.mmu().faults()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kmemlab_mm::arch::pgtable::{_KERNPG_TABLE, _PAGE_PSE, I386_2LEVEL, X86_64_4LEVEL};
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
}
