//! Intrusive lists of pages linked by PFN through `Page::next`/`Page::prev` (`struct
//! list_head` on `page->lru`), checked link by link as `lib/list_debug.c` (6.6) checks
//! them under `CONFIG_DEBUG_LIST`, and the list-corruption reports. Start reading at
//! [`PageList::try_remove`].

use core::fmt;
use core::sync::atomic::{AtomicU32, Ordering::Relaxed};

use super::MemMap;
use crate::addr::Pfn;
use crate::mm_types::{Page, NIL};
use crate::platform::Platform;
use crate::Mm;

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
    #[inline(always)]
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
    #[inline(always)]
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
    #[inline(always)]
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

/// The line of `CHECK_DATA_CORRUPTION(prev->next != entry, …)` in
/// `__list_del_entry_valid_or_report()`, `lib/list_debug.c` of Linux 6.6.63.
pub(crate) const LIST_DEL_PREV_NEXT_LINE: u32 = 62;
/// The line of `CHECK_DATA_CORRUPTION(next->prev != entry, …)` there.
pub(crate) const LIST_DEL_NEXT_PREV_LINE: u32 = 65;

impl<P: Platform> Mm<P> {
    fn entry_addr(&self, pfn: Pfn) -> EntryAddr<'_, P> {
        EntryAddr { mm: self, pfn }
    }

    /// `CHECK_DATA_CORRUPTION()` for a list (`lib/list_debug.c`, 6.6, without
    /// `CONFIG_BUG_ON_DATA_CORRUPTION`): the message, then a WARN at the check; the list
    /// operation did nothing. Line numbers are those of the checks in 6.6.63's file
    /// ([`LIST_DEL_PREV_NEXT_LINE`], [`LIST_DEL_NEXT_PREV_LINE`]).
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
                (LIST_DEL_PREV_NEXT_LINE, DEL)
            }
            ListCorruption::DelNext { entry, next, was } => {
                self.printk(format_args!(
                    "list_del corruption. next->prev should be {}, but was {}. (next={})",
                    a(entry),
                    a(was),
                    a(next)
                ));
                (LIST_DEL_NEXT_PREV_LINE, DEL)
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
                (LIST_DEL_PREV_NEXT_LINE, DEL)
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
