//! vmalloc's API (`mm/vmalloc.c`, Linux 6.6, with `vrealloc` of 6.13): the `vmalloc`
//! family and `vfree`, `vmap` / `vunmap`, `vm_map_ram`, `get_vm_area`, and the lookups
//! (`find_vm_area`, `vmalloc_to_page`). Each checks its context and arguments as the
//! kernel does, then goes to the area-node allocation (`node.rs`).

use core::fmt;
use core::sync::atomic::Ordering::Relaxed;

use super::rbtree::Corrupt;
use super::{
    bug_sites, VmArea, VmFlags, VmallocError, VmapAreaInfo, NUMA_NO_NODE, VMAP_BARE, VMAP_RAM,
};
use crate::addr::{Pfn, PhysAddr, VirtAddr, PAGE_SHIFT, PAGE_SIZE};
use crate::arch::pgtable::PgProt;
use crate::gfp::Gfp;
use crate::mm_types::Page;
use crate::platform::Platform;
use crate::slab::CallSite;
use crate::Mm;

impl<P: Platform> Mm<P> {
    /// `vmalloc(size)`: `size` bytes of virtually contiguous memory, GFP_KERNEL.
    #[track_caller]
    pub fn vmalloc(&self, size: usize) -> Result<VirtAddr, VmallocError> {
        self.__vmalloc_node(size, 1, Gfp::GFP_KERNEL, NUMA_NO_NODE, CallSite::caller())
    }

    /// `vzalloc(size)`: zeroed.
    #[track_caller]
    pub fn vzalloc(&self, size: usize) -> Result<VirtAddr, VmallocError> {
        self.__vmalloc_node(
            size,
            1,
            Gfp::GFP_KERNEL | Gfp::__GFP_ZERO,
            NUMA_NO_NODE,
            CallSite::caller(),
        )
    }

    /// `vmalloc_user(size)`: zeroed, for mapping to user space (`VM_USERMAP`).
    #[track_caller]
    pub fn vmalloc_user(&self, size: usize) -> Result<VirtAddr, VmallocError> {
        self.__vmalloc_node_range(
            size,
            PAGE_SIZE as u64, // SHMLBA on x86
            self.layout().vmalloc_start,
            self.layout().vmalloc_end,
            Gfp::GFP_KERNEL | Gfp::__GFP_ZERO,
            PgProt::kernel(self.profile()),
            VmFlags::VM_USERMAP,
            NUMA_NO_NODE,
            CallSite::caller(),
        )
    }

    /// `vmalloc_node(size, node)`: this machine has one node, 0 (or `NUMA_NO_NODE`).
    #[track_caller]
    pub fn vmalloc_node(&self, size: usize, node: i32) -> Result<VirtAddr, VmallocError> {
        self.__vmalloc_node(size, 1, Gfp::GFP_KERNEL, node, CallSite::caller())
    }

    /// `__vmalloc(size, gfp)`.
    #[track_caller]
    pub fn __vmalloc(&self, size: usize, gfp: Gfp) -> Result<VirtAddr, VmallocError> {
        self.__vmalloc_node(size, 1, gfp, NUMA_NO_NODE, CallSite::caller())
    }

    /// `__vmalloc` recording `caller` (the shell's script line, a replayed call site).
    pub fn __vmalloc_caller(
        &self,
        size: usize,
        gfp: Gfp,
        caller: CallSite,
    ) -> Result<VirtAddr, VmallocError> {
        self.__vmalloc_node(size, 1, gfp, NUMA_NO_NODE, caller)
    }

    /// `vmalloc_32(size)`: pages addressable with 32 bits (`GFP_VMALLOC32`, which is
    /// `GFP_DMA32 | GFP_KERNEL` on both profiles: ZONE_DMA32 on x86_64; on i386, where
    /// GFP_DMA32 means ZONE_NORMAL, it keeps `__vmalloc_area_node` from adding
    /// `__GFP_HIGHMEM`, so the pages are lowmem).
    #[track_caller]
    pub fn vmalloc_32(&self, size: usize) -> Result<VirtAddr, VmallocError> {
        let gfp = Gfp::GFP_KERNEL | Gfp::GFP_DMA32;
        self.__vmalloc_node(size, 1, gfp, NUMA_NO_NODE, CallSite::caller())
    }

