//! Area-node allocation (`mm/vmalloc.c`, Linux 6.6: `__vmalloc_node_range`,
//! `__get_vm_area_node`, `alloc_vmap_area`, `__vmalloc_area_node`,
//! `vm_area_alloc_pages`, and on the way back `remove_vm_area` and the page release of
//! `vfree`): a `vmap_area` placed in the free tree, a `vm_struct` from kmalloc, the page
//! array and its pages, the mapping.

use core::sync::atomic::Ordering::Relaxed;

use super::rbtree::Corrupt;
use super::{
    bug_sites, checked_align_up, VmArea, VmFlags, VmStruct, VmallocError, GFP_RECLAIM_MASK,
    NUMA_NO_NODE, PMD_SHIFT, VMAP_RAM,
};
use crate::addr::{Pfn, VirtAddr, PAGE_SHIFT, PAGE_SIZE};
use crate::arch::pgtable::PgProt;
use crate::arch::Profile;
use crate::gfp::Gfp;
use crate::page_alloc::PageAllocError;
use crate::platform::Platform;
use crate::slab::CallSite;
use crate::Mm;

impl<P: Platform> Mm<P> {
    /// `__vmalloc_node()`.
    pub(in crate::vmalloc) fn __vmalloc_node(
        &self,
        size: usize,
        align: u64,
        gfp: Gfp,
        node: i32,
        caller: CallSite,
    ) -> Result<VirtAddr, VmallocError> {
        self.__vmalloc_node_range(
            size,
            align,
            self.layout().vmalloc_start,
            self.layout().vmalloc_end,
            gfp,
            PgProt::kernel(self.profile()),
            VmFlags::empty(),
            node,
            caller,
        )
    }

    /// `__vmalloc_node_range()`: the allocator behind every vmalloc call.
    #[allow(clippy::too_many_arguments)]
    pub fn __vmalloc_node_range(
        &self,
        size: usize,
        align: u64,
        start: u64,
        end: u64,
        gfp: Gfp,
        prot: PgProt,
        vm_flags: VmFlags,
        node: i32,
        caller: CallSite,
    ) -> Result<VirtAddr, VmallocError> {
        let result = self
            .vmalloc_node_range_inner(size, align, start, end, gfp, prot, vm_flags, node, caller);
        if result.is_err() {
            self.vmalloc.stats.failures.fetch_add(1, Relaxed);
        }
        result
    }

