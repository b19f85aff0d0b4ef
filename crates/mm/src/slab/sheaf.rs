//! Slab sheaves: per-CPU arrays of free objects in front of the slabs (`mm/slub.c` of
//! Linux 6.18, "slab: add opt-in caching layer of percpu sheaves", and of Linux 7.0, where
//! every cache got them).
//!
//! Selected at boot with [`SlabPercpu::Sheaves`] (`--slab-percpu sheaves`); the default
//! stays the classic per-CPU slab ([`SlabPercpu::CpuSlab`], `mm/slub.c` of 6.6).
//!
//! ## Which kernel each piece follows
//!
//! * Which caches get sheaves and of what capacity: Linux 7.0's
//!   `calculate_sheaf_capacity()` — every cache but the two boot caches
//!   (`kmem_cache`, `kmem_cache_node`: 7.0's `SLAB_NO_OBJ_EXT` test) and caches with
//!   debug flags (`SLAB_DEBUG_FLAGS`, as in 6.18's `do_kmem_cache_create()`): 4, 12, 26 or
//!   60 objects by object size, then grown until the sheaf fills its kmalloc size class
//!   (`kmalloc_size_roundup()`). kmalloc caches get theirs once kmalloc works, as 7.0's
//!   `bootstrap_kmalloc_sheaves()` does. 6.18's opt-in (`kmem_cache_args.sheaf_capacity`
//!   for one cache) is not offered: the boot flag switches every cache.
//! * The structures: `struct slab_sheaf` ([`SheafHeader`] then the object array),
//!   `struct slub_percpu_sheaves` ([`SlubPercpuSheaves`]: `lock`, `main`, `spare`; no
//!   `rcu_free`, kmemlab has no `kfree_rcu`), `struct node_barn` ([`NodeBarn`], pointed
//!   to by `kmem_cache_node.barn` as in 6.18), `MAX_FULL_SHEAVES`.
//! * The paths, as 6.18: `alloc_from_pcs()`, `free_to_pcs()`, `__pcs_replace_empty_main()`,
//!   `__pcs_replace_full_main()`, `__pcs_install_empty_sheaf()`, the barn helpers
//!   (`barn_get_empty_sheaf`, `barn_put_empty_sheaf`, `barn_put_full_sheaf`,
//!   `barn_replace_empty_sheaf`, `barn_replace_full_sheaf`, `barn_shrink`), `refill_sheaf()`,
//!   `alloc_full_sheaf()`, `sheaf_flush_main()` (batches of `PCS_BATCH_MAX`),
//!   `sheaf_flush_unused()`, `pcs_flush_all()` from `flush_cpu_slab()`, `pcs_destroy()`.
//! * Behind the sheaves sits the 6.6 per-CPU slab of [`crate::slab::slub`], as it did in
//!   6.18: a refill is `__kmem_cache_alloc_bulk()`, here that many allocations through the
//!   CPU slab (all or nothing, as the bulk call), and a flush is `__kmem_cache_free_bulk()`,
//!   here that many frees through `do_slab_free()`. (7.0 removed the CPU slab and refills
//!   from the partial lists directly; that part is not followed.)
//!
//! ## `local_trylock` and interrupts
//!
//! 6.18 guards `slub_percpu_sheaves` with a `local_trylock_t`: on a non-RT kernel taking it
//! disables preemption, not interrupts, so an interrupt can arrive while the task holds
//! the lock; the interrupt's own `local_trylock()` then fails and its allocation or free
//! falls back to the slab paths. That is modelled: the lock is a word in the per-CPU
//! structure, and the fast paths pass an interrupt window before taking it and one while
//! holding it (the same two windows as the CPU-slab fast paths). The barn's lock is a
//! `spin_lock_irqsave`, as the kernel's.
//!
//! ## Where sheaves live, and what is checked
//!
//! As in the kernel, a sheaf is a kmalloc'd object: header and object array are in
//! simulated RAM, in the kmalloc cache of their size, so they show in `/proc/slabinfo` and
//! `/proc/meminfo` as the kernel's do; the barn is kmalloc'd too, and the per-CPU structure
//! is in the per-CPU areas next to `kmem_cache_cpu`. Sheaves are allocated from their
//! kmalloc cache through its CPU slab, never through its own sheaves, so that a sheaf for
//! `kmalloc-1k` never needs a sheaf of `kmalloc-1k` first.
//!
//! Nothing read back is trusted before it is checked: a sheaf pointer (per-CPU `main`,
//! `spare`, a barn list link) must lead to a header naming this cache and its capacity,
//! with a size no larger than the capacity — on the slow paths also to a live kmalloc
//! object big enough for the whole sheaf; every object taken from a sheaf must be an object
//! boundary in a slab of this cache before it is handed out or freed; the barn must be a
//! kmalloc object; barn lists are followed one checked link at a time. A check that fails
//! is the fault the kernel would take following the pointer (an oops on the console), the
//! corrupted sheaf or list is dropped (its objects leak, as a corrupted CPU freelist's do)
//! and the operation falls back or fails with [`SlabError::Corrupted`].
//!
//! Objects in sheaves are allocated as far as their slabs are concerned (`inuse` counts
//! them), so `/proc/slabinfo`'s active objects include them, as the kernel's do; the
//! checker counts them as free objects of the cache and checks they are not counted twice
//! against their slabs.

