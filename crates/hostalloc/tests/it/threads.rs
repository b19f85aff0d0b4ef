//! Many threads on few CPUs: each call into the kernel claims a CPU for its length.

use std::alloc::Layout;

use kmemlab_hostalloc::workload::splitmix64;

use super::{free, held, kernel};

#[test]
fn six_threads_on_two_cpus_allocate_check_and_give_everything_back() {
    let k = kernel(2);
    let before = k.census().unwrap();
    std::thread::scope(|s| {
        for t in 0..6u64 {
            let k = &k;
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
    assert_eq!(counts.slab + counts.pages + counts.vmalloc, 6 * 6_000);
    assert_eq!(held(&k.census().unwrap()), held(&before));
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
