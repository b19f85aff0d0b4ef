//! The SLUB slab allocator (`mm/slub.c`, `mm/slab_common.c`, `mm/slab.h` of Linux 6.6;
//! the sheaves of 6.18/7.0 as a boot option).
//!
//! ## Where to start reading
//!
//! `kmalloc()` (`kmalloc/api.rs`) picks a size class ([`kmalloc`]) and calls
//! `slab_alloc()` (`slub/alloc.rs`): the lockless fast path on this CPU's slab, then
//! `__slab_alloc()`: CPU partial slabs and the node's partial list under `list_lock`
//! (`slub/partial.rs`), else `new_slab()` from the page allocator (`slub/new_slab.rs`).
//! `kfree()` finds the slab's `struct page` and calls `do_slab_free()` (`slub/free.rs`:
//! the fast path on the CPU slab, else `__slab_free()` on the slab's own freelist).
//! [`cache`] builds `struct kmem_cache` (`cache/create.rs`: `kmem_cache_create()`;
//! `cache/geometry.rs`: `calculate_sizes()`, `calculate_order()`; `cache/boot.rs`: the
//! boot caches of `kmem_cache_init()`); the state of the whole allocator is
//! [`SlabGlobals`], below.
//!
//! * [`cache`]: `struct kmem_cache` and friends, lookups, geometry, creation, bootstrap,
//!   shrink and destroy.
//! * [`slub`]: the allocation and free paths (`mod.rs`: free pointers, slab counters and
//!   the compare-exchanges; `alloc.rs`, `partial.rs`, `free.rs`, `new_slab.rs`; `api.rs`:
//!   `kmem_cache_alloc()` / `kmem_cache_free()`).
//! * [`kmalloc`]: size classes and types (`mod.rs`); the kmalloc family (`api.rs`).
//! * [`debug`]: `slab_debug`: owner tracking and object init (`mod.rs`), the checks
//!   (`check.rs`), the reports (`report.rs`), the debug caches' paths (`process.rs`).
//! * [`sheaf`]: the per-CPU sheaves and per-node barns of Linux 6.18/7.0, selectable at
//!   boot instead of the classic design below (`pcs.rs`, `refill.rs`, `barn.rs`,
//!   `setup.rs`).
//! * `bulk`, [`merge`], [`stats`] (`CONFIG_SLUB_STATS`), [`sysfs`], [`info`] and [`query`]
//!   (views for tools), [`check`] (the invariant checker), `validate` (checks of what is
//!   read back from RAM, and their reports).
//!
//! ## Lock order
//!
//! The kernel's (head of `mm/slub.c`, 6.6) is `slab_mutex` > `node->list_lock` >
//! `cpu_slab->lock` > `slab_lock(slab)` > `object_map_lock`. Here:
//!
//! 1. The CPU slab needs no lock: the machine delivers interrupts only at `irq_window()`,
//!    so the (freelist, tid) protocol of the fast paths is what keeps an interrupt that
//!    allocates on the same CPU out; a slab's freelist and counters change together with
//!    one compare-exchange (`slab_update_freelist()`), so there is no `slab_lock`.
//! 2. `s->cpu_sheaves->lock` (sheaves; a `local_trylock()`: an interrupt that finds it
//!    held goes to the slab) > `barn->lock`. Sheaves are refilled and flushed to slabs
//!    with the local lock dropped, as 6.18 does.
//! 3. `n->list_lock` (interrupts disabled) is never held across a call to the page
//!    allocator: new slabs are allocated and empty ones discarded with no node lock held.
//! 4. Leaves, taken under any of the above and taking nothing, each a spinlock with
//!    interrupts disabled held for a few loads and stores: the cache list (the kernel's
//!    `slab_mutex` guards it, held across a whole `kmem_cache_create()`; here the list is
//!    locked only to read or link), the constructor table, the call-site table of owner
//!    tracking (also taken under vmalloc's `vmap_area_lock`) and the alias table of merged
//!    caches.
//!
//! ## Which per-CPU design
//!
//! This follows the classic SLUB per-CPU design that Linux used from 2.6.22 to 6.17: each
//! CPU has a current slab whose free objects form a lockless freelist
//! (`kmem_cache_cpu.freelist`), guarded by a transaction id (`tid`) so that the fast paths
//! are a read, a pointer chase and one compare-exchange of (freelist, tid). An interrupt on
//! the same CPU that allocates or frees in between changes the tid, the compare-exchange
//! fails and the interrupted operation starts again: that protocol is what the simulator's
//! interrupt injection exercises. Per-CPU partial slabs and per-node partial lists under
//! `list_lock` sit behind it; frees from other CPUs go straight to the slab's own freelist
//! with a compare-exchange of (freelist, counters). The newer per-CPU object arrays
//! ("sheaves") trade that protocol for a magazine layer; the classic design is the one
//! every `/proc/slabinfo`, `slub_kunit` test and trace of the last fifteen years describes.
//!
//! All metadata lives in simulated memory: `kmem_cache` and `kmem_cache_node` structures
//! are objects of the `kmem_cache` and `kmem_cache_node` caches (bootstrapped as the
//! kernel does), `kmem_cache_cpu` lives in the per-CPU areas, and slab state lives in
//! `struct page`.
//!
//! ## Nothing read back from RAM is trusted
//!
//! Every access goes through the door ([`crate::mem`]); every cache pointer, node and
//! per-CPU pointer, freelist word, counter and list link read from RAM is checked before
//! it is followed (`validate.rs` holds the checks and the reports). What a corrupted value
//! makes the kernel do is reported as the kernel would report it — `Freepointer corrupt`
//! and friends with `slab_debug`, a page fault or general protection fault oops without
//! it, `list_del corruption`, `cache_from_obj`'s warning — and the operation fails; the
//! corrupted structure is isolated so that the machine can carry on. Constructors live in
//! a host-side table ([`SlabGlobals`]); RAM holds only their index.

