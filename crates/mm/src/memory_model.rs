//! The memory model: SPARSEMEM with a virtually mapped memmap (`mm/sparse.c`,
//! `mm/sparse-vmemmap.c`, `include/linux/mmzone.h`, 6.6). The physical address space is
//! cut in memory sections of `2^SECTION_SIZE_BITS` bytes; a section is present when some
//! RAM lies in it (`memblocks_present()`), and only present sections get `struct page`s
//! (`sparse_init_nid()` → `__populate_section_memmap()`), carved out of one memblock
//! buffer. A PFN in an absent section has no descriptor: `pfn_valid()` is false there and
//! every `/proc` file skips it, as on a real machine with a PCI hole; a hole smaller than
//! a section stays inside a present section as reserved pages.
//!
//! `pfn_to_page()` is one look-up in a host-side section table (trusted: boot fills it,
//! nothing in simulated RAM can change it) and a bounds-checked index into the
//! descriptors, which lie in RAM section after section.

use core::sync::atomic::{AtomicU32, AtomicU64, Ordering::Relaxed};

use core::fmt;

use crate::addr::Pfn;
use crate::mem::RamArray;
use crate::mm_types::{Page, NIL};
use crate::platform::Platform;
use crate::Mm;

/// The most memory sections the section table describes: 4096, so 512 GiB of physical
/// address space with x86_64's 128 MiB sections (the simulator's limit); RAM above it is
/// ignored at boot with a warning. (The kernel's `NR_MEM_SECTIONS` is `2^(MAX_PHYSMEM_BITS
/// - SECTION_SIZE_BITS)`; kmemlab keeps its table in host memory, so it bounds it.)
pub const MAX_MEM_SECTIONS: u64 = 4096;

/// The `struct page`s of the present sections, which live in simulated RAM (one memblock
/// buffer reserved at boot), and the section table that finds them.
///
/// PFNs come from everywhere, including words read back from RAM (list links, compound
/// heads), so a lookup never trusts one: [`MemMap::get`] answers `None` for a PFN in an
/// absent section or past the table, and [`MemMap::page`] answers a scratch descriptor and
/// records the fault, which [`crate::Mm::take_oopses`] reports as the kernel's page-fault
/// oops on the descriptor's address.
pub struct MemMap {
    /// The descriptors, present section after present section (`PAGES_PER_SECTION` each).
    pages: RamArray<Page>,
    /// First PFN of the span (0: SPARSEMEM numbers PFNs from the start of memory).
    pub base_pfn: Pfn,
    /// PFNs in the span, `base_pfn..base_pfn + len`: up to the end of the last present
    /// section. Only the present sections of the span have descriptors
    /// ([`MemMap::nr_pages`]); [`MemMap::present_ranges`] lists them.
    pub len: u64,
    /// `PFN_SECTION_SHIFT`.
    shift: u32,
    /// For each section number, what to subtract from a PFN in it to get the index of
    /// its descriptor (`__nr_to_section()` and the encoded `section_mem_map`): for an
    /// absent section, an amount that gives an index past the array.
    index_delta: [u64; MAX_MEM_SECTIONS as usize],
    /// For each present section in order, what to add to a descriptor's index to get its
    /// PFN (`page_to_section()`).
    pfn_delta: [u64; MAX_MEM_SECTIONS as usize],
    /// Present sections.
    nr_present: u64,
    /// Physical address of the descriptors.
    phys: u64,
    /// What a lookup of a PFN without a descriptor gets: a descriptor in host memory that
    /// no real frame has, so nothing a corrupted link leads to can reach outside `mem_map`.
    scratch: Page,
    /// Lookups outside the array since the last report, and the last PFN asked for.
    faults: AtomicU64,
    last_fault_pfn: AtomicU64,
    /// List corruption found by an unchecked list operation, kept for the next report.
    corruption: spin::Mutex<Option<ListCorruption>>,
}

impl MemMap {
    /// An empty map, before boot has placed the descriptors.
    pub(crate) const fn empty() -> MemMap {
        MemMap {
            pages: RamArray::empty(),
            base_pfn: Pfn(0),
            len: 0,
            shift: 0,
            index_delta: [u64::MAX; MAX_MEM_SECTIONS as usize],
            pfn_delta: [0; MAX_MEM_SECTIONS as usize],
            nr_present: 0,
            phys: 0,
            scratch: Page::zeroed(),
            faults: AtomicU64::new(0),
            last_fault_pfn: AtomicU64::new(0),
            corruption: spin::Mutex::new(None),
        }
    }

