//! x86 page-table entries as the hardware reads them (`arch/x86/include/asm/pgtable_types.h`,
//! `pgtable_64_types.h`, `pgtable-2level_types.h`).
//!
//! x86_64 uses 4-level paging: four tables of 512 64-bit entries (PGD, PUD, PMD, PTE, 9 bits
//! of the address each), with `_PAGE_PSE` making a PUD entry map 1 GiB and a PMD entry 2 MiB.
//! i386 without PAE uses 2-level paging: a PGD and a PTE table of 1024 32-bit entries each
//! (10 + 10 + 12 bits), with `_PAGE_PSE` making a PGD entry map 4 MiB. Both kernels put
//! every kernel mapping in one top-level table, `swapper_pg_dir`.
//!
//! Tables live in simulated RAM, which anyone (a `poke`, a device's DMA) may overwrite, so
//! every entry read goes through the door ([`crate::mem`]) and is checked before it is
//! followed: [`Mm::pt_entry`] decodes one entry of a known level, refusing a table that is
//! not RAM, bits that must be zero at that level (what the MMU reports as a reserved-bit
//! violation), a table entry whose flags are not a kernel table's (`pXd_bad()`), and a
//! frame that is not RAM.

use core::fmt;
use core::sync::atomic::{AtomicU32, AtomicU64, Ordering::Relaxed};

use super::Profile;
use crate::addr::{PhysAddr, PAGE_SIZE};
use crate::mem::{BadAccess, RamArray};
use crate::platform::Platform;
use crate::Mm;

/// The entry maps something (`_PAGE_PRESENT`).
pub const _PAGE_PRESENT: u64 = 1 << 0;
/// Writable (`_PAGE_RW`).
pub const _PAGE_RW: u64 = 1 << 1;
/// Reachable from user mode (`_PAGE_USER`); never set on kernel mappings.
pub const _PAGE_USER: u64 = 1 << 2;
/// Write-through (`_PAGE_PWT`).
pub const _PAGE_PWT: u64 = 1 << 3;
/// Cache disabled (`_PAGE_PCD`).
pub const _PAGE_PCD: u64 = 1 << 4;
/// Set by the hardware on access (`_PAGE_ACCESSED`).
pub const _PAGE_ACCESSED: u64 = 1 << 5;
/// Set by the hardware on write (`_PAGE_DIRTY`).
pub const _PAGE_DIRTY: u64 = 1 << 6;
/// In a PUD/PMD (or i386 PGD) entry: the entry maps a large page (`_PAGE_PSE`).
pub const _PAGE_PSE: u64 = 1 << 7;
/// The translation survives a CR3 reload (`_PAGE_GLOBAL`); kernel mappings set it.
pub const _PAGE_GLOBAL: u64 = 1 << 8;
/// No instruction fetch (`_PAGE_NX`, x86_64 only: 2-level i386 entries have no such bit).
pub const _PAGE_NX: u64 = 1 << 63;

/// `_KERNPG_TABLE`: what a kernel table entry pointing to the next level carries.
pub const _KERNPG_TABLE: u64 = _PAGE_PRESENT | _PAGE_RW | _PAGE_ACCESSED | _PAGE_DIRTY;
/// `__PAGE_KERNEL` without NX: present, writable, accessed, dirty, global.
const PAGE_KERNEL_BASE: u64 =
    _PAGE_PRESENT | _PAGE_RW | _PAGE_ACCESSED | _PAGE_DIRTY | _PAGE_GLOBAL;

/// A kernel protection (`pgprot_t`), as the entry bits it sets.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct PgProt(pub u64);

impl PgProt {
    /// `PAGE_KERNEL` on `profile`: data, not executable where the format can say so.
    pub const fn kernel(profile: Profile) -> PgProt {
        match profile {
            Profile::X86_64 => PgProt(PAGE_KERNEL_BASE | _PAGE_NX),
            Profile::I386 => PgProt(PAGE_KERNEL_BASE),
        }
    }

    /// `PAGE_KERNEL_RO` on `profile`.
    pub const fn kernel_ro(profile: Profile) -> PgProt {
        PgProt(PgProt::kernel(profile).0 & !(_PAGE_RW | _PAGE_DIRTY))
    }

    /// `PAGE_KERNEL_EXEC`.
    pub const fn kernel_exec() -> PgProt {
        PgProt(PAGE_KERNEL_BASE)
    }
}

