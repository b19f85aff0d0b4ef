//! The slab and kmalloc events: `kmalloc`, `kmem_cache_alloc`, `kfree`,
//! `kmem_cache_free` (and kvmalloc), the caches they map to and the per-site rows.

use super::{CacheKey, CacheSlot, LiveObject, ObjectKind, Replayer, RowKey, NAME_TRIES};
use kmemlab_mm::slab::kmalloc::ZERO_SIZE_PTR;
use kmemlab_mm::slab::{KmemCacheRef, Reason, SlabError, SlabFlags};
use kmemlab_mm::util;
use kmemlab_mm::vmalloc::VmallocError;
use kmemlab_mm::{Gfp, Mm, PageAllocError, VirtAddr, PAGE_SIZE};

use crate::event::{CallSite, EventName, SlabAlloc, SlabFree, TraceEvent};
use crate::parse::Symbols;
use crate::stats::AllocRow;
use kmemlab_sim::SimPlatform;

impl Replayer<'_> {
    /// perf's accounting of an allocation event; the call-site row.
    pub(super) fn count_alloc(&mut self, ev: &TraceEvent, a: &SlabAlloc) -> u32 {
        self.slab.total_requested += u128::from(a.bytes_req);
        self.slab.total_allocated += u128::from(a.bytes_alloc);
        self.slab.nr_allocs += 1;
        let node_event = matches!(
            ev.name,
            EventName::KmallocNode | EventName::KmemCacheAllocNode
        );
        if node_event && a.node != Some(0) {
            self.slab.nr_cross_allocs += 1;
        }
        let row = self.site_row(a.call_site);
        let bytes = (a.bytes_req, a.bytes_alloc);
        self.tables
            .slab_alloc(row, a.call_site, a.ptr, bytes, ev.chain);
        let r = &mut self.sites[row as usize].1;
        r.hit += 1;
        r.bytes_req += u128::from(a.bytes_req);
        r.bytes_alloc += u128::from(a.bytes_alloc);
        row
    }

    pub(super) fn site_row(&mut self, site: CallSite) -> u32 {
        if let Some(&row) = self.site_index.get(&site) {
            return row;
        }
        let row = self.sites.len() as u32;
        self.sites.push((site, AllocRow::default()));
        self.site_index.insert(site, row);
        row
    }

    pub(super) fn kmalloc(&mut self, mm: &Mm<SimPlatform>, ev: &TraceEvent, a: &SlabAlloc) {
        let site_row = self.count_alloc(ev, a);
        if a.ptr == 0 {
            self.counters.traced_slab_failures += 1;
            return;
        }
        self.retire_live_object(mm, a.ptr);
        let size = a.bytes_req as usize;
        let gfp = kmalloc_gfp(a);
        let as_kvmalloc = self
            .options
            .kvmalloc_above
            .is_some_and(|above| a.bytes_req > above);
        let result = if as_kvmalloc {
            self.kvmalloc_object(mm, size, gfp)
        } else {
            self.with_sleep_retry(gfp, |g| mm.kmalloc(size, g))
                .map_err(KvmallocError::Kmalloc)
        };
        let (addr, cache_row) = match result {
            Ok(addr) if addr.0 <= ZERO_SIZE_PTR.0 => (None, u32::MAX),
            Ok(addr) if mm.is_vmalloc_addr(addr) => {
                let bytes = (size as u64).next_multiple_of(PAGE_SIZE as u64);
                let row = self.vmalloc_row();
                self.add_to_row(row, a.bytes_req, bytes);
                self.vmap.measure(mm);
                (Some(addr), row)
            }
            Ok(addr) => {
                let ksize = mm.ksize(addr).unwrap_or(0) as u64;
                self.compare_size(false, a, ksize);
                *self
                    .kmalloc_pairs
                    .entry((a.bytes_req, a.bytes_alloc))
                    .or_insert(0) += 1;
                let row = self.kmalloc_row(mm, size, gfp);
                self.add_to_row(row, a.bytes_req, ksize);
                (Some(addr), row)
            }
            Err(e) => {
                self.counters.kmalloc_failures += 1;
                self.note(mm, ev, &e);
                (None, u32::MAX)
            }
        };
        self.objects.insert(
            a.ptr,
            LiveObject {
                addr,
                kind: if as_kvmalloc {
                    ObjectKind::Kvmalloc
                } else {
                    ObjectKind::Kmalloc
                },
                site_row,
                cache_row,
                traced_bytes: a.bytes_alloc,
                cpu: ev.cpu,
            },
        );
    }

    pub(super) fn cache_alloc(
        &mut self,
        mm: &Mm<SimPlatform>,
        ev: &TraceEvent,
        a: &SlabAlloc,
        slot: Option<u32>,
    ) {
        let site_row = self.count_alloc(ev, a);
        if a.ptr == 0 {
            self.counters.traced_slab_failures += 1;
            return;
        }
        self.retire_live_object(mm, a.ptr);
        let mut object = LiveObject {
            addr: None,
            kind: ObjectKind::Kmalloc,
            site_row,
            cache_row: u32::MAX,
            traced_bytes: a.bytes_alloc,
            cpu: ev.cpu,
        };
        match slot {
            Some(slot) => {
                let (handle, size, row) = {
                    let s = &self.cache_slots[slot as usize];
                    (s.handle, s.size, s.row)
                };
                object.kind = ObjectKind::Cache(slot);
                match self.with_sleep_retry(a.gfp, |g| mm.kmem_cache_alloc(handle, g)) {
                    Ok(addr) => {
                        self.compare_size(true, a, size);
                        self.add_to_row(row, a.bytes_req, size);
                        object.addr = Some(addr);
                        object.cache_row = row;
                    }
                    Err(e) => {
                        self.counters.cache_alloc_failures += 1;
                        self.note(mm, ev, &e);
                    }
                }
            }
            None => self.counters.cache_alloc_failures += 1,
        }
        self.objects.insert(a.ptr, object);
    }

    /// A traced `kmalloc` as `kvmalloc`, counted by the way it went.
    pub(super) fn kvmalloc_object(
        &mut self,
        mm: &Mm<SimPlatform>,
        size: usize,
        gfp: Gfp,
    ) -> Result<VirtAddr, KvmallocError> {
        let result = self.with_sleep_retry(gfp, |g| kvmalloc(mm, size, g));
        match &result {
            Ok(addr) if mm.is_vmalloc_addr(*addr) => self.kvmalloc.via_vmalloc += 1,
            Ok(_) => self.kvmalloc.via_kmalloc += 1,
            Err(_) => self.kvmalloc.failed += 1,
        }
        result
    }

    /// The cache-table row of the `kvmalloc`s served by vmalloc.
    pub(super) fn vmalloc_row(&mut self) -> u32 {
        match self.row_index.get(&RowKey::Vmalloc) {
            Some(&row) => row,
            None => self.new_row(RowKey::Vmalloc, "vmalloc (kvmalloc fallback)".into()),
        }
    }

    pub(super) fn add_to_row(&mut self, row: u32, requested: u64, allocated: u64) {
        if let Some(r) = self.cache_rows.get_mut(row as usize) {
            r.hit += 1;
            r.bytes_req += u128::from(requested);
            r.bytes_alloc += u128::from(allocated);
        }
    }

    /// Run an allocation; a blocking one refused in atomic context is counted (the splat
    /// is on the console) and retried without direct reclaim, as the traced kernel went on.
    pub(super) fn with_sleep_retry<T, E: SleepRefusal>(
        &mut self,
        gfp: Gfp,
        f: impl Fn(Gfp) -> Result<T, E>,
    ) -> Result<T, E> {
        match f(gfp) {
            Err(e) if e.is_sleep_in_atomic() => {
                self.counters.sleep_in_atomic += 1;
                f(gfp - Gfp::__GFP_DIRECT_RECLAIM)
            }
            other => other,
        }
    }

    /// Free kmemlab's object behind a traced pointer that is allocated again.
    pub(super) fn retire_live_object(&mut self, mm: &Mm<SimPlatform>, ptr: u64) {
        if let Some(old) = self.objects.remove(&ptr) {
            self.counters.reused_live_pointer += 1;
            self.free_object(mm, &old);
        }
    }

    pub(super) fn free_object(&mut self, mm: &Mm<SimPlatform>, obj: &LiveObject) {
        let Some(addr) = obj.addr else {
            return;
        };
        let result = match obj.kind {
            ObjectKind::Kmalloc => mm.kfree(addr).map_err(|e| e.to_string()),
            ObjectKind::Kvmalloc => self.kvfree_object(mm, addr).map_err(|e| e.to_string()),
            ObjectKind::Cache(slot) => {
                let cache = self.cache_slots[slot as usize].handle;
                mm.kmem_cache_free(cache, addr)
                    .map_err(|e| mm.slab_error_text(cache, e).to_string())
            }
        };
        if let Err(e) = result {
            self.counters.free_failures += 1;
            self.note_message(format!("free of {addr}: {e}"));
        }
    }

    /// `kvfree` of a replayed `kvmalloc`, the vmalloc space it held given back.
    pub(super) fn kvfree_object(
        &mut self,
        mm: &Mm<SimPlatform>,
        addr: VirtAddr,
    ) -> Result<(), KvmallocError> {
        let vmalloced = mm.is_vmalloc_addr(addr);
        kvfree(mm, addr)?;
        if vmalloced {
            self.run_kworker(mm);
        }
        Ok(())
    }

    pub(super) fn slab_free(&mut self, mm: &Mm<SimPlatform>, ev: &TraceEvent, f: &SlabFree) {
        self.slab.nr_frees += 1;
        if f.ptr == 0 {
            self.counters.null_frees += 1;
            return;
        }
        let Some(obj) = self.objects.remove(&f.ptr) else {
            self.counters.untracked_frees += 1;
            return;
        };
        self.slab.total_freed += u128::from(obj.traced_bytes);
        if ev.cpu != obj.cpu {
            self.tables.slab_pingpong(f.ptr);
            self.sites[obj.site_row as usize].1.pingpong += 1;
            if let Some(r) = self.cache_rows.get_mut(obj.cache_row as usize) {
                r.pingpong += 1;
            }
        }
        let via_kfree = ev.name == EventName::Kfree;
        let kmalloc_family = matches!(obj.kind, ObjectKind::Kmalloc | ObjectKind::Kvmalloc);
        if via_kfree != kmalloc_family {
            self.counters.free_kind_mismatch += 1;
        }
        self.free_object(mm, &obj);
    }

    /// The kmemlab cache for a traced `kmem_cache_alloc`, created on first use.
    ///
    /// The traced `kmem_cache_alloc` prints `bytes_req=s->object_size` and
    /// `bytes_alloc=s->size` (`include/trace/events/kmem.h`, Linux 6.6): kmemlab creates
    /// the cache at the object size and lays it out itself, so that its `s->size`
    /// (alignment, red zones, tracking under slab_debug) is compared with the traced one,
    /// not copied from it.
    pub(super) fn cache_for(
        &mut self,
        mm: &Mm<SimPlatform>,
        a: &SlabAlloc,
        symbols: &Symbols,
    ) -> Option<u32> {
        let size = if a.bytes_alloc > 0 {
            a.bytes_alloc
        } else {
            a.bytes_req.max(1)
        };
        let object_size = if a.bytes_req > 0 { a.bytes_req } else { size };
        let key = match a.cache_name {
            Some(name) => CacheKey::Named(name, size),
            None => CacheKey::Site(a.call_site, size),
        };
        if let Some(&slot) = self.caches.get(&key) {
            return Some(slot);
        }
        let slot = self
            .create_cache(mm, key, object_size, symbols)
            .or_else(|| {
                // The cache table is full: share a cache of the same object size.
                let shared = self
                    .cache_slots
                    .iter()
                    .position(|s| s.traced_size == size)? as u32;
                self.counters.shared_cache_fallbacks += 1;
                Some(shared)
            })?;
        self.caches.insert(key, slot);
        Some(slot)
    }

    /// Create the cache for `key` (named for the traced `s->size`) at `size`, the traced
    /// object size.
    pub(super) fn create_cache(
        &mut self,
        mm: &Mm<SimPlatform>,
        key: CacheKey,
        size: u64,
        symbols: &Symbols,
    ) -> Option<u32> {
        let base = cache_label(key, symbols);
        let mut last_error = None;
        for attempt in 1..=NAME_TRIES {
            let name = if attempt == 1 {
                base.clone()
            } else {
                format!("{base}#{attempt}")
            };
            if mm.find_cache(&name).is_some() {
                continue;
            }
            match mm.kmem_cache_create(&name, size as usize, 0, SlabFlags::empty(), None) {
                Ok(handle) => return Some(self.add_cache_slot(mm, handle, &name, key.size())),
                Err(SlabError::BadArgs(Reason::NameExists)) => continue,
                Err(e) => {
                    last_error = Some(e);
                    break;
                }
            }
        }
        if let Some(e) = last_error {
            let e = e.to_string();
            let e = mm.with_alloc_failure_detail(&e);
            self.note_message(format!("kmem_cache_create({base}, {size}): {e}"));
        }
        None
    }

    pub(super) fn add_cache_slot(
        &mut self,
        mm: &Mm<SimPlatform>,
        handle: KmemCacheRef,
        name: &str,
        traced_size: u64,
    ) -> u32 {
        self.counters.caches_created += 1;
        let kmemlab_size = mm.cache(handle).map_or(traced_size, |s| s.size() as u64);
        let row = self.new_row(RowKey::Slab(handle.0), name.to_string());
        self.cache_slots.push(CacheSlot {
            handle,
            size: kmemlab_size,
            traced_size,
            row,
        });
        (self.cache_slots.len() - 1) as u32
    }

    pub(super) fn new_row(&mut self, key: RowKey, name: String) -> u32 {
        let row = self.cache_rows.len() as u32;
        self.cache_rows.push(AllocRow {
            name,
            ..AllocRow::default()
        });
        self.row_index.insert(key, row);
        row
    }

    /// The cache-table row of a kmalloc of `size` bytes: its kmalloc cache, or the page
    /// allocator for large ones.
    pub(super) fn kmalloc_row(&mut self, mm: &Mm<SimPlatform>, size: usize, gfp: Gfp) -> u32 {
        let key = match mm.kmalloc_slab(size, gfp) {
            Some(r) => RowKey::Slab(r.0),
            None => RowKey::Large(kmemlab_mm::addr::get_order(size)),
        };
        if let Some(&row) = self.row_index.get(&key) {
            return row;
        }
        let name = match key {
            RowKey::Slab(va) => mm.cache(KmemCacheRef(va)).map_or_else(
                |_| "kmalloc-?".to_string(),
                |s| s.name().as_str().to_string(),
            ),
            RowKey::Large(order) => format!("kmalloc-large (order {order})"),
            RowKey::Vmalloc => "vmalloc".to_string(),
        };
        self.new_row(key, name)
    }

    pub(super) fn compare_size(&mut self, cache: bool, a: &SlabAlloc, kmemlab: u64) {
        let agreed = kmemlab == a.bytes_alloc;
        if cache {
            self.fidelity.cache_checked += 1;
            self.fidelity.cache_agreed += agreed as u64;
        } else {
            self.fidelity.kmalloc_checked += 1;
            self.fidelity.kmalloc_agreed += agreed as u64;
        }
        if !agreed {
            *self
                .mismatches
                .entry((cache, a.bytes_req, a.bytes_alloc, kmemlab))
                .or_insert(0) += 1;
        }
    }
}

