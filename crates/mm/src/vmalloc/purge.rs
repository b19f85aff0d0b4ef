//! Lazy freeing (`mm/vmalloc.c`: `free_vmap_area_noflush`, `__purge_vmap_area_lazy`,
//! `drain_vmap_area_work`, `vm_unmap_aliases`) and deferred `vfree` (`vfree_atomic`,
//! `delayed_vfree_work`).
//!
//! A freed area's entries are cleared at once, but other CPUs may still hold its
//! translations in their TLBs, so its range is not reused yet: it waits on the purge
//! list (merged with its neighbours there) while `vmap_lazy_nr` counts its pages. When
//! that count passes `lazy_max_pages()` the drain work is scheduled; it flushes one range
//! covering every waiting area with a single `flush_tlb_kernel_range` and gives their
//! space back to the free tree. An allocation that finds no room purges first and retries.

use core::sync::atomic::Ordering::Relaxed;

use super::area::VmapTree;
use super::rbtree::Corrupt;
use super::{bug_sites, VmallocError};
use crate::addr::{VirtAddr, PAGE_SHIFT};
use crate::platform::Platform;
use crate::Mm;

impl<P: Platform> Mm<P> {
    /// `free_vmap_area_noflush()`: put `va` on the purge list and count its pages; past
    /// `lazy_max_pages()` schedule the drain work.
    pub(in crate::vmalloc) fn free_vmap_area_noflush(&self, va: u64) -> Result<(), Corrupt> {
        let nr = self.vmap_area(va)?.size() >> PAGE_SHIFT;
        let nr_lazy = self.vmalloc.lazy_nr.fetch_add(nr, Relaxed).wrapping_add(nr);
        {
            let mut purge = self.vmalloc.purge.lock();
            self.merge_or_add_vmap_area(&mut purge, va)?;
        }
        if nr_lazy > self.lazy_max_pages() {
            // schedule_work(&drain_vmap_work)
            self.vmalloc.drain_pending.store(true, Relaxed);
        }
        Ok(())
    }

    /// `purge_vmap_area_lazy()`: purge now, whatever is waiting.
    pub fn purge_vmap_area_lazy(&self) -> bool {
        let _serialised = self.vmalloc.purge_lock.lock();
        self.__purge_vmap_area_lazy(u64::MAX, 0)
    }

    /// `vm_unmap_aliases()`: make sure no lazily freed mapping survives in any TLB. (The
    /// kernel also flushes the dirty parts of vmap blocks, which kmemlab does not use.)
    pub fn vm_unmap_aliases(&self) {
        self.purge_vmap_area_lazy();
    }

    /// `__purge_vmap_area_lazy(start, end)`: take the whole purge list, flush one range
    /// covering it (and `[start, end)`), and merge every area back into the free tree.
    /// Returns whether anything was purged (false also when the purge list turned out to
    /// be corrupted: reported, and what was left of it is abandoned).
    fn __purge_vmap_area_lazy(&self, start: u64, end: u64) -> bool {
        let taken = {
            let mut purge = self.vmalloc.purge.lock();
            // list_replace_init() + an empty root: the areas keep their list links.
            core::mem::replace(&mut *purge, VmapTree::new(false, "purge_vmap_area_lock"))
        };
        if taken.first == 0 {
            return false;
        }
        self.purge_list(&taken, start, end).is_ok()
    }

    /// Flush one range covering the areas of `taken` (and `[start, end)`) and merge each
    /// back into the free tree, walking the list no further than it could reach.
    fn purge_list(&self, taken: &VmapTree, start: u64, end: u64) -> Result<(), Corrupt> {
        let start = start.min(self.vmap_area(taken.first)?.start());
        let end = end.max(self.vmap_area(taken.last)?.end());
        self.platform()
            .flush_tlb_kernel_range(VirtAddr(start), VirtAddr(end));
        let stats = &self.vmalloc.stats;
        stats.tlb_flushes.fetch_add(1, Relaxed);
        stats.purges.fetch_add(1, Relaxed);
        let mut free = self.vmalloc.free.lock();
        let mut left = taken.walk_limit();
        let mut va = taken.first;
        while va != 0 {
            self.list_step(&mut left, taken)?;
            let node = self.vmap_area(va)?;
            let next = node.list_next();
            let nr = node.size() >> PAGE_SHIFT;
            self.merge_or_add_vmap_area(&mut free, va)?;
            self.vmalloc.lazy_nr.fetch_sub(nr, Relaxed);
            stats.purged_areas.fetch_add(1, Relaxed);
            stats.purged_pages.fetch_add(nr, Relaxed);
            va = next;
        }
        Ok(())
    }

