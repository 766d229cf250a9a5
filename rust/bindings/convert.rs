//! Argument conversions shared by the wrappers (API.md "Input conventions").

use pyo3::exceptions::{PyOverflowError, PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::{PyBool, PyFloat, PyTuple};
use pyo3::Borrowed;

use crate::error::Error;
use crate::interval::Interval;

/// A u64 argument: anything with `__index__`; a value outside u64 is `OverflowError`.
///
/// The same as `PyO3`'s `u64` extraction, but an `int` takes `PyLong_AsUnsignedLong` where that is
/// 64 bits wide: on `CPython` 3.9-3.11 `PyLong_AsUnsignedLongLong` goes through a byte-array
/// conversion for every multi-digit int (any address above 2**30), a measurable part of a
/// single-query call.
#[derive(Clone, Copy)]
pub struct U64(pub u64);

impl<'a, 'py> FromPyObject<'a, 'py> for U64 {
    type Error = PyErr;

    #[inline]
    fn extract(obj: Borrowed<'a, 'py, PyAny>) -> PyResult<Self> {
        #[cfg(all(target_pointer_width = "64", not(windows)))]
        if let Ok(int) = obj.cast::<pyo3::types::PyInt>() {
            // SAFETY: `int` is a live `int` (or subclass) object and we are attached to the
            // interpreter; the call only reads it and reports failure through the error
            // indicator, which `PyErr::take` consumes right here.
            let value = unsafe { pyo3::ffi::PyLong_AsUnsignedLong(int.as_ptr()) };
            if value == std::ffi::c_ulong::MAX {
                if let Some(err) = PyErr::take(obj.py()) {
                    return Err(err);
                }
            }
            return Ok(Self(value));
        }
        obj.extract::<u64>().map(Self)
    }
}

/// Number of `Event` members (kernel order, `UNMAP = 0` .. `MIGRATE = 6`).
pub const EVENTS: u8 = 7;
pub const EVENT_UNMAP: u8 = 0;
pub const EVENT_PROTECTION_VMA: u8 = 2;
pub const EVENT_RELEASE: u8 = 5;
pub const EVENT_MIGRATE: u8 = 6;

/// The `Event` members, indexed by value, imported once from `mmn_fast._types`.
pub fn event_member(py: Python<'_>, code: u8) -> PyResult<Bound<'_, PyAny>> {
    static MEMBERS: PyOnceLock<Py<PyTuple>> = PyOnceLock::new();
    let members = MEMBERS.get_or_try_init(py, || -> PyResult<Py<PyTuple>> {
        let event = py.import("mmn_fast._types")?.getattr("Event")?;
        let all = (0..EVENTS)
            .map(|v| event.call1((v,)))
            .collect::<PyResult<Vec<_>>>()?;
        Ok(PyTuple::new(py, all)?.unbind())
    })?;
    members.bind(py).get_item(usize::from(code))
}

/// An `event` argument: an `Event` or an int in `0..=6` (`ValueError` for any other int,
/// `TypeError` for anything else, `None` included). Omitted, it is `UNMAP`.
#[derive(Clone, Copy)]
pub struct EventArg(pub u8);

impl EventArg {
    pub const UNMAP: Self = Self(EVENT_UNMAP);
}

impl<'a, 'py> FromPyObject<'a, 'py> for EventArg {
    type Error = PyErr;

    fn extract(obj: Borrowed<'a, 'py, PyAny>) -> PyResult<Self> {
        event_code(&obj).map(Self)
    }
}

/// The value of an `event` argument; see [`EventArg`].
pub fn event_code(event: &Bound<'_, PyAny>) -> PyResult<u8> {
    match event.extract::<i64>() {
        Ok(v) => u8::try_from(v)
            .ok()
            .filter(|&v| v < EVENTS)
            .ok_or_else(|| PyValueError::new_err(format!("{v} is not a valid Event (0..6)"))),
        Err(err) if err.is_instance_of::<PyOverflowError>(event.py()) => {
            Err(PyValueError::new_err("not a valid Event (0..6)"))
        }
        Err(err) => Err(err),
    }
}

/// A `read_begin` timeout: `None`, `inf` or a value too large to represent mean no limit
/// (`Ok(None)`); NaN or a negative number is `ValueError`; a bool or a non-number `TypeError`.
/// Any other exception raised by the conversion (`KeyboardInterrupt` included) propagates.
pub fn timeout_arg(timeout: Option<&Bound<'_, PyAny>>) -> PyResult<Option<std::time::Duration>> {
    let Some(obj) = timeout else { return Ok(None) };
    if obj.is_instance_of::<PyBool>() {
        return Err(PyTypeError::new_err(
            "timeout must be a number of seconds, not a bool",
        ));
    }
    let secs: f64 = if obj.is_instance_of::<PyFloat>() {
        obj.extract()?
    } else {
        // Ints (however large) and other real numbers go through float(), as time.sleep does.
        let py = obj.py();
        match obj.call_method0(pyo3::intern!(py, "__float__")) {
            Ok(f) => f.extract()?,
            Err(err) if err.is_instance_of::<PyOverflowError>(py) => f64::INFINITY,
            Err(err) if !err.is_instance_of::<pyo3::exceptions::PyAttributeError>(py) => {
                return Err(err)
            }
            Err(_) => {
                return Err(PyTypeError::new_err(format!(
                    "timeout must be a number of seconds, not {}",
                    obj.get_type().name()?
                )))
            }
        }
    };
    if secs.is_nan() || secs < 0.0 {
        return Err(PyValueError::new_err("timeout must be >= 0 seconds"));
    }
    Ok(std::time::Duration::try_from_secs_f64(secs).ok())
}

/// The native-endian u64 items of `bytes` (a trailing partial item is ignored).
fn words(bytes: &[u8]) -> impl Iterator<Item = u64> + '_ {
    bytes.chunks_exact(8).map(|c| {
        let mut word = [0u8; 8];
        word.copy_from_slice(c);
        u64::from_ne_bytes(word)
    })
}

/// Decode a batch given as two native-endian u64 arrays (as bytes) into intervals with `make`,
/// the checked constructor of the batch's convention (`Interval::from_range` for half-open
/// ranges, `Interval::new` for closed intervals). Every pair is checked before the caller
/// changes anything (D3): unequal lengths or a bad pair is `ValueError` naming the `item`.
/// Needs no GIL: callers run it detached, so a large batch does not stall other threads.
pub fn batch_from_bytes(
    firsts: &[u8],
    seconds: &[u8],
    make: fn(u64, u64) -> Result<Interval, Error>,
    item: &str,
) -> PyResult<Vec<Interval>> {
    if firsts.len() != seconds.len() {
        return Err(PyValueError::new_err(format!(
            "the two arrays of {item}s have different lengths"
        )));
    }
    words(firsts)
        .zip(words(seconds))
        .enumerate()
        .map(|(i, (a, b))| {
            make(a, b).map_err(|err| PyValueError::new_err(format!("{item} {i}: {err}")))
        })
        .collect()
}
