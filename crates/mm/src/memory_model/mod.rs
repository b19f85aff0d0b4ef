//! The memory model: SPARSEMEM with a virtually mapped memmap (`mm/sparse.c`,
//! `mm/sparse-vmemmap.c`, `include/linux/mmzone.h`, 6.6). The physical address space is
//! cut in memory sections of `2^SECTION_SIZE_BITS` bytes; a section is present when some
//! RAM lies in it (`memblocks_present()`), and only present sections get `struct page`s
//! (`sparse_init_nid()` → `__populate_section_memmap()`), carved out of one memblock
//! buffer. A PFN in an absent section has no descriptor: `pfn_valid()` is false there and
//! every `/proc` file skips it, as on a real machine with a PCI hole; a hole smaller than
//! a section stays inside a present section as reserved pages.
//!
//! `pfn_to_page()` is one look-up in a host-side section table (trusted: boot fills it,
//! nothing in simulated RAM can change it) and a bounds-checked index into the
//! descriptors, which lie in RAM section after section.
//!
//! Files: `mod.rs` (this: [`MemMap`], the section table and the section arithmetic) and
//! `page_list.rs` ([`PageList`], the intrusive lists of pages linked by PFN that the buddy
//! and per-CPU lists are made of, checked as `CONFIG_DEBUG_LIST` checks them, and the
//! list-corruption reports). Start reading at [`MemMap::page`].

use core::sync::atomic::{AtomicU64, Ordering::Relaxed};

use crate::addr::Pfn;
use crate::mem::RamArray;
use crate::mm_types::Page;
use crate::platform::Platform;
use crate::Mm;

mod page_list;
pub use page_list::{ListCorruption, PageList, NIL_PFN};
pub(crate) use page_list::{LIST_DEL_NEXT_PREV_LINE, LIST_DEL_PREV_NEXT_LINE};

/// The most memory sections the section table describes: 4096, so 512 GiB of physical
/// address space with x86_64's 128 MiB sections (the simulator's limit); RAM above it is
/// ignored at boot with a warning. (The kernel's `NR_MEM_SECTIONS` is `2^(MAX_PHYSMEM_BITS
/// - SECTION_SIZE_BITS)`; kmemlab keeps its table in host memory, so it bounds it.)
pub const MAX_MEM_SECTIONS: u64 = 4096;

/// The `struct page`s of the present sections, which live in simulated RAM (one memblock
/// buffer reserved at boot), and the section table that finds them.
///
/// PFNs come from everywhere, including words read back from RAM (list links, compound
/// heads), so a lookup never trusts one: [`MemMap::get`] answers `None` for a PFN in an
/// absent section or past the table, and [`MemMap::page`] answers a scratch descriptor and
/// records the fault, which [`crate::Mm::take_oopses`] reports as the kernel's page-fault
/// oops on the descriptor's address.
pub struct MemMap {
    /// The descriptors, present section after present section (`PAGES_PER_SECTION` each).
    pages: RamArray<Page>,
    /// The start of `pages` that describes the sections present from section 0 on without
    /// a gap (all of them, on a machine with no hole of a section or more): there a PFN is
    /// its descriptor's index, found without the section table.
    dense: RamArray<Page>,
    /// First PFN of the span (0: SPARSEMEM numbers PFNs from the start of memory).
    pub base_pfn: Pfn,
    /// PFNs in the span, `base_pfn..base_pfn + len`: up to the end of the last present
    /// section. Only the present sections of the span have descriptors
    /// ([`MemMap::nr_pages`]); [`MemMap::present_ranges`] lists them.
    pub len: u64,
    /// `PFN_SECTION_SHIFT`.
    shift: u32,
    /// For each section number, what to subtract from a PFN in it to get the index of
    /// its descriptor (`__nr_to_section()` and the encoded `section_mem_map`): for an
    /// absent section, an amount that gives an index past the array.
    index_delta: [u64; MAX_MEM_SECTIONS as usize],
    /// For each present section in order, what to add to a descriptor's index to get its
    /// PFN (`page_to_section()`).
    pfn_delta: [u64; MAX_MEM_SECTIONS as usize],
    /// Present sections.
    nr_present: u64,
    /// Physical address of the descriptors.
    phys: u64,
    /// What a lookup of a PFN without a descriptor gets: a descriptor in host memory that
    /// no real frame has, so nothing a corrupted link leads to can reach outside `mem_map`.
    scratch: Page,
    /// Lookups outside the array since the last report, and the last PFN asked for.
    faults: AtomicU64,
    last_fault_pfn: AtomicU64,
    /// List corruption found by an unchecked list operation, kept for the next report.
    corruption: spin::Mutex<Option<ListCorruption>>,
}

