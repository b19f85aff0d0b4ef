//! kvmalloc and friends (`mm/util.c` until the allocating half moved to `mm/slub.c` as
//! `__kvmalloc_node_noprof`, `kvfree` and `kvrealloc_noprof`).
//!
//! `kvmalloc` asks kmalloc first, because a physically contiguous block is cheaper to use
//! and fragments memory less in the long run, and falls back to vmalloc when kmalloc cannot
//! help:
//!
//! - a request of at most `PAGE_SIZE` is kmalloc's alone: it does not make sense to fall
//!   back to vmalloc for less than a page, so a failure there is the answer;
//! - above a page, kmalloc is asked gently ([`kmalloc_gfp_adjust`]): `__GFP_NOWARN` (there
//!   is a fallback, no need to warn), no direct reclaim unless the caller said
//!   `__GFP_RETRY_MAYFAIL` (it prefers contiguous memory and will wait for it), and no
//!   `__GFP_NOFAIL` (the vmalloc fallback implements that);
//! - only then vmalloc, with `VM_ALLOW_HUGE_VMAP` (callers of kvmalloc cannot assume
//!   anything about the pages behind the pointer, so 2 MiB mappings are fine);
//! - the fallback needs a caller that may sleep (`gfpflags_allow_blocking`): vmalloc makes
//!   page tables and takes pages with GFP_KERNEL-like flags;
//! - more than `INT_MAX` bytes is refused outright, with `WARN_ON_ONCE(!(flags &
//!   __GFP_NOWARN))`.
//!
//! # Which kernel
//!
//! The pieces follow different kernels, each named here:
//!
//! - the steps and their order are `__kvmalloc_node_noprof` of **Linux 6.16**: with the
//!   blocking check before the `INT_MAX` check, and without the `align` argument that
//!   6.17 added (`kvmalloc_node_align`; kmemlab's kvmalloc asks for alignment 1);
//! - the kmalloc flags are [`kmalloc_gfp_adjust`] of **Linux 6.16+** (clear
//!   `__GFP_DIRECT_RECLAIM`); 6.12–6.15 added `__GFP_NORETRY` instead, and before 6.12
//!   the same rules were written inline in `kvmalloc_node`;
//! - the blocking check is kept although **Linux 6.18** dropped it (vmalloc learned
//!   `GFP_NOWAIT`/`GFP_ATOMIC`, and kvmalloc passes `VM_ALLOW_HUGE_VMAP` only for
//!   blocking callers): the vmalloc underneath is **Linux 6.6**'s, which cannot;
//! - `kvrealloc(p, size, flags)` is the form of **Linux 6.12+** (`vrealloc`, then
//!   `krealloc`, then kvmalloc, copy and free); before 6.12 it took the old size too;
//! - [`Mm::kvfree_sensitive`] is the kernel's (`memzero_explicit(addr, len)`, then
//!   `kvfree`) except for a `len` beyond the allocation, which the kernel would clear past
//!   its end and kmemlab clamps to the allocation and reports.
//!
//! `kvfree` frees either kind by asking `is_vmalloc_addr`; `kvrealloc` uses `vrealloc` for
//! vmalloc memory and `krealloc` for kmalloc memory, and when krealloc cannot, allocates
//! with kvmalloc, copies and frees.
//!
//! Every failure is a [`KvmallocError`] that says which path failed and why. How many
//! kvmallocs each allocator served is counted in [`KvmallocStats`] ([`Mm::kvmalloc_stats`]).

use core::fmt;

use crate::addr::{VirtAddr, PAGE_SIZE};
use crate::arch::pgtable::PgProt;
use crate::gfp::Gfp;
use crate::percpu::EventCounter;
use crate::platform::Platform;
use crate::slab::kmalloc::{KMALLOC_MAX_SIZE, ZERO_SIZE_PTR};
use crate::slab::{CallSite, SlabError};
use crate::vmalloc::{VmFlags, VmallocError, NUMA_NO_NODE};
use crate::vmstat::VmEvents;
use crate::Mm;

/// `INT_MAX`: kvmalloc refuses anything larger ("Don't even allow crazy sizes").
///
/// ```
/// assert_eq!(kmemlab_mm::util::INT_MAX, 0x7fff_ffff);
/// ```
pub const INT_MAX: usize = i32::MAX as usize;

