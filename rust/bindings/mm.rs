//! `MMCore`: one address space's interval side and the invalidation entry points. The Python
//! class `mmn_fast.MM` subclasses it and adds classic mode (`mmn_fast._classic`), which this
//! file reaches only through four hooks on `self._classic` (`start`, `abort`, `end`,
//! `release`) and only while `_set_classic(True)` says that a classic notifier exists, so an MM
//! without one pays nothing for that mode (SPEC R5).
//!
//! Locking (SPEC D10; issue 10, items 2 and 6):
//! - The core mutex is held only inside the short blocks marked "under the lock", and by native
//!   batches with the GIL released; so an attached thread takes it with [`MMCore::lock`], which
//!   waits with the GIL released ([`super::locking`]). No Python code runs under it and no Python
//!   object is touched there: the core keeps, per subscription, only the slot of its Python
//!   references in `refs`.
//! - `refs` ([`PyRefs`]) holds every Python reference of the subscriptions (object, ops, tag),
//!   so the collector sees them whatever the core mutex is doing. A slot outlives its core
//!   subscription: it is released (attached) only after the core freed the subscription, so a
//!   slot collected under the core lock can be read after unlocking.
//! - References are dropped after unlocking (their destructors may run Python), and every wait
//!   runs with the GIL released.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use pyo3::gc::{PyTraverseError, PyVisit};
use pyo3::intern;
use pyo3::prelude::*;
use pyo3::types::PyList;

use super::callbacks::{warn, Collected, StartScope};
use super::classic::ClassicBridge;
use super::convert::{decode_batch, EventArg, U64s, EVENT_RELEASE, U64};
use super::errors::would_block;
use super::locking::acquire;
use super::pyrefs::PyRefs;
use super::range::{Blockable, Range};
use super::subscription::IntervalNotifier;
use crate::error::Error;
use crate::interval::Interval;
use crate::notifier::Notifier;
use crate::protocol::{Ended, Protocol, Started, Sub, SubKey};

/// How long a wait sleeps with the GIL released before it looks for signals (Ctrl-C reaches
/// the caller within about this long).
const WAIT_SLICE: Duration = Duration::from_millis(50);

