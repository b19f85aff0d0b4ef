//! `/proc` files in the kernel's exact formats (`mm/vmstat.c`, `fs/proc/meminfo.c`):
//! `buddyinfo`, `pagetypeinfo`, `zoneinfo`, `meminfo`, `vmstat`, `slabinfo` and
//! `vmallocinfo`. Each renderer writes into any
//! [`core::fmt::Write`], so a bare-metal kernel can serve them too.

use core::fmt::{self, Write};

use crate::addr::{MAX_PAGE_ORDER, PAGE_SHIFT};
use crate::mm_init::PERCPU_NAME;
use crate::page_alloc::slowpath::MAX_RECLAIM_RETRIES;
use crate::page_alloc::{MigrateType, Watermark, MIGRATE_TYPES};
use crate::platform::Platform;
use crate::vmstat::{NodeStatItem, ZoneStatItem};
use crate::Mm;

/// The `/proc` files kmemlab renders.
pub const FILES: &[&str] = &[
    "buddyinfo",
    "pagetypeinfo",
    "zoneinfo",
    "meminfo",
    "slabinfo",
    "vmallocinfo",
    "vmstat",
];

/// The sysfs file of the transparent-hugepage mode (`enabled_show()`).
pub const THP_ENABLED_FILE: &str = "/sys/kernel/mm/transparent_hugepage/enabled";

/// Render `/proc/<name>` (also `/proc/sys/vm/<tunable>` and [`THP_ENABLED_FILE`]);
/// `Ok(false)` if there is no such file.
pub fn render<P: Platform>(mm: &Mm<P>, name: &str, w: &mut dyn Write) -> Result<bool, fmt::Error> {
    if name == THP_ENABLED_FILE {
        writeln!(w, "{}", mm.thp().enabled_show())?;
        return Ok(true);
    }
    let name = name.trim_start_matches("/proc/");
    if let Some(tunable) = name.strip_prefix("sys/vm/") {
        let Some(s) = crate::sysctl::Sysctl::from_procname(tunable) else {
            return Ok(false);
        };
        mm.sysctl_read(s, w)?;
        w.write_char('\n')?;
        return Ok(true);
    }
    match name {
        "buddyinfo" => buddyinfo(mm, w)?,
        "pagetypeinfo" => pagetypeinfo(mm, w)?,
        "zoneinfo" => zoneinfo(mm, w)?,
        "meminfo" => meminfo(mm, w)?,
        "slabinfo" => slabinfo(mm, w)?,
        "vmallocinfo" => vmallocinfo(mm, w)?,
        "vmstat" => vmstat(mm, w)?,
        _ => return Ok(false),
    }
    Ok(true)
}

/// `/proc/buddyinfo` (`frag_show_print`): free blocks per order, populated zones only.
/// As 6.6's `frag_show_print()` prints `zone->free_area[order].nr_free`, it reads the
/// counters ([`Mm::free_area_counts`]), not the lists: O(orders) whatever the zone's size
/// ([`Mm::check`] holds the counters to the lists).
pub fn buddyinfo<P: Platform>(mm: &Mm<P>, w: &mut dyn Write) -> fmt::Result {
    for zone in mm.zones().iter().filter(|z| z.is_populated()) {
        let snap = mm.free_area_counts(zone);
        write!(w, "Node 0, zone {:>8} ", zone.name())?;
        for n in snap.nr_free {
            write!(w, "{n:>6} ")?;
        }
        writeln!(w)?;
    }
    Ok(())
}

