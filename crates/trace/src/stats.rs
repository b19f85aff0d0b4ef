//! The numbers a replay collects: `perf kmem stat`'s (from the trace), and kmemlab's own
//! (from the replayed machine).
//!
//! Sums of traced sizes are `u128`: each size the parser accepts is at most
//! [`super::parse::MAX_TRACED_SIZE`] (2^57), so no trace of fewer than 2^64 lines can
//! carry them past 2^121, and a total is exact whatever the trace holds.

use serde::Serialize;

/// `perf kmem stat`'s slab summary, from the traced kernel's numbers.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct SlabSummary {
    /// `Total bytes requested` (`bytes_req` of every slab allocation event).
    pub total_requested: u128,
    /// `Total bytes allocated` (`bytes_alloc` of every slab allocation event).
    pub total_allocated: u128,
    /// `Total bytes freed`: `bytes_alloc` of each freed pointer that was seen allocated.
    pub total_freed: u128,
    /// Slab allocation events (`kmalloc*`, `kmem_cache_alloc*`), failed ones included.
    pub nr_allocs: u64,
    /// Slab free events (`kfree`, `kmem_cache_free`), NULL frees included.
    pub nr_frees: u64,
    /// perf's `Cross CPU allocations`: `_node` allocations whose node is not the CPU's
    /// (node 0 here: the machine has one node).
    pub nr_cross_allocs: u64,
}

impl SlabSummary {
    /// `Net total bytes allocated`, printed by perf only when positive.
    pub fn net_allocated(&self) -> Option<u128> {
        (self.total_allocated > self.total_freed).then(|| self.total_allocated - self.total_freed)
    }

    /// `Total bytes wasted on internal fragmentation`.
    pub fn wasted(&self) -> u128 {
        self.total_allocated.saturating_sub(self.total_requested)
    }

    /// `Internal fragmentation`, in percent.
    pub fn fragmentation(&self) -> f64 {
        fragmentation(self.total_requested, self.total_allocated)
    }
}

/// perf's `fragmentation()`: the share of allocated bytes not requested, in percent.
pub fn fragmentation(requested: u128, allocated: u128) -> f64 {
    if allocated == 0 {
        0.0
    } else {
        100.0 - 100.0 * requested as f64 / allocated as f64
    }
}

/// One row of a per-call-site, per-pointer or per-cache table (perf's `alloc_stat`).
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct AllocRow {
    /// The call site (`0xc104de4f` or `symbol+off/len`), pointer (`0xffff...`) or cache
    /// name.
    pub name: String,
    /// The pointer, in the per-pointer table (0 elsewhere).
    #[serde(skip_serializing_if = "is_zero")]
    pub ptr: u64,
    /// The call site of the pointer's last allocation, in the per-pointer table.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub site: String,
    /// Bytes allocated.
    pub bytes_alloc: u128,
    /// Bytes requested.
    pub bytes_req: u128,
    /// Allocations.
    pub hit: u64,
    /// Objects freed on another CPU than the one that allocated them.
    pub pingpong: u64,
    /// The commonest callchains of a call site's allocations (`perf script -g`).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub stacks: Vec<Stack>,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

/// One callchain of a call site's allocations and how many had it.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Stack {
    /// Allocations with this chain.
    pub hits: u64,
    /// The frames, innermost first, as `perf script` printed them (`ADDRESS SYMBOL`).
    pub frames: Vec<String>,
}

impl AllocRow {
    /// Bytes allocated but not requested.
    pub fn waste(&self) -> u128 {
        self.bytes_alloc.saturating_sub(self.bytes_req)
    }

    /// perf's `Frag` column.
    pub fn fragmentation(&self) -> f64 {
        fragmentation(self.bytes_req, self.bytes_alloc)
    }
}

/// Sort rows by waste, most first (then hits, then name, so the order is deterministic).
pub fn sort_by_waste(rows: &mut [AllocRow]) {
    rows.sort_by(|a, b| {
        b.waste()
            .cmp(&a.waste())
            .then(b.hit.cmp(&a.hit))
            .then(a.name.cmp(&b.name))
    });
}

/// Migrate-type columns of `perf kmem --page`.
pub const PERF_MIGRATE_TYPES: usize = 5;
/// Orders in `perf kmem --page`'s table.
pub const PERF_ORDERS: usize = 11;

