//! Workloads that put the kernel into a state worth looking at.
//!
//! [`fragment`] pins unmovable pages across a zone so that no free block of a given
//! order is left, while most of the zone stays free: the situation in which a
//! physically contiguous `kmalloc(4 MiB)` fails although a `vmalloc` of 64 MiB, built from
//! single pages, still succeeds.
//!
//! How it pins: it takes the zone's largest free block with `GFP_KERNEL` (an unmovable
//! allocation, so it steals Movable pageblocks by the kernel's fallback rules as real
//! long-lived kernel allocations do), splits it into single pages (`split_page`), keeps
//! one page of every `2^stride` and frees the rest. A kept page stops its neighbours
//! from ever merging past order `stride - 1`, so once no block of order ≥ `order` is
//! left in the buddy lists, none can form again until the pins are released, whatever
//! is freed meanwhile (the page cache that kswapd reclaims included).

use std::fmt;

use kmemlab_mm::{FreeError, Gfp, MigrateType, Mm, PageAllocError, Pfn, ZoneType, MAX_PAGE_ORDER};

use crate::machine::{Machine, SimPlatform};

/// Which pages [`fragment`] keeps.
#[derive(Copy, Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub enum FragmentPattern {
    /// Every other page: the free memory left is all single pages (no free block above
    /// order 0), and half the zone's free memory is pinned. The classic picture of
    /// external fragmentation.
    Alternate,
    /// One page in every `2^order` block: the least pinning that leaves no free block of
    /// `order` (the free blocks left are of orders up to `order - 1`); almost all of the
    /// zone stays free.
    Sparse,
}

impl FragmentPattern {
    /// The pattern's name (`alternate`, `sparse`).
    pub fn name(self) -> &'static str {
        match self {
            FragmentPattern::Alternate => "alternate",
            FragmentPattern::Sparse => "sparse",
        }
    }

    /// Parse a pattern name, case-insensitively.
    pub fn from_name(name: &str) -> Option<FragmentPattern> {
        [FragmentPattern::Alternate, FragmentPattern::Sparse]
            .into_iter()
            .find(|p| p.name().eq_ignore_ascii_case(name))
    }

    /// log2 of the distance between kept pages, for a target order.
    fn stride(self, order: u32) -> u32 {
        match self {
            FragmentPattern::Alternate => 1,
            FragmentPattern::Sparse => order,
        }
    }
}

/// A zone, named by type or as `/proc/zoneinfo` spells it (`DMA`, `DMA32`, `Normal`,
/// `HighMem`; any case).
pub trait ZoneName {
    /// The zone type, or the name that is not one.
    fn to_zone_type(&self) -> Result<ZoneType, String>;
}

impl ZoneName for ZoneType {
    fn to_zone_type(&self) -> Result<ZoneType, String> {
        Ok(*self)
    }
}

impl ZoneName for &str {
    fn to_zone_type(&self) -> Result<ZoneType, String> {
        ZoneType::from_name(self).ok_or_else(|| self.to_string())
    }
}

impl ZoneName for String {
    fn to_zone_type(&self) -> Result<ZoneType, String> {
        self.as_str().to_zone_type()
    }
}

/// Why [`fragment`] could not do its job.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum FragmentError {
    /// Not a zone name.
    UnknownZone(String),
    /// The zone does not exist on this profile or has no memory.
    EmptyZone(ZoneType),
    /// Order 0 cannot be fragmented away, and orders above `MAX_PAGE_ORDER` do not exist.
    BadOrder(u32),
    /// An allocation failed before the zone was fragmented; everything pinned so far was
    /// released again.
    Alloc(PageAllocError),
    /// The zone was too low on free memory for a block of `order` (below its watermark),
    /// so the allocator served it from the lower zone `served_by`; everything pinned so
    /// far was released again.
    BelowWatermark {
        /// The zone asked for.
        zone: ZoneType,
        /// The block's order.
        order: u32,
        /// The zone that served it instead.
        served_by: ZoneType,
    },
    /// A split or free was refused (a bug: the pages came from the allocator just now).
    Free(FreeError),
}

