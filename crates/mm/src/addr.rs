//! Physical and virtual addresses, page frame numbers and page-size helpers
//! (`include/asm-generic/page.h`, `include/linux/pfn.h`, `include/linux/mmzone.h`).

use core::fmt;

/// log2 of the page size: 4 KiB pages, as on x86.
pub const PAGE_SHIFT: u32 = 12;
/// The page size in bytes.
pub const PAGE_SIZE: usize = 1 << PAGE_SHIFT;
/// The largest order the buddy allocator hands out (`MAX_PAGE_ORDER`): 2^10 pages, 4 MiB.
pub const MAX_PAGE_ORDER: u32 = 10;
/// The number of buddy free lists per zone and migrate type (`NR_PAGE_ORDERS`).
pub const NR_PAGE_ORDERS: usize = MAX_PAGE_ORDER as usize + 1;
/// Orders above this are "costly": they are not retried as hard (`PAGE_ALLOC_COSTLY_ORDER`).
pub const PAGE_ALLOC_COSTLY_ORDER: u32 = 3;

/// A physical address.
#[derive(Copy, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct PhysAddr(pub u64);

/// A kernel virtual address (a direct-map address or a vmalloc-area address).
#[derive(Copy, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct VirtAddr(pub u64);

/// A page frame number: a physical address divided by the page size.
#[derive(Copy, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Pfn(pub u64);

impl PhysAddr {
    /// The frame that holds this address (`PHYS_PFN`).
    #[inline]
    pub const fn pfn(self) -> Pfn {
        Pfn(self.0 >> PAGE_SHIFT)
    }
}

impl Pfn {
    /// The physical address of the first byte of this frame (`PFN_PHYS`).
    #[inline]
    pub const fn phys(self) -> PhysAddr {
        PhysAddr(self.0 << PAGE_SHIFT)
    }

    /// The frame number as a plain integer, for printing and for words stored in RAM.
    #[inline]
    pub const fn raw(self) -> u64 {
        self.0
    }

    /// Is this frame the first of a naturally aligned block of `2^order` pages?
    #[inline]
    pub const fn is_aligned(self, order: u32) -> bool {
        self.0 & ((1 << order) - 1) == 0
    }

    /// The first frame of the `2^order`-page block holding this one (`ALIGN_DOWN`).
    #[inline]
    pub const fn align_down(self, order: u32) -> Pfn {
        Pfn(self.0 & !((1 << order) - 1))
    }

    /// The buddy of the `2^order` block starting here (`__find_buddy_pfn`).
    #[inline]
    pub const fn buddy(self, order: u32) -> Pfn {
        Pfn(self.0 ^ (1 << order))
    }

    /// The frames from `self` up to, not including, `end`.
    #[inline]
    pub fn range_to(self, end: Pfn) -> impl DoubleEndedIterator<Item = Pfn> + Clone {
        (self.0..end.0).map(Pfn)
    }

    /// `self + n`, or `None` on overflow.
    #[inline]
    pub const fn checked_add(self, n: u64) -> Option<Pfn> {
        match self.0.checked_add(n) {
            Some(v) => Some(Pfn(v)),
            None => None,
        }
    }
}

impl core::ops::Add<u64> for Pfn {
    type Output = Pfn;
    #[inline]
    fn add(self, n: u64) -> Pfn {
        Pfn(self.0 + n)
    }
}

impl core::ops::AddAssign<u64> for Pfn {
    #[inline]
    fn add_assign(&mut self, n: u64) {
        self.0 += n;
    }
}

impl core::ops::Sub<u64> for Pfn {
    type Output = Pfn;
    #[inline]
    fn sub(self, n: u64) -> Pfn {
        Pfn(self.0 - n)
    }
}

/// The number of frames between two frame numbers.
impl core::ops::Sub<Pfn> for Pfn {
    type Output = u64;
    #[inline]
    fn sub(self, other: Pfn) -> u64 {
        self.0 - other.0
    }
}

impl fmt::Debug for PhysAddr {
    #[inline]
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:#x}", self.0)
    }
}
impl fmt::Display for PhysAddr {
    #[inline]
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:#x}", self.0)
    }
}
impl fmt::Debug for VirtAddr {
    #[inline]
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:#x}", self.0)
    }
}
impl fmt::Display for VirtAddr {
    #[inline]
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:#x}", self.0)
    }
}
impl fmt::Debug for Pfn {
    #[inline]
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:#x}", self.0)
    }
}
impl fmt::Display for Pfn {
    #[inline]
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:#x}", self.0)
    }
}

/// The smallest order whose block holds `size` bytes (`get_order`); `get_order(0)` is
/// undefined in the kernel and 0 here.
pub const fn get_order(size: usize) -> u32 {
    if size <= PAGE_SIZE {
        return 0;
    }
    usize::BITS - ((size - 1) >> PAGE_SHIFT).leading_zeros()
}

/// `fls()`: the 1-based index of the most significant set bit, 0 for 0.
pub const fn fls(x: u64) -> u32 {
    u64::BITS - x.leading_zeros()
}

/// Round `x` up to a multiple of `align` (a power of two).
pub const fn align_up(x: u64, align: u64) -> u64 {
    (x + align - 1) & !(align - 1)
}

/// Round `x` down to a multiple of `align` (a power of two).
pub const fn align_down(x: u64, align: u64) -> u64 {
    x & !(align - 1)
}

/// Integer square root (`int_sqrt`), used by the watermark computation.
pub fn int_sqrt(x: u64) -> u64 {
    if x < 2 {
        return x;
    }
    // Newton's method from an over-estimate; converges to floor(sqrt(x)).
    let mut r = 1u64 << fls(x).div_ceil(2);
    loop {
        let next = (r + x / r) / 2;
        if next >= r {
            return r;
        }
        r = next;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    #[inline]
    fn get_order_matches_kernel() {
        assert_eq!(get_order(1), 0);
        assert_eq!(get_order(4096), 0);
        assert_eq!(get_order(4097), 1);
        assert_eq!(get_order(8192), 1);
        assert_eq!(get_order(8193), 2);
        assert_eq!(get_order(4 << 20), 10);
        assert_eq!(get_order((4 << 20) + 1), 11);
    }

    #[test]
    #[inline]
    fn int_sqrt_is_floor() {
        for x in [
            0u64,
            1,
            2,
            3,
            4,
            15,
            16,
            17,
            1_000_000,
            16 * 1024 * 1024,
            u32::MAX as u64,
        ] {
            let r = int_sqrt(x);
            assert!(r * r <= x && (r + 1) * (r + 1) > x, "{x} -> {r}");
        }
    }

    #[test]
    #[inline]
    fn fls_and_align() {
        assert_eq!(fls(0), 0);
        assert_eq!(fls(1), 1);
        assert_eq!(fls(4), 3);
        assert_eq!(align_up(4097, 4096), 8192);
        assert_eq!(align_down(4097, 4096), 4096);
    }
}
