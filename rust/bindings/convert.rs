//! Argument conversions shared by the wrappers (API.md "Input conventions").

use pyo3::exceptions::{PyOverflowError, PyTypeError, PyValueError};

use super::errors::with_message;
use pyo3::ffi;
use pyo3::intern;
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::{PyBool, PyByteArray, PyBytes, PyFloat, PyString, PyTuple};
use pyo3::Borrowed;

use crate::error::Error;
use crate::interval::Interval;

/// A u64 argument: anything with `__index__`; a value outside u64 is `OverflowError`.
///
/// The same as `PyO3`'s `u64` extraction, but an `int` takes `PyLong_AsUnsignedLong` where that is
/// 64 bits wide: on `CPython` 3.11 `PyLong_AsUnsignedLongLong` goes through a byte-array
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

/// The `Event` members, indexed by value: handed over once by `mmn_fast._types` (see
/// [`set_event`]), so that no Rust code imports the package that wraps this module.
static EVENT_MEMBERS: PyOnceLock<Py<PyTuple>> = PyOnceLock::new();

/// Hand the `Event` enum to the native module (once, at import of `mmn_fast._types`).
#[pyfunction]
pub fn set_event(py: Python<'_>, cls: &Bound<'_, PyAny>) -> PyResult<()> {
    let all = (0..EVENTS)
        .map(|v| cls.call1((v,)))
        .collect::<PyResult<Vec<_>>>()?;
    let _ = EVENT_MEMBERS.set(py, PyTuple::new(py, all)?.unbind());
    Ok(())
}