    /// `vmalloc_huge(size, gfp)`: PMD (2 MiB) mappings of order-9 pages where the size
    /// allows and such pages can be had, else 4 KiB pages. x86_64 only: 2-level i386 has
    /// no huge vmalloc (`HAVE_ARCH_HUGE_VMALLOC` needs X86_64 or PAE).
    #[track_caller]
    pub fn vmalloc_huge(&self, size: usize, gfp: Gfp) -> Result<VirtAddr, VmallocError> {
        self.vmalloc_huge_caller(size, gfp, CallSite::caller())
    }

    /// `vmalloc_huge` recording `caller`.
    pub fn vmalloc_huge_caller(
        &self,
        size: usize,
        gfp: Gfp,
        caller: CallSite,
    ) -> Result<VirtAddr, VmallocError> {
        self.__vmalloc_node_range(
            size,
            1,
            self.layout().vmalloc_start,
            self.layout().vmalloc_end,
            gfp,
            PgProt::kernel(self.profile()),
            VmFlags::VM_ALLOW_HUGE_VMAP,
            NUMA_NO_NODE,
            caller,
        )
    }

    /// `vfree(addr)`: free a vmalloc allocation. From interrupt context it is deferred
    /// (`vfree_atomic`); from NMI it is a BUG; NULL is a no-op.
    #[track_caller]
    pub fn vfree(&self, addr: VirtAddr) -> Result<(), VmallocError> {
        self.vfree_nested(addr, 0)
    }

    /// `vfree()` at `depth` levels of page arrays down (`kvfree(vm->pages)` frees a page
    /// array that was itself vmalloc'd).
    pub(super) fn vfree_nested(&self, addr: VirtAddr, depth: u32) -> Result<(), VmallocError> {
        if self.in_interrupt() {
            return self.vfree_atomic(addr);
        }
        self.might_sleep()?;
        if addr.0 == 0 {
            return Ok(());
        }
        let Some(area) = self.remove_vm_area(addr)? else {
            // 6.6 `vfree()`: `if (unlikely(!vm)) { WARN(1, KERN_ERR "Trying to vfree() …`
            const SITE: crate::report::KernelSite = crate::report::KernelSite {
                file: "mm/vmalloc.c",
                line: 2843,
                func: "vfree",
            };
            self.vmalloc_warn(
                SITE,
                format_args!("Trying to vfree() nonexistent vm area ({addr})"),
            );
            return Err(VmallocError::NoSuchArea(addr));
        };
        self.release_vm_pages(&area, depth)
    }

    /// `vunmap(addr)`: undo `vmap` (the pages stay with their owner). Refused from
    /// interrupt context (a BUG in the kernel).
    #[track_caller]
    pub fn vunmap(&self, addr: VirtAddr) -> Result<(), VmallocError> {
        if self.in_interrupt() {
            return Err(self.vmalloc_bug_interrupt(bug_sites::VUNMAP, "vunmap"));
        }
        self.might_sleep()?;
        if addr.0 == 0 {
            return Ok(());
        }
        let Some(area) = self.remove_vm_area(addr)? else {
            // 6.6 `vunmap()`: `if (unlikely(!vm)) { WARN(1, KERN_ERR "Trying to vunmap() …`
            const SITE: crate::report::KernelSite = crate::report::KernelSite {
                file: "mm/vmalloc.c",
                line: 2888,
                func: "vunmap",
            };
            self.vmalloc_warn(
                SITE,
                format_args!("Trying to vunmap() nonexistent vm area ({addr})"),
            );
            return Err(VmallocError::NoSuchArea(addr));
        };
        let _ = self.kfree(area.vm);
        Ok(())
    }

    /// `vmap(pages, count, flags, prot)`: map existing pages into a fresh area.
    #[track_caller]
    pub fn vmap(
        &self,
        pages: &[Pfn],
        flags: VmFlags,
        prot: PgProt,
    ) -> Result<VirtAddr, VmallocError> {
        self.vmap_caller(pages, flags, prot, CallSite::caller())
    }

    /// `vmap` recording `caller`.
    pub fn vmap_caller(
        &self,
        pages: &[Pfn],
        flags: VmFlags,
        prot: PgProt,
        caller: CallSite,
    ) -> Result<VirtAddr, VmallocError> {
        self.vmap_count_ok(pages.len() as u64)?;
        if let Some(bad) = pages.iter().find(|p| !self.pfn_valid(**p)) {
            return Err(bad_vmap_page(*bad));
        }
        self.vmap_with(pages.len() as u64, flags, prot, caller, |i| {
            pages[i as usize]
        })
    }

