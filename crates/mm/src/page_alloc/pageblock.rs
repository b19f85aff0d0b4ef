//! The migrate type of each pageblock (`include/linux/pageblock-flags.h`, the `usemap`
//! that `free_area_init` allocates from memblock: one byte per pageblock here).

use core::sync::atomic::{AtomicU8, Ordering::Relaxed};

use crate::addr::Pfn;
use crate::mem::RamArray;
use crate::page_alloc::MigrateType;

/// The per-pageblock migrate types, in simulated RAM, and the pageblock order they are
/// kept by.
pub struct Pageblocks {
    flags: RamArray<AtomicU8>,
    base_pfn: Pfn,
    /// `pageblock_order`, the profile's ([`crate::arch::Profile::pageblock_order`]):
    /// the shift from a PFN offset to its flags byte, kept beside the array so that the
    /// look-up on every free is one load and a shift.
    order: u32,
    /// What a PFN outside the map reads and writes (a corrupted PFN): never a real block.
    scratch: AtomicU8,
}

impl Pageblocks {
    /// Before boot has placed the array: no pageblocks yet, of `order`.
    pub(crate) const fn empty(order: u32) -> Pageblocks {
        Pageblocks {
            flags: RamArray::empty(),
            base_pfn: Pfn(0),
            order,
            scratch: AtomicU8::new(0),
        }
    }

    /// The map over `flags`, one byte per pageblock of `2^order` pages from `base_pfn`.
    pub(crate) fn new(flags: RamArray<AtomicU8>, base_pfn: Pfn, order: u32) -> Pageblocks {
        Pageblocks {
            flags,
            base_pfn,
            order,
            scratch: AtomicU8::new(0),
        }
    }

    /// `pageblock_order`.
    #[inline]
    pub fn order(&self) -> u32 {
        self.order
    }

    /// `pageblock_nr_pages`.
    #[inline]
    pub fn nr_pages(&self) -> u64 {
        1 << self.order
    }

    /// `pageblock_start_pfn()`: the first frame of the pageblock holding `pfn`.
    #[inline]
    pub fn start_pfn(&self, pfn: Pfn) -> Pfn {
        pfn.align_down(self.order)
    }

    #[inline]
    fn slot(&self, pfn: Pfn) -> &AtomicU8 {
        let index = pfn.raw().wrapping_sub(self.base_pfn.raw()) >> self.order;
        self.flags.get(index).unwrap_or(&self.scratch)
    }

    /// `get_pageblock_migratetype()`.
    #[inline]
    pub fn get(&self, pfn: Pfn) -> MigrateType {
        MigrateType::from_index(self.slot(pfn).load(Relaxed) as usize)
    }

    /// [`Pageblocks::get`] as the byte the map holds, before it is read as a type (any
    /// value past the types reads as [`MigrateType::Isolate`]).
    #[inline]
    pub fn get_raw(&self, pfn: Pfn) -> u8 {
        self.slot(pfn).load(Relaxed)
    }

    /// `set_pageblock_migratetype()`.
    #[inline]
    pub fn set(&self, pfn: Pfn, mt: MigrateType) {
        self.slot(pfn).store(mt as u8, Relaxed)
    }

    /// Number of pageblocks described.
    pub fn len(&self) -> u64 {
        self.flags.len()
    }

    /// Is the map empty?
    pub fn is_empty(&self) -> bool {
        self.flags.is_empty()
    }
}
