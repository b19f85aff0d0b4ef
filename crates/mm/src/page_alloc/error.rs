//! The page allocator's errors and its failure report: why one zone could not serve a
//! request ([`ZoneVerdict`]), why the allocator gave up ([`AllocFailure`], what
//! `warn_alloc()` prints), and why an allocation or a free was refused ([`PageAllocError`],
//! [`FreeError`]).

use core::fmt;
use core::num::NonZeroU64;

use crate::addr::{Pfn, VirtAddr, MAX_PAGE_ORDER};
use crate::context::SleepInAtomic;
use crate::gfp::{Gfp, GfpError};

use super::{effective_mark, AllocFlags, Watermark, ZoneType, MAX_NR_ZONES};

/// Why one zone could not serve a request, for the failure report.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct ZoneVerdict {
    /// The zone.
    pub zone: ZoneType,
    /// The largest free order, if any.
    pub largest_order: Option<u8>,
    /// The low byte of the attempt's allocation flags: which watermark it checked and
    /// which reserves below it the request could use (kept small: the failure report
    /// travels inside every allocation error).
    pub alloc_flags: u8,
    /// Free pages at the time (`NR_FREE_PAGES`; pages of a zone fit 32 bits up to 16 TiB).
    pub free: u32,
    /// The watermark checked, in pages.
    pub wmark_pages: u32,
    /// The lowmem reserve held back from this request.
    pub reserve: u32,
}

impl ZoneVerdict {
    /// The attempt's allocation flags (their low byte: watermark and reserve access).
    pub fn flags(&self) -> AllocFlags {
        AllocFlags::from_bits_truncate(u32::from(self.alloc_flags))
    }

    /// Which watermark was checked.
    pub fn watermark(&self) -> Watermark {
        self.flags().watermark()
    }

    /// The floor the request could dig down to: the watermark less the reserves its flags
    /// grant (0 with `ALLOC_NO_WATERMARKS`).
    pub fn floor(&self) -> u32 {
        if self.flags().contains(AllocFlags::NO_WATERMARKS) {
            return 0;
        }
        effective_mark(u64::from(self.wmark_pages), self.flags()).max(0) as u32
    }

    /// Who may use the reserves below the watermark, and how much of them.
    fn reserve_rule(&self) -> &'static str {
        let f = self.flags();
        if f.contains(AllocFlags::OOM) {
            "an OOM victim (ALLOC_OOM): half"
        } else if f.contains(AllocFlags::MIN_RESERVE | AllocFlags::NON_BLOCK) {
            "__GFP_HIGH (half) and a non-blocking caller (a further quarter), as GFP_ATOMIC"
        } else if f.contains(AllocFlags::MIN_RESERVE) {
            "__GFP_HIGH: half"
        } else {
            "none"
        }
    }
}

/// The watermark part of a zone's verdict: which watermark, the reserves the request may
/// use below it, and the lowmem reserve it must leave.
impl fmt::Display for ZoneVerdict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let name = match self.watermark() {
            Watermark::Min => "min",
            Watermark::Low => "low",
            Watermark::High => "high",
        };
        let floor = self.floor();
        if floor < self.wmark_pages {
            write!(
                f,
                "watermark {name} {} less the reserves of {} = floor {floor}",
                self.wmark_pages,
                self.reserve_rule(),
            )?;
        } else if self.watermark() == Watermark::Min {
            write!(
                f,
                "watermark min {floor} (no access to the reserves below it)"
            )?;
        } else {
            write!(f, "watermark {name} {floor}")?;
        }
        write!(f, " + lowmem_reserve {}, ", self.reserve)
    }
}

/// Why the page allocator gave up.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum FailReason {
    /// A non-blocking request (no `__GFP_DIRECT_RECLAIM`): no reclaim, fail at once.
    CannotReclaim,
    /// `__GFP_NORETRY`: one round of reclaim only.
    NoRetry,
    /// An order above PAGE_ALLOC_COSTLY_ORDER without `__GFP_RETRY_MAYFAIL`.
    CostlyOrder,
    /// Reclaim stopped making progress (`MAX_RECLAIM_RETRIES`) and there is no OOM killer.
    ReclaimExhausted,
    /// `__GFP_NOFAIL` retried as long as retrying could change anything.
    NoFailExhausted,
    /// No populated zone is allowed for these flags.
    NoZone,
}

