//! Model-based test of SLUB and the kmalloc family: long random sequences of kmalloc,
//! kzalloc, kcalloc, krealloc, kfree, kmem_cache_alloc / zalloc / free and cache
//! create / destroy, over sizes 1 … 4 MiB, on random CPUs and contexts, checked against a
//! reference model of the live objects: no two live objects overlap, every object keeps
//! the bytes written into it, `ksize` is at least what was asked, and `check()` (page
//! allocator and slab invariants) passes after every step (every 1,000 steps on machines
//! above 64 MiB). At the end, with everything freed, every cache shrunk and the per-CPU
//! page lists drained, the page allocator's free pages are what they were before.

use std::collections::BTreeMap;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Mutex;

use crate::fixtures::*;
use crate::model_driver::{run_model, Model as Driven, Run};
use kmemlab_mm::slab::kmalloc::{KMALLOC_MAX_SIZE, ZERO_SIZE_PTR};
use kmemlab_mm::slab::{KmemCacheRef, SlabConfig, SlabError, SlabFlags};
use kmemlab_mm::{Context, Gfp, Mm, VirtAddr};
use kmemlab_sim::{Machine, SimPlatform};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// Where a live object came from.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
enum Kind {
    Kmalloc,
    /// Index into the test's cache table.
    Cache(usize),
}

#[derive(Copy, Clone, Debug)]
struct Obj {
    /// Bytes asked for (and written).
    size: usize,
    /// `ksize` when allocated (the extent checked for overlaps).
    usable: usize,
    tag: u8,
    kind: Kind,
}

struct TestCache {
    r: KmemCacheRef,
    size: usize,
    live: usize,
    name: String,
}

/// The byte ranges of an object that are written and verified: all of it up to 64 KiB;
/// beyond, the first and last 4 KiB and 64 bytes every 64 KiB (a 4 MiB object written
/// whole on every operation would dominate the run).
fn regions(size: usize) -> Vec<(usize, usize)> {
    if size <= 64 * 1024 {
        return vec![(0, size)];
    }
    let mut v = vec![(0, 4096)];
    let mut off = 64 * 1024;
    while off + 64 < size - 4096 {
        v.push((off, 64));
        off += 64 * 1024;
    }
    v.push((size - 4096, 4096));
    v
}

fn pattern(tag: u8, off: usize, len: usize) -> Vec<u8> {
    (off..off + len)
        .map(|i| tag ^ (i as u8).wrapping_mul(13))
        .collect()
}

fn write_obj(mm: &Mm<SimPlatform>, p: VirtAddr, size: usize, tag: u8) {
    for (off, len) in regions(size) {
        mm.copy_to_kernel(VirtAddr(p.0 + off as u64), &pattern(tag, off, len))
            .unwrap();
    }
}

/// Verify the first `upto` bytes of an object written with `tag` (in the written regions).
fn verify_obj(mm: &Mm<SimPlatform>, p: VirtAddr, size: usize, tag: u8, upto: usize, what: &str) {
    for (off, len) in regions(size) {
        if off >= upto {
            break;
        }
        let len = len.min(upto - off);
        let mut buf = vec![0; len];
        mm.copy_from_kernel(VirtAddr(p.0 + off as u64), &mut buf)
            .unwrap();
        let want = pattern(tag, off, len);
        if let Some(i) = (0..len).find(|&i| buf[i] != want[i]) {
            panic!(
                "{what}: object {p} ({size} bytes, tag {tag:#x}) byte {} is {:#x}, not {:#x}",
                off + i,
                buf[i],
                want[i]
            );
        }
    }
}

fn assert_zero(mm: &Mm<SimPlatform>, p: VirtAddr, from: usize, to: usize, what: &str) {
    let mut off = from;
    while off < to {
        let len = (to - off).min(64 * 1024);
        let mut buf = vec![0; len];
        mm.copy_from_kernel(VirtAddr(p.0 + off as u64), &mut buf)
            .unwrap();
        if let Some(i) = buf.iter().position(|&b| b != 0) {
            panic!("{what}: byte {} of {p} is {:#x}, not zero", off + i, buf[i]);
        }
        off += len;
    }
}

