//! kmemlab's kernel core: the Linux kernel's page allocator, SLUB slab allocator and
//! vmalloc, rebuilt in `no_std` Rust without `alloc`.
//!
//! Every piece of allocator metadata lives inside the physical memory it manages: boot
//! carves the `struct page` array, the pageblock flags and the per-CPU areas out of RAM
//! with a memblock allocator, exactly as the kernel does, hands the rest to the buddy
//! allocator, and bootstraps the slab allocator's own caches inside slabs. All the
//! hardware this needs is behind one trait, [`Platform`].
//!
//! ```text
//! Mm::boot(platform, BootConfig) -> Mm
//!   alloc_pages / __free_pages / __get_free_pages / free_pages / get_zeroed_page
//!   page_address / virt_to_page / page_to_pfn / pfn_to_page / page_zone
//!   kmalloc / kzalloc / kcalloc / kmalloc_array / krealloc / kfree / ksize / ...
//!   kmem_cache_create / _alloc / _zalloc / _free / _shrink / _destroy
//!   vmalloc / vzalloc / vmalloc_huge / __vmalloc / vrealloc / vfree / vmap / vunmap / ...
//!   try_to_free_pages / wakeup_kswapd / kswapd_run / pgdat_balanced   (vmscan)
//!   account_page_cache / mod_zone_page_state / mod_node_page_state  (vmstat)
//!   kvmalloc / kvzalloc / kvmalloc_array / kvcalloc / kvrealloc / kvfree / kvfree_sensitive
//!   alloc::{KBox, VBox, KVBox, KVec, VVec, KVVec}: Rust-for-Linux-style containers
//!   dma_map_single / dma_map_sg / dma_alloc_coherent / dma_pool_* / dma_stats (dma/)
//!   sysctl_read / sysctl_write (vm.min_free_kbytes, watermark_*, lowmem_reserve_ratio, ...)
//!   procfs::{buddyinfo, pagetypeinfo, zoneinfo, meminfo, slabinfo, vmallocinfo, vmstat}
//!   check()
//! ```
#![no_std]
#![warn(missing_docs)]
// Only the named modules that must touch host memory may use `unsafe`: `mem` (the one
// door to simulated RAM) and `platform` (the contract a platform signs).
#![deny(unsafe_code)]
#![deny(clippy::undocumented_unsafe_blocks)]

pub mod addr;
pub mod alloc;
pub mod arch;
pub mod check;
pub mod context;
pub mod debugobjects;
pub mod dma;
pub mod gfp;
pub mod maccess;
pub mod mem;
pub mod memblock;
pub mod memory_model;
pub mod mm_init;
pub mod mm_types;
pub mod page_alloc;
pub mod percpu;
pub mod platform;
pub mod procfs;
pub mod report;
pub mod slab;
pub mod sync;
pub mod util;
pub mod vmalloc;
pub mod vmscan;
pub mod vmstat;

pub use addr::{Pfn, PhysAddr, VirtAddr, MAX_PAGE_ORDER, PAGE_SHIFT, PAGE_SIZE};
pub use arch::{Layout, Profile};
pub use context::Context;
pub use gfp::Gfp;
pub use mm_init::{BootConfig, BootError};
pub use mm_types::Page;
pub use page_alloc::sysctl;
pub use page_alloc::{FreeError, MigrateType, PageAllocError, Watermark, Zone, ZoneType};
pub use platform::{Hardware, IrqFlags, KernelHooks, MemoryRegion, Platform, Shrinker};

use memblock::Memblock;
use memory_model::MemMap;
use percpu::{PerCpu, PerCpuAreas};
use vmstat::VmEvents;

/// The kernel's memory-management state: what the kernel keeps in `.data`/`.bss`
/// (`contig_page_data`, `memblock`, `vm_event_states`, ...), with pointers to the metadata
/// that boot placed in RAM.
pub struct Mm<P: Platform> {
    platform: P,
    /// The one door to RAM.
    ram: mem::PhysMem,
    /// Taint, oops counter and panic state.
    reports: report::Reports,
    layout: Layout,
    seed: u64,
    /// The boot allocator's final state (`memblock`).
    memblock: Memblock,
    /// `mem_map`: the page descriptors, placed in RAM at boot (`memory_model`).
    mem_map: MemMap,
    /// The per-CPU areas, placed in RAM at boot (`percpu`).
    percpu: PerCpuAreas,
    /// The page allocator: zones, pageblocks, tunables (`page_alloc`).
    page_alloc: page_alloc::PageAlloc,
    /// Event and page-state counters (`vmstat`).
    vmstat: vmstat::VmStat,
    /// Reclaim: the node's kswapd (`vmscan`).
    vmscan: vmscan::Vmscan,
    /// The kernel's page tables and direct map (`arch`).
    arch: arch::ArchMm,
    /// The slab allocator's caches, tables and page counts.
    slab: slab::SlabGlobals,
    /// vmalloc's trees, lists and counters.
    vmalloc: vmalloc::VmallocGlobals,
    /// swiotlb, dma-debug and the DMA counters.
    dma: dma::DmaGlobals,
    /// The checks run on every free, registered at boot (`debug_check_no_obj_freed`).
    debugobjects: debugobjects::DebugObjects<P>,
}

impl<P: Platform> Mm<P> {
    /// The platform underneath.
    pub fn platform(&self) -> &P {
        &self.platform
    }

