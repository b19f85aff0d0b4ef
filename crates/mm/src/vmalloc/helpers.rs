//! vmalloc's helpers: `vm_struct`s and page arrays read back from RAM and checked, kernel
//! words and bytes reached through the page tables, and the reports (the kernel's BUG,
//! WARN, page fault and soft lockup as vmalloc meets them).

use core::fmt;
use core::sync::atomic::{AtomicU32, AtomicU64, Ordering::Relaxed};

use super::rbtree::Corrupt;
use super::{vm_area_of, VmArea, VmStruct, VmallocError, VmapArea, VmapTree, PMD_SHIFT};
use crate::addr::{Pfn, VirtAddr, PAGE_SHIFT, PAGE_SIZE};
use crate::arch::Profile;
use crate::gfp::Gfp;
use crate::platform::Platform;
use crate::Mm;

impl<P: Platform> Mm<P> {
    /// One more step along a tree's list: past its walk limit, the list goes round a
    /// cycle (the kernel's `list_for_each_entry` would never end: a soft lockup).
    pub(in crate::vmalloc) fn list_step(
        &self,
        left: &mut u64,
        tree: &VmapTree,
    ) -> Result<(), Corrupt> {
        if *left == 0 {
            self.vmalloc_stuck(tree.lock_name);
            return Err(Corrupt { addr: tree.first });
        }
        *left -= 1;
        Ok(())
    }

    /// The `vm_struct` at `vm` (a kmalloc object in the direct map): a pointer that
    /// leads nowhere is the kernel's page fault, reported.
    pub(in crate::vmalloc) fn vm_struct(&self, vm: u64) -> Result<&VmStruct, Corrupt> {
        self.kview::<VmStruct>(vm)
            .map_err(|_| self.vmalloc_fault(vm, false))
    }

    /// A copy of the `vm_struct` at `vm`, as it stands.
    pub(in crate::vmalloc) fn vm_area_copy(&self, vm: u64) -> Result<VmArea, Corrupt> {
        let v = self.vm_struct(vm)?;
        Ok(vm_area_of(v, vm, self.site(v.caller.load(Relaxed) as u32)))
    }

    /// The `vm_struct` of the busy area `node`, checked against it: the same start and
    /// size, no more pages than the area holds, a page order vmalloc uses, a requested
    /// size within the area. (kmemlab's own check: the kernel trusts `va->vm`, and a
    /// corrupted size or page count would send its callers far past the area.)
    pub(in crate::vmalloc) fn checked_vm_area(
        &self,
        node: &VmapArea,
        vm: u64,
    ) -> Result<VmArea, Corrupt> {
        let a = self.vm_area_copy(vm)?;
        let usable = a.usable_size();
        let bad = if a.addr.0 != node.start() {
            Some(("addr", a.addr.0))
        } else if a.size != node.size() {
            Some(("size", a.size))
        } else if a.nr_pages > usable >> PAGE_SHIFT {
            Some(("nr_pages", a.nr_pages))
        } else if a.page_order != 0 && a.page_order != PMD_SHIFT - PAGE_SHIFT {
            Some(("page_order", a.page_order as u64))
        } else if a.requested_size > usable {
            Some(("requested_size", a.requested_size))
        } else {
            None
        };
        match bad {
            Some((field, value)) => Err(self.vm_struct_corrupted(vm, field, value)),
            None => Ok(a),
        }
    }

    /// A busy area must be a non-empty, page-aligned range of the vmalloc area (every
    /// busy area is made there); anything else is reported as corruption.
    pub(in crate::vmalloc) fn check_busy_range(
        &self,
        va: u64,
        node: &VmapArea,
    ) -> Result<(), Corrupt> {
        let (start, end) = (node.start(), node.end());
        let page = PAGE_SIZE as u64 - 1;
        if start < end
            && start >= self.layout().vmalloc_start
            && end <= self.layout().vmalloc_end
            && start & page == 0
            && end & page == 0
        {
            return Ok(());
        }
        Err(self.vmap_area_corrupted(va, start, end))
    }

    /// Any area must be a non-empty range (the free tree spans the whole address space).
    pub(super) fn check_range(&self, va: u64, node: &VmapArea) -> Result<(), Corrupt> {
        if node.start() < node.end() {
            return Ok(());
        }
        Err(self.vmap_area_corrupted(va, node.start(), node.end()))
    }

    /// kmemlab's report of a `vm_struct` that disagrees with its area (in the style of
    /// vmalloc's own messages; the kernel has no such check).
    pub(super) fn vm_struct_corrupted(&self, vm: u64, field: &str, value: u64) -> Corrupt {
        self.vmalloc.stats.bugs.fetch_add(1, Relaxed);
        self.printk(format_args!(
            "vmalloc: corrupted vm_struct {vm:#018x}: {field} {value:#x} does not match its vmap_area; refusing it"
        ));
        Corrupt { addr: vm }
    }

