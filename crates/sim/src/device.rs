//! DMA-capable devices: bus masters that copy bytes between their own buffer and the bus
//! addresses a driver hands them, straight into simulated RAM. No MMU and no TLB are
//! involved: a device sees physical (bus) addresses only, which is why a driver must hand
//! it what the DMA API returned, never a kernel virtual address or a `__pa()` of one.
//!
//! A device has as many address lines as its DMA mask says. An address it cannot drive
//! is refused with [`BusError::BeyondAddressLines`] (a PCI device cannot put a 33-bit
//! address on a 32-bit bus: the transfer simply cannot be issued). ISA's 8237 would have
//! wrapped instead, writing the low 24 bits' worth somewhere else; kmemlab refuses so
//! that the driver's mistake is visible rather than silent. An address with no RAM behind
//! it is a master abort ([`BusError::NotRam`]). A transfer is checked in full before any
//! byte moves, and one that would move more bytes than the machine has RAM is refused
//! ([`BusError::TooLong`]) before the host allocates anything for it.
//!
//! A device writes RAM as it is: aimed at a kernel structure (a `vmap_area`, a slot of the
//! swiotlb, a dma-debug entry), it overwrites it, as a real bus master would; the kernel
//! code that reads the structure afterwards checks what it finds.
//!
//! ```
//! use kmemlab_mm::dma::DmaDataDirection::FromDevice;
//! use kmemlab_mm::Gfp;
//! use kmemlab_sim::{Machine, MachineConfig};
//!
//! let m = Machine::new(MachineConfig::default()).unwrap();
//! let nic = m.add_dma_device("nic", 32).unwrap();
//! let buf = m.run(|mm| mm.kmalloc(64, Gfp::GFP_KERNEL)).unwrap();
//! let addr = m.run(|mm| mm.dma_map_single(nic.device(), buf, 64, FromDevice));
//! m.run(|mm| mm.dma_mapping_error(nic.device(), addr)).unwrap();
//! nic.load_buffer(b"hello from the wire");
//! nic.write_to_memory(&m, addr, 19).unwrap();
//! m.run(|mm| mm.dma_unmap_single(nic.device(), addr, 64, FromDevice));
//! // The CPU reads the device's bytes through the MMU and the direct map.
//! assert_eq!(m.read(buf, 19).unwrap(), b"hello from the wire");
//! assert!(m.take_console().is_empty());
//! ```

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard, PoisonError};

use kmemlab_mm::dma::{dma_bit_mask, Device, DmaAddr};

use crate::Machine;

/// The driver name every simulated device's messages carry (`dev_driver_string`).
pub const DRIVER_NAME: &str = "simdma";

/// Why a device could not transfer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum BusError {
    /// The address needs more address lines than the device has.
    BeyondAddressLines {
        /// First byte of the transfer.
        addr: u64,
        /// Bytes.
        len: u64,
        /// The device's address lines, as a mask.
        mask: u64,
    },
    /// No RAM answers at the address (a master abort).
    NotRam {
        /// First byte of the transfer.
        addr: u64,
        /// Bytes.
        len: u64,
    },
    /// The transfer moves more bytes than the machine has RAM (one segment may be
    /// repeated, but no device streams more than all of memory in one go).
    TooLong {
        /// Bytes the segments add up to (saturated at `u64::MAX`).
        len: u64,
        /// Bytes of RAM.
        ram: u64,
    },
    /// The device's buffer holds fewer bytes than the transfer moves out of it.
    BufferTooShort {
        /// Bytes the transfer needs.
        need: usize,
        /// Bytes in the buffer.
        have: usize,
    },
}

impl fmt::Display for BusError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BusError::BeyondAddressLines { addr, len, mask } => write!(
                f,
                "bus error: {addr:#x}+{len} is beyond the device's address lines (mask {mask:#x})"
            ),
            BusError::NotRam { addr, len } => {
                write!(f, "bus error: master abort, no RAM at {addr:#x}+{len}")
            }
            BusError::TooLong { len, ram } => write!(
                f,
                "bus error: a transfer of {len} bytes is longer than the machine's {ram} bytes of RAM"
            ),
            BusError::BufferTooShort { need, have } => {
                write!(
                    f,
                    "device buffer holds {have} bytes, the transfer needs {need}"
                )
            }
        }
    }
}

impl std::error::Error for BusError {}

/// A bus-mastering device with `mask_bits` address lines and an internal buffer.
pub struct DmaDevice {
    mask_bits: u32,
    device: Device,
    buffer: Mutex<Vec<u8>>,
    transfers: AtomicU64,
    bytes: AtomicU64,
    bus_errors: AtomicU64,
}

impl fmt::Debug for DmaDevice {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "DmaDevice({:?}, {} address bits)",
            self.device, self.mask_bits
        )
    }
}

impl DmaDevice {
    /// A device named `name` with `mask_bits` address lines; its `struct device` starts
    /// with the default 32-bit masks until the driver sets them.
    pub fn new(name: &str, mask_bits: u32) -> DmaDevice {
        DmaDevice {
            mask_bits: mask_bits.min(64),
            device: Device::new(DRIVER_NAME, name),
            buffer: Mutex::new(Vec::new()),
            transfers: AtomicU64::new(0),
            bytes: AtomicU64::new(0),
            bus_errors: AtomicU64::new(0),
        }
    }

