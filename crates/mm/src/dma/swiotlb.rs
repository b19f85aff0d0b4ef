//! swiotlb, the software IO TLB (`kernel/dma/swiotlb.c`): a pool of bounce buffers that
//! boot reserves from memblock low in memory, cut into 2 KiB slots (`IO_TLB_SHIFT` 11)
//! grouped in segments of 128 (`IO_TLB_SEGSIZE`). A mapping takes a run of free slots
//! inside one segment, honouring the device's segment boundary and page alignment for
//! mappings of a page or more, as `swiotlb_search_pool_area` does; the data is copied in
//! on map and out on unmap or sync.
//!
//! The slot array (`struct io_tlb_slot`) lives in simulated memory, memblock-allocated
//! beside the pool as `swiotlb_init_remap` allocates it. One area (one lock) serves all
//! CPUs: the kernel splits the pool into per-CPU areas only to spread lock contention.
//! Slots are reached through the door ([`crate::mem`]) by an index checked against the
//! array, and every field read back is validated where it is used.

use core::sync::atomic::{AtomicU16, AtomicU32, AtomicU64, Ordering::Relaxed};

use super::{Device, DmaAddr, DmaCheckError, DmaDataDirection, DMA_MAPPING_ERROR};
use crate::addr::{align_up, PhysAddr, PAGE_SIZE};
use crate::mm_init::BootError;
use crate::platform::Platform;
use crate::report::KernelSite as KS;
use crate::sync::SpinLockIrq;
use crate::Mm;

/// log2 of a slot's size (`IO_TLB_SHIFT`).
pub const IO_TLB_SHIFT: u32 = 11;
/// A slot's size: 2 KiB (`IO_TLB_SIZE`).
pub const IO_TLB_SIZE: u64 = 1 << IO_TLB_SHIFT;
/// Slots per segment: no mapping spans two segments (`IO_TLB_SEGSIZE`).
pub const IO_TLB_SEGSIZE: u64 = 128;
/// The kernel's default pool size (`IO_TLB_DEFAULT_SIZE`, 64 MiB).
pub const IO_TLB_DEFAULT_SIZE: u64 = 64 << 20;
/// The smallest pool `swiotlb_init_remap` halves down to (`IO_TLB_MIN_SLABS`, 1 MiB).
pub const IO_TLB_MIN_SLABS: u64 = (1 << 20) >> IO_TLB_SHIFT;
/// The memblock label of the bounce buffers.
pub const SWIOTLB_NAME: &str = "swiotlb";
/// The memblock label of the slot array.
pub const SWIOTLB_SLOTS_NAME: &str = "swiotlb slots";
/// `INVALID_PHYS_ADDR`.
const INVALID_PHYS_ADDR: u64 = u64::MAX;
/// x86's `ARCH_LOW_ADDRESS_LIMIT`: `memblock_alloc_low` stays below 4 GiB.
pub const ARCH_LOW_ADDRESS_LIMIT: u64 = 1 << 32;

/// The `swiotlb=` boot options.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct SwiotlbConfig {
    /// `None`: as x86 decides (`pci_swiotlb_detect`: only when RAM extends above 4 GiB, so
    /// that 32-bit devices can reach all of it); `Some(true)`: always (`swiotlb=<nslabs>`,
    /// `iommu=soft`); `Some(false)`: never (`swiotlb=noforce`).
    pub enabled: Option<bool>,
    /// Slots in the pool (`swiotlb=<nslabs>`, rounded up to a whole segment); 0 means the
    /// default: the kernel's 64 MiB (`IO_TLB_DEFAULT_SIZE`), scaled down to 1/64 of RAM on
    /// small machines, at least a segment (the scaling is kmemlab's own default, not the
    /// kernel's). More slots than the RAM below `limit` can hold are capped to it first
    /// (kmemlab's own cap, which keeps the pool's byte size in range), then halved as
    /// `swiotlb_init_remap` halves them until memblock has room.
    pub slabs: u64,
    /// The pool is allocated below this physical address (x86: 4 GiB,
    /// `ARCH_LOW_ADDRESS_LIMIT`; arm64 puts it below its ZONE_DMA limit instead, which is
    /// how a 24-bit device can bounce).
    pub limit: u64,
}