/// Why a kvmalloc-family call failed. Each variant names the path that failed.
///
/// ```
/// use kmemlab_mm::{Gfp, PAGE_SIZE};
/// use kmemlab_sim::{Machine, MachineConfig};
///
/// let m = Machine::new(MachineConfig { ram: 64 << 20, cpus: 1, ..Default::default() }).unwrap();
/// use kmemlab_mm::util::KvmallocError;
/// m.run(|mm| {
///     let e = mm.kvmalloc(64 << 20, Gfp::GFP_KERNEL).unwrap_err();
///     assert!(matches!(e, KvmallocError::Vmalloc { .. }), "{e}"); // more than the machine has
///     let e = mm.kvmalloc(1 << 31, Gfp::GFP_KERNEL | Gfp::__GFP_NOWARN).unwrap_err();
///     assert_eq!(e, KvmallocError::TooLarge { size: 1 << 31 });
/// });
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum KvmallocError {
    /// More than `INT_MAX` bytes: refused before vmalloc is asked.
    TooLarge {
        /// Bytes asked for.
        size: usize,
    },
    /// `kvmalloc_array` / `kvcalloc` whose `n * size` overflows (`check_mul_overflow`).
    Overflow {
        /// Elements.
        n: usize,
        /// Bytes per element.
        size: usize,
    },
    /// A node this machine does not have (it has node 0 only).
    NoSuchNode(i32),
    /// At most a page: kmalloc only, and kmalloc failed.
    Kmalloc {
        /// Bytes asked for.
        size: usize,
        /// kmalloc's error.
        error: SlabError,
    },
    /// kmalloc failed, and the flags do not allow blocking, which vmalloc needs: no
    /// fallback was tried.
    NoFallback {
        /// Bytes asked for.
        size: usize,
        /// The caller's flags.
        gfp: Gfp,
        /// kmalloc's error.
        kmalloc: SlabError,
    },
    /// kmalloc failed (more than KMALLOC_MAX_SIZE, or no memory for it with the flags
    /// [`kmalloc_gfp_adjust`] gave it: without direct reclaim, or with it when the caller
    /// said `__GFP_RETRY_MAYFAIL`), and so did the vmalloc fallback. (kmalloc's own error
    /// is not kept, so that the error stays small enough to return by value.)
    Vmalloc {
        /// Bytes asked for.
        size: usize,
        /// The caller's flags (they decide whether kmalloc could reclaim directly).
        gfp: Gfp,
        /// vmalloc's error.
        vmalloc: VmallocError,
    },
    /// `kvrealloc` of an address kmalloc refused (not the start of a live kmalloc
    /// object); nothing was allocated or freed.
    Krealloc(SlabError),
    /// `kvrealloc` of a vmalloc address that `vrealloc` refused or could not grow.
    Vrealloc(VmallocError),
    /// `kvfree` of a direct-map address that `kfree` refused.
    Kfree(SlabError),
    /// `kvfree` of a vmalloc address that `vfree` refused.
    Vfree(VmallocError),
    /// `kvfree_sensitive` was asked to clear more bytes than the allocation has (the
    /// kernel's `memzero_explicit(addr, len)` would overwrite what follows it). The
    /// allocation's own `size` bytes **were** cleared and it **was** freed, so nothing is
    /// leaked and no secret is left behind; the error (and a `WARNING` line) only reports
    /// the caller's wrong `len`. Do not free `addr` again.
    SensitiveLen {
        /// The allocation.
        addr: VirtAddr,
        /// Bytes asked to clear.
        len: usize,
        /// Bytes the allocation has.
        size: usize,
    },
}

impl fmt::Display for KvmallocError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            KvmallocError::TooLarge { size } => write!(
                f,
                "kvmalloc of {size} bytes: larger than INT_MAX ({INT_MAX}), refused"
            ),
            KvmallocError::Overflow { n, size } => write!(
                f,
                "kvmalloc_array: {n} x {size} bytes overflows (check_mul_overflow)"
            ),
            KvmallocError::NoSuchNode(node) => {
                write!(f, "kvmalloc_node: no NUMA node {node} (this machine has node 0 only)")
            }
            KvmallocError::Kmalloc { size, error } => write!(
                f,
                "kvmalloc of {size} bytes (at most a page: kmalloc only): {error}"
            ),
            KvmallocError::NoFallback { size, gfp, kmalloc } => write!(
                f,
                "kvmalloc of {size} bytes: kmalloc failed ({kmalloc}) and {gfp} does not allow blocking, so there is no vmalloc fallback"
            ),
            KvmallocError::Vmalloc { size, gfp, vmalloc } => {
                let kmalloc = if *size > KMALLOC_MAX_SIZE {
                    "larger than KMALLOC_MAX_SIZE"
                } else if kmalloc_gfp_adjust(*gfp, *size).contains(Gfp::__GFP_DIRECT_RECLAIM) {
                    "no memory for it even with direct reclaim (__GFP_RETRY_MAYFAIL)"
                } else {
                    "no memory for it without direct reclaim"
                };
                write!(
                    f,
                    "kvmalloc of {size} bytes: kmalloc failed ({kmalloc}), then the vmalloc fallback failed: {vmalloc}"
                )
            }
            KvmallocError::Krealloc(e) => write!(f, "kvrealloc: krealloc refused the address: {e}"),
            KvmallocError::Vrealloc(e) => write!(f, "kvrealloc: vrealloc failed: {e}"),
            KvmallocError::Kfree(e) => write!(f, "kvfree: kfree refused: {e}"),
            KvmallocError::Vfree(e) => write!(f, "kvfree: vfree refused: {e}"),
            KvmallocError::SensitiveLen { addr, len, size } => write!(
                f,
                "kvfree_sensitive({addr}, {len}): the allocation has only {size} bytes; cleared those {size} and freed it"
            ),
        }
    }
}

