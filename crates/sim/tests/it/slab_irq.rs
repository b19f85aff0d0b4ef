//! Interrupts inside the allocator: a hard-IRQ handler that kmallocs (GFP_ATOMIC) and
//! kfrees objects of the same size class is injected at every interrupt window of a
//! process-context kmalloc / kfree on the same CPU (the points where the kernel runs with
//! interrupts enabled: between reading the tid and the compare-exchange of the fast paths,
//! before a new slab is allocated). Afterwards no object was lost or handed out twice,
//! every object kept its contents, `check()` passes, and the fast paths had to redo
//! (`slab_cmpxchg_redo`), which is the tid protocol at work.

use std::collections::BTreeMap;
use std::sync::atomic::AtomicBool;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::{Arc, Mutex};

use crate::fixtures::*;
use kmemlab_mm::slab::{KmemCacheRef, SlabFlags};
use kmemlab_mm::{Context, Gfp, Hardware, Mm, VirtAddr};
use kmemlab_sim::{Machine, SimPlatform};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// What is allocated, by whom it can be freed, and what it must contain.
#[derive(Default)]
struct Model {
    /// Address → (bytes written, tag).
    live: BTreeMap<u64, (usize, u8)>,
    next_tag: u8,
    irqs: u64,
    irq_allocs: u64,
    irq_frees: u64,
    /// Interrupts armed by an interrupt handler for the retry.
    chained: u64,
}

impl Model {
    fn tag(&mut self) -> u8 {
        self.next_tag = self.next_tag.wrapping_add(1).max(1);
        self.next_tag
    }

    /// Record a fresh object; it must not overlap any live one.
    fn insert(&mut self, mm: &Mm<SimPlatform>, p: VirtAddr, len: usize, tag: u8, who: &str) {
        let usable = mm.ksize(p).unwrap_or(len).max(len) as u64;
        if let Some((&a, &(alen, _))) = self.live.range(..=p.0).next_back() {
            let aend = a + (mm.ksize(VirtAddr(a)).unwrap_or(alen).max(alen)) as u64;
            assert!(
                aend <= p.0,
                "{who}: {p} handed out while {a:#x} (to {aend:#x}) is live"
            );
        }
        if let Some((&b, _)) = self.live.range(p.0 + 1..).next() {
            assert!(
                p.0 + usable <= b,
                "{who}: {p} (+{usable}) overlaps live {b:#x}"
            );
        }
        fill(mm, p, len, tag);
        self.live.insert(p.0, (len, tag));
    }

    /// Take a random live object out of the model, its contents verified.
    fn take_random(&mut self, mm: &Mm<SimPlatform>, rng: &mut ChaCha8Rng) -> Option<VirtAddr> {
        if self.live.is_empty() {
            return None;
        }
        let i = rng.gen_range(0..self.live.len());
        let (&a, &(len, tag)) = self.live.iter().nth(i).unwrap();
        self.live.remove(&a);
        verify(mm, VirtAddr(a), len, tag);
        Some(VirtAddr(a))
    }
}

fn fill(mm: &Mm<SimPlatform>, p: VirtAddr, len: usize, tag: u8) {
    mm.copy_to_kernel(p, &vec![tag; len]).unwrap();
}

fn verify(mm: &Mm<SimPlatform>, p: VirtAddr, len: usize, tag: u8) {
    let mut buf = vec![0; len];
    mm.copy_from_kernel(p, &mut buf).unwrap();
    if let Some(i) = buf.iter().position(|&b| b != tag) {
        panic!(
            "object {p} ({len} bytes, tag {tag:#x}) changed at byte {i}: {:#x}",
            buf[i]
        );
    }
}

/// Where objects come from: a kmalloc size, or a cache of its own.
#[derive(Copy, Clone, Debug)]
pub(crate) enum Source {
    Kmalloc(usize),
    Cache(KmemCacheRef, usize),
}