impl fmt::Display for FragmentError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FragmentError::UnknownZone(z) => {
                write!(f, "{z:?} is not a zone (DMA, DMA32, Normal, HighMem)")
            }
            FragmentError::EmptyZone(z) => write!(f, "zone {z} has no memory on this machine"),
            FragmentError::BadOrder(o) => {
                write!(f, "order {o}: fragment needs an order in 1 ..= {MAX_PAGE_ORDER}")
            }
            FragmentError::Alloc(e) => write!(f, "could not pin the zone: {e}"),
            FragmentError::BelowWatermark {
                zone,
                order,
                served_by,
            } => write!(
                f,
                "zone {zone} is below its watermark for an order-{order} block (the allocator fell back to {served_by}): free memory there first"
            ),
            FragmentError::Free(e) => write!(f, "{e}"),
        }
    }
}

impl std::error::Error for FragmentError {}

/// What [`fragment`] did.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct FragmentReport {
    /// The zone fragmented.
    #[serde(serialize_with = "serialize_zone")]
    pub zone: ZoneType,
    /// No free block of this order or above is left in it.
    pub order: u32,
    /// Which pages were kept.
    pub pattern: FragmentPattern,
    /// Pages pinned.
    pub pinned_pages: u64,
    /// Free pages left in the zone (`NR_FREE_PAGES`, per-CPU lists drained).
    pub free_pages: u64,
    /// The zone's largest free order before, if any block was free.
    pub largest_free_order_before: Option<u32>,
    /// The zone's largest free order after.
    pub largest_free_order_after: Option<u32>,
}

fn serialize_zone<S: serde::Serializer>(z: &ZoneType, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(z.name())
}

/// A fragmented zone: the report, and the pinned pages until [`Fragmented::undo`] frees
/// them. Dropping it keeps the pages pinned (they are the machine's, not the handle's).
#[derive(Debug)]
pub struct Fragmented {
    /// What was done.
    pub report: FragmentReport,
    pinned: Vec<Pfn>,
}

impl Fragmented {
    /// The pinned pages.
    pub fn pinned(&self) -> &[Pfn] {
        &self.pinned
    }

    /// Free every pinned page (and drain the per-CPU lists, so the blocks merge back at
    /// once). Returns the pages freed.
    pub fn undo(self, machine: &Machine) -> Result<u64, FreeError> {
        machine.run(|mm| release(mm, &self.pinned))?;
        Ok(self.pinned.len() as u64)
    }
}

/// Pin pages of `zone` by `pattern` until it has no free block of order `order` or
/// above (see the module documentation). Runs on CPU 0 in process context.
pub fn fragment(
    machine: &Machine,
    zone: impl ZoneName,
    order: u32,
    pattern: FragmentPattern,
) -> Result<Fragmented, FragmentError> {
    if !(1..=MAX_PAGE_ORDER).contains(&order) {
        return Err(FragmentError::BadOrder(order));
    }
    let zone_type = zone.to_zone_type().map_err(FragmentError::UnknownZone)?;
    machine.run(|mm| fragment_zone(mm, zone_type, order, pattern))
}

fn fragment_zone(
    mm: &Mm<SimPlatform>,
    zone_type: ZoneType,
    order: u32,
    pattern: FragmentPattern,
) -> Result<Fragmented, FragmentError> {
    let zone = mm
        .zones()
        .iter()
        .find(|z| z.zone_type == zone_type && z.managed_pages > 0)
        .ok_or(FragmentError::EmptyZone(zone_type))?;
    mm.drain_all_pages();
    let before = largest_free_order(mm, zone);
    let gfp = zone_gfp(zone_type) | Gfp::__GFP_NOWARN | Gfp::__GFP_NORETRY;
    let stride = pattern.stride(order);
    let mut pinned = Vec::new();
    let result = loop {
        let Some(largest) = largest_free_order(mm, zone).filter(|&o| o >= order) else {
            // The per-CPU lists may hold blocks taken in batches: give them back and look
            // again before declaring victory.
            mm.drain_all_pages();
            match largest_free_order(mm, zone) {
                Some(o) if o >= order => continue,
                _ => break Ok(()),
            }
        };
        match pin_block(mm, zone_type, gfp, largest, stride, &mut pinned) {
            Ok(()) => {}
            Err(e) => break Err(e),
        }
    };
    if let Err(e) = result {
        release(mm, &pinned).map_err(FragmentError::Free)?;
        return Err(e);
    }
    mm.drain_all_pages();
    Ok(Fragmented {
        report: FragmentReport {
            zone: zone_type,
            order,
            pattern,
            pinned_pages: pinned.len() as u64,
            free_pages: zone.free_pages(),
            largest_free_order_before: before,
            largest_free_order_after: largest_free_order(mm, zone),
        },
        pinned,
    })
}

