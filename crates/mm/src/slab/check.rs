//! The slab invariant checker: every slab on a node list, CPU slab and CPU partial list
//! of every cache is a slab of that cache in the state its place requires; every freelist
//! stays inside its slab, without cycles, and counts what the slab's counters say; and
//! the slabs found in `mem_map` add up to each node's counts and to the Slab pages of
//! `/proc/meminfo`.

use core::sync::atomic::Ordering::Relaxed;

use crate::mm_types::{Page, PG_LARGE_KMALLOC, PG_SLAB};
use crate::check::CheckError;
use crate::platform::Platform;
use crate::slab::cache::KmemCache;
use crate::slab::MAX_CACHES;
use crate::Mm;

/// The slab and large kmalloc pages found in `mem_map`, counted by the page allocator's
/// walk ([`Mm::check`] walks `mem_map` once for both checkers) for [`Mm::check_slabs`].
#[derive(Clone, Copy)]
pub(crate) struct SlabTally {
    /// Per cache seen (by its kernel address): slabs and their objects.
    per_cache: [(u64, u64, u64); MAX_CACHES],
    used: usize,
    slab_pages: u64,
    large_pages: u64,
    /// The first slab of a cache past [`MAX_CACHES`] different ones.
    unknown: Option<u64>,
}

impl Default for SlabTally {
    fn default() -> SlabTally {
        SlabTally {
            per_cache: [(0, 0, 0); MAX_CACHES],
            used: 0,
            slab_pages: 0,
            large_pages: 0,
            unknown: None,
        }
    }
}

impl SlabTally {
    /// Count the allocated block of `pages` pages whose head `page` is at `pfn`.
    pub(crate) fn count<P: Platform>(&mut self, mm: &Mm<P>, pfn: u64, page: &Page, pages: u64) {
        if page.flags() & PG_SLAB != 0 {
            self.slab_pages += pages;
            let va = page.slab_cache();
            let used = self.used;
            let slot = match self.per_cache[..used].iter().position(|e| e.0 == va) {
                Some(i) => i,
                None if used < MAX_CACHES => {
                    self.used += 1;
                    self.per_cache[used].0 = va;
                    used
                }
                None => {
                    self.unknown.get_or_insert(pfn);
                    return;
                }
            };
            self.per_cache[slot].1 += 1;
            self.per_cache[slot].2 += mm.slab_counters(pfn).objects as u64;
        } else if page.flags() & PG_LARGE_KMALLOC != 0 {
            self.large_pages += pages;
        }
    }
}

impl<P: Platform> Mm<P> {
    fn check_err(&self, s: &KmemCache, pfn: u64, what: &'static str) -> CheckError {
        CheckError::Slab {
            cache: s.name(),
            pfn,
            what,
        }
    }

    /// Walk a freelist starting at `head` inside the slab at `pfn`; return its length.
    fn check_freelist(&self, s: &KmemCache, pfn: u64, head: u64) -> Result<u16, CheckError> {
        let objects = self.slab_counters(pfn).objects;
        let (mut cur, mut n) = (head, 0u16);
        while cur != 0 {
            if self.object_index(s, pfn, cur).is_none() {
                return Err(self.check_err(
                    s,
                    pfn,
                    "freelist leaves its slab or points into an object",
                ));
            }
            n += 1;
            if n > objects {
                return Err(self.check_err(
                    s,
                    pfn,
                    "freelist longer than the slab (a cycle: double free?)",
                ));
            }
            cur = match self.kread::<u64>(cur.wrapping_add(s.fp_offset() as u64)) {
                Ok(raw) => self.decode_fp(s, raw, cur),
                Err(_) => return Err(self.check_err(s, pfn, "freelist object outside RAM")),
            };
        }
        Ok(n)
    }

    fn check_slab_page(&self, s: &KmemCache, pfn: u64, frozen: bool) -> Result<(), CheckError> {
        let page = self.mem_map.get(pfn);
        if !page.is_some_and(|page| {
            page.flags() & PG_SLAB != 0 && page.slab_cache() == s.self_va.load(Relaxed)
        }) {
            return Err(self.check_err(s, pfn, "listed slab is not a slab of this cache"));
        }
        let c = self.slab_counters(pfn);
        if Self::order_objects(s, self.mem_map.page(pfn).order()) != Some(c.objects) {
            return Err(self.check_err(s, pfn, "object count is not what the slab's order holds"));
        }
        if c.frozen != frozen {
            return Err(self.check_err(s, pfn, "slab frozen state does not match its place"));
        }
        if c.inuse > c.objects {
            return Err(self.check_err(s, pfn, "more objects in use than the slab holds"));
        }
        let head = if c.freelist == u16::MAX {
            0
        } else {
            self.object_at(s, pfn, c.freelist)
        };
        let free = self.check_freelist(s, pfn, head)?;
        if free != c.objects - c.inuse {
            return Err(self.check_err(s, pfn, "freelist length differs from objects - inuse"));
        }
        Ok(())
    }

