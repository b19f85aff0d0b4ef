//! Real concurrency: host threads each running as their own CPU allocate and free at
//! the same time, hand pages to each other (remote frees), take interrupts and drain
//! each other's per-CPU lists; afterwards every page is accounted for.

use std::collections::BTreeMap;
use std::sync::Mutex;

use crate::fixtures::*;
use kmemlab_mm::{Context, Gfp, PageAllocError, Pfn, Profile};
use kmemlab_sim::Machine;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// (pfn, order, tag)
type Block = (Pfn, u32, u64);

struct Shared<'a> {
    machine: &'a Machine,
    /// Every live block, to catch a block handed to two owners at once.
    live: Mutex<BTreeMap<Pfn, u32>>,
    /// Blocks handed from one CPU to another, to be freed there.
    mailbox: Mutex<Vec<Block>>,
}

impl Shared<'_> {
    fn claim(&self, pfn: Pfn, order: u32) {
        let mut live = self.live.lock().unwrap();
        if let Some((&prev, &o)) = live.range(..=pfn).next_back() {
            assert!(
                prev + (1 << o) <= pfn,
                "{:#x} order {order} overlaps live {:#x} order {o}",
                pfn.raw(),
                prev.raw()
            );
        }
        if let Some((&next, &o)) = live.range(pfn..).next() {
            assert!(
                pfn + (1 << order) <= next,
                "{:#x} order {order} overlaps live {:#x} order {o}",
                pfn.raw(),
                next.raw()
            );
        }
        live.insert(pfn, order);
    }

    fn release(&self, pfn: Pfn) {
        self.live
            .lock()
            .unwrap()
            .remove(&pfn)
            .expect("block is live");
    }

    fn write_tag(&self, pfn: Pfn, order: u32, tag: u64) {
        let ram = self.machine.platform().ram();
        for p in pfn.range_to(pfn + (1 << order)) {
            ram.write(p.phys().0, &(tag ^ p.raw()).to_le_bytes())
                .unwrap();
        }
    }

    fn check_tag(&self, pfn: Pfn, order: u32, tag: u64) {
        let ram = self.machine.platform().ram();
        let mut buf = [0u8; 8];
        for p in pfn.range_to(pfn + (1 << order)) {
            ram.read(p.phys().0, &mut buf).unwrap();
            assert_eq!(
                u64::from_le_bytes(buf),
                tag ^ p.raw(),
                "block {:#x} overwritten at {:#x}",
                pfn.raw(),
                p.raw()
            );
        }
    }

    /// Free `block` as `cpu`, in `ctx`.
    fn free(&self, cpu: usize, ctx: Context, (pfn, order, tag): Block) {
        self.check_tag(pfn, order, tag);
        self.release(pfn);
        let r = self
            .machine
            .on_cpu(cpu, ctx, |mm| {
                mm.__free_pages(mm.pfn_to_page(pfn).unwrap(), order)
            })
            .expect("own CPU");
        assert_eq!(
            r,
            Ok(()),
            "free {:#x} order {order} on CPU {cpu}",
            pfn.raw()
        );
    }
}

fn worker(
    shared: &Shared<'_>,
    cpu: usize,
    seed: u64,
    ops: usize,
    max_live: u64,
) -> (Vec<Block>, u64) {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut mine: Vec<Block> = Vec::new();
    let mut live_pages = 0u64;
    let mut allocated = 0u64;
    for _ in 0..ops {
        let roll = rng.gen_range(0..100);
        if roll < 2 {
            // Drain every CPU's lists while the others are running.
            shared
                .machine
                .on_cpu(cpu, Context::Process, |mm| mm.drain_all_pages())
                .unwrap();
        } else if roll < 12 {
            // A remote free: a block another CPU allocated.
            let block = shared.mailbox.lock().unwrap().pop();
            if let Some(block) = block {
                let ctx = if rng.gen_bool(0.3) {
                    Context::Softirq
                } else {
                    Context::Process
                };
                shared.free(cpu, ctx, block);
            }
        } else if mine.is_empty() || (live_pages < max_live && rng.gen_bool(0.55)) {
            let order = match rng.gen_range(0..100) {
                0..=59 => 0,
                60..=74 => 1,
                75..=89 => rng.gen_range(2..=3),
                90..=97 => rng.gen_range(4..=8),
                _ => 9,
            };
            let (gfp, ctx) = match rng.gen_range(0..6) {
                0 | 1 => (Gfp::GFP_KERNEL, Context::Process),
                2 => (Gfp::GFP_ATOMIC, Context::Hardirq),
                3 => (Gfp::GFP_NOWAIT | Gfp::__GFP_COMP, Context::Softirq),
                4 => (
                    Gfp::GFP_KERNEL | Gfp::GFP_DMA32 | Gfp::__GFP_ZERO,
                    Context::Process,
                ),
                _ => (Gfp::GFP_HIGHUSER_MOVABLE, Context::Process),
            };
            let r = shared
                .machine
                .on_cpu(cpu, ctx, |mm| {
                    mm.alloc_pages(gfp | Gfp::__GFP_NOWARN, order)
                        .map(|p| mm.page_to_pfn(p))
                })
                .expect("own CPU");
            match r {
                Ok(pfn) => {
                    assert!(pfn.is_aligned(order));
                    shared.claim(pfn, order);
                    let tag = rng.r#gen::<u64>();
                    shared.write_tag(pfn, order, tag);
                    mine.push((pfn, order, tag));
                    live_pages += 1 << order;
                    allocated += 1;
                }
                Err(PageAllocError::NoMemory(_)) => {}
                Err(e) => panic!("CPU {cpu}: {gfp:?} order {order}: {e}"),
            }
        } else {
            let block = mine.swap_remove(rng.gen_range(0..mine.len()));
            live_pages -= 1 << block.1;
            if rng.gen_bool(0.3) {
                shared.mailbox.lock().unwrap().push(block);
            } else {
                let ctx = if rng.gen_bool(0.2) {
                    Context::Hardirq
                } else {
                    Context::Process
                };
                shared.free(cpu, ctx, block);
            }
        }
    }
    (mine, allocated)
}