#[derive(Default)]
struct Model {
    live: BTreeMap<u64, Obj>,
    live_bytes: usize,
    next_tag: u8,
    caches: Vec<TestCache>,
    cache_serial: usize,
    ops: BTreeMap<&'static str, u64>,
    failed_allocs: u64,
}

impl Model {
    fn tag(&mut self) -> u8 {
        self.next_tag = self.next_tag.wrapping_add(1).max(1);
        self.next_tag
    }

    fn count(&mut self, op: &'static str) {
        *self.ops.entry(op).or_default() += 1;
    }

    /// A fresh object: inside the direct map, overlapping nothing live.
    fn insert(
        &mut self,
        mm: &Mm<SimPlatform>,
        p: VirtAddr,
        size: usize,
        kind: Kind,
        what: &str,
    ) -> u8 {
        assert!(p.0 > ZERO_SIZE_PTR.0, "{what}: got {p}");
        let usable = match kind {
            Kind::Kmalloc => {
                let ks = mm
                    .ksize(p)
                    .unwrap_or_else(|e| panic!("{what}: ksize({p}): {e}"));
                assert!(ks >= size, "{what}: ksize {ks} < {size}");
                ks
            }
            Kind::Cache(_) => size,
        };
        if let Some((&a, o)) = self.live.range(..=p.0).next_back() {
            assert!(
                a + o.usable as u64 <= p.0,
                "{what}: {p} (+{usable}) overlaps live {a:#x} (+{})",
                o.usable
            );
        }
        if let Some((&b, o)) = self.live.range(p.0 + 1..).next() {
            assert!(
                p.0 + usable as u64 <= b,
                "{what}: {p} (+{usable}) overlaps live {b:#x} (+{})",
                o.usable
            );
        }
        let tag = self.tag();
        write_obj(mm, p, size, tag);
        self.live.insert(
            p.0,
            Obj {
                size,
                usable,
                tag,
                kind,
            },
        );
        self.live_bytes += usable;
        if let Kind::Cache(i) = kind {
            self.caches[i].live += 1;
        }
        tag
    }

    fn remove(&mut self, p: u64) -> Obj {
        let o = self.live.remove(&p).expect("live");
        self.live_bytes -= o.usable;
        if let Kind::Cache(i) = o.kind {
            self.caches[i].live -= 1;
        }
        o
    }

    fn random_live(&self, rng: &mut ChaCha8Rng) -> Option<(u64, Obj)> {
        if self.live.is_empty() {
            return None;
        }
        // A random key: pick a random address and take the next live object (cheap on
        // a BTreeMap, and every object can be chosen).
        let lo = *self.live.keys().next().unwrap();
        let hi = *self.live.keys().next_back().unwrap();
        let at = rng.gen_range(lo..=hi);
        let (&a, &o) = self
            .live
            .range(at..)
            .next()
            .or_else(|| self.live.range(..at).next_back())
            .unwrap();
        Some((a, o))
    }
}

fn random_size(rng: &mut ChaCha8Rng) -> usize {
    match rng.gen_range(0..1000) {
        0..=599 => rng.gen_range(1..=256),
        600..=799 => rng.gen_range(257..=2048),
        800..=919 => rng.gen_range(2049..=8192),
        920..=979 => rng.gen_range(8193..=65536),
        980..=997 => rng.gen_range(65537..=1 << 20),
        _ => rng.gen_range((1 << 20) + 1..=KMALLOC_MAX_SIZE),
    }
}

fn random_gfp(rng: &mut ChaCha8Rng, atomic: bool) -> Gfp {
    let mut gfp = if atomic {
        Gfp::GFP_ATOMIC
    } else {
        match rng.gen_range(0..10) {
            0 => Gfp::GFP_ATOMIC,
            1 => Gfp::GFP_NOWAIT,
            _ => Gfp::GFP_KERNEL,
        }
    };
    match rng.gen_range(0..20) {
        0 => gfp |= Gfp::GFP_DMA,
        1 | 2 => gfp |= Gfp::__GFP_RECLAIMABLE,
        _ => {}
    }
    if rng.gen_bool(0.5) {
        gfp |= Gfp::__GFP_NOWARN;
    }
    gfp
}

