//! The kernel's own page tables at boot (`arch/x86/mm/init.c`, `init_64.c`, `init_32.c`).
//!
//! Boot takes `swapper_pg_dir` and the early page tables from memblock, as the kernel's
//! `alloc_low_pages` does before the buddy allocator exists, and maps low memory at
//! `PAGE_OFFSET` the way `init_mem_mapping` does:
//!
//! - the ISA range `[0, 1 MiB)` first, then every memblock memory range above it (up to
//!   the end of lowmem), each cut by [`split_mem_range`] into 4 KiB, large-page and (on
//!   x86_64, as with `X86_FEATURE_GBPAGES`) 1 GiB pieces;
//! - each piece written as real entries by `kernel_physical_mapping_init`: 4-level on
//!   x86_64 (`phys_p4d_init` / `phys_pud_init` / `phys_pmd_init` / `phys_pte_init`), 2-level
//!   with 4 MiB PSE pages on i386;
//! - mapped bytes per page size recorded as `direct_pages_count` is, for the
//!   `DirectMap4k` / `DirectMap2M` (`DirectMap4M`) / `DirectMap1G` lines of `/proc/meminfo`
//!   (`arch_report_meminfo`).
//!
//! Once the page allocator runs, x86_64 also allocates the PUD page under every PGD entry
//! of the vmalloc area (`preallocate_vmalloc_pages`), so that the top-level table never
//! changes after boot; those pages count in `NR_PAGETABLE`.
//!
//! Table entries carry `_KERNPG_TABLE`, as the early boot tables do (`head64.c`). Linux's
//! `p4d_populate` / `pud_populate` / `pmd_populate_kernel` write `_PAGE_TABLE`, which adds
//! `_PAGE_USER`; the hardware decides supervisor-only access at the leaf either way, and
//! every leaf here is `PAGE_KERNEL` (present, writable, global, NX on x86_64).
//!
//! Every table read and write goes through the door ([`crate::mem`]); boot's own tables
//! come from memblock inside RAM, so a refused access means a broken memory map and
//! fails boot with [`BootError::BadAccess`].

use core::sync::atomic::Ordering::Relaxed;

use super::pgtable::{PgProt, _KERNPG_TABLE, _PAGE_PRESENT, _PAGE_PSE};
use super::Profile;
use crate::addr::{align_down, align_up, PhysAddr, PAGE_SIZE};
use crate::gfp::Gfp;
use crate::memblock::MemblockType;
use crate::mm_init::BootError;
use crate::platform::Platform;
use crate::Mm;

/// The memblock label of the kernel's top-level page table.
pub const SWAPPER_PG_DIR_NAME: &str = "swapper_pg_dir";
/// The memblock label of the page tables that map the direct map at boot.
pub const EARLY_PGT_NAME: &str = "early page tables";

/// `ISA_END_ADDRESS`: the first megabyte, mapped on its own first.
pub const ISA_END_ADDRESS: u64 = 1 << 20;

const KIB4: u64 = 4 << 10;
const MIB2: u64 = 2 << 20;
const MIB4: u64 = 4 << 20;
const GIB1: u64 = 1 << 30;

/// `NR_RANGE_MR`: the most pieces one range splits into.
pub const NR_RANGE_MR: usize = 5;

/// One piece of a range to map with one page size (`struct map_range`).
#[derive(Copy, Clone, Debug, PartialEq, Eq, Default)]
pub struct MapRange {
    /// First physical byte.
    pub start: u64,
    /// One past the last physical byte.
    pub end: u64,
    /// The page size the piece is mapped with: 4 KiB, 2 MiB / 4 MiB (`PMD_SIZE`), or 1 GiB.
    pub page_size: u64,
}

/// The pieces of a range, lowest first (`struct map_range mr[NR_RANGE_MR]`).
#[derive(Copy, Clone, Debug, PartialEq, Eq, Default)]
pub struct MapRanges {
    ranges: [MapRange; NR_RANGE_MR],
    len: usize,
}

