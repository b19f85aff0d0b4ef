//! The one door between the kernel core and the RAM it runs in.
//!
//! Every byte of simulated RAM that `mm` reads or writes goes through this module: it is
//! the only code that turns a physical address into a host address. Each access is checked
//! against the machine's RAM (the firmware map, holes excluded) before a host pointer is
//! formed, so a corrupted table pointer, freelist word or page-frame number read back from
//! RAM yields a [`BadAccess`] — which the caller reports as the kernel would (an oops, a
//! `BUG:`), never a host fault.
//!
//! What it offers:
//! - [`PhysMem`]: checked reads and writes of plain values ([`PhysMem::read`],
//!   [`PhysMem::write`]), bytes, fills and moves, and typed views ([`PhysMem::view`]) of
//!   kernel structures made of atomics (`struct page`, slab counters, page-table entries,
//!   per-CPU areas). A type may be viewed only if every bit pattern is a valid value of it,
//!   which `zerocopy`'s derived [`FromBytes`] proves at compile time.
//! - [`RamArray`]: a checked array that boot carves out of RAM (`mem_map`, the pageblock
//!   flags, the per-CPU units), indexed without a host fault whatever the index.
//! - [`RamWindow`]: bytes of RAM checked once, for a buffer held by pointer (a Rust-style
//!   `Vec`'s), then read and written at offsets with one length test each.
//! - Kernel-virtual (direct-map) forms on [`Mm`]: [`Mm::kread`], [`Mm::kwrite`],
//!   [`Mm::kview`], ... which translate through the linear map first.
//!
//! Concurrency follows the [`crate::Platform`] contract: the kernel's locks and per-CPU
//! rules decide who writes what; typed views are of atomics, so shared references are
//! sound while others write.
#![allow(unsafe_code)]

use core::marker::PhantomData;
use core::sync::atomic::{AtomicU32, AtomicU64, AtomicU8};

pub use zerocopy::{FromBytes, Immutable, IntoBytes};

use crate::platform::{MemoryRegion, Platform};
use crate::Mm;

/// The most RAM ranges a firmware map may have (e820 tables are far smaller).
pub const MAX_RAM_REGIONS: usize = 64;

/// Why an access was refused.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum BadAccessKind {
    /// Some byte of the range is not RAM: a hole, past the end of memory, or a range that
    /// wraps around the address space.
    NotRam,
    /// The address is not aligned for the type viewed there.
    Misaligned,
    /// A kernel-virtual address outside the direct map.
    NotDirectMap,
}

/// An access the door refused: nothing was read or written.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct BadAccess {
    /// The address asked for (physical, or kernel-virtual for the `k*` forms).
    pub addr: u64,
    /// The length of the access in bytes.
    pub len: u64,
    /// Why it was refused.
    pub kind: BadAccessKind,
}

impl core::fmt::Display for BadAccess {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        let why = match self.kind {
            BadAccessKind::NotRam => "not RAM",
            BadAccessKind::Misaligned => "misaligned",
            BadAccessKind::NotDirectMap => "outside the direct map",
        };
        write!(f, "{} bytes at {:#x}: {why}", self.len, self.addr)
    }
}

impl core::error::Error for BadAccess {}

/// The machine's RAM as the door sees it: where it lives in the host and which physical
/// ranges are RAM.
pub struct PhysMem {
    base: *mut u8,
    /// The largest RAM range, checked first: nearly every access lands in it.
    main: (u64, u64),
    regions: [(u64, u64); MAX_RAM_REGIONS],
    nr_regions: usize,
}

// SAFETY: `PhysMem` holds only the base of memory that the `Platform` contract makes
// readable and writable from any thread for the platform's lifetime; every access it
// makes is bounds-checked and of plain bytes or atomics.
unsafe impl Send for PhysMem {}
// SAFETY: as above.
unsafe impl Sync for PhysMem {}

impl PhysMem {
    /// A door with no RAM behind it (every access refused).
    pub const fn empty() -> PhysMem {
        PhysMem {
            base: core::ptr::null_mut(),
            main: (0, 0),
            regions: [(0, 0); MAX_RAM_REGIONS],
            nr_regions: 0,
        }
    }

