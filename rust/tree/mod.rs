//! The interval index: closed `[start, last]` intervals in a B+-tree keyed by start, each inner
//! node holding, per child, the smallest start and the largest `last` of the child's subtree.
//!
//! # What it is for
//! One address space's interval subscriptions: "which subscriptions overlap `[start, last]`?"
//! answered in ascending start order, with inserts and removes between queries, and intervals
//! that can be unlinked from the index but kept allocated (the deferred inserts and removes of
//! the notifier protocol). It plays the role of the kernel's `interval_tree_insert`,
//! `interval_tree_remove`, `interval_tree_iter_first` and `interval_tree_iter_next` (SPEC 5.1).
//!
//! # Layout (issue 11: a descent touches a handful of cache lines)
//! - Leaves (`node::Node`) hold up to `L` intervals as three arrays (starts, lasts, slots),
//!   sorted by start; inner nodes hold up to `F` children the same way (smallest start, largest
//!   last, child index). A node answers a query with one branch-free pass over its arrays that
//!   yields a bit mask of the entries to visit (`Node::hits`, vectorised where the CPU
//!   has AVX2); the walk visits them lowest bit first, which is ascending start order, and
//!   prefetches a node's child ids together with its mask. At 10^6 intervals a descent reads five
//!   nodes, each a few adjacent cache lines, where the AVL tree it replaces chased ~20 pointers.
//! - Handles stay stable while intervals move between leaves: a handle names a *slot* (with a
//!   generation), and the slot records which leaf holds its interval; the position inside the
//!   leaf is found by scanning the leaf's `L` slot ids (one or two cache lines). Splits, merges
//!   and redistributions rewrite the leaf of every interval they move.
//! - A detached interval (allocated, not in the index: the kernel's `RB_CLEAR_NODE` state)
//!   keeps its slot and value; its interval waits in a small side map until it is attached.
//!
//! # What it costs
//! - Insert, remove, attach, detach: O(log n) node visits, each O(L + F) work on arrays that
//!   are in cache once touched. A full leaf first lends to a sibling under the same parent that
//!   has room, the two evened out (B*-tree style); only when neither has room does it split in
//!   half, except when the new interval goes after (before) every other one, when the full leaf
//!   is kept whole and the new one starts a new leaf: ascending or descending inserts then fill
//!   leaves completely. A leaf below a quarter full (an inner node below half full) merges with
//!   or borrows from a sibling.
//! - [`BPlusTree::any_overlap`]: O(1) when the query lies outside [`BPlusTree::span`], else one
//!   pruned descent; [`BPlusTree::overlaps`], [`BPlusTree::count_overlap`] and
//!   [`BPlusTree::for_each_overlap_slot`]: O(log n + k) node visits for k results when the
//!   hits are few per node; none allocates (the walk's stack lives inline, `MAX_DEPTH`).
//!   `count_overlap` counts whole leaf masks and never touches a slot.
//!   [`BPlusTree::gap_around`]: one descent without a stack, for the largest empty interval
//!   around a query that hits nothing (the notifier's start remembers it, so that a run of
//!   stores to one unwatched buffer walks once).
//! - [`BPlusTree::find_overlaps`] (`batch.rs`): the overlaps of a batch of queries, with several
//!   descents in flight so that their cache misses overlap (each prefetches the node it reads
//!   next and hands over to the next); [`Found::hits`] then gives query `i`'s hits as
//!   [`BPlusTree::for_each_overlap_slot`] would. The notifier's `invalidate_many` and the
//!   binding's `overlap_many` use it: 1.5x faster than one query after another at 10^3
//!   intervals, 2.2x at 10^6 (`batch_query_range` in `benches/tree.rs`).
//! - [`BPlusTree::bulk_build`] and [`BPlusTree::from_columns`] (`update.rs`; the second is
//!   `IntervalTree.from_arrays`' path): one radix sort by start, then full nodes level by level,
//!   their arrays allocated in the order that keeps the fewest alive at once (a large build's
//!   time is mostly the first touch of its fresh memory; docs/benchmarks.md).
//! - Memory: [`BPlusTree::NODE_BYTES`] per interval with full nodes (a `bulk_build`, or
//!   sorted inserts): a slot of 8 bytes plus the value (no tag: occupancy is the generation's
//!   parity), a sixteenth of a leaf and a share of the inner nodes; 39 bytes with an 8-byte
//!   value, 31 with none (the Python binding keeps its values apart, at the slot's index).
//!   Random-order inserts leave leaves about 85% full (70% with even splits alone): about 43
//!   bytes per interval with an 8-byte value.
//! - Measured with `cargo bench --bench tree` (criterion, against `coitrees` and `iset` in the
//!   same run); docs/benchmarks.md summarises the ratios, no numbers are pasted here.
//!
//! # Differences from the kernel tree
//! The kernel uses a red-black tree and orders equal starts by insertion; here equal starts come
//! in an order callers must treat as unspecified. Handles replace node pointers: a stale handle
//! (its interval removed, the slot perhaps reused) is detected and refused, never taken for the
//! new interval.
//!
//! # Panics
//! Only on a broken internal invariant (a bug in this module, which
//! [`BPlusTree::check_invariants`] exists to catch) or when the slot arena would exceed
//! `u32::MAX - 1` slots; never because of the intervals, handles or queries a caller passes.

