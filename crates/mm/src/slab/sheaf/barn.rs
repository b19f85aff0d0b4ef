//! The per-node barn of full and empty sheaves (`struct node_barn`, `mm/slub.c` of
//! Linux 6.18): `get_barn()`, the `barn->lock` helpers, `barn_get_empty_sheaf()`,
//! `barn_put_*_sheaf()`, `barn_replace_*_sheaf()` and `barn_shrink()`.

use crate::platform::Platform;
use crate::slab::cache::KmemCache;
use crate::slab::sheaf::BarnList;
use crate::slab::sheaf::NodeBarn;
use crate::slab::sheaf::ReplaceFull;
use crate::slab::sheaf::MAX_FULL_SHEAVES;
use crate::slab::SlabError;
use crate::Mm;
use core::sync::atomic::{AtomicU32, AtomicU64, Ordering::Relaxed};

impl<P: Platform> Mm<P> {
    /// The node's barn (`get_barn()`): a kmalloc'd `node_barn` named by the node.
    pub(super) fn get_barn(&self, s: &KmemCache) -> Result<&NodeBarn, SlabError> {
        let n = self.get_node(s)?;
        let va = n.barn.load(Relaxed);
        match self.kview::<NodeBarn>(va) {
            Ok(b) if self.is_kmalloc_object(va, core::mem::size_of::<NodeBarn>() as u64) => Ok(b),
            _ => Err(self.slab_fault(va, false, crate::slab::Reason::BarnCorrupted)),
        }
    }

    fn barn_lock(&self, barn: &NodeBarn) -> crate::IrqFlags {
        let flags = self.platform.local_irq_save();
        self.spin_lock(&barn.lock, "barn->lock");
        flags
    }

    fn barn_unlock(&self, barn: &NodeBarn, flags: crate::IrqFlags) {
        barn.lock.unlock();
        self.platform.local_irq_restore(flags);
    }

    pub(super) fn barn_list(barn: &NodeBarn, which: BarnList) -> (&AtomicU64, &AtomicU32) {
        match which {
            BarnList::Full => (&barn.sheaves_full, &barn.nr_full),
            BarnList::Empty => (&barn.sheaves_empty, &barn.nr_empty),
        }
    }

    /// `list_first_entry()` + `list_del()`, with the barn locked: the first sheaf, its
    /// link checked. A corrupted list is reported and emptied (its sheaves leak).
    fn barn_pop(&self, s: &KmemCache, barn: &NodeBarn, which: BarnList) -> Option<u64> {
        let (head, nr) = Self::barn_list(barn, which);
        let va = head.load(Relaxed);
        if va == 0 {
            return None;
        }
        let Some(h) = self.sheaf_checked(s, va) else {
            head.store(0, Relaxed);
            nr.store(0, Relaxed);
            self.sheaf_corrupt(va);
            return None;
        };
        head.store(h.barn_next.load(Relaxed), Relaxed);
        h.barn_next.store(0, Relaxed);
        nr.store(nr.load(Relaxed).saturating_sub(1), Relaxed);
        Some(va)
    }

    /// `list_add()`, with the barn locked.
    fn barn_push(&self, s: &KmemCache, barn: &NodeBarn, which: BarnList, va: u64) {
        let (head, nr) = Self::barn_list(barn, which);
        if let Some(h) = self.sheaf(s, va) {
            h.barn_next.store(head.load(Relaxed), Relaxed);
            head.store(va, Relaxed);
            nr.store(nr.load(Relaxed).saturating_add(1), Relaxed);
        }
    }

    /// `barn_get_empty_sheaf()`.
    pub(super) fn barn_get_empty_sheaf(&self, s: &KmemCache, barn: &NodeBarn) -> Option<u64> {
        let flags = self.barn_lock(barn);
        let empty = self.barn_pop(s, barn, BarnList::Empty);
        self.barn_unlock(barn, flags);
        empty
    }

    /// `barn_put_empty_sheaf()` (no limit: used to undo).
    pub(super) fn barn_put_empty_sheaf(&self, barn: &NodeBarn, s: &KmemCache, va: u64) {
        let flags = self.barn_lock(barn);
        self.barn_push(s, barn, BarnList::Empty, va);
        self.barn_unlock(barn, flags);
    }

    /// `barn_put_full_sheaf()` (no limit: used to undo).
    pub(super) fn barn_put_full_sheaf(&self, barn: &NodeBarn, s: &KmemCache, va: u64) {
        let flags = self.barn_lock(barn);
        self.barn_push(s, barn, BarnList::Full, va);
        self.barn_unlock(barn, flags);
    }

    /// `barn_replace_empty_sheaf()`: a full sheaf for the empty one, if there is one.
    pub(super) fn barn_replace_empty_sheaf(
        &self,
        s: &KmemCache,
        barn: &NodeBarn,
        empty: u64,
    ) -> Option<u64> {
        let flags = self.barn_lock(barn);
        let full = self.barn_pop(s, barn, BarnList::Full);
        if full.is_some() {
            self.barn_push(s, barn, BarnList::Empty, empty);
        }
        self.barn_unlock(barn, flags);
        full
    }

    /// `barn_replace_full_sheaf()`: an empty sheaf for the full one, unless the barn has
    /// `MAX_FULL_SHEAVES` full ones already (`-E2BIG`) or no empty one (`-ENOMEM`).
    pub(super) fn barn_replace_full_sheaf(
        &self,
        s: &KmemCache,
        barn: &NodeBarn,
        full: u64,
    ) -> Result<u64, ReplaceFull> {
        let flags = self.barn_lock(barn);
        let r = if barn.nr_full.load(Relaxed) >= MAX_FULL_SHEAVES {
            Err(ReplaceFull::TooManyFull)
        } else {
            match self.barn_pop(s, barn, BarnList::Empty) {
                Some(empty) => {
                    self.barn_push(s, barn, BarnList::Full, full);
                    Ok(empty)
                }
                None => Err(ReplaceFull::NoEmpty),
            }
        };
        self.barn_unlock(barn, flags);
        r
    }

    /// `barn_shrink()`: every sheaf of the barn flushed and freed (from
    /// `kmem_cache_shrink()` and `kmem_cache_destroy()`).
    pub(crate) fn barn_shrink(&self, s: &KmemCache) {
        if s.sheaf_capacity() == 0 {
            return;
        }
        let Ok(barn) = self.get_barn(s) else { return };
        // Taken off the barn one at a time (the kernel splices both lists off at once);
        // at most as many as the machine has pages.
        for which in [BarnList::Full, BarnList::Empty] {
            for _ in 0..self.mem_map.len {
                let flags = self.barn_lock(barn);
                let sheaf = self.barn_pop(s, barn, which);
                self.barn_unlock(barn, flags);
                let Some(va) = sheaf else { break };
                self.sheaf_flush_unused(s, va);
                self.free_empty_sheaf(s, va);
            }
        }
    }
}
