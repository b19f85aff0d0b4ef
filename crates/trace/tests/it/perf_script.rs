//! `perf script` text (issue 14, item 5): the output of `perf script` on `perf kmem
//! record` / `perf record -e 'kmem:*'` data, with `-g` callchains, read by both the fast
//! path and the general parser, which agree.

use kmemlab_sim::{Machine, MachineConfig};
use kmemlab_trace::{replay, EventName, Line, LineParser, ReplayOptions, TraceReader};

/// Lines as `perf script` prints them (tools/perf/builtin-script.c: comm right-aligned in
/// 16 columns, tid, `[CPU]`, `SECS.USECS:`, `subsystem:event:`, the tracepoint's format).
const PERF_SCRIPT: &str = "\
            perf 24970 [000]  3442.427504: kmem:kmalloc: call_site=sched_setaffinity+0x127 ptr=0xffff88810475a3e0 bytes_req=32 bytes_alloc=32 gfp_flags=GFP_KERNEL node=-1 accounted=false
\tffffffff812a3b4c __kmalloc+0x1ac ([kernel.kallsyms])
\tffffffff810d1f17 sched_setaffinity+0x127 ([kernel.kallsyms])
\t    7f1c2a4e1a2d [unknown] (/usr/lib/x86_64-linux-gnu/libc.so.6)

 kworker/u8:2-ev   141 [003]  3442.427611: kmem:kmem_cache_alloc: call_site=alloc_buffer_head+0x21 ptr=0xffff888100b1c000 bytes_req=104 bytes_alloc=104 gfp_flags=GFP_NOFS|__GFP_NOFAIL node=-1 accounted=true
            perf 24970 [000]  3442.427700: kmem:kfree: call_site=sched_setaffinity+0x1f2 ptr=0xffff88810475a3e0
 Web Content  1234 [001]  3442.427800: kmem:mm_page_alloc: page=0xffffea0004a3c000 pfn=0x128f00 order=1 migratetype=0 gfp_flags=GFP_KERNEL
 kworker/u8:2-ev   141 [002]  3442.427900: kmem:kmem_cache_free: call_site=free_buffer_head+0x21 ptr=0xffff888100b1c000 name=buffer_head
 Web Content  1234 [001]  3442.428000: kmem:mm_page_free: page=0xffffea0004a3c000 pfn=0x128f00 order=1
            perf 24970 [000]  3442.428100: sched:sched_switch: prev_comm=perf prev_pid=24970
";

#[test]
fn perf_script_lines_parse_as_their_events() {
    let mut parser = LineParser::default();
    let mut names = Vec::new();
    let mut frames = 0;
    for (i, line) in PERF_SCRIPT.lines().enumerate() {
        match parser.parse(i as u64 + 1, line) {
            Ok(Line::Event(ev)) => names.push((ev.name, ev.pid, ev.cpu)),
            Ok(Line::Callchain(_)) => frames += 1,
            Ok(_) => {}
            Err(why) => panic!("line {} {line:?}: {why}", i + 1),
        }
    }
    assert_eq!(frames, 3);
    assert_eq!(
        names,
        [
            (EventName::Kmalloc, 24970, 0),
            (EventName::KmemCacheAlloc, 141, 3),
            (EventName::Kfree, 24970, 0),
            (EventName::MmPageAlloc, 1234, 1),
            (EventName::KmemCacheFree, 141, 2),
            (EventName::MmPageFree, 1234, 1),
        ]
    );
    assert_eq!(
        parser.unknown_events(),
        [("sched:sched_switch".to_string(), 1)]
    );
}

#[test]
fn fast_path_reads_perf_script_lines_and_agrees_with_the_general_parser() {
    let mut on_fast_path = 0;
    for (i, line) in PERF_SCRIPT.lines().enumerate() {
        let mut fast = LineParser::default();
        let Some(quick) = fast.parse_fast_only(i as u64 + 1, line.as_bytes()) else {
            continue;
        };
        on_fast_path += 1;
        let mut general = LineParser::default();
        assert_eq!(
            general.parse_general_only(i as u64 + 1, line),
            Ok(Line::Event(quick)),
            "{line:?}"
        );
        assert_eq!(fast.symbols.len(), general.symbols.len(), "{line:?}");
    }
    // The slab lines of the common shape take the fast path.
    assert!(on_fast_path >= 4, "{on_fast_path} lines on the fast path");
}

#[test]
fn perf_script_text_replays_like_ftrace_text() {
    let machine = Machine::new(MachineConfig::default()).expect("boot");
    let mut reader = TraceReader::new(PERF_SCRIPT.as_bytes(), false);
    let r = replay(
        &machine,
        &mut reader,
        &ReplayOptions::default(),
        &mut |_| {},
    )
    .expect("no malformed line");
    assert_eq!(r.input.events, 6);
    assert_eq!(r.input.callchain_frames, 3);
    assert_eq!(r.input.unknown_events, 1);
    assert_eq!(r.input.malformed_skipped, 0);
    assert_eq!(r.slab.total_requested, 32 + 104);
    assert_eq!(r.slab.total_freed, 32 + 104);
    assert_eq!((r.page.nr_allocs, r.page.nr_frees), (1, 1));
    assert_eq!(r.replay.live_at_end, 0);
    assert_eq!(
        (r.fidelity.kmalloc_checked, r.fidelity.kmalloc_agreed),
        (1, 1)
    );
    assert!(r
        .callsites
        .iter()
        .any(|c| c.name == "sched_setaffinity+0x127"));
    assert_eq!(r.check, "ok");
}

#[test]
fn lines_that_only_look_like_frames_or_perf_lines_are_malformed() {
    let mut parser = LineParser::default();
    // Not indented: no frame, and no [CPU] bracket either.
    assert!(parser
        .parse(1, "ffffffff812a3b4c __kmalloc+0x1ac ([kernel.kallsyms])")
        .is_err());
    // A perf line whose pid is not a number.
    assert!(parser
        .parse(
            2,
            "perf x24970 [000] 1.0: kmem:kfree: call_site=c1 ptr=0x10"
        )
        .is_err());
}
