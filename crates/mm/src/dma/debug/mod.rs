//! `CONFIG_DMA_API_DEBUG` (`kernel/dma/debug.c`): every mapping and coherent allocation
//! is recorded in a `dma_debug_entry`, hashed by bus address; unmaps, frees and syncs are
//! checked against the entry, and each violation is reported as `err_printk` does
//! (`DMA-API: <driver> <device>: ...`, then the WARNING line) and counted.
//!
//! The entries are preallocated in simulated memory (one block from the page
//! allocator: two pages of hash-bucket heads, then 960 entries of 128 bytes; the kernel
//! preallocates `PREALLOC_DMA_DEBUG_ENTRIES` = 65536 into a 16384-bucket hash and grows
//! on demand); kmemlab allocates them when the first driver sets a DMA mask or maps (the
//! kernel does it from a `core_initcall`), so that a machine without DMA pays nothing.
//! One lock covers the hash and the free list (the kernel locks per bucket).
//! When the entries run out, dma-debug disables itself with the kernel's message. Every
//! error is printed (as with `dma_debug` `show_all_errors`; the kernel's default shows
//! only the first).
//!
//! The block is read and written through the door ([`crate::mem`]): every bucket head
//! and entry is found by an index that is checked against the block before the access,
//! and every value read back is validated before it is used.
//!
//! By kind of check: `map.rs` records mappings and coherent allocations
//! (`debug_dma_map_page`, start there), `unmap.rs` checks unmaps and frees against them
//! (`check_unmap`), `sync.rs` checks syncs (`check_sync`), `freed.rs` is kmemlab's
//! freed-while-mapped check (the free hook), and `hash.rs` keeps the entries and their
//! hash in RAM. This file holds the state, boot and lazy setup, disabling, and the
//! `err_printk` report. Locks: one, `DmaDebug::state`, a leaf (see [`super`]).

mod freed;
mod hash;
mod map;
mod sync;
mod unmap;

use core::fmt;
use core::sync::atomic::{
    AtomicBool, AtomicU64, Ordering::Acquire, Ordering::Relaxed, Ordering::Release,
};

use super::{Device, DmaAddr, DmaCheckError, DmaDataDirection, Name, DMA_MAPPING_ERROR};
use crate::addr::{PhysAddr, PAGE_SIZE};
use crate::debugobjects::FreeHookId;
use crate::gfp::Gfp;
use crate::platform::Platform;
use crate::sync::SpinLockIrq;
use crate::Mm;

/// Hash buckets (`HASH_SIZE`, scaled down from 16384 to two pages of heads).
pub const HASH_SIZE: u64 = 1024;
/// `HASH_FN_SHIFT`: the bucket is picked by the bus address above bit 13.
pub const HASH_FN_SHIFT: u32 = 13;
/// The order of the block that holds the hash heads and the entries.
const DEBUG_BLOCK_ORDER: u32 = 5;
/// Bytes per entry (the kernel's is cache-line aligned; this one carries the device's
/// names, which the kernel reaches through `entry->dev`).
const ENTRY_SIZE: u64 = 128;
/// Entries preallocated (`PREALLOC_DMA_DEBUG_ENTRIES`, scaled down).
pub const PREALLOC_DMA_DEBUG_ENTRIES: u64 =
    (((PAGE_SIZE as u64) << DEBUG_BLOCK_ORDER) - HEADS_BYTES) / ENTRY_SIZE;
/// Bytes of bucket heads at the start of the block.
const HEADS_BYTES: u64 = HASH_SIZE * 8;

/// What a dma-debug entry records (`dma_debug_single`, ...); the names are `type2name`.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum DebugType {
    /// `dma_map_single` / `dma_map_page`.
    Single = 0,
    /// A `dma_map_sg` segment.
    Sg = 1,
    /// `dma_alloc_coherent`.
    Coherent = 2,
}

impl DebugType {
    /// `type2name[]` (the kernel's spelling, "scather-gather", included).
    pub const fn name(self) -> &'static str {
        match self {
            DebugType::Single => "single",
            DebugType::Sg => "scather-gather",
            DebugType::Coherent => "coherent",
        }
    }

    fn from_bits(bits: u64) -> DebugType {
        match bits {
            0 => DebugType::Single,
            1 => DebugType::Sg,
            _ => DebugType::Coherent,
        }
    }
}

