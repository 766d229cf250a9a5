//! `Range`: the kernel's `mmu_notifier_range`, immutable (SPEC 1.4, R70-R72, D13).
//!
//! GC (issue 10, item 7): a range visits its `vma` and `owner`. It needs no `__clear__`: both
//! are set when it is built, so any cycle through a range passes through an older, mutable
//! object (a device, a vma, an MM's or a subscription's references) that can be cleared.

use std::fmt::Write as _;

use pyo3::exceptions::PyAttributeError;
use pyo3::gc::{PyTraverseError, PyVisit};
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::PyTuple;

use super::convert::{event_member, EventArg, EVENT_MIGRATE, EVENT_PROTECTION_VMA, U64};
use crate::interval::Interval;

/// A half-open address range `[start, end)` being invalidated, with its event and flags.
#[pyclass(frozen, module = "mmn_fast", name = "Range")]
pub struct Range {
    /// `[start, end - 1]`: the half-open range as the one closed convention (checked `start < end`).
    pub(crate) query: Interval,
    pub(crate) event: u8,
    pub(crate) blockable: bool,
    pub(crate) vma: Py<PyAny>,
    pub(crate) owner: Py<PyAny>,
}

impl Range {
    pub(crate) fn build(
        py: Python<'_>,
        start: u64,
        end: u64,
        event: u8,
        blockable: bool,
        vma: Py<PyAny>,
        owner: Py<PyAny>,
    ) -> PyResult<Py<Self>> {
        let query = Interval::from_range(start, end)?;
        Py::new(
            py,
            Self {
                query,
                event,
                blockable,
                vma,
                owner,
            },
        )
    }

    /// The same range with `blockable = false` (what a non-blocking start shows, D13).
    pub(crate) fn non_blockable(&self, py: Python<'_>) -> PyResult<Py<Self>> {
        Py::new(
            py,
            Self {
                blockable: false,
                vma: self.vma.clone_ref(py),
                owner: self.owner.clone_ref(py),
                ..*self
            },
        )
    }
}

/// A `blockable` argument: `bool(blockable)`, None included (API.md: `range.blockable is
/// bool(blockable)`); omitted, it is true.
#[derive(Clone, Copy)]
pub struct Blockable(pub bool);

impl Blockable {
    pub const OMITTED: Self = Self(true);
}

impl<'a, 'py> FromPyObject<'a, 'py> for Blockable {
    type Error = PyErr;

    fn extract(obj: pyo3::Borrowed<'a, 'py, PyAny>) -> PyResult<Self> {
        obj.is_truthy().map(Self)
    }
}

#[pymethods]
impl Range {
    #[new]
    #[pyo3(signature = (start, end, event = EventArg::UNMAP, *, blockable = Blockable::OMITTED, vma = None, owner = None))]
    pub(crate) fn new(
        py: Python<'_>,
        start: U64,
        end: U64,
        event: EventArg,
        blockable: Blockable,
        vma: Option<Py<PyAny>>,
        owner: Option<Py<PyAny>>,
    ) -> PyResult<Self> {
        let event = event.0;
        let blockable = blockable.0;
        Ok(Self {
            query: Interval::from_range(start.0, end.0)?,
            event,
            blockable,
            vma: vma.unwrap_or_else(|| py.None()),
            owner: owner.unwrap_or_else(|| py.None()),
        })
    }

    /// `mmu_notifier_range_init_migrate`: a `MIGRATE` range carrying the migrating driver's
    /// `owner` (R71).
    #[staticmethod]
    #[pyo3(signature = (start, end, owner, *, blockable = Blockable::OMITTED, vma = None))]
    fn migrate(
        py: Python<'_>,
        start: U64,
        end: U64,
        owner: Py<PyAny>,
        blockable: Blockable,
        vma: Option<Py<PyAny>>,
    ) -> PyResult<Py<Self>> {
        Self::build(
            py,
            start.0,
            end.0,
            EVENT_MIGRATE,
            blockable.0,
            vma.unwrap_or_else(|| py.None()),
            owner,
        )
    }

    /// The first address.
    #[getter]
    pub(crate) fn start(&self) -> u64 {
        self.query.start()
    }

    /// One past the last address (`last < u64::MAX` because `start < end` was checked).
    #[getter]
    pub(crate) fn end(&self) -> u64 {
        self.query.last() + 1
    }

