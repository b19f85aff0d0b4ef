//! The SLUB allocation and free paths (`mm/slub.c` of Linux 6.6): the lockless per-CPU
//! fast paths, the slow path through per-CPU partial slabs, the node partial list and new
//! slabs, remote frees with compare-exchange on the slab's (freelist, counters), and
//! flushing.
//!
//! Files: `mod.rs` (free pointers, slab counters, the compare-exchanges, `NodeGuard`),
//! `alloc.rs` (fast and slow allocation paths), `partial.rs` (partial lists, flushing),
//! `free.rs` (free paths), `new_slab.rs` (`new_slab()`, `discard_slab()`), `api.rs`
//! (`kmem_cache_alloc()`, `kmem_cache_free()`).
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

mod alloc;
mod api;
mod free;
mod new_slab;
mod partial;

pub(crate) use free::FreeHead;

use core::sync::atomic::Ordering::{AcqRel, Acquire, Relaxed};

use crate::addr::{Pfn, PAGE_SIZE};
use crate::mm_types::{Page, PG_SLAB};
use crate::platform::Platform;
use crate::slab::cache::{KmemCache, KmemCacheCpu, KmemCacheNode};
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
            .map(|phys| self.ram().read::<u64>(phys))
        {
            Some(Ok(v)) => Ok(v),
            _ => Err(self.slab_fault(va, false, crate::slab::Reason::SlabMemoryOutsideRam)),
        }
    }

    /// Write a word of slab memory through the door (see [`Mm::load_word`]).
    #[inline]
    pub(crate) fn store_word(&self, va: u64, v: u64) -> Result<(), SlabError> {
        match self
            .layout
            .virt_to_phys(va)
            .map(|phys| self.ram().write::<u64>(phys, v))
        {
            Some(Ok(())) => Ok(()),
            _ => Err(self.slab_fault(va, true, crate::slab::Reason::SlabMemoryOutsideRam)),
        }
    }

    /// `memset()` of slab memory through the door (see [`Mm::load_word`]).
    pub(crate) fn slab_fill(&self, va: u64, byte: u8, len: u64) -> Result<(), SlabError> {
        if len == 0 {
            return Ok(());
        }
        match self.kfill(va, byte, len) {
            Ok(()) => Ok(()),
            Err(e) => Err(self.slab_fault(e.addr, true, crate::slab::Reason::SlabMemoryOutsideRam)),
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
    pub(crate) fn next_free(&self, s: &KmemCache, pfn: Pfn, object: u64) -> Result<u64, SlabError> {
        if self.object_index(s, pfn, object).is_none() {
            return Err(self.freelist_corrupt(s, pfn, object));
        }
        self.get_freepointer(s, object)
    }

    /// [`Mm::next_free`] with the slab's `struct page` in hand.
    #[inline(always)]
    pub(crate) fn next_free_in(
        &self,
        s: &KmemCache,
        page: &Page,
        pfn: Pfn,
        object: u64,
    ) -> Result<u64, SlabError> {
        if self.object_index_in(s, page, pfn, object).is_none() {
            return Err(self.freelist_corrupt(s, pfn, object));
        }
        self.get_freepointer(s, object)
    }

    #[cold]
    #[inline(never)]
    fn freelist_corrupt(&self, s: &KmemCache, pfn: Pfn, object: u64) -> SlabError {
        crate::vmstat::VmEvents::add(&self.events().bug_slab, 1);
        if s.is_debug() {
            self.slab_err(s, pfn, format_args!("Freepointer corrupt"));
            return SlabError::Corrupted {
                addr: object,
                what: crate::slab::Reason::FreelistPointerCorrupted,
            };
        }
        // get_freepointer() dereferences `object + s->offset`.
        self.slab_fault(
            object.wrapping_add(s.fp_offset() as u64),
            false,
            crate::slab::Reason::FreelistPointerCorrupted,
        )
    }

    /// `slab_address()`.
    #[inline]
    pub(crate) fn slab_address(&self, pfn: Pfn) -> u64 {
        self.layout.page_offset.wrapping_add(pfn.phys().0)
    }

    /// The address of object `idx` of the slab at `pfn` (past its left red zone).
    #[inline]
    pub(crate) fn object_at(&self, s: &KmemCache, pfn: Pfn, idx: u16) -> u64 {
        self.slab_address(pfn)
            .wrapping_add(s.red_left_pad() as u64)
            .wrapping_add(idx as u64 * s.size() as u64)
    }

    /// `obj_to_index()`; `None` if `va` is not the start of an object of the slab: at an
    /// object boundary, among the slab's `objects`, and wholly inside the slab's pages
    /// whatever its counters say. The division is a multiplication by `ceil(2^48 / size)`,
    /// exact for every offset and size below 2^24 (`reciprocal_divide`).
    #[inline(always)]
    pub(crate) fn object_index(&self, s: &KmemCache, pfn: Pfn, va: u64) -> Option<u16> {
        self.object_index_in(s, self.mem_map.get(pfn)?, pfn, va)
    }

    /// [`Mm::object_index`] with the slab's `struct page` in hand.
    #[inline(always)]
    pub(crate) fn object_index_in(
        &self,
        s: &KmemCache,
        page: &Page,
        pfn: Pfn,
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
    pub(crate) fn fl_va(&self, s: &KmemCache, pfn: Pfn, idx: u16) -> u64 {
        if idx == NO_OBJECT {
            0
        } else {
            self.object_at(s, pfn, idx)
        }
    }

    /// The freelist index of `va` (0: none), if it is an object of the slab.
    pub(crate) fn fl_idx(&self, s: &KmemCache, pfn: Pfn, va: u64) -> Option<u16> {
        if va == 0 {
            Some(NO_OBJECT)
        } else {
            self.object_index(s, pfn, va)
        }
    }

    /// [`Mm::fl_idx`] with the slab's `struct page` in hand.
    #[inline]
    pub(crate) fn fl_idx_in(&self, s: &KmemCache, page: &Page, pfn: Pfn, va: u64) -> Option<u16> {
        if va == 0 {
            Some(NO_OBJECT)
        } else {
            self.object_index_in(s, page, pfn, va)
        }
    }

    /// The slab state of the slab at `pfn`.
    pub fn slab_counters(&self, pfn: Pfn) -> SlabCounters {
        SlabCounters::unpack(self.mem_map.page(pfn).word())
    }

    /// `slab_update_freelist()`: compare-exchange of the (freelist, counters) of the slab
    /// whose `struct page` is `page`, against `old`, the word exactly as it was read (as
    /// the kernel compares against the `counters` it read: a word re-packed from its
    /// fields would differ in bits no field covers, and never match); a failed exchange
    /// counts `CMPXCHG_DOUBLE_FAIL`.
    #[inline]
    fn cmpxchg_slab(&self, s: &KmemCache, page: &Page, old: u64, new: SlabCounters) -> bool {
        let ok = page
            .word_atomic()
            .compare_exchange(old, new.pack(), AcqRel, Acquire)
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
            c.set_slab_pfn(None);
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
        pfn: Pfn,
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
        pfn: Pfn,
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
            .map(|phys| self.ram().read::<u64>(phys))
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
        pfn: Pfn,
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
                    crate::slab::Reason::LinkToForeignPage,
                ),
            },
            FreelistFault::BadPointer => self.freelist_corrupt(s, pfn, object),
            FreelistFault::OutsideRam => self.slab_fault(
                object.wrapping_add(s.fp_offset() as u64),
                false,
                crate::slab::Reason::SlabMemoryOutsideRam,
            ),
        }
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
