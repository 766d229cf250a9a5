//! Taking a Rust lock from a thread attached to the interpreter (issue 10, item 2).
//!
//! Invariant: no binding waits for a lock with the GIL held. Sections that run with the GIL
//! released (`overlap_many`, native batches) may hold a lock for a long time; a thread that
//! waited for it with the GIL held would stop every other Python thread meanwhile, or deadlock
//! against a thread that needs the GIL to finish. So a lock is first tried with the GIL
//! attached, and only while it is busy does the thread wait for it with the GIL released; it
//! then tries again attached (the guard itself cannot cross the detached section).

use std::sync::{TryLockError, TryLockResult};
use std::time::Duration;

use pyo3::prelude::*;

/// How long [`let_others_run`] stays detached: long enough for a thread woken by the release to
/// take the GIL (one scheduler wake-up), short against the work between two calls.
const HANDOFF: Duration = Duration::from_micros(50);

/// Give the GIL to a thread that waits for it, in the middle of long attached work.
///
/// Releasing and at once re-taking the GIL is not enough: it wakes a waiter, which then finds
/// the GIL taken again and restarts its switch-interval wait, so a caller that yields more often
/// than the switch interval (5 ms) starves it for good. Staying detached for [`HANDOFF`] lets
/// the woken waiter run.
pub fn let_others_run(py: Python<'_>) {
    py.detach(|| std::thread::sleep(HANDOFF));
}

/// Take a lock: `try_now` (attached) until it succeeds; between two tries, `wait` (which blocks
/// until the lock is probably free, and releases it again) runs with the GIL released.
pub fn acquire<G>(
    py: Python<'_>,
    mut try_now: impl FnMut() -> Option<G>,
    wait: impl Fn() + Sync,
) -> G {
    loop {
        if let Some(guard) = try_now() {
            return guard;
        }
        py.detach(&wait);
    }
}

/// A `try_lock` result as [`acquire`]'s `try_now` wants it: the guard (a poisoned lock is
/// taken as it is, as every lock of the bindings does), or `None` while busy.
pub fn taken<G>(result: TryLockResult<G>) -> Option<G> {
    match result {
        Ok(guard) => Some(guard),
        Err(TryLockError::Poisoned(p)) => Some(p.into_inner()),
        Err(TryLockError::WouldBlock) => None,
    }
}
