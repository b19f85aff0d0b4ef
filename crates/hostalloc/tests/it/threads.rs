//! Many threads on few CPUs: each call into the kernel claims a CPU for its length.

use std::alloc::Layout;

use kmemlab_hostalloc::workload::splitmix64;
use kmemlab_hostalloc::{HostConfig, Kmemlab};
use kmemlab_mm::slab::sheaf::SlabPercpu;

use super::{free, held, kernel};

#[test]
fn six_threads_on_two_cpus_allocate_check_and_give_everything_back() {
    let k = kernel(2);
    let before = k.census().unwrap();
    six_threads_on(&k);
    assert_eq!(held(&k.census().unwrap()), held(&before));
}

/// The same on Linux 6.18's per-CPU sheaves (`HostConfig::slab_percpu`). Every object
/// comes back. The sheaves are themselves kmalloc objects: shrinking one cache frees its
/// empty sheaves into another cache's per-CPU slab, so a census leaves a few empty slab
/// pages there, how many depending on which CPU refilled what last (58 to 75 pages were
/// seen over runs); they must not grow from run to run.
#[test]
fn the_same_on_the_sheaves() {
    let k = Kmemlab::new(HostConfig {
        ram_bytes: 128 << 20,
        cpus: 2,
        slab_percpu: SlabPercpu::Sheaves,
        ..HostConfig::new()
    });
    let layer = k.with_cpu(|mm| mm.slab_percpu()).unwrap();
    assert_eq!(layer, SlabPercpu::Sheaves);
    six_threads_on(&k);
    let (settled_pages, settled_objects, _) = held(&k.census().unwrap());
    for _ in 0..4 {
        six_threads_on(&k);
        let (pages, objects, vmalloc) = held(&k.census().unwrap());
        assert_eq!((objects, vmalloc), (settled_objects, 0));
        assert!(
            pages <= settled_pages + 32,
            "{pages} pages held after a run, {settled_pages} after the first"
        );
    }
}

/// Six threads on `k`'s CPUs allocate, write, check and free random sizes; every request
/// is served and every free accepted.
fn six_threads_on(k: &Kmemlab) {
    let served = k.counts();
    std::thread::scope(|s| {
        for t in 0..6u64 {
            s.spawn(move || {
                let mut live: Vec<(*mut u8, Layout, u8)> = Vec::new();
                for i in 0..6_000u64 {
                    let r = splitmix64(t << 32 | i);
                    let size = match r % 16 {
                        0 => 9000 + (r >> 8) as usize % 60_000,
                        _ => 1 + (r >> 8) as usize % 2048,
                    };
                    let layout = Layout::from_size_align(size, 8).unwrap();
                    let p = k.allocate(layout, false);
                    assert!(!p.is_null());
                    let tag = r as u8;
                    // SAFETY: `size` bytes we own.
                    unsafe { p.write_bytes(tag, size) };
                    live.push((p, layout, tag));
                    if !r.is_multiple_of(3) {
                        let (p, layout, tag) = live.swap_remove((r >> 20) as usize % live.len());
                        // SAFETY: `layout.size()` bytes we own, written with `tag`.
                        let bytes = unsafe { std::slice::from_raw_parts(p, layout.size()) };
                        assert!(bytes.iter().all(|&b| b == tag), "another thread's bytes");
                        free(k, p, layout);
                    }
                }
                for (p, layout, _) in live {
                    free(k, p, layout);
                }
            });
        }
    });
    let counts = k.counts();
    assert_eq!((counts.refused, counts.bad_frees), (0, 0));
    // Counted per CPU, summed: every request of the six threads is there once.
    let total = |c: &kmemlab_hostalloc::PathCounts| c.slab + c.pages + c.vmalloc;
    assert_eq!(total(&counts) - total(&served), 6 * 6_000);
}

#[test]
fn a_thread_without_a_cpu_claim_is_stopped_not_run_as_a_second_cpu_0() {
    let k = kernel(2);
    let stopped = k
        .with_cpu(|mm| {
            // This thread holds a CPU; the one it spawns holds none and calls the kernel
            // through the shared `&Mm`: it would run as CPU 0 beside CPU 0's owner.
            std::thread::scope(|s| {
                s.spawn(|| mm.kmalloc(64, kmemlab_mm::Gfp::GFP_KERNEL))
                    .join()
                    .is_err()
            })
        })
        .unwrap();
    assert!(stopped, "an unclaimed thread ran inside the booted kernel");
    // The kernel is untouched: this thread's own calls still work.
    let p = k.allocate(Layout::new::<[u64; 4]>(), false);
    assert!(!p.is_null());
    free(&k, p, Layout::new::<[u64; 4]>());
    assert!(k.with_cpu(|mm| mm.check().is_ok()).unwrap());
}

/// With one CPU, a host allocation made inside `with_cpu` (as any code run there may make
/// when the kernel is the global allocator) stays on the CPU the thread holds instead of
/// waiting for it for ever.
#[test]
fn an_allocation_inside_with_cpu_on_one_cpu_does_not_wait_for_its_own_cpu() {
    let k = kernel(1);
    let layout = Layout::new::<[u64; 8]>();
    let (p, cpu) = k
        .with_cpu(|mm| (k.allocate(layout, false), mm.platform().claim_cpu().cpu()))
        .unwrap();
    assert!(!p.is_null());
    assert_eq!(cpu, 0);
    free(&k, p, layout);
    // The outer claim was given back: another thread gets the CPU.
    let served = std::thread::scope(|s| {
        s.spawn(|| {
            let q = k.allocate(layout, false);
            let served = !q.is_null();
            free(&k, q, layout);
            served
        })
        .join()
        .unwrap()
    });
    assert!(served);
}
