//! Slabs: `allocate_slab()` / `new_slab()` with the freelist threaded through the
//! objects (randomised, hardened pointers), accounting, `discard_slab()`, and taking a slab's
//! freelist (`get_freelist()`, `acquire_slab()`) (`mm/slub.c` of Linux 6.6).

use crate::addr::Pfn;
use crate::gfp::Gfp;
use crate::mm_types::{Page, PG_SLAB};
use crate::platform::Platform;
use crate::slab::cache::{Ctor, KmemCache, KmemCacheNode, MAX_CTOR_OBJECT, MAX_OBJS_PER_PAGE};
use crate::slab::slub::SlabCounters;
use crate::slab::slub::NO_OBJECT;
use crate::slab::stats::StatItem;
use crate::slab::SlabError;
use crate::Mm;
use core::sync::atomic::Ordering::Relaxed;

/// Words of the small bitmap of [`Mm::random_seq_ok`]: 1024 objects, more than an
/// order-0 slab of the smallest (8-byte) objects holds.
const SMALL_SEQ_WORDS: usize = 16;

impl<P: Platform> Mm<P> {
    /// `allocate_slab()`: pages from the page allocator (the preferred order without
    /// retrying, then the minimum order), made into a slab with its freelist threaded
    /// through the objects, in random order with `CONFIG_SLAB_FREELIST_RANDOM`.
    pub(crate) fn new_slab(&self, s: &KmemCache, gfp: Gfp) -> Result<Pfn, SlabError> {
        self.check_geometry(s)?;
        let ctor = self.cache_ctor(s)?;
        let gfp = self.kmalloc_fix_flags(gfp);
        let flags = (gfp & !(Gfp::__GFP_ZERO | Gfp::__GFP_COMP)) | s.allocflags();
        let mut oo = s.oo();
        // allocate_slab(): the preferred order is tried without retrying and, when the
        // minimum order is smaller, without direct reclaim.
        let mut preferred = (flags | Gfp::__GFP_NOWARN | Gfp::__GFP_NORETRY) & !Gfp::__GFP_NOFAIL;
        if preferred.contains(Gfp::__GFP_DIRECT_RECLAIM) && oo.order > s.min().order {
            preferred = (preferred | Gfp::__GFP_NOMEMALLOC) & !Gfp::__GFP_RECLAIM;
        }
        let page = match self.alloc_pages(preferred, oo.order) {
            Ok(p) => p,
            Err(_) => {
                oo = s.min();
                let flags = if oo.order > 0 {
                    flags | Gfp::__GFP_COMP
                } else {
                    flags & !Gfp::__GFP_COMP
                };
                let page = self.alloc_pages(flags, oo.order)?;
                self.stat(s, StatItem::OrderFallback);
                page
            }
        };
        let pfn = self.page_to_pfn(page);
        page.set(PG_SLAB);
        page.set_slab_cache(s.self_va.load(Relaxed));
        // The geometry was checked above, so the order holds at least one object.
        let objects = Self::order_objects(s, oo.order).unwrap_or(0);
        self.account_slab(s, 1u64 << oo.order, true);
        self.setup_slab_debug(s, pfn, oo.order);
        self.setup_objects(s, pfn, objects, ctor);
        let mut prev = None;
        let mut first = NO_OBJECT;
        for idx in self.freelist_order(s, objects) {
            match prev {
                None => first = idx,
                Some(p) => {
                    self.set_freepointer(s, self.object_at(s, pfn, p), self.object_at(s, pfn, idx))?
                }
            }
            prev = Some(idx);
        }
        if let Some(last) = prev {
            self.set_freepointer(s, self.object_at(s, pfn, last), 0)?;
        }
        page.set_word(
            SlabCounters {
                freelist: first,
                inuse: 0,
                objects,
                frozen: false,
            }
            .pack(),
        );
        Ok(pfn)
    }

