//! The FLATMEM memory model: one `mem_map` array of [`Page`] for every frame from the
//! first to the last PFN of RAM, holes included (`include/asm-generic/memory_model.h`).
//! `pfn_to_page` and `page_to_pfn` are pointer arithmetic on it, as in the kernel.

use core::sync::atomic::{AtomicU32, AtomicU64, Ordering::Relaxed};

use crate::addr::Pfn;
use crate::mem::RamArray;
use crate::mm_types::{Page, NIL};

/// The `mem_map` array, which lives in simulated RAM (reserved from memblock at boot).
///
/// PFNs come from everywhere, including words read back from RAM (list links, compound
/// heads), so a lookup never trusts one: [`MemMap::get`] answers `None` past the array,
/// and [`MemMap::page`] answers a scratch descriptor and records the fault, which
/// [`crate::Mm::take_oopses`] reports as the kernel's page-fault oops on the `vmemmap`
/// address.
pub struct MemMap {
    pages: RamArray<Page>,
    /// First PFN described (`ARCH_PFN_OFFSET`).
    pub base_pfn: u64,
    /// Number of descriptors.
    pub len: u64,
    /// Physical address of the array.
    phys: u64,
    /// What a lookup of a PFN outside the array gets: a descriptor in host memory that no
    /// real frame has, so nothing a corrupted link leads to can reach outside `mem_map`.
    scratch: Page,
    /// Lookups outside the array since the last report, and the last PFN asked for.
    faults: AtomicU64,
    last_fault_pfn: AtomicU64,
}

impl MemMap {
    /// An empty map, before boot has placed the array.
    pub(crate) const fn empty() -> MemMap {
        MemMap {
            pages: RamArray::empty(),
            base_pfn: 0,
            len: 0,
            phys: 0,
            scratch: Page::zeroed(),
            faults: AtomicU64::new(0),
            last_fault_pfn: AtomicU64::new(0),
        }
    }

    /// The map over `pages` (at physical address `phys`), the descriptors of frames
    /// `base_pfn..base_pfn + len`.
    pub(crate) fn new(pages: RamArray<Page>, phys: u64, base_pfn: u64) -> MemMap {
        MemMap {
            len: pages.len(),
            phys,
            pages,
            base_pfn,
            ..MemMap::empty()
        }
    }

    /// Is `pfn` described by the array?
    #[inline]
    pub fn contains(&self, pfn: u64) -> bool {
        pfn.wrapping_sub(self.base_pfn) < self.len
    }

    /// `pfn_to_page()`, or `None` for a PFN the array does not describe.
    #[inline]
    pub fn get(&self, pfn: u64) -> Option<&Page> {
        self.pages.get(pfn.wrapping_sub(self.base_pfn))
    }

    /// `pfn_to_page()` for a PFN believed valid. One outside the array (a corrupted link)
    /// gets the scratch descriptor and is recorded as a fault for the next report.
    #[inline]
    pub fn page(&self, pfn: u64) -> &Page {
        match self.get(pfn) {
            Some(page) => page,
            None => self.fault(pfn),
        }
    }

    #[cold]
    #[inline(never)]
    fn fault(&self, pfn: u64) -> &Page {
        self.faults.fetch_add(1, Relaxed);
        self.last_fault_pfn.store(pfn, Relaxed);
        self.scratch.reset();
        &self.scratch
    }

    /// Faults since the last call, with the physical address that the last one would
    /// have read (`pfn_to_page()` arithmetic, past the array).
    pub(crate) fn take_faults(&self) -> Option<(u64, u64)> {
        let n = self.faults.swap(0, Relaxed);
        let pfn = self.last_fault_pfn.load(Relaxed);
        let offset = pfn.wrapping_sub(self.base_pfn);
        let addr = self
            .phys
            .wrapping_add(offset.wrapping_mul(core::mem::size_of::<Page>() as u64));
        (n > 0).then_some((n, addr))
    }

    /// `page_to_pfn()` for a page of this array, or `None` for a foreign reference.
    #[inline]
    pub fn pfn_of(&self, page: &Page) -> Option<Pfn> {
        self.pages
            .index_of(page)
            .map(|index| Pfn(self.base_pfn + index))
    }
}

/// The head of an intrusive doubly linked list of pages, linked by PFN through
/// `Page::next`/`Page::prev` (`struct list_head` on `page->lru`).
#[derive(zerocopy::FromBytes)]
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