    /// The door to `platform`'s RAM, or `None` if its map has more than
    /// [`MAX_RAM_REGIONS`] ranges or they are unsorted or overlapping. Only `Mm` makes
    /// one, for the platform it owns: the door does not borrow the platform, so one made
    /// elsewhere could outlive the RAM it points into.
    pub(crate) fn new<P: Platform>(platform: &P) -> Option<PhysMem> {
        let map: &[MemoryRegion] = platform.memory_map();
        if map.len() > MAX_RAM_REGIONS {
            return None;
        }
        let mut door = PhysMem {
            base: platform.phys_mem(),
            ..PhysMem::empty()
        };
        let mut prev_end = 0;
        for (slot, r) in door.regions.iter_mut().zip(map) {
            if r.start.0 < prev_end || r.end.0 < r.start.0 {
                return None;
            }
            prev_end = r.end.0;
            *slot = (r.start.0, r.end.0);
        }
        door.nr_regions = map.len();
        door.main = door.largest_region();
        Some(door)
    }

    fn largest_region(&self) -> (u64, u64) {
        self.regions[..self.nr_regions]
            .iter()
            .copied()
            .max_by_key(|&(s, e)| e - s)
            .unwrap_or((0, 0))
    }

    /// Is `[phys, phys + len)` all RAM?
    #[inline]
    pub fn is_ram(&self, phys: u64, len: u64) -> bool {
        let Some(end) = phys.checked_add(len) else {
            return false;
        };
        let (s, e) = self.main;
        (phys >= s && end <= e) || self.in_other_region(phys, end)
    }

    #[cold]
    fn in_other_region(&self, phys: u64, end: u64) -> bool {
        self.regions[..self.nr_regions]
            .iter()
            .any(|&(s, e)| phys >= s && end <= e)
    }

    /// The host address of `[phys, phys + len)`, once the range is known to be RAM.
    #[inline]
    fn host(&self, phys: u64, len: u64) -> Result<*mut u8, BadAccess> {
        if !self.is_ram(phys, len) {
            return Err(BadAccess {
                addr: phys,
                len,
                kind: BadAccessKind::NotRam,
            });
        }
        // SAFETY: `[phys, phys + len)` is inside a RAM range of the platform's map, which
        // the `Platform` contract backs with host memory from `base`; the offset cannot
        // overflow since the range was just found inside the map.
        Ok(unsafe { self.base.add(phys as usize) })
    }

    /// The host address of a `T` at `phys`, checked for RAM and alignment.
    #[inline]
    fn host_of<T>(&self, phys: u64) -> Result<*mut u8, BadAccess> {
        let len = core::mem::size_of::<T>() as u64;
        if !phys.is_multiple_of(core::mem::align_of::<T>() as u64) {
            return Err(BadAccess {
                addr: phys,
                len,
                kind: BadAccessKind::Misaligned,
            });
        }
        self.host(phys, len)
    }

    /// Read a plain value at `phys` (any alignment).
    #[inline]
    pub fn read<T: FromBytes>(&self, phys: u64) -> Result<T, BadAccess> {
        let p = self.host(phys, core::mem::size_of::<T>() as u64)?;
        // SAFETY: the bytes are RAM (checked by `host`); `T: FromBytes` makes any bytes a
        // valid `T`; the read is unaligned-safe.
        Ok(unsafe { core::ptr::read_unaligned(p as *const T) })
    }

    /// Write a plain value at `phys` (any alignment).
    #[inline]
    pub fn write<T: IntoBytes + Immutable>(&self, phys: u64, value: T) -> Result<(), BadAccess> {
        let p = self.host(phys, core::mem::size_of::<T>() as u64)?;
        // SAFETY: the bytes are RAM (checked by `host`); `T: IntoBytes` has no padding, so
        // every byte written is initialised.
        unsafe { core::ptr::write_unaligned(p as *mut T, value) };
        Ok(())
    }

    /// Copy `buf.len()` bytes of RAM at `phys` into `buf`.
    pub fn read_bytes(&self, phys: u64, buf: &mut [u8]) -> Result<(), BadAccess> {
        let p = self.host(phys, buf.len() as u64)?;
        // SAFETY: the source is RAM (checked); `buf` is host memory that cannot overlap
        // the simulated RAM the kernel hands out by physical address.
        unsafe { core::ptr::copy(p, buf.as_mut_ptr(), buf.len()) };
        Ok(())
    }

