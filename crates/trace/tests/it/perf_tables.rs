//! perf kmem stat's further tables (issue 14, item 5): `--alloc`'s per-pointer table,
//! `--page`'s per-call-site and per-page tables with `--live`, and `perf script -g`
//! callchains attached to their events, kept per call site and used to find a page
//! allocation's call site as perf's `find_callsite` does.

use kmemlab_sim::{Machine, MachineConfig};
use kmemlab_trace::stats::{
    parse_page_sort, parse_slab_sort, sort_by_keys, sort_pages_by_keys, PageSortKey, SlabSortKey,
};
use kmemlab_trace::tables::{TableOptions, Tables};
use kmemlab_trace::{replay, ReplayOptions, Report, TextOptions, TraceReader};

/// `perf script` on `perf record -g -e 'kmem:*'` data: each event's callchain below it,
/// innermost frame first, a blank line after it.
const PERF_SCRIPT_G: &str = "\
            perf   100 [000]    10.000001: kmem:kmalloc: call_site=sched_setaffinity+0x127 ptr=0xffff888100001000 bytes_req=30 bytes_alloc=32 gfp_flags=GFP_KERNEL node=-1 accounted=false
\tffffffff812a3b4c __kmalloc+0x1ac ([kernel.kallsyms])
\tffffffff810d1f17 sched_setaffinity+0x127 ([kernel.kallsyms])
\tffffffff810d2050 __x64_sys_sched_setaffinity+0x50 ([kernel.kallsyms])

            perf   100 [001]    10.000002: kmem:kfree: call_site=sched_setaffinity+0x1f2 ptr=0xffff888100001000
\tffffffff812a0010 kfree+0x10 ([kernel.kallsyms])

            perf   100 [000]    10.000003: kmem:kmalloc: call_site=sched_setaffinity+0x127 ptr=0xffff888100001000 bytes_req=20 bytes_alloc=32 gfp_flags=GFP_KERNEL node=-1 accounted=false
\tffffffff812a3b4c __kmalloc+0x1ac ([kernel.kallsyms])
\tffffffff810d1f17 sched_setaffinity+0x127 ([kernel.kallsyms])
\tffffffff810d2050 __x64_sys_sched_setaffinity+0x50 ([kernel.kallsyms])

            perf   100 [000]    10.000004: kmem:kmalloc: call_site=sched_setaffinity+0x127 ptr=0xffff888100002000 bytes_req=8 bytes_alloc=8 gfp_flags=GFP_KERNEL node=-1 accounted=false
\tffffffff812a3b4c __kmalloc+0x1ac ([kernel.kallsyms])
\tffffffff810d1f17 sched_setaffinity+0x127 ([kernel.kallsyms])
\tffffffff810d3010 do_other+0x10 ([kernel.kallsyms])

            perf   100 [000]    10.000005: sched:sched_switch: prev_comm=perf prev_pid=100
\tffffffff81900000 __schedule+0x300 ([kernel.kallsyms])

     kworker/0:1    20 [000]    10.000006: kmem:mm_page_alloc: page=0xffffea0000040000 pfn=0x1000 order=0 migratetype=0 gfp_flags=GFP_KERNEL
\tffffffff81200100 __alloc_pages+0x100 ([kernel.kallsyms])
\tffffffff81200820 alloc_pages+0x20 ([kernel.kallsyms])
\tffffffff81300030 pte_alloc_one+0x30 ([kernel.kallsyms])
\tffffffff81300810 __pte_alloc+0x10 ([kernel.kallsyms])

     kworker/0:1    20 [000]    10.000007: kmem:mm_page_alloc: page=0xffffea0000080000 pfn=0x2000 order=1 migratetype=0 gfp_flags=GFP_KERNEL|__GFP_ZERO
\tffffffff81200100 __alloc_pages+0x100 ([kernel.kallsyms])
\tffffffff81400040 kmalloc_large+0x40 ([kernel.kallsyms])

     kworker/0:1    20 [000]    10.000008: kmem:mm_page_free: page=0xffffea0000040000 pfn=0x1000 order=0
