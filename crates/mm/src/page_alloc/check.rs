//! The invariant checker: every free block aligned to its order, on exactly one free list
//! of the right order, zone and migrate type; per-CPU lists holding what they count;
//! every page of `mem_map` covered exactly once by a free block, a per-CPU block, an
//! allocation or a reservation; per-zone counts that add up to the machine; and the page
//! cache's own pages, counted, against the file-page counters.
//!
//! Call it when no other CPU is inside the allocator (tests do, after every step).

use crate::addr::Pfn;
use crate::check::CheckError;
use crate::mem::RamArray;
use crate::mm_types::{
    Page, PG_BUDDY, PG_HEAD, PG_LARGE_KMALLOC, PG_PCP, PG_RESERVED, PG_SLAB, PG_TAIL,
};
use crate::page_alloc::pcp::{pindex_to_order, NR_PCP_LISTS};
use crate::page_alloc::{MAX_NR_ZONES, MIGRATE_TYPES};
use crate::platform::Platform;
use crate::Mm;

/// What the checker counted, in pages.
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq)]
pub struct CheckReport {
    /// In buddy free blocks.
    pub free: u64,
    /// On per-CPU lists.
    pub pcp: u64,
    /// Allocated.
    pub allocated: u64,
    /// Reserved (boot metadata, firmware, holes).
    pub reserved: u64,
    /// Every page of `mem_map`.
    pub total: u64,
}

#[derive(Default, Clone, Copy)]
struct ZoneCount {
    buddy_blocks: u64,
    free: u64,
    pcp: u64,
    allocated: u64,
}

/// What the one walk of `mem_map` gathers: the page counts; and each allocated block is
/// handed to `on_allocated` (the whole-machine checker counts the slab pages with it, so
/// that one walk serves both the page allocator's checker and the slab's).
struct MemMapWalk<F> {
    report: CheckReport,
    counts: [ZoneCount; MAX_NR_ZONES],
    on_allocated: F,
    known_zero: KnownZero,
}

/// Words of the [`KnownZero`] window: 4,096 pages of `mem_map` (16 MiB, the descriptors
/// of about 1.6 GiB of RAM at 40 bytes each), in one question to the platform.
const KNOWN_ZERO_WORDS: usize = 64;

/// The pages of RAM the platform knows to read as zero ([`Hardware::known_zero_ram`]),
/// asked for a window at a time as the walk of `mem_map` moves up through RAM: the
/// descriptors of free blocks' tails, which nothing wrote since boot, are passed without
/// being read (on a 256 GiB machine they are 2.5 GiB of zeroes).
///
/// [`Hardware::known_zero_ram`]: crate::Hardware::known_zero_ram
struct KnownZero {
    /// Physical address of the window's first page.
    start: u64,
    /// Pages the platform answered for (0: none yet, or it cannot tell).
    pages: u64,
    map: [u64; KNOWN_ZERO_WORDS],
    /// The platform answered for no page once: not asked again in this walk.
    cannot_tell: bool,
}

impl KnownZero {
    const EMPTY: KnownZero = KnownZero {
        start: 0,
        pages: 0,
        map: [0; KNOWN_ZERO_WORDS],
        cannot_tell: false,
    };

    /// Whether the page at `phys` (page-aligned) is known to read as zero, asking the
    /// platform for the window from it when it lies outside the one held.
    fn page<H: crate::Hardware>(&mut self, hw: &H, phys: u64) -> bool {
        let page = crate::addr::PAGE_SIZE as u64;
        let index = |w: &KnownZero| phys.wrapping_sub(w.start) / page;
        if self.cannot_tell {
            return false;
        }
        if phys < self.start || index(self) >= self.pages {
            self.start = phys;
            let answered = hw.known_zero_ram(crate::addr::PhysAddr(phys), &mut self.map);
            self.pages = answered.min(64 * KNOWN_ZERO_WORDS as u64);
            self.cannot_tell = self.pages == 0;
        }
        let i = index(self);
        i < self.pages && self.map[(i / 64) as usize] & (1 << (i % 64)) != 0
    }
}

