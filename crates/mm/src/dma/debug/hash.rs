//! dma-debug's hash of entries in simulated memory (`kernel/dma/debug.c`, Linux 6.6:
//! `get_hash_bucket`, `hash_bucket_add` / `hash_bucket_del`, `__hash_bucket_find`,
//! `dma_entry_alloc` / `dma_entry_free`): bucket heads and entries found by checked
//! indices, chains walked no further than the entries there are.

use core::sync::atomic::{AtomicU64, Ordering::Acquire, Ordering::Relaxed};

use super::{
    hash_fn, Corrupt, DebugState, DebugType, Device, DmaDataDirection, Entry, Match, Name, Record,
    ENTRY_SIZE, HASH_FN_SHIFT, HASH_SIZE, HEADS_BYTES,
};
use crate::platform::Platform;
use crate::Mm;

impl<P: Platform> Mm<P> {
    /// The head of hash bucket `bucket`, or `None` when there is no block or no such
    /// bucket.
    pub(super) fn debug_bucket(&self, bucket: u64) -> Option<&AtomicU64> {
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
    pub(super) fn debug_entry(&self, i: u64) -> Option<&Entry> {
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

    pub(super) fn read_entry(&self, i: u64) -> Option<Record> {
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

    pub(super) fn entry_names(&self, i: u64) -> (Name, Name) {
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

    /// Walk a chain of links starting with `first` (a bucket head or the free list):
    /// `f(index)` per entry until it returns `false`. Every link is checked against
    /// `nr_entries` and the walk is capped at `nr_entries` steps, so that a chain a
    /// device overwrote (a link past the block, a cycle) is reported, not followed.
    pub(super) fn walk_chain(
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
    pub(super) fn for_each_in_bucket(
        &self,
        bucket: u64,
        f: impl FnMut(u64) -> bool,
    ) -> Result<(), Corrupt> {
        let head = self.debug_bucket(bucket).map_or(0, |h| h.load(Relaxed));
        self.walk_chain("hash link", head, f)
    }

    /// `add_dma_entry()`: take a free entry and hash it.
    pub(super) fn add_dma_entry(&self, dev: &Device, r: Record) {
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
            if d.streaming_live.fetch_add(1, Relaxed) == 0
                && let Some(hook) = d.free_hook
            {
                self.arm_free_hook(hook, true);
            }
            d.range_lo.fetch_min(r.phys, Relaxed);
            d.range_hi
                .fetch_max(r.phys.saturating_add(r.size.max(1)), Relaxed);
        }
    }

    /// `hash_bucket_del()` + `dma_entry_free()` (the lock held).
    pub(super) fn remove_entry(&self, state: &mut DebugState, i: u64) -> Result<(), Corrupt> {
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
                self.no_streaming_left();
            }
        }
        Ok(())
    }

    /// `__hash_bucket_find()`: the entry that `matcher` accepts and that fits the
    /// reference best (size, type, direction, sg count each count one level; a perfect
    /// fit is returned at once); with several matches and no perfect fit, none. As the
    /// kernel's comment says, drivers map the same address several times, and best fit
    /// avoids false positives.
    pub(super) fn hash_bucket_find(
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
    pub(super) fn bucket_find_exact(&self, r: &Record) -> Result<Option<u64>, Corrupt> {
        self.hash_bucket_find(hash_fn(r.dev_addr), r, Match::Exact)
    }

    /// `bucket_find_contain()`: `__hash_bucket_find(containing_match)` in the reference's
    /// bucket, then back through the buckets below (`limit = min(HASH_SIZE,
    /// (dev_addr >> HASH_FN_SHIFT) + 1)`).
    pub(super) fn bucket_find_contain(&self, r: &Record) -> Result<Option<u64>, Corrupt> {
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
}
