//! `MMCore`: the native half of `mmn_fast.MM`, one address space. This file holds the class,
//! its locking and its Python surface (each method a short call into the file of its concern):
//! `invalidate.rs` (start and end of one range, waits), `batch.rs` (`invalidate_many`),
//! `release.rs` (`release()`), `subscriptions.rs` (insert, remove and the read side's locked
//! steps), `invalidation.rs` (the `with mm.invalidate(...)` object). Classic mode is reached
//! only through [`ClassicBridge`] (`bindings/classic.rs`), and only while a classic notifier is
//! registered, so an MM without one pays nothing for that mode (SPEC R5).
//!
//! Locking (SPEC D10; issue 10, items 2 and 6), for every file of this folder:
//! - The core mutex (`notifier`) is private to this folder and taken only inside `MMCore`'s
//!   own methods, in the short blocks marked "under the lock", and by native batches with the
//!   GIL released; so an attached thread takes it with [`MMCore::lock`], which waits with the
//!   GIL released ([`super::locking`]). No Python code runs under it and no Python object is
//!   touched there: the core keeps, per subscription, only the slot of its Python references
//!   in `refs`. Other files (`subscription.rs`) call methods here, never the lock.
//! - `refs` ([`PyRefs`]) holds every Python reference of the subscriptions (object, ops, tag),
//!   so the collector sees them whatever the core mutex is doing. A slot outlives its core
//!   subscription: it is released (attached) only after the core freed the subscription, so a
//!   slot collected under the core lock can be read after unlocking.
//! - References are dropped after unlocking (their destructors may run Python), and every wait
//!   runs with the GIL released.

mod batch;
mod invalidate;
mod invalidation;
mod release;
mod subscriptions;

pub use invalidation::Invalidation;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use pyo3::gc::{PyTraverseError, PyVisit};
use pyo3::prelude::*;
use pyo3::types::PyList;

use super::classic::ClassicBridge;
use super::convert::{EventArg, U64};
use super::errors::would_block;
use super::locking::acquire;
use super::pyrefs::PyRefs;
use super::range::{Blockable, Range};
use super::subscription::IntervalNotifier;
use crate::notifier::Notifier;
use crate::protocol::{Protocol, Sub, SubKey};

/// What the core keeps per subscription: the slot of its [`SubRefs`] in `MMCore::refs`.
pub struct SubPayload(u32);

/// The Python references of one subscription (see the module docs).
struct SubRefs {
    obj: Py<IntervalNotifier>,
    /// `None` for a native subscription.
    ops: Option<Py<PyAny>>,
    /// `ops` had a callable `invalidate` at insert: call `ops.invalidate`, looked up at each
    /// call; else call `ops` itself.
    by_method: bool,
    tag: Py<PyAny>,
}

/// Bytes of one subscription in the core: its tree slot with the protocol state and payload,
/// and its slot of Python references.
pub const SUB_NODE_BYTES: usize = crate::tree::IntervalTree::<Sub<SubPayload>>::NODE_BYTES
    + std::mem::size_of::<Option<SubRefs>>();

/// One hit of a start, as collected under the core lock.
enum Hit {
    /// A subscription with ops: its `refs` slot.
    Python(u32),
    /// A native subscription that came after a callback subscription in the walk: invalidated
    /// when the in-order walk reaches it, so that a refusal stops before it (R16).
    Native(SubKey),
}

impl Hit {
    fn of(key: SubKey, sub: &Sub<SubPayload>) -> Self {
        if sub.is_native() {
            Self::Native(key)
        } else {
            Self::Python(sub.payload.0)
        }
    }
}

/// One hit of a start to handle, in tree order, after unlocking.
enum Call {
    /// `ops.invalidate(obj, range, cur_seq)` (looked up at the call) when the flag is set,
    /// else `ops(obj, range, cur_seq)`.
    Python(Py<IntervalNotifier>, Py<PyAny>, bool),
    Native(SubKey),
}

/// The native half of `mmn_fast.MM`; see the module docs.
#[pyclass(
    frozen,
    subclass,
    weakref,
    module = "mmn_fast._mmn_fast",
    name = "MMCore"
)]
pub struct MMCore {
    /// The core (tree + protocol); its mutex is the core lock (see the module docs).
    notifier: Notifier<SubPayload>,
    /// The Python references of every subscription the core holds (see the module docs).
    refs: PyRefs<SubRefs>,
    /// Subscriptions queued for removal (R39b) and where to record their last seq when the
    /// closing end frees them (a removed subscription stays readable); only touched under the
    /// core lock.
    removals: Mutex<Vec<(SubKey, Arc<AtomicU64>)>>,
    /// Classic mode: its flag and hooks (see [`ClassicBridge`]).
    classic: ClassicBridge,
    /// The kernel's `mm_has_notifiers`: set by the first registration of any kind (R1, R4).
    has_notifiers: AtomicBool,
}

