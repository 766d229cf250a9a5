//! `Invalidation`: what `mm.invalidate(...)` returns, a context manager pairing one start with
//! one end. It holds no lock; it calls `MMCore`'s entry points.

use std::sync::atomic::{AtomicBool, Ordering};

use pyo3::gc::{PyTraverseError, PyVisit};
use pyo3::prelude::*;

use super::MMCore;
use crate::bindings::range::Range;

/// What `mm.invalidate(...)` returns: `with mm.invalidate(start, end) as range:` starts the
/// invalidation on entry and ends it on exit, even when the body raises.
///
/// Invariant (issue 10, item 3): every start this object makes is paired with exactly one end.
/// It is open from an accepted `__enter__` to its `__exit__`; entering it while it is open
/// (nested, or from another thread) raises `RuntimeError` before starting anything. Once exited
/// (or after a start that failed) it may be entered again.
///
/// GC: it visits its mm and range; it needs no `__clear__`, since both are set when it is
/// built: any cycle through it passes through an older, mutable object that can be cleared.
#[pyclass(frozen, module = "mmn_fast")]
pub struct Invalidation {
    mm: Py<MMCore>,
    range: Py<Range>,
    /// Open: between an accepted `__enter__` and its `__exit__`.
    entered: AtomicBool,
}

impl Invalidation {
    pub(super) fn new(mm: Py<MMCore>, range: Py<Range>) -> Self {
        Self {
            mm,
            range,
            entered: AtomicBool::new(false),
        }
    }
}

#[pymethods]
impl Invalidation {
    /// Start; on failure neither the body nor the end runs. `RuntimeError` while already open.
    fn __enter__(&self, py: Python<'_>) -> PyResult<Py<Range>> {
        if self
            .entered
            .compare_exchange(false, true, Ordering::AcqRel, Ordering::Acquire)
            .is_err()
        {
            return Err(pyo3::exceptions::PyRuntimeError::new_err(
                "this invalidate() context manager is already entered; make one per use",
            ));
        }
        if let Err(err) = MMCore::invalidate_range_start(self.mm.bind(py), self.range.bind(py)) {
            self.entered.store(false, Ordering::Release);
            return Err(err);
        }
        Ok(self.range.clone_ref(py))
    }

    /// End, whether or not the body raised; the body's exception propagates.
    fn __exit__(
        &self,
        py: Python<'_>,
        _exc_type: &Bound<'_, PyAny>,
        _exc: &Bound<'_, PyAny>,
        _tb: &Bound<'_, PyAny>,
    ) -> PyResult<bool> {
        if self.entered.load(Ordering::Acquire) {
            // Closed only after the end: a second entry meanwhile is still refused.
            let ended = MMCore::end(self.mm.bind(py), self.range.bind(py), false);
            self.entered.store(false, Ordering::Release);
            ended?;
        }
        Ok(false)
    }

    /// The range subscribers receive.
    #[getter]
    fn range(&self, py: Python<'_>) -> Py<Range> {
        self.range.clone_ref(py)
    }

    fn __traverse__(&self, visit: PyVisit<'_>) -> Result<(), PyTraverseError> {
        visit.call(&self.mm)?;
        visit.call(&self.range)
    }
}
