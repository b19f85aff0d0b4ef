//! The three kernel allocators behind the [`Allocator`] trait (Rust-for-Linux's
//! `alloc/allocator.rs`): each is one of `krealloc`, `vrealloc`, `kvrealloc`, called the
//! way Rust-for-Linux's `ReallocFunc::call` does.

use core::alloc::Layout;

use super::{dangling, AllocError, Allocator, Flags};
use crate::addr::{get_order, VirtAddr, PAGE_SIZE};
use crate::gfp::Gfp;
use crate::platform::Platform;
use crate::slab::kmalloc::{ARCH_KMALLOC_MINALIGN, KMALLOC_MAX_SIZE};
use crate::Mm;

/// The contiguous kernel allocator: kmalloc, physically contiguous memory in the direct
/// map, up to [`KMALLOC_MAX_SIZE`] (4 MiB).
///
/// Alignment as Rust-for-Linux gets it: the layout is padded to a multiple of its
/// alignment, and kmalloc aligns a power-of-two size to itself (and any size to its largest
/// power-of-two divisor), so the padded size usually brings the alignment with it. Not
/// always in kmemlab: under slab_debug the 8 KiB class is aligned to a page only
/// (`kmem_cache_create` here accepts no larger alignment, and the red zones shift the
/// objects off 8 KiB), and custom `kmalloc_sizes` classes are aligned to their own size's
/// divisor. So the alignment the class's geometry guarantees (slab start, red-zone pad,
/// object stride) is checked first, and a layout it cannot honour is refused with
/// [`AllocError::Alignment`] rather than served misaligned.
///
/// ```
/// use kmemlab_mm::alloc::{flags::GFP_KERNEL, AllocError, KBox};
/// use kmemlab_sim::{Machine, MachineConfig};
///
/// let m = Machine::new(MachineConfig { ram: 64 << 20, cpus: 1, ..Default::default() }).unwrap();
/// m.run(|mm| {
///     let b = KBox::new(mm, 42u64, GFP_KERNEL).unwrap();
///     assert!(!mm.is_vmalloc_addr(b.addr()));
///     // One byte more than kmalloc can give: refused, with kmalloc's reason.
///     let e = KBox::<[u8; (4 << 20) + 1], _>::new_zeroed(mm, GFP_KERNEL).unwrap_err();
///     assert!(matches!(e, AllocError::Kmalloc(_)), "{e}");
/// });
/// ```
pub struct Kmalloc;

/// The virtually contiguous kernel allocator: vmalloc, order-0 pages mapped into the
/// vmalloc area, page aligned. Alignments above a page are refused (as Rust-for-Linux's
/// `Vmalloc` does: "does not support alignments larger than PAGE_SIZE yet").
///
/// ```
/// use kmemlab_mm::alloc::{flags::GFP_KERNEL, VBox};
/// use kmemlab_sim::{Machine, MachineConfig};
///
/// let m = Machine::new(MachineConfig { ram: 64 << 20, cpus: 1, ..Default::default() }).unwrap();
/// m.run(|mm| {
///     let b = VBox::new(mm, [7u8; 16], GFP_KERNEL).unwrap();
///     assert!(mm.is_vmalloc_addr(b.addr()));
///     assert_eq!(b.addr().0 % 4096, 0);
/// });
/// ```
pub struct Vmalloc;

/// The kvmalloc allocator: kmalloc first, vmalloc when kmalloc cannot (and the flags allow
/// blocking). The layout is padded as for [`Kmalloc`]; alignments above a page are
/// refused, as vmalloc cannot give them, and so is an alignment the kmalloc class for the
/// size cannot give (see [`Kmalloc`]), as kvmalloc may well be served by kmalloc.
///
/// ```
/// use kmemlab_mm::alloc::{flags::GFP_KERNEL, KVBox};
/// use kmemlab_sim::{Machine, MachineConfig};
///
/// let m = Machine::new(MachineConfig { ram: 64 << 20, cpus: 1, ..Default::default() }).unwrap();
/// m.run(|mm| {
///     let small = KVBox::new(mm, 1u32, GFP_KERNEL).unwrap();
///     assert!(!mm.is_vmalloc_addr(small.addr()));
///     let big = KVBox::<[u8; (4 << 20) + 1], _>::new_zeroed(mm, GFP_KERNEL).unwrap();
///     assert!(mm.is_vmalloc_addr(big.addr()));
/// });
/// ```
pub struct KVmalloc;

/// What `ReallocFunc::call` does around the C function: an old allocation of size zero is
/// no allocation; a new size of zero frees and returns a dangling address.
fn realloc_with(
    ptr: Option<VirtAddr>,
    layout: Layout,
    old_layout: Layout,
    realloc: impl FnOnce(VirtAddr, usize) -> Result<VirtAddr, AllocError>,
    free: impl FnOnce(VirtAddr) -> Result<(), AllocError>,
) -> Result<VirtAddr, AllocError> {
    let old = ptr.filter(|_| old_layout.size() != 0);
    if layout.size() == 0 {
        if let Some(old) = old {
            free(old)?;
        }
        return Ok(dangling(layout));
    }
    realloc(old.unwrap_or(VirtAddr(0)), layout.size())
}

