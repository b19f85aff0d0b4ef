//! The DMA API (`kernel/dma/mapping.c`, `include/linux/dma-mapping.h`,
//! `Documentation/core-api/dma-api.rst`) for x86 without an IOMMU: bus address = physical
//! address (`phys_to_dma`), streaming mappings through dma-direct ([`direct`]) that bounce
//! through swiotlb ([`swiotlb`]) when a buffer lies beyond the device's mask, scatterlists
//! ([`scatterlist`]), coherent allocations and DMA pools ([`pool`]), and the
//! `CONFIG_DMA_API_DEBUG` checks ([`debug`]).
//!
//! As in the kernel, mapping calls return [`DMA_MAPPING_ERROR`] on failure and the driver
//! asks [`Mm::dma_mapping_error`]; everything else returns a `Result`. Nothing panics on a
//! driver's mistake: it is refused or reported with the kernel's words, and counted.
//!
//! Everything the DMA layer keeps in RAM (the swiotlb slots, the dma-debug block, pools,
//! scatterlists) is reached through the door ([`crate::mem`]); RAM that any bus master
//! may have overwritten is validated before a value read from it is used as an index,
//! length or address.

pub mod debug;
pub mod direct;
pub mod pool;
pub mod scatterlist;
pub mod swiotlb;

use core::fmt;
use core::sync::atomic::{AtomicU32, AtomicU64, Ordering::Relaxed};

use crate::addr::{PhysAddr, VirtAddr, PAGE_SIZE};
use crate::arch::Profile;
use crate::mm_types::Page;
use crate::platform::Platform;
use crate::report::KernelSite as KS;
use crate::Mm;

pub use debug::DmaDebugError;
pub use pool::DmaPool;
pub use scatterlist::{SgEntry, SgTable};
pub use swiotlb::{SwiotlbConfig, IO_TLB_SEGSIZE, IO_TLB_SHIFT, IO_TLB_SIZE};

/// A bus address as a device drives it (`dma_addr_t`).
pub type DmaAddr = u64;

/// What mapping calls return on failure (`DMA_MAPPING_ERROR`, `(dma_addr_t)~0`).
pub const DMA_MAPPING_ERROR: DmaAddr = u64::MAX;

/// `DMA_BIT_MASK(n)`: the mask of a device that drives `n` address lines.
///
/// ```
/// use kmemlab_mm::dma::dma_bit_mask;
/// assert_eq!(dma_bit_mask(24), 0xff_ffff);
/// assert_eq!(dma_bit_mask(64), u64::MAX);
/// ```
pub const fn dma_bit_mask(n: u32) -> u64 {
    if n >= 64 {
        u64::MAX
    } else {
        (1u64 << n) - 1
    }
}

/// The default segment size limit (`dma_get_max_seg_size` without `dma_parms`: 64 KiB).
pub const DEFAULT_MAX_SEG_SIZE: u32 = 0x10000;
/// The default segment boundary (`dma_get_seg_boundary` without `dma_parms`: 4 GiB).
pub const DEFAULT_SEG_BOUNDARY: u64 = 0xffff_ffff;

/// `enum dma_data_direction`.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash)]
pub enum DmaDataDirection {
    /// `DMA_BIDIRECTIONAL`: the device may read and write the buffer.
    Bidirectional = 0,
    /// `DMA_TO_DEVICE`: the device reads the buffer.
    ToDevice = 1,
    /// `DMA_FROM_DEVICE`: the device writes the buffer.
    FromDevice = 2,
    /// `DMA_NONE`: only for debugging; mapping with it is a kernel BUG.
    None = 3,
}

