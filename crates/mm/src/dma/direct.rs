//! dma-direct (`kernel/dma/direct.c`, `kernel/dma/direct.h`): streaming mappings that
//! hand the device the physical address when the device can reach it and bounce through
//! swiotlb when it cannot, and coherent allocations from the zone the coherent mask
//! allows.

use core::sync::atomic::Ordering::Relaxed;

use super::{dma_bit_mask, ZONE_DMA_LIMIT};
use super::{min_not_zero, Device, DmaAddr, DmaDataDirection, DmaError, DMA_MAPPING_ERROR};
use crate::addr::{get_order, PhysAddr, VirtAddr, PAGE_SIZE};
use crate::gfp::Gfp;
use crate::platform::Platform;
use crate::Mm;

impl<P: Platform> Mm<P> {
    /// `dma_capable()`: can the device drive `[addr, addr + size)`?
    pub fn dma_capable(&self, dev: &Device, addr: DmaAddr, size: usize) -> bool {
        if addr == DMA_MAPPING_ERROR {
            return false;
        }
        let end = addr.saturating_add((size as u64).saturating_sub(1));
        end <= dev.streaming_limit()
    }

    /// `dma_direct_map_page()`: the physical address if the device reaches it, else a
    /// swiotlb bounce buffer, else the kernel's overflow warning and
    /// [`DMA_MAPPING_ERROR`]. The direction only matters to non-coherent architectures
    /// (`arch_sync_dma_for_device`); x86 is cache-coherent.
    pub(crate) fn dma_direct_map_page(
        &self,
        dev: &Device,
        phys: PhysAddr,
        size: usize,
        _dir: DmaDataDirection,
    ) -> DmaAddr {
        let dma_addr = self.phys_to_dma(dev, phys);
        if self.dma_capable(dev, dma_addr, size) {
            return dma_addr;
        }
        if self.is_swiotlb_active() {
            return self.swiotlb_map(dev, phys, size);
        }
        self.dma.counters.overflow_refusals.fetch_add(1, Relaxed);
        self.dev_warn(
            dev,
            "kernel/dma/direct.h",
            "dma_direct_map_page",
            format_args!(
                "DMA addr {}+{} overflow (mask {:x}, bus limit {:x}).",
                self.pad(dma_addr),
                size,
                dev.dma_mask(),
                dev.bus_dma_limit()
            ),
        );
        DMA_MAPPING_ERROR
    }

    /// `dma_direct_unmap_page()`: release (and copy back) a bounce buffer; a direct
    /// mapping needs nothing on a cache-coherent x86.
    pub(crate) fn dma_direct_unmap_page(
        &self,
        dev: &Device,
        addr: DmaAddr,
        size: usize,
        dir: DmaDataDirection,
    ) {
        let phys = self.dma_to_phys(dev, addr);
        if self.is_swiotlb_buffer(phys) {
            self.swiotlb_tbl_unmap_single(dev, phys, size, dir);
        }
    }

    /// `dma_direct_sync_single_for_cpu()`.
    pub(crate) fn dma_direct_sync_single_for_cpu(
        &self,
        dev: &Device,
        addr: DmaAddr,
        size: usize,
        dir: DmaDataDirection,
    ) {
        let phys = self.dma_to_phys(dev, addr);
        if self.is_swiotlb_buffer(phys) && dir.device_writes() {
            self.swiotlb_bounce(dev, phys, size, DmaDataDirection::FromDevice);
        }
    }

    /// `dma_direct_sync_single_for_device()`.
    pub(crate) fn dma_direct_sync_single_for_device(
        &self,
        dev: &Device,
        addr: DmaAddr,
        size: usize,
        dir: DmaDataDirection,
    ) {
        let phys = self.dma_to_phys(dev, addr);
        if self.is_swiotlb_buffer(phys) && dir.device_reads() {
            self.swiotlb_bounce(dev, phys, size, DmaDataDirection::ToDevice);
        }
    }

