//! The page allocator's `/proc/sys/vm` tunables, THP's recommended `min_free_kbytes` and
//! SPARSEMEM memory sections, checked against values computed here by hand from the
//! Linux 6.6 formulas (`mm/page_alloc.c`: `calculate_min_free_kbytes`,
//! `__setup_per_zone_wmarks`, `setup_per_zone_lowmem_reserve`, `zone_batchsize`,
//! `zone_highsize`, `boost_watermark`; `mm/khugepaged.c`:
//! `set_recommended_min_free_kbytes`), read back through `/proc/zoneinfo` and
//! `/proc/sys/vm` as a user would.

use crate::fixtures::*;
use kmemlab_mm::sysctl::Thp;
use kmemlab_mm::{procfs, Gfp, Pfn, Profile};
use kmemlab_sim::{Hole, Machine, MachineConfig, SimError};

/// x86_64's `pageblock_nr_pages` (the tests below boot x86_64 unless they say i386).
const PAGEBLOCK: u64 = 512;

fn boot(ram: u64, cpus: usize, thp: Thp, sysctls: &[(&str, &str)]) -> Machine {
    Machine::new(MachineConfig {
        ram,
        cpus,
        thp,
        sysctls: sysctls
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        ..MachineConfig::default()
    })
    .unwrap_or_else(|e| panic!("boot: {e}"))
}

fn cat(m: &Machine, file: &str) -> String {
    let mut out = String::new();
    assert!(procfs::render(&m.mm(), file, &mut out).unwrap(), "{file}");
    out
}

/// One zone of `/proc/zoneinfo`.
#[derive(Debug, Default, Clone, PartialEq)]
struct ZoneInfo {
    name: String,
    boost: u64,
    min: u64,
    low: u64,
    high: u64,
    spanned: u64,
    present: u64,
    managed: u64,
    protection: Vec<u64>,
    pcp_high: Vec<u64>,
    pcp_batch: Vec<u64>,
}

fn zoneinfo(m: &Machine) -> Vec<ZoneInfo> {
    let mut zones: Vec<ZoneInfo> = Vec::new();
    for line in cat(m, "zoneinfo").lines() {
        if let Some(name) = line.strip_prefix("Node 0, zone") {
            zones.push(ZoneInfo {
                name: name.trim().to_string(),
                ..ZoneInfo::default()
            });
            continue;
        }
        let z = zones.last_mut().expect("a zone header first");
        let t = line.trim();
        if let Some(p) = t.strip_prefix("protection: (") {
            z.protection = p
                .trim_end_matches(')')
                .split(", ")
                .map(|v| v.parse().unwrap())
                .collect();
            continue;
        }
        let mut words = t.split_whitespace();
        let (Some(key), Some(value)) = (words.next(), words.next()) else {
            continue;
        };
        let Ok(v) = value.parse::<u64>() else {
            continue;
        };
        match key {
            "boost" => z.boost = v,
            "min" => z.min = v,
            "low" => z.low = v,
            "high" => z.high = v,
            "spanned" => z.spanned = v,
            "present" => z.present = v,
            "managed" => z.managed = v,
            "high:" => z.pcp_high.push(v),
            "batch:" => z.pcp_batch.push(v),
            _ => {}
        }
    }
    zones
}

fn populated(m: &Machine) -> Vec<ZoneInfo> {
    zoneinfo(m).into_iter().filter(|z| z.present > 0).collect()
}

fn isqrt(x: u64) -> u64 {
    let mut r = (x as f64).sqrt() as u64;
    while r * r > x {
        r -= 1;
    }
    while (r + 1) * (r + 1) <= x {
        r += 1;
    }
    r
}

fn mult_frac(x: u64, n: u64, d: u64) -> u64 {
    (x as u128 * n as u128 / d as u128) as u64
}

fn is_high(name: &str) -> bool {
    name == "HighMem" || name == "Movable"
}

/// `__setup_per_zone_wmarks()` by hand: (min, low, high) per zone, in `managed`'s order.
fn expected_wmarks(managed: &[(String, u64)], min_free_kbytes: u64, wsf: u64) -> Vec<[u64; 3]> {
    let pages_min = min_free_kbytes >> 2;
    let lowmem: u64 = managed
        .iter()
        .filter(|(n, _)| !is_high(n))
        .map(|(_, m)| m)
        .sum();
    managed
        .iter()
        .map(|(name, m)| {
            let share = pages_min * m / lowmem;
            let min = if is_high(name) {
                (m / 1024).clamp(32, 128)
            } else {
                share
            };
            let gap = (share >> 2).max(mult_frac(*m, wsf, 10_000));
            [min, min + gap, min + 2 * gap]
        })
        .collect()
}

