//! One range's start and end, both modes (R12-R18, R44-R52, D1), and the waits for an epoch.
//!
//! Locking: the core lock is taken (with [`MMCore::lock`]) only around the protocol steps;
//! callbacks, classic hooks and the building of Python objects run after unlocking.

use std::sync::atomic::Ordering;
use std::sync::PoisonError;
use std::time::{Duration, Instant};

use pyo3::intern;
use pyo3::prelude::*;

use super::{Call, Hit, MMCore, StartOutcome, SubPayload};
use crate::bindings::callbacks::{warn, Collected, StartScope};
use crate::bindings::range::Range;
use crate::error::Error;
use crate::interval::Interval;
use crate::protocol::{Ended, Protocol, Started};

/// How long a wait sleeps with the GIL released before it looks for signals (Ctrl-C reaches
/// the caller within about this long).
const WAIT_SLICE: Duration = Duration::from_millis(50);

impl MMCore {
    /// Interval-side start (R12): count it, and under the lock collect the hits to handle after
    /// unlocking (natives before the first callback subscription are handled by the core there).
    pub(super) fn begin(&self, py: Python<'_>, query: Interval) -> (Started, Vec<Call>) {
        let mut hits = Vec::new();
        let started = self
            .lock(py)
            .start(query, |key, _, sub, _| hits.push(Hit::of(key, sub)));
        (started, self.calls(py, hits))
    }

    /// `end()` under the lock; an end that may close the epoch first records the last seq of
    /// the subscriptions it will free (so that they stay readable once removed).
    pub(super) fn end_locked(
        &self,
        guard: &mut Protocol<SubPayload>,
    ) -> Result<Ended<SubPayload>, Error> {
        // A recorded removal is on the deferred list until the closing end (R39b): with that
        // list empty there is nothing to record, and the common end takes no second lock.
        if guard.active() == 1 && guard.has_deferred() {
            let mut removals = self.removals.lock().unwrap_or_else(PoisonError::into_inner);
            for (key, last_seq) in removals.drain(..) {
                if let Some((_, sub)) = guard.sub(key) {
                    last_seq.store(sub.seq(), Ordering::Release);
                }
            }
        }
        guard.end()
    }

    /// Interval-side end (R17). Freed payloads are dropped and waiters woken after unlocking.
    ///
    /// # Errors
    /// `RuntimeError` with no invalidation running; nothing changes (D6).
    pub(super) fn end_interval(&self, py: Python<'_>) -> PyResult<()> {
        let ended = self.end_locked(&mut self.lock(py))?;
        self.after_end(py, ended);
        Ok(())
    }

    pub(super) fn after_end(&self, py: Python<'_>, ended: Ended<SubPayload>) {
        if let Ended::Closed { freed } = ended {
            self.notifier.wake_all();
            self.release_payloads(py, freed);
        }
    }

    /// Call the interval callbacks of one start, in tree order (R13). Returns true when one
    /// refused a non-blockable range: the walk stops there (R16). A false result on a blockable
    /// range warns and is ignored (R15, D2); an exception is collected and the walk goes on (D1).
    pub(super) fn call_interval(
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
    pub(super) fn start(slf: &Bound<'_, Self>, range: &Bound<'_, Range>) -> PyResult<StartOutcome> {
        let (started, calls) = slf.get().begin(slf.py(), range.get().query);
        Self::complete_start(slf, range, started.cur_seq, calls)
    }

    /// The part of a start after the interval side counted it: see [`MMCore::start`].
    pub(super) fn complete_start(
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
    pub(super) fn end(
        slf: &Bound<'_, Self>,
        range: &Bound<'_, Range>,
        only_end: bool,
    ) -> PyResult<()> {
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
}
