//! The DMA layer's counters and its checker: [`DmaStats`] (what `dma_stats` reports),
//! and [`Mm::dma_check`] / [`Mm::dma_check_idle`], which walk swiotlb's slots and
//! dma-debug's block (kmemlab's own, as the other subsystems' checkers).

use core::fmt;
use core::sync::atomic::Ordering::Relaxed;

use super::{debug, DmaDebugError};
use crate::platform::Platform;
use crate::Mm;

impl<P: Platform> Mm<P> {
    /// The DMA layer's counters and swiotlb occupancy.
    pub fn dma_stats(&self) -> DmaStats {
        let c = &self.dma.counters;
        let (used, hiwater) = self.swiotlb_used();
        let (debug_errors, debug_error_count) = self.dma_debug_error_counts();
        DmaStats {
            mappings_live: self.dma_debug_live_entries(),
            maps: c.maps.load(Relaxed),
            bounced_maps: c.bounced_maps.load(Relaxed),
            bounce_bytes: c.bounce_bytes.load(Relaxed),
            swiotlb_slots_used: used,
            swiotlb_slots_total: self.dma.swiotlb.nslabs,
            swiotlb_slots_hiwater: hiwater,
            vmalloc_rejections: c.vmalloc_rejections.load(Relaxed),
            overflow_refusals: c.overflow_refusals.load(Relaxed),
            swiotlb_full: c.swiotlb_full.load(Relaxed),
            coherent_live: c.coherent_live.load(Relaxed),
            debug_errors,
            debug_error_count,
            debug_reports_dropped: self.dma_debug_dropped(),
            warnings: c.warnings.load(Relaxed),
        }
    }

    /// The DMA layer's invariants: every swiotlb slot's free-run count agrees with the
    /// slots after it, `used` counts the slots in use, and dma-debug's entries are each
    /// either hashed or free.
    pub(crate) fn dma_check(&self) -> Result<(), DmaCheckError> {
        self.swiotlb_check()?;
        self.dma_debug_check()
    }

    /// [`Mm::dma_check`], and nothing mapped: every swiotlb slot is free and dma-debug
    /// tracks no mapping (for after a driver unmapped and freed everything).
    pub fn dma_check_idle(&self) -> Result<(), DmaCheckError> {
        self.dma_check()?;
        let (slots_used, _) = self.swiotlb_used();
        let mappings_live = self.dma_debug_live_entries();
        if slots_used != 0 || mappings_live != 0 {
            return Err(DmaCheckError::Busy {
                slots_used,
                mappings_live,
            });
        }
        Ok(())
    }
}

/// What the DMA layer has done, as [`Mm::dma_stats`] reports it.
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq)]
pub struct DmaStats {
    /// Streaming mappings (single and scatterlist segments) and coherent buffers live, as
    /// dma-debug tracks them.
    pub mappings_live: u64,
    /// Streaming mappings made (single, page, and each scatterlist segment).
    pub maps: u64,
    /// Streaming mappings that bounced through swiotlb.
    pub bounced_maps: u64,
    /// Bytes copied to or from bounce buffers.
    pub bounce_bytes: u64,
    /// swiotlb slots in use.
    pub swiotlb_slots_used: u64,
    /// swiotlb slots in the pool (0: no pool).
    pub swiotlb_slots_total: u64,
    /// The most slots ever in use at once.
    pub swiotlb_slots_hiwater: u64,
    /// `dma_map_single` calls refused because the buffer was vmalloc memory.
    pub vmalloc_rejections: u64,
    /// Mappings refused because the buffer was beyond the mask and could not bounce.
    pub overflow_refusals: u64,
    /// Bounces refused because swiotlb had no room ("swiotlb buffer is full").
    pub swiotlb_full: u64,
    /// Coherent allocations live.
    pub coherent_live: u64,
    /// dma-debug reports, by kind ([`DmaDebugError::index`]).
    pub debug_errors: [u64; debug::NR_DEBUG_ERRORS],
    /// All dma-debug reports (`error_count`).
    pub debug_error_count: u64,
    /// Freed-while-mapped reports counted but not printed (beyond 8 per free).
    pub debug_reports_dropped: u64,
    /// Warnings and BUGs printed by the mapping layer itself (vmalloc rejections,
    /// overflows, invalid directions, bounce overflows).
    pub warnings: u64,
}

impl DmaStats {
    /// dma-debug reports of one kind.
    pub fn debug(&self, kind: DmaDebugError) -> u64 {
        self.debug_errors[kind.index()]
    }
}

/// Why [`Mm::dma_check`] failed.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum DmaCheckError {
    /// A slot's free-run count disagrees with the slots after it.
    SwiotlbList {
        /// The slot.
        index: u64,
        /// What it holds.
        found: u64,
        /// What the slots after it say.
        expected: u64,
    },
    /// The area's `used` disagrees with the slots in use.
    SwiotlbUsed {
        /// The counter.
        counted: u64,
        /// Slots whose `list` is 0.
        found: u64,
    },
    /// Something is still mapped or allocated ([`Mm::dma_check_idle`]).
    Busy {
        /// swiotlb slots in use.
        slots_used: u64,
        /// Mappings and coherent buffers dma-debug still tracks.
        mappings_live: u64,
    },
    /// dma-debug's free list and hash do not add up to the preallocated entries.
    DebugEntries {
        /// Entries in the hash.
        hashed: u64,
        /// Entries on the free list.
        free: u64,
        /// Entries preallocated.
        total: u64,
    },
    /// dma-debug's block was overwritten (by a device, say): a link leads out of the
    /// block or round in a cycle. dma-debug disabled itself when it met it.
    DebugCorrupted {
        /// The bucket whose chain is broken (`u64::MAX`: the free list, or not known).
        bucket: u64,
        /// The entry holding the bad link (`u64::MAX`: the head, or not known).
        index: u64,
        /// The link found.
        link: u64,
    },
}

impl fmt::Display for DmaCheckError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DmaCheckError::SwiotlbList {
                index,
                found,
                expected,
            } => write!(
                f,
                "swiotlb slot {index}: list {found}, the slots after it say {expected}"
            ),
            DmaCheckError::Busy {
                slots_used,
                mappings_live,
            } => write!(
                f,
                "{slots_used} swiotlb slots in use, {mappings_live} mappings live"
            ),
            DmaCheckError::SwiotlbUsed { counted, found } => {
                write!(f, "swiotlb used {counted}, but {found} slots are in use")
            }
            DmaCheckError::DebugEntries {
                hashed,
                free,
                total,
            } => write!(
                f,
                "dma-debug: {hashed} hashed + {free} free entries != {total} preallocated"
            ),
            DmaCheckError::DebugCorrupted {
                bucket,
                index,
                link,
            } => write!(
                f,
                "dma-debug: entries corrupted (bucket {bucket:#x}, entry {index:#x}, link {link:#x})"
            ),
        }
    }
}

impl core::error::Error for DmaCheckError {}
