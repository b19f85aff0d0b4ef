//! Checks of slab metadata read back from RAM, and the kernel's reports when one fails.
//!
//! Everything SLUB keeps in RAM may have been overwritten (a stray write, a DMA, a user's
//! `poke`): the cache a slab page names, a cache's node and per-CPU pointers, a slab's
//! counters, the links of the node lists and of the per-CPU partial chains. Each is
//! checked here before it is followed. A check that fails prints what Linux 6.6 prints for
//! that corruption where it has a check (`check_slab()`'s `slab_err`, lib/list_debug.c's
//! `list_del corruption`), else the fault the kernel would take on the bad pointer (a
//! general protection fault for a non-canonical address, a page fault otherwise), and
//! the operation gives up along its error path. The structure found corrupt is isolated
//! (a slab is marked fully used and leaves its list, a list is emptied, a per-CPU chain
//! is dropped) so that the machine can carry on: its objects are lost, as a kernel that
//! kept running would lose them.

use core::sync::atomic::Ordering::Relaxed;

use crate::addr::{Pfn, MAX_PAGE_ORDER, PAGE_SIZE};
use crate::memory_model::{ListCorruption, PageList};
use crate::mm_types::{Page, NIL, PG_SLAB};
use crate::platform::Platform;
use crate::slab::cache::{KmemCache, KmemCacheNode, MAX_OBJS_PER_PAGE};
use crate::slab::slub::{SlabCounters, NO_OBJECT};
use crate::slab::SlabError;
use crate::Mm;

/// Is `Mm::order_objects(s, order) == Some(objects)` for a cache of `size`-byte objects,
/// that is `objects == (PAGE_SIZE << order) / size` (and a count a slab can hold)? Asked
/// without the division, which the slow paths would otherwise make on every slab they
/// touch: `objects * size <= PAGE_SIZE << order < (objects + 1) * size` (no overflow:
/// both products are below 2^49).
#[inline]
fn order_holds(size: u32, order: u32, objects: u16) -> bool {
    let (size, objects) = (size as u64, objects as u64);
    if size == 0 || order > MAX_PAGE_ORDER || objects > MAX_OBJS_PER_PAGE as u64 {
        return false;
    }
    let span = (PAGE_SIZE as u64) << order;
    objects * size <= span && span < (objects + 1) * size
}

impl<P: Platform> Mm<P> {
    /// The fault the kernel takes when it follows the corrupted pointer `addr`: a general
    /// protection fault for a non-canonical address, a page fault otherwise (an address
    /// that is not mapped, or — for a pointer into the wrong memory — the first fault its
    /// garbage leads to). Returns the error the operation gives up with.
    #[cold]
    #[inline(never)]
    pub(crate) fn slab_fault(
        &self,
        addr: u64,
        write: bool,
        what: crate::slab::Reason,
    ) -> SlabError {
        if self.paging().is_canonical(addr) {
            self.bad_page_fault(addr, write);
        } else {
            self.general_protection_fault(addr);
        }
        SlabError::Corrupted { addr, what }
    }

    /// The live `kmem_cache` at kernel address `va`, a pointer read from RAM (a slab page's
    /// `slab_cache`, a kmalloc cache slot): its magic and self-address must say so, else
    /// it is the fault the kernel would take using it.
    #[inline]
    pub(crate) fn cache_at(&self, va: u64) -> Result<&KmemCache, SlabError> {
        match self.cache(crate::slab::KmemCacheRef(va)) {
            Ok(s) => Ok(s),
            Err(_) => Err(self.slab_fault(va, false, crate::slab::Reason::NotLiveKmemCache)),
        }
    }

    /// The objects a slab of `order` holds (`order_objects()`), if the cache's size and
    /// the order make sense.
    pub(crate) fn order_objects(s: &KmemCache, order: u32) -> Option<u16> {
        let size = s.size() as u64;
        if size == 0 || order > MAX_PAGE_ORDER {
            return None;
        }
        let objects = ((PAGE_SIZE as u64) << order) / size;
        (objects <= MAX_OBJS_PER_PAGE as u64).then_some(objects as u16)
    }

