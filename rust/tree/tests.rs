use super::*;

fn iv(start: u64, last: u64) -> Interval {
    Interval::new(start, last).unwrap()
}

fn checked<V, const L: usize, const F: usize>(tree: &BPlusTree<V, L, F>) {
    if let Err(e) = tree.check_invariants() {
        panic!("invariant broken: {e}");
    }
}

/// `(start, last, value)` of every hit, in the order returned.
fn hits(tree: &IntervalTree<u64>, q: Interval) -> Vec<(u64, u64, u64)> {
    tree.overlaps(q)
        .map(|(_, i, v)| (i.start(), i.last(), *v))
        .collect()
}

/// A seeded xorshift generator: the tests' random data, the same on every run.
pub(crate) fn xorshift(mut state: u64) -> impl FnMut() -> u64 {
    move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    }
}

#[test]
fn empty_tree_answers_nothing() {
    let tree: IntervalTree<u64> = IntervalTree::default();
    assert_eq!(tree.len(), 0);
    assert!(tree.is_empty());
    assert_eq!(tree.span(), None);
    assert!(!tree.any_overlap(iv(0, u64::MAX)));
    assert_eq!(tree.overlaps(iv(0, u64::MAX)).count(), 0);
    assert_eq!(tree.count_overlap(iv(0, u64::MAX)), 0);
    assert_eq!(tree.iter().len(), 0);
    assert!(!tree.contains(Handle::from_bits(0)));
    checked(&tree);
}

#[test]
fn node_bytes_fit_the_issue_11_budgets() {
    // A leaf of 16: 16 starts, 16 lasts, 16 slot ids, length and parent.
    assert_eq!(mem::size_of::<Node<16>>(), 16 * 20 + 8);
    // Slot (16) + a sixteenth of a leaf (21) + a 256th of an inner node (2).
    assert_eq!(IntervalTree::<Box<u8>>::NODE_BYTES, 39);
    const { assert!(IntervalTree::<Box<u8>>::NODE_BYTES <= 48) };
    // A slot is generation and leaf, plus the value: no tag.
    assert_eq!(mem::size_of::<Slot<Box<u8>>>(), 16);
    assert_eq!(mem::size_of::<Slot<u32>>(), 12);
    assert_eq!(mem::size_of::<Slot<()>>(), 8);
    assert_eq!(IntervalTree::<()>::NODE_BYTES, 31);
}

#[test]
fn handle_bits_round_trip() {
    let h = Handle::new(7, 3);
    assert_eq!(h.to_bits(), (3 << 32) | 7);
    assert_eq!(Handle::from_bits(h.to_bits()), h);
    assert_eq!((h.slot(), h.generation()), (7, 3));
}

#[test]
fn overlap_is_inclusive_at_both_ends() {
    let mut tree = IntervalTree::new();
    tree.insert(iv(10, 20), 1);
    assert_eq!(hits(&tree, iv(20, 30)), [(10, 20, 1)]);
    assert_eq!(hits(&tree, iv(0, 10)), [(10, 20, 1)]);
    assert_eq!(hits(&tree, iv(15, 15)), [(10, 20, 1)]);
    assert_eq!(hits(&tree, iv(0, 100)), [(10, 20, 1)]);
    assert!(hits(&tree, iv(21, 30)).is_empty());
    assert!(hits(&tree, iv(0, 9)).is_empty());
    assert!(tree.any_overlap(iv(20, 20)) && tree.any_overlap(iv(10, 10)));
    assert!(!tree.any_overlap(iv(21, 21)) && !tree.any_overlap(iv(9, 9)));
}

#[test]
fn overlaps_come_in_ascending_start_order() {
    let mut tree = IntervalTree::new();
    for (k, start) in [50u64, 10, 40, 20, 30, 0, 60].into_iter().enumerate() {
        tree.insert(iv(start, start + 25), k as u64);
    }
    checked(&tree);
    let starts: Vec<u64> = hits(&tree, iv(26, 45))
        .into_iter()
        .map(|(s, _, _)| s)
        .collect();
    assert_eq!(starts, [10, 20, 30, 40]);
    assert_eq!(tree.count_overlap(iv(26, 45)), 4);
    let all: Vec<u64> = tree.iter().map(|(_, i, _)| i.start()).collect();
    assert_eq!(all, [0, 10, 20, 30, 40, 50, 60]);
    assert_eq!(tree.span(), Some(iv(0, 85)));
}

