//! `Box`: one value in kernel memory (Rust-for-Linux's `alloc/kbox.rs`), read and written
//! by copy (see the [module](super) doc for why).

use core::alloc::Layout;
use core::fmt;
use core::marker::PhantomData;

use super::{
    dangling, read_pod, write_pod, AllocError, Allocator, Flags, KVmalloc, Kmalloc, Pod, Vmalloc,
};
use crate::addr::VirtAddr;
use crate::platform::Platform;
use crate::Mm;

/// One `T` in memory from allocator `A`, inside the machine that `mm` runs; freed on drop.
///
/// ```
/// use kmemlab_mm::alloc::{flags::GFP_KERNEL, KBox};
/// use kmemlab_sim::{Machine, MachineConfig};
///
/// let m = Machine::new(MachineConfig { ram: 64 << 20, cpus: 1, ..Default::default() }).unwrap();
/// m.run(|mm| {
///     let mut b = KBox::new(mm, [1u16, 2, 3], GFP_KERNEL)?;
///     b.set([4, 5, 6])?;
///     assert_eq!(b.get()?, [4, 5, 6]);
///     Ok::<(), kmemlab_mm::alloc::AllocError>(())
/// })
/// .unwrap();
/// ```
pub struct Box<'a, T: Pod, A: Allocator, P: Platform> {
    mm: &'a Mm<P>,
    addr: VirtAddr,
    _owns: PhantomData<(T, A)>,
}

/// A [`Box`] in kmalloc memory.
///
/// ```
/// use kmemlab_mm::alloc::{flags::GFP_KERNEL, KBox};
/// use kmemlab_sim::{Machine, MachineConfig};
///
/// let m = Machine::new(MachineConfig { ram: 64 << 20, cpus: 1, ..Default::default() }).unwrap();
/// m.run(|mm| {
///     let b: KBox<'_, u64, _> = KBox::new(mm, 5, GFP_KERNEL).unwrap();
///     assert_eq!(mm.ksize(b.addr()), Ok(8));
/// });
/// ```
pub type KBox<'a, T, P> = Box<'a, T, Kmalloc, P>;

/// A [`Box`] in vmalloc memory.
///
/// ```
/// use kmemlab_mm::alloc::{flags::GFP_KERNEL, VBox};
/// use kmemlab_sim::{Machine, MachineConfig};
///
/// let m = Machine::new(MachineConfig { ram: 64 << 20, cpus: 1, ..Default::default() }).unwrap();
/// m.run(|mm| {
///     let b: VBox<'_, [u64; 1024], _> = VBox::new_zeroed(mm, GFP_KERNEL).unwrap();
///     assert_eq!(mm.find_vm_area(b.addr()).unwrap().nr_pages, 2);
/// });
/// ```
pub type VBox<'a, T, P> = Box<'a, T, Vmalloc, P>;

/// A [`Box`] in kvmalloc memory: kmalloc, or vmalloc when kmalloc cannot.
///
/// ```
/// use kmemlab_mm::alloc::{flags::GFP_KERNEL, KVBox};
/// use kmemlab_sim::{Machine, MachineConfig};
///
/// let m = Machine::new(MachineConfig { ram: 64 << 20, cpus: 1, ..Default::default() }).unwrap();
/// m.run(|mm| {
///     let b: KVBox<'_, [u8; 8 << 20], _> = KVBox::new_zeroed(mm, GFP_KERNEL).unwrap();
///     assert!(mm.is_vmalloc_addr(b.addr()));
/// });
/// ```
pub type KVBox<'a, T, P> = Box<'a, T, KVmalloc, P>;

impl<'a, T: Pod, A: Allocator, P: Platform> Box<'a, T, A, P> {
    /// Allocate room for a `T` and move `value` there.
    ///
    /// ```
    /// use kmemlab_mm::alloc::{flags::GFP_ATOMIC, KBox};
    /// use kmemlab_mm::Context;
    /// use kmemlab_sim::{Machine, MachineConfig};
    ///
    /// let m = Machine::new(MachineConfig { ram: 64 << 20, cpus: 1, ..Default::default() }).unwrap();
    /// // In a hard interrupt handler, GFP_ATOMIC.
    /// m.on_cpu(0, Context::Hardirq, |mm| {
    ///     let b = KBox::new(mm, 0xdead_beef_u32, GFP_ATOMIC).unwrap();
    ///     assert_eq!(b.get(), Ok(0xdead_beef));
    /// })
    /// .unwrap();
    /// ```
    pub fn new(mm: &'a Mm<P>, value: T, flags: Flags) -> Result<Self, AllocError> {
        let b = Self::allocate(mm, flags)?;
        write_pod(mm, b.addr, core::slice::from_ref(&value))?;
        Ok(b)
    }