mod bulk;
pub mod cache;
pub mod check;
pub mod debug;
pub mod info;
pub mod kmalloc;
pub mod merge;
pub mod query;
pub mod sheaf;
pub mod slub;
pub mod stats;
pub mod sysfs;
mod validate;

use core::fmt;
use core::sync::atomic::AtomicU64;
use core::sync::atomic::Ordering::Relaxed;

pub use cache::{KmemCache, KmemCacheRef};

use crate::addr::VirtAddr;
use crate::page_alloc::{AllocErrorWord, PageAllocError};
use crate::sync::SpinLockIrq;

bitflags::bitflags! {
    /// Cache flags (`slab_flags_t`, `include/linux/slab.h`).
    #[derive(Copy, Clone, Debug, PartialEq, Eq, Hash, Default)]
    pub struct SlabFlags: u32 {
        /// `F`: sanity checks on every alloc and free (`SLAB_CONSISTENCY_CHECKS`).
        const CONSISTENCY_CHECKS = 0x0000_0100;
        /// `Z`: red zones around each object (`SLAB_RED_ZONE`).
        const RED_ZONE = 0x0000_0400;
        /// `P`: poison free objects (`SLAB_POISON`).
        const POISON = 0x0000_0800;
        /// A kmalloc cache (`SLAB_KMALLOC`).
        const KMALLOC = 0x0000_1000;
        /// Align objects to cache lines (`SLAB_HWCACHE_ALIGN`).
        const HWCACHE_ALIGN = 0x0000_2000;
        /// Slabs from ZONE_DMA (`SLAB_CACHE_DMA`).
        const CACHE_DMA = 0x0000_4000;
        /// Slabs from ZONE_DMA32 (`SLAB_CACHE_DMA32`).
        const CACHE_DMA32 = 0x0000_8000;
        /// `U`: remember who allocated and freed each object (`SLAB_STORE_USER`).
        const STORE_USER = 0x0001_0000;
        /// Reclaimable objects: slabs counted as SReclaimable (`SLAB_RECLAIM_ACCOUNT`).
        const RECLAIM_ACCOUNT = 0x0002_0000;
        /// Objects charged to the allocating task's memory cgroup (`SLAB_ACCOUNT`, Linux
        /// 6.6 with `CONFIG_MEMCG_KMEM`): the `kmalloc-cg-*` caches and caches created
        /// with it; caches merge only with caches that agree on it (`SLAB_MERGE_SAME`).
        const ACCOUNT = 0x0400_0000;
        /// Internal: poison applies (no constructor) (`__OBJECT_POISON`).
        const OBJECT_POISON = 0x8000_0000;
    }
}

impl SlabFlags {
    /// The debug flags (`SLAB_DEBUG_FLAGS`).
    pub const DEBUG: SlabFlags = SlabFlags::CONSISTENCY_CHECKS
        .union(SlabFlags::RED_ZONE)
        .union(SlabFlags::POISON)
        .union(SlabFlags::STORE_USER);

    /// Parse flag names joined by `|`: `SLAB_HWCACHE_ALIGN|SLAB_RED_ZONE`, or `0`.
    pub fn parse_names(text: &str) -> Option<SlabFlags> {
        let mut flags = SlabFlags::empty();
        for part in text.split('|') {
            let part = part.trim();
            if part == "0" {
                continue;
            }
            let name = part.strip_prefix("SLAB_")?;
            flags |= SlabFlags::from_name(name)?;
        }
        Some(flags)
    }

    /// Parse the kernel's `slab_debug=` letters: `F` sanity checks, `Z` red zones, `P`
    /// poisoning, `U` user tracking, `-` none; an empty string means all four.
    pub fn parse_slab_debug(letters: &str) -> Option<SlabFlags> {
        if letters.is_empty() {
            return Some(SlabFlags::DEBUG);
        }
        let mut flags = SlabFlags::empty();
        for c in letters.chars() {
            flags |= match c.to_ascii_uppercase() {
                'F' => SlabFlags::CONSISTENCY_CHECKS,
                'Z' => SlabFlags::RED_ZONE,
                'P' => SlabFlags::POISON,
                'U' => SlabFlags::STORE_USER,
                '-' => SlabFlags::empty(),
                _ => return None,
            };
        }
        Some(flags)
    }
}

/// The slab configuration chosen at boot (kernel command line and config options).
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct SlabConfig {
    /// `slab_debug=` for every cache.
    pub debug: SlabFlags,
    /// `CONFIG_SLAB_FREELIST_HARDENED`: free pointers stored obfuscated.
    pub freelist_hardened: bool,
    /// `CONFIG_SLAB_FREELIST_RANDOM`: each new slab's freelist in random order.
    pub freelist_random: bool,
    /// Other kmalloc size classes than the kernel's (`None`: 8 … 8192 with 96 and 192).
    pub kmalloc_sizes: Option<kmalloc::KmallocSizes>,
    /// `CONFIG_SLUB_STATS`: per-cache, per-CPU event counters ([`stats`]).
    pub slub_stats: bool,
    /// `slab_nomerge`: never merge caches ([`merge`]).
    pub nomerge: bool,
    /// Memory-cgroup kernel memory accounting (`CONFIG_MEMCG_KMEM`, on unless booted with
    /// `cgroup.memory=nokmem`): the `kmalloc-cg-*` caches serve `__GFP_ACCOUNT`
    /// requests. Off, those requests go to `kmalloc-*` and no `kmalloc-cg-*` cache exists
    /// (`new_kmalloc_cache()` under `mem_cgroup_kmem_disabled()`), as on kernels before
    /// 5.14.
    pub memcg_kmem: bool,
    /// The per-CPU layer: the CPU slab (6.6) or sheaves (6.18/7.0, [`sheaf`]).
    pub percpu: sheaf::SlabPercpu,
}