use core::sync::atomic::{AtomicU32, AtomicU64, Ordering::Relaxed};

use crate::gfp::Gfp;
use crate::percpu::PerCpuPtr;
use crate::platform::Platform;
use crate::slab::cache::KmemCache;
use crate::slab::stats::StatItem;
use crate::slab::{SlabError, SlabFlags};
use crate::sync::TryLock;
use crate::{Mm, VirtAddr};

/// The per-CPU layer a machine boots with (`--slab-percpu`).
#[derive(Copy, Clone, Debug, PartialEq, Eq, Default)]
pub enum SlabPercpu {
    /// The per-CPU slab with its lockless freelist and tid (Linux 2.6.22 – 6.17).
    #[default]
    CpuSlab,
    /// Per-CPU sheaves and per-node barns in front of it (Linux 6.18 opt-in, 7.0 default).
    Sheaves,
}

impl SlabPercpu {
    /// The flag's spelling: `cpu-slab` or `sheaves`.
    pub fn name(self) -> &'static str {
        match self {
            SlabPercpu::CpuSlab => "cpu-slab",
            SlabPercpu::Sheaves => "sheaves",
        }
    }

    /// Parse `cpu-slab` or `sheaves`.
    pub fn parse(text: &str) -> Option<SlabPercpu> {
        match text {
            "cpu-slab" | "cpu_slab" => Some(SlabPercpu::CpuSlab),
            "sheaves" => Some(SlabPercpu::Sheaves),
            _ => None,
        }
    }
}

/// `MAX_FULL_SHEAVES`: full sheaves a barn keeps before frees flush to slabs (6.18).
pub const MAX_FULL_SHEAVES: u32 = 10;

/// `PCS_BATCH_MAX`: objects moved off the main sheaf per locked step of a flush (6.18).
const PCS_BATCH_MAX: usize = 32;

/// Bytes of a sheaf's header: `struct slab_sheaf` up to `objects[]` on x86-64 in 6.18
/// (the `barn_list`/`rcu_head` union, `cache`, `size`, `node`, `pfmemalloc`), so that 7.0's
/// capacity rounding gives the kernel's numbers.
pub const SHEAF_HEADER: u64 = 40;

/// `struct slab_sheaf`'s header, in RAM; `objects[capacity]` (kernel addresses) follows.
/// Five 64-bit words, so that the fast paths can check and use a whole sheaf through one
/// view of `5 + capacity` words ([`SheafView`]).
#[repr(C)]
#[derive(zerocopy::FromBytes)]
pub struct SheafHeader {
    /// `barn_list`: the next sheaf on a barn list, 0 for none (the lists are used as
    /// stacks, `list_add` and `list_first_entry`, so one link suffices).
    barn_next: AtomicU64,
    /// The other half of the `barn_list` / `rcu_head` union (unused here).
    _rcu: AtomicU64,
    /// `cache`: the owning `kmem_cache`.
    cache: AtomicU64,
    /// `size`: objects held.
    size: AtomicU64,
    /// The capacity it was made for (`s->sheaf_capacity`; the kernel keeps a capacity in
    /// the union for prefilled sheaves only, and `node`/`pfmemalloc` in this word),
    /// checked on every use.
    capacity: AtomicU64,
}

impl SheafHeader {
    /// `size`, cut to 32 bits as the kernel's `unsigned int`.
    #[inline]
    fn size(&self) -> u32 {
        self.size.load(Relaxed) as u32
    }
    #[inline]
    fn set_size(&self, size: u32) {
        self.size.store(size as u64, Relaxed);
    }
    #[inline]
    fn capacity(&self) -> u32 {
        self.capacity.load(Relaxed) as u32
    }
}

/// Words of [`SheafHeader`].
const HEADER_WORDS: u64 = SHEAF_HEADER / 8;
/// The header words the fast paths use.
const WORD_CACHE: u64 = 2;
const WORD_SIZE: u64 = 3;
const WORD_CAPACITY: u64 = 4;

/// A whole sheaf, header and objects, through one checked view of RAM: the fast paths'
/// form of a sheaf (one door check per operation instead of one per word).
struct SheafView {
    words: crate::mem::RamArray<AtomicU64>,
    size: u32,
}

impl SheafView {
    #[inline(always)]
    fn word(&self, i: u64) -> u64 {
        self.words.get(i).map_or(0, |w| w.load(Relaxed))
    }
    #[inline(always)]
    fn set_size(&mut self, size: u32) {
        if let Some(w) = self.words.get(WORD_SIZE) {
            w.store(size as u64, Relaxed);
        }
        self.size = size;
    }
    #[inline(always)]
    fn object(&self, i: u32) -> u64 {
        self.word(HEADER_WORDS + i as u64)
    }
    #[inline(always)]
    fn set_object(&self, i: u32, object: u64) {
        if let Some(w) = self.words.get(HEADER_WORDS + i as u64) {
            w.store(object, Relaxed);
        }
    }
}

const _: () = assert!(core::mem::size_of::<SheafHeader>() as u64 == SHEAF_HEADER);

