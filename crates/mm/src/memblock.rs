//! The boot-time memory allocator (`mm/memblock.c`): two arrays of regions, `memory`
//! (what RAM exists) and `reserved` (what is taken), and a top-down allocator that
//! carves boot metadata out of RAM before the buddy allocator exists.

use core::fmt;

use crate::addr::{align_down, align_up, PhysAddr};
use crate::platform::Platform;
use crate::Mm;

/// Regions per array (`INIT_MEMBLOCK_REGIONS`).
pub const MEMBLOCK_REGIONS: usize = 128;

/// One range of physical memory with a label saying what it is.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct MemblockRegion {
    /// First byte.
    pub base: u64,
    /// Length in bytes.
    pub size: u64,
    /// What the range holds ("System RAM", "mem_map", ...).
    pub name: &'static str,
}

impl MemblockRegion {
    /// One past the last byte.
    pub const fn end(&self) -> u64 {
        self.base + self.size
    }
}

const EMPTY: MemblockRegion = MemblockRegion {
    base: 0,
    size: 0,
    name: "",
};

/// A sorted array of non-overlapping regions (`struct memblock_type`).
#[derive(Clone)]
pub struct MemblockType {
    regions: [MemblockRegion; MEMBLOCK_REGIONS],
    cnt: usize,
}

/// Why memblock could not do what was asked.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum MemblockError {
    /// The fixed region array is full.
    TooManyRegions,
    /// No free range of the size and alignment below the limit.
    NoSpace {
        /// Bytes asked for.
        size: u64,
        /// Alignment asked for.
        align: u64,
        /// The allocation limit (`memblock.current_limit`).
        limit: u64,
    },
}

impl fmt::Display for MemblockError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            MemblockError::TooManyRegions => write!(f, "memblock: too many regions"),
            MemblockError::NoSpace { size, align, limit } => write!(
                f,
                "memblock_alloc: failed to allocate {size} bytes align={align:#x} below {limit:#x}"
            ),
        }
    }
}

impl core::error::Error for MemblockError {}

impl MemblockType {
    const fn new() -> Self {
        MemblockType {
            regions: [EMPTY; MEMBLOCK_REGIONS],
            cnt: 0,
        }
    }

    /// The regions, sorted by base.
    pub fn regions(&self) -> &[MemblockRegion] {
        &self.regions[..self.cnt]
    }

    /// Total bytes covered.
    pub fn total_size(&self) -> u64 {
        self.regions().iter().map(|r| r.size).sum()
    }

    /// Insert a region that overlaps none of the present ones, keeping the order.
    fn insert(&mut self, region: MemblockRegion) -> Result<(), MemblockError> {
        if region.size == 0 {
            return Ok(());
        }
        if self.cnt == MEMBLOCK_REGIONS {
            return Err(MemblockError::TooManyRegions);
        }
        let at = self.regions().partition_point(|r| r.base < region.base);
        self.regions.copy_within(at..self.cnt, at + 1);
        self.regions[at] = region;
        self.cnt += 1;
        Ok(())
    }

    /// Does any region overlap `[base, end)`?
    fn overlaps(&self, base: u64, end: u64) -> bool {
        self.regions()
            .iter()
            .any(|r| r.base < end && base < r.end())
    }
}

/// The boot allocator's state (`struct memblock`).
#[derive(Clone)]
pub struct Memblock {
    /// Usable RAM.
    memory: MemblockType,
    /// Ranges taken before the buddy allocator starts.
    reserved: MemblockType,
    /// Allocations stay below this address (`memblock.current_limit`): the end of the
    /// direct map.
    current_limit: u64,
}

impl Memblock {
    /// Usable RAM (`memblock.memory`).
    pub fn memory(&self) -> &MemblockType {
        &self.memory
    }

    /// Ranges taken before the buddy allocator starts (`memblock.reserved`).
    pub fn reserved(&self) -> &MemblockType {
        &self.reserved
    }

    /// The allocation limit (`memblock.current_limit`).
    pub fn current_limit(&self) -> u64 {
        self.current_limit
    }

    /// `memblock_set_current_limit()`: allocations stay below `limit` from now on.
    pub fn set_current_limit(&mut self, limit: u64) {
        self.current_limit = limit;
    }