/// A name for a cache the trace does not name: the call site and the object size.
pub(super) fn cache_label(key: CacheKey, symbols: &Symbols) -> String {
    match key {
        CacheKey::Named(name, _) => symbols.name(name).chars().take(24).collect(),
        CacheKey::Site(CallSite::Addr(a), size) => format!("{a:x}-{size}"),
        CacheKey::Site(CallSite::Symbol(id), size) => {
            let func = symbols.name(id).split('+').next().unwrap_or("site");
            let func: String = func.chars().take(20).collect();
            format!("{func}-{size}")
        }
    }
}

/// Why a replayed `kmalloc` or `kvmalloc` failed: kmalloc's error, or vmalloc's after
/// kmalloc failed.
#[derive(Debug)]
pub(super) enum KvmallocError {
    Kmalloc(SlabError),
    Vmalloc(VmallocError),
    /// A kvmalloc refusal of neither allocator (bad arguments).
    Other(util::KvmallocError),
}

impl std::fmt::Display for KvmallocError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            KvmallocError::Kmalloc(e) => e.fmt(f),
            KvmallocError::Vmalloc(e) => write!(f, "kvmalloc's vmalloc fallback: {e}"),
            KvmallocError::Other(e) => e.fmt(f),
        }
    }
}

/// The flags a traced kmalloc is replayed with: the traced ones, and `__GFP_ACCOUNT` when
/// the line says `accounted=true` (Linux 6.6's `kmalloc` tracepoint prints it for a
/// `__GFP_ACCOUNT` request), so that `kmalloc_type()` serves it from `kmalloc-cg-*` as
/// the traced kernel did, whatever the flags string kept.
pub(super) fn kmalloc_gfp(a: &SlabAlloc) -> Gfp {
    if a.accounted == Some(true) {
        a.gfp | Gfp::__GFP_ACCOUNT
    } else {
        a.gfp
    }
}

