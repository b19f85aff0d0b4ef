//! SLUB statistics (`CONFIG_SLUB_STATS`, Linux 6.6 `include/linux/slub_def.h` `enum
//! stat_item`, `mm/slub.c` `stat()` and `show_stat()`).
//!
//! The kernel keeps `unsigned stat[NR_SLUB_STAT_ITEMS]` in each CPU's `kmem_cache_cpu` when
//! built with `CONFIG_SLUB_STATS`, and bumps it with a plain per-CPU increment (no atomic
//! read-modify-write). Here the option is a boot flag ([`crate::slab::SlabConfig::slub_stats`]):
//! when it is on, each cache gets a second per-CPU allocation of counters (pointed to by
//! `kmem_cache.stats`); when it is off, the allocation is not made and each `stat()` call
//! is one test of the configuration, so the default fast paths pay (almost) nothing.
//! The counters live in simulated per-CPU memory and are updated with a relaxed load and
//! store on the current CPU, as `raw_cpu_inc()` does.

use core::sync::atomic::{AtomicU64, Ordering::Relaxed};

use crate::platform::Platform;
use crate::slab::cache::{KmemCache, KmemCacheRef};
use crate::slab::SlabError;
use crate::Mm;

/// `NR_SLUB_STAT_ITEMS`.
pub const NR_SLUB_STAT_ITEMS: usize = 36;

/// `enum stat_item` (Linux 6.6, with the sheaf items of Linux 6.18: `ALLOC_PCS`, `FREE_PCS`
/// and `SHEAF_FLUSH` … `BARN_PUT_FAIL`; the RCU and prefill items are not kept), in the
/// kernel's order.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum StatItem {
    /// Allocation from percpu sheaf.
    AllocPcs,
    /// Allocation from cpu slab.
    AllocFastpath,
    /// Allocation by getting a new cpu slab.
    AllocSlowpath,
    /// Free to percpu sheaf.
    FreePcs,
    /// Free to cpu slab.
    FreeFastpath,
    /// Freeing not to cpu slab.
    FreeSlowpath,
    /// Freeing to frozen slab.
    FreeFrozen,
    /// Freeing moves slab to partial list.
    FreeAddPartial,
    /// Freeing removes last object.
    FreeRemovePartial,
    /// Cpu slab acquired from node partial list.
    AllocFromPartial,
    /// Cpu slab acquired from page allocator.
    AllocSlab,
    /// Refill cpu slab from slab freelist.
    AllocRefill,
    /// Switching cpu slab.
    AllocNodeMismatch,
    /// Slab freed to the page allocator.
    FreeSlab,
    /// Abandoning of the cpu slab.
    CpuslabFlush,
    /// Cpu slab was full when deactivated.
    DeactivateFull,
    /// Cpu slab was empty when deactivated.
    DeactivateEmpty,
    /// Cpu slab was moved to the head of partials.
    DeactivateToHead,
    /// Cpu slab was moved to the tail of partials.
    DeactivateToTail,
    /// Slab contained remotely freed objects.
    DeactivateRemoteFrees,
    /// Implicit deactivation.
    DeactivateBypass,
    /// Number of times fallback was necessary.
    OrderFallback,
    /// Failure of this_cpu_cmpxchg_double.
    CmpxchgDoubleCpuFail,
    /// Number of times that cmpxchg double did not match.
    CmpxchgDoubleFail,
    /// Used cpu partial on alloc.
    CpuPartialAlloc,
    /// Refill cpu partial on free.
    CpuPartialFree,
    /// Refill cpu partial from node partial.
    CpuPartialNode,
    /// Drain cpu partial to node partial.
    CpuPartialDrain,
    /// Objects flushed from a sheaf.
    SheafFlush,
    /// Objects refilled to a sheaf.
    SheafRefill,
    /// Allocation of an empty sheaf.
    SheafAlloc,
    /// Freeing of an empty sheaf.
    SheafFree,
    /// Got full sheaf from barn.
    BarnGet,
    /// Failed to get full sheaf from barn.
    BarnGetFail,
    /// Put full sheaf to barn.
    BarnPut,
    /// Failed to put full sheaf to barn.
    BarnPutFail,
}