#[test]
fn overlap_fill_names_the_handles_slots_and_resumes() {
    let mut tree = IntervalTree::new();
    let mut handles = Vec::new();
    for k in 0..200u64 {
        handles.push(tree.insert(iv(k * 7 % 300, k * 7 % 300 + 20), k));
    }
    // Reused slots carry a new generation: `fill` still names them by slot alone, and
    // `slot_handle` gives back the current handle.
    let removed: Vec<Handle> = handles.drain(..50).collect();
    for &h in &removed {
        tree.remove(h);
    }
    for k in 0..30u64 {
        tree.insert(iv(k * 11, k * 11 + 5), 1000 + k);
    }
    for q in [iv(0, 0), iv(95, 140), iv(0, u64::MAX), iv(400, 500)] {
        let want: Vec<(Handle, Interval)> = tree.overlaps(q).map(|(h, i, _)| (h, i)).collect();
        // Resumed in steps of 7, as the binding resumes a long answer.
        let mut walk = tree.overlaps(q);
        let mut got = Vec::new();
        loop {
            let before = got.len();
            walk.fill(&mut got, before + 7, |slot, i| (slot, i));
            if got.len() < before + 7 {
                break;
            }
        }
        let got: Vec<(Handle, Interval)> = got
            .into_iter()
            .map(|(slot, i)| (tree.slot_handle(slot).unwrap(), i))
            .collect();
        assert_eq!(got, want, "{q:?}");
    }
    let vacant = (0..200).find(|&slot| tree.slot_handle(slot).is_none());
    assert!(vacant.is_some(), "80 of the 200 first slots are free");
    assert!(removed
        .iter()
        .all(|&h| tree.slot_handle(h.slot()) != Some(h)));
}

#[test]
fn equal_intervals_are_distinct_entries() {
    let mut tree = IntervalTree::new();
    let handles: Vec<Handle> = (0..5).map(|v| tree.insert(iv(100, 200), v)).collect();
    checked(&tree);
    assert_eq!(tree.len(), 5);
    let mut values: Vec<u64> = hits(&tree, iv(150, 150))
        .into_iter()
        .map(|(_, _, v)| v)
        .collect();
    values.sort_unstable();
    assert_eq!(values, [0, 1, 2, 3, 4]);
    assert_eq!(tree.remove(handles[2]), Some((iv(100, 200), 2)));
    checked(&tree);
    assert_eq!(tree.count_overlap(iv(0, 1000)), 4);
    assert!(tree.overlaps(iv(0, 1000)).all(|(_, _, v)| *v != 2));
}

#[test]
fn get_get_mut_and_value_mut_see_attached_and_detached() {
    let mut tree = IntervalTree::new();
    let a = tree.insert(iv(1, 2), 10);
    let d = tree.insert_detached(iv(3, 4), 20);
    assert_eq!(tree.get(a), Some((iv(1, 2), &10)));
    assert_eq!(tree.get(d), Some((iv(3, 4), &20)));
    *tree.get_mut(d).unwrap().1 += 1;
    *tree.value_mut(a).unwrap() += 5;
    assert_eq!(tree.get(d), Some((iv(3, 4), &21)));
    assert_eq!(tree.get(a), Some((iv(1, 2), &15)));
    assert_eq!(tree.remove(d), Some((iv(3, 4), 21)));
    assert_eq!(tree.get(d), None);
    assert!(tree.get_mut(d).is_none() && tree.value_mut(d).is_none());
}

#[test]
fn detached_nodes_are_allocated_but_invisible() {
    let mut tree = IntervalTree::new();
    let a = tree.insert(iv(0, 9), 1);
    let d = tree.insert_detached(iv(5, 15), 2);
    checked(&tree);
    assert_eq!(tree.len(), 1);
    assert!(tree.contains(d) && !tree.is_attached(d));
    assert!(tree.contains(a) && tree.is_attached(a));
    assert_eq!(hits(&tree, iv(0, 100)), [(0, 9, 1)]);
    assert_eq!(tree.count_overlap(iv(10, 15)), 0);
    assert!(!tree.any_overlap(iv(10, 15)));
    assert_eq!(tree.iter().count(), 1);
    assert_eq!(tree.span(), Some(iv(0, 9)));

    assert!(tree.attach(d));
    checked(&tree);
    assert!(!tree.attach(d), "attaching twice must fail");
    assert!(!tree.attach(a), "an inserted node is already attached");
    assert_eq!(tree.len(), 2);
    assert_eq!(hits(&tree, iv(10, 15)), [(5, 15, 2)]);
    assert_eq!(tree.span(), Some(iv(0, 15)));

    assert!(tree.detach(a));
    checked(&tree);
    assert!(!tree.detach(a), "detaching twice must fail");
    assert_eq!(tree.len(), 1);
    assert!(tree.contains(a) && !tree.is_attached(a));
    assert_eq!(hits(&tree, iv(0, 100)), [(5, 15, 2)]);
    assert_eq!(tree.span(), Some(iv(5, 15)));

    assert_eq!(
        tree.remove(a),
        Some((iv(0, 9), 1)),
        "a detached node can be removed"
    );
    assert_eq!(tree.len(), 1);
    checked(&tree);
}

#[test]
fn stale_and_unknown_handles_are_refused() {
    let mut tree = IntervalTree::new();
    let old = tree.insert(iv(0, 9), 1);
    assert_eq!(tree.remove(old), Some((iv(0, 9), 1)));
    // The vacant slot's own (odd) generation names nothing either.
    let vacant = Handle::new(old.slot(), old.generation() + 1);
    assert!(!tree.contains(vacant) && tree.remove(vacant).is_none());
    let new = tree.insert(iv(0, 9), 2);
    assert_eq!(new.slot(), old.slot(), "the slot is reused");
    assert_ne!(new, old, "with a new generation");
    for h in [
        old,
        vacant,
        Handle::new(new.slot(), new.generation() + 1),
        Handle::new(new.slot(), new.generation() + 2),
        Handle::from_bits(1),
        Handle::from_bits(u64::MAX),
        Handle::new(NIL, 0),
    ] {
        assert!(!tree.contains(h) && !tree.is_attached(h));
        assert!(tree.get(h).is_none() && tree.get_mut(h).is_none());
        assert!(!tree.attach(h) && !tree.detach(h));
        assert_eq!(tree.remove(h), None);
    }
    assert_eq!(tree.get(new), Some((iv(0, 9), &2)));
    assert_eq!(tree.len(), 1);
    checked(&tree);
}

