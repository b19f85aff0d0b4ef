//! vmalloc tests: the cases of the kernel's `lib/test_vmalloc.c`, by name, with loop counts
//! cut down so that the suite stays fast, plus context, lazy-purge, zone, huge-mapping and
//! exhaustion tests.
//!
//! Not ported: `pcpu_alloc_test` (it tests the per-CPU allocator, `__alloc_percpu`, which
//! kmemlab does not have), and `kvfree_rcu_1_arg_vmalloc_test` /
//! `kvfree_rcu_2_arg_vmalloc_test` (kmemlab has no RCU).
//!
//! Memory contents are written and read through the kernel's own page tables
//! ([`Mm::copy_to_kernel_virt`] / [`Mm::copy_from_kernel_virt`]), which reach HighMem
//! pages too; the simulator's MMU is not used.
//!
//! Every test ends with `check()`, and (where it frees what it
//! allocated) with an exact count of the pages: free pages + page-table pages allocated
//! since the start + slab pages gained since the start == free pages at the start.

use std::sync::atomic::Ordering::Relaxed;

use crate::fixtures::{shrink_all_caches, MachineBuilder, GIB, MIB};
use kmemlab_mm::arch::pgtable::PgProt;
use kmemlab_mm::slab::CallSite;
use kmemlab_mm::vmalloc::{VmFlags, VmallocError, NUMA_NO_NODE};
use kmemlab_mm::{Context, Gfp, Mm, Pfn, Profile, VirtAddr, ZoneType, PAGE_SIZE};
use kmemlab_sim::{Hole, Machine, SimPlatform};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

const PROFILES: [Profile; 2] = [Profile::X86_64, Profile::I386];

/// The kernel's `test_loop_count` is 1,000,000; this many keeps each test well under a
/// second in the test profile.
const LOOPS: usize = 2_000;

/// Page counts at the start of a test, after shrinking every cache.
struct Baseline {
    free: u64,
    pagetables: u64,
    slab: u64,
}

fn slab_pages(mm: &Mm<SimPlatform>) -> u64 {
    mm.slab_pages().total()
}

fn free_pages(mm: &Mm<SimPlatform>) -> u64 {
    mm.zones().iter().map(|z| z.free_pages()).sum()
}

fn baseline(m: &Machine) -> Baseline {
    shrink_all_caches(m);
    let mm = m.mm();
    Baseline {
        free: free_pages(&mm),
        pagetables: mm.nr_pagetable_pages(),
        slab: slab_pages(&mm),
    }
}

/// Run the pending work, purge, check everything, and count every page back.
fn finish(m: &Machine, base: &Baseline, what: &str) {
    m.run(|mm| {
        mm.run_work();
        mm.purge_vmap_area_lazy();
        assert_eq!(
            mm.vmap_lazy_nr(),
            0,
            "{what}: lazy pages left after a purge"
        );
        assert_eq!(mm.vmalloc_nr_pages(), 0, "{what}: vmalloc pages still held");
    });
    check(m, what);
    shrink_all_caches(m);
    let mm = m.mm();
    let pt = mm.nr_pagetable_pages() - base.pagetables;
    let slab = slab_pages(&mm) as i64 - base.slab as i64;
    assert_eq!(
        free_pages(&mm) as i64 + pt as i64 + slab,
        base.free as i64,
        "{what}: pages lost (free {} now, {} at the start; {pt} new page tables, slab {slab:+})",
        free_pages(&mm),
        base.free
    );
}

fn check(m: &Machine, what: &str) {
    let mm = m.mm();
    mm.check().unwrap_or_else(|e| panic!("{what}: check: {e}"));
    mm.check()
        .unwrap_or_else(|e| panic!("{what}: check(): {e}"));
}

/// `vfree`, then run the work the free scheduled (the lazy purge's drain), as the kernel's
/// kworker would soon after.
fn vfree(mm: &Mm<SimPlatform>, p: VirtAddr) {
    mm.vfree(p).unwrap_or_else(|e| panic!("vfree({p}): {e}"));
    if mm.work_pending() {
        mm.run_work();
    }
}

fn poke(mm: &Mm<SimPlatform>, p: VirtAddr, byte: u8) {
    mm.copy_to_kernel_virt(p, &[byte])
        .unwrap_or_else(|at| panic!("write at {at} not mapped"));
}

fn peek(mm: &Mm<SimPlatform>, p: VirtAddr) -> u8 {
    let mut b = [0u8];
    mm.copy_from_kernel_virt(p, &mut b)
        .unwrap_or_else(|at| panic!("read at {at} not mapped"));
    b[0]
}

/// `__vmalloc_node(size, align, gfp, node, caller)`: the whole vmalloc range.
#[track_caller]
fn vmalloc_node(
    mm: &Mm<SimPlatform>,
    size: usize,
    align: u64,
    gfp: Gfp,
) -> Result<VirtAddr, VmallocError> {
    let l = mm.layout();
    mm.__vmalloc_node_range(
        size,
        align,
        l.vmalloc_start,
        l.vmalloc_end,
        gfp,
        PgProt::kernel(mm.profile()),
        VmFlags::empty(),
        0,
        CallSite::caller(),
    )
}

fn console_has(m: &Machine, needle: &str) -> bool {
    m.take_console().iter().any(|l| l.contains(needle))
}

fn pages_of(mm: &Mm<SimPlatform>, p: VirtAddr) -> Vec<Pfn> {
    let mut pfns = vec![];
    mm.vm_area_pfns(p, |pfn| pfns.push(pfn)).unwrap();
    pfns
}

// ----- lib/test_vmalloc.c ----------------------------------------------------------

#[test]
fn fix_size_alloc_test() {
    for profile in PROFILES {
        let m = MachineBuilder::new()
            .profile(profile)
            .all_lowmem()
            .cpus(2)
            .seed(0x7e57)
            .boot();
        let base = baseline(&m);
        m.run(|mm| {
            for i in 0..LOOPS {
                let p = mm.vmalloc(PAGE_SIZE).unwrap();
                poke(mm, p, 0);
                vfree(mm, p);
                if i % 64 == 0 {
                    mm.check_vmalloc_trees().unwrap();
                }
            }
        });
        finish(&m, &base, &format!("{profile} fix_size_alloc_test"));
    }
}

