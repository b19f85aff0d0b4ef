//! vmalloc benchmarks: the allocation patterns of the kernel's `lib/test_vmalloc.c` on a
//! simulated machine, with the host kernel's `mmap(MAP_PRIVATE | MAP_ANONYMOUS |
//! MAP_POPULATE)` + `munmap` of the same sizes measured side by side (a host peer that
//! also takes pages, maps them and tears the mapping down).
//!
//! Groups (criterion ids are `group/function`):
//!
//! * `fix_size`: `vmalloc(PAGE_SIZE)` + `vfree` (`fix_size_alloc_test`).
//! * `random_size`: `vmalloc(n * PAGE_SIZE)` + `vfree`, n uniform in 1 ..= 100 from a
//!   seeded xorshift (the same sequence for the peer) (`random_size_alloc_test`).
//! * `long_busy_list`: one page allocated and freed while 15,000 one-page areas are live,
//!   and the same with none live (`long_busy_list_alloc_test`). The host peer keeps
//!   15,000 one-page mappings live (each with a `PROT_NONE` page after it, as vmalloc's
//!   guard page, so that they do not merge into one VMA).
//! * `full_fit`: one page allocated and freed after the set-up of `full_fit_alloc_test`:
//!   fls(nr_cpus) × 32 MiB / PAGE_SIZE pairs of one-page areas with every second one freed
//!   and purged, so each allocation exactly fills a 2-page hole.
//!
//! Freed areas are purged lazily, as in the kernel: every `lazy_max_pages()` of freed
//! space one TLB flush gives it all back. That purge is part of the amortised cost, so it
//! is kept: the loop runs the drain work item (`mm.run_work()`) whenever `vfree` scheduled
//! it, as CPU 0's kworker would (a `Machine::run` closure never returns to let the machine
//! run it).
//!
//! Each kmemlab timing loop runs inside one `Machine::run` closure, so claiming CPU 0 is
//! not part of what is measured.
//!
//! Run with `cargo bench -p kmemlab-sim --bench vmalloc`.

use std::hint::black_box;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, BenchmarkGroup, Criterion};
use kmemlab_mm::{Mm, VirtAddr, PAGE_SIZE};
use kmemlab_sim::{Machine, MachineConfig, SimPlatform};

type Group<'a> = BenchmarkGroup<'a, criterion::measurement::WallTime>;

const GIB: u64 = 1 << 30;
/// Live areas in `long_busy_list`.
const BUSY: usize = 15_000;
/// Seed of `random_size`'s sizes.
const SEED: u64 = 0x2545_f491_4f6c_dd1d;

fn machine() -> Machine {
    Machine::new(MachineConfig {
        ram: 2 * GIB,
        ..Default::default()
    })
    .expect("machine boots")
}

/// xorshift64*: small, fast and good enough to pick sizes.
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

    /// Pages in 1 ..= 100.
    #[inline]
    fn pages(&mut self) -> usize {
        1 + (((self.next() >> 32) * 100) >> 32) as usize
    }
}

/// `vfree`, then the drain work if the free scheduled it.
#[inline]
fn vfree(mm: &Mm<SimPlatform>, p: VirtAddr) {
    mm.vfree(p).unwrap();
    if mm.work_pending() {
        mm.run_work();
    }
}

/// `mmap(len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_POPULATE)`.
#[inline]
fn host_mmap(len: usize) -> *mut libc::c_void {
    // SAFETY: an anonymous mapping with no address hint; the result is checked.
    let p = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            len,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_POPULATE,
            -1,
            0,
        )
    };
    assert_ne!(p, libc::MAP_FAILED, "host mmap of {len} bytes");
    p
}

#[inline]
fn host_munmap(p: *mut libc::c_void, len: usize) {
    // SAFETY: `p` is a live mapping of `len` bytes made by `host_mmap`.
    let r = unsafe { libc::munmap(p, len) };
    assert_eq!(r, 0);
}

fn host_pair(group: &mut Group<'_>, name: &str, len: usize) {
    group.bench_function(name, |b| {
        b.iter(|| {
            let p = host_mmap(black_box(len));
            host_munmap(black_box(p), len);
        })
    });
}

