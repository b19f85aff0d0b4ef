//! Per-CPU TLBs (set-associative L1 arrays and the L2 STLB, LRU within a set), [`Mmu`]
//! and the kernel's shootdown (`flush_tlb_kernel_range`, `arch/x86/mm/tlb.c`, Linux 6.6).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard};

use kmemlab_mm::arch::pgtable::PagingMode;
use kmemlab_mm::{PhysAddr, Profile, VirtAddr, PAGE_SIZE};

use super::walk::{walk, FaultReason, PtMemory, Source, Translation};

/// `tlb_single_page_flush_ceiling`: a kernel range flush of more pages than this flushes
/// the whole TLB instead of invalidating page by page.
pub const TLB_SINGLE_PAGE_FLUSH_CEILING: u64 = 33;
/// `TLB_FLUSH_ALL`: an end address meaning "everything".
pub const TLB_FLUSH_ALL: u64 = u64::MAX;

/// L1 DTLB for 4 KiB pages: entries and ways.
pub const L1_4K: (usize, usize) = (64, 4);
/// L1 DTLB for 2 MiB (x86_64) or 4 MiB (i386) pages: entries and ways.
pub const L1_LARGE: (usize, usize) = (32, 4);
/// L1 DTLB for 1 GiB pages: entries and ways (fully associative).
pub const L1_1G: (usize, usize) = (4, 4);
/// The unified L2 STLB (4 KiB and 2 MiB / 4 MiB pages): entries and ways.
pub const L2_STLB: (usize, usize) = (1536, 12);

/// Per-CPU TLB counters.
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct TlbStats {
    /// Translations found in the L1 DTLB.
    pub l1_hits: u64,
    /// Translations found in the L2 STLB (after an L1 miss).
    pub l2_hits: u64,
    /// Misses in both levels: page walks.
    pub misses: u64,
    /// Valid entries removed by flushes.
    pub entries_flushed: u64,
    /// Whole-TLB flushes, global entries included.
    pub full_flushes: u64,
    /// Single-page invalidations (`INVLPG`).
    pub single_page_flushes: u64,
}

impl std::ops::AddAssign for TlbStats {
    fn add_assign(&mut self, o: TlbStats) {
        self.l1_hits += o.l1_hits;
        self.l2_hits += o.l2_hits;
        self.misses += o.misses;
        self.entries_flushed += o.entries_flushed;
        self.full_flushes += o.full_flushes;
        self.single_page_flushes += o.single_page_flushes;
    }
}

/// Machine-wide TLB shootdown counters (`flush_tlb_kernel_range` calls).
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct TlbFlushStats {
    /// Calls of `flush_tlb_kernel_range`: one shootdown each, on every CPU.
    pub shootdowns: u64,
    /// Inter-processor interrupts sent: `nr_cpus - 1` per shootdown.
    pub ipis: u64,
    /// Shootdowns that flushed everything (more than the ceiling's 33 pages).
    pub full_flushes: u64,
    /// Pages invalidated one by one by the other shootdowns (counted once per shootdown,
    /// not once per CPU).
    pub pages_invalidated: u64,
}

/// A TLB entry found by [`Mmu::tlb_probe`].
#[derive(Copy, Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct TlbProbe {
    /// `"L1"` or `"L2"`.
    pub level: &'static str,
    /// The physical address of the page it maps (possibly stale).
    pub frame: u64,
    /// The page size of the entry.
    pub page_size: u64,
    /// Whether it allows writes.
    pub writable: bool,
}

/// Valid entries and capacity of one CPU's TLB arrays.
#[derive(Copy, Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct TlbOccupancy {
    /// L1 for 4 KiB pages.
    pub l1_4k: (usize, usize),
    /// L1 for large (2 MiB / 4 MiB) pages.
    pub l1_large: (usize, usize),
    /// L1 for 1 GiB pages.
    pub l1_1g: (usize, usize),
    /// The shared second-level TLB.
    pub l2: (usize, usize),
}

/// One cached translation.
#[derive(Copy, Clone, Debug)]
struct TlbEntry {
    /// The virtual page number at this entry's page size.
    vpn: u64,
    /// log2 of the page size.
    shift: u32,
    /// The leaf entry (frame and bits).
    entry: u64,
    /// The physical address of the page.
    frame: u64,
    writable: bool,
    /// Last use, for LRU.
    stamp: u64,
}

/// A set-associative array of entries for the page sizes in `shifts`.
struct SetAssoc {
    sets: usize,
    ways: usize,
    shifts: Vec<u32>,
    slots: Vec<Option<TlbEntry>>,
}