/// A word whose low byte is a tag, which is never 0.
fn tagged(word: u64) -> NonZeroU64 {
    NonZeroU64::new(word).unwrap_or(NonZeroU64::MAX)
}

impl FailReason {
    fn describe(self) -> &'static str {
        match self {
            FailReason::CannotReclaim => "the request may not sleep, so no direct reclaim was tried",
            FailReason::NoRetry => "__GFP_NORETRY: gave up after one round of reclaim",
            FailReason::CostlyOrder => {
                "costly order (> PAGE_ALLOC_COSTLY_ORDER 3) without __GFP_RETRY_MAYFAIL: no retries"
            }
            FailReason::ReclaimExhausted => {
                "reclaim made no progress after MAX_RECLAIM_RETRIES (16) rounds, and nothing can be OOM-killed"
            }
            FailReason::NoFailExhausted => {
                "__GFP_NOFAIL: retried until nothing was left to reclaim (the kernel would loop here for ever)"
            }
            FailReason::NoZone => "no populated zone is allowed for these flags",
        }
    }
}

/// A page allocation that failed for lack of memory, with every zone's verdict (the
/// facts `warn_alloc()` reports). Too big to travel in the error (88 bytes): the error
/// carries its [`AllocFailureSummary`], and the slow path that built it keeps it as the
/// page allocator's record of its last failure, [`Mm::last_alloc_failure`](crate::Mm::last_alloc_failure).
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct AllocFailure {
    /// The flags.
    pub gfp: Gfp,
    /// The order.
    pub order: u32,
    /// The preferred (highest allowed, populated) zone.
    pub preferred: Option<ZoneType>,
    /// Why allocation stopped.
    pub reason: FailReason,
    /// The last verdict of each zone tried, lowest zone first.
    pub zones: [Option<ZoneVerdict>; MAX_NR_ZONES],
    /// Pages reclaimed while trying.
    pub reclaimed: u64,
}

impl AllocFailure {
    /// What the error of this failure carries: flags, order and reason.
    pub fn summary(&self) -> AllocFailureSummary {
        AllocFailureSummary {
            gfp: self.gfp,
            // Failures are of orders up to MAX_PAGE_ORDER (larger ones are refused first).
            order: self.order as u8,
            reason: self.reason,
        }
    }
}

/// The summary, then each zone's verdict, highest zone first, and what reclaim got back.
impl fmt::Display for AllocFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.summary().fmt(f)?;
        for v in self.zones.iter().flatten().rev() {
            write!(f, "; {}: free {} pages, {}", v.zone, v.free, v)?;
            match v.largest_order.map(u32::from) {
                Some(o) if o >= self.order => write!(f, "largest free block order {o}")?,
                Some(o) => write!(
                    f,
                    "no free block of order {} (largest: order {o})",
                    self.order
                )?,
                None => write!(f, "no free block at all")?,
            }
        }
        if self.reclaimed > 0 {
            write!(f, "; {} pages reclaimed on the way", self.reclaimed)?;
        }
        Ok(())
    }
}

impl core::error::Error for AllocFailure {}

/// What [`PageAllocError::NoMemory`] says of a failed allocation: the flags, the order and
/// why the allocator gave up, in 8 bytes. The kernel's `alloc_pages()` returns NULL and
/// `warn_alloc()` puts the detail on the console; here the detail (each zone's verdict,
/// what reclaim got back) is the page allocator's record of its last failure
/// ([`Mm::last_alloc_failure`](crate::Mm::last_alloc_failure)), so that the error, and
/// `Result<&Page, PageAllocError>`, stay small ([`PageAllocError`]).
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct AllocFailureSummary {
    /// The flags.
    pub gfp: Gfp,
    /// The order (at most MAX_PAGE_ORDER).
    pub order: u8,
    /// Why allocation stopped.
    pub reason: FailReason,
}

