//! The trace parser on every format variant: old and new kernels, ftrace and trace-cmd,
//! flags columns of 4 and 5 characters, NULL pointers, hashed pointers, symbolic call
//! sites, task names with spaces and colons, malformed and truncated lines.

use kmemlab_mm::{Context, Gfp};
use kmemlab_trace::{
    CallSite, Event, EventName, Line, LineParser, TraceContext, TraceError, TraceEvent, TraceReader,
};

fn parse(line: &str) -> (TraceEvent, LineParser) {
    let mut p = LineParser::default();
    match p.parse(7, line) {
        Ok(Line::Event(ev)) => (ev, p),
        other => panic!("{line:?} parsed as {other:?}"),
    }
}

fn slab_alloc(ev: &TraceEvent) -> kmemlab_trace::SlabAlloc {
    match ev.event {
        Event::Kmalloc(a) | Event::CacheAlloc(a) => a,
        other => panic!("not an allocation: {other:?}"),
    }
}

fn slab_free(ev: &TraceEvent) -> kmemlab_trace::SlabFree {
    match ev.event {
        Event::Kfree(f) | Event::CacheFree(f) => f,
        other => panic!("not a free: {other:?}"),
    }
}

#[test]
fn linux_3_5_kmalloc_line() {
    let (ev, _) = parse("            init-1     [000] .N..     0.170000: kmalloc: call_site=c104de4f ptr=c143de20 bytes_req=29 bytes_alloc=32 gfp_flags=GFP_KERNEL");
    assert_eq!(ev.line, 7);
    assert_eq!((ev.cpu, ev.pid), (0, 1));
    assert_eq!(ev.ctx, TraceContext::PROCESS);
    assert_eq!(ev.timestamp_ns, 170_000_000);
    assert_eq!(ev.name, EventName::Kmalloc);
    let a = slab_alloc(&ev);
    assert_eq!(a.call_site, CallSite::Addr(0xc104de4f));
    assert_eq!(a.ptr, 0xc143de20);
    assert_eq!((a.bytes_req, a.bytes_alloc), (29, 32));
    assert_eq!(a.gfp, Gfp::GFP_KERNEL);
    assert_eq!((a.node, a.accounted, a.cache_name), (None, None, None));
}

#[test]
fn old_gfp_spelling_without_underscores() {
    let (ev, p) = parse("init-1 [000] .N.. 0.17: kmem_cache_alloc: call_site=c10bc38e ptr=c1614f80 bytes_req=64 bytes_alloc=64 gfp_flags=GFP_KERNEL|GFP_ZERO");
    assert_eq!(slab_alloc(&ev).gfp, Gfp::GFP_KERNEL | Gfp::__GFP_ZERO);
    assert_eq!(p.gfp.unknown_counts().count(), 0);
}

#[test]
fn null_frees_in_every_spelling() {
    for ptr in [
        "ptr=  (null)",
        "ptr=(null)",
        "ptr=0000000000000000",
        "ptr=00000000",
    ] {
        let line = format!("init-1 [000] .N.. 0.170000: kfree: call_site=c10c283a {ptr}");
        let (ev, _) = parse(&line);
        assert_eq!(ev.name, EventName::Kfree);
        let f = slab_free(&ev);
        assert_eq!(f.ptr, 0, "{line}");
        assert_eq!(f.call_site, CallSite::Addr(0xc10c283a));
    }
}