/// `/proc/pagetypeinfo`: free blocks per migrate type and order, then pageblocks per type.
pub fn pagetypeinfo<P: Platform>(mm: &Mm<P>, w: &mut dyn Write) -> fmt::Result {
    // pagetypeinfo_show() (mm/vmstat.c, 6.6): "Page block order: %d\n",
    // "Pages per block:  %lu\n" (two spaces), the profile's pageblock_order.
    writeln!(w, "Page block order: {}", mm.pageblock_order())?;
    writeln!(w, "Pages per block:  {}", mm.pageblock_nr_pages())?;
    writeln!(w)?;
    write!(w, "{:<43} ", "Free pages count per migrate type at order")?;
    for order in 0..=MAX_PAGE_ORDER {
        write!(w, "{order:>6} ")?;
    }
    writeln!(w)?;
    for zone in mm.zones().iter().filter(|z| z.is_populated()) {
        let snap = mm.free_area_snapshot(zone);
        for mt in MigrateType::ALL {
            write!(
                w,
                "Node {:>4}, zone {:>8}, type {:>12} ",
                0,
                zone.name(),
                mt.name()
            )?;
            for count in snap.per_type[mt as usize] {
                if count >= 100_000 {
                    write!(w, ">{:>6} ", 100_000)?;
                } else {
                    write!(w, "{count:>6} ")?;
                }
            }
            writeln!(w)?;
        }
    }
    write!(w, "\n{:<23}", "Number of blocks type ")?;
    for mt in MigrateType::ALL {
        write!(w, "{:>12} ", mt.name())?;
    }
    writeln!(w)?;
    for zone in mm.zones().iter().filter(|z| z.is_populated()) {
        // pagetypeinfo_showblockcount_print(): a pageblock whose page is not online
        // (`pfn_to_online_page()`: an absent memory section) is not counted.
        let mut count = [0u64; MIGRATE_TYPES];
        let mut pfn = zone.zone_start_pfn;
        while pfn < zone.zone_end_pfn() {
            if mm.pfn_online(pfn) {
                count[mm.pageblock_migratetype(pfn) as usize] += 1;
            }
            pfn = pfn.align_down(mm.pageblock_order()) + mm.pageblock_nr_pages();
        }
        write!(w, "Node 0, zone {:>8} ", zone.name())?;
        for c in count {
            write!(w, "{c:>12} ")?;
        }
        writeln!(w)?;
    }
    Ok(())
}

/// `/proc/zoneinfo` (`zoneinfo_show_print`), with the fields kmemlab has.
pub fn zoneinfo<P: Platform>(mm: &Mm<P>, w: &mut dyn Write) -> fmt::Result {
    let first_populated = mm.zones().iter().position(|z| z.is_populated());
    for zone in mm.zones() {
        write!(w, "Node 0, zone {:>8}", zone.name())?;
        if Some(zone.idx) == first_populated {
            w.write_str("\n  per-node stats")?;
            for (name, value) in node_stats(mm) {
                write!(w, "\n      {name:<12} {value}")?;
            }
        }
        write!(
            w,
            "\n  pages free     {}\n        boost    {}\n        min      {}\n        low      {}\n        high     {}\n        spanned  {}\n        present  {}\n        managed  {}\n        cma      0",
            zone.free_pages(),
            zone.watermark_boost(),
            zone.wmark(Watermark::Min),
            zone.wmark(Watermark::Low),
            zone.wmark(Watermark::High),
            zone.spanned_pages,
            zone.present_pages,
            zone.managed_pages
        )?;
        write!(w, "\n        protection: ({}", zone.lowmem_reserve[0])?;
        for r in &zone.lowmem_reserve[1..] {
            write!(w, ", {r}")?;
        }
        w.write_char(')')?;
        if !zone.is_populated() {
            writeln!(w)?;
            continue;
        }
        write!(w, "\n      {:<12} {}", "nr_free_pages", zone.free_pages())?;
        for item in ZoneStatItem::ALL {
            write!(w, "\n      {:<12} {}", item.name(), zone.page_state(item))?;
        }
        write!(w, "\n  pagesets")?;
        for cpu in 0..mm.platform().nr_cpus() {
            let pcp = &mm.per_cpu(cpu).pcp[zone.idx];
            write!(
                w,
                "\n    cpu: {cpu}\n              count: {}\n              high:  {}\n              batch: {}",
                pcp.count(),
                pcp.high(),
                pcp.batch()
            )?;
        }
        write!(
            w,
            "\n  node_unreclaimable:  {}\n  start_pfn:           {}",
            u8::from(mm.kswapd_failures() >= MAX_RECLAIM_RETRIES),
            zone.zone_start_pfn
        )?;
        writeln!(w)?;
    }
    Ok(())
}

