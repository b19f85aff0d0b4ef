//! The kmalloc family (`mm/slab_common.c`, `include/linux/slab.h` of Linux 6.6): size
//! classes 8 … 8192 (with 96 and 192), normal / reclaimable / DMA / memcg-accounted
//! (`kmalloc-cg-*`) caches, large allocations straight from the page allocator up to
//! KMALLOC_MAX_SIZE.
//!
//! Files: `mod.rs` (size classes, types, the kmalloc caches' creation), `api.rs`
//! (`kmalloc()`, `kfree()`, `krealloc()`, `ksize()`, large kmallocs).
//!
//! A machine may boot with other size classes ([`KmallocSizes`], for "what if" replays):
//! the kernel's `size_index[]` table, which maps requests of up to 192 bytes to a class in
//! 8-byte steps, then covers every size up to KMALLOC_MAX_CACHE_SIZE.
//!
//! Objects are read and written through the door; the cache a slab page names and the
//! order a large kmalloc's head page records are checked before they are used.

mod api;

use core::fmt;
use core::sync::atomic::Ordering::Relaxed;

use crate::addr::{Pfn, VirtAddr, MAX_PAGE_ORDER, PAGE_SHIFT, PAGE_SIZE};
use crate::gfp::Gfp;
use crate::platform::Platform;
use crate::slab::cache::KmemCache;
use crate::slab::{SlabError, SlabFlags, SlabGlobals};
use crate::Mm;

/// `KMALLOC_SHIFT_LOW`: the smallest class is 8 bytes.
pub const KMALLOC_SHIFT_LOW: usize = 3;
/// `KMALLOC_SHIFT_HIGH`: the largest class is 8 KiB (two pages).
pub const KMALLOC_SHIFT_HIGH: usize = PAGE_SHIFT as usize + 1;
/// `KMALLOC_MAX_CACHE_SIZE`.
pub const KMALLOC_MAX_CACHE_SIZE: usize = 1 << KMALLOC_SHIFT_HIGH;
/// `KMALLOC_MAX_SIZE`: 4 MiB, the largest page-allocator block.
pub const KMALLOC_MAX_SIZE: usize = PAGE_SIZE << MAX_PAGE_ORDER;
/// `ZERO_SIZE_PTR`: what `kmalloc(0)` returns.
pub const ZERO_SIZE_PTR: VirtAddr = VirtAddr(16);
/// Kinds of kmalloc caches (`NR_KMALLOC_TYPES` of Linux 6.6 built as distributions build
/// it: `CONFIG_ZONE_DMA` and `CONFIG_MEMCG_KMEM` on, `CONFIG_SLUB_TINY` and
/// `CONFIG_RANDOM_KMALLOC_CACHES` off).
pub const NR_KMALLOC_TYPES: usize = 4;
/// Most size classes a custom kmalloc table may hold.
pub const KMALLOC_MAX_CLASSES: usize = 32;
/// Cache slots per type in `kmalloc_caches`: the kernel's indices 0 ..= KMALLOC_SHIFT_HIGH,
/// or a custom table's classes in order.
pub(crate) const KMALLOC_SLOTS: usize = KMALLOC_MAX_CLASSES;
/// Request sizes are mapped to classes in steps of this many bytes (`size_index_elem()`).
const SIZE_STEP: usize = 8;
/// Entries of a `size_index[]` table: one per 8 bytes up to 8 KiB.
pub const SIZE_INDEX_LEN: usize = KMALLOC_MAX_CACHE_SIZE / SIZE_STEP;

const _: () = assert!(KMALLOC_SLOTS > KMALLOC_SHIFT_HIGH);

/// The line of `free_large_kmalloc()`'s `WARN_ON_ONCE(order == 0)`: mm/slab_common.c:953
/// in Linux 6.5 (DepSurf places the function at line 949 in Ubuntu's 6.5 build).
const FREE_LARGE_KMALLOC_WARN_LINE: u32 = 953;

