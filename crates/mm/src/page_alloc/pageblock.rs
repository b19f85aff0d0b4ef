//! The migrate type of each pageblock (`include/linux/pageblock-flags.h`, the `usemap`
//! that `free_area_init` allocates from memblock: one byte per pageblock here).

use core::sync::atomic::{AtomicU8, Ordering::Relaxed};

use crate::addr::PAGEBLOCK_ORDER;
use crate::page_alloc::MigrateType;

/// The per-pageblock migrate types, in simulated RAM.
pub struct Pageblocks {
    flags: *const AtomicU8,
    base_pfn: u64,
    len: u64,
}

// SAFETY: only shared references to atomics are handed out, and the array outlives `Mm`.
unsafe impl Send for Pageblocks {}
// SAFETY: as above.
unsafe impl Sync for Pageblocks {}

impl Pageblocks {
    /// Before boot has placed the array.
    pub(crate) const fn empty() -> Pageblocks {
        Pageblocks {
            flags: core::ptr::null(),
            base_pfn: 0,
            len: 0,
        }
    }

    /// # Safety
    /// `flags` must point to `len` bytes that outlive the returned value.
    pub(crate) unsafe fn new(flags: *const AtomicU8, base_pfn: u64, len: u64) -> Pageblocks {
        Pageblocks {
            flags,
            base_pfn,
            len,
        }
    }

    #[inline]
    fn slot(&self, pfn: u64) -> &AtomicU8 {
        let index = (pfn - self.base_pfn) >> PAGEBLOCK_ORDER;
        assert!(index < self.len, "pfn {pfn:#x} outside the pageblock map");
        // SAFETY: index < len, and the array lives as long as `self`.
        unsafe { &*self.flags.add(index as usize) }
    }

    /// `get_pageblock_migratetype()`.
    #[inline]
    pub fn get(&self, pfn: u64) -> MigrateType {
        MigrateType::from_index(self.slot(pfn).load(Relaxed) as usize)
    }

    /// `set_pageblock_migratetype()`.
    #[inline]
    pub fn set(&self, pfn: u64, mt: MigrateType) {
        self.slot(pfn).store(mt as u8, Relaxed)
    }

    /// Number of pageblocks described.
    pub fn len(&self) -> u64 {
        self.len
    }

    /// Is the map empty?
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}