/// `struct slub_percpu_sheaves`, in the per-CPU areas.
#[repr(C, align(32))]
#[derive(zerocopy::FromBytes)]
pub struct SlubPercpuSheaves {
    /// `local_trylock_t lock`: 1 while this CPU's task holds it.
    lock: AtomicU64,
    /// `main`: never 0 while unlocked (0 here only after a corruption was reported).
    main: AtomicU64,
    /// `spare`: empty or full, or 0.
    spare: AtomicU64,
    _pad: AtomicU64,
}

/// `struct node_barn`, kmalloc'd.
#[repr(C)]
#[derive(zerocopy::FromBytes)]
pub struct NodeBarn {
    lock: TryLock,
    nr_full: AtomicU32,
    sheaves_full: AtomicU64,
    sheaves_empty: AtomicU64,
    nr_empty: AtomicU32,
    _pad: AtomicU32,
}

/// Which barn list.
#[derive(Copy, Clone, PartialEq, Eq)]
enum BarnList {
    Full,
    Empty,
}

/// Why `barn_replace_full_sheaf()` refused (its `-E2BIG` and `-ENOMEM`).
enum ReplaceFull {
    TooManyFull,
    NoEmpty,
}

/// What the sheaves of one cache hold now ([`Mm::sheaves_info`]).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SheavesInfo {
    /// `s->sheaf_capacity`.
    pub capacity: u32,
    /// Per CPU: objects in the main sheaf, and in the spare (`None`: no spare).
    pub cpus: [(u32, Option<u32>); 8],
    /// Per CPU: the main sheaf's kernel address.
    pub mains: [u64; 8],
    /// CPUs described in `cpus` (at most 8).
    pub nr_cpus: usize,
    /// The barn's full sheaves.
    pub barn_full: u32,
    /// The barn's empty sheaves.
    pub barn_empty: u32,
    /// Objects in all sheaves (per-CPU and barn).
    pub objects: u64,
}

/// The local lock held: unlock on every way out.
struct PcsGuard<'a>(&'a SlubPercpuSheaves);

impl Drop for PcsGuard<'_> {
    #[inline(always)]
    fn drop(&mut self) {
        self.0.lock.store(0, Relaxed);
    }
}

/// `local_trylock()`.
#[inline(always)]
fn pcs_trylock(pcs: &SlubPercpuSheaves) -> Option<PcsGuard<'_>> {
    if pcs.lock.load(Relaxed) != 0 {
        return None;
    }
    pcs.lock.store(1, Relaxed);
    Some(PcsGuard(pcs))
}

impl KmemCache {
    /// `s->sheaf_capacity` (0: the cache has no sheaves, 7.0's `cache_has_sheaves()`).
    #[inline]
    pub fn sheaf_capacity(&self) -> u32 {
        self.sheaf_capacity.load(Relaxed)
    }

    fn cpu_sheaves_ptr(&self) -> PerCpuPtr {
        let v = self.cpu_sheaves.load(Relaxed);
        PerCpuPtr {
            offset: v as u32,
            size: (v >> 32) as u32,
        }
    }
}

/// 7.0's size steps of `calculate_sheaf_capacity()` before rounding up.
fn base_sheaf_capacity(size: u32) -> u32 {
    if size as usize >= crate::addr::PAGE_SIZE {
        4
    } else if size >= 1024 {
        12
    } else if size >= 256 {
        26
    } else {
        60
    }
}

impl<P: Platform> Mm<P> {
    /// Does this machine run sheaves?
    pub fn slab_percpu(&self) -> SlabPercpu {
        self.slab.config.percpu
    }

    /// Interrupts that found this CPU's sheaves locked and fell back to the slab paths
    /// (`local_trylock()` failures), since boot.
    pub fn sheaves_trylock_failures(&self) -> u64 {
        self.slab.pcs_trylock_fail.load(Relaxed)
    }

    /// `calculate_sheaf_capacity()` of Linux 7.0 for `s` (0: no sheaves).
    pub(crate) fn calculate_sheaf_capacity(&self, s: &KmemCache) -> u32 {
        if s.flags().intersects(SlabFlags::DEBUG) {
            return 0;
        }
        let capacity = base_sheaf_capacity(s.size());
        let bytes = SHEAF_HEADER as usize + capacity as usize * 8;
        // kmalloc_size_roundup(): the size of the kmalloc class the sheaf lands in.
        let Some(class) = self
            .kmalloc_slab(bytes, Gfp::GFP_KERNEL)
            .and_then(|r| self.cache(r).ok())
        else {
            return 0;
        };
        ((class.object_size() as u64 - SHEAF_HEADER) / 8) as u32
    }

    /// Bytes of a sheaf of `s`.
    fn sheaf_bytes(s: &KmemCache) -> u64 {
        SHEAF_HEADER + s.sheaf_capacity() as u64 * 8
    }

    /// This CPU's (or `cpu`'s) `slub_percpu_sheaves`, if `s->cpu_sheaves` describes one
    /// inside the per-CPU areas.
    #[inline(always)]
    fn pcs(&self, s: &KmemCache, cpu: usize) -> Option<&SlubPercpuSheaves> {
        let ptr = s.cpu_sheaves_ptr();
        if ptr.size as usize != core::mem::size_of::<SlubPercpuSheaves>() {
            return None;
        }
        self.percpu.dyn_get(cpu, ptr)
    }

