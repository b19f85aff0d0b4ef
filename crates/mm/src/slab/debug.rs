//! `slab_debug` (`mm/slub.c`, `CONFIG_SLUB_DEBUG`): red zones, poisoning, owner tracking
//! and sanity checks, with the kernel's reports (`BUG <cache> (Not tainted): ...`, the
//! object's bytes, the last owners, `FIX ...`). Debug caches bypass the per-CPU layer, as
//! in the kernel since 6.2: every allocation and free takes the node lock and is checked.
//! An object that fails a check on free is kept out of circulation.
//!
//! The metadata these checks read (red zones, tracks, free pointers, counters) is read
//! through the door like everything else; reports go through `slab_bug()` /
//! `slab_err()` / `object_err()` with the kernel's wording and taint (`B`).

use core::sync::atomic::Ordering::Relaxed;

use crate::gfp::Gfp;
use crate::platform::Platform;
use crate::procfs::LineBuf;
use crate::slab::cache::{KmemCache, KmemCacheNode, TRACK_SIZE};
use crate::slab::slub::{SlabCounters, NO_OBJECT};
use crate::slab::{CallSite, SlabError, SlabFlags};
use crate::Mm;

/// `SLUB_RED_INACTIVE`: red zone of a free object.
pub const SLUB_RED_INACTIVE: u8 = 0xbb;
/// `SLUB_RED_ACTIVE`: red zone of an allocated object.
pub const SLUB_RED_ACTIVE: u8 = 0xcc;
/// `POISON_INUSE`: padding, and a new slab before its objects are set up.
pub const POISON_INUSE: u8 = 0x5a;
/// `POISON_FREE`: the bytes of a free object.
pub const POISON_FREE: u8 = 0x6b;
/// `POISON_END`: the last byte of a free object.
pub const POISON_END: u8 = 0xa5;

/// Which track of an object (`enum track_item`).
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum TrackItem {
    /// The last allocation.
    Alloc = 0,
    /// The last free.
    Free = 1,
}

/// One owner record (`struct track`).
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct Track {
    /// The call site, if recorded.
    pub site: Option<CallSite>,
    /// The CPU.
    pub cpu: u32,
    /// The pid.
    pub pid: u32,
    /// When (the platform clock).
    pub when: u64,
}

/// Which call site a track records: an index into the site table.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct CallSiteIdx(pub u32);

impl<P: Platform> Mm<P> {
    /// Intern a call site for owner tracking.
    pub(crate) fn site_index(&self, site: CallSite) -> CallSiteIdx {
        let mut t = self.slab.sites.lock_irqsave(&self.platform);
        if let Some(i) = t.sites[..t.len].iter().position(|s| *s == Some(site)) {
            return CallSiteIdx(i as u32);
        }
        if t.len == t.sites.len() {
            return CallSiteIdx(u32::MAX);
        }
        let i = t.len;
        t.sites[i] = Some(site);
        t.len += 1;
        CallSiteIdx(i as u32)
    }

    pub(crate) fn site(&self, idx: u32) -> Option<CallSite> {
        let t = self.slab.sites.lock_irqsave(&self.platform);
        t.sites.get(idx as usize).copied().flatten()
    }

    /// `get_info_end()`: where the metadata after the object starts.
    fn info_end(s: &KmemCache) -> u64 {
        if s.fp_offset() >= s.inuse() {
            s.inuse() as u64 + 8
        } else {
            s.inuse() as u64
        }
    }

    fn track_addr(s: &KmemCache, object: u64, item: TrackItem) -> u64 {
        object
            .wrapping_add(Self::info_end(s))
            .wrapping_add(item as u64 * TRACK_SIZE as u64)
    }

    /// `set_track()`.
    fn set_track(&self, s: &KmemCache, object: u64, item: TrackItem, site: crate::slab::CallSite) {
        if !s.flags().contains(SlabFlags::STORE_USER) {
            return;
        }
        let at = Self::track_addr(s, object, item);
        let cpu = self.platform.smp_processor_id() as u64;
        // The site word is the site's index + 1: 0 is "no record", as a zero `addr` is
        // in 6.6's `struct track` (`print_track()` returns early on `!t->addr`).
        let words = [
            u64::from(self.site_index(site).0) + 1,
            cpu | (self.platform.current_pid() as u64) << 32,
            self.platform.clock_ns(),
            0,
        ];
        for (i, w) in words.into_iter().enumerate() {
            if self.store_word(at.wrapping_add(i as u64 * 8), w).is_err() {
                return;
            }
        }
    }