    /// An empty memblock with no limit.
    pub const fn new() -> Memblock {
        Memblock {
            memory: MemblockType::new(),
            reserved: MemblockType::new(),
            current_limit: u64::MAX,
        }
    }

    /// `memblock_add()`: register RAM. Ranges must not overlap earlier ones.
    pub fn add(&mut self, base: u64, size: u64) -> Result<(), MemblockError> {
        self.memory.insert(MemblockRegion {
            base,
            size,
            name: "System RAM",
        })
    }

    /// `memblock_reserve()`: take `[base, base + size)` away from the buddy allocator.
    /// Parts that are already reserved or that are not RAM are skipped.
    pub fn reserve(
        &mut self,
        base: u64,
        size: u64,
        name: &'static str,
    ) -> Result<(), MemblockError> {
        let end = base + size;
        let mut cursor = base;
        while cursor < end {
            // Skip reserved ranges that cover the cursor.
            if let Some(r) = self
                .reserved
                .regions()
                .iter()
                .find(|r| r.base <= cursor && cursor < r.end())
            {
                cursor = r.end();
                continue;
            }
            let next_reserved = self
                .reserved
                .regions()
                .iter()
                .map(|r| r.base)
                .filter(|&b| b > cursor)
                .min()
                .unwrap_or(u64::MAX);
            let piece_end = end.min(next_reserved);
            self.reserved.insert(MemblockRegion {
                base: cursor,
                size: piece_end - cursor,
                name,
            })?;
            cursor = piece_end;
        }
        Ok(())
    }

    /// `memblock_phys_alloc()`: the highest free, aligned range of `size` bytes below
    /// `current_limit` (x86 allocates top-down), reserved under `name`.
    pub fn alloc(
        &mut self,
        size: u64,
        align: u64,
        name: &'static str,
    ) -> Result<PhysAddr, MemblockError> {
        let size = align_up(size, align);
        for mem in self.memory.regions().iter().rev() {
            let mut top = mem.end().min(self.current_limit);
            while top >= mem.base + size {
                let base = align_down(top - size, align);
                if base < mem.base {
                    break;
                }
                match self
                    .reserved
                    .regions()
                    .iter()
                    .filter(|r| r.base < base + size && base < r.end())
                    .map(|r| r.base)
                    .min()
                {
                    None => {
                        self.reserve(base, size, name)?;
                        return Ok(PhysAddr(base));
                    }
                    Some(blocker) => top = blocker,
                }
            }
        }
        Err(MemblockError::NoSpace {
            size,
            align,
            limit: self.current_limit,
        })
    }

    /// Is `[base, end)` entirely RAM?
    pub fn is_memory(&self, base: u64, end: u64) -> bool {
        self.memory
            .regions()
            .iter()
            .any(|r| r.base <= base && end <= r.end())
    }

    /// `memblock_end_of_DRAM()`: one past the last byte of RAM.
    pub fn end_of_dram(&self) -> u64 {
        self.memory.regions().last().map_or(0, |r| r.end())
    }

    /// `memblock_phys_mem_size()`: the bytes of RAM registered.
    pub fn phys_mem_size(&self) -> u64 {
        self.memory.total_size()
    }

    /// `memblock_phys_free()`: give `[base, base + size)` back (drop it from `reserved`,
    /// splitting a region it cuts through).
    pub fn phys_free(&mut self, base: u64, size: u64) -> Result<(), MemblockError> {
        let end = base.saturating_add(size);
        let old = core::mem::replace(&mut self.reserved, MemblockType::new());
        for r in old.regions() {
            if r.end() <= base || end <= r.base {
                self.reserved.insert(*r)?;
                continue;
            }
            if r.base < base {
                self.reserved.insert(MemblockRegion {
                    size: base - r.base,
                    ..*r
                })?;
            }
            if end < r.end() {
                self.reserved.insert(MemblockRegion {
                    base: end,
                    size: r.end() - end,
                    ..*r
                })?;
            }
        }
        Ok(())
    }

    /// Is the byte at `addr` reserved?
    pub fn is_reserved(&self, addr: u64) -> bool {
        self.reserved.overlaps(addr, addr + 1)
    }

