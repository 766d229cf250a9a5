//! The interval-mode protocol: `invalidate_seq`, the active count and the deferred list, as
//! plain transitions on a state that the caller has locked ([`crate::notifier`] does the locking
//! and the waits). Everything here is single-threaded and deterministic, so it is tested step by
//! step and model-checked as it is.
//!
//! # Protocol
//!
//! Three states (SPEC R7):
//!
//! | state                 | `active` | `seq` | the tree                                  |
//! |-----------------------|----------|-------|-------------------------------------------|
//! | idle                  | 0        | even  | free to change                            |
//! | partially excluded    | > 0      | even  | free to change (no running start hit it)  |
//! | fully excluded        | > 0      | odd   | frozen: inserts and removes are deferred  |
//!
//! The seq operations, each under the lock:
//! - begin writing: `seq |= 1`, by a start that overlaps a subscription (R8a, R12) or by an
//!   insert in the partially excluded state (R8b, R35b);
//! - end writing: `seq += 1`, only by the end that takes `active` from 1 to 0 while `seq` is odd
//!   (R9); that end, and only it, applies the deferred list and wakes the waiters (R17);
//! - read: a reader's `read_begin` takes its subscription's seq `s` and waits while `s == seq`
//!   (R25); `read_retry(s)` is `sub.seq != s` (R28).
//!
//! One epoch (a stretch with `seq` odd) takes `seq` up by exactly 2, however many starts join
//! it (R10). Timeline of a writer and a reader on one subscription:
//!
//! ```text
//!   writer (invalidation)                  reader (driver fault path)
//!                                          s = read_begin()        seq even: no wait
//!                                          ... builds a mapping without the user lock ...
//!   start: active += 1, seq |= 1
//!   invalidate(): user lock; set_seq(seq); unlock
//!                                          user lock; read_retry(s) == true -> retry
//!   end: active -= 1, seq += 1, apply deferred, wake
//!                                          s = read_begin()        (waited while s == seq)
//!                                          user lock; read_retry(s) == false -> commit
//! ```
//!
//! Why defer rather than retry: an insert or remove that arrives while the tree is frozen is
//! queued and applied by the closing end, so writers never wait on readers and a stream of
//! invalidations cannot livelock a remover (the kernel's choice, kept).
//!
//! Deviations from v5.12 that SPEC's decisions ask for: every start counts in `active` even with
//! no subscription (D5); removal returns only after the closing end has applied the deferred list
//! (the 5.18 fix, D4 — the waiter's condition [`Protocol::seq_changed`] is read under the same
//! lock as the end that applies the list).

mod empty_pages;
mod native_hits;
mod occupied_blocks;

use crate::error::Error;
use crate::interval::Interval;
use crate::tree::{Found, Handle, IntervalTree};
use empty_pages::EmptyPages;
use native_hits::NativeHits;
use occupied_blocks::OccupiedBlocks;

/// The identity of one subscription: its node in the tree's arena. It stays the same while a
/// deferred insert waits detached and after it is attached.
pub type SubKey = Handle;

/// The idle value of a fresh `invalidate_seq` (SPEC R2).
pub const INITIAL_SEQ: u64 = 2;

/// What is pending for a subscription on the deferred list.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Pending {
    None,
    /// Detached, waiting for the closing end to link it (R35c).
    Insert,
    /// Still in the tree, waiting for the closing end to unlink it (R39b).
    Remove,
}

/// One interval subscription as the protocol sees it; `P` is the caller's payload (the binding
/// keeps its Python objects there).
#[derive(Debug)]
pub struct Sub<P> {
    seq: u64,
    pending: Pending,
    /// Handled entirely here: a hit sets its seq and records it in the journal.
    native: bool,
    /// On the journal since the last [`Protocol::drain_journal`].
    journaled: bool,
    /// The caller's data for this subscription.
    pub payload: P,
}

impl<P> Sub<P> {
    /// This subscription's `invalidate_seq`; always odd (R31).
    pub fn seq(&self) -> u64 {
        self.seq
    }

    /// `mmu_interval_set_seq` (R24): the caller's callback calls it under its own lock.
    pub fn set_seq(&mut self, cur_seq: u64) {
        self.seq = cur_seq;
    }

    /// Whether the protocol handles this subscription's invalidations itself.
    pub fn is_native(&self) -> bool {
        self.native
    }

