//! `slab_debug`'s reports (`mm/slub.c` of Linux 6.6): `slab_bug()`, `print_section()`,
//! `print_tracking()`, `print_trailer()`, `object_err()`, `slab_err()`, `slab_fix()`, and
//! at `kmem_cache_destroy()` the objects remaining (`list_slab_objects()`).

use crate::addr::Pfn;
use crate::platform::Platform;
use crate::procfs::LineBuf;
use crate::slab::cache::{KmemCache, TRACK_SIZE};
use crate::slab::debug::Track;
use crate::slab::debug::TrackItem;
use crate::slab::{CallSite, SlabFlags};
use crate::Mm;

impl<P: Platform> Mm<P> {
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
    fn slab_freelist_va(&self, pfn: Pfn) -> u64 {
        let c = self.slab_counters(pfn);
        let cache = crate::slab::KmemCacheRef(self.mem_map.page(pfn).slab_cache());
        match self.cache(cache) {
            Ok(s) if c.freelist != u16::MAX => self.object_at(s, pfn, c.freelist),
            _ => 0,
        }
    }

    /// `print_slab_info()`.
    fn print_slab_info(&self, pfn: Pfn) {
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
    pub(super) fn print_trailer(&self, s: &KmemCache, pfn: Pfn, object: u64) {
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
    pub(super) fn object_err(&self, s: &KmemCache, pfn: Pfn, object: u64, reason: &str) {
        self.slab_bug(s, format_args!("{reason}"));
        self.print_trailer(s, pfn, object);
        self.add_taint(crate::report::taint::BAD_PAGE);
    }

    /// `slab_err()`: a report about a whole slab.
    pub(crate) fn slab_err(&self, s: &KmemCache, pfn: Pfn, what: core::fmt::Arguments<'_>) {
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
    pub(crate) fn slab_err_invalid_pointer(&self, s: &KmemCache, pfn: Pfn, object: u64) {
        self.slab_err(s, pfn, format_args!("Invalid object pointer {object:#x}"));
    }
}

impl<P: Platform> Mm<P> {
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

    fn list_slab_objects(&self, s: &KmemCache, pfn: Pfn) {
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
