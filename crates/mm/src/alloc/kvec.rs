//! `Vec`: a growable array in kernel memory (Rust-for-Linux's `alloc/kvec.rs`), its
//! elements read and written by copy (see the [module](super) doc for why).

use core::alloc::Layout;
use core::fmt;
use core::marker::PhantomData;

use zerocopy::IntoBytes;

use super::{
    dangling, read_pod, write_pod, zeroed, AllocError, Allocator, Flags, KVmalloc, Kmalloc, Pod,
    Vmalloc,
};
use crate::addr::VirtAddr;
use crate::mem::RamWindow;
use crate::platform::Platform;
use crate::Mm;

/// A growable array of `T` in memory from allocator `A`, inside the machine that `mm`
/// runs; freed on drop. It grows as Rust-for-Linux's `Vec` does: to twice its capacity, or
/// to what is needed if that is more, by one `realloc` of the whole buffer.
///
/// A failed `push`, `reserve` or `extend_from_slice` leaves the vector as it was.
///
/// ```
/// use kmemlab_mm::alloc::{flags::GFP_KERNEL, KVec};
/// use kmemlab_sim::{Machine, MachineConfig};
///
/// let m = Machine::new(MachineConfig { ram: 64 << 20, cpus: 1, ..Default::default() }).unwrap();
/// m.run(|mm| {
///     let mut v = KVec::new(mm);
///     for i in 0..100u32 {
///         v.push(i * i, GFP_KERNEL)?;
///     }
///     assert_eq!(v.len(), 100);
///     assert_eq!(v.get(9), Some(81));
///     assert_eq!(v.iter().sum::<u32>(), 328350);
///     Ok::<(), kmemlab_mm::alloc::AllocError>(())
/// })
/// .unwrap();
/// ```
pub struct Vec<'a, T: Pod, A: Allocator, P: Platform> {
    mm: &'a Mm<P>,
    addr: VirtAddr,
    len: usize,
    cap: usize,
    /// The buffer's RAM while all of it lies in the direct map (kmalloc memory, and
    /// kvmalloc's while kmalloc serves it): found and checked once per allocation, as a
    /// kernel `Vec` holds a pointer, so that an element is reached without translating its
    /// address again. The direct map is a fixed linear mapping, so this is where every
    /// translation of the buffer's addresses would land. `None` for vmalloc memory,
    /// reached page by page through the page tables.
    direct: Option<RamWindow<'a>>,
    _owns: PhantomData<(T, A)>,
}

/// A [`Vec`] in kmalloc memory: at most KMALLOC_MAX_SIZE (4 MiB) of elements.
///
/// ```
/// use kmemlab_mm::alloc::{flags::GFP_KERNEL, KVec};
/// use kmemlab_sim::{Machine, MachineConfig};
///
/// let m = Machine::new(MachineConfig { ram: 64 << 20, cpus: 1, ..Default::default() }).unwrap();
/// m.run(|mm| {
///     let mut v: KVec<'_, u64, _> = KVec::with_capacity(mm, 1 << 19, GFP_KERNEL).unwrap();
///     v.extend_from_slice(&vec![7; 1 << 19], GFP_KERNEL).unwrap(); // exactly 4 MiB
///     assert!(v.push(8, GFP_KERNEL).is_err()); // 8 MiB would be needed
///     assert_eq!(v.len(), 1 << 19);
/// });
/// ```
pub type KVec<'a, T, P> = Vec<'a, T, Kmalloc, P>;

/// A [`Vec`] in vmalloc memory.
///
/// ```
/// use kmemlab_mm::alloc::{flags::GFP_KERNEL, VVec};
/// use kmemlab_sim::{Machine, MachineConfig};
///
/// let m = Machine::new(MachineConfig { ram: 64 << 20, cpus: 1, ..Default::default() }).unwrap();
/// m.run(|mm| {
///     let mut v: VVec<'_, u8, _> = VVec::new(mm);
///     v.push(1, GFP_KERNEL).unwrap();
///     assert!(mm.is_vmalloc_addr(v.addr()));
/// });
/// ```
pub type VVec<'a, T, P> = Vec<'a, T, Vmalloc, P>;