#[test]
fn exhausted_generation_retires_the_slot() {
    let mut tree = IntervalTree::new();
    let first = tree.insert(iv(1, 1), 1);
    tree.remove(first);
    // Pretend slot 0 has been reused until its last generation.
    tree.slots.age(0, u32::MAX - 2);
    let last_gen = tree.insert(iv(2, 2), 2);
    assert_eq!((last_gen.slot(), last_gen.generation()), (0, u32::MAX - 1));
    assert_eq!(tree.remove(last_gen), Some((iv(2, 2), 2)));
    checked(&tree);
    let next = tree.insert(iv(3, 3), 3);
    assert_eq!(next.slot(), 1, "slot 0 is retired, not reused");
    let retired = Handle::new(0, u32::MAX);
    assert!(!tree.contains(last_gen) && !tree.contains(first) && !tree.contains(retired));
    checked(&tree);
}

#[test]
fn values_are_dropped_once_and_cloned_with_the_tree() {
    use std::rc::Rc;
    let value = Rc::new(());
    let mut tree = IntervalTree::new();
    let handles: Vec<Handle> = (0..100u64)
        .map(|k| tree.insert(iv(k, k + 3), Rc::clone(&value)))
        .collect();
    let detached = tree.insert_detached(iv(7, 8), Rc::clone(&value));
    for &h in handles.iter().step_by(3) {
        drop(tree.remove(h));
    }
    assert_eq!(Rc::strong_count(&value), 1 + 66 + 1);
    let copy = tree.clone();
    checked(&copy);
    assert_eq!(Rc::strong_count(&value), 1 + 2 * 67);
    assert!(copy.contains(detached) && !copy.contains(handles[0]) && copy.contains(handles[1]));
    drop(tree);
    assert_eq!(Rc::strong_count(&value), 1 + 67);
    let mut copy = copy;
    assert_eq!(copy.drain_values().len(), 67);
    assert_eq!(Rc::strong_count(&value), 1);
    checked(&copy);
    drop(copy);
    assert_eq!(Rc::strong_count(&value), 1);
}

#[test]
fn u64_extremes() {
    let mut tree = IntervalTree::new();
    let zero = tree.insert(iv(0, 0), 0);
    let top = tree.insert(iv(u64::MAX, u64::MAX), 1);
    let all = tree.insert(iv(0, u64::MAX), 2);
    checked(&tree);
    assert_eq!(tree.span(), Some(iv(0, u64::MAX)));
    let mut at_zero: Vec<u64> = hits(&tree, iv(0, 0)).into_iter().map(|h| h.2).collect();
    at_zero.sort_unstable();
    assert_eq!(at_zero, [0, 2]);
    assert_eq!(
        hits(&tree, iv(u64::MAX, u64::MAX)),
        [(0, u64::MAX, 2), (u64::MAX, u64::MAX, 1)]
    );
    assert_eq!(tree.count_overlap(iv(1, u64::MAX - 1)), 1);
    assert_eq!(tree.count_overlap(iv(0, u64::MAX)), 3);
    assert!(tree.remove(all).is_some());
    assert!(!tree.any_overlap(iv(1, u64::MAX - 1)));
    assert!(tree.any_overlap(iv(u64::MAX, u64::MAX)) && tree.any_overlap(iv(0, 0)));
    assert_eq!(tree.span(), Some(iv(0, u64::MAX)));
    tree.remove(top);
    assert_eq!(tree.span(), Some(iv(0, 0)));
    tree.remove(zero);
    assert_eq!(tree.span(), None);
    checked(&tree);
}

#[test]
fn for_each_overlap_slot_visits_in_order_and_slots_reach_values() {
    let mut tree = IntervalTree::new();
    for k in 0..100u64 {
        tree.insert(iv(k * 10, k * 10 + 14), k);
    }
    let mut seen = Vec::new();
    tree.for_each_overlap_slot(iv(95, 125), |slot, i| seen.push((slot, i)));
    let want: Vec<_> = tree
        .overlaps(iv(95, 125))
        .map(|(h, i, _)| (h.slot(), i))
        .collect();
    assert_eq!(seen, want);
    let starts: Vec<u64> = seen.iter().map(|s| s.1.start()).collect();
    assert_eq!(starts, [90, 100, 110, 120]);
    for &(slot, i) in &seen {
        let (h, v) = tree.slot_entry_mut(slot);
        assert_eq!((h.slot(), *v), (slot, i.start() / 10));
        *v += 1000;
        assert_eq!(
            tree.get(h).map(|(at, &v)| (at, v)),
            Some((i, i.start() / 10 + 1000))
        );
    }
    assert_eq!(tree.iter().filter(|(_, _, v)| **v >= 1000).count(), 4);
    let mut calls = 0;
    tree.for_each_overlap_slot(iv(5000, 6000), |_, _| calls += 1);
    assert_eq!(calls, 0);
}