    /// A native subscription's whole invalidation: `set_seq(cur_seq)`, and onto the journal
    /// once until the next drain.
    fn invalidate_native(&mut self, key: SubKey, cur_seq: u64, journal: &mut Vec<SubKey>) {
        self.seq = cur_seq;
        if !self.journaled {
            self.journaled = true;
            journal.push(key);
        }
    }
}

/// Where an insert landed (R35).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum InsertState {
    /// (a) idle: in the tree now, `sub.seq = seq - 1`.
    Idle,
    /// (b) partially excluded: `seq |= 1`, in the tree now, `sub.seq = seq`.
    PartiallyExcluded,
    /// (c) fully excluded: detached on the deferred list until the closing end, `sub.seq = seq`.
    Deferred,
}

/// What a remove did (R39).
#[derive(Debug)]
pub enum Removal<P> {
    /// (c) `seq` even: unlinked now, or (a) a pending insert dropped before it entered the tree.
    /// The payload to drop outside the lock, unless the journal still needs it.
    Done(Option<P>),
    /// (b) queued on the deferred list; wait until [`Protocol::seq_changed`]`(wait_seq)`.
    Deferred { wait_seq: u64 },
}

/// What a start did (R12).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Started {
    /// The seq handed to every callback of this start; odd when `hits > 0` (R13, R83).
    pub cur_seq: u64,
    /// How many subscriptions overlapped the range.
    pub hits: usize,
}

/// What an end did (R17).
#[derive(Debug)]
pub enum Ended<P> {
    /// Other invalidations are still active, or no epoch was open: nothing else to do.
    Open,
    /// This end closed the epoch: `seq` is even again, the deferred list was applied.
    /// The caller must wake every waiter after unlocking, and drop `freed` (the payloads of the
    /// subscriptions whose removal was applied) outside the lock.
    Closed { freed: Vec<P> },
}

/// The locked state of one address space's interval side (the kernel's
/// `mmu_notifier_subscriptions` minus the classic list).
#[derive(Debug)]
pub struct Protocol<P> {
    seq: u64,
    active: u64,
    tree: IntervalTree<Sub<P>>,
    /// Keys waiting for the closing end; only non-empty while `seq` is odd (R81).
    deferred: Vec<SubKey>,
    /// Native subscriptions hit since the last drain, once each.
    journal: Vec<SubKey>,
    /// Payloads of journaled subscriptions removed before the drain.
    journal_removed: Vec<P>,
    has_itree: bool,
    released: bool,
    /// A range known to overlap no subscription, while no interval overlapping it has been
    /// attached since: a start inside it hits nothing either, and skips the walk (guest writes
    /// repeat: an emulator invalidates the same unwatched page over and over, or the pages of
    /// one unwatched buffer one after another). Removals only take intervals away, so they
    /// keep it. It is the range of the last start that walked and hit nothing, or the whole
    /// gap around a later start near it ([`NEAR_EMPTY`]).
    known_empty: Option<Interval>,
    /// Known-empty ranges by page, under the same rule, for starts that come back to
    /// scattered pages whatever came between ([`EmptyPages`]).
    empty_pages: EmptyPages,
    /// Where the attached subscriptions are, coarsely: answers most starts in pages never seen
    /// before that hit nothing, without a walk ([`OccupiedBlocks`]).
    occupied: OccupiedBlocks,
    /// Native hits not yet written to their subscriptions, and which slots are native
    /// ([`NativeHits`]): a start's native hits touch no slot. Everything that reads or frees
    /// a subscription writes them out first ([`Protocol::apply_native_hits`]).
    native_hits: NativeHits,
}

/// How close (in bytes) to the known-empty range a start must come for it to look for the
/// whole gap around its range ([`IntervalTree::gap_around`]: one descent, about 1.1x a walk's
/// cost, which also tells whether there is a hit) instead of walking: a run of stores through
/// an unwatched buffer lands within a page of the last one, and then walks once, not once per
/// store. A start in a page whose cache entry holds an earlier miss does the same. Starts
/// elsewhere (streams of hits, scattered misses) walk as before and pay nothing; a start near
/// a known-empty range that does hit pays for both (stores within a page past a gap's end).
const NEAR_EMPTY: u64 = 4096;

/// The attached intervals of `tree`, which the occupied blocks are rebuilt from.
fn intervals<P>(tree: &IntervalTree<Sub<P>>) -> impl Iterator<Item = Interval> + '_ {
    tree.iter().map(|(_, iv, _)| iv)
}

