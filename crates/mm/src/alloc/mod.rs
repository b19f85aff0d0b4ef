//! A Rust-native allocation API, modelled on the Rust-for-Linux `kernel::alloc` crate
//! (`rust/kernel/alloc.rs`, `alloc/allocator.rs`, `alloc/kbox.rs`, `alloc/kvec.rs`):
//! [`Flags`] built on the kernel's GFP flags, an [`Allocator`] trait implemented by
//! [`Kmalloc`], [`Vmalloc`] and [`KVmalloc`], and the containers [`KBox`] / [`VBox`] /
//! [`KVBox`] and [`KVec`] / [`VVec`] / [`KVVec`], whose every allocation is fallible and
//! takes flags.
//!
//! # The memory lives inside the simulated machine
//!
//! A container holds a reference to the kernel ([`Mm`]) and a kernel virtual address
//! ([`VirtAddr`]): a direct-map address for `Kmalloc`, a vmalloc-area address for
//! `Vmalloc` (and for `KVmalloc` when it fell back). Its bytes are in the machine's RAM,
//! placed by the allocators the kernel itself uses, so they show up in `/proc/meminfo`,
//! `/proc/vmallocinfo` and `check()`, and `Drop` gives them back.
//!
//! That is why elements are **copied in and out** through the kernel's mappings
//! ([`Mm::copy_to_kernel_virt`] / [`Mm::copy_from_kernel_virt`]) instead of being lent as
//! `&T` or `&[T]`:
//!
//! - a vmalloc buffer is contiguous only through the kernel's page tables: consecutive
//!   pages of the area are scattered frames of RAM, so there is no host slice to lend;
//! - even a kmalloc buffer, contiguous in the direct map, is memory the simulated machine
//!   may write at any time (another CPU, a DMA device, a stray `copy_to_kernel`), which a
//!   Rust reference forbids.
//!
//! # Elements are plain old data ([`Pod`])
//!
//! Copying values as bytes is sound only for types that have no padding (every byte
//! written is initialised) and for which every bit pattern is a valid value (the bytes
//! read back may have been changed by the machine). `Copy` is not enough: `bool`, `char`,
//! enums and `&'static T` are `Copy` but not valid for every bit pattern. So the element
//! type must be [`Pod`]: `Copy` and zerocopy's [`FromBytes`] + [`IntoBytes`] +
//! [`Immutable`] (re-exported by [`crate::mem`]), which the compiler proves for a type
//! that derives them. The integer and floating-point types and arrays of them qualify;
//! a struct derives the three traits.
//!
//! # Errors
//!
//! Nothing panics: a failed allocation or access is an [`AllocError`] that says which
//! allocator refused and why (the kernel's own error inside), and leaves the container as
//! it was.
//!
//! ```
//! use kmemlab_mm::alloc::{flags::GFP_KERNEL, KVVec, KVec};
//! use kmemlab_sim::{Machine, MachineConfig};
//!
//! let m = Machine::new(MachineConfig { ram: 64 << 20, cpus: 1, ..Default::default() }).unwrap();
//! m.run(|mm| {
//!     let mut v = KVec::new(mm);
//!     v.push(1u32, GFP_KERNEL)?;
//!     v.extend_from_slice(&[2, 3], GFP_KERNEL)?;
//!     assert_eq!(v.iter().collect::<Vec<_>>(), [1, 2, 3]);
//!     assert!(!mm.is_vmalloc_addr(v.addr()));
//!
//!     // 8 MiB: more than kmalloc can give; KVVec falls back to vmalloc.
//!     let big = KVVec::<u64, _>::with_capacity(mm, 1 << 20, GFP_KERNEL)?;
//!     assert!(mm.is_vmalloc_addr(big.addr()));
//!     Ok::<(), kmemlab_mm::alloc::AllocError>(())
//! })
//! .unwrap();
//! ```

mod allocator;
mod kbox;
mod kvec;

use core::fmt;
use core::ops::{BitAnd, BitOr, Not};

pub use allocator::{KVmalloc, Kmalloc, Vmalloc};
pub use kbox::{Box, KBox, KVBox, VBox};
pub use kvec::{Iter, KVVec, KVec, VVec, Vec};

