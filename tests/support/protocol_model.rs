//! The one brute-force model of the interval protocol (SPEC R7-R42, R81-R84, D4, D6), shared by
//! the seeded model test (`tests/protocol_model.rs`) and the fuzz target (`fuzz/src/lib.rs`,
//! which includes this file by path).
//!
//! [`Pair`] runs every [`Op`] on the real `mmn_fast::protocol::Protocol` and on a [`Model`]
//! written straight from the rules (a plain list of subscriptions, every overlap found by a
//! linear scan), checks the answers of the operation, then compares everything observable at
//! rest (seq, active, the tree's contents and order, each subscription's seq, attachment,
//! `read_begin` answer and `remove_would_wait`, `check_invariants()`), and panics at the first
//! difference. Single-threaded on purpose: a remove that the protocol defers is a remover
//! "still waiting", and the model checks that the closing end is what frees it; the threads
//! are loom's (`tests/loom_protocol.rs`).

use mmn_fast::protocol::{Ended, InsertState, Protocol, Removal, Started, Sub, SubKey};
use mmn_fast::tree::Found;
use mmn_fast::{Error, Interval};

/// One operation, as the fuzzer decodes it or the model test draws it.
#[derive(Clone, Copy, Debug)]
pub enum Op {
    /// Insert `[start, start + length)`, a native subscription or a callback one (R35).
    Insert {
        start: u64,
        length: u64,
        native: bool,
    },
    /// A start over `q` (R12, R13); bit `k % 8` of `set_mask` says whether the `k`-th callback
    /// sets its seq.
    Start { q: Interval, set_mask: u8 },
    /// An end, also with nothing active (R17, D6).
    End,
    /// The first `count` ranges of `queries` as `invalidate_many` runs them: one `find`, then
    /// each range in one step (`run_found_natives`) or as a start (`start_found`, callbacks
    /// as `set_mask` says) and an end; the model runs a start and an end per range.
    Batch {
        queries: [Interval; 4],
        count: u8,
        set_mask: u8,
    },
    /// Remove the subscription `pick` names (R39, D4, D6).
    Remove { pick: u8 },
    /// `read_begin` on the subscription `pick` names (R25, R26).
    ReadBegin { pick: u8 },
    /// `read_retry` against its last `read_begin` (R28, R30).
    ReadRetry { pick: u8 },
    /// Drain the journal of native hits.
    Drain,
    /// Walk every payload the protocol holds.
    Payloads,
    /// `mark_released` (D12).
    Release,
    /// The `Interval` constructors on raw values.
    Conversions { a: u64, b: u64 },
}

/// Where a model subscription is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum St {
    Attached,
    /// Deferred insert: off the tree until the closing end (R35c).
    PendingInsert,
    /// Deferred remove: in the tree until the closing end (R39b).
    PendingRemove,
    Gone,
}

#[derive(Debug)]
struct MSub {
    key: SubKey,
    iv: Interval,
    native: bool,
    seq: u64,
    st: St,
    /// On the journal since the last drain (natives only).
    journaled: bool,
    /// The seq the last `read_begin` returned.
    read: Option<u64>,
}

/// The brute-force model: the rules, with nothing clever.
#[derive(Debug)]
pub struct Model {
    seq: u64,
    active: u64,
    subs: Vec<MSub>,
    released: bool,
}

impl Model {
    fn overlapping(&self, q: Interval) -> Vec<usize> {
        let mut hits: Vec<usize> = (0..self.subs.len())
            .filter(|&i| {
                matches!(self.subs[i].st, St::Attached | St::PendingRemove)
                    && self.subs[i].iv.overlaps(q)
            })
            .collect();
        hits.sort_by_key(|&i| self.subs[i].iv.start());
        hits
    }

    /// A subscription index picked by `b`: mostly live ones (`b < 0x80`), else any, removed
    /// ones included.
    fn pick(&self, b: u8) -> Option<usize> {
        if self.subs.is_empty() {
            return None;
        }
        let live: Vec<usize> = (0..self.subs.len())
            .filter(|&i| self.subs[i].st != St::Gone)
            .collect();
        if b & 0x80 == 0 && !live.is_empty() {
            Some(live[usize::from(b) % live.len()])
        } else {
            Some(usize::from(b) % self.subs.len())
        }
    }
}