/// `perf kmem stat --page`'s summary, from the traced kernel's events.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct PageSummary {
    /// `mm_page_alloc` events.
    pub nr_allocs: u64,
    /// Bytes of them (4 KiB pages).
    pub alloc_bytes: u128,
    /// `mm_page_free` / `mm_page_free_batched` events.
    pub nr_frees: u64,
    /// Bytes of them.
    pub free_bytes: u128,
    /// Frees of pages not seen allocated.
    pub nr_nomatch: u64,
    /// Bytes of them.
    pub nomatch_bytes: u128,
    /// Failed allocations (`page=(null)`).
    pub nr_fails: u64,
    /// Bytes of them.
    pub fail_bytes: u128,
    /// Successful allocations per order and traced migrate type (perf's columns:
    /// Unmovable, Reclaimable, Movable, Reserved, CMA/Isolated).
    pub order_stats: [[u64; PERF_MIGRATE_TYPES]; PERF_ORDERS],
}

/// What happened on the replayed machine.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct ReplayCounters {
    /// Events replayed.
    pub replayed: u64,
    /// Events whose CPU was beyond the machine's and wrapped modulo its CPU count.
    pub cpu_wrapped: u64,
    /// Events run in softirq context.
    pub in_softirq: u64,
    /// Events run in hard-IRQ context.
    pub in_hardirq: u64,
    /// Events run in NMI context.
    pub in_nmi: u64,
    /// Events run with interrupts disabled in process or softirq context.
    pub irqs_off: u64,
    /// Events run with bottom halves disabled.
    pub bh_off: u64,
    /// Frees of pointers never seen allocated (allocated before tracing began).
    pub untracked_frees: u64,
    /// `kfree(NULL)` / `kmem_cache_free(NULL)`: no-ops, as in the kernel.
    pub null_frees: u64,
    /// Allocations whose traced pointer was still live (its free was not traced): the
    /// earlier object is freed first.
    pub reused_live_pointer: u64,
    /// Frees through the other family (`kfree` of a cache object, or the reverse).
    pub free_kind_mismatch: u64,
    /// Allocations the traced kernel failed (`ptr=(null)`): not replayed.
    pub traced_slab_failures: u64,
    /// kmemlab `kmalloc` failures where the traced kernel succeeded.
    pub kmalloc_failures: u64,
    /// kmemlab `kmem_cache_alloc` failures where the traced kernel succeeded.
    pub cache_alloc_failures: u64,
    /// kmemlab `alloc_pages` failures where the traced kernel succeeded.
    pub page_alloc_failures: u64,
    /// Frees kmemlab refused.
    pub free_failures: u64,
    /// Blocking allocations traced in atomic context: kmemlab reported the kernel's
    /// `sleeping function called from invalid context` (as the traced kernel would have
    /// with CONFIG_DEBUG_ATOMIC_SLEEP) and then allocated without sleeping, as the traced
    /// kernel went on to.
    pub sleep_in_atomic: u64,
    /// Caches created for the trace's `kmem_cache_alloc` call sites.
    pub caches_created: u64,
    /// Cache allocations served by a shared per-size cache because the cache table was full.
    pub shared_cache_fallbacks: u64,
    /// Page frees whose traced order differs from the allocation's (freed at the latter).
    pub page_order_mismatch: u64,
    /// Page events not replayed (page replay turned off).
    pub page_events_skipped: u64,
    /// Objects and page blocks still allocated at the end of the trace.
    pub live_at_end: u64,
}

/// How often kmemlab's sizes matched the traced kernel's `bytes_alloc`.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct Fidelity {
    /// kmalloc events compared (`ksize` of the result against `bytes_alloc`).
    pub kmalloc_checked: u64,
    /// Of which equal.
    pub kmalloc_agreed: u64,
    /// kmem_cache_alloc events compared: `s->size` of the cache kmemlab created for the
    /// traced `s->object_size` (`bytes_req`), by kmemlab's own layout (alignment, red
    /// zones and tracking under slab_debug), against the traced `s->size` (`bytes_alloc`).
    pub cache_checked: u64,
    /// Of which equal.
    pub cache_agreed: u64,
    /// The disagreements: (bytes_req, traced bytes_alloc, kmemlab size, events), most first.
    pub mismatches: Vec<SizeMismatch>,
}

