//! The `/proc` renderers: the same line shapes (labels, column widths, alignment) as real
//! kernel output saved in `tests/data/proc/`, and values that agree with the allocator.

use crate::fixtures::*;
use kmemlab_mm::{procfs, Gfp, Mm, Pfn, PhysAddr, Profile, ZoneType};
use kmemlab_sim::{Hole, Machine, SimPlatform};

fn render(mm: &Mm<SimPlatform>, name: &str) -> String {
    let mut s = String::new();
    assert!(procfs::render(mm, name, &mut s).unwrap(), "{name} exists");
    s
}

/// The real sample `/proc/<name>` (`tests/data/proc/` at the repository root); a missing
/// sample fails the test.
fn sample(name: &str) -> String {
    test_data(&format!("proc/{name}"))
}

/// A line's shape: for each whitespace-separated token, the column where it ends and
/// whether it is a number. Right-aligned columns end at fixed columns whatever the value.
fn shape(line: &str) -> Vec<(usize, bool)> {
    let mut out = Vec::new();
    let bytes = line.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b' ' {
            i += 1;
            continue;
        }
        let start = i;
        while i < bytes.len() && bytes[i] != b' ' {
            i += 1;
        }
        let tok = &line[start..i];
        out.push((i, tok.chars().all(|c| c.is_ascii_digit())));
    }
    out
}

fn machines() -> Vec<Machine> {
    vec![
        MachineBuilder::new().ram(64 * MIB).cpus(2).boot(),
        MachineBuilder::new()
            .ram(5 * GIB)
            .cpus(2)
            .holes(vec![Hole::LEGACY, Hole::PCI])
            .boot(),
        MachineBuilder::new()
            .profile(Profile::I386)
            .ram(1200 * MIB)
            .cpus(2)
            .boot(),
    ]
}

/// The sample line for `zone` (by the zone-name token), or the first line when the sample
/// machine had no such zone.
fn sample_line_for<'a>(lines: &[&'a str], zone: &str) -> &'a str {
    lines
        .iter()
        .find(|l| {
            l.split_whitespace()
                .any(|t| t.trim_end_matches(',') == zone)
        })
        .or(lines.first())
        .copied()
        .expect("sample has lines")
}

#[test]
fn buddyinfo_has_the_kernels_shape_and_the_allocators_counts() {
    let real = sample("buddyinfo");
    for m in machines() {
        // Some state first: a few allocations on several orders.
        m.run(|mm| {
            for order in [0, 1, 3, 5] {
                mm.alloc_pages(Gfp::GFP_KERNEL, order).unwrap();
            }
        });
        m.mm().drain_all_pages();
        let mm = m.mm();
        let text = render(&mm, "buddyinfo");
        let populated: Vec<_> = mm.zones().iter().filter(|z| z.managed_pages > 0).collect();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), populated.len());
        for (line, zone) in lines.iter().zip(&populated) {
            assert!(
                line.starts_with(&format!("Node 0, zone {:>8} ", zone.name())),
                "{line:?}"
            );
            let counts: Vec<u64> = line[22..]
                .split_whitespace()
                .map(|t| t.parse().unwrap())
                .collect();
            assert_eq!(
                counts,
                mm.free_area_snapshot(zone).nr_free.to_vec(),
                "{line}"
            );
        }
        let real = &real;
        let real_lines: Vec<&str> = real.lines().collect();
        for line in &lines {
            let zone = line.split_whitespace().nth(3).unwrap();
            let want = sample_line_for(&real_lines, zone);
            assert_eq!(line.len(), want.len(), "\n ours: {line:?}\n real: {want:?}");
            assert_eq!(
                shape(line),
                shape(want),
                "\n ours: {line:?}\n real: {want:?}"
            );
        }
    }
}

/// `pageblock_nr_pages` of the kernel a profile stands for, from Linux 6.6.63's headers
/// rather than kmemlab's: `include/linux/pageblock-flags.h` makes `pageblock_order`
/// `min(HUGETLB_PAGE_ORDER, MAX_ORDER)` (`MAX_ORDER` without `CONFIG_HUGETLB_PAGE`,
/// `MAX_ORDER` = 10), and x86's `HUGETLB_PAGE_ORDER` is `PMD_SHIFT - PAGE_SHIFT`
/// (`arch/x86/include/asm/page_types.h`): 21 - 12 = 9 on x86_64; 2-level i386 folds the
/// PMD, `PMD_SHIFT` = `PGDIR_SHIFT` = 22 (`pgtable-2level_types.h`), so 10.
fn pageblock_pages_of_the_kernel(profile: Profile) -> u64 {
    match profile {
        Profile::X86_64 => 512,
        Profile::I386 => 1024,
    }
}