impl SetAssoc {
    fn new((entries, ways): (usize, usize), shifts: &[u32]) -> Self {
        SetAssoc {
            sets: (entries / ways).max(1),
            ways,
            shifts: shifts.to_vec(),
            slots: vec![None; entries],
        }
    }

    fn set(&mut self, vpn: u64) -> &mut [Option<TlbEntry>] {
        let s = (vpn % self.sets as u64) as usize;
        &mut self.slots[s * self.ways..(s + 1) * self.ways]
    }

    fn holds(&self, shift: u32) -> bool {
        self.shifts.contains(&shift)
    }

    /// Look `va` up at every page size this array holds; a hit becomes most recent.
    fn lookup(&mut self, va: u64, stamp: u64) -> Option<TlbEntry> {
        for i in 0..self.shifts.len() {
            let shift = self.shifts[i];
            let vpn = va >> shift;
            for e in self.set(vpn).iter_mut().flatten() {
                if e.shift == shift && e.vpn == vpn {
                    e.stamp = stamp;
                    return Some(*e);
                }
            }
        }
        None
    }

    /// Insert, replacing the same page's entry, else a free way, else the least recent.
    fn insert(&mut self, new: TlbEntry) {
        let set = self.set(new.vpn);
        let slot = set
            .iter()
            .position(|s| s.is_some_and(|e| e.shift == new.shift && e.vpn == new.vpn))
            .or_else(|| set.iter().position(Option::is_none))
            .unwrap_or_else(|| {
                set.iter()
                    .enumerate()
                    .min_by_key(|(_, s)| s.map_or(0, |e| e.stamp))
                    .map_or(0, |(i, _)| i)
            });
        set[slot] = Some(new);
    }

    /// `INVLPG va`: drop every entry, of any size, that maps `va`. Returns how many.
    fn invalidate(&mut self, va: u64) -> u64 {
        let mut n = 0;
        for i in 0..self.shifts.len() {
            let shift = self.shifts[i];
            let vpn = va >> shift;
            for s in self.set(vpn).iter_mut() {
                if s.is_some_and(|e| e.shift == shift && e.vpn == vpn) {
                    *s = None;
                    n += 1;
                }
            }
        }
        n
    }

    /// Look `va` up without making the hit most recent (for views: a look changes nothing).
    fn peek(&self, va: u64) -> Option<TlbEntry> {
        self.shifts.iter().find_map(|&shift| {
            let vpn = va >> shift;
            let s = (vpn % self.sets as u64) as usize;
            self.slots[s * self.ways..(s + 1) * self.ways]
                .iter()
                .flatten()
                .find(|e| e.shift == shift && e.vpn == vpn)
                .copied()
        })
    }

    /// Valid entries and capacity.
    fn occupancy(&self) -> (usize, usize) {
        (
            self.slots.iter().filter(|s| s.is_some()).count(),
            self.slots.len(),
        )
    }

    fn clear(&mut self) -> u64 {
        let n = self.slots.iter().filter(|s| s.is_some()).count() as u64;
        self.slots.iter_mut().for_each(|s| *s = None);
        n
    }
}

/// One CPU's TLBs and counters.
struct CpuTlb {
    l1_4k: SetAssoc,
    l1_large: SetAssoc,
    l1_1g: SetAssoc,
    l2: SetAssoc,
    clock: u64,
    stats: TlbStats,
}

impl CpuTlb {
    fn new(large_shift: u32) -> Self {
        CpuTlb {
            l1_4k: SetAssoc::new(L1_4K, &[12]),
            l1_large: SetAssoc::new(L1_LARGE, &[large_shift]),
            l1_1g: SetAssoc::new(L1_1G, &[30]),
            l2: SetAssoc::new(L2_STLB, &[12, large_shift]),
            clock: 0,
            stats: TlbStats::default(),
        }
    }

    fn l1_for(&mut self, shift: u32) -> Option<&mut SetAssoc> {
        [&mut self.l1_4k, &mut self.l1_large, &mut self.l1_1g]
            .into_iter()
            .find(|a| a.holds(shift))
    }

    /// Probe L1, then L2 (filling L1 on an L2 hit); counts hits, not misses.
    fn lookup(&mut self, va: u64) -> Option<(TlbEntry, Source)> {
        self.clock += 1;
        let stamp = self.clock;
        for a in [&mut self.l1_4k, &mut self.l1_large, &mut self.l1_1g] {
            if let Some(e) = a.lookup(va, stamp) {
                self.stats.l1_hits += 1;
                return Some((e, Source::L1Tlb));
            }
        }
        let e = self.l2.lookup(va, stamp)?;
        self.stats.l2_hits += 1;
        if let Some(l1) = self.l1_for(e.shift) {
            l1.insert(e);
        }
        Some((e, Source::L2Tlb))
    }