mod batch;
mod check;
mod node;
mod query;
mod slots;
#[cfg(test)]
pub(crate) mod tests;
mod update;

use std::collections::BTreeMap;
use std::fmt;
use std::mem;

use crate::interval::Interval;

pub use batch::Found;
pub(crate) use node::prefetch;
#[cfg(feature = "python")]
pub(crate) use node::prefetch_ptr;
use node::Node;
pub(crate) use node::{run_vectorised, vectorised};
use query::Cursor;
pub use query::{Iter, Overlaps};
use slots::{Entry, Slot, Slots};

/// "None": a free-list end, the parent of the root, the leaf of a detached interval.
const NIL: u32 = u32::MAX;

/// Room for the longest root-to-leaf path of inner nodes. Every node off the leftmost and
/// rightmost paths is at least a quarter full (leaves, so at least 2 intervals) or half full
/// (inner nodes, so at least 4 children), so fewer than 2^32 intervals need at most 19 inner
/// levels.
const MAX_DEPTH: usize = 20;

/// The index used throughout the crate: leaves of 16 intervals, inner nodes of 16 children
/// (the sizes that measured fastest in `benches/tree.rs`; see docs/benchmarks.md).
pub type IntervalTree<V> = BPlusTree<V, 16, 16>;

/// Stable handle of one allocated interval: `(generation << 32) | slot`.
///
/// Slots are reused after [`BPlusTree::remove`] with a new generation, so a stale handle
/// is refused (never silently names a new interval). A slot whose generation is exhausted is
/// retired rather than reused.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Handle(u64);

impl Handle {
    #[inline]
    const fn new(slot: u32, generation: u32) -> Self {
        Self(((generation as u64) << 32) | slot as u64)
    }

    /// The raw bits, for passing the handle across an FFI boundary.
    #[inline]
    pub const fn to_bits(self) -> u64 {
        self.0
    }

    /// The handle whose [`Handle::to_bits`] is `bits`. Any `u64` is accepted: a value that names
    /// no allocated interval is simply refused by every [`BPlusTree`] method.
    #[inline]
    pub const fn from_bits(bits: u64) -> Self {
        Self(bits)
    }