impl MapRanges {
    /// The pieces.
    pub fn as_slice(&self) -> &[MapRange] {
        &self.ranges[..self.len]
    }

    /// The pieces, by value.
    pub fn iter(&self) -> impl Iterator<Item = MapRange> + '_ {
        self.as_slice().iter().copied()
    }

    /// `save_mr()`: append a non-empty piece.
    fn save(&mut self, start: u64, end: u64, page_size: u64) {
        if start < end && self.len < NR_RANGE_MR {
            self.ranges[self.len] = MapRange {
                start,
                end,
                page_size,
            };
            self.len += 1;
        }
    }

    /// The merge loop at the end of `split_mem_range()`: neighbours with the same page
    /// size become one piece.
    fn merge(&mut self) {
        let mut i = 0;
        while i + 1 < self.len {
            let (a, b) = (self.ranges[i], self.ranges[i + 1]);
            if a.end == b.start && a.page_size == b.page_size {
                self.ranges[i].end = b.end;
                self.ranges.copy_within(i + 2..self.len, i + 1);
                self.len -= 1;
            } else {
                i += 1;
            }
        }
    }
}

/// The large-page size of `profile`'s PMD level (`PMD_SIZE`): 2 MiB with 4-level paging,
/// 4 MiB with 2-level paging (where the PMD is folded into the PGD).
pub const fn pmd_size(profile: Profile) -> u64 {
    match profile {
        Profile::X86_64 => MIB2,
        Profile::I386 => MIB4,
    }
}

/// `split_mem_range()` before `adjust_range_page_size_mask()`: head and tail in 4 KiB
/// pages, the middle in `PMD_SIZE` pages and, on x86_64, the 1 GiB-aligned core in 1 GiB
/// pages. On i386 the range starting at 0 keeps its first `PMD_SIZE` in 4 KiB pages
/// (fixed-size MTRRs cover it).
fn split_raw(start: u64, end: u64, profile: Profile) -> MapRanges {
    let mut mr = MapRanges::default();
    let pmd = pmd_size(profile);
    let limit = align_down(end, KIB4);
    let mut pos = align_down(start, KIB4);
    if limit <= pos {
        return mr;
    }
    // Head, up to the first PMD boundary.
    let head_end = match profile {
        Profile::I386 if pos == 0 => pmd,
        _ => align_up(pos, pmd),
    }
    .min(limit);
    if pos < head_end {
        mr.save(pos, head_end, KIB4);
        pos = head_end;
    }
    match profile {
        Profile::X86_64 => {
            // PMD pages up to the first 1 GiB boundary.
            let s = align_up(pos, pmd);
            let e = align_up(pos, GIB1).min(align_down(limit, pmd));
            if s < e {
                mr.save(s, e, pmd);
                pos = e;
            }
            // 1 GiB pages.
            let s = align_up(pos, GIB1);
            let e = align_down(limit, GIB1);
            if s < e {
                mr.save(s, e, GIB1);
                pos = e;
            }
            // PMD pages after the last 1 GiB boundary.
            let s = align_up(pos, pmd);
            let e = align_down(limit, pmd);
            if s < e {
                mr.save(s, e, pmd);
                pos = e;
            }
        }
        Profile::I386 => {
            let s = align_up(pos, pmd);
            let e = align_down(limit, pmd);
            if s < e {
                mr.save(s, e, pmd);
                pos = e;
            }
        }
    }
    // Tail in 4 KiB pages.
    mr.save(pos, limit, KIB4);
    mr
}