fn managed_of(m: &Machine) -> Vec<(String, u64)> {
    zoneinfo(m)
        .into_iter()
        .map(|z| (z.name, z.managed))
        .collect()
}

/// `calculate_min_free_kbytes()` at `init_per_zone_wmark_min()` (watermarks still zero),
/// x86_64: lowmem is every zone up to Normal.
fn default_min_free_kbytes(managed: &[(String, u64)]) -> u64 {
    let lowmem_pages: u64 = managed
        .iter()
        .filter(|(n, _)| !is_high(n))
        .map(|(_, m)| m)
        .sum();
    isqrt(lowmem_pages * 4 * 16).clamp(128, 262_144)
}

/// `nr_free_buffer_pages()` with the watermarks `w`.
fn nr_free_buffer_pages(managed: &[(String, u64)], w: &[[u64; 3]]) -> u64 {
    managed
        .iter()
        .zip(w)
        .filter(|((n, _), _)| !is_high(n))
        .map(|((_, m), w)| m.saturating_sub(w[2]))
        .sum()
}

fn sysctl(m: &Machine, key: &str) -> String {
    m.sysctl_read(key).unwrap()
}

#[test]
fn thp_always_on_16g_4cpus_gives_khugepageds_recommended_min_free_kbytes() {
    let m = boot(16 * GIB, 4, Thp::Always, &[]);
    // DMA, DMA32 and Normal are populated and at most ZONE_NORMAL: 3 zones.
    // recommended_min = 512 * 3 * 2 + 512 * 3 * 3 * 3 = 16896 pages = 67584 kB, well
    // under 5% of ~4M pages of lowmem.
    let pages = PAGEBLOCK * 3 * 2 + PAGEBLOCK * 3 * 9;
    assert_eq!(pages, 16896);
    assert_eq!(m.mm().min_free_kbytes(), pages * 4);
    assert_eq!(sysctl(&m, "vm.min_free_kbytes"), "67584");
    assert_eq!(cat(&m, "/proc/sys/vm/min_free_kbytes"), "67584\n");
    let managed = managed_of(&m);
    let want = expected_wmarks(&managed, 67584, 10);
    for (z, w) in zoneinfo(&m).iter().zip(&want) {
        assert_eq!([z.min, z.low, z.high], *w, "zone {}", z.name);
    }
    assert_eq!(
        cat(&m, procfs::THP_ENABLED_FILE),
        "[always] madvise never\n"
    );
}

#[test]
fn thp_never_recomputes_the_default_from_lowmem_above_the_high_watermarks() {
    let m = boot(16 * GIB, 4, Thp::Never, &[]);
    let managed = managed_of(&m);
    // init_per_zone_wmark_min(): the watermarks are still zero.
    let first = default_min_free_kbytes(&managed);
    let w = expected_wmarks(&managed, first, 10);
    // start_stop_khugepaged() with THP off: calculate_min_free_kbytes() again, now that
    // nr_free_buffer_pages() subtracts the high watermarks.
    let second = isqrt(nr_free_buffer_pages(&managed, &w) * 4 * 16).clamp(128, 262_144);
    assert!(second < first, "{second} < {first}");
    assert_eq!(m.mm().min_free_kbytes(), second);
    let want = expected_wmarks(&managed, second, 10);
    for (z, w) in zoneinfo(&m).iter().zip(&want) {
        assert_eq!([z.min, z.low, z.high], *w, "zone {}", z.name);
    }
    assert_eq!(
        cat(&m, procfs::THP_ENABLED_FILE),
        "always madvise [never]\n"
    );
    let madvise = boot(64 * MIB, 1, Thp::Madvise, &[]);
    assert_eq!(
        cat(&madvise, procfs::THP_ENABLED_FILE),
        "always [madvise] never\n"
    );
}