fn run(machine: Machine, threads: usize, ops: usize, max_live: u64) {
    let boot = BootState::of(&machine.mm());
    let shared = Shared {
        machine: &machine,
        live: Mutex::new(BTreeMap::new()),
        mailbox: Mutex::new(Vec::new()),
    };
    let results: Vec<(Vec<Block>, u64)> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..threads)
            .map(|cpu| {
                let shared = &shared;
                s.spawn(move || worker(shared, cpu, 1000 + cpu as u64, ops, max_live))
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("worker"))
            .collect()
    });
    let total_allocs: u64 = results.iter().map(|r| r.1).sum();
    assert!(
        total_allocs > (threads * ops / 4) as u64,
        "{total_allocs} allocations"
    );

    // Quiescent now: the checker may run, and must account for exactly the live blocks.
    let report = machine
        .mm()
        .check()
        .unwrap_or_else(|e| panic!("check() after the run: {e}"));
    let live_pages: u64 = shared
        .live
        .lock()
        .unwrap()
        .values()
        .map(|&o| 1u64 << o)
        .sum();
    assert_eq!(report.allocated, live_pages + boot.report.allocated);

    let leftovers: Vec<Block> = results
        .into_iter()
        .flat_map(|r| r.0)
        .chain(std::mem::take(&mut *shared.mailbox.lock().unwrap()))
        .collect();
    for (i, block) in leftovers.into_iter().enumerate() {
        shared.free(i % threads, Context::Process, block);
    }
    assert!(shared.live.lock().unwrap().is_empty());
    assert!(machine.take_console().is_empty());
    assert_all_free(&machine, &boot, false);
}

#[test]
fn four_cpus_allocate_and_free_concurrently() {
    let m = MachineBuilder::new().ram(64 * MIB).cpus(4).seed(11).boot();
    // Up to 3000 pages each: the four together approach the watermarks.
    run(m, 4, 25_000, 3000);
}

#[test]
fn four_cpus_on_a_larger_machine() {
    let m = MachineBuilder::new()
        .profile(Profile::I386)
        .ram(1200 * MIB)
        .cpus(4)
        .seed(12)
        .boot();
    run(m, 4, 15_000, 20_000);
}

#[test]
fn a_thread_running_as_no_cpu_is_stopped_while_cpu_0_runs_elsewhere() {
    let m = MachineBuilder::new().ram(64 * MIB).cpus(2).seed(13).boot();
    let stopped = m
        .on_cpu(0, Context::Process, |mm| {
            // This thread runs as CPU 0; one that claims no CPU would be a second CPU 0.
            another_thread_is_stopped(&m) && mm.kmalloc(64, Gfp::GFP_KERNEL).is_ok()
        })
        .unwrap();
    assert!(stopped, "a second thread ran as CPU 0");
    // With CPU 0 idle, the boot CPU's inspection from an unclaimed thread still works.
    assert!(m.mm().kmalloc(64, Gfp::GFP_KERNEL).is_ok());
    assert!(m.check().is_ok());
}