\tffffffff81500010 free_unref_page+0x10 ([kernel.kallsyms])
";

fn run(text: &str, tables: TableOptions) -> Report {
    let machine = Machine::new(MachineConfig::default()).expect("boot");
    let mut reader = TraceReader::new(text.as_bytes(), false);
    let options = ReplayOptions {
        tables,
        ..ReplayOptions::default()
    };
    replay(&machine, &mut reader, &options, &mut |_| {}).expect("replay")
}

fn all_tables(live: bool) -> TableOptions {
    TableOptions {
        by_pointer: true,
        pages: true,
        live_pages: live,
    }
}

#[test]
fn callchains_come_with_their_events_and_are_kept_per_call_site() {
    let r = run(PERF_SCRIPT_G, TableOptions::default());
    assert_eq!(r.input.events, 7);
    assert_eq!(r.input.callchain_frames, 3 + 1 + 3 + 3 + 1 + 4 + 2 + 1);
    assert_eq!(r.input.unknown_events, 1);
    let site = r
        .callsites
        .iter()
        .find(|c| c.name == "sched_setaffinity+0x127")
        .expect("the kmalloc call site");
    assert_eq!((site.hit, site.bytes_alloc, site.bytes_req), (3, 72, 58));
    // Two stacks, the commonest first, innermost frame first.
    assert_eq!(site.stacks.len(), 2);
    assert_eq!(site.stacks[0].hits, 2);
    assert_eq!(
        site.stacks[0].frames,
        [
            "ffffffff812a3b4c __kmalloc+0x1ac",
            "ffffffff810d1f17 sched_setaffinity+0x127",
            "ffffffff810d2050 __x64_sys_sched_setaffinity+0x50",
        ]
    );
    assert_eq!(site.stacks[1].hits, 1);
    assert_eq!(site.stacks[1].frames[2], "ffffffff810d3010 do_other+0x10");
    // The kfree's frame is not an allocation's: its site has no stacks.
    assert!(r.callsites.iter().all(|c| c.hit > 0 || c.stacks.is_empty()));
    // Without --alloc / --page nothing else is collected.
    assert_eq!(r.tables, Tables::default());
    let text = r.to_text_with(&TextOptions {
        caller: true,
        ..TextOptions::default()
    });
    assert!(
        text.contains(
            "sched_setaffinity+0x127: 2 of 3 allocations\n\tffffffff812a3b4c __kmalloc+0x1ac\n"
        ),
        "{text}"
    );
}

#[test]
fn per_pointer_table_sums_reuse_and_counts_pingpong() {
    let r = run(PERF_SCRIPT_G, all_tables(false));
    let mut rows = r.tables.pointers.clone();
    sort_by_keys(&mut rows, &[SlabSortKey::Ptr]);
    let got: Vec<(u64, u64, u128, u128, u64, &str)> = rows
        .iter()
        .map(|p| {
            (
                p.ptr,
                p.hit,
                p.bytes_alloc,
                p.bytes_req,
                p.pingpong,
                p.site.as_str(),
            )
        })
        .collect();
    assert_eq!(
        got,
        [
            (0xffff888100002000, 1, 8, 8, 0, "sched_setaffinity+0x127"),
            (0xffff888100001000, 2, 64, 50, 1, "sched_setaffinity+0x127"),
        ]
    );
    let text = r.to_text_with(&TextOptions {
        alloc: true,
        slab_sort: Some(vec![SlabSortKey::Hit]),
        ..TextOptions::default()
    });
    assert!(
        text.contains(" Alloc Ptr                          | Total_alloc/Per | Total_req/Per   | Hit      | Ping-pong | Frag\n"),
        "{text}"
    );
    assert!(
        text.contains(" 0xffff888100001000                 |        64/32    |        50/25    |        2 |         1 | 21.875%\n"),
        "{text}"
    );
}

