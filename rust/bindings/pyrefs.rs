//! `PyRefs`: the Python references an object holds, kept apart from its busy lock so that the
//! garbage collector always sees them (issue 10, item 6).
//!
//! Invariant: the mutex here is taken only with the GIL attached, around a short stretch of
//! Rust, never around a Python allocation, a call into Python or a GIL release. The collector runs
//! with the GIL held, so no other thread can be inside such a section when it traverses, and
//! this thread cannot be either (nothing inside can trigger a collection): `try_lock` in
//! [`PyRefs::traverse`] therefore always succeeds, and traversal reports the same references
//! whatever the object's other locks are doing. References taken out are dropped by the caller
//! after unlocking (a destructor may run Python).

use std::sync::{Mutex, MutexGuard, PoisonError};

use pyo3::gc::{PyTraverseError, PyVisit};
use pyo3::prelude::*;

use crate::tree::prefetch;

/// Slots of `T` (each holding Python references), reused after removal. An owner that numbers
/// its entries itself (the tree binding: an interval's tree slot) stores them with
/// [`Slots::put`] and [`Slots::take`] instead, and the free list stays empty.
pub struct Slots<T> {
    slots: Vec<Option<T>>,
    free: Vec<u32>,
}

impl<T> Slots<T> {
    /// Store `value`; returns its slot.
    pub fn insert(&mut self, value: T) -> u32 {
        if let Some(slot) = self.free.pop() {
            self.slots[slot as usize] = Some(value);
            return slot;
        }
        let slot = u32::try_from(self.slots.len()).expect("fewer than 2**32 live references");
        self.slots.push(Some(value));
        slot
    }

    /// Take the value of `slot` out (to drop after unlocking).
    pub fn remove(&mut self, slot: u32) -> Option<T> {
        let value = self.take(slot)?;
        self.free.push(slot);
        Some(value)
    }

    /// Store `value` at `slot`, a number the owner allocated; returns what was there (nothing,
    /// unless the owner reused a number it had not emptied), to drop after unlocking.
    pub fn put(&mut self, slot: u32, value: T) -> Option<T> {
        let i = slot as usize;
        if i >= self.slots.len() {
            self.slots.resize_with(i + 1, || None);
        }
        self.slots[i].replace(value)
    }

    /// Take the value of `slot` out, leaving it empty, not free (to drop after unlocking).
    pub fn take(&mut self, slot: u32) -> Option<T> {
        self.slots.get_mut(slot as usize)?.take()
    }

    /// The slots that hold a value, ascending.
    pub fn occupied(&self) -> impl Iterator<Item = u32> + '_ {
        (0..)
            .zip(&self.slots)
            .filter_map(|(i, v)| v.as_ref().map(|_| i))
    }

    /// Start loading `slot` into the cache (a hint; any slot number is fine).
    #[inline]
    pub fn prefetch(&self, slot: u32) {
        if let Some(entry) = self.slots.get(slot as usize) {
            prefetch(entry);
        }
    }

    pub fn get(&self, slot: u32) -> Option<&T> {
        self.slots.get(slot as usize)?.as_ref()
    }

    /// Replace everything by `values` (slot `i` for the `i`-th); returns the old content.
    pub fn replace_all(&mut self, values: Vec<T>) -> Vec<T> {
        let old = std::mem::replace(&mut self.slots, values.into_iter().map(Some).collect());
        self.free.clear();
        old.into_iter().flatten().collect()
    }
}

/// See the module docs.
pub struct PyRefs<T>(Mutex<Slots<T>>);

impl<T> PyRefs<T> {
    pub fn new() -> Self {
        Self(Mutex::new(Slots {
            slots: Vec::new(),
            free: Vec::new(),
        }))
    }

    /// The slots, for a short section that only moves or clones references (the `Python`
    /// token is the proof that the GIL is attached; see the module docs).
    pub fn lock(&self, _py: Python<'_>) -> MutexGuard<'_, Slots<T>> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Visit every stored value with `visit_one`.
    pub fn traverse(
        &self,
        visit: &PyVisit<'_>,
        visit_one: impl Fn(&PyVisit<'_>, &T) -> Result<(), PyTraverseError>,
    ) -> Result<(), PyTraverseError> {
        let slots = match self.0.try_lock() {
            Ok(slots) => slots,
            Err(std::sync::TryLockError::Poisoned(p)) => p.into_inner(),
            Err(std::sync::TryLockError::WouldBlock) => {
                debug_assert!(false, "PyRefs locked during a collection");
                return Ok(());
            }
        };
        slots
            .slots
            .iter()
            .flatten()
            .try_for_each(|value| visit_one(visit, value))
    }

    /// Take every value out (for `__clear__`; drop them after this returns).
    pub fn take_all(&self) -> Vec<T> {
        let mut slots = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        slots.replace_all(Vec::new())
    }
}
