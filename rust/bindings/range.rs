//! `Range`: the kernel's `mmu_notifier_range`, immutable (SPEC 1.4, R70-R72, D13).

use std::fmt::Write as _;

use pyo3::prelude::*;
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

/// `bool(blockable)`, with a missing argument meaning true.
fn truthy_or_true(blockable: Option<&Bound<'_, PyAny>>) -> PyResult<bool> {
    blockable.map_or(Ok(true), PyAnyMethods::is_truthy)
}

#[pymethods]
impl Range {
    #[new]
    #[pyo3(signature = (start, end, event = EventArg::UNMAP, *, blockable = None, vma = None, owner = None))]
    pub(crate) fn new(
        py: Python<'_>,
        start: U64,
        end: U64,
        event: EventArg,
        blockable: Option<&Bound<'_, PyAny>>,
        vma: Option<Py<PyAny>>,
        owner: Option<Py<PyAny>>,
    ) -> PyResult<Self> {
        let event = event.0;
        let blockable = truthy_or_true(blockable)?;
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
    #[pyo3(signature = (start, end, owner, *, blockable = None, vma = None))]
    fn migrate(
        py: Python<'_>,
        start: U64,
        end: U64,
        owner: Py<PyAny>,
        blockable: Option<&Bound<'_, PyAny>>,
        vma: Option<Py<PyAny>>,
    ) -> PyResult<Py<Self>> {
        let blockable = truthy_or_true(blockable)?;
        Self::build(
            py,
            start.0,
            end.0,
            EVENT_MIGRATE,
            blockable,
            vma.unwrap_or_else(|| py.None()),
            owner,
        )
    }

    #[getter]
    pub(crate) fn start(&self) -> u64 {
        self.query.start()
    }

    /// One past the last address (`last < u64::MAX` because `start < end` was checked).
    #[getter]
    pub(crate) fn end(&self) -> u64 {
        self.query.last() + 1
    }

    #[getter]
    fn event<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        event_member(py, self.event)
    }

    #[getter]
    fn blockable(&self) -> bool {
        self.blockable
    }

    #[getter]
    fn vma(&self, py: Python<'_>) -> Py<PyAny> {
        self.vma.clone_ref(py)
    }

    #[getter]
    fn owner(&self, py: Python<'_>) -> Py<PyAny> {
        self.owner.clone_ref(py)
    }

    /// `mmu_notifier_range_update_to_read_only` (R72): true only for a `PROTECTION_VMA` range
    /// whose `vma` is given and still readable.
    fn update_to_read_only(&self, py: Python<'_>) -> PyResult<bool> {
        if self.event != EVENT_PROTECTION_VMA || self.vma.is_none(py) {
            return Ok(false);
        }
        self.vma.bind(py).getattr("readable")?.is_truthy()
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

    fn __reduce__<'py>(
        slf: &Bound<'py, Self>,
    ) -> PyResult<(Bound<'py, PyAny>, Bound<'py, PyTuple>)> {
        let py = slf.py();
        let r = slf.get();
        let ctor = py
            .import("mmn_fast._types")?
            .getattr("_range_from_fields")?;
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
