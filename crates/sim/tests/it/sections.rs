//! SPARSEMEM's memmap (`mm/sparse.c`, `mm/sparse-vmemmap.c`, 6.6): `struct page`s for
//! present memory sections only, their RAM taken from memblock (`section_map_size()`, 2 MiB
//! per 128 MiB section on x86_64), and a PFN in an absent section answered as
//! `pfn_valid()` false answers, in every lookup and every `/proc` file.

use crate::fixtures::*;
use kmemlab_mm::{procfs, Pfn, Profile};
use kmemlab_sim::{Hole, Machine};

/// 4 GiB of RAM around a 2 GiB hole at 2..4 GiB: sections 16..32 are absent.
fn holey() -> Machine {
    MachineBuilder::new()
        .ram(4 * GIB)
        .cpus(2)
        .profile(Profile::X86_64)
        .holes(vec![
            Hole::LEGACY,
            Hole {
                start: 2 * GIB,
                end: 4 * GIB,
            },
        ])
        .seed(1)
        .boot()
}

fn cat(m: &Machine, file: &str) -> String {
    let mut out = String::new();
    assert!(procfs::render(&m.mm(), file, &mut out).unwrap(), "{file}");
    out
}

#[test]
fn struct_pages_only_for_present_sections() {
    let m = holey();
    let mm = m.mm();
    let map = mm.mem_map();
    // RAM ends 384 KiB past 6 GiB (the legacy hole moved it up): 49 sections spanned,
    // 16 of them absent.
    assert_eq!(mm.nr_present_sections(), 49 - 16);
    assert_eq!(map.nr_pages(), 33 << 15);
    assert_eq!(
        map.len,
        49 << 15,
        "the span runs to the end of the last section"
    );
    let reserved = mm
        .memblock()
        .reserved()
        .regions()
        .iter()
        .filter(|r| r.name == kmemlab_mm::mm_init::MEM_MAP_NAME)
        .map(|r| r.size)
        .sum::<u64>();
    assert_eq!(
        reserved,
        33 * 2 * MIB,
        "section_map_size() per present section"
    );
    let hole_pfn = Pfn((3 * GIB) >> 12);
    assert!(!mm.present_section_nr(mm.pfn_to_section_nr(hole_pfn)));
    assert!(map.get(hole_pfn).is_none());
    assert!(!mm.pfn_valid(hole_pfn));
    assert!(mm.pfn_to_page(hole_pfn).is_err());
    // Descriptors on both sides of the hole are distinct and map back to their PFNs.
    for pfn in [
        ((2 * GIB) >> 12) - 1,
        (4 * GIB) >> 12,
        ((6 * GIB) >> 12) + 1,
    ] {
        let page = map.get(Pfn(pfn)).expect("a present section");
        assert_eq!(mm.page_to_pfn(page), Pfn(pfn));
        let va = mm.struct_page_address(page);
        assert_eq!(
            mm.page_at_struct_address(va).map(|p| mm.page_to_pfn(p)),
            Some(Pfn(pfn))
        );
    }
    let hole_va = map.struct_page_va(mm.layout().page_offset, hole_pfn);
    assert!(mm
        .page_at_struct_address(kmemlab_mm::VirtAddr(hole_va))
        .is_none());
    // Nothing above looked up a PFN without a descriptor as if it had one.
    assert_eq!(mm.take_oopses(), 0);
    mm.check().expect("every descriptor accounted for");
}

/// The sections before the first hole are looked up by PFN alone, those after it through
/// the section table: at each end of every present range both answer the descriptor
/// whose PFN is the one asked for, and just past a range before a hole, none.
#[test]
fn lookups_agree_on_both_sides_of_the_leading_run() {
    let m = holey();
    let mm = m.mm();
    let map = mm.mem_map();
    let ranges: Vec<_> = map.present_ranges().collect();
    assert_eq!(ranges.len(), 33, "one range per present section");
    let mut descriptors = std::collections::HashSet::new();
    for &(start, end) in &ranges {
        for pfn in [start, Pfn(end.raw() - 1)] {
            let page = map.get(pfn).expect("a present section");
            assert_eq!(map.pfn_of(page), Some(pfn));
            assert!(descriptors.insert(page as *const _ as usize), "{pfn:?}");
        }
    }
    // Past the leading run (2 GiB), in the hole: no descriptor.
    assert!(map.get(Pfn((2 * GIB) >> 12)).is_none());
    assert!(map.get(Pfn(((4 * GIB) >> 12) - 1)).is_none());
    assert!(map.get(Pfn(map.len)).is_none());
    assert_eq!(m.mm().take_oopses(), 0);
}

#[test]
fn a_lookup_in_an_absent_section_is_a_fault_not_a_descriptor() {
    let m = holey();
    let mm = m.mm();
    let hole_pfn = Pfn((3 * GIB) >> 12);
    let scratch = mm.mem_map().page(hole_pfn);
    assert_eq!(mm.mem_map().pfn_of(scratch), None, "the scratch descriptor");
    assert_eq!(
        mm.take_oopses(),
        1,
        "reported as the kernel's page fault on it"
    );
}

#[test]
fn every_proc_file_leaves_the_absent_sections_out() {
    let m = holey();
    let zoneinfo = cat(&m, "zoneinfo");
    let dma32 = zoneinfo.split("zone    DMA32").nth(1).unwrap();
    let field = |name: &str| -> u64 {
        dma32
            .lines()
            .find_map(|l| l.trim().strip_prefix(name)?.trim().parse().ok())
            .unwrap()
    };
    assert_eq!(
        field("spanned"),
        (4 * GIB - 16 * MIB) >> 12,
        "spanned covers the hole"
    );
    assert_eq!(
        field("present"),
        (2 * GIB - 16 * MIB) >> 12,
        "present does not"
    );
    assert!(field("managed") < field("present"));
    let managed: u64 = managed(&m.mm());
    let meminfo = cat(&m, "meminfo");
    let total: u64 = meminfo
        .lines()
        .find_map(|l| l.strip_prefix("MemTotal:"))
        .and_then(|v| v.trim().trim_end_matches(" kB").trim().parse().ok())
        .unwrap();
    assert_eq!(total, managed * 4, "MemTotal is the managed pages");
    assert!(total < (4 * GIB) >> 10);
    // pagetypeinfo counts the pageblocks of present sections: 2 GiB - 16 MiB in DMA32.
    let ptype = cat(&m, "pagetypeinfo");
    let blocks = ptype.split("Number of blocks type").nth(1).unwrap();
    let dma32_blocks: u64 = blocks
        .lines()
        .find(|l| l.contains("DMA32"))
        .unwrap()
        .split_whitespace()
        .skip(4)
        .filter_map(|v| v.parse::<u64>().ok())
        .sum();
    assert_eq!(dma32_blocks, (2 * GIB - 16 * MIB) >> 21);
    // buddyinfo's free blocks are all inside present sections.
    let free: u64 = cat(&m, "buddyinfo")
        .lines()
        .map(|l| {
            l.split_whitespace()
                .skip(4)
                .enumerate()
                .map(|(order, n)| n.parse::<u64>().unwrap() << order)
                .sum::<u64>()
        })
        .sum();
    assert!(free <= managed);
}