impl<P> Default for Protocol<P> {
    fn default() -> Self {
        Self::new()
    }
}

impl<P> Protocol<P> {
    /// A fresh state: `seq = 2`, nothing active, empty tree and deferred list (R2).
    pub fn new() -> Self {
        Self {
            seq: INITIAL_SEQ,
            active: 0,
            tree: IntervalTree::new(),
            deferred: Vec::new(),
            journal: Vec::new(),
            journal_removed: Vec::new(),
            has_itree: false,
            released: false,
            known_empty: None,
            empty_pages: EmptyPages::default(),
            occupied: OccupiedBlocks::default(),
            native_hits: NativeHits::default(),
        }
    }

    /// The mm's `invalidate_seq`.
    pub fn seq(&self) -> u64 {
        self.seq
    }

    /// Starts between their start and end (`active_invalidate_ranges`, R11, D5).
    pub fn active(&self) -> u64 {
        self.active
    }

    /// Whether an interval subscription was ever inserted (R3).
    pub fn has_itree(&self) -> bool {
        self.has_itree
    }

    /// Whether [`Protocol::mark_released`] was called (D12).
    pub fn released(&self) -> bool {
        self.released
    }

    /// The address space is going away: no new subscription from now on (D12).
    pub fn mark_released(&mut self) {
        self.released = true;
    }

    /// Hand `payload` back to the caller, or keep it while the journal still names it.
    fn release_payload(&mut self, sub: Sub<P>) -> Option<P> {
        if sub.journaled {
            self.journal_removed.push(sub.payload);
            None
        } else {
            Some(sub.payload)
        }
    }

    /// Subscriptions in the tree (pending inserts excluded).
    pub fn len(&self) -> usize {
        self.tree.len()
    }

    /// Whether the tree is empty.
    pub fn is_empty(&self) -> bool {
        self.tree.is_empty()
    }

    /// The tree, for read-only walks (introspection, invariant checks). A native
    /// subscription's seq there may not show its latest hits yet: [`Protocol::sub`] does.
    pub fn tree(&self) -> &IntervalTree<Sub<P>> {
        &self.tree
    }

    /// A subscription by key, attached or pending.
    pub fn sub(&mut self, key: SubKey) -> Option<(Interval, &Sub<P>)> {
        self.apply_native_hits();
        self.tree.get(key)
    }

    /// Mutable access to a subscription by key.
    pub fn sub_mut(&mut self, key: SubKey) -> Option<(Interval, &mut Sub<P>)> {
        self.apply_native_hits();
        self.tree.get_mut(key)
    }

    /// Write the logged native hits to their subscriptions, oldest first, as the starts that
    /// logged them would have ([`Sub::invalidate_native`]); a few slots are loaded ahead of
    /// the one being written so that their misses overlap. Nothing to do when none is logged.
    fn apply_native_hits(&mut self) {
        if !self.native_hits.pending() {
            return;
        }
        let log = self.native_hits.take();
        for &(slot, _) in log.iter().take(native_hits::AHEAD) {
            self.tree.prefetch_slot(slot);
        }
        for (i, &(slot, cur_seq)) in log.iter().enumerate() {
            if let Some(&(ahead, _)) = log.get(i + native_hits::AHEAD) {
                self.tree.prefetch_slot(ahead);
            }
            let (key, sub) = self.tree.slot_entry_mut(slot);
            sub.invalidate_native(key, cur_seq, &mut self.journal);
        }
        self.native_hits.applied(log);
    }

