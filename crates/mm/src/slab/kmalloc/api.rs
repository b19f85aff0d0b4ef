//! The kmalloc family (`mm/slab_common.c` and `mm/slub.c` of Linux 6.6): `kmalloc()` and its
//! variants, large kmallocs straight from the page allocator (`kmalloc_large()`,
//! `free_large_kmalloc()`), `kfree()`, `ksize()`, `krealloc()`, `kfree_sensitive()`,
//! `kmemdup()`, `kstrdup()`.

use crate::addr::{get_order, Pfn, VirtAddr, MAX_PAGE_ORDER, PAGE_SIZE};
use crate::gfp::Gfp;
use crate::mm_types::{PG_HEAD, PG_LARGE_KMALLOC};
use crate::page_alloc::PageAllocError;
use crate::platform::Platform;
use crate::slab::cache::{KmemCache, KmemCacheRef};
use crate::slab::kmalloc::KmallocObject;
use crate::slab::kmalloc::KmallocType;
use crate::slab::kmalloc::FREE_LARGE_KMALLOC_WARN_LINE;
use crate::slab::kmalloc::KMALLOC_MAX_CACHE_SIZE;
use crate::slab::kmalloc::ZERO_SIZE_PTR;
use crate::slab::{CallSite, SlabError, SlabFlags, SlabResultWords};
use crate::Mm;
use core::sync::atomic::Ordering::Relaxed;

impl<P: Platform> Mm<P> {
    /// The kmalloc cache that serves `size` bytes with `gfp` (`kmalloc_slab()`).
    pub fn kmalloc_slab(&self, size: usize, gfp: Gfp) -> Option<KmemCacheRef> {
        if size == 0 || size > KMALLOC_MAX_CACHE_SIZE {
            return None;
        }
        let va = self.slab.kmalloc_caches[KmallocType::of(gfp) as usize]
            [self.slab.kmalloc_slot(size)]
        .load(Relaxed);
        (va != 0).then_some(KmemCacheRef(va))
    }

    /// `kmalloc(size, gfp)`.
    #[track_caller]
    pub fn kmalloc(&self, size: usize, gfp: Gfp) -> Result<VirtAddr, SlabError> {
        self.kmalloc_caller(size, gfp, CallSite::caller())
    }

    /// `kmalloc_track_caller()`: `kmalloc` recording `caller` as the owner.
    #[inline]
    pub fn kmalloc_caller(
        &self,
        size: usize,
        gfp: Gfp,
        caller: CallSite,
    ) -> Result<VirtAddr, SlabError> {
        // The body answers in two registers; the error is unpacked here, out of line.
        self.kmalloc_words(size, gfp, caller).unpack().map(VirtAddr)
    }

    /// [`Mm::kmalloc_caller`] out of line, its result in two words.
    #[inline(never)]
    fn kmalloc_words(&self, size: usize, gfp: Gfp, caller: CallSite) -> SlabResultWords {
        SlabResultWords::of(self.kmalloc_body(size, gfp, caller).map(|va| va.0))
    }

    /// The body of [`Mm::kmalloc_caller`].
    #[inline(always)]
    fn kmalloc_body(&self, size: usize, gfp: Gfp, caller: CallSite) -> Result<VirtAddr, SlabError> {
        if size == 0 {
            return Ok(ZERO_SIZE_PTR);
        }
        let Some(r) = self.kmalloc_slab(size, gfp) else {
            return self.kmalloc_large(size, gfp);
        };
        let s = self.cache_at(r.0)?;
        let site = caller;
        self.slab_alloc(s, gfp, site, size as u32).map(VirtAddr)
    }

