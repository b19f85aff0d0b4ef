//! `struct page`: one descriptor per physical page frame, kept in the `mem_map` array
//! inside the RAM it describes (`include/linux/mm_types.h`, `include/linux/page-flags.h`).
//!
//! Ours is 40 bytes (Linux's is 64). Every field is an atomic accessed with relaxed
//! ordering, which compiles to plain loads and stores: shared `&Page` references are then
//! sound, and the locks that the kernel uses (zone lock, per-CPU interrupt disabling) still
//! decide who may change what. A page that is all zeroes is a tail page inside a free
//! block, which is what most of memory is after boot, so boot need not touch most of the
//! array.

use core::sync::atomic::{AtomicU32, AtomicU64, Ordering::Relaxed};

/// "No page" in the intrusive lists (a PFN that cannot exist).
pub const NIL: u32 = u32::MAX;

/// `PG_reserved`: never given to the page allocator (boot memory, holes, firmware).
pub const PG_RESERVED: u32 = 1 << 0;
/// `PageBuddy`: the head of a free block on a zone free list; `private` holds its order.
pub const PG_BUDDY: u32 = 1 << 1;
/// The head of a free block on a per-CPU list; `private` holds its order.
pub const PG_PCP: u32 = 1 << 2;
/// `PG_head`: the head of a compound (`__GFP_COMP`) allocation.
pub const PG_HEAD: u32 = 1 << 3;
/// A tail page of a compound allocation; `word` holds the head PFN (`compound_head`).
pub const PG_TAIL: u32 = 1 << 4;
/// `PG_slab`: the page belongs to a slab.
pub const PG_SLAB: u32 = 1 << 5;
/// The head of a large kmalloc block (the kernel's `PGTY_large_kmalloc` page type).
pub const PG_LARGE_KMALLOC: u32 = 1 << 6;
const MIGRATETYPE_SHIFT: u32 = 8;
const MIGRATETYPE_MASK: u32 = 0xf << MIGRATETYPE_SHIFT;

/// The descriptor of one physical page frame.
#[repr(C)]
#[derive(Default, zerocopy::FromBytes)]
pub struct Page {
    flags: AtomicU32,
    /// The order of a free block (buddy or per-CPU list) or of an allocation.
    private: AtomicU32,
    refcount: AtomicU32,
    mapcount: AtomicU32,
    /// Next page in a list, by PFN (`lru.next`).
    next: AtomicU32,
    /// Previous page in a list, by PFN (`lru.prev`).
    prev: AtomicU32,
    /// A word for the owner of the page: head PFN of a compound tail; a slab's freelist
    /// and counters (`slab->freelist` / `slab->counters`, packed so one compare-exchange
    /// updates both, as the kernel's `cmpxchg_double`).
    word: AtomicU64,
    /// The cache a slab page belongs to (`slab->slab_cache`), as its kernel address.
    slab_cache: AtomicU64,
}

const _: () = assert!(core::mem::size_of::<Page>() == 40);

impl Page {
    /// The all-zero descriptor of a page inside a free block.
    pub const fn zeroed() -> Page {
        Page {
            flags: AtomicU32::new(0),
            private: AtomicU32::new(0),
            refcount: AtomicU32::new(0),
            mapcount: AtomicU32::new(0),
            next: AtomicU32::new(0),
            prev: AtomicU32::new(0),
            word: AtomicU64::new(0),
            slab_cache: AtomicU64::new(0),
        }
    }

