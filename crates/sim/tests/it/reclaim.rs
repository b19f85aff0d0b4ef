//! Reclaim made visible, on both profiles: the page cache filled and accounted, kswapd
//! woken below the low watermark and rebalancing the node to the high watermark, direct
//! reclaim for GFP_KERNEL below min, GFP_ATOMIC digging into the reserves and failing
//! below them, GFP_NOWAIT failing at min, `/proc/vmstat` agreeing with all of it, and the
//! `fragment` workload.

use std::collections::HashMap;
use std::sync::atomic::Ordering::Relaxed;

use crate::fixtures::*;
use kmemlab_mm::page_alloc::{FailReason, MAX_NR_ZONES};
use kmemlab_mm::vmscan::KswapdState;
use kmemlab_mm::{Gfp, Mm, PageAllocError, Pfn, Profile, Watermark, ZoneType};
use kmemlab_sim::{fragment, FragmentPattern, Machine, SimPlatform};

const PROFILES: [Profile; 2] = [Profile::X86_64, Profile::I386];

/// 1 GiB: on i386 that is DMA, Normal and 128 MiB of HighMem; on x86_64 DMA and DMA32.
fn gib_machine(profile: Profile) -> Machine {
    MachineBuilder::new()
        .profile(profile)
        .ram(GIB)
        .cpus(2)
        .seed(5)
        .boot()
}

/// `/proc/vmstat` as (name, value) lines, in order.
fn vmstat_lines(mm: &Mm<SimPlatform>) -> Vec<(String, u64)> {
    let mut text = String::new();
    assert!(kmemlab_mm::procfs::render(mm, "/proc/vmstat", &mut text).unwrap());
    text.lines()
        .map(|l| {
            let (name, value) = l.split_once(' ').unwrap_or_else(|| panic!("{l:?}"));
            assert!(
                !name.is_empty() && name.bytes().all(|b| b == b'_' || b.is_ascii_alphanumeric())
            );
            (
                name.to_string(),
                value.parse().unwrap_or_else(|_| panic!("{l:?}")),
            )
        })
        .collect()
}

fn vmstat(mm: &Mm<SimPlatform>) -> HashMap<String, u64> {
    vmstat_lines(mm).into_iter().collect()
}

fn meminfo_kb(mm: &Mm<SimPlatform>, label: &str) -> u64 {
    let mut text = String::new();
    kmemlab_mm::procfs::render(mm, "meminfo", &mut text).unwrap();
    let line = text.lines().find(|l| l.starts_with(label)).unwrap();
    line[label.len()..]
        .trim()
        .trim_end_matches(" kB")
        .trim()
        .parse()
        .unwrap()
}

/// Index of the highest populated zone GFP_KERNEL may use.
fn kernel_zone_idx(mm: &Mm<SimPlatform>) -> usize {
    mm.zone_index(ZoneType::Normal)
}

fn populated(mm: &Mm<SimPlatform>) -> impl Iterator<Item = &kmemlab_mm::Zone> {
    mm.zones().iter().filter(|z| z.managed_pages > 0)
}

/// What kswapd promises once it is back on its wait queue: the node is balanced
/// (`pgdat_balanced`: some eligible zone above high + lowmem_reserve), and every zone,
/// counted raw, has at least its high watermark free.
fn assert_rebalanced(mm: &Mm<SimPlatform>, highest_zoneidx: usize) {
    assert!(mm.pgdat_balanced(0, highest_zoneidx), "node not balanced");
    for z in populated(mm) {
        assert!(
            z.free_pages() >= z.wmark(Watermark::High),
            "{}: free {} < high {}",
            z.name(),
            z.free_pages(),
            z.wmark(Watermark::High)
        );
    }
}

/// Fill the page cache from one CPU call. Inside it kswapd only gets woken; it runs when
/// the call returns. Returns the pages added and whether kswapd was pending.
fn fill(m: &Machine) -> (u64, bool) {
    m.run(|mm| {
        let r = m.page_cache().fill_bytes(mm, 2 * GIB);
        assert!(r.stopped_short(), "2 GiB do not fit: {r:?}");
        assert_eq!(r.cached, r.added, "a fill does not reclaim its own pages");
        let top = populated(mm).last().unwrap();
        assert!(
            top.free_pages() < top.wmark(Watermark::Low),
            "{} below low",
            top.name()
        );
        (r.added, mm.kswapd_pending())
    })
}

