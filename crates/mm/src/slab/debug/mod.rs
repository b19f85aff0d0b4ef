//! `slab_debug` (`mm/slub.c`, `CONFIG_SLUB_DEBUG`): red zones, poisoning, owner tracking
//! and sanity checks, with the kernel's reports (`BUG <cache> (Not tainted): ...`, the
//! object's bytes, the last owners, `FIX ...`). Debug caches bypass the per-CPU layer, as
//! in the kernel since 6.2: every allocation and free takes the node lock and is checked.
//! An object that fails a check on free is kept out of circulation.
//!
//! Files: `mod.rs` (owner tracking, object init), `check.rs` (red zones, poison,
//! freelists, list links), `report.rs` (`slab_bug()` and friends), `process.rs` (the debug
//! caches' allocation and free paths).
//!
//! The metadata these checks read (red zones, tracks, free pointers, counters) is read
//! through the door like everything else; reports go through `slab_bug()` /
//! `slab_err()` / `object_err()` with the kernel's wording and taint (`B`).

mod check;
mod process;
mod report;

use crate::addr::Pfn;
use crate::platform::Platform;
use crate::slab::cache::{KmemCache, TRACK_SIZE};
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
                self.slab_fault(at, true, crate::slab::Reason::SlabMetadataOutsideRam);
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
    pub(crate) fn setup_slab_debug(&self, s: &KmemCache, pfn: Pfn, order: u32) {
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
}