    /// Copy `bytes` into RAM at `phys`.
    pub fn write_bytes(&self, phys: u64, bytes: &[u8]) -> Result<(), BadAccess> {
        let p = self.host(phys, bytes.len() as u64)?;
        // SAFETY: the destination is RAM (checked); `copy` allows overlap.
        unsafe { core::ptr::copy(bytes.as_ptr(), p, bytes.len()) };
        Ok(())
    }

    /// `memset()`: fill `len` bytes of RAM at `phys` with `byte`.
    pub fn fill(&self, phys: u64, byte: u8, len: u64) -> Result<(), BadAccess> {
        let p = self.host(phys, len)?;
        // SAFETY: the range is RAM (checked).
        unsafe { core::ptr::write_bytes(p, byte, len as usize) };
        Ok(())
    }

    /// `memset(0)` of `len` bytes at `phys`, writing only the 4 KiB pieces that hold a
    /// non-zero byte: the same bytes afterwards as [`PhysMem::fill`] with 0, but memory
    /// that is zero already (the simulator's lazily backed RAM, never written) is only
    /// read, so its host pages are neither written nor backed. Boot clears `mem_map` so.
    pub fn zero(&self, phys: u64, len: u64) -> Result<(), BadAccess> {
        let p = self.host(phys, len)?;
        let mut done = 0usize;
        while done < len as usize {
            let n = ZERO_CHUNK.min(len as usize - done);
            // SAFETY: `done + n <= len`, inside the range checked above.
            let piece = unsafe { p.add(done) };
            if !chunk_is_zero(piece, n) {
                // SAFETY: as above: RAM (checked).
                unsafe { core::ptr::write_bytes(piece, 0, n) };
            }
            done += n;
        }
        Ok(())
    }

    /// Are all `len` bytes at `phys` zero? (Read as [`PhysMem::read_bytes`] reads, a
    /// 4 KiB piece at a time: the checker's test for runs of blank `struct page`s.)
    pub fn is_zero(&self, phys: u64, len: u64) -> Result<bool, BadAccess> {
        let p = self.host(phys, len)?;
        let mut done = 0usize;
        while done < len as usize {
            let n = ZERO_CHUNK.min(len as usize - done);
            // SAFETY: `done + n <= len`, inside the range checked above.
            if !chunk_is_zero(unsafe { p.add(done) }, n) {
                return Ok(false);
            }
            done += n;
        }
        Ok(true)
    }

    /// `memmove()`: copy `len` bytes from `src` to `dst`, both in RAM; the ranges may
    /// overlap.
    pub fn copy(&self, dst: u64, src: u64, len: u64) -> Result<(), BadAccess> {
        let d = self.host(dst, len)?;
        let s = self.host(src, len)?;
        // SAFETY: both ranges are RAM (checked); `copy` allows overlap.
        unsafe { core::ptr::copy(s, d, len as usize) };
        Ok(())
    }

    /// A shared view of the `T` at `phys`: a kernel structure made of atomics (so that
    /// others may write it while the view lives) whose every bit pattern is valid.
    #[inline]
    pub fn view<T: FromBytes>(&self, phys: u64) -> Result<&T, BadAccess> {
        let p = self.host_of::<T>(phys)?;
        // SAFETY: RAM and aligned (checked by `host_of`); any bytes are a valid `T`
        // (`FromBytes`); the memory lives as long as the platform, which outlives `self`.
        Ok(unsafe { &*(p as *const T) })
    }

    /// The 64-bit word at `phys` as an atomic (8-byte aligned).
    #[inline]
    pub fn atomic_u64(&self, phys: u64) -> Result<&AtomicU64, BadAccess> {
        self.view(phys)
    }

    /// The 32-bit word at `phys` as an atomic (4-byte aligned).
    #[inline]
    pub fn atomic_u32(&self, phys: u64) -> Result<&AtomicU32, BadAccess> {
        self.view(phys)
    }

    /// The byte at `phys` as an atomic.
    #[inline]
    pub fn atomic_u8(&self, phys: u64) -> Result<&AtomicU8, BadAccess> {
        self.view(phys)
    }