/// One level of a page-table hierarchy.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct Level {
    /// The kernel's name for the level's table (`PGD`, `PUD`, `PMD`, `PTE`).
    pub name: &'static str,
    /// log2 of the bytes one entry of this level covers.
    pub shift: u32,
    /// Address bits that index this level's table.
    pub bits: u32,
    /// Whether `_PAGE_PSE` is honoured here (a large-page leaf).
    pub allows_large: bool,
}

impl Level {
    /// Bytes one entry covers.
    #[inline]
    pub const fn entry_span(&self) -> u64 {
        1 << self.shift
    }

    /// Entries in one table of this level.
    pub const fn entries(&self) -> usize {
        1 << self.bits
    }

    /// The index of `va`'s entry in a table of this level.
    #[inline]
    pub const fn index(&self, va: u64) -> usize {
        ((va >> self.shift) & ((1 << self.bits) - 1)) as usize
    }
}

/// A paging format: the levels from the top, the size of an entry, and the physical
/// address bits an entry can hold.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct PagingMode {
    /// The levels, top (the table CR3 points to) first; the last maps 4 KiB pages.
    pub levels: &'static [Level],
    /// Bytes per entry: 8 on x86_64, 4 on 2-level i386.
    pub entry_size: usize,
    /// The address bits of a 4 KiB-aligned frame in an entry.
    pub phys_mask: u64,
    /// The bits of an entry at or above the CPU's physical-address width (`MAXPHYADDR`)
    /// that are still inside the frame field: reserved at every level.
    pub above_maxphyaddr: u64,
}

/// 4-level x86_64 paging (`CONFIG_PGTABLE_LEVELS=4`; the P4D level is folded).
pub const X86_64_4LEVEL: PagingMode = PagingMode {
    levels: &[
        Level {
            name: "PGD",
            shift: 39,
            bits: 9,
            allows_large: false,
        },
        Level {
            name: "PUD",
            shift: 30,
            bits: 9,
            allows_large: true,
        },
        Level {
            name: "PMD",
            shift: 21,
            bits: 9,
            allows_large: true,
        },
        Level {
            name: "PTE",
            shift: 12,
            bits: 9,
            allows_large: false,
        },
    ],
    entry_size: 8,
    // __PHYSICAL_MASK_SHIFT = 52.
    phys_mask: 0x000f_ffff_ffff_f000,
    // MAXPHYADDR = 46, as `Profile::max_phys` (bits 46..51 must be zero).
    above_maxphyaddr: 0x000f_c000_0000_0000,
};

/// 2-level i386 paging without PAE (PUD and PMD folded into the PGD).
pub const I386_2LEVEL: PagingMode = PagingMode {
    levels: &[
        Level {
            name: "PGD",
            shift: 22,
            bits: 10,
            allows_large: true,
        },
        Level {
            name: "PTE",
            shift: 12,
            bits: 10,
            allows_large: false,
        },
    ],
    entry_size: 4,
    phys_mask: 0xffff_f000,
    // 32-bit entries hold no bit above a 32-bit physical address.
    above_maxphyaddr: 0,
};

impl Profile {
    /// The paging format of this profile's kernel.
    pub const fn paging(self) -> &'static PagingMode {
        match self {
            Profile::X86_64 => &X86_64_4LEVEL,
            Profile::I386 => &I386_2LEVEL,
        }
    }
}

impl PagingMode {
    /// The frame an entry at `level` points to: the next table, or the first byte of the
    /// page it maps (a large page's frame is aligned to the page's size; the PAT bit of
    /// a large entry, bit 12, is not part of it).
    pub const fn entry_frame(&self, level: usize, entry: u64) -> u64 {
        let is_large = self.is_large(level, entry);
        let mask = if is_large {
            self.phys_mask & !(self.levels[level].entry_span() - 1)
        } else {
            self.phys_mask
        };
        entry & mask
    }

    /// Whether `entry` at `level` is a leaf that maps a large page.
    pub const fn is_large(&self, level: usize, entry: u64) -> bool {
        self.levels[level].allows_large && entry & _PAGE_PSE != 0
    }

    /// Whether `entry` at `level` maps a page (rather than pointing to a table).
    pub const fn is_leaf(&self, level: usize, entry: u64) -> bool {
        level + 1 == self.levels.len() || self.is_large(level, entry)
    }

