//! `slab_debug`'s paths (`mm/slub.c` of Linux 6.6): debug caches allocate one object at
//! a time (`alloc_single_from_partial()`, `alloc_debug_processing()`) and free under the
//! node lock (`free_debug_processing()`, `free_to_partial_list()`).

use crate::addr::Pfn;
use crate::gfp::Gfp;
use crate::platform::Platform;
use crate::slab::cache::{KmemCache, KmemCacheNode};
use crate::slab::debug::TrackItem;
use crate::slab::debug::SLUB_RED_ACTIVE;
use crate::slab::debug::SLUB_RED_INACTIVE;
use crate::slab::slub::{SlabCounters, NO_OBJECT};
use crate::slab::{SlabError, SlabFlags};
use crate::Mm;
use core::sync::atomic::Ordering::Relaxed;

impl<P: Platform> Mm<P> {
    /// Take an object for a debug cache from the slab at `pfn` (node lock held): checked
    /// and tracked; a slab that fails is marked fully used and moved to the full list
    /// (`alloc_single_from_partial` / `alloc_debug_processing`).
    fn alloc_single(
        &self,
        s: &KmemCache,
        n: &KmemCacheNode,
        pfn: Pfn,
        site: crate::slab::CallSite,
        orig_size: u32,
        on_partial: bool,
    ) -> Option<u64> {
        let Ok(old) = self.check_slab(s, pfn, self.slab_counters(pfn)) else {
            // Reported, and marked fully used by `check_slab`.
            if !on_partial || self.debug_list_del(s, n, pfn, true) {
                n.full.push_back(&self.mem_map, pfn);
            }
            return None;
        };
        if old.freelist == NO_OBJECT {
            // A full slab on the partial list: nothing to take here.
            if !on_partial || self.debug_list_del(s, n, pfn, true) {
                n.full.push_back(&self.mem_map, pfn);
            }
            return None;
        }
        let object = self.object_at(s, pfn, old.freelist);
        let next = self.get_freepointer(s, object).ok();
        // `alloc_consistency_checks()`: `check_object` validates (and reports) the
        // object's own free pointer, so it runs first; without the checks a pointer that
        // leaves the slab is reported as the corrupt pointer it is.
        let next_ok = next.is_some_and(|next| self.check_valid_pointer(s, pfn, next));
        let consistent = if s.flags().contains(SlabFlags::CONSISTENCY_CHECKS) {
            self.check_object(s, pfn, object, SLUB_RED_INACTIVE) && next_ok
        } else {
            if !next_ok {
                self.slab_err(s, pfn, format_args!("Freepointer corrupt"));
            }
            next_ok
        };
        if !consistent {
            self.slab_fix(s, format_args!("Marking all objects used"));
            self.mem_map.page(pfn).set_word(
                SlabCounters {
                    freelist: NO_OBJECT,
                    inuse: old.objects,
                    ..old
                }
                .pack(),
            );
            if !on_partial || self.debug_list_del(s, n, pfn, true) {
                n.full.push_back(&self.mem_map, pfn);
            }
            return None;
        }
        let next_idx = next
            .and_then(|next| self.fl_idx(s, pfn, next))
            .unwrap_or(NO_OBJECT);
        let new = SlabCounters {
            freelist: next_idx,
            inuse: old.inuse + 1,
            ..old
        };
        self.mem_map.page(pfn).set_word(new.pack());
        self.set_track(s, object, TrackItem::Alloc, site);
        self.set_orig_size(s, object, orig_size);
        self.init_object(s, object, SLUB_RED_ACTIVE);
        if new.inuse == new.objects {
            if !on_partial || self.debug_list_del(s, n, pfn, true) {
                n.full.push_back(&self.mem_map, pfn);
            }
        } else if !on_partial {
            n.partial.push_back(&self.mem_map, pfn);
            n.nr_partial.fetch_add(1, Relaxed);
        }
        Some(object)
    }

    /// The allocation path of debug caches: the node's partial slabs, else a new slab.
    pub(crate) fn alloc_debug_path(
        &self,
        s: &KmemCache,
        gfp: Gfp,
        site: crate::slab::CallSite,
        orig_size: u32,
    ) -> Result<u64, SlabError> {
        // ___slab_alloc(): debug caches never have a CPU slab, so every allocation is a
        // slow one.
        self.stat(s, crate::slab::stats::StatItem::AllocSlowpath);
        self.check_geometry(s)?;
        let n = self.get_node(s)?;
        // A new slab whose first object fails its checks is corrupted as soon as it is
        // made: give up after a few rather than take memory forever.
        for _ in 0..4 {
            {
                let _guard = self.lock_node(n);
                // Each slab tried either gives an object or leaves the partial list, so
                // this ends after at most the list's length.
                while let Some(pfn) = n.partial.first() {
                    if self.slab_page_of(s, pfn).is_err() {
                        self.drop_list(n, &n.partial);
                        break;
                    }
                    if let Some(object) = self.alloc_single(s, n, pfn, site, orig_size, true) {
                        return Ok(object);
                    }
                }
            }
            let pfn = self.new_slab(s, gfp)?;
            self.stat(s, crate::slab::stats::StatItem::AllocSlab);
            self.inc_slabs_node(s, pfn)?;
            let _guard = self.lock_node(n);
            if let Some(object) = self.alloc_single(s, n, pfn, site, orig_size, false) {
                return Ok(object);
            }
        }
        Err(SlabError::Corrupted {
            addr: s.self_va.load(Relaxed),
            what: crate::slab::Reason::NewSlabsFailedChecks,
        })
    }