#[test]
fn newer_kernel_kmalloc_with_node_accounted_symbols_and_hashed_pointers() {
    let (ev, p) = parse("           <...>-4242    [002] d..1.  1234.567890123: kmalloc: call_site=getname_flags+0x4f/0x1f0 ptr=000000006c8b2d1e bytes_req=4096 bytes_alloc=4096 gfp_flags=GFP_KERNEL node=-1 accounted=false");
    assert_eq!((ev.cpu, ev.pid), (2, 4242));
    assert!(ev.ctx.irqs_off);
    assert_eq!(ev.ctx.kind, Context::Process);
    assert_eq!(ev.timestamp_ns, 1_234_567_890_123);
    let a = slab_alloc(&ev);
    assert_eq!(a.ptr, 0x6c8b2d1e);
    assert_eq!(a.node, Some(-1));
    assert_eq!(a.accounted, Some(false));
    let CallSite::Symbol(id) = a.call_site else {
        panic!("symbolic call site expected")
    };
    assert_eq!(p.symbols.name(id), "getname_flags+0x4f/0x1f0");
    let (ev, _) = parse("bash-1 [000] ..... 1.0: kmalloc: call_site=kvmalloc_node+0x3e/0xf0 ptr=ffff888004d8f000 bytes_req=8 bytes_alloc=8 gfp_flags=GFP_KERNEL_ACCOUNT|__GFP_ZERO node=0 accounted=true");
    let a = slab_alloc(&ev);
    assert_eq!(a.accounted, Some(true));
    assert_eq!(a.gfp, Gfp::GFP_KERNEL_ACCOUNT | Gfp::__GFP_ZERO);
}

#[test]
fn module_symbols_keep_their_bracket() {
    let (ev, p) = parse("kworker/0:1-11 [000] ...1. 5.5: kfree: call_site=ext4_fill_super+0x1c2/0x2a80 [ext4] ptr=ffff888003f0e000");
    let f = slab_free(&ev);
    let CallSite::Symbol(id) = f.call_site else {
        panic!()
    };
    assert_eq!(p.symbols.name(id), "ext4_fill_super+0x1c2/0x2a80 [ext4]");
    assert_eq!(f.ptr, 0xffff888003f0e000);
}

#[test]
fn node_events() {
    let (ev, _) = parse("swapper/0-1 [000] .... 0.1: kmalloc_node: call_site=ffffffff8113b5e8 ptr=ffff88003e8c6000 bytes_req=512 bytes_alloc=512 gfp_flags=GFP_KERNEL|__GFP_ZERO node=0");
    assert_eq!(ev.name, EventName::KmallocNode);
    assert_eq!(slab_alloc(&ev).node, Some(0));
    let (ev, _) = parse("swapper/0-1 [000] .... 0.1: kmem_cache_alloc_node: call_site=ffffffff8113b5e8 ptr=ffff88003e8c6000 bytes_req=192 bytes_alloc=192 gfp_flags=GFP_KERNEL node=-1");
    assert_eq!(ev.name, EventName::KmemCacheAllocNode);
    assert!(matches!(ev.event, Event::CacheAlloc(_)));
}

#[test]
fn cache_names_on_free_and_on_newer_allocs() {
    let (ev, p) = parse("rcuc/1-22 [001] ..s1. 9.9: kmem_cache_free: call_site=rcu_do_batch+0x1a2/0x4f0 ptr=00000000b1e0a5b4 name=dentry");
    let f = slab_free(&ev);
    assert_eq!(ev.ctx.kind, Context::Softirq);
    assert_eq!(p.symbols.name(f.cache_name.unwrap()), "dentry");
    let (ev, p) = parse("bash-9 [000] ..... 9.9: kmem_cache_alloc: call_site=alloc_inode+0x5c/0xb0 ptr=0000000012345678 bytes_req=1056 bytes_alloc=1088 gfp_flags=GFP_KERNEL node=-1 accounted=true name=ext4_inode_cache");
    let a = slab_alloc(&ev);
    assert_eq!(p.symbols.name(a.cache_name.unwrap()), "ext4_inode_cache");
    assert_eq!((a.bytes_req, a.bytes_alloc), (1056, 1088));
}

#[test]
fn contexts_from_four_and_five_character_flags() {
    let cases: [(&str, Context, bool, bool, bool); 10] = [
        ("....", Context::Process, false, false, false),
        (".N..", Context::Process, false, false, false),
        ("d...", Context::Process, false, true, false),
        ("..s.", Context::Softirq, false, false, false),
        ("d.h.", Context::Hardirq, false, true, false),
        ("d.H1", Context::Hardirq, true, true, false),
        ("d.Z1.", Context::Nmi, false, true, false),
        ("d.z..", Context::Nmi, false, true, false),
        ("b..1.", Context::Process, false, false, true),
        ("D.s2.", Context::Softirq, false, true, true),
    ];
    for (flags, kind, in_softirq, irqs_off, bh_off) in cases {
        let line = format!("task-1 [003] {flags} 1.000001: kfree: call_site=c1 ptr=c2");
        let (ev, _) = parse(&line);
        assert_eq!(
            ev.ctx,
            TraceContext {
                kind,
                in_softirq,
                irqs_off,
                bh_off
            },
            "{flags}"
        );
        assert_eq!(ev.cpu, 3);
        assert_eq!(ev.timestamp_ns, 1_000_001_000);
    }
}

