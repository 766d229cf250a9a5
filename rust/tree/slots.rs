//! The slot arena that handles name: per allocated interval its generation, the leaf holding it
//! and its value.
//!
//! A slot is two `u32` and the value, with no tag: occupancy is the generation's parity (even
//! occupied, odd vacant), and `link` is the leaf of an occupied slot, the next free slot of a
//! vacant one. With a zero-sized value, which is what the Python binding stores (its values
//! live apart, at the same index), a slot is 8 bytes (issue 11's memory budget).

use std::mem::{self, MaybeUninit};
use std::ops::Index;

use super::{corrupted, Handle, NIL};

/// One slot of the arena; see the module docs.
#[repr(C)]
pub(super) struct Slot<V> {
    /// Even while occupied, odd while vacant; a vacant slot at `u32::MAX` is retired for good.
    generation: u32,
    /// Occupied: the leaf holding the interval, `NIL` while detached. Vacant: the next free
    /// slot, `NIL` at the end of the free list and for a retired slot.
    link: u32,
    /// Initialised exactly while the slot is occupied.
    value: MaybeUninit<V>,
}

/// An occupied slot: the layout of [`Slot`], its value initialised.
#[repr(C)]
pub(super) struct Entry<V> {
    pub generation: u32,
    /// The leaf holding the interval, or `NIL` while detached (the interval is then in
    /// `BPlusTree::detached`).
    pub leaf: u32,
    pub value: V,
}

/// What [`Slots::view`] shows of a slot (for `check_invariants`).
pub(super) enum View<'a, V> {
    Occupied(&'a Entry<V>),
    Vacant { generation: u32, next_free: u32 },
}

const fn occupied(generation: u32) -> bool {
    generation % 2 == 0
}

/// The slot arena: slots indexed by [`Handle::slot`], vacant ones on a free list through
/// `link`, reused (last freed first) before the arena grows.
pub(super) struct Slots<V> {
    slots: Vec<Slot<V>>,
    /// The first free slot, `NIL` when none.
    pub(super) free_head: u32,
}

impl<V> Slots<V> {
    pub const fn new() -> Self {
        Self {
            slots: Vec::new(),
            free_head: NIL,
        }
    }

    pub fn with_capacity(n: usize) -> Self {
        Self {
            slots: Vec::with_capacity(n),
            free_head: NIL,
        }
    }

    /// Slots ever allocated: occupied, vacant and retired.
    #[inline]
    pub fn len(&self) -> usize {
        self.slots.len()
    }

    /// Take a free slot (or a new one) for `value`, detached.
    ///
    /// # Panics
    /// When the arena would exceed `u32::MAX - 1` slots.
    pub fn allocate(&mut self, value: V) -> Handle {
        let slot = self.free_head;
        if slot == NIL {
            let slot = u32::try_from(self.slots.len()).ok().filter(|&s| s != NIL);
            let Some(slot) = slot else {
                panic!("IntervalTree: more than u32::MAX - 1 slots");
            };
            self.slots.push(Slot {
                generation: 0,
                link: NIL,
                value: MaybeUninit::new(value),
            });
            return Handle::new(slot, 0);
        }
        let s = &mut self.slots[slot as usize];
        if occupied(s.generation) {
            corrupted(slot);
        }
        self.free_head = s.link;
        // Odd below `u32::MAX` (a retired slot is not on the free list): the next even one.
        s.generation += 1;
        s.link = NIL;
        s.value.write(value);
        Handle::new(slot, s.generation)
    }

    /// The slot `h` names, if it is occupied by the generation `h` carries.
    #[inline]
    pub fn resolve(&self, h: Handle) -> Option<u32> {
        let s = self.slots.get(h.slot() as usize)?;
        (s.generation == h.generation() && occupied(s.generation)).then_some(h.slot())
    }

    /// The generation of `slot` while it is occupied.
    #[inline]
    pub fn generation(&self, slot: u32) -> Option<u32> {
        let s = self.slots.get(slot as usize)?;
        occupied(s.generation).then_some(s.generation)
    }

    /// Start loading `slot`'s cache line; nothing for an index past the arena.
    #[inline]
    pub fn prefetch(&self, slot: u32) {
        if let Some(s) = self.slots.get(slot as usize) {
            super::prefetch(s);
        }
    }

