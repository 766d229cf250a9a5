//! The protocol state behind a mutex, and the one wait queue (the kernel's `subscriptions->lock`
//! and `subscriptions->wq`, SPEC R74, R77).
//!
//! Locking protocol:
//! - Every transition of [`Protocol`] runs under [`Notifier::lock`]; the guard is the only way to
//!   reach the state, so "caller holds the lock" is a type, not a comment.
//! - Nothing that can block or call foreign code runs under the lock: callbacks run after the
//!   guard is dropped (the tree is kept stable by the odd seq and the deferred list, R76), and
//!   payloads freed by a transition are dropped by the caller after unlocking.
//! - Only two things wait: `read_begin` and a deferred `remove` (R77). Both wait for
//!   [`Protocol::seq_changed`], evaluated under the lock, and are woken by the end that closes the
//!   epoch ([`Notifier::wake_all`], which pairs with [`Notifier::wait_seq_change`]).
//!
//! Model checking: built with `--cfg loom`, this very file runs on loom's mutex, condition
//! variable and atomics (`tests/loom_protocol.rs`), and its waits are untimed there, so that a
//! lost wake-up shows as a deadlock instead of being papered over by the next timed poll.

use std::sync::PoisonError;
use std::time::{Duration, Instant};

use crate::protocol::Protocol;
use sync::{AtomicUsize, Condvar, Mutex, MutexGuard, Ordering, TryLockError};

/// The synchronisation primitives: the standard library's.
#[cfg(not(loom))]
mod sync {
    pub use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::PoisonError;
    pub use std::sync::{Condvar, Mutex, MutexGuard, TryLockError};
    use std::time::Duration;

    /// Wait for a notification, at most `timeout` (callers re-check their condition).
    pub fn wait_timeout<'a, T>(
        cv: &Condvar,
        guard: MutexGuard<'a, T>,
        timeout: Duration,
    ) -> MutexGuard<'a, T> {
        cv.wait_timeout(guard, timeout)
            .unwrap_or_else(PoisonError::into_inner)
            .0
    }
}

/// The synchronisation primitives under the model checker: loom's.
#[cfg(loom)]
mod sync {
    pub use loom::sync::atomic::{AtomicUsize, Ordering};
    pub use loom::sync::{Condvar, Mutex, MutexGuard};
    pub use std::sync::{PoisonError, TryLockError};
    use std::time::Duration;

    /// Untimed: only a notification ends the wait, so a lost one is a deadlock loom reports.
    pub fn wait_timeout<'a, T>(
        cv: &Condvar,
        guard: MutexGuard<'a, T>,
        _timeout: Duration,
    ) -> MutexGuard<'a, T> {
        cv.wait(guard).unwrap_or_else(PoisonError::into_inner)
    }
}

/// One address space's interval side: the protocol state, its lock and its wait queue.
#[derive(Debug)]
pub struct Notifier<P> {
    state: Mutex<Protocol<P>>,
    epoch_closed: Condvar,
    /// Threads inside [`Notifier::wait_seq_change`]; counted under the lock, so that the end
    /// closing an epoch (which changes `seq` under the same lock) skips the wake-up system call
    /// when nobody waits.
    waiters: AtomicUsize,
}

impl<P> Default for Notifier<P> {
    fn default() -> Self {
        Self::new()
    }
}

impl<P> Notifier<P> {
    /// A fresh, idle address space (SPEC R2).
    pub fn new() -> Self {
        Self {
            state: Mutex::new(Protocol::new()),
            epoch_closed: Condvar::new(),
            waiters: AtomicUsize::new(0),
        }
    }

    /// Lock the state. A panic elsewhere while locked cannot leave the protocol half-changed
    /// (every transition completes before returning), so a poisoned lock is taken over.
    pub fn lock(&self) -> MutexGuard<'_, Protocol<P>> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Try to lock without blocking (the garbage collector's traversal must not wait).
    pub fn try_lock(&self) -> Option<MutexGuard<'_, Protocol<P>>> {
        match self.state.try_lock() {
            Ok(guard) => Some(guard),
            Err(TryLockError::Poisoned(p)) => Some(p.into_inner()),
            Err(TryLockError::WouldBlock) => None,
        }
    }

    /// Wake every waiter after an end closed the epoch (R17; pairs with
    /// [`Notifier::wait_seq_change`]). Call it after dropping the guard.
    pub fn wake_all(&self) {
        // A waiter registers under the lock before it checks `seq`; the closing end changed
        // `seq` under the lock before calling this. So either the waiter saw the new `seq` and
        // does not sleep, or its registration is visible here.
        if self.waiters.load(Ordering::SeqCst) > 0 {
            self.epoch_closed.notify_all();
        }
    }

    /// Wait until `seq != w` (read under the lock, so a waiter for a deferred removal returns only
    /// once the closing end has applied the deferred list: the 5.18 fix, R41), or until `timeout`
    /// passes. Returns whether the epoch `w` is over.
    ///
    /// The caller must not hold the lock, nor anything an invalidation callback needs. Bindings
    /// call it in short slices so that they can look for signals in between.
    pub fn wait_seq_change(&self, w: u64, timeout: Duration) -> bool {
        let deadline = Instant::now().checked_add(timeout);
        let mut guard = self.lock();
        self.waiters.fetch_add(1, Ordering::SeqCst); // pairs with the load in `wake_all`

        // Loop invariant: `guard` is held; spurious wake-ups re-check the condition.
        let changed = loop {
            if guard.seq_changed(w) {
                break true;
            }
            let left = match deadline {
                Some(d) => d.saturating_duration_since(Instant::now()),
                None => Duration::from_secs(3600),
            };
            if left.is_zero() {
                break false;
            }
            guard = sync::wait_timeout(&self.epoch_closed, guard, left);
        };
        self.waiters.fetch_sub(1, Ordering::SeqCst);
        changed
    }
}
