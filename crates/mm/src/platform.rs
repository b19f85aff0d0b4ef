//! The one boundary between the kernel core and what it runs on, in two traits.
//!
//! - [`Hardware`] is the machine: which CPU is running, interrupt save/restore, where
//!   physical memory is, TLB flushes, a clock, a console and cross-CPU calls. It is an
//!   `unsafe` trait because its contract is about memory (see its `# Safety`). The simulator
//!   implements it with simulated CPUs and RAM; a bare-metal kernel would implement it with
//!   `cli`/`sti`, CR3 and `invlpg`.
//! - [`KernelHooks`] is the rest of the kernel around `mm`: the running task (`current`),
//!   the shrinker list, and the point where an interrupt may arrive. Every hook has a
//!   default, so an embedder with no tasks and no shrinkers writes an empty `impl`.
//!
//! [`Platform`] is the pair, implemented for every type that implements both; `Mm<P>` and
//! everything in `mm` is generic over `P: Platform`.

use core::fmt;

use crate::addr::{Pfn, PhysAddr, VirtAddr};
use crate::gfp::Gfp;
use crate::Mm;

/// The interrupt state saved by [`Hardware::local_irq_save`] (`unsigned long flags`).
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct IrqFlags {
    /// Whether interrupts were enabled before the save.
    pub were_enabled: bool,
}

/// A range of usable RAM in the firmware's memory map (an e820 "usable" entry).
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct MemoryRegion {
    /// First byte of the range.
    pub start: PhysAddr,
    /// One past the last byte of the range.
    pub end: PhysAddr,
}

/// Something that can give memory back under pressure (`struct shrinker`, `mm/shrinker.c`).
pub trait Shrinker<P: Platform> {
    /// A short name for reports.
    fn name(&self) -> &str;
    /// How many pages could be freed now (`count_objects`).
    fn count_objects(&self, mm: &Mm<P>) -> u64;
    /// Free up to `nr_to_scan` pages; return how many were freed (`scan_objects`).
    fn scan_objects(&self, mm: &Mm<P>, gfp: Gfp, nr_to_scan: u64) -> u64;
    /// How many pages in zones at or below index `reclaim_idx` could be freed now (an
    /// LRU's `lruvec_lru_size(lru, reclaim_idx)`). By default, all of them.
    fn count_objects_below(&self, mm: &Mm<P>, reclaim_idx: usize) -> u64 {
        let _ = reclaim_idx;
        self.count_objects(mm)
    }
    /// Free up to `nr_to_scan` pages from zones at or below index `reclaim_idx`, passing
    /// over the others as `isolate_lru_folios()` skips folios of zones above
    /// `sc->reclaim_idx`. By default the limit is ignored.
    fn scan_objects_below(&self, mm: &Mm<P>, gfp: Gfp, nr_to_scan: u64, reclaim_idx: usize) -> u64 {
        let _ = reclaim_idx;
        self.scan_objects(mm, gfp, nr_to_scan)
    }
    /// Call `f` with each page this shrinker holds as file pages (those it accounts with
    /// [`Mm::account_page_cache`]), walking its own lists, so that the invariant checker
    /// ([`Mm::check`]) can count them against the file-page counters. By default, none.
    fn for_each_file_page(&self, f: &mut dyn FnMut(Pfn)) {
        let _ = f;
    }
}

