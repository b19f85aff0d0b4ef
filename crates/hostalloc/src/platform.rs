//! [`HostPlatform`]: the kernel core's [`Platform`] over a plain region of the host
//! process's own memory. No simulator: no MMU model, no simulated CPUs, no devices.
//!
//! - RAM is one anonymous memory file (`memfd_create`) mapped shared at a 4 MiB-aligned
//!   host address, so that physical address `p` is host byte `base + p`, and a buddy block
//!   of any order (at most 4 MiB) is as aligned in the host as it is physically.
//! - The vmalloc window: a reservation of host address space in which
//!   [`crate::Kmemlab`] maps the pages of each vmalloc area (the same file pages, mapped a
//!   second time), so that a vmalloc address becomes a host address as a real MMU makes it
//!   one. The host address of vmalloc address `va` is `window + (va - VMALLOC_START)`.
//! - CPUs are slots a host thread claims for the length of one call into the kernel
//!   ([`HostPlatform::claim_cpu`]): at most one thread runs as a CPU at a time, as the
//!   [`Platform`] contract asks, and a thread goes back to the same CPU while it is free,
//!   so the per-CPU lists and slabs stay warm.

use core::cell::Cell;
use core::fmt;
use core::sync::atomic::Ordering::{AcqRel, Acquire, Relaxed, Release};
use core::sync::atomic::{AtomicBool, AtomicU64, AtomicU8, AtomicUsize};

use kmemlab_mm::{
    Hardware, IrqFlags, KernelHooks, MemoryRegion, PhysAddr, VirtAddr, MAX_PAGE_ORDER, PAGE_SIZE,
};

use crate::sys::{self, HostError};
use kmemlab_mm::slab::sheaf::SlabPercpu;

/// The most CPUs a host platform may have.
pub const MAX_HOST_CPUS: usize = 64;

/// The host alignment of RAM: the largest buddy block (`PAGE_SIZE << MAX_PAGE_ORDER`).
pub const RAM_ALIGN: u64 = (PAGE_SIZE as u64) << MAX_PAGE_ORDER;

const NO_CPU: usize = usize::MAX;

// A CPU's state while a thread waits in `run_on_cpu` (the simulator's scheme).
const IPI_RUNNING: u8 = 0;
const IPI_PARKED: u8 = 1;
const IPI_BORROWED: u8 = 2;

thread_local! {
    // Const-initialised and without a destructor: usable from a global allocator at any
    // point of a thread's life, and no allocation to set up.
    static CURRENT_CPU: Cell<usize> = const { Cell::new(NO_CPU) };
    static CPU_HINT: Cell<usize> = const { Cell::new(NO_CPU) };
}

/// What a host platform is made of.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct HostConfig {
    /// Bytes of RAM (a multiple of [`RAM_ALIGN`], at least 64 MiB).
    pub ram_bytes: u64,
    /// Bytes of host address space for vmalloc areas (reserved, not committed).
    pub vmalloc_window: u64,
    /// CPUs (1 ..= [`MAX_HOST_CPUS`]).
    pub cpus: usize,
    /// The seed of the kernel's random choices (freelist order).
    pub seed: u64,
    /// Echo kernel messages (`printk`) to standard error.
    pub echo_console: bool,
    /// The slab allocator's per-CPU layer: Linux 6.6's CPU slab (the default) or 6.18's
    /// sheaves (`--slab-percpu` of the simulator).
    pub slab_percpu: SlabPercpu,
}

impl HostConfig {
    /// 1 GiB of RAM, a 16 GiB vmalloc window (vmalloc picks the lowest free addresses, so
    /// the areas of 1 GiB of RAM stay far below it), 8 CPUs, seed 0, messages echoed, the
    /// CPU slab.
    pub const fn new() -> HostConfig {
        HostConfig {
            ram_bytes: 1 << 30,
            vmalloc_window: 16 << 30,
            cpus: 8,
            seed: 0,
            echo_console: true,
            slab_percpu: SlabPercpu::CpuSlab,
        }
    }
}