impl Default for SlabConfig {
    /// As a distribution kernel: hardened and randomised freelists, no debugging, memcg
    /// kmem accounting on. (`init_on_alloc=` / `init_on_free=` are the page allocator's,
    /// in [`crate::BootConfig`].)
    fn default() -> Self {
        SlabConfig {
            debug: SlabFlags::empty(),
            freelist_hardened: true,
            freelist_random: true,
            kmalloc_sizes: None,
            slub_stats: false,
            nomerge: false,
            memcg_kmem: true,
            percpu: sheaf::SlabPercpu::CpuSlab,
        }
    }
}

/// Why a slab operation failed.
///
/// At most 16 bytes, with the tag in the first byte and every variant's data after it
/// (at most one 8-byte word, in the second half): `Result<VirtAddr, SlabError>`,
/// `Result<u64, SlabError>` and `Result<(), SlabError>` are then 16 bytes too (the value
/// in the second word, a tag value no error uses meaning `Ok`), where they were 88 bytes
/// for every `kmalloc()`, `kfree()`, `kmem_cache_alloc()` and `kmem_cache_free()`. So the
/// words are a one-byte [`Reason`], the caches are named by reference (the tools print
/// their names: [`Mm::slab_error_text`](crate::Mm::slab_error_text)), and a failed page
/// allocation leaves its per-zone report in
/// [`Mm::last_alloc_failure`](crate::Mm::last_alloc_failure).
///
/// rustc 1.95's Rust ABI still returns such a `Result` through memory the caller
/// provides: only a two-scalar layout (a `Result` whose error is one 8-byte integer) comes
/// back in rax:rdx. So the out-of-line bodies of `kmalloc()`, `kfree()`,
/// `kmem_cache_alloc()` and `kmem_cache_free()` answer in two plain words
/// (`SlabResultWords`, in registers), and the public functions, in line in their callers,
/// unpack the error into this enum on the failure path alone.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum SlabError {
    /// The page allocator could not give a slab.
    Alloc(PageAllocError),
    /// `kmalloc` larger than KMALLOC_MAX_SIZE.
    TooLarge(usize),
    /// `kcalloc`/`kmalloc_array` whose size overflows.
    Overflow(ArrayOverflow),
    /// A cache argument that is not a live cache.
    BadCache(u64),
    /// A bad `kmem_cache_create` argument.
    BadArgs(Reason),
    /// The cache still has objects (`kmem_cache_destroy` refuses, as the kernel does).
    /// The cache is the one the call was given (it is kept).
    ObjectsRemaining {
        /// Objects still allocated.
        objects: u64,
    },
    /// A pointer that is no slab object or large kmalloc.
    NotSlabObject(VirtAddr, Reason),
    /// An object freed to a cache it does not belong to (the cache named by the caller is
    /// the one the call was given).
    WrongCache {
        /// The object's real cache.
        actual: KmemCacheRef,
    },
    /// A free that the debug checks refused (the report went to the console).
    DebugCheck(VirtAddr, Reason),
    /// The per-CPU area has no room for another cache.
    NoPerCpuSpace,
    /// Too many caches.
    TooManyCaches,
    /// Allocator metadata read back from RAM was corrupted: the kernel's report (oops,
    /// `BUG`, `WARNING`) is on the console and the operation was abandoned.
    Corrupted {
        /// The address whose contents were found corrupted (or that the kernel faulted on).
        addr: u64,
        /// What was wrong.
        what: Reason,
    },
}

const _: () = assert!(core::mem::size_of::<SlabError>() <= 16);
const _: () = assert!(core::mem::size_of::<Result<VirtAddr, SlabError>>() <= 16);
const _: () = assert!(core::mem::size_of::<Result<u64, SlabError>>() <= 16);
const _: () = assert!(core::mem::size_of::<Result<(), SlabError>>() <= 16);

/// [`SlabError::WrongCache`] and [`SlabError::ObjectsRemaining`] refer to caches by
/// reference: printed on their own they give the kernel's words without the names (the
/// real cache's address instead); [`Mm::slab_error_text`](crate::Mm::slab_error_text)
/// names them as the kernel's warning does.
impl fmt::Display for SlabError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.fmt_with_names(f, None)
    }
}

impl SlabError {
    /// The message, with the caches named `names` (the cache the call was given, the
    /// cache the error names) where it names caches.
    fn fmt_with_names(
        &self,
        f: &mut fmt::Formatter<'_>,
        names: Option<(CacheName, CacheName)>,
    ) -> fmt::Result {
        match self {
            SlabError::Alloc(e) => fmt::Display::fmt(e, f),
            SlabError::TooLarge(n) => write!(
                f,
                "kmalloc of {n} bytes is larger than KMALLOC_MAX_SIZE ({} bytes)",
                kmalloc::KMALLOC_MAX_SIZE
            ),
            SlabError::Overflow(o) => write!(
                f,
                "{} x {} bytes overflows (kmalloc_array returns NULL)",
                o.n(),
                o.size()
            ),
            SlabError::BadCache(va) => write!(f, "{va:#x} is not a live kmem_cache"),
            SlabError::BadArgs(why) => write!(f, "kmem_cache_create: {why}"),
            SlabError::ObjectsRemaining { objects } => {
                write!(f, "kmem_cache_destroy")?;
                if let Some((cache, _)) = names {
                    write!(f, " {cache}")?;
                }
                write!(
                    f,
                    ": Slab cache still has objects ({objects} remaining); the cache is kept"
                )
            }
            SlabError::NotSlabObject(va, why) => write!(f, "{va}: {why}"),
            SlabError::WrongCache { actual } => match names {
                Some((cache, actual)) => write!(
                    f,
                    "cache_from_obj: Wrong slab cache. {cache} but object is from {actual}"
                ),
                None => write!(
                    f,
                    "cache_from_obj: Wrong slab cache: the object is from the kmem_cache at {:#x}",
                    actual.0
                ),
            },
            SlabError::DebugCheck(va, why) => write!(
                f,
                "{va}: {why} (slab_debug refused the free; the object is kept out of circulation)"
            ),
            SlabError::NoPerCpuSpace => {
                write!(f, "no room left in the per-CPU areas for another cache")
            }
            SlabError::TooManyCaches => write!(f, "too many slab caches"),
            SlabError::Corrupted { addr, what } => write!(
                f,
                "{addr:#x}: {what} (the kernel's report is on the console)"
            ),
        }
    }
}