/// `fix_size_alloc_test` with `use_huge=1 nr_pages=1024`: 4 MiB through `vmalloc_huge`.
#[test]
fn fix_size_alloc_test_use_huge() {
    for profile in PROFILES {
        let m = MachineBuilder::new()
            .profile(profile)
            .all_lowmem()
            .cpus(2)
            .seed(0x7e57)
            .boot();
        let base = baseline(&m);
        m.run(|mm| {
            for i in 0..50 {
                let p = mm.vmalloc_huge(1024 * PAGE_SIZE, Gfp::GFP_KERNEL).unwrap();
                poke(mm, p, 0);
                let order = mm.find_vm_area(p).unwrap().page_order;
                assert_eq!(order, if profile == Profile::X86_64 { 9 } else { 0 });
                vfree(mm, p);
                if i % 8 == 0 {
                    mm.check().unwrap();
                }
            }
        });
        finish(
            &m,
            &base,
            &format!("{profile} fix_size_alloc_test use_huge"),
        );
    }
}

#[test]
fn full_fit_alloc_test() {
    for profile in PROFILES {
        let m = MachineBuilder::new()
            .profile(profile)
            .all_lowmem()
            .cpus(2)
            .seed(0x7e57)
            .boot();
        let base = baseline(&m);
        let what = format!("{profile} full_fit_alloc_test");
        m.run(|mm| {
            let junk_length = (mm.lazy_max_pages() / 2) as usize; // fls(cpus) * 32 MiB / 8 KiB
            assert_eq!(junk_length, 2 * (32 << 20) / PAGE_SIZE / 2);
            let ptr_array = mm.vmalloc(8 * junk_length).unwrap();
            let junk_array = mm.vmalloc(8 * junk_length).unwrap();
            let mut ptr = Vec::with_capacity(junk_length);
            let mut junk = Vec::with_capacity(junk_length);
            for _ in 0..junk_length {
                ptr.push(mm.vmalloc(PAGE_SIZE).unwrap());
                junk.push(mm.vmalloc(PAGE_SIZE).unwrap());
            }
            mm.check().unwrap();
            for &j in &junk {
                vfree(mm, j);
            }
            // 2 * junk_length lazy pages passed lazy_max_pages once: the drain ran then,
            // and the second half waits below the threshold.
            assert!(mm.vmap_lazy_nr() <= mm.lazy_max_pages());
            // As the drain work would have done by now: every junk area becomes a free
            // 2-page hole between two live areas.
            mm.purge_vmap_area_lazy();
            assert_eq!(mm.vmap_lazy_nr(), 0);
            mm.check().unwrap();
            junk.sort_unstable();
            for (i, &hole) in junk.iter().enumerate().take(LOOPS) {
                let tmp = mm.vmalloc(PAGE_SIZE).unwrap();
                // The lowest hole fits exactly; the freed ones wait for the purge, so the
                // next allocation takes the next hole.
                assert_eq!(tmp, hole, "{what}: allocation {i} is not a full fit");
                poke(mm, tmp, 1);
                vfree(mm, tmp);
                if i % 64 == 0 {
                    mm.check_vmalloc_trees().unwrap();
                }
            }
            for p in ptr {
                vfree(mm, p);
            }
            vfree(mm, ptr_array);
            vfree(mm, junk_array);
        });
        finish(&m, &base, &what);
    }
}

#[test]
fn long_busy_list_alloc_test() {
    for profile in PROFILES {
        let m = MachineBuilder::new()
            .profile(profile)
            .all_lowmem()
            .cpus(2)
            .seed(0x7e57)
            .boot();
        let base = baseline(&m);
        m.run(|mm| {
            let ptr_array = mm.vmalloc(8 * 15_000).unwrap();
            let ptr: Vec<VirtAddr> = (0..15_000)
                .map(|_| mm.vmalloc(PAGE_SIZE).unwrap())
                .collect();
            mm.check().unwrap();
            for i in 0..LOOPS {
                let p1 = mm.vmalloc(100 * PAGE_SIZE).unwrap();
                let p2 = mm.vmalloc(PAGE_SIZE).unwrap();
                poke(mm, p1, 0);
                poke(mm, p2, 1);
                vfree(mm, p1);
                vfree(mm, p2);
                if i % 256 == 0 {
                    mm.check_vmalloc_trees().unwrap();
                }
            }
            for p in ptr {
                vfree(mm, p);
            }
            vfree(mm, ptr_array);
        });
        finish(&m, &base, &format!("{profile} long_busy_list_alloc_test"));
    }
}

#[test]
fn random_size_alloc_test() {
    for profile in PROFILES {
        let m = MachineBuilder::new()
            .profile(profile)
            .all_lowmem()
            .cpus(2)
            .seed(0x7e57)
            .boot();
        let base = baseline(&m);
        let mut rng = ChaCha8Rng::seed_from_u64(8);
        m.run(|mm| {
            for i in 0..LOOPS {
                let n = rng.gen_range(1..=100usize);
                let p = mm.vmalloc(n * PAGE_SIZE).unwrap();
                assert_eq!(mm.find_vm_area(p).unwrap().nr_pages, n as u64);
                poke(mm, p, 1);
                poke(mm, VirtAddr(p.0 + (n * PAGE_SIZE) as u64 - 1), 1);
                vfree(mm, p);
                if i % 64 == 0 {
                    mm.check_vmalloc_trees().unwrap();
                }
            }
        });
        finish(&m, &base, &format!("{profile} random_size_alloc_test"));
    }
}

/// `THREAD_ALIGN`: `THREAD_SIZE`, 16 KiB on x86_64 and 8 KiB on i386.
fn thread_align(profile: Profile) -> u64 {
    match profile {
        Profile::X86_64 => 16 << 10,
        Profile::I386 => 8 << 10,
    }
}

