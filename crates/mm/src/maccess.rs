//! Copies to and from kernel virtual memory that fail instead of faulting: the idea of
//! `copy_from_kernel_nofault()` / `copy_to_kernel_nofault()` (`mm/maccess.c`, Linux
//! 6.6), for tests, tools and the kvmalloc family ([`crate::util`]), which copy through
//! vmalloc memory.
//!
//! An address is reached as the CPU would reach it: the direct map, else a walk of the
//! kernel page tables ([`Mm::kernel_virt_to_phys`], vmalloc's), so vmalloc, `vmap` and
//! `vm_map_ram` areas and HighMem pages are reachable. The copy goes page by page and
//! stops at the first address with no RAM behind it, returning that address. No locks.
//!
//! Start reading at [`Mm::copy_from_kernel_virt`].

use crate::addr::{VirtAddr, PAGE_SIZE};
use crate::platform::Platform;
use crate::Mm;

/// Bytes from `va` to the end of its page.
fn bytes_to_page_end(va: u64) -> usize {
    PAGE_SIZE - (va as usize & (PAGE_SIZE - 1))
}

impl<P: Platform> Mm<P> {
    /// Copy bytes out of kernel virtual memory at `va`: the direct map, or any address the
    /// kernel page tables map (vmalloc, `vmap` and `vm_map_ram` areas, HighMem pages
    /// included), page by page as the CPU would reach them. Fails with the first address
    /// that is not mapped to RAM, having copied the bytes before it.
    pub fn copy_from_kernel_virt(&self, va: VirtAddr, buf: &mut [u8]) -> Result<(), VirtAddr> {
        let mut done = 0;
        while done < buf.len() {
            let Some(at) = va.0.checked_add(done as u64) else {
                return Err(va);
            };
            let n = (buf.len() - done).min(bytes_to_page_end(at));
            let copied = self.kernel_virt_to_phys(at).is_some_and(|phys| {
                self.ram()
                    .read_bytes(phys, &mut buf[done..done + n])
                    .is_ok()
            });
            if !copied {
                return Err(VirtAddr(at));
            }
            done += n;
        }
        Ok(())
    }

    /// Copy bytes into kernel virtual memory at `va`, as [`Mm::copy_from_kernel_virt`]
    /// reads it.
    pub fn copy_to_kernel_virt(&self, va: VirtAddr, bytes: &[u8]) -> Result<(), VirtAddr> {
        let mut done = 0;
        while done < bytes.len() {
            let Some(at) = va.0.checked_add(done as u64) else {
                return Err(va);
            };
            let n = (bytes.len() - done).min(bytes_to_page_end(at));
            let copied = self
                .kernel_virt_to_phys(at)
                .is_some_and(|phys| self.ram().write_bytes(phys, &bytes[done..done + n]).is_ok());
            if !copied {
                return Err(VirtAddr(at));
            }
            done += n;
        }
        Ok(())
    }
}
