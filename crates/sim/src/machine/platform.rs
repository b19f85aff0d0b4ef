//! [`SimPlatform`]: the simulated hardware under the kernel (`Hardware`: CPUs, interrupt
//! flags, RAM, TLB flushes through the MMU, a virtual clock, the console, IPIs) and the
//! simulated kernel around `mm` (`KernelHooks`: a task per CPU, the shrinker list, and
//! interrupts injected at the n-th interrupt window). Start at the `Hardware` impl.

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};

use kmemlab_mm::platform::Shrinker;
use kmemlab_mm::{Context, Hardware, IrqFlags, KernelHooks, MemoryRegion, Mm, PhysAddr, VirtAddr};

use crate::cpu::{self, Cpu};
use crate::ram::Ram;

/// A shrinker the machine can call from any thread.
pub type SharedShrinker = Arc<dyn Shrinker<SimPlatform> + Send + Sync>;

/// The hardware the kernel runs on.
pub struct SimPlatform {
    pub(super) id: u64,
    pub(super) ram: Ram,
    pub(super) cpus: Vec<Cpu>,
    pub(super) clock: AtomicU64,
    pub(super) tlb_flushes: AtomicU64,
    pub(super) mmu: crate::mmu::Mmu,
    pub(super) console: Mutex<Vec<String>>,
    pub(super) shrinkers: RwLock<Vec<SharedShrinker>>,
    pub(super) injector: Mutex<Option<IrqInjector>>,
    pub(super) irq_armed: std::sync::atomic::AtomicBool,
    pub(super) irq_windows: AtomicU64,
    /// The holds on CPU 0 of the thread that runs as it through [`crate::Machine::mm`]
    /// (its [`crate::MmRef`]s, and the `on_cpu(0)` entries made under one): the last one
    /// gives CPU 0 back. Only that thread touches it.
    pub(super) boot_cpu_holds: AtomicU64,
}

/// A hard-IRQ handler the machine delivers at the n-th interrupt window of a CPU.
pub type IrqHandler = Box<dyn FnOnce(&Mm<SimPlatform>) + Send>;

pub(super) struct IrqInjector {
    cpu: usize,
    countdown: u64,
    handler: IrqHandler,
}

pub(super) static NEXT_MACHINE_ID: AtomicU64 = AtomicU64::new(1);

impl SimPlatform {
    /// The CPU of a thread that runs as none through [`crate::Machine::on_cpu`]: CPU 0 if
    /// the thread holds it through [`crate::Machine::mm`] (or is booting the machine).
    /// Any other thread that calls into the kernel without a CPU would be a second
    /// thread on a CPU another may be running as, which breaks the promise this platform
    /// makes to the kernel ([`kmemlab_mm::Hardware`]'s safety contract): it is stopped
    /// here instead.
    #[cold]
    #[inline(never)]
    fn unclaimed_cpu(&self) -> usize {
        if self.cpus[0].owner.load(Ordering::Relaxed) != cpu::thread_token() {
            panic!("a thread that runs as no CPU called into the kernel: enter it through Machine::on_cpu, Machine::run or Machine::mm");
        }
        0
    }

    /// Hold CPU 0 for the calling thread, which runs as no CPU through
    /// [`crate::Machine::on_cpu`]: claim it if it is idle, or add a hold if the thread
    /// holds it already. False (and nothing held) if another thread runs as it.
    pub(super) fn hold_boot_cpu(&self) -> bool {
        let owner = &self.cpus[0].owner;
        let token = cpu::thread_token();
        if owner.load(Ordering::Relaxed) != token
            && owner
                .compare_exchange(0, token, Ordering::Acquire, Ordering::Relaxed)
                .is_err()
        {
            return false;
        }
        self.boot_cpu_holds.fetch_add(1, Ordering::Relaxed);
        true
    }

    /// Give back a hold taken with [`SimPlatform::hold_boot_cpu`]; the last one gives CPU 0
    /// back.
    pub(super) fn release_boot_cpu(&self) {
        if self.boot_cpu_holds.fetch_sub(1, Ordering::Relaxed) == 1 {
            self.cpus[0].owner.store(0, Ordering::Release);
        }
    }

