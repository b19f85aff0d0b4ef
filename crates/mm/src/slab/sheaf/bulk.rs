//! The bulk interface over the per-CPU sheaves (`mm/slub.c` of Linux 6.18):
//! `alloc_from_pcs_bulk()`, which `kmem_cache_alloc_bulk_noprof()` tries before
//! `__kmem_cache_alloc_bulk()`, and `free_to_pcs_bulk()`, which `kmem_cache_free_bulk()`
//! takes for a cache with sheaves (never for `kfree_bulk()`, whose cache is NULL).
//!
//! Both move objects between the caller's array and the main sheaf a batch at a time
//! under the `local_trylock` (the kernel's `memcpy()`: the array gets the top `batch`
//! slots of the sheaf in slot order, and a free appends the array in array order). When
//! the main sheaf runs empty (full), the spare is swapped in or the barn exchanges it;
//! when neither can, the rest goes to the slabs: `__kmem_cache_alloc_bulk()`, or
//! `__kmem_cache_free_bulk()` ("once full sheaves in barn are depleted, let the bulk
//! allocation continue from slab pages, otherwise we would just be copying arrays of
//! pointers twice"). Unlike the single paths, neither refills nor allocates sheaves.
//!
//! kmemlab has one memory node, so 6.18's `remote_objects[]` batch of
//! `free_to_pcs_bulk()` (objects of another node's slabs bypass the sheaves) is always
//! empty and not modelled.
//!
//! As on the single paths, every sheaf pointer and every object read from a sheaf is
//! checked before use; a failed check is the fault's report, the sheaf is dropped, and
//! the call fails (allocation) or frees the rest to the slabs (free).

use crate::platform::Platform;
use crate::slab::cache::KmemCache;
use crate::slab::sheaf::pcs::FullMainSwap;
use crate::slab::sheaf::SheafView;
use crate::slab::sheaf::SlubPercpuSheaves;
use crate::slab::stats::StatItem;
use crate::slab::SlabError;
use crate::{Mm, VirtAddr};
use core::sync::atomic::Ordering::Relaxed;

/// What `alloc_from_pcs_bulk()` leaves its caller: the objects it put at the front of the
/// array, and the error that stopped it, if one did.
pub(crate) struct PcsBulk {
    /// Objects handed out, in `p[..allocated]`.
    pub(crate) allocated: usize,
    /// A corruption found (reported) on the way; `p[..allocated]` must be freed.
    pub(crate) error: Option<SlabError>,
}

impl<P: Platform> Mm<P> {
    /// `alloc_from_pcs_bulk()`: fill `p` from this CPU's main sheaf, swapping in the
    /// spare when the main is empty, else exchanging the empty main for a full sheaf of
    /// the barn (`BARN_GET`); stops at the first of them that has nothing
    /// (`BARN_GET_FAIL`) or when the lock is held by the interrupted task.
    pub(crate) fn alloc_from_pcs_bulk(
        &self,
        s: &KmemCache,
        p: &mut [VirtAddr],
        cpu: usize,
    ) -> PcsBulk {
        let mut out = PcsBulk {
            allocated: 0,
            error: None,
        };
        let Some(pcs) = self.pcs(s, cpu) else {
            out.error = Some(self.pcs_corrupt(s));
            return out;
        };
        // `goto next_batch`: every round hands out at least one object or returns.
        for _ in 0..=p.len() {
            if out.allocated == p.len() {
                break;
            }
            match self.alloc_pcs_batch(s, pcs, &mut p[out.allocated..]) {
                Ok(0) => break,
                Ok(batch) => out.allocated += batch,
                Err((batch, e)) => {
                    out.allocated += batch;
                    out.error = Some(e);
                    break;
                }
            }
        }
        out
    }

    /// One round of `alloc_from_pcs_bulk()` under the lock: how many objects went to the
    /// front of `p` (0: nothing to be had here), or how many before a corruption.
    fn alloc_pcs_batch(
        &self,
        s: &KmemCache,
        pcs: &SlubPercpuSheaves,
        p: &mut [VirtAddr],
    ) -> Result<usize, (usize, SlabError)> {
        let Some((guard, _)) = self.pcs_lock_main(pcs) else {
            return Ok(0);
        };
        let mut main = self.main_view(s, pcs).map_err(|e| (0, e))?;
        if main.size == 0 {
            match self.pcs_bulk_swap_in_full(s, pcs).map_err(|e| (0, e))? {
                Some(full) => main = full,
                None => return Ok(0),
            }
        }
        // do_alloc: batch = min(size, main->size); the top `batch` slots, in slot order.
        let batch = (main.size as usize).min(p.len()) as u32;
        let base = main.size - batch;
        for i in 0..batch {
            let object = main.object(base + i);
            if self.sheaf_object_slab(s, object).is_none() {
                // The sheaf is dropped (its other objects leak), as alloc_from_pcs() does.
                main.set_size(0);
                return Err((i as usize, self.sheaf_object_corrupt(object)));
            }
            p[i as usize] = VirtAddr(object);
        }
        main.set_size(base);
        drop(guard);
        self.stat_add(s, StatItem::AllocPcs, batch as u64);
        Ok(batch as usize)
    }

