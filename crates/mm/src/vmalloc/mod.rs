//! vmalloc: virtually contiguous kernel memory mapped page by page (`mm/vmalloc.c`, Linux
//! 6.6, with `vrealloc` of 6.13).
//!
//! An allocation takes a range of the vmalloc area from the vmap_area allocator
//! (`area.rs`), a `vm_struct` and a page array from kmalloc (or, for a page array larger
//! than a page, from vmalloc itself), order-0 pages from the page allocator one by one with
//! `__GFP_HIGHMEM` allowed, and maps them through real page-table entries (`map.rs`). A guard
//! page (unmapped) follows every area. Freeing clears the entries at once but flushes no TLB:
//! the range waits on the purge list until the lazily freed pages exceed
//! `lazy_max_pages()`, and then one `flush_tlb_kernel_range` covers them all (`purge.rs`).
//!
//! Context rules, as the kernel enforces them: vmalloc and `vunmap` from interrupt context
//! are a kernel BUG (refused here, with the kernel's report); vmalloc in atomic context gets
//! the `might_sleep` splat; `vfree` from interrupt context is deferred to a work item that
//! the machine runs later in process context, and from NMI is a BUG.
//!
//! Every structure vmalloc keeps in RAM (the `vmap_area` nodes, the `vm_struct`s, the page
//! arrays, the deferred-free list words) is read through the door ([`crate::mem`]) and
//! checked before use: a pointer that leads nowhere is the kernel's page fault (an oops),
//! a walk that goes round a cycle is its soft lockup, a `vm_struct` that disagrees with
//! its area is refused and reported; the operation then fails with
//! [`VmallocError::Corrupted`] instead of faulting, panicking or hanging the host.

mod area;
mod check;
mod map;
mod purge;
pub mod query;
mod rbtree;

use core::fmt;
use core::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering::Relaxed};

use zerocopy::FromBytes;

pub use area::{VmapArea, VMAP_BARE, VMAP_RAM};
pub use check::VmallocCheckError;
pub use map::KernelMapping;
pub use rbtree::RbViolation;

use crate::addr::{Pfn, PhysAddr, VirtAddr, PAGE_SHIFT, PAGE_SIZE};
use crate::arch::pgtable::PgProt;
use crate::arch::Profile;
use crate::context::SleepInAtomic;
use crate::gfp::Gfp;
use crate::mm_types::Page;
use crate::page_alloc::AllocError;
use crate::platform::Platform;
use crate::slab::{CallSite, KmemCacheRef, SlabError, SlabFlags};
use crate::Mm;
use area::VmapTree;
use rbtree::Corrupt;

bitflags::bitflags! {
    /// `vm_struct.flags` (`include/linux/vmalloc.h`).
    #[derive(Copy, Clone, Debug, PartialEq, Eq, Default)]
    pub struct VmFlags: u64 {
        /// `ioremap()` and friends.
        const VM_IOREMAP = 0x1;
        /// `vmalloc()`.
        const VM_ALLOC = 0x2;
        /// `vmap()`ed pages.
        const VM_MAP = 0x4;
        /// Suitable for `remap_vmalloc_range`.
        const VM_USERMAP = 0x8;
        /// `dma_alloc_coherent`.
        const VM_DMA_COHERENT = 0x10;
        /// The area is not fully set up yet.
        const VM_UNINITIALIZED = 0x20;
        /// No guard page after the area.
        const VM_NO_GUARD = 0x40;
        /// KASAN shadow allocated.
        const VM_KASAN = 0x80;
        /// Reset direct-map permissions on free.
        const VM_FLUSH_RESET_PERMS = 0x100;
        /// `vfree` frees the pages given to `vmap`.
        const VM_MAP_PUT_PAGES = 0x200;
        /// Huge (PMD) mappings are allowed.
        const VM_ALLOW_HUGE_VMAP = 0x400;
        /// Defer kmemleak registration.
        const VM_DEFER_KMEMLEAK = 0x800;
    }
}

/// `NUMA_NO_NODE`.
pub const NUMA_NO_NODE: i32 = -1;
/// `PMD_SHIFT` of x86_64: a huge vmalloc mapping covers 2 MiB.
pub const PMD_SHIFT: u32 = 21;
/// `VMAP_MAX_ALLOC`: `vm_map_ram` of at most this many pages uses per-CPU vmap blocks in
/// the kernel (`BITS_PER_LONG`).
pub const VMAP_MAX_ALLOC: usize = 64;

/// `struct vm_struct`, allocated with kmalloc. All atomics.
#[repr(C)]
#[derive(Default, FromBytes)]
pub struct VmStruct {
    /// `next` (the early `vmlist`; unused after boot).
    next: AtomicU64,
    /// `addr`.
    addr: AtomicU64,
    /// `size`, the guard page included.
    size: AtomicU64,
    /// `flags` ([`VmFlags`]).
    flags: AtomicU64,
    /// `pages`: the page array (`struct page **`), in kmalloc or vmalloc memory.
    pages: AtomicU64,
    /// `page_order`: log2 of the pages per mapping leaf (9 for a huge vmalloc).
    page_order: AtomicU32,
    /// `nr_pages`.
    nr_pages: AtomicU32,
    /// `phys_addr` (ioremap only).
    phys_addr: AtomicU64,
    /// `caller`: an index into the call-site table.
    caller: AtomicU64,
    /// `requested_size` (6.13, for `vrealloc`).
    requested_size: AtomicU64,
}