impl Default for SwiotlbConfig {
    fn default() -> Self {
        SwiotlbConfig {
            enabled: None,
            slabs: 0,
            limit: ARCH_LOW_ADDRESS_LIMIT,
        }
    }
}

impl SwiotlbConfig {
    /// A pool of the default size, whatever the RAM.
    pub const fn on() -> SwiotlbConfig {
        SwiotlbConfig {
            enabled: Some(true),
            slabs: 0,
            limit: ARCH_LOW_ADDRESS_LIMIT,
        }
    }

    /// No pool (`swiotlb=noforce`).
    pub const fn off() -> SwiotlbConfig {
        SwiotlbConfig {
            enabled: Some(false),
            slabs: 0,
            limit: ARCH_LOW_ADDRESS_LIMIT,
        }
    }

    /// A pool of `slabs` slots (`swiotlb=<nslabs>`).
    pub const fn with_slabs(slabs: u64) -> SwiotlbConfig {
        SwiotlbConfig {
            enabled: Some(true),
            slabs,
            limit: ARCH_LOW_ADDRESS_LIMIT,
        }
    }

    /// The same, allocated below `limit`.
    pub const fn below(self, limit: u64) -> SwiotlbConfig {
        SwiotlbConfig { limit, ..self }
    }
}

/// Bytes per `struct io_tlb_slot`.
const SLOT_SIZE: u64 = core::mem::size_of::<IoTlbSlot>() as u64;

/// `struct io_tlb_slot`, in simulated memory.
#[repr(C)]
#[derive(zerocopy::FromBytes)]
struct IoTlbSlot {
    /// The original buffer's physical address for this slot.
    orig_addr: AtomicU64,
    /// Bytes of the mapping from this slot to its end (0: free).
    alloc_size: AtomicU32,
    /// Free slots from this one to the end of its run within the segment (0: in use).
    list: AtomicU16,
    pad_slots: AtomicU16,
}

/// `struct io_tlb_area`: the next-fit cursor and the slots in use.
pub(in crate::dma) struct IoTlbArea {
    index: u64,
    used: u64,
    hiwater: u64,
}

/// `struct io_tlb_mem` / `io_tlb_pool` of the default pool.
pub struct IoTlbMem {
    pub(in crate::dma) start: u64,
    pub(in crate::dma) nslabs: u64,
    slots_phys: u64,
    area: SpinLockIrq<IoTlbArea>,
}

impl IoTlbMem {
    pub(in crate::dma) const fn new() -> IoTlbMem {
        IoTlbMem {
            start: 0,
            nslabs: 0,
            slots_phys: 0,
            area: SpinLockIrq::new(IoTlbArea {
                index: 0,
                used: 0,
                hiwater: 0,
            }),
        }
    }

    fn end(&self) -> u64 {
        // nslabs is bounded by RAM at boot, so this cannot overflow.
        self.start + (self.nslabs << IO_TLB_SHIFT)
    }
}

/// `io_tlb_offset()`: a slot's position in its segment.
const fn io_tlb_offset(i: u64) -> u64 {
    i & (IO_TLB_SEGSIZE - 1)
}

/// `nr_slots()`.
const fn nr_slots(size: u64) -> u64 {
    size.div_ceil(IO_TLB_SIZE)
}

/// `get_max_slots()`: slots per boundary window.
const fn get_max_slots(boundary_mask: u64) -> u64 {
    (boundary_mask >> IO_TLB_SHIFT) + 1
}

/// `iommu_is_span_boundary()`: would `nr` slots from `index` cross a boundary window?
const fn is_span_boundary(index: u64, nr: u64, shift: u64, boundary_size: u64) -> bool {
    let offset = (shift + index) & (boundary_size - 1);
    offset + nr > boundary_size
}

