//! `mm.release()`: the address space goes away (R59-R61, D9, D12).
//!
//! Locking: the "released" mark is set under the core lock, once; the RELEASE invalidation then
//! runs as any start and end (`invalidate.rs`), and classic releases after unlocking.

use pyo3::prelude::*;

use super::MMCore;
use crate::bindings::callbacks::{Collected, StartScope};
use crate::bindings::convert::EVENT_RELEASE;
use crate::bindings::errors::ReleasedError;
use crate::bindings::range::Range;

impl MMCore {
    /// `mmu_notifier_release` (R59-R61, D9, D12): RELEASE over `[0, 2**64 - 1)` to the
    /// interval side as one complete invalidation, then the classic releases.
    pub(super) fn release_all(slf: &Bound<'_, Self>) -> PyResult<()> {
        let py = slf.py();
        let this = slf.get();
        {
            let mut guard = this.lock(py); // under the lock
            if guard.released() {
                return Err(ReleasedError::new_err(
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
}
