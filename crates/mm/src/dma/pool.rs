//! DMA pools (`mm/dmapool.c`, the 6.4 rewrite): small coherent blocks carved out of
//! pages from `dma_alloc_coherent`, none crossing the pool's `boundary`. The pool
//! (`struct dma_pool`) and its page records (`struct dma_page`) are kmalloc'd; a free
//! block holds its own `struct dma_block` (next free block, bus address), so the free
//! list costs no memory. The `DMAPOOL_DEBUG` checks on free are on.
//!
//! All of it is RAM that a device or a stray write may have changed: the pool's geometry
//! is checked every time it is read (kmemlab's check, reported and refused), the lock
//! word is taken with the bounded [`Mm::spin_lock`], a block or page record that cannot
//! be read is the kernel's page fault, and every list walk stops after as many entries
//! as the machine's memory could hold (beyond that it is a cycle: a soft lockup).

use core::sync::atomic::{AtomicU64, Ordering::Relaxed};

use super::{Device, DmaAddr, DmaError};
use crate::addr::{VirtAddr, PAGE_SIZE};
use crate::gfp::Gfp;
use crate::platform::Platform;
use crate::sync::TryLock;
use crate::Mm;

// Words of `struct dma_pool`.
const NEXT_BLOCK: usize = 0;
const PAGE_LIST: usize = 1;
const NR_BLOCKS: usize = 2;
const NR_ACTIVE: usize = 3;
const NR_PAGES: usize = 4;
const SIZE: usize = 5;
const ALLOCATION: usize = 6;
const BOUNDARY: usize = 7;
const LOCK: usize = 8;
const NAME: usize = 9; // four words, 31 bytes and a length
const POOL_WORDS: usize = 13;
// Words of `struct dma_page`: next page, CPU address, bus address.
const PAGE_WORDS: usize = 3;
/// `struct dma_pool` as words.
type PoolWords = [AtomicU64; POOL_WORDS];
/// The lock's name in a spinlock report.
const POOL_LOCK_NAME: &str = "dma_pool.lock";
/// `sizeof(struct dma_block)`: the smallest block.
const DMA_BLOCK_SIZE: u64 = 16;
/// `POOL_POISON_FREED`: what a freed block is filled with.
pub const POOL_POISON_FREED: u8 = 0xa7;

/// A `struct dma_pool *`, with the device it allocates for (`pool->dev`).
#[derive(Debug)]
pub struct DmaPool<'d> {
    pool: VirtAddr,
    dev: &'d Device,
}

/// A pool's counters.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct DmaPoolInfo {
    /// Block size (after rounding up for the free-list record and alignment).
    pub size: u64,
    /// Bytes per coherent allocation (at least a page).
    pub allocation: u64,
    /// No block crosses a multiple of this.
    pub boundary: u64,
    /// Blocks carved so far.
    pub nr_blocks: u64,
    /// Blocks handed out.
    pub nr_active: u64,
    /// Coherent allocations held.
    pub nr_pages: u64,
}

impl DmaPool<'_> {
    /// The device the pool allocates for.
    pub fn device(&self) -> &Device {
        self.dev
    }

    /// The `struct dma_pool *`: where the pool's words are, in kmalloc'd memory.
    pub fn addr(&self) -> VirtAddr {
        self.pool
    }
}

impl<P: Platform> Mm<P> {
    /// The pool's words (a kmalloc'd object, so always readable while the pool lives).
    fn pool_words(&self, pool: &DmaPool<'_>) -> Result<&PoolWords, DmaError> {
        self.dma_kernel_words::<POOL_WORDS>(pool.pool)
            .ok_or(DmaError::Inval)
    }