    /// An array of `len` `T`s starting at `phys`, which boot has reserved in RAM (for
    /// `mem_map`, the pageblock flags, the per-CPU units), or that a fast path checks in
    /// one go (a slab sheaf).
    #[inline]
    pub fn array<T: FromBytes>(&self, phys: u64, len: u64) -> Result<RamArray<T>, BadAccess> {
        let bytes = len
            .checked_mul(core::mem::size_of::<T>() as u64)
            .ok_or(BadAccess {
                addr: phys,
                len: u64::MAX,
                kind: BadAccessKind::NotRam,
            })?;
        if !phys.is_multiple_of(core::mem::align_of::<T>() as u64) {
            return Err(BadAccess {
                addr: phys,
                len: bytes,
                kind: BadAccessKind::Misaligned,
            });
        }
        let p = self.host(phys, bytes)?;
        // A null host address (a door without RAM) can only hold an empty array.
        let base = match core::ptr::NonNull::new(p as *mut T) {
            Some(base) => base,
            None if len == 0 => return Ok(RamArray::empty()),
            None => {
                return Err(BadAccess {
                    addr: phys,
                    len: bytes,
                    kind: BadAccessKind::NotRam,
                })
            }
        };
        Ok(RamArray {
            base,
            len,
            _marker: PhantomData,
        })
    }

    /// The `len` bytes of RAM at `phys`, checked once, for a kernel buffer held by
    /// pointer (a Rust-for-Linux `Vec`'s): plain values are then written and read at
    /// offsets inside it with one bounds test each.
    #[inline]
    pub fn window(&self, phys: u64, len: u64) -> Result<RamWindow<'_>, BadAccess> {
        let p = self.host(phys, len)?;
        let base = core::ptr::NonNull::new(p).ok_or(BadAccess {
            addr: phys,
            len,
            kind: BadAccessKind::NotRam,
        })?;
        Ok(RamWindow {
            base,
            phys,
            len,
            _ram: PhantomData,
        })
    }
}

/// Bytes of RAM checked once ([`PhysMem::window`]); every access is tested against its
/// length, so an offset can at worst be refused.
#[derive(Clone, Copy)]
pub struct RamWindow<'r> {
    /// Never null, so that an `Option<RamWindow>` needs no separate tag.
    base: core::ptr::NonNull<u8>,
    phys: u64,
    len: u64,
    _ram: PhantomData<&'r PhysMem>,
}

// SAFETY: as `PhysMem`'s: the window holds only the host address of RAM the platform keeps
// readable and writable for its lifetime, and makes only checked accesses of plain bytes.
unsafe impl Send for RamWindow<'_> {}
// SAFETY: as above.
unsafe impl Sync for RamWindow<'_> {}

/// The window's physical range (its host address stays out of printed output).
impl core::fmt::Debug for RamWindow<'_> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "RamWindow({:#x}, {} bytes)", self.phys, self.len)
    }
}

impl RamWindow<'_> {
    /// The physical address of the window's first byte.
    pub fn phys(&self) -> u64 {
        self.phys
    }

    /// The host address of the `size` bytes at `offset`, if they lie inside the window.
    #[inline]
    fn at(&self, offset: u64, size: u64) -> Result<*mut u8, BadAccess> {
        if offset.checked_add(size).is_none_or(|end| end > self.len) {
            return Err(BadAccess {
                addr: self.phys.wrapping_add(offset),
                len: size,
                kind: BadAccessKind::NotRam,
            });
        }
        // SAFETY: `offset + size <= len` (checked above), inside the RAM the window was
        // checked to cover when it was made.
        Ok(unsafe { self.base.as_ptr().add(offset as usize) })
    }

    /// Write a plain value at `offset` (any alignment).
    #[inline]
    pub fn write<T: IntoBytes + Immutable>(&self, offset: u64, value: T) -> Result<(), BadAccess> {
        let p = self.at(offset, core::mem::size_of::<T>() as u64)?;
        // SAFETY: the bytes are inside the window's RAM (checked by `at`); `T: IntoBytes`
        // has no padding, so every byte written is initialised.
        unsafe { core::ptr::write_unaligned(p as *mut T, value) };
        Ok(())
    }

    /// Copy `bytes` in at `offset`.
    #[inline]
    pub fn write_bytes(&self, offset: u64, bytes: &[u8]) -> Result<(), BadAccess> {
        let p = self.at(offset, bytes.len() as u64)?;
        // SAFETY: the destination is inside the window's RAM (checked by `at`); `bytes`
        // is host memory, and `copy` allows overlap anyway.
        unsafe { core::ptr::copy(bytes.as_ptr(), p, bytes.len()) };
        Ok(())
    }

    /// Read a plain value at `offset` (any alignment).
    #[inline]
    pub fn read<T: FromBytes>(&self, offset: u64) -> Result<T, BadAccess> {
        let p = self.at(offset, core::mem::size_of::<T>() as u64)?;
        // SAFETY: the bytes are inside the window's RAM (checked by `at`); `T: FromBytes`
        // makes any bytes a valid `T`; the read is unaligned-safe.
        Ok(unsafe { core::ptr::read_unaligned(p as *const T) })
    }
}