    /// Start of an invalidation, interval side (R11, R12): `active += 1`; if `query` overlaps a
    /// subscription, begin writing (`seq |= 1`) and visit each overlapping one in ascending
    /// start with the epoch's odd `cur_seq` (R13). A native one is handled here as long as no
    /// callback subscription came before it in this walk: logged, and written to the
    /// subscription before anything reads it. Every other hit goes to `on_hit`, under the
    /// caller's lock, to be handled in order after unlocking, natives included, so that a
    /// refusal stops the walk before the later ones (R16). `hits` counts all of them. Pairs
    /// with [`Protocol::end`].
    pub fn start(
        &mut self,
        query: Interval,
        on_hit: impl FnMut(SubKey, Interval, &Sub<P>, u64),
    ) -> Started {
        // A range inside one known empty overlaps nothing: counted, no walk, and no change to
        // `seq` (R12), exactly what the walk would conclude. A start that misses it near a
        // range that did miss looks for the whole gap around it instead of walking.
        let page = EmptyPages::page_of(query);
        let encloses = |empty: Option<Interval>| empty.is_some_and(|e| e.encloses(query));
        let mut walk = !encloses(self.known_empty);
        if walk {
            // The probe's words are read last, below: asked for first, their miss overlaps
            // the checks before. The page's entry is read only when the known-empty range
            // does not answer.
            self.occupied.prefetch(query);
            let in_page = page.and_then(|p| self.empty_pages.get(p));
            let near_known = self.known_empty.is_some_and(|e| {
                query.start() <= e.last().saturating_add(NEAR_EMPTY)
                    && e.start() <= query.last().saturating_add(NEAR_EMPTY)
            });
            if encloses(in_page) {
                walk = false;
            } else if in_page.is_some() || near_known {
                if let Some(gap) = self.tree.gap_around(query) {
                    self.learn_empty(gap, page);
                    walk = false;
                }
            } else if self.occupied.rules_out(query) {
                // A range the page cache has never seen (or wider than a page) in blocks no
                // subscription touches: remembered as a walk that found nothing would be.
                self.learn_empty(query, page);
                walk = false;
            }
        }
        let started = self.start_over(on_hit, |tree, visit| {
            if walk {
                tree.for_each_overlap_slot(query, visit);
            }
        });
        if walk && started.hits == 0 {
            self.learn_empty(query, page);
        }
        started
    }

    /// `empty` (around a start's range, in `page` when it lies in one) overlaps no subscription.
    fn learn_empty(&mut self, empty: Interval, page: Option<u64>) {
        self.known_empty = Some(empty);
        if let Some(p) = page {
            self.empty_pages.remember(p, empty);
        }
    }

    /// `iv` is about to enter the tree: forget every known-empty range it overlaps.
    fn attaching(&mut self, iv: Interval) {
        if self.known_empty.is_some_and(|empty| empty.overlaps(iv)) {
            self.known_empty = None;
        }
        self.empty_pages.forget(iv);
        self.occupied.insert(iv, || intervals(&self.tree));
    }

    /// Unlink the attached subscription `key` from the tree (its marks go stale).
    fn unlink(&mut self, key: SubKey) -> Option<Sub<P>> {
        let (iv, sub) = self.tree.remove(key)?;
        self.occupied.remove(iv, || intervals(&self.tree));
        Some(sub)
    }

    /// The hits of every range of a batch, for [`Protocol::start_found`]: one interleaved walk
    /// of the tree for all of them (`invalidate_many`), where starts one by one would wait for
    /// each descent's cache misses in turn. The occupied blocks rule ranges out first while
    /// that pays, as for a start.
    pub fn find(&mut self, queries: &[Interval], found: &mut Found) {
        let occupied = &mut self.occupied;
        if occupied.pays() {
            // Ranges the occupied blocks rule out are not walked (as in `start`).
            self.tree
                .find_overlaps_where(queries, found, |q| !occupied.rules_out(q));
            return;
        }
        // A stream of hits: probing one range in 16 would only cost its misses. Walk them
        // all, then score every range as a probe would have: exactly, since a range with hits
        // is never ruled out and one without is probed after its walk.
        self.tree.find_overlaps(queries, found);
        for (i, &q) in queries.iter().enumerate() {
            occupied.score_walked(q, found.count(i) > 0);
        }
    }

    /// [`Protocol::start`] for range `i` of the batch that [`Protocol::find`] filled `found`
    /// with, visiting the same subscriptions in the same order without a walk.
    ///
    /// The tree must not have changed since the find: no insert or remove, and no end that
    /// applied a deferred list (see [`Protocol::has_deferred`]); the caller holds the lock
    /// throughout.
    pub fn start_found(
        &mut self,
        found: &Found,
        i: usize,
        on_hit: impl FnMut(SubKey, Interval, &Sub<P>, u64),
    ) -> Started {
        self.start_over(on_hit, |_, visit| {
            for &(slot, iv) in found.hits(i) {
                visit(slot, iv);
            }
        })
    }