/// Custom kmalloc size classes, ascending, each a multiple of 8 bytes, the largest
/// KMALLOC_MAX_CACHE_SIZE (requests above it go to the page allocator, as with the
/// kernel's classes). Stored inline: `mm` has no `alloc`.
#[derive(Copy, Clone, PartialEq, Eq)]
pub struct KmallocSizes {
    sizes: [u16; KMALLOC_MAX_CLASSES],
    len: u8,
}

/// Why a list of kmalloc sizes was refused.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum KmallocSizesError {
    /// No sizes.
    Empty,
    /// More than [`KMALLOC_MAX_CLASSES`].
    TooMany(usize),
    /// A size below 8 bytes or not a multiple of 8 (SLUB's objects hold an aligned free
    /// pointer).
    NotMultipleOf8(usize),
    /// A size above KMALLOC_MAX_CACHE_SIZE.
    TooLarge(usize),
    /// A size not larger than the one before it.
    NotAscending(usize, usize),
    /// The largest size is not KMALLOC_MAX_CACHE_SIZE.
    DoesNotReachMax(usize),
}

impl fmt::Display for KmallocSizesError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            KmallocSizesError::Empty => write!(f, "no kmalloc sizes given"),
            KmallocSizesError::TooMany(n) => {
                write!(f, "{n} kmalloc sizes: at most {KMALLOC_MAX_CLASSES}")
            }
            KmallocSizesError::NotMultipleOf8(s) => {
                write!(f, "kmalloc size {s}: each size must be at least 8 and a multiple of 8")
            }
            KmallocSizesError::TooLarge(s) => write!(
                f,
                "kmalloc size {s} is larger than KMALLOC_MAX_CACHE_SIZE ({KMALLOC_MAX_CACHE_SIZE}); larger requests go to the page allocator"
            ),
            KmallocSizesError::NotAscending(a, b) => {
                write!(f, "kmalloc sizes must ascend: {b} follows {a}")
            }
            KmallocSizesError::DoesNotReachMax(s) => write!(
                f,
                "the largest kmalloc size is {s}: it must be KMALLOC_MAX_CACHE_SIZE ({KMALLOC_MAX_CACHE_SIZE}), above which requests go to the page allocator"
            ),
        }
    }
}

impl core::error::Error for KmallocSizesError {}

impl KmallocSizes {
    /// Validate a list of class sizes.
    pub fn new(sizes: &[usize]) -> Result<KmallocSizes, KmallocSizesError> {
        let (&last, _) = sizes.split_last().ok_or(KmallocSizesError::Empty)?;
        if sizes.len() > KMALLOC_MAX_CLASSES {
            return Err(KmallocSizesError::TooMany(sizes.len()));
        }
        let mut table = KmallocSizes {
            sizes: [0; KMALLOC_MAX_CLASSES],
            len: 0,
        };
        let mut previous = 0;
        for &size in sizes {
            if size < SIZE_STEP || size % SIZE_STEP != 0 {
                return Err(KmallocSizesError::NotMultipleOf8(size));
            }
            if size > KMALLOC_MAX_CACHE_SIZE {
                return Err(KmallocSizesError::TooLarge(size));
            }
            if size <= previous {
                return Err(KmallocSizesError::NotAscending(previous, size));
            }
            previous = size;
            table.sizes[table.len as usize] = size as u16;
            table.len += 1;
        }
        if last != KMALLOC_MAX_CACHE_SIZE {
            return Err(KmallocSizesError::DoesNotReachMax(last));
        }
        Ok(table)
    }

    /// The class sizes, ascending.
    pub fn sizes(&self) -> impl Iterator<Item = usize> + '_ {
        self.sizes[..self.len as usize].iter().map(|&s| s as usize)
    }

    /// How many classes.
    pub fn len(&self) -> usize {
        self.len as usize
    }

    /// Always false: a table holds at least KMALLOC_MAX_CACHE_SIZE.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// `size_index[]` for these classes: the class slot of each 8-byte step of request
    /// size (entry `(size - 1) / 8`), as `setup_kmalloc_cache_index_table()` leaves the
    /// kernel's table for sizes up to 192.
    pub(crate) const fn size_index(&self) -> [u8; SIZE_INDEX_LEN] {
        let mut table = [0u8; SIZE_INDEX_LEN];
        let mut class = 0;
        let mut i = 0;
        while i < SIZE_INDEX_LEN {
            let request = (i + 1) * SIZE_STEP;
            while (self.sizes[class] as usize) < request {
                class += 1;
            }
            table[i] = class as u8;
            i += 1;
        }
        table
    }
}