    /// `get_track()`: the recorded owner of an object, if owner tracking is on (and its
    /// track can be read).
    pub fn get_track(&self, s: &KmemCache, object: u64, item: TrackItem) -> Option<Track> {
        if !s.flags().contains(SlabFlags::STORE_USER) {
            return None;
        }
        let at = Self::track_addr(s, object, item);
        let site = self.kread::<u64>(at).ok()?;
        let cpu_pid = self.kread::<u64>(at.wrapping_add(8)).ok()?;
        Some(Track {
            site: site
                .checked_sub(1)
                .and_then(|i| u32::try_from(i).ok())
                .and_then(|i| self.site(i)),
            cpu: cpu_pid as u32,
            pid: (cpu_pid >> 32) as u32,
            when: self.kread::<u64>(at.wrapping_add(16)).ok()?,
        })
    }

    /// `slub_debug_orig_size()`: a kmalloc cache with owner tracking records each
    /// object's requested size, and (with red zones) red-zones the rest of the object.
    pub(crate) fn slub_debug_orig_size(s: &KmemCache) -> bool {
        s.flags()
            .contains(SlabFlags::STORE_USER | SlabFlags::KMALLOC)
    }

    fn orig_size_addr(s: &KmemCache, object: u64) -> u64 {
        object
            .wrapping_add(Self::info_end(s))
            .wrapping_add(2 * TRACK_SIZE as u64)
    }

    /// `get_orig_size()`: the size the caller asked for (the object size when not
    /// recorded).
    pub(crate) fn get_orig_size(&self, s: &KmemCache, object: u64) -> u32 {
        if !Self::slub_debug_orig_size(s) {
            return s.object_size();
        }
        self.kread::<u32>(Self::orig_size_addr(s, object))
            .unwrap_or(u32::MAX)
            .min(s.object_size())
    }

    /// `set_orig_size()`.
    pub(crate) fn set_orig_size(&self, s: &KmemCache, object: u64, orig_size: u32) {
        if Self::slub_debug_orig_size(s) {
            let at = Self::orig_size_addr(s, object);
            if self.kwrite::<u32>(at, orig_size).is_err() {
                self.slab_fault(at, true, "slab metadata outside RAM");
            }
        }
    }

    /// `init_object()`: red zones to `val`, and (for a poisoned cache) the object to
    /// `POISON_FREE` ending in `POISON_END`; an allocated kmalloc object with a recorded
    /// size is poisoned up to that size and red-zoned after it.
    pub(crate) fn init_object(&self, s: &KmemCache, object: u64, val: u8) {
        let _ = self.try_init_object(s, object, val);
    }

    fn try_init_object(&self, s: &KmemCache, object: u64, val: u8) -> Result<(), SlabError> {
        let flags = s.flags();
        let mut poison_size = s.object_size() as u64;
        if flags.contains(SlabFlags::RED_ZONE) {
            let pad = s.red_left_pad() as u64;
            self.slab_fill(object.wrapping_sub(pad), val, pad)?;
            if Self::slub_debug_orig_size(s) && val == SLUB_RED_ACTIVE {
                poison_size = self.get_orig_size(s, object) as u64;
            }
        }
        if flags.contains(SlabFlags::OBJECT_POISON) && poison_size > 0 {
            self.slab_fill(object, POISON_FREE, poison_size - 1)?;
            self.slab_fill(object.wrapping_add(poison_size - 1), POISON_END, 1)?;
        }
        if flags.contains(SlabFlags::RED_ZONE) {
            let end = object.wrapping_add(poison_size);
            self.slab_fill(end, val, (s.inuse() as u64).saturating_sub(poison_size))?;
        }
        Ok(())
    }

    /// `setup_slab_debug()`: a new slab of a poisoned cache starts as `POISON_INUSE`.
    pub(crate) fn setup_slab_debug(&self, s: &KmemCache, pfn: u64, order: u32) {
        if s.flags().contains(SlabFlags::POISON) {
            let _ = self.slab_fill(
                self.slab_address(pfn),
                POISON_INUSE,
                (crate::PAGE_SIZE as u64) << order.min(crate::MAX_PAGE_ORDER),
            );
        }
    }

