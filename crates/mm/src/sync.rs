//! Locks as the kernel uses them: a spinlock taken with interrupts disabled on the local
//! CPU (`spin_lock_irqsave`), and the per-CPU-pages trylock (`pcp_spin_trylock`).

use core::ops::{Deref, DerefMut};
use core::sync::atomic::{AtomicBool, Ordering};

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

/// A bare trylock bit, for data that lives in simulated memory (the per-CPU pages).
#[derive(Default)]
#[repr(transparent)]
pub struct TryLock(AtomicBool);

impl TryLock {
    /// Take the lock if it is free (`spin_trylock`).
    #[inline]
    pub fn try_lock(&self) -> bool {
        self.0
            .compare_exchange(false, true, Ordering::Acquire, Ordering::Relaxed)
            .is_ok()
    }
    /// Spin until the lock is taken (`spin_lock`).
    pub fn lock(&self) {
        while !self.try_lock() {
            core::hint::spin_loop();
        }
    }
    /// Release the lock (`spin_unlock`).
    #[inline]
    pub fn unlock(&self) {
        self.0.store(false, Ordering::Release);
    }
}