/// The first part of the [`AllocFailure`] report: `page allocation failure: order:N,
/// mode:0x...(...): ` and why.
impl fmt::Display for AllocFailureSummary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "page allocation failure: order:{}, mode:{:?}: {}",
            self.order,
            self.gfp,
            self.reason.describe()
        )
    }
}

/// Why `alloc_pages` and friends returned no page.
///
/// 12 bytes, with its tag in the first byte and every variant's data after it:
/// `Result<&Page, PageAllocError>` is then 16 bytes (the page in the second word, a tag
/// value the error never uses meaning `Ok`), where it was 88 with the whole failure report
/// inside. rustc 1.95's Rust ABI still returns it through memory the caller provides:
/// only a two-scalar layout (a `Result` whose error is one 8-byte integer) comes back in
/// rax:rdx. So the out-of-line body of `alloc_pages()` answers the error in one word
/// (`AllocErrorWord`, in registers), and `alloc_pages()`, in line in its caller, unpacks
/// it into this enum on the failure path alone.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum PageAllocError {
    /// `order > MAX_PAGE_ORDER`.
    OrderTooLarge(u32),
    /// The GFP flags are invalid.
    BadGfp(GfpError),
    /// A blocking request in atomic context: the kernel's `might_sleep` splat.
    SleepInAtomic(SleepInAtomic),
    /// `__get_free_pages` with `__GFP_HIGHMEM`: a HighMem page has no permanent address.
    HighMemHasNoAddress,
    /// Out of memory (or too fragmented) for this request. The zones' verdicts are in
    /// [`Mm::last_alloc_failure`](crate::Mm::last_alloc_failure).
    NoMemory(AllocFailureSummary),
}

impl fmt::Display for PageAllocError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PageAllocError::OrderTooLarge(o) => write!(
                f,
                "order {o} is larger than MAX_PAGE_ORDER ({MAX_PAGE_ORDER}): WARN_ON_ONCE in __alloc_pages"
            ),
            PageAllocError::BadGfp(e) => e.fmt(f),
            PageAllocError::SleepInAtomic(s) => s.fmt(f),
            PageAllocError::HighMemHasNoAddress => write!(
                f,
                "__get_free_pages with __GFP_HIGHMEM: a HighMem page has no kernel address (VM_BUG_ON)"
            ),
            PageAllocError::NoMemory(summary) => summary.fmt(f),
        }
    }
}

impl core::error::Error for PageAllocError {}

impl From<GfpError> for PageAllocError {
    fn from(e: GfpError) -> Self {
        PageAllocError::BadGfp(e)
    }
}

/// Why a free was refused (each also reported as the kernel's `BUG: Bad page state`).
///
/// 16 bytes (tag first, a PFN or address in the second word), and so is `__free_pages()`'s
/// `Result<(), FreeError>` (it was 24). The out-of-line body of `__free_pages()` answers
/// it as two plain words (`FreeErrorWords`), which come back in registers, and
/// `__free_pages()`, in line in its caller, unpacks them into this enum on the failure
/// path alone.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum FreeError {
    /// The PFN is not RAM described by `mem_map` (`pfn_valid()` fails).
    InvalidPfn(Pfn),
    /// The address is not a direct-map address.
    NotDirectMapped(VirtAddr),
    /// The reference does not point into this machine's `mem_map`.
    ForeignPage,
    /// The page is reserved (boot memory, a hole, firmware).
    Reserved(Pfn),
    /// The page is already free (or was never the head of an allocation).
    AlreadyFree(Pfn),
    /// A tail page of a compound allocation.
    TailPage(Pfn),
    /// The order differs from the allocation's.
    WrongOrder {
        /// The page.
        pfn: Pfn,
        /// The order passed to the free (at most MAX_PAGE_ORDER: a larger one is
        /// [`FreeError::OrderTooLarge`]).
        freed: u8,
        /// The order it was allocated with.
        allocated: u32,
    },
    /// The page belongs to a slab: free it with `kfree`/`kmem_cache_free`.
    SlabPage(Pfn),
    /// `order > MAX_PAGE_ORDER`.
    OrderTooLarge(u32),
}

