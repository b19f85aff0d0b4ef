//! `/sys/kernel/slab/<cache>/<attribute>` (Linux 6.6 `mm/slub.c`, the `SLAB_ATTR_RO`
//! attributes of `slab_attrs[]`, `show_slab_objects()`, `create_unique_id()`).
//!
//! A cache that can be merged has its directory under a unique id (`:0000064`, `:a-0000104`)
//! and its name is a symbolic link to it, as `sysfs_slab_add()` lays it out; an unmergeable
//! cache's directory has the cache's own name. Both spellings are accepted here.

use core::fmt::Write;
use core::sync::atomic::Ordering::Relaxed;

use crate::platform::Platform;
use crate::slab::cache::{KmemCache, KmemCacheRef};
use crate::slab::sheaf::SlabPercpu;
use crate::slab::stats::StatItem;
use crate::slab::{CacheName, SlabError, SlabFlags};
use crate::Mm;

/// Where the slab directories live.
pub const SYSFS_SLAB_DIR: &str = "/sys/kernel/slab";

/// The read-only attributes that are not statistics, in `slab_attrs[]` order (those of 6.6
/// that this allocator has, and 6.18's `sheaf_capacity`, which a machine has only with
/// sheaves; `ctor`, `usersize`, `validate`, `shrink` and the NUMA and tracking files are
/// left out).
pub const SLAB_ATTRS: &[&str] = &[
    "slab_size",
    "object_size",
    "objs_per_slab",
    "order",
    "sheaf_capacity",
    "min_partial",
    "cpu_partial",
    "objects",
    "objects_partial",
    "partial",
    "cpu_slabs",
    "aliases",
    "align",
    "hwcache_align",
    "reclaim_account",
    "destroy_by_rcu",
    "slabs_cpu_partial",
    "sanity_checks",
    "trace",
    "red_zone",
    "poison",
    "store_user",
    "total_objects",
    "slabs",
    "cache_dma",
];

/// What `show_slab_objects()` counts (`SO_*`).
#[derive(Copy, Clone, PartialEq, Eq)]
enum SlabObjects {
    /// `SO_ALL`: slabs of the node.
    AllSlabs,
    /// `SO_ALL|SO_OBJECTS`: objects in use (the node's objects less the free ones on
    /// partial slabs).
    AllObjects,
    /// `SO_ALL|SO_TOTAL`: all objects of the node's slabs.
    AllTotal,
    /// `SO_PARTIAL`: partial slabs.
    PartialSlabs,
    /// `SO_PARTIAL|SO_OBJECTS`: objects in use on partial slabs.
    PartialObjects,
    /// `SO_CPU`: CPU slabs and per-CPU partial slabs.
    CpuSlabs,
}

impl<P: Platform> Mm<P> {
    /// `create_unique_id()`: `:` then the flags that keep caches apart (`d` DMA, `D`
    /// DMA32, `a` reclaimable, `F` sanity checks, `A` accounted), `-` if any, and the
    /// object size with metadata on seven digits.
    pub fn slab_unique_id(&self, s: &KmemCache) -> CacheName {
        let flags = s.flags();
        let mut id = crate::procfs::LineBuf::new();
        let _ = id.write_char(':');
        let letters = [
            (SlabFlags::CACHE_DMA, 'd'),
            (SlabFlags::CACHE_DMA32, 'D'),
            (SlabFlags::RECLAIM_ACCOUNT, 'a'),
            (SlabFlags::CONSISTENCY_CHECKS, 'F'),
            (SlabFlags::ACCOUNT, 'A'),
        ];
        let mut any = false;
        for (flag, letter) in letters {
            if flags.contains(flag) {
                let _ = id.write_char(letter);
                any = true;
            }
        }
        if any {
            let _ = id.write_char('-');
        }
        let _ = write!(id, "{:07}", s.size());
        CacheName::new(id.as_str())
    }