/// A copy of a `vm_struct`, for callers (`find_vm_area`, `get_vm_area`).
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct VmArea {
    /// First address.
    pub addr: VirtAddr,
    /// Bytes, the guard page included.
    pub size: u64,
    /// Flags.
    pub flags: VmFlags,
    /// Pages in the page array (0 for `vmap`).
    pub nr_pages: u64,
    /// log2 of the pages per mapping leaf.
    pub page_order: u32,
    /// The page array, if any.
    pub pages: VirtAddr,
    /// The bytes asked for.
    pub requested_size: u64,
    /// Who allocated it.
    pub caller: Option<CallSite>,
    /// The `vm_struct` itself.
    pub vm: VirtAddr,
}

impl VmArea {
    /// `get_vm_area_size()`: the size without the guard page.
    pub fn usable_size(&self) -> u64 {
        if self.flags.contains(VmFlags::VM_NO_GUARD) {
            self.size
        } else {
            self.size.saturating_sub(PAGE_SIZE as u64)
        }
    }
}

/// One area as `/proc/vmallocinfo` lists it.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct VmapAreaInfo {
    /// First address.
    pub start: u64,
    /// One past the last (guard page included).
    pub end: u64,
    /// Its `vm_struct`, for a busy vmalloc/vmap area.
    pub vm: Option<VmArea>,
    /// A `vm_map_ram` area.
    pub vm_map_ram: bool,
}

/// Why a vmalloc-family call failed or was refused.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum VmallocError {
    /// A zero-sized request (`WARN_ON_ONCE(!size)`).
    ZeroSize,
    /// More pages than the machine has (`vmalloc error: size %lu, exceeds total pages`).
    ExceedsTotalPages {
        /// Bytes asked for.
        size: u64,
    },
    /// A bad argument (alignment not a power of two, unaligned size, no such node).
    BadArgs(&'static str),
    /// Called from interrupt context: the kernel's `BUG_ON(in_interrupt())`.
    InInterrupt(&'static str),
    /// Called from NMI context: `BUG_ON(in_nmi())`.
    InNmi(&'static str),
    /// A sleeping call in atomic context: the `might_sleep` splat.
    SleepInAtomic(SleepInAtomic),
    /// The `vm_struct` or a `vmap_area` could not be allocated.
    Slab(SlabError),
    /// No free range of the vmalloc area fits (`vmap allocation for size %lu failed`).
    NoVmapSpace {
        /// Bytes asked for, the guard page included.
        size: u64,
    },
    /// The page array could not be allocated.
    PageArray {
        /// Bytes of the array.
        array_size: u64,
    },
    /// Fewer pages than needed could be had.
    Pages {
        /// Pages obtained (all given back).
        allocated: u64,
        /// Pages needed.
        wanted: u64,
        /// The page allocator's last error.
        error: AllocError,
    },
    /// A page-table page could not be allocated.
    PageTable(AllocError),
    /// The mapping could not be made at this address.
    MapFailed(u64),
    /// Not the address of a live vmalloc/vmap area (`Trying to vfree() nonexistent vm area`).
    NoSuchArea(VirtAddr),
    /// An address outside the vmalloc area.
    NotVmalloc(VirtAddr),
    /// vmalloc's structures in RAM are corrupted at this address: the kernel's report
    /// (an oops, a list-corruption WARN, a soft lockup, or kmemlab's own check of a
    /// `vm_struct`) is on the console, and the operation was stopped.
    Corrupted(u64),
}

impl fmt::Display for VmallocError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            VmallocError::ZeroSize => write!(f, "vmalloc of 0 bytes (WARN_ON_ONCE(!size))"),
            VmallocError::ExceedsTotalPages { size } => {
                write!(f, "vmalloc error: size {size}, exceeds total pages")
            }
            VmallocError::BadArgs(why) => write!(f, "{why}"),
            VmallocError::InInterrupt(what) => write!(
                f,
                "kernel BUG: {what} called in interrupt context (BUG_ON(in_interrupt())); refused"
            ),
            VmallocError::InNmi(what) => {
                write!(f, "kernel BUG: {what} called in NMI context (BUG_ON(in_nmi())); refused")
            }
            VmallocError::SleepInAtomic(_) => write!(
                f,
                "BUG: sleeping function called from invalid context (vmalloc may sleep); refused"
            ),
            VmallocError::Slab(e) => write!(f, "vmalloc error: vm_struct allocation failed: {e}"),
            VmallocError::NoVmapSpace { size } => write!(
                f,
                "vmap allocation for size {size} failed: use vmalloc=<size> to increase size"
            ),
            VmallocError::PageArray { array_size } => {
                write!(f, "vmalloc error: failed to allocated page array size {array_size}")
            }
            VmallocError::Pages {
                allocated,
                wanted,
                error,
            } => write!(
                f,
                "vmalloc error: size {}, failed to allocate pages ({allocated} of {wanted}): {error}",
                wanted * PAGE_SIZE as u64
            ),
            VmallocError::PageTable(e) => {
                write!(f, "vmalloc error: failed to map pages (page table: {e})")
            }
            VmallocError::MapFailed(va) => {
                write!(f, "vmalloc error: failed to map pages at {va:#x}")
            }
            VmallocError::NoSuchArea(va) => {
                write!(f, "Trying to vfree() nonexistent vm area ({va})")
            }
            VmallocError::NotVmalloc(va) => write!(f, "{va} is not a vmalloc address"),
            VmallocError::Corrupted(at) => write!(
                f,
                "vmalloc metadata corrupted at {at:#x} (reported on the console); operation stopped"
            ),
        }
    }
}