#[test]
fn fix_align_alloc_test() {
    for profile in PROFILES {
        let m = MachineBuilder::new()
            .profile(profile)
            .all_lowmem()
            .cpus(2)
            .seed(0x7e57)
            .boot();
        let base = baseline(&m);
        let align = thread_align(profile) << 1;
        m.run(|mm| {
            for i in 0..LOOPS {
                let p = vmalloc_node(mm, 5 * PAGE_SIZE, align, Gfp::GFP_KERNEL | Gfp::__GFP_ZERO)
                    .unwrap();
                assert_eq!(p.0 % align, 0, "{p} not aligned to {align:#x}");
                assert_eq!(peek(mm, VirtAddr(p.0 + 4 * PAGE_SIZE as u64)), 0);
                vfree(mm, p);
                if i % 64 == 0 {
                    mm.check_vmalloc_trees().unwrap();
                }
            }
        });
        finish(&m, &base, &format!("{profile} fix_align_alloc_test"));
    }
}

#[test]
fn random_size_align_alloc_test() {
    for profile in PROFILES {
        let m = MachineBuilder::new()
            .profile(profile)
            .all_lowmem()
            .cpus(2)
            .seed(0x7e57)
            .boot();
        let base = baseline(&m);
        let mut rng = ChaCha8Rng::seed_from_u64(32);
        m.run(|mm| {
            for i in 0..LOOPS {
                let rnd: u8 = rng.r#gen();
                let align = 1u64 << (rnd % 23);
                let size = ((rnd % 10) as usize + 1) * PAGE_SIZE;
                let p = vmalloc_node(mm, size, align, Gfp::GFP_KERNEL | Gfp::__GFP_ZERO)
                    .unwrap_or_else(|e| panic!("size {size:#x} align {align:#x}: {e}"));
                assert_eq!(p.0 % align, 0, "{p} not aligned to {align:#x}");
                assert_eq!(peek(mm, VirtAddr(p.0 + size as u64 - 1)), 0);
                vfree(mm, p);
                if i % 64 == 0 {
                    mm.check_vmalloc_trees().unwrap();
                }
            }
        });
        finish(
            &m,
            &base,
            &format!("{profile} random_size_align_alloc_test"),
        );
    }
}

/// Expected to fail (the kernel marks it xfail): alignments up to 2^(BITS_PER_LONG - 1).
/// Those for which an aligned address exists in the vmalloc range succeed; the rest fail
/// cleanly with the kernel's "vmap allocation for size" line.
#[test]
fn align_shift_alloc_test() {
    for profile in PROFILES {
        let m = MachineBuilder::new()
            .profile(profile)
            .all_lowmem()
            .cpus(2)
            .seed(0x7e57)
            .boot();
        let base = baseline(&m);
        let bits_per_long = match profile {
            Profile::X86_64 => 64,
            Profile::I386 => 32,
        };
        let (start, end) = (m.mm().layout().vmalloc_start, m.mm().layout().vmalloc_end);
        m.take_console();
        let mut failed = vec![];
        m.run(|mm| {
            for i in 0..bits_per_long {
                let align = 1u64 << i;
                // With guard page: 2 pages at the first aligned address of the range.
                let fits = start
                    .checked_add(align - 1)
                    .map(|a| a & !(align - 1))
                    .and_then(|a| a.checked_add(2 * PAGE_SIZE as u64))
                    .is_some_and(|e| e <= end);
                match vmalloc_node(mm, PAGE_SIZE, align, Gfp::GFP_KERNEL | Gfp::__GFP_ZERO) {
                    Ok(p) => {
                        assert!(fits, "align 1 << {i} should not fit, got {p}");
                        assert_eq!(p.0 % align, 0);
                        vfree(mm, p);
                    }
                    Err(e) => {
                        assert!(!fits, "align 1 << {i} should fit: {e}");
                        assert!(
                            matches!(e, VmallocError::NoVmapSpace { .. }),
                            "align 1 << {i}: {e:?}"
                        );
                        failed.push(i);
                    }
                }
                mm.check_vmalloc_trees().unwrap();
            }
        });
        // x86_64: VMALLOC_START is 2^40-aligned and the range is 32 TiB, so 2^45 is the
        // largest alignment that fits; i386 (512 MiB): 0xe0800000.. fits 2^28.
        let first_fail = match profile {
            Profile::X86_64 => 46,
            Profile::I386 => 29,
        };
        assert_eq!(failed, (first_fail..bits_per_long).collect::<Vec<_>>());
        assert!(console_has(&m, "vmap allocation for size"));
        finish(&m, &base, &format!("{profile} align_shift_alloc_test"));
    }
}