impl Default for HostConfig {
    fn default() -> Self {
        HostConfig::new()
    }
}

/// Why a host platform could not be built.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum HostPlatformError {
    /// A RAM size that is not a multiple of [`RAM_ALIGN`] or is below 64 MiB.
    BadRamSize(u64),
    /// A CPU count outside 1 ..= [`MAX_HOST_CPUS`].
    BadCpuCount(usize),
    /// The host refused a mapping.
    Host(HostError),
}

impl fmt::Display for HostPlatformError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HostPlatformError::BadRamSize(n) => write!(
                f,
                "RAM of {n} bytes: must be at least 64 MiB and a multiple of {RAM_ALIGN}"
            ),
            HostPlatformError::BadCpuCount(n) => {
                write!(f, "{n} CPUs: must be 1 ..= {MAX_HOST_CPUS}")
            }
            HostPlatformError::Host(e) => write!(f, "{e}"),
        }
    }
}

impl std::error::Error for HostPlatformError {}

/// One CPU slot, alone on its cache line: the claiming thread writes `owner` and
/// `irqs_enabled` on every call, and a neighbour's slot on the same line would make two
/// CPUs' threads write one line.
#[repr(align(64))]
struct CpuSlot {
    /// A thread runs as this CPU.
    owner: AtomicBool,
    /// `IPI_*`: whether its thread waits in `run_on_cpu` and may be borrowed.
    ipi: AtomicU8,
    /// Interrupts enabled (there are none to deliver; the flag is the kernel's state).
    irqs_enabled: AtomicBool,
}

impl CpuSlot {
    const fn new() -> CpuSlot {
        CpuSlot {
            owner: AtomicBool::new(false),
            ipi: AtomicU8::new(IPI_RUNNING),
            irqs_enabled: AtomicBool::new(true),
        }
    }
}

/// The host memory behind RAM and vmalloc areas.
struct HostRam {
    fd: i32,
    /// Host address of physical address 0 (RAM_ALIGN-aligned).
    base: *mut u8,
    size: u64,
    /// The reservation `base` was carved from (for release).
    reservation: (*mut u8, usize),
    window: *mut u8,
    window_size: u64,
    map: [MemoryRegion; 1],
}

impl HostRam {
    fn new(size: u64, window_size: u64) -> Result<HostRam, HostError> {
        let fd = sys::memory_file(size)?;
        let fail = |e| {
            sys::close(fd);
            e
        };
        let reserved_len = (size + RAM_ALIGN) as usize;
        let reservation = sys::reserve(reserved_len).map_err(fail)?;
        let misalign = (reservation as u64).wrapping_neg() % RAM_ALIGN;
        let base = reservation.wrapping_add(misalign as usize);
        if let Err(e) = sys::map_file_at(base, size as usize, fd, 0) {
            sys::release(reservation, reserved_len);
            return Err(fail(e));
        }
        let window = match sys::reserve(window_size as usize) {
            Ok(w) => w,
            Err(e) => {
                sys::release(reservation, reserved_len);
                return Err(fail(e));
            }
        };
        Ok(HostRam {
            fd,
            base,
            size,
            reservation: (reservation, reserved_len),
            window,
            window_size,
            map: [MemoryRegion {
                start: PhysAddr(0),
                end: PhysAddr(size),
            }],
        })
    }
}

impl Drop for HostRam {
    fn drop(&mut self) {
        sys::release(self.window, self.window_size as usize);
        sys::release(self.reservation.0, self.reservation.1);
        sys::close(self.fd);
    }
}

