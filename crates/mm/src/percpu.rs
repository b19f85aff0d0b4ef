//! The per-CPU areas (`mm/percpu.c`): one unit per possible CPU, allocated from memblock
//! at boot as the kernel's first percpu chunk is, and counted as `Percpu` in
//! `/proc/meminfo`. A unit holds the static part ([`PerCpu`]) and a dynamic area from
//! which `alloc_percpu` hands out the same offset on every CPU (the first chunk's
//! `dyn_size`), with an allocation bitmap of 8-byte granules.

use core::sync::atomic::{AtomicU64, Ordering::Relaxed};

use crate::context::PreemptCount;
use crate::page_alloc::{PerCpuPages, MAX_NR_ZONES};

/// A per-CPU event counter (`vm_event_states`): only its own CPU writes it, so an
/// increment is a plain load and store; readers sum over the CPUs.
#[derive(Default)]
#[repr(transparent)]
pub struct EventCounter(AtomicU64);

impl EventCounter {
    /// `__count_vm_events()`: add `n` (only from the owning CPU).
    #[inline]
    pub fn add(&self, n: u64) {
        self.0.store(self.0.load(Relaxed).wrapping_add(n), Relaxed);
    }
    /// The value.
    #[inline]
    pub fn get(&self) -> u64 {
        self.0.load(Relaxed)
    }
}

/// The hot-path event counters of one CPU.
#[repr(C)]
#[derive(Default)]
pub struct PerCpuEvents {
    /// `pgalloc_<zone>`: pages allocated per zone.
    pub pgalloc: [EventCounter; MAX_NR_ZONES],
    /// `pgfree`: pages freed.
    pub pgfree: EventCounter,
}

/// One CPU's private data, cache-line aligned so that CPUs never share a line.
#[repr(C, align(64))]
#[derive(Default)]
pub struct PerCpu {
    /// The CPU's `preempt_count`.
    pub preempt_count: PreemptCount,
    /// The per-CPU page lists of each zone (`zone->per_cpu_pageset`).
    pub pcp: [PerCpuPages; MAX_NR_ZONES],
    /// Event counters.
    pub events: PerCpuEvents,
    /// This CPU's random generator state (`get_random_u64`).
    pub random: AtomicU64,
    /// vmalloc's preloaded spare `vmap_area` for splitting a free block
    /// (`ne_fit_preload_node`), or 0.
    pub ne_fit_preload_node: AtomicU64,
    /// The head of this CPU's deferred-vfree list (`vfree_deferred.list`, an `llist`
    /// threaded through the freed areas themselves), or 0.
    pub vfree_deferred: AtomicU64,
}

/// Bytes of each unit's dynamic area (the kernel reserves 20-28 KiB in the first chunk).
pub const PERCPU_DYNAMIC_SIZE: usize = 32 << 10;
const GRANULE: usize = 8;
const BITMAP_WORDS: usize = PERCPU_DYNAMIC_SIZE / GRANULE / 64;

/// The bytes of one unit: the static part, then the dynamic area.
pub const fn unit_size() -> usize {
    core::mem::size_of::<PerCpu>() + PERCPU_DYNAMIC_SIZE
}

/// The array of per-CPU units, in simulated RAM.
pub struct PerCpuAreas {
    base: *const u8,
    nr_cpus: usize,
    /// Which granules of the dynamic area are taken (same on every CPU).
    map: crate::sync::SpinLockIrq<[u64; BITMAP_WORDS]>,
}

/// A dynamic per-CPU allocation: an offset into every unit's dynamic area.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct PerCpuPtr {
    /// Offset from the start of the dynamic area.
    pub offset: u32,
    /// Size in bytes.
    pub size: u32,
}

// SAFETY: `PerCpu` holds only atomics and trylocks; the array outlives `Mm`.
unsafe impl Send for PerCpuAreas {}
// SAFETY: as above.
unsafe impl Sync for PerCpuAreas {}

impl PerCpuAreas {
    /// Before boot has placed the areas.
    pub(crate) const fn empty() -> PerCpuAreas {
        PerCpuAreas {
            base: core::ptr::null(),
            nr_cpus: 0,
            map: crate::sync::SpinLockIrq::new([0; BITMAP_WORDS]),
        }
    }

    /// # Safety
    /// `base` must point to `nr_cpus` zeroed units of [`unit_size`] bytes, aligned for
    /// `PerCpu`, that outlive the result.
    pub(crate) unsafe fn new(base: *const u8, nr_cpus: usize) -> PerCpuAreas {
        PerCpuAreas {
            base,
            nr_cpus,
            map: crate::sync::SpinLockIrq::new([0; BITMAP_WORDS]),
        }
    }