impl DmaDataDirection {
    /// The name dma-debug prints (`dir2name`).
    pub const fn name(self) -> &'static str {
        match self {
            DmaDataDirection::Bidirectional => "DMA_BIDIRECTIONAL",
            DmaDataDirection::ToDevice => "DMA_TO_DEVICE",
            DmaDataDirection::FromDevice => "DMA_FROM_DEVICE",
            DmaDataDirection::None => "DMA_NONE",
        }
    }

    /// `valid_dma_direction()`.
    pub const fn is_valid(self) -> bool {
        !matches!(self, DmaDataDirection::None)
    }

    /// Does the CPU have to copy bounce data back after the device ran?
    const fn device_writes(self) -> bool {
        matches!(
            self,
            DmaDataDirection::FromDevice | DmaDataDirection::Bidirectional
        )
    }

    /// Does the device read what the CPU wrote?
    const fn device_reads(self) -> bool {
        matches!(
            self,
            DmaDataDirection::ToDevice | DmaDataDirection::Bidirectional
        )
    }

    fn from_bits(bits: u64) -> DmaDataDirection {
        match bits {
            0 => DmaDataDirection::Bidirectional,
            1 => DmaDataDirection::ToDevice,
            2 => DmaDataDirection::FromDevice,
            _ => DmaDataDirection::None,
        }
    }
}

impl fmt::Display for DmaDataDirection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Why a DMA call failed (the kernel's negative errnos).
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum DmaError {
    /// `-EIO`: the mask cannot be supported (`dma_set_mask`), or a scatterlist segment
    /// could not be mapped (`dma_map_sgtable`).
    Io,
    /// `-ENOMEM`: a mapping failed (`dma_mapping_error`) or memory ran out.
    NoMem,
    /// `-EINVAL`: a bad argument (zero entries, bad alignment or boundary, an invalid
    /// direction, an address that is not what the call expects).
    Inval,
}

impl DmaError {
    /// The errno, as the kernel returns it.
    pub const fn errno(self) -> i32 {
        match self {
            DmaError::Io => -5,
            DmaError::NoMem => -12,
            DmaError::Inval => -22,
        }
    }
}

impl fmt::Display for DmaError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DmaError::Io => write!(f, "-EIO"),
            DmaError::NoMem => write!(f, "-ENOMEM"),
            DmaError::Inval => write!(f, "-EINVAL"),
        }
    }
}

impl core::error::Error for DmaError {}

/// A short name kept inline (no allocator): truncated to 31 bytes at a character boundary.
#[derive(Copy, Clone)]
struct Name {
    bytes: [u8; 31],
    len: u8,
}

