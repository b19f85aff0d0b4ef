//! Partial slabs (`mm/slub.c` of Linux 6.6): the node's partial list (`get_partial()`),
//! the per-CPU partial slabs (`put_cpu_partial()`, `unfreeze_partials()`),
//! `deactivate_slab()`, and flushing and shrinking (`flush_cpu_slab()`, `flush_all()`,
//! emptied partial slabs discarded).

use crate::addr::Pfn;
use crate::mm_types::Page;
use crate::platform::Platform;
use crate::slab::cache::{
    partial_chain_link, partial_chain_next, KmemCache, KmemCacheCpu, KmemCacheNode,
};
use crate::slab::slub::SlabCounters;
use crate::slab::slub::NO_OBJECT;
use crate::slab::stats::StatItem;
use crate::slab::SlabError;
use crate::Mm;
use core::sync::atomic::Ordering::Relaxed;

/// `VM_BUG_ON(!old.frozen)` in `__unfreeze_partials()`: mm/slub.c:2626 in Linux 6.6.63.
const UNFREEZE_PARTIALS_BUG_LINE: u32 = 2626;

impl<P: Platform> Mm<P> {
    /// `get_partial_node()`: the first slab of the node's partial list becomes the CPU
    /// slab (its freelist taken); more go to the CPU's partial list until more than half
    /// its limit have gone (Linux 6.6 stops at `partial_slabs > s->cpu_partial_slabs / 2`,
    /// so it takes one past the half; none where the cache keeps no per-CPU partial
    /// slabs, `kmem_cache_has_cpu_partial()`).
    pub(super) fn get_partial(
        &self,
        s: &KmemCache,
        c: &KmemCacheCpu,
    ) -> Result<Option<(Pfn, &Page, u64)>, SlabError> {
        let n = self.get_node(s)?;
        if n.nr_partial.load(Relaxed) == 0 {
            return Ok(None);
        }
        let _guard = self.lock_node(n);
        let Some(first) = n.partial.first() else {
            return Ok(None);
        };
        let (page, freelist) = self.acquire_slab(s, n, first, true)?;
        self.stat(s, StatItem::AllocFromPartial);
        let limit = s.cpu_partial_slabs();
        let mut taken = 0;
        while limit > 0 && taken <= limit / 2 {
            let Some(pfn) = n.partial.first() else { break };
            let Ok((more, _)) = self.acquire_slab(s, n, pfn, false) else {
                break;
            };
            Self::push_cpu_partial(c, pfn, more);
            self.stat(s, StatItem::CpuPartialNode);
            taken += 1;
        }
        Ok(Some((first, page, freelist)))
    }

    /// The slab at `pfn` (its `struct page` is `page`) becomes the first per-CPU partial
    /// slab.
    fn push_cpu_partial(c: &KmemCacheCpu, pfn: Pfn, page: &Page) {
        c.partial_slabs
            .store(c.partial_slabs.load(Relaxed).saturating_add(1), Relaxed);
        let old = c.partial_pfn();
        page.set_next(partial_chain_link(old));
        c.set_partial_pfn(Some(pfn));
    }

    /// Walk a CPU freelist of the slab at `pfn` from `freelist`: its length and last
    /// object. A pointer that is not an object of the slab ends it there (reported by
    /// [`Mm::next_free`]), the chain cut at the last good object; a chain longer than the
    /// slab (a cycle) is cut at the slab's size.
    fn walk_cpu_freelist(&self, s: &KmemCache, pfn: Pfn, freelist: u64) -> (u16, u64) {
        let objects = SlabCounters::unpack(self.mem_map.page(pfn).word()).objects;
        let (mut count, mut tail) = (0u16, 0u64);
        let mut cur = freelist;
        while cur != 0 && count < objects {
            match self.next_free(s, pfn, cur) {
                Ok(next) => {
                    count += 1;
                    tail = cur;
                    cur = next;
                }
                Err(_) => break,
            }
        }
        if cur != 0 && tail != 0 {
            // Isolate the corrupted (or endless) rest of the chain.
            let _ = self.set_freepointer(s, tail, 0);
        }
        (count, tail)
    }

