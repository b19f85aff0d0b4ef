//! Read-only questions about the kernel page tables for tools (crash's `kmem ADDR` on a
//! page-table page): is a frame one of the tables, and of which level.
//!
//! The walk reads every entry with [`Mm::peek_pt_entry`] and decodes it with the
//! kernel's checks ([`decode_entry`]), quietly: a corrupted entry is skipped (the
//! walkers that use it report it), so the question never oopses. It visits each table
//! once from `swapper_pg_dir` down, at most 2^bits entries per table.

use crate::addr::{Pfn, PhysAddr, PAGE_SIZE};
use crate::arch::pgtable::{decode_entry, PtEntry};
use crate::platform::Platform;
use crate::Mm;

impl<P: Platform> Mm<P> {
    /// The level (0 = the top, `swapper_pg_dir`) of the kernel page table in frame `pfn`,
    /// if `pfn` holds one; `paging().levels[level].name` names it (`PGD`, `PUD`, `PMD`,
    /// `PTE`).
    pub fn page_table_level(&self, pfn: Pfn) -> Option<usize> {
        self.find_table(self.kernel_pgd(), 0, pfn)
    }

    fn find_table(&self, table: PhysAddr, level: usize, pfn: Pfn) -> Option<usize> {
        if table.pfn() == pfn {
            return Some(level);
        }
        let mode = self.paging();
        let l = mode.levels.get(level)?;
        if level + 1 >= mode.levels.len() {
            return None;
        }
        let ram_end = (self.mem_map().base_pfn + self.mem_map().len).phys().0;
        let is_ram = |phys| self.ram().is_ram(phys, PAGE_SIZE as u64);
        (0..l.entries()).find_map(|index| {
            let entry = self.peek_pt_entry(table, index).ok()?;
            match decode_entry(mode, level, entry, is_ram, ram_end) {
                Ok(PtEntry::Table(next)) => self.find_table(next, level + 1, pfn),
                _ => None,
            }
        })
    }
}
