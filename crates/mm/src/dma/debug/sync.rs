//! The checks of a sync against what was mapped (`kernel/dma/debug.c`, Linux 6.6:
//! `check_sync`, from `debug_dma_sync_single_for_cpu` / `_for_device` and
//! `debug_dma_sync_sg_for_cpu` / `_for_device`): allocated, inside the mapping, same
//! direction, a direction that allows the sync, same entry count.

use super::{site, DebugType, Device, DmaAddr, DmaDataDirection, DmaDebugError, Record};
use crate::platform::Platform;
use crate::Mm;

impl<P: Platform> Mm<P> {
    /// `check_sync()`.
    pub(super) fn check_sync(&self, dev: &Device, r: Record, to_cpu: bool) {
        let names = (dev.driver(), dev.name());
        let state = self.dma.debug.state.lock_irqsave(self.platform());
        let found = self.bucket_find_contain(&r);
        let found = match found {
            Ok(f) => f.and_then(|i| self.read_entry(i)),
            Err(c) => {
                drop(state);
                self.dma_debug_corrupted(c);
                return;
            }
        };
        drop(state);
        let Some(e) = found else {
            self.err_printk(names, DmaDebugError::SyncNotAllocated, site::SYNC_NOT_ALLOCATED, format_args!(
                "device driver tries to sync DMA memory it has not allocated [device address=0x{:016x}] [size={} bytes]",
                r.dev_addr, r.size
            ));
            return;
        };
        if r.size > e.size {
            self.err_printk(names, DmaDebugError::SyncOutsideRange, site::SYNC_OUTSIDE_RANGE, format_args!(
                "device driver syncs DMA memory outside allocated range [device address=0x{:016x}] [allocation size={} bytes] [sync offset+size={}]",
                e.dev_addr, e.size, r.size
            ));
        }
        if e.dir == DmaDataDirection::Bidirectional {
            return;
        }
        if r.dir != e.dir {
            self.err_printk(names, DmaDebugError::SyncDifferentDirection, site::SYNC_DIFFERENT_DIRECTION, format_args!(
                "device driver syncs DMA memory with different direction [device address=0x{:016x}] [size={} bytes] [mapped with {}] [synced with {}]",
                r.dev_addr, e.size, e.dir.name(), r.dir.name()
            ));
        }
        if to_cpu && e.dir != DmaDataDirection::FromDevice && r.dir != DmaDataDirection::ToDevice {
            self.err_printk(names, DmaDebugError::SyncWrongWay, site::SYNC_READ_ONLY_FOR_CPU, format_args!(
                "device driver syncs device read-only DMA memory for cpu [device address=0x{:016x}] [size={} bytes] [mapped with {}] [synced with {}]",
                r.dev_addr, e.size, e.dir.name(), r.dir.name()
            ));
        }
        if !to_cpu && e.dir != DmaDataDirection::ToDevice && r.dir != DmaDataDirection::FromDevice {
            self.err_printk(names, DmaDebugError::SyncWrongWay, site::SYNC_WRITE_ONLY_TO_DEVICE, format_args!(
                "device driver syncs device write-only DMA memory to device [device address=0x{:016x}] [size={} bytes] [mapped with {}] [synced with {}]",
                r.dev_addr, e.size, e.dir.name(), r.dir.name()
            ));
        }
        // kernel/dma/debug.c check_sync(): if (ref->sg_call_ents && ref->type ==
        // dma_debug_sg && ref->sg_call_ents != entry->sg_call_ents) err_printk(...
        // "device driver syncs DMA sg list with different entry count [map count=%d]
        // [sync count=%d]\n", entry->sg_call_ents, ref->sg_call_ents);
        if r.sg_call_ents != 0 && r.kind == DebugType::Sg && r.sg_call_ents != e.sg_call_ents {
            self.err_printk(names, DmaDebugError::SyncDifferentSgCount, site::SYNC_DIFFERENT_SG_COUNT, format_args!(
                "device driver syncs DMA sg list with different entry count [map count={}] [sync count={}]",
                e.sg_call_ents, r.sg_call_ents
            ));
        }
    }

    /// `debug_dma_sync_single_for_cpu()` / `_for_device()`.
    pub(in crate::dma) fn debug_dma_sync_single(
        &self,
        dev: &Device,
        addr: DmaAddr,
        size: usize,
        dir: DmaDataDirection,
        to_cpu: bool,
    ) {
        if self.dma_debug_disabled() {
            return;
        }
        let mut r = Record::new(dev, DebugType::Single, addr, size);
        r.dir = dir;
        self.check_sync(dev, r, to_cpu);
    }

    /// `debug_dma_sync_sg_for_cpu()` / `_for_device()`: each of the first `nelems`
    /// segments `(sg_dma_address, sg_dma_len)` checked as `check_sync` checks it, up to
    /// the count the list was mapped with (`get_nr_mapped_entries` of the first).
    pub(in crate::dma) fn debug_dma_sync_sg(
        &self,
        dev: &Device,
        segments: impl Iterator<Item = (DmaAddr, usize)>,
        nelems: u32,
        dir: DmaDataDirection,
        to_cpu: bool,
    ) {
        if self.dma_debug_disabled() {
            return;
        }
        let mut mapped = 0;
        for (i, (addr, len)) in segments.enumerate() {
            if i == 0 {
                mapped = self
                    .debug_nr_mapped_entries(dev, addr, len, nelems, dir)
                    .unwrap_or(0);
            }
            if i as u32 >= mapped {
                break;
            }
            let mut r = Record::new(dev, DebugType::Sg, addr, len);
            r.dir = dir;
            r.sg_call_ents = nelems as u64;
            self.check_sync(dev, r, to_cpu);
        }
    }
}
