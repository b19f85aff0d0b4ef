//! Bulk-interface benchmarks: `kmem_cache_alloc_bulk` + `kmem_cache_free_bulk` against the
//! same number of single `kmem_cache_alloc` / `kmem_cache_free` calls, and
//! `alloc_pages_bulk_array` against single `alloc_pages(0)` calls (the pages freed one by
//! one in both), and `vmalloc(1 MiB)` + `vfree`, whose pages come from the bulk allocator.
//!
//! Groups (criterion ids are `group/function`; the throughput is in objects or pages, so
//! criterion prints the time per object as well):
//!
//! * `kmem_cache_bulk_<n>` for n = 16 and 128, on a 256-byte cache: `single` and `bulk`;
//!   `kmem_cache_bulk_<n>_sheaves` the same on a machine booted with `--slab-percpu
//!   sheaves` (Linux 6.18's per-CPU sheaves: `alloc_from_pcs_bulk`, `free_to_pcs_bulk`).
//! * `page_bulk_<n>` for n = 16 and 128: `single` and `bulk`.
//! * `vmalloc_1MiB`: `vmalloc` + `vfree` (the lazy purge run when `vfree` schedules it),
//!   and `VVec_grow`: a `VVec<u64>` grown by doubling from 4 KiB to 1 MiB, then dropped
//!   (the Rust containers' growth path that the bulk page allocator serves).
//!
//! Counting instructions instead of time: with `KMEMLAB_BENCH_OP=<op>` and
//! `KMEMLAB_BENCH_ITERS=<n>` set, the binary boots the same 1 GiB machine, runs `<op>` `n` times
//! and exits without criterion, so that `valgrind --tool=callgrind` of two runs (n and 0)
//! gives the instructions per operation. The ops are those of [`OPS`];
//! `KMEMLAB_BENCH_PERCPU=sheaves` boots that machine with sheaves.
//!
//! Run with `cargo bench -p kmemlab-sim --bench bulk`.

mod common;

use std::hint::black_box;
use std::time::Duration;

use criterion::{Criterion, Throughput};
use kmemlab_mm::alloc::flags::GFP_KERNEL;
use kmemlab_mm::alloc::VVec;
use kmemlab_mm::slab::sheaf::SlabPercpu;
use kmemlab_mm::slab::{KmemCacheRef, SlabConfig, SlabFlags};
use kmemlab_mm::{Gfp, Mm, Page, VirtAddr};
use kmemlab_sim::{Machine, MachineConfig, SimPlatform};

/// One measured operation on a machine with a 256-byte cache.
type Op = fn(&Mm<SimPlatform>, KmemCacheRef);

/// The operations the instruction-count mode knows, by name.
const OPS: [(&str, Op); 14] = [
    ("kmalloc64_pair", kmalloc64_pair),
    ("kvmalloc64_pair", kvmalloc64_pair),
    ("alloc_pages0_pair", alloc_pages0_pair),
    ("kmem_cache_pair", kmem_cache_pair),
    ("cache_single_16", |mm, r| cache_single::<16>(mm, r)),
    ("cache_bulk_16", |mm, r| cache_bulk::<16>(mm, r)),
    ("cache_single_128", |mm, r| cache_single::<128>(mm, r)),
    ("cache_bulk_128", |mm, r| cache_bulk::<128>(mm, r)),
    ("page_single_16", |mm, _| page_single::<16>(mm)),
    ("page_bulk_16", |mm, _| page_bulk::<16>(mm)),
    ("page_single_128", |mm, _| page_single::<128>(mm)),
    ("page_bulk_128", |mm, _| page_bulk::<128>(mm)),
    ("vmalloc_1mib", vmalloc_1mib),
    ("vvec_grow_1mib", vvec_grow_1mib),
];

fn kmalloc64_pair(mm: &Mm<SimPlatform>, _: KmemCacheRef) {
    let p = mm.kmalloc(black_box(64), Gfp::GFP_KERNEL).unwrap();
    mm.kfree(black_box(p)).unwrap();
}

fn kvmalloc64_pair(mm: &Mm<SimPlatform>, _: KmemCacheRef) {
    let p = mm.kvmalloc(black_box(64), Gfp::GFP_KERNEL).unwrap();
    mm.kvfree(black_box(p)).unwrap();
}

fn alloc_pages0_pair(mm: &Mm<SimPlatform>, _: KmemCacheRef) {
    let p = mm.alloc_pages(black_box(Gfp::GFP_KERNEL), 0).unwrap();
    mm.__free_pages(black_box(p), 0).unwrap();
}

fn kmem_cache_pair(mm: &Mm<SimPlatform>, r: KmemCacheRef) {
    let p = mm.kmem_cache_alloc(black_box(r), Gfp::GFP_KERNEL).unwrap();
    mm.kmem_cache_free(black_box(r), black_box(p)).unwrap();
}

/// `N` single allocations, then `N` single frees.
fn cache_single<const N: usize>(mm: &Mm<SimPlatform>, r: KmemCacheRef) {
    let mut objs = [VirtAddr(0); N];
    for slot in objs.iter_mut() {
        *slot = mm.kmem_cache_alloc(r, Gfp::GFP_KERNEL).unwrap();
    }
    for &p in black_box(&objs) {
        mm.kmem_cache_free(r, p).unwrap();
    }
}

/// One bulk allocation of `N`, one bulk free.
fn cache_bulk<const N: usize>(mm: &Mm<SimPlatform>, r: KmemCacheRef) {
    let mut objs = [VirtAddr(0); N];
    mm.kmem_cache_alloc_bulk(r, Gfp::GFP_KERNEL, &mut objs)
        .unwrap();
    mm.kmem_cache_free_bulk(r, black_box(&mut objs)).unwrap();
}

