//! The per-CPU sheaves' paths (`mm/slub.c` of Linux 6.18): `alloc_from_pcs()` and
//! `free_to_pcs()` under the `local_trylock`, and replacing a main sheaf that ran empty or
//! full (`__pcs_replace_empty_main()`, `__pcs_replace_full_main()`,
//! `__pcs_install_empty_sheaf()`).

use crate::gfp::Gfp;
use crate::platform::Platform;
use crate::slab::cache::KmemCache;
use crate::slab::sheaf::pcs_trylock;
use crate::slab::sheaf::NodeBarn;
use crate::slab::sheaf::PcsGuard;
use crate::slab::sheaf::ReplaceFull;
use crate::slab::sheaf::SheafView;
use crate::slab::sheaf::SlubPercpuSheaves;
use crate::slab::sheaf::HEADER_WORDS;
use crate::slab::sheaf::WORD_CACHE;
use crate::slab::sheaf::WORD_CAPACITY;
use crate::slab::sheaf::WORD_SIZE;
use crate::slab::stats::StatItem;
use crate::slab::SlabError;
use crate::Mm;
use core::sync::atomic::{AtomicU64, Ordering::Relaxed};

impl<P: Platform> Mm<P> {
    /// The sheaf at `va` as one checked view of RAM, its header naming `s` and `cap`
    /// (`s->sheaf_capacity`, read once by the caller) and its size no larger: the fast
    /// paths' [`Mm::sheaf`].
    #[inline(always)]
    pub(super) fn sheaf_view(&self, s: &KmemCache, cap: u32, va: u64) -> Option<SheafView> {
        let phys = self.layout().virt_to_phys(va)?;
        let words = self
            .ram
            .array::<AtomicU64>(phys, HEADER_WORDS + cap as u64)
            .ok()?;
        let mut view = SheafView { words, size: 0 };
        let size = view.word(WORD_SIZE);
        if view.word(WORD_CACHE) != s.self_va.load(Relaxed)
            || view.word(WORD_CAPACITY) != cap as u64
            || size > cap as u64
        {
            return None;
        }
        view.size = size as u32;
        Some(view)
    }

    /// This CPU's main sheaf, or the report of a corrupted one (dropped).
    #[inline(always)]
    pub(super) fn main_view(
        &self,
        s: &KmemCache,
        pcs: &SlubPercpuSheaves,
    ) -> Result<SheafView, SlabError> {
        let va = pcs.main.load(Relaxed);
        match self.sheaf_view(s, s.sheaf_capacity(), va) {
            Some(v) => Ok(v),
            None => {
                pcs.main.store(0, Relaxed);
                Err(self.sheaf_corrupt(va))
            }
        }
    }

    /// `alloc_from_pcs()`: an object from this CPU's main sheaf; `Ok(0)` sends the
    /// caller to the slab paths (lock held by the interrupted task, or no full sheaf to
    /// be had without blocking), as the kernel's `NULL` does (no object is at address 0).
    /// Out of line, so that the CPU-slab fast path it sits beside keeps its registers.
    ///
    /// The common case, a main sheaf that checks out, has objects and whose last object
    /// checks out, is done here: the `likely(pcs->main->size)` branch of 6.18's
    /// `alloc_from_pcs()`. Everything else (a corrupted sheaf or object, an empty main
    /// sheaf) is [`Mm::alloc_from_pcs_slow`], out of line, which looks at the same words
    /// again with the lock still held (no interrupt window in between), so it finds what
    /// this path found.
    #[inline(never)]
    pub(crate) fn alloc_from_pcs(
        &self,
        s: &KmemCache,
        gfp: Gfp,
        cpu: usize,
    ) -> Result<u64, SlabError> {
        let Some(pcs) = self.pcs(s, cpu) else {
            return Err(self.pcs_corrupt(s));
        };
        let Some((guard, main)) = self.pcs_lock_main(pcs) else {
            return Ok(0);
        };
        if let Some(mut main) = self.sheaf_view(s, s.sheaf_capacity(), main)
            && main.size != 0
        {
            let size = main.size - 1;
            let object = main.object(size);
            if self.sheaf_object_slab(s, object).is_some() {
                main.set_size(size);
                drop(guard);
                self.stat(s, StatItem::AllocPcs);
                return Ok(object);
            }
        }
        self.alloc_from_pcs_slow(s, pcs, guard, gfp)
    }