impl<P: Platform> Mm<P> {
    /// `swiotlb_init()` at boot (`swiotlb_init_remap`): reserve the pool and its slot
    /// array from memblock below the configured limit. If memblock has no room the pool
    /// is halved down to `IO_TLB_MIN_SLABS`, as the kernel does; if even that fails, or the
    /// slot array cannot be allocated, the kernel warns and boots without a pool; so does
    /// this (never failing boot, and giving the pool back rather than leaking it).
    pub(crate) fn swiotlb_init(&mut self, config: SwiotlbConfig) -> Result<(), BootError> {
        let ram_end = self.memblock().end_of_dram();
        let wanted = config.enabled.unwrap_or(ram_end > ARCH_LOW_ADDRESS_LIMIT);
        if !wanted {
            return Ok(());
        }
        let default_nslabs = if config.slabs > 0 {
            // setup_io_tlb_npages(): ALIGN(nslabs, IO_TLB_SEGSIZE), saturating here.
            config
                .slabs
                .checked_next_multiple_of(IO_TLB_SEGSIZE)
                .unwrap_or(!(IO_TLB_SEGSIZE - 1))
        } else {
            // kmemlab's own default: IO_TLB_DEFAULT_SIZE, scaled to 1/64 of RAM.
            let bytes = IO_TLB_DEFAULT_SIZE.min(self.memblock().phys_mem_size() / 64);
            (bytes >> IO_TLB_SHIFT)
                .max(1)
                .next_multiple_of(IO_TLB_SEGSIZE)
        };
        // kmemlab's own cap: no more slots than the RAM below the limit could hold, so
        // that `nslabs << IO_TLB_SHIFT` and the slot array's size cannot wrap (the kernel
        // computes both unchecked; `swiotlb=2^60` would wrap to 0 bytes).
        let window = ram_end.min(config.limit);
        let cap = ((window >> IO_TLB_SHIFT) / IO_TLB_SEGSIZE * IO_TLB_SEGSIZE).max(IO_TLB_SEGSIZE);
        let mut nslabs = default_nslabs.min(cap);
        // swiotlb_init_remap(): `while ((tlb = swiotlb_memblock_alloc(nslabs, ...)) ==
        // NULL) { if (nslabs <= IO_TLB_MIN_SLABS) return; nslabs = ALIGN(nslabs >> 1,
        // IO_TLB_SEGSIZE); }`
        let (pool, pool_bytes) = loop {
            let bytes = align_up(nslabs << IO_TLB_SHIFT, PAGE_SIZE as u64);
            let pool =
                self.memblock_alloc_below(bytes, PAGE_SIZE as u64, config.limit, SWIOTLB_NAME);
            match pool {
                Ok(pool) => break (pool, bytes),
                Err(_) => {
                    // swiotlb_memblock_alloc(): pr_warn("%s: Failed to allocate %zu bytes
                    // tlb structure\n", __func__, bytes), with pr_fmt "software IO TLB: ".
                    self.printk(format_args!(
                        "software IO TLB: swiotlb_memblock_alloc: Failed to allocate {bytes} bytes tlb structure"
                    ));
                    if nslabs <= IO_TLB_MIN_SLABS {
                        return Ok(());
                    }
                    nslabs = (nslabs >> 1).next_multiple_of(IO_TLB_SEGSIZE);
                }
            }
        };
        if default_nslabs != nslabs {
            self.printk(format_args!(
                "software IO TLB: SWIOTLB bounce buffer size adjusted {default_nslabs} -> {nslabs} slabs"
            ));
        }
        // alloc_size = PAGE_ALIGN(array_size(sizeof(*mem->slots), nslabs)); nslabs is
        // bounded by RAM here, so the product cannot overflow.
        let slot_bytes = align_up(nslabs * SLOT_SIZE, PAGE_SIZE as u64);
        let Ok(slots) =
            self.memblock_alloc_below(slot_bytes, PAGE_SIZE as u64, u64::MAX, SWIOTLB_SLOTS_NAME)
        else {
            // pr_warn("%s: Failed to allocate %zu bytes align=0x%lx\n", __func__,
            // alloc_size, PAGE_SIZE); the kernel then boots without a pool (and leaks the
            // buffer); here the buffer goes back to memblock.
            self.printk(format_args!(
                "software IO TLB: swiotlb_init_remap: Failed to allocate {slot_bytes} bytes align={:#x}",
                PAGE_SIZE
            ));
            let _ = self.memblock_phys_free(pool, pool_bytes);
            return Ok(());
        };
        let mem = &mut self.dma.swiotlb;
        mem.start = pool.0;
        mem.nslabs = nslabs;
        mem.slots_phys = slots.0;
        // swiotlb_init_io_tlb_pool(): every slot free, runs counted to the segment's end.
        for i in 0..nslabs {
            let Some(slot) = self.io_tlb_slot(i) else {
                break;
            };
            slot.list
                .store((IO_TLB_SEGSIZE - io_tlb_offset(i)) as u16, Relaxed);
            slot.orig_addr.store(INVALID_PHYS_ADDR, Relaxed);
            slot.alloc_size.store(0, Relaxed);
            slot.pad_slots.store(0, Relaxed);
        }
        Ok(())
    }