impl fmt::Debug for KmallocSizes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.sizes()).finish()
    }
}

/// A kmalloc cache type (`enum kmalloc_cache_type`, Linux 6.6, in its order with
/// `CONFIG_ZONE_DMA` and `CONFIG_MEMCG_KMEM`: the order `create_kmalloc_caches()` makes
/// them in).
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum KmallocType {
    /// `kmalloc-*` (`KMALLOC_NORMAL`): only unaccounted objects.
    Normal = 0,
    /// `kmalloc-rcl-*` (`KMALLOC_RECLAIM`), for `__GFP_RECLAIMABLE`.
    Reclaim = 1,
    /// `dma-kmalloc-*` (`KMALLOC_DMA`), for `GFP_DMA`.
    Dma = 2,
    /// `kmalloc-cg-*` (`KMALLOC_CGROUP`), for `__GFP_ACCOUNT` (`GFP_KERNEL_ACCOUNT`):
    /// accounted, unreclaimable, non-DMA objects; the caches carry `SLAB_ACCOUNT`.
    Cgroup = 3,
}

/// `KMALLOC_NOT_NORMAL_BITS`: flags that take a request out of `KMALLOC_NORMAL`.
const KMALLOC_NOT_NORMAL_BITS: Gfp = Gfp::__GFP_RECLAIMABLE
    .union(Gfp::__GFP_DMA)
    .union(Gfp::__GFP_ACCOUNT);

impl KmallocType {
    /// Every type, in `enum kmalloc_cache_type` order.
    pub const ALL: [KmallocType; NR_KMALLOC_TYPES] = [
        KmallocType::Normal,
        KmallocType::Reclaim,
        KmallocType::Dma,
        KmallocType::Cgroup,
    ];

    /// `kmalloc_type()` (Linux 6.6, `include/linux/slab.h`): `KMALLOC_NORMAL` unless one
    /// of `KMALLOC_NOT_NORMAL_BITS` is set; then, in decreasing priority, `__GFP_DMA`,
    /// `__GFP_RECLAIMABLE`, `__GFP_ACCOUNT`.
    ///
    /// ```
    /// use kmemlab_mm::gfp::Gfp;
    /// use kmemlab_mm::slab::kmalloc::KmallocType;
    /// assert_eq!(KmallocType::of(Gfp::GFP_KERNEL_ACCOUNT), KmallocType::Cgroup);
    /// let both = Gfp::GFP_KERNEL_ACCOUNT | Gfp::__GFP_RECLAIMABLE;
    /// assert_eq!(KmallocType::of(both), KmallocType::Reclaim);
    /// ```
    #[inline]
    pub fn of(gfp: Gfp) -> KmallocType {
        if !gfp.intersects(KMALLOC_NOT_NORMAL_BITS) {
            KmallocType::Normal
        } else if gfp.contains(Gfp::__GFP_DMA) {
            KmallocType::Dma
        } else if gfp.contains(Gfp::__GFP_RECLAIMABLE) {
            KmallocType::Reclaim
        } else {
            KmallocType::Cgroup
        }
    }

    /// The cache flags `new_kmalloc_cache()` adds for this type.
    fn cache_flags(self) -> SlabFlags {
        match self {
            KmallocType::Normal => SlabFlags::empty(),
            KmallocType::Reclaim => SlabFlags::RECLAIM_ACCOUNT,
            KmallocType::Dma => SlabFlags::CACHE_DMA,
            KmallocType::Cgroup => SlabFlags::ACCOUNT,
        }
    }
}

/// `kmalloc_index()`: the class of a request of `size` bytes (1 ..= 8192): 1 is the
/// 96-byte class, 2 the 192-byte class, n ≥ 3 the 2^n-byte class.
#[inline]
pub const fn kmalloc_index(size: usize) -> usize {
    if size <= 8 {
        3
    } else if size > 64 && size <= 96 {
        1
    } else if size > 128 && size <= 192 {
        2
    } else {
        (usize::BITS - (size - 1).leading_zeros()) as usize
    }
}

