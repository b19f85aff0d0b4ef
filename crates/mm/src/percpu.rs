//! The per-CPU areas (`mm/percpu.c`): one unit per possible CPU, allocated from memblock
//! at boot as the kernel's first percpu chunk is, and counted as `Percpu` in
//! `/proc/meminfo`. A unit holds the static part ([`PerCpu`]) and a dynamic area from
//! which `alloc_percpu` hands out the same offset on every CPU (the first chunk's
//! `dyn_size`), with an allocation bitmap of 8-byte granules.

use core::sync::atomic::{AtomicU64, Ordering::Relaxed};

use crate::context::PreemptCount;
use crate::mem::RamArray;
use crate::page_alloc::{PerCpuPages, MAX_NR_ZONES};

/// A per-CPU event counter (`vm_event_states`): only its own CPU writes it, so an
/// increment is a plain load and store; readers sum over the CPUs.
#[derive(Default, zerocopy::FromBytes)]
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
#[derive(Default, zerocopy::FromBytes)]
pub struct PerCpuEvents {
    /// `pgalloc_<zone>`: pages allocated per zone.
    pub pgalloc: [EventCounter; MAX_NR_ZONES],
    /// `pgfree`: pages freed.
    pub pgfree: EventCounter,
    /// kvmalloc's counters (kmemlab's own; see [`crate::util::KvmallocStats`]).
    pub kvmalloc: crate::util::KvmallocEvents,
}

/// One CPU's private data, cache-line aligned so that CPUs never share a line.
#[repr(C, align(64))]
#[derive(Default, zerocopy::FromBytes)]
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
    core::mem::size_of::<Unit>()
}

/// One CPU's unit as boot lays it out: the static part, then the dynamic area.
#[repr(C)]
#[derive(zerocopy::FromBytes)]
pub(crate) struct Unit {
    static_part: PerCpu,
    dynamic: [AtomicU64; PERCPU_DYNAMIC_SIZE / 8],
}

const _: () = assert!(unit_size() == core::mem::size_of::<PerCpu>() + PERCPU_DYNAMIC_SIZE);

/// The array of per-CPU units, in simulated RAM.
pub struct PerCpuAreas {
    units: RamArray<Unit>,
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

impl PerCpuAreas {
    /// Before boot has placed the areas.
    pub(crate) const fn empty() -> PerCpuAreas {
        PerCpuAreas {
            units: RamArray::empty(),
            nr_cpus: 0,
            map: crate::sync::SpinLockIrq::new([0; BITMAP_WORDS]),
        }
    }

    /// The areas over `units`, one per CPU.
    pub(crate) fn new(units: RamArray<Unit>) -> PerCpuAreas {
        PerCpuAreas {
            nr_cpus: units.len() as usize,
            units,
            map: crate::sync::SpinLockIrq::new([0; BITMAP_WORDS]),
        }
    }

    #[inline(always)]
    fn unit(&self, cpu: usize) -> &Unit {
        match self.units.get(cpu as u64) {
            Some(unit) => unit,
            None => self.no_such_cpu(cpu),
        }
    }

    /// A CPU number comes from the platform, never from RAM: one outside the machine is a
    /// broken platform (a bug in the embedding), not a corrupted kernel.
    #[cold]
    #[inline(never)]
    fn no_such_cpu(&self, cpu: usize) -> ! {
        panic!("cpu {cpu} >= nr_cpu_ids {}", self.nr_cpus)
    }

    /// `per_cpu_ptr()` of the static part.
    #[inline]
    pub fn get(&self, cpu: usize) -> &PerCpu {
        &self.unit(cpu).static_part
    }

    /// The words of a dynamic allocation on `cpu`, or `None` if `ptr` does not lie in
    /// the dynamic area (a pointer read back from RAM may be anything).
    #[inline]
    fn dyn_words(&self, cpu: usize, ptr: PerCpuPtr) -> Option<&[AtomicU64]> {
        let first = ptr.offset as usize;
        let end = first.checked_add(ptr.size as usize)?;
        if !first.is_multiple_of(8) || end > PERCPU_DYNAMIC_SIZE {
            return None;
        }
        self.unit(cpu).dynamic.get(first / 8..end.div_ceil(8))
    }

    /// `per_cpu_ptr()` of a dynamic allocation, as a `T` made of 64-bit atomic words
    /// (viewed through the door, so any bytes are a valid `T`), or `None` if `ptr` does
    /// not describe a `T` inside the dynamic area.
    ///
    /// The checks are three compares on `ptr` alone: the allocation is at least a `T`, it
    /// starts on a `T` (and word) boundary, and a `T` there ends inside the dynamic area.
    #[inline(always)]
    pub fn dyn_get<T: zerocopy::FromBytes>(&self, cpu: usize, ptr: PerCpuPtr) -> Option<&T> {
        let size = core::mem::size_of::<T>();
        let first = ptr.offset as usize;
        if (ptr.size as usize) < size
            || !first.is_multiple_of(core::mem::align_of::<T>().max(8))
            || first > PERCPU_DYNAMIC_SIZE.checked_sub(size)?
        {
            return None;
        }
        crate::mem::view_words(self.unit(cpu).dynamic.get(first / 8..)?)
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
                if let Some(words) = self.dyn_words(cpu, ptr) {
                    words.iter().for_each(|w| w.store(0, Relaxed));
                }
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

impl<P: crate::Platform> crate::Mm<P> {
    /// The per-CPU areas with their dynamic allocator (`pcpu_alloc()`, `free_percpu()`,
    /// `per_cpu_ptr()`), for the subsystems that keep per-CPU structures (the slab's
    /// `kmem_cache_cpu` and sheaves).
    #[inline]
    pub(crate) fn percpu_areas(&self) -> &PerCpuAreas {
        &self.percpu
    }
}
