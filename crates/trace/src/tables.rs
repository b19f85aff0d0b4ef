//! `perf kmem stat`'s tables beyond the per-call-site one (tools/perf/builtin-kmem.c,
//! Linux 6.6): `--alloc`'s per-pointer slab table (`insert_alloc_stat`), `--page`'s
//! per-page and per-call-site tables (`evsel__process_page_alloc_event` /
//! `_free_event`, `--live` for the pages still allocated), and the callchains of each
//! slab call site (`perf script -g`). Collected only when asked for: each table can hold
//! a row per distinct pointer or page, at most [`MAX_ROWS`].

use serde::Serialize;

use crate::callchain::{self, Callchains, Frame};
use crate::event::CallSite;
use crate::hash::FxHashMap;
use crate::parse::Symbols;
use crate::stats::{AllocRow, Stack};
use kmemlab_mm::Gfp;

/// The most rows of one table (pointers or pages); further ones are counted, not kept.
pub const MAX_ROWS: usize = 1 << 18;

/// The most (call site, chain) pairs counted.
const MAX_SITE_CHAINS: usize = 1 << 18;

/// Stacks kept per call site, commonest first.
pub const STACKS_PER_SITE: usize = 3;

/// Which of perf's tables to collect.
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq)]
pub struct TableOptions {
    /// `--alloc`: the per-pointer slab table.
    pub by_pointer: bool,
    /// `--page`: the page allocator's tables.
    pub pages: bool,
    /// `--live`: the page tables hold the pages still allocated at the end.
    pub live_pages: bool,
}

/// A page call site: the frame `find_callsite` chose (`symbol == u32::MAX`: none).
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash)]
struct PageSite {
    addr: u64,
    symbol: u32,
}

const NO_SITE: PageSite = PageSite {
    addr: 0,
    symbol: u32::MAX,
};

impl Default for PageSite {
    fn default() -> Self {
        NO_SITE
    }
}

/// A row of perf's `page_stat`.
#[derive(Copy, Clone, Debug, Default)]
struct PageStat {
    /// The call site of the last allocation counted.
    site: PageSite,
    alloc_bytes: u128,
    free_bytes: u128,
    nr_alloc: i64,
    nr_free: i64,
}

/// A page still allocated: what its free needs to find its rows.
#[derive(Copy, Clone)]
struct LivePage {
    order: u32,
    migtype: u32,
    gfp: u32,
    site: PageSite,
    stat: PageStat,
}

/// One slab pointer's row while collecting.
#[derive(Clone)]
struct PointerStat {
    site: CallSite,
    bytes_req: u128,
    bytes_alloc: u128,
    hit: u64,
    pingpong: u64,
}

/// The tables as the replay collects them.
#[derive(Default)]
pub(crate) struct PerfTables {
    options: TableOptions,
    pointers: FxHashMap<u64, PointerStat>,
    site_chains: FxHashMap<(u32, u32), u64>,
    live: FxHashMap<u64, LivePage>,
    by_page: FxHashMap<(u64, u32, u32, u32), PageStat>,
    by_site: FxHashMap<(PageSite, u32, u32, u32), PageStat>,
    dropped: u64,
}

impl PerfTables {
    pub(crate) fn new(options: TableOptions) -> PerfTables {
        PerfTables {
            options,
            ..PerfTables::default()
        }
    }

    /// A slab allocation at call-site row `row`.
    pub(crate) fn slab_alloc(
        &mut self,
        row: u32,
        site: CallSite,
        ptr: u64,
        bytes: (u64, u64),
        chain: Option<u32>,
    ) {
        if let Some(chain) = chain {
            let len = self.site_chains.len();
            match self.site_chains.get_mut(&(row, chain)) {
                Some(n) => *n += 1,
                None if len < MAX_SITE_CHAINS => {
                    self.site_chains.insert((row, chain), 1);
                }
                None => self.dropped += 1,
            }
        }
        if !self.options.by_pointer {
            return;
        }
        let len = self.pointers.len();
        let (req, alloc) = (u128::from(bytes.0), u128::from(bytes.1));
        match self.pointers.get_mut(&ptr) {
            Some(p) => {
                p.site = site;
                p.hit += 1;
                p.bytes_req += req;
                p.bytes_alloc += alloc;
            }
            None if len < MAX_ROWS => {
                self.pointers.insert(
                    ptr,
                    PointerStat {
                        site,
                        bytes_req: req,
                        bytes_alloc: alloc,
                        hit: 1,
                        pingpong: 0,
                    },
                );
            }
            None => self.dropped += 1,
        }
    }

