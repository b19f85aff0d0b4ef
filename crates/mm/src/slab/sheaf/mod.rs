//! Slab sheaves: per-CPU arrays of free objects in front of the slabs (`mm/slub.c` of
//! Linux 6.18, "slab: add opt-in caching layer of percpu sheaves", and of Linux 7.0, where
//! every cache got them).
//!
//! Files: `mod.rs` (the structures, views of a sheaf), `pcs.rs` (the per-CPU paths),
//! `bulk.rs` (the bulk interface's sheaf paths),
//! `refill.rs` (refill and flush), `barn.rs` (the node's barn), `setup.rs` (setup,
//! teardown, what the sheaves hold).
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
//!   `sheaf_flush_unused()`, `pcs_flush_all()` from `flush_cpu_slab()`, `pcs_destroy()`;
//!   for the bulk calls, `alloc_from_pcs_bulk()` and `free_to_pcs_bulk()`.
//! * Behind the sheaves sits the 6.6 per-CPU slab of [`crate::slab::slub`], as it did in
//!   6.18: `refill_sheaf()` is `__kmem_cache_alloc_bulk()` (the CPU freelist drained with
//!   interrupts off, `___slab_alloc()` when it runs dry; all or nothing), and
//!   `sheaf_flush_unused()` / `sheaf_flush_main()` are `__kmem_cache_free_bulk()` (one
//!   detached freelist per slab), both of [`crate::slab::bulk`], through a host array of
//!   up to 128 objects at a time. (7.0 removed the CPU slab and refills from the partial
//!   lists directly; that part is not followed.)
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
//! them), so `/proc/slabinfo`'s active objects include them, as the kernel's do. Like
//! 6.18's, the sheaves' free paths (`free_to_pcs()`, `free_to_pcs_bulk()`) do not look for
//! double frees: `kfree(r); kfree(r)` puts `r` in the main sheaf twice, and two later
//! allocations both get it. The checker ([`Mm::check`]) reports what that leaves: an
//! object twice in the sheaves (every CPU's main and spare and the barn together), or in a
//! sheaf and free on its slab's freelist too.

mod barn;
mod bulk;
mod pcs;
mod refill;
mod setup;

use core::sync::atomic::{AtomicU32, AtomicU64, Ordering::Relaxed};

use crate::gfp::Gfp;
use crate::percpu::PerCpuPtr;
use crate::platform::Platform;
use crate::slab::cache::KmemCache;
use crate::slab::{SlabError, SlabFlags};
use crate::sync::TryLock;
use crate::{Mm, Pfn, VirtAddr};

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
    /// kmemlab's own: `local_trylock()` failures on this CPU (an interrupt that found the
    /// lock held), a plain per-CPU increment as `this_cpu_inc()` of an event counter. It
    /// sits where 6.18 has `rcu_free` (the sheaf `kfree_rcu()` fills), which kmemlab does
    /// not model.
    trylock_fail: AtomicU64,
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

    #[inline]
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
    /// (`local_trylock()` failures), since boot: the per-CPU counters of every live
    /// cache with sheaves, and those of the caches destroyed (folded in by
    /// `pcs_destroy()`).
    pub fn sheaves_trylock_failures(&self) -> u64 {
        let mut live = 0u64;
        self.for_each_cache(|s| {
            if s.sheaf_capacity() != 0 {
                for cpu in 0..self.platform.nr_cpus() {
                    if let Some(pcs) = self.pcs(s, cpu) {
                        live = live.wrapping_add(pcs.trylock_fail.load(Relaxed));
                    }
                }
            }
            None::<()>
        });
        self.slab.pcs_trylock_fail.load(Relaxed).wrapping_add(live)
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

    /// This CPU's (or `cpu`'s) `slub_percpu_sheaves` (`this_cpu_ptr(s->cpu_sheaves)` in
    /// 6.18), if `s->cpu_sheaves` describes one inside the per-CPU areas: its size that of
    /// the structure, its offset aligned to it and the whole structure inside the dynamic
    /// area, tested at once on the word as read (one mask and one compare, as the size
    /// and the area are powers of two).
    #[inline(always)]
    fn pcs(&self, s: &KmemCache, cpu: usize) -> Option<&SlubPercpuSheaves> {
        const SIZE: u64 = core::mem::size_of::<SlubPercpuSheaves>() as u64;
        const ALIGN: u64 = core::mem::align_of::<SlubPercpuSheaves>() as u64;
        const AREA: u64 = crate::percpu::PERCPU_DYNAMIC_SIZE as u64;
        const _: () = assert!(SIZE == ALIGN && AREA.is_power_of_two() && ALIGN < AREA);
        // The offset bits an aligned structure inside the area may have.
        const OFFSET_BITS: u64 = (AREA - 1) & !(ALIGN - 1);
        let v = s.cpu_sheaves.load(Relaxed);
        if v & !OFFSET_BITS != SIZE << 32 {
            return None;
        }
        let ptr = PerCpuPtr {
            offset: (v & OFFSET_BITS) as u32,
            size: SIZE as u32,
        };
        self.percpu_areas().dyn_get(cpu, ptr)
    }

    #[cold]
    #[inline(never)]
    fn pcs_corrupt(&self, s: &KmemCache) -> SlabError {
        self.slab_fault(
            s.cpu_sheaves.load(Relaxed),
            false,
            crate::slab::Reason::CpuSheavesCorrupted,
        )
    }

    /// The header of the sheaf at `va` (a pointer read from RAM): it must name `s` and its
    /// capacity and hold no more than that. The fast paths' check.
    #[inline]
    fn sheaf(&self, s: &KmemCache, va: u64) -> Option<&SheafHeader> {
        // One `__pa()` of the start: the direct map is linear, and the door checks that
        // the whole header is RAM.
        let h: &SheafHeader = self.ram().view(self.layout().virt_to_phys(va)?).ok()?;
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
        self.slab_fault(va, false, crate::slab::Reason::SheafPointerCorrupted)
    }

    /// The address of slot `i` of the sheaf at `va`.
    #[inline]
    fn slot(va: u64, i: u32) -> u64 {
        va.wrapping_add(SHEAF_HEADER + i as u64 * 8)
    }

    /// The slab of `object` if it is an object boundary in a slab of `s`.
    #[inline(always)]
    pub(crate) fn sheaf_object_slab(&self, s: &KmemCache, object: u64) -> Option<Pfn> {
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
        self.slab_fault(object, true, crate::slab::Reason::SheafObjectCorrupted)
    }
}