use crate::addr::VirtAddr;
use crate::gfp::Gfp;
use crate::mem::{FromBytes, Immutable, IntoBytes};
use crate::platform::Platform;
use crate::slab::SlabError;
use crate::util::KvmallocError;
use crate::vmalloc::VmallocError;
use crate::Mm;

/// Allocation flags: the kernel's GFP flags (`gfp_t`), as Rust-for-Linux's
/// `kernel::alloc::Flags`. The usual sets are the constants of [`flags`].
///
/// ```
/// use kmemlab_mm::alloc::flags::{GFP_KERNEL, __GFP_ZERO};
/// use kmemlab_mm::Gfp;
///
/// let f = GFP_KERNEL | __GFP_ZERO;
/// assert!(f.contains(__GFP_ZERO));
/// assert_eq!((f & !__GFP_ZERO), GFP_KERNEL);
/// assert_eq!(f.as_gfp(), Gfp::GFP_KERNEL | Gfp::__GFP_ZERO);
/// ```
#[derive(Copy, Clone, PartialEq, Eq, Debug, Default)]
pub struct Flags(Gfp);

impl Flags {
    /// The GFP flags these stand for.
    ///
    /// ```
    /// use kmemlab_mm::alloc::flags::GFP_ATOMIC;
    /// assert_eq!(GFP_ATOMIC.as_gfp().bits(), 0x820);
    /// ```
    pub const fn as_gfp(self) -> Gfp {
        self.0
    }

    /// Flags from the kernel's GFP flags.
    ///
    /// ```
    /// use kmemlab_mm::alloc::{flags::GFP_KERNEL, Flags};
    /// use kmemlab_mm::Gfp;
    /// assert_eq!(Flags::from_gfp(Gfp::GFP_KERNEL), GFP_KERNEL);
    /// ```
    pub const fn from_gfp(gfp: Gfp) -> Flags {
        Flags(gfp)
    }

    /// Are all of `flags` set?
    ///
    /// ```
    /// use kmemlab_mm::alloc::flags::{GFP_KERNEL, GFP_NOWAIT};
    /// // GFP_KERNEL may wake kswapd, as GFP_NOWAIT does; GFP_NOWAIT may not sleep.
    /// assert!(GFP_KERNEL.contains(GFP_NOWAIT));
    /// assert!(!GFP_NOWAIT.contains(GFP_KERNEL));
    /// ```
    pub const fn contains(self, flags: Flags) -> bool {
        self.0.contains(flags.0)
    }
}

impl BitOr for Flags {
    type Output = Flags;
    fn bitor(self, rhs: Flags) -> Flags {
        Flags(self.0 | rhs.0)
    }
}

impl BitAnd for Flags {
    type Output = Flags;
    fn bitand(self, rhs: Flags) -> Flags {
        Flags(self.0 & rhs.0)
    }
}

impl Not for Flags {
    type Output = Flags;
    fn not(self) -> Flags {
        Flags(!self.0)
    }
}

impl From<Gfp> for Flags {
    fn from(gfp: Gfp) -> Flags {
        Flags(gfp)
    }
}

/// The flags Rust-for-Linux names (`kernel::alloc::flags`), with the kernel's values.
/// They combine with `|`, `&` and `!` as GFP flags do.
///
/// ```
/// use kmemlab_mm::alloc::flags::{self, GFP_KERNEL, GFP_NOWAIT, __GFP_NOWARN, __GFP_ZERO};
/// use kmemlab_mm::alloc::KBox;
/// use kmemlab_sim::{Machine, MachineConfig};
///
/// // GFP_KERNEL is GFP_NOWAIT's kswapd wake-up plus direct reclaim, I/O and FS.
/// assert!(GFP_KERNEL.contains(GFP_NOWAIT));
/// assert_eq!((GFP_KERNEL | __GFP_ZERO) & !__GFP_ZERO, GFP_KERNEL);
/// assert_eq!(flags::GFP_KERNEL_ACCOUNT & GFP_KERNEL, GFP_KERNEL);
///
/// let m = Machine::new(MachineConfig { ram: 64 << 20, cpus: 1, ..Default::default() }).unwrap();
/// m.run(|mm| {
///     let b = KBox::new(mm, 7u32, GFP_NOWAIT | __GFP_NOWARN).unwrap();
///     assert_eq!(b.get(), Ok(7));
/// });
/// ```
pub mod flags {
    use super::Flags;
    use crate::gfp::Gfp;

