//! The augmented interval tree: closed `[start, last]` intervals in an arena AVL tree keyed by
//! start, each node caching the largest `last` of its subtree.
//!
//! # What it is for
//! One address space's interval subscriptions: "which subscriptions overlap `[start, last]`?"
//! answered in ascending start order, with inserts and removes between queries, and nodes that
//! can be unlinked from the tree but kept allocated (the deferred inserts and removes of the
//! notifier protocol). It plays the role of the kernel's `interval_tree_insert`,
//! `interval_tree_remove`, `interval_tree_iter_first` and `interval_tree_iter_next` (SPEC 5.1).
//!
//! # What it costs
//! - Insert, remove, attach, detach: O(log n). A [`Handle`] finds its slot in O(1); unlinking
//!   descends by the node's unique key `(start, slot)` from the root, so no parent links are stored.
//! - [`IntervalTree::any_overlap`]: O(1) when the query lies outside [`IntervalTree::span`],
//!   else O(log n); no allocation.
//! - [`IntervalTree::overlaps`], [`IntervalTree::count_overlap`],
//!   [`IntervalTree::for_each_overlap_mut`]: O(log n + k) for k results in the common case,
//!   O((k + 1) log n) in the worst case (as the kernel's `iter_next`); never allocate (the
//!   traversal stack lives inline: an AVL tree of fewer than 2^32 nodes is at most 45 high).
//! - Memory: [`IntervalTree::NODE_BYTES`] bytes per allocated interval (49 with an 8-byte
//!   value), split over three parallel arenas indexed by slot: the *hot* part a search reads
//!   (`start`, `last`, subtree max, two `u32` children: 32 bytes, 32-aligned, so two nodes per
//!   cache line and none straddling two), the height (1 byte, read only by updates) and the
//!   *cold* part (generation, link state, value: 16 bytes). A query walks the hot arena only and
//!   touches the cold part of each result for its handle and value; `count_overlap` and
//!   `any_overlap` never do. The walk prefetches the right child of each node it stacks (and
//!   `any_overlap` the right child of each node it passes), so that the load overlaps the walk
//!   down the left side. Removed slots are reused with a bumped generation.
//! - Measured with `cargo bench --bench tree` (criterion, against `coitrees` and `iset` in
//!   the same run); no numbers are pasted here.
//!
//! # Differences from the kernel tree
//! The kernel uses a red-black tree and orders equal starts by insertion; this tree is an AVL
//! tree (lower height, cheaper queries, slightly dearer updates) and orders equal starts by slot
//! index, which callers must treat as unspecified. Handles replace node pointers: a stale handle
//! (its interval removed, the slot perhaps reused) is detected and refused, never taken for the
//! new interval.
//!
//! # Panics
//! Only on a broken internal invariant (a bug in this module, which [`IntervalTree::check_invariants`]
//! exists to catch) or when the arena would exceed `u32::MAX - 1` slots; never because of the
//! intervals, handles or queries a caller passes.

use std::cmp::{max, Ordering};
use std::fmt;
use std::iter::FusedIterator;
use std::mem;

use crate::interval::Interval;

/// "No node": the child of a leaf, the root of an empty tree, the end of the free list.
const NIL: u32 = u32::MAX;

/// Room for the longest root-to-leaf path. An AVL tree of height h holds at least
/// `F(h + 2) - 1` nodes (Fibonacci), and `F(48) - 1 > u32::MAX`, so fewer than 2^32 nodes give a
/// height of at most 45.
const MAX_DEPTH: usize = 48;

/// Stable handle of one allocated interval: `(generation << 32) | slot`.
///
/// Slots are reused after [`IntervalTree::remove`] with a bumped generation, so a stale handle
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
    /// no allocated interval is simply refused by every [`IntervalTree`] method.
    #[inline]
    pub const fn from_bits(bits: u64) -> Self {
        Self(bits)
    }

    #[inline]
    #[allow(
        clippy::cast_possible_truncation,
        reason = "the low 32 bits are the slot"
    )]
    const fn slot(self) -> u32 {
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

/// Whether an occupied slot is linked into the tree.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Link {
    /// Allocated but unreachable from the root (the kernel's `RB_CLEAR_NODE` state).
    Detached,
    /// Reachable from the root.
    Attached,
}

/// The search-hot part of a slot: all that a query reads. 32 bytes and 32-aligned, so two share
/// a cache line and none straddles two. Meaningless while the slot is vacant; while detached,
/// `left == right == NIL` and `max == iv.last()`.
#[derive(Clone, Copy)]
#[repr(C, align(32))]
struct Hot {
    iv: Interval,
    /// The largest `last` in the subtree rooted here (the augmentation).
    max: u64,
    left: u32,
    right: u32,
}

impl Hot {
    const fn detached(iv: Interval) -> Self {
        Self {
            iv,
            max: iv.last(),
            left: NIL,
            right: NIL,
        }
    }
}

/// The cold part of an occupied slot: what handles, updates and results read.
#[derive(Clone)]
struct Entry<V> {
    generation: u32,
    link: Link,
    value: V,
}

/// The cold part of an arena slot. `Link` leaves 254 spare values in its byte, which is where
/// the discriminant goes, so with an 8-byte value this is 16 bytes.
#[derive(Clone)]
enum Slot<V> {
    Occupied(Entry<V>),
    /// Free. In the free list unless `generation == u32::MAX` (then retired for good).
    Vacant {
        generation: u32,
        next_free: u32,
    },
}

/// The traversal stack: node indices on one root-to-leaf path, inline.
#[derive(Clone)]
struct Stack {
    items: [u32; MAX_DEPTH],
    len: usize,
}

impl Stack {
    const fn new() -> Self {
        Self {
            items: [NIL; MAX_DEPTH],
            len: 0,
        }
    }

    #[inline]
    fn push(&mut self, i: u32) {
        debug_assert!(self.len < MAX_DEPTH, "AVL height bound exceeded");
        self.items[self.len] = i;
        self.len += 1;
    }

    #[inline]
    fn pop(&mut self) -> Option<u32> {
        self.len = self.len.checked_sub(1)?;
        Some(self.items[self.len])
    }

    #[inline]
    fn last(&self) -> Option<u32> {
        self.len.checked_sub(1).map(|top| self.items[top])
    }

    #[inline]
    fn as_slice(&self) -> &[u32] {
        &self.items[..self.len]
    }
}

/// In-order walk over the attached nodes that overlap `[qs, ql]`, pruned by the augmentation.
/// It reads only the hot arena.
///
/// Loop invariant: the stack holds, bottom to top, nodes in descending key order, each starting
/// at or before `ql`; every overlapping node not yet returned is on the stack or in the right
/// subtree of a node on it. A subtree whose `max < qs` is never entered, and a node starting
/// after `ql` is passed through (to its left child) but never stacked: it and everything after
/// it in order start too late.
#[derive(Clone)]
struct Cursor {
    stack: Stack,
    qs: u64,
    ql: u64,
}

