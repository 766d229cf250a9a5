//! Errors of the core. No `PyO3` here: `bindings::errors` turns each into a Python exception
//! in exactly one place.

use std::fmt;

/// Everything the core can refuse. Each variant maps to one documented Python exception.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Error {
    /// `length == 0` or `start + length - 1` overflows `u64` (kernel `-EOVERFLOW`, SPEC R33).
    Overflow { start: u64, length: u64 },
    /// A half-open range with `start >= end` (SPEC Q6, D3).
    EmptyRange { start: u64, end: u64 },
    /// A closed interval with `start > last`.
    StartAfterLast { start: u64, last: u64 },
    /// The subscription was already removed (SPEC D6, R42).
    NotSubscribed,
    /// The address space was released: it takes no new subscription (SPEC D12).
    Released,
    /// `invalidate_range_end` with no invalidation running (SPEC D6, R51).
    NoActiveInvalidation,
    /// A wait on the invalidation this thread is running itself (SPEC D6, R32, R42).
    WouldDeadlock,
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Self::Overflow { start, length } => write!(
                f,
                "interval at {start:#x} of length {length:#x} is empty or overflows 2**64 (EOVERFLOW)"
            ),
            Self::EmptyRange { start, end } => {
                write!(f, "range [{start:#x}, {end:#x}) is empty: start must be < end")
            }
            Self::StartAfterLast { start, last } => {
                write!(f, "interval [{start:#x}, {last:#x}] has start > last")
            }
            Self::NotSubscribed => f.write_str("subscription was already removed"),
            Self::Released => f.write_str("the address space was released: it takes no new subscription"),
            Self::NoActiveInvalidation => {
                f.write_str("invalidate_range_end without a matching invalidate_range_start")
            }
            Self::WouldDeadlock => f.write_str(
                "would wait for the invalidation this thread is running: \
                 not allowed from inside an invalidation callback",
            ),
        }
    }
}

impl std::error::Error for Error {}