/// One cache's `/proc/slabinfo` numbers (`struct slabinfo`).
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct SlabInfo {
    /// Objects in use (all objects less the free ones on partial slabs).
    pub active_objs: u64,
    /// Objects in all slabs.
    pub num_objs: u64,
    /// `s->size`.
    pub objsize: u32,
    /// Objects per slab.
    pub objperslab: u32,
    /// Pages per slab.
    pub pagesperslab: u32,
    /// Slabs.
    pub num_slabs: u64,
}

/// `get_slabinfo()` for one cache.
pub fn slab_info<P: Platform>(mm: &Mm<P>, s: &crate::slab::KmemCache) -> SlabInfo {
    let (num_slabs, num_objs) = mm.node_counts(s);
    let free = mm.free_objects_on_node(s);
    SlabInfo {
        // The counts are read from RAM, and a corrupted node may claim more free objects
        // than it has: shown as 0 active rather than wrapped.
        active_objs: num_objs.saturating_sub(free),
        num_objs,
        objsize: s.size(),
        objperslab: s.oo().objects,
        pagesperslab: 1u32.checked_shl(s.oo().order).unwrap_or(0),
        num_slabs,
    }
}

/// `/proc/slabinfo`, version 2.1, newest cache first (`slabinfo_show`).
pub fn slabinfo<P: Platform>(mm: &Mm<P>, w: &mut dyn Write) -> fmt::Result {
    writeln!(w, "slabinfo - version: 2.1")?;
    writeln!(w, "# name            <active_objs> <num_objs> <objsize> <objperslab> <pagesperslab> : tunables <limit> <batchcount> <sharedfactor> : slabdata <active_slabs> <num_slabs> <sharedavail>")?;
    let mut result = Ok(());
    mm.for_each_cache(|s| {
        let i = slab_info(mm, s);
        result = writeln!(
            w,
            "{:<17} {:>6} {:>6} {:>6} {:>4} {:>4} : tunables {:>4} {:>4} {:>4} : slabdata {:>6} {:>6} {:>6}",
            s.name().as_str(),
            i.active_objs,
            i.num_objs,
            i.objsize,
            i.objperslab,
            i.pagesperslab,
            0,
            0,
            0,
            i.num_slabs,
            i.num_slabs,
            0
        );
        result.err()
    });
    result
}

/// One `/proc/meminfo` line (`show_val_kb`): a 16-column label and a width-8 value in kB.
fn show_val_kb(w: &mut dyn Write, label: &str, pages: u64) -> fmt::Result {
    writeln!(w, "{:<16}{:>8} kB", label, pages << (PAGE_SHIFT - 10))
}

/// Totals `/proc/meminfo` reports, in pages.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct MemInfo {
    /// `MemTotal` (`totalram_pages`: managed pages).
    pub total: u64,
    /// `MemFree` (`NR_FREE_PAGES`).
    pub free: u64,
    /// `MemAvailable` (`si_mem_available`).
    pub available: u64,
    /// `Cached`: the page cache (`NR_FILE_PAGES`).
    pub cached: u64,
    /// `Active(file)`: `NR_ACTIVE_FILE`.
    pub active_file: u64,
    /// `Inactive(file)`: `NR_INACTIVE_FILE`.
    pub inactive_file: u64,
    /// `HighTotal`.
    pub high_total: u64,
    /// `HighFree`.
    pub high_free: u64,
    /// `Percpu`.
    pub percpu: u64,
    /// `SReclaimable`.
    pub sreclaimable: u64,
    /// `SUnreclaim`.
    pub sunreclaim: u64,
}