impl core::error::Error for KvmallocError {}

/// What kvmalloc has done, for the tour (kmemlab's own counters), summed over the CPUs.
///
/// Each CPU counts in its own per-CPU area ([`KvmallocEvents`]): a kvmalloc writes no
/// cache line that another CPU writes, as the kernel's per-CPU `vm_event_states` do.
///
/// ```
/// use kmemlab_mm::{Gfp, PAGE_SIZE};
/// use kmemlab_sim::{Machine, MachineConfig};
///
/// let m = Machine::new(MachineConfig { ram: 64 << 20, cpus: 1, ..Default::default() }).unwrap();
/// m.run(|mm| {
///     assert!(mm.kvmalloc(8 << 20, Gfp::GFP_NOWAIT).is_err()); // may not fall back
///     assert_eq!(mm.kvmalloc_stats().no_fallback, 1);
///     assert_eq!(mm.kvmalloc_stats().failures, 1);
/// });
/// ```
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq)]
pub struct KvmallocStats {
    /// kvmallocs that kmalloc served.
    pub kmalloc: u64,
    /// kvmallocs that fell back to vmalloc and got memory there.
    pub vmalloc: u64,
    /// kvmallocs that failed (every [`KvmallocError`] of an allocation).
    pub failures: u64,
    /// Failures with no vmalloc fallback because the flags do not allow blocking.
    pub no_fallback: u64,
    /// Requests above `INT_MAX` refused.
    pub too_large: u64,
}

/// One CPU's kvmalloc counters, in its per-CPU area: only that CPU writes them.
#[repr(C)]
#[derive(Default, zerocopy::FromBytes)]
pub struct KvmallocEvents {
    kmalloc: EventCounter,
    vmalloc: EventCounter,
    failures: EventCounter,
    no_fallback: EventCounter,
    too_large: EventCounter,
}

/// `kmalloc_gfp_adjust()` (`mm/slub.c` of Linux 6.16+): how kvmalloc asks kmalloc for more
/// than a page. `__GFP_NOWARN`, since there is a fallback; no direct reclaim unless the
/// caller prefers contiguous memory enough to say `__GFP_RETRY_MAYFAIL` (kswapd is still
/// woken to work in the background); `__GFP_NOFAIL` cleared, as the vmalloc fallback
/// implements it. (Linux 6.12–6.15 added `__GFP_NORETRY` instead of clearing direct
/// reclaim.) At most a page, the flags are the caller's.
///
/// ```
/// use kmemlab_mm::util::kmalloc_gfp_adjust;
/// use kmemlab_mm::Gfp;
///
/// let adjusted = kmalloc_gfp_adjust(Gfp::GFP_KERNEL | Gfp::__GFP_NOFAIL, 8192);
/// assert_eq!(adjusted, (Gfp::GFP_KERNEL & !Gfp::__GFP_DIRECT_RECLAIM) | Gfp::__GFP_NOWARN);
/// assert_eq!(kmalloc_gfp_adjust(Gfp::GFP_KERNEL, 4096), Gfp::GFP_KERNEL);
/// ```
pub fn kmalloc_gfp_adjust(gfp: Gfp, size: usize) -> Gfp {
    if size <= PAGE_SIZE {
        return gfp;
    }
    let mut gfp = gfp | Gfp::__GFP_NOWARN;
    if !gfp.contains(Gfp::__GFP_RETRY_MAYFAIL) {
        gfp.remove(Gfp::__GFP_DIRECT_RECLAIM);
    }
    gfp.remove(Gfp::__GFP_NOFAIL);
    gfp
}