    /// Is the cache's object geometry one that `kmem_cache_open()` could have written?
    /// (Corrupted sizes would send the slab arithmetic anywhere.)
    pub(crate) fn geometry_ok(s: &KmemCache) -> bool {
        let (size, object_size, inuse) = (s.size() as u64, s.object_size(), s.inuse());
        let (oo, min) = (s.oo(), s.min());
        let fits = |order: u32, objects: u32| {
            order <= MAX_PAGE_ORDER
                && objects >= 1
                && objects as u64 * size <= (PAGE_SIZE as u64) << order
        };
        let recip = s.reciprocal_size.load(Relaxed) as u128;
        size >= 8
            && size <= (PAGE_SIZE as u64) << MAX_PAGE_ORDER
            && object_size >= 1
            && object_size <= inuse
            && inuse as u64 + s.red_left_pad() as u64 <= size
            && s.fp_offset() as u64 + 8 <= size
            && fits(oo.order, oo.objects)
            && fits(min.order, min.objects)
            && recip * size as u128 >= 1 << 48
            && (recip.wrapping_sub(1)) * (size as u128) < 1 << 48
    }

    /// [`Mm::geometry_ok`], reported when it fails.
    pub(crate) fn check_geometry(&self, s: &KmemCache) -> Result<(), SlabError> {
        if Self::geometry_ok(s) {
            return Ok(());
        }
        self.geometry_corrupt(s)
    }

    #[cold]
    #[inline(never)]
    fn geometry_corrupt(&self, s: &KmemCache) -> Result<(), SlabError> {
        self.slab_bug(
            s,
            format_args!(
                "kmem_cache corrupt: size {} object_size {} inuse {} offset {} red_left_pad {} oo {}/{}",
                s.size(),
                s.object_size(),
                s.inuse(),
                s.fp_offset(),
                s.red_left_pad(),
                s.oo().order,
                s.oo().objects
            ),
        );
        self.add_taint(crate::report::taint::BAD_PAGE);
        Err(SlabError::Corrupted {
            addr: s.self_va.load(Relaxed),
            what: crate::slab::Reason::GeometryCorrupted,
        })
    }

    /// The address `struct page` of `pfn` has (or would have, past `mem_map`), for reports.
    pub(crate) fn pfn_struct_address(&self, pfn: Pfn) -> u64 {
        self.mem_map.struct_page_va(self.layout().page_offset, pfn)
    }

    /// The slab page `pfn` (a link read from RAM: a per-CPU slab, a list entry) if it is a
    /// slab of `s`; else the report (`check_slab()`'s "Not a valid slab page", or the fault
    /// on a `struct page` past `mem_map`).
    #[inline]
    pub(crate) fn slab_page_of(&self, s: &KmemCache, pfn: Pfn) -> Result<&Page, SlabError> {
        match self.mem_map.get(pfn) {
            Some(page)
                if page.flags() & PG_SLAB != 0 && page.slab_cache() == s.self_va.load(Relaxed) =>
            {
                Ok(page)
            }
            _ => Err(self.not_a_slab_of(s, pfn)),
        }
    }

    #[cold]
    #[inline(never)]
    fn not_a_slab_of(&self, s: &KmemCache, pfn: Pfn) -> SlabError {
        let addr = self.pfn_struct_address(pfn);
        if !self.mem_map.contains(pfn) {
            return self.slab_fault(addr, false, crate::slab::Reason::SlabLinkPastMemMap);
        }
        self.slab_err(s, pfn, format_args!("Not a valid slab page"));
        SlabError::Corrupted {
            addr,
            what: crate::slab::Reason::LinkToForeignPage,
        }
    }

    /// `check_slab()`: the slab's counters must be what its order gives (`objects`), no
    /// more in use than it holds, a freelist head inside it. A slab that fails is reported
    /// (`slab_err`), isolated (`Marking all objects used`: no free object, nothing to hand
    /// out) and the error returned.
    #[inline]
    pub(crate) fn check_slab(
        &self,
        s: &KmemCache,
        pfn: Pfn,
        c: SlabCounters,
    ) -> Result<SlabCounters, SlabError> {
        self.check_slab_in(s, self.mem_map.page(pfn), pfn, c)
    }

    /// [`Mm::check_slab`] with the slab's `struct page` in hand.
    #[inline]
    pub(crate) fn check_slab_in(
        &self,
        s: &KmemCache,
        page: &Page,
        pfn: Pfn,
        c: SlabCounters,
    ) -> Result<SlabCounters, SlabError> {
        let order = page.order();
        if order_holds(s.size(), order, c.objects)
            && c.inuse <= c.objects
            && (c.freelist == NO_OBJECT || c.freelist < c.objects)
        {
            return Ok(c);
        }
        Err(self.bad_counters(s, pfn, c, Self::order_objects(s, order)))
    }