#[test]
fn two_threads_that_run_as_no_cpu_are_not_both_cpu_0() {
    let m = MachineBuilder::new().ram(64 * MIB).cpus(2).seed(14).boot();
    // This thread holds CPU 0 through `Machine::mm`; a second one doing the same would
    // be a second CPU 0 (the check before looked for an `on_cpu` owner only).
    let mm = m.mm();
    let stopped = another_thread_is_stopped(&m);
    assert!(stopped, "two threads ran as CPU 0");
    // The holder goes on, and may enter CPU 0 through `run` as well.
    let a = mm.kmalloc(64, Gfp::GFP_KERNEL).unwrap();
    m.run(|mm| mm.kfree(a)).unwrap();
    drop(mm);
    // Given back: another thread can take CPU 0 either way.
    another_thread_takes_cpu_0(&m);
    assert!(m.check().is_ok());
}

#[test]
fn the_kernel_handed_to_a_thread_that_runs_as_no_cpu_stops_it() {
    let m = MachineBuilder::new().ram(64 * MIB).cpus(2).seed(15).boot();
    // Inside CPU 1, CPU 0 is idle: before, a thread given `&Mm` ran as CPU 0 unclaimed,
    // and two such threads would have shared it.
    let stopped = m
        .on_cpu(1, Context::Process, |mm| {
            std::thread::scope(|s| s.spawn(|| mm.kmalloc(64, Gfp::GFP_KERNEL)).join().is_err())
        })
        .unwrap();
    assert!(stopped, "a thread ran as no CPU");
    assert!(m.check().is_ok());
}

#[test]
fn run_inside_a_held_mm_is_an_outermost_entry() {
    let m = MachineBuilder::new().ram(64 * MIB).cpus(2).seed(16).boot();
    // A vfree from interrupt context is deferred to the CPU's kworker, which runs when
    // the outermost `on_cpu` returns; with `Machine::mm` held, that is still this one.
    let deferred_vfree = |m: &Machine| {
        let v = m.run(|mm| mm.vmalloc(4 * 4096)).unwrap();
        let queued = m
            .on_cpu(0, Context::Softirq, |mm| {
                mm.vfree(v).unwrap();
                mm.work_pending()
            })
            .unwrap();
        (queued, m.mm().work_pending())
    };
    let mm = m.mm();
    assert_eq!(deferred_vfree(&m), (true, false), "with Machine::mm held");
    drop(mm);
    assert_eq!(deferred_vfree(&m), (true, false), "without");
    assert!(m.check().is_ok());
}

#[test]
fn an_ipi_sent_as_a_borrowed_cpu_waits_for_the_thread_that_borrowed_its_own() {
    use kmemlab_mm::Hardware;
    use std::sync::atomic::{AtomicBool, Ordering::SeqCst};
    use std::time::{Duration, Instant};

    let m = MachineBuilder::new().ram(64 * MIB).cpus(2).seed(17).boot();
    let a_holds_cpu0 = AtomicBool::new(false);
    let b_on_cpu1 = AtomicBool::new(false);
    let b_runs_as_cpu0 = AtomicBool::new(false);
    let a_sent = AtomicBool::new(false);
    let a_ran_as_cpu0 = AtomicBool::new(false);
    let both_cpu0 = AtomicBool::new(false);
    let wait = |flag: &AtomicBool| {
        while !flag.load(SeqCst) {
            std::thread::yield_now();
        }
    };
    std::thread::scope(|s| {
        // A holds CPU 0, then sends an IPI to CPU 1: CPU 0 parks, and B's IPI borrows it.
        s.spawn(|| {
            let _mm = m.mm();
            a_holds_cpu0.store(true, SeqCst);
            wait(&b_on_cpu1);
            m.platform().run_on_cpu(1, &mut || {
                // Now A runs as CPU 1 (borrowed from B) and B as CPU 0 (borrowed from A).
                wait(&b_runs_as_cpu0);
                a_sent.store(true, SeqCst);
                // A's own CPU 0 is lent out: this must wait until B gives it back.
                m.platform().run_on_cpu(0, &mut || {
                    both_cpu0.store(b_runs_as_cpu0.load(SeqCst), SeqCst);
                    a_ran_as_cpu0.store(true, SeqCst);
                });
            });
        });
        s.spawn(|| {
            wait(&a_holds_cpu0);
            m.on_cpu(1, Context::Process, |_| {
                b_on_cpu1.store(true, SeqCst);
                m.platform().run_on_cpu(0, &mut || {
                    b_runs_as_cpu0.store(true, SeqCst);
                    // Stay CPU 0 until A's IPI has run, or for a while after it was sent
                    // (it cannot run before this one ends, if CPU 0 has one thread).
                    let mut sent_at = None;
                    while !a_ran_as_cpu0.load(SeqCst) {
                        if a_sent.load(SeqCst) {
                            let at = *sent_at.get_or_insert_with(Instant::now);
                            if at.elapsed() > Duration::from_millis(500) {
                                break;
                            }
                        }
                        std::thread::yield_now();
                    }
                    b_runs_as_cpu0.store(false, SeqCst);
                });
            })
            .unwrap();
        });
    });
    assert!(a_ran_as_cpu0.load(SeqCst));
    assert!(!both_cpu0.load(SeqCst), "two threads ran as CPU 0");
    assert!(m.check().is_ok());
}