impl Cursor {
    fn new<V>(tree: &IntervalTree<V>, qs: u64, ql: u64) -> Self {
        let mut cursor = Self {
            stack: Stack::new(),
            qs,
            ql,
        };
        if tree.may_overlap(qs, ql) {
            cursor.descend(&tree.hot, tree.root);
        }
        cursor
    }

    /// Stack `i` and its left spine, stopping at the first subtree that ends before `qs`.
    #[inline]
    fn descend(&mut self, hot: &[Hot], mut i: u32) {
        while i != NIL {
            let n = &hot[i as usize];
            if n.max < self.qs {
                break;
            }
            if n.iv.start() <= self.ql {
                self.stack.push(i);
                // The right child is visited when `i` is popped: start its load now, in the
                // shadow of the walk down the left spine.
                prefetch(hot, n.right);
            }
            i = n.left;
        }
    }

    /// The slot of the next overlapping node, in ascending key order.
    #[inline]
    fn next(&mut self, hot: &[Hot]) -> Option<u32> {
        while let Some(i) = self.stack.pop() {
            let n = &hot[i as usize];
            self.descend(hot, n.right);
            if n.iv.last() >= self.qs {
                return Some(i);
            }
        }
        None
    }
}

/// Hint the CPU to start loading the hot part of slot `i` (nothing for `NIL`); no effect on
/// results.
#[inline]
fn prefetch(hot: &[Hot], i: u32) {
    #[cfg(target_arch = "x86_64")]
    if let Some(n) = hot.get(i as usize) {
        const { assert!(cfg!(target_feature = "sse")) };
        // SAFETY: `_mm_prefetch` needs only SSE, part of the x86_64 baseline; a prefetch is a
        // hint that never faults, and the pointer comes from a live reference anyway.
        unsafe {
            std::arch::x86_64::_mm_prefetch::<{ std::arch::x86_64::_MM_HINT_T0 }>(
                std::ptr::from_ref(n).cast::<i8>(),
            );
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = (hot, i);
}

/// An augmented AVL interval tree in an arena, with stable [`Handle`]s.
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
pub struct IntervalTree<V> {
    /// The search-hot part of every slot, indexed by slot (see [`Hot`]).
    hot: Vec<Hot>,
    /// The AVL height of every slot: nodes on the longest path down from it, itself included
    /// (a leaf or a detached node has 1). Apart from `hot`, as only updates read it.
    heights: Vec<u8>,
    /// The cold part of every slot: occupancy, generation, link state and value.
    slots: Vec<Slot<V>>,
    root: u32,
    /// The attached node with the smallest key, for the O(1) rejection and `span`.
    leftmost: u32,
    free_head: u32,
    /// Attached nodes.
    len: usize,
}

impl<V> Default for IntervalTree<V> {
    fn default() -> Self {
        Self::new()
    }
}

impl<V: fmt::Debug> fmt::Debug for IntervalTree<V> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_map()
            .entries(self.iter().map(|(h, iv, v)| ((h, iv), v)))
            .finish()
    }
}

impl<V> IntervalTree<V> {
    /// Bytes of one arena slot (one allocated interval, its value included), for memory reports:
    /// its hot part, its height and its cold part.
    pub const NODE_BYTES: usize =
        mem::size_of::<Hot>() + mem::size_of::<u8>() + mem::size_of::<Slot<V>>();

    /// An empty tree. Allocates nothing until the first insert.
    pub const fn new() -> Self {
        Self {
            hot: Vec::new(),
            heights: Vec::new(),
            slots: Vec::new(),
            root: NIL,
            leftmost: NIL,
            free_head: NIL,
            len: 0,
        }
    }

    /// An empty tree with room for `n` intervals before the arena reallocates.
    pub fn with_capacity(n: usize) -> Self {
        Self {
            hot: Vec::with_capacity(n),
            heights: Vec::with_capacity(n),
            slots: Vec::with_capacity(n),
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
        let handle = self.insert_detached(iv, value);
        self.link(handle.slot());
        handle
    }

    /// Allocate `iv` with `value` without linking it: the node is not counted by
    /// [`len`](Self::len), and no query or iteration finds it until [`attach`](Self::attach).
    /// O(1) amortized. This is the kernel's `RB_CLEAR_NODE` state of a deferred insert.
    ///
    /// # Panics
    /// When the arena would exceed `u32::MAX - 1` slots.
    pub fn insert_detached(&mut self, iv: Interval, value: V) -> Handle {
        let mut entry = Entry {
            generation: 0,
            link: Link::Detached,
            value,
        };
        let slot = if self.free_head == NIL {
            let slot = u32::try_from(self.slots.len()).ok().filter(|&s| s != NIL);
            let Some(slot) = slot else {
                panic!("IntervalTree: more than u32::MAX - 1 slots");
            };
            self.hot.push(Hot::detached(iv));
            self.heights.push(1);
            self.slots.push(Slot::Occupied(entry));
            slot
        } else {
            let slot = self.free_head;
            let Slot::Vacant {
                generation,
                next_free,
            } = self.slots[slot as usize]
            else {
                corrupted(slot)
            };
            self.free_head = next_free;
            entry.generation = generation;
            self.hot[slot as usize] = Hot::detached(iv);
            self.heights[slot as usize] = 1;
            self.slots[slot as usize] = Slot::Occupied(entry);
            slot
        };
        Handle::new(slot, self.entry(slot).generation)
    }

    /// Link the detached node `h` into the tree; O(log n).
    ///
    /// Returns false (and changes nothing) when `h` is stale, unknown or already attached.
    pub fn attach(&mut self, h: Handle) -> bool {
        match self.resolve(h) {
            Some(slot) if self.entry(slot).link == Link::Detached => {
                self.link(slot);
                true
            }
            _ => false,
        }
    }

    /// Unlink the attached node `h` from the tree but keep it allocated (its handle, interval
    /// and value stay valid); O(log n).
    ///
    /// Returns false (and changes nothing) when `h` is stale, unknown or already detached.
    pub fn detach(&mut self, h: Handle) -> bool {
        match self.resolve(h) {
            Some(slot) if self.entry(slot).link == Link::Attached => {
                self.unlink(slot);
                true
            }
            _ => false,
        }
    }

    /// Whether `h` names an allocated node that is linked into the tree.
    #[inline]
    pub fn is_attached(&self, h: Handle) -> bool {
        self.resolve(h)
            .is_some_and(|slot| self.entry(slot).link == Link::Attached)
    }

    /// Whether `h` names an allocated node, attached or detached.
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
        if self.entry(slot).link == Link::Attached {
            self.unlink(slot);
        }
        let generation = h.generation();
        let vacant = if generation == u32::MAX {
            // Exhausted: retire the slot rather than let a handle come back to life.
            Slot::Vacant {
                generation,
                next_free: NIL,
            }
        } else {
            let next_free = mem::replace(&mut self.free_head, slot);
            Slot::Vacant {
                generation: generation + 1,
                next_free,
            }
        };
        match mem::replace(&mut self.slots[slot as usize], vacant) {
            Slot::Occupied(entry) => Some((self.hot(slot).iv, entry.value)),
            Slot::Vacant { .. } => corrupted(slot),
        }
    }

