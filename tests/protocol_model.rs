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

mod support;

use support::Rng;

/// Where a subscription is, for the model.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Place {
    InTree,
    /// Deferred insert: off-tree until the closing end (R35c).
    PendingInsert,
    /// Deferred remove: in the tree until the closing end (R39b).
    PendingRemove,
}

/// What the model knows of one subscription.
#[derive(Clone, Debug)]
struct ModelSub {
    iv: Interval,
    seq: u64,
    place: Place,
    native: bool,
}

impl ModelSub {
    fn in_tree(&self) -> bool {
        self.place != Place::PendingInsert
    }
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
            .filter(|(_, s)| s.in_tree() && s.iv.overlaps(q))
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
            for (&id, s) in &mut self.subs {
                match s.place {
                    Place::PendingInsert => s.place = Place::InTree,
                    Place::PendingRemove => freed.push(id),
                    Place::InTree => {}
                }
            }
            self.subs.retain(|_, s| s.place != Place::PendingRemove);
        }
        Some(freed)
    }
}

fn random_interval(rng: &mut Rng) -> Interval {
    let start = rng.below(64) * 0x100;
    let length = 1 + rng.below(4) * 0x100;
    Interval::from_start_length(start, length).unwrap()
}

/// The implementation under test and the model, side by side.
struct Pair {
    p: Protocol<u64>,
    m: Model,
    keys: BTreeMap<u64, SubKey>,
    next_id: u64,
}

impl Pair {
    fn insert(&mut self, rng: &mut Rng, ctx: &str) {
        let (p, m) = (&mut self.p, &mut self.m);
        let iv = random_interval(rng);
        let native = rng.below(3) == 0;
        let (key, state) = p.insert(iv, native, self.next_id).unwrap();
        let expect = if m.active == 0 {
            InsertState::Idle
        } else if m.seq & 1 == 0 {
            m.seq |= 1; // R8b
            InsertState::PartiallyExcluded
        } else {
            InsertState::Deferred
        };
        assert_eq!(state, expect, "{ctx}");
        let (seq, place) = match expect {
            InsertState::Idle => (m.seq - 1, Place::InTree),
            InsertState::PartiallyExcluded => (m.seq, Place::InTree),
            InsertState::Deferred => (m.seq, Place::PendingInsert),
        };
        m.subs.insert(
            self.next_id,
            ModelSub {
                iv,
                seq,
                place,
                native,
            },
        );
        self.keys.insert(self.next_id, key);
        self.next_id += 1;
    }

    fn remove(&mut self, rng: &mut Rng, ctx: &str) {
        let (p, m) = (&mut self.p, &mut self.m);
        let ids: Vec<u64> = m.subs.keys().copied().collect();
        let id = ids[rng.index(ids.len())];
        let s = m.subs[&id].clone();
        let outcome = p.remove(self.keys[&id]);
        if s.place == Place::PendingRemove {
            assert!(outcome.is_err(), "{ctx}: second remove accepted");
        } else if m.seq & 1 == 1 && s.in_tree() {
            assert!(
                matches!(outcome, Ok(Removal::Deferred { wait_seq }) if wait_seq == m.seq),
                "{ctx}: remove during an epoch must defer (R39b)"
            );
            m.subs.get_mut(&id).unwrap().place = Place::PendingRemove;
        } else {
            assert!(matches!(outcome, Ok(Removal::Done(_))), "{ctx}");
            m.subs.remove(&id);
            self.keys.remove(&id);
        }
    }

    fn start(&mut self, rng: &mut Rng, ctx: &str) {
        let q = random_interval(rng);
        let mut handed = Vec::new();
        let started = self.p.start(q, |key, _, sub, cur| {
            assert_eq!(cur & 1, 1, "R83: cur_seq is odd");
            handed.push((key, sub.is_native(), sub.payload));
        });
        // No callback refuses here: natives handed back are invalidated in order (R16).
        let mut got = Vec::new();
        for (key, native, id) in handed {
            if native {
                assert!(self.p.invalidate_native(key, started.cur_seq), "{ctx}");
            } else {
                got.push(id);
            }
        }
        got.sort_unstable();
        let (cur, want, hits) = self.m.start(q);
        assert_eq!(
            (started.cur_seq, got, started.hits),
            (cur, want, hits),
            "{ctx}"
        );
    }

    fn end(&mut self, ctx: &str) {
        let ended = self.p.end();
        let Some(mut want) = self.m.end() else {
            assert!(ended.is_err(), "{ctx}: end with nothing active (D6)");
            return;
        };
        let mut freed = match ended.unwrap() {
            Ended::Open => Vec::new(),
            Ended::Closed { freed } => freed,
        };
        // Removed natives still on the journal stay with the protocol until the drain.
        want.retain(|id| !self.m.journal.contains(id));
        freed.sort_unstable();
        want.sort_unstable();
        assert_eq!(freed, want, "{ctx}");
        for id in &want {
            self.keys.remove(id);
        }
    }

    fn drain(&mut self, ctx: &str) {
        let mut drained = Vec::new();
        self.p.drain_journal(|id| drained.push(*id));
        drained.sort_unstable();
        let mut want = std::mem::take(&mut self.m.journal);
        want.sort_unstable();
        assert_eq!(drained, want, "{ctx}: journal");
        let subs = &self.m.subs;
        self.keys.retain(|id, _| subs.contains_key(id));
    }

    /// The whole state agrees (R25, R81-R84).
    fn compare(&self, ctx: &str) {
        let (p, m) = (&self.p, &self.m);
        assert_eq!((p.seq(), p.active()), (m.seq, m.active), "{ctx}");
        assert_eq!(
            p.len(),
            m.subs
                .values()
                .filter(|s| s.place != Place::PendingInsert)
                .count(),
            "{ctx}"
        );
        for (id, s) in &m.subs {
            let key = self.keys[id];
            assert_eq!(
                p.sub(key).map(|(_, sub)| sub.seq()),
                Some(s.seq),
                "{ctx}: sub {id} seq"
            );
            let (seq, wait) = p.read_begin(key).unwrap();
            assert_eq!(
                (seq, wait),
                (s.seq, s.seq == m.seq),
                "{ctx}: read_begin R25"
            );
        }
        if let Err(e) = p.check_invariants() {
            panic!("{ctx}: {e}");
        }
    }
}

fn run(seed: u64, steps: usize) {
    let mut rng = Rng(seed);
    let mut pair = Pair {
        p: Protocol::new(),
        m: Model {
            seq: 2,
            ..Model::default()
        },
        keys: BTreeMap::new(),
        next_id: 0,
    };
    for step in 0..steps {
        let ctx = format!("seed {seed} step {step}");
        match rng.below(10) {
            0..=2 => pair.insert(&mut rng, &ctx),
            3..=4 if !pair.m.subs.is_empty() => pair.remove(&mut rng, &ctx),
            5..=6 => pair.start(&mut rng, &ctx),
            7..=8 => pair.end(&ctx),
            _ => pair.drain(&ctx),
        }
        pair.compare(&ctx);
    }
}

#[test]
fn protocol_matches_the_model() {
    if let Some(seed) = std::env::var("PROTOCOL_MODEL_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
    {
        run(seed, 5_000);
        return;
    }
    for seed in 0..200 {
        run(seed, 400);
    }
}