    /// The name of the cache's directory: its unique id when it can be merged, else its
    /// name (`sysfs_slab_add()`).
    pub fn sysfs_slab_dir(&self, s: &KmemCache) -> CacheName {
        if self.slab_unmergeable(s) {
            s.name()
        } else {
            self.slab_unique_id(s)
        }
    }

    /// The cache whose directory (or link) is `dir`.
    pub fn sysfs_slab_lookup(&self, dir: &str) -> Option<KmemCacheRef> {
        self.find_cache(dir).or_else(|| {
            self.for_each_cache(|s| {
                (dir.starts_with(':') && self.sysfs_slab_dir(s).as_str() == dir).then(|| s.handle())
            })
        })
    }

    /// Render `/sys/kernel/slab/<dir>/<attribute>`; `Ok(false)` if there is no such file.
    pub fn sysfs_slab_render(&self, path: &str, w: &mut dyn Write) -> Result<bool, SlabError> {
        let Some(rest) = path.strip_prefix(SYSFS_SLAB_DIR) else {
            return Ok(false);
        };
        let Some((dir, attr)) = rest.trim_start_matches('/').split_once('/') else {
            return Ok(false);
        };
        let Some(r) = self.sysfs_slab_lookup(dir) else {
            return Ok(false);
        };
        self.show_slab_attr(r, attr, w)
    }

    /// One attribute of a cache, as its `*_show()` prints it; `Ok(false)` for a file the
    /// cache's directory does not have (statistics files without `--slub-stats`).
    pub fn show_slab_attr(
        &self,
        r: KmemCacheRef,
        attr: &str,
        w: &mut dyn Write,
    ) -> Result<bool, SlabError> {
        if let Some(item) = StatItem::from_file_name(attr) {
            return self.show_slub_stat(r, item, w);
        }
        let s = self.cache(r)?;
        let flags = s.flags();
        let flag = |f: SlabFlags| u32::from(flags.contains(f));
        let value: u64 = match attr {
            "slab_size" => s.size().into(),
            "object_size" => s.object_size().into(),
            "objs_per_slab" => s.oo().objects.into(),
            "order" => s.oo().order.into(),
            // 6.18 `sheaf_capacity_show()`: every cache has the file (0 without sheaves);
            // 6.6, the default machine, has none.
            "sheaf_capacity" if self.slab_percpu() == SlabPercpu::Sheaves => {
                s.sheaf_capacity().into()
            }
            "min_partial" => s.min_partial(),
            // slub_cpu_partial(): the object count the slab limit was derived from.
            "cpu_partial" => crate::slab::cache::cpu_partial_objects(s.size(), s.is_debug()).into(),
            "objects" => return self.show_slab_objects(s, SlabObjects::AllObjects, w),
            "objects_partial" => return self.show_slab_objects(s, SlabObjects::PartialObjects, w),
            "partial" => return self.show_slab_objects(s, SlabObjects::PartialSlabs, w),
            "cpu_slabs" => return self.show_slab_objects(s, SlabObjects::CpuSlabs, w),
            "total_objects" => return self.show_slab_objects(s, SlabObjects::AllTotal, w),
            "slabs" => return self.show_slab_objects(s, SlabObjects::AllSlabs, w),
            "slabs_cpu_partial" => return self.show_slabs_cpu_partial(s, w),
            "aliases" => self.slab_aliases(s),
            "align" => s.align().into(),
            "hwcache_align" => flag(SlabFlags::HWCACHE_ALIGN).into(),
            "reclaim_account" => flag(SlabFlags::RECLAIM_ACCOUNT).into(),
            "cache_dma" => flag(SlabFlags::CACHE_DMA).into(),
            // No SLAB_TYPESAFE_BY_RCU and no SLAB_TRACE here.
            "destroy_by_rcu" | "trace" => 0,
            "sanity_checks" => flag(SlabFlags::CONSISTENCY_CHECKS).into(),
            "red_zone" => flag(SlabFlags::RED_ZONE).into(),
            "poison" => flag(SlabFlags::POISON).into(),
            "store_user" => flag(SlabFlags::STORE_USER).into(),
            _ => return Ok(false),
        };
        let _ = writeln!(w, "{value}");
        Ok(true)
    }

