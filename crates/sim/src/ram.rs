//! Simulated physical memory: one anonymous host mapping covering the whole physical
//! address space, reserved with `MAP_NORESERVE` so that the host backs a page only when
//! the simulated machine first writes it. A 64 GiB machine costs the host only what its
//! kernel touches.

use kmemlab_mm::{MemoryRegion, PhysAddr};

/// A range of physical addresses with no RAM behind it.
#[derive(Copy, Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Hole {
    /// First byte.
    pub start: u64,
    /// One past the last byte.
    pub end: u64,
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
}

/// The RAM of a machine and its firmware memory map.
pub struct Ram {
    base: *mut u8,
    span: u64,
    map: Vec<MemoryRegion>,
}

// SAFETY: `Ram` is a plain block of host memory; who may touch which bytes when is the
// kernel's business (the `Platform` contract), not the container's.
unsafe impl Send for Ram {}
// SAFETY: as above.
unsafe impl Sync for Ram {}

impl Ram {
    /// Lay out `size` bytes of RAM from physical address 0, skipping the holes (so the
    /// machine has exactly `size` bytes of RAM), and map the whole span lazily.
    pub fn new(size: u64, holes: &[Hole]) -> Result<Ram, RamError> {
        let map = layout(size, holes);
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
        Ok(Ram {
            base: base as *mut u8,
            span,
            map,
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

/// Place `size` bytes of RAM from address 0 upward around the holes.
fn layout(size: u64, holes: &[Hole]) -> Vec<MemoryRegion> {
    let mut holes: Vec<Hole> = holes.iter().copied().filter(|h| h.end > h.start).collect();
    holes.sort_by_key(|h| h.start);
    let mut map = Vec::new();
    let (mut cursor, mut left) = (0u64, size);
    for hole in holes {
        if left == 0 {
            break;
        }
        if hole.end <= cursor {
            continue;
        }
        if hole.start > cursor {
            let take = left.min(hole.start - cursor);
            map.push(region(cursor, cursor + take));
            left -= take;
        }
        cursor = cursor.max(hole.end);
    }
    if left > 0 {
        map.push(region(cursor, cursor + left));
    }
    map
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
        let map = layout(8 << 30, &[Hole::LEGACY, Hole::PCI]);
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
}