    /// `setup_object_debug()`.
    pub(crate) fn setup_object_debug(&self, s: &KmemCache, object: u64) {
        if s.is_debug() {
            self.init_object(s, object, SLUB_RED_INACTIVE);
        }
    }

    /// `slab_bug()`: the report's banner, `BUG <cache> (<taint>): <what>`.
    pub(crate) fn slab_bug(&self, s: &KmemCache, what: core::fmt::Arguments<'_>) {
        crate::vmstat::VmEvents::add(&self.events().bug_slab, 1);
        self.printk(format_args!(
            "============================================================================="
        ));
        self.printk(format_args!(
            "BUG {} ({}): {}",
            s.name(),
            self.tainted(),
            what
        ));
        self.printk(format_args!(
            "-----------------------------------------------------------------------------"
        ));
        self.printk(format_args!(""));
    }

    /// `print_section()`: a hex dump, 16 bytes a line, with ASCII (up to where memory can
    /// be read).
    fn print_section(&self, text: &str, addr: u64, len: u64) {
        let len = len.min(256);
        let mut off = 0;
        while off < len {
            let n = (len - off).min(16) as usize;
            let mut bytes = [0u8; 16];
            if self
                .kread_bytes(addr.wrapping_add(off), &mut bytes[..n])
                .is_err()
            {
                return;
            }
            let mut line = LineBuf::new();
            let _ = core::fmt::Write::write_fmt(
                &mut line,
                format_args!("{text}{:016x}: ", addr.wrapping_add(off)),
            );
            for b in &bytes[..n] {
                let _ = core::fmt::Write::write_fmt(&mut line, format_args!("{b:02x} "));
            }
            let _ = core::fmt::Write::write_str(&mut line, " ");
            for &b in &bytes[..n] {
                let c = if b.is_ascii_graphic() || b == b' ' {
                    b as char
                } else {
                    '.'
                };
                let _ = core::fmt::Write::write_char(&mut line, c);
            }
            self.printk(format_args!("{}", line.as_str().trim_end()));
            off += 16;
        }
    }

    fn print_track(&self, what: &str, t: Option<Track>) {
        if let Some(t) = t
            && let Some(site) = t.site
        {
            let age = self.platform.clock_ns().saturating_sub(t.when);
            self.printk(format_args!(
                "{what} in {site} age={age} cpu={} pid={}",
                t.cpu, t.pid
            ));
        }
    }

    /// `print_tracking()`: the object's last owners, with owner tracking.
    pub(crate) fn print_tracking(&self, s: &KmemCache, object: u64) {
        if s.flags().contains(SlabFlags::STORE_USER) {
            self.print_track("Allocated", self.get_track(s, object, TrackItem::Alloc));
            self.print_track("Freed", self.get_track(s, object, TrackItem::Free));
        }
    }

    /// The slab's first free object, by address (0 for none).
    fn slab_freelist_va(&self, pfn: u64) -> u64 {
        let c = self.slab_counters(pfn);
        let cache = crate::slab::KmemCacheRef(self.mem_map.page(pfn).slab_cache());
        match self.cache(cache) {
            Ok(s) if c.freelist != u16::MAX => self.object_at(s, pfn, c.freelist),
            _ => 0,
        }
    }

    /// `print_slab_info()`.
    fn print_slab_info(&self, pfn: u64) {
        let c = self.slab_counters(pfn);
        let page = self.mem_map.page(pfn);
        self.printk(format_args!(
            "Slab {:#x} objects={} used={} fp={:#x} flags={:#x}",
            self.pfn_struct_address(pfn),
            c.objects,
            c.inuse,
            self.slab_freelist_va(pfn),
            page.flags() & 0xff
        ));
    }

