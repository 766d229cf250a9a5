//! Where the subscriptions are, coarsely: a bit set in front of the tree that answers "does any
//! subscription touch the blocks around this range?" in a load or two, for starts in pages the
//! page cache has never seen.
//!
//! Why: a start in a new page that hits nothing walks to a leaf; at 10^5 subscriptions and more
//! the walk's lower levels are not in any cache, and the start waits for them from memory one
//! after the other. This set is a few bytes per subscription and stays in cache. It belongs to
//! the protocol, not to the tree: the Python `IntervalTree` keeps to 48 bytes an interval
//! (issue 11), and its callers' queries are not an emulator's stream of stores.
//!
//! How: address blocks come in levels of `2^(15 + 3k)` bytes (32 KiB, 256 KiB, 2 MiB, ...,
//! k < [`LEVELS`]; no level of single pages: a range of a few pages then probes a block or
//! two a level, and a page-sized subscription costs one mark). An interval is marked at the
//! first level where it touches at most [`SPAN`] blocks, all levels in one bit set. A range
//! overlaps no interval when, at every level that holds marks, none of the blocks it touches
//! is marked: an interval that overlaps the range shares a block with it at the interval's
//! level, and that block is marked. A block is marked by three bits of one 64-bit word (a
//! blocked Bloom filter: one cache line a probe), at positions hashed from the block and its
//! level. Bits set by other blocks (the hash) or by an interval that does not reach the range
//! (blocks are coarse) only make the start walk, as it would have without the set.
//!
//! Exactness: a bit is never cleared while an interval marked it. A removal clears nothing
//! (another interval may share the bit); its marks are counted as stale, and the set is rebuilt
//! from the tree's intervals when the stale marks outnumber the live ones and fill a 32nd of
//! the bits, or when the marks would fill more than an eighth of the bits (rebuilt then to
//! between a 16th and a 32nd): a rebuild visits every interval once, after at least half as
//! many changes, amortised O(1) a change. `Protocol::check_invariants` checks every interval's
//! marks.

use crate::interval::Interval;
use crate::tree::prefetch;

/// Levels of blocks: `2^(15 + 3k)` bytes for k < 17; the last level's blocks are half of the
/// address space, so every interval touches at most two there.
const LEVELS: u32 = 17;

/// An interval is marked at the first level where it touches at most this many blocks.
const SPAN: u64 = 8;

/// Bits per mark at a rebuild (before rounding up to a power of two): between 16 and 32, and
/// a rebuild once the marks pass one in 8 bits. A probe finds another block's three bits
/// about once in 200 after a rebuild, once in 30 at the fullest.
const BITS_PER_MARK: usize = 16;
const MAX_FILL: usize = 8;

/// Removals rebuild the set once the stale marks are more than one in this many bits.
const STALE_SHARE: usize = 32;

/// A range is probed at up to this many blocks a level (one load each, all independent):
/// stores, and ranges up to 512 KiB at the finest level; wider ranges walk.
const MAX_PROBES: u64 = 16;

/// Sets of at least this many words (32 KiB, a first-level data cache) are prefetched.
const PREFETCH_WORDS: usize = 1 << 12;

/// The smallest set: 4096 bits, 512 bytes.
const MIN_WORDS: usize = 64;

/// How often lately a probe ruled a range out, as a decaying score: each probe keeps 31/32
/// of it and adds [`RULED_OUT`] when it ruled the range out, so that it tends to
/// `32 * RULED_OUT` times the share ruled out.
const RULED_OUT: u16 = 64;
const SCORE_MAX: u16 = 32 * RULED_OUT;

/// Below this score (a quarter ruled out) probes do not pay for themselves: a probe costs a
/// few loads, a sixth to a third of the walk it saves, and a stream of hits would pay it on
/// every start for nothing. One start in [`SAMPLE`] probes all the same, to see the stream
/// change; a batch walks every range and scores each after its walk instead
/// ([`OccupiedBlocks::score_walked`]).
const PAYS: u16 = SCORE_MAX / 4;
const SAMPLE: u8 = 16;

/// The set; see the module docs.
#[derive(Debug)]
pub struct OccupiedBlocks {
    /// The bits; a power-of-two number of words, or none before the first mark.
    words: Vec<u64>,
    /// Bit k: a mark was set at level k since the last rebuild.
    levels: u32,
    /// Marks set since the last rebuild, live and stale.
    marks: usize,
    /// Of those, the marks of intervals that have left the tree since.
    stale: usize,
    /// Whether probing pays ([`PAYS`]); starts at the top, as if every probe had.
    score: u16,
    /// Starts asked while probing did not pay, modulo 256.
    pub(super) unprobed: u8,
}