#[test]
fn task_names_with_spaces_colons_and_brackets() {
    for (task, pid) in [
        ("kworker/u8:2-1234", 1234),
        ("Web Content-5678", 5678),
        ("a [1] b-9", 9),
        ("<idle>-0", 0),
        ("Chrome_IOThread:x-77", 77),
        ("sh-15", 15),
    ] {
        let line = format!("{task:>16}  [001] d.h. 3.5: kmalloc: call_site=c1 ptr=c2 bytes_req=1 bytes_alloc=8 gfp_flags=GFP_ATOMIC");
        let (ev, _) = parse(&line);
        assert_eq!((ev.pid, ev.cpu), (pid, 1), "{line}");
        assert_eq!(ev.ctx.kind, Context::Hardirq);
    }
}

#[test]
fn trace_cmd_report_lines() {
    // No flags column; padded pid; event names padded with spaces.
    let (ev, _) = parse("          bash-1234  [000]  5103.454291: kmalloc:              call_site=ffffffff811c6a0e ptr=0xffff88003d7d2c00 bytes_req=128 bytes_alloc=128 gfp_flags=GFP_KERNEL");
    assert_eq!((ev.pid, ev.cpu), (1234, 0));
    assert_eq!(ev.ctx, TraceContext::PROCESS);
    assert_eq!(slab_alloc(&ev).ptr, 0xffff88003d7d2c00);
    // trace-cmd with the latency flags, and the tgid column of ftrace.
    let (ev, _) = parse("     trace-cmd-3071  [001] d..2  5103.454300: kfree:                call_site=ffffffff811c6a0e ptr=(null)");
    assert!(ev.ctx.irqs_off);
    assert_eq!(slab_free(&ev).ptr, 0);
    let (ev, _) =
        parse("            bash-1977  (   1977) [000] .... 17.0: kfree: call_site=c1 ptr=c2");
    assert_eq!(ev.pid, 1977);
    // Header lines of trace-cmd and ftrace are comments.
    let mut p = LineParser::default();
    for header in [
        "version = 6",
        "cpus=4",
        "CPU 0 is empty",
        "CPU3 data recorded at offset=0x5a4000",
        "# tracer: nop",
        "",
        "   ",
    ] {
        assert_eq!(p.parse(1, header), Ok(Line::Comment), "{header:?}");
    }
    assert_eq!(p.parse(1, "CPU:2 [LOST 1234 EVENTS]"), Ok(Line::Lost(1234)));
}

/// Lost-event counts as large as a `u64` holds, twice: the reader's total stays at the
/// largest count rather than overflowing (the fuzzer's `attempt to add with overflow`).
#[test]
fn lost_events_add_up_without_overflow() {
    let max = u64::MAX;
    let text = format!("CPU:0 [LOST {max} EVENTS]\nCPU:1 [LOST {max} EVENTS]\n");
    let mut reader = TraceReader::new(text.as_bytes(), false);
    assert!(matches!(reader.next_event(), Ok(None)));
    assert_eq!(reader.stats().lost_events, u64::MAX);
}