#[test]
fn thp_recommendation_is_capped_at_5_percent_of_lowmem() {
    let m = boot(64 * MIB, 1, Thp::Madvise, &[]);
    let managed = managed_of(&m);
    let populated_lowmem = zoneinfo(&m)
        .iter()
        .filter(|z| z.present > 0 && !is_high(&z.name))
        .count() as u64;
    assert_eq!(populated_lowmem, 2, "DMA and DMA32");
    let uncapped = PAGEBLOCK * populated_lowmem * 11;
    let w = expected_wmarks(&managed, default_min_free_kbytes(&managed), 10);
    let cap = nr_free_buffer_pages(&managed, &w) / 20;
    assert!(cap < uncapped);
    assert_eq!(m.mm().min_free_kbytes(), cap * 4);
}

#[test]
fn min_free_kbytes_sysctl_sets_every_zones_watermarks_and_pcp_high() {
    let mut m = boot(16 * GIB, 4, Thp::Always, &[]);
    m.sysctl_write("vm.min_free_kbytes", "65536").unwrap();
    assert_eq!(sysctl(&m, "vm.min_free_kbytes"), "65536");
    let managed = managed_of(&m);
    let want = expected_wmarks(&managed, 65536, 10);
    let zones = zoneinfo(&m);
    for (z, w) in zones.iter().zip(&want) {
        assert_eq!([z.min, z.low, z.high], *w, "zone {}", z.name);
        if z.present == 0 {
            continue;
        }
        // zone_set_pageset_high_and_batch(): batch from the zone's size (1/1024 of it, at
        // most 1 MiB, a quarter, rounded to 2^n - 1), high = low watermark / CPUs.
        let batch = {
            let b = ((z.managed >> 10).min(256) / 4).max(1);
            ((1u64 << (64 - (b + b / 2).leading_zeros() - 1)) - 1).max(1)
        };
        let high = (w[1] / 4).max(batch * 4);
        assert_eq!(z.pcp_batch, vec![batch; 4], "zone {}", z.name);
        assert_eq!(z.pcp_high, vec![high; 4], "zone {}", z.name);
    }
    // A user value below THP's recommendation stands: the handler sets it as given.
    m.sysctl_write("vm.min_free_kbytes", "1024").unwrap();
    assert_eq!(m.mm().min_free_kbytes(), 1024);
    let want = expected_wmarks(&managed, 1024, 10);
    for (z, w) in zoneinfo(&m).iter().zip(&want) {
        assert_eq!([z.min, z.low, z.high], *w, "zone {}", z.name);
    }
}

#[test]
fn watermark_scale_factor_widens_the_gaps_and_leaves_min() {
    let mut m = boot(4 * GIB, 2, Thp::Never, &[]);
    let before = zoneinfo(&m);
    m.sysctl_write("vm.watermark_scale_factor", "200").unwrap();
    let after = zoneinfo(&m);
    let want = expected_wmarks(&managed_of(&m), m.mm().min_free_kbytes(), 200);
    for ((b, a), w) in before.iter().zip(&after).zip(&want) {
        assert_eq!([a.min, a.low, a.high], *w, "zone {}", a.name);
        assert_eq!(a.min, b.min, "min does not move: {}", a.name);
        assert_eq!(a.protection, b.protection);
        if a.managed > 1_000_000 {
            // 2% of the zone between min and low, and again between low and high.
            assert_eq!(a.low - a.min, a.managed * 200 / 10_000);
            assert_eq!(a.high - a.low, a.low - a.min);
        }
    }
    // The maximum (SYSCTL_THREE_THOUSAND) is accepted.
    m.sysctl_write("vm.watermark_scale_factor", "3000").unwrap();
    let z = &zoneinfo(&m)[1];
    assert_eq!(z.low - z.min, mult_frac(z.managed, 3000, 10_000));
}