impl MemMap {
    /// An empty map, before boot has placed the descriptors.
    pub(crate) const fn empty() -> MemMap {
        MemMap {
            pages: RamArray::empty(),
            dense: RamArray::empty(),
            base_pfn: Pfn(0),
            len: 0,
            shift: 0,
            index_delta: [u64::MAX; MAX_MEM_SECTIONS as usize],
            pfn_delta: [0; MAX_MEM_SECTIONS as usize],
            nr_present: 0,
            phys: 0,
            scratch: Page::zeroed(),
            faults: AtomicU64::new(0),
            last_fault_pfn: AtomicU64::new(0),
            corruption: spin::Mutex::new(None),
        }
    }

    /// The map over `pages` (at physical address `phys`): the descriptors of the sections
    /// `present` (ascending section numbers below [`MAX_MEM_SECTIONS`], each of
    /// `2^shift` pages), in that order. `None` if they do not fit the table or `pages`.
    pub(crate) fn new(
        pages: RamArray<Page>,
        phys: u64,
        shift: u32,
        present: impl Iterator<Item = u64>,
    ) -> Option<MemMap> {
        let mut map = MemMap {
            pages,
            phys,
            shift,
            ..MemMap::empty()
        };
        let mut present_nrs = [false; MAX_MEM_SECTIONS as usize];
        for nr in present {
            let slot = present_nrs.get_mut(usize::try_from(nr).ok()?)?;
            if *slot || map.nr_present > 0 && nr << shift < map.len {
                return None;
            }
            *slot = true;
            let dense = map.nr_present;
            map.pfn_delta[dense as usize] = (nr - dense) << shift;
            map.nr_present += 1;
            map.len = (nr + 1) << shift;
        }
        let nr_pages = map.nr_present << shift;
        if nr_pages != map.pages.len() {
            return None;
        }
        // PFN 0 is index 0 (`base_pfn` is 0), so the leading run of present sections is
        // indexed by PFN.
        let leading = present_nrs.iter().take_while(|&&present| present).count() as u64;
        map.dense = map.pages.prefix(leading << shift);
        let mut dense = 0u64;
        for (nr, present) in present_nrs.iter().enumerate() {
            let start = (nr as u64) << shift;
            map.index_delta[nr] = if *present {
                dense += 1;
                (nr as u64 - (dense - 1)) << shift
            } else {
                // `pfn - start + nr_pages`: at least `nr_pages`, past the array.
                start.wrapping_sub(nr_pages)
            };
        }
        Some(map)
    }

    /// Is `pfn` described (in a present section)?
    #[inline]
    pub fn contains(&self, pfn: Pfn) -> bool {
        self.get(pfn).is_some()
    }

    /// The index of `pfn`'s descriptor, or `None` when its section is absent.
    #[inline]
    fn index(&self, pfn: Pfn) -> Option<u64> {
        let delta = *self.index_delta.get((pfn.0 >> self.shift) as usize)?;
        Some(pfn.0.wrapping_sub(delta)).filter(|&i| i < self.pages.len())
    }

    /// `pfn_to_page()`, or `None` for a PFN without a descriptor (`pfn_valid()` false).
    #[inline]
    pub fn get(&self, pfn: Pfn) -> Option<&Page> {
        match self.dense.get(pfn.0) {
            Some(page) => Some(page),
            None => self.get_sparse(pfn),
        }
    }

    /// [`MemMap::get`] through the section table, for a PFN past the leading run of
    /// present sections.
    #[inline]
    fn get_sparse(&self, pfn: Pfn) -> Option<&Page> {
        let delta = *self.index_delta.get((pfn.0 >> self.shift) as usize)?;
        // An absent section's delta makes an index past the array, which
        // `RamArray::get` refuses.
        self.pages.get(pfn.0.wrapping_sub(delta))
    }

    /// `pfn_to_page()` for a PFN believed valid. One without a descriptor (a corrupted
    /// link) gets the scratch descriptor and is recorded as a fault for the next report.
    #[inline]
    pub fn page(&self, pfn: Pfn) -> &Page {
        match self.get(pfn) {
            Some(page) => page,
            None => self.fault(pfn),
        }
    }