    fn unit(&self, cpu: usize) -> *const u8 {
        assert!(
            cpu < self.nr_cpus,
            "cpu {cpu} >= nr_cpu_ids {}",
            self.nr_cpus
        );
        // SAFETY: cpu < nr_cpus, so the offset stays inside the units.
        unsafe { self.base.add(cpu * unit_size()) }
    }

    /// `per_cpu_ptr()` of the static part.
    #[inline]
    pub fn get(&self, cpu: usize) -> &PerCpu {
        // SAFETY: each unit starts with a `PerCpu` (zeroed memory is a valid one, and boot
        // initialises its lists), aligned since units are multiples of its alignment; the
        // units live as long as `self`.
        unsafe { &*(self.unit(cpu) as *const PerCpu) }
    }

    /// The host address of a dynamic allocation on `cpu`.
    fn dyn_ptr(&self, cpu: usize, offset: usize) -> *mut u8 {
        assert!(offset < PERCPU_DYNAMIC_SIZE);
        // SAFETY: the dynamic area follows the static part inside the unit.
        unsafe { self.unit(cpu).add(core::mem::size_of::<PerCpu>() + offset) as *mut u8 }
    }

    /// `per_cpu_ptr()` of a dynamic allocation, as a `T`.
    ///
    /// # Safety
    /// `ptr` must come from [`PerCpuAreas::alloc`] with at least `size_of::<T>()` bytes and
    /// alignment for `T`, and `T` must be made of atomics and valid when zeroed.
    #[inline]
    pub unsafe fn dyn_get<T>(&self, cpu: usize, ptr: PerCpuPtr) -> &T {
        assert!(ptr.offset as usize + core::mem::size_of::<T>() <= PERCPU_DYNAMIC_SIZE);
        // SAFETY: in bounds (checked); validity per the caller's contract.
        unsafe { &*(self.dyn_ptr(cpu, ptr.offset as usize) as *const T) }
    }

    /// `alloc_percpu()`: `size` zeroed bytes at the same offset of every CPU's dynamic
    /// area, aligned to `align`; `None` when the area is full.
    pub fn alloc<P: crate::Platform>(
        &self,
        platform: &P,
        size: usize,
        align: usize,
    ) -> Option<PerCpuPtr> {
        let granules = size.div_ceil(GRANULE).max(1);
        let step = (align / GRANULE).max(1);
        let total = PERCPU_DYNAMIC_SIZE / GRANULE;
        let mut map = self.map.lock_irqsave(platform);
        let taken = |map: &[u64; BITMAP_WORDS], g: usize| map[g / 64] & (1 << (g % 64)) != 0;
        let mut start = 0;
        while start + granules <= total {
            if let Some(busy) = (start..start + granules).find(|&g| taken(&map, g)) {
                start = (busy + 1).div_ceil(step) * step;
                continue;
            }
            for g in start..start + granules {
                map[g / 64] |= 1 << (g % 64);
            }
            let ptr = PerCpuPtr {
                offset: (start * GRANULE) as u32,
                size: size as u32,
            };
            for cpu in 0..self.nr_cpus {
                // SAFETY: the range was free, lies inside every unit, and no one else
                // references it yet.
                unsafe { core::ptr::write_bytes(self.dyn_ptr(cpu, ptr.offset as usize), 0, size) };
            }
            return Some(ptr);
        }
        None
    }

    /// `free_percpu()`.
    pub fn free<P: crate::Platform>(&self, platform: &P, ptr: PerCpuPtr) {
        let mut map = self.map.lock_irqsave(platform);
        let first = ptr.offset as usize / GRANULE;
        for g in first..first + (ptr.size as usize).div_ceil(GRANULE).max(1) {
            map[g / 64] &= !(1 << (g % 64));
        }
    }

    /// Bytes of each CPU's dynamic area in use.
    pub fn dyn_used<P: crate::Platform>(&self, platform: &P) -> usize {
        let map = self.map.lock_irqsave(platform);
        map.iter().map(|w| w.count_ones() as usize).sum::<usize>() * GRANULE
    }

    /// Sum a counter over every CPU (`sum_vm_event`).
    pub fn sum(&self, counter: impl Fn(&PerCpuEvents) -> &EventCounter) -> u64 {
        (0..self.nr_cpus)
            .map(|cpu| counter(&self.get(cpu).events).get())
            .sum()
    }

    /// The number of areas.
    pub fn nr_cpus(&self) -> usize {
        self.nr_cpus
    }
}
