//! Read-only questions about the slab allocator for tools (crash's `kmem -s`/`-S`/`kmem
//! ADDR`, drgn's `slab_object_info()` / `find_containing_slab_cache()`): where each slab
//! of a cache is, and the state of every object in a slab.
//!
//! Nothing here changes the allocator, takes a lock or writes a report: every link,
//! counter and free pointer read from RAM is checked, and what does not check out is
//! answered as [`SlabError::Corrupted`] naming the word and what is wrong with it. Every
//! walk is bounded (by the slab's object count, or by the pages of `mem_map`).

use core::sync::atomic::Ordering::Relaxed;

use crate::addr::{Pfn, VirtAddr};
use crate::platform::Platform;
use crate::slab::cache::{KmemCache, KmemCacheRef, MAX_OBJS_PER_PAGE};
use crate::slab::debug::{Track, TrackItem};
use crate::slab::slub::NO_OBJECT;
use crate::slab::SlabError;
use crate::Mm;

/// Where a slab is held, as crash's `kmem -S` lists slabs.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum SlabPlace {
    /// A CPU's current slab (`kmem_cache_cpu.slab`).
    CpuSlab(usize),
    /// On a CPU's partial list (`kmem_cache_cpu.partial`).
    CpuPartial(usize),
    /// On the node's partial list.
    NodePartial,
    /// On the node's full list (kept only for caches with `slab_debug`).
    NodeFull,
    /// A full slab on no list: SLUB without debugging forgets full slabs until an object
    /// in them is freed (found by scanning `mem_map`).
    Unlisted,
}

/// One slab of a cache.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct SlabSummary {
    /// PFN of the slab's first page.
    pub pfn: Pfn,
    /// Objects in the slab (`slab->objects`).
    pub objects: u16,
    /// Objects handed out, CPU freelist included (`slab->inuse`).
    pub inuse: u16,
    /// Where it is.
    pub place: SlabPlace,
}

/// A cache's slabs and objects, as crash's `kmem -s` counts them.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct SlabUsage {
    /// Slabs (`kmem_cache_node.nr_slabs`).
    pub slabs: u64,
    /// Objects in them (`kmem_cache_node.total_objects`).
    pub total: u64,
    /// Objects on no freelist.
    pub allocated: u64,
}

/// The state of one object.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum ObjectState {
    /// Handed out to a caller.
    Allocated,
    /// On the slab's own freelist.
    Free,
    /// On a CPU's lockless freelist (crash: `(cpu N cache)`).
    FreeOnCpu(usize),
}

impl ObjectState {
    /// Is the object free (on any freelist)?
    pub fn is_free(self) -> bool {
        self != ObjectState::Allocated
    }
}

/// A slab object an address falls in, with its state (drgn's `SlabObjectInfo`).
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct SlabObject {
    /// The cache.
    pub cache: KmemCacheRef,
    /// The slab.
    pub slab: SlabSummary,
    /// Index of the object in its slab.
    pub index: u16,
    /// Start of the object.
    pub object: VirtAddr,
    /// Allocated or free, and on which freelist.
    pub state: ObjectState,
    /// The last allocation's owner track, with `SLAB_STORE_USER`.
    pub alloc_track: Option<Track>,
    /// The last free's owner track, with `SLAB_STORE_USER`.
    pub free_track: Option<Track>,
}

/// One bit per object of a slab (at most [`MAX_OBJS_PER_PAGE`] objects).
struct ObjectBits([u64; (MAX_OBJS_PER_PAGE as usize).div_ceil(64)]);

impl ObjectBits {
    fn new() -> ObjectBits {
        ObjectBits([0; (MAX_OBJS_PER_PAGE as usize).div_ceil(64)])
    }
    /// Set bit `i`; false if it was already set (a freelist cycle).
    fn set(&mut self, i: u16) -> bool {
        let (w, b) = (i as usize / 64, i % 64);
        let was = self.0[w] & (1 << b) != 0;
        self.0[w] |= 1 << b;
        !was
    }
    fn get(&self, i: u16) -> bool {
        self.0[i as usize / 64] & (1 << (i % 64)) != 0
    }
}

impl FreeSets {
    /// Free objects among the first `objects`.
    fn count(&self, objects: u16) -> u64 {
        (0..objects)
            .filter(|&i| self.slab.get(i) || self.cpu.get(i))
            .count() as u64
    }
}

/// The free objects of one slab: those on its own freelist and those on the freelist of
/// the CPU that owns it.
struct FreeSets {
    slab: ObjectBits,
    cpu: ObjectBits,
    owner: Option<usize>,
}

