//! `slab_debug` (`mm/slub.c`, `CONFIG_SLUB_DEBUG`): red zones, poisoning, owner tracking
//! and sanity checks, with the kernel's reports (`BUG <cache> (Not tainted): ...`, the
//! object's bytes, the last owners, `FIX ...`). Debug caches bypass the per-CPU layer, as
//! in the kernel since 6.2: every allocation and free takes the node lock and is checked.
//! An object that fails a check on free is kept out of circulation.
#![allow(unsafe_code)] // TODO(door): convert this module to crate::mem and drop this.

use core::sync::atomic::Ordering::Relaxed;

use crate::gfp::Gfp;
use crate::platform::Platform;
use crate::procfs::LineBuf;
use crate::slab::cache::{KmemCache, TRACK_SIZE};
use crate::slab::slub::SlabCounters;
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
        object + Self::info_end(s) + item as u64 * TRACK_SIZE as u64
    }

    /// `set_track()`.
    fn set_track(&self, s: &KmemCache, object: u64, item: TrackItem, site: crate::slab::CallSite) {
        if !s.flags().contains(SlabFlags::STORE_USER) {
            return;
        }
        let at = Self::track_addr(s, object, item);
        let cpu = self.platform.smp_processor_id() as u64;
        self.write_u64(at, self.site_index(site).0 as u64);
        self.write_u64(at + 8, cpu | (self.platform.current_pid() as u64) << 32);
        self.write_u64(at + 16, self.platform.clock_ns());
        self.write_u64(at + 24, 0);
    }

    /// `get_track()`: the recorded owner of an object, if owner tracking is on.
    pub fn get_track(&self, s: &KmemCache, object: u64, item: TrackItem) -> Option<Track> {
        if !s.flags().contains(SlabFlags::STORE_USER) {
            return None;
        }
        let at = Self::track_addr(s, object, item);
        let site = self.read_u64(at);
        let cpu_pid = self.read_u64(at + 8);
        Some(Track {
            site: u32::try_from(site).ok().and_then(|i| self.site(i)),
            cpu: cpu_pid as u32,
            pid: (cpu_pid >> 32) as u32,
            when: self.read_u64(at + 16),
        })
    }

    /// `slub_debug_orig_size()`: a kmalloc cache with owner tracking records each
    /// object's requested size, and (with red zones) red-zones the rest of the object.
    pub(crate) fn slub_debug_orig_size(s: &KmemCache) -> bool {
        s.flags()
            .contains(SlabFlags::STORE_USER | SlabFlags::KMALLOC)
    }

    fn orig_size_addr(s: &KmemCache, object: u64) -> u64 {
        object + Self::info_end(s) + 2 * TRACK_SIZE as u64
    }

    /// `get_orig_size()`: the size the caller asked for (the object size when not
    /// recorded).
    pub(crate) fn get_orig_size(&self, s: &KmemCache, object: u64) -> u32 {
        if !Self::slub_debug_orig_size(s) {
            return s.object_size();
        }
        let at = Self::orig_size_addr(s, object);
        let mut b = [0u8; 4];
        for (i, byte) in b.iter_mut().enumerate() {
            *byte = self.byte(at + i as u64);
        }
        u32::from_le_bytes(b).min(s.object_size())
    }

    /// `set_orig_size()`.
    pub(crate) fn set_orig_size(&self, s: &KmemCache, object: u64, orig_size: u32) {
        if Self::slub_debug_orig_size(s) {
            let at = Self::orig_size_addr(s, object);
            // SAFETY: the four bytes after the tracks belong to this object's metadata.
            unsafe { core::ptr::write_unaligned(self.va_ptr(at) as *mut u32, orig_size) };
        }
    }

    /// `init_object()`: red zones to `val`, and (for a poisoned cache) the object to
    /// `POISON_FREE` ending in `POISON_END`; an allocated kmalloc object with a recorded
    /// size is poisoned up to that size and red-zoned after it.
    pub(crate) fn init_object(&self, s: &KmemCache, object: u64, val: u8) {
        let flags = s.flags();
        let mut poison_size = s.object_size() as usize;
        if flags.contains(SlabFlags::RED_ZONE) {
            self.fill(
                object - s.red_left_pad() as u64,
                val,
                s.red_left_pad() as usize,
            );
            if Self::slub_debug_orig_size(s) && val == SLUB_RED_ACTIVE {
                poison_size = self.get_orig_size(s, object) as usize;
            }
        }
        if flags.contains(SlabFlags::OBJECT_POISON) && poison_size > 0 {
            self.fill(object, POISON_FREE, poison_size - 1);
            self.fill(object + poison_size as u64 - 1, POISON_END, 1);
        }
        if flags.contains(SlabFlags::RED_ZONE) {
            let end = object + poison_size as u64;
            self.fill(end, val, s.inuse() as usize - poison_size);
        }
    }

    /// `setup_slab_debug()`: a new slab of a poisoned cache starts as `POISON_INUSE`.
    pub(crate) fn setup_slab_debug(&self, s: &KmemCache, pfn: u64, order: u32) {
        if s.flags().contains(SlabFlags::POISON) {
            self.fill(
                self.slab_address(pfn),
                POISON_INUSE,
                crate::PAGE_SIZE << order,
            );
        }
    }

    /// `setup_object_debug()`.
    pub(crate) fn setup_object_debug(&self, s: &KmemCache, object: u64) {
        if s.is_debug() {
            self.init_object(s, object, SLUB_RED_INACTIVE);
        }
    }

    fn byte(&self, va: u64) -> u8 {
        // SAFETY: inside a slab of this kernel (callers stay within slab geometry).
        unsafe { *self.va_ptr(va) }
    }

    /// `slab_bug()`.
    fn slab_bug(&self, s: &KmemCache, what: core::fmt::Arguments<'_>) {
        crate::vmstat::VmEvents::add(&self.events.bug_slab, 1);
        self.printk(format_args!(
            "============================================================================="
        ));
        self.printk(format_args!("BUG {} (Not tainted): {}", s.name(), what));
        self.printk(format_args!(
            "-----------------------------------------------------------------------------"
        ));
        self.printk(format_args!(""));
    }

    /// `print_section()`: a hex dump, 16 bytes a line, with ASCII.
    fn print_section(&self, text: &str, addr: u64, len: u64) {
        let len = len.min(256);
        let mut off = 0;
        while off < len {
            let mut line = LineBuf::new();
            let n = (len - off).min(16);
            let _ =
                core::fmt::Write::write_fmt(&mut line, format_args!("{text}{:016x}: ", addr + off));
            for i in 0..n {
                let _ = core::fmt::Write::write_fmt(
                    &mut line,
                    format_args!("{:02x} ", self.byte(addr + off + i)),
                );
            }
            let _ = core::fmt::Write::write_str(&mut line, " ");
            for i in 0..n {
                let b = self.byte(addr + off + i);
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
        if let Some(t) = t {
            if let Some(site) = t.site {
                let age = self.platform.clock_ns().saturating_sub(t.when);
                self.printk(format_args!(
                    "{what} in {site} age={age} cpu={} pid={}",
                    t.cpu, t.pid
                ));
            }
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
            self.struct_page_address(page).0,
            c.objects,
            c.inuse,
            self.slab_freelist_va(pfn),
            page.flags() & 0xff
        ));
    }

    /// `print_trailer()`: owners, slab, and the object's bytes with its red zones.
    fn print_trailer(&self, s: &KmemCache, pfn: u64, object: u64) {
        let base = self.slab_address(pfn);
        self.print_track("Allocated", self.get_track(s, object, TrackItem::Alloc));
        self.print_track("Freed", self.get_track(s, object, TrackItem::Free));
        self.print_slab_info(pfn);
        self.printk(format_args!(
            "Object {:#x} @offset={} fp={:#x}",
            object,
            object - base,
            self.get_freepointer(s, object)
        ));
        self.printk(format_args!(""));
        if s.flags().contains(SlabFlags::RED_ZONE) {
            self.print_section(
                "Redzone  ",
                object - s.red_left_pad() as u64,
                s.red_left_pad() as u64,
            );
        } else if object > base + 16 {
            self.print_section("Bytes b4 ", object - 16, 16);
        }
        self.print_section("Object   ", object, s.object_size() as u64);
        if s.flags().contains(SlabFlags::RED_ZONE) {
            self.print_section(
                "Redzone  ",
                object + s.object_size() as u64,
                (s.inuse() - s.object_size()) as u64,
            );
        }
        let mut off = Self::info_end(s);
        if s.flags().contains(SlabFlags::STORE_USER) {
            off += 2 * TRACK_SIZE as u64;
            if s.flags().contains(SlabFlags::KMALLOC) {
                off += 4;
            }
        }
        let end = (s.size() - s.red_left_pad()) as u64;
        if off < end {
            self.print_section("Padding  ", object + off, end - off);
        }
    }

    /// `object_err()`.
    fn object_err(&self, s: &KmemCache, pfn: u64, object: u64, reason: &str) {
        self.slab_bug(s, format_args!("{reason}"));
        self.print_trailer(s, pfn, object);
    }

    /// `slab_fix()`.
    fn slab_fix(&self, s: &KmemCache, what: core::fmt::Arguments<'_>) {
        self.printk(format_args!("FIX {}: {}", s.name(), what));
    }

    /// The report for `kmem_cache_free`/`kfree` of a pointer that is no object start.
    pub(crate) fn slab_err_invalid_pointer(&self, s: &KmemCache, pfn: u64, object: u64) {
        self.slab_bug(s, format_args!("Invalid object pointer {object:#x}"));
        self.print_slab_info(pfn);
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
        let Some(fault) = (start..start + len).find(|&a| self.byte(a) != value) else {
            return true;
        };
        let end = (fault..start + len)
            .rev()
            .find(|&a| self.byte(a) != value)
            .unwrap_or(fault)
            + 1;
        self.slab_bug(s, format_args!("{what} overwritten"));
        self.printk(format_args!(
            "{:#x}-{:#x} @offset={}. First byte {:#x} instead of {:#x}",
            fault,
            end - 1,
            fault - self.slab_address(pfn),
            self.byte(fault),
            value
        ));
        self.print_trailer(s, pfn, object);
        self.slab_fix(
            s,
            format_args!("Restoring {what} {fault:#x}-{:#x}={value:#x}", end - 1),
        );
        self.fill(fault, value, (end - fault) as usize);
        false
    }

    /// `check_valid_pointer()`: 0, or the start of an object of the slab.
    fn check_valid_pointer(&self, s: &KmemCache, pfn: u64, ptr: u64) -> bool {
        ptr == 0 || self.object_index(s, pfn, ptr).is_some()
    }

    /// `check_object()`: red zones, poison, padding and the free pointer of one object.
    fn check_object(&self, s: &KmemCache, pfn: u64, object: u64, val: u8) -> bool {
        let flags = s.flags();
        let end = object + s.object_size() as u64;
        let mut ok = true;
        if flags.contains(SlabFlags::RED_ZONE) {
            ok &= self.check_bytes_and_report(
                s,
                pfn,
                object,
                "Left Redzone",
                object - s.red_left_pad() as u64,
                val,
                s.red_left_pad() as u64,
            );
            ok &= self.check_bytes_and_report(
                s,
                pfn,
                object,
                "Right Redzone",
                end,
                val,
                (s.inuse() - s.object_size()) as u64,
            );
            if Self::slub_debug_orig_size(s) && val == SLUB_RED_ACTIVE {
                let orig = self.get_orig_size(s, object);
                if s.object_size() > orig {
                    ok &= self.check_bytes_and_report(
                        s,
                        pfn,
                        object,
                        "kmalloc Redzone",
                        object + orig as u64,
                        val,
                        (s.object_size() - orig) as u64,
                    );
                }
            }
        } else if flags.contains(SlabFlags::POISON) && s.object_size() < s.inuse() {
            ok &= self.check_bytes_and_report(
                s,
                pfn,
                object,
                "Alignment padding",
                end,
                POISON_INUSE,
                (s.inuse() - s.object_size()) as u64,
            );
        }
        if flags.contains(SlabFlags::POISON)
            && val != SLUB_RED_ACTIVE
            && flags.contains(SlabFlags::OBJECT_POISON)
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
                end - 1,
                POISON_END,
                1,
            );
        }
        let fp_outside = s.fp_offset() >= s.inuse();
        if (fp_outside || val != SLUB_RED_ACTIVE)
            && !self.check_valid_pointer(s, pfn, self.get_freepointer(s, object))
        {
            self.object_err(s, pfn, object, "Freepointer corrupt");
            self.set_freepointer(s, object, 0);
            ok = false;
        }
        ok
    }

    /// `on_freelist()`: is `object` on the slab's freelist?
    fn on_freelist(&self, s: &KmemCache, pfn: u64, object: u64) -> bool {
        let c = self.slab_counters(pfn);
        let mut cur = if c.freelist == u16::MAX {
            0
        } else {
            self.object_at(s, pfn, c.freelist)
        };
        let mut steps = 0;
        while cur != 0 && steps <= c.objects {
            if cur == object {
                return true;
            }
            let next = self.get_freepointer(s, cur);
            if !self.check_valid_pointer(s, pfn, next) {
                self.object_err(s, pfn, cur, "Freechain corrupt");
                self.set_freepointer(s, cur, 0);
                // The chain now ends at `cur`: the objects behind it are lost, and the
                // counters must say so (the kernel's "Wrong object count" fix-up).
                let counted = c.objects.saturating_sub(steps + 1);
                if c.inuse != counted {
                    self.slab_bug(
                        s,
                        format_args!(
                            "Wrong object count. Counter is {} but counted were {}",
                            c.inuse, counted
                        ),
                    );
                    self.print_slab_info(pfn);
                    self.mem_map.page(pfn).set_word(
                        SlabCounters {
                            inuse: counted,
                            ..c
                        }
                        .pack(),
                    );
                    self.slab_fix(s, format_args!("Object count adjusted"));
                }
                return false;
            }
            cur = next;
            steps += 1;
        }
        false
    }

    /// Take an object for a debug cache from the slab at `pfn` (node lock held): checked
    /// and tracked; a slab whose object fails is marked fully used and taken off the list
    /// (`alloc_single_from_partial` / `alloc_debug_processing`).
    fn alloc_single(
        &self,
        s: &KmemCache,
        pfn: u64,
        site: crate::slab::CallSite,
        orig_size: u32,
        on_partial: bool,
    ) -> Option<u64> {
        let n = self.get_node(s);
        let old = self.slab_counters(pfn);
        let object = self.object_at(s, pfn, old.freelist);
        let next = self.get_freepointer(s, object);
        // `alloc_consistency_checks()`: `check_object` validates (and reports) the
        // object's own free pointer, so it runs first; without the checks a pointer that
        // leaves the slab still must not be followed.
        let consistent = if s.flags().contains(SlabFlags::CONSISTENCY_CHECKS) {
            self.check_object(s, pfn, object, SLUB_RED_INACTIVE)
                && self.check_valid_pointer(s, pfn, next)
        } else {
            self.check_valid_pointer(s, pfn, next)
        };
        if !consistent {
            self.slab_fix(s, format_args!("Marking all objects used"));
            self.mem_map.page(pfn).set_word(
                SlabCounters {
                    freelist: u16::MAX,
                    inuse: old.objects,
                    ..old
                }
                .pack(),
            );
            if on_partial {
                n.partial.remove(&self.mem_map, pfn);
                n.nr_partial.fetch_sub(1, Relaxed);
            }
            n.full.push_back(&self.mem_map, pfn);
            return None;
        }
        let next_idx = if next == 0 {
            u16::MAX
        } else {
            self.object_index(s, pfn, next).unwrap_or(u16::MAX)
        };
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
            if on_partial {
                n.partial.remove(&self.mem_map, pfn);
                n.nr_partial.fetch_sub(1, Relaxed);
            }
            n.full.push_back(&self.mem_map, pfn);
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
        let n = self.get_node(s);
        loop {
            {
                let flags = self.platform.local_irq_save();
                self.spin_lock(&n.list_lock, "n->list_lock");
                let mut got = None;
                while let Some(pfn) = n.partial.first() {
                    if let Some(object) = self.alloc_single(s, pfn, site, orig_size, true) {
                        got = Some(object);
                        break;
                    }
                }
                n.list_lock.unlock();
                self.platform.local_irq_restore(flags);
                if let Some(object) = got {
                    return Ok(object);
                }
            }
            let pfn = self.new_slab(s, gfp)?;
            self.inc_slabs_node(s, pfn);
            let flags = self.platform.local_irq_save();
            self.spin_lock(&n.list_lock, "n->list_lock");
            let got = self.alloc_single(s, pfn, site, orig_size, false);
            n.list_lock.unlock();
            self.platform.local_irq_restore(flags);
            if let Some(object) = got {
                return Ok(object);
            }
        }
    }

    /// `free_to_partial_list()` with `free_debug_processing()`: a free of a debug cache,
    /// checked; a refused object stays allocated, out of circulation.
    pub(crate) fn free_to_partial_list(
        &self,
        s: &KmemCache,
        pfn: u64,
        object: u64,
        site: crate::slab::CallSite,
    ) -> Result<(), SlabError> {
        let n = self.get_node(s);
        let flags = self.platform.local_irq_save();
        self.spin_lock(&n.list_lock, "n->list_lock");
        let result = self.free_debug_locked(s, pfn, object, site);
        let discard = result.as_ref().is_ok_and(|d| *d);
        n.list_lock.unlock();
        self.platform.local_irq_restore(flags);
        if discard {
            self.discard_slab(s, pfn);
        }
        result.map(|_| ())
    }

    fn free_debug_locked(
        &self,
        s: &KmemCache,
        pfn: u64,
        object: u64,
        site: crate::slab::CallSite,
    ) -> Result<bool, SlabError> {
        let n = self.get_node(s);
        if s.flags().contains(SlabFlags::CONSISTENCY_CHECKS) {
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
        let c = self.slab_counters(pfn);
        if c.inuse == 0 || (c.freelist != u16::MAX && self.object_at(s, pfn, c.freelist) == object)
        {
            return Err(self.naive_double_free(s, object));
        }
        self.set_track(s, object, TrackItem::Free, site);
        self.init_object(s, object, SLUB_RED_INACTIVE);
        let old = self.slab_counters(pfn);
        let prior = if old.freelist == u16::MAX {
            0
        } else {
            self.object_at(s, pfn, old.freelist)
        };
        self.set_freepointer(s, object, prior);
        let idx = self
            .object_index(s, pfn, object)
            .expect("checked by the caller");
        let new = SlabCounters {
            freelist: idx,
            inuse: old.inuse.saturating_sub(1),
            ..old
        };
        self.mem_map.page(pfn).set_word(new.pack());
        if prior == 0 {
            n.full.remove(&self.mem_map, pfn);
            if new.inuse != 0 {
                n.partial.push_back(&self.mem_map, pfn);
                n.nr_partial.fetch_add(1, Relaxed);
            }
        }
        if new.inuse == 0 {
            if n.nr_partial.load(Relaxed) >= s.min_partial() {
                if prior != 0 {
                    n.partial.remove(&self.mem_map, pfn);
                    n.nr_partial.fetch_sub(1, Relaxed);
                }
                return Ok(true);
            }
            if prior == 0 {
                n.partial.push_back(&self.mem_map, pfn);
                n.nr_partial.fetch_add(1, Relaxed);
            }
        }
        Ok(false)
    }

    /// The report of `kmem_cache_destroy` on a cache with objects left
    /// (`list_slab_objects` in `__kmem_cache_shutdown`).
    pub(crate) fn report_objects_remaining(&self, s: &KmemCache, remaining: u64) {
        self.slab_bug(
            s,
            format_args!(
                "Objects remaining in {} on __kmem_cache_shutdown()",
                s.name()
            ),
        );
        let n = self.get_node(s);
        let _ = remaining;
        for list in [&n.partial, &n.full] {
            for pfn in list.iter(&self.mem_map) {
                self.print_slab_info(pfn);
                self.list_slab_objects(s, pfn);
            }
        }
        self.printk(format_args!(
            "WARNING: CPU: {} PID: {} at mm/slab_common.c kmem_cache_destroy: kmem_cache_destroy {}: Slab cache still has objects",
            self.platform.smp_processor_id(),
            self.platform.current_pid(),
            s.name()
        ));
    }

    fn list_slab_objects(&self, s: &KmemCache, pfn: u64) {
        let c = self.slab_counters(pfn);
        let mut free = [false; 512];
        let mut cur = if c.freelist == u16::MAX {
            0
        } else {
            self.object_at(s, pfn, c.freelist)
        };
        let mut steps = 0;
        while cur != 0 && steps <= c.objects {
            let Some(i) = self.object_index(s, pfn, cur) else {
                break;
            };
            if (i as usize) < free.len() {
                free[i as usize] = true;
            }
            cur = self.get_freepointer(s, cur);
            steps += 1;
        }
        for idx in 0..c.objects.min(512) {
            if !free[idx as usize] {
                let object = self.object_at(s, pfn, idx);
                self.printk(format_args!(
                    "Object {:#x} @offset={}",
                    object,
                    object - self.slab_address(pfn)
                ));
                self.print_track("Allocated", self.get_track(s, object, TrackItem::Alloc));
            }
        }
    }
}