    /// `kmalloc_large()`: above 8 KiB, a compound block of `get_order(size)` pages.
    fn kmalloc_large(&self, size: usize, gfp: Gfp) -> Result<VirtAddr, SlabError> {
        let gfp = self.kmalloc_fix_flags(gfp);
        let order = get_order(size);
        // init_on_alloc: the page allocator's post_alloc_hook().
        match self.alloc_pages(gfp | Gfp::__GFP_COMP, order) {
            Ok(page) => {
                let Some(addr) = self.page_address(page) else {
                    // GFP_KERNEL-style flags never give HighMem; a caller's __GFP_HIGHMEM
                    // was dropped by kmalloc_fix_flags above.
                    let _ = self.__free_pages(page, order);
                    return Err(SlabError::Alloc(PageAllocError::HighMemHasNoAddress));
                };
                page.set(PG_LARGE_KMALLOC);
                self.slab.pages.unreclaimable.fetch_add(1 << order, Relaxed);
                Ok(addr)
            }
            Err(PageAllocError::OrderTooLarge(_)) => Err(SlabError::TooLarge(size)),
            Err(e) => Err(e.into()),
        }
    }

    /// `kzalloc()`.
    #[track_caller]
    pub fn kzalloc(&self, size: usize, gfp: Gfp) -> Result<VirtAddr, SlabError> {
        self.kmalloc_caller(size, gfp | Gfp::__GFP_ZERO, CallSite::caller())
    }

    /// `kmalloc_array()`: `n * size` bytes, refusing a product that overflows.
    #[track_caller]
    pub fn kmalloc_array(&self, n: usize, size: usize, gfp: Gfp) -> Result<VirtAddr, SlabError> {
        let bytes =
            n.checked_mul(size)
                .ok_or(SlabError::Overflow(crate::slab::ArrayOverflow::new(
                    n, size,
                )))?;
        self.kmalloc_caller(bytes, gfp, CallSite::caller())
    }

    /// `kcalloc()`.
    #[track_caller]
    pub fn kcalloc(&self, n: usize, size: usize, gfp: Gfp) -> Result<VirtAddr, SlabError> {
        let bytes =
            n.checked_mul(size)
                .ok_or(SlabError::Overflow(crate::slab::ArrayOverflow::new(
                    n, size,
                )))?;
        self.kmalloc_caller(bytes, gfp | Gfp::__GFP_ZERO, CallSite::caller())
    }

