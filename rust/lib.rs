//! `mmn_fast`: the Linux kernel's MMU-notifier scheme (v5.12, with the 5.18 removal fix) for user space.
//!
//! The core is plain Rust with no Python in it:
//! - [`interval`]: the one checked `[start, last]` convention;
//! - [`tree`]: the interval index (a B+-tree keyed by start, inner nodes holding each child's
//!   smallest start and largest last);
//! - [`protocol`]: the `invalidate_seq` protocol, the active count and the deferred list, as
//!   plain transitions on a state that the caller locks;
//! - [`notifier`]: that state wrapped in a mutex and a condition variable (the waits);
//! - [`error`]: what the core refuses.
//!
//! The `PyO3` binding lives in `bindings` behind the `python` feature.

pub mod error;
pub mod interval;
pub mod notifier;
pub mod protocol;
pub mod tree;

#[cfg(feature = "python")]
mod bindings;

pub use error::Error;
pub use interval::Interval;
pub use tree::{Handle, IntervalTree};