/// Pages per run of the `mem_map` walk: a `MAX_PAGE_ORDER` block's, so that no block
/// (at most that order, aligned to its order, which the walk checks) crosses a run, and
/// no run crosses a memory section.
const RUN_PAGES: u64 = 1 << crate::addr::MAX_PAGE_ORDER;

impl<P: Platform> Mm<P> {
    /// Verify every invariant of the page allocator (see the module docs), handing each
    /// allocated block met in the walk of `mem_map` to `on_allocated(pfn, head, pages)`.
    /// Run by [`Mm::check`] (`crates/mm/src/check.rs`).
    pub(crate) fn check_page_alloc(
        &self,
        on_allocated: impl FnMut(Pfn, &Page, u64),
    ) -> Result<CheckReport, CheckError> {
        let mut listed_blocks = [0u64; MAX_NR_ZONES];
        for zone in self.page_alloc.zones.iter() {
            listed_blocks[zone.idx] = self.check_free_lists(zone)?;
        }
        self.check_pcp_lists()?;
        let walk = self.check_mem_map(on_allocated)?;
        let (report, counts) = (walk.report, walk.counts);
        for zone in self.page_alloc.zones.iter() {
            let c = counts[zone.idx];
            if c.buddy_blocks != listed_blocks[zone.idx] {
                return Err(CheckError::UnlistedBuddy {
                    zone: zone.name(),
                    in_mem_map: c.buddy_blocks,
                    on_lists: listed_blocks[zone.idx],
                });
            }
            let counted = c.free + c.pcp + c.allocated;
            if counted != zone.managed_pages {
                return Err(CheckError::ZoneTotalMismatch {
                    zone: zone.name(),
                    counted,
                    managed: zone.managed_pages,
                });
            }
        }
        self.check_page_states()?;
        Ok(report)
    }

    /// The file-page counters against the page cache's own pages: every page a shrinker
    /// walks as a file page ([`crate::Shrinker::for_each_file_page`]) must be an
    /// allocated order-0 page, and the pages found in each zone must be what the zone's
    /// file LRU counters say, their sum what the node's say (`NR_FILE_PAGES`: kmemlab's
    /// page cache has no pages off the LRU). The counters are kept by
    /// [`Mm::account_page_cache`]; the pages are counted here from the cache's lists and
    /// `mem_map`, so a page added or dropped without its accounting shows.
    fn check_page_states(&self) -> Result<(), CheckError> {
        use crate::vmstat::{NodeStatItem as N, ZoneStatItem as Z};
        let mut found = [0u64; MAX_NR_ZONES];
        let mut bad = None;
        self.platform.for_each_shrinker(&mut |s| {
            s.for_each_file_page(&mut |pfn| {
                if bad.is_some() {
                    return;
                }
                match self.file_page_zone(pfn) {
                    Ok(idx) => found[idx] += 1,
                    Err(e) => bad = Some(e),
                }
            });
        });
        if let Some(e) = bad {
            return Err(e);
        }
        for zone in self.page_alloc.zones.iter() {
            let recorded =
                zone.page_state(Z::NrZoneInactiveFile) + zone.page_state(Z::NrZoneActiveFile);
            if found[zone.idx] != recorded {
                return Err(CheckError::ZoneFilePagesMismatch {
                    zone: zone.name(),
                    found: found[zone.idx],
                    recorded,
                });
            }
        }
        let total: u64 = found.iter().sum();
        let node = [
            (
                "page-cache pages found vs nr_inactive_file + nr_active_file",
                self.node_page_state(N::NrInactiveFile) + self.node_page_state(N::NrActiveFile),
            ),
            (
                "page-cache pages found vs nr_file_pages",
                self.node_page_state(N::NrFilePages),
            ),
        ];
        for (what, recorded) in node {
            if total != recorded {
                return Err(CheckError::PageStateMismatch {
                    what,
                    counted: total,
                    recorded,
                });
            }
        }
        Ok(())
    }

