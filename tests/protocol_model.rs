//! Seeded random model test of the interval protocol (SPEC R7-R42, R81-R84): every operation is
//! applied to `Protocol` and to a brute-force model written straight from the rules, the
//! answers (seq, active, hits, insert state, remove outcome, subscription seqs, tree contents)
//! are compared at every step, and `check_invariants()` runs after every step.
//!
//! A failure prints its seed; `PROTOCOL_MODEL_SEED=<seed> cargo test --test protocol_model`
//! replays that seed alone.

use std::collections::BTreeMap;

use mmn_fast::protocol::{Ended, InsertState, Protocol, Removal, SubKey};
use mmn_fast::Interval;

/// splitmix64, seedable.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// What the model knows of one subscription.
#[derive(Clone, Debug)]
struct ModelSub {
    iv: Interval,
    seq: u64,
    in_tree: bool,
    pending_insert: bool,
    pending_remove: bool,
    native: bool,
}

/// The rules, with nothing clever: lists and linear scans.
#[derive(Default)]
struct Model {
    seq: u64,
    active: u64,
    subs: BTreeMap<u64, ModelSub>, // by payload id
    journal: Vec<u64>,             // native ids hit since the last drain, once each
}

impl Model {
    fn start(&mut self, q: Interval) -> (u64, Vec<u64>, usize) {
        self.active += 1;
        let hit: Vec<u64> = self
            .subs
            .iter()
            .filter(|(_, s)| s.in_tree && s.iv.overlaps(q))
            .map(|(&id, _)| id)
            .collect();
        if !hit.is_empty() {
            self.seq |= 1; // R8a
        }
        let cur = self.seq;
        let mut callbacks = Vec::new();
        for &id in &hit {
            let s = self.subs.get_mut(&id).unwrap();
            if s.native {
                s.seq = cur;
                if !self.journal.contains(&id) {
                    self.journal.push(id);
                }
            } else {
                callbacks.push(id);
            }
        }
        callbacks.sort_unstable();
        (cur, callbacks, hit.len())
    }

    fn end(&mut self) -> Option<Vec<u64>> {
        if self.active == 0 {
            return None;
        }
        self.active -= 1;
        let mut freed = Vec::new();
        if self.active == 0 && self.seq & 1 == 1 {
            self.seq += 1; // R9
            let ids: Vec<u64> = self.subs.keys().copied().collect();
            for id in ids {
                let s = self.subs.get_mut(&id).unwrap();
                if s.pending_insert {
                    s.pending_insert = false;
                    s.in_tree = true;
                } else if s.pending_remove {
                    self.subs.remove(&id);
                    freed.push(id);
                }
            }
        }
        Some(freed)
    }
}

fn random_interval(rng: &mut Rng) -> Interval {
    let start = rng.below(64) * 0x100;
    let length = 1 + rng.below(4) * 0x100;
    Interval::from_start_length(start, length).unwrap()
}

fn run(seed: u64, steps: usize) {
    let mut rng = Rng(seed);
    let mut p: Protocol<u64> = Protocol::new();
    let mut m = Model { seq: 2, ..Model::default() };
    let mut keys: BTreeMap<u64, SubKey> = BTreeMap::new();
    let mut next_id = 0u64;
    for step in 0..steps {
        let ctx = || format!("seed {seed} step {step}");
        match rng.below(10) {
            0..=2 => {
                let iv = random_interval(&mut rng);
                let native = rng.below(3) == 0;
                let (key, state) = p.insert(iv, native, next_id).unwrap();
                let (expect_state, in_tree) = if m.active == 0 {
                    (InsertState::Idle, true)
                } else if m.seq & 1 == 0 {
                    m.seq |= 1;
                    (InsertState::PartiallyExcluded, true)
                } else {
                    (InsertState::Deferred, false)
                };
                assert_eq!(state, expect_state, "{}", ctx());
                let seq = if expect_state == InsertState::Idle { m.seq - 1 } else { m.seq };
                m.subs.insert(
                    next_id,
                    ModelSub { iv, seq, in_tree, pending_insert: !in_tree, pending_remove: false, native },
                );
                keys.insert(next_id, key);
                next_id += 1;
            }
            3..=4 if !m.subs.is_empty() => {
                let ids: Vec<u64> = m.subs.keys().copied().collect();
                let id = ids[usize::try_from(rng.below(ids.len() as u64)).unwrap()];
                let key = keys[&id];
                let s = m.subs[&id].clone();
                let outcome = p.remove(key);
                if s.pending_remove {
                    assert!(outcome.is_err(), "{}: second remove accepted", ctx());
                } else if m.seq & 1 == 1 && s.in_tree {
                    assert!(
                        matches!(outcome, Ok(Removal::Deferred { wait_seq }) if wait_seq == m.seq),
                        "{}: remove during an epoch must defer",
                        ctx()
                    );
                    m.subs.get_mut(&id).unwrap().pending_remove = true;
                } else {
                    assert!(matches!(outcome, Ok(Removal::Done(_))), "{}", ctx());
                    m.subs.remove(&id);
                    keys.remove(&id);
                }
            }
            5..=6 => {
                let q = random_interval(&mut rng);
                let mut got = Vec::new();
                let started = p.start(q, |_, _, sub, cur| {
                    assert_eq!(cur & 1, 1, "R83: cur_seq is odd");
                    got.push(sub.payload);
                });
                got.sort_unstable();
                let (cur, want, hits) = m.start(q);
                assert_eq!((started.cur_seq, got, started.hits), (cur, want, hits), "{}", ctx());
            }
            7..=8 => {
                let ended = p.end();
                match m.end() {
                    None => assert!(ended.is_err(), "{}: end with nothing active", ctx()),
                    Some(mut want) => {
                        let mut freed = match ended.unwrap() {
                            Ended::Open => Vec::new(),
                            Ended::Closed { freed } => freed,
                        };
                        // Removed natives still on the journal stay with the protocol.
                        want.retain(|id| !m.journal.contains(id));
                        freed.sort_unstable();
                        want.sort_unstable();
                        assert_eq!(freed, want, "{}", ctx());
                        for id in &want {
                            keys.remove(id);
                        }
                    }
                }
            }
            _ => {
                let mut drained = Vec::new();
                p.drain_journal(|id| drained.push(*id));
                drained.sort_unstable();
                let mut want = std::mem::take(&mut m.journal);
                want.sort_unstable();
                assert_eq!(drained, want, "{}: journal", ctx());
                keys.retain(|id, _| m.subs.contains_key(id));
            }
        }
        // Compare the whole state (R81-R84).
        assert_eq!((p.seq(), p.active()), (m.seq, m.active), "{}", ctx());
        assert_eq!(p.len(), m.subs.values().filter(|s| s.in_tree).count(), "{}", ctx());
        for (id, s) in &m.subs {
            let key = keys[id];
            assert_eq!(p.sub(key).map(|(_, sub)| sub.seq()), Some(s.seq), "{}: sub {id} seq", ctx());
            let (seq, wait) = p.read_begin(key).unwrap();
            assert_eq!((seq, wait), (s.seq, s.seq == m.seq), "{}: read_begin R25", ctx());
        }
        if let Err(e) = p.check_invariants() {
            panic!("{}: {e}", ctx());
        }
    }
}

#[test]
fn protocol_matches_the_model() {
    if let Some(seed) = std::env::var("PROTOCOL_MODEL_SEED").ok().and_then(|s| s.parse().ok()) {
        run(seed, 5_000);
        return;
    }
    for seed in 0..200 {
        run(seed, 400);
    }
}
