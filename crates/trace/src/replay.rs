//! Replay a trace on a simulated machine: each traced pointer maps to a kmemlab
//! allocation, each event runs on its CPU (modulo the machine's) in its context.

use std::io::BufRead;

use kmemlab_mm::context::SOFTIRQ_DISABLE_OFFSET;
use kmemlab_mm::slab::kmalloc::ZERO_SIZE_PTR;
use kmemlab_mm::slab::{KmemCacheRef, SlabError, SlabFlags};
use kmemlab_mm::util;
use kmemlab_mm::vmalloc::VmallocError;
use kmemlab_mm::{AllocError, Context, Gfp, IrqFlags, Mm, Pfn, Platform, VirtAddr, PAGE_SIZE};

use crate::callchain::Callchains;
use crate::event::{CallSite, Event, EventName, SlabAlloc, SlabFree, TraceContext, TraceEvent};
use crate::hash::FxHashMap;
use crate::parse::Symbols;
use crate::reader::{TraceError, TraceReader};
use crate::report::Report;
use crate::stats::{
    AllocRow, Fidelity, KvmallocSummary, MemoryStats, PageSummary, ReplayCounters, Sample,
    SizeMismatch, SlabSummary, ZoneOrders, PERF_MIGRATE_TYPES, PERF_ORDERS,
};
use crate::tables::{PerfTables, TableOptions};
use crate::vmap::VmapReplay;
use kmemlab_sim::{Machine, SimError, SimPlatform};

/// How to replay.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReplayOptions {
    /// Replay `mm_page_alloc` / `mm_page_free` (they are always counted). A trace that
    /// holds slab and page events counts the traced kernel's slab pages among its page
    /// events, while kmemlab's slabs allocate their own: turn this off to avoid the double.
    pub replay_pages: bool,
    /// Events between two samples of the memory time series (doubles as the series fills).
    pub sample_every: u64,
    /// Lines between two progress callbacks.
    pub progress_every: u64,
    /// `--kvmalloc-above SIZE`: `kmalloc` events of more than this many bytes are
    /// replayed as `kvmalloc` (kmalloc first, vmalloc when that fails and may sleep).
    pub kvmalloc_above: Option<u64>,
    /// `--kallsyms FILE`: names for raw call-site addresses in the report.
    pub kallsyms: Option<std::sync::Arc<crate::kallsyms::Kallsyms>>,
    /// perf's per-pointer and page tables to collect (`--alloc`, `--page`, `--live`).
    pub tables: TableOptions,
}

impl Default for ReplayOptions {
    fn default() -> Self {
        ReplayOptions {
            replay_pages: true,
            sample_every: 256,
            progress_every: 1 << 16,
            kvmalloc_above: None,
            kallsyms: None,
            tables: TableOptions::default(),
        }
    }
}

/// Why a replay stopped.
#[derive(Debug)]
pub enum ReplayError {
    /// The trace could not be read.
    Trace(TraceError),
    /// The machine refused to run a CPU.
    Machine(SimError),
}

impl std::fmt::Display for ReplayError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ReplayError::Trace(e) => e.fmt(f),
            ReplayError::Machine(e) => write!(f, "the machine: {e}"),
        }
    }
}

impl std::error::Error for ReplayError {}

impl From<TraceError> for ReplayError {
    fn from(e: TraceError) -> Self {
        ReplayError::Trace(e)
    }
}

/// Replay every event of `reader` on `machine` and report; `progress` is called with the
/// input counts every [`ReplayOptions::progress_every`] lines.
pub fn replay<R: BufRead>(
    machine: &Machine,
    reader: &mut TraceReader<R>,
    options: &ReplayOptions,
    progress: &mut dyn FnMut(&super::InputStats),
) -> Result<Report, ReplayError> {
    let mut replayer = Replayer::new(machine, options.clone());
    let mut next_progress = options.progress_every.max(1);
    let mut pending = reader.next_event()?;
    while let Some(first) = pending.take() {
        let cpu = replayer.cpu_for(first.cpu);
        let run = machine.on_cpu(cpu, Context::Process, |mm| {
            let mut ev = first;
            loop {
                replayer.apply(mm, &ev, &reader.parser().symbols, reader.chains());
                if reader.stats().lines >= next_progress {
                    progress(reader.stats());
                    next_progress = reader.stats().lines + options.progress_every.max(1);
                }
                match reader.next_event()? {
                    Some(next) if replayer.cpu_for(next.cpu) == cpu => ev = next,
                    other => return Ok::<_, TraceError>(other),
                }
            }
        });
        pending = run.map_err(ReplayError::Machine)??;
    }
    progress(reader.stats());
    Ok(replayer.finish(reader))
}

/// A traced slab object and what kmemlab made of it.
struct LiveObject {
    /// kmemlab's object, `None` if kmemlab could not allocate it.
    addr: Option<VirtAddr>,
    /// Which allocator family.
    kind: ObjectKind,
    /// Row in the call-site table.
    site_row: u32,
    /// Row in the cache table (`u32::MAX`: none).
    cache_row: u32,
    /// The traced kernel's `bytes_alloc`.
    traced_bytes: u64,
    /// The traced CPU.
    cpu: u32,
}

#[derive(Copy, Clone, PartialEq, Eq)]
enum ObjectKind {
    Kmalloc,
    /// A traced `kmalloc` replayed as `kvmalloc` (`--kvmalloc-above`).
    Kvmalloc,
    Cache(u32),
}