    /// The map over `pages` (at physical address `phys`): the descriptors of the sections
    /// `present` (ascending section numbers below [`MAX_MEM_SECTIONS`], each of
    /// `2^shift` pages), in that order. `None` if they do not fit the table or `pages`.
    pub(crate) fn new(
        pages: RamArray<Page>,
        phys: u64,
        shift: u32,
        present: impl Iterator<Item = u64>,
    ) -> Option<MemMap> {
        let mut map = MemMap {
            pages,
            phys,
            shift,
            ..MemMap::empty()
        };
        let mut present_nrs = [false; MAX_MEM_SECTIONS as usize];
        for nr in present {
            let slot = present_nrs.get_mut(usize::try_from(nr).ok()?)?;
            if *slot || map.nr_present > 0 && nr << shift < map.len {
                return None;
            }
            *slot = true;
            let dense = map.nr_present;
            map.pfn_delta[dense as usize] = (nr - dense) << shift;
            map.nr_present += 1;
            map.len = (nr + 1) << shift;
        }
        let nr_pages = map.nr_present << shift;
        if nr_pages != map.pages.len() {
            return None;
        }
        let mut dense = 0u64;
        for (nr, present) in present_nrs.iter().enumerate() {
            let start = (nr as u64) << shift;
            map.index_delta[nr] = if *present {
                dense += 1;
                (nr as u64 - (dense - 1)) << shift
            } else {
                // `pfn - start + nr_pages`: at least `nr_pages`, past the array.
                start.wrapping_sub(nr_pages)
            };
        }
        Some(map)
    }

    /// Is `pfn` described (in a present section)?
    #[inline]
    pub fn contains(&self, pfn: Pfn) -> bool {
        self.get(pfn).is_some()
    }

    /// The index of `pfn`'s descriptor, or `None` when its section is absent.
    #[inline]
    fn index(&self, pfn: Pfn) -> Option<u64> {
        let delta = *self.index_delta.get((pfn.0 >> self.shift) as usize)?;
        Some(pfn.0.wrapping_sub(delta)).filter(|&i| i < self.pages.len())
    }

    /// `pfn_to_page()`, or `None` for a PFN without a descriptor (`pfn_valid()` false).
    #[inline]
    pub fn get(&self, pfn: Pfn) -> Option<&Page> {
        let delta = *self.index_delta.get((pfn.0 >> self.shift) as usize)?;
        // An absent section's delta makes an index past the array, which
        // `RamArray::get` refuses.
        self.pages.get(pfn.0.wrapping_sub(delta))
    }

    /// `pfn_to_page()` for a PFN believed valid. One without a descriptor (a corrupted
    /// link) gets the scratch descriptor and is recorded as a fault for the next report.
    #[inline]
    pub fn page(&self, pfn: Pfn) -> &Page {
        match self.get(pfn) {
            Some(page) => page,
            None => self.fault(pfn),
        }
    }

    #[cold]
    #[inline(never)]
    fn fault(&self, pfn: Pfn) -> &Page {
        self.faults.fetch_add(1, Relaxed);
        self.last_fault_pfn.store(pfn.raw(), Relaxed);
        self.scratch.reset();
        &self.scratch
    }

    /// The number of descriptors (`PAGES_PER_SECTION` for each present section).
    pub fn nr_pages(&self) -> u64 {
        self.pages.len()
    }

    /// The number of present sections.
    pub fn nr_present_sections(&self) -> u64 {
        self.nr_present
    }

    /// Is section `nr` present (`present_section_nr()`)?
    pub fn present_section(&self, nr: u64) -> bool {
        nr.checked_shl(self.shift)
            .filter(|start| start >> self.shift == nr)
            .is_some_and(|start| self.contains(Pfn(start)))
    }

