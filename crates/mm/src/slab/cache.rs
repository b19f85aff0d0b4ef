//! `struct kmem_cache`, `kmem_cache_node` and `kmem_cache_cpu`; object layout and slab
//! order (`calculate_sizes`, `calculate_order`); creating, bootstrapping, shrinking and
//! destroying caches (`mm/slub.c`, `mm/slab_common.c`).

use core::sync::atomic::{AtomicU32, AtomicU64, AtomicU8, Ordering::Relaxed};

use zerocopy::FromZeros;

use crate::addr::{fls, get_order, Pfn, MAX_PAGE_ORDER, PAGE_ALLOC_COSTLY_ORDER, PAGE_SIZE};
use crate::gfp::Gfp;
use crate::memory_model::PageList;
use crate::percpu::PerCpuPtr;
use crate::platform::Platform;
use crate::slab::{CacheName, SlabError, SlabFlags, MAX_CACHES};
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
    pub fn min_partial(&self) -> u64 {
        self.min_partial.load(Relaxed) as u64
    }
    /// `s->cpu_partial_slabs`.
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

/// `calculate_order()`: the smallest order (up to `slub_max_order`) whose slab holds at
/// least `min_objects` objects with little waste; fewer objects and more waste are
/// accepted step by step.
pub fn calculate_order(size: u32, nr_cpus: usize) -> Option<u32> {
    let mut min_objects = 4 * (fls(nr_cpus as u64) + 1);
    let max_objects = ((PAGE_SIZE as u32) << SLUB_MAX_ORDER) / size;
    min_objects = min_objects.min(max_objects);
    while min_objects > 1 {
        let mut fraction = 16;
        while fraction >= 4 {
            let order = calc_slab_order(size, min_objects, SLUB_MAX_ORDER, fraction);
            if order <= SLUB_MAX_ORDER {
                return Some(order);
            }
            fraction /= 2;
        }
        min_objects -= 1;
    }
    let order = calc_slab_order(size, 1, SLUB_MAX_ORDER, 1);
    if order <= SLUB_MAX_ORDER {
        return Some(order);
    }
    let order = calc_slab_order(size, 1, MAX_PAGE_ORDER, 1);
    (order <= MAX_PAGE_ORDER).then_some(order)
}

/// `calc_slab_order()`.
fn calc_slab_order(size: u32, min_objects: u32, max_order: u32, fract_leftover: u32) -> u32 {
    if (PAGE_SIZE as u32) / size > MAX_OBJS_PER_PAGE {
        return get_order(size as usize * MAX_OBJS_PER_PAGE as usize) - 1;
    }
    let mut order = get_order((min_objects * size) as usize);
    while order <= max_order {
        let slab_size = (PAGE_SIZE as u32) << order;
        if slab_size % size <= slab_size / fract_leftover {
            break;
        }
        order += 1;
    }
    order
}

/// The object layout `calculate_sizes()` computes.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct Layout {
    /// Flags, with `__OBJECT_POISON` decided.
    pub flags: SlabFlags,
    /// `s->size`.
    pub size: u32,
    /// `s->inuse`.
    pub inuse: u32,
    /// `s->offset`.
    pub offset: u32,
    /// `s->red_left_pad`.
    pub red_left_pad: u32,
    /// `s->oo`.
    pub oo: OrderObjects,
    /// `s->min`.
    pub min: OrderObjects,
}

/// `calculate_alignment()`.
pub fn calculate_alignment(flags: SlabFlags, align: u32, size: u32) -> u32 {
    let mut align = align.max(PTR);
    if flags.contains(SlabFlags::HWCACHE_ALIGN) {
        let mut ralign = CACHE_LINE;
        while size <= ralign / 2 {
            ralign /= 2;
        }
        align = align.max(ralign);
    }
    align.max(PTR).next_power_of_two()
}

