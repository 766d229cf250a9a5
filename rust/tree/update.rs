//! Updates of the B+-tree: linking and unlinking intervals, splits, merges, redistributions,
//! and the bulk build.
//!
//! Levels count from the leaves: level 0 is the leaf arena, level `k >= 1` the inner arena, the
//! root at `height`. An entry of a level-`k` node is a slot (`k == 0`) or a node of level
//! `k - 1`; whenever entries move to another node, that node *adopts* them (rewrites their
//! slot's leaf or their node's parent), which is what keeps handles valid.

use std::ops::Range;

use super::node::{vectorised, Node};
use super::slots::Slots;
use super::{corrupted, BPlusTree, MAX_DEPTH, NIL};
use crate::error::Error;
use crate::interval::Interval;

/// Run `$body` with `$arena` bound to the arena of `$level` (`&mut Vec<Node<_>>`).
macro_rules! with_arena {
    ($tree:expr, $level:expr, |$arena:ident| $body:expr) => {
        if $level == 0 {
            let $arena = &mut $tree.leaves;
            $body
        } else {
            let $arena = &mut $tree.inners;
            $body
        }
    };
}

/// Bits per digit of [`radix_sort`].
const DIGIT_BITS: u32 = 11;

/// `(start, index)` of items `0..n`, ascending start, ties by index: the bulk build's leaf order.
pub(super) enum StartOrder {
    /// One `u64` a pair, `(start >> zeros) << index_bits | index`, when that fits (starts below
    /// 2^47, as every user-space address is, with up to 2^17 items; more with aligned starts):
    /// the sort moves 8 bytes an item, not 16, and its two arrays take half the fresh memory.
    Packed {
        keys: Vec<u64>,
        index_bits: u32,
        zeros: u32,
    },
    /// Any starts.
    Wide(Vec<(u64, u32)>),
}

impl StartOrder {
    /// The order of `starts` (`starts[i]` is item `i`'s; fewer than `u32::MAX` items), packed
    /// into `starts`' own memory when the pairs fit.
    pub(super) fn of(mut starts: Vec<u64>) -> Self {
        let (all, max) = starts
            .iter()
            .fold((0, 0), |(or, max), &s| (or | s, max.max(s)));
        let zeros = all.trailing_zeros() % u64::BITS; // all starts 0: nothing to shift
        let index_bits = u64::BITS - (starts.len().max(1) as u64 - 1).leading_zeros();
        let start_bits = u64::BITS - (max >> zeros).leading_zeros();
        if start_bits + index_bits <= u64::BITS {
            for (s, i) in starts.iter_mut().zip(0..) {
                *s = (*s >> zeros) << index_bits | i;
            }
            // The keys are in index order and the sort is stable: the index bits need no pass.
            radix_sort(&mut starts, |k| k, index_bits..index_bits + start_bits);
            Self::Packed {
                keys: starts,
                index_bits,
                zeros,
            }
        } else {
            let mut pairs: Vec<(u64, u32)> = starts.into_iter().zip(0..).collect();
            radix_sort(&mut pairs, |(s, _)| s, 0..u64::BITS);
            Self::Wide(pairs)
        }
    }

    /// The `(start, index)` that a key of the packed form stands for.
    #[inline]
    pub(super) fn unpack(key: u64, index_bits: u32, zeros: u32) -> (u64, u32) {
        let index = key & ((1_u64 << index_bits) - 1);
        #[allow(clippy::cast_possible_truncation, reason = "index_bits <= 32")]
        ((key >> index_bits) << zeros, index as u32)
    }
}

