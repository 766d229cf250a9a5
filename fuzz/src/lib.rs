//! The fuzz oracle: decode arbitrary bytes into a sequence of protocol operations, run them on
//! the real `mmn_fast::protocol::Protocol` and on a brute-force model of SPEC R7-R42 (a plain
//! list of subscriptions, every overlap found by a linear scan), and panic at the first
//! difference. The same function backs the libFuzzer target (`fuzz_targets/protocol.rs`) and
//! the corpus/random replay test (`tests/replay.rs`, plain `cargo test`).
//!
//! Single-threaded on purpose: the concurrency of the protocol is model-checked by loom
//! (`tests/loom_protocol.rs`); here a remove that the protocol defers is a remover "still
//! waiting", and the model checks that the closing end is what frees it (D4, R40).

use mmn_fast::protocol::{Ended, InsertState, Protocol, Removal, SubKey};
use mmn_fast::{Error, Interval};

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

/// The brute-force model.
#[derive(Debug, Default)]
struct Model {
    seq: u64,
    active: u64,
    subs: Vec<MSub>,
    released: bool,
}

/// Pulls bytes off the input; zeros once it runs out (so every input decodes).
struct Bytes<'a>(&'a [u8]);

impl Bytes<'_> {
    fn u8(&mut self) -> u8 {
        let Some((&b, rest)) = self.0.split_first() else { return 0 };
        self.0 = rest;
        b
    }
    fn u64(&mut self) -> u64 {
        (0..8).fold(0, |acc, _| (acc << 8) | u64::from(self.u8()))
    }
    fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl Model {
    fn overlapping(&self, q: Interval) -> Vec<usize> {
        let mut hits: Vec<usize> = (0..self.subs.len())
            .filter(|&i| matches!(self.subs[i].st, St::Attached | St::PendingRemove) && self.subs[i].iv.overlaps(q))
            .collect();
        hits.sort_by_key(|&i| self.subs[i].iv.start());
        hits
    }

    fn live(&self) -> impl Iterator<Item = usize> + '_ {
        (0..self.subs.len()).filter(|&i| self.subs[i].st != St::Gone)
    }

    /// A subscription index picked by the input: mostly live ones, sometimes a removed one.
    fn pick(&self, b: u8) -> Option<usize> {
        if self.subs.is_empty() {
            return None;
        }
        let live: Vec<usize> = self.live().collect();
        if b & 0x80 == 0 && !live.is_empty() {
            Some(live[usize::from(b) % live.len()])
        } else {
            Some(usize::from(b) % self.subs.len())
        }
    }
}

/// Compare everything observable at rest.
fn compare(p: &Protocol<u32>, m: &Model) {
    assert_eq!(p.seq(), m.seq, "seq");
    assert_eq!(p.active(), m.active, "active");
    if let Err(e) = p.check_invariants() {
        panic!("check_invariants: {e}");
    }
    // R81.
    assert!(m.active > 0 || m.seq & 1 == 0, "model: odd seq while idle");
    // The tree holds exactly the attached subscriptions, in ascending start (R84).
    let mut got: Vec<(u64, u64, u32)> =
        p.tree().iter().map(|(_, iv, s)| (iv.start(), iv.last(), s.payload)).collect();
    let starts: Vec<u64> = got.iter().map(|t| t.0).collect();
    assert!(starts.windows(2).all(|w| w[0] <= w[1]), "iteration out of order");
    let mut want: Vec<(u64, u64, u32)> = m
        .subs
        .iter()
        .enumerate()
        .filter(|(_, s)| matches!(s.st, St::Attached | St::PendingRemove))
        .map(|(i, s)| (s.iv.start(), s.iv.last(), u32::try_from(i).unwrap()))
        .collect();
    got.sort_unstable();
    want.sort_unstable();
    assert_eq!(got, want, "tree contents");
    assert_eq!(p.len(), want.len());
    for (i, s) in m.subs.iter().enumerate() {
        match p.sub(s.key) {
            Some((iv, sub)) => {
                assert_ne!(s.st, St::Gone, "sub {i} still allocated after removal");
                assert_eq!(iv, s.iv);
                assert_eq!(sub.payload, u32::try_from(i).unwrap());
                assert_eq!(sub.seq(), s.seq, "sub {i} seq");
                assert_eq!(sub.seq() & 1, 1, "sub {i} seq even (R31)");
                assert_eq!(p.tree().is_attached(s.key), s.st != St::PendingInsert, "sub {i} attached");
                assert_eq!(p.remove_would_wait(s.key), m.seq & 1 == 1 && s.st != St::PendingInsert);
            }
            None => assert_eq!(s.st, St::Gone, "sub {i} lost"),
        }
    }
}