/// An allocation that may fail only for lack of memory.
fn allowed_failure(e: &SlabError, size: usize, what: &str) {
    assert!(
        matches!(e, SlabError::Alloc(_)),
        "{what} of {size} bytes failed with {e:?}"
    );
}

const CACHE_FLAGS: [SlabFlags; 5] = [
    SlabFlags::empty(),
    SlabFlags::HWCACHE_ALIGN,
    SlabFlags::RECLAIM_ACCOUNT,
    SlabFlags::CACHE_DMA,
    SlabFlags::HWCACHE_ALIGN.union(SlabFlags::RECLAIM_ACCOUNT),
];

fn create_cache(mm: &Mm<SimPlatform>, model: &mut Model, rng: &mut ChaCha8Rng) {
    let size = match rng.gen_range(0..4) {
        0 => rng.gen_range(1..=64),
        1 => rng.gen_range(65..=1024),
        2 => rng.gen_range(1025..=8192),
        _ => rng.gen_range(8193..=40_000),
    };
    let align = [0, 0, 8, 16, 64, 256][rng.gen_range(0..6)];
    let flags = CACHE_FLAGS[rng.gen_range(0..CACHE_FLAGS.len())];
    let name = format!("model_cache_{}", model.cache_serial);
    model.cache_serial += 1;
    let r = mm
        .kmem_cache_create(&name, size, align, flags, None)
        .unwrap_or_else(|e| panic!("kmem_cache_create({name}, {size}, {align}, {flags:?}): {e}"));
    let s = mm.cache(r).unwrap();
    assert!(s.object_size() as usize == size && s.size() as usize >= size);
    if align > 0 {
        assert_eq!(s.align() as usize % align, 0);
    }
    model.caches.push(TestCache {
        r,
        size,
        live: 0,
        name,
    });
    model.count("kmem_cache_create");
}