    /// kmemlab's report of a `vmap_area` whose range is impossible.
    pub(super) fn vmap_area_corrupted(&self, va: u64, start: u64, end: u64) -> Corrupt {
        self.vmalloc.stats.bugs.fetch_add(1, Relaxed);
        self.printk(format_args!(
            "vmalloc: corrupted vmap_area {va:#018x}: range 0x{start:x}-0x{end:x} is not a vmalloc area; refusing it"
        ));
        Corrupt { addr: va }
    }

    /// What the CPU does when kernel code dereferences `addr` and it is not mapped RAM:
    /// a general protection fault for a non-canonical address, else the page-fault oops.
    pub(in crate::vmalloc) fn vmalloc_fault(&self, addr: u64, write: bool) -> Corrupt {
        self.vmalloc.stats.bugs.fetch_add(1, Relaxed);
        self.kernel_fault(addr, write);
        Corrupt { addr }
    }

    /// A walk of a vmalloc tree or list that goes round a cycle: the kernel would spin
    /// there for ever holding `lock`, and the watchdog reports the soft lockup.
    pub(in crate::vmalloc) fn vmalloc_stuck(&self, lock: &str) {
        self.vmalloc.stats.bugs.fetch_add(1, Relaxed);
        self.soft_lockup(lock);
    }

    /// `sizeof(struct page *)` on this profile.
    pub(super) fn pointer_size(&self) -> u64 {
        match self.profile() {
            Profile::X86_64 => 8,
            Profile::I386 => 4,
        }
    }

    /// The physical address behind a kernel virtual address: the direct map, or a walk of
    /// the page tables for anything else (how kernel code reaches vmalloc memory).
    pub fn kernel_virt_to_phys(&self, va: u64) -> Option<u64> {
        if let Some(phys) = self.layout().virt_to_phys(va) {
            return Some(phys);
        }
        self.kernel_translate(va).map(|m| m.phys.0)
    }

    /// Entry `i` of a page array as the raw `struct page *` word; an entry that cannot
    /// be read is the kernel's page fault, reported.
    pub(super) fn page_array_word(&self, pages: u64, i: u64) -> Result<u64, Corrupt> {
        let at = pages.wrapping_add(i.wrapping_mul(self.pointer_size()));
        self.read_kernel_word(at)
            .ok_or_else(|| self.vmalloc_fault(at, false))
    }

    /// The PFN of a `struct page *`, if it is a descriptor of `mem_map`.
    pub(super) fn struct_page_pfn(&self, word: u64) -> Option<Pfn> {
        self.page_at_struct_address(VirtAddr(word))
            .and_then(|page| self.mem_map().pfn_of(page))
    }

    /// Entry `i` of a page array, as a PFN. A word that is no `struct page *` of
    /// `mem_map` would fault when the kernel dereferenced it: reported so.
    pub(super) fn page_array_get(&self, pages: u64, i: u64) -> Result<Pfn, Corrupt> {
        let word = self.page_array_word(pages, i)?;
        self.struct_page_pfn(word)
            .ok_or_else(|| self.vmalloc_fault(word, false))
    }

    /// Entry `i` of a page array, as a PFN, or `None`; nothing is reported (the checker).
    pub(in crate::vmalloc) fn page_array_peek(&self, pages: u64, i: u64) -> Option<Pfn> {
        let at = pages.checked_add(i.checked_mul(self.pointer_size())?)?;
        self.struct_page_pfn(self.read_kernel_word(at)?)
    }

    /// Store `pfn`'s `struct page *` as entry `i` of a page array (one just allocated).
    pub(super) fn page_array_set(&self, pages: u64, i: u64, pfn: Pfn) {
        let value = self.struct_page_address(self.mem_map().page(pfn)).0;
        self.write_kernel_word(pages + i * self.pointer_size(), value);
    }