    /// All page flags.
    #[inline]
    pub fn flags(&self) -> u32 {
        self.flags.load(Relaxed)
    }
    /// Does the page have every bit of `flag`?
    #[inline]
    pub fn test(&self, flag: u32) -> bool {
        self.flags() & flag == flag
    }
    #[inline]
    pub(crate) fn set_flags(&self, flags: u32) {
        self.flags.store(flags, Relaxed)
    }
    #[inline]
    pub(crate) fn set(&self, flag: u32) {
        self.set_flags(self.flags() | flag)
    }
    /// `PageReserved()`.
    #[inline]
    pub fn is_reserved(&self) -> bool {
        self.test(PG_RESERVED)
    }
    /// `PageBuddy()`.
    #[inline]
    pub fn is_buddy(&self) -> bool {
        self.test(PG_BUDDY)
    }
    /// `PageSlab()`.
    #[inline]
    pub fn is_slab(&self) -> bool {
        self.test(PG_SLAB)
    }
    /// `PageHead()`.
    #[inline]
    pub fn is_head(&self) -> bool {
        self.test(PG_HEAD)
    }
    /// `PageTail()`.
    #[inline]
    pub fn is_tail(&self) -> bool {
        self.test(PG_TAIL)
    }
    /// The order stored in `page->private` by the buddy allocator.
    #[inline]
    pub fn order(&self) -> u32 {
        self.private.load(Relaxed)
    }
    #[inline]
    pub(crate) fn set_order(&self, order: u32) {
        self.private.store(order, Relaxed)
    }
    /// `page_ref_count()`.
    #[inline]
    pub fn refcount(&self) -> u32 {
        self.refcount.load(Relaxed)
    }
    #[inline]
    pub(crate) fn set_refcount(&self, n: u32) {
        self.refcount.store(n, Relaxed)
    }
    /// `put_page_testzero()` for the only reference: 1 → 0 atomically; false, with nothing
    /// changed, for any other count ([`Page::put_ref`] drops one of those).
    #[inline]
    pub(crate) fn put_testzero(&self) -> bool {
        self.refcount
            .compare_exchange(1, 0, core::sync::atomic::Ordering::AcqRel, Relaxed)
            .is_ok()
    }
    /// `put_page_testzero()` for any count: drop one reference atomically and answer the
    /// count left, or `None` (nothing dropped) when there was none. The count is the
    /// kernel's `atomic_t` read unsigned: 0xffffffff (-1) drops to 0xfffffffe, as
    /// `page_ref_dec_and_test()` takes -1 to -2.
    #[inline]
    pub(crate) fn put_ref(&self) -> Option<u32> {
        self.refcount
            .fetch_update(
                core::sync::atomic::Ordering::AcqRel,
                core::sync::atomic::Ordering::Acquire,
                |n| n.checked_sub(1),
            )
            .ok()
            .map(|n| n - 1)
    }
    /// `page_mapcount()`.
    #[inline]
    pub fn mapcount(&self) -> u32 {
        self.mapcount.load(Relaxed)
    }
    /// The migrate type remembered by a per-CPU list page (`get_pcppage_migratetype`).
    #[inline]
    pub(crate) fn pcp_migratetype(&self) -> u32 {
        (self.flags() & MIGRATETYPE_MASK) >> MIGRATETYPE_SHIFT
    }
    #[inline]
    pub(crate) fn set_pcp_migratetype(&self, mt: u32) {
        self.set_flags((self.flags() & !MIGRATETYPE_MASK) | (mt << MIGRATETYPE_SHIFT))
    }
    /// `flags` with the migrate type `mt` in its field: what [`Page::set_flags`] then
    /// [`Page::set_pcp_migratetype`] leave, in one store.
    #[inline]
    pub(crate) fn set_flags_mt(&self, flags: u32, mt: u32) {
        self.set_flags((flags & !MIGRATETYPE_MASK) | (mt << MIGRATETYPE_SHIFT))
    }
    #[inline]
    pub(crate) fn next(&self) -> u32 {
        self.next.load(Relaxed)
    }
    #[inline]
    pub(crate) fn prev(&self) -> u32 {
        self.prev.load(Relaxed)
    }
    /// `lru.next` as an atomic, for the list code.
    #[inline]
    pub(crate) fn next_atomic(&self) -> &AtomicU32 {
        &self.next
    }
    /// `lru.prev` as an atomic, for the list code.
    #[inline]
    pub(crate) fn prev_atomic(&self) -> &AtomicU32 {
        &self.prev
    }
    #[inline]
    pub(crate) fn set_next(&self, pfn: u32) {
        self.next.store(pfn, Relaxed)
    }
    #[inline]
    pub(crate) fn set_prev(&self, pfn: u32) {
        self.prev.store(pfn, Relaxed)
    }
    /// The owner's word (compound head PFN of a tail page).
    #[inline]
    pub fn word(&self) -> u64 {
        self.word.load(Relaxed)
    }
    #[inline]
    pub(crate) fn set_word(&self, w: u64) {
        self.word.store(w, Relaxed)
    }
    /// The owner's word as an atomic, for compare-exchange.
    #[inline]
    pub(crate) fn word_atomic(&self) -> &AtomicU64 {
        &self.word
    }
    /// `slab->slab_cache`.
    #[inline]
    pub fn slab_cache(&self) -> u64 {
        self.slab_cache.load(Relaxed)
    }
    #[inline]
    pub(crate) fn set_slab_cache(&self, va: u64) {
        self.slab_cache.store(va, Relaxed)
    }
    /// Reset to the all-zero state of a page inside a free block.
    #[inline]
    pub(crate) fn reset(&self) {
        self.set_flags(0);
        self.set_order(0);
        self.set_refcount(0);
        self.set_next(0);
        self.set_prev(0);
        self.set_word(0);
        self.set_slab_cache(0);
    }
    /// Clear what an owner keeps in the descriptor (a compound head's PFN, a slab's
    /// freelist and cache): [`Page::reset`] but for the flags, order, refcount and list
    /// links, which the free path sets itself.
    #[inline]
    pub(crate) fn reset_owner(&self) {
        self.set_word(0);
        self.set_slab_cache(0);
    }
    /// Is the page in the all-zero state of a page inside a block (free or allocated)?
    #[inline]
    pub(crate) fn is_blank(&self) -> bool {
        self.flags() == 0 && self.refcount() == 0 && self.order() == 0 && self.word() == 0
    }
}

/// Names of the flags a page carries, for `dump_page`-style reports.
pub fn flag_names(flags: u32) -> impl Iterator<Item = &'static str> {
    [
        (PG_RESERVED, "reserved"),
        (PG_BUDDY, "buddy"),
        (PG_PCP, "pcp"),
        (PG_HEAD, "head"),
        (PG_TAIL, "tail"),
        (PG_SLAB, "slab"),
        (PG_LARGE_KMALLOC, "large_kmalloc"),
    ]
    .into_iter()
    .filter(move |(f, _)| flags & f != 0)
    .map(|(_, n)| n)
}
