//! Model checking of the interval-mode protocol under `loom` (issue 6; SPEC R7-R42, R77, D4).
//!
//! `mmn_fast::protocol::Protocol` is the real, unmodified state machine; it is wrapped here in
//! `loom::sync::Mutex` + `Condvar` exactly as `rust/notifier.rs` wraps it in the std ones: every
//! transition runs under the lock, the closing end wakes with `notify_all` after unlocking, and
//! the two waiters (`read_begin`, a deferred `remove`) wait while `!seq_changed(w)`, evaluated
//! under the lock. Unlike `Notifier::wait_seq_change`, the waits here have no timeout slices, so
//! a lost wake-up is not hidden by a periodic re-check: loom reports it as a deadlock.
//!
//! Each model runs 2-3 threads (an invalidator, an inserter/remover, a reader) and checks, for
//! every interleaving loom explores:
//! - no deadlock, no lost wake-up (every wait returns);
//! - the retry guarantee (R28, R30): if an invalidation called `set_seq` on the reader's
//!   subscription after its `read_begin`, `read_retry` is true; if none did, it is false;
//! - the mirror built by the reader never keeps a stale entry;
//! - `remove` returns only after the closing end applied the deferred list (D4), and no
//!   callback of a subscription runs after its `remove` returned (R40);
//! - at quiescence `seq` is even, `active == 0`, the deferred list is empty (R81).
//!
//! Run (bounded so that it ends in a few minutes; see docs/reliability.md):
//! `RUSTFLAGS="--cfg loom" LOOM_MAX_PREEMPTIONS=3 cargo test --release --test loom_protocol`
#![allow(unexpected_cfgs)]
#![cfg(loom)]

use loom::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use loom::sync::{Arc, Condvar, Mutex, MutexGuard};
use loom::thread;

use mmn_fast::protocol::{Ended, Protocol, Removal, SubKey};
use mmn_fast::Interval;

/// `loom::model(f)`, printing how many interleavings it explored (loom itself says so only
/// with `LOOM_LOG`).
fn model(name: &str, f: impl Fn() + Sync + Send + 'static) {
    static RUNS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let before = RUNS.load(std::sync::atomic::Ordering::Relaxed);
    loom::model(move || {
        RUNS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        f();
    });
    let runs = RUNS.load(std::sync::atomic::Ordering::Relaxed) - before;
    eprintln!("loom {name}: {runs} interleavings explored");
}

/// The protocol plus test bookkeeping, under one lock (the mm lock).
struct State {
    proto: Protocol<&'static str>,
    /// How many `set_seq` calls the subscription of interest has received.
    sets: u64,
}

/// `rust/notifier.rs` with loom primitives.
struct Mm {
    state: Mutex<State>,
    epoch_closed: Condvar,
}

