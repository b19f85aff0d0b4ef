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
use crate::report::KernelSite as KS;
use crate::Mm;

impl<P: Platform> Mm<P> {
    /// `dma_capable()`: can the device drive `[addr, addr + size)`? The kernel computes
    /// `end = addr + size - 1` unchecked; a range whose end wraps past the top of the bus
    /// is refused here rather than taken for a small one (or saturated to a 64-bit mask).
    pub fn dma_capable(&self, dev: &Device, addr: DmaAddr, size: usize) -> bool {
        if addr == DMA_MAPPING_ERROR {
            return false;
        }
        let Some(end) = addr.checked_add((size as u64).saturating_sub(1)) else {
            return false;
        };
        end <= dev.streaming_limit()
    }

    /// `dma_direct_map_page()`: the physical address if the device reaches it, else a
    /// swiotlb bounce buffer, else the kernel's overflow warning and
    /// [`DMA_MAPPING_ERROR`]. The direction only matters to non-coherent architectures
    /// (`arch_sync_dma_for_device`); x86 is cache-coherent.
    pub(in crate::dma) fn dma_direct_map_page(
        &self,
        dev: &Device,
        phys: PhysAddr,
        size: usize,
        _dir: DmaDataDirection,
    ) -> DmaAddr {
        let dma_addr = self.phys_to_dma(dev, phys);
        // kmemlab refuses a buffer that wraps the address space or runs past RAM (the
        // kernel trusts the driver's size; dma-debug and the copies later compute
        // `phys + size`), with the kernel's overflow warning.
        let in_ram = phys
            .0
            .checked_add(size as u64)
            .is_some_and(|end| self.memblock().is_memory(phys.0, end));
        if !in_ram {
            return self.map_overflow(dev, dma_addr, size);
        }
        if self.dma_capable(dev, dma_addr, size) {
            return dma_addr;
        }
        if self.is_swiotlb_active() {
            return self.swiotlb_map(dev, phys, size);
        }
        self.map_overflow(dev, dma_addr, size)
    }