    /// The pool's geometry as `dma_pool_create` set it: a block of at least
    /// `sizeof(struct dma_block)` and at most `INT_MAX` bytes, an allocation of
    /// `max(size, PAGE_SIZE)`, a boundary between the two (a power of two unless it is
    /// the allocation). Anything else was written behind the pool's back: reported
    /// (kmemlab's check, in `pool_block_err`'s style) and the operation refused.
    fn pool_geometry(&self, pool: &DmaPool<'_>, w: &PoolWords) -> Result<Geometry, DmaError> {
        let g = Geometry {
            size: w[SIZE].load(Relaxed),
            allocation: w[ALLOCATION].load(Relaxed),
            boundary: w[BOUNDARY].load(Relaxed),
        };
        let sound = (DMA_BLOCK_SIZE..=i32::MAX as u64).contains(&g.size)
            && g.allocation == g.size.max(PAGE_SIZE as u64)
            && (g.size..=g.allocation).contains(&g.boundary)
            && (g.boundary == g.allocation || g.boundary.is_power_of_two());
        if sound {
            return Ok(g);
        }
        self.dma.counters.warnings.fetch_add(1, Relaxed);
        self.dev_printk(
            pool.dev,
            format_args!(
                "dma_pool {}: corrupted pool (size {:#x}, allocation {:#x}, boundary {:#x}), refusing the operation",
                self.pool_name(w).as_str(),
                g.size,
                g.allocation,
                g.boundary
            ),
        );
        Err(DmaError::Inval)
    }

