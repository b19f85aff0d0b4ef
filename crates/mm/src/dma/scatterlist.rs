//! Scatterlists (`lib/scatterlist.c`, `include/linux/scatterlist.h`) and their DMA
//! mapping (`dma_map_sg`, `kernel/dma/direct.c`'s `dma_direct_map_sg`).
//!
//! A table is an array of `struct scatterlist` kmalloc'd in simulated memory (as
//! `sg_kmalloc` does; no chaining: one array of any length). Each entry is 32 bytes:
//! `page_link` (the `struct page *`, with `SG_END` on the last), `offset` and `length`,
//! `dma_address`, `dma_length`. dma-direct maps entry by entry (one DMA segment per
//! entry, bounced through swiotlb where the device cannot reach it); physically adjacent
//! pages become one entry when the table is built, as `sg_alloc_table_from_pages`
//! does.

use core::sync::atomic::{AtomicU64, Ordering::Relaxed};

use super::{Device, DmaAddr, DmaDataDirection, DmaError, DMA_MAPPING_ERROR};
use crate::addr::{Pfn, PhysAddr, VirtAddr, PAGE_SIZE};
use crate::gfp::Gfp;
use crate::mm_types::Page;
use crate::platform::Platform;
use crate::Mm;

/// `SG_CHAIN`: the entry points to another array (not used by this implementation).
pub const SG_CHAIN: u64 = 0x01;
/// `SG_END`: the last entry.
pub const SG_END: u64 = 0x02;
/// Bytes per `struct scatterlist`.
pub const SG_ENTRY_SIZE: u64 = 32;
const SG_WORDS: usize = 4;

/// `struct sg_table`: where the entries are, how many were mapped (`nents`) and how many
/// there are (`orig_nents`).
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct SgTable {
    /// The first entry (`sgl`), a kmalloc'd address.
    pub sgl: VirtAddr,
    /// Entries mapped by `dma_map_sgtable` (before mapping: `orig_nents`).
    pub nents: u32,
    /// Entries in the table.
    pub orig_nents: u32,
}

/// A `struct scatterlist *`.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct SgEntry(pub VirtAddr);

impl SgTable {
    /// Entry `i` (`sg_next` applied `i` times), if the table has it.
    pub fn sg(&self, i: u32) -> Option<SgEntry> {
        (i < self.orig_nents)
            .then(|| SgEntry(VirtAddr(self.sgl.0.wrapping_add(i as u64 * SG_ENTRY_SIZE))))
    }
}

/// One entry's CPU side and DMA side.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct SgSegment {
    /// The page's frame.
    pub pfn: Pfn,
    /// Offset into the page.
    pub offset: u32,
    /// Bytes.
    pub length: u32,
    /// `sg_dma_address()`.
    pub dma_address: DmaAddr,
    /// `sg_dma_len()`.
    pub dma_length: u32,
}

impl<P: Platform> Mm<P> {
    fn sg_words(&self, sg: SgEntry) -> Result<&[AtomicU64; SG_WORDS], DmaError> {
        self.dma_kernel_words::<SG_WORDS>(sg.0)
            .ok_or(DmaError::Inval)
    }

    /// `sg_alloc_table()`: a zeroed table of `nents` entries, the last marked `SG_END`.
    pub fn sg_alloc_table(&self, nents: u32, gfp: Gfp) -> Result<SgTable, DmaError> {
        if nents == 0 {
            return Err(DmaError::Inval);
        }
        let sgl = self
            .kmalloc_array(
                nents as usize,
                SG_ENTRY_SIZE as usize,
                gfp | Gfp::__GFP_ZERO,
            )
            .map_err(|_| DmaError::NoMem)?;
        let table = SgTable {
            sgl,
            nents,
            orig_nents: nents,
        };
        let last = self.sg_words(table.sg(nents - 1).ok_or(DmaError::Inval)?)?;
        last[0].store(SG_END, Relaxed);
        Ok(table)
    }

