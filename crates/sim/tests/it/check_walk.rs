//! `Mm::check()`'s one walk of `mem_map` (run by run, the page allocator's and the slab
//! checker's counts together) still reads every descriptor: a stray write to any page
//! inside a free block is found, with its PFN, wherever the block lies.

use crate::fixtures::*;
use kmemlab_mm::{Mm, Pfn, Profile};
use kmemlab_sim::SimPlatform;

/// The physical address of `pfn`'s descriptor.
fn struct_page_phys(mm: &Mm<SimPlatform>, pfn: Pfn) -> u64 {
    mm.mem_map_phys().0
        + (pfn - mm.mem_map().base_pfn) * std::mem::size_of::<kmemlab_mm::Page>() as u64
}

/// Free blocks of order 1 and more: (head PFN, order), in PFN order.
fn free_blocks(mm: &Mm<SimPlatform>) -> Vec<(Pfn, u32)> {
    let map = mm.mem_map();
    map.base_pfn
        .range_to(map.base_pfn + map.len)
        .filter_map(|pfn| {
            let page = map.get(pfn)?;
            (page.is_buddy() && page.order() > 0).then_some((pfn, page.order()))
        })
        .collect()
}

/// The first, the last and the largest free block each get one tail page's `word`
/// overwritten: `check()` names that page, and is clean again once it is restored.
#[test]
fn a_written_tail_of_any_free_block_is_found() {
    for profile in [Profile::X86_64, Profile::I386] {
        let m = MachineBuilder::small().profile(profile).seed(3).boot();
        m.run(|mm| mm.drain_all_pages());
        m.run(|mm| mm.check())
            .expect("a fresh machine checks clean");
        let blocks = m.run(free_blocks);
        let largest = *blocks.iter().max_by_key(|b| b.1).expect("free blocks");
        let picks = [blocks[0], *blocks.last().unwrap(), largest];
        for (head, order) in picks {
            let tail = head + ((1 << order) - 1);
            let word = m.run(|mm| struct_page_phys(mm, tail)) + 24;
            let ram = m.mm().platform().ram();
            ram.write(word, &1u64.to_le_bytes())
                .expect("mem_map is RAM");
            let err = m.run(|mm| mm.check()).expect_err("a written tail is found");
            assert_eq!(
                err.to_string(),
                format!("pfn {tail}: page inside a block is not a blank (or compound tail) page"),
                "{profile}: block {head} order {order}"
            );
            ram.write(word, &0u64.to_le_bytes())
                .expect("mem_map is RAM");
            m.run(|mm| mm.check()).expect("clean again");
        }
    }
}
