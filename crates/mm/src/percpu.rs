//! The per-CPU areas (`mm/percpu.c`): one [`PerCpu`] per possible CPU, allocated from
//! memblock at boot as the kernel's first percpu chunk is, and counted as `Percpu` in
//! `/proc/meminfo`.

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
}

/// The array of per-CPU areas, in simulated RAM.
pub struct PerCpuAreas {
    base: *const PerCpu,
    nr_cpus: usize,
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
        }
    }

    /// # Safety
    /// `base` must point to `nr_cpus` initialised `PerCpu` values that outlive the result.
    pub(crate) unsafe fn new(base: *const PerCpu, nr_cpus: usize) -> PerCpuAreas {
        PerCpuAreas { base, nr_cpus }
    }

    /// `per_cpu_ptr()`.
    #[inline]
    pub fn get(&self, cpu: usize) -> &PerCpu {
        assert!(
            cpu < self.nr_cpus,
            "cpu {cpu} >= nr_cpu_ids {}",
            self.nr_cpus
        );
        // SAFETY: cpu < nr_cpus, and the areas live as long as `self`.
        unsafe { &*self.base.add(cpu) }
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
