//! The simulated machine: RAM, CPUs, execution contexts, a console, and the kernel
//! booted on them. [`SimPlatform`] is what the kernel sees through the `Hardware` and
//! `KernelHooks` traits.

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};

use kmemlab_mm::dma::SwiotlbConfig;
use kmemlab_mm::platform::Shrinker;
use kmemlab_mm::slab::SlabConfig;
use kmemlab_mm::sysctl::{Sysctl, Thp};
use kmemlab_mm::vmscan::KswapdRun;
use kmemlab_mm::{
    BootConfig, BootError, Context, Hardware, IrqFlags, KernelHooks, MemoryRegion, Mm, Profile,
    VirtAddr,
};

use crate::cpu::{self, Cpu};
use crate::pagecache::PageCache;
use crate::ram::{Hole, Ram, RamError};

/// How `panic()` begins its line (`kernel/panic.c`).
const PANIC_PREFIX: &str = "Kernel panic - not syncing: ";

/// The smallest machine: 16 MiB.
pub const MIN_RAM: u64 = 16 << 20;
/// The largest machine: 256 GiB (lazily backed; its mem_map alone takes 2 GiB of host memory).
pub const MAX_RAM: u64 = 256 << 30;
/// The most CPUs.
pub const MAX_CPUS: usize = 256;

/// The shape of a machine.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct MachineConfig {
    /// Bytes of RAM.
    pub ram: u64,
    /// Number of CPUs.
    pub cpus: usize,
    /// Which kernel.
    #[serde(serialize_with = "serialize_profile")]
    pub profile: Profile,
    /// The seed for every random choice.
    pub seed: u64,
    /// Holes in the physical address map (RAM is placed around them).
    pub holes: Vec<Hole>,
    /// The slab allocator's boot options.
    #[serde(skip)]
    pub slab: SlabConfig,
    /// `transparent_hugepage=` (`never` by default).
    #[serde(serialize_with = "serialize_thp")]
    pub thp: Thp,
    /// `/proc/sys/vm` tunables set once the kernel is up, as `sysctl.conf` sets them:
    /// (`vm.NAME`, value), in order.
    pub sysctls: Vec<(String, String)>,
}

fn serialize_thp<S: serde::Serializer>(t: &Thp, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(match t {
        Thp::Always => "always",
        Thp::Madvise => "madvise",
        Thp::Never => "never",
    })
}

fn serialize_profile<S: serde::Serializer>(p: &Profile, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(p.name())
}

impl Default for MachineConfig {
    /// 1 GiB, 4 CPUs, x86_64, seed 0, with the legacy 640 KiB–1 MiB hole.
    fn default() -> Self {
        MachineConfig {
            ram: 1 << 30,
            cpus: 4,
            profile: Profile::X86_64,
            seed: 0,
            holes: vec![Hole::LEGACY],
            slab: SlabConfig::default(),
            thp: Thp::Never,
            sysctls: Vec::new(),
        }
    }
}

/// Why a machine could not be built or could not run something.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SimError {
    /// RAM size outside 16 MiB ..= 256 GiB.
    BadRamSize(u64),
    /// CPU count outside 1 ..= 256.
    BadCpuCount(usize),
    /// The holes were refused, or the host could not map the RAM.
    Ram(RamError),
    /// The kernel failed to boot.
    Boot(BootError),
    /// No such CPU.
    NoSuchCpu(usize),
    /// Another host thread is running as this CPU.
    CpuBusy(usize),
    /// An interrupt cannot be taken: the CPU has interrupts disabled.
    IrqsDisabled(usize),
    /// A DMA device could not be added (its name is taken, or the DMA API refused its
    /// mask).
    DmaDevice(String),
    /// A `/proc/sys/vm` tunable was refused (`sysctl: …`).
    Sysctl(String),
}