    /// The PFNs of a node list, at most as many as `mem_map` has pages (a longer list
    /// loops).
    fn list_pfns<'a>(
        &'a self,
        s: &'a KmemCache,
        list: &'a crate::memory_model::PageList,
    ) -> impl Iterator<Item = Result<u64, CheckError>> + 'a {
        let mut steps = 0u64;
        list.iter(&self.mem_map).map_while(move |pfn| {
            steps += 1;
            if steps > self.mem_map.len + 1 {
                return None;
            }
            Some(if steps > self.mem_map.len || !self.mem_map.contains(pfn) {
                Err(self.check_err(s, pfn, "node list leaves mem_map or does not end"))
            } else {
                Ok(pfn)
            })
        })
    }

    fn check_cache(&self, s: &KmemCache) -> Result<(), CheckError> {
        if !Self::geometry_ok(s) {
            return Err(self.check_err(s, 0, "kmem_cache geometry corrupted"));
        }
        let n = self
            .get_node_quiet(s)
            .ok_or_else(|| self.check_err(s, 0, "kmem_cache.node is no kmem_cache_node object"))?;
        let mut partial = 0;
        for pfn in self.list_pfns(s, &n.partial) {
            let pfn = pfn?;
            self.check_slab_page(s, pfn, false)?;
            let c = self.slab_counters(pfn);
            if c.freelist == u16::MAX && !s.is_debug() {
                return Err(self.check_err(s, pfn, "slab on the partial list has no free object"));
            }
            partial += 1;
            if partial > n.nr_slabs.load(Relaxed) {
                return Err(self.check_err(s, pfn, "partial list longer than the node's slabs"));
            }
        }
        if partial != n.nr_partial.load(Relaxed) {
            return Err(self.check_err(s, 0, "nr_partial differs from the partial list"));
        }
        for pfn in self.list_pfns(s, &n.full) {
            self.check_slab_page(s, pfn?, false)?;
        }
        for cpu in 0..self.platform.nr_cpus() {
            let c = self
                .cpu_slab(s, cpu)
                .ok_or_else(|| self.check_err(s, 0, "kmem_cache.cpu_slab is no kmem_cache_cpu"))?;
            let slab = c.slab.load(Relaxed);
            if slab != 0 {
                self.check_slab_page(s, slab - 1, true)?;
                self.check_freelist(s, slab - 1, c.freelist.load(Relaxed))?;
            } else if c.freelist.load(Relaxed) != 0 {
                return Err(self.check_err(s, 0, "CPU freelist without a CPU slab"));
            }
            let mut cur = c.partial.load(Relaxed);
            let mut seen = 0;
            while cur != 0 {
                self.check_slab_page(s, cur - 1, true)?;
                seen += 1;
                if seen > n.nr_slabs.load(Relaxed).min(self.mem_map.len) {
                    return Err(self.check_err(s, cur - 1, "CPU partial list does not end"));
                }
                let next = self
                    .mem_map
                    .get(cur - 1)
                    .map_or(crate::mm_types::NIL, |p| p.next());
                cur = if next == crate::mm_types::NIL {
                    0
                } else {
                    next as u64 + 1
                };
            }
        }
        self.check_cache_sheaves(s)
    }

    /// The sheaves ([`crate::slab::sheaf`]): every sheaf and barn link checks out, and
    /// every object in a sheaf is an object of the cache whose slab counts it in use (it
    /// is free for the cache, allocated for its slab) and is on no slab freelist's head.
    fn check_cache_sheaves(&self, s: &KmemCache) -> Result<(), CheckError> {
        self.for_each_sheaf_object(s, |_, object| {
            let pfn = self
                .sheaf_object_slab(s, object)
                .ok_or("object in a sheaf is no object of the cache")?;
            let c = self.slab_counters(pfn);
            if c.inuse == 0 || self.fl_va(s, pfn, c.freelist) == object {
                return Err("object in a sheaf is free in its slab too");
            }
            Ok(())
        })
        .map_err(|what| self.check_err(s, 0, what))
    }

    /// Check every cache, then hold the slab pages counted in `mem_map` (`tally`) to the
    /// node counters and the Slab lines of `/proc/meminfo`.
    pub(crate) fn check_slabs(&self, tally: &SlabTally) -> Result<(), CheckError> {
        if self.slab.kmem_cache.load(Relaxed) == 0 {
            return Ok(());
        }
        if let Some(e) = self.for_each_cache(|s| self.check_cache(s).err()) {
            return Err(e);
        }
        if let Some(pfn) = tally.unknown {
            return Err(CheckError::BadPage {
                pfn,
                what: "slab of an unknown cache",
            });
        }
        let (slab_pages, large_pages) = (tally.slab_pages, tally.large_pages);
        for &(va, slabs, objects) in &tally.per_cache[..tally.used] {
            let s = self
                .cache(crate::slab::KmemCacheRef(va))
                .map_err(|_| CheckError::BadPage {
                    pfn: 0,
                    what: "slab page points at no live cache",
                })?;
            let n = self.get_node_quiet(s).ok_or_else(|| {
                self.check_err(s, 0, "kmem_cache.node is no kmem_cache_node object")
            })?;
            if n.nr_slabs.load(Relaxed) != slabs || n.total_objects.load(Relaxed) != objects {
                return Err(self.check_err(s, 0, "node slab or object counts differ from mem_map"));
            }
        }
        let accounted =
            self.slab_pages.reclaimable.load(Relaxed) + self.slab_pages.unreclaimable.load(Relaxed);
        if accounted != slab_pages + large_pages {
            return Err(CheckError::BadPage {
                pfn: 0,
                what: "Slab pages in meminfo differ from slab and large kmalloc pages in mem_map",
            });
        }
        Ok(())
    }
}