    /// Slot `i` of the slot array, or `None` when `i` is not below `nslabs`. Indices are
    /// computed from bus addresses and from slot fields read back out of simulated RAM
    /// (which a device may have overwritten), so every one is checked here before a
    /// pointer is built.
    fn io_tlb_slot(&self, i: u64) -> Option<&IoTlbSlot> {
        let mem = &self.dma.swiotlb;
        if i >= mem.nslabs {
            return None;
        }
        let phys = mem.slots_phys.checked_add(i.checked_mul(SLOT_SIZE)?)?;
        // A device may overwrite the slot; its values are validated wherever they are used.
        self.ram().view::<IoTlbSlot>(phys).ok()
    }

    /// `pr_err` for a slot array that a bus master has overwritten (kmemlab's report,
    /// in swiotlb's style): the operation is refused and counted as a warning.
    fn swiotlb_corrupted(&self, index: u64, what: &str, value: u64) {
        self.dma.counters.warnings.fetch_add(1, Relaxed);
        self.printk(format_args!(
            "software IO TLB: slot {index}: corrupted {what} {value:#x}, refusing the operation"
        ));
    }

    /// `is_swiotlb_active()`: is there a pool?
    pub fn is_swiotlb_active(&self) -> bool {
        self.dma.swiotlb.nslabs > 0
    }

    /// `is_swiotlb_buffer()`: is `phys` inside the pool?
    pub fn is_swiotlb_buffer(&self, phys: PhysAddr) -> bool {
        let mem = &self.dma.swiotlb;
        mem.nslabs > 0 && phys.0 >= mem.start && phys.0 < mem.end()
    }

    /// The pool: its first physical address and its number of slots (`None`: no pool).
    pub fn swiotlb_pool(&self) -> Option<(PhysAddr, u64)> {
        let mem = &self.dma.swiotlb;
        (mem.nslabs > 0).then_some((PhysAddr(mem.start), mem.nslabs))
    }

    /// (slots in use, most ever in use).
    pub(in crate::dma) fn swiotlb_used(&self) -> (u64, u64) {
        let area = self.dma.swiotlb.area.lock_irqsave(self.platform());
        (area.used, area.hiwater)
    }

    /// `swiotlb_map()`: bounce `[phys, phys + size)` and make sure the device reaches the
    /// bounce buffer.
    pub(in crate::dma) fn swiotlb_map(&self, dev: &Device, phys: PhysAddr, size: usize) -> DmaAddr {
        let Some(tlb_addr) = self.swiotlb_tbl_map_single(dev, phys, size, 0) else {
            return DMA_MAPPING_ERROR;
        };
        let dma_addr = self.phys_to_dma(dev, PhysAddr(tlb_addr));
        if !self.dma_capable(dev, dma_addr, size) {
            self.swiotlb_release_slots(tlb_addr);
            self.dma.counters.overflow_refusals.fetch_add(1, Relaxed);
            // 6.6 `swiotlb_map()`: `dev_WARN_ONCE(dev, 1, "swiotlb addr %pad+%zu overflow …")`.
            const SITE: KS = KS {
                file: "kernel/dma/swiotlb.c",
                line: 1511,
                func: "swiotlb_map",
            };
            self.dev_warn(
                dev,
                SITE,
                format_args!(
                    "swiotlb addr {}+{} overflow (mask {:x}, bus limit {:x}).",
                    self.pad(dma_addr),
                    size,
                    dev.dma_mask(),
                    dev.bus_dma_limit()
                ),
            );
            return DMA_MAPPING_ERROR;
        }
        self.dma.counters.bounced_maps.fetch_add(1, Relaxed);
        dma_addr
    }

