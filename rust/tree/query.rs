//! The query walk and the iterators built on it.
//!
//! The walk's steps are `#[inline(always)]`: a query's entry point runs it whole in
//! `vectorised!`, whose AVX2 frame must contain every node scan.
#![allow(
    clippy::inline_always,
    reason = "the walk inlines whole into the AVX2 frame of `vectorised!`"
)]

use std::iter::FusedIterator;

use super::node::{prefetch, vectorised, Node};
use super::{leaf_interval, BPlusTree, Handle, MAX_DEPTH, NIL};
use crate::interval::Interval;

/// A depth-first walk over the inner nodes whose subtrees may overlap `[qs, ql]`, yielding each
/// leaf with at least one hit and the mask of its hits, leaves in ascending start order.
///
/// Per inner level it keeps the mask of children not yet visited; a child is in the mask when
/// its smallest start is at or before `ql` and its largest last at or after `qs`, so a pruned
/// subtree is never read. Only the deepest node is kept: a finished node's parent is found by
/// its `parent` link, so the stack is one `u32` per level and the walk stays small enough to
/// move cheaply (iterator adapters move it). It lives inline: no allocation.
#[derive(Clone)]
pub(super) struct Cursor {
    qs: u64,
    ql: u64,
    /// Inner levels of the tree: the stack is full (depth == height) when the next node down is
    /// a leaf.
    height: usize,
    depth: usize,
    /// The inner node at the top of the stack.
    node: u32,
    /// The root, until the first step enters it; `NIL` after that, or for a walk that yields
    /// nothing.
    start: u32,
    /// The children not yet visited of the node at the top of the stack. Kept out of `masks`
    /// so that a descent's every step reads it from a register: through the array, each level
    /// paid a store and its forwarded load in the chain of dependent loads.
    top: u32,
    /// The same for the levels below the top: `masks[d]` for depth `d + 1`.
    masks: [u32; MAX_DEPTH],
    /// Bit `d` set when `masks[d]` is not empty: once the top is done and no level below has
    /// children left, the walk is over without climbing back through each parent (a walk
    /// whose hits sit in one leaf, or none, the common case).
    pending: u32,
}

impl Cursor {
    /// A walk over `[qs, ql]` from `root` (`Some((root, height))`, `height` inner levels above
    /// the leaves), or one that yields nothing (`None`).
    ///
    /// Nothing is read until the first step enters the root: an iterator holding a cursor is
    /// returned by value, and a copy of the struct right after a descent's narrow writes to it
    /// stalls on store forwarding (measured: 8-14 ns per query).
    #[inline]
    pub fn new(root: Option<(u32, usize)>, qs: u64, ql: u64) -> Self {
        const { assert!(MAX_DEPTH <= 32, "`pending` has a bit per level") };
        let (start, height) = root.unwrap_or((NIL, 0));
        Self {
            qs,
            ql,
            height,
            depth: 0,
            node: 0,
            start,
            top: 0,
            masks: [0; MAX_DEPTH],
            pending: 0,
        }
    }

    #[inline(always)]
    fn push<const F: usize>(&mut self, inners: &[Node<F>], node: u32) {
        const { assert!(F <= 32, "inner nodes hold at most 32 children") };
        let inner = &inners[node as usize];
        // The child ids are read once the mask is known: start their load with the mask's, so
        // that a level costs one cache miss rather than two in a row.
        prefetch(&inner.ids);
        prefetch(&inner.ids[F - 1]);
        let hits = inner.hits(self.qs, self.ql);
        debug_assert!(hits >> F == 0);
        #[allow(clippy::cast_possible_truncation, reason = "F <= 32 bits")]
        let hits = hits as u32;
        if let Some(below) = self.depth.checked_sub(1) {
            self.masks[below] = self.top;
            self.pending |= u32::from(self.top != 0) << below;
        }
        self.top = hits;
        self.node = node;
        self.depth += 1;
    }

    /// The next node the walk visits, without reading it: `(index, is_leaf)`. Its parent has
    /// been read, so this costs no cache miss; the node itself is read by [`Cursor::enter`]
    /// (inner) or [`Cursor::leaf_hits`] (leaf), which a batch walk delays until the node has
    /// been prefetched.
    #[inline(always)]
    pub fn advance<const F: usize>(&mut self, inners: &[Node<F>]) -> Option<(u32, bool)> {
        if self.start != NIL {
            let root = std::mem::replace(&mut self.start, NIL);
            self.push(inners, root);
        }
        while self.depth > 0 {
            let mask = self.top;
            if mask == 0 {
                if self.pending == 0 {
                    self.depth = 0;
                    break;
                }
                self.depth -= 1;
                self.node = inners[self.node as usize].parent;
                let below = self.depth - 1; // a pending level lies below: depth >= 1
                self.top = self.masks[below];
                self.pending &= !(1 << below);
                continue;
            }
            self.top = mask & (mask - 1);
            let child = inners[self.node as usize].ids[mask.trailing_zeros() as usize];
            return Some((child, self.depth == self.height));
        }
        None
    }

    /// Descend into the inner node `child` that [`Cursor::advance`] returned.
    #[inline(always)]
    pub fn enter<const F: usize>(&mut self, inners: &[Node<F>], child: u32) {
        self.push(inners, child);
    }