    /// `deactivate_slab()`: return a CPU's freelist to its slab and unfreeze it; the slab
    /// goes to the node's partial list, back to the page allocator if empty and the node
    /// has enough partial slabs, or onto no list if full. A slab that turns out corrupted
    /// is reported and stays off every list.
    pub(crate) fn deactivate_slab(&self, s: &KmemCache, pfn: Pfn, freelist: u64) {
        let Ok(page) = self.slab_page_of(s, pfn) else {
            return;
        };
        let (count, tail) = self.walk_cpu_freelist(s, pfn, freelist);
        let Ok(n) = self.get_node(s) else { return };
        let guard = self.lock_node(n);
        let cpu_freelist = CpuFreelist {
            head: freelist,
            count,
            tail,
        };
        if self.unfreeze_locked(s, n, pfn, page, cpu_freelist, false) {
            drop(guard);
            self.discard_unfrozen(s, pfn);
        }
    }

    /// The unfreezing shared by [`Mm::deactivate_slab`] and `__unfreeze_partials()` (with
    /// `from_cpu_partial`; they differ only in what they count), under the node lock:
    /// `freelist` goes back to the slab of `page` (checked to be a slab of `s`), which
    /// is unfrozen and put on the node's partial list if it has free objects. Returns
    /// whether the slab is empty and must be discarded ([`Mm::discard_unfrozen`]) once the
    /// lock is dropped.
    fn unfreeze_locked(
        &self,
        s: &KmemCache,
        n: &KmemCacheNode,
        pfn: Pfn,
        page: &Page,
        freelist: CpuFreelist,
        from_cpu_partial: bool,
    ) -> bool {
        let CpuFreelist { head, count, tail } = freelist;
        let (new, remote_frees) = loop {
            let raw = page.word();
            let Ok(old) = self.check_slab_in(s, page, pfn, SlabCounters::unpack(raw)) else {
                return false;
            };
            if tail != 0
                && self
                    .set_freepointer(s, tail, self.fl_va(s, pfn, old.freelist))
                    .is_err()
            {
                return false;
            }
            let new = SlabCounters {
                freelist: if tail != 0 {
                    self.fl_idx_in(s, page, pfn, head).unwrap_or(old.freelist)
                } else {
                    old.freelist
                },
                inuse: old.inuse.saturating_sub(count),
                frozen: false,
                ..old
            };
            if self.cmpxchg_slab(s, page, raw, new) {
                break (new, old.freelist != NO_OBJECT);
            }
        };
        // deactivate_slab(): remote frees found on the slab's own freelist send it to the
        // tail (the list itself is kept in arrival order here).
        let to_list = if remote_frees && !from_cpu_partial {
            self.stat(s, StatItem::DeactivateRemoteFrees);
            StatItem::DeactivateToTail
        } else {
            StatItem::DeactivateToHead
        };
        if new.inuse == 0 && n.nr_partial.load(Relaxed) >= s.min_partial() {
            return true;
        }
        if new.freelist != NO_OBJECT {
            n.partial.push_back(&self.mem_map, pfn);
            n.nr_partial.fetch_add(1, Relaxed);
            self.stat(
                s,
                if from_cpu_partial {
                    StatItem::FreeAddPartial
                } else {
                    to_list
                },
            );
        } else if !from_cpu_partial {
            self.stat(s, StatItem::DeactivateFull);
        }
        false
    }

    /// An empty slab that [`Mm::unfreeze_locked`] took off the CPU goes back to the page
    /// allocator (called without the node lock, as the kernel discards).
    fn discard_unfrozen(&self, s: &KmemCache, pfn: Pfn) {
        self.stat(s, StatItem::DeactivateEmpty);
        self.discard_slab(s, pfn);
        self.stat(s, StatItem::FreeSlab);
    }

    /// `unfreeze_partials()`: the CPU's partial slabs go back to the node.
    fn unfreeze_partials(&self, s: &KmemCache, c: &KmemCacheCpu) {
        let chain = Self::take_cpu_partials(c);
        self.__unfreeze_partials(s, chain);
    }