impl<P: Platform> Mm<P> {
    /// The slab at `pfn`, checked to be a slab of `s` whose counters fit its order.
    fn checked_slab(&self, s: &KmemCache, pfn: Pfn) -> Result<SlabSummary, SlabError> {
        let corrupt = |what| SlabError::Corrupted {
            addr: self.pfn_struct_address(pfn),
            what,
        };
        let page = self
            .mem_map
            .get(pfn)
            .ok_or(corrupt(crate::slab::Reason::SlabPfnOutsideMemMap))?;
        if !page.is_slab() || page.slab_cache() != s.self_va.load(Relaxed) {
            return Err(corrupt(crate::slab::Reason::ListedPageNotSlab));
        }
        let c = self.slab_counters(pfn);
        if Self::order_objects(s, page.order()) != Some(c.objects)
            || c.inuse > c.objects
            || c.objects as u32 > MAX_OBJS_PER_PAGE
        {
            return Err(corrupt(crate::slab::Reason::SlabCountersMisfit));
        }
        Ok(SlabSummary {
            pfn,
            objects: c.objects,
            inuse: c.inuse,
            place: SlabPlace::Unlisted,
        })
    }

    /// Mark the freelist starting at `head` (an address, 0 for none) of the slab at `pfn`
    /// in `bits`: every link must be an object of the slab, and none seen twice.
    fn mark_freelist(
        &self,
        s: &KmemCache,
        pfn: Pfn,
        head: u64,
        bits: &mut ObjectBits,
    ) -> Result<(), SlabError> {
        let mut cur = head;
        while cur != 0 {
            let Some(i) = self.object_index(s, pfn, cur) else {
                return Err(SlabError::Corrupted {
                    addr: cur,
                    what: crate::slab::Reason::FreelistLeavesSlab,
                });
            };
            if !bits.set(i) {
                return Err(SlabError::Corrupted {
                    addr: cur,
                    what: crate::slab::Reason::FreelistCycle,
                });
            }
            let raw = self
                .kread::<u64>(cur.wrapping_add(s.fp_offset() as u64))
                .map_err(|_| SlabError::Corrupted {
                    addr: cur,
                    what: crate::slab::Reason::FreeObjectOutsideRam,
                })?;
            cur = self.decode_fp(s, raw, cur);
        }
        Ok(())
    }

    /// The CPU whose current slab is `pfn`, if any.
    fn cpu_owning_slab(&self, s: &KmemCache, pfn: Pfn) -> Option<usize> {
        (0..self.platform.nr_cpus())
            .find(|&cpu| self.cpu_slab(s, cpu).is_some_and(|c| c.is_cpu_slab(pfn)))
    }

    fn free_sets(&self, s: &KmemCache, slab: &SlabSummary) -> Result<FreeSets, SlabError> {
        let mut sets = FreeSets {
            slab: ObjectBits::new(),
            cpu: ObjectBits::new(),
            owner: self.cpu_owning_slab(s, slab.pfn),
        };
        let c = self.slab_counters(slab.pfn);
        let head = if c.freelist == NO_OBJECT {
            0
        } else {
            self.object_at(s, slab.pfn, c.freelist)
        };
        self.mark_freelist(s, slab.pfn, head, &mut sets.slab)?;
        if let Some(cpu) = sets.owner {
            let cpu_head = self
                .cpu_slab(s, cpu)
                .map_or(0, |c| c.freelist.load(Relaxed));
            self.mark_freelist(s, slab.pfn, cpu_head, &mut sets.cpu)?;
        }
        Ok(sets)
    }

    /// Call `f(index, address, state)` on every object of the slab at `pfn` of cache `r`,
    /// in address order (crash's `FREE / [ALLOCATED]` list). The freelists are walked
    /// first: a corrupted one is answered as [`SlabError::Corrupted`] before `f` runs.
    pub fn for_each_object_in_slab(
        &self,
        r: KmemCacheRef,
        pfn: Pfn,
        f: &mut dyn FnMut(u16, VirtAddr, ObjectState),
    ) -> Result<SlabSummary, SlabError> {
        let s = self.cache(r)?;
        let slab = self.checked_slab(s, pfn)?;
        let sets = self.free_sets(s, &slab)?;
        for i in 0..slab.objects {
            let state = match (sets.slab.get(i), sets.cpu.get(i), sets.owner) {
                (_, true, Some(cpu)) => ObjectState::FreeOnCpu(cpu),
                (true, _, _) => ObjectState::Free,
                _ => ObjectState::Allocated,
            };
            f(i, VirtAddr(self.object_at(s, pfn, i)), state);
        }
        Ok(slab)
    }