#[test]
fn page_events_old_and_new() {
    let (ev, _) = parse("bash-1 [000] .... 1.0: mm_page_alloc: page=f6b3c0a0 pfn=12345 order=2 migratetype=0 gfp_flags=GFP_KERNEL|GFP_COMP");
    assert_eq!(
        ev.event,
        Event::PageAlloc {
            pfn: Some(12345),
            order: 2,
            migratetype: 0,
            gfp: Gfp::GFP_KERNEL | Gfp::__GFP_COMP
        }
    );
    let (ev, _) = parse("bash-1 [000] ..... 1.0: mm_page_alloc: page=00000000a1b2c3d4 pfn=0x1a2b3 order=0 migratetype=1 gfp_flags=GFP_HIGHUSER_MOVABLE|__GFP_ZERO");
    assert!(matches!(
        ev.event,
        Event::PageAlloc {
            pfn: Some(0x1a2b3),
            order: 0,
            migratetype: 1,
            ..
        }
    ));
    // A failed allocation: page is NULL (pfn printed as 0).
    for page in ["page=(null) pfn=0", "page=0000000000000000 pfn=0x0"] {
        let line = format!("bash-1 [000] .... 1.0: mm_page_alloc: {page} order=9 migratetype=1 gfp_flags=GFP_TRANSHUGE");
        let (ev, _) = parse(&line);
        assert!(
            matches!(
                ev.event,
                Event::PageAlloc {
                    pfn: None,
                    order: 9,
                    ..
                }
            ),
            "{line}"
        );
    }
    let (ev, _) = parse("bash-1 [000] .... 1.0: mm_page_free: page=f6b3c0a0 pfn=12345 order=2");
    assert_eq!(
        ev.event,
        Event::PageFree {
            pfn: 12345,
            order: 2
        }
    );
    let (ev, _) = parse(
        "bash-1 [000] .... 1.0: mm_page_free_batched: page=f6b3c0a0 pfn=12345 order=0 cold=0",
    );
    assert_eq!(
        ev.event,
        Event::PageFree {
            pfn: 12345,
            order: 0
        }
    );
    let (ev, _) = parse(
        "bash-1 [000] ..... 1.0: mm_page_free_batched: page=00000000a1b2c3d4 pfn=0x3039 order=0",
    );
    assert_eq!(
        ev.event,
        Event::PageFree {
            pfn: 0x3039,
            order: 0
        }
    );
}

#[test]
fn vmalloc_events() {
    let (ev, _) = parse("insmod-300 [001] ..... 42.0: alloc_vmap_area: va_start: 18446683600570023936 size=8192 align=1 vstart=0xffffc90000000000 vend=0xffffe8ffffffffff failed=0");
    assert_eq!(
        ev.event,
        Event::AllocVmapArea {
            addr: 18446683600570023936,
            size: 8192,
            align: 1,
            vstart: 0xffffc90000000000,
            vend: 0xffffe8ffffffffff,
            failed: false
        }
    );
    let (ev, _) = parse("insmod-300 [001] ..... 42.1: free_vmap_area_noflush: va_start=0xffffc90000005000 nr_lazy=2 nr_lazy_max=32768");
    assert_eq!(
        ev.event,
        Event::FreeVmapArea {
            addr: 0xffffc90000005000,
            nr_lazy: 2,
            nr_lazy_max: 32768
        }
    );
    let (ev, _) = parse("kworker/1:0-9 [001] ..... 42.2: purge_vmap_area_lazy: start=0xffffc90000005000 end=0xffffc90000009000 num_purged=2");
    assert_eq!(
        ev.event,
        Event::PurgeVmapAreas {
            start: 0xffffc90000005000,
            end: 0xffffc90000009000,
            purged: 2
        }
    );
}

