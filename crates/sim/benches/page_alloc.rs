//! Page-allocator benchmarks: kmemlab's buddy allocator on a simulated machine, with
//! peers measured side by side so that ratios can be quoted.
//!
//! Groups (criterion ids are `group/function`):
//!
//! * `order0_alloc_free_pcp`: one order-0 `alloc_pages` + `__free_pages` pair, served by
//!   CPU 0's per-CPU lists. Peers: the host's `malloc` (`std::alloc::alloc`/`dealloc` of a
//!   4 KiB, 4 KiB-aligned layout), `buddy_system_allocator::FrameAllocator` (`alloc(1)`;
//!   holding one other frame, and empty: see [`peer_frame`]) and
//!   `buddy_system_allocator::LockedHeap` (a 4 KiB, 4 KiB-aligned layout).
//! * `order3_alloc_free`: the same for order 3 (32 KiB; still per-CPU lists in kmemlab).
//!   Peers: `FrameAllocator::alloc(8)`, `LockedHeap` with a 32 KiB, 32 KiB-aligned layout.
//! * `order9_fragmented`: an order-9 (2 MiB, one pageblock) pair on fragmented memory (see
//!   [`fragment`]). Peer: `FrameAllocator::alloc(512)` fragmented the same way.
//! * `order0_alloc_free_2cpus`: two host threads, each running as its own simulated CPU,
//!   doing order-0 pairs at the same time (time per pair of one thread). Peer: the host's
//!   `malloc` from two threads.
//! * `boot`: `Machine::new` for 1 GiB and 64 GiB (the machine is dropped outside the
//!   timed region).
//!
//! Each kmemlab timing loop runs inside one `Machine::run` closure, so claiming CPU 0 is
//! not part of what is measured.
//!
//! Run with `cargo bench -p kmemlab-sim --bench page_alloc`; the whole run takes about
//! two minutes.

use std::alloc::{GlobalAlloc, Layout};
use std::hint::black_box;
use std::time::{Duration, Instant};

use buddy_system_allocator::{FrameAllocator, LockedHeap};
use criterion::{criterion_group, criterion_main, BenchmarkGroup, Criterion};
use kmemlab_mm::Gfp;
use kmemlab_sim::{Machine, MachineConfig};

const GIB: u64 = 1 << 30;
/// Pages per pageblock (order 9 on x86_64).
const PAGEBLOCK_PAGES: u64 = 512;
/// One pageblock in every `FREE_BLOCK_STRIDE` (a power of two) is freed whole; the others
/// keep one page.
const FREE_BLOCK_STRIDE: u64 = 8;
const _: () = assert!(FREE_BLOCK_STRIDE.is_power_of_two());

fn machine(ram: u64) -> Machine {
    Machine::new(MachineConfig {
        ram,
        ..Default::default()
    })
    .expect("machine boots")
}

/// The layout of a `2^order`-page block for the heap peers.
fn block_layout(order: u32) -> Layout {
    let size = 4096usize << order;
    Layout::from_size_align(size, size).expect("valid layout")
}

/// A `LockedHeap` over a fresh host buffer of `bytes` (leaked: benchmarks are short-lived).
fn locked_heap(bytes: usize) -> LockedHeap<32> {
    let layout = Layout::from_size_align(bytes, 1 << 21).expect("valid layout");
    // SAFETY: the layout has a non-zero size.
    let base = unsafe { std::alloc::alloc(layout) };
    assert!(!base.is_null(), "host allocation for the heap peer");
    let heap = LockedHeap::<32>::new();
    // SAFETY: `base..base + bytes` is a live host allocation that is never freed or used by
    // anything else.
    unsafe { heap.lock().init(base as usize, bytes) };
    heap
}

/// Whether frame number `frame` (allocated during [`fragment`]'s fill) stays allocated:
/// one page at a pseudo-random offset in each pageblock, except in every
/// `FREE_BLOCK_STRIDE`-th pageblock, which is freed whole. A plain number because the
/// same rule picks kmemlab's PFNs ([`kmemlab_mm::Pfn::raw`]) and the peer's frames.
fn pinned(frame: u64) -> bool {
    let block = frame / PAGEBLOCK_PAGES;
    if block & (FREE_BLOCK_STRIDE - 1) == 0 {
        return false;
    }
    let offset = block.wrapping_mul(0x9e37_79b9_7f4a_7c15) >> 55; // 0..512
    frame % PAGEBLOCK_PAGES == offset
}