    /// Users can not sleep and need the allocation to succeed: may use the reserves
    /// (interrupt handlers, under a spinlock).
    ///
    /// ```
    /// assert_eq!(kmemlab_mm::alloc::flags::GFP_ATOMIC.as_gfp().bits(), 0x820);
    /// ```
    pub const GFP_ATOMIC: Flags = Flags(Gfp::GFP_ATOMIC);

    /// Typical for kernel-internal allocations: may sleep and reclaim.
    ///
    /// ```
    /// assert_eq!(kmemlab_mm::alloc::flags::GFP_KERNEL.as_gfp().bits(), 0xcc0);
    /// ```
    pub const GFP_KERNEL: Flags = Flags(Gfp::GFP_KERNEL);

    /// `GFP_KERNEL`, charged to the memory cgroup (untrusted allocations from user space).
    ///
    /// ```
    /// assert_eq!(kmemlab_mm::alloc::flags::GFP_KERNEL_ACCOUNT.as_gfp().bits(), 0x400cc0);
    /// ```
    pub const GFP_KERNEL_ACCOUNT: Flags = Flags(Gfp::GFP_KERNEL_ACCOUNT);

    /// Never sleeps, and gets no access to the reserves.
    ///
    /// ```
    /// assert_eq!(kmemlab_mm::alloc::flags::GFP_NOWAIT.as_gfp().bits(), 0x800);
    /// ```
    pub const GFP_NOWAIT: Flags = Flags(Gfp::GFP_NOWAIT);

    /// May reclaim, but starts no I/O.
    ///
    /// ```
    /// assert_eq!(kmemlab_mm::alloc::flags::GFP_NOIO.as_gfp().bits(), 0xc00);
    /// ```
    pub const GFP_NOIO: Flags = Flags(Gfp::GFP_NOIO);

    /// Return zeroed memory.
    ///
    /// ```
    /// assert_eq!(kmemlab_mm::alloc::flags::__GFP_ZERO.as_gfp().bits(), 0x100);
    /// ```
    pub const __GFP_ZERO: Flags = Flags(Gfp::__GFP_ZERO);

    /// Allow HighMem pages (i386 memory above 896 MiB). vmalloc maps its pages, so
    /// [`Vmalloc`](super::Vmalloc) uses HighMem with it. HighMem pages have no permanent
    /// kernel address, so kmalloc cannot: it does not refuse the flag but reports and
    /// strips it, as the kernel's `kmalloc_fix_flags()` does (`GFP_SLAB_BUG_MASK`: a
    /// `WARNING`-counted "Unexpected gfp: ... Fix your code!" line whenever it gets pages
    /// with it, for a new slab or a large kmalloc), and the memory comes from lowmem.
    ///
    /// ```
    /// use kmemlab_mm::alloc::flags::{GFP_KERNEL, __GFP_HIGHMEM};
    /// use kmemlab_mm::alloc::KBox;
    /// use kmemlab_sim::{Machine, MachineConfig};
    ///
    /// assert_eq!(__GFP_HIGHMEM.as_gfp().bits(), 0x2);
    /// let m = Machine::new(MachineConfig { ram: 64 << 20, cpus: 1, ..Default::default() }).unwrap();
    /// m.run(|mm| {
    ///     // 16 KiB: a large kmalloc, which takes pages for it at once.
    ///     let b = KBox::new(mm, [1u8; 16384], GFP_KERNEL | __GFP_HIGHMEM).unwrap();
    ///     assert!(!mm.is_vmalloc_addr(b.addr())); // direct-mapped memory all the same
    /// });
    /// assert!(m.take_console().iter().any(|l| l.contains("Fix your code!")));
    /// ```
    pub const __GFP_HIGHMEM: Flags = Flags(Gfp::__GFP_HIGHMEM);