/// The header of `/proc/pagetypeinfo` (`pagetypeinfo_show()`, `mm/vmstat.c`: "Page block
/// order: %d\n", "Pages per block:  %lu\n"): the x86_64 sample's 9 and 512 on x86_64,
/// and 10 and 1024 on i386 without PAE, in the same words and spacing.
#[test]
fn pagetypeinfo_prints_the_profiles_pageblock_order() {
    let real = sample("pagetypeinfo");
    let x86_64 = MachineBuilder::small().boot();
    let text = render(&x86_64.mm(), "pagetypeinfo");
    assert!(
        text.starts_with("Page block order: 9\nPages per block:  512\n\n"),
        "{text}"
    );
    assert_eq!(
        text.lines().take(3).collect::<Vec<_>>(),
        real.lines().take(3).collect::<Vec<_>>()
    );
    let i386 = MachineBuilder::small().profile(Profile::I386).boot();
    let text = render(&i386.mm(), "pagetypeinfo");
    assert!(
        text.starts_with("Page block order: 10\nPages per block:  1024\n\n"),
        "{text}"
    );
    for (m, order) in [(&x86_64, 9), (&i386, 10)] {
        assert_eq!(m.mm().pageblock_order(), order);
        assert_eq!(m.mm().pageblock_nr_pages(), 1 << order);
    }
}

/// Pageblocks per zone on a 64 MiB i386 machine: DMA spans PFNs 1..4096 and Normal
/// 4096..16384, so with 1024-page pageblocks the kernel counts 4 and 12 (it was 8 and 24
/// when kmemlab's i386 had x86_64's 512).
#[test]
fn i386_pagetypeinfo_counts_1024_page_blocks() {
    let m = MachineBuilder::small().profile(Profile::I386).boot();
    let text = render(&m.mm(), "pagetypeinfo");
    let counts = |zone: &str| -> u64 {
        let line = text
            .lines()
            .find(|l| l.starts_with(&format!("Node 0, zone {zone:>8} ")))
            .unwrap_or_else(|| panic!("no block count for {zone}:\n{text}"));
        line[22..]
            .split_whitespace()
            .map(|t| t.parse::<u64>().unwrap())
            .sum()
    };
    let zone = |zt| {
        let mm = m.mm();
        let z = &mm.zones()[zone_idx(&mm, zt)];
        (z.zone_start_pfn.raw(), z.zone_end_pfn().raw())
    };
    assert_eq!(zone(ZoneType::Dma), (1, 4096));
    assert_eq!(zone(ZoneType::Normal), (4096, 16384));
    assert_eq!(counts("DMA"), 4);
    assert_eq!(counts("Normal"), 12);
}