impl core::error::Error for VmallocError {}

impl From<SlabError> for VmallocError {
    fn from(e: SlabError) -> Self {
        VmallocError::Slab(e)
    }
}

impl From<Corrupt> for VmallocError {
    fn from(c: Corrupt) -> Self {
        VmallocError::Corrupted(c.addr)
    }
}

impl From<SleepInAtomic> for VmallocError {
    fn from(e: SleepInAtomic) -> Self {
        VmallocError::SleepInAtomic(e)
    }
}

/// What vmalloc has done, for the tour and the benchmarks (kmemlab's own counters).
#[derive(Default)]
pub struct VmallocStats {
    /// Leaf page-table entries written (mappings made).
    pub pte_set: AtomicU64,
    /// Leaf page-table entries cleared.
    pub pte_cleared: AtomicU64,
    /// `__purge_vmap_area_lazy` runs that found something to purge.
    pub purges: AtomicU64,
    /// Areas given back to the free tree by purges (after merging on the purge list).
    pub purged_areas: AtomicU64,
    /// Pages of virtual space purged.
    pub purged_pages: AtomicU64,
    /// TLB flushes vmalloc asked for.
    pub tlb_flushes: AtomicU64,
    /// `vfree`s deferred from interrupt context.
    pub deferred_frees: AtomicU64,
    /// Kernel BUGs and warnings reported (refused calls).
    pub bugs: AtomicU64,
    /// Allocations that failed.
    pub failures: AtomicU64,
}

/// vmalloc's global state (the statics of `mm/vmalloc.c`).
pub struct VmallocGlobals {
    /// `vmap_area_cachep`.
    cachep: AtomicU64,
    /// `free_vmap_area_root` / `free_vmap_area_list` under `free_vmap_area_lock`.
    free: spin::Mutex<VmapTree>,
    /// `vmap_area_root` / `vmap_area_list` under `vmap_area_lock`.
    busy: spin::Mutex<VmapTree>,
    /// `purge_vmap_area_root` / `purge_vmap_area_list` under `purge_vmap_area_lock`.
    purge: spin::Mutex<VmapTree>,
    /// `vmap_purge_lock`: one purge at a time.
    purge_lock: spin::Mutex<()>,
    /// `vmap_lazy_nr`: pages of freed areas waiting for the purge.
    lazy_nr: AtomicU64,
    /// `nr_vmalloc_pages`: pages that vmalloc allocated (VmallocUsed).
    nr_vmalloc_pages: AtomicU64,
    /// `drain_vmap_work` is scheduled.
    drain_pending: AtomicBool,
    /// Counters.
    stats: VmallocStats,
}

impl VmallocGlobals {
    pub(crate) const fn new() -> VmallocGlobals {
        VmallocGlobals {
            cachep: AtomicU64::new(0),
            free: spin::Mutex::new(VmapTree::new(true, "free_vmap_area_lock")),
            busy: spin::Mutex::new(VmapTree::new(false, "vmap_area_lock")),
            purge: spin::Mutex::new(VmapTree::new(false, "purge_vmap_area_lock")),
            purge_lock: spin::Mutex::new(()),
            lazy_nr: AtomicU64::new(0),
            nr_vmalloc_pages: AtomicU64::new(0),
            drain_pending: AtomicBool::new(false),
            stats: VmallocStats {
                pte_set: AtomicU64::new(0),
                pte_cleared: AtomicU64::new(0),
                purges: AtomicU64::new(0),
                purged_areas: AtomicU64::new(0),
                purged_pages: AtomicU64::new(0),
                tlb_flushes: AtomicU64::new(0),
                deferred_frees: AtomicU64::new(0),
                bugs: AtomicU64::new(0),
                failures: AtomicU64::new(0),
            },
        }
    }
}

/// The top of the address space that the free tree covers (`ULONG_MAX`).
const fn ulong_max(profile: Profile) -> u64 {
    match profile {
        Profile::X86_64 => u64::MAX,
        Profile::I386 => u32::MAX as u64,
    }
}