/// Ranges `invalidate_many` runs per GIL release, between two looks for signals.
const BATCH_BLOCK: usize = 1 << 14;

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
    pub(crate) notifier: Notifier<SubPayload>,
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
    pub(crate) fn lock(&self, py: Python<'_>) -> MutexGuard<'_, Protocol<SubPayload>> {
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
        let taken: Vec<SubRefs> = {
            let mut refs = self.refs.lock(py);
            freed.into_iter().filter_map(|p| refs.remove(p.0)).collect()
        };
        drop(taken);
    }

    /// The calls for `hits`, read from `refs` after the core lock was dropped (each hit's slot
    /// lives until the end of the start that hit it).
    fn calls(&self, py: Python<'_>, hits: Vec<Hit>) -> Vec<Call> {
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

    /// Interval-side start (R12): count it, and under the lock collect the hits to handle after
    /// unlocking (natives before the first callback subscription are handled by the core there).
    fn begin(&self, py: Python<'_>, query: Interval) -> (Started, Vec<Call>) {
        let mut hits = Vec::new();
        let started = self
            .lock(py)
            .start(query, |key, _, sub, _| hits.push(Hit::of(key, sub)));
        (started, self.calls(py, hits))
    }

    /// `end()` under the lock; an end that may close the epoch first records the last seq of
    /// the subscriptions it will free (so that they stay readable once removed).
    fn end_locked(&self, guard: &mut Protocol<SubPayload>) -> Result<Ended<SubPayload>, Error> {
        if guard.active() == 1 {
            let mut removals = self.removals.lock().unwrap_or_else(PoisonError::into_inner);
            for (key, last_seq) in removals.drain(..) {
                if let Some((_, sub)) = guard.sub(key) {
                    last_seq.store(sub.seq(), Ordering::Release);
                }
            }
        }
        guard.end()
    }

    /// Queue the record of `key`'s last seq for the closing end; under the lock.
    pub(crate) fn record_removal(&self, key: SubKey, last_seq: Arc<AtomicU64>) {
        let mut removals = self.removals.lock().unwrap_or_else(PoisonError::into_inner);
        removals.push((key, last_seq));
    }

    /// Interval-side end (R17). Freed payloads are dropped and waiters woken after unlocking.
    ///
    /// # Errors
    /// `RuntimeError` with no invalidation running; nothing changes (D6).
    fn end_interval(&self, py: Python<'_>) -> PyResult<()> {
        let ended = self.end_locked(&mut self.lock(py))?;
        self.after_end(py, ended);
        Ok(())
    }

    fn after_end(&self, py: Python<'_>, ended: Ended<SubPayload>) {
        if let Ended::Closed { freed } = ended {
            self.notifier.wake_all();
            self.release_payloads(py, freed);
        }
    }

    /// Call the interval callbacks of one start, in tree order (R13). Returns true when one
    /// refused a non-blockable range: the walk stops there (R16). A false result on a blockable
    /// range warns and is ignored (R15, D2); an exception is collected and the walk goes on (D1).
    fn call_interval(
        &self,
        py: Python<'_>,
        range: &Bound<'_, Range>,
        cur_seq: u64,
        calls: Vec<Call>,
        errors: &mut Collected,
    ) -> bool {
        let blockable = range.get().blockable;
        let Ok(cur_seq_obj) = cur_seq.into_pyobject(py);
        for call in calls {
            let (obj, ops, by_method) = match call {
                Call::Python(obj, ops, by_method) => (obj, ops, by_method),
                Call::Native(key) => {
                    let done = self.lock(py).invalidate_native(key, cur_seq);
                    debug_assert!(done, "a hit of an active start is still subscribed");
                    continue;
                }
            };
            // Looked up at each call (API.md "Ops"): a replaced `invalidate` is the one called.
            let args = (obj.bind(py), range, &cur_seq_obj);
            let ops = ops.bind(py);
            let result = if by_method {
                ops.call_method1(intern!(py, "invalidate"), args)
            } else {
                ops.call1(args)
            };
            match errors.keep(result.and_then(|v| v.is_truthy())) {
                Some(false) if blockable => {
                    let sub = obj
                        .bind(py)
                        .repr()
                        .map_or_else(|_| "?".into(), |r| r.to_string());
                    let text =
                        format!("{sub} returned False on a blockable range; ignored (SPEC D2)");
                    warn(py, errors, &text);
                }
                Some(false) => return true,
                _ => {}
            }
        }
        false
    }

    /// The whole start of one range, both modes (R12-R18, R44-R47, D1): interval callbacks, then
    /// classic starts. A start that fails (a refusal or any exception) has already ended itself
    /// when this returns: interval end first, then the classic ends owed (R52, D1).
    fn start(slf: &Bound<'_, Self>, range: &Bound<'_, Range>) -> PyResult<StartOutcome> {
        let (started, calls) = slf.get().begin(slf.py(), range.get().query);
        Self::complete_start(slf, range, started.cur_seq, calls)
    }

    /// The part of a start after the interval side counted it: see [`MMCore::start`].
    fn complete_start(
        slf: &Bound<'_, Self>,
        range: &Bound<'_, Range>,
        cur_seq: u64,
        calls: Vec<Call>,
    ) -> PyResult<StartOutcome> {
        let py = slf.py();
        let this = slf.get();
        let classic = this.classic_on();
        if calls.is_empty() && !classic {
            return Ok(StartOutcome::Done);
        }
        let _scope = StartScope::enter(this.id());
        let mut errors = Collected::default();
        let refused = this.call_interval(py, range, cur_seq, calls, &mut errors);
        let mut token = None;
        let mut classic_refused = false;
        if classic && !refused {
            // R16: an interval refusal skips the classic starts; an exception does not (D1).
            if let Some((tok, hook_refused)) = this.classic.start(range, &mut errors) {
                classic_refused = hook_refused;
                token = Some(tok);
            }
        }
        if !refused && !classic_refused && errors.is_empty() {
            return Ok(StartOutcome::Done);
        }
        errors.keep(this.end_interval(py));
        if let Some(token) = token {
            this.classic.abort(&token, range, &mut errors);
        }
        errors.into_result(py)?;
        Ok(StartOutcome::Refused)
    }

    /// The whole end of one range, both modes (R49-R52).
    fn end(slf: &Bound<'_, Self>, range: &Bound<'_, Range>, only_end: bool) -> PyResult<()> {
        let py = slf.py();
        let this = slf.get();
        this.end_interval(py)?;
        if !this.classic_on() {
            return Ok(());
        }
        let mut errors = Collected::default();
        this.classic.end(range, only_end, &mut errors);
        errors.into_result(py)
    }

    /// Wait, with the GIL released, until the epoch `w` is over; look for signals every
    /// [`WAIT_SLICE`]. Returns false when `timeout` ran out first.
    pub(crate) fn wait_epoch(
        &self,
        py: Python<'_>,
        w: u64,
        timeout: Option<Duration>,
    ) -> PyResult<bool> {
        let deadline = timeout.and_then(|t| Instant::now().checked_add(t));
        loop {
            let slice = deadline.map_or(WAIT_SLICE, |d| {
                d.saturating_duration_since(Instant::now()).min(WAIT_SLICE)
            });
            if py.detach(|| self.notifier.wait_seq_change(w, slice)) {
                return Ok(true);
            }
            py.check_signals()?;
            if deadline.is_some_and(|d| Instant::now() >= d) {
                return Ok(false);
            }
        }
    }

    /// Whether this thread is inside a start on this address space, so that waiting for its
    /// epoch would wait for itself (D6).
    pub(crate) fn inside_own_start(&self) -> bool {
        StartScope::inside(self.id())
    }

    /// `invalidate_many`'s Rust part (runs with the GIL released): run `queries` (start + end
    /// each) while every hit is native, several ranges per lock hold. Stops at the first range
    /// that reaches a Python callback, with that range's start done: returns its index,
    /// `cur_seq` and the hits to handle. Freed payloads go to `freed`, for the caller to release
    /// once attached.
    fn run_natives(
        &self,
        queries: &[Interval],
        hits: &mut u64,
        freed: &mut Vec<SubPayload>,
    ) -> Option<(usize, u64, Vec<Hit>)> {
        const PER_LOCK: usize = 64;
        for (chunk_no, chunk) in queries.chunks(PER_LOCK).enumerate() {
            let mut closed = false;
            let mut guard = self.notifier.lock();
            for (i, &query) in chunk.iter().enumerate() {
                let mut keys = Vec::new();
                let started = guard.start(query, |key, _, sub, _| keys.push(Hit::of(key, sub)));
                *hits += started.hits as u64;
                if !keys.is_empty() {
                    drop(guard);
                    if closed {
                        self.notifier.wake_all();
                    }
                    return Some((chunk_no * PER_LOCK + i, started.cur_seq, keys));
                }
                match self.end_locked(&mut guard) {
                    Ok(Ended::Closed { freed: f }) => {
                        freed.extend(f);
                        closed = true;
                    }
                    Ok(Ended::Open) => {}
                    Err(_) => debug_assert!(false, "end without start in the same lock hold"),
                }
            }
            drop(guard);
            if closed {
                self.notifier.wake_all();
            }
        }
        None
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

    /// `mmu_interval_notifier_insert` (R33-R36); see API.md.
    #[pyo3(signature = (start, length, ops = None, *, tag = None))]
    fn insert_interval_notifier(
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

    /// `mmu_notifier_invalidate_range_start` (R12-R18, R44-R48, D1, D2, D13).
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

    /// `mmu_notifier_invalidate_range_end` / `_only_end` (R17, R49-R52, D5, D6).
    #[pyo3(signature = (range, *, only_end = false))]
    fn invalidate_range_end(
        slf: &Bound<'_, Self>,
        range: &Bound<'_, Range>,
        only_end: bool,
    ) -> PyResult<()> {
        Self::end(slf, range, only_end)
    }

    /// A context manager pairing `invalidate_range_start` with `invalidate_range_end`.
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
        Ok(Invalidation {
            mm: slf.clone().unbind(),
            range,
            entered: AtomicBool::new(false),
        })
    }

    /// `invalidate_many`'s native part: `starts` and `ends` are buffers of u64 or sequences of
    /// ints. Returns the interval callbacks made.
    fn _invalidate_many(
        slf: &Bound<'_, Self>,
        starts: &Bound<'_, PyAny>,
        ends: &Bound<'_, PyAny>,
        event: EventArg,
    ) -> PyResult<u64> {
        let py = slf.py();
        let this = slf.get();
        let event = event.0;
        let (starts, ends) = (
            U64s::extract(starts, "starts")?,
            U64s::extract(ends, "ends")?,
        );
        // The whole batch is checked before anything changes (D3), large ones without the GIL.
        let queries = decode_batch(py, &starts, &ends, Interval::from_range, "range")?;
        drop((starts, ends));
        let mut hits = 0u64;
        let mut i = 0;
        let mut stopped_at_callback = false;
        while i < queries.len() {
            if this.classic_on() {
                // Classic notifiers need a Range and Python for every range.
                let q = queries[i];
                let range = batch_range(py, q, event)?;
                let (started, calls) = this.begin(py, q);
                hits += started.hits as u64;
                Self::finish_batch_range(slf, &range, started.cur_seq, calls)?;
                i += 1;
                continue;
            }
            let block = &queries[i..queries.len().min(i + BATCH_BLOCK)];
            let mut freed = Vec::new();
            // Release the GIL for the Rust part, unless the last block stopped at a Python
            // callback: then the next one likely does too, and releasing would cost more than
            // the range itself.
            let stop = if stopped_at_callback {
                this.run_natives(block, &mut hits, &mut freed)
            } else {
                py.detach(|| this.run_natives(block, &mut hits, &mut freed))
            };
            this.release_payloads(py, freed);
            stopped_at_callback = stop.is_some();
            match stop {
                None => i += block.len(),
                Some((at, cur_seq, hits)) => {
                    let q = block[at];
                    let calls = this.calls(py, hits);
                    let range = batch_range(py, q, event)?;
                    Self::finish_batch_range(slf, &range, cur_seq, calls)?;
                    i += at + 1;
                }
            }
            py.check_signals()?;
        }
        Ok(hits)
    }

    /// `mmu_notifier_release` (R59-R61, D9, D12): RELEASE over `[0, 2**64 - 1)` to the
    /// interval side as one complete invalidation, then the classic releases.
    fn release(slf: &Bound<'_, Self>) -> PyResult<()> {
        let py = slf.py();
        let this = slf.get();
        {
            let mut guard = this.lock(py); // under the lock
            if guard.released() {
                return Err(super::errors::ReleasedError::new_err(
                    "the address space was already released",
                ));
            }
            guard.mark_released();
        }
        let range = Range::build(py, 0, u64::MAX, EVENT_RELEASE, true, py.None(), py.None())?
            .into_bound(py);
        let mut errors = Collected::default();
        let (started, calls) = this.begin(py, range.get().query);
        {
            let _scope = StartScope::enter(this.id());
            this.call_interval(py, &range, started.cur_seq, calls, &mut errors);
        }
        errors.keep(this.end_interval(py));
        if this.classic_on() {
            this.classic.release(py, &mut errors);
        }
        errors.into_result(py)
    }

    /// One entry (the tag) per native subscription invalidated since the last drain.
    fn drain_invalidated<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyList>> {
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
    fn intervals<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
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

impl MMCore {
    /// The Python part of one `invalidate_many` range whose start (interval side) is done:
    /// callbacks, classic start, then the end (R16-R18); a range whose start fails stops the
    /// batch with its exception (D1).
    fn finish_batch_range(
        slf: &Bound<'_, Self>,
        range: &Bound<'_, Range>,
        cur_seq: u64,
        calls: Vec<Call>,
    ) -> PyResult<()> {
        match Self::complete_start(slf, range, cur_seq, calls)? {
            StartOutcome::Done => Self::end(slf, range, false),
            // Batch ranges are blockable: refusals warn and are ignored (D2).
            StartOutcome::Refused => Err(would_block(slf.py())),
        }
    }
}

/// The `Range(start, end, event)` of one `invalidate_many` range (blockable, no vma or owner).
fn batch_range(py: Python<'_>, q: Interval, event: u8) -> PyResult<Bound<'_, Range>> {
    let range = Range::build(
        py,
        q.start(),
        q.last() + 1,
        event,
        true,
        py.None(),
        py.None(),
    )?;
    Ok(range.into_bound(py))
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

/// `with mm.invalidate(...) as range`: start on enter, end on exit (API.md).
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