impl fmt::Display for SimError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SimError::BadRamSize(n) => write!(
                f,
                "RAM size {} is outside {} ..= {}",
                crate::format_size(*n),
                crate::format_size(MIN_RAM),
                crate::format_size(MAX_RAM)
            ),
            SimError::BadCpuCount(n) => write!(f, "{n} CPUs is outside 1 ..= {MAX_CPUS}"),
            SimError::Ram(e) => e.fmt(f),
            SimError::Boot(e) => write!(f, "boot failed: {e}"),
            SimError::NoSuchCpu(c) => write!(f, "no CPU {c}"),
            SimError::CpuBusy(c) => write!(f, "CPU {c} is running another host thread"),
            SimError::DmaDevice(why) => write!(f, "{why}"),
            SimError::Sysctl(why) => write!(f, "{why}"),
            SimError::IrqsDisabled(c) => {
                write!(
                    f,
                    "CPU {c} has interrupts disabled: the interrupt stays pending"
                )
            }
        }
    }
}

impl std::error::Error for SimError {}

/// A shrinker the machine can call from any thread.
pub type SharedShrinker = Arc<dyn Shrinker<SimPlatform> + Send + Sync>;

/// The hardware the kernel runs on.
pub struct SimPlatform {
    id: u64,
    ram: Ram,
    cpus: Vec<Cpu>,
    clock: AtomicU64,
    tlb_flushes: AtomicU64,
    mmu: crate::mmu::Mmu,
    console: Mutex<Vec<String>>,
    shrinkers: RwLock<Vec<SharedShrinker>>,
    injector: Mutex<Option<IrqInjector>>,
    irq_armed: std::sync::atomic::AtomicBool,
    irq_windows: AtomicU64,
}

/// A hard-IRQ handler the machine delivers at the n-th interrupt window of a CPU.
pub type IrqHandler = Box<dyn FnOnce(&Mm<SimPlatform>) + Send>;

struct IrqInjector {
    cpu: usize,
    countdown: u64,
    handler: IrqHandler,
}

static NEXT_MACHINE_ID: AtomicU64 = AtomicU64::new(1);

impl SimPlatform {
    /// The RAM.
    pub fn ram(&self) -> &Ram {
        &self.ram
    }

    /// Range flushes requested by the kernel so far.
    pub fn tlb_flushes(&self) -> u64 {
        self.tlb_flushes.load(Ordering::Relaxed)
    }

    /// The MMU: every CPU's TLB, and the shootdown and fault counters.
    pub fn mmu(&self) -> &crate::mmu::Mmu {
        &self.mmu
    }

    #[inline]
    fn cpu(&self) -> &Cpu {
        &self.cpus[self.smp_processor_id()]
    }

    /// Register a shrinker (`register_shrinker`).
    pub fn register_shrinker(&self, shrinker: SharedShrinker) {
        self.shrinkers
            .write()
            .expect("shrinker list")
            .push(shrinker);
    }

    /// Deliver `handler` as a hard interrupt on `cpu` at the `n`-th interrupt window
    /// (counting from 0) that CPU passes inside the allocators. One-shot.
    pub fn inject_irq(&self, cpu: usize, n: u64, handler: IrqHandler) {
        *self.injector.lock().expect("injector") = Some(IrqInjector {
            cpu,
            countdown: n,
            handler,
        });
        self.irq_armed.store(true, Ordering::Relaxed);
    }

    /// Withdraw an injected interrupt that has not fired.
    pub fn cancel_irq(&self) {
        *self.injector.lock().expect("injector") = None;
        self.irq_armed.store(false, Ordering::Relaxed);
    }

    /// Is an injected interrupt still waiting for its window?
    pub fn irq_pending(&self) -> bool {
        self.injector.lock().expect("injector").is_some()
    }

    /// Interrupt windows passed while an interrupt was armed (on all CPUs).
    pub fn irq_windows(&self) -> u64 {
        self.irq_windows.load(Ordering::Relaxed)
    }

