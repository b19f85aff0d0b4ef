//! `struct kmem_cache`, `kmem_cache_node` and `kmem_cache_cpu`; object layout and slab
//! order (`calculate_sizes`, `calculate_order`); creating, bootstrapping, shrinking and
//! destroying caches (`mm/slub.c`, `mm/slab_common.c`).
//!
//! Files: `mod.rs` (the structures and lookups), `geometry.rs` (order and layout),
//! `create.rs` (create, shrink, destroy), `boot.rs` (the boot caches).

mod boot;
mod create;
mod geometry;

pub(crate) use geometry::cpu_partial_objects;
pub use geometry::{calculate_alignment, calculate_order, calculate_sizes, Layout};

use core::sync::atomic::{AtomicU32, AtomicU64, AtomicU8, Ordering::Relaxed};

use crate::addr::{Pfn, PAGE_ALLOC_COSTLY_ORDER, PAGE_SIZE};
use crate::gfp::Gfp;
use crate::memory_model::PageList;
use crate::percpu::PerCpuPtr;
use crate::platform::Platform;
use crate::slab::{CacheName, SlabError, SlabFlags};
use crate::sync::TryLock;
use crate::Mm;

/// Bytes of a cache name.
pub const NAME_LEN: usize = 32;
/// `MAX_OBJS_PER_PAGE`: objects a slab can count (15 bits).
pub const MAX_OBJS_PER_PAGE: u32 = 32767;
/// `slub_max_order`.
pub const SLUB_MAX_ORDER: u32 = PAGE_ALLOC_COSTLY_ORDER;
/// `sizeof(void *)`.
const PTR: u32 = 8;
/// `sizeof(struct track)`: call site, CPU, pid and time.
pub const TRACK_SIZE: u32 = 32;
/// `cache_line_size()`.
pub const CACHE_LINE: u32 = 64;
/// Marks a live `kmem_cache` ("KMEMCACH").
const MAGIC: u64 = 0x4b4d_454d_4341_4348;

/// `nr_node_ids`: the simulated machine has one memory node.
pub const NR_NODE_IDS: u32 = 1;

/// `offsetof(struct kmem_cache, node)` in Linux 6.6 (`include/linux/slub_def.h`) on
/// x86_64, configured as distributions build it: SLUB (not SLUB_TINY), SLUB_CPU_PARTIAL,
/// SYSFS, SLAB_FREELIST_HARDENED, NUMA, SLAB_FREELIST_RANDOM, HARDENED_USERCOPY;
/// KASAN_GENERIC and DEBUG_KOBJECT_RELEASE off. Field by field (offset field size):
///
/// ```text
///   0 cpu_slab 8             8 flags 4 (+4 pad)       16 min_partial 8
///  24 size 4                28 object_size 4          32 reciprocal_size 8 (u32 m; u8 sh1, sh2; +2 pad)
///  40 offset 4              44 cpu_partial 4          48 cpu_partial_slabs 4
///  52 oo 4                  56 min 4                  60 allocflags 4
///  64 refcount 4 (+4 pad)   72 ctor 8                 80 inuse 4
///  84 align 4               88 red_left_pad 4 (+4)    96 name 8
/// 104 list 16              120 kobj 64 (name 8, entry 16, parent, kset, ktype, sd 8 each,
///                              kref 4, state bits 4)
/// 184 random 8             192 remote_node_defrag_ratio 4 (+4 pad)
/// 200 random_seq 8         208 useroffset 4          212 usersize 4
/// 216 node[]
/// ```
///
/// kmemlab's slab structures are laid out as on x86_64 in every profile.
pub const KMEM_CACHE_NODE_OFFSET: u32 = 216;

/// `sizeof(struct kmem_cache_node)` of SLUB in Linux 6.6 (`mm/slab.h`) with
/// SLUB_DEBUG and no spinlock debugging: list_lock 4 (+4 pad), nr_partial 8, partial 16,
/// nr_slabs 8, total_objects 8, full 16.
pub const KMEM_CACHE_NODE_SIZE: u32 = 64;