/// `kvmalloc(size, gfp)`: the kernel's own (`Mm::kvmalloc`, `util.rs`), its error
/// folded into the replay's.
pub(super) fn kvmalloc(
    mm: &Mm<SimPlatform>,
    size: usize,
    gfp: Gfp,
) -> Result<VirtAddr, KvmallocError> {
    mm.kvmalloc(size, gfp).map_err(KvmallocError::from)
}

/// `kvfree(addr)`: `vfree` for a vmalloc address, `kfree` otherwise (`is_vmalloc_addr`).
pub(super) fn kvfree(mm: &Mm<SimPlatform>, addr: VirtAddr) -> Result<(), KvmallocError> {
    mm.kvfree(addr).map_err(KvmallocError::from)
}

impl From<util::KvmallocError> for KvmallocError {
    /// kmalloc's error when kmalloc had the last word, vmalloc's when the fallback did.
    fn from(e: util::KvmallocError) -> Self {
        use util::KvmallocError as K;
        match e {
            K::Kmalloc { error, .. } | K::NoFallback { kmalloc: error, .. } => {
                KvmallocError::Kmalloc(error)
            }
            K::Krealloc(error) | K::Kfree(error) => KvmallocError::Kmalloc(error),
            K::Vmalloc { vmalloc, .. } => KvmallocError::Vmalloc(vmalloc),
            K::Vrealloc(error) | K::Vfree(error) => KvmallocError::Vmalloc(error),
            K::TooLarge { size } => KvmallocError::Kmalloc(SlabError::TooLarge(size)),
            other => KvmallocError::Other(other),
        }
    }
}

/// An allocation error that may be the `might_sleep` refusal.
pub(super) trait SleepRefusal {
    fn is_sleep_in_atomic(&self) -> bool;
}

impl SleepRefusal for SlabError {
    fn is_sleep_in_atomic(&self) -> bool {
        matches!(self, SlabError::Alloc(PageAllocError::SleepInAtomic(_)))
    }
}

impl SleepRefusal for KvmallocError {
    fn is_sleep_in_atomic(&self) -> bool {
        match self {
            KvmallocError::Kmalloc(e) => e.is_sleep_in_atomic(),
            KvmallocError::Vmalloc(e) => matches!(e, VmallocError::SleepInAtomic(_)),
            KvmallocError::Other(_) => false,
        }
    }
}

impl SleepRefusal for PageAllocError {
    fn is_sleep_in_atomic(&self) -> bool {
        matches!(self, PageAllocError::SleepInAtomic(_))
    }
}