impl FreeError {
    /// The line `dump_page` prints after "page dumped because: ".
    pub fn reason(&self) -> &'static str {
        match self {
            FreeError::InvalidPfn(_) => "pfn not valid",
            FreeError::NotDirectMapped(_) => "address not in the direct map",
            FreeError::ForeignPage => "struct page not in this mem_map",
            FreeError::Reserved(_) => "PAGE_FLAGS_CHECK_AT_FREE flag(s) set",
            FreeError::AlreadyFree(_) => "VM_BUG_ON_PAGE(page_ref_count(page) == 0)",
            FreeError::TailPage(_) => "freeing a tail page",
            FreeError::WrongOrder { .. } => "freeing with the wrong order",
            FreeError::SlabPage(_) => "PAGE_FLAGS_CHECK_AT_FREE flag(s) set",
            FreeError::OrderTooLarge(_) => "order > MAX_PAGE_ORDER",
        }
    }
}

impl fmt::Display for FreeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FreeError::InvalidPfn(p) => write!(f, "pfn {p} is not valid RAM (pfn_valid() fails)"),
            FreeError::NotDirectMapped(v) => write!(f, "{v} is not a direct-map address (virt_to_page)"),
            FreeError::ForeignPage => write!(f, "the struct page is not in this machine's mem_map"),
            FreeError::Reserved(p) => write!(f, "BUG: Bad page state: pfn {p} is reserved"),
            FreeError::AlreadyFree(p) => write!(
                f,
                "BUG: Bad page state: pfn {p} has refcount 0: already free, or not the first page of an allocation"
            ),
            FreeError::TailPage(p) => write!(f, "BUG: Bad page state: pfn {p} is a tail page of a compound page"),
            FreeError::WrongOrder { pfn, freed, allocated } => write!(
                f,
                "BUG: Bad page state: pfn {pfn} freed with order {freed} but allocated with order {allocated}"
            ),
            FreeError::SlabPage(p) => write!(f, "BUG: Bad page state: pfn {p} belongs to a slab"),
            FreeError::OrderTooLarge(o) => write!(f, "order {o} is larger than MAX_PAGE_ORDER ({MAX_PAGE_ORDER})"),
        }
    }
}

impl core::error::Error for FreeError {}

/// [`PageAllocError`] in one word, as the out-of-line copies of `alloc_pages()` answer it:
/// `Result<&Page, AllocErrorWord>` is two scalars, and comes back in two registers
/// (rax:rdx on x86-64: the tag, then the page or this word) where rustc 1.95 returns
/// `Result<&Page, PageAllocError>` through memory. The public
/// [`Mm::alloc_pages`](crate::Mm::alloc_pages), in line in its caller, turns it back into
/// the [`PageAllocError`] on the cold path ([`AllocErrorWord::unpack`]).
///
/// The tag is the low byte (never 0); the variant's data follows it. Every variant keeps
/// all of its data but [`PageAllocError::SleepInAtomic`]'s CPU (a `u32` for which the
/// word, holding the preempt count, two flags and the tag, has no room): the caller that
/// unpacks the word runs on that CPU still (the allocation ran on the caller's CPU, and
/// returned), and names it, as the splat named it.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub(crate) struct AllocErrorWord(NonZeroU64);

impl AllocErrorWord {
    const ORDER_TOO_LARGE: u64 = 1;
    const BAD_ZONE_COMBINATION: u64 = 2;
    const BAD_MIGRATE_TYPE: u64 = 3;
    const SLEEP_IN_ATOMIC: u64 = 4;
    const HIGHMEM_HAS_NO_ADDRESS: u64 = 5;
    const NO_MEMORY: u64 = 6;

    /// The word itself (never 0), for a caller that carries it on in a wider packing
    /// (the slab allocator's `SlabErrorWords`).
    pub(crate) fn get(self) -> u64 {
        self.0.get()
    }

    /// The word [`AllocErrorWord::get`] gave, back (0, which it never gives, is `None`).
    pub(crate) fn from_word(word: u64) -> Option<AllocErrorWord> {
        NonZeroU64::new(word).map(AllocErrorWord)
    }