/// Sort `items` stably by the bits `bits` of `key(item)`: an LSD radix sort, skipping the
/// digits every item shares (page-aligned or small coordinates need about half the passes); a
/// few passes over the data instead of a comparison sort's ~log2(n) compares per item, which
/// were most of `bulk_build`'s cost.
fn radix_sort<T: Copy + Default>(items: &mut Vec<T>, key: impl Fn(T) -> u64, bits: Range<u32>) {
    const BUCKETS: usize = 1 << DIGIT_BITS;
    #[allow(clippy::cast_possible_truncation, reason = "masked to DIGIT_BITS bits")]
    let digit =
        |item: T, d: u32| ((key(item) >> (bits.start + d * DIGIT_BITS)) as usize) & (BUCKETS - 1);
    if items.len() < 256 {
        items.sort_by_key(|&item| key(item) >> bits.start); // stable
        return;
    }
    let digits = (bits.end - bits.start).div_ceil(DIGIT_BITS);
    let mut counts = vec![[0_usize; BUCKETS]; digits as usize];
    for &item in items.iter() {
        for (d, count) in (0..).zip(counts.iter_mut()) {
            count[digit(item, d)] += 1;
        }
    }
    let mut scratch = vec![T::default(); items.len()];
    let mut passes = 0;
    for (d, count) in (0..).zip(counts.iter_mut()) {
        if count.contains(&items.len()) {
            continue; // every item has this digit: the pass would not move anything
        }
        let mut next = 0;
        for c in count.iter_mut() {
            (*c, next) = (next, next + *c);
        }
        for &item in items.iter() {
            let pos = &mut count[digit(item, d)];
            scratch[*pos] = item;
            *pos += 1;
        }
        std::mem::swap(items, &mut scratch);
        passes += 1;
    }
    if passes % 2 == 1 {
        // Back into the caller's array, so that the scratch (the newer allocation, at the top
        // of the heap) is the one freed and the next allocations reuse its memory.
        scratch.copy_from_slice(items);
        std::mem::swap(items, &mut scratch);
    }
}

/// Two distinct nodes of one arena, mutably.
fn pair<const N: usize>(arena: &mut [Node<N>], a: u32, b: u32) -> (&mut Node<N>, &mut Node<N>) {
    let (a, b) = (a as usize, b as usize);
    debug_assert_ne!(a, b);
    if a < b {
        let (low, high) = arena.split_at_mut(b);
        (&mut low[a], &mut high[0])
    } else {
        let (low, high) = arena.split_at_mut(a);
        (&mut high[0], &mut low[b])
    }
}

/// Put `node` in a free entry of `arena` (or a new one); its index.
fn alloc<const N: usize>(arena: &mut Vec<Node<N>>, free: &mut Vec<u32>, node: Node<N>) -> u32 {
    if let Some(i) = free.pop() {
        arena[i as usize] = node;
        return i;
    }
    let Some(i) = u32::try_from(arena.len()).ok().filter(|&i| i != NIL) else {
        panic!("IntervalTree: more than u32::MAX - 1 nodes");
    };
    arena.push(node);
    i
}

impl<V, const L: usize, const F: usize> BPlusTree<V, L, F> {
    /// Smallest entry count of a node off the leftmost and rightmost paths (checked by
    /// `check_invariants`); a node falling below it merges with or borrows from a sibling.
    /// Leaves may fall to a quarter (fewer merges under churn); inner nodes keep half, which
    /// bounds the height by [`MAX_DEPTH`].
    pub(super) const fn min_len(level: usize) -> usize {
        if level == 0 {
            L / 4
        } else {
            F / 2
        }
    }

    pub(super) const fn capacity(level: usize) -> usize {
        if level == 0 {
            L
        } else {
            F
        }
    }

    pub(super) fn node_len(&self, level: usize, node: u32) -> usize {
        if level == 0 {
            self.leaves[node as usize].len()
        } else {
            self.inners[node as usize].len()
        }
    }

    pub(super) fn parent(&self, level: usize, node: u32) -> u32 {
        if level == 0 {
            self.leaves[node as usize].parent
        } else {
            self.inners[node as usize].parent
        }
    }

    pub(super) fn summary(&self, level: usize, node: u32) -> (u64, u64) {
        if level == 0 {
            self.leaves[node as usize].summary()
        } else {
            self.inners[node as usize].summary()
        }
    }

    /// The smallest start under `node` (of `level`, non-empty).
    fn first_key(&self, level: usize, node: u32) -> u64 {
        if level == 0 {
            self.leaves[node as usize].keys[0]
        } else {
            self.inners[node as usize].keys[0]
        }
    }

