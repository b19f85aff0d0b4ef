//! Address-space layouts of the two profiles (`arch/x86/include/asm/page_64_types.h`,
//! `pgtable_64_types.h`, `page_32_types.h`, `pgtable_32_areas.h`).

use core::fmt;

use crate::addr::{MAX_PAGE_ORDER, PAGE_SHIFT};
use crate::page_alloc::ZoneType;

pub mod init;
pub mod pgtable;

/// The architecture's memory state: the kernel's top-level page table, the page-table
/// pages taken from the page allocator, and how the direct map is mapped. Private to
/// `arch`; read through [`crate::Mm::kernel_pgd`], [`crate::Mm::nr_pagetable_pages`] and
/// [`crate::Mm::direct_map_bytes`], counted through [`crate::Mm::inc_pgtable_pages`] and
/// [`crate::Mm::dec_pgtable_pages`].
pub struct ArchMm {
    /// The kernel's top-level page table (`swapper_pg_dir`, `init_mm.pgd`).
    pgd: crate::PhysAddr,
    /// Page-table pages taken from the page allocator (`NR_PAGETABLE`).
    pgtable_pages: core::sync::atomic::AtomicU64,
    /// Direct-map bytes mapped by 4 KiB pages, by large pages (2 MiB on x86_64, 4 MiB on
    /// i386), and by 1 GiB pages (`direct_pages_count`).
    direct_map: [u64; 3],
}

impl ArchMm {
    /// No page tables yet: `init_mem_mapping()` builds them.
    pub(crate) const fn new() -> ArchMm {
        ArchMm {
            pgd: crate::PhysAddr(0),
            pgtable_pages: core::sync::atomic::AtomicU64::new(0),
            direct_map: [0; 3],
        }
    }
}

const MIB: u64 = 1 << 20;
const GIB: u64 = 1 << 30;

/// Which kernel the machine runs.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash, Default)]
pub enum Profile {
    /// x86_64, 4-level paging: zones DMA / DMA32 / Normal, all RAM directly mapped.
    #[default]
    X86_64,
    /// i386 with the 3G/1G split and 2-level paging: zones DMA / Normal / HighMem, the
    /// first 896 MiB directly mapped.
    I386,
}

impl Profile {
    /// Parse `x86_64` or `i386`.
    pub fn from_name(name: &str) -> Option<Profile> {
        match name {
            "x86_64" | "x86-64" | "amd64" => Some(Profile::X86_64),
            "i386" | "x86_32" | "i686" => Some(Profile::I386),
            _ => None,
        }
    }