/// `vm_map_ram_test` (with `nr_pages` 1, the default, and 16 and 100: below and above
/// `VMAP_MAX_ALLOC`), and the same loop through `vmap`/`vunmap`.
#[test]
fn vm_map_ram_test() {
    for profile in PROFILES {
        let m = MachineBuilder::new()
            .profile(profile)
            .all_lowmem()
            .cpus(2)
            .seed(0x7e57)
            .boot();
        let base = baseline(&m);
        m.run(|mm| {
            for map_nr_pages in [1usize, 16, 100] {
                let pages: Vec<Pfn> = (0..map_nr_pages)
                    .map(|_| mm.page_to_pfn(mm.alloc_pages(Gfp::GFP_KERNEL, 0).unwrap()))
                    .collect();
                for i in 0..LOOPS / 4 {
                    let v = mm.vm_map_ram(&pages).unwrap();
                    assert!(mm.is_vmalloc_addr(v));
                    assert!(mm.find_vm_area(v).is_none(), "vm_map_ram has no vm_struct");
                    let last = VirtAddr(v.0 + ((map_nr_pages - 1) * PAGE_SIZE + 1) as u64);
                    poke(mm, v, b'a');
                    poke(mm, last, i as u8);
                    assert_eq!(mm.vmalloc_to_pfn(last), Some(pages[map_nr_pages - 1]));
                    mm.vm_unmap_ram(v, map_nr_pages).unwrap();
                    assert_eq!(mm.vmalloc_to_pfn(v), None);
                    if mm.work_pending() {
                        mm.run_work();
                    }
                    // The write went to the page itself (lowmem: its direct-map alias).
                    let alias = mm.page_address(mm.pfn_to_page(pages[0]).unwrap()).unwrap();
                    let mut b = [0u8];
                    mm.copy_from_kernel(alias, &mut b).unwrap();
                    assert_eq!(b[0], b'a');
                    if i % 64 == 0 {
                        mm.check().unwrap();
                    }
                }
                for i in 0..LOOPS / 4 {
                    let v = mm
                        .vmap(&pages, VmFlags::VM_MAP, PgProt::kernel(mm.profile()))
                        .unwrap();
                    let area = mm.find_vm_area(v).unwrap();
                    assert_eq!(area.usable_size(), (map_nr_pages * PAGE_SIZE) as u64);
                    assert_eq!(pages_of(mm, v), pages);
                    poke(mm, v, b'b');
                    mm.vunmap(v).unwrap();
                    if mm.work_pending() {
                        mm.run_work();
                    }
                    if i % 64 == 0 {
                        mm.check().unwrap();
                    }
                }
                // vunmap leaves the pages with their owner.
                for &pfn in &pages {
                    let page = mm.pfn_to_page(pfn).unwrap();
                    assert!(!page.is_buddy());
                    mm.__free_pages(page, 0).unwrap();
                }
            }
        });
        finish(&m, &base, &format!("{profile} vm_map_ram_test"));
    }
}

/// `vrealloc_test` (kernel 6.13+).
#[test]
fn vrealloc_test() {
    for profile in PROFILES {
        let m = MachineBuilder::new()
            .profile(profile)
            .all_lowmem()
            .cpus(2)
            .seed(0x7e57)
            .boot();
        let base = baseline(&m);
        m.run(|mm| {
            for i in 0..LOOPS / 2 {
                let p = mm
                    .vrealloc(VirtAddr(0), PAGE_SIZE, Gfp::GFP_KERNEL)
                    .unwrap();
                poke(mm, p, b'a');
                // Grow beyond the allocated pages: a full reallocation.
                let p = mm.vrealloc(p, 4 * PAGE_SIZE, Gfp::GFP_KERNEL).unwrap();
                assert_eq!(peek(mm, p), b'a');
                assert_eq!(mm.find_vm_area(p).unwrap().nr_pages, 4);
                // Shrink across a page boundary.
                let q = mm.vrealloc(p, PAGE_SIZE, Gfp::GFP_KERNEL).unwrap();
                assert_eq!(q, p, "shrinking stays in place");
                assert_eq!(peek(mm, q), b'a');
                // Shrink within the page.
                let q = mm.vrealloc(q, PAGE_SIZE / 2, Gfp::GFP_KERNEL).unwrap();
                assert_eq!(q, p);
                assert_eq!(peek(mm, q), b'a');
                assert_eq!(
                    mm.find_vm_area(q).unwrap().requested_size,
                    PAGE_SIZE as u64 / 2
                );
                // Grow within the allocated pages: in place.
                let q = mm.vrealloc(q, PAGE_SIZE, Gfp::GFP_KERNEL).unwrap();
                assert_eq!(q, p);
                assert_eq!(peek(mm, q), b'a');
                vfree(mm, q);
                if i % 64 == 0 {
                    mm.check_vmalloc_trees().unwrap();
                }
            }
            // Size 0 frees.
            let p = mm.vmalloc(PAGE_SIZE).unwrap();
            assert_eq!(mm.vrealloc(p, 0, Gfp::GFP_KERNEL), Ok(VirtAddr(0)));
            assert!(mm.find_vm_area(p).is_none());
        });
        finish(&m, &base, &format!("{profile} vrealloc_test"));
    }
}

/// `no_block_alloc_test`: `__vmalloc(GFP_ATOMIC or GFP_NOWAIT)` under `preempt_disable()`.
/// Linux 6.6 refuses it (`alloc_vmap_area()` calls `might_sleep()`); the kernel marks
/// the test xfail. Every attempt must be refused with the splat and leak nothing.
#[test]
fn no_block_alloc_test() {
    for profile in PROFILES {
        let m = MachineBuilder::new()
            .profile(profile)
            .all_lowmem()
            .cpus(2)
            .seed(0x7e57)
            .boot();
        let base = baseline(&m);
        let mut rng = ChaCha8Rng::seed_from_u64(2048);
        m.take_console();
        m.run(|mm| {
            for _ in 0..200 {
                let gfp = if rng.r#gen::<u8>() % 2 == 1 {
                    Gfp::GFP_ATOMIC
                } else {
                    Gfp::GFP_NOWAIT
                };
                mm.preempt_disable();
                let r = mm.__vmalloc(PAGE_SIZE, gfp);
                mm.preempt_enable();
                assert!(
                    matches!(r, Err(VmallocError::SleepInAtomic(_))),
                    "{gfp:?}: {r:?}"
                );
                mm.check_vmalloc_trees().unwrap();
            }
        });
        assert!(console_has(
            &m,
            "BUG: sleeping function called from invalid context"
        ));
        finish(&m, &base, &format!("{profile} no_block_alloc_test"));
    }
}

// ----- context rules ---------------------------------------------------------------