fn id(i: usize) -> u32 {
    u32::try_from(i).unwrap()
}

/// The implementation under test and the model, side by side.
pub struct Pair {
    p: Protocol<u32>,
    m: Model,
    /// Operations applied: every fourth compares each subscription too, which reads (and so
    /// applies) the native hits the starts log; the others leave the log to build up.
    ops: u64,
}

impl Default for Pair {
    fn default() -> Self {
        Self::new()
    }
}

impl Pair {
    /// A fresh protocol and model (R2).
    pub fn new() -> Self {
        Self {
            p: Protocol::new(),
            m: Model {
                seq: 2,
                active: 0,
                subs: Vec::new(),
                released: false,
            },
            ops: 0,
        }
    }

    /// How many subscriptions were ever inserted (the model test keeps the count bounded).
    pub fn inserted(&self) -> usize {
        self.m.subs.len()
    }

    /// Run `op` on both, check its answer, then compare the whole state.
    pub fn apply(&mut self, op: Op) {
        match op {
            Op::Insert {
                start,
                length,
                native,
            } => self.insert(Interval::from_start_length(start, length).unwrap(), native),
            Op::Start { q, set_mask } => self.start(q, set_mask),
            Op::End => self.end(),
            Op::Batch {
                queries,
                count,
                set_mask,
            } => self.batch(&queries[..usize::from(count)], set_mask),
            Op::Remove { pick } => self.remove(pick),
            Op::ReadBegin { pick } => self.read_begin(pick),
            Op::ReadRetry { pick } => self.read_retry(pick),
            Op::Drain => self.drain(),
            Op::Payloads => self.payloads(),
            Op::Release => {
                self.p.mark_released();
                self.m.released = true;
            }
            Op::Conversions { a, b } => conversions(a, b),
        }
        self.ops += 1;
        self.compare(self.ops % 4 == 0);
    }

    /// End every open start; the closing end applies everything (R17, R81). Then compare.
    pub fn quiesce(&mut self) {
        let (p, m) = (&mut self.p, &mut self.m);
        while m.active > 0 {
            p.end().unwrap();
            m.active -= 1;
        }
        if m.seq & 1 == 1 {
            m.seq += 1;
        }
        for s in &mut m.subs {
            s.st = match s.st {
                St::PendingInsert => St::Attached,
                St::PendingRemove => St::Gone,
                st => st,
            };
        }
        self.compare(true);
        assert_eq!(self.p.seq() & 1, 0);
    }

    /// R35 (and D12 once released).
    fn insert(&mut self, iv: Interval, native: bool) {
        let (p, m) = (&mut self.p, &mut self.m);
        let got = p.insert(iv, native, id(m.subs.len()));
        if m.released {
            assert_eq!(got.unwrap_err(), Error::Released);
            return;
        }
        let (key, state) = got.unwrap();
        let (want, seq, st) = if m.active == 0 {
            (InsertState::Idle, m.seq - 1, St::Attached)
        } else if m.seq & 1 == 0 {
            m.seq |= 1; // R8b
            (InsertState::PartiallyExcluded, m.seq, St::Attached)
        } else {
            (InsertState::Deferred, m.seq, St::PendingInsert)
        };
        assert_eq!(state, want, "insert state");
        m.subs.push(MSub {
            key,
            iv,
            native,
            seq,
            st,
            journaled: false,
            read: None,
        });
    }

    /// `active += 1`, R8a, R12, R13, R16; the callbacks set their seq as `set_mask` says.
    fn start(&mut self, q: Interval, set_mask: u8) {
        self.start_on(q, set_mask, None);
    }