#[test]
fn an_mm_taken_inside_another_holds_cpu_0_after_the_outer_one_drops() {
    let m = MachineBuilder::new().ram(64 * MIB).cpus(2).seed(18).boot();
    let outer = m.mm();
    let inner = m.mm();
    drop(outer);
    // The thread still runs as CPU 0 through the one it holds.
    let a = inner.kmalloc(64, Gfp::GFP_KERNEL).unwrap();
    inner.kfree(a).unwrap();
    let stopped = another_thread_is_stopped(&m);
    assert!(stopped, "two threads ran as CPU 0");
    drop(inner);
    // The last one gives it back.
    another_thread_takes_cpu_0(&m);
    assert!(m.check().is_ok());
}

#[test]
fn an_mm_dropped_inside_run_leaves_cpu_0_held_until_run_returns() {
    let m = &MachineBuilder::new().ram(64 * MIB).cpus(2).seed(19).boot();
    let mm = m.mm();
    let stopped = m.run(move |k| {
        drop(mm);
        // This thread still runs as CPU 0: another one taking it would be a second CPU 0.
        let stopped = another_thread_is_stopped(m);
        let a = k.kmalloc(64, Gfp::GFP_KERNEL).unwrap();
        k.kfree(a).unwrap();
        stopped
    });
    assert!(stopped, "two threads ran as CPU 0");
    // Given back when `run` returned.
    another_thread_takes_cpu_0(m);
    assert!(m.check().is_ok());
}

#[test]
fn an_ipi_that_panics_gives_back_both_cpus() {
    use kmemlab_mm::Hardware;
    use std::panic::{catch_unwind, AssertUnwindSafe};
    use std::sync::atomic::{AtomicBool, Ordering::SeqCst};
    use std::time::{Duration, Instant};

    let m = MachineBuilder::new().ram(64 * MIB).cpus(3).seed(20).boot();
    let a_back = AtomicBool::new(false);
    let b_ran_as_cpu0 = AtomicBool::new(false);
    let both_cpu0 = AtomicBool::new(false);
    std::thread::scope(|s| {
        s.spawn(|| {
            m.run(|_| {
                let ipi = catch_unwind(AssertUnwindSafe(|| {
                    m.platform()
                        .run_on_cpu(1, &mut || panic!("an IPI function panics"))
                }));
                assert!(ipi.is_err());
                // This thread runs as CPU 0 again, no longer parked: another thread's IPI
                // to CPU 0 waits until it leaves.
                a_back.store(true, SeqCst);
                let since = Instant::now();
                while !b_ran_as_cpu0.load(SeqCst) && since.elapsed() < Duration::from_millis(500) {
                    std::thread::yield_now();
                }
                both_cpu0.store(b_ran_as_cpu0.load(SeqCst), SeqCst);
            });
        });
        s.spawn(|| {
            while !a_back.load(SeqCst) {
                std::thread::yield_now();
            }
            m.on_cpu(2, Context::Process, |_| {
                m.platform()
                    .run_on_cpu(0, &mut || b_ran_as_cpu0.store(true, SeqCst))
            })
            .unwrap();
        });
    });
    assert!(!both_cpu0.load(SeqCst), "two threads ran as CPU 0");
    assert!(m.on_cpu(1, Context::Process, |_| ()).is_ok(), "CPU 1 kept");
    assert!(m.check().is_ok());
}

/// Whether another thread entering the kernel through `Machine::mm` (a `kmalloc`) is
/// stopped, as it must be while this one runs as CPU 0.
fn another_thread_is_stopped(m: &Machine) -> bool {
    std::thread::scope(|s| {
        s.spawn(|| m.mm().kmalloc(64, Gfp::GFP_KERNEL))
            .join()
            .is_err()
    })
}

/// Another thread takes CPU 0 through `Machine::mm`, allocates, and frees through `run`
/// (it panics, failing the test, if CPU 0 is not free).
fn another_thread_takes_cpu_0(m: &Machine) {
    std::thread::scope(|s| {
        s.spawn(|| {
            let a = m.mm().kmalloc(64, Gfp::GFP_KERNEL).unwrap();
            m.run(|mm| mm.kfree(a)).unwrap();
        });
    });
}