    #[cold]
    #[inline(never)]
    fn pcs_corrupt(&self, s: &KmemCache) -> SlabError {
        self.slab_fault(
            s.cpu_sheaves.load(Relaxed),
            false,
            "kmem_cache.cpu_sheaves corrupted",
        )
    }

    /// The header of the sheaf at `va` (a pointer read from RAM): it must name `s` and its
    /// capacity and hold no more than that. The fast paths' check.
    #[inline]
    fn sheaf(&self, s: &KmemCache, va: u64) -> Option<&SheafHeader> {
        // One `__pa()` of the start: the direct map is linear, and the door checks that
        // the whole header is RAM.
        let h: &SheafHeader = self.ram.view(self.layout.virt_to_phys(va)?).ok()?;
        let cap = s.sheaf_capacity();
        (h.cache.load(Relaxed) == s.self_va.load(Relaxed) && h.capacity() == cap && h.size() <= cap)
            .then_some(h)
    }

    /// [`Mm::sheaf`] and, for the slow paths, a live kmalloc object holding the whole
    /// sheaf.
    fn sheaf_checked(&self, s: &KmemCache, va: u64) -> Option<&SheafHeader> {
        let h = self.sheaf(s, va)?;
        self.is_kmalloc_object(va, Self::sheaf_bytes(s))
            .then_some(h)
    }

    /// Is `va` the start of a live-looking kmalloc slab object of at least `bytes`?
    fn is_kmalloc_object(&self, va: u64, bytes: u64) -> bool {
        let Some((pfn, page)) = self.virt_to_slab(VirtAddr(va)) else {
            return false;
        };
        let Ok(k) = self.cache(crate::slab::KmemCacheRef(page.slab_cache())) else {
            return false;
        };
        k.flags().contains(SlabFlags::KMALLOC)
            && k.object_size() as u64 >= bytes
            && self.object_index_in(k, page, pfn, va).is_some()
    }

    /// A sheaf pointer that failed its checks: the fault of following it, reported.
    #[cold]
    #[inline(never)]
    fn sheaf_corrupt(&self, va: u64) -> SlabError {
        crate::vmstat::VmEvents::add(&self.events().bug_slab, 1);
        self.slab_fault(va, false, "slab sheaf pointer corrupted")
    }

    /// The address of slot `i` of the sheaf at `va`.
    #[inline]
    fn slot(va: u64, i: u32) -> u64 {
        va.wrapping_add(SHEAF_HEADER + i as u64 * 8)
    }

    /// The slab of `object` if it is an object boundary in a slab of `s`.
    #[inline(always)]
    pub(crate) fn sheaf_object_slab(&self, s: &KmemCache, object: u64) -> Option<u64> {
        let (pfn, page) = self.virt_to_slab(VirtAddr(object))?;
        (page.slab_cache() == s.self_va.load(Relaxed)
            && self.object_index_in(s, page, pfn, object).is_some())
        .then_some(pfn)
    }

    /// An object read from a sheaf that is no object of the cache: the fault of using it.
    #[cold]
    #[inline(never)]
    fn sheaf_object_corrupt(&self, object: u64) -> SlabError {
        crate::vmstat::VmEvents::add(&self.events().bug_slab, 1);
        self.slab_fault(object, true, "slab sheaf object corrupted")
    }

    // ----- the fast paths ------------------------------------------------------------