    /// The word of `err`: the tag in bits 0-7; a 32-bit value (an order, GFP flags, a
    /// preempt count) in bits 32-63; in bits 8-15 and 16-23 the order and the reason of
    /// [`PageAllocError::NoMemory`], in bits 8 and 9 `in_atomic` and `irqs_disabled` of
    /// [`PageAllocError::SleepInAtomic`].
    #[cold]
    #[inline(never)]
    pub(crate) fn pack(err: PageAllocError) -> AllocErrorWord {
        let (tag, value) = match err {
            PageAllocError::OrderTooLarge(order) => (Self::ORDER_TOO_LARGE, order),
            PageAllocError::BadGfp(GfpError::BadZoneCombination(gfp)) => {
                (Self::BAD_ZONE_COMBINATION, gfp.bits())
            }
            PageAllocError::BadGfp(GfpError::BadMigrateType(gfp)) => {
                (Self::BAD_MIGRATE_TYPE, gfp.bits())
            }
            PageAllocError::SleepInAtomic(s) => (
                Self::SLEEP_IN_ATOMIC
                    | (u64::from(s.in_atomic) << 8)
                    | (u64::from(s.irqs_disabled) << 9),
                s.preempt_count,
            ),
            PageAllocError::HighMemHasNoAddress => (Self::HIGHMEM_HAS_NO_ADDRESS, 0),
            PageAllocError::NoMemory(summary) => (
                Self::NO_MEMORY | (u64::from(summary.order) << 8) | ((summary.reason as u64) << 16),
                summary.gfp.bits(),
            ),
        };
        AllocErrorWord(tagged(tag | (u64::from(value) << 32)))
    }

    /// The [`PageAllocError`] this word holds; `cpu` names the CPU of a
    /// [`PageAllocError::SleepInAtomic`] (the caller's).
    pub(crate) fn unpack(self, cpu: impl FnOnce() -> u32) -> PageAllocError {
        let word = self.0.get();
        let value = (word >> 32) as u32;
        let byte = |shift: u32| (word >> shift) as u8;
        match word & 0xff {
            Self::ORDER_TOO_LARGE => PageAllocError::OrderTooLarge(value),
            Self::BAD_ZONE_COMBINATION => {
                PageAllocError::BadGfp(GfpError::BadZoneCombination(Gfp::from_bits_retain(value)))
            }
            Self::BAD_MIGRATE_TYPE => {
                PageAllocError::BadGfp(GfpError::BadMigrateType(Gfp::from_bits_retain(value)))
            }
            Self::SLEEP_IN_ATOMIC => PageAllocError::SleepInAtomic(SleepInAtomic {
                in_atomic: word & (1 << 8) != 0,
                irqs_disabled: word & (1 << 9) != 0,
                preempt_count: value,
                cpu: cpu(),
            }),
            Self::HIGHMEM_HAS_NO_ADDRESS => PageAllocError::HighMemHasNoAddress,
            _ => PageAllocError::NoMemory(AllocFailureSummary {
                gfp: Gfp::from_bits_retain(value),
                order: byte(8),
                reason: FailReason::from_index(byte(16)),
            }),
        }
    }
}

impl FailReason {
    /// The reason whose `as u8` is `index` (only ever one of theirs, from
    /// [`AllocErrorWord::pack`]).
    fn from_index(index: u8) -> FailReason {
        [
            FailReason::CannotReclaim,
            FailReason::NoRetry,
            FailReason::CostlyOrder,
            FailReason::ReclaimExhausted,
            FailReason::NoFailExhausted,
            FailReason::NoZone,
        ]
        .into_iter()
        .find(|r| *r as u8 == index)
        .unwrap_or(FailReason::NoZone)
    }
}

/// [`FreeError`] in two words, as the out-of-line copies of `__free_pages()` answer it:
/// `Result<(), FreeErrorWords>` is two scalars (`Ok` a zero first word) and comes back in
/// two registers (rax:rdx on x86-64), where rustc 1.95 returns `Result<(), FreeError>`
/// through memory. The public [`Mm::__free_pages`](crate::Mm::__free_pages), in line in
/// its caller, turns it back into the [`FreeError`] on the cold path
/// ([`FreeErrorWords::unpack`]). Every variant keeps all of its data.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub(super) struct FreeErrorWords {
    /// The tag in bits 0-7 (never 0); [`FreeError::WrongOrder`]'s `freed` in bits 8-15
    /// and `allocated` in bits 32-63.
    head: NonZeroU64,
    /// The PFN, address or order of the variant.
    value: u64,
}