    /// Make `node` (of `level`) the owner of its entries in `range` (the ones moved in: each
    /// is a write to a slot or node elsewhere in memory).
    fn adopt(&mut self, level: usize, node: u32, range: Range<usize>) {
        if level == 0 {
            for &slot in &self.leaves[node as usize].ids[range] {
                self.slots.entry_mut(slot).leaf = node;
            }
        } else {
            for i in range {
                let child = self.inners[node as usize].ids[i];
                if level == 1 {
                    self.leaves[child as usize].parent = node;
                } else {
                    self.inners[child as usize].parent = node;
                }
            }
        }
    }

    /// Free the (emptied) `node` of `level`.
    fn release(&mut self, level: usize, node: u32) {
        if level == 0 {
            self.free_leaves.push(node);
        } else {
            self.free_inners.push(node);
        }
    }

    /// Where `node` (of `level`) sits in its parent.
    fn position_in_parent(&self, level: usize, node: u32) -> (u32, usize) {
        let parent = self.parent(level, node);
        let pos = self.inners[parent as usize]
            .position(node)
            .unwrap_or_else(|| corrupted(node));
        (parent, pos)
    }

    /// Whether `node` is on the leftmost and on the rightmost root-to-leaf path.
    fn spines(&self, mut level: usize, mut node: u32) -> (bool, bool) {
        let (mut left, mut right) = (true, true);
        while level < self.height {
            let (parent, pos) = self.position_in_parent(level, node);
            left &= pos == 0;
            right &= pos + 1 == self.inners[parent as usize].len();
            (level, node) = (level + 1, parent);
        }
        (left, right)
    }

    /// Link the detached `slot` with interval `iv` into the tree.
    pub(super) fn link(&mut self, slot: u32, iv: Interval) {
        let (start, last) = (iv.start(), iv.last());
        if self.root == NIL {
            let leaf = alloc(&mut self.leaves, &mut self.free_leaves, Node::empty(NIL));
            let root = alloc(&mut self.inners, &mut self.free_inners, Node::empty(NIL));
            self.leaves[leaf as usize].parent = root;
            self.inners[root as usize].insert_at(0, (start, last), leaf);
            (self.root, self.height, self.span) = (root, 1, (start, last));
        }
        vectorised! {
            let (node, pos) = {
                let mut node = self.root;
                for _ in 0..self.height {
                    let n = &self.inners[node as usize];
                    node = n.ids[n.upper_bound(start).saturating_sub(1)];
                }
                (node, self.leaves[node as usize].upper_bound(start))
            };
            self.entry_mut(slot).leaf = node;
            self.len += 1;
            if self.leaves[node as usize].is_full() {
                let (node, pos) = self
                    .lend_to_sibling(node, pos)
                    .unwrap_or_else(|| self.split_for_insert(0, node, pos));
                self.leaves[node as usize].insert_at(pos, (start, last), slot);
                self.entry_mut(slot).leaf = node;
                self.settle(0, node, None);
            } else {
                self.leaves[node as usize].insert_at(pos, (start, last), slot);
                self.widen(node, start, last);
            }
        }
    }