impl Name {
    fn new(s: &str) -> Name {
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

    fn as_str(&self) -> &str {
        core::str::from_utf8(&self.bytes[..self.len as usize]).unwrap_or("?")
    }
}

static NEXT_DEVICE_ID: AtomicU32 = AtomicU32::new(1);

/// The DMA part of `struct device`: the driver and device names its messages carry, the
/// streaming and coherent masks, `bus_dma_limit` and the `dma_parms` limits.
pub struct Device {
    id: u32,
    driver: Name,
    name: Name,
    dma_mask: AtomicU64,
    coherent_dma_mask: AtomicU64,
    bus_dma_limit: AtomicU64,
    max_segment_size: AtomicU32,
    segment_boundary_mask: AtomicU64,
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
    fn streaming_limit(&self) -> u64 {
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

fn min_not_zero(a: u64, b: u64) -> u64 {
    match (a, b) {
        (0, b) => b,
        (a, 0) => a,
        (a, b) => a.min(b),
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

/// Counters, kept in the kernel's `.data`.
#[derive(Default)]
pub(in crate::dma) struct DmaCounters {
    maps: AtomicU64,
    bounced_maps: AtomicU64,
    bounce_bytes: AtomicU64,
    vmalloc_rejections: AtomicU64,
    overflow_refusals: AtomicU64,
    swiotlb_full: AtomicU64,
    coherent_live: AtomicU64,
    warnings: AtomicU64,
}

/// The DMA layer's globals (`io_tlb_default_mem`, dma-debug's hash and free list).
pub struct DmaGlobals {
    swiotlb: swiotlb::IoTlbMem,
    debug: debug::DmaDebug,
    counters: DmaCounters,
}

impl DmaGlobals {
    /// Nothing set up yet: boot fills it in.
    pub const fn new() -> DmaGlobals {
        DmaGlobals {
            swiotlb: swiotlb::IoTlbMem::new(),
            debug: debug::DmaDebug::new(),
            counters: DmaCounters {
                maps: AtomicU64::new(0),
                bounced_maps: AtomicU64::new(0),
                bounce_bytes: AtomicU64::new(0),
                vmalloc_rejections: AtomicU64::new(0),
                overflow_refusals: AtomicU64::new(0),
                swiotlb_full: AtomicU64::new(0),
                coherent_live: AtomicU64::new(0),
                warnings: AtomicU64::new(0),
            },
        }
    }
}

impl Default for DmaGlobals {
    fn default() -> Self {
        DmaGlobals::new()
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

    // ----- masks (kernel/dma/mapping.c) ------------------------------------------

    /// `dma_supported()` → `dma_direct_supported()`: any mask of 32 bits or more, and any
    /// smaller mask that still covers ZONE_DMA (`zone_dma_limit`, 24 bits on x86) or all
    /// of RAM.
    pub fn dma_supported(&self, mask: u64) -> bool {
        if mask >= dma_bit_mask(32) {
            return true;
        }
        let end_pfn = self.memblock().end_of_dram() >> crate::addr::PAGE_SHIFT;
        let min_mask = (end_pfn.saturating_sub(1) << crate::addr::PAGE_SHIFT).min(ZONE_DMA_LIMIT);
        mask >= min_mask
    }

    /// `(dma_addr_t)mask`: i386 without PAE has a 32-bit `dma_addr_t`.
    fn truncate_to_dma_addr(&self, mask: u64) -> u64 {
        match self.profile() {
            Profile::X86_64 => mask,
            Profile::I386 => mask & dma_bit_mask(32),
        }
    }

    /// `dma_set_mask()`: `-EIO` when the mask cannot be supported (below what ZONE_DMA
    /// covers); the mask is truncated to `dma_addr_t` first.
    pub fn dma_set_mask(&self, dev: &Device, mask: u64) -> Result<(), DmaError> {
        self.dma_debug_init();
        let mask = self.truncate_to_dma_addr(mask);
        if !self.dma_supported(mask) {
            return Err(DmaError::Io);
        }
        dev.dma_mask.store(mask, Relaxed);
        Ok(())
    }

    /// `dma_set_coherent_mask()`.
    pub fn dma_set_coherent_mask(&self, dev: &Device, mask: u64) -> Result<(), DmaError> {
        self.dma_debug_init();
        let mask = self.truncate_to_dma_addr(mask);
        if !self.dma_supported(mask) {
            return Err(DmaError::Io);
        }
        dev.coherent_dma_mask.store(mask, Relaxed);
        Ok(())
    }

    /// `dma_set_mask_and_coherent()`.
    pub fn dma_set_mask_and_coherent(&self, dev: &Device, mask: u64) -> Result<(), DmaError> {
        self.dma_set_mask(dev, mask)?;
        self.dma_set_coherent_mask(dev, mask)
    }

    /// `phys_to_dma()`: x86 without an IOMMU or memory encryption drives physical
    /// addresses on the bus.
    pub fn phys_to_dma(&self, _dev: &Device, phys: PhysAddr) -> DmaAddr {
        phys.0
    }

    /// `dma_to_phys()`.
    pub fn dma_to_phys(&self, _dev: &Device, addr: DmaAddr) -> PhysAddr {
        PhysAddr(addr)
    }

    /// `virt_addr_valid()`: a direct-map address of a valid page.
    pub fn virt_addr_valid(&self, addr: VirtAddr) -> bool {
        self.layout()
            .virt_to_phys(addr.0)
            .is_some_and(|phys| self.pfn_valid(PhysAddr(phys).pfn()))
    }

    // ----- streaming mappings (include/linux/dma-mapping.h, kernel/dma/mapping.c) ---

    /// `dma_map_single()`: map `size` bytes at the direct-map address `ptr`. vmalloc
    /// memory is refused as `dma_map_single_attrs` refuses it (`dev_WARN_ONCE(dev,
    /// is_vmalloc_addr(ptr), "rejecting DMA map of vmalloc memory")`); any other address
    /// outside the direct map is reported by dma-debug ("maps memory from invalid area")
    /// and refused here, where the kernel would go on with a bogus `virt_to_page`.
    pub fn dma_map_single(
        &self,
        dev: &Device,
        ptr: VirtAddr,
        size: usize,
        dir: DmaDataDirection,
    ) -> DmaAddr {
        if self.is_vmalloc_addr(ptr) {
            self.dma.counters.vmalloc_rejections.fetch_add(1, Relaxed);
            // 6.6 `dma_map_single_attrs()`: `dev_WARN_ONCE(dev, is_vmalloc_addr(ptr), …)`.
            const SITE: KS = KS {
                file: "include/linux/dma-mapping.h",
                line: 332,
                func: "dma_map_single_attrs",
            };
            self.dev_warn(
                dev,
                SITE,
                format_args!("rejecting DMA map of vmalloc memory"),
            );
            return DMA_MAPPING_ERROR;
        }
        self.debug_dma_map_single(dev, ptr, size);
        let Some(phys) = self.layout().virt_to_phys(ptr.0) else {
            return DMA_MAPPING_ERROR;
        };
        let Ok(page) = self.pfn_to_page(PhysAddr(phys).pfn()) else {
            return DMA_MAPPING_ERROR;
        };
        self.dma_map_page(dev, page, (phys as usize) & (PAGE_SIZE - 1), size, dir)
    }

    /// `dma_map_page()`: map `size` bytes at `offset` into `page` (HighMem pages too).
    pub fn dma_map_page(
        &self,
        dev: &Device,
        page: &Page,
        offset: usize,
        size: usize,
        dir: DmaDataDirection,
    ) -> DmaAddr {
        if !self.valid_direction(dir, "dma_map_page_attrs") {
            return DMA_MAPPING_ERROR;
        }
        let pfn = self.page_to_pfn(page);
        let phys = PhysAddr(pfn.phys().0 + offset as u64);
        let addr = self.dma_direct_map_page(dev, phys, size, dir);
        if addr != DMA_MAPPING_ERROR {
            self.dma.counters.maps.fetch_add(1, Relaxed);
        }
        self.debug_dma_map_page(dev, phys, size, dir, addr);
        addr
    }

    /// `dma_mapping_error()`: `Err(-ENOMEM)` if `addr` is [`DMA_MAPPING_ERROR`]. Telling
    /// dma-debug the driver checked is part of the call.
    pub fn dma_mapping_error(&self, dev: &Device, addr: DmaAddr) -> Result<(), DmaError> {
        self.debug_dma_mapping_error(dev, addr);
        if addr == DMA_MAPPING_ERROR {
            return Err(DmaError::NoMem);
        }
        Ok(())
    }

    /// `dma_unmap_single()`: end a mapping; a bounce buffer is copied back for
    /// `DMA_FROM_DEVICE` / `DMA_BIDIRECTIONAL` and its slots released. dma-debug checks
    /// the address, size and direction against the mapping.
    pub fn dma_unmap_single(
        &self,
        dev: &Device,
        addr: DmaAddr,
        size: usize,
        dir: DmaDataDirection,
    ) {
        self.dma_unmap_page(dev, addr, size, dir)
    }

    /// `dma_unmap_page()`.
    pub fn dma_unmap_page(&self, dev: &Device, addr: DmaAddr, size: usize, dir: DmaDataDirection) {
        if !self.valid_direction(dir, "dma_unmap_page_attrs") {
            return;
        }
        self.dma_direct_unmap_page(dev, addr, size, dir);
        self.debug_dma_unmap_page(dev, addr, size, dir);
    }

    /// `dma_sync_single_for_cpu()`: hand the buffer back to the CPU (copy a bounce
    /// buffer back for `DMA_FROM_DEVICE` / `DMA_BIDIRECTIONAL`).
    pub fn dma_sync_single_for_cpu(
        &self,
        dev: &Device,
        addr: DmaAddr,
        size: usize,
        dir: DmaDataDirection,
    ) {
        if !self.valid_direction(dir, "dma_sync_single_for_cpu") {
            return;
        }
        self.dma_direct_sync_single_for_cpu(dev, addr, size, dir);
        self.debug_dma_sync_single(dev, addr, size, dir, true);
    }

    /// `dma_sync_single_for_device()`: hand the buffer to the device again (copy into a
    /// bounce buffer for `DMA_TO_DEVICE` / `DMA_BIDIRECTIONAL`).
    pub fn dma_sync_single_for_device(
        &self,
        dev: &Device,
        addr: DmaAddr,
        size: usize,
        dir: DmaDataDirection,
    ) {
        if !self.valid_direction(dir, "dma_sync_single_for_device") {
            return;
        }
        self.dma_direct_sync_single_for_device(dev, addr, size, dir);
        self.debug_dma_sync_single(dev, addr, size, dir, false);
    }

    /// `BUG_ON(!valid_dma_direction(dir))` at the top of 6.6 kernel/dma/mapping.c's `func`:
    /// `kernel BUG at kernel/dma/mapping.c:NNN!` and the oops; refused.
    fn valid_direction(&self, dir: DmaDataDirection, func: &'static str) -> bool {
        let line = match func {
            "dma_map_page_attrs" => 154,
            "dma_unmap_page_attrs" => 176,
            "__dma_map_sg_attrs" => 192,
            "dma_unmap_sg_attrs" => 289,
            "dma_sync_single_for_cpu" => 337,
            "dma_sync_single_for_device" => 351,
            "dma_sync_sg_for_cpu" => 365,
            "dma_sync_sg_for_device" => 379,
            _ => 0,
        };
        let site = KS {
            file: "kernel/dma/mapping.c",
            line,
            func,
        };
        if crate::report::bug!(self, !dir.is_valid(), site) {
            self.dma.counters.warnings.fetch_add(1, Relaxed);
            return false;
        }
        true
    }

    // ----- messages ----------------------------------------------------------------

    /// `dev_WARN_ONCE(dev, 1, fmt)` (`include/linux/dev_printk.h`, 6.6): `WARN_ONCE(1,
    /// "%s %s: " fmt, dev_driver_string(dev), dev_name(dev))` at `site`, printed the first
    /// time that site fires on this machine (and counted in `warnings` then).
    pub(in crate::dma) fn dev_warn(&self, dev: &Device, site: KS, msg: fmt::Arguments<'_>) {
        if self.warn_once_first(&site) {
            self.dma.counters.warnings.fetch_add(1, Relaxed);
            self.warn_at(
                &site,
                format_args!("{} {}: {}", dev.driver(), dev.name(), msg),
            );
        }
    }

    /// `dev_warn()` / `dev_err()`: one "<driver> <device>: <message>" line.
    pub(in crate::dma) fn dev_printk(&self, dev: &Device, msg: fmt::Arguments<'_>) {
        self.printk(format_args!("{} {}: {}", dev.driver(), dev.name(), msg));
    }

    /// `%pad`: a `dma_addr_t` as 0x and all its hex digits (16 on x86_64, 8 on i386).
    pub(in crate::dma) fn pad(&self, addr: DmaAddr) -> Pad {
        Pad {
            addr,
            digits: match self.profile() {
                Profile::X86_64 => 16,
                Profile::I386 => 8,
            },
        }
    }

    /// The `N` words at direct-map address `va` (8-byte aligned, inside RAM): how the DMA
    /// layer reads and writes the structures it keeps in kmalloc'd memory. The same RAM
    /// may be written by a device, the shell's `dma <dev> to <addr>` or a bounce at any
    /// time, as a bus master races the CPU on real hardware, so every value read through
    /// these words is validated before it is used as an index, length or address.
    pub(in crate::dma) fn dma_kernel_words<const N: usize>(
        &self,
        va: VirtAddr,
    ) -> Option<&[AtomicU64; N]> {
        self.kview::<[AtomicU64; N]>(va.0).ok()
    }

    /// Copy `len` bytes between two physical ranges of RAM (a bounce, or zeroing).
    /// Refuses ranges that are not RAM.
    pub(in crate::dma) fn copy_phys(&self, dst: u64, src: u64, len: usize) -> bool {
        self.ram().copy(dst, src, len as u64).is_ok()
    }

    /// Fill `len` bytes of RAM at `phys` with zeroes; `false` (nothing written) when the
    /// range is not RAM.
    pub(in crate::dma) fn dma_zero_phys(&self, phys: u64, len: usize) -> bool {
        self.ram().fill(phys, 0, len as u64).is_ok()
    }
}

/// `zone_dma_limit` on x86: ZONE_DMA ends at 16 MiB.
pub const ZONE_DMA_LIMIT: u64 = dma_bit_mask(24);

/// A bus address printed as `%pad` does.
pub(in crate::dma) struct Pad {
    addr: DmaAddr,
    digits: usize,
}

impl fmt::Display for Pad {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "0x{:0width$x}", self.addr, width = self.digits)
    }
}
