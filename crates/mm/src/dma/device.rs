//! `struct device` as the DMA layer sees it (`include/linux/device.h`,
//! `include/linux/dma-mapping.h`): the driver's and device's names, the streaming and
//! coherent masks, the bus limit, and the segment size and boundary (`dma_parms`).

use core::fmt;
use core::sync::atomic::{AtomicU32, AtomicU64, Ordering::Relaxed};

use super::{dma_bit_mask, DmaError, DEFAULT_MAX_SEG_SIZE, DEFAULT_SEG_BOUNDARY};

/// A short name kept inline (no allocator): truncated to 31 bytes at a character boundary.
#[derive(Copy, Clone)]
pub(super) struct Name {
    pub(super) bytes: [u8; 31],
    pub(super) len: u8,
}

impl Name {
    pub(super) fn new(s: &str) -> Name {
        let mut len = s.len().min(31);
        while !s.is_char_boundary(len) {
            len -= 1;
        }
        let mut bytes = [0; 31];
        bytes[..len].copy_from_slice(&s.as_bytes()[..len]);
        Name {
            bytes,
            len: len as u8,
        }
    }

    pub(super) fn as_str(&self) -> &str {
        core::str::from_utf8(&self.bytes[..self.len as usize]).unwrap_or("?")
    }
}

static NEXT_DEVICE_ID: AtomicU32 = AtomicU32::new(1);

/// The DMA part of `struct device`: the driver and device names its messages carry, the
/// streaming and coherent masks, `bus_dma_limit` and the `dma_parms` limits.
pub struct Device {
    pub(super) id: u32,
    pub(super) driver: Name,
    pub(super) name: Name,
    pub(super) dma_mask: AtomicU64,
    pub(super) coherent_dma_mask: AtomicU64,
    pub(super) bus_dma_limit: AtomicU64,
    pub(super) max_segment_size: AtomicU32,
    pub(super) segment_boundary_mask: AtomicU64,
}

impl Device {
    /// A device bound to `driver`, named `name` (`dev_driver_string`, `dev_name`), with
    /// the 32-bit default masks a PCI device starts with.
    pub fn new(driver: &str, name: &str) -> Device {
        Device {
            id: NEXT_DEVICE_ID.fetch_add(1, Relaxed),
            driver: Name::new(driver),
            name: Name::new(name),
            dma_mask: AtomicU64::new(dma_bit_mask(32)),
            coherent_dma_mask: AtomicU64::new(dma_bit_mask(32)),
            bus_dma_limit: AtomicU64::new(0),
            max_segment_size: AtomicU32::new(DEFAULT_MAX_SEG_SIZE),
            segment_boundary_mask: AtomicU64::new(DEFAULT_SEG_BOUNDARY),
        }
    }

    /// A number that tells devices apart in dma-debug's entries (the `struct device *`).
    pub fn id(&self) -> u32 {
        self.id
    }

    /// `dev_driver_string()`.
    pub fn driver(&self) -> &str {
        self.driver.as_str()
    }

    /// `dev_name()`.
    pub fn name(&self) -> &str {
        self.name.as_str()
    }

    /// `*dev->dma_mask`: the streaming mask.
    pub fn dma_mask(&self) -> u64 {
        self.dma_mask.load(Relaxed)
    }

    /// `dev->coherent_dma_mask`.
    pub fn coherent_dma_mask(&self) -> u64 {
        self.coherent_dma_mask.load(Relaxed)
    }

    /// `dev->bus_dma_limit` (0: no limit beyond the masks).
    pub fn bus_dma_limit(&self) -> u64 {
        self.bus_dma_limit.load(Relaxed)
    }

    /// Set `bus_dma_limit`, as a bus (or firmware's `dma-ranges`) would.
    pub fn set_bus_dma_limit(&self, limit: u64) {
        self.bus_dma_limit.store(limit, Relaxed)
    }

    /// `dma_get_max_seg_size()`.
    pub fn dma_get_max_seg_size(&self) -> u32 {
        self.max_segment_size.load(Relaxed)
    }

    /// `dma_set_max_seg_size()`.
    pub fn dma_set_max_seg_size(&self, size: u32) {
        self.max_segment_size.store(size, Relaxed)
    }

    /// `dma_get_seg_boundary()`: a mask; no segment may cross a multiple of mask + 1.
    pub fn dma_get_seg_boundary(&self) -> u64 {
        self.segment_boundary_mask.load(Relaxed)
    }

    /// `dma_set_seg_boundary()`; the mask must be one less than a power of two.
    pub fn dma_set_seg_boundary(&self, mask: u64) -> Result<(), DmaError> {
        if mask.wrapping_add(1) & mask != 0 {
            return Err(DmaError::Inval);
        }
        self.segment_boundary_mask.store(mask, Relaxed);
        Ok(())
    }

    /// `min_not_zero(*dev->dma_mask, dev->bus_dma_limit)`: the highest bus address a
    /// streaming mapping may reach.
    pub(super) fn streaming_limit(&self) -> u64 {
        min_not_zero(self.dma_mask(), self.bus_dma_limit())
    }
}

impl fmt::Debug for Device {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} {} (dma_mask {:#x}, coherent {:#x})",
            self.driver(),
            self.name(),
            self.dma_mask(),
            self.coherent_dma_mask()
        )
    }
}

pub(super) fn min_not_zero(a: u64, b: u64) -> u64 {
    match (a, b) {
        (0, b) => b,
        (a, 0) => a,
        (a, b) => a.min(b),
    }
}