    /// `print_trailer()`: owners, slab, and the object's bytes with its red zones.
    fn print_trailer(&self, s: &KmemCache, pfn: u64, object: u64) {
        let base = self.slab_address(pfn);
        self.print_tracking(s, object);
        self.print_slab_info(pfn);
        self.printk(format_args!(
            "Object {:#x} @offset={} fp={:#x}",
            object,
            object.wrapping_sub(base),
            self.get_freepointer(s, object).unwrap_or(0)
        ));
        self.printk(format_args!(""));
        let pad = s.red_left_pad() as u64;
        if s.flags().contains(SlabFlags::RED_ZONE) {
            self.print_section("Redzone  ", object.wrapping_sub(pad), pad);
        } else if object > base + 16 {
            self.print_section("Bytes b4 ", object - 16, 16);
        }
        self.print_section("Object   ", object, s.object_size() as u64);
        if s.flags().contains(SlabFlags::RED_ZONE) {
            self.print_section(
                "Redzone  ",
                object.wrapping_add(s.object_size() as u64),
                s.inuse().saturating_sub(s.object_size()) as u64,
            );
        }
        let mut off = Self::info_end(s);
        if s.flags().contains(SlabFlags::STORE_USER) {
            off += 2 * TRACK_SIZE as u64;
            if s.flags().contains(SlabFlags::KMALLOC) {
                off += 4;
            }
        }
        let end = s.size().saturating_sub(s.red_left_pad()) as u64;
        if off < end {
            self.print_section("Padding  ", object.wrapping_add(off), end - off);
        }
    }

    /// `object_err()`.
    fn object_err(&self, s: &KmemCache, pfn: u64, object: u64, reason: &str) {
        self.slab_bug(s, format_args!("{reason}"));
        self.print_trailer(s, pfn, object);
        self.add_taint(crate::report::taint::BAD_PAGE);
    }

    /// `slab_err()`: a report about a whole slab.
    pub(crate) fn slab_err(&self, s: &KmemCache, pfn: u64, what: core::fmt::Arguments<'_>) {
        self.slab_bug(s, what);
        self.print_slab_info(pfn);
        self.add_taint(crate::report::taint::BAD_PAGE);
    }

    /// `slab_fix()`.
    pub(crate) fn slab_fix(&self, s: &KmemCache, what: core::fmt::Arguments<'_>) {
        self.printk(format_args!("FIX {}: {}", s.name(), what));
    }

    /// The report for `kmem_cache_free`/`kfree` of a pointer that is no object start
    /// (`free_consistency_checks()`).
    pub(crate) fn slab_err_invalid_pointer(&self, s: &KmemCache, pfn: u64, object: u64) {
        self.slab_err(s, pfn, format_args!("Invalid object pointer {object:#x}"));
    }

    /// The first (or, with `rev`, last) byte of `[start, start + len)` that is not
    /// `value`, read a chunk at a time through the door; `Err` if some of it is no RAM.
    fn find_other_byte(
        &self,
        start: u64,
        len: u64,
        value: u8,
        rev: bool,
    ) -> Result<Option<u64>, ()> {
        const CHUNK: u64 = 256;
        let mut buf = [0u8; CHUNK as usize];
        let chunks = len.div_ceil(CHUNK);
        for k in 0..chunks {
            let k = if rev { chunks - 1 - k } else { k };
            let at = start.wrapping_add(k * CHUNK);
            let n = (len - k * CHUNK).min(CHUNK) as usize;
            self.kread_bytes(at, &mut buf[..n]).map_err(|_| ())?;
            let hit = if rev {
                buf[..n].iter().rposition(|&b| b != value)
            } else {
                buf[..n].iter().position(|&b| b != value)
            };
            if let Some(i) = hit {
                return Ok(Some(at + i as u64));
            }
        }
        Ok(None)
    }

    /// `check_bytes_and_report()`: `[start, start + len)` must all be `value`; on the
    /// first other byte, report it and restore the range.
    #[allow(clippy::too_many_arguments)]
    fn check_bytes_and_report(
        &self,
        s: &KmemCache,
        pfn: u64,
        object: u64,
        what: &str,
        start: u64,
        value: u8,
        len: u64,
    ) -> bool {
        let fault = match self.find_other_byte(start, len, value, false) {
            Ok(None) => return true,
            Ok(Some(fault)) => fault,
            Err(()) => {
                self.slab_fault(start, false, "slab metadata outside RAM");
                return false;
            }
        };
        let end = match self.find_other_byte(fault, start + len - fault, value, true) {
            Ok(Some(last)) => last + 1,
            _ => fault + 1,
        };
        let first = self.kread::<u8>(fault).unwrap_or(value);
        self.slab_bug(s, format_args!("{what} overwritten"));
        self.printk(format_args!(
            "{:#x}-{:#x} @offset={}. First byte {:#x} instead of {:#x}",
            fault,
            end - 1,
            fault.wrapping_sub(self.slab_address(pfn)),
            first,
            value
        ));
        self.print_trailer(s, pfn, object);
        self.add_taint(crate::report::taint::BAD_PAGE);
        self.slab_fix(
            s,
            format_args!("Restoring {what} {fault:#x}-{:#x}={value:#x}", end - 1),
        );
        let _ = self.slab_fill(fault, value, end - fault);
        false
    }