impl core::error::Error for SlabError {}

// A reason fits the byte `SlabResultWords` gives it.
const _: () = assert!(Reason::ALL.len() <= 256);

impl Reason {
    /// The reason whose `as u8` is `index` (only ever one of theirs, from
    /// [`SlabResultWords::err`]).
    fn from_index(index: u8) -> Reason {
        Reason::ALL
            .get(usize::from(index))
            .copied()
            .unwrap_or(Reason::ALL[0])
    }
}

/// A slab result in two plain words, as the out-of-line bodies of `kmalloc()`, `kfree()`,
/// `kmem_cache_alloc()` and `kmem_cache_free()` answer it: a struct of two `u64`s comes
/// back in two registers (rax:rdx on x86-64), where rustc 1.95 returns a
/// `Result<VirtAddr, SlabError>` or `Result<(), SlabError>` (16 bytes, but no pair of
/// scalars) through memory the caller provides. The public functions, in line in their
/// callers, turn it back into the `Result` ([`SlabResultWords::unpack`]), the
/// [`SlabError`] on the cold path alone. Every variant keeps all of its data.
///
/// `head` 0 is `Ok(value)` (an address, or 0 for `()`); otherwise its low byte is the
/// variant's tag and the rest of the variant is in `head`'s upper bits and `value`.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub(crate) struct SlabResultWords {
    /// 0 for `Ok`; else the tag in bits 0-7, a [`Reason`] in bits 8-15 or an element size
    /// in bits 8-63, or the CPU of a page allocator's `SleepInAtomic` in bits 32-63.
    head: u64,
    /// The address, size, count or cache of the variant (the page allocator's own word
    /// for [`SlabError::Alloc`]).
    value: u64,
}

impl SlabResultWords {
    const ALLOC: u64 = 1;
    const TOO_LARGE: u64 = 2;
    const OVERFLOW: u64 = 3;
    const BAD_CACHE: u64 = 4;
    const BAD_ARGS: u64 = 5;
    const OBJECTS_REMAINING: u64 = 6;
    const NOT_SLAB_OBJECT: u64 = 7;
    const WRONG_CACHE: u64 = 8;
    const DEBUG_CHECK: u64 = 9;
    const NO_PER_CPU_SPACE: u64 = 10;
    const TOO_MANY_CACHES: u64 = 11;
    const CORRUPTED: u64 = 12;

    /// `Ok(value)`.
    #[inline(always)]
    pub(crate) fn ok(value: u64) -> SlabResultWords {
        SlabResultWords { head: 0, value }
    }

    /// The words of `result`: [`SlabResultWords::ok`], or [`SlabResultWords::err`] out of
    /// line.
    #[inline(always)]
    pub(crate) fn of(result: Result<u64, SlabError>) -> SlabResultWords {
        match result {
            Ok(value) => SlabResultWords::ok(value),
            Err(e) => SlabResultWords::err(e),
        }
    }

    /// The words of `Err(err)`.
    #[cold]
    #[inline(never)]
    pub(crate) fn err(err: SlabError) -> SlabResultWords {
        let reason = |tag: u64, why: Reason| tag | ((why as u64) << 8);
        let (head, value) = match err {
            SlabError::Alloc(e) => {
                let cpu = match e {
                    PageAllocError::SleepInAtomic(s) => u64::from(s.cpu) << 32,
                    _ => 0,
                };
                (Self::ALLOC | cpu, AllocErrorWord::pack(e).get())
            }
            SlabError::TooLarge(size) => (Self::TOO_LARGE, size as u64),
            SlabError::Overflow(o) => (Self::OVERFLOW | (o.size() << 8), o.n()),
            SlabError::BadCache(va) => (Self::BAD_CACHE, va),
            SlabError::BadArgs(why) => (reason(Self::BAD_ARGS, why), 0),
            SlabError::ObjectsRemaining { objects } => (Self::OBJECTS_REMAINING, objects),
            SlabError::NotSlabObject(va, why) => (reason(Self::NOT_SLAB_OBJECT, why), va.0),
            SlabError::WrongCache { actual } => (Self::WRONG_CACHE, actual.0),
            SlabError::DebugCheck(va, why) => (reason(Self::DEBUG_CHECK, why), va.0),
            SlabError::NoPerCpuSpace => (Self::NO_PER_CPU_SPACE, 0),
            SlabError::TooManyCaches => (Self::TOO_MANY_CACHES, 0),
            SlabError::Corrupted { addr, what } => (reason(Self::CORRUPTED, what), addr),
        };
        SlabResultWords { head, value }
    }

    /// The result these words hold: `Ok` in line, the error unpacked out of line.
    #[inline(always)]
    pub(crate) fn unpack(self) -> Result<u64, SlabError> {
        if self.head == 0 {
            Ok(self.value)
        } else {
            Err(self.unpack_err())
        }
    }