    /// After `[start, last]` went into `leaf` (no split), widen the entries above it: each
    /// one's smallest start is its node's first key, its largest last grows to `last`. Stops
    /// at the first entry that comes out unchanged, as [`settle`](Self::settle) does, without
    /// rescanning any node.
    #[inline(always)]
    #[allow(
        clippy::inline_always,
        reason = "summaries are max scans, vectorised in the AVX2 frame of `link` and `unlink`"
    )]
    fn widen(&mut self, leaf: u32, start: u64, last: u64) {
        let (mut node, mut first) = (leaf, self.leaves[leaf as usize].keys[0]);
        for level in 0..self.height {
            let parent = self.parent(level, node);
            let p = &mut self.inners[parent as usize];
            let pos = p.position(node).unwrap_or_else(|| corrupted(node));
            let widened = (first, p.lasts[pos].max(last));
            if (p.keys[pos], p.lasts[pos]) == widened {
                return;
            }
            (p.keys[pos], p.lasts[pos]) = widened;
            (node, first) = (parent, p.keys[0]);
        }
        self.span = (self.span.0.min(start), self.span.1.max(last));
    }

    /// Unlink the attached `slot` and return its interval; the slot is left detached.
    pub(super) fn unlink(&mut self, slot: u32) -> Interval {
        vectorised! {
            let leaf = self.entry(slot).leaf;
            let node = &mut self.leaves[leaf as usize];
            let pos = node.position(slot).unwrap_or_else(|| corrupted(slot));
            let (start, last) = node.remove_at(pos);
            self.entry_mut(slot).leaf = NIL;
            self.len -= 1;
            if self.len == 0 {
                self.clear_index();
            } else {
                self.settle(0, leaf, Some(last));
            }
            Interval::new(start, last).unwrap_or_else(|_| corrupted(slot))
        }
    }

    /// Forget every node (nothing is attached any more); the arenas keep their capacity.
    pub(super) fn clear_index(&mut self) {
        self.leaves.clear();
        self.inners.clear();
        self.free_leaves.clear();
        self.free_inners.clear();
        (self.root, self.height, self.len, self.span) = (NIL, 0, 0, (u64::MAX, 0));
    }

    /// Split the full `node` of `level` to make room for an entry at `pos`, and return where
    /// that entry goes: `(node or its new right sibling, position)`.
    ///
    /// The split is even, except at the ends of the whole tree: an entry going after every
    /// other one (before every other one) leaves the full node whole and starts a new node to
    /// its right (moves all of it to a new right node), so sorted inserts fill nodes completely.
    fn split_for_insert(&mut self, level: usize, node: u32, pos: usize) -> (u32, usize) {
        let cap = Self::capacity(level);
        // Only an entry at either end of the node can be at an end of the tree: the climb to
        // the root that tells is skipped for the others.
        let at = if pos == 0 || pos == cap {
            match (self.spines(level, node), pos == 0) {
                ((_, true), false) => cap,
                ((true, _), true) => 0,
                _ => cap / 2,
            }
        } else {
            cap / 2
        };
        let right = with_arena!(self, level, |arena| {
            let parent = arena[node as usize].parent;
            let free = level_free(&mut self.free_leaves, &mut self.free_inners, level);
            let right = alloc(arena, free, Node::empty(parent));
            let (left, new) = pair(arena, node, right);
            new.take_tail(left, at);
            right
        });
        self.adopt(level, right, 0..cap - at);
        self.link_sibling(level, node, right);
        if pos < at || (pos == at && at < cap) {
            (node, pos)
        } else {
            (right, pos - at)
        }
    }

    /// Enter `right`, just split off `left` (both of `level`), in the parent after `left`,
    /// splitting the parent when full and growing a new root above a split root.
    fn link_sibling(&mut self, level: usize, left: u32, right: u32) {
        let parent = self.parent(level, left);
        if parent == NIL {
            if self.height + 1 > MAX_DEPTH {
                corrupted(left);
            }
            let mut root = Node::empty(NIL);
            root.insert_at(0, self.summary(level, left), left);
            root.insert_at(1, self.summary(level, right), right);
            self.root = alloc(&mut self.inners, &mut self.free_inners, root);
            self.height += 1;
            self.adopt(level + 1, self.root, 0..2);
            return;
        }
        let pos = self.inners[parent as usize]
            .position(left)
            .unwrap_or_else(|| corrupted(left));
        let left_summary = self.summary(level, left);
        self.inners[parent as usize].set(pos, left_summary, left);
        if self.inners[parent as usize].is_full() {
            let (parent, pos) = self.split_for_insert(level + 1, parent, pos + 1);
            self.enter_child(level, parent, pos, right);
            // `parent` may be the new, empty sibling of a split, entered above with no
            // summary: bring its ancestors up to date.
            self.settle(level + 1, parent, None);
        } else {
            self.enter_child(level, parent, pos + 1, right);
        }
    }

    /// Insert `child` (of `level`) at `pos` in the inner node `parent`.
    fn enter_child(&mut self, level: usize, parent: u32, pos: usize, child: u32) {
        let summary = self.summary(level, child);
        self.inners[parent as usize].insert_at(pos, summary, child);
        with_arena!(self, level, |arena| arena[child as usize].parent = parent);
    }

    /// After `node` of `level` changed, bring its ancestors up to date: each one's entry for
    /// the changed child, and the span at the root. With `rebalance` (after a removal) a node
    /// below [`min_len`](Self::min_len) first merges with or borrows from a sibling, an empty
    /// node leaves its parent, and a root with one inner child gives way to it. It stops at the
    /// first ancestor whose entry comes out unchanged: entries off the path are up to date.
    ///
    /// `removed` is the last of the interval just removed (rebalancing on), or `None` after an
    /// insert (rebalancing off). Every subtree on the path lost exactly that interval (merges
    /// and redistributions move entries between siblings only), so a node whose entry's
    /// largest last exceeds it keeps that largest last without a rescan.
    #[inline(always)]
    #[allow(
        clippy::inline_always,
        reason = "summaries are max scans, vectorised in the AVX2 frame of `link` and `unlink`"
    )]
    fn settle(&mut self, mut level: usize, mut node: u32, removed: Option<u64>) {
        let rebalance = removed.is_some();
        while level < self.height {
            let (parent, pos) = self.position_in_parent(level, node);
            let siblings = self.inners[parent as usize].len();
            let len = self.node_len(level, node);
            if rebalance && len < Self::min_len(level) && siblings > 1 {
                let left_pos = if pos + 1 < siblings { pos } else { pos - 1 };
                self.rebalance_pair(level, parent, left_pos);
            } else if len == 0 {
                self.inners[parent as usize].remove_at(pos);
                self.release(level, node);
            } else {
                let stored = self.inners[parent as usize].lasts[pos];
                let summary = match removed {
                    Some(last) if last < stored => (self.first_key(level, node), stored),
                    _ => self.summary(level, node),
                };
                let p = &mut self.inners[parent as usize];
                if (p.keys[pos], p.lasts[pos]) == summary {
                    // Nothing above can change: every entry off this path is up to date.
                    return;
                }
                p.set(pos, summary, node);
            }
            (level, node) = (level + 1, parent);
        }
        while self.height > 1 && self.inners[self.root as usize].len() == 1 {
            let child = self.inners[self.root as usize].ids[0];
            self.release(self.height, self.root);
            self.inners[child as usize].parent = NIL;
            (self.root, self.height) = (child, self.height - 1);
        }
        self.span = self.inners[self.root as usize].summary();
    }

    /// Merge the children at `left_pos` and `left_pos + 1` of `parent` (of `level`) when they
    /// fit in one node, else even them out; update their entries in `parent`.
    fn rebalance_pair(&mut self, level: usize, parent: u32, left_pos: usize) {
        let p = &self.inners[parent as usize];
        let (left, right) = (p.ids[left_pos], p.ids[left_pos + 1]);
        let (l, r) = (self.node_len(level, left), self.node_len(level, right));
        let merged = l + r <= Self::capacity(level);
        let want = if merged { l + r } else { usize::midpoint(l, r) };
        self.move_boundary(level, parent, left_pos, want);
        if merged {
            self.inners[parent as usize].remove_at(left_pos + 1);
            self.release(level, right);
        }
    }

    /// Move entries between the children at `left_pos` and `left_pos + 1` of `parent` (of
    /// `level`) until the left one holds `want` of them; the movers are adopted and both
    /// children's entries in `parent` brought up to date (an emptied right child keeps an
    /// entry for the caller to remove).
    #[inline(always)]
    #[allow(
        clippy::inline_always,
        reason = "summaries are max scans, vectorised in the AVX2 frame of `link` and `unlink`"
    )]
    fn move_boundary(&mut self, level: usize, parent: u32, left_pos: usize, want: usize) {
        let p = &self.inners[parent as usize];
        let (left, right) = (p.ids[left_pos], p.ids[left_pos + 1]);
        let (into_left, moved) = with_arena!(self, level, |arena| {
            let (l, r) = pair(arena, left, right);
            l.move_boundary(r, want)
        });
        self.adopt(level, if into_left { left } else { right }, moved);
        for (pos, node) in [(left_pos, left), (left_pos + 1, right)] {
            let summary = self.summary(level, node);
            self.inners[parent as usize].set(pos, summary, node);
        }
    }

    /// Make room in the full `leaf` for an entry at `pos` by moving entries to a sibling under
    /// the same parent (the one with more room) until the two, with the new entry, are evened
    /// out: B*-tree style, so that random inserts split less and leave leaves fuller than even
    /// splits alone (issue 11's memory budget). Returns where the entry goes, or `None` when
    /// neither sibling has room.
    ///
    /// The parent's entries for both leaves come out exact without the new entry, so that
    /// [`settle`](Self::settle) after inserting it can stop early as usual; the parent's own
    /// summary does not change (entries only move between its children).
    #[inline(always)]
    #[allow(
        clippy::inline_always,
        reason = "summaries are max scans, vectorised in the AVX2 frame of `link` and `unlink`"
    )]
    fn lend_to_sibling(&mut self, leaf: u32, pos: usize) -> Option<(u32, usize)> {
        let (parent, at) = self.position_in_parent(0, leaf);
        let p = &self.inners[parent as usize];
        let room = |i: usize| L - self.leaves[p.ids[i] as usize].len();
        let left_room = if at > 0 { room(at - 1) } else { 0 };
        let right_room = if at + 1 < p.len() { room(at + 1) } else { 0 };
        // The pair (left_pos, left_pos + 1), and the entry's position among their entries.
        let (left_pos, c) = match (left_room, right_room) {
            (0, 0) => return None,
            (l, r) if l >= r => (at - 1, L - l + pos),
            _ => (at, pos),
        };
        let total = self.node_len(0, p.ids[left_pos]) + self.node_len(0, p.ids[left_pos + 1]) + 1;
        // The left leaf ends with `total / 2` entries, the new one among them when it is early.
        let half = total / 2;
        let keep = if c < half { half - 1 } else { half };
        self.move_boundary(0, parent, left_pos, keep);
        let p = &self.inners[parent as usize];
        Some(if c < half {
            (p.ids[left_pos], c)
        } else {
            (p.ids[left_pos + 1], c - keep)
        })
    }

    /// The leaves of a bulk build, full but for the last, left to right: item `i` (its slot)
    /// starts where `order` says and ends at `last(i)`. Consumes `order`, so that its memory
    /// is free again before the slots are allocated.
    fn fill_leaves(&mut self, order: StartOrder, last: impl Fn(u32) -> u64) -> Vec<u32> {
        match order {
            StartOrder::Packed {
                keys,
                index_bits,
                zeros,
            } => {
                let pairs = keys
                    .iter()
                    .map(|&k| StartOrder::unpack(k, index_bits, zeros));
                self.fill_leaves_in(pairs, last)
            }
            StartOrder::Wide(pairs) => self.fill_leaves_in(pairs.into_iter(), last),
        }
    }

    /// [`fill_leaves`](Self::fill_leaves) from `(start, slot)` pairs in order (one copy of the
    /// loop for each representation, no branch on it per item).
    fn fill_leaves_in(
        &mut self,
        order: impl Iterator<Item = (u64, u32)>,
        last: impl Fn(u32) -> u64,
    ) -> Vec<u32> {
        let mut nodes = Vec::with_capacity(self.leaves.capacity());
        let mut leaf = Node::empty(NIL);
        for (start, slot) in order {
            leaf.push((start, last(slot)), slot);
            if leaf.len() == L {
                nodes.push(alloc(&mut self.leaves, &mut self.free_leaves, leaf));
                leaf = Node::empty(NIL);
            }
        }
        if leaf.len() > 0 {
            nodes.push(alloc(&mut self.leaves, &mut self.free_leaves, leaf));
        }
        nodes
    }

    /// A tree holding `items`, all attached, with full nodes: one sort by start, then one pass
    /// per level. The handle of item `i` is `Handle::from_bits(i as u64)`: slot `i`,
    /// generation 0, in input order.
    ///
    /// # Panics
    /// When `items` has `u32::MAX` entries or more.
    pub fn bulk_build(items: Vec<(Interval, V)>) -> Self {
        check_count(items.len());
        // Fresh memory is faulted in a page at a time, about half of a build's time at 10^5
        // intervals: the arrays come and go so that the fewest are alive at once and a freed
        // one is reused. The sort (its scratch freed) runs before the tree's arrays exist, and
        // the order is freed before the slots are allocated.
        let order = StartOrder::of(items.iter().map(|(iv, _)| iv.start()).collect());
        let mut tree = Self::with_node_capacity(items.len());
        let leaves = tree.fill_leaves(order, |i| items[i as usize].0.last());
        tree.finish_build(leaves, items.into_iter().map(|(_, value)| value));
        tree
    }

    /// [`bulk_build`](Self::bulk_build) from columns: interval `i` is `[starts[i], lasts[i]]`
    /// with `values[i]`, the same tree holding less memory at once (`starts` becomes the
    /// sort's keys in place, `lasts` is freed before the slots are allocated).
    ///
    /// # Errors
    /// [`Error::StartAfterLast`] for the first interval whose start is above its last; nothing
    /// is built.
    ///
    /// # Panics
    /// When the three lengths differ, or there are `u32::MAX` intervals or more.
    pub fn from_columns(
        starts: Vec<u64>,
        lasts: Vec<u64>,
        values: impl ExactSizeIterator<Item = V>,
    ) -> Result<Self, Error> {
        assert!(
            starts.len() == lasts.len() && values.len() == starts.len(),
            "IntervalTree::from_columns: columns of different lengths"
        );
        check_count(starts.len());
        for (&start, &last) in starts.iter().zip(&lasts) {
            Interval::new(start, last)?;
        }
        let n = starts.len();
        let order = StartOrder::of(starts); // before the tree's arrays: see `bulk_build`
        let mut tree = Self::with_node_capacity(n);
        let leaves = tree.fill_leaves(order, |i| lasts[i as usize]);
        drop(lasts);
        tree.finish_build(leaves, values);
        Ok(tree)
    }

    /// The rest of a bulk build once its `leaves` are filled: the slots, in input order, then
    /// the inner levels until one node is left (always at least one above the leaves).
    fn finish_build(
        &mut self,
        mut level_nodes: Vec<u32>,
        values: impl ExactSizeIterator<Item = V>,
    ) {
        if values.len() == 0 {
            return;
        }
        self.len = values.len();
        self.slots = Slots::with_capacity(self.len);
        for value in values {
            self.slots.allocate(value);
        }
        for &leaf in &level_nodes {
            self.adopt(0, leaf, 0..self.leaves[leaf as usize].len());
        }
        let mut level = 0;
        while level == 0 || level_nodes.len() > 1 {
            let mut above = Vec::with_capacity(level_nodes.len().div_ceil(F));
            for chunk in level_nodes.chunks(F) {
                let mut inner = Node::empty(NIL);
                for &child in chunk {
                    inner.push(self.summary(level, child), child);
                }
                let id = alloc(&mut self.inners, &mut self.free_inners, inner);
                self.adopt(level + 1, id, 0..chunk.len());
                above.push(id);
            }
            level_nodes = above;
            level += 1;
        }
        (self.root, self.height) = (level_nodes[0], level);
        self.span = self.inners[self.root as usize].summary();
        debug_assert!(self.check_invariants().is_ok());
    }
}

/// A bulk build's item count, which slot numbers must hold (`NIL` excluded).
fn check_count(n: usize) {
    assert!(
        u32::try_from(n).is_ok_and(|n| n != NIL),
        "IntervalTree: more than u32::MAX - 1 slots"
    );
}

/// The free list of `level`'s arena.
fn level_free<'a>(
    leaves: &'a mut Vec<u32>,
    inners: &'a mut Vec<u32>,
    level: usize,
) -> &'a mut Vec<u32> {
    if level == 0 {
        leaves
    } else {
        inners
    }
}