    /// The rest of 6.18's `alloc_from_pcs()` with the lock held, for what
    /// [`Mm::alloc_from_pcs`] did not finish: a corrupted main sheaf (reported, dropped),
    /// an empty one (`__pcs_replace_empty_main()`), a corrupted object (reported, the
    /// sheaf emptied).
    #[cold]
    #[inline(never)]
    fn alloc_from_pcs_slow<'a>(
        &self,
        s: &KmemCache,
        pcs: &'a SlubPercpuSheaves,
        guard: PcsGuard<'a>,
        gfp: Gfp,
    ) -> Result<u64, SlabError> {
        let mut guard = guard;
        let mut main = self.main_view(s, pcs)?;
        if main.size == 0 {
            let Some(g) = self.__pcs_replace_empty_main(s, pcs, guard, gfp)? else {
                return Ok(0);
            };
            guard = g;
            main = self.main_view(s, pcs)?;
            if main.size == 0 {
                return Err(self.sheaf_corrupt(pcs.main.swap(0, Relaxed)));
            }
        }
        let size = main.size - 1;
        let object = main.object(size);
        if self.sheaf_object_slab(s, object).is_none() {
            main.set_size(0);
            return Err(self.sheaf_object_corrupt(object));
        }
        main.set_size(size);
        drop(guard);
        self.stat(s, StatItem::AllocPcs);
        Ok(object)
    }

    /// `free_to_pcs()`: put `object` (already checked to be an object of `s`) on the main
    /// sheaf of `cpu`, the current CPU; `Ok(false)` sends the caller to the slab paths.
    /// Out of line, as [`Mm::alloc_from_pcs`].
    ///
    /// The common case, a main sheaf that checks out and has room, is done here (6.18's
    /// `free_to_pcs()` when `pcs->main->size != s->sheaf_capacity`); a corrupted or full
    /// main sheaf is [`Mm::free_to_pcs_slow`], out of line, which reads the same words
    /// again with the lock still held.
    #[inline(never)]
    pub(crate) fn free_to_pcs(
        &self,
        s: &KmemCache,
        object: u64,
        cpu: usize,
    ) -> Result<bool, SlabError> {
        let Some(pcs) = self.pcs(s, cpu) else {
            return Err(self.pcs_corrupt(s));
        };
        let Some((guard, main)) = self.pcs_lock_main(pcs) else {
            return Ok(false);
        };
        if let Some(mut main) = self.sheaf_view(s, s.sheaf_capacity(), main)
            && main.size != s.sheaf_capacity()
        {
            let size = main.size;
            main.set_object(size, object);
            main.set_size(size + 1);
            drop(guard);
            self.stat(s, StatItem::FreePcs);
            return Ok(true);
        }
        self.free_to_pcs_slow(s, object, pcs, guard)
    }

    /// The rest of 6.18's `free_to_pcs()` with the lock held, for what
    /// [`Mm::free_to_pcs`] did not finish: a corrupted main sheaf (reported, dropped) or a
    /// full one (`__pcs_replace_full_main()`).
    #[cold]
    #[inline(never)]
    fn free_to_pcs_slow<'a>(
        &self,
        s: &KmemCache,
        object: u64,
        pcs: &'a SlubPercpuSheaves,
        guard: PcsGuard<'a>,
    ) -> Result<bool, SlabError> {
        let mut guard = guard;
        let cap = s.sheaf_capacity();
        let mut main = self.main_view(s, pcs)?;
        if main.size == cap {
            let Some(g) = self.__pcs_replace_full_main(s, pcs, guard)? else {
                return Ok(false);
            };
            guard = g;
            main = self.main_view(s, pcs)?;
            if main.size == cap {
                return Err(self.sheaf_corrupt(pcs.main.swap(0, Relaxed)));
            }
        }
        let size = main.size;
        main.set_object(size, object);
        main.set_size(size + 1);
        drop(guard);
        self.stat(s, StatItem::FreePcs);
        Ok(true)
    }

    /// `local_trylock(&s->cpu_sheaves->lock)` on a fast path, with the interrupt windows
    /// before it and after it (the trylock leaves interrupts enabled): the guard and
    /// `pcs->main` as read under it, or `None` when the lock is held (counted) or this
    /// CPU's main sheaf was dropped after a reported corruption (it then runs without
    /// sheaves).
    #[inline(always)]
    pub(super) fn pcs_lock_main<'a>(
        &self,
        pcs: &'a SlubPercpuSheaves,
    ) -> Option<(PcsGuard<'a>, u64)> {
        self.irq_window();
        let Some(guard) = pcs_trylock(pcs) else {
            // Per CPU, a plain increment: only this CPU writes it (the fallback must not
            // cost a locked instruction on a shared counter).
            let n = pcs.trylock_fail.load(Relaxed);
            pcs.trylock_fail.store(n.wrapping_add(1), Relaxed);
            return None;
        };
        self.irq_window();
        let main = pcs.main.load(Relaxed);
        (main != 0).then_some((guard, main))
    }

    // ----- replacing the main sheaf ---------------------------------------------------

    /// The first two ways of replacing an empty main sheaf, with the lock held, shared by
    /// `__pcs_replace_empty_main()` and `alloc_from_pcs_bulk()` (6.18): swap in the spare
    /// if it has objects (`swap(pcs->main, pcs->spare)`), else exchange the empty main for
    /// a full sheaf of the barn (`barn_replace_empty_sheaf()`, `BARN_GET`). `false`
    /// (`BARN_GET_FAIL`) when neither had one.
    pub(super) fn pcs_swap_in_full(
        &self,
        s: &KmemCache,
        pcs: &SlubPercpuSheaves,
    ) -> Result<bool, SlabError> {
        let spare = pcs.spare.load(Relaxed);
        if spare != 0 {
            let Some(h) = self.sheaf_checked(s, spare) else {
                pcs.spare.store(0, Relaxed);
                return Err(self.sheaf_corrupt(spare));
            };
            if h.size() > 0 {
                pcs.spare.store(pcs.main.load(Relaxed), Relaxed);
                pcs.main.store(spare, Relaxed);
                return Ok(true);
            }
        }
        let barn = self.get_barn(s)?;
        let Some(full) = self.barn_replace_empty_sheaf(s, barn, pcs.main.load(Relaxed)) else {
            self.stat(s, StatItem::BarnGetFail);
            return Ok(false);
        };
        self.stat(s, StatItem::BarnGet);
        pcs.main.store(full, Relaxed);
        Ok(true)
    }

    /// `__pcs_replace_empty_main()`: called with the lock held and an empty main sheaf;
    /// returns the lock held and a main sheaf with objects, or `None` with the lock
    /// released (the caller falls back to the slab).
    fn __pcs_replace_empty_main<'a>(
        &self,
        s: &KmemCache,
        pcs: &'a SlubPercpuSheaves,
        guard: PcsGuard<'a>,
        gfp: Gfp,
    ) -> Result<Option<PcsGuard<'a>>, SlabError> {
        if self.pcs_swap_in_full(s, pcs)? {
            return Ok(Some(guard));
        }
        let barn = self.get_barn(s)?;
        let can_alloc = gfp.allows_blocking();
        let mut empty = 0;
        if can_alloc {
            // `empty = pcs->spare; pcs->spare = NULL;`: a plain load and store, as the
            // lock is held and only this CPU touches its sheaves.
            empty = pcs.spare.load(Relaxed);
            pcs.spare.store(0, Relaxed);
            if empty == 0 {
                empty = self.barn_get_empty_sheaf(s, barn).unwrap_or(0);
            }
        }
        drop(guard);
        if !can_alloc {
            return Ok(None);
        }
        // The lock is released: an interrupt may come and use the sheaves.
        self.irq_window();
        let full = if empty != 0 {
            if self.refill_sheaf(s, empty, gfp).is_ok() {
                empty
            } else {
                // "we must be very low on memory so don't bother with the barn"
                self.free_empty_sheaf(s, empty);
                0
            }
        } else {
            self.alloc_full_sheaf(s, gfp).unwrap_or(0)
        };
        if full == 0 {
            return Ok(None);
        }
        let Some(guard) = pcs_trylock(pcs) else {
            self.barn_put_full_sheaf(barn, s, full);
            return Ok(None);
        };
        // Whatever an interrupt did meanwhile: the barn takes what does not fit.
        let main = pcs.main.load(Relaxed);
        let main_size = self.sheaf(s, main).map(|h| h.size());
        if main_size == Some(0) {
            self.barn_put_empty_sheaf(barn, s, main);
            pcs.main.store(full, Relaxed);
            return Ok(Some(guard));
        }
        let spare = pcs.spare.load(Relaxed);
        if spare == 0 {
            pcs.spare.store(full, Relaxed);
            return Ok(Some(guard));
        }
        if self.sheaf(s, spare).map(|h| h.size()) == Some(0) {
            self.barn_put_empty_sheaf(barn, s, spare);
            pcs.spare.store(full, Relaxed);
            return Ok(Some(guard));
        }
        self.barn_put_full_sheaf(barn, s, full);
        self.stat(s, StatItem::BarnPut);
        Ok(Some(guard))
    }

    /// The exchanges for a full main sheaf with the lock held, shared by
    /// `__pcs_replace_full_main()` and `free_to_pcs_bulk()` (6.18): an empty barn sheaf
    /// when there is no spare (the main becoming the spare), the spare if it has room
    /// (`swap`), else the barn takes the full main for an empty one
    /// (`barn_replace_full_sheaf()`, `BARN_PUT`). On failure, what the caller falls back
    /// from; the failure's statistics are the caller's.
    pub(super) fn pcs_swap_in_empty(
        &self,
        s: &KmemCache,
        pcs: &SlubPercpuSheaves,
        barn: &NodeBarn,
    ) -> Result<FullMainSwap, SlabError> {
        let spare = pcs.spare.load(Relaxed);
        if spare == 0 {
            let Some(empty) = self.barn_get_empty_sheaf(s, barn) else {
                return Ok(FullMainSwap::NoEmpty);
            };
            pcs.spare.store(pcs.main.load(Relaxed), Relaxed);
            pcs.main.store(empty, Relaxed);
            return Ok(FullMainSwap::Done);
        }
        let Some(h) = self.sheaf_checked(s, spare) else {
            pcs.spare.store(0, Relaxed);
            return Err(self.sheaf_corrupt(spare));
        };
        if h.size() < s.sheaf_capacity() {
            pcs.spare.store(pcs.main.load(Relaxed), Relaxed);
            pcs.main.store(spare, Relaxed);
            return Ok(FullMainSwap::Done);
        }
        match self.barn_replace_full_sheaf(s, barn, pcs.main.load(Relaxed)) {
            Ok(empty) => {
                self.stat(s, StatItem::BarnPut);
                pcs.main.store(empty, Relaxed);
                Ok(FullMainSwap::Done)
            }
            Err(why) => Ok(FullMainSwap::SpareFull(why, spare)),
        }
    }

    /// `__pcs_replace_full_main()`: called with the lock held and a full main sheaf;
    /// returns the lock held and a main sheaf with room, or `None` with the lock released.
    fn __pcs_replace_full_main<'a>(
        &self,
        s: &KmemCache,
        pcs: &'a SlubPercpuSheaves,
        guard: PcsGuard<'a>,
    ) -> Result<Option<PcsGuard<'a>>, SlabError> {
        let cap = s.sheaf_capacity();
        let barn = self.get_barn(s)?;
        let mut guard = guard;
        // `goto restart` follows a flush of the main sheaf; bounded anyway.
        for _ in 0..4 {
            let mut put_fail = false;
            let mut flushed_spare = None;
            match self.pcs_swap_in_empty(s, pcs, barn)? {
                FullMainSwap::Done => return Ok(Some(guard)),
                FullMainSwap::NoEmpty => {}
                FullMainSwap::SpareFull(ReplaceFull::TooManyFull, spare) => {
                    // The spare exists and is full: it is flushed and becomes the empty
                    // sheaf.
                    self.stat(s, StatItem::BarnPutFail);
                    pcs.spare.store(0, Relaxed);
                    flushed_spare = Some(spare);
                }
                FullMainSwap::SpareFull(ReplaceFull::NoEmpty, _) => put_fail = true,
            }
            drop(guard);
            // The lock is released: an interrupt may come and use the sheaves.
            self.irq_window();
            let empty = match flushed_spare {
                Some(spare) => {
                    self.sheaf_flush_unused(s, spare);
                    Some(spare)
                }
                None => self.alloc_empty_sheaf(s, Gfp::GFP_NOWAIT),
            };
            let Some(empty) = empty else {
                if put_fail {
                    self.stat(s, StatItem::BarnPutFail);
                }
                if !self.sheaf_flush_main(s, pcs) {
                    return Ok(None);
                }
                let Some(g) = pcs_trylock(pcs) else {
                    return Ok(None);
                };
                guard = g;
                // Flushed, so empty now, unless an interrupt filled it again.
                let main = pcs.main.load(Relaxed);
                match self.sheaf(s, main) {
                    Some(h) if h.size() == cap => continue,
                    Some(_) => return Ok(Some(guard)),
                    None => {
                        pcs.main.store(0, Relaxed);
                        return Err(self.sheaf_corrupt(main));
                    }
                }
            };
            // got_empty:
            let Some(g) = pcs_trylock(pcs) else {
                self.barn_put_empty_sheaf(barn, s, empty);
                return Ok(None);
            };
            self.__pcs_install_empty_sheaf(s, pcs, barn, empty);
            return Ok(Some(g));
        }
        drop(guard);
        Ok(None)
    }

    /// `__pcs_install_empty_sheaf()`: with the lock held again, `empty` becomes the main
    /// sheaf, whatever an interrupt did while the lock was released.
    fn __pcs_install_empty_sheaf(
        &self,
        s: &KmemCache,
        pcs: &SlubPercpuSheaves,
        barn: &NodeBarn,
        empty: u64,
    ) {
        let cap = s.sheaf_capacity();
        let main = pcs.main.load(Relaxed);
        let spare = pcs.spare.load(Relaxed);
        let size_of = |va| self.sheaf(s, va).map_or(cap, |h| h.size());
        if spare == 0 {
            pcs.spare.store(main, Relaxed);
            pcs.main.store(empty, Relaxed);
        } else if size_of(main) < cap {
            self.barn_put_empty_sheaf(barn, s, empty);
        } else if size_of(spare) < cap {
            pcs.main.store(spare, Relaxed);
            pcs.spare.store(main, Relaxed);
            self.barn_put_empty_sheaf(barn, s, empty);
        } else {
            self.barn_put_full_sheaf(barn, s, main);
            self.stat(s, StatItem::BarnPut);
            pcs.main.store(empty, Relaxed);
        }
    }
}

/// What [`Mm::pcs_swap_in_empty`] did with a full main sheaf.
pub(super) enum FullMainSwap {
    /// The main sheaf has room now.
    Done,
    /// No spare, and the barn had no empty sheaf.
    NoEmpty,
    /// The spare (this one) is full too, and the barn refused the exchange for this reason.
    SpareFull(ReplaceFull, u64),
}
