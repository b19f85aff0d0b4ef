//! `init_on_alloc` / `init_on_free` at the page level, applied once by the page allocator
//! as Linux 6.6 does (`post_alloc_hook()` / `free_pages_prepare()` in `mm/page_alloc.c`):
//! the kernel's `test_pages` of `lib/test_meminit.c`, ported, and the pages of a large
//! kmalloc and of a vmalloc area read straight from RAM right after they are freed.

use crate::fixtures::*;
use kmemlab_mm::{Gfp, Mm, Pfn, VirtAddr, MAX_PAGE_ORDER, PAGE_SIZE};
use kmemlab_sim::{Machine, SimPlatform};

const GARBAGE_BYTE: u8 = 0x9E;

fn machine(init_on_alloc: bool, init_on_free: bool) -> Machine {
    MachineBuilder::small()
        .cpus(1)
        .seed(11)
        .init_on(init_on_alloc, init_on_free)
        .boot()
}

fn fill_with_garbage(mm: &Mm<SimPlatform>, p: VirtAddr, size: usize) {
    mm.copy_to_kernel_virt(p, &vec![GARBAGE_BYTE; size])
        .unwrap();
}

fn count_nonzero_bytes(mm: &Mm<SimPlatform>, p: VirtAddr, size: usize) -> usize {
    let mut buf = vec![0; size];
    mm.copy_from_kernel_virt(p, &mut buf).unwrap();
    buf.iter().filter(|&&b| b != 0).count()
}

/// Non-zero bytes of the frame `pfn`, read from RAM as a device would (no kernel mapping).
fn nonzero_bytes_in_frame(m: &Machine, pfn: Pfn) -> usize {
    let mut buf = vec![0; PAGE_SIZE];
    m.mm()
        .platform()
        .ram()
        .read(pfn.phys().0, &mut buf)
        .expect("a frame of RAM");
    buf.iter().filter(|&&b| b != 0).count()
}

/// `do_alloc_pages_order()` for every order: a block filled with garbage, freed, and the
/// next block of that order must be zero. Returns the orders that showed old bytes.
fn test_pages(m: &Machine) -> Vec<u32> {
    let mut failures = vec![];
    m.run(|mm| {
        for order in 0..=MAX_PAGE_ORDER {
            let size = PAGE_SIZE << order;
            let page = mm.alloc_pages(Gfp::GFP_KERNEL, order).unwrap();
            let buf = mm.page_address(page).unwrap();
            fill_with_garbage(mm, buf, size);
            mm.__free_pages(page, order).unwrap();
            let page = mm.alloc_pages(Gfp::GFP_KERNEL, order).unwrap();
            let buf = mm.page_address(page).unwrap();
            if count_nonzero_bytes(mm, buf, size) != 0 {
                failures.push(order);
            }
            fill_with_garbage(mm, buf, size);
            mm.__free_pages(page, order).unwrap();
        }
    });
    failures
}

#[test]
fn test_pages_never_shows_old_bytes_with_init_on_alloc_or_free() {
    for (name, alloc, free) in [
        ("init_on_alloc", true, false),
        ("init_on_free", false, true),
        ("init_on_alloc+init_on_free", true, true),
    ] {
        let m = machine(alloc, free);
        assert_eq!(test_pages(&m), Vec::<u32>::new(), "{name}");
        m.mm().check().unwrap();
    }
    // Without either option the page allocator hands the old bytes on: the zeroing above
    // was the options' doing.
    let m = machine(false, false);
    assert_eq!(test_pages(&m).len() as u32, MAX_PAGE_ORDER + 1);
}

/// With init_on_free, a large kmalloc's pages are zero as soon as kfree() returns: the
/// page allocator's free_pages_prepare() wiped them, not the next allocation. Without it,
/// the freed frames keep the old bytes.
#[test]
fn large_kmalloc_pages_are_wiped_on_free_with_init_on_free() {
    for (free, wiped) in [(true, true), (false, false)] {
        let m = machine(false, free);
        let size = 5 * PAGE_SIZE;
        let p = m.run(|mm| mm.kmalloc(size, Gfp::GFP_KERNEL)).unwrap();
        let pfn = m.mm().page_to_pfn(m.mm().virt_to_page(p).unwrap());
        m.run(|mm| fill_with_garbage(mm, p, size));
        m.run(|mm| mm.kfree(p)).unwrap();
        let pfns: Vec<Pfn> = (0..size.div_ceil(PAGE_SIZE) as u64)
            .map(|i| pfn + i)
            .collect();
        assert_frames_wiped(&m, &pfns, wiped, free);
    }
}