/// How a start ended when it did not raise.
enum StartOutcome {
    Done,
    Refused,
}

impl MMCore {
    /// This address space's identity for [`StartScope`].
    fn id(&self) -> usize {
        std::ptr::from_ref(self) as usize
    }

    fn classic_on(&self) -> bool {
        self.classic.is_on()
    }

    /// Lock the core from an attached thread, waiting (if at all) with the GIL released.
    fn lock(&self, py: Python<'_>) -> MutexGuard<'_, Protocol<SubPayload>> {
        acquire(
            py,
            || self.notifier.try_lock(),
            || drop(self.notifier.lock()),
        )
    }

    /// Release the `refs` slots of subscriptions the core freed; their references are dropped
    /// after unlocking.
    pub(crate) fn release_payloads(
        &self,
        py: Python<'_>,
        freed: impl IntoIterator<Item = SubPayload>,
    ) {
        let mut freed = freed.into_iter().peekable();
        if freed.peek().is_none() {
            return; // the common closing end frees nothing: no lock
        }
        let taken: Vec<SubRefs> = {
            let mut refs = self.refs.lock(py);
            freed.filter_map(|p| refs.remove(p.0)).collect()
        };
        drop(taken);
    }

    /// The calls for `hits`, read from `refs` after the core lock was dropped (each hit's slot
    /// lives until the end of the start that hit it).
    fn calls(&self, py: Python<'_>, hits: Vec<Hit>) -> Vec<Call> {
        if hits.is_empty() {
            return Vec::new(); // the common no-hit start takes no second lock
        }
        let refs = self.refs.lock(py);
        hits.into_iter()
            .filter_map(|hit| match hit {
                Hit::Native(key) => Some(Call::Native(key)),
                Hit::Python(slot) => {
                    let r = refs.get(slot)?;
                    Some(Call::Python(
                        r.obj.clone_ref(py),
                        r.ops.as_ref()?.clone_ref(py),
                        r.by_method,
                    ))
                }
            })
            .collect()
    }
}

#[pymethods]
impl MMCore {
    #[new]
    #[pyo3(signature = (*_args, **_kwargs))]
    fn new(_args: &Bound<'_, PyAny>, _kwargs: Option<&Bound<'_, PyAny>>) -> Self {
        Self {
            notifier: Notifier::new(),
            refs: PyRefs::new(),
            removals: Mutex::new(Vec::new()),
            classic: ClassicBridge::new(),
            has_notifiers: AtomicBool::new(false),
        }
    }

    /// `mmu_interval_notifier_insert` (R33-R36): subscribe `[start, start + length - 1]`;
    /// `ops.invalidate(sub, range, cur_seq)` or `ops(sub, range, cur_seq)` is called for every
    /// overlapping invalidation (`ops=None`: a native subscription). O(log n). Raises
    /// `OverflowError` for an empty or overflowing interval, `TypeError` for unusable `ops`,
    /// `ReleasedError` after `release()`.
    #[pyo3(signature = (start, length, ops = None, *, tag = None))]
    fn insert_interval_notifier(
        slf: &Bound<'_, Self>,
        start: U64,
        length: U64,
        ops: Option<Bound<'_, PyAny>>,
        tag: Option<Py<PyAny>>,
    ) -> PyResult<Py<IntervalNotifier>> {
        Self::insert(slf, start, length, ops, tag)
    }

    /// `invalidate_many`'s native part: `starts` and `ends` are buffers of u64 or sequences of
    /// ints. Returns the interval callbacks made.
    fn _invalidate_many(
        slf: &Bound<'_, Self>,
        starts: &Bound<'_, PyAny>,
        ends: &Bound<'_, PyAny>,
        event: EventArg,
    ) -> PyResult<u64> {
        Self::invalidate_batch(slf, starts, ends, event)
    }

    /// `mmu_notifier_release` (R59-R61, D9, D12): one RELEASE invalidation over every address
    /// to interval subscribers, then the classic releases; afterwards the mm takes no new
    /// subscription. Raises `ReleasedError` on a second call, and callback exceptions chained.
    fn release(slf: &Bound<'_, Self>) -> PyResult<()> {
        Self::release_all(slf)
    }

    /// The tags of native subscriptions invalidated since the last drain, each once; O(entries).
    fn drain_invalidated<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyList>> {
        self.drain_tags(py)
    }

    /// The interval subscriptions in the tree, in address order (a snapshot).
    fn intervals<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        self.snapshot(py)
    }

    /// `mmu_notifier_invalidate_range_start` (R12-R18, R44-R48, D1, D2, D13): call every
    /// overlapping subscription in address order, then the classic notifiers; O(log n + k).
    /// A refused non-blockable range raises `WouldBlock`; callback exceptions are raised
    /// chained. Either way the start has ended itself: do not call `invalidate_range_end`.
    fn invalidate_range_start(slf: &Bound<'_, Self>, range: &Bound<'_, Range>) -> PyResult<()> {
        match Self::start(slf, range)? {
            StartOutcome::Done => Ok(()),
            StartOutcome::Refused => Err(would_block(slf.py())),
        }
    }