/// A traced page block and kmemlab's.
struct LivePages {
    pfn: Option<u64>,
    order: u32,
}

/// Which kmemlab cache serves a traced `kmem_cache_alloc`.
#[derive(Copy, Clone, PartialEq, Eq, Hash)]
enum CacheKey {
    /// Unnamed in the trace: one cache per (call site, object size).
    Site(CallSite, u64),
    /// Named in the trace: one per (name, object size).
    Named(u32, u64),
}

impl CacheKey {
    /// The traced `s->size` the key was made from.
    fn size(self) -> u64 {
        match self {
            CacheKey::Site(_, size) | CacheKey::Named(_, size) => size,
        }
    }
}

struct CacheSlot {
    handle: KmemCacheRef,
    /// kmemlab's `s->size` for the cache.
    size: u64,
    /// The traced `s->size` it was made for (caches are shared by it when the table is full).
    traced_size: u64,
    row: u32,
}

/// A row of the cache table: a kmemlab slab cache, or large kmallocs of one order.
#[derive(Copy, Clone, PartialEq, Eq, Hash)]
enum RowKey {
    Slab(u64),
    Large(u32),
    /// `kvmalloc` allocations that fell back to vmalloc.
    Vmalloc,
}

/// The most samples kept; past that every other one is dropped and the interval doubles.
const MAX_SAMPLES: usize = 2048;
/// Kernel messages and failure reasons kept for the report.
const MAX_MESSAGES: usize = 20;
/// Caches named like the allocator's own get this suffix tried with numbers up to this.
const NAME_TRIES: u32 = 8;

/// The replay's state.
struct Replayer<'m> {
    machine: &'m Machine,
    options: ReplayOptions,
    nr_cpus: u32,
    objects: FxHashMap<u64, LiveObject>,
    pages: FxHashMap<u64, LivePages>,
    caches: FxHashMap<CacheKey, u32>,
    cache_slots: Vec<CacheSlot>,
    site_index: FxHashMap<CallSite, u32>,
    sites: Vec<(CallSite, AllocRow)>,
    row_index: FxHashMap<RowKey, u32>,
    cache_rows: Vec<AllocRow>,
    slab: SlabSummary,
    page: PageSummary,
    vmap: VmapReplay,
    kvmalloc: KvmallocSummary,
    counters: ReplayCounters,
    fidelity: Fidelity,
    mismatches: FxHashMap<(bool, u64, u64, u64), u64>,
    /// Compared kmalloc events by (bytes_req, bytes_alloc), for size-class recognition.
    kmalloc_pairs: FxHashMap<(u64, u64), u64>,
    samples: Vec<Sample>,
    sample_interval: u64,
    since_sample: u64,
    last_timestamp: u64,
    peak_slab_pages: u64,
    zone_orders: Vec<ZoneOrders>,
    messages: Vec<String>,
    console_lines: u64,
    /// perf's further tables (`--alloc`, `--page`) and the call sites' callchains.
    tables: PerfTables,
}

