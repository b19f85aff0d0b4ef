//! Execution contexts: sleeping allocations are refused where the kernel forbids
//! sleeping, with its splat; atomic ones work everywhere; interrupts nest; a CPU runs
//! one host thread at a time.

use std::sync::atomic::Ordering::Relaxed;
use std::sync::Barrier;

use crate::fixtures::*;
use kmemlab_mm::{Context, Gfp, Hardware, PageAllocError};
use kmemlab_sim::SimError;

const SPLAT: &str =
    "BUG: sleeping function called from invalid context at include/linux/sched/mm.h:306";

#[test]
fn sleeping_allocations_are_refused_in_atomic_contexts() {
    let m = MachineBuilder::new()
        .ram(32 * MIB)
        .cpus(2)
        .no_holes()
        .seed(7)
        .boot();
    let boot = BootState::of(&m.mm());
    // (context, irqs_disabled, preempt_count)
    let cases = [
        (Context::Softirq, 0, 0x100),
        (Context::Hardirq, 1, 0x10000),
        (Context::Nmi, 1, 0x110000),
    ];
    for (i, (ctx, irqs_off, pc)) in cases.into_iter().enumerate() {
        for gfp in [
            Gfp::GFP_KERNEL,
            Gfp::GFP_KERNEL | Gfp::__GFP_NOWARN,
            Gfp::GFP_HIGHUSER_MOVABLE,
            Gfp::GFP_KERNEL | Gfp::GFP_DMA,
        ] {
            let r = m
                .on_cpu(1, ctx, |mm| mm.alloc_pages(gfp, 0).map(|_| ()))
                .unwrap();
            let Err(PageAllocError::SleepInAtomic(bug)) = r else {
                panic!("{ctx} {gfp:?}: {r:?}");
            };
            assert!(bug.in_atomic);
            assert_eq!(bug.irqs_disabled, irqs_off == 1);
            assert_eq!(bug.preempt_count, pc);
            assert_eq!(bug.cpu, 1);
            let console = m.take_console();
            assert_eq!(console[0], SPLAT, "{ctx}");
            assert_eq!(
                console[1],
                format!("in_atomic(): 1, irqs_disabled(): {irqs_off}, non_block: 0, pid: 101, name: kmemlab/1")
            );
            assert_eq!(console[2], format!("preempt_count: {pc:x}, expected: 0"));
            assert!(console
                .iter()
                .any(|l| l.starts_with("CPU: 1 PID: 101 Comm: kmemlab/1")));
        }
        assert_eq!(
            m.mm().events().bug_sleep_in_atomic.load(Relaxed),
            5 * i as u64 + 4
        );
        // __get_free_pages goes through the same check.
        let r = m
            .on_cpu(0, ctx, |mm| mm.__get_free_pages(Gfp::GFP_KERNEL, 2))
            .unwrap();
        assert!(matches!(r, Err(PageAllocError::SleepInAtomic(_))));
        m.take_console();
    }
    assert_all_free(&m, &boot, true);
}

#[test]
fn preempt_disabled_and_irqs_disabled_refuse_sleeping() {
    let m = MachineBuilder::new()
        .ram(32 * MIB)
        .cpus(1)
        .no_holes()
        .seed(7)
        .boot();
    let before = m.mm().check().unwrap();
    let r = m.run(|mm| {
        mm.preempt_disable();
        let r = mm.alloc_pages(Gfp::GFP_KERNEL, 0).map(|_| ());
        mm.preempt_enable();
        r
    });
    let Err(PageAllocError::SleepInAtomic(bug)) = r else {
        panic!("{r:?}")
    };
    assert!(bug.in_atomic && !bug.irqs_disabled);
    assert_eq!(bug.preempt_count, 1);
    let console = m.take_console();
    assert_eq!(console[0], SPLAT);
    assert!(console[1].starts_with("in_atomic(): 1, irqs_disabled(): 0,"));

    // local_irq_save() in process context: not atomic, but sleeping is still a bug.
    let r = m.run(|mm| {
        let flags = mm.platform().local_irq_save();
        let r = mm.alloc_pages(Gfp::GFP_KERNEL, 0).map(|_| ());
        mm.platform().local_irq_restore(flags);
        r
    });
    let Err(PageAllocError::SleepInAtomic(bug)) = r else {
        panic!("{r:?}")
    };
    assert!(!bug.in_atomic && bug.irqs_disabled);
    let console = m.take_console();
    assert_eq!(console[0], SPLAT);
    assert!(console[1].starts_with("in_atomic(): 0, irqs_disabled(): 1,"));
    assert_eq!(m.mm().events().bug_sleep_in_atomic.load(Relaxed), 2);
    assert_eq!(m.mm().check().unwrap(), before);

    // Back to normal: GFP_KERNEL works again.
    m.run(|mm| {
        let p = mm.alloc_pages(Gfp::GFP_KERNEL, 0).unwrap();
        mm.__free_pages(p, 0).unwrap();
    });
    assert!(m.take_console().is_empty());
}

