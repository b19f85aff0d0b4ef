//! Simulated physical memory: one anonymous host mapping covering the whole physical
//! address space, reserved with `MAP_NORESERVE` so that the host backs a page only when
//! the simulated machine first writes it. A 64 GiB machine costs the host only what its
//! kernel touches.

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::sync::OnceLock;

use kmemlab_mm::{MemoryRegion, PhysAddr};

/// The simulated machine's page size, the unit of [`Ram::known_zero`]'s map.
const PAGE: u64 = kmemlab_mm::PAGE_SIZE as u64;
/// A `/proc/self/pagemap` entry's "page present" bit (Linux's `PM_PRESENT`,
/// `fs/proc/task_mmu.c`).
const PM_PRESENT: u64 = 1 << 63;
/// A `/proc/self/pagemap` entry's "swapped out" bit (`PM_SWAP`).
const PM_SWAP: u64 = 1 << 62;

/// The highest physical address a machine may reach: its RAM and the holes below the
/// end of that RAM fit under 512 GiB, twice [`crate::machine::MAX_RAM`], which is also
/// where the kernel's section table ends (`kmemlab_mm::memory_model::MAX_MEM_SECTIONS`).
/// Only sections with RAM get `struct page`s, so a hole of whole sections costs no host
/// memory.
pub const MAX_PHYS_SPAN: u64 = 512 << 30;

/// A range of physical addresses with no RAM behind it.
#[derive(Copy, Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Hole {
    /// First byte (a `"0x…"` string in JSON).
    #[serde(serialize_with = "hex")]
    pub start: u64,
    /// One past the last byte (a `"0x…"` string in JSON).
    #[serde(serialize_with = "hex")]
    pub end: u64,
}

/// An address as a `"0x…"` string, which JSON readers keep exact (a number above 2^53
/// they would round).
fn hex<S: serde::Serializer>(a: &u64, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&format!("{a:#x}"))
}

impl core::fmt::Display for Hole {
    /// `START-END` as sizes, the way `--hole` takes it: `640K-1M`.
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(
            f,
            "{}-{}",
            crate::format_size(self.start),
            crate::format_size(self.end)
        )
    }
}

impl Hole {
    /// The legacy ISA hole: VGA memory and BIOS ROMs, 640 KiB to 1 MiB.
    pub const LEGACY: Hole = Hole {
        start: 640 << 10,
        end: 1 << 20,
    };
    /// The PCI hole below 4 GiB, where device BARs live (firmware moves the RAM that would
    /// be there above 4 GiB).
    pub const PCI: Hole = Hole {
        start: 3 << 30,
        end: 4 << 30,
    };
}

/// Why RAM could not be set up.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RamError {
    /// The host refused the mapping.
    MapFailed(u64, String),
    /// A hole that ends where it starts, or before.
    EmptyHole(Hole),
    /// Two holes share addresses.
    HolesOverlap(Hole, Hole),
    /// A hole that ends above [`MAX_PHYS_SPAN`].
    HoleBeyondLimit(Hole),
    /// RAM placed around the holes would end above [`MAX_PHYS_SPAN`].
    SpanTooLarge {
        /// Bytes of RAM.
        size: u64,
        /// Where the RAM would end (past `u64` for absurd sizes).
        end: u128,
    },
}

impl core::fmt::Display for RamError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        let limit = crate::format_size(MAX_PHYS_SPAN);
        match self {
            RamError::MapFailed(n, why) => write!(
                f,
                "cannot map {} of simulated RAM: {why}",
                crate::format_size(*n)
            ),
            RamError::EmptyHole(h) => write!(f, "hole {h} is empty"),
            RamError::HolesOverlap(a, b) => write!(
                f,
                "holes {a} and {b} overlap (the legacy hole 640K-1M is there unless left out, the PCI hole 3G-4G when asked for)"
            ),
            RamError::HoleBeyondLimit(h) => write!(
                f,
                "hole {h} ends above {limit}, the highest physical address kmemlab simulates"
            ),
            RamError::SpanTooLarge { size, end } => write!(
                f,
                "{} of RAM placed around the holes would end at {} GiB, above {limit}, the highest physical address kmemlab simulates",
                crate::format_size(*size),
                end.div_ceil(1 << 30)
            ),
        }
    }
}

impl std::error::Error for RamError {}

/// The RAM of a machine and its firmware memory map.
pub struct Ram {
    base: *mut u8,
    span: u64,
    map: Vec<MemoryRegion>,
    /// `/proc/self/pagemap`, opened at the first [`Ram::known_zero`] with the id of the
    /// process that opened it (the file shows that process's page tables); `None` where
    /// the host has none, refuses it, or gives entries that fail [`pagemap_works`].
    pagemap: OnceLock<Option<(u32, File)>>,
}

