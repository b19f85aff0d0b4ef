//! `slab_debug`'s checks by kind (`mm/slub.c` of Linux 6.6): red zones and poison bytes
//! (`check_bytes_and_report()`, `check_object()`), free pointers and freelists
//! (`check_valid_pointer()`, `on_freelist()`), and list links (`CONFIG_DEBUG_LIST`).

use crate::addr::Pfn;
use crate::platform::Platform;
use crate::slab::cache::{KmemCache, KmemCacheNode};
use crate::slab::debug::POISON_END;
use crate::slab::debug::POISON_FREE;
use crate::slab::debug::POISON_INUSE;
use crate::slab::debug::SLUB_RED_ACTIVE;
use crate::slab::slub::NO_OBJECT;
use crate::slab::SlabFlags;
use crate::Mm;
use core::sync::atomic::Ordering::Relaxed;

impl<P: Platform> Mm<P> {
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
        pfn: Pfn,
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
                self.slab_fault(start, false, crate::slab::Reason::SlabMetadataOutsideRam);
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
    pub(super) fn check_valid_pointer(&self, s: &KmemCache, pfn: Pfn, ptr: u64) -> bool {
        ptr == 0 || self.object_index(s, pfn, ptr).is_some()
    }

    /// `check_object()`: red zones, poison, padding and the free pointer of one object.
    pub(super) fn check_object(&self, s: &KmemCache, pfn: Pfn, object: u64, val: u8) -> bool {
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
    pub(super) fn on_freelist(&self, s: &KmemCache, pfn: Pfn, search: u64) -> bool {
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
    pub(super) fn debug_list_del(
        &self,
        s: &KmemCache,
        n: &KmemCacheNode,
        pfn: Pfn,
        partial: bool,
    ) -> bool {
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
}
