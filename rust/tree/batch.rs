//! Many queries at once: the walk behind the notifier's `invalidate_many` (issue 11).
//!
//! A lone descent in a tree larger than the cache waits for one miss per level, one after the
//! other. Here several descents are in flight: each *lane* walks one query, and at each step it
//! starts loading the node it will read next and hands over to the next lane, so that the misses
//! of [`LANES`] walks overlap instead of adding up. Each query's hits are kept in its own walk
//! order (ascending start, as [`BPlusTree::overlaps`] yields them), so a caller can then handle
//! the queries one by one, in order, exactly as if each had walked alone ([`Found::hits`]).

use std::array;

use super::node::{prefetch, vectorised};
use super::query::Cursor;
use super::{leaf_interval, BPlusTree, Handle};
use crate::interval::Interval;

/// Walks in flight at once: enough to cover a memory latency with the work of the others,
/// few enough that their nodes stay in the L1 cache between two steps.
const LANES: usize = 8;

/// The hits of a batch of queries, from [`BPlusTree::find_overlaps`]; reusable (its buffers
/// are kept between batches).
#[derive(Debug, Default)]
pub struct Found {
    /// `spans[i]` is the range of `hits` holding query `i`'s hits.
    spans: Vec<(u32, u32)>,
    /// `(slot, interval)` of each hit, grouped by query.
    hits: Vec<(u32, Interval)>,
    /// Each lane's hits for its current query, moved to `hits` when its walk ends.
    lanes: [Vec<(u32, Interval)>; LANES],
}

impl Found {
    /// An empty result; allocates nothing until used.
    pub fn new() -> Self {
        Self::default()
    }

    /// The number of queries of the last batch.
    pub fn len(&self) -> usize {
        self.spans.len()
    }

    /// Whether the last batch had no query.
    pub fn is_empty(&self) -> bool {
        self.spans.is_empty()
    }

    /// How many intervals overlap query `i`.
    pub fn count(&self, i: usize) -> usize {
        let (a, b) = self.spans[i];
        (b - a) as usize
    }

    /// The hits of query `i`, as `(slot, interval)` in the order
    /// [`BPlusTree::for_each_overlap_slot`] reports them; [`BPlusTree::slot_entry`] reads a
    /// hit's handle and value, as long as the tree has had no insert, remove, attach or detach
    /// since the batch (the notifier guarantees this under its lock).
    pub fn hits(&self, i: usize) -> &[(u32, Interval)] {
        let (a, b) = self.spans[i];
        &self.hits[a as usize..b as usize]
    }

    /// Move lane `lane`'s hits to the end of `hits` as query `query`'s.
    fn close(&mut self, lane: usize, query: usize) {
        let from = self.hits.len();
        self.hits.append(&mut self.lanes[lane]);
        let to = self.hits.len();
        let span = |n: usize| u32::try_from(n).expect("fewer than 2**32 hits in one batch");
        self.spans[query] = (span(from), span(to));
    }
}

/// One walk in flight: its query's index and cursor, and the node it reads at its next step
/// (already being loaded). `query == IDLE` when the lane has no walk.
struct Lane {
    query: usize,
    cursor: Cursor,
    next: Option<(u32, bool)>,
}

const IDLE: usize = usize::MAX;

impl<V, const L: usize, const F: usize> BPlusTree<V, L, F> {
    /// The attached intervals overlapping each of `queries`, into `found` (its old content is
    /// replaced): for query `i`, the intervals [`overlaps`](Self::overlaps) would yield, in the
    /// same order. Up to eight descents run interleaved, so that their cache misses overlap.
    /// O(log n + k) node visits per query, as a single query; no allocation once `found` has
    /// grown to the batch.
    pub fn find_overlaps(&self, queries: &[Interval], found: &mut Found) {
        self.find_overlaps_where(queries, found, |_| true);
    }

