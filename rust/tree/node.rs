//! One node of the B+-tree, leaf or inner: up to `N` entries in struct-of-arrays form, sorted by
//! their first column.
//!
//! In a leaf an entry is one interval: `(start, last, slot)`. In an inner node it is one child:
//! `(smallest start, largest last, child index)` of the child's subtree, so a query prunes a
//! whole child on two compares. Both kinds answer a query the same way ([`Node::hits`]): a
//! branch-free pass over all `N` entries that yields a bit mask of the entries to visit, walked
//! lowest bit first, which is ascending start order.

use std::ops::Range;

/// A leaf or inner node of capacity `N` (`N <= 64`, so that a mask fits in a `u64`).
///
/// Entries `0..len` are live, ordered by `keys` (ties in any order); the rest are stale and
/// masked off. `parent` is the inner node holding this one (`NIL` at the root).
///
/// The fields are laid out in the order a query reads them: the length, then keys and lasts
/// (all a node without hits needs: [`Node::prefetch_scan`]), then the ids.
#[derive(Clone, Copy)]
#[repr(C)]
pub(super) struct Node<const N: usize> {
    len: u32,
    pub parent: u32,
    /// Start of each interval (leaf), smallest start of each child's subtree (inner).
    pub keys: [u64; N],
    /// Last of each interval (leaf), largest last of each child's subtree (inner).
    pub lasts: [u64; N],
    /// Slot of each interval (leaf), index of each child (inner).
    pub ids: [u32; N],
}

/// Hint the CPU to start loading the cache line holding `target`; no effect on results.
#[inline]
pub(crate) fn prefetch<T>(target: &T) {
    prefetch_ptr(std::ptr::from_ref(target));
}

/// [`prefetch`] by address: the pointer is never dereferenced, so any address will do.
#[inline]
pub(crate) fn prefetch_ptr<T>(target: *const T) {
    #[cfg(target_arch = "x86_64")]
    {
        const { assert!(cfg!(target_feature = "sse")) };
        // SAFETY: `_mm_prefetch` needs only SSE, part of the x86_64 baseline (asserted above);
        // a prefetch is a hint that never faults and reads nothing the program can observe.
        unsafe {
            std::arch::x86_64::_mm_prefetch::<{ std::arch::x86_64::_MM_HINT_T0 }>(
                target.cast::<i8>(),
            );
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = target;
}

/// `vectorised!(body)`: run `body` compiled for AVX2 (with POPCNT and BMI1/2, which every AVX2
/// CPU has) when the CPU has them, so that every [`Node::hits`] inside inlines its vector scan
/// and every `count_ones` is one instruction (an insert's place in a node is a popcount: the
/// baseline's bit-twiddling version was a third of each level of its descent). A query's entry
/// point wraps its whole walk in this: compiled for the `x86_64` baseline, each scan is an
/// out-of-line call (a function with more target features than its caller is never inlined
/// into it), and a walk is a chain of short scans. The body is forced inline into both
/// variants (as a closure called from two places it would stay out of line in both, baseline
/// code); the check is one load of a cached flag.
macro_rules! vectorised {
    ($($body:tt)*) => {
        $crate::tree::run_vectorised(
            #[inline(always)]
            || { $($body)* },
        )
    };
}
pub(crate) use vectorised;

/// See [`vectorised!`].
#[inline(always)]
#[allow(
    clippy::inline_always,
    reason = "the walk must inline into the AVX2 frame"
)]
pub(crate) fn run_vectorised<R>(walk: impl FnOnce() -> R) -> R {
    #[cfg(target_arch = "x86_64")]
    if use_avx2() {
        #[target_feature(enable = "avx2,popcnt,bmi1,bmi2")]
        unsafe fn avx2<R>(walk: impl FnOnce() -> R) -> R {
            walk()
        }
        // SAFETY: the CPU was seen to have these features (`use_avx2`), all `avx2` requires.
        return unsafe { avx2(walk) };
    }
    walk()
}

