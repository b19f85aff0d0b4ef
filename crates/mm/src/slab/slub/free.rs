//! The free paths (`mm/slub.c` of Linux 6.6): `do_slab_free()`'s fast path onto this
//! CPU's freelist, else `__slab_free()`: a compare-exchange on the slab's (freelist,
//! counters), the slab moved between lists or discarded.

use crate::addr::{Pfn, VirtAddr};
use crate::mm_types::Page;
use crate::platform::Platform;
use crate::slab::cache::KmemCache;
use crate::slab::slub::SlabCounters;
use crate::slab::slub::SET_FREEPOINTER_BUG_LINE;
use crate::slab::stats::StatItem;
use crate::slab::SlabError;
use crate::Mm;
use core::sync::atomic::Ordering::Relaxed;

/// The first object of a free, as its checks found it: the slab it belongs to, the slab's
/// `struct page` and the object's index in it.
#[derive(Clone, Copy)]
pub(crate) struct FreeHead<'a> {
    /// The slab's first PFN.
    pub(crate) pfn: Pfn,
    /// The slab's `struct page`.
    pub(crate) page: &'a Page,
    /// The object's address.
    pub(crate) object: u64,
    /// The object's index in the slab.
    pub(crate) idx: u16,
}

impl<P: Platform> Mm<P> {
    /// `slab_free()`: the debug path, else the sheaves (if the cache has them), else
    /// [`Mm::do_slab_free`].
    pub(crate) fn slab_free(
        &self,
        s: &KmemCache,
        pfn: Pfn,
        object: u64,
        site: crate::slab::CallSite,
    ) -> Result<(), SlabError> {
        if s.is_debug() {
            return self.free_to_partial_list(s, pfn, object, site);
        }
        // slab_free() of 6.18: the sheaves first.
        if s.sheaf_capacity() != 0
            && self.free_to_pcs(s, object, self.platform.smp_processor_id())?
        {
            return Ok(());
        }
        self.do_slab_free(s, pfn, object, object, 1)
    }

    /// `do_slab_free(s, slab, head, tail, cnt)`: the `cnt` objects chained from `head` to
    /// `tail` (one object: `head == tail`, `cnt == 1`; a detached freelist from
    /// `kmem_cache_free_bulk`) onto the CPU freelist with one exchange if the slab is this
    /// CPU's, else `__slab_free`. `head` must be an object of the slab at `pfn`.
    #[inline(always)]
    pub(crate) fn do_slab_free(
        &self,
        s: &KmemCache,
        pfn: Pfn,
        head: u64,
        tail: u64,
        cnt: u16,
    ) -> Result<(), SlabError> {
        let page = self.mem_map.page(pfn);
        let idx = self
            .fl_idx_in(s, page, pfn, head)
            .ok_or(SlabError::NotSlabObject(
                VirtAddr(head),
                crate::slab::Reason::NotObjectStart,
            ))?;
        let head = FreeHead {
            pfn,
            page,
            object: head,
            idx,
        };
        self.do_slab_free_on(s, head, (tail, cnt), self.platform.smp_processor_id())
    }

    /// [`Mm::do_slab_free`] of the chain from `head` to `tail`, of `cnt` objects, on `cpu`,
    /// the current CPU (read once by the caller), with the slab's `struct page` and the
    /// head's index in hand (the caller's check of the object found both).
    #[inline(always)]
    pub(crate) fn do_slab_free_on(
        &self,
        s: &KmemCache,
        head: FreeHead<'_>,
        (tail, cnt): (u64, u16),
        cpu: usize,
    ) -> Result<(), SlabError> {
        let c = self.cpu_slab_or_fault(s, cpu)?;
        loop {
            let tid = c.tid.load(Relaxed);
            self.irq_window();
            if !c.is_cpu_slab(head.pfn) {
                return self.__slab_free(
                    s,
                    head.pfn,
                    head.page,
                    (head.object, head.idx),
                    (tail, cnt),
                );
            }
            let freelist = c.freelist.load(Relaxed);
            if freelist == tail || freelist == head.object {
                return Err(self.naive_double_free(s, tail));
            }
            self.set_freepointer(s, tail, freelist)?;
            self.irq_window();
            if Self::cpu_cmpxchg(c, freelist, tid, head.object, self.next_tid(tid)) {
                self.stat(s, StatItem::FreeFastpath);
                return Ok(());
            }
            crate::vmstat::VmEvents::add(&self.events().slab_cmpxchg_redo, 1);
            self.stat(s, StatItem::CmpxchgDoubleCpuFail);
        }
    }