    /// A free of `ptr` on another CPU than the one that allocated it.
    pub(crate) fn slab_pingpong(&mut self, ptr: u64) {
        if let Some(p) = self.pointers.get_mut(&ptr) {
            p.pingpong += 1;
        }
    }

    /// `mm_page_alloc` of a page that was allocated; the page's call site is found in
    /// `chain` as `find_callsite` finds it.
    pub(crate) fn page_alloc(
        &mut self,
        (pfn, order, migtype): (u64, u32, u32),
        gfp: Gfp,
        chain: Option<u32>,
        chains: &Callchains,
        symbols: &Symbols,
    ) {
        if !self.options.pages {
            return;
        }
        let site = chain
            .and_then(|c| callchain::page_call_site(chains.get(c), symbols))
            .map_or(NO_SITE, |f: Frame| PageSite {
                addr: f.addr,
                symbol: f.symbol,
            });
        let bytes = page_bytes(order);
        let gfp = gfp.bits();
        let fits = self.live.len() < MAX_ROWS;
        let live = match self.live.get_mut(&pfn) {
            Some(l) => Some(l),
            None if fits => Some(self.live.entry(pfn).or_insert(LivePage {
                order,
                migtype,
                gfp,
                site,
                stat: PageStat::default(),
            })),
            None => None,
        };
        match live {
            Some(l) => {
                l.stat.nr_alloc += 1;
                l.stat.alloc_bytes += bytes;
                l.site = site;
            }
            None => self.dropped += 1,
        }
        if !self.options.live_pages {
            let key = (pfn, order, migtype, gfp);
            add_alloc(&mut self.by_page, key, site, bytes, &mut self.dropped);
        }
        let key = (site, order, migtype, gfp);
        add_alloc(&mut self.by_site, key, site, bytes, &mut self.dropped);
    }

    /// `mm_page_free` of `pfn`; with `--live`, the (order, migrate type) whose count
    /// perf's order table takes back.
    pub(crate) fn page_free(&mut self, pfn: u64, order: u32) -> Option<(u32, u32)> {
        if !self.options.pages {
            return None;
        }
        let l = self.live.remove(&pfn)?;
        let bytes = page_bytes(order);
        if !self.options.live_pages
            && let Some(s) = self.by_page.get_mut(&(pfn, order, l.migtype, l.gfp))
        {
            s.nr_free += 1;
            s.free_bytes += bytes;
        }
        let key = (l.site, order, l.migtype, l.gfp);
        if let Some(s) = self.by_site.get_mut(&key) {
            s.nr_free += 1;
            s.free_bytes += bytes;
            if self.options.live_pages {
                s.nr_alloc -= 1;
                s.alloc_bytes = s.alloc_bytes.saturating_sub(bytes);
                if s.nr_alloc <= 0 {
                    self.by_site.remove(&key);
                }
            }
        }
        self.options.live_pages.then_some((order, l.migtype))
    }

    /// The tables for the report; `site_name` names a call site, `rows` are the
    /// call-site rows, whose stacks are filled in.
    pub(crate) fn finish(
        self,
        site_name: &dyn Fn(CallSite) -> String,
        sites: &mut [AllocRow],
        chains: &Callchains,
        symbols: &Symbols,
        kallsyms: Option<&crate::kallsyms::Kallsyms>,
    ) -> Tables {
        fill_stacks(sites, &self.site_chains, chains, symbols);
        let pointers = self
            .pointers
            .iter()
            .map(|(&ptr, p)| AllocRow {
                name: format!("{ptr:#x}"),
                ptr,
                site: site_name(p.site),
                bytes_alloc: p.bytes_alloc,
                bytes_req: p.bytes_req,
                hit: p.hit,
                pingpong: p.pingpong,
                stacks: Vec::new(),
            })
            .collect();
        let page_name = |s: PageSite| page_site_name(s, symbols, kallsyms);
        let page_allocs: Vec<PageRow> = if self.options.live_pages {
            self.live
                .iter()
                .map(|(&pfn, l)| {
                    page_row(
                        Some(pfn),
                        l.site,
                        l.order,
                        l.migtype,
                        l.gfp,
                        &l.stat,
                        &page_name,
                    )
                })
                .collect()
        } else {
            self.by_page
                .iter()
                .map(|(&(pfn, order, mt, gfp), s)| {
                    page_row(Some(pfn), s.site, order, mt, gfp, s, &page_name)
                })
                .collect()
        };
        let page_callers = self
            .by_site
            .iter()
            .map(|(&(site, order, mt, gfp), s)| page_row(None, site, order, mt, gfp, s, &page_name))
            .collect();
        Tables {
            pointers,
            page_allocs,
            page_callers,
            live_pages: self.options.live_pages,
            rows_dropped: self.dropped,
        }
    }
}