impl StatItem {
    /// Every item, in `enum stat_item` order.
    pub const ALL: [StatItem; NR_SLUB_STAT_ITEMS] = [
        StatItem::AllocPcs,
        StatItem::AllocFastpath,
        StatItem::AllocSlowpath,
        StatItem::FreePcs,
        StatItem::FreeFastpath,
        StatItem::FreeSlowpath,
        StatItem::FreeFrozen,
        StatItem::FreeAddPartial,
        StatItem::FreeRemovePartial,
        StatItem::AllocFromPartial,
        StatItem::AllocSlab,
        StatItem::AllocRefill,
        StatItem::AllocNodeMismatch,
        StatItem::FreeSlab,
        StatItem::CpuslabFlush,
        StatItem::DeactivateFull,
        StatItem::DeactivateEmpty,
        StatItem::DeactivateToHead,
        StatItem::DeactivateToTail,
        StatItem::DeactivateRemoteFrees,
        StatItem::DeactivateBypass,
        StatItem::OrderFallback,
        StatItem::CmpxchgDoubleCpuFail,
        StatItem::CmpxchgDoubleFail,
        StatItem::CpuPartialAlloc,
        StatItem::CpuPartialFree,
        StatItem::CpuPartialNode,
        StatItem::CpuPartialDrain,
        StatItem::SheafFlush,
        StatItem::SheafRefill,
        StatItem::SheafAlloc,
        StatItem::SheafFree,
        StatItem::BarnGet,
        StatItem::BarnGetFail,
        StatItem::BarnPut,
        StatItem::BarnPutFail,
    ];

    /// The sysfs file name (`STAT_ATTR(ALLOC_FASTPATH, alloc_fastpath)` and friends).
    pub fn file_name(self) -> &'static str {
        match self {
            StatItem::AllocPcs => "alloc_cpu_sheaf",
            StatItem::FreePcs => "free_cpu_sheaf",
            StatItem::SheafFlush => "sheaf_flush",
            StatItem::SheafRefill => "sheaf_refill",
            StatItem::SheafAlloc => "sheaf_alloc",
            StatItem::SheafFree => "sheaf_free",
            StatItem::BarnGet => "barn_get",
            StatItem::BarnGetFail => "barn_get_fail",
            StatItem::BarnPut => "barn_put",
            StatItem::BarnPutFail => "barn_put_fail",
            StatItem::AllocFastpath => "alloc_fastpath",
            StatItem::AllocSlowpath => "alloc_slowpath",
            StatItem::FreeFastpath => "free_fastpath",
            StatItem::FreeSlowpath => "free_slowpath",
            StatItem::FreeFrozen => "free_frozen",
            StatItem::FreeAddPartial => "free_add_partial",
            StatItem::FreeRemovePartial => "free_remove_partial",
            StatItem::AllocFromPartial => "alloc_from_partial",
            StatItem::AllocSlab => "alloc_slab",
            StatItem::AllocRefill => "alloc_refill",
            StatItem::AllocNodeMismatch => "alloc_node_mismatch",
            StatItem::FreeSlab => "free_slab",
            StatItem::CpuslabFlush => "cpuslab_flush",
            StatItem::DeactivateFull => "deactivate_full",
            StatItem::DeactivateEmpty => "deactivate_empty",
            StatItem::DeactivateToHead => "deactivate_to_head",
            StatItem::DeactivateToTail => "deactivate_to_tail",
            StatItem::DeactivateRemoteFrees => "deactivate_remote_frees",
            StatItem::DeactivateBypass => "deactivate_bypass",
            StatItem::OrderFallback => "order_fallback",
            StatItem::CmpxchgDoubleCpuFail => "cmpxchg_double_cpu_fail",
            StatItem::CmpxchgDoubleFail => "cmpxchg_double_fail",
            StatItem::CpuPartialAlloc => "cpu_partial_alloc",
            StatItem::CpuPartialFree => "cpu_partial_free",
            StatItem::CpuPartialNode => "cpu_partial_node",
            StatItem::CpuPartialDrain => "cpu_partial_drain",
        }
    }

    /// The item whose sysfs file is `name`.
    pub fn from_file_name(name: &str) -> Option<StatItem> {
        StatItem::ALL.into_iter().find(|i| i.file_name() == name)
    }
}

/// One CPU's counters of one cache (`kmem_cache_cpu.stat[]`), in the per-CPU areas.
#[repr(C)]
#[derive(zerocopy::FromBytes)]
pub struct SlubStats {
    stat: [AtomicU64; NR_SLUB_STAT_ITEMS],
}

impl<P: Platform> Mm<P> {
    /// `stat()`: count `item` for `s` on this CPU, when statistics are on.
    #[inline(always)]
    pub(crate) fn stat(&self, s: &KmemCache, item: StatItem) {
        if self.slab.config.slub_stats {
            self.stat_inc(s, item);
        }
    }

