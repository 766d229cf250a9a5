//! `IntervalNotifier`: one interval subscription (the kernel's `mmu_interval_notifier`) and its
//! read side: `read_begin`, `read_retry`, `check_retry`, `set_seq`, `remove` (SPEC R24-R32,
//! R39-R42).
//!
//! Invariants:
//! - A removed subscription stays readable (API.md; issue 10, item 8): the core forgets it, so
//!   its last seq is kept here (`last_seq`), recorded under the core lock before the core frees
//!   it; `invalidate_seq`, `read_begin`, `read_retry` and `check_retry` answer from it exactly
//!   as they did just before.
//! - The `refs` mutex is taken only with the GIL attached, briefly, never around a Python
//!   allocation or a GIL release, so the collector's `try_lock` always gets it and traversal
//!   reports the same references whatever the lock state (issue 10, item 6).

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use pyo3::exceptions::PyTimeoutError;
use pyo3::gc::{PyTraverseError, PyVisit};
use pyo3::prelude::*;

use super::convert::{timeout_arg, U64};
use super::mm::MMCore;
use crate::error::Error;
use crate::interval::Interval;
use crate::protocol::{Removal, SubKey};

/// The Python objects a subscription holds that may close a reference cycle; behind a mutex
/// only so that the garbage collector can clear them.
struct Refs {
    ops: Option<Py<PyAny>>,
    tag: Option<Py<PyAny>>,
}

/// An interval subscription, returned by `MM.insert_interval_notifier` (never built directly).
#[pyclass(frozen, weakref, module = "mmn_fast", name = "IntervalNotifier")]
pub struct IntervalNotifier {
    mm: Py<MMCore>,
    interval: Interval,
    /// The core's key, as `Handle` bits; written once, under the mm lock, by the insert.
    key: AtomicU64,
    refs: Mutex<Refs>,
    /// `remove()` was called (a second one fails at once, even while the first waits; D6).
    removed: AtomicBool,
    /// The seq when the core freed it ([`NOT_FREED`] until then); see the module docs.
    last_seq: Arc<AtomicU64>,
}

/// `last_seq` of a subscription the core still holds (a real seq is odd, R31).
const NOT_FREED: u64 = 0;

impl IntervalNotifier {
    pub(crate) fn new(
        mm: Py<MMCore>,
        interval: Interval,
        ops: Option<Py<PyAny>>,
        tag: Py<PyAny>,
    ) -> Self {
        Self {
            mm,
            interval,
            key: AtomicU64::new(u64::MAX),
            refs: Mutex::new(Refs {
                ops,
                tag: Some(tag),
            }),
            removed: AtomicBool::new(false),
            last_seq: Arc::new(AtomicU64::new(NOT_FREED)),
        }
    }

    pub(crate) fn set_key(&self, key: SubKey) {
        self.key.store(key.to_bits(), Ordering::Release);
    }

    fn key(&self) -> SubKey {
        SubKey::from_bits(self.key.load(Ordering::Acquire))
    }

    /// This subscription's seq, read under the mm lock; once freed, its last one.
    fn seq(&self, py: Python<'_>) -> PyResult<u64> {
        match self.mm.get().sub_seq(py, self.key()) {
            Some(seq) => Ok(seq),
            None => self.freed_seq(),
        }
    }

    /// The last seq of a subscription the core freed; read under the mm lock (it is recorded
    /// under that lock before the core frees the subscription).
    fn freed_seq(&self) -> PyResult<u64> {
        match self.last_seq.load(Ordering::Acquire) {
            NOT_FREED => Err(Error::NotSubscribed.into()),
            seq => Ok(seq),
        }
    }

    fn refs(&self) -> std::sync::MutexGuard<'_, Refs> {
        self.refs.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

#[pymethods]
impl IntervalNotifier {
    /// The `MM` this subscription belongs to.
    #[getter]
    fn mm(&self, py: Python<'_>) -> Py<MMCore> {
        self.mm.clone_ref(py)
    }

    /// The first address covered.
    #[getter]
    fn start(&self) -> u64 {
        self.interval.start()
    }

    /// The last address covered (inclusive).
    #[getter]
    fn last(&self) -> u64 {
        self.interval.last()
    }

    /// `last - start + 1`.
    #[getter]
    fn length(&self) -> u64 {
        // No subscription covers all 2**64 addresses (R38), so this cannot overflow.
        self.interval.last() - self.interval.start() + 1
    }

    /// The `ops` given at insert (None for a native subscription).
    #[getter]
    fn ops(&self, py: Python<'_>) -> Py<PyAny> {
        self.refs()
            .ops
            .as_ref()
            .map_or_else(|| py.None(), |o| o.clone_ref(py))
    }

