//! Seeded random model test of `IntervalTree`: every operation is applied to the tree and to a
//! brute-force `Vec` model, the answers are compared at every step, and
//! `check_invariants()` runs after every step. Most profiles run the crate's layout
//! (`IntervalTree`, nodes of 16); one runs the smallest nodes allowed, for deep trees.
//!
//! A failure prints its seed; `TREE_MODEL_SEED=<seed> cargo test --test tree_model` replays
//! that seed (with every profile) and nothing else.

use std::panic::{self, AssertUnwindSafe};

use mmn_fast::tree::BPlusTree;
use mmn_fast::{Handle, Interval};

mod support;

use support::Rng;

/// Where the intervals and queries come from.
#[derive(Clone, Copy, Debug)]
enum Shape {
    /// Starts in `[0, 64)`, lengths 1..=16: many equal starts, many overlaps.
    Dense,
    /// Page-aligned starts in `[0, 2^32)`, lengths 1..=256 pages: the notifier's workload.
    Pages,
    /// Intervals touching 0 and `u64::MAX`, the full range, and wide random ones.
    Extremes,
}

fn iv(start: u64, last: u64) -> Interval {
    Interval::new(start, last).unwrap()
}

fn gen_interval(rng: &mut Rng, shape: Shape) -> Interval {
    match shape {
        Shape::Dense => {
            let start = rng.below(64);
            iv(start, start + rng.below(16))
        }
        Shape::Pages => {
            let start = rng.below(1 << 20) << 12;
            let scale = rng.below(9);
            let pages = 1 + rng.below(1 << scale);
            iv(start, start + pages * 4096 - 1)
        }
        Shape::Extremes => match rng.below(8) {
            0 => iv(0, rng.below(100)),
            1 => iv(u64::MAX - rng.below(100), u64::MAX),
            2 => iv(rng.below(10), u64::MAX - rng.below(10)),
            3 => iv(0, u64::MAX),
            4 => iv(u64::MAX, u64::MAX),
            5 => iv(0, 0),
            _ => {
                let start = rng.next();
                iv(start, start.saturating_add(rng.below(1 << 40)))
            }
        },
    }
}

/// One allocated interval as the model sees it.
#[derive(Clone, Copy, Debug)]
struct Entry {
    handle: Handle,
    iv: Interval,
    value: u64,
    attached: bool,
}

#[derive(Default)]
struct Model {
    entries: Vec<Entry>,
    /// Handles whose interval was removed: the tree must refuse them forever.
    stale: Vec<Handle>,
}

type Hit = (u64, u64, u64, u64);

fn hit(h: Handle, i: Interval, v: u64) -> Hit {
    (h.to_bits(), i.start(), i.last(), v)
}

impl Model {
    fn attached(&self) -> impl Iterator<Item = &Entry> {
        self.entries.iter().filter(|e| e.attached)
    }

    fn overlapping(&self, q: Interval) -> Vec<Hit> {
        let mut hits: Vec<Hit> = self
            .attached()
            .filter(|e| e.iv.overlaps(q))
            .map(|e| hit(e.handle, e.iv, e.value))
            .collect();
        hits.sort_unstable();
        hits
    }

    fn span(&self) -> Option<Interval> {
        let start = self.attached().map(|e| e.iv.start()).min()?;
        let last = self.attached().map(|e| e.iv.last()).max()?;
        Some(iv(start, last))
    }

    fn retire(&mut self, rng: &mut Rng, h: Handle) {
        if self.stale.len() < 64 {
            self.stale.push(h);
        } else {
            let k = rng.index(self.stale.len());
            self.stale[k] = h;
        }
    }
}

/// A query: mostly from the shape, sometimes a point, sometimes hugging an existing endpoint.
fn gen_query(rng: &mut Rng, shape: Shape, model: &Model) -> Interval {
    match rng.below(10) {
        0 | 1 if !model.entries.is_empty() => {
            let e = model.entries[rng.index(model.entries.len())].iv;
            match rng.below(4) {
                0 => iv(e.start().saturating_sub(1), e.start().saturating_sub(1)),
                1 => iv(e.last().saturating_add(1), e.last().saturating_add(1)),
                2 => iv(e.last(), e.last().saturating_add(rng.below(8))),
                _ => iv(e.start().saturating_sub(rng.below(8)), e.start()),
            }
        }
        2 | 3 => {
            let p = gen_interval(rng, shape).start();
            iv(p, p)
        }
        4 => iv(0, u64::MAX),
        _ => gen_interval(rng, shape),
    }
}