    /// The zone index of a page-cache page, which must be an allocated order-0 page that
    /// is no slab, large kmalloc or compound page.
    fn file_page_zone(&self, pfn: Pfn) -> Result<usize, CheckError> {
        let bad = |what| CheckError::BadPage { pfn, what };
        if !self.mem_map.contains(pfn) {
            return Err(bad("a page-cache page outside mem_map"));
        }
        let zone = self
            .zone_of_pfn(pfn)
            .ok_or(bad("a page-cache page outside every zone"))?;
        let page = self.mem_map.page(pfn);
        let kinds =
            PG_RESERVED | PG_BUDDY | PG_PCP | PG_HEAD | PG_TAIL | PG_SLAB | PG_LARGE_KMALLOC;
        if page.flags() & kinds != 0 || page.order() != 0 || page.refcount() == 0 {
            return Err(bad(
                "a page-cache page that is not an allocated order-0 page",
            ));
        }
        Ok(zone.idx)
    }

    /// Walk one zone's lists; return the number of blocks listed.
    fn check_free_lists(&self, zone: &crate::page_alloc::Zone) -> Result<u64, CheckError> {
        let area = zone.free_area.lock_irqsave(&self.platform);
        let (mut blocks, mut pages) = (0, 0);
        for order in 0..crate::addr::NR_PAGE_ORDERS as u32 {
            let mut listed = 0;
            let mut listed_per_type = [0; MIGRATE_TYPES];
            for (mt, listed_type) in listed_per_type.iter_mut().enumerate() {
                let list = &area.free_list[order as usize][mt];
                for pfn in list.iter_checked(&self.mem_map, zone.spanned_pages) {
                    let pfn = pfn.map_err(|_| CheckError::ListCorrupt {
                        zone: zone.name(),
                        order,
                    })?;
                    self.check_listed_block(zone, pfn, order, mt)?;
                    *listed_type += 1;
                }
                listed += *listed_type;
            }
            if listed != area.nr_free[order as usize] {
                return Err(CheckError::NrFreeMismatch {
                    zone: zone.name(),
                    order,
                    listed,
                    recorded: area.nr_free[order as usize],
                });
            }
            check_per_type_counts(zone, order, &listed_per_type, &area.nr_free_type)?;
            blocks += listed;
            pages += listed << order;
        }
        if pages != zone.free_pages() {
            return Err(CheckError::FreePagesMismatch {
                zone: zone.name(),
                counted: pages,
                recorded: zone.free_pages(),
            });
        }
        Ok(blocks)
    }

    fn check_listed_block(
        &self,
        zone: &crate::page_alloc::Zone,
        pfn: Pfn,
        order: u32,
        mt: usize,
    ) -> Result<(), CheckError> {
        if !pfn.is_aligned(order) {
            return Err(CheckError::Misaligned { pfn, order });
        }
        if !zone.spans(pfn) || !zone.spans(pfn + ((1 << order) - 1)) {
            return Err(CheckError::WrongZone {
                pfn,
                zone: zone.name(),
            });
        }
        let page = self.mem_map.page(pfn);
        let what = if !page.is_buddy() {
            Some("on a free list but not PageBuddy")
        } else if page.order() != order {
            Some("buddy order differs from its list's order")
        } else if page.pcp_migratetype() as usize != mt {
            Some("recorded migrate type differs from its list's")
        } else {
            None
        };
        match what {
            Some(what) => Err(CheckError::BadListedPage { pfn, what }),
            None => Ok(()),
        }
    }

    fn check_pcp_lists(&self) -> Result<(), CheckError> {
        for cpu in 0..self.percpu.nr_cpus() {
            for zone in self.page_alloc.zones.iter() {
                let pcp = &self.percpu.get(cpu).pcp[zone.idx];
                self.spin_lock(&pcp.lock, "pcp->lock");
                let result = self.check_one_pcp(cpu, zone, pcp);
                pcp.lock.unlock();
                result?;
            }
        }
        Ok(())
    }