    /// The PFN ranges that have descriptors, one per present section in ascending order
    /// (`for_each_present_section_nr()`).
    pub fn present_ranges(&self) -> impl Iterator<Item = (Pfn, Pfn)> + '_ {
        let size = 1u64 << self.shift;
        self.pfn_delta[..self.nr_present as usize]
            .iter()
            .enumerate()
            .map(move |(dense, &delta)| {
                let start = Pfn(((dense as u64) << self.shift) + delta);
                (start, start + size)
            })
    }

    /// The first PFN at or after `pfn` that has a descriptor, if any.
    pub fn next_present_pfn(&self, pfn: Pfn) -> Option<Pfn> {
        if self.contains(pfn) {
            return Some(pfn);
        }
        self.present_ranges()
            .find(|&(_, end)| end > pfn)
            .map(|(start, _)| start.max(pfn))
    }

    /// The physical address of the descriptors.
    pub fn phys(&self) -> u64 {
        self.phys
    }

    /// Where the descriptor of `pfn` is, counted in descriptors from the start of the
    /// array: its index when it has one, else an index past the array (the slot
    /// `pfn_to_page()` arithmetic would reach, which is no descriptor's).
    fn slot(&self, pfn: Pfn) -> u64 {
        match self.index(pfn) {
            Some(index) => index,
            None if pfn.0 < self.len => self.pages.len() + pfn.0,
            None => pfn.0.max(self.pages.len() + self.len),
        }
    }

    /// Faults since the last call, with the physical address that the last one would
    /// have read (`pfn_to_page()` arithmetic, past the array).
    pub(crate) fn take_faults(&self) -> Option<(u64, u64)> {
        let n = self.faults.swap(0, Relaxed);
        let pfn = Pfn(self.last_fault_pfn.load(Relaxed));
        let addr = self.phys.wrapping_add(
            self.slot(pfn)
                .wrapping_mul(core::mem::size_of::<Page>() as u64),
        );
        (n > 0).then_some((n, addr))
    }

    /// Keep `c` (the first since the last report) for [`MemMap::take_corruption`].
    #[cold]
    #[inline(never)]
    pub(crate) fn record_corruption(&self, c: ListCorruption) {
        let mut slot = self.corruption.lock();
        if slot.is_none() {
            *slot = Some(c);
        }
    }

    /// The list corruption an unchecked list operation recorded, if any.
    pub(crate) fn take_corruption(&self) -> Option<ListCorruption> {
        self.corruption.lock().take()
    }

    /// The kernel virtual address of the descriptor of `pfn` (`struct page *`, the
    /// direct-map address of its slot; computed for any PFN, as the kernel's
    /// `pfn_to_page()` arithmetic is: past the array for one without a descriptor), given
    /// `PAGE_OFFSET`.
    pub fn struct_page_va(&self, page_offset: u64, pfn: Pfn) -> u64 {
        page_offset.wrapping_add(self.phys).wrapping_add(
            self.slot(pfn)
                .wrapping_mul(core::mem::size_of::<Page>() as u64),
        )
    }

    /// The PFN whose descriptor is at kernel virtual address `va`, if one is.
    pub fn pfn_at_struct_va(&self, page_offset: u64, va: u64) -> Option<Pfn> {
        let size = core::mem::size_of::<Page>() as u64;
        let off = va.checked_sub(page_offset.wrapping_add(self.phys))?;
        if off % size != 0 {
            return None;
        }
        self.pfn_of_index(off / size)
    }

    /// The PFN of descriptor `index`, if the array has one.
    #[inline]
    fn pfn_of_index(&self, index: u64) -> Option<Pfn> {
        if index >= self.pages.len() {
            return None;
        }
        Some(Pfn(index + self.pfn_delta[(index >> self.shift) as usize]))
    }

    /// `page_to_pfn()` for a page of this array, or `None` for a foreign reference.
    #[inline]
    pub fn pfn_of(&self, page: &Page) -> Option<Pfn> {
        self.pages
            .index_of(page)
            .and_then(|index| self.pfn_of_index(index))
    }
}