#[test]
fn atomic_allocations_work_in_every_context() {
    let m = MachineBuilder::new()
        .ram(32 * MIB)
        .cpus(2)
        .no_holes()
        .seed(7)
        .boot();
    let boot = BootState::of(&m.mm());
    for ctx in [
        Context::Process,
        Context::Softirq,
        Context::Hardirq,
        Context::Nmi,
    ] {
        for gfp in [
            Gfp::GFP_ATOMIC,
            Gfp::GFP_NOWAIT,
            Gfp::GFP_ATOMIC | Gfp::GFP_DMA,
            Gfp::GFP_NOWAIT | Gfp::__GFP_ZERO,
        ] {
            for order in [0, 1, 3, 9] {
                let ok = m
                    .on_cpu(1, ctx, |mm| {
                        let page = mm.alloc_pages(gfp, order)?;
                        mm.__free_pages(page, order).unwrap();
                        let addr = mm.__get_free_pages(gfp, order)?;
                        mm.free_pages(addr, order).unwrap();
                        Ok::<_, PageAllocError>(())
                    })
                    .unwrap();
                assert_eq!(ok, Ok(()), "{ctx} {gfp:?} order {order}");
            }
        }
    }
    assert!(m.take_console().is_empty());
    assert_eq!(m.mm().events().bug_sleep_in_atomic.load(Relaxed), 0);
    assert_all_free(&m, &boot, false);
}

#[test]
fn interrupts_nest_inside_process_context() {
    let m = MachineBuilder::new()
        .ram(32 * MIB)
        .cpus(2)
        .no_holes()
        .seed(7)
        .boot();
    let boot = BootState::of(&m.mm());
    let m_ref = &m;
    let (outer, inner) = m.run(|mm| {
        let a = mm.alloc_pages(Gfp::GFP_KERNEL, 0).unwrap();
        assert!(!mm.in_interrupt());
        // An interrupt arrives on CPU 0 while the process holds page `a`.
        let inner = m_ref
            .on_cpu(0, Context::Hardirq, |irq| {
                assert!(irq.in_interrupt() && irq.in_atomic());
                assert!(irq.platform().irqs_disabled());
                assert_eq!(irq.platform().smp_processor_id(), 0);
                // A sleeping allocation is refused here...
                assert!(matches!(
                    irq.alloc_pages(Gfp::GFP_KERNEL, 0),
                    Err(PageAllocError::SleepInAtomic(_))
                ));
                // ...an interrupt cannot nest while interrupts are disabled...
                assert_eq!(
                    m_ref.on_cpu(0, Context::Hardirq, |_| ()).err(),
                    Some(SimError::IrqsDisabled(0))
                );
                // ...but an NMI can, and GFP_ATOMIC works at both levels.
                let nmi_page = m_ref
                    .on_cpu(0, Context::Nmi, |nmi| {
                        let p = nmi.alloc_pages(Gfp::GFP_ATOMIC, 0).unwrap();
                        nmi.page_to_pfn(p).0
                    })
                    .unwrap();
                let b = irq.alloc_pages(Gfp::GFP_ATOMIC, 1).unwrap();
                // Free the NMI's page from the IRQ handler, and the process's page too.
                irq.__free_pages(irq.pfn_to_page(kmemlab_mm::Pfn(nmi_page)).unwrap(), 0)
                    .unwrap();
                irq.__free_pages(a, 0).unwrap();
                irq.page_to_pfn(b).0
            })
            .unwrap();
        // Back in process context: sleeping allowed again, interrupts on again.
        assert!(!mm.in_atomic() && !mm.platform().irqs_disabled());
        let c = mm.alloc_pages(Gfp::GFP_KERNEL, 0).unwrap();
        let outer = mm.page_to_pfn(c).0;
        mm.__free_pages(c, 0).unwrap();
        (outer, inner)
    });
    assert_ne!(outer, inner);
    let splats: Vec<_> = m
        .take_console()
        .into_iter()
        .filter(|l| l == SPLAT)
        .collect();
    assert_eq!(splats.len(), 1);
    m.run(|mm| mm.__free_pages(mm.pfn_to_page(kmemlab_mm::Pfn(inner)).unwrap(), 1))
        .unwrap();
    assert_eq!(m.mm().per_cpu(0).preempt_count.get(), 0);
    assert_all_free(&m, &boot, true);
}

#[test]
fn a_cpu_runs_one_host_thread_at_a_time() {
    let m = MachineBuilder::new()
        .ram(32 * MIB)
        .cpus(4)
        .no_holes()
        .seed(7)
        .boot();
    m.mm().drain_all_pages();
    let boot = m.mm().check().unwrap();
    assert_eq!(
        m.on_cpu(4, Context::Process, |_| ()).err(),
        Some(SimError::NoSuchCpu(4))
    );
    let claimed = Barrier::new(2);
    let release = Barrier::new(2);
    std::thread::scope(|s| {
        s.spawn(|| {
            m.on_cpu(2, Context::Process, |mm| {
                let p = mm.alloc_pages(Gfp::GFP_KERNEL, 0).unwrap();
                claimed.wait();
                release.wait();
                mm.__free_pages(p, 0).unwrap();
            })
            .unwrap();
        });
        claimed.wait();
        // CPU 2 is taken by the other thread, in any context.
        for ctx in [Context::Process, Context::Hardirq, Context::Nmi] {
            assert_eq!(m.on_cpu(2, ctx, |_| ()).err(), Some(SimError::CpuBusy(2)));
        }
        // Other CPUs are free.
        assert_eq!(
            m.on_cpu(3, Context::Process, |mm| mm.platform().smp_processor_id()),
            Ok(3)
        );
        release.wait();
    });
    // Released: now it can be claimed.
    assert_eq!(
        m.on_cpu(2, Context::Softirq, |mm| mm.in_interrupt()),
        Ok(true)
    );
    m.mm().drain_all_pages();
    let r = m.mm().check().unwrap();
    assert_eq!(
        r, boot,
        "the machine is back to its state before the threads ran"
    );
}
