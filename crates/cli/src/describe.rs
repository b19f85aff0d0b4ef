//! Descriptions of pages and zones, shared by the shell's `info` and the tour.

use kmemlab_mm::addr::MAX_PAGE_ORDER;
use kmemlab_mm::mm_types::{flag_names, PG_PCP};
use kmemlab_mm::{Mm, Page, Pfn, Platform, Watermark};
use serde::Serialize;

/// Everything about one page frame and the block it belongs to.
#[derive(Serialize, Debug, Clone)]
pub struct PageInfo {
    /// The `struct page *` of the frame (a `"0x…"` string in JSON, as every address).
    #[serde(serialize_with = "crate::output::hex")]
    pub struct_page: u64,
    /// The frame.
    pub pfn: u64,
    /// Its physical address.
    #[serde(serialize_with = "crate::output::hex")]
    pub phys: u64,
    /// Its direct-map address (none for HighMem).
    #[serde(serialize_with = "crate::output::opt_hex")]
    pub virt: Option<u64>,
    /// The zone.
    pub zone: &'static str,
    /// reserved, free, pcp, allocated.
    pub state: &'static str,
    /// First PFN of the block holding the frame.
    pub block_pfn: u64,
    /// Order of that block.
    pub order: u32,
    /// Pages in that block.
    pub pages: u64,
    /// Migrate type of the frame's pageblock.
    pub pageblock_migratetype: &'static str,
    /// Page flags of the block's head.
    pub flags: Vec<&'static str>,
    /// Reference count of the block's head.
    pub refcount: u32,
}

/// The head of the block that holds `pfn`: the frame itself or the nearest aligned head
/// below it whose block reaches `pfn`.
fn block_head<P: Platform>(mm: &Mm<P>, pfn: Pfn) -> (Pfn, &Page) {
    let page = mm.mem_map().page(pfn);
    if !page.is_tail() && (page.is_reserved() || page.refcount() > 0 || page.flags() != 0) {
        return (pfn, page);
    }
    if page.is_tail() {
        let head = Pfn(page.word());
        return (head, mm.mem_map().page(head));
    }
    for order in 1..=MAX_PAGE_ORDER {
        let head = pfn.align_down(order);
        let hp = mm.mem_map().page(head);
        let is_head = hp.is_buddy() || hp.flags() & PG_PCP != 0 || hp.refcount() > 0;
        if is_head && hp.order() >= order && !hp.is_reserved() {
            return (head, hp);
        }
    }
    (pfn, page)
}

/// Describe the frame `pfn` (which must be valid).
pub fn page_info<P: Platform>(mm: &Mm<P>, pfn: Pfn) -> PageInfo {
    let (head_pfn, head) = block_head(mm, pfn);
    let state = if head.is_reserved() {
        "reserved"
    } else if head.is_buddy() {
        "free"
    } else if head.flags() & PG_PCP != 0 {
        "pcp"
    } else if head.refcount() > 0 {
        "allocated"
    } else {
        "unknown"
    };
    let order = if head.is_reserved() { 0 } else { head.order() };
    let page = mm.mem_map().page(pfn);
    PageInfo {
        struct_page: mm.struct_page_address(page).0,
        pfn: pfn.raw(),
        phys: pfn.phys().0,
        virt: mm.page_address(page).map(|v| v.0),
        zone: mm.zone_of_pfn(pfn).map_or("none", |z| z.name()),
        state,
        block_pfn: head_pfn.raw(),
        order,
        // The order is read from RAM: a corrupted one says so rather than overflowing.
        pages: 1u64.checked_shl(order).unwrap_or(0),
        pageblock_migratetype: mm.pageblock_migratetype(pfn).name(),
        flags: flag_names(head.flags()).collect(),
        refcount: head.refcount(),
    }
}

impl PageInfo {
    /// One line for people.
    pub fn line(&self) -> String {
        let virt = self
            .virt
            .map_or("no kernel mapping (HighMem)".to_string(), |v| {
                format!("virt {v:#x}")
            });
        let block = match self.pages {
            1 => format!("pfn {:#x} (1 page)", self.block_pfn),
            n => format!(
                "pfn {:#x}..{:#x} ({n} pages)",
                self.block_pfn,
                self.block_pfn + n - 1
            ),
        };
        format!(
            "pfn {:#x} phys {:#x} {virt}, zone {}, {} block of order {} at {block}, pageblock {}",
            self.pfn, self.phys, self.zone, self.state, self.order, self.pageblock_migratetype
        )
    }
}

/// One zone's numbers.
#[derive(Serialize, Debug, Clone)]
pub struct ZoneInfo {
    /// The name.
    pub name: &'static str,
    /// First PFN.
    pub start_pfn: u64,
    /// One past the last PFN.
    pub end_pfn: u64,
    /// Spanned pages.
    pub spanned: u64,
    /// Present pages.
    pub present: u64,
    /// Managed pages.
    pub managed: u64,
    /// Free pages.
    pub free: u64,
    /// Min watermark.
    pub min: u64,
    /// Low watermark.
    pub low: u64,
    /// High watermark.
    pub high: u64,
    /// lowmem_reserve.
    pub protection: Vec<u64>,
}

/// The populated zones.
pub fn zones<P: Platform>(mm: &Mm<P>) -> Vec<ZoneInfo> {
    mm.zones()
        .iter()
        .filter(|z| z.is_populated())
        .map(|z| ZoneInfo {
            name: z.name(),
            start_pfn: z.zone_start_pfn.raw(),
            end_pfn: z.zone_end_pfn().raw(),
            spanned: z.spanned_pages,
            present: z.present_pages,
            managed: z.managed_pages,
            free: z.free_pages(),
            min: z.wmark(Watermark::Min),
            low: z.wmark(Watermark::Low),
            high: z.wmark(Watermark::High),
            protection: z.lowmem_reserve.to_vec(),
        })
        .collect()
}