#[test]
fn vmalloc_from_hardirq_and_nmi_is_a_bug() {
    for profile in PROFILES {
        let m = MachineBuilder::new()
            .profile(profile)
            .all_lowmem()
            .cpus(2)
            .seed(0x7e57)
            .boot();
        let base = baseline(&m);
        m.take_console();
        for ctx in [Context::Hardirq, Context::Nmi] {
            let r = m.on_cpu(1, ctx, |mm| mm.vmalloc(PAGE_SIZE)).unwrap();
            assert!(
                matches!(r, Err(VmallocError::InInterrupt(_))),
                "{ctx:?}: {r:?}"
            );
            assert!(console_has(&m, "kernel BUG at mm/vmalloc.c:"), "{ctx:?}");
            let r = m.on_cpu(1, ctx, |mm| mm.vzalloc(3 * PAGE_SIZE)).unwrap();
            assert!(r.is_err());
            let r = m.on_cpu(1, ctx, |mm| mm.vm_map_ram(&[Pfn(0x100)])).unwrap();
            assert!(r.is_err(), "{ctx:?}: vm_map_ram {r:?}");
            check(&m, "after a refused vmalloc");
        }
        m.take_console();
        finish(&m, &base, &format!("{profile} vmalloc in interrupt"));
    }
}

#[test]
fn vfree_from_hardirq_is_deferred() {
    for profile in PROFILES {
        let m = MachineBuilder::new()
            .profile(profile)
            .all_lowmem()
            .cpus(2)
            .seed(0x7e57)
            .boot();
        let base = baseline(&m);
        let p = m.run(|mm| mm.vmalloc(5 * PAGE_SIZE).unwrap());
        let bugs = m.mm().vmalloc_stats().bugs.load(Relaxed);
        m.on_cpu(0, Context::Hardirq, |mm| {
            mm.vfree(p).unwrap();
            assert_eq!(mm.deferred_vfrees(0), 1);
            assert!(mm.work_pending());
            // Still a live area until the work runs.
            assert!(mm.find_vm_area(p).is_some());
            mm.check().unwrap();
        })
        .unwrap();
        assert_eq!(m.mm().vmalloc_stats().deferred_frees.load(Relaxed), 1);
        // Until on_cpu runs the work itself when the outermost call returns, run it here
        // in process context, as CPU 0's kworker would.
        m.run(|mm| {
            if mm.deferred_vfrees(0) == 1 {
                assert_eq!(mm.run_work(), 1);
            }
            assert_eq!(mm.deferred_vfrees(0), 0);
            assert!(mm.find_vm_area(p).is_none(), "the deferred vfree ran");
        });
        assert_eq!(m.mm().vmalloc_stats().bugs.load(Relaxed), bugs);
        finish(&m, &base, &format!("{profile} deferred vfree"));
    }
}

#[test]
fn vfree_from_nmi_and_vunmap_from_hardirq_are_bugs() {
    for profile in PROFILES {
        let m = MachineBuilder::new()
            .profile(profile)
            .all_lowmem()
            .cpus(2)
            .seed(0x7e57)
            .boot();
        let base = baseline(&m);
        let p = m.run(|mm| mm.vmalloc(2 * PAGE_SIZE).unwrap());
        m.take_console();
        let r = m.on_cpu(0, Context::Nmi, |mm| mm.vfree(p)).unwrap();
        assert!(matches!(r, Err(VmallocError::InNmi(_))), "{r:?}");
        assert!(console_has(&m, "kernel BUG at mm/vmalloc.c:"));
        assert_eq!(m.mm().deferred_vfrees(0), 0);
        assert!(m.mm().find_vm_area(p).is_some(), "the area survives");

        let page = m.run(|mm| mm.page_to_pfn(mm.alloc_pages(Gfp::GFP_KERNEL, 0).unwrap()));
        let v = m.run(|mm| {
            mm.vmap(&[page], VmFlags::VM_MAP, PgProt::kernel(mm.profile()))
                .unwrap()
        });
        let r = m.on_cpu(0, Context::Hardirq, |mm| mm.vunmap(v)).unwrap();
        assert!(matches!(r, Err(VmallocError::InInterrupt(_))), "{r:?}");
        assert!(console_has(&m, "kernel BUG at mm/vmalloc.c:"));
        check(&m, "after refused frees");
        m.run(|mm| {
            mm.vunmap(v).unwrap();
            mm.vfree(p).unwrap();
            mm.__free_pages(mm.pfn_to_page(page).unwrap(), 0).unwrap();
        });
        finish(&m, &base, &format!("{profile} vfree in NMI"));
    }
}

#[test]
fn double_vfree_is_reported() {
    for profile in PROFILES {
        let m = MachineBuilder::new()
            .profile(profile)
            .all_lowmem()
            .cpus(2)
            .seed(0x7e57)
            .boot();
        let base = baseline(&m);
        m.take_console();
        m.run(|mm| {
            let p = mm.vmalloc(3 * PAGE_SIZE).unwrap();
            mm.vfree(p).unwrap();
            assert_eq!(mm.vfree(p), Err(VmallocError::NoSuchArea(p)));
            // Also once the range was purged, and for an address inside a live area.
            mm.purge_vmap_area_lazy();
            assert_eq!(mm.vfree(p), Err(VmallocError::NoSuchArea(p)));
            let q = mm.vmalloc(3 * PAGE_SIZE).unwrap();
            assert!(mm.vfree(VirtAddr(q.0 + PAGE_SIZE as u64 + 8)).is_err());
            mm.vfree(q).unwrap();
            assert!(mm
                .vfree(VirtAddr(mm.layout().vmalloc_start - PAGE_SIZE as u64))
                .is_err());
        });
        let console = m.take_console();
        assert!(
            console
                .iter()
                .filter(|l| l.contains("Trying to vfree() nonexistent vm area"))
                .count()
                >= 2,
            "{console:?}"
        );
        finish(&m, &base, &format!("{profile} double vfree"));
    }
}

// ----- lazy purge -------------------------------------------------------------------