#[test]
#[should_panic(expected = "invariant broken")]
fn a_stale_slot_is_refused() {
    let mut tree = IntervalTree::new();
    let h = tree.insert(iv(0, 9), 0u64);
    tree.remove(h);
    tree.slot_entry(h.slot());
}

#[test]
fn ascending_and_descending_inserts_fill_leaves() {
    for descending in [false, true] {
        let mut tree = IntervalTree::new();
        let n = 10_000u64;
        for k in 0..n {
            let s = if descending { n - k } else { k };
            tree.insert(iv(s, s), k);
        }
        checked(&tree);
        // Sorted inserts keep full nodes: as few leaves as a bulk build, plus one.
        assert!(
            tree.leaves.len() <= 10_000usize.div_ceil(16) + 1,
            "{}",
            tree.leaves.len()
        );
        assert_eq!(tree.height, 3);
        assert_eq!(tree.iter().len(), 10_000);
        let starts: Vec<u64> = tree.iter().map(|(_, i, _)| i.start()).collect();
        assert!(starts.windows(2).all(|w| w[0] < w[1]));
    }
}

#[test]
fn small_nodes_deep_tree_against_a_model() {
    // Capacity 8 makes a deep tree quickly: splits, merges and redistributions at every level.
    let mut tree: BPlusTree<u64, 8, 8> = BPlusTree::new();
    let mut live: Vec<(Handle, Interval, u64)> = Vec::new();
    let mut rand = xorshift(0x9e37_79b9_7f4a_7c15);
    for step in 0..6_000u64 {
        let grow = step < 3_000 || (step < 5_000 && rand() % 3 != 0);
        if grow || live.is_empty() {
            let start = rand() % 500;
            let i = iv(start, start + rand() % 40);
            live.push((tree.insert(i, step), i, step));
        } else {
            let k = usize::try_from(rand() % live.len() as u64).unwrap();
            let (h, i, v) = live.swap_remove(k);
            assert_eq!(tree.remove(h), Some((i, v)));
        }
        if step % 97 == 0 || step > 5_900 {
            checked(&tree);
            let qs = rand() % 520;
            let q = iv(qs, qs + rand() % 30);
            let mut want: Vec<u64> = live
                .iter()
                .filter(|e| e.1.overlaps(q))
                .map(|e| e.2)
                .collect();
            let mut got: Vec<u64> = tree.overlaps(q).map(|(_, _, v)| *v).collect();
            let starts: Vec<u64> = tree.overlaps(q).map(|(_, i, _)| i.start()).collect();
            assert!(starts.windows(2).all(|w| w[0] <= w[1]));
            assert_eq!(tree.count_overlap(q), want.len());
            assert_eq!(tree.any_overlap(q), !want.is_empty());
            want.sort_unstable();
            got.sort_unstable();
            assert_eq!(got, want);
        }
    }
    assert!(tree.height >= 4, "height {}", tree.height);
    for (h, i, v) in live.drain(..) {
        assert_eq!(tree.remove(h), Some((i, v)));
    }
    checked(&tree);
    assert!(tree.is_empty() && tree.leaves.is_empty() && tree.inners.is_empty());
}

/// The maximal empty interval around `q` among `live`, by brute force; `None` on a hit.
fn model_gap(live: &[(Handle, Interval, u64)], q: Interval) -> Option<Interval> {
    if live.iter().any(|e| e.1.overlaps(q)) {
        return None;
    }
    let lo = live
        .iter()
        .filter(|e| e.1.start() <= q.last())
        .map(|e| e.1.last() + 1)
        .max()
        .unwrap_or(0);
    let hi = live
        .iter()
        .filter(|e| e.1.start() > q.last())
        .map(|e| e.1.start() - 1)
        .min()
        .unwrap_or(u64::MAX);
    Some(iv(lo, hi))
}

#[test]
fn gap_around_is_the_maximal_empty_interval() {
    // Sparse intervals in a deep tree of small nodes, so that gaps exist and their bounds come
    // from every level: the children before the path, the next child, the leaf.
    let mut tree: BPlusTree<u64, 8, 8> = BPlusTree::new();
    let mut live: Vec<(Handle, Interval, u64)> = Vec::new();
    let mut rand = xorshift(0x2545_f491_4f6c_dd1d);
    assert_eq!(tree.gap_around(iv(5, 9)), Some(iv(0, u64::MAX)));
    for step in 0..4_000u64 {
        if step < 2_500 || rand() % 2 == 0 {
            let start = rand() % 200_000;
            // Mostly short, a few long ones that reach over later starts.
            let len = if rand() % 16 == 0 {
                rand() % 5_000
            } else {
                rand() % 60
            };
            let i = iv(start, start + len);
            live.push((tree.insert(i, step), i, step));
        } else {
            let k = usize::try_from(rand() % live.len() as u64).unwrap();
            let (h, i, v) = live.swap_remove(k);
            assert_eq!(tree.remove(h), Some((i, v)));
        }
        if step % 50 == 0 {
            for _ in 0..40 {
                let qs = rand() % 210_000;
                let q = iv(qs, qs + rand() % 20);
                assert_eq!(
                    tree.gap_around(q),
                    model_gap(&live, q),
                    "{q:?} at step {step}"
                );
            }
        }
    }
    assert!(tree.height >= 3, "height {}", tree.height);
    // The ends of u64: before every interval, after every one, and against the extremes.
    for q in [iv(0, 0), iv(u64::MAX, u64::MAX), iv(250_000, u64::MAX)] {
        assert_eq!(tree.gap_around(q), model_gap(&live, q), "{q:?}");
    }
    let i = iv(u64::MAX - 3, u64::MAX);
    live.push((tree.insert(i, 0), i, 0));
    let i = iv(0, 2);
    live.push((tree.insert(i, 0), i, 0));
    for q in [
        iv(3, 3),
        iv(u64::MAX - 4, u64::MAX - 4),
        iv(u64::MAX, u64::MAX),
        iv(0, 0),
    ] {
        assert_eq!(tree.gap_around(q), model_gap(&live, q), "{q:?}");
    }
}