/// The kernel's own lines for the BUGs vmalloc enforces (`mm/vmalloc.c` of v6.6; vunmap's
/// line is confirmed by a 6.8-rc2 oops, the others derived from a 6.6.y copy).
pub(in crate::vmalloc) mod bug_sites {
    /// `BUG_ON(in_interrupt())` in `__get_vm_area_node()`.
    pub const GET_VM_AREA: u32 = 2579;
    /// `BUG_ON(in_nmi())` in `vfree_atomic()`.
    pub const VFREE_ATOMIC: u32 = 2777;
    /// `BUG_ON(in_interrupt())` in `vunmap()`.
    pub const VUNMAP: u32 = 2864;
    /// `BUG_ON(!page)` in `vfree()`'s loop over the page array (counted from the two
    /// lines above in a 6.6 copy whose lines agree with both).
    pub const VFREE_NULL_PAGE: u32 = 2836;
}

impl<P: Platform> Mm<P> {
    /// `vmalloc_init()`: the `vmap_area` cache and the free tree covering the whole address
    /// space (`vmap_init_free_space`); allocations are then limited to their range.
    pub(crate) fn vmalloc_init(&self) -> Result<(), SlabError> {
        let cache = self.kmem_cache_create(
            "vmap_area",
            core::mem::size_of::<VmapArea>(),
            core::mem::align_of::<VmapArea>(),
            SlabFlags::empty(),
            None,
        )?;
        self.vmalloc.cachep.store(cache.0, Relaxed);
        let va = self.alloc_vmap_area_object(Gfp::GFP_KERNEL)?;
        // A fresh slab object of an empty tree: nothing here can be corrupt yet, and a
        // failure would have been reported already.
        if let Ok(node) = self.vmap_area(va) {
            node.va_start.store(1, Relaxed);
            node.va_end.store(ulong_max(self.profile()), Relaxed);
            let mut free = self.vmalloc.free.lock();
            let _ = self.insert_vmap_area(&mut free, va);
        }
        Ok(())
    }

    fn vmap_area_cachep(&self) -> KmemCacheRef {
        KmemCacheRef(self.vmalloc.cachep.load(Relaxed))
    }

    /// A zeroed `vmap_area` object.
    pub(in crate::vmalloc) fn alloc_vmap_area_object(&self, gfp: Gfp) -> Result<u64, SlabError> {
        Ok(self
            .kmem_cache_alloc_caller(
                self.vmap_area_cachep(),
                gfp | Gfp::__GFP_ZERO,
                CallSite::BOOT,
            )?
            .0)
    }

    /// `kmem_cache_free(vmap_area_cachep, va)`. An object that is not live (its node was
    /// freed behind vmalloc's back) is refused and reported by the slab allocator.
    pub(in crate::vmalloc) fn free_vmap_area_object(&self, va: u64) {
        let _ = self.kmem_cache_free(self.vmap_area_cachep(), VirtAddr(va));
    }

    /// vmalloc's counters.
    pub fn vmalloc_stats(&self) -> &VmallocStats {
        &self.vmalloc.stats
    }

    /// `vmalloc_nr_pages()`: pages held by vmalloc allocations (VmallocUsed).
    pub fn vmalloc_nr_pages(&self) -> u64 {
        self.vmalloc.nr_vmalloc_pages.load(Relaxed)
    }

    /// Pages of freed areas waiting for the lazy purge (`vmap_lazy_nr`).
    pub fn vmap_lazy_nr(&self) -> u64 {
        self.vmalloc.lazy_nr.load(Relaxed)
    }

    /// `lazy_max_pages()`: fls(nr_cpus) × 32 MiB worth of pages.
    pub fn lazy_max_pages(&self) -> u64 {
        crate::addr::fls(self.platform().nr_cpus() as u64) as u64 * ((32 << 20) / PAGE_SIZE as u64)
    }

    /// `is_vmalloc_addr()`.
    pub fn is_vmalloc_addr(&self, addr: VirtAddr) -> bool {
        self.layout().is_vmalloc_addr(addr.0)
    }

