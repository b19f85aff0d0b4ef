//! Helpers shared by the integration tests: machine shapes, boot snapshots and the
//! "everything is free again" assertion.
#![allow(dead_code)]

use kmemlab_mm::page_alloc::check::CheckReport;
use kmemlab_mm::{Gfp, Mm, Pfn, Profile, ZoneType, MAX_PAGE_ORDER};
use kmemlab_sim::{Hole, Machine, MachineConfig, SimPlatform};

pub const MIB: u64 = 1 << 20;
pub const GIB: u64 = 1 << 30;

/// Boot a machine, panicking with the reason if it does not boot.
pub fn machine(ram: u64, cpus: usize, profile: Profile, holes: Vec<Hole>, seed: u64) -> Machine {
    Machine::new(MachineConfig {
        ram,
        cpus,
        profile,
        seed,
        holes,
        ..MachineConfig::default()
    })
    .unwrap_or_else(|e| panic!("machine {ram:#x} {profile} boots: {e}"))
}

/// x86_64 with 32 MiB and one CPU: DMA and a small DMA32.
pub fn small_x86(cpus: usize) -> Machine {
    machine(32 * MIB, cpus, Profile::X86_64, vec![], 7)
}

/// What boot left behind, to compare with after a test frees everything.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BootState {
    /// `NR_FREE_PAGES` per zone.
    pub free: Vec<u64>,
    /// `free_area[order].nr_free` per zone.
    pub buddyinfo: Vec<[u64; MAX_PAGE_ORDER as usize + 1]>,
    /// The checker's counts.
    pub report: CheckReport,
}

impl BootState {
    /// The state after draining the per-CPU lists (boot itself leaves pages there: the
    /// slab allocator's caches are made at boot).
    pub fn of(mm: &Mm<SimPlatform>) -> BootState {
        mm.drain_all_pages();
        BootState {
            free: mm.zones().iter().map(|z| z.free_pages()).collect(),
            buddyinfo: mm
                .zones()
                .iter()
                .map(|z| mm.free_area_snapshot(z).nr_free)
                .collect(),
            report: mm.check().expect("check() passes"),
        }
    }
}

/// Total managed pages.
pub fn managed(mm: &Mm<SimPlatform>) -> u64 {
    mm.zones().iter().map(|z| z.managed_pages).sum()
}

/// Drain every CPU's lists, then assert that every managed page is free, the per-zone
/// free counts equal boot's, and (if `exact_buddyinfo`) that every order's block count
/// equals boot's, i.e. all blocks merged back.
pub fn assert_all_free(machine: &Machine, boot: &BootState, exact_buddyinfo: bool) {
    let mm = machine.mm();
    mm.drain_all_pages();
    let report = mm
        .check()
        .unwrap_or_else(|e| panic!("check() after freeing all: {e}"));
    assert_eq!(
        report.allocated, boot.report.allocated,
        "pages allocated beyond boot's slab pages: {report:?}"
    );
    assert_eq!(report.pcp, 0, "pages still on per-CPU lists: {report:?}");
    assert_eq!(
        report.free + report.allocated,
        managed(mm),
        "not every managed page is free"
    );
    assert_eq!(report, boot.report, "checker counts differ from boot's");
    let free: Vec<u64> = mm.zones().iter().map(|z| z.free_pages()).collect();
    assert_eq!(free, boot.free, "per-zone free pages differ from boot's");
    if exact_buddyinfo {
        let now = BootState::of(mm);
        assert_eq!(
            now.buddyinfo, boot.buddyinfo,
            "free blocks did not merge back to boot's buddyinfo"
        );
    }
}

/// The zone types an allocation with `gfp` may be served from on `profile`, by the
/// kernel's GFP_ZONE_TABLE (with OPT_ZONE_DMA32 / OPT_ZONE_HIGHMEM = ZONE_NORMAL when the
/// profile lacks the zone) and the zone fallback order.
pub fn allowed_zones(profile: Profile, gfp: Gfp) -> Vec<ZoneType> {
    use ZoneType::*;
    let zone_bits = gfp.bits() & 0x0f;
    let dma = Gfp::__GFP_DMA.bits();
    let high = Gfp::__GFP_HIGHMEM.bits();
    let dma32 = Gfp::__GFP_DMA32.bits();
    let movable = Gfp::__GFP_MOVABLE.bits();
    let highest = match zone_bits {
        b if b == 0 || b == movable => Normal,
        b if b == dma || b == dma | movable => Dma,
        b if b == dma32 || b == dma32 | movable => match profile {
            Profile::X86_64 => Dma32,
            Profile::I386 => Normal,
        },
        b if b == high => match profile {
            Profile::X86_64 => Normal,
            Profile::I386 => HighMem,
        },
        b if b == high | movable => Movable,
        _ => panic!("bad zone bits {zone_bits:#x}"),
    };
    profile
        .zone_types()
        .into_iter()
        .filter(|&z| z <= highest)
        .collect()
}

/// Free pages (in buddy blocks) inside `[start, start + n)`, from page state.
pub fn free_pages_in(mm: &Mm<SimPlatform>, start: u64, n: u64) -> u64 {
    let mut pfn = start;
    let mut free = 0;
    while pfn < start + n {
        match mm.pfn_to_page(Pfn(pfn)) {
            Ok(page) if page.is_buddy() => {
                let len = 1u64 << page.order();
                free += len.min(start + n - pfn);
                pfn += len;
            }
            _ => pfn += 1,
        }
    }
    free
}

/// The index of the zone of `zt` in `mm.zones()`.
pub fn zone_idx(mm: &Mm<SimPlatform>, zt: ZoneType) -> usize {
    mm.zones()
        .iter()
        .position(|z| z.zone_type == zt)
        .unwrap_or_else(|| panic!("no zone {zt}"))
}

/// Find the directory `shared/data` beside the repository: `<repo>/../shared/data`.
pub fn shared_data_dir() -> Option<std::path::PathBuf> {
    let manifest = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let dir = manifest.join("../../../shared/data");
    dir.is_dir().then_some(dir)
}

/// `kmem_cache_shrink` of every cache, then drain the per-CPU page lists.
pub fn shrink_all_caches(m: &Machine) {
    let mut caches = Vec::new();
    m.mm().for_each_cache(|s| {
        caches.push(s.handle());
        None::<()>
    });
    m.run(|mm| {
        for r in caches {
            mm.kmem_cache_shrink(r).unwrap();
        }
    });
    m.mm().drain_all_pages();
}