#[test]
fn lowmem_reserve_ratio_recomputes_the_protection_arrays() {
    let mut m = boot(8 * GIB, 2, Thp::Never, &[]);
    assert_eq!(sysctl(&m, "vm.lowmem_reserve_ratio"), "256\t256\t32\t0");
    m.sysctl_write("vm.lowmem_reserve_ratio", "128 64 16")
        .unwrap();
    assert_eq!(sysctl(&m, "vm.lowmem_reserve_ratio"), "128\t64\t16\t0");
    let zones = zoneinfo(&m);
    let ratios = [128u64, 64, 16, 0];
    for (i, z) in zones.iter().enumerate() {
        for j in 0..4 {
            let want = if j <= i || ratios[i] == 0 || z.managed == 0 {
                0
            } else {
                zones[i + 1..=j].iter().map(|u| u.managed).sum::<u64>() / ratios[i]
            };
            assert_eq!(z.protection[j], want, "zone {} protection[{j}]", z.name);
        }
    }
    assert!(
        zones[1].protection[2] > 0,
        "DMA32 keeps back 1/64 of Normal"
    );
    // Below 1 means no reserve for that zone.
    m.sysctl_write("vm.lowmem_reserve_ratio", "0 -5").unwrap();
    assert_eq!(sysctl(&m, "vm.lowmem_reserve_ratio"), "0\t0\t16\t0");
    let zones = zoneinfo(&m);
    assert_eq!(zones[0].protection, vec![0, 0, 0, 0]);
    assert_eq!(zones[1].protection, vec![0, 0, 0, 0]);
    assert_eq!(
        zones[2].protection,
        vec![0, 0, 0, 0],
        "Normal: Movable is empty"
    );
}

#[test]
fn percpu_pagelist_high_fraction_sizes_pcp_high_from_managed_pages() {
    let mut m = boot(4 * GIB, 4, Thp::Never, &[]);
    let before = zoneinfo(&m);
    m.sysctl_write("vm.percpu_pagelist_high_fraction", "8")
        .unwrap();
    for z in populated(&m) {
        let batch = z.pcp_batch[0];
        assert_eq!(
            z.pcp_high,
            vec![(z.managed / 8 / 4).max(batch * 4); 4],
            "{}",
            z.name
        );
    }
    m.sysctl_write("vm.percpu_pagelist_high_fraction", "0")
        .unwrap();
    assert_eq!(zoneinfo(&m), before, "0 goes back to the low watermark");
}

#[test]
fn bad_writes_are_refused_and_change_nothing() {
    let mut m = boot(GIB, 2, Thp::Never, &[]);
    let before = zoneinfo(&m);
    let tunables = m.mm().vm_tunables().clone();
    let cases = [
        (
            "vm.no_such_thing",
            "1",
            "cannot stat /proc/sys/vm/no_such_thing",
        ),
        (
            "kernel.tainted",
            "1",
            "cannot stat /proc/sys/kernel/tainted",
        ),
        ("vm.min_free_kbytes", "lots", "Invalid argument"),
        ("vm.min_free_kbytes", "", "Invalid argument"),
        ("vm.min_free_kbytes", "-1", "Invalid argument"),
        ("vm.min_free_kbytes", "2147483648", "Invalid argument"),
        ("vm.min_free_kbytes", "12 13", "Invalid argument"),
        ("vm.min_free_kbytes", "12k", "Invalid argument"),
        ("vm.watermark_scale_factor", "0", "Invalid argument"),
        ("vm.watermark_scale_factor", "3001", "Invalid argument"),
        ("vm.watermark_boost_factor", "-1", "Invalid argument"),
        ("vm.percpu_pagelist_high_fraction", "7", "Invalid argument"),
        ("vm.percpu_pagelist_high_fraction", "-8", "Invalid argument"),
        ("vm.lowmem_reserve_ratio", "1 2 3 4 5", "Invalid argument"),
        ("vm.lowmem_reserve_ratio", "x", "Invalid argument"),
    ];
    for (key, value, why) in cases {
        let err = m.sysctl_write(key, value).expect_err(key);
        assert!(err.contains(why), "{key}={value}: {err}");
        assert!(err.starts_with("sysctl: "), "{err}");
    }
    assert!(m.sysctl_read("vm.nope").is_err());
    assert_eq!(zoneinfo(&m), before);
    assert_eq!(*m.mm().vm_tunables(), tunables);
    // C's strtoul with base 0, as proc_dointvec reads: hex and octal.
    m.sysctl_write("vm.min_free_kbytes", "0x2000").unwrap();
    assert_eq!(sysctl(&m, "vm.min_free_kbytes"), "8192");
    m.sysctl_write("/proc/sys/vm/min_free_kbytes", "010")
        .unwrap();
    assert_eq!(sysctl(&m, "vm.min_free_kbytes"), "8");
}