    /// `swiotlb_tbl_map_single()`: take slots, remember the original address of each,
    /// and copy the buffer in. The copy is made whatever the direction, as the kernel has
    /// done since 5.19 (so that a device's partial write cannot expose the bounce
    /// buffer's old contents).
    pub(in crate::dma) fn swiotlb_tbl_map_single(
        &self,
        dev: &Device,
        orig_addr: PhysAddr,
        mapping_size: usize,
        alloc_align_mask: u64,
    ) -> Option<u64> {
        let mem = &self.dma.swiotlb;
        if mem.nslabs == 0 {
            self.dev_printk(dev, format_args!(
                "Can not allocate SWIOTLB buffer earlier and can't now provide you with the DMA bounce buffer"
            ));
            return None;
        }
        // A size that cannot be rounded up cannot fit a segment either: "full".
        let size = (mapping_size.max(1) as u64)
            .checked_next_multiple_of(alloc_align_mask.saturating_add(1))
            .unwrap_or(u64::MAX);
        let Some(index) = self.swiotlb_find_slots(dev, orig_addr.0, size, alloc_align_mask) else {
            self.dma.counters.swiotlb_full.fetch_add(1, Relaxed);
            let (used, _) = self.swiotlb_used();
            self.dev_printk(
                dev,
                format_args!(
                    "swiotlb buffer is full (sz: {} bytes), total {} (slots), used {} (slots)",
                    size, mem.nslabs, used
                ),
            );
            return None;
        };
        for i in 0..nr_slots(size) {
            if let Some(slot) = self.io_tlb_slot(index + i) {
                slot.orig_addr
                    .store(orig_addr.0.wrapping_add(i << IO_TLB_SHIFT), Relaxed);
            }
        }
        let tlb_addr = mem.start + (index << IO_TLB_SHIFT);
        self.swiotlb_bounce(
            dev,
            PhysAddr(tlb_addr),
            mapping_size,
            DmaDataDirection::ToDevice,
        );
        Some(tlb_addr)
    }

