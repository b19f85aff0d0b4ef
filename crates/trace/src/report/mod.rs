//! The replay's report: `perf kmem stat`'s tables and summaries (wording and layout of
//! `tools/perf/builtin-kmem.c`), then kmemlab's own figures and `/proc` files; as text,
//! as JSON (serde), or two reports side by side.
//!
//! Where things are: this file holds the data ([`Report`], built by [`Report::build`] from
//! what the replay gathered) and the text report's order ([`Report::to_text_with`]);
//! `summary.rs` writes the summary sections (perf's slab and page summaries, vmalloc,
//! kvmalloc, kmemlab's own figures, messages, `/proc`); `text.rs` writes perf's tables and
//! callchains, the input section, two reports side by side, and the number formatting they
//! share. Start at [`Report::to_text_with`].

use std::collections::BTreeMap;
use std::fmt::Write;

use serde::Serialize;

use crate::classes::SizeClassHint;
use crate::event::EventName;
use crate::reader::InputStats;
use crate::stats::{
    fragmentation, AllocRow, Fidelity, KvmallocSummary, MemoryStats, PageSummary, ReplayCounters,
    Sample, SlabSummary, VmallocSummary,
};
use crate::stats::{PageSortKey, SlabSortKey};
use crate::tables::Tables;
use kmemlab_sim::{Machine, MachineConfig};

mod summary;
mod text;

pub use text::{callchains_text, group, percent_or_na, side_by_side, table};

/// perf's `graph_dotted_line`, cut at 105 columns as perf prints it.
const DOTTED: &str = "---------------------------------------------------------------------------------------------------------";

/// The `/proc` files at the end of the replay.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct ProcFiles {
    /// `/proc/buddyinfo`.
    pub buddyinfo: String,
    /// `/proc/slabinfo`.
    pub slabinfo: String,
    /// `/proc/meminfo`.
    pub meminfo: String,
}

/// Figures derived from the slab summary, as perf prints them.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct SlabDerived {
    /// `Net total bytes allocated` (absent when perf would not print it).
    pub net_allocated: Option<u128>,
    /// `Total bytes wasted on internal fragmentation`.
    pub wasted: u128,
    /// `Internal fragmentation`, percent.
    pub fragmentation_percent: f64,
    /// kmemlab's bytes for the same allocations (`ksize` / cache object size).
    pub kmemlab_allocated: u128,
    /// kmemlab's internal fragmentation over the allocations it replayed, percent.
    pub kmemlab_fragmentation_percent: f64,
    /// kmalloc `ksize` agreement with `bytes_alloc`, percent (`None`: none compared).
    pub kmalloc_fidelity_percent: Option<f64>,
    /// Agreement of kmemlab's `s->size` for the traced object size with `bytes_alloc`,
    /// percent (`None`: none compared).
    pub cache_fidelity_percent: Option<f64>,
    /// active / total slab objects at the end, percent.
    pub slab_utilisation_percent: f64,
}

