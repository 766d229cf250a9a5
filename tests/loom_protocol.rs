//! Model checking of the real `rust/notifier.rs` under `loom` (issues 6, 10; SPEC R7-R42, R77,
//! D4).
//!
//! Built with `--cfg loom`, `mmn_fast::notifier::Notifier` runs on loom's `Mutex`, `Condvar` and
//! atomics (the shim at the top of `rust/notifier.rs`), waiter counting and the skipped wake-up
//! included, and its waits are untimed: the 50 ms poll of the bindings cannot hide a lost
//! wake-up, which loom reports as a deadlock. `mmn_fast::protocol::Protocol` inside it is the
//! real state machine too; nothing here re-implements either.
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
//! `RUSTFLAGS="--cfg loom" LOOM_MAX_PREEMPTIONS=2 cargo test --release --test loom_protocol`
#![allow(unexpected_cfgs)]
#![cfg(loom)]

use std::time::Duration;

use loom::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use loom::sync::{Arc, Mutex};
use loom::thread;

use mmn_fast::notifier::Notifier;
use mmn_fast::protocol::{Ended, Removal, SubKey};
use mmn_fast::Interval;

/// `loom::model(f)`, printing how many interleavings it explored (loom itself says so only
/// with `LOOM_LOG`). The count is per call: the tests run in parallel.
fn model(name: &str, f: impl Fn() + Sync + Send + 'static) {
    let runs = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counter = runs.clone();
    loom::model(move || {
        counter.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        f();
    });
    let runs = runs.load(std::sync::atomic::Ordering::Relaxed);
    eprintln!("loom {name}: {runs} interleavings explored");
}

/// The real notifier; a subscription's payload counts the `set_seq` calls the reader's check
/// cares about (kept under the notifier's lock with the rest of the state).
struct Mm(Notifier<u64>);

/// No timeout: under loom the wait is untimed anyway, and it must end by a wake-up.
const FOREVER: Duration = Duration::MAX;

impl Mm {
    fn new() -> Self {
        Self(Notifier::new())
    }

    fn insert(&self, start: u64, len: u64) -> SubKey {
        let iv = Interval::from_start_length(start, len).unwrap();
        self.0.lock().insert(iv, false, 0).unwrap().0
    }

    /// Interval-side start: the keys to call back (collected under the lock) and `cur_seq`.
    fn start(&self, start: u64, end: u64) -> (u64, Vec<SubKey>) {
        let q = Interval::from_range(start, end).unwrap();
        let mut keys = Vec::new();
        let started = self.0.lock().start(q, |k, _, _, _| keys.push(k));
        (started.cur_seq, keys)
    }

    /// Interval-side end, as the bindings do it: wake after unlocking when it closed the epoch.
    fn end(&self) {
        let ended = self.0.lock().end().unwrap();
        if let Ended::Closed { freed } = ended {
            drop(freed);
            self.0.wake_all();
        }
    }

    /// `read_begin`: the subscription's seq, waiting for the epoch when it equals `seq` (R25).
    /// Also returns the subscription's `set_seq` count as read in the same lock hold.
    fn read_begin(&self, key: SubKey) -> (u64, u64) {
        let (s, wait, sets) = {
            let mut g = self.0.lock();
            let (s, wait) = g.read_begin(key).unwrap();
            (s, wait, g.sub(key).unwrap().1.payload)
        };
        if wait {
            assert!(self.0.wait_seq_change(s, FOREVER));
        }
        (s, sets)
    }

    /// `remove` with the 5.18 fix (R39, D4).
    fn remove(&self, key: SubKey) {
        let removal = self.0.lock().remove(key).unwrap();
        match removal {
            Removal::Done(_) => {}
            Removal::Deferred { wait_seq } => assert!(self.0.wait_seq_change(wait_seq, FOREVER)),
        }
        // D4: the deferred list was applied before the waiter could return.
        assert!(
            self.0.lock().sub(key).is_none(),
            "remove returned with the node still linked"
        );
    }

    fn set_seq(&self, key: SubKey, cur_seq: u64, count: bool) {
        let mut g = self.0.lock();
        let (_, sub) = g.sub_mut(key).unwrap();
        sub.set_seq(cur_seq);
        if count {
            sub.payload += 1;
        }
    }

    fn check_quiescent(&self) {
        let g = self.0.lock();
        assert_eq!(g.seq() & 1, 0, "seq odd at quiescence");
        assert_eq!(g.active(), 0, "active at quiescence");
        g.check_invariants().unwrap();
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
        let mut g = mm.0.lock();
        let (_, sub) = g.sub(key).unwrap();
        (sub.seq() != s, sub.payload) // read_retry (R28)
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
        let a = mm.insert(0x1000, 0x1000);
        let b = mm.insert(0x1800, 0x1000);
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
        assert_eq!(mm.0.lock().len(), 1);
    });
}

/// Two invalidators in parallel (nested or overlapping epochs) and a reader: the epoch closes
/// only on the last end, and a reader that waits is woken by that end, never lost.
#[test]
fn two_invalidators_and_reader() {
    model("two_invalidators_and_reader", || {
        let mm = Arc::new(Mm::new());
        let drv = Arc::new(Driver::new());
        let a = mm.insert(0x1000, 0x1000);
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
        let seq = mm.0.lock().seq();
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
        let a = mm.insert(0x1000, 0x1000);
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
            let c = mm.insert(0x2000, 0x1000);
            *slot = Some(c);
            c
        };
        let (s, _) = mm.read_begin(c);
        {
            let g = mm.0.lock();
            assert!(
                g.tree().is_attached(c),
                "read_begin returned with C still deferred"
            );
            assert_eq!(s & 1, 1, "subscription seqs are odd (R31)");
        }
        mm.remove(c);
        c_removed.store(true, Ordering::SeqCst);
        inv.join().unwrap();
        mm.check_quiescent();
        assert_eq!(mm.0.lock().len(), 1);
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
            let a = mm.insert(0x1000, 0x1000);
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
            let d = mm.insert(0x1000, 0x10);
            mm.remove(d);
            mm.remove(a);
            a_removed.store(true, Ordering::SeqCst);
            for t in inv {
                t.join().unwrap();
            }
            mm.check_quiescent();
            assert!(mm.0.lock().is_empty());
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
        let a = mm.insert(0x1000, 0x1000);
        let (cur_seq, keys) = mm.start(0x1000, 0x2000);
        mm.set_seq(keys[0], cur_seq, false);
        let inv = {
            let mm = mm.clone();
            thread::spawn(move || {
                mm.0.wake_all(); // the bug: wake, then close the epoch
                let ended = mm.0.lock().end().unwrap();
                drop(ended);
            })
        };
        let _ = mm.read_begin(a);
        inv.join().unwrap();
    });
}