impl<'m> Replayer<'m> {
    fn new(machine: &'m Machine, options: ReplayOptions) -> Replayer<'m> {
        let zone_orders = machine
            .mm()
            .zones()
            .iter()
            .filter(|z| z.is_populated())
            .map(|z| ZoneOrders {
                zone: z.name(),
                min: i8::MAX,
                last: -1,
            })
            .collect();
        Replayer {
            machine,
            nr_cpus: machine.config().cpus as u32,
            sample_interval: options.sample_every.max(1),
            objects: FxHashMap::default(),
            pages: FxHashMap::default(),
            caches: FxHashMap::default(),
            cache_slots: Vec::new(),
            site_index: FxHashMap::default(),
            sites: Vec::new(),
            row_index: FxHashMap::default(),
            cache_rows: Vec::new(),
            slab: SlabSummary::default(),
            page: PageSummary::default(),
            vmap: VmapReplay::new(machine.mm()),
            kvmalloc: KvmallocSummary {
                above: options.kvmalloc_above,
                ..KvmallocSummary::default()
            },
            counters: ReplayCounters::default(),
            fidelity: Fidelity::default(),
            mismatches: FxHashMap::default(),
            kmalloc_pairs: FxHashMap::default(),
            samples: Vec::new(),
            since_sample: 0,
            last_timestamp: 0,
            peak_slab_pages: 0,
            zone_orders,
            messages: Vec::new(),
            console_lines: 0,
            tables: PerfTables::new(options.tables),
            options,
        }
    }

    /// The machine CPU a traced CPU runs on (wrapping, counted by `apply`).
    fn cpu_for(&self, traced: u32) -> usize {
        (traced % self.nr_cpus) as usize
    }

    /// Replay one event; the caller runs as the event's CPU in process context.
    fn apply(
        &mut self,
        mm: &Mm<SimPlatform>,
        ev: &TraceEvent,
        symbols: &Symbols,
        chains: &Callchains,
    ) {
        if ev.cpu >= self.nr_cpus {
            self.counters.cpu_wrapped += 1;
        }
        self.last_timestamp = ev.timestamp_ns;
        // kmem_cache_create may sleep: caches are made before entering the event's context.
        let slot = match &ev.event {
            Event::CacheAlloc(a) if a.ptr != 0 => self.cache_for(mm, a, symbols),
            _ => None,
        };
        let saved = self.enter(mm, ev.ctx);
        match ev.event {
            Event::Kmalloc(a) => self.kmalloc(mm, ev, &a),
            Event::CacheAlloc(a) => self.cache_alloc(mm, ev, &a, slot),
            Event::Kfree(f) | Event::CacheFree(f) => self.slab_free(mm, ev, &f),
            Event::PageAlloc {
                pfn,
                order,
                migratetype,
                gfp,
            } => {
                if let Some(pfn) = pfn {
                    let at = (pfn, order, migratetype);
                    self.tables.page_alloc(at, gfp, ev.chain, chains, symbols);
                }
                self.page_alloc(mm, ev, pfn, order, migratetype, gfp)
            }
            Event::PageFree { pfn, order } => {
                self.live_page_freed(pfn, order);
                self.page_free(mm, pfn, order)
            }
            Event::AllocVmapArea {
                addr,
                size,
                align,
                vstart,
                vend,
                failed,
            } => {
                if let Err(e) = self
                    .vmap
                    .alloc(mm, addr, size, align, (vstart, vend), failed)
                {
                    self.note(ev, &e);
                }
            }
            Event::FreeVmapArea {
                addr, nr_lazy_max, ..
            } => self.vmap.free(mm, addr, nr_lazy_max),
            Event::PurgeVmapAreas { purged, .. } => self.vmap.purge(mm, purged),
        }
        self.exit(mm, ev.ctx, saved);
        if ev.name.is_vmalloc() {
            self.run_kworker(mm);
        }
        self.counters.replayed += 1;
        self.after_event(mm);
    }

    /// The CPU's kworker, now that the event's context is left: a lazy-purge drain that
    /// kmemlab's vmalloc scheduled runs at once (the kernel's `schedule_work()` runs it
    /// soon after, before the traced workload moves far on).
    fn run_kworker(&mut self, mm: &Mm<SimPlatform>) {
        if mm.work_pending() {
            mm.run_work();
        }
    }

    /// Enter the traced context on top of process context.
    #[inline]
    fn enter(&mut self, mm: &Mm<SimPlatform>, ctx: TraceContext) -> Option<IrqFlags> {
        // Most events run in plain process context: nothing to enter or count.
        if ctx == TraceContext::PROCESS {
            return None;
        }
        self.enter_context(mm, ctx)
    }

    fn enter_context(&mut self, mm: &Mm<SimPlatform>, ctx: TraceContext) -> Option<IrqFlags> {
        let hard = matches!(ctx.kind, Context::Hardirq | Context::Nmi);
        let saved = (ctx.irqs_off || hard).then(|| mm.platform().local_irq_save());
        if ctx.bh_off {
            mm.this_cpu().preempt_count.add(SOFTIRQ_DISABLE_OFFSET);
            self.counters.bh_off += 1;
        }
        if ctx.kind == Context::Softirq || ctx.in_softirq {
            mm.enter_context(Context::Softirq);
        }
        if hard {
            mm.enter_context(ctx.kind);
        }
        match ctx.kind {
            Context::Softirq => self.counters.in_softirq += 1,
            Context::Hardirq => self.counters.in_hardirq += 1,
            Context::Nmi => self.counters.in_nmi += 1,
            Context::Process => {}
        }
        if ctx.irqs_off && !hard {
            self.counters.irqs_off += 1;
        }
        saved
    }

    /// Leave what [`Replayer::enter`] entered, in reverse.
    #[inline]
    fn exit(&mut self, mm: &Mm<SimPlatform>, ctx: TraceContext, saved: Option<IrqFlags>) {
        if ctx == TraceContext::PROCESS {
            return;
        }
        if matches!(ctx.kind, Context::Hardirq | Context::Nmi) {
            mm.exit_context(ctx.kind);
        }
        if ctx.kind == Context::Softirq || ctx.in_softirq {
            mm.exit_context(Context::Softirq);
        }
        if ctx.bh_off {
            mm.this_cpu().preempt_count.sub(SOFTIRQ_DISABLE_OFFSET);
        }
        if let Some(flags) = saved {
            mm.platform().local_irq_restore(flags);
        }
    }

    /// perf's accounting of an allocation event; the call-site row.
    fn count_alloc(&mut self, ev: &TraceEvent, a: &SlabAlloc) -> u32 {
        self.slab.total_requested += u128::from(a.bytes_req);
        self.slab.total_allocated += u128::from(a.bytes_alloc);
        self.slab.nr_allocs += 1;
        let node_event = matches!(
            ev.name,
            EventName::KmallocNode | EventName::KmemCacheAllocNode
        );
        if node_event && a.node != Some(0) {
            self.slab.nr_cross_allocs += 1;
        }
        let row = self.site_row(a.call_site);
        let bytes = (a.bytes_req, a.bytes_alloc);
        self.tables
            .slab_alloc(row, a.call_site, a.ptr, bytes, ev.chain);
        let r = &mut self.sites[row as usize].1;
        r.hit += 1;
        r.bytes_req += u128::from(a.bytes_req);
        r.bytes_alloc += u128::from(a.bytes_alloc);
        row
    }

    fn site_row(&mut self, site: CallSite) -> u32 {
        if let Some(&row) = self.site_index.get(&site) {
            return row;
        }
        let row = self.sites.len() as u32;
        self.sites.push((site, AllocRow::default()));
        self.site_index.insert(site, row);
        row
    }

    fn kmalloc(&mut self, mm: &Mm<SimPlatform>, ev: &TraceEvent, a: &SlabAlloc) {
        let site_row = self.count_alloc(ev, a);
        if a.ptr == 0 {
            self.counters.traced_slab_failures += 1;
            return;
        }
        self.retire_live_object(mm, a.ptr);
        let size = a.bytes_req as usize;
        let gfp = kmalloc_gfp(a);
        let as_kvmalloc = self
            .options
            .kvmalloc_above
            .is_some_and(|above| a.bytes_req > above);
        let result = if as_kvmalloc {
            self.kvmalloc_object(mm, size, gfp)
        } else {
            self.with_sleep_retry(gfp, |g| mm.kmalloc(size, g))
                .map_err(KvmallocError::Kmalloc)
        };
        let (addr, cache_row) = match result {
            Ok(addr) if addr.0 <= ZERO_SIZE_PTR.0 => (None, u32::MAX),
            Ok(addr) if mm.is_vmalloc_addr(addr) => {
                let bytes = (size as u64).next_multiple_of(PAGE_SIZE as u64);
                let row = self.vmalloc_row();
                self.add_to_row(row, a.bytes_req, bytes);
                self.vmap.measure(mm);
                (Some(addr), row)
            }
            Ok(addr) => {
                let ksize = mm.ksize(addr).unwrap_or(0) as u64;
                self.compare_size(false, a, ksize);
                *self
                    .kmalloc_pairs
                    .entry((a.bytes_req, a.bytes_alloc))
                    .or_insert(0) += 1;
                let row = self.kmalloc_row(mm, size, gfp);
                self.add_to_row(row, a.bytes_req, ksize);
                (Some(addr), row)
            }
            Err(e) => {
                self.counters.kmalloc_failures += 1;
                self.note(ev, &e);
                (None, u32::MAX)
            }
        };
        self.objects.insert(
            a.ptr,
            LiveObject {
                addr,
                kind: if as_kvmalloc {
                    ObjectKind::Kvmalloc
                } else {
                    ObjectKind::Kmalloc
                },
                site_row,
                cache_row,
                traced_bytes: a.bytes_alloc,
                cpu: ev.cpu,
            },
        );
    }

    fn cache_alloc(
        &mut self,
        mm: &Mm<SimPlatform>,
        ev: &TraceEvent,
        a: &SlabAlloc,
        slot: Option<u32>,
    ) {
        let site_row = self.count_alloc(ev, a);
        if a.ptr == 0 {
            self.counters.traced_slab_failures += 1;
            return;
        }
        self.retire_live_object(mm, a.ptr);
        let mut object = LiveObject {
            addr: None,
            kind: ObjectKind::Kmalloc,
            site_row,
            cache_row: u32::MAX,
            traced_bytes: a.bytes_alloc,
            cpu: ev.cpu,
        };
        match slot {
            Some(slot) => {
                let (handle, size, row) = {
                    let s = &self.cache_slots[slot as usize];
                    (s.handle, s.size, s.row)
                };
                object.kind = ObjectKind::Cache(slot);
                match self.with_sleep_retry(a.gfp, |g| mm.kmem_cache_alloc(handle, g)) {
                    Ok(addr) => {
                        self.compare_size(true, a, size);
                        self.add_to_row(row, a.bytes_req, size);
                        object.addr = Some(addr);
                        object.cache_row = row;
                    }
                    Err(e) => {
                        self.counters.cache_alloc_failures += 1;
                        self.note(ev, &e);
                    }
                }
            }
            None => self.counters.cache_alloc_failures += 1,
        }
        self.objects.insert(a.ptr, object);
    }

    /// A traced `kmalloc` as `kvmalloc`, counted by the way it went.
    fn kvmalloc_object(
        &mut self,
        mm: &Mm<SimPlatform>,
        size: usize,
        gfp: Gfp,
    ) -> Result<VirtAddr, KvmallocError> {
        let result = self.with_sleep_retry(gfp, |g| kvmalloc(mm, size, g));
        match &result {
            Ok(addr) if mm.is_vmalloc_addr(*addr) => self.kvmalloc.via_vmalloc += 1,
            Ok(_) => self.kvmalloc.via_kmalloc += 1,
            Err(_) => self.kvmalloc.failed += 1,
        }
        result
    }

    /// The cache-table row of the `kvmalloc`s served by vmalloc.
    fn vmalloc_row(&mut self) -> u32 {
        match self.row_index.get(&RowKey::Vmalloc) {
            Some(&row) => row,
            None => self.new_row(RowKey::Vmalloc, "vmalloc (kvmalloc fallback)".into()),
        }
    }

    fn add_to_row(&mut self, row: u32, requested: u64, allocated: u64) {
        if let Some(r) = self.cache_rows.get_mut(row as usize) {
            r.hit += 1;
            r.bytes_req += u128::from(requested);
            r.bytes_alloc += u128::from(allocated);
        }
    }

    /// Run an allocation; a blocking one refused in atomic context is counted (the splat
    /// is on the console) and retried without direct reclaim, as the traced kernel went on.
    fn with_sleep_retry<T, E: SleepRefusal>(
        &mut self,
        gfp: Gfp,
        f: impl Fn(Gfp) -> Result<T, E>,
    ) -> Result<T, E> {
        match f(gfp) {
            Err(e) if e.is_sleep_in_atomic() => {
                self.counters.sleep_in_atomic += 1;
                f(gfp - Gfp::__GFP_DIRECT_RECLAIM)
            }
            other => other,
        }
    }

    /// Free kmemlab's object behind a traced pointer that is allocated again.
    fn retire_live_object(&mut self, mm: &Mm<SimPlatform>, ptr: u64) {
        if let Some(old) = self.objects.remove(&ptr) {
            self.counters.reused_live_pointer += 1;
            self.free_object(mm, &old);
        }
    }

    fn free_object(&mut self, mm: &Mm<SimPlatform>, obj: &LiveObject) {
        let Some(addr) = obj.addr else {
            return;
        };
        let result = match obj.kind {
            ObjectKind::Kmalloc => mm.kfree(addr).map_err(KvmallocError::Kmalloc),
            ObjectKind::Kvmalloc => self.kvfree_object(mm, addr),
            ObjectKind::Cache(slot) => mm
                .kmem_cache_free(self.cache_slots[slot as usize].handle, addr)
                .map_err(KvmallocError::Kmalloc),
        };
        if let Err(e) = result {
            self.counters.free_failures += 1;
            self.note_message(format!("free of {addr}: {e}"));
        }
    }

    /// `kvfree` of a replayed `kvmalloc`, the vmalloc space it held given back.
    fn kvfree_object(&mut self, mm: &Mm<SimPlatform>, addr: VirtAddr) -> Result<(), KvmallocError> {
        let vmalloced = mm.is_vmalloc_addr(addr);
        kvfree(mm, addr)?;
        if vmalloced {
            self.run_kworker(mm);
        }
        Ok(())
    }

    fn slab_free(&mut self, mm: &Mm<SimPlatform>, ev: &TraceEvent, f: &SlabFree) {
        self.slab.nr_frees += 1;
        if f.ptr == 0 {
            self.counters.null_frees += 1;
            return;
        }
        let Some(obj) = self.objects.remove(&f.ptr) else {
            self.counters.untracked_frees += 1;
            return;
        };
        self.slab.total_freed += u128::from(obj.traced_bytes);
        if ev.cpu != obj.cpu {
            self.tables.slab_pingpong(f.ptr);
            self.sites[obj.site_row as usize].1.pingpong += 1;
            if let Some(r) = self.cache_rows.get_mut(obj.cache_row as usize) {
                r.pingpong += 1;
            }
        }
        let via_kfree = ev.name == EventName::Kfree;
        let kmalloc_family = matches!(obj.kind, ObjectKind::Kmalloc | ObjectKind::Kvmalloc);
        if via_kfree != kmalloc_family {
            self.counters.free_kind_mismatch += 1;
        }
        self.free_object(mm, &obj);
    }

    /// The kmemlab cache for a traced `kmem_cache_alloc`, created on first use.
    ///
    /// The traced `kmem_cache_alloc` prints `bytes_req=s->object_size` and
    /// `bytes_alloc=s->size` (`include/trace/events/kmem.h`, Linux 6.6): kmemlab creates
    /// the cache at the object size and lays it out itself, so that its `s->size`
    /// (alignment, red zones, tracking under slab_debug) is compared with the traced one,
    /// not copied from it.
    fn cache_for(&mut self, mm: &Mm<SimPlatform>, a: &SlabAlloc, symbols: &Symbols) -> Option<u32> {
        let size = if a.bytes_alloc > 0 {
            a.bytes_alloc
        } else {
            a.bytes_req.max(1)
        };
        let object_size = if a.bytes_req > 0 { a.bytes_req } else { size };
        let key = match a.cache_name {
            Some(name) => CacheKey::Named(name, size),
            None => CacheKey::Site(a.call_site, size),
        };
        if let Some(&slot) = self.caches.get(&key) {
            return Some(slot);
        }
        let slot = self
            .create_cache(mm, key, object_size, symbols)
            .or_else(|| {
                // The cache table is full: share a cache of the same object size.
                let shared = self
                    .cache_slots
                    .iter()
                    .position(|s| s.traced_size == size)? as u32;
                self.counters.shared_cache_fallbacks += 1;
                Some(shared)
            })?;
        self.caches.insert(key, slot);
        Some(slot)
    }

    /// Create the cache for `key` (named for the traced `s->size`) at `size`, the traced
    /// object size.
    fn create_cache(
        &mut self,
        mm: &Mm<SimPlatform>,
        key: CacheKey,
        size: u64,
        symbols: &Symbols,
    ) -> Option<u32> {
        let base = cache_label(key, symbols);
        let mut last_error = None;
        for attempt in 1..=NAME_TRIES {
            let name = if attempt == 1 {
                base.clone()
            } else {
                format!("{base}#{attempt}")
            };
            if mm.find_cache(&name).is_some() {
                continue;
            }
            match mm.kmem_cache_create(&name, size as usize, 0, SlabFlags::empty(), None) {
                Ok(handle) => return Some(self.add_cache_slot(mm, handle, &name, key.size())),
                Err(SlabError::BadArgs("a cache of that name exists")) => continue,
                Err(e) => {
                    last_error = Some(e);
                    break;
                }
            }
        }
        if let Some(e) = last_error {
            self.note_message(format!("kmem_cache_create({base}, {size}): {e}"));
        }
        None
    }

    fn add_cache_slot(
        &mut self,
        mm: &Mm<SimPlatform>,
        handle: KmemCacheRef,
        name: &str,
        traced_size: u64,
    ) -> u32 {
        self.counters.caches_created += 1;
        let kmemlab_size = mm.cache(handle).map_or(traced_size, |s| s.size() as u64);
        let row = self.new_row(RowKey::Slab(handle.0), name.to_string());
        self.cache_slots.push(CacheSlot {
            handle,
            size: kmemlab_size,
            traced_size,
            row,
        });
        (self.cache_slots.len() - 1) as u32
    }

    fn new_row(&mut self, key: RowKey, name: String) -> u32 {
        let row = self.cache_rows.len() as u32;
        self.cache_rows.push(AllocRow {
            name,
            ..AllocRow::default()
        });
        self.row_index.insert(key, row);
        row
    }

    /// The cache-table row of a kmalloc of `size` bytes: its kmalloc cache, or the page
    /// allocator for large ones.
    fn kmalloc_row(&mut self, mm: &Mm<SimPlatform>, size: usize, gfp: Gfp) -> u32 {
        let key = match mm.kmalloc_slab(size, gfp) {
            Some(r) => RowKey::Slab(r.0),
            None => RowKey::Large(kmemlab_mm::addr::get_order(size)),
        };
        if let Some(&row) = self.row_index.get(&key) {
            return row;
        }
        let name = match key {
            RowKey::Slab(va) => mm.cache(KmemCacheRef(va)).map_or_else(
                |_| "kmalloc-?".to_string(),
                |s| s.name().as_str().to_string(),
            ),
            RowKey::Large(order) => format!("kmalloc-large (order {order})"),
            RowKey::Vmalloc => "vmalloc".to_string(),
        };
        self.new_row(key, name)
    }

    fn compare_size(&mut self, cache: bool, a: &SlabAlloc, kmemlab: u64) {
        let agreed = kmemlab == a.bytes_alloc;
        if cache {
            self.fidelity.cache_checked += 1;
            self.fidelity.cache_agreed += agreed as u64;
        } else {
            self.fidelity.kmalloc_checked += 1;
            self.fidelity.kmalloc_agreed += agreed as u64;
        }
        if !agreed {
            *self
                .mismatches
                .entry((cache, a.bytes_req, a.bytes_alloc, kmemlab))
                .or_insert(0) += 1;
        }
    }

    fn page_alloc(
        &mut self,
        mm: &Mm<SimPlatform>,
        ev: &TraceEvent,
        pfn: Option<u64>,
        order: u32,
        migratetype: u32,
        gfp: Gfp,
    ) {
        let bytes = page_bytes(order);
        self.page.nr_allocs += 1;
        self.page.alloc_bytes += bytes;
        let Some(pfn) = pfn else {
            self.page.nr_fails += 1;
            self.page.fail_bytes += bytes;
            return;
        };
        let o = (order as usize).min(PERF_ORDERS - 1);
        let m = (migratetype as usize).min(PERF_MIGRATE_TYPES - 1);
        self.page.order_stats[o][m] += 1;
        if let Some(old) = self.pages.remove(&pfn) {
            self.counters.reused_live_pointer += 1;
            self.free_pages(mm, &old);
        }
        let kpfn = if self.options.replay_pages {
            match self.with_sleep_retry(gfp, |g| mm.alloc_pages(g, order)) {
                Ok(page) => Some(mm.page_to_pfn(page).0),
                Err(e) => {
                    self.counters.page_alloc_failures += 1;
                    self.note(ev, &e);
                    None
                }
            }
        } else {
            self.counters.page_events_skipped += 1;
            None
        };
        self.pages.insert(pfn, LivePages { pfn: kpfn, order });
    }

    /// `--live`: perf's order table counts the pages still allocated, so a free takes
    /// its allocation's count back (`evsel__process_page_free_event`).
    fn live_page_freed(&mut self, pfn: u64, order: u32) {
        if let Some((order, mt)) = self.tables.page_free(pfn, order) {
            let o = (order as usize).min(PERF_ORDERS - 1);
            let m = (mt as usize).min(PERF_MIGRATE_TYPES - 1);
            let n = &mut self.page.order_stats[o][m];
            *n = n.saturating_sub(1);
        }
    }

    fn page_free(&mut self, mm: &Mm<SimPlatform>, pfn: u64, order: u32) {
        let bytes = page_bytes(order);
        self.page.nr_frees += 1;
        self.page.free_bytes += bytes;
        let Some(live) = self.pages.remove(&pfn) else {
            self.page.nr_nomatch += 1;
            self.page.nomatch_bytes += bytes;
            self.counters.untracked_frees += 1;
            return;
        };
        if !self.options.replay_pages {
            self.counters.page_events_skipped += 1;
        }
        if live.order != order {
            self.counters.page_order_mismatch += 1;
        }
        self.free_pages(mm, &live);
    }

    fn free_pages(&mut self, mm: &Mm<SimPlatform>, live: &LivePages) {
        let Some(kpfn) = live.pfn else {
            return;
        };
        let result = mm
            .pfn_to_page(Pfn(kpfn))
            .and_then(|page| mm.__free_pages(page, live.order));
        if let Err(e) = result {
            self.counters.free_failures += 1;
            self.note_message(format!("__free_pages(pfn {kpfn:#x}, {}): {e}", live.order));
        }
    }

    fn note(&mut self, ev: &TraceEvent, e: &dyn std::fmt::Display) {
        self.note_message(format!("line {}: {}: {e}", ev.line, ev.name.as_str()));
    }

    fn note_message(&mut self, message: String) {
        if self.messages.len() < MAX_MESSAGES {
            self.messages.push(message);
        }
    }

    /// Peak slab memory after every event; a sample every `sample_interval` events.
    fn after_event(&mut self, mm: &Mm<SimPlatform>) {
        self.peak_slab_pages = self.peak_slab_pages.max(slab_pages(mm));
        self.since_sample += 1;
        if self.since_sample >= self.sample_interval {
            self.since_sample = 0;
            self.take_sample(mm);
        }
    }

    fn take_sample(&mut self, mm: &Mm<SimPlatform>) {
        let orders: Vec<i8> = mm
            .zones()
            .iter()
            .filter(|z| z.is_populated())
            .map(|z| largest_free_order(mm, z))
            .collect();
        for (z, &o) in self.zone_orders.iter_mut().zip(&orders) {
            z.min = z.min.min(o);
            z.last = o;
        }
        let largest = orders.iter().copied().max().unwrap_or(-1);
        let free_pages: u64 = mm.zones().iter().map(|z| z.free_pages()).sum();
        self.samples.push(Sample {
            event: self.counters.replayed,
            timestamp_ns: self.last_timestamp,
            slab_bytes: slab_pages(mm) << 12,
            free_bytes: free_pages << 12,
            largest_free_bytes: if largest < 0 { 0 } else { 4096 << largest },
            largest_free_order: orders,
        });
        if self.samples.len() >= MAX_SAMPLES {
            let mut i = 0;
            self.samples.retain(|_| {
                i += 1;
                i % 2 == 1
            });
            self.sample_interval *= 2;
        }
        self.drain_console();
    }

    fn drain_console(&mut self) {
        for line in self.machine.take_console() {
            self.console_lines += 1;
            self.note_message(line);
        }
    }

    /// The report, read from the machine on the boot CPU.
    fn finish<R: BufRead>(mut self, reader: &TraceReader<R>) -> Report {
        let mm = self.machine.mm();
        self.take_sample(mm);
        self.counters.live_at_end = self.objects.values().filter(|o| o.addr.is_some()).count()
            as u64
            + self.pages.values().filter(|p| p.pfn.is_some()).count() as u64;
        let symbols = &reader.parser().symbols;
        let mut callsites: Vec<AllocRow> = self
            .sites
            .iter()
            .map(|(site, row)| AllocRow {
                name: self.call_site_name(*site, symbols),
                ..row.clone()
            })
            .collect();
        let tables = std::mem::take(&mut self.tables).finish(
            &|site| self.call_site_name(site, symbols),
            &mut callsites,
            reader.chains(),
            symbols,
            self.options.kallsyms.as_deref(),
        );
        super::stats::sort_by_waste(&mut callsites);
        let mut caches = std::mem::take(&mut self.cache_rows);
        super::stats::sort_by_waste(&mut caches);
        self.fidelity.mismatches = self.sorted_mismatches();
        let memory = self.memory_stats(mm);
        let mut pairs: Vec<crate::classes::SizePair> = self
            .kmalloc_pairs
            .iter()
            .map(|(&(req, alloc), &n)| (req, alloc, n))
            .collect();
        pairs.sort_unstable();
        let size_class_hint = crate::classes::hint(&pairs, self.fidelity.kmalloc_agreed);
        let vmalloc = self.vmap.finish(mm);
        Report::build(super::report::ReportParts {
            machine: self.machine,
            input: reader.stats().clone(),
            unknown_events: reader.parser().unknown_events(),
            unknown_gfp_flags: reader
                .parser()
                .gfp
                .unknown_counts()
                .map(|(n, c)| (n.to_string(), c))
                .collect(),
            slab: self.slab,
            page: self.page,
            vmalloc,
            kvmalloc: self.kvmalloc,
            callsites,
            caches,
            tables,
            counters: self.counters,
            fidelity: self.fidelity,
            size_class_hint,
            memory,
            samples: self.samples,
            messages: self.messages,
            console_lines: self.console_lines,
        })
    }

    /// A call site as the report names it: resolved by `--kallsyms` where it is a raw
    /// address the symbols cover, as traced otherwise.
    fn call_site_name(&self, site: CallSite, symbols: &Symbols) -> String {
        if let (CallSite::Addr(addr), Some(k)) = (site, &self.options.kallsyms)
            && let Some(name) = k.resolve(addr)
        {
            return name;
        }
        symbols.call_site(site)
    }

    fn sorted_mismatches(&self) -> Vec<SizeMismatch> {
        let mut v: Vec<SizeMismatch> = self
            .mismatches
            .iter()
            .map(|(&(cache, req, traced, kmemlab), &events)| SizeMismatch {
                event: if cache { "kmem_cache_alloc" } else { "kmalloc" },
                bytes_req: req,
                traced,
                kmemlab,
                events,
            })
            .collect();
        v.sort_by(|a, b| {
            b.events
                .cmp(&a.events)
                .then(a.bytes_req.cmp(&b.bytes_req))
                .then(a.event.cmp(b.event))
        });
        v
    }

    fn memory_stats(&self, mm: &Mm<SimPlatform>) -> MemoryStats {
        let (mut active, mut total) = (0, 0);
        mm.for_each_cache(|s| {
            let info = kmemlab_mm::procfs::slab_info(mm, s);
            active += info.active_objs;
            total += info.num_objs;
            None::<()>
        });
        MemoryStats {
            peak_slab_bytes: self.peak_slab_pages << 12,
            final_slab_bytes: slab_pages(mm) << 12,
            active_objects: active,
            total_objects: total,
            zones: self
                .zone_orders
                .iter()
                .map(|z| ZoneOrders {
                    min: if z.min == i8::MAX { z.last } else { z.min },
                    ..z.clone()
                })
                .collect(),
        }
    }
}

/// A name for a cache the trace does not name: the call site and the object size.
fn cache_label(key: CacheKey, symbols: &Symbols) -> String {
    match key {
        CacheKey::Named(name, _) => symbols.name(name).chars().take(24).collect(),
        CacheKey::Site(CallSite::Addr(a), size) => format!("{a:x}-{size}"),
        CacheKey::Site(CallSite::Symbol(id), size) => {
            let func = symbols.name(id).split('+').next().unwrap_or("site");
            let func: String = func.chars().take(20).collect();
            format!("{func}-{size}")
        }
    }
}

/// Bytes of a traced block of `order` (the parser keeps orders at or below 20).
fn page_bytes(order: u32) -> u128 {
    4096u128 << order.min(64)
}

/// Slab and large-kmalloc pages (`SReclaimable + SUnreclaim`).
fn slab_pages(mm: &Mm<SimPlatform>) -> u64 {
    use std::sync::atomic::Ordering::Relaxed;
    let p = mm.slab_pages();
    p.reclaimable.load(Relaxed) + p.unreclaimable.load(Relaxed)
}

/// The highest order with a free block in `zone` (-1: none), from the zone's `nr_free`
/// counters (`Mm::free_area_counts`): O(orders) whatever the machine's RAM, where a walk
/// of the free lists grows with it.
fn largest_free_order(mm: &Mm<SimPlatform>, zone: &kmemlab_mm::Zone) -> i8 {
    let counts = mm.free_area_counts(zone);
    counts
        .nr_free
        .iter()
        .rposition(|&n| n > 0)
        .map_or(-1, |o| o as i8)
}

/// Why a replayed `kmalloc` or `kvmalloc` failed: kmalloc's error, or vmalloc's after
/// kmalloc failed.
#[derive(Debug)]
enum KvmallocError {
    Kmalloc(SlabError),
    Vmalloc(VmallocError),
    /// A kvmalloc refusal of neither allocator (bad arguments).
    Other(util::KvmallocError),
}

impl std::fmt::Display for KvmallocError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            KvmallocError::Kmalloc(e) => e.fmt(f),
            KvmallocError::Vmalloc(e) => write!(f, "kvmalloc's vmalloc fallback: {e}"),
            KvmallocError::Other(e) => e.fmt(f),
        }
    }
}