    /// `sg_free_table()`: give the entries back; the table is emptied.
    pub fn sg_free_table(&self, table: &mut SgTable) {
        if table.orig_nents != 0 {
            let _ = self.kfree(table.sgl);
        }
        *table = SgTable {
            sgl: VirtAddr(0),
            nents: 0,
            orig_nents: 0,
        };
    }

    /// `sg_set_page()`: the entry describes `len` bytes at `offset` into `page`.
    pub fn sg_set_page(
        &self,
        sg: SgEntry,
        page: &Page,
        len: u32,
        offset: u32,
    ) -> Result<(), DmaError> {
        let w = self.sg_words(sg)?;
        let end = w[0].load(Relaxed) & SG_END;
        w[0].store(self.struct_page_address(page).0 | end, Relaxed);
        w[1].store(offset as u64 | (len as u64) << 32, Relaxed);
        Ok(())
    }

    /// `sg_set_buf()`: the entry describes `len` bytes at direct-map address `buf`. A
    /// vmalloc (or any non-direct-map) address has no `virt_to_page` and is refused
    /// (`CONFIG_DEBUG_SG` makes it a BUG in the kernel).
    pub fn sg_set_buf(&self, sg: SgEntry, buf: VirtAddr, len: u32) -> Result<(), DmaError> {
        if !self.virt_addr_valid(buf) {
            return Err(DmaError::Inval);
        }
        let page = self.virt_to_page(buf).map_err(|_| DmaError::Inval)?;
        self.sg_set_page(sg, page, len, (buf.0 as usize & (PAGE_SIZE - 1)) as u32)
    }

    /// The entry, read back.
    pub fn sg_segment(&self, sg: SgEntry) -> Result<SgSegment, DmaError> {
        let w = self.sg_words(sg)?;
        let link = w[0].load(Relaxed) & !(SG_CHAIN | SG_END);
        let pfn = self
            .page_at_struct_address(VirtAddr(link))
            .map(|p| self.page_to_pfn(p))
            .ok_or(DmaError::Inval)?;
        let ol = w[1].load(Relaxed);
        Ok(SgSegment {
            pfn,
            offset: ol as u32,
            length: (ol >> 32) as u32,
            dma_address: w[2].load(Relaxed),
            dma_length: w[3].load(Relaxed) as u32,
        })
    }

    /// `sg_is_last()`.
    pub fn sg_is_last(&self, sg: SgEntry) -> bool {
        self.sg_words(sg)
            .is_ok_and(|w| w[0].load(Relaxed) & SG_END != 0)
    }

