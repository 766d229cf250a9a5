//! Step-by-step tests of the protocol transitions (SPEC section 4 scenarios, by number).

use super::*;

fn iv(start: u64, length: u64) -> Interval {
    Interval::from_start_length(start, length).unwrap()
}

fn range(start: u64, end: u64) -> Interval {
    Interval::from_range(start, end).unwrap()
}

/// Start `q` as a caller whose callbacks all accept: returns `(cur_seq, payloads of the
/// callback subscriptions hit, in order)`; natives handed back are invalidated in order.
fn start(p: &mut Protocol<&'static str>, q: Interval) -> (u64, Vec<&'static str>) {
    let mut handed = Vec::new();
    let s = p.start(q, |key, _, sub, _| {
        handed.push((key, sub.is_native(), sub.payload));
    });
    let mut called = Vec::new();
    for (key, native, payload) in handed {
        if native {
            assert!(p.invalidate_native(key, s.cur_seq));
        } else {
            called.push(payload);
        }
    }
    (s.cur_seq, called)
}

fn end(p: &mut Protocol<&'static str>) -> Vec<&'static str> {
    match p.end().unwrap() {
        Ended::Open => Vec::new(),
        Ended::Closed { freed } => freed,
    }
}

#[test]
fn t1_fresh_state() {
    let mut p = Protocol::new();
    let (a, state) = p.insert(iv(0x1000, 0x1000), false, "A").unwrap();
    assert_eq!(state, InsertState::Idle);
    assert_eq!((p.seq(), p.active(), p.len()), (2, 0, 1));
    assert_eq!(p.sub(a).unwrap().1.seq(), 1);
    p.check_invariants().unwrap();
}

#[test]
fn t2_t3_miss_keeps_seq_hit_opens_epoch() {
    let mut p = Protocol::new();
    p.insert(iv(0x1000, 0x1000), false, "A").unwrap();
    let (cur, hit) = start(&mut p, range(0x3000, 0x4000));
    assert_eq!((cur, hit.len(), p.seq(), p.active()), (2, 0, 2, 1));
    end(&mut p);
    assert_eq!((p.seq(), p.active()), (2, 0));
    let (cur, hit) = start(&mut p, range(0x1800, 0x1900));
    assert_eq!((cur, hit, p.seq()), (3, vec!["A"], 3));
    end(&mut p);
    assert_eq!((p.seq(), p.active()), (4, 0));
    p.check_invariants().unwrap();
}

#[test]
fn t5_address_order() {
    let mut p = Protocol::new();
    p.insert(iv(0, 0x1000), false, "A").unwrap();
    p.insert(iv(0x2000, 0x1000), false, "B").unwrap();
    p.insert(iv(0x1000, 0x1000), false, "C").unwrap();
    assert_eq!(start(&mut p, range(0, 0x3000)).1, ["A", "C", "B"]);
}

#[test]
fn t7_t8_nested_and_parallel_share_one_epoch() {
    let mut p = Protocol::new();
    p.insert(iv(0x1000, 0x1000), false, "A").unwrap();
    assert_eq!(start(&mut p, range(0x1000, 0x1800)).0, 3);
    assert_eq!(start(&mut p, range(0x1800, 0x2000)).0, 3);
    start(&mut p, range(0x9000, 0xa000));
    end(&mut p);
    end(&mut p);
    assert_eq!((p.seq(), p.active()), (3, 1));
    end(&mut p);
    assert_eq!((p.seq(), p.active()), (4, 0));
}

#[test]
fn t9_t15_insert_while_partially_excluded_begins_writing() {
    let mut p = Protocol::new();
    start(&mut p, range(0x9000, 0xa000));
    assert_eq!(p.seq(), 2);
    let (b, state) = p.insert(iv(0x1000, 0x100), false, "B").unwrap();
    assert_eq!(
        (state, p.seq(), p.sub(b).unwrap().1.seq(), p.len()),
        (InsertState::PartiallyExcluded, 3, 3, 1)
    );
    let (c, state) = p.insert(iv(0x2000, 0x100), false, "C").unwrap();
    assert_eq!((state, p.len()), (InsertState::Deferred, 1));
    assert_eq!(p.read_begin(c).unwrap(), (3, true));
    p.check_invariants().unwrap();
    end(&mut p);
    assert_eq!((p.seq(), p.len()), (4, 2));
    assert_eq!(p.read_begin(c).unwrap(), (3, false));
    p.check_invariants().unwrap();
}

#[test]
fn t10_two_per_epoch() {
    let mut p = Protocol::new();
    p.insert(iv(0, 0x1000), false, "A").unwrap();
    for _ in 0..10 {
        start(&mut p, range(0, 1));
        end(&mut p);
        start(&mut p, range(0x5000, 0x6000));
        end(&mut p);
    }
    assert_eq!(p.seq(), 22);
}

#[test]
fn t12_idle_insert_takes_seq_minus_one() {
    let mut p = Protocol::new();
    p.insert(iv(0, 0x1000), false, "A").unwrap();
    for _ in 0..3 {
        start(&mut p, range(0, 1));
        end(&mut p);
    }
    let (b, _) = p.insert(iv(0x5000, 1), false, "B").unwrap();
    assert_eq!((p.seq(), p.sub(b).unwrap().1.seq()), (8, 7));
}

#[test]
fn t14_t17_deferred_insert_and_remove_applied_by_closing_end() {
    let mut p = Protocol::new();
    let (a, _) = p.insert(iv(0x1000, 0x1000), false, "A").unwrap();
    start(&mut p, range(0x1000, 0x2000));
    let (b, state) = p.insert(iv(0x1800, 0x100), false, "B").unwrap();
    assert_eq!(state, InsertState::Deferred);
    assert_eq!(p.sub(b).unwrap().1.seq(), 3);
    // The deferred insert is not hit by starts of this epoch (R36).
    assert_eq!(start(&mut p, range(0x1800, 0x1900)).1, ["A"]);
    let Removal::Deferred { wait_seq } = p.remove(a).unwrap() else {
        panic!("not deferred")
    };
    assert_eq!(wait_seq, 3);
    // R40: still in the tree, still called, until the closing end.
    assert_eq!(start(&mut p, range(0x1000, 0x1001)).1, ["A"]);
    assert!(matches!(p.remove(a), Err(Error::NotSubscribed)));
    p.check_invariants().unwrap();
    end(&mut p);
    end(&mut p);
    assert!(!p.seq_changed(wait_seq));
    let freed = end(&mut p);
    assert_eq!(freed, ["A"]);
    assert!(p.seq_changed(wait_seq));
    assert_eq!((p.seq(), p.len()), (4, 1));
    assert_eq!(start(&mut p, range(0x1800, 0x1801)).1, ["B"]);
    end(&mut p);
    p.check_invariants().unwrap();
}

#[test]
fn t28_t30_remove_cases() {
    let mut p = Protocol::new();
    let (a, _) = p.insert(iv(0x1000, 0x1000), false, "A").unwrap();
    start(&mut p, range(0x9000, 0xa000));
    assert!(!p.remove_would_wait(a));
    assert!(matches!(p.remove(a), Ok(Removal::Done(Some("A")))));
    end(&mut p);
    let (c, _) = p.insert(iv(0x1000, 0x1000), false, "C").unwrap();
    start(&mut p, range(0x1000, 0x1001));
    let (b, _) = p.insert(iv(0x3000, 0x10), false, "B").unwrap();
    assert!(!p.remove_would_wait(b) && p.remove_would_wait(c));
    assert!(matches!(p.remove(b), Ok(Removal::Done(Some("B")))));
    assert!(end(&mut p).is_empty());
    assert_eq!(p.len(), 1);
    assert!(matches!(p.remove(b), Err(Error::NotSubscribed)));
    p.check_invariants().unwrap();
}

#[test]
fn end_without_start_changes_nothing_d6() {
    let mut p: Protocol<&str> = Protocol::new();
    assert!(matches!(p.end(), Err(Error::NoActiveInvalidation)));
    assert_eq!((p.seq(), p.active()), (2, 0));
}

#[test]
fn released_refuses_inserts_d12() {
    let mut p = Protocol::new();
    p.mark_released();
    assert!(matches!(
        p.insert(iv(0, 1), false, "A"),
        Err(Error::Released)
    ));
    assert_eq!(p.len(), 0);
    assert!(!p.has_itree());
}

#[test]
fn natives_are_journaled_once_and_survive_removal() {
    let mut p = Protocol::new();
    let (n1, _) = p.insert(iv(0, 0x1000), true, "n1").unwrap();
    let (_n2, _) = p.insert(iv(0x1000, 0x1000), true, "n2").unwrap();
    p.insert(iv(0, 0x3000), false, "py").unwrap();
    for _ in 0..3 {
        let (cur, hit) = start(&mut p, range(0, 0x2000));
        assert_eq!(hit, ["py"]);
        assert_eq!(p.sub(n1).unwrap().1.seq(), cur);
        end(&mut p);
    }
    assert!(matches!(p.remove(n1), Ok(Removal::Done(None))));
    let mut seen = Vec::new();
    let returned = p.drain_journal(|t| seen.push(*t));
    assert_eq!((seen, returned), (vec!["n2", "n1"], vec!["n1"]));
    let again = p.drain_journal(|_| panic!("drained twice"));
    assert!(again.is_empty());
}

#[test]
fn r16_natives_after_a_callback_wait_for_the_in_order_walk() {
    let mut p = Protocol::new();
    let (before, _) = p.insert(iv(0, 0x10), true, "before").unwrap();
    p.insert(iv(0x100, 0x10), false, "refuser").unwrap();
    let (after, _) = p.insert(iv(0x200, 0x10), true, "after").unwrap();
    let mut handed = Vec::new();
    let s = p.start(range(0, 0x1000), |_, _, sub, _| handed.push(sub.payload));
    // The native before the callback is done under the lock; the later one is handed back.
    assert_eq!((s.hits, handed), (3, vec!["refuser", "after"]));
    assert_eq!(p.sub(before).unwrap().1.seq(), s.cur_seq);
    // The callback refused (R16): the caller stops and never invalidates "after".
    assert_ne!(p.sub(after).unwrap().1.seq(), s.cur_seq);
    end(&mut p);
    let mut seen = Vec::new();
    p.drain_journal(|t| seen.push(*t));
    assert_eq!(seen, ["before"]);
}

#[test]
fn t11_t6_r6_empty_tree_still_counts() {
    let mut p = Protocol::new();
    let (a, _) = p.insert(iv(0, 0x1000), false, "A").unwrap();
    p.remove(a).unwrap();
    let (cur, hit) = start(&mut p, range(0, 0x10000));
    assert_eq!((cur, hit.len(), p.active()), (2, 0, 1));
    end(&mut p);
    assert!(p.has_itree());
    assert_eq!((p.seq(), p.active()), (2, 0));
}