    /// The [`SlabError`] of words whose `head` is not 0.
    #[cold]
    #[inline(never)]
    fn unpack_err(self) -> SlabError {
        let (head, value) = (self.head, self.value);
        let why = || Reason::from_index((head >> 8) as u8);
        match head & 0xff {
            Self::ALLOC => {
                // `err` put a word of `AllocErrorWord::pack` here, never 0.
                let word = AllocErrorWord::from_word(value)
                    .unwrap_or(AllocErrorWord::pack(PageAllocError::HighMemHasNoAddress));
                SlabError::Alloc(word.unpack(|| (head >> 32) as u32))
            }
            Self::TOO_LARGE => SlabError::TooLarge(value as usize),
            Self::OVERFLOW => {
                SlabError::Overflow(ArrayOverflow::new(value as usize, (head >> 8) as usize))
            }
            Self::BAD_CACHE => SlabError::BadCache(value),
            Self::BAD_ARGS => SlabError::BadArgs(why()),
            Self::OBJECTS_REMAINING => SlabError::ObjectsRemaining { objects: value },
            Self::NOT_SLAB_OBJECT => SlabError::NotSlabObject(VirtAddr(value), why()),
            Self::WRONG_CACHE => SlabError::WrongCache {
                actual: KmemCacheRef(value),
            },
            Self::DEBUG_CHECK => SlabError::DebugCheck(VirtAddr(value), why()),
            Self::NO_PER_CPU_SPACE => SlabError::NoPerCpuSpace,
            Self::TOO_MANY_CACHES => SlabError::TooManyCaches,
            _ => SlabError::Corrupted {
                addr: value,
                what: why(),
            },
        }
    }
}

impl From<PageAllocError> for SlabError {
    fn from(e: PageAllocError) -> Self {
        SlabError::Alloc(e)
    }
}

/// The operands of a `kmalloc_array()` / `kcalloc()` whose product overflows, in 15
/// bytes of alignment 1 (the element count whole, the element size in 56 bits: sizes of
/// 64 PiB and more are kept as 2^56 - 1), so that [`SlabError`] stays 16 bytes.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct ArrayOverflow {
    /// The element size, little-endian, saturated at 2^56 - 1.
    size: [u8; 7],
    /// The element count, little-endian.
    n: [u8; 8],
}

impl ArrayOverflow {
    /// `n` elements of `size` bytes.
    pub fn new(n: usize, size: usize) -> ArrayOverflow {
        let size = (size as u64).min((1 << 56) - 1).to_le_bytes();
        ArrayOverflow {
            size: [
                size[0], size[1], size[2], size[3], size[4], size[5], size[6],
            ],
            n: (n as u64).to_le_bytes(),
        }
    }

    /// The element count.
    pub fn n(&self) -> u64 {
        u64::from_le_bytes(self.n)
    }

    /// The element size (saturated at 2^56 - 1).
    pub fn size(&self) -> u64 {
        let s = self.size;
        u64::from_le_bytes([s[0], s[1], s[2], s[3], s[4], s[5], s[6], 0])
    }
}