/// Fragment memory, the same way for kmemlab and the peer.
///
/// Every free page is allocated as an order-0 page (kmemlab: `GFP_KERNEL | __GFP_NOWARN`
/// until it fails), then freed again except for one page at a pseudo-random offset in each
/// pageblock. One pageblock in eight is freed whole. Afterwards about 7/8 of memory is
/// free, but seven pageblocks in eight hold one pinned page, so their free memory sits in
/// blocks of order 0..=8 (one block of each order, the buddies of the pinned page's
/// ancestors); only the eighth pageblocks are free order-9 blocks, and no two of those are
/// buddies, so there is no free order-10 block. An order-9 request can only be served by
/// an exact-order block.
fn fragment(mm: &kmemlab_mm::Mm<kmemlab_sim::SimPlatform>) {
    let gfp = Gfp::GFP_KERNEL | Gfp::__GFP_NOWARN | Gfp::__GFP_NORETRY;
    let mut pages = Vec::new();
    while let Ok(page) = mm.alloc_pages(gfp, 0) {
        pages.push(page);
    }
    let total = pages.len();
    let mut kept = 0usize;
    for page in pages {
        if pinned(mm.page_to_pfn(page).raw()) {
            kept += 1;
        } else {
            mm.__free_pages(page, 0).expect("free");
        }
    }
    mm.drain_pages(0);
    let order9: u64 = mm
        .zones()
        .iter()
        .filter(|z| z.managed_pages > 0)
        .map(|z| mm.free_area_snapshot(z).nr_free[9..].iter().sum::<u64>())
        .sum();
    eprintln!(
        "order9_fragmented: filled {total} order-0 pages, kept {kept} pinned, \
         {order9} free blocks of order >= 9 left"
    );
    assert!(order9 > 0, "fragmentation left no order-9 block");
}

/// The same fragmentation applied to a `FrameAllocator` of `frames` frames.
fn fragment_frames(frames: usize) -> FrameAllocator<32> {
    let mut fa = FrameAllocator::<32>::new();
    fa.add_frame(0, frames);
    let all: Vec<usize> = std::iter::from_fn(|| fa.alloc(1)).collect();
    for frame in all {
        if !pinned(frame as u64) {
            fa.dealloc(frame, 1);
        }
    }
    fa
}

/// The `FrameAllocator` peers: `alloc(2^order)` + `dealloc` over 1 GiB of frames.
///
/// `peer/buddy_frame` first allocates (and keeps) one block of the same order, as any
/// allocator in use would hold something: the measured block is then the kept block's
/// free buddy, so the pair neither splits nor merges. `peer/buddy_frame_empty` starts from
/// an empty allocator, where every `alloc` splits the single top-order block down to
/// `order` and every `dealloc` merges it all the way back.
fn peer_frame(group: &mut BenchmarkGroup<'_, criterion::measurement::WallTime>, order: u32) {
    let count = 1usize << order;
    for (name, keep_one) in [
        ("peer/buddy_frame", true),
        ("peer/buddy_frame_empty", false),
    ] {
        let mut fa = FrameAllocator::<32>::new();
        fa.add_frame(0, (GIB / 4096) as usize);
        if keep_one {
            fa.alloc(count).expect("frame");
        }
        group.bench_function(name, |b| {
            b.iter(|| {
                let frame = fa.alloc(black_box(count)).expect("frame");
                fa.dealloc(black_box(frame), count);
            })
        });
    }
}

/// The `LockedHeap` peer: `GlobalAlloc::alloc` + `dealloc` of a `2^order`-page block, in
/// a 64 MiB heap that holds one other block of the same size (see [`peer_frame`]).
fn peer_heap(group: &mut BenchmarkGroup<'_, criterion::measurement::WallTime>, order: u32) {
    let heap = locked_heap(64 << 20);
    let layout = block_layout(order);
    // SAFETY: the layout has a non-zero size; the block is kept for good.
    assert!(!unsafe { heap.alloc(layout) }.is_null());
    group.bench_function("peer/buddy_heap", |b| {
        b.iter(|| {
            // SAFETY: the layout has a non-zero size; the block is freed with it.
            unsafe {
                let p = heap.alloc(black_box(layout));
                assert!(!p.is_null());
                heap.dealloc(black_box(p), layout);
            }
        })
    });
}

