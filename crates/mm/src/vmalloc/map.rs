//! Kernel page tables for the vmalloc area (`mm/vmalloc.c`: `vmap_pages_range_noflush`,
//! `vmap_range_noflush`, `vmap_try_huge_pmd`, `vunmap_range_noflush`, `vmalloc_to_page`;
//! `mm/memory.c`: `__pte_alloc_kernel`).
//!
//! The tables are real x86 entries in simulated frames, written one atomic store at a
//! time: the simulator's MMU walks the same memory. Tables below the top level come from
//! the page allocator on first use (`GFP_PGTABLE_KERNEL`, never HighMem) and stay, as the
//! kernel keeps them; each is counted in `NR_PAGETABLE`. Mapping flushes nothing (a
//! not-present entry is never cached by a TLB); unmapping leaves the flush to the caller
//! (`*_noflush`), which is what lets vmalloc defer it.
//!
//! Every entry a walk follows is read and checked by [`Mm::pt_entry`]: a corrupted entry
//! (reserved bits, not a kernel table, a frame outside RAM, a table outside RAM) has been
//! reported as an oops when it returns, and the walk fails or skips it.

use core::sync::atomic::Ordering::Relaxed;

use super::VmallocError;
use crate::addr::{Pfn, PhysAddr, PAGE_SHIFT, PAGE_SIZE};
use crate::arch::pgtable::{PgProt, PtBad, PtEntry, _KERNPG_TABLE, _PAGE_PRESENT, _PAGE_PSE};
use crate::gfp::Gfp;
use crate::platform::Platform;
use crate::Mm;

/// `GFP_PGTABLE_KERNEL`: page tables are zeroed and may sleep to be had.
const GFP_PGTABLE_KERNEL: Gfp = Gfp::GFP_KERNEL.union(Gfp::__GFP_ZERO);

/// A kernel translation found by walking the tables (`vmalloc_to_page`'s walk).
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct KernelMapping {
    /// The physical address the virtual address maps to.
    pub phys: PhysAddr,
    /// Bytes the leaf entry maps (4 KiB, 2 MiB, 4 MiB or 1 GiB).
    pub page_size: u64,
    /// The leaf entry.
    pub entry: u64,
}

impl<P: Platform> Mm<P> {
    /// `vmap_pages_range_noflush()`: map `[addr, addr + n << page_shift)` to the pages
    /// `page_at(i)` gives (each the first PFN of a 2^(page_shift - 12) block), with leaves
    /// of `1 << page_shift` bytes.
    pub(in crate::vmalloc) fn vmap_pages_range(
        &self,
        addr: u64,
        nr: u64,
        prot: PgProt,
        page_shift: u32,
        mut page_at: impl FnMut(u64) -> Result<Pfn, VmallocError>,
    ) -> Result<(), VmallocError> {
        let step = 1u64 << page_shift;
        let leaf = self
            .paging()
            .level_of_size(step)
            .ok_or(VmallocError::MapFailed(addr))?;
        for i in 0..nr {
            let pfn = page_at(i)?;
            self.map_leaf(addr + i * step, pfn.phys(), leaf, prot)?;
        }
        Ok(())
    }

    /// Map one page (or one large page at level `leaf`) at `va`, allocating the tables
    /// on the way down (`pud_alloc_track`, `pmd_alloc_track`, `pte_alloc_kernel_track`).
    fn map_leaf(
        &self,
        va: u64,
        phys: PhysAddr,
        leaf: usize,
        prot: PgProt,
    ) -> Result<(), VmallocError> {
        let mode = self.paging();
        let corrupt = |_| VmallocError::MapFailed(va);
        let mut table = self.kernel_pgd();
        for level in 0..leaf {
            table = match self.pt_entry(table, level, va).map_err(corrupt)? {
                PtEntry::None => self.pte_alloc_kernel(table, mode.levels[level].index(va))?,
                // A large mapping is in the way: vmalloc space never has one that is not
                // its own, and an area's range was unmapped before it was reused.
                PtEntry::Leaf { .. } => return Err(VmallocError::MapFailed(va)),
                PtEntry::Table(next) => next,
            };
        }
        let idx = mode.levels[leaf].index(va);
        match self.pt_entry(table, leaf, va).map_err(corrupt)? {
            PtEntry::None => {}
            // vmap_try_huge_pmd(): pmd_free_pte_page() frees the empty PTE table that an
            // earlier small mapping left here, then the PMD maps the huge page.
            PtEntry::Table(pte_table) => self.free_pte_table(table, idx, va, pte_table.0)?,
            PtEntry::Leaf { .. } => {
                self.printk(format_args!(
                    "WARNING: mm/vmalloc.c vmap_pte_range: !pte_none(ptep_get(pte)) at {va:#x}"
                ));
                return Err(VmallocError::MapFailed(va));
            }
        }
        let large = if leaf + 1 < mode.levels.len() {
            _PAGE_PSE
        } else {
            0
        };
        self.write_pt_entry(table, idx, phys.0 | prot.0 | large);
        self.vmalloc.stats.pte_set.fetch_add(1, Relaxed);
        Ok(())
    }

