//! What dma-debug records when a driver maps or allocates (`kernel/dma/debug.c`, Linux
//! 6.6: `debug_dma_map_page`, `debug_dma_map_sg`, `debug_dma_alloc_coherent`,
//! `debug_dma_mapping_error`) and the one check made at map time, "maps memory from
//! invalid area".

use core::sync::atomic::Ordering::Relaxed;

use super::{
    hash_fn, site, DebugType, Device, DmaAddr, DmaDataDirection, DmaDebugError, Record,
    DMA_MAPPING_ERROR, MAP_ERR_CHECKED, MAP_ERR_NOT_CHECKED,
};
use crate::addr::{PhysAddr, VirtAddr};
use crate::platform::Platform;
use crate::Mm;

impl<P: Platform> Mm<P> {
    /// `debug_dma_map_single()`: an address outside the direct map is reported. (vmalloc
    /// addresses never get here: `dma_map_single_attrs` refuses them first.)
    pub(in crate::dma) fn debug_dma_map_single(&self, dev: &Device, addr: VirtAddr, len: usize) {
        if self.dma_debug_disabled() {
            return;
        }
        if !self.virt_addr_valid(addr) {
            self.err_printk(
                (dev.driver(), dev.name()),
                DmaDebugError::MapInvalidArea,
                site::MAP_INVALID_AREA,
                format_args!(
                    "device driver maps memory from invalid area [addr={:#x}] [len={len}]",
                    addr.0
                ),
            );
        }
    }

    /// `debug_dma_map_page()`.
    pub(in crate::dma) fn debug_dma_map_page(
        &self,
        dev: &Device,
        phys: PhysAddr,
        size: usize,
        dir: DmaDataDirection,
        addr: DmaAddr,
    ) {
        if addr == DMA_MAPPING_ERROR || self.dma_debug_disabled() {
            return;
        }
        let mut r = Record::new(dev, DebugType::Single, addr, size);
        r.phys = phys.0;
        r.dir = dir;
        r.map_err = MAP_ERR_NOT_CHECKED;
        self.add_dma_entry(dev, r);
    }

    /// `debug_dma_mapping_error()`: mark the first unchecked entry at `addr` checked.
    pub(in crate::dma) fn debug_dma_mapping_error(&self, dev: &Device, addr: DmaAddr) {
        if self.dma_debug_disabled() {
            return;
        }
        let state = self.dma.debug.state.lock_irqsave(self.platform());
        let walked = self.for_each_in_bucket(hash_fn(addr), |i| {
            let Some(e) = self.debug_entry(i) else {
                return true;
            };
            if e.dev_addr.load(Relaxed) != addr || e.dev_id.load(Relaxed) != dev.id() as u64 {
                return true;
            }
            let meta = e.meta.load(Relaxed);
            if (meta >> 16) & 0xff == MAP_ERR_NOT_CHECKED {
                e.meta
                    .store((meta & !(0xff << 16)) | MAP_ERR_CHECKED << 16, Relaxed);
                return false;
            }
            true
        });
        drop(state);
        if let Err(c) = walked {
            self.dma_debug_corrupted(c);
        }
    }

    /// `debug_dma_map_sg()` for one mapped segment.
    pub(in crate::dma) fn debug_dma_map_sg_segment(
        &self,
        dev: &Device,
        seg: (PhysAddr, DmaAddr, usize),
        dir: DmaDataDirection,
        nents: u32,
        mapped_ents: u32,
    ) {
        if self.dma_debug_disabled() {
            return;
        }
        let mut r = Record::new(dev, DebugType::Sg, seg.1, seg.2);
        r.phys = seg.0 .0;
        r.dir = dir;
        r.sg_call_ents = nents as u64;
        r.sg_mapped_ents = mapped_ents as u64;
        self.add_dma_entry(dev, r);
    }

    /// `get_nr_mapped_entries()`: how many segments `dma_map_sg` mapped for the list whose
    /// first segment is at `addr`. The reference carries the caller's direction, as the
    /// kernel's `ref` does (it is built with `.direction = dir` by `debug_dma_unmap_sg`
    /// and the sync hooks), so that `bucket_find_exact` weighs it.
    pub(in crate::dma) fn debug_nr_mapped_entries(
        &self,
        dev: &Device,
        addr: DmaAddr,
        size: usize,
        nents: u32,
        dir: DmaDataDirection,
    ) -> Option<u32> {
        if self.dma_debug_disabled() {
            return None;
        }
        let mut r = Record::new(dev, DebugType::Sg, addr, size);
        r.dir = dir;
        r.sg_call_ents = nents as u64;
        let state = self.dma.debug.state.lock_irqsave(self.platform());
        let found = self.bucket_find_exact(&r);
        let mapped = match found {
            Ok(f) => f
                .and_then(|i| self.read_entry(i))
                .map(|e| e.sg_mapped_ents as u32),
            Err(c) => {
                drop(state);
                self.dma_debug_corrupted(c);
                return None;
            }
        };
        drop(state);
        Some(mapped.unwrap_or(0))
    }

    /// `debug_dma_alloc_coherent()`.
    pub(in crate::dma) fn debug_dma_alloc_coherent(
        &self,
        dev: &Device,
        size: usize,
        dma: DmaAddr,
        phys: PhysAddr,
    ) {
        if self.dma_debug_disabled() {
            return;
        }
        let mut r = Record::new(dev, DebugType::Coherent, dma, size);
        r.phys = phys.0;
        self.add_dma_entry(dev, r);
    }

    /// Put back an entry [`Mm::debug_dma_free_coherent`] removed, when the free did
    /// not happen after all.
    pub(in crate::dma) fn debug_restore_entry(&self, dev: &Device, r: Record) {
        if self.dma_debug_disabled() {
            return;
        }
        self.add_dma_entry(dev, r);
    }
}
