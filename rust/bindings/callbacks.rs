//! Running Python callbacks: collecting their exceptions (API.md "Errors", SPEC D11) and
//! knowing which address spaces this thread is inside a start of (SPEC D6).

use std::cell::RefCell;
use std::ffi::CString;

use pyo3::exceptions::PyRuntimeWarning;
use pyo3::intern;
use pyo3::prelude::*;

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

    /// `Err(first)` with every later exception appended to its `__context__` chain (API.md
    /// "Errors", SPEC D11), or `Ok(())` when nothing was raised.
    pub fn into_result(self, py: Python<'_>) -> PyResult<()> {
        let mut errors = self.0.into_iter();
        let Some(first) = errors.next() else {
            return Ok(());
        };
        for later in errors {
            // A chain that cannot be read or written stays as it is: `first` is raised anyway.
            append_context(py, &first, later).ok();
        }
        Err(first)
    }
}

/// Link `later` at the end of `head`'s `__context__` chain, never overwriting a link that is
/// there; a chain that loops (made by the callbacks themselves) or already reaches `later` is
/// left as it is, so no cycle is made. Costs one step per link of the chain.
fn append_context(py: Python<'_>, head: &PyErr, later: PyErr) -> PyResult<()> {
    let context = intern!(py, "__context__");
    let later = later.into_value(py).into_bound(py).into_any();
    let mut node = head.value(py).clone().into_any();
    let mut seen = vec![node.as_ptr()];
    loop {
        let next = node.getattr(context)?;
        if next.is_none() {
            break;
        }
        if seen.contains(&next.as_ptr()) {
            return Ok(());
        }
        seen.push(next.as_ptr());
        node = next;
    }
    if !seen.contains(&later.as_ptr()) {
        node.setattr(context, later)?;
    }
    Ok(())
}

/// `combine(errors)`: chain `errors[1:]` behind `errors[0]` as [`Collected::into_result`] does and
/// return `errors[0]`, the one to raise; classic mode (Python) collects its exceptions with it.
#[pyfunction]
pub fn combine<'py>(
    py: Python<'py>,
    errors: Vec<Bound<'py, pyo3::exceptions::PyBaseException>>,
) -> PyResult<Bound<'py, pyo3::exceptions::PyBaseException>> {
    let mut errors = errors.into_iter();
    let first = errors
        .next()
        .ok_or_else(|| pyo3::exceptions::PyValueError::new_err("combine() of no exception"))?;
    let head = PyErr::from_value(first.clone().into_any());
    for later in errors {
        append_context(py, &head, PyErr::from_value(later.into_any()))?;
    }
    Ok(first)
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
