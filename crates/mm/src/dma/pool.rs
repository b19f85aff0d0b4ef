//! DMA pools (`mm/dmapool.c`, the 6.4 rewrite): small coherent blocks carved out of
//! pages from `dma_alloc_coherent`, none crossing the pool's `boundary`. The pool
//! (`struct dma_pool`) and its page records (`struct dma_page`) are kmalloc'd; a free
//! block holds its own `struct dma_block` (next free block, bus address), so the free
//! list costs no memory. The `DMAPOOL_DEBUG` checks on free are on.

use core::sync::atomic::{AtomicU64, Ordering::Relaxed};

use super::{Device, DmaAddr, DmaError};
use crate::addr::{VirtAddr, PAGE_SIZE};
use crate::gfp::Gfp;
use crate::platform::Platform;
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
}

impl<P: Platform> Mm<P> {
    fn pool_words(&self, pool: &DmaPool<'_>) -> &[AtomicU64] {
        self.dma_kernel_words(pool.pool, POOL_WORDS)
            .expect("a live pool's structure is kmalloc'd memory")
    }

    fn pool_lock<'a>(&'a self, w: &'a [AtomicU64]) -> PoolLock<'a, P> {
        let flags = self.platform.local_irq_save();
        while w[LOCK]
            .compare_exchange(0, 1, core::sync::atomic::Ordering::Acquire, Relaxed)
            .is_err()
        {
            core::hint::spin_loop();
        }
        PoolLock { mm: self, w, flags }
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
        let w = self.pool_words(&pool);
        w[SIZE].store(size, Relaxed);
        w[ALLOCATION].store(allocation, Relaxed);
        w[BOUNDARY].store(boundary, Relaxed);
        let n = super::Name::new(name);
        let mut raw = [0u8; 32];
        raw[..31].copy_from_slice(&n.bytes);
        raw[31] = n.len;
        for (k, chunk) in raw.chunks(8).enumerate() {
            let mut b = [0u8; 8];
            b.copy_from_slice(chunk);
            w[NAME + k].store(u64::from_le_bytes(b), Relaxed);
        }
        Ok(pool)
    }

    fn pool_name(&self, w: &[AtomicU64]) -> super::Name {
        let mut raw = [0u8; 32];
        for (k, chunk) in raw.chunks_mut(8).enumerate() {
            chunk.copy_from_slice(&w[NAME + k].load(Relaxed).to_le_bytes());
        }
        let mut n = super::Name {
            bytes: [0; 31],
            len: raw[31].min(31),
        };
        n.bytes.copy_from_slice(&raw[..31]);
        n
    }

    /// The pool's counters.
    pub fn dma_pool_info(&self, pool: &DmaPool<'_>) -> DmaPoolInfo {
        let w = self.pool_words(pool);
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
        let w = self.pool_words(pool);
        let block = match self.pool_block_pop(w) {
            Some(b) => b,
            None => {
                let (vaddr, dma) =
                    self.dma_alloc_coherent(pool.dev, w[ALLOCATION].load(Relaxed) as usize, gfp)?;
                let Ok(record) = self.kmalloc(PAGE_WORDS * 8, gfp) else {
                    let _ = self.dma_free_coherent(
                        pool.dev,
                        w[ALLOCATION].load(Relaxed) as usize,
                        vaddr,
                        dma,
                    );
                    return Err(DmaError::NoMem);
                };
                let _lock = self.pool_lock(w);
                self.pool_initialise_page(w, record, vaddr, dma);
                drop(_lock);
                self.pool_block_pop(w).ok_or(DmaError::NoMem)?
            }
        };
        if gfp.contains(Gfp::__GFP_ZERO) {
            let zero = [0u8; 64];
            let size = w[SIZE].load(Relaxed) as usize;
            let mut done = 0;
            while done < size {
                let n = (size - done).min(zero.len());
                let _ = self.copy_to_kernel(VirtAddr(block.0 .0 + done as u64), &zero[..n]);
                done += n;
            }
        }
        Ok(block)
    }

    /// `pool_block_pop()`.
    fn pool_block_pop(&self, w: &[AtomicU64]) -> Option<(VirtAddr, DmaAddr)> {
        let _lock = self.pool_lock(w);
        let block = w[NEXT_BLOCK].load(Relaxed);
        if block == 0 {
            return None;
        }
        let b = self.dma_kernel_words(VirtAddr(block), 2)?;
        w[NEXT_BLOCK].store(b[0].load(Relaxed), Relaxed);
        w[NR_ACTIVE].fetch_add(1, Relaxed);
        Some((VirtAddr(block), b[1].load(Relaxed)))
    }