/// `N` single order-0 allocations, then `N` frees.
fn page_single<const N: usize>(mm: &Mm<SimPlatform>) {
    let mut pages: [Option<&Page>; N] = [None; N];
    for slot in pages.iter_mut() {
        *slot = Some(mm.alloc_pages(Gfp::GFP_KERNEL, 0).unwrap());
    }
    for page in black_box(pages).into_iter().flatten() {
        mm.__free_pages(page, 0).unwrap();
    }
}

/// One bulk allocation of `N` order-0 pages, then `N` single frees.
fn page_bulk<const N: usize>(mm: &Mm<SimPlatform>) {
    let mut pages: [Option<&Page>; N] = [None; N];
    assert_eq!(mm.alloc_pages_bulk_array(Gfp::GFP_KERNEL, &mut pages), N);
    for page in black_box(pages).into_iter().flatten() {
        mm.__free_pages(page, 0).unwrap();
    }
}

fn vmalloc_1mib(mm: &Mm<SimPlatform>, _: KmemCacheRef) {
    let p = mm.vmalloc(black_box(1 << 20)).unwrap();
    mm.vfree(p).unwrap();
    if mm.work_pending() {
        mm.run_work();
    }
}

/// A `VVec<u64>` grown by doubling from one page to 1 MiB (each growth a `vrealloc`,
/// whose new area's pages come from the bulk allocator), then dropped.
fn vvec_grow_1mib(mm: &Mm<SimPlatform>, _: KmemCacheRef) {
    let mut v = VVec::<u64, _>::new(mm);
    let mut capacity = 512;
    while capacity <= 1 << 17 {
        v.reserve(capacity, GFP_KERNEL).unwrap();
        capacity *= 2;
    }
    drop(black_box(v));
    if mm.work_pending() {
        mm.run_work();
    }
}

/// The benchmarks' 1 GiB machine (seed 3) with the given per-CPU slab layer.
fn machine(percpu: SlabPercpu) -> Machine {
    if percpu == SlabPercpu::CpuSlab {
        return common::machine(3);
    }
    Machine::new(MachineConfig {
        ram: common::GIB,
        seed: 3,
        slab: SlabConfig {
            percpu,
            ..SlabConfig::default()
        },
        ..Default::default()
    })
    .expect("machine boots")
}

fn cache(m: &Machine) -> KmemCacheRef {
    m.run(|mm| {
        mm.kmem_cache_create("bench-256", 256, 0, SlabFlags::empty(), None)
            .unwrap()
    })
}

/// `single` and `bulk` of `n` objects or pages in one group.
fn pair_group(
    c: &mut Criterion,
    m: &Machine,
    r: KmemCacheRef,
    name: &str,
    single: Op,
    bulk: Op,
    n: u64,
) {
    let mut group = c.benchmark_group(name);
    group.throughput(Throughput::Elements(n));
    common::no_leak(m, name, || {
        for (id, op) in [("single", single), ("bulk", bulk)] {
            group.bench_function(id, |b| m.run(|mm| b.iter(|| op(mm, r))));
        }
    });
    group.finish();
}

fn benches(c: &mut Criterion) {
    let m = machine(SlabPercpu::CpuSlab);
    let r = cache(&m);
    pair_group(c, &m, r, "kmem_cache_bulk_16", OPS[4].1, OPS[5].1, 16);
    pair_group(c, &m, r, "kmem_cache_bulk_128", OPS[6].1, OPS[7].1, 128);
    pair_group(c, &m, r, "page_bulk_16", OPS[8].1, OPS[9].1, 16);
    pair_group(c, &m, r, "page_bulk_128", OPS[10].1, OPS[11].1, 128);
    let mut group = c.benchmark_group("vmalloc_1MiB");
    common::no_leak(&m, "vmalloc_1MiB", || {
        group.bench_function("vmalloc", |b| m.run(|mm| b.iter(|| vmalloc_1mib(mm, r))));
        group.bench_function("VVec_grow", |b| {
            m.run(|mm| b.iter(|| vvec_grow_1mib(mm, r)))
        });
    });
    group.finish();
    m.run(|mm| mm.kmem_cache_destroy(r).unwrap());
    let m = machine(SlabPercpu::Sheaves);
    let r = cache(&m);
    pair_group(
        c,
        &m,
        r,
        "kmem_cache_bulk_16_sheaves",
        OPS[4].1,
        OPS[5].1,
        16,
    );
    pair_group(
        c,
        &m,
        r,
        "kmem_cache_bulk_128_sheaves",
        OPS[6].1,
        OPS[7].1,
        128,
    );
    m.run(|mm| mm.kmem_cache_destroy(r).unwrap());
}

/// The instruction-count mode: `op` `iters` times on the benchmarks' 1 GiB machine, after
/// one warm-up.
fn count_only(op: &str, iters: u64) {
    let Some(&(_, f)) = OPS.iter().find(|(name, _)| *name == op) else {
        panic!("unknown op {op}; known: {:?}", OPS.map(|(n, _)| n));
    };
    let percpu = std::env::var("KMEMLAB_BENCH_PERCPU")
        .ok()
        .and_then(|p| SlabPercpu::parse(&p))
        .unwrap_or_default();
    let m = machine(percpu);
    let r = cache(&m);
    m.run(|mm| {
        f(mm, r);
        for _ in 0..iters {
            f(mm, r);
        }
    });
}

fn main() {
    if let Ok(op) = std::env::var("KMEMLAB_BENCH_OP") {
        let iters = std::env::var("KMEMLAB_BENCH_ITERS")
            .ok()
            .and_then(|n| n.parse().ok())
            .unwrap_or(0);
        return count_only(&op, iters);
    }
    let mut c = Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3))
        .configure_from_args();
    benches(&mut c);
    c.final_summary();
}