/// The vmalloc tracepoints (Linux 5.11 and later) in the other shapes a trace takes:
/// `trace-cmd report` (no flags column, TGID, padded event names), 4-character flags
/// of kernels before the migrate-disable column, i386 addresses, a failed allocation
/// (5.x/6.6 trace `addr == vend`), and contexts.
#[test]
fn vmalloc_events_in_every_variant() {
    let alloc = |ev: &TraceEvent| match ev.event {
        Event::AllocVmapArea {
            addr,
            size,
            align,
            vstart,
            vend,
            failed,
        } => (addr, size, align, vstart, vend, failed),
        other => panic!("not alloc_vmap_area: {other:?}"),
    };
    // trace-cmd report: no flags column, the event name padded.
    let (ev, _) = parse("     systemd-udevd-233   [003]    12.000400: alloc_vmap_area:      va_start: 18446683600576315392 size=2101248 align=2097152 vstart=0xffffc90000000000 vend=0xffffe8ffffffffff failed=0");
    assert_eq!(
        alloc(&ev),
        (
            0xffffc90000600000,
            2101248,
            2097152,
            0xffffc90000000000,
            0xffffe8ffffffffff,
            false
        )
    );
    assert_eq!((ev.cpu, ev.pid), (3, 233));
    assert_eq!(ev.ctx, TraceContext::PROCESS);
    // ftrace with a TGID column and 4 flag characters (5.11 - 5.13).
    let (ev, _) = parse("   modprobe-412     (    412) [000] .... 3.5: alloc_vmap_area: va_start: 4160749568 size=12288 align=1 vstart=0xf8000000 vend=0xff7fe000 failed=0");
    assert_eq!(
        alloc(&ev),
        (0xf8000000, 12288, 1, 0xf8000000, 0xff7fe000, false)
    );
    // A failure: va_start is vend.
    let (ev, _) = parse("a b:c-7 [001] ..... 1.0: alloc_vmap_area: va_start: 18446718784942112767 size=35184372088832 align=1 vstart=0xffffc90000000000 vend=0xffffe8ffffffffff failed=1");
    assert!(alloc(&ev).5);
    // i386 frees and purges, in hard-IRQ and softirq context.
    let (ev, _) = parse("<idle>-0 [000] d.h. 9.0: free_vmap_area_noflush: va_start=0xf8003000 nr_lazy=3 nr_lazy_max=8192");
    assert_eq!(ev.ctx.kind, Context::Hardirq);
    assert_eq!(
        ev.event,
        Event::FreeVmapArea {
            addr: 0xf8003000,
            nr_lazy: 3,
            nr_lazy_max: 8192
        }
    );
    let (ev, _) = parse("ksoftirqd/0-9 [000] ..s1. 9.5: purge_vmap_area_lazy: start=0xf8000000 end=0xf8006000 num_purged=2");
    assert_eq!(ev.ctx.kind, Context::Softirq);
    assert_eq!(
        ev.event,
        Event::PurgeVmapAreas {
            start: 0xf8000000,
            end: 0xf8006000,
            purged: 2
        }
    );
    // Truncated or garbled vmalloc lines are malformed, each field required.
    let full = "insmod-300 [001] ..... 42.0: alloc_vmap_area: va_start: 18446683600570023936 size=8192 align=1 vstart=0xffffc90000000000 vend=0xffffe8ffffffffff failed=0";
    let mut p = LineParser::default();
    for field in [
        "va_start:",
        "size=",
        "align=",
        "vstart=",
        "vend=",
        "failed=",
    ] {
        let at = full.find(field).unwrap();
        assert!(p.parse(1, &full[..at]).is_err(), "cut before {field}");
    }
    for bad in [
        "insmod-300 [001] ..... 42.0: alloc_vmap_area: va_start: 0xzz size=8192 align=1 vstart=0x0 vend=0x1 failed=0",
        "insmod-300 [001] ..... 42.1: free_vmap_area_noflush: va_start=0xffffc90000005000 nr_lazy=2",
        "kworker/1:0-9 [001] ..... 42.2: purge_vmap_area_lazy: start=0x5000 end=0x9000",
    ] {
        assert!(p.parse(1, bad).is_err(), "{bad:?} should be malformed");
    }
}

#[test]
fn unknown_events_are_counted_and_skipped() {
    let mut p = LineParser::default();
    let line =
        "bash-1 [000] .... 1.0: mm_page_pcpu_drain: page=f6b3c0a0 pfn=12345 order=0 migratetype=0";
    assert_eq!(p.parse(1, line), Ok(Line::Unknown));
    assert_eq!(p.parse(2, line), Ok(Line::Unknown));
    assert_eq!(
        p.unknown_events(),
        vec![("mm_page_pcpu_drain".to_string(), 2)]
    );
}

#[test]
fn unknown_gfp_flags_keep_the_event_and_are_counted() {
    let mut p = LineParser::default();
    let line = "a-1 [000] .... 1.0: kmalloc: call_site=c1 ptr=c2 bytes_req=8 bytes_alloc=8 gfp_flags=GFP_KERNEL|__GFP_FUTURE";
    let Ok(Line::Event(ev)) = p.parse(1, line) else {
        panic!()
    };
    assert_eq!(slab_alloc(&ev).gfp, Gfp::GFP_KERNEL);
    let _ = p.parse(2, line);
    assert_eq!(
        p.gfp.unknown_counts().collect::<Vec<_>>(),
        vec![("__GFP_FUTURE", 2)]
    );
}

