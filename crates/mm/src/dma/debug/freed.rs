//! kmemlab's own dma-debug check: memory freed while a streaming mapping still covers
//! it ("device driver frees memory that is still DMA-mapped"), run as the free hook
//! dma-debug registers at boot ([`crate::debugobjects`]) from the page allocator's and
//! the slab's free paths.

use core::sync::atomic::Ordering::Relaxed;

use super::{site, DebugType, DmaDebugError, Name, Record, HASH_SIZE};
use crate::addr::PhysAddr;
use crate::platform::Platform;
use crate::Mm;

impl<P: Platform> Mm<P> {
    /// The free hook dma-debug registers at boot ([`crate::debugobjects`]): memory is
    /// going back to an allocator (`kfree`, `__free_pages`, and through them `vfree`):
    /// report every streaming mapping that still covers part of it. Costs a
    /// few loads unless a streaming mapping is live and the freed range meets the span
    /// `[range_lo, range_hi)` of the live ones (a conservative span: it only shrinks back
    /// when no streaming mapping is left), so that the hash is not scanned with IRQs off
    /// on every free.
    ///
    /// The kernel has no such check any more (`debug_dma_assert_idle()`, which flagged
    /// a CPU touching a page with an active DMA mapping, went away in 5.9), so the report
    /// is kmemlab's, written in dma-debug's style: "device driver frees memory that is
    /// still DMA-mapped [device address=...] [size=... bytes] [mapped as ...] [mapped
    /// with ...]". The first 8 per free are printed; the rest are counted
    /// ([`crate::dma::DmaStats::debug_reports_dropped`]) and summed up in one line.
    pub(super) fn dma_debug_freeing(mm: &Mm<P>, phys: PhysAddr, len: u64) {
        mm.debug_check_freed(phys.0, len);
    }

    /// The last streaming entry is gone (the lock held): nothing can be freed while
    /// mapped, so the free hook is disarmed and the range forgotten.
    pub(super) fn no_streaming_left(&self) {
        let d = &self.dma.debug;
        d.streaming_live.store(0, Relaxed);
        if let Some(hook) = d.free_hook {
            self.arm_free_hook(hook, false);
        }
        d.range_lo.store(u64::MAX, Relaxed);
        d.range_hi.store(0, Relaxed);
    }

    #[cold]
    pub(super) fn debug_check_freed(&self, start: u64, len: u64) {
        let d = &self.dma.debug;
        let end = start.saturating_add(len);
        if d.disabled.load(Relaxed)
            || end <= d.range_lo.load(Relaxed)
            || start >= d.range_hi.load(Relaxed)
        {
            return;
        }
        let state = d.state.lock_irqsave(self.platform());
        let mut hits = [0u64; 8];
        let (mut n, mut more) = (0, 0u64);
        let mut walked = Ok(());
        for bucket in 0..HASH_SIZE {
            walked = self.for_each_in_bucket(bucket, |i| {
                let Some(e) = self.read_entry(i) else {
                    return true;
                };
                if e.kind != DebugType::Coherent
                    && e.phys < end
                    && start < e.phys.saturating_add(e.size.max(1))
                {
                    if n < hits.len() {
                        hits[n] = i;
                        n += 1;
                    } else {
                        more += 1;
                    }
                }
                true
            });
            if walked.is_err() {
                break;
            }
        }
        let records: [Option<(Record, Name, Name)>; 8] = core::array::from_fn(|k| {
            (k < n).then(|| {
                let (driver, name) = self.entry_names(hits[k]);
                self.read_entry(hits[k]).map(|e| (e, driver, name))
            })?
        });
        drop(state);
        if let Err(c) = walked {
            self.dma_debug_corrupted(c);
            return;
        }
        for (e, driver, name) in records.iter().flatten() {
            self.err_printk(
                (driver.as_str(), name.as_str()),
                DmaDebugError::FreedWhileMapped,
                site::FREED_WHILE_MAPPED,
                format_args!(
                    "device driver frees memory that is still DMA-mapped [device address=0x{:016x}] [size={} bytes] [mapped as {}] [mapped with {}]",
                    e.dev_addr, e.size, e.kind.name(), e.dir.name()
                ),
            );
        }
        if more > 0 {
            d.dropped.fetch_add(more, Relaxed);
            self.printk(format_args!(
                "DMA-API: {more} more mappings of the freed memory not reported"
            ));
        }
    }
}