fn free_all(m: &Machine, held: Vec<Pfn>) {
    m.run(|mm| {
        for pfn in held {
            mm.__free_pages(mm.pfn_to_page(pfn).unwrap(), 0).unwrap();
        }
    });
}

#[test]
fn page_cache_fill_is_accounted_and_kswapd_trims_it_back_to_high() {
    for profile in PROFILES {
        let m = gib_machine(profile);
        let boot = BootState::of(&m.mm());
        let mm = m.mm();
        let (added, woken) = fill(&m);
        assert!(woken, "{profile}: the fill woke kswapd");
        assert!(
            added > managed(&mm) * 9 / 10,
            "{profile}: {added} pages cached"
        );

        // kswapd ran when the CPU left the kernel: it reclaimed from the cache only.
        let v = vmstat(&mm);
        let cached = m.page_cache().len();
        assert!(v["pageoutrun"] >= 1);
        assert!(v["pgsteal_kswapd"] > 0 && v["pgscan_kswapd"] >= v["pgsteal_kswapd"]);
        assert_eq!(v["pgsteal_kswapd"], added - cached, "{profile}");
        assert_eq!((v["pgsteal_direct"], v["pgscan_direct"]), (0, 0));
        assert_eq!(mm.kswapd_state(), KswapdState::Napping);
        assert_rebalanced(&mm, MAX_NR_ZONES - 1);

        // The cache as the kernel shows it.
        assert_eq!(v["nr_file_pages"], cached);
        assert_eq!(v["nr_inactive_file"], cached);
        assert_eq!(v["nr_zone_inactive_file"], cached);
        assert_eq!(v["nr_active_file"], 0);
        assert_eq!(meminfo_kb(&mm, "Cached:"), cached * 4);
        assert_eq!(meminfo_kb(&mm, "Inactive(file):"), cached * 4);
        assert_eq!(meminfo_kb(&mm, "Active(file):"), 0);
        mm.check().unwrap();

        // Nothing woke it during its nap: the nap ends on a balanced node, kswapd sleeps.
        m.run(|_| ());
        assert_eq!(mm.kswapd_state(), KswapdState::Asleep);
        let v2 = vmstat(&mm);
        assert_eq!(
            v2["kswapd_low_wmark_hit_quickly"],
            v["kswapd_low_wmark_hit_quickly"]
        );
        assert_eq!(
            v2["kswapd_high_wmark_hit_quickly"],
            v["kswapd_high_wmark_hit_quickly"]
        );
        // An explicit run on a balanced node does nothing.
        assert_eq!(m.run_kswapd().passes, 0);

        assert_eq!(m.run(|mm| m.page_cache().drop_all(mm)), cached);
        assert_eq!(vmstat(&mm)["drop_pagecache"], 1);
        assert_eq!(vmstat(&mm)["nr_file_pages"], 0);
        assert!(m.take_console().is_empty(), "no splat");
        assert_all_free(&m, &boot, false);
    }
}

