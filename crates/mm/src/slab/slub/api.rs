//! The cache API over the paths (`mm/slub.c` of Linux 6.6): `kmem_cache_alloc()`,
//! `kmem_cache_free()`, `virt_to_slab()`, and the checks a free makes before it reaches the
//! slab (`cache_from_obj()`'s wrong-cache report, `init_on_free`).

use crate::addr::{Pfn, VirtAddr};
use crate::gfp::Gfp;
use crate::mm_types::{Page, PG_SLAB, PG_TAIL};
use crate::platform::Platform;
use crate::slab::cache::{KmemCache, KmemCacheRef};
use crate::slab::{SlabError, SlabResultWords};
use crate::Mm;
use core::sync::atomic::Ordering::Relaxed;

impl<P: Platform> Mm<P> {
    /// `kmem_cache_alloc(cache, gfp)`.
    #[track_caller]
    pub fn kmem_cache_alloc(&self, r: KmemCacheRef, gfp: Gfp) -> Result<VirtAddr, SlabError> {
        self.kmem_cache_alloc_caller(r, gfp, crate::slab::CallSite::caller())
    }

    /// `kmem_cache_alloc` recording `caller` as the owner.
    #[inline]
    pub fn kmem_cache_alloc_caller(
        &self,
        r: KmemCacheRef,
        gfp: Gfp,
        caller: crate::slab::CallSite,
    ) -> Result<VirtAddr, SlabError> {
        self.refuse_boot_cache(r)?;
        self.cache_alloc(r, gfp, caller)
    }

    /// Allocate from any cache, the allocator's own included.
    #[inline]
    pub(crate) fn cache_alloc(
        &self,
        r: KmemCacheRef,
        gfp: Gfp,
        caller: crate::slab::CallSite,
    ) -> Result<VirtAddr, SlabError> {
        // The body answers in two registers; the error is unpacked here, out of line.
        self.cache_alloc_words(r, gfp, caller)
            .unpack()
            .map(VirtAddr)
    }

    /// [`Mm::cache_alloc`] out of line, its result in two words.
    #[inline(never)]
    fn cache_alloc_words(
        &self,
        r: KmemCacheRef,
        gfp: Gfp,
        caller: crate::slab::CallSite,
    ) -> SlabResultWords {
        SlabResultWords::of(self.cache_alloc_body(r, gfp, caller))
    }

    /// The body of [`Mm::cache_alloc`]: the object's address.
    #[inline(always)]
    fn cache_alloc_body(
        &self,
        r: KmemCacheRef,
        gfp: Gfp,
        caller: crate::slab::CallSite,
    ) -> Result<u64, SlabError> {
        let s = self.api_cache(r)?;
        self.slab_alloc(s, gfp, caller, s.object_size())
    }

    /// The cache a caller names (`struct kmem_cache *s`): the kernel would use whatever
    /// the pointer leads to, so one that is no live cache is the fault of using it, then
    /// [`SlabError::BadCache`].
    pub(crate) fn api_cache(&self, r: KmemCacheRef) -> Result<&KmemCache, SlabError> {
        self.cache(r).inspect_err(|_| {
            self.slab_fault(r.0, false, crate::slab::Reason::NotLiveKmemCache);
        })
    }

    /// The `kmem_cache` and `kmem_cache_node` caches hold the allocator's own structures:
    /// only `kmem_cache_create` and `kmem_cache_destroy` allocate and free their objects.
    pub(crate) fn refuse_boot_cache(&self, r: KmemCacheRef) -> Result<(), SlabError> {
        if r.0 == self.slab.kmem_cache.load(Relaxed)
            || r.0 == self.slab.kmem_cache_node.load(Relaxed)
        {
            return Err(SlabError::BadArgs(crate::slab::Reason::AllocatorOwnCache));
        }
        Ok(())
    }

    /// `kmem_cache_zalloc(cache, gfp)`.
    #[track_caller]
    pub fn kmem_cache_zalloc(&self, r: KmemCacheRef, gfp: Gfp) -> Result<VirtAddr, SlabError> {
        self.kmem_cache_alloc(r, gfp | Gfp::__GFP_ZERO)
    }