    /// The slot: while the handle is valid, no other allocated interval of its tree has it,
    /// and slots are reused, so they stay below the most intervals the tree has had allocated
    /// at once (plus the rare retired slot). A caller can keep per-interval data in a table
    /// indexed by it, as the Python binding keeps its values.
    #[inline]
    #[allow(
        clippy::cast_possible_truncation,
        reason = "the low 32 bits are the slot"
    )]
    pub const fn slot(self) -> u32 {
        self.0 as u32
    }

    #[inline]
    #[allow(
        clippy::cast_possible_truncation,
        reason = "the high 32 bits are the generation"
    )]
    const fn generation(self) -> u32 {
        (self.0 >> 32) as u32
    }
}

/// A B+-tree interval index with stable [`Handle`]s: leaves of `L` intervals (8..=64), inner
/// nodes of `F` children (8..=32). The crate uses [`IntervalTree`]; other sizes exist for the
/// benchmarks and tests.
///
/// Every method is O(log n) or better except the documented iterations; see the module docs for
/// what the structure is good for and what it costs. Nothing here locks: the caller owns the
/// tree (the notifier keeps it under its mutex).
///
/// ```
/// use mmn_fast::{Interval, IntervalTree};
///
/// let mut tree = IntervalTree::new();
/// let a = tree.insert(Interval::new(0x1000, 0x1fff)?, "a");
/// let b = tree.insert(Interval::new(0x1800, 0x27ff)?, "b");
/// let hits: Vec<_> = tree.overlaps(Interval::new(0x1fff, 0x1fff)?).map(|(_, _, v)| *v).collect();
/// assert_eq!(hits, ["a", "b"]);
/// assert_eq!(tree.remove(a).map(|(_, v)| v), Some("a"));
/// assert_eq!(tree.remove(a), None); // stale
/// assert!(tree.contains(b));
/// # Ok::<(), mmn_fast::Error>(())
/// ```
#[derive(Clone)]
pub struct BPlusTree<V, const L: usize, const F: usize> {
    leaves: Vec<Node<L>>,
    inners: Vec<Node<F>>,
    /// Unused entries of `leaves` and `inners`, reused before the arenas grow.
    free_leaves: Vec<u32>,
    free_inners: Vec<u32>,
    /// The root, an inner node (`NIL` when nothing is attached); `height` inner levels, the
    /// root's at `height` and leaves at 0.
    root: u32,
    height: usize,
    /// `(smallest start, largest last)` of the attached intervals, when any: the O(1) rejection.
    span: (u64, u64),
    /// Attached intervals.
    len: usize,
    /// Handle targets, indexed by slot.
    slots: Slots<V>,
    /// The intervals of detached slots.
    detached: BTreeMap<u32, Interval>,
}

impl<V, const L: usize, const F: usize> Default for BPlusTree<V, L, F> {
    fn default() -> Self {
        Self::new()
    }
}

impl<V: fmt::Debug, const L: usize, const F: usize> fmt::Debug for BPlusTree<V, L, F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_map()
            .entries(self.iter().map(|(h, iv, v)| ((h, iv), v)))
            .finish()
    }
}

impl<V, const L: usize, const F: usize> BPlusTree<V, L, F> {
    /// Bytes per allocated interval, its value included, with full nodes, for memory reports:
    /// its slot, its share of a leaf and its share of the inner node above that leaf.
    pub const NODE_BYTES: usize = mem::size_of::<Slot<V>>()
        + mem::size_of::<Node<L>>().div_ceil(L)
        + mem::size_of::<Node<F>>().div_ceil(L * F);

    /// An empty tree. Allocates nothing until the first insert.
    pub const fn new() -> Self {
        Self {
            leaves: Vec::new(),
            inners: Vec::new(),
            free_leaves: Vec::new(),
            free_inners: Vec::new(),
            root: NIL,
            height: 0,
            span: (u64::MAX, 0),
            len: 0,
            slots: Slots::new(),
            detached: BTreeMap::new(),
        }
    }

    /// An empty tree with room for `n` intervals before the arenas reallocate (with full
    /// leaves).
    pub fn with_capacity(n: usize) -> Self {
        Self {
            slots: Slots::with_capacity(n),
            ..Self::with_node_capacity(n)
        }
    }