#[test]
fn page_tables_find_the_call_site_below_the_page_allocator() {
    let r = run(PERF_SCRIPT_G, all_tables(false));
    let mut callers = r.tables.page_callers.clone();
    sort_pages_by_keys(&mut callers, &[PageSortKey::Bytes, PageSortKey::Hit]);
    let got: Vec<(&str, u32, u128, u64, u64)> = callers
        .iter()
        .map(|p| {
            (
                p.callsite.as_str(),
                p.order,
                p.alloc_bytes,
                p.nr_alloc,
                p.nr_free,
            )
        })
        .collect();
    assert_eq!(
        got,
        [
            ("kmalloc_large", 1, 8192, 1, 0),
            ("pte_alloc_one", 0, 4096, 1, 1)
        ]
    );
    let mut pages = r.tables.page_allocs.clone();
    sort_pages_by_keys(&mut pages, &[PageSortKey::Page]);
    let got: Vec<(Option<u64>, u64, u64)> = pages
        .iter()
        .map(|p| (p.page, p.nr_alloc, p.nr_free))
        .collect();
    assert_eq!(got, [(Some(0x2000), 1, 0), (Some(0x1000), 1, 1)]);
    let text = r.to_text_with(&TextOptions {
        caller: true,
        alloc: true,
        page: true,
        ..TextOptions::default()
    });
    for needle in [
        "# GFP flags\n# ---------\n# 00000cc0:   K: GFP_KERNEL\n# 00000dc0: K|Z: GFP_KERNEL|__GFP_ZERO\n",
        " Total alloc (KB) | Hits      | Order | Mig.type | GFP flags | Callsite\n",
        "                8 |         1 |     1 | UNMOVABL | K|Z       | kmalloc_large\n",
        " PFN              | Total alloc (KB) | Hits      | Order | Mig.type | GFP flags | Callsite\n",
        "             4096 |                4 |         1 |     0 | UNMOVABL | K         | pte_alloc_one\n",
    ] {
        assert!(text.contains(needle), "{needle:?} in\n{text}");
    }
}

#[test]
fn live_pages_are_those_never_freed() {
    let r = run(PERF_SCRIPT_G, all_tables(true));
    assert!(r.tables.live_pages);
    let callers: Vec<&str> = r
        .tables
        .page_callers
        .iter()
        .map(|p| p.callsite.as_str())
        .collect();
    assert_eq!(callers, ["kmalloc_large"]);
    let pages: Vec<Option<u64>> = r.tables.page_allocs.iter().map(|p| p.page).collect();
    assert_eq!(pages, [Some(0x2000)]);
    // perf's order table counts the live blocks: the order-0 page was freed.
    assert_eq!(r.page.order_stats[0][0], 0);
    assert_eq!(r.page.order_stats[1][0], 1);
    let all = run(PERF_SCRIPT_G, all_tables(false));
    assert_eq!(all.page.order_stats[0][0], 1);
    let text = r.to_text_with(&TextOptions {
        caller: true,
        page: true,
        ..TextOptions::default()
    });
    assert!(text.contains("  Live alloc (KB) | Hits "), "{text}");
}

#[test]
fn a_page_without_a_callchain_says_so() {
    let text = "  kworker/0:1    20 [000]    10.000006: kmem:mm_page_alloc: page=0xffffea0000040000 pfn=0x1000 order=0 migratetype=2 gfp_flags=GFP_HIGHUSER_MOVABLE\n";
    let r = run(text, all_tables(false));
    assert_eq!(r.tables.page_callers.len(), 1);
    assert_eq!(r.tables.page_callers[0].callsite, "(no callchain)");
    assert_eq!(r.tables.page_callers[0].migtype, 2);
}