    /// [`Pair::start`] of `q`, walking, or on the hits of query `i` of a batch's `found`.
    fn start_on(&mut self, q: Interval, set_mask: u8, found: Option<(&Found, usize)>) {
        let (p, m) = (&mut self.p, &mut self.m);
        let hits = m.overlapping(q);
        m.active += 1;
        if !hits.is_empty() {
            m.seq |= 1;
        }
        let mut called = Vec::new();
        let mut handed = Vec::new();
        let on_hit = |key: SubKey, iv: Interval, sub: &Sub<u32>, cur: u64| {
            assert!(iv.overlaps(q));
            assert_eq!(cur & 1, 1, "R83: cur_seq is odd");
            if sub.is_native() {
                // Handed back only after a callback subscription in the walk (R16).
                assert!(!called.is_empty(), "native handed back before any callback");
            } else {
                called.push((sub.payload, cur));
            }
            handed.push((key, sub.is_native()));
        };
        let started = match found {
            None => p.start(q, on_hit),
            Some((found, i)) => p.start_found(found, i, on_hit),
        };
        // After unlocking, in walk order (nothing refuses here): a callback sets its seq as
        // `set_mask` says, a native handed back is invalidated by the caller.
        let mut n = 0u32;
        for (key, native) in handed {
            if native {
                assert!(
                    p.invalidate_native(key, started.cur_seq),
                    "handed-back native gone"
                );
                continue;
            }
            if set_mask >> (n % 8) & 1 == 1 {
                p.sub_mut(key).unwrap().1.set_seq(started.cur_seq);
            }
            n += 1;
        }
        assert_eq!(started.cur_seq, m.seq, "cur_seq (R83)");
        assert_eq!(started.hits, hits.len(), "hits");
        let mut want: Vec<u32> = hits
            .iter()
            .copied()
            .filter(|&i| !m.subs[i].native)
            .map(id)
            .collect();
        let order: Vec<u64> = called
            .iter()
            .map(|&(i, _)| m.subs[i as usize].iv.start())
            .collect();
        assert!(
            order.windows(2).all(|w| w[0] <= w[1]),
            "callbacks out of address order"
        );
        let mut got: Vec<u32> = called.iter().map(|&(i, _)| i).collect();
        got.sort_unstable();
        want.sort_unstable();
        assert_eq!(got, want, "callbacks (R13)");
        for (k, &(i, cur)) in called.iter().enumerate() {
            if set_mask >> (k % 8) & 1 == 1 {
                m.subs[i as usize].seq = cur;
            }
        }
        for &i in &hits {
            if m.subs[i].native {
                m.subs[i].seq = m.seq;
                m.subs[i].journaled = true;
            }
        }
    }

    /// `invalidate_many`'s way through `queries` (R12-R18, R81): one `find`, then each range
    /// in order, in one step when no other start is active and every hit is native
    /// (`run_found_natives`, which must take exactly those), else start (on the found hits)
    /// and end. The tree cannot change in between: nothing is inserted or removed, and an end
    /// applies a deferred list only while another start is active (R81), which keeps these
    /// ends from closing the epoch.
    fn batch(&mut self, queries: &[Interval], set_mask: u8) {
        let mut found = Found::new();
        self.p.find(queries, &mut found);
        for (i, &q) in queries.iter().enumerate() {
            let hits = self.m.overlapping(q);
            let one_step = self.m.active == 0 && hits.iter().all(|&h| self.m.subs[h].native);
            if let Some(started) = self.p.run_found_natives(&found, i) {
                assert!(one_step, "run_found_natives ran {q:?}");
                self.natives_start_end(&hits, started);
            } else {
                assert!(!one_step, "run_found_natives left {q:?}");
                self.start_on(q, set_mask, Some((&found, i)));
                assert!(!self.p.has_deferred() || self.p.active() > 1);
                self.end();
            }
        }
    }

    /// The model's start and end of a range whose `hits` are all native, with nothing else
    /// active, checked against what [`Protocol::run_found_natives`] answered.
    fn natives_start_end(&mut self, hits: &[usize], started: Started) {
        let m = &mut self.m;
        assert_eq!(started.hits, hits.len(), "hits");
        if hits.is_empty() {
            assert_eq!(started.cur_seq, m.seq, "cur_seq without hits (R12)");
            return;
        }
        let cur_seq = m.seq | 1;
        assert_eq!(started.cur_seq, cur_seq, "cur_seq (R83)");
        for &h in hits {
            m.subs[h].seq = cur_seq;
            m.subs[h].journaled = true;
        }
        m.seq = cur_seq + 1; // the end closes the epoch it opened (R17)
    }