#[test]
fn atomic_digs_into_the_reserves_nowait_stops_at_min_kernel_reclaims() {
    for profile in PROFILES {
        let m = gib_machine(profile);
        let mm = m.mm();
        fill(&m);
        let normal = kernel_zone_idx(&mm);
        // Everything below happens in one call on CPU 0, so kswapd cannot step in.
        let held = m.run(|mm| {
            let mut held = Vec::new();
            let events = mm.events();
            let (reserve0, steal0) = (events.alloc_reserve.load(Relaxed), events.pgsteal_direct.load(Relaxed));
            let cache0 = m.page_cache().len();

            // GFP_NOWAIT: down to min, no reserves, no reclaim.
            let err = loop {
                match mm.alloc_pages(Gfp::GFP_NOWAIT | Gfp::__GFP_NOWARN, 0) {
                    Ok(p) => held.push(mm.page_to_pfn(p)),
                    Err(e) => break e,
                }
            };
            let PageAllocError::NoMemory(summary) = &err else { panic!("{err}") };
            let f = mm.last_alloc_failure().expect("the failure's report");
            assert_eq!((f.summary(), f.reason), (*summary, FailReason::CannotReclaim));
            assert!(f.to_string().contains("no access to the reserves below it"), "{f}");
            assert_eq!(events.alloc_reserve.load(Relaxed), reserve0, "{profile}: NOWAIT used no reserve");
            assert_eq!(events.pgsteal_direct.load(Relaxed), steal0);
            assert_eq!(m.page_cache().len(), cache0);
            for z in populated(mm).filter(|z| z.idx <= normal) {
                assert!(z.free_pages() <= z.wmark(Watermark::Min) + z.lowmem_reserve[normal], "{}", z.name());
            }
            assert!(mm.kswapd_pending(), "below low, kswapd was woken");

            // GFP_ATOMIC: every further page comes out of the reserves, counted; then it
            // fails below them, saying where and why.
            let before = held.len();
            let err = loop {
                match mm.alloc_pages(Gfp::GFP_ATOMIC | Gfp::__GFP_NOWARN, 0) {
                    Ok(p) => held.push(mm.page_to_pfn(p)),
                    Err(e) => break e,
                }
            };
            let dipped = (held.len() - before) as u64;
            assert!(dipped > 0, "{profile}: GFP_ATOMIC got reserve pages");
            assert_eq!(events.alloc_reserve.load(Relaxed) - reserve0, dipped, "{profile}");
            let PageAllocError::NoMemory(summary) = &err else { panic!("{err}") };
            let f = mm.last_alloc_failure().expect("the failure's report");
            assert_eq!((f.summary(), f.reason), (*summary, FailReason::CannotReclaim));
            let text = f.to_string();
            let top = &mm.zones()[f.preferred.map(|z| mm.zone_index(z)).unwrap()];
            for want in [
                top.name(),
                "watermark min",
                "less the reserves of __GFP_HIGH (half) and a non-blocking caller (a further quarter)",
                "lowmem_reserve",
            ] {
                assert!(text.contains(want), "{profile}: {want:?} missing from: {text}");
            }
            let v = f.zones[top.idx].unwrap();
            assert_eq!(v.wmark_pages as u64, top.wmark(Watermark::Min));
            let half = v.wmark_pages - v.wmark_pages / 2;
            assert_eq!(v.floor(), half - half / 4, "GFP_ATOMIC's floor: 37.5 % of min");
            assert!(top.free_pages() <= v.floor() as u64 + v.reserve as u64);
            // GFP_NOWAIT still fails, still without touching the reserves.
            let reserve1 = events.alloc_reserve.load(Relaxed);
            assert!(mm.alloc_pages(Gfp::GFP_NOWAIT | Gfp::__GFP_NOWARN, 0).is_err());
            assert_eq!(events.alloc_reserve.load(Relaxed), reserve1);

            // GFP_KERNEL: reclaims the page cache and succeeds, page after page.
            let (stall0, steal0, scan0) = (
                events.allocstall[normal].load(Relaxed),
                events.pgsteal_direct.load(Relaxed),
                events.pgscan_direct.load(Relaxed),
            );
            let cache0 = m.page_cache().len();
            for _ in 0..300 {
                let p = mm.alloc_pages(Gfp::GFP_KERNEL, 0).expect("GFP_KERNEL reclaims");
                held.push(mm.page_to_pfn(p));
            }
            let stolen = events.pgsteal_direct.load(Relaxed) - steal0;
            assert!(stolen >= 300, "{profile}: pgsteal_direct +{stolen}");
            assert_eq!(cache0 - m.page_cache().len(), stolen, "{profile}: the cache lost what was stolen");
            assert!(events.pgscan_direct.load(Relaxed) - scan0 >= stolen);
            assert!(events.allocstall[normal].load(Relaxed) > stall0, "allocstall_normal counted");
            assert_eq!(events.pgsteal_kswapd.load(Relaxed), vmstat(mm)["pgsteal_kswapd"]);
            mm.check().unwrap();
            held
        });
        // Back from the kernel, kswapd had its turn.
        assert_rebalanced(&mm, normal);
        // Every page scanned and stolen, by kswapd or direct reclaim, is a file-LRU page.
        let v = vmstat(&mm);
        assert!(
            v["pgsteal_direct"] > 0 && v["pgsteal_kswapd"] > 0,
            "{profile}: both reclaimed"
        );
        assert_eq!(
            v["pgscan_file"],
            v["pgscan_kswapd"] + v["pgscan_direct"],
            "{profile}"
        );
        assert_eq!(
            v["pgsteal_file"],
            v["pgsteal_kswapd"] + v["pgsteal_direct"],
            "{profile}"
        );
        assert!(
            !v.contains_key("pgscan_anon") && !v.contains_key("pgsteal_anon"),
            "{profile}"
        );
        free_all(&m, held);
        assert!(m.take_console().is_empty(), "{profile}: no splat");
        mm.check().unwrap();
    }
}

