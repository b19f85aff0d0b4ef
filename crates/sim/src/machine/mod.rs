//! The simulated machine: RAM, CPUs, execution contexts, a console, and the kernel
//! booted on them.
//!
//! Where things are: this file holds [`Machine`] (boot, reboot, running code as a CPU in a
//! context, sysctl, the console and panic state, kswapd); `config.rs` the shape of a
//! machine ([`MachineConfig`]) and its errors ([`SimError`]); `platform.rs` [`SimPlatform`],
//! what the kernel sees through the `Hardware` and `KernelHooks` traits (CPUs, interrupts
//! and their injection, TLB flushes, clock, console, shrinkers). Start at [`Machine::new`].

use std::marker::PhantomData;
use std::ops::Deref;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};

use kmemlab_mm::check::CheckError;
use kmemlab_mm::dma::SwiotlbConfig;
use kmemlab_mm::page_alloc::check::CheckReport;
use kmemlab_mm::sysctl::Sysctl;
use kmemlab_mm::vmscan::KswapdRun;
use kmemlab_mm::{BootConfig, Context, Hardware, Mm};

use crate::cpu::{self, Cpu};
use crate::pagecache::PageCache;
use crate::ram::Ram;

mod config;
mod platform;

pub use config::{MachineConfig, SimError};
use platform::NEXT_MACHINE_ID;
pub use platform::{IrqHandler, SharedShrinker, SimPlatform};

/// How `panic()` begins its line (`kernel/panic.c`).
const PANIC_PREFIX: &str = "Kernel panic - not syncing: ";

/// The smallest machine: 16 MiB.
pub const MIN_RAM: u64 = 16 << 20;
/// The largest machine: 256 GiB (lazily backed; its mem_map alone takes 2 GiB of host memory).
pub const MAX_RAM: u64 = 256 << 30;
/// The most CPUs.
pub const MAX_CPUS: usize = 256;

/// A booted machine.
pub struct Machine {
    /// On the heap: `Mm` is about 130 KB of inline tables (no `alloc` in the core), and a
    /// `Machine` moved by value through unoptimised frames would cost that much stack at
    /// each move.
    mm: Box<Mm<SimPlatform>>,
    config: MachineConfig,
    page_cache: Arc<PageCache>,
    /// What kswapd did the last time a CPU ran it.
    last_kswapd: Mutex<KswapdRun>,
    /// The DMA-capable devices on the bus.
    dma_devices: Mutex<Vec<Arc<crate::device::DmaDevice>>>,
    /// The `swiotlb=` options it was booted with (a reboot boots with them again).
    swiotlb: SwiotlbConfig,
    /// The `Kernel panic - not syncing: …` line, once the console has shown one.
    panic_line: Mutex<Option<String>>,
}

/// The kernel as the calling thread holds it through [`Machine::mm`]: CPU 0 (unless the
/// thread already ran as a CPU), given back when the last of the thread's `MmRef`s (and of
/// the `on_cpu(0)` entries made under one) is dropped. It stays on the thread that took it.
pub struct MmRef<'m> {
    mm: &'m Mm<SimPlatform>,
    /// Whether this borrow holds CPU 0 ([`SimPlatform::hold_boot_cpu`]), and so gives its
    /// hold back.
    claimed: bool,
    /// The claim is the thread's: not `Send`.
    _thread_bound: PhantomData<*const ()>,
}

impl Deref for MmRef<'_> {
    type Target = Mm<SimPlatform>;

    fn deref(&self) -> &Mm<SimPlatform> {
        self.mm
    }
}

impl Drop for MmRef<'_> {
    fn drop(&mut self) {
        if self.claimed {
            self.mm.platform().release_boot_cpu();
        }
    }
}

/// Run `f` as CPU 0 on a kernel the calling thread has to itself (`&mut`: a sysctl
/// write), as [`Machine::mm`] would, without entering a context. CPU 0 is given back also
/// when `f` panics (kept, it would stop every other thread's `Machine::mm` for ever).
fn as_boot_cpu<R>(mm: &mut Mm<SimPlatform>, f: impl FnOnce(&mut Mm<SimPlatform>) -> R) -> R {
    let previous = mm.platform().cpus[0]
        .owner
        .swap(cpu::thread_token(), Ordering::Acquire);
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| f(&mut *mm)));
    mm.platform().cpus[0]
        .owner
        .store(previous, Ordering::Release);
    result.unwrap_or_else(|panic| std::panic::resume_unwind(panic))
}

