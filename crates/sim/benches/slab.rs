//! Slab-allocator benchmarks: kmemlab's SLUB (`kmalloc`/`kfree`, `kmem_cache_alloc`/
//! `kmem_cache_free`) on a simulated machine, with host allocators measured side by side
//! so that ratios can be quoted.
//!
//! Groups (criterion ids are `group/function`):
//!
//! * `kmalloc64_hot`: one `kmalloc(64, GFP_KERNEL)` + `kfree` pair on CPU 0: the per-CPU
//!   lockless fast path of `kmalloc-64`.
//! * `kmalloc_random_churn`: 10,000 live objects of random sizes 8 ..= 8192 bytes
//!   (uniform; every size is served by a kmalloc cache, none by `kmalloc_large`). Each
//!   iteration frees the object in a random slot and allocates a new random size into it.
//!   The random numbers (a seeded xorshift, the same sequence for every allocator) are part
//!   of what is measured, for kmemlab and the peers alike.
//! * `kmem_cache_256`: one `kmem_cache_alloc` + `kmem_cache_free` pair on a 256-byte
//!   cache created with `kmem_cache_create("bench-256", 256, 0, 0, NULL)`.
//!
//! Peers in every group: the host's system allocator (`std::alloc::System`), mimalloc
//! (`mimalloc::MiMalloc`) and talc (`talc::Talck`, a `no_std` allocator, over a 256 MiB
//! arena of host memory it alone uses), each called through `GlobalAlloc::alloc`/`dealloc`
//! with an 8-byte-aligned layout of the same size (none is installed as the global
//! allocator).
//!
//! kmemlab runs twice in each group: `kmemlab` with Linux 6.6's per-CPU slab (the
//! default), `kmemlab/sheaves` with Linux 6.18's per-CPU sheaves (`--slab-percpu sheaves`).
//!
//! Each kmemlab timing loop runs inside one `Machine::run` closure, so claiming CPU 0 is
//! not part of what is measured.
//!
//! Run with `cargo bench -p kmemlab-sim --bench slab`; the whole run takes about a minute.

use std::alloc::{GlobalAlloc, Layout, System};
use std::hint::black_box;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, BenchmarkGroup, Criterion};
use kmemlab_mm::slab::sheaf::SlabPercpu;
use kmemlab_mm::slab::{SlabConfig, SlabFlags};
use kmemlab_mm::{Gfp, VirtAddr};
use kmemlab_sim::{Machine, MachineConfig};
use mimalloc::MiMalloc;
use talc::{ErrOnOom, Span, Talc, Talck};

type Group<'a> = BenchmarkGroup<'a, criterion::measurement::WallTime>;

const GIB: u64 = 1 << 30;
/// Live objects in `kmalloc_random_churn`.
const LIVE: usize = 10_000;
/// Smallest and largest request in `kmalloc_random_churn`.
const MIN_SIZE: usize = 8;
const MAX_SIZE: usize = 8192;
/// Seed of the churn's random numbers.
const SEED: u64 = 0x2545_f491_4f6c_dd1d;

/// A machine whose caches keep per-CPU objects in `percpu`'s way: 6.6's CPU slab (the
/// default) or 6.18's sheaves (`--slab-percpu sheaves`).
fn machine_with(ram: u64, percpu: SlabPercpu) -> Machine {
    Machine::new(MachineConfig {
        ram,
        slab: SlabConfig {
            percpu,
            ..Default::default()
        },
        ..Default::default()
    })
    .expect("machine boots")
}

/// The kmemlab functions of each group: the default CPU slab, and the sheaves.
const PERCPU: [(&str, SlabPercpu); 2] = [
    ("kmemlab", SlabPercpu::CpuSlab),
    ("kmemlab/sheaves", SlabPercpu::Sheaves),
];

/// A malloc-like layout for the host peers: `size` bytes, 8-byte aligned.
fn layout(size: usize) -> Layout {
    Layout::from_size_align(size, 8).expect("valid layout")
}

/// xorshift64*: small, fast and good enough to pick sizes and slots.
struct XorShift(u64);

impl XorShift {
    #[inline]
    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// A value in `0..n` (multiply-shift; the bias is negligible for these `n`).
    #[inline]
    fn below(&mut self, n: usize) -> usize {
        (((self.next() >> 32) * n as u64) >> 32) as usize
    }

    #[inline]
    fn size(&mut self) -> usize {
        MIN_SIZE + self.below(MAX_SIZE - MIN_SIZE + 1)
    }
}

/// Bytes of talc's arena: the churn's 10,000 live objects of up to 8 KiB with room to
/// spare. The host commits its pages as talc touches them.
const TALC_ARENA: usize = 256 << 20;

/// A talc allocator over an arena of its own, as a `no_std` kernel would set it up over
/// a region of memory it owns (the arena is leaked: it lives as long as the bench).
fn talc_peer() -> Talck<spin::Mutex<()>, ErrOnOom> {
    let arena: &'static mut [u8] = Box::leak(vec![0u8; TALC_ARENA].into_boxed_slice());
    let talck = Talc::new(ErrOnOom).lock::<spin::Mutex<()>>();
    // SAFETY: the arena is valid, writable memory that nothing else uses, for ever.
    unsafe {
        talck
            .lock()
            .claim(Span::from_base_size(arena.as_mut_ptr(), arena.len()))
    }
    .expect("talc takes its arena");
    talck
}