    /// The order in which a new slab's objects are chained: linear, or (random freelist)
    /// the cache's random sequence from a random start (`shuffle_freelist`). The sequence
    /// lives in a kmalloc'd array in RAM: one that is no longer a permutation of the
    /// slab's objects is reported and dropped, and the slab is chained in order.
    fn freelist_order(
        &self,
        s: &KmemCache,
        objects: u16,
    ) -> impl Iterator<Item = u16> + '_ + use<'_, P> {
        let seq = s.random_seq.load(Relaxed);
        let mut count = if seq != 0 && objects as u32 == s.oo().objects {
            objects
        } else {
            0
        };
        if count > 0 && !self.random_seq_ok(s, seq, count) {
            count = 0;
        }
        let start = if count > 1 {
            (self.get_random_u64() % count as u64) as u16
        } else {
            0
        };
        (0..objects).map(move |i| {
            if count == 0 {
                i
            } else {
                let pos = (start as u64 + i as u64) % count as u64;
                self.kread::<u64>(seq + pos * 8).unwrap_or(i as u64) as u16
            }
        })
    }

    /// Is the random sequence at `seq` a permutation of `0..count`? The bitmap of the
    /// indices seen is on the stack, as small as `count` allows: zeroing the largest
    /// (4 KiB, for `MAX_OBJS_PER_PAGE`) on every new slab cost more than the walk.
    fn random_seq_ok(&self, s: &KmemCache, seq: u64, count: u16) -> bool {
        if count as usize <= SMALL_SEQ_WORDS * 64 {
            self.random_seq_ok_in::<SMALL_SEQ_WORDS>(s, seq, count)
        } else {
            self.random_seq_ok_in::<{ (MAX_OBJS_PER_PAGE as usize).div_ceil(64) }>(s, seq, count)
        }
    }

    /// [`Mm::random_seq_ok`] with a bitmap of `WORDS` words (at least `count` bits).
    fn random_seq_ok_in<const WORDS: usize>(&self, s: &KmemCache, seq: u64, count: u16) -> bool {
        let mut seen = [0u64; WORDS];
        for pos in 0..count as u64 {
            let idx = match self.kread::<u64>(seq.wrapping_add(pos * 8)) {
                Ok(v) if v < count as u64 => v as usize,
                _ => return self.random_seq_corrupt(s, seq),
            };
            if seen[idx / 64] & (1 << (idx % 64)) != 0 {
                return self.random_seq_corrupt(s, seq);
            }
            seen[idx / 64] |= 1 << (idx % 64);
        }
        true
    }

    #[cold]
    #[inline(never)]
    fn random_seq_corrupt(&self, s: &KmemCache, seq: u64) -> bool {
        self.slab_bug(
            s,
            format_args!("random_seq at {seq:#x} is not a permutation of the slab's objects"),
        );
        self.slab_fix(s, format_args!("Freelist randomization dropped"));
        s.random_seq.store(0, Relaxed);
        false
    }

    /// `init_cache_random_seq()`: a random permutation of a slab's object indices
    /// (`freelist_randomize`, Fisher-Yates), kmalloc'd as the kernel does.
    pub(crate) fn init_cache_random_seq(&self, s: &KmemCache) {
        let count = s.oo().objects as u64;
        if count < 2 || count > MAX_OBJS_PER_PAGE as u64 {
            return;
        }
        let Ok(seq) = self.kmalloc_array(count as usize, 8, Gfp::GFP_KERNEL) else {
            return;
        };
        let shuffled = (|| -> Result<(), SlabError> {
            for i in 0..count {
                self.store_word(seq.0 + i * 8, i)?;
            }
            for i in (1..count).rev() {
                let j = self.get_random_u64() % (i + 1);
                let (a, b) = (
                    self.load_word(seq.0 + i * 8)?,
                    self.load_word(seq.0 + j * 8)?,
                );
                self.store_word(seq.0 + i * 8, b)?;
                self.store_word(seq.0 + j * 8, a)?;
            }
            Ok(())
        })();
        if shuffled.is_ok() {
            s.random_seq.store(seq.0, Relaxed);
        } else {
            let _ = self.kfree(seq);
        }
    }

    /// `setup_object()` on each object of a new slab: debug initialisation, then the
    /// constructor, which runs on a copy of the object in the host (it is host code: it
    /// never sees simulated RAM directly).
    fn setup_objects(&self, s: &KmemCache, pfn: Pfn, objects: u16, ctor: Option<Ctor>) {
        let Some(ctor) = ctor else {
            for idx in 0..objects {
                self.setup_object_debug(s, self.object_at(s, pfn, idx));
            }
            return;
        };
        let mut buf = [0u8; MAX_CTOR_OBJECT];
        let bytes = &mut buf[..(s.object_size() as usize).min(MAX_CTOR_OBJECT)];
        for idx in 0..objects {
            let object = self.object_at(s, pfn, idx);
            self.setup_object_debug(s, object);
            if self.kread_bytes(object, bytes).is_ok() {
                ctor(bytes);
                let _ = self.kwrite_bytes(object, bytes);
            }
        }
    }