    /// The profile's name.
    pub const fn name(self) -> &'static str {
        match self {
            Profile::X86_64 => "x86_64",
            Profile::I386 => "i386",
        }
    }

    /// The zones of a node, lowest first (`enum zone_type` as configured). Each profile has
    /// four; ZONE_MOVABLE stays empty unless `kernelcore=` is given, as by default.
    pub const fn zone_types(self) -> [ZoneType; 4] {
        match self {
            Profile::X86_64 => [
                ZoneType::Dma,
                ZoneType::Dma32,
                ZoneType::Normal,
                ZoneType::Movable,
            ],
            Profile::I386 => [
                ZoneType::Dma,
                ZoneType::Normal,
                ZoneType::HighMem,
                ZoneType::Movable,
            ],
        }
    }

    /// The physical range `[start, end)` a zone type may span on this profile
    /// (`zone_sizes_init`: `MAX_DMA_PFN`, `MAX_DMA32_PFN`, `max_low_pfn`).
    pub const fn zone_limits(self, zone: ZoneType) -> (u64, u64) {
        match (self, zone) {
            (_, ZoneType::Dma) => (0, 16 * MIB),
            (Profile::X86_64, ZoneType::Dma32) => (16 * MIB, 4 * GIB),
            (Profile::X86_64, ZoneType::Normal) => (4 * GIB, u64::MAX),
            (Profile::I386, ZoneType::Normal) => (16 * MIB, I386_MAXMEM),
            (Profile::I386, ZoneType::HighMem) => (I386_MAXMEM, 4 * GIB),
            _ => (0, 0),
        }
    }

    /// The highest physical address the kernel can use at all (i386 without PAE: 4 GiB).
    pub const fn max_phys(self) -> u64 {
        match self {
            Profile::X86_64 => 1 << 46,
            Profile::I386 => 4 * GIB,
        }
    }

    /// Physical memory below this address is in the direct map (lowmem).
    pub const fn max_lowmem(self) -> u64 {
        match self {
            Profile::X86_64 => 1 << 46,
            Profile::I386 => I386_MAXMEM,
        }
    }

    /// `PMD_SHIFT`: log2 of the bytes one entry of the level above the PTE tables maps.
    /// x86_64: 21 (`arch/x86/include/asm/pgtable_64_types.h`). 2-level i386 folds the PMD
    /// into the PGD (`pgtable_types.h` includes `asm-generic/pgtable-nopmd.h` without
    /// `CONFIG_X86_PAE`, where `PMD_SHIFT` is `PUD_SHIFT`, then `P4D_SHIFT`, then
    /// `PGDIR_SHIFT`), and `pgtable-2level_types.h` has `PGDIR_SHIFT` 22: one entry maps
    /// 4 MiB. Read from the profile's [`Profile::paging`] levels (Linux 6.6.63).
    pub const fn pmd_shift(self) -> u32 {
        let levels = self.paging().levels;
        levels[levels.len() - 2].shift
    }

    /// `HUGETLB_PAGE_ORDER`: `HPAGE_SHIFT - PAGE_SHIFT` with `HPAGE_SHIFT = PMD_SHIFT`
    /// (`arch/x86/include/asm/page_types.h`, 6.6.63): 9 on x86_64 (2 MiB), 10 on 2-level
    /// i386 (4 MiB).
    pub const fn hugetlb_page_order(self) -> u32 {
        self.pmd_shift() - PAGE_SHIFT
    }

    /// `pageblock_order`, the order of the block that carries one migrate type
    /// (`include/linux/pageblock-flags.h`, 6.6.63): with `CONFIG_HUGETLB_PAGE`
    /// `min(HUGETLB_PAGE_ORDER, MAX_ORDER)`, without it `MAX_ORDER` (x86 has no
    /// `CONFIG_HUGETLB_PAGE_SIZE_VARIABLE`). x86_64: min(9, 10) = 9, 512 pages (2 MiB);
    /// i386 without PAE: min(10, 10) = 10 either way, 1024 pages (4 MiB). Fixed when the
    /// kernel is built, so a property of the profile.
    pub const fn pageblock_order(self) -> u32 {
        let hugetlb = self.hugetlb_page_order();
        if hugetlb < MAX_PAGE_ORDER {
            hugetlb
        } else {
            MAX_PAGE_ORDER
        }
    }

    /// `pageblock_nr_pages`: pages in one pageblock, `1 << pageblock_order`.
    pub const fn pageblock_nr_pages(self) -> u64 {
        1 << self.pageblock_order()
    }

    /// `PAGE_OFFSET`: where the direct map of physical address 0 starts.
    pub const fn page_offset(self) -> u64 {
        match self {
            Profile::X86_64 => 0xffff_8880_0000_0000,
            Profile::I386 => 0xc000_0000,
        }
    }
}

impl fmt::Display for Profile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// i386 `MAXMEM`: 1 GiB of kernel space less the 128 MiB `__VMALLOC_RESERVE`.
pub const I386_MAXMEM: u64 = 896 * MIB;
/// i386 `VMALLOC_OFFSET`: the gap between the direct map and the vmalloc area.
pub const I386_VMALLOC_OFFSET: u64 = 8 * MIB;
/// i386 `PKMAP_BASE` for 2-level paging: the persistent kmap window.
pub const I386_PKMAP_BASE: u64 = 0xff80_0000;

/// The kernel virtual address map of a booted machine.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct Layout {
    /// The profile.
    pub profile: Profile,
    /// `PAGE_OFFSET`.
    pub page_offset: u64,
    /// One past the last directly mapped physical address (`__pa(high_memory)`).
    pub direct_map_end_phys: u64,
    /// `VMALLOC_START`.
    pub vmalloc_start: u64,
    /// `VMALLOC_END` (exclusive).
    pub vmalloc_end: u64,
}

