//! `IntervalTreeCore`: the augmented interval tree with a Python value per interval. The Python
//! class `mmn_fast.IntervalTree` subclasses it and adds the buffer-taking batch calls.
//!
//! Locking (issue 10, items 1, 2 and 6):
//! - The tree (the intervals, with no value) is behind a reader-writer lock; queries read,
//!   `insert` / `remove` / `_load`'s swap write; the batch query reads with the GIL released,
//!   so every other wait for this lock releases the GIL too ([`super::locking`]).
//! - The values live in a [`PyRefs`], outside that lock, so that the collector sees them
//!   whatever the tree lock is doing. An interval's value sits at the index of its handle's
//!   slot; a writer changes the values while it holds the tree lock (the lock order: tree, then
//!   values), so a reader that walked the tree under the read lock finds every value.
//! - No Python object is built, and no Python reference dropped, while either lock is held:
//!   a query copies `(start, last, value)` (the value as a new reference) under the locks,
//!   releases them, then builds its tuples; removed values are dropped after unlocking. Every
//!   section that changes both the tree and the values runs with the GIL attached from start to
//!   end, so no other attached thread sees one changed without the other.

use std::cell::Cell;
use std::sync::{PoisonError, RwLock, RwLockReadGuard, RwLockWriteGuard};

use pyo3::exceptions::{PyAssertionError, PyKeyError, PyOverflowError, PyValueError};
use pyo3::gc::{PyTraverseError, PyVisit};
use pyo3::prelude::*;
use pyo3::types::{PyList, PyTuple};

use super::convert::{decode_batch, u64_array, Columns, U64s, DETACH_MIN, U64};
use super::locking::{acquire, let_others_run, taken};
use super::pyrefs::PyRefs;
use crate::interval::Interval;
use crate::tree::{prefetch_ptr, Found, Handle, IntervalTree};

/// Bytes per interval with full nodes: its tree node (with no value) and its value's slot.
pub const NODE_BYTES: usize =
    IntervalTree::<()>::NODE_BYTES + std::mem::size_of::<Option<Py<PyAny>>>();

/// Closed intervals `[start, last]` over u64, each with a Python value.
#[pyclass(
    frozen,
    subclass,
    weakref,
    module = "mmn_fast._mmn_fast",
    name = "IntervalTreeCore"
)]
pub struct IntervalTreeCore {
    /// The intervals; an interval's Python value is in `values` at its handle's slot (one
    /// index space, no second free list; issue 11's memory budget). A slot with no value is an
    /// interval whose value is `None`: trees of `None` values (`from_arrays` without values,
    /// inserts without one) hold no reference to build, drop or traverse.
    tree: RwLock<IntervalTree<()>>,
    values: PyRefs<Py<PyAny>>,
}

/// `overlap_many`'s queries per interleaved walk (`find_overlaps`): their hits stay in cache
/// until read.
const FIND_CHUNK: usize = 256;

/// One interval a query found: its slot (its value's index) and interval, then, copied under
/// the locks, its handle (when the caller asked for it) and a new reference to its value.
type Entry = (u32, Interval, Option<Handle>, Option<Py<PyAny>>);