    // ----- the API ---------------------------------------------------------------

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
    fn vmalloc_node_range_inner(
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
    fn vmalloc_try(
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
    fn get_vm_area_node(
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
    fn place_vmap_area(
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
    fn preload_vmap_area(&self, gfp: Gfp) {
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
    fn vmalloc_area_node(
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
        // init_on_alloc is the page allocator's in the kernel (post_alloc_hook); here the
        // option is the slab's, so vmalloc applies it to its pages itself, as large kmalloc
        // does.
        let init = if self.slab_config().init_on_alloc {
            Gfp::__GFP_ZERO
        } else {
            Gfp::empty()
        };
        let (nr, last_error) =
            self.vm_area_alloc_pages(gfp | init | Gfp::__GFP_NOWARN, order, nr_small, pages);
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
                error: last_error.unwrap_or(AllocError::OrderTooLarge(order)),
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
    fn vm_area_alloc_pages(
        &self,
        gfp: Gfp,
        order: u32,
        nr_pages: u64,
        pages: u64,
    ) -> (u64, Option<AllocError>) {
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
                        self.page_array_set(pages, nr + i, Pfn(pfn.0 + i));
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
    fn alloc_pages_bulk(&self, gfp: Gfp, n: u64, mut store: impl FnMut(u64, Pfn)) -> u64 {
        self.alloc_pages_bulk_fn(gfp | Gfp::__GFP_NOWARN, n as usize, |i, pfn| {
            store(i as u64, Pfn(pfn))
        }) as u64
    }

    /// `vfree(addr)`: free a vmalloc allocation. From interrupt context it is deferred
    /// (`vfree_atomic`); from NMI it is a BUG; NULL is a no-op.
    #[track_caller]
    pub fn vfree(&self, addr: VirtAddr) -> Result<(), VmallocError> {
        self.vfree_nested(addr, 0)
    }

    /// `vfree()` at `depth` levels of page arrays down (`kvfree(vm->pages)` frees a page
    /// array that was itself vmalloc'd).
    fn vfree_nested(&self, addr: VirtAddr, depth: u32) -> Result<(), VmallocError> {
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

    /// The second half of `vfree()`: the pages, the page array and the `vm_struct`. The
    /// array is walked only as far as the (checked) `nr_pages`; an entry that is NULL is
    /// the kernel's `BUG_ON(!page)`, and one that is no `struct page` of `mem_map` the
    /// fault the kernel would take on it: either ends the walk with the rest leaked, as
    /// the kernel's oops would.
    fn release_vm_pages(&self, area: &VmArea, depth: u32) -> Result<(), VmallocError> {
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
                if self.slab_config().init_on_free {
                    // free_pages_prepare()'s init_on_free, applied here as for init_on_alloc.
                    self.clear_pages(pfn.0, 1);
                }
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
    fn free_vm_area(&self, addr: u64) {
        if let Ok(Some(area)) = self.remove_vm_area(VirtAddr(addr)) {
            let _ = self.kfree(area.vm);
        }
    }

    /// `remove_vm_area()`: unlink the busy area holding `addr`, clear its mapping, and
    /// queue its range for the lazy purge; returns (a checked copy of) its `vm_struct`,
    /// or `None` if no busy area with one holds `addr`. The area and its `vm_struct` are
    /// checked before anything is changed: a corrupted one is reported and left as it is.
    fn remove_vm_area(&self, addr: VirtAddr) -> Result<Option<VmArea>, VmallocError> {
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
    fn free_unmap_vmap_area(&self, va: u64) -> Result<(), Corrupt> {
        let node = self.vmap_area(va)?;
        self.vunmap_range_noflush(node.start(), node.end());
        self.free_vmap_area_noflush(va)
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
    fn vmap_count_ok(&self, count: u64) -> Result<(), VmallocError> {
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
    fn vmap_with(
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
    /// flagged `VMAP_RAM` (and kmemlab's `VMAP_BARE`: nothing is mapped), as the kernel flags its `vm_map_ram` vmap blocks (areas without
    /// a `vm_struct`), and is given back lazily with [`Mm::vm_unmap_ram`]. For trace replay.
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
            if size < old_size && (self.slab_config().init_on_free || self.want_init_on_alloc(gfp))
            {
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

    fn want_init_on_alloc(&self, gfp: Gfp) -> bool {
        self.slab_config().init_on_alloc || gfp.contains(Gfp::__GFP_ZERO)
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

    fn walk_vmap_areas(
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

    /// One more step along a tree's list: past its walk limit, the list goes round a
    /// cycle (the kernel's `list_for_each_entry` would never end: a soft lockup).
    pub(in crate::vmalloc) fn list_step(
        &self,
        left: &mut u64,
        tree: &VmapTree,
    ) -> Result<(), Corrupt> {
        if *left == 0 {
            self.vmalloc_stuck(tree.lock_name);
            return Err(Corrupt { addr: tree.first });
        }
        *left -= 1;
        Ok(())
    }

    // ----- helpers ---------------------------------------------------------------

    /// The `vm_struct` at `vm` (a kmalloc object in the direct map): a pointer that
    /// leads nowhere is the kernel's page fault, reported.
    pub(in crate::vmalloc) fn vm_struct(&self, vm: u64) -> Result<&VmStruct, Corrupt> {
        self.kview::<VmStruct>(vm)
            .map_err(|_| self.vmalloc_fault(vm, false))
    }

    /// A copy of the `vm_struct` at `vm`, as it stands.
    pub(in crate::vmalloc) fn vm_area_copy(&self, vm: u64) -> Result<VmArea, Corrupt> {
        let v = self.vm_struct(vm)?;
        Ok(vm_area_of(v, vm, self.site(v.caller.load(Relaxed) as u32)))
    }

    /// The `vm_struct` of the busy area `node`, checked against it: the same start and
    /// size, no more pages than the area holds, a page order vmalloc uses, a requested
    /// size within the area. (kmemlab's own check: the kernel trusts `va->vm`, and a
    /// corrupted size or page count would send its callers far past the area.)
    pub(in crate::vmalloc) fn checked_vm_area(
        &self,
        node: &VmapArea,
        vm: u64,
    ) -> Result<VmArea, Corrupt> {
        let a = self.vm_area_copy(vm)?;
        let usable = a.usable_size();
        let bad = if a.addr.0 != node.start() {
            Some(("addr", a.addr.0))
        } else if a.size != node.size() {
            Some(("size", a.size))
        } else if a.nr_pages > usable >> PAGE_SHIFT {
            Some(("nr_pages", a.nr_pages))
        } else if a.page_order != 0 && a.page_order != PMD_SHIFT - PAGE_SHIFT {
            Some(("page_order", a.page_order as u64))
        } else if a.requested_size > usable {
            Some(("requested_size", a.requested_size))
        } else {
            None
        };
        match bad {
            Some((field, value)) => Err(self.vm_struct_corrupted(vm, field, value)),
            None => Ok(a),
        }
    }

    /// A busy area must be a non-empty, page-aligned range of the vmalloc area (every
    /// busy area is made there); anything else is reported as corruption.
    pub(in crate::vmalloc) fn check_busy_range(
        &self,
        va: u64,
        node: &VmapArea,
    ) -> Result<(), Corrupt> {
        let (start, end) = (node.start(), node.end());
        let page = PAGE_SIZE as u64 - 1;
        if start < end
            && start >= self.layout().vmalloc_start
            && end <= self.layout().vmalloc_end
            && start & page == 0
            && end & page == 0
        {
            return Ok(());
        }
        Err(self.vmap_area_corrupted(va, start, end))
    }

    /// Any area must be a non-empty range (the free tree spans the whole address space).
    fn check_range(&self, va: u64, node: &VmapArea) -> Result<(), Corrupt> {
        if node.start() < node.end() {
            return Ok(());
        }
        Err(self.vmap_area_corrupted(va, node.start(), node.end()))
    }

    /// kmemlab's report of a `vm_struct` that disagrees with its area (in the style of
    /// vmalloc's own messages; the kernel has no such check).
    fn vm_struct_corrupted(&self, vm: u64, field: &str, value: u64) -> Corrupt {
        self.vmalloc.stats.bugs.fetch_add(1, Relaxed);
        self.printk(format_args!(
            "vmalloc: corrupted vm_struct {vm:#018x}: {field} {value:#x} does not match its vmap_area; refusing it"
        ));
        Corrupt { addr: vm }
    }

    /// kmemlab's report of a `vmap_area` whose range is impossible.
    fn vmap_area_corrupted(&self, va: u64, start: u64, end: u64) -> Corrupt {
        self.vmalloc.stats.bugs.fetch_add(1, Relaxed);
        self.printk(format_args!(
            "vmalloc: corrupted vmap_area {va:#018x}: range 0x{start:x}-0x{end:x} is not a vmalloc area; refusing it"
        ));
        Corrupt { addr: va }
    }

    /// What the CPU does when kernel code dereferences `addr` and it is not mapped RAM:
    /// a general protection fault for a non-canonical address, else the page-fault oops.
    pub(in crate::vmalloc) fn vmalloc_fault(&self, addr: u64, write: bool) -> Corrupt {
        self.vmalloc.stats.bugs.fetch_add(1, Relaxed);
        self.kernel_fault(addr, write);
        Corrupt { addr }
    }

    /// The oops of a kernel access to `addr` that has no RAM behind it: a general
    /// protection fault for a non-canonical address (x86_64), else the page fault.
    pub(crate) fn kernel_fault(&self, addr: u64, write: bool) {
        if self.paging().is_canonical(addr) {
            self.bad_page_fault(addr, write);
        } else {
            self.general_protection_fault(addr);
        }
    }

    /// A walk of a vmalloc tree or list that goes round a cycle: the kernel would spin
    /// there for ever holding `lock`, and the watchdog reports the soft lockup.
    pub(in crate::vmalloc) fn vmalloc_stuck(&self, lock: &str) {
        self.vmalloc.stats.bugs.fetch_add(1, Relaxed);
        self.soft_lockup(lock);
    }

    /// `sizeof(struct page *)` on this profile.
    fn pointer_size(&self) -> u64 {
        match self.profile() {
            Profile::X86_64 => 8,
            Profile::I386 => 4,
        }
    }

    /// The physical address behind a kernel virtual address: the direct map, or a walk of
    /// the page tables for anything else (how kernel code reaches vmalloc memory).
    pub fn kernel_virt_to_phys(&self, va: u64) -> Option<u64> {
        if let Some(phys) = self.layout().virt_to_phys(va) {
            return Some(phys);
        }
        self.kernel_translate(va).map(|m| m.phys.0)
    }

    /// Entry `i` of a page array as the raw `struct page *` word; an entry that cannot
    /// be read is the kernel's page fault, reported.
    fn page_array_word(&self, pages: u64, i: u64) -> Result<u64, Corrupt> {
        let at = pages.wrapping_add(i.wrapping_mul(self.pointer_size()));
        self.read_kernel_word(at)
            .ok_or_else(|| self.vmalloc_fault(at, false))
    }

    /// The PFN of a `struct page *`, if it is a descriptor of `mem_map`.
    fn struct_page_pfn(&self, word: u64) -> Option<Pfn> {
        self.page_at_struct_address(VirtAddr(word))
            .and_then(|page| self.mem_map().pfn_of(page))
    }

    /// Entry `i` of a page array, as a PFN. A word that is no `struct page *` of
    /// `mem_map` would fault when the kernel dereferenced it: reported so.
    fn page_array_get(&self, pages: u64, i: u64) -> Result<Pfn, Corrupt> {
        let word = self.page_array_word(pages, i)?;
        self.struct_page_pfn(word)
            .ok_or_else(|| self.vmalloc_fault(word, false))
    }

    /// Entry `i` of a page array, as a PFN, or `None`; nothing is reported (the checker).
    pub(in crate::vmalloc) fn page_array_peek(&self, pages: u64, i: u64) -> Option<Pfn> {
        let at = pages.checked_add(i.checked_mul(self.pointer_size())?)?;
        self.struct_page_pfn(self.read_kernel_word(at)?)
    }

    /// Store `pfn`'s `struct page *` as entry `i` of a page array (one just allocated).
    fn page_array_set(&self, pages: u64, i: u64, pfn: Pfn) {
        let value = self.struct_page_address(self.mem_map().page(pfn.0)).0;
        self.write_kernel_word(pages + i * self.pointer_size(), value);
    }

    /// The RAM word (pointer-sized, naturally aligned, so within one page) at kernel
    /// address `va`, as an atomic of that size.
    fn kernel_word(&self, va: u64) -> Option<KernelWord<'_>> {
        if !va.is_multiple_of(self.pointer_size()) {
            return None;
        }
        let phys = self.kernel_virt_to_phys(va)?;
        match self.profile() {
            Profile::X86_64 => self.ram().atomic_u64(phys).ok().map(KernelWord::Long),
            Profile::I386 => self.ram().atomic_u32(phys).ok().map(KernelWord::Int),
        }
    }

    /// Write a pointer-sized word at kernel address `va` (the `llist_node` that
    /// `vfree_atomic` keeps in the freed memory itself).
    pub(in crate::vmalloc) fn write_kernel_word(&self, va: u64, value: u64) -> bool {
        match self.kernel_word(va) {
            Some(KernelWord::Long(w)) => w.store(value, Relaxed),
            Some(KernelWord::Int(w)) => w.store(value as u32, Relaxed),
            None => return false,
        }
        true
    }

    /// Read a pointer-sized word at kernel address `va`.
    pub(in crate::vmalloc) fn read_kernel_word(&self, va: u64) -> Option<u64> {
        match self.kernel_word(va)? {
            KernelWord::Long(w) => Some(w.load(Relaxed)),
            KernelWord::Int(w) => Some(w.load(Relaxed) as u64),
        }
    }

    /// Copy `len` bytes between vmalloc (or direct-map) addresses, page by page; an
    /// address that is not mapped is the kernel's page fault, reported, and the copy
    /// stops there.
    fn vmalloc_copy(&self, dst: u64, src: u64, len: u64) -> Result<(), Corrupt> {
        let mut buf = [0u8; 256];
        let mut done = 0;
        while done < len {
            let (from, to) = (src.wrapping_add(done), dst.wrapping_add(done));
            let n = (len - done).min(buf.len() as u64) as usize;
            let n = n.min(bytes_to_page_end(from)).min(bytes_to_page_end(to));
            if !self.kernel_read_bytes(from, &mut buf[..n]) {
                return Err(self.vmalloc_fault(from, false));
            }
            if !self.kernel_write_bytes(to, &buf[..n]) {
                return Err(self.vmalloc_fault(to, true));
            }
            done += n as u64;
        }
        Ok(())
    }

    /// Fill `len` bytes at a vmalloc address with `byte` (stopping, reported, at an
    /// address that is not mapped).
    fn vmalloc_fill(&self, addr: u64, byte: u8, len: u64) -> Result<(), Corrupt> {
        let buf = [byte; 256];
        let mut done = 0;
        while done < len {
            let at = addr.wrapping_add(done);
            let n = ((len - done).min(buf.len() as u64) as usize).min(bytes_to_page_end(at));
            if !self.kernel_write_bytes(at, &buf[..n]) {
                return Err(self.vmalloc_fault(at, true));
            }
            done += n as u64;
        }
        Ok(())
    }

    /// Read bytes (within one page) at a kernel virtual address.
    fn kernel_read_bytes(&self, va: u64, buf: &mut [u8]) -> bool {
        self.kernel_virt_to_phys(va)
            .is_some_and(|phys| self.ram().read_bytes(phys, buf).is_ok())
    }

    /// Write bytes (within one page) at a kernel virtual address.
    fn kernel_write_bytes(&self, va: u64, bytes: &[u8]) -> bool {
        self.kernel_virt_to_phys(va)
            .is_some_and(|phys| self.ram().write_bytes(phys, bytes).is_ok())
    }

    /// The kernel's BUG report for a vmalloc call in interrupt context.
    fn vmalloc_bug_interrupt(&self, line: u32, what: &'static str) -> VmallocError {
        self.vmalloc_bug(line);
        VmallocError::InInterrupt(what)
    }

    /// `BUG()` in `mm/vmalloc.c`: `kernel BUG at mm/vmalloc.c:<line>!` and the oops.
    pub(in crate::vmalloc) fn vmalloc_bug(&self, line: u32) {
        self.vmalloc.stats.bugs.fetch_add(1, Relaxed);
        self.kernel_bug("mm/vmalloc.c", line);
    }

    /// A kernel `WARN` from vmalloc, counted.
    fn vmalloc_warn(&self, site: crate::report::KernelSite, args: fmt::Arguments<'_>) {
        self.vmalloc.stats.bugs.fetch_add(1, Relaxed);
        crate::vmstat::VmEvents::add(&self.events().warn, 1);
        crate::report::warn!(self, true, site, "{args}");
    }

    /// A `WARN_ON_ONCE` of mm/vmalloc.c at `site`: counted every time, printed once.
    fn vmalloc_warn_once(&self, site: crate::report::KernelSite) {
        self.vmalloc.stats.bugs.fetch_add(1, Relaxed);
        crate::vmstat::VmEvents::add(&self.events().warn, 1);
        crate::report::warn_on_once!(self, true, site);
    }

    /// `warn_alloc(gfp, NULL, fmt, ...)`: the allocation-failure line, unless `__GFP_NOWARN`.
    fn vmalloc_warn_alloc(&self, gfp: Gfp, args: fmt::Arguments<'_>) {
        if gfp.contains(Gfp::__GFP_NOWARN) {
            return;
        }
        self.printk(format_args!(
            "{}: {}, mode:{:?}, nodemask=(null),cpuset=/,mems_allowed=0",
            self.platform().current_comm(),
            args,
            gfp
        ));
    }
}

/// A pointer-sized word of RAM.
enum KernelWord<'a> {
    /// x86_64's 8 bytes.
    Long(&'a AtomicU64),
    /// i386's 4 bytes.
    Int(&'a AtomicU32),
}

/// A `vm_struct` just set up by `__get_vm_area_node`, with what its caller needs (kept
/// here rather than read back from RAM).
struct NewArea {
    /// The `vm_struct`.
    vm: u64,
    /// The area's first address.
    addr: u64,
    /// Its size without the guard page.
    usable: u64,
}

/// How deep `vfree` follows page arrays that were themselves vmalloc'd: an array of N
/// pages needs 8N bytes, so even 2^40 bytes of RAM need only 3 levels.
const MAX_PAGE_ARRAY_NESTING: u32 = 4;

/// A copy of `v` (at `vm`), for callers.
fn vm_area_of(v: &VmStruct, vm: u64, caller: Option<CallSite>) -> VmArea {
    VmArea {
        addr: VirtAddr(v.addr.load(Relaxed)),
        size: v.size.load(Relaxed),
        flags: VmFlags::from_bits_truncate(v.flags.load(Relaxed)),
        nr_pages: v.nr_pages.load(Relaxed) as u64,
        page_order: v.page_order.load(Relaxed),
        pages: VirtAddr(v.pages.load(Relaxed)),
        requested_size: v.requested_size.load(Relaxed),
        caller,
        vm: VirtAddr(vm),
    }
}

/// `ALIGN(x, align)`, or `None` past the top of the address space.
fn checked_align_up(x: u64, align: u64) -> Option<u64> {
    Some(x.checked_add(align - 1)? & !(align - 1))
}

/// Why `vmap` refuses a page.
fn bad_vmap_page(pfn: Pfn) -> VmallocError {
    VmallocError::BadArgs(if pfn.0 == 0 {
        "vmap: NULL page"
    } else {
        "vmap: a page outside mem_map"
    })
}

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

/// `GFP_RECLAIM_MASK` (`mm/internal.h`): the flags that say how hard to try, passed on to
/// the allocations vmalloc makes for itself.
pub const GFP_RECLAIM_MASK: Gfp = Gfp::__GFP_RECLAIM
    .union(Gfp::__GFP_HIGH)
    .union(Gfp::__GFP_IO)
    .union(Gfp::__GFP_FS)
    .union(Gfp::__GFP_NOWARN)
    .union(Gfp::__GFP_RETRY_MAYFAIL)
    .union(Gfp::__GFP_NOFAIL)
    .union(Gfp::__GFP_NORETRY)
    .union(Gfp::__GFP_MEMALLOC)
    .union(Gfp::__GFP_NOMEMALLOC);

fn bytes_to_page_end(va: u64) -> usize {
    PAGE_SIZE - (va as usize & (PAGE_SIZE - 1))
}