    /// Call `f` on every slab of cache `r`: each CPU's slab and partial list, the node's
    /// partial and full lists (walked as the kernel links them), then the full slabs that
    /// no list holds, found in `mem_map`. A list that leaves `mem_map`, does not end or
    /// links a page that is no slab of the cache ends the walk with
    /// [`SlabError::Corrupted`] (after `f` has seen the slabs before it).
    pub fn for_each_slab_of(
        &self,
        r: KmemCacheRef,
        f: &mut dyn FnMut(&SlabSummary),
    ) -> Result<(), SlabError> {
        let s = self.cache(r)?;
        self.listed_slabs(s, f)?;
        if !s.is_debug() {
            self.unlisted_full_slabs(s, f);
        }
        Ok(())
    }

    /// The kernel address of the cache's `kmem_cache_node` (node 0), if it is one.
    pub fn cache_node_address(&self, r: KmemCacheRef) -> Option<u64> {
        let s = self.cache(r).ok()?;
        self.get_node_quiet(s).map(|_| s.node.load(Relaxed))
    }

    /// What crash's `kmem -s` counts for a cache: the node's slabs and objects
    /// (`nr_slabs`, `total_objects`), and the objects allocated, which are all objects
    /// less the free ones on every listed slab's freelist and its owning CPU's freelist
    /// (each walked and checked; full slabs have none).
    pub fn slab_usage(&self, r: KmemCacheRef) -> Result<SlabUsage, SlabError> {
        let s = self.cache(r)?;
        let n = self.get_node_quiet(s).ok_or(SlabError::Corrupted {
            addr: s.node.load(Relaxed),
            what: crate::slab::Reason::NodeNotKmemCacheNode,
        })?;
        let (slabs, total) = (n.nr_slabs.load(Relaxed), n.total_objects.load(Relaxed));
        let mut free = 0u64;
        let mut bad = None;
        self.listed_slabs(s, &mut |slab| {
            if bad.is_none() {
                match self.free_sets(s, slab) {
                    Ok(sets) => free += sets.count(slab.objects),
                    Err(e) => bad = Some(e),
                }
            }
        })?;
        if let Some(e) = bad {
            return Err(e);
        }
        Ok(SlabUsage {
            slabs,
            total,
            allocated: total.saturating_sub(free),
        })
    }

    /// The slabs the kernel's lists hold: each CPU's slab and partial list, then the
    /// node's partial and full lists.
    fn listed_slabs(
        &self,
        s: &KmemCache,
        f: &mut dyn FnMut(&SlabSummary),
    ) -> Result<(), SlabError> {
        for cpu in 0..self.platform.nr_cpus() {
            self.cpu_slabs(s, cpu, f)?;
        }
        let n = self.get_node_quiet(s).ok_or(SlabError::Corrupted {
            addr: s.node.load(Relaxed),
            what: crate::slab::Reason::NodeNotKmemCacheNode,
        })?;
        for (list, place) in [
            (&n.partial, SlabPlace::NodePartial),
            (&n.full, SlabPlace::NodeFull),
        ] {
            for pfn in list.iter_checked(&self.mem_map, self.mem_map.len) {
                let pfn = pfn.map_err(|_| SlabError::Corrupted {
                    addr: s.node.load(Relaxed),
                    what: crate::slab::Reason::NodeSlabListLinks,
                })?;
                let slab = self.checked_slab(s, pfn)?;
                f(&SlabSummary { place, ..slab });
            }
        }
        Ok(())
    }

    /// A CPU's slab and the slabs on its partial list.
    fn cpu_slabs(
        &self,
        s: &KmemCache,
        cpu: usize,
        f: &mut dyn FnMut(&SlabSummary),
    ) -> Result<(), SlabError> {
        let c = self.cpu_slab(s, cpu).ok_or(SlabError::Corrupted {
            addr: s.cpu_slab.load(Relaxed),
            what: crate::slab::Reason::CpuSlabNotKmemCacheCpu,
        })?;
        if let Some(pfn) = c.slab_pfn() {
            let slab = self.checked_slab(s, pfn)?;
            f(&SlabSummary {
                place: SlabPlace::CpuSlab(cpu),
                ..slab
            });
        }
        let mut cur = c.partial_pfn();
        let mut steps = 0;
        while let Some(pfn) = cur {
            steps += 1;
            if steps > self.mem_map.len {
                return Err(SlabError::Corrupted {
                    addr: self.pfn_struct_address(pfn),
                    what: crate::slab::Reason::CpuPartialListUnended,
                });
            }
            let slab = self.checked_slab(s, pfn)?;
            f(&SlabSummary {
                place: SlabPlace::CpuPartial(cpu),
                ..slab
            });
            cur = crate::slab::cache::partial_chain_next(self.mem_map.page(pfn).next());
        }
        Ok(())
    }