impl IntervalTreeCore {
    /// Read-lock the tree; waits, if it must, with the GIL released.
    fn read(&self, py: Python<'_>) -> RwLockReadGuard<'_, IntervalTree<()>> {
        acquire(
            py,
            || taken(self.tree.try_read()),
            || drop(self.tree.read().unwrap_or_else(PoisonError::into_inner)),
        )
    }

    /// Write-lock the tree; waits, if it must, with the GIL released.
    fn write(&self, py: Python<'_>) -> RwLockWriteGuard<'_, IntervalTree<()>> {
        acquire(
            py,
            || taken(self.tree.try_write()),
            || drop(self.tree.write().unwrap_or_else(PoisonError::into_inner)),
        )
    }

    /// Copy the entries overlapping `q` (interval, and handle when `handles`) with new
    /// references to their values; the locks are released when this returns (see the module
    /// docs). The first [`ATTACHED_WALK`] entries are walked attached (a query's usual answer:
    /// releasing the GIL would cost more than the walk), the rest with the GIL released; the
    /// read lock is kept until the values are copied, so that no writer changes the tree in
    /// between.
    fn copy_entries(&self, py: Python<'_>, q: Interval, handles: bool) -> Vec<Entry> {
        let tree = self.read(py);
        // A hit's slot is all its value needs: the walk never reads the handle table.
        let mut walk = tree.overlaps(q);
        let mut found = SPARE_ENTRIES.take();
        let hit = |slot, iv| (slot, iv, None, None);
        walk.fill(&mut found, ATTACHED_WALK, hit);
        if found.len() == ATTACHED_WALK {
            py.detach(|| walk.fill(&mut found, usize::MAX, hit));
        }
        if found.is_empty() {
            SPARE_ENTRIES.set(found);
            return Vec::new(); // most queries: no second lock, nothing to build
        }
        let values = self.values.lock(py);
        for (slot, _, handle, value) in &mut found {
            *value = values.get(*slot).map(|v| v.clone_ref(py));
            if handles {
                *handle = tree.slot_handle(*slot);
            }
        }
        drop((values, tree));
        found
    }

    /// The tuples of `q`'s overlaps, ascending start: `(start, last, value)`, or with
    /// `handles` `(handle, start, last, value)` (issue 13: a query's finds can be removed).
    fn overlap_list<'py>(
        &self,
        py: Python<'py>,
        q: Interval,
        handles: bool,
    ) -> PyResult<Bound<'py, PyList>> {
        entries_list(py, self.copy_entries(py, q, handles))
    }

    /// Every interval's tuple, ascending start (see [`Self::overlap_list`] for `handles`).
    fn all_list<'py>(&self, py: Python<'py>, handles: bool) -> PyResult<Bound<'py, PyList>> {
        entries_list(
            py,
            self.copy_entries(py, Interval::new(0, u64::MAX)?, handles),
        )
    }

    /// Replace the content by `built`, the value of its interval in slot `i` being `values[i]`
    /// (`None` past the end); the old values are dropped after unlocking.
    fn install(&self, py: Python<'_>, built: IntervalTree<()>, values: Vec<Py<PyAny>>) {
        let mut tree = self.write(py);
        let old_tree = std::mem::replace(&mut *tree, built);
        let old_values = self.values.lock(py).replace_all(values);
        drop(tree);
        drop((old_tree, old_values));
    }
}

/// Entries built between two GIL releases (a few milliseconds of work).
const BUILD_SLICE: usize = 1 << 14;

/// Entries a Python-object query walks with the GIL attached before it releases it for the
/// rest (a few tens of microseconds of walking).
const ATTACHED_WALK: usize = 1 << 12;

/// Entries kept for reuse when a query is done with them: at most this many (a query's usual
/// answer is a handful).
const SPARE_CAPACITY: usize = 64;

thread_local! {
    /// An empty `Vec` of entries with room, kept per thread so that a query's usual answer
    /// allocates nothing in Rust (its allocation, growth and free were about a sixth of what a
    /// one-hit query runs beyond its walk). A query takes it out while in use: a finalizer that
    /// queries on this thread while the tuples are built finds it empty and allocates its own.
    static SPARE_ENTRIES: Cell<Vec<Entry>> = const { Cell::new(Vec::new()) };
}