    /// Do not print the allocation-failure warning.
    ///
    /// ```
    /// assert_eq!(kmemlab_mm::alloc::flags::__GFP_NOWARN.as_gfp().bits(), 0x2000);
    /// ```
    pub const __GFP_NOWARN: Flags = Flags(Gfp::__GFP_NOWARN);
}

/// Why an allocation, or an access to allocated memory, failed.
///
/// ```
/// use kmemlab_mm::alloc::{flags::GFP_NOWAIT, AllocError, KVBox};
/// use kmemlab_sim::{Machine, MachineConfig};
///
/// let m = Machine::new(MachineConfig { ram: 64 << 20, cpus: 1, ..Default::default() }).unwrap();
/// m.run(|mm| {
///     // 8 MiB is beyond kmalloc, and GFP_NOWAIT may not fall back to vmalloc.
///     let e = KVBox::<[u8; 8 << 20], _>::new_zeroed(mm, GFP_NOWAIT).unwrap_err();
///     assert!(matches!(e, AllocError::KVmalloc(_)));
///     assert!(e.to_string().contains("does not allow blocking"), "{e}");
/// });
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AllocError {
    /// kmalloc / krealloc / kfree failed or refused.
    Kmalloc(SlabError),
    /// vmalloc / vrealloc / vfree failed or refused.
    Vmalloc(VmallocError),
    /// kvmalloc / kvrealloc / kvfree failed or refused.
    KVmalloc(KvmallocError),
    /// An alignment the allocator cannot give (for this size: a kmalloc class's objects
    /// are aligned as its geometry allows, under slab_debug less than without).
    Alignment {
        /// The allocator.
        allocator: &'static str,
        /// The alignment asked for.
        align: usize,
        /// The largest it gives (for this size).
        max: usize,
    },
    /// A size that does not fit a `Layout` (more than `isize::MAX` bytes) or a capacity
    /// that overflows.
    CapacityOverflow,
    /// An index at or past the end.
    OutOfBounds {
        /// The index.
        index: usize,
        /// The length.
        len: usize,
    },
    /// The memory is not mapped any more (freed behind the container's back).
    Unmapped(VirtAddr),
}

impl fmt::Display for AllocError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AllocError::Kmalloc(e) => write!(f, "Kmalloc: {e}"),
            AllocError::Vmalloc(e) => write!(f, "Vmalloc: {e}"),
            AllocError::KVmalloc(e) => write!(f, "KVmalloc: {e}"),
            AllocError::Alignment {
                allocator,
                align,
                max,
            } => write!(
                f,
                "{allocator} does not support alignments larger than {max} (asked for {align})"
            ),
            AllocError::CapacityOverflow => write!(f, "capacity overflow"),
            AllocError::OutOfBounds { index, len } => {
                write!(f, "index {index} is out of bounds (length {len})")
            }
            AllocError::Unmapped(va) => write!(f, "{va} is not mapped (freed behind our back?)"),
        }
    }
}

impl core::error::Error for AllocError {}

/// A kernel allocator, as Rust-for-Linux's `kernel::alloc::Allocator`: `alloc`, `realloc`
/// and `free` of memory described by a [`core::alloc::Layout`], every call fallible and
/// given [`Flags`].
///
/// Unlike Rust-for-Linux's, the functions are safe: they deal in kernel virtual
/// addresses inside the simulated machine, and the kernel checks every address it is
/// given (`kfree`/`vfree` refuse, with the kernel's report, what they did not return), so
/// a wrong address is an error, never host memory corruption.
///
/// A zero-sized layout allocates nothing and returns a dangling, aligned address; an old
/// layout of size zero means "no old allocation".
///
/// ```
/// use core::alloc::Layout;
/// use kmemlab_mm::alloc::{flags::GFP_KERNEL, Allocator, Kmalloc};
/// use kmemlab_sim::{Machine, MachineConfig};
///
/// let m = Machine::new(MachineConfig { ram: 64 << 20, cpus: 1, ..Default::default() }).unwrap();
/// m.run(|mm| {
///     let layout = Layout::from_size_align(64, 64).unwrap();
///     let p = Kmalloc::alloc(mm, layout, GFP_KERNEL)?;
///     assert_eq!(p.0 % 64, 0);
///     let bigger = Layout::from_size_align(4096, 64).unwrap();
///     let q = Kmalloc::realloc(mm, Some(p), bigger, layout, GFP_KERNEL)?;
///     Kmalloc::free(mm, q, bigger)
/// })
/// .unwrap();
/// ```
pub trait Allocator {
    /// The allocator's name, for messages.
    ///
    /// ```
    /// use kmemlab_mm::alloc::{Allocator, KVmalloc};
    /// assert_eq!(KVmalloc::NAME, "KVmalloc");
    /// ```
    const NAME: &'static str;