/// `enum map_err_types`.
const MAP_ERR_CHECK_NOT_APPLICABLE: u64 = 0;
const MAP_ERR_NOT_CHECKED: u64 = 1;
const MAP_ERR_CHECKED: u64 = 2;

/// The violations dma-debug reports.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum DmaDebugError {
    /// "device driver tries to free DMA memory it has not allocated".
    FreeNotAllocated,
    /// "device driver tries to free an invalid DMA memory address".
    FreeInvalidAddress,
    /// "device driver frees DMA memory with different size".
    DifferentSize,
    /// "device driver frees DMA memory with wrong function".
    WrongFunction,
    /// "device driver frees DMA memory with different CPU address".
    DifferentCpuAddress,
    /// "device driver frees DMA sg list with different entry count".
    DifferentSgCount,
    /// "device driver frees DMA memory with different direction".
    DifferentDirection,
    /// "device driver failed to check map error".
    MapErrorNotChecked,
    /// "device driver tries to sync DMA memory it has not allocated".
    SyncNotAllocated,
    /// "device driver syncs DMA memory outside allocated range".
    SyncOutsideRange,
    /// "device driver syncs DMA memory with different direction".
    SyncDifferentDirection,
    /// "device driver syncs device read-only DMA memory for cpu" / "... write-only ... to
    /// device".
    SyncWrongWay,
    /// "device driver maps memory from invalid area".
    MapInvalidArea,
    /// Memory given back to the allocator while still mapped (kmemlab's report, in
    /// dma-debug's style; see `dma_debug_freeing`).
    FreedWhileMapped,
    /// "device driver syncs DMA sg list with different entry count".
    SyncDifferentSgCount,
}

/// The number of [`DmaDebugError`] kinds.
pub const NR_DEBUG_ERRORS: usize = 15;

impl DmaDebugError {
    /// Its index in [`super::DmaStats::debug_errors`].
    pub const fn index(self) -> usize {
        self as usize
    }
}

/// The free list and its counts.
pub(in crate::dma) struct DebugState {
    free_head: u64,
    nr_free: u64,
    min_free: u64,
}

/// dma-debug's globals: where its block is, its lock, its counters.
pub struct DmaDebug {
    /// `CONFIG_DMA_API_DEBUG` at boot.
    enabled: bool,
    /// `global_disable`: set when the entries ran out or could not be allocated.
    disabled: AtomicBool,
    base_phys: AtomicU64,
    nr_entries: AtomicU64,
    state: SpinLockIrq<DebugState>,
    live: AtomicU64,
    /// Streaming (single and sg) entries live, and the lowest and highest physical byte
    /// any of them covered since the count was last 0: `dma_debug_freeing` skips
    /// the scan of the hash when the freed range lies outside.
    streaming_live: AtomicU64,
    /// The free hook boot registered; armed while `streaming_live` is not 0.
    free_hook: Option<FreeHookId>,
    range_lo: AtomicU64,
    range_hi: AtomicU64,
    /// Freed-while-mapped reports not printed (beyond the first few per free).
    dropped: AtomicU64,
    /// Set when a walk met a link or field that cannot be dma-debug's own: the block
    /// was overwritten (by a device, say); dma-debug then disables itself.
    corrupted: AtomicBool,
    errors: [AtomicU64; NR_DEBUG_ERRORS],
    error_count: AtomicU64,
}

impl DmaDebug {
    pub(in crate::dma) const fn new() -> DmaDebug {
        DmaDebug {
            enabled: false,
            disabled: AtomicBool::new(false),
            base_phys: AtomicU64::new(0),
            nr_entries: AtomicU64::new(0),
            state: SpinLockIrq::new(DebugState {
                free_head: 0,
                nr_free: 0,
                min_free: 0,
            }),
            live: AtomicU64::new(0),
            streaming_live: AtomicU64::new(0),
            free_hook: None,
            range_lo: AtomicU64::new(u64::MAX),
            range_hi: AtomicU64::new(0),
            dropped: AtomicU64::new(0),
            corrupted: AtomicBool::new(false),
            errors: [const { AtomicU64::new(0) }; NR_DEBUG_ERRORS],
            error_count: AtomicU64::new(0),
        }
    }
}