    fn check_one_pcp(
        &self,
        cpu: usize,
        zone: &crate::page_alloc::Zone,
        pcp: &crate::page_alloc::PerCpuPages,
    ) -> Result<(), CheckError> {
        let mut counted = 0u64;
        for pindex in 0..NR_PCP_LISTS {
            let order = pindex_to_order(pindex, self.pageblock_order());
            for pfn in pcp.lists[pindex].iter_checked(&self.mem_map, zone.spanned_pages) {
                let pfn = pfn.map_err(|_| CheckError::ListCorrupt {
                    zone: zone.name(),
                    order,
                })?;
                let page = self.mem_map.page(pfn);
                if page.flags() & PG_PCP == 0 || page.order() != order {
                    return Err(CheckError::BadListedPage {
                        pfn,
                        what: "on a per-CPU list but not marked as such, or of another order",
                    });
                }
                if !zone.spans(pfn) || !pfn.is_aligned(order) {
                    return Err(CheckError::WrongZone {
                        pfn,
                        zone: zone.name(),
                    });
                }
                counted += 1 << order;
            }
        }
        if counted != pcp.count() as u64 {
            return Err(CheckError::PcpCountMismatch {
                cpu,
                zone: zone.name(),
                counted,
                recorded: pcp.count() as u64,
            });
        }
        Ok(())
    }

    /// One pass over `mem_map`: every page is the head of exactly one block or
    /// reservation, or a blank page inside one. Allocated blocks go to `on_allocated`.
    fn check_mem_map<F: FnMut(Pfn, &Page, u64)>(
        &self,
        on_allocated: F,
    ) -> Result<MemMapWalk<F>, CheckError> {
        let mut walk = MemMapWalk {
            report: CheckReport {
                total: self.mem_map.nr_pages(),
                ..CheckReport::default()
            },
            counts: [ZoneCount::default(); MAX_NR_ZONES],
            on_allocated,
            known_zero: KnownZero::EMPTY,
        };
        // Present sections only: an absent one has no descriptors.
        for (start, end) in self.mem_map.present_ranges() {
            self.check_pfn_range(start, end, &mut walk)?;
        }
        Ok(walk)
    }

    /// [`Mm::check_mem_map`] over the PFNs `start..end`, run by run.
    fn check_pfn_range<F: FnMut(Pfn, &Page, u64)>(
        &self,
        start: Pfn,
        end: Pfn,
        walk: &mut MemMapWalk<F>,
    ) -> Result<(), CheckError> {
        let mut run = start;
        while run < end {
            let run_end = Pfn((run.raw() | (RUN_PAGES - 1)) + 1).min(end);
            let (pages, phys) = self.run_view(run, run_end).ok_or(CheckError::BadPage {
                pfn: run,
                what: "mem_map descriptors not addressable",
            })?;
            self.check_run(run, &pages, phys, walk)?;
            run = run_end;
        }
        Ok(())
    }

    /// The descriptors of the PFNs `start..end` (inside one run) as one array, so that
    /// the walk reads them with one bounds check against a length it holds, instead of a
    /// `pfn_to_page()` per page. Taken through the door ([`Mm::ram`]) at the address
    /// `pfn_to_page()` gives, and held to `mem_map`: its first and last elements must be
    /// the descriptors [`crate::memory_model::MemMap::get`] gives (the descriptors of a
    /// run are contiguous, in a flat `mem_map` as in each SPARSEMEM section). With it,
    /// the physical address of its first descriptor.
    fn run_view(&self, start: Pfn, end: Pfn) -> Option<(RamArray<Page>, u64)> {
        let n = end.raw().checked_sub(start.raw()).filter(|&n| n > 0)?;
        let first = self.mem_map.get(start)?;
        let last = self.mem_map.get(end - 1)?;
        let va = self.mem_map.struct_page_va(self.layout.page_offset, start);
        let bytes = n.checked_mul(core::mem::size_of::<Page>() as u64)?;
        let phys = self.direct_map_phys(va, bytes).ok()?;
        let view = self.ram().array::<Page>(phys, n).ok()?;
        let same = core::ptr::eq(view.get(0)?, first) && core::ptr::eq(view.get(n - 1)?, last);
        same.then_some((view, phys))
    }