    /// Whether `va` is an address this format can translate: canonical (bits 63..47 all
    /// equal) on x86_64, below 4 GiB on i386.
    pub const fn is_canonical(&self, va: u64) -> bool {
        if self.entry_size == 4 {
            return va >> 32 == 0;
        }
        let top = va >> 47;
        top == 0 || top == (1 << 17) - 1
    }

    /// The bits of `entry` at `level` that must be zero (the hardware's reserved-bit
    /// violation, `X86_PF_RSVD`, Intel SDM vol. 3 §4.5 and §4.3): those above
    /// `MAXPHYADDR`; `PS` in a top-level x86_64 entry (PML4E); and, in a large leaf, the
    /// frame bits between the PAT bit (12) and the page's alignment (13..20 of a 2 MiB
    /// PDE, 13..29 of a 1 GiB PDPTE, 13..21 of an i386 4 MiB PDE without PSE-36).
    pub const fn reserved_bits(&self, level: usize, entry: u64) -> u64 {
        let mut rsvd = self.above_maxphyaddr;
        if self.entry_size == 8 && level == 0 {
            rsvd |= _PAGE_PSE;
        }
        if self.is_large(level, entry) {
            let span = self.levels[level].entry_span();
            rsvd |= (span - 1) & !((PAGE_SIZE as u64 * 2) - 1);
        }
        entry & rsvd
    }

    /// `pXd_bad()` for a present entry at `level` that points to a table (x86's
    /// `pmd_bad`, `pud_bad`, `p4d_bad`): its flags (the bits outside the frame field) must
    /// be exactly a kernel table's, `_KERNPG_TABLE`, give or take `_PAGE_USER` and
    /// `_PAGE_ACCESSED`.
    pub const fn table_entry_bad(&self, entry: u64) -> bool {
        let flags = entry & !self.phys_mask;
        flags & !(_PAGE_USER | _PAGE_ACCESSED) != _KERNPG_TABLE & !_PAGE_ACCESSED
    }

    /// The level that maps pages of `size` bytes as leaves, if any.
    pub fn level_of_size(&self, size: u64) -> Option<usize> {
        self.levels
            .iter()
            .position(|l| l.entry_span() == size && (l.allows_large || l.shift == 12))
    }
}

/// The names of the bits set in `entry`, as `walk` prints them (`P RW A D PSE G NX`).
pub fn entry_flag_names(entry: u64) -> impl Iterator<Item = &'static str> {
    [
        (_PAGE_PRESENT, "P"),
        (_PAGE_RW, "RW"),
        (_PAGE_USER, "US"),
        (_PAGE_PWT, "PWT"),
        (_PAGE_PCD, "PCD"),
        (_PAGE_ACCESSED, "A"),
        (_PAGE_DIRTY, "D"),
        (_PAGE_PSE, "PSE"),
        (_PAGE_GLOBAL, "G"),
        (_PAGE_NX, "NX"),
    ]
    .into_iter()
    .filter(move |(bit, _)| entry & bit != 0)
    .map(|(_, name)| name)
}

/// The kernel's view of its page tables: where the top table is, and entry reads and
/// writes (`READ_ONCE`/`set_pte`: one atomic access each, as the MMU of another CPU may walk
/// the table at the same time).
impl<P: Platform> Mm<P> {
    /// The physical address of `swapper_pg_dir`, the table CR3 points to on every CPU.
    pub fn kernel_pgd(&self) -> PhysAddr {
        self.arch.pgd
    }