    /// The interval and value of `h`, attached or detached; `None` for a stale or unknown handle.
    #[inline]
    pub fn get(&self, h: Handle) -> Option<(Interval, &V)> {
        let slot = self.resolve(h)?;
        Some((self.hot(slot).iv, &self.entry(slot).value))
    }

    /// The interval and mutable value of `h`; `None` for a stale or unknown handle.
    #[inline]
    pub fn get_mut(&mut self, h: Handle) -> Option<(Interval, &mut V)> {
        let slot = self.resolve(h)?;
        let iv = self.hot(slot).iv;
        Some((iv, &mut self.entry_mut(slot).value))
    }

    /// Whether any attached interval overlaps `q`.
    ///
    /// O(1) when `q` lies outside [`span`](Self::span) (the kernel's `iter_first` rejection),
    /// else O(log n) along one path; no allocation.
    pub fn any_overlap(&self, q: Interval) -> bool {
        let (qs, ql) = (q.start(), q.last());
        if !self.may_overlap(qs, ql) {
            return false;
        }
        // Loop invariant: the subtree at `i` has max >= qs, and if any node overlaps `q`, one
        // in this subtree does.
        let mut i = self.root;
        while i != NIL {
            let n = self.hot(i);
            // The next node is one of the two children: load the right one while the left
            // one's max decides.
            prefetch(&self.hot, n.right);
            if n.left != NIL && self.hot(n.left).max >= qs {
                // Some node on the left ends late enough; if it starts too late, so does
                // everything from here rightwards.
                i = n.left;
                continue;
            }
            if n.iv.start() > ql {
                return false;
            }
            if n.iv.last() >= qs {
                return true;
            }
            i = n.right;
        }
        false
    }

