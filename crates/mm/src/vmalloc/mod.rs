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
//!
//! # Where to start reading
//!
//! `api.rs` holds the API: `vmalloc()` and its family lead to `__vmalloc_node_range()`
//! in `node.rs` (the area-node allocation): `get_vm_area_node()` takes a range with
//! `alloc_vmap_area()` (the lowest fit in the free tree: `area.rs`, over the augmented
//! red-black tree of `rbtree.rs`) and a `vm_struct`, then `vmalloc_area_node()` fills
//! the page array and maps it (`map.rs`). `vfree()` (`api.rs`) takes the area out with
//! `remove_vm_area()` and frees its pages with `release_vm_pages()` (`node.rs`); the
//! range waits for the lazy purge (`purge.rs`). `helpers.rs` reads `vm_struct`s, page
//! arrays and kernel words back from RAM and makes vmalloc's reports; `check.rs` is the
//! checker and `query.rs` answers page-table questions for tools.
//!
//! # Locks
//!
//! The four of 6.6's `mm/vmalloc.c` (before 6.9 split the trees per node), in
//! [`VmallocGlobals`], outer to inner:
//!
//! 1. `vmap_purge_lock` (`purge_lock`; a mutex in the kernel): one purge at a time
//!    (`purge_vmap_area_lazy`). Under it the purge takes `purge_vmap_area_lock` just to
//!    detach the list, flushes the TLB with no spinlock held, then takes
//!    `free_vmap_area_lock` to merge the areas back.
//! 2. `free_vmap_area_lock` (`free`): the free tree. Taken alone by `alloc_vmap_area`,
//!    whose spare node for a split is preloaded before (`preload_vmap_area`), or under
//!    `vmap_purge_lock`.
//! 3. `vmap_area_lock` (`busy`): the busy tree. Taken alone; under it
//!    `setup_vmalloc_vm` records the caller in the slab's call-site table (a leaf).
//! 4. `purge_vmap_area_lock` (`purge`): the purge list; taken alone and briefly.
//!
//! The checker takes `free`, `busy` and `purge` together, in that order; no other path
//! holds two of the three. No vmalloc spinlock is held while vmalloc allocates (kmalloc,
//! the page allocator): the spare node for a split is preloaded. Merging in a tree frees
//! the merged `vmap_area` objects to their slab cache under that tree's lock, as the
//! kernel does: the slab's locks are below vmalloc's.

mod api;
mod area;
mod check;
mod helpers;
mod map;
mod node;
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

use crate::addr::{VirtAddr, PAGE_SIZE};
use crate::arch::Profile;
use crate::context::SleepInAtomic;
use crate::gfp::Gfp;
use crate::page_alloc::PageAllocError;
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
        error: PageAllocError,
    },
    /// A page-table page could not be allocated.
    PageTable(PageAllocError),
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
}

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