/// A list link that does not hold: what `__list_del_entry_valid_or_report()` and
/// `__list_add_valid_or_report()` (`lib/list_debug.c`, 6.6) find with
/// `CONFIG_DEBUG_LIST`, plus links that leave `mem_map` and lists that do not end. PFNs
/// are as read; [`NIL_PFN`] stands for the list head.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum ListCorruption {
    /// `list_del corruption. prev->next should be <entry>, but was <was>. (prev=<prev>)`
    DelPrev {
        /// The entry being removed.
        entry: Pfn,
        /// Its `prev`.
        prev: Pfn,
        /// What `prev->next` holds.
        was: Pfn,
    },
    /// `list_del corruption. next->prev should be <entry>, but was <was>. (next=<next>)`
    DelNext {
        /// The entry being removed.
        entry: Pfn,
        /// Its `next`.
        next: Pfn,
        /// What `next->prev` holds.
        was: Pfn,
    },
    /// `list_add corruption. next->prev should be prev (<prev>), but was <was>.
    /// (next=<next>).`
    AddNext {
        /// Where the entry goes after.
        prev: Pfn,
        /// Where it goes before.
        next: Pfn,
        /// What `next->prev` holds.
        was: Pfn,
    },
    /// `list_add double add: new=<new>, prev=<prev>, next=<next>.`
    DoubleAdd {
        /// The entry added.
        new: Pfn,
        /// Its would-be `prev`.
        prev: Pfn,
        /// Its would-be `next`.
        next: Pfn,
    },
    /// A link (or the entry itself) names a PFN that `mem_map` does not describe.
    OutOfMap {
        /// The entry whose link it is.
        entry: Pfn,
        /// The PFN it names.
        link: Pfn,
    },
    /// The list holds more entries than pages exist: a cycle.
    Endless {
        /// The entry at which the walk gave up.
        entry: Pfn,
    },
}

/// The PFN that [`ListCorruption`] uses for the list head.
pub const NIL_PFN: Pfn = Pfn(NIL as u64);

/// The PFN a list link word names (or [`NIL_PFN`] for the head).
#[inline]
fn link(v: u32) -> Pfn {
    Pfn(v as u64)
}

