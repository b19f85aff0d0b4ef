//! The physical memory map as bytes: one byte per page frame per plane (what the frame
//! is, its slab cache, its pageblock's migrate type), in the encoding of
//! `docs/SERVE_API.md` ("frames"). Everything is read from the kernel's own structures
//! (`struct page` flags, the vmalloc areas and page tables, the page cache's LRU, the
//! swiotlb pool), each value checked before use: a corrupted descriptor shows as
//! `unknown`, never as a host fault.

use std::collections::HashMap;

use kmemlab_mm::addr::MAX_PAGE_ORDER;
use kmemlab_mm::arch::pgtable::{_PAGE_PRESENT, _PAGE_PSE};
use kmemlab_mm::mm_types::{PG_BUDDY, PG_LARGE_KMALLOC, PG_PCP, PG_RESERVED, PG_SLAB, PG_TAIL};
use kmemlab_mm::{Mm, Pfn, PhysAddr, PAGE_SIZE};
use kmemlab_sim::{Machine, SimPlatform};

/// No RAM at this PFN.
pub const HOLE: u8 = 0x00;
/// `PG_reserved`.
pub const RESERVED: u8 = 0x01;
/// Free in the buddy lists, block of order `code - FREE`.
pub const FREE: u8 = 0x10;
/// On a per-CPU page list.
pub const PCP: u8 = 0x20;
/// A slab page.
pub const SLAB: u8 = 0x30;
/// A large kmalloc (compound pages from the page allocator).
pub const LARGE_KMALLOC: u8 = 0x31;
/// Mapped by a busy vmalloc / vmap area.
pub const VMALLOC: u8 = 0x32;
/// A page of the page cache.
pub const PAGE_CACHE: u8 = 0x33;
/// Allocated, none of the above.
pub const ALLOCATED: u8 = 0x34;
/// In the swiotlb bounce pool.
pub const SWIOTLB: u8 = 0x40;
/// Covered by a live DMA mapping.
pub const DMA_MAPPED: u8 = 0x41;
/// A kernel page-table page.
pub const PAGE_TABLE: u8 = 0x42;
/// Fits none of these.
pub const UNKNOWN: u8 = 0xFF;

/// The swiotlb slot size (`IO_TLB_SIZE`, `1 << IO_TLB_SHIFT`).
const IO_TLB_SIZE: u64 = 2048;

/// A plane of the frames encoding.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum FramePlane {
    /// What the frame is.
    State = 1,
    /// Its slab cache (1 + index in the `slabs` list), 0 for none.
    Cache = 2,
    /// Its pageblock's migrate type.
    Migratetype = 3,
}

impl FramePlane {
    /// By name: `state`, `cache`, `migratetype`.
    pub fn from_name(name: &str) -> Option<FramePlane> {
        match name {
            "state" => Some(FramePlane::State),
            "cache" => Some(FramePlane::Cache),
            "migratetype" => Some(FramePlane::Migratetype),
            _ => None,
        }
    }
}

/// Every state code and its name, for the legend.
pub fn state_names() -> Vec<(u8, String)> {
    let mut v = vec![(HOLE, "hole".to_string()), (RESERVED, "reserved".into())];
    for order in 0..=MAX_PAGE_ORDER as u8 {
        v.push((FREE + order, format!("free order {order}")));
    }
    v.extend([
        (PCP, "pcp".into()),
        (SLAB, "slab".into()),
        (LARGE_KMALLOC, "large kmalloc".into()),
        (VMALLOC, "vmalloc".into()),
        (PAGE_CACHE, "page cache".into()),
        (ALLOCATED, "allocated".into()),
        (SWIOTLB, "swiotlb".into()),
        (DMA_MAPPED, "dma-mapped".into()),
        (PAGE_TABLE, "page table".into()),
        (UNKNOWN, "unknown".into()),
    ]);
    v
}

/// One past the highest PFN of RAM (what the map spans).
pub fn max_pfn(mm: &Mm<SimPlatform>) -> u64 {
    let ram_end = mm
        .memblock()
        .memory()
        .regions()
        .iter()
        .map(|r| r.base.saturating_add(r.size))
        .max()
        .unwrap_or(0);
    ram_end.div_ceil(PAGE_SIZE as u64)
}

/// The slab caches in `/proc/slabinfo` order (newest first) by their handle: the index
/// the cache plane and `GET …/slabs` use.
pub fn cache_indexes(mm: &Mm<SimPlatform>) -> HashMap<u64, usize> {
    let mut map = HashMap::new();
    mm.for_each_cache(|s| {
        let i = map.len();
        map.insert(s.handle().0, i);
        None::<()>
    });
    map
}

