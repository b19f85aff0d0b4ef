//! The boot caches (`mm/slub.c` of Linux 6.6): `init_kmem_cache_nodes()`,
//! `early_kmem_cache_node_alloc()`, and `kmem_cache_init()`'s bootstrap of the `kmem_cache`
//! and `kmem_cache_node` caches from static copies (`bootstrap()`).

use crate::gfp::Gfp;
use crate::platform::Platform;
use crate::slab::cache::kmem_cache_object_size;
use crate::slab::cache::KmemCacheNode;
use crate::slab::cache::NodeSource;
use crate::slab::cache::KMEM_CACHE_NODE_SIZE;
use crate::slab::cache::NR_NODE_IDS;
use crate::slab::KmemCache;
use crate::slab::KmemCacheRef;
use crate::slab::{SlabError, SlabFlags};
use crate::Mm;
use core::sync::atomic::Ordering::Relaxed;
use zerocopy::FromZeros;

impl<P: Platform> Mm<P> {
    /// `init_kmem_cache_nodes()`: the node structure is an object of the `kmem_cache_node`
    /// cache (during boot, of its static boot structure; for that cache itself, of its own
    /// first slab: `early_kmem_cache_node_alloc`).
    pub(super) fn init_kmem_cache_node(
        &self,
        s: &KmemCache,
        source: NodeSource<'_>,
    ) -> Result<(), SlabError> {
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
            what: crate::slab::Reason::KmemCacheNodeOutsideDirectMap,
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
            what: crate::slab::Reason::NewSlabFreelistLeaves,
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
            what: crate::slab::Reason::KmemCacheOutsideDirectMap,
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