/// Everything a replay found.
#[derive(Clone, Debug, Serialize)]
pub struct Report {
    /// The machine replayed on.
    pub machine: MachineConfig,
    /// The machine's kmalloc size classes, if not the kernel's (`--kmalloc-sizes`).
    pub kmalloc_sizes: Option<Vec<usize>>,
    /// What the input held.
    pub input: InputStats,
    /// Events per tracepoint name.
    pub events: BTreeMap<&'static str, u64>,
    /// Well-formed lines of events not handled, by name.
    pub unknown_events: BTreeMap<String, u64>,
    /// GFP flag names not known, and how many events carried each.
    pub unknown_gfp_flags: BTreeMap<String, u64>,
    /// perf's slab summary (the traced kernel's numbers).
    pub slab: SlabSummary,
    /// Derived figures.
    pub derived: SlabDerived,
    /// perf's page-allocator summary.
    pub page: PageSummary,
    /// The vmalloc events: traced, and replayed on kmemlab's vmalloc.
    pub vmalloc: VmallocSummary,
    /// `--kvmalloc-above`: how the large kmallocs went.
    pub kvmalloc: KvmallocSummary,
    /// Per call site (traced numbers), most waste first.
    pub callsites: Vec<AllocRow>,
    /// Per kmemlab cache (requested bytes from the trace, allocated bytes from kmemlab),
    /// most waste first.
    pub caches: Vec<AllocRow>,
    /// perf's per-pointer and page tables (`--alloc`, `--page`), when collected.
    pub tables: Tables,
    /// What happened on the machine.
    pub replay: ReplayCounters,
    /// kmemlab sizes against the traced kernel's.
    pub fidelity: Fidelity,
    /// The `--kmalloc-sizes` the trace's own classes call for, when they agree better.
    pub size_class_hint: Option<SizeClassHint>,
    /// Memory figures.
    pub memory: MemoryStats,
    /// The memory time series.
    pub samples: Vec<Sample>,
    /// The first kernel messages and failure reasons.
    pub messages: Vec<String>,
    /// Kernel console lines printed during the replay.
    pub console_lines: u64,
    /// `/proc` at the end.
    pub proc: ProcFiles,
    /// `check()` of the allocators at the end: `ok` or the first broken invariant.
    pub check: String,
}

/// What [`Report::build`] is made from.
pub(crate) struct ReportParts<'m> {
    pub machine: &'m Machine,
    pub input: InputStats,
    pub unknown_events: Vec<(String, u64)>,
    pub unknown_gfp_flags: Vec<(String, u64)>,
    pub slab: SlabSummary,
    pub page: PageSummary,
    pub vmalloc: VmallocSummary,
    pub kvmalloc: KvmallocSummary,
    pub callsites: Vec<AllocRow>,
    pub caches: Vec<AllocRow>,
    pub tables: Tables,
    pub counters: ReplayCounters,
    pub fidelity: Fidelity,
    pub size_class_hint: Option<SizeClassHint>,
    pub memory: MemoryStats,
    pub samples: Vec<Sample>,
    pub messages: Vec<String>,
    pub console_lines: u64,
}

impl Report {
    pub(crate) fn build(p: ReportParts<'_>) -> Report {
        let mm = p.machine.mm();
        let proc_file = |name: &str| {
            let mut s = String::new();
            let _ = kmemlab_mm::procfs::render(&mm, name, &mut s);
            s
        };
        let check = match p.machine.check() {
            Ok(_) => "ok".to_string(),
            Err(e) => e.to_string(),
        };
        let (req, alloc) = p.caches.iter().fold((0, 0), |(r, a), row| {
            (r + row.bytes_req, a + row.bytes_alloc)
        });
        let derived = SlabDerived {
            net_allocated: p.slab.net_allocated(),
            wasted: p.slab.wasted(),
            fragmentation_percent: p.slab.fragmentation(),
            kmemlab_allocated: alloc,
            kmemlab_fragmentation_percent: fragmentation(req, alloc),
            kmalloc_fidelity_percent: p.fidelity.kmalloc_percent(),
            cache_fidelity_percent: p.fidelity.cache_percent(),
            slab_utilisation_percent: p.memory.slab_utilisation(),
        };
        Report {
            machine: p.machine.config().clone(),
            kmalloc_sizes: p
                .machine
                .config()
                .slab
                .kmalloc_sizes
                .map(|k| k.sizes().collect()),
            events: EventName::ALL
                .iter()
                .map(|e| (e.as_str(), p.input.count(*e)))
                .collect(),
            input: p.input,
            unknown_events: p.unknown_events.into_iter().collect(),
            unknown_gfp_flags: p.unknown_gfp_flags.into_iter().collect(),
            slab: p.slab,
            derived,
            page: p.page,
            vmalloc: p.vmalloc,
            kvmalloc: p.kvmalloc,
            callsites: p.callsites,
            caches: p.caches,
            tables: p.tables,
            replay: p.counters,
            fidelity: p.fidelity,
            size_class_hint: p.size_class_hint,
            memory: p.memory,
            samples: p.samples,
            messages: p.messages,
            console_lines: p.console_lines,
            proc: ProcFiles {
                buddyinfo: proc_file("buddyinfo"),
                slabinfo: proc_file("slabinfo"),
                meminfo: proc_file("meminfo"),
            },
            check,
        }
    }