// SAFETY: `Ram` is a plain block of host memory; who may touch which bytes when is the
// kernel's business (the `Platform` contract), not the container's.
unsafe impl Send for Ram {}
// SAFETY: as above.
unsafe impl Sync for Ram {}

impl Ram {
    /// Lay out `size` bytes of RAM from physical address 0, skipping the holes (so the
    /// machine has exactly `size` bytes of RAM), and map the whole span lazily. The holes
    /// are checked first ([`layout`]): none empty, none overlapping, and everything below
    /// [`MAX_PHYS_SPAN`].
    pub fn new(size: u64, holes: &[Hole]) -> Result<Ram, RamError> {
        let map = layout(size, holes)?;
        let span = map.last().map_or(0, |r| r.end.0);
        // SAFETY: an anonymous private mapping with no address hint has no preconditions;
        // the result is checked for MAP_FAILED below.
        let base = unsafe {
            libc::mmap(
                core::ptr::null_mut(),
                span as usize,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE,
                -1,
                0,
            )
        };
        if base == libc::MAP_FAILED {
            return Err(RamError::MapFailed(
                span,
                std::io::Error::last_os_error().to_string(),
            ));
        }
        // No transparent huge pages, whatever the host's default (`always` on many
        // distributions): one write would back 2 MiB, so a big machine's sparse `mem_map`
        // would cost the host its whole size, and a read would map the huge zero page,
        // hiding from `known_zero` which pages were written. A host that refuses keeps
        // its default: only memory and speed are at stake, not what RAM holds.
        // SAFETY: advice on the whole mapping just made; it changes no contents.
        unsafe { libc::madvise(base, span as usize, libc::MADV_NOHUGEPAGE) };
        Ok(Ram {
            base: base as *mut u8,
            span,
            map,
            pagemap: OnceLock::new(),
        })
    }

    /// The host address of physical address 0.
    pub fn base(&self) -> *mut u8 {
        self.base
    }

    /// One past the highest physical address of RAM.
    pub fn span(&self) -> u64 {
        self.span
    }

    /// The usable ranges (the e820 "usable" entries).
    pub fn map(&self) -> &[MemoryRegion] {
        &self.map
    }

    /// Bytes of RAM.
    pub fn size(&self) -> u64 {
        self.map.iter().map(|r| r.end.0 - r.start.0).sum()
    }

    /// Is `[addr, addr + len)` inside one RAM range?
    pub fn contains(&self, addr: u64, len: u64) -> bool {
        self.map
            .iter()
            .any(|r| r.start.0 <= addr && addr.saturating_add(len) <= r.end.0)
    }

    /// Hand the host pages of `[addr, addr + len)` back to the host
    /// (`madvise(MADV_DONTNEED)`): afterwards they read as zero and are backed again only
    /// when written, as never-touched RAM is. `false`, and nothing done, if the range is
    /// not all RAM or not aligned to the host's page size, or the host refuses.
    pub fn discard(&self, addr: u64, len: u64) -> bool {
        let host_page = host_page_size();
        let aligned = |x: u64| host_page > 0 && x.is_multiple_of(host_page);
        if len == 0 || !aligned(addr) || !aligned(len) || !self.contains(addr, len) {
            return false;
        }
        // SAFETY: the range is whole host pages inside this private anonymous mapping
        // (checked above), so MADV_DONTNEED only replaces their contents with zeroes; the
        // kernel side calls this at boot, when no other thread uses the range.
        unsafe {
            libc::madvise(
                self.base.add(addr as usize).cast(),
                len as usize,
                libc::MADV_DONTNEED,
            ) == 0
        }
    }