#[test]
fn boot_sysctls_apply_after_thp_and_survive_reboot() {
    let mut m = boot(
        2 * GIB,
        2,
        Thp::Always,
        &[
            ("vm.min_free_kbytes", "20000"),
            ("vm.watermark_scale_factor", "50"),
        ],
    );
    assert_eq!(m.mm().min_free_kbytes(), 20000);
    let want = expected_wmarks(&managed_of(&m), 20000, 50);
    let check = |m: &Machine| {
        for (z, w) in zoneinfo(m).iter().zip(&want) {
            assert_eq!([z.min, z.low, z.high], *w, "zone {}", z.name);
        }
    };
    check(&m);
    m.reboot().unwrap();
    assert_eq!(m.mm().min_free_kbytes(), 20000);
    check(&m);
    // A runtime write does not survive a reboot.
    m.sysctl_write("vm.watermark_scale_factor", "100").unwrap();
    m.reboot().unwrap();
    assert_eq!(sysctl(&m, "vm.watermark_scale_factor"), "50");
    // A boot sysctl the kernel refuses fails the boot with sysctl's message.
    let err = Machine::new(MachineConfig {
        ram: 64 * MIB,
        sysctls: vec![("vm.watermark_scale_factor".into(), "0".into())],
        ..MachineConfig::default()
    })
    .err()
    .expect("refused");
    assert!(
        matches!(&err, SimError::Sysctl(s) if s.contains("Invalid argument")),
        "{err}"
    );
}

/// Hold one movable page in every pageblock of the machine (allocating everything
/// movable, then freeing all but the first page of each block), so that no free block
/// of pageblock order is left and the next unmovable fallback must steal part of one.
fn pin_every_pageblock(m: &Machine) -> Vec<u64> {
    pin_every_pageblock_of(m, PAGEBLOCK)
}

/// [`pin_every_pageblock`] with pageblocks of `pageblock` pages.
fn pin_every_pageblock_of(m: &Machine, pageblock: u64) -> Vec<u64> {
    let gfp = Gfp::__GFP_MOVABLE | Gfp::__GFP_NOWARN;
    let mut held = Vec::new();
    while let Ok(pfn) = m.run(|mm| mm.alloc_pages(gfp, 0).map(|p| mm.page_to_pfn(p).0)) {
        held.push(pfn);
    }
    held.sort_unstable();
    let mut kept = Vec::new();
    let mut last_block = u64::MAX;
    for pfn in held {
        if pfn / pageblock == last_block {
            m.run(|mm| mm.__free_pages(mm.pfn_to_page(Pfn(pfn)).unwrap(), 0))
                .unwrap();
        } else {
            last_block = pfn / pageblock;
            kept.push(pfn);
        }
    }
    m.mm().drain_all_pages();
    kept
}

/// Allocate unmovable pages without waking kswapd until some zone's watermark is
/// boosted; returns the zone index, or `None` if none was after `limit` pages.
fn unmovable_until_boosted(m: &Machine, limit: usize) -> Option<usize> {
    for _ in 0..limit {
        m.run(|mm| mm.alloc_pages(Gfp::__GFP_NOWARN, 0).map(|_| ()))
            .ok()?;
        if let Some(z) = m.mm().zones().iter().position(|z| z.watermark_boost() > 0) {
            return Some(z);
        }
    }
    None
}