/// One random operation on the current CPU in context `ctx`.
fn step(
    mm: &Mm<SimPlatform>,
    model: &mut Model,
    rng: &mut ChaCha8Rng,
    ctx: Context,
    max_live: usize,
) {
    let atomic = ctx != Context::Process;
    let pressure = model.live_bytes > max_live || model.live.len() > 3000;
    let roll = rng.gen_range(0..100);
    match roll {
        // kmalloc / kzalloc / kcalloc / kmalloc_array
        0..=29 if !pressure => {
            let size = random_size(rng);
            let gfp = random_gfp(rng, atomic);
            let (r, what, zero) = match rng.gen_range(0..10) {
                0 | 1 => (mm.kzalloc(size, gfp), "kzalloc", true),
                2 => {
                    let n = rng.gen_range(1..=16);
                    let sz = size.div_ceil(n);
                    (mm.kcalloc(n, sz, gfp), "kcalloc", true)
                }
                3 => {
                    let n = rng.gen_range(1..=16);
                    let sz = size.div_ceil(n);
                    (mm.kmalloc_array(n, sz, gfp), "kmalloc_array", false)
                }
                _ => (mm.kmalloc(size, gfp), "kmalloc", false),
            };
            let size = match what {
                "kcalloc" | "kmalloc_array" => {
                    // The product actually asked for.
                    let ks = r.as_ref().map(|&p| mm.ksize(p).unwrap()).unwrap_or(size);
                    size.min(ks)
                }
                _ => size,
            };
            match r {
                Ok(p) => {
                    if zero {
                        assert_zero(mm, p, 0, size.min(64 * 1024), what);
                    }
                    if gfp.contains(Gfp::GFP_DMA) && size <= 8192 {
                        let page = mm.virt_to_page(p).unwrap();
                        assert_eq!(mm.page_zone(page).zone_type, kmemlab_mm::ZoneType::Dma);
                    }
                    model.insert(mm, p, size, Kind::Kmalloc, what);
                    model.count(what);
                }
                Err(e) => {
                    allowed_failure(&e, size, what);
                    model.failed_allocs += 1;
                }
            }
        }
        // kfree (of anything kmalloc'd), sometimes kfree_sensitive
        0..=54 => {
            let Some((a, o)) = model.random_live(rng) else {
                return;
            };
            verify_obj(mm, VirtAddr(a), o.size, o.tag, o.size, "before free");
            match o.kind {
                Kind::Kmalloc => {
                    if rng.gen_bool(0.05) {
                        mm.kfree_sensitive(VirtAddr(a)).unwrap();
                        model.count("kfree_sensitive");
                    } else {
                        mm.kfree(VirtAddr(a)).unwrap();
                        model.count("kfree");
                    }
                }
                Kind::Cache(i) => {
                    let r = model.caches[i].r;
                    if rng.gen_bool(0.1) {
                        // kfree() of a kmem_cache object is legal in the kernel.
                        mm.kfree(VirtAddr(a)).unwrap();
                    } else {
                        mm.kmem_cache_free(r, VirtAddr(a)).unwrap();
                    }
                    model.count("kmem_cache_free");
                }
            }
            model.remove(a);
        }
        // krealloc
        55..=69 => {
            let Some((a, o)) = model.random_live(rng) else {
                return;
            };
            if o.kind != Kind::Kmalloc {
                return;
            }
            let new_size = if rng.gen_bool(0.5) {
                // Near the old size: often in place.
                let d = rng.gen_range(0..=o.size / 2 + 8) as isize
                    * if rng.gen_bool(0.5) { 1 } else { -1 };
                ((o.size as isize + d).max(1) as usize).min(KMALLOC_MAX_SIZE)
            } else {
                random_size(rng)
            };
            if pressure && new_size > o.size {
                return;
            }
            let mut gfp = random_gfp(rng, atomic) & !Gfp::GFP_DMA;
            let zero = rng.gen_bool(0.3);
            if zero {
                gfp |= Gfp::__GFP_ZERO;
            }
            let old_ks = o.usable;
            match mm.krealloc(VirtAddr(a), new_size, gfp) {
                Ok(q) => {
                    let keep = o.size.min(new_size);
                    verify_obj(mm, q, o.size, o.tag, keep, "krealloc kept");
                    if q.0 == a {
                        assert!(new_size <= old_ks, "krealloc grew in place beyond ksize");
                        let redzoned = mm.object_info(q).is_some_and(|i| {
                            mm.cache(i.cache).is_ok_and(|c| {
                                c.flags().contains(
                                    SlabFlags::KMALLOC
                                        | SlabFlags::STORE_USER
                                        | SlabFlags::RED_ZONE,
                                )
                            })
                        });
                        if redzoned {
                            // The kmalloc red zone (6.12's __do_krealloc): the bytes past
                            // the new size are red zone, 0xcc.
                            let mut buf = vec![0u8; old_ks - new_size];
                            mm.copy_from_kernel(VirtAddr(q.0 + new_size as u64), &mut buf)
                                .unwrap();
                            assert!(
                                buf.iter().all(|&b| b == 0xcc),
                                "kmalloc red zone after krealloc"
                            );
                        } else if zero {
                            assert_zero(
                                mm,
                                q,
                                new_size,
                                old_ks.min(new_size + 64 * 1024),
                                "krealloc __GFP_ZERO in place",
                            );
                        }
                        model.count("krealloc in place");
                    } else {
                        assert!(new_size > old_ks, "krealloc moved although the object fit");
                        if zero && new_size > old_ks {
                            assert_zero(
                                mm,
                                q,
                                old_ks,
                                new_size.min(old_ks + 64 * 1024),
                                "krealloc __GFP_ZERO moved",
                            );
                        }
                        model.count("krealloc moved");
                    }
                    model.remove(a);
                    model.insert(mm, q, new_size, Kind::Kmalloc, "krealloc");
                }
                Err(e) => {
                    // The old object is untouched.
                    allowed_failure(&e, new_size, "krealloc");
                    verify_obj(
                        mm,
                        VirtAddr(a),
                        o.size,
                        o.tag,
                        o.size,
                        "after failed krealloc",
                    );
                    model.failed_allocs += 1;
                }
            }
        }
        // kmem_cache_alloc / zalloc
        70..=89 if !pressure => {
            if model.caches.is_empty() {
                return;
            }
            let i = rng.gen_range(0..model.caches.len());
            let (r, size) = (model.caches[i].r, model.caches[i].size);
            let gfp = random_gfp(rng, atomic) & !(Gfp::GFP_DMA | Gfp::__GFP_RECLAIMABLE);
            let zero = rng.gen_bool(0.3);
            let res = if zero {
                mm.kmem_cache_zalloc(r, gfp)
            } else {
                mm.kmem_cache_alloc(r, gfp)
            };
            match res {
                Ok(p) => {
                    let (pfn, page) = mm.virt_to_slab(p).expect("a slab object");
                    assert_eq!(page.slab_cache(), r.0);
                    let c = mm.slab_counters(pfn);
                    assert!(c.inuse >= 1 && c.inuse <= c.objects);
                    let s = mm.cache(r).unwrap();
                    if s.align() > 8 {
                        assert_eq!(
                            p.0 % s.align() as u64,
                            0,
                            "{}: misaligned {p}",
                            model.caches[i].name
                        );
                    }
                    if zero {
                        assert_zero(mm, p, 0, size, "kmem_cache_zalloc");
                    }
                    model.insert(mm, p, size, Kind::Cache(i), "kmem_cache_alloc");
                    model.count("kmem_cache_alloc");
                }
                Err(e) => {
                    allowed_failure(&e, size, "kmem_cache_alloc");
                    model.failed_allocs += 1;
                }
            }
        }
        // A cache is destroyed (if empty) or shrunk, or a new one created.
        90..=91 if !atomic => {
            if !model.caches.is_empty() && rng.gen_bool(0.5) {
                let i = rng.gen_range(0..model.caches.len());
                let r = model.caches[i].r;
                if model.caches[i].live <= 30 && model.caches.len() > 2 {
                    // Free what is left in the cache, then destroy it.
                    let objs: Vec<(u64, Obj)> = model
                        .live
                        .iter()
                        .filter(|(_, o)| o.kind == Kind::Cache(i))
                        .map(|(&a, &o)| (a, o))
                        .collect();
                    for (a, o) in objs {
                        verify_obj(mm, VirtAddr(a), o.size, o.tag, o.size, "before destroy");
                        mm.kmem_cache_free(r, VirtAddr(a)).unwrap();
                        model.remove(a);
                        model.count("kmem_cache_free");
                    }
                    mm.kmem_cache_destroy(r).unwrap();
                    assert_eq!(mm.find_cache(&model.caches[i].name), None);
                    // Renumber the live objects of the last cache, which moves to i.
                    let last = model.caches.len() - 1;
                    model.caches.swap_remove(i);
                    if i != last {
                        for o in model.live.values_mut() {
                            if o.kind == Kind::Cache(last) {
                                o.kind = Kind::Cache(i);
                            }
                        }
                    }
                    model.count("kmem_cache_destroy");
                } else {
                    mm.kmem_cache_shrink(r).unwrap();
                    model.count("kmem_cache_shrink");
                }
            } else if model.caches.len() < 12 {
                create_cache(mm, model, rng);
            }
        }
        // ksize and a spot check of a live object.
        _ => {
            if let Some((a, o)) = model.random_live(rng) {
                verify_obj(
                    mm,
                    VirtAddr(a),
                    o.size,
                    o.tag,
                    o.size.min(256),
                    "spot check",
                );
                if o.kind == Kind::Kmalloc {
                    assert_eq!(mm.ksize(VirtAddr(a)), Ok(o.usable));
                    model.count("ksize");
                }
            }
        }
    }
}