/// The object size `kmem_cache_init()` (Linux 6.6) gives the `kmem_cache` cache:
/// `offsetof(struct kmem_cache, node) + nr_node_ids * sizeof(struct kmem_cache_node *)`
/// (224 bytes on one node, 256 with `SLAB_HWCACHE_ALIGN`).
pub const fn kmem_cache_object_size(nr_node_ids: u32) -> u32 {
    KMEM_CACHE_NODE_OFFSET + nr_node_ids * PTR
}

// kmemlab's own structures live in those objects, so they must fit.
const _: () =
    assert!(core::mem::size_of::<KmemCache>() as u32 <= kmem_cache_object_size(NR_NODE_IDS));
const _: () = assert!(core::mem::size_of::<KmemCacheNode>() as u32 <= KMEM_CACHE_NODE_SIZE);

/// A constructor run on each object when its slab is created.
pub type Ctor = fn(&mut [u8]);

/// The largest object a cache with a constructor may have: the constructor works on a copy
/// of the object in the host (`mm` has no heap, so the copy is a stack buffer of this size).
pub const MAX_CTOR_OBJECT: usize = 8192;

/// A handle to a cache: the kernel address of its `struct kmem_cache`.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash)]
pub struct KmemCacheRef(pub u64);

/// `struct kmem_cache`, in a `kmem_cache` slab object. Every field is an atomic, as for
/// `struct page`, so shared references into simulated memory are sound, and every bit
/// pattern is a value (`FromBytes`): what RAM holds is checked, not trusted.
#[repr(C, align(64))]
#[derive(zerocopy::FromBytes)]
pub struct KmemCache {
    magic: AtomicU64,
    /// This structure's own kernel address.
    pub(crate) self_va: AtomicU64,
    /// The per-CPU `kmem_cache_cpu` (offset and size in the per-CPU areas).
    pub(crate) cpu_slab: AtomicU64,
    /// The `kmem_cache_node` of node 0.
    pub(crate) node: AtomicU64,
    /// Freelist obfuscation secret (`s->random`).
    pub(crate) random: AtomicU64,
    /// The random freelist sequence (`s->random_seq`), a kmalloc'd u32 array, or 0.
    pub(crate) random_seq: AtomicU64,
    /// The constructor's slot in the host's table plus one (`SlabGlobals::ctors`), 0 for
    /// none: never a code address.
    pub(crate) ctor: AtomicU32,
    pub(crate) flags: AtomicU32,
    pub(crate) size: AtomicU32,
    pub(crate) object_size: AtomicU32,
    pub(crate) offset: AtomicU32,
    pub(crate) inuse: AtomicU32,
    pub(crate) align: AtomicU32,
    pub(crate) red_left_pad: AtomicU32,
    pub(crate) oo: AtomicU32,
    pub(crate) min: AtomicU32,
    pub(crate) min_partial: AtomicU32,
    pub(crate) cpu_partial_slabs: AtomicU32,
    pub(crate) refcount: AtomicU32,
    pub(crate) allocflags: AtomicU32,
    /// `ceil(2^48 / size)`: `obj_to_index` by multiplication (`reciprocal_size`).
    pub(crate) reciprocal_size: AtomicU64,
    /// The SLUB statistics' per-CPU counters (offset and size, as `cpu_slab`), 0 when
    /// statistics are off (`kmem_cache_cpu.stat[]` under `CONFIG_SLUB_STATS`).
    pub(crate) stats: AtomicU64,
    /// `s->cpu_sheaves` (offset and size in the per-CPU areas, as `cpu_slab`), 0 for none.
    pub(crate) cpu_sheaves: AtomicU64,
    /// `s->sheaf_capacity`: 0 when the cache has no sheaves.
    pub(crate) sheaf_capacity: AtomicU32,
    name_len: AtomicU8,
    name: [AtomicU8; NAME_LEN],
}