    /// `vfree_atomic(addr)`: queue the area on this CPU's deferred list (the list node is
    /// the area's own first word) for the work item to free in process context.
    pub(in crate::vmalloc) fn vfree_atomic(&self, addr: VirtAddr) -> Result<(), VmallocError> {
        if self.this_cpu().preempt_count.in_nmi() {
            self.vmalloc_bug(bug_sites::VFREE_ATOMIC);
            return Err(VmallocError::InNmi("vfree_atomic"));
        }
        if addr.0 == 0 {
            return Ok(());
        }
        // The kernel writes into the area without looking; an address that is not a live
        // mapping would be a wild write, so it is refused instead.
        if self.find_vm_area(addr).is_none_or(|a| a.addr != addr) {
            // kmemlab-only: 6.6 `vfree_atomic()` writes into the area without looking.
            const SITE: crate::report::KernelSite = crate::report::KernelSite {
                file: "mm/vmalloc.c",
                line: 0,
                func: "vfree_atomic",
            };
            crate::report::warn!(
                self,
                true,
                SITE,
                "Trying to vfree() nonexistent vm area ({addr})"
            );
            return Err(VmallocError::NoSuchArea(addr));
        }
        let head = &self.this_cpu().vfree_deferred;
        // llist_add()
        let mut old = head.load(Relaxed);
        loop {
            self.write_kernel_word(addr.0, old);
            match head.compare_exchange(old, addr.0, Relaxed, Relaxed) {
                Ok(_) => break,
                Err(now) => old = now,
            }
        }
        self.vmalloc.stats.deferred_frees.fetch_add(1, Relaxed);
        Ok(())
    }

    /// Whether a work item is waiting for this CPU's kworker (deferred vfrees, or the
    /// lazy-purge drain).
    pub fn work_pending(&self) -> bool {
        self.this_cpu().vfree_deferred.load(Relaxed) != 0
            || self.vmalloc.drain_pending.load(Relaxed)
    }

    /// Areas queued by `vfree` in interrupt context on `cpu`, not yet freed.
    pub fn deferred_vfrees(&self, cpu: usize) -> u64 {
        let limit = self.vmalloc.busy.lock().walk_limit();
        let mut n = 0;
        let mut node = self.per_cpu(cpu).vfree_deferred.load(Relaxed);
        while node != 0 && n < limit {
            n += 1;
            node = self.read_kernel_word(node).unwrap_or(0);
        }
        n
    }

    /// Run this CPU's pending work items in process context, as its kworker would:
    /// `delayed_vfree_work` (the deferred vfrees) and `drain_vmap_area_work`. The machine
    /// calls this when the CPU leaves kernel code. Returns how many items ran.
    pub fn run_work(&self) -> u64 {
        let mut ran = 0;
        // llist_del_all(), then free each in process context. Only live areas were
        // queued, so a list longer than the busy areas goes round a cycle: the kworker
        // would never finish (a soft lockup).
        let mut left = self.vmalloc.busy.lock().walk_limit();
        let mut node = self.this_cpu().vfree_deferred.swap(0, Relaxed);
        while node != 0 {
            if left == 0 {
                self.vmalloc_stuck("vfree_deferred (delayed_vfree_work)");
                break;
            }
            left -= 1;
            let next = self.read_kernel_word(node).unwrap_or(0);
            let _ = self.vfree(VirtAddr(node));
            node = next;
            ran += 1;
        }
        if self.vmalloc.drain_pending.swap(false, Relaxed) {
            // drain_vmap_area_work(): purge until below the threshold (each purge takes
            // the whole list, so a few rounds at most).
            for _ in 0..DRAIN_ROUNDS {
                let purged = self.purge_vmap_area_lazy();
                if !purged || self.vmap_lazy_nr() <= self.lazy_max_pages() {
                    break;
                }
            }
            ran += 1;
        }
        ran
    }
}

/// The most purges one drain work item runs.
const DRAIN_ROUNDS: u32 = 16;