/// A [`Vec`] in kvmalloc memory: kmalloc while it can, vmalloc beyond.
///
/// ```
/// use kmemlab_mm::alloc::{flags::GFP_KERNEL, KVVec};
/// use kmemlab_sim::{Machine, MachineConfig};
///
/// let m = Machine::new(MachineConfig { ram: 64 << 20, cpus: 1, ..Default::default() }).unwrap();
/// m.run(|mm| {
///     let mut v: KVVec<'_, u64, _> = KVVec::new(mm);
///     v.extend_from_slice(&vec![1; 1 << 19], GFP_KERNEL).unwrap(); // 4 MiB: kmalloc
///     assert!(!mm.is_vmalloc_addr(v.addr()));
///     v.push(2, GFP_KERNEL).unwrap(); // 8 MiB: vmalloc, the contents copied over
///     assert!(mm.is_vmalloc_addr(v.addr()));
///     assert_eq!(v.get(0), Some(1));
///     assert_eq!(v.get(1 << 19), Some(2));
/// });
/// ```
pub type KVVec<'a, T, P> = Vec<'a, T, KVmalloc, P>;

impl<'a, T: Pod, A: Allocator, P: Platform> Vec<'a, T, A, P> {
    const IS_ZST: bool = core::mem::size_of::<T>() == 0;

    /// An empty vector; it allocates nothing until an element is pushed.
    ///
    /// ```
    /// use kmemlab_mm::alloc::KVec;
    /// use kmemlab_sim::{Machine, MachineConfig};
    ///
    /// let m = Machine::new(MachineConfig { ram: 64 << 20, cpus: 1, ..Default::default() }).unwrap();
    /// let mm = m.mm();
    /// let v = KVec::<u32, _>::new(&mm);
    /// assert_eq!((v.len(), v.capacity()), (0, 0));
    /// ```
    pub fn new(mm: &'a Mm<P>) -> Self {
        Vec {
            mm,
            addr: dangling(Layout::new::<T>()),
            len: 0,
            cap: if Self::IS_ZST { usize::MAX } else { 0 },
            direct: None,
            _owns: PhantomData,
        }
    }

    /// An empty vector with room for `capacity` elements.
    ///
    /// ```
    /// use kmemlab_mm::alloc::{flags::GFP_KERNEL, VVec};
    /// use kmemlab_sim::{Machine, MachineConfig};
    ///
    /// let m = Machine::new(MachineConfig { ram: 64 << 20, cpus: 1, ..Default::default() }).unwrap();
    /// m.run(|mm| {
    ///     let v = VVec::<u32, _>::with_capacity(mm, 2048, GFP_KERNEL).unwrap();
    ///     assert_eq!((v.len(), v.capacity()), (0, 2048));
    ///     assert_eq!(mm.find_vm_area(v.addr()).unwrap().nr_pages, 2);
    /// });
    /// ```
    pub fn with_capacity(mm: &'a Mm<P>, capacity: usize, flags: Flags) -> Result<Self, AllocError> {
        let mut v = Self::new(mm);
        v.reserve(capacity, flags)?;
        Ok(v)
    }

    /// The number of elements.
    ///
    /// ```
    /// use kmemlab_mm::alloc::{flags::GFP_KERNEL, KVec};
    /// use kmemlab_sim::{Machine, MachineConfig};
    ///
    /// let m = Machine::new(MachineConfig { ram: 64 << 20, cpus: 1, ..Default::default() }).unwrap();
    /// m.run(|mm| {
    ///     let mut v = KVec::new(mm);
    ///     v.extend_from_slice(&[1u8, 2, 3], GFP_KERNEL).unwrap();
    ///     assert_eq!(v.len(), 3);
    /// });
    /// ```
    pub fn len(&self) -> usize {
        self.len
    }