#[test]
fn lazy_purge_flushes_once_and_never_reuses_early() {
    for profile in PROFILES {
        let m = MachineBuilder::new()
            .profile(profile)
            .all_lowmem()
            .cpus(2)
            .seed(0x7e57)
            .boot();
        let base = baseline(&m);
        m.run(|mm| {
            let max = mm.lazy_max_pages();
            assert_eq!(max, 2 * (32 << 20) / PAGE_SIZE as u64, "fls(2) * 32 MiB");
            // 64 pages + guard = 65 lazy pages per free.
            let n = (max / 65 + 1) as usize;
            let areas: Vec<VirtAddr> = (0..n)
                .map(|_| mm.vmalloc(64 * PAGE_SIZE).unwrap())
                .collect();
            let mut freed: Vec<(u64, u64)> = vec![];
            for (i, &a) in areas.iter().enumerate() {
                mm.vfree(a).unwrap();
                freed.push((a.0, a.0 + 65 * PAGE_SIZE as u64));
                assert_eq!(mm.vmap_lazy_nr(), 65 * (i as u64 + 1));
                assert_eq!(
                    mm.work_pending(),
                    i + 1 == n,
                    "drain scheduled past the limit only"
                );
                if i % 32 == 0 {
                    mm.check().unwrap();
                }
            }
            assert!(mm.vmap_lazy_nr() > max);
            // Not purged yet: a new allocation takes fresh space.
            let fresh = mm.vmalloc(64 * PAGE_SIZE).unwrap();
            let fresh_end = fresh.0 + 65 * PAGE_SIZE as u64;
            for &(s, e) in &freed {
                assert!(
                    fresh_end <= s || fresh.0 >= e,
                    "{fresh} reuses lazily freed {s:#x}..{e:#x}"
                );
            }
            let tlb0 = mm.platform().tlb_flushes();
            let stat0 = mm.vmalloc_stats().tlb_flushes.load(Relaxed);
            let purges0 = mm.vmalloc_stats().purges.load(Relaxed);
            assert_eq!(mm.run_work(), 1);
            assert!(!mm.work_pending());
            assert_eq!(mm.vmap_lazy_nr(), 0);
            assert_eq!(
                mm.platform().tlb_flushes() - tlb0,
                1,
                "one flush covers them all"
            );
            assert_eq!(mm.vmalloc_stats().tlb_flushes.load(Relaxed) - stat0, 1);
            assert_eq!(mm.vmalloc_stats().purges.load(Relaxed) - purges0, 1);
            mm.check().unwrap();
            // Now the space is free again: the lowest fit is the first freed area.
            let lowest = freed.iter().map(|f| f.0).min().unwrap();
            let again = mm.vmalloc(64 * PAGE_SIZE).unwrap();
            assert_eq!(again.0, lowest);
            vfree(mm, again);
            vfree(mm, fresh);
        });
        finish(&m, &base, &format!("{profile} lazy purge"));
    }
}

// ----- zones --------------------------------------------------------------------------

/// i386 with 2 GiB: vmalloc takes HighMem pages (no direct-map alias), which are reached
/// through the vmalloc mapping only.
#[test]
fn i386_vmalloc_uses_highmem() {
    let m = MachineBuilder::new()
        .profile(Profile::I386)
        .ram(2 * GIB)
        .cpus(2)
        .seed(0x7e57)
        .boot();
    let base = baseline(&m);
    m.run(|mm| {
        let size = 8 << 20;
        let p = mm.vmalloc(size).unwrap();
        let pfns = pages_of(mm, p);
        assert_eq!(pfns.len(), size / PAGE_SIZE);
        for (i, &pfn) in pfns.iter().enumerate() {
            let page = mm.pfn_to_page(pfn).unwrap();
            assert_eq!(mm.page_zone(page).zone_type, ZoneType::HighMem);
            assert_eq!(mm.layout().phys_to_virt(pfn.phys().0), None);
            assert_eq!(mm.page_address(page), None);
            poke(mm, VirtAddr(p.0 + (i * PAGE_SIZE) as u64 + 7), i as u8);
        }
        // The bytes landed in the pages themselves.
        for (i, &pfn) in pfns.iter().enumerate().step_by(97) {
            let mut b = [0u8];
            mm.platform().ram().read(pfn.phys().0 + 7, &mut b).unwrap();
            assert_eq!(b[0], i as u8);
        }
        mm.check().unwrap();
        vfree(mm, p);
    });
    finish(&m, &base, "i386 HighMem vmalloc");
}

/// `vmalloc_32`: pages addressable with 32 bits. x86_64 with 6 GiB and the PCI hole: the
/// pages are below 4 GiB (DMA32/DMA), while plain vmalloc prefers ZONE_NORMAL above it.
/// i386: `GFP_VMALLOC32` is `GFP_DMA32 | GFP_KERNEL`, which keeps vmalloc from adding
/// `__GFP_HIGHMEM`: the pages are lowmem.
#[test]
fn vmalloc_32_pages_are_32_bit_addressable() {
    let m = MachineBuilder::new()
        .ram(6 * GIB)
        .cpus(2)
        .holes(vec![Hole::LEGACY, Hole::PCI])
        .boot();
    let base = baseline(&m);
    m.run(|mm| {
        let p = mm.vmalloc_32(16 << 20).unwrap();
        for pfn in pages_of(mm, p) {
            assert!(
                pfn.phys().0 < 4 * GIB,
                "vmalloc_32 page at {:#x}",
                pfn.phys().0
            );
            let zt = mm.page_zone(mm.pfn_to_page(pfn).unwrap()).zone_type;
            assert!(matches!(zt, ZoneType::Dma32 | ZoneType::Dma), "{zt}");
        }
        let q = mm.vmalloc(16 << 20).unwrap();
        for pfn in pages_of(mm, q) {
            assert!(pfn.phys().0 >= 4 * GIB);
        }
        mm.check().unwrap();
        vfree(mm, p);
        vfree(mm, q);
    });
    finish(&m, &base, "x86_64 vmalloc_32");

    let m = MachineBuilder::new()
        .profile(Profile::I386)
        .ram(2 * GIB)
        .cpus(2)
        .seed(0x7e57)
        .boot();
    let base = baseline(&m);
    m.run(|mm| {
        let p = mm.vmalloc_32(4 << 20).unwrap();
        for pfn in pages_of(mm, p) {
            let zt = mm.page_zone(mm.pfn_to_page(pfn).unwrap()).zone_type;
            assert_ne!(zt, ZoneType::HighMem, "i386 vmalloc_32 took a HighMem page");
        }
        vfree(mm, p);
    });
    finish(&m, &base, "i386 vmalloc_32");
}

