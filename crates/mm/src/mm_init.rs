//! Boot (`mm/mm_init.c`, `mm/memblock.c`, `arch/x86/kernel/setup.c`): memblock learns the
//! RAM, reserves what firmware and the kernel need, carves out `mem_map`, the pageblock
//! flags and the per-CPU areas, then hands every remaining page to the buddy allocator
//! (`memblock_free_all`) and computes watermarks, lowmem reserves and per-CPU batches
//! (`init_per_zone_wmark_min`).

use core::fmt;

use crate::addr::{align_down, align_up, Pfn, PhysAddr, MAX_PAGE_ORDER, PAGE_SIZE};
use crate::arch::{Layout, Profile};
use crate::memblock::{Memblock, MemblockError};
use crate::memory_model::MemMap;
use crate::mm_types::{Page, PG_RESERVED};
use crate::page_alloc::pageblock::Pageblocks;
use crate::percpu::PerCpuAreas;
use crate::platform::Platform;
use crate::Mm;

/// The memblock label of the `struct page` array.
pub const MEM_MAP_NAME: &str = "mem_map";
/// The memblock label of the pageblock flags.
pub const USEMAP_NAME: &str = "pageblock flags";
/// The memblock label of the per-CPU areas.
pub const PERCPU_NAME: &str = "percpu";
/// The memblock label of the low megabyte that x86 always reserves.
pub const LOW_1M_NAME: &str = "first 1 MiB (BIOS, real mode)";

/// What to boot.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct BootConfig {
    /// Which kernel layout.
    pub profile: Profile,
    /// The seed for every random choice the kernel makes.
    pub seed: u64,
    /// The slab allocator's options (`slab_debug=`, hardening, size classes, per-CPU
    /// layer).
    pub slab: crate::slab::SlabConfig,
    /// `init_on_alloc=1` (the early param of `mm/mm_init.c`, `early_init_on_alloc()`):
    /// page and slab allocations come zeroed. Off by default, as without
    /// `CONFIG_INIT_ON_ALLOC_DEFAULT_ON`.
    pub init_on_alloc: bool,
    /// `init_on_free=1` (`early_init_on_free()`): pages and slab objects are wiped when
    /// freed. Off by default, as without `CONFIG_INIT_ON_FREE_DEFAULT_ON`.
    pub init_on_free: bool,
    /// The swiotlb bounce-buffer pool (`swiotlb=`).
    pub swiotlb: crate::dma::SwiotlbConfig,
    /// `CONFIG_DMA_API_DEBUG` (on; `dma_debug=off` turns it off).
    pub dma_debug: bool,
    /// `transparent_hugepage=`: when enabled, khugepaged's start raises `min_free_kbytes`
    /// (`set_recommended_min_free_kbytes()`).
    pub thp: crate::sysctl::Thp,
}

impl Default for BootConfig {
    fn default() -> Self {
        BootConfig {
            profile: Profile::X86_64,
            seed: 0,
            slab: crate::slab::SlabConfig::default(),
            init_on_alloc: false,
            init_on_free: false,
            swiotlb: crate::dma::SwiotlbConfig::default(),
            dma_debug: true,
            thp: crate::sysctl::Thp::Never,
        }
    }
}

/// Why boot failed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum BootError {
    /// The platform reported no usable RAM (after the profile's limits).
    NoMemory,
    /// Boot metadata did not fit.
    Memblock(MemblockError),
    /// The memory map has overlapping or unsorted ranges.
    BadMemoryMap,
    /// The platform has no CPUs.
    NoCpus,
    /// The slab allocator could not start.
    Slab(crate::slab::SlabError),
    /// The vmalloc area's PUD pages could not be allocated (`preallocate_vmalloc_pages`).
    VmallocPageTables(crate::PageAllocError),
    /// Boot metadata memblock handed out is not RAM (a broken memory map).
    BadAccess(crate::mem::BadAccess),
}

impl fmt::Display for BootError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BootError::NoMemory => write!(f, "no usable RAM in the memory map"),
            BootError::Memblock(e) => write!(f, "{e}"),
            BootError::BadMemoryMap => write!(f, "memory map ranges overlap or are not sorted"),
            BootError::NoCpus => write!(f, "the platform has no CPUs"),
            BootError::BadAccess(e) => write!(f, "boot memory is not RAM: {e}"),
            BootError::Slab(e) => write!(f, "kmem_cache_init: {e}"),
            BootError::VmallocPageTables(e) => {
                write!(f, "Failed to pre-allocate pud pages for vmalloc area: {e}")
            }
        }
    }
}

