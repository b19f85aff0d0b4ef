//! Creating and destroying caches (`mm/slab_common.c` and `mm/slub.c` of Linux 6.6):
//! `kmem_cache_create()` (merging first), the cache list, `kmem_cache_open()`,
//! `kmem_cache_shrink()` and `kmem_cache_destroy()`.

use crate::addr::{MAX_PAGE_ORDER, PAGE_SIZE};
use crate::gfp::Gfp;
use crate::platform::Platform;
use crate::slab::{SlabError, SlabFlags, MAX_CACHES};
use crate::Mm;
use core::sync::atomic::Ordering::Relaxed;

use super::geometry::cpu_partial_slabs;
use crate::slab::cache::calculate_alignment;
use crate::slab::cache::calculate_sizes;
use crate::slab::cache::Ctor;
use crate::slab::cache::KmemCacheCpu;
use crate::slab::cache::NodeSource;
use crate::slab::cache::MAGIC;
use crate::slab::cache::MAX_CTOR_OBJECT;
use crate::slab::KmemCache;
use crate::slab::KmemCacheRef;

impl<P: Platform> Mm<P> {
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
            return Err(SlabError::BadArgs(crate::slab::Reason::NoName));
        }
        if size == 0 || size > (PAGE_SIZE << MAX_PAGE_ORDER) {
            return Err(SlabError::BadArgs(
                crate::slab::Reason::ObjectSizeOutOfRange,
            ));
        }
        if align != 0 && !align.is_power_of_two() {
            return Err(SlabError::BadArgs(crate::slab::Reason::AlignNotPowerOfTwo));
        }
        if align > PAGE_SIZE {
            return Err(SlabError::BadArgs(crate::slab::Reason::AlignAbovePageSize));
        }
        if ctor.is_some() && size > MAX_CTOR_OBJECT {
            return Err(SlabError::BadArgs(crate::slab::Reason::CtorObjectTooLarge));
        }
        if self.slab.caches.lock_irqsave(&self.platform).len >= MAX_CACHES {
            return Err(SlabError::TooManyCaches);
        }
        if self.find_cache(name).is_some() {
            return Err(SlabError::BadArgs(crate::slab::Reason::NameExists));
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
            what: crate::slab::Reason::KmemCacheOutsideDirectMap,
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

    pub(super) fn link_cache(&self, s: &KmemCache) -> Result<(), SlabError> {
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
        .ok_or(SlabError::BadArgs(crate::slab::Reason::NoOrderFits))?;
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
}

impl<P: Platform> Mm<P> {
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
            return Err(SlabError::BadArgs(crate::slab::Reason::PermanentCache));
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
            return Err(SlabError::ObjectsRemaining { objects: remaining });
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