    /// `swiotlb_search_pool_area()`: next-fit over the slots from the area's cursor,
    /// skipping slots that are misaligned or whose run would cross the device's segment
    /// boundary, taking the first whose free run holds `alloc_size`.
    fn swiotlb_find_slots(
        &self,
        dev: &Device,
        _orig_addr: u64,
        alloc_size: u64,
        alloc_align_mask: u64,
    ) -> Option<u64> {
        let mem = &self.dma.swiotlb;
        let boundary_mask = dev.dma_get_seg_boundary();
        let tbl_dma_addr = mem.start & boundary_mask;
        let max_slots = get_max_slots(boundary_mask);
        let nslots = nr_slots(alloc_size);
        let mut align_mask = alloc_align_mask;
        // Mappings of a page or more stay page aligned, as they historically were.
        if align_mask == 0 && alloc_size >= PAGE_SIZE as u64 {
            align_mask = PAGE_SIZE as u64 - 1;
        }
        align_mask |= IO_TLB_SIZE - 1;
        let stride = get_max_slots(align_mask);
        let wrap = |i: u64| if i >= mem.nslabs { 0 } else { i };

        let mut area = mem.area.lock_irqsave(self.platform());
        if nslots > IO_TLB_SEGSIZE || nslots > mem.nslabs.saturating_sub(area.used) {
            return None;
        }
        let mut index = area.index;
        let mut checked = 0;
        let found = loop {
            if checked >= mem.nslabs {
                return None;
            }
            let tlb_addr = tbl_dma_addr + (index << IO_TLB_SHIFT);
            if tlb_addr & align_mask != 0 {
                index = wrap(index + 1);
                checked += 1;
                continue;
            }
            // A run never reaches past its segment; a `list` that says otherwise was
            // overwritten and is not trusted (that would hand out slots past the pool).
            let list = self
                .io_tlb_slot(index)
                .map_or(0, |s| s.list.load(Relaxed) as u64);
            if !is_span_boundary(index, nslots, nr_slots(tbl_dma_addr), max_slots)
                && list >= nslots
                && list <= IO_TLB_SEGSIZE - io_tlb_offset(index)
            {
                break index;
            }
            index = wrap(index + stride);
            checked += stride;
        };
        for i in found..found + nslots {
            let Some(slot) = self.io_tlb_slot(i) else {
                break;
            };
            slot.list.store(0, Relaxed);
            slot.alloc_size
                .store((alloc_size - ((i - found) << IO_TLB_SHIFT)) as u32, Relaxed);
        }
        // The free run before the allocation now ends at it.
        let mut count = 0;
        let mut i = found;
        while i > 0 && io_tlb_offset(i - 1) != IO_TLB_SEGSIZE - 1 {
            let Some(slot) = self.io_tlb_slot(i - 1) else {
                break;
            };
            if slot.list.load(Relaxed) == 0 {
                break;
            }
            count += 1;
            slot.list.store(count, Relaxed);
            i -= 1;
        }
        area.index = wrap(found + nslots);
        area.used = area.used.saturating_add(nslots).min(mem.nslabs);
        area.hiwater = area.hiwater.max(area.used);
        Some(found)
    }

    /// `swiotlb_tbl_unmap_single()`: copy back for `DMA_FROM_DEVICE` /
    /// `DMA_BIDIRECTIONAL` (unless `skip_cpu_sync`, `DMA_ATTR_SKIP_CPU_SYNC`), then
    /// release the slots. An address that is not the start of a
    /// live bounce mapping is left alone (the kernel would corrupt its slot lists); the
    /// check is made again under the area lock when the slots are released, so that two
    /// CPUs unmapping the same address at once release it once.
    pub(in crate::dma) fn swiotlb_tbl_unmap_single(
        &self,
        dev: &Device,
        tlb_addr: PhysAddr,
        size: usize,
        dir: DmaDataDirection,
        skip_cpu_sync: bool,
    ) {
        if !self.is_bounce_mapping_start(tlb_addr.0) {
            return;
        }
        // if (!(attrs & DMA_ATTR_SKIP_CPU_SYNC) && (dir == DMA_FROM_DEVICE || dir ==
        //     DMA_BIDIRECTIONAL)) swiotlb_bounce(dev, tlb_addr, mapping_size, DMA_FROM_DEVICE);
        if !skip_cpu_sync && dir.device_writes() {
            self.swiotlb_bounce(dev, tlb_addr, size, DmaDataDirection::FromDevice);
        }
        self.swiotlb_release_slots(tlb_addr.0);
    }

    /// Is `tlb_addr` the first byte of a live bounce mapping? (Callers that act on the
    /// answer hold the area lock.)
    fn is_bounce_mapping_start(&self, tlb_addr: u64) -> bool {
        let mem = &self.dma.swiotlb;
        if !self.is_swiotlb_buffer(PhysAddr(tlb_addr)) || tlb_addr & (IO_TLB_SIZE - 1) != 0 {
            return false;
        }
        let index = (tlb_addr - mem.start) >> IO_TLB_SHIFT;
        let Some(slot) = self.io_tlb_slot(index) else {
            return false;
        };
        let size = slot.alloc_size.load(Relaxed) as u64;
        if size == 0 {
            return false;
        }
        // A slot in the middle of a mapping has a predecessor holding one slot more.
        index == 0
            || self
                .io_tlb_slot(index - 1)
                .is_none_or(|p| p.alloc_size.load(Relaxed) as u64 != size + IO_TLB_SIZE)
    }