impl core::error::Error for BootError {}

impl From<MemblockError> for BootError {
    fn from(e: MemblockError) -> Self {
        BootError::Memblock(e)
    }
}

impl<P: Platform> Mm<P> {
    /// Boot the memory manager on `platform`.
    pub fn boot(platform: P, config: BootConfig) -> Result<Mm<P>, BootError> {
        if platform.nr_cpus() == 0 {
            return Err(BootError::NoCpus);
        }
        let memblock = Self::memblock_setup(&platform, config.profile)?;
        let first_pfn = PhysAddr(memblock.memory().regions()[0].base).pfn();
        let end_pfn = PhysAddr(memblock.memory().regions().last().map_or(0, |r| r.end())).pfn();
        let types = config.profile.zone_types();
        let ram = crate::mem::PhysMem::new(&platform).ok_or(BootError::BadMemoryMap)?;
        let mut mm = Mm {
            layout: Layout::new(config.profile, end_pfn.phys().0),
            ram,
            reports: crate::report::Reports::new(),
            platform,
            seed: config.seed,
            memblock,
            mem_map: MemMap::empty(),
            percpu: PerCpuAreas::empty(),
            page_alloc: crate::page_alloc::PageAlloc::new(
                &types,
                config.profile.pageblock_order(),
                config.thp,
            ),
            vmstat: crate::vmstat::VmStat::new(),
            vmscan: crate::vmscan::Vmscan::new(),
            arch: crate::arch::ArchMm::new(),
            slab: crate::slab::SlabGlobals::new(config.slab),
            vmalloc: crate::vmalloc::VmallocGlobals::new(),
            dma: crate::dma::DmaGlobals::new(),
            debugobjects: crate::debugobjects::DebugObjects::new(),
        };
        mm.memblock.set_current_limit(mm.layout.direct_map_end_phys);
        mm.zone_sizes_init(first_pfn, end_pfn);
        mm.alloc_boot_metadata(end_pfn)?;
        mm.init_mem_mapping()?;
        mm.swiotlb_init(config.swiotlb)?;
        mm.memmap_init(end_pfn);
        // mm_core_init() (6.6): mem_debugging_and_hardening_init() before mem_init()
        // hands memblock's pages to the buddy allocator.
        mm.mem_debugging_and_hardening_init(&config);
        mm.memblock_free_all();
        mm.build_zonelists();
        mm.init_per_zone_wmark_min();
        // hugepage_init() (a subsys_initcall, after init_per_zone_wmark_min's
        // postcore_initcall) starts khugepaged: start_stop_khugepaged().
        mm.set_recommended_min_free_kbytes();
        mm.seed_random();
        mm.preallocate_vmalloc_pages()?;
        mm.kmem_cache_init().map_err(BootError::Slab)?;
        mm.vmalloc_init().map_err(BootError::Slab)?;
        mm.dma_debug_setup(config.dma_debug);
        mm.page_alloc_booted();
        Ok(mm)
    }

    /// `mem_debugging_and_hardening_init()` (`mm/mm_init.c`, 6.6): turn the early params
    /// `init_on_alloc=` / `init_on_free=` into the page allocator's static keys. Of what
    /// 6.6 decides here only these two apply: kmemlab has no `CONFIG_PAGE_POISONING`
    /// (which would override both, "mem auto-init: CONFIG_PAGE_POISONING is on, will
    /// take precedence over init_on_alloc and init_on_free"), no KMSAN and no
    /// `debug_pagealloc`, and checks every page as `check_pages_enabled` would. With both
    /// on, both keys are on and nothing is printed: `init_on_free` wins only in
    /// `post_alloc_hook()`, which skips the zeroing of pages wiped when they were freed.
    fn mem_debugging_and_hardening_init(&mut self, config: &BootConfig) {
        self.set_init_on_keys(config.init_on_alloc, config.init_on_free);
    }

