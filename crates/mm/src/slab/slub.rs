//! The SLUB allocation and free paths (`mm/slub.c` of Linux 6.6): the lockless per-CPU
//! fast paths, the slow path through per-CPU partial slabs, the node partial list and new
//! slabs, remote frees with compare-exchange on the slab's (freelist, counters), and
//! flushing.
//!
//! Interrupts: the simulated machine delivers an interrupt only at
//! [`crate::KernelHooks::irq_window`] calls, which sit exactly where the kernel runs with
//! interrupts enabled inside these paths. Everything between two windows is therefore atomic with respect to interrupts on
//! this CPU, as `this_cpu_cmpxchg_double` is on x86.
//!
//! Every byte goes through the door ([`crate::mem`]). What the fast paths check beyond the
//! kernel is arithmetic on the slab already in hand: the CPU slab's `struct page` names
//! this cache, and a freelist pointer about to be followed is an object boundary inside
//! that slab (a range and a multiple-of-size check). A pointer that fails is the fault the
//! kernel would take following it; the slower paths also check the slab counters
//! (`check_slab()`), the node list links (`list_del` with `CONFIG_DEBUG_LIST`) and the
//! per-CPU partial chains (see `slab/validate.rs`).

use core::sync::atomic::Ordering::{AcqRel, Acquire, Relaxed};

use crate::addr::{VirtAddr, PAGE_SIZE};
use crate::gfp::Gfp;
use crate::mm_types::{Page, PG_SLAB};
use crate::platform::Platform;
use crate::slab::cache::{
    Ctor, KmemCache, KmemCacheCpu, KmemCacheNode, KmemCacheRef, MAX_CTOR_OBJECT, MAX_OBJS_PER_PAGE,
};
use crate::slab::stats::StatItem;
use crate::slab::SlabError;
use crate::Mm;

/// No object (a freelist index).
pub(crate) const NO_OBJECT: u16 = u16::MAX;

/// The line of `set_freepointer()`'s `BUG_ON(object == fp)` (naive double-free detection
/// with `CONFIG_SLAB_FREELIST_HARDENED`): mm/slub.c:440 in Linux 6.5, the nearest release
/// whose line numbers were at hand (DepSurf places `set_freepointer` at mm/slub.c:435 in
/// Ubuntu's 6.5 build; the `BUG_ON` is five lines into it).
const SET_FREEPOINTER_BUG_LINE: u32 = 440;

/// Why a CPU freelist's next object could not be read (one byte: the fast paths return it
/// in registers and report it out of line).
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
enum FreelistFault {
    /// The CPU slab's `struct page` is no slab of the cache (or lies past `mem_map`).
    ForeignSlab,
    /// The freelist pointer is not an object boundary inside the slab.
    BadPointer,
    /// The object's free pointer word is not RAM in the direct map.
    OutsideRam,
}

/// `slab->freelist` and `slab->counters` (`inuse`, `objects`, `frozen`), packed in one
/// word of `struct page` so that one compare-exchange updates them together.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct SlabCounters {
    /// Index of the first free object, or `NO_OBJECT`.
    pub freelist: u16,
    /// Objects handed out (to callers or to a CPU freelist).
    pub inuse: u16,
    /// Objects in the slab.
    pub objects: u16,
    /// Owned by a CPU (its current slab or on its partial list).
    pub frozen: bool,
}

impl SlabCounters {
    /// The packed form stored in `struct page`.
    pub(crate) fn pack(self) -> u64 {
        self.freelist as u64
            | (self.inuse as u64) << 16
            | (self.objects as u64) << 32
            | (self.frozen as u64) << 48
    }
    pub(crate) fn unpack(v: u64) -> SlabCounters {
        SlabCounters {
            freelist: v as u16,
            inuse: (v >> 16) as u16,
            objects: (v >> 32) as u16,
            frozen: (v >> 48) & 1 != 0,
        }
    }
}

impl<P: Platform> Mm<P> {
    /// `next_tid()`: tids of one CPU step by the CPU count rounded up to a power of two
    /// (`TID_STEP`, computed once at boot).
    #[inline]
    pub(crate) fn next_tid(&self, tid: u64) -> u64 {
        tid.wrapping_add(self.slab.tid_step)
    }

    // ----- memory and pointers -----------------------------------------------------

    /// Read a word of slab memory through the door; an address outside RAM is the fault
    /// the kernel would take there.
    /// (The direct map is linear, so one `__pa()` of the first byte and the door's RAM
    /// check of the whole word suffice.)
    #[inline]
    pub(crate) fn load_word(&self, va: u64) -> Result<u64, SlabError> {
        match self
            .layout
            .virt_to_phys(va)
            .map(|phys| self.ram.read::<u64>(phys))
        {
            Some(Ok(v)) => Ok(v),
            _ => Err(self.slab_fault(va, false, "slab memory outside RAM")),
        }
    }

    /// Write a word of slab memory through the door (see [`Mm::load_word`]).
    #[inline]
    pub(crate) fn store_word(&self, va: u64, v: u64) -> Result<(), SlabError> {
        match self
            .layout
            .virt_to_phys(va)
            .map(|phys| self.ram.write::<u64>(phys, v))
        {
            Some(Ok(())) => Ok(()),
            _ => Err(self.slab_fault(va, true, "slab memory outside RAM")),
        }
    }

    /// `memset()` of slab memory through the door (see [`Mm::load_word`]).
    pub(crate) fn slab_fill(&self, va: u64, byte: u8, len: u64) -> Result<(), SlabError> {
        if len == 0 {
            return Ok(());
        }
        match self.kfill(va, byte, len) {
            Ok(()) => Ok(()),
            Err(e) => Err(self.slab_fault(e.addr, true, "slab memory outside RAM")),
        }
    }

    /// `freelist_ptr_encode()`: with hardening, `ptr ^ s->random ^ swab(ptr_addr)`.
    #[inline]
    fn encode_fp(s: &KmemCache, ptr: u64, ptr_addr: u64) -> u64 {
        let random = s.random.load(Relaxed);
        if random == 0 {
            ptr
        } else {
            ptr ^ random ^ ptr_addr.swap_bytes()
        }
    }