/// Whether node scans take their AVX2 path: the CPU has AVX2, POPCNT, BMI1 and BMI2, and the
/// environment variable `MMN_FAST_PORTABLE` was not set when the first scan ran. The test
/// suites run once more with it set, so that the portable copy of every walk is tested too on
/// machines with AVX2.
#[cfg(target_arch = "x86_64")]
#[inline]
fn use_avx2() -> bool {
    use std::sync::atomic::{AtomicU8, Ordering::Relaxed};
    /// 0 until the first scan, then 1 (portable) or 2 (AVX2). Relaxed: threads that race to
    /// the first scan compute the same answer.
    static MODE: AtomicU8 = AtomicU8::new(0);
    #[cold]
    fn detect() -> bool {
        let avx2 = std::arch::is_x86_feature_detected!("avx2")
            && std::arch::is_x86_feature_detected!("popcnt")
            && std::arch::is_x86_feature_detected!("bmi1")
            && std::arch::is_x86_feature_detected!("bmi2")
            && std::env::var_os("MMN_FAST_PORTABLE").is_none();
        MODE.store(if avx2 { 2 } else { 1 }, Relaxed);
        avx2
    }
    match MODE.load(Relaxed) {
        0 => detect(),
        mode => mode == 2,
    }
}

/// The `n` lowest bits set.
#[inline]
const fn low_bits(n: usize) -> u64 {
    if n >= 64 {
        u64::MAX
    } else {
        (1 << n) - 1
    }
}

/// Move `a[pos..N - 1]` up by one, over the whole fixed-size array: a few branch-free selects
/// the compiler unrolls, where a `copy_within` of a run-time length calls `memmove`.
#[inline]
fn shift_up<T: Copy, const N: usize>(a: &mut [T; N], pos: usize) {
    for i in (1..N).rev() {
        if i > pos {
            a[i] = a[i - 1];
        }
    }
}

/// Move `a[pos + 1..]` down by one (the last element stays, stale).
#[inline]
fn shift_down<T: Copy, const N: usize>(a: &mut [T; N], pos: usize) {
    for i in 0..N - 1 {
        if i >= pos {
            a[i] = a[i + 1];
        }
    }
}

impl<const N: usize> Node<N> {
    /// An empty node under `parent`.
    pub const fn empty(parent: u32) -> Self {
        const { assert!(N >= 8 && N <= 64, "node capacity must be 8..=64") };
        Self {
            len: 0,
            parent,
            keys: [0; N],
            lasts: [0; N],
            ids: [0; N],
        }
    }

    /// Start loading the cache lines a scan ([`Node::hits`]) reads: the length, keys and
    /// lasts; the ids come after them, read only for hits and children.
    #[inline]
    pub fn prefetch_scan(&self) {
        prefetch(&self.len);
        for i in (0..N).step_by(8) {
            prefetch(&self.keys[i]);
            prefetch(&self.lasts[i]);
        }
        prefetch(&self.lasts[N - 1]);
    }

    #[inline]
    pub const fn len(&self) -> usize {
        self.len as usize
    }