#[test]
fn malformed_and_truncated_lines_are_errors() {
    let full = "            init-1     [000] .N..     0.170000: kmalloc: call_site=c104de4f ptr=c143de20 bytes_req=29 bytes_alloc=32 gfp_flags=GFP_KERNEL";
    let mut p = LineParser::default();
    // Every truncation that loses a required field, the event name or the CPU.
    for cut in [20, 25, 30, 45, 55, 62, 80, 95, 110, 120] {
        let line = &full[..cut];
        assert!(
            p.parse(1, line).is_err(),
            "truncated at {cut}: {line:?} should be malformed"
        );
    }
    for bad in [
        "init-1 [000] .N.. 0.17: kmalloc: call_site=c1 ptr=zz bytes_req=1 bytes_alloc=8 gfp_flags=GFP_KERNEL",
        "init-1 [000] .N.. 0.17: kmalloc: call_site=c1 ptr=c2 bytes_req=x bytes_alloc=8 gfp_flags=GFP_KERNEL",
        "init-1 [000] .N.. 0.17: kmalloc: call_site=c1 ptr=c2 bytes_req=1 bytes_alloc=8 gfp_flags=GFP_KERNEL node=abc",
        "init-1 [000] .N.. 0.17: kmalloc: call_site=c1 ptr=c2 bytes_req=1 bytes_alloc=8 gfp_flags=GFP_KERNEL accounted=maybe",
        "init-1 [000] .N.. 0.17: mm_page_free: page=c1 pfn=1 order=99",
        "init-1 [000] ?!?! 0.17: kfree: call_site=c1 ptr=c2",
        "init [000] .N.. 0.17: kfree: call_site=c1 ptr=c2",
        "init-x [000] .N.. 0.17: kfree: call_site=c1 ptr=c2",
        "init-1 [000] .N.. 0.17 kfree: call_site=c1 ptr=c2",
        "init-1 [000] .N.. 0.17: kfree call_site=c1 ptr=c2",
        "init-1 [000] .N.. 0.17: kfree: garbage call_site=c1 ptr=c2",
        "just some text",
    ] {
        assert!(p.parse(1, bad).is_err(), "{bad:?} should be malformed");
    }
}

const GOOD: &str = "init-1 [000] .N.. 0.17: kfree: call_site=c1 ptr=c2\n";

#[test]
fn strict_reading_names_the_line_and_shows_it() {
    let text =
        format!("# comment\n{GOOD}init-1 [000] .N.. 0.17: kmalloc: call_site=c1 ptr=\n{GOOD}");
    let mut r = TraceReader::new(text.as_bytes(), false);
    assert!(r.next_event().unwrap().is_some());
    match r.next_event() {
        Err(TraceError::Malformed { line, reason, text }) => {
            assert_eq!(line, 3);
            assert!(reason.contains("truncated"), "{reason}");
            assert!(text.contains("kmalloc: call_site=c1 ptr="));
            let shown = TraceError::Malformed { line, reason, text }.to_string();
            assert!(shown.starts_with("line 3: "), "{shown}");
        }
        other => panic!("expected a malformed-line error, got {other:?}"),
    }
}

#[test]
fn lenient_reading_skips_and_counts() {
    let mut text = Vec::new();
    text.extend_from_slice(GOOD.as_bytes());
    text.extend_from_slice(b"init-1 [000] .N.. 0.17: kmalloc: call_site=c1\n");
    text.extend_from_slice(b"\xff\xfe not utf-8 [000]\n");
    text.extend_from_slice(&vec![b'x'; kmemlab_trace::MAX_LINE + 100]);
    text.push(b'\n');
    text.extend_from_slice(GOOD.as_bytes());
    text.extend_from_slice(b"init-1 [000] .N.. 0.17: kfree: call_site=c1 ptr=c3"); // no newline at the end
    let mut r = TraceReader::new(&text[..], true);
    let mut events = 0;
    while r.next_event().unwrap().is_some() {
        events += 1;
    }
    assert_eq!(events, 3);
    let s = r.stats();
    assert_eq!(s.malformed_skipped, 3);
    assert_eq!(s.lines, 6);
    assert_eq!(s.bytes, text.len() as u64);
    assert!(s
        .first_malformed
        .as_deref()
        .unwrap()
        .starts_with("line 2: "));
    assert!(r.buffer_capacity() <= 2 * kmemlab_trace::MAX_LINE);
}

