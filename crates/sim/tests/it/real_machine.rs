//! A real machine's watermarks out of kmemlab (issue 14, item 1): boot kmemlab with the
//! RAM map, CPU count and tunables of a real x86_64 machine whose `/proc/zoneinfo` is in
//! `tests/data/proc/vm-4g/` (see `tests/data/README.md`), and compare each zone's
//! `min`/`low`/`high` with the real file's. The watermarks follow Linux's
//! `__setup_per_zone_wmarks()` (`mm/page_alloc.c`, 6.6): each zone's share of
//! `min_free_kbytes` is its share of the managed pages, so they agree when kmemlab's boot
//! reserves pages in the same zones as the real boot did. DMA32 and Normal come out
//! within 2%; the 16 MiB DMA zone does not, for the reason given at the end of the test
//! (the sample's kernel predates 5.13's reservation of the whole first MiB).

use crate::fixtures::*;
use kmemlab_mm::sysctl::Thp;
use kmemlab_mm::{procfs, Profile};
use kmemlab_sim::{Hole, Machine, MachineConfig};

const PAGE: u64 = 4096;

/// One zone of a `/proc/zoneinfo` text.
#[derive(Debug, Default, Clone, PartialEq)]
struct Zone {
    name: String,
    min: u64,
    low: u64,
    high: u64,
    spanned: u64,
    present: u64,
    managed: u64,
    /// The CPUs listed under `pagesets`.
    cpus: usize,
}

/// The zones of node 0 in a `/proc/zoneinfo` text (the kernel's or kmemlab's).
fn parse_zoneinfo(text: &str) -> Vec<Zone> {
    let mut zones: Vec<Zone> = Vec::new();
    for line in text.lines() {
        if let Some(name) = line.strip_prefix("Node 0, zone") {
            zones.push(Zone {
                name: name.trim().to_string(),
                ..Zone::default()
            });
            continue;
        }
        let Some(z) = zones.last_mut() else { continue };
        let mut words = line.split_whitespace();
        let (Some(key), Some(value)) = (words.next(), words.next()) else {
            continue;
        };
        if key == "cpu:" {
            z.cpus += 1;
            continue;
        }
        let Ok(v) = value.parse::<u64>() else {
            continue;
        };
        match key {
            "min" => z.min = v,
            "low" => z.low = v,
            "high" => z.high = v,
            "spanned" => z.spanned = v,
            "present" => z.present = v,
            "managed" => z.managed = v,
            _ => {}
        }
    }
    zones
}

/// The `System RAM` ranges of a `/proc/iomem` text (top level only), as whole pages the
/// way the kernel takes them from e820 (start rounded up, end down): `(start, end)`.
fn parse_iomem_ram(text: &str) -> Vec<(u64, u64)> {
    text.lines()
        .filter(|line| !line.starts_with(' '))
        .filter_map(|line| {
            let (range, name) = line.split_once(" : ")?;
            (name.trim() == "System RAM").then_some(())?;
            let (start, last) = range.split_once('-')?;
            let start = u64::from_str_radix(start, 16).ok()?;
            let end = u64::from_str_radix(last, 16).ok()? + 1;
            Some((start.div_ceil(PAGE) * PAGE, end / PAGE * PAGE))
        })
        .filter(|(s, e)| e > s)
        .collect()
}

/// The simulator's machine for a RAM map: its RAM in bytes and the holes around it.
fn ram_and_holes(ram: &[(u64, u64)]) -> (u64, Vec<Hole>) {
    let mut holes = Vec::new();
    let mut cursor = 0;
    for &(start, end) in ram {
        if start > cursor {
            holes.push(Hole {
                start: cursor,
                end: start,
            });
        }
        cursor = end;
    }
    (ram.iter().map(|(s, e)| e - s).sum(), holes)
}

fn render(m: &Machine, file: &str) -> String {
    let mut out = String::new();
    assert!(procfs::render(&m.mm(), file, &mut out).unwrap(), "{file}");
    out
}

/// How far `ours` is from `real`, as a fraction of `real`.
fn gap(ours: u64, real: u64) -> f64 {
    (ours as f64 - real as f64).abs() / real as f64
}

#[test]
fn a_real_machines_watermarks_within_two_percent() {
    let real = parse_zoneinfo(&test_data("proc/vm-4g/zoneinfo"));
    let ram = parse_iomem_ram(&test_data("proc/vm-4g/iomem"));
    let (bytes, holes) = ram_and_holes(&ram);
    let cpus = real[0].cpus;
    assert_eq!(cpus, 2, "the pagesets list two CPUs");
    // The sum of the real minimums is THP's recommended min_free_kbytes for three zones
    // (`set_recommended_min_free_kbytes()`: 512 * 3 * (2 + 9) pages), far above
    // sqrt(16 * lowmem kB): khugepaged ran, so THP was enabled.
    let real_min: u64 = real.iter().map(|z| z.min).sum();
    assert!(real_min.abs_diff(512 * 3 * 11) <= 3, "{real_min}");
    let m = Machine::new(MachineConfig {
        ram: bytes,
        cpus,
        profile: Profile::X86_64,
        holes,
        thp: Thp::Always,
        seed: 1,
        ..MachineConfig::default()
    })
    .unwrap_or_else(|e| panic!("boot: {e}"));
    let ours = parse_zoneinfo(&render(&m, "zoneinfo"));
    let mut report = String::new();
    let mut worst = 0.0f64;
    for r in real.iter().filter(|z| z.present > 0) {
        let o = ours
            .iter()
            .find(|z| z.name == r.name)
            .unwrap_or_else(|| panic!("zone {}", r.name));
        assert_eq!(
            (o.spanned, o.present),
            (r.spanned, r.present),
            "zone {}: the RAM map gives the real spanned and present",
            r.name
        );
        let marks = [
            ("min", o.min, r.min),
            ("low", o.low, r.low),
            ("high", o.high, r.high),
        ];
        for (what, ours, real) in marks {
            if r.name != "DMA" {
                worst = worst.max(gap(ours, real));
            }
            report += &format!(
                "{:>7} {what:>4}: kmemlab {ours:>6} real {real:>6} ({:+.2}%)\n",
                r.name,
                (ours as f64 - real as f64) * 100.0 / real as f64
            );
        }
        report += &format!(
            "{:>7} managed: kmemlab {} real {}\n",
            r.name, o.managed, r.managed
        );
    }
    println!("{report}");
    assert!(
        worst <= 0.02,
        "DMA32/Normal watermarks more than 2% off:\n{report}"
    );
    // The DMA zone is the exception, and why is known: the sample's kernel (5.8, by its
    // zoneinfo fields) reserved only part of the first MiB (its DMA zone manages 3976 of
    // 3997 present pages), while since 5.13 ("x86/setup: Always reserve the first 1M of
    // RAM") x86 reserves all of it (`reserve_real_mode()`, arch/x86/realmode/init.c, 6.6:
    // `memblock_reserve(0, SZ_1M)`), as kmemlab does: DMA keeps only the RAM from 1 MiB to 16 MiB. Its share of
    // `min_free_kbytes`, and so its watermarks, are that much smaller (about 4%, plus
    // rounding on a 68-page watermark).
    let (dma_real, dma_ours) = (&real[0], &ours[0]);
    let below_1m = ram
        .iter()
        .map(|&(s, e)| (e.min(1 << 20).saturating_sub(s)) / PAGE)
        .sum::<u64>();
    assert_eq!(dma_ours.managed, dma_real.present - below_1m);
    assert!(gap(dma_ours.min, dma_real.min) <= 0.10, "{report}");
}