    /// Cache a walk's translation in L1 and (but for 1 GiB pages) in L2.
    fn fill(&mut self, t: &Translation) {
        let shift = t.page_size.trailing_zeros();
        let e = TlbEntry {
            vpn: t.vaddr.0 >> shift,
            shift,
            entry: t.entry,
            frame: t.page_phys().0,
            writable: t.writable,
            stamp: self.clock,
        };
        if let Some(l1) = self.l1_for(shift) {
            l1.insert(e);
        }
        if self.l2.holds(shift) {
            self.l2.insert(e);
        }
    }

    fn invlpg(&mut self, va: u64) {
        let mut n = 0;
        for a in [
            &mut self.l1_4k,
            &mut self.l1_large,
            &mut self.l1_1g,
            &mut self.l2,
        ] {
            n += a.invalidate(va);
        }
        self.stats.single_page_flushes += 1;
        self.stats.entries_flushed += n;
    }

    fn flush_all(&mut self) {
        let mut n = 0;
        for a in [
            &mut self.l1_4k,
            &mut self.l1_large,
            &mut self.l1_1g,
            &mut self.l2,
        ] {
            n += a.clear();
        }
        self.stats.full_flushes += 1;
        self.stats.entries_flushed += n;
    }
}

/// The machine's MMU state: one TLB per CPU (each behind a lock, since shootdowns come
/// from other host threads) and the shootdown and fault counters.
pub struct Mmu {
    cpus: Vec<Mutex<CpuTlb>>,
    shootdowns: AtomicU64,
    ipis: AtomicU64,
    full_flushes: AtomicU64,
    pages_invalidated: AtomicU64,
    pub(super) faults: AtomicU64,
    pub(super) die_counter: AtomicU64,
}

/// How a CPU touched memory.
#[derive(Copy, Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub enum Access {
    /// A load.
    Read,
    /// A store.
    Write,
}

impl Mmu {
    /// TLBs for `nr_cpus` CPUs of `profile` (2 MiB large pages on x86_64, 4 MiB on i386).
    pub fn new(nr_cpus: usize, profile: Profile) -> Mmu {
        let large_shift = match profile {
            Profile::X86_64 => 21,
            Profile::I386 => 22,
        };
        Mmu {
            cpus: (0..nr_cpus)
                .map(|_| Mutex::new(CpuTlb::new(large_shift)))
                .collect(),
            shootdowns: AtomicU64::new(0),
            ipis: AtomicU64::new(0),
            full_flushes: AtomicU64::new(0),
            pages_invalidated: AtomicU64::new(0),
            faults: AtomicU64::new(0),
            die_counter: AtomicU64::new(0),
        }
    }