    /// NR_SLAB_RECLAIMABLE_B / NR_SLAB_UNRECLAIMABLE_B, in pages.
    pub(crate) fn account_slab(&self, s: &KmemCache, pages: u64, add: bool) {
        let counter = if s.flags().contains(crate::slab::SlabFlags::RECLAIM_ACCOUNT) {
            &self.slab.pages.reclaimable
        } else {
            &self.slab.pages.unreclaimable
        };
        if add {
            counter.fetch_add(pages, Relaxed);
        } else {
            counter.fetch_sub(pages, Relaxed);
        }
    }

    /// `inc_slabs_node()`.
    pub(crate) fn inc_slabs_node(&self, s: &KmemCache, pfn: Pfn) -> Result<(), SlabError> {
        let n = self.get_node(s)?;
        n.nr_slabs.fetch_add(1, Relaxed);
        n.total_objects
            .fetch_add(self.slab_counters(pfn).objects as u64, Relaxed);
        Ok(())
    }

    /// `discard_slab()`: give the slab's pages back.
    pub(crate) fn discard_slab(&self, s: &KmemCache, pfn: Pfn) {
        let page = self.mem_map.page(pfn);
        let objects = SlabCounters::unpack(page.word()).objects as u64;
        let order = page.order().min(crate::addr::MAX_PAGE_ORDER);
        if let Some(n) = self.get_node_quiet(s) {
            // `dec_slabs_node()`: atomic, as `inc_slabs_node()` on another CPU runs
            // without `list_lock` (a load and a store here lost its increments).
            let dec = |c: &core::sync::atomic::AtomicU64, by: u64| {
                let _ = c.fetch_update(Relaxed, Relaxed, |v| Some(v.saturating_sub(by)));
            };
            dec(&n.nr_slabs, 1);
            dec(&n.total_objects, objects);
        }
        self.account_slab(s, 1 << order, false);
        // init_on_free: the page allocator's free_pages_prepare() wipes the pages.
        page.set_flags(page.flags() & !PG_SLAB);
        page.set_slab_cache(0);
        page.set_word(0);
        // A refusal is the page allocator's `Bad page state` report (already printed).
        let _ = self.__free_pages(page, order);
    }

    /// `get_freelist()`: take the whole freelist of the slab at `pfn` (its `struct page`
    /// is `page`) for this CPU; the slab stays frozen only if there was one.
    pub(super) fn get_freelist(
        &self,
        s: &KmemCache,
        pfn: Pfn,
        page: &Page,
    ) -> Result<u64, SlabError> {
        loop {
            let raw = page.word();
            let old = self.check_slab_in(s, page, pfn, SlabCounters::unpack(raw))?;
            let new = SlabCounters {
                freelist: NO_OBJECT,
                inuse: old.objects,
                frozen: old.freelist != NO_OBJECT,
                ..old
            };
            if self.cmpxchg_slab(s, page, raw, new) {
                return Ok(self.fl_va(s, pfn, old.freelist));
            }
        }
    }

    /// `acquire_slab()` for a slab taken off the node list: frozen, and with `take`, its
    /// freelist taken too. Called with the node lock held. Answers the slab's `struct
    /// page` (checked to be a slab of `s`) and the freelist taken (0 for none).
    pub(super) fn acquire_slab(
        &self,
        s: &KmemCache,
        n: &KmemCacheNode,
        pfn: Pfn,
        take: bool,
    ) -> Result<(&Page, u64), SlabError> {
        let page = self
            .slab_page_of(s, pfn)
            .inspect_err(|_| self.drop_list(n, &n.partial))?;
        self.remove_partial(s, n, pfn)?;
        loop {
            let raw = page.word();
            let old = self.check_slab_in(s, page, pfn, SlabCounters::unpack(raw))?;
            let new = if take {
                SlabCounters {
                    freelist: NO_OBJECT,
                    inuse: old.objects,
                    frozen: true,
                    ..old
                }
            } else {
                SlabCounters {
                    frozen: true,
                    ..old
                }
            };
            if self.cmpxchg_slab(s, page, raw, new) {
                return Ok((page, self.fl_va(s, pfn, old.freelist)));
            }
        }
    }
}