/// procps' message for a key with no file under `/proc/sys`.
fn unknown_sysctl(key: &str) -> String {
    let path = key
        .strip_prefix("/proc/sys/")
        .map_or_else(|| key.replace('.', "/"), str::to_string);
    format!("sysctl: cannot stat /proc/sys/{path}: No such file or directory")
}

/// Write `value` to the tunable `key` through its handler; procps' message on failure
/// (`sysctl: setting key "vm.NAME": Invalid argument (…)`).
fn sysctl_write(mm: &mut Mm<SimPlatform>, key: &str, value: &str) -> Result<(), String> {
    let s = Sysctl::from_key(key).ok_or_else(|| unknown_sysctl(key))?;
    mm.sysctl_write(s, value)
        .map_err(|e| format!("sysctl: setting key \"vm.{}\": {e}", s.procname()))
}

impl Machine {
    /// Build the hardware and boot the kernel on it.
    pub fn new(config: MachineConfig) -> Result<Machine, SimError> {
        Machine::new_with_swiotlb(config, SwiotlbConfig::default())
    }

    /// [`Machine::new`] with the `swiotlb=` boot options (by default, as x86 decides: a
    /// pool only when RAM extends above 4 GiB).
    pub fn new_with_swiotlb(
        config: MachineConfig,
        swiotlb: SwiotlbConfig,
    ) -> Result<Machine, SimError> {
        if !(MIN_RAM..=MAX_RAM).contains(&config.ram) {
            return Err(SimError::BadRamSize(config.ram));
        }
        if !(1..=MAX_CPUS).contains(&config.cpus) {
            return Err(SimError::BadCpuCount(config.cpus));
        }
        // The holes and the span they give the RAM, before the host maps anything.
        crate::ram::layout(config.ram, &config.holes).map_err(SimError::Ram)?;
        let ram = Ram::new(config.ram, &config.holes).map_err(SimError::Ram)?;
        let platform = SimPlatform {
            id: NEXT_MACHINE_ID.fetch_add(1, Ordering::Relaxed),
            ram,
            cpus: (0..config.cpus).map(Cpu::new).collect(),
            clock: AtomicU64::new(0),
            tlb_flushes: AtomicU64::new(0),
            mmu: crate::mmu::Mmu::new(config.cpus, config.profile),
            console: Mutex::new(Vec::new()),
            shrinkers: RwLock::new(Vec::new()),
            injector: Mutex::new(None),
            irq_armed: std::sync::atomic::AtomicBool::new(false),
            irq_windows: AtomicU64::new(0),
            boot_cpu_holds: AtomicU64::new(0),
        };
        let boot = BootConfig {
            profile: config.profile,
            seed: config.seed,
            slab: config.slab,
            init_on_alloc: config.init_on_alloc,
            init_on_free: config.init_on_free,
            swiotlb,
            thp: config.thp,
            ..BootConfig::default()
        };
        // The booting thread runs as CPU 0 until the machine is handed over.
        platform.cpus[0]
            .owner
            .store(cpu::thread_token(), Ordering::Relaxed);
        let mut mm = Box::new(Mm::boot(platform, boot).map_err(SimError::Boot)?);
        let sysctls = config
            .sysctls
            .iter()
            .try_for_each(|(key, value)| sysctl_write(&mut mm, key, value));
        mm.platform().cpus[0].owner.store(0, Ordering::Release);
        sysctls.map_err(SimError::Sysctl)?;
        let page_cache = Arc::new(PageCache::default());
        mm.platform().register_shrinker(page_cache.clone());
        Ok(Machine {
            mm,
            config,
            page_cache,
            last_kswapd: Mutex::new(KswapdRun::default()),
            dma_devices: Mutex::new(Vec::new()),
            swiotlb,
            panic_line: Mutex::new(None),
        })
    }