    /// The mapped segments of a table as a device is handed them: `(sg_dma_address,
    /// sg_dma_len)` of the first `nents` entries.
    pub fn sg_dma_segments<'a>(
        &'a self,
        table: &'a SgTable,
    ) -> impl Iterator<Item = (DmaAddr, usize)> + 'a {
        (0..table.nents).filter_map(move |i| {
            let s = self.sg_segment(table.sg(i)?).ok()?;
            Some((s.dma_address, s.dma_length as usize))
        })
    }

    /// Group `size` bytes starting at `offset` into the first of `npages` pages (found
    /// by `pfn_of`) into runs of physically contiguous pages, each at most `max_segment`
    /// bytes and not crossing a `boundary_mask` window; `f(pfn, offset, len)` per run.
    /// Returns the number of runs.
    fn for_each_contiguous_run(
        &self,
        pfn_of: impl Fn(u64) -> Option<Pfn>,
        offset: usize,
        size: usize,
        max_segment: u64,
        boundary_mask: u64,
        mut f: impl FnMut(Pfn, u32, u32) -> Result<(), DmaError>,
    ) -> Result<u32, DmaError> {
        if size == 0
            || offset >= PAGE_SIZE
            || max_segment < PAGE_SIZE as u64
            || boundary_mask < PAGE_SIZE as u64 - 1
        {
            return Err(DmaError::Inval);
        }
        let Some(end) = offset.checked_add(size) else {
            return Err(DmaError::Inval);
        };
        let npages = end.div_ceil(PAGE_SIZE) as u64;
        let (mut runs, mut left) = (0u32, size as u64);
        let mut run: Option<(Pfn, u64, u64)> = None; // (first pfn, phys start, len)
        for i in 0..npages {
            let pfn = pfn_of(i).ok_or(DmaError::Inval)?;
            let off = if i == 0 { offset as u64 } else { 0 };
            let len = (PAGE_SIZE as u64 - off).min(left);
            let phys = pfn.phys().0 + off;
            left -= len;
            if let Some((first, start, run_len)) = run {
                let adjacent = start + run_len == phys;
                let fits = run_len + len <= max_segment;
                let same_window = (start ^ (phys + len - 1)) & !boundary_mask == 0;
                if adjacent && fits && same_window {
                    run = Some((first, start, run_len + len));
                    continue;
                }
                f(
                    first,
                    (start & (PAGE_SIZE as u64 - 1)) as u32,
                    run_len as u32,
                )?;
                runs += 1;
            }
            run = Some((pfn, phys, len));
        }
        if let Some((first, start, run_len)) = run {
            f(
                first,
                (start & (PAGE_SIZE as u64 - 1)) as u32,
                run_len as u32,
            )?;
            runs += 1;
        }
        Ok(runs)
    }

    /// Build a table with one entry per run (two passes: count, then fill).
    fn sg_table_from_runs(
        &self,
        pfn_of: impl Fn(u64) -> Option<Pfn> + Copy,
        offset: usize,
        size: usize,
        max_segment: u64,
        boundary_mask: u64,
        gfp: Gfp,
    ) -> Result<SgTable, DmaError> {
        let n = self.for_each_contiguous_run(
            pfn_of,
            offset,
            size,
            max_segment,
            boundary_mask,
            |_, _, _| Ok(()),
        )?;
        let table = self.sg_alloc_table(n, gfp)?;
        let mut i = 0;
        let filled = self.for_each_contiguous_run(
            pfn_of,
            offset,
            size,
            max_segment,
            boundary_mask,
            |pfn, off, len| {
                let page = self.pfn_to_page(pfn).map_err(|_| DmaError::Inval)?;
                let sg = table.sg(i).ok_or(DmaError::Inval)?;
                i += 1;
                self.sg_set_page(sg, page, len, off)
            },
        );
        if filled.is_err() {
            let mut t = table;
            self.sg_free_table(&mut t);
            return Err(DmaError::Inval);
        }
        Ok(table)
    }

    /// `sg_alloc_table_from_pages_segment()`: a table for `size` bytes from `offset` into
    /// `pages`, merging physically contiguous pages into entries of at most `max_segment`
    /// bytes.
    pub fn sg_alloc_table_from_pages_segment(
        &self,
        pages: &[Pfn],
        offset: usize,
        size: usize,
        max_segment: u32,
        gfp: Gfp,
    ) -> Result<SgTable, DmaError> {
        let Some(end) = offset.checked_add(size) else {
            return Err(DmaError::Inval);
        };
        if end.div_ceil(PAGE_SIZE) > pages.len() {
            return Err(DmaError::Inval);
        }
        let pfn_of = |i: u64| pages.get(i as usize).copied();
        self.sg_table_from_runs(
            pfn_of,
            offset,
            size,
            max_segment as u64 & !(PAGE_SIZE as u64 - 1),
            u64::MAX,
            gfp,
        )
    }

    /// `sg_alloc_table_from_pages()`: the same with no segment limit but `UINT_MAX`.
    pub fn sg_alloc_table_from_pages(
        &self,
        pages: &[Pfn],
        offset: usize,
        size: usize,
        gfp: Gfp,
    ) -> Result<SgTable, DmaError> {
        self.sg_alloc_table_from_pages_segment(pages, offset, size, u32::MAX, gfp)
    }

    /// A table for a vmalloc buffer, as drivers build it: `vmalloc_to_page` for every
    /// page, physically adjacent pages merged into one entry within the device's
    /// `dma_get_max_seg_size` and segment boundary (the limits the block layer applies
    /// when it builds a request's list).
    pub fn sg_alloc_table_from_vmalloc(
        &self,
        dev: &Device,
        buf: VirtAddr,
        size: usize,
        gfp: Gfp,
    ) -> Result<SgTable, DmaError> {
        if !self.is_vmalloc_addr(buf) {
            return Err(DmaError::Inval);
        }
        let base = buf.0 & !(PAGE_SIZE as u64 - 1);
        let pfn_of = |i: u64| self.vmalloc_to_pfn(VirtAddr(base + i * PAGE_SIZE as u64));
        let offset = (buf.0 - base) as usize;
        self.sg_table_from_runs(
            pfn_of,
            offset,
            size,
            dev.dma_get_max_seg_size() as u64,
            dev.dma_get_seg_boundary(),
            gfp,
        )
    }

    /// `dma_map_sg()`: map the first `nents` entries of the table, one DMA segment each
    /// (`dma_direct_map_sg`); returns the segments mapped, 0 on failure (every segment
    /// mapped so far is unmapped again).
    pub fn dma_map_sg(
        &self,
        dev: &Device,
        table: &SgTable,
        nents: u32,
        dir: DmaDataDirection,
    ) -> u32 {
        self.dma_map_sg_inner(dev, table, nents, dir).unwrap_or(0)
    }

    fn dma_map_sg_inner(
        &self,
        dev: &Device,
        table: &SgTable,
        nents: u32,
        dir: DmaDataDirection,
    ) -> Result<u32, DmaError> {
        if !self.valid_direction(dir, "__dma_map_sg_attrs")
            || nents == 0
            || nents > table.orig_nents
        {
            return Err(DmaError::Inval);
        }
        for i in 0..nents {
            let sg = table.sg(i).ok_or(DmaError::Inval)?;
            let seg = self.sg_segment(sg);
            let addr = match seg {
                Ok(s) => self.dma_direct_map_page(
                    dev,
                    PhysAddr(s.pfn.phys().0 + s.offset as u64),
                    s.length as usize,
                    dir,
                ),
                Err(_) => DMA_MAPPING_ERROR,
            };
            if addr == DMA_MAPPING_ERROR {
                // dma_direct_map_sg()'s out_unmap: dma_direct_unmap_sg(dev, sgl, i, dir,
                // attrs | DMA_ATTR_SKIP_CPU_SYNC): nothing is copied back out of the
                // bounce buffers of a list that was never handed to the device.
                for j in 0..i {
                    if let Some(s) = table.sg(j).and_then(|sg| self.sg_segment(sg).ok()) {
                        self.dma_direct_unmap_page_attrs(
                            dev,
                            s.dma_address,
                            s.dma_length as usize,
                            dir,
                            true,
                        );
                    }
                }
                return Err(DmaError::Io);
            }
            let w = self.sg_words(sg)?;
            w[2].store(addr, Relaxed);
            w[3].store(seg.map(|s| s.length).unwrap_or(0) as u64, Relaxed);
        }
        self.dma.counters.maps.fetch_add(nents as u64, Relaxed);
        for i in 0..nents {
            if let Some(s) = table.sg(i).and_then(|sg| self.sg_segment(sg).ok()) {
                let phys = PhysAddr(s.pfn.phys().0 + s.offset as u64);
                self.debug_dma_map_sg_segment(
                    dev,
                    (phys, s.dma_address, s.dma_length as usize),
                    dir,
                    nents,
                    nents,
                );
            }
        }
        Ok(nents)
    }

    /// `dma_unmap_sg()`: `nents` is what was passed to `dma_map_sg`. dma-debug checks
    /// every mapped segment; bounce buffers are copied back and released.
    pub fn dma_unmap_sg(&self, dev: &Device, table: &SgTable, nents: u32, dir: DmaDataDirection) {
        if !self.valid_direction(dir, "dma_unmap_sg_attrs") {
            return;
        }
        let segment = |i: u32| table.sg(i).and_then(|sg| self.sg_segment(sg).ok());
        let mut mapped = None;
        for i in 0..nents.min(table.orig_nents) {
            let Some(s) = segment(i) else { break };
            if i == 0 {
                mapped = self.debug_nr_mapped_entries(
                    dev,
                    s.dma_address,
                    s.dma_length as usize,
                    nents,
                    dir,
                );
            }
            if mapped.is_some_and(|m| m != 0 && i >= m) {
                break;
            }
            self.debug_dma_unmap_sg_segment(
                dev,
                (s.dma_address, s.dma_length as usize),
                dir,
                nents,
            );
        }
        for i in 0..nents.min(table.orig_nents) {
            if let Some(s) = segment(i) {
                self.dma_direct_unmap_page(dev, s.dma_address, s.dma_length as usize, dir);
            }
        }
    }

    /// `dma_map_sgtable()`: map every entry and record the count in `nents`; `-EIO` if a
    /// segment cannot be mapped.
    pub fn dma_map_sgtable(
        &self,
        dev: &Device,
        table: &mut SgTable,
        dir: DmaDataDirection,
    ) -> Result<(), DmaError> {
        let n = self.dma_map_sg_inner(dev, table, table.orig_nents, dir)?;
        table.nents = n;
        Ok(())
    }

    /// `dma_unmap_sgtable()`.
    pub fn dma_unmap_sgtable(&self, dev: &Device, table: &SgTable, dir: DmaDataDirection) {
        self.dma_unmap_sg(dev, table, table.orig_nents, dir)
    }

    /// `dma_sync_sg_for_cpu()`: the first `nelems` entries (what was passed to
    /// `dma_map_sg`) handed back to the CPU (`dma_direct_sync_sg_for_cpu`), then
    /// `debug_dma_sync_sg_for_cpu`.
    pub fn dma_sync_sg_for_cpu(
        &self,
        dev: &Device,
        table: &SgTable,
        nelems: u32,
        dir: DmaDataDirection,
    ) {
        if !self.valid_direction(dir, "dma_sync_sg_for_cpu") {
            return;
        }
        let segs = || self.sg_mapped_segments(table, nelems);
        for (addr, len) in segs() {
            self.dma_direct_sync_single_for_cpu(dev, addr, len, dir);
        }
        self.debug_dma_sync_sg(dev, segs(), nelems, dir, true);
    }

    /// `dma_sync_sg_for_device()`.
    pub fn dma_sync_sg_for_device(
        &self,
        dev: &Device,
        table: &SgTable,
        nelems: u32,
        dir: DmaDataDirection,
    ) {
        if !self.valid_direction(dir, "dma_sync_sg_for_device") {
            return;
        }
        let segs = || self.sg_mapped_segments(table, nelems);
        for (addr, len) in segs() {
            self.dma_direct_sync_single_for_device(dev, addr, len, dir);
        }
        self.debug_dma_sync_sg(dev, segs(), nelems, dir, false);
    }

    /// `(sg_dma_address, sg_dma_len)` of the first `nelems` entries.
    fn sg_mapped_segments<'a>(
        &'a self,
        table: &'a SgTable,
        nelems: u32,
    ) -> impl Iterator<Item = (DmaAddr, usize)> + 'a {
        (0..nelems.min(table.orig_nents)).map_while(move |i| {
            let s = self.sg_segment(table.sg(i)?).ok()?;
            Some((s.dma_address, s.dma_length as usize))
        })
    }

    /// `dma_sync_sgtable_for_cpu()`: `dma_sync_sg_for_cpu(dev, sgt->sgl,
    /// sgt->orig_nents, dir)`.
    pub fn dma_sync_sgtable_for_cpu(&self, dev: &Device, table: &SgTable, dir: DmaDataDirection) {
        self.dma_sync_sg_for_cpu(dev, table, table.orig_nents, dir)
    }

    /// `dma_sync_sgtable_for_device()`.
    pub fn dma_sync_sgtable_for_device(
        &self,
        dev: &Device,
        table: &SgTable,
        dir: DmaDataDirection,
    ) {
        self.dma_sync_sg_for_device(dev, table, table.orig_nents, dir)
    }
}