    /// [`Protocol::start_found`] then [`Protocol::end`] of batch range `i` in one step, for
    /// the common case of `invalidate_many`: no other start is active and every hit is native,
    /// so the range's start and end open and close an epoch of their own. The start would log
    /// each hit with `cur_seq = seq | 1` and begin writing (R12, R13); the end, the only active
    /// one, would close the epoch (R17) with nothing deferred (the list is empty while no
    /// start is active, R81): `seq += 2` in all. A range without hits changes nothing, as its
    /// start and end would not. Returns what the start would have (`hits` counts them); `None`
    /// when the case does not apply, with nothing changed: run the range with
    /// [`Protocol::start_found`] and [`Protocol::end`].
    pub fn run_found_natives(&mut self, found: &Found, i: usize) -> Option<Started> {
        let hits = found.hits(i);
        let native = |&(slot, _): &(u32, Interval)| self.native_hits.is_native(slot);
        if self.active != 0 || !hits.iter().all(native) {
            return None;
        }
        debug_assert!(self.seq & 1 == 0 && self.deferred.is_empty(), "R81");
        if hits.is_empty() {
            return Some(Started {
                cur_seq: self.seq,
                hits: 0,
            });
        }
        let cur_seq = self.seq | 1;
        let mut full = false;
        for &(slot, _) in hits {
            full |= self.native_hits.log(slot, cur_seq);
        }
        if full {
            self.apply_native_hits();
        }
        self.seq = cur_seq + 1;
        Some(Started {
            cur_seq,
            hits: hits.len(),
        })
    }

    /// The body of both starts; `hits_of` calls its visitor on each hit's slot and interval,
    /// in ascending start.
    fn start_over(
        &mut self,
        mut on_hit: impl FnMut(SubKey, Interval, &Sub<P>, u64),
        hits_of: impl FnOnce(&IntervalTree<Sub<P>>, &mut dyn FnMut(u32, Interval)),
    ) -> Started {
        self.active += 1;
        // One walk: hits get the odd value this start will publish if it hits (R12).
        let cur_seq = self.seq | 1;
        let mut hits = 0;
        let mut callback_seen = false;
        let mut full = false;
        let (tree, native_hits) = (&self.tree, &mut self.native_hits);
        hits_of(tree, &mut |slot, iv| {
            hits += 1;
            if !callback_seen && native_hits.is_native(slot) {
                full |= native_hits.log(slot, cur_seq);
            } else {
                callback_seen = true;
                let (key, sub) = tree.slot_entry(slot);
                on_hit(key, iv, sub, cur_seq);
            }
        });
        if full {
            self.apply_native_hits();
        }
        if hits > 0 {
            self.seq = cur_seq; // begin writing (R8a)
        }
        Started {
            cur_seq: self.seq,
            hits,
        }
    }

    /// Whether subscriptions wait on the deferred list: an end that closes the epoch now will
    /// change the tree (R17).
    pub fn has_deferred(&self) -> bool {
        !self.deferred.is_empty()
    }

    /// Invalidate the native subscription `key` that [`Protocol::start`] handed to `on_hit`,
    /// when the caller's in-order walk reaches it (the start is still active, so `key` is
    /// still subscribed). Returns false for a key that is not a native subscription.
    pub fn invalidate_native(&mut self, key: SubKey, cur_seq: u64) -> bool {
        self.apply_native_hits(); // the earlier hits first, in the order they came
        let journal = &mut self.journal;
        match self.tree.value_mut(key) {
            Some(sub) if sub.native => {
                sub.invalidate_native(key, cur_seq, journal);
                true
            }
            _ => false,
        }
    }

    /// End of an invalidation, interval side (R17): `active -= 1`; the end that brings `active`
    /// to 0 while `seq` is odd ends writing (`seq += 1`) and applies the deferred list, newest
    /// deferral first. Pairs with [`Protocol::start`].
    ///
    /// # Errors
    /// [`Error::NoActiveInvalidation`] when no start is open; nothing changes (D6, R51).
    pub fn end(&mut self) -> Result<Ended<P>, Error> {
        self.active = self
            .active
            .checked_sub(1)
            .ok_or(Error::NoActiveInvalidation)?;
        if self.active > 0 || self.seq & 1 == 0 {
            return Ok(Ended::Open);
        }
        self.seq += 1;
        if self.has_deferred() {
            self.apply_native_hits(); // before a deferred removal frees its slot
        }
        let mut freed = Vec::new();
        // Loop invariant: every key still on `deferred` names a live subscription whose
        // `pending` says what to do with it (insert and remove clear their entry together).
        while let Some(key) = self.deferred.pop() {
            let Some((iv, sub)) = self.tree.get_mut(key) else {
                debug_assert!(false, "deferred key {key:?} is not allocated");
                continue;
            };
            match std::mem::replace(&mut sub.pending, Pending::None) {
                Pending::Insert => {
                    self.attaching(iv);
                    self.tree.attach(key);
                }
                Pending::Remove => {
                    if let Some(sub) = self.unlink(key) {
                        freed.extend(self.release_payload(sub));
                    }
                }
                Pending::None => debug_assert!(false, "deferred key {key:?} has nothing pending"),
            }
        }
        Ok(Ended::Closed { freed })
    }