    /// The pages of one run, `start..start + pages.len()`: each a reservation or the head
    /// of a block whose pages all lie in the run.
    fn check_run<F: FnMut(Pfn, &Page, u64)>(
        &self,
        start: Pfn,
        pages: &RamArray<Page>,
        phys: u64,
        walk: &mut MemMapWalk<F>,
    ) -> Result<(), CheckError> {
        let mut i = 0u64;
        while let Some(page) = pages.get(i) {
            let pfn = start + i;
            if page.is_reserved() {
                if page.flags() != PG_RESERVED {
                    return Err(CheckError::BadPage {
                        pfn,
                        what: "reserved page with other flags",
                    });
                }
                walk.report.reserved += 1;
                i += 1;
                continue;
            }
            let n = self.check_block_head(pfn, page, walk)?;
            if i + n > pages.len() {
                // Aligned and at most `MAX_PAGE_ORDER`, so only past the end of mem_map.
                return Err(CheckError::BadPage {
                    pfn,
                    what: "block head whose order reaches past its zone",
                });
            }
            let tails = Tails {
                head: pfn,
                from: i + 1,
                to: i + n,
                phys: phys + (i + 1) * core::mem::size_of::<Page>() as u64,
            };
            let zero = |phys: u64, len: u64| self.reads_as_zero(&mut walk.known_zero, phys, len);
            check_tails(zero, page, pages, tails)?;
            i += n;
        }
        Ok(())
    }

    /// An unreserved page at the head of a block: its order, zone and state; counted in
    /// `walk`. Returns the block's size in pages.
    fn check_block_head<F: FnMut(Pfn, &Page, u64)>(
        &self,
        pfn: Pfn,
        page: &Page,
        walk: &mut MemMapWalk<F>,
    ) -> Result<u64, CheckError> {
        let zone = self.zone_of_pfn(pfn).ok_or(CheckError::BadPage {
            pfn,
            what: "unreserved page outside every zone",
        })?;
        let c = &mut walk.counts[zone.idx];
        let order = page.order();
        if order > crate::addr::MAX_PAGE_ORDER || !pfn.is_aligned(order) {
            return Err(CheckError::BadPage {
                pfn,
                what: "block head with a bad or misaligned order",
            });
        }
        let n = 1u64 << order;
        if !zone.spans(pfn + (n - 1)) {
            return Err(CheckError::BadPage {
                pfn,
                what: "block head whose order reaches past its zone",
            });
        }
        let report = &mut walk.report;
        if page.is_buddy() {
            c.buddy_blocks += 1;
            c.free += n;
            report.free += n;
        } else if page.flags() & PG_PCP != 0 {
            c.pcp += n;
            report.pcp += n;
        } else if page.refcount() > 0 {
            c.allocated += n;
            report.allocated += n;
        } else {
            return Err(CheckError::BadPage {
                pfn,
                what: "blank page not inside any free block or allocation",
            });
        }
        if page.refcount() > 0 {
            (walk.on_allocated)(pfn, page, n);
        }
        Ok(n)
    }

    /// Are the `len` bytes of RAM at `phys` all zero? Whole pages the platform knows to
    /// be zero are passed without being read; the rest is read, a page at a time
    /// ([`crate::mem::PhysMem::is_zero`]).
    fn reads_as_zero(&self, known: &mut KnownZero, phys: u64, len: u64) -> bool {
        let page = crate::addr::PAGE_SIZE as u64;
        let end = phys.saturating_add(len);
        let mut at = phys;
        while at < end {
            let piece_end = ((at / page + 1) * page).min(end);
            let whole = at.is_multiple_of(page) && piece_end - at == page;
            let known_zero = whole && known.page(&self.platform, at);
            if !known_zero && self.ram().is_zero(at, piece_end - at) != Ok(true) {
                return false;
            }
            at = piece_end;
        }
        true
    }
}