/// `calculate_sizes()`: where the free pointer, red zones and tracks go, and the slab
/// order. `None` if no slab can hold an object.
pub fn calculate_sizes(
    object_size: u32,
    align: u32,
    mut flags: SlabFlags,
    has_ctor: bool,
    nr_cpus: usize,
) -> Option<Layout> {
    let mut size = object_size.div_ceil(PTR) * PTR;
    if flags.contains(SlabFlags::POISON) && !has_ctor {
        flags |= SlabFlags::OBJECT_POISON;
    } else {
        flags.remove(SlabFlags::OBJECT_POISON);
    }
    if flags.contains(SlabFlags::RED_ZONE) && size == object_size {
        size += PTR;
    }
    let inuse = size;
    let offset;
    if flags.contains(SlabFlags::POISON)
        || (flags.contains(SlabFlags::RED_ZONE) && object_size < PTR)
        || has_ctor
    {
        offset = size;
        size += PTR;
    } else {
        offset = (object_size / 2) / PTR * PTR;
    }
    if flags.contains(SlabFlags::STORE_USER) {
        size += 2 * TRACK_SIZE;
        if flags.contains(SlabFlags::KMALLOC) {
            size += 4; // the original request size
        }
    }
    let mut red_left_pad = 0;
    if flags.contains(SlabFlags::RED_ZONE) {
        size += PTR;
        red_left_pad = PTR.div_ceil(align) * align;
        size += red_left_pad;
    }
    size = size.div_ceil(align) * align;
    let order = calculate_order(size, nr_cpus)?;
    let oo = OrderObjects::make(order, size);
    (oo.objects > 0).then(|| Layout {
        flags,
        size,
        inuse,
        offset,
        red_left_pad,
        oo,
        min: OrderObjects::make(get_order(size as usize), size),
    })
}

/// `set_cpu_partial()`: how many slabs a CPU may keep on its partial list.
fn cpu_partial_slabs(size: u32, objects: u32, debug: bool) -> u32 {
    (cpu_partial_objects(size, debug) * 2).div_ceil(objects.max(1))
}