impl Default for OccupiedBlocks {
    fn default() -> Self {
        Self {
            words: Vec::new(),
            levels: 0,
            marks: 0,
            stale: 0,
            score: SCORE_MAX,
            unprobed: 0,
        }
    }
}

/// log2 of a level's block size.
#[inline]
fn block_shift(level: u32) -> u32 {
    15 + 3 * level
}

/// The level `iv` is marked at, with its first and last block there.
fn blocks_of(iv: Interval) -> (u32, u64, u64) {
    (0..LEVELS)
        .map(|level| {
            let shift = block_shift(level);
            (level, iv.start() >> shift, iv.last() >> shift)
        })
        .find(|&(_, first, last)| last - first < SPAN)
        .expect("the last level has two blocks")
}

/// The marks `iv` sets.
fn marks_of(iv: Interval) -> usize {
    let (_, first, last) = blocks_of(iv);
    block_count(first, last)
}

/// The blocks from `first` to `last`, at most [`SPAN`] for an interval's.
fn block_count(first: u64, last: u64) -> usize {
    #[allow(clippy::cast_possible_truncation, reason = "at most SPAN")]
    let count = (last - first + 1) as usize;
    count
}

impl OccupiedBlocks {
    /// The word of `block` at `level` and its three bits in it: a multiplicative hash of the
    /// pair, the word from its top bits and the bits from three 6-bit fields just below them
    /// (the top bits of the product depend on every bit of the key; one cache line a probe,
    /// and a single bit's false answers to about the cube).
    #[inline]
    fn bits(&self, level: u32, block: u64) -> (usize, u64) {
        const MIX: u64 = 0x9E37_79B9_7F4A_7C15;
        const LEVEL: u64 = 0x632B_E59B_D9B4_E019;
        let key = block.wrapping_add(u64::from(level).wrapping_mul(LEVEL));
        let h = key.wrapping_mul(MIX);
        // `words.len()` is a power of two from 2^6 to 2^46 (see `rebuild`).
        let w = self.words.len().trailing_zeros();
        #[allow(
            clippy::cast_possible_truncation,
            reason = "below `words.len()`, a usize"
        )]
        let word = (h >> (64 - w)) as usize;
        let f = h >> (64 - w - 18);
        let mask = (1 << (f & 63)) | (1 << ((f >> 6) & 63)) | (1 << ((f >> 12) & 63));
        (word, mask)
    }

    /// Whether `block`'s bits at `level` are all set.
    #[inline]
    fn marked(&self, level: u32, block: u64) -> bool {
        let (word, mask) = self.bits(level, block);
        self.words[word] & mask == mask
    }

    /// Whether `q` certainly overlaps no interval, from a probe when probes have been paying
    /// for themselves lately (or when this start is one in [`SAMPLE`]); `false` otherwise.
    #[inline]
    pub fn rules_out(&mut self, q: Interval) -> bool {
        if !self.pays() {
            self.unprobed = self.unprobed.wrapping_add(1);
            if self.unprobed % SAMPLE != 0 {
                return false;
            }
        }
        let ruled_out = !self.may_overlap(q);
        self.record(ruled_out);
        ruled_out
    }

    /// Whether probes have been paying for themselves lately: [`rules_out`](Self::rules_out)
    /// probes every range then, else one in [`SAMPLE`].
    #[inline]
    pub fn pays(&self) -> bool {
        self.score >= PAYS
    }

    /// Score a range that was walked without a probe as a probe would have scored it, for
    /// callers that walk whole batches while probes do not pay: a range that `hit` an interval
    /// is never ruled out, so only one that hit nothing is probed (the walk already paid for
    /// it). Every range counts, where [`rules_out`](Self::rules_out) samples.
    #[inline]
    pub fn score_walked(&mut self, q: Interval, hit: bool) {
        let ruled_out = !hit && !self.may_overlap(q);
        self.record(ruled_out);
    }

    /// One probe's outcome into the decaying score.
    #[inline]
    fn record(&mut self, ruled_out: bool) {
        self.score -= self.score / 32;
        if ruled_out {
            self.score += RULED_OUT;
        }
    }

    /// Start loading the words that [`rules_out`](Self::rules_out)`(q)` will read, when it
    /// will probe and the set is too large to stay in the first-level cache: the word of
    /// `q`'s first block at each level with marks (a store's only block). The load is a miss
    /// at 10^5 subscriptions and more; started before the caller's other checks, it overlaps
    /// them. A smaller set is read at once, and the hashing would only add to the start.
    #[inline]
    pub fn prefetch(&self, q: Interval) {
        if self.words.len() < PREFETCH_WORDS || !self.pays() {
            return;
        }
        for level in self.levels_in_use() {
            let (word, _) = self.bits(level, q.start() >> block_shift(level));
            prefetch(&self.words[word]);
        }
    }

    /// The levels that hold marks, finest first.
    #[inline]
    fn levels_in_use(&self) -> impl Iterator<Item = u32> {
        let mut levels = self.levels;
        std::iter::from_fn(move || {
            let level = (levels != 0).then(|| levels.trailing_zeros())?;
            levels &= levels - 1;
            Some(level)
        })
    }

    /// Whether some interval may overlap `q`; `false` only when none does. A range wider than
    /// [`MAX_PROBES`] blocks at a level with marks is not probed: `true`.
    #[inline]
    fn may_overlap(&self, q: Interval) -> bool {
        if self.words.is_empty() {
            return false; // nothing was ever marked: no interval is in the tree
        }
        for level in self.levels_in_use() {
            let shift = block_shift(level);
            let (first, last) = (q.start() >> shift, q.last() >> shift);
            if last - first >= MAX_PROBES {
                return true;
            }
            if (first..=last).any(|block| self.marked(level, block)) {
                return true;
            }
        }
        false
    }

    /// `iv` is entering the tree, whose other intervals `others` yields (called only when the
    /// set must grow first).
    pub fn insert<I: Iterator<Item = Interval>>(
        &mut self,
        iv: Interval,
        others: impl FnOnce() -> I,
    ) {
        let new = marks_of(iv);
        if (self.marks + new) * MAX_FILL > self.words.len() * 64 {
            self.rebuild(others(), new);
        }
        self.mark(iv);
    }

    /// `iv` has left the tree, whose intervals `rest` yields (called only for a rebuild).
    pub fn remove<I: Iterator<Item = Interval>>(&mut self, iv: Interval, rest: impl FnOnce() -> I) {
        self.stale += marks_of(iv);
        // Stale marks only cost false answers, and inserts rebuild before the marks, stale or
        // not, fill an eighth of the bits: a removal rebuilds once the stale marks are most of
        // them and a 32nd of the bits, so that a small set with a subscription coming and
        // going rebuilds once in a hundred removals, not at each.
        if self.stale * 2 > self.marks && self.stale * STALE_SHARE > self.words.len() * 64 {
            self.rebuild(rest(), 0);
        }
    }

    /// Bytes of the bit set.
    pub fn bytes(&self) -> usize {
        self.words.len() * 8
    }

    /// Forget everything: the tree was emptied.
    pub fn clear(&mut self) {
        *self = Self::default();
    }

    /// Whether every bit `iv` sets is set (for `check_invariants`).
    pub fn covers(&self, iv: Interval) -> bool {
        let (level, first, last) = blocks_of(iv);
        !self.words.is_empty()
            && self.levels & (1 << level) != 0
            && (first..=last).all(|block| self.marked(level, block))
    }

    /// Set `iv`'s bits; the set has room.
    fn mark(&mut self, iv: Interval) {
        let (level, first, last) = blocks_of(iv);
        self.levels |= 1 << level;
        for block in first..=last {
            let (word, mask) = self.bits(level, block);
            self.words[word] |= mask;
        }
        self.marks += block_count(first, last);
    }

    /// Mark `live` afresh in a set sized for them and `extra` more marks.
    fn rebuild(&mut self, live: impl Iterator<Item = Interval>, extra: usize) {
        let estimate = self.marks - self.stale + extra;
        let words = (estimate.max(1) * BITS_PER_MARK)
            .div_ceil(64)
            .next_power_of_two()
            .max(MIN_WORDS);
        assert!(words <= 1 << 46, "OccupiedBlocks: {estimate} marks");
        (self.words, self.levels, self.marks, self.stale) = (vec![0; words], 0, 0, 0);
        live.for_each(|iv| self.mark(iv));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tree::tests::xorshift;

    fn iv(start: u64, last: u64) -> Interval {
        Interval::new(start, last).unwrap()
    }

    /// A seeded generator with an index helper.
    struct Rng(Box<dyn FnMut() -> u64>);
    impl Rng {
        fn new(seed: u64) -> Self {
            Self(Box::new(xorshift(seed)))
        }

        fn next(&mut self) -> u64 {
            (self.0)()
        }

        /// An index below `n`.
        fn below(&mut self, n: usize) -> usize {
            usize::try_from(self.next() % n as u64).expect("below n")
        }
    }

    #[test]
    fn an_interval_is_marked_where_it_touches_at_most_span_blocks() {
        const KIB32: u64 = 0x8000;
        assert_eq!(blocks_of(iv(0x1000, 0x1fff)), (0, 0, 0)); // a page: one 32 KiB block
        assert_eq!(blocks_of(iv(KIB32 - 1, KIB32)), (0, 0, 1)); // two blocks by a byte each
        assert_eq!(blocks_of(iv(0, 8 * KIB32 - 1)), (0, 0, 7));
        assert_eq!(blocks_of(iv(0, 8 * KIB32)), (1, 0, 1)); // into a ninth: 256 KiB blocks
        assert_eq!(blocks_of(iv(0, u64::MAX)), (16, 0, 1));
        assert_eq!(
            blocks_of(iv(u64::MAX, u64::MAX)),
            (0, u64::MAX >> 15, u64::MAX >> 15)
        );
        assert_eq!(marks_of(iv(KIB32 - 1, KIB32)), 2);
    }

    #[test]
    fn an_empty_set_answers_no_until_something_is_inserted() {
        let mut set = OccupiedBlocks::default();
        assert!(!set.may_overlap(iv(0, u64::MAX)));
        set.insert(iv(0x5000, 0x5fff), std::iter::empty);
        assert!(set.may_overlap(iv(0x5800, 0x5800)));
        assert!(set.may_overlap(iv(0, u64::MAX)), "too wide to probe");
        set.clear();
        assert!(!set.may_overlap(iv(0x5800, 0x5800)));
    }

    /// Random intervals in and out, against the list of those in: no range that overlaps one
    /// is ever answered "no", and most ranges far from all are (the set does its job).
    #[test]
    fn no_overlap_is_ever_missed_through_inserts_removes_and_rebuilds() {
        let mut rng = Rng::new(0x2545_F491_4F6C_DD1D);
        let mut set = OccupiedBlocks::default();
        let mut live: Vec<Interval> = Vec::new();
        let mut rebuilds = 0;
        let mut answered_no = 0;
        let mut probed_clear = 0;
        let mut rebuilt;
        for step in 0..4_000 {
            // Two inserts to a remove for the first half (the set grows), the other way round
            // for the second (stale marks pile up and rebuilds shrink it).
            let grow = live.len() < 50 || (rng.next() % 3 != 0) == (step < 2_000);
            if grow {
                // 1..512 pages (some wider than the first levels), starts in 2^40 bytes; one in
                // 64 anywhere in u64, of any length.
                let new = if step % 64 == 0 {
                    let a = rng.next();
                    iv(
                        a.min(a.wrapping_add(rng.next() >> 20)),
                        a.max(a.wrapping_add(rng.next() >> 20)),
                    )
                } else {
                    let start = (rng.next() % (1 << 28)) << 12;
                    iv(start, start + ((1 + rng.next() % 512) << 12) - 1)
                };
                let before = set.words.len();
                set.insert(new, || live.iter().copied());
                rebuilt = set.words.len() != before;
                live.push(new);
            } else {
                let gone = live.swap_remove(rng.below(live.len()));
                let before = set.marks;
                set.remove(gone, || live.iter().copied());
                rebuilt = set.marks < before;
            }
            rebuilds += usize::from(rebuilt);
            if rebuilt || step % 64 == 0 {
                for iv in &live {
                    assert!(set.covers(*iv), "step {step}: {iv:?} not covered");
                }
            }
            // Queries: a random page, a random byte, and a page of a live interval.
            let page = (rng.next() % (1 << 28)) << 12;
            let byte = rng.next() % (1 << 40);
            let hit = live[rng.below(live.len())];
            for q in [
                iv(page, page + 4095),
                iv(byte, byte),
                iv(hit.last(), hit.last()),
            ] {
                let overlaps = live.iter().any(|l| l.overlaps(q));
                let may = set.may_overlap(q);
                assert!(
                    may || !overlaps,
                    "step {step}: {q:?} overlaps but was answered no"
                );
                if !overlaps {
                    probed_clear += 1;
                    answered_no += usize::from(!may);
                }
            }
        }
        assert!(rebuilds > 10, "rebuilds {rebuilds}");
        // At most ~1,300 intervals over 2^40 bytes: nearly every clear range answered "no"
        // (95% with this seed).
        assert!(
            answered_no * 10 > probed_clear * 9,
            "{answered_no} of {probed_clear}"
        );
    }

    #[test]
    fn removals_are_forgotten_at_the_rebuild_they_trigger() {
        let mut set = OccupiedBlocks::default();
        let mut live: Vec<Interval> = (0..1000).map(|i| iv(i << 30, (i << 30) + 0xfff)).collect();
        for (i, &iv) in live.iter().enumerate() {
            set.insert(iv, || live[..i].iter().copied());
        }
        assert_eq!((set.marks, set.words.len() * 64), (1000, 16384));
        // Remove them one by one from the front: the rebuild comes when the stale marks
        // outnumber the live ones and fill a 32nd of the bits (the 513th removal here), and
        // then the removed pages answer "no".
        let gone: Vec<_> = live.drain(..600).collect();
        for (i, &g) in gone.iter().enumerate() {
            let rest = live.iter().chain(&gone[i + 1..]).copied();
            let rest: Vec<_> = rest.collect();
            set.remove(g, || rest.into_iter());
            let rebuilt = set.stale == 0;
            assert_eq!(rebuilt, i == 512, "removal {i}");
            if rebuilt {
                // 487 marks of 3 bits in 8192: a removed page answers "maybe" only by
                // sharing all three of its bits.
                let maybe = gone[..=i].iter().filter(|&&g| set.may_overlap(g)).count();
                assert!(maybe <= 3, "{maybe} removed pages still answer maybe");
            }
        }
        assert_eq!((set.marks, set.stale), (487, 87));
        assert!(live.iter().all(|&l| set.covers(l) && set.may_overlap(l)));
    }

    #[test]
    fn a_subscription_coming_and_going_rebuilds_a_small_set_rarely() {
        let mut set = OccupiedBlocks::default();
        let kept = iv(0x10_0000, 0x10_0fff);
        set.insert(kept, std::iter::empty);
        let mut rebuilds = 0;
        for k in 0..1_000u64 {
            let passing = iv(k << 32, (k << 32) + 0xfff);
            set.insert(passing, || std::iter::once(kept));
            set.remove(passing, || std::iter::once(kept));
            rebuilds += usize::from(set.stale == 0);
        }
        assert!(rebuilds <= 10, "{rebuilds} rebuilds");
        assert!(set.covers(kept));
    }

    #[test]
    fn a_stream_of_hits_stops_the_probes_until_sampled_probes_rule_ranges_out_again() {
        let mut set = OccupiedBlocks::default();
        let sub = iv(0x10_0000, 0x10_ffff);
        set.insert(sub, std::iter::empty);
        let clear = iv(0x7000_0000, 0x7000_0fff);
        assert!(set.rules_out(clear), "probes pay at first");
        // Starts that all hit: the score decays below PAYS within a few dozen, and further on
        // the sampled ones.
        for _ in 0..200 {
            assert!(!set.rules_out(sub));
        }
        assert!(set.score < PAYS);
        // Now only one start in SAMPLE probes: a run of clear ranges is ruled out on those
        // alone until the score is back above PAYS, then on every start.
        let ruled_out: Vec<bool> = (0..SAMPLE * 10).map(|_| set.rules_out(clear)).collect();
        let on = ruled_out.iter().rposition(|&r| !r).unwrap() + 1;
        let before: Vec<usize> = (0..on).filter(|&i| ruled_out[i]).collect();
        assert!(before.len() >= 2, "{ruled_out:?}");
        assert!(before
            .windows(2)
            .all(|w| w[1] - w[0] == usize::from(SAMPLE)));
        assert!(on < usize::from(SAMPLE) * 5, "{ruled_out:?}");
        assert!(set.score >= PAYS);
    }

    #[test]
    fn walked_ranges_score_as_probes_would_have() {
        let mut set = OccupiedBlocks::default();
        let sub = iv(0x10_0000, 0x10_0fff);
        set.insert(sub, std::iter::empty);
        // Walked ranges that hit: never ruled out, so the score decays as under probes.
        for _ in 0..60 {
            set.score_walked(sub, true);
        }
        assert!(!set.pays());
        let low = set.score;
        // A range that hit nothing next to the subscription (in its marked block): probed,
        // not ruled out, the score decays further.
        let near = iv(0x10_4000, 0x10_4fff);
        assert!(set.may_overlap(near));
        set.score_walked(near, false);
        assert!(set.score < low);
        // Clear ranges walked without hits: each probed and ruled out, every one counted (no
        // sampling), so the score is back above PAYS within a dozen.
        let clear = iv(0x7000_0000, 0x7000_0fff);
        let walked = (1..=64)
            .find(|_| {
                set.score_walked(clear, false);
                set.pays()
            })
            .unwrap();
        assert!(walked <= 12, "{walked}");
    }
}