/// The pages after a block head: `pages[from..to]` of its run, the head at PFN `head`,
/// their descriptors at physical address `phys`.
struct Tails {
    head: Pfn,
    from: u64,
    to: u64,
    phys: u64,
}

/// The pages after a block head: blank, or compound tails pointing at the head. One loop
/// per kind, each a load of the words and a branch out; blank pages whose descriptors are
/// all zero bytes (a free block's, as boot and every free leave them) are passed in one
/// test of the bytes, `reads_as_zero(phys, len)`, the loop finding the page at fault
/// otherwise.
fn check_tails(
    reads_as_zero: impl FnOnce(u64, u64) -> bool,
    page: &Page,
    pages: &RamArray<Page>,
    tails: Tails,
) -> Result<(), CheckError> {
    let Tails {
        head,
        from,
        to,
        phys,
    } = tails;
    let bad = |i: u64| CheckError::BadPage {
        pfn: head + (i - from) + 1,
        what: "page inside a block is not a blank (or compound tail) page",
    };
    if page.flags() & PG_HEAD != 0 {
        for i in from..to {
            let tail = pages.get(i).ok_or_else(|| bad(i))?;
            let wrong = (tail.flags() ^ PG_TAIL) | tail.refcount();
            if wrong != 0 || tail.word() != head.raw() {
                return Err(bad(i));
            }
        }
    } else {
        let bytes = (to - from) * core::mem::size_of::<Page>() as u64;
        if to > from && pages.get(to - 1).is_some() && reads_as_zero(phys, bytes) {
            return Ok(());
        }
        for i in from..to {
            let tail = pages.get(i).ok_or_else(|| bad(i))?;
            if !tail.is_blank() {
                return Err(bad(i));
            }
        }
    }
    Ok(())
}

/// The per-migrate-type counters of one order (`FreeArea::nr_free_type`) against the blocks
/// found on each type's list.
fn check_per_type_counts(
    zone: &crate::page_alloc::Zone,
    order: u32,
    listed: &[u64; MIGRATE_TYPES],
    recorded: &[[u64; MIGRATE_TYPES]; crate::addr::NR_PAGE_ORDERS],
) -> Result<(), CheckError> {
    let recorded = &recorded[order as usize];
    match (0..MIGRATE_TYPES).find(|&mt| listed[mt] != recorded[mt]) {
        Some(mt) => Err(CheckError::NrFreeTypeMismatch {
            zone: zone.name(),
            order,
            migratetype: crate::page_alloc::MigrateType::ALL[mt].name(),
            listed: listed[mt],
            recorded: recorded[mt],
        }),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::page_alloc::{MigrateType, Zone, ZoneType};
    extern crate std;
    use std::string::ToString;

    /// A per-type counter that disagrees with its list is reported with the type's name,
    /// even where the order's total agrees (a block counted under the wrong type).
    #[test]
    fn per_type_counts_are_held_to_the_lists() {
        let zone = Zone::new(ZoneType::Normal, 2);
        let mut recorded = [[0u64; MIGRATE_TYPES]; crate::addr::NR_PAGE_ORDERS];
        recorded[3][MigrateType::Movable as usize] = 2;
        let mut listed = [0u64; MIGRATE_TYPES];
        listed[MigrateType::Movable as usize] = 2;
        assert_eq!(check_per_type_counts(&zone, 3, &listed, &recorded), Ok(()));
        listed[MigrateType::Movable as usize] = 1;
        listed[MigrateType::Unmovable as usize] = 1;
        let err = check_per_type_counts(&zone, 3, &listed, &recorded).unwrap_err();
        assert_eq!(
            err,
            CheckError::NrFreeTypeMismatch {
                zone: "Normal",
                order: 3,
                migratetype: "Unmovable",
                listed: 1,
                recorded: 0,
            }
        );
        assert_eq!(
            err.to_string(),
            "zone Normal order 3 type Unmovable: 1 blocks listed, the per-type count says 0"
        );
    }
}
