//! Slab merging (Linux 6.6 `mm/slab_common.c` `slab_unmergeable()`, `find_mergeable()`,
//! `SLAB_NEVER_MERGE`, `SLAB_MERGE_SAME`, the `slab_nomerge` boot parameter, and
//! `mm/slub.c` `__kmem_cache_alias()`).
//!
//! A cache created with the same size after alignment, compatible flags and no
//! constructor as an existing cache is not created: the existing cache is returned, its
//! reference count raised and its object size widened, and the new name becomes an alias
//! (a symbolic link in `/sys/kernel/slab`). Aliases are kept in a host-side table
//! ([`AliasTable`]) so that the shell can still find a cache by the name it was created
//! with.

use core::sync::atomic::Ordering::Relaxed;

use crate::platform::Platform;
use crate::slab::cache::{KmemCache, KmemCacheRef, CACHE_LINE};
use crate::slab::{CacheName, SlabFlags, MAX_CACHES};
use crate::Mm;

/// `SLAB_NEVER_MERGE` of the flags this allocator has: red zones, poisoning and user
/// tracking (and, in the kernel, tracing, RCU, leak-trace and fault-injection flags).
pub const SLAB_NEVER_MERGE: SlabFlags = SlabFlags::RED_ZONE
    .union(SlabFlags::POISON)
    .union(SlabFlags::STORE_USER);

/// `SLAB_MERGE_SAME`: flags two caches must agree on to merge (Linux 6.6:
/// `SLAB_RECLAIM_ACCOUNT | SLAB_CACHE_DMA | SLAB_CACHE_DMA32 | SLAB_ACCOUNT`).
pub const SLAB_MERGE_SAME: SlabFlags = SlabFlags::RECLAIM_ACCOUNT
    .union(SlabFlags::CACHE_DMA)
    .union(SlabFlags::CACHE_DMA32)
    .union(SlabFlags::ACCOUNT);

/// `refcount` of a cache exempt from merging (`create_boot_cache()` sets -1).
pub(crate) const REFCOUNT_UNMERGEABLE: u32 = u32::MAX;

/// Alias names and the caches they stand for (the kernel's sysfs links).
pub struct AliasTable {
    pub(crate) names: [Option<(CacheName, u64)>; MAX_CACHES],
}

impl AliasTable {
    pub(crate) const fn new() -> AliasTable {
        AliasTable {
            names: [None; MAX_CACHES],
        }
    }
}

/// `ALIGN(x, a)` for a power-of-two `a`.
fn align_up(x: u32, a: u32) -> u32 {
    x.div_ceil(a.max(1)) * a.max(1)
}

/// `calculate_alignment()`: hardware cache alignment halved while the object fits twice,
/// at least `ARCH_SLAB_MINALIGN` (8 on x86_64), a multiple of the word size.
pub(crate) fn calculate_alignment(flags: SlabFlags, align: u32, size: u32) -> u32 {
    let mut align = align;
    if flags.contains(SlabFlags::HWCACHE_ALIGN) {
        let mut ralign = CACHE_LINE;
        while size <= ralign / 2 {
            ralign /= 2;
        }
        align = align.max(ralign);
    }
    align_up(align.max(8), 8)
}

impl<P: Platform> Mm<P> {
    /// `slab_unmergeable()`: `slab_nomerge`, a never-merge flag, a constructor, a
    /// user-copy region, or a cache exempt since boot. The kmalloc caches have a user-copy
    /// region (`create_kmalloc_cache()` gives them `usersize = size`), so with
    /// `CONFIG_HARDENED_USERCOPY`, as distribution kernels build, they are never merged
    /// into (the real `/proc/slabinfo` of `tests/data` lists `vmap_area` beside
    /// `kmalloc-64`, both 64 bytes on that kernel).
    pub fn slab_unmergeable(&self, s: &KmemCache) -> bool {
        self.slab.config.nomerge
            || s.flags().intersects(SLAB_NEVER_MERGE)
            || s.has_ctor()
            || s.flags().contains(SlabFlags::KMALLOC)
            || s.refcount.load(Relaxed) == REFCOUNT_UNMERGEABLE
    }