/// The kernel's platform on the host: RAM in host memory, CPUs claimed by threads.
pub struct HostPlatform {
    ram: HostRam,
    nr_cpus: usize,
    cpus: [CpuSlot; MAX_HOST_CPUS],
    next_hint: AtomicUsize,
    /// Boot is over: from now on every thread that calls into the kernel holds a claim.
    booted: AtomicBool,
    echo_console: AtomicBool,
    printk_lines: AtomicU64,
    tlb_flushes: AtomicU64,
}

// SAFETY: the raw pointers name mappings this platform owns for its whole life and that
// any thread may use; who touches which bytes when is the kernel's business (its locks
// and the one-thread-per-CPU rule `claim_cpu` enforces).
unsafe impl Send for HostPlatform {}
// SAFETY: as above; every other field is an atomic.
unsafe impl Sync for HostPlatform {}

impl HostPlatform {
    /// Map RAM and reserve the vmalloc window. Allocates nothing on the Rust heap.
    pub fn new(config: &HostConfig) -> Result<HostPlatform, HostPlatformError> {
        if config.ram_bytes < (64 << 20) || !config.ram_bytes.is_multiple_of(RAM_ALIGN) {
            return Err(HostPlatformError::BadRamSize(config.ram_bytes));
        }
        if !(1..=MAX_HOST_CPUS).contains(&config.cpus) {
            return Err(HostPlatformError::BadCpuCount(config.cpus));
        }
        let ram = HostRam::new(config.ram_bytes, config.vmalloc_window)
            .map_err(HostPlatformError::Host)?;
        Ok(HostPlatform {
            ram,
            nr_cpus: config.cpus,
            cpus: [const { CpuSlot::new() }; MAX_HOST_CPUS],
            next_hint: AtomicUsize::new(0),
            booted: AtomicBool::new(false),
            echo_console: AtomicBool::new(config.echo_console),
            printk_lines: AtomicU64::new(0),
            tlb_flushes: AtomicU64::new(0),
        })
    }

    /// Bytes of RAM.
    pub fn ram_bytes(&self) -> u64 {
        self.ram.size
    }

    /// The physical address behind host address `addr`, if it is inside RAM.
    #[inline]
    pub fn host_to_phys(&self, addr: usize) -> Option<u64> {
        let off = (addr as u64).wrapping_sub(self.ram.base as u64);
        (off < self.ram.size).then_some(off)
    }

    /// The offset of host address `addr` inside the vmalloc window, if it is inside it.
    #[inline]
    pub fn window_offset(&self, addr: usize) -> Option<u64> {
        let off = (addr as u64).wrapping_sub(self.ram.window as u64);
        (off < self.ram.window_size).then_some(off)
    }

    /// Bytes of the vmalloc window.
    pub fn window_size(&self) -> u64 {
        self.ram.window_size
    }

    /// The host address `offset` bytes into the vmalloc window (`offset` below
    /// [`HostPlatform::window_size`]).
    pub fn window_addr(&self, offset: u64) -> *mut u8 {
        self.ram.window.wrapping_add(offset as usize)
    }

    /// Map `len` bytes of RAM from physical address `phys` at `offset` in the window.
    pub(crate) fn alias(&self, offset: u64, phys: u64, len: u64) -> Result<(), HostError> {
        sys::map_file_at(self.window_addr(offset), len as usize, self.ram.fd, phys)
    }

    /// Drop whatever is mapped at `[offset, offset + len)` of the window.
    pub(crate) fn unalias(&self, offset: u64, len: u64) -> Result<(), HostError> {
        sys::unmap_to_reserved(self.window_addr(offset), len as usize)
    }

    /// Kernel messages printed so far.
    pub fn printk_lines(&self) -> u64 {
        self.printk_lines.load(Relaxed)
    }

    /// Echo kernel messages to standard error, or not.
    pub fn set_echo_console(&self, echo: bool) {
        self.echo_console.store(echo, Relaxed);
    }

    /// Range flushes the kernel asked for (vmalloc's lazy purges).
    pub fn tlb_flushes(&self) -> u64 {
        self.tlb_flushes.load(Relaxed)
    }