    /// The paging format of this kernel.
    pub fn paging(&self) -> &'static PagingMode {
        self.layout.profile.paging()
    }

    /// Page-table pages the kernel took from the page allocator (`NR_PAGETABLE`).
    pub fn nr_pagetable_pages(&self) -> u64 {
        self.arch.pgtable_pages.load(Relaxed)
    }

    /// A page-table page was taken from the page allocator (`NR_PAGETABLE` +1).
    pub(crate) fn inc_pgtable_pages(&self) {
        self.arch.pgtable_pages.fetch_add(1, Relaxed);
    }

    /// A page-table page went back to the page allocator (`NR_PAGETABLE` -1).
    pub(crate) fn dec_pgtable_pages(&self) {
        self.arch.pgtable_pages.fetch_sub(1, Relaxed);
    }

    /// Direct-map bytes mapped with 4 KiB pages, large pages (2 MiB / 4 MiB) and 1 GiB pages.
    pub fn direct_map_bytes(&self) -> [u64; 3] {
        self.arch.direct_map
    }

    /// The physical address of entry `index` of the table at `table`, if `table` is page
    /// aligned and `index` inside it.
    fn pt_entry_phys(&self, table: PhysAddr, index: usize) -> Option<u64> {
        let offset = index.checked_mul(self.paging().entry_size)?;
        (table.0.is_multiple_of(PAGE_SIZE as u64) && offset < PAGE_SIZE)
            .then(|| table.0 + offset as u64)
    }

    /// Entry `index` of the table at `table`, read with one atomic load (`READ_ONCE`) through
    /// the door; `Err` if the table is not a page of RAM. Reports nothing: for the MMU and
    /// for walkers that report themselves.
    pub fn peek_pt_entry(&self, table: PhysAddr, index: usize) -> Result<u64, BadAccess> {
        let at = self.pt_entry_phys(table, index).ok_or(BadAccess {
            addr: table.0,
            len: PAGE_SIZE as u64,
            kind: crate::mem::BadAccessKind::Misaligned,
        })?;
        if self.paging().entry_size == 8 {
            Ok(self.ram().atomic_u64(at)?.load(Relaxed))
        } else {
            Ok(u64::from(self.ram().atomic_u32(at)?.load(Relaxed)))
        }
    }

    /// The whole table at `table`, checked once, for a walker that scans it entry by
    /// entry: `None` if it is not a page of RAM (the walker then reads the entry with
    /// [`Mm::pt_entry`], which reports it).
    pub(crate) fn pt_table(&self, table: PhysAddr) -> Option<PtTable> {
        if !table.0.is_multiple_of(PAGE_SIZE as u64) {
            return None;
        }
        let ram = self.ram();
        Some(if self.paging().entry_size == 8 {
            PtTable::Wide(ram.array(table.0, PAGE_SIZE as u64 / 8).ok()?)
        } else {
            PtTable::Narrow(ram.array(table.0, PAGE_SIZE as u64 / 4).ok()?)
        })
    }

    /// Entry `index` of the table at `table`. A table that is not RAM (a corrupted entry
    /// above it pointed there) is the kernel's page fault on the entry's address, reported
    /// as an oops; the walk then sees an empty entry (0), so it stops or allocates.
    /// Walkers that know the level use [`Mm::pt_entry`], which also checks the entry.
    pub fn read_pt_entry(&self, table: PhysAddr, index: usize) -> u64 {
        match self.peek_pt_entry(table, index) {
            Ok(entry) => entry,
            Err(_) => {
                self.pt_fault(table, index, false);
                0
            }
        }
    }

    /// Write entry `index` of the table at `table` (`set_pte`, `set_pmd`, `pgd_populate`)
    /// with one atomic store; `Err` (nothing written) if the table is not a page of RAM.
    pub(crate) fn try_write_pt_entry(
        &self,
        table: PhysAddr,
        index: usize,
        entry: u64,
    ) -> Result<(), BadAccess> {
        let at = self.pt_entry_phys(table, index).ok_or(BadAccess {
            addr: table.0,
            len: PAGE_SIZE as u64,
            kind: crate::mem::BadAccessKind::Misaligned,
        })?;
        if self.paging().entry_size == 8 {
            self.ram().atomic_u64(at)?.store(entry, Relaxed);
        } else {
            self.ram().atomic_u32(at)?.store(entry as u32, Relaxed);
        }
        Ok(())
    }

    /// Write entry `index` of the table at `table`; a table that is not RAM is reported
    /// as the kernel's page fault on the store, and nothing is written.
    pub(crate) fn write_pt_entry(&self, table: PhysAddr, index: usize, entry: u64) {
        if self.try_write_pt_entry(table, index, entry).is_err() {
            self.pt_fault(table, index, true);
        }
    }

    /// The page fault of a kernel access to a table entry that is not in RAM: the
    /// address is where the kernel would have read it (`__va()` of the entry, or the
    /// physical address itself where the direct map does not reach).
    #[cold]
    #[inline(never)]
    fn pt_fault(&self, table: PhysAddr, index: usize, write: bool) {
        let at = table
            .0
            .wrapping_add((index as u64).wrapping_mul(self.paging().entry_size as u64));
        let mut va = self.layout.page_offset.wrapping_add(at);
        if self.paging().entry_size == 4 {
            va &= 0xffff_ffff;
        }
        self.bad_page_fault(va, write);
    }

    /// Read and check the entry for `va` in the table at `table`, of level `level`, as a
    /// kernel walker does (`pXd_none()`, `pXd_leaf()`, `pXd_bad()`, then the next table):
    /// a missing entry, the next table, or a leaf. Anything else is corruption, reported
    /// and returned as `Err`: a table that is not RAM is a page fault on the entry
    /// (`BUG: unable to handle page fault`); an entry with reserved bits, a table entry
    /// that fails `pXd_bad()`, or a frame that is not RAM is `pgtable_bad()`'s
    /// `Corrupted page table` oops (`Bad pagetable`).
    pub fn pt_entry(&self, table: PhysAddr, level: usize, va: u64) -> Result<PtEntry, PtCorrupt> {
        let mode = self.paging();
        let Some(l) = mode.levels.get(level) else {
            return Err(PtCorrupt::new(va, level, 0, PtBad::TableNotRam));
        };
        let index = l.index(va);
        let entry = match self.peek_pt_entry(table, index) {
            Ok(entry) => entry,
            Err(_) => {
                self.pt_fault(table, index, false);
                return Err(PtCorrupt::new(va, level, 0, PtBad::TableNotRam));
            }
        };
        let ram_end = (self.mem_map.base_pfn + self.mem_map.len).phys().0;
        let is_ram = |phys| self.ram().is_ram(phys, PAGE_SIZE as u64);
        match decode_entry(mode, level, entry, is_ram, ram_end) {
            Ok(decoded) => Ok(decoded),
            Err(why) => {
                let bad = PtCorrupt::new(va, level, entry, why);
                self.report_bad_pagetable(table, index, &bad);
                Err(bad)
            }
        }
    }

    /// `pXd_ERROR()` for the entry, then `pgtable_bad()` (`arch/x86/mm/fault.c`):
    /// `<comm>: Corrupted page table at address <va>` and the `Bad pagetable` oops with
    /// a reserved-bit error code (`X86_PF_RSVD | X86_PF_PROT`).
    #[cold]
    #[inline(never)]
    fn report_bad_pagetable(&self, table: PhysAddr, index: usize, bad: &PtCorrupt) {
        let mode = self.paging();
        let name = bad.level_name(mode);
        let at = table.0 + (index * mode.entry_size) as u64;
        let line = pgtable_generic_line(name);
        if line == 0 {
            // No pte_clear_bad(): only the upper levels have a pXd_ERROR() report.
        } else if mode.entry_size == 8 {
            // pgtable_64.h: pr_err("%s:%d: bad pmd %p(%016lx)\n", __FILE__, __LINE__, ...).
            self.printk(format_args!(
                "mm/pgtable-generic.c:{line}: bad {} {:016x}({:016x})",
                LowerName(name),
                self.layout.page_offset.wrapping_add(at),
                bad.entry
            ));
        } else {
            // pgtable-2level.h: pr_err("%s:%d: bad pgd %08lx\n", ...).
            self.printk(format_args!(
                "mm/pgtable-generic.c:{line}: bad {} {:08x}",
                LowerName(name),
                bad.entry
            ));
        }
        self.printk(format_args!(
            "{}: Corrupted page table at address {:x}",
            self.platform.current_comm(),
            bad.va
        ));
        self.oops(format_args!("Bad pagetable"), 0x0009);
    }
}

