//! Scaling benchmarks: the allocators' fast paths on one simulated CPU driven by one host
//! thread, and on two simulated CPUs driven by two host threads at once.
//!
//! Groups (criterion ids are `group/function`), each with `1cpu` and `2cpus`:
//!
//! * `scaling_kmalloc64`: `kmalloc(64, GFP_KERNEL)` + `kfree`.
//! * `scaling_alloc_pages0`: `alloc_pages(GFP_KERNEL, 0)` + `__free_pages`.
//! * `scaling_kvmalloc64`: `kvmalloc(64, GFP_KERNEL)` + `kvfree` (kmalloc serves it).
//! * `scaling_kmem_cache256`: `kmem_cache_alloc` + `kmem_cache_free` on a 256-byte cache.
//!
//! Every thread does `iters` pairs on its own CPU; the time reported is the wall time of
//! the whole run, so it is the time per pair of one thread. With nothing shared on the fast
//! path the `2cpus` figure equals the `1cpu` one (two threads do twice the work in the same
//! time): the throughput ratio is `2 × t(1cpu) / t(2cpus)`. The machine has two CPUs, so a
//! ratio near 2 needs two idle host cores.
//!
//! On a shared host the wall time of the `2cpus` runs also measures the other processes.
//! With `KMEMLAB_SCALING_CPU_TIME=<pairs>` set, the binary skips criterion and prints, for
//! each group, the CPU time per pair of each thread (its `utime + stime` from
//! `/proc/thread-self/stat`, in clock ticks of 10 ms, over `<pairs>` pairs): a thread slowed
//! by cache lines bouncing between the CPUs spends more CPU time per pair, while one merely
//! waiting for a host core does not.
//!
//! Run with `cargo bench -p kmemlab-sim --bench scaling`.

mod common;

use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::{criterion_group, Criterion};
use kmemlab_mm::slab::{KmemCacheRef, SlabFlags};
use kmemlab_mm::{Context, Gfp, Mm};
use kmemlab_sim::{Machine, SimPlatform};

/// A 1 GiB machine (four CPUs, of which two are used).
fn machine() -> Machine {
    common::machine(1)
}

/// One allocation and its free, on what `Op` names.
type Pair = fn(&Mm<SimPlatform>, Op);

/// What one pair works on.
#[derive(Copy, Clone)]
enum Op {
    /// Nothing beyond the call itself.
    None,
    /// A cache.
    Cache(KmemCacheRef),
}

/// Run `pair` `iters` times on each of `cpus` CPUs, one host thread per CPU, all at once;
/// the wall time of the whole run.
fn run_with(m: &Machine, cpus: usize, iters: u64, pair: Pair, op: Op) -> Duration {
    let start = Instant::now();
    std::thread::scope(|s| {
        for cpu in 0..cpus {
            s.spawn(move || {
                m.on_cpu(cpu, Context::Process, |mm| {
                    for _ in 0..iters {
                        pair(mm, op);
                    }
                })
                .expect("each thread has its own CPU")
            });
        }
    });
    start.elapsed()
}

fn kmalloc_pair(mm: &Mm<SimPlatform>, _: Op) {
    let p = mm.kmalloc(black_box(64), Gfp::GFP_KERNEL).unwrap();
    mm.kfree(black_box(p)).unwrap();
}

fn page_pair(mm: &Mm<SimPlatform>, _: Op) {
    let p = mm.alloc_pages(black_box(Gfp::GFP_KERNEL), 0).unwrap();
    mm.__free_pages(black_box(p), 0).unwrap();
}

fn kvmalloc_pair(mm: &Mm<SimPlatform>, _: Op) {
    let p = mm.kvmalloc(black_box(64), Gfp::GFP_KERNEL).unwrap();
    mm.kvfree(black_box(p)).unwrap();
}

fn cache_pair(mm: &Mm<SimPlatform>, op: Op) {
    let Op::Cache(r) = op else { return };
    let p = mm.kmem_cache_alloc(black_box(r), Gfp::GFP_KERNEL).unwrap();
    mm.kmem_cache_free(black_box(r), black_box(p)).unwrap();
}

