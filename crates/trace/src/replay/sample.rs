//! The memory time series (samples after events), kernel messages kept, and the
//! report built at the end of a replay.

use super::{Replayer, MAX_MESSAGES, MAX_SAMPLES};
use std::io::BufRead;

use kmemlab_mm::Mm;

use crate::event::{CallSite, TraceEvent};
use crate::parse::Symbols;
use crate::reader::TraceReader;
use crate::report::Report;
use crate::stats::{AllocRow, MemoryStats, Sample, SizeMismatch, ZoneOrders};
use kmemlab_sim::SimPlatform;

impl Replayer<'_> {
    /// Note an operation's error: a failed allocation's summary completed with the page
    /// allocator's report of it ([`Mm::with_alloc_failure_detail`]).
    pub(super) fn note(
        &mut self,
        mm: &Mm<SimPlatform>,
        ev: &TraceEvent,
        e: &dyn std::fmt::Display,
    ) {
        let e = e.to_string();
        let e = mm.with_alloc_failure_detail(&e);
        self.note_message(format!("line {}: {}: {e}", ev.line, ev.name.as_str()));
    }

    pub(super) fn note_message(&mut self, message: String) {
        if self.messages.len() < MAX_MESSAGES {
            self.messages.push(message);
        }
    }

    /// Peak slab memory after every event; a sample every `sample_interval` events.
    pub(super) fn after_event(&mut self, mm: &Mm<SimPlatform>) {
        self.peak_slab_pages = self.peak_slab_pages.max(slab_pages(mm));
        self.since_sample += 1;
        if self.since_sample >= self.sample_interval {
            self.since_sample = 0;
            self.take_sample(mm);
        }
    }

    pub(super) fn take_sample(&mut self, mm: &Mm<SimPlatform>) {
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

    pub(super) fn drain_console(&mut self) {
        for line in self.machine.take_console() {
            self.console_lines += 1;
            self.note_message(line);
        }
    }

    /// The report, read from the machine on the boot CPU.
    pub(super) fn finish<R: BufRead>(mut self, reader: &TraceReader<R>) -> Report {
        let mm = self.machine.mm();
        self.take_sample(&mm);
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
        crate::stats::sort_by_waste(&mut callsites);
        let mut caches = std::mem::take(&mut self.cache_rows);
        crate::stats::sort_by_waste(&mut caches);
        self.fidelity.mismatches = self.sorted_mismatches();
        let memory = self.memory_stats(&mm);
        let mut pairs: Vec<crate::classes::SizePair> = self
            .kmalloc_pairs
            .iter()
            .map(|(&(req, alloc), &n)| (req, alloc, n))
            .collect();
        pairs.sort_unstable();
        let size_class_hint = crate::classes::hint(&pairs, self.fidelity.kmalloc_agreed);
        let vmalloc = self.vmap.finish(&mm);
        Report::build(crate::report::ReportParts {
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
    pub(super) fn call_site_name(&self, site: CallSite, symbols: &Symbols) -> String {
        if let (CallSite::Addr(addr), Some(k)) = (site, &self.options.kallsyms)
            && let Some(name) = k.resolve(addr)
        {
            return name;
        }
        symbols.call_site(site)
    }

    pub(super) fn sorted_mismatches(&self) -> Vec<SizeMismatch> {
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

    pub(super) fn memory_stats(&self, mm: &Mm<SimPlatform>) -> MemoryStats {
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

/// Slab and large-kmalloc pages (`SReclaimable + SUnreclaim`).
pub(super) fn slab_pages(mm: &Mm<SimPlatform>) -> u64 {
    mm.slab_pages().total()
}

/// The highest order with a free block in `zone` (-1: none), from the zone's `nr_free`
/// counters (`Mm::free_area_counts`): O(orders) whatever the machine's RAM, where a walk
/// of the free lists grows with it.
pub(super) fn largest_free_order(mm: &Mm<SimPlatform>, zone: &kmemlab_mm::Zone) -> i8 {
    let counts = mm.free_area_counts(zone);
    counts
        .nr_free
        .iter()
        .rposition(|&n| n > 0)
        .map_or(-1, |o| o as i8)
}