    /// The `struct device` the driver passes to the DMA API.
    pub fn device(&self) -> &Device {
        &self.device
    }

    /// `dev_name()`.
    pub fn name(&self) -> &str {
        self.device.name()
    }

    /// The number of address lines.
    pub fn mask_bits(&self) -> u32 {
        self.mask_bits
    }

    /// The highest address the device can drive.
    pub fn address_mask(&self) -> u64 {
        dma_bit_mask(self.mask_bits)
    }

    /// The buffer, locked. A lock poisoned by a panic elsewhere still holds plain bytes.
    fn locked_buffer(&self) -> MutexGuard<'_, Vec<u8>> {
        self.buffer.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Put bytes in the device's buffer (what it received from the outside world).
    pub fn load_buffer(&self, bytes: &[u8]) {
        *self.locked_buffer() = bytes.to_vec();
    }

    /// A copy of the device's buffer (what it read from memory).
    pub fn buffer(&self) -> Vec<u8> {
        self.locked_buffer().clone()
    }

    /// (transfers completed, bytes moved, transfers refused with a bus error).
    pub fn counters(&self) -> (u64, u64, u64) {
        (
            self.transfers.load(Ordering::Relaxed),
            self.bytes.load(Ordering::Relaxed),
            self.bus_errors.load(Ordering::Relaxed),
        )
    }

    fn check(&self, machine: &Machine, addr: DmaAddr, len: usize) -> Result<(), BusError> {
        let len64 = len as u64;
        let last = addr.checked_add(len64.saturating_sub(1));
        if last.is_none_or(|last| last > self.address_mask()) {
            return Err(BusError::BeyondAddressLines {
                addr,
                len: len64,
                mask: self.address_mask(),
            });
        }
        if !machine.platform().ram().contains(addr, len64) {
            return Err(BusError::NotRam { addr, len: len64 });
        }
        Ok(())
    }

    /// Check every segment, and that together they move no more than the machine's RAM;
    /// returns the bytes they add up to.
    fn check_all(
        &self,
        machine: &Machine,
        segments: &[(DmaAddr, usize)],
    ) -> Result<usize, BusError> {
        let ram = machine.platform().ram().size();
        let mut total = 0u64;
        for &(addr, len) in segments {
            let checked = self.check(machine, addr, len).and_then(|()| {
                total = total.saturating_add(len as u64);
                if total > ram {
                    return Err(BusError::TooLong { len: total, ram });
                }
                Ok(())
            });
            if let Err(e) = checked {
                self.bus_errors.fetch_add(1, Ordering::Relaxed);
                return Err(e);
            }
        }
        // At most the machine's RAM, which the host has mapped: it fits a usize.
        Ok(total as usize)
    }

    /// The device writes its buffer to memory (a `DMA_FROM_DEVICE` transfer) at one bus
    /// address.
    pub fn write_to_memory(
        &self,
        machine: &Machine,
        addr: DmaAddr,
        len: usize,
    ) -> Result<(), BusError> {
        self.write_segments(machine, &[(addr, len)]).map(|_| ())
    }

    /// The device reads memory into its buffer (a `DMA_TO_DEVICE` transfer) from one bus
    /// address.
    pub fn read_from_memory(
        &self,
        machine: &Machine,
        addr: DmaAddr,
        len: usize,
    ) -> Result<(), BusError> {
        self.read_segments(machine, &[(addr, len)]).map(|_| ())
    }

    /// The device writes its buffer across a list of segments `(dma_addr, len)`, in
    /// order (scatter); returns the bytes written.
    pub fn write_segments(
        &self,
        machine: &Machine,
        segments: &[(DmaAddr, usize)],
    ) -> Result<usize, BusError> {
        let total = self.check_all(machine, segments)?;
        let buffer = self.locked_buffer();
        if buffer.len() < total {
            self.bus_errors.fetch_add(1, Ordering::Relaxed);
            return Err(BusError::BufferTooShort {
                need: total,
                have: buffer.len(),
            });
        }
        let ram = machine.platform().ram();
        let mut done = 0;
        for &(addr, len) in segments {
            // Checked above: every segment is RAM, and they fit the buffer.
            let bytes = &buffer[done..done + len];
            ram.write(addr, bytes).ok_or(BusError::NotRam {
                addr,
                len: len as u64,
            })?;
            done += len;
        }
        self.count(total);
        Ok(total)
    }

    /// The device reads a list of segments into its buffer, in order (gather); returns
    /// the bytes read.
    pub fn read_segments(
        &self,
        machine: &Machine,
        segments: &[(DmaAddr, usize)],
    ) -> Result<usize, BusError> {
        let total = self.check_all(machine, segments)?;
        let ram = machine.platform().ram();
        // No more than the machine's RAM (checked), so the host can hold it.
        let mut data = vec![0; total];
        let mut done = 0;
        for &(addr, len) in segments {
            ram.read(addr, &mut data[done..done + len])
                .ok_or(BusError::NotRam {
                    addr,
                    len: len as u64,
                })?;
            done += len;
        }
        *self.locked_buffer() = data;
        self.count(total);
        Ok(total)
    }

    fn count(&self, bytes: usize) {
        self.transfers.fetch_add(1, Ordering::Relaxed);
        self.bytes.fetch_add(bytes as u64, Ordering::Relaxed);
    }
}