/// The map of a machine: every plane over `0..max_pfn`.
pub struct FrameMap {
    /// One past the last PFN.
    pub max_pfn: u64,
    /// The state plane.
    pub state: Vec<u8>,
    /// The cache plane.
    pub cache: Vec<u8>,
}

/// Extra frames the shell knows about: DMA mappings it made, as physical ranges.
pub type DmaRanges = [(u64, u64)];

/// Compute the state and cache planes of `machine`.
pub fn compute(machine: &Machine, dma: &DmaRanges) -> FrameMap {
    let mm = machine.mm();
    let max = max_pfn(&mm);
    let mut state = vec![HOLE; max as usize];
    let mut cache = vec![0u8; max as usize];
    for r in mm.memblock().memory().regions() {
        let from = (r.base.div_ceil(PAGE_SIZE as u64)).min(max);
        let to = ((r.base.saturating_add(r.size)) / PAGE_SIZE as u64).min(max);
        // A region smaller than a page (a hole's edges need not be aligned) holds none.
        if from < to {
            state[from as usize..to as usize].fill(UNKNOWN);
        }
    }
    classify_pages(&mm, &mut state, &mut cache);
    for pfn in machine.page_cache().pfns() {
        mark(&mut state, pfn, 1, PAGE_CACHE);
    }
    mark_vmalloc(&mm, &mut state);
    mark_page_tables(&mm, &mut state);
    for &(phys, len) in dma {
        let first = phys / PAGE_SIZE as u64;
        let last = phys.saturating_add(len.max(1) - 1) / PAGE_SIZE as u64;
        mark(&mut state, Pfn(first), last - first + 1, DMA_MAPPED);
    }
    if let Some((start, slots)) = mm.swiotlb_pool() {
        let pages = slots.saturating_mul(IO_TLB_SIZE) / PAGE_SIZE as u64;
        mark(&mut state, start.pfn(), pages, SWIOTLB);
    }
    FrameMap {
        max_pfn: max,
        state,
        cache,
    }
}

/// Set `pages` frames from `pfn` to `code`, but never a hole (no RAM stays no RAM).
fn mark(state: &mut [u8], pfn: Pfn, pages: u64, code: u8) {
    let len = state.len() as u64;
    let (from, to) = (pfn.raw().min(len), pfn.raw().saturating_add(pages).min(len));
    for s in &mut state[from as usize..to as usize] {
        if *s != HOLE {
            *s = code;
        }
    }
}

/// The state of every frame from its `struct page`: reserved, free (by order), pcp,
/// slab, large kmalloc, allocated; tails take their head's state.
fn classify_pages(mm: &Mm<SimPlatform>, state: &mut [u8], cache: &mut [u8]) {
    let caches = cache_indexes(mm);
    let map = mm.mem_map();
    let end = Pfn(map
        .base_pfn
        .raw()
        .saturating_add(map.len)
        .min(state.len() as u64));
    let mut pfn = map.base_pfn;
    while pfn < end {
        let i = pfn.raw() as usize;
        let Some(page) = map.get(pfn) else {
            pfn += 1;
            continue;
        };
        if state[i] == HOLE {
            pfn += 1;
            continue;
        }
        let flags = page.flags();
        // A block's order is read from RAM: bounded before it sizes anything.
        let block = 1u64 << page.order().min(MAX_PAGE_ORDER);
        let step = if flags & PG_RESERVED != 0 {
            state[i] = RESERVED;
            1
        } else if flags & PG_BUDDY != 0 {
            mark(
                state,
                pfn,
                block,
                FREE + page.order().min(MAX_PAGE_ORDER) as u8,
            );
            block
        } else if flags & PG_PCP != 0 {
            mark(state, pfn, block, PCP);
            block
        } else if flags & PG_TAIL != 0 {
            let head = page.word();
            if head < pfn.raw() && (head as usize) < state.len() {
                state[i] = state[head as usize];
                cache[i] = cache[head as usize];
            }
            1
        } else if flags & PG_SLAB != 0 {
            state[i] = SLAB;
            cache[i] = caches
                .get(&page.slab_cache())
                .map_or(255, |&n| u8::try_from(n + 1).unwrap_or(255));
            1
        } else if flags & PG_LARGE_KMALLOC != 0 {
            state[i] = LARGE_KMALLOC;
            1
        } else if page.refcount() > 0 {
            // A non-compound block of order > 0: its other pages carry nothing.
            state[i] = ALLOCATED;
            let mut n = 1;
            while n < block && pfn + n < end {
                match map.get(pfn + n) {
                    Some(p) if p.flags() == 0 && p.refcount() == 0 => {
                        if state[(pfn + n).raw() as usize] != HOLE {
                            state[(pfn + n).raw() as usize] = ALLOCATED;
                        }
                        n += 1;
                    }
                    _ => break,
                }
            }
            n
        } else {
            1
        };
        pfn += step.max(1);
    }
}