/// The kernel allocation flags whose highest zone is `zone`: GFP_KERNEL with the zone
/// modifier (`GFP_DMA`, `GFP_DMA32`, `__GFP_HIGHMEM`), unmovable.
fn zone_gfp(zone: ZoneType) -> Gfp {
    Gfp::GFP_KERNEL
        | match zone {
            ZoneType::Dma => Gfp::GFP_DMA,
            ZoneType::Dma32 => Gfp::GFP_DMA32,
            ZoneType::HighMem => Gfp::__GFP_HIGHMEM,
            ZoneType::Normal | ZoneType::Movable => Gfp::empty(),
        }
}

/// Take one block of `block_order`, keep one page of every `2^stride`, free the rest. A
/// block that the zonelist served from a lower zone is given back whole.
fn pin_block(
    mm: &Mm<SimPlatform>,
    zone_type: ZoneType,
    gfp: Gfp,
    block_order: u32,
    stride: u32,
    pinned: &mut Vec<Pfn>,
) -> Result<(), FragmentError> {
    let page = match mm.alloc_pages(gfp, block_order) {
        Ok(page) => page,
        // A block on the HighAtomic lists is out of GFP_KERNEL's reach; a high-order
        // atomic request may take it (`rmqueue` tries MIGRATE_HIGHATOMIC first under
        // ALLOC_HIGHATOMIC), so the workload pins such a block that way, and only then.
        Err(_) if only_highatomic_left(mm, zone_type, block_order) => {
            let atomic = (gfp - Gfp::GFP_KERNEL - Gfp::__GFP_NORETRY) | Gfp::GFP_ATOMIC;
            mm.alloc_pages(atomic, block_order)
                .map_err(FragmentError::Alloc)?
        }
        Err(e) => return Err(FragmentError::Alloc(e)),
    };
    let first = mm.page_to_pfn(page);
    let served_by = mm.page_zone(page).zone_type;
    mm.split_page(page, block_order)
        .map_err(FragmentError::Free)?;
    let keep_every = 1u64 << stride.min(block_order);
    for pfn in (first.0..first.0 + (1 << block_order)).map(Pfn) {
        if served_by == zone_type && (pfn.0 - first.0).is_multiple_of(keep_every) {
            pinned.push(pfn);
        } else {
            free_page(mm, pfn).map_err(FragmentError::Free)?;
        }
    }
    if served_by == zone_type {
        Ok(())
    } else {
        Err(FragmentError::BelowWatermark {
            zone: zone_type,
            order: block_order,
            served_by,
        })
    }
}

/// Are the zone's only free blocks of `order` or above on the HighAtomic lists?
fn only_highatomic_left(mm: &Mm<SimPlatform>, zone_type: ZoneType, order: u32) -> bool {
    let Some(zone) = mm.zones().iter().find(|z| z.zone_type == zone_type) else {
        return false;
    };
    let snap = mm.free_area_snapshot(zone);
    let has = |mt: MigrateType| {
        (order..=MAX_PAGE_ORDER).any(|o| snap.per_type[mt as usize][o as usize] > 0)
    };
    has(MigrateType::HighAtomic)
        && MigrateType::ALL
            .into_iter()
            .filter(|&mt| mt != MigrateType::HighAtomic && mt != MigrateType::Isolate)
            .all(|mt| !has(mt))
}

fn free_page(mm: &Mm<SimPlatform>, pfn: Pfn) -> Result<(), FreeError> {
    mm.__free_pages(mm.pfn_to_page(pfn)?, 0)
}

fn release(mm: &Mm<SimPlatform>, pinned: &[Pfn]) -> Result<(), FreeError> {
    for &pfn in pinned {
        free_page(mm, pfn)?;
    }
    mm.drain_all_pages();
    Ok(())
}

/// The zone's largest free order in the buddy lists.
fn largest_free_order(mm: &Mm<SimPlatform>, zone: &kmemlab_mm::Zone) -> Option<u32> {
    mm.largest_free_order(zone)
}