#[test]
fn removal_in_every_shape_keeps_invariants() {
    // Remove by every pattern that exercises Cond1 (at most one child) and Cond2
    // (successor deep or the right child itself), with the leftmost cache in play.
    for pattern in 0..4u64 {
        let mut tree = IntervalTree::new();
        // Varied lengths, so that a removed node's last is often its subtree's max.
        let interval = |k: u64| iv(k * 3, k * 3 + 7 + (k * 37) % 101);
        let handles: Vec<Handle> = (0..257u64).map(|k| tree.insert(interval(k), k)).collect();
        let order: Vec<usize> = match pattern {
            0 => (0..257).collect(),
            1 => (0..257).rev().collect(),
            2 => (0..257).map(|k| (k * 101) % 257).collect(),
            _ => (0..257)
                .map(|k| if k % 2 == 0 { k / 2 } else { 256 - k / 2 })
                .collect(),
        };
        for (done, &k) in order.iter().enumerate() {
            assert_eq!(
                tree.remove(handles[k]),
                Some((interval(k as u64), k as u64))
            );
            checked(&tree);
            assert_eq!(tree.len(), 256 - done);
        }
        assert!(tree.is_empty() && tree.span().is_none());
    }
}

#[test]
fn bulk_build_gives_input_order_handles() {
    let items: Vec<(Interval, u64)> = [(50, 60), (10, 20), (30, 40), (10, 15), (0, 100)]
        .into_iter()
        .enumerate()
        .map(|(k, (s, l))| (iv(s, l), k as u64))
        .collect();
    let mut tree = IntervalTree::bulk_build(items.clone());
    checked(&tree);
    assert_eq!(tree.len(), 5);
    for (k, (i, v)) in items.iter().enumerate() {
        assert_eq!(tree.get(Handle::from_bits(k as u64)), Some((*i, v)));
    }
    let starts: Vec<u64> = tree.iter().map(|(_, i, _)| i.start()).collect();
    assert_eq!(starts, [0, 10, 10, 30, 50]);
    assert_eq!(tree.span(), Some(iv(0, 100)));
    assert_eq!(tree.count_overlap(iv(16, 29)), 2);
    // The built tree takes further updates.
    assert!(tree.remove(Handle::from_bits(4)).is_some());
    tree.insert(iv(5, 5), 9);
    checked(&tree);
    assert_eq!(tree.span(), Some(iv(5, 60)));

    let empty: IntervalTree<u64> = IntervalTree::bulk_build(Vec::new());
    assert!(empty.is_empty());
    checked(&empty);
    let big = IntervalTree::bulk_build((0..1000u64).map(|k| (iv(k % 37, k % 37 + k), k)).collect());
    checked(&big);
}

#[test]
fn from_columns_builds_what_bulk_build_builds() {
    // Both sort representations (page-aligned starts pack, u64::MAX does not), the small-input
    // sort, and no interval at all: the same leaves, handles and values as `bulk_build`.
    let mut rand = xorshift(0x0c01_0b17);
    for (n, wide) in [(0, false), (5, false), (3000, false), (3000, true)] {
        let items: Vec<(Interval, u64)> = (0..n)
            .map(|k| {
                let start = if wide && k % 100 == 7 {
                    u64::MAX - 5
                } else {
                    (rand() % (1 << 28)) << 12
                };
                (iv(start, start.saturating_add(5 + rand() % (1 << 20))), k)
            })
            .collect();
        let want = IntervalTree::bulk_build(items.clone());
        let got = IntervalTree::from_columns(
            items.iter().map(|(i, _)| i.start()).collect(),
            items.iter().map(|(i, _)| i.last()).collect(),
            items.iter().map(|&(_, v)| v),
        )
        .unwrap();
        checked(&got);
        let all = |t: &IntervalTree<u64>| t.iter().map(|(h, i, &v)| (h, i, v)).collect::<Vec<_>>();
        assert!(all(&got) == all(&want), "n={n} wide={wide}");
        assert_eq!((got.len(), got.span()), (want.len(), want.span()));
    }
}

