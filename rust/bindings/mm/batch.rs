//! `invalidate_many`: a batch of ranges, each a complete start + end (R12-R18).
//!
//! Locking: the ranges whose hits are all native run under one core lock hold per chunk, with
//! the GIL released ([`MMCore::run_natives`], the only place that locks the core mutex without
//! [`MMCore::lock`]: it is detached, so it may wait); a range that reaches a Python callback
//! or classic mode is finished attached, after unlocking.

use pyo3::prelude::*;

use super::{Call, Hit, MMCore, StartOutcome, SubPayload};
use crate::bindings::convert::{decode_batch, EventArg, U64s};
use crate::bindings::errors::would_block;
use crate::bindings::range::Range;
use crate::interval::Interval;
use crate::protocol::Ended;
use crate::tree::Found;

/// Ranges `invalidate_many` runs per GIL release, between two looks for signals.
const BATCH_BLOCK: usize = 1 << 14;

impl MMCore {
    /// `invalidate_many`: start + end of each range in order, native subscriptions with the GIL
    /// released; returns the interval callbacks made.
    pub(super) fn invalidate_batch(
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
        let queries: Vec<_> = decode_batch(py, &starts, &ends, Interval::from_range, "range")?;
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

    /// `invalidate_many`'s Rust part (runs with the GIL released): run `queries` (start + end
    /// each) while every hit is native, several ranges per lock hold. Stops at the first range
    /// that reaches a Python callback, with that range's start done: returns its index,
    /// `cur_seq` and the hits to handle. Freed payloads go to `freed`, for the caller to release
    /// once attached.
    ///
    /// Each lock hold first finds the hits of all its ranges in one interleaved walk
    /// ([`Protocol::find`]), then runs the ranges in order on those hits: in one step a range
    /// whose hits are all native while no other invalidation is active (the common case,
    /// [`Protocol::run_found_natives`]), else start then end. The tree cannot change
    /// during the hold: no other thread runs under the lock, and an end changes the tree only by
    /// closing the epoch with subscriptions on the deferred list; that list is non-empty only
    /// while `seq` is odd (R81), that is while an invalidation of another thread is active,
    /// which keeps every end of this hold from closing the epoch.
    ///
    /// [`Protocol::find`]: crate::protocol::Protocol::find
    /// [`Protocol::run_found_natives`]: crate::protocol::Protocol::run_found_natives
    pub(super) fn run_natives(
        &self,
        queries: &[Interval],
        hits: &mut u64,
        freed: &mut Vec<SubPayload>,
    ) -> Option<(usize, u64, Vec<Hit>)> {
        const PER_LOCK: usize = 256;
        let mut found = Found::new();
        let mut done = 0;
        // Ranges per lock hold: from one up to `PER_LOCK`, doubling after each hold that
        // reached no Python callback, so that a batch whose ranges stop at callbacks finds at
        // most twice the ranges it runs.
        let mut window = 1;
        while done < queries.len() {
            let chunk = &queries[done..queries.len().min(done + window)];
            let mut closed = false;
            let mut guard = self.notifier.lock();
            guard.find(chunk, &mut found);
            for (i, &query) in chunk.iter().enumerate() {
                if found.count(i) == 0 {
                    // A start that hits nothing and its end leave the state as it was:
                    // `active` goes up and back down, `seq` stays (only a hit begins writing,
                    // R12), and the end cannot close an epoch (an odd `seq` means another
                    // invalidation is active, R81, and keeps the epoch open, R17). So they are
                    // skipped.
                    debug_assert!(guard.seq() & 1 == 0 || guard.active() > 0);
                    continue;
                }
                if let Some(started) = guard.run_found_natives(&found, i) {
                    // Natives only, nothing else active: the range opened and closed its own
                    // epoch.
                    *hits += started.hits as u64;
                    closed |= started.hits > 0;
                    continue;
                }
                let mut keys = Vec::new();
                let started = guard.start_found(&found, i, |key, _, sub, _| {
                    keys.push(Hit::of(key, sub));
                });
                debug_assert_eq!(started.hits, guard.tree().count_overlap(query));
                *hits += started.hits as u64;
                if !keys.is_empty() {
                    drop(guard);
                    if closed {
                        self.notifier.wake_all();
                    }
                    return Some((done + i, started.cur_seq, keys));
                }
                debug_assert!(!guard.has_deferred() || guard.active() > 1, "see the docs");
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
            done += chunk.len();
            window = (window * 2).min(PER_LOCK);
        }
        None
    }

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