    #[allow(clippy::too_many_arguments)]
    pub(super) fn vmalloc_node_range_inner(
        &self,
        size: usize,
        align: u64,
        start: u64,
        end: u64,
        gfp: Gfp,
        prot: PgProt,
        vm_flags: VmFlags,
        node: i32,
        caller: CallSite,
    ) -> Result<VirtAddr, VmallocError> {
        let real_size = size as u64;
        if real_size == 0 {
            // 6.6 `__vmalloc_node_range()`: `if (WARN_ON_ONCE(!size)) return NULL;`
            const SITE: crate::report::KernelSite = crate::report::KernelSite {
                file: "mm/vmalloc.c",
                line: 3256,
                func: "__vmalloc_node_range",
            };
            self.vmalloc_warn_once(SITE);
            return Err(VmallocError::ZeroSize);
        }
        if node != NUMA_NO_NODE && node != 0 {
            return Err(VmallocError::BadArgs(
                "vmalloc_node: no such NUMA node (this machine has node 0 only)",
            ));
        }
        if !align.is_power_of_two() || start >= end {
            return Err(VmallocError::BadArgs(
                "vmalloc: alignment must be a power of two and the range non-empty",
            ));
        }
        if start < self.layout().vmalloc_start || end > self.layout().vmalloc_end {
            // The kernel also serves other ranges (modules); this machine has only the
            // vmalloc area, and every busy area is checked to lie inside it.
            return Err(VmallocError::BadArgs(
                "vmalloc: the range must lie inside the vmalloc area",
            ));
        }
        if real_size >> PAGE_SHIFT > self.totalram_pages() {
            self.vmalloc_warn_alloc(
                gfp,
                format_args!("vmalloc error: size {real_size}, exceeds total pages"),
            );
            return Err(VmallocError::ExceedsTotalPages { size: real_size });
        }
        let mut shift = PAGE_SHIFT;
        let mut try_align = align;
        if vm_flags.contains(VmFlags::VM_ALLOW_HUGE_VMAP)
            && self.profile() == Profile::X86_64
            && real_size >= 1 << PMD_SHIFT
        {
            shift = PMD_SHIFT;
            try_align = align.max(1 << PMD_SHIFT);
        }
        loop {
            match self.vmalloc_try(
                real_size, try_align, shift, start, end, gfp, prot, vm_flags, caller,
            ) {
                Ok(addr) => return Ok(addr),
                // A huge attempt that failed is retried with small pages.
                Err(e) if shift > PAGE_SHIFT && e.retry_with_small_pages() => {
                    shift = PAGE_SHIFT;
                    try_align = align;
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// One attempt of `__vmalloc_node_range` at one page size.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn vmalloc_try(
        &self,
        real_size: u64,
        align: u64,
        shift: u32,
        start: u64,
        end: u64,
        gfp: Gfp,
        prot: PgProt,
        vm_flags: VmFlags,
        caller: CallSite,
    ) -> Result<VirtAddr, VmallocError> {
        let flags = VmFlags::VM_ALLOC | VmFlags::VM_UNINITIALIZED | vm_flags;
        let area = self.get_vm_area_node(
            real_size,
            align,
            shift,
            flags,
            start,
            end,
            gfp,
            caller,
            "__vmalloc_node_range",
        )?;
        let addr = self.vmalloc_area_node(&area, gfp, prot, shift, caller)?;
        // clear_vm_uninitialized_flag()
        let v = self.vm_struct(area.vm)?;
        v.flags
            .fetch_and(!VmFlags::VM_UNINITIALIZED.bits(), Relaxed);
        v.requested_size.store(real_size, Relaxed);
        Ok(addr)
    }

    /// `__get_vm_area_node()`: a `vm_struct` and a range of `[start, end)` for `size`
    /// bytes (plus the guard page), aligned to `align`.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn get_vm_area_node(
        &self,
        size: u64,
        align: u64,
        shift: u32,
        flags: VmFlags,
        start: u64,
        end: u64,
        gfp: Gfp,
        caller: CallSite,
        what: &'static str,
    ) -> Result<NewArea, VmallocError> {
        if self.in_interrupt() {
            return Err(self.vmalloc_bug_interrupt(bug_sites::GET_VM_AREA, what));
        }
        let guard = if flags.contains(VmFlags::VM_NO_GUARD) {
            0
        } else {
            PAGE_SIZE as u64
        };
        // A size that wraps the address space is refused before anything is allocated.
        let Some(size) = checked_align_up(size, 1 << shift).and_then(|s| s.checked_add(guard))
        else {
            self.vmalloc_warn_alloc(
                gfp,
                format_args!("vmalloc error: size {size}, vm_struct allocation failed"),
            );
            return Err(VmallocError::NoVmapSpace { size });
        };
        let vm = self
            .kmalloc_caller(
                core::mem::size_of::<VmStruct>(),
                (gfp & GFP_RECLAIM_MASK) | Gfp::__GFP_ZERO,
                caller,
            )?
            .0;
        let va = match self.alloc_vmap_area(size, align, start, end, gfp, 0) {
            Ok(va) => va,
            Err(e) => {
                let _ = self.kfree(VirtAddr(vm));
                if let VmallocError::NoVmapSpace { .. } | VmallocError::Slab(_) = e {
                    self.vmalloc_warn_alloc(
                        gfp,
                        format_args!(
                            "vmalloc error: size {}, vm_struct allocation failed",
                            size - guard
                        ),
                    );
                }
                return Err(e);
            }
        };
        // setup_vmalloc_vm(), under vmap_area_lock.
        let _busy = self.vmalloc.busy.lock();
        let node = self.vmap_area(va)?;
        let v = self.vm_struct(vm)?;
        let addr = node.start();
        v.addr.store(addr, Relaxed);
        v.size.store(size, Relaxed);
        v.flags.store(flags.bits(), Relaxed);
        v.caller.store(self.site_index(caller).0 as u64, Relaxed);
        node.subtree_max_size_or_vm.store(vm, Relaxed);
        Ok(NewArea {
            vm,
            addr,
            usable: size - guard,
        })
    }

    /// `alloc_vmap_area()`: a busy `vmap_area` of `size` bytes in `[vstart, vend)`.
    pub(in crate::vmalloc) fn alloc_vmap_area(
        &self,
        size: u64,
        align: u64,
        vstart: u64,
        vend: u64,
        gfp: Gfp,
        va_flags: u64,
    ) -> Result<u64, VmallocError> {
        if size == 0 || !size.is_multiple_of(PAGE_SIZE as u64) || !align.is_power_of_two() {
            return Err(VmallocError::BadArgs(
                "alloc_vmap_area: size must be whole pages and align a power of two",
            ));
        }
        self.might_sleep()?;
        let gfp = gfp & GFP_RECLAIM_MASK;
        let va = self.alloc_vmap_area_object(gfp)?;
        match self.place_vmap_area(va, size, align, vstart, vend, gfp, va_flags) {
            Ok(()) => Ok(va),
            Err(e) => {
                self.free_vmap_area_object(va);
                Err(e)
            }
        }
    }

    /// The body of `alloc_vmap_area()`: take `[addr, addr + size)` from the free tree
    /// (purging once if nothing fits), and make `va` the busy area there.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn place_vmap_area(
        &self,
        va: u64,
        size: u64,
        align: u64,
        vstart: u64,
        vend: u64,
        gfp: Gfp,
        va_flags: u64,
    ) -> Result<(), VmallocError> {
        let mut purged = false;
        loop {
            self.preload_vmap_area(gfp);
            let addr = {
                let mut free = self.vmalloc.free.lock();
                let slot = &self.this_cpu().ne_fit_preload_node;
                let mut spare = slot.swap(0, Relaxed);
                let addr =
                    self.alloc_from_free_tree(&mut free, size, align, vstart, vend, &mut spare);
                slot.store(spare, Relaxed);
                addr?
            };
            if addr == vend {
                if !purged {
                    // reclaim_and_purge_vmap_areas(): the lazily freed areas may make room.
                    self.purge_vmap_area_lazy();
                    purged = true;
                    continue;
                }
                if !gfp.contains(Gfp::__GFP_NOWARN) {
                    self.printk(format_args!(
                        "vmap allocation for size {size} failed: use vmalloc=<size> to increase size"
                    ));
                }
                return Err(VmallocError::NoVmapSpace { size });
            }
            let node = self.vmap_area(va)?;
            node.va_start.store(addr, Relaxed);
            node.va_end.store(addr + size, Relaxed);
            node.subtree_max_size_or_vm.store(0, Relaxed);
            node.flags.store(va_flags, Relaxed);
            // A range just taken from the free tree overlaps a busy area only if the
            // trees were corrupted; the kernel warns ("vmalloc bug") and leaves the area
            // out of the tree, which would make it impossible to free: refused here.
            if !self.insert_vmap_area(&mut self.vmalloc.busy.lock(), va)? {
                return Err(VmallocError::Corrupted(addr));
            }
            return Ok(());
        }
    }

    /// `preload_this_cpu_lock()`: make sure this CPU holds a spare `vmap_area` for a split
    /// (`ne_fit_preload_node`), allocated before the free tree's lock is taken.
    pub(super) fn preload_vmap_area(&self, gfp: Gfp) {
        let slot = &self.this_cpu().ne_fit_preload_node;
        if slot.load(Relaxed) != 0 {
            return;
        }
        if let Ok(va) = self.alloc_vmap_area_object(gfp)
            && slot.compare_exchange(0, va, Relaxed, Relaxed).is_err()
        {
            self.free_vmap_area_object(va);
        }
    }

    /// `__vmalloc_area_node()`: the page array, the pages, and the mapping.
    pub(super) fn vmalloc_area_node(
        &self,
        area: &NewArea,
        gfp: Gfp,
        prot: PgProt,
        page_shift: u32,
        caller: CallSite,
    ) -> Result<VirtAddr, VmallocError> {
        let (vm, addr, size) = (area.vm, area.addr, area.usable);
        let nr_small = size >> PAGE_SHIFT;
        let array_size = nr_small * self.pointer_size();
        let nested_gfp = (gfp & GFP_RECLAIM_MASK) | Gfp::__GFP_ZERO;
        let mut gfp = gfp;
        if !gfp.intersects(Gfp::GFP_DMA | Gfp::GFP_DMA32) {
            gfp |= Gfp::__GFP_HIGHMEM;
        }
        // The recursion is bounded: the array of an array is a page at most.
        let pages = if array_size > PAGE_SIZE as u64 {
            self.__vmalloc_node(array_size as usize, 1, nested_gfp, NUMA_NO_NODE, caller)
                .map(|p| p.0)
                .map_err(|_| ())
        } else {
            self.kmalloc_caller(array_size as usize, nested_gfp, caller)
                .map(|p| p.0)
                .map_err(|_| ())
        };
        let Ok(pages) = pages else {
            self.vmalloc_warn_alloc(
                gfp,
                format_args!(
                    "vmalloc error: size {size}, failed to allocated page array size {array_size}"
                ),
            );
            self.free_vm_area(addr);
            return Err(VmallocError::PageArray { array_size });
        };
        let v = self.vm_struct(vm)?;
        v.pages.store(pages, Relaxed);
        let order = page_shift - PAGE_SHIFT;
        v.page_order.store(order, Relaxed);
        // init_on_alloc: the page allocator's post_alloc_hook().
        let (nr, last_error) =
            self.vm_area_alloc_pages(gfp | Gfp::__GFP_NOWARN, order, nr_small, pages);
        v.nr_pages.store(nr as u32, Relaxed);
        self.vmalloc.nr_vmalloc_pages.fetch_add(nr, Relaxed);
        if nr != nr_small {
            if order == 0 {
                self.vmalloc_warn_alloc(
                    gfp,
                    format_args!(
                        "vmalloc error: size {}, failed to allocate pages",
                        nr * PAGE_SIZE as u64
                    ),
                );
            }
            let _ = self.vfree(VirtAddr(addr));
            return Err(VmallocError::Pages {
                allocated: nr,
                wanted: nr_small,
                error: last_error.unwrap_or(PageAllocError::OrderTooLarge(order)),
            });
        }
        let step = 1u64 << order;
        let mapped = self.vmap_pages_range(addr, nr_small >> order, prot, page_shift, |i| {
            Ok(self.page_array_get(pages, i * step)?)
        });
        if let Err(e) = mapped {
            self.vmalloc_warn_alloc(
                gfp,
                format_args!(
                    "vmalloc error: size {}, failed to map pages",
                    nr * PAGE_SIZE as u64
                ),
            );
            let _ = self.vfree(VirtAddr(addr));
            return Err(e);
        }
        Ok(VirtAddr(addr))
    }

    /// `vm_area_alloc_pages()`: order-0 pages in batches of at most 100 (the bulk
    /// allocator), then one at a time; order-9 pages for a huge mapping, each split into
    /// order-0 pages so that every small page can be freed on its own. Returns the pages
    /// obtained and the last allocation error.
    pub(super) fn vm_area_alloc_pages(
        &self,
        gfp: Gfp,
        order: u32,
        nr_pages: u64,
        pages: u64,
    ) -> (u64, Option<PageAllocError>) {
        let mut nr = 0;
        let mut last_error = None;
        if order == 0 {
            let bulk_gfp = gfp & !Gfp::__GFP_NOFAIL;
            while nr < nr_pages {
                let request = (nr_pages - nr).min(100);
                let got = self.alloc_pages_bulk(bulk_gfp, request, |i, pfn| {
                    self.page_array_set(pages, nr + i, pfn)
                });
                nr += got;
                if got != request {
                    break;
                }
            }
        }
        while nr < nr_pages {
            match self.alloc_pages(gfp, order) {
                Ok(page) => {
                    let pfn = self.page_to_pfn(page);
                    if order > 0 && self.split_page(page, order).is_err() {
                        let _ = self.__free_pages(page, order);
                        break;
                    }
                    for i in 0..1u64 << order {
                        self.page_array_set(pages, nr + i, pfn + i);
                    }
                    nr += 1 << order;
                }
                Err(e) => {
                    last_error = Some(e);
                    break;
                }
            }
        }
        (nr, last_error)
    }

    /// `alloc_pages_bulk_array_node()`: up to `n` order-0 pages from the bulk allocator (one
    /// per-CPU list lock for the batch: `page_alloc/bulk.rs`), each handed to
    /// `store(i, pfn)`; returns how many were had.
    pub(super) fn alloc_pages_bulk(
        &self,
        gfp: Gfp,
        n: u64,
        mut store: impl FnMut(u64, Pfn),
    ) -> u64 {
        self.alloc_pages_bulk_fn(gfp | Gfp::__GFP_NOWARN, n as usize, |i, pfn| {
            store(i as u64, pfn)
        }) as u64
    }

    /// The second half of `vfree()`: the pages, the page array and the `vm_struct`. The
    /// array is walked only as far as the (checked) `nr_pages`; an entry that is NULL is
    /// the kernel's `BUG_ON(!page)`, and one that is no `struct page` of `mem_map` the
    /// fault the kernel would take on it: either ends the walk with the rest leaked, as
    /// the kernel's oops would.
    pub(super) fn release_vm_pages(&self, area: &VmArea, depth: u32) -> Result<(), VmallocError> {
        let pages = area.pages.0;
        for i in 0..area.nr_pages {
            let word = self.page_array_word(pages, i)?;
            if word == 0 {
                self.vmalloc_bug(bug_sites::VFREE_NULL_PAGE);
                let at = pages.wrapping_add(i * self.pointer_size());
                return Err(VmallocError::Corrupted(at));
            }
            let pfn = self
                .struct_page_pfn(word)
                .ok_or_else(|| self.vmalloc_fault(word, false))?;
            // High-order pages of a huge vmalloc were split: free them one by one.
            if let Ok(page) = self.pfn_to_page(pfn) {
                // init_on_free: the page allocator's free_pages_prepare().
                let _ = self.__free_pages(page, 0);
            }
        }
        if !area.flags.contains(VmFlags::VM_MAP_PUT_PAGES) {
            self.vmalloc
                .nr_vmalloc_pages
                .fetch_sub(area.nr_pages, Relaxed);
        }
        if pages != 0 {
            // kvfree(vm->pages)
            if self.layout().is_vmalloc_addr(pages) {
                // An array of an array is a page at most; deeper nesting than the largest
                // machine needs means the pointer was overwritten.
                if depth >= MAX_PAGE_ARRAY_NESTING {
                    return Err(self.vm_struct_corrupted(area.vm.0, "pages", pages).into());
                }
                let _ = self.vfree_nested(VirtAddr(pages), depth + 1);
            } else {
                let _ = self.kfree(VirtAddr(pages));
            }
        }
        let _ = self.kfree(area.vm);
        Ok(())
    }

    /// `free_vm_area()`: undo `get_vm_area` (no pages yet).
    pub(super) fn free_vm_area(&self, addr: u64) {
        if let Ok(Some(area)) = self.remove_vm_area(VirtAddr(addr)) {
            let _ = self.kfree(area.vm);
        }
    }

    /// `remove_vm_area()`: unlink the busy area holding `addr`, clear its mapping, and
    /// queue its range for the lazy purge; returns (a checked copy of) its `vm_struct`,
    /// or `None` if no busy area with one holds `addr`. The area and its `vm_struct` are
    /// checked before anything is changed: a corrupted one is reported and left as it is.
    pub(super) fn remove_vm_area(&self, addr: VirtAddr) -> Result<Option<VmArea>, VmallocError> {
        if !addr.0.is_multiple_of(PAGE_SIZE as u64) {
            // 6.6 `remove_vm_area()`: `if (WARN(!PAGE_ALIGNED(addr), "Trying to vfree() bad address …`
            const SITE: crate::report::KernelSite = crate::report::KernelSite {
                file: "mm/vmalloc.c",
                line: 2708,
                func: "remove_vm_area",
            };
            self.vmalloc_warn(SITE, format_args!("Trying to vfree() bad address ({addr})"));
            return Ok(None);
        }
        let (va, area) = {
            let mut busy = self.vmalloc.busy.lock();
            let va = self.find_area_containing(&busy, addr.0)?;
            if va == 0 {
                return Ok(None);
            }
            let node = self.vmap_area(va)?;
            let vm = node.subtree_max_size_or_vm.load(Relaxed);
            if vm == 0 || node.flags.load(Relaxed) & VMAP_RAM != 0 {
                return Ok(None);
            }
            self.check_busy_range(va, node)?;
            let area = self.checked_vm_area(node, vm)?;
            self.unlink_va(&mut busy, va)?;
            node.subtree_max_size_or_vm.store(0, Relaxed);
            (va, area)
        };
        self.free_unmap_vmap_area(va)?;
        Ok(Some(area))
    }

    /// `free_unmap_vmap_area()`: clear the entries now, flush later.
    pub(super) fn free_unmap_vmap_area(&self, va: u64) -> Result<(), Corrupt> {
        let node = self.vmap_area(va)?;
        self.vunmap_range_noflush(node.start(), node.end());
        self.free_vmap_area_noflush(va)
    }
}

/// A `vm_struct` just set up by `__get_vm_area_node`, with what its caller needs (kept
/// here rather than read back from RAM).
pub(super) struct NewArea {
    /// The `vm_struct`.
    pub(super) vm: u64,
    /// The area's first address.
    pub(super) addr: u64,
    /// Its size without the guard page.
    pub(super) usable: u64,
}

/// How deep `vfree` follows page arrays that were themselves vmalloc'd: an array of N
/// pages needs 8N bytes, so even 2^40 bytes of RAM need only 3 levels.
const MAX_PAGE_ARRAY_NESTING: u32 = 4;

impl VmallocError {
    /// Whether a huge-page attempt that failed this way is worth retrying with 4 KiB pages.
    fn retry_with_small_pages(&self) -> bool {
        !matches!(
            self,
            VmallocError::InInterrupt(_)
                | VmallocError::InNmi(_)
                | VmallocError::SleepInAtomic(_)
                | VmallocError::BadArgs(_)
                | VmallocError::ZeroSize
                | VmallocError::Corrupted(_)
        )
    }
}