    /// Mark in `map` the pages from `addr` that read as zero because the host does not
    /// back them: bit `i % 64` of `map[i / 64]` for the page at `addr + i * PAGE`, set
    /// when its host page is neither present nor swapped out in the host's page tables
    /// (`/proc/self/pagemap`). A page of this private anonymous mapping is in that state
    /// until first touched, and again after [`Ram::discard`]. A page that was only read is
    /// present (the host maps its zero page), so it is not marked: a clear bit says only
    /// "not known". Returns how many pages the map covers, up to the end of `addr`'s RAM
    /// range; 0 if `addr` is not page-aligned RAM or the host gives no page map.
    pub fn known_zero(&self, addr: u64, map: &mut [u64]) -> u64 {
        let host_page = host_page_size();
        let Some(range) = self
            .map
            .iter()
            .find(|r| r.start.0 <= addr && addr < r.end.0)
        else {
            return 0;
        };
        let pages = ((range.end.0 - addr) / PAGE).min(64 * map.len() as u64);
        if pages == 0
            || !addr.is_multiple_of(PAGE)
            || host_page == 0
            || !host_page.is_multiple_of(PAGE)
        {
            return 0;
        }
        let Some(pagemap) = self.pagemap() else {
            return 0;
        };
        let host_index = |i: u64| (self.base as u64 + addr + i * PAGE) / host_page;
        let first = host_index(0);
        let mut entries = vec![0u8; ((host_index(pages - 1) - first + 1) * 8) as usize];
        if pagemap.read_exact_at(&mut entries, first * 8).is_err() {
            return 0;
        }
        let entry = |i: u64| {
            let at = ((host_index(i) - first) * 8) as usize;
            entries[at..at + 8]
                .try_into()
                .map_or(PM_PRESENT, u64::from_ne_bytes)
        };
        map.fill(0);
        for i in 0..pages {
            if entry(i) & (PM_PRESENT | PM_SWAP) == 0 {
                map[(i / 64) as usize] |= 1 << (i % 64);
            }
        }
        pages
    }

    /// Whether [`Ram::known_zero`] can tell anything on this host (Linux gives a process
    /// its page map; a host without one, or a sandbox that hides it, makes every answer
    /// "not known", and the checker reads what it would have skipped).
    pub fn knows_unbacked_pages(&self) -> bool {
        self.pagemap().is_some()
    }

    /// `/proc/self/pagemap` for [`Ram::known_zero`], opened once; `None` in another
    /// process than the one that opened it (a child forked without `exec` shares the
    /// mapping's pages copy-on-write, and the file would show the parent's tables).
    fn pagemap(&self) -> Option<&File> {
        let (pid, file) = self
            .pagemap
            .get_or_init(|| {
                let file = File::open("/proc/self/pagemap").ok()?;
                pagemap_works(&file).then(|| (std::process::id(), file))
            })
            .as_ref()?;
        (*pid == std::process::id()).then_some(file)
    }

    /// Copy bytes out of physical memory; `None` if the range is not all RAM.
    pub fn read(&self, addr: u64, buf: &mut [u8]) -> Option<()> {
        if !self.contains(addr, buf.len() as u64) {
            return None;
        }
        // SAFETY: the range is inside the mapping (checked above); reads of plain bytes.
        unsafe {
            core::ptr::copy_nonoverlapping(
                self.base.add(addr as usize),
                buf.as_mut_ptr(),
                buf.len(),
            )
        };
        Some(())
    }

    /// Copy bytes into physical memory; `None` if the range is not all RAM.
    pub fn write(&self, addr: u64, bytes: &[u8]) -> Option<()> {
        if !self.contains(addr, bytes.len() as u64) {
            return None;
        }
        // SAFETY: the range is inside the mapping (checked above).
        unsafe {
            core::ptr::copy_nonoverlapping(
                bytes.as_ptr(),
                self.base.add(addr as usize),
                bytes.len(),
            )
        };
        Some(())
    }
}

impl Drop for Ram {
    fn drop(&mut self) {
        // SAFETY: `base`/`span` are exactly the mapping made in `new`, unmapped once.
        unsafe { libc::munmap(self.base as *mut libc::c_void, self.span as usize) };
    }
}

/// Whether `pagemap` tells pages apart as Linux does: the page holding a value just
/// written on this thread's stack must show as present. An emulator or sandbox that
/// answers every entry with no flags would otherwise have every page taken for unwritten.
fn pagemap_works(pagemap: &File) -> bool {
    let host_page = host_page_size();
    let probe = std::hint::black_box([1u8; 64]);
    let Some(index) = (probe.as_ptr() as u64).checked_div(host_page) else {
        return false;
    };
    let mut entry = [0u8; 8];
    pagemap.read_exact_at(&mut entry, index * 8).is_ok()
        && u64::from_ne_bytes(entry) & PM_PRESENT != 0
}

/// The host's page size in bytes (0 if it will not say).
fn host_page_size() -> u64 {
    // SAFETY: sysconf has no preconditions.
    let size = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    u64::try_from(size).unwrap_or(0)
}