/// `struct dma_debug_entry` in simulated memory: eight words, then the device's names.
#[repr(C)]
#[derive(zerocopy::FromBytes)]
struct Entry {
    /// Next entry on the bucket chain or free list (index + 1; 0 ends it).
    next: AtomicU64,
    dev_id: AtomicU64,
    dev_addr: AtomicU64,
    size: AtomicU64,
    /// The CPU-side physical address (the kernel keeps pfn and offset).
    phys: AtomicU64,
    /// type | direction << 8 | map_err_type << 16.
    meta: AtomicU64,
    sg_call_ents: AtomicU64,
    sg_mapped_ents: AtomicU64,
    names: [AtomicU64; 8],
}

/// One entry's fields, read out.
#[derive(Copy, Clone)]
pub(in crate::dma) struct Record {
    dev_id: u64,
    dev_addr: u64,
    size: u64,
    phys: u64,
    kind: DebugType,
    dir: DmaDataDirection,
    map_err: u64,
    sg_call_ents: u64,
    sg_mapped_ents: u64,
}

impl Record {
    fn new(dev: &Device, kind: DebugType, dev_addr: DmaAddr, size: usize) -> Record {
        Record {
            dev_id: dev.id() as u64,
            dev_addr,
            size: size as u64,
            phys: 0,
            kind,
            dir: DmaDataDirection::Bidirectional,
            map_err: MAP_ERR_CHECK_NOT_APPLICABLE,
            sg_call_ents: 0,
            sg_mapped_ents: 0,
        }
    }
}

/// The `err_printk()` lines of 6.6 `kernel/dma/debug.c`: each is a `WARN(1, "DMA-API: %s
/// %s: " fmt, …)` at its own line, named here by the function it is in.
mod site {
    use crate::report::KernelSite;

    const fn at(line: u32, func: &'static str) -> KernelSite {
        KernelSite {
            file: "kernel/dma/debug.c",
            line,
            func,
        }
    }

    /// `check_unmap()`: "tries to free an invalid DMA memory address".
    pub(super) const FREE_INVALID_ADDRESS: KernelSite = at(977, "check_unmap");
    /// `check_unmap()`: "tries to free DMA memory it has not allocated".
    pub(super) const FREE_NOT_ALLOCATED: KernelSite = at(981, "check_unmap");
    /// `check_unmap()`: "frees DMA memory with different size".
    pub(super) const DIFFERENT_SIZE: KernelSite = at(991, "check_unmap");
    /// `check_unmap()`: "frees DMA memory with wrong function".
    pub(super) const WRONG_FUNCTION: KernelSite = at(999, "check_unmap");
    /// `check_unmap()`: "frees DMA memory with different CPU address".
    pub(super) const DIFFERENT_CPU_ADDRESS: KernelSite = at(1007, "check_unmap");
    /// `check_unmap()`: "frees DMA sg list with different entry count".
    pub(super) const DIFFERENT_SG_COUNT: KernelSite = at(1019, "check_unmap");
    /// `check_unmap()`: "frees DMA memory with different direction".
    pub(super) const DIFFERENT_DIRECTION: KernelSite = at(1030, "check_unmap");
    /// `check_unmap()`: "failed to check map error".
    pub(super) const MAP_ERROR_NOT_CHECKED: KernelSite = at(1045, "check_unmap");
    /// `check_sync()`: "tries to sync DMA memory it has not allocated".
    pub(super) const SYNC_NOT_ALLOCATED: KernelSite = at(1107, "check_sync");
    /// `check_sync()`: "syncs DMA memory outside allocated range".
    pub(super) const SYNC_OUTSIDE_RANGE: KernelSite = at(1115, "check_sync");
    /// `check_sync()`: "syncs DMA memory with different direction".
    pub(super) const SYNC_DIFFERENT_DIRECTION: KernelSite = at(1128, "check_sync");
    /// `check_sync()`: "syncs device read-only DMA memory for cpu".
    pub(super) const SYNC_READ_ONLY_FOR_CPU: KernelSite = at(1139, "check_sync");
    /// `check_sync()`: "syncs device write-only DMA memory to device".
    pub(super) const SYNC_WRITE_ONLY_TO_DEVICE: KernelSite = at(1149, "check_sync");
    /// `check_sync()`: "syncs DMA sg list with different entry count".
    pub(super) const SYNC_DIFFERENT_SG_COUNT: KernelSite = at(1159, "check_sync");
    /// `debug_dma_map_single()`: "maps memory from invalid area".
    pub(super) const MAP_INVALID_AREA: KernelSite = at(1202, "debug_dma_map_single");
    /// kmemlab-only: "frees memory that is still DMA-mapped" (6.6 has no such check).
    pub(super) const FREED_WHILE_MAPPED: KernelSite = at(0, "debug_dma_check_freed");
}

