//! `MMCore`: one address space's interval side and the invalidation entry points. The Python
//! class `mmn_fast.MM` subclasses it and adds classic mode (`mmn_fast._classic`), which this
//! file reaches only through four hooks on `self._classic` (`start`, `abort`, `end`,
//! `release`) and only while `_set_classic(True)` says that a classic notifier exists, so an MM
//! without one pays nothing for that mode (SPEC R5).
//!
//! Locking: the core mutex is held only inside the short blocks marked "under the lock"; no
//! Python code runs there (a clone of a `Py` is only a reference-count increment), payloads freed
//! by a transition are dropped after unlocking (their destructors may run Python), and every
//! wait runs with the GIL released (SPEC D10).

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use pyo3::exceptions::PyValueError;
use pyo3::gc::{PyTraverseError, PyVisit};
use pyo3::intern;
use pyo3::prelude::*;
use pyo3::types::PyList;

use super::callbacks::{warn, Collected, StartScope};
use super::convert::{decode_batch, EventArg, U64s, EVENT_RELEASE, U64};
use super::errors::would_block;
use super::range::Range;
use super::subscription::IntervalNotifier;
use crate::interval::Interval;
use crate::notifier::Notifier;
use crate::protocol::{Ended, Started, SubKey};

/// How long a wait sleeps with the GIL released before it looks for signals (Ctrl-C reaches
/// the caller within about this long).
const WAIT_SLICE: Duration = Duration::from_millis(50);

/// Ranges `invalidate_many` runs per GIL release, between two looks for signals.
const BATCH_BLOCK: usize = 1 << 14;

/// What the core keeps per subscription: the Python object, its resolved callback (`None` for a
/// native subscription) and its tag.
pub struct SubPayload {
    pub obj: Py<IntervalNotifier>,
    pub callback: Option<Py<PyAny>>,
    pub tag: Py<PyAny>,
}

/// Bytes of one subscription in the core: its tree slot with the protocol state and payload.
pub const SUB_NODE_BYTES: usize =
    crate::tree::IntervalTree::<crate::protocol::Sub<SubPayload>>::NODE_BYTES;

/// One hit of a start to handle, in tree order, once the lock is dropped.
enum Call {
    /// `callback(obj, range, cur_seq)`.
    Python(Py<IntervalNotifier>, Py<PyAny>),
    /// A native subscription that came after a callback subscription in the walk: invalidated
    /// when the in-order walk reaches it, so that a refusal stops before it (R16).
    Native(SubKey),
}