impl FreeErrorWords {
    const INVALID_PFN: u64 = 1;
    const NOT_DIRECT_MAPPED: u64 = 2;
    const FOREIGN_PAGE: u64 = 3;
    const RESERVED: u64 = 4;
    const ALREADY_FREE: u64 = 5;
    const TAIL_PAGE: u64 = 6;
    const WRONG_ORDER: u64 = 7;
    const SLAB_PAGE: u64 = 8;
    const ORDER_TOO_LARGE: u64 = 9;

    /// The words of `err`.
    #[cold]
    #[inline(never)]
    pub(super) fn pack(err: FreeError) -> FreeErrorWords {
        let (head, value) = match err {
            FreeError::InvalidPfn(pfn) => (Self::INVALID_PFN, pfn.raw()),
            FreeError::NotDirectMapped(addr) => (Self::NOT_DIRECT_MAPPED, addr.0),
            FreeError::ForeignPage => (Self::FOREIGN_PAGE, 0),
            FreeError::Reserved(pfn) => (Self::RESERVED, pfn.raw()),
            FreeError::AlreadyFree(pfn) => (Self::ALREADY_FREE, pfn.raw()),
            FreeError::TailPage(pfn) => (Self::TAIL_PAGE, pfn.raw()),
            FreeError::WrongOrder {
                pfn,
                freed,
                allocated,
            } => (
                Self::WRONG_ORDER | (u64::from(freed) << 8) | (u64::from(allocated) << 32),
                pfn.raw(),
            ),
            FreeError::SlabPage(pfn) => (Self::SLAB_PAGE, pfn.raw()),
            FreeError::OrderTooLarge(order) => (Self::ORDER_TOO_LARGE, u64::from(order)),
        };
        FreeErrorWords {
            head: tagged(head),
            value,
        }
    }

    /// [`FreeErrorWords::unpack`] out of line, for the cold path of a caller.
    #[cold]
    #[inline(never)]
    pub(super) fn unpack_cold(self) -> FreeError {
        self.unpack()
    }

    /// The [`FreeError`] these words hold.
    pub(super) fn unpack(self) -> FreeError {
        let head = self.head.get();
        let pfn = Pfn(self.value);
        match head & 0xff {
            Self::INVALID_PFN => FreeError::InvalidPfn(pfn),
            Self::NOT_DIRECT_MAPPED => FreeError::NotDirectMapped(VirtAddr(self.value)),
            Self::FOREIGN_PAGE => FreeError::ForeignPage,
            Self::RESERVED => FreeError::Reserved(pfn),
            Self::ALREADY_FREE => FreeError::AlreadyFree(pfn),
            Self::TAIL_PAGE => FreeError::TailPage(pfn),
            Self::WRONG_ORDER => FreeError::WrongOrder {
                pfn,
                freed: (head >> 8) as u8,
                allocated: (head >> 32) as u32,
            },
            Self::SLAB_PAGE => FreeError::SlabPage(pfn),
            _ => FreeError::OrderTooLarge(self.value as u32),
        }
    }
}

// The hot API's results stay at 16 bytes or less (see PageAllocError: written and read
// through memory all the same, by rustc 1.95, when a function not in line returns them;
// the out-of-line bodies of `alloc_pages()` and `__free_pages()` answer `AllocErrorWord`
// and `FreeErrorWords` instead, in registers).
const _: () = assert!(core::mem::size_of::<AllocFailureSummary>() <= 8);
const _: () = assert!(core::mem::size_of::<PageAllocError>() <= 16);
const _: () = assert!(core::mem::size_of::<Result<&crate::Page, PageAllocError>>() <= 16);
const _: () = assert!(core::mem::size_of::<Result<(), PageAllocError>>() <= 16);
const _: () = assert!(core::mem::size_of::<Result<(), FreeError>>() <= 16);

#[cfg(test)]
mod tests {
    use super::*;