/// `set_cpu_partial()`'s object count (`s->cpu_partial`, the sysfs `cpu_partial` file).
pub(crate) fn cpu_partial_objects(size: u32, debug: bool) -> u32 {
    if debug {
        return 0;
    }
    if size as usize >= PAGE_SIZE {
        6
    } else if size >= 1024 {
        24
    } else if size >= 256 {
        52
    } else {
        120
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
            None => Err(self.slab_fault(va, false, "kmem_cache_node pointer corrupted")),
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
        (page.slab_cache() == node_cache && self.object_index(ns, pfn, va).is_some()).then_some(n)
    }

    /// `cpu`'s `kmem_cache_cpu` of `s`, if the cache's `cpu_slab` (read from RAM) describes
    /// one inside the per-CPU areas.
    #[inline]
    pub(crate) fn cpu_slab(&self, s: &KmemCache, cpu: usize) -> Option<&KmemCacheCpu> {
        let ptr = s.cpu_slab_ptr();
        if ptr.size as usize != core::mem::size_of::<KmemCacheCpu>() {
            return None;
        }
        self.percpu_areas().dyn_get(cpu, ptr)
    }

    /// This CPU's `kmem_cache_cpu` of `s` (`this_cpu_ptr(s->cpu_slab)`), or the fault the
    /// kernel would take through a corrupted `cpu_slab`.
    #[inline]
    pub(crate) fn this_cpu_slab(&self, s: &KmemCache) -> Result<&KmemCacheCpu, SlabError> {
        self.cpu_slab_or_fault(s, self.platform.smp_processor_id())
    }

    /// [`Mm::this_cpu_slab`] when the caller already knows it runs on `cpu`.
    #[inline]
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
            "kmem_cache.cpu_slab corrupted",
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
                Err(self.slab_fault(raw as u64, false, "kmem_cache.ctor corrupted"))
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

    /// `kmem_cache_create(name, size, align, flags, ctor)`.
    #[track_caller]
    pub fn kmem_cache_create(
        &self,
        name: &str,
        size: usize,
        align: usize,
        flags: SlabFlags,
        ctor: Option<Ctor>,
    ) -> Result<KmemCacheRef, SlabError> {
        if name.is_empty() {
            return Err(SlabError::BadArgs("a cache needs a name"));
        }
        if size == 0 || size > (PAGE_SIZE << MAX_PAGE_ORDER) {
            return Err(SlabError::BadArgs("object size must be 1 ..= 4 MiB"));
        }
        if align != 0 && !align.is_power_of_two() {
            return Err(SlabError::BadArgs("alignment must be a power of two"));
        }
        if align > PAGE_SIZE {
            return Err(SlabError::BadArgs("alignment must be at most PAGE_SIZE"));
        }
        if ctor.is_some() && size > MAX_CTOR_OBJECT {
            return Err(SlabError::BadArgs(
                "a cache with a constructor holds objects of at most 8 KiB here",
            ));
        }
        if self.slab.caches.lock_irqsave(&self.platform).len >= MAX_CACHES {
            return Err(SlabError::TooManyCaches);
        }
        if self.find_cache(name).is_some() {
            return Err(SlabError::BadArgs("a cache of that name exists"));
        }
        self.might_sleep()
            .map_err(|e| SlabError::Alloc(crate::PageAllocError::SleepInAtomic(e)))?;
        let flags = (flags | self.slab.config.debug) & !SlabFlags::OBJECT_POISON;
        // kmem_cache_create_usercopy(): a cache that can share an existing one is an
        // alias of it (usersize is always 0 for caches made here).
        if let Some(r) =
            self.kmem_cache_alias(name, size as u32, align as u32, flags, ctor.is_some())
        {
            return Ok(r);
        }
        let kmem_cache = KmemCacheRef(self.slab.kmem_cache.load(Relaxed));
        let obj = self.cache_alloc(
            kmem_cache,
            Gfp::GFP_KERNEL | Gfp::__GFP_ZERO,
            crate::slab::CallSite::caller(),
        )?;
        let s: &KmemCache = self.kview(obj.0).map_err(|e| SlabError::Corrupted {
            addr: e.addr,
            what: "a kmem_cache object outside the direct map",
        })?;
        match self.kmem_cache_open(
            s,
            obj.0,
            name,
            size as u32,
            align as u32,
            flags,
            ctor,
            NodeSource::NodeCache,
        ) {
            Ok(()) => {
                self.link_cache(s)?;
                Ok(KmemCacheRef(obj.0))
            }
            Err(e) => {
                s.magic.store(0, Relaxed);
                self.release_ctor(obj.0);
                let _ = self.cache_free(kmem_cache, obj, crate::slab::CallSite::caller());
                Err(e)
            }
        }
    }

    /// The cache named `name`, if any.
    pub fn find_cache(&self, name: &str) -> Option<KmemCacheRef> {
        self.for_each_cache(|s| (s.name().as_str() == name).then(|| s.handle()))
            .or_else(|| self.find_alias(name))
    }

    /// Call `f` on each cache, newest first, until it returns `Some`.
    pub fn for_each_cache<T>(&self, mut f: impl FnMut(&KmemCache) -> Option<T>) -> Option<T> {
        let (vas, len) = {
            let list = self.slab.caches.lock_irqsave(&self.platform);
            (list.vas, list.len)
        };
        vas[..len]
            .iter()
            .rev()
            .find_map(|&va| self.cache(KmemCacheRef(va)).ok().and_then(&mut f))
    }

    fn link_cache(&self, s: &KmemCache) -> Result<(), SlabError> {
        let mut list = self.slab.caches.lock_irqsave(&self.platform);
        if list.len == MAX_CACHES {
            return Err(SlabError::TooManyCaches);
        }
        let n = list.len;
        list.vas[n] = s.self_va.load(Relaxed);
        list.len += 1;
        Ok(())
    }

    fn unlink_cache(&self, va: u64) {
        let mut list = self.slab.caches.lock_irqsave(&self.platform);
        let len = list.len;
        if let Some(i) = list.vas[..len].iter().position(|&v| v == va) {
            list.vas.copy_within(i + 1..len, i);
            list.len -= 1;
        }
    }

    /// `kmem_cache_open()`: fill in a cache structure at `va` and give it its node and
    /// per-CPU structures.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn kmem_cache_open(
        &self,
        s: &KmemCache,
        va: u64,
        name: &str,
        object_size: u32,
        align: u32,
        flags: SlabFlags,
        ctor: Option<Ctor>,
        node_source: NodeSource<'_>,
    ) -> Result<(), SlabError> {
        let align = calculate_alignment(flags, align, object_size);
        let layout = calculate_sizes(
            object_size,
            align,
            flags,
            ctor.is_some(),
            self.platform.nr_cpus(),
        )
        .ok_or(SlabError::BadArgs("no slab order can hold the object"))?;
        s.self_va.store(va, Relaxed);
        s.set_name(name);
        s.flags.store(layout.flags.bits(), Relaxed);
        s.object_size.store(object_size, Relaxed);
        s.size.store(layout.size, Relaxed);
        s.reciprocal_size
            .store((1u64 << 48).div_ceil(layout.size as u64), Relaxed);
        s.inuse.store(layout.inuse, Relaxed);
        s.offset.store(layout.offset, Relaxed);
        s.align.store(align, Relaxed);
        s.red_left_pad.store(layout.red_left_pad, Relaxed);
        s.oo.store(layout.oo.pack(), Relaxed);
        s.min.store(layout.min.pack(), Relaxed);
        s.ctor.store(self.register_ctor(va, ctor)?, Relaxed);
        s.refcount.store(1, Relaxed);
        // min_partial = ilog2(size) / 2, clamped to 5 ..= 10 (set_min_partial).
        let min_partial = ((31 - layout.size.leading_zeros()) / 2).clamp(5, 10);
        s.min_partial.store(min_partial, Relaxed);
        s.cpu_partial_slabs.store(
            cpu_partial_slabs(
                layout.size,
                layout.oo.objects,
                layout.flags.intersects(SlabFlags::DEBUG),
            ),
            Relaxed,
        );
        let mut allocflags = Gfp::empty();
        if layout.oo.order > 0 {
            allocflags |= Gfp::__GFP_COMP;
        }
        if flags.contains(SlabFlags::CACHE_DMA) {
            allocflags |= Gfp::GFP_DMA;
        }
        if flags.contains(SlabFlags::CACHE_DMA32) {
            allocflags |= Gfp::GFP_DMA32;
        }
        if flags.contains(SlabFlags::RECLAIM_ACCOUNT) {
            allocflags |= Gfp::__GFP_RECLAIMABLE;
        }
        s.allocflags.store(allocflags.bits(), Relaxed);
        s.random.store(
            if self.slab.config.freelist_hardened {
                self.get_random_u64()
            } else {
                0
            },
            Relaxed,
        );
        let cpu_slab = self
            .percpu
            .alloc(
                &self.platform,
                core::mem::size_of::<KmemCacheCpu>(),
                core::mem::align_of::<KmemCacheCpu>(),
            )
            .ok_or(SlabError::NoPerCpuSpace)?;
        s.cpu_slab.store(
            cpu_slab.offset as u64 | ((cpu_slab.size as u64) << 32),
            Relaxed,
        );
        for cpu in 0..self.platform.nr_cpus() {
            // init_kmem_cache_cpus(): each CPU's tid starts at its own number.
            if let Some(c) = self.cpu_slab(s, cpu) {
                c.tid.store(cpu as u64, Relaxed);
            }
        }
        s.set_stats_ptr(None);
        if let Err(e) = self.alloc_cache_stats(s) {
            self.percpu_areas().free(self.platform(), cpu_slab);
            return Err(e);
        }
        s.magic.store(MAGIC, Relaxed);
        if let Err(e) = self.init_kmem_cache_node(s, node_source) {
            self.percpu_areas().free(self.platform(), cpu_slab);
            self.free_cache_stats(s);
            return Err(e);
        }
        if self.slab.config.freelist_random && self.slab.kmalloc_ready() {
            self.init_cache_random_seq(s);
        }
        if self.slab.kmalloc_ready() {
            // Sheaves are kmalloc'd: caches made before kmalloc works get theirs in
            // kmem_cache_init() (7.0's bootstrap_kmalloc_sheaves()). A cache whose
            // sheaves cannot be had runs without them (the kernel fails the creation).
            let _ = self.init_cache_sheaves(s);
        }
        Ok(())
    }

    /// `init_kmem_cache_nodes()`: the node structure is an object of the `kmem_cache_node`
    /// cache (during boot, of its static boot structure; for that cache itself, of its own
    /// first slab: `early_kmem_cache_node_alloc`).
    fn init_kmem_cache_node(&self, s: &KmemCache, source: NodeSource<'_>) -> Result<(), SlabError> {
        let va = match source {
            NodeSource::Early => return self.early_kmem_cache_node_alloc(s),
            NodeSource::Boot(node_cache) => self.slab_alloc_from(node_cache, Gfp::GFP_KERNEL)?,
            NodeSource::NodeCache => {
                let node_cache = KmemCacheRef(self.slab.kmem_cache_node.load(Relaxed));
                self.cache_alloc(node_cache, Gfp::GFP_KERNEL, crate::slab::CallSite::caller())?
                    .0
            }
        };
        self.install_node(s, va)
    }

    fn install_node(&self, s: &KmemCache, va: u64) -> Result<(), SlabError> {
        let n: &KmemCacheNode = self.kview(va).map_err(|e| SlabError::Corrupted {
            addr: e.addr,
            what: "a kmem_cache_node object outside the direct map",
        })?;
        n.list_lock.unlock();
        n.nr_partial.store(0, Relaxed);
        n.nr_slabs.store(0, Relaxed);
        n.total_objects.store(0, Relaxed);
        n.partial.init();
        n.full.init();
        n.barn.store(0, Relaxed);
        s.node.store(va, Relaxed);
        Ok(())
    }

    /// `early_kmem_cache_node_alloc()`: the `kmem_cache_node` cache's own node structure
    /// is the first object of its first slab, which then goes on that node's partial list.
    fn early_kmem_cache_node_alloc(&self, s: &KmemCache) -> Result<(), SlabError> {
        let pfn = self.new_slab(s, Gfp::GFP_NOWAIT)?;
        let page = self.mem_map.page(pfn);
        let c = self.slab_counters(pfn);
        let va = self.object_at(s, pfn, c.freelist);
        let next = self.get_freepointer(s, va)?;
        let next_idx = self.fl_idx(s, pfn, next).ok_or(SlabError::Corrupted {
            addr: va,
            what: "a new slab's freelist leaves it",
        })?;
        page.set_word(
            crate::slab::slub::SlabCounters {
                freelist: next_idx,
                inuse: 1,
                ..c
            }
            .pack(),
        );
        if s.is_debug() {
            self.init_object(s, va, crate::slab::debug::SLUB_RED_ACTIVE);
        }
        self.install_node(s, va)?;
        self.inc_slabs_node(s, pfn)?;
        let n = self.get_node(s)?;
        n.partial.push_front(&self.mem_map, pfn);
        n.nr_partial.fetch_add(1, Relaxed);
        Ok(())
    }

    /// Boot the slab allocator (`kmem_cache_init`): the `kmem_cache_node` and
    /// `kmem_cache` caches are built in static boot structures, moved into objects of the
    /// `kmem_cache` cache (`bootstrap`), then the kmalloc caches are created. Both boot
    /// caches have the kernel's object sizes ([`KMEM_CACHE_NODE_SIZE`],
    /// [`kmem_cache_object_size`]), so their slabinfo rows are a 6.6 kernel's.
    pub(crate) fn kmem_cache_init(&mut self) -> Result<(), SlabError> {
        self.slab.tid_step = self.platform.nr_cpus().next_power_of_two() as u64;
        // The boot structures live on this stack frame, as the kernel's live in .data.
        let boot_node_cache = KmemCache::new_zeroed();
        let boot_cache = KmemCache::new_zeroed();
        let flags = SlabFlags::HWCACHE_ALIGN | self.slab.config.debug;
        self.kmem_cache_open(
            &boot_node_cache,
            0,
            "kmem_cache_node",
            KMEM_CACHE_NODE_SIZE,
            0,
            flags,
            None,
            NodeSource::Early,
        )?;
        self.kmem_cache_open(
            &boot_cache,
            0,
            "kmem_cache",
            kmem_cache_object_size(NR_NODE_IDS),
            0,
            flags,
            None,
            NodeSource::Boot(&boot_node_cache),
        )?;
        // create_boot_cache(): "Exempt from merging for now" (refcount -1).
        for boot in [&boot_node_cache, &boot_cache] {
            boot.refcount
                .store(crate::slab::merge::REFCOUNT_UNMERGEABLE, Relaxed);
        }
        let cache_va = self.bootstrap(&boot_cache, &boot_cache)?;
        self.slab.kmem_cache.store(cache_va, Relaxed);
        let real_cache = self.cache(KmemCacheRef(cache_va))?;
        let node_va = self.bootstrap(&boot_node_cache, real_cache)?;
        self.slab.kmem_cache_node.store(node_va, Relaxed);
        self.link_cache(self.cache(KmemCacheRef(cache_va))?)?;
        self.link_cache(self.cache(KmemCacheRef(node_va))?)?;
        self.create_kmalloc_caches()?;
        // Caches made before kmalloc worked get their random sequences now
        // (init_freelist_randomization).
        if self.slab.config.freelist_random {
            self.for_each_cache(|s| {
                if s.random_seq.load(Relaxed) == 0 {
                    self.init_cache_random_seq(s);
                }
                None::<()>
            });
        }
        self.for_each_cache(|s| self.init_cache_sheaves(s).err());
        Ok(())
    }

    /// `bootstrap()`: allocate a real `kmem_cache` object (from `from`) for a static boot
    /// cache, copy it there and point its slabs at the copy. Returns the copy's address.
    fn bootstrap(&self, boot: &KmemCache, from: &KmemCache) -> Result<u64, SlabError> {
        let va = self.slab_alloc_from(from, Gfp::GFP_KERNEL)?;
        self.slab_fill(va, 0, from.object_size() as u64)?;
        let s: &KmemCache = self.kview(va).map_err(|e| SlabError::Corrupted {
            addr: e.addr,
            what: "a kmem_cache object outside the direct map",
        })?;
        // The boot CPU's slab goes back to the node lists (its slabs still name the boot
        // structure); then the structure is copied and every slab is re-pointed.
        self.flush_cpu_slab(boot, self.platform.smp_processor_id());
        copy_cache(boot, s);
        s.self_va.store(va, Relaxed);
        let n = self.get_node(s)?;
        for list in [&n.partial, &n.full] {
            self.walk_node_list(boot, n, list, |pfn| {
                self.mem_map.page(pfn).set_slab_cache(va);
                None::<()>
            })?;
        }
        Ok(va)
    }

    /// `kmem_cache_shrink()`: flush the per-CPU slabs and give every empty slab back to
    /// the page allocator. Returns the pages freed.
    pub fn kmem_cache_shrink(&self, r: KmemCacheRef) -> Result<u64, SlabError> {
        let s = self.api_cache(r)?;
        self.might_sleep()
            .map_err(|e| SlabError::Alloc(crate::PageAllocError::SleepInAtomic(e)))?;
        // The barn first (6.18 shrinks it after flush_all()): its objects then leave the
        // CPU slabs with everything else.
        self.barn_shrink(s);
        self.flush_all(s)?;
        Ok(self.discard_empty_partials(s, 0))
    }

    /// `kmem_cache_destroy()`: refused, with the kernel's report, while objects remain.
    #[track_caller]
    pub fn kmem_cache_destroy(&self, r: KmemCacheRef) -> Result<(), SlabError> {
        let s = self.api_cache(r)?;
        self.might_sleep()
            .map_err(|e| SlabError::Alloc(crate::PageAllocError::SleepInAtomic(e)))?;
        if s.flags().contains(SlabFlags::KMALLOC)
            || r.0 == self.slab.kmem_cache.load(Relaxed)
            || r.0 == self.slab.kmem_cache_node.load(Relaxed)
        {
            return Err(SlabError::BadArgs(
                "the kmalloc and boot caches are never destroyed",
            ));
        }
        // kmem_cache_destroy(): a merged cache lives on while others still use it.
        if self.kmem_cache_unalias(s, None) {
            return Ok(());
        }
        self.barn_shrink(s);
        self.flush_all(s)?;
        self.discard_empty_partials(s, 0);
        let n = self.get_node(s)?;
        let remaining = n
            .total_objects
            .load(Relaxed)
            .saturating_sub(self.count_free_on_node(s)?);
        if n.nr_slabs.load(Relaxed) > 0 {
            self.report_objects_remaining(s, remaining, crate::slab::CallSite::caller());
            return Err(SlabError::ObjectsRemaining {
                name: s.name(),
                objects: remaining,
            });
        }
        self.unlink_cache(r.0);
        self.pcs_destroy(s);
        let cpu_slab = s.cpu_slab_ptr();
        let node = s.node.load(Relaxed);
        let seq = s.random_seq.load(Relaxed);
        s.magic.store(0, Relaxed);
        self.release_ctor(r.0);
        // A `cpu_slab` that no longer describes a `kmem_cache_cpu` in the per-CPU areas
        // was already reported when it was used; its space is not given back.
        if self.cpu_slab(s, 0).is_some() {
            self.percpu_areas().free(self.platform(), cpu_slab);
        }
        self.free_cache_stats(s);
        let _ = self.cache_free(
            KmemCacheRef(self.slab.kmem_cache_node.load(Relaxed)),
            crate::VirtAddr(node),
            crate::slab::CallSite::caller(),
        );
        if seq != 0 {
            let _ = self.kfree(crate::VirtAddr(seq));
        }
        let _ = self.cache_free(
            KmemCacheRef(self.slab.kmem_cache.load(Relaxed)),
            crate::VirtAddr(r.0),
            crate::slab::CallSite::caller(),
        );
        Ok(())
    }
}