    /// Call `f(start, end)` for every range of RAM that is not reserved, in address
    /// order (`for_each_free_mem_range`).
    pub fn for_each_free_range(&self, mut f: impl FnMut(u64, u64)) {
        for mem in self.memory.regions() {
            let mut cursor = mem.base;
            for r in self.reserved.regions() {
                if r.end() <= cursor || r.base >= mem.end() {
                    continue;
                }
                if r.base > cursor {
                    f(cursor, r.base);
                }
                cursor = cursor.max(r.end());
            }
            if cursor < mem.end() {
                f(cursor, mem.end());
            }
        }
    }
}

impl<P: Platform> Mm<P> {
    /// `memblock_alloc_try_nid(size, align, 0, max_addr, NUMA_NO_NODE)` at boot: as
    /// [`Memblock::alloc`], below `max_addr` as well as `current_limit` (swiotlb's pool
    /// below its limit, `memblock_alloc_low()`).
    pub(crate) fn memblock_alloc_below(
        &mut self,
        size: u64,
        align: u64,
        max_addr: u64,
        name: &'static str,
    ) -> Result<PhysAddr, MemblockError> {
        let saved_limit = self.memblock.current_limit;
        self.memblock.current_limit = saved_limit.min(max_addr);
        let allocated = self.memblock.alloc(size, align, name);
        self.memblock.current_limit = saved_limit;
        allocated
    }

    /// `memblock_phys_free()` at boot: give back what [`Mm::memblock_alloc_below`] took.
    pub(crate) fn memblock_phys_free(
        &mut self,
        base: PhysAddr,
        size: u64,
    ) -> Result<(), MemblockError> {
        self.memblock.phys_free(base.0, size)
    }
}

impl Default for Memblock {
    fn default() -> Self {
        Memblock::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    extern crate std;
    use std::vec::Vec;

    #[test]
    fn allocates_top_down_around_reservations() {
        let mut mb = Memblock::new();
        mb.add(0, 0x9f000).unwrap();
        mb.add(0x100000, 0x7f00000).unwrap();
        mb.reserve(0, 0x100000, "low 1M").unwrap();
        let a = mb.alloc(0x1000, 0x1000, "a").unwrap();
        assert_eq!(a.0, 0x8000000 - 0x1000);
        mb.current_limit = 0x4000000;
        let b = mb.alloc(0x3000, 0x1000, "b").unwrap();
        assert_eq!(b.0, 0x4000000 - 0x3000);
        let mut free = Vec::new();
        mb.for_each_free_range(|s, e| free.push((s, e)));
        assert_eq!(free, [(0x100000, 0x3ffd000), (0x4000000, 0x7fff000)]);
        let err = mb.alloc(0x10000000, 0x1000, "huge").unwrap_err();
        assert!(matches!(err, MemblockError::NoSpace { .. }));
    }

    #[test]
    fn phys_free_gives_back_a_range_and_splits_what_it_cuts() {
        let mut mb = Memblock::new();
        mb.add(0, 0x1000000).unwrap();
        mb.reserve(0x1000, 0x4000, "x").unwrap();
        let before = mb.reserved.regions().to_vec();
        let a = mb.alloc(0x2000, 0x1000, "a").unwrap();
        mb.phys_free(a.0, 0x2000).unwrap();
        assert_eq!(mb.reserved.regions(), &before[..]);
        mb.phys_free(0x2000, 0x1000).unwrap();
        assert_eq!(mb.reserved.total_size(), 0x3000);
        assert!(mb.is_reserved(0x1fff) && !mb.is_reserved(0x2000) && mb.is_reserved(0x3000));
    }

    #[test]
    fn reserve_skips_overlap() {
        let mut mb = Memblock::new();
        mb.add(0, 0x1000000).unwrap();
        mb.reserve(0x1000, 0x1000, "x").unwrap();
        mb.reserve(0, 0x3000, "y").unwrap();
        assert_eq!(mb.reserved.total_size(), 0x3000);
        assert!(mb.is_reserved(0x2fff) && !mb.is_reserved(0x3000));
    }
}