    /// Plug in a bus-mastering device named `name` with `mask_bits` address lines, and
    /// probe it as its driver would: `dma_set_mask_and_coherent(DMA_BIT_MASK(mask_bits))`
    /// (refused, and the device not added, when the DMA API cannot support the mask).
    pub fn add_dma_device(
        &self,
        name: &str,
        mask_bits: u32,
    ) -> Result<Arc<crate::device::DmaDevice>, SimError> {
        let mut devices = self.dma_devices.lock().expect("device list");
        if devices.iter().any(|d| d.name() == name) {
            return Err(SimError::DmaDevice(format!("DMA device {name} exists")));
        }
        let device = Arc::new(crate::device::DmaDevice::new(name, mask_bits));
        let mask = kmemlab_mm::dma::dma_bit_mask(mask_bits);
        self.mm()
            .dma_set_mask_and_coherent(device.device(), mask)
            .map_err(|e| {
                SimError::DmaDevice(format!(
                    "{name}: dma_set_mask_and_coherent(DMA_BIT_MASK({mask_bits})) failed: {e}"
                ))
            })?;
        devices.push(device.clone());
        Ok(device)
    }

    /// The DMA device named `name`.
    pub fn dma_device(&self, name: &str) -> Option<Arc<crate::device::DmaDevice>> {
        let devices = self.dma_devices.lock().expect("device list");
        devices.iter().find(|d| d.name() == name).cloned()
    }

    /// `sysctl KEY=VALUE`: write a `/proc/sys/vm` tunable through its kernel handler
    /// (which recomputes watermarks, lowmem reserves or per-CPU lists as 6.6 does). The
    /// error is what procps' `sysctl` prints. A reboot forgets it unless it was a boot
    /// flag ([`MachineConfig::sysctls`]).
    pub fn sysctl_write(&mut self, key: &str, value: &str) -> Result<(), String> {
        as_boot_cpu(&mut self.mm, |mm| sysctl_write(mm, key, value))
    }

    /// `sysctl KEY`: the tunable as `sysctl` prints its value (tabs between the values of
    /// an array), or procps' error for an unknown key.
    pub fn sysctl_read(&self, key: &str) -> Result<String, String> {
        let s = Sysctl::from_key(key).ok_or_else(|| unknown_sysctl(key))?;
        let mut out = String::new();
        self.mm()
            .sysctl_read(s, &mut out)
            .map_err(|e| e.to_string())?;
        Ok(out)
    }

    /// The configuration booted.
    pub fn config(&self) -> &MachineConfig {
        &self.config
    }