impl<P: Platform> Mm<P> {
    /// kvmalloc's counters.
    ///
    /// ```
    /// use kmemlab_mm::{Gfp, PAGE_SIZE};
    /// use kmemlab_sim::{Machine, MachineConfig};
    ///
    /// let m = Machine::new(MachineConfig { ram: 64 << 20, cpus: 1, ..Default::default() }).unwrap();
    /// m.run(|mm| {
    ///     let a = mm.kvmalloc(100, Gfp::GFP_KERNEL).unwrap();
    ///     let b = mm.kvmalloc(8 << 20, Gfp::GFP_KERNEL).unwrap();
    ///     let stats = mm.kvmalloc_stats();
    ///     assert_eq!(stats.kmalloc, 1);
    ///     assert_eq!(stats.vmalloc, 1);
    ///     mm.kvfree(a).unwrap();
    ///     mm.kvfree(b).unwrap();
    /// });
    /// ```
    pub fn kvmalloc_stats(&self) -> KvmallocStats {
        let mut sum = KvmallocStats::default();
        for cpu in 0..self.platform().nr_cpus() {
            let e = &self.per_cpu(cpu).events.kvmalloc;
            sum.kmalloc += e.kmalloc.get();
            sum.vmalloc += e.vmalloc.get();
            sum.failures += e.failures.get();
            sum.no_fallback += e.no_fallback.get();
            sum.too_large += e.too_large.get();
        }
        sum
    }

    /// This CPU's kvmalloc counters.
    #[inline]
    fn kvmalloc_events(&self) -> &KvmallocEvents {
        &self.this_cpu().events.kvmalloc
    }

    /// `kvmalloc_node(size, gfp, node)`: kmalloc, or vmalloc if kmalloc cannot (see the
    /// [module](crate::util) doc for the rules). This machine has node 0 only (or
    /// `NUMA_NO_NODE`).
    ///
    /// ```
    /// use kmemlab_mm::{Gfp, PAGE_SIZE};
    /// use kmemlab_sim::{Machine, MachineConfig};
    ///
    /// let m = Machine::new(MachineConfig { ram: 64 << 20, cpus: 1, ..Default::default() }).unwrap();
    /// m.run(|mm| {
    ///     let p = mm.kvmalloc_node(2 * PAGE_SIZE, Gfp::GFP_KERNEL, 0).unwrap();
    ///     assert!(!mm.is_vmalloc_addr(p)); // kmalloc could
    ///     assert!(mm.kvmalloc_node(64, Gfp::GFP_KERNEL, 1).is_err()); // no node 1
    ///     mm.kvfree(p).unwrap();
    /// });
    /// ```
    #[track_caller]
    pub fn kvmalloc_node(
        &self,
        size: usize,
        gfp: Gfp,
        node: i32,
    ) -> Result<VirtAddr, KvmallocError> {
        self.kvmalloc_node_caller(size, gfp, node, CallSite::caller())
    }

    /// `kvmalloc(size, gfp)`.
    ///
    /// ```
    /// use kmemlab_mm::{Gfp, PAGE_SIZE};
    /// use kmemlab_sim::{Machine, MachineConfig};
    ///
    /// let m = Machine::new(MachineConfig { ram: 64 << 20, cpus: 1, ..Default::default() }).unwrap();
    /// m.run(|mm| {
    ///     let small = mm.kvmalloc(PAGE_SIZE, Gfp::GFP_KERNEL).unwrap();
    ///     let large = mm.kvmalloc(5 << 20, Gfp::GFP_KERNEL).unwrap(); // beyond KMALLOC_MAX_SIZE
    ///     assert!(!mm.is_vmalloc_addr(small));
    ///     assert!(mm.is_vmalloc_addr(large));
    ///     mm.kvfree(small).unwrap();
    ///     mm.kvfree(large).unwrap();
    /// });
    /// ```
    #[track_caller]
    pub fn kvmalloc(&self, size: usize, gfp: Gfp) -> Result<VirtAddr, KvmallocError> {
        self.kvmalloc_node_caller(size, gfp, NUMA_NO_NODE, CallSite::caller())
    }

