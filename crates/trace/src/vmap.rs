//! Replay of the vmalloc tracepoints (`include/trace/events/vmalloc.h`) on kmemlab's
//! vmalloc.
//!
//! * `alloc_vmap_area` records the kernel's `alloc_vmap_area()`: a range of `size` bytes
//!   (the guard page included, as `__get_vm_area_node()` adds it before the call) found in
//!   `[vstart, vend)`. kmemlab reserves a bare area of the same size and alignment in its
//!   own vmalloc range ([`Mm::reserve_vmap_area`]): no pages and no mapping, because the
//!   traced kernel's pages for a vmalloc show up in the trace as page events of their own.
//! * `free_vmap_area_noflush` records an area put on the lazy-purge list: kmemlab frees
//!   its area the same way, lazily (entries cleared, range held until a purge).
//! * `purge_vmap_area_lazy` records a purge (one TLB flush for every waiting area):
//!   kmemlab purges at the same point. Its own purges, when its lazily freed pages pass
//!   `lazy_max_pages()`, happen as well, and both are reported.

use kmemlab_mm::{Gfp, Mm, VirtAddr, PAGE_SIZE};

use crate::hash::FxHashMap;
use crate::stats::VmallocSummary;
use kmemlab_sim::SimPlatform;

/// On x86_64, `__START_KERNEL_map`: windows from here up hold the kernel image, modules
/// (`MODULES_VADDR` = 0xffffffffa0000000) and BPF programs, not the vmalloc range. On
/// i386 modules are vmalloc'd from the vmalloc range itself, so every window counts.
const KERNEL_IMAGE_START_64: u64 = 0xffff_ffff_8000_0000;

/// Whether an `alloc_vmap_area` window `[vstart, vend)` is the traced kernel's vmalloc
/// range (or part of it).
pub fn in_vmalloc_range(vstart: u64, vend: u64) -> bool {
    let traced_64bit = vend > u32::MAX as u64 + 1;
    !traced_64bit || vstart < KERNEL_IMAGE_START_64
}

/// A traced area and kmemlab's.
struct LiveArea {
    /// kmemlab's area, `None` if kmemlab could not reserve one.
    addr: Option<VirtAddr>,
    /// Bytes, as traced (rounded up to whole pages).
    size: u64,
}

/// kmemlab's vmalloc counters at one moment, to report what the replay added.
#[derive(Copy, Clone, Default)]
struct Counters {
    purges: u64,
    purged_areas: u64,
    tlb_flushes: u64,
}

impl Counters {
    fn read(mm: &Mm<SimPlatform>) -> Counters {
        use std::sync::atomic::Ordering::Relaxed;
        let s = mm.vmalloc_stats();
        Counters {
            purges: s.purges.load(Relaxed),
            purged_areas: s.purged_areas.load(Relaxed),
            tlb_flushes: s.tlb_flushes.load(Relaxed),
        }
    }
}

/// The vmalloc side of a replay.
pub(super) struct VmapReplay {
    areas: FxHashMap<u64, LiveArea>,
    /// kmemlab's busy vmalloc space when the replay began (boot's own areas).
    busy_at_start: u64,
    at_start: Counters,
    summary: VmallocSummary,
}

impl VmapReplay {
    pub(super) fn new(mm: &Mm<SimPlatform>) -> VmapReplay {
        VmapReplay {
            areas: FxHashMap::default(),
            busy_at_start: busy_vmap_bytes(mm),
            at_start: Counters::read(mm),
            summary: VmallocSummary {
                kmemlab_lazy_max_pages: mm.lazy_max_pages(),
                ..VmallocSummary::default()
            },
        }
    }