    /// `vmap` of `count` consecutive pages from `first` (what a caller holding a
    /// physically contiguous block passes as its page array), without building the array:
    /// a count that cannot fit the vmalloc area, or that runs past `mem_map`, is refused
    /// before any work.
    pub fn vmap_contiguous_caller(
        &self,
        first: Pfn,
        count: u64,
        flags: VmFlags,
        prot: PgProt,
        caller: CallSite,
    ) -> Result<VirtAddr, VmallocError> {
        self.vmap_count_ok(count)?;
        // count <= totalram_pages, so the walk is bounded by the machine's size.
        let Some(end) = first.0.checked_add(count) else {
            return Err(bad_vmap_page(Pfn(u64::MAX)));
        };
        if let Some(bad) = (first.0..end).find(|&p| !self.pfn_valid(Pfn(p))) {
            return Err(bad_vmap_page(Pfn(bad)));
        }
        self.vmap_with(count, flags, prot, caller, |i| Pfn(first.0 + i))
    }

    /// `vmap()`'s count checks, before any work: `count > totalram_pages()` is refused
    /// as the kernel refuses it, and so is a count whose area (with its guard page)
    /// could never fit the vmalloc range.
    pub(super) fn vmap_count_ok(&self, count: u64) -> Result<(), VmallocError> {
        let area_pages = (self.layout().vmalloc_end - self.layout().vmalloc_start) >> PAGE_SHIFT;
        if count == 0 || count > self.totalram_pages() || count >= area_pages {
            return Err(VmallocError::BadArgs(
                "vmap: count must be 1 ..= totalram_pages and fit the vmalloc area",
            ));
        }
        Ok(())
    }

    /// The rest of `vmap()`: flags, a `vm_struct` and an area, then the mapping of
    /// `page_at(0 .. count)`.
    pub(super) fn vmap_with(
        &self,
        count: u64,
        flags: VmFlags,
        prot: PgProt,
        caller: CallSite,
        page_at: impl Fn(u64) -> Pfn,
    ) -> Result<VirtAddr, VmallocError> {
        self.might_sleep()?;
        if flags.intersects(
            VmFlags::VM_FLUSH_RESET_PERMS | VmFlags::VM_NO_GUARD | VmFlags::VM_MAP_PUT_PAGES,
        ) {
            // 6.6 `vmap()`: `if (WARN_ON_ONCE(flags & VM_FLUSH_RESET_PERMS)) return NULL;`
            // then the same for VM_NO_GUARD; refusing VM_MAP_PUT_PAGES is kmemlab's (line 0).
            let line = if flags.contains(VmFlags::VM_FLUSH_RESET_PERMS) {
                2920
            } else if flags.contains(VmFlags::VM_NO_GUARD) {
                2927
            } else {
                0
            };
            let site = crate::report::KernelSite {
                file: "mm/vmalloc.c",
                line,
                func: "vmap",
            };
            if line == 0 {
                self.vmalloc_warn(site, format_args!("unsupported flags {flags:?}"));
            } else {
                self.vmalloc_warn_once(site);
            }
            return Err(VmallocError::BadArgs(
                "vmap: VM_FLUSH_RESET_PERMS, VM_NO_GUARD and VM_MAP_PUT_PAGES are not accepted",
            ));
        }
        let size = count << PAGE_SHIFT;
        let area = self.get_vm_area_node(
            size,
            1,
            PAGE_SHIFT,
            flags,
            self.layout().vmalloc_start,
            self.layout().vmalloc_end,
            Gfp::GFP_KERNEL,
            caller,
            "vmap",
        )?;
        let addr = area.addr;
        // pgprot_nx(): vmap never maps code.
        let prot =
            PgProt(prot.0 | PgProt::kernel(self.profile()).0 & crate::arch::pgtable::_PAGE_NX);
        if let Err(e) = self.vmap_pages_range(addr, count, prot, PAGE_SHIFT, |i| Ok(page_at(i))) {
            let _ = self.vunmap(VirtAddr(addr));
            return Err(e);
        }
        Ok(VirtAddr(addr))
    }