/// The piece [`PhysMem::zero`] and [`PhysMem::is_zero`] test at a time: a host page.
const ZERO_CHUNK: usize = 4096;

/// Are the `n <= ZERO_CHUNK` bytes at host address `p`, inside RAM and 8-byte aligned
/// or not, all zero? A plain read of the words, as [`PhysMem::read_bytes`]' copy reads
/// them, ORed together (which the compiler vectorises).
#[inline]
fn chunk_is_zero(p: *const u8, n: usize) -> bool {
    let words = n / 8;
    let mut acc = 0u64;
    for i in 0..words {
        // SAFETY: the caller passes `n` bytes of RAM at `p` (checked by `host`), and
        // `8 * i + 8 <= n`; unaligned reads are allowed.
        acc |= unsafe { core::ptr::read_unaligned((p as *const u64).add(i)) };
    }
    for i in words * 8..n {
        // SAFETY: `i < n`, inside the same checked range.
        acc |= u64::from(unsafe { *p.add(i) });
    }
    acc == 0
}

/// A view of the `T` at the start of `words` (a per-CPU dynamic allocation), if it fits
/// there and the words are aligned for it.
#[inline]
pub fn view_words<T: FromBytes>(words: &[AtomicU64]) -> Option<&T> {
    if core::mem::size_of::<T>() > core::mem::size_of_val(words)
        || !(words.as_ptr() as usize).is_multiple_of(core::mem::align_of::<T>())
    {
        return None;
    }
    // SAFETY: the words are live memory at least as large and as aligned as a `T` (checked
    // above), any bytes are a valid `T` (`FromBytes`), and the view borrows `words`.
    Some(unsafe { &*(words.as_ptr() as *const T) })
}

/// An array of kernel structures in RAM, of a type whose every bit pattern is valid.
/// Indexing is bounds-checked; an index read back from RAM can at worst select `None`.
pub struct RamArray<T> {
    /// Never null (dangling when empty), so `get`'s `Option<&T>` needs no null test.
    base: core::ptr::NonNull<T>,
    len: u64,
    _marker: PhantomData<T>,
}

// SAFETY: the elements are `FromBytes` structures of atomics in RAM that the platform
// keeps valid for its lifetime; sharing references to them across threads is what the
// kernel's own locking governs.
unsafe impl<T: Sync> Send for RamArray<T> {}
// SAFETY: as above.
unsafe impl<T: Sync> Sync for RamArray<T> {}

impl<T> RamArray<T> {
    /// An array with no elements (before boot has placed it).
    pub const fn empty() -> RamArray<T> {
        RamArray {
            base: core::ptr::NonNull::dangling(),
            len: 0,
            _marker: PhantomData,
        }
    }

    /// The number of elements.
    #[inline]
    pub fn len(&self) -> u64 {
        self.len
    }

    /// Has the array no elements?
    #[inline]
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Element `index`, or `None` past the end.
    #[inline]
    pub fn get(&self, index: u64) -> Option<&T> {
        if index >= self.len {
            return None;
        }
        // SAFETY: `index < len`, and `PhysMem::array` checked that all `len` elements
        // (of the array this one is, or is a prefix of: `RamArray::prefix`) are RAM,
        // aligned, and valid for any bytes; RAM outlives the array.
        Some(unsafe { self.base.add(index as usize).as_ref() })
    }

    /// The first `n` elements (all of them when there are fewer), as an array of their own
    /// over the same RAM.
    pub fn prefix(&self, n: u64) -> RamArray<T> {
        RamArray {
            base: self.base,
            len: n.min(self.len),
            _marker: PhantomData,
        }
    }