/// The flags a traced kmalloc is replayed with: the traced ones, and `__GFP_ACCOUNT` when
/// the line says `accounted=true` (Linux 6.6's `kmalloc` tracepoint prints it for a
/// `__GFP_ACCOUNT` request), so that `kmalloc_type()` serves it from `kmalloc-cg-*` as
/// the traced kernel did, whatever the flags string kept.
fn kmalloc_gfp(a: &SlabAlloc) -> Gfp {
    if a.accounted == Some(true) {
        a.gfp | Gfp::__GFP_ACCOUNT
    } else {
        a.gfp
    }
}

/// `kvmalloc(size, gfp)`: the kernel's own (`Mm::kvmalloc`, `util.rs`), its error
/// folded into the replay's.
fn kvmalloc(mm: &Mm<SimPlatform>, size: usize, gfp: Gfp) -> Result<VirtAddr, KvmallocError> {
    mm.kvmalloc(size, gfp).map_err(KvmallocError::from)
}

/// `kvfree(addr)`: `vfree` for a vmalloc address, `kfree` otherwise (`is_vmalloc_addr`).
fn kvfree(mm: &Mm<SimPlatform>, addr: VirtAddr) -> Result<(), KvmallocError> {
    mm.kvfree(addr).map_err(KvmallocError::from)
}