struct Profile {
    seed: u64,
    shape: Shape,
    /// The size the run grows towards and then churns around.
    target: usize,
    steps: usize,
    /// Start from `bulk_build` of `target` intervals rather than from empty.
    bulk: bool,
}

/// Compare every observable answer of the tree with the model.
fn compare_queries<const L: usize, const F: usize>(
    tree: &mut BPlusTree<u64, L, F>,
    model: &mut Model,
    rng: &mut Rng,
    shape: Shape,
) {
    let q = gen_query(rng, shape, model);
    let want = model.overlapping(q);
    let got: Vec<Hit> = tree.overlaps(q).map(|(h, i, v)| hit(h, i, *v)).collect();
    assert!(
        got.windows(2).all(|w| w[0].1 <= w[1].1),
        "overlaps({q:?}) not in ascending start order"
    );
    let mut sorted = got.clone();
    sorted.sort_unstable();
    assert_eq!(sorted, want, "overlaps({q:?})");
    assert_eq!(tree.count_overlap(q), want.len(), "count_overlap({q:?})");
    assert_eq!(tree.any_overlap(q), !want.is_empty(), "any_overlap({q:?})");
    if rng.percent(30) {
        // Same walk, by slot: then bump every hit's value in tree and model alike.
        let mut slots = Vec::new();
        tree.for_each_overlap_slot(q, |slot, i| slots.push((slot, i)));
        let mut visited = Vec::new();
        for (slot, i) in slots {
            let (h, v) = tree.slot_entry_mut(slot);
            visited.push(hit(h, i, *v));
            *v += 1;
        }
        assert_eq!(
            visited, got,
            "for_each_overlap_slot({q:?}) differs from overlaps"
        );
        for e in model
            .entries
            .iter_mut()
            .filter(|e| e.attached && e.iv.overlaps(q))
        {
            e.value += 1;
        }
    }
}

fn compare_all<const L: usize, const F: usize>(tree: &BPlusTree<u64, L, F>, model: &Model) {
    assert_eq!(tree.len(), model.attached().count(), "len");
    assert_eq!(tree.is_empty(), tree.iter().next().is_none(), "is_empty");
    assert_eq!(tree.span(), model.span(), "span");
    let got: Vec<Hit> = tree.iter().map(|(h, i, v)| hit(h, i, *v)).collect();
    assert_eq!(tree.iter().len(), got.len(), "iter().len()");
    assert!(
        got.windows(2).all(|w| w[0].1 <= w[1].1),
        "iter not in ascending start order"
    );
    let mut sorted = got;
    sorted.sort_unstable();
    assert_eq!(sorted, model.overlapping(iv(0, u64::MAX)), "iter");
    for e in &model.entries {
        assert_eq!(
            tree.get(e.handle),
            Some((e.iv, &e.value)),
            "get({:?})",
            e.handle
        );
        assert_eq!(
            tree.is_attached(e.handle),
            e.attached,
            "is_attached({:?})",
            e.handle
        );
    }
}

/// Where a run is, for the failure message.
#[derive(Default)]
struct Progress {
    step: usize,
    op: &'static str,
}

