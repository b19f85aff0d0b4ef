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
//! DMA-mapped", `crates/mm/src/dma/debug.rs`), registered by `dma_debug_setup` when
//! `CONFIG_DMA_API_DEBUG` is on.
//!
//! No `alloc`: the hooks are a fixed array, written only at boot (`&mut Mm`), read
//! without a lock on every free. No locks.
//!
//! Start reading at [`Mm::debug_check_no_obj_freed`].

use crate::addr::{PhysAddr, VirtAddr};
use crate::platform::Platform;
use crate::Mm;

/// A check run on every range given back to the page allocator or the slab: the
/// physical address of its first byte and its length in bytes. It reports what it finds
/// (through `crate::report` or `printk`) and must not free memory itself.
pub type FreeHook<P> = fn(&Mm<P>, PhysAddr, u64);

/// Whether a hook has anything to look at now (dma-debug: a streaming mapping is live).
/// Asked first, so that a free costs one load when no hook is armed, as the kernel's
/// `debug_check_no_obj_freed()` costs nothing while `debug_objects_enabled` is off.
pub type FreeHookArmed<P> = fn(&Mm<P>) -> bool;

/// One registered hook: its gate and its check.
struct Registered<P: Platform> {
    armed: FreeHookArmed<P>,
    check: FreeHook<P>,
}

impl<P: Platform> Clone for Registered<P> {
    fn clone(&self) -> Self {
        *self
    }
}
impl<P: Platform> Copy for Registered<P> {}

/// How many free hooks boot may register.
pub const MAX_FREE_HOOKS: usize = 4;

/// The registry: the hooks, in the order they were registered.
pub struct DebugObjects<P: Platform> {
    hooks: [Option<Registered<P>>; MAX_FREE_HOOKS],
}

impl<P: Platform> DebugObjects<P> {
    /// No hook yet.
    pub(crate) const fn new() -> DebugObjects<P> {
        DebugObjects {
            hooks: [None; MAX_FREE_HOOKS],
        }
    }

    /// The hooks registered.
    fn registered(&self) -> impl Iterator<Item = Registered<P>> + '_ {
        self.hooks.iter().map_while(|hook| *hook)
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
    /// Register `hook` to run on every free while `armed` says it has something to check
    /// (boot only: it takes `&mut Mm`).
    pub(crate) fn register_free_hook(
        &mut self,
        armed: FreeHookArmed<P>,
        hook: FreeHook<P>,
    ) -> Result<(), FreeHooksFull> {
        let slot = self
            .debugobjects
            .hooks
            .iter_mut()
            .find(|slot| slot.is_none())
            .ok_or(FreeHooksFull)?;
        *slot = Some(Registered { armed, check: hook });
        Ok(())
    }

    /// How many free hooks boot registered.
    pub fn nr_free_hooks(&self) -> usize {
        self.debugobjects.registered().count()
    }

    /// `debug_check_no_obj_freed(address, size)` for `size` bytes at physical address
    /// `phys` (the page allocator's free path: HighMem pages have no kernel address,
    /// so the range is given by physical address): every registered hook looks at it.
    #[inline]
    pub fn debug_check_no_obj_freed(&self, phys: PhysAddr, size: u64) {
        // The common case inline: no hook, or one that is not armed.
        match self.debugobjects.hooks {
            [None, ..] => {}
            [Some(hook), None, ..] if !(hook.armed)(self) => {}
            _ => self.debug_check_no_obj_freed_slow(phys, size),
        }
    }

    #[cold]
    #[inline(never)]
    fn debug_check_no_obj_freed_slow(&self, phys: PhysAddr, size: u64) {
        for hook in self.debugobjects.registered() {
            if (hook.armed)(self) {
                (hook.check)(self, phys, size);
            }
        }
    }

    /// [`Mm::debug_check_no_obj_freed`] for a direct-map address (a slab object being
    /// freed); an address outside the direct map is not checked.
    #[inline]
    pub fn debug_check_no_obj_freed_virt(&self, addr: VirtAddr, size: u64) {
        // The common case inline: no hook, or one that is not armed.
        match self.debugobjects.hooks {
            [None, ..] => {}
            [Some(hook), None, ..] if !(hook.armed)(self) => {}
            _ => self.debug_check_no_obj_freed_virt_slow(addr, size),
        }
    }

    #[cold]
    #[inline(never)]
    fn debug_check_no_obj_freed_virt_slow(&self, addr: VirtAddr, size: u64) {
        if let Some(phys) = self.layout().virt_to_phys(addr.0) {
            self.debug_check_no_obj_freed_slow(PhysAddr(phys), size);
        }
    }
}