    /// The index of `elem` if it is an element of this array (`page_to_pfn()` for a
    /// `struct page` reference), else `None`.
    ///
    /// The byte offset divided exactly by the element's size `odd << shift` in one
    /// multiplication: the offset times the inverse of `odd` modulo 2^64, rotated right by
    /// `shift`, is the quotient when the size divides the offset, and otherwise at least
    /// 2^64 / size (the bits the rotation brings to the top are those of a remainder, or
    /// the product is one no multiple of `odd` gives: Granlund and Montgomery's
    /// divisibility test), more than any array in memory holds. So one compare with the
    /// length answers both questions.
    #[inline]
    pub fn index_of(&self, elem: &T) -> Option<u64> {
        let (shift, inverse) = const { exact_division::<T>() };
        let offset =
            (elem as *const T as usize as u64).wrapping_sub(self.base.as_ptr() as usize as u64);
        let index = offset.wrapping_mul(inverse).rotate_right(shift);
        (index < self.len).then_some(index)
    }
}

/// The size of `T` as `odd << shift`: `shift` and the inverse of `odd` modulo 2^64, for
/// [`RamArray::index_of`] (by Newton's iteration, each step doubling the bits that are
/// right: an odd number is its own inverse modulo 8).
const fn exact_division<T>() -> (u32, u64) {
    let size = core::mem::size_of::<T>() as u64;
    assert!(size > 0, "RamArray of a zero-sized type");
    let shift = size.trailing_zeros();
    let odd = size >> shift;
    let mut inverse = odd;
    let mut step = 0;
    while step < 5 {
        inverse = inverse.wrapping_mul(2u64.wrapping_sub(odd.wrapping_mul(inverse)));
        step += 1;
    }
    (shift, inverse)
}

/// The direct-map (kernel-virtual) forms of the door's accesses: each translates `va`
/// through the linear map (`__pa()`) and refuses addresses outside it.
impl<P: Platform> Mm<P> {
    /// `__pa()` of `[va, va + len)`, checked to lie in the direct map.
    #[inline]
    pub fn direct_map_phys(&self, va: u64, len: u64) -> Result<u64, BadAccess> {
        let refuse = BadAccess {
            addr: va,
            len,
            kind: BadAccessKind::NotDirectMap,
        };
        let phys = self.layout.virt_to_phys(va).ok_or(refuse)?;
        if len > 1 {
            let last = va.checked_add(len - 1).ok_or(refuse)?;
            if self.layout.virt_to_phys(last) != Some(phys + len - 1) {
                return Err(refuse);
            }
        }
        Ok(phys)
    }

    /// The door to RAM by physical address.
    #[inline]
    pub fn ram(&self) -> &PhysMem {
        &self.ram
    }

    /// `memset(0)` of `len` bytes of boot memory at `phys`, most of which was never
    /// written: the whole pages inside the range go to the platform to discard
    /// ([`crate::Hardware::discard_ram`]: they then read as zero and cost the host
    /// nothing), the edges, and everything if the platform cannot, to [`PhysMem::zero`],
    /// which writes only what is not zero already. Only while booting, when nothing else
    /// touches the range.
    pub(crate) fn zero_boot_ram(&self, phys: u64, len: u64) -> Result<(), BadAccess> {
        let page = crate::addr::PAGE_SIZE as u64;
        let end = phys.saturating_add(len);
        let first = phys.div_ceil(page).saturating_mul(page);
        let last = end / page * page;
        if first < last
            && self.ram.is_ram(first, last - first)
            && self
                .platform
                .discard_ram(crate::addr::PhysAddr(first), last - first)
        {
            self.ram.zero(phys, first - phys)?;
            return self.ram.zero(last, end - last);
        }
        self.ram.zero(phys, len)
    }

    /// Read a plain value at direct-map address `va`.
    #[inline]
    pub fn kread<T: FromBytes>(&self, va: u64) -> Result<T, BadAccess> {
        let phys = self.direct_map_phys(va, core::mem::size_of::<T>() as u64)?;
        self.ram.read(phys)
    }

    /// Write a plain value at direct-map address `va`.
    #[inline]
    pub fn kwrite<T: IntoBytes + Immutable>(&self, va: u64, value: T) -> Result<(), BadAccess> {
        let phys = self.direct_map_phys(va, core::mem::size_of::<T>() as u64)?;
        self.ram.write(phys, value)
    }

    /// Copy bytes out of the direct map at `va`.
    pub fn kread_bytes(&self, va: u64, buf: &mut [u8]) -> Result<(), BadAccess> {
        let phys = self.direct_map_phys(va, buf.len() as u64)?;
        self.ram.read_bytes(phys, buf)
    }