/// With init_on_free, each page of a vmalloc area is zero as soon as vfree() returns.
#[test]
fn vmalloc_pages_are_wiped_on_free_with_init_on_free() {
    for (free, wiped) in [(true, true), (false, false)] {
        let m = machine(false, free);
        let size = 3 * PAGE_SIZE;
        let p = m.run(|mm| mm.vmalloc(size)).unwrap();
        let pfns: Vec<Pfn> = (0..3u64)
            .map(|i| {
                m.mm()
                    .vmalloc_to_pfn(VirtAddr(p.0 + i * PAGE_SIZE as u64))
                    .unwrap()
            })
            .collect();
        m.run(|mm| fill_with_garbage(mm, p, size));
        m.run(|mm| mm.vfree(p)).unwrap();
        assert_frames_wiped(&m, &pfns, wiped, free);
    }
}

/// With init_on_alloc, a large kmalloc and a vmalloc area come zeroed from the page
/// allocator's post_alloc_hook() although neither asked for __GFP_ZERO.
#[test]
fn large_kmalloc_and_vmalloc_pages_come_zeroed_with_init_on_alloc() {
    for (alloc, zeroed) in [(true, true), (false, false)] {
        let m = machine(alloc, false);
        let size = 5 * PAGE_SIZE;
        let (large, vm) = m.run(|mm| {
            let p = mm.kmalloc(size, Gfp::GFP_KERNEL).unwrap();
            fill_with_garbage(mm, p, size);
            mm.kfree(p).unwrap();
            let q = mm.kmalloc(size, Gfp::GFP_KERNEL).unwrap();
            let large = count_nonzero_bytes(mm, q, size);
            fill_with_garbage(mm, q, size);
            mm.kfree(q).unwrap();
            mm.purge_vmap_area_lazy();
            let v = mm.vmalloc(size).unwrap();
            let vm = count_nonzero_bytes(mm, v, size);
            mm.vfree(v).unwrap();
            (large, vm)
        });
        assert_eq!(
            large == 0,
            zeroed,
            "init_on_alloc={alloc}: large kmalloc {large}"
        );
        if zeroed {
            assert_eq!(vm, 0, "init_on_alloc: vmalloc");
        }
        m.mm().check().unwrap();
    }
}

/// With both options on, init_on_free wins for pages: `post_alloc_hook()` (6.6) zeroes
/// only when `!want_init_on_free() && want_init_on_alloc(gfp)`, trusting that the free
/// wiped the page. A stray write into a free page (as a device's DMA after unmapping)
/// therefore shows in the next allocation of that page with both on or with init_on_free
/// alone, even under `__GFP_ZERO`, and is zeroed with init_on_alloc alone.
#[test]
fn init_on_free_wins_over_init_on_alloc_for_pages() {
    for (alloc, free, zeroed) in [
        (true, true, false),
        (false, true, false),
        (true, false, true),
    ] {
        let m = machine(alloc, free);
        for gfp in [Gfp::GFP_KERNEL, Gfp::GFP_KERNEL | Gfp::__GFP_ZERO] {
            let pfn = m
                .run(|mm| mm.alloc_pages(gfp, 0).map(|p| mm.page_to_pfn(p)))
                .unwrap();
            m.run(|mm| mm.__free_pages(mm.pfn_to_page(pfn)?, 0))
                .unwrap();
            m.mm()
                .platform()
                .ram()
                .write(pfn.phys().0, &[GARBAGE_BYTE; 64])
                .expect("a frame of RAM");
            // The per-CPU list is LIFO: the page just freed comes back first.
            let again = m
                .run(|mm| mm.alloc_pages(gfp, 0).map(|p| mm.page_to_pfn(p)))
                .unwrap();
            assert_eq!(again, pfn, "the same page back");
            let left = nonzero_bytes_in_frame(&m, pfn);
            assert_eq!(
                left == 0,
                zeroed,
                "init_on_alloc={alloc} init_on_free={free} {gfp:?}: {left} stray bytes left"
            );
            m.run(|mm| mm.__free_pages(mm.pfn_to_page(again)?, 0))
                .unwrap();
        }
        m.mm().check().unwrap();
    }
}

/// Each of `pfns` holds only zero bytes (`wiped`) or not, then the machine checks out.
fn assert_frames_wiped(m: &Machine, pfns: &[Pfn], wiped: bool, init_on_free: bool) {
    for (i, &pfn) in pfns.iter().enumerate() {
        let left = nonzero_bytes_in_frame(m, pfn);
        assert_eq!(
            left == 0,
            wiped,
            "init_on_free={init_on_free}: page {i} kept {left} bytes"
        );
    }
    m.mm().check().unwrap();
}