    /// The occupied `slot`.
    #[inline]
    pub fn entry(&self, slot: u32) -> &Entry<V> {
        let s = &self.slots[slot as usize];
        if !occupied(s.generation) {
            corrupted(slot);
        }
        // SAFETY: `Entry<V>` has `Slot<V>`'s layout (both `repr(C)`, with the same field
        // types but `MaybeUninit<V>`, which is laid out as `V`), and an occupied slot's value
        // is initialised.
        unsafe { &*std::ptr::from_ref(s).cast::<Entry<V>>() }
    }

    /// The occupied `slot`, mutably.
    #[inline]
    pub fn entry_mut(&mut self, slot: u32) -> &mut Entry<V> {
        let s = &mut self.slots[slot as usize];
        if !occupied(s.generation) {
            corrupted(slot);
        }
        // SAFETY: as in `entry`; writes through the `Entry` store a valid `V` or a `u32`.
        unsafe { &mut *std::ptr::from_mut(s).cast::<Entry<V>>() }
    }

    /// Vacate the occupied `slot` and return its value. The slot goes on the free list with the
    /// next generation, or is retired when that is `u32::MAX`, so that no handle of it can
    /// come back to life.
    pub fn free(&mut self, slot: u32) -> V {
        let s = &mut self.slots[slot as usize];
        if !occupied(s.generation) {
            corrupted(slot);
        }
        s.generation += 1; // even, so at most `u32::MAX`
        s.link = if s.generation == u32::MAX {
            NIL
        } else {
            mem::replace(&mut self.free_head, slot)
        };
        // SAFETY: the slot was occupied, so its value is initialised; it is now marked vacant,
        // so the value is read out this once.
        unsafe { s.value.assume_init_read() }
    }

    /// Vacate every slot and return the values in slot order; the rebuilt free list hands out
    /// low slots first.
    pub fn drain(&mut self) -> Vec<V> {
        let mut values = Vec::with_capacity(self.slots.len());
        self.free_head = NIL;
        for (i, s) in self.slots.iter_mut().enumerate().rev() {
            if occupied(s.generation) {
                s.generation += 1;
                // SAFETY: as in `free`.
                values.push(unsafe { s.value.assume_init_read() });
            }
            s.link = if s.generation == u32::MAX {
                NIL
            } else {
                mem::replace(&mut self.free_head, u32::try_from(i).unwrap_or(NIL))
            };
        }
        values.reverse();
        values
    }

    /// What `slot` holds; `None` beyond the arena.
    pub fn view(&self, slot: u32) -> Option<View<'_, V>> {
        let s = self.slots.get(slot as usize)?;
        Some(if occupied(s.generation) {
            View::Occupied(self.entry(slot))
        } else {
            View::Vacant {
                generation: s.generation,
                next_free: s.link,
            }
        })
    }

    /// Give the vacant `slot` the (odd) `generation`, as if it had been reused that often.
    #[cfg(test)]
    pub fn age(&mut self, slot: u32, generation: u32) {
        let s = &mut self.slots[slot as usize];
        assert!(!occupied(s.generation) && !occupied(generation));
        s.generation = generation;
    }
}

/// A slot's memory (its fields stay private), for a walk that prefetches the slot of a hit
/// before it reads it (the interleaved batch walk, `batch.rs`).
impl<V> Index<usize> for Slots<V> {
    type Output = Slot<V>;

    #[inline]
    fn index(&self, slot: usize) -> &Slot<V> {
        &self.slots[slot]
    }
}

impl<V> Drop for Slots<V> {
    fn drop(&mut self) {
        for s in &mut self.slots {
            if occupied(s.generation) {
                // SAFETY: an occupied slot's value is initialised, and dropped only here.
                unsafe { s.value.assume_init_drop() };
            }
        }
    }
}

impl<V: Clone> Clone for Slots<V> {
    fn clone(&self) -> Self {
        let slots = self.slots.iter().map(|s| Slot {
            generation: s.generation,
            link: s.link,
            value: if occupied(s.generation) {
                // SAFETY: an occupied slot's value is initialised.
                MaybeUninit::new(unsafe { s.value.assume_init_ref() }.clone())
            } else {
                MaybeUninit::uninit()
            },
        });
        Self {
            slots: slots.collect(),
            free_head: self.free_head,
        }
    }
}