fn free_per_zone(mm: &Mm<SimPlatform>) -> Vec<u64> {
    mm.zones().iter().map(|z| z.free_pages()).collect()
}

/// A slab model run: the model, what the machine held before it, and its limits.
struct SlabModel {
    model: Model,
    /// Free pages per zone after boot, every cache shrunk.
    baseline: Vec<u64>,
    baseline_slab: u64,
    /// Objects in use per cache after boot, every cache shrunk.
    baseline_objects: std::collections::BTreeMap<String, u64>,
    bugs0: u64,
    /// Live bytes at most (a quarter of RAM).
    max_live: usize,
}

/// What a slab model run must reach.
struct SlabParams {
    /// Operations (steps that called the allocator) the run must reach.
    min_ops: u64,
}

impl Driven for SlabModel {
    type Params = SlabParams;

    /// Three test caches on the booted machine.
    fn start(_run: &Run<SlabParams>, m: &Machine, rng: &mut ChaCha8Rng) -> SlabModel {
        m.take_console();
        shrink_all_caches(m);
        let baseline = free_per_zone(&m.mm());
        let baseline_slab = m.mm().slab_pages().total();
        let bugs0 = m.mm().events().bug_slab.load(Relaxed);
        let baseline_objects = active_objects(m);
        let mut model = Model::default();
        m.run(|mm| {
            for _ in 0..3 {
                create_cache(mm, &mut model, rng);
            }
        });
        SlabModel {
            model,
            baseline,
            baseline_slab,
            baseline_objects,
            bugs0,
            max_live: (m.config().ram / 4) as usize,
        }
    }

