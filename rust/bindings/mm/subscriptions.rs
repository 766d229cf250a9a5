//! The subscriptions of one address space: insert, snapshots, and every locked step of an
//! `IntervalNotifier`'s read side and removal (`bindings/subscription.rs` calls these; it never
//! takes the core lock itself).
//!
//! Locking: each method takes the core lock once, for a copy or one protocol step; Python
//! objects are built and references dropped after unlocking.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, PoisonError};

use pyo3::intern;
use pyo3::prelude::*;
use pyo3::types::PyList;

use super::{MMCore, SubPayload, SubRefs};
use crate::bindings::convert::U64;
use crate::bindings::subscription::IntervalNotifier;
use crate::error::Error;
use crate::interval::Interval;
use crate::protocol::{Removal, SubKey};

impl MMCore {
    /// `mmu_interval_notifier_insert` (R33-R36): check everything, then publish.
    pub(super) fn insert(
        slf: &Bound<'_, Self>,
        start: U64,
        length: U64,
        ops: Option<Bound<'_, PyAny>>,
        tag: Option<Py<PyAny>>,
    ) -> PyResult<Py<IntervalNotifier>> {
        let py = slf.py();
        // D3: every argument is checked before anything changes.
        let interval = Interval::from_start_length(start.0, length.0)?;
        let by_method = ops.as_ref().map(by_method).transpose()?.unwrap_or(false);
        let tag = tag.unwrap_or_else(|| py.None());
        let ops = ops.map(Bound::unbind);
        let native = ops.is_none();
        let obj = Py::new(
            py,
            IntervalNotifier::new(
                slf.clone().unbind(),
                interval,
                ops.as_ref().map(|o| o.clone_ref(py)),
                tag.clone_ref(py),
            ),
        )?;
        let this = slf.get();
        let refs = SubRefs {
            obj: obj.clone_ref(py),
            ops,
            by_method,
            tag,
        };
        let slot = this.refs.lock(py).insert(refs);
        let inserted = {
            let mut guard = this.lock(py); // under the lock
            guard
                .insert(interval, native, SubPayload(slot))
                // Published under the lock: no other thread can reach `obj` before its key.
                .map(|(key, _)| obj.get().set_key(key))
        };
        if let Err(err) = inserted {
            this.release_payloads(py, [SubPayload(slot)]);
            return Err(err.into());
        }
        this.has_notifiers.store(true, Ordering::Release);
        Ok(obj)
    }

    /// One entry (the tag) per native subscription invalidated since the last drain.
    pub(super) fn drain_tags<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyList>> {
        let mut slots = Vec::new();
        let gone = self.lock(py).drain_journal(|p| slots.push(p.0));
        let tags: Vec<Py<PyAny>> = {
            let refs = self.refs.lock(py);
            slots
                .iter()
                .filter_map(|&slot| Some(refs.get(slot)?.tag.clone_ref(py)))
                .collect()
        };
        self.release_payloads(py, gone);
        PyList::new(py, tags)
    }

    /// The interval subscriptions in the tree, in address order (a snapshot).
    pub(super) fn snapshot<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        let slots: Vec<u32> = {
            let guard = self.lock(py); // under the lock
            guard
                .tree()
                .iter()
                .map(|(_, _, sub)| sub.payload.0)
                .collect()
        };
        let subs: Vec<Py<IntervalNotifier>> = {
            let refs = self.refs.lock(py);
            slots
                .iter()
                .filter_map(|&slot| Some(refs.get(slot)?.obj.clone_ref(py)))
                .collect()
        };
        Ok(PyList::new(py, subs)?.try_iter()?.into_any())
    }

    /// `key`'s seq (R24), or `None` once the core freed it.
    pub(crate) fn sub_seq(&self, py: Python<'_>, key: SubKey) -> Option<u64> {
        let mut guard = self.lock(py); // under the lock
        guard.sub(key).map(|(_, sub)| sub.seq())
    }

    /// `read_begin`'s locked step (R25-R27): `key`'s seq and whether the current epoch touched
    /// it (then the caller waits); `NotSubscribed` once the core freed it.
    pub(crate) fn sub_read_begin(&self, py: Python<'_>, key: SubKey) -> Result<(u64, bool), Error> {
        self.lock(py).read_begin(key)
    }

    /// `set_seq` (R24): `NotSubscribed` once removed.
    pub(crate) fn sub_set_seq(&self, py: Python<'_>, key: SubKey, seq: u64) -> Result<(), Error> {
        let mut guard = self.lock(py); // under the lock
        let (_, sub) = guard.sub_mut(key).ok_or(Error::NotSubscribed)?;
        sub.set_seq(seq);
        Ok(())
    }

    /// `remove`'s locked step (R39-R41, D4, D6): unlink `key` now or queue it for the closing
    /// end, recording where its last seq goes (`last_seq`) before the core can free it.
    /// `WouldDeadlock`, changing nothing, when it would wait for a start this thread runs.
    pub(crate) fn sub_remove(
        &self,
        py: Python<'_>,
        key: SubKey,
        last_seq: &Arc<AtomicU64>,
    ) -> Result<Removal<SubPayload>, Error> {
        let mut guard = self.lock(py); // under the lock
        if guard.remove_would_wait(key) && self.inside_own_start() {
            return Err(Error::WouldDeadlock);
        }
        let seq = guard.sub(key).map(|(_, sub)| sub.seq());
        let removal = guard.remove(key);
        match (&removal, seq) {
            (Ok(Removal::Done(_)), Some(seq)) => last_seq.store(seq, Ordering::Release),
            (Ok(Removal::Deferred { .. }), _) => self.record_removal(key, last_seq.clone()),
            _ => {}
        }
        removal
    }

    /// Queue the record of `key`'s last seq for the closing end; under the lock.
    fn record_removal(&self, key: SubKey, last_seq: Arc<AtomicU64>) {
        let mut removals = self.removals.lock().unwrap_or_else(PoisonError::into_inner);
        removals.push((key, last_seq));
    }
}

/// How `ops` is called (API.md "Ops"), decided at insert: true when it has a callable
/// `invalidate` (then `ops.invalidate` is looked up at each call, so a replaced method is the
/// one called), false when `ops` itself is callable (called directly, with no lookup: a failed
/// attribute lookup per call would cost an exception each time); anything else is `TypeError`.
fn by_method(ops: &Bound<'_, PyAny>) -> PyResult<bool> {
    let py = ops.py();
    match ops.getattr(intern!(py, "invalidate")) {
        Ok(m) if m.is_callable() => return Ok(true),
        Ok(_) => {}
        Err(err) if err.is_instance_of::<pyo3::exceptions::PyAttributeError>(py) => {}
        Err(err) => return Err(err),
    }
    if ops.is_callable() {
        return Ok(false);
    }
    Err(pyo3::exceptions::PyTypeError::new_err(format!(
        "ops must have a callable invalidate(sub, range, cur_seq) or be callable, not {}",
        ops.get_type().name()?
    )))
}