impl Mm {
    fn new() -> Self {
        Self {
            state: Mutex::new(State {
                proto: Protocol::new(),
                sets: 0,
            }),
            epoch_closed: Condvar::new(),
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap()
    }

    /// Pairs with `wake_all`: wait until `seq != w`, read under the lock.
    fn wait_seq_change(&self, w: u64) {
        let mut guard = self.lock();
        // Loop invariant: `guard` is held; spurious wake-ups re-check the condition.
        while !guard.proto.seq_changed(w) {
            guard = self.epoch_closed.wait(guard).unwrap();
        }
    }

    fn wake_all(&self) {
        self.epoch_closed.notify_all();
    }

    fn insert(&self, start: u64, len: u64, name: &'static str) -> SubKey {
        let iv = Interval::from_start_length(start, len).unwrap();
        self.lock().proto.insert(iv, false, name).unwrap().0
    }

    /// Interval-side start: the keys to call back (collected under the lock) and `cur_seq`.
    fn start(&self, start: u64, end: u64) -> (u64, Vec<SubKey>) {
        let q = Interval::from_range(start, end).unwrap();
        let mut keys = Vec::new();
        let started = self.lock().proto.start(q, |k, _, _, _| keys.push(k));
        (started.cur_seq, keys)
    }

    /// Interval-side end: wake after unlocking when it closed the epoch.
    fn end(&self) {
        let ended = self.lock().proto.end().unwrap();
        if let Ended::Closed { freed } = ended {
            drop(freed);
            self.wake_all();
        }
    }

    /// `read_begin`: the subscription's seq, waiting for the epoch when it equals `seq` (R25).
    /// Also returns `sets` as read in the same lock hold.
    fn read_begin(&self, key: SubKey) -> (u64, u64) {
        let (s, wait, sets) = {
            let g = self.lock();
            let (s, wait) = g.proto.read_begin(key).unwrap();
            (s, wait, g.sets)
        };
        if wait {
            self.wait_seq_change(s);
        }
        (s, sets)
    }

    /// `remove` with the 5.18 fix (R39, D4).
    fn remove(&self, key: SubKey) {
        let removal = self.lock().proto.remove(key).unwrap();
        match removal {
            Removal::Done(_) => {}
            Removal::Deferred { wait_seq } => self.wait_seq_change(wait_seq),
        }
        // D4: the deferred list was applied before the waiter could return.
        assert!(
            self.lock().proto.sub(key).is_none(),
            "remove returned with the node still linked"
        );
    }

    fn set_seq(&self, key: SubKey, cur_seq: u64, count: bool) {
        let mut g = self.lock();
        g.proto.sub_mut(key).unwrap().1.set_seq(cur_seq);
        if count {
            g.sets += 1;
        }
    }

    fn check_quiescent(&self) {
        let g = self.lock();
        assert_eq!(g.proto.seq() & 1, 0, "seq odd at quiescence");
        assert_eq!(g.proto.active(), 0, "active at quiescence");
        g.proto.check_invariants().unwrap();
    }
}

/// The reader's user lock and what it protects: its mirror of the page table.
struct Driver {
    /// `Some(pte)` once the reader committed a mapping; cleared by the invalidate callback.
    mirror: Mutex<Option<u64>>,
    /// The "page table": the invalidator changes it between its start and its end.
    pte: AtomicU64,
}

impl Driver {
    fn new() -> Self {
        Self {
            mirror: Mutex::new(None),
            pte: AtomicU64::new(0),
        }
    }
}

/// The invalidate callback of the reader's subscription (the T26 pattern): under the user lock,
/// `set_seq(cur_seq)` and drop the mirror.
fn reader_callback(mm: &Mm, drv: &Driver, key: SubKey, cur_seq: u64) {
    let mut mirror = drv.mirror.lock().unwrap();
    mm.set_seq(key, cur_seq, true);
    *mirror = None;
}

/// The reader's fault path: `read_begin`, read the page table, commit under the user lock
/// unless `read_retry`. Checks the retry guarantee both ways (R30).
fn reader(mm: &Mm, drv: &Driver, key: SubKey) {
    let (s, sets_at_begin) = mm.read_begin(key);
    let pte = drv.pte.load(Ordering::SeqCst);
    let mut mirror = drv.mirror.lock().unwrap();
    let (retry, sets_now) = {
        let g = mm.lock();
        let retry = g.proto.sub(key).unwrap().1.seq() != s; // read_retry (R28)
        (retry, g.sets)
    };
    assert_eq!(
        retry,
        sets_now != sets_at_begin,
        "read_retry must be true iff an invalidation hit the subscription after read_begin"
    );
    if !retry {
        *mirror = Some(pte);
    }
}

/// An invalidation of `[start, end)`: start, callbacks outside the lock, change the page
/// table, end. `removed` is the flag of a subscription whose callback must no longer run.
fn invalidate(
    mm: &Mm,
    drv: &Driver,
    start: u64,
    end: u64,
    reader_key: SubKey,
    new_pte: u64,
    removed: &[(SubKey, &AtomicBool)],
) {
    let (cur_seq, keys) = mm.start(start, end);
    for &k in &keys {
        assert_eq!(cur_seq & 1, 1, "cur_seq is odd for every callback (R83)");
        if let Some((_, flag)) = removed.iter().find(|(rk, _)| *rk == k) {
            assert!(
                !flag.load(Ordering::SeqCst),
                "callback ran after its remove() returned (R40)"
            );
        }
        if k == reader_key {
            reader_callback(mm, drv, k, cur_seq);
        } else {
            mm.set_seq(k, cur_seq, false);
        }
    }
    drv.pte.store(new_pte, Ordering::SeqCst);
    mm.end();
}

fn assert_mirror_fresh(drv: &Driver) {
    let mirror = *drv.mirror.lock().unwrap();
    let pte = drv.pte.load(Ordering::SeqCst);
    assert!(
        mirror.is_none() || mirror == Some(pte),
        "stale mirror {mirror:?}, page table {pte}"
    );
}

/// Invalidator x reader x remover: the invalidation hits both subscriptions, so the removal may
/// be deferred and must wait for the closing end; the reader may have to wait too.
#[test]
fn invalidator_reader_remover() {
    model("invalidator_reader_remover", || {
        let mm = Arc::new(Mm::new());
        let drv = Arc::new(Driver::new());
        let a = mm.insert(0x1000, 0x1000, "A");
        let b = mm.insert(0x1800, 0x1000, "B");
        let b_removed = Arc::new(AtomicBool::new(false));

        let inv = {
            let (mm, drv, b_removed) = (mm.clone(), drv.clone(), b_removed.clone());
            thread::spawn(move || invalidate(&mm, &drv, 0x1000, 0x3000, a, 1, &[(b, &b_removed)]))
        };
        let rem = {
            let (mm, b_removed) = (mm.clone(), b_removed.clone());
            thread::spawn(move || {
                mm.remove(b);
                b_removed.store(true, Ordering::SeqCst);
            })
        };
        reader(&mm, &drv, a);
        inv.join().unwrap();
        rem.join().unwrap();
        mm.check_quiescent();
        assert_mirror_fresh(&drv);
        assert_eq!(mm.lock().proto.len(), 1);
    });
}

/// Two invalidators in parallel (nested or overlapping epochs) and a reader: the epoch closes
/// only on the last end, and a reader that waits is woken by that end, never lost.
#[test]
fn two_invalidators_and_reader() {
    model("two_invalidators_and_reader", || {
        let mm = Arc::new(Mm::new());
        let drv = Arc::new(Driver::new());
        let a = mm.insert(0x1000, 0x1000, "A");
        let ts: Vec<_> = [(0x1000u64, 0x2000u64, 1u64), (0x5000, 0x6000, 2)]
            .into_iter()
            .map(|(s, e, v)| {
                let (mm, drv) = (mm.clone(), drv.clone());
                // The second one overlaps nothing: it only keeps the epoch open (R10).
                thread::spawn(move || {
                    if s == 0x1000 {
                        invalidate(&mm, &drv, s, e, a, v, &[]);
                    } else {
                        let (_, keys) = mm.start(s, e);
                        assert!(keys.is_empty());
                        mm.end();
                    }
                })
            })
            .collect();
        reader(&mm, &drv, a);
        for t in ts {
            t.join().unwrap();
        }
        mm.check_quiescent();
        assert_mirror_fresh(&drv);
        let seq = mm.lock().proto.seq();
        assert!(seq == 2 || seq == 4, "one epoch at most: seq {seq}");
    });
}

/// Inserter/remover against an invalidator: an insert may land idle, partially excluded or
/// deferred (R35); a `read_begin` on the new subscription waits while the epoch that saw the
/// insert runs, and returns with it in the tree; its remove (deferred or not) then waits.
#[test]
fn inserter_remover_and_invalidator() {
    model("inserter_remover_and_invalidator", || {
        let mm = Arc::new(Mm::new());
        let drv = Arc::new(Driver::new());
        let a = mm.insert(0x1000, 0x1000, "A");
        let c_removed = Arc::new(AtomicBool::new(false));
        let c_key = Arc::new(Mutex::new(None::<SubKey>));

        let inv = {
            let (mm, drv, c_removed, c_key) =
                (mm.clone(), drv.clone(), c_removed.clone(), c_key.clone());
            thread::spawn(move || {
                let (cur_seq, keys) = mm.start(0x1000, 0x4000);
                let c = *c_key.lock().unwrap();
                for &k in &keys {
                    if Some(k) == c {
                        assert!(
                            !c_removed.load(Ordering::SeqCst),
                            "callback after remove (R40)"
                        );
                    }
                    if k == a {
                        reader_callback(&mm, &drv, k, cur_seq);
                    } else {
                        mm.set_seq(k, cur_seq, false);
                    }
                }
                drv.pte.store(1, Ordering::SeqCst);
                mm.end();
            })
        };
        // The inserter: insert C over the invalidated range, read_begin it (waits if the insert
        // was partially excluded or deferred), then remove it.
        let c = {
            let mut slot = c_key.lock().unwrap();
            let c = mm.insert(0x2000, 0x1000, "C");
            *slot = Some(c);
            c
        };
        let (s, _) = mm.read_begin(c);
        {
            let g = mm.lock();
            assert!(
                g.proto.tree().is_attached(c),
                "read_begin returned with C still deferred"
            );
            assert_eq!(s & 1, 1, "subscription seqs are odd (R31)");
        }
        mm.remove(c);
        c_removed.store(true, Ordering::SeqCst);
        inv.join().unwrap();
        mm.check_quiescent();
        assert_eq!(mm.lock().proto.len(), 1);
    });
}

/// A deferred insert removed before it ever entered the tree (R39a) never waits and is never
/// called; the remove of a subscription hit by an epoch that another invalidation keeps open
/// waits for the last end.
#[test]
fn deferred_insert_dropped_and_remove_waits_for_last_end() {
    model(
        "deferred_insert_dropped_and_remove_waits_for_last_end",
        || {
            let mm = Arc::new(Mm::new());
            let a = mm.insert(0x1000, 0x1000, "A");
            let a_removed = Arc::new(AtomicBool::new(false));
            let inv: Vec<_> = (0..2)
                .map(|_| {
                    let (mm, a_removed) = (mm.clone(), a_removed.clone());
                    thread::spawn(move || {
                        let (cur_seq, keys) = mm.start(0x1000, 0x2000);
                        for &k in &keys {
                            assert!(
                                !a_removed.load(Ordering::SeqCst),
                                "callback after remove (R40)"
                            );
                            mm.set_seq(k, cur_seq, false);
                        }
                        mm.end();
                    })
                })
                .collect();
            let d = mm.insert(0x1000, 0x10, "D");
            mm.remove(d);
            mm.remove(a);
            a_removed.store(true, Ordering::SeqCst);
            for t in inv {
                t.join().unwrap();
            }
            mm.check_quiescent();
            assert!(mm.lock().proto.is_empty());
        },
    );
}

/// The checker itself: a mutant whose end wakes the waiters *before* closing the epoch loses
/// the wake-up of a reader that checked the condition in between; loom must find it (as a
/// deadlock). If this test ever passes without a panic, the models above prove nothing.
#[test]
#[should_panic(expected = "deadlock")]
fn mutant_wake_before_end_is_caught() {
    loom::model(|| {
        let mm = Arc::new(Mm::new());
        let a = mm.insert(0x1000, 0x1000, "A");
        let (cur_seq, keys) = mm.start(0x1000, 0x2000);
        mm.set_seq(keys[0], cur_seq, false);
        let inv = {
            let mm = mm.clone();
            thread::spawn(move || {
                mm.wake_all(); // the bug: wake, then close the epoch
                let ended = mm.lock().proto.end().unwrap();
                drop(ended);
            })
        };
        let _ = mm.read_begin(a);
        inv.join().unwrap();
    });
}