/// `split_mem_range(start, end)` (`arch/x86/mm/init.c`): the pieces `[start, end)` is
/// mapped with, each with its page size, neighbours of one size merged. x86_64 uses 2 MiB
/// and 1 GiB pages (as with `X86_FEATURE_PSE` and `X86_FEATURE_GBPAGES`); i386 uses 4 MiB
/// pages and never a large page for the first 4 MiB of memory. Boot also applies
/// `adjust_range_page_size_mask`, which needs to know where RAM is.
///
/// ```
/// use kmemlab_mm::arch::init::split_mem_range;
/// use kmemlab_mm::Profile;
/// let r = split_mem_range(1 << 20, 3 << 30, Profile::X86_64);
/// let sizes: Vec<u64> = r.iter().map(|p| p.page_size).collect();
/// assert_eq!(sizes, [4 << 10, 2 << 20, 1 << 30]);
/// ```
pub fn split_mem_range(start: u64, end: u64, profile: Profile) -> MapRanges {
    let mut mr = split_raw(start, end, profile);
    mr.merge();
    mr
}

/// `adjust_range_page_size_mask()`: a piece whose enclosing large page lies entirely in
/// one RAM range is mapped with that large page anyway (on i386 only below lowmem's end).
fn adjust_range_page_size(
    mr: &mut MapRanges,
    profile: Profile,
    lowmem_end: u64,
    is_region_memory: impl Fn(u64, u64) -> bool,
) {
    let pmd = pmd_size(profile);
    for r in &mut mr.ranges[..mr.len] {
        if r.page_size < pmd {
            let (s, e) = (align_down(r.start, pmd), align_up(r.end, pmd));
            if !(profile == Profile::I386 && e > lowmem_end) && is_region_memory(s, e) {
                r.page_size = pmd;
            }
        }
        if profile == Profile::X86_64 && r.page_size < GIB1 {
            let (s, e) = (align_down(r.start, GIB1), align_up(r.end, GIB1));
            if is_region_memory(s, e) {
                r.page_size = GIB1;
            }
        }
    }
}

/// `memblock_is_region_memory()`: is `[start, end)` inside one memory range?
fn region_is_memory(memory: &MemblockType, start: u64, end: u64) -> bool {
    memory
        .regions()
        .iter()
        .any(|r| r.base <= start && end <= r.end())
}

/// Where page-table pages come from at boot: one memblock block sized by a counting pass
/// (the kernel's `pgt_buf`), then single memblock pages should the count fall short.
struct EarlyPgtBuf {
    next: u64,
    end: u64,
    used: u64,
}

impl<P: Platform> Mm<P> {
    /// The pieces boot maps, in address order: `[0, ISA_END_ADDRESS)` then each memory
    /// range above it clipped to lowmem (`init_mem_mapping` / `init_range_memory_mapping`),
    /// each split and adjusted.
    fn for_each_direct_map_piece(
        memory: &MemblockType,
        layout_end: u64,
        profile: Profile,
        mut f: impl FnMut(MapRange),
    ) {
        let mut map = |start: u64, end: u64| {
            let mut mr = split_raw(start, end, profile);
            adjust_range_page_size(&mut mr, profile, layout_end, |s, e| {
                region_is_memory(memory, s, e)
            });
            mr.merge();
            for piece in mr.iter() {
                f(piece);
            }
        };
        map(0, ISA_END_ADDRESS.min(layout_end));
        for r in memory.regions() {
            let start = r.base.max(ISA_END_ADDRESS);
            let end = r.end().min(layout_end);
            if start < end {
                map(start, end);
            }
        }
    }