/// `struct kmem_cache_node`: the node's partial (and, when debugging, full) slabs.
#[repr(C, align(64))]
#[derive(zerocopy::FromBytes)]
pub struct KmemCacheNode {
    pub(crate) list_lock: TryLock,
    pub(crate) nr_partial: AtomicU64,
    pub(crate) partial: PageList,
    pub(crate) full: PageList,
    pub(crate) nr_slabs: AtomicU64,
    pub(crate) total_objects: AtomicU64,
    /// `n->barn` (Linux 6.18): the kmalloc'd `node_barn` of a cache with sheaves, or 0.
    pub(crate) barn: AtomicU64,
}

/// `struct kmem_cache_cpu`: this CPU's slab and its lockless freelist.
#[repr(C, align(32))]
#[derive(Default, zerocopy::FromBytes)]
pub struct KmemCacheCpu {
    /// Next free object (kernel address), 0 for none.
    pub(crate) freelist: AtomicU64,
    /// Transaction id: changes on every operation of this CPU.
    pub(crate) tid: AtomicU64,
    /// The CPU slab's PFN + 1, 0 for none.
    pub(crate) slab: AtomicU64,
    /// First per-CPU partial slab's PFN + 1 (chained through `page.next`), 0 for none.
    pub(crate) partial: AtomicU64,
    /// Slabs on the per-CPU partial list (`slab->slabs` of its first slab, in Linux).
    pub(crate) partial_slabs: AtomicU64,
}

impl KmemCacheCpu {
    /// The CPU slab, if any (`c->slab`; the word in RAM holds its PFN + 1, 0 for none).
    #[inline]
    pub(crate) fn slab_pfn(&self) -> Option<Pfn> {
        decode_pfn(self.slab.load(Relaxed))
    }

    /// Install `pfn` as the CPU slab, or none.
    #[inline]
    pub(crate) fn set_slab_pfn(&self, pfn: Option<Pfn>) {
        self.slab.store(encode_pfn(pfn), Relaxed)
    }

    /// Take the CPU slab away, answering the one it had.
    #[inline]
    pub(crate) fn take_slab_pfn(&self) -> Option<Pfn> {
        decode_pfn(self.slab.swap(0, Relaxed))
    }

    /// Is `pfn` this CPU's slab?
    #[inline]
    pub(crate) fn is_cpu_slab(&self, pfn: Pfn) -> bool {
        self.slab.load(Relaxed) == encode_pfn(Some(pfn))
    }

    /// The first per-CPU partial slab, if any (`c->partial`).
    #[inline]
    pub(crate) fn partial_pfn(&self) -> Option<Pfn> {
        decode_pfn(self.partial.load(Relaxed))
    }

    /// Make `pfn` (or none) the first per-CPU partial slab.
    #[inline]
    pub(crate) fn set_partial_pfn(&self, pfn: Option<Pfn>) {
        self.partial.store(encode_pfn(pfn), Relaxed)
    }

    /// Take the per-CPU partial chain away, answering its first slab.
    #[inline]
    pub(crate) fn take_partial_pfn(&self) -> Option<Pfn> {
        decode_pfn(self.partial.swap(0, Relaxed))
    }
}

/// The RAM word of an optional slab PFN in [`KmemCacheCpu`]: PFN + 1, 0 for none.
#[inline]
const fn encode_pfn(pfn: Option<Pfn>) -> u64 {
    match pfn {
        Some(pfn) => pfn.raw().wrapping_add(1),
        None => 0,
    }
}

/// The slab PFN a [`KmemCacheCpu`] word names, `None` for 0.
#[inline]
const fn decode_pfn(word: u64) -> Option<Pfn> {
    match word.checked_sub(1) {
        Some(raw) => Some(Pfn(raw)),
        None => None,
    }
}