    /// `stat_add()`: count `n` of `item` for `s` on this CPU, when statistics are on.
    #[inline(always)]
    pub(crate) fn stat_add(&self, s: &KmemCache, item: StatItem, n: u64) {
        if self.slab.config.slub_stats && n != 0 {
            let cpu = self.platform.smp_processor_id();
            if let Some(st) = self.stats_of(s, cpu) {
                let counter = &st.stat[item as usize];
                counter.store(counter.load(Relaxed).wrapping_add(n), Relaxed);
            }
        }
    }

    /// The counting half of [`Mm::stat`]: a plain increment of this CPU's counter. A
    /// `kmem_cache.stats` read back from RAM that does not describe counters in the
    /// per-CPU areas counts nothing (statistics are not worth an oops).
    #[inline(never)]
    fn stat_inc(&self, s: &KmemCache, item: StatItem) {
        let cpu = self.platform.smp_processor_id();
        if let Some(st) = self.stats_of(s, cpu) {
            let counter = &st.stat[item as usize];
            counter.store(counter.load(Relaxed).wrapping_add(1), Relaxed);
        }
    }

    fn stats_of(&self, s: &KmemCache, cpu: usize) -> Option<&SlubStats> {
        let ptr = s.stats_ptr()?;
        if ptr.size as usize != core::mem::size_of::<SlubStats>() {
            return None;
        }
        self.percpu_areas().dyn_get(cpu, ptr)
    }

    /// Give a new cache its counters (with statistics on): zeroed per-CPU memory.
    pub(crate) fn alloc_cache_stats(&self, s: &KmemCache) -> Result<(), SlabError> {
        if !self.slab.config.slub_stats {
            return Ok(());
        }
        let ptr = self
            .percpu
            .alloc(
                &self.platform,
                core::mem::size_of::<SlubStats>(),
                core::mem::align_of::<SlubStats>(),
            )
            .ok_or(SlabError::NoPerCpuSpace)?;
        s.set_stats_ptr(Some(ptr));
        Ok(())
    }

    /// Give a dying cache's counters back.
    pub(crate) fn free_cache_stats(&self, s: &KmemCache) {
        if let Some(ptr) = s.stats_ptr() {
            if self.stats_of(s, 0).is_some() {
                self.percpu_areas().free(self.platform(), ptr);
            }
            s.set_stats_ptr(None);
        }
    }

    /// Are SLUB statistics kept (`--slub-stats`, the kernel's `CONFIG_SLUB_STATS`)?
    pub fn slub_stats_enabled(&self) -> bool {
        self.slab.config.slub_stats
    }

    /// `cpu`'s count of `item` for the cache, or `None` when statistics are off.
    pub fn slub_stat_cpu(
        &self,
        r: KmemCacheRef,
        item: StatItem,
        cpu: usize,
    ) -> Result<Option<u64>, SlabError> {
        let s = self.cache(r)?;
        if cpu >= self.platform.nr_cpus() {
            return Ok(None);
        }
        Ok(self
            .stats_of(s, cpu)
            .map(|st| st.stat[item as usize].load(Relaxed)))
    }

    /// The count of `item` over all CPUs, or `None` when statistics are off.
    pub fn slub_stat(&self, r: KmemCacheRef, item: StatItem) -> Result<Option<u64>, SlabError> {
        let mut total = None;
        for cpu in 0..self.platform.nr_cpus() {
            if let Some(n) = self.slub_stat_cpu(r, item, cpu)? {
                total = Some(total.unwrap_or(0u64).wrapping_add(n));
            }
        }
        Ok(total)
    }

    /// `show_stat()`: the total, then ` C<cpu>=<n>` for each CPU with a non-zero count, and
    /// a newline; `Ok(false)` when statistics are off (the file does not exist).
    pub fn show_slub_stat(
        &self,
        r: KmemCacheRef,
        item: StatItem,
        w: &mut dyn core::fmt::Write,
    ) -> Result<bool, SlabError> {
        let Some(total) = self.slub_stat(r, item)? else {
            return Ok(false);
        };
        let _ = write!(w, "{total}");
        for cpu in 0..self.platform.nr_cpus() {
            match self.slub_stat_cpu(r, item, cpu)? {
                Some(n) if n != 0 => {
                    let _ = write!(w, " C{cpu}={n}");
                }
                _ => {}
            }
        }
        let _ = writeln!(w);
        Ok(true)
    }
}