/// `mm/pgtable-generic.c` (6.6): the line of `pXd_ERROR()` in `pXd_clear_bad()`, or 0
/// for the PTE level, which has none.
const fn pgtable_generic_line(level: &str) -> u32 {
    match level.as_bytes() {
        [b'P', b'G', ..] => 27,
        [b'P', b'U', ..] => 42,
        [b'P', b'M', ..] => 53,
        _ => 0,
    }
}

/// A level name in lower case (`pmd`), as the kernel's messages print it.
struct LowerName<'a>(&'a str);

impl fmt::Display for LowerName<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for c in self.0.chars() {
            fmt::Write::write_char(f, c.to_ascii_lowercase())?;
        }
        Ok(())
    }
}

/// One page-table entry, checked and decoded.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum PtEntry {
    /// Not present (`pXd_none()`).
    None,
    /// A table of the next level, at this physical address.
    Table(PhysAddr),
    /// A leaf mapping a page of `size` bytes whose first byte is at `frame`.
    Leaf {
        /// The page's physical address.
        frame: PhysAddr,
        /// Bytes the entry maps.
        size: u64,
        /// The raw entry.
        entry: u64,
    },
}

/// What is wrong with a corrupted entry.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum PtBad {
    /// The table holding the entry is not RAM (the entry above it was corrupted).
    TableNotRam,
    /// Bits that must be zero at this level are set.
    ReservedBits,
    /// A table entry whose flags are not a kernel table's (`pXd_bad()`).
    BadTableFlags,
    /// A table entry whose frame is not a page of RAM.
    TableFrameNotRam,
    /// A leaf whose frame is past the end of memory.
    LeafNotRam,
}

