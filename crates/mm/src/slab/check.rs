//! The slab invariant checker: every slab on a node list, CPU slab and CPU partial list
//! of every cache is a slab of that cache in the state its place requires; every freelist
//! stays inside its slab, without cycles, and counts what the slab's counters say; and
//! the slabs found in `mem_map` add up to each node's counts and to the Slab pages of
//! `/proc/meminfo`.

use core::sync::atomic::Ordering::Relaxed;

use crate::addr::Pfn;
use crate::check::CheckError;
use crate::mm_types::{Page, PG_LARGE_KMALLOC, PG_SLAB};
use crate::platform::Platform;
use crate::slab::cache::KmemCache;
use crate::slab::MAX_CACHES;
use crate::Mm;

/// Objects of the sheaves the checker sorts and compares per round (8 KiB of stack).
const SHEAF_CHECK_CHUNK: usize = 1024;

/// The checker's words for an object found twice in the sheaves.
const TWICE_IN_SHEAVES: &str =
    "object in the sheaves twice (a double free: 6.18's free_to_pcs() does not check)";

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
    unknown: Option<Pfn>,
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
    pub(crate) fn count<P: Platform>(&mut self, mm: &Mm<P>, pfn: Pfn, page: &Page, pages: u64) {
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
    fn check_err(&self, s: &KmemCache, pfn: Option<Pfn>, what: &'static str) -> CheckError {
        CheckError::Slab {
            cache: s.name(),
            pfn,
            what,
        }
    }

    /// Walk a freelist starting at `head` inside the slab at `pfn`; return its length.
    fn check_freelist(&self, s: &KmemCache, pfn: Pfn, head: u64) -> Result<u16, CheckError> {
        let objects = self.slab_counters(pfn).objects;
        let (mut cur, mut n) = (head, 0u16);
        while cur != 0 {
            if self.object_index(s, pfn, cur).is_none() {
                return Err(self.check_err(
                    s,
                    Some(pfn),
                    "freelist leaves its slab or points into an object",
                ));
            }
            n += 1;
            if n > objects {
                return Err(self.check_err(
                    s,
                    Some(pfn),
                    "freelist longer than the slab (a cycle: double free?)",
                ));
            }
            cur = match self.kread::<u64>(cur.wrapping_add(s.fp_offset() as u64)) {
                Ok(raw) => self.decode_fp(s, raw, cur),
                Err(_) => return Err(self.check_err(s, Some(pfn), "freelist object outside RAM")),
            };
        }
        Ok(n)
    }

    fn check_slab_page(&self, s: &KmemCache, pfn: Pfn, frozen: bool) -> Result<(), CheckError> {
        let page = self.mem_map.get(pfn);
        if !page.is_some_and(|page| {
            page.flags() & PG_SLAB != 0 && page.slab_cache() == s.self_va.load(Relaxed)
        }) {
            return Err(self.check_err(s, Some(pfn), "listed slab is not a slab of this cache"));
        }
        let c = self.slab_counters(pfn);
        if Self::order_objects(s, self.mem_map.page(pfn).order()) != Some(c.objects) {
            return Err(self.check_err(
                s,
                Some(pfn),
                "object count is not what the slab's order holds",
            ));
        }
        if c.frozen != frozen {
            return Err(self.check_err(s, Some(pfn), "slab frozen state does not match its place"));
        }
        if c.inuse > c.objects {
            return Err(self.check_err(s, Some(pfn), "more objects in use than the slab holds"));
        }
        let head = if c.freelist == u16::MAX {
            0
        } else {
            self.object_at(s, pfn, c.freelist)
        };
        let free = self.check_freelist(s, pfn, head)?;
        if free != c.objects - c.inuse {
            return Err(self.check_err(
                s,
                Some(pfn),
                "freelist length differs from objects - inuse",
            ));
        }
        Ok(())
    }

    /// The PFNs of a node list, at most as many as `mem_map` has pages (a longer list
    /// loops).
    fn list_pfns<'a>(
        &'a self,
        s: &'a KmemCache,
        list: &'a crate::memory_model::PageList,
    ) -> impl Iterator<Item = Result<Pfn, CheckError>> + 'a {
        let mut steps = 0u64;
        list.iter(&self.mem_map).map_while(move |pfn| {
            steps += 1;
            if steps > self.mem_map.len + 1 {
                return None;
            }
            Some(if steps > self.mem_map.len || !self.mem_map.contains(pfn) {
                Err(self.check_err(s, Some(pfn), "node list leaves mem_map or does not end"))
            } else {
                Ok(pfn)
            })
        })
    }

    fn check_cache(&self, s: &KmemCache) -> Result<(), CheckError> {
        if !Self::geometry_ok(s) {
            return Err(self.check_err(s, None, "kmem_cache geometry corrupted"));
        }
        let n = self.get_node_quiet(s).ok_or_else(|| {
            self.check_err(s, None, "kmem_cache.node is no kmem_cache_node object")
        })?;
        let mut partial = 0;
        for pfn in self.list_pfns(s, &n.partial) {
            let pfn = pfn?;
            self.check_slab_page(s, pfn, false)?;
            let c = self.slab_counters(pfn);
            if c.freelist == u16::MAX && !s.is_debug() {
                return Err(self.check_err(
                    s,
                    Some(pfn),
                    "slab on the partial list has no free object",
                ));
            }
            partial += 1;
            if partial > n.nr_slabs.load(Relaxed) {
                return Err(self.check_err(
                    s,
                    Some(pfn),
                    "partial list longer than the node's slabs",
                ));
            }
        }
        if partial != n.nr_partial.load(Relaxed) {
            return Err(self.check_err(s, None, "nr_partial differs from the partial list"));
        }
        for pfn in self.list_pfns(s, &n.full) {
            self.check_slab_page(s, pfn?, false)?;
        }
        for cpu in 0..self.platform.nr_cpus() {
            let c = self.cpu_slab(s, cpu).ok_or_else(|| {
                self.check_err(s, None, "kmem_cache.cpu_slab is no kmem_cache_cpu")
            })?;
            if let Some(slab) = c.slab_pfn() {
                self.check_slab_page(s, slab, true)?;
                self.check_freelist(s, slab, c.freelist.load(Relaxed))?;
            } else if c.freelist.load(Relaxed) != 0 {
                return Err(self.check_err(s, None, "CPU freelist without a CPU slab"));
            }
            let mut cur = c.partial_pfn();
            let mut seen = 0;
            while let Some(pfn) = cur {
                self.check_slab_page(s, pfn, true)?;
                seen += 1;
                if seen > n.nr_slabs.load(Relaxed).min(self.mem_map.len) {
                    return Err(self.check_err(s, Some(pfn), "CPU partial list does not end"));
                }
                let next = self
                    .mem_map
                    .get(pfn)
                    .map_or(crate::mm_types::NIL, |p| p.next());
                cur = crate::slab::cache::partial_chain_next(next);
            }
        }
        self.check_cache_sheaves(s)
    }

    /// The sheaves ([`crate::slab::sheaf`]): every sheaf and barn link checks out; every
    /// object in a sheaf is an object of the cache whose slab counts it in use (it is free
    /// for the cache, allocated for its slab); no object is in the sheaves twice (every
    /// CPU's main and spare and the barn's sheaves together: 6.18's `free_to_pcs()` and
    /// `free_to_pcs_bulk()` take a double free without a word, so this is where it shows);
    /// and none is on a freelist of its slab too (the slab's, or the lockless one of the
    /// CPU that has it).
    ///
    /// The objects are compared [`SHEAF_CHECK_CHUNK`] at a time through a sorted array on
    /// the stack: each round sorts one chunk, looks up every later object in it and walks
    /// the freelists of the chunk's slabs once. The sheaves hold a few thousand objects
    /// at most, so one to a few rounds.
    fn check_cache_sheaves(&self, s: &KmemCache) -> Result<(), CheckError> {
        if s.sheaf_capacity() == 0 {
            return Ok(());
        }
        let mut chunk = [0u64; SHEAF_CHECK_CHUNK];
        let mut start = 0u64;
        loop {
            let end = start + SHEAF_CHECK_CHUNK as u64;
            let (mut seen, mut len, mut sorted) = (0u64, 0usize, false);
            let mut at = None;
            let walked = self.for_each_sheaf_object(s, |_, object| {
                let index = seen;
                seen += 1;
                if start == 0 {
                    self.check_sheaf_object(s, object, &mut at)?;
                }
                if index < start {
                    return Ok(());
                }
                if index < end {
                    chunk[len] = object;
                    len += 1;
                    return Ok(());
                }
                if !sorted {
                    sorted = true;
                    self.sort_sheaf_chunk(&mut chunk[..len], &mut at)?;
                }
                if chunk[..len].binary_search(&object).is_ok() {
                    at = self
                        .virt_to_slab(crate::VirtAddr(object))
                        .map(|(pfn, _)| pfn);
                    return Err(TWICE_IN_SHEAVES);
                }
                Ok(())
            });
            walked.map_err(|what| self.check_err(s, at, what))?;
            if !sorted {
                self.sort_sheaf_chunk(&mut chunk[..len], &mut at)
                    .map_err(|what| self.check_err(s, at, what))?;
            }
            self.check_sheaf_chunk_not_free(s, &chunk[..len])?;
            if seen <= end {
                return Ok(());
            }
            start = end;
        }
    }

    /// One object read from a sheaf: an object of `s` in a slab that has objects in use.
    /// `at` gets its slab for the report.
    fn check_sheaf_object(
        &self,
        s: &KmemCache,
        object: u64,
        at: &mut Option<Pfn>,
    ) -> Result<(), &'static str> {
        let pfn = self
            .sheaf_object_slab(s, object)
            .ok_or("object in a sheaf is no object of the cache")?;
        *at = Some(pfn);
        if self.slab_counters(pfn).inuse == 0 {
            return Err("object in a sheaf is in a slab with nothing in use");
        }
        Ok(())
    }

    /// Sort a chunk of sheaf objects; an object in it twice is an error (`at` gets its
    /// slab).
    fn sort_sheaf_chunk(
        &self,
        chunk: &mut [u64],
        at: &mut Option<Pfn>,
    ) -> Result<(), &'static str> {
        chunk.sort_unstable();
        match chunk.windows(2).find(|w| w[0] == w[1]) {
            Some(w) => {
                *at = self.virt_to_slab(crate::VirtAddr(w[0])).map(|(pfn, _)| pfn);
                Err(TWICE_IN_SHEAVES)
            }
            None => Ok(()),
        }
    }

    /// No object of `chunk` (sorted, objects of `s`) is on a freelist of its slab: the
    /// slab's own, or the lockless freelist of a CPU whose CPU slab it is. Each slab's
    /// freelists are walked once (the chunk is sorted, so a slab's objects are together),
    /// each walk at most as long as the slab has objects.
    fn check_sheaf_chunk_not_free(&self, s: &KmemCache, chunk: &[u64]) -> Result<(), CheckError> {
        let mut last = None;
        for &object in chunk {
            let Some(pfn) = self.sheaf_object_slab(s, object) else {
                continue;
            };
            if last == Some(pfn) {
                continue;
            }
            last = Some(pfn);
            let c = self.slab_counters(pfn);
            let head = if c.freelist == u16::MAX {
                0
            } else {
                self.object_at(s, pfn, c.freelist)
            };
            let mut free = self.free_objects_in(s, pfn, head, chunk);
            for cpu in 0..self.platform.nr_cpus() {
                if let Some(cs) = self
                    .cpu_slab(s, cpu)
                    .filter(|cs| cs.slab_pfn() == Some(pfn))
                {
                    free = free || self.free_objects_in(s, pfn, cs.freelist.load(Relaxed), chunk);
                }
            }
            if free {
                return Err(self.check_err(
                    s,
                    Some(pfn),
                    "object in a sheaf is free on its slab's freelist too (double free?)",
                ));
            }
        }
        Ok(())
    }

    /// Does the freelist from `head` in the slab at `pfn` hold an object of `sorted`? The
    /// walk stops at the slab's object count or at a link that leaves the slab (the
    /// freelist checks report those).
    fn free_objects_in(&self, s: &KmemCache, pfn: Pfn, head: u64, sorted: &[u64]) -> bool {
        let objects = self.slab_counters(pfn).objects;
        let mut cur = head;
        for _ in 0..objects {
            if cur == 0 || self.object_index(s, pfn, cur).is_none() {
                return false;
            }
            if sorted.binary_search(&cur).is_ok() {
                return true;
            }
            cur = match self.kread::<u64>(cur.wrapping_add(s.fp_offset() as u64)) {
                Ok(raw) => self.decode_fp(s, raw, cur),
                Err(_) => return false,
            };
        }
        false
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
                    pfn: Pfn(0),
                    what: "slab page points at no live cache",
                })?;
            let n = self.get_node_quiet(s).ok_or_else(|| {
                self.check_err(s, None, "kmem_cache.node is no kmem_cache_node object")
            })?;
            if n.nr_slabs.load(Relaxed) != slabs || n.total_objects.load(Relaxed) != objects {
                return Err(self.check_err(
                    s,
                    None,
                    "node slab or object counts differ from mem_map",
                ));
            }
        }
        let accounted =
            self.slab.pages.reclaimable.load(Relaxed) + self.slab.pages.unreclaimable.load(Relaxed);
        if accounted != slab_pages + large_pages {
            return Err(CheckError::BadPage {
                pfn: Pfn(0),
                what: "Slab pages in meminfo differ from slab and large kmalloc pages in mem_map",
            });
        }
        Ok(())
    }
}