#[test]
fn pagetypeinfo_has_the_kernels_shape() {
    let real = sample("pagetypeinfo");
    for m in machines() {
        let mm = m.mm();
        m.run(|mm| {
            mm.alloc_pages(Gfp::GFP_KERNEL, 0).unwrap();
            mm.alloc_pages(Gfp::GFP_KERNEL | Gfp::__GFP_RECLAIMABLE, 2)
                .unwrap();
        });
        let text = render(&mm, "pagetypeinfo");
        let lines: Vec<&str> = text.lines().collect();
        let populated: Vec<_> = mm.zones().iter().filter(|z| z.managed_pages > 0).collect();
        // 3 header lines + blank, one line per zone and type, blank, header, one per zone.
        assert_eq!(lines.len(), 4 + populated.len() * 5 + 2 + populated.len());
        // The per-type counts add up to buddyinfo's; the pageblock counts to the zone span.
        for (zi, zone) in populated.iter().enumerate() {
            let snap = mm.free_area_snapshot(zone);
            for t in 0..5 {
                let line = lines[4 + zi * 5 + t];
                let counts: Vec<u64> = line[45..]
                    .split_whitespace()
                    .map(|t| t.parse().unwrap())
                    .collect();
                assert_eq!(counts, snap.per_type[t].to_vec(), "{line}");
            }
            let blocks_line = lines[4 + populated.len() * 5 + 2 + zi];
            let blocks: u64 = blocks_line[22..]
                .split_whitespace()
                .map(|t| t.parse::<u64>().unwrap())
                .sum();
            // Every pageblock of the span, except those in absent memory sections (128 MiB
            // on x86_64, 64 MiB on i386 without PAE, with no RAM in them). Pageblocks of
            // 512 pages on x86_64 and 1024 on i386 without PAE
            // (pageblock_pages_of_the_kernel()).
            let pageblock = pageblock_pages_of_the_kernel(mm.profile());
            let first = zone.zone_start_pfn.raw() / pageblock;
            let last = (zone.zone_end_pfn().raw() - 1) / pageblock;
            let section_pages: u64 = if mm.profile() == Profile::X86_64 {
                1 << 15
            } else {
                1 << 14
            };
            let present = |pfn: Pfn| {
                let start = Pfn(pfn.raw() / section_pages * section_pages);
                mm.memblock().memory().regions().iter().any(|r| {
                    PhysAddr(r.base).pfn() < start + section_pages
                        && PhysAddr(r.end()).pfn() > start
                })
            };
            let want = (first..=last)
                .filter(|&b| present(Pfn(b * pageblock).max(zone.zone_start_pfn)))
                .count() as u64;
            assert_eq!(blocks, want, "{blocks_line}");
        }
        let real = &real;
        let real_lines: Vec<&str> = real.lines().collect();
        // The fixed lines are identical; the pageblock order and size are the x86_64
        // sample's on x86_64 only (i386: pagetypeinfo_prints_the_profiles_pageblock_order).
        let fixed: &[usize] = if mm.profile() == Profile::X86_64 {
            &[0, 1, 2, 3]
        } else {
            &[2, 3]
        };
        for &i in fixed {
            assert_eq!(lines[i], real_lines[i], "line {i}");
        }
        let real_hdr = real_lines
            .iter()
            .position(|l| l.starts_with("Number of blocks type"))
            .unwrap();
        let hdr = lines
            .iter()
            .position(|l| l.starts_with("Number of blocks type"))
            .unwrap();
        assert_eq!(lines[hdr], real_lines[real_hdr]);
        assert_eq!(lines[hdr - 1], "");
        // Per-type lines: same columns as the real ones for the same zone and type.
        let real_types: Vec<&str> = real_lines[4..real_hdr - 1].to_vec();
        for line in &lines[4..hdr - 1] {
            let toks: Vec<&str> = line.split_whitespace().collect();
            let (zone, mt) = (toks[3].trim_end_matches(','), toks[5]);
            let want = real_types
                .iter()
                .find(|l| l.contains(&format!(" {zone}, ")) && l.contains(&format!(" {mt} ")))
                .or_else(|| real_types.iter().find(|l| l.contains(&format!(" {mt} "))))
                .unwrap();
            let ours_shape = shape(line);
            let want_shape = shape(want);
            assert_eq!(line.len(), want.len(), "\n ours: {line:?}\n real: {want:?}");
            // Token ends match except the zone name when the real machine had no such zone.
            assert_eq!(ours_shape.len(), want_shape.len());
            for (a, b) in ours_shape.iter().zip(&want_shape) {
                assert_eq!(a, b, "\n ours: {line:?}\n real: {want:?}");
            }
        }
        let real_blocks: Vec<&str> = real_lines[real_hdr + 1..]
            .iter()
            .copied()
            .filter(|l| !l.is_empty())
            .collect();
        for line in &lines[hdr + 1..] {
            let zone = line.split_whitespace().nth(3).unwrap();
            let want = sample_line_for(&real_blocks, zone);
            assert_eq!(line.len(), want.len(), "\n ours: {line:?}\n real: {want:?}");
            assert_eq!(
                shape(line),
                shape(want),
                "\n ours: {line:?}\n real: {want:?}"
            );
        }
    }
}