    /// The attached intervals that overlap `q`, in ascending start order (ties in unspecified
    /// order), as `(handle, interval, &value)`.
    ///
    /// The kernel counterpart is the `interval_tree_iter_first` / `interval_tree_iter_next`
    /// loop. O(log n + k) typically, O((k + 1) log n) worst case; no heap allocation.
    #[inline]
    pub fn overlaps(&self, q: Interval) -> Overlaps<'_, V> {
        Overlaps {
            tree: self,
            cursor: Cursor::new(self, q.start(), q.last()),
        }
    }

    /// Call `f(handle, interval, &mut value)` for each attached interval overlapping `q`, in the
    /// order of [`overlaps`](Self::overlaps). `f` cannot reach the tree, so its shape is stable
    /// throughout; if `f` panics the tree stays valid.
    pub fn for_each_overlap_mut(
        &mut self,
        q: Interval,
        mut f: impl FnMut(Handle, Interval, &mut V),
    ) {
        let mut cursor = Cursor::new(self, q.start(), q.last());
        while let Some(slot) = cursor.next(&self.hot) {
            let iv = self.hot(slot).iv;
            let entry = self.entry_mut(slot);
            f(Handle::new(slot, entry.generation), iv, &mut entry.value);
        }
    }

    /// The number of attached intervals overlapping `q`: the walk of
    /// [`overlaps`](Self::overlaps) over the hot arena only, touching no value.
    pub fn count_overlap(&self, q: Interval) -> usize {
        let mut cursor = Cursor::new(self, q.start(), q.last());
        let mut count = 0;
        while cursor.next(&self.hot).is_some() {
            count += 1;
        }
        count
    }

    /// Every attached interval in ascending start order (ties in unspecified order); O(n)
    /// in all, no heap allocation.
    pub fn iter(&self) -> Iter<'_, V> {
        Iter {
            tree: self,
            cursor: Cursor::new(self, 0, u64::MAX),
            remaining: self.len,
        }
    }

    /// A tree holding `items`, all attached, built balanced in O(n log n) (a sort, then an O(n)
    /// build). The handle of item `i` is `Handle::from_bits(i as u64)`: slot `i`, generation 0,
    /// in input order.
    ///
    /// # Panics
    /// When `items` has `u32::MAX` entries or more.
    pub fn bulk_build(items: Vec<(Interval, V)>) -> Self {
        let Some(n) = u32::try_from(items.len()).ok().filter(|&n| n != NIL) else {
            panic!("IntervalTree: more than u32::MAX - 1 slots");
        };
        let mut keys: Vec<(u64, u32)> = items
            .iter()
            .zip(0..n)
            .map(|((iv, _), i)| (iv.start(), i))
            .collect();
        keys.sort_unstable();
        let order: Vec<u32> = keys.into_iter().map(|(_, i)| i).collect();
        let hot = items.iter().map(|(iv, _)| Hot::detached(*iv)).collect();
        let slots = items
            .into_iter()
            .map(|(_, value)| {
                Slot::Occupied(Entry {
                    generation: 0,
                    link: Link::Attached,
                    value,
                })
            })
            .collect();
        let mut tree = Self {
            hot,
            heights: vec![1; order.len()],
            slots,
            root: NIL,
            leftmost: NIL,
            free_head: NIL,
            len: order.len(),
        };
        tree.root = tree.build_balanced(&order);
        tree.leftmost = order.first().copied().unwrap_or(NIL);
        debug_assert!(tree.check_invariants().is_ok());
        tree
    }

    /// Empty the tree, attached and detached nodes alike, and return every value (in slot
    /// order) so that the caller can drop them outside its lock.
    ///
    /// Every handle becomes stale. The slots stay allocated, vacant with bumped generations, so
    /// that no old handle can name a later interval; drop the tree to release the memory.
    pub fn drain_values(&mut self) -> Vec<V> {
        let mut values = Vec::with_capacity(self.slots.len());
        self.free_head = NIL;
        // Backwards, so that the rebuilt free list hands out low slots first.
        for (i, entry) in self.slots.iter_mut().enumerate().rev() {
            let slot = u32::try_from(i).unwrap_or(NIL);
            let (generation, reusable) = match entry {
                Slot::Occupied(e) => (e.generation.saturating_add(1), e.generation != u32::MAX),
                Slot::Vacant { generation, .. } => (*generation, *generation != u32::MAX),
            };
            let next_free = if reusable {
                mem::replace(&mut self.free_head, slot)
            } else {
                NIL
            };
            if let Slot::Occupied(e) = mem::replace(
                entry,
                Slot::Vacant {
                    generation,
                    next_free,
                },
            ) {
                values.push(e.value);
            }
        }
        values.reverse();
        self.root = NIL;
        self.leftmost = NIL;
        self.len = 0;
        values
    }

    /// `[smallest start, largest last]` over the attached intervals; `None` when empty. O(1).
    pub fn span(&self) -> Option<Interval> {
        if self.root == NIL {
            return None;
        }
        Interval::new(self.hot(self.leftmost).iv.start(), self.hot(self.root).max).ok()
    }

    /// Check every structural invariant; O(n) time and memory. For tests and debug builds.
    ///
    /// Checks: the three arenas have one entry per slot; links stay in the arena and reach only
    /// occupied, attached slots, with no node reached twice; strictly ascending `(start, slot)`
    /// keys in order; every node's `max` and `height`; AVL balance; `len`; the leftmost cache;
    /// detached nodes unreachable and reset; the free list (vacant slots only, no cycle, every
    /// vacant slot on it or retired).
    ///
    /// # Errors
    /// A description of the first violation found.
    pub fn check_invariants(&self) -> Result<(), String> {
        if self.hot.len() != self.slots.len() || self.heights.len() != self.slots.len() {
            return Err(format!(
                "arenas disagree: {} hot, {} heights, {} slots",
                self.hot.len(),
                self.heights.len(),
                self.slots.len()
            ));
        }
        // One mark per slot: 1 reached from the root, 2 on the free list.
        let mut marks = vec![0u8; self.slots.len()];
        let (_, _, reached) = self.check_subtree(self.root, 1, None, None, &mut marks)?;
        if reached != self.len {
            return Err(format!(
                "len is {} but {reached} nodes are reachable",
                self.len
            ));
        }
        let first = self.leftmost_of(self.root);
        if self.leftmost != first {
            return Err(format!(
                "leftmost cache is {} but the first node is {first}",
                self.leftmost
            ));
        }
        let mut i = self.free_head;
        while i != NIL {
            match self.slots.get(i as usize) {
                Some(Slot::Vacant { next_free, .. }) => {
                    if mem::replace(&mut marks[i as usize], 2) == 2 {
                        return Err(format!("free list cycles at slot {i}"));
                    }
                    i = *next_free;
                }
                Some(Slot::Occupied(_)) => {
                    return Err(format!("occupied slot {i} on the free list"))
                }
                None => return Err(format!("free list reaches slot {i} beyond the arena")),
            }
        }
        for (i, ((slot, mark), (h, &height))) in self
            .slots
            .iter()
            .zip(marks)
            .zip(self.hot.iter().zip(&self.heights))
            .enumerate()
        {
            match slot {
                Slot::Occupied(e) if e.link == Link::Attached && mark != 1 => {
                    return Err(format!("attached slot {i} unreachable"));
                }
                Slot::Occupied(e)
                    if e.link == Link::Detached
                        && (h.left, h.right, height, h.max) != (NIL, NIL, 1, h.iv.last()) =>
                {
                    return Err(format!("detached slot {i} keeps tree links"));
                }
                Slot::Vacant { generation, .. } if mark != 2 && *generation != u32::MAX => {
                    return Err(format!("vacant slot {i} neither free nor retired"));
                }
                _ => {}
            }
        }
        Ok(())
    }

    /// Check the subtree at `i`, `depth` deep, whose keys must lie strictly between `low` and
    /// `high`; returns its height, max and node count.
    fn check_subtree(
        &self,
        i: u32,
        depth: usize,
        low: Option<(u64, u32)>,
        high: Option<(u64, u32)>,
        marks: &mut [u8],
    ) -> Result<(u8, u64, usize), String> {
        if i == NIL {
            return Ok((0, 0, 0));
        }
        if depth > MAX_DEPTH {
            return Err(format!("slot {i} lies deeper than an AVL tree can reach"));
        }
        let e = match self.slots.get(i as usize) {
            Some(Slot::Occupied(e)) => e,
            Some(Slot::Vacant { .. }) => return Err(format!("link to vacant slot {i}")),
            None => return Err(format!("link to slot {i} beyond the arena")),
        };
        if mem::replace(&mut marks[i as usize], 1) == 1 {
            return Err(format!("slot {i} reached twice"));
        }
        if e.link != Link::Attached {
            return Err(format!("detached slot {i} reachable from the root"));
        }
        let (n, height) = (self.hot(i), self.heights[i as usize]);
        let key = (n.iv.start(), i);
        if low.is_some_and(|low| key <= low) || high.is_some_and(|high| key >= high) {
            return Err(format!(
                "slot {i} with key {key:?} out of order between {low:?} and {high:?}"
            ));
        }
        let (hl, ml, cl) = self.check_subtree(n.left, depth + 1, low, Some(key), marks)?;
        let (hr, mr, cr) = self.check_subtree(n.right, depth + 1, Some(key), high, marks)?;
        if hl.abs_diff(hr) > 1 {
            return Err(format!("slot {i} out of balance: heights {hl} and {hr}"));
        }
        if height != 1 + max(hl, hr) {
            return Err(format!(
                "slot {i} has height {height} but children {hl} and {hr}"
            ));
        }
        let want = max(n.iv.last(), max(ml, mr));
        if n.max != want {
            return Err(format!(
                "slot {i} has max {:#x} but its subtree ends at {want:#x}",
                n.max
            ));
        }
        Ok((height, n.max, cl + cr + 1))
    }

    // ---- private: slots and handles ----

    /// The slot `h` names, if it is occupied by the generation `h` carries.
    #[inline]
    fn resolve(&self, h: Handle) -> Option<u32> {
        match self.slots.get(h.slot() as usize)? {
            Slot::Occupied(e) if e.generation == h.generation() => Some(h.slot()),
            _ => None,
        }
    }

    /// The hot part of slot `i` (of an occupied slot, by the callers' invariants).
    #[inline]
    fn hot(&self, i: u32) -> &Hot {
        &self.hot[i as usize]
    }

    #[inline]
    fn hot_mut(&mut self, i: u32) -> &mut Hot {
        &mut self.hot[i as usize]
    }

    #[inline]
    fn entry(&self, i: u32) -> &Entry<V> {
        match &self.slots[i as usize] {
            Slot::Occupied(e) => e,
            Slot::Vacant { .. } => corrupted(i),
        }
    }

    #[inline]
    fn entry_mut(&mut self, i: u32) -> &mut Entry<V> {
        match &mut self.slots[i as usize] {
            Slot::Occupied(e) => e,
            Slot::Vacant { .. } => corrupted(i),
        }
    }

    #[inline]
    fn height(&self, i: u32) -> u8 {
        if i == NIL {
            0
        } else {
            self.heights[i as usize]
        }
    }

    #[inline]
    fn max_of(&self, i: u32) -> u64 {
        if i == NIL {
            0
        } else {
            self.hot(i).max
        }
    }

    /// Whether `q` can overlap anything: the tree is non-empty, something ends at or after
    /// `q.start()` and something starts at or before `q.last()`. O(1).
    #[inline]
    fn may_overlap(&self, qs: u64, ql: u64) -> bool {
        self.root != NIL
            && self.hot(self.root).max >= qs
            && self.hot(self.leftmost).iv.start() <= ql
    }

    // ---- private: AVL maintenance ----

    /// Recompute the height and max of `i` from its children.
    #[inline]
    fn update(&mut self, i: u32) {
        let n = self.hot(i);
        let (left, right, last) = (n.left, n.right, n.iv.last());
        let height = 1 + max(self.height(left), self.height(right));
        let subtree_max = max(last, max(self.max_of(left), self.max_of(right)));
        self.heights[i as usize] = height;
        self.hot_mut(i).max = subtree_max;
    }

    /// Rotate the subtree at `i` right; returns its new root (the old left child).
    fn rotate_right(&mut self, i: u32) -> u32 {
        let l = self.hot(i).left;
        let moved = self.hot(l).right;
        self.hot_mut(i).left = moved;
        self.hot_mut(l).right = i;
        self.update(i);
        self.update(l);
        l
    }

    /// Rotate the subtree at `i` left; returns its new root (the old right child).
    fn rotate_left(&mut self, i: u32) -> u32 {
        let r = self.hot(i).right;
        let moved = self.hot(r).left;
        self.hot_mut(i).right = moved;
        self.hot_mut(r).left = i;
        self.update(i);
        self.update(r);
        r
    }

    /// Restore the AVL balance of `i` (its children balanced, heights differing by at most 2)
    /// and its augmentation; returns the subtree's new root.
    fn rebalance(&mut self, i: u32) -> u32 {
        let n = self.hot(i);
        let (l, r) = (n.left, n.right);
        let (hl, hr) = (self.height(l), self.height(r));
        if hl > hr + 1 {
            let ln = self.hot(l);
            if self.height(ln.right) > self.height(ln.left) {
                let new_left = self.rotate_left(l);
                self.hot_mut(i).left = new_left;
            }
            return self.rotate_right(i);
        }
        if hr > hl + 1 {
            let rn = self.hot(r);
            if self.height(rn.left) > self.height(rn.right) {
                let new_right = self.rotate_right(r);
                self.hot_mut(i).right = new_right;
            }
            return self.rotate_left(i);
        }
        self.update(i);
        i
    }

    /// Make `parent` (or the root, for `NIL`) point at `new` where it pointed at `old`.
    #[inline]
    fn replace_child(&mut self, parent: u32, old: u32, new: u32) {
        if parent == NIL {
            self.root = new;
        } else {
            let p = self.hot_mut(parent);
            if p.left == old {
                p.left = new;
            } else {
                debug_assert_eq!(p.right, old);
                p.right = new;
            }
        }
    }

    /// Rebalance `path` (root first) from the bottom up. At depth `stop_from` and nearer the
    /// root it stops early once a subtree's height and max come out as they were, since nothing
    /// above can change then; deeper nodes are all visited (a node on the path changed its own
    /// interval, see Cond2 in `unlink`).
    fn retrace(&mut self, path: &[u32], stop_from: usize) {
        for (depth, &i) in path.iter().enumerate().rev() {
            let (old_height, old_max) = (self.height(i), self.hot(i).max);
            let top = self.rebalance(i);
            if top != i {
                let parent = if depth == 0 { NIL } else { path[depth - 1] };
                self.replace_child(parent, i, top);
            }
            if depth <= stop_from && self.height(top) == old_height && self.hot(top).max == old_max
            {
                return;
            }
        }
    }

    /// Link the detached node `x` into the tree by its key `(start, x)`.
    fn link(&mut self, x: u32) {
        debug_assert_eq!(self.entry(x).link, Link::Detached);
        let key = (self.hot(x).iv.start(), x);
        let mut path = Stack::new();
        let mut went_left = false;
        let mut leftmost = true;
        let mut i = self.root;
        while i != NIL {
            path.push(i);
            let n = self.hot(i);
            went_left = key < (n.iv.start(), i);
            if went_left {
                i = n.left;
            } else {
                leftmost = false;
                i = n.right;
            }
        }
        match path.last() {
            None => self.root = x,
            Some(p) if went_left => self.hot_mut(p).left = x,
            Some(p) => self.hot_mut(p).right = x,
        }
        self.entry_mut(x).link = Link::Attached;
        if leftmost {
            self.leftmost = x;
        }
        self.len += 1;
        self.retrace(path.as_slice(), path.len);
    }

    /// Unlink the attached node `x` (found by descending by its key) and reset it to detached.
    fn unlink(&mut self, x: u32) {
        debug_assert_eq!(self.entry(x).link, Link::Attached);
        let key = (self.hot(x).iv.start(), x);
        // The path from the root to x's parent.
        let mut path = Stack::new();
        let mut i = self.root;
        loop {
            if i == x {
                break;
            }
            if i == NIL {
                corrupted(x);
            }
            path.push(i);
            let n = self.hot(i);
            i = match key.cmp(&(n.iv.start(), i)) {
                Ordering::Less => n.left,
                Ordering::Greater => n.right,
                Ordering::Equal => corrupted(x),
            };
        }
        let parent = path.last().unwrap_or(NIL);
        let n = self.hot(x);
        let (left, right, x_max) = (n.left, n.right, n.max);
        let height = self.height(x);
        let mut stop_from = path.len;
        if left == NIL || right == NIL {
            // Cond1: at most one child, which takes x's place.
            self.replace_child(parent, x, if left == NIL { right } else { left });
        } else {
            // Cond2: two children; x's successor s (the leftmost of x's right subtree) takes
            // x's place. s inherits x's height and max, so that above s `retrace` compares
            // against the subtree as it was; s itself must be recomputed (its own interval
            // replaced x's), so no early stop below it.
            stop_from = path.len;
            path.push(x); // becomes s below
            let mut s = right;
            while self.hot(s).left != NIL {
                path.push(s);
                s = self.hot(s).left;
            }
            // path: x's ancestors, x, then right .. s's parent when s is deeper than right.
            if s != right {
                let s_parent = path.items[path.len - 1];
                let s_right = self.hot(s).right;
                self.hot_mut(s_parent).left = s_right;
                self.hot_mut(s).right = right;
            }
            let sn = self.hot_mut(s);
            sn.left = left;
            sn.max = x_max;
            self.heights[s as usize] = height;
            path.items[stop_from] = s;
            self.replace_child(parent, x, s);
        }
        let n = self.hot_mut(x);
        *n = Hot::detached(n.iv);
        self.heights[x as usize] = 1;
        self.entry_mut(x).link = Link::Detached;
        self.len -= 1;
        self.retrace(path.as_slice(), stop_from);
        if self.leftmost == x {
            self.leftmost = self.leftmost_of(self.root);
        }
    }

    /// The leftmost node of the subtree at `i` (`NIL` for an empty one).
    fn leftmost_of(&self, mut i: u32) -> u32 {
        let mut left = i;
        while left != NIL {
            i = left;
            left = self.hot(i).left;
        }
        i
    }

    /// Link `order` (slot indices in ascending key order) into a balanced subtree; its root.
    fn build_balanced(&mut self, order: &[u32]) -> u32 {
        let Some(&mid) = order.get(order.len() / 2) else {
            return NIL;
        };
        let left = self.build_balanced(&order[..order.len() / 2]);
        let right = self.build_balanced(&order[order.len() / 2 + 1..]);
        let n = self.hot_mut(mid);
        n.left = left;
        n.right = right;
        self.update(mid);
        mid
    }
}