    /// `init_mem_mapping()`: allocate `swapper_pg_dir`, map lowmem at `PAGE_OFFSET` and
    /// point `init_mm.pgd` at it. Called before `memblock_free_all`.
    pub(crate) fn init_mem_mapping(&mut self) -> Result<(), BootError> {
        let page = PAGE_SIZE as u64;
        let profile = self.layout.profile;
        let lowmem_end = self.layout.direct_map_end_phys;
        let memory = self.memblock.memory().clone();
        let pgd = self.memblock.alloc(page, page, SWAPPER_PG_DIR_NAME)?;
        self.zero_phys(pgd.0, page)?;
        self.arch.pgd = pgd;

        // Counting pass: the tables the pieces need below the PGD (pieces come in address
        // order, so a table is needed again only by the pieces right after it).
        let mode = self.paging();
        let po = self.layout.page_offset;
        let mut last = [u64::MAX; 4];
        let mut tables = 0u64;
        Self::for_each_direct_map_piece(&memory, lowmem_end, profile, |p| {
            let Some(leaf) = mode.level_of_size(p.page_size) else {
                return;
            };
            let va0 = po + align_down(p.start, p.page_size);
            let va1 = po + align_up(p.end, p.page_size) - 1;
            // A table at level L + 1 is named by the address bits above level L's span.
            for (parent, seen) in mode.levels[..leaf].iter().zip(&mut last) {
                let (first, lastid) = (va0 >> parent.shift, va1 >> parent.shift);
                let from = if *seen == first { first + 1 } else { first };
                tables += (lastid + 1).saturating_sub(from);
                *seen = lastid;
            }
        });
        let mut buf = EarlyPgtBuf {
            next: 0,
            end: 0,
            used: 0,
        };
        if tables > 0 {
            let base = self.memblock.alloc(tables * page, page, EARLY_PGT_NAME)?;
            self.zero_phys(base.0, tables * page)?;
            buf.next = base.0;
            buf.end = base.0 + tables * page;
        }

        let mut result = Ok(());
        let mut counts = [0u64; 3];
        Self::for_each_direct_map_piece(&memory, lowmem_end, profile, |p| {
            if result.is_ok() {
                result = self.kernel_physical_mapping_init(p, &mut buf, &mut counts);
            }
        });
        result?;
        self.arch.direct_map = counts;
        Ok(())
    }

    /// Zero `len` bytes of RAM at `phys` (memblock hands out memory as it finds it).
    fn zero_phys(&self, phys: u64, len: u64) -> Result<(), BootError> {
        self.ram().fill(phys, 0, len).map_err(BootError::BadAccess)
    }

    /// A table entry read at boot, through the door.
    fn boot_read_pt_entry(&self, table: PhysAddr, idx: usize) -> Result<u64, BootError> {
        self.peek_pt_entry(table, idx).map_err(BootError::BadAccess)
    }

    /// A table entry written at boot, through the door.
    fn boot_write_pt_entry(&self, table: PhysAddr, idx: usize, e: u64) -> Result<(), BootError> {
        self.try_write_pt_entry(table, idx, e)
            .map_err(BootError::BadAccess)
    }

    /// `alloc_low_page()`: a zeroed page-table page from the early buffer, or from memblock.
    fn alloc_low_page(&mut self, buf: &mut EarlyPgtBuf) -> Result<PhysAddr, BootError> {
        let page = PAGE_SIZE as u64;
        buf.used += 1;
        if buf.next < buf.end {
            let p = buf.next;
            buf.next += page;
            return Ok(PhysAddr(p));
        }
        let p = self.memblock.alloc(page, page, EARLY_PGT_NAME)?;
        self.zero_phys(p.0, page)?;
        Ok(p)
    }

