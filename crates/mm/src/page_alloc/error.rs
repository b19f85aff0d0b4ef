//! The page allocator's errors and its failure report: why one zone could not serve a
//! request ([`ZoneVerdict`]), why the allocator gave up ([`AllocFailure`], what
//! `warn_alloc()` prints), and why an allocation or a free was refused ([`PageAllocError`],
//! [`FreeError`]).

use core::fmt;

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
/// rax:rdx. What the size buys is 16 bytes written and read per call, not 88.
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
/// `Result<(), FreeError>` (it was 24).
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

// The hot API's results stay at 16 bytes or less (see PageAllocError: written and read
// through memory all the same, by rustc 1.95).
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
    }
}