    /// Insert a subscription over `iv` (R33-R36), in whichever of the three ways the state asks.
    ///
    /// # Errors
    /// [`Error::Released`] after [`Protocol::mark_released`] (D12); nothing changes.
    pub fn insert(
        &mut self,
        iv: Interval,
        native: bool,
        payload: P,
    ) -> Result<(SubKey, InsertState), Error> {
        if self.released {
            return Err(Error::Released);
        }
        self.has_itree = true;
        let mut sub = Sub {
            seq: 0,
            pending: Pending::None,
            native,
            journaled: false,
            payload,
        };
        if self.active == 0 {
            // (a) idle: seq is even (R81), so seq - 1 is odd and a read_begin never waits.
            debug_assert_eq!(self.seq & 1, 0);
            sub.seq = self.seq - 1;
            self.attaching(iv);
            Ok((self.tree.insert(iv, sub), InsertState::Idle))
        } else if self.seq & 1 == 0 {
            // (b) partially excluded: a running start might cover iv; make readers wait (R36).
            self.seq |= 1;
            sub.seq = self.seq;
            self.attaching(iv);
            Ok((self.tree.insert(iv, sub), InsertState::PartiallyExcluded))
        } else {
            // (c) fully excluded: the tree is frozen.
            sub.seq = self.seq;
            sub.pending = Pending::Insert;
            let key = self.tree.insert_detached(iv, sub);
            self.deferred.push(key);
            Ok((key, InsertState::Deferred))
        }
        .inspect(|&(key, _)| self.native_hits.mark(key.slot(), native))
    }

    /// Remove a subscription (R39, D4).
    ///
    /// # Errors
    /// [`Error::NotSubscribed`] for a key that is gone or already queued for removal (D6).
    pub fn remove(&mut self, key: SubKey) -> Result<Removal<P>, Error> {
        self.apply_native_hits(); // its journal flag decides where its payload goes
        let attached = self.tree.is_attached(key);
        let Some((_, sub)) = self.tree.get_mut(key) else {
            return Err(Error::NotSubscribed);
        };
        if self.seq & 1 == 1 {
            if !attached {
                // (a) a pending insert: unlink it from the deferred list; it never enters.
                self.deferred.retain(|&k| k != key);
                let (_, sub) = self.tree.remove(key).ok_or(Error::NotSubscribed)?;
                return Ok(Removal::Done(self.release_payload(sub)));
            }
            if sub.pending == Pending::Remove {
                return Err(Error::NotSubscribed);
            }
            // (b) in the frozen tree: the closing end unlinks it (R40: it may still be called
            // by starts that join this epoch until then).
            sub.pending = Pending::Remove;
            self.deferred.push(key);
            return Ok(Removal::Deferred { wait_seq: self.seq });
        }
        // (c) seq even: no running start walks the tree, so no callback can be running (R40).
        debug_assert!(attached && self.deferred.is_empty());
        let sub = self.unlink(key).ok_or(Error::NotSubscribed)?;
        Ok(Removal::Done(self.release_payload(sub)))
    }

    /// Whether a `remove` of `key` now would have to wait (R39b): `seq` odd and `key` in the tree.
    pub fn remove_would_wait(&self, key: SubKey) -> bool {
        self.seq & 1 == 1 && self.tree.is_attached(key)
    }

    /// Take the journal: `f` is called once for each native subscription hit since the last
    /// drain, however often it was hit: first those still subscribed, then those removed since
    /// (whose payloads are returned, to drop outside the lock).
    pub fn drain_journal(&mut self, mut f: impl FnMut(&P)) -> Vec<P> {
        self.apply_native_hits();
        for key in self.journal.drain(..) {
            if let Some(sub) = self.tree.value_mut(key) {
                sub.journaled = false;
                f(&sub.payload);
            }
        }
        let gone = std::mem::take(&mut self.journal_removed);
        gone.iter().for_each(f);
        gone
    }