    /// The kernel, entered as the boot CPU: the calling thread holds CPU 0 until the
    /// returned [`MmRef`] is dropped (for a call in one statement, `m.mm().kmalloc(…)`,
    /// until the statement ends; with several, until the last one is dropped and every
    /// `on_cpu(0)` entered under one has returned), unless it already runs as a CPU
    /// through [`Machine::on_cpu`], which it then stays. Unlike `on_cpu`, it enters no context and
    /// leaves the CPU's deferred work (kworker items, kswapd) to the next `on_cpu`: it is
    /// for inspection and single-threaded driving between commands.
    ///
    /// While another thread runs as CPU 0 this stops the caller with a panic (two threads
    /// on one CPU would break the platform's promise to the kernel); from several
    /// threads, enter the kernel through `on_cpu`. Holding the borrow while waiting for a
    /// thread that needs CPU 0 waits for ever, as holding a lock would.
    pub fn mm(&self) -> MmRef<'_> {
        let platform = self.mm.platform();
        let claimed = cpu::current_cpu(platform.id).is_none();
        if claimed && !platform.hold_boot_cpu() {
            panic!("Machine::mm called while CPU 0 runs on another thread: enter the kernel through Machine::on_cpu");
        }
        MmRef {
            mm: &self.mm,
            claimed,
            _thread_bound: PhantomData,
        }
    }

    /// The hardware under the kernel (RAM, the MMU, the console, interrupt injection),
    /// without entering the kernel: usable from any thread.
    pub fn platform(&self) -> &SimPlatform {
        self.mm.platform()
    }

    /// [`Mm::check`]: every subsystem's invariants, from the boot CPU. A plain method of
    /// the machine, so that every front end runs the simulator's one optimised copy of
    /// the checker (a crate calling the generic `Mm::check` itself builds its own, at
    /// that crate's optimisation level: the cli's tests build unoptimised).
    pub fn check(&self) -> Result<CheckReport, CheckError> {
        self.mm().check()
    }

    /// The simulated page cache.
    pub fn page_cache(&self) -> &PageCache {
        &self.page_cache
    }

    /// Kernel messages printed since the last call (the new part of `dmesg`).
    pub fn take_console(&self) -> Vec<String> {
        let lines = std::mem::take(&mut *self.mm.platform().console.lock().expect("console"));
        self.remember_panic(&lines);
        lines
    }

    /// Keep the first `Kernel panic - not syncing: …` line that passes through the console,
    /// for [`Machine::panic_message`].
    fn remember_panic(&self, lines: &[String]) {
        let mut slot = self.panic_line.lock().expect("panic line");
        if slot.is_none() {
            *slot = lines.iter().find(|l| l.starts_with(PANIC_PREFIX)).cloned();
        }
    }

    /// Has the kernel panicked (`Kernel panic - not syncing`)? A halted machine keeps its
    /// state for a post-mortem (reading `/proc`, `check()`, dumps), but nothing more should
    /// run on it: its CPUs no longer run kworker items or kswapd by themselves, and a
    /// front end refuses commands that would change it until [`Machine::reboot`].
    pub fn halted(&self) -> bool {
        self.mm.halted()
    }

    /// The panic's line (`Kernel panic - not syncing: …`), if the kernel has panicked and
    /// printed it (whether or not [`Machine::take_console`] has taken it yet).
    pub fn panic_message(&self) -> Option<String> {
        if !self.halted() {
            return None;
        }
        let seen = self.panic_line.lock().expect("panic line").clone();
        seen.or_else(|| {
            let console = self.mm.platform().console.lock().expect("console");
            console
                .iter()
                .find(|l| l.starts_with(PANIC_PREFIX))
                .cloned()
        })
    }

    /// Oopses (and panics) since the last call (see [`Mm::take_oopses`]): non-zero means
    /// the operation just run was killed by the kernel, and its reports are on the
    /// console. Call it before [`Machine::take_console`]: faults recorded without a
    /// console are printed by this call.
    pub fn take_oopses(&self) -> u32 {
        self.mm().take_oopses()
    }

    /// The kernel's taint (`/proc/sys/kernel/tainted`; its `Display` is
    /// `print_tainted()`'s).
    pub fn tainted(&self) -> kmemlab_mm::report::Taint {
        self.mm.tainted()
    }

    /// The `swiotlb=` options the machine was booted with.
    pub fn swiotlb_config(&self) -> SwiotlbConfig {
        self.swiotlb
    }

    /// Reboot: the kernel prints `reboot: Restarting system` (`kernel_restart()` in
    /// `kernel/reboot.c`, 6.6), and a fresh machine with the same configuration, seed and
    /// `swiotlb=` options boots in place of this one: untainted, nothing allocated, no
    /// DMA devices, an empty page cache. Returns the old machine's last console lines
    /// (what it printed and nobody had taken, ending with the restart line).
    ///
    /// The fresh machine is booted before the old one is released, so for that moment
    /// both are in host memory; if it cannot boot (the host refuses to map its RAM), the
    /// old machine stays, and the error says why.
    pub fn reboot(&mut self) -> Result<Vec<String>, SimError> {
        let fresh = Machine::new_with_swiotlb(self.config.clone(), self.swiotlb)?;
        // Deferred faults are printed now, so that the last words are complete.
        self.take_oopses();
        self.mm
            .platform()
            .printk(format_args!("reboot: Restarting system"));
        let last_words = self.take_console();
        *self = fresh;
        Ok(last_words)
    }

    /// Run `f` on CPU 0 in process context.
    pub fn run<R>(&self, f: impl FnOnce(&Mm<SimPlatform>) -> R) -> R {
        self.on_cpu(0, Context::Process, f)
            .expect("CPU 0 in process context is always available to its owner")
    }

    /// Run `f` as CPU `cpu` in context `ctx`.
    ///
    /// The calling host thread claims the CPU for the duration (another thread running as
    /// it makes this fail with [`SimError::CpuBusy`]). Called from inside `f` on the same
    /// CPU, it nests: a hard-IRQ context entered this way is an interrupt arriving at
    /// that point, and is refused while interrupts are disabled. A hard-IRQ or NMI context
    /// runs with interrupts disabled, as the hardware enters handlers.
    ///
    /// When the outermost call returns, the CPU runs what the kernel left for it, in
    /// process context: its kworker's work items, then kswapd if an allocation woke it
    /// (or its nap after balancing is waiting to end; see [`kmemlab_mm::vmscan`]).
    pub fn on_cpu<R>(
        &self,
        cpu: usize,
        ctx: Context,
        f: impl FnOnce(&Mm<SimPlatform>) -> R,
    ) -> Result<R, SimError> {
        let platform = self.mm.platform();
        let state = platform.cpus.get(cpu).ok_or(SimError::NoSuchCpu(cpu))?;
        let current = cpu::current_cpu(platform.id);
        let nested = current == Some(cpu);
        let mut claim = Claim::None;
        if nested {
            if ctx == Context::Hardirq && !state.irqs_enabled.load(Ordering::Relaxed) {
                return Err(SimError::IrqsDisabled(cpu));
            }
        } else if cpu == 0 && current.is_none() {
            // CPU 0 as `Machine::mm` holds it: taken, or held already by this thread's
            // `MmRef` and kept after (a hold of its own, so that dropping the `MmRef`
            // inside does not give CPU 0 away while this thread runs as it).
            if !platform.hold_boot_cpu() {
                return Err(SimError::CpuBusy(cpu));
            }
            claim = Claim::BootCpuHold;
        } else if state
            .owner
            .compare_exchange(0, cpu::thread_token(), Ordering::Acquire, Ordering::Relaxed)
            .is_ok()
        {
            claim = Claim::Cpu;
        } else {
            return Err(SimError::CpuBusy(cpu));
        }
        let guard = CpuGuard {
            machine: self,
            cpu,
            ctx,
            claim,
            previous: cpu::set_current((platform.id, cpu)),
            irqs_were_enabled: state.irqs_enabled.load(Ordering::Relaxed),
        };
        if matches!(ctx, Context::Hardirq | Context::Nmi) {
            state.irqs_enabled.store(false, Ordering::Relaxed);
        }
        self.mm.enter_context(ctx);
        let result = f(&self.mm);
        // A panicked kernel schedules nothing more: its deferred work stays queued.
        let runs_deferred = !nested && !self.mm.halted();
        if runs_deferred && self.mm.work_pending() {
            self.run_kworker(cpu, ctx);
        }
        if runs_deferred && self.mm.kswapd_pending() {
            self.run_kswapd_on(cpu, ctx);
        }
        drop(guard);
        Ok(result)
    }

    /// The CPU's kworker: before the CPU goes idle, the work items queued on it (deferred
    /// `vfree`s, the lazy-purge drain) run in process context with interrupts enabled.
    fn run_kworker(&self, cpu: usize, ctx: Context) {
        let state = &self.mm.platform().cpus[cpu];
        let irqs = state.irqs_enabled.swap(true, Ordering::Relaxed);
        self.mm.exit_context(ctx);
        self.mm.run_work();
        self.mm.enter_context(ctx);
        state.irqs_enabled.store(irqs, Ordering::Relaxed);
    }
}

