//! What one trace line says: the CPU and context it ran in, and the allocator event.

use kmemlab_mm::{Context, Gfp};

/// The allocation site the kernel recorded (`call_site=`): a bare address (`%lx` on older
/// kernels) or a symbol interned in the reader's [`super::Symbols`] (`%pS` on newer ones).
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum CallSite {
    /// A raw kernel text address.
    Addr(u64),
    /// An interned symbolic name such as `getname_flags+0x4f/0x1f0`.
    Symbol(u32),
}

/// The execution context read from the flags column (`d`, `h`, `s`, `H`, `z`, `Z`, `b`).
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash)]
pub struct TraceContext {
    /// Process, softirq, hard IRQ or NMI.
    pub kind: Context,
    /// `H`: a hard interrupt that arrived while a softirq was being served.
    pub in_softirq: bool,
    /// `d` or `D`: interrupts were disabled.
    pub irqs_off: bool,
    /// `b` or `D`: bottom halves were disabled (`local_bh_disable`).
    pub bh_off: bool,
}

impl TraceContext {
    /// Plain process context with interrupts on (lines without a flags column).
    pub const PROCESS: TraceContext = TraceContext {
        kind: Context::Process,
        in_softirq: false,
        irqs_off: false,
        bh_off: false,
    };

    /// Is anything about this context atomic (a sleeping allocation would splat)?
    pub fn is_atomic(&self) -> bool {
        self.kind != Context::Process || self.irqs_off || self.bh_off
    }
}

/// Which tracepoint a line came from.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum EventName {
    /// `kmalloc`.
    Kmalloc,
    /// `kmalloc_node`.
    KmallocNode,
    /// `kfree`.
    Kfree,
    /// `kmem_cache_alloc`.
    KmemCacheAlloc,
    /// `kmem_cache_alloc_node`.
    KmemCacheAllocNode,
    /// `kmem_cache_free`.
    KmemCacheFree,
    /// `mm_page_alloc`.
    MmPageAlloc,
    /// `mm_page_free` (`mm_page_free_direct` on kernels before 3.3).
    MmPageFree,
    /// `mm_page_free_batched`.
    MmPageFreeBatched,
    /// `alloc_vmap_area`.
    AllocVmapArea,
    /// `free_vmap_area_noflush`.
    FreeVmapAreaNoflush,
    /// `purge_vmap_area_lazy`.
    PurgeVmapAreaLazy,
}

impl EventName {
    /// Every event the parser understands.
    pub const ALL: [EventName; 12] = [
        EventName::Kmalloc,
        EventName::KmallocNode,
        EventName::Kfree,
        EventName::KmemCacheAlloc,
        EventName::KmemCacheAllocNode,
        EventName::KmemCacheFree,
        EventName::MmPageAlloc,
        EventName::MmPageFree,
        EventName::MmPageFreeBatched,
        EventName::AllocVmapArea,
        EventName::FreeVmapAreaNoflush,
        EventName::PurgeVmapAreaLazy,
    ];

    /// The tracepoint's name as ftrace prints it.
    pub const fn as_str(self) -> &'static str {
        match self {
            EventName::Kmalloc => "kmalloc",
            EventName::KmallocNode => "kmalloc_node",
            EventName::Kfree => "kfree",
            EventName::KmemCacheAlloc => "kmem_cache_alloc",
            EventName::KmemCacheAllocNode => "kmem_cache_alloc_node",
            EventName::KmemCacheFree => "kmem_cache_free",
            EventName::MmPageAlloc => "mm_page_alloc",
            EventName::MmPageFree => "mm_page_free",
            EventName::MmPageFreeBatched => "mm_page_free_batched",
            EventName::AllocVmapArea => "alloc_vmap_area",
            EventName::FreeVmapAreaNoflush => "free_vmap_area_noflush",
            EventName::PurgeVmapAreaLazy => "purge_vmap_area_lazy",
        }
    }

    /// The event called `name`, if the parser knows it.
    pub fn from_name(name: &str) -> Option<EventName> {
        EventName::from_bytes(name.as_bytes())
    }

    /// The event called `name` (as bytes), if the parser knows it.
    #[inline]
    pub fn from_bytes(name: &[u8]) -> Option<EventName> {
        // One comparison of lengths per arm, bytes only where the length matches.
        Some(match name {
            b"kmem_cache_alloc" => EventName::KmemCacheAlloc,
            b"kmem_cache_free" => EventName::KmemCacheFree,
            b"kmalloc" => EventName::Kmalloc,
            b"kfree" => EventName::Kfree,
            b"mm_page_alloc" => EventName::MmPageAlloc,
            b"mm_page_free" | b"mm_page_free_direct" => EventName::MmPageFree,
            b"mm_page_free_batched" => EventName::MmPageFreeBatched,
            b"kmalloc_node" => EventName::KmallocNode,
            b"kmem_cache_alloc_node" => EventName::KmemCacheAllocNode,
            b"alloc_vmap_area" => EventName::AllocVmapArea,
            b"free_vmap_area_noflush" => EventName::FreeVmapAreaNoflush,
            b"purge_vmap_area_lazy" => EventName::PurgeVmapAreaLazy,
            _ => return None,
        })
    }

    /// One of the vmalloc tracepoints?
    pub const fn is_vmalloc(self) -> bool {
        matches!(
            self,
            EventName::AllocVmapArea
                | EventName::FreeVmapAreaNoflush
                | EventName::PurgeVmapAreaLazy
        )
    }

    /// Position in [`EventName::ALL`], for per-event counters.
    pub const fn index(self) -> usize {
        self as usize
    }
}