    #[cold]
    #[inline(never)]
    fn bad_counters(
        &self,
        s: &KmemCache,
        pfn: Pfn,
        c: SlabCounters,
        max: Option<u16>,
    ) -> SlabError {
        let max = max.unwrap_or(0);
        if c.objects > max {
            // check_slab() (Linux 6.6).
            self.slab_err(s, pfn, format_args!("objects {} > max {}", c.objects, max));
        } else if c.objects < max {
            // Fewer than the slab's order holds: on_freelist()'s wording (6.6).
            self.slab_err(
                s,
                pfn,
                format_args!(
                    "Wrong number of objects. Found {} but should be {}",
                    c.objects, max
                ),
            );
        } else if c.inuse > c.objects {
            self.slab_err(
                s,
                pfn,
                format_args!("inuse {} > max {}", c.inuse, c.objects),
            );
        } else {
            self.slab_err(s, pfn, format_args!("Freepointer corrupt"));
        }
        self.isolate_slab(s, pfn, c, max);
        SlabError::Corrupted {
            addr: self.pfn_struct_address(pfn),
            what: crate::slab::Reason::SlabCountersCorrupted,
        }
    }

    /// `Marking all objects used` (`alloc_debug_processing()`'s `bad:` path): the slab keeps
    /// the object count its order gives, every object counts as in use, and its freelist is
    /// dropped, so nothing on it is handed out again.
    pub(crate) fn isolate_slab(&self, s: &KmemCache, pfn: Pfn, c: SlabCounters, objects: u16) {
        self.slab_fix(s, format_args!("Marking all objects used"));
        let n = self.get_node_quiet(s);
        if let Some(n) = n {
            // The node counted the objects the slab had when it was made.
            let delta = objects as i64 - c.objects as i64;
            // One atomic add: inc_slabs_node() on another CPU may change it too.
            n.total_objects.fetch_add(delta as u64, Relaxed);
        }
        self.mem_map.page(pfn).set_word(
            SlabCounters {
                freelist: NO_OBJECT,
                inuse: objects,
                objects,
                frozen: c.frozen,
            }
            .pack(),
        );
    }

    /// `list_del()` with `CONFIG_DEBUG_LIST` (`__list_del_entry_valid_or_report()`): the
    /// neighbours of `pfn` on `list` must point back at it. If they do not, the kernel's
    /// warning is printed and nothing is unlinked (as `list_del()` does), and the list —
    /// whose links can no longer be trusted — is emptied by [`Mm::drop_list`]; `false`
    /// is returned.
    /// [`PageList::try_remove`] makes exactly those checks (the entry and its neighbours
    /// described by `mem_map`, `prev->next` and `next->prev` pointing back at it) before
    /// it unlinks anything, so the links are read and checked once.
    pub(crate) fn slab_list_del(
        &self,
        s: &KmemCache,
        n: &KmemCacheNode,
        list: &PageList,
        pfn: Pfn,
    ) -> bool {
        match list.try_remove(&self.mem_map, pfn) {
            Ok(()) => true,
            Err(e) => self.list_del_corrupt(s, n, list, pfn, e),
        }
    }

    /// The report of a [`PageList::try_remove`] refusal in [`Mm::slab_list_del`]: which
    /// side's link was wrong, the neighbour it named and what that neighbour held (a
    /// neighbour `mem_map` does not describe holds nothing that points back).
    #[cold]
    #[inline(never)]
    fn list_del_corrupt(
        &self,
        s: &KmemCache,
        n: &KmemCacheNode,
        list: &PageList,
        pfn: Pfn,
        e: ListCorruption,
    ) -> bool {
        let raw = |p: Pfn| p.raw() as u32;
        let (side, neighbour, was) = match e {
            ListCorruption::DelPrev { prev, was, .. } => ("prev", raw(prev), raw(was)),
            ListCorruption::DelNext { next, was, .. } => ("next", raw(next), raw(was)),
            // The entry itself is past mem_map.
            ListCorruption::OutOfMap { link, .. } if link == pfn => ("prev", NIL, NIL),
            // A neighbour past mem_map: `prev` is checked first.
            ListCorruption::OutOfMap { link, .. } => {
                let prev = self.mem_map.get(pfn).map_or(NIL, |p| p.prev());
                let side = if raw(link) == prev { "prev" } else { "next" };
                (side, raw(link), NIL)
            }
            // Not a refusal of a removal.
            _ => ("prev", NIL, NIL),
        };
        self.list_corrupt(s, n, list, pfn, side, neighbour, was)
    }