    #[cold]
    #[inline(never)]
    fn fault(&self, pfn: Pfn) -> &Page {
        self.faults.fetch_add(1, Relaxed);
        self.last_fault_pfn.store(pfn.raw(), Relaxed);
        self.scratch.reset();
        &self.scratch
    }

    /// The number of descriptors (`PAGES_PER_SECTION` for each present section).
    pub fn nr_pages(&self) -> u64 {
        self.pages.len()
    }

    /// The number of present sections.
    pub fn nr_present_sections(&self) -> u64 {
        self.nr_present
    }

    /// Is section `nr` present (`present_section_nr()`)?
    pub fn present_section(&self, nr: u64) -> bool {
        nr.checked_shl(self.shift)
            .filter(|start| start >> self.shift == nr)
            .is_some_and(|start| self.contains(Pfn(start)))
    }

    /// The PFN ranges that have descriptors, one per present section in ascending order
    /// (`for_each_present_section_nr()`).
    pub fn present_ranges(&self) -> impl Iterator<Item = (Pfn, Pfn)> + '_ {
        let size = 1u64 << self.shift;
        self.pfn_delta[..self.nr_present as usize]
            .iter()
            .enumerate()
            .map(move |(dense, &delta)| {
                let start = Pfn(((dense as u64) << self.shift) + delta);
                (start, start + size)
            })
    }

    /// The first PFN at or after `pfn` that has a descriptor, if any.
    pub fn next_present_pfn(&self, pfn: Pfn) -> Option<Pfn> {
        if self.contains(pfn) {
            return Some(pfn);
        }
        self.present_ranges()
            .find(|&(_, end)| end > pfn)
            .map(|(start, _)| start.max(pfn))
    }

    /// The physical address of the descriptors.
    pub fn phys(&self) -> u64 {
        self.phys
    }

    /// Where the descriptor of `pfn` is, counted in descriptors from the start of the
    /// array: its index when it has one, else an index past the array (the slot
    /// `pfn_to_page()` arithmetic would reach, which is no descriptor's).
    fn slot(&self, pfn: Pfn) -> u64 {
        match self.index(pfn) {
            Some(index) => index,
            None if pfn.0 < self.len => self.pages.len() + pfn.0,
            None => pfn.0.max(self.pages.len() + self.len),
        }
    }

    /// Faults since the last call, with the physical address that the last one would
    /// have read (`pfn_to_page()` arithmetic, past the array).
    pub(crate) fn take_faults(&self) -> Option<(u64, u64)> {
        let n = self.faults.swap(0, Relaxed);
        let pfn = Pfn(self.last_fault_pfn.load(Relaxed));
        let addr = self.phys.wrapping_add(
            self.slot(pfn)
                .wrapping_mul(core::mem::size_of::<Page>() as u64),
        );
        (n > 0).then_some((n, addr))
    }

    /// Keep `c` (the first since the last report) for [`MemMap::take_corruption`].
    #[cold]
    #[inline(never)]
    pub(crate) fn record_corruption(&self, c: ListCorruption) {
        let mut slot = self.corruption.lock();
        if slot.is_none() {
            *slot = Some(c);
        }
    }

    /// The list corruption an unchecked list operation recorded, if any.
    pub(crate) fn take_corruption(&self) -> Option<ListCorruption> {
        self.corruption.lock().take()
    }

    /// The kernel virtual address of the descriptor of `pfn` (`struct page *`, the
    /// direct-map address of its slot; computed for any PFN, as the kernel's
    /// `pfn_to_page()` arithmetic is: past the array for one without a descriptor), given
    /// `PAGE_OFFSET`.
    pub fn struct_page_va(&self, page_offset: u64, pfn: Pfn) -> u64 {
        page_offset.wrapping_add(self.phys).wrapping_add(
            self.slot(pfn)
                .wrapping_mul(core::mem::size_of::<Page>() as u64),
        )
    }

    /// The PFN whose descriptor is at kernel virtual address `va`, if one is.
    pub fn pfn_at_struct_va(&self, page_offset: u64, va: u64) -> Option<Pfn> {
        let size = core::mem::size_of::<Page>() as u64;
        let off = va.checked_sub(page_offset.wrapping_add(self.phys))?;
        if off % size != 0 {
            return None;
        }
        self.pfn_of_index(off / size)
    }

    /// The PFN of descriptor `index`, if the array has one.
    #[inline]
    fn pfn_of_index(&self, index: u64) -> Option<Pfn> {
        if index >= self.pages.len() {
            return None;
        }
        Some(Pfn(index + self.pfn_delta[(index >> self.shift) as usize]))
    }

    /// `page_to_pfn()` for a page of this array, or `None` for a foreign reference.
    #[inline]
    pub fn pfn_of(&self, page: &Page) -> Option<Pfn> {
        if let Some(index) = self.dense.index_of(page) {
            return Some(Pfn(index));
        }
        self.pages
            .index_of(page)
            .and_then(|index| self.pfn_of_index(index))
    }
}