/// The `Event` member of value `code`.
pub fn event_member(py: Python<'_>, code: u8) -> PyResult<Bound<'_, PyAny>> {
    match EVENT_MEMBERS.get(py) {
        Some(members) => members.bind(py).get_item(usize::from(code)),
        None => Err(pyo3::exceptions::PyRuntimeError::new_err(
            "mmn_fast._types was not imported",
        )),
    }
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

/// Batches at least this long are decoded with the GIL released; shorter ones would pay more
/// for the release than for the decoding.
pub const DETACH_MIN: usize = 1 << 12;

/// Run `f` with the GIL released when the batch is `n >= DETACH_MIN` items long, else attached.
pub fn detach_if_large<T: Send>(py: Python<'_>, n: usize, f: impl Send + FnOnce() -> T) -> T {
    if n >= DETACH_MIN {
        py.detach(f)
    } else {
        f()
    }
}

/// A batch argument (API.md "Input conventions"): a one-dimensional buffer of native unsigned
/// 64-bit integers, read in place, or the values of a sequence of ints.
///
/// The buffer stays exported (so its memory stays allocated and its size fixed: `array` and
/// `bytearray` refuse to resize while exported) until this is dropped, so it can be read with
/// the GIL released. Another thread may still write the items meanwhile, as with any buffer
/// shared between threads: each item is read exactly once, and a batch written during the call
/// is decoded with each item's old or new value (never torn on aligned buffers).
pub enum U64s {
    Buffer {
        export: Export,
        len: usize,
        stride: isize,
    },
    Ints(Vec<u64>),
}

/// A buffer exported by its object (`PyObject_GetBuffer`), released (`PyBuffer_Release`) on drop.
pub struct Export(Box<ffi::Py_buffer>);

// SAFETY: the view is only read after the export (the items through `buf`, from any thread,
// while the export holds the memory); it is released attached to the interpreter.
unsafe impl Send for Export {}
// SAFETY: as above; nothing writes through a shared `Export`.
unsafe impl Sync for Export {}

impl Export {
    /// `obj`'s buffer with its format, shape and strides (`PyBUF_RECORDS_RO`).
    fn get(obj: &Bound<'_, PyAny>) -> PyResult<Self> {
        let mut view = Box::new(ffi::Py_buffer::new());
        // SAFETY: `obj` is live, we are attached, and `view` is a writable `Py_buffer`; on
        // success the exporter filled it and `Drop` releases it exactly once.
        if unsafe { ffi::PyObject_GetBuffer(obj.as_ptr(), &raw mut *view, ffi::PyBUF_RECORDS_RO) }
            != 0
        {
            return Err(PyErr::fetch(obj.py()));
        }
        Ok(Self(view))
    }

    /// The item format (`struct` syntax; a missing format means `B`).
    fn format(&self) -> String {
        if self.0.format.is_null() {
            return "B".into();
        }
        // SAFETY: a non-null format is a NUL-terminated string owned by the export.
        unsafe { std::ffi::CStr::from_ptr(self.0.format) }
            .to_string_lossy()
            .into_owned()
    }
}

impl Drop for Export {
    fn drop(&mut self) {
        Python::attach(|_| {
            // SAFETY: the view was filled by a successful `PyObject_GetBuffer` and is released
            // once, attached.
            unsafe { ffi::PyBuffer_Release(&raw mut *self.0) }
        });
    }
}

impl U64s {
    /// The batch argument `obj`, named `name` in errors. A buffer of another item format or
    /// shape, `bytes` / `bytearray` / `str`, a non-int item, and an int outside u64 are errors
    /// (`TypeError`, `OverflowError`).
    pub fn extract(obj: &Bound<'_, PyAny>, name: &str) -> PyResult<Self> {
        let not_a_batch = || {
            let kind = obj
                .get_type()
                .name()
                .map_or_else(|_| "?".into(), |n| n.to_string());
            PyTypeError::new_err(format!(
                "{name} must be a buffer of u64 or a sequence of ints, not {kind}"
            ))
        };
        if obj.is_instance_of::<PyBytes>()
            || obj.is_instance_of::<PyByteArray>()
            || obj.is_instance_of::<PyString>()
        {
            return Err(not_a_batch());
        }
        // SAFETY: `obj` is a live object and we are attached; the call only reads its type.
        if unsafe { ffi::PyObject_CheckBuffer(obj.as_ptr()) } != 0 {
            return Self::from_buffer(Export::get(obj)?, name);
        }
        let Ok(items) = obj.try_iter() else {
            return Err(not_a_batch());
        };
        items
            .enumerate()
            .map(|(i, item)| {
                item?.extract::<U64>().map(|v| v.0).map_err(|err| {
                    let msg = format!("{name} item {i}: {}", err.value(obj.py()));
                    if err.is_instance_of::<PyOverflowError>(obj.py()) {
                        PyOverflowError::new_err(msg)
                    } else if err.is_instance_of::<PyTypeError>(obj.py()) {
                        PyTypeError::new_err(msg)
                    } else {
                        err
                    }
                })
            })
            .collect::<PyResult<_>>()
            .map(Self::Ints)
    }

    fn from_buffer(export: Export, name: &str) -> PyResult<Self> {
        let view = &*export.0;
        let format = export.format();
        if view.itemsize != 8 || !is_native_u64(format.as_bytes()) {
            return Err(PyTypeError::new_err(format!(
                "{name} must hold native unsigned 64-bit integers (format 'Q'), not format {format:?}"
            )));
        }
        if view.ndim != 1 {
            return Err(PyTypeError::new_err(format!(
                "{name} must be one-dimensional, not {}-dimensional",
                view.ndim
            )));
        }
        // SAFETY: a one-dimensional export requested with PyBUF_STRIDES has a one-item shape;
        // its strides may be NULL, which means contiguous (CPython's buffer protocol).
        let (len, stride) = unsafe {
            let stride = if view.strides.is_null() {
                8
            } else {
                *view.strides
            };
            (*view.shape, stride)
        };
        let len =
            usize::try_from(len).map_err(|_| PyValueError::new_err("negative buffer shape"))?;
        Ok(Self::Buffer {
            export,
            len,
            stride,
        })
    }

    pub fn len(&self) -> usize {
        match self {
            Self::Buffer { len, .. } => *len,
            Self::Ints(v) => v.len(),
        }
    }

    /// Where the items are.
    fn items(&self) -> Items {
        match self {
            Self::Buffer { export, stride, .. } => Items {
                base: export.0.buf.cast::<u8>(),
                stride: *stride,
                aligned: export.0.buf as usize % 8 == 0 && stride % 8 == 0,
            },
            Self::Ints(v) => Items {
                base: v.as_ptr().cast::<u8>(),
                stride: 8,
                aligned: true,
            },
        }
    }
}

/// Where a batch's items are: item `i` is the 8 bytes at `base + i * stride`.
#[derive(Clone, Copy)]
struct Items {
    base: *const u8,
    stride: isize,
    /// Every item is 8-aligned (a buffer need not be: e.g. a memoryview cast at an odd offset).
    aligned: bool,
}

impl Items {
    /// Item `i`, read exactly once (volatile), so that a value checked is the value used even
    /// if another thread writes the buffer meanwhile.
    ///
    /// # Safety
    /// `i` is below the length of the [`U64s`] these items belong to, which is still alive:
    /// then the exporter (or the `Vec`) guarantees 8 readable bytes at `base + i * stride`.
    #[inline]
    #[allow(clippy::cast_possible_wrap, clippy::cast_ptr_alignment)]
    unsafe fn get(self, i: usize) -> u64 {
        // SAFETY: the caller's contract; `i < len <= isize::MAX` so the cast cannot wrap, and
        // the `u64` read is taken only when the items are 8-aligned.
        unsafe {
            let item = self.base.offset(i as isize * self.stride);
            if self.aligned {
                item.cast::<u64>().read_volatile()
            } else {
                u64::from_ne_bytes(item.cast::<[u8; 8]>().read_volatile())
            }
        }
    }
}

/// Whether a buffer's item `format` is a native-order unsigned 64-bit integer: `Q` in native or
/// standard size with native byte order (`Q`, `@Q`, `=Q`, and `<Q` (ctypes) or `>Q` / `!Q` by
/// the machine's order), or `L` / `@L` where the caller checked that items are 8 bytes.
fn is_native_u64(format: &[u8]) -> bool {
    let native_order: &[u8] = if cfg!(target_endian = "little") {
        b"=<"
    } else {
        b"=>!"
    };
    match format {
        [b'Q' | b'L'] | [b'@', b'Q' | b'L'] => true,
        [order, b'Q'] => native_order.contains(order),
        _ => false,
    }
}

/// Items decoded per GIL release, between two looks for signals (a few milliseconds of work).
const DECODE_CHUNK: usize = 1 << 20;

/// Where [`decode_batch`] puts the intervals it decodes, in order.
pub trait Decoded: Send {
    fn with_capacity(n: usize) -> Self;
    fn len(&self) -> usize;
    fn push(&mut self, interval: Interval);
}

impl Decoded for Vec<Interval> {
    fn with_capacity(n: usize) -> Self {
        Self::with_capacity(n)
    }
    fn len(&self) -> usize {
        self.len()
    }
    fn push(&mut self, interval: Interval) {
        self.push(interval);
    }
}

/// Closed intervals as two columns, the input of `IntervalTree::from_columns` (less memory at
/// once than a column of intervals, and a bulk build's time is mostly its fresh memory).
pub struct Columns {
    pub starts: Vec<u64>,
    pub lasts: Vec<u64>,
}

impl Decoded for Columns {
    fn with_capacity(n: usize) -> Self {
        Self {
            starts: Vec::with_capacity(n),
            lasts: Vec::with_capacity(n),
        }
    }
    fn len(&self) -> usize {
        self.starts.len()
    }
    fn push(&mut self, interval: Interval) {
        self.starts.push(interval.start());
        self.lasts.push(interval.last());
    }
}

/// Decode a batch given as two u64 arrays into intervals with `make`, the checked constructor of
/// the batch's convention (`Interval::from_range` for half-open ranges, `Interval::new` for
/// closed intervals). Every pair is checked before the caller changes anything (D3): unequal
/// lengths or a bad pair is `ValueError` naming the `item`. Large batches are decoded with the
/// GIL released, a chunk at a time, with a look for signals between chunks (Ctrl-C interrupts
/// the call, and nothing has changed yet).
pub fn decode_batch<D: Decoded>(
    py: Python<'_>,
    firsts: &U64s,
    seconds: &U64s,
    make: impl Fn(u64, u64) -> Result<Interval, Error> + Sync,
    item: &str,
) -> PyResult<D> {
    let n = firsts.len();
    if n != seconds.len() {
        return Err(PyValueError::new_err(format!(
            "the two arrays of {item}s have different lengths"
        )));
    }
    let mut out = D::with_capacity(n);
    while out.len() < n {
        let chunk = out.len()..n.min(out.len() + DECODE_CHUNK);
        detach_if_large(py, chunk.len(), || {
            let (first, second) = (firsts.items(), seconds.items());
            for i in chunk {
                // SAFETY: `i < n`, the length of both batches, which outlive this loop.
                let pair = unsafe { (first.get(i), second.get(i)) };
                let interval = make(pair.0, pair.1)
                    .map_err(|err| with_message(&err, format!("{item} {i}: {err}")))?;
                out.push(interval);
            }
            Ok::<_, PyErr>(())
        })?;
        if out.len() < n {
            py.check_signals()?;
        }
    }
    Ok(out)
}

/// `words` as an `array('Q')` (the type the batch calls return), with one copy.
pub fn u64_array<'py>(py: Python<'py>, words: &[u64]) -> PyResult<Bound<'py, PyAny>> {
    static ARRAY: PyOnceLock<Py<PyAny>> = PyOnceLock::new();
    let array = ARRAY.get_or_try_init(py, || {
        py.import("array")?.getattr("array").map(Bound::unbind)
    })?;
    let bytes = PyBytes::new_with(py, std::mem::size_of_val(words), |out| {
        for (chunk, w) in out.chunks_exact_mut(8).zip(words) {
            chunk.copy_from_slice(&w.to_ne_bytes());
        }
        Ok(())
    })?;
    array.bind(py).call1((intern!(py, "Q"), bytes))
}