/// `size_index[]` for the kernel's classes: the `kmalloc_index()` of every request size in
/// 8-byte steps up to KMALLOC_MAX_CACHE_SIZE. Linux 6.6's `kmalloc_slab()` looks requests
/// of up to 192 bytes up in its `size_index[24]` and takes `fls(size - 1)` above; a table
/// over the whole range gives the same class in one load.
///
/// ```
/// use kmemlab_mm::slab::kmalloc::{default_size_index, kmalloc_index};
/// let table = default_size_index();
/// assert!((1..=8192).all(|size| table[(size - 1) / 8] as usize == kmalloc_index(size)));
/// ```
pub const fn default_size_index() -> [u8; SIZE_INDEX_LEN] {
    let mut table = [0u8; SIZE_INDEX_LEN];
    let mut i = 0;
    while i < SIZE_INDEX_LEN {
        table[i] = kmalloc_index((i + 1) * SIZE_STEP) as u8;
        i += 1;
    }
    table
}

/// The object size of a class (`kmalloc_size()`).
pub const fn kmalloc_size(index: usize) -> usize {
    match index {
        1 => 96,
        2 => 192,
        i => 1 << i,
    }
}

/// `ARCH_KMALLOC_MINALIGN` on x86.
pub const ARCH_KMALLOC_MINALIGN: usize = 8;

/// A kmalloc cache's alignment (`create_boot_cache()`, Linux 6.12): at least the largest
/// power-of-two divisor of the size, so a power-of-two size is aligned to itself even when
/// slab_debug's red zones shift the objects (capped at a page, the most
/// `kmem_cache_create` accepts here: the 8 KiB class is page aligned).
///
/// ```
/// use kmemlab_mm::slab::kmalloc::kmalloc_align;
/// assert_eq!([8, 64, 96, 192, 4096, 8192].map(kmalloc_align), [8, 64, 32, 64, 4096, 4096]);
/// ```
pub const fn kmalloc_align(size: usize) -> usize {
    let divisor = 1 << size.trailing_zeros();
    let align = if divisor > ARCH_KMALLOC_MINALIGN {
        divisor
    } else {
        ARCH_KMALLOC_MINALIGN
    };
    if align < PAGE_SIZE {
        align
    } else {
        PAGE_SIZE
    }
}

/// The short size of each class index as `kmalloc_info[]` spells it (`INIT_KMALLOC_INFO`):
/// index 1 is 96, 2 is 192, n ≥ 3 is 2^n, whole KiB as `1k` … `8k`.
const SHORT_SIZES: [&str; 14] = [
    "", "96", "192", "8", "16", "32", "64", "128", "256", "512", "1k", "2k", "4k", "8k",
];

/// The cache name of a class (`kmalloc_info[idx].name[type]`): `kmalloc-8` … `kmalloc-8k`,
/// `kmalloc-rcl-*`, `dma-kmalloc-*`, `kmalloc-cg-*`.
fn kmalloc_name(kind: KmallocType, index: usize) -> crate::procfs::LineBuf {
    let mut name = crate::procfs::LineBuf::new();
    let _ = fmt::Write::write_fmt(
        &mut name,
        format_args!("{}{}", kmalloc_prefix(kind), SHORT_SIZES[index]),
    );
    name
}

/// The prefix of a kmalloc cache type's names (`KMALLOC_*_NAME` in `mm/slab_common.c`).
fn kmalloc_prefix(kind: KmallocType) -> &'static str {
    match kind {
        KmallocType::Normal => "kmalloc-",
        KmallocType::Reclaim => "kmalloc-rcl-",
        KmallocType::Dma => "dma-kmalloc-",
        KmallocType::Cgroup => "kmalloc-cg-",
    }
}

impl SlabGlobals {
    /// Have the kmalloc caches been created (`slab_state >= UP`)?
    pub(crate) fn kmalloc_ready(&self) -> bool {
        self.kmalloc_caches[0][self.kmalloc_slot(KMALLOC_MAX_CACHE_SIZE)].load(Relaxed) != 0
    }