    /// Copy bytes into the direct map at `va`.
    pub fn kwrite_bytes(&self, va: u64, bytes: &[u8]) -> Result<(), BadAccess> {
        let phys = self.direct_map_phys(va, bytes.len() as u64)?;
        self.ram.write_bytes(phys, bytes)
    }

    /// `memset()` in the direct map.
    pub fn kfill(&self, va: u64, byte: u8, len: u64) -> Result<(), BadAccess> {
        let phys = self.direct_map_phys(va, len)?;
        self.ram.fill(phys, byte, len)
    }

    /// `memmove()` within the direct map.
    pub fn kcopy(&self, dst: u64, src: u64, len: u64) -> Result<(), BadAccess> {
        let d = self.direct_map_phys(dst, len)?;
        let s = self.direct_map_phys(src, len)?;
        self.ram.copy(d, s, len)
    }

    /// The host address of the direct-map range `[va, va + len)`, checked as every access
    /// is (direct map, then RAM). For a platform whose RAM is the program's own memory (a
    /// host allocator built on `mm`, see `crates/hostalloc`), which hands the memory to
    /// its callers. Forming the pointer is safe; whoever dereferences it answers for that.
    #[inline]
    pub fn direct_map_host_ptr(&self, va: u64, len: u64) -> Result<*mut u8, BadAccess> {
        let phys = self.direct_map_phys(va, len)?;
        self.ram.host(phys, len)
    }