    /// R9, R17: only the end that takes `active` to 0 with `seq` odd closes the epoch.
    fn end(&mut self) {
        let (p, m) = (&mut self.p, &mut self.m);
        let got = p.end();
        if m.active == 0 {
            assert_eq!(got.unwrap_err(), Error::NoActiveInvalidation);
            return;
        }
        m.active -= 1;
        let closes = m.active == 0 && m.seq & 1 == 1;
        match got.unwrap() {
            Ended::Open => assert!(!closes, "end did not close the epoch"),
            Ended::Closed { mut freed } => {
                assert!(closes, "end closed an epoch it should not have");
                m.seq += 1;
                let mut want_freed = Vec::new();
                for (i, s) in m.subs.iter_mut().enumerate() {
                    match s.st {
                        St::PendingInsert => s.st = St::Attached,
                        St::PendingRemove => {
                            s.st = St::Gone;
                            if !s.journaled {
                                want_freed.push(id(i));
                            }
                        }
                        _ => {}
                    }
                }
                freed.sort_unstable();
                assert_eq!(freed, want_freed, "payloads freed by the closing end");
            }
        }
    }

    /// R39, D4, D6.
    fn remove(&mut self, pick: u8) {
        let (p, m) = (&mut self.p, &mut self.m);
        let Some(i) = m.pick(pick) else { return };
        let got = p.remove(m.subs[i].key);
        let odd = m.seq & 1 == 1;
        match (m.subs[i].st, got) {
            (St::Gone | St::PendingRemove, Err(e)) => assert_eq!(e, Error::NotSubscribed),
            (St::PendingInsert, Ok(Removal::Done(freed))) => {
                assert!(odd);
                assert_eq!(freed.is_some(), !m.subs[i].journaled);
                m.subs[i].st = St::Gone;
            }
            (St::Attached, Ok(Removal::Deferred { wait_seq })) => {
                assert!(odd, "remove deferred while idle");
                assert_eq!(wait_seq, m.seq);
                assert!(!p.seq_changed(wait_seq), "the waiter would not wait");
                m.subs[i].st = St::PendingRemove;
            }
            (St::Attached, Ok(Removal::Done(freed))) => {
                assert!(!odd, "remove not deferred during an epoch");
                assert_eq!(freed, (!m.subs[i].journaled).then_some(id(i)));
                m.subs[i].st = St::Gone;
            }
            (st, got) => panic!("remove of sub {i} in {st:?}: {got:?}"),
        }
    }

    /// R25, R26, R31.
    fn read_begin(&mut self, pick: u8) {
        let (p, m) = (&mut self.p, &mut self.m);
        let Some(i) = m.pick(pick) else { return };
        let got = p.read_begin(m.subs[i].key);
        if m.subs[i].st == St::Gone {
            assert_eq!(got.unwrap_err(), Error::NotSubscribed);
            return;
        }
        let (s, wait) = got.unwrap();
        assert_eq!(s, m.subs[i].seq);
        assert_eq!(wait, s == m.seq, "read_begin wait (R25)");
        assert!(
            !wait || m.seq & 1 == 1,
            "idle read_begin must never wait (R31)"
        );
        if wait {
            assert!(!p.seq_changed(s));
        }
        m.subs[i].read = Some(s);
    }

    /// R28, R30: true iff the seq was overwritten since `read_begin`.
    fn read_retry(&mut self, pick: u8) {
        let Some(i) = self.m.pick(pick) else { return };
        let (Some(s), Some((_, sub))) = (self.m.subs[i].read, self.p.sub(self.m.subs[i].key))
        else {
            return;
        };
        assert_eq!(sub.seq() != s, self.m.subs[i].seq != s, "read_retry");
    }

