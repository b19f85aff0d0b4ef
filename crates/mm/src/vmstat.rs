//! Global event counters (`enum vm_event_item` of `include/linux/vm_event_item.h`, and a
//! few of kmemlab's own for the rules the kernel enforces with a splat).

use core::sync::atomic::{AtomicU64, Ordering::Relaxed};

macro_rules! events {
    ($($(#[$doc:meta])* $name:ident),* $(,)?) => {
        /// The counters.
        #[derive(Default)]
        pub struct VmEvents {
            $($(#[$doc])* pub $name: AtomicU64,)*
        }

        impl VmEvents {
            /// Every counter with its `/proc/vmstat` name.
            pub fn all(&self) -> impl Iterator<Item = (&'static str, u64)> + '_ {
                [$((stringify!($name), self.$name.load(Relaxed))),*].into_iter()
            }
        }
    };
}

events! {
    /// Direct reclaim entered (`allocstall`).
    allocstall,
    /// Pages scanned by direct reclaim (`pgscan_direct`).
    pgscan_direct,
    /// Pages reclaimed by direct reclaim (`pgsteal_direct`).
    pgsteal_direct,
    /// Allocations that failed (`kmemlab`: the kernel prints a warning instead).
    alloc_fail,
    /// Allocations served from the reserves below the min watermark.
    alloc_reserve,
    /// Per-CPU list drains of all CPUs (`drain_all_pages`).
    drain_all_pages,
    /// Allocations served by a lower zone than the preferred one.
    zone_fallback,
    /// `BUG: sleeping function called from invalid context` splats.
    bug_sleep_in_atomic,
    /// `BUG: Bad page state` reports (double free, wrong order, foreign page).
    bug_bad_page,
    /// `WARNING`s (order too large, bad flags).
    warn,
    /// SLUB fast paths redone because an interrupt changed the CPU's tid
    /// (`note_cmpxchg_failure`).
    slab_cmpxchg_redo,
    /// SLUB `BUG` reports (slab_debug findings, naive double frees).
    bug_slab,
}

impl VmEvents {
    /// Add `n` to a counter.
    #[inline]
    pub fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Relaxed);
    }
}
