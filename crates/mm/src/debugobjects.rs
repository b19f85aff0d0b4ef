//! Checks on memory being freed: the place of `debug_check_no_obj_freed()`
//! (`lib/debugobjects.c`, Linux 6.6), which `free_pages_prepare()` (`mm/page_alloc.c`)
//! calls for the pages being freed and `slab_free_hook()` (`mm/slub.c`) for each object,
//! before either allocator takes the memory back.
//!
//! In the kernel, debugobjects complains when freed memory still holds a live tracked
//! object (a timer, a work item). kmemlab keeps the call sites and turns the check into
//! a hook registry: a subsystem above the allocators registers a [`FreeHook`] at boot,
//! and the page allocator and the slab call [`Mm::debug_check_no_obj_freed`] (or
//! [`Mm::debug_check_no_obj_freed_virt`]) without naming it, so the arrows keep pointing
//! down. The one user today is dma-debug ("device driver frees memory that is still
//! DMA-mapped", `crates/mm/src/dma/debug/freed.rs`), registered by `dma_debug_setup` when
//! `CONFIG_DMA_API_DEBUG` is on.
//!
//! No `alloc`: the hooks are a fixed array, written only at boot (`&mut Mm`), read
//! without a lock on every free. Beside them is one word of "armed" bits, one per hook,
//! which each hook's owner sets while it has something to look at (dma-debug: while a
//! streaming mapping is live) and clears when it has not. A free reads that word inline
//! and, while it is 0, goes no further: the cost of the kernel's `debug_objects_enabled`
//! test in `debug_check_no_obj_freed()`. No locks: an owner flips its bit under its own.
//!
//! Start reading at [`Mm::debug_check_no_obj_freed`].

use core::sync::atomic::{AtomicU32, Ordering::Relaxed};

use crate::addr::{PhysAddr, VirtAddr};
use crate::platform::Platform;
use crate::Mm;

/// A check run on every range given back to the page allocator or the slab while its
/// hook is armed: the physical address of its first byte and its length in bytes. It
/// reports what it finds (through `crate::report` or `printk`) and must not free memory
/// itself.
pub type FreeHook<P> = fn(&Mm<P>, PhysAddr, u64);

/// How many free hooks boot may register (one armed bit each).
pub const MAX_FREE_HOOKS: usize = 4;

/// A registered hook, as [`Mm::register_free_hook`] names it to its owner: the owner
/// arms and disarms it with [`Mm::arm_free_hook`].
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct FreeHookId(u8);

impl FreeHookId {
    fn bit(self) -> u32 {
        1 << self.0
    }
}

/// The registry: the hooks, in the order they were registered, and which are armed.
pub struct DebugObjects<P: Platform> {
    hooks: [Option<FreeHook<P>>; MAX_FREE_HOOKS],
    /// Bit `i` set: hook `i` has something to check now.
    armed: AtomicU32,
}

impl<P: Platform> DebugObjects<P> {
    /// No hook yet.
    pub(crate) const fn new() -> DebugObjects<P> {
        DebugObjects {
            hooks: [None; MAX_FREE_HOOKS],
            armed: AtomicU32::new(0),
        }
    }
}

/// [`Mm::register_free_hook`] found the registry full.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct FreeHooksFull;

impl core::fmt::Display for FreeHooksFull {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "debugobjects: all {MAX_FREE_HOOKS} free hooks taken")
    }
}

impl core::error::Error for FreeHooksFull {}

impl<P: Platform> Mm<P> {
    /// Register `hook` (boot only: it takes `&mut Mm`). It runs on no free until its
    /// owner arms it with [`Mm::arm_free_hook`].
    pub(crate) fn register_free_hook(
        &mut self,
        hook: FreeHook<P>,
    ) -> Result<FreeHookId, FreeHooksFull> {
        let hooks = &mut self.debugobjects.hooks;
        let slot = hooks
            .iter()
            .position(Option::is_none)
            .ok_or(FreeHooksFull)?;
        hooks[slot] = Some(hook);
        Ok(FreeHookId(slot as u8))
    }

    /// Arm (`true`) or disarm `id`: while armed, it runs on every free. Its owner calls
    /// this under its own lock, where what the hook looks at comes and goes.
    pub(crate) fn arm_free_hook(&self, id: FreeHookId, armed: bool) {
        let word = &self.debugobjects.armed;
        if armed {
            word.fetch_or(id.bit(), Relaxed);
        } else {
            word.fetch_and(!id.bit(), Relaxed);
        }
    }

    /// How many free hooks boot registered.
    pub fn nr_free_hooks(&self) -> usize {
        self.debugobjects.hooks.iter().flatten().count()
    }

    /// How many free hooks are armed now.
    pub fn nr_free_hooks_armed(&self) -> u32 {
        self.debugobjects.armed.load(Relaxed).count_ones()
    }

    /// `debug_check_no_obj_freed(address, size)` for `size` bytes at physical address
    /// `phys` (the page allocator's free path: HighMem pages have no kernel address,
    /// so the range is given by physical address): every armed hook looks at it.
    #[inline]
    pub fn debug_check_no_obj_freed(&self, phys: PhysAddr, size: u64) {
        let armed = self.debugobjects.armed.load(Relaxed);
        if armed != 0 {
            self.run_free_hooks(armed, phys, size);
        }
    }

    /// [`Mm::debug_check_no_obj_freed`] for a direct-map address (a slab object being
    /// freed); an address outside the direct map is not checked.
    #[inline]
    pub fn debug_check_no_obj_freed_virt(&self, addr: VirtAddr, size: u64) {
        let armed = self.debugobjects.armed.load(Relaxed);
        if armed != 0 {
            self.run_free_hooks_virt(armed, addr, size);
        }
    }

    #[cold]
    #[inline(never)]
    fn run_free_hooks(&self, armed: u32, phys: PhysAddr, size: u64) {
        for (i, hook) in self.debugobjects.hooks.iter().enumerate() {
            if let Some(check) = hook
                && armed & (1 << i) != 0
            {
                check(self, phys, size);
            }
        }
    }

    #[cold]
    #[inline(never)]
    fn run_free_hooks_virt(&self, armed: u32, addr: VirtAddr, size: u64) {
        if let Some(phys) = self.layout().virt_to_phys(addr.0) {
            self.run_free_hooks(armed, PhysAddr(phys), size);
        }
    }
}