    /// The alignment every allocation has at least (`ARCH_KMALLOC_MINALIGN` for kmalloc,
    /// a page for vmalloc).
    ///
    /// ```
    /// use kmemlab_mm::alloc::{Allocator, Kmalloc, Vmalloc};
    /// assert_eq!(Kmalloc::MIN_ALIGN, 8);
    /// assert_eq!(Vmalloc::MIN_ALIGN, 4096);
    /// ```
    const MIN_ALIGN: usize;

    /// Allocate memory for `layout`.
    ///
    /// ```
    /// use core::alloc::Layout;
    /// use kmemlab_mm::alloc::{flags::GFP_KERNEL, Allocator, Vmalloc};
    /// use kmemlab_sim::{Machine, MachineConfig};
    ///
    /// let m = Machine::new(MachineConfig { ram: 64 << 20, cpus: 1, ..Default::default() }).unwrap();
    /// m.run(|mm| {
    ///     let layout = Layout::from_size_align(3 << 12, 8).unwrap();
    ///     let p = Vmalloc::alloc(mm, layout, GFP_KERNEL)?;
    ///     assert!(mm.is_vmalloc_addr(p));
    ///     Vmalloc::free(mm, p, layout)
    /// })
    /// .unwrap();
    /// ```
    fn alloc<P: Platform>(
        mm: &Mm<P>,
        layout: core::alloc::Layout,
        flags: Flags,
    ) -> Result<VirtAddr, AllocError> {
        Self::realloc(mm, None, layout, core::alloc::Layout::new::<()>(), flags)
    }

    /// Grow, shrink, allocate (`ptr` `None`) or free (`layout` of size zero) memory. The
    /// contents are kept up to the lesser of the two sizes; on failure the old memory is
    /// untouched and still owned by the caller.
    ///
    /// ```
    /// use core::alloc::Layout;
    /// use kmemlab_mm::alloc::{flags::GFP_KERNEL, Allocator, KVmalloc};
    /// use kmemlab_sim::{Machine, MachineConfig};
    ///
    /// let m = Machine::new(MachineConfig { ram: 64 << 20, cpus: 1, ..Default::default() }).unwrap();
    /// m.run(|mm| {
    ///     let small = Layout::array::<u8>(100).unwrap();
    ///     let p = KVmalloc::alloc(mm, small, GFP_KERNEL)?;
    ///     mm.copy_to_kernel_virt(p, b"kept").unwrap();
    ///     // 5 MiB: beyond kmalloc, so kvrealloc moves it to vmalloc, with the contents.
    ///     let big = Layout::array::<u8>(5 << 20).unwrap();
    ///     let q = KVmalloc::realloc(mm, Some(p), big, small, GFP_KERNEL)?;
    ///     assert!(mm.is_vmalloc_addr(q));
    ///     let mut buf = [0u8; 4];
    ///     mm.copy_from_kernel_virt(q, &mut buf).unwrap();
    ///     assert_eq!(&buf, b"kept");
    ///     KVmalloc::free(mm, q, big)
    /// })
    /// .unwrap();
    /// ```
    fn realloc<P: Platform>(
        mm: &Mm<P>,
        ptr: Option<VirtAddr>,
        layout: core::alloc::Layout,
        old_layout: core::alloc::Layout,
        flags: Flags,
    ) -> Result<VirtAddr, AllocError>;