    /// `free_to_partial_list()` with `free_debug_processing()`: a free of a debug cache,
    /// checked; a refused object stays allocated, out of circulation. Out of line, so the
    /// fast path of caches without debugging stays small.
    #[inline(never)]
    pub(crate) fn free_to_partial_list(
        &self,
        s: &KmemCache,
        pfn: Pfn,
        object: u64,
        site: crate::slab::CallSite,
    ) -> Result<(), SlabError> {
        // __slab_free() counts the slow path before it hands a debug cache's free here.
        self.stat(s, crate::slab::stats::StatItem::FreeSlowpath);
        self.check_geometry(s)?;
        let n = self.get_node(s)?;
        let guard = self.lock_node(n);
        let result = self.free_debug_locked(s, n, pfn, object, site);
        drop(guard);
        if result.as_ref().is_ok_and(|d| *d) {
            self.stat(s, crate::slab::stats::StatItem::FreeSlab);
            self.discard_slab(s, pfn);
        }
        result.map(|_| ())
    }

    fn free_debug_locked(
        &self,
        s: &KmemCache,
        n: &KmemCacheNode,
        pfn: Pfn,
        object: u64,
        site: crate::slab::CallSite,
    ) -> Result<bool, SlabError> {
        let idx = self
            .object_index(s, pfn, object)
            .ok_or(SlabError::NotSlabObject(
                crate::VirtAddr(object),
                crate::slab::Reason::NotObjectStart,
            ))?;
        if s.flags().contains(SlabFlags::CONSISTENCY_CHECKS) {
            self.check_slab(s, pfn, self.slab_counters(pfn))?;
            if self.on_freelist(s, pfn, object) {
                self.object_err(s, pfn, object, "Object already free");
                return Err(SlabError::DebugCheck(
                    crate::VirtAddr(object),
                    crate::slab::Reason::ObjectAlreadyFree,
                ));
            }
            if !self.check_object(s, pfn, object, SLUB_RED_ACTIVE) {
                self.slab_fix(s, format_args!("Object at {object:#x} not freed"));
                return Err(SlabError::DebugCheck(
                    crate::VirtAddr(object),
                    crate::slab::Reason::CorruptedWhileAllocated,
                ));
            }
        }
        // Without F, the checks every free gets: the slab's freelist head, or a slab with
        // nothing in use (the hardened `BUG_ON(object == fp)` and the object count check).
        let c = self.check_slab(s, pfn, self.slab_counters(pfn))?;
        if c.inuse == 0 || (c.freelist != NO_OBJECT && self.object_at(s, pfn, c.freelist) == object)
        {
            return Err(self.naive_double_free(s, object));
        }
        self.set_track(s, object, TrackItem::Free, site);
        self.init_object(s, object, SLUB_RED_INACTIVE);
        let old = self.slab_counters(pfn);
        let prior = self.fl_va(s, pfn, old.freelist);
        self.set_freepointer(s, object, prior)?;
        let new = SlabCounters {
            freelist: idx,
            inuse: old.inuse.saturating_sub(1),
            ..old
        };
        self.mem_map.page(pfn).set_word(new.pack());
        if prior == 0 {
            let off_full = self.debug_list_del(s, n, pfn, false);
            if off_full && new.inuse != 0 {
                n.partial.push_back(&self.mem_map, pfn);
                n.nr_partial.fetch_add(1, Relaxed);
                self.stat(s, crate::slab::stats::StatItem::FreeAddPartial);
            }
        }
        if new.inuse == 0 {
            if n.nr_partial.load(Relaxed) >= s.min_partial() {
                if prior != 0 {
                    if !self.debug_list_del(s, n, pfn, true) {
                        return Ok(false);
                    }
                    self.stat(s, crate::slab::stats::StatItem::FreeRemovePartial);
                }
                return Ok(true);
            }
            if prior == 0 {
                n.partial.push_back(&self.mem_map, pfn);
                n.nr_partial.fetch_add(1, Relaxed);
                self.stat(s, crate::slab::stats::StatItem::FreeAddPartial);
            }
        }
        Ok(false)
    }
}