    /// `check_valid_pointer()`: 0, or the start of an object of the slab.
    fn check_valid_pointer(&self, s: &KmemCache, pfn: u64, ptr: u64) -> bool {
        ptr == 0 || self.object_index(s, pfn, ptr).is_some()
    }

    /// `check_object()`: red zones, poison, padding and the free pointer of one object.
    fn check_object(&self, s: &KmemCache, pfn: u64, object: u64, val: u8) -> bool {
        let flags = s.flags();
        let end = object.wrapping_add(s.object_size() as u64);
        let right = s.inuse().saturating_sub(s.object_size()) as u64;
        let mut ok = true;
        if flags.contains(SlabFlags::RED_ZONE) {
            let pad = s.red_left_pad() as u64;
            ok &= self.check_bytes_and_report(
                s,
                pfn,
                object,
                "Left Redzone",
                object.wrapping_sub(pad),
                val,
                pad,
            );
            ok &= self.check_bytes_and_report(s, pfn, object, "Right Redzone", end, val, right);
            if Self::slub_debug_orig_size(s) && val == SLUB_RED_ACTIVE {
                let orig = self.get_orig_size(s, object);
                if s.object_size() > orig {
                    ok &= self.check_bytes_and_report(
                        s,
                        pfn,
                        object,
                        "kmalloc Redzone",
                        object.wrapping_add(orig as u64),
                        val,
                        (s.object_size() - orig) as u64,
                    );
                }
            }
        } else if flags.contains(SlabFlags::POISON) && right > 0 {
            ok &= self.check_bytes_and_report(
                s,
                pfn,
                object,
                "Alignment padding",
                end,
                POISON_INUSE,
                right,
            );
        }
        if flags.contains(SlabFlags::POISON)
            && val != SLUB_RED_ACTIVE
            && flags.contains(SlabFlags::OBJECT_POISON)
            && s.object_size() > 0
        {
            ok &= self.check_bytes_and_report(
                s,
                pfn,
                object,
                "Poison",
                object,
                POISON_FREE,
                s.object_size() as u64 - 1,
            ) && self.check_bytes_and_report(
                s,
                pfn,
                object,
                "End Poison",
                end.wrapping_sub(1),
                POISON_END,
                1,
            );
        }
        let fp_outside = s.fp_offset() >= s.inuse();
        if fp_outside || val != SLUB_RED_ACTIVE {
            let fp = self.get_freepointer(s, object);
            if fp.map_or(true, |fp| !self.check_valid_pointer(s, pfn, fp)) {
                self.object_err(s, pfn, object, "Freepointer corrupt");
                let _ = self.set_freepointer(s, object, 0);
                ok = false;
            }
        }
        ok
    }

