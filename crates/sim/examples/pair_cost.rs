//! Instruction counts of the hottest pairs, for callgrind: `kmalloc(64)` + `kfree`
//! (`kmalloc`), order-0 `alloc_pages` + `__free_pages` (`pages`) and `kmem_cache_alloc` +
//! `kmem_cache_free` on a 256-byte cache (`cache256`, the `kmem_cache_256` bench), each `N`
//! times on CPU 0 of a 1 GiB machine.
//!
//! Callgrind counts are repeatable whatever else the machine is doing, so the cost of a
//! change to a fast path can be read exactly: run with two counts and divide the
//! difference by the difference in pairs.
//!
//! ```sh
//! cargo build --release -p kmemlab-sim --example pair_cost
//! valgrind --tool=callgrind --callgrind-out-file=/dev/null \
//!     target/release/examples/pair_cost kmalloc 100000   # then 200000
//! ```
//!
//! Further arguments: `stats` boots with SLUB statistics on (`--slub-stats`), `sheaves`
//! with the per-CPU sheaves (`--slab-percpu sheaves`), `order=N` makes the page pair one
//! of order N.

use std::hint::black_box;

use kmemlab_mm::slab::SlabFlags;
use kmemlab_mm::Gfp;
use kmemlab_sim::{Machine, MachineConfig};

fn main() {
    let mut args = std::env::args().skip(1);
    let which = args.next().unwrap_or_else(|| "kmalloc".into());
    let n: u64 = args.next().and_then(|s| s.parse().ok()).unwrap_or(100_000);
    let rest: Vec<String> = args.collect();
    let slub_stats = rest.iter().any(|a| a == "stats");
    // `order=N`: the page pair at order N (default 0).
    let order = rest
        .iter()
        .find_map(|a| a.strip_prefix("order=")?.parse().ok())
        .unwrap_or(0u32);
    let percpu = if rest.iter().any(|a| a == "sheaves") {
        kmemlab_mm::slab::sheaf::SlabPercpu::Sheaves
    } else {
        kmemlab_mm::slab::sheaf::SlabPercpu::CpuSlab
    };
    let m = Machine::new(MachineConfig {
        ram: 1 << 30,
        slab: kmemlab_mm::slab::SlabConfig {
            slub_stats,
            percpu,
            ..Default::default()
        },
        ..Default::default()
    })
    .expect("machine boots");
    m.run(|mm| match which.as_str() {
        "kmalloc" => {
            for _ in 0..n {
                let p = mm.kmalloc(black_box(64), Gfp::GFP_KERNEL).expect("kmalloc");
                mm.kfree(black_box(p)).expect("kfree");
            }
        }
        "pages" => {
            for _ in 0..n {
                let p = mm
                    .alloc_pages(black_box(Gfp::GFP_KERNEL), order)
                    .expect("alloc");
                mm.__free_pages(black_box(p), order).expect("free");
            }
        }
        "cache256" => {
            // As the `kmem_cache_256` bench: kmem_cache_create("bench-256", 256, 0, 0, NULL).
            let r = mm
                .kmem_cache_create("bench-256", 256, 0, SlabFlags::empty(), None)
                .expect("kmem_cache_create");
            for _ in 0..n {
                let p = mm
                    .kmem_cache_alloc(black_box(r), Gfp::GFP_KERNEL)
                    .expect("kmem_cache_alloc");
                mm.kmem_cache_free(black_box(r), black_box(p))
                    .expect("kmem_cache_free");
            }
            mm.kmem_cache_destroy(r).expect("kmem_cache_destroy");
        }
        other => eprintln!("pair_cost: unknown pair '{other}' (kmalloc, pages or cache256)"),
    });
}
