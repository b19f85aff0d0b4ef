//! A failed kernel access: [`PageFault`], its x86 error code and the lines
//! `arch/x86/mm/fault.c` (`page_fault_oops`, Linux 6.6) prints for it.

use std::fmt;

use kmemlab_mm::{Profile, VirtAddr, PAGE_SIZE};

use super::tlb::Access;
use super::walk::{reason_text, FaultReason, Walk};

// Page-fault error code bits (`enum x86_pf_error_code`).
/// The fault was a protection violation, not a missing page (`X86_PF_PROT`).
pub const X86_PF_PROT: u64 = 1 << 0;
/// The access was a write (`X86_PF_WRITE`).
pub const X86_PF_WRITE: u64 = 1 << 1;
/// The access came from user mode (`X86_PF_USER`); never set here.
pub const X86_PF_USER: u64 = 1 << 2;
/// A reserved bit was set in a paging-structure entry (`X86_PF_RSVD`).
pub const X86_PF_RSVD: u64 = 1 << 3;

/// A kernel access that could not complete: a page fault (or, for a non-canonical
/// address, a general protection fault), or a translation that leads outside RAM.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct PageFault {
    /// The faulting address (CR2).
    pub vaddr: VirtAddr,
    /// Load or store.
    pub access: Access,
    /// The CPU that faulted.
    pub cpu: usize,
    /// What went wrong.
    pub reason: FaultReason,
    /// Pointer width of the machine in bits (64 or 32), for printing addresses as `%px`.
    pub addr_bits: u32,
}

impl PageFault {
    /// The x86 page-fault error code: `X86_PF_WRITE` for a store, `X86_PF_PROT` for a
    /// protection violation (always supervisor mode).
    pub fn error_code(&self) -> u64 {
        let mut code = 0;
        if self.access == Access::Write {
            code |= X86_PF_WRITE;
        }
        match self.reason {
            FaultReason::ReadOnly => code |= X86_PF_PROT,
            // The entry was present: a protection fault with the reserved-bit flag.
            FaultReason::ReservedBits { .. } => code |= X86_PF_PROT | X86_PF_RSVD,
            _ => {}
        }
        code
    }

    /// The address as `%px` prints it: zero-padded to the pointer width, no `0x`.
    pub fn px(&self) -> String {
        let digits = (self.addr_bits / 4) as usize;
        format!("{:0digits$x}", self.vaddr.0)
    }

    /// "supervisor read access in kernel mode" (`show_fault_oops`).
    pub fn access_text(&self) -> &'static str {
        match self.access {
            Access::Read => "supervisor read access in kernel mode",
            Access::Write => "supervisor write access in kernel mode",
        }
    }

    /// "not-present page", "reserved bit violation" or "permissions violation"
    /// (`show_fault_oops`).
    pub fn error_text(&self) -> &'static str {
        let code = self.error_code();
        if code & X86_PF_PROT == 0 {
            "not-present page"
        } else if code & X86_PF_RSVD != 0 {
            "reserved bit violation"
        } else {
            "permissions violation"
        }
    }
}

impl fmt::Display for PageFault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.reason {
            FaultReason::NonCanonical => write!(
                f,
                "general protection fault on CPU {}: non-canonical address {:#x}",
                self.cpu, self.vaddr.0
            ),
            FaultReason::NotRam { phys } => write!(
                f,
                "CPU {}: {} of {} reaches physical address {:#x}, which is not RAM",
                self.cpu,
                match self.access {
                    Access::Read => "read",
                    Access::Write => "write",
                },
                self.px(),
                phys.0
            ),
            ref r => write!(
                f,
                "unable to handle page fault for address {} on CPU {}: {}, error_code(0x{:04x}) - {} ({})",
                self.px(),
                self.cpu,
                self.access_text(),
                self.error_code(),
                self.error_text(),
                reason_text(r)
            ),
        }
    }
}

impl std::error::Error for PageFault {}

/// The kernel's lines for a fault (`page_fault_oops` → `show_fault_oops` and
/// `dump_pagetable`, then `__die_header`; `exc_general_protection` for a non-canonical
/// address). The simulator returns the fault to the caller instead of killing the task.
pub(super) fn oops_lines(
    fault: &PageFault,
    walk: &Walk,
    profile: Profile,
    die: u64,
) -> Vec<String> {
    let mut out = Vec::new();
    let suffix = match profile {
        Profile::X86_64 => " PREEMPT SMP NOPTI",
        Profile::I386 => " PREEMPT SMP",
    };
    match fault.reason {
        FaultReason::NonCanonical => {
            out.push(format!(
                "general protection fault, probably for non-canonical address {:#x}: 0000 [#{die}]{suffix}",
                fault.vaddr.0
            ));
            return out;
        }
        FaultReason::NotRam { phys } => {
            // Not a fault the kernel would see: the simulator refuses to touch a hole.
            out.push(format!(
                "kmemlab: {} of {} on CPU {} maps physical address {:#x}, which is not RAM",
                match fault.access {
                    Access::Read => "read",
                    Access::Write => "write",
                },
                fault.px(),
                fault.cpu,
                phys.0
            ));
            return out;
        }
        _ => {}
    }
    if fault.vaddr.0 < PAGE_SIZE as u64 {
        out.push(format!(
            "BUG: kernel NULL pointer dereference, address: {}",
            fault.px()
        ));
    } else {
        out.push(format!(
            "BUG: unable to handle page fault for address: {}",
            fault.px()
        ));
    }
    out.push(format!("#PF: {}", fault.access_text()));
    out.push(format!(
        "#PF: error_code(0x{:04x}) - {}",
        fault.error_code(),
        fault.error_text()
    ));
    // dump_pagetable(): 64-bit prints every level read (P4D folded into the PGD), 2-level
    // i386 prints the PDE and, below a present non-PSE PDE, the PTE.
    let mut line = String::new();
    for (i, s) in walk.steps.iter().enumerate() {
        match profile {
            Profile::X86_64 => {
                line.push_str(&format!("{} {:x} ", s.level, s.entry));
                if i == 0 {
                    line.push_str(&format!("P4D {:x} ", s.entry));
                }
            }
            Profile::I386 => {
                let name = if i == 0 { "*pde" } else { "*pte" };
                line.push_str(&format!("{name} = {:08x} ", s.entry));
            }
        }
    }
    if walk.steps.is_empty() {
        line.push_str("BAD");
    }
    out.push(line);
    out.push(format!(
        "Oops: {:04x} [#{die}]{suffix}",
        fault.error_code() & 0xffff
    ));
    out
}