    /// `on_freelist()` (Linux 6.6): is `search` on the slab's freelist? The walk also
    /// checks the chain and the counters, repairing what it finds: a corrupted head
    /// (`Freepointer corrupt`, `Freelist cleared`), a corrupted link (`Freechain
    /// corrupt`: cut there), an object count that is not what the order gives (`Wrong
    /// number of objects`), an in-use count that is not what the walk counted (`Wrong
    /// object count`).
    fn on_freelist(&self, s: &KmemCache, pfn: u64, search: u64) -> bool {
        let mut c = self.slab_counters(pfn);
        let mut fp = self.fl_va(s, pfn, c.freelist);
        let mut object = 0;
        let mut nr = 0u16;
        while fp != 0 && nr <= c.objects {
            if fp == search {
                return true;
            }
            if !self.check_valid_pointer(s, pfn, fp) {
                if object != 0 {
                    self.object_err(s, pfn, object, "Freechain corrupt");
                    let _ = self.set_freepointer(s, object, 0);
                } else {
                    self.slab_err(s, pfn, format_args!("Freepointer corrupt"));
                    c.freelist = NO_OBJECT;
                    c.inuse = c.objects;
                    self.mem_map.page(pfn).set_word(c.pack());
                    self.slab_fix(s, format_args!("Freelist cleared"));
                    return false;
                }
                break;
            }
            object = fp;
            let Ok(next) = self.get_freepointer(s, object) else {
                break;
            };
            fp = next;
            nr += 1;
        }
        let max_objects = Self::order_objects(s, self.mem_map.page(pfn).order()).unwrap_or(0);
        if c.objects != max_objects {
            self.slab_err(
                s,
                pfn,
                format_args!(
                    "Wrong number of objects. Found {} but should be {}",
                    c.objects, max_objects
                ),
            );
            if let Some(n) = self.get_node_quiet(s) {
                let delta = max_objects as i64 - c.objects as i64;
                // One atomic add: inc_slabs_node() on another CPU may change it too.
                n.total_objects.fetch_add(delta as u64, Relaxed);
            }
            c.objects = max_objects;
            self.mem_map.page(pfn).set_word(c.pack());
            self.slab_fix(s, format_args!("Number of objects adjusted"));
        }
        let counted = c.objects.saturating_sub(nr);
        if c.inuse != counted {
            self.slab_err(
                s,
                pfn,
                format_args!(
                    "Wrong object count. Counter is {} but counted were {}",
                    c.inuse, counted
                ),
            );
            c.inuse = counted;
            self.mem_map.page(pfn).set_word(c.pack());
            self.slab_fix(s, format_args!("Object count adjusted"));
        }
        search == 0
    }

    /// Take `pfn` off the node list it is on (the partial list, or the full list for a
    /// full slab) with the list checks; `false` if the list was found corrupt (reported,
    /// emptied).
    fn debug_list_del(&self, s: &KmemCache, n: &KmemCacheNode, pfn: u64, partial: bool) -> bool {
        if partial {
            let ok = self.slab_list_del(s, n, &n.partial, pfn);
            if ok {
                n.nr_partial
                    .store(n.nr_partial.load(Relaxed).saturating_sub(1), Relaxed);
            }
            ok
        } else {
            self.slab_list_del(s, n, &n.full, pfn)
        }
    }

    /// Take an object for a debug cache from the slab at `pfn` (node lock held): checked
    /// and tracked; a slab that fails is marked fully used and moved to the full list
    /// (`alloc_single_from_partial` / `alloc_debug_processing`).
    fn alloc_single(
        &self,
        s: &KmemCache,
        n: &KmemCacheNode,
        pfn: u64,
        site: crate::slab::CallSite,
        orig_size: u32,
        on_partial: bool,
    ) -> Option<u64> {
        let Ok(old) = self.check_slab(s, pfn, self.slab_counters(pfn)) else {
            // Reported, and marked fully used by `check_slab`.
            if !on_partial || self.debug_list_del(s, n, pfn, true) {
                n.full.push_back(&self.mem_map, pfn);
            }
            return None;
        };
        if old.freelist == NO_OBJECT {
            // A full slab on the partial list: nothing to take here.
            if !on_partial || self.debug_list_del(s, n, pfn, true) {
                n.full.push_back(&self.mem_map, pfn);
            }
            return None;
        }
        let object = self.object_at(s, pfn, old.freelist);
        let next = self.get_freepointer(s, object).ok();
        // `alloc_consistency_checks()`: `check_object` validates (and reports) the
        // object's own free pointer, so it runs first; without the checks a pointer that
        // leaves the slab is reported as the corrupt pointer it is.
        let next_ok = next.is_some_and(|next| self.check_valid_pointer(s, pfn, next));
        let consistent = if s.flags().contains(SlabFlags::CONSISTENCY_CHECKS) {
            self.check_object(s, pfn, object, SLUB_RED_INACTIVE) && next_ok
        } else {
            if !next_ok {
                self.slab_err(s, pfn, format_args!("Freepointer corrupt"));
            }
            next_ok
        };
        if !consistent {
            self.slab_fix(s, format_args!("Marking all objects used"));
            self.mem_map.page(pfn).set_word(
                SlabCounters {
                    freelist: NO_OBJECT,
                    inuse: old.objects,
                    ..old
                }
                .pack(),
            );
            if !on_partial || self.debug_list_del(s, n, pfn, true) {
                n.full.push_back(&self.mem_map, pfn);
            }
            return None;
        }
        let next_idx = next
            .and_then(|next| self.fl_idx(s, pfn, next))
            .unwrap_or(NO_OBJECT);
        let new = SlabCounters {
            freelist: next_idx,
            inuse: old.inuse + 1,
            ..old
        };
        self.mem_map.page(pfn).set_word(new.pack());
        self.set_track(s, object, TrackItem::Alloc, site);
        self.set_orig_size(s, object, orig_size);
        self.init_object(s, object, SLUB_RED_ACTIVE);
        if new.inuse == new.objects {
            if !on_partial || self.debug_list_del(s, n, pfn, true) {
                n.full.push_back(&self.mem_map, pfn);
            }
        } else if !on_partial {
            n.partial.push_back(&self.mem_map, pfn);
            n.nr_partial.fetch_add(1, Relaxed);
        }
        Some(object)
    }

