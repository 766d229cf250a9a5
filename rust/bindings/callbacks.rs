//! Running Python callbacks: collecting their exceptions (API.md "Errors", SPEC D11) and
//! knowing which address spaces this thread is inside a start of (SPEC D6).

use std::cell::RefCell;
use std::ffi::CString;

use pyo3::exceptions::PyRuntimeWarning;
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::PyList;

/// Exceptions raised by callbacks of one operation, in the order they happened.
#[derive(Default)]
pub struct Collected(Vec<PyErr>);

impl Collected {
    pub fn push(&mut self, err: PyErr) {
        self.0.push(err);
    }

    /// Append exceptions a Python hook returned (a list of exception objects).
    pub fn extend_from_list(&mut self, errors: &Bound<'_, PyAny>) -> PyResult<()> {
        for err in errors.try_iter()? {
            self.0.push(PyErr::from_value(err?));
        }
        Ok(())
    }

    /// Keep the outcome of a call: its error, if any, is collected.
    pub fn keep<T>(&mut self, result: PyResult<T>) -> Option<T> {
        result.map_err(|err| self.push(err)).ok()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// `Err(first)` with every later exception appended to its `__context__` chain
    /// (`mmn_fast._errors.combine`), or `Ok(())` when nothing was raised.
    pub fn into_result(self, py: Python<'_>) -> PyResult<()> {
        let mut errors = self.0;
        match errors.len() {
            0 => Ok(()),
            1 => Err(errors.remove(0)),
            _ => {
                static COMBINE: PyOnceLock<Py<PyAny>> = PyOnceLock::new();
                let combine = COMBINE.import(py, "mmn_fast._errors", "combine")?;
                let values = errors.into_iter().map(|e| e.into_value(py));
                let first = combine.call1((PyList::new(py, values)?,))?;
                Err(PyErr::from_value(first))
            }
        }
    }
}

/// Emit a `RuntimeWarning`; if the filters turn it into an error, the error is collected
/// like a callback exception (API.md "Warnings").
pub fn warn(py: Python<'_>, errors: &mut Collected, message: &str) {
    let message = CString::new(message.replace('\0', "?")).unwrap_or_default();
    let category = py.get_type::<PyRuntimeWarning>();
    errors.keep(PyErr::warn(py, &category, &message, 1));
}

thread_local! {
    /// Address spaces (by the address of their core) this thread is inside a start of.
    static IN_START: RefCell<Vec<usize>> = const { RefCell::new(Vec::new()) };
}

/// While alive, this thread counts as running a start on the address space `id` (so a wait for
/// that address space's epoch from a callback would wait for itself, SPEC D6).
pub struct StartScope(usize);

impl StartScope {
    pub fn enter(id: usize) -> Self {
        IN_START.with(|s| s.borrow_mut().push(id));
        Self(id)
    }

    /// Whether this thread is inside a start on `id`.
    pub fn inside(id: usize) -> bool {
        IN_START.with(|s| s.borrow().contains(&id))
    }
}

impl Drop for StartScope {
    fn drop(&mut self) {
        IN_START.with(|s| {
            let mut s = s.borrow_mut();
            if let Some(i) = s.iter().rposition(|&id| id == self.0) {
                s.remove(i);
            }
        });
    }
}
