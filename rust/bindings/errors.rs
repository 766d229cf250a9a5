//! The one conversion from a core [`Error`] to a Python exception, and the exception types the
//! package exports. All are defined here (the native module imports nothing from `mmn_fast`),
//! except `WouldBlock`, handed over once at import (see [`set_would_block`]).
//!
//! Each distinct refusal has its own `ValueError` subclass, so callers can catch one without
//! matching messages; catching `ValueError` still catches them all (API.md).

use pyo3::create_exception;
use pyo3::exceptions::{PyOverflowError, PyRuntimeError, PyValueError};
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::PyType;

use crate::error::Error;

create_exception!(
    mmn_fast,
    EmptyRangeError,
    PyValueError,
    "A range or interval that holds no address: `start >= end` for a half-open range, \
     `start > last` for a closed interval. Nothing was changed."
);
create_exception!(
    mmn_fast,
    SubscriptionRemovedError,
    PyValueError,
    "The subscription was removed: a second `remove()` (raised at once, even while the first \
     still waits), or `read_begin`/`set_seq` on a removed subscription."
);
create_exception!(
    mmn_fast,
    ReleasedError,
    PyValueError,
    "The address space was released (`MM.release()` has begun): it takes no new subscription \
     or notifier, and a second `release()` is refused."
);
create_exception!(
    mmn_fast,
    NotRegisteredError,
    PyValueError,
    "A classic notifier that is not registered on this address space: `unregister` of a \
     stranger, or `put()` with no reference left."
);
create_exception!(
    mmn_fast,
    AlreadyRegisteredError,
    PyValueError,
    "A classic notifier registered twice on one address space, or an `alloc_notifier()` that \
     returned a notifier already registered."
);

impl From<Error> for PyErr {
    fn from(err: Error) -> Self {
        let msg = err.to_string();
        with_message(&err, msg)
    }
}

/// The Python exception for `err`, carrying `msg` (its text, perhaps with where it happened,
/// such as the index of a bad item in a batch). The one mapping of core errors to classes.
pub fn with_message(err: &Error, msg: String) -> PyErr {
    match err {
        Error::Overflow { .. } => PyOverflowError::new_err(msg),
        Error::EmptyRange { .. } | Error::StartAfterLast { .. } => EmptyRangeError::new_err(msg),
        Error::NotSubscribed => SubscriptionRemovedError::new_err(msg),
        Error::Released => ReleasedError::new_err(msg),
        Error::NoActiveInvalidation | Error::WouldDeadlock => PyRuntimeError::new_err(msg),
    }
}

/// `mmn_fast.WouldBlock`, handed over by `mmn_fast._types` at import.
///
/// Why handed over and not defined here: it must be a `BlockingIOError` whose `errno` is
/// `EAGAIN` even when a subscriber raises it with no arguments (API.md), which takes an
/// `__init__`; a Rust subclass of a built-in exception with its own `__init__` is not possible
/// under the stable ABI we build for. The Python class is given to the native module once, by
/// its defining module, so no Rust code looks a Python name up at run time.
static WOULD_BLOCK: PyOnceLock<Py<PyType>> = PyOnceLock::new();

/// Hand the `WouldBlock` class to the native module (once, at import of `mmn_fast._types`).
#[pyfunction]
pub fn set_would_block(py: Python<'_>, cls: Bound<'_, PyType>) -> PyResult<()> {
    if !cls.is_subclass_of::<pyo3::exceptions::PyBlockingIOError>()? {
        return Err(pyo3::exceptions::PyTypeError::new_err(
            "WouldBlock must be a BlockingIOError subclass",
        ));
    }
    let _ = WOULD_BLOCK.set(py, cls.unbind());
    Ok(())
}

/// A `WouldBlock` to raise: a subscriber refused a non-blockable invalidation.
pub fn would_block(py: Python<'_>) -> PyErr {
    match WOULD_BLOCK.get(py) {
        Some(ty) => PyErr::from_type(
            ty.bind(py).clone(),
            "a subscriber refused a non-blockable invalidation",
        ),
        None => PyRuntimeError::new_err("mmn_fast._types was not imported"),
    }
}