    /// Decode a free pointer word `raw` read from `object` (for walks that must not report).
    #[inline]
    pub(crate) fn decode_fp(&self, s: &KmemCache, raw: u64, object: u64) -> u64 {
        Self::encode_fp(s, raw, object.wrapping_add(s.fp_offset() as u64))
    }

    /// `get_freepointer()`: the decoded free pointer stored in `object` (not yet checked:
    /// it is checked when it is followed).
    #[inline]
    pub(crate) fn get_freepointer(&self, s: &KmemCache, object: u64) -> Result<u64, SlabError> {
        let at = object.wrapping_add(s.fp_offset() as u64);
        Ok(Self::encode_fp(s, self.load_word(at)?, at))
    }

    /// `set_freepointer()` (its hardened `BUG_ON(object == fp)` is checked by the free
    /// paths before they get here: [`Mm::naive_double_free`]).
    #[inline]
    pub(crate) fn set_freepointer(
        &self,
        s: &KmemCache,
        object: u64,
        fp: u64,
    ) -> Result<(), SlabError> {
        let at = object.wrapping_add(s.fp_offset() as u64);
        self.store_word(at, Self::encode_fp(s, fp, at))
    }

    /// The next free object after `object`, an object of the slab at `pfn` read from a
    /// freelist: `object` must be an object boundary of the slab before its free pointer
    /// is read (a range and modulo check on the slab in hand). One that is not is reported
    /// as the kernel would meet it: `Freepointer corrupt` with `slab_debug`, else the fault
    /// of following the pointer.
    #[inline(always)]
    pub(crate) fn next_free(&self, s: &KmemCache, pfn: u64, object: u64) -> Result<u64, SlabError> {
        if self.object_index(s, pfn, object).is_none() {
            return Err(self.freelist_corrupt(s, pfn, object));
        }
        self.get_freepointer(s, object)
    }

    #[cold]
    #[inline(never)]
    fn freelist_corrupt(&self, s: &KmemCache, pfn: u64, object: u64) -> SlabError {
        crate::vmstat::VmEvents::add(&self.events().bug_slab, 1);
        if s.is_debug() {
            self.slab_err(s, pfn, format_args!("Freepointer corrupt"));
            return SlabError::Corrupted {
                addr: object,
                what: "freelist pointer corrupted",
            };
        }
        // get_freepointer() dereferences `object + s->offset`.
        self.slab_fault(
            object.wrapping_add(s.fp_offset() as u64),
            false,
            "freelist pointer corrupted",
        )
    }

    /// `slab_address()`.
    #[inline]
    pub(crate) fn slab_address(&self, pfn: u64) -> u64 {
        self.layout
            .page_offset
            .wrapping_add(pfn << crate::addr::PAGE_SHIFT)
    }

    /// The address of object `idx` of the slab at `pfn` (past its left red zone).
    #[inline]
    pub(crate) fn object_at(&self, s: &KmemCache, pfn: u64, idx: u16) -> u64 {
        self.slab_address(pfn)
            .wrapping_add(s.red_left_pad() as u64)
            .wrapping_add(idx as u64 * s.size() as u64)
    }

    /// `obj_to_index()`; `None` if `va` is not the start of an object of the slab: at an
    /// object boundary, among the slab's `objects`, and wholly inside the slab's pages
    /// whatever its counters say. The division is a multiplication by `ceil(2^48 / size)`,
    /// exact for every offset and size below 2^24 (`reciprocal_divide`).
    #[inline(always)]
    pub(crate) fn object_index(&self, s: &KmemCache, pfn: u64, va: u64) -> Option<u16> {
        self.object_index_in(s, self.mem_map.get(pfn)?, pfn, va)
    }

    /// [`Mm::object_index`] with the slab's `struct page` in hand.
    #[inline(always)]
    pub(crate) fn object_index_in(
        &self,
        s: &KmemCache,
        page: &Page,
        pfn: u64,
        va: u64,
    ) -> Option<u16> {
        let base = self.slab_address(pfn).wrapping_add(s.red_left_pad() as u64);
        let off = va.checked_sub(base)?;
        let size = s.size() as u64;
        let recip = s.reciprocal_size.load(Relaxed) as u128;
        let idx = ((off as u128 * recip) >> 48) as u64;
        let objects = SlabCounters::unpack(page.word()).objects as u64;
        let order = page.order();
        // Object `idx` fills `[idx * size, (idx + 1) * size)` of the slab (its left red
        // zone first).
        let end = off.wrapping_add(size);
        (idx.wrapping_mul(size) == off
            && idx < objects
            && order <= crate::addr::MAX_PAGE_ORDER
            && end <= (PAGE_SIZE as u64) << order)
            .then_some(idx as u16)
    }

    /// The address of freelist index `idx` (0 for none).
    pub(crate) fn fl_va(&self, s: &KmemCache, pfn: u64, idx: u16) -> u64 {
        if idx == NO_OBJECT {
            0
        } else {
            self.object_at(s, pfn, idx)
        }
    }

    /// The freelist index of `va` (0: none), if it is an object of the slab.
    pub(crate) fn fl_idx(&self, s: &KmemCache, pfn: u64, va: u64) -> Option<u16> {
        if va == 0 {
            Some(NO_OBJECT)
        } else {
            self.object_index(s, pfn, va)
        }
    }

    /// The slab state of the slab at `pfn`.
    pub fn slab_counters(&self, pfn: u64) -> SlabCounters {
        SlabCounters::unpack(self.mem_map.page(pfn).word())
    }

    /// `slab_update_freelist()`: compare-exchange of (freelist, counters).
    #[inline]
    /// `slab_update_freelist()`: a failed exchange counts `CMPXCHG_DOUBLE_FAIL`.
    fn cmpxchg_slab(&self, s: &KmemCache, pfn: u64, old: SlabCounters, new: SlabCounters) -> bool {
        let ok = self
            .mem_map
            .page(pfn)
            .word_atomic()
            .compare_exchange(old.pack(), new.pack(), AcqRel, Acquire)
            .is_ok();
        if !ok {
            self.stat(s, StatItem::CmpxchgDoubleFail);
        }
        ok
    }