    /// Are there no elements?
    ///
    /// ```
    /// use kmemlab_mm::alloc::{flags::GFP_KERNEL, KVec};
    /// use kmemlab_sim::{Machine, MachineConfig};
    ///
    /// let m = Machine::new(MachineConfig { ram: 64 << 20, cpus: 1, ..Default::default() }).unwrap();
    /// m.run(|mm| {
    ///     let mut v = KVec::new(mm);
    ///     assert!(v.is_empty());
    ///     v.push(0u8, GFP_KERNEL).unwrap();
    ///     assert!(!v.is_empty());
    /// });
    /// ```
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The number of elements the buffer has room for.
    ///
    /// ```
    /// use kmemlab_mm::alloc::{flags::GFP_KERNEL, KVec};
    /// use kmemlab_sim::{Machine, MachineConfig};
    ///
    /// let m = Machine::new(MachineConfig { ram: 64 << 20, cpus: 1, ..Default::default() }).unwrap();
    /// m.run(|mm| {
    ///     let mut v = KVec::new(mm);
    ///     v.push(1u64, GFP_KERNEL).unwrap();
    ///     assert_eq!(v.capacity(), 1);
    ///     v.push(2, GFP_KERNEL).unwrap();
    ///     v.push(3, GFP_KERNEL).unwrap();
    ///     assert_eq!(v.capacity(), 4); // doubled
    /// });
    /// ```
    pub fn capacity(&self) -> usize {
        self.cap
    }

    /// The kernel virtual address of the buffer (dangling while nothing is allocated).
    ///
    /// ```
    /// use kmemlab_mm::alloc::{flags::GFP_KERNEL, KVec};
    /// use kmemlab_sim::{Machine, MachineConfig};
    ///
    /// let m = Machine::new(MachineConfig { ram: 64 << 20, cpus: 1, ..Default::default() }).unwrap();
    /// m.run(|mm| {
    ///     let v = KVec::<u32, _>::with_capacity(mm, 10, GFP_KERNEL).unwrap();
    ///     assert_eq!(mm.ksize(v.addr()), Ok(64)); // 40 bytes: the kmalloc-64 class
    /// });
    /// ```
    pub fn addr(&self) -> VirtAddr {
        self.addr
    }

    /// Make room for at least `additional` more elements.
    ///
    /// ```
    /// use kmemlab_mm::alloc::{flags::GFP_KERNEL, AllocError, KVec};
    /// use kmemlab_sim::{Machine, MachineConfig};
    ///
    /// let m = Machine::new(MachineConfig { ram: 64 << 20, cpus: 1, ..Default::default() }).unwrap();
    /// m.run(|mm| {
    ///     let mut v = KVec::<u8, _>::new(mm);
    ///     v.reserve(100, GFP_KERNEL).unwrap();
    ///     assert!(v.capacity() >= 100);
    ///     assert_eq!(v.reserve(usize::MAX, GFP_KERNEL), Err(AllocError::CapacityOverflow));
    /// });
    /// ```
    #[inline]
    pub fn reserve(&mut self, additional: usize, flags: Flags) -> Result<(), AllocError> {
        if self.cap - self.len >= additional {
            return Ok(());
        }
        self.grow(additional, flags)
    }

    /// [`Vec::reserve`] when the buffer is too small: one `realloc` to the new capacity.
    #[inline(never)]
    fn grow(&mut self, additional: usize, flags: Flags) -> Result<(), AllocError> {
        let needed = self
            .len
            .checked_add(additional)
            .ok_or(AllocError::CapacityOverflow)?;
        let new_cap = needed.max(self.cap.saturating_mul(2));
        let layout = Layout::array::<T>(new_cap).map_err(|_| AllocError::CapacityOverflow)?;
        let old = Layout::array::<T>(self.cap).map_err(|_| AllocError::CapacityOverflow)?;
        let ptr = (self.cap != 0).then_some(self.addr);
        self.addr = A::realloc(self.mm, ptr, layout, old, flags)?;
        self.cap = new_cap;
        self.direct = direct_map_window(self.mm, self.addr, layout.size() as u64);
        Ok(())
    }