/// One group: the pair on one CPU, then on two at once; checks nothing leaked.
fn group(c: &mut Criterion, name: &str, m: &Machine, pair: Pair, op: Op) {
    let mut group = c.benchmark_group(name);
    common::no_leak(m, name, || {
        for cpus in [1, 2] {
            let id = if cpus == 1 { "1cpu" } else { "2cpus" };
            group.bench_function(id, |b| {
                b.iter_custom(|iters| run_with(m, cpus, iters, pair, op))
            });
        }
    });
    group.finish();
}

fn kmalloc64(c: &mut Criterion) {
    let m = machine();
    group(c, "scaling_kmalloc64", &m, kmalloc_pair, Op::None);
}

fn alloc_pages0(c: &mut Criterion) {
    let m = machine();
    group(c, "scaling_alloc_pages0", &m, page_pair, Op::None);
}

fn kvmalloc64(c: &mut Criterion) {
    let m = machine();
    group(c, "scaling_kvmalloc64", &m, kvmalloc_pair, Op::None);
}

fn kmem_cache256(c: &mut Criterion) {
    let m = machine();
    let r = m.run(|mm| {
        mm.kmem_cache_create("bench-256", 256, 0, SlabFlags::empty(), None)
            .unwrap()
    });
    group(c, "scaling_kmem_cache256", &m, cache_pair, Op::Cache(r));
    m.run(|mm| mm.kmem_cache_destroy(r).unwrap());
}

fn config() -> Criterion {
    Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3))
}

criterion_group! {
    name = benches;
    config = config();
    targets = kmalloc64, alloc_pages0, kvmalloc64, kmem_cache256
}

/// This thread's CPU time so far, in nanoseconds (clock ticks of 10 ms).
fn thread_cpu_ns() -> u64 {
    let stat = std::fs::read_to_string("/proc/thread-self/stat").expect("procfs");
    // The fields after the command name (which is in parentheses): utime is the 12th,
    // stime the 13th.
    let rest = &stat[stat.rfind(')').expect("comm") + 2..];
    let fields: Vec<u64> = rest
        .split_whitespace()
        .skip(11)
        .take(2)
        .map(|f| f.parse().expect("a number"))
        .collect();
    (fields[0] + fields[1]) * 10_000_000
}

/// Each thread's CPU time per pair, for `cpus` threads doing `iters` pairs each at once.
fn cpu_time_per_pair(m: &Machine, cpus: usize, iters: u64, pair: Pair, op: Op) -> Vec<f64> {
    std::thread::scope(|s| {
        let threads: Vec<_> = (0..cpus)
            .map(|cpu| {
                s.spawn(move || {
                    m.on_cpu(cpu, Context::Process, |mm| {
                        let start = thread_cpu_ns();
                        for _ in 0..iters {
                            pair(mm, op);
                        }
                        (thread_cpu_ns() - start) as f64 / iters as f64
                    })
                    .expect("each thread has its own CPU")
                })
            })
            .collect();
        threads
            .into_iter()
            .map(|t| t.join().expect("thread"))
            .collect()
    })
}

/// The CPU-time mode (see the module doc).
fn cpu_time_mode(iters: u64) {
    let m = machine();
    let r = m.run(|mm| {
        mm.kmem_cache_create("bench-256", 256, 0, SlabFlags::empty(), None)
            .unwrap()
    });
    let groups: [(&str, Pair, Op); 4] = [
        ("scaling_kmalloc64", kmalloc_pair, Op::None),
        ("scaling_alloc_pages0", page_pair, Op::None),
        ("scaling_kvmalloc64", kvmalloc_pair, Op::None),
        ("scaling_kmem_cache256", cache_pair, Op::Cache(r)),
    ];
    for (name, pair, op) in groups {
        let one = cpu_time_per_pair(&m, 1, iters, pair, op);
        let two = cpu_time_per_pair(&m, 2, iters, pair, op);
        let two_mean = two.iter().sum::<f64>() / two.len() as f64;
        println!(
            "{name}: 1cpu {:.1} ns/pair; 2cpus {:.1} and {:.1} ns/pair; CPU-time scaling {:.2}x",
            one[0],
            two[0],
            two[1],
            2.0 * one[0] / two_mean
        );
    }
    m.run(|mm| mm.kmem_cache_destroy(r).unwrap());
}

fn main() {
    if let Some(iters) = std::env::var("KMEMLAB_SCALING_CPU_TIME")
        .ok()
        .and_then(|n| n.parse().ok())
    {
        return cpu_time_mode(iters);
    }
    benches();
    Criterion::default().configure_from_args().final_summary();
}
