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

use core::fmt;
use core::sync::atomic::{
    AtomicBool, AtomicU64, Ordering::Acquire, Ordering::Relaxed, Ordering::Release,
};

use super::{Device, DmaAddr, DmaCheckError, DmaDataDirection, Name, DMA_MAPPING_ERROR};
use crate::addr::{PhysAddr, VirtAddr, PAGE_SIZE};
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
            let _ = self.register_free_hook(Self::dma_debug_freeing);
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
        d.streaming_live.store(0, Relaxed);
        d.range_lo.store(u64::MAX, Relaxed);
        d.range_hi.store(0, Relaxed);
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
                d.streaming_live.store(0, Relaxed);
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

    /// The head of hash bucket `bucket`, or `None` when there is no block or no such
    /// bucket.
    fn debug_bucket(&self, bucket: u64) -> Option<&AtomicU64> {
        let base = self.dma.debug.base_phys.load(Acquire);
        if base == 0 || bucket >= HASH_SIZE {
            return None;
        }
        // The heads fill the block's first pages; a device may still overwrite them, so
        // every value read is validated.
        self.ram().atomic_u64(base + bucket * 8).ok()
    }

    /// Entry `i`, or `None` unless `i < nr_entries`. Indices come from links read back
    /// out of simulated RAM, so each one is checked before a pointer is built.
    fn debug_entry(&self, i: u64) -> Option<&Entry> {
        let d = &self.dma.debug;
        let base = d.base_phys.load(Acquire);
        if base == 0 || i >= d.nr_entries.load(Acquire) {
            return None;
        }
        // `i < nr_entries`, so the 128 bytes lie inside the block.
        self.ram()
            .view::<Entry>(base + HEADS_BYTES + i * ENTRY_SIZE)
            .ok()
    }

    fn read_entry(&self, i: u64) -> Option<Record> {
        let e = self.debug_entry(i)?;
        let meta = e.meta.load(Relaxed);
        Some(Record {
            dev_id: e.dev_id.load(Relaxed),
            dev_addr: e.dev_addr.load(Relaxed),
            size: e.size.load(Relaxed),
            phys: e.phys.load(Relaxed),
            kind: DebugType::from_bits(meta & 0xff),
            dir: DmaDataDirection::from_bits((meta >> 8) & 0xff),
            map_err: (meta >> 16) & 0xff,
            sg_call_ents: e.sg_call_ents.load(Relaxed),
            sg_mapped_ents: e.sg_mapped_ents.load(Relaxed),
        })
    }

    fn entry_names(&self, i: u64) -> (Name, Name) {
        let mut raw = [0u8; 64];
        if let Some(e) = self.debug_entry(i) {
            for (w, chunk) in e.names.iter().zip(raw.chunks_mut(8)) {
                chunk.copy_from_slice(&w.load(Relaxed).to_le_bytes());
            }
        }
        let name = |b: &[u8]| {
            let mut n = Name {
                bytes: [0; 31],
                len: b[31].min(31),
            };
            n.bytes.copy_from_slice(&b[..31]);
            n
        };
        (name(&raw[..32]), name(&raw[32..]))
    }

    fn dma_debug_disabled(&self) -> bool {
        !self.dma_debug_init()
    }

    /// Walk a chain of links starting with `first` (a bucket head or the free list):
    /// `f(index)` per entry until it returns `false`. Every link is checked against
    /// `nr_entries` and the walk is capped at `nr_entries` steps, so that a chain a
    /// device overwrote (a link past the block, a cycle) is reported, not followed.
    fn walk_chain(
        &self,
        what: &'static str,
        first: u64,
        mut f: impl FnMut(u64) -> bool,
    ) -> Result<(), Corrupt> {
        let n = self.dma.debug.nr_entries.load(Acquire);
        let (mut next, mut at, mut steps) = (first, u64::MAX, 0u64);
        while next != 0 {
            if next > n {
                return Err(Corrupt {
                    what,
                    at,
                    value: next,
                });
            }
            steps += 1;
            if steps > n {
                return Err(Corrupt {
                    what: "chain (a cycle)",
                    at,
                    value: next,
                });
            }
            let i = next - 1;
            if !f(i) {
                return Ok(());
            }
            at = i;
            next = self.debug_entry(i).map_or(0, |e| e.next.load(Relaxed));
        }
        Ok(())
    }

    /// The entries of a bucket, in order.
    fn for_each_in_bucket(&self, bucket: u64, f: impl FnMut(u64) -> bool) -> Result<(), Corrupt> {
        let head = self.debug_bucket(bucket).map_or(0, |h| h.load(Relaxed));
        self.walk_chain("hash link", head, f)
    }

    /// `add_dma_entry()`: take a free entry and hash it.
    fn add_dma_entry(&self, dev: &Device, r: Record) {
        let d = &self.dma.debug;
        let mut state = d.state.lock_irqsave(self.platform());
        if d.disabled.load(Relaxed) {
            return;
        }
        if state.nr_free == 0 {
            drop(state);
            self.dma_debug_disable(format_args!("DMA-API: debugging out of memory - disabling"));
            return;
        }
        // hash_bucket_add(): at the tail, so the oldest mapping is found first. Find the
        // tail first, so that a corrupted chain costs no entry.
        let bucket = hash_fn(r.dev_addr);
        let mut tail = None;
        if let Err(c) = self.for_each_in_bucket(bucket, |i| {
            tail = Some(i);
            true
        }) {
            drop(state);
            self.dma_debug_corrupted(c);
            return;
        }
        let i = state.free_head.wrapping_sub(1);
        let Some(e) = self.debug_entry(i) else {
            let c = Corrupt {
                what: "free list head",
                at: u64::MAX,
                value: state.free_head,
            };
            drop(state);
            self.dma_debug_corrupted(c);
            return;
        };
        let next_free = e.next.load(Relaxed);
        if next_free > d.nr_entries.load(Acquire) {
            drop(state);
            self.dma_debug_corrupted(Corrupt {
                what: "free link",
                at: i,
                value: next_free,
            });
            return;
        }
        state.free_head = next_free;
        state.nr_free -= 1;
        state.min_free = state.min_free.min(state.nr_free);
        e.dev_id.store(r.dev_id, Relaxed);
        e.dev_addr.store(r.dev_addr, Relaxed);
        e.size.store(r.size, Relaxed);
        e.phys.store(r.phys, Relaxed);
        e.meta.store(
            r.kind as u64 | (r.dir as u64) << 8 | r.map_err << 16,
            Relaxed,
        );
        e.sg_call_ents.store(r.sg_call_ents, Relaxed);
        e.sg_mapped_ents.store(r.sg_mapped_ents, Relaxed);
        let mut raw = [0u8; 64];
        for (half, name) in [dev.driver, dev.name].iter().enumerate() {
            raw[half * 32..half * 32 + 31].copy_from_slice(&name.bytes);
            raw[half * 32 + 31] = name.len;
        }
        for (w, chunk) in e.names.iter().zip(raw.chunks(8)) {
            let mut b = [0u8; 8];
            b.copy_from_slice(chunk);
            w.store(u64::from_le_bytes(b), Relaxed);
        }
        e.next.store(0, Relaxed);
        let link = match tail {
            Some(t) => self.debug_entry(t).map(|t| &t.next),
            None => self.debug_bucket(bucket),
        };
        if let Some(link) = link {
            link.store(i + 1, Relaxed);
        }
        d.live.fetch_add(1, Relaxed);
        if r.kind != DebugType::Coherent {
            d.streaming_live.fetch_add(1, Relaxed);
            d.range_lo.fetch_min(r.phys, Relaxed);
            d.range_hi
                .fetch_max(r.phys.saturating_add(r.size.max(1)), Relaxed);
        }
    }

    /// `hash_bucket_del()` + `dma_entry_free()` (the lock held).
    fn remove_entry(&self, state: &mut DebugState, i: u64) -> Result<(), Corrupt> {
        let d = &self.dma.debug;
        let Some(r) = self.read_entry(i) else {
            return Ok(());
        };
        let bucket = hash_fn(r.dev_addr);
        let mut prev = None;
        let mut found = false;
        self.for_each_in_bucket(bucket, |j| {
            if j == i {
                found = true;
                return false;
            }
            prev = Some(j);
            true
        })?;
        if !found {
            return Ok(());
        }
        let Some(e) = self.debug_entry(i) else {
            return Ok(());
        };
        let after = e.next.load(Relaxed);
        let link = match prev {
            Some(p) => self.debug_entry(p).map(|p| &p.next),
            None => self.debug_bucket(bucket),
        };
        if let Some(link) = link {
            link.store(after, Relaxed);
        }
        e.next.store(state.free_head, Relaxed);
        state.free_head = i + 1;
        state.nr_free += 1;
        let _ = d
            .live
            .fetch_update(Relaxed, Relaxed, |v| Some(v.saturating_sub(1)));
        if r.kind != DebugType::Coherent {
            let left = d
                .streaming_live
                .fetch_update(Relaxed, Relaxed, |v| Some(v.saturating_sub(1)))
                .map_or(0, |v| v.saturating_sub(1));
            if left == 0 {
                d.range_lo.store(u64::MAX, Relaxed);
                d.range_hi.store(0, Relaxed);
            }
        }
        Ok(())
    }

    /// `__hash_bucket_find()`: the entry that `matcher` accepts and that fits the
    /// reference best (size, type, direction, sg count each count one level; a perfect
    /// fit is returned at once); with several matches and no perfect fit, none. As the
    /// kernel's comment says, drivers map the same address several times, and best fit
    /// avoids false positives.
    fn hash_bucket_find(
        &self,
        bucket: u64,
        r: &Record,
        matcher: Match,
    ) -> Result<Option<u64>, Corrupt> {
        let (mut best, mut best_lvl, mut matches) = (None, -1i32, 0);
        let mut perfect = None;
        self.for_each_in_bucket(bucket, |i| {
            let Some(e) = self.read_entry(i) else {
                return true;
            };
            let accepted = e.dev_id == r.dev_id
                && match matcher {
                    Match::Exact => e.dev_addr == r.dev_addr,
                    // containing_match(): b->dev_addr <= a->dev_addr &&
                    // b->dev_addr + b->size >= a->dev_addr + a->size, in the kernel's
                    // wrapping u64 arithmetic (explicitly wrapping here, never a
                    // panic): a sync whose size wraps past the top is "contained" and
                    // then reported as outside the allocated range, as the kernel does.
                    Match::Containing => {
                        e.dev_addr <= r.dev_addr
                            && e.dev_addr.wrapping_add(e.size) >= r.dev_addr.wrapping_add(r.size)
                    }
                };
            if !accepted {
                return true;
            }
            matches += 1;
            let lvl = (e.size == r.size) as i32
                + (e.kind == r.kind) as i32
                + (e.dir == r.dir) as i32
                + (e.sg_call_ents == r.sg_call_ents) as i32;
            if lvl == 4 {
                perfect = Some(i);
                return false;
            }
            if lvl > best_lvl {
                best_lvl = lvl;
                best = Some(i);
            }
            true
        })?;
        if perfect.is_some() {
            return Ok(perfect);
        }
        Ok(if matches == 1 { best } else { None })
    }

    /// `bucket_find_exact()`.
    fn bucket_find_exact(&self, r: &Record) -> Result<Option<u64>, Corrupt> {
        self.hash_bucket_find(hash_fn(r.dev_addr), r, Match::Exact)
    }

    /// `bucket_find_contain()`: `__hash_bucket_find(containing_match)` in the reference's
    /// bucket, then back through the buckets below (`limit = min(HASH_SIZE,
    /// (dev_addr >> HASH_FN_SHIFT) + 1)`).
    fn bucket_find_contain(&self, r: &Record) -> Result<Option<u64>, Corrupt> {
        let mut addr = r.dev_addr;
        let limit = HASH_SIZE.min((r.dev_addr >> HASH_FN_SHIFT) + 1);
        for _ in 0..limit {
            if let Some(i) = self.hash_bucket_find(hash_fn(addr), r, Match::Containing)? {
                return Ok(Some(i));
            }
            addr = addr.wrapping_sub(1 << HASH_FN_SHIFT);
        }
        Ok(None)
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

    /// `check_unmap()`: find the mapping and compare; the entry is removed (and
    /// returned).
    fn check_unmap(&self, dev: &Device, r: Record) -> Option<Record> {
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

    /// `check_sync()`.
    fn check_sync(&self, dev: &Device, r: Record, to_cpu: bool) {
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

    // ----- the hooks the API calls ---------------------------------------------------

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

    /// Put back an entry [`Mm::debug_dma_free_coherent`] removed, when the free did
    /// not happen after all.
    pub(in crate::dma) fn debug_restore_entry(&self, dev: &Device, r: Record) {
        if self.dma_debug_disabled() {
            return;
        }
        self.add_dma_entry(dev, r);
    }

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
    /// ([`super::DmaStats::debug_reports_dropped`]) and summed up in one line.
    fn dma_debug_freeing(mm: &Mm<P>, phys: PhysAddr, len: u64) {
        if mm.dma.debug.streaming_live.load(Relaxed) == 0 {
            return;
        }
        mm.debug_check_freed(phys.0, len);
    }

    #[cold]
    fn debug_check_freed(&self, start: u64, len: u64) {
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