    /// The RAM word (pointer-sized, naturally aligned, so within one page) at kernel
    /// address `va`, as an atomic of that size.
    pub(super) fn kernel_word(&self, va: u64) -> Option<KernelWord<'_>> {
        if !va.is_multiple_of(self.pointer_size()) {
            return None;
        }
        let phys = self.kernel_virt_to_phys(va)?;
        match self.profile() {
            Profile::X86_64 => self.ram().atomic_u64(phys).ok().map(KernelWord::Long),
            Profile::I386 => self.ram().atomic_u32(phys).ok().map(KernelWord::Int),
        }
    }

    /// Write a pointer-sized word at kernel address `va` (the `llist_node` that
    /// `vfree_atomic` keeps in the freed memory itself).
    pub(in crate::vmalloc) fn write_kernel_word(&self, va: u64, value: u64) -> bool {
        match self.kernel_word(va) {
            Some(KernelWord::Long(w)) => w.store(value, Relaxed),
            Some(KernelWord::Int(w)) => w.store(value as u32, Relaxed),
            None => return false,
        }
        true
    }

    /// Read a pointer-sized word at kernel address `va`.
    pub(in crate::vmalloc) fn read_kernel_word(&self, va: u64) -> Option<u64> {
        match self.kernel_word(va)? {
            KernelWord::Long(w) => Some(w.load(Relaxed)),
            KernelWord::Int(w) => Some(w.load(Relaxed) as u64),
        }
    }

    /// Copy `len` bytes between vmalloc (or direct-map) addresses, page by page; an
    /// address that is not mapped is the kernel's page fault, reported, and the copy
    /// stops there.
    pub(super) fn vmalloc_copy(&self, dst: u64, src: u64, len: u64) -> Result<(), Corrupt> {
        let mut buf = [0u8; 256];
        let mut done = 0;
        while done < len {
            let (from, to) = (src.wrapping_add(done), dst.wrapping_add(done));
            let n = (len - done).min(buf.len() as u64) as usize;
            let n = n.min(bytes_to_page_end(from)).min(bytes_to_page_end(to));
            if !self.kernel_read_bytes(from, &mut buf[..n]) {
                return Err(self.vmalloc_fault(from, false));
            }
            if !self.kernel_write_bytes(to, &buf[..n]) {
                return Err(self.vmalloc_fault(to, true));
            }
            done += n as u64;
        }
        Ok(())
    }

    /// Fill `len` bytes at a vmalloc address with `byte` (stopping, reported, at an
    /// address that is not mapped).
    pub(super) fn vmalloc_fill(&self, addr: u64, byte: u8, len: u64) -> Result<(), Corrupt> {
        let buf = [byte; 256];
        let mut done = 0;
        while done < len {
            let at = addr.wrapping_add(done);
            let n = ((len - done).min(buf.len() as u64) as usize).min(bytes_to_page_end(at));
            if !self.kernel_write_bytes(at, &buf[..n]) {
                return Err(self.vmalloc_fault(at, true));
            }
            done += n as u64;
        }
        Ok(())
    }

    /// Read bytes (within one page) at a kernel virtual address.
    pub(super) fn kernel_read_bytes(&self, va: u64, buf: &mut [u8]) -> bool {
        self.kernel_virt_to_phys(va)
            .is_some_and(|phys| self.ram().read_bytes(phys, buf).is_ok())
    }

    /// Write bytes (within one page) at a kernel virtual address.
    pub(super) fn kernel_write_bytes(&self, va: u64, bytes: &[u8]) -> bool {
        self.kernel_virt_to_phys(va)
            .is_some_and(|phys| self.ram().write_bytes(phys, bytes).is_ok())
    }

    /// The kernel's BUG report for a vmalloc call in interrupt context.
    pub(super) fn vmalloc_bug_interrupt(&self, line: u32, what: &'static str) -> VmallocError {
        self.vmalloc_bug(line);
        VmallocError::InInterrupt(what)
    }

    /// `BUG()` in `mm/vmalloc.c`: `kernel BUG at mm/vmalloc.c:<line>!` and the oops.
    pub(in crate::vmalloc) fn vmalloc_bug(&self, line: u32) {
        self.vmalloc.stats.bugs.fetch_add(1, Relaxed);
        self.kernel_bug("mm/vmalloc.c", line);
    }

    /// A kernel `WARN` from vmalloc, counted.
    pub(super) fn vmalloc_warn(&self, site: crate::report::KernelSite, args: fmt::Arguments<'_>) {
        self.vmalloc.stats.bugs.fetch_add(1, Relaxed);
        crate::vmstat::VmEvents::add(&self.events().warn, 1);
        crate::report::warn!(self, true, site, "{args}");
    }

    /// A `WARN_ON_ONCE` of mm/vmalloc.c at `site`: counted every time, printed once.
    pub(super) fn vmalloc_warn_once(&self, site: crate::report::KernelSite) {
        self.vmalloc.stats.bugs.fetch_add(1, Relaxed);
        crate::vmstat::VmEvents::add(&self.events().warn, 1);
        crate::report::warn_on_once!(self, true, site);
    }

    /// `warn_alloc(gfp, NULL, fmt, ...)`: the allocation-failure line, unless `__GFP_NOWARN`.
    pub(super) fn vmalloc_warn_alloc(&self, gfp: Gfp, args: fmt::Arguments<'_>) {
        if gfp.contains(Gfp::__GFP_NOWARN) {
            return;
        }
        self.printk(format_args!(
            "{}: {}, mode:{:?}, nodemask=(null),cpuset=/,mems_allowed=0",
            self.platform().current_comm(),
            args,
            gfp
        ));
    }
}

/// A pointer-sized word of RAM.
pub(super) enum KernelWord<'a> {
    /// x86_64's 8 bytes.
    Long(&'a AtomicU64),
    /// i386's 4 bytes.
    Int(&'a AtomicU32),
}

fn bytes_to_page_end(va: u64) -> usize {
    PAGE_SIZE - (va as usize & (PAGE_SIZE - 1))
}