/// A link or field of dma-debug's block that cannot be its own (the block was
/// overwritten): what, where, and the value found.
#[derive(Copy, Clone, Debug)]
struct Corrupt {
    what: &'static str,
    at: u64,
    value: u64,
}

/// The predicates `__hash_bucket_find()` takes.
#[derive(Copy, Clone, PartialEq, Eq)]
enum Match {
    /// `exact_match()`: same device, same bus address.
    Exact,
    /// `containing_match()`: same device, the entry's range contains the reference's.
    Containing,
}

fn hash_fn(dev_addr: u64) -> u64 {
    (dev_addr >> HASH_FN_SHIFT) & (HASH_SIZE - 1)
}

impl<P: Platform> Mm<P> {
    /// Boot: is `CONFIG_DMA_API_DEBUG` on? When it is, the free check is registered as a free hook, as the kernel's
    /// `dma_debug_init()` (a `core_initcall`) sets dma-debug up at boot.
    pub(crate) fn dma_debug_setup(&mut self, enabled: bool) {
        self.dma.debug.enabled = enabled;
        if enabled {
            // The registry is empty at this point of boot: it cannot be full.
            self.dma.debug.free_hook = self.register_free_hook(Self::dma_debug_freeing).ok();
        }
    }

    /// `dma_debug_init()`: preallocate the hash and the entries, once (the first driver
    /// that sets a mask or maps gets here); `true` when dma-debug is ready.
    pub fn dma_debug_init(&self) -> bool {
        let d = &self.dma.debug;
        if !d.enabled || d.disabled.load(Relaxed) {
            return false;
        }
        if d.nr_entries.load(Acquire) != 0 {
            return true;
        }
        let may_sleep =
            self.this_cpu().preempt_count.get() == 0 && !self.platform().irqs_disabled();
        let gfp = if may_sleep {
            Gfp::GFP_KERNEL
        } else {
            Gfp::GFP_ATOMIC
        };
        let Ok(page) = self.alloc_pages(gfp | Gfp::__GFP_NOWARN, DEBUG_BLOCK_ORDER) else {
            d.disabled.store(true, Relaxed);
            self.printk(format_args!(
                "DMA-API: debugging out of memory error - disabled"
            ));
            return false;
        };
        let base = self.page_to_pfn(page).phys().0;
        let mut state = d.state.lock_irqsave(self.platform());
        if d.nr_entries.load(Acquire) != 0 {
            drop(state);
            let _ = self.__free_pages(page, DEBUG_BLOCK_ORDER);
            return true;
        }
        if !self.dma_zero_phys(base, PAGE_SIZE << DEBUG_BLOCK_ORDER) {
            drop(state);
            let _ = self.__free_pages(page, DEBUG_BLOCK_ORDER);
            d.disabled.store(true, Relaxed);
            return false;
        }
        d.base_phys.store(base, Release);
        let n = PREALLOC_DMA_DEBUG_ENTRIES;
        d.nr_entries.store(n, Release);
        self.debug_reset(&mut state);
        state.min_free = n;
        true
    }

    /// Every entry back on the free list, every bucket empty (the lock held): boot, and
    /// when dma-debug disables itself, so that the mappings it stops tracking do not stay
    /// counted as live forever.
    fn debug_reset(&self, state: &mut DebugState) {
        let d = &self.dma.debug;
        let n = d.nr_entries.load(Acquire);
        for b in 0..HASH_SIZE {
            if let Some(head) = self.debug_bucket(b) {
                head.store(0, Relaxed);
            }
        }
        for i in 0..n {
            if let Some(e) = self.debug_entry(i) {
                let next = if i + 1 < n { i + 2 } else { 0 };
                e.next.store(next, Relaxed);
            }
        }
        state.free_head = if n > 0 { 1 } else { 0 };
        state.nr_free = n;
        d.live.store(0, Relaxed);
        self.no_streaming_left();
    }