    /// The kernel's virtual address map.
    pub fn layout(&self) -> &Layout {
        &self.layout
    }

    /// The profile booted.
    pub fn profile(&self) -> Profile {
        self.layout.profile
    }

    /// The seed that fixes every random choice.
    pub fn seed(&self) -> u64 {
        self.seed
    }

    /// The boot allocator's final state: RAM and what boot reserved.
    pub fn memblock(&self) -> &Memblock {
        &self.memblock
    }

    /// The `mem_map` array.
    pub fn mem_map(&self) -> &MemMap {
        &self.mem_map
    }

    /// `get_random_u64()`: from this CPU's generator, seeded from the machine's seed
    /// (SplitMix64), so runs repeat.
    pub fn get_random_u64(&self) -> u64 {
        let state = &self.this_cpu().random;
        let x = state
            .load(core::sync::atomic::Ordering::Relaxed)
            .wrapping_add(0x9e37_79b9_7f4a_7c15);
        state.store(x, core::sync::atomic::Ordering::Relaxed);
        let mut z = x;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// The per-CPU area of `cpu`.
    pub fn per_cpu(&self, cpu: usize) -> &PerCpu {
        self.percpu.get(cpu)
    }

    /// This CPU's area (`this_cpu_ptr`).
    #[inline]
    pub fn this_cpu(&self) -> &PerCpu {
        self.percpu.get(self.platform.smp_processor_id())
    }

    /// Print a kernel message line through the platform's console.
    pub(crate) fn printk(&self, args: core::fmt::Arguments<'_>) {
        self.platform.printk(args)
    }
}

/// Enter a context on the current CPU: the simulator calls this around the code it runs
/// as an interrupt (`irq_enter()` / `irq_exit()`, `nmi_enter()`, `__local_bh_disable_ip`).
impl<P: Platform> Mm<P> {
    /// Add `ctx`'s offset to this CPU's `preempt_count`.
    pub fn enter_context(&self, ctx: Context) {
        self.this_cpu().preempt_count.add(ctx.offset());
    }

    /// Undo [`Mm::enter_context`].
    pub fn exit_context(&self, ctx: Context) {
        self.this_cpu().preempt_count.sub(ctx.offset());
    }

    /// `preempt_disable()`.
    pub fn preempt_disable(&self) {
        self.this_cpu().preempt_count.add(context::PREEMPT_OFFSET);
    }

    /// `preempt_enable()`.
    pub fn preempt_enable(&self) {
        self.this_cpu().preempt_count.sub(context::PREEMPT_OFFSET);
    }

    /// `in_interrupt()` on this CPU.
    pub fn in_interrupt(&self) -> bool {
        self.this_cpu().preempt_count.in_interrupt()
    }

    /// `in_atomic()` on this CPU.
    pub fn in_atomic(&self) -> bool {
        self.this_cpu().preempt_count.in_atomic()
    }

    /// `might_sleep()`: refuse (and report the kernel's splat) when this CPU may not sleep.
    #[inline]
    pub fn might_sleep(&self) -> Result<(), context::SleepInAtomic> {
        self.might_sleep_on(self.platform.smp_processor_id())
    }

    /// [`Mm::might_sleep`] when the caller already knows it runs on `cpu`.
    #[inline]
    pub(crate) fn might_sleep_on(&self, cpu: usize) -> Result<(), context::SleepInAtomic> {
        self.might_sleep_in(cpu, self.percpu.get(cpu))
    }

    /// [`Mm::might_sleep_on`] with the current CPU's area, `this_cpu`, in hand.
    #[inline]
    pub(crate) fn might_sleep_in(
        &self,
        cpu: usize,
        this_cpu: &PerCpu,
    ) -> Result<(), context::SleepInAtomic> {
        if this_cpu.preempt_count.get() == 0 && !self.platform.irqs_disabled_on(cpu) {
            return Ok(());
        }
        Err(self.sleep_in_atomic_splat())
    }

    /// `__might_resched()`'s report, counted.
    #[cold]
    #[inline(never)]
    fn sleep_in_atomic_splat(&self) -> context::SleepInAtomic {
        let pc = &self.this_cpu().preempt_count;
        let irqs_disabled = self.platform.irqs_disabled();
        let bug = context::SleepInAtomic {
            in_atomic: pc.in_atomic(),
            irqs_disabled,
            preempt_count: pc.get(),
            cpu: self.platform.smp_processor_id() as u32,
        };
        VmEvents::add(&self.events().bug_sleep_in_atomic, 1);
        let (file, line) = context::MIGHT_ALLOC_SITE;
        self.printk(format_args!(
            "BUG: sleeping function called from invalid context at {file}:{line}"
        ));
        self.printk(format_args!(
            "in_atomic(): {}, irqs_disabled(): {}, non_block: 0, pid: {}, name: {}",
            bug.in_atomic as u8,
            irqs_disabled as u8,
            self.platform.current_pid(),
            self.platform.current_comm()
        ));
        self.printk(format_args!(
            "preempt_count: {:x}, expected: 0",
            bug.preempt_count
        ));
        self.printk(format_args!("RCU nest depth: 0, expected: 0"));
        self.printk(format_args!(
            "CPU: {} PID: {} Comm: {} Not tainted 6.6.0-kmemlab #1",
            bug.cpu,
            self.platform.current_pid(),
            self.platform.current_comm()
        ));
        bug
    }
}