/// The slab a `page.next` link of the per-CPU partial chain names, `None` at its end
/// ([`crate::mm_types::NIL`]).
#[inline]
pub(crate) const fn partial_chain_next(link: u32) -> Option<Pfn> {
    if link == crate::mm_types::NIL {
        None
    } else {
        Some(Pfn(link as u64))
    }
}

/// The `page.next` word that chains to `next` on the per-CPU partial chain.
#[inline]
pub(crate) const fn partial_chain_link(next: Option<Pfn>) -> u32 {
    match next {
        Some(pfn) => pfn.raw() as u32,
        None => crate::mm_types::NIL,
    }
}

/// `oo_make()` / `oo_order()` / `oo_objects()`.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct OrderObjects {
    /// Slab order.
    pub order: u32,
    /// Objects per slab.
    pub objects: u32,
}

impl OrderObjects {
    fn make(order: u32, size: u32) -> OrderObjects {
        OrderObjects {
            order,
            objects: ((PAGE_SIZE as u32) << order) / size,
        }
    }
    fn pack(self) -> u32 {
        (self.order << 16) | self.objects
    }
    fn unpack(v: u32) -> OrderObjects {
        OrderObjects {
            order: v >> 16,
            objects: v & 0xffff,
        }
    }
}

impl KmemCache {
    /// The name.
    pub fn name(&self) -> CacheName {
        let mut bytes = [0u8; NAME_LEN];
        for (b, a) in bytes.iter_mut().zip(&self.name) {
            *b = a.load(Relaxed);
        }
        let len = (self.name_len.load(Relaxed) as usize).min(NAME_LEN);
        CacheName::new(core::str::from_utf8(&bytes[..len]).unwrap_or("?"))
    }
    fn set_name(&self, name: &str) {
        let n = CacheName::new(name);
        for (a, b) in self
            .name
            .iter()
            .zip(n.as_str().bytes().chain(core::iter::repeat(0)))
        {
            a.store(b, Relaxed);
        }
        self.name_len.store(n.as_str().len() as u8, Relaxed);
    }
    /// This cache's handle.
    pub fn handle(&self) -> KmemCacheRef {
        KmemCacheRef(self.self_va.load(Relaxed))
    }
    /// `s->flags`.
    #[inline]
    pub fn flags(&self) -> SlabFlags {
        SlabFlags::from_bits_retain(self.flags.load(Relaxed))
    }
    /// `s->size`: bytes per object with metadata.
    #[inline]
    pub fn size(&self) -> u32 {
        self.size.load(Relaxed)
    }
    /// `s->object_size`: the bytes asked for.
    #[inline]
    pub fn object_size(&self) -> u32 {
        self.object_size.load(Relaxed)
    }
    /// `s->offset`: where the free pointer lives.
    #[inline]
    pub fn fp_offset(&self) -> u32 {
        self.offset.load(Relaxed)
    }
    /// `s->inuse`: end of the object and its right red zone word.
    pub fn inuse(&self) -> u32 {
        self.inuse.load(Relaxed)
    }
    /// `s->align`.
    pub fn align(&self) -> u32 {
        self.align.load(Relaxed)
    }
    /// `s->red_left_pad`.
    #[inline]
    pub fn red_left_pad(&self) -> u32 {
        self.red_left_pad.load(Relaxed)
    }
    /// `s->oo`: order and objects of a slab.
    #[inline]
    pub fn oo(&self) -> OrderObjects {
        OrderObjects::unpack(self.oo.load(Relaxed))
    }
    /// `s->min`: the smallest slab that holds one object.
    pub fn min(&self) -> OrderObjects {
        OrderObjects::unpack(self.min.load(Relaxed))
    }
    /// `s->min_partial`.
    #[inline]
    pub fn min_partial(&self) -> u64 {
        self.min_partial.load(Relaxed) as u64
    }
    /// `s->cpu_partial_slabs`.
    #[inline]
    pub fn cpu_partial_slabs(&self) -> u32 {
        self.cpu_partial_slabs.load(Relaxed)
    }
    /// `kmem_cache_debug()`: does the cache use any debug flag?
    #[inline]
    pub fn is_debug(&self) -> bool {
        self.flags().intersects(SlabFlags::DEBUG)
    }
    /// Has the cache a constructor (`s->ctor != NULL`)? The constructor itself is looked up
    /// in the host's table (`Mm::cache_ctor`).
    #[inline]
    pub fn has_ctor(&self) -> bool {
        self.ctor.load(Relaxed) != 0
    }
    /// GFP flags for this cache's slabs (`s->allocflags`).
    pub fn allocflags(&self) -> Gfp {
        Gfp::from_bits_retain(self.allocflags.load(Relaxed))
    }
    /// The statistics' per-CPU counters, if the cache has them.
    pub(crate) fn stats_ptr(&self) -> Option<PerCpuPtr> {
        let v = self.stats.load(Relaxed);
        (v >> 32 != 0).then_some(PerCpuPtr {
            offset: v as u32,
            size: (v >> 32) as u32,
        })
    }
    pub(crate) fn set_stats_ptr(&self, ptr: Option<PerCpuPtr>) {
        let v = ptr.map_or(0, |p| p.offset as u64 | ((p.size as u64) << 32));
        self.stats.store(v, Relaxed);
    }
    #[inline]
    pub(crate) fn cpu_slab_ptr(&self) -> PerCpuPtr {
        let v = self.cpu_slab.load(Relaxed);
        PerCpuPtr {
            offset: v as u32,
            size: (v >> 32) as u32,
        }
    }
}