    /// `kvzalloc(size, gfp)`: zeroed, whichever allocator serves it.
    ///
    /// ```
    /// use kmemlab_mm::{Gfp, PAGE_SIZE};
    /// use kmemlab_sim::{Machine, MachineConfig};
    ///
    /// let m = Machine::new(MachineConfig { ram: 64 << 20, cpus: 1, ..Default::default() }).unwrap();
    /// m.run(|mm| {
    ///     let p = mm.kvzalloc(6 << 20, Gfp::GFP_KERNEL).unwrap();
    ///     let mut buf = [0xffu8; 64];
    ///     mm.copy_from_kernel_virt(kmemlab_mm::VirtAddr(p.0 + (5 << 20)), &mut buf).unwrap();
    ///     assert_eq!(buf, [0; 64]);
    ///     mm.kvfree(p).unwrap();
    /// });
    /// ```
    #[track_caller]
    pub fn kvzalloc(&self, size: usize, gfp: Gfp) -> Result<VirtAddr, KvmallocError> {
        self.kvmalloc_node_caller(
            size,
            gfp | Gfp::__GFP_ZERO,
            NUMA_NO_NODE,
            CallSite::caller(),
        )
    }

    /// `kvmalloc_array(n, size, gfp)`: `n * size` bytes, refusing a product that overflows.
    ///
    /// ```
    /// use kmemlab_mm::{Gfp, PAGE_SIZE};
    /// use kmemlab_sim::{Machine, MachineConfig};
    ///
    /// let m = Machine::new(MachineConfig { ram: 64 << 20, cpus: 1, ..Default::default() }).unwrap();
    /// m.run(|mm| {
    ///     let p = mm.kvmalloc_array(1000, 8, Gfp::GFP_KERNEL).unwrap();
    ///     assert_eq!(mm.ksize(p), Ok(8192));
    ///     assert!(mm.kvmalloc_array(usize::MAX / 2, 3, Gfp::GFP_KERNEL).is_err()); // overflows
    ///     mm.kvfree(p).unwrap();
    /// });
    /// ```
    #[track_caller]
    pub fn kvmalloc_array(
        &self,
        n: usize,
        size: usize,
        gfp: Gfp,
    ) -> Result<VirtAddr, KvmallocError> {
        let bytes = n
            .checked_mul(size)
            .ok_or(KvmallocError::Overflow { n, size })?;
        self.kvmalloc_node_caller(bytes, gfp, NUMA_NO_NODE, CallSite::caller())
    }

    /// `kvcalloc(n, size, gfp)`: `kvmalloc_array`, zeroed.
    ///
    /// ```
    /// use kmemlab_mm::{Gfp, PAGE_SIZE};
    /// use kmemlab_sim::{Machine, MachineConfig};
    ///
    /// let m = Machine::new(MachineConfig { ram: 64 << 20, cpus: 1, ..Default::default() }).unwrap();
    /// m.run(|mm| {
    ///     let p = mm.kvcalloc(3, 4, Gfp::GFP_KERNEL).unwrap();
    ///     let mut buf = [0xffu8; 12];
    ///     mm.copy_from_kernel(p, &mut buf).unwrap();
    ///     assert_eq!(buf, [0; 12]);
    ///     mm.kvfree(p).unwrap();
    /// });
    /// ```
    #[track_caller]
    pub fn kvcalloc(&self, n: usize, size: usize, gfp: Gfp) -> Result<VirtAddr, KvmallocError> {
        let bytes = n
            .checked_mul(size)
            .ok_or(KvmallocError::Overflow { n, size })?;
        self.kvmalloc_node_caller(
            bytes,
            gfp | Gfp::__GFP_ZERO,
            NUMA_NO_NODE,
            CallSite::caller(),
        )
    }

    /// `kvmalloc_node` recording `caller` as the owner (the shell's script line).
    ///
    /// ```
    /// use kmemlab_mm::{Gfp, PAGE_SIZE};
    /// use kmemlab_sim::{Machine, MachineConfig};
    ///
    /// let m = Machine::new(MachineConfig { ram: 64 << 20, cpus: 1, ..Default::default() }).unwrap();
    /// use kmemlab_mm::slab::CallSite;
    /// m.run(|mm| {
    ///     let site = CallSite { file: "script.kmem", line: 3 };
    ///     let p = mm.kvmalloc_node_caller(64, Gfp::GFP_KERNEL, -1, site).unwrap();
    ///     mm.kvfree(p).unwrap();
    /// });
    /// ```
    pub fn kvmalloc_node_caller(
        &self,
        size: usize,
        gfp: Gfp,
        node: i32,
        caller: CallSite,
    ) -> Result<VirtAddr, KvmallocError> {
        let result = self.kvmalloc_try(size, gfp, node, caller);
        let events = self.kvmalloc_events();
        match &result {
            Ok(addr) if self.is_vmalloc_addr(*addr) => events.vmalloc.add(1),
            Ok(_) => events.kmalloc.add(1),
            Err(_) => events.failures.add(1),
        }
        result
    }