/// `boost_watermark()` (6.6) leaves alone a zone smaller than four pageblocks
/// ("(pageblock_nr_pages * 4) > zone_managed_pages(zone)"). A 64 MiB machine's DMA zone
/// manages under 4,096 pages: more than four x86_64 pageblocks of 512 pages, fewer than
/// four of i386's 1024 (pageblock-flags.h: `min(HUGETLB_PAGE_ORDER, MAX_ORDER)`, 10 with
/// the folded PMD's `PMD_SHIFT` of 22). Unmovable DMA allocations that must fall back
/// into Movable pageblocks boost DMA on x86_64 and never on i386.
#[test]
fn dma_fallbacks_boost_x86_64_but_not_i386_whose_dma_is_under_four_pageblocks() {
    for (profile, pageblock, boosts) in [
        (Profile::X86_64, PAGEBLOCK, true),
        (Profile::I386, 1024, false),
    ] {
        let m = Machine::new(MachineConfig {
            ram: 64 * MIB,
            cpus: 1,
            profile,
            ..MachineConfig::default()
        })
        .unwrap_or_else(|e| panic!("boot: {e}"));
        assert_eq!(m.mm().pageblock_nr_pages(), pageblock);
        let mm = m.mm();
        let dma = &mm.zones()[0];
        assert!(dma.managed_pages >= 4 * PAGEBLOCK && dma.managed_pages < 4 * 1024);
        // A movable page held in every 512 pages: in every pageblock of either size, so
        // that a fallback steals part of a pageblock (and boost_watermark() is asked).
        pin_every_pageblock_of(&m, PAGEBLOCK);
        let unmovable_free = |m: &Machine| -> u64 {
            let snap = m.mm().free_area_snapshot(&m.mm().zones()[0]);
            (0..=10)
                .map(|o| snap.per_type[kmemlab_mm::MigrateType::Unmovable as usize][o] << o)
                .sum()
        };
        assert_eq!(
            unmovable_free(&m),
            0,
            "{profile}: DMA has only Movable free pages"
        );
        let gfp = Gfp::GFP_DMA | Gfp::__GFP_NOWARN;
        let served = (0..64)
            .filter(|_| m.run(|mm| mm.alloc_pages(gfp, 0).map(|_| ())).is_ok())
            .count();
        assert!(served > 0, "{profile}: no DMA page");
        // The fallback happened: free pages moved to DMA's Unmovable lists.
        assert!(unmovable_free(&m) > 0, "{profile}: no fallback");
        let boost = m.mm().zones()[0].watermark_boost();
        if boosts {
            assert!(boost >= pageblock, "{profile}: DMA boost {boost}");
        } else {
            assert_eq!(boost, 0, "{profile}: DMA boosted");
        }
    }
}

#[test]
fn a_fragmenting_fallback_boosts_the_watermarks_until_kswapd_runs() {
    let m = boot(64 * MIB, 1, Thp::Never, &[]);
    pin_every_pageblock(&m);
    let idx = unmovable_until_boosted(&m, 20_000).expect("a fallback boosted a zone");
    let mm = m.mm();
    let zone = &mm.zones()[idx];
    // boost_watermark(): one pageblock, at most max(pageblock, high * 15000 / 10000).
    let max_boost = mult_frac(zone.watermark[2], 15_000, 10_000).max(PAGEBLOCK);
    assert_eq!(zone.watermark_boost(), PAGEBLOCK.min(max_boost));
    let info = &zoneinfo(&m)[idx];
    assert_eq!(info.boost, PAGEBLOCK);
    assert_eq!(
        [info.min, info.low, info.high],
        [
            zone.watermark[0] + PAGEBLOCK,
            zone.watermark[1] + PAGEBLOCK,
            zone.watermark[2] + PAGEBLOCK
        ],
        "every watermark carries the boost"
    );
    // kswapd is woken although the node is balanced (pgdat_watermark_boosted()), and
    // takes the boost back when it is done.
    let run = m.run_kswapd();
    assert!(run.woken && run.passes > 0, "{run:?}");
    assert_eq!(m.mm().zones()[idx].watermark_boost(), 0);
    assert_eq!(zoneinfo(&m)[idx].boost, 0);
}

#[test]
fn watermark_boost_factor_zero_turns_boosting_off() {
    let mut m = boot(64 * MIB, 1, Thp::Never, &[]);
    m.sysctl_write("vm.watermark_boost_factor", "0").unwrap();
    pin_every_pageblock(&m);
    assert_eq!(unmovable_until_boosted(&m, 3_000), None);
    assert!(m.mm().zones().iter().all(|z| z.watermark_boost() == 0));
}

#[test]
fn a_hole_of_whole_sections_is_absent_memory() {
    // 4 GiB with the PCI hole: DMA32 spans 16 MiB .. 4 GiB but RAM stops at 3 GiB; the
    // eight 128 MiB sections of the hole hold no RAM.
    let m = MachineBuilder::new()
        .ram(4 * GIB)
        .cpus(2)
        .profile(Profile::X86_64)
        .holes(vec![Hole::LEGACY, Hole::PCI])
        .seed(1)
        .boot();
    let mm = m.mm();
    let section = |gib: u64| mm.pfn_to_section_nr(Pfn((gib << 30) >> 12));
    assert_eq!(section(1), 8, "128 MiB sections");
    assert!(mm.present_section_nr(section(3) - 1));
    for nr in section(3)..section(4) {
        assert!(!mm.present_section_nr(nr), "section {nr} is in the hole");
    }
    assert!(mm.present_section_nr(section(4)));
    let dma32 = zoneinfo(&m)
        .into_iter()
        .find(|z| z.name == "DMA32")
        .unwrap();
    assert_eq!(
        dma32.spanned,
        ((4 * GIB) - 16 * MIB) >> 12,
        "spanned covers the hole"
    );
    assert_eq!(
        dma32.present,
        ((3 * GIB) - 16 * MIB) >> 12,
        "present does not"
    );
    // /proc/pagetypeinfo counts the pageblocks of present sections only: 3 GiB - 16 MiB
    // of them, as the real 4 GiB machine in tests/data/proc shows (1528).
    let blocks = block_counts(&cat(&m, "pagetypeinfo"));
    assert_eq!(blocks["DMA32"], 1528);
    assert_eq!(blocks["DMA"], 8);
}