impl Call {
    /// The call to make for the subscription `key`; under the lock.
    fn of(py: Python<'_>, key: SubKey, payload: &SubPayload) -> Self {
        match &payload.callback {
            Some(callback) => Self::Python(payload.obj.clone_ref(py), callback.clone_ref(py)),
            None => Self::Native(key),
        }
    }
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
    /// A classic notifier is registered: call the `_classic` hooks.
    classic_on: AtomicBool,
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
        self.classic_on.load(Ordering::Acquire)
    }

    /// Interval-side start (R12): count it, and under the lock collect the hits to handle after
    /// unlocking (natives before the first callback subscription are handled by the core there).
    fn begin(&self, py: Python<'_>, query: Interval) -> (Started, Vec<Call>) {
        let mut calls = Vec::new();
        let started = self.notifier.lock().start(query, |key, _, sub, _| {
            calls.push(Call::of(py, key, &sub.payload));
        });
        (started, calls)
    }

    /// Interval-side end (R17). Freed payloads are dropped and waiters woken after unlocking.
    ///
    /// # Errors
    /// `RuntimeError` with no invalidation running; nothing changes (D6).
    fn end_interval(&self) -> PyResult<()> {
        let ended = self.notifier.lock().end()?;
        self.after_end(ended);
        Ok(())
    }

    fn after_end(&self, ended: Ended<SubPayload>) {
        if let Ended::Closed { freed } = ended {
            drop(freed);
            self.notifier.wake_all();
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
            let (obj, callback) = match call {
                Call::Python(obj, callback) => (obj, callback),
                Call::Native(key) => {
                    let done = self.notifier.lock().invalidate_native(key, cur_seq);
                    debug_assert!(done, "a hit of an active start is still subscribed");
                    continue;
                }
            };
            let result = callback.bind(py).call1((obj.bind(py), range, &cur_seq_obj));
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
            let outcome = classic_hook(slf, intern!(py, "start"), (range,))
                .and_then(|r| r.extract::<(Bound<'_, PyAny>, bool, Bound<'_, PyAny>)>());
            if let Some((tok, hook_refused, errs)) = errors.keep(outcome) {
                classic_refused = hook_refused;
                let listed = errors.extend_from_list(&errs);
                errors.keep(listed);
                token = Some(tok);
            }
        }
        if !refused && !classic_refused && errors.is_empty() {
            return Ok(StartOutcome::Done);
        }
        errors.keep(this.end_interval());
        if let Some(token) = token {
            collect_hook_errors(
                &mut errors,
                classic_hook(slf, intern!(py, "abort"), (token, range)),
            );
        }
        errors.into_result(py)?;
        Ok(StartOutcome::Refused)
    }

    /// The whole end of one range, both modes (R49-R52).
    fn end(slf: &Bound<'_, Self>, range: &Bound<'_, Range>, only_end: bool) -> PyResult<()> {
        let py = slf.py();
        let this = slf.get();
        this.end_interval()?;
        if !this.classic_on() {
            return Ok(());
        }
        let mut errors = Collected::default();
        collect_hook_errors(
            &mut errors,
            classic_hook(slf, intern!(py, "end"), (range, only_end)),
        );
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

    /// `invalidate_many`'s Rust part: run `queries` (start + end each) while every hit is native,
    /// several ranges per lock hold. Stops at the first range that reaches a Python callback,
    /// with that range's start done: returns its index, `cur_seq` and the keys to call.
    fn run_natives(
        &self,
        queries: &[Interval],
        hits: &mut u64,
        freed: &mut Vec<SubPayload>,
    ) -> Option<(usize, u64, Vec<SubKey>)> {
        const PER_LOCK: usize = 64;
        for (chunk_no, chunk) in queries.chunks(PER_LOCK).enumerate() {
            let mut closed = false;
            let mut guard = self.notifier.lock();
            for (i, &query) in chunk.iter().enumerate() {
                let mut keys = Vec::new();
                let started = guard.start(query, |key, _, _, _| keys.push(key));
                *hits += started.hits as u64;
                if !keys.is_empty() {
                    drop(guard);
                    if closed {
                        self.notifier.wake_all();
                    }
                    return Some((chunk_no * PER_LOCK + i, started.cur_seq, keys));
                }
                match guard.end() {
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

/// Call the classic-mode hook `self._classic.<name>(*args)`.
fn classic_hook<'py>(
    slf: &Bound<'py, MMCore>,
    name: &Bound<'py, pyo3::types::PyString>,
    args: impl pyo3::call::PyCallArgs<'py>,
) -> PyResult<Bound<'py, PyAny>> {
    slf.getattr(intern!(slf.py(), "_classic"))?
        .call_method1(name, args)
}

/// Collect the exceptions a hook returned (a list), or the one it raised.
fn collect_hook_errors(errors: &mut Collected, returned: PyResult<Bound<'_, PyAny>>) {
    if let Some(errs) = errors.keep(returned) {
        let listed = errors.extend_from_list(&errs);
        errors.keep(listed);
    }
}

#[pymethods]
impl MMCore {
    #[new]
    #[pyo3(signature = (*_args, **_kwargs))]
    fn new(_args: &Bound<'_, PyAny>, _kwargs: Option<&Bound<'_, PyAny>>) -> Self {
        Self {
            notifier: Notifier::new(),
            classic_on: AtomicBool::new(false),
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
        let callback = ops.as_ref().map(resolve_callback).transpose()?;
        let tag = tag.unwrap_or_else(|| py.None());
        let obj = Py::new(
            py,
            IntervalNotifier::new(
                slf.clone().unbind(),
                interval,
                ops.map(Bound::unbind),
                tag.clone_ref(py),
            ),
        )?;
        let payload = SubPayload {
            obj: obj.clone_ref(py),
            callback,
            tag,
        };
        let native = payload.callback.is_none();
        let this = slf.get();
        {
            let mut guard = this.notifier.lock(); // under the lock
            let (key, _) = guard.insert(interval, native, payload)?;
            // Published under the lock: no other thread can reach `obj` before it has its key.
            obj.get().set_key(key);
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
    #[pyo3(signature = (start, end, event = EventArg::UNMAP, *, blockable = None, owner = None, vma = None))]
    fn invalidate(
        slf: &Bound<'_, Self>,
        start: U64,
        end: U64,
        event: EventArg,
        blockable: Option<&Bound<'_, PyAny>>,
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
            drop(freed);
            stopped_at_callback = stop.is_some();
            match stop {
                None => i += block.len(),
                Some((at, cur_seq, keys)) => {
                    let q = block[at];
                    let calls = {
                        let guard = this.notifier.lock(); // under the lock
                        keys.iter()
                            .filter_map(|&k| Some(Call::of(py, k, &guard.sub(k)?.1.payload)))
                            .collect::<Vec<_>>()
                    };
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
            let mut guard = this.notifier.lock(); // under the lock
            if guard.released() {
                return Err(PyValueError::new_err(
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
        errors.keep(this.end_interval());
        if this.classic_on() {
            collect_hook_errors(&mut errors, classic_hook(slf, intern!(py, "release"), ()));
        }
        errors.into_result(py)
    }

    /// One entry (the tag) per native subscription invalidated since the last drain.
    fn drain_invalidated<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyList>> {
        let mut tags = Vec::new();
        let gone = self
            .notifier
            .lock()
            .drain_journal(|p| tags.push(p.tag.clone_ref(py)));
        drop(gone);
        PyList::new(py, tags)
    }

    /// The interval subscriptions in the tree, in address order (a snapshot).
    fn intervals<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        let subs: Vec<Py<IntervalNotifier>> = {
            let guard = self.notifier.lock(); // under the lock
            guard
                .tree()
                .iter()
                .map(|(_, _, sub)| sub.payload.obj.clone_ref(py))
                .collect()
        };
        Ok(PyList::new(py, subs)?.try_iter()?.into_any())
    }

    fn __len__(&self) -> usize {
        self.notifier.lock().len()
    }

    /// The mm's `invalidate_seq` (odd while an epoch runs, R7).
    #[getter]
    fn invalidate_seq(&self) -> u64 {
        self.notifier.lock().seq()
    }

    /// Starts between their start and end (R11, D5).
    #[getter]
    fn active_invalidate_ranges(&self) -> u64 {
        self.notifier.lock().active()
    }

    /// `mm_has_notifiers` (R4).
    #[getter]
    fn has_notifiers(&self) -> bool {
        self.has_notifiers.load(Ordering::Acquire)
    }

    /// Whether `release()` has begun (classic mode refuses registrations then, D12).
    #[getter]
    fn _released(&self) -> bool {
        self.notifier.lock().released()
    }

    /// Classic mode tells the core whether it has a notifier (see the module docs).
    fn _set_classic(&self, on: bool) {
        if on {
            self.has_notifiers.store(true, Ordering::Release);
        }
        self.classic_on.store(on, Ordering::Release);
    }

    /// Check the core invariants (R81, R84 and the tree's); for tests.
    fn _check_invariants(&self) -> PyResult<()> {
        self.notifier
            .lock()
            .check_invariants()
            .map_err(pyo3::exceptions::PyAssertionError::new_err)
    }

    fn __traverse__(&self, visit: PyVisit<'_>) -> Result<(), PyTraverseError> {
        // Never wait in the collector: a busy lock means the MM is in use, hence reachable.
        let Some(guard) = self.notifier.try_lock() else {
            return Ok(());
        };
        let mut result = Ok(());
        guard.for_each_payload(|p| {
            if result.is_ok() {
                result = visit
                    .call(&p.obj)
                    .and_then(|()| visit.call(&p.tag))
                    .and_then(|()| p.callback.as_ref().map_or(Ok(()), |c| visit.call(c)));
            }
        });
        result
    }

    fn __clear__(&self) {
        let payloads = self.notifier.lock().drain_payloads();
        drop(payloads);
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

/// What gets called for `ops` (API.md "Ops"): its callable `invalidate` attribute, else `ops`
/// itself if callable; anything else is `TypeError`.
fn resolve_callback(ops: &Bound<'_, PyAny>) -> PyResult<Py<PyAny>> {
    let py = ops.py();
    match ops.getattr(intern!(py, "invalidate")) {
        Ok(m) if m.is_callable() => return Ok(m.unbind()),
        Ok(_) => {}
        Err(err) if err.is_instance_of::<pyo3::exceptions::PyAttributeError>(py) => {}
        Err(err) => return Err(err),
    }
    if ops.is_callable() {
        return Ok(ops.clone().unbind());
    }
    Err(pyo3::exceptions::PyTypeError::new_err(format!(
        "ops must have a callable invalidate(sub, range, cur_seq) or be callable, not {}",
        ops.get_type().name()?
    )))
}

/// `with mm.invalidate(...) as range`: start on enter, end on exit (API.md).
#[pyclass(frozen, module = "mmn_fast._mmn_fast")]
pub struct Invalidation {
    mm: Py<MMCore>,
    range: Py<Range>,
    entered: AtomicBool,
}

#[pymethods]
impl Invalidation {
    /// Start; on failure neither the body nor the end runs.
    fn __enter__(&self, py: Python<'_>) -> PyResult<Py<Range>> {
        MMCore::invalidate_range_start(self.mm.bind(py), self.range.bind(py))?;
        self.entered.store(true, Ordering::Release);
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
        if self.entered.swap(false, Ordering::AcqRel) {
            MMCore::end(self.mm.bind(py), self.range.bind(py), false)?;
        }
        Ok(false)
    }

    /// The range subscribers receive.
    #[getter]
    fn range(&self, py: Python<'_>) -> Py<Range> {
        self.range.clone_ref(py)
    }
}