    /// The CPU the calling thread runs as: the one it entered through
    /// [`crate::Machine::on_cpu`], or CPU 0 while it holds [`crate::Machine::mm`].
    pub(super) fn running_as(&self) -> Option<usize> {
        cpu::current_cpu(self.id).or_else(|| {
            (self.cpus[0].owner.load(Ordering::Relaxed) == cpu::thread_token()).then_some(0)
        })
    }

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
// simulator's own devices, through the same addresses) writes it. At most one host thread
// runs as a CPU at a time: a thread runs as one it claimed (`Machine::on_cpu`, CPU 0 held
// through `Machine::mm`, an IPI to an idle CPU) or borrowed while its owner waits parked
// in an IPI (`run_on_cpu`), and `smp_processor_id` stops a thread that holds none.
unsafe impl Hardware for SimPlatform {
    fn nr_cpus(&self) -> usize {
        self.cpus.len()
    }

    #[inline]
    fn smp_processor_id(&self) -> usize {
        match cpu::current_cpu(self.id) {
            Some(cpu) => cpu,
            None => self.unclaimed_cpu(),
        }
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

    #[inline]
    fn irqs_disabled_on(&self, cpu: usize) -> bool {
        !self.cpus[cpu].irqs_enabled.load(Ordering::Relaxed)
    }

    fn memory_map(&self) -> &[MemoryRegion] {
        self.ram.map()
    }

    fn phys_mem(&self) -> *mut u8 {
        self.ram.base()
    }

    fn discard_ram(&self, start: PhysAddr, len: u64) -> bool {
        self.ram.discard(start.0, len)
    }

    fn known_zero_ram(&self, start: PhysAddr, map: &mut [u64]) -> u64 {
        self.ram.known_zero(start.0, map)
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
        if cpu::current_cpu(self.id) == Some(cpu) {
            return f();
        }
        // An IPI. The target is run as soon as it is idle, or as soon as its thread is
        // itself parked waiting for an IPI (so two CPUs flushing each other cannot wait for
        // ever); while waiting, this CPU is parked the same way.
        let state = &self.cpus[cpu];
        let token = cpu::thread_token();
        // The target is this thread's own, left for another CPU entered from outside the
        // kernel (`on_cpu` inside `Machine::mm`): nothing runs as it meanwhile. (Parked,
        // the thread waits in an IPI it sent as the target, which another waiter may be
        // running as: it is borrowed below like any parked CPU.)
        if state.owner.load(Ordering::Relaxed) == token
            && state.ipi_state.load(Ordering::Acquire) == cpu::IPI_RUNNING
        {
            let _entered = IpiEntry {
                previous: cpu::set_current((self.id, cpu)),
                target: None,
                me: None,
            };
            return f();
        }
        // Park the CPU this thread runs as, if it is its own (a borrowed one stays the
        // borrower's until its request is done: its owner would take it back otherwise),
        // and restore its state after (a CPU borrowed back by its owner is still borrowed).
        let me = self
            .running_as()
            .map(|c| &self.cpus[c])
            .filter(|me| me.owner.load(Ordering::Relaxed) == token)
            .map(|me| (me, me.ipi_state.swap(cpu::IPI_PARKED, Ordering::AcqRel)));
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
        let _entered = IpiEntry {
            previous: cpu::set_current((self.id, cpu)),
            target: Some((state, claimed_idle)),
            me,
        };
        f()
    }
}

/// An IPI's run as its target CPU, undone when it ends, also when the request panics (a
/// CPU left claimed or parked would be taken or borrowed by another thread while this
/// one runs as it).
struct IpiEntry<'a> {
    /// What the thread ran as before.
    previous: (u64, usize),
    /// The target and whether it was claimed idle (else borrowed while parked); `None`
    /// for a CPU of the thread's own that it had left (nothing to give back).
    target: Option<(&'a Cpu, bool)>,
    /// The sender's own CPU, parked while it waited, and its state before.
    me: Option<(&'a Cpu, u8)>,
}

impl Drop for IpiEntry<'_> {
    fn drop(&mut self) {
        cpu::set_current(self.previous);
        match self.target {
            Some((state, true)) => state.owner.store(0, Ordering::Release),
            Some((state, false)) => state.ipi_state.store(cpu::IPI_PARKED, Ordering::Release),
            None => {}
        }
        if let Some((me, my_state)) = self.me {
            // Leave the parked state only when no other waiter is running as this CPU.
            while me
                .ipi_state
                .compare_exchange(
                    cpu::IPI_PARKED,
                    my_state,
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