    /// An armed interrupt's window: count it, and deliver the interrupt when its turn
    /// comes.
    fn deliver_irq(&self, mm: &Mm<SimPlatform>) {
        self.irq_windows.fetch_add(1, Ordering::Relaxed);
        let cpu = self.smp_processor_id();
        if self.irqs_disabled() {
            return;
        }
        let handler = {
            let mut slot = self.injector.lock().expect("injector");
            match slot.as_mut() {
                Some(inj) if inj.cpu == cpu && inj.countdown > 0 => {
                    inj.countdown -= 1;
                    None
                }
                Some(inj) if inj.cpu == cpu => slot.take().map(|inj| inj.handler),
                _ => None,
            }
        };
        if let Some(handler) = handler {
            // The hardware enters the handler with interrupts disabled, in hard-IRQ context.
            let state = &self.cpus[cpu];
            let was = state.irqs_enabled.swap(false, Ordering::Relaxed);
            mm.enter_context(Context::Hardirq);
            handler(mm);
            mm.exit_context(Context::Hardirq);
            state.irqs_enabled.store(was, Ordering::Relaxed);
        }
        self.irq_armed.store(
            self.injector.lock().expect("injector").is_some(),
            Ordering::Relaxed,
        );
    }

    /// Advance the virtual clock (it never reads the host's time, so that runs repeat).
    pub fn tick(&self, ns: u64) {
        self.clock.fetch_add(ns, Ordering::Relaxed);
    }
}

// SAFETY: `phys_mem` is the base of `ram`'s mapping, which covers every range of
// `memory_map` and lives as long as the platform; nothing but the kernel (and the
// simulator's own devices, through the same addresses) writes it. `Machine::on_cpu`
// lets at most one host thread run as a CPU at a time.
unsafe impl Hardware for SimPlatform {
    fn nr_cpus(&self) -> usize {
        self.cpus.len()
    }

    #[inline]
    fn smp_processor_id(&self) -> usize {
        // A thread that has not claimed a CPU is the boot CPU (boot, and single-threaded
        // inspection between commands).
        cpu::current_cpu(self.id).unwrap_or(0)
    }

    #[inline]
    fn local_irq_save(&self) -> IrqFlags {
        // Only the CPU's own thread writes its flag: a load and a store, like pushf; cli.
        let flag = &self.cpu().irqs_enabled;
        let were_enabled = flag.load(Ordering::Relaxed);
        flag.store(false, Ordering::Relaxed);
        IrqFlags { were_enabled }
    }

    #[inline]
    fn local_irq_restore(&self, flags: IrqFlags) {
        self.cpu()
            .irqs_enabled
            .store(flags.were_enabled, Ordering::Relaxed);
    }

    #[inline]
    fn irqs_disabled(&self) -> bool {
        !self.cpu().irqs_enabled.load(Ordering::Relaxed)
    }

    fn memory_map(&self) -> &[MemoryRegion] {
        self.ram.map()
    }

    fn phys_mem(&self) -> *mut u8 {
        self.ram.base()
    }

    fn flush_tlb_kernel_range(&self, start: VirtAddr, end: VirtAddr) {
        self.tlb_flushes.fetch_add(1, Ordering::Relaxed);
        self.mmu.flush_tlb_kernel_range(start.0, end.0);
    }

    fn clock_ns(&self) -> u64 {
        self.clock.load(Ordering::Relaxed)
    }

    fn printk(&self, args: fmt::Arguments<'_>) {
        self.console.lock().expect("console").push(args.to_string());
    }

    fn run_on_cpu(&self, cpu: usize, f: &mut dyn FnMut()) {
        if self.smp_processor_id() == cpu && cpu::current_cpu(self.id).is_some() {
            return f();
        }
        // An IPI. The target is run as soon as it is idle, or as soon as its thread is
        // itself parked waiting for an IPI (so two CPUs flushing each other cannot wait for
        // ever); while waiting, this CPU is parked the same way.
        let state = &self.cpus[cpu];
        let token = cpu::thread_token();
        if state.owner.load(Ordering::Relaxed) == token {
            let previous = cpu::set_current((self.id, cpu));
            f();
            cpu::set_current(previous);
            return;
        }
        let me = cpu::current_cpu(self.id).map(|c| &self.cpus[c]);
        if let Some(me) = me {
            me.ipi_state.store(cpu::IPI_PARKED, Ordering::Release);
        }
        let claimed_idle = loop {
            if state
                .owner
                .compare_exchange(0, token, Ordering::Acquire, Ordering::Relaxed)
                .is_ok()
            {
                break true;
            }
            if state
                .ipi_state
                .compare_exchange(
                    cpu::IPI_PARKED,
                    cpu::IPI_BORROWED,
                    Ordering::Acquire,
                    Ordering::Relaxed,
                )
                .is_ok()
            {
                break false;
            }
            std::thread::yield_now();
        };
        let previous = cpu::set_current((self.id, cpu));
        f();
        cpu::set_current(previous);
        if claimed_idle {
            state.owner.store(0, Ordering::Release);
        } else {
            state.ipi_state.store(cpu::IPI_PARKED, Ordering::Release);
        }
        if let Some(me) = me {
            // Leave the parked state only when no other waiter is running as this CPU.
            while me
                .ipi_state
                .compare_exchange(
                    cpu::IPI_PARKED,
                    cpu::IPI_RUNNING,
                    Ordering::AcqRel,
                    Ordering::Relaxed,
                )
                .is_err()
            {
                std::thread::yield_now();
            }
        }
    }
}