    /// `__kvmalloc_node_noprof()`, in the order the kernel takes its steps.
    fn kvmalloc_try(
        &self,
        size: usize,
        gfp: Gfp,
        node: i32,
        caller: CallSite,
    ) -> Result<VirtAddr, KvmallocError> {
        if node != NUMA_NO_NODE && node != 0 {
            return Err(KvmallocError::NoSuchNode(node));
        }
        let kmalloc = match self.kvmalloc_kmalloc_part(size, gfp, caller) {
            Ok(addr) => return Ok(addr),
            Err(e) => e,
        };
        // It does not make sense to fall back to vmalloc for sub-page requests.
        if size <= PAGE_SIZE {
            return Err(KvmallocError::Kmalloc {
                size,
                error: kmalloc,
            });
        }
        // Non-sleeping allocations are not supported by vmalloc.
        if !gfp.allows_blocking() {
            self.kvmalloc_events().no_fallback.add(1);
            return Err(KvmallocError::NoFallback { size, gfp, kmalloc });
        }
        // Don't even allow crazy sizes.
        if size > INT_MAX {
            self.kvmalloc_warn_too_large(gfp);
            return Err(KvmallocError::TooLarge { size });
        }
        self.__vmalloc_node_range(
            size,
            1,
            self.layout().vmalloc_start,
            self.layout().vmalloc_end,
            gfp,
            PgProt::kernel(self.profile()),
            VmFlags::VM_ALLOW_HUGE_VMAP,
            node,
            caller,
        )
        .map_err(|vmalloc| KvmallocError::Vmalloc { size, gfp, vmalloc })
    }

    /// kvmalloc's kmalloc attempt, with `kmalloc_gfp_adjust`ed flags. Above
    /// KMALLOC_MAX_SIZE the kernel's kmalloc fails at once (`order > MAX_PAGE_ORDER`, its
    /// warning hidden by `__GFP_NOWARN`); that answer is given here without asking the page
    /// allocator, which would count the hidden warning.
    fn kvmalloc_kmalloc_part(
        &self,
        size: usize,
        gfp: Gfp,
        caller: CallSite,
    ) -> Result<VirtAddr, SlabError> {
        if size > KMALLOC_MAX_SIZE {
            return Err(SlabError::TooLarge(size));
        }
        self.kmalloc_caller(size, kmalloc_gfp_adjust(gfp, size), caller)
    }

    /// `WARN_ON_ONCE(!(flags & __GFP_NOWARN))` for a request above INT_MAX: counted every
    /// time, printed once per boot.
    fn kvmalloc_warn_too_large(&self, gfp: Gfp) {
        self.kvmalloc_events().too_large.add(1);
        // 6.6 `kvmalloc_node()`: `if (unlikely(size > INT_MAX)) {
        // WARN_ON_ONCE(!(flags & __GFP_NOWARN)); return NULL; }`.
        const SITE: crate::report::KernelSite = crate::report::KernelSite {
            file: "mm/util.c",
            line: 632,
            func: "kvmalloc_node",
        };
        // Counted in the WARN event only when printed.
        if !gfp.contains(Gfp::__GFP_NOWARN) && self.warn_once_first(&SITE) {
            VmEvents::add(&self.events().warn, 1);
            self.warn_at(&SITE, format_args!(""));
        }
    }

    /// `kvfree(addr)`: `vfree` for a vmalloc address, else `kfree` (NULL and ZERO_SIZE_PTR
    /// are no-ops). From interrupt context, a vmalloc address is freed later by the CPU's
    /// kworker, as `vfree` does.
    ///
    /// ```
    /// use kmemlab_mm::{Gfp, PAGE_SIZE};
    /// use kmemlab_sim::{Machine, MachineConfig};
    ///
    /// let m = Machine::new(MachineConfig { ram: 64 << 20, cpus: 1, ..Default::default() }).unwrap();
    /// m.run(|mm| {
    ///     let k = mm.kvmalloc(64, Gfp::GFP_KERNEL).unwrap();
    ///     let v = mm.kvmalloc(8 << 20, Gfp::GFP_KERNEL).unwrap();
    ///     assert_eq!(mm.kvfree(k), Ok(()));
    ///     assert_eq!(mm.kvfree(v), Ok(()));
    ///     assert!(mm.kvfree(v).is_err()); // "Trying to vfree() nonexistent vm area"
    /// });
    /// ```
    #[track_caller]
    pub fn kvfree(&self, addr: VirtAddr) -> Result<(), KvmallocError> {
        if self.is_vmalloc_addr(addr) {
            self.vfree(addr).map_err(KvmallocError::Vfree)
        } else {
            self.kfree_caller(addr, CallSite::caller())
                .map_err(KvmallocError::Kfree)
        }
    }