    /// Run as a CPU until the claim is dropped: the thread's own CPU if it is free, else
    /// the first free one (spinning while all are busy).
    #[inline]
    pub fn claim_cpu(&self) -> CpuClaim<'_> {
        let n = self.nr_cpus;
        let held = CURRENT_CPU.get();
        if held < n && self.cpus[held].owner.load(Relaxed) {
            // This thread runs as `held` already: a call made while it holds its claim
            // (a host allocation inside `Kmemlab::with_cpu`, with the kernel as the global
            // allocator) stays on that CPU, between two kernel calls, instead of waiting
            // for a CPU it holds itself (for ever, with one CPU).
            return CpuClaim {
                platform: self,
                cpu: held,
                previous: held,
                nested: true,
            };
        }
        let hint = CPU_HINT.get();
        let start = if hint < n {
            hint
        } else {
            self.next_hint.fetch_add(1, Relaxed) % n
        };
        loop {
            for i in 0..n {
                let cpu = (start + i) % n;
                if self.cpus[cpu]
                    .owner
                    .compare_exchange(false, true, Acquire, Relaxed)
                    .is_ok()
                {
                    CPU_HINT.set(cpu);
                    return CpuClaim {
                        platform: self,
                        cpu,
                        previous: CURRENT_CPU.replace(cpu),
                        nested: false,
                    };
                }
            }
            std::thread::yield_now();
        }
    }

    #[inline]
    fn current(&self) -> usize {
        let cpu = CURRENT_CPU.get();
        if cpu < self.nr_cpus {
            cpu
        } else {
            self.unclaimed()
        }
    }

    /// A thread holding no claim is the boot CPU while boot runs, before the platform is
    /// shared. After boot it would be a second thread running as CPU 0 beside the one
    /// that claimed it, breaking the promise this platform makes to the kernel
    /// ([`Hardware`]'s safety contract): such a thread is stopped here instead (a thread
    /// spawned inside [`crate::Kmemlab::with_cpu`] that calls the kernel itself, say).
    #[cold]
    #[inline(never)]
    fn unclaimed(&self) -> usize {
        if self.booted.load(Acquire) {
            panic!("a thread that holds no CPU claim called into the booted kernel: enter it through Kmemlab::with_cpu (or HostPlatform::claim_cpu)");
        }
        0
    }

    /// Boot is over: from now on a thread must claim a CPU to call into the kernel.
    pub(crate) fn finish_boot(&self) {
        self.booted.store(true, Release);
    }

    fn borrow_cpu(&self, cpu: usize) -> bool {
        let target = &self.cpus[cpu];
        loop {
            if target
                .owner
                .compare_exchange(false, true, Acquire, Relaxed)
                .is_ok()
            {
                return true;
            }
            if target
                .ipi
                .compare_exchange(IPI_PARKED, IPI_BORROWED, Acquire, Relaxed)
                .is_ok()
            {
                return false;
            }
            std::thread::yield_now();
        }
    }
}

/// A thread's claim on a CPU; dropping it frees the CPU (unless the thread held it
/// already when it claimed: then the outer claim frees it).
pub struct CpuClaim<'a> {
    platform: &'a HostPlatform,
    cpu: usize,
    previous: usize,
    nested: bool,
}

impl CpuClaim<'_> {
    /// The CPU claimed.
    pub fn cpu(&self) -> usize {
        self.cpu
    }
}

impl Drop for CpuClaim<'_> {
    #[inline]
    fn drop(&mut self) {
        if self.nested {
            return;
        }
        CURRENT_CPU.set(self.previous);
        self.platform.cpus[self.cpu].owner.store(false, Release);
    }
}

/// A `fmt::Write` into a fixed buffer: `printk` formats without allocating.
struct LineBuf {
    bytes: [u8; 512],
    len: usize,
}