    /// The slab page (head) holding a direct-map address, if it is a slab.
    #[inline]
    pub fn virt_to_slab(&self, addr: VirtAddr) -> Option<(Pfn, &Page)> {
        // Every PFN of mem_map may be read (holes are reserved pages), so no memblock
        // search is needed to ask whether it is a slab.
        let pfn = crate::addr::PhysAddr(self.layout().virt_to_phys(addr.0)?).pfn();
        let page = self.mem_map.get(pfn)?;
        // One read of the flags answers both questions (`virt_to_folio()` then
        // `folio_test_slab()`).
        let flags = page.flags();
        if flags & PG_TAIL != 0 {
            return self.tail_to_slab(page);
        }
        (flags & PG_SLAB != 0).then_some((pfn, page))
    }

    /// [`Mm::virt_to_slab`] for a tail page: its head PFN is read from RAM, and one past
    /// `mem_map` is the fault reported at the next `take_oopses()`, and no slab. Out of
    /// line, which keeps the pair of an order-0 slab's objects four instructions shorter
    /// (`pair_cost kmalloc`); most objects of higher-order slabs lie in tail pages and
    /// pay the call (`churn_cost`: 11 instructions an iteration).
    #[inline(never)]
    fn tail_to_slab(&self, tail: &Page) -> Option<(Pfn, &Page)> {
        let head = Pfn(tail.word());
        let hp = self.mem_map.page(head);
        hp.is_slab().then_some((head, hp))
    }

    /// `kmem_cache_free(cache, object)`: refused with a clear error (and, with slab_debug,
    /// the kernel's report) for objects that are not live objects of `cache`.
    #[track_caller]
    pub fn kmem_cache_free(&self, r: KmemCacheRef, addr: VirtAddr) -> Result<(), SlabError> {
        self.kmem_cache_free_caller(r, addr, crate::slab::CallSite::caller())
    }

    /// `kmem_cache_free` recording `caller` as the freer.
    #[inline]
    pub fn kmem_cache_free_caller(
        &self,
        r: KmemCacheRef,
        addr: VirtAddr,
        caller: crate::slab::CallSite,
    ) -> Result<(), SlabError> {
        self.refuse_boot_cache(r)?;
        self.cache_free(r, addr, caller)
    }

    /// Free to any cache, the allocator's own included.
    #[inline]
    pub(crate) fn cache_free(
        &self,
        r: KmemCacheRef,
        addr: VirtAddr,
        caller: crate::slab::CallSite,
    ) -> Result<(), SlabError> {
        // The body answers in two registers; the error is unpacked here, out of line.
        self.cache_free_words(r, addr, caller).unpack().map(|_| ())
    }

    /// [`Mm::cache_free`] out of line, its result in two words.
    #[inline(never)]
    fn cache_free_words(
        &self,
        r: KmemCacheRef,
        addr: VirtAddr,
        caller: crate::slab::CallSite,
    ) -> SlabResultWords {
        SlabResultWords::of(self.cache_free_body(r, addr, caller).map(|()| 0))
    }

    /// The body of [`Mm::cache_free`].
    #[inline(always)]
    fn cache_free_body(
        &self,
        r: KmemCacheRef,
        addr: VirtAddr,
        caller: crate::slab::CallSite,
    ) -> Result<(), SlabError> {
        // The current CPU, read once (the thread that runs a CPU stays on it).
        let cpu = self.platform.smp_processor_id();
        let s = self.api_cache(r)?;
        let (pfn, page) = self.virt_to_slab(addr).ok_or(SlabError::NotSlabObject(
            addr,
            crate::slab::Reason::NotInSlabCacheFree,
        ))?;
        if page.slab_cache() != r.0 {
            return Err(self.wrong_cache(s, page.slab_cache(), pfn, addr));
        }
        self.free_object(s, pfn, page, addr, caller, cpu)
    }