/// A corrupted page-table entry met by a kernel walk (already reported).
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct PtCorrupt {
    /// The virtual address being walked.
    pub va: u64,
    /// The level of the entry (0 is the top).
    pub level: usize,
    /// The raw entry (0 when the table could not be read).
    pub entry: u64,
    /// What is wrong.
    pub why: PtBad,
}

impl PtCorrupt {
    fn new(va: u64, level: usize, entry: u64, why: PtBad) -> PtCorrupt {
        PtCorrupt {
            va,
            level,
            entry,
            why,
        }
    }

    /// The level's name (`PGD`, `PUD`, `PMD`, `PTE`).
    pub fn level_name(&self, mode: &PagingMode) -> &'static str {
        mode.levels.get(self.level).map_or("PTE", |l| l.name)
    }
}

impl fmt::Display for PtCorrupt {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let why = match self.why {
            PtBad::TableNotRam => "its table is not RAM",
            PtBad::ReservedBits => "reserved bits set",
            PtBad::BadTableFlags => "not a kernel table entry (pXd_bad)",
            PtBad::TableFrameNotRam => "points to a table outside RAM",
            PtBad::LeafNotRam => "maps a frame past the end of memory",
        };
        write!(
            f,
            "corrupted page table at {:#x}: level {} entry {:#x}: {why}",
            self.va, self.level, self.entry
        )
    }
}

impl core::error::Error for PtCorrupt {}

/// A page-table page seen as its entries ([`Mm::pt_table`]): 512 64-bit or 1024 32-bit
/// words, each read with one atomic load (`READ_ONCE`), as the MMU reads them.
pub(crate) enum PtTable {
    /// 64-bit entries (x86_64, PAE).
    Wide(RamArray<AtomicU64>),
    /// 32-bit entries (i386 2-level).
    Narrow(RamArray<AtomicU32>),
}

impl PtTable {
    /// Is entry `index` present (`_PAGE_PRESENT`)? An index past the table is not.
    #[inline]
    pub(crate) fn is_present(&self, index: usize) -> bool {
        let entry = match self {
            PtTable::Wide(t) => t.get(index as u64).map(|e| e.load(Relaxed)),
            PtTable::Narrow(t) => t.get(index as u64).map(|e| u64::from(e.load(Relaxed))),
        };
        entry.is_some_and(|e| e & _PAGE_PRESENT != 0)
    }
}

