//! What the integration tests share: [`MachineBuilder`] for every machine, boot snapshots,
//! the "everything is free again" assertion, and the repository's test data.

use kmemlab_mm::dma::SwiotlbConfig;
use kmemlab_mm::page_alloc::check::CheckReport;
use kmemlab_mm::slab::{SlabConfig, SlabFlags};
use kmemlab_mm::{Gfp, Mm, Pfn, Profile, ZoneType, MAX_PAGE_ORDER};
use kmemlab_sim::{Hole, Machine, MachineConfig, SimError, SimPlatform};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

pub const MIB: u64 = 1 << 20;
pub const GIB: u64 = 1 << 30;

/// Every test machine, one setting at a time, from [`MachineConfig::default`] (1 GiB
/// x86_64, 4 CPUs, seed 0, the legacy 640 KiB–1 MiB hole, default slab options) and the
/// default `swiotlb=` options (a pool only above 4 GiB, as x86 decides), for example
/// `MachineBuilder::small().profile(Profile::I386).seed(11).boot()`.
#[derive(Clone, Debug)]
#[must_use]
pub struct MachineBuilder {
    config: MachineConfig,
    swiotlb: SwiotlbConfig,
}

impl Default for MachineBuilder {
    fn default() -> Self {
        MachineBuilder::new()
    }
}

impl MachineBuilder {
    /// [`MachineConfig::default`] with the default swiotlb options.
    pub fn new() -> MachineBuilder {
        MachineBuilder {
            config: MachineConfig::default(),
            swiotlb: SwiotlbConfig::default(),
        }
    }

    /// The small machine most topic tests use: 64 MiB x86_64, 2 CPUs, no holes.
    pub fn small() -> MachineBuilder {
        MachineBuilder::new().ram(64 * MIB).cpus(2).no_holes()
    }

    /// Which kernel.
    pub fn profile(mut self, profile: Profile) -> MachineBuilder {
        self.config.profile = profile;
        self
    }

    /// Bytes of RAM.
    pub fn ram(mut self, ram: u64) -> MachineBuilder {
        self.config.ram = ram;
        self
    }

    /// RAM that is all lowmem with the most vmalloc space: 1 GiB on x86_64, 512 MiB on
    /// i386 (~496 MiB of vmalloc space). Set the profile first.
    pub fn all_lowmem(self) -> MachineBuilder {
        let ram = match self.config.profile {
            Profile::X86_64 => GIB,
            Profile::I386 => 512 * MIB,
        };
        self.ram(ram)
    }

    /// Number of CPUs.
    pub fn cpus(mut self, cpus: usize) -> MachineBuilder {
        self.config.cpus = cpus;
        self
    }

    /// The seed of every random choice.
    pub fn seed(mut self, seed: u64) -> MachineBuilder {
        self.config.seed = seed;
        self
    }

    /// Holes in the physical address map.
    pub fn holes(mut self, holes: Vec<Hole>) -> MachineBuilder {
        self.config.holes = holes;
        self
    }

    /// RAM from address 0 up, without holes.
    pub fn no_holes(self) -> MachineBuilder {
        self.holes(vec![])
    }

    /// The slab allocator's boot options.
    pub fn slab(mut self, slab: SlabConfig) -> MachineBuilder {
        self.config.slab = slab;
        self
    }

    /// `slab_debug=` flags, the other slab options as they are.
    pub fn slab_debug(mut self, debug: SlabFlags) -> MachineBuilder {
        self.config.slab.debug = debug;
        self
    }

    /// The slab allocator's per-CPU layer (`--slab-percpu`), the other slab options as
    /// they are.
    pub fn slab_percpu(mut self, percpu: kmemlab_mm::slab::sheaf::SlabPercpu) -> MachineBuilder {
        self.config.slab.percpu = percpu;
        self
    }

    /// `init_on_alloc=` and `init_on_free=` (the page allocator's boot options, which
    /// the slab follows).
    pub fn init_on(mut self, alloc: bool, free: bool) -> MachineBuilder {
        self.config.init_on_alloc = alloc;
        self.config.init_on_free = free;
        self
    }

    /// The `swiotlb=` options.
    pub fn swiotlb(mut self, swiotlb: SwiotlbConfig) -> MachineBuilder {
        self.swiotlb = swiotlb;
        self
    }

    /// The machine, or why it did not boot.
    pub fn try_boot(self) -> Result<Machine, SimError> {
        Machine::new_with_swiotlb(self.config, self.swiotlb)
    }