#[test]
fn kswapd_rebalances_and_counts_how_quickly_the_watermarks_came_back() {
    for profile in PROFILES {
        let m = gib_machine(profile);
        let mm = m.mm();
        fill(&m);
        let normal = kernel_zone_idx(&mm);
        let v0 = vmstat(&mm);
        assert_eq!(mm.kswapd_state(), KswapdState::Napping);

        // An allocation below low during kswapd's nap: woken early, low watermark hit
        // quickly; it rebalances the node again.
        let mut held = m.run(|mm| {
            let mut held = Vec::new();
            while let Ok(p) = mm.alloc_pages(Gfp::GFP_NOWAIT | Gfp::__GFP_NOWARN, 0) {
                held.push(mm.page_to_pfn(p));
            }
            assert!(!mm.pgdat_balanced(0, normal));
            assert!(mm.kswapd_pending());
            held
        });
        let v1 = vmstat(&mm);
        assert_eq!(
            v1["kswapd_low_wmark_hit_quickly"],
            v0["kswapd_low_wmark_hit_quickly"] + 1
        );
        assert!(v1["pageoutrun"] > v0["pageoutrun"]);
        assert!(v1["pgsteal_kswapd"] > v0["pgsteal_kswapd"]);
        assert!(
            v1["pgscan_kswapd"] - v0["pgscan_kswapd"]
                >= v1["pgsteal_kswapd"] - v0["pgsteal_kswapd"]
        );
        assert_eq!(
            v1["pgsteal_direct"], 0,
            "{profile}: kswapd kept up, no direct reclaim"
        );
        assert_rebalanced(&mm, normal);

        // Dip below high but not below low while it naps: nobody wakes it, but the nap
        // ends on an unbalanced node: the high watermark was hit quickly.
        m.run(|mm| {
            while mm.pgdat_balanced(0, normal) {
                held.push(mm.page_to_pfn(mm.alloc_pages(Gfp::GFP_KERNEL, 0).unwrap()));
            }
            for z in populated(mm).filter(|z| z.idx <= normal) {
                assert!(
                    z.free_pages() > z.wmark(Watermark::Low),
                    "{}: still above low",
                    z.name()
                );
            }
            assert_eq!(mm.kswapd_state(), KswapdState::Napping);
        });
        let v2 = vmstat(&mm);
        assert_eq!(
            v2["kswapd_low_wmark_hit_quickly"],
            v1["kswapd_low_wmark_hit_quickly"]
        );
        assert_eq!(
            v2["kswapd_high_wmark_hit_quickly"],
            v1["kswapd_high_wmark_hit_quickly"] + 1
        );
        assert!(v2["pgsteal_kswapd"] > v1["pgsteal_kswapd"]);
        assert_rebalanced(&mm, normal);
        mm.check().unwrap();

        // With nothing left to reclaim, kswapd gives up after MAX_RECLAIM_RETRIES passes
        // and the node shows as unreclaimable.
        m.run(|mm| m.page_cache().drop_all(mm));
        free_all(&m, std::mem::take(&mut held));
        let held = m.run(|mm| {
            let mut held = Vec::new();
            while let Ok(p) = mm.alloc_pages(Gfp::GFP_NOWAIT | Gfp::__GFP_NOWARN, 0) {
                held.push(mm.page_to_pfn(p));
            }
            held
        });
        assert_eq!(mm.kswapd_failures(), 16, "{profile}");
        let mut zoneinfo = String::new();
        kmemlab_mm::procfs::render(&mm, "zoneinfo", &mut zoneinfo).unwrap();
        assert!(zoneinfo.contains("node_unreclaimable:  1"));
        m.run(|_| ());
        assert_eq!(
            mm.kswapd_state(),
            KswapdState::Asleep,
            "a hopeless node sleeps"
        );
        free_all(&m, held);
        assert!(m.take_console().is_empty());
        mm.check().unwrap();
    }
}