#[allow(
    clippy::too_many_lines,
    reason = "one arm per operation, each with its checks"
)]
fn run<const L: usize, const F: usize>(profile: &Profile, progress: &mut Progress) {
    let mut rng = Rng(profile.seed);
    let mut model = Model::default();
    let mut tree = if profile.bulk {
        let items: Vec<(Interval, u64)> = (0..profile.target)
            .map(|k| (gen_interval(&mut rng, profile.shape), k as u64))
            .collect();
        for (k, &(i, value)) in items.iter().enumerate() {
            let handle = Handle::from_bits(k as u64);
            model.entries.push(Entry {
                handle,
                iv: i,
                value,
                attached: true,
            });
        }
        // Both bulk entry points, one seed in two each: they must build the same tree.
        if profile.seed % 2 == 0 {
            BPlusTree::<u64, L, F>::bulk_build(items)
        } else {
            let starts = items.iter().map(|(i, _)| i.start()).collect();
            let lasts = items.iter().map(|(i, _)| i.last()).collect();
            BPlusTree::<u64, L, F>::from_columns(starts, lasts, items.iter().map(|&(_, v)| v))
                .unwrap()
        }
    } else {
        BPlusTree::new()
    };
    tree.check_invariants().unwrap();
    compare_all(&tree, &model);
    let mut next_value = 1_000_000u64;
    for step in 0..profile.steps {
        progress.step = step;
        let size = tree.len();
        // Weights of insert, insert_detached, attach, detach, remove, stale handle, unknown
        // handle, get_mut; the rest (out of 100) are queries and the rare drain.
        let weights = if size < profile.target {
            [40, 6, 8, 6, 6, 4, 2, 2]
        } else {
            [14, 4, 8, 8, 18, 4, 2, 2]
        };
        let mut bounds = weights;
        for k in 1..bounds.len() {
            bounds[k] += bounds[k - 1];
        }
        let roll = rng.below(100);
        let any = !model.entries.is_empty();
        if roll < bounds[0] {
            progress.op = "insert";
            let i = gen_interval(&mut rng, profile.shape);
            next_value += 1;
            let handle = tree.insert(i, next_value);
            assert!(
                model.entries.iter().all(|e| e.handle != handle),
                "insert reused a live handle"
            );
            assert!(
                !model.stale.contains(&handle),
                "insert handed out a stale handle again"
            );
            model.entries.push(Entry {
                handle,
                iv: i,
                value: next_value,
                attached: true,
            });
        } else if roll < bounds[1] {
            progress.op = "insert_detached";
            let i = gen_interval(&mut rng, profile.shape);
            next_value += 1;
            let handle = tree.insert_detached(i, next_value);
            assert!(
                !model.stale.contains(&handle),
                "insert_detached handed out a stale handle again"
            );
            assert!(tree.contains(handle) && !tree.is_attached(handle));
            model.entries.push(Entry {
                handle,
                iv: i,
                value: next_value,
                attached: false,
            });
        } else if roll < bounds[2] && any {
            progress.op = "attach";
            let k = rng.index(model.entries.len());
            let e = &mut model.entries[k];
            assert_eq!(tree.attach(e.handle), !e.attached, "attach({:?})", e.handle);
            e.attached = true;
        } else if roll < bounds[3] && any {
            progress.op = "detach";
            let k = rng.index(model.entries.len());
            let e = &mut model.entries[k];
            assert_eq!(tree.detach(e.handle), e.attached, "detach({:?})", e.handle);
            e.attached = false;
        } else if roll < bounds[4] && any {
            progress.op = "remove";
            let k = rng.index(model.entries.len());
            let e = model.entries.swap_remove(k);
            assert_eq!(
                tree.remove(e.handle),
                Some((e.iv, e.value)),
                "remove({:?})",
                e.handle
            );
            assert!(!tree.contains(e.handle));
            model.retire(&mut rng, e.handle);
        } else if roll < bounds[5] && !model.stale.is_empty() {
            progress.op = "stale handle";
            let h = model.stale[rng.index(model.stale.len())];
            assert!(
                !tree.contains(h) && !tree.is_attached(h),
                "stale {h:?} still known"
            );
            assert_eq!(tree.get(h), None, "get(stale {h:?})");
            assert!(tree.get_mut(h).is_none(), "get_mut(stale {h:?})");
            assert!(
                !tree.attach(h) && !tree.detach(h),
                "attach/detach(stale {h:?})"
            );
            assert_eq!(tree.remove(h), None, "remove(stale {h:?})");
        } else if roll < bounds[6] {
            progress.op = "unknown handle";
            let h = Handle::from_bits(rng.next());
            if let Some(e) = model.entries.iter().find(|e| e.handle == h) {
                assert_eq!(tree.get(h), Some((e.iv, &e.value)));
            } else {
                assert!(!tree.contains(h) && tree.get(h).is_none() && tree.remove(h).is_none());
            }
        } else if roll < bounds[7] && any {
            progress.op = "get_mut";
            let k = rng.index(model.entries.len());
            let e = &mut model.entries[k];
            let (i, v) = tree.get_mut(e.handle).unwrap();
            assert_eq!((i, *v), (e.iv, e.value));
            *v ^= 0x5555;
            e.value ^= 0x5555;
        } else if roll == 99 && size <= 64 && rng.percent(20) {
            progress.op = "drain_values";
            let mut got = tree.drain_values();
            got.sort_unstable();
            let mut want: Vec<u64> = model.entries.iter().map(|e| e.value).collect();
            want.sort_unstable();
            assert_eq!(got, want, "drain_values");
            for e in std::mem::take(&mut model.entries) {
                model.retire(&mut rng, e.handle);
            }
        } else {
            progress.op = "queries";
            compare_queries(&mut tree, &mut model, &mut rng, profile.shape);
        }
        if let Err(e) = tree.check_invariants() {
            panic!("check_invariants after {}: {e}", progress.op);
        }
        assert_eq!(
            tree.len(),
            model.attached().count(),
            "len after {}",
            progress.op
        );
        assert_eq!(tree.span(), model.span(), "span after {}", progress.op);
        if step % 64 == 0 || tree.len() < 16 {
            progress.op = "compare_all";
            compare_all(&tree, &model);
        }
    }
    compare_all(&tree, &model);
}

