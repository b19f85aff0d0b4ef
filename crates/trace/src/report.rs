//! The replay's report: `perf kmem stat`'s tables and summaries (wording and layout of
//! `tools/perf/builtin-kmem.c`), then kmemlab's own figures and `/proc` files; as text,
//! as JSON (serde), or two reports side by side.

use std::collections::BTreeMap;
use std::fmt::Write;

use serde::Serialize;

use crate::classes::SizeClassHint;
use crate::event::EventName;
use crate::reader::InputStats;
use crate::stats::{
    fragmentation, AllocRow, Fidelity, KvmallocSummary, MemoryStats, PageSummary, ReplayCounters,
    Sample, SlabSummary, VmallocSummary, PERF_MIGRATE_TYPES, PERF_ORDERS,
};
use crate::stats::{
    sort_by_keys, sort_pages_by_keys, PageSortKey, SlabSortKey, DEFAULT_PAGE_SORT,
    DEFAULT_SLAB_SORT,
};
use crate::tables::{compact_gfp, human_gfp, Tables};
use kmemlab_sim::{Machine, MachineConfig};

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
            let _ = kmemlab_mm::procfs::render(mm, name, &mut s);
            s
        };
        let check = match mm.check() {
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

    /// The machine in one line: `x86_64, 4 CPUs, 1G RAM, seed 0`.
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
        format!(
            "{}, {} CPU{}, {} RAM, seed {}{debug}{sizes}{kvmalloc}",
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

    /// `--caller` / `--alloc`: perf's slab tables (`print_slab_result`), the call sites'
    /// callchains, and with `--page` perf's page tables (`print_page_result`).
    fn perf_tables_text(&self, o: &TextOptions) -> String {
        let keys = o.slab_sort.as_deref().unwrap_or(&DEFAULT_SLAB_SORT);
        let mut s = String::new();
        if o.caller {
            let mut rows = self.callsites.clone();
            sort_by_keys(&mut rows, keys);
            s.push_str(&table("Callsite", &rows, o.lines));
            s.push_str(&callchains_text(&rows, o.lines));
        }
        if o.alloc {
            let mut rows = self.tables.pointers.clone();
            sort_by_keys(&mut rows, keys);
            s.push_str(&table("Alloc Ptr", &rows, o.lines));
        }
        if self.tables.rows_dropped > 0 {
            let _ = writeln!(
                s,
                "(rows not kept beyond {} pointers or pages: {})",
                group(crate::tables::MAX_ROWS as u64),
                group(self.tables.rows_dropped)
            );
        }
        if o.page {
            s.push_str(&self.page_tables_text(o));
        }
        s
    }

    /// perf's `print_gfp_flags`, `__print_page_caller_result`, `__print_page_alloc_result`.
    fn page_tables_text(&self, o: &TextOptions) -> String {
        let t = &self.tables;
        let keys = o.page_sort.as_deref().unwrap_or(&DEFAULT_PAGE_SORT);
        let live = if t.live_pages { "Live" } else { "Total" };
        let mut gfps: Vec<u32> = t
            .page_callers
            .iter()
            .chain(&t.page_allocs)
            .map(|r| r.gfp)
            .collect();
        gfps.sort_unstable();
        gfps.dedup();
        let compact: Vec<(u32, String)> = gfps.iter().map(|&g| (g, compact_gfp(g))).collect();
        let max_gfp_len = compact.iter().map(|(_, c)| c.len()).max().unwrap_or(0);
        let gfp_len = max_gfp_len.max("GFP flags".len());
        let short = |g: u32| {
            compact
                .iter()
                .find(|(f, _)| *f == g)
                .map_or(String::new(), |(_, c)| c.clone())
        };
        let mut s = String::from("#\n# GFP flags\n# ---------\n");
        for (g, c) in &compact {
            let _ = writeln!(s, "# {g:08x}: {c:>max_gfp_len$}: {}", human_gfp(*g));
        }
        if o.caller {
            page_table(
                &mut s,
                &t.page_callers,
                keys,
                o.lines,
                live,
                gfp_len,
                &short,
                false,
            );
        }
        if o.alloc {
            page_table(
                &mut s,
                &t.page_allocs,
                keys,
                o.lines,
                live,
                gfp_len,
                &short,
                true,
            );
        }
        s
    }

    fn input_text(&self) -> String {
        let i = &self.input;
        let mut s = format!(
            "input: {} lines, {} events, {} other events skipped, {} malformed lines skipped, {} events lost by the kernel\n",
            group(i.lines),
            group(i.events),
            group(i.unknown_events),
            group(i.malformed_skipped),
            group(i.lost_events)
        );
        let counts: Vec<String> = self
            .events
            .iter()
            .filter(|(_, n)| **n > 0)
            .map(|(e, n)| format!("{e} {}", group(*n)))
            .collect();
        if !counts.is_empty() {
            let _ = writeln!(s, "events: {}", counts.join(", "));
        }
        if let Some(m) = &i.first_malformed {
            let _ = writeln!(s, "first malformed line skipped: {m}");
        }
        if !self.unknown_events.is_empty() {
            let v: Vec<String> = self
                .unknown_events
                .iter()
                .map(|(k, n)| format!("{k} {n}"))
                .collect();
            let _ = writeln!(s, "other events (not replayed): {}", v.join(", "));
        }
        if !self.unknown_gfp_flags.is_empty() {
            let v: Vec<String> = self
                .unknown_gfp_flags
                .iter()
                .map(|(k, n)| format!("{k} ({n} events)"))
                .collect();
            let _ = writeln!(
                s,
                "unknown GFP flags (ignored, events kept): {}",
                v.join(", ")
            );
        }
        s
    }

    /// perf's two summaries and kmemlab's, one line per entry (for side-by-side output).
    pub fn summary_lines(&self) -> Vec<String> {
        self.summary_lines_with(self.kvmalloc.above.is_some())
    }

    /// The summaries, with the kvmalloc section whenever `kvmalloc` (so that two reports
    /// side by side have the same sections in the same rows).
    fn summary_lines_with(&self, kvmalloc: bool) -> Vec<String> {
        let mut l = self.slab_summary_lines();
        if self.page.nr_allocs + self.page.nr_frees > 0 {
            l.extend(self.page_summary_lines());
        }
        l.extend(self.failure_lines());
        if self.has_vmalloc_events() {
            l.extend(self.vmalloc_lines());
        }
        if kvmalloc {
            l.extend(self.kvmalloc_lines());
        }
        l.extend(self.kmemlab_lines());
        l
    }

    fn has_vmalloc_events(&self) -> bool {
        EventName::ALL
            .iter()
            .any(|e| e.is_vmalloc() && self.input.count(*e) > 0)
    }

    fn vmalloc_lines(&self) -> Vec<String> {
        let v = &self.vmalloc;
        let lazy_max = v
            .traced_lazy_max_pages
            .map_or_else(|| "not traced".to_string(), group);
        vec![
            String::new(),
            "SUMMARY (vmalloc)".to_string(),
            "=================".to_string(),
            format!(
                "Areas allocated: {} (traced failures {}, outside the vmalloc range {})",
                group(v.traced_allocs),
                group(v.traced_alloc_failures),
                group(v.outside_vmalloc_range)
            ),
            format!(
                "Areas freed (lazily): {} (from before tracing began {})",
                group(v.traced_frees),
                group(v.untracked_frees)
            ),
            format!(
                "Purges in the trace: {} ({} areas)",
                group(v.traced_purges),
                group(v.traced_purged_areas)
            ),
            format!(
                "kmemlab areas reserved: {} (failures {}, live at end {})",
                group(v.reserved),
                group(v.reserve_failures),
                group(v.live_at_end)
            ),
            format!(
                "Peak vmalloc space: {} KiB (kmemlab's areas, guard pages included)",
                group(v.peak_bytes >> 10)
            ),
            format!(
                "kmemlab purges: {} (at the trace's purges {}), {} areas, {} TLB flushes",
                group(v.kmemlab_purges),
                group(v.purges_for_traced),
                group(v.kmemlab_purged_areas),
                group(v.kmemlab_tlb_flushes)
            ),
            format!(
                "lazy_max_pages: traced {lazy_max}, kmemlab {}",
                group(v.kmemlab_lazy_max_pages)
            ),
        ]
    }

    fn kvmalloc_lines(&self) -> Vec<String> {
        let k = &self.kvmalloc;
        let title = match k.above {
            Some(n) => format!("kvmalloc above {} bytes", group(n)),
            None => "kvmalloc: off (kmallocs replayed as kmalloc)".to_string(),
        };
        vec![
            String::new(),
            title,
            "========================".to_string(),
            format!(
                "Served by kmalloc: {}, by vmalloc: {}, failed: {}",
                group(k.via_kmalloc),
                group(k.via_vmalloc),
                group(k.failed)
            ),
        ]
    }

    fn slab_summary_lines(&self) -> Vec<String> {
        let s = &self.slab;
        let mut l = vec![
            String::new(),
            "SUMMARY (SLAB allocator)".to_string(),
            "========================".to_string(),
            format!("Total bytes requested: {}", group(s.total_requested)),
            format!("Total bytes allocated: {}", group(s.total_allocated)),
            format!("Total bytes freed:     {}", group(s.total_freed)),
        ];
        if let Some(net) = s.net_allocated() {
            l.push(format!("Net total bytes allocated: {}", group(net)));
        }
        l.push(format!(
            "Total bytes wasted on internal fragmentation: {}",
            group(s.wasted())
        ));
        l.push(format!("Internal fragmentation: {:.6}%", s.fragmentation()));
        l.push(format!(
            "Cross CPU allocations: {}/{}",
            group(s.nr_cross_allocs),
            group(s.nr_allocs)
        ));
        l
    }

    fn page_summary_lines(&self) -> Vec<String> {
        let p = &self.page;
        let row = |label: &str, n: u64, bytes: u128| {
            format!(
                "{label:<30}: {:>16}   [ {:>16} KB ]",
                group(n),
                group(bytes / 1024)
            )
        };
        let freed = p.nr_frees - p.nr_nomatch;
        let freed_bytes = p.free_bytes - p.nomatch_bytes;
        let mut l = vec![
            String::new(),
            "SUMMARY (page allocator)".to_string(),
            "========================".to_string(),
            row("Total allocation requests", p.nr_allocs, p.alloc_bytes),
            row("Total free requests", p.nr_frees, p.free_bytes),
            String::new(),
            row("Total alloc+freed requests", freed, freed_bytes),
            row(
                "Total alloc-only requests",
                p.nr_allocs.saturating_sub(freed),
                p.alloc_bytes.saturating_sub(freed_bytes),
            ),
            row("Total free-only requests", p.nr_nomatch, p.nomatch_bytes),
            String::new(),
            row("Total allocation failures", p.nr_fails, p.fail_bytes),
            String::new(),
            format!(
                "{:>5}  {:>12}  {:>12}  {:>12}  {:>12}  {:>12}",
                "Order", "Unmovable", "Reclaimable", "Movable", "Reserved", "CMA/Isolated"
            ),
            format!(
                "{}  {}  {}  {}  {}  {}",
                &DOTTED[..5],
                &DOTTED[..12],
                &DOTTED[..12],
                &DOTTED[..12],
                &DOTTED[..12],
                &DOTTED[..12]
            ),
        ];
        for o in 0..PERF_ORDERS {
            let mut line = format!("{o:>5}");
            for m in 0..PERF_MIGRATE_TYPES {
                let n = p.order_stats[o][m];
                if n > 0 {
                    let _ = write!(line, "  {:>12}", group(n));
                } else {
                    let _ = write!(line, "  {:>12}", '.');
                }
            }
            l.push(line);
        }
        l
    }

    fn failure_lines(&self) -> Vec<String> {
        let r = &self.replay;
        vec![
            String::new(),
            "Allocation failures".to_string(),
            "===================".to_string(),
            format!(
                "In the trace: slab {}, page {}",
                group(r.traced_slab_failures),
                group(self.page.nr_fails)
            ),
            "In kmemlab where the traced kernel succeeded:".to_string(),
            format!(
                "  kmalloc {}, kmem_cache_alloc {}, alloc_pages {}",
                group(r.kmalloc_failures),
                group(r.cache_alloc_failures),
                group(r.page_alloc_failures)
            ),
        ]
    }

    fn kmemlab_lines(&self) -> Vec<String> {
        let r = &self.replay;
        let f = &self.fidelity;
        let m = &self.memory;
        let d = &self.derived;
        let mut l = vec![
            String::new(),
            "kmemlab".to_string(),
            "=======".to_string(),
            format!("Events replayed: {}", group(r.replayed)),
            format!(
                "Softirq / hardirq / NMI events: {} / {} / {}",
                group(r.in_softirq),
                group(r.in_hardirq),
                group(r.in_nmi)
            ),
            format!(
                "Irqs-off / bh-off events: {} / {}",
                group(r.irqs_off),
                group(r.bh_off)
            ),
            format!("Events on CPUs wrapped around: {}", group(r.cpu_wrapped)),
            format!(
                "Frees from before tracing began: {}",
                group(r.untracked_frees)
            ),
            format!("NULL frees: {}", group(r.null_frees)),
            format!(
                "Pointers allocated again while live: {}",
                group(r.reused_live_pointer)
            ),
            format!(
                "Frees through the other family: {}",
                group(r.free_kind_mismatch)
            ),
            format!(
                "Page frees of another order: {}",
                group(r.page_order_mismatch)
            ),
            format!(
                "Sleeping allocations in atomic context: {}",
                group(r.sleep_in_atomic)
            ),
            format!(
                "Caches created: {} (shared fallbacks {})",
                group(r.caches_created),
                group(r.shared_cache_fallbacks)
            ),
            format!("Free failures: {}", group(r.free_failures)),
            format!("kmemlab bytes allocated: {}", group(d.kmemlab_allocated)),
            format!(
                "kmemlab internal fragmentation: {:.6}%",
                d.kmemlab_fragmentation_percent
            ),
            format!(
                "kmalloc ksize == bytes_alloc: {}/{} ({})",
                group(f.kmalloc_agreed),
                group(f.kmalloc_checked),
                percent_or_na(d.kmalloc_fidelity_percent)
            ),
        ];
        if let Some(h) = &self.size_class_hint {
            l.push(format!(
                "  traced sizes are other size classes (smallest {}): {} gives {}/{} ({})",
                h.sizes.first().copied().unwrap_or(0),
                h.flag(),
                group(h.agreed),
                group(h.checked),
                percent_or_na(crate::stats::checked_percent(h.agreed, h.checked))
            ));
        }
        l.extend([format!(
            "Cache layout size == bytes_alloc: {}/{} ({})",
            group(f.cache_agreed),
            group(f.cache_checked),
            percent_or_na(d.cache_fidelity_percent)
        )]);
        for mm in f.mismatches.iter().take(8) {
            l.push(format!(
                "  {} of {}: traced {}, kmemlab {} ({}x)",
                mm.event, mm.bytes_req, mm.traced, mm.kmemlab, mm.events
            ));
        }
        l.push(format!(
            "Peak slab memory: {} KiB",
            group(m.peak_slab_bytes >> 10)
        ));
        l.push(format!(
            "Slab memory at end: {} KiB",
            group(m.final_slab_bytes >> 10)
        ));
        l.push(format!(
            "Slab utilisation: {}/{} objects ({:.1}%)",
            group(m.active_objects),
            group(m.total_objects),
            d.slab_utilisation_percent
        ));
        for z in &m.zones {
            l.push(format!(
                "Largest free order, {}: lowest {}, end {}",
                z.zone, z.min, z.last
            ));
        }
        l.push(format!("Live at end: {}", group(r.live_at_end)));
        l.push(format!("check(): {}", self.check));
        l
    }

    fn messages_text(&self) -> String {
        if self.messages.is_empty() {
            return String::new();
        }
        let mut s = format!(
            "\nKernel messages and failures (first {} of {} console lines and failures):\n",
            self.messages.len(),
            self.console_lines
                + self.replay.kmalloc_failures
                + self.replay.cache_alloc_failures
                + self.replay.page_alloc_failures
                + self.replay.free_failures
        );
        for m in &self.messages {
            let _ = writeln!(s, "  {m}");
        }
        s
    }

    fn proc_text(&self) -> String {
        format!(
            "\n/proc/buddyinfo\n{}\n/proc/slabinfo\n{}\n/proc/meminfo\n{}",
            self.proc.buddyinfo, self.proc.slabinfo, self.proc.meminfo
        )
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

/// perf's `migrate_type_str[]`.
fn migrate_type_str(migtype: u32) -> &'static str {
    const NAMES: [&str; 6] = [
        "UNMOVABL", "RECLAIM", "MOVABLE", "RESERVED", "CMA/ISLT", "UNKNOWN",
    ];
    NAMES[(migtype as usize).min(NAMES.len() - 1)]
}

/// The callchains of the first `top` call sites (recorded with `perf record -g`): for
/// each, its commonest stacks, innermost frame first, as `perf script` prints them.
pub fn callchains_text(rows: &[AllocRow], top: usize) -> String {
    let with_stacks: Vec<&AllocRow> = rows
        .iter()
        .take(top)
        .filter(|r| !r.stacks.is_empty())
        .collect();
    if with_stacks.is_empty() {
        return String::new();
    }
    let mut s =
        String::from("\nCallchains of the call sites above (perf script -g), commonest first:\n");
    for r in with_stacks {
        for stack in &r.stacks {
            let _ = writeln!(
                s,
                " {}: {} of {} allocations",
                r.name,
                group(stack.hits),
                group(r.hit)
            );
            for frame in &stack.frames {
                let _ = writeln!(s, "\t{frame}");
            }
        }
    }
    s
}

/// `12.34%`, or `n/a` when nothing was compared.
pub fn percent_or_na(p: Option<f64>) -> String {
    p.map_or_else(|| "n/a".to_string(), |p| format!("{p:.2}%"))
}

/// A perf-style table (`__print_slab_result`) of the `top` rows.
pub fn table(title: &str, rows: &[AllocRow], top: usize) -> String {
    let mut s = String::new();
    let _ = writeln!(s, "{DOTTED}");
    let _ = writeln!(
        s,
        " {title:<34} | Total_alloc/Per | Total_req/Per   | Hit      | Ping-pong | Frag"
    );
    let _ = writeln!(s, "{DOTTED}");
    for r in rows.iter().take(top) {
        let hit = u128::from(r.hit.max(1));
        let _ = writeln!(
            s,
            " {:<34} | {:>9}/{:<5} | {:>9}/{:<5} | {:>8} | {:>9} | {:>6.3}%",
            r.name,
            r.bytes_alloc,
            r.bytes_alloc / hit,
            r.bytes_req,
            r.bytes_req / hit,
            r.hit,
            r.pingpong,
            r.fragmentation()
        );
    }
    if rows.len() > top {
        let _ = writeln!(
            s,
            " ...                                | ...             | ...             | ...      | ...       | ...   "
        );
    }
    let _ = writeln!(s, "{DOTTED}");
    s
}

/// Two reports' summaries side by side, each column headed by its machine.
pub fn side_by_side(a: &Report, b: &Report) -> String {
    const WIDTH: usize = 64;
    let kvmalloc = a.kvmalloc.above.is_some() || b.kvmalloc.above.is_some();
    let left = a.summary_lines_with(kvmalloc);
    let right = b.summary_lines_with(kvmalloc);
    let mut s = String::new();
    let _ = writeln!(
        s,
        "{:<WIDTH$} | B: {}",
        cut(&format!("A: {}", a.machine_line()), WIDTH),
        b.machine_line()
    );
    let _ = writeln!(s, "{:-<WIDTH$}-+-{:-<WIDTH$}", "", "");
    for i in 0..left.len().max(right.len()) {
        let l = left.get(i).map_or("", |x| x.as_str());
        let r = right.get(i).map_or("", |x| x.as_str());
        let _ = writeln!(s, "{:<WIDTH$} | {}", cut(l, WIDTH), r);
    }
    s
}

fn cut(text: &str, width: usize) -> String {
    if text.chars().count() <= width {
        text.to_string()
    } else {
        let mut t: String = text.chars().take(width - 1).collect();
        t.push('~');
        t
    }
}

/// A number with thousands separators, as perf's `%'lu` prints in an English locale.
pub fn group(n: impl Into<u128>) -> String {
    let digits = n.into().to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// One of perf's page tables (`__print_page_caller_result` / `__print_page_alloc_result`):
/// rows sorted by `keys`, at most `lines` of them, with a leading PFN column for the
/// per-page table.
#[allow(clippy::too_many_arguments)]
fn page_table(
    s: &mut String,
    rows: &[crate::tables::PageRow],
    keys: &[PageSortKey],
    lines: usize,
    live: &str,
    gfp_len: usize,
    short: &dyn Fn(u32) -> String,
    with_pfn: bool,
) {
    let mut rows = rows.to_vec();
    sort_pages_by_keys(&mut rows, keys);
    let (head, more) = if with_pfn {
        (format!(" {:<16} |", "PFN"), " ...              |")
    } else {
        (String::new(), "")
    };
    let _ = writeln!(s, "\n{DOTTED}");
    let _ = writeln!(
        s,
        "{head} {live:>5} alloc (KB) | Hits      | Order | Mig.type | {:<gfp_len$} | Callsite",
        "GFP flags"
    );
    let _ = writeln!(s, "{DOTTED}");
    for r in rows.iter().take(lines) {
        let pfn = if with_pfn {
            format!(" {:>16} |", r.page.unwrap_or(0))
        } else {
            String::new()
        };
        let _ = writeln!(
            s,
            "{pfn} {:>16} | {:>9} | {:>5} | {:>8} | {:<gfp_len$} | {}",
            group(r.alloc_bytes / 1024),
            group(r.nr_alloc),
            r.order,
            migrate_type_str(r.migtype),
            short(r.gfp),
            r.callsite
        );
    }
    if rows.len() > lines {
        let _ = writeln!(
            s,
            "{more} ...              | ...       | ...   | ...      | {:<gfp_len$} | ...",
            "..."
        );
    }
    let _ = writeln!(s, "{DOTTED}");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thousands() {
        assert_eq!(group(0u64), "0");
        assert_eq!(group(999u64), "999");
        assert_eq!(group(1000u64), "1,000");
        assert_eq!(group(1234567u64), "1,234,567");
        assert_eq!(
            group(u128::from(u64::MAX) + 1),
            "18,446,744,073,709,551,616"
        );
    }
}