#[test]
fn an_interrupt_only_wakes_kswapd_which_reclaims_after_it() {
    for profile in PROFILES {
        let m = gib_machine(profile);
        let mm = m.mm();
        fill(&m);
        m.run(|_| ()); // the nap after the fill's rebalancing ends: asleep
        assert_eq!(mm.kswapd_state(), KswapdState::Asleep);
        let steal0 = mm.events().pgsteal_kswapd.load(Relaxed);
        let held = m
            .on_cpu(1, kmemlab_mm::Context::Hardirq, |mm| {
                let mut held = Vec::new();
                while mm.pgdat_balanced(0, kernel_zone_idx(mm)) || !mm.kswapd_pending() {
                    let p = mm
                        .alloc_pages(Gfp::GFP_ATOMIC, 0)
                        .expect("atomic above the reserves");
                    held.push(mm.page_to_pfn(p));
                }
                assert_eq!(
                    mm.events().pgsteal_kswapd.load(Relaxed),
                    steal0,
                    "no reclaim in the handler"
                );
                held
            })
            .unwrap();
        assert!(
            mm.events().pgsteal_kswapd.load(Relaxed) > steal0,
            "{profile}: kswapd ran after the interrupt"
        );
        assert_rebalanced(&mm, kernel_zone_idx(&mm));
        free_all(&m, held);
        assert!(m.take_console().is_empty());
        mm.check().unwrap();
    }
}

