//! Read-only views of the slab allocator for tools: what an address is, and the per-CPU
//! and per-node state of a cache (what the kernel shows in `/sys/kernel/slab/<cache>/`).

use core::sync::atomic::Ordering::Relaxed;

use crate::addr::{Pfn, VirtAddr};
use crate::platform::Platform;
use crate::slab::cache::KmemCacheRef;
use crate::slab::SlabError;
use crate::Mm;

/// What a slab object address is.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct ObjectInfo {
    /// The cache.
    pub cache: KmemCacheRef,
    /// PFN of the slab's first page.
    pub slab_pfn: Pfn,
    /// Index of the object in its slab.
    pub index: u16,
    /// Start of the object.
    pub object: VirtAddr,
    /// Offset of the address inside the object (0 for its start).
    pub offset_in_object: u64,
    /// Offset of the object from the slab's start.
    pub offset_in_slab: u64,
    /// Is the object on a freelist (the slab's or a CPU's)?
    pub free: bool,
}

/// One CPU's state for a cache (`kmem_cache_cpu`).
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct CpuSlabState {
    /// The CPU slab's PFN.
    pub slab: Option<Pfn>,
    /// Objects on the CPU's lockless freelist.
    pub freelist_objects: u64,
    /// Slabs on the CPU's partial list.
    pub partial_slabs: u64,
    /// The transaction id.
    pub tid: u64,
}

/// The node's state for a cache (`kmem_cache_node`).
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct NodeSlabState {
    /// Slabs on the partial list.
    pub nr_partial: u64,
    /// All slabs.
    pub nr_slabs: u64,
    /// All objects.
    pub total_objects: u64,
    /// Free objects on the partial slabs.
    pub free_on_partial: u64,
}

impl<P: Platform> Mm<P> {
    /// Walk a freelist of the slab at `pfn` (stopping at anything that is not one of its
    /// objects): its length, and whether `target` is on it.
    fn chain_len(
        &self,
        s: &crate::slab::KmemCache,
        pfn: Pfn,
        mut cur: u64,
        target: u64,
    ) -> (u64, bool) {
        let (mut n, mut found) = (0, false);
        while cur != 0 && n <= 65535 && self.object_index(s, pfn, cur).is_some() {
            found |= cur == target;
            n += 1;
            cur = match self.kread::<u64>(cur.wrapping_add(s.fp_offset() as u64)) {
                Ok(raw) => self.decode_fp(s, raw, cur),
                Err(_) => break,
            };
        }
        (n, found)
    }

    /// Describe the slab object containing `addr`, if it is in a slab.
    pub fn object_info(&self, addr: VirtAddr) -> Option<ObjectInfo> {
        let (pfn, page) = self.virt_to_slab(addr)?;
        let r = KmemCacheRef(page.slab_cache());
        let s = self.cache(r).ok()?;
        let base = self.slab_address(pfn) + s.red_left_pad() as u64;
        let off = addr.0.checked_sub(base)?;
        let index = off.checked_div(s.size() as u64)?;
        let index = u16::try_from(index).ok()?;
        let c = self.slab_counters(pfn);
        if index >= c.objects {
            return None;
        }
        let object = self.object_at(s, pfn, index);
        let slab_head = if c.freelist == u16::MAX {
            0
        } else {
            self.object_at(s, pfn, c.freelist)
        };
        let mut free = self.chain_len(s, pfn, slab_head, object).1;
        for cs in (0..self.platform.nr_cpus()).filter_map(|cpu| self.cpu_slab(s, cpu)) {
            if cs.is_cpu_slab(pfn) {
                free |= self.chain_len(s, pfn, cs.freelist.load(Relaxed), object).1;
            }
        }
        Some(ObjectInfo {
            cache: r,
            slab_pfn: pfn,
            index,
            object: VirtAddr(object),
            offset_in_object: addr.0 - object,
            offset_in_slab: object - self.slab_address(pfn),
            free,
        })
    }

    /// One CPU's state for a cache.
    pub fn cpu_slab_state(&self, r: KmemCacheRef, cpu: usize) -> Result<CpuSlabState, SlabError> {
        let s = self.cache(r)?;
        let c = self
            .cpu_slab(s, cpu.min(self.platform.nr_cpus().saturating_sub(1)))
            .ok_or(SlabError::Corrupted {
                addr: s.cpu_slab.load(Relaxed),
                what: crate::slab::Reason::CpuSlabNotKmemCacheCpu,
            })?;
        let slab = c.slab_pfn();
        let mut partial = 0;
        let mut cur = c.partial_pfn();
        while let Some(pfn) = cur.filter(|_| partial < self.mem_map.len) {
            partial += 1;
            let Some(page) = self.mem_map.get(pfn) else {
                break;
            };
            cur = crate::slab::cache::partial_chain_next(page.next());
        }
        Ok(CpuSlabState {
            slab,
            freelist_objects: slab.map_or(0, |pfn| {
                self.chain_len(s, pfn, c.freelist.load(Relaxed), 0).0
            }),
            partial_slabs: partial,
            tid: c.tid.load(Relaxed),
        })
    }

    /// The node's state for a cache.
    pub fn node_slab_state(&self, r: KmemCacheRef) -> Result<NodeSlabState, SlabError> {
        let s = self.cache(r)?;
        let (nr_slabs, total_objects) = self.node_counts(s);
        Ok(NodeSlabState {
            nr_partial: self.get_node(s)?.nr_partial.load(Relaxed),
            nr_slabs,
            total_objects,
            free_on_partial: self.free_objects_on_node(s),
        })
    }
}
