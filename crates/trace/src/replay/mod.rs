//! Replay a trace on a simulated machine: each traced pointer maps to a kmemlab
//! allocation, each event runs on its CPU (modulo the machine's) in its context.
//!
//! It mirrors no kernel file: it plays back what the kernel's tracepoints recorded
//! (`include/trace/events/kmem.h` and `vmalloc.h`, Linux 6.6) through the kernel's own
//! allocators rebuilt in `kmemlab_mm`, as `perf kmem` reads them.
//!
//! Where to start reading: [`replay`] below, then `Replayer::apply` (one event, dispatched
//! by kind): `slab.rs` for the slab and kmalloc events, `pages.rs` for the page events,
//! `crate::vmap` for vmalloc, `context.rs` for the context an event runs in, and
//! `sample.rs` for the memory time series and the final [`Report`], `pipeline.rs` for
//! where the events come from (the reader, or a second thread parsing ahead).
//!
//! Lock order: the replay holds no lock of its own; each event takes the machine's locks
//! through `kmemlab_mm`'s API (see that crate's subsystems), one event at a time. The
//! parse thread (`pipeline.rs`) touches only the reader and the channel, never the
//! machine.

mod context;
mod pages;
mod pipeline;
mod sample;
mod slab;

use std::io::BufRead;

use kmemlab_mm::slab::KmemCacheRef;
use kmemlab_mm::{Context, Mm, VirtAddr};

use crate::callchain::Callchains;
use crate::event::{CallSite, Event, TraceEvent};
use crate::hash::FxHashMap;
use crate::parse::Symbols;
use crate::reader::{TraceError, TraceReader};
use crate::report::Report;
use crate::stats::{
    AllocRow, Fidelity, KvmallocSummary, PageSummary, ReplayCounters, Sample, SlabSummary,
    ZoneOrders,
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
    /// Whether the lines are parsed on a second host thread while this one replays.
    pub parse_thread: ParseThread,
}

/// Whether a replay parses on a second host thread ([`ReplayOptions::parse_thread`]).
/// The report is the same either way; only the time differs.
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq)]
pub enum ParseThread {
    /// Where the host has more than one CPU (`std::thread::available_parallelism`).
    #[default]
    Auto,
    /// Always (also on one CPU, where it only adds the hand-over's cost).
    Always,
    /// Never: parse and replay in turn on the calling thread.
    Never,
}

impl ParseThread {
    /// Whether to start the parse thread on this host.
    pub fn wanted(self) -> bool {
        match self {
            ParseThread::Auto => std::thread::available_parallelism().is_ok_and(|n| n.get() > 1),
            ParseThread::Always => true,
            ParseThread::Never => false,
        }
    }
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
            parse_thread: ParseThread::default(),
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
///
/// The lines are parsed on a second host thread while this one replays, where
/// [`ReplayOptions::parse_thread`] allows it (`pipeline.rs`); the report is the same
/// either way.
pub fn replay<R: BufRead + Send>(
    machine: &Machine,
    reader: &mut TraceReader<R>,
    options: &ReplayOptions,
    progress: &mut dyn FnMut(&super::InputStats),
) -> Result<Report, ReplayError> {
    let mut replayer = Replayer::new(machine, options.clone());
    if options.parse_thread.wanted() {
        replay_pipelined(machine, &mut replayer, reader, options, progress)?;
    } else {
        let mut source = pipeline::Direct::new(reader, options.progress_every);
        replay_events(machine, &mut replayer, &mut source, progress)?;
    }
    progress(reader.stats());
    Ok(replayer.finish(reader))
}

/// The replay with the parsing on a second thread; on one thread if the host refuses
/// to start one.
fn replay_pipelined<R: BufRead + Send>(
    machine: &Machine,
    replayer: &mut Replayer<'_>,
    reader: &mut TraceReader<R>,
    options: &ReplayOptions,
    progress: &mut dyn FnMut(&super::InputStats),
) -> Result<(), ReplayError> {
    use std::sync::mpsc::sync_channel;
    let (batches_tx, batches_rx) = sync_channel(pipeline::BATCHES_IN_FLIGHT);
    let (spare_tx, spare_rx) = sync_channel(pipeline::BATCHES_IN_FLIGHT);
    let every = options.progress_every;
    let parsed = std::thread::scope(|scope| {
        let parser = std::thread::Builder::new()
            .name("kmemlab-parse".into())
            .spawn_scoped(scope, || {
                pipeline::parse_thread(&mut *reader, batches_tx, spare_rx, every)
            });
        let Ok(parser) = parser else {
            return None;
        };
        let mut source = pipeline::Received::new(batches_rx, spare_tx);
        let result = replay_events(machine, replayer, &mut source, progress);
        // The parse thread stops at its next batch once the channel is closed.
        drop(source);
        if let Err(panic) = parser.join() {
            std::panic::resume_unwind(panic);
        }
        Some(result)
    });
    match parsed {
        Some(result) => result,
        None => {
            let mut source = pipeline::Direct::new(reader, options.progress_every);
            replay_events(machine, replayer, &mut source, progress)
        }
    }
}

/// Apply every event of `source` in order, each run of events of one machine CPU inside
/// one [`Machine::on_cpu`].
fn replay_events(
    machine: &Machine,
    replayer: &mut Replayer<'_>,
    source: &mut impl pipeline::EventSource,
    progress: &mut dyn FnMut(&super::InputStats),
) -> Result<(), ReplayError> {
    if !source.next_batch()? {
        return Ok(());
    }
    // The next event of the batch, and the batch's next progress point.
    let (mut next, mut point) = (0, 0);
    loop {
        let Some(first) = source.events().get(next) else {
            return Ok(());
        };
        let cpu = replayer.cpu_for(first.cpu);
        // The events of one CPU run inside one `on_cpu`, across batches: leaving it runs
        // the CPU's deferred work.
        let run = machine.on_cpu(cpu, Context::Process, |mm| loop {
            let events = source.events();
            while let Some(ev) = events.get(next) {
                if replayer.cpu_for(ev.cpu) != cpu {
                    return Ok(());
                }
                replayer.apply(mm, ev, source.symbols(), source.chains());
                if let Some((at, stats)) = source.progress().get(point)
                    && *at == next
                {
                    progress(stats);
                    point += 1;
                }
                next += 1;
            }
            if !source.next_batch()? {
                return Ok::<_, TraceError>(());
            }
            (next, point) = (0, 0);
        });
        run.map_err(ReplayError::Machine)??;
    }
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

/// kmemlab's block standing in for a live traced one (the map [`Replayer::pages`] is
/// keyed by the traced PFN, a frame of the traced machine kept as a plain `u64`).
struct LivePages {
    /// The block this machine allocated for it (`None`: not replayed, or the allocation
    /// failed). Traced PFNs never reach this machine's `mm`: the replay allocates its
    /// own block and frees that one.
    pfn: Option<kmemlab_mm::Pfn>,
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
    /// Live traced page blocks by traced PFN.
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
            vmap: VmapReplay::new(&machine.mm()),
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
                    self.note(mm, ev, &e);
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
}
