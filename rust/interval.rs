//! The one interval convention of the crate: closed `[start, last]` over `u64`.
//!
//! Every user-facing shape is turned into an [`Interval`] by one checked constructor:
//! a subscription `(start, length)` by [`Interval::from_start_length`] (SPEC R33, R38, D3),
//! a half-open range `[start, end)` by [`Interval::from_range`] (SPEC R12, Q6, D3).

use crate::error::Error;

/// A non-empty closed interval `[start, last]` of `u64` addresses (`start <= last`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Interval {
    start: u64,
    last: u64,
}

impl Interval {
    /// The closed interval `[start, last]`.
    ///
    /// # Errors
    /// [`Error::StartAfterLast`] when `start > last`.
    pub fn new(start: u64, last: u64) -> Result<Self, Error> {
        if start > last {
            return Err(Error::StartAfterLast { start, last });
        }
        Ok(Self { start, last })
    }

    /// The interval a subscription of `length` bytes at `start` covers: `[start, start + length - 1]`
    /// (the kernel's `mmu_interval_notifier_insert`).
    ///
    /// # Errors
    /// [`Error::Overflow`] when `length == 0` or `start + length - 1` does not fit in `u64`
    /// (the kernel's `-EOVERFLOW`; SPEC R33, R38). `(u64::MAX, 1)` is valid, and no
    /// subscription covers all 2^64 addresses.
    pub fn from_start_length(start: u64, length: u64) -> Result<Self, Error> {
        let last = length
            .checked_sub(1)
            .and_then(|span| start.checked_add(span))
            .ok_or(Error::Overflow { start, length })?;
        Ok(Self { start, last })
    }

    /// The closed query `[start, end - 1]` of a half-open range `[start, end)`.
    ///
    /// # Errors
    /// [`Error::EmptyRange`] when `start >= end` (the kernel would wrap `end - 1`, SPEC Q6, D3).
    pub fn from_range(start: u64, end: u64) -> Result<Self, Error> {
        if start >= end {
            return Err(Error::EmptyRange { start, end });
        }
        Ok(Self {
            start,
            last: end - 1,
        })
    }

    /// The first address.
    #[inline]
    pub const fn start(self) -> u64 {
        self.start
    }

    /// The last address (inclusive).
    #[inline]
    pub const fn last(self) -> u64 {
        self.last
    }

    /// Whether the two closed intervals share at least one address.
    #[inline]
    pub const fn overlaps(self, other: Self) -> bool {
        self.start <= other.last && other.start <= self.last
    }

    /// Whether `point` lies in the interval.
    #[inline]
    pub const fn contains(self, point: u64) -> bool {
        self.start <= point && point <= self.last
    }

    /// Whether every address of `other` lies in the interval.
    #[inline]
    pub const fn encloses(self, other: Self) -> bool {
        self.start <= other.start && other.last <= self.last
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn start_length_limits_r38() {
        let top = Interval::from_start_length(u64::MAX, 1).unwrap();
        assert_eq!((top.start(), top.last()), (u64::MAX, u64::MAX));
        assert_eq!(
            Interval::from_start_length(0, u64::MAX).unwrap().last(),
            u64::MAX - 1
        );
        assert_eq!(
            Interval::from_start_length(1, u64::MAX).unwrap().last(),
            u64::MAX
        );
        for (start, length) in [(0, 0), (5, 0), (u64::MAX, 2), (2, u64::MAX)] {
            assert_eq!(
                Interval::from_start_length(start, length),
                Err(Error::Overflow { start, length })
            );
        }
    }

    #[test]
    fn half_open_range_is_closed_query() {
        let q = Interval::from_range(0x1000, 0x2000).unwrap();
        assert_eq!((q.start(), q.last()), (0x1000, 0x1fff));
        assert!(Interval::from_range(7, 7).is_err());
        assert!(Interval::from_range(8, 7).is_err());
        assert_eq!(
            Interval::from_range(0, u64::MAX).unwrap().last(),
            u64::MAX - 1
        );
    }

    #[test]
    fn overlap_is_inclusive_on_both_ends_t4() {
        let a = Interval::from_start_length(0x1000, 0x1000).unwrap();
        assert!(!a.overlaps(Interval::from_range(0x2000, 0x3000).unwrap()));
        assert!(!a.overlaps(Interval::from_range(0, 0x1000).unwrap()));
        assert!(a.overlaps(Interval::from_range(0x1fff, 0x2000).unwrap()));
        assert!(a.overlaps(Interval::from_range(0, 0x1001).unwrap()));
        assert!(a.contains(0x1fff) && !a.contains(0x2000));
        assert!(a.encloses(a) && a.encloses(Interval::from_range(0x1800, 0x2000).unwrap()));
        assert!(!a.encloses(Interval::from_range(0x1800, 0x2001).unwrap()));
        assert!(!a.encloses(Interval::from_range(0xfff, 0x1800).unwrap()));
        assert!(Interval::new(3, 2).is_err());
    }
}