#[test]
fn from_columns_refuses_an_inverted_interval_and_unequal_columns() {
    let err = IntervalTree::from_columns(vec![0, 9], vec![5, 8], [1, 2].into_iter()).unwrap_err();
    assert_eq!(
        err,
        crate::error::Error::StartAfterLast { start: 9, last: 8 }
    );
    let unequal = std::panic::catch_unwind(|| {
        IntervalTree::from_columns(vec![0, 1], vec![5], [1, 2].into_iter())
    });
    assert!(unequal.is_err());
}

#[test]
fn drain_values_empties_and_makes_handles_stale() {
    let mut tree = IntervalTree::new();
    let a = tree.insert(iv(0, 1), 1);
    let d = tree.insert_detached(iv(2, 3), 2);
    let gone = tree.insert(iv(4, 5), 3);
    tree.remove(gone);
    let c = tree.insert(iv(6, 7), 4);
    let mut values = tree.drain_values();
    values.sort_unstable();
    assert_eq!(values, [1, 2, 4]);
    assert!(tree.is_empty() && tree.span().is_none());
    for h in [a, d, c, gone] {
        assert!(!tree.contains(h));
        assert_eq!(tree.remove(h), None);
    }
    checked(&tree);
    let fresh = tree.insert(iv(0, 1), 5);
    assert!(fresh != a && fresh != d && fresh != c && fresh != gone);
    assert_eq!(tree.len(), 1);
    checked(&tree);
    assert!(tree.drain_values() == [5]);
}

#[test]
fn debug_lists_attached_entries() {
    let mut tree = IntervalTree::new();
    tree.insert(iv(1, 2), "x");
    tree.insert_detached(iv(3, 4), "hidden");
    let text = format!("{tree:?}");
    assert!(text.contains("\"x\"") && !text.contains("hidden"), "{text}");
}

#[test]
fn check_invariants_catches_corruption() {
    let build = || {
        let mut tree = IntervalTree::new();
        for k in 0..15u64 {
            tree.insert(iv(k * 10, k * 10 + 5), k);
        }
        checked(&tree);
        tree
    };
    let root = build().root;
    assert_eq!(build().height, 1, "one inner node over one leaf");

    let mut t = build();
    t.inners[root as usize].lasts[0] += 1;
    assert!(t.check_invariants().unwrap_err().contains("entry 0 says"));

    let mut t = build();
    t.span.1 += 1;
    assert!(t.check_invariants().unwrap_err().contains("span"));

    let mut t = build();
    t.leaves[0].keys.swap(3, 4);
    assert!(t.check_invariants().is_err(), "order");

    let mut t = build();
    t.leaves[0].parent = NIL;
    assert!(t.check_invariants().unwrap_err().contains("parent"));

    let mut t = build();
    t.free_leaves.push(0);
    assert!(t.check_invariants().unwrap_err().contains("in use"));

    let mut t = build();
    t.height = 2;
    assert!(t.check_invariants().is_err(), "leaf depth");

    let mut t = build();
    t.len += 1;
    assert!(t.check_invariants().unwrap_err().contains("len"));

    let mut t = build();
    let h = t.insert_detached(iv(0, 0), 99);
    t.entry_mut(h.slot()).leaf = 0;
    assert!(t.check_invariants().unwrap_err().contains("unreachable"));

    let mut t = build();
    let h = t.insert(iv(0, 0), 99);
    t.entry_mut(h.slot()).leaf = NIL;
    assert!(t.check_invariants().unwrap_err().contains("names leaf"));

    let mut t = build();
    t.insert_detached(iv(0, 0), 99);
    t.detached.clear();
    assert!(t.check_invariants().unwrap_err().contains("detached map"));

    let mut t = build();
    let h = t.insert(iv(0, 0), 99);
    t.remove(h);
    t.slots.age(h.slot(), u32::MAX);
    assert!(t.check_invariants().unwrap_err().contains("retired slot"));

    let mut t = build();
    let h = t.insert(iv(0, 0), 99);
    t.remove(h);
    t.slots.free_head = NIL;
    assert!(t
        .check_invariants()
        .unwrap_err()
        .contains("neither free nor retired"));
}

#[test]
fn vectorised_and_portable_node_scans_agree() {
    // `hits` takes the AVX2 path where the CPU has it; the portable one must answer the same.
    let mut rand = xorshift(0x2545_f491_4f6c_dd1d);
    // Coordinates near 0, around 2^63 (where a signed compare would flip) and near u64::MAX.
    let coordinate = move |rand: &mut dyn FnMut() -> u64| {
        let base = [0, (1 << 63) - 64, u64::MAX - 127][usize::try_from(rand() % 3).unwrap()];
        base + rand() % 128
    };
    for len in [0, 1, 7, 16] {
        let mut node: Node<16> = Node::empty(NIL);
        let mut starts: Vec<u64> = (0..len).map(|_| coordinate(&mut rand)).collect();
        starts.sort_unstable();
        for (pos, &start) in starts.iter().enumerate() {
            node.insert_at(pos, (start, start.saturating_add(rand() % 16)), 0);
        }
        for _ in 0..600 {
            let qs = coordinate(&mut rand);
            let ql = qs.saturating_add(rand() % 8);
            assert_eq!(node.hits(qs, ql), node.hits_portable(qs, ql));
        }
        assert_eq!(node.hits(0, u64::MAX), (1 << len) - 1);
    }
}