    /// `alloc_vmap_area`: reserve kmemlab's area for the traced one. `Err` is kmemlab's
    /// failure, for the report's messages.
    pub(super) fn alloc(
        &mut self,
        mm: &Mm<SimPlatform>,
        addr: u64,
        size: u64,
        align: u64,
        window: (u64, u64),
        failed: bool,
    ) -> Result<(), kmemlab_mm::vmalloc::VmallocError> {
        if failed {
            self.summary.traced_alloc_failures += 1;
            return Ok(());
        }
        self.summary.traced_allocs += 1;
        if !in_vmalloc_range(window.0, window.1) {
            self.summary.outside_vmalloc_range += 1;
            return Ok(());
        }
        self.retire(mm, addr);
        let size = size.max(1).next_multiple_of(PAGE_SIZE as u64);
        let align = if align.is_power_of_two() { align } else { 1 };
        // The traced caller may sleep (alloc_vmap_area() calls might_sleep()).
        let reserved = mm.reserve_vmap_area(size, align, Gfp::GFP_KERNEL);
        let kmemlab = match reserved {
            Ok(a) => {
                self.summary.reserved += 1;
                self.measure(mm);
                Some(a)
            }
            Err(_) => {
                self.summary.reserve_failures += 1;
                None
            }
        };
        self.areas.insert(
            addr,
            LiveArea {
                addr: kmemlab,
                size,
            },
        );
        reserved.map(|_| ())
    }

    /// `free_vmap_area_noflush`: free kmemlab's area lazily.
    pub(super) fn free(&mut self, mm: &Mm<SimPlatform>, addr: u64, nr_lazy_max: u64) {
        self.summary.traced_frees += 1;
        self.summary.traced_lazy_max_pages = Some(nr_lazy_max);
        match self.areas.remove(&addr) {
            Some(area) => self.release(mm, &area),
            None => self.summary.untracked_frees += 1,
        }
    }

    /// `purge_vmap_area_lazy`: purge kmemlab's lazily freed areas now.
    pub(super) fn purge(&mut self, mm: &Mm<SimPlatform>, purged: u64) {
        self.summary.traced_purges += 1;
        self.summary.traced_purged_areas += u128::from(purged);
        if mm.purge_vmap_area_lazy() {
            self.summary.purges_for_traced += 1;
        }
    }

    /// After kmemlab's vmalloc space grew (a traced area reserved, or a `kvmalloc` that
    /// fell back to vmalloc): its busy space beyond boot's, for the peak.
    pub(super) fn measure(&mut self, mm: &Mm<SimPlatform>) {
        let held = busy_vmap_bytes(mm).saturating_sub(self.busy_at_start);
        self.summary.peak_bytes = self.summary.peak_bytes.max(held);
    }

    /// A traced area allocated again while live (its free was not traced): free the
    /// earlier one first.
    fn retire(&mut self, mm: &Mm<SimPlatform>, addr: u64) {
        if let Some(old) = self.areas.remove(&addr) {
            self.release(mm, &old);
        }
    }

    fn release(&mut self, mm: &Mm<SimPlatform>, area: &LiveArea) {
        let Some(a) = area.addr else {
            return;
        };
        // free_vmap_area_noflush(): entries cleared now, the range purged later.
        let pages = (area.size / PAGE_SIZE as u64) as usize;
        let _ = mm.vm_unmap_ram(a, pages);
    }

    /// The summary, with what kmemlab's vmalloc did since the replay began.
    pub(super) fn finish(mut self, mm: &Mm<SimPlatform>) -> VmallocSummary {
        let now = Counters::read(mm);
        let s = &mut self.summary;
        s.kmemlab_purges = now.purges - self.at_start.purges;
        s.kmemlab_purged_areas = now.purged_areas - self.at_start.purged_areas;
        s.kmemlab_tlb_flushes = now.tlb_flushes - self.at_start.tlb_flushes;
        s.live_at_end = self.areas.values().filter(|a| a.addr.is_some()).count() as u64;
        self.summary
    }
}

/// Bytes of kmemlab's busy vmap areas, each from its start to its end (the guard page
/// included, as the kernel's `va_end` includes it): areas freed lazily and waiting for a
/// purge are not busy.
fn busy_vmap_bytes(mm: &Mm<SimPlatform>) -> u64 {
    let mut bytes = 0u64;
    let _ = mm.for_each_vmap_area(&mut |area| {
        if area.vm.is_some() || area.vm_map_ram {
            bytes += area.end.saturating_sub(area.start);
        }
        Ok(())
    });
    bytes
}