fn fix_size(c: &mut Criterion) {
    let mut group = c.benchmark_group("fix_size");
    let m = machine();
    group.bench_function("kmemlab", |b| {
        m.run(|mm| {
            b.iter(|| {
                let p = mm.vmalloc(black_box(PAGE_SIZE)).unwrap();
                vfree(mm, black_box(p));
            })
        })
    });
    host_pair(&mut group, "host_mmap", PAGE_SIZE);
    group.finish();
}

fn random_size(c: &mut Criterion) {
    let mut group = c.benchmark_group("random_size");
    let m = machine();
    let mut rng = XorShift(SEED);
    group.bench_function("kmemlab", |b| {
        m.run(|mm| {
            b.iter(|| {
                let p = mm.vmalloc(black_box(rng.pages() * PAGE_SIZE)).unwrap();
                vfree(mm, black_box(p));
            })
        })
    });
    let mut rng = XorShift(SEED);
    group.bench_function("host_mmap", |b| {
        b.iter(|| {
            let len = rng.pages() * PAGE_SIZE;
            let p = host_mmap(black_box(len));
            host_munmap(black_box(p), len);
        })
    });
    group.finish();
}

fn long_busy_list(c: &mut Criterion) {
    let mut group = c.benchmark_group("long_busy_list");
    let m = machine();
    m.run(|mm| {
        mm.purge_vmap_area_lazy();
    });
    group.bench_function("kmemlab/0_live", |b| {
        m.run(|mm| {
            b.iter(|| {
                let p = mm.vmalloc(black_box(PAGE_SIZE)).unwrap();
                vfree(mm, black_box(p));
            })
        })
    });
    let busy: Vec<VirtAddr> = m.run(|mm| {
        let v = (0..BUSY).map(|_| mm.vmalloc(PAGE_SIZE).unwrap()).collect();
        mm.purge_vmap_area_lazy();
        v
    });
    group.bench_function("kmemlab/15000_live", |b| {
        m.run(|mm| {
            b.iter(|| {
                let p = mm.vmalloc(black_box(PAGE_SIZE)).unwrap();
                vfree(mm, black_box(p));
            })
        })
    });
    m.run(|mm| {
        for p in busy {
            vfree(mm, p);
        }
    });
    host_pair(&mut group, "host_mmap/0_live", PAGE_SIZE);
    // 15,000 live one-page mappings, each followed by a PROT_NONE page so that no two
    // merge into one VMA.
    let live: Vec<*mut libc::c_void> = (0..BUSY)
        .map(|_| {
            let p = host_mmap(2 * PAGE_SIZE);
            // SAFETY: the second page of a live 2-page mapping of ours.
            let r = unsafe {
                libc::mprotect(
                    (p as *mut u8).add(PAGE_SIZE) as *mut libc::c_void,
                    PAGE_SIZE,
                    libc::PROT_NONE,
                )
            };
            assert_eq!(r, 0);
            p
        })
        .collect();
    host_pair(&mut group, "host_mmap/15000_live", PAGE_SIZE);
    for p in live {
        host_munmap(p, 2 * PAGE_SIZE);
    }
    group.finish();
}

fn full_fit(c: &mut Criterion) {
    let mut group = c.benchmark_group("full_fit");
    let m = machine();
    let ptr: Vec<VirtAddr> = m.run(|mm| {
        let junk_length = mm.lazy_max_pages() as usize / 2;
        let mut ptr = Vec::with_capacity(junk_length);
        let mut junk = Vec::with_capacity(junk_length);
        for _ in 0..junk_length {
            ptr.push(mm.vmalloc(PAGE_SIZE).unwrap());
            junk.push(mm.vmalloc(PAGE_SIZE).unwrap());
        }
        for j in junk {
            vfree(mm, j);
        }
        mm.purge_vmap_area_lazy();
        ptr
    });
    group.bench_function("kmemlab", |b| {
        m.run(|mm| {
            b.iter(|| {
                let p = mm.vmalloc(black_box(PAGE_SIZE)).unwrap();
                vfree(mm, black_box(p));
            })
        })
    });
    m.run(|mm| {
        for p in ptr {
            vfree(mm, p);
        }
    });
    host_pair(&mut group, "host_mmap", PAGE_SIZE);
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
    targets = fix_size, random_size, long_busy_list, full_fit
}
criterion_main!(benches);