/// Place `size` bytes of RAM from address 0 upward around the holes: the firmware's
/// memory map. Refused before anything is placed: an empty hole, two holes that overlap,
/// a hole ending above [`MAX_PHYS_SPAN`], or RAM that would end above it.
pub fn layout(size: u64, holes: &[Hole]) -> Result<Vec<MemoryRegion>, RamError> {
    let holes = checked_holes(holes)?;
    let mut map = Vec::new();
    let (mut cursor, mut left) = (0u64, size);
    for hole in holes {
        if left == 0 {
            break;
        }
        if hole.start > cursor {
            let take = left.min(hole.start - cursor);
            map.push(region(cursor, cursor + take));
            left -= take;
        }
        if left > 0 {
            cursor = hole.end;
        }
    }
    if left > 0 {
        // Holes are sorted and disjoint, and all end at or below MAX_PHYS_SPAN.
        let end = u128::from(cursor) + u128::from(left);
        if end > u128::from(MAX_PHYS_SPAN) {
            return Err(RamError::SpanTooLarge { size, end });
        }
        map.push(region(cursor, cursor + left));
    }
    Ok(map)
}

/// The holes sorted by address, each checked: not empty, below [`MAX_PHYS_SPAN`], and
/// sharing no address with another.
fn checked_holes(holes: &[Hole]) -> Result<Vec<Hole>, RamError> {
    let mut sorted = holes.to_vec();
    sorted.sort_by_key(|h| (h.start, h.end));
    for h in &sorted {
        if h.end <= h.start {
            return Err(RamError::EmptyHole(*h));
        }
        if h.end > MAX_PHYS_SPAN {
            return Err(RamError::HoleBeyondLimit(*h));
        }
    }
    if let Some(pair) = sorted.windows(2).find(|w| w[1].start < w[0].end) {
        return Err(RamError::HolesOverlap(pair[0], pair[1]));
    }
    Ok(sorted)
}