fn add_alloc<K: std::hash::Hash + Eq>(
    map: &mut FxHashMap<K, PageStat>,
    key: K,
    site: PageSite,
    bytes: u128,
    dropped: &mut u64,
) {
    let len = map.len();
    match map.get_mut(&key) {
        Some(s) => {
            s.nr_alloc += 1;
            s.alloc_bytes += bytes;
            s.site = site;
        }
        None if len < MAX_ROWS => {
            map.insert(
                key,
                PageStat {
                    site,
                    nr_alloc: 1,
                    alloc_bytes: bytes,
                    ..PageStat::default()
                },
            );
        }
        None => *dropped += 1,
    }
}

fn page_bytes(order: u32) -> u128 {
    4096u128 << order.min(64)
}

/// The commonest chains of each call-site row, as text.
fn fill_stacks(
    sites: &mut [AllocRow],
    counts: &FxHashMap<(u32, u32), u64>,
    chains: &Callchains,
    symbols: &Symbols,
) {
    let mut per_row: FxHashMap<u32, Vec<(u64, u32)>> = FxHashMap::default();
    for (&(row, chain), &n) in counts {
        per_row.entry(row).or_default().push((n, chain));
    }
    for (row, mut list) in per_row {
        list.sort_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(&b.1)));
        let Some(site) = sites.get_mut(row as usize) else {
            continue;
        };
        site.stacks = list
            .iter()
            .take(STACKS_PER_SITE)
            .map(|&(hits, chain)| Stack {
                hits,
                frames: chains
                    .get(chain)
                    .iter()
                    .map(|f| format!("{:x} {}", f.addr, symbols.name(f.symbol)))
                    .collect(),
            })
            .collect();
    }
}

/// perf prints a page call site as the function's name (`sym->name`), or its address
/// in bare hex when it has no symbol.
fn page_site_name(
    s: PageSite,
    symbols: &Symbols,
    kallsyms: Option<&crate::kallsyms::Kallsyms>,
) -> String {
    if s == NO_SITE {
        return "(no callchain)".to_string();
    }
    let name = symbols.name(s.symbol);
    if name != "[unknown]" {
        return callchain::function(name).to_string();
    }
    match kallsyms.and_then(|k| k.resolve(s.addr)) {
        Some(n) => callchain::function(&n).to_string(),
        None => format!("{:x}", s.addr),
    }
}

fn page_row(
    page: Option<u64>,
    site: PageSite,
    order: u32,
    migtype: u32,
    gfp: u32,
    s: &PageStat,
    name: &dyn Fn(PageSite) -> String,
) -> PageRow {
    PageRow {
        page,
        callsite: name(site),
        callsite_addr: site.addr,
        order,
        migtype,
        gfp,
        alloc_bytes: s.alloc_bytes,
        free_bytes: s.free_bytes,
        nr_alloc: s.nr_alloc.max(0) as u64,
        nr_free: s.nr_free.max(0) as u64,
    }
}