/// The head of an intrusive doubly linked list of pages, linked by PFN through
/// `Page::next`/`Page::prev` (`struct list_head` on `page->lru`).
///
/// Both the head and the links may sit in RAM that anyone can overwrite, so the checked
/// operations ([`PageList::try_remove`], [`PageList::try_push_front`], ...) verify every
/// link they follow, as `CONFIG_DEBUG_LIST` does, and change nothing when one is wrong.
/// The unchecked forms keep their old signatures for callers that have no error path:
/// a broken link makes them do nothing and records a fault that
/// [`crate::Mm::take_oopses`] reports.
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
    /// `INIT_LIST_HEAD()`: make the list empty (for lists found in zeroed memory, and to
    /// abandon a corrupted list: its pages are lost, never followed again).
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
    pub fn first(&self) -> Option<Pfn> {
        let f = self.first.load(Relaxed);
        (f != NIL).then_some(link(f))
    }
    /// The last PFN, if any.
    #[inline]
    pub fn last(&self) -> Option<Pfn> {
        let l = self.last.load(Relaxed);
        (l != NIL).then_some(link(l))
    }

    /// The neighbour a link names: `None` for the head (NIL), the page otherwise; `Err`
    /// for a PFN that `mem_map` does not describe.
    #[inline]
    fn neighbour(map: &MemMap, entry: Pfn, pfn: u32) -> Result<Option<&Page>, ListCorruption> {
        if pfn == NIL {
            return Ok(None);
        }
        match map.get(link(pfn)) {
            Some(page) => Ok(Some(page)),
            None => Err(ListCorruption::OutOfMap {
                entry,
                link: link(pfn),
            }),
        }
    }

    /// `next->prev` (the head's `last` when `next` is the head).
    #[inline]
    fn prev_field<'a>(&'a self, next: Option<&'a Page>) -> &'a AtomicU32 {
        match next {
            Some(page) => page.prev_atomic(),
            None => &self.last,
        }
    }

    /// `prev->next` (the head's `first` when `prev` is the head).
    #[inline]
    fn next_field<'a>(&'a self, prev: Option<&'a Page>) -> &'a AtomicU32 {
        match prev {
            Some(page) => page.next_atomic(),
            None => &self.first,
        }
    }

    /// `__list_add_valid()` for `pfn` between `prev` and `next`, then the add.
    #[inline]
    fn try_add(&self, map: &MemMap, pfn: Pfn, prev: u32, next: u32) -> Result<(), ListCorruption> {
        let page = map.get(pfn).ok_or(ListCorruption::OutOfMap {
            entry: pfn,
            link: pfn,
        })?;
        let next_page = Self::neighbour(map, pfn, next)?;
        let prev_page = Self::neighbour(map, pfn, prev)?;
        let (next_prev, prev_next) = (self.prev_field(next_page), self.next_field(prev_page));
        let was = next_prev.load(Relaxed);
        if was != prev {
            return Err(ListCorruption::AddNext {
                prev: link(prev),
                next: link(next),
                was: link(was),
            });
        }
        let was = prev_next.load(Relaxed);
        if was != next {
            return Err(ListCorruption::DelPrev {
                entry: link(next),
                prev: link(prev),
                was: link(was),
            });
        }
        let new = pfn.0 as u32;
        if new == prev || new == next {
            return Err(ListCorruption::DoubleAdd {
                new: pfn,
                prev: link(prev),
                next: link(next),
            });
        }
        page.set_prev(prev);
        page.set_next(next);
        next_prev.store(new, Relaxed);
        prev_next.store(new, Relaxed);
        Ok(())
    }

    /// `list_add()` with `CONFIG_DEBUG_LIST`: insert at the head, or say which link is
    /// broken (nothing changed).
    #[inline]
    pub fn try_push_front(&self, map: &MemMap, pfn: Pfn) -> Result<(), ListCorruption> {
        let page = map.get(pfn).ok_or(ListCorruption::OutOfMap {
            entry: pfn,
            link: pfn,
        })?;
        self.try_push_front_page(map, pfn, page)
    }

    /// [`PageList::try_push_front`] with the descriptor of `pfn` in hand (the caller
    /// looked it up in `map`, as the kernel's `list_add()` gets the `struct page`).
    #[inline]
    pub fn try_push_front_page(
        &self,
        map: &MemMap,
        pfn: Pfn,
        page: &Page,
    ) -> Result<(), ListCorruption> {
        // The head is `prev`: `prev->next == next` holds by construction, so only
        // `next->prev` and a double add are checked.
        let next = self.first.load(Relaxed);
        let next_prev = self.prev_field(Self::neighbour(map, pfn, next)?);
        let was = next_prev.load(Relaxed);
        if was != NIL {
            return Err(ListCorruption::AddNext {
                prev: NIL_PFN,
                next: link(next),
                was: link(was),
            });
        }
        let new = pfn.0 as u32;
        if new == next {
            return Err(ListCorruption::DoubleAdd {
                new: pfn,
                prev: NIL_PFN,
                next: link(next),
            });
        }
        page.set_prev(NIL);
        page.set_next(next);
        next_prev.store(new, Relaxed);
        self.first.store(new, Relaxed);
        Ok(())
    }

    /// `list_add_tail()` with `CONFIG_DEBUG_LIST`.
    #[inline]
    pub fn try_push_back(&self, map: &MemMap, pfn: Pfn) -> Result<(), ListCorruption> {
        self.try_add(map, pfn, self.last.load(Relaxed), NIL)
    }

    /// `list_del()` with `CONFIG_DEBUG_LIST`: unlink `pfn` after checking that its
    /// neighbours point back at it (`__list_del_entry_valid_or_report`); nothing changes
    /// when they do not.
    #[inline]
    pub fn try_remove(&self, map: &MemMap, pfn: Pfn) -> Result<(), ListCorruption> {
        let page = map.get(pfn).ok_or(ListCorruption::OutOfMap {
            entry: pfn,
            link: pfn,
        })?;
        let (prev, next) = (page.prev(), page.next());
        let me = pfn.0 as u32;
        let prev_next = self.next_field(Self::neighbour(map, pfn, prev)?);
        let was = prev_next.load(Relaxed);
        if was != me {
            return Err(ListCorruption::DelPrev {
                entry: pfn,
                prev: link(prev),
                was: link(was),
            });
        }
        let next_prev = self.prev_field(Self::neighbour(map, pfn, next)?);
        let was = next_prev.load(Relaxed);
        if was != me {
            return Err(ListCorruption::DelNext {
                entry: pfn,
                next: link(next),
                was: link(was),
            });
        }
        prev_next.store(next, Relaxed);
        next_prev.store(prev, Relaxed);
        page.set_next(0);
        page.set_prev(0);
        Ok(())
    }

    /// Unlink and return the first page, checked.
    #[inline]
    pub fn try_pop_front(&self, map: &MemMap) -> Result<Option<Pfn>, ListCorruption> {
        Ok(self.try_pop_front_page(map)?.map(|(pfn, _)| pfn))
    }

    /// [`PageList::try_pop_front`], with the page's descriptor.
    #[inline]
    pub fn try_pop_front_page<'a>(
        &self,
        map: &'a MemMap,
    ) -> Result<Option<(Pfn, &'a Page)>, ListCorruption> {
        let first = self.first.load(Relaxed);
        if first == NIL {
            return Ok(None);
        }
        let pfn = link(first);
        match map.get(pfn) {
            // The common case, its `prev` the head (whose `next` is it by construction):
            // only `next->prev` needs checking.
            Some(page) if page.prev() == NIL => {
                let next = page.next();
                let next_prev = self.prev_field(Self::neighbour(map, pfn, next)?);
                let was = next_prev.load(Relaxed);
                if was != first {
                    return Err(ListCorruption::DelNext {
                        entry: pfn,
                        next: link(next),
                        was: link(was),
                    });
                }
                self.first.store(next, Relaxed);
                next_prev.store(NIL, Relaxed);
                page.set_next(0);
                page.set_prev(0);
                Ok(Some((pfn, page)))
            }
            _ => {
                self.try_remove(map, pfn)?;
                Ok(map.get(pfn).map(|page| (pfn, page)))
            }
        }
    }

    /// Unlink and return the last page, checked.
    ///
    /// A head whose `last` is the head itself while `first` names a page is corrupt: the
    /// kernel's `list_last_entry()` then yields the head, and `list_del()` of it fails
    /// `prev->next == entry` (`__list_del_entry_valid_or_report()`, 6.6): the head's
    /// `next` is that page, not the head. Reported the same way, so that a caller which
    /// chose the list because `list_empty()` (which reads `first`) said no never gets
    /// `None` from a list it believes non-empty and loops.
    #[inline]
    pub fn try_pop_back(&self, map: &MemMap) -> Result<Option<Pfn>, ListCorruption> {
        let Some(pfn) = self.last() else {
            return match self.first() {
                None => Ok(None),
                Some(first) => Err(ListCorruption::DelPrev {
                    entry: NIL_PFN,
                    prev: NIL_PFN,
                    was: first,
                }),
            };
        };
        self.try_remove(map, pfn).map(|()| Some(pfn))
    }

    /// Walk the PFNs from first to last, checking each link (`next` inside `mem_map`,
    /// pointing back with `prev`) and stopping with [`ListCorruption::Endless`] after
    /// `limit` entries: the walk always ends.
    pub fn iter_checked<'a>(
        &self,
        map: &'a MemMap,
        limit: u64,
    ) -> impl Iterator<Item = Result<Pfn, ListCorruption>> + 'a + use<'a> {
        let mut cur = self.first.load(Relaxed);
        let mut prev = NIL;
        let mut seen = 0u64;
        let mut done = false;
        core::iter::from_fn(move || {
            if done || cur == NIL {
                return None;
            }
            let pfn = link(cur);
            let checked = match map.get(pfn) {
                None => Err(ListCorruption::OutOfMap {
                    entry: link(prev),
                    link: pfn,
                }),
                Some(page) if page.prev() != prev => Err(ListCorruption::DelNext {
                    entry: link(prev),
                    next: pfn,
                    was: link(page.prev()),
                }),
                Some(_) if seen >= limit => Err(ListCorruption::Endless { entry: pfn }),
                Some(page) => Ok(page.next()),
            };
            seen += 1;
            match checked {
                Ok(next) => {
                    prev = cur;
                    cur = next;
                    Some(Ok(pfn))
                }
                Err(e) => {
                    done = true;
                    Some(Err(e))
                }
            }
        })
    }

    /// `list_add()`: insert at the head (see [`PageList::try_push_front`]; a broken link is
    /// recorded for the next report and nothing is added).
    #[inline]
    pub fn push_front(&self, map: &MemMap, pfn: Pfn) {
        if let Err(e) = self.try_push_front(map, pfn) {
            map.record_corruption(e);
        }
    }
    /// `list_add_tail()`: insert at the tail (unchecked form, as [`PageList::push_front`]).
    #[inline]
    pub fn push_back(&self, map: &MemMap, pfn: Pfn) {
        if let Err(e) = self.try_push_back(map, pfn) {
            map.record_corruption(e);
        }
    }
    /// `list_del()`: unlink a page known to be on this list (unchecked form: with a broken
    /// link the list is abandoned, as by [`PageList::pop_front`], and the fault recorded).
    #[inline]
    pub fn remove(&self, map: &MemMap, pfn: Pfn) {
        if let Err(e) = self.try_remove(map, pfn) {
            map.record_corruption(e);
            self.init();
        }
    }
    /// Unlink and return the first page. With a broken link the list is abandoned
    /// ([`PageList::init`]) so that no caller loops on it, and the fault recorded.
    #[inline]
    pub fn pop_front(&self, map: &MemMap) -> Option<Pfn> {
        self.try_pop_front(map).unwrap_or_else(|e| {
            map.record_corruption(e);
            self.init();
            None
        })
    }
    /// Unlink and return the last page (as [`PageList::pop_front`]).
    #[inline]
    pub fn pop_back(&self, map: &MemMap) -> Option<Pfn> {
        self.try_pop_back(map).unwrap_or_else(|e| {
            map.record_corruption(e);
            self.init();
            None
        })
    }
    /// Walk the PFNs from first to last; a broken link or more entries than `mem_map` has
    /// ends the walk and is recorded.
    pub fn iter<'a>(&self, map: &'a MemMap) -> impl Iterator<Item = Pfn> + 'a + use<'a> {
        self.iter_checked(map, map.len)
            .map_while(move |r| r.map_err(|e| map.record_corruption(e)).ok())
    }
}

