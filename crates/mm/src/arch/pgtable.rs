//! x86 page-table entries as the hardware reads them (`arch/x86/include/asm/pgtable_types.h`,
//! `pgtable_64_types.h`, `pgtable-2level_types.h`).
//!
//! x86_64 uses 4-level paging: four tables of 512 64-bit entries (PGD, PUD, PMD, PTE, 9 bits
//! of the address each), with `_PAGE_PSE` making a PUD entry map 1 GiB and a PMD entry 2 MiB.
//! i386 without PAE uses 2-level paging: a PGD and a PTE table of 1024 32-bit entries each
//! (10 + 10 + 12 bits), with `_PAGE_PSE` making a PGD entry map 4 MiB. Both kernels put
//! every kernel mapping in one top-level table, `swapper_pg_dir`.
#![allow(unsafe_code)] // TODO(door): convert this module to crate::mem and drop this.

use core::sync::atomic::{AtomicU32, AtomicU64, Ordering::Relaxed};

use super::Profile;
use crate::addr::PhysAddr;
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
    pub const fn entry_span(&self) -> u64 {
        1 << self.shift
    }

    /// Entries in one table of this level.
    pub const fn entries(&self) -> usize {
        1 << self.bits
    }

    /// The index of `va`'s entry in a table of this level.
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
        self.pgd
    }

    /// The paging format of this kernel.
    pub fn paging(&self) -> &'static PagingMode {
        self.layout.profile.paging()
    }

    /// Page-table pages the kernel took from the page allocator (`NR_PAGETABLE`).
    pub fn nr_pagetable_pages(&self) -> u64 {
        self.pgtable_pages.load(Relaxed)
    }

    /// Direct-map bytes mapped with 4 KiB pages, large pages (2 MiB / 4 MiB) and 1 GiB pages.
    pub fn direct_map_bytes(&self) -> [u64; 3] {
        self.direct_map
    }

    /// Entry `index` of the table at `table` (which must be a page-table page).
    pub fn read_pt_entry(&self, table: PhysAddr, index: usize) -> u64 {
        let mode = self.paging();
        let at = table.0 + (index * mode.entry_size) as u64;
        // SAFETY: page tables live in RAM (they come from memblock or the page allocator),
        // which `phys_mem` covers; entries are naturally aligned in a 4 KiB-aligned table.
        unsafe {
            let ptr = self.platform.phys_mem().add(at as usize);
            if mode.entry_size == 8 {
                (*(ptr as *const AtomicU64)).load(Relaxed)
            } else {
                (*(ptr as *const AtomicU32)).load(Relaxed) as u64
            }
        }
    }

    /// Write entry `index` of the table at `table` (`set_pte`, `set_pmd`, `pgd_populate`).
    pub(crate) fn write_pt_entry(&self, table: PhysAddr, index: usize, entry: u64) {
        let mode = self.paging();
        let at = table.0 + (index * mode.entry_size) as u64;
        // SAFETY: as in `read_pt_entry`.
        unsafe {
            let ptr = self.platform.phys_mem().add(at as usize);
            if mode.entry_size == 8 {
                (*(ptr as *const AtomicU64)).store(entry, Relaxed)
            } else {
                (*(ptr as *const AtomicU32)).store(entry as u32, Relaxed)
            }
        }
    }
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
}