fn copy_cache(from: &KmemCache, to: &KmemCache) {
    macro_rules! copy {
        ($($f:ident),*) => { $( to.$f.store(from.$f.load(Relaxed), Relaxed); )* };
    }
    copy!(
        magic,
        cpu_slab,
        node,
        random,
        random_seq,
        ctor,
        flags,
        size,
        object_size,
        offset,
        inuse,
        align,
        red_left_pad,
        oo,
        min,
        min_partial,
        cpu_partial_slabs,
        refcount,
        allocflags,
        reciprocal_size,
        stats,
        cpu_sheaves,
        sheaf_capacity,
        name_len
    );
    for (a, b) in to.name.iter().zip(&from.name) {
        a.store(b.load(Relaxed), Relaxed);
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

#[cfg(test)]
mod tests {
    use super::*;

    /// `/proc/slabinfo` of a 128-CPU machine (`tests/data/proc/slabinfo`): objperslab and
    /// pagesperslab of the kmalloc caches.
    #[test]
    fn kmalloc_slab_geometry_matches_the_128_cpu_sample() {
        for (size, objs, pages) in [
            (8, 512, 1),
            (16, 256, 1),
            (32, 128, 1),
            (64, 64, 1),
            (96, 42, 1),
            (128, 64, 2),
            (192, 42, 2),
            (256, 64, 4),
            (512, 64, 8),
            (1024, 32, 8),
            (2048, 16, 8),
            (4096, 8, 8),
            (8192, 4, 8),
        ] {
            let l = calculate_sizes(size, 8, SlabFlags::KMALLOC, false, 128).unwrap();
            assert_eq!(
                (l.size, l.oo.objects, 1 << l.oo.order),
                (size, objs, pages),
                "kmalloc-{size}"
            );
        }
    }

    #[test]
    fn debug_layout_adds_red_zones_and_tracks() {
        let l = calculate_sizes(64, 8, SlabFlags::DEBUG | SlabFlags::KMALLOC, false, 4).unwrap();
        // 64 + right red zone 8 (inuse 72) + free pointer 8 + 2 tracks 64 + orig size 4
        // + left red zone 8 + 8, aligned to 8.
        assert_eq!(l.inuse, 72);
        assert_eq!(l.offset, 72);
        assert_eq!(l.red_left_pad, 8);
        assert_eq!(l.size, 168);
        assert!(l.flags.contains(SlabFlags::OBJECT_POISON));
        let plain = calculate_sizes(64, 8, SlabFlags::empty(), false, 4).unwrap();
        assert_eq!((plain.size, plain.offset), (64, 32));
    }
}