/// `%px` of a list entry: the `struct page` address of a PFN, or the list head.
struct EntryAddr<'a, P: Platform> {
    mm: &'a Mm<P>,
    pfn: Pfn,
}

impl<P: Platform> fmt::Display for EntryAddr<'_, P> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.pfn == NIL_PFN {
            return f.write_str("(list head)");
        }
        let va = self
            .mm
            .mem_map
            .struct_page_va(self.mm.layout.page_offset, self.pfn);
        match self.mm.layout.profile {
            crate::Profile::X86_64 => write!(f, "{va:016x}"),
            crate::Profile::I386 => write!(f, "{:08x}", va as u32),
        }
    }
}

impl<P: Platform> Mm<P> {
    fn entry_addr(&self, pfn: Pfn) -> EntryAddr<'_, P> {
        EntryAddr { mm: self, pfn }
    }

    /// `CHECK_DATA_CORRUPTION()` for a list (`lib/list_debug.c`, 6.6, without
    /// `CONFIG_BUG_ON_DATA_CORRUPTION`): the message, then a WARN at the check; the list
    /// operation did nothing. Line numbers are those of the checks in 6.6's file.
    #[cold]
    #[inline(never)]
    pub(crate) fn report_list_corruption(&self, c: &ListCorruption) {
        const ADD: &str = "__list_add_valid_or_report";
        const DEL: &str = "__list_del_entry_valid_or_report";
        let a = |pfn| self.entry_addr(pfn);
        let (line, func) = match *c {
            ListCorruption::DelPrev { entry, prev, was } => {
                self.printk(format_args!(
                    "list_del corruption. prev->next should be {}, but was {}. (prev={})",
                    a(entry),
                    a(was),
                    a(prev)
                ));
                (59, DEL)
            }
            ListCorruption::DelNext { entry, next, was } => {
                self.printk(format_args!(
                    "list_del corruption. next->prev should be {}, but was {}. (next={})",
                    a(entry),
                    a(was),
                    a(next)
                ));
                (62, DEL)
            }
            ListCorruption::AddNext { prev, next, was } => {
                self.printk(format_args!(
                    "list_add corruption. next->prev should be prev ({}), but was {}. (next={}).",
                    a(prev),
                    a(was),
                    a(next)
                ));
                (29, ADD)
            }
            ListCorruption::DoubleAdd { new, prev, next } => {
                self.printk(format_args!(
                    "list_add double add: new={}, prev={}, next={}.",
                    a(new),
                    a(prev),
                    a(next)
                ));
                (35, ADD)
            }
            ListCorruption::OutOfMap { entry, link } => {
                // The kernel would dereference the link: a fault on the descriptor
                // address, past the end of mem_map.
                // (The note before it is kmemlab's.)
                self.printk(format_args!(
                    "kmemlab: list entry {} links to pfn {:#x}, which has no struct page",
                    a(entry),
                    link.raw()
                ));
                let va = self.mem_map.struct_page_va(self.layout.page_offset, link);
                self.bad_page_fault(va, false);
                return;
            }
            ListCorruption::Endless { entry } => {
                // The kernel would walk it for ever (a soft lockup); kmemlab stops, says
                // why, and warns as a list check does.
                self.printk(format_args!(
                    "kmemlab: list walk stopped: more entries than pages (a cycle through {})",
                    a(entry)
                ));
                (62, DEL)
            }
        };
        self.warn_report("lib/list_debug.c", line, func, format_args!(""));
    }

    /// Report list corruption that an unchecked list operation recorded.
    pub(crate) fn report_recorded_list_corruption(&self) {
        if let Some(c) = self.mem_map.take_corruption() {
            self.report_list_corruption(&c);
        }
    }
}