    /// Append `value`, growing the buffer if it is full.
    ///
    /// ```
    /// use kmemlab_mm::alloc::{flags::GFP_NOWAIT, KVVec};
    /// use kmemlab_sim::{Machine, MachineConfig};
    ///
    /// let m = Machine::new(MachineConfig { ram: 64 << 20, cpus: 1, ..Default::default() }).unwrap();
    /// m.run(|mm| {
    ///     let mut v = KVVec::new(mm);
    ///     v.push([1u8; 3], GFP_NOWAIT).unwrap();
    ///     assert_eq!(v.pop(), Some([1; 3]));
    /// });
    /// ```
    #[inline]
    pub fn push(&mut self, value: T, flags: Flags) -> Result<(), AllocError> {
        self.extend_from_slice(core::slice::from_ref(&value), flags)
    }

    /// Append copies of every element of `values` (one `reserve`, one copy).
    ///
    /// ```
    /// use kmemlab_mm::alloc::{flags::GFP_KERNEL, KVec};
    /// use kmemlab_sim::{Machine, MachineConfig};
    ///
    /// let m = Machine::new(MachineConfig { ram: 64 << 20, cpus: 1, ..Default::default() }).unwrap();
    /// m.run(|mm| {
    ///     let mut v = KVec::new(mm);
    ///     v.extend_from_slice(b"hello ", GFP_KERNEL).unwrap();
    ///     v.extend_from_slice(b"world", GFP_KERNEL).unwrap();
    ///     assert_eq!(v.iter().collect::<Vec<u8>>(), b"hello world");
    /// });
    /// ```
    #[inline]
    pub fn extend_from_slice(&mut self, values: &[T], flags: Flags) -> Result<(), AllocError> {
        self.reserve(values.len(), flags)?;
        self.write_at(self.len, values)?;
        self.len += values.len();
        Ok(())
    }

    /// Remove the last element and return it; `None` if the vector is empty (or its
    /// memory is no longer mapped).
    ///
    /// ```
    /// use kmemlab_mm::alloc::{flags::GFP_KERNEL, KVec};
    /// use kmemlab_sim::{Machine, MachineConfig};
    ///
    /// let m = Machine::new(MachineConfig { ram: 64 << 20, cpus: 1, ..Default::default() }).unwrap();
    /// m.run(|mm| {
    ///     let mut v = KVec::new(mm);
    ///     v.push(1i32, GFP_KERNEL).unwrap();
    ///     assert_eq!(v.pop(), Some(1));
    ///     assert_eq!(v.pop(), None);
    /// });
    /// ```
    pub fn pop(&mut self) -> Option<T> {
        let last = self.len.checked_sub(1)?;
        let value = self.get(last)?;
        self.len = last;
        Some(value)
    }

    /// A copy of element `index`; `None` if it is out of bounds (or the memory is no
    /// longer mapped).
    ///
    /// ```
    /// use kmemlab_mm::alloc::{flags::GFP_KERNEL, VVec};
    /// use kmemlab_sim::{Machine, MachineConfig};
    ///
    /// let m = Machine::new(MachineConfig { ram: 64 << 20, cpus: 1, ..Default::default() }).unwrap();
    /// m.run(|mm| {
    ///     let mut v = VVec::new(mm);
    ///     v.extend_from_slice(&[10u16, 20], GFP_KERNEL).unwrap();
    ///     assert_eq!(v.get(1), Some(20));
    ///     assert_eq!(v.get(2), None);
    /// });
    /// ```
    pub fn get(&self, index: usize) -> Option<T> {
        if index >= self.len {
            return None;
        }
        if Self::IS_ZST {
            return Some(zeroed());
        }
        self.read_at(index)
    }