    /// The `kmalloc_caches` slot serving `size` bytes (1 ..= KMALLOC_MAX_CACHE_SIZE): one
    /// load from `size_index[]` ([`default_size_index`] for the kernel's classes, the
    /// custom classes' table otherwise); `kmalloc_index()` for a size past the table.
    #[inline]
    pub(crate) fn kmalloc_slot(&self, size: usize) -> usize {
        match self.size_index.get(size.wrapping_sub(1) / SIZE_STEP) {
            Some(&slot) => slot as usize,
            None => kmalloc_index(size),
        }
    }
}

/// What `ksize`/`krealloc` found at an address.
enum KmallocObject<'a> {
    /// A slab object: its cache, and its slab's PFN.
    Slab(&'a KmemCache, Pfn),
    /// A large kmalloc block of this order.
    Large(u32),
}

impl<P: Platform> Mm<P> {
    /// `create_kmalloc_caches()`: each type's classes, 96 after 64 and 192 after 128 (or
    /// the custom classes in order), the types in `enum kmalloc_cache_type` order.
    pub(crate) fn create_kmalloc_caches(&self) -> Result<(), SlabError> {
        if let Some(custom) = self.slab.config.kmalloc_sizes {
            return self.create_custom_kmalloc_caches(&custom);
        }
        for kind in KmallocType::ALL {
            for i in KMALLOC_SHIFT_LOW..=KMALLOC_SHIFT_HIGH {
                self.new_kmalloc_cache(kind, i)?;
                if i == 6 {
                    self.new_kmalloc_cache(kind, 1)?;
                }
                if i == 7 {
                    self.new_kmalloc_cache(kind, 2)?;
                }
            }
        }
        Ok(())
    }

    /// Custom classes: slot `i` of each type holds the `i`th size, named as the kernel
    /// names its classes (`kmalloc-24`, `kmalloc-rcl-24`, `dma-kmalloc-24`,
    /// `kmalloc-cg-24`; `kmalloc-2k` for whole KiB).
    fn create_custom_kmalloc_caches(&self, sizes: &KmallocSizes) -> Result<(), SlabError> {
        for kind in KmallocType::ALL {
            for (slot, size) in sizes.sizes().enumerate() {
                let mut name = crate::procfs::LineBuf::new();
                let prefix = kmalloc_prefix(kind);
                let _ = if size % 1024 == 0 {
                    fmt::Write::write_fmt(&mut name, format_args!("{prefix}{}k", size / 1024))
                } else {
                    fmt::Write::write_fmt(&mut name, format_args!("{prefix}{size}"))
                };
                self.create_kmalloc_slot(kind, slot, name.as_str(), size)?;
            }
        }
        Ok(())
    }

    /// `new_kmalloc_cache()`.
    fn new_kmalloc_cache(&self, kind: KmallocType, index: usize) -> Result<(), SlabError> {
        let name = kmalloc_name(kind, index);
        self.create_kmalloc_slot(kind, index, name.as_str(), kmalloc_size(index))
    }