    /// A typed view of the structure at direct-map address `va` (see [`PhysMem::view`]).
    #[inline]
    pub fn kview<T: FromBytes>(&self, va: u64) -> Result<&T, BadAccess> {
        let phys = self.direct_map_phys(va, core::mem::size_of::<T>() as u64)?;
        self.ram.view(phys)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn door(buf: &mut [u8], regions: &[(u64, u64)]) -> PhysMem {
        let mut d = PhysMem {
            base: buf.as_mut_ptr(),
            ..PhysMem::empty()
        };
        for (slot, r) in d.regions.iter_mut().zip(regions) {
            *slot = *r;
        }
        d.nr_regions = regions.len();
        d.main = d.largest_region();
        d
    }

    /// A window is made only over RAM, and refuses every access not wholly inside it
    /// (offsets near `u64::MAX` included) while the ones inside land where the door's own
    /// accesses do.
    #[test]
    fn a_window_reaches_only_its_own_bytes() {
        let mut buf = [0u8; 256];
        let d = door(&mut buf, &[(0, 200)]);
        assert!(d.window(100, 101).is_err(), "past the end of RAM");
        let w = d.window(64, 64).unwrap();
        assert_eq!(w.phys(), 64);
        w.write(0, 0x1122_3344_5566_7788u64).unwrap();
        w.write(56, 7u64).unwrap();
        w.write_bytes(60, &[9, 9, 9, 9]).unwrap();
        assert_eq!(d.read::<u64>(64), Ok(0x1122_3344_5566_7788));
        assert_eq!(w.read::<u32>(56), Ok(7));
        assert_eq!(d.read::<u32>(124), Ok(0x0909_0909));
        for offset in [57, 64, u64::MAX - 3, u64::MAX] {
            assert!(w.write(offset, 1u64).is_err(), "offset {offset}");
            assert!(w.read::<u64>(offset).is_err(), "offset {offset}");
        }
        assert!(w.write_bytes(61, &[1, 2, 3, 4]).is_err());
        assert_eq!(d.read::<u64>(128), Ok(0), "nothing written past the window");
    }

    /// `zero` leaves the bytes `fill(.., 0, ..)` leaves, and `is_zero` sees any non-zero
    /// byte wherever it lies: in a word, in the bytes after the last whole word, in any
    /// 4 KiB piece; both refuse ranges that are not all RAM.
    #[test]
    fn zero_and_is_zero_see_every_byte() {
        let mut buf = [0u8; 3 * ZERO_CHUNK + 64];
        let len = buf.len() as u64;
        let d = door(&mut buf, &[(0, len - 32)]);
        let span = len - 32 - 3;
        assert_eq!(d.is_zero(3, span), Ok(true));
        for at in [3, 4, 10, 4095, 4096, 8191, 9000, span + 2] {
            d.write::<u8>(at, 0x40).unwrap();
            assert_eq!(d.is_zero(3, span), Ok(false), "a byte at {at}");
            assert_eq!(d.is_zero(at + 1, span + 2 - at), Ok(true), "after {at}");
            d.zero(3, span).unwrap();
            assert_eq!(d.read::<u8>(at), Ok(0));
            assert_eq!(d.is_zero(3, span), Ok(true));
        }
        d.fill(0, 0x11, 3).unwrap();
        d.zero(3, span).unwrap();
        assert_eq!(d.read::<u8>(2), Ok(0x11), "outside the range: untouched");
        assert_eq!(d.is_zero(0, len).unwrap_err().kind, BadAccessKind::NotRam);
        assert_eq!(d.zero(0, len).unwrap_err().kind, BadAccessKind::NotRam);
    }

    #[test]
    fn accesses_inside_ram_work_and_outside_are_refused() {
        let mut buf = [0u8; 256];
        let d = door(&mut buf, &[(0, 64), (128, 256)]);
        d.write::<u64>(8, 0x1122_3344_5566_7788).unwrap();
        assert_eq!(d.read::<u64>(8), Ok(0x1122_3344_5566_7788));
        // Straddles the hole at 64..128.
        assert_eq!(d.read::<u64>(60).unwrap_err().kind, BadAccessKind::NotRam);
        assert_eq!(d.read::<u8>(100).unwrap_err().kind, BadAccessKind::NotRam);
        assert_eq!(d.read::<u8>(256).unwrap_err().kind, BadAccessKind::NotRam);
        assert!(d.read::<u64>(u64::MAX - 3).is_err());
        assert_eq!(d.fill(128, 0xaa, 128), Ok(()));
        assert!(d.fill(128, 0xaa, 129).is_err());
        assert_eq!(
            d.view::<AtomicU64>(132).unwrap_err().kind,
            BadAccessKind::Misaligned
        );
        assert!(d.array::<AtomicU64>(128, 16).is_ok());
        assert!(d.array::<AtomicU64>(128, 17).is_err());
        assert!(d.array::<AtomicU64>(128, u64::MAX).is_err());
    }

    #[test]
    fn ram_array_refuses_indices_past_its_end() {
        let mut buf = [0u64; 8];
        let bytes = buf.as_mut_ptr() as *mut u8;
        let d = PhysMem {
            base: bytes,
            regions: {
                let mut r = [(0, 0); MAX_RAM_REGIONS];
                r[0] = (0, 64);
                r
            },
            nr_regions: 1,
            main: (0, 64),
        };
        let a = d.array::<AtomicU64>(0, 8).unwrap();
        assert!(a.get(7).is_some());
        assert!(a.get(8).is_none());
        assert!(a.get(u64::MAX).is_none());
        let third = a.get(3).unwrap();
        assert_eq!(a.index_of(third), Some(3));
    }

    /// `index_of` answers the index of every element and `None` for every other
    /// reference of the type: misplaced by a few bytes, before the array, past its end.
    #[test]
    fn index_of_knows_its_own_elements_only() {
        use crate::mm_types::Page;
        const SIZE: u64 = core::mem::size_of::<Page>() as u64;
        let mut buf = [0u64; 128];
        let d = PhysMem {
            base: buf.as_mut_ptr() as *mut u8,
            regions: {
                let mut r = [(0, 0); MAX_RAM_REGIONS];
                r[0] = (0, 1024);
                r
            },
            nr_regions: 1,
            main: (0, 1024),
        };
        let origin = 2 * SIZE;
        let a = d.array::<Page>(origin, 10).unwrap();
        // The element of a second view, at every step of the type's alignment.
        let (mut found, mut refused) = (0, 0);
        for start in (0..origin + 11 * SIZE).step_by(core::mem::align_of::<Page>()) {
            let view = d.array::<Page>(start, 1).unwrap();
            let elem = view.get(0).unwrap();
            let want = (start >= origin && (start - origin).is_multiple_of(SIZE))
                .then(|| (start - origin) / SIZE)
                .filter(|&i| i < 10);
            assert_eq!(a.index_of(elem), want, "offset {start}");
            match want {
                Some(_) => found += 1,
                None => refused += 1,
            }
        }
        assert_eq!(found, 10);
        assert!(refused >= 50, "{refused}");
        let (shift, inverse) = exact_division::<Page>();
        assert_eq!((SIZE >> shift).wrapping_mul(inverse), 1);
        assert_eq!(exact_division::<AtomicU64>(), (3, 1));
    }
}
