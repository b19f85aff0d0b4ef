//! Which allocator serves which `Layout`, alignment, zeroing, realloc, the vmalloc alias.

use std::alloc::{GlobalAlloc, Layout};

use kmemlab_hostalloc::{BootFailure, HostConfig, HostPlatformError, Kmemlab};
use kmemlab_mm::mm_types::PG_LARGE_KMALLOC;

use super::{free, held, kernel, kernel_va};

#[test]
fn small_sizes_come_from_kmalloc_slabs() {
    let k = kernel(1);
    let layout = Layout::from_size_align(24, 8).unwrap();
    let p = k.allocate(layout, false);
    assert!(!p.is_null());
    let va = kernel_va(&k, p);
    // kmalloc(24) is an object of the kmalloc-32 cache.
    assert_eq!(k.with_cpu(|mm| mm.ksize(va)).unwrap(), Ok(32));
    assert!(k.with_cpu(|mm| mm.slab_object(va).is_some()).unwrap());
    assert_eq!(k.counts().slab, 1);
    free(&k, p, layout);
    assert_eq!(k.counts().bad_frees, 0);
}

#[test]
fn sizes_above_8k_are_compound_blocks_of_the_page_allocator() {
    let k = kernel(1);
    let layout = Layout::from_size_align(64 << 10, 8).unwrap();
    let p = k.allocate(layout, false);
    let va = kernel_va(&k, p);
    let (head, large, order) = k
        .with_cpu(|mm| {
            let page = mm.virt_to_page(va).unwrap();
            (page.is_head(), page.test(PG_LARGE_KMALLOC), page.order())
        })
        .unwrap();
    assert!(head && large);
    assert_eq!(order, 4);
    assert_eq!(k.counts().pages, 1);
    free(&k, p, layout);
}

#[test]
fn sizes_above_4m_are_vmalloc_areas_the_host_and_the_kernel_both_see() {
    let k = kernel(1);
    let before = k.census().unwrap();
    let layout = Layout::from_size_align(6 << 20, 8).unwrap();
    let p = k.allocate(layout, false);
    assert!(!p.is_null());
    assert_eq!(k.counts().vmalloc, 1);
    let va = kernel_va(&k, p);
    assert!(k.with_cpu(|mm| mm.is_vmalloc_addr(va)).unwrap());
    // SAFETY: `p` is `6 MiB` of memory we own.
    let host = unsafe { std::slice::from_raw_parts_mut(p, layout.size()) };
    for (i, b) in host.iter_mut().enumerate() {
        *b = (i % 251) as u8;
    }
    // The kernel reads the same bytes through its page tables.
    for offset in [0usize, 4095, 4096, 1 << 20, (6 << 20) - 1] {
        let mut byte = [0u8];
        k.with_cpu(|mm| mm.copy_from_kernel_virt(VirtAddr(va.0 + offset as u64), &mut byte))
            .unwrap()
            .unwrap();
        assert_eq!(byte[0], (offset % 251) as u8, "offset {offset}");
    }
    // And the host sees what the kernel writes.
    k.with_cpu(|mm| mm.copy_to_kernel_virt(VirtAddr(va.0 + 5000), b"kernel"))
        .unwrap()
        .unwrap();
    assert_eq!(&host[5000..5006], b"kernel");
    free(&k, p, layout);
    let after = k.census().unwrap();
    assert_eq!(after.vmalloc_pages, 0);
    assert_eq!(held(&after), held(&before));
}

use kmemlab_mm::VirtAddr;

#[test]
fn every_alignment_asked_is_given_or_the_request_refused() {
    let k = kernel(1);
    let before = k.census().unwrap();
    let sizes = [
        1usize, 7, 8, 24, 70, 96, 100, 192, 1000, 4096, 8192, 9000, 65536,
    ];
    let sizes = sizes.into_iter().chain([1 << 20, 4 << 20, 5 << 20]);
    for size in sizes {
        for shift in 0..=22 {
            let align = 1usize << shift;
            let layout = Layout::from_size_align(size, align).unwrap();
            let p = k.allocate(layout, true);
            let servable = size.max(align) <= 4 << 20 || align <= 4096;
            assert_eq!(!p.is_null(), servable, "size {size} align {align}");
            if p.is_null() {
                continue;
            }
            assert!(
                (p as usize).is_multiple_of(align),
                "size {size} align {align}"
            );
            // SAFETY: `size` bytes we own.
            let bytes = unsafe { std::slice::from_raw_parts_mut(p, size) };
            assert!(
                bytes.iter().all(|&b| b == 0),
                "zeroed: size {size} align {align}"
            );
            bytes.fill(0xa5);
            free(&k, p, layout);
        }
    }
    assert_eq!(k.counts().bad_frees, 0);
    assert_eq!(held(&k.census().unwrap()), held(&before));
}

#[test]
fn realloc_keeps_the_bytes_from_slab_to_pages_to_vmalloc_and_back() {
    let k = kernel(1);
    let before = k.census().unwrap();
    let mut layout = Layout::from_size_align(16, 8).unwrap();
    let mut p = k.allocate(layout, false);
    // SAFETY: 16 bytes we own.
    unsafe { p.copy_from_nonoverlapping(b"0123456789abcdef".as_ptr(), 16) };
    for new_size in [100, 10_000, 6 << 20, 12 << 20, 3 << 20, 100, 16] {
        // SAFETY: `p` is live with `layout`; the new size is not zero.
        p = unsafe { k.realloc(p, layout, new_size) };
        assert!(!p.is_null(), "realloc to {new_size}");
        layout = Layout::from_size_align(new_size, 8).unwrap();
        // SAFETY: at least 16 bytes we own.
        let head = unsafe { std::slice::from_raw_parts(p, 16) };
        assert_eq!(head, b"0123456789abcdef", "after realloc to {new_size}");
    }
    free(&k, p, layout);
    let counts = k.counts();
    assert!(counts.krealloc > 0 && counts.vmalloc >= 2);
    assert_eq!(held(&k.census().unwrap()), held(&before));
}

#[test]
fn pointers_that_are_not_ours_are_counted_not_freed() {
    let k = kernel(1);
    let before = k.census().unwrap();
    let mut local = [0u8; 64];
    free(&k, local.as_mut_ptr(), Layout::new::<[u8; 64]>());
    assert_eq!(k.counts().bad_frees, 1);
    assert_eq!(held(&k.census().unwrap()), held(&before));
}

#[test]
fn a_platform_that_cannot_be_built_is_an_error_and_null_not_a_crash() {
    let k = Kmemlab::new(HostConfig {
        ram_bytes: 10 << 20,
        ..HostConfig::new()
    });
    assert!(matches!(
        k.with_cpu(|_| ()),
        Err(BootFailure::Platform(HostPlatformError::BadRamSize(_)))
    ));
    assert!(k.allocate(Layout::new::<u64>(), false).is_null());
}