#[test]
fn proc_vmstat_has_the_kernels_shape_and_agrees_with_the_counters() {
    for profile in PROFILES {
        let m = gib_machine(profile);
        let mm = m.mm();
        fill(&m);
        let lines = vmstat_lines(&mm);
        let names: Vec<&str> = lines.iter().map(|(n, _)| n.as_str()).collect();
        let mut unique = names.clone();
        unique.sort_unstable();
        unique.dedup();
        assert_eq!(unique.len(), names.len(), "no name twice");
        // vmstat_text order: zone items, node items, then the events.
        let pos = |n: &str| {
            names
                .iter()
                .position(|&x| x == n)
                .unwrap_or_else(|| panic!("{n} missing"))
        };
        let order = [
            "nr_free_pages",
            "nr_zone_inactive_file",
            "nr_zone_active_file",
            "nr_inactive_file",
            "nr_active_file",
            "nr_slab_reclaimable",
            "nr_slab_unreclaimable",
            "nr_file_pages",
            "nr_page_table_pages",
            "pgalloc_dma",
            "pgalloc_normal",
            "pgalloc_movable",
            "allocstall_dma",
            "allocstall_movable",
            "pgfree",
            "pgsteal_kswapd",
            "pgsteal_direct",
            "pgscan_kswapd",
            "pgscan_direct",
            "pgscan_file",
            "pgsteal_file",
            "kswapd_low_wmark_hit_quickly",
            "kswapd_high_wmark_hit_quickly",
            "pageoutrun",
            "drop_pagecache",
        ];
        for pair in order.windows(2) {
            assert!(
                pos(pair[0]) < pos(pair[1]),
                "{} before {}",
                pair[0],
                pair[1]
            );
        }
        // TEXTS_FOR_ZONES: the zones the profile configures.
        let (has, lacks) = match profile {
            Profile::X86_64 => ("pgalloc_dma32", "pgalloc_high"),
            Profile::I386 => ("pgalloc_high", "pgalloc_dma32"),
        };
        assert!(names.contains(&has) && !names.contains(&lacks), "{profile}");
        // Only what is counted: no kmemlab counters, no modelled-away kernel ones.
        for absent in [
            "alloc_reserve",
            "nr_dirty_threshold",
            "nr_anon_pages",
            "compact_stall",
            "pgfault",
        ] {
            assert!(!names.contains(&absent), "{absent}");
        }
        let v: HashMap<&str, u64> = lines.iter().map(|(n, x)| (n.as_str(), *x)).collect();
        assert_eq!(
            v["nr_free_pages"],
            mm.zones().iter().map(|z| z.free_pages()).sum::<u64>()
        );
        assert_eq!(v["nr_file_pages"], m.page_cache().len());
        assert_eq!(v["pgfree"], mm.pgfree());
        assert_eq!(v["nr_page_table_pages"], mm.nr_pagetable_pages());
        let suffix = |z: ZoneType| match z {
            ZoneType::HighMem => "high".to_string(),
            other => other.name().to_lowercase(),
        };
        for z in mm.zones() {
            assert_eq!(
                v[format!("pgalloc_{}", suffix(z.zone_type)).as_str()],
                mm.pgalloc(z)
            );
            assert_eq!(
                v[format!("allocstall_{}", suffix(z.zone_type)).as_str()],
                mm.events().allocstall[z.idx].load(Relaxed)
            );
        }
        let e = mm.events();
        for (name, counter) in [
            ("pgsteal_kswapd", &e.pgsteal_kswapd),
            ("pgscan_kswapd", &e.pgscan_kswapd),
            ("pgscan_file", &e.pgscan_file),
            ("pgsteal_file", &e.pgsteal_file),
            ("pageoutrun", &e.pageoutrun),
        ] {
            assert_eq!(v[name], counter.load(Relaxed), "{name}");
        }
        assert!(v["pgsteal_file"] > 0, "{profile}: kswapd trimmed the cache");
        assert_eq!(v["pgscan_file"], v["pgscan_kswapd"] + v["pgscan_direct"]);
        assert_eq!(v["pgsteal_file"], v["pgsteal_kswapd"] + v["pgsteal_direct"]);
        // The shell's `cat` finds it.
        assert!(kmemlab_mm::procfs::FILES.contains(&"vmstat"));
        m.run(|mm| m.page_cache().drop_all(mm));
        mm.check().unwrap();
    }
}

/// The buddyinfo line of `zone`, as numbers.
fn buddyinfo(mm: &Mm<SimPlatform>, zone: ZoneType) -> Vec<u64> {
    let mut text = String::new();
    kmemlab_mm::procfs::render(mm, "buddyinfo", &mut text).unwrap();
    let line = text
        .lines()
        .find(|l| l.split_whitespace().nth(3) == Some(zone.name()))
        .unwrap_or_else(|| panic!("no {zone} in\n{text}"));
    line.split_whitespace()
        .skip(4)
        .map(|n| n.parse().unwrap())
        .collect()
}

/// The zones GFP_KERNEL may use, highest first.
fn kernel_zones(profile: Profile) -> [&'static str; 2] {
    match profile {
        Profile::X86_64 => ["DMA32", "DMA"],
        Profile::I386 => ["Normal", "DMA"],
    }
}