impl Fidelity {
    /// Percentage of kmalloc events that agreed (`None`: none compared).
    pub fn kmalloc_percent(&self) -> Option<f64> {
        checked_percent(self.kmalloc_agreed, self.kmalloc_checked)
    }

    /// Percentage of cache events that agreed (`None`: none compared).
    pub fn cache_percent(&self) -> Option<f64> {
        checked_percent(self.cache_agreed, self.cache_checked)
    }
}

/// One kind of size disagreement.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct SizeMismatch {
    /// `kmalloc` or `kmem_cache_alloc`.
    pub event: &'static str,
    /// Bytes requested.
    pub bytes_req: u64,
    /// What the traced kernel allocated.
    pub traced: u64,
    /// What kmemlab allocated.
    pub kmemlab: u64,
    /// How many events.
    pub events: u64,
}

/// `part / whole` in percent, `None` when nothing was compared (a fidelity figure over no
/// events is no figure: the report prints "n/a").
pub fn checked_percent(part: u64, whole: u64) -> Option<f64> {
    (whole > 0).then(|| 100.0 * part as f64 / whole as f64)
}

/// `part / whole` in percent (100 when nothing was compared).
pub fn percent(part: u64, whole: u64) -> f64 {
    if whole == 0 {
        100.0
    } else {
        100.0 * part as f64 / whole as f64
    }
}

/// One point of the memory time series.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Sample {
    /// Events replayed so far.
    pub event: u64,
    /// The trace's timestamp, in nanoseconds.
    pub timestamp_ns: u64,
    /// Bytes in slabs and large kmallocs.
    pub slab_bytes: u64,
    /// Free bytes in all zones.
    pub free_bytes: u64,
    /// Largest free block, in bytes, over all zones.
    pub largest_free_bytes: u64,
    /// The largest free order of each populated zone (-1: nothing free).
    pub largest_free_order: Vec<i8>,
}

/// The largest free order of one zone over the replay.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct ZoneOrders {
    /// The zone.
    pub zone: &'static str,
    /// The smallest "largest free order" sampled (-1: nothing free).
    pub min: i8,
    /// At the end.
    pub last: i8,
}

/// kmemlab's memory figures.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct MemoryStats {
    /// The most slab memory (slabs and large kmallocs) at any point, in bytes.
    pub peak_slab_bytes: u64,
    /// Slab memory at the end.
    pub final_slab_bytes: u64,
    /// Objects in use at the end, over all caches (`/proc/slabinfo` active_objs).
    pub active_objects: u64,
    /// Objects in all slabs at the end (`num_objs`).
    pub total_objects: u64,
    /// Largest free order per zone.
    pub zones: Vec<ZoneOrders>,
}

impl MemoryStats {
    /// active / total objects, in percent.
    pub fn slab_utilisation(&self) -> f64 {
        percent(self.active_objects, self.total_objects)
    }
}