impl fmt::Write for LineBuf {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        let room = self.bytes.len() - 1 - self.len;
        let take = s.len().min(room);
        self.bytes[self.len..self.len + take].copy_from_slice(&s.as_bytes()[..take]);
        self.len += take;
        Ok(())
    }
}

/// No tasks, no shrinkers and no injected interrupts: the defaults, but for the name in
/// kernel messages, which says whose allocator printed them.
impl KernelHooks for HostPlatform {
    fn current_comm(&self) -> &str {
        "hostalloc"
    }
}

// SAFETY: `phys_mem` is the base of a shared mapping of the RAM file covering every byte
// of `memory_map` (one range, `[0, ram_bytes)`) for as long as the platform lives, and
// nothing but the kernel writes it, except through the vmalloc window aliases the kernel
// itself handed out. `claim_cpu` and `run_on_cpu` let at most one thread run as a CPU.
unsafe impl Hardware for HostPlatform {
    fn nr_cpus(&self) -> usize {
        self.nr_cpus
    }

    #[inline]
    fn smp_processor_id(&self) -> usize {
        self.current()
    }

    #[inline]
    fn local_irq_save(&self) -> IrqFlags {
        let flag = &self.cpus[self.current()].irqs_enabled;
        IrqFlags {
            were_enabled: flag.swap(false, Relaxed),
        }
    }

    #[inline]
    fn local_irq_restore(&self, flags: IrqFlags) {
        self.cpus[self.current()]
            .irqs_enabled
            .store(flags.were_enabled, Relaxed);
    }

    #[inline]
    fn irqs_disabled(&self) -> bool {
        !self.cpus[self.current()].irqs_enabled.load(Relaxed)
    }

    #[inline]
    fn irqs_disabled_on(&self, cpu: usize) -> bool {
        !self.cpus[cpu].irqs_enabled.load(Relaxed)
    }

    fn memory_map(&self) -> &[MemoryRegion] {
        &self.ram.map
    }

    fn phys_mem(&self) -> *mut u8 {
        self.ram.base
    }

    fn flush_tlb_kernel_range(&self, _start: VirtAddr, _end: VirtAddr) {
        // The host's own MMU holds the window's translations; `Kmemlab` removes an area's
        // alias before `vfree`, so no stale host translation outlives the kernel's.
        self.tlb_flushes.fetch_add(1, Relaxed);
    }

    fn clock_ns(&self) -> u64 {
        sys::monotonic_ns()
    }

    fn printk(&self, args: fmt::Arguments<'_>) {
        self.printk_lines.fetch_add(1, Relaxed);
        if !self.echo_console.load(Relaxed) {
            return;
        }
        let mut line = LineBuf {
            bytes: [0; 512],
            len: 0,
        };
        let _ = fmt::Write::write_fmt(&mut line, args);
        line.bytes[line.len] = b'\n';
        sys::write_stderr(&line.bytes[..=line.len]);
    }

    fn run_on_cpu(&self, cpu: usize, f: &mut dyn FnMut()) {
        let me = self.current();
        if cpu == me || cpu >= self.nr_cpus {
            return f();
        }
        // An IPI: run as `cpu` once it is free, or once its thread is itself parked here;
        // while waiting, this CPU may be borrowed the same way (so two CPUs calling each
        // other cannot wait for ever).
        self.cpus[me].ipi.store(IPI_PARKED, Release);
        let claimed_idle = self.borrow_cpu(cpu);
        let previous = CURRENT_CPU.replace(cpu);
        f();
        CURRENT_CPU.set(previous);
        if claimed_idle {
            self.cpus[cpu].owner.store(false, Release);
        } else {
            self.cpus[cpu].ipi.store(IPI_PARKED, Release);
        }
        // Leave the parked state only when nobody is running as this CPU.
        while self.cpus[me]
            .ipi
            .compare_exchange(IPI_PARKED, IPI_RUNNING, AcqRel, Relaxed)
            .is_err()
        {
            std::thread::yield_now();
        }
    }
}