    /// One random operation in a random context.
    fn step(
        &mut self,
        _run: &Run<SlabParams>,
        m: &Machine,
        rng: &mut ChaCha8Rng,
        _step: usize,
        cpu: usize,
    ) {
        let ctx = match rng.gen_range(0..20) {
            0 => Context::Hardirq,
            1 => Context::Softirq,
            _ => Context::Process,
        };
        let (model, max_live) = (&mut self.model, self.max_live);
        m.on_cpu(cpu, ctx, |mm| step(mm, model, rng, ctx, max_live))
            .unwrap();
    }

    /// `check()`: the page allocator's and the slab's invariants.
    fn check(&mut self, run: &Run<SlabParams>, m: &Machine, step: usize) {
        let name = run.name;
        m.mm()
            .check()
            .unwrap_or_else(|e| panic!("{name}: step {step}: check(): {e}"));
    }

    /// Free everything, destroy the test caches: slab and free pages as before the run.
    fn finish(self, run: &Run<SlabParams>, m: &Machine, _rng: &mut ChaCha8Rng) {
        let name = run.name;
        let cpus = m.config().cpus;
        let SlabModel {
            model,
            baseline,
            baseline_slab,
            baseline_objects,
            bugs0,
            ..
        } = self;
        // Free everything, destroy the test caches.
        let live: Vec<(u64, Obj)> = model.live.iter().map(|(&a, &o)| (a, o)).collect();
        for (k, (a, o)) in live.into_iter().enumerate() {
            m.on_cpu(k % cpus, Context::Process, |mm| {
                verify_obj(mm, VirtAddr(a), o.size, o.tag, o.size, "at the end");
                match o.kind {
                    Kind::Kmalloc => mm.kfree(VirtAddr(a)).unwrap(),
                    Kind::Cache(i) => mm.kmem_cache_free(model.caches[i].r, VirtAddr(a)).unwrap(),
                }
            })
            .unwrap();
        }
        m.run(|mm| {
            for c in &model.caches {
                mm.kmem_cache_destroy(c.r)
                    .unwrap_or_else(|e| panic!("{name}: destroy {}: {e}", c.name));
            }
        });
        m.mm()
            .check()
            .unwrap_or_else(|e| panic!("{name}: check() after freeing all: {e}"));
        assert_eq!(
            m.mm().events().bug_slab.load(Relaxed),
            bugs0,
            "{name}: a correct workload got a BUG report: {:?}",
            m.take_console()
        );
        shrink_all_caches(m);
        assert_eq!(
            active_objects(m),
            baseline_objects,
            "{name}: objects in use differ from after boot"
        );
        let slab = m.mm().slab_pages().total();
        // With sheaves, long-lived sheaves may sit in other slabs than at the start:
        // the objects are compared above, the pages only with CPU slabs.
        if !runs_sheaves(m) {
            assert_eq!(
                slab, baseline_slab,
                "{name}: slab pages not back to the baseline"
            );
            assert_eq!(
                free_per_zone(&m.mm()),
                baseline,
                "{name}: free pages differ from before the test (ops {:?})",
                model.ops
            );
        }
        let total: u64 = model.ops.values().sum();
        assert!(
            total >= run.params.min_ops,
            "{name}: only {total} operations"
        );
        assert!(
            model.ops.get("krealloc in place").copied().unwrap_or(0) > 0
                && model.ops.get("krealloc moved").copied().unwrap_or(0) > 0
                && model.ops.get("kmem_cache_destroy").copied().unwrap_or(0) > 0,
            "{name}: ops {:?}",
            model.ops
        );
        eprintln!(
            "{name}: {} steps, {total} operations {:?}, {} failed allocations",
            run.steps, model.ops, model.failed_allocs
        );
    }
}

