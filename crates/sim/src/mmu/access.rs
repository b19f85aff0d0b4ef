//! Memory as a CPU sees it: [`Machine`]'s reads, writes, translations and walks through
//! the current CPU's TLB and the kernel's page tables, with faults reported.

use std::sync::atomic::Ordering;

use kmemlab_mm::{Hardware, KernelHooks, PhysAddr, Profile, VirtAddr, PAGE_SIZE};

use super::fault::{oops_lines, PageFault};
use super::tlb::{Access, Mmu, TlbFlushStats, TlbStats};
use super::walk::{walk, FaultReason, RamTables, Translation, Walk};
use crate::machine::Machine;

/// Memory as a CPU sees it: through its TLB and the kernel's page tables.
impl Machine {
    fn mmu(&self) -> &Mmu {
        self.platform().mmu()
    }

    fn addr_bits(&self) -> u32 {
        match self.mm().profile() {
            Profile::X86_64 => 64,
            Profile::I386 => 32,
        }
    }

    /// Translate for an access by the current CPU; on failure, report and count it.
    fn access(&self, va: VirtAddr, access: Access) -> Result<Translation, PageFault> {
        let mm = self.mm();
        let cpu = mm.platform().smp_processor_id();
        let mem = RamTables::new(&mm);
        let r = self
            .mmu()
            .translate(cpu, &mem, mm.paging(), mm.kernel_pgd(), va, access);
        let fault = |reason| PageFault {
            vaddr: va,
            access,
            cpu,
            reason,
            addr_bits: self.addr_bits(),
        };
        match r {
            Ok(t) => Ok(t),
            Err(reason) => Err(self.report_fault(fault(reason))),
        }
    }

    /// Print a fault the kernel's way and count it.
    fn report_fault(&self, fault: PageFault) -> PageFault {
        let mm = self.mm();
        let mmu = self.mmu();
        mmu.faults.fetch_add(1, Ordering::Relaxed);
        let die = mmu.die_counter.fetch_add(1, Ordering::Relaxed) + 1;
        let walk = self.walk(fault.vaddr);
        let p = mm.platform();
        for line in oops_lines(&fault, &walk, mm.profile(), die) {
            p.printk(format_args!("{line}"));
        }
        if !matches!(fault.reason, FaultReason::NotRam { .. }) {
            p.printk(format_args!(
                "CPU: {} PID: {} Comm: {} Not tainted 6.6.0-kmemlab #1",
                fault.cpu,
                p.current_pid(),
                p.current_comm()
            ));
        }
        fault
    }

    /// Copy `[vaddr, vaddr + len)` out of kernel memory as the current CPU
    /// (`smp_processor_id()`, CPU 0 outside [`Machine::on_cpu`]) would load it: each page
    /// through that CPU's TLB and the page tables. A fault is printed the kernel's way,
    /// counted, and returned.
    pub fn read(&self, vaddr: VirtAddr, len: usize) -> Result<Vec<u8>, PageFault> {
        let mut out = Vec::with_capacity(len.min(1 << 20));
        self.for_each_chunk(vaddr, len, Access::Read, |phys, range| {
            let start = out.len();
            out.resize(start + range, 0);
            self.platform().ram().read(phys, &mut out[start..])
        })?;
        Ok(out)
    }

    /// Store `bytes` at `vaddr` as the current CPU would, page by page (pages before a
    /// faulting one keep what was written). Nothing is set in the entries (no A/D bits).
    pub fn write(&self, vaddr: VirtAddr, bytes: &[u8]) -> Result<(), PageFault> {
        let mut done = 0;
        self.for_each_chunk(vaddr, bytes.len(), Access::Write, |phys, n| {
            let r = self
                .mm()
                .platform()
                .ram()
                .write(phys, &bytes[done..done + n]);
            done += n;
            r
        })
    }

    /// Walk `[vaddr, vaddr + len)` in pieces that stay inside one 4 KiB page, translating
    /// once per page mapping and calling `f(phys, len)`, which says whether that was RAM.
    fn for_each_chunk(
        &self,
        vaddr: VirtAddr,
        len: usize,
        access: Access,
        mut f: impl FnMut(u64, usize) -> Option<()>,
    ) -> Result<(), PageFault> {
        // The current CPU (CPU 0 for a thread that runs as none) for the whole access,
        // its fault report included.
        let _cpu = self.mm();
        let page = PAGE_SIZE as u64;
        let mut va = vaddr.0;
        let mut left = len as u64;
        while left > 0 {
            let t = self.access(VirtAddr(va), access)?;
            // Bytes left in this mapping, then copied one 4 KiB frame at a time so that a
            // large page over a hole stops exactly at the hole.
            let mut in_map = (t.page_size - (va & (t.page_size - 1))).min(left);
            let mut phys = t.phys.0;
            while in_map > 0 {
                let n = (page - (phys & (page - 1))).min(in_map);
                if f(phys, n as usize).is_none() {
                    let fault = PageFault {
                        vaddr: VirtAddr(va),
                        access,
                        cpu: self.platform().smp_processor_id(),
                        reason: FaultReason::NotRam {
                            phys: PhysAddr(phys),
                        },
                        addr_bits: self.addr_bits(),
                    };
                    return Err(self.report_fault(fault));
                }
                phys += n;
                va = va.wrapping_add(n);
                in_map -= n;
                left -= n;
            }
        }
        Ok(())
    }

    /// Translate `vaddr` as the current CPU's MMU does for a load: TLB first, then a walk
    /// (counted in the TLB statistics). A failure is returned, not reported: this is a
    /// lookup, not an access.
    pub fn translate(&self, vaddr: VirtAddr) -> Result<Translation, PageFault> {
        let mm = self.mm();
        let cpu = mm.platform().smp_processor_id();
        let mem = RamTables::new(&mm);
        self.mmu()
            .translate(cpu, &mem, mm.paging(), mm.kernel_pgd(), vaddr, Access::Read)
            .map_err(|reason| PageFault {
                vaddr,
                access: Access::Read,
                cpu,
                reason,
                addr_bits: self.addr_bits(),
            })
    }

    /// Walk the page tables for `vaddr`, level by level, without the TLB and uncounted.
    pub fn walk(&self, vaddr: VirtAddr) -> Walk {
        let mm = self.mm();
        walk(&RamTables::new(&mm), mm.paging(), mm.kernel_pgd(), vaddr)
    }

    /// `cpu`'s TLB counters.
    pub fn tlb_stats(&self, cpu: usize) -> TlbStats {
        self.mmu().stats(cpu)
    }

    /// The TLB counters summed over all CPUs.
    pub fn tlb_stats_total(&self) -> TlbStats {
        self.mmu().stats_total()
    }

    /// The shootdown counters of `flush_tlb_kernel_range`.
    pub fn tlb_flush_stats(&self) -> TlbFlushStats {
        self.mmu().flush_stats()
    }

    /// Faults reported by [`Machine::read`] and [`Machine::write`].
    pub fn page_faults(&self) -> u64 {
        self.mmu().faults()
    }
}
