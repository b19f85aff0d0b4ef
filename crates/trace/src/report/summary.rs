//! The report's summary sections, in the order the text report prints them: perf's slab
//! and page summaries (`print_slab_summary`, `print_page_summary` of
//! `tools/perf/builtin-kmem.c`), vmalloc and kvmalloc, allocation failures, kmemlab's own
//! figures, then the kernel's messages and the `/proc` files. Start at
//! [`Report::summary_lines`].

use std::fmt::Write;

use super::text::{group, percent_or_na};
use super::Report;
use super::DOTTED;
use crate::event::EventName;
use crate::stats::{PERF_MIGRATE_TYPES, PERF_ORDERS};

impl Report {
    /// perf's two summaries and kmemlab's, one line per entry (for side-by-side output).
    pub fn summary_lines(&self) -> Vec<String> {
        self.summary_lines_with(self.kvmalloc.above.is_some())
    }

    /// The summaries, with the kvmalloc section whenever `kvmalloc` (so that two reports
    /// side by side have the same sections in the same rows).
    pub(super) fn summary_lines_with(&self, kvmalloc: bool) -> Vec<String> {
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

    pub(super) fn messages_text(&self) -> String {
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

    pub(super) fn proc_text(&self) -> String {
        format!(
            "\n/proc/buddyinfo\n{}\n/proc/slabinfo\n{}\n/proc/meminfo\n{}",
            self.proc.buddyinfo, self.proc.slabinfo, self.proc.meminfo
        )
    }
}