    /// Replace element `index`.
    ///
    /// ```
    /// use kmemlab_mm::alloc::{flags::GFP_KERNEL, AllocError, KVec};
    /// use kmemlab_sim::{Machine, MachineConfig};
    ///
    /// let m = Machine::new(MachineConfig { ram: 64 << 20, cpus: 1, ..Default::default() }).unwrap();
    /// m.run(|mm| {
    ///     let mut v = KVec::new(mm);
    ///     v.push(1u8, GFP_KERNEL).unwrap();
    ///     v.set(0, 9).unwrap();
    ///     assert_eq!(v.get(0), Some(9));
    ///     assert_eq!(v.set(1, 9), Err(AllocError::OutOfBounds { index: 1, len: 1 }));
    /// });
    /// ```
    pub fn set(&mut self, index: usize, value: T) -> Result<(), AllocError> {
        if index >= self.len {
            return Err(AllocError::OutOfBounds {
                index,
                len: self.len,
            });
        }
        self.write_at(index, core::slice::from_ref(&value))
    }

    /// Shorten the vector to `len` elements (no effect if it is not longer); the buffer is
    /// kept.
    ///
    /// ```
    /// use kmemlab_mm::alloc::{flags::GFP_KERNEL, KVec};
    /// use kmemlab_sim::{Machine, MachineConfig};
    ///
    /// let m = Machine::new(MachineConfig { ram: 64 << 20, cpus: 1, ..Default::default() }).unwrap();
    /// m.run(|mm| {
    ///     let mut v = KVec::new(mm);
    ///     v.extend_from_slice(&[1u8, 2, 3], GFP_KERNEL).unwrap();
    ///     v.truncate(1);
    ///     assert_eq!(v.iter().collect::<Vec<_>>(), [1]);
    /// });
    /// ```
    pub fn truncate(&mut self, len: usize) {
        self.len = self.len.min(len);
    }

    /// Remove every element; the buffer is kept.
    ///
    /// ```
    /// use kmemlab_mm::alloc::{flags::GFP_KERNEL, KVec};
    /// use kmemlab_sim::{Machine, MachineConfig};
    ///
    /// let m = Machine::new(MachineConfig { ram: 64 << 20, cpus: 1, ..Default::default() }).unwrap();
    /// m.run(|mm| {
    ///     let mut v = KVec::new(mm);
    ///     v.extend_from_slice(&[1u8, 2, 3], GFP_KERNEL).unwrap();
    ///     v.clear();
    ///     assert!(v.is_empty());
    ///     assert_eq!(v.capacity(), 3);
    /// });
    /// ```
    pub fn clear(&mut self) {
        self.len = 0;
    }

    /// An iterator over copies of the elements, first to last.
    ///
    /// ```
    /// use kmemlab_mm::alloc::{flags::GFP_KERNEL, KVVec};
    /// use kmemlab_sim::{Machine, MachineConfig};
    ///
    /// let m = Machine::new(MachineConfig { ram: 64 << 20, cpus: 1, ..Default::default() }).unwrap();
    /// m.run(|mm| {
    ///     let mut v = KVVec::new(mm);
    ///     v.extend_from_slice(&[3u32, 1, 2], GFP_KERNEL).unwrap();
    ///     assert_eq!(v.iter().max(), Some(3));
    ///     let mut n = 0;
    ///     for x in &v {
    ///         n += x;
    ///     }
    ///     assert_eq!(n, 6);
    /// });
    /// ```
    pub fn iter(&self) -> Iter<'_, 'a, T, A, P> {
        Iter { vec: self, next: 0 }
    }

    /// The kernel address of element `index` (at most one past the end of the buffer).
    fn element_addr(&self, index: usize) -> VirtAddr {
        VirtAddr(self.addr.0 + (index * core::mem::size_of::<T>()) as u64)
    }

    /// Copy `values` in from element `index` on (inside the buffer): straight into RAM
    /// while the buffer is direct-mapped, else through the kernel's mappings.
    #[inline]
    fn write_at(&self, index: usize, values: &[T]) -> Result<(), AllocError> {
        let Some(window) = self.direct else {
            return write_pod(self.mm, self.element_addr(index), values);
        };
        let at = (index * core::mem::size_of::<T>()) as u64;
        let written = match values {
            [one] => window.write(at, *one),
            _ => window.write_bytes(at, values.as_bytes()),
        };
        written.map_err(|_| AllocError::Unmapped(self.element_addr(index)))
    }