    /// Free memory allocated with `layout`.
    ///
    /// ```
    /// use core::alloc::Layout;
    /// use kmemlab_mm::alloc::{flags::GFP_KERNEL, Allocator, Kmalloc};
    /// use kmemlab_sim::{Machine, MachineConfig};
    ///
    /// let m = Machine::new(MachineConfig { ram: 64 << 20, cpus: 1, ..Default::default() }).unwrap();
    /// m.run(|mm| {
    ///     let layout = Layout::new::<u64>();
    ///     let p = Kmalloc::alloc(mm, layout, GFP_KERNEL).unwrap();
    ///     assert_eq!(Kmalloc::free(mm, p, layout), Ok(()));
    ///     // Freeing it again is the kernel's double free: refused, with a report.
    ///     assert!(Kmalloc::free(mm, p, layout).is_err());
    /// });
    /// ```
    fn free<P: Platform>(
        mm: &Mm<P>,
        ptr: VirtAddr,
        layout: core::alloc::Layout,
    ) -> Result<(), AllocError> {
        let nothing = core::alloc::Layout::new::<()>();
        Self::realloc(mm, Some(ptr), nothing, layout, Flags::default()).map(|_| ())
    }
}

/// Plain old data: a type that can be copied to and from memory as bytes. It is
/// zerocopy's three traits together, so the compiler proves it: [`IntoBytes`] (no
/// padding: every byte written is initialised), [`FromBytes`] (every bit pattern is a
/// valid value: bytes read back from the machine, which anything may have written, always
/// form one) and [`Immutable`] (no interior mutability behind the bytes). Every such
/// `Copy` type is `Pod`; a struct derives the three traits (the derives need the
/// `zerocopy` crate).
///
/// ```
/// use kmemlab_mm::alloc::{flags::GFP_KERNEL, KBox, Pod};
/// use kmemlab_mm::mem::{FromBytes, Immutable, IntoBytes};
/// use kmemlab_sim::{Machine, MachineConfig};
///
/// #[derive(Copy, Clone, Debug, PartialEq, FromBytes, IntoBytes, Immutable)]
/// #[repr(C)]
/// struct Pair {
///     a: u32,
///     b: u32,
/// }
/// fn is_pod<T: Pod>() {}
/// is_pod::<Pair>();
/// is_pod::<[u64; 4]>();
///
/// let m = Machine::new(MachineConfig { ram: 64 << 20, cpus: 1, ..Default::default() }).unwrap();
/// m.run(|mm| {
///     let b = KBox::new(mm, Pair { a: 1, b: 2 }, GFP_KERNEL).unwrap();
///     assert_eq!(b.get().unwrap(), Pair { a: 1, b: 2 });
/// });
/// ```
pub trait Pod: FromBytes + IntoBytes + Immutable + Copy + 'static {}

impl<T: FromBytes + IntoBytes + Immutable + Copy + 'static> Pod for T {}

/// Write `values` at kernel address `at`.
fn write_pod<T: Pod, P: Platform>(
    mm: &Mm<P>,
    at: VirtAddr,
    values: &[T],
) -> Result<(), AllocError> {
    mm.copy_to_kernel_virt(at, values.as_bytes())
        .map_err(AllocError::Unmapped)
}

/// Read a `T` from kernel address `at`.
fn read_pod<T: Pod, P: Platform>(mm: &Mm<P>, at: VirtAddr) -> Result<T, AllocError> {
    let mut value = T::new_zeroed();
    mm.copy_from_kernel_virt(at, value.as_mut_bytes())
        .map_err(AllocError::Unmapped)?;
    Ok(value)
}

/// A `T` of zero bytes.
fn zeroed<T: Pod>() -> T {
    T::new_zeroed()
}

/// The address a zero-sized allocation stands at (Rust-for-Linux's
/// `dangling_from_layout`): non-null and aligned, never dereferenced.
fn dangling(layout: core::alloc::Layout) -> VirtAddr {
    VirtAddr(layout.align() as u64)
}