/// The host-allocator peers (`System`, `MiMalloc`, talc) each doing `alloc(size)` +
/// `dealloc` in a loop.
fn peers_pair(group: &mut Group<'_>, size: usize) {
    fn pair<A: GlobalAlloc>(group: &mut Group<'_>, name: &str, a: &A, size: usize) {
        let layout = layout(size);
        group.bench_function(name, |b| {
            b.iter(|| {
                // SAFETY: the layout has a non-zero size; the block is freed with it.
                unsafe {
                    let p = a.alloc(black_box(layout));
                    assert!(!p.is_null());
                    a.dealloc(black_box(p), layout);
                }
            })
        });
    }
    pair(group, "peer/system", &System, size);
    pair(group, "peer/mimalloc", &MiMalloc, size);
    pair(group, "peer/talc", &talc_peer(), size);
}

fn kmalloc64_hot(c: &mut Criterion) {
    let mut group = c.benchmark_group("kmalloc64_hot");
    for (name, percpu) in PERCPU {
        let m = machine_with(GIB, percpu);
        group.bench_function(name, |b| {
            m.run(|mm| {
                b.iter(|| {
                    let p = mm.kmalloc(black_box(64), Gfp::GFP_KERNEL).unwrap();
                    mm.kfree(black_box(p)).unwrap();
                })
            })
        });
    }
    peers_pair(&mut group, 64);
    group.finish();
}

/// The churn on a host allocator: pre-fill `LIVE` random sizes, then each iteration
/// replaces the object in a random slot. Everything is freed at the end.
fn churn_peer<A: GlobalAlloc>(group: &mut Group<'_>, name: &str, a: &A) {
    let mut rng = XorShift(SEED);
    let mut slots: Vec<(*mut u8, usize)> = (0..LIVE)
        .map(|_| {
            let size = rng.size();
            // SAFETY: non-zero size; freed below with the same layout.
            let p = unsafe { a.alloc(layout(size)) };
            assert!(!p.is_null());
            (p, size)
        })
        .collect();
    group.bench_function(name, |b| {
        b.iter(|| {
            let slot = &mut slots[rng.below(LIVE)];
            let size = rng.size();
            // SAFETY: `slot` holds a live block of `slot.1` bytes from `a`; the new block
            // has a non-zero size and is recorded with it.
            unsafe {
                a.dealloc(black_box(slot.0), layout(slot.1));
                let p = a.alloc(black_box(layout(size)));
                assert!(!p.is_null());
                *slot = (p, size);
            }
        })
    });
    for (p, size) in slots {
        // SAFETY: every slot holds a live block of its recorded size from `a`.
        unsafe { a.dealloc(p, layout(size)) };
    }
}

/// The churn on kmemlab's `kmalloc`/`kfree` on `m`: the live set is set up once, outside
/// the routine (criterion calls it for the warm-up and for every sample, and the same live
/// set carries on through all of them), and freed at the end.
fn churn_kmemlab(group: &mut Group<'_>, name: &str, m: &Machine) {
    let mut rng = XorShift(SEED);
    let mut slots: Vec<VirtAddr> = m.run(|mm| {
        (0..LIVE)
            .map(|_| mm.kmalloc(rng.size(), Gfp::GFP_KERNEL).unwrap())
            .collect()
    });
    group.bench_function(name, |b| {
        m.run(|mm| {
            b.iter(|| {
                let slot = &mut slots[rng.below(LIVE)];
                let size = rng.size();
                mm.kfree(black_box(*slot)).unwrap();
                *slot = mm.kmalloc(black_box(size), Gfp::GFP_KERNEL).unwrap();
            })
        })
    });
    m.run(|mm| {
        for p in slots {
            mm.kfree(p).unwrap();
        }
    });
}

fn kmalloc_random_churn(c: &mut Criterion) {
    let mut group = c.benchmark_group("kmalloc_random_churn");
    for (name, percpu) in PERCPU {
        churn_kmemlab(&mut group, name, &machine_with(GIB, percpu));
    }
    churn_peer(&mut group, "peer/system", &System);
    churn_peer(&mut group, "peer/mimalloc", &MiMalloc);
    churn_peer(&mut group, "peer/talc", &talc_peer());
    group.finish();
}

fn kmem_cache_256(c: &mut Criterion) {
    let mut group = c.benchmark_group("kmem_cache_256");
    for (name, percpu) in PERCPU {
        let m = machine_with(GIB, percpu);
        let r = m.run(|mm| {
            mm.kmem_cache_create("bench-256", 256, 0, SlabFlags::empty(), None)
                .unwrap()
        });
        group.bench_function(name, |b| {
            m.run(|mm| {
                b.iter(|| {
                    let p = mm.kmem_cache_alloc(black_box(r), Gfp::GFP_KERNEL).unwrap();
                    mm.kmem_cache_free(black_box(r), black_box(p)).unwrap();
                })
            })
        });
        m.run(|mm| mm.kmem_cache_destroy(r).unwrap());
    }
    peers_pair(&mut group, 256);
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
    targets = kmalloc64_hot, kmalloc_random_churn, kmem_cache_256
}
criterion_main!(benches);
