//! The kernel core as this test program's `#[global_allocator]`: a `BTreeMap` of a million
//! entries and a 16 MB JSON document, single-threaded and then on four threads sharing
//! two CPUs, with every answer checked and every byte given back at the end.
//!
//! Its own binary with its own `main` (`harness = false`): a global allocator is per
//! binary, and libtest's threads would allocate around the census.
use kmemlab_hostalloc::workload::Workload;
use kmemlab_hostalloc::{HostConfig, Kmemlab};

#[global_allocator]
static KERNEL: Kmemlab = Kmemlab::new(HostConfig {
    cpus: 2,
    ..HostConfig::new()
});

fn main() {
    // The first print allocates stdout's buffer: before the first census, not between.
    println!("global allocator: kmemlab-mm on a host platform");
    // So does the first spawn (the main thread's handle, kept for the program's life).
    std::thread::spawn(|| ()).join().expect("warm-up thread");
    let before = KERNEL.census().expect("census before");

    let work = Workload::FULL;
    let out = work.run();
    assert!(work.check(&out), "wrong answers: {out:?}");
    assert!(out.json_bytes > 4 << 20, "the document needs vmalloc");
    drop(out);

    let small = Workload {
        map_entries: 100_000,
        json_records: 20_000,
        seed: 7,
    };
    let threads: Vec<_> = (0..4u64)
        .map(|t| {
            std::thread::spawn(move || {
                let w = Workload {
                    seed: small.seed + t,
                    ..small
                };
                let out = w.run();
                w.check(&out)
            })
        })
        .collect();
    for t in threads {
        assert!(
            t.join().expect("worker thread"),
            "a thread got wrong answers"
        );
    }

    let after = KERNEL.census().expect("census after");
    let counts = KERNEL.counts();
    println!("before {before:?}\nafter  {after:?}\nserved {counts:?}");
    assert!(counts.slab > 1_000_000, "small sizes come from kmalloc");
    assert!(
        counts.pages > 0,
        "sizes above 8 KiB come from the page allocator"
    );
    assert!(counts.vmalloc > 0, "sizes above 4 MiB come from vmalloc");
    assert_eq!(counts.refused, 0);
    assert_eq!(counts.bad_frees, 0);
    // Every byte back: the same slab objects in use, no vmalloc pages, and the same pages
    // allocated but for the page tables vmalloc made (Linux keeps those too).
    assert_eq!(after.slab_objects, before.slab_objects);
    assert_eq!(after.slab_pages, before.slab_pages);
    assert_eq!(after.vmalloc_pages, 0);
    assert_eq!(
        after.allocated_pages - after.pagetable_pages,
        before.allocated_pages - before.pagetable_pages
    );
    println!("ok: every byte given back");
}