    /// The CPU's partial slabs taken off it: the first of the chain.
    fn take_cpu_partials(c: &KmemCacheCpu) -> Option<Pfn> {
        let first = c.take_partial_pfn();
        c.partial_slabs.store(0, Relaxed);
        first
    }

    /// `__unfreeze_partials()`: the partial slabs of a chain taken off a CPU go back to
    /// the node, under one hold of the node lock as in the kernel (dropped only to
    /// discard an empty slab). The chain (linked through `struct page`) is followed at
    /// most as far as the cache could have slabs; a link to anything but a slab of the
    /// cache is reported and ends it. Out of line: [`Mm::put_cpu_partial`] needs it only
    /// when its list is full.
    #[inline(never)]
    fn __unfreeze_partials(&self, s: &KmemCache, first: Option<Pfn>) {
        let mut cur = first;
        let mut node = None;
        let mut guard = None;
        let mut steps = 0u64;
        while let Some(pfn) = cur.filter(|_| steps < self.mem_map.len) {
            steps += 1;
            let Ok(page) = self.slab_page_of(s, pfn) else {
                return;
            };
            if !SlabCounters::unpack(page.word()).frozen {
                // VM_BUG_ON(!old.frozen): a slab on a CPU's chain is frozen; one that is
                // not was met before on this chain (a loop) or never was a CPU's.
                drop(guard.take());
                self.kernel_bug("mm/slub.c", UNFREEZE_PARTIALS_BUG_LINE);
                return;
            }
            cur = partial_chain_next(page.next());
            // The node pointer is read from RAM and checked once for the chain.
            let n = match node {
                Some(n) => n,
                None => {
                    let Ok(n) = self.get_node(s) else { return };
                    node = Some(n);
                    n
                }
            };
            if guard.is_none() {
                guard = Some(self.lock_node(n));
            }
            if self.unfreeze_locked(s, n, pfn, page, CpuFreelist::NONE, true) {
                drop(guard.take());
                self.discard_unfrozen(s, pfn);
            }
        }
    }

    /// `put_cpu_partial()`: a slab that a free made partial (its `struct page` is `page`)
    /// joins this CPU's partial list; a full list is taken off first and drained to the
    /// node once interrupts are enabled again ("Postpone the actual unfreezing outside of
    /// the critical section", Linux 6.6).
    pub(super) fn put_cpu_partial(
        &self,
        s: &KmemCache,
        pfn: Pfn,
        page: &Page,
    ) -> Result<(), SlabError> {
        let flags = self.platform.local_irq_save();
        let r = self.this_cpu_slab(s).map(|c| {
            let slabs = c.partial_slabs.load(Relaxed);
            let full = slabs >= s.cpu_partial_slabs() as u64;
            let to_unfreeze = if full {
                Self::take_cpu_partials(c)
            } else {
                None
            };
            Self::push_cpu_partial(c, pfn, page);
            to_unfreeze
        });
        self.platform.local_irq_restore(flags);
        if let Some(first) = r? {
            self.__unfreeze_partials(s, Some(first));
            self.stat(s, StatItem::CpuPartialDrain);
        }
        Ok(())
    }
}

/// A CPU freelist given back to its slab: its first and last objects (0 for none) and
/// its length, as [`Mm::walk_cpu_freelist`] measured it.
#[derive(Copy, Clone)]
struct CpuFreelist {
    head: u64,
    count: u16,
    tail: u64,
}

impl CpuFreelist {
    /// No freelist (a per-CPU partial slab's objects are all on its own freelist).
    const NONE: CpuFreelist = CpuFreelist {
        head: 0,
        count: 0,
        tail: 0,
    };
}

impl<P: Platform> Mm<P> {
    // ----- flushing and shrinking --------------------------------------------------