    /// Why the range is invalidated, always an `Event` member.
    #[getter]
    fn event<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        event_member(py, self.event)
    }

    /// Whether subscribers may sleep; a subscriber may refuse a non-blockable range.
    #[getter]
    fn blockable(&self) -> bool {
        self.blockable
    }

    /// The caller's `vma` object, or None.
    #[getter]
    fn vma(&self, py: Python<'_>) -> Py<PyAny> {
        self.vma.clone_ref(py)
    }

    /// The migrating driver's `owner`, or None.
    #[getter]
    fn owner(&self, py: Python<'_>) -> Py<PyAny> {
        self.owner.clone_ref(py)
    }

    /// `mmu_notifier_range_update_to_read_only` (R72): true only for a `PROTECTION_VMA` range
    /// whose `vma` is given and still readable (a `vma` without `readable` is not).
    fn update_to_read_only(&self, py: Python<'_>) -> PyResult<bool> {
        if self.event != EVENT_PROTECTION_VMA || self.vma.is_none(py) {
            return Ok(false);
        }
        match self.vma.bind(py).getattr(pyo3::intern!(py, "readable")) {
            Ok(readable) => readable.is_truthy(),
            Err(err) if err.is_instance_of::<PyAttributeError>(py) => Ok(false),
            Err(err) => Err(err),
        }
    }

    fn __repr__(&self, py: Python<'_>) -> PyResult<String> {
        let event = event_member(py, self.event)?;
        let mut repr = format!(
            "Range({:#x}, {:#x}, Event.{}, blockable={}",
            self.start(),
            self.end(),
            event.getattr("name")?.str()?,
            if self.blockable { "True" } else { "False" }
        );
        if !self.vma.is_none(py) {
            write!(repr, ", vma={}", self.vma.bind(py).repr()?).ok();
        }
        if !self.owner.is_none(py) {
            write!(repr, ", owner={}", self.owner.bind(py).repr()?).ok();
        }
        Ok(repr + ")")
    }

    fn __eq__(&self, py: Python<'_>, other: &Bound<'_, PyAny>) -> PyResult<Py<PyAny>> {
        let Ok(other) = other.cast::<Self>() else {
            return Ok(py.NotImplemented());
        };
        let other = other.get();
        let same = self.query == other.query
            && self.event == other.event
            && self.blockable == other.blockable
            && self.vma.bind(py).eq(&other.vma)?
            && self.owner.bind(py).eq(&other.owner)?;
        Ok(pyo3::types::PyBool::new(py, same)
            .to_owned()
            .into_any()
            .unbind())
    }

    fn __traverse__(&self, visit: PyVisit<'_>) -> Result<(), PyTraverseError> {
        visit.call(&self.vma)?;
        visit.call(&self.owner)
    }

    /// Equal ranges hash equal: the hash of the tuple of all six fields (so a range whose
    /// `vma` or `owner` is unhashable is unhashable too, like a tuple holding it).
    fn __hash__(&self, py: Python<'_>) -> PyResult<isize> {
        (
            self.start(),
            self.end(),
            self.event,
            self.blockable,
            self.vma.clone_ref(py),
            self.owner.clone_ref(py),
        )
            .into_pyobject(py)?
            .hash()
    }

    /// Pickled as a call of the native `_mmn_fast._range` with its six fields.
    fn __reduce__<'py>(
        slf: &Bound<'py, Self>,
    ) -> PyResult<(Bound<'py, PyAny>, Bound<'py, PyTuple>)> {
        let py = slf.py();
        let r = slf.get();
        let ctor = UNPICKLE
            .get(py)
            .ok_or_else(|| pyo3::exceptions::PyRuntimeError::new_err("_mmn_fast not initialised"))?
            .bind(py)
            .clone();
        let args = (
            r.start(),
            r.end(),
            r.event,
            r.blockable,
            r.vma.clone_ref(py),
            r.owner.clone_ref(py),
        );
        Ok((ctor, args.into_pyobject(py)?))
    }
}

/// `_mmn_fast._range` as the module holds it (a function pickles by its module and name, so
/// `__reduce__` must return the module's own object); set by [`add_unpickle`].
static UNPICKLE: PyOnceLock<Py<PyAny>> = PyOnceLock::new();

/// Add `_range` to the native module and remember it for `__reduce__`.
pub fn add_unpickle(m: &Bound<'_, PyModule>) -> PyResult<()> {
    let function = wrap_pyfunction!(unpickle, m)?;
    m.add_function(function.clone())?;
    let _ = UNPICKLE.set(m.py(), function.into_any().unbind());
    Ok(())
}

/// Rebuild a pickled `Range` (what `Range.__reduce__` names); not API.
#[pyfunction]
#[pyo3(name = "_range")]
pub fn unpickle(
    py: Python<'_>,
    start: U64,
    end: U64,
    event: EventArg,
    blockable: bool,
    vma: Py<PyAny>,
    owner: Py<PyAny>,
) -> PyResult<Py<Range>> {
    Range::build(py, start.0, end.0, event.0, blockable, vma, owner)
}