    /// `mmu_notifier_invalidate_range_start_nonblock` (R20, D13): subscribers see a
    /// non-blockable range; a refusal returns False (the start has ended itself, D1).
    fn invalidate_range_start_nonblock(
        slf: &Bound<'_, Self>,
        range: &Bound<'_, Range>,
    ) -> PyResult<bool> {
        let py = slf.py();
        let shown;
        let range = if range.get().blockable {
            shown = range.get().non_blockable(py)?.into_bound(py);
            &shown
        } else {
            range
        };
        Ok(matches!(Self::start(slf, range)?, StartOutcome::Done))
    }

    /// `mmu_notifier_invalidate_range_end` / `_only_end` (R17, R49-R52, D5, D6): end a started
    /// invalidation; the last end applies deferred inserts and removals and wakes waiters.
    /// `RuntimeError` (nothing changes) when no invalidation is running.
    #[pyo3(signature = (range, *, only_end = false))]
    fn invalidate_range_end(
        slf: &Bound<'_, Self>,
        range: &Bound<'_, Range>,
        only_end: bool,
    ) -> PyResult<()> {
        Self::end(slf, range, only_end)
    }

    /// A context manager (`Invalidation`) pairing `invalidate_range_start` with
    /// `invalidate_range_end` over `Range(start, end, event, ...)`; raises as `Range` does.
    #[pyo3(signature = (start, end, event = EventArg::UNMAP, *, blockable = Blockable::OMITTED, owner = None, vma = None))]
    fn invalidate(
        slf: &Bound<'_, Self>,
        start: U64,
        end: U64,
        event: EventArg,
        blockable: Blockable,
        owner: Option<Py<PyAny>>,
        vma: Option<Py<PyAny>>,
    ) -> PyResult<Invalidation> {
        let py = slf.py();
        let range = Py::new(
            py,
            Range::new(py, start, end, event, blockable, vma, owner)?,
        )?;
        Ok(Invalidation::new(slf.clone().unbind(), range))
    }

    fn __len__(&self, py: Python<'_>) -> usize {
        self.lock(py).len()
    }

    /// The mm's `invalidate_seq` (odd while an epoch runs, R7).
    #[getter]
    fn invalidate_seq(&self, py: Python<'_>) -> u64 {
        self.lock(py).seq()
    }

    /// Starts between their start and end (R11, D5).
    #[getter]
    fn active_invalidate_ranges(&self, py: Python<'_>) -> u64 {
        self.lock(py).active()
    }

    /// `mm_has_notifiers` (R4).
    #[getter]
    fn has_notifiers(&self) -> bool {
        self.has_notifiers.load(Ordering::Acquire)
    }

    /// Whether `release()` has begun (classic mode refuses registrations then, D12).
    #[getter]
    fn _released(&self, py: Python<'_>) -> bool {
        self.lock(py).released()
    }

    /// Classic mode tells the core whether it has a notifier (see the module docs).
    fn _set_classic(&self, on: bool) {
        if on {
            self.has_notifiers.store(true, Ordering::Release);
        }
        self.classic.set_on(on);
    }

    /// `MM.__init__` hands over its classic-mode hooks (a `ClassicHooks`), once.
    fn _set_classic_hooks(&self, hooks: Py<PyAny>) {
        self.classic.set_hooks(hooks);
    }

    /// Check the core invariants (R81, R84 and the tree's); for tests.
    fn _check_invariants(&self, py: Python<'_>) -> PyResult<()> {
        self.lock(py)
            .check_invariants()
            .map_err(pyo3::exceptions::PyAssertionError::new_err)
    }

    /// Bytes held beside the tree: the summary of occupied blocks and the native hits' bits
    /// and log (the rest of a subscription's core bytes is `SUB_NODE_BYTES`); for the
    /// benchmark's memory row.
    fn _side_bytes(&self, py: Python<'_>) -> usize {
        self.lock(py).side_bytes()
    }

    fn __traverse__(&self, visit: PyVisit<'_>) -> Result<(), PyTraverseError> {
        // Never the core lock: `refs` reports the same references whatever it is doing.
        self.classic.traverse(&visit)?;
        self.refs.traverse(&visit, |visit, r| {
            visit.call(&r.obj)?;
            visit.call(&r.tag)?;
            r.ops.as_ref().map_or(Ok(()), |ops| visit.call(ops))
        })
    }

    fn __clear__(&self) {
        // Unreachable, so no other thread uses it: emptying the core cannot wait.
        let slots = self.notifier.lock().drain_payloads();
        drop(slots);
        drop(self.refs.take_all());
        self.classic.clear();
    }
}