#[test]
fn node_positions_and_bounds_match_linear_search() {
    // `position` (a vector compare of the ids) and `upper_bound` (a count of `hits`) against
    // plain searches, with equal starts, stale entries past the length that still hold ids,
    // and keys at the ends of the u64 range.
    let mut rand = xorshift(0x9e37_79b9_7f4a_7c15);
    for len in [0, 1, 5, 15, 16] {
        let mut node: Node<16> = Node::empty(NIL);
        // Fill all 16, then remove down to `len`: the removed ids stay behind, stale.
        let mut starts: Vec<u64> = (0..16)
            .map(|_| match rand() % 4 {
                0 => 0,
                1 => u64::MAX,
                _ => rand() % 8 * 1000,
            })
            .collect();
        starts.sort_unstable();
        for (pos, &start) in starts.iter().enumerate() {
            node.insert_at(pos, (start, start), 100 + u32::try_from(pos).unwrap());
        }
        while node.len() > len {
            node.remove_at(usize::try_from(rand() % node.len() as u64).unwrap());
        }
        let live: Vec<(u64, u32)> = (0..len).map(|i| (node.keys[i], node.ids[i])).collect();
        for id in 95..120 {
            assert_eq!(node.position(id), live.iter().position(|e| e.1 == id));
        }
        for key in [0, 1, 999, 1000, 3500, 7000, 7001, u64::MAX - 1, u64::MAX] {
            assert_eq!(node.upper_bound(key), live.partition_point(|e| e.0 <= key));
        }
    }
}

#[test]
fn bulk_sort_orders_by_start_then_input_order() {
    // The radix sort against a comparison sort, in both representations: ties (few distinct
    // low digits), page-aligned starts (skipped digits), the whole u64 range, the small-input
    // path, and starts that fill a packed key's 64 bits exactly or by one bit too many.
    let mut rand = xorshift(0x2545_f491_4f6c_dd1d);
    // Small and large, few distinct starts, page-aligned, any u64, one outlier above a
    // crowd (one bucket holds nearly all), starts at both ends of u64, and starts below 2^47
    // (user space) with 2^17 items (17 index bits) and with one item more (18).
    for (n, shape, packed) in [
        (100, 0, true),
        (5000, 0, true),
        (5000, 1, true),
        (5000, 2, false),
        (5000, 3, false),
        (5000, 4, false),
        (1 << 17, 5, true),
        ((1 << 17) + 1, 5, false),
    ] {
        let starts: Vec<u64> = (0..n)
            .map(|i| {
                let r = rand();
                match shape {
                    0 => r % 97,
                    1 => (r % (1 << 28)) << 12,
                    2 => r,
                    3 if i == 7 => u64::MAX,
                    3 => r % 1000,
                    4 => [0, u64::MAX, r][usize::try_from(r % 3).unwrap()],
                    _ if i == 3 => (1 << 47) - 1, // odd: no zero bit to shift out
                    _ => r % (1 << 47),
                }
            })
            .collect();
        let mut want: Vec<(u64, u32)> = starts.iter().copied().zip(0..).collect();
        want.sort_unstable();
        let got: Vec<(u64, u32)> = match update::StartOrder::of(starts.clone()) {
            update::StartOrder::Packed {
                keys,
                index_bits,
                zeros,
            } => {
                assert!(packed, "n={n} shape={shape}: packed");
                keys.iter()
                    .map(|&k| update::StartOrder::unpack(k, index_bits, zeros))
                    .collect()
            }
            update::StartOrder::Wide(pairs) => {
                assert!(!packed, "n={n} shape={shape}: wide");
                pairs
            }
        };
        assert!(got == want, "n={n} shape={shape}");
    }
}

/// Entries per leaf, left to right, of a tree whose root sits right above its leaves.
fn leaf_lens<V>(tree: &IntervalTree<V>) -> Vec<usize> {
    assert_eq!(tree.height, 1);
    let root = &tree.inners[tree.root as usize];
    root.ids[..root.len()]
        .iter()
        .map(|&leaf| tree.leaves[leaf as usize].len())
        .collect()
}

/// Three full leaves of intervals starting at `start(k)`; then `holes` removed from the leaf
/// each names (0, 1, 2) and `added` inserted (values from 100), checking after each insert.
/// Returns the tree and its live `(handle, interval, value)`.
fn three_leaves(
    start: impl Fn(u64) -> u64,
    holes: &[(usize, usize)],
    added: &[Interval],
) -> (IntervalTree<u64>, Vec<(Handle, Interval, u64)>) {
    let items: Vec<(Interval, u64)> = (0..48u64)
        .map(|k| (iv(start(k), start(k) + 5 + k % 7), k))
        .collect();
    let mut tree = IntervalTree::bulk_build(items.clone());
    assert_eq!(leaf_lens(&tree), [16, 16, 16]);
    let mut live: Vec<_> = items
        .into_iter()
        .zip(0..)
        .map(|((i, v), k)| (Handle::from_bits(k), i, v))
        .collect();
    for &(leaf, count) in holes {
        for _ in 0..count {
            let k = live.iter().position(|e| e.2 / 16 == leaf as u64).unwrap();
            let (h, i, v) = live.remove(k);
            assert_eq!(tree.remove(h), Some((i, v)));
        }
    }
    for (&i, v) in added.iter().zip(100..) {
        live.push((tree.insert(i, v), i, v));
        checked(&tree);
    }
    (tree, live)
}