    /// Allocate room for a `T`, zeroed (`__GFP_ZERO`), without building a `T` on the host
    /// stack first: the way to make a box of a large array.
    ///
    /// ```
    /// use kmemlab_mm::alloc::{flags::GFP_KERNEL, VBox};
    /// use kmemlab_sim::{Machine, MachineConfig};
    ///
    /// let m = Machine::new(MachineConfig { ram: 64 << 20, cpus: 1, ..Default::default() }).unwrap();
    /// m.run(|mm| {
    ///     let b = VBox::<[u32; 4], _>::new_zeroed(mm, GFP_KERNEL).unwrap();
    ///     assert_eq!(b.get(), Ok([0; 4]));
    /// });
    /// ```
    pub fn new_zeroed(mm: &'a Mm<P>, flags: Flags) -> Result<Self, AllocError> {
        Self::allocate(mm, flags | super::flags::__GFP_ZERO)
    }

    fn allocate(mm: &'a Mm<P>, flags: Flags) -> Result<Self, AllocError> {
        let layout = Layout::new::<T>();
        let addr = if layout.size() == 0 {
            dangling(layout)
        } else {
            A::alloc(mm, layout, flags)?
        };
        Ok(Box {
            mm,
            addr,
            _owns: PhantomData,
        })
    }

    /// A copy of the value.
    ///
    /// ```
    /// use kmemlab_mm::alloc::{flags::GFP_KERNEL, KVBox};
    /// use kmemlab_sim::{Machine, MachineConfig};
    ///
    /// let m = Machine::new(MachineConfig { ram: 64 << 20, cpus: 1, ..Default::default() }).unwrap();
    /// m.run(|mm| {
    ///     let b = KVBox::new(mm, -3i64, kmemlab_mm::alloc::flags::GFP_KERNEL).unwrap();
    ///     assert_eq!(b.get(), Ok(-3));
    /// });
    /// ```
    pub fn get(&self) -> Result<T, AllocError> {
        read_pod(self.mm, self.addr)
    }

    /// Replace the value.
    ///
    /// ```
    /// use kmemlab_mm::alloc::{flags::GFP_KERNEL, KBox};
    /// use kmemlab_sim::{Machine, MachineConfig};
    ///
    /// let m = Machine::new(MachineConfig { ram: 64 << 20, cpus: 1, ..Default::default() }).unwrap();
    /// m.run(|mm| {
    ///     let mut b = KBox::new(mm, 1.5f64, GFP_KERNEL).unwrap();
    ///     b.set(2.5).unwrap();
    ///     assert_eq!(b.get(), Ok(2.5));
    /// });
    /// ```
    pub fn set(&mut self, value: T) -> Result<(), AllocError> {
        write_pod(self.mm, self.addr, core::slice::from_ref(&value))
    }

    /// The kernel virtual address of the value (dangling for a zero-sized `T`).
    ///
    /// ```
    /// use kmemlab_mm::alloc::{flags::GFP_KERNEL, KBox};
    /// use kmemlab_sim::{Machine, MachineConfig};
    ///
    /// let m = Machine::new(MachineConfig { ram: 64 << 20, cpus: 1, ..Default::default() }).unwrap();
    /// m.run(|mm| {
    ///     let b = KBox::new(mm, *b"hi\0\0", GFP_KERNEL).unwrap();
    ///     let mut seen = [0u8; 2];
    ///     mm.copy_from_kernel(b.addr(), &mut seen).unwrap();
    ///     assert_eq!(&seen, b"hi");
    /// });
    /// ```
    pub fn addr(&self) -> VirtAddr {
        self.addr
    }
}

impl<T: Pod, A: Allocator, P: Platform> Drop for Box<'_, T, A, P> {
    fn drop(&mut self) {
        let layout = Layout::new::<T>();
        if layout.size() != 0 {
            // A refused free has been reported by the kernel; nothing more to do here.
            let _ = A::free(self.mm, self.addr, layout);
        }
    }
}

impl<T: Pod, A: Allocator, P: Platform> fmt::Debug for Box<'_, T, A, P> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Box<{}>({})", A::NAME, self.addr)
    }
}