/// `SECTION_SIZE_BITS` (`arch/x86/include/asm/sparsemem.h`, 6.6): 27 (128 MiB) on
/// x86_64; on i386, 29 with PAE and 26 without (kmemlab's i386 has no PAE).
pub const fn section_size_bits(profile: crate::arch::Profile) -> u32 {
    match profile {
        crate::arch::Profile::X86_64 => 27,
        crate::arch::Profile::I386 => 26,
    }
}

/// `PFN_SECTION_SHIFT`: `SECTION_SIZE_BITS - PAGE_SHIFT`.
pub const fn pfn_section_shift(profile: crate::arch::Profile) -> u32 {
    section_size_bits(profile) - crate::addr::PAGE_SHIFT
}

/// `section_map_size()` (`mm/sparse.c`, 6.6) and the buffer's alignment: the bytes of
/// `mem_map` one present section takes. With SPARSEMEM_VMEMMAP (x86_64) the memmap is
/// mapped in whole PMDs, so `ALIGN(sizeof(struct page) * PAGES_PER_SECTION, PMD_SIZE)`:
/// 2 MiB, the kernel's own figure (its 64-byte `struct page` fills it; kmemlab's 40-byte
/// descriptors use the start of it). Without VMEMMAP (i386) it is `PAGE_ALIGN()` of the
/// descriptors, page-aligned (the kernel aligns to the size, a power of two for its
/// 32-byte `struct page`, which kmemlab's 40 bytes do not give).
pub const fn section_map_size(profile: crate::arch::Profile) -> (u64, u64) {
    let bytes = (core::mem::size_of::<Page>() as u64) << pfn_section_shift(profile);
    match profile {
        crate::arch::Profile::X86_64 => {
            let pmd = 1 << 21;
            (bytes.div_ceil(pmd) * pmd, pmd)
        }
        crate::arch::Profile::I386 => {
            let page = crate::addr::PAGE_SIZE as u64;
            (bytes.div_ceil(page) * page, page)
        }
    }
}