    /// An empty tree whose node arenas hold `n` intervals in full nodes without reallocating
    /// (no slots reserved).
    pub(super) fn with_node_capacity(n: usize) -> Self {
        let leaves = n.div_ceil(L);
        Self {
            leaves: Vec::with_capacity(leaves),
            // Full inner nodes: one per `F - 1` leaves, plus at most one partly full a level.
            inners: Vec::with_capacity(leaves.div_ceil(F - 1) + MAX_DEPTH.min(leaves)),
            ..Self::new()
        }
    }

    /// The number of attached intervals (detached ones are not counted).
    #[inline]
    pub const fn len(&self) -> usize {
        self.len
    }

    /// Whether no interval is attached (detached ones may still be allocated).
    #[inline]
    pub const fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Allocate `iv` with `value` and link it into the tree; O(log n).
    ///
    /// The kernel counterpart is `interval_tree_insert`. Equal intervals are all kept, each with
    /// its own handle.
    ///
    /// # Panics
    /// When the arena would exceed `u32::MAX - 1` slots.
    pub fn insert(&mut self, iv: Interval, value: V) -> Handle {
        let handle = self.slots.allocate(value);
        self.link(handle.slot(), iv);
        handle
    }

    /// Allocate `iv` with `value` without linking it: the interval is not counted by
    /// [`len`](Self::len), and no query or iteration finds it until [`attach`](Self::attach).
    /// O(log d) for d detached intervals. This is the kernel's `RB_CLEAR_NODE` state of a
    /// deferred insert.
    ///
    /// # Panics
    /// When the arena would exceed `u32::MAX - 1` slots.
    pub fn insert_detached(&mut self, iv: Interval, value: V) -> Handle {
        let handle = self.slots.allocate(value);
        self.detached.insert(handle.slot(), iv);
        handle
    }

    /// Link the detached interval `h` into the tree; O(log n).
    ///
    /// Returns false (and changes nothing) when `h` is stale, unknown or already attached.
    pub fn attach(&mut self, h: Handle) -> bool {
        let Some(slot) = self.resolve(h) else {
            return false;
        };
        let Some(iv) = self.detached.remove(&slot) else {
            return false;
        };
        self.link(slot, iv);
        true
    }

    /// Unlink the attached interval `h` from the tree but keep it allocated (its handle,
    /// interval and value stay valid); O(log n).
    ///
    /// Returns false (and changes nothing) when `h` is stale, unknown or already detached.
    pub fn detach(&mut self, h: Handle) -> bool {
        match self.resolve(h) {
            Some(slot) if self.entry(slot).leaf != NIL => {
                let iv = self.unlink(slot);
                self.detached.insert(slot, iv);
                true
            }
            _ => false,
        }
    }

    /// Whether `h` names an allocated interval that is linked into the tree.
    #[inline]
    pub fn is_attached(&self, h: Handle) -> bool {
        self.resolve(h)
            .is_some_and(|slot| self.entry(slot).leaf != NIL)
    }

    /// Whether `h` names an allocated interval, attached or detached.
    #[inline]
    pub fn contains(&self, h: Handle) -> bool {
        self.resolve(h).is_some()
    }

    /// Unlink `h` if it is attached, free its slot and return its interval and value; O(log n).
    ///
    /// The kernel counterpart is `interval_tree_remove`. Returns `None` for a stale or unknown
    /// handle; after a `Some`, `h` is stale for good.
    pub fn remove(&mut self, h: Handle) -> Option<(Interval, V)> {
        let slot = self.resolve(h)?;
        let iv = if self.entry(slot).leaf == NIL {
            self.detached
                .remove(&slot)
                .unwrap_or_else(|| corrupted(slot))
        } else {
            self.unlink(slot)
        };
        Some((iv, self.slots.free(slot)))
    }