    /// `kvfree_sensitive(addr, len)`: clear `len` bytes (`memzero_explicit`: the copy into
    /// simulated memory cannot be optimised away), then `kvfree`.
    ///
    /// A `len` beyond the allocation (`ksize`, or the vmalloc area without its guard page)
    /// is the caller's bug: the kernel would clear past the end. kmemlab clears the
    /// allocation's own bytes, frees it, prints a `WARNING` and returns
    /// [`KvmallocError::SensitiveLen`]: nothing is leaked and no secret stays behind.
    ///
    /// ```
    /// use kmemlab_mm::util::KvmallocError;
    /// use kmemlab_mm::{Gfp, PAGE_SIZE};
    /// use kmemlab_sim::{Machine, MachineConfig};
    ///
    /// let m = Machine::new(MachineConfig { ram: 64 << 20, cpus: 1, ..Default::default() }).unwrap();
    /// m.run(|mm| {
    ///     let p = mm.kvmalloc(32, Gfp::GFP_KERNEL).unwrap();
    ///     mm.copy_to_kernel_virt(p, b"secret").unwrap();
    ///     assert_eq!(mm.kvfree_sensitive(p, 6), Ok(()));
    ///
    ///     let q = mm.kvmalloc(8 << 20, Gfp::GFP_KERNEL).unwrap(); // vmalloc
    ///     // More than the area: its 8 MiB are cleared and it is freed all the same.
    ///     let e = mm.kvfree_sensitive(q, 16 << 20).unwrap_err();
    ///     assert_eq!(e, KvmallocError::SensitiveLen { addr: q, len: 16 << 20, size: 8 << 20 });
    ///     assert!(mm.find_vm_area(q).is_none()); // no longer allocated
    /// });
    /// assert!(m.take_console().iter().any(|l| l.contains("kvfree_sensitive")));
    /// ```
    #[track_caller]
    pub fn kvfree_sensitive(&self, addr: VirtAddr, len: usize) -> Result<(), KvmallocError> {
        if addr.0 <= ZERO_SIZE_PTR.0 {
            return Ok(());
        }
        let size = self.kvmalloc_usable_size(addr)?;
        self.memzero_kernel(addr, len.min(size));
        self.kvfree(addr)?;
        // kmemlab-only: 6.6 `kvfree_sensitive()` (mm/util.c) has no such check.
        const SITE: crate::report::KernelSite = crate::report::KernelSite {
            file: "mm/util.c",
            line: 0,
            func: "kvfree_sensitive",
        };
        if crate::report::warn!(self, len > size, SITE,
            "len {len} > {size} bytes allocated at {addr}; cleared {size} and freed (the kernel would clear past the end)")
        {
            VmEvents::add(&self.events().warn, 1);
            return Err(KvmallocError::SensitiveLen { addr, len, size });
        }
        Ok(())
    }

    /// The bytes usable at the start of a kvmalloc allocation: `ksize`, or the vmalloc
    /// area's size without its guard page.
    fn kvmalloc_usable_size(&self, addr: VirtAddr) -> Result<usize, KvmallocError> {
        if self.is_vmalloc_addr(addr) {
            let area = self
                .find_vm_area(addr)
                .filter(|a| a.addr == addr)
                .ok_or(KvmallocError::Vfree(VmallocError::NoSuchArea(addr)))?;
            Ok(area.usable_size() as usize)
        } else {
            self.ksize(addr).map_err(KvmallocError::Kfree)
        }
    }

    /// Zero `len` bytes at a kernel virtual address (direct map or vmalloc), page by page
    /// through the kernel's mappings. A live allocation is mapped throughout (its size was
    /// checked); an address that is not is the page fault `memzero_explicit` would take:
    /// reported, and the zeroing stops there.
    fn memzero_kernel(&self, addr: VirtAddr, len: usize) {
        const ZEROES: [u8; 512] = [0; 512];
        let mut done = 0;
        while done < len {
            let n = (len - done).min(ZEROES.len());
            let at = VirtAddr(addr.0.wrapping_add(done as u64));
            if let Err(bad) = self.copy_to_kernel_virt(at, &ZEROES[..n]) {
                self.kernel_fault(bad.0, true);
                return;
            }
            done += n;
        }
    }