// The model keeps one cache per kmem_cache_create (its own object size, its name gone
// when destroyed): the kernel booted with slab_nomerge. With merging, 6.6 widens a
// merged cache's object_size and shares the cache (see slub_stats.rs). Debug caches are
// never merged, so the slab_debug run needs no flag.
fn nomerge() -> SlabConfig {
    SlabConfig {
        nomerge: true,
        ..SlabConfig::default()
    }
}

// check() after every step costs about 0.2 ms on these machines (it walks every free
// object of every slab), so the every-step runs are split over tests that run in
// parallel; the 512 MiB run does more than 100,000 operations in one sequence.

#[test]
fn model_32m_4cpus_check_every_step() {
    run_model::<SlabModel>(&Run {
        name: "32M/4",
        machine: MachineBuilder::new()
            .ram(32 * MIB)
            .cpus(4)
            .no_holes()
            .slab(nomerge()),
        seed: 1,
        steps: 50_000,
        check_every: 1,
        params: SlabParams { min_ops: 40_000 },
    });
}

#[test]
fn model_24m_3cpus_check_every_step() {
    run_model::<SlabModel>(&Run {
        name: "24M/3",
        machine: MachineBuilder::new()
            .ram(24 * MIB)
            .cpus(3)
            .no_holes()
            .slab(nomerge()),
        seed: 6,
        steps: 40_000,
        check_every: 1,
        params: SlabParams { min_ops: 32_000 },
    });
}

#[test]
fn model_32m_4cpus_sheaves_check_every_step() {
    // The same model with the per-CPU sheaves of Linux 6.18/7.0 (`--slab-percpu sheaves`).
    run_model::<SlabModel>(&Run {
        name: "32M/4 sheaves",
        machine: MachineBuilder::new()
            .ram(32 * MIB)
            .cpus(4)
            .no_holes()
            .slab(SlabConfig {
                percpu: kmemlab_mm::slab::sheaf::SlabPercpu::Sheaves,
                ..nomerge()
            }),
        seed: 8,
        steps: 30_000,
        check_every: 1,
        params: SlabParams { min_ops: 24_000 },
    });
}

#[test]
fn model_64m_2cpus_plain_freelists_init_on_free() {
    run_model::<SlabModel>(&Run {
        name: "64M/2 plain",
        machine: MachineBuilder::new()
            .ram(64 * MIB)
            .cpus(2)
            .no_holes()
            .slab(SlabConfig {
                freelist_hardened: false,
                freelist_random: false,
                nomerge: true,
                ..SlabConfig::default()
            })
            .init_on(true, true),
        seed: 2,
        steps: 30_000,
        check_every: 1,
        params: SlabParams { min_ops: 20_000 },
    });
}

#[test]
fn model_512m_16cpus() {
    run_model::<SlabModel>(&Run {
        name: "512M/16",
        machine: MachineBuilder::new()
            .ram(512 * MIB)
            .cpus(16)
            .no_holes()
            .slab(nomerge()),
        seed: 3,
        steps: 125_000,
        check_every: 1000,
        params: SlabParams { min_ops: 100_000 },
    });
}

#[test]
fn model_with_slab_debug_fzpu() {
    // Every operation checked by slab_debug; a correct workload gets no report.
    run_model::<SlabModel>(&Run {
        name: "48M/3 slab_debug=FZPU",
        machine: MachineBuilder::new()
            .ram(48 * MIB)
            .cpus(3)
            .no_holes()
            .slab(SlabConfig {
                debug: SlabFlags::DEBUG,
                ..SlabConfig::default()
            }),
        seed: 4,
        steps: 20_000,
        check_every: 1,
        params: SlabParams { min_ops: 15_000 },
    });
}