/// The vmalloc events (`alloc_vmap_area`, `free_vmap_area_noflush`,
/// `purge_vmap_area_lazy`): what the trace recorded and what kmemlab's vmalloc did with
/// the same areas.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct VmallocSummary {
    /// `alloc_vmap_area` events that succeeded in the traced kernel.
    pub traced_allocs: u64,
    /// `alloc_vmap_area` events with `failed=1` (not replayed).
    pub traced_alloc_failures: u64,
    /// Areas asked for outside the vmalloc range (modules, BPF: a `vstart` at or above
    /// the kernel image on x86_64), counted and not replayed.
    pub outside_vmalloc_range: u64,
    /// `free_vmap_area_noflush` events.
    pub traced_frees: u64,
    /// Frees of areas never seen allocated (allocated before tracing began, or outside
    /// the vmalloc range).
    pub untracked_frees: u64,
    /// `purge_vmap_area_lazy` events.
    pub traced_purges: u64,
    /// Areas those purges gave back (`num_purged`).
    pub traced_purged_areas: u128,
    /// The traced kernel's `lazy_max_pages()` (`nr_lazy_max=`), if a free recorded it.
    pub traced_lazy_max_pages: Option<u64>,
    /// kmemlab's `lazy_max_pages()` on the replay machine.
    pub kmemlab_lazy_max_pages: u64,
    /// Areas kmemlab reserved for the traced ones.
    pub reserved: u64,
    /// Reservations kmemlab failed where the traced kernel succeeded.
    pub reserve_failures: u64,
    /// Bytes of vmalloc space kmemlab held at the peak for the replay: its busy vmap areas
    /// (guard pages included) beyond those busy when the replay began, measured after
    /// every vmalloc event and every `kvmalloc` that fell back to vmalloc.
    pub peak_bytes: u64,
    /// Traced areas still reserved at the end.
    pub live_at_end: u64,
    /// Lazy purges kmemlab ran during the replay (its own, when the lazily freed pages
    /// passed `lazy_max_pages()`, and those run for the trace's `purge_vmap_area_lazy`).
    pub kmemlab_purges: u64,
    /// Of the trace's purges, those that found lazily freed areas waiting in kmemlab.
    pub purges_for_traced: u64,
    /// Areas kmemlab's purges gave back.
    pub kmemlab_purged_areas: u64,
    /// TLB flushes kmemlab's vmalloc asked for.
    pub kmemlab_tlb_flushes: u64,
}

/// `--kvmalloc-above SIZE`: large `kmalloc` events replayed as `kvmalloc`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct KvmallocSummary {
    /// The threshold: `kmalloc` events of more bytes than this became `kvmalloc`.
    pub above: Option<u64>,
    /// Those served by kmalloc.
    pub via_kmalloc: u64,
    /// Those that fell back to vmalloc.
    pub via_vmalloc: u64,
    /// Those neither could serve.
    pub failed: u64,
}

/// A sort key of `perf kmem stat -s` for the slab tables (tools/perf/builtin-kmem.c,
/// Linux 6.6: `ptr_cmp`, `callsite_cmp`, `hit_cmp`, `bytes_cmp`, `frag_cmp`,
/// `pingpong_cmp`; each row that compares greater is printed first).
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum SlabSortKey {
    /// `ptr`: the pointer (the per-pointer table's; call-site rows tie).
    Ptr,
    /// `callsite`: the call site.
    Callsite,
    /// `bytes`: bytes allocated.
    Bytes,
    /// `hit`: allocations.
    Hit,
    /// `pingpong`: frees on another CPU.
    Pingpong,
    /// `frag`: internal fragmentation.
    Frag,
}

/// perf's slab sort keys, in `slab_sorts[]` order.
const SLAB_KEYS: &str = "ptr, callsite, bytes, hit, pingpong, frag";
/// perf's page sort keys, in `page_sorts[]` order.
const PAGE_KEYS: &str = "page, callsite, hit, bytes, order, migtype, gfp";

/// `-s KEY,...` for the slab tables; an unknown key is an error in perf's words
/// (`setup_slab_sorting`: "Unknown slab --sort key: '%s'") naming the slab keys.
pub fn parse_slab_sort(text: &str) -> Result<Vec<SlabSortKey>, String> {
    text.split(',')
        .map(|key| match key.trim() {
            "ptr" => Ok(SlabSortKey::Ptr),
            "callsite" => Ok(SlabSortKey::Callsite),
            "bytes" => Ok(SlabSortKey::Bytes),
            "hit" => Ok(SlabSortKey::Hit),
            "pingpong" => Ok(SlabSortKey::Pingpong),
            "frag" => Ok(SlabSortKey::Frag),
            k if parse_page_key(k).is_some() => Err(format!(
                "Unknown slab --sort key: '{k}': a page key, for the --page tables (slab keys: {SLAB_KEYS})"
            )),
            k => Err(format!(
                "Unknown slab --sort key: '{k}' (slab keys: {SLAB_KEYS})"
            )),
        })
        .collect()
}

/// A sort key of `perf kmem stat --page -s` (`page_cmp`, `page_callsite_cmp`,
/// `page_hit_cmp`, `page_bytes_cmp`, `page_order_cmp`, `migrate_type_cmp`,
/// `gfp_flags_cmp`, Linux 6.6).
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum PageSortKey {
    /// `page`: the page frame number.
    Page,
    /// `callsite`: the call site's address.
    Callsite,
    /// `hit`: allocations.
    Hit,
    /// `bytes`: bytes allocated.
    Bytes,
    /// `order`: the order.
    Order,
    /// `migtype`: the migrate type.
    Migtype,
    /// `gfp`: the GFP flags.
    Gfp,
}