    /// `vm_map_ram(pages, count, node)`: a quick mapping without a `vm_struct` or a guard
    /// page. (The kernel serves up to `VMAP_MAX_ALLOC` pages from per-CPU vmap blocks;
    /// here every request takes its own `vmap_area`, as larger ones do in the kernel.)
    pub fn vm_map_ram(&self, pages: &[Pfn]) -> Result<VirtAddr, VmallocError> {
        if pages.is_empty() || pages.iter().any(|p| !self.pfn_valid(*p)) {
            return Err(VmallocError::BadArgs(
                "vm_map_ram: needs 1 or more valid pages",
            ));
        }
        self.vmap_count_ok(pages.len() as u64)?;
        let size = (pages.len() as u64) << PAGE_SHIFT;
        let va = self.alloc_vmap_area(
            size,
            PAGE_SIZE as u64,
            self.layout().vmalloc_start,
            self.layout().vmalloc_end,
            Gfp::GFP_KERNEL,
            VMAP_RAM,
        )?;
        let addr = self.vmap_area(va)?.start();
        let prot = PgProt::kernel(self.profile());
        if let Err(e) = self.vmap_pages_range(addr, pages.len() as u64, prot, PAGE_SHIFT, |i| {
            Ok(pages[i as usize])
        }) {
            let _ = self.vm_unmap_ram(VirtAddr(addr), pages.len());
            return Err(e);
        }
        Ok(VirtAddr(addr))
    }

    /// `vm_unmap_ram(mem, count)`.
    pub fn vm_unmap_ram(&self, addr: VirtAddr, count: usize) -> Result<(), VmallocError> {
        if !self.is_vmalloc_addr(addr) || !addr.0.is_multiple_of(PAGE_SIZE as u64) {
            return Err(VmallocError::NotVmalloc(addr));
        }
        let va = {
            let mut busy = self.vmalloc.busy.lock();
            let va = self.find_area_containing(&busy, addr.0)?;
            let node = if va == 0 {
                None
            } else {
                Some(self.vmap_area(va)?)
            };
            let Some(node) = node.filter(|n| n.flags.load(Relaxed) & VMAP_RAM != 0) else {
                drop(busy);
                // 6.6 `vm_unmap_ram()`: `if (WARN_ON_ONCE(!va)) return;`
                const SITE: crate::report::KernelSite = crate::report::KernelSite {
                    file: "mm/vmalloc.c",
                    line: 2376,
                    func: "vm_unmap_ram",
                };
                self.vmalloc_warn_once(SITE);
                return Err(VmallocError::NoSuchArea(addr));
            };
            if (count as u64).checked_shl(PAGE_SHIFT) != Some(node.size()) {
                return Err(VmallocError::BadArgs(
                    "vm_unmap_ram: count differs from the vm_map_ram",
                ));
            }
            self.check_busy_range(va, node)?;
            self.unlink_va(&mut busy, va)?;
            va
        };
        self.free_unmap_vmap_area(va)?;
        Ok(())
    }

    /// `get_vm_area(size, flags)`: reserve a range of the vmalloc area, mapping nothing.
    #[track_caller]
    pub fn get_vm_area(&self, size: usize, flags: VmFlags) -> Result<VmArea, VmallocError> {
        let area = self.get_vm_area_node(
            size as u64,
            1,
            PAGE_SHIFT,
            flags,
            self.layout().vmalloc_start,
            self.layout().vmalloc_end,
            Gfp::GFP_KERNEL,
            CallSite::caller(),
            "get_vm_area",
        )?;
        Ok(self.vm_area_copy(area.vm)?)
    }

    /// A bare `vmap_area` of `size` bytes (whole pages) aligned to `align`, in the vmalloc
    /// range: the kernel's static `alloc_vmap_area()` on its own, which is what its
    /// `alloc_vmap_area` tracepoint records. No `vm_struct`, no pages, no mapping; `size` is
    /// taken as given (a guard page included if the caller counted one). The area is
    /// flagged `VMAP_RAM` (and kmemlab's `VMAP_BARE`: nothing is mapped), as the kernel
    /// flags its `vm_map_ram` vmap blocks (areas without a `vm_struct`), and is given back
    /// lazily with [`Mm::vm_unmap_ram`]. For trace replay.
    pub fn reserve_vmap_area(
        &self,
        size: u64,
        align: u64,
        gfp: Gfp,
    ) -> Result<VirtAddr, VmallocError> {
        if self.in_interrupt() {
            return Err(self.vmalloc_bug_interrupt(bug_sites::GET_VM_AREA, "alloc_vmap_area"));
        }
        let va = self.alloc_vmap_area(
            size,
            align.max(1),
            self.layout().vmalloc_start,
            self.layout().vmalloc_end,
            gfp,
            VMAP_RAM | VMAP_BARE,
        )?;
        Ok(VirtAddr(self.vmap_area(va)?.start()))
    }

