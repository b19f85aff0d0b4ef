//! kvmalloc benchmarks: `kvmalloc` + `kvfree` on a simulated machine, side by side with
//! the allocators a kernel user would otherwise pick (`kmalloc` + `kfree`, `vmalloc` +
//! `vfree` of the same size) and with the host's `std::alloc::alloc` / `dealloc` (the
//! system allocator, an 8-byte-aligned layout of the same size) as the peer.
//!
//! Groups (criterion ids are `group/function`):
//!
//! * `fresh/<size>` for 64 B, 4 KiB, 64 KiB and 1 MiB on a freshly booted 1 GiB machine:
//!   `kvmalloc/<size>` (kmalloc serves every one of these on a fresh machine: a slab
//!   cache up to 8 KiB, the page allocator above), `kmalloc/<size>`, `vmalloc/<size>` and
//!   `peer/<size>`.
//! * `4MiB`: `kvmalloc(4 MiB)` + `kvfree` on a fresh machine (kmalloc_large: one order-10
//!   block) and on two fragmented ones, where kmalloc cannot and kvmalloc falls back to
//!   vmalloc: `fragmented_o10` (one page pinned in every order-10 block of DMA32 and DMA:
//!   order-9 blocks are left, so the `VM_ALLOW_HUGE_VMAP` fallback maps two 2 MiB pages)
//!   and `fragmented_o9` (one page pinned in every order-9 block: the huge attempt fails
//!   and 1,024 order-0 pages are mapped one by one). `kmemlab_sim::fragment` with the
//!   `sparse` pattern pins the pages, so almost all memory stays free and no reclaim
//!   happens. `vmalloc/fresh` and `peer` for comparison.
//!
//! Freed vmalloc areas are purged lazily, as in the kernel, and the purge is part of the
//! amortised cost: the loop runs the drain work item whenever `vfree` scheduled it, as
//! CPU 0's kworker would (a `Machine::run` closure never returns to let the machine run
//! it).
//!
//! Every iteration frees what it allocates; after each kmemlab benchmark the machine's
//! settled free pages (after the lazy purge, with every slab cache shrunk and the per-CPU
//! lists drained, page-table pages counted as free) are checked against what they were
//! before it, and the console must be empty.
//!
//! Each kmemlab timing loop runs inside one `Machine::run` closure, so claiming CPU 0 is
//! not part of what is measured. Machines boot with fixed seeds.
//!
//! Run with `cargo bench -p kmemlab-sim --bench kvmalloc`.

mod common;

use std::alloc::Layout;
use std::hint::black_box;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, BenchmarkGroup, Criterion};
use kmemlab_mm::{Gfp, Mm, VirtAddr, ZoneType};
use kmemlab_sim::{fragment, FragmentPattern, Machine, SimPlatform};

type Group<'a> = BenchmarkGroup<'a, criterion::measurement::WallTime>;

const KIB: usize = 1 << 10;
const MIB: usize = 1 << 20;
/// The sizes of the `fresh` group, with their criterion names.
const SIZES: [(usize, &str); 4] = [
    (64, "64B"),
    (4 * KIB, "4KiB"),
    (64 * KIB, "64KiB"),
    (MIB, "1MiB"),
];

/// `kvfree`, then the drain work if a `vfree` scheduled it.
#[inline]
fn kvfree(mm: &Mm<SimPlatform>, p: VirtAddr) {
    mm.kvfree(p).unwrap();
    if mm.work_pending() {
        mm.run_work();
    }
}

/// `vfree`, then the drain work if it was scheduled.
#[inline]
fn vfree(mm: &Mm<SimPlatform>, p: VirtAddr) {
    mm.vfree(p).unwrap();
    if mm.work_pending() {
        mm.run_work();
    }
}

fn bench_kvmalloc(group: &mut Group<'_>, m: &Machine, name: &str, size: usize, vmalloc: bool) {
    common::no_leak(m, name, || {
        group.bench_function(name, |b| {
            m.run(|mm| {
                b.iter(|| {
                    let p = mm.kvmalloc(black_box(size), Gfp::GFP_KERNEL).unwrap();
                    kvfree(mm, black_box(p));
                })
            })
        });
    });
    // Which allocator served it (checked once more, outside the timed loop).
    m.run(|mm| {
        let p = mm.kvmalloc(size, Gfp::GFP_KERNEL).unwrap();
        assert_eq!(mm.is_vmalloc_addr(p), vmalloc, "{name}: {p}");
        kvfree(mm, p);
    });
}

