//! Tests of the fast path: it agrees with the general parser, line for line.

use super::*;
use crate::parse::Line;

/// What the general parser makes of a line, and the state it leaves.
fn both(line: &str) -> (Result<Line, &'static str>, Option<Line>) {
    let mut general = LineParser::default();
    let slow = general.parse_general(3, line);
    let mut fast = LineParser::default();
    let quick = fast.parse_fast(3, line.as_bytes()).map(Line::Event);
    if quick.is_none() {
        assert_eq!(
            fast.retained_entries(),
            0,
            "{line:?}: state changed on None"
        );
    } else {
        assert_eq!(
            (fast.symbols.len(), fast.gfp.distinct_strings()),
            (general.symbols.len(), general.gfp.distinct_strings()),
            "{line:?}"
        );
        for id in 0..fast.symbols.len() as u32 {
            assert_eq!(fast.symbols.name(id), general.symbols.name(id));
        }
        let a: Vec<_> = fast.gfp.unknown_counts().collect();
        let b: Vec<_> = general.gfp.unknown_counts().collect();
        assert_eq!(a, b, "{line:?}");
    }
    (slow, quick)
}

fn agree(line: &str) -> bool {
    let (slow, quick) = both(line);
    if let Some(quick) = quick {
        assert_eq!(slow, Ok(quick), "{line:?}");
        true
    } else {
        false
    }
}

const LINES: &[&str] = &[
    "            init-1     [000] .N..     0.170000: kmalloc: call_site=c104de4f ptr=c143de20 bytes_req=29 bytes_alloc=32 gfp_flags=GFP_KERNEL",
    "            init-1     [000] .N..     0.170000: kfree: call_site=c10c283a ptr=  (null)",
    "            init-1     [000] .N..     0.170000: kmem_cache_alloc: call_site=c10bc38e ptr=c1614f80 bytes_req=64 bytes_alloc=64 gfp_flags=GFP_KERNEL|GFP_ZERO",
    "            init-1     [000] .N..     0.170000: kmem_cache_free: call_site=c10c226b ptr=c163a850",
    "           <...>-4242    [002] d..1.  1234.567890123: kmalloc: call_site=getname_flags+0x4f/0x1f0 ptr=000000006c8b2d1e bytes_req=4096 bytes_alloc=4096 gfp_flags=GFP_KERNEL node=-1 accounted=false",
    "bash-1 [000] ..... 1.0: kmalloc: call_site=kvmalloc_node+0x3e/0xf0 ptr=ffff888004d8f000 bytes_req=8 bytes_alloc=8 gfp_flags=GFP_KERNEL_ACCOUNT|__GFP_ZERO node=0 accounted=true",
    "kworker/0:1-11 [000] ...1. 5.5: kfree: call_site=ext4_fill_super+0x1c2/0x2a80 [ext4] ptr=ffff888003f0e000",
    "swapper/0-1 [000] .... 0.1: kmem_cache_alloc_node: call_site=ffffffff8113b5e8 ptr=ffff88003e8c6000 bytes_req=192 bytes_alloc=192 gfp_flags=GFP_KERNEL node=-1",
    "rcuc/1-22 [001] ..s1. 9.9: kmem_cache_free: call_site=rcu_do_batch+0x1a2/0x4f0 ptr=00000000b1e0a5b4 name=dentry",
    "bash-9 [000] ..... 9.9: kmem_cache_alloc: call_site=alloc_inode+0x5c/0xb0 ptr=0000000012345678 bytes_req=1056 bytes_alloc=1088 gfp_flags=GFP_KERNEL node=-1 accounted=true name=ext4_inode_cache",
    "          bash-1234  [000]  5103.454291: kmalloc:              call_site=ffffffff811c6a0e ptr=0xffff88003d7d2c00 bytes_req=128 bytes_alloc=128 gfp_flags=GFP_KERNEL",
    "     trace-cmd-3071  [001] d..2  5103.454300: kfree:                call_site=ffffffff811c6a0e ptr=(null)",
    "            bash-1977  (   1977) [000] .... 17.0: kfree: call_site=c1 ptr=c2",
    "bash-1 [000] .... 1.0: mm_page_alloc: page=f6b3c0a0 pfn=12345 order=2 migratetype=0 gfp_flags=GFP_KERNEL|GFP_COMP",
    "bash-1 [000] ..... 1.0: mm_page_alloc: page=00000000a1b2c3d4 pfn=0x1a2b3 order=0 migratetype=1 gfp_flags=GFP_HIGHUSER_MOVABLE|__GFP_ZERO",
    "bash-1 [000] .... 1.0: mm_page_alloc: page=(null) pfn=0 order=9 migratetype=1 gfp_flags=GFP_TRANSHUGE",
    "bash-1 [000] .... 1.0: mm_page_alloc: page=0000000000000000 pfn=0x0 order=9 migratetype=1 gfp_flags=GFP_TRANSHUGE",
    "bash-1 [000] .... 1.0: mm_page_free: page=f6b3c0a0 pfn=12345 order=2",
    "bash-1 [000] .... 1.0: mm_page_free_batched: page=f6b3c0a0 pfn=12345 order=0 cold=0",
    "bash-1 [000] ..... 1.0: mm_page_free_batched: page=00000000a1b2c3d4 pfn=0x3039 order=0",
    "a-1 [000] .... 1.0: kmalloc: call_site=c1 ptr=c2 bytes_req=8 bytes_alloc=8 gfp_flags=GFP_KERNEL|__GFP_FUTURE",
    "   Web Content-5678  [001]   99.000001: kfree:                call_site=c10c283a ptr=(null)",
    "cat-5 [001] d.h. 3.5: kmalloc: call_site=c1 ptr=c2 bytes_req=1 bytes_alloc=8 gfp_flags=GFP_ATOMIC",
    "CPU-5 [001] d.h. 3.5: kmalloc: call_site=c1 ptr=c2 bytes_req=1 bytes_alloc=8 gfp_flags=GFP_ATOMIC",
    "t\u{e9}che-5 [001] d.h. 3.5: kmalloc: call_site=c1 ptr=c2 bytes_req=1 bytes_alloc=8 gfp_flags=GFP_ATOMIC",
    "insmod-300 [001] ..... 42.0: alloc_vmap_area: va_start: 18446683600570023936 size=8192 align=1 vstart=0xffffc90000000000 vend=0xffffe8ffffffffff failed=0",
    "     kworker/u8:2-118     [003] ..... 5001.000200: kmem_cache_alloc: call_site=__d_alloc+0x2d/0x1f0 ptr=ffff888000000000 name=dentry bytes_req=192 bytes_alloc=192 gfp_flags=GFP_KERNEL node=-1 accounted=true",
];

