//! Native hits, written to their subscriptions later and together.
//!
//! A native subscription's whole invalidation is two writes to its [`super::Sub`]: its seq
//! (R13, R24) and, once until the next drain, its journal flag. The `Sub` lives in the tree's
//! slot arena, and a start's walk finds a hit in a leaf without reading the slot: written at
//! once, each hit waits for one more cache miss of its own (40 of the 260 ns of a start+end
//! pair with one hit at 10^5 subscriptions, where the arena is larger than the L2 cache). So
//! a start only logs `(slot, cur_seq)`, in hit order, and the log is written out ("applied")
//! when it fills up or before anything reads or frees a subscription, the slots loaded
//! several at a time so that their misses overlap. Applied in hit order, it leaves every seq
//! and the journal exactly as writing each hit at once would have.
//!
//! Telling a native hit from a callback one without the slot takes one bit per slot, set at
//! insert: an eighth of a byte per subscription, which stays in cache.

/// Hits logged before a start applies them: 4 KB of log, a few microseconds to apply.
const CAPACITY: usize = 256;

/// Slots loaded ahead of the one being written: enough misses in flight to cover a memory
/// latency.
pub(super) const AHEAD: usize = 8;

/// The log of native hits not yet applied, and which slots hold native subscriptions.
#[derive(Debug, Default)]
pub(super) struct NativeHits {
    /// Bit `slot` is set while the subscription in `slot` (if any) is native.
    native: Vec<u64>,
    /// `(slot, cur_seq)` of each native hit not yet written, oldest first.
    log: Vec<(u32, u64)>,
}

impl NativeHits {
    /// Record whether the subscription just given `slot` is native.
    pub fn mark(&mut self, slot: u32, native: bool) {
        let (word, bit) = (slot as usize / 64, slot % 64);
        if word >= self.native.len() {
            self.native.resize(word + 1, 0);
        }
        if native {
            self.native[word] |= 1 << bit;
        } else {
            self.native[word] &= !(1 << bit);
        }
    }

    /// Whether the subscription in `slot` is native.
    #[inline]
    pub fn is_native(&self, slot: u32) -> bool {
        self.native
            .get(slot as usize / 64)
            .is_some_and(|w| w >> (slot % 64) & 1 == 1)
    }

    /// Log a hit of the native subscription in `slot`; true when the log is full and must be
    /// applied before the caller lets go of the state.
    #[inline]
    pub fn log(&mut self, slot: u32, cur_seq: u64) -> bool {
        self.log.push((slot, cur_seq));
        self.log.len() >= CAPACITY
    }

    /// Whether a hit waits to be applied.
    #[inline]
    pub fn pending(&self) -> bool {
        !self.log.is_empty()
    }

    /// The logged hits, oldest first, for [`NativeHits::applied`] to hand back.
    pub fn take(&mut self) -> Vec<(u32, u64)> {
        std::mem::take(&mut self.log)
    }

    /// Every hit of `log` (from [`NativeHits::take`]) is written: keep its buffer.
    pub fn applied(&mut self, mut log: Vec<(u32, u64)>) {
        debug_assert!(self.log.is_empty(), "logged while applying");
        log.clear();
        self.log = log;
    }

    /// Forget the logged hits (their subscriptions are being dropped).
    pub fn clear(&mut self) {
        self.log.clear();
    }

    /// The logged hits, oldest first (for invariant checks).
    pub fn logged(&self) -> &[(u32, u64)] {
        &self.log
    }

    /// Bytes held: the bits and the log's buffer.
    pub fn bytes(&self) -> usize {
        self.native.capacity() * size_of::<u64>() + self.log.capacity() * size_of::<(u32, u64)>()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn marks_follow_the_last_insert_into_a_slot() {
        let mut hits = NativeHits::default();
        assert!(!hits.is_native(0) && !hits.is_native(1000));
        for slot in [0, 63, 64, 1000] {
            hits.mark(slot, true);
        }
        assert!([0, 63, 64, 1000].iter().all(|&s| hits.is_native(s)));
        assert!(!hits.is_native(1) && !hits.is_native(65) && !hits.is_native(999));
        hits.mark(64, false); // the slot reused by a callback subscription
        assert!(!hits.is_native(64) && hits.is_native(63));
    }

    #[test]
    fn the_log_fills_at_capacity_and_keeps_its_buffer() {
        let mut hits = NativeHits::default();
        for i in 0..CAPACITY - 1 {
            assert!(!hits.log(u32::try_from(i).unwrap(), 3));
        }
        assert!(hits.log(7, 5));
        let log = hits.take();
        assert_eq!(
            (log.len(), log[0], log[CAPACITY - 1]),
            (CAPACITY, (0, 3), (7, 5))
        );
        assert!(!hits.pending());
        hits.applied(log);
        assert!(!hits.pending() && hits.log.capacity() >= CAPACITY);
    }
}