/// Defines [`Reason`]: each variant's words are its doc comment.
macro_rules! slab_reasons {
    ($($(#[$group:meta])* $name:ident => $text:literal,)*) => {
        /// The words of a slab error ([`SlabError::BadArgs`], `NotSlabObject`,
        /// `DebugCheck`, `Corrupted`): one byte where a `&'static str` is sixteen, so that
        /// a [`SlabError`] with an address and its reason is 16 bytes.
        #[derive(Copy, Clone, PartialEq, Eq)]
        pub enum Reason {
            $($(#[$group])* #[doc = $text] $name,)*
        }

        impl Reason {
            /// Every reason, in order: `ALL[r as usize] == r`.
            const ALL: &'static [Reason] = &[$(Reason::$name,)*];

            /// The words.
            pub const fn as_str(self) -> &'static str {
                match self {
                    $(Reason::$name => $text,)*
                }
            }
        }
    };
}

slab_reasons! {
    // kmem_cache_create() and the cache calls' arguments.
    NoName => "a cache needs a name",
    ObjectSizeOutOfRange => "object size must be 1 ..= 4 MiB",
    AlignNotPowerOfTwo => "alignment must be a power of two",
    AlignAbovePageSize => "alignment must be at most PAGE_SIZE",
    CtorObjectTooLarge => "a cache with a constructor holds objects of at most 8 KiB here",
    NameExists => "a cache of that name exists",
    NoOrderFits => "no slab order can hold the object",
    PermanentCache => "the kmalloc and boot caches are never destroyed",
    AllocatorOwnCache => "the kmem_cache and kmem_cache_node caches hold the allocator's own structures",
    SizeBeyondObject => "size must be 1 ..= the cache's object size",
    // Pointers that are no object to free.
    NotInSlabCacheFree => "not in a slab (kmem_cache_free of non-slab memory)",
    NotInSlabBulkFree => "not in a slab (kmem_cache_free_bulk of non-slab memory)",
    IntoObject => "not the start of an object (a pointer into the middle of one?)",
    NotObjectStart => "not the start of an object",
    NotDirectMap => "not a direct-map address (a vmalloc or stack address?)",
    NotKmallocMemory => "not memory that kmalloc returned",
    IntoLargeKmalloc => "inside a large kmalloc block, not at its start",
    LargeKmallocAlreadyFree => "large kmalloc block already free",
    DoubleFree => "double free (the object is already free: at the head of a freelist, or its slab has nothing in use)",
    // slab_debug's refusals.
    ObjectAlreadyFree => "Object already free",
    CorruptedWhileAllocated => "object corrupted while allocated",
    // Metadata read back from RAM.
    NewSlabsFailedChecks => "every new slab failed its checks",
    KmemCacheOutsideDirectMap => "a kmem_cache object outside the direct map",
    KmemCacheNodeOutsideDirectMap => "a kmem_cache_node object outside the direct map",
    NewSlabFreelistLeaves => "a new slab's freelist leaves it",
    SheafOutsideDirectMap => "a sheaf outside the direct map",
    CpuSlabNotKmemCacheCpu => "kmem_cache.cpu_slab is no kmem_cache_cpu",
    NodeNotKmemCacheNode => "kmem_cache.node is no kmem_cache_node object",
    FreelistPointerCorrupted => "freelist pointer corrupted",
    FreelistLeavesSlab => "freelist pointer leaves its slab (Freepointer corrupt)",
    FreelistCycle => "freelist visits an object twice (a cycle: double free?)",
    FreeObjectOutsideRam => "free object outside RAM",
    NodeSlabListLinks => "node slab list links corrupted",
    CpuPartialListUnended => "CPU partial list does not end",
    SlabCacheNotLive => "slab page's slab_cache is no live kmem_cache",
    SlabPfnOutsideMemMap => "slab PFN outside mem_map",
    ListedPageNotSlab => "listed page is not a slab of this cache",
    SlabCountersMisfit => "slab counters do not fit the slab's order",
    GeometryCorrupted => "kmem_cache geometry corrupted",
    LinkToForeignPage => "link to a page that is not a slab of this cache",
    SlabCountersCorrupted => "slab counters corrupted",
    NodePartialListCorrupted => "node partial list corrupted",
    SlabListUnended => "slab list does not end",
    LargeKmallocHeadCorrupted => "large kmalloc head page corrupted",
    SlabObjectCorrupted => "slab object corrupted",
    CpuSlabCorrupted => "kmem_cache.cpu_slab corrupted",
    NodePointerCorrupted => "kmem_cache_node pointer corrupted",
    CtorCorrupted => "kmem_cache.ctor corrupted",
    SlabMetadataOutsideRam => "slab metadata outside RAM",
    KreallocCopyOutsideRam => "krealloc copy outside RAM",
    KmemdupCopyOutsideRam => "kmemdup copy outside RAM",
    KstrdupCopyOutsideRam => "kstrdup copy outside RAM",
    BarnCorrupted => "kmem_cache_node.barn corrupted",
    CpuSheavesCorrupted => "kmem_cache.cpu_sheaves corrupted",
    SheafPointerCorrupted => "slab sheaf pointer corrupted",
    SheafObjectCorrupted => "slab sheaf object corrupted",
    SlabMemoryOutsideRam => "slab memory outside RAM",
    NotLiveKmemCache => "not a live kmem_cache",
    SlabLinkPastMemMap => "slab link past mem_map",
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The words, quoted, as the `&'static str` it replaces printed.
impl fmt::Debug for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", self.as_str())
    }
}

/// A [`SlabError`] with the caches it refers to named ([`Mm::slab_error_text`](crate::Mm::slab_error_text)).
pub struct SlabErrorText {
    error: SlabError,
    names: Option<(CacheName, CacheName)>,
}

impl fmt::Display for SlabErrorText {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.error.fmt_with_names(f, self.names)
    }
}

/// A cache name, stored inline (`kmem_cache.name`).
#[derive(Copy, Clone, PartialEq, Eq)]
pub struct CacheName {
    bytes: [u8; cache::NAME_LEN],
    len: u8,
}

impl CacheName {
    /// From a string, cut at `NAME_LEN` bytes on a character boundary.
    pub fn new(name: &str) -> CacheName {
        let mut len = name.len().min(cache::NAME_LEN);
        while !name.is_char_boundary(len) {
            len -= 1;
        }
        let mut bytes = [0; cache::NAME_LEN];
        bytes[..len].copy_from_slice(&name.as_bytes()[..len]);
        CacheName {
            bytes,
            len: len as u8,
        }
    }
    /// The name.
    pub fn as_str(&self) -> &str {
        core::str::from_utf8(&self.bytes[..self.len as usize]).unwrap_or("?")
    }
}

impl fmt::Display for CacheName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl fmt::Debug for CacheName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", self.as_str())
    }
}

/// Most caches a machine can have (the `slab_caches` list, as an array).
pub const MAX_CACHES: usize = 256;

/// A call site recorded by owner tracking (`struct track.addr`): a source location.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct CallSite {
    /// The file (or script).
    pub file: &'static str,
    /// The line.
    pub line: u32,
}

impl CallSite {
    /// Allocations made while booting.
    pub const BOOT: CallSite = CallSite {
        file: "boot",
        line: 0,
    };

    /// The caller of a `#[track_caller]` function.
    #[track_caller]
    pub fn caller() -> CallSite {
        let l = core::panic::Location::caller();
        CallSite {
            file: l.file(),
            line: l.line(),
        }
    }
}

impl fmt::Display for CallSite {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.file, self.line)
    }
}

/// The slab allocator's global state (what the kernel keeps in `slab_common.c` and
/// `slub.c` statics).
pub struct SlabGlobals {
    /// The configuration.
    pub(in crate::slab) config: SlabConfig,
    /// Pages held by slabs and large kmallocs.
    pub(in crate::slab) pages: SlabPages,
    /// The `kmem_cache` cache.
    pub(in crate::slab) kmem_cache: AtomicU64,
    /// The `kmem_cache_node` cache.
    pub(in crate::slab) kmem_cache_node: AtomicU64,
    /// `kmalloc_caches[type][index]`.
    pub(in crate::slab) kmalloc_caches:
        [[AtomicU64; kmalloc::KMALLOC_SLOTS]; kmalloc::NR_KMALLOC_TYPES],
    /// `size_index[]`: the kmalloc class of each request size, in 8-byte steps.
    pub(in crate::slab) size_index: [u8; kmalloc::SIZE_INDEX_LEN],
    /// `slab_caches`, newest first.
    pub(in crate::slab) caches: SpinLockIrq<CacheList>,
    /// Call sites seen by owner tracking, indexed by the number stored in a track.
    pub(in crate::slab) sites: SpinLockIrq<SiteTable>,
    /// The constructors, kept in the host: a `kmem_cache` in RAM holds only an index into
    /// this table, so a corrupted cache can never make the host call an arbitrary address.
    pub(in crate::slab) ctors: SpinLockIrq<CtorTable>,
    /// Names of merged caches ([`merge`]).
    pub(in crate::slab) aliases: SpinLockIrq<merge::AliasTable>,
    /// `free_large_kmalloc()`'s `WARN_ON_ONCE` has fired.
    pub(in crate::slab) large_kmalloc_warned: core::sync::atomic::AtomicBool,
    /// `TID_STEP`: the CPU count rounded up to a power of two (set by `kmem_cache_init`,
    /// so the fast paths add a constant as the kernel's `next_tid()` does).
    pub(in crate::slab) tid_step: u64,
    /// `local_trylock()` failures of the sheaves of caches destroyed since boot (the live
    /// ones count per CPU, in their `slub_percpu_sheaves`).
    pub(in crate::slab) pcs_trylock_fail: AtomicU64,
}

