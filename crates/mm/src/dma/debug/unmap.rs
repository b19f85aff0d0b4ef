//! The checks of an unmap or free against what was mapped (`kernel/dma/debug.c`, Linux
//! 6.6: `check_unmap`, from `debug_dma_unmap_page`, `debug_dma_unmap_sg`,
//! `debug_dma_free_coherent`): the address, size, function, CPU address, entry count,
//! direction, and whether `dma_mapping_error` was called.

use super::{
    site, DebugType, Device, DmaAddr, DmaDataDirection, DmaDebugError, Record, DMA_MAPPING_ERROR,
    MAP_ERR_NOT_CHECKED,
};
use crate::addr::PhysAddr;
use crate::platform::Platform;
use crate::Mm;

impl<P: Platform> Mm<P> {
    /// `check_unmap()`: find the mapping and compare; the entry is removed (and
    /// returned).
    pub(super) fn check_unmap(&self, dev: &Device, r: Record) -> Option<Record> {
        // The names are only needed for a report: not formatted on the hot path.
        let names = || (dev.driver(), dev.name());
        let mut state = self.dma.debug.state.lock_irqsave(self.platform());
        let found = self.bucket_find_exact(&r);
        let found = match found {
            Ok(f) => f,
            Err(c) => {
                drop(state);
                self.dma_debug_corrupted(c);
                return None;
            }
        };
        let Some((i, e)) = found.and_then(|i| Some((i, self.read_entry(i)?))) else {
            drop(state);
            if r.dev_addr == DMA_MAPPING_ERROR {
                self.err_printk(
                    names(),
                    DmaDebugError::FreeInvalidAddress,
                    site::FREE_INVALID_ADDRESS,
                    format_args!("device driver tries to free an invalid DMA memory address"),
                );
            } else {
                self.err_printk(
                    names(),
                    DmaDebugError::FreeNotAllocated,
                    site::FREE_NOT_ALLOCATED,
                    format_args!(
                        "device driver tries to free DMA memory it has not allocated [device address=0x{:016x}] [size={} bytes]",
                        r.dev_addr, r.size
                    ),
                );
            }
            return None;
        };
        let removed = self.remove_entry(&mut state, i);
        drop(state);
        if let Err(c) = removed {
            self.dma_debug_corrupted(c);
            return None;
        }
        if r.size != e.size {
            self.err_printk(names(), DmaDebugError::DifferentSize, site::DIFFERENT_SIZE, format_args!(
                "device driver frees DMA memory with different size [device address=0x{:016x}] [map size={} bytes] [unmap size={} bytes]",
                r.dev_addr, e.size, r.size
            ));
        }
        if r.kind != e.kind {
            self.err_printk(names(), DmaDebugError::WrongFunction, site::WRONG_FUNCTION, format_args!(
                "device driver frees DMA memory with wrong function [device address=0x{:016x}] [size={} bytes] [mapped as {}] [unmapped as {}]",
                r.dev_addr, r.size, e.kind.name(), r.kind.name()
            ));
        } else if e.kind == DebugType::Coherent && r.phys != e.phys {
            self.err_printk(names(), DmaDebugError::DifferentCpuAddress, site::DIFFERENT_CPU_ADDRESS, format_args!(
                "device driver frees DMA memory with different CPU address [device address=0x{:016x}] [size={} bytes] [cpu alloc address=0x{:016x}] [cpu free address=0x{:016x}]",
                r.dev_addr, r.size, e.phys, r.phys
            ));
        }
        if r.sg_call_ents != 0 && r.kind == DebugType::Sg && r.sg_call_ents != e.sg_call_ents {
            self.err_printk(names(), DmaDebugError::DifferentSgCount, site::DIFFERENT_SG_COUNT, format_args!(
                "device driver frees DMA sg list with different entry count [map count={}] [unmap count={}]",
                e.sg_call_ents, r.sg_call_ents
            ));
        }
        if r.dir != e.dir {
            self.err_printk(names(), DmaDebugError::DifferentDirection, site::DIFFERENT_DIRECTION, format_args!(
                "device driver frees DMA memory with different direction [device address=0x{:016x}] [size={} bytes] [mapped with {}] [unmapped with {}]",
                r.dev_addr, r.size, e.dir.name(), r.dir.name()
            ));
        }
        if e.map_err == MAP_ERR_NOT_CHECKED {
            self.err_printk(names(), DmaDebugError::MapErrorNotChecked, site::MAP_ERROR_NOT_CHECKED, format_args!(
                "device driver failed to check map error[device address=0x{:016x}] [size={} bytes] [mapped as {}]",
                r.dev_addr, r.size, e.kind.name()
            ));
        }
        Some(e)
    }

    /// `debug_dma_unmap_page()`.
    pub(in crate::dma) fn debug_dma_unmap_page(
        &self,
        dev: &Device,
        addr: DmaAddr,
        size: usize,
        dir: DmaDataDirection,
    ) {
        if self.dma_debug_disabled() {
            return;
        }
        let mut r = Record::new(dev, DebugType::Single, addr, size);
        r.dir = dir;
        let _ = self.check_unmap(dev, r);
    }

    /// `debug_dma_unmap_sg()` for one segment.
    pub(in crate::dma) fn debug_dma_unmap_sg_segment(
        &self,
        dev: &Device,
        seg: (DmaAddr, usize),
        dir: DmaDataDirection,
        nents: u32,
    ) {
        if self.dma_debug_disabled() {
            return;
        }
        let mut r = Record::new(dev, DebugType::Sg, seg.0, seg.1);
        r.dir = dir;
        r.sg_call_ents = nents as u64;
        let _ = self.check_unmap(dev, r);
    }

    /// `debug_dma_free_coherent()`.
    pub(in crate::dma) fn debug_dma_free_coherent(
        &self,
        dev: &Device,
        size: usize,
        phys: PhysAddr,
        dma: DmaAddr,
    ) -> Option<Record> {
        if self.dma_debug_disabled() {
            return None;
        }
        let mut r = Record::new(dev, DebugType::Coherent, dma, size);
        r.phys = phys.0;
        self.check_unmap(dev, r)
    }
}
