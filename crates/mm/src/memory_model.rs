//! The FLATMEM memory model: one `mem_map` array of [`Page`] for every frame from the
//! first to the last PFN of RAM, holes included (`include/asm-generic/memory_model.h`).
//! `pfn_to_page` and `page_to_pfn` are pointer arithmetic on it, as in the kernel.

use core::sync::atomic::{AtomicU32, Ordering::Relaxed};

use crate::addr::Pfn;
use crate::mm_types::{Page, NIL};

/// The `mem_map` array, which lives in simulated RAM (reserved from memblock at boot).
pub struct MemMap {
    pages: *const Page,
    /// First PFN described (`ARCH_PFN_OFFSET`).
    pub base_pfn: u64,
    /// Number of descriptors.
    pub len: u64,
}

// SAFETY: `MemMap` only hands out shared references to `Page`, whose fields are all
// atomics; the array lives as long as the `Mm` that owns this map.
unsafe impl Send for MemMap {}
// SAFETY: as above.
unsafe impl Sync for MemMap {}

impl MemMap {
    /// An empty map, before boot has placed the array.
    pub(crate) const fn empty() -> MemMap {
        MemMap {
            pages: core::ptr::null(),
            base_pfn: 0,
            len: 0,
        }
    }

    /// # Safety
    /// `pages` must point to `len` initialised `Page`s that outlive the map.
    pub(crate) unsafe fn new(pages: *const Page, base_pfn: u64, len: u64) -> MemMap {
        MemMap {
            pages,
            base_pfn,
            len,
        }
    }

    /// Is `pfn` described by the array?
    #[inline]
    pub fn contains(&self, pfn: u64) -> bool {
        pfn.wrapping_sub(self.base_pfn) < self.len
    }

    /// `pfn_to_page()` for a PFN known to be inside the array.
    #[inline]
    pub fn page(&self, pfn: u64) -> &Page {
        assert!(self.contains(pfn), "pfn {pfn:#x} outside mem_map");
        // SAFETY: `pfn` is inside the array (checked above), which holds `len` initialised
        // pages for the lifetime of `self`.
        unsafe { &*self.pages.add((pfn - self.base_pfn) as usize) }
    }

    /// `page_to_pfn()` for a page of this array, or `None` for a foreign reference.
    #[inline]
    pub fn pfn_of(&self, page: &Page) -> Option<Pfn> {
        let offset = (page as *const Page as usize).wrapping_sub(self.pages as usize);
        let index = offset / core::mem::size_of::<Page>();
        (offset.is_multiple_of(core::mem::size_of::<Page>()) && (index as u64) < self.len)
            .then(|| Pfn(self.base_pfn + index as u64))
    }
}

/// The head of an intrusive doubly linked list of pages, linked by PFN through
/// `Page::next`/`Page::prev` (`struct list_head` on `page->lru`).
pub struct PageList {
    first: AtomicU32,
    last: AtomicU32,
}

impl Default for PageList {
    fn default() -> Self {
        PageList::new()
    }
}

impl PageList {
    /// An empty list.
    pub const fn new() -> PageList {
        PageList {
            first: AtomicU32::new(NIL),
            last: AtomicU32::new(NIL),
        }
    }
    /// `INIT_LIST_HEAD()`: make the list empty (for lists found in zeroed memory).
    pub fn init(&self) {
        self.first.store(NIL, Relaxed);
        self.last.store(NIL, Relaxed);
    }
    /// `list_empty()`.
    #[inline]
    pub fn is_empty(&self) -> bool {
        self.first.load(Relaxed) == NIL
    }
    /// The first PFN, if any.
    #[inline]
    pub fn first(&self) -> Option<u64> {
        let f = self.first.load(Relaxed);
        (f != NIL).then_some(f as u64)
    }
    /// The last PFN, if any.
    #[inline]
    pub fn last(&self) -> Option<u64> {
        let l = self.last.load(Relaxed);
        (l != NIL).then_some(l as u64)
    }
    /// `list_add()`: insert at the head.
    #[inline]
    pub fn push_front(&self, map: &MemMap, pfn: u64) {
        let page = map.page(pfn);
        let old = self.first.load(Relaxed);
        page.set_prev(NIL);
        page.set_next(old);
        if old == NIL {
            self.last.store(pfn as u32, Relaxed);
        } else {
            map.page(old as u64).set_prev(pfn as u32);
        }
        self.first.store(pfn as u32, Relaxed);
    }
    /// `list_add_tail()`: insert at the tail.
    #[inline]
    pub fn push_back(&self, map: &MemMap, pfn: u64) {
        let page = map.page(pfn);
        let old = self.last.load(Relaxed);
        page.set_next(NIL);
        page.set_prev(old);
        if old == NIL {
            self.first.store(pfn as u32, Relaxed);
        } else {
            map.page(old as u64).set_next(pfn as u32);
        }
        self.last.store(pfn as u32, Relaxed);
    }
    /// `list_del()`: unlink a page known to be on this list.
    #[inline]
    pub fn remove(&self, map: &MemMap, pfn: u64) {
        let page = map.page(pfn);
        let (prev, next) = (page.prev(), page.next());
        if prev == NIL {
            self.first.store(next, Relaxed);
        } else {
            map.page(prev as u64).set_next(next);
        }
        if next == NIL {
            self.last.store(prev, Relaxed);
        } else {
            map.page(next as u64).set_prev(prev);
        }
        page.set_next(0);
        page.set_prev(0);
    }
    /// Unlink and return the first page.
    #[inline]
    pub fn pop_front(&self, map: &MemMap) -> Option<u64> {
        let pfn = self.first()?;
        self.remove(map, pfn);
        Some(pfn)
    }
    /// Unlink and return the last page.
    #[inline]
    pub fn pop_back(&self, map: &MemMap) -> Option<u64> {
        let pfn = self.last()?;
        self.remove(map, pfn);
        Some(pfn)
    }
    /// Walk the PFNs from first to last.
    pub fn iter<'a>(&self, map: &'a MemMap) -> impl Iterator<Item = u64> + 'a {
        let mut cur = self.first.load(Relaxed);
        core::iter::from_fn(move || {
            if cur == NIL {
                return None;
            }
            let pfn = cur as u64;
            cur = map.page(pfn).next();
            Some(pfn)
        })
    }
}