    /// The machine; a machine that does not boot fails the test, with the reason.
    pub fn boot(self) -> Machine {
        let what = format!(
            "{} {} MiB {} CPUs seed {}",
            self.config.profile,
            self.config.ram >> 20,
            self.config.cpus,
            self.config.seed
        );
        self.try_boot()
            .unwrap_or_else(|e| panic!("machine {what} boots: {e}"))
    }
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

/// What the corruption tests write over a kernel structure: zeros, all-ones, or bytes
/// from a seeded ChaCha8 stream.
#[derive(Copy, Clone, Debug)]
pub enum Fill {
    /// All bytes 0x00.
    Zeros,
    /// All bytes 0xff.
    Ones,
    /// Bytes of the ChaCha8 stream of this seed.
    Random(u64),
}

impl Fill {
    /// `len` bytes of this pattern.
    pub fn bytes(self, len: usize) -> Vec<u8> {
        match self {
            Fill::Zeros => vec![0; len],
            Fill::Ones => vec![0xff; len],
            Fill::Random(seed) => {
                let mut rng = ChaCha8Rng::seed_from_u64(seed);
                (0..len).map(|_| rng.r#gen()).collect()
            }
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
        managed(&mm),
        "not every managed page is free"
    );
    assert_eq!(report, boot.report, "checker counts differ from boot's");
    let free: Vec<u64> = mm.zones().iter().map(|z| z.free_pages()).collect();
    assert_eq!(free, boot.free, "per-zone free pages differ from boot's");
    if exact_buddyinfo {
        let now = BootState::of(&mm);
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
pub fn free_pages_in(mm: &Mm<SimPlatform>, start: Pfn, n: u64) -> u64 {
    let mut pfn = start;
    let mut free = 0;
    while pfn < start + n {
        match mm.pfn_to_page(pfn) {
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

/// The repository's test data directory, `tests/data/` at the root (real kernel traces and
/// `/proc` samples, with their sources in its README).
pub fn test_data_dir() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/data")
}

/// The text of `tests/data/<relative>`; a missing fixture fails the test that needs it.
pub fn test_data(relative: &str) -> String {
    let path = test_data_dir().join(relative);
    std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("test fixture {} is missing: {e}", path.display()))
}

/// `/proc/slabinfo`'s active objects of every cache, by name. After
/// [`shrink_all_caches`] they are the objects really in use: no CPU slab or sheaf holds
/// any then.
pub fn active_objects(m: &Machine) -> std::collections::BTreeMap<String, u64> {
    let mut out = std::collections::BTreeMap::new();
    m.mm().for_each_cache(|s| {
        out.insert(
            s.name().to_string(),
            kmemlab_mm::procfs::slab_info(&m.mm(), s).active_objs,
        );
        None::<()>
    });
    out
}

/// Does the machine run slab sheaves (`--slab-percpu sheaves`)? Its long-lived sheaves
/// (kmalloc'd) may sit in other slabs after a workload than before, so page counts are
/// compared only on the CPU-slab machines; objects in use are compared on both.
pub fn runs_sheaves(m: &Machine) -> bool {
    m.mm().slab_percpu() == kmemlab_mm::slab::sheaf::SlabPercpu::Sheaves
}

/// `kmem_cache_shrink` of every cache, then drain the per-CPU page lists. With sheaves,
/// shrinking one cache frees its spare sheaves into a kmalloc cache that may have been
/// shrunk already, so the round is repeated until the slab pages stop changing.
pub fn shrink_all_caches(m: &Machine) {
    let mut caches = Vec::new();
    m.mm().for_each_cache(|s| {
        caches.push(s.handle());
        None::<()>
    });
    let slab_pages = || m.mm().slab_pages().total();
    for _ in 0..4 {
        let before = slab_pages();
        m.run(|mm| {
            for &r in &caches {
                mm.kmem_cache_shrink(r).unwrap();
            }
        });
        if slab_pages() == before {
            break;
        }
    }
    m.mm().drain_all_pages();
}

/// The console lines printed since the last look, after asserting that one of them
/// starts with `prefix` (the report the test expects: `kernel BUG at mm/slub.c:`, …).
pub fn take_console_expecting(m: &Machine, prefix: &str) -> Vec<String> {
    let console = m.take_console();
    assert!(
        console.iter().any(|l| l.starts_with(prefix)),
        "no console line starts with {prefix:?}: {console:?}"
    );
    console
}

/// The console lines of one WARN as 6.6's `report_bug()` → `__warn()` prints them on x86:
/// the cut line, the message (if any), `WARNING: CPU: <cpu> PID: <pid> at <at>` (`at` is
/// `file:line func`), `Modules linked in:`, the CPU line with the taint as it stood before
/// this WARN (`Not tainted`, or the `Tainted: …` letters), and the end marker.
pub fn warn_lines(
    cpu: usize,
    pid: u32,
    comm: &str,
    taint: &str,
    msg: Option<&str>,
    at: &str,
) -> Vec<String> {
    let mut lines = vec!["------------[ cut here ]------------".to_string()];
    lines.extend(msg.map(str::to_string));
    lines.push(format!("WARNING: CPU: {cpu} PID: {pid} at {at}"));
    lines.push("Modules linked in:".to_string());
    lines.push(format!(
        "CPU: {cpu} PID: {pid} Comm: {comm} {taint} {}",
        kmemlab_mm::report::KERNEL_RELEASE
    ));
    lines.push("---[ end trace 0000000000000000 ]---".to_string());
    lines
}

/// `print_tainted()` with only `W` set: what the CPU line shows after the first WARN.
pub const TAINTED_W: &str = "Tainted: G        W         ";