    /// `free_vm_area(area)`: give back what `get_vm_area` reserved.
    pub fn free_vm_area_at(&self, addr: VirtAddr) -> Result<(), VmallocError> {
        let area = self
            .remove_vm_area(addr)?
            .ok_or(VmallocError::NoSuchArea(addr))?;
        let _ = self.kfree(area.vm);
        Ok(())
    }

    /// `find_vm_area(addr)`: the area holding `addr`, if it is a live vmalloc/vmap area.
    /// The area and its `vm_struct` are checked against each other (kmemlab's check: the
    /// kernel trusts them), so that what callers loop over is bounded by a real area;
    /// corruption is reported and answers `None`.
    pub fn find_vm_area(&self, addr: VirtAddr) -> Option<VmArea> {
        let busy = self.vmalloc.busy.lock();
        let va = self.find_area_containing(&busy, addr.0).ok()?;
        if va == 0 {
            return None;
        }
        let node = self.vmap_area(va).ok()?;
        let vm = node.subtree_max_size_or_vm.load(Relaxed);
        if vm == 0 || node.flags.load(Relaxed) & VMAP_RAM != 0 {
            return None;
        }
        self.check_busy_range(va, node).ok()?;
        self.checked_vm_area(node, vm).ok()
    }

    /// The `vmap_area` object whose range holds `addr`: a busy area's, else one waiting
    /// for the purge, else a free block's (for tests and tools that look at the nodes in
    /// RAM). Nothing is reported: a tree that cannot be walked answers `None`.
    pub fn vmap_area_at(&self, addr: VirtAddr) -> Option<VirtAddr> {
        let trees = [&self.vmalloc.busy, &self.vmalloc.purge, &self.vmalloc.free];
        trees.into_iter().find_map(|tree| {
            let tree = tree.lock();
            let o = self.quiet_nodes(&tree);
            let va = self.find_area_in(&o, tree.root, addr.0).ok()?;
            (va != 0).then_some(VirtAddr(va))
        })
    }

    /// The page behind a vmalloc address (`vmalloc_to_page`), by walking the page tables.
    pub fn vmalloc_to_page(&self, addr: VirtAddr) -> Option<&Page> {
        let pfn = self.vmalloc_to_pfn(addr)?;
        self.pfn_to_page(pfn).ok()
    }

    /// `vmalloc_to_pfn(addr)`.
    pub fn vmalloc_to_pfn(&self, addr: VirtAddr) -> Option<Pfn> {
        if !self.is_vmalloc_addr(addr) {
            return None;
        }
        self.kernel_translate(addr.0).map(|m| m.phys.pfn())
    }

    /// The PFN behind each page of the area at `addr` (its mapped part), by walking the
    /// page tables; `vmap` areas included. Only the tables that exist are visited, so a
    /// large reservation with little mapped costs little.
    pub fn vm_area_pfns(
        &self,
        addr: VirtAddr,
        mut f: impl FnMut(Pfn),
    ) -> Result<VmArea, VmallocError> {
        let area = self
            .find_vm_area(addr)
            .ok_or(VmallocError::NoSuchArea(addr))?;
        let (start, end) = (area.addr.0, area.addr.0 + area.usable_size());
        self.walk_kernel_range(start, end, &mut |va, phys, size| {
            // A large leaf may start below the area or reach past it.
            let from = va.max(start);
            let to = va.saturating_add(size).min(end);
            let mut at = from;
            while at < to {
                f(PhysAddr(phys + (at - va)).pfn());
                at += PAGE_SIZE as u64;
            }
        });
        Ok(area)
    }