/// One row of a page table (perf's `page_stat`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct PageRow {
    /// The page frame number (the per-page table), `None` in the per-call-site table.
    pub page: Option<u64>,
    /// The call site: the first function of the callchain outside the page allocator.
    pub callsite: String,
    /// Its address (for the `callsite` sort key).
    pub callsite_addr: u64,
    /// The order.
    pub order: u32,
    /// The traced migrate type number.
    pub migtype: u32,
    /// The GFP flags, in kmemlab's (Linux 6.6) bit values.
    pub gfp: u32,
    /// Bytes allocated (with `--live`: still allocated).
    pub alloc_bytes: u128,
    /// Bytes freed.
    pub free_bytes: u128,
    /// Allocations (perf's Hits; with `--live`: still allocated).
    pub nr_alloc: u64,
    /// Frees.
    pub nr_free: u64,
}

/// perf's tables, as collected.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct Tables {
    /// `--alloc`: one row per slab pointer.
    pub pointers: Vec<AllocRow>,
    /// `--page --alloc`: one row per page (order, migrate type and flags).
    pub page_allocs: Vec<PageRow>,
    /// `--page --caller`: one row per call site (order, migrate type and flags).
    pub page_callers: Vec<PageRow>,
    /// `--live`: the page tables hold what was still allocated at the end.
    pub live_pages: bool,
    /// Rows not kept (more than [`MAX_ROWS`] pointers or pages).
    pub rows_dropped: u64,
}

/// perf's `gfp_compact_table` (tools/perf/builtin-kmem.c): each flag name of the
/// `%pGg` string and its short form; names not in it are left out.
const GFP_COMPACT: &[(&str, &str)] = &[
    ("GFP_TRANSHUGE", "THP"),
    ("GFP_TRANSHUGE_LIGHT", "THL"),
    ("GFP_HIGHUSER_MOVABLE", "HUM"),
    ("GFP_HIGHUSER", "HU"),
    ("GFP_USER", "U"),
    ("GFP_KERNEL_ACCOUNT", "KAC"),
    ("GFP_KERNEL", "K"),
    ("GFP_NOFS", "NF"),
    ("GFP_ATOMIC", "A"),
    ("GFP_NOIO", "NI"),
    ("GFP_NOWAIT", "NW"),
    ("GFP_DMA", "D"),
    ("__GFP_HIGHMEM", "HM"),
    ("GFP_DMA32", "D32"),
    ("__GFP_HIGH", "H"),
    ("__GFP_ATOMIC", "_A"),
    ("__GFP_IO", "I"),
    ("__GFP_FS", "F"),
    ("__GFP_NOWARN", "NWR"),
    ("__GFP_RETRY_MAYFAIL", "R"),
    ("__GFP_NOFAIL", "NF"),
    ("__GFP_NORETRY", "NR"),
    ("__GFP_COMP", "C"),
    ("__GFP_ZERO", "Z"),
    ("__GFP_NOMEMALLOC", "NMA"),
    ("__GFP_MEMALLOC", "MA"),
    ("__GFP_HARDWALL", "HW"),
    ("__GFP_THISNODE", "TN"),
    ("__GFP_RECLAIMABLE", "RC"),
    ("__GFP_MOVABLE", "M"),
    ("__GFP_ACCOUNT", "AC"),
    ("__GFP_WRITE", "WR"),
    ("__GFP_RECLAIM", "R"),
    ("__GFP_DIRECT_RECLAIM", "DR"),
    ("__GFP_KSWAPD_RECLAIM", "KR"),
];

/// `compact_gfp_flags`: the `%pGg` string of `gfp` in perf's short forms (`K|Z`).
pub fn compact_gfp(gfp: u32) -> String {
    let human = Gfp::from_bits_retain(gfp).to_string();
    let short: Vec<&str> = human
        .split('|')
        .filter_map(|name| {
            GFP_COMPACT
                .iter()
                .find(|(n, _)| *n == name)
                .map(|(_, c)| *c)
        })
        .collect();
    short.join("|")
}

/// `%pGg` of `gfp` (`GFP_KERNEL|__GFP_ZERO`).
pub fn human_gfp(gfp: u32) -> String {
    Gfp::from_bits_retain(gfp).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compact_forms_as_perf() {
        assert_eq!(compact_gfp(Gfp::GFP_KERNEL.bits()), "K");
        assert_eq!(
            compact_gfp((Gfp::GFP_KERNEL | Gfp::__GFP_ZERO).bits()),
            "K|Z"
        );
        assert_eq!(compact_gfp(Gfp::GFP_HIGHUSER_MOVABLE.bits()), "HUM");
    }
}