impl Source {
    fn alloc(self, mm: &Mm<SimPlatform>, gfp: Gfp) -> VirtAddr {
        match self {
            Source::Kmalloc(size) => mm.kmalloc(size, gfp),
            Source::Cache(r, _) => mm.kmem_cache_alloc(r, gfp),
        }
        .unwrap_or_else(|e| panic!("{self:?} {gfp:?}: {e}"))
    }
    fn free(self, mm: &Mm<SimPlatform>, p: VirtAddr) {
        match self {
            Source::Kmalloc(_) => mm.kfree(p),
            Source::Cache(r, _) => mm.kmem_cache_free(r, p),
        }
        .unwrap_or_else(|e| panic!("free {p} ({self:?}): {e}"))
    }
    fn size(self) -> usize {
        match self {
            Source::Kmalloc(size) | Source::Cache(_, size) => size,
        }
    }
}

/// The interrupt handler: allocate 1–3 objects with GFP_ATOMIC and free 0–2 live ones.
/// Sometimes it arms the next interrupt for the interrupted operation's retry (up to
/// `chain` more), so that redone fast paths are interrupted too.
fn handler(
    shared: Arc<Mutex<Model>>,
    src: Source,
    seed: u64,
    chain: u32,
) -> kmemlab_sim::machine::IrqHandler {
    Box::new(move |mm: &Mm<SimPlatform>| {
        assert!(mm.in_interrupt(), "the handler runs in interrupt context");
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        if chain > 0 && rng.gen_bool(0.3) {
            let cpu = mm.platform().smp_processor_id();
            let next = handler(shared.clone(), src, rng.r#gen(), chain - 1);
            mm.platform().inject_irq(cpu, rng.gen_range(0..2), next);
        }
        let mut model = shared.lock().unwrap();
        model.irqs += 1;
        if chain < 3 {
            model.chained += 1;
        }
        for _ in 0..rng.gen_range(1..=3) {
            let p = src.alloc(mm, Gfp::GFP_ATOMIC);
            let tag = model.tag();
            model.insert(mm, p, src.size(), tag, "irq kmalloc");
            model.irq_allocs += 1;
        }
        for _ in 0..rng.gen_range(0..=2) {
            if let Some(p) = model.take_random(mm, &mut rng) {
                src.free(mm, p);
                model.irq_frees += 1;
            }
        }
    })
}

/// One process-context operation on the current CPU. The model's lock is not held while
/// the allocator runs (the handler takes it).
fn process_op(mm: &Mm<SimPlatform>, shared: &Arc<Mutex<Model>>, src: Source, rng: &mut ChaCha8Rng) {
    let live = shared.lock().unwrap().live.len();
    let alloc = match live {
        0..=20 => true,
        21..=400 => rng.gen_bool(0.5),
        _ => false,
    };
    if alloc {
        let p = src.alloc(mm, Gfp::GFP_KERNEL);
        let mut model = shared.lock().unwrap();
        let tag = model.tag();
        model.insert(mm, p, src.size(), tag, "process kmalloc");
    } else {
        let p = shared.lock().unwrap().take_random(mm, rng);
        if let Some(p) = p {
            src.free(mm, p);
        }
    }
}

fn total_free(mm: &Mm<SimPlatform>) -> u64 {
    mm.zones().iter().map(|z| z.free_pages()).sum()
}

struct Outcome {
    irqs: u64,
    chained: u64,
    max_window: u64,
    redo: u64,
}

/// Sweep: for each round, inject at window 0, 1, 2, … of consecutive process operations
/// on `cpu` until an operation passes fewer windows than the injection point.
fn sweep(m: &Machine, src: Source, cpu: usize, rounds: usize, seed: u64) -> Outcome {
    let shared = Arc::new(Mutex::new(Model::default()));
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let other = (cpu + 1) % m.config().cpus;
    let redo0 = m.mm().events().slab_cmpxchg_redo.load(Relaxed);
    let mut max_window = 0;
    let platform = m.platform();
    for round in 0..rounds {
        // Some work on another CPU first: its frees of this CPU's objects are remote
        // frees, its allocations take partial slabs.
        for _ in 0..rng.gen_range(0..4) {
            m.on_cpu(other, Context::Process, |mm| {
                process_op(mm, &shared, src, &mut rng)
            })
            .unwrap();
        }
        let mut n = 0u64;
        loop {
            let seed = rng.r#gen();
            let fired = Arc::new(AtomicBool::new(false));
            let inner = handler(shared.clone(), src, seed, 3);
            let f = fired.clone();
            platform.inject_irq(
                cpu,
                n,
                Box::new(move |mm: &Mm<SimPlatform>| {
                    f.store(true, Relaxed);
                    inner(mm)
                }),
            );
            let windows = platform.irq_windows();
            m.on_cpu(cpu, Context::Process, |mm| {
                process_op(mm, &shared, src, &mut rng)
            })
            .unwrap();
            let passed = platform.irq_windows() - windows;
            // A chained interrupt the retry did not reach is withdrawn.
            platform.cancel_irq();
            if !fired.load(Relaxed) {
                // This operation had fewer than n + 1 windows: the sweep is complete.
                assert!(
                    passed <= n,
                    "not delivered after {passed} windows at n = {n}"
                );
                break;
            }
            max_window = max_window.max(n);
            n += 1;
            assert!(n < 1000, "round {round}: an operation with 1000 windows?");
        }
        if m.mm().zones().iter().map(|z| z.managed_pages).sum::<u64>() <= 64 * 256
            || round % 50 == 0
        {
            m.mm()
                .check()
                .unwrap_or_else(|e| panic!("round {round}: check(): {e}"));
        }
    }
    // Free everything (contents verified), from both CPUs.
    let mut model = shared.lock().unwrap();
    let irqs = model.irqs;
    let chained = model.chained;
    assert!(model.irq_allocs > 0 && model.irq_frees > 0);
    let mut i = 0;
    while let Some(p) = model.take_random(&m.mm(), &mut rng) {
        m.on_cpu(i % 2 * other + (1 - i % 2) * cpu, Context::Process, |mm| {
            src.free(mm, p)
        })
        .unwrap();
        i += 1;
    }
    drop(model);
    m.mm()
        .check()
        .unwrap_or_else(|e| panic!("check() at the end: {e}"));
    Outcome {
        irqs,
        chained,
        max_window,
        redo: m.mm().events().slab_cmpxchg_redo.load(Relaxed) - redo0,
    }
}

fn irq_machine(cpus: usize) -> Machine {
    MachineBuilder::new()
        .ram(32 * MIB)
        .cpus(cpus)
        .no_holes()
        .seed(21)
        .boot()
}

fn run_sweeps(m: &Machine, sources: &[Source], rounds: usize) {
    let total_redo = run_sweeps_counting(m, sources, rounds);
    assert!(
        total_redo > 0,
        "no fast path ever had to redo: the interrupts never hit between tid and cmpxchg"
    );
}

/// The sweeps of [`run_sweeps`]: no object lost or handed out twice, contents kept,
/// `check()` clean, every slab page back at the end. Returns the fast paths' redos.
pub(crate) fn run_sweeps_counting(m: &Machine, sources: &[Source], rounds: usize) -> u64 {
    shrink_all_caches(m);
    let objects0 = active_objects(m);
    let baseline = total_free(&m.mm());
    let slab_pages0 = m.mm().slab_pages().unreclaimable();
    let mut total_redo = 0;
    for (i, &src) in sources.iter().enumerate() {
        let cpu = i % m.config().cpus;
        let out = sweep(m, src, cpu, rounds, 1000 + i as u64);
        assert!(
            out.irqs as usize >= rounds,
            "{src:?}: only {} interrupts",
            out.irqs
        );
        assert!(
            out.max_window >= 1,
            "{src:?}: interrupts only ever at the first window"
        );
        eprintln!(
            "{src:?}: {} irqs ({} chained), max window {}, {} redos",
            out.irqs, out.chained, out.max_window, out.redo
        );
        assert!(out.chained > 0, "{src:?}: no retry was interrupted");
        total_redo += out.redo;
    }
    // No object lost: after shrinking, every cache has the objects in use it had, and
    // (with CPU slabs) every slab page is back.
    shrink_all_caches(m);
    assert_eq!(
        active_objects(m),
        objects0,
        "objects in use differ from before"
    );
    if runs_sheaves(m) {
        m.mm().check().unwrap();
        return total_redo;
    }
    assert_eq!(
        m.mm().slab_pages().unreclaimable(),
        slab_pages0,
        "slab pages still held: objects were lost"
    );
    assert_eq!(
        total_free(&m.mm()),
        baseline,
        "free pages differ from before"
    );
    m.mm().check().unwrap();
    total_redo
}

#[test]
fn irq_at_every_window_of_kmalloc_and_kfree_64() {
    let m = irq_machine(2);
    run_sweeps(&m, &[Source::Kmalloc(64), Source::Kmalloc(50)], 5000);
}

#[test]
fn irq_at_every_window_with_few_objects_per_slab() {
    // kmalloc-8k: 4 objects per slab on 2 CPUs, so the slow path (new slab, partial
    // slabs, deactivation) runs all the time.
    let m = irq_machine(2);
    run_sweeps(
        &m,
        &[
            Source::Kmalloc(8192),
            Source::Kmalloc(1024),
            Source::Kmalloc(192),
        ],
        3000,
    );
}

#[test]
fn irq_at_every_window_of_a_kmem_cache() {
    let m = irq_machine(4);
    let r = m
        .run(|mm| mm.kmem_cache_create("irq_test", 200, 0, SlabFlags::HWCACHE_ALIGN, None))
        .unwrap();
    let r2 = m
        .run(|mm| mm.kmem_cache_create("irq_test_big", 3000, 0, SlabFlags::empty(), None))
        .unwrap();
    run_sweeps(&m, &[Source::Cache(r, 200), Source::Cache(r2, 3000)], 3000);
    m.run(|mm| {
        mm.kmem_cache_destroy(r).unwrap();
        mm.kmem_cache_destroy(r2).unwrap();
    });
    m.mm().check().unwrap();
}

#[test]
fn irq_windows_are_where_the_fast_paths_are() {
    // A fast-path kmalloc passes two windows (after reading the tid, before the
    // compare-exchange); so does a fast-path kfree.
    let m = irq_machine(1);
    let p = m.run(|mm| mm.kmalloc(64, Gfp::GFP_KERNEL)).unwrap();
    let platform = m.platform();
    // Windows are counted while an interrupt is armed: arm one that never comes.
    platform.inject_irq(0, u64::MAX, Box::new(|_| panic!("must not fire")));
    let w = platform.irq_windows();
    let q = m.run(|mm| mm.kmalloc(64, Gfp::GFP_KERNEL)).unwrap();
    assert_eq!(platform.irq_windows() - w, 2, "kmalloc fast path");
    let w = platform.irq_windows();
    m.run(|mm| mm.kfree(q)).unwrap();
    assert_eq!(platform.irq_windows() - w, 2, "kfree fast path");
    platform.cancel_irq();
    // Interrupts disabled: nothing is delivered.
    platform.inject_irq(
        0,
        0,
        Box::new(|_| panic!("delivered with interrupts disabled")),
    );
    m.run(|mm| {
        let flags = mm.platform().local_irq_save();
        let x = mm.kmalloc(64, Gfp::GFP_ATOMIC).unwrap();
        mm.kfree(x).unwrap();
        mm.platform().local_irq_restore(flags);
    });
    assert!(platform.irq_pending());
    platform.cancel_irq();
    assert!(!platform.irq_pending());
    m.run(|mm| mm.kfree(p)).unwrap();
    // An injected interrupt that finds no window stays pending and can be withdrawn.
    platform.inject_irq(0, 5, Box::new(|_| panic!("must not fire")));
    m.run(|mm| mm.kfree(VirtAddr(0))).unwrap();
    assert!(platform.irq_pending());
    platform.cancel_irq();
    assert!(!platform.irq_pending());
    // At window 0 of the next kmalloc, the handler runs in hard-IRQ context.
    let fired = Arc::new(Mutex::new(false));
    let f2 = fired.clone();
    platform.inject_irq(
        0,
        0,
        Box::new(move |mm: &Mm<SimPlatform>| {
            assert!(mm.in_interrupt());
            assert!(mm.platform().irqs_disabled());
            *f2.lock().unwrap() = true;
        }),
    );
    let x = m.run(|mm| mm.kmalloc(64, Gfp::GFP_KERNEL)).unwrap();
    assert!(*fired.lock().unwrap());
    assert!(!platform.irq_pending());
    m.run(|mm| mm.kfree(x)).unwrap();
}