    /// `this_cpu_cmpxchg_double(s->cpu_slab->freelist, tid)`: no interrupt can arrive
    /// inside it (the machine delivers them only at `irq_window`), and only this CPU's
    /// thread touches this `kmem_cache_cpu`, so it is a compare and two stores.
    #[inline]
    pub(crate) fn cpu_cmpxchg(
        c: &KmemCacheCpu,
        freelist: u64,
        tid: u64,
        new_freelist: u64,
        new_tid: u64,
    ) -> bool {
        if c.freelist.load(Relaxed) != freelist || c.tid.load(Relaxed) != tid {
            return false;
        }
        c.freelist.store(new_freelist, Relaxed);
        c.tid.store(new_tid, Relaxed);
        true
    }

    /// The node list lock, with interrupts disabled.
    pub(crate) fn lock_node<'a>(&'a self, n: &'a KmemCacheNode) -> NodeGuard<'a, P> {
        let flags = self.platform.local_irq_save();
        self.spin_lock(&n.list_lock, "n->list_lock");
        NodeGuard { mm: self, n, flags }
    }

    /// An interrupt may arrive here (interrupts are enabled at this point in the kernel).
    #[inline]
    pub(crate) fn irq_window(&self) {
        self.platform.irq_window(self);
    }

    /// Forget this CPU's slab and its lockless freelist after one of them was found
    /// corrupted (reported): the objects on that freelist are lost, the slab stays with
    /// the objects it had, and the next allocation starts afresh.
    #[cold]
    fn drop_cpu_slab(&self, c: &KmemCacheCpu, slab_too: bool) {
        if slab_too {
            c.slab.store(0, Relaxed);
        }
        c.freelist.store(0, Relaxed);
        c.tid.store(self.next_tid(c.tid.load(Relaxed)), Relaxed);
    }

    /// The next free object of this CPU's freelist (`object`, in the CPU slab at `pfn`),
    /// with the CPU slab checked to be a slab of `s`; a corruption is reported and the CPU
    /// state that led to it dropped.
    #[inline(always)]
    pub(crate) fn cpu_next_free(
        &self,
        s: &KmemCache,
        c: &KmemCacheCpu,
        pfn: u64,
        object: u64,
    ) -> Result<u64, SlabError> {
        match self.cpu_next_free_checked(s, pfn, object) {
            Ok(next) => Ok(next),
            Err(why) => Err(self.cpu_freelist_fault(s, c, pfn, object, why)),
        }
    }

    /// The checks of [`Mm::cpu_next_free`] and the read, without reporting: the slab's
    /// `struct page` names `s`, `object` is an object boundary inside that slab, and its
    /// free pointer word is RAM in the direct map. The error is one byte, so the fast path
    /// gets its answer in registers; [`Mm::cpu_freelist_fault`] reports it.
    #[inline(always)]
    fn cpu_next_free_checked(
        &self,
        s: &KmemCache,
        pfn: u64,
        object: u64,
    ) -> Result<u64, FreelistFault> {
        let page = match self.mem_map.get(pfn) {
            Some(page)
                if page.flags() & PG_SLAB != 0 && page.slab_cache() == s.self_va.load(Relaxed) =>
            {
                page
            }
            _ => return Err(FreelistFault::ForeignSlab),
        };
        if self.object_index_in(s, page, pfn, object).is_none() {
            return Err(FreelistFault::BadPointer);
        }
        let at = object.wrapping_add(s.fp_offset() as u64);
        match self
            .layout
            .virt_to_phys(at)
            .map(|phys| self.ram.read::<u64>(phys))
        {
            Some(Ok(raw)) => Ok(Self::encode_fp(s, raw, at)),
            _ => Err(FreelistFault::OutsideRam),
        }
    }

    /// The report for a CPU freelist that [`Mm::cpu_next_free_checked`] refused, and the CPU
    /// state that led to it dropped: the CPU slab too if it is no slab of `s`.
    #[cold]
    #[inline(never)]
    fn cpu_freelist_fault(
        &self,
        s: &KmemCache,
        c: &KmemCacheCpu,
        pfn: u64,
        object: u64,
        why: FreelistFault,
    ) -> SlabError {
        self.drop_cpu_slab(c, why == FreelistFault::ForeignSlab);
        match why {
            FreelistFault::ForeignSlab => match self.slab_page_of(s, pfn) {
                Err(e) => e,
                // Another CPU's write made it a slab of `s` since: report what was seen.
                Ok(_) => self.slab_fault(
                    self.pfn_struct_address(pfn),
                    false,
                    "link to a page that is not a slab of this cache",
                ),
            },
            FreelistFault::BadPointer => self.freelist_corrupt(s, pfn, object),
            FreelistFault::OutsideRam => self.slab_fault(
                object.wrapping_add(s.fp_offset() as u64),
                false,
                "slab memory outside RAM",
            ),
        }
    }

    // ----- slabs -------------------------------------------------------------------

