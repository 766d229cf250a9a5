//! The one conversion from a core [`Error`] to a Python exception, and the Python-defined
//! exception types (`WouldBlock`) the binding raises.

use pyo3::exceptions::{PyOverflowError, PyRuntimeError, PyValueError};
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::PyType;

use crate::error::Error;

impl From<Error> for PyErr {
    fn from(err: Error) -> Self {
        let msg = err.to_string();
        match err {
            Error::Overflow { .. } => PyOverflowError::new_err(msg),
            Error::EmptyRange { .. }
            | Error::StartAfterLast { .. }
            | Error::NotSubscribed
            | Error::Released => PyValueError::new_err(msg),
            Error::NoActiveInvalidation | Error::WouldDeadlock => PyRuntimeError::new_err(msg),
        }
    }
}

/// `mmn_fast.WouldBlock` (defined in Python, a `BlockingIOError` with `errno == EAGAIN`).
pub fn would_block(py: Python<'_>) -> PyErr {
    static TYPE: PyOnceLock<Py<PyType>> = PyOnceLock::new();
    match TYPE.import(py, "mmn_fast._types", "WouldBlock") {
        Ok(ty) => PyErr::from_type(
            ty.clone(),
            "a subscriber refused a non-blockable invalidation",
        ),
        Err(err) => err,
    }
}