    /// Visit every payload the state holds: in the tree, pending, and kept for the journal.
    pub fn for_each_payload(&self, mut f: impl FnMut(&P)) {
        for (_, _, sub) in &self.tree {
            f(&sub.payload);
        }
        for &key in &self.deferred {
            if !self.tree.is_attached(key) {
                if let Some((_, sub)) = self.tree.get(key) {
                    f(&sub.payload);
                }
            }
        }
        self.journal_removed.iter().for_each(f);
    }

    /// `mmu_interval_read_begin` under the lock (R25, R26): the subscription's seq `s`, and
    /// whether the caller must wait until [`Protocol::seq_changed`]`(s)`.
    ///
    /// # Errors
    /// [`Error::NotSubscribed`] for a removed subscription.
    pub fn read_begin(&mut self, key: SubKey) -> Result<(u64, bool), Error> {
        let (_, sub) = self.sub(key).ok_or(Error::NotSubscribed)?;
        Ok((sub.seq, sub.seq == self.seq))
    }

    /// The wake-up condition of `read_begin` and of a deferred `remove`: the epoch `w` is over
    /// (and, read under the lock, its deferred list applied: the 5.18 fix, R41, D4).
    pub fn seq_changed(&self, w: u64) -> bool {
        self.seq != w
    }

    /// Empty everything (attached, pending and deferred), returning the payloads; used to break
    /// reference cycles when the owner is being collected. The counters are left as they are.
    pub fn drain_payloads(&mut self) -> Vec<P> {
        self.deferred.clear();
        self.journal.clear();
        self.native_hits.clear();
        let mut all = std::mem::take(&mut self.journal_removed);
        all.extend(self.tree.drain_values().into_iter().map(|sub| sub.payload));
        self.occupied.clear();
        all
    }

    /// Bytes held beside the tree: the summary of occupied blocks and the native hits' bits
    /// and log.
    pub fn side_bytes(&self) -> usize {
        self.occupied.bytes() + self.native_hits.bytes()
    }

    /// Check R81 and R84 and the tree's own invariants (for tests).
    ///
    /// # Errors
    /// A description of the first broken invariant.
    pub fn check_invariants(&self) -> Result<(), String> {
        self.tree.check_invariants()?;
        if self.active == 0 && self.seq & 1 == 1 {
            return Err(format!(
                "seq {} odd with no active invalidation (R81)",
                self.seq
            ));
        }
        if self.seq & 1 == 0 && !self.deferred.is_empty() {
            return Err("deferred list not empty while seq is even (R81)".into());
        }
        for &key in &self.deferred {
            let (_, sub) = self.tree.get(key).ok_or("deferred key not allocated")?;
            let ok = match sub.pending {
                Pending::Insert => !self.tree.is_attached(key),
                Pending::Remove => self.tree.is_attached(key),
                Pending::None => false,
            };
            if !ok {
                return Err(format!("deferred key {key:?} in the wrong state"));
            }
        }
        for empty in self
            .known_empty
            .into_iter()
            .chain(self.empty_pages.ranges())
        {
            if self.tree.any_overlap(empty) {
                return Err(format!(
                    "{empty:?} is known empty but overlaps a subscription"
                ));
            }
        }
        for &(slot, cur_seq) in self.native_hits.logged() {
            let key = self
                .tree
                .slot_handle(slot)
                .ok_or("a logged hit's slot is vacant")?;
            if !self.tree.is_attached(key) || !self.tree.get(key).is_some_and(|(_, s)| s.native) {
                return Err(format!(
                    "logged hit {key:?} is not an attached native subscription"
                ));
            }
            if cur_seq & 1 == 0 || cur_seq > self.seq {
                return Err(format!(
                    "logged hit {key:?} has seq {cur_seq} (mm seq {})",
                    self.seq
                ));
            }
        }
        for (key, iv, sub) in &self.tree {
            if sub.native != self.native_hits.is_native(key.slot()) {
                return Err(format!("{key:?} is not marked as its kind"));
            }
            if sub.seq & 1 == 0 {
                return Err(format!("subscription seq {} is even (R31)", sub.seq));
            }
            if !self.occupied.covers(iv) {
                return Err(format!(
                    "{iv:?} is in the tree but not in its occupied blocks"
                ));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests;