fn parse_page_key(key: &str) -> Option<PageSortKey> {
    Some(match key {
        "page" => PageSortKey::Page,
        "callsite" => PageSortKey::Callsite,
        "hit" => PageSortKey::Hit,
        "bytes" => PageSortKey::Bytes,
        "order" => PageSortKey::Order,
        "migtype" => PageSortKey::Migtype,
        "gfp" => PageSortKey::Gfp,
        _ => return None,
    })
}

/// `-s KEY,...` for the page tables (`--page`); an unknown key is an error in perf's
/// words ("Unknown page --sort key: '%s'") naming the page keys.
pub fn parse_page_sort(text: &str) -> Result<Vec<PageSortKey>, String> {
    text.split(',')
        .map(|key| {
            let k = key.trim();
            parse_page_key(k)
                .ok_or_else(|| format!("Unknown page --sort key: '{k}' (page keys: {PAGE_KEYS})"))
        })
        .collect()
}

/// perf's default page sort, `bytes,hit`.
pub const DEFAULT_PAGE_SORT: [PageSortKey; 2] = [PageSortKey::Bytes, PageSortKey::Hit];
/// perf's default slab sort, `frag,hit,bytes`.
pub const DEFAULT_SLAB_SORT: [SlabSortKey; 3] =
    [SlabSortKey::Frag, SlabSortKey::Hit, SlabSortKey::Bytes];

/// Sort page rows by `keys` as perf does, the greater first.
pub fn sort_pages_by_keys(rows: &mut [crate::tables::PageRow], keys: &[PageSortKey]) {
    rows.sort_by(|a, b| {
        keys.iter()
            .map(|k| compare_pages_on(*k, b, a))
            .find(|o| o.is_ne())
            .unwrap_or(std::cmp::Ordering::Equal)
    });
}

fn compare_pages_on(
    key: PageSortKey,
    a: &crate::tables::PageRow,
    b: &crate::tables::PageRow,
) -> std::cmp::Ordering {
    match key {
        PageSortKey::Page => a.page.cmp(&b.page),
        PageSortKey::Callsite => a
            .callsite_addr
            .cmp(&b.callsite_addr)
            .then_with(|| a.callsite.cmp(&b.callsite)),
        PageSortKey::Hit => a.nr_alloc.cmp(&b.nr_alloc),
        PageSortKey::Bytes => a.alloc_bytes.cmp(&b.alloc_bytes),
        PageSortKey::Order => a.order.cmp(&b.order),
        PageSortKey::Migtype => a.migtype.cmp(&b.migtype),
        PageSortKey::Gfp => a.gfp.cmp(&b.gfp),
    }
}

/// Sort rows by `keys` as perf does, the greater first; rows equal on every key keep
/// their order.
pub fn sort_by_keys(rows: &mut [AllocRow], keys: &[SlabSortKey]) {
    rows.sort_by(|a, b| {
        keys.iter()
            .map(|k| compare_on(*k, b, a))
            .find(|o| o.is_ne())
            .unwrap_or(std::cmp::Ordering::Equal)
    });
}

/// The call site a row is of: its own name in the call-site table, its last call site
/// in the per-pointer table.
fn row_site(row: &AllocRow) -> &str {
    if row.site.is_empty() {
        &row.name
    } else {
        &row.site
    }
}

fn compare_on(key: SlabSortKey, a: &AllocRow, b: &AllocRow) -> std::cmp::Ordering {
    match key {
        SlabSortKey::Ptr => a.ptr.cmp(&b.ptr),
        SlabSortKey::Callsite => row_site(a).cmp(row_site(b)),
        SlabSortKey::Bytes => a.bytes_alloc.cmp(&b.bytes_alloc),
        SlabSortKey::Hit => a.hit.cmp(&b.hit),
        SlabSortKey::Pingpong => a.pingpong.cmp(&b.pingpong),
        SlabSortKey::Frag => a.fragmentation().total_cmp(&b.fragmentation()),
    }
}