    /// The machine in one line: `x86_64, 4 CPUs, 1G RAM, seed 0`, then what differs from
    /// the defaults (`slab_debug`, kmalloc sizes, kvmalloc threshold, the sheaves).
    pub fn machine_line(&self) -> String {
        let m = &self.machine;
        let debug = m.slab.debug;
        let debug = if debug.is_empty() {
            String::new()
        } else {
            format!(", slab_debug {debug:?}")
        };
        let sizes = match &self.kmalloc_sizes {
            Some(sizes) => {
                let list: Vec<String> = sizes.iter().map(|s| s.to_string()).collect();
                format!(", kmalloc sizes {}", list.join(","))
            }
            None => String::new(),
        };
        let kvmalloc = match self.kvmalloc.above {
            Some(n) => format!(", kvmalloc above {n}"),
            None => String::new(),
        };
        // The per-CPU layer, named when it is not the default (so that the two sides of
        // a `--compare "--slab-percpu sheaves"` can be told apart).
        let percpu = match m.slab.percpu {
            kmemlab_mm::slab::sheaf::SlabPercpu::CpuSlab => "",
            kmemlab_mm::slab::sheaf::SlabPercpu::Sheaves => ", slab-percpu sheaves",
        };
        format!(
            "{}, {} CPU{}, {} RAM, seed {}{debug}{sizes}{kvmalloc}{percpu}",
            m.profile.name(),
            m.cpus,
            if m.cpus == 1 { "" } else { "s" },
            kmemlab_sim::format_size(m.ram),
            m.seed
        )
    }

    /// The whole report as text; the tables show the `top` rows with the most waste.
    pub fn to_text(&self, top: usize) -> String {
        self.to_text_with(&TextOptions {
            lines: top,
            ..TextOptions::default()
        })
    }

    /// The whole report as text, with the tables `options` choose.
    pub fn to_text_with(&self, options: &TextOptions) -> String {
        let top = options.lines;
        let mut out = String::new();
        let _ = writeln!(out, "kmemlab replay on {}", self.machine_line());
        out.push_str(&self.input_text());
        out.push('\n');
        if options.caller || options.alloc {
            out.push_str(&self.perf_tables_text(options));
        } else {
            out.push_str(&table("Callsite", &self.callsites, top));
        }
        out.push('\n');
        out.push_str(&table("Cache (kmemlab)", &self.caches, top));
        for line in self.summary_lines() {
            out.push_str(&line);
            out.push('\n');
        }
        out.push_str(&self.messages_text());
        out.push_str(&self.proc_text());
        out
    }
}

/// Which of perf's tables the text report prints, and how.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TextOptions {
    /// `--caller`: perf's per-call-site slab table, with the call sites' callchains (and
    /// with `page`, the per-call-site page table).
    pub caller: bool,
    /// `--alloc`: perf's per-pointer slab table (and with `page`, the per-page table).
    pub alloc: bool,
    /// `--page`: the page tables too.
    pub page: bool,
    /// `-l N`: rows per table.
    pub lines: usize,
    /// `-s` for the slab tables (default perf's `frag,hit,bytes`).
    pub slab_sort: Option<Vec<SlabSortKey>>,
    /// `-s` with `--page`, for the page tables (default perf's `bytes,hit`).
    pub page_sort: Option<Vec<PageSortKey>>,
}

impl Default for TextOptions {
    /// Without `--caller` or `--alloc`: the call-site and cache tables, 20 rows each.
    fn default() -> Self {
        TextOptions {
            caller: false,
            alloc: false,
            page: false,
            lines: 20,
            slab_sort: None,
            page_sort: None,
        }
    }
}