    /// [`find_overlaps`](Self::find_overlaps) for the queries `wanted` is true of, asked in
    /// order; the others are left with no hits, unwalked (the caller knows they overlap
    /// nothing).
    pub fn find_overlaps_where(
        &self,
        queries: &[Interval],
        found: &mut Found,
        mut wanted: impl FnMut(Interval) -> bool,
    ) {
        vectorised! {
            found.spans.clear();
            found.spans.resize(queries.len(), (0, 0));
            found.hits.clear();
            let mut lanes: [Lane; LANES] = array::from_fn(|_| Lane {
                query: IDLE,
                cursor: Cursor::new(None, 0, 0),
                next: None,
            });
            let mut unasked = (0..queries.len()).filter(|&i| wanted(queries[i]));
            // Give `lane` the next wanted query; false when there is none left.
            let mut start = |lane: &mut Lane| {
                let Some(query) = unasked.next() else {
                    return false;
                };
                let q = queries[query];
                lane.query = query;
                lane.cursor = self.cursor(q.start(), q.last());
                true
            };
            let mut live = 0;
            for lane in &mut lanes {
                if !start(lane) {
                    break;
                }
                live += 1;
            }
            while live > 0 {
                for (id, lane) in lanes.iter_mut().enumerate() {
                    if lane.query == IDLE || !self.step(lane, &mut found.lanes[id]) {
                        continue;
                    }
                    found.close(id, lane.query);
                    if !start(lane) {
                        lane.query = IDLE;
                        live -= 1;
                    }
                }
            }
        }
    }