    /// The cheap double-free signs: the object heads this CPU's freelist or its slab's, or
    /// its slab has nothing in use.
    pub(crate) fn looks_free(&self, s: &KmemCache, pfn: Pfn, object: u64) -> bool {
        let counters = self.slab_counters(pfn);
        let on_cpu = self
            .cpu_slab(s, self.platform.smp_processor_id())
            .is_some_and(|c| c.is_cpu_slab(pfn) && c.freelist.load(Relaxed) == object);
        on_cpu || self.fl_va(s, pfn, counters.freelist) == object || counters.inuse == 0
    }

    /// The hardened freelist's naive double-free check: `set_freepointer()`'s
    /// `BUG_ON(object == fp)` (`kernel BUG at mm/slub.c`, an oops that kills the caller),
    /// and the free refused.
    #[cold]
    #[inline(never)]
    pub(crate) fn naive_double_free(&self, s: &KmemCache, object: u64) -> SlabError {
        crate::vmstat::VmEvents::add(&self.events().bug_slab, 1);
        let _ = s;
        self.kernel_bug("mm/slub.c", SET_FREEPOINTER_BUG_LINE);
        SlabError::NotSlabObject(VirtAddr(object), crate::slab::Reason::DoubleFree)
    }

    /// `__slab_free(s, slab, head, tail, cnt)`: straight onto the slab's freelist with a
    /// compare-exchange; the node lock only when the slab changes lists (full → partial,
    /// partial → empty). The chain of `cnt` objects runs from `head` to `tail` (whose free
    /// pointer this sets): one object, or a detached freelist as `kmem_cache_free_bulk`
    /// gives it; `idx` is `head`'s index in the slab and `page` the slab's `struct page`,
    /// as the caller's checks found them (passed as scalars, in registers). Out of line:
    /// the fast path of `kfree` stays small.
    #[inline(never)]
    fn __slab_free(
        &self,
        s: &KmemCache,
        pfn: Pfn,
        page: &Page,
        (head, idx): (u64, u16),
        (tail, cnt): (u64, u16),
    ) -> Result<(), SlabError> {
        self.stat(s, StatItem::FreeSlowpath);
        loop {
            let raw = page.word();
            let old = self.check_slab_in(s, page, pfn, SlabCounters::unpack(raw))?;
            let prior = self.fl_va(s, pfn, old.freelist);
            if prior == tail || prior == head || old.inuse < cnt.max(1) {
                return Err(self.naive_double_free(s, head));
            }
            let mut new = SlabCounters {
                freelist: idx,
                inuse: old.inuse - cnt,
                ..old
            };
            // The node (its pointer read from RAM and checked) only when the slab changes
            // lists, as `__slab_free()` calls `get_node()` only there.
            let mut locked = None;
            if (new.inuse == 0 || prior == 0) && !old.frozen {
                if prior == 0 && s.cpu_partial_slabs() > 0 {
                    // A full slab becomes partial: it goes to this CPU's partial list.
                    new.frozen = true;
                } else {
                    let n = self.get_node(s)?;
                    locked = Some((n, self.lock_node(n)));
                }
            }
            self.set_freepointer(s, tail, prior)?;
            // An interrupt may come before the exchange, but not under the node lock
            // (`spin_lock_irqsave`).
            if locked.is_none() {
                self.irq_window();
            }
            if !self.cmpxchg_slab(s, page, raw, new) {
                continue;
            }
            let Some((n, g)) = locked else {
                if old.frozen {
                    self.stat(s, StatItem::FreeFrozen);
                } else if new.frozen {
                    self.put_cpu_partial(s, pfn, page)?;
                    self.stat(s, StatItem::CpuPartialFree);
                }
                return Ok(());
            };
            if new.inuse == 0 && n.nr_partial.load(Relaxed) >= s.min_partial() {
                if prior != 0 {
                    self.remove_partial(s, n, pfn)?;
                    self.stat(s, StatItem::FreeRemovePartial);
                }
                drop(g);
                self.stat(s, StatItem::FreeSlab);
                self.discard_slab(s, pfn);
                return Ok(());
            }
            if prior == 0 {
                // Full → partial (this cache keeps no per-CPU partial slabs).
                n.partial.push_back(&self.mem_map, pfn);
                n.nr_partial.fetch_add(1, Relaxed);
                self.stat(s, StatItem::FreeAddPartial);
            }
            return Ok(());
        }
    }
}