/// The host-side constructor table: slot `i` belongs to the cache at kernel address
/// `owners[i]` (0: free) and holds its constructor. A `kmem_cache` stores `i + 1`.
pub struct CtorTable {
    pub(in crate::slab) owners: [u64; MAX_CACHES],
    pub(in crate::slab) ctors: [Option<cache::Ctor>; MAX_CACHES],
}

/// The list of caches.
pub struct CacheList {
    pub(in crate::slab) vas: [u64; MAX_CACHES],
    pub(in crate::slab) len: usize,
}

/// Interned call sites.
pub struct SiteTable {
    pub(in crate::slab) sites: [Option<CallSite>; 1024],
    pub(in crate::slab) len: usize,
}

impl SlabGlobals {
    pub(crate) const fn new(config: SlabConfig) -> SlabGlobals {
        SlabGlobals {
            config,
            pages: SlabPages {
                reclaimable: AtomicU64::new(0),
                unreclaimable: AtomicU64::new(0),
            },
            kmem_cache: AtomicU64::new(0),
            kmem_cache_node: AtomicU64::new(0),
            kmalloc_caches: [const { [const { AtomicU64::new(0) }; kmalloc::KMALLOC_SLOTS] };
                kmalloc::NR_KMALLOC_TYPES],
            size_index: match &config.kmalloc_sizes {
                Some(sizes) => sizes.size_index(),
                None => kmalloc::default_size_index(),
            },
            caches: SpinLockIrq::new(CacheList {
                vas: [0; MAX_CACHES],
                len: 0,
            }),
            sites: SpinLockIrq::new(SiteTable {
                sites: [None; 1024],
                len: 0,
            }),
            ctors: SpinLockIrq::new(CtorTable {
                owners: [0; MAX_CACHES],
                ctors: [None; MAX_CACHES],
            }),
            aliases: SpinLockIrq::new(merge::AliasTable::new()),
            large_kmalloc_warned: core::sync::atomic::AtomicBool::new(false),
            tid_step: 1,
            pcs_trylock_fail: AtomicU64::new(0),
        }
    }
}

/// Pages in slabs and large kmallocs (`NR_SLAB_RECLAIMABLE_B`, `NR_SLAB_UNRECLAIMABLE_B`
/// of the node's `vm_stat`, counted in pages).
pub struct SlabPages {
    /// SReclaimable.
    pub(in crate::slab) reclaimable: AtomicU64,
    /// SUnreclaim.
    pub(in crate::slab) unreclaimable: AtomicU64,
}

impl SlabPages {
    /// SReclaimable: pages of slabs of `SLAB_RECLAIM_ACCOUNT` caches.
    pub fn reclaimable(&self) -> u64 {
        self.reclaimable.load(Relaxed)
    }

    /// SUnreclaim: pages of the other slabs and of large kmallocs.
    pub fn unreclaimable(&self) -> u64 {
        self.unreclaimable.load(Relaxed)
    }

    /// Slab: both.
    pub fn total(&self) -> u64 {
        self.reclaimable() + self.unreclaimable()
    }
}

impl<P: crate::Platform> crate::Mm<P> {
    /// The slab allocator's configuration.
    pub fn slab_config(&self) -> &SlabConfig {
        &self.slab.config
    }

    /// Pages held by slabs and large kmallocs.
    pub fn slab_pages(&self) -> &SlabPages {
        &self.slab.pages
    }