    /// `spin_lock_irqsave(&pool->lock)`: the lock word (the low half of its slot) taken
    /// with the spinlock checks, so that an overwritten word is reported, not spun on.
    fn pool_lock(&self, pool: &DmaPool<'_>) -> Result<PoolLock<'_, P>, DmaError> {
        let lock = self
            .kview::<TryLock>(pool.pool.0 + LOCK as u64 * 8)
            .map_err(|_| DmaError::Inval)?;
        let flags = self.platform().local_irq_save();
        self.spin_lock(lock, POOL_LOCK_NAME);
        Ok(PoolLock {
            mm: self,
            lock,
            flags,
        })
    }

    /// The most blocks of `size` bytes, or allocations of that many bytes, that the
    /// machine's memory could hold: a list longer than this goes round a cycle.
    fn pool_list_limit(&self, size: u64) -> u64 {
        (self.totalram_pages() * PAGE_SIZE as u64) / size.max(1) + 1
    }

    /// A pool list that never ends: the kernel would spin on it with the pool's lock
    /// held, and the watchdog reports the soft lockup.
    fn pool_list_stuck(&self) -> DmaError {
        self.soft_lockup(POOL_LOCK_NAME);
        DmaError::Inval
    }

    /// `dma_pool_create()`: a pool of `size`-byte blocks aligned to `align` (a power of
    /// two), none crossing `boundary` (0: only the allocation's end; else a power of two
    /// at least `size`).
    pub fn dma_pool_create<'d>(
        &self,
        name: &str,
        dev: &'d Device,
        size: usize,
        align: usize,
        boundary: usize,
    ) -> Result<DmaPool<'d>, DmaError> {
        let align = if align == 0 { 1 } else { align as u64 };
        if !align.is_power_of_two() || size == 0 || size > i32::MAX as usize {
            return Err(DmaError::Inval);
        }
        // `size = ALIGN(size, align)` in dma_pool_create(). An alignment so large that
        // the rounding overflows, or makes a block bigger than the INT_MAX the kernel
        // bounds `size` by, is refused (kmemlab's check: the kernel's size_t wraps on
        // 32-bit, and on 64-bit goes on to ask for an absurd coherent allocation).
        let Some(size) = (size as u64)
            .max(DMA_BLOCK_SIZE)
            .checked_next_multiple_of(align)
            .filter(|&s| s <= i32::MAX as u64)
        else {
            return Err(DmaError::Inval);
        };
        let allocation = size.max(PAGE_SIZE as u64);
        let boundary = match boundary as u64 {
            0 => allocation,
            b if b < size || !b.is_power_of_two() => return Err(DmaError::Inval),
            b => b.min(allocation),
        };
        let addr = self
            .kzalloc(POOL_WORDS * 8, Gfp::GFP_KERNEL)
            .map_err(|_| DmaError::NoMem)?;
        let pool = DmaPool { pool: addr, dev };
        let w = self.pool_words(&pool)?;
        w[SIZE].store(size, Relaxed);
        w[ALLOCATION].store(allocation, Relaxed);
        w[BOUNDARY].store(boundary, Relaxed);
        let n = super::Name::new(name);
        let mut raw = [0u8; 32];
        raw[..31].copy_from_slice(&n.bytes);
        raw[31] = n.len;
        for (word, chunk) in w[NAME..NAME + 4].iter().zip(raw.chunks_exact(8)) {
            let mut b = [0u8; 8];
            b.copy_from_slice(chunk);
            word.store(u64::from_le_bytes(b), Relaxed);
        }
        Ok(pool)
    }

    fn pool_name(&self, w: &PoolWords) -> super::Name {
        let mut raw = [0u8; 32];
        for (chunk, word) in raw.chunks_exact_mut(8).zip(&w[NAME..NAME + 4]) {
            chunk.copy_from_slice(&word.load(Relaxed).to_le_bytes());
        }
        let mut n = super::Name {
            bytes: [0; 31],
            len: raw[31].min(31),
        };
        n.bytes.copy_from_slice(&raw[..31]);
        n
    }

    /// The pool's counters (as they stand in RAM; all zero if the pool cannot be read).
    pub fn dma_pool_info(&self, pool: &DmaPool<'_>) -> DmaPoolInfo {
        let Ok(w) = self.pool_words(pool) else {
            return DmaPoolInfo {
                size: 0,
                allocation: 0,
                boundary: 0,
                nr_blocks: 0,
                nr_active: 0,
                nr_pages: 0,
            };
        };
        DmaPoolInfo {
            size: w[SIZE].load(Relaxed),
            allocation: w[ALLOCATION].load(Relaxed),
            boundary: w[BOUNDARY].load(Relaxed),
            nr_blocks: w[NR_BLOCKS].load(Relaxed),
            nr_active: w[NR_ACTIVE].load(Relaxed),
            nr_pages: w[NR_PAGES].load(Relaxed),
        }
    }

    /// `dma_pool_alloc()`: a block as (CPU address, bus address); a new coherent
    /// allocation is carved up when no block is free. Zeroed with `__GFP_ZERO`.
    pub fn dma_pool_alloc(
        &self,
        pool: &DmaPool<'_>,
        gfp: Gfp,
    ) -> Result<(VirtAddr, DmaAddr), DmaError> {
        let w = self.pool_words(pool)?;
        let g = self.pool_geometry(pool, w)?;
        let block = match self.pool_block_pop(pool, w)? {
            Some(b) => b,
            None => {
                let (vaddr, dma) = self.dma_alloc_coherent(pool.dev, g.allocation as usize, gfp)?;
                let Ok(record) = self.kmalloc(PAGE_WORDS * 8, gfp) else {
                    let _ = self.dma_free_coherent(pool.dev, g.allocation as usize, vaddr, dma);
                    return Err(DmaError::NoMem);
                };
                let lock = self.pool_lock(pool)?;
                self.pool_initialise_page(w, &g, record, vaddr, dma);
                drop(lock);
                self.pool_block_pop(pool, w)?.ok_or(DmaError::NoMem)?
            }
        };
        if gfp.contains(Gfp::__GFP_ZERO) {
            self.pool_fill(block.0, 0, g.size);
        }
        Ok(block)
    }

    /// Fill a block's `size` bytes with `byte`.
    fn pool_fill(&self, block: VirtAddr, byte: u8, size: u64) {
        let chunk = [byte; 64];
        let mut done = 0;
        while done < size {
            let n = (size - done).min(chunk.len() as u64) as usize;
            let _ = self.copy_to_kernel(VirtAddr(block.0.wrapping_add(done)), &chunk[..n]);
            done += n as u64;
        }
    }

    /// `pool_block_pop()`. A free-list head that cannot be read is the page fault the
    /// kernel would take reading `block->next_block`.
    fn pool_block_pop(
        &self,
        pool: &DmaPool<'_>,
        w: &PoolWords,
    ) -> Result<Option<(VirtAddr, DmaAddr)>, DmaError> {
        let _lock = self.pool_lock(pool)?;
        let block = w[NEXT_BLOCK].load(Relaxed);
        if block == 0 {
            return Ok(None);
        }
        let Some(b) = self.dma_kernel_words::<2>(VirtAddr(block)) else {
            self.kernel_fault(block, false);
            return Err(DmaError::Inval);
        };
        w[NEXT_BLOCK].store(b[0].load(Relaxed), Relaxed);
        w[NR_ACTIVE].fetch_add(1, Relaxed);
        Ok(Some((VirtAddr(block), b[1].load(Relaxed))))
    }

    /// `pool_initialise_page()`: carve the allocation into blocks, skipping to the next
    /// boundary where a block would cross it, and put them at the head of the free list.
    /// The geometry was checked, so this is at most `allocation / size` blocks.
    fn pool_initialise_page(
        &self,
        w: &PoolWords,
        g: &Geometry,
        record: VirtAddr,
        vaddr: VirtAddr,
        dma: DmaAddr,
    ) {
        let (size, allocation, boundary) = (g.size, g.allocation, g.boundary);
        let (mut offset, mut next_boundary) = (0u64, boundary);
        let (mut first, mut last) = (0u64, None::<&[AtomicU64; 2]>);
        while offset + size <= allocation {
            if offset + size > next_boundary {
                offset = next_boundary;
                next_boundary += boundary;
                continue;
            }
            let Some(b) = self.dma_kernel_words::<2>(VirtAddr(vaddr.0 + offset)) else {
                break;
            };
            b[1].store(dma + offset, Relaxed);
            b[0].store(0, Relaxed);
            match last {
                Some(l) => l[0].store(vaddr.0 + offset, Relaxed),
                None => first = vaddr.0 + offset,
            }
            last = Some(b);
            offset += size;
            w[NR_BLOCKS].fetch_add(1, Relaxed);
        }
        if let Some(l) = last {
            l[0].store(w[NEXT_BLOCK].load(Relaxed), Relaxed);
            w[NEXT_BLOCK].store(first, Relaxed);
        }
        if let Some(p) = self.dma_kernel_words::<PAGE_WORDS>(record) {
            p[0].store(w[PAGE_LIST].load(Relaxed), Relaxed);
            p[1].store(vaddr.0, Relaxed);
            p[2].store(dma, Relaxed);
            w[PAGE_LIST].store(record.0, Relaxed);
        }
        w[NR_PAGES].fetch_add(1, Relaxed);
    }

    /// `pool_find_page()`: the page record whose allocation holds `dma`. A record that
    /// cannot be read is the kernel's page fault; a list longer than the machine's memory
    /// could hold, its soft lockup.
    fn pool_find_page(
        &self,
        w: &PoolWords,
        g: &Geometry,
        dma: DmaAddr,
    ) -> Result<Option<(u64, u64)>, DmaError> {
        let mut left = self.pool_list_limit(g.allocation);
        let mut rec = w[PAGE_LIST].load(Relaxed);
        while rec != 0 {
            if left == 0 {
                return Err(self.pool_list_stuck());
            }
            left -= 1;
            let Some(p) = self.dma_kernel_words::<PAGE_WORDS>(VirtAddr(rec)) else {
                self.kernel_fault(rec, false);
                return Err(DmaError::Inval);
            };
            let (vaddr, base) = (p[1].load(Relaxed), p[2].load(Relaxed));
            if dma >= base && dma < base.saturating_add(g.allocation) {
                return Ok(Some((vaddr, base)));
            }
            rec = p[0].load(Relaxed);
        }
        Ok(None)
    }

    /// `dma_pool_free()`: give a block back. With `DMAPOOL_DEBUG`'s checks (reported by
    /// `pool_block_err`, whose `__func__` the messages carry): a bus
    /// address no page of the pool holds ("bad dma"), a CPU address that does not match
    /// it, and a block already free ("already free") are reported and refused; a freed
    /// block is poisoned.
    pub fn dma_pool_free(
        &self,
        pool: &DmaPool<'_>,
        vaddr: VirtAddr,
        dma: DmaAddr,
    ) -> Result<(), DmaError> {
        let w = self.pool_words(pool)?;
        let name = self.pool_name(w);
        let g = self.pool_geometry(pool, w)?;
        let lock = self.pool_lock(pool)?;
        let page = self.pool_find_page(w, &g, dma)?;
        let (size, boundary) = (g.size, g.boundary);
        // DMAPOOL_DEBUG: `(dma - page->dma) != offset` is "bad"; kmemlab also refuses an
        // offset that is not where `pool_initialise_page` carved a block (a mid-block
        // address whose CPU and bus offsets agree), with the same `pool_block_err` words.
        let is_block = |off: u64| {
            let in_window = off % boundary;
            in_window.is_multiple_of(size) && in_window + size <= boundary
        };
        let matches = page.is_some_and(|(pv, pd)| {
            let off = dma - pd;
            vaddr.0.wrapping_sub(pv) == off && is_block(off)
        });
        if !matches {
            drop(lock);
            self.dev_printk(
                pool.dev,
                format_args!(
                    "pool_block_err {}, {:#x}/{} (bad dma)",
                    name.as_str(),
                    vaddr.0,
                    self.pad(dma)
                ),
            );
            return Err(DmaError::Inval);
        }
        let mut left = self.pool_list_limit(size);
        let mut block = w[NEXT_BLOCK].load(Relaxed);
        while block != 0 {
            if block == vaddr.0 {
                drop(lock);
                self.dev_printk(
                    pool.dev,
                    format_args!(
                        "pool_block_err {}, dma {} already free",
                        name.as_str(),
                        self.pad(dma)
                    ),
                );
                return Err(DmaError::Inval);
            }
            if left == 0 {
                return Err(self.pool_list_stuck());
            }
            left -= 1;
            let Some(b) = self.dma_kernel_words::<1>(VirtAddr(block)) else {
                self.kernel_fault(block, false);
                return Err(DmaError::Inval);
            };
            block = b[0].load(Relaxed);
        }
        self.pool_fill(vaddr, POOL_POISON_FREED, size);
        if let Some(b) = self.dma_kernel_words::<2>(vaddr) {
            b[0].store(w[NEXT_BLOCK].load(Relaxed), Relaxed);
            b[1].store(dma, Relaxed);
            w[NEXT_BLOCK].store(vaddr.0, Relaxed);
            w[NR_ACTIVE].fetch_sub(1, Relaxed);
        }
        Ok(())
    }

    /// `dma_pool_destroy()`: free every allocation and the pool. A pool with blocks still
    /// out is reported ("busy") and, as in the kernel, its coherent memory is leaked
    /// rather than freed under the driver's feet; so is the memory of a pool whose
    /// geometry or page list turns out to be corrupted (reported).
    pub fn dma_pool_destroy(&self, pool: DmaPool<'_>) {
        let Ok(w) = self.pool_words(&pool) else {
            return;
        };
        let busy = w[NR_ACTIVE].load(Relaxed) != 0;
        if busy {
            let name = self.pool_name(w);
            self.dev_printk(
                pool.dev,
                format_args!("dma_pool_destroy {} busy", name.as_str()),
            );
        }
        if let Ok(g) = self.pool_geometry(&pool, w) {
            self.pool_free_pages(&pool, w, &g, busy);
        }
        let _ = self.kfree(pool.pool);
    }

    /// Free the page records of a pool being destroyed (and, unless `busy`, their
    /// coherent allocations).
    fn pool_free_pages(&self, pool: &DmaPool<'_>, w: &PoolWords, g: &Geometry, busy: bool) {
        let mut left = self.pool_list_limit(g.allocation);
        let mut rec = w[PAGE_LIST].load(Relaxed);
        while rec != 0 {
            if left == 0 {
                self.pool_list_stuck();
                return;
            }
            left -= 1;
            let Some(p) = self.dma_kernel_words::<PAGE_WORDS>(VirtAddr(rec)) else {
                self.kernel_fault(rec, false);
                return;
            };
            let (next, vaddr, dma) = (p[0].load(Relaxed), p[1].load(Relaxed), p[2].load(Relaxed));
            if !busy {
                let _ =
                    self.dma_free_coherent(pool.dev, g.allocation as usize, VirtAddr(vaddr), dma);
            }
            let _ = self.kfree(VirtAddr(rec));
            rec = next;
        }
    }
}

/// A pool's block size, allocation size and boundary, checked.
struct Geometry {
    size: u64,
    allocation: u64,
    boundary: u64,
}

/// The pool's lock, held with local interrupts off (`spin_lock_irqsave(&pool->lock)`).
struct PoolLock<'a, P: Platform> {
    mm: &'a Mm<P>,
    lock: &'a TryLock,
    flags: crate::platform::IrqFlags,
}

impl<P: Platform> Drop for PoolLock<'_, P> {
    fn drop(&mut self) {
        self.lock.unlock();
        self.mm.platform().local_irq_restore(self.flags);
    }
}
