//! kmemlab-hostalloc's tests, one module per topic. These use [`Kmemlab`] instances of
//! their own (this binary's global allocator stays the system's); `tests/global.rs` runs
//! the kernel as a program's global allocator.

mod routes;
mod threads;

use std::alloc::{GlobalAlloc, Layout};

use kmemlab_hostalloc::{Census, HostConfig, Kmemlab};
use kmemlab_mm::VirtAddr;

/// A small kernel: 128 MiB of RAM, `cpus` CPUs, messages echoed.
fn kernel(cpus: usize) -> Kmemlab {
    Kmemlab::new(HostConfig {
        ram_bytes: 128 << 20,
        cpus,
        ..HostConfig::new()
    })
}

/// The kernel address behind a host pointer `allocate` returned: the direct map for
/// kmalloc'd memory, `VMALLOC_START` plus the window offset for vmalloc'd.
fn kernel_va(k: &Kmemlab, p: *mut u8) -> VirtAddr {
    k.with_cpu(|mm| {
        let platform = mm.platform();
        if let Some(phys) = platform.host_to_phys(p as usize) {
            return VirtAddr(mm.layout().page_offset + phys);
        }
        let offset = platform.window_offset(p as usize).expect("ours");
        VirtAddr(mm.layout().vmalloc_start + offset)
    })
    .expect("booted")
}

/// Free what `allocate` gave.
fn free(k: &Kmemlab, p: *mut u8, layout: Layout) {
    // SAFETY: `p` came from `k.allocate(layout, _)` and is not used after this.
    unsafe { k.dealloc(p, layout) }
}

/// Pages held, not counting page tables (which vmalloc keeps once made).
fn held(c: &Census) -> (u64, u64, u64) {
    (
        c.allocated_pages - c.pagetable_pages,
        c.slab_objects,
        c.vmalloc_pages,
    )
}