    fn lookup_kmalloc(&self, addr: VirtAddr) -> Result<KmallocObject<'_>, SlabError> {
        if let Some((pfn, page)) = self.virt_to_slab(addr) {
            // `slab->slab_cache` is read from RAM: anything but a live cache is the fault
            // the kernel would take following it.
            let s = self.cache_at(page.slab_cache())?;
            return Ok(KmallocObject::Slab(s, pfn));
        }
        let (_, order) = self.lookup_large(addr)?;
        Ok(KmallocObject::Large(order))
    }

    /// [`Mm::lookup_kmalloc`] for an address that is no slab object: the head PFN and
    /// order of the large kmalloc block it starts, else why it is no kmalloc memory.
    fn lookup_large(&self, addr: VirtAddr) -> Result<(Pfn, u32), SlabError> {
        let page = self
            .virt_to_page(addr)
            .map_err(|_| SlabError::NotSlabObject(addr, crate::slab::Reason::NotDirectMap))?;
        let pfn = self.page_to_pfn(page);
        let head = if page.is_tail() {
            Pfn(page.word())
        } else {
            pfn
        };
        let hp = self.mem_map.page(head);
        if !hp.test(PG_LARGE_KMALLOC) || hp.refcount() == 0 {
            if !hp.is_head() {
                // kfree() of a page that is no slab goes to free_large_kmalloc(), whose
                // `WARN_ON_ONCE(order == 0)` fires for a page that is no compound block.
                self.warn_order_zero(addr);
            }
            return Err(SlabError::NotSlabObject(
                addr,
                crate::slab::Reason::NotKmallocMemory,
            ));
        }
        if self.slab_address(head) != addr.0 {
            return Err(SlabError::NotSlabObject(
                addr,
                crate::slab::Reason::IntoLargeKmalloc,
            ));
        }
        Ok((head, self.large_kmalloc_order(head, addr)?))
    }

    /// `free_large_kmalloc()`'s `WARN_ON_ONCE(order == 0)` and
    /// `pr_warn_once("object pointer: 0x%p\n", object)`, once per boot.
    #[cold]
    #[inline(never)]
    fn warn_order_zero(&self, addr: VirtAddr) {
        if self.slab.large_kmalloc_warned.swap(true, Relaxed) {
            return;
        }
        self.warn_report(
            "mm/slab_common.c",
            FREE_LARGE_KMALLOC_WARN_LINE,
            "free_large_kmalloc",
            format_args!(""),
        );
        self.printk(format_args!("object pointer: {:#x}", addr.0));
    }

    /// The order of the large kmalloc block headed by `pfn`, as its `struct page`s record
    /// it: at least 1 (`free_large_kmalloc()`'s `WARN_ON_ONCE(order == 0)`), a compound
    /// head whose first and last tails point back at it, and the page after the block not
    /// one of its tails. A head whose order disagrees with its tails (a corrupted `struct
    /// page`) is reported and the free refused, so that neither the page allocator nor the
    /// Slab accounting is handed a wrong size.
    fn large_kmalloc_order(&self, pfn: Pfn, addr: VirtAddr) -> Result<u32, SlabError> {
        let hp = self.mem_map.page(pfn);
        let order = hp.order();
        let tail_of_head = |p: Pfn| {
            self.mem_map
                .get(p)
                .is_some_and(|t| t.is_tail() && t.word() == pfn.raw())
        };
        let consistent = (1..=MAX_PAGE_ORDER).contains(&order)
            && hp.test(PG_HEAD)
            && tail_of_head(pfn + 1)
            && tail_of_head(pfn + ((1 << order) - 1))
            && !tail_of_head(pfn + (1 << order));
        if consistent {
            return Ok(order);
        }
        self.warn_report(
            "mm/slab_common.c",
            FREE_LARGE_KMALLOC_WARN_LINE,
            "free_large_kmalloc",
            format_args!(
                "object pointer: {:#x} (order {order} disagrees with the block's pages)",
                addr.0
            ),
        );
        Err(SlabError::Corrupted {
            addr: self.pfn_struct_address(pfn),
            what: crate::slab::Reason::LargeKmallocHeadCorrupted,
        })
    }

    /// `kfree(p)`: NULL and ZERO_SIZE_PTR are no-ops; anything kmalloc did not return is
    /// refused with a clear error.
    #[track_caller]
    pub fn kfree(&self, addr: VirtAddr) -> Result<(), SlabError> {
        self.kfree_caller(addr, CallSite::caller())
    }

    /// `kfree` recording `caller` as the freer.
    #[inline]
    pub fn kfree_caller(&self, addr: VirtAddr, caller: CallSite) -> Result<(), SlabError> {
        // The body answers in two registers; the error is unpacked here, out of line.
        self.kfree_words(addr, caller).unpack().map(|_| ())
    }

    /// [`Mm::kfree_caller`] out of line, its result in two words.
    #[inline(never)]
    fn kfree_words(&self, addr: VirtAddr, caller: CallSite) -> SlabResultWords {
        SlabResultWords::of(self.kfree_body(addr, caller).map(|()| 0))
    }

    /// The body of [`Mm::kfree_caller`].
    #[inline(always)]
    fn kfree_body(&self, addr: VirtAddr, caller: CallSite) -> Result<(), SlabError> {
        if addr.0 <= ZERO_SIZE_PTR.0 {
            return Ok(());
        }
        // The current CPU, read once (the thread that runs a CPU stays on it).
        let cpu = self.platform.smp_processor_id();
        // lookup_kmalloc()'s slab half, inline: the slab object fast path of kfree().
        if let Some((pfn, page)) = self.virt_to_slab(addr) {
            let s = self.cache_at(page.slab_cache())?;
            self.debug_check_no_obj_freed_virt(addr, s.object_size() as u64);
            return self.free_object(s, pfn, page, addr, caller, cpu);
        }
        self.kfree_large(addr)
    }

    /// [`Mm::kfree`] of an address that is no slab object: `free_large_kmalloc()`, or the
    /// refusal [`Mm::lookup_large`] gives. Out of line, away from the slab fast path.
    #[inline(never)]
    fn kfree_large(&self, addr: VirtAddr) -> Result<(), SlabError> {
        let (pfn, order) = self.lookup_large(addr)?;
        let page = self.mem_map.page(pfn);
        // init_on_free: the page allocator's free_pages_prepare().
        // The page type goes first, as `free_large_kmalloc()` clears it before
        // `__free_pages()`; the Slab pages are given back only once the page
        // allocator has taken the block (a refusal is its `Bad page state`).
        page.set_flags(page.flags() & !PG_LARGE_KMALLOC);
        if self.__free_pages(page, order).is_err() {
            page.set(PG_LARGE_KMALLOC);
            return Err(SlabError::NotSlabObject(
                addr,
                crate::slab::Reason::LargeKmallocAlreadyFree,
            ));
        }
        self.slab.pages.unreclaimable.fetch_sub(1 << order, Relaxed);
        Ok(())
    }

    /// `ksize()`: the usable size of a kmalloc'd object.
    pub fn ksize(&self, addr: VirtAddr) -> Result<usize, SlabError> {
        if addr.0 <= ZERO_SIZE_PTR.0 {
            return Ok(0);
        }
        Ok(match self.lookup_kmalloc(addr)? {
            KmallocObject::Slab(s, pfn) => {
                if self.object_index(s, pfn, addr.0).is_none() {
                    return Err(SlabError::NotSlabObject(
                        addr,
                        crate::slab::Reason::NotObjectStart,
                    ));
                }
                // skip_orig_size_check(): the caller may now use the whole object.
                self.set_orig_size(s, addr.0, s.object_size());
                slab_ksize(s)
            }
            KmallocObject::Large(order) => PAGE_SIZE << order,
        })
    }

    /// `krealloc(p, new_size, gfp)`: in place while the object is big enough (zeroing the
    /// spare bytes when `want_init_on_alloc(gfp)`: `__GFP_ZERO` or `init_on_alloc=1`, and
    /// keeping the kmalloc red zone exact), else a new
    /// object with the old contents; size 0 frees.
    #[track_caller]
    pub fn krealloc(
        &self,
        addr: VirtAddr,
        new_size: usize,
        gfp: Gfp,
    ) -> Result<VirtAddr, SlabError> {
        let caller = CallSite::caller();
        if new_size == 0 {
            self.kfree_caller(addr, caller)?;
            return Ok(ZERO_SIZE_PTR);
        }
        // `__do_krealloc()` as in Linux 6.12.
        let (slab_cache, orig_size, ks) = if addr.0 <= ZERO_SIZE_PTR.0 {
            (None, 0, 0)
        } else {
            match self.lookup_kmalloc(addr)? {
                KmallocObject::Slab(s, pfn) => {
                    if self.object_index(s, pfn, addr.0).is_none() {
                        return Err(SlabError::NotSlabObject(
                            addr,
                            crate::slab::Reason::NotObjectStart,
                        ));
                    }
                    let ks = slab_ksize(s);
                    let orig = if Self::slub_debug_orig_size(s) {
                        self.get_orig_size(s, addr.0) as usize
                    } else {
                        ks
                    };
                    (Some(s), orig, ks)
                }
                KmallocObject::Large(order) => (None, PAGE_SIZE << order, PAGE_SIZE << order),
            }
        };
        if new_size <= ks {
            if self.want_init_on_alloc(gfp) {
                if orig_size < new_size {
                    self.slab_fill(addr.0 + orig_size as u64, 0, (new_size - orig_size) as u64)?;
                } else {
                    self.slab_fill(addr.0 + new_size as u64, 0, (ks - new_size) as u64)?;
                }
            }
            if let Some(s) = slab_cache.filter(|s| Self::slub_debug_orig_size(s)) {
                self.set_orig_size(s, addr.0, new_size as u32);
                if s.flags().contains(SlabFlags::RED_ZONE) && new_size < ks {
                    self.slab_fill(
                        addr.0 + new_size as u64,
                        crate::slab::debug::SLUB_RED_ACTIVE,
                        (ks - new_size) as u64,
                    )?;
                }
            }
            return Ok(addr);
        }
        let new = self.kmalloc_caller(new_size, gfp, caller)?;
        let keep = orig_size.min(ks) as u64;
        if keep > 0
            && let Err(e) = self.kcopy(new.0, addr.0, keep)
        {
            let _ = self.kfree_caller(new, caller);
            return Err(self.slab_fault(
                e.addr,
                false,
                crate::slab::Reason::KreallocCopyOutsideRam,
            ));
        }
        if let Err(e) = self.kfree_caller(addr, caller) {
            // The old object could not be freed (reported): give the new one back and
            // leave the caller with the old, as if krealloc had failed.
            let _ = self.kfree_caller(new, caller);
            return Err(e);
        }
        Ok(new)
    }

    /// `__kmalloc_cache()`: `size` bytes from a given kmalloc-style cache (what kmalloc
    /// does once it has chosen the cache); the size is recorded for the kmalloc red zone.
    #[track_caller]
    pub fn kmalloc_from_cache(
        &self,
        r: KmemCacheRef,
        size: usize,
        gfp: Gfp,
    ) -> Result<VirtAddr, SlabError> {
        let s = self.api_cache(r)?;
        if size == 0 || size > s.object_size() as usize {
            return Err(SlabError::BadArgs(crate::slab::Reason::SizeBeyondObject));
        }
        self.slab_alloc(s, gfp, CallSite::caller(), size as u32)
            .map(VirtAddr)
    }

    /// `kfree_sensitive()`: zero the whole object, then free it.
    #[track_caller]
    pub fn kfree_sensitive(&self, addr: VirtAddr) -> Result<(), SlabError> {
        let size = self.ksize(addr)?;
        self.slab_fill(addr.0, 0, size as u64)?;
        self.kfree_caller(addr, CallSite::caller())
    }

    /// `kmemdup()`.
    #[track_caller]
    pub fn kmemdup(&self, bytes: &[u8], gfp: Gfp) -> Result<VirtAddr, SlabError> {
        let p = self.kmalloc_caller(bytes.len(), gfp, CallSite::caller())?;
        if !bytes.is_empty()
            && let Err(e) = self.kwrite_bytes(p.0, bytes)
        {
            let _ = self.kfree(p);
            return Err(self.slab_fault(e.addr, true, crate::slab::Reason::KmemdupCopyOutsideRam));
        }
        Ok(p)
    }

    /// `kstrdup()`: the string and its terminating NUL.
    #[track_caller]
    pub fn kstrdup(&self, s: &str, gfp: Gfp) -> Result<VirtAddr, SlabError> {
        let p = self.kmalloc_caller(s.len() + 1, gfp, CallSite::caller())?;
        let copied = self
            .kwrite_bytes(p.0, s.as_bytes())
            .and_then(|()| self.kwrite::<u8>(p.0 + s.len() as u64, 0));
        if let Err(e) = copied {
            let _ = self.kfree(p);
            return Err(self.slab_fault(e.addr, true, crate::slab::Reason::KstrdupCopyOutsideRam));
        }
        Ok(p)
    }

    /// Copy bytes out of kernel memory (any direct-map range of RAM).
    pub fn copy_from_kernel(&self, addr: VirtAddr, buf: &mut [u8]) -> Result<(), crate::FreeError> {
        self.kread_bytes(addr.0, buf)
            .map_err(|_| crate::FreeError::NotDirectMapped(addr))
    }

    /// Copy bytes into kernel memory (any direct-map range of RAM), as a driver or a stray
    /// write would.
    pub fn copy_to_kernel(&self, addr: VirtAddr, bytes: &[u8]) -> Result<(), crate::FreeError> {
        self.kwrite_bytes(addr.0, bytes)
            .map_err(|_| crate::FreeError::NotDirectMapped(addr))
    }
}

/// `slab_ksize()`.
fn slab_ksize(s: &KmemCache) -> usize {
    let f = s.flags();
    if f.intersects(SlabFlags::RED_ZONE | SlabFlags::POISON) {
        s.object_size() as usize
    } else if f.contains(SlabFlags::STORE_USER) {
        s.inuse() as usize
    } else {
        s.size() as usize
    }
}