    /// `pool_initialise_page()`: carve the allocation into blocks, skipping to the next
    /// boundary where a block would cross it, and put them at the head of the free list.
    fn pool_initialise_page(
        &self,
        w: &[AtomicU64],
        record: VirtAddr,
        vaddr: VirtAddr,
        dma: DmaAddr,
    ) {
        let (size, allocation, boundary) = (
            w[SIZE].load(Relaxed),
            w[ALLOCATION].load(Relaxed),
            w[BOUNDARY].load(Relaxed),
        );
        let (mut offset, mut next_boundary) = (0u64, boundary);
        let (mut first, mut last) = (0u64, None::<&[AtomicU64]>);
        while offset + size <= allocation {
            if offset + size > next_boundary {
                offset = next_boundary;
                next_boundary += boundary;
                continue;
            }
            let Some(b) = self.dma_kernel_words(VirtAddr(vaddr.0 + offset), 2) else {
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
        if let Some(p) = self.dma_kernel_words(record, PAGE_WORDS) {
            p[0].store(w[PAGE_LIST].load(Relaxed), Relaxed);
            p[1].store(vaddr.0, Relaxed);
            p[2].store(dma, Relaxed);
            w[PAGE_LIST].store(record.0, Relaxed);
        }
        w[NR_PAGES].fetch_add(1, Relaxed);
    }

    /// `pool_find_page()`: the page record whose allocation holds `dma`.
    fn pool_find_page(&self, w: &[AtomicU64], dma: DmaAddr) -> Option<(u64, u64)> {
        let allocation = w[ALLOCATION].load(Relaxed);
        let mut rec = w[PAGE_LIST].load(Relaxed);
        while rec != 0 {
            let p = self.dma_kernel_words(VirtAddr(rec), PAGE_WORDS)?;
            let (vaddr, base) = (p[1].load(Relaxed), p[2].load(Relaxed));
            if dma >= base && dma < base.saturating_add(allocation) {
                return Some((vaddr, base));
            }
            rec = p[0].load(Relaxed);
        }
        None
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
        let w = self.pool_words(pool);
        let name = self.pool_name(w);
        let lock = self.pool_lock(w);
        let page = self.pool_find_page(w, dma);
        let (size, boundary) = (w[SIZE].load(Relaxed), w[BOUNDARY].load(Relaxed));
        // DMAPOOL_DEBUG: `(dma - page->dma) != offset` is "bad"; kmemlab also refuses an
        // offset that is not where `pool_initialise_page` carved a block (a mid-block
        // address whose CPU and bus offsets agree), with the same `pool_block_err` words.
        let is_block = |off: u64| {
            let in_window = if boundary == 0 { off } else { off % boundary };
            size != 0 && in_window % size == 0 && in_window + size <= boundary.max(size)
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
            block = self
                .dma_kernel_words(VirtAddr(block), 1)
                .map_or(0, |b| b[0].load(Relaxed));
        }
        let size = w[SIZE].load(Relaxed) as usize;
        let poison = [POOL_POISON_FREED; 64];
        let mut done = 0;
        while done < size {
            let n = (size - done).min(poison.len());
            let _ = self.copy_to_kernel(VirtAddr(vaddr.0 + done as u64), &poison[..n]);
            done += n;
        }
        if let Some(b) = self.dma_kernel_words(vaddr, 2) {
            b[0].store(w[NEXT_BLOCK].load(Relaxed), Relaxed);
            b[1].store(dma, Relaxed);
            w[NEXT_BLOCK].store(vaddr.0, Relaxed);
            w[NR_ACTIVE].fetch_sub(1, Relaxed);
        }
        Ok(())
    }

    /// `dma_pool_destroy()`: free every allocation and the pool. A pool with blocks still
    /// out is reported ("busy") and, as in the kernel, its coherent memory is leaked
    /// rather than freed under the driver's feet.
    pub fn dma_pool_destroy(&self, pool: DmaPool<'_>) {
        let w = self.pool_words(&pool);
        let busy = w[NR_ACTIVE].load(Relaxed) != 0;
        if busy {
            let name = self.pool_name(w);
            self.dev_printk(
                pool.dev,
                format_args!("dma_pool_destroy {} busy", name.as_str()),
            );
        }
        let allocation = w[ALLOCATION].load(Relaxed) as usize;
        let mut rec = w[PAGE_LIST].load(Relaxed);
        while rec != 0 {
            let Some(p) = self.dma_kernel_words(VirtAddr(rec), PAGE_WORDS) else {
                break;
            };
            let (next, vaddr, dma) = (p[0].load(Relaxed), p[1].load(Relaxed), p[2].load(Relaxed));
            if !busy {
                let _ = self.dma_free_coherent(pool.dev, allocation, VirtAddr(vaddr), dma);
            }
            let _ = self.kfree(VirtAddr(rec));
            rec = next;
        }
        let _ = self.kfree(pool.pool);
    }
}

/// The pool's lock, held with local interrupts off (`spin_lock_irqsave(&pool->lock)`).
struct PoolLock<'a, P: Platform> {
    mm: &'a Mm<P>,
    w: &'a [AtomicU64],
    flags: crate::platform::IrqFlags,
}

impl<P: Platform> Drop for PoolLock<'_, P> {
    fn drop(&mut self) {
        self.w[LOCK].store(0, core::sync::atomic::Ordering::Release);
        self.mm.platform.local_irq_restore(self.flags);
    }
}