    /// `alloc_from_pcs_bulk()`'s empty main sheaf, with the lock held: the spare if it
    /// has objects (`swap(pcs->main, pcs->spare)`), else a full sheaf of the barn for the
    /// empty main (`barn_replace_empty_sheaf()`, `BARN_GET`), else `None`
    /// (`BARN_GET_FAIL`; the lock is released by the caller).
    fn pcs_bulk_swap_in_full(
        &self,
        s: &KmemCache,
        pcs: &SlubPercpuSheaves,
    ) -> Result<Option<SheafView>, SlabError> {
        if !self.pcs_swap_in_full(s, pcs)? {
            return Ok(None);
        }
        let main = self.main_view(s, pcs)?;
        if main.size == 0 {
            // A "full" sheaf with nothing in it: the barn list was corrupted.
            return Err(self.sheaf_corrupt(pcs.main.swap(0, Relaxed)));
        }
        Ok(Some(main))
    }

    /// `free_to_pcs_bulk()` after its `slab_free_hook()` loop: `objects` (checked objects
    /// of `s`, already wiped for `init_on_free`) appended to this CPU's main sheaf a batch
    /// at a time; a full main is exchanged for an empty barn sheaf (no spare), swapped
    /// with a spare that has room, or given to the barn for an empty one (`BARN_PUT`;
    /// `BARN_PUT_FAIL` when the barn has `MAX_FULL_SHEAVES` or no empty one). What cannot
    /// be placed goes to the slabs (`__kmem_cache_free_bulk()`); the error is a
    /// corruption found (and reported) on the way.
    pub(crate) fn free_to_pcs_bulk(
        &self,
        s: &KmemCache,
        objects: &mut [VirtAddr],
    ) -> Result<(), SlabError> {
        let Some(pcs) = self.pcs(s, self.platform.smp_processor_id()) else {
            let e = self.pcs_corrupt(s);
            self.__kmem_cache_free_bulk(s, objects)?;
            return Err(e);
        };
        let mut placed = 0;
        let mut result = Ok(());
        // `goto next_batch`: every round places at least one object or stops.
        for _ in 0..=objects.len() {
            if placed == objects.len() {
                return Ok(());
            }
            match self.free_pcs_batch(s, pcs, &objects[placed..]) {
                Ok(0) => break,
                Ok(batch) => placed += batch,
                Err(e) => {
                    result = Err(e);
                    break;
                }
            }
        }
        // fallback: __kmem_cache_free_bulk(s, size, p).
        let freed = self.__kmem_cache_free_bulk(s, &mut objects[placed..]);
        result.and(freed)
    }

    /// One round of `free_to_pcs_bulk()` under the lock: how many of `objects` went onto
    /// the main sheaf (0: no room to be had, the rest goes to the slabs).
    fn free_pcs_batch(
        &self,
        s: &KmemCache,
        pcs: &SlubPercpuSheaves,
        objects: &[VirtAddr],
    ) -> Result<usize, SlabError> {
        let Some((guard, _)) = self.pcs_lock_main(pcs) else {
            return Ok(0);
        };
        let cap = s.sheaf_capacity();
        let mut main = self.main_view(s, pcs)?;
        if main.size >= cap {
            match self.pcs_bulk_swap_in_empty(s, pcs)? {
                Some(empty) => main = empty,
                // no_empty: local_unlock(), then the fallback.
                None => return Ok(0),
            }
        }
        // do_free: batch = min(size, s->sheaf_capacity - main->size), appended in order.
        let batch = ((cap - main.size) as usize).min(objects.len()) as u32;
        let base = main.size;
        for (i, object) in objects[..batch as usize].iter().enumerate() {
            main.set_object(base + i as u32, object.0);
        }
        main.set_size(base + batch);
        drop(guard);
        self.stat_add(s, StatItem::FreePcs, batch as u64);
        Ok(batch as usize)
    }

    /// `free_to_pcs_bulk()`'s full main sheaf, with the lock held: an empty barn sheaf
    /// when there is no spare (`barn_get_empty_sheaf()`, the main becoming the spare), the
    /// spare if it has room (`swap`), else the barn takes the full main for an empty one
    /// (`barn_replace_full_sheaf()`: `BARN_PUT`, or `BARN_PUT_FAIL` and `None`).
    fn pcs_bulk_swap_in_empty(
        &self,
        s: &KmemCache,
        pcs: &SlubPercpuSheaves,
    ) -> Result<Option<SheafView>, SlabError> {
        let barn = self.get_barn(s)?;
        match self.pcs_swap_in_empty(s, pcs, barn)? {
            FullMainSwap::Done => {}
            FullMainSwap::NoEmpty => return Ok(None),
            FullMainSwap::SpareFull(..) => {
                self.stat(s, StatItem::BarnPutFail);
                return Ok(None);
            }
        }
        let main = self.main_view(s, pcs)?;
        if main.size >= s.sheaf_capacity() {
            // An "empty" sheaf with no room: the barn list was corrupted.
            return Err(self.sheaf_corrupt(pcs.main.swap(0, Relaxed)));
        }
        Ok(Some(main))
    }
}