/// The fast path reads the common shapes, and reads them as the general parser does.
#[test]
fn fast_path_takes_the_common_shapes() {
    for (i, line) in LINES.iter().enumerate() {
        let taken = agree(line);
        let expected = !matches!(i, 6 | 23 | 24 | 25);
        assert_eq!(taken, expected, "{line:?}");
    }
}

/// Every line the fast path accepts, the general parser reads identically: lines
/// built from trace fragments, and trace lines with bytes changed, removed or doubled.
#[test]
fn fast_path_agrees_with_the_general_parser() {
    let pieces = [
        "init-1",
        " ",
        "  ",
        "[000]",
        "[",
        "]",
        ".N..",
        "d.h.",
        "..s1.",
        "0.17:",
        ":",
        "kmalloc:",
        "kfree:",
        "kmem_cache_free:",
        "mm_page_alloc:",
        "mm_page_free:",
        "mm_page_free_batched:",
        "call_site=",
        "ptr=",
        "(null)",
        "bytes_req=",
        "12",
        "bytes_alloc=",
        "gfp_flags=",
        "GFP_KERNEL|",
        "GFP_KERNEL",
        "|",
        "=",
        "0x",
        "ffffffff",
        "-",
        "order=",
        "pfn=",
        "page=",
        "migratetype=",
        "cold=",
        "é",
        "\t",
        "name=",
        "node=",
        "-1",
        "accounted=",
        "true",
        "99999999999999999999",
        "c104de4f",
        "+5",
        "\r",
        "\u{c}",
    ];
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut next = || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    let mut accepted = 0;
    for _ in 0..40_000 {
        let mut line = String::new();
        for _ in 0..(next() % 24) {
            line.push_str(pieces[(next() % pieces.len() as u64) as usize]);
        }
        accepted += agree(&line) as u32;
    }
    let alphabet = b" \t=:[]().-+|0x9aZ\xc3\xa9\xff\r";
    for _ in 0..60_000 {
        let mut line = LINES[(next() % LINES.len() as u64) as usize]
            .as_bytes()
            .to_vec();
        for _ in 0..=(next() % 3) {
            let at = (next() % line.len() as u64) as usize;
            match next() % 4 {
                0 => line[at] = alphabet[(next() % alphabet.len() as u64) as usize],
                1 => {
                    line.remove(at);
                }
                2 => line.insert(at, line[at]),
                _ => line.insert(at, alphabet[(next() % alphabet.len() as u64) as usize]),
            }
        }
        let (slow, quick) = {
            let mut general = LineParser::default();
            let slow = match std::str::from_utf8(&line) {
                Ok(text) => general.parse_general(3, text),
                Err(_) => Err("the line is not UTF-8 text"),
            };
            let mut fast = LineParser::default();
            (slow, fast.parse_fast(3, &line).map(Line::Event))
        };
        if let Some(quick) = quick {
            assert_eq!(slow, Ok(quick), "{:?}", String::from_utf8_lossy(&line));
            accepted += 1;
            // And the state left behind, on the lines that are text.
            if let Ok(text) = std::str::from_utf8(&line) {
                agree(text);
            }
        }
    }
    assert!(
        accepted > 10_000,
        "only {accepted} lines took the fast path"
    );
}

