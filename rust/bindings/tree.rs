//! `IntervalTreeCore`: the augmented interval tree with a Python value per interval. The Python
//! class `mmn_fast.IntervalTree` subclasses it and adds the buffer-taking batch calls.
//!
//! Locking: one reader-writer lock; queries read, `insert` / `remove` write. No Python code runs
//! under it: values removed from the tree are dropped after unlocking, and the batch query runs
//! with the GIL released.

use std::sync::{PoisonError, RwLock, RwLockReadGuard, RwLockWriteGuard};

use pyo3::exceptions::{PyKeyError, PyOverflowError, PyValueError};
use pyo3::gc::{PyTraverseError, PyVisit};
use pyo3::prelude::*;
use pyo3::types::{PyList, PyTuple};

use super::convert::{decode_batch, detach_if_large, u64_array, U64s, U64};
use crate::interval::Interval;
use crate::tree::{Handle, IntervalTree};

/// Closed intervals `[start, last]` over u64, each with a Python value.
#[pyclass(
    frozen,
    subclass,
    weakref,
    module = "mmn_fast._mmn_fast",
    name = "IntervalTreeCore"
)]
pub struct IntervalTreeCore {
    tree: RwLock<IntervalTree<Py<PyAny>>>,
}

impl IntervalTreeCore {
    fn read(&self) -> RwLockReadGuard<'_, IntervalTree<Py<PyAny>>> {
        self.tree.read().unwrap_or_else(PoisonError::into_inner)
    }

    fn write(&self) -> RwLockWriteGuard<'_, IntervalTree<Py<PyAny>>> {
        self.tree.write().unwrap_or_else(PoisonError::into_inner)
    }

    /// The `(start, last, value)` tuples of `q`'s overlaps, ascending start.
    fn overlap_list<'py>(&self, py: Python<'py>, q: Interval) -> PyResult<Bound<'py, PyList>> {
        let tree = self.read();
        let list = PyList::empty(py);
        for (_, iv, value) in tree.overlaps(q) {
            list.append(entry(py, iv, value)?)?;
        }
        Ok(list)
    }
}

fn entry<'py>(py: Python<'py>, iv: Interval, value: &Py<PyAny>) -> PyResult<Bound<'py, PyTuple>> {
    PyTuple::new(
        py,
        [
            iv.start().into_pyobject(py)?.into_any(),
            iv.last().into_pyobject(py)?.into_any(),
            value.bind(py).clone(),
        ],
    )
}

#[pymethods]
impl IntervalTreeCore {
    #[new]
    #[pyo3(signature = (*_args, **_kwargs))]
    fn new(_args: &Bound<'_, PyAny>, _kwargs: Option<&Bound<'_, PyAny>>) -> Self {
        Self {
            tree: RwLock::new(IntervalTree::new()),
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
        let value = value.unwrap_or_else(|| py.None());
        Ok(self.write().insert(iv, value).to_bits())
    }

    /// Remove the interval `handle` names; `KeyError` if it is not in the tree (an int outside
    /// u64 included), `TypeError` for a non-integer. O(log n).
    fn remove(&self, handle: &Bound<'_, PyAny>) -> PyResult<()> {
        let unknown = || PyKeyError::new_err(handle.clone().unbind());
        let bits: u64 = match handle.extract() {
            Ok(bits) => bits,
            Err(err) if err.is_instance_of::<PyOverflowError>(handle.py()) => return Err(unknown()),
            Err(err) => return Err(err),
        };
        let removed = self.write().remove(Handle::from_bits(bits));
        match removed {
            Some((_, value)) => {
                drop(value); // after unlocking: its destructor may run Python
                Ok(())
            }
            None => Err(unknown()),
        }
    }

    fn __len__(&self) -> usize {
        self.read().len()
    }

    fn __iter__<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        let list = PyList::empty(py);
        for (_, iv, value) in self.read().iter() {
            list.append(entry(py, iv, value)?)?;
        }
        Ok(list.try_iter()?.into_any())
    }

    /// The `(start, last, value)` of every interval overlapping `[start, last]`, ascending start.
    fn overlap<'py>(&self, py: Python<'py>, start: U64, last: U64) -> PyResult<Bound<'py, PyList>> {
        self.overlap_list(py, Interval::new(start.0, last.0)?)
    }

    /// How many intervals overlap `[start, last]`.
    fn count_overlap(&self, start: U64, last: U64) -> PyResult<usize> {
        Ok(self.read().count_overlap(Interval::new(start.0, last.0)?))
    }

    /// The intervals containing `point`.
    fn stab<'py>(&self, py: Python<'py>, point: U64) -> PyResult<Bound<'py, PyList>> {
        self.overlap_list(py, Interval::new(point.0, point.0)?)
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
        let (starts, lasts) = (
            U64s::extract(starts, "starts")?,
            U64s::extract(lasts, "lasts")?,
        );
        let intervals = decode_batch(py, &starts, &lasts, Interval::new, "interval")?;
        drop((starts, lasts));
        let items: Vec<_> = match values {
            None => intervals.into_iter().map(|iv| (iv, py.None())).collect(),
            Some(v) => {
                let values: Vec<Py<PyAny>> = v
                    .try_iter()?
                    .map(|x| x.map(Bound::unbind))
                    .collect::<PyResult<_>>()?;
                if values.len() != intervals.len() {
                    return Err(PyValueError::new_err(
                        "values and the arrays have different lengths",
                    ));
                }
                intervals.into_iter().zip(values).collect()
            }
        };
        let built = py.detach(|| IntervalTree::bulk_build(items));
        let old = std::mem::replace(&mut *self.write(), built);
        drop(old);
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
        let queries = decode_batch(py, &starts, &lasts, Interval::new, "query")?;
        let (idx, handles) = detach_if_large(py, queries.len(), || {
            let tree = self.read();
            let mut idx = Vec::new();
            let mut handles = Vec::new();
            for (i, &q) in queries.iter().enumerate() {
                for (h, _, _) in tree.overlaps(q) {
                    idx.push(i as u64);
                    handles.push(h.to_bits());
                }
            }
            (idx, handles)
        });
        Ok((u64_array(py, &idx)?, u64_array(py, &handles)?))
    }

    fn __traverse__(&self, visit: PyVisit<'_>) -> Result<(), PyTraverseError> {
        if let Ok(tree) = self.tree.try_read() {
            for (_, _, value) in tree.iter() {
                visit.call(value)?;
            }
        }
        Ok(())
    }

    fn __clear__(&self) {
        let values = self.write().drain_values();
        drop(values);
    }
}