    /// `remove_partial()`: take the slab at `pfn` off the node's partial list (checked as
    /// [`Mm::slab_list_del`] does) and count it out; a corrupted list is an error.
    pub(crate) fn remove_partial(
        &self,
        s: &KmemCache,
        n: &KmemCacheNode,
        pfn: Pfn,
    ) -> Result<(), SlabError> {
        if !self.slab_list_del(s, n, &n.partial, pfn) {
            return Err(SlabError::Corrupted {
                addr: self.pfn_struct_address(pfn),
                what: crate::slab::Reason::NodePartialListCorrupted,
            });
        }
        n.nr_partial
            .store(n.nr_partial.load(Relaxed).saturating_sub(1), Relaxed);
        Ok(())
    }

    #[cold]
    #[inline(never)]
    #[allow(clippy::too_many_arguments)]
    fn list_corrupt(
        &self,
        s: &KmemCache,
        n: &KmemCacheNode,
        list: &PageList,
        pfn: Pfn,
        side: &str,
        neighbour: u32,
        was: u32,
    ) -> bool {
        let entry = self.pfn_struct_address(pfn);
        // The list head's kernel address: inside the node structure.
        let head = s
            .node
            .load(Relaxed)
            .wrapping_add(if core::ptr::eq(list, &n.full) {
                core::mem::offset_of!(KmemCacheNode, full)
            } else {
                core::mem::offset_of!(KmemCacheNode, partial)
            } as u64);
        let addr = |p: u32| {
            if p == NIL {
                head
            } else {
                self.pfn_struct_address(Pfn(p as u64))
            }
        };
        let (line, back) = if side == "next" {
            (crate::memory_model::LIST_DEL_NEXT_PREV_LINE, "prev")
        } else {
            (crate::memory_model::LIST_DEL_PREV_NEXT_LINE, "next")
        };
        self.warn_report(
            "lib/list_debug.c",
            line,
            "__list_del_entry_valid_or_report",
            format_args!(
                "list_del corruption. {side}->{back} should be {entry:016x}, but was {:016x}. ({side}={:016x})",
                addr(was),
                addr(neighbour)
            ),
        );
        self.drop_list(n, list);
        false
    }

    /// Empty a node list whose links were found corrupt: its slabs are lost to the
    /// allocator (still counted as the node's slabs, as they still are).
    pub(crate) fn drop_list(&self, n: &KmemCacheNode, list: &PageList) {
        if core::ptr::eq(list, &n.partial) {
            n.nr_partial.store(0, Relaxed);
        }
        list.init();
    }

    /// Walk a node list (partial or full) of `s`, calling `f` on each slab, at most as many
    /// as `mem_map` has pages; a link to a page that is no slab of `s` ends the walk with
    /// the report and an emptied list. Returns what `f` broke with, if anything.
    pub(crate) fn walk_node_list<T>(
        &self,
        s: &KmemCache,
        n: &KmemCacheNode,
        list: &PageList,
        mut f: impl FnMut(Pfn) -> Option<T>,
    ) -> Result<Option<T>, SlabError> {
        let mut cur = list.first();
        let mut steps = 0u64;
        while let Some(pfn) = cur {
            steps += 1;
            if steps > self.mem_map.len {
                self.list_corrupt(s, n, list, pfn, "prev", NIL, NIL);
                return Err(SlabError::Corrupted {
                    addr: self.pfn_struct_address(pfn),
                    what: crate::slab::Reason::SlabListUnended,
                });
            }
            if let Err(e) = self.slab_page_of(s, pfn) {
                self.drop_list(n, list);
                return Err(e);
            }
            if let Some(t) = f(pfn) {
                return Ok(Some(t));
            }
            let next = self.mem_map.page(pfn).next();
            cur = (next != NIL).then_some(Pfn(next as u64));
        }
        Ok(None)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `order_holds` answers as `order_objects`' division does, for every object size a
    /// slab can have at every order, and counts around the right one.
    #[test]
    fn order_holds_agrees_with_the_division() {
        for order in 0..=MAX_PAGE_ORDER + 1 {
            for size in (0..=1u32 << 14).chain([1 << 20, 1 << 22, (1 << 22) + 1, u32::MAX]) {
                let max = (size != 0 && order <= MAX_PAGE_ORDER)
                    .then(|| ((PAGE_SIZE as u64) << order) / size as u64)
                    .filter(|&m| m <= MAX_OBJS_PER_PAGE as u64);
                let around = max.unwrap_or(0);
                for objects in [
                    0,
                    1,
                    around.saturating_sub(1),
                    around,
                    around + 1,
                    32767,
                    32768,
                    65535,
                ] {
                    let objects = objects.min(u16::MAX as u64) as u16;
                    assert_eq!(
                        order_holds(size, order, objects),
                        max == Some(objects as u64),
                        "size {size} order {order} objects {objects}"
                    );
                }
            }
        }
    }
}