    /// The handle of the interval in `slot` (see [`Handle::slot`]), if one occupies it: for a
    /// caller that found the interval by its slot ([`Overlaps::fill`]).
    #[inline]
    pub fn slot_handle(&self, slot: u32) -> Option<Handle> {
        self.slots
            .generation(slot)
            .map(|generation| Handle::new(slot, generation))
    }

    /// The interval and value of `h`, attached or detached; `None` for a stale or unknown handle.
    #[inline]
    pub fn get(&self, h: Handle) -> Option<(Interval, &V)> {
        let slot = self.resolve(h)?;
        Some((self.interval(slot), &self.entry(slot).value))
    }

    /// The interval and mutable value of `h`; `None` for a stale or unknown handle.
    #[inline]
    pub fn get_mut(&mut self, h: Handle) -> Option<(Interval, &mut V)> {
        let slot = self.resolve(h)?;
        let iv = self.interval(slot);
        Some((iv, &mut self.entry_mut(slot).value))
    }

    /// The mutable value of `h` alone, without looking up its interval (which takes a scan of
    /// its leaf); `None` for a stale or unknown handle.
    #[inline]
    pub fn value_mut(&mut self, h: Handle) -> Option<&mut V> {
        let slot = self.resolve(h)?;
        Some(&mut self.entry_mut(slot).value)
    }

    /// Whether any attached interval overlaps `q`.
    ///
    /// O(1) when `q` lies outside [`span`](Self::span) (the kernel's `iter_first` rejection),
    /// else one pruned descent; no allocation.
    pub fn any_overlap(&self, q: Interval) -> bool {
        vectorised! {
            self.cursor(q.start(), q.last())
                .next_leaf(&self.inners, &self.leaves)
                .is_some()
        }
    }

    /// The largest interval around `q` that overlaps no attached interval: from one past the
    /// largest last of the intervals starting at or before `q`'s last, to one before the first
    /// start after it; `None` when `q` overlaps an interval.
    ///
    /// One descent, along the path of `q`'s last: at each level the children before the path
    /// child start no later than `q`'s last, so their largest last bounds the gap from below
    /// (or, reaching `q`, is a hit), and the child after it bounds the gap from above. A range
    /// inside the answer overlaps nothing either, until an interval overlapping it is attached.
    ///
    /// ```
    /// use mmn_fast::{Interval, IntervalTree};
    ///
    /// # fn main() -> Result<(), mmn_fast::Error> {
    /// let mut tree = IntervalTree::new();
    /// tree.insert(Interval::new(0x1000, 0x1fff)?, "low");
    /// tree.insert(Interval::new(0x9000, 0x9fff)?, "high");
    /// let store = Interval::from_start_length(0x4000, 8)?;
    /// assert_eq!(tree.gap_around(store), Some(Interval::new(0x2000, 0x8fff)?));
    /// assert_eq!(tree.gap_around(Interval::new(0x1ff8, 0x2007)?), None); // hits "low"
    /// # Ok(())
    /// # }
    /// ```
    pub fn gap_around(&self, q: Interval) -> Option<Interval> {
        let (qs, ql) = (q.start(), q.last());
        if self.root == NIL {
            return Interval::new(0, u64::MAX).ok();
        }
        let (lo, hi) = vectorised! {
            // `lo`: one past the largest last seen so far; `hi`: the smallest start after `ql`,
            // less one.
            let (mut lo, mut hi) = (0, u64::MAX);
            // The lasts of entries starting at or before `ql`: none may reach `qs` (else
            // `None`), and the largest bounds the gap from below.
            let mut before = |lasts: &[u64]| {
                if let Some(last) = lasts.iter().copied().max() {
                    if last >= qs {
                        return None;
                    }
                    lo = lo.max(last + 1); // last < qs: no overflow
                }
                Some(())
            };
            // A node's live keys and how many are at or before `ql`: the next one bounds the
            // gap from above.
            let mut after = |keys: &[u64], upto: usize| {
                if let Some(&next) = keys.get(upto) {
                    hi = hi.min(next - 1); // next > ql >= 0
                }
            };
            let mut node = self.root;
            for _ in 0..self.height {
                let n = &self.inners[node as usize];
                let upto = n.upper_bound(ql);
                after(&n.keys[..n.len()], upto);
                // The last child starting at or before `ql` is the path; when nothing in it
                // reaches `qs`, nothing in it starts after `ql` either (a start after `ql` is
                // at least `qs`), so this level settles both bounds, as the walk stops here.
                let Some(path) = upto.checked_sub(1) else {
                    return Some((lo, hi)); // every interval starts after `ql` (at the root only)
                };
                if n.lasts[path] < qs {
                    before(&n.lasts[..upto])?;
                    return Some((lo, hi));
                }
                before(&n.lasts[..path])?;
                node = n.ids[path];
            }
            let leaf = &self.leaves[node as usize];
            let upto = leaf.upper_bound(ql);
            after(&leaf.keys[..leaf.len()], upto);
            before(&leaf.lasts[..upto])?;
            Some((lo, hi))
        }?;
        Interval::new(lo, hi).ok()
    }