    /// `vrealloc(p, size, gfp)` (6.13): shrink or grow in place within the area's pages,
    /// else allocate anew, copy, and free the old. `p` NULL is `vmalloc`; size 0 frees.
    #[track_caller]
    pub fn vrealloc(&self, p: VirtAddr, size: usize, gfp: Gfp) -> Result<VirtAddr, VmallocError> {
        let caller = CallSite::caller();
        if size == 0 {
            self.vfree(p)?;
            return Ok(VirtAddr(0));
        }
        let (mut old_size, mut alloced) = (0, 0);
        let mut vm = 0;
        if p.0 != 0 {
            let Some(area) = self.find_vm_area(p).filter(|a| a.addr == p) else {
                // kmemlab-only: 6.6 has no `vrealloc()` (its 6.12 `WARN(1, "Trying to vrealloc() …")`).
                const SITE: crate::report::KernelSite = crate::report::KernelSite {
                    file: "mm/vmalloc.c",
                    line: 0,
                    func: "vrealloc",
                };
                self.vmalloc_warn(
                    SITE,
                    format_args!("Trying to vrealloc() nonexistent vm area ({p})"),
                );
                return Err(VmallocError::NoSuchArea(p));
            };
            vm = area.vm.0;
            alloced = area.usable_size();
            old_size = area.requested_size;
        }
        let size = size as u64;
        if p.0 != 0 && size <= alloced {
            if size < old_size && (self.want_init_on_free() || self.want_init_on_alloc(gfp)) {
                self.vmalloc_fill(p.0 + size, 0, old_size - size)?;
            }
            self.vm_struct(vm)?.requested_size.store(size, Relaxed);
            return Ok(p);
        }
        let n = self.__vmalloc_node(size as usize, 1, gfp, NUMA_NO_NODE, caller)?;
        if p.0 != 0 {
            if let Err(e) = self.vmalloc_copy(n.0, p.0, old_size) {
                let _ = self.vfree(n);
                return Err(e.into());
            }
            self.vfree(p)?;
        }
        Ok(n)
    }

    /// Call `f` on every busy area in address order, then on every lazily freed area
    /// waiting for the purge (what `/proc/vmallocinfo` shows); stops at the first error.
    /// The lists are walked as `s_show` walks them, with every node checked: a node that
    /// cannot be read is the kernel's oops, a cycle its soft lockup, and either ends the
    /// listing there (`Ok`, with the report on the console).
    pub fn for_each_vmap_area(
        &self,
        f: &mut dyn FnMut(&VmapAreaInfo) -> fmt::Result,
    ) -> fmt::Result {
        match self.walk_vmap_areas(f) {
            Ok(result) => result,
            Err(_) => Ok(()),
        }
    }

    pub(super) fn walk_vmap_areas(
        &self,
        f: &mut dyn FnMut(&VmapAreaInfo) -> fmt::Result,
    ) -> Result<fmt::Result, Corrupt> {
        let busy = self.vmalloc.busy.lock();
        let mut va = busy.first;
        let mut left = busy.walk_limit();
        while va != 0 {
            self.list_step(&mut left, &busy)?;
            let node = self.vmap_area(va)?;
            self.check_range(va, node)?;
            let vm = node.subtree_max_size_or_vm.load(Relaxed);
            let vm_map_ram = node.flags.load(Relaxed) & VMAP_RAM != 0;
            let vm = if vm != 0 && !vm_map_ram {
                Some(self.vm_area_copy(vm)?)
            } else {
                None
            };
            let info = VmapAreaInfo {
                start: node.start(),
                end: node.end(),
                vm,
                vm_map_ram,
            };
            if let Err(e) = f(&info) {
                return Ok(Err(e));
            }
            va = node.list_next();
        }
        drop(busy);
        let purge = self.vmalloc.purge.lock();
        let mut va = purge.first;
        let mut left = purge.walk_limit();
        while va != 0 {
            self.list_step(&mut left, &purge)?;
            let node = self.vmap_area(va)?;
            self.check_range(va, node)?;
            let info = VmapAreaInfo {
                start: node.start(),
                end: node.end(),
                vm: None,
                vm_map_ram: false,
            };
            if let Err(e) = f(&info) {
                return Ok(Err(e));
            }
            va = node.list_next();
        }
        Ok(Ok(()))
    }
}

/// Why `vmap` refuses a page.
fn bad_vmap_page(pfn: Pfn) -> VmallocError {
    VmallocError::BadArgs(if pfn.0 == 0 {
        "vmap: NULL page"
    } else {
        "vmap: a page outside mem_map"
    })
}