impl Machine {
    /// kswapd's turn on a CPU that leaves kernel code: like the kworker, in process
    /// context with interrupts enabled, whatever the context the CPU was in (so an
    /// interrupt handler's allocation only wakes kswapd; the reclaim runs here, after it).
    fn run_kswapd_on(&self, cpu: usize, ctx: Context) {
        let state = &self.mm.platform().cpus[cpu];
        let irqs = state.irqs_enabled.swap(true, Ordering::Relaxed);
        self.mm.exit_context(ctx);
        let run = self.mm.kswapd_run();
        self.mm.enter_context(ctx);
        state.irqs_enabled.store(irqs, Ordering::Relaxed);
        *self.last_kswapd.lock().expect("kswapd report") = run;
    }

    /// Wake kswapd for the whole node (order 0, every zone eligible, as
    /// `wakeup_kswapd()` does: not if the node is balanced or hopeless) and let it run on
    /// CPU 0. Returns what it did: nothing if it had nothing to do.
    pub fn run_kswapd(&self) -> KswapdRun {
        *self.last_kswapd.lock().expect("kswapd report") = KswapdRun::default();
        self.run(|mm| {
            let highest = kmemlab_mm::page_alloc::MAX_NR_ZONES - 1;
            if let Some(zone) = mm.zonelist(highest).next() {
                mm.wakeup_kswapd(zone, kmemlab_mm::Gfp::GFP_KERNEL, 0, highest);
            }
        });
        std::mem::take(&mut *self.last_kswapd.lock().expect("kswapd report"))
    }
}

