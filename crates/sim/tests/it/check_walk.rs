//! `Mm::check()`'s one walk of `mem_map` (run by run, the page allocator's and the slab
//! checker's counts together) reads every descriptor but those the platform knows were
//! never written: a stray write to any page inside a free block is found, with its PFN,
//! wherever the block lies, and the never-written ones stay unbacked.

use crate::fixtures::*;
use kmemlab_mm::{Mm, Pfn, Profile};
use kmemlab_sim::{Machine, SimPlatform};

/// The physical address of `pfn`'s descriptor: where the host holds it, less the host
/// address of physical 0 (so it is right for a sparse `mem_map` too, whose sections need
/// not lie one after another).
fn struct_page_phys(mm: &Mm<SimPlatform>, pfn: Pfn) -> u64 {
    let page = mm.mem_map().get(pfn).expect("a descriptor");
    page as *const kmemlab_mm::Page as u64 - mm.platform().ram().base() as u64
}

/// Free blocks: (head PFN, order), in PFN order, reading only the descriptors of block
/// heads: over a free block it steps to the next block, leaving the tails unread (a read
/// would have the host back them with its zero page).
fn free_block_heads(mm: &Mm<SimPlatform>) -> Vec<(Pfn, u32)> {
    let map = mm.mem_map();
    let (mut pfn, end, mut blocks) = (map.base_pfn, map.base_pfn + map.len, Vec::new());
    while pfn < end {
        // A PFN in a hole of a sparse mem_map has no descriptor.
        let Some(page) = map.get(pfn) else {
            pfn += 1;
            continue;
        };
        if page.is_buddy() {
            blocks.push((pfn, page.order()));
            pfn += 1 << page.order();
        } else {
            pfn += 1;
        }
    }
    blocks
}

/// Write a word into `tail`'s descriptor: `check()` must name that page; then restore it.
fn assert_written_tail_is_found(m: &Machine, tail: Pfn, what: &str) {
    let word = m.run(|mm| struct_page_phys(mm, tail)) + 24;
    let ram = m.platform().ram();
    ram.write(word, &1u64.to_le_bytes())
        .expect("mem_map is RAM");
    let err = m.run(|mm| mm.check()).expect_err("a written tail is found");
    assert_eq!(
        err.to_string(),
        format!("pfn {tail}: page inside a block is not a blank (or compound tail) page"),
        "{what}"
    );
    ram.write(word, &0u64.to_le_bytes())
        .expect("mem_map is RAM");
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
        let blocks: Vec<_> = m
            .run(free_block_heads)
            .into_iter()
            .filter(|b| b.1 > 0)
            .collect();
        let largest = *blocks.iter().max_by_key(|b| b.1).expect("free blocks");
        let picks = [blocks[0], *blocks.last().unwrap(), largest];
        for (head, order) in picks {
            let tail = head + ((1 << order) - 1);
            assert_written_tail_is_found(
                &m,
                tail,
                &format!("{profile}: block {head} order {order}"),
            );
            m.run(|mm| mm.check()).expect("clean again");
        }
    }
}

/// The walk passes the descriptors nothing ever wrote (a free block's tails, as boot
/// leaves them) without reading them, since the platform knows they are zero
/// (`Hardware::known_zero_ram`): after `check()` the host still backs none of them. And
/// it still reads the rest: the test above writes such a page and is caught.
#[test]
fn the_walk_leaves_never_written_descriptors_unbacked() {
    let m = MachineBuilder::small().seed(3).boot();
    let (head, order) = m
        .run(free_block_heads)
        .into_iter()
        .max_by_key(|b| b.1)
        .expect("free blocks");
    let page = 4096;
    let first = m
        .run(|mm| struct_page_phys(mm, head + 1))
        .next_multiple_of(page);
    let end = m.run(|mm| struct_page_phys(mm, head + (1 << order))) / page * page;
    let ram = m.platform().ram();
    if !ram.knows_unbacked_pages() {
        eprintln!("no usable /proc/self/pagemap on this host: the walk reads every page");
        return;
    }
    let unbacked = || {
        let mut map = [0u64; 4];
        let pages = ram.known_zero(first, &mut map).min((end - first) / page);
        (0..pages)
            .filter(|&i| map[(i / 64) as usize] & (1 << (i % 64)) != 0)
            .count()
    };
    let before = unbacked();
    assert!(
        before > 0,
        "order-{order} block at {head}: some tail pages never written"
    );
    m.run(|mm| mm.check())
        .expect("a fresh machine checks clean");
    assert_eq!(unbacked(), before, "check() backed none of them");
}

/// On machines whose `mem_map` spans many of the checker's windows of known-zero pages
/// (8 GiB x86_64 and 3 GiB i386, with the legacy and PCI holes, so RAM in several
/// ranges): a word written into the first, a middle or the last tail page of free blocks
/// spread over all of RAM is found, each time, at its PFN.
#[test]
fn a_written_tail_is_found_in_every_window_of_a_big_machine() {
    for (profile, ram) in [(Profile::X86_64, 8u64 << 30), (Profile::I386, 3 << 30)] {
        let m = MachineBuilder::new()
            .profile(profile)
            .ram(ram)
            .cpus(1)
            .holes(vec![kmemlab_sim::Hole::LEGACY, kmemlab_sim::Hole::PCI])
            .seed(7)
            .boot();
        m.run(|mm| mm.drain_all_pages());
        let blocks = m.run(free_block_heads);
        let step = (blocks.len() / 12).max(1);
        let mut tried = 0;
        for &(head, order) in blocks.iter().step_by(step).filter(|b| b.1 >= 6) {
            let last = (1u64 << order) - 1;
            for tail in [head + 1, head + last / 2, head + last] {
                let what = format!("{profile}: block {head} order {order}");
                assert_written_tail_is_found(&m, tail, &what);
                tried += 1;
            }
        }
        assert!(tried >= 30, "{profile}: {tried} tails tried");
        m.run(|mm| mm.check()).expect("clean again");
    }
}