/// Refuse an alignment above `max`.
fn check_align(allocator: &'static str, layout: Layout, max: usize) -> Result<(), AllocError> {
    if layout.align() > max {
        return Err(AllocError::Alignment {
            allocator,
            align: layout.align(),
            max,
        });
    }
    Ok(())
}

/// The alignment every object kmalloc can return for `size` bytes with `gfp` has, from
/// the serving cache's geometry: an object is at `slab start + red_left_pad + i * size`,
/// and a slab starts on a boundary of its own size (at least the minimum order's). Above
/// the largest class, a large kmalloc's compound block is aligned to its own size.
fn kmalloc_guaranteed_align<P: Platform>(mm: &Mm<P>, size: usize, gfp: Gfp) -> usize {
    let Some(s) = mm.kmalloc_slab(size, gfp).and_then(|r| mm.cache(r).ok()) else {
        return PAGE_SIZE << get_order(size);
    };
    let mut bits = (s.size() as usize) | (PAGE_SIZE << s.min().order);
    if s.red_left_pad() != 0 {
        bits |= s.red_left_pad() as usize;
    }
    1 << bits.trailing_zeros()
}

/// Refuse a layout whose alignment the kmalloc class for its size cannot give.
fn check_kmalloc_align<P: Platform>(
    mm: &Mm<P>,
    allocator: &'static str,
    layout: Layout,
    gfp: Gfp,
) -> Result<(), AllocError> {
    if layout.size() == 0 || layout.align() <= ARCH_KMALLOC_MINALIGN {
        return Ok(());
    }
    check_align(
        allocator,
        layout,
        kmalloc_guaranteed_align(mm, layout.size(), gfp),
    )
}

/// A misaligned result can only be an object `krealloc` kept in place (a new one is
/// aligned, as checked before): the caller still owns it at the same address.
fn check_result_align(
    allocator: &'static str,
    layout: Layout,
    p: VirtAddr,
) -> Result<VirtAddr, AllocError> {
    if layout.size() != 0 && !p.0.is_multiple_of(layout.align() as u64) {
        return Err(AllocError::Alignment {
            allocator,
            align: layout.align(),
            max: 1 << p.0.trailing_zeros(),
        });
    }
    Ok(p)
}

impl Allocator for Kmalloc {
    const NAME: &'static str = "Kmalloc";
    const MIN_ALIGN: usize = ARCH_KMALLOC_MINALIGN;

    fn realloc<P: Platform>(
        mm: &Mm<P>,
        ptr: Option<VirtAddr>,
        layout: Layout,
        old_layout: Layout,
        flags: Flags,
    ) -> Result<VirtAddr, AllocError> {
        // Kmalloc::aligned_layout(): a padded size carries the alignment.
        let layout = layout.pad_to_align();
        check_align(Self::NAME, layout, KMALLOC_MAX_SIZE)?;
        let gfp: Gfp = flags.as_gfp();
        if layout.size() <= KMALLOC_MAX_SIZE {
            check_kmalloc_align(mm, Self::NAME, layout, gfp)?;
        }
        let p = realloc_with(
            ptr,
            layout,
            old_layout,
            |p, size| mm.krealloc(p, size, gfp).map_err(AllocError::Kmalloc),
            |p| mm.kfree(p).map_err(AllocError::Kmalloc),
        )?;
        check_result_align(Self::NAME, layout, p)
    }
}

impl Allocator for Vmalloc {
    const NAME: &'static str = "Vmalloc";
    const MIN_ALIGN: usize = PAGE_SIZE;

    fn realloc<P: Platform>(
        mm: &Mm<P>,
        ptr: Option<VirtAddr>,
        layout: Layout,
        old_layout: Layout,
        flags: Flags,
    ) -> Result<VirtAddr, AllocError> {
        check_align(Self::NAME, layout, PAGE_SIZE)?;
        let gfp = flags.as_gfp();
        realloc_with(
            ptr,
            layout,
            old_layout,
            |p, size| mm.vrealloc(p, size, gfp).map_err(AllocError::Vmalloc),
            |p| mm.vfree(p).map_err(AllocError::Vmalloc),
        )
    }
}

impl Allocator for KVmalloc {
    const NAME: &'static str = "KVmalloc";
    const MIN_ALIGN: usize = Kmalloc::MIN_ALIGN;

    fn realloc<P: Platform>(
        mm: &Mm<P>,
        ptr: Option<VirtAddr>,
        layout: Layout,
        old_layout: Layout,
        flags: Flags,
    ) -> Result<VirtAddr, AllocError> {
        // KVmalloc may use the Kmalloc backend: a Kmalloc-compatible layout.
        let layout = layout.pad_to_align();
        check_align(Self::NAME, layout, PAGE_SIZE)?;
        let gfp = flags.as_gfp();
        if layout.size() <= KMALLOC_MAX_SIZE {
            check_kmalloc_align(mm, Self::NAME, layout, gfp)?;
        }
        let p = realloc_with(
            ptr,
            layout,
            old_layout,
            |p, size| mm.kvrealloc(p, size, gfp).map_err(AllocError::KVmalloc),
            |p| mm.kvfree(p).map_err(AllocError::KVmalloc),
        )?;
        check_result_align(Self::NAME, layout, p)
    }
}
