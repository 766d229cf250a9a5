//! The bridge to classic mode (`mmn_fast._classic`, pure Python): [`ClassicBridge`] holds the
//! object handed over by `MM.__init__` (typed in Python as `mmn_fast._types.ClassicHooks`, a
//! `Protocol`) and is the only code that calls it. The four hooks and their shapes:
//!
//! - `start(range) -> (token, refused, errors)`: the classic starts of one range;
//! - `abort(token, range) -> errors`: the ends owed by a start that failed (R46, D1);
//! - `end(range, only_end) -> errors`: the classic ends (R49, R50);
//! - `release() -> errors`: the classic side of `mm.release()` (R60, R61).
//!
//! Each hook catches every exception of its work and returns them in `errors`; it raises only
//! if an exception (a `KeyboardInterrupt` from a signal) lands before its first protected
//! instruction, when it has done nothing yet. The ends it owes must still happen, so an
//! `abort`, `end` or `release` that raised is called again (the exception is kept and raised
//! with the others, API.md "Errors"); a `start` that raised started nothing, and the caller
//! ends the interval side only.
//!
//! Locking: `hooks` is a plain mutex taken only by attached threads and held only to copy or
//! swap one reference (no Python runs, nothing is allocated, the GIL is never released under
//! it), so it is never contended and the collector's `try_lock` always gets it.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, PoisonError};

use pyo3::exceptions::PyRuntimeError;
use pyo3::gc::{PyTraverseError, PyVisit};
use pyo3::intern;
use pyo3::prelude::*;

use super::callbacks::Collected;
use super::range::Range;

/// How many times an owed hook is called when it raises before doing anything: one
/// interrupt per try is already unlikely; a hook that raises every time is a bug, reported.
const OWED_TRIES: usize = 3;

/// Classic mode as the core sees it: whether a classic notifier is registered (so an MM
/// without one pays nothing for that mode, SPEC R5) and the hooks to call when one is.
pub struct ClassicBridge {
    hooks: Mutex<Option<Py<PyAny>>>,
    /// A classic notifier is registered: call the hooks.
    on: AtomicBool,
}

impl ClassicBridge {
    pub const fn new() -> Self {
        Self {
            hooks: Mutex::new(None),
            on: AtomicBool::new(false),
        }
    }

    pub fn is_on(&self) -> bool {
        self.on.load(Ordering::Acquire)
    }

    pub fn set_on(&self, on: bool) {
        self.on.store(on, Ordering::Release);
    }

    /// Hand over the hooks object (the one before, if any, is dropped after unlocking).
    pub fn set_hooks(&self, hooks: Py<PyAny>) {
        let old = self.slot().replace(hooks);
        drop(old);
    }

    fn slot(&self) -> std::sync::MutexGuard<'_, Option<Py<PyAny>>> {
        self.hooks.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn hooks<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        let hooks = self.slot().as_ref().map(|h| h.clone_ref(py));
        hooks.map(|h| h.into_bound(py)).ok_or_else(|| {
            PyRuntimeError::new_err("classic mode has no hooks (MM.__init__ not run)")
        })
    }

    /// The classic starts of `range`: `Some((token, refused))` when the hook ran (its
    /// exceptions are in `errors`), `None` when it could not run (nothing was started).
    pub fn start<'py>(
        &self,
        range: &Bound<'py, Range>,
        errors: &mut Collected,
    ) -> Option<(Bound<'py, PyAny>, bool)> {
        let py = range.py();
        let returned = self.hooks(py).and_then(|h| {
            h.call_method1(intern!(py, "start"), (range,))?.extract::<(
                Bound<'py, PyAny>,
                bool,
                Bound<'py, PyAny>,
            )>()
        });
        let (token, refused, raised) = errors.keep(returned)?;
        let listed = errors.extend_from_list(&raised);
        errors.keep(listed);
        Some((token, refused))
    }

    /// The ends owed by a failed start that `start` gave `token` (R46, D1).
    pub fn abort(
        &self,
        token: &Bound<'_, PyAny>,
        range: &Bound<'_, Range>,
        errors: &mut Collected,
    ) {
        let py = range.py();
        self.owed(py, errors, |h| {
            h.call_method1(intern!(py, "abort"), (token, range))
        });
    }

    /// The classic ends of `range` (R49, R50).
    pub fn end(&self, range: &Bound<'_, Range>, only_end: bool, errors: &mut Collected) {
        let py = range.py();
        self.owed(py, errors, |h| {
            h.call_method1(intern!(py, "end"), (range, only_end))
        });
    }

    /// The classic side of `mm.release()` (R60, R61).
    pub fn release(&self, py: Python<'_>, errors: &mut Collected) {
        self.owed(py, errors, |h| h.call_method0(intern!(py, "release")));
    }

    /// Call a hook that owes callbacks until it runs (see the module docs).
    fn owed<'py>(
        &self,
        py: Python<'py>,
        errors: &mut Collected,
        call: impl Fn(&Bound<'py, PyAny>) -> PyResult<Bound<'py, PyAny>>,
    ) {
        let Some(hooks) = errors.keep(self.hooks(py)) else {
            return;
        };
        for _ in 0..OWED_TRIES {
            match call(&hooks) {
                Ok(raised) => {
                    let listed = errors.extend_from_list(&raised);
                    errors.keep(listed);
                    return;
                }
                Err(err) => errors.push(err),
            }
        }
    }

    pub fn traverse(&self, visit: &PyVisit<'_>) -> Result<(), PyTraverseError> {
        match self.hooks.try_lock() {
            Ok(slot) => slot.as_ref().map_or(Ok(()), |h| visit.call(h)),
            Err(_) => Ok(()),
        }
    }

    /// Drop the hooks (GC `__clear__`); dropped after unlocking.
    pub fn clear(&self) {
        let old = self.slot().take();
        drop(old);
    }
}