    /// `find_mergeable()`: the newest cache that a new cache of this size, alignment and
    /// flags (already including `slab_debug`) can share.
    pub(crate) fn find_mergeable(
        &self,
        size: u32,
        align: u32,
        flags: SlabFlags,
        has_ctor: bool,
    ) -> Option<KmemCacheRef> {
        if self.slab.config.nomerge || has_ctor {
            return None;
        }
        let size = align_up(size, 8);
        let align = calculate_alignment(flags, align, size);
        let size = align_up(size, align);
        if flags.intersects(SLAB_NEVER_MERGE) {
            return None;
        }
        self.for_each_cache(|s| {
            let mergeable = !self.slab_unmergeable(s)
                && size <= s.size()
                && (flags & SLAB_MERGE_SAME) == (s.flags() & SLAB_MERGE_SAME)
                && s.size() & !(align - 1) == s.size()
                && s.size() - size < 8;
            mergeable.then(|| s.handle())
        })
    }

    /// `__kmem_cache_alias()`: make `name` an alias of a mergeable cache, if there is one:
    /// its reference count goes up and its object size and `inuse` widen to cover `size`.
    pub(crate) fn kmem_cache_alias(
        &self,
        name: &str,
        size: u32,
        align: u32,
        flags: SlabFlags,
        has_ctor: bool,
    ) -> Option<KmemCacheRef> {
        let r = self.find_mergeable(size, align, flags, has_ctor)?;
        let s = self.cache(r).ok()?;
        {
            let mut table = self.slab.aliases.lock_irqsave(&self.platform);
            let slot = table.names.iter_mut().find(|e| e.is_none())?;
            *slot = Some((CacheName::new(name), r.0));
        }
        s.refcount
            .store(s.refcount.load(Relaxed).saturating_add(1), Relaxed);
        s.object_size.store(s.object_size().max(size), Relaxed);
        s.inuse.store(s.inuse().max(align_up(size, 8)), Relaxed);
        Some(r)
    }

    /// Drop one reference of a merged cache (`kmem_cache_destroy()` while `refcount` stays
    /// above zero): true if the cache lives on for its other users. The alias named
    /// `name`, if it is one, is forgotten.
    pub(crate) fn kmem_cache_unalias(&self, s: &KmemCache, name: Option<&str>) -> bool {
        let refcount = s.refcount.load(Relaxed);
        if refcount == REFCOUNT_UNMERGEABLE || refcount <= 1 {
            return false;
        }
        s.refcount.store(refcount - 1, Relaxed);
        let mut table = self.slab.aliases.lock_irqsave(&self.platform);
        let va = s.self_va.load(Relaxed);
        let mut entries = table.names.iter_mut();
        let entry = match name {
            Some(name) => entries.find(|e| e.is_some_and(|(n, v)| v == va && n.as_str() == name)),
            None => entries.find(|e| e.is_some_and(|(_, v)| v == va)),
        };
        if let Some(e) = entry {
            *e = None;
        }
        true
    }

    /// The cache an alias name stands for.
    pub fn find_alias(&self, name: &str) -> Option<KmemCacheRef> {
        let table = self.slab.aliases.lock_irqsave(&self.platform);
        table
            .names
            .iter()
            .flatten()
            .find(|(n, _)| n.as_str() == name)
            .map(|&(_, va)| KmemCacheRef(va))
    }

    /// Each alias name with its cache, in creation order of the table's slots.
    pub fn for_each_alias(&self, mut f: impl FnMut(&str, KmemCacheRef)) {
        let names = self.slab.aliases.lock_irqsave(&self.platform).names;
        for (n, va) in names.iter().flatten() {
            f(n.as_str(), KmemCacheRef(*va));
        }
    }
}