/// `SECTION_SIZE_BITS` (`arch/x86/include/asm/sparsemem.h`, 6.6): 27 (128 MiB) on
/// x86_64; on i386, 29 with PAE and 26 without (kmemlab's i386 has no PAE).
pub const fn section_size_bits(profile: crate::arch::Profile) -> u32 {
    match profile {
        crate::arch::Profile::X86_64 => 27,
        crate::arch::Profile::I386 => 26,
    }
}

/// `PFN_SECTION_SHIFT`: `SECTION_SIZE_BITS - PAGE_SHIFT`.
pub const fn pfn_section_shift(profile: crate::arch::Profile) -> u32 {
    section_size_bits(profile) - crate::addr::PAGE_SHIFT
}

/// `section_map_size()` (`mm/sparse.c`, 6.6) and the buffer's alignment: the bytes of
/// `mem_map` one present section takes. With SPARSEMEM_VMEMMAP (x86_64) the memmap is
/// mapped in whole PMDs, so `ALIGN(sizeof(struct page) * PAGES_PER_SECTION, PMD_SIZE)`:
/// 2 MiB, the kernel's own figure (its 64-byte `struct page` fills it; kmemlab's 40-byte
/// descriptors use the start of it). Without VMEMMAP (i386) it is `PAGE_ALIGN()` of the
/// descriptors, page-aligned (the kernel aligns to the size, a power of two for its
/// 32-byte `struct page`, which kmemlab's 40 bytes do not give).
pub const fn section_map_size(profile: crate::arch::Profile) -> (u64, u64) {
    let bytes = (core::mem::size_of::<Page>() as u64) << pfn_section_shift(profile);
    match profile {
        crate::arch::Profile::X86_64 => {
            let pmd = 1 << 21;
            (bytes.div_ceil(pmd) * pmd, pmd)
        }
        crate::arch::Profile::I386 => {
            let page = crate::addr::PAGE_SIZE as u64;
            (bytes.div_ceil(page) * page, page)
        }
    }
}

/// The end of the physical address space the section table describes.
pub const fn max_section_phys(profile: crate::arch::Profile) -> u64 {
    MAX_MEM_SECTIONS << section_size_bits(profile)
}

impl<P: Platform> Mm<P> {
    /// `pfn_to_section_nr()`: the memory section holding `pfn`.
    pub fn pfn_to_section_nr(&self, pfn: Pfn) -> u64 {
        pfn.0 >> pfn_section_shift(self.profile())
    }

    /// `present_section_nr()`: does some RAM lie in section `nr` (marked present by
    /// `memory_present()` for each memblock memory range, and given its `struct page`s)?
    pub fn present_section_nr(&self, nr: u64) -> bool {
        self.mem_map.present_section(nr)
    }

    /// Would `pfn_to_online_page()` find a page: is `pfn` in a present section (every
    /// present section is online, and an early section is valid over its whole span,
    /// holes inside it included)?
    pub fn pfn_online(&self, pfn: Pfn) -> bool {
        self.mem_map.contains(pfn)
    }

    /// The number of present memory sections.
    pub fn nr_present_sections(&self) -> u64 {
        self.mem_map.nr_present_sections()
    }
}

/// The sections that memblock's RAM touches, in ascending order (`memblocks_present()`):
/// each section number once, for RAM ranges sorted by address.
pub(crate) fn memblock_sections(
    memory: &crate::memblock::MemblockType,
    shift: u32,
) -> impl Iterator<Item = u64> + '_ {
    let mut last = None;
    memory
        .regions()
        .iter()
        .filter(|r| r.size > 0)
        .flat_map(move |r| {
            let first = (r.base >> crate::addr::PAGE_SHIFT) >> shift;
            let end = ((r.end() - 1) >> crate::addr::PAGE_SHIFT) >> shift;
            first..=end
        })
        .filter(move |&nr| {
            let new = last != Some(nr);
            last = Some(nr);
            new
        })
}