/// Compute the `/proc/meminfo` totals.
pub fn meminfo_values<P: Platform>(mm: &Mm<P>) -> MemInfo {
    let zones = mm.zones();
    let total = zones.iter().map(|z| z.managed_pages).sum();
    let free: u64 = zones.iter().map(|z| z.free_pages()).sum();
    let is_high = |z: &&crate::Zone| z.zone_type == crate::ZoneType::HighMem;
    let cached = mm.node_page_state(NodeStatItem::NrFilePages);
    let active_file = mm.node_page_state(NodeStatItem::NrActiveFile);
    let inactive_file = mm.node_page_state(NodeStatItem::NrInactiveFile);
    let wmark_low: u64 = zones.iter().map(|z| z.wmark(Watermark::Low)).sum();
    let sreclaimable = mm.slab_pages().reclaimable();
    let sunreclaim = mm.slab_pages().unreclaimable();
    // si_mem_available(): free less the reserves, plus the file LRU and reclaimable slab
    // less what kswapd would keep (half of each, at most the low watermarks).
    let mut available = free as i64 - mm.totalreserve_pages() as i64;
    let pagecache = active_file + inactive_file;
    available += (pagecache - (pagecache / 2).min(wmark_low)) as i64;
    available += (sreclaimable - (sreclaimable / 2).min(wmark_low)) as i64;
    let percpu_bytes: u64 = mm
        .memblock()
        .reserved()
        .regions()
        .iter()
        .filter(|r| r.name == PERCPU_NAME)
        .map(|r| r.size)
        .sum();
    MemInfo {
        total,
        free,
        available: available.max(0) as u64,
        cached,
        active_file,
        inactive_file,
        high_total: zones.iter().filter(is_high).map(|z| z.managed_pages).sum(),
        high_free: zones.iter().filter(is_high).map(|z| z.free_pages()).sum(),
        percpu: percpu_bytes.div_ceil(4096),
        sreclaimable,
        sunreclaim,
    }
}

/// `/proc/meminfo`, with the lines whose quantities exist in kmemlab so far.
pub fn meminfo<P: Platform>(mm: &Mm<P>, w: &mut dyn Write) -> fmt::Result {
    let m = meminfo_values(mm);
    show_val_kb(w, "MemTotal:", m.total)?;
    show_val_kb(w, "MemFree:", m.free)?;
    show_val_kb(w, "MemAvailable:", m.available)?;
    show_val_kb(w, "Cached:", m.cached)?;
    show_val_kb(w, "Active(file):", m.active_file)?;
    show_val_kb(w, "Inactive(file):", m.inactive_file)?;
    if mm.profile() == crate::Profile::I386 {
        show_val_kb(w, "HighTotal:", m.high_total)?;
        show_val_kb(w, "HighFree:", m.high_free)?;
        show_val_kb(w, "LowTotal:", m.total - m.high_total)?;
        show_val_kb(w, "LowFree:", m.free - m.high_free)?;
    }
    show_val_kb(w, "KReclaimable:", m.sreclaimable)?;
    show_val_kb(w, "Slab:", m.sreclaimable + m.sunreclaim)?;
    show_val_kb(w, "SReclaimable:", m.sreclaimable)?;
    show_val_kb(w, "SUnreclaim:", m.sunreclaim)?;
    show_val_kb(w, "PageTables:", mm.nr_pagetable_pages())?;
    writeln!(
        w,
        "{:<16}{:>8} kB",
        "VmallocTotal:",
        mm.layout().vmalloc_total() >> 10
    )?;
    show_val_kb(w, "VmallocUsed:", mm.vmalloc_nr_pages())?;
    show_val_kb(w, "VmallocChunk:", 0)?;
    show_val_kb(w, "Percpu:", m.percpu)?;
    arch_report_meminfo(mm, w)?;
    Ok(())
}