    /// The attached intervals that overlap `q`, in ascending start order (ties in unspecified
    /// order), as `(handle, interval, &value)`.
    ///
    /// The kernel counterpart is the `interval_tree_iter_first` / `interval_tree_iter_next`
    /// loop. O(log n + k) node visits typically; no heap allocation.
    #[inline]
    pub fn overlaps(&self, q: Interval) -> Overlaps<'_, V, L, F> {
        Overlaps::new(self, self.cursor(q.start(), q.last()))
    }

    /// Call `f(slot, interval)` for each attached interval overlapping `q`, in the order of
    /// [`overlaps`](Self::overlaps); `slot` is the [`Handle::slot`] of the interval's handle.
    /// The walk reads the nodes alone, never the slot arena: one memory access less per hit
    /// for a caller that keeps what a hit needs in its own array indexed by slot (the
    /// notifier's native subscriptions), and reads the rest, if it must, with
    /// [`slot_entry`](Self::slot_entry). `f` cannot reach the tree, so its shape is stable
    /// throughout; if `f` panics the tree stays valid.
    pub fn for_each_overlap_slot(&self, q: Interval, mut f: impl FnMut(u32, Interval)) {
        vectorised! {
            let mut cursor = self.cursor(q.start(), q.last());
            while let Some((leaf, mut mask)) = cursor.next_leaf(&self.inners, &self.leaves) {
                let node = &self.leaves[leaf as usize];
                while mask != 0 {
                    let pos = mask.trailing_zeros() as usize;
                    mask &= mask - 1;
                    f(node.ids[pos], leaf_interval(node, pos));
                }
            }
        }
    }

    /// The handle and value of the interval in `slot`, which a walk by slot
    /// ([`for_each_overlap_slot`](Self::for_each_overlap_slot), [`Found::hits`]) reported
    /// with no insert, remove, attach or detach since.
    ///
    /// # Panics
    /// When `slot` is vacant: a stale slot, from before a change to the tree (no memory
    /// unsafety; reported as corruption).
    #[inline]
    pub fn slot_entry(&self, slot: u32) -> (Handle, &V) {
        let entry = self.entry(slot);
        (Handle::new(slot, entry.generation), &entry.value)
    }

    /// [`slot_entry`](Self::slot_entry) with the value mutable.
    ///
    /// # Panics
    /// As [`slot_entry`](Self::slot_entry).
    #[inline]
    pub fn slot_entry_mut(&mut self, slot: u32) -> (Handle, &mut V) {
        let entry = self.entry_mut(slot);
        (Handle::new(slot, entry.generation), &mut entry.value)
    }

    /// Start loading the entry of `slot` (any index will do: out of range, nothing happens),
    /// for a caller about to read or write several slots in turn.
    #[inline]
    pub fn prefetch_slot(&self, slot: u32) {
        self.slots.prefetch(slot);
    }

    /// The number of attached intervals overlapping `q`: the walk of
    /// [`overlaps`](Self::overlaps), counting each leaf's hits at once, touching no value.
    pub fn count_overlap(&self, q: Interval) -> usize {
        vectorised! {
            let mut cursor = self.cursor(q.start(), q.last());
            let mut count = 0;
            while let Some((_, mask)) = cursor.next_leaf(&self.inners, &self.leaves) {
                count += mask.count_ones() as usize;
            }
            count
        }
    }

    /// Every attached interval in ascending start order (ties in unspecified order); O(n)
    /// in all, no heap allocation.
    pub fn iter(&self) -> Iter<'_, V, L, F> {
        Iter::new(self.overlaps_all(), self.len)
    }

    /// `[smallest start, largest last]` over the attached intervals; `None` when empty. O(1).
    pub fn span(&self) -> Option<Interval> {
        if self.root == NIL {
            return None;
        }
        Interval::new(self.span.0, self.span.1).ok()
    }

    /// Empty the tree, attached and detached intervals alike, and return every value (in slot
    /// order) so that the caller can drop them outside its lock.
    ///
    /// Every handle becomes stale. The slots stay allocated, vacant with bumped generations, so
    /// that no old handle can name a later interval; drop the tree to release the memory.
    pub fn drain_values(&mut self) -> Vec<V> {
        let values = self.slots.drain();
        self.detached.clear();
        self.clear_index();
        values
    }

    // ---- private: slots and handles ----

    /// The slot `h` names, if it is occupied by the generation `h` carries.
    #[inline]
    fn resolve(&self, h: Handle) -> Option<u32> {
        self.slots.resolve(h)
    }

    #[inline]
    fn entry(&self, slot: u32) -> &Entry<V> {
        self.slots.entry(slot)
    }

    #[inline]
    fn entry_mut(&mut self, slot: u32) -> &mut Entry<V> {
        self.slots.entry_mut(slot)
    }

    /// The interval of the occupied `slot`, from its leaf or the detached map.
    fn interval(&self, slot: u32) -> Interval {
        let leaf = self.entry(slot).leaf;
        if leaf == NIL {
            return *self.detached.get(&slot).unwrap_or_else(|| corrupted(slot));
        }
        let node = &self.leaves[leaf as usize];
        let pos = node.position(slot).unwrap_or_else(|| corrupted(slot));
        leaf_interval(node, pos)
    }

    /// A query walk over `[qs, ql]`, empty when the span rules out any overlap.
    #[inline]
    fn cursor(&self, qs: u64, ql: u64) -> Cursor {
        Cursor::new(self.root_for(qs, ql), qs, ql)
    }

    /// `(root, height)` for a walk over `[qs, ql]`; `None` when the span rules out any overlap.
    #[inline]
    fn root_for(&self, qs: u64, ql: u64) -> Option<(u32, usize)> {
        let inside = self.root != NIL && self.span.1 >= qs && self.span.0 <= ql;
        inside.then_some((self.root, self.height))
    }

    #[inline]
    fn overlaps_all(&self) -> Overlaps<'_, V, L, F> {
        Overlaps::new(self, self.cursor(0, u64::MAX))
    }
}

/// The interval at `pos` of a leaf (live, so `start <= last`).
#[inline]
fn leaf_interval<const L: usize>(leaf: &Node<L>, pos: usize) -> Interval {
    Interval::new(leaf.keys[pos], leaf.lasts[pos]).unwrap_or_else(|_| corrupted(leaf.ids[pos]))
}

/// Report a broken internal invariant: a link or free-list entry naming the wrong kind of slot.
#[cold]
#[inline(never)]
#[track_caller]
fn corrupted(slot: u32) -> ! {
    panic!("IntervalTree invariant broken at slot {slot} (a bug in mmn_fast::tree)")
}