    /// `kernel_physical_mapping_init()` for one piece: walk down from `swapper_pg_dir`,
    /// allocating the tables below it, and write leaves of the piece's page size
    /// (`phys_pud_init` / `phys_pmd_init` / `phys_pte_init` on x86_64; the PSE or PTE loop of
    /// `init_32.c`). A large leaf maps the whole aligned page around the piece's bytes, as
    /// the kernel does. Entries already present are kept: a leaf already covering the
    /// address stays, and a table already there is filled in with smaller pages.
    fn kernel_physical_mapping_init(
        &mut self,
        piece: MapRange,
        buf: &mut EarlyPgtBuf,
        counts: &mut [u64; 3],
    ) -> Result<(), BootError> {
        let mode = self.paging();
        let Some(mut leaf) = mode.level_of_size(piece.page_size) else {
            return Ok(());
        };
        let prot = PgProt::kernel(self.layout.profile).0;
        let po = self.layout.page_offset;
        let mut phys = align_down(piece.start, piece.page_size);
        let mut size = piece.page_size;
        while phys < piece.end {
            let va = po + phys;
            let mut table = self.arch.pgd;
            let mut level = 0;
            // Down to the leaf level, making tables on the way.
            let mut covered = None;
            while level < leaf {
                let idx = mode.levels[level].index(va);
                let e = self.boot_read_pt_entry(table, idx)?;
                if e & _PAGE_PRESENT == 0 {
                    let t = self.alloc_low_page(buf)?;
                    self.boot_write_pt_entry(table, idx, t.0 | _KERNPG_TABLE)?;
                    table = t;
                } else if mode.is_leaf(level, e) {
                    // Already mapped by a larger page: nothing to do for this span.
                    covered = Some(mode.levels[level].entry_span());
                    break;
                } else {
                    table = PhysAddr(mode.entry_frame(level, e));
                }
                level += 1;
            }
            if let Some(span) = covered {
                phys = align_down(phys, span) + span;
                continue;
            }
            let idx = mode.levels[leaf].index(va);
            let e = self.boot_read_pt_entry(table, idx)?;
            if e & _PAGE_PRESENT != 0 && !mode.is_leaf(leaf, e) {
                // A table is already there (smaller pages mapped earlier): keep it and
                // map the rest of this piece below it with 4 KiB pages (`phys_pte_init`
                // on an existing table).
                leaf = mode.levels.len() - 1;
                size = KIB4;
                phys = phys.max(align_down(piece.start, KIB4));
                continue;
            }
            if e & _PAGE_PRESENT == 0 {
                let pse = if leaf + 1 < mode.levels.len() {
                    _PAGE_PSE
                } else {
                    0
                };
                self.boot_write_pt_entry(table, idx, phys | prot | pse)?;
                let slot = match size {
                    KIB4 => 0,
                    GIB1 => 2,
                    _ => 1,
                };
                counts[slot] += size;
            }
            phys += size;
        }
        Ok(())
    }