#[test]
fn no_panic_on_arbitrary_bytes() {
    // Deterministic pseudo-random lines built from trace fragments and noise.
    let pieces = [
        "init-1",
        " ",
        "[000]",
        "[",
        "]",
        ".N..",
        "d.h.",
        "0.17:",
        ":",
        "kmalloc:",
        "kfree:",
        "mm_page_alloc:",
        "call_site=",
        "ptr=",
        "(null)",
        "bytes_req=",
        "12",
        "bytes_alloc=",
        "gfp_flags=",
        "GFP_KERNEL|",
        "|",
        "=",
        "0x",
        "ffffffff",
        "-",
        "va_start:",
        "order=",
        "pfn=",
        "é",
        "\t",
        "name=",
        "node=",
        "-1",
    ];
    let mut p = LineParser::default();
    let mut x: u64 = 0x9e3779b97f4a7c15;
    for i in 0..20_000 {
        let mut line = String::new();
        for _ in 0..(x % 24) {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            line.push_str(pieces[(x % pieces.len() as u64) as usize]);
        }
        x = x.wrapping_add(i);
        let _ = p.parse(i, &line);
    }
}

#[test]
fn every_event_name_is_recognised() {
    for e in EventName::ALL {
        assert_eq!(EventName::from_name(e.as_str()), Some(e));
    }
    assert_eq!(
        EventName::from_name("mm_page_free_direct"),
        Some(EventName::MmPageFree)
    );
    assert_eq!(EventName::from_name("kmalloc_"), None);
}

/// A size no allocation can have is malformed, on the fast path and the general one alike:
/// `-1` wrapped to 2^64-1, anything above 2^57, and a *successful* slab object of 4 GiB
/// or more. A failed kmalloc of a large size (kvmalloc tries kmalloc first) is a real
/// event and parses.
#[test]
fn absurd_sizes_are_malformed() {
    let kmalloc = |ptr: &str, req: u64, alloc: u64| {
        format!("init-1 [000] .N.. 0.17: kmalloc: call_site=c1 ptr={ptr} bytes_req={req} bytes_alloc={alloc} gfp_flags=GFP_KERNEL")
    };
    let limit = kmemlab_trace::parse::MAX_TRACED_SIZE;
    let mut p = LineParser::default();
    for bad in [
        kmalloc("c2", u64::MAX, 32),
        kmalloc("c2", 29, u64::MAX),
        kmalloc("(null)", limit + 1, 0),
        kmalloc("c2", 1 << 32, 1 << 32),
        "init-1 [000] .N.. 0.17: kmem_cache_alloc: call_site=c1 ptr=c2 bytes_req=8 bytes_alloc=5000000000 gfp_flags=GFP_KERNEL".to_string(),
        "swapper/0-1 [000] ..... 0.5: alloc_vmap_area: va_start=18446683600570023936 size=18446744073709551615 align=4096 vstart=18446683600570023936 vend=18446718784942112768 failed=0".to_string(),
    ] {
        let parsed = p.parse(1, &bad);
        assert!(parsed.is_err(), "{bad:?} parsed as {parsed:?}");
    }
    for good in [
        kmalloc("(null)", 5 << 30, 8 << 30),
        kmalloc("(null)", limit, 0),
        kmalloc("c2", 4 << 20, 4 << 20),
    ] {
        let (ev, _) = parse(&good);
        assert!(slab_alloc(&ev).bytes_req >= 4 << 20, "{good:?}");
    }
    // Through the reader: strict mode names the line and the reason.
    let text = format!("{GOOD}{}\n", kmalloc("c2", u64::MAX, 32));
    let mut r = TraceReader::new(text.as_bytes(), false);
    assert!(r.next_event().unwrap().is_some());
    match r.next_event() {
        Err(e @ TraceError::Malformed { line: 2, .. }) => {
            assert!(e.to_string().contains("larger than any allocation"), "{e}")
        }
        other => panic!("expected line 2 to be malformed: {other:?}"),
    }
}