/// Frames mapped by busy vmalloc / vmap areas.
fn mark_vmalloc(mm: &Mm<SimPlatform>, state: &mut [u8]) {
    let mut starts = Vec::new();
    let _ = mm.for_each_vmap_area(&mut |a| {
        if a.vm.is_some() {
            starts.push(a.start);
        }
        Ok(())
    });
    for start in starts {
        let _ = mm.vm_area_pfns(kmemlab_mm::VirtAddr(start), |pfn: Pfn| {
            mark(state, pfn, 1, VMALLOC);
        });
    }
}

/// Every table of the kernel page tables, found by walking them from the top (each
/// table visited once, the walk bounded by the frames there are).
fn mark_page_tables(mm: &Mm<SimPlatform>, state: &mut [u8]) {
    for table in page_table_frames(mm) {
        mark(state, table, 1, PAGE_TABLE);
    }
}

/// The PFNs of the kernel's page-table pages.
pub fn page_table_frames(mm: &Mm<SimPlatform>) -> Vec<Pfn> {
    let mode = mm.paging();
    let mut seen = std::collections::HashSet::new();
    let mut stack = vec![(mm.kernel_pgd().0, 0usize)];
    let limit = mm.mem_map().len as usize;
    while let Some((table, level)) = stack.pop() {
        if !seen.insert(table) || seen.len() > limit {
            continue;
        }
        if level + 1 >= mode.levels.len() {
            continue;
        }
        let l = &mode.levels[level];
        for index in 0..l.entries() {
            let at = table + (index * mode.entry_size) as u64;
            let entry = match mode.entry_size {
                4 => mm.ram().read::<u32>(at).map(u64::from),
                _ => mm.ram().read::<u64>(at),
            };
            let Ok(entry) = entry else { break };
            if entry & _PAGE_PRESENT == 0 || (l.allows_large && entry & _PAGE_PSE != 0) {
                continue;
            }
            let next = entry & mode.phys_mask;
            if next.is_multiple_of(PAGE_SIZE as u64) {
                stack.push((next, level + 1));
            }
        }
    }
    seen.into_iter().map(|t| PhysAddr(t).pfn()).collect()
}

/// The migrate type plane: each frame's pageblock type (`255` for a hole).
pub fn migratetypes(mm: &Mm<SimPlatform>, state: &[u8]) -> Vec<u8> {
    let mut out = vec![255u8; state.len()];
    let pageblock_nr_pages = mm.pageblock_nr_pages();
    let mut pfn = 0u64;
    while (pfn as usize) < out.len() {
        let end = ((pfn | (pageblock_nr_pages - 1)) + 1).min(out.len() as u64);
        let mt = mm.pageblock_migratetype(Pfn(pfn)) as u8;
        for p in pfn..end {
            if state[p as usize] != HOLE {
                out[p as usize] = mt;
            }
        }
        pfn = end;
    }
    out
}

/// The header size before the planes: 32 bytes and the plane ids, padded to 8.
fn header_len(planes: usize) -> usize {
    (32 + planes).div_ceil(8) * 8
}

/// Encode `planes` of `map` for PFNs `from..from + count` (clamped to the map), as
/// `docs/SERVE_API.md` describes.
pub fn encode_frames(
    mm: &Mm<SimPlatform>,
    map: &FrameMap,
    planes: &[FramePlane],
    from: u64,
    count: u64,
    generation: u64,
) -> Vec<u8> {
    let from = from.min(map.max_pfn);
    let count = count.min(map.max_pfn - from);
    let (a, b) = (from as usize, (from + count) as usize);
    let mut out = Vec::with_capacity(header_len(planes.len()) + planes.len() * count as usize);
    out.extend_from_slice(b"KMLF");
    out.push(1);
    out.push(planes.len() as u8);
    out.extend_from_slice(&[0, 0]);
    out.extend_from_slice(&from.to_le_bytes());
    out.extend_from_slice(&count.to_le_bytes());
    out.extend_from_slice(&generation.to_le_bytes());
    out.extend(planes.iter().map(|&p| p as u8));
    out.resize(header_len(planes.len()), 0);
    for plane in planes {
        match plane {
            FramePlane::State => out.extend_from_slice(&map.state[a..b]),
            FramePlane::Cache => out.extend_from_slice(&map.cache[a..b]),
            FramePlane::Migratetype => out.extend_from_slice(&migratetypes(mm, &map.state)[a..b]),
        }
    }
    out
}