    /// `flush_cpu_slab()` for `cpu` (which must be the current CPU or idle).
    pub(crate) fn flush_cpu_slab(&self, s: &KmemCache, cpu: usize) {
        let flags = self.platform.local_irq_save();
        match self.cpu_slab(s, cpu) {
            Some(c) => {
                let slab = c.take_slab_pfn();
                let freelist = c.freelist.swap(0, Relaxed);
                c.tid.store(self.next_tid(c.tid.load(Relaxed)), Relaxed);
                if let Some(slab) = slab {
                    // flush_slab()
                    self.deactivate_slab(s, slab, freelist);
                    self.stat(s, StatItem::CpuslabFlush);
                }
                self.unfreeze_partials(s, c);
            }
            None => {
                self.slab_fault(
                    s.cpu_slab.load(Relaxed),
                    false,
                    crate::slab::Reason::CpuSlabCorrupted,
                );
            }
        }
        self.platform.local_irq_restore(flags);
    }

    /// `flush_all()`: every CPU flushes its slab and partial slabs (on that CPU, as the
    /// kernel's IPI-driven work does).
    pub(crate) fn flush_all(&self, s: &KmemCache) -> Result<(), SlabError> {
        for cpu in 0..self.platform.nr_cpus() {
            let Some(c) = self.cpu_slab(s, cpu) else {
                return Err(self.slab_fault(
                    s.cpu_slab.load(Relaxed),
                    false,
                    crate::slab::Reason::CpuSlabCorrupted,
                ));
            };
            if c.slab_pfn().is_none() && c.partial_pfn().is_none() && !self.pcs_used(s, cpu) {
                continue;
            }
            // flush_cpu_slab() of 6.18: the sheaves, then the CPU slab.
            self.platform.run_on_cpu(cpu, &mut || {
                self.pcs_flush_all(s);
                self.flush_cpu_slab(s, cpu)
            });
        }
        Ok(())
    }

    /// Free the node's empty partial slabs beyond `keep`; returns the pages freed.
    pub(crate) fn discard_empty_partials(&self, s: &KmemCache, keep: u64) -> u64 {
        let Ok(n) = self.get_node(s) else { return 0 };
        let mut freed = 0;
        loop {
            let guard = self.lock_node(n);
            if n.nr_partial.load(Relaxed) <= keep {
                break;
            }
            let empty = self.walk_node_list(s, n, &n.partial, |pfn| {
                (self.slab_counters(pfn).inuse == 0).then_some(pfn)
            });
            let Ok(Some(pfn)) = empty else { break };
            if !self.slab_list_del(s, n, &n.partial, pfn) {
                break;
            }
            n.nr_partial
                .store(n.nr_partial.load(Relaxed).saturating_sub(1), Relaxed);
            drop(guard);
            freed += 1
                << self
                    .mem_map
                    .page(pfn)
                    .order()
                    .min(crate::addr::MAX_PAGE_ORDER);
            self.discard_slab(s, pfn);
        }
        freed
    }

    /// The node's slabs and objects (`node_nr_slabs`, `node_nr_objs`); zero for a cache
    /// whose node pointer is corrupted (reported).
    pub fn node_counts(&self, s: &KmemCache) -> (u64, u64) {
        match self.get_node(s) {
            Ok(n) => (n.nr_slabs.load(Relaxed), n.total_objects.load(Relaxed)),
            Err(_) => (0, 0),
        }
    }

    /// Free objects on the node's partial slabs (`count_partial(n, count_free)`); what
    /// could be counted before a corruption (reported) stopped the walk.
    pub fn free_objects_on_node(&self, s: &KmemCache) -> u64 {
        self.count_free_on_node(s).unwrap_or(0)
    }

    /// [`Mm::free_objects_on_node`], failing on a corrupted node or partial list.
    pub(crate) fn count_free_on_node(&self, s: &KmemCache) -> Result<u64, SlabError> {
        let n = self.get_node(s)?;
        let _guard = self.lock_node(n);
        let mut free = 0u64;
        self.walk_node_list(s, n, &n.partial, |pfn| {
            let c = self.slab_counters(pfn);
            free += c.objects.saturating_sub(c.inuse) as u64;
            None::<()>
        })?;
        Ok(free)
    }
}