    /// `swiotlb_release_slots()`: free the mapping's slots and rebuild the free-run counts
    /// before them. `false` (nothing released) when `tlb_addr` is not, under the lock,
    /// the start of a live mapping, or when its slots are corrupted: an `alloc_size` that
    /// reaches past the mapping's segment (a mapping never spans two, as
    /// `swiotlb_search_pool_area` allocates within one) is reported and refused.
    fn swiotlb_release_slots(&self, tlb_addr: u64) -> bool {
        let mem = &self.dma.swiotlb;
        let mut area = mem.area.lock_irqsave(self.platform());
        if !self.is_bounce_mapping_start(tlb_addr) {
            return false;
        }
        let index = (tlb_addr - mem.start) >> IO_TLB_SHIFT;
        let Some(first) = self.io_tlb_slot(index) else {
            return false;
        };
        let alloc_size = first.alloc_size.load(Relaxed) as u64;
        let nslots = nr_slots(alloc_size);
        let seg_end = (index + 1).next_multiple_of(IO_TLB_SEGSIZE).min(mem.nslabs);
        if index + nslots > seg_end {
            drop(area);
            self.swiotlb_corrupted(index, "alloc_size", alloc_size);
            return false;
        }
        let mut count = if index + nslots < seg_end {
            self.io_tlb_slot(index + nslots)
                .map_or(0, |s| s.list.load(Relaxed))
                .min((seg_end - index - nslots) as u16)
        } else {
            0
        };
        for i in (index..index + nslots).rev() {
            let Some(slot) = self.io_tlb_slot(i) else {
                continue;
            };
            count += 1;
            slot.list.store(count, Relaxed);
            slot.orig_addr.store(INVALID_PHYS_ADDR, Relaxed);
            slot.alloc_size.store(0, Relaxed);
            slot.pad_slots.store(0, Relaxed);
        }
        let mut i = index;
        while i > 0 && io_tlb_offset(i - 1) != IO_TLB_SEGSIZE - 1 {
            let Some(slot) = self.io_tlb_slot(i - 1) else {
                break;
            };
            if slot.list.load(Relaxed) == 0 {
                break;
            }
            count += 1;
            slot.list.store(count, Relaxed);
            i -= 1;
        }
        area.used = area.used.saturating_sub(nslots);
        true
    }

    /// `swiotlb_bounce()`: copy between the original buffer and the bounce buffer,
    /// `ToDevice` into the bounce buffer, `FromDevice` out of it; never past the mapping
    /// ("Buffer overflow detected").
    pub(in crate::dma) fn swiotlb_bounce(
        &self,
        dev: &Device,
        tlb_addr: PhysAddr,
        size: usize,
        dir: DmaDataDirection,
    ) {
        let mem = &self.dma.swiotlb;
        if !self.is_swiotlb_buffer(tlb_addr) {
            return;
        }
        let index = (tlb_addr.0 - mem.start) >> IO_TLB_SHIFT;
        let Some(slot) = self.io_tlb_slot(index) else {
            return;
        };
        let orig = slot.orig_addr.load(Relaxed);
        let alloc_size = slot.alloc_size.load(Relaxed) as u64;
        if orig == INVALID_PHYS_ADDR {
            return;
        }
        // swiotlb_bounce() (kernel/dma/swiotlb.c), with no min_align_mask on x86:
        //     if (tlb_offset > alloc_size) { dev_WARN_ONCE(dev, 1, "Buffer overflow
        //         detected. Allocation size: %zu. Mapping size: %zu+%u.\n", alloc_size,
        //         size, tlb_offset); return; }
        //     orig_addr += tlb_offset; alloc_size -= tlb_offset;
        //     if (size > alloc_size) { dev_WARN_ONCE(dev, 1, "Buffer overflow detected.
        //         Allocation size: %zu. Mapping size: %zu.\n", alloc_size, size);
        //         size = alloc_size; }
        let tlb_offset = tlb_addr.0 & (IO_TLB_SIZE - 1);
        let mut size = size as u64;
        if tlb_offset > alloc_size {
            // 6.6 `swiotlb_bounce()`: `if (tlb_offset > alloc_size) dev_WARN_ONCE(dev, 1, …)`.
            const SITE: KS = KS {
                file: "kernel/dma/swiotlb.c",
                line: 882,
                func: "swiotlb_bounce",
            };
            self.dev_warn(
                dev,
                SITE,
                format_args!(
                    "Buffer overflow detected. Allocation size: {alloc_size}. Mapping size: {size}+{tlb_offset}."
                ),
            );
            return;
        }
        let Some(orig) = orig.checked_add(tlb_offset) else {
            return;
        };
        let alloc_size = alloc_size - tlb_offset;
        if size > alloc_size {
            // 6.6 `swiotlb_bounce()`: `if (size > alloc_size) dev_WARN_ONCE(dev, 1, …)`.
            const SITE: KS = KS {
                file: "kernel/dma/swiotlb.c",
                line: 892,
                func: "swiotlb_bounce",
            };
            self.dev_warn(
                dev,
                SITE,
                format_args!(
                    "Buffer overflow detected. Allocation size: {alloc_size}. Mapping size: {size}."
                ),
            );
            size = alloc_size;
        }
        // kmemlab's own clamp: an `alloc_size` a device overwrote must not carry the copy
        // past the pool.
        size = size.min(mem.end() - tlb_addr.0);
        let copied = match dir {
            DmaDataDirection::ToDevice => self.copy_phys(tlb_addr.0, orig, size as usize),
            _ => self.copy_phys(orig, tlb_addr.0, size as usize),
        };
        if copied {
            self.dma.counters.bounce_bytes.fetch_add(size, Relaxed);
        }
    }

