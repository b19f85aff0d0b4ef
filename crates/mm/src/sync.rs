//! Locks as the kernel uses them: a spinlock taken with interrupts disabled on the local
//! CPU (`spin_lock_irqsave`), and the per-CPU-pages trylock (`pcp_spin_trylock`).

use core::ops::{Deref, DerefMut};
use core::sync::atomic::{AtomicU32, Ordering};

use crate::platform::{IrqFlags, Platform};

/// A spinlock whose holder runs with local interrupts disabled (`spinlock_t` used with
/// `spin_lock_irqsave`).
pub struct SpinLockIrq<T> {
    inner: spin::Mutex<T>,
}

/// The guard of a [`SpinLockIrq`]: unlocks and restores the interrupt state on drop.
pub struct SpinLockIrqGuard<'a, T, P: Platform> {
    guard: Option<spin::MutexGuard<'a, T>>,
    platform: &'a P,
    flags: IrqFlags,
}

impl<T> SpinLockIrq<T> {
    /// A new unlocked lock.
    pub const fn new(value: T) -> Self {
        SpinLockIrq {
            inner: spin::Mutex::new(value),
        }
    }

    /// `spin_lock_irqsave()`.
    pub fn lock_irqsave<'a, P: Platform>(&'a self, platform: &'a P) -> SpinLockIrqGuard<'a, T, P> {
        let flags = platform.local_irq_save();
        SpinLockIrqGuard {
            guard: Some(self.inner.lock()),
            platform,
            flags,
        }
    }

    /// Access without locking, for boot (single-threaded, before the lock is shared).
    pub fn get_mut(&mut self) -> &mut T {
        self.inner.get_mut()
    }
}

impl<T, P: Platform> Deref for SpinLockIrqGuard<'_, T, P> {
    type Target = T;
    fn deref(&self) -> &T {
        self.guard.as_ref().expect("guard present until drop")
    }
}

impl<T, P: Platform> DerefMut for SpinLockIrqGuard<'_, T, P> {
    fn deref_mut(&mut self) -> &mut T {
        self.guard.as_mut().expect("guard present until drop")
    }
}

impl<T, P: Platform> Drop for SpinLockIrqGuard<'_, T, P> {
    fn drop(&mut self) {
        // Unlock first, then let interrupts in: the order of spin_unlock_irqrestore().
        self.guard = None;
        self.platform.local_irq_restore(self.flags);
    }
}

/// A bare spinlock word for data that lives in simulated memory (the per-CPU pages, a
/// slab node's `list_lock`): 0 when free, else the owning CPU plus one, as
/// `CONFIG_DEBUG_SPINLOCK` keeps `owner_cpu` beside the lock. Since the word is in RAM,
/// anyone may overwrite it; [`TryLock::lock`] refuses to spin forever on a word that
/// cannot be taken.
#[derive(Default, zerocopy::FromBytes)]
#[repr(transparent)]
pub struct TryLock(AtomicU32);

/// Why [`TryLock::lock`] gave up (`spin_bug()`'s messages in `lib/spinlock_debug.c`).
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum SpinBug {
    /// The word holds no CPU of this machine: the lock was overwritten.
    BadMagic(u32),
    /// This CPU already holds it and would wait for itself.
    Recursion,
    /// Another CPU held it for the whole spin bound.
    Lockup(u32),
}

impl SpinBug {
    /// The kernel's word for it, as in `BUG: spinlock <word> on CPU#n`.
    pub fn name(self) -> &'static str {
        match self {
            SpinBug::BadMagic(_) => "bad magic",
            SpinBug::Recursion => "recursion",
            SpinBug::Lockup(_) => "lockup suspected",
        }
    }
}

/// How many times [`TryLock::lock`] retries before calling it a lockup: far longer than
/// any critical section of the allocators, far shorter than a person waits.
pub const SPIN_LIMIT: u32 = 1 << 26;

impl TryLock {
    /// Take the lock for `cpu` if it is free (`spin_trylock`).
    #[inline]
    pub fn try_lock(&self, cpu: usize) -> bool {
        self.0
            .compare_exchange(0, cpu as u32 + 1, Ordering::Acquire, Ordering::Relaxed)
            .is_ok()
    }

    /// Spin until the lock is taken for `cpu` (`spin_lock`), or say why it never will be:
    /// an owner that is no CPU of `nr_cpus`, this CPU itself, or one that held it for
    /// [`SPIN_LIMIT`] tries.
    pub fn lock(&self, cpu: usize, nr_cpus: usize) -> Result<(), SpinBug> {
        for _ in 0..SPIN_LIMIT {
            if self.try_lock(cpu) {
                return Ok(());
            }
            let owner = self.0.load(Ordering::Relaxed);
            if owner as usize > nr_cpus {
                return Err(SpinBug::BadMagic(owner));
            }
            if owner as usize == cpu + 1 {
                return Err(SpinBug::Recursion);
            }
            core::hint::spin_loop();
        }
        Err(SpinBug::Lockup(self.0.load(Ordering::Relaxed)))
    }

    /// Take the lock whatever it holds, after a reported [`SpinBug`]: the machine has
    /// panicked, and the operation in flight only needs to finish.
    pub fn force(&self, cpu: usize) {
        self.0.store(cpu as u32 + 1, Ordering::Release);
    }

    /// Release the lock (`spin_unlock`).
    #[inline]
    pub fn unlock(&self) {
        self.0.store(0, Ordering::Release);
    }

    /// The raw word (0 free, else owner CPU + 1), for reports.
    pub fn owner_word(&self) -> u32 {
        self.0.load(Ordering::Relaxed)
    }
}

impl<P: Platform> crate::Mm<P> {
    /// `spin_lock()` on a lock word in RAM, with `CONFIG_DEBUG_SPINLOCK`'s checks: a word
    /// that cannot be taken is reported (`BUG: spinlock … on CPU#n`, then the soft-lockup
    /// panic, since nothing on a stuck simulated machine would ever release it) and then
    /// taken by force so that the operation in flight can finish on the halted machine.
    pub(crate) fn spin_lock(&self, lock: &TryLock, name: &str) {
        let cpu = self.platform().smp_processor_id();
        if let Err(bug) = lock.lock(cpu, self.platform().nr_cpus()) {
            self.spin_bug(lock, name, bug);
            lock.force(cpu);
        }
    }

    #[cold]
    #[inline(never)]
    fn spin_bug(&self, lock: &TryLock, name: &str, bug: SpinBug) {
        let platform = self.platform();
        self.printk(format_args!(
            "BUG: spinlock {} on CPU#{}, {}/{}",
            bug.name(),
            platform.smp_processor_id(),
            platform.current_comm(),
            platform.current_pid()
        ));
        let owner = lock.owner_word();
        self.printk(format_args!(
            " lock: {name}, .magic: dead4ead, .owner_cpu: {}",
            // `owner_cpu` is an `int` in the kernel: the word less one, as it would print.
            (owner as i32).wrapping_sub(1)
        ));
        self.print_cpu_line();
        self.soft_lockup(name);
    }
}