/// Report a broken internal invariant: a link or free-list entry naming the wrong kind of slot.
#[cold]
#[inline(never)]
#[track_caller]
fn corrupted(slot: u32) -> ! {
    panic!("IntervalTree invariant broken at slot {slot} (a bug in mmn_fast::tree)")
}

/// The attached intervals overlapping a query, in ascending start order; see
/// [`IntervalTree::overlaps`].
#[derive(Clone)]
pub struct Overlaps<'a, V> {
    tree: &'a IntervalTree<V>,
    cursor: Cursor,
}

impl<'a, V> Iterator for Overlaps<'a, V> {
    type Item = (Handle, Interval, &'a V);

    #[inline]
    fn next(&mut self) -> Option<Self::Item> {
        let slot = self.cursor.next(&self.tree.hot)?;
        let e = self.tree.entry(slot);
        Some((
            Handle::new(slot, e.generation),
            self.tree.hot(slot).iv,
            &e.value,
        ))
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        (0, Some(self.tree.len))
    }
}

impl<V> FusedIterator for Overlaps<'_, V> {}

/// Every attached interval in ascending start order; see [`IntervalTree::iter`].
#[derive(Clone)]
pub struct Iter<'a, V> {
    tree: &'a IntervalTree<V>,
    cursor: Cursor,
    remaining: usize,
}