/// Several host threads, each running as its own CPU, allocate and free concurrently;
/// objects are handed between threads so that frees are often remote.
#[test]
fn model_threads_remote_frees() {
    const THREADS: usize = 4;
    const OPS: usize = 30_000;
    let m = MachineBuilder::new()
        .ram(128 * MIB)
        .cpus(THREADS)
        .no_holes()
        .seed(5)
        .boot();
    shrink_all_caches(&m);
    let baseline = free_per_zone(&m.mm());
    let cache = m
        .run(|mm| mm.kmem_cache_create("threads_cache", 136, 0, SlabFlags::HWCACHE_ALIGN, None))
        .unwrap();
    // Objects given away for another thread to free: (address, bytes, tag, cache?).
    let handoff: Mutex<Vec<(u64, usize, u8, bool)>> = Mutex::new(Vec::new());
    std::thread::scope(|scope| {
        for t in 0..THREADS {
            let m = &m;
            let handoff = &handoff;
            scope.spawn(move || {
                let mut rng = ChaCha8Rng::seed_from_u64(100 + t as u64);
                let mut mine: Vec<(u64, usize, u8, bool)> = Vec::new();
                let mut tag = (t as u8) << 6;
                for _ in 0..OPS {
                    m.on_cpu(t, Context::Process, |mm| {
                        let roll = rng.gen_range(0..100);
                        if roll < 45 && mine.len() < 500 {
                            tag = tag.wrapping_add(1).max(1);
                            let use_cache = rng.gen_bool(0.3);
                            let size = if use_cache {
                                136
                            } else {
                                match rng.gen_range(0..100) {
                                    0..=89 => rng.gen_range(1..=1024),
                                    90..=98 => rng.gen_range(1025..=8192),
                                    _ => rng.gen_range(8193..=100_000),
                                }
                            };
                            let p = if use_cache {
                                mm.kmem_cache_alloc(cache, Gfp::GFP_KERNEL)
                            } else {
                                mm.kmalloc(size, Gfp::GFP_KERNEL)
                            }
                            .unwrap();
                            write_obj(mm, p, size, tag);
                            mine.push((p.0, size, tag, use_cache));
                        } else if roll < 60 && !mine.is_empty() {
                            let i = rng.gen_range(0..mine.len());
                            handoff.lock().unwrap().push(mine.swap_remove(i));
                        } else {
                            // Free one of ours or one handed over by another thread.
                            let theirs = if rng.gen_bool(0.5) {
                                let mut h = handoff.lock().unwrap();
                                let n = h.len();
                                (n > 0).then(|| h.swap_remove(rng.gen_range(0..n)))
                            } else {
                                None
                            };
                            let victim = theirs.or_else(|| {
                                (!mine.is_empty())
                                    .then(|| mine.swap_remove(rng.gen_range(0..mine.len())))
                            });
                            if let Some((a, size, tag, use_cache)) = victim {
                                verify_obj(mm, VirtAddr(a), size, tag, size, "thread free");
                                if use_cache {
                                    mm.kmem_cache_free(cache, VirtAddr(a)).unwrap();
                                } else {
                                    mm.kfree(VirtAddr(a)).unwrap();
                                }
                            }
                        }
                    })
                    .unwrap();
                }
                handoff.lock().unwrap().extend(mine);
            });
        }
    });
    // All threads done: everything left is freed from CPU 0, contents verified; no two
    // objects overlap.
    let mut left = handoff.into_inner().unwrap();
    left.sort();
    for w in left.windows(2) {
        assert!(w[0].0 + w[0].1 as u64 <= w[1].0, "overlap: {w:?}");
    }
    m.run(|mm| {
        for (a, size, tag, use_cache) in left {
            verify_obj(mm, VirtAddr(a), size, tag, size, "end");
            if use_cache {
                mm.kmem_cache_free(cache, VirtAddr(a)).unwrap();
            } else {
                mm.kfree(VirtAddr(a)).unwrap();
            }
        }
        mm.kmem_cache_destroy(cache).unwrap();
    });
    m.mm().check().unwrap();
    shrink_all_caches(&m);
    assert_eq!(free_per_zone(&m.mm()), baseline);
    assert_eq!(m.mm().events().bug_slab.load(Relaxed), 0);
}
