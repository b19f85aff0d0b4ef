//! The whole-machine invariant checker: [`Mm::check`] runs each subsystem's checker in
//! order, bottom up, and stops at the first broken invariant:
//!
//! 1. the page allocator (`crates/mm/src/page_alloc/check.rs`): free lists, per-CPU
//!    lists, one walk of `mem_map` in which every page is covered exactly once, per-zone
//!    totals, the file-page counters. The walk hands each allocated block to the slab's
//!    tally on the way (one walk serves both checkers), without the page allocator
//!    knowing what a slab is;
//! 2. the slab allocator (`crates/mm/src/slab/check.rs`): every cache, node, slab and
//!    freelist, and the slab pages counted in `mem_map` against the node counters;
//! 3. vmalloc (`crates/mm/src/vmalloc/check.rs`): trees, lists, `vm_struct`s, the
//!    page tables under the vmalloc range;
//! 4. the DMA layer (`crates/mm/src/dma/`): swiotlb slots and dma-debug entries.
//!
//! [`CheckError`] is the checkers' shared vocabulary. Call [`Mm::check`] when no other CPU
//! is inside the allocators (tests do, after every step; the shell's `check` command).

use core::fmt;

use crate::addr::Pfn;
use crate::dma::DmaCheckError;
use crate::page_alloc::check::CheckReport;
use crate::platform::Platform;
use crate::slab::check::SlabTally;
use crate::vmalloc::VmallocCheckError;
use crate::Mm;

impl<P: Platform> Mm<P> {
    /// Verify every invariant of the machine's allocators, subsystem by subsystem (see
    /// the module docs); returns what the page allocator's walk counted.
    pub fn check(&self) -> Result<CheckReport, CheckError> {
        let mut slabs = SlabTally::default();
        let report =
            self.check_page_alloc(|pfn, page, pages| slabs.count(self, pfn, page, pages))?;
        self.check_slabs(&slabs)?;
        self.check_vmalloc(true).map_err(CheckError::Vmalloc)?;
        self.dma_check().map_err(CheckError::Dma)?;
        Ok(report)
    }

    /// The cheap part of [`Mm::check`] for vmalloc: its trees, lists, `vm_struct`s and
    /// counters, without the two whole-machine walks (`mem_map` and the page tables under
    /// the vmalloc range). For tests that check after every step and run the full
    /// [`Mm::check`] every so often.
    pub fn check_vmalloc_trees(&self) -> Result<(), CheckError> {
        self.check_vmalloc(false).map_err(CheckError::Vmalloc)
    }
}

/// A broken invariant, found by one of the subsystems' checkers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CheckError {
    /// A free block whose PFN is not a multiple of its size.
    Misaligned {
        /// First PFN of the block.
        pfn: Pfn,
        /// Its order.
        order: u32,
    },
    /// A listed block that is not entirely inside the zone of its list.
    WrongZone {
        /// First PFN.
        pfn: Pfn,
        /// The zone whose list holds it.
        zone: &'static str,
    },
    /// A listed block whose page state disagrees with its list.
    BadListedPage {
        /// First PFN.
        pfn: Pfn,
        /// What is wrong.
        what: &'static str,
    },
    /// A list with a broken link (outside `mem_map`, or not pointing back), or one that
    /// does not end (a cycle) or holds more than can exist.
    ListCorrupt {
        /// The zone.
        zone: &'static str,
        /// The order.
        order: u32,
    },
    /// `nr_free` of an order disagrees with the lists.
    NrFreeMismatch {
        /// The zone.
        zone: &'static str,
        /// The order.
        order: u32,
        /// Blocks found on the lists.
        listed: u64,
        /// `nr_free`.
        recorded: u64,
    },
    /// kmemlab's per-migrate-type count of an order (`FreeArea::nr_free_type`) disagrees
    /// with that type's list.
    NrFreeTypeMismatch {
        /// The zone.
        zone: &'static str,
        /// The order.
        order: u32,
        /// The migrate type's name.
        migratetype: &'static str,
        /// Blocks found on the list.
        listed: u64,
        /// The counter.
        recorded: u64,
    },
    /// `NR_FREE_PAGES` disagrees with the free blocks.
    FreePagesMismatch {
        /// The zone.
        zone: &'static str,
        /// Pages in free blocks.
        counted: u64,
        /// `NR_FREE_PAGES`.
        recorded: u64,
    },
    /// A per-CPU list's count disagrees with its lists.
    PcpCountMismatch {
        /// The CPU.
        cpu: usize,
        /// The zone.
        zone: &'static str,
        /// Pages on the lists.
        counted: u64,
        /// `pcp->count`.
        recorded: u64,
    },
    /// A page in `mem_map` in a state no invariant allows.
    BadPage {
        /// The PFN.
        pfn: Pfn,
        /// What is wrong.
        what: &'static str,
    },
    /// Buddy heads found in `mem_map` that are on no free list (or the reverse).
    UnlistedBuddy {
        /// The zone.
        zone: &'static str,
        /// Buddy heads in `mem_map`.
        in_mem_map: u64,
        /// Blocks on the lists.
        on_lists: u64,
    },
    /// A slab allocator invariant.
    Slab {
        /// The cache.
        cache: crate::slab::CacheName,
        /// The slab's PFN, `None` when not about one slab (printed as 0).
        pfn: Option<Pfn>,
        /// What is wrong.
        what: &'static str,
    },
    /// A vmalloc invariant ([`crate::vmalloc::check`]).
    Vmalloc(VmallocCheckError),
    /// A DMA-layer invariant (swiotlb slots, dma-debug entries).
    Dma(DmaCheckError),
    /// A node's file-page counter disagrees with the page-cache pages found.
    PageStateMismatch {
        /// Which counter.
        what: &'static str,
        /// Page-cache pages found.
        counted: u64,
        /// The counter.
        recorded: u64,
    },
    /// The page-cache pages found in a zone differ from the zone's file LRU counters.
    ZoneFilePagesMismatch {
        /// The zone.
        zone: &'static str,
        /// Pages the page cache holds in the zone.
        found: u64,
        /// `nr_zone_inactive_file + nr_zone_active_file`.
        recorded: u64,
    },
    /// A zone's free + per-CPU + allocated pages differ from its managed pages.
    ZoneTotalMismatch {
        /// The zone.
        zone: &'static str,
        /// Free + per-CPU + allocated.
        counted: u64,
        /// `managed_pages`.
        managed: u64,
    },
}

