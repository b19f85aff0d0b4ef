//! `kernel_struct()`, kept only for the modules that have not moved to the door yet
//! (vmalloc's `vmap_area` and `vm_struct` views). The slab allocator itself no longer uses
//! it: it views its structures with [`crate::Mm::kview`].
#![allow(unsafe_code)] // TODO(door): delete this module once vmalloc views its structures with `Mm::kview`.

use core::sync::atomic::AtomicU64;

use crate::platform::Platform;
use crate::Mm;

/// Bytes of the stand-in structure a bad address resolves to.
const SCRATCH_BYTES: usize = 512;

/// What a structure at an address outside RAM resolves to: zeroed atomics in the host that
/// belong to no real kernel structure, so nothing a corrupted pointer leads to reaches
/// outside simulated RAM.
static SCRATCH: Scratch = Scratch([const { AtomicU64::new(0) }; SCRATCH_BYTES / 8]);

#[repr(C, align(64))]
struct Scratch([AtomicU64; SCRATCH_BYTES / 8]);

impl<P: Platform> Mm<P> {
    /// A reference to a structure of type `T` (all atomics) at kernel address `va`. An
    /// address that is not a `T` in the direct map — a corrupted pointer — is the page
    /// fault the kernel would take (reported) and resolves to a zeroed stand-in.
    pub(crate) fn kernel_struct<T>(&self, va: u64) -> &T {
        const { assert!(core::mem::size_of::<T>() <= SCRATCH_BYTES) };
        const { assert!(core::mem::align_of::<T>() <= 64) };
        let phys = self.layout.virt_to_phys(va).filter(|&phys| {
            phys.is_multiple_of(core::mem::align_of::<T>() as u64)
                && self.ram().is_ram(phys, core::mem::size_of::<T>() as u64)
        });
        match phys {
            // SAFETY: in RAM (checked) and aligned; `T` is one of vmalloc's all-atomics
            // kernel structures, valid for any bit pattern.
            Some(phys) => unsafe { &*(self.platform.phys_mem().add(phys as usize) as *const T) },
            None => {
                self.slab_fault(va, false, "kernel structure outside the direct map");
                for word in &SCRATCH.0 {
                    word.store(0, core::sync::atomic::Ordering::Relaxed);
                }
                // SAFETY: `SCRATCH` is zeroed atomics, large and aligned enough for `T`
                // (checked at compile time), and lives for the whole program; `T` is made of
                // atomics, valid as all zeroes, so shared writes through it are sound.
                unsafe { &*(&SCRATCH as *const Scratch as *const T) }
            }
        }
    }
}