fn order0(c: &mut Criterion) {
    let mut group = c.benchmark_group("order0_alloc_free_pcp");
    let m = machine(GIB);
    group.bench_function("kmemlab", |b| {
        m.run(|mm| {
            b.iter(|| {
                let p = mm.alloc_pages(black_box(Gfp::GFP_KERNEL), 0).unwrap();
                mm.__free_pages(black_box(p), 0).unwrap();
            })
        })
    });
    let layout = block_layout(0);
    group.bench_function("peer/std_alloc", |b| {
        b.iter(|| {
            // SAFETY: the layout has a non-zero size; the block is freed with it.
            unsafe {
                let p = std::alloc::alloc(black_box(layout));
                assert!(!p.is_null());
                std::alloc::dealloc(black_box(p), layout);
            }
        })
    });
    peer_frame(&mut group, 0);
    peer_heap(&mut group, 0);
    group.finish();
}

fn order3(c: &mut Criterion) {
    let mut group = c.benchmark_group("order3_alloc_free");
    let m = machine(GIB);
    group.bench_function("kmemlab", |b| {
        m.run(|mm| {
            b.iter(|| {
                let p = mm.alloc_pages(black_box(Gfp::GFP_KERNEL), 3).unwrap();
                mm.__free_pages(black_box(p), 3).unwrap();
            })
        })
    });
    peer_frame(&mut group, 3);
    peer_heap(&mut group, 3);
    group.finish();
}

fn order9(c: &mut Criterion) {
    let mut group = c.benchmark_group("order9_fragmented");
    // Set up lazily, so that a filtered run that skips a benchmark skips its setup too.
    let mut machine9 = None;
    group.bench_function("kmemlab", |b| {
        let m = machine9.get_or_insert_with(|| {
            let m = machine(GIB);
            m.run(fragment);
            m
        });
        m.run(|mm| {
            b.iter(|| {
                let p = mm.alloc_pages(black_box(Gfp::GFP_KERNEL), 9).unwrap();
                mm.__free_pages(black_box(p), 9).unwrap();
            })
        })
    });
    let mut frames = None;
    group.bench_function("peer/buddy_frame", |b| {
        let fa = frames.get_or_insert_with(|| fragment_frames((GIB / 4096) as usize));
        b.iter(|| {
            let frame = fa.alloc(black_box(512)).expect("frame");
            fa.dealloc(black_box(frame), 512);
        })
    });
    group.finish();
}

fn boot(c: &mut Criterion) {
    let mut group = c.benchmark_group("boot");
    group.sample_size(10);
    group.warm_up_time(Duration::from_millis(500));
    for (name, ram) in [("1GiB", GIB), ("64GiB", 64 * GIB)] {
        group.bench_function(name, |b| {
            b.iter_custom(|iters| {
                let mut total = Duration::ZERO;
                for _ in 0..iters {
                    let start = Instant::now();
                    let m = machine(black_box(ram));
                    total += start.elapsed();
                    drop(black_box(m));
                }
                total
            })
        });
    }
    group.finish();
}

/// Two host threads, each running as its own CPU, each doing `iters` order-0 pairs at
/// once: per-CPU lists with no shared lock on the fast path. Reports the time per pair of
/// one thread (so equal to the single-thread figure when nothing is shared).
fn order0_two_cpus(c: &mut Criterion) {
    let mut group = c.benchmark_group("order0_alloc_free_2cpus");
    let m = machine(GIB);
    group.bench_function("kmemlab", |b| {
        b.iter_custom(|iters| {
            let start = Instant::now();
            std::thread::scope(|s| {
                for cpu in 0..2 {
                    let m = &m;
                    s.spawn(move || {
                        m.on_cpu(cpu, kmemlab_mm::Context::Process, |mm| {
                            for _ in 0..iters {
                                let p = mm.alloc_pages(black_box(Gfp::GFP_KERNEL), 0).unwrap();
                                mm.__free_pages(black_box(p), 0).unwrap();
                            }
                        })
                        .expect("each thread has its own CPU")
                    });
                }
            });
            start.elapsed()
        })
    });
    let layout = block_layout(0);
    group.bench_function("peer/std_alloc", |b| {
        b.iter_custom(|iters| {
            let start = Instant::now();
            std::thread::scope(|s| {
                for _ in 0..2 {
                    s.spawn(move || {
                        for _ in 0..iters {
                            // SAFETY: non-zero size; freed with the same layout.
                            unsafe {
                                let p = std::alloc::alloc(black_box(layout));
                                assert!(!p.is_null());
                                std::alloc::dealloc(black_box(p), layout);
                            }
                        }
                    });
                }
            });
            start.elapsed()
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
    targets = order0, order3, order9, order0_two_cpus, boot
}
criterion_main!(benches);