fn bench_kmalloc(group: &mut Group<'_>, m: &Machine, name: &str, size: usize) {
    common::no_leak(m, name, || {
        group.bench_function(name, |b| {
            m.run(|mm| {
                b.iter(|| {
                    let p = mm.kmalloc(black_box(size), Gfp::GFP_KERNEL).unwrap();
                    mm.kfree(black_box(p)).unwrap();
                })
            })
        });
    });
}

fn bench_vmalloc(group: &mut Group<'_>, m: &Machine, name: &str, size: usize) {
    common::no_leak(m, name, || {
        group.bench_function(name, |b| {
            m.run(|mm| {
                b.iter(|| {
                    let p = mm.vmalloc(black_box(size)).unwrap();
                    vfree(mm, black_box(p));
                })
            })
        });
    });
}

/// The host peer: `std::alloc::alloc` + `dealloc` (the system allocator), 8-byte aligned.
fn bench_peer(group: &mut Group<'_>, name: &str, size: usize) {
    let layout = Layout::from_size_align(size, 8).expect("valid layout");
    group.bench_function(name, |b| {
        b.iter(|| {
            // SAFETY: a non-zero size; the block is freed with the same layout.
            unsafe {
                let p = std::alloc::alloc(black_box(layout));
                assert!(!p.is_null());
                std::alloc::dealloc(black_box(p), layout);
            }
        })
    });
}

fn fresh(c: &mut Criterion) {
    let mut group = c.benchmark_group("fresh");
    let m = common::machine(1);
    for (size, label) in SIZES {
        bench_kvmalloc(&mut group, &m, &format!("kvmalloc/{label}"), size, false);
        bench_kmalloc(&mut group, &m, &format!("kmalloc/{label}"), size);
        bench_vmalloc(&mut group, &m, &format!("vmalloc/{label}"), size);
        bench_peer(&mut group, &format!("peer/{label}"), size);
    }
    group.finish();
}

/// A machine whose DMA32 and DMA zones have no free block of `order` or above (one page
/// pinned in every `2^order` block), and the pins, to release afterwards.
fn fragmented(seed: u64, order: u32) -> (Machine, Vec<kmemlab_sim::Fragmented>) {
    let m = common::machine(seed);
    let pins = [ZoneType::Dma32, ZoneType::Dma]
        .into_iter()
        .map(|zone| fragment(&m, zone, order, FragmentPattern::Sparse).expect("fragments"))
        .collect();
    // kmalloc alone cannot serve 4 MiB now.
    m.run(|mm| {
        let gentle = Gfp::GFP_KERNEL | Gfp::__GFP_NOWARN | Gfp::__GFP_NORETRY;
        assert!(mm.kmalloc(4 * MIB, gentle).is_err());
    });
    (m, pins)
}

fn four_mib(c: &mut Criterion) {
    let mut group = c.benchmark_group("4MiB");
    let size = 4 * MIB;
    let m = common::machine(2);
    bench_kvmalloc(&mut group, &m, "kvmalloc/fresh", size, false);
    bench_vmalloc(&mut group, &m, "vmalloc/fresh", size);
    drop(m);
    for (order, name) in [
        (10, "kvmalloc/fragmented_o10"),
        (9, "kvmalloc/fragmented_o9"),
    ] {
        let (m, pins) = fragmented(3, order);
        bench_kvmalloc(&mut group, &m, name, size, true);
        m.run(|mm| {
            let p = mm.kvmalloc(size, Gfp::GFP_KERNEL).unwrap();
            let area = mm.find_vm_area(p).unwrap();
            let want = if order == 10 { 9 } else { 0 };
            assert_eq!(area.page_order, want, "{name}: page order of the mapping");
            kvfree(mm, p);
        });
        for f in pins {
            f.undo(&m).unwrap();
        }
    }
    bench_peer(&mut group, "peer", size);
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
    targets = fresh, four_mib
}
criterion_main!(benches);