    /// Create one kmalloc cache and put it in `kmalloc_caches[kind][slot]`. With memcg
    /// kmem accounting off (`cgroup.memory=nokmem`: `mem_cgroup_kmem_disabled()`), the
    /// `KMALLOC_CGROUP` slot is the `KMALLOC_NORMAL` cache and no `kmalloc-cg-*` exists.
    fn create_kmalloc_slot(
        &self,
        kind: KmallocType,
        slot: usize,
        name: &str,
        size: usize,
    ) -> Result<(), SlabError> {
        let types = &self.slab.kmalloc_caches;
        if kind == KmallocType::Cgroup && !self.slab.config.memcg_kmem {
            let normal = types[KmallocType::Normal as usize][slot].load(Relaxed);
            types[kind as usize][slot].store(normal, Relaxed);
            return Ok(());
        }
        let flags = SlabFlags::KMALLOC | kind.cache_flags();
        let r = self.kmem_cache_create(name, size, kmalloc_align(size), flags, None)?;
        types[kind as usize][slot].store(r.0, Relaxed);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn index_follows_the_kernel_table() {
        let cases = [
            (1, 8),
            (8, 8),
            (9, 16),
            (16, 16),
            (17, 32),
            (33, 64),
            (64, 64),
            (65, 96),
            (96, 96),
            (97, 128),
            (128, 128),
            (129, 192),
            (192, 192),
            (193, 256),
            (257, 512),
            (513, 1024),
            (1025, 2048),
            (4097, 8192),
            (8192, 8192),
        ];
        for (size, class) in cases {
            assert_eq!(kmalloc_size(kmalloc_index(size)), class, "size {size}");
        }
        assert_eq!(KmallocType::of(Gfp::GFP_KERNEL), KmallocType::Normal);
        assert_eq!(
            KmallocType::of(Gfp::GFP_KERNEL | Gfp::__GFP_RECLAIMABLE),
            KmallocType::Reclaim
        );
        assert_eq!(
            KmallocType::of(Gfp::GFP_KERNEL | Gfp::GFP_DMA | Gfp::__GFP_RECLAIMABLE),
            KmallocType::Dma
        );
        assert_eq!(
            KmallocType::of(Gfp::GFP_KERNEL_ACCOUNT),
            KmallocType::Cgroup
        );
        assert_eq!(
            KmallocType::of(Gfp::GFP_KERNEL_ACCOUNT | Gfp::GFP_DMA),
            KmallocType::Dma
        );
        assert_eq!(
            KmallocType::of(Gfp::GFP_ATOMIC | Gfp::__GFP_ACCOUNT),
            KmallocType::Cgroup
        );
    }

    #[test]
    fn names_follow_kmalloc_info() {
        assert_eq!(
            kmalloc_name(KmallocType::Cgroup, 1).as_str(),
            "kmalloc-cg-96"
        );
        assert_eq!(
            kmalloc_name(KmallocType::Cgroup, 13).as_str(),
            "kmalloc-cg-8k"
        );
        assert_eq!(kmalloc_name(KmallocType::Dma, 3).as_str(), "dma-kmalloc-8");
        assert_eq!(
            kmalloc_name(KmallocType::Reclaim, 10).as_str(),
            "kmalloc-rcl-1k"
        );
        assert_eq!(kmalloc_name(KmallocType::Normal, 2).as_str(), "kmalloc-192");
    }
}

#[cfg(test)]
mod custom_sizes_tests {
    use super::*;

    #[test]
    fn custom_sizes_are_validated() {
        use KmallocSizesError::*;
        assert_eq!(KmallocSizes::new(&[]), Err(Empty));
        assert_eq!(KmallocSizes::new(&[4, 8192]), Err(NotMultipleOf8(4)));
        assert_eq!(KmallocSizes::new(&[12, 8192]), Err(NotMultipleOf8(12)));
        assert_eq!(KmallocSizes::new(&[16, 8, 8192]), Err(NotAscending(16, 8)));
        assert_eq!(KmallocSizes::new(&[8, 8, 8192]), Err(NotAscending(8, 8)));
        assert_eq!(KmallocSizes::new(&[8, 16384]), Err(TooLarge(16384)));
        assert_eq!(KmallocSizes::new(&[8, 4096]), Err(DoesNotReachMax(4096)));
        let mut many = [8192; 33];
        for (i, s) in many.iter_mut().enumerate().take(32) {
            *s = (i + 1) * 8;
        }
        assert_eq!(KmallocSizes::new(&many), Err(TooMany(33)));
        assert!(KmallocSizes::new(&[8192]).is_ok());
    }

    #[test]
    fn size_index_maps_each_request_to_the_smallest_class_that_holds_it() {
        let sizes = [24, 40, 1000, 8192];
        let k = KmallocSizes::new(&sizes).unwrap();
        let table = k.size_index();
        for request in 1..=KMALLOC_MAX_CACHE_SIZE {
            let slot = table[(request - 1) / SIZE_STEP] as usize;
            let want = sizes.iter().position(|&s| s >= request).unwrap();
            assert_eq!(slot, want, "request {request}");
        }
    }
}