    /// `dma_direct_optimal_gfp_mask()`: the zone that the coherent mask (and bus limit)
    /// calls for, and the highest physical address the buffer may reach.
    fn dma_direct_optimal_gfp_mask(&self, dev: &Device) -> (Gfp, u64) {
        let dma_limit = min_not_zero(dev.coherent_dma_mask(), dev.bus_dma_limit());
        let phys_limit = self.dma_to_phys(dev, dma_limit).0;
        if phys_limit <= ZONE_DMA_LIMIT {
            (Gfp::GFP_DMA, phys_limit)
        } else if phys_limit <= dma_bit_mask(32) {
            (Gfp::GFP_DMA32, phys_limit)
        } else {
            (Gfp::empty(), phys_limit)
        }
    }

    /// `__dma_direct_alloc_pages()`: pages from the optimal zone; pages beyond the limit
    /// are given back and the next lower zone tried (GFP_DMA32, then GFP_DMA).
    fn dma_direct_alloc_pages(&self, dev: &Device, size: usize, gfp: Gfp) -> Result<u64, DmaError> {
        let (zone, phys_limit) = self.dma_direct_optimal_gfp_mask(dev);
        let mut gfp = gfp | zone;
        let order = get_order(size);
        loop {
            if let Ok(page) = self.alloc_pages(gfp, order) {
                let phys = self.page_to_pfn(page).phys().0;
                if phys + size as u64 - 1 <= phys_limit {
                    return Ok(phys);
                }
                let _ = self.__free_pages(page, order);
            }
            // CONFIG_ZONE_DMA32 exists on x86_64 only.
            let has_dma32 = self.profile() == crate::Profile::X86_64;
            if has_dma32
                && phys_limit < u64::MAX
                && !gfp.intersects(Gfp::__GFP_DMA32 | Gfp::__GFP_DMA)
            {
                gfp |= Gfp::__GFP_DMA32;
            } else if !gfp.contains(Gfp::__GFP_DMA) {
                gfp = (gfp - Gfp::__GFP_DMA32) | Gfp::__GFP_DMA;
            } else {
                return Err(DmaError::NoMem);
            }
        }
    }

    /// `dma_alloc_coherent()`: `size` bytes of zeroed, physically contiguous memory that
    /// the device reaches under its coherent mask, as (CPU address, bus address).
    /// `dma_alloc_attrs` lets the implementation choose the zone, so zone flags in `gfp`
    /// are dropped.
    pub fn dma_alloc_coherent(
        &self,
        dev: &Device,
        size: usize,
        gfp: Gfp,
    ) -> Result<(VirtAddr, DmaAddr), DmaError> {
        if size == 0 || gfp.contains(Gfp::__GFP_COMP) {
            return Err(DmaError::Inval);
        }
        let gfp = gfp - (Gfp::__GFP_DMA | Gfp::__GFP_DMA32 | Gfp::__GFP_HIGHMEM);
        let phys = self.dma_direct_alloc_pages(dev, size, gfp)?;
        let Some(cpu_addr) = self.layout.phys_to_virt(phys) else {
            return Err(DmaError::NoMem);
        };
        let len = PAGE_SIZE << get_order(size);
        // SAFETY: the pages were just allocated to us, and are RAM.
        unsafe { core::ptr::write_bytes(self.dma_phys_ptr(phys), 0, len) };
        let dma = self.phys_to_dma(dev, PhysAddr(phys));
        self.dma.counters.coherent_live.fetch_add(1, Relaxed);
        self.debug_dma_alloc_coherent(dev, size, dma, PhysAddr(phys));
        Ok((VirtAddr(cpu_addr), dma))
    }

    /// `dma_free_coherent()`: dma-debug checks the free against the allocation, then the
    /// pages go back to the page allocator.
    pub fn dma_free_coherent(
        &self,
        dev: &Device,
        size: usize,
        cpu_addr: VirtAddr,
        dma_handle: DmaAddr,
    ) -> Result<(), DmaError> {
        let Some(phys) = self.layout.virt_to_phys(cpu_addr.0) else {
            return Err(DmaError::Inval);
        };
        self.debug_dma_free_coherent(dev, size, PhysAddr(phys), dma_handle);
        let page = self.virt_to_page(cpu_addr).map_err(|_| DmaError::Inval)?;
        self.__free_pages(page, get_order(size))
            .map_err(|_| DmaError::Inval)?;
        self.dma.counters.coherent_live.fetch_sub(1, Relaxed);
        Ok(())
    }
}
