//! The `PyO3` binding: the only code in the crate that knows about Python.
//!
//! Layers point one way: the core (`tree`, `protocol`, `notifier`) knows nothing of this folder;
//! the Python package `mmn_fast` subclasses what is defined here and adds classic mode.

mod callbacks;
mod classic;
mod convert;
mod errors;
mod locking;
mod mm;
mod pyrefs;
mod range;
mod subscription;
mod tree;

use pyo3::prelude::*;

/// The native module `mmn_fast._mmn_fast`; use the public names of `mmn_fast` instead.
///
/// `gil_used = true` on purpose: the stable ABI we build for has no free-threaded variant, and
/// classic mode (pure Python) relies on the GIL for the atomicity of its snapshot swaps.
#[pymodule(gil_used = true)]
fn _mmn_fast(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<mm::MMCore>()?;
    m.add_class::<mm::Invalidation>()?;
    m.add_class::<subscription::IntervalNotifier>()?;
    m.add_class::<range::Range>()?;
    m.add_class::<tree::IntervalTreeCore>()?;
    range::add_unpickle(m)?;
    m.add_function(wrap_pyfunction!(errors::set_would_block, m)?)?;
    m.add_function(wrap_pyfunction!(convert::set_event, m)?)?;
    m.add_function(wrap_pyfunction!(callbacks::combine, m)?)?;
    let py = m.py();
    m.add("EmptyRangeError", py.get_type::<errors::EmptyRangeError>())?;
    m.add(
        "SubscriptionRemovedError",
        py.get_type::<errors::SubscriptionRemovedError>(),
    )?;
    m.add("ReleasedError", py.get_type::<errors::ReleasedError>())?;
    m.add(
        "NotRegisteredError",
        py.get_type::<errors::NotRegisteredError>(),
    )?;
    m.add(
        "AlreadyRegisteredError",
        py.get_type::<errors::AlreadyRegisteredError>(),
    )?;
    // Memory reports (issue 7): bytes per `IntervalTree` entry, and per subscription in the core
    // (the `IntervalNotifier` Python object comes on top).
    m.add("NODE_BYTES", tree::NODE_BYTES)?;
    m.add("SUB_NODE_BYTES", mm::SUB_NODE_BYTES)?;
    Ok(())
}