    /// The results of `alloc_pages()` and `__free_pages()` are 16 bytes: the error's tag
    /// byte leaves room for `Ok` (a tag value no error uses), the page in the second word.
    #[test]
    fn results_use_the_tag_niche() {
        use core::mem::size_of;
        assert_eq!(size_of::<AllocFailureSummary>(), 8);
        assert_eq!(size_of::<PageAllocError>(), 12);
        assert_eq!(size_of::<Result<&crate::Page, PageAllocError>>(), 16);
        assert_eq!(size_of::<Result<(), PageAllocError>>(), 12);
        assert_eq!(size_of::<FreeError>(), 16);
        assert_eq!(size_of::<Result<(), FreeError>>(), 16);
        assert_eq!(size_of::<Result<&crate::Page, AllocErrorWord>>(), 16);
        assert_eq!(size_of::<Result<(), FreeErrorWords>>(), 16);
    }

    /// Every error `alloc_pages()` can answer comes back from its word as it went in,
    /// with the extreme values of each field; the CPU of `SleepInAtomic` is the caller's.
    #[test]
    fn alloc_errors_survive_their_word() {
        let check = |err: PageAllocError| {
            let cpu = match err {
                PageAllocError::SleepInAtomic(s) => s.cpu,
                _ => 7,
            };
            let mut asked = false;
            let back = AllocErrorWord::pack(err).unpack(|| {
                asked = true;
                cpu
            });
            assert_eq!(back, err);
            assert_eq!(
                asked,
                matches!(err, PageAllocError::SleepInAtomic(_)),
                "{err:?}"
            );
        };
        check(PageAllocError::OrderTooLarge(11));
        check(PageAllocError::OrderTooLarge(u32::MAX));
        check(PageAllocError::HighMemHasNoAddress);
        for gfp in [
            Gfp::empty(),
            Gfp::GFP_KERNEL,
            Gfp::from_bits_retain(u32::MAX),
        ] {
            check(PageAllocError::BadGfp(GfpError::BadZoneCombination(gfp)));
            check(PageAllocError::BadGfp(GfpError::BadMigrateType(gfp)));
            for reason in [
                FailReason::CannotReclaim,
                FailReason::NoRetry,
                FailReason::CostlyOrder,
                FailReason::ReclaimExhausted,
                FailReason::NoFailExhausted,
                FailReason::NoZone,
            ] {
                for order in [0, MAX_PAGE_ORDER as u8, u8::MAX] {
                    check(PageAllocError::NoMemory(AllocFailureSummary {
                        gfp,
                        order,
                        reason,
                    }));
                }
            }
        }
        for (in_atomic, irqs_disabled) in
            [(false, false), (true, false), (false, true), (true, true)]
        {
            for preempt_count in [0, 1, 0x110000, u32::MAX] {
                for cpu in [0, 1, u32::MAX] {
                    check(PageAllocError::SleepInAtomic(SleepInAtomic {
                        in_atomic,
                        irqs_disabled,
                        preempt_count,
                        cpu,
                    }));
                }
            }
        }
    }

    /// Every error `__free_pages()` can answer comes back from its words as it went in.
    #[test]
    fn free_errors_survive_their_words() {
        let check = |err: FreeError| {
            assert_eq!(FreeErrorWords::pack(err).unpack(), err);
            assert_eq!(FreeErrorWords::pack(err).unpack_cold(), err);
        };
        check(FreeError::ForeignPage);
        for raw in [0, 1, 0x1_0000_0000, u64::MAX] {
            let pfn = Pfn(raw);
            check(FreeError::InvalidPfn(pfn));
            check(FreeError::NotDirectMapped(VirtAddr(raw)));
            check(FreeError::Reserved(pfn));
            check(FreeError::AlreadyFree(pfn));
            check(FreeError::TailPage(pfn));
            check(FreeError::SlabPage(pfn));
            check(FreeError::OrderTooLarge(raw as u32));
            for freed in [0, MAX_PAGE_ORDER as u8, u8::MAX] {
                for allocated in [0, 3, u32::MAX] {
                    check(FreeError::WrongOrder {
                        pfn,
                        freed,
                        allocated,
                    });
                }
            }
        }
    }
}