/// Build the list of `(start, last, value)` tuples, `(handle, start, last, value)` with
/// `handles`; no lock is held. A long answer lets other threads run every [`BUILD_SLICE`]
/// entries, so that it stalls none of them for long.
fn entries_list(py: Python<'_>, mut entries: Vec<Entry>) -> PyResult<Bound<'_, PyList>> {
    let rows = PyList::empty(py);
    if entries.is_empty() {
        return Ok(rows); // `copy_entries` put the spare back
    }
    for (i, (_, iv, handle, value)) in entries.drain(..).enumerate() {
        if i % BUILD_SLICE == BUILD_SLICE - 1 {
            let_others_run(py);
        }
        let start = iv.start().into_pyobject(py)?.into_any();
        let last = iv.last().into_pyobject(py)?.into_any();
        let value = value.unwrap_or_else(|| py.None()).into_bound(py);
        let tuple = match handle {
            Some(handle) => {
                let handle = handle.to_bits().into_pyobject(py)?.into_any();
                PyTuple::new(py, [handle, start, last, value])?
            }
            None => PyTuple::new(py, [start, last, value])?,
        };
        rows.append(tuple)?;
    }
    if entries.capacity() <= SPARE_CAPACITY {
        SPARE_ENTRIES.set(entries);
    }
    Ok(rows)
}

#[pymethods]
impl IntervalTreeCore {
    #[new]
    #[pyo3(signature = (*_args, **_kwargs))]
    fn new(_args: &Bound<'_, PyAny>, _kwargs: Option<&Bound<'_, PyAny>>) -> Self {
        Self {
            tree: RwLock::new(IntervalTree::new()),
            values: PyRefs::new(),
        }
    }

    /// Add `[start, last]` with `value`; returns its handle. O(log n).
    #[pyo3(signature = (start, last, value = None))]
    fn insert(
        &self,
        py: Python<'_>,
        start: U64,
        last: U64,
        value: Option<Py<PyAny>>,
    ) -> PyResult<u64> {
        let iv = Interval::new(start.0, last.0)?;
        // Attached from here to the end, and the value stored under the tree lock: no thread
        // sees the interval without its value.
        let mut tree = self.write(py);
        let handle = tree.insert(iv, ());
        let mut values = self.values.lock(py);
        let stale = match value {
            Some(value) => values.put(handle.slot(), value),
            None => values.take(handle.slot()), // None: no value in the slot
        };
        drop(values);
        drop(tree);
        drop(stale); // after unlocking: its destructor may run Python
        Ok(handle.to_bits())
    }

    /// Remove the interval `handle` names; `KeyError` if it is not in the tree (an int outside
    /// u64 included), `TypeError` for a non-integer. O(log n).
    fn remove(&self, handle: &Bound<'_, PyAny>) -> PyResult<()> {
        let unknown = || PyKeyError::new_err(handle.clone().unbind());
        let bits = match handle.extract::<U64>() {
            Ok(U64(bits)) => bits,
            Err(err) if err.is_instance_of::<PyOverflowError>(handle.py()) => return Err(unknown()),
            Err(err) => return Err(err),
        };
        let (py, handle) = (handle.py(), Handle::from_bits(bits));
        let mut tree = self.write(py);
        let mut values = self.values.lock(py);
        // Three cache misses at 10^5 intervals and more, overlapped rather than one after
        // the other: the value's slot loads with the handle's, and the value object (whose
        // reference is dropped below) with the leaf the tree's removal reads.
        values.prefetch(handle.slot());
        if !tree.contains(handle) {
            return Err(unknown());
        }
        let value = values.take(handle.slot());
        if let Some(value) = &value {
            prefetch_ptr(value.as_ptr());
        }
        let removed = tree.remove(handle);
        debug_assert!(removed.is_some());
        drop((values, tree));
        drop(value); // after unlocking: its destructor may run Python
        Ok(())
    }

    fn __len__(&self, py: Python<'_>) -> usize {
        self.read(py).len()
    }

    fn __iter__<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        Ok(self.all_list(py, false)?.try_iter()?.into_any())
    }

    /// `(handle, start, last, value)` of every interval, ascending start.
    fn items<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyList>> {
        self.all_list(py, true)
    }

    /// The `(start, last, value)` of every interval overlapping `[start, last]`, ascending
    /// start; `(handle, start, last, value)` with `handles=True`.
    #[pyo3(signature = (start, last, *, handles = false))]
    fn overlap<'py>(
        &self,
        py: Python<'py>,
        start: U64,
        last: U64,
        handles: bool,
    ) -> PyResult<Bound<'py, PyList>> {
        self.overlap_list(py, Interval::new(start.0, last.0)?, handles)
    }

    /// How many intervals overlap `[start, last]`.
    fn count_overlap(&self, py: Python<'_>, start: U64, last: U64) -> PyResult<usize> {
        let q = Interval::new(start.0, last.0)?;
        Ok(self.read(py).count_overlap(q))
    }

    /// The intervals containing `point` (tuples as in `overlap`).
    #[pyo3(signature = (point, *, handles = false))]
    fn stab<'py>(
        &self,
        py: Python<'py>,
        point: U64,
        handles: bool,
    ) -> PyResult<Bound<'py, PyList>> {
        self.overlap_list(py, Interval::new(point.0, point.0)?, handles)
    }

    /// `from_arrays`' native part: `starts` and `lasts` are buffers of u64 or sequences of
    /// ints, `values` an iterable or `None`. Everything is checked before the tree changes (D3).
    fn _load(
        &self,
        py: Python<'_>,
        starts: &Bound<'_, PyAny>,
        lasts: &Bound<'_, PyAny>,
        values: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<()> {
        let (starts_in, lasts_in) = (
            U64s::extract(starts, "starts")?,
            U64s::extract(lasts, "lasts")?,
        );
        let Columns { starts, lasts } =
            decode_batch(py, &starts_in, &lasts_in, Interval::new, "interval")?;
        drop((starts_in, lasts_in)); // the buffers may change once `values` runs Python
        let values: Vec<Py<PyAny>> = match values {
            Some(v) => {
                let values: Vec<_> = v
                    .try_iter()?
                    .map(|x| x.map(Bound::unbind))
                    .collect::<PyResult<_>>()?;
                if values.len() != starts.len() {
                    return Err(PyValueError::new_err(
                        "values and the arrays have different lengths",
                    ));
                }
                values
            }
            None => Vec::new(), // every value None: no slot holds one
        };
        let units = std::iter::repeat_n((), starts.len());
        let built = py.detach(|| IntervalTree::from_columns(starts, lasts, units))?;
        self.install(py, built, values);
        Ok(())
    }

    /// Every match of many queries (buffers of u64 or sequences of ints): `(query indices,
    /// handles)` as two `array('Q')`, computed with the GIL released for large batches.
    fn _overlap_many<'py>(
        &self,
        py: Python<'py>,
        starts: &Bound<'py, PyAny>,
        lasts: &Bound<'py, PyAny>,
    ) -> PyResult<(Bound<'py, PyAny>, Bound<'py, PyAny>)> {
        let (starts, lasts) = (
            U64s::extract(starts, "starts")?,
            U64s::extract(lasts, "lasts")?,
        );
        let queries: Vec<_> = decode_batch(py, &starts, &lasts, Interval::new, "query")?;
        let walk = |tree: &IntervalTree<()>| {
            let mut idx = Vec::new();
            let mut handles = Vec::new();
            let mut found = Found::new();
            for (first, chunk) in (0u64..).step_by(FIND_CHUNK).zip(queries.chunks(FIND_CHUNK)) {
                tree.find_overlaps(chunk, &mut found);
                for (i, q) in (first..).zip(0..chunk.len()) {
                    for (h, _, ()) in tree.found(&found, q) {
                        idx.push(i);
                        handles.push(h.to_bits());
                    }
                }
            }
            (idx, handles)
        };
        // A large batch walks with the GIL released (waiting there for the lock is allowed);
        // a short one takes the lock attached, through `read`, like every other query.
        let (idx, handles) = if queries.len() >= DETACH_MIN {
            py.detach(|| walk(&self.tree.read().unwrap_or_else(PoisonError::into_inner)))
        } else {
            walk(&self.read(py))
        };
        Ok((u64_array(py, &idx)?, u64_array(py, &handles)?))
    }

    /// Check the tree's invariants, and that every value is an interval's (in the slot of its
    /// handle; an interval without one has the value `None`); for tests.
    fn _check_invariants(&self, py: Python<'_>) -> PyResult<()> {
        let tree = self.read(py);
        let checked = tree.check_invariants();
        let mut slots: Vec<u32> = tree.iter().map(|(h, _, ())| h.slot()).collect();
        slots.sort_unstable();
        let valued: Vec<u32> = self.values.lock(py).occupied().collect();
        drop(tree);
        checked.map_err(PyAssertionError::new_err)?;
        if valued.iter().all(|slot| slots.binary_search(slot).is_ok()) {
            Ok(())
        } else {
            Err(PyAssertionError::new_err(format!(
                "intervals in slots {slots:?} but values in {valued:?}"
            )))
        }
    }

    fn __traverse__(&self, visit: PyVisit<'_>) -> Result<(), PyTraverseError> {
        self.values
            .traverse(&visit, |visit, value| visit.call(value))
    }

    fn __clear__(&self) {
        // Unreachable, so no other thread uses it; the emptied tree keeps `len()` consistent.
        if let Ok(mut tree) = self.tree.try_write() {
            *tree = IntervalTree::new();
        }
        drop(self.values.take_all());
    }
}