    /// `kvrealloc(p, size, gfp)` (Linux 6.12+): the contents are kept up to the lesser of
    /// the old and new sizes. A vmalloc address goes to `vrealloc`; otherwise `krealloc`
    /// (with `kmalloc_gfp_adjust`ed flags) in place or anew, and if krealloc cannot,
    /// `kvmalloc`, a copy of `min(size, ksize(p))` bytes, and `kfree(p)`. `p` NULL is
    /// `kvmalloc`; size 0 frees (returning ZERO_SIZE_PTR, or NULL for vmalloc memory). On
    /// failure `p` is untouched.
    ///
    /// ```
    /// use kmemlab_mm::{Gfp, PAGE_SIZE};
    /// use kmemlab_sim::{Machine, MachineConfig};
    ///
    /// let m = Machine::new(MachineConfig { ram: 64 << 20, cpus: 1, ..Default::default() }).unwrap();
    /// m.run(|mm| {
    ///     let p = mm.kvmalloc(16, Gfp::GFP_KERNEL).unwrap();
    ///     mm.copy_to_kernel_virt(p, b"moved along").unwrap();
    ///     let q = mm.kvrealloc(p, 6 << 20, Gfp::GFP_KERNEL).unwrap(); // to vmalloc
    ///     assert!(mm.is_vmalloc_addr(q));
    ///     let mut buf = [0u8; 11];
    ///     mm.copy_from_kernel_virt(q, &mut buf).unwrap();
    ///     assert_eq!(&buf, b"moved along");
    ///     mm.kvfree(q).unwrap();
    /// });
    /// ```
    #[track_caller]
    pub fn kvrealloc(&self, p: VirtAddr, size: usize, gfp: Gfp) -> Result<VirtAddr, KvmallocError> {
        let caller = CallSite::caller();
        if self.is_vmalloc_addr(p) {
            return self.vrealloc(p, size, gfp).map_err(KvmallocError::Vrealloc);
        }
        match self.krealloc_within_kmalloc_limit(p, size, kmalloc_gfp_adjust(gfp, size)) {
            Ok(n) => return Ok(n),
            // Out of memory, or too large for kmalloc: fall back to kvmalloc.
            Err(SlabError::Alloc(_) | SlabError::TooLarge(_)) => {}
            Err(e) => return Err(KvmallocError::Krealloc(e)),
        }
        // Known to be kmalloc's (or NULL) before anything is allocated.
        let old_size = self.ksize_or_zero(p).map_err(KvmallocError::Krealloc)?;
        let n = self.kvmalloc_node_caller(size, gfp, NUMA_NO_NODE, caller)?;
        if old_size > 0 {
            self.copy_kernel(n, p, size.min(old_size));
            if let Err(e) = self.kfree_caller(p, caller) {
                // Refused (and reported): give the new memory back, keep the old.
                let _ = self.kvfree(n);
                return Err(KvmallocError::Kfree(e));
            }
        }
        Ok(n)
    }

    /// `krealloc`, answering "too large" for more than KMALLOC_MAX_SIZE without asking the
    /// page allocator, as [`Mm::kvmalloc`]'s kmalloc attempt does (no kmalloc object is
    /// that large, so it cannot be done in place either).
    fn krealloc_within_kmalloc_limit(
        &self,
        p: VirtAddr,
        size: usize,
        gfp: Gfp,
    ) -> Result<VirtAddr, SlabError> {
        if size > KMALLOC_MAX_SIZE {
            return Err(SlabError::TooLarge(size));
        }
        self.krealloc(p, size, gfp)
    }

    /// `ksize(p)`, 0 for NULL and ZERO_SIZE_PTR.
    fn ksize_or_zero(&self, p: VirtAddr) -> Result<usize, SlabError> {
        if p.0 <= ZERO_SIZE_PTR.0 {
            return Ok(0);
        }
        self.ksize(p)
    }

    /// Copy `len` bytes between kernel virtual addresses (direct map or vmalloc). Both
    /// are live allocations of at least `len` bytes; an address that is not mapped is the
    /// page fault `memcpy` would take: reported, and the copy stops there.
    fn copy_kernel(&self, dst: VirtAddr, src: VirtAddr, len: usize) {
        let mut buf = [0u8; 512];
        let mut done = 0;
        while done < len {
            let n = (len - done).min(buf.len());
            let at = done as u64;
            let from = VirtAddr(src.0.wrapping_add(at));
            if let Err(bad) = self.copy_from_kernel_virt(from, &mut buf[..n]) {
                self.kernel_fault(bad.0, false);
                return;
            }
            let to = VirtAddr(dst.0.wrapping_add(at));
            if let Err(bad) = self.copy_to_kernel_virt(to, &buf[..n]) {
                self.kernel_fault(bad.0, true);
                return;
            }
            done += n;
        }
    }
}