    fn drain(&mut self) {
        let (p, m) = (&mut self.p, &mut self.m);
        let mut seen = Vec::new();
        let mut gone = p.drain_journal(|&i| seen.push(i));
        let mut want: Vec<u32> = (0..m.subs.len())
            .filter(|&i| m.subs[i].journaled)
            .map(id)
            .collect();
        seen.sort_unstable();
        want.sort_unstable();
        assert_eq!(seen, want, "drain_journal");
        gone.sort_unstable();
        let want_gone: Vec<u32> = want
            .iter()
            .copied()
            .filter(|&i| m.subs[i as usize].st == St::Gone)
            .collect();
        assert_eq!(
            gone, want_gone,
            "journaled payloads of removed subscriptions"
        );
        for s in &mut m.subs {
            s.journaled = false;
        }
    }

    fn payloads(&self) {
        let mut seen = Vec::new();
        self.p.for_each_payload(|&i| seen.push(i));
        seen.sort_unstable();
        let m = &self.m;
        let want: Vec<u32> = (0..m.subs.len())
            .filter(|&i| m.subs[i].st != St::Gone || m.subs[i].journaled)
            .map(id)
            .collect();
        assert_eq!(seen, want, "for_each_payload");
    }

    /// Everything observable at rest (R25, R31, R81, R84); each subscription's own state too
    /// when `subs`.
    fn compare(&mut self, subs: bool) {
        let (p, m) = (&mut self.p, &self.m);
        assert_eq!((p.seq(), p.active()), (m.seq, m.active), "seq, active");
        if let Err(e) = p.check_invariants() {
            panic!("check_invariants: {e}");
        }
        assert!(m.active > 0 || m.seq & 1 == 0, "model: odd seq while idle");
        // The tree holds exactly the attached subscriptions, in ascending start (R84).
        let mut got: Vec<(u64, u64, u32)> = p
            .tree()
            .iter()
            .map(|(_, iv, s)| (iv.start(), iv.last(), s.payload))
            .collect();
        assert!(
            got.windows(2).all(|w| w[0].0 <= w[1].0),
            "iteration out of order"
        );
        let mut want: Vec<(u64, u64, u32)> = m
            .subs
            .iter()
            .enumerate()
            .filter(|(_, s)| matches!(s.st, St::Attached | St::PendingRemove))
            .map(|(i, s)| (s.iv.start(), s.iv.last(), id(i)))
            .collect();
        got.sort_unstable();
        want.sort_unstable();
        assert_eq!(got, want, "tree contents");
        assert_eq!(p.len(), want.len());
        if !subs {
            return;
        }
        for (i, s) in m.subs.iter().enumerate() {
            let Some((iv, sub)) = p.sub(s.key) else {
                assert_eq!(s.st, St::Gone, "sub {i} lost");
                continue;
            };
            assert_ne!(s.st, St::Gone, "sub {i} still allocated after removal");
            assert_eq!(iv, s.iv);
            assert_eq!(sub.payload, id(i));
            assert_eq!(sub.seq(), s.seq, "sub {i} seq");
            assert_eq!(sub.seq() & 1, 1, "sub {i} seq even (R31)");
            let attached = s.st != St::PendingInsert;
            assert_eq!(p.tree().is_attached(s.key), attached, "sub {i} attached");
            assert_eq!(p.remove_would_wait(s.key), m.seq & 1 == 1 && attached);
            let (seq, waits) = p.read_begin(s.key).unwrap();
            assert_eq!(
                (seq, waits),
                (s.seq, s.seq == m.seq),
                "sub {i} read_begin (R25)"
            );
        }
    }
}

/// The `Interval` constructors on raw values (D3).
fn conversions(a: u64, b: u64) {
    let want = b.checked_sub(1).and_then(|d| a.checked_add(d));
    match Interval::from_start_length(a, b) {
        Ok(iv) => assert_eq!(Some(iv.last()), want),
        Err(e) => {
            assert_eq!(want, None);
            assert_eq!(
                e,
                Error::Overflow {
                    start: a,
                    length: b
                }
            );
        }
    }
    assert_eq!(Interval::from_range(a, b).is_ok(), a < b);
    assert_eq!(Interval::new(a, b).is_ok(), a <= b);
}