    /// Recompute every slot's free-run count from the slots after it, and `used`.
    pub(in crate::dma) fn swiotlb_check(&self) -> Result<(), DmaCheckError> {
        let mem = &self.dma.swiotlb;
        let area = mem.area.lock_irqsave(self.platform());
        let mut run = 0u64;
        let mut in_use = 0u64;
        for index in (0..mem.nslabs).rev() {
            let Some(slot) = self.io_tlb_slot(index) else {
                break;
            };
            let busy = slot.alloc_size.load(Relaxed) != 0;
            if io_tlb_offset(index) == IO_TLB_SEGSIZE - 1 {
                run = 0;
            }
            run = if busy { 0 } else { run + 1 };
            in_use += busy as u64;
            let found = slot.list.load(Relaxed) as u64;
            if found != run {
                return Err(DmaCheckError::SwiotlbList {
                    index,
                    found,
                    expected: run,
                });
            }
        }
        if in_use != area.used {
            return Err(DmaCheckError::SwiotlbUsed {
                counted: area.used,
                found: in_use,
            });
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slot_arithmetic_matches_the_kernel() {
        assert_eq!(nr_slots(1), 1);
        assert_eq!(nr_slots(2048), 1);
        assert_eq!(nr_slots(2049), 2);
        assert_eq!(nr_slots(256 << 10), IO_TLB_SEGSIZE);
        assert_eq!(io_tlb_offset(127), 127);
        assert_eq!(io_tlb_offset(128), 0);
        // A 4 GiB boundary mask: 2^21 slots per window.
        assert_eq!(get_max_slots(0xffff_ffff), 1 << 21);
        // 64 KiB windows are 32 slots: 4 slots from slot 29 cross, from slot 28 do not.
        let max = get_max_slots(0xffff);
        assert_eq!(max, 32);
        assert!(is_span_boundary(29, 4, 0, max));
        assert!(!is_span_boundary(28, 4, 0, max));
        // The pool's own offset in the window counts (`nr_slots(tbl_dma_addr)`).
        assert!(is_span_boundary(28, 4, 1, max));
    }

    #[test]
    fn config_constructors() {
        assert_eq!(SwiotlbConfig::default().enabled, None);
        assert_eq!(SwiotlbConfig::off().enabled, Some(false));
        let c = SwiotlbConfig::with_slabs(300).below(16 << 20);
        assert_eq!((c.enabled, c.slabs, c.limit), (Some(true), 300, 16 << 20));
    }
}
