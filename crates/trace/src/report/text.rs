//! perf's tables as text: the slab tables (`print_slab_result`) with their callchains, the
//! page tables (`print_page_result`), the input section, two reports side by side, and the
//! number formatting they share (`group`, perf's `%'lu`). Start at
//! `Report::perf_tables_text`.

use std::fmt::Write;

use super::{Report, TextOptions, DOTTED};
use crate::stats::AllocRow;
use crate::stats::{
    sort_by_keys, sort_pages_by_keys, PageSortKey, DEFAULT_PAGE_SORT, DEFAULT_SLAB_SORT,
};
use crate::tables::{compact_gfp, human_gfp};

impl Report {
    /// `--caller` / `--alloc`: perf's slab tables (`print_slab_result`), the call sites'
    /// callchains, and with `--page` perf's page tables (`print_page_result`).
    pub(super) fn perf_tables_text(&self, o: &TextOptions) -> String {
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

    pub(super) fn input_text(&self) -> String {
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
