//! Setting the sheaves up and tearing them down (Linux 7.0's `calculate_sheaf_capacity()`
//! and `init_percpu_sheaves()`, 6.18's barn allocation, `pcs_destroy()`), and what they
//! hold (`for_each_sheaf_object()` for the checker and tools, `sheaves_info()`).

use crate::gfp::Gfp;
use crate::platform::Platform;
use crate::slab::cache::KmemCache;
use crate::slab::sheaf::BarnList;
use crate::slab::sheaf::NodeBarn;
use crate::slab::sheaf::SheavesInfo;
use crate::slab::sheaf::SlabPercpu;
use crate::slab::sheaf::SlubPercpuSheaves;
use crate::slab::SlabError;
use crate::{Mm, VirtAddr};
use core::sync::atomic::Ordering::Relaxed;

impl<P: Platform> Mm<P> {
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
        let ptr = match self.percpu_areas().alloc(
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
            // The dying cache's trylock failures stay counted (`sheaves_trylock_failures`);
            // cache destruction is rare, the shared counter is written only here.
            let fails = pcs.trylock_fail.swap(0, Relaxed);
            self.slab.pcs_trylock_fail.fetch_add(fails, Relaxed);
            for slot in [&pcs.main, &pcs.spare] {
                let va = slot.swap(0, Relaxed);
                if va != 0 && self.sheaf_checked(s, va).is_some() {
                    self.sheaf_flush_unused(s, va);
                    self.free_empty_sheaf(s, va);
                }
            }
        }
        if self.pcs(s, 0).is_some() {
            self.percpu_areas()
                .free(self.platform(), s.cpu_sheaves_ptr());
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