    /// `global_disable = true` with the kernel's message: dma-debug stops tracking, and
    /// (unless the block was corrupted, which is kept for [`Mm::dma_check`] to report)
    /// its entries are drained so that `mappings_live` comes back to 0.
    fn dma_debug_disable(&self, msg: fmt::Arguments<'_>) {
        let d = &self.dma.debug;
        if d.disabled.swap(true, Relaxed) {
            return;
        }
        {
            let mut state = d.state.lock_irqsave(self.platform());
            if d.corrupted.load(Relaxed) {
                d.live.store(0, Relaxed);
                self.no_streaming_left();
            } else {
                self.debug_reset(&mut state);
            }
        }
        self.printk(msg);
    }

    /// A walk met something that is not dma-debug's own: report it in dma-debug's style
    /// (kmemlab's message) and disable dma-debug; the operation is refused.
    fn dma_debug_corrupted(&self, c: Corrupt) {
        let d = &self.dma.debug;
        d.corrupted.store(true, Relaxed);
        self.dma.counters.warnings.fetch_add(1, Relaxed);
        self.dma_debug_disable(format_args!(
            "DMA-API: debugging: corrupted dma_debug_entry {} [index={}] [value={:#x}] - disabling",
            c.what, c.at, c.value
        ));
    }

    fn dma_debug_disabled(&self) -> bool {
        !self.dma_debug_init()
    }

    /// `err_printk()` (6.6): count, then `WARN(1, "DMA-API: %s %s: " fmt, …)` at `site`
    /// (the message line, then the WARNING report; taints `W`).
    fn err_printk(
        &self,
        names: (&str, &str),
        kind: DmaDebugError,
        site: crate::report::KernelSite,
        msg: fmt::Arguments<'_>,
    ) {
        let d = &self.dma.debug;
        d.error_count.fetch_add(1, Relaxed);
        d.errors[kind.index()].fetch_add(1, Relaxed);
        crate::report::warn!(
            self,
            true,
            site,
            "DMA-API: {} {}: {}",
            names.0,
            names.1,
            msg
        );
    }

    /// Freed-while-mapped reports counted but not printed.
    pub(in crate::dma) fn dma_debug_dropped(&self) -> u64 {
        self.dma.debug.dropped.load(Relaxed)
    }

    /// The block dma-debug keeps its hash and entries in (`None` until the first driver
    /// sets a mask or maps): its physical address and size, for tests that play a device
    /// scribbling over it.
    pub fn dma_debug_block(&self) -> Option<(PhysAddr, u64)> {
        let base = self.dma.debug.base_phys.load(Acquire);
        (base != 0).then_some((PhysAddr(base), (PAGE_SIZE as u64) << DEBUG_BLOCK_ORDER))
    }

    pub(in crate::dma) fn dma_debug_live_entries(&self) -> u64 {
        self.dma.debug.live.load(Relaxed)
    }

    pub(in crate::dma) fn dma_debug_error_counts(&self) -> ([u64; NR_DEBUG_ERRORS], u64) {
        let d = &self.dma.debug;
        let mut out = [0; NR_DEBUG_ERRORS];
        for (o, c) in out.iter_mut().zip(&d.errors) {
            *o = c.load(Relaxed);
        }
        (out, d.error_count.load(Relaxed))
    }

    /// Entries on the free list and in the hash add up to what was preallocated, and no
    /// link leads out of the block or round in a cycle.
    pub(in crate::dma) fn dma_debug_check(&self) -> Result<(), DmaCheckError> {
        let d = &self.dma.debug;
        let total = d.nr_entries.load(Acquire);
        if total == 0 {
            return Ok(());
        }
        let state = d.state.lock_irqsave(self.platform());
        let corrupt = |bucket: u64, c: Corrupt| DmaCheckError::DebugCorrupted {
            bucket,
            index: c.at,
            link: c.value,
        };
        if d.corrupted.load(Relaxed) {
            return Err(DmaCheckError::DebugCorrupted {
                bucket: u64::MAX,
                index: u64::MAX,
                link: 0,
            });
        }
        let mut hashed = 0;
        for bucket in 0..HASH_SIZE {
            self.for_each_in_bucket(bucket, |_| {
                hashed += 1;
                true
            })
            .map_err(|c| corrupt(bucket, c))?;
        }
        let mut free = 0;
        self.walk_chain("free link", state.free_head, |_| {
            free += 1;
            true
        })
        .map_err(|c| corrupt(u64::MAX, c))?;
        if hashed + free != total || free != state.nr_free || hashed != d.live.load(Relaxed) {
            return Err(DmaCheckError::DebugEntries {
                hashed,
                free,
                total,
            });
        }
        Ok(())
    }
}