/// A reader of zero bytes that counts what it hands out (`/dev/zero` with a bound, so a
/// regression fails instead of reading for ever).
struct Zeros {
    left: u64,
    read: u64,
}

impl std::io::Read for Zeros {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = buf.len().min(self.left as usize);
        buf[..n].fill(0);
        self.left -= n as u64;
        self.read += n as u64;
        Ok(n)
    }
}

/// A line without end: strict mode stops at 64 KiB with the line number, lenient mode
/// after skipping at most 1 MiB; neither reads on.
#[test]
fn a_line_without_end_stops_the_reading() {
    for lenient in [false, true] {
        let mut zeros = Zeros {
            left: 1 << 30,
            read: 0,
        };
        let input = std::io::BufReader::new(&mut zeros);
        let mut r = TraceReader::new(input, lenient);
        let e = r.next_event().expect_err("an endless line is an error");
        let shown = e.to_string();
        assert!(
            shown.starts_with("line 1: the line is longer than"),
            "{shown}"
        );
        if lenient {
            assert!(matches!(e, TraceError::LineTooLong { line: 1 }), "{e:?}");
        } else {
            assert!(shown.contains("64 KiB"), "{shown}");
            // The zeros are shown escaped, and cut.
            assert!(shown.contains("\\x00\\x00"), "{shown}");
            assert!(shown.len() < 400, "{} bytes", shown.len());
        }
        drop(r);
        let limit = if lenient {
            kmemlab_trace::reader::MAX_SKIPPED_LINE + (1 << 17)
        } else {
            2 * kmemlab_trace::MAX_LINE as u64
        };
        assert!(
            zeros.read <= limit,
            "lenient={lenient}: read {} bytes",
            zeros.read
        );
    }
}

/// Bytes that are not text reach the report escaped, never raw.
#[test]
fn malformed_lines_are_shown_escaped() {
    let line = b"init-1 [000] .N.. 0.17: kmalloc: call_site=c1 \xff\xfe\x01\x1b[31m ptr=\n";
    let mut r = TraceReader::new(&line[..], false);
    let shown = r.next_event().expect_err("not UTF-8").to_string();
    assert!(
        shown.contains("call_site=c1 \\xff\\xfe\\x01\\x1b[31m ptr="),
        "{shown}"
    );
    assert!(!shown.bytes().any(|b| b == 0x1b || b == 0xff), "{shown:?}");
    // Text that is UTF-8 stays readable, tabs included.
    assert_eq!(
        kmemlab_trace::reader::escape_line("tâche\tx\\y\r\n".as_bytes()),
        "tâche\tx\\\\y"
    );
}

/// A read that a signal interrupts (`EINTR`) is read again, as `read_until` does, instead
/// of ending the trace with an I/O error.
#[test]
fn interrupted_reads_are_retried() {
    /// Bytes in chunks of 7, every other read interrupted.
    struct Interrupting<'a> {
        bytes: &'a [u8],
        interrupt: bool,
    }
    impl std::io::Read for Interrupting<'_> {
        fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
            self.interrupt = !self.interrupt;
            if self.interrupt {
                return Err(std::io::ErrorKind::Interrupted.into());
            }
            let n = buf.len().min(7).min(self.bytes.len());
            buf[..n].copy_from_slice(&self.bytes[..n]);
            self.bytes = &self.bytes[n..];
            Ok(n)
        }
    }
    let text = kmemlab_trace::synth::shared_trace_repeated(1).expect("the shared trace");
    let input = std::io::BufReader::with_capacity(
        64,
        Interrupting {
            bytes: &text,
            interrupt: false,
        },
    );
    let mut r = TraceReader::new(input, false);
    let mut events = 0;
    while r.next_event().expect("no I/O error").is_some() {
        events += 1;
    }
    assert_eq!(events, 11_540);
    assert_eq!(r.stats().bytes, text.len() as u64);
}