/// Leaves a context and releases the CPU, also when the closure panics.
struct CpuGuard<'a> {
    machine: &'a Machine,
    cpu: usize,
    ctx: Context,
    /// What this entry gives back.
    claim: Claim,
    previous: (u64, usize),
    irqs_were_enabled: bool,
}

/// What an [`Machine::on_cpu`] entry took, and so gives back when it leaves.
enum Claim {
    /// Nothing: a nested entry.
    None,
    /// The CPU, claimed while idle.
    Cpu,
    /// A hold on CPU 0 ([`SimPlatform::hold_boot_cpu`]).
    BootCpuHold,
}

impl Drop for CpuGuard<'_> {
    fn drop(&mut self) {
        let platform = self.machine.mm.platform();
        self.machine.mm.exit_context(self.ctx);
        let state = &platform.cpus[self.cpu];
        state
            .irqs_enabled
            .store(self.irqs_were_enabled, Ordering::Relaxed);
        cpu::set_current(self.previous);
        match self.claim {
            Claim::None => {}
            Claim::Cpu => state.owner.store(0, Ordering::Release),
            Claim::BootCpuHold => platform.release_boot_cpu(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Overwrite CPU 0's first `pcp->lock` word (the first word of its `per_cpu_pages`) as a
    /// stray write would, so that the next `spin_lock` on it finds bad magic and panics.
    fn corrupt_pcp_lock(m: &Machine) {
        let pcp = &m.mm().per_cpu(0).pcp[0] as *const _ as u64;
        let phys = pcp - m.platform().ram().base() as u64;
        m.mm()
            .platform()
            .ram()
            .write(phys, &[0xff; 4])
            .expect("RAM");
    }

    #[test]
    fn a_panicked_machine_reboots_clean_with_the_same_flags() {
        let config = MachineConfig {
            ram: 2 * MIN_RAM,
            cpus: 2,
            seed: 9,
            ..MachineConfig::default()
        };
        let mut m = Machine::new(config.clone()).expect("boot");
        assert!(!m.halted() && m.panic_message().is_none());
        corrupt_pcp_lock(&m);
        // The checker takes every pcp->lock.
        let _ = m.run(|mm| mm.check());
        assert!(m.halted());
        assert_eq!(m.take_oopses(), 1, "a panic kills the operation");
        assert_eq!(m.take_oopses(), 0);
        let panic = "Kernel panic - not syncing: softlockup: hung tasks";
        // Known before the console is read, and after.
        assert_eq!(m.panic_message().as_deref(), Some(panic));
        let console = m.take_console();
        assert!(console.iter().any(|l| l == panic), "{console:?}");
        assert_eq!(m.panic_message().as_deref(), Some(panic));
        assert!(m.tainted().has(kmemlab_mm::report::taint::SOFTLOCKUP));

        let last_words = m.reboot().expect("reboot");
        assert_eq!(last_words, ["reboot: Restarting system"]);
        assert!(!m.halted() && m.panic_message().is_none());
        assert_eq!(m.tainted().0, 0);
        assert_eq!(m.config(), &config);
        assert!(m.take_console().is_empty());
        assert!(m.run(|mm| mm.check()).is_ok());
        assert!(!m.halted());
    }

    #[test]
    fn reboot_keeps_the_swiotlb_options_and_drops_the_devices() {
        let config = MachineConfig {
            ram: 2 * MIN_RAM,
            cpus: 1,
            ..MachineConfig::default()
        };
        let mut m = Machine::new_with_swiotlb(config, SwiotlbConfig::with_slabs(64)).expect("boot");
        m.add_dma_device("nic", 32).expect("device");
        m.reboot().expect("reboot");
        assert_eq!(m.swiotlb_config(), SwiotlbConfig::with_slabs(64));
        assert!(m.dma_device("nic").is_none());
    }
}