/// The simulated kernel around `mm`: one task per CPU (pid 100 + cpu, the CPU's `comm`),
/// the registered shrinkers, and the interrupts armed with [`SimPlatform::inject_irq`].
impl KernelHooks for SimPlatform {
    fn current_pid(&self) -> u32 {
        100 + self.smp_processor_id() as u32
    }

    fn current_comm(&self) -> &str {
        &self.cpu().comm
    }

    #[inline]
    fn irq_window(&self, mm: &Mm<Self>) {
        // The common case, nothing armed, costs one relaxed load.
        if !self.irq_armed.load(Ordering::Relaxed) {
            return;
        }
        self.deliver_irq(mm);
    }

    fn for_each_shrinker(&self, f: &mut dyn FnMut(&dyn Shrinker<Self>)) {
        // Copy the list so no lock is held while shrinkers free memory.
        let list: Vec<SharedShrinker> = self.shrinkers.read().expect("shrinker list").clone();
        for s in &list {
            f(s.as_ref());
        }
    }
}

/// A booted machine.
pub struct Machine {
    mm: Mm<SimPlatform>,
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
        };
        let boot = BootConfig {
            profile: config.profile,
            seed: config.seed,
            slab: config.slab,
            swiotlb,
            thp: config.thp,
            ..BootConfig::default()
        };
        let mut mm = Mm::boot(platform, boot).map_err(SimError::Boot)?;
        for (key, value) in &config.sysctls {
            sysctl_write(&mut mm, key, value).map_err(SimError::Sysctl)?;
        }
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
        self.mm
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
        sysctl_write(&mut self.mm, key, value)
    }

    /// `sysctl KEY`: the tunable as `sysctl` prints its value (tabs between the values of
    /// an array), or procps' error for an unknown key.
    pub fn sysctl_read(&self, key: &str) -> Result<String, String> {
        let s = Sysctl::from_key(key).ok_or_else(|| unknown_sysctl(key))?;
        let mut out = String::new();
        self.mm
            .sysctl_read(s, &mut out)
            .map_err(|e| e.to_string())?;
        Ok(out)
    }

    /// The configuration booted.
    pub fn config(&self) -> &MachineConfig {
        &self.config
    }

    /// The kernel, for inspection from the boot CPU (reading `/proc`, `check()`).
    pub fn mm(&self) -> &Mm<SimPlatform> {
        &self.mm
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
        self.mm.take_oopses()
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
        let nested = cpu::current_cpu(platform.id) == Some(cpu);
        if nested {
            if ctx == Context::Hardirq && !state.irqs_enabled.load(Ordering::Relaxed) {
                return Err(SimError::IrqsDisabled(cpu));
            }
        } else {
            let token = cpu::thread_token();
            if state
                .owner
                .compare_exchange(0, token, Ordering::Acquire, Ordering::Relaxed)
                .is_err()
            {
                return Err(SimError::CpuBusy(cpu));
            }
        }
        let guard = CpuGuard {
            machine: self,
            cpu,
            ctx,
            nested,
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
    nested: bool,
    previous: (u64, usize),
    irqs_were_enabled: bool,
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
        if !self.nested {
            state.owner.store(0, Ordering::Release);
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
        let phys = pcp - m.mm().platform().ram().base() as u64;
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