    /// The slabs of `s` in `mem_map` that no list holds: not owned by a CPU, no free
    /// object.
    fn unlisted_full_slabs(&self, s: &KmemCache, f: &mut dyn FnMut(&SlabSummary)) {
        let me = s.self_va.load(Relaxed);
        let mut pfn = self.mem_map.base_pfn;
        let end = pfn + self.mem_map.len;
        while pfn < end {
            let Some(page) = self.mem_map.get(pfn) else {
                // An absent section: no descriptors.
                pfn = self.mem_map.next_present_pfn(pfn).unwrap_or(end);
                continue;
            };
            let step = if page.is_slab() && !page.is_tail() {
                1u64 << page.order().min(crate::addr::MAX_PAGE_ORDER)
            } else {
                1
            };
            if page.is_slab() && !page.is_tail() && page.slab_cache() == me {
                let c = self.slab_counters(pfn);
                if !c.frozen
                    && c.freelist == NO_OBJECT
                    && let Ok(slab) = self.checked_slab(s, pfn)
                {
                    f(&slab);
                }
            }
            pfn += step;
        }
    }

    /// drgn's `slab_object_info()`: the slab object `addr` falls in, if `addr` is in a
    /// slab — its cache, slab, index and state, and its owner tracks when the cache
    /// records them. `Some(Err)` for an address in a slab whose cache pointer, counters
    /// or freelists are corrupted.
    pub fn slab_object(&self, addr: VirtAddr) -> Option<Result<SlabObject, SlabError>> {
        let (pfn, page) = self.virt_to_slab(addr)?;
        Some(self.slab_object_in(addr, pfn, page.slab_cache()))
    }

    fn slab_object_in(
        &self,
        addr: VirtAddr,
        pfn: Pfn,
        cache: u64,
    ) -> Result<SlabObject, SlabError> {
        let r = KmemCacheRef(cache);
        let s = self.cache(r).map_err(|_| SlabError::Corrupted {
            addr: self.pfn_struct_address(pfn),
            what: crate::slab::Reason::SlabCacheNotLive,
        })?;
        let slab = self.checked_slab(s, pfn)?;
        let base = self.slab_address(pfn) + s.red_left_pad() as u64;
        // An address in the left red zone or the slab's tail belongs to no object: it
        // is counted with the nearest object, as crash and drgn do.
        let index = (addr.0.saturating_sub(base) / s.size().max(1) as u64)
            .min(slab.objects.saturating_sub(1) as u64) as u16;
        let object = self.object_at(s, pfn, index);
        let sets = self.free_sets(s, &slab)?;
        let state = match (sets.slab.get(index), sets.cpu.get(index), sets.owner) {
            (_, true, Some(cpu)) => ObjectState::FreeOnCpu(cpu),
            (true, _, _) => ObjectState::Free,
            _ => ObjectState::Allocated,
        };
        let place = self.place_of(s, &slab, sets.owner);
        Ok(SlabObject {
            cache: r,
            slab: SlabSummary { place, ..slab },
            index,
            object: VirtAddr(object),
            state,
            alloc_track: self.recorded_track(s, object, TrackItem::Alloc),
            free_track: self.recorded_track(s, object, TrackItem::Free),
        })
    }

    /// An object's track if it was ever written. A track never written is poison or the
    /// zeroes of a new slab: neither names a call site (the site word is the index + 1,
    /// 0 for none, as the kernel's `print_track()` skips a zero `addr`).
    fn recorded_track(&self, s: &KmemCache, object: u64, item: TrackItem) -> Option<Track> {
        self.get_track(s, object, item).filter(|t| t.site.is_some())
    }

    /// Where a slab is, from its state: a CPU's (current or partial), on the node's
    /// partial list (it has free objects), or full.
    fn place_of(&self, s: &KmemCache, slab: &SlabSummary, owner: Option<usize>) -> SlabPlace {
        if let Some(cpu) = owner {
            return SlabPlace::CpuSlab(cpu);
        }
        let c = self.slab_counters(slab.pfn);
        if c.frozen {
            let on_partial = (0..self.platform.nr_cpus()).find(|&cpu| {
                let mut found = false;
                let _ = self.cpu_slabs(s, cpu, &mut |x| {
                    found |= x.pfn == slab.pfn && x.place == SlabPlace::CpuPartial(cpu)
                });
                found
            });
            if let Some(cpu) = on_partial {
                return SlabPlace::CpuPartial(cpu);
            }
        }
        match (c.freelist == NO_OBJECT, s.is_debug()) {
            (false, _) => SlabPlace::NodePartial,
            (true, true) => SlabPlace::NodeFull,
            (true, false) => SlabPlace::Unlisted,
        }
    }
}