/// Eight hex digits at a time agree with one at a time.
#[test]
fn word_at_a_time_hex() {
    let mut x: u64 = 0x2545_f491_4f6c_dd1d;
    let alphabet = b"0123456789abcdefABCDEFgG/@`:x \xff\x80";
    for _ in 0..50_000 {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let len = (x % 24) as usize;
        let text: Vec<u8> = (0..len)
            .map(|k| alphabet[((x >> (k % 50)) as usize + k * 7) % alphabet.len()])
            .collect();
        let mut c = Cursor { b: &text, i: 0 };
        // The value is the word up to the first blank.
        let end = text.iter().position(|&b| b == b' ').unwrap_or(text.len());
        let slow = std::str::from_utf8(&text[..end])
            .ok()
            .and_then(crate::parse::hex_for_tests);
        assert_eq!(c.hex(), slow, "{text:?}");
    }
}

/// Every event line of the Linux 3.5 boot traces (`tests/data/traces/`) takes the fast
/// path, and reads as the general parser reads it.
#[test]
fn shared_traces_take_the_fast_path() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/data/traces");
    for name in [
        "linux-3.5-i386-boot-slub.trace",
        "linux-3.5-i386-boot-slab.trace",
    ] {
        let path = dir.join(name);
        let text = std::fs::read_to_string(&path)
            .unwrap_or_else(|e| panic!("test fixture {} is missing: {e}", path.display()));
        let (mut general, mut fast) = (LineParser::default(), LineParser::default());
        for (i, line) in text.lines().enumerate() {
            let slow = general.parse_general(i as u64 + 1, line);
            let quick = fast
                .parse_fast(i as u64 + 1, line.as_bytes())
                .map(Line::Event);
            match slow {
                Ok(Line::Event(_)) => {
                    assert_eq!(quick.ok_or("refused"), slow, "{name}:{}", i + 1)
                }
                _ => assert_eq!(quick, None, "{name}:{}", i + 1),
            }
        }
        assert_eq!(fast.symbols.len(), general.symbols.len());
        assert_eq!(fast.gfp.distinct_strings(), general.gfp.distinct_strings());
    }
}

/// One long-lived parser with its fast path against one that only has the general
/// parser, over many lines whose call sites and cache names repeat (some of them not
/// UTF-8): the fast path finds strings it met before by their bytes (`Text::Known`), and
/// every line, every interned id and every GFP count still comes out the same.
#[test]
fn a_long_lived_fast_path_agrees_with_the_general_parser() {
    let sites: [&[u8]; 5] = [
        b"alloc_inode+0x5c/0xb0",
        b"c104de4f",
        b"d\xffx+0x1/0x2",
        b"__d_alloc+0x2d/0x1f0",
        b"alloc_inode+0x5c/0xb0x",
    ];
    let names: [&[u8]; 4] = [b"dentry", b"ext4\xfe_inode", b"alloc_inode+0x5c/0xb0", b"d"];
    let (mut fast, mut general) = (LineParser::default(), LineParser::default());
    let mut x: u64 = 0x2545_f491_4f6c_dd1d;
    let mut known = 0;
    for n in 1..=20_000u64 {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let site = sites[(x % 5) as usize];
        let name = names[(x >> 8) as usize % 4];
        let mut line = b"bash-9 [000] ..... 9.9: ".to_vec();
        match (x >> 16) % 3 {
            0 => {
                line.extend_from_slice(b"kmem_cache_free: call_site=");
                line.extend_from_slice(site);
                line.extend_from_slice(b" ptr=0000000012345678 name=");
                line.extend_from_slice(name);
            }
            1 => {
                line.extend_from_slice(b"kfree: call_site=");
                line.extend_from_slice(site);
                line.extend_from_slice(b" ptr=ffff888003f0e000");
            }
            _ => {
                line.extend_from_slice(b"kmem_cache_alloc: call_site=");
                line.extend_from_slice(site);
                line.extend_from_slice(b" ptr=ffff888000000000 name=");
                line.extend_from_slice(name);
                line.extend_from_slice(b" bytes_req=192 bytes_alloc=192 gfp_flags=GFP_KERNEL");
            }
        }
        let seen = (
            fast.symbols.find(site).is_some(),
            fast.symbols.find(name).is_some(),
        );
        let quick = fast.parse_bytes(n, &line);
        let slow = match crate::parse::as_text(&line) {
            Some(text) => general.parse_general(n, text),
            None => Err("the line is not UTF-8 text"),
        };
        assert_eq!(
            quick,
            slow,
            "line {n}: {:?}",
            String::from_utf8_lossy(&line)
        );
        known += usize::from(seen.0 || seen.1);
    }
    assert!(known > 10_000, "{known} lines met a known string");
    assert_eq!(fast.symbols.len(), general.symbols.len());
    for id in 0..fast.symbols.len() as u32 {
        assert_eq!(fast.symbols.name(id), general.symbols.name(id));
    }
    let (a, b): (Vec<_>, Vec<_>) = (
        fast.gfp.unknown_counts().collect(),
        general.gfp.unknown_counts().collect(),
    );
    assert_eq!(a, b);
}