/// Run one input. Panics on the first difference between the protocol and the model.
pub fn run(data: &[u8]) {
    let mut b = Bytes(data);
    let mut p: Protocol<u32> = Protocol::new();
    let mut m = Model { seq: 2, ..Model::default() };
    let mut steps = 0;
    while !b.is_empty() && steps < 512 {
        steps += 1;
        match b.u8() % 12 {
            // Insert over a small address space (overlaps are common), sometimes at the top.
            0..=2 => {
                let (s, l, flags) = (b.u8(), b.u8(), b.u8());
                let (start, length) = if flags & 0x40 != 0 {
                    let length = u64::from(l % 4) + 1;
                    (u64::MAX - (length - 1) - u64::from(s % 2), length)
                } else {
                    (u64::from(s % 64) * 0x100, u64::from(l % 8 + 1) * 0x80)
                };
                let native = flags & 1 == 1;
                let iv = Interval::from_start_length(start, length).unwrap();
                let id = u32::try_from(m.subs.len()).unwrap();
                let got = p.insert(iv, native, id);
                if m.released {
                    assert_eq!(got.unwrap_err(), Error::Released);
                    continue;
                }
                let (key, state) = got.unwrap();
                // R35.
                let (want, seq, st) = if m.active == 0 {
                    (InsertState::Idle, m.seq - 1, St::Attached)
                } else if m.seq & 1 == 0 {
                    m.seq |= 1;
                    (InsertState::PartiallyExcluded, m.seq, St::Attached)
                } else {
                    (InsertState::Deferred, m.seq, St::PendingInsert)
                };
                assert_eq!(state, want, "insert state");
                m.subs.push(MSub { key, iv, native, seq, st, journaled: false, read: None });
            }
            // Start: `active += 1`, R12/R13; the callback sets its seq when the input says so.
            3..=4 => {
                let (s, l, setmask) = (b.u8(), b.u8(), b.u8());
                let start = u64::from(s) * 0x80;
                let end = if l == 0xff { u64::MAX } else { start + u64::from(l % 16 + 1) * 0x80 };
                let q = Interval::from_range(start, end).unwrap();
                let hits = m.overlapping(q);
                m.active += 1;
                if !hits.is_empty() {
                    m.seq |= 1;
                }
                let mut called = Vec::new();
                let mut handed_natives = Vec::new();
                let mut n = 0u32;
                let started = p.start(q, |key, iv, sub, cur| {
                    assert!(iv.overlaps(q));
                    if sub.is_native() {
                        // Handed back only after a callback subscription in the walk (R16).
                        assert!(!called.is_empty(), "native handed back before any callback");
                        handed_natives.push(key);
                        return;
                    }
                    called.push((sub.payload, cur));
                    if setmask >> (n % 8) & 1 == 1 {
                        sub.set_seq(cur);
                    }
                    n += 1;
                });
                // Nothing refuses here: the in-order walk reaches every native handed back.
                for key in handed_natives {
                    assert!(p.invalidate_native(key, started.cur_seq), "handed-back native gone");
                }
                assert_eq!(started.cur_seq, m.seq, "cur_seq (R83)");
                assert_eq!(started.hits, hits.len(), "hits");
                let want_called: Vec<usize> = hits.iter().copied().filter(|&i| !m.subs[i].native).collect();
                let got_called: Vec<usize> = called.iter().map(|&(id, _)| id as usize).collect();
                let mut sorted_got = got_called.clone();
                sorted_got.sort_unstable();
                let mut sorted_want = want_called.clone();
                sorted_want.sort_unstable();
                assert_eq!(sorted_got, sorted_want, "callbacks (R13)");
                let order: Vec<u64> = got_called.iter().map(|&i| m.subs[i].iv.start()).collect();
                assert!(order.windows(2).all(|w| w[0] <= w[1]), "callbacks out of address order");
                for (k, &(id, cur)) in called.iter().enumerate() {
                    assert_eq!(cur & 1, 1);
                    if setmask >> (k % 8) & 1 == 1 {
                        m.subs[id as usize].seq = cur;
                    }
                }
                for &i in &hits {
                    if m.subs[i].native {
                        m.subs[i].seq = m.seq;
                        m.subs[i].journaled = true;
                    }
                }
            }
            // End (R17).
            5..=6 => {
                let got = p.end();
                if m.active == 0 {
                    assert_eq!(got.unwrap_err(), Error::NoActiveInvalidation);
                    continue;
                }
                m.active -= 1;
                let closes = m.active == 0 && m.seq & 1 == 1;
                match got.unwrap() {
                    Ended::Open => assert!(!closes, "end did not close the epoch"),
                    Ended::Closed { freed } => {
                        assert!(closes, "end closed an epoch it should not have");
                        m.seq += 1;
                        let mut want_freed = Vec::new();
                        for (i, s) in m.subs.iter_mut().enumerate() {
                            match s.st {
                                St::PendingInsert => s.st = St::Attached,
                                St::PendingRemove => {
                                    s.st = St::Gone;
                                    if !s.journaled {
                                        want_freed.push(u32::try_from(i).unwrap());
                                    }
                                }
                                _ => {}
                            }
                        }
                        let mut freed = freed;
                        freed.sort_unstable();
                        assert_eq!(freed, want_freed, "payloads freed by the closing end");
                    }
                }
            }
            // Remove (R39, D4, D6).
            7..=8 => {
                let Some(i) = m.pick(b.u8()) else { continue };
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
                        assert_eq!(freed.map(|f| f as usize), (!m.subs[i].journaled).then_some(i));
                        m.subs[i].st = St::Gone;
                    }
                    (st, got) => panic!("remove of sub {i} in {st:?}: {got:?}"),
                }
            }
            // read_begin (R25, R26).
            9 => {
                let Some(i) = m.pick(b.u8()) else { continue };
                let got = p.read_begin(m.subs[i].key);
                if m.subs[i].st == St::Gone {
                    assert_eq!(got.unwrap_err(), Error::NotSubscribed);
                    continue;
                }
                let (s, wait) = got.unwrap();
                assert_eq!(s, m.subs[i].seq);
                assert_eq!(wait, s == m.seq, "read_begin wait (R25)");
                assert!(!wait || m.seq & 1 == 1, "idle read_begin must never wait (R31)");
                if wait {
                    assert!(!p.seq_changed(s));
                }
                m.subs[i].read = Some(s);
            }
            // read_retry (R28, R30): true iff the seq was overwritten since read_begin.
            10 => {
                let Some(i) = m.pick(b.u8()) else { continue };
                let (Some(s), Some((_, sub))) = (m.subs[i].read, p.sub(m.subs[i].key)) else { continue };
                assert_eq!(sub.seq() != s, m.subs[i].seq != s, "read_retry");
            }
            // Drain the journal; payload walk; release; interval conversions.
            _ => match b.u8() % 4 {
                0 => {
                    let mut seen = Vec::new();
                    let gone = p.drain_journal(|&id| seen.push(id));
                    let mut want: Vec<u32> = (0..m.subs.len())
                        .filter(|&i| m.subs[i].journaled)
                        .map(|i| u32::try_from(i).unwrap())
                        .collect();
                    seen.sort_unstable();
                    want.sort_unstable();
                    assert_eq!(seen, want, "drain_journal");
                    let mut gone = gone;
                    gone.sort_unstable();
                    let want_gone: Vec<u32> = want.iter().copied().filter(|&i| m.subs[i as usize].st == St::Gone).collect();
                    assert_eq!(gone, want_gone, "journaled payloads of removed subscriptions");
                    for s in &mut m.subs {
                        s.journaled = false;
                    }
                }
                1 => {
                    let mut seen = Vec::new();
                    p.for_each_payload(|&id| seen.push(id));
                    seen.sort_unstable();
                    let want: Vec<u32> = (0..m.subs.len())
                        .filter(|&i| m.subs[i].st != St::Gone || m.subs[i].journaled)
                        .map(|i| u32::try_from(i).unwrap())
                        .collect();
                    assert_eq!(seen, want, "for_each_payload");
                }
                2 => {
                    p.mark_released();
                    m.released = true;
                }
                _ => {
                    let (s, l) = (b.u64(), b.u64());
                    let want = l.checked_sub(1).and_then(|d| s.checked_add(d));
                    match Interval::from_start_length(s, l) {
                        Ok(iv) => assert_eq!(Some(iv.last()), want),
                        Err(e) => {
                            assert_eq!(want, None);
                            assert_eq!(e, Error::Overflow { start: s, length: l });
                        }
                    }
                    assert_eq!(Interval::from_range(s, l).is_ok(), s < l);
                    assert_eq!(Interval::new(s, l).is_ok(), s <= l);
                }
            },
        }
        compare(&p, &m);
    }
    // Quiesce: end every open start; the closing end applies everything (R17, R81).
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
    compare(&p, &m);
    assert_eq!(p.seq() & 1, 0);
}