impl From<util::KvmallocError> for KvmallocError {
    /// kmalloc's error when kmalloc had the last word, vmalloc's when the fallback did.
    fn from(e: util::KvmallocError) -> Self {
        use util::KvmallocError as K;
        match e {
            K::Kmalloc { error, .. } | K::NoFallback { kmalloc: error, .. } => {
                KvmallocError::Kmalloc(error)
            }
            K::Krealloc(error) | K::Kfree(error) => KvmallocError::Kmalloc(error),
            K::Vmalloc { vmalloc, .. } => KvmallocError::Vmalloc(vmalloc),
            K::Vrealloc(error) | K::Vfree(error) => KvmallocError::Vmalloc(error),
            K::TooLarge { size } => KvmallocError::Kmalloc(SlabError::TooLarge(size)),
            other => KvmallocError::Other(other),
        }
    }
}

/// An allocation error that may be the `might_sleep` refusal.
trait SleepRefusal {
    fn is_sleep_in_atomic(&self) -> bool;
}

impl SleepRefusal for SlabError {
    fn is_sleep_in_atomic(&self) -> bool {
        matches!(self, SlabError::Alloc(AllocError::SleepInAtomic(_)))
    }
}

impl SleepRefusal for KvmallocError {
    fn is_sleep_in_atomic(&self) -> bool {
        match self {
            KvmallocError::Kmalloc(e) => e.is_sleep_in_atomic(),
            KvmallocError::Vmalloc(e) => matches!(e, VmallocError::SleepInAtomic(_)),
            KvmallocError::Other(_) => false,
        }
    }
}

impl SleepRefusal for AllocError {
    fn is_sleep_in_atomic(&self) -> bool {
        matches!(self, AllocError::SleepInAtomic(_))
    }
}