impl fmt::Display for CheckError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CheckError::Misaligned { pfn, order } => write!(f, "free block at pfn {pfn} misaligned for order {order}"),
            CheckError::WrongZone { pfn, zone } => write!(f, "free block at pfn {pfn} outside zone {zone}"),
            CheckError::BadListedPage { pfn, what } => write!(f, "listed block at pfn {pfn}: {what}"),
            CheckError::ListCorrupt { zone, order } => write!(f, "zone {zone} order {order}: list corrupt (a link outside mem_map, not pointing back, or a cycle)"),
            CheckError::NrFreeMismatch { zone, order, listed, recorded } => write!(
                f,
                "zone {zone} order {order}: {listed} blocks listed, nr_free says {recorded}"
            ),
            CheckError::NrFreeTypeMismatch { zone, order, migratetype, listed, recorded } => write!(
                f,
                "zone {zone} order {order} type {migratetype}: {listed} blocks listed, the per-type count says {recorded}"
            ),
            CheckError::FreePagesMismatch { zone, counted, recorded } => write!(
                f,
                "zone {zone}: {counted} pages in free blocks, NR_FREE_PAGES says {recorded}"
            ),
            CheckError::PcpCountMismatch { cpu, zone, counted, recorded } => write!(
                f,
                "cpu {cpu} zone {zone}: {counted} pages on per-CPU lists, count says {recorded}"
            ),
            CheckError::BadPage { pfn, what } => write!(f, "pfn {pfn}: {what}"),
            CheckError::UnlistedBuddy { zone, in_mem_map, on_lists } => write!(
                f,
                "zone {zone}: {in_mem_map} buddy heads in mem_map but {on_lists} blocks on free lists"
            ),
            CheckError::Slab { cache, pfn, what } => write!(f, "slab cache {cache}, slab pfn {:#x}: {what}", pfn.map_or(0, Pfn::raw)),
            CheckError::Vmalloc(e) => write!(f, "{e}"),
            CheckError::Dma(e) => write!(f, "{e}"),
            CheckError::PageStateMismatch { what, counted, recorded } => write!(
                f,
                "{what}: counted {counted} pages, the counter says {recorded}"
            ),
            CheckError::ZoneFilePagesMismatch { zone, found, recorded } => write!(
                f,
                "zone {zone}: the page cache holds {found} pages here, its file LRU counters say {recorded}"
            ),
            CheckError::ZoneTotalMismatch { zone, counted, managed } => write!(
                f,
                "zone {zone}: free + per-CPU + allocated = {counted} pages, managed = {managed}"
            ),
        }
    }
}

impl core::error::Error for CheckError {}