#[test]
fn frames_with_no_event_above_or_no_dso_are_malformed() {
    let machine = Machine::new(MachineConfig::default()).expect("boot");
    for (text, needle) in [
        (
            "\tffffffff812a3b4c __kmalloc+0x1ac ([kernel.kallsyms])\n",
            "line 1: a callchain frame with no event line above it",
        ),
        (
            &format!(
                "{}\n\tffffffff812a3b4c __kmalloc+0x1ac\n",
                PERF_SCRIPT_G.lines().next().unwrap_or_default()
            ),
            "line 2: a callchain frame must read ADDRESS SYMBOL (DSO)",
        ),
        (
            "# header\n\tffffffff812a3b4c ([kernel.kallsyms])\n",
            "line 2: a callchain frame has no symbol",
        ),
    ] {
        let mut reader = TraceReader::new(text.as_bytes(), false);
        let err = replay(
            &machine,
            &mut reader,
            &ReplayOptions::default(),
            &mut |_| {},
        )
        .map(|_| ())
        .expect_err(text);
        assert!(err.to_string().contains(needle), "{err} for {text:?}");
        // Lenient mode skips and counts the line.
        let mut reader = TraceReader::new(text.as_bytes(), true);
        let r = replay(
            &machine,
            &mut reader,
            &ReplayOptions::default(),
            &mut |_| {},
        )
        .expect("lenient");
        assert_eq!(r.input.malformed_skipped, 1, "{text:?}");
    }
}

#[test]
fn sort_keys_are_perfs_and_unknown_ones_are_errors_in_its_words() {
    assert_eq!(
        parse_slab_sort("frag,hit,bytes"),
        Ok(vec![
            SlabSortKey::Frag,
            SlabSortKey::Hit,
            SlabSortKey::Bytes
        ])
    );
    assert_eq!(
        parse_page_sort("page,callsite,hit,bytes,order,migtype,gfp").map(|v| v.len()),
        Ok(7)
    );
    let e = parse_slab_sort("hit,bogus").expect_err("bogus");
    assert!(e.starts_with("Unknown slab --sort key: 'bogus'"), "{e}");
    let e = parse_slab_sort("order").expect_err("a page key");
    assert!(e.contains("a page key"), "{e}");
    let e = parse_page_sort("frag").expect_err("a slab key");
    assert!(e.starts_with("Unknown page --sort key: 'frag'"), "{e}");
}

#[test]
fn per_pointer_rows_add_up_to_the_summary_on_a_real_trace() {
    let path = crate::trace_path("linux-3.5-i386-boot-slub.trace");
    let text = std::fs::read_to_string(path).expect("read trace");
    let r = run(&text, all_tables(false));
    let hits: u64 = r.tables.pointers.iter().map(|p| p.hit).sum();
    let bytes: u128 = r.tables.pointers.iter().map(|p| p.bytes_alloc).sum();
    let req: u128 = r.tables.pointers.iter().map(|p| p.bytes_req).sum();
    assert_eq!(hits, r.slab.nr_allocs);
    assert_eq!(bytes, r.slab.total_allocated);
    assert_eq!(req, r.slab.total_requested);
    let pingpong: u64 = r.tables.pointers.iter().map(|p| p.pingpong).sum();
    let site_pingpong: u64 = r.callsites.iter().map(|c| c.pingpong).sum();
    assert_eq!(pingpong, site_pingpong);
    // No callchains in ftrace text: no stacks, and no page events: no page rows.
    assert!(r.callsites.iter().all(|c| c.stacks.is_empty()));
    assert!(r.tables.page_callers.is_empty());
}

#[test]
fn a_chain_deeper_than_the_limit_is_cut_and_counted() {
    use kmemlab_trace::callchain::MAX_FRAMES;
    let mut text = PERF_SCRIPT_G.lines().next().unwrap_or_default().to_string();
    text.push('\n');
    for i in 0..MAX_FRAMES + 6 {
        text.push_str(&format!(
            "\tffffffff8100{i:04x} f{i}+0x1 ([kernel.kallsyms])\n"
        ));
    }
    let r = run(&text, TableOptions::default());
    assert_eq!(r.input.callchain_frames, MAX_FRAMES as u64 + 6);
    assert_eq!(r.input.callchains_cut, 1);
    let stacks = &r.callsites[0].stacks;
    assert_eq!(stacks.len(), 1);
    assert_eq!(stacks[0].frames.len(), MAX_FRAMES);
    assert_eq!(stacks[0].frames[0], "ffffffff81000000 f0+0x1");
}