    /// `cache_from_obj()`'s warning for an object freed to a cache it does not belong to
    /// (`WARN(cachep && cachep != s, "%s: Wrong slab cache. %s but object is from %s\n")`,
    /// mm/slab.h of Linux 6.5: `cache_from_obj` at line 652, its `WARN` nine lines on), then
    /// `print_tracking()`. The kernel goes on to free the object to its real cache; here the
    /// free is refused. A `slab_cache` that is no live cache is the fault of following it.
    #[cold]
    #[inline(never)]
    pub(crate) fn wrong_cache(
        &self,
        s: &KmemCache,
        actual: u64,
        pfn: Pfn,
        addr: VirtAddr,
    ) -> SlabError {
        let actual = match self.cache_at(actual) {
            Ok(a) => a,
            Err(e) => return e,
        };
        self.warn_report(
            "mm/slab.h",
            661,
            "cache_from_obj",
            format_args!(
                "cache_from_obj: Wrong slab cache. {} but object is from {}",
                s.name(),
                actual.name()
            ),
        );
        if let Some(object) = self
            .object_index(actual, pfn, addr.0)
            .map(|i| self.object_at(actual, pfn, i))
        {
            self.print_tracking(actual, object);
        }
        SlabError::WrongCache {
            actual: KmemCacheRef(actual.self_va.load(Relaxed)),
        }
    }

    /// The checks and the free shared by `kmem_cache_free` and `kfree`, for an address in
    /// the slab at `pfn` whose `struct page` is `page`, on `cpu`, the current CPU (read by
    /// the caller at its top, where the thread-local read stays inline).
    ///
    /// Inline in its callers for the common case: a cache without debugging and no
    /// `init_on_free`, which goes to the sheaves (if the cache has them), then
    /// `do_slab_free()`; the rest is [`Mm::free_object_full`], out of line.
    #[inline(always)]
    pub(crate) fn free_object(
        &self,
        s: &KmemCache,
        pfn: Pfn,
        page: &Page,
        addr: VirtAddr,
        caller: crate::slab::CallSite,
        cpu: usize,
    ) -> Result<(), SlabError> {
        let object = addr.0;
        let Some(idx) = self.object_index_in(s, page, pfn, object) else {
            return Err(self.not_an_object(s, pfn, addr));
        };
        if s.is_debug() || self.want_init_on_free() {
            return self.free_object_full(s, pfn, object, caller);
        }
        // slab_free() of 6.18: the sheaves first.
        if s.sheaf_capacity() != 0 && self.free_to_pcs(s, object, cpu)? {
            return Ok(());
        }
        let head = crate::slab::slub::FreeHead {
            pfn,
            page,
            object,
            idx,
        };
        self.do_slab_free_on(s, head, (object, 1), cpu)
    }

    /// [`Mm::free_object`]'s refusal of an address that is no object boundary (with
    /// slab_debug, `free_consistency_checks()`'s "Invalid object pointer" report first).
    #[cold]
    #[inline(never)]
    fn not_an_object(&self, s: &KmemCache, pfn: Pfn, addr: VirtAddr) -> SlabError {
        if s.is_debug() {
            self.slab_err_invalid_pointer(s, pfn, addr.0);
        }
        SlabError::NotSlabObject(addr, crate::slab::Reason::IntoObject)
    }

    /// [`Mm::free_object`] past its object check, for every cache: `init_on_free`'s wipe
    /// (`slab_free_hook()`), then [`Mm::slab_free`].
    #[inline(never)]
    fn free_object_full(
        &self,
        s: &KmemCache,
        pfn: Pfn,
        object: u64,
        site: crate::slab::CallSite,
    ) -> Result<(), SlabError> {
        if self.slab_want_init_on_free(s) {
            // Wipe only what is really being freed: a double free must not cut the
            // freelist the object is already on.
            if self.looks_free(s, pfn, object) {
                return Err(self.naive_double_free(s, object));
            }
            self.slab_fill(object, 0, s.object_size() as u64)?;
        }
        self.slab_free(s, pfn, object, site)
    }
}