/// A slab allocation (`kmalloc`, `kmalloc_node`, `kmem_cache_alloc`, `..._node`).
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct SlabAlloc {
    /// Where the kernel allocated from.
    pub call_site: CallSite,
    /// The pointer returned (0 for a failed allocation).
    pub ptr: u64,
    /// Bytes asked for.
    pub bytes_req: u64,
    /// Bytes the allocator handed out (the object or class size).
    pub bytes_alloc: u64,
    /// The allocation's flags, translated to kmemlab's (Linux 6.6) bit values.
    pub gfp: Gfp,
    /// `node=`, where the line has one (`-1` is NUMA_NO_NODE).
    pub node: Option<i32>,
    /// `accounted=`, where the line has one.
    pub accounted: Option<bool>,
    /// `name=` of the cache, on kernels that print it at allocation (interned).
    pub cache_name: Option<u32>,
}

/// A slab free (`kfree`, `kmem_cache_free`).
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct SlabFree {
    /// Where the kernel freed from.
    pub call_site: CallSite,
    /// The pointer freed (0 for `kfree(NULL)`).
    pub ptr: u64,
    /// `name=` of the cache, on kernels that print it (interned).
    pub cache_name: Option<u32>,
}

/// The allocator event of one line.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum Event {
    /// `kmalloc` / `kmalloc_node`.
    Kmalloc(SlabAlloc),
    /// `kfree`.
    Kfree(SlabFree),
    /// `kmem_cache_alloc` / `kmem_cache_alloc_node`.
    CacheAlloc(SlabAlloc),
    /// `kmem_cache_free`.
    CacheFree(SlabFree),
    /// `mm_page_alloc`.
    PageAlloc {
        /// The traced machine's page frame number, `None` when the allocation failed
        /// (`page=(null)`). A plain `u64`, not [`kmemlab_mm::Pfn`]: it names a frame of
        /// the traced kernel, never one of the replaying machine.
        pfn: Option<u64>,
        /// The block's order.
        order: u32,
        /// The traced kernel's migrate type number.
        migratetype: u32,
        /// The allocation's flags.
        gfp: Gfp,
    },
    /// `mm_page_free` (order as traced) or `mm_page_free_batched` (order 0).
    PageFree {
        /// The traced machine's page frame number (a plain `u64`, as in `PageAlloc`).
        pfn: u64,
        /// The block's order.
        order: u32,
    },
    /// `alloc_vmap_area` (`include/trace/events/vmalloc.h`, Linux 5.11 and later).
    AllocVmapArea {
        /// Start of the area (`va_start:`, printed in decimal by the kernel's `%lu`).
        addr: u64,
        /// Bytes, the guard page included when the caller wanted one.
        size: u64,
        /// Alignment.
        align: u64,
        /// Start of the window the area had to fit in (`VMALLOC_START`, `MODULES_VADDR`, ...).
        vstart: u64,
        /// End of that window.
        vend: u64,
        /// Whether the allocation failed.
        failed: bool,
    },
    /// `free_vmap_area_noflush`.
    FreeVmapArea {
        /// Start of the area.
        addr: u64,
        /// Lazily freed pages outstanding, this area's included.
        nr_lazy: u64,
        /// The traced kernel's `lazy_max_pages()`.
        nr_lazy_max: u64,
    },
    /// `purge_vmap_area_lazy`.
    PurgeVmapAreas {
        /// Start of the purged range.
        start: u64,
        /// End of the purged range.
        end: u64,
        /// Areas purged.
        purged: u64,
    },
}

/// One parsed line.
///
/// Aligned to 16 bytes (its size, 112, is unchanged): an event is moved several times
/// between the parser and the replay (`Option`, `Result`, the batches of the parse
/// thread), 16 bytes at a time. perf showed those copies stalling in the parse thread:
/// a copy of the event's fields from 4 bytes into it loaded 16 bytes across two earlier
/// 16-byte stores, which the CPU cannot forward to the load. At 16-byte alignment the
/// compiler's copies line up with each other. Replay of the modern trace x30:
/// 0.60-0.70 s -> 0.57-0.68 s; of the shared trace x120: 0.200-0.208 -> 0.166-0.199 s.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
#[repr(align(16))]
pub struct TraceEvent {
    /// 1-based line number in the input.
    pub line: u64,
    /// The CPU the event ran on, as traced.
    pub cpu: u32,
    /// The task's pid.
    pub pid: u32,
    /// The context from the flags column.
    pub ctx: TraceContext,
    /// The timestamp in nanoseconds (a raw counter if the trace clock is one).
    pub timestamp_ns: u64,
    /// Which tracepoint.
    pub name: EventName,
    /// What happened.
    pub event: Event,
    /// The callchain `perf script` printed below the line (recorded with `-g`), an id in
    /// the reader's [`crate::callchain::Callchains`]; `None` without one.
    pub chain: Option<u32>,
}

impl TraceEvent {
    /// A slot's content before an event is read into it (the batches of
    /// `TraceReader::read_batch` are filled in place).
    pub(crate) const PLACEHOLDER: TraceEvent = TraceEvent {
        line: 0,
        cpu: 0,
        pid: 0,
        ctx: TraceContext::PROCESS,
        timestamp_ns: 0,
        name: EventName::MmPageFree,
        event: Event::PageFree { pfn: 0, order: 0 },
        chain: None,
    };
}