    /// `__pte_alloc_kernel()` and friends: a zeroed table page for entry `idx` of `table`.
    fn pte_alloc_kernel(&self, table: PhysAddr, idx: usize) -> Result<PhysAddr, VmallocError> {
        let page = self
            .alloc_pages(GFP_PGTABLE_KERNEL, 0)
            .map_err(VmallocError::PageTable)?;
        let phys = self.page_to_pfn(page).phys();
        self.write_pt_entry(table, idx, phys.0 | _KERNPG_TABLE);
        self.inc_pgtable_pages();
        Ok(phys)
    }

    /// `pmd_free_pte_page()`: drop the (empty) PTE table under a PMD entry so that a huge
    /// page can take its place; the walk caches are flushed for the range first.
    fn free_pte_table(
        &self,
        pmd_table: PhysAddr,
        idx: usize,
        va: u64,
        pte_table: u64,
    ) -> Result<(), VmallocError> {
        let entries = self.paging().levels[self.paging().levels.len() - 1].entries();
        if (0..entries).any(|i| self.read_pt_entry(PhysAddr(pte_table), i) & _PAGE_PRESENT != 0) {
            return Err(VmallocError::MapFailed(va));
        }
        self.write_pt_entry(pmd_table, idx, 0);
        self.platform()
            .flush_tlb_kernel_range(crate::VirtAddr(va), crate::VirtAddr(va + (1 << PAGE_SHIFT)));
        let page = self
            .pfn_to_page(PhysAddr(pte_table).pfn())
            .map_err(|_| VmallocError::MapFailed(va))?;
        self.__free_pages(page, 0)
            .map_err(|_| VmallocError::MapFailed(va))?;
        self.dec_pgtable_pages();
        Ok(())
    }

    /// `vunmap_range_noflush()`: clear every leaf entry in `[start, end)`; tables stay.
    /// Returns the number of entries cleared. No TLB is flushed.
    /// Tables are entered at most as many times as `mem_map` has pages, as in
    /// [`Mm::walk_kernel_range`]: tables shared by overwritten entries cannot make the
    /// walk follow every path.
    pub(in crate::vmalloc) fn vunmap_range_noflush(&self, start: u64, end: u64) -> u64 {
        let mut budget = self.mem_map().len;
        let cleared = self.unmap_level(self.kernel_pgd(), 0, start, end, &mut budget);
        self.vmalloc.stats.pte_cleared.fetch_add(cleared, Relaxed);
        cleared
    }

    fn unmap_level(
        &self,
        table: PhysAddr,
        level: usize,
        start: u64,
        end: u64,
        budget: &mut u64,
    ) -> u64 {
        let mode = self.paging();
        let span = mode.levels[level].entry_span();
        let mut cleared = 0;
        let mut va = start;
        while va < end {
            let next = (va & !(span - 1))
                .checked_add(span)
                .map_or(end, |n| n.min(end));
            let idx = mode.levels[level].index(va);
            match self.pt_entry(table, level, va) {
                Ok(PtEntry::None) => {}
                Ok(PtEntry::Leaf { .. }) => {
                    self.write_pt_entry(table, idx, 0);
                    cleared += 1;
                }
                Ok(PtEntry::Table(_)) if *budget == 0 => {}
                Ok(PtEntry::Table(child)) => {
                    *budget -= 1;
                    cleared += self.unmap_level(child, level + 1, va, next, budget);
                }
                // pXd_none_or_clear_bad(): a bad entry (reported) is cleared.
                Err(bad) if bad.why != PtBad::TableNotRam => self.write_pt_entry(table, idx, 0),
                // The table itself is not RAM: nothing here can be cleared.
                Err(_) => return cleared,
            }
            va = next;
        }
        cleared
    }