    /// `dma_direct_map_page`'s refusal: the overflow warning, counted; DMA_MAPPING_ERROR.
    fn map_overflow(&self, dev: &Device, dma_addr: DmaAddr, size: usize) -> DmaAddr {
        self.dma.counters.overflow_refusals.fetch_add(1, Relaxed);
        // 6.6 `dma_direct_map_page()`: `dev_WARN_ONCE(dev, 1, "DMA addr %pad+%zu overflow …")`.
        const SITE: KS = KS {
            file: "kernel/dma/direct.h",
            line: 104,
            func: "dma_direct_map_page",
        };
        self.dev_warn(
            dev,
            SITE,
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
    pub(in crate::dma) fn dma_direct_unmap_page(
        &self,
        dev: &Device,
        addr: DmaAddr,
        size: usize,
        dir: DmaDataDirection,
    ) {
        self.dma_direct_unmap_page_attrs(dev, addr, size, dir, false)
    }

    /// `dma_direct_unmap_page(..., attrs)`: with `skip_cpu_sync`
    /// (`DMA_ATTR_SKIP_CPU_SYNC`) a bounce buffer is released without being copied back,
    /// as `dma_direct_map_sg`'s failure path unmaps what it mapped.
    pub(in crate::dma) fn dma_direct_unmap_page_attrs(
        &self,
        dev: &Device,
        addr: DmaAddr,
        size: usize,
        dir: DmaDataDirection,
        skip_cpu_sync: bool,
    ) {
        let phys = self.dma_to_phys(dev, addr);
        if self.is_swiotlb_buffer(phys) {
            self.swiotlb_tbl_unmap_single(dev, phys, size, dir, skip_cpu_sync);
        }
    }

    /// `dma_direct_sync_single_for_cpu()`.
    pub(in crate::dma) fn dma_direct_sync_single_for_cpu(
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
    pub(in crate::dma) fn dma_direct_sync_single_for_device(
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

    /// `__dma_direct_alloc_pages()`: pages from the optimal zone; pages that came back
    /// beyond the limit (`!dma_coherent_ok`) are given back and the next lower zone tried
    /// (GFP_DMA32, then GFP_DMA). As in kernel/dma/direct.c, a failed `alloc_pages` is
    /// not retried in a lower zone: only `if (page && !dma_coherent_ok(dev,
    /// page_to_phys(page), size))` leads to `goto again`.
    fn dma_direct_alloc_pages(&self, dev: &Device, size: usize, gfp: Gfp) -> Result<u64, DmaError> {
        let (zone, phys_limit) = self.dma_direct_optimal_gfp_mask(dev);
        let mut gfp = gfp | zone;
        let order = get_order(size);
        loop {
            let page = self.alloc_pages(gfp, order).map_err(|_| DmaError::NoMem)?;
            let phys = self.page_to_pfn(page).phys().0;
            // dma_coherent_ok(): phys + size - 1 <= phys_limit.
            if phys
                .checked_add((size as u64).saturating_sub(1))
                .is_some_and(|end| end <= phys_limit)
            {
                return Ok(phys);
            }
            let _ = self.__free_pages(page, order);
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

    /// 6.6 `dma_alloc_attrs()`: `if (WARN_ON_ONCE(flag & __GFP_COMP)) return NULL;`.
    const ALLOC_GFP_COMP: KS = KS {
        file: "kernel/dma/mapping.c",
        line: 510,
        func: "dma_alloc_attrs",
    };
    /// 6.6 `dma_free_attrs()`: `WARN_ON(irqs_disabled());`.
    const FREE_IRQS_DISABLED: KS = KS {
        file: "kernel/dma/mapping.c",
        line: 545,
        func: "dma_free_attrs",
    };

    /// `dma_alloc_coherent()`: `size` bytes of zeroed, physically contiguous memory that
    /// the device reaches under its coherent mask, as (CPU address, bus address).
    /// `dma_alloc_attrs` lets the implementation choose the zone, so zone flags in `gfp`
    /// are dropped; `__GFP_COMP` is refused with `if (WARN_ON_ONCE(flag & __GFP_COMP))
    /// return NULL;` ("DMA allocations can never be turned back into a page pointer").
    pub fn dma_alloc_coherent(
        &self,
        dev: &Device,
        size: usize,
        gfp: Gfp,
    ) -> Result<(VirtAddr, DmaAddr), DmaError> {
        if gfp.contains(Gfp::__GFP_COMP) {
            if self.warn_once_first(&Self::ALLOC_GFP_COMP) {
                self.dma.counters.warnings.fetch_add(1, Relaxed);
                self.warn_at(&Self::ALLOC_GFP_COMP, format_args!(""));
            }
            return Err(DmaError::Inval);
        }
        if size == 0 {
            return Err(DmaError::Inval);
        }
        let gfp = gfp - (Gfp::__GFP_DMA | Gfp::__GFP_DMA32 | Gfp::__GFP_HIGHMEM);
        let phys = self.dma_direct_alloc_pages(dev, size, gfp)?;
        let order = get_order(size);
        let Some(cpu_addr) = self.layout().phys_to_virt(phys) else {
            if let Ok(page) = self.pfn_to_page(PhysAddr(phys).pfn()) {
                let _ = self.__free_pages(page, order);
            }
            return Err(DmaError::NoMem);
        };
        self.dma_zero_phys(phys, PAGE_SIZE << order);
        let dma = self.phys_to_dma(dev, PhysAddr(phys));
        self.dma.counters.coherent_live.fetch_add(1, Relaxed);
        self.debug_dma_alloc_coherent(dev, size, dma, PhysAddr(phys));
        Ok((VirtAddr(cpu_addr), dma))
    }

    /// `dma_free_coherent()`: `WARN_ON(irqs_disabled())` as `dma_free_attrs` has it (the
    /// free goes on), dma-debug checks the free against the allocation, then the pages
    /// go back to the page allocator. If the page allocator refuses them, the buffer is
    /// still allocated: it stays counted in `coherent_live`, dma-debug's entry is put
    /// back, and the refusal is printed.
    pub fn dma_free_coherent(
        &self,
        dev: &Device,
        size: usize,
        cpu_addr: VirtAddr,
        dma_handle: DmaAddr,
    ) -> Result<(), DmaError> {
        if crate::report::warn_on!(
            self,
            self.platform().irqs_disabled(),
            Self::FREE_IRQS_DISABLED
        ) {
            self.dma.counters.warnings.fetch_add(1, Relaxed);
        }
        let Some(phys) = self.layout().virt_to_phys(cpu_addr.0) else {
            return Err(DmaError::Inval);
        };
        let page = self.virt_to_page(cpu_addr).map_err(|_| DmaError::Inval)?;
        let tracked = self.debug_dma_free_coherent(dev, size, PhysAddr(phys), dma_handle);
        if let Err(e) = self.__free_pages(page, get_order(size)) {
            if let Some(entry) = tracked {
                self.debug_restore_entry(dev, entry);
            }
            self.dev_printk(
                dev,
                format_args!(
                    "dma_free_coherent: pages at {:#x} (order {}) not freed ({e:?}); still allocated",
                    phys,
                    get_order(size)
                ),
            );
            return Err(DmaError::Inval);
        }
        let _ = self
            .dma
            .counters
            .coherent_live
            .fetch_update(Relaxed, Relaxed, |v| Some(v.saturating_sub(1)));
        Ok(())
    }
}