/// Every live entry is found by its handle and by the queries, in order; then remove them
/// all, in an interleaved order, checking as it goes.
fn drain_checked(mut tree: IntervalTree<u64>, mut live: Vec<(Handle, Interval, u64)>) {
    for &(h, i, v) in &live {
        assert_eq!(tree.get(h), Some((i, &v)));
    }
    let mut all: Vec<(u64, u64, u64)> = live
        .iter()
        .map(|e| (e.1.start(), e.1.last(), e.2))
        .collect();
    all.sort_unstable();
    let mut got = hits(&tree, iv(0, u64::MAX));
    assert!(got.windows(2).all(|w| w[0].0 <= w[1].0));
    got.sort_unstable();
    assert_eq!(got, all);
    let mut k = 0;
    while !live.is_empty() {
        k = (k + 7) % live.len();
        let (h, i, v) = live.swap_remove(k);
        assert_eq!(tree.remove(h), Some((i, v)));
        checked(&tree);
        assert_eq!(tree.len(), live.len());
    }
}

#[test]
fn a_full_leaf_lends_to_the_sibling_with_room() {
    let at = |k: u64| 100 + k * 10;
    let middle = [iv(at(20) + 5, at(20) + 9)]; // in leaf 1
    for (holes, lens) in [
        // Room on the left only: leaf 1 lends to leaf 0, the two evened out with the new one.
        (&[(0, 4)][..], &[14, 15, 16][..]),
        // Room on the right only: leaf 1 lends to leaf 2.
        (&[(2, 4)], &[16, 14, 15]),
        // Room on both sides: the one with more room takes.
        (&[(0, 2), (2, 5)], &[14, 14, 14]),
        // No room: an even split, as before.
        (&[], &[16, 9, 8, 16]),
    ] {
        let (tree, live) = three_leaves(at, holes, &middle);
        assert_eq!(leaf_lens(&tree), lens, "holes {holes:?}");
        drain_checked(tree, live);
    }
}

#[test]
fn lending_at_the_ends_of_the_tree_moves_the_span() {
    let at = |k: u64| 100 + k * 10;
    // A new smallest start in the full first leaf: it stays there, its tail moves right.
    let (tree, live) = three_leaves(at, &[(1, 4)], &[iv(1, 2)]);
    assert_eq!(leaf_lens(&tree), [14, 15, 16]);
    assert_eq!(tree.span().unwrap().start(), 1);
    assert_eq!(hits(&tree, iv(0, 1)), [(1, 2, 100)]);
    drain_checked(tree, live);

    // A new largest start in the full last leaf: its head moves left.
    let (tree, live) = three_leaves(at, &[(1, 4)], &[iv(10_000, 20_000)]);
    assert_eq!(leaf_lens(&tree), [16, 14, 15]);
    assert_eq!(tree.span().unwrap().last(), 20_000);
    drain_checked(tree, live);

    // The new entry lands right on the boundary: it goes to the front of the right leaf,
    // whose smallest start it becomes, and nothing else moves.
    let boundary = iv(at(31) + 1, at(31) + 1);
    let (tree, live) = three_leaves(at, &[(2, 1)], &[boundary]);
    assert_eq!(leaf_lens(&tree), [16, 16, 16]);
    let root = &tree.inners[tree.root as usize];
    assert_eq!(root.keys[2], boundary.start());
    let h = live.last().unwrap().0;
    assert_eq!(tree.entry(h.slot()).leaf, root.ids[2]);
    drain_checked(tree, live);
}

#[test]
fn lending_with_equal_starts() {
    // Every start equal: inserts go to the last leaf, which lends to its left sibling
    // (16, 12, 16 -> 16, 14, 15 -> 16, 14, 16 -> 16, 15, 16 -> 16, 16, 16).
    let added: Vec<Interval> = (0..4).map(|k| iv(1000, 1100 + k)).collect();
    let (tree, live) = three_leaves(|_| 1000, &[(1, 4)], &added);
    assert_eq!(leaf_lens(&tree), [16, 16, 16]);
    assert_eq!(tree.count_overlap(iv(1000, 1000)), 48);
    drain_checked(tree, live);
}

#[test]
fn random_inserts_fill_leaves_to_at_least_80_percent() {
    let mut tree: IntervalTree<()> = IntervalTree::new();
    let mut state = 0x2545_f491_4f6c_dd1du64;
    for _ in 0..20_000 {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        let start = state % (1 << 40);
        tree.insert(iv(start, start + state % 4096), ());
    }
    checked(&tree);
    let leaves = tree.leaves.len() - tree.free_leaves.len();
    // About 85% (1473 leaves); even splits alone leave about 70% (1773).
    assert!(leaves * 16 * 8 <= 20_000 * 10, "{leaves} leaves");
}