/// The end of the physical address space the section table describes.
pub const fn max_section_phys(profile: crate::arch::Profile) -> u64 {
    MAX_MEM_SECTIONS << section_size_bits(profile)
}

impl<P: Platform> Mm<P> {
    /// `pfn_to_section_nr()`: the memory section holding `pfn`.
    pub fn pfn_to_section_nr(&self, pfn: Pfn) -> u64 {
        pfn.0 >> pfn_section_shift(self.profile())
    }

    /// `present_section_nr()`: does some RAM lie in section `nr` (marked present by
    /// `memory_present()` for each memblock memory range, and given its `struct page`s)?
    pub fn present_section_nr(&self, nr: u64) -> bool {
        self.mem_map.present_section(nr)
    }

    /// Would `pfn_to_online_page()` find a page: is `pfn` in a present section (every
    /// present section is online, and an early section is valid over its whole span,
    /// holes inside it included)?
    pub fn pfn_online(&self, pfn: Pfn) -> bool {
        self.mem_map.contains(pfn)
    }

    /// The number of present memory sections.
    pub fn nr_present_sections(&self) -> u64 {
        self.mem_map.nr_present_sections()
    }
}

/// The sections that memblock's RAM touches, in ascending order (`memblocks_present()`):
/// each section number once, for RAM ranges sorted by address.
pub(crate) fn memblock_sections(
    memory: &crate::memblock::MemblockType,
    shift: u32,
) -> impl Iterator<Item = u64> + '_ {
    let mut last = None;
    memory
        .regions()
        .iter()
        .filter(|r| r.size > 0)
        .flat_map(move |r| {
            let first = (r.base >> crate::addr::PAGE_SHIFT) >> shift;
            let end = ((r.end() - 1) >> crate::addr::PAGE_SHIFT) >> shift;
            first..=end
        })
        .filter(move |&nr| {
            let new = last != Some(nr);
            last = Some(nr);
            new
        })
}