/// The hardware (or simulated hardware) under the kernel.
///
/// # Safety
///
/// An implementation promises that [`Hardware::phys_mem`] points to host memory that is
/// readable and writable for every byte of every [`MemoryRegion`] in
/// [`Hardware::memory_map`], for as long as the platform lives, and that nothing else
/// writes that memory behind the kernel's back. It also promises that at most one host
/// thread runs as a given CPU at a time ([`Hardware::smp_processor_id`]), so that per-CPU
/// data touched with interrupts disabled is touched by one thread only.
#[allow(unsafe_code)] // The contract itself: implementing it is the platform's promise.
pub unsafe trait Hardware: Sync + Sized {
    /// Number of possible CPUs (`nr_cpu_ids`).
    fn nr_cpus(&self) -> usize;
    /// The CPU the caller runs on (`smp_processor_id()`).
    fn smp_processor_id(&self) -> usize;
    /// Disable interrupts on this CPU and return the previous state (`local_irq_save`).
    fn local_irq_save(&self) -> IrqFlags;
    /// Restore the state saved by [`Hardware::local_irq_save`] (`local_irq_restore`).
    fn local_irq_restore(&self, flags: IrqFlags);
    /// Are interrupts disabled on this CPU? (`irqs_disabled()`)
    fn irqs_disabled(&self) -> bool;
    /// [`Hardware::irqs_disabled`] asked by a caller that runs on `cpu`, the answer its
    /// [`Hardware::smp_processor_id`] just gave: a platform that keeps each CPU's flag by
    /// the CPU's number reads it without looking the current CPU up again (the kernel's
    /// `irqs_disabled()` reads the flags register, with nothing to look up). By default,
    /// `irqs_disabled()`.
    fn irqs_disabled_on(&self, cpu: usize) -> bool {
        let _ = cpu;
        self.irqs_disabled()
    }
    /// The usable RAM ranges, sorted by address and not overlapping.
    fn memory_map(&self) -> &[MemoryRegion];
    /// Host address of physical address 0: physical address `p` lives at `phys_mem() + p`.
    fn phys_mem(&self) -> *mut u8;
    /// Make the `len` bytes of RAM at `start` (both multiples of `PAGE_SIZE`) read as zero
    /// without the host keeping memory for them, if the platform can: the simulator hands
    /// its host pages back (`madvise(MADV_DONTNEED)` on its anonymous mapping), which
    /// leaves them as a fresh machine's RAM is. Called only at boot, when no other CPU
    /// touches the range. `false`: nothing was done, and the kernel writes the zeroes
    /// itself. By default the platform cannot.
    fn discard_ram(&self, start: PhysAddr, len: u64) -> bool {
        let _ = (start, len);
        false
    }
    /// Mark in `map` the pages of RAM from `start` (a multiple of `PAGE_SIZE`) that are
    /// known to read as zero without being read: bit `i % 64` of `map[i / 64]` for the
    /// page at `start + i * PAGE_SIZE`, a clear bit saying only "not known". Returns how
    /// many pages the map answers for (at most `64 * map.len()`). The simulator answers
    /// from the host's page tables: a host page of its private anonymous mapping that is
    /// neither present nor swapped out was not written since the mapping was made or boot
    /// discarded it ([`Hardware::discard_ram`]), so it holds zeroes. (Only such a mapping
    /// may answer so: a shared or file-backed one keeps its bytes elsewhere.) Asked only by the checker's walk
    /// of `mem_map` ([`crate::Mm::check`]), when no CPU writes RAM, so the answer holds for
    /// the walk; it lets the walk pass the never-written descriptors of free blocks
    /// without the host backing them. By default the platform knows nothing: 0.
    fn known_zero_ram(&self, start: PhysAddr, map: &mut [u64]) -> u64 {
        let _ = (start, map);
        0
    }
    /// Invalidate kernel translations of `[start, end)` in every CPU's TLB
    /// (`flush_tlb_kernel_range`).
    fn flush_tlb_kernel_range(&self, start: VirtAddr, end: VirtAddr);
    /// A monotonic clock in nanoseconds (`local_clock()`).
    fn clock_ns(&self) -> u64;
    /// Print one kernel message line on the console (`printk`).
    fn printk(&self, args: fmt::Arguments<'_>);
    /// Run `f` as CPU `cpu` (`smp_call_function_single`, waiting for it); a platform with
    /// one CPU per caller just calls it.
    fn run_on_cpu(&self, cpu: usize, f: &mut dyn FnMut()) {
        let _ = cpu;
        f()
    }
}

/// What `mm` asks of the rest of the kernel: the running task, the shrinker list and the
/// points where an interrupt may arrive. Each hook has a default that suits a kernel with
/// no tasks, no shrinkers and no interrupts to inject.
pub trait KernelHooks {
    /// The running task's pid, for kernel messages.
    fn current_pid(&self) -> u32 {
        0
    }
    /// The running task's name (`current->comm`), for kernel messages.
    fn current_comm(&self) -> &str {
        "swapper"
    }
    /// Call `f` on each registered shrinker (the `shrinker_list`).
    fn for_each_shrinker(&self, f: &mut dyn FnMut(&dyn Shrinker<Self>))
    where
        Self: Platform,
    {
        let _ = f;
    }
    /// A point inside the allocators where the kernel runs with interrupts enabled (unless
    /// the caller itself disabled them): the platform may deliver an interrupt here (run a
    /// handler in hard-IRQ context) if this CPU's interrupts are enabled.
    fn irq_window(&self, mm: &Mm<Self>)
    where
        Self: Platform,
    {
        let _ = mm;
    }
}

/// Everything `mm` needs from what it runs on: the [`Hardware`] and the [`KernelHooks`].
/// Implemented for every type that implements both; implement those two instead.
pub trait Platform: Hardware + KernelHooks {}

impl<T: Hardware + KernelHooks> Platform for T {}