#[test]
fn a_hole_smaller_than_a_section_stays_reserved_in_a_present_section() {
    // 4 MiB at 256 MiB: inside section 2, which has RAM around it.
    let hole = Hole {
        start: 256 * MIB,
        end: 260 * MIB,
    };
    let m = MachineBuilder::new()
        .ram(GIB)
        .cpus(1)
        .profile(Profile::X86_64)
        .holes(vec![Hole::LEGACY, hole])
        .seed(1)
        .boot();
    let mm = m.mm();
    assert!(mm.present_section_nr(mm.pfn_to_section_nr(Pfn((256 * MIB) >> 12))));
    let dma32 = zoneinfo(&m)
        .into_iter()
        .find(|z| z.name == "DMA32")
        .unwrap();
    let blocks = block_counts(&cat(&m, "pagetypeinfo"));
    assert_eq!(
        blocks["DMA32"],
        dma32.spanned.div_ceil(PAGEBLOCK),
        "every pageblock of the span is counted"
    );
    assert_eq!(dma32.spanned - dma32.present, (4 * MIB) >> 12);
    let page = mm.pfn_to_page(Pfn((257 * MIB) >> 12));
    assert!(page.is_err(), "no RAM behind the hole's PFNs");
}

#[test]
fn i386_sections_are_64_mib() {
    // 512 MiB of RAM placed around the legacy hole ends 384 KiB past 512 MiB: 8 whole
    // sections and a ninth with RAM at its start.
    let m = MachineBuilder::new()
        .ram(512 * MIB)
        .cpus(1)
        .profile(Profile::I386)
        .holes(vec![Hole::LEGACY])
        .seed(1)
        .boot();
    assert_eq!(m.mm().pfn_to_section_nr(Pfn((64 * MIB) >> 12)), 1);
    assert_eq!(m.mm().nr_present_sections(), 9);
    let exact = MachineBuilder::new()
        .ram(512 * MIB - (384 << 10))
        .cpus(1)
        .profile(Profile::I386)
        .holes(vec![Hole::LEGACY])
        .seed(1)
        .boot();
    assert_eq!(exact.mm().nr_present_sections(), 8);
}

/// The "Number of blocks type" table: total pageblocks per zone.
fn block_counts(text: &str) -> std::collections::HashMap<String, u64> {
    let table = text
        .split("Number of blocks type")
        .nth(1)
        .expect("block table");
    table
        .lines()
        .skip(1)
        .filter_map(|l| {
            let rest = l.strip_prefix("Node 0, zone")?;
            let mut w = rest.split_whitespace();
            let name = w.next()?.to_string();
            Some((name, w.map(|v| v.parse::<u64>().unwrap()).sum()))
        })
        .collect()
}

/// The real 4 GiB x86_64 machine in `tests/data/proc`: its DMA32 and Normal pageblock
/// counts are those of a PCI hole from 3 to 4 GiB. Booted with that RAM map, kmemlab
/// counts the same blocks in every zone.
#[test]
fn pagetypeinfo_block_counts_match_the_real_machine_with_a_pci_hole() {
    let real = test_data("proc/pagetypeinfo");
    let real = block_counts(&real);
    // Its RAM ends at 5 GiB: 4 GiB less the legacy hole's 384 KiB, placed around it.
    let m = MachineBuilder::new()
        .ram(4 * GIB - (384 << 10))
        .cpus(4)
        .profile(Profile::X86_64)
        .holes(vec![Hole::LEGACY, Hole::PCI])
        .seed(1)
        .boot();
    let ours = block_counts(&cat(&m, "pagetypeinfo"));
    for zone in ["DMA", "DMA32", "Normal"] {
        assert_eq!(ours[zone], real[zone], "zone {zone}");
    }
}