    fn tlb(&self, cpu: usize) -> Option<MutexGuard<'_, CpuTlb>> {
        // A poisoned lock only means a panic elsewhere; the TLB itself is still consistent
        // (every update is a whole-entry store).
        self.cpus
            .get(cpu)
            .map(|m| m.lock().unwrap_or_else(|e| e.into_inner()))
    }

    /// Whether `cpu`'s TLBs hold a translation of `va`, and where (L1 first, then L2),
    /// without touching the LRU order or the counters: a look for a view changes nothing.
    pub fn tlb_probe(&self, cpu: usize, va: VirtAddr) -> Option<TlbProbe> {
        let tlb = self.tlb(cpu)?;
        let l1 = [&tlb.l1_4k, &tlb.l1_large, &tlb.l1_1g]
            .into_iter()
            .find_map(|a| a.peek(va.0))
            .map(|e| (e, "L1"));
        let (e, level) = l1.or_else(|| tlb.l2.peek(va.0).map(|e| (e, "L2")))?;
        Some(TlbProbe {
            level,
            frame: e.frame,
            page_size: 1u64 << e.shift,
            writable: e.writable,
        })
    }

    /// How full `cpu`'s TLBs are: valid entries and capacity of L1 (4 KiB, large, 1 GiB)
    /// and L2.
    pub fn tlb_occupancy(&self, cpu: usize) -> Option<TlbOccupancy> {
        let tlb = self.tlb(cpu)?;
        Some(TlbOccupancy {
            l1_4k: tlb.l1_4k.occupancy(),
            l1_large: tlb.l1_large.occupancy(),
            l1_1g: tlb.l1_1g.occupancy(),
            l2: tlb.l2.occupancy(),
        })
    }

    /// Translate `va` for an `access` by `cpu`: its TLB first, then a walk of the tables
    /// from `pgd` (cached on success). A write through a read-only translation faults and
    /// drops that translation, as the hardware does on a fault.
    pub fn translate(
        &self,
        cpu: usize,
        mem: &impl PtMemory,
        mode: &PagingMode,
        pgd: PhysAddr,
        va: VirtAddr,
        access: Access,
    ) -> Result<Translation, FaultReason> {
        let Some(mut tlb) = self.tlb(cpu) else {
            // No such CPU: translate without a TLB.
            return walk(mem, mode, pgd, va).result;
        };
        if let Some((e, source)) = tlb.lookup(va.0) {
            let size = 1u64 << e.shift;
            if access == Access::Write && !e.writable {
                tlb.invlpg(va.0);
                return Err(FaultReason::ReadOnly);
            }
            return Ok(Translation {
                vaddr: va,
                phys: PhysAddr(e.frame | (va.0 & (size - 1))),
                page_size: size,
                entry: e.entry,
                writable: e.writable,
                source,
            });
        }
        tlb.stats.misses += 1;
        let t = walk(mem, mode, pgd, va).result?;
        if access == Access::Write && !t.writable {
            return Err(FaultReason::ReadOnly);
        }
        tlb.fill(&t);
        Ok(t)
    }

    /// `flush_tlb_kernel_range(start, end)` (`arch/x86/mm/tlb.c`): on every CPU, a full
    /// flush (`do_flush_tlb_all`) if the range is `TLB_FLUSH_ALL` or more than
    /// [`TLB_SINGLE_PAGE_FLUSH_CEILING`] pages, else one `INVLPG` per page
    /// (`do_kernel_range_flush`). One shootdown, `nr_cpus - 1` IPIs (`on_each_cpu`
    /// runs the local CPU's part directly).
    pub fn flush_tlb_kernel_range(&self, start: u64, end: u64) {
        self.shootdowns.fetch_add(1, Ordering::Relaxed);
        self.ipis
            .fetch_add(self.cpus.len().saturating_sub(1) as u64, Ordering::Relaxed);
        let page = PAGE_SIZE as u64;
        let full = end == TLB_FLUSH_ALL
            || end.saturating_sub(start) > TLB_SINGLE_PAGE_FLUSH_CEILING * page;
        if full {
            self.full_flushes.fetch_add(1, Ordering::Relaxed);
            for cpu in 0..self.cpus.len() {
                if let Some(mut t) = self.tlb(cpu) {
                    t.flush_all();
                }
            }
            return;
        }
        let mut pages = 0;
        for cpu in 0..self.cpus.len() {
            if let Some(mut t) = self.tlb(cpu) {
                let mut addr = start;
                pages = 0;
                while addr < end {
                    t.invlpg(addr);
                    pages += 1;
                    addr = match addr.checked_add(page) {
                        Some(a) => a,
                        None => break,
                    };
                }
            }
        }
        self.pages_invalidated.fetch_add(pages, Ordering::Relaxed);
    }

    /// `__flush_tlb_all()` on one CPU.
    pub fn flush_all(&self, cpu: usize) {
        if let Some(mut t) = self.tlb(cpu) {
            t.flush_all();
        }
    }

    /// `INVLPG va` on one CPU.
    pub fn invlpg(&self, cpu: usize, va: VirtAddr) {
        if let Some(mut t) = self.tlb(cpu) {
            t.invlpg(va.0);
        }
    }

    /// `cpu`'s TLB counters (zero for a CPU that does not exist).
    pub fn stats(&self, cpu: usize) -> TlbStats {
        self.tlb(cpu).map(|t| t.stats).unwrap_or_default()
    }

    /// The TLB counters summed over all CPUs.
    pub fn stats_total(&self) -> TlbStats {
        let mut sum = TlbStats::default();
        for cpu in 0..self.cpus.len() {
            sum += self.stats(cpu);
        }
        sum
    }

    /// The shootdown counters.
    pub fn flush_stats(&self) -> TlbFlushStats {
        TlbFlushStats {
            shootdowns: self.shootdowns.load(Ordering::Relaxed),
            ipis: self.ipis.load(Ordering::Relaxed),
            full_flushes: self.full_flushes.load(Ordering::Relaxed),
            pages_invalidated: self.pages_invalidated.load(Ordering::Relaxed),
        }
    }

    /// Faults reported so far.
    pub fn faults(&self) -> u64 {
        self.faults.load(Ordering::Relaxed)
    }
}