    /// A copy of element `index` (inside the buffer), read as [`Vec::write_at`] writes.
    #[inline]
    fn read_at(&self, index: usize) -> Option<T> {
        match self.direct {
            Some(window) => window.read((index * core::mem::size_of::<T>()) as u64).ok(),
            None => read_pod(self.mm, self.element_addr(index)).ok(),
        }
    }
}

/// The RAM of the `bytes` at `addr` if they all lie in the direct map and in RAM
/// ([`Vec::direct`]).
fn direct_map_window<P: Platform>(mm: &Mm<P>, addr: VirtAddr, bytes: u64) -> Option<RamWindow<'_>> {
    // The direct map is linear: both ends inside it, and the bytes between are too.
    let last = addr.0.checked_add(bytes.checked_sub(1)?)?;
    mm.layout().virt_to_phys(last)?;
    let start = mm.layout().virt_to_phys(addr.0)?;
    mm.ram().window(start, bytes).ok()
}

impl<T: Pod, A: Allocator, P: Platform> Drop for Vec<'_, T, A, P> {
    fn drop(&mut self) {
        if self.cap == 0 || Self::IS_ZST {
            return;
        }
        if let Ok(layout) = Layout::array::<T>(self.cap) {
            // A refused free has been reported by the kernel; nothing more to do here.
            let _ = A::free(self.mm, self.addr, layout);
        }
    }
}

impl<T: Pod, A: Allocator, P: Platform> fmt::Debug for Vec<'_, T, A, P> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "Vec<{}>({}, len {}, capacity {})",
            A::NAME,
            self.addr,
            self.len,
            self.cap
        )
    }
}

/// An iterator over copies of a [`Vec`]'s elements ([`Vec::iter`]). It ends early if the
/// memory is no longer mapped (freed behind the vector's back), so it does not promise
/// how many elements it yields: its `size_hint` is `(0, Some(remaining))`, and it is not
/// an `ExactSizeIterator`. [`Vec::len`] is the length; [`Vec::get`] tells a failed read
/// from the end.
///
/// ```
/// use kmemlab_mm::alloc::{flags::GFP_KERNEL, VVec};
/// use kmemlab_sim::{Machine, MachineConfig};
///
/// let m = Machine::new(MachineConfig { ram: 64 << 20, cpus: 1, ..Default::default() }).unwrap();
/// m.run(|mm| {
///     let mut v = VVec::new(mm);
///     v.extend_from_slice(&[1u8, 2, 3], GFP_KERNEL).unwrap();
///     let mut it = v.iter();
///     assert_eq!(it.next(), Some(1));
///     assert_eq!(it.size_hint(), (0, Some(2)));
///     // Freed behind the vector's back: the iterator stops short of len().
///     mm.vfree(v.addr()).unwrap();
///     assert_eq!(it.next(), None);
///     assert_eq!((v.len(), v.iter().count()), (3, 0));
/// });
/// ```
pub struct Iter<'v, 'a, T: Pod, A: Allocator, P: Platform> {
    vec: &'v Vec<'a, T, A, P>,
    next: usize,
}

impl<T: Pod, A: Allocator, P: Platform> Iterator for Iter<'_, '_, T, A, P> {
    type Item = T;

    fn next(&mut self) -> Option<T> {
        let value = self.vec.get(self.next)?;
        self.next += 1;
        Some(value)
    }

    /// At most the elements left; possibly none, if the memory is gone.
    fn size_hint(&self) -> (usize, Option<usize>) {
        let left = self.vec.len - self.next.min(self.vec.len);
        (0, Some(left))
    }
}

impl<'v, 'a, T: Pod, A: Allocator, P: Platform> IntoIterator for &'v Vec<'a, T, A, P> {
    type Item = T;
    type IntoIter = Iter<'v, 'a, T, A, P>;

    fn into_iter(self) -> Self::IntoIter {
        self.iter()
    }
}