    #[inline]
    #[allow(
        clippy::cast_possible_truncation,
        reason = "a length is at most N <= 64"
    )]
    fn set_len(&mut self, len: usize) {
        debug_assert!(len <= N);
        self.len = len as u32;
    }

    #[inline]
    pub const fn is_full(&self) -> bool {
        self.len() == N
    }

    /// Bit `i` set for each live entry `i` whose `[key, last]` overlaps `[qs, ql]`. No branch
    /// depends on the data, so the CPU never mispredicts; on a CPU with AVX2 the same loop runs
    /// vectorised (the `x86_64` baseline, SSE2, has no 64-bit compare).
    #[inline(always)]
    #[allow(
        clippy::inline_always,
        reason = "inlined into the AVX2 frame of `vectorised!`"
    )]
    pub fn hits(&self, qs: u64, ql: u64) -> u64 {
        #[cfg(target_arch = "x86_64")]
        if use_avx2() {
            // SAFETY: `hits_avx2` only needs AVX2, which the CPU was seen to have.
            return unsafe { self.hits_avx2(qs, ql) };
        }
        self.hits_portable(qs, ql)
    }

    /// [`hits`](Self::hits) with AVX2: four entries per compare. AVX2 compares signed 64-bit
    /// lanes only, so both sides are flipped at the sign bit first (an order-preserving map from
    /// unsigned to signed).
    ///
    /// # Safety
    /// The CPU must support AVX2 (an `unsafe fn` rather than a safe `#[target_feature]` one:
    /// the crate's minimum Rust, 1.85, has those only from 1.86).
    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx2")]
    unsafe fn hits_avx2(&self, qs: u64, ql: u64) -> u64 {
        use std::arch::x86_64::{
            __m256i, _mm256_castsi256_pd, _mm256_cmpgt_epi64, _mm256_loadu_si256,
            _mm256_movemask_pd, _mm256_or_si256, _mm256_set1_epi64x, _mm256_xor_si256,
        };
        const { assert!(N % 4 == 0, "AVX2 scans four entries at a time") };
        debug_assert!(std::arch::is_x86_feature_detected!("avx2"));
        #[allow(
            clippy::cast_possible_wrap,
            reason = "bit patterns, flipped to signed order"
        )]
        let flip = |x: u64| _mm256_set1_epi64x((x ^ (1 << 63)) as i64);
        let sign = flip(0);
        let (qs, ql) = (flip(qs), flip(ql));
        let mut misses = 0u64;
        for c in (0..N).step_by(4) {
            // SAFETY: `c + 4 <= N`, so each unaligned 32-byte load reads four entries of
            // `keys` / `lasts` (arrays of `N` u64); the CPU has AVX2 (this function's contract).
            #[allow(clippy::cast_ptr_alignment, reason = "`loadu` needs no alignment")]
            let (keys, lasts) = unsafe {
                (
                    _mm256_loadu_si256(self.keys[c..c + 4].as_ptr().cast::<__m256i>()),
                    _mm256_loadu_si256(self.lasts[c..c + 4].as_ptr().cast::<__m256i>()),
                )
            };
            // An entry misses when `key > ql` or `qs > last`.
            let miss = _mm256_or_si256(
                _mm256_cmpgt_epi64(_mm256_xor_si256(keys, sign), ql),
                _mm256_cmpgt_epi64(qs, _mm256_xor_si256(lasts, sign)),
            );
            #[allow(clippy::cast_sign_loss, reason = "a 4-bit mask")]
            let bits = _mm256_movemask_pd(_mm256_castsi256_pd(miss)) as u64;
            misses |= bits << c;
        }
        !misses & low_bits(self.len())
    }

    #[inline(always)]
    #[allow(
        clippy::inline_always,
        reason = "inlined into `hits_avx2`, it is compiled for AVX2 there"
    )]
    #[allow(
        clippy::needless_bitwise_bool,
        reason = "branch-free on purpose: both compares are cheap and unpredictable"
    )]
    pub(super) fn hits_portable(&self, qs: u64, ql: u64) -> u64 {
        let mut mask = 0u64;
        for i in 0..N {
            mask |= u64::from((self.keys[i] <= ql) & (self.lasts[i] >= qs)) << i;
        }
        mask & low_bits(self.len())
    }

    /// `(smallest key, largest last)` of the live entries: the node's entry in its parent.
    /// `(u64::MAX, 0)` for an empty node (a transient state inside an update).
    #[inline]
    pub fn summary(&self) -> (u64, u64) {
        let first = self.keys[..self.len()].first().copied();
        (first.unwrap_or(u64::MAX), self.max_last())
    }

    /// Where the live entry with id `id` sits, if any. One branch-free pass over all `N` ids:
    /// an early-exit loop mispredicts at its exit, and updates call this once per level.
    #[inline]
    pub fn position(&self, id: u32) -> Option<usize> {
        let found = self.id_mask(id) & low_bits(self.len());
        (found != 0).then(|| found.trailing_zeros() as usize)
    }

    /// Bit `i` set for each entry `i` (live or not) whose id is `id`; with SSE2 (part of the
    /// `x86_64` baseline) four ids per compare.
    #[inline]
    fn id_mask(&self, id: u32) -> u64 {
        #[cfg(target_arch = "x86_64")]
        {
            use std::arch::x86_64::{
                __m128i, _mm_castsi128_ps, _mm_cmpeq_epi32, _mm_loadu_si128, _mm_movemask_ps,
                _mm_set1_epi32,
            };
            const { assert!(N % 4 == 0, "SSE2 compares four ids at a time") };
            let mut mask = 0u64;
            // SAFETY: SSE2 is part of the `x86_64` baseline; `c + 4 <= N`, so each unaligned
            // 16-byte load reads four entries of `ids` (an array of `N` u32).
            #[allow(
                clippy::cast_possible_wrap,
                clippy::cast_sign_loss,
                reason = "bit patterns"
            )]
            #[allow(clippy::cast_ptr_alignment, reason = "`loadu` needs no alignment")]
            unsafe {
                let want = _mm_set1_epi32(id as i32);
                for c in (0..N).step_by(4) {
                    let ids = _mm_loadu_si128(self.ids[c..c + 4].as_ptr().cast::<__m128i>());
                    let equal = _mm_movemask_ps(_mm_castsi128_ps(_mm_cmpeq_epi32(ids, want)));
                    mask |= (equal as u64) << c;
                }
            }
            mask
        }
        #[cfg(not(target_arch = "x86_64"))]
        {
            let mut mask = 0u64;
            for (i, &x) in self.ids.iter().enumerate() {
                mask |= u64::from(x == id) << i;
            }
            mask
        }
    }

    /// The number of live keys at or below `key`: the insert position after all equal keys in
    /// a leaf; one more than the child to descend into in an inner node. The keys are sorted,
    /// so this counts the entries [`Node::hits`] finds for `[0, key]` (every last is at least
    /// 0): one pass with no chain of dependent loads, where a binary search waits on each
    /// compare before its next load.
    #[inline]
    pub fn upper_bound(&self, key: u64) -> usize {
        self.hits(0, key).count_ones() as usize
    }

    /// The largest live `last`; 0 for an empty node.
    #[inline]
    pub fn max_last(&self) -> u64 {
        self.lasts[..self.len()].iter().fold(0, |m, &l| m.max(l))
    }

    /// Overwrite entry `i` (live).
    #[inline]
    pub fn set(&mut self, i: usize, (key, last): (u64, u64), id: u32) {
        self.keys[i] = key;
        self.lasts[i] = last;
        self.ids[i] = id;
    }

    /// Insert an entry at `pos`, shifting the later ones up. The node must not be full.
    #[inline]
    pub fn insert_at(&mut self, pos: usize, summary: (u64, u64), id: u32) {
        debug_assert!(self.len() < N && pos <= self.len());
        shift_up(&mut self.keys, pos);
        shift_up(&mut self.lasts, pos);
        shift_up(&mut self.ids, pos);
        self.set(pos, summary, id);
        self.len += 1;
    }

    /// Append an entry after the live ones (the bulk build's in-order fill): no shifting.
    #[inline]
    pub fn push(&mut self, summary: (u64, u64), id: u32) {
        debug_assert!(self.len() < N);
        self.set(self.len(), summary, id);
        self.len += 1;
    }

    /// Remove entry `pos` (live), shifting the later ones down; returns its `(key, last)`.
    #[inline]
    pub fn remove_at(&mut self, pos: usize) -> (u64, u64) {
        debug_assert!(pos < self.len());
        let removed = (self.keys[pos], self.lasts[pos]);
        shift_down(&mut self.keys, pos);
        shift_down(&mut self.lasts, pos);
        shift_down(&mut self.ids, pos);
        self.len -= 1;
        removed
    }

    /// Move entries between two adjacent nodes (`self` left of `right`) until the left one
    /// holds `want` of their entries (all of them: a merge). Returns which node received
    /// entries (true: `self`) and where they now sit in it, for the caller to adopt.
    pub fn move_boundary(&mut self, right: &mut Self, want: usize) -> (bool, Range<usize>) {
        debug_assert!(want <= N && self.len() + right.len() <= want + N);
        if self.len() > want {
            // Make room at the front of `right`, then move our tail there.
            let (k, rl) = (self.len() - want, right.len());
            right.keys.copy_within(0..rl, k);
            right.lasts.copy_within(0..rl, k);
            right.ids.copy_within(0..rl, k);
            let range = want..self.len();
            right.keys[..k].copy_from_slice(&self.keys[range.clone()]);
            right.lasts[..k].copy_from_slice(&self.lasts[range.clone()]);
            right.ids[..k].copy_from_slice(&self.ids[range]);
            right.set_len(rl + k);
            self.set_len(want);
            (false, 0..k)
        } else {
            // Take `right`'s head, then close the gap it leaves.
            let k = want - self.len();
            let (at, rl) = (self.len(), right.len());
            self.keys[at..want].copy_from_slice(&right.keys[..k]);
            self.lasts[at..want].copy_from_slice(&right.lasts[..k]);
            self.ids[at..want].copy_from_slice(&right.ids[..k]);
            right.keys.copy_within(k..rl, 0);
            right.lasts.copy_within(k..rl, 0);
            right.ids.copy_within(k..rl, 0);
            right.set_len(rl - k);
            self.set_len(want);
            (true, at..want)
        }
    }

    /// Append `from`'s entries `at..` to `self` and cut `from` short at `at`.
    pub fn take_tail(&mut self, from: &mut Self, at: usize) {
        let (to, n) = (self.len(), from.len() - at);
        debug_assert!(to + n <= N);
        self.keys[to..to + n].copy_from_slice(&from.keys[at..at + n]);
        self.lasts[to..to + n].copy_from_slice(&from.lasts[at..at + n]);
        self.ids[to..to + n].copy_from_slice(&from.ids[at..at + n]);
        self.set_len(to + n);
        from.set_len(at);
    }
}