    /// The hit mask of `leaf` (a leaf that [`Cursor::advance`] returned).
    #[inline(always)]
    pub fn leaf_hits<const L: usize>(&self, leaf: &Node<L>) -> u64 {
        // A hit's slot id is read next (by `overlaps`): load it with the mask.
        prefetch(&leaf.ids);
        prefetch(&leaf.ids[L - 1]);
        leaf.hits(self.qs, self.ql)
    }

    /// The next leaf with a hit, and its hit mask (never 0).
    #[inline(always)]
    pub fn next_leaf<const L: usize, const F: usize>(
        &mut self,
        inners: &[Node<F>],
        leaves: &[Node<L>],
    ) -> Option<(u32, u64)> {
        while let Some((child, is_leaf)) = self.advance(inners) {
            if !is_leaf {
                self.enter(inners, child);
                continue;
            }
            let hits = self.leaf_hits(&leaves[child as usize]);
            if hits != 0 {
                return Some((child, hits));
            }
        }
        None
    }
}

/// The attached intervals overlapping a query, in ascending start order; see
/// [`BPlusTree::overlaps`].
#[derive(Clone)]
pub struct Overlaps<'a, V, const L: usize, const F: usize> {
    tree: &'a BPlusTree<V, L, F>,
    cursor: Cursor,
    /// The current leaf and its hits not yet returned.
    leaf: u32,
    mask: u64,
}

impl<'a, V, const L: usize, const F: usize> Overlaps<'a, V, L, F> {
    #[inline]
    pub(super) fn new(tree: &'a BPlusTree<V, L, F>, cursor: Cursor) -> Self {
        Self {
            tree,
            cursor,
            leaf: 0,
            mask: 0,
        }
    }
}

impl<'a, V, const L: usize, const F: usize> Overlaps<'a, V, L, F> {
    /// The next hit: its leaf and its position there.
    #[inline(always)]
    fn next_hit(&mut self) -> Option<(&'a Node<L>, usize)> {
        if self.mask == 0 {
            (self.leaf, self.mask) = self
                .cursor
                .next_leaf(&self.tree.inners, &self.tree.leaves)?;
        }
        let pos = self.mask.trailing_zeros() as usize;
        self.mask &= self.mask - 1;
        Some((&self.tree.leaves[self.leaf as usize], pos))
    }

    /// Push the walk's next hits onto `out`, each as `hit(slot, interval)`, until `out` holds
    /// `max` entries or the walk is over; call again to resume. `slot` is the
    /// [`Handle::slot`] of the interval's handle, read without the handle table: one memory
    /// access less per hit for a caller that keeps its per-interval data in an array of its
    /// own indexed by slot, as the Python binding keeps its values
    /// ([`BPlusTree::slot_handle`] gives the handle back). The whole loop runs in one frame,
    /// vectorised where the CPU has AVX2, where a caller's loop over `next` calls the walk out
    /// of line.
    pub fn fill<T>(
        &mut self,
        out: &mut Vec<T>,
        max: usize,
        mut hit: impl FnMut(u32, Interval) -> T,
    ) {
        vectorised! {
            while out.len() < max {
                let Some((node, pos)) = self.next_hit() else {
                    break;
                };
                out.push(hit(node.ids[pos], leaf_interval(node, pos)));
            }
        }
    }
}

impl<'a, V, const L: usize, const F: usize> Iterator for Overlaps<'a, V, L, F> {
    type Item = (Handle, Interval, &'a V);

    #[inline]
    fn next(&mut self) -> Option<Self::Item> {
        let (node, pos) = self.next_hit()?;
        let (h, value) = self.tree.slot_entry(node.ids[pos]);
        Some((h, leaf_interval(node, pos), value))
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        (self.mask.count_ones() as usize, Some(self.tree.len))
    }
}

impl<V, const L: usize, const F: usize> FusedIterator for Overlaps<'_, V, L, F> {}

/// Every attached interval in ascending start order; see [`BPlusTree::iter`].
#[derive(Clone)]
pub struct Iter<'a, V, const L: usize, const F: usize> {
    all: Overlaps<'a, V, L, F>,
    remaining: usize,
}

impl<'a, V, const L: usize, const F: usize> Iter<'a, V, L, F> {
    pub(super) fn new(all: Overlaps<'a, V, L, F>, remaining: usize) -> Self {
        Self { all, remaining }
    }
}

impl<'a, V, const L: usize, const F: usize> Iterator for Iter<'a, V, L, F> {
    type Item = (Handle, Interval, &'a V);

    #[inline]
    fn next(&mut self) -> Option<Self::Item> {
        let item = self.all.next()?;
        self.remaining -= 1;
        Some(item)
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        (self.remaining, Some(self.remaining))
    }
}

impl<V, const L: usize, const F: usize> ExactSizeIterator for Iter<'_, V, L, F> {}
impl<V, const L: usize, const F: usize> FusedIterator for Iter<'_, V, L, F> {}

impl<'a, V, const L: usize, const F: usize> IntoIterator for &'a BPlusTree<V, L, F> {
    type Item = (Handle, Interval, &'a V);
    type IntoIter = Iter<'a, V, L, F>;

    fn into_iter(self) -> Self::IntoIter {
        self.iter()
    }
}