#[test]
fn meminfo_has_the_kernels_shape() {
    let real = sample("meminfo");
    for m in machines() {
        let text = render(&m.mm(), "meminfo");
        for line in text.lines() {
            // show_val_kb(): "%-16s%8lu kB" with the label's colon inside the 16 columns; a
            // number of more than 8 digits (VmallocTotal on x86_64) widens the line.
            assert!(line.len() >= 27, "{line:?}");
            assert!(line.ends_with(" kB"));
            let label = line[..16].trim_end();
            assert!(label.ends_with(':') && !label.contains(' '), "{line:?}");
            let number = &line[16..line.len() - 3];
            assert!(number.len() == 8 || !number.starts_with(' '), "{line:?}");
            assert!(number.trim_start().parse::<u64>().is_ok(), "{line:?}");
            let real = &real;
            let want = real
                .lines()
                .find(|l| l.starts_with(label))
                .or_else(|| real.lines().find(|l| l.starts_with("MemTotal:")))
                .unwrap();
            // Same width, unless one of the numbers overflows the 8 columns.
            if line.len() == 27 && want.len() == 27 {
                assert_eq!(
                    shape(line)[1..],
                    shape(want)[1..],
                    "\n ours: {line:?}\n real: {want:?}"
                );
            }
        }
        let labels: Vec<&str> = text.lines().map(|l| l[..16].trim_end()).collect();
        assert_eq!(labels[..3], ["MemTotal:", "MemFree:", "MemAvailable:"]);
    }
}

fn meminfo_kb(text: &str, label: &str) -> u64 {
    let line = text
        .lines()
        .find(|l| l.starts_with(label))
        .unwrap_or_else(|| panic!("no {label}"));
    line[label.len()..line.len() - 3].trim().parse().unwrap()
}

#[test]
fn memtotal_is_ram_minus_what_boot_reserved() {
    for m in machines() {
        let mm = m.mm();
        let ram = mm.platform().ram();
        let ram_pages = ram.size() / 4096;
        // Pages of memblock-reserved regions that lie in RAM (the first MiB, mem_map, the
        // pageblock flags, the per-CPU areas), and page 0 that boot trims.
        let mut reserved_in_ram = 0u64;
        for r in mm.memblock().reserved().regions() {
            for region in ram.map() {
                let s = r.base.max(region.start.0) >> 12;
                let e = (r.base + r.size).div_ceil(4096).min(region.end.0 >> 12);
                reserved_in_ram += e.saturating_sub(s);
            }
        }
        let text = render(&mm, "meminfo");
        let total = meminfo_kb(&text, "MemTotal:");
        assert_eq!(
            total,
            (ram_pages - reserved_in_ram) * 4,
            "{}",
            m.config().ram
        );
        assert_eq!(total, managed(&mm) * 4);
        // The checker agrees: reserved = holes + boot reservations.
        let report = mm.check().unwrap();
        let holes = report.total - ram_pages;
        assert_eq!(report.reserved, holes + reserved_in_ram);
        // Free = managed less the slab and page-table pages boot allocated (x86_64's
        // preallocated vmalloc PUDs) and the pages that wait on per-CPU lists; meminfo's
        // Slab line reports the slab pages.
        assert_eq!(
            meminfo_kb(&text, "MemFree:"),
            total - (report.allocated + report.pcp) * 4,
            "only boot's slab, page-table and per-CPU pages are not free"
        );
        assert_eq!(
            meminfo_kb(&text, "Slab:"),
            (report.allocated - mm.nr_pagetable_pages()) * 4
        );
        assert!(meminfo_kb(&text, "MemAvailable:") < total);

        // MemFree follows allocations (order 4 bypasses the per-CPU lists).
        let free_before = meminfo_kb(&text, "MemFree:");
        let pfn = m.run(|mm| mm.page_to_pfn(mm.alloc_pages(Gfp::GFP_KERNEL, 4).unwrap()));
        let text = render(&mm, "meminfo");
        assert_eq!(meminfo_kb(&text, "MemFree:"), free_before - 64);
        assert_eq!(meminfo_kb(&text, "MemTotal:"), total);
        m.run(|mm| mm.__free_pages(mm.pfn_to_page(pfn).unwrap(), 4))
            .unwrap();

        if mm.profile() == Profile::I386 {
            let high: u64 = mm
                .zones()
                .iter()
                .filter(|z| z.zone_type == ZoneType::HighMem)
                .map(|z| z.managed_pages * 4)
                .sum();
            let text = render(&mm, "meminfo");
            assert_eq!(meminfo_kb(&text, "HighTotal:"), high);
            assert_eq!(meminfo_kb(&text, "LowTotal:"), total - high);
        }
    }
}