    /// The allocation path of debug caches: the node's partial slabs, else a new slab.
    pub(crate) fn alloc_debug_path(
        &self,
        s: &KmemCache,
        gfp: Gfp,
        site: crate::slab::CallSite,
        orig_size: u32,
    ) -> Result<u64, SlabError> {
        // ___slab_alloc(): debug caches never have a CPU slab, so every allocation is a
        // slow one.
        self.stat(s, crate::slab::stats::StatItem::AllocSlowpath);
        self.check_geometry(s)?;
        let n = self.get_node(s)?;
        // A new slab whose first object fails its checks is corrupted as soon as it is
        // made: give up after a few rather than take memory forever.
        for _ in 0..4 {
            {
                let _guard = self.lock_node(n);
                // Each slab tried either gives an object or leaves the partial list, so
                // this ends after at most the list's length.
                while let Some(pfn) = n.partial.first() {
                    if self.slab_page_of(s, pfn).is_err() {
                        self.drop_list(n, &n.partial);
                        break;
                    }
                    if let Some(object) = self.alloc_single(s, n, pfn, site, orig_size, true) {
                        return Ok(object);
                    }
                }
            }
            let pfn = self.new_slab(s, gfp)?;
            self.stat(s, crate::slab::stats::StatItem::AllocSlab);
            self.inc_slabs_node(s, pfn)?;
            let _guard = self.lock_node(n);
            if let Some(object) = self.alloc_single(s, n, pfn, site, orig_size, false) {
                return Ok(object);
            }
        }
        Err(SlabError::Corrupted {
            addr: s.self_va.load(Relaxed),
            what: "every new slab failed its checks",
        })
    }

    /// `free_to_partial_list()` with `free_debug_processing()`: a free of a debug cache,
    /// checked; a refused object stays allocated, out of circulation. Out of line, so the
    /// fast path of caches without debugging stays small.
    #[inline(never)]
    pub(crate) fn free_to_partial_list(
        &self,
        s: &KmemCache,
        pfn: u64,
        object: u64,
        site: crate::slab::CallSite,
    ) -> Result<(), SlabError> {
        // __slab_free() counts the slow path before it hands a debug cache's free here.
        self.stat(s, crate::slab::stats::StatItem::FreeSlowpath);
        self.check_geometry(s)?;
        let n = self.get_node(s)?;
        let guard = self.lock_node(n);
        let result = self.free_debug_locked(s, n, pfn, object, site);
        drop(guard);
        if result.as_ref().is_ok_and(|d| *d) {
            self.stat(s, crate::slab::stats::StatItem::FreeSlab);
            self.discard_slab(s, pfn);
        }
        result.map(|_| ())
    }