    /// `aliases_show()`: `refcount - 1`, 0 for a cache exempt from merging.
    pub fn slab_aliases(&self, s: &KmemCache) -> u64 {
        let refcount = s.refcount.load(Relaxed) as i32;
        if refcount < 0 {
            0
        } else {
            (refcount as u64).saturating_sub(1)
        }
    }

    /// `show_slab_objects()`: the total and, per node with a non-zero count, ` N<node>=`.
    fn show_slab_objects(
        &self,
        s: &KmemCache,
        what: SlabObjects,
        w: &mut dyn Write,
    ) -> Result<bool, SlabError> {
        let total = self.count_slab_objects(s, what)?;
        let _ = write!(w, "{total}");
        if total != 0 {
            // CONFIG_NUMA, one node.
            let _ = write!(w, " N0={total}");
        }
        let _ = writeln!(w);
        Ok(true)
    }

    fn count_slab_objects(&self, s: &KmemCache, what: SlabObjects) -> Result<u64, SlabError> {
        let n = self.get_node(s)?;
        Ok(match what {
            SlabObjects::AllSlabs => n.nr_slabs.load(Relaxed),
            SlabObjects::AllTotal => n.total_objects.load(Relaxed),
            SlabObjects::AllObjects => n
                .total_objects
                .load(Relaxed)
                .saturating_sub(self.count_free_on_node(s)?),
            SlabObjects::PartialSlabs => n.nr_partial.load(Relaxed),
            SlabObjects::PartialObjects => self.count_inuse_on_partial(s)?,
            SlabObjects::CpuSlabs => {
                let mut slabs = 0;
                for cpu in 0..self.platform.nr_cpus() {
                    if let Some(c) = self.cpu_slab(s, cpu) {
                        slabs += u64::from(c.slab.load(Relaxed) != 0);
                        if c.partial.load(Relaxed) != 0 {
                            slabs += c.partial_slabs.load(Relaxed);
                        }
                    }
                }
                slabs
            }
        })
    }

    /// `count_partial(n, count_inuse)`.
    fn count_inuse_on_partial(&self, s: &KmemCache) -> Result<u64, SlabError> {
        let n = self.get_node(s)?;
        let _guard = self.lock_node(n);
        let mut inuse = 0u64;
        self.walk_node_list(s, n, &n.partial, |pfn| {
            inuse += self.slab_counters(pfn).inuse as u64;
            None::<()>
        })?;
        Ok(inuse)
    }

    /// `slabs_cpu_partial_show()`: objects and slabs on the per-CPU partial lists, then
    /// ` C<cpu>=<objects>(<slabs>)` for each CPU that has some.
    fn show_slabs_cpu_partial(&self, s: &KmemCache, w: &mut dyn Write) -> Result<bool, SlabError> {
        let per_cpu = |cpu| {
            self.cpu_slab(s, cpu)
                .filter(|c| c.partial.load(Relaxed) != 0)
                .map_or(0, |c| c.partial_slabs.load(Relaxed))
        };
        // 6.6 prints slabs * oo_objects(s->oo) as the object estimate.
        let objects = s.oo().objects as u64;
        let slabs: u64 = (0..self.platform.nr_cpus()).map(per_cpu).sum();
        let _ = write!(w, "{}({})", slabs * objects, slabs);
        for cpu in 0..self.platform.nr_cpus() {
            let n = per_cpu(cpu);
            if n != 0 {
                let _ = write!(w, " C{cpu}={}({})", n * objects, n);
            }
        }
        let _ = writeln!(w);
        Ok(true)
    }
}