    /// Walk the kernel page tables for `va` as `vmalloc_to_page()` does (no TLB).
    pub fn kernel_translate(&self, va: u64) -> Option<KernelMapping> {
        let mode = self.paging();
        if !mode.is_canonical(va) {
            return None;
        }
        let mut table = self.kernel_pgd();
        for level in 0..mode.levels.len() {
            match self.pt_entry(table, level, va).ok()? {
                PtEntry::None => return None,
                PtEntry::Leaf { frame, size, entry } => {
                    return Some(KernelMapping {
                        phys: PhysAddr(frame.0 + (va & (size - 1))),
                        page_size: size,
                        entry,
                    });
                }
                PtEntry::Table(next) => table = next,
            }
        }
        None
    }

    /// The tables `va`'s walk passes through, top first (for `info`: which page-table
    /// pages an area uses). Stops at a leaf, a missing entry or a corrupted one (shown,
    /// then reported by [`Mm::pt_entry`]).
    pub fn kernel_walk_tables(&self, va: u64, f: &mut dyn FnMut(usize, PhysAddr, u64)) {
        let mode = self.paging();
        let mut table = self.kernel_pgd();
        for (level, l) in mode.levels.iter().enumerate() {
            let Ok(entry) = self.peek_pt_entry(table, l.index(va)) else {
                let _ = self.pt_entry(table, level, va);
                return;
            };
            f(level, table, entry);
            match self.pt_entry(table, level, va) {
                Ok(PtEntry::Table(next)) => table = next,
                _ => return,
            }
        }
    }

    /// Count the table pages and present leaf entries under `[start, end)` (for `check()`),
    /// calling `leaf(va, phys_of_page, page_size)` on each leaf.
    ///
    /// In a sound tree each table is a page of its own with one parent, so the walk enters
    /// at most as many tables as `mem_map` has pages. Entries overwritten to share tables
    /// (every entry of a table naming the same next-level table) would make it follow
    /// 512^levels paths; once that many tables are entered it descends no further, and
    /// the count it returns exceeds any true `NR_PAGETABLE` (`Mm::check` reports it).
    pub(in crate::vmalloc) fn walk_kernel_range(
        &self,
        start: u64,
        end: u64,
        leaf: &mut dyn FnMut(u64, u64, u64),
    ) -> u64 {
        let mut budget = self.mem_map().len;
        self.walk_level(self.kernel_pgd(), 0, start, end, leaf, &mut budget)
    }

    fn walk_level(
        &self,
        table: PhysAddr,
        level: usize,
        start: u64,
        end: u64,
        leaf: &mut dyn FnMut(u64, u64, u64),
        budget: &mut u64,
    ) -> u64 {
        let mode = self.paging();
        let l = mode.levels[level];
        let span = l.entry_span();
        let mut tables = 0;
        let mut va = start & !(span - 1);
        // A table with no entry at all (most of the PUD tables preallocated for the
        // vmalloc range) is passed over with one vectorised test of the page; in the
        // others empty entries are skipped with one load each, and the rest decoded and
        // checked by `pt_entry`, which also reports a table that is not RAM.
        if self.ram().is_zero(table.0, PAGE_SIZE as u64) == Ok(true) {
            return 0;
        }
        let entries = self.pt_table(table);
        while va < end {
            let entry = match &entries {
                Some(t) if !t.is_present(l.index(va)) => Ok(PtEntry::None),
                _ => self.pt_entry(table, level, va),
            };
            match entry {
                Ok(PtEntry::Leaf { frame, .. }) => leaf(va, frame.0, span),
                Ok(PtEntry::Table(_)) if *budget == 0 => tables += 1,
                Ok(PtEntry::Table(child)) => {
                    *budget -= 1;
                    let child_end = va.checked_add(span).map_or(end, |e| e.min(end));
                    tables += 1 + self.walk_level(
                        child,
                        level + 1,
                        va.max(start),
                        child_end,
                        leaf,
                        budget,
                    );
                }
                Ok(PtEntry::None) => {}
                // Reported (an oops): the walk of this table ends there.
                Err(_) => return tables,
            }
            match va.checked_add(span) {
                Some(n) => va = n,
                None => break,
            }
        }
        tables
    }
}