    /// `preallocate_vmalloc_pages()` (x86_64): the PUD page under every PGD entry that
    /// covers `[VMALLOC_START, VMALLOC_END)`, from the page allocator (`pud_alloc` with
    /// `GFP_PGTABLE_KERNEL`), each counted in `NR_PAGETABLE` (`pagetable_pud_ctor`). After
    /// this, the vmalloc area's top-level entries never change, so no CPU's copy of the
    /// PGD can go stale. 2-level i386 has no level to preallocate.
    pub(crate) fn preallocate_vmalloc_pages(&mut self) -> Result<(), BootError> {
        if self.layout.profile != Profile::X86_64 {
            return Ok(());
        }
        let mode = self.paging();
        let top = &mode.levels[0];
        let span = top.entry_span();
        let mut addr = self.layout.vmalloc_start;
        while addr < self.layout.vmalloc_end {
            let idx = top.index(addr);
            if self.boot_read_pt_entry(self.arch.pgd, idx)? & _PAGE_PRESENT == 0 {
                let page = self
                    .alloc_pages(Gfp::GFP_KERNEL | Gfp::__GFP_ZERO, 0)
                    .map_err(BootError::VmallocPageTables)?;
                let pud = self.page_to_pfn(page).phys();
                self.boot_write_pt_entry(self.arch.pgd, idx, pud.0 | _KERNPG_TABLE)?;
                self.arch.pgtable_pages.fetch_add(1, Relaxed);
            }
            addr = match align_down(addr, span).checked_add(span) {
                Some(next) => next,
                None => break,
            };
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    extern crate std;
    use std::vec::Vec;

    const MIB: u64 = 1 << 20;

    fn pieces(start: u64, end: u64, profile: Profile) -> Vec<(u64, u64, u64)> {
        split_mem_range(start, end, profile)
            .iter()
            .map(|p| (p.start, p.end, p.page_size))
            .collect()
    }

    #[test]
    fn x86_64_splits_head_2m_1g_2m_tail() {
        let (s, e) = (MIB, 5 * GIB1 + 6 * MIB + 8 * KIB4);
        assert_eq!(
            pieces(s, e, Profile::X86_64),
            [
                (MIB, 2 * MIB, KIB4),
                (2 * MIB, GIB1, MIB2),
                (GIB1, 5 * GIB1, GIB1),
                (5 * GIB1, 5 * GIB1 + 6 * MIB, MIB2),
                (5 * GIB1 + 6 * MIB, e, KIB4),
            ]
        );
    }

    #[test]
    fn x86_64_small_and_aligned_ranges() {
        assert_eq!(pieces(0, MIB, Profile::X86_64), [(0, MIB, KIB4)]);
        assert_eq!(
            pieces(0, 64 * GIB1, Profile::X86_64),
            [(0, 64 * GIB1, GIB1)]
        );
        // Inside one 2 MiB page: all 4 KiB.
        assert_eq!(
            pieces(MIB + 4096, MIB + 8192, Profile::X86_64),
            [(MIB + 4096, MIB + 8192, KIB4)]
        );
        // 2 MiB-aligned, below 1 GiB: head and tail merge into nothing.
        assert_eq!(
            pieces(260 * MIB, GIB1 + 4 * MIB, Profile::X86_64),
            [(260 * MIB, GIB1 + 4 * MIB, MIB2)]
        );
        assert!(pieces(MIB, MIB, Profile::X86_64).is_empty());
        assert!(pieces(2 * MIB, MIB, Profile::X86_64).is_empty());
        // Unaligned ends are cut to whole pages.
        assert_eq!(pieces(100, 8191, Profile::X86_64), [(0, 4096, KIB4)]);
    }

    #[test]
    fn i386_uses_4m_pages_but_not_for_the_first_4m() {
        assert_eq!(
            pieces(0, 896 * MIB, Profile::I386),
            [(0, 4 * MIB, KIB4), (4 * MIB, 896 * MIB, MIB4)]
        );
        assert_eq!(
            pieces(MIB, 896 * MIB, Profile::I386),
            [(MIB, 4 * MIB, KIB4), (4 * MIB, 896 * MIB, MIB4)]
        );
        assert_eq!(
            pieces(6 * MIB, 15 * MIB, Profile::I386),
            [
                (6 * MIB, 8 * MIB, KIB4),
                (8 * MIB, 12 * MIB, MIB4),
                (12 * MIB, 15 * MIB, KIB4)
            ]
        );
        // No 1 GiB pages on i386.
        assert!(pieces(0, 2 * GIB1, Profile::I386)
            .iter()
            .all(|p| p.2 != GIB1));
    }

    #[test]
    fn pieces_cover_the_range_exactly() {
        for profile in [Profile::X86_64, Profile::I386] {
            for (s, e) in [
                (0, MIB),
                (MIB, 640 * MIB + 12288),
                (3 * MIB + 4096, 7 * GIB1 + 5 * MIB),
                (GIB1 - 4096, GIB1 + 4096),
            ] {
                let p = split_mem_range(s, e, profile);
                let mut at = s;
                for r in p.iter() {
                    assert_eq!(r.start, at, "{profile} {s:#x}-{e:#x}: {p:?}");
                    assert!(
                        r.start.is_multiple_of(r.page_size) && r.end.is_multiple_of(r.page_size)
                    );
                    at = r.end;
                }
                assert_eq!(at, e);
            }
        }
    }

    #[test]
    fn adjust_upgrades_only_inside_one_ram_range() {
        let mut mr = split_raw(MIB, 3 * MIB, Profile::X86_64);
        adjust_range_page_size(&mut mr, Profile::X86_64, u64::MAX, |_, _| false);
        assert!(mr.iter().all(|p| p.page_size == KIB4));
        let mut mr = split_raw(MIB, 3 * MIB, Profile::X86_64);
        adjust_range_page_size(&mut mr, Profile::X86_64, u64::MAX, |_, e| e <= 4 * MIB);
        assert!(mr.iter().all(|p| p.page_size == MIB2));
    }
}