    fn free_debug_locked(
        &self,
        s: &KmemCache,
        n: &KmemCacheNode,
        pfn: u64,
        object: u64,
        site: crate::slab::CallSite,
    ) -> Result<bool, SlabError> {
        let idx = self
            .object_index(s, pfn, object)
            .ok_or(SlabError::NotSlabObject(
                crate::VirtAddr(object),
                "not the start of an object",
            ))?;
        if s.flags().contains(SlabFlags::CONSISTENCY_CHECKS) {
            self.check_slab(s, pfn, self.slab_counters(pfn))?;
            if self.on_freelist(s, pfn, object) {
                self.object_err(s, pfn, object, "Object already free");
                return Err(SlabError::DebugCheck(
                    crate::VirtAddr(object),
                    "Object already free",
                ));
            }
            if !self.check_object(s, pfn, object, SLUB_RED_ACTIVE) {
                self.slab_fix(s, format_args!("Object at {object:#x} not freed"));
                return Err(SlabError::DebugCheck(
                    crate::VirtAddr(object),
                    "object corrupted while allocated",
                ));
            }
        }
        // Without F, the checks every free gets: the slab's freelist head, or a slab with
        // nothing in use (the hardened `BUG_ON(object == fp)` and the object count check).
        let c = self.check_slab(s, pfn, self.slab_counters(pfn))?;
        if c.inuse == 0 || (c.freelist != NO_OBJECT && self.object_at(s, pfn, c.freelist) == object)
        {
            return Err(self.naive_double_free(s, object));
        }
        self.set_track(s, object, TrackItem::Free, site);
        self.init_object(s, object, SLUB_RED_INACTIVE);
        let old = self.slab_counters(pfn);
        let prior = self.fl_va(s, pfn, old.freelist);
        self.set_freepointer(s, object, prior)?;
        let new = SlabCounters {
            freelist: idx,
            inuse: old.inuse.saturating_sub(1),
            ..old
        };
        self.mem_map.page(pfn).set_word(new.pack());
        if prior == 0 {
            let off_full = self.debug_list_del(s, n, pfn, false);
            if off_full && new.inuse != 0 {
                n.partial.push_back(&self.mem_map, pfn);
                n.nr_partial.fetch_add(1, Relaxed);
                self.stat(s, crate::slab::stats::StatItem::FreeAddPartial);
            }
        }
        if new.inuse == 0 {
            if n.nr_partial.load(Relaxed) >= s.min_partial() {
                if prior != 0 {
                    if !self.debug_list_del(s, n, pfn, true) {
                        return Ok(false);
                    }
                    self.stat(s, crate::slab::stats::StatItem::FreeRemovePartial);
                }
                return Ok(true);
            }
            if prior == 0 {
                n.partial.push_back(&self.mem_map, pfn);
                n.nr_partial.fetch_add(1, Relaxed);
                self.stat(s, crate::slab::stats::StatItem::FreeAddPartial);
            }
        }
        Ok(false)
    }

    /// The report of `kmem_cache_destroy` on a cache with objects left
    /// (`list_slab_objects` in `__kmem_cache_shutdown`).
    pub(crate) fn report_objects_remaining(&self, s: &KmemCache, remaining: u64, caller: CallSite) {
        self.slab_bug(
            s,
            format_args!(
                "Objects remaining in {} on __kmem_cache_shutdown()",
                s.name()
            ),
        );
        let _ = remaining;
        if let Ok(n) = self.get_node(s) {
            for list in [&n.partial, &n.full] {
                let _ = self.walk_node_list(s, n, list, |pfn| {
                    self.print_slab_info(pfn);
                    self.list_slab_objects(s, pfn);
                    None::<()>
                });
            }
        }
        // 6.6 `kmem_cache_destroy()`: `WARN(err, "%s %s: Slab cache still has objects when
        // called from %pS", __func__, s->name, (void *)_RET_IP_)`.
        const SITE: crate::report::KernelSite = crate::report::KernelSite {
            file: "mm/slab_common.c",
            line: 498,
            func: "kmem_cache_destroy",
        };
        crate::report::warn!(
            self,
            true,
            SITE,
            "kmem_cache_destroy {}: Slab cache still has objects when called from {caller}",
            s.name()
        );
    }

    fn list_slab_objects(&self, s: &KmemCache, pfn: u64) {
        let c = self.slab_counters(pfn);
        let mut free = [false; 512];
        let mut cur = self.fl_va(s, pfn, c.freelist);
        let mut steps = 0;
        while cur != 0 && steps <= c.objects {
            let Some(i) = self.object_index(s, pfn, cur) else {
                break;
            };
            if (i as usize) < free.len() {
                free[i as usize] = true;
            }
            let Ok(next) = self.get_freepointer(s, cur) else {
                break;
            };
            cur = next;
            steps += 1;
        }
        for idx in 0..c.objects.min(512) {
            if !free[idx as usize] {
                let object = self.object_at(s, pfn, idx);
                self.printk(format_args!(
                    "Object {:#x} @offset={}",
                    object,
                    object.wrapping_sub(self.slab_address(pfn))
                ));
                self.print_track("Allocated", self.get_track(s, object, TrackItem::Alloc));
            }
        }
    }
}