    /// The sheaf at `va` as one checked view of RAM, its header naming `s` and its
    /// capacity and its size no larger: the fast paths' [`Mm::sheaf`].
    #[inline(always)]
    fn sheaf_view(&self, s: &KmemCache, va: u64) -> Option<SheafView> {
        let cap = s.sheaf_capacity();
        let phys = self.layout.virt_to_phys(va)?;
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
    fn main_view(&self, s: &KmemCache, pcs: &SlubPercpuSheaves) -> Result<SheafView, SlabError> {
        let va = pcs.main.load(Relaxed);
        match self.sheaf_view(s, va) {
            Some(v) => Ok(v),
            None => {
                pcs.main.store(0, Relaxed);
                Err(self.sheaf_corrupt(va))
            }
        }
    }

    /// `alloc_from_pcs()`: an object from this CPU's main sheaf; `Ok(None)` sends the
    /// caller to the slab paths (lock held by the interrupted task, or no full sheaf to
    /// be had without blocking). Out of line, so that the CPU-slab fast path it sits
    /// beside keeps its registers.
    #[inline(never)]
    pub(crate) fn alloc_from_pcs(
        &self,
        s: &KmemCache,
        gfp: Gfp,
        cpu: usize,
    ) -> Result<Option<u64>, SlabError> {
        let Some(pcs) = self.pcs(s, cpu) else {
            return Err(self.pcs_corrupt(s));
        };
        self.irq_window();
        let Some(mut guard) = pcs_trylock(pcs) else {
            self.slab.pcs_trylock_fail.fetch_add(1, Relaxed);
            return Ok(None);
        };
        // local_trylock() leaves interrupts enabled.
        self.irq_window();
        if pcs.main.load(Relaxed) == 0 {
            // Dropped after a reported corruption: this CPU runs without sheaves.
            return Ok(None);
        }
        let mut main = self.main_view(s, pcs)?;
        if main.size == 0 {
            let Some(g) = self.__pcs_replace_empty_main(s, pcs, guard, gfp)? else {
                return Ok(None);
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
        Ok(Some(object))
    }

    /// `free_to_pcs()`: put `object` (already checked to be an object of `s`) on this
    /// CPU's main sheaf; `Ok(false)` sends the caller to the slab paths. Out of line, as
    /// [`Mm::alloc_from_pcs`].
    #[inline(never)]
    pub(crate) fn free_to_pcs(&self, s: &KmemCache, object: u64) -> Result<bool, SlabError> {
        let Some(pcs) = self.pcs(s, self.platform.smp_processor_id()) else {
            return Err(self.pcs_corrupt(s));
        };
        self.irq_window();
        let Some(mut guard) = pcs_trylock(pcs) else {
            self.slab.pcs_trylock_fail.fetch_add(1, Relaxed);
            return Ok(false);
        };
        self.irq_window();
        let cap = s.sheaf_capacity();
        if pcs.main.load(Relaxed) == 0 {
            return Ok(false);
        }
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

    // ----- replacing the main sheaf ---------------------------------------------------

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
        let spare = pcs.spare.load(Relaxed);
        if spare != 0 {
            let Some(h) = self.sheaf_checked(s, spare) else {
                pcs.spare.store(0, Relaxed);
                return Err(self.sheaf_corrupt(spare));
            };
            if h.size() > 0 {
                pcs.spare.store(pcs.main.load(Relaxed), Relaxed);
                pcs.main.store(spare, Relaxed);
                return Ok(Some(guard));
            }
        }
        let barn = self.get_barn(s)?;
        if let Some(full) = self.barn_replace_empty_sheaf(s, barn, pcs.main.load(Relaxed)) {
            self.stat(s, StatItem::BarnGet);
            pcs.main.store(full, Relaxed);
            return Ok(Some(guard));
        }
        self.stat(s, StatItem::BarnGetFail);
        let can_alloc = gfp.allows_blocking();
        let mut empty = 0;
        if can_alloc {
            empty = pcs.spare.swap(0, Relaxed);
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
            let spare = pcs.spare.load(Relaxed);
            let mut put_fail = false;
            let mut flushed_spare = None;
            if spare == 0 {
                if let Some(empty) = self.barn_get_empty_sheaf(s, barn) {
                    pcs.spare.store(pcs.main.load(Relaxed), Relaxed);
                    pcs.main.store(empty, Relaxed);
                    return Ok(Some(guard));
                }
            } else {
                let Some(h) = self.sheaf_checked(s, spare) else {
                    pcs.spare.store(0, Relaxed);
                    return Err(self.sheaf_corrupt(spare));
                };
                if h.size() < cap {
                    pcs.spare.store(pcs.main.load(Relaxed), Relaxed);
                    pcs.main.store(spare, Relaxed);
                    return Ok(Some(guard));
                }
                match self.barn_replace_full_sheaf(s, barn, pcs.main.load(Relaxed)) {
                    Ok(empty) => {
                        self.stat(s, StatItem::BarnPut);
                        pcs.main.store(empty, Relaxed);
                        return Ok(Some(guard));
                    }
                    Err(ReplaceFull::TooManyFull) => {
                        // The spare exists and is full: it is flushed and becomes the
                        // empty sheaf.
                        self.stat(s, StatItem::BarnPutFail);
                        pcs.spare.store(0, Relaxed);
                        flushed_spare = Some(spare);
                    }
                    Err(ReplaceFull::NoEmpty) => put_fail = true,
                }
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

    // ----- sheaves: allocation, refill, flush --------------------------------------

    /// `alloc_empty_sheaf()`: a zeroed sheaf from the kmalloc cache of its size (through
    /// that cache's CPU slab, never its sheaves).
    fn alloc_empty_sheaf(&self, s: &KmemCache, gfp: Gfp) -> Option<u64> {
        self.try_alloc_empty_sheaf(s, gfp).ok()
    }

    /// [`Mm::alloc_empty_sheaf`], saying why it failed.
    fn try_alloc_empty_sheaf(&self, s: &KmemCache, gfp: Gfp) -> Result<u64, SlabError> {
        let bytes = Self::sheaf_bytes(s);
        let r = self
            .kmalloc_slab(bytes as usize, Gfp::GFP_KERNEL)
            .ok_or(SlabError::TooLarge(bytes as usize))?;
        let k = self.cache_at(r.0)?;
        let va = self.slab_alloc_from(k, gfp & !Gfp::__GFP_ZERO)?;
        self.slab_fill(va, 0, SHEAF_HEADER)?;
        let h: &SheafHeader = self.kview(va).map_err(|e| SlabError::Corrupted {
            addr: e.addr,
            what: "a sheaf outside the direct map",
        })?;
        h.cache.store(s.self_va.load(Relaxed), Relaxed);
        h.capacity.store(s.sheaf_capacity() as u64, Relaxed);
        self.stat(s, StatItem::SheafAlloc);
        Ok(va)
    }

    /// `free_empty_sheaf()`: back to its kmalloc cache.
    fn free_empty_sheaf(&self, s: &KmemCache, va: u64) {
        let Some((pfn, page)) = self.virt_to_slab(VirtAddr(va)) else {
            return;
        };
        let Ok(k) = self.cache(crate::slab::KmemCacheRef(page.slab_cache())) else {
            return;
        };
        if self.object_index_in(k, page, pfn, va).is_some() {
            let _ = self.do_slab_free(k, pfn, va);
            self.stat(s, StatItem::SheafFree);
        }
    }

    /// `refill_sheaf()`: fill the sheaf at `va` to capacity from the slabs, all or nothing
    /// (`__kmem_cache_alloc_bulk()` frees what it got when it fails).
    fn refill_sheaf(&self, s: &KmemCache, va: u64, gfp: Gfp) -> Result<(), SlabError> {
        let h = self
            .sheaf_checked(s, va)
            .ok_or_else(|| self.sheaf_corrupt(va))?;
        let cap = s.sheaf_capacity();
        let start = h.size();
        let cpu = self.platform.smp_processor_id();
        let mut filled = start;
        let mut failure = None;
        while filled < cap {
            match self.slab_alloc_on(s, gfp, cpu) {
                Ok(object) => {
                    if let Err(e) = self.store_word(Self::slot(va, filled), object) {
                        let _ = self.free_to_slab(s, object);
                        failure = Some(e);
                        break;
                    }
                    filled += 1;
                }
                Err(e) => {
                    failure = Some(e);
                    break;
                }
            }
        }
        if let Some(e) = failure {
            for i in start..filled {
                if let Ok(object) = self.load_word(Self::slot(va, i)) {
                    let _ = self.free_to_slab(s, object);
                }
            }
            return Err(e);
        }
        h.set_size(filled);
        self.stat_add(s, StatItem::SheafRefill, (filled - start) as u64);
        Ok(())
    }

    /// `alloc_full_sheaf()`.
    fn alloc_full_sheaf(&self, s: &KmemCache, gfp: Gfp) -> Option<u64> {
        let va = self.alloc_empty_sheaf(s, gfp)?;
        if self.refill_sheaf(s, va, gfp).is_err() {
            self.free_empty_sheaf(s, va);
            return None;
        }
        Some(va)
    }

    /// One object back to its slab (`__kmem_cache_free_bulk()` of one), after checking it
    /// is an object of `s`.
    fn free_to_slab(&self, s: &KmemCache, object: u64) -> Result<(), SlabError> {
        match self.sheaf_object_slab(s, object) {
            Some(pfn) => self.do_slab_free(s, pfn, object),
            None => {
                crate::vmstat::VmEvents::add(&self.events().bug_slab, 1);
                Err(self.slab_fault(object, true, "slab sheaf object corrupted"))
            }
        }
    }

    /// `sheaf_flush_unused()`: every object of a sheaf no CPU uses back to the slabs.
    fn sheaf_flush_unused(&self, s: &KmemCache, va: u64) {
        let Some(h) = self.sheaf(s, va) else {
            self.sheaf_corrupt(va);
            return;
        };
        let size = h.size();
        for i in 0..size {
            match self.load_word(Self::slot(va, i)) {
                Ok(object) => {
                    let _ = self.free_to_slab(s, object);
                }
                Err(_) => break,
            }
        }
        h.set_size(0);
        self.stat_add(s, StatItem::SheafFlush, size as u64);
    }

    /// `sheaf_flush_main()`: empty this CPU's main sheaf in batches of `PCS_BATCH_MAX`,
    /// moved out under the lock and freed without it. True if anything was flushed.
    fn sheaf_flush_main(&self, s: &KmemCache, pcs: &SlubPercpuSheaves) -> bool {
        let mut flushed = false;
        let rounds = s.sheaf_capacity() as usize / PCS_BATCH_MAX + 2;
        for _ in 0..rounds {
            let Some(guard) = pcs_trylock(pcs) else {
                return flushed;
            };
            let main_va = pcs.main.load(Relaxed);
            let Some(main) = self.sheaf(s, main_va) else {
                pcs.main.store(0, Relaxed);
                drop(guard);
                self.sheaf_corrupt(main_va);
                return flushed;
            };
            let size = main.size();
            let batch = (size as usize).min(PCS_BATCH_MAX) as u32;
            let mut objects = [0u64; PCS_BATCH_MAX];
            for (i, slot) in objects.iter_mut().enumerate().take(batch as usize) {
                *slot = self
                    .load_word(Self::slot(main_va, size - batch + i as u32))
                    .unwrap_or(0);
            }
            main.set_size(size - batch);
            drop(guard);
            for &object in &objects[..batch as usize] {
                let _ = self.free_to_slab(s, object);
            }
            self.stat_add(s, StatItem::SheafFlush, batch as u64);
            flushed = true;
            if size == batch {
                break;
            }
        }
        flushed
    }

    /// Has `cpu` anything in its sheaves (`has_pcs_used()`)?
    pub(crate) fn pcs_used(&self, s: &KmemCache, cpu: usize) -> bool {
        if s.sheaf_capacity() == 0 {
            return false;
        }
        self.pcs(s, cpu).is_some_and(|pcs| {
            pcs.spare.load(Relaxed) != 0
                || self
                    .sheaf(s, pcs.main.load(Relaxed))
                    .is_some_and(|h| h.size() != 0)
        })
    }

    /// `pcs_flush_all()` on this CPU: the spare flushed and freed, the main flushed (it
    /// stays, empty).
    pub(crate) fn pcs_flush_all(&self, s: &KmemCache) {
        if s.sheaf_capacity() == 0 {
            return;
        }
        let Some(pcs) = self.pcs(s, self.platform.smp_processor_id()) else {
            self.pcs_corrupt(s);
            return;
        };
        let Some(guard) = pcs_trylock(pcs) else {
            return;
        };
        let spare = pcs.spare.swap(0, Relaxed);
        drop(guard);
        if spare != 0 {
            if self.sheaf_checked(s, spare).is_some() {
                self.sheaf_flush_unused(s, spare);
                self.free_empty_sheaf(s, spare);
            } else {
                self.sheaf_corrupt(spare);
            }
        }
        self.sheaf_flush_main(s, pcs);
    }

    // ----- the barn -------------------------------------------------------------------

    /// The node's barn (`get_barn()`): a kmalloc'd `node_barn` named by the node.
    fn get_barn(&self, s: &KmemCache) -> Result<&NodeBarn, SlabError> {
        let n = self.get_node(s)?;
        let va = n.barn.load(Relaxed);
        match self.kview::<NodeBarn>(va) {
            Ok(b) if self.is_kmalloc_object(va, core::mem::size_of::<NodeBarn>() as u64) => Ok(b),
            _ => Err(self.slab_fault(va, false, "kmem_cache_node.barn corrupted")),
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

    fn barn_list(barn: &NodeBarn, which: BarnList) -> (&AtomicU64, &AtomicU32) {
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
    fn barn_get_empty_sheaf(&self, s: &KmemCache, barn: &NodeBarn) -> Option<u64> {
        let flags = self.barn_lock(barn);
        let empty = self.barn_pop(s, barn, BarnList::Empty);
        self.barn_unlock(barn, flags);
        empty
    }

    /// `barn_put_empty_sheaf()` (no limit: used to undo).
    fn barn_put_empty_sheaf(&self, barn: &NodeBarn, s: &KmemCache, va: u64) {
        let flags = self.barn_lock(barn);
        self.barn_push(s, barn, BarnList::Empty, va);
        self.barn_unlock(barn, flags);
    }

    /// `barn_put_full_sheaf()` (no limit: used to undo).
    fn barn_put_full_sheaf(&self, barn: &NodeBarn, s: &KmemCache, va: u64) {
        let flags = self.barn_lock(barn);
        self.barn_push(s, barn, BarnList::Full, va);
        self.barn_unlock(barn, flags);
    }

    /// `barn_replace_empty_sheaf()`: a full sheaf for the empty one, if there is one.
    fn barn_replace_empty_sheaf(&self, s: &KmemCache, barn: &NodeBarn, empty: u64) -> Option<u64> {
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
    fn barn_replace_full_sheaf(
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

    // ----- set up and tear down -------------------------------------------------------

    /// Give `s` its sheaves if this machine runs them and the cache qualifies (7.0's
    /// `calculate_sheaf_capacity()`, `init_percpu_sheaves()`, the barn of
    /// `init_kmem_cache_nodes()`). Needs kmalloc: sheaves and barns are kmalloc'd.
    pub(crate) fn init_cache_sheaves(&self, s: &KmemCache) -> Result<(), SlabError> {
        if self.slab.config.percpu != SlabPercpu::Sheaves || s.sheaf_capacity() != 0 {
            return Ok(());
        }
        let va = s.self_va.load(Relaxed);
        if va == self.slab.kmem_cache.load(Relaxed) || va == self.slab.kmem_cache_node.load(Relaxed)
        {
            return Ok(());
        }
        let capacity = self.calculate_sheaf_capacity(s);
        if capacity == 0 {
            return Ok(());
        }
        let n = self.get_node(s)?;
        let barn = self.kmalloc(
            core::mem::size_of::<NodeBarn>(),
            Gfp::GFP_KERNEL | Gfp::__GFP_ZERO,
        )?;
        let ptr = match self.percpu.alloc(
            &self.platform,
            core::mem::size_of::<SlubPercpuSheaves>(),
            core::mem::align_of::<SlubPercpuSheaves>(),
        ) {
            Some(p) => p,
            None => {
                let _ = self.kfree(barn);
                return Err(SlabError::NoPerCpuSpace);
            }
        };
        // The capacity first: the sheaves are made for it.
        s.sheaf_capacity.store(capacity, Relaxed);
        s.cpu_sheaves
            .store(ptr.offset as u64 | ((ptr.size as u64) << 32), Relaxed);
        for cpu in 0..self.platform.nr_cpus() {
            let main = self.try_alloc_empty_sheaf(s, Gfp::GFP_KERNEL);
            match (main, self.pcs(s, cpu)) {
                (Ok(main), Some(pcs)) => pcs.main.store(main, Relaxed),
                (main, _) => {
                    if let Ok(m) = main {
                        self.free_empty_sheaf(s, m);
                    }
                    self.pcs_destroy(s);
                    let _ = self.kfree(barn);
                    return Err(main.err().unwrap_or(SlabError::NoPerCpuSpace));
                }
            }
        }
        n.barn.store(barn.0, Relaxed);
        Ok(())
    }

    /// `pcs_destroy()` and the barn's `kfree()`: a dying cache's (flushed) sheaves go back.
    pub(crate) fn pcs_destroy(&self, s: &KmemCache) {
        if s.sheaf_capacity() == 0 {
            return;
        }
        for cpu in 0..self.platform.nr_cpus() {
            let Some(pcs) = self.pcs(s, cpu) else { break };
            for slot in [&pcs.main, &pcs.spare] {
                let va = slot.swap(0, Relaxed);
                if va != 0 && self.sheaf_checked(s, va).is_some() {
                    self.sheaf_flush_unused(s, va);
                    self.free_empty_sheaf(s, va);
                }
            }
        }
        if self.pcs(s, 0).is_some() {
            self.percpu.free(&self.platform, s.cpu_sheaves_ptr());
        }
        if let Some(n) = self.get_node_quiet(s) {
            let va = n.barn.swap(0, Relaxed);
            if va != 0 && self.is_kmalloc_object(va, core::mem::size_of::<NodeBarn>() as u64) {
                let _ = self.kfree(VirtAddr(va));
            }
        }
        s.cpu_sheaves.store(0, Relaxed);
        s.sheaf_capacity.store(0, Relaxed);
    }

    // ----- what the sheaves hold ------------------------------------------------------

    /// The objects of each sheaf of `s`, walked without changing anything: `f(sheaf,
    /// object)` for each; an error for a sheaf or barn link that fails its checks.
    pub(crate) fn for_each_sheaf_object(
        &self,
        s: &KmemCache,
        mut f: impl FnMut(u64, u64) -> Result<(), &'static str>,
    ) -> Result<(), &'static str> {
        if s.sheaf_capacity() == 0 {
            return Ok(());
        }
        let mut visit = |va: u64| -> Result<(), &'static str> {
            let h = self
                .sheaf_checked(s, va)
                .ok_or("sheaf pointer is no sheaf of this cache")?;
            for i in 0..h.size() {
                let object = self
                    .kread::<u64>(Self::slot(va, i))
                    .map_err(|_| "sheaf outside RAM")?;
                f(va, object)?;
            }
            Ok(())
        };
        for cpu in 0..self.platform.nr_cpus() {
            let pcs = self
                .pcs(s, cpu)
                .ok_or("kmem_cache.cpu_sheaves is no slub_percpu_sheaves")?;
            if pcs.lock.load(Relaxed) != 0 {
                return Err("a CPU's sheaves are left locked");
            }
            visit(pcs.main.load(Relaxed))?;
            let spare = pcs.spare.load(Relaxed);
            if spare != 0 {
                visit(spare)?;
            }
        }
        let barn = self
            .get_node_quiet(s)
            .map(|n| n.barn.load(Relaxed))
            .and_then(|va| self.kview::<NodeBarn>(va).ok())
            .ok_or("kmem_cache_node.barn is no node_barn")?;
        for which in [BarnList::Full, BarnList::Empty] {
            let (head, nr) = Self::barn_list(barn, which);
            let mut va = head.load(Relaxed);
            let mut count = 0u32;
            while va != 0 {
                count += 1;
                if count > nr.load(Relaxed) {
                    return Err("barn list longer than its count");
                }
                visit(va)?;
                let h = self.sheaf(s, va).ok_or("barn list link is no sheaf")?;
                let size = h.size();
                if (which == BarnList::Full) != (size == s.sheaf_capacity()) {
                    return Err("barn sheaf on the wrong list for its size");
                }
                va = h.barn_next.load(Relaxed);
            }
            if count != nr.load(Relaxed) {
                return Err("barn count differs from its list");
            }
        }
        Ok(())
    }

    /// What the sheaves of the cache hold (`None`: the cache has no sheaves).
    pub fn sheaves_info(&self, r: crate::slab::KmemCacheRef) -> Option<SheavesInfo> {
        let s = self.cache(r).ok()?;
        if s.sheaf_capacity() == 0 {
            return None;
        }
        let mut info = SheavesInfo {
            capacity: s.sheaf_capacity(),
            ..Default::default()
        };
        for cpu in 0..self.platform.nr_cpus().min(info.cpus.len()) {
            let pcs = self.pcs(s, cpu)?;
            let size = |va| self.sheaf(s, va).map_or(0, |h| h.size());
            let spare = pcs.spare.load(Relaxed);
            info.cpus[cpu] = (
                size(pcs.main.load(Relaxed)),
                (spare != 0).then(|| size(spare)),
            );
            info.mains[cpu] = pcs.main.load(Relaxed);
            info.nr_cpus = cpu + 1;
        }
        if let Ok(barn) = self.get_barn(s) {
            info.barn_full = barn.nr_full.load(Relaxed);
            info.barn_empty = barn.nr_empty.load(Relaxed);
        }
        let mut objects = 0;
        let _ = self.for_each_sheaf_object(s, |_, _| {
            objects += 1;
            Ok(())
        });
        info.objects = objects;
        Some(info)
    }
}