/// `arch_report_meminfo()` (`arch/x86/mm/pat/set_memory.c`): the direct map by page size.
/// x86_64 reports 4 KiB, 2 MiB and (with gbpages) 1 GiB pages; 2-level i386 reports 4 KiB
/// and 4 MiB pages.
fn arch_report_meminfo<P: Platform>(mm: &Mm<P>, w: &mut dyn Write) -> fmt::Result {
    let [small, large, huge] = mm.direct_map_bytes();
    show_val_kb(w, "DirectMap4k:", small >> PAGE_SHIFT)?;
    if mm.profile() == crate::Profile::I386 {
        show_val_kb(w, "DirectMap4M:", large >> PAGE_SHIFT)?;
    } else {
        show_val_kb(w, "DirectMap2M:", large >> PAGE_SHIFT)?;
        show_val_kb(w, "DirectMap1G:", huge >> PAGE_SHIFT)?;
    }
    Ok(())
}

/// The node stat items kmemlab has, in `enum node_stat_item` order, with their values in
/// pages (the byte-counted slab items divided by the page size, as `vmstat_start` does).
fn node_stats<P: Platform>(mm: &Mm<P>) -> [(&'static str, u64); 6] {
    let slab = mm.slab_pages();
    [
        (
            NodeStatItem::NrInactiveFile.name(),
            mm.node_page_state(NodeStatItem::NrInactiveFile),
        ),
        (
            NodeStatItem::NrActiveFile.name(),
            mm.node_page_state(NodeStatItem::NrActiveFile),
        ),
        ("nr_slab_reclaimable", slab.reclaimable()),
        ("nr_slab_unreclaimable", slab.unreclaimable()),
        (
            NodeStatItem::NrFilePages.name(),
            mm.node_page_state(NodeStatItem::NrFilePages),
        ),
        ("nr_page_table_pages", mm.nr_pagetable_pages()),
    ]
}

/// The `vm_event_item` counters kmemlab keeps, in the kernel's order: `pgalloc_*` and
/// `allocstall_*` for each zone the profile configures (`TEXTS_FOR_ZONES`: x86_64 has
/// dma, dma32, normal, movable; i386 dma, normal, high, movable), then the reclaim
/// counters as Linux 6.6's `vmstat_text` lists them: `pgsteal_kswapd`, `pgsteal_direct`,
/// `pgscan_kswapd`, `pgscan_direct`, then `pgscan_file` and `pgsteal_file` (the file LRU,
/// which the page cache stands for; the kernel's `pgscan_anon` before `pgscan_file` and
/// `pgsteal_anon` before `pgsteal_file` are left out, there being no anon memory).
pub fn vm_events<P: Platform>(
    mm: &Mm<P>,
    f: &mut dyn FnMut(&str, &str, u64) -> fmt::Result,
) -> fmt::Result {
    use core::sync::atomic::Ordering::Relaxed;
    let zone_suffix = |z: crate::ZoneType| match z {
        crate::ZoneType::Dma => "dma",
        crate::ZoneType::Dma32 => "dma32",
        crate::ZoneType::Normal => "normal",
        crate::ZoneType::HighMem => "high",
        crate::ZoneType::Movable => "movable",
    };
    for zone in mm.zones() {
        f("pgalloc_", zone_suffix(zone.zone_type), mm.pgalloc(zone))?;
    }
    let e = mm.events();
    for zone in mm.zones() {
        f(
            "allocstall_",
            zone_suffix(zone.zone_type),
            e.allocstall[zone.idx].load(Relaxed),
        )?;
    }
    f("pgfree", "", mm.pgfree())?;
    for (name, counter) in [
        ("pgsteal_kswapd", &e.pgsteal_kswapd),
        ("pgsteal_direct", &e.pgsteal_direct),
        ("pgscan_kswapd", &e.pgscan_kswapd),
        ("pgscan_direct", &e.pgscan_direct),
        ("pgscan_file", &e.pgscan_file),
        ("pgsteal_file", &e.pgsteal_file),
        (
            "kswapd_low_wmark_hit_quickly",
            &e.kswapd_low_wmark_hit_quickly,
        ),
        (
            "kswapd_high_wmark_hit_quickly",
            &e.kswapd_high_wmark_hit_quickly,
        ),
        ("pageoutrun", &e.pageoutrun),
        ("drop_pagecache", &e.drop_pagecache),
    ] {
        f(name, "", counter.load(Relaxed))?;
    }
    Ok(())
}

/// `/proc/vmstat` (`vmstat_show`: one `name value` line per item, in `vmstat_text`
/// order): the zone stat items summed over zones, the node stat items, then the event
/// counters, each only where kmemlab counts it. Items the kernel has for things kmemlab
/// does not model (anon memory, writeback, NUMA, compaction, THP, the dirty thresholds)
/// are left out rather than printed as zeros; kmemlab's own counters are not here (see
/// [`crate::vmstat::VmEvents::all`]).
pub fn vmstat<P: Platform>(mm: &Mm<P>, w: &mut dyn Write) -> fmt::Result {
    let free: u64 = mm.zones().iter().map(|z| z.free_pages()).sum();
    writeln!(w, "nr_free_pages {free}")?;
    for item in ZoneStatItem::ALL {
        writeln!(w, "{} {}", item.name(), mm.global_zone_page_state(item))?;
    }
    for (name, value) in node_stats(mm) {
        writeln!(w, "{name} {value}")?;
    }
    vm_events(mm, &mut |prefix, suffix, n| {
        writeln!(w, "{prefix}{suffix} {n}")
    })
}

/// `/proc/vmallocinfo` (`s_show` in `mm/vmalloc.c`): every busy area in address order
/// with its size (guard page included), caller, pages and kind, then the lazily freed
/// areas still waiting for the purge (`show_purge_info`).
pub fn vmallocinfo<P: Platform>(mm: &Mm<P>, w: &mut dyn Write) -> fmt::Result {
    let width = match mm.profile() {
        crate::Profile::X86_64 => 16,
        crate::Profile::I386 => 8,
    };
    mm.for_each_vmap_area(&mut |a| {
        write!(
            w,
            "0x{:0width$x}-0x{:0width$x} {:7}",
            a.start,
            a.end,
            a.end - a.start
        )?;
        let Some(vm) = a.vm else {
            let kind = if a.vm_map_ram {
                " vm_map_ram"
            } else {
                " unpurged vm_area"
            };
            return writeln!(w, "{kind}");
        };
        if let Some(caller) = vm.caller {
            write!(w, " {caller}")?;
        }
        if vm.nr_pages > 0 {
            write!(w, " pages={}", vm.nr_pages)?;
        }
        use crate::vmalloc::VmFlags as F;
        for (flag, name) in [
            (F::VM_IOREMAP, " ioremap"),
            (F::VM_ALLOC, " vmalloc"),
            (F::VM_MAP, " vmap"),
            (F::VM_USERMAP, " user"),
            (F::VM_DMA_COHERENT, " dma-coherent"),
        ] {
            if vm.flags.contains(flag) {
                w.write_str(name)?;
            }
        }
        if mm.is_vmalloc_addr(vm.pages) {
            w.write_str(" vpages")?;
        }
        if vm.nr_pages > 0 && !vm.flags.contains(F::VM_UNINITIALIZED) {
            write!(w, " N0={}", vm.nr_pages)?;
        }
        writeln!(w)
    })
}

/// A fixed-capacity line buffer for composing one kernel message without `alloc`;
/// text past the capacity is dropped.
pub struct LineBuf {
    buf: [u8; 512],
    len: usize,
}

impl LineBuf {
    /// An empty line.
    pub const fn new() -> LineBuf {
        LineBuf {
            buf: [0; 512],
            len: 0,
        }
    }
    /// The text so far.
    pub fn as_str(&self) -> &str {
        // Only whole UTF-8 strings are ever appended (see `write_str`).
        core::str::from_utf8(&self.buf[..self.len]).unwrap_or("")
    }
}

impl Default for LineBuf {
    fn default() -> Self {
        LineBuf::new()
    }
}

impl Write for LineBuf {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        let room = self.buf.len() - self.len;
        let mut take = s.len().min(room);
        while !s.is_char_boundary(take) {
            take -= 1;
        }
        self.buf[self.len..self.len + take].copy_from_slice(&s.as_bytes()[..take]);
        self.len += take;
        Ok(())
    }
}