    /// e820 → memblock: add the platform's RAM within the profile's reach, drop page 0
    /// (`trim_bios_range`) and reserve the first megabyte (x86 does so since 5.13).
    fn memblock_setup(platform: &P, profile: Profile) -> Result<Memblock, BootError> {
        let mut mb = Memblock::new();
        let mut prev_end = 0;
        for region in platform.memory_map() {
            if region.start.0 < prev_end || region.end.0 < region.start.0 {
                return Err(BootError::BadMemoryMap);
            }
            prev_end = region.end.0;
            let start = align_up(region.start.0.max(PAGE_SIZE as u64), PAGE_SIZE as u64);
            let limit = profile
                .max_phys()
                .min(crate::memory_model::max_section_phys(profile));
            let end = align_down(region.end.0.min(limit), PAGE_SIZE as u64);
            if region.end.0 > limit {
                platform.printk(format_args!(
                    "WARNING: {} MiB of RAM above {} MiB ignored: the {} profile cannot address it",
                    (region.end.0 - region.start.0.max(limit)) >> 20,
                    limit >> 20,
                    profile
                ));
            }
            if end > start {
                mb.add(start, end - start)?;
            }
        }
        if mb.memory().regions().is_empty() {
            return Err(BootError::NoMemory);
        }
        mb.reserve(0, 1 << 20, LOW_1M_NAME)?;
        Ok(mb)
    }

    /// `zone_sizes_init()` / `free_area_init()`: each zone spans the RAM inside its
    /// profile limits; holes count in spanned but not in present.
    fn zone_sizes_init(&mut self, first_pfn: Pfn, end_pfn: Pfn) {
        let types = self.layout.profile.zone_types();
        for (idx, zone_type) in types.into_iter().enumerate() {
            let (lo, hi) = self.layout.profile.zone_limits(zone_type);
            let start = PhysAddr(lo).pfn().max(first_pfn);
            let end = PhysAddr(hi).pfn().min(end_pfn);
            if end <= start {
                continue;
            }
            let present: u64 = self
                .memblock
                .memory()
                .regions()
                .iter()
                .map(|r| {
                    let s = PhysAddr(r.base).pfn().max(start);
                    let e = PhysAddr(r.end()).pfn().min(end);
                    e.raw().saturating_sub(s.raw())
                })
                .sum();
            if present == 0 {
                continue;
            }
            self.init_zone_span(idx, start, end - start, present);
        }
    }

    /// Carve `mem_map`, the pageblock flags and the per-CPU areas out of RAM, zeroed as
    /// `memblock_alloc` returns them.
    ///
    /// `mem_map` is SPARSEMEM's (`sparse_init()` → `sparse_init_nid()`, 6.6): one buffer
    /// of `section_map_size()` for each present section (`sparse_buffer_init()`, aligned
    /// to it), whose descriptors are laid out section after section; absent sections get
    /// none.
    fn alloc_boot_metadata(&mut self, end_pfn: Pfn) -> Result<(), BootError> {
        let page_size = PAGE_SIZE as u64;
        let profile = self.layout.profile;
        let shift = crate::memory_model::pfn_section_shift(profile);
        let nr_present =
            crate::memory_model::memblock_sections(self.memblock.memory(), shift).count() as u64;
        let nr_pages = nr_present << shift;
        let map_bytes = nr_pages * core::mem::size_of::<Page>() as u64;
        let (map_size, map_align) = crate::memory_model::section_map_size(profile);
        let map_phys = self
            .memblock
            .alloc(nr_present * map_size, map_align, MEM_MAP_NAME)?;
        let pageblock_order = profile.pageblock_order();
        let nr_blocks = end_pfn.raw().div_ceil(profile.pageblock_nr_pages());
        let usemap_phys = self.memblock.alloc(nr_blocks, page_size, USEMAP_NAME)?;
        let nr_cpus = self.platform.nr_cpus();
        let percpu_bytes = (nr_cpus * crate::percpu::unit_size()) as u64;
        let percpu_phys = self.memblock.alloc(percpu_bytes, page_size, PERCPU_NAME)?;
        for (phys, len) in [
            (map_phys, map_bytes),
            (usemap_phys, nr_blocks),
            (percpu_phys, percpu_bytes),
        ] {
            // Discarded or written only where not zero already: the host backs what is
            // written, and a large machine's mem_map is mostly never touched.
            self.zero_boot_ram(phys.0, len)
                .map_err(|_| BootError::BadMemoryMap)?;
        }
        // Zeroed bytes are valid descriptors, pageblock bytes and per-CPU units (atomics;
        // the lists are fixed up below).
        let bad = |_| BootError::BadMemoryMap;
        self.mem_map = MemMap::new(
            self.ram.array(map_phys.0, nr_pages).map_err(bad)?,
            map_phys.0,
            shift,
            crate::memory_model::memblock_sections(self.memblock.memory(), shift),
        )
        .ok_or(BootError::BadMemoryMap)?;
        let pageblocks = Pageblocks::new(
            self.ram.array(usemap_phys.0, nr_blocks).map_err(bad)?,
            Pfn(0),
            pageblock_order,
        );
        self.init_pageblocks(pageblocks);
        self.percpu = PerCpuAreas::new(self.ram.array(percpu_phys.0, nr_cpus as u64).map_err(bad)?);
        for cpu in 0..nr_cpus {
            for pcp in &self.percpu.get(cpu).pcp {
                for list in &pcp.lists {
                    // An all-zero list would claim PFN 0 as its first entry.
                    list.init();
                }
            }
        }
        Ok(())
    }