    /// The message of `error`, from a call that was given the cache `cache`, with the
    /// caches named as the kernel's warning names them: [`SlabError::WrongCache`] (`Wrong
    /// slab cache. <cache> but object is from <actual>`) and
    /// [`SlabError::ObjectsRemaining`] (`kmem_cache_destroy <cache>: ...`) carry no names
    /// (16 bytes leave no room for them). Any other error prints as it does on its own.
    pub fn slab_error_text(&self, cache: KmemCacheRef, error: SlabError) -> SlabErrorText {
        let name = |r: KmemCacheRef| {
            self.cache(r)
                .map(|s| s.name())
                .unwrap_or_else(|_| CacheName::new("?"))
        };
        let names = match error {
            SlabError::WrongCache { actual } => Some((name(cache), name(actual))),
            SlabError::ObjectsRemaining { .. } => Some((name(cache), name(cache))),
            _ => None,
        };
        SlabErrorText { error, names }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    extern crate std;
    use std::format;
    use std::string::ToString;

    #[test]
    fn array_overflow_keeps_its_operands() {
        let o = ArrayOverflow::new(usize::MAX / 2, 3);
        assert_eq!((o.n(), o.size()), (u64::MAX / 2, 3));
        let o = ArrayOverflow::new(1 << 40, (1 << 56) - 1);
        assert_eq!((o.n(), o.size()), (1 << 40, (1 << 56) - 1));
        // Element sizes of 64 PiB and more saturate.
        assert_eq!(ArrayOverflow::new(2, usize::MAX).size(), (1 << 56) - 1);
        assert_eq!(
            SlabError::Overflow(ArrayOverflow::new(4294967296, 4294967296)).to_string(),
            "4294967296 x 4294967296 bytes overflows (kmalloc_array returns NULL)"
        );
    }

    #[test]
    fn reasons_print_their_words() {
        let e = SlabError::NotSlabObject(VirtAddr(0x1234), Reason::NotDirectMap);
        assert_eq!(
            e.to_string(),
            "0x1234: not a direct-map address (a vmalloc or stack address?)"
        );
        assert_eq!(
            format!("{:?}", Reason::NameExists),
            "\"a cache of that name exists\""
        );
        assert_eq!(
            SlabError::BadArgs(Reason::AlignNotPowerOfTwo).to_string(),
            "kmem_cache_create: alignment must be a power of two"
        );
    }

    #[test]
    fn cache_errors_alone_print_without_names() {
        let e = SlabError::WrongCache {
            actual: KmemCacheRef(0xffff_8880_0105_f700),
        };
        assert_eq!(
            e.to_string(),
            "cache_from_obj: Wrong slab cache: the object is from the kmem_cache at 0xffff88800105f700"
        );
        assert_eq!(
            SlabError::ObjectsRemaining { objects: 3 }.to_string(),
            "kmem_cache_destroy: Slab cache still has objects (3 remaining); the cache is kept"
        );
    }

    /// Each hot result is 16 bytes: the error's tag byte leaves room for `Ok` (a tag
    /// value no error uses), with the value in the second word.
    #[test]
    fn results_use_the_tag_niche() {
        use core::mem::size_of;
        assert_eq!(size_of::<SlabError>(), 16);
        assert_eq!(size_of::<Result<VirtAddr, SlabError>>(), 16);
        assert_eq!(size_of::<Result<u64, SlabError>>(), 16);
        assert_eq!(size_of::<Result<(), SlabError>>(), 16);
        assert_eq!(size_of::<Result<KmemCacheRef, SlabError>>(), 16);
    }

    /// Every error the slab entry points can answer comes back from its two words as it
    /// went in, with the extreme values of each field, and so do `Ok` values.
    #[test]
    fn slab_errors_survive_their_words() {
        use crate::context::SleepInAtomic;
        use crate::gfp::{Gfp, GfpError};
        use crate::page_alloc::{AllocFailureSummary, FailReason};
        use core::mem::size_of;
        assert_eq!(size_of::<SlabResultWords>(), 16);
        let check = |err: SlabError| {
            assert_eq!(SlabResultWords::err(err).unpack(), Err(err), "{err:?}");
        };
        for value in [0, 1, 0x1_0000_0000, u64::MAX] {
            assert_eq!(SlabResultWords::ok(value).unpack(), Ok(value));
            assert_eq!(SlabResultWords::of(Ok(value)).unpack(), Ok(value));
            check(SlabError::TooLarge(value as usize));
            check(SlabError::BadCache(value));
            check(SlabError::ObjectsRemaining { objects: value });
            check(SlabError::WrongCache {
                actual: KmemCacheRef(value),
            });
            for n in [0, 1, u64::MAX] {
                for size in [0, 1, value.min((1 << 56) - 1)] {
                    check(SlabError::Overflow(ArrayOverflow::new(
                        n as usize,
                        size as usize,
                    )));
                }
            }
            for &why in Reason::ALL {
                check(SlabError::NotSlabObject(VirtAddr(value), why));
                check(SlabError::DebugCheck(VirtAddr(value), why));
                check(SlabError::Corrupted {
                    addr: value,
                    what: why,
                });
            }
        }
        for &why in Reason::ALL {
            check(SlabError::BadArgs(why));
        }
        check(SlabError::NoPerCpuSpace);
        check(SlabError::TooManyCaches);
        // The page allocator's errors, the CPU of SleepInAtomic included.
        check(SlabError::Alloc(PageAllocError::HighMemHasNoAddress));
        for order in [0, 11, u32::MAX] {
            check(SlabError::Alloc(PageAllocError::OrderTooLarge(order)));
        }
        for gfp in [
            Gfp::empty(),
            Gfp::GFP_KERNEL,
            Gfp::from_bits_retain(u32::MAX),
        ] {
            check(SlabError::Alloc(PageAllocError::BadGfp(
                GfpError::BadZoneCombination(gfp),
            )));
            check(SlabError::Alloc(PageAllocError::BadGfp(
                GfpError::BadMigrateType(gfp),
            )));
            for reason in [
                FailReason::CannotReclaim,
                FailReason::NoRetry,
                FailReason::CostlyOrder,
                FailReason::ReclaimExhausted,
                FailReason::NoFailExhausted,
                FailReason::NoZone,
            ] {
                for order in [0, 10, u8::MAX] {
                    check(SlabError::Alloc(PageAllocError::NoMemory(
                        AllocFailureSummary { gfp, order, reason },
                    )));
                }
            }
        }
        for (in_atomic, irqs_disabled) in
            [(false, false), (true, false), (false, true), (true, true)]
        {
            for preempt_count in [0, 1, u32::MAX] {
                for cpu in [0, 1, u32::MAX] {
                    check(SlabError::Alloc(PageAllocError::SleepInAtomic(
                        SleepInAtomic {
                            in_atomic,
                            irqs_disabled,
                            preempt_count,
                            cpu,
                        },
                    )));
                }
            }
        }
        // Every reason has the index its byte gives back.
        for (i, &why) in Reason::ALL.iter().enumerate() {
            assert_eq!(why as usize, i);
            assert_eq!(Reason::from_index(i as u8), why);
        }
    }
}