    /// `allocate_slab()`: pages from the page allocator (the preferred order without
    /// retrying, then the minimum order), made into a slab with its freelist threaded
    /// through the objects, in random order with `CONFIG_SLAB_FREELIST_RANDOM`.
    pub(crate) fn new_slab(&self, s: &KmemCache, gfp: Gfp) -> Result<u64, SlabError> {
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
        let pfn = self.page_to_pfn(page).0;
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

    /// Is the random sequence at `seq` a permutation of `0..count`?
    fn random_seq_ok(&self, s: &KmemCache, seq: u64, count: u16) -> bool {
        let mut seen = [0u64; (MAX_OBJS_PER_PAGE as usize).div_ceil(64)];
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
    fn setup_objects(&self, s: &KmemCache, pfn: u64, objects: u16, ctor: Option<Ctor>) {
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
            &self.slab_pages.reclaimable
        } else {
            &self.slab_pages.unreclaimable
        };
        if add {
            counter.fetch_add(pages, Relaxed);
        } else {
            counter.fetch_sub(pages, Relaxed);
        }
    }

    /// `inc_slabs_node()`.
    pub(crate) fn inc_slabs_node(&self, s: &KmemCache, pfn: u64) -> Result<(), SlabError> {
        let n = self.get_node(s)?;
        n.nr_slabs.fetch_add(1, Relaxed);
        n.total_objects
            .fetch_add(self.slab_counters(pfn).objects as u64, Relaxed);
        Ok(())
    }

    /// `discard_slab()`: give the slab's pages back.
    pub(crate) fn discard_slab(&self, s: &KmemCache, pfn: u64) {
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
        if self.slab.config.init_on_free {
            // free_pages_prepare(): with init_on_free the kernel wipes every freed page;
            // the page allocator here leaves that to its users, so a slab's stale free
            // pointers must not reach the next owner of these pages.
            let _ = self.slab_fill(self.slab_address(pfn), 0, (PAGE_SIZE as u64) << order);
        }
        page.set_flags(page.flags() & !PG_SLAB);
        page.set_slab_cache(0);
        page.set_word(0);
        // A refusal is the page allocator's `Bad page state` report (already printed).
        let _ = self.__free_pages(page, order);
    }

    /// `get_freelist()`: take the slab's whole freelist for this CPU; the slab stays
    /// frozen only if there was one.
    fn get_freelist(&self, s: &KmemCache, pfn: u64) -> Result<u64, SlabError> {
        loop {
            let old = self.check_slab(s, pfn, self.slab_counters(pfn))?;
            let new = SlabCounters {
                freelist: NO_OBJECT,
                inuse: old.objects,
                frozen: old.freelist != NO_OBJECT,
                ..old
            };
            if self.cmpxchg_slab(s, pfn, old, new) {
                return Ok(self.fl_va(s, pfn, old.freelist));
            }
        }
    }

    /// `acquire_slab()` for a slab taken off the node list: frozen, and with `take`, its
    /// freelist taken too. Called with the node lock held.
    fn acquire_slab(
        &self,
        s: &KmemCache,
        n: &KmemCacheNode,
        pfn: u64,
        take: bool,
    ) -> Result<u64, SlabError> {
        self.slab_page_of(s, pfn)
            .inspect_err(|_| self.drop_list(n, &n.partial))?;
        self.remove_partial(s, n, pfn)?;
        loop {
            let old = self.check_slab(s, pfn, self.slab_counters(pfn))?;
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
            if self.cmpxchg_slab(s, pfn, old, new) {
                return Ok(self.fl_va(s, pfn, old.freelist));
            }
        }
    }

    // ----- allocation --------------------------------------------------------------

    /// `slab_alloc_node()`: the lockless fast path, else `__slab_alloc`.
    pub(crate) fn slab_alloc(
        &self,
        s: &KmemCache,
        gfp: Gfp,
        site: crate::slab::CallSite,
        orig_size: u32,
    ) -> Result<u64, SlabError> {
        // The current CPU, read once: the thread that runs a CPU stays on it, interrupts
        // included.
        let cpu = self.platform.smp_processor_id();
        if gfp.allows_blocking() {
            self.might_sleep_on(cpu)
                .map_err(|e| SlabError::Alloc(crate::AllocError::SleepInAtomic(e)))?;
        }
        let object = if s.is_debug() {
            self.alloc_debug_path(s, gfp, site, orig_size)?
        } else if s.sheaf_capacity() != 0 {
            // slab_alloc_node() of 6.18: the sheaves first.
            match self.alloc_from_pcs(s, gfp, cpu)? {
                Some(object) => object,
                None => self.slab_alloc_on(s, gfp, cpu)?,
            }
        } else {
            self.slab_alloc_on(s, gfp, cpu)?
        };
        if self.slab_want_init_on_alloc(gfp, s) {
            // With a kmalloc red zone only the requested bytes are zeroed, so the red zone
            // after them stays intact (slab_post_alloc_hook's `zero_size`).
            let zero_size = if Self::slub_debug_orig_size(s) {
                orig_size
            } else {
                s.object_size()
            };
            self.slab_fill(object, 0, zero_size as u64)?;
        } else if self.slab_want_init_on_free(s) {
            // maybe_wipe_obj_freeptr(): the free pointer stored inside the object is the
            // only byte init_on_free left behind.
            self.store_word(object.wrapping_add(s.fp_offset() as u64), 0)?;
        }
        Ok(object)
    }

    /// `slab_want_init_on_alloc()`: init_on_alloc skips caches with a constructor (their
    /// objects keep what it wrote) and, but for `__GFP_ZERO`, poisoned caches.
    pub(crate) fn slab_want_init_on_alloc(&self, gfp: Gfp, s: &KmemCache) -> bool {
        if self.slab.config.init_on_alloc {
            if s.has_ctor() {
                return false;
            }
            if s.flags().contains(crate::slab::SlabFlags::POISON) {
                return gfp.contains(Gfp::__GFP_ZERO);
            }
            return true;
        }
        gfp.contains(Gfp::__GFP_ZERO)
    }

    /// `slab_want_init_on_free()`: not for caches with a constructor or poisoning.
    pub(crate) fn slab_want_init_on_free(&self, s: &KmemCache) -> bool {
        self.slab.config.init_on_free
            && !s.has_ctor()
            && !s.flags().contains(crate::slab::SlabFlags::POISON)
    }

    /// The per-CPU fast path and slow path, without context checks or initialisation.
    pub(crate) fn slab_alloc_from(&self, s: &KmemCache, gfp: Gfp) -> Result<u64, SlabError> {
        self.slab_alloc_on(s, gfp, self.platform.smp_processor_id())
    }

    /// [`Mm::slab_alloc_from`] on `cpu`, the current CPU.
    #[inline(always)]
    pub(crate) fn slab_alloc_on(
        &self,
        s: &KmemCache,
        gfp: Gfp,
        cpu: usize,
    ) -> Result<u64, SlabError> {
        let c = self.cpu_slab_or_fault(s, cpu)?;
        loop {
            let tid = c.tid.load(Relaxed);
            self.irq_window();
            let object = c.freelist.load(Relaxed);
            let slab = c.slab.load(Relaxed);
            if object == 0 || slab == 0 {
                let flags = self.platform.local_irq_save();
                let r = self.__slab_alloc(s, gfp, c, flags);
                self.platform.local_irq_restore(flags);
                return r;
            }
            let next = self.cpu_next_free(s, c, slab - 1, object)?;
            self.irq_window();
            if Self::cpu_cmpxchg(c, object, tid, next, self.next_tid(tid)) {
                self.stat(s, StatItem::AllocFastpath);
                return Ok(object);
            }
            // note_cmpxchg_failure(): an interrupt ran an operation in between; redo.
            crate::vmstat::VmEvents::add(&self.events().slab_cmpxchg_redo, 1);
            self.stat(s, StatItem::CmpxchgDoubleCpuFail);
        }
    }

    /// `___slab_alloc()`, entered with interrupts disabled (`irq` is the state to give
    /// back while a new slab is allocated).
    pub(crate) fn __slab_alloc(
        &self,
        s: &KmemCache,
        gfp: Gfp,
        c: &KmemCacheCpu,
        irq: crate::IrqFlags,
    ) -> Result<u64, SlabError> {
        self.stat(s, StatItem::AllocSlowpath);
        loop {
            let slab = c.slab.load(Relaxed);
            if slab != 0 {
                let pfn = slab - 1;
                if let Err(e) = self.slab_page_of(s, pfn) {
                    self.drop_cpu_slab(c, true);
                    return Err(e);
                }
                let mut freelist = c.freelist.load(Relaxed);
                if freelist == 0 {
                    freelist = self
                        .get_freelist(s, pfn)
                        .inspect_err(|_| self.drop_cpu_slab(c, true))?;
                    self.stat(
                        s,
                        if freelist == 0 {
                            StatItem::DeactivateBypass
                        } else {
                            StatItem::AllocRefill
                        },
                    );
                }
                if freelist != 0 {
                    // load_freelist:
                    let next = self.cpu_next_free(s, c, pfn, freelist)?;
                    c.freelist.store(next, Relaxed);
                    c.tid.store(self.next_tid(c.tid.load(Relaxed)), Relaxed);
                    return Ok(freelist);
                }
                // The CPU slab is full: it leaves the CPU, on no list.
                c.slab.store(0, Relaxed);
                c.tid.store(self.next_tid(c.tid.load(Relaxed)), Relaxed);
            }
            // new_slab: the per-CPU partial list first.
            let partial = c.partial.load(Relaxed);
            if partial != 0 {
                let pfn = partial - 1;
                let page = self.slab_page_of(s, pfn).inspect_err(|_| {
                    c.partial.store(0, Relaxed);
                    c.partial_slabs.store(0, Relaxed);
                })?;
                // The link is cleared as the slab leaves the chain, so a chain that
                // loops back (a corrupted link) cannot be walked twice.
                let next = page.next();
                page.set_next(crate::mm_types::NIL);
                c.partial.store(
                    if next == crate::mm_types::NIL {
                        0
                    } else {
                        next as u64 + 1
                    },
                    Relaxed,
                );
                c.partial_slabs
                    .store(c.partial_slabs.load(Relaxed).saturating_sub(1), Relaxed);
                c.slab.store(pfn + 1, Relaxed);
                self.stat(s, StatItem::CpuPartialAlloc);
                continue;
            }
            // The node's partial list.
            if let Some((pfn, freelist)) = self.get_partial(s, c)? {
                self.load_new_cpu_slab(s, c, pfn, freelist);
                continue;
            }
            // A new slab, allocated with interrupts enabled as the kernel does.
            self.platform.local_irq_restore(irq);
            self.irq_window();
            let allocated = self.new_slab(s, gfp);
            let _ = self.platform.local_irq_save();
            let pfn = allocated?;
            self.stat(s, StatItem::AllocSlab);
            self.inc_slabs_node(s, pfn)?;
            let freelist = self.get_freelist_of_new(s, pfn);
            self.load_new_cpu_slab(s, c, pfn, freelist);
        }
    }

    /// `kmalloc_fix_flags()`: slab memory must be directly mapped, so `GFP_SLAB_BUG_MASK`
    /// bits are reported and dropped.
    pub(crate) fn kmalloc_fix_flags(&self, gfp: Gfp) -> Gfp {
        let bad = Gfp::__GFP_DMA32 | Gfp::__GFP_HIGHMEM;
        if !gfp.intersects(bad) {
            return gfp;
        }
        let fixed = gfp & !bad;
        crate::vmstat::VmEvents::add(&self.events().warn, 1);
        self.printk(format_args!(
            "Unexpected gfp: {:?}. Fixing up to gfp: {:?}. Fix your code!",
            gfp & bad,
            fixed
        ));
        fixed
    }

    /// A new slab becomes a CPU slab: all its objects go to the CPU.
    fn get_freelist_of_new(&self, s: &KmemCache, pfn: u64) -> u64 {
        let page = self.mem_map.page(pfn);
        let old = SlabCounters::unpack(page.word());
        page.set_word(
            SlabCounters {
                freelist: NO_OBJECT,
                inuse: old.objects,
                frozen: true,
                ..old
            }
            .pack(),
        );
        self.fl_va(s, pfn, old.freelist)
    }

    /// `retry_load_slab`: install a frozen slab and its freelist as this CPU's slab; if an
    /// interrupt installed another one meanwhile, that one is deactivated first.
    fn load_new_cpu_slab(&self, s: &KmemCache, c: &KmemCacheCpu, pfn: u64, freelist: u64) {
        let old = c.slab.load(Relaxed);
        if old != 0 {
            let old_freelist = c.freelist.load(Relaxed);
            c.slab.store(0, Relaxed);
            c.freelist.store(0, Relaxed);
            self.stat(s, StatItem::CpuslabFlush);
            self.deactivate_slab(s, old - 1, old_freelist);
        }
        c.slab.store(pfn + 1, Relaxed);
        c.freelist.store(freelist, Relaxed);
        c.tid.store(self.next_tid(c.tid.load(Relaxed)), Relaxed);
    }

    /// `get_partial_node()`: the first slab of the node's partial list becomes the CPU
    /// slab (its freelist taken); more go to the CPU's partial list, up to half its limit.
    fn get_partial(
        &self,
        s: &KmemCache,
        c: &KmemCacheCpu,
    ) -> Result<Option<(u64, u64)>, SlabError> {
        let n = self.get_node(s)?;
        if n.nr_partial.load(Relaxed) == 0 {
            return Ok(None);
        }
        let _guard = self.lock_node(n);
        let Some(first) = n.partial.first() else {
            return Ok(None);
        };
        let freelist = self.acquire_slab(s, n, first, true)?;
        self.stat(s, StatItem::AllocFromPartial);
        let mut taken = 0;
        while taken < s.cpu_partial_slabs() / 2 {
            let Some(pfn) = n.partial.first() else { break };
            if self.acquire_slab(s, n, pfn, false).is_err() {
                break;
            }
            self.push_cpu_partial(c, pfn);
            self.stat(s, StatItem::CpuPartialNode);
            taken += 1;
        }
        Ok(Some((first, freelist)))
    }

    fn push_cpu_partial(&self, c: &KmemCacheCpu, pfn: u64) {
        c.partial_slabs
            .store(c.partial_slabs.load(Relaxed).saturating_add(1), Relaxed);
        let old = c.partial.load(Relaxed);
        self.mem_map.page(pfn).set_next(if old == 0 {
            crate::mm_types::NIL
        } else {
            (old - 1) as u32
        });
        c.partial.store(pfn + 1, Relaxed);
    }

    /// Walk a CPU freelist of the slab at `pfn` from `freelist`: its length and last
    /// object. A pointer that is not an object of the slab ends it there (reported by
    /// [`Mm::next_free`]), the chain cut at the last good object; a chain longer than the
    /// slab (a cycle) is cut at the slab's size.
    fn walk_cpu_freelist(&self, s: &KmemCache, pfn: u64, freelist: u64) -> (u16, u64) {
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
    pub(crate) fn deactivate_slab(&self, s: &KmemCache, pfn: u64, freelist: u64) {
        self.unfreeze_slab(s, pfn, freelist, false);
    }

    /// [`Mm::deactivate_slab`], or with `from_cpu_partial` one slab of
    /// `__unfreeze_partials()`: they differ only in what they count.
    fn unfreeze_slab(&self, s: &KmemCache, pfn: u64, freelist: u64, from_cpu_partial: bool) {
        if self.slab_page_of(s, pfn).is_err() {
            return;
        }
        let (count, tail) = self.walk_cpu_freelist(s, pfn, freelist);
        let Ok(n) = self.get_node(s) else { return };
        let guard = self.lock_node(n);
        let (new, remote_frees) = loop {
            let Ok(old) = self.check_slab(s, pfn, self.slab_counters(pfn)) else {
                return;
            };
            if tail != 0
                && self
                    .set_freepointer(s, tail, self.fl_va(s, pfn, old.freelist))
                    .is_err()
            {
                return;
            }
            let new = SlabCounters {
                freelist: if tail != 0 {
                    self.fl_idx(s, pfn, freelist).unwrap_or(old.freelist)
                } else {
                    old.freelist
                },
                inuse: old.inuse.saturating_sub(count),
                frozen: false,
                ..old
            };
            if self.cmpxchg_slab(s, pfn, old, new) {
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
            drop(guard);
            self.stat(s, StatItem::DeactivateEmpty);
            self.discard_slab(s, pfn);
            self.stat(s, StatItem::FreeSlab);
        } else if new.freelist != NO_OBJECT {
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
    }

    /// `__unfreeze_partials()`: the CPU's partial slabs go back to the node. The chain
    /// (linked through `struct page`) is followed at most as far as the cache could have
    /// slabs; a link to anything but a slab of the cache is reported and ends it.
    fn unfreeze_partials(&self, s: &KmemCache, c: &KmemCacheCpu) {
        let mut cur = c.partial.swap(0, Relaxed);
        c.partial_slabs.store(0, Relaxed);
        let mut steps = 0u64;
        while cur != 0 && steps < self.mem_map.len {
            steps += 1;
            let pfn = cur - 1;
            let Ok(page) = self.slab_page_of(s, pfn) else {
                return;
            };
            let next = page.next();
            cur = if next == crate::mm_types::NIL {
                0
            } else {
                next as u64 + 1
            };
            self.unfreeze_slab(s, pfn, 0, true);
        }
    }

    /// `put_cpu_partial()`: a slab that a free made partial joins this CPU's partial
    /// list; past the limit, the list is drained to the node first.
    fn put_cpu_partial(&self, s: &KmemCache, pfn: u64) -> Result<(), SlabError> {
        let flags = self.platform.local_irq_save();
        let r = self.this_cpu_slab(s).map(|c| {
            let slabs = c.partial_slabs.load(Relaxed);
            if slabs >= s.cpu_partial_slabs() as u64 {
                self.unfreeze_partials(s, c);
                self.stat(s, StatItem::CpuPartialDrain);
            }
            self.push_cpu_partial(c, pfn);
        });
        self.platform.local_irq_restore(flags);
        r
    }

    // ----- free --------------------------------------------------------------------

    /// `slab_free()`: the debug path, else the sheaves (if the cache has them), else
    /// [`Mm::do_slab_free`].
    pub(crate) fn slab_free(
        &self,
        s: &KmemCache,
        pfn: u64,
        object: u64,
        site: crate::slab::CallSite,
    ) -> Result<(), SlabError> {
        if s.is_debug() {
            return self.free_to_partial_list(s, pfn, object, site);
        }
        // slab_free() of 6.18: the sheaves first.
        if s.sheaf_capacity() != 0 && self.free_to_pcs(s, object)? {
            return Ok(());
        }
        self.do_slab_free(s, pfn, object)
    }

    /// `do_slab_free()`: to the CPU freelist if the object is in this CPU's slab, else
    /// `__slab_free`.
    #[inline(always)]
    pub(crate) fn do_slab_free(
        &self,
        s: &KmemCache,
        pfn: u64,
        object: u64,
    ) -> Result<(), SlabError> {
        let c = self.this_cpu_slab(s)?;
        loop {
            let tid = c.tid.load(Relaxed);
            self.irq_window();
            if c.slab.load(Relaxed) != pfn + 1 {
                return self.__slab_free(s, pfn, object);
            }
            let freelist = c.freelist.load(Relaxed);
            if freelist == object {
                return Err(self.naive_double_free(s, object));
            }
            self.set_freepointer(s, object, freelist)?;
            self.irq_window();
            if Self::cpu_cmpxchg(c, freelist, tid, object, self.next_tid(tid)) {
                self.stat(s, StatItem::FreeFastpath);
                return Ok(());
            }
            crate::vmstat::VmEvents::add(&self.events().slab_cmpxchg_redo, 1);
            self.stat(s, StatItem::CmpxchgDoubleCpuFail);
        }
    }

    /// The cheap double-free signs: the object heads this CPU's freelist or its slab's, or
    /// its slab has nothing in use.
    pub(crate) fn looks_free(&self, s: &KmemCache, pfn: u64, object: u64) -> bool {
        let counters = self.slab_counters(pfn);
        let on_cpu = self
            .cpu_slab(s, self.platform.smp_processor_id())
            .is_some_and(|c| c.slab.load(Relaxed) == pfn + 1 && c.freelist.load(Relaxed) == object);
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
        SlabError::NotSlabObject(
            VirtAddr(object),
            "double free (the object is already free: at the head of a freelist, or its slab has nothing in use)",
        )
    }

    /// `__slab_free()`: straight onto the slab's freelist with a compare-exchange; the node
    /// lock only when the slab changes lists (full → partial, partial → empty). Out of
    /// line: the fast path of `kfree` stays small.
    #[inline(never)]
    fn __slab_free(&self, s: &KmemCache, pfn: u64, object: u64) -> Result<(), SlabError> {
        self.__slab_free_list(s, pfn, object, object, 1)
    }

    /// `__slab_free(s, slab, head, tail, cnt)`: [`Mm::__slab_free`] of a detached freelist
    /// of `cnt` objects of the slab at `pfn`, chained from `head` to `tail` (whose free
    /// pointer this sets), as `kmem_cache_free_bulk` gives it.
    pub(crate) fn __slab_free_list(
        &self,
        s: &KmemCache,
        pfn: u64,
        head: u64,
        tail: u64,
        cnt: u16,
    ) -> Result<(), SlabError> {
        self.stat(s, StatItem::FreeSlowpath);
        let n = self.get_node(s)?;
        let idx = self.fl_idx(s, pfn, head).ok_or(SlabError::NotSlabObject(
            VirtAddr(head),
            "not the start of an object",
        ))?;
        loop {
            let old = self.check_slab(s, pfn, self.slab_counters(pfn))?;
            let prior = self.fl_va(s, pfn, old.freelist);
            if prior == tail || prior == head || old.inuse < cnt.max(1) {
                return Err(self.naive_double_free(s, head));
            }
            self.set_freepointer(s, tail, prior)?;
            let mut new = SlabCounters {
                freelist: idx,
                inuse: old.inuse - cnt,
                ..old
            };
            let mut guard = None;
            if (new.inuse == 0 || prior == 0) && !old.frozen {
                if prior == 0 && s.cpu_partial_slabs() > 0 {
                    // A full slab becomes partial: it goes to this CPU's partial list.
                    new.frozen = true;
                } else {
                    guard = Some(self.lock_node(n));
                }
            }
            self.irq_window();
            if !self.cmpxchg_slab(s, pfn, old, new) {
                continue;
            }
            let Some(g) = guard else {
                if old.frozen {
                    self.stat(s, StatItem::FreeFrozen);
                } else if new.frozen {
                    self.put_cpu_partial(s, pfn)?;
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

    // ----- flushing and shrinking --------------------------------------------------

    /// `flush_cpu_slab()` for `cpu` (which must be the current CPU or idle).
    pub(crate) fn flush_cpu_slab(&self, s: &KmemCache, cpu: usize) {
        let flags = self.platform.local_irq_save();
        match self.cpu_slab(s, cpu) {
            Some(c) => {
                let slab = c.slab.swap(0, Relaxed);
                let freelist = c.freelist.swap(0, Relaxed);
                c.tid.store(self.next_tid(c.tid.load(Relaxed)), Relaxed);
                if slab != 0 {
                    // flush_slab()
                    self.deactivate_slab(s, slab - 1, freelist);
                    self.stat(s, StatItem::CpuslabFlush);
                }
                self.unfreeze_partials(s, c);
            }
            None => {
                self.slab_fault(
                    s.cpu_slab.load(Relaxed),
                    false,
                    "kmem_cache.cpu_slab corrupted",
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
                    "kmem_cache.cpu_slab corrupted",
                ));
            };
            if c.slab.load(Relaxed) == 0 && c.partial.load(Relaxed) == 0 && !self.pcs_used(s, cpu) {
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

    // ----- public API --------------------------------------------------------------

    /// `kmem_cache_alloc(cache, gfp)`.
    #[track_caller]
    pub fn kmem_cache_alloc(&self, r: KmemCacheRef, gfp: Gfp) -> Result<VirtAddr, SlabError> {
        self.kmem_cache_alloc_caller(r, gfp, crate::slab::CallSite::caller())
    }

    /// `kmem_cache_alloc` recording `caller` as the owner.
    pub fn kmem_cache_alloc_caller(
        &self,
        r: KmemCacheRef,
        gfp: Gfp,
        caller: crate::slab::CallSite,
    ) -> Result<VirtAddr, SlabError> {
        self.refuse_boot_cache(r)?;
        self.cache_alloc(r, gfp, caller)
    }

    /// Allocate from any cache, the allocator's own included.
    pub(crate) fn cache_alloc(
        &self,
        r: KmemCacheRef,
        gfp: Gfp,
        caller: crate::slab::CallSite,
    ) -> Result<VirtAddr, SlabError> {
        let s = self.api_cache(r)?;
        self.slab_alloc(s, gfp, caller, s.object_size())
            .map(VirtAddr)
    }

    /// The cache a caller names (`struct kmem_cache *s`): the kernel would use whatever
    /// the pointer leads to, so one that is no live cache is the fault of using it, then
    /// [`SlabError::BadCache`].
    pub(crate) fn api_cache(&self, r: KmemCacheRef) -> Result<&KmemCache, SlabError> {
        self.cache(r).inspect_err(|_| {
            self.slab_fault(r.0, false, "not a live kmem_cache");
        })
    }

    /// The `kmem_cache` and `kmem_cache_node` caches hold the allocator's own structures:
    /// only `kmem_cache_create` and `kmem_cache_destroy` allocate and free their objects.
    pub(crate) fn refuse_boot_cache(&self, r: KmemCacheRef) -> Result<(), SlabError> {
        if r.0 == self.slab.kmem_cache.load(Relaxed)
            || r.0 == self.slab.kmem_cache_node.load(Relaxed)
        {
            return Err(SlabError::BadArgs(
                "the kmem_cache and kmem_cache_node caches hold the allocator's own structures",
            ));
        }
        Ok(())
    }

    /// `kmem_cache_zalloc(cache, gfp)`.
    #[track_caller]
    pub fn kmem_cache_zalloc(&self, r: KmemCacheRef, gfp: Gfp) -> Result<VirtAddr, SlabError> {
        self.kmem_cache_alloc(r, gfp | Gfp::__GFP_ZERO)
    }

    /// The slab page (head) holding a direct-map address, if it is a slab.
    #[inline]
    pub fn virt_to_slab(&self, addr: VirtAddr) -> Option<(u64, &Page)> {
        // Every PFN of mem_map may be read (holes are reserved pages), so no memblock
        // search is needed to ask whether it is a slab.
        let pfn = self.layout.virt_to_phys(addr.0)? >> crate::addr::PAGE_SHIFT;
        let page = self.mem_map.get(pfn)?;
        if page.is_tail() {
            return self.tail_to_slab(page);
        }
        page.is_slab().then_some((pfn, page))
    }

    /// [`Mm::virt_to_slab`] for a tail page: its head PFN is read from RAM, and one past
    /// `mem_map` is the fault reported at the next `take_oopses()`, and no slab.
    fn tail_to_slab(&self, tail: &Page) -> Option<(u64, &Page)> {
        let head = tail.word();
        let hp = self.mem_map.page(head);
        hp.is_slab().then_some((head, hp))
    }

    /// `kmem_cache_free(cache, object)`: refused with a clear error (and, with slab_debug,
    /// the kernel's report) for objects that are not live objects of `cache`.
    #[track_caller]
    pub fn kmem_cache_free(&self, r: KmemCacheRef, addr: VirtAddr) -> Result<(), SlabError> {
        self.kmem_cache_free_caller(r, addr, crate::slab::CallSite::caller())
    }

    /// `kmem_cache_free` recording `caller` as the freer.
    pub fn kmem_cache_free_caller(
        &self,
        r: KmemCacheRef,
        addr: VirtAddr,
        caller: crate::slab::CallSite,
    ) -> Result<(), SlabError> {
        self.refuse_boot_cache(r)?;
        self.cache_free(r, addr, caller)
    }

    /// Free to any cache, the allocator's own included.
    pub(crate) fn cache_free(
        &self,
        r: KmemCacheRef,
        addr: VirtAddr,
        caller: crate::slab::CallSite,
    ) -> Result<(), SlabError> {
        let s = self.api_cache(r)?;
        let (pfn, page) = self.virt_to_slab(addr).ok_or(SlabError::NotSlabObject(
            addr,
            "not in a slab (kmem_cache_free of non-slab memory)",
        ))?;
        if page.slab_cache() != r.0 {
            return Err(self.wrong_cache(s, page.slab_cache(), pfn, addr));
        }
        self.free_object(s, pfn, page, addr, caller)
    }

    /// `cache_from_obj()`'s warning for an object freed to a cache it does not belong to
    /// (`WARN(cachep && cachep != s, "%s: Wrong slab cache. %s but object is from %s\n")`,
    /// mm/slab.h of Linux 6.5: `cache_from_obj` at line 652, its `WARN` nine lines on), then
    /// `print_tracking()`. The kernel goes on to free the object to its real cache; here the
    /// free is refused. A `slab_cache` that is no live cache is the fault of following it.
    #[cold]
    #[inline(never)]
    pub(crate) fn wrong_cache(
        &self,
        s: &KmemCache,
        actual: u64,
        pfn: u64,
        addr: VirtAddr,
    ) -> SlabError {
        let actual = match self.cache_at(actual) {
            Ok(a) => a,
            Err(e) => return e,
        };
        self.warn_report(
            "mm/slab.h",
            661,
            "cache_from_obj",
            format_args!(
                "cache_from_obj: Wrong slab cache. {} but object is from {}",
                s.name(),
                actual.name()
            ),
        );
        if let Some(object) = self
            .object_index(actual, pfn, addr.0)
            .map(|i| self.object_at(actual, pfn, i))
        {
            self.print_tracking(actual, object);
        }
        SlabError::WrongCache {
            cache: s.name(),
            actual: actual.name(),
        }
    }

    /// The checks and the free shared by `kmem_cache_free` and `kfree`, for an address in
    /// the slab at `pfn` whose `struct page` is `page`.
    pub(crate) fn free_object(
        &self,
        s: &KmemCache,
        pfn: u64,
        page: &Page,
        addr: VirtAddr,
        caller: crate::slab::CallSite,
    ) -> Result<(), SlabError> {
        let object = addr.0;
        if self.object_index_in(s, page, pfn, object).is_none() {
            if s.is_debug() {
                self.slab_err_invalid_pointer(s, pfn, object);
            }
            return Err(SlabError::NotSlabObject(
                addr,
                "not the start of an object (a pointer into the middle of one?)",
            ));
        }
        let site = caller;
        if self.slab_want_init_on_free(s) {
            // Wipe only what is really being freed: a double free must not cut the
            // freelist the object is already on.
            if self.looks_free(s, pfn, object) {
                return Err(self.naive_double_free(s, object));
            }
            self.slab_fill(object, 0, s.object_size() as u64)?;
        }
        self.slab_free(s, pfn, object, site)
    }
}

/// The node list lock held, interrupts disabled.
pub(crate) struct NodeGuard<'a, P: Platform> {
    mm: &'a Mm<P>,
    n: &'a KmemCacheNode,
    flags: crate::IrqFlags,
}

impl<P: Platform> Drop for NodeGuard<'_, P> {
    fn drop(&mut self) {
        self.n.list_lock.unlock();
        self.mm.platform.local_irq_restore(self.flags);
    }
}
