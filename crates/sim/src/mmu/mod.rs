//! The simulated MMU: a page-table walker that reads the kernel's real x86 entries out of
//! simulated RAM, per-CPU TLBs in front of it, the kernel's TLB shootdown
//! (`flush_tlb_kernel_range`, `arch/x86/mm/tlb.c`), and page faults reported as
//! `arch/x86/mm/fault.c` reports them.
//!
//! Every access goes to the accessing CPU's TLB first and walks the tables only on a miss,
//! as the hardware does. So a CPU that holds a translation keeps using it after the kernel
//! clears the entry, until a flush reaches that CPU: exactly why the kernel must flush
//! before it reuses a freed virtual range (vmalloc's lazy purge batches those flushes).
//! Translations of not-present entries are never cached.
//!
//! The TLB geometry is a modern Intel core's data side: an L1 DTLB of 64 entries (4-way)
//! for 4 KiB pages, 32 entries (4-way) for 2 MiB / 4 MiB pages and 4 fully associative
//! entries for 1 GiB pages, backed by a unified 12-way L2 STLB of 1536 entries holding
//! 4 KiB and 2 MiB / 4 MiB translations; replacement is LRU within a set. Kernel mappings
//! are global, so only a full flush (CR4.PGE toggle, `__flush_tlb_all`) or `INVLPG`
//! removes them.
//!
//! It mirrors the x86 hardware page walker and TLBs plus, from Linux 6.6,
//! `arch/x86/mm/tlb.c` (`flush_tlb_kernel_range`, `do_flush_tlb_all`,
//! `do_kernel_range_flush`) and `arch/x86/mm/fault.c` (`page_fault_oops`,
//! `show_fault_oops`, `dump_pagetable`; `exc_general_protection` in
//! `arch/x86/kernel/traps.c`).
//!
//! Where to start reading: [`Machine::read`](crate::Machine::read) in `access.rs` (a CPU's
//! load, page by page), then [`Mmu::translate`] in `tlb.rs` (TLB first), [`walk`] in
//! `walk.rs` (the page walker on a miss) and `fault.rs` (what a failed access prints).
//!
//! Files: `walk.rs` the page walker and what it returns; `tlb.rs` the per-CPU TLB arrays,
//! [`Mmu`] and the shootdown; `fault.rs` [`PageFault`] and the oops lines; `access.rs`
//! [`Machine`](crate::Machine)'s reads, writes and translations through all of it.
//!
//! Lock order: each CPU's TLB is its own `Mutex` inside [`Mmu`], and no code holds two of
//! them at once (a shootdown takes them one CPU after another). [`Mmu::translate`] holds
//! the accessing CPU's TLB lock while the walker reads entries through
//! `Mm::peek_pt_entry` (atomic loads, no lock of `mm`'s); a fault is reported (printk,
//! counters) only after that lock is dropped. The counters are atomics.

mod access;
mod fault;
mod tlb;
mod walk;

#[cfg(test)]
mod tests;

pub use fault::{PageFault, X86_PF_PROT, X86_PF_RSVD, X86_PF_USER, X86_PF_WRITE};
pub use tlb::{
    Access, Mmu, TlbFlushStats, TlbOccupancy, TlbProbe, TlbStats, L1_1G, L1_4K, L1_LARGE, L2_STLB,
    TLB_FLUSH_ALL, TLB_SINGLE_PAGE_FLUSH_CEILING,
};
pub use walk::{
    page_size_name, walk, FaultReason, PtMemory, RamTables, Source, Translation, Walk, WalkStep,
};