/// Run `profile`, or the replayed seed from `TREE_MODEL_SEED` instead; print the seed on failure.
fn check(profile: Profile) {
    check_layout::<16, 16>(profile);
}

/// [`check`] on the layout with leaves of `L` and inner nodes of `F`.
fn check_layout<const L: usize, const F: usize>(mut profile: Profile) {
    if let Ok(text) = std::env::var("TREE_MODEL_SEED") {
        let text = text.trim();
        let parsed = text
            .strip_prefix("0x")
            .map_or_else(|| text.parse(), |hex| u64::from_str_radix(hex, 16));
        profile.seed = parsed.expect("TREE_MODEL_SEED must be a u64, decimal or 0x hex");
    }
    let mut progress = Progress::default();
    let result = panic::catch_unwind(AssertUnwindSafe(|| run::<L, F>(&profile, &mut progress)));
    if let Err(cause) = result {
        eprintln!(
            "tree_model FAILED: seed {:#x} ({:?}, target {}, bulk {}, nodes {L}/{F}) at step {} during {}; \
             replay with TREE_MODEL_SEED={:#x}",
            profile.seed,
            profile.shape,
            profile.target,
            profile.bulk,
            progress.step,
            progress.op,
            profile.seed
        );
        panic::resume_unwind(cause);
    }
}

#[test]
fn tiny_dense_trees() {
    for seed in [1, 2, 3] {
        check(Profile {
            seed,
            shape: Shape::Dense,
            target: 6,
            steps: 3000,
            bulk: false,
        });
    }
}

#[test]
fn small_dense_tree() {
    check(Profile {
        seed: 0x5eed_0001,
        shape: Shape::Dense,
        target: 80,
        steps: 5000,
        bulk: false,
    });
}

#[test]
fn page_workload() {
    check(Profile {
        seed: 0x5eed_0002,
        shape: Shape::Pages,
        target: 400,
        steps: 5000,
        bulk: false,
    });
}

#[test]
fn u64_extremes() {
    check(Profile {
        seed: 0x5eed_0003,
        shape: Shape::Extremes,
        target: 200,
        steps: 5000,
        bulk: false,
    });
}

#[test]
fn large_page_tree() {
    check(Profile {
        seed: 0x5eed_0004,
        shape: Shape::Pages,
        target: 1500,
        steps: 5000,
        bulk: false,
    });
}

#[test]
fn large_dense_tree_from_bulk_build() {
    check(Profile {
        seed: 0x5eed_0005,
        shape: Shape::Dense,
        target: 3000,
        steps: 1000,
        bulk: true,
    });
}

#[test]
fn extremes_from_bulk_build() {
    check(Profile {
        seed: 0x5eed_0006,
        shape: Shape::Extremes,
        target: 300,
        steps: 3000,
        bulk: true,
    });
}

/// The smallest nodes allowed (8 intervals, 8 children): a thousand intervals make a tree
/// four levels deep, so splits, merges and redistributions happen at every level.
#[test]
fn deep_trees_of_small_nodes() {
    for (seed, shape, bulk) in [
        (0x5eed_0007, Shape::Pages, false),
        (0x5eed_0008, Shape::Dense, false),
        (0x5eed_0009, Shape::Extremes, true),
    ] {
        check_layout::<8, 8>(Profile {
            seed,
            shape,
            target: 1_200,
            steps: 5_000,
            bulk,
        });
    }
}