impl<P: Platform> Mm<P> {
    /// The cache behind a handle, if it is a live cache: a `KmemCache` in the direct map
    /// whose magic and self-address say so.
    #[inline]
    pub fn cache(&self, r: KmemCacheRef) -> Result<&KmemCache, SlabError> {
        // One `__pa()` of the start: the direct map is linear, and the door checks that the
        // whole structure is RAM.
        let phys = self
            .layout
            .virt_to_phys(r.0)
            .ok_or(SlabError::BadCache(r.0))?;
        let s: &KmemCache = self
            .ram()
            .view(phys)
            .map_err(|_| SlabError::BadCache(r.0))?;
        if s.magic.load(Relaxed) != MAGIC || s.self_va.load(Relaxed) != r.0 {
            return Err(SlabError::BadCache(r.0));
        }
        Ok(s)
    }

    /// `get_node(s, 0)`: the cache's `kmem_cache_node`, a pointer read from RAM. Once boot
    /// is done it must be an object of the `kmem_cache_node` cache; anything else is the
    /// fault the kernel would take following it.
    #[inline]
    pub(crate) fn get_node(&self, s: &KmemCache) -> Result<&KmemCacheNode, SlabError> {
        let va = s.node.load(Relaxed);
        match self.node_at(va) {
            Some(n) => Ok(n),
            None => Err(self.slab_fault(va, false, crate::slab::Reason::NodePointerCorrupted)),
        }
    }

    /// [`Mm::get_node`] without a report (for fix-ups made while reporting something else).
    pub(crate) fn get_node_quiet(&self, s: &KmemCache) -> Option<&KmemCacheNode> {
        self.node_at(s.node.load(Relaxed))
    }

    fn node_at(&self, va: u64) -> Option<&KmemCacheNode> {
        let n = self.kview::<KmemCacheNode>(va).ok()?;
        let node_cache = self.slab.kmem_cache_node.load(Relaxed);
        if node_cache == 0 {
            // Boot: the node caches are still being bootstrapped.
            return Some(n);
        }
        let (pfn, page) = self.virt_to_slab(crate::VirtAddr(va))?;
        let ns = self.cache(KmemCacheRef(node_cache)).ok()?;
        (page.slab_cache() == node_cache && self.object_index_in(ns, page, pfn, va).is_some())
            .then_some(n)
    }