// ----- huge mappings -----------------------------------------------------------------

#[test]
fn vmalloc_huge_uses_pmd_leaves_on_x86_64() {
    let m = MachineBuilder::new().ram(GIB).cpus(2).seed(0x7e57).boot();
    let base = baseline(&m);
    m.run(|mm| {
        let p = mm.vmalloc_huge(4 << 20, Gfp::GFP_KERNEL).unwrap();
        assert_eq!(p.0 % (2 << 20), 0);
        let area = mm.find_vm_area(p).unwrap();
        assert_eq!(area.page_order, 9);
        assert_eq!(area.nr_pages, 1024);
        for off in [0u64, 4096, (2 << 20) - 1, 2 << 20, (4 << 20) - 1] {
            let t = mm.kernel_translate(p.0 + off).unwrap();
            assert_eq!(t.page_size, 2 << 20, "offset {off:#x}");
        }
        // Each 2 MiB leaf maps one physically contiguous order-9 block.
        let pfns = pages_of(mm, p);
        for w in pfns.chunks(512) {
            assert_eq!(w[0].0 % 512, 0);
            assert!(w.windows(2).all(|x| x[1].0 == x[0].0 + 1));
        }
        poke(mm, VirtAddr(p.0 + (3 << 20) + 5), 0x5a);
        assert_eq!(peek(mm, VirtAddr(p.0 + (3 << 20) + 5)), 0x5a);
        mm.check().unwrap();
        vfree(mm, p);
        // A size below 2 MiB uses small pages.
        let s = mm.vmalloc_huge(1 << 20, Gfp::GFP_KERNEL).unwrap();
        assert_eq!(mm.find_vm_area(s).unwrap().page_order, 0);
        assert_eq!(mm.kernel_translate(s.0).unwrap().page_size, 4096);
        vfree(mm, s);
    });
    finish(&m, &base, "x86_64 vmalloc_huge");
}

/// With no order-9 block free anywhere, `vmalloc_huge` falls back to 4 KiB pages.
/// Memory is fragmented by taking every free block (largest orders first, so every
/// order-9 block is among them), splitting the order >= 1 ones, and freeing every other
/// 4 KiB page of them: what is free then is single pages with taken neighbours (and, in
/// ZONE_DMA, a few small blocks that its lowmem reserve kept from the first pass).
#[test]
fn vmalloc_huge_falls_back_to_small_pages_when_fragmented() {
    let m = MachineBuilder::new()
        .ram(64 * MIB)
        .cpus(1)
        .seed(0x7e57)
        .boot();
    let base = baseline(&m);
    m.run(|mm| {
        let gfp = Gfp::GFP_KERNEL | Gfp::__GFP_NOWARN;
        let mut held: Vec<Pfn> = vec![];
        for order in (0..=10u32).rev() {
            while let Ok(page) = mm.alloc_pages(gfp | Gfp::__GFP_HIGH, order) {
                let pfn = mm.page_to_pfn(page);
                if order > 0 {
                    mm.split_page(page, order).unwrap();
                }
                held.extend((0..1u64 << order).map(|i| Pfn(pfn.0 + i)));
            }
        }
        held.sort_unstable();
        let mut kept = vec![];
        for (i, &pfn) in held.iter().enumerate() {
            if i % 2 == 0 {
                mm.__free_pages(mm.pfn_to_page(pfn).unwrap(), 0).unwrap();
            } else {
                kept.push(pfn);
            }
        }
        mm.drain_all_pages();
        for z in mm.zones() {
            let snap = mm.free_area_snapshot(z);
            // (Low orders may remain in ZONE_DMA, behind its lowmem reserve.)
            assert!(
                snap.nr_free[9..].iter().all(|&n| n == 0),
                "{}: free blocks of order 9 or more remain: {:?}",
                z.zone_type,
                snap.nr_free
            );
        }
        let p = mm.vmalloc_huge(4 << 20, Gfp::GFP_KERNEL).unwrap();
        let area = mm.find_vm_area(p).unwrap();
        assert_eq!(area.page_order, 0, "fell back to small pages");
        assert_eq!(area.nr_pages, 1024);
        assert_eq!(mm.kernel_translate(p.0).unwrap().page_size, 4096);
        assert_eq!(
            mm.kernel_translate(p.0 + (2 << 20)).unwrap().page_size,
            4096
        );
        poke(mm, VirtAddr(p.0 + (4 << 20) - 1), 1);
        mm.check().unwrap();
        vfree(mm, p);
        for pfn in kept {
            mm.__free_pages(mm.pfn_to_page(pfn).unwrap(), 0).unwrap();
        }
    });
    finish(&m, &base, "x86_64 vmalloc_huge fallback");
}

// ----- exhaustion -----------------------------------------------------------------------

