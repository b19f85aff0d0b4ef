//! Benchmarks of the Rust-for-Linux-style allocation API (`kmemlab_mm::alloc`), whose
//! containers keep their memory inside the simulated machine, side by side with the
//! host's `std` containers a Rust user would otherwise pick.
//!
//! Groups (criterion ids are `group/function`):
//!
//! * `vec_push_100k`: a new vector, 100,000 `push`es of a `u64` one at a time (every
//!   growth a reallocation: doubling from 1 element to 131,072, i.e. 1 MiB, the last few
//!   through the page allocator), then the drop. `KVec` (`krealloc`), `KVVec`
//!   (`kvrealloc`: kmalloc serves it all on a fresh machine, so this measures kvrealloc's
//!   own path), `VVec` (`vrealloc`), and the peer `std::vec::Vec<u64>` (the host's system
//!   allocator). Each kmemlab `push` copies its 8 bytes in through the kernel's mappings
//!   (the elements live in simulated RAM), which is most of the cost.
//! * `box_new_drop`: `KBox::new(mm, u64, GFP_KERNEL)` + drop (a `kmalloc-8` object, the
//!   value copied in), and the peer `std::boxed::Box::new(u64)` + drop.
//!
//! Every iteration drops what it made; after each kmemlab benchmark the machine's settled
//! free pages are checked against what they were before it, and the console must be
//! empty. Each kmemlab timing loop runs inside one `Machine::run` closure; the machine
//! boots with a fixed seed.
//!
//! Run with `cargo bench -p kmemlab-sim --bench alloc_api`.

mod common;

use std::hint::black_box;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, Criterion};
use kmemlab_mm::alloc::flags::GFP_KERNEL;
use kmemlab_mm::alloc::{Allocator, KBox, KVVec, KVec, VVec, Vec as KmVec};
use kmemlab_mm::Mm;
use kmemlab_sim::SimPlatform;

/// Elements pushed per iteration of `vec_push_100k`.
const PUSHES: u64 = 100_000;

/// 100,000 pushes into a new vector of allocator `A`, then its drop (and the lazy-purge
/// work, if a `vfree` scheduled it).
#[inline]
fn push_100k<'a, A: Allocator>(mm: &'a Mm<SimPlatform>, v: KmVec<'a, u64, A, SimPlatform>) {
    let mut v = v;
    for i in 0..PUSHES {
        v.push(black_box(i), GFP_KERNEL).unwrap();
    }
    assert_eq!(v.len(), PUSHES as usize);
    drop(black_box(v));
    if mm.work_pending() {
        mm.run_work();
    }
}

fn vec_push_100k(c: &mut Criterion) {
    let mut group = c.benchmark_group("vec_push_100k");
    group.sample_size(20);
    let m = common::machine(11);
    common::no_leak(&m, "KVec", || {
        group.bench_function("kmemlab/KVec", |b| {
            m.run(|mm| b.iter(|| push_100k(mm, KVec::<u64, _>::new(mm))))
        });
    });
    common::no_leak(&m, "KVVec", || {
        group.bench_function("kmemlab/KVVec", |b| {
            m.run(|mm| b.iter(|| push_100k(mm, KVVec::<u64, _>::new(mm))))
        });
    });
    common::no_leak(&m, "VVec", || {
        group.bench_function("kmemlab/VVec", |b| {
            m.run(|mm| b.iter(|| push_100k(mm, VVec::<u64, _>::new(mm))))
        });
    });
    group.bench_function("peer/std_Vec", |b| {
        b.iter(|| {
            let mut v = Vec::<u64>::new();
            for i in 0..PUSHES {
                v.push(black_box(i));
            }
            assert_eq!(v.len(), PUSHES as usize);
            drop(black_box(v));
        })
    });
    group.finish();
}

fn box_new_drop(c: &mut Criterion) {
    let mut group = c.benchmark_group("box_new_drop");
    let m = common::machine(11);
    common::no_leak(&m, "KBox", || {
        group.bench_function("kmemlab/KBox", |b| {
            m.run(|mm| {
                b.iter(|| {
                    let bx = KBox::new(mm, black_box(42u64), GFP_KERNEL).unwrap();
                    drop(black_box(bx));
                })
            })
        });
    });
    group.bench_function("peer/std_Box", |b| {
        b.iter(|| {
            let bx = Box::new(black_box(42u64));
            drop(black_box(bx));
        })
    });
    group.finish();
}

fn config() -> Criterion {
    Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3))
}

criterion_group! {
    name = benches;
    config = config();
    targets = vec_push_100k, box_new_drop
}
criterion_main!(benches);