    /// `cpu`'s `kmem_cache_cpu` of `s`, if the cache's `cpu_slab` (read from RAM) describes
    /// one inside the per-CPU areas.
    #[inline(always)]
    pub(crate) fn cpu_slab(&self, s: &KmemCache, cpu: usize) -> Option<&KmemCacheCpu> {
        let ptr = s.cpu_slab_ptr();
        if ptr.size as usize != core::mem::size_of::<KmemCacheCpu>() {
            return None;
        }
        self.percpu_areas().dyn_get(cpu, ptr)
    }

    /// This CPU's `kmem_cache_cpu` of `s` (`this_cpu_ptr(s->cpu_slab)`), or the fault the
    /// kernel would take through a corrupted `cpu_slab`.
    #[inline(always)]
    pub(crate) fn this_cpu_slab(&self, s: &KmemCache) -> Result<&KmemCacheCpu, SlabError> {
        self.cpu_slab_or_fault(s, self.platform.smp_processor_id())
    }

    /// [`Mm::this_cpu_slab`] when the caller already knows it runs on `cpu`. Always inline:
    /// out of line, its `Result` would come back through memory on every fast path.
    #[inline(always)]
    pub(crate) fn cpu_slab_or_fault(
        &self,
        s: &KmemCache,
        cpu: usize,
    ) -> Result<&KmemCacheCpu, SlabError> {
        match self.cpu_slab(s, cpu) {
            Some(c) => Ok(c),
            None => Err(self.cpu_slab_corrupt(s)),
        }
    }

    #[cold]
    #[inline(never)]
    fn cpu_slab_corrupt(&self, s: &KmemCache) -> SlabError {
        self.slab_fault(
            s.cpu_slab.load(Relaxed),
            false,
            crate::slab::Reason::CpuSlabCorrupted,
        )
    }

    /// The constructor of `s` from the host's table: `Ok(None)` for none, an error (the
    /// kernel's fault on a call through a corrupted `s->ctor`) for an index that names no
    /// slot of this cache.
    pub(crate) fn cache_ctor(&self, s: &KmemCache) -> Result<Option<Ctor>, SlabError> {
        let raw = s.ctor.load(Relaxed);
        if raw == 0 {
            return Ok(None);
        }
        let owner = s.self_va.load(Relaxed);
        let table = self.slab.ctors.lock_irqsave(&self.platform);
        let slot = raw as usize - 1;
        match (table.owners.get(slot), table.ctors.get(slot)) {
            (Some(&o), Some(&Some(ctor))) if o == owner && owner != 0 => Ok(Some(ctor)),
            _ => {
                drop(table);
                Err(self.slab_fault(raw as u64, false, crate::slab::Reason::CtorCorrupted))
            }
        }
    }

    /// Give a new cache at `owner` a slot for `ctor`; returns what `s->ctor` stores.
    fn register_ctor(&self, owner: u64, ctor: Option<Ctor>) -> Result<u32, SlabError> {
        let Some(ctor) = ctor else { return Ok(0) };
        let mut table = self.slab.ctors.lock_irqsave(&self.platform);
        let slot = table
            .owners
            .iter()
            .position(|&o| o == 0)
            .ok_or(SlabError::TooManyCaches)?;
        table.owners[slot] = owner;
        table.ctors[slot] = Some(ctor);
        Ok(slot as u32 + 1)
    }

    /// Free the constructor slot of the cache at `owner`, if it has one.
    fn release_ctor(&self, owner: u64) {
        let mut table = self.slab.ctors.lock_irqsave(&self.platform);
        if let Some(slot) = table.owners.iter().position(|&o| o == owner) {
            table.owners[slot] = 0;
            table.ctors[slot] = None;
        }
    }
}

/// Where a new cache's `kmem_cache_node` comes from.
#[derive(Copy, Clone)]
pub(crate) enum NodeSource<'a> {
    /// Its own first slab (the `kmem_cache_node` cache at boot).
    Early,
    /// The static boot `kmem_cache_node` cache.
    Boot(&'a KmemCache),
    /// The `kmem_cache_node` cache.
    NodeCache,
}