/// i386 with 1 GiB: the vmalloc area runs from high_memory (896 MiB) + 8 MiB up to below
/// the pkmap area, ~112 MiB. Allocate 1 MiB areas until it is full, then free everything
/// and see the whole range come back as one free area.
#[test]
fn i386_vmalloc_space_exhaustion() {
    let m = MachineBuilder::new()
        .profile(Profile::I386)
        .ram(GIB)
        .cpus(2)
        .seed(0x7e57)
        .boot();
    let base = baseline(&m);
    let l = *m.mm().layout();
    let span = l.vmalloc_end - l.vmalloc_start;
    assert!(
        span > 100 * MIB && span < 128 * MIB,
        "vmalloc span {span:#x}"
    );
    m.take_console();
    m.run(|mm| {
        let mut areas = vec![];
        let err = loop {
            match mm.vmalloc(1 << 20) {
                Ok(p) => areas.push(p),
                Err(e) => break e,
            }
            if areas.len() % 16 == 0 {
                mm.check_vmalloc_trees().unwrap();
            }
        };
        let per = (1 << 20) + PAGE_SIZE as u64;
        assert!(matches!(err, VmallocError::NoVmapSpace { .. }), "{err:?}");
        assert!(
            err.to_string().contains("vmap allocation for size"),
            "{err}"
        );
        assert_eq!(
            areas.len() as u64,
            span / per,
            "areas of {per:#x} in {span:#x}"
        );
        mm.check().unwrap();
        // Something small still fits in the tail.
        let tail = span % per;
        if tail >= 2 * PAGE_SIZE as u64 {
            let t = mm.vmalloc(PAGE_SIZE).unwrap();
            areas.push(t);
        }
        for p in areas {
            vfree(mm, p);
        }
        mm.purge_vmap_area_lazy();
        // One free area covers the whole range again: it can be reserved in one piece.
        let whole = mm
            .get_vm_area(span as usize - PAGE_SIZE, VmFlags::VM_IOREMAP)
            .unwrap();
        assert_eq!(whole.addr.0, l.vmalloc_start);
        assert_eq!(whole.size, span);
        mm.free_vm_area_at(whole.addr).unwrap();
    });
    assert!(console_has(&m, "vmap allocation for size"));
    finish(&m, &base, "i386 exhaustion");
}

/// x86_64: 32 TiB of vmalloc space is exhausted with `get_vm_area` (no pages), 1 TiB at a
/// time; then it comes back whole.
#[test]
fn x86_64_vmalloc_space_exhaustion_by_get_vm_area() {
    let m = MachineBuilder::new()
        .ram(256 * MIB)
        .cpus(2)
        .seed(0x7e57)
        .boot();
    let base = baseline(&m);
    let l = *m.mm().layout();
    let span = l.vmalloc_end - l.vmalloc_start;
    m.take_console();
    m.run(|mm| {
        let mut areas = vec![];
        let err = loop {
            match mm.get_vm_area(1 << 40, VmFlags::VM_IOREMAP) {
                Ok(a) => areas.push(a.addr),
                Err(e) => break e,
            }
        };
        assert!(matches!(err, VmallocError::NoVmapSpace { .. }), "{err:?}");
        assert_eq!(areas.len() as u64, span / ((1 << 40) + PAGE_SIZE as u64));
        assert!(mm.vmalloc(PAGE_SIZE).is_ok_and(|p| mm.vfree(p).is_ok()));
        mm.check().unwrap();
        for a in areas {
            mm.free_vm_area_at(a).unwrap();
        }
        mm.purge_vmap_area_lazy();
        let whole = mm
            .get_vm_area(span as usize - PAGE_SIZE, VmFlags::VM_IOREMAP)
            .unwrap();
        assert_eq!(whole.addr.0, l.vmalloc_start);
        mm.free_vm_area_at(whole.addr).unwrap();
    });
    finish(&m, &base, "x86_64 exhaustion");
}

/// The argument checks fail cleanly.
#[test]
fn bad_arguments_fail_cleanly() {
    for profile in PROFILES {
        let m = MachineBuilder::new()
            .profile(profile)
            .all_lowmem()
            .cpus(2)
            .seed(0x7e57)
            .boot();
        let base = baseline(&m);
        m.run(|mm| {
            assert_eq!(mm.vmalloc(0), Err(VmallocError::ZeroSize));
            assert!(matches!(
                mm.vmalloc(usize::MAX / 2),
                Err(VmallocError::ExceedsTotalPages { .. })
            ));
            assert!(matches!(
                vmalloc_node(mm, PAGE_SIZE, 3 * PAGE_SIZE as u64, Gfp::GFP_KERNEL),
                Err(VmallocError::BadArgs(_))
            ));
            assert!(matches!(
                vmalloc_node(mm, PAGE_SIZE, 0, Gfp::GFP_KERNEL),
                Err(VmallocError::BadArgs(_))
            ));
            assert!(mm.vmalloc_node(PAGE_SIZE, 1).is_err());
            let p = mm.vmalloc_node(PAGE_SIZE, NUMA_NO_NODE).unwrap();
            vfree(mm, p);
            assert!(mm
                .vmap(&[], VmFlags::VM_MAP, PgProt::kernel(profile))
                .is_err());
            assert!(mm.vm_map_ram(&[]).is_err());
            assert!(mm
                .vm_unmap_ram(VirtAddr(mm.layout().vmalloc_start), 1)
                .is_err());
        });
        finish(&m, &base, &format!("{profile} bad arguments"));
    }
}

/// More pages than are free (but fewer than the machine has): the allocation fails with
/// `Pages`, every page it had is given back, and so is its range. With `vmalloc_huge`
/// the huge attempt fails first and the small-page retry fails too.
#[test]
fn out_of_pages_gives_everything_back() {
    for profile in PROFILES {
        let m = MachineBuilder::new()
            .profile(profile)
            .ram(64 * MIB)
            .cpus(2)
            .seed(0x7e57)
            .boot();
        let base = baseline(&m);
        m.take_console();
        m.run(|mm| {
            // All of totalram_pages: allowed (not more), but some are in use.
            assert!(free_pages(mm) < mm.totalram_pages());
            let size = mm.totalram_pages() as usize * PAGE_SIZE;
            let r = mm.vmalloc(size);
            assert!(matches!(r, Err(VmallocError::Pages { .. })), "{r:?}");
            mm.check().unwrap();
            assert_eq!(mm.vmalloc_nr_pages(), 0);
            let r = mm.vmalloc_huge(size, Gfp::GFP_KERNEL | Gfp::__GFP_NOWARN);
            assert!(r.is_err(), "{r:?}");
            mm.check().unwrap();
            // And the machine is fine afterwards.
            let p = mm.vmalloc(8 << 20).unwrap();
            vfree(mm, p);
        });
        assert!(console_has(&m, "vmalloc error: size"));
        finish(&m, &base, &format!("{profile} out of pages"));
    }
}