    /// `memmap_init()`: holes and memblock-reserved pages become `PageReserved` (with a
    /// reference, as `reserve_bootmem_region` leaves them); every pageblock started Movable
    /// when boot installed the flags ([`Mm::init_pageblocks`]).
    /// All other descriptors stay zero: the state of a page inside a free block. Holes
    /// are initialised only where they have descriptors (`init_unavailable_range()` skips
    /// absent sections), up to the end of the last present section (6.6's
    /// `round_up(end_pfn, PAGES_PER_SECTION)`).
    fn memmap_init(&mut self, end_pfn: Pfn) {
        let mut pfn = Pfn(0);
        for r in self.memblock.memory().regions() {
            self.mark_reserved(pfn, PhysAddr(r.base).pfn());
            pfn = PhysAddr(r.end()).pfn();
        }
        self.mark_reserved(pfn, Pfn(self.mem_map.len).max(end_pfn));
        for r in self.memblock.reserved().regions() {
            let start = PhysAddr(r.base).pfn();
            let end = PhysAddr(r.end()).pfn().min(end_pfn);
            self.mark_reserved(start, end);
        }
    }

    /// Mark the pages of `start..end` that have descriptors reserved, stepping over
    /// absent sections.
    fn mark_reserved(&self, start: Pfn, end: Pfn) {
        let mut pfn = start;
        while let Some(next) = self.mem_map.next_present_pfn(pfn).filter(|&p| p < end) {
            let mut pfn_in = next;
            while let Some(page) = self.mem_map.get(pfn_in).filter(|_| pfn_in < end) {
                page.set_flags(PG_RESERVED);
                page.set_refcount(1);
                pfn_in += 1;
            }
            pfn = pfn_in;
        }
    }

    /// `memblock_free_all()`: every free range goes to the buddy allocator in the largest
    /// naturally aligned blocks (`__free_pages_memory`), queued at the tail.
    fn memblock_free_all(&mut self) {
        let mut ranges = [(0u64, 0u64); crate::memblock::MEMBLOCK_REGIONS * 2];
        let mut n = 0;
        self.memblock.for_each_free_range(|s, e| {
            if n < ranges.len() {
                ranges[n] = (s, e);
                n += 1;
            }
        });
        for &(start, end) in &ranges[..n] {
            let mut pfn = PhysAddr(align_up(start, PAGE_SIZE as u64)).pfn();
            let end_pfn = PhysAddr(end).pfn();
            while pfn < end_pfn {
                let mut order = MAX_PAGE_ORDER.min(pfn.raw().trailing_zeros());
                while pfn + (1 << order) > end_pfn {
                    order -= 1;
                }
                self.free_pages_core(pfn, order);
                pfn += 1 << order;
            }
        }
    }

    /// Seed each CPU's random generator from the machine's seed.
    fn seed_random(&mut self) {
        for cpu in 0..self.platform.nr_cpus() {
            let seed = self.seed ^ (cpu as u64).wrapping_mul(0xd6e8_feb8_6659_fd93);
            self.percpu
                .get(cpu)
                .random
                .store(seed, core::sync::atomic::Ordering::Relaxed);
        }
    }
}