fn region(start: u64, end: u64) -> MemoryRegion {
    MemoryRegion {
        start: PhysAddr(start),
        end: PhysAddr(end),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layout_skips_holes_and_keeps_the_size() {
        let map = layout(8 << 30, &[Hole::LEGACY, Hole::PCI]).unwrap();
        let total: u64 = map.iter().map(|r| r.end.0 - r.start.0).sum();
        assert_eq!(total, 8 << 30);
        assert_eq!(map[0].end.0, 640 << 10);
        assert_eq!(map[1].start.0, 1 << 20);
        assert_eq!(map[1].end.0, 3 << 30);
        assert_eq!(map[2].start.0, 4 << 30);
    }

    #[test]
    fn big_machine_is_lazy_and_readable() {
        let ram = Ram::new(64 << 30, &[]).expect("64 GiB NORESERVE mapping");
        let mut buf = [1u8; 8];
        ram.read(60 << 30, &mut buf).unwrap();
        assert_eq!(buf, [0; 8]);
        ram.write(60 << 30, b"kmemlab!").unwrap();
        ram.read(60 << 30, &mut buf).unwrap();
        assert_eq!(&buf, b"kmemlab!");
        assert!(ram.read((64 << 30) - 4, &mut buf).is_none());
    }

    #[test]
    fn discarded_pages_read_as_zero_and_only_whole_ram_pages_are_discarded() {
        let ram = Ram::new(16 << 20, &[Hole::LEGACY]).unwrap();
        let page = 4096;
        for at in [2 << 20, (2 << 20) + page] {
            ram.write(at, b"kmemlab!").unwrap();
        }
        assert!(ram.discard(2 << 20, page));
        let mut buf = [1u8; 8];
        ram.read(2 << 20, &mut buf).unwrap();
        assert_eq!(buf, [0; 8], "the discarded page reads as zero");
        ram.read((2 << 20) + page, &mut buf).unwrap();
        assert_eq!(&buf, b"kmemlab!", "the next page is kept");
        // Refused, and nothing done: unaligned, empty, over the legacy hole, past the end.
        assert!(!ram.discard((2 << 20) + page + 8, page));
        assert!(!ram.discard((2 << 20) + page, 100));
        assert!(!ram.discard(2 << 20, 0));
        assert!(!ram.discard(636 << 10, 8 * page));
        assert!(!ram.discard(ram.span(), page));
        assert!(!ram.discard(ram.span() - page, 2 * page));
        ram.read((2 << 20) + page, &mut buf).unwrap();
        assert_eq!(&buf, b"kmemlab!");
    }

    #[test]
    fn never_written_pages_are_known_zero_until_touched_and_again_after_discard() {
        let ram = Ram::new(16 << 20, &[Hole::LEGACY]).unwrap();
        let at = 2 << 20;
        // Pages of this machine per host page (1 on x86_64; more where host pages are
        // 16 or 64 KiB): touching one page touches its host page's neighbours too.
        let per_host = (host_page_size() / PAGE).max(1);
        let unknown = |touched: &[u64]| {
            let mut map = [u64::MAX; 2];
            for &page in touched {
                let first = page / per_host * per_host;
                for i in first..(first + per_host).min(128) {
                    map[(i / 64) as usize] &= !(1 << (i % 64));
                }
            }
            map
        };
        let mut map = [0u64; 2];
        if !ram.knows_unbacked_pages() {
            assert_eq!(
                ram.known_zero(at, &mut map),
                0,
                "no page map: nothing known"
            );
            eprintln!("no usable /proc/self/pagemap on this host: the rest is not tested");
            return;
        }
        assert_eq!(ram.known_zero(at, &mut map), 128, "two words: 128 pages");
        assert_eq!(
            map,
            [u64::MAX; 2],
            "a fresh machine's RAM is all known zero"
        );
        ram.write(at + 3 * PAGE + 100, b"kmemlab!").unwrap();
        let mut buf = [0u8; 8];
        ram.read(at + 70 * PAGE, &mut buf).unwrap();
        ram.known_zero(at, &mut map);
        // Neither the written page nor the one only read (the host's zero page).
        assert_eq!(map, unknown(&[3, 70]));
        let host_page = per_host * PAGE;
        assert!(ram.discard(at + 3 * PAGE / host_page * host_page, host_page));
        ram.known_zero(at, &mut map);
        assert_eq!(map, unknown(&[70]), "a discarded page is known zero again");
        // The answer stops at the end of the RAM range, and needs aligned RAM.
        let last = ram.span() - 2 * PAGE;
        assert_eq!(ram.known_zero(last, &mut map), 2);
        assert_eq!(map, [0b11, 0]);
        assert_eq!(ram.known_zero(at + 8, &mut map), 0, "not page-aligned");
        assert_eq!(
            ram.known_zero(640 << 10, &mut map),
            0,
            "inside the legacy hole"
        );
    }

    fn hole(start: u64, end: u64) -> Hole {
        Hole { start, end }
    }

    #[test]
    fn holes_are_checked_before_anything_is_mapped() {
        const G: u64 = 1 << 30;
        // --hole 0-2T --ram 32G ends above the limit; --hole 0-2G overlaps the legacy hole.
        let big = hole(0, 2 << 40);
        assert_eq!(
            layout(32 * G, &[Hole::LEGACY, big]),
            Err(RamError::HoleBeyondLimit(big))
        );
        let low = hole(0, 2 * G);
        assert_eq!(
            layout(32 * G, &[Hole::LEGACY, low]),
            Err(RamError::HolesOverlap(low, Hole::LEGACY))
        );
        assert!(Ram::new(32 * G, &[big]).is_err());
        // RAM pushed above the limit by holes that are each within it.
        let wide = hole(G, 400 * G);
        assert_eq!(
            layout(256 * G, &[wide]),
            Err(RamError::SpanTooLarge {
                size: 256 * G,
                end: 655 << 30
            })
        );
        // Exactly at the limit is allowed; one page more is not.
        let map = layout(256 * G, &[hole(G, 257 * G)]).unwrap();
        assert_eq!(map.last().unwrap().end.0, MAX_PHYS_SPAN);
        assert!(layout(256 * G, &[hole(G, 257 * G + 4096)]).is_err());
        // Empty holes, and a size no machine has, are refused without overflow.
        assert_eq!(
            layout(G, &[hole(5 * G, 5 * G)]),
            Err(RamError::EmptyHole(hole(5 * G, 5 * G)))
        );
        assert!(matches!(
            layout(u64::MAX, &[Hole::LEGACY]),
            Err(RamError::SpanTooLarge { .. })
        ));
        // Holes past the end of RAM, touching holes, and unsorted holes are fine.
        let map = layout(G, &[Hole::PCI, hole(G, 2 * G), Hole::LEGACY]).unwrap();
        assert_eq!(map.iter().map(|r| r.end.0 - r.start.0).sum::<u64>(), G);
        assert!(layout(G, &[hole(G, 2 * G), hole(2 * G, 3 * G)]).is_ok());
    }

    #[test]
    fn holes_print_as_the_flag_takes_them() {
        assert_eq!(Hole::LEGACY.to_string(), "640K-1M");
        assert_eq!(
            RamError::HolesOverlap(hole(0, 2 << 40), Hole::LEGACY)
                .to_string()
                .split(" (")
                .next(),
            Some("holes 0-2T and 640K-1M overlap")
        );
    }
}