/// Check and decode `entry` at `level` of `mode` as a kernel walk does: reserved bits
/// first, then a leaf's frame (below `ram_end`, the end of memory: a leaf over a hole, as
/// the direct map of the ISA range is, is a real mapping), or a table entry's flags and
/// frame (`is_ram(phys)`: the 4 KiB frame at `phys` is RAM).
pub fn decode_entry(
    mode: &PagingMode,
    level: usize,
    entry: u64,
    is_ram: impl Fn(u64) -> bool,
    ram_end: u64,
) -> Result<PtEntry, PtBad> {
    if entry & _PAGE_PRESENT == 0 {
        return Ok(PtEntry::None);
    }
    if mode.reserved_bits(level, entry) != 0 {
        return Err(PtBad::ReservedBits);
    }
    let frame = mode.entry_frame(level, entry);
    if mode.is_leaf(level, entry) {
        if frame >= ram_end {
            return Err(PtBad::LeafNotRam);
        }
        return Ok(PtEntry::Leaf {
            frame: PhysAddr(frame),
            size: mode.levels[level].entry_span(),
            entry,
        });
    }
    if mode.table_entry_bad(entry) {
        return Err(PtBad::BadTableFlags);
    }
    if !is_ram(frame) {
        return Err(PtBad::TableFrameNotRam);
    }
    Ok(PtEntry::Table(PhysAddr(frame)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn x86_64_indices_split_the_address() {
        let m = &X86_64_4LEVEL;
        // VMALLOC_START = 0xffffc90000000000: PGD slot 402.
        let va = 0xffff_c900_0000_0000u64;
        assert_eq!(m.levels[0].index(va), 402);
        assert_eq!(m.levels[1].index(va), 0);
        // The direct map starts at PGD slot 273.
        assert_eq!(m.levels[0].index(0xffff_8880_0000_0000), 273);
        assert_eq!(m.levels[3].index(0x5000), 5);
        assert!(m.is_canonical(va));
        assert!(!m.is_canonical(0x0000_8000_0000_0000));
    }

    #[test]
    fn large_frames_drop_the_pat_bit() {
        let m = &X86_64_4LEVEL;
        let pmd = 0x4020_0000 | _PAGE_PSE | _PAGE_PRESENT | (1 << 12);
        assert!(m.is_leaf(2, pmd));
        assert_eq!(m.entry_frame(2, pmd), 0x4020_0000);
        let i = &I386_2LEVEL;
        assert_eq!(i.levels[0].index(0xc000_0000), 768);
        assert_eq!(i.level_of_size(4 << 20), Some(0));
        assert_eq!(m.level_of_size(2 << 20), Some(2));
        assert_eq!(m.level_of_size(4096), Some(3));
    }

    #[test]
    fn decode_refuses_what_the_walk_must_not_follow() {
        let m = &X86_64_4LEVEL;
        let ram = |phys: u64| phys < 1 << 30;
        let end = 1 << 30;
        let table = 0x5000 | _KERNPG_TABLE;
        assert_eq!(decode_entry(m, 1, 0, ram, end), Ok(PtEntry::None));
        assert_eq!(
            decode_entry(m, 1, table, ram, end),
            Ok(PtEntry::Table(PhysAddr(0x5000)))
        );
        // Above MAXPHYADDR, PS in the PGD, low frame bits of a 2 MiB leaf.
        assert_eq!(
            decode_entry(m, 2, table | 1 << 47, ram, end),
            Err(PtBad::ReservedBits)
        );
        assert_eq!(
            decode_entry(m, 0, table | _PAGE_PSE, ram, end),
            Err(PtBad::ReservedBits)
        );
        let leaf = 0x20_0000 | PgProt::kernel(Profile::X86_64).0 | _PAGE_PSE;
        assert!(matches!(
            decode_entry(m, 2, leaf, ram, end),
            Ok(PtEntry::Leaf {
                size: 0x20_0000,
                ..
            })
        ));
        assert_eq!(
            decode_entry(m, 2, leaf | 0x2000, ram, end),
            Err(PtBad::ReservedBits)
        );
        // The PAT bit of a large leaf is not reserved.
        assert!(decode_entry(m, 2, leaf | 0x1000, ram, end).is_ok());
        // pXd_bad(): a table entry that is not a kernel table's; frames outside RAM.
        assert_eq!(
            decode_entry(m, 1, table | _PAGE_NX, ram, end),
            Err(PtBad::BadTableFlags)
        );
        assert_eq!(
            decode_entry(m, 1, (1 << 40) | _KERNPG_TABLE, ram, end),
            Err(PtBad::TableFrameNotRam)
        );
        assert_eq!(
            decode_entry(
                m,
                3,
                (1 << 40) | PgProt::kernel(Profile::X86_64).0,
                ram,
                end
            ),
            Err(PtBad::LeafNotRam)
        );
        // i386: 4 MiB leaves have bits 13..21 reserved, 32-bit entries nothing above.
        let i = &I386_2LEVEL;
        let big = 0x40_0000 | 0x163 | _PAGE_PSE;
        assert!(decode_entry(i, 0, big, ram, end).is_ok());
        assert_eq!(
            decode_entry(i, 0, big | 0x20_0000, ram, end),
            Err(PtBad::ReservedBits)
        );
        assert!(decode_entry(i, 1, 0xffff_f163, ram, u64::MAX).is_ok());
    }
}