    /// The `tag` given at insert (what `MM.drain_invalidated` reports).
    #[getter]
    fn tag(&self, py: Python<'_>) -> Py<PyAny> {
        self.refs()
            .tag
            .as_ref()
            .map_or_else(|| py.None(), |t| t.clone_ref(py))
    }

    /// This subscription's `invalidate_seq` (always odd, R31).
    #[getter]
    fn invalidate_seq(&self, py: Python<'_>) -> PyResult<u64> {
        self.seq(py)
    }

    /// `mmu_interval_read_begin` (R25-R27): this subscription's seq as read on entry; if the
    /// current epoch touched it, first wait (GIL released) until that epoch closes. Does not
    /// loop: `read_retry` may already be true when it returns.
    ///
    /// Raises `TimeoutError` when `timeout` seconds pass first; `RuntimeError` from inside an
    /// invalidation callback of this mm, where it would wait for itself (D6).
    #[pyo3(signature = (timeout = None))]
    fn read_begin(&self, py: Python<'_>, timeout: Option<&Bound<'_, PyAny>>) -> PyResult<u64> {
        let timeout = timeout_arg(timeout)?;
        let mm = self.mm.get();
        let (seq, must_wait) = match mm.sub_read_begin(py, self.key()) {
            Ok(answer) => answer,
            // Freed: no epoch can touch it any more, so there is nothing to wait for.
            Err(_) => (self.freed_seq()?, false),
        };
        if !must_wait {
            return Ok(seq);
        }
        if mm.inside_own_start() {
            return Err(Error::WouldDeadlock.into());
        }
        if mm.wait_epoch(py, seq, timeout)? {
            Ok(seq)
        } else {
            Err(PyTimeoutError::new_err(
                "read_begin timed out waiting for the invalidation to end",
            ))
        }
    }

    /// `mmu_interval_read_retry` (R28): true if an invalidation rewrote the seq since `seq`.
    /// Call it under the lock your `invalidate` holds around `set_seq`.
    fn read_retry(&self, py: Python<'_>, seq: U64) -> PyResult<bool> {
        Ok(seq.0 != self.seq(py)?)
    }

    /// `mmu_interval_check_retry` (R29): as `read_retry`, callable without your lock; true is
    /// reliable, false proves nothing.
    fn check_retry(&self, py: Python<'_>, seq: U64) -> PyResult<bool> {
        self.read_retry(py, seq)
    }

    /// `mmu_interval_set_seq` (R24): call from `invalidate` with its `cur_seq`, under your lock.
    /// Raises `SubscriptionRemovedError` once the subscription was removed.
    fn set_seq(&self, py: Python<'_>, cur_seq: U64) -> PyResult<()> {
        Ok(self.mm.get().sub_set_seq(py, self.key(), cur_seq.0)?)
    }

    /// `mmu_interval_notifier_remove` with the 5.18 fix (R39-R41, D4): when it returns, the
    /// subscription is out of the tree and its `invalidate` will never be called again. During
    /// an epoch that may call it, it waits (GIL released) for the closing end.
    ///
    /// Raises `SubscriptionRemovedError` (a `ValueError`) on a second call, at once (D6), and
    /// `RuntimeError` from inside an invalidation callback of this mm when it would have to
    /// wait (D6); neither changes anything.
    fn remove(&self, py: Python<'_>) -> PyResult<()> {
        if self.removed.swap(true, Ordering::AcqRel) {
            return Err(Error::NotSubscribed.into());
        }
        let mm = self.mm.get();
        let removal = mm.sub_remove(py, self.key(), &self.last_seq);
        if matches!(removal, Err(Error::WouldDeadlock)) {
            self.removed.store(false, Ordering::Release); // nothing changed: not removed
        }
        match removal? {
            Removal::Done(freed) => mm.release_payloads(py, freed),
            Removal::Deferred { wait_seq } => {
                mm.wait_epoch(py, wait_seq, None)?;
            }
        }
        Ok(())
    }

    fn __repr__(&self, py: Python<'_>) -> PyResult<String> {
        Ok(format!(
            "<IntervalNotifier [{:#x}, {:#x}] tag={}>",
            self.interval.start(),
            self.interval.last(),
            self.tag(py).bind(py).repr()?
        ))
    }

    fn __traverse__(&self, visit: PyVisit<'_>) -> Result<(), PyTraverseError> {
        visit.call(&self.mm)?;
        if let Ok(refs) = self.refs.try_lock() {
            if let Some(ops) = &refs.ops {
                visit.call(ops)?;
            }
            if let Some(tag) = &refs.tag {
                visit.call(tag)?;
            }
        }
        Ok(())
    }

    fn __clear__(&self) {
        let (ops, tag) = {
            let mut refs = self.refs();
            (refs.ops.take(), refs.tag.take())
        };
        drop((ops, tag));
    }
}