    /// One step of `lane`: read the node loaded since its last step, then pick the next one and
    /// start loading it. Returns true when the walk is over.
    #[inline(always)]
    #[allow(
        clippy::inline_always,
        reason = "inlined into the AVX2 frame of `vectorised!`"
    )]
    fn step(&self, lane: &mut Lane, hits: &mut Vec<(u32, Interval)>) -> bool {
        match lane.next.take() {
            Some((inner, false)) => lane.cursor.enter(&self.inners, inner),
            Some((leaf, true)) => {
                let node = &self.leaves[leaf as usize];
                let mut mask = lane.cursor.leaf_hits(node);
                while mask != 0 {
                    let pos = mask.trailing_zeros() as usize;
                    mask &= mask - 1;
                    let slot = node.ids[pos];
                    // Its entry is read when the hit is handled: start loading it now.
                    self.prefetch_slot(slot);
                    hits.push((slot, leaf_interval(node, pos)));
                }
            }
            None => {}
        }
        match lane.cursor.advance(&self.inners) {
            Some((node, is_leaf)) => {
                if is_leaf {
                    self.leaves[node as usize].prefetch_scan();
                } else {
                    // An inner node's child id is read right after its scan.
                    let inner = &self.inners[node as usize];
                    inner.prefetch_scan();
                    prefetch(&inner.ids[0]);
                    prefetch(&inner.ids[F - 1]);
                }
                lane.next = Some((node, is_leaf));
                false
            }
            None => true,
        }
    }

    /// The hits of query `i` of the batch that filled `found`, in the order
    /// [`overlaps`](Self::overlaps) yields them, without walking; `found` must be as
    /// [`Found::hits`] says.
    pub fn found<'a>(
        &'a self,
        found: &'a Found,
        i: usize,
    ) -> impl Iterator<Item = (Handle, Interval, &'a V)> + 'a {
        found.hits(i).iter().map(|&(slot, iv)| {
            let (h, value) = self.slot_entry(slot);
            (h, iv, value)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tree::tests::xorshift;
    use crate::tree::IntervalTree;

    /// What `find_overlaps` + `Found::hits` report for each query, against `overlaps`.
    fn check_batch<const L: usize, const F: usize>(
        tree: &BPlusTree<u64, L, F>,
        queries: &[Interval],
        found: &mut Found,
    ) {
        tree.find_overlaps(queries, found);
        assert_eq!(found.len(), queries.len());
        for (i, &q) in queries.iter().enumerate() {
            let want: Vec<_> = tree.overlaps(q).map(|(h, iv, v)| (h, iv, *v)).collect();
            let read: Vec<_> = tree.found(found, i).map(|(h, iv, v)| (h, iv, *v)).collect();
            assert_eq!(read, want, "query {i}: {q:?}");
            let slots: Vec<_> = want.iter().map(|&(h, iv, _)| (h.slot(), iv)).collect();
            assert_eq!(found.hits(i), slots, "query {i}: {q:?}");
            assert_eq!(found.count(i), want.len());
        }
        // Every third query not wanted: asked once each, in order, and left with no hits.
        let mut asked = Vec::new();
        tree.find_overlaps_where(queries, found, |q| {
            asked.push(q);
            asked.len() % 3 != 0
        });
        assert_eq!(asked, queries);
        for (i, &q) in queries.iter().enumerate() {
            let want = if i % 3 == 2 {
                0
            } else {
                tree.overlaps(q).count()
            };
            assert_eq!(found.count(i), want, "query {i}: {q:?}");
            assert_eq!(tree.found(found, i).count(), want);
        }
    }

    #[test]
    fn batches_answer_as_single_queries_in_order() {
        let mut rand = xorshift(0x9e37_79b9_7f4a_7c15);
        // Small nodes for a deep tree; wide intervals so that several subtrees hit at once.
        let mut tree: BPlusTree<u64, 8, 8> = BPlusTree::new();
        let mut found = Found::new();
        for step in 0..3_000u64 {
            let start = rand() % 10_000;
            let len = if rand() % 10 == 0 {
                rand() % 2_000
            } else {
                rand() % 20
            };
            let h = tree.insert(Interval::new(start, start + len).unwrap(), step);
            if step % 5 == 0 {
                assert!(tree.detach(h)); // allocated but invisible to every query
            }
        }
        assert!(tree.height >= 3);
        for size in [0, 1, LANES - 1, LANES, LANES + 1, 100] {
            let queries: Vec<Interval> = (0..size)
                .map(|k| match k % 4 {
                    // Outside the span, at the extremes, and at random.
                    0 => Interval::new(u64::MAX - 5, u64::MAX).unwrap(),
                    1 => Interval::new(0, rand() % 50).unwrap(),
                    _ => {
                        let qs = rand() % 12_000;
                        Interval::new(qs, qs + rand() % 300).unwrap()
                    }
                })
                .collect();
            // The same `Found` every time: each batch replaces the last one's answers.
            check_batch(&tree, &queries, &mut found);
        }
    }

    #[test]
    fn found_hits_can_be_written_like_overlaps() {
        let mut tree = IntervalTree::new();
        for k in 0..500u64 {
            tree.insert(Interval::new(k * 10, k * 10 + 25).unwrap(), 0u64);
        }
        let queries = [
            Interval::new(100, 100).unwrap(),
            Interval::new(95, 130).unwrap(),
        ];
        let mut found = Found::new();
        tree.find_overlaps(&queries, &mut found);
        for i in 0..queries.len() {
            for &(slot, iv) in found.hits(i) {
                *tree.slot_entry_mut(slot).1 += iv.start() + 1;
            }
        }
        let written: Vec<(u64, u64)> = tree
            .iter()
            .filter(|&(_, _, &v)| v != 0)
            .map(|(_, iv, &v)| (iv.start(), v))
            .collect();
        // [80, 105] .. [100, 125] hit the first query; [70, 95] .. [130, 155] the second.
        let once = |s: u64| (s, s + 1);
        let twice = |s: u64| (s, 2 * (s + 1));
        assert_eq!(
            written,
            [
                once(70),
                twice(80),
                twice(90),
                twice(100),
                once(110),
                once(120),
                once(130)
            ]
        );
    }
}