impl Layout {
    /// The layout for `profile` on a machine whose RAM ends at `ram_end`.
    pub fn new(profile: Profile, ram_end: u64) -> Layout {
        let direct_map_end_phys = ram_end.min(profile.max_lowmem());
        let (vmalloc_start, vmalloc_end) = match profile {
            // VMALLOC_START and VMALLOC_SIZE_TB = 32 for 4-level paging.
            Profile::X86_64 => (0xffff_c900_0000_0000, 0xffff_e900_0000_0000),
            // high_memory plus the 8 MiB gap, up to PKMAP_BASE less two guard pages.
            Profile::I386 => {
                let high_memory = profile.page_offset() + direct_map_end_phys;
                (
                    (high_memory + 2 * I386_VMALLOC_OFFSET - 1) & !(I386_VMALLOC_OFFSET - 1),
                    I386_PKMAP_BASE - 2 * 4096,
                )
            }
        };
        Layout {
            profile,
            page_offset: profile.page_offset(),
            direct_map_end_phys,
            vmalloc_start,
            vmalloc_end,
        }
    }

    /// `__va()`: the direct-map address of a lowmem physical address.
    pub const fn phys_to_virt(&self, phys: u64) -> Option<u64> {
        if phys < self.direct_map_end_phys {
            Some(self.page_offset + phys)
        } else {
            None
        }
    }

    /// `__pa()`: the physical address behind a direct-map address.
    #[inline]
    pub const fn virt_to_phys(&self, virt: u64) -> Option<u64> {
        let off = virt.wrapping_sub(self.page_offset);
        if virt >= self.page_offset && off < self.direct_map_end_phys {
            Some(off)
        } else {
            None
        }
    }

    /// `VMALLOC_TOTAL` as `/proc/meminfo` reports it: x86_64's `VMALLOC_END` is the last
    /// byte of the area (so the total is one byte short of 32 TiB), i386's is one past it.
    pub const fn vmalloc_total(&self) -> u64 {
        match self.profile {
            Profile::X86_64 => self.vmalloc_end - 1 - self.vmalloc_start,
            Profile::I386 => self.vmalloc_end - self.vmalloc_start,
        }
    }

    /// `is_vmalloc_addr()`.
    pub const fn is_vmalloc_addr(&self, virt: u64) -> bool {
        virt >= self.vmalloc_start && virt < self.vmalloc_end
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn i386_layout_matches_dmesg() {
        let l = Layout::new(Profile::I386, 2 * GIB);
        assert_eq!(l.direct_map_end_phys, 896 * MIB);
        assert_eq!(l.vmalloc_start, 0xf880_0000);
        assert_eq!(l.vmalloc_end, 0xff7f_e000);
        assert_eq!(l.phys_to_virt(0x1000), Some(0xc000_1000));
        assert_eq!(l.phys_to_virt(900 * MIB), None);
    }

    #[test]
    fn pageblock_order_follows_the_huge_page_size() {
        // pageblock-flags.h: min(HUGETLB_PAGE_ORDER, MAX_ORDER); HPAGE_SHIFT = PMD_SHIFT.
        assert_eq!(Profile::X86_64.pmd_shift(), 21);
        assert_eq!(Profile::X86_64.pageblock_order(), 9);
        assert_eq!(Profile::X86_64.pageblock_nr_pages(), 512);
        // Non-PAE i386: the PMD is folded, PMD_SHIFT = PGDIR_SHIFT = 22.
        assert_eq!(Profile::I386.pmd_shift(), 22);
        assert_eq!(Profile::I386.pageblock_order(), 10);
        assert_eq!(Profile::I386.pageblock_nr_pages(), 1024);
    }

    #[test]
    fn x86_64_vmalloc_is_32_tib() {
        let l = Layout::new(Profile::X86_64, GIB);
        assert_eq!((l.vmalloc_end - l.vmalloc_start) >> 40, 32);
        assert_eq!(l.virt_to_phys(0xffff_8880_0000_1000), Some(0x1000));
        assert_eq!(l.virt_to_phys(0xffff_8880_0000_0000 + GIB), None);
    }
}