impl<'a, V> Iterator for Iter<'a, V> {
    type Item = (Handle, Interval, &'a V);

    #[inline]
    fn next(&mut self) -> Option<Self::Item> {
        let slot = self.cursor.next(&self.tree.hot)?;
        self.remaining -= 1;
        let e = self.tree.entry(slot);
        Some((
            Handle::new(slot, e.generation),
            self.tree.hot(slot).iv,
            &e.value,
        ))
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        (self.remaining, Some(self.remaining))
    }
}

impl<V> ExactSizeIterator for Iter<'_, V> {}
impl<V> FusedIterator for Iter<'_, V> {}

impl<'a, V> IntoIterator for &'a IntervalTree<V> {
    type Item = (Handle, Interval, &'a V);
    type IntoIter = Iter<'a, V>;

    fn into_iter(self) -> Self::IntoIter {
        self.iter()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn iv(start: u64, last: u64) -> Interval {
        Interval::new(start, last).unwrap()
    }

    fn checked<V>(tree: &IntervalTree<V>) {
        if let Err(e) = tree.check_invariants() {
            panic!("invariant broken: {e}");
        }
    }

    /// `(start, last, value)` of every hit, in the order returned.
    fn hits(tree: &IntervalTree<u64>, q: Interval) -> Vec<(u64, u64, u64)> {
        tree.overlaps(q)
            .map(|(_, i, v)| (i.start(), i.last(), *v))
            .collect()
    }

    #[test]
    fn empty_tree_answers_nothing() {
        let tree: IntervalTree<u64> = IntervalTree::default();
        assert_eq!(tree.len(), 0);
        assert!(tree.is_empty());
        assert_eq!(tree.span(), None);
        assert!(!tree.any_overlap(iv(0, u64::MAX)));
        assert_eq!(tree.overlaps(iv(0, u64::MAX)).count(), 0);
        assert_eq!(tree.count_overlap(iv(0, u64::MAX)), 0);
        assert_eq!(tree.iter().len(), 0);
        assert!(!tree.contains(Handle::from_bits(0)));
        checked(&tree);
    }

    #[test]
    fn slot_fits_49_bytes_with_an_8_byte_value() {
        // 32 hot bytes (two per cache line, none straddling), 1 height, 16 cold.
        assert_eq!((mem::size_of::<Hot>(), mem::align_of::<Hot>()), (32, 32));
        assert_eq!(IntervalTree::<u64>::NODE_BYTES, 49);
        assert_eq!(IntervalTree::<Box<u8>>::NODE_BYTES, 49);
        const { assert!(IntervalTree::<()>::NODE_BYTES <= 48) };
    }

    #[test]
    fn handle_bits_round_trip() {
        let h = Handle::new(7, 3);
        assert_eq!(h.to_bits(), (3 << 32) | 7);
        assert_eq!(Handle::from_bits(h.to_bits()), h);
        assert_eq!((h.slot(), h.generation()), (7, 3));
    }

    #[test]
    fn overlap_is_inclusive_at_both_ends() {
        let mut tree = IntervalTree::new();
        tree.insert(iv(10, 20), 1);
        assert_eq!(hits(&tree, iv(20, 30)), [(10, 20, 1)]);
        assert_eq!(hits(&tree, iv(0, 10)), [(10, 20, 1)]);
        assert_eq!(hits(&tree, iv(15, 15)), [(10, 20, 1)]);
        assert_eq!(hits(&tree, iv(0, 100)), [(10, 20, 1)]);
        assert!(hits(&tree, iv(21, 30)).is_empty());
        assert!(hits(&tree, iv(0, 9)).is_empty());
        assert!(tree.any_overlap(iv(20, 20)) && tree.any_overlap(iv(10, 10)));
        assert!(!tree.any_overlap(iv(21, 21)) && !tree.any_overlap(iv(9, 9)));
    }

    #[test]
    fn overlaps_come_in_ascending_start_order() {
        let mut tree = IntervalTree::new();
        for (k, start) in [50u64, 10, 40, 20, 30, 0, 60].into_iter().enumerate() {
            tree.insert(iv(start, start + 25), k as u64);
        }
        checked(&tree);
        let starts: Vec<u64> = hits(&tree, iv(26, 45))
            .into_iter()
            .map(|(s, _, _)| s)
            .collect();
        assert_eq!(starts, [10, 20, 30, 40]);
        assert_eq!(tree.count_overlap(iv(26, 45)), 4);
        let all: Vec<u64> = tree.iter().map(|(_, i, _)| i.start()).collect();
        assert_eq!(all, [0, 10, 20, 30, 40, 50, 60]);
        assert_eq!(tree.span(), Some(iv(0, 85)));
    }

    #[test]
    fn equal_intervals_are_distinct_entries() {
        let mut tree = IntervalTree::new();
        let handles: Vec<Handle> = (0..5).map(|v| tree.insert(iv(100, 200), v)).collect();
        checked(&tree);
        assert_eq!(tree.len(), 5);
        let mut values: Vec<u64> = hits(&tree, iv(150, 150))
            .into_iter()
            .map(|(_, _, v)| v)
            .collect();
        values.sort_unstable();
        assert_eq!(values, [0, 1, 2, 3, 4]);
        assert_eq!(tree.remove(handles[2]), Some((iv(100, 200), 2)));
        checked(&tree);
        assert_eq!(tree.count_overlap(iv(0, 1000)), 4);
        assert!(tree.overlaps(iv(0, 1000)).all(|(_, _, v)| *v != 2));
    }

    #[test]
    fn get_and_get_mut_see_attached_and_detached() {
        let mut tree = IntervalTree::new();
        let a = tree.insert(iv(1, 2), 10);
        let d = tree.insert_detached(iv(3, 4), 20);
        assert_eq!(tree.get(a), Some((iv(1, 2), &10)));
        assert_eq!(tree.get(d), Some((iv(3, 4), &20)));
        *tree.get_mut(d).unwrap().1 += 1;
        assert_eq!(tree.get(d), Some((iv(3, 4), &21)));
        assert_eq!(tree.remove(d), Some((iv(3, 4), 21)));
        assert_eq!(tree.get(d), None);
        assert!(tree.get_mut(d).is_none());
    }

    #[test]
    fn detached_nodes_are_allocated_but_invisible() {
        let mut tree = IntervalTree::new();
        let a = tree.insert(iv(0, 9), 1);
        let d = tree.insert_detached(iv(5, 15), 2);
        checked(&tree);
        assert_eq!(tree.len(), 1);
        assert!(tree.contains(d) && !tree.is_attached(d));
        assert!(tree.contains(a) && tree.is_attached(a));
        assert_eq!(hits(&tree, iv(0, 100)), [(0, 9, 1)]);
        assert_eq!(tree.count_overlap(iv(10, 15)), 0);
        assert!(!tree.any_overlap(iv(10, 15)));
        assert_eq!(tree.iter().count(), 1);
        assert_eq!(tree.span(), Some(iv(0, 9)));

        assert!(tree.attach(d));
        checked(&tree);
        assert!(!tree.attach(d), "attaching twice must fail");
        assert!(!tree.attach(a), "an inserted node is already attached");
        assert_eq!(tree.len(), 2);
        assert_eq!(hits(&tree, iv(10, 15)), [(5, 15, 2)]);
        assert_eq!(tree.span(), Some(iv(0, 15)));

        assert!(tree.detach(a));
        checked(&tree);
        assert!(!tree.detach(a), "detaching twice must fail");
        assert_eq!(tree.len(), 1);
        assert!(tree.contains(a) && !tree.is_attached(a));
        assert_eq!(hits(&tree, iv(0, 100)), [(5, 15, 2)]);
        assert_eq!(tree.span(), Some(iv(5, 15)));

        assert_eq!(
            tree.remove(a),
            Some((iv(0, 9), 1)),
            "a detached node can be removed"
        );
        assert_eq!(tree.len(), 1);
        checked(&tree);
    }

    #[test]
    fn stale_and_unknown_handles_are_refused() {
        let mut tree = IntervalTree::new();
        let old = tree.insert(iv(0, 9), 1);
        assert_eq!(tree.remove(old), Some((iv(0, 9), 1)));
        let new = tree.insert(iv(0, 9), 2);
        assert_eq!(new.slot(), old.slot(), "the slot is reused");
        assert_ne!(new, old, "with a new generation");
        for h in [
            old,
            Handle::from_bits(1),
            Handle::from_bits(u64::MAX),
            Handle::new(NIL, 0),
        ] {
            assert!(!tree.contains(h) && !tree.is_attached(h));
            assert!(tree.get(h).is_none() && tree.get_mut(h).is_none());
            assert!(!tree.attach(h) && !tree.detach(h));
            assert_eq!(tree.remove(h), None);
        }
        assert_eq!(tree.get(new), Some((iv(0, 9), &2)));
        assert_eq!(tree.len(), 1);
        checked(&tree);
    }

    #[test]
    fn exhausted_generation_retires_the_slot() {
        let mut tree = IntervalTree::new();
        let first = tree.insert(iv(1, 1), 1);
        tree.remove(first);
        // Pretend slot 0 has been reused until its last generation.
        tree.slots[0] = Slot::Vacant {
            generation: u32::MAX,
            next_free: NIL,
        };
        let last_gen = tree.insert(iv(2, 2), 2);
        assert_eq!((last_gen.slot(), last_gen.generation()), (0, u32::MAX));
        assert_eq!(tree.remove(last_gen), Some((iv(2, 2), 2)));
        checked(&tree);
        let next = tree.insert(iv(3, 3), 3);
        assert_eq!(next.slot(), 1, "slot 0 is retired, not reused");
        assert!(!tree.contains(last_gen) && !tree.contains(first));
        checked(&tree);
    }

    #[test]
    fn u64_extremes() {
        let mut tree = IntervalTree::new();
        let zero = tree.insert(iv(0, 0), 0);
        let top = tree.insert(iv(u64::MAX, u64::MAX), 1);
        let all = tree.insert(iv(0, u64::MAX), 2);
        checked(&tree);
        assert_eq!(tree.span(), Some(iv(0, u64::MAX)));
        let mut at_zero: Vec<u64> = hits(&tree, iv(0, 0)).into_iter().map(|h| h.2).collect();
        at_zero.sort_unstable();
        assert_eq!(at_zero, [0, 2]);
        assert_eq!(
            hits(&tree, iv(u64::MAX, u64::MAX)),
            [(0, u64::MAX, 2), (u64::MAX, u64::MAX, 1)]
        );
        assert_eq!(tree.count_overlap(iv(1, u64::MAX - 1)), 1);
        assert_eq!(tree.count_overlap(iv(0, u64::MAX)), 3);
        assert!(tree.remove(all).is_some());
        assert!(!tree.any_overlap(iv(1, u64::MAX - 1)));
        assert!(tree.any_overlap(iv(u64::MAX, u64::MAX)) && tree.any_overlap(iv(0, 0)));
        assert_eq!(tree.span(), Some(iv(0, u64::MAX)));
        tree.remove(top);
        assert_eq!(tree.span(), Some(iv(0, 0)));
        tree.remove(zero);
        assert_eq!(tree.span(), None);
        checked(&tree);
    }

    #[test]
    fn for_each_overlap_mut_visits_in_order_and_writes() {
        let mut tree = IntervalTree::new();
        for k in 0..100u64 {
            tree.insert(iv(k * 10, k * 10 + 14), k);
        }
        let mut seen = Vec::new();
        tree.for_each_overlap_mut(iv(95, 125), |h, i, v| {
            assert!(i.overlaps(iv(95, 125)));
            seen.push((h, i.start()));
            *v += 1000;
        });
        let starts: Vec<u64> = seen.iter().map(|s| s.1).collect();
        assert_eq!(starts, [90, 100, 110, 120]);
        for (h, _) in seen {
            assert!(*tree.get(h).unwrap().1 >= 1000);
        }
        assert_eq!(tree.iter().filter(|(_, _, v)| **v >= 1000).count(), 4);
        let mut calls = 0;
        tree.for_each_overlap_mut(iv(5000, 6000), |_, _, _| calls += 1);
        assert_eq!(calls, 0);
    }

    #[test]
    fn ascending_and_descending_inserts_stay_balanced() {
        for descending in [false, true] {
            let mut tree = IntervalTree::new();
            let n = 10_000u64;
            for k in 0..n {
                let s = if descending { n - k } else { k };
                tree.insert(iv(s, s), k);
            }
            checked(&tree);
            // 1.44 log2(n + 2) bounds an AVL tree's height.
            let height = f64::from(tree.height(tree.root));
            assert!(
                height <= 1.45 * (f64::from(10_000u32) + 2.0).log2(),
                "height {height}"
            );
            assert_eq!(tree.iter().len(), 10_000);
            let starts: Vec<u64> = tree.iter().map(|(_, i, _)| i.start()).collect();
            assert!(starts.windows(2).all(|w| w[0] < w[1]));
        }
    }

    #[test]
    fn removal_in_every_shape_keeps_invariants() {
        // Remove by every pattern that exercises Cond1 (at most one child) and Cond2
        // (successor deep or the right child itself), with the leftmost cache in play.
        for pattern in 0..4u64 {
            let mut tree = IntervalTree::new();
            // Varied lengths, so that a removed node's last is often its subtree's max.
            let interval = |k: u64| iv(k * 3, k * 3 + 7 + (k * 37) % 101);
            let handles: Vec<Handle> = (0..257u64).map(|k| tree.insert(interval(k), k)).collect();
            let order: Vec<usize> = match pattern {
                0 => (0..257).collect(),
                1 => (0..257).rev().collect(),
                2 => (0..257).map(|k| (k * 101) % 257).collect(),
                _ => (0..257)
                    .map(|k| if k % 2 == 0 { k / 2 } else { 256 - k / 2 })
                    .collect(),
            };
            for (done, &k) in order.iter().enumerate() {
                assert_eq!(
                    tree.remove(handles[k]),
                    Some((interval(k as u64), k as u64))
                );
                checked(&tree);
                assert_eq!(tree.len(), 256 - done);
            }
            assert!(tree.is_empty() && tree.span().is_none());
        }
    }

    #[test]
    fn bulk_build_gives_input_order_handles() {
        let items: Vec<(Interval, u64)> = [(50, 60), (10, 20), (30, 40), (10, 15), (0, 100)]
            .into_iter()
            .enumerate()
            .map(|(k, (s, l))| (iv(s, l), k as u64))
            .collect();
        let mut tree = IntervalTree::bulk_build(items.clone());
        checked(&tree);
        assert_eq!(tree.len(), 5);
        for (k, (i, v)) in items.iter().enumerate() {
            assert_eq!(tree.get(Handle::from_bits(k as u64)), Some((*i, v)));
        }
        let starts: Vec<u64> = tree.iter().map(|(_, i, _)| i.start()).collect();
        assert_eq!(starts, [0, 10, 10, 30, 50]);
        assert_eq!(tree.span(), Some(iv(0, 100)));
        assert_eq!(tree.count_overlap(iv(16, 29)), 2);
        // The built tree takes further updates.
        assert!(tree.remove(Handle::from_bits(4)).is_some());
        tree.insert(iv(5, 5), 9);
        checked(&tree);
        assert_eq!(tree.span(), Some(iv(5, 60)));

        let empty: IntervalTree<u64> = IntervalTree::bulk_build(Vec::new());
        assert!(empty.is_empty());
        checked(&empty);
        let big =
            IntervalTree::bulk_build((0..1000u64).map(|k| (iv(k % 37, k % 37 + k), k)).collect());
        checked(&big);
    }

    #[test]
    fn drain_values_empties_and_makes_handles_stale() {
        let mut tree = IntervalTree::new();
        let a = tree.insert(iv(0, 1), 1);
        let d = tree.insert_detached(iv(2, 3), 2);
        let gone = tree.insert(iv(4, 5), 3);
        tree.remove(gone);
        let c = tree.insert(iv(6, 7), 4);
        let mut values = tree.drain_values();
        values.sort_unstable();
        assert_eq!(values, [1, 2, 4]);
        assert!(tree.is_empty() && tree.span().is_none());
        for h in [a, d, c, gone] {
            assert!(!tree.contains(h));
            assert_eq!(tree.remove(h), None);
        }
        checked(&tree);
        let fresh = tree.insert(iv(0, 1), 5);
        assert!(fresh != a && fresh != d && fresh != c && fresh != gone);
        assert_eq!(tree.len(), 1);
        checked(&tree);
        assert!(tree.drain_values() == [5]);
    }

    #[test]
    fn debug_lists_attached_entries() {
        let mut tree = IntervalTree::new();
        tree.insert(iv(1, 2), "x");
        tree.insert_detached(iv(3, 4), "hidden");
        let text = format!("{tree:?}");
        assert!(text.contains("\"x\"") && !text.contains("hidden"), "{text}");
    }

    #[test]
    fn check_invariants_catches_corruption() {
        let build = || {
            let mut tree = IntervalTree::new();
            for k in 0..15u64 {
                tree.insert(iv(k * 10, k * 10 + 5), k);
            }
            checked(&tree);
            tree
        };
        let root = build().root;

        let mut t = build();
        t.hot_mut(root).max += 1;
        assert!(t.check_invariants().unwrap_err().contains("max"));

        let mut t = build();
        t.heights[root as usize] += 1;
        assert!(t.check_invariants().unwrap_err().contains("height"));

        let mut t = build();
        t.hot_mut(root).iv = iv(1_000, 1_005);
        assert!(t.check_invariants().is_err(), "order");

        let mut t = build();
        let left = t.hot(root).left;
        t.hot_mut(left).left = root;
        assert!(t.check_invariants().unwrap_err().contains("twice"));

        let mut t = build();
        t.len += 1;
        assert!(t.check_invariants().unwrap_err().contains("len"));

        let mut t = build();
        t.leftmost = root;
        assert!(t.check_invariants().unwrap_err().contains("leftmost"));

        let mut t = build();
        let h = t.insert_detached(iv(0, 0), 99);
        t.entry_mut(h.slot()).link = Link::Attached;
        assert!(t.check_invariants().unwrap_err().contains("unreachable"));

        let mut t = build();
        let h = t.insert(iv(0, 0), 99);
        t.entry_mut(h.slot()).link = Link::Detached;
        assert!(t.check_invariants().unwrap_err().contains("detached"));

        let mut t = build();
        let h = t.insert(iv(0, 0), 99);
        t.remove(h);
        t.free_head = NIL;
        assert!(t
            .check_invariants()
            .unwrap_err()
            .contains("neither free nor retired"));
    }
}