#[test]
fn fragment_leaves_no_large_block_and_undo_restores_everything() {
    for profile in PROFILES {
        let m = gib_machine(profile);
        let boot = BootState::of(&m.mm());
        let mm = m.mm();
        let mut zones: Vec<&str> = kernel_zones(profile).to_vec();
        if profile == Profile::I386 {
            zones.push("HighMem");
        }
        for (zone, pattern, order) in zones.iter().flat_map(|&z| {
            [
                (z, FragmentPattern::Sparse, 10),
                (z, FragmentPattern::Alternate, 1),
                (z, FragmentPattern::Sparse, 4),
            ]
        }) {
            let zt = ZoneType::from_name(zone).unwrap();
            let z = &mm.zones()[zone_idx(&mm, zt)];
            let free_before = z.free_pages();
            let f = fragment(&m, zone, order, pattern)
                .unwrap_or_else(|e| panic!("{profile} {zone}: {e}"));
            let r = f.report.clone();
            assert_eq!((r.zone, r.order, r.pattern), (zt, order, pattern));
            assert!(r.largest_free_order_before.unwrap() >= order);
            assert!(r.largest_free_order_after.unwrap() < order, "{r:?}");
            let counts = buddyinfo(&mm, zt);
            assert!(
                counts[order as usize..].iter().all(|&n| n == 0),
                "{profile} {zone} {counts:?}"
            );
            assert_eq!(r.free_pages, z.free_pages());
            assert_eq!(
                r.free_pages + r.pinned_pages,
                free_before,
                "{profile} {zone}"
            );
            match pattern {
                FragmentPattern::Sparse => assert!(r.pinned_pages <= free_before >> (order - 1)),
                FragmentPattern::Alternate => assert!(r.pinned_pages * 2 <= free_before + 1),
            }
            assert!(r.free_pages > z.wmark(Watermark::High), "well above high");
            mm.check().unwrap();
            assert_eq!(f.undo(&m).unwrap(), r.pinned_pages);
            assert_eq!(
                z.free_pages(),
                free_before,
                "{profile} {zone}: undo gives every page back"
            );
        }
        assert!(m.take_console().is_empty());
        assert_all_free(&m, &boot, true);
    }
}

#[test]
fn after_fragment_a_4mib_kmalloc_fails_and_a_64mib_vmalloc_succeeds() {
    for profile in PROFILES {
        let m = gib_machine(profile);
        let mm = m.mm();
        m.run(|mm| {
            let p = mm
                .kmalloc(4 << 20, Gfp::GFP_KERNEL)
                .expect("4 MiB before fragmenting");
            mm.kfree(p).unwrap();
        });
        let frags: Vec<_> = kernel_zones(profile)
            .into_iter()
            .map(|zone| fragment(&m, zone, 10, FragmentPattern::Sparse).unwrap())
            .collect();
        for z in populated(&mm) {
            assert!(
                z.free_pages() > 2 * z.wmark(Watermark::High),
                "{}",
                z.name()
            );
        }
        let kmalloc = m.run(|mm| mm.kmalloc(4 << 20, Gfp::GFP_KERNEL | Gfp::__GFP_NOWARN));
        let err = kmalloc.expect_err("no order-10 block anywhere GFP_KERNEL may look");
        assert!(err.to_string().contains("order"), "{err}");
        let v = m
            .run(|mm| mm.vmalloc(64 << 20))
            .expect("64 MiB of single pages");
        m.run(|mm| mm.vfree(v)).unwrap();
        for zone in kernel_zones(profile) {
            let counts = buddyinfo(&mm, ZoneType::from_name(zone).unwrap());
            assert_eq!(counts[10], 0, "{profile} {zone}");
        }
        mm.check().unwrap();
        for f in frags {
            f.undo(&m).unwrap();
        }
        m.run(|mm| {
            let p = mm
                .kmalloc(4 << 20, Gfp::GFP_KERNEL)
                .expect("4 MiB again after undo");
            mm.kfree(p).unwrap();
        });
        assert!(m.take_console().is_empty());
        mm.check().unwrap();
    }
}

#[test]
fn fragment_refuses_what_it_cannot_do() {
    let m = gib_machine(Profile::X86_64);
    assert!(matches!(
        fragment(&m, "Normal", 10, FragmentPattern::Sparse),
        Err(kmemlab_sim::FragmentError::EmptyZone(ZoneType::Normal))
    ));
    assert!(matches!(
        fragment(&m, "HighMem", 10, FragmentPattern::Sparse),
        Err(kmemlab_sim::FragmentError::EmptyZone(ZoneType::HighMem))
    ));
    let e = fragment(&m, "Nowhere", 3, FragmentPattern::Sparse).unwrap_err();
    assert!(e.to_string().contains("Nowhere"));
    assert!(matches!(
        fragment(&m, ZoneType::Dma, 0, FragmentPattern::Alternate),
        Err(kmemlab_sim::FragmentError::BadOrder(0))
    ));
    assert_eq!(
        FragmentPattern::from_name("SPARSE"),
        Some(FragmentPattern::Sparse)
    );
    m.mm().check().unwrap();
}
