//! Criterion benchmarks of `mmn_fast::IntervalTree` (the B+-tree with nodes of 16) and of a
//! second candidate layout (`bplus_32`: leaves and inner nodes of 32) against two peers in the
//! same run: `coitrees` (a static cache-oblivious tree, the query-speed reference; no updates)
//! and `iset` (a dynamic red-black interval map).
//!
//! Run `cargo bench --bench tree` (a few minutes on 2 cores), add `-- --quick` for a rough pass,
//! or set `MMN_BENCH_MAX_N=100000` to stop the size sweep earlier. On a shared machine, whose
//! load changes between one criterion benchmark and the next, `MMN_BENCH_INTERLEAVED=1 cargo
//! bench --bench tree` times all targets on the same batch in turn, round after round
//! (`MMN_BENCH_ROUNDS`, 15), and prints each one's best round and the ratios. Numbers are not
//! pasted anywhere: rerun the command.
//!
//! Workload (fixed seeds): page-aligned starts uniform in `[0, 2^40)`, lengths log-uniform in
//! 1..256 pages. Queries are "point-ish" (one page), "range" (drawn like the intervals) or
//! stabs (one address). `coitrees` takes `i32` endpoints, so it is fed page numbers: for
//! page-granular intervals `[s, l]` overlaps `[qs, ql]` exactly when `[s/4096, l/4096]`
//! overlaps `[qs/4096, ql/4096]`. `iset` takes half-open `start..last + 1`. Every answer of
//! each peer is checked against ours before anything is timed.
//!
//! The last group ports the workload of the kernel's `lib/interval_tree_test.c` (SPEC 5.2):
//! 100 nodes, insert+remove batches and batches of 100 point searches, with the same generator
//! shape (`(r >> 4) % max`) over our own PRNG, so its result checksum is comparable between
//! the implementations here, not with the kernel's own printout.

#![allow(
    clippy::cast_possible_truncation,
    clippy::cast_sign_loss,
    clippy::cast_precision_loss,
    reason = "benchmark arithmetic on values known to fit"
)]

use std::hint::black_box;
use std::sync::OnceLock;
use std::time::Duration;

use coitrees::{COITree, GenericInterval, IntervalTree as _};
use criterion::{criterion_group, BatchSize, BenchmarkId, Criterion, SamplingMode, Throughput};
use iset::IntervalMap;
use mmn_fast::tree::{BPlusTree, Found};
use mmn_fast::{Handle, Interval, IntervalTree};

const PAGE: u64 = 4096;
const SEED: u64 = 0x6d6d_6e5f_6661_7374;
/// Distinct queries cycled through by the per-query benchmarks.
const NQUERIES: usize = 4096;

#[path = "../tests/support/mod.rs"]
mod support;

use support::Rng;

fn iv(start: u64, last: u64) -> Interval {
    Interval::new(start, last).expect("start <= last by construction")
}

/// A page-aligned interval: start uniform in `[0, 2^40)`, length log-uniform in 1..256 pages.
fn page_interval(rng: &mut Rng) -> Interval {
    let start = rng.below(1 << 28) * PAGE;
    let pages = (8.0 * rng.unit()).exp2() as u64;
    iv(start, start + pages * PAGE - 1)
}

/// The sizes to sweep: 10^3 .. 10^6, capped by `MMN_BENCH_MAX_N`.
fn sizes() -> Vec<usize> {
    let cap = std::env::var("MMN_BENCH_MAX_N")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1_000_000);
    [1_000, 10_000, 100_000, 1_000_000]
        .into_iter()
        .filter(|&n| n <= cap)
        .collect()
}

/// One data set of `n` intervals and its queries, and the three structures built from it.
struct Fixture {
    items: Vec<Interval>,
    points: Vec<Interval>,
    ranges: Vec<Interval>,
    stabs: Vec<u64>,
    ours: IntervalTree<u32>,
    /// The second candidate layout: leaves of 32 intervals, inner nodes of 32 children.
    wide: Wide,
    handles: Vec<Handle>,
    coi: COITree<u32, u32>,
    iset: IntervalMap<u64, u32>,
}

/// The candidate measured beside the default `IntervalTree` (leaves and inner nodes of 16).
type Wide = BPlusTree<u32, 32, 32>;
const WIDE: &str = "bplus_32";

fn to_coi(i: Interval) -> (i32, i32) {
    ((i.start() / PAGE) as i32, (i.last() / PAGE) as i32)
}

fn to_range(i: Interval) -> std::ops::Range<u64> {
    i.start()..i.last() + 1
}

impl Fixture {
    fn new(n: usize) -> Self {
        let mut rng = Rng(SEED ^ n as u64);
        let items: Vec<Interval> = (0..n).map(|_| page_interval(&mut rng)).collect();
        let points = (0..NQUERIES)
            .map(|_| {
                let s = rng.below(1 << 28) * PAGE;
                iv(s, s + PAGE - 1)
            })
            .collect();
        let ranges = (0..NQUERIES).map(|_| page_interval(&mut rng)).collect();
        let stabs = (0..NQUERIES).map(|_| rng.below(1 << 40)).collect();
        let mut ours = IntervalTree::with_capacity(n);
        let handles = items
            .iter()
            .zip(0u32..)
            .map(|(&i, k)| ours.insert(i, k))
            .collect();
        let mut wide = Wide::with_capacity(n);
        for (&i, k) in items.iter().zip(0u32..) {
            wide.insert(i, k);
        }
        let coi_items: Vec<coitrees::Interval<u32>> = items
            .iter()
            .zip(0u32..)
            .map(|(&i, k)| {
                let (f, l) = to_coi(i);
                coitrees::Interval::new(f, l, k)
            })
            .collect();
        let coi = COITree::new(&coi_items);
        let mut iset: IntervalMap<u64, u32> = IntervalMap::with_capacity(n);
        for (&i, k) in items.iter().zip(0u32..) {
            iset.force_insert(to_range(i), k);
        }
        let fixture = Self {
            items,
            points,
            ranges,
            stabs,
            ours,
            wide,
            handles,
            coi,
            iset,
        };
        fixture.check_peers();
        fixture
    }

    fn ours_hits(&self, q: Interval) -> Vec<u32> {
        let mut v: Vec<u32> = self.ours.overlaps(q).map(|(_, _, k)| *k).collect();
        v.sort_unstable();
        v
    }

    fn coi_hits(&self, q: Interval) -> Vec<u32> {
        let (f, l) = to_coi(q);
        let mut v = Vec::new();
        self.coi.query(f, l, |node| v.push(*node.metadata()));
        v.sort_unstable();
        v
    }

    fn iset_hits(&self, q: Interval) -> Vec<u32> {
        let mut v: Vec<u32> = self.iset.values(q.start()..=q.last()).copied().collect();
        v.sort_unstable();
        v
    }

    /// Every peer must give our answers (checked on a sample of each query kind).
    fn check_peers(&self) {
        let stabs = self.stabs.iter().map(|&p| iv(p, p));
        let queries = self
            .points
            .iter()
            .chain(&self.ranges)
            .copied()
            .step_by(7)
            .chain(stabs.step_by(7));
        let mut total = 0;
        for q in queries {
            let want = self.ours_hits(q);
            assert_eq!(self.coi_hits(q), want, "coitrees disagrees on {q:?}");
            assert_eq!(self.iset_hits(q), want, "iset disagrees on {q:?}");
            let mut wide: Vec<u32> = self.wide.overlaps(q).map(|(_, _, k)| *k).collect();
            wide.sort_unstable();
            assert_eq!(wide, want, "{WIDE} disagrees on {q:?}");
            assert_eq!(
                self.ours.count_overlap(q),
                want.len(),
                "count_overlap disagrees on {q:?}"
            );
            assert_eq!(
                self.ours.any_overlap(q),
                !want.is_empty(),
                "any_overlap disagrees on {q:?}"
            );
            total += want.len();
        }
        self.ours.check_invariants().expect("tree invariants");
        self.wide.check_invariants().expect("tree invariants");
        eprintln!(
            "n = {}: peers agree on {} sampled queries ({total} hits)",
            self.items.len(),
            3 * NQUERIES / 7
        );
    }
}

/// One fixture per size, built (and checked against the peers) once for all groups.
fn fixtures() -> &'static [Fixture] {
    static FIXTURES: OnceLock<Vec<Fixture>> = OnceLock::new();
    FIXTURES.get_or_init(|| sizes().into_iter().map(Fixture::new).collect())
}

fn config() -> Criterion {
    Criterion::default()
        .sample_size(20)
        .warm_up_time(Duration::from_millis(300))
        .measurement_time(Duration::from_secs(1))
        .without_plots()
}

/// Heavy per-iteration groups (whole builds of up to 10^6 intervals): few flat samples.
fn heavy(group: &mut criterion::BenchmarkGroup<'_, criterion::measurement::WallTime>) {
    group.sample_size(10).sampling_mode(SamplingMode::Flat);
}

/// Insert every item, in order, into `t`.
fn fill<const L: usize, const F: usize>(
    mut t: BPlusTree<u32, L, F>,
    items: &[Interval],
) -> BPlusTree<u32, L, F> {
    for (&i, k) in items.iter().zip(0u32..) {
        t.insert(i, k);
    }
    t
}

/// Time `build` as `id` at size `n`; see [`bench_insert_remove`] for `reuse`. The tree is
/// dropped outside the timing either way.
fn time_build<T>(
    group: &mut criterion::BenchmarkGroup<'_, criterion::measurement::WallTime>,
    id: &str,
    n: usize,
    reuse: bool,
    build: impl Fn() -> T,
) {
    group.bench_function(BenchmarkId::new(id, n), |b| {
        if reuse {
            b.iter_batched(|| (), |()| build(), BatchSize::PerIteration);
        } else {
            b.iter_with_large_drop(&build);
        }
    });
}

fn remove_all<const L: usize, const F: usize>(
    mut t: BPlusTree<u32, L, F>,
    handles: &[Handle],
) -> BPlusTree<u32, L, F> {
    for &h in handles {
        black_box(t.remove(h));
    }
    t
}

/// Remove a random live interval and insert a fresh one, per iteration.
fn churn_ours<const L: usize, const F: usize>(
    b: &mut criterion::Bencher<'_>,
    mut t: BPlusTree<u32, L, F>,
    handles: &[Handle],
    fresh: &[Interval],
) {
    let mut live = handles.to_vec();
    let mut rng = Rng(SEED ^ 1);
    let mut next = 0;
    b.iter(|| {
        let k = rng.below(live.len() as u64) as usize;
        black_box(t.remove(live[k]));
        live[k] = t.insert(fresh[next % NQUERIES], k as u32);
        next += 1;
    });
}

fn query_ours<const L: usize, const F: usize>(
    b: &mut criterion::Bencher<'_>,
    t: &BPlusTree<u32, L, F>,
    qs: &[Interval],
) {
    let mut k = 0;
    b.iter(|| {
        k = (k + 1) % NQUERIES;
        t.overlaps(qs[k])
            .map(|(_, _, v)| u64::from(*v))
            .sum::<u64>()
    });
}

fn count_ours<const L: usize, const F: usize>(
    b: &mut criterion::Bencher<'_>,
    t: &BPlusTree<u32, L, F>,
    qs: &[Interval],
) {
    let mut k = 0;
    b.iter(|| {
        k = (k + 1) % NQUERIES;
        t.count_overlap(qs[k])
    });
}

fn bench_insert_remove(c: &mut Criterion) {
    // `insert` keeps every tree of a batch until the batch ends, so each build may touch fresh
    // memory, which this VM faults in at 2-3.5 us a page (a third of a build of 10^3, for
    // every target, unless the larger fixtures grew the heap first); `insert_reused` drops
    // each tree before the next build, which then reuses the allocator's memory, as builds
    // in a long-running program do.
    for (name, reuse) in [("insert", false), ("insert_reused", true)] {
        let mut insert = c.benchmark_group(name);
        heavy(&mut insert);
        for f in fixtures() {
            let (n, items) = (f.items.len(), &f.items);
            insert.throughput(Throughput::Elements(n as u64));
            time_build(&mut insert, "mmn_fast", n, reuse, || {
                fill(IntervalTree::with_capacity(n), items)
            });
            if !reuse {
                time_build(&mut insert, WIDE, n, reuse, || {
                    fill(Wide::with_capacity(n), items)
                });
            }
            time_build(&mut insert, "iset", n, reuse, || {
                let mut t: IntervalMap<u64, u32> = IntervalMap::with_capacity(n);
                for (&i, k) in items.iter().zip(0u32..) {
                    t.force_insert(to_range(i), k);
                }
                t
            });
        }
        insert.finish();
    }

    let mut remove = c.benchmark_group("remove");
    heavy(&mut remove);
    for f in fixtures() {
        let n = f.items.len();
        // Remove everything, in a random order.
        let mut order: Vec<usize> = (0..n).collect();
        let mut rng = Rng(SEED);
        for k in (1..n).rev() {
            order.swap(k, rng.below(k as u64 + 1) as usize);
        }
        let handles: Vec<Handle> = order.iter().map(|&k| f.handles[k]).collect();
        let ranges: Vec<std::ops::Range<u64>> =
            order.iter().map(|&k| to_range(f.items[k])).collect();
        remove.throughput(Throughput::Elements(n as u64));
        remove.bench_function(BenchmarkId::new("mmn_fast", n), |b| {
            b.iter_batched(
                || f.ours.clone(),
                |t| remove_all(t, &handles),
                BatchSize::LargeInput,
            );
        });
        remove.bench_function(BenchmarkId::new(WIDE, n), |b| {
            b.iter_batched(
                || f.wide.clone(),
                |t| remove_all(t, &handles),
                BatchSize::LargeInput,
            );
        });
        remove.bench_function(BenchmarkId::new("iset", n), |b| {
            b.iter_batched(
                || f.iset.clone(),
                |mut t| {
                    for r in &ranges {
                        black_box(t.remove(r.clone()));
                    }
                    t
                },
                BatchSize::LargeInput,
            );
        });
    }
    remove.finish();
}

fn bench_churn_and_build(c: &mut Criterion) {
    let mut churn = c.benchmark_group("churn");
    for f in fixtures() {
        let n = f.items.len();
        let mut rng = Rng(SEED ^ 0xc4);
        let fresh: Vec<Interval> = (0..NQUERIES).map(|_| page_interval(&mut rng)).collect();
        churn.throughput(Throughput::Elements(1));
        churn.bench_function(BenchmarkId::new("mmn_fast", n), |b| {
            churn_ours(b, f.ours.clone(), &f.handles, &fresh);
        });
        churn.bench_function(BenchmarkId::new(WIDE, n), |b| {
            churn_ours(b, f.wide.clone(), &f.handles, &fresh);
        });
        churn.bench_function(BenchmarkId::new("iset", n), |b| {
            let mut t = f.iset.clone();
            let mut live: Vec<std::ops::Range<u64>> =
                f.items.iter().map(|&i| to_range(i)).collect();
            let mut rng = Rng(SEED ^ 1);
            let mut next = 0;
            b.iter(|| {
                let k = rng.below(live.len() as u64) as usize;
                black_box(t.remove(live[k].clone()));
                live[k] = to_range(fresh[next % NQUERIES]);
                t.force_insert(live[k].clone(), k as u32);
                next += 1;
            });
        });
    }
    churn.finish();

    let mut bulk = c.benchmark_group("bulk_build");
    heavy(&mut bulk);
    for f in fixtures() {
        let n = f.items.len();
        let ours_items: Vec<(Interval, u32)> = f.items.iter().copied().zip(0u32..).collect();
        let coi_items: Vec<coitrees::Interval<u32>> = f
            .items
            .iter()
            .zip(0u32..)
            .map(|(&i, k)| {
                let (s, l) = to_coi(i);
                coitrees::Interval::new(s, l, k)
            })
            .collect();
        bulk.throughput(Throughput::Elements(n as u64));
        bulk.bench_function(BenchmarkId::new("mmn_fast", n), |b| {
            b.iter_batched(
                || ours_items.clone(),
                IntervalTree::bulk_build,
                BatchSize::LargeInput,
            );
        });
        // `IntervalTree.from_arrays`' path: the starts become the sort's keys in place.
        bulk.bench_function(BenchmarkId::new("mmn_fast_columns", n), |b| {
            b.iter_batched(
                || {
                    let starts = f.items.iter().map(|i| i.start()).collect();
                    (starts, f.items.iter().map(|i| i.last()).collect())
                },
                |(starts, lasts)| {
                    IntervalTree::from_columns(starts, lasts, 0..u32::try_from(n).unwrap())
                },
                BatchSize::LargeInput,
            );
        });
        bulk.bench_function(BenchmarkId::new("coitrees", n), |b| {
            b.iter_with_large_drop(|| COITree::<u32, u32>::new(&coi_items));
        });
    }
    bulk.finish();
}

fn bench_queries(c: &mut Criterion) {
    for (name, pick) in [
        (
            "query_point",
            (|f: &Fixture| f.points.clone()) as fn(&Fixture) -> Vec<Interval>,
        ),
        ("query_range", |f: &Fixture| f.ranges.clone()),
        ("stab", |f: &Fixture| {
            f.stabs.iter().map(|&p| iv(p, p)).collect()
        }),
    ] {
        let mut group = c.benchmark_group(name);
        group.throughput(Throughput::Elements(1));
        for f in fixtures() {
            let n = f.items.len();
            let qs = pick(f);
            let coi_qs: Vec<(i32, i32)> = qs.iter().map(|&q| to_coi(q)).collect();
            group.bench_function(BenchmarkId::new("mmn_fast", n), |b| {
                query_ours(b, &f.ours, &qs);
            });
            group.bench_function(BenchmarkId::new(WIDE, n), |b| {
                query_ours(b, &f.wide, &qs);
            });
            group.bench_function(BenchmarkId::new("coitrees", n), |b| {
                let mut k = 0;
                b.iter(|| {
                    k = (k + 1) % NQUERIES;
                    let mut sum = 0u64;
                    f.coi.query(coi_qs[k].0, coi_qs[k].1, |node| {
                        sum += u64::from(*node.metadata());
                    });
                    sum
                });
            });
            group.bench_function(BenchmarkId::new("iset", n), |b| {
                let mut k = 0;
                b.iter(|| {
                    k = (k + 1) % NQUERIES;
                    f.iset
                        .values(qs[k].start()..=qs[k].last())
                        .map(|&v| u64::from(v))
                        .sum::<u64>()
                });
            });
        }
        group.finish();
    }

    let mut count = c.benchmark_group("count");
    count.throughput(Throughput::Elements(1));
    for f in fixtures() {
        let n = f.items.len();
        let coi_qs: Vec<(i32, i32)> = f.ranges.iter().map(|&q| to_coi(q)).collect();
        count.bench_function(BenchmarkId::new("mmn_fast", n), |b| {
            count_ours(b, &f.ours, &f.ranges);
        });
        count.bench_function(BenchmarkId::new(WIDE, n), |b| {
            count_ours(b, &f.wide, &f.ranges);
        });
        count.bench_function(BenchmarkId::new("coitrees", n), |b| {
            let mut k = 0;
            b.iter(|| {
                k = (k + 1) % NQUERIES;
                f.coi.query_count(coi_qs[k].0, coi_qs[k].1)
            });
        });
        count.bench_function(BenchmarkId::new("iset", n), |b| {
            let mut k = 0;
            b.iter(|| {
                k = (k + 1) % NQUERIES;
                f.iset
                    .values(f.ranges[k].start()..=f.ranges[k].last())
                    .count()
            });
        });
    }
    count.finish();

    let mut any = c.benchmark_group("any_overlap");
    any.throughput(Throughput::Elements(1));
    for f in fixtures() {
        let n = f.items.len();
        any.bench_function(BenchmarkId::new("mmn_fast", n), |b| {
            let mut k = 0;
            b.iter(|| {
                k = (k + 1) % NQUERIES;
                f.ours.any_overlap(f.points[k])
            });
        });
        any.bench_function(BenchmarkId::new("iset", n), |b| {
            let mut k = 0;
            b.iter(|| {
                k = (k + 1) % NQUERIES;
                f.iset.has_overlap(f.points[k].start()..=f.points[k].last())
            });
        });
    }
    any.finish();
}

fn bench_batch(c: &mut Criterion) {
    // `invalidate_many`'s walk: a batch of range queries found in one interleaved walk
    // (`find_overlaps`, several descents in flight) against the same queries one by one.
    let mut batch = c.benchmark_group("batch_query_range");
    batch.throughput(Throughput::Elements(NQUERIES as u64));
    for f in fixtures() {
        let n = f.items.len();
        let sum = |hits: &mut dyn Iterator<Item = u32>| hits.map(u64::from).sum::<u64>();
        batch.bench_function(BenchmarkId::new("mmn_fast_one_by_one", n), |b| {
            b.iter(|| {
                f.ranges
                    .iter()
                    .map(|&q| sum(&mut f.ours.overlaps(q).map(|(_, _, &v)| v)))
                    .sum::<u64>()
            });
        });
        let mut found = Found::new();
        batch.bench_function(BenchmarkId::new("mmn_fast_find_overlaps", n), |b| {
            b.iter(|| {
                f.ours.find_overlaps(&f.ranges, &mut found);
                (0..NQUERIES)
                    .map(|i| sum(&mut f.ours.found(&found, i).map(|(_, _, &v)| v)))
                    .sum::<u64>()
            });
        });
    }
    batch.finish();
}

/// The workload of `lib/interval_tree_test.c` (SPEC 5.2), with our own PRNG.
mod kernel_port {
    use super::{black_box, iv, BenchmarkId, Criterion, Interval, IntervalMap, IntervalTree, Rng};
    use coitrees::{COITree, IntervalTree as _};

    const NNODES: usize = 100;
    const NSEARCHES: usize = 100;
    const MAX_ENDPOINT: u64 = 0xffff_ffff;
    /// The module's seed, fed to our generator.
    const SEED: u64 = 3_141_592_653_589_793_238;

    fn rand32(rng: &mut Rng) -> u64 {
        rng.next() >> 32
    }

    /// Nodes `[a, b]` with `b = (r >> 4) % max`, `a = (r >> 4) % b`; queries `(r >> 4) % max`.
    fn data() -> (Vec<Interval>, Vec<u64>) {
        let mut rng = Rng(SEED);
        let nodes = (0..NNODES)
            .map(|_| {
                let b = (rand32(&mut rng) >> 4) % MAX_ENDPOINT;
                let a = if b == 0 {
                    0
                } else {
                    (rand32(&mut rng) >> 4) % b
                };
                iv(a, b)
            })
            .collect();
        let queries = (0..NSEARCHES)
            .map(|_| (rand32(&mut rng) >> 4) % MAX_ENDPOINT)
            .collect();
        (nodes, queries)
    }

    /// Enumerate and count, as the module does with `iter_first` / `iter_next`.
    fn search_ours(tree: &IntervalTree<u32>, queries: &[Interval]) -> usize {
        queries.iter().map(|&q| tree.overlaps(q).count()).sum()
    }

    pub fn bench(c: &mut Criterion) {
        let (nodes, points) = data();
        let point_qs: Vec<Interval> = points.iter().map(|&p| iv(p, p)).collect();
        let all_qs = vec![iv(0, MAX_ENDPOINT); NSEARCHES];
        let mut ours = IntervalTree::new();
        let mut iset = IntervalMap::new();
        for (&i, k) in nodes.iter().zip(0u32..) {
            ours.insert(i, k);
            iset.force_insert(i.start()..i.last() + 1, k);
        }
        let coi_items: Vec<coitrees::Interval<u32>> = nodes
            .iter()
            .zip(0u32..)
            .map(|(&i, k)| coitrees::Interval::new(i.start() as i32, i.last() as i32, k))
            .collect();
        let coi = COITree::<u32, u32>::new(&coi_items);
        let search_iset = |qs: &[Interval]| -> usize {
            qs.iter()
                .map(|q| iset.values(q.start()..=q.last()).count())
                .sum()
        };
        // Every endpoint is below 2^28, so clamping the query to i32 loses no answer.
        let clamp = |x: u64| x.min(i32::MAX as u64) as i32;
        let search_coi = |qs: &[Interval]| -> usize {
            let mut results = 0;
            for q in qs {
                coi.query(clamp(q.start()), clamp(q.last()), |_| results += 1);
            }
            results
        };
        for (name, qs) in [("search", &point_qs), ("search_all", &all_qs)] {
            let results = search_ours(&ours, qs);
            assert_eq!(search_iset(qs), results, "iset checksum differs ({name})");
            assert_eq!(
                search_coi(qs),
                results,
                "coitrees checksum differs ({name})"
            );
            eprintln!("kernel_port {name}: {results} results per batch of {NSEARCHES} queries (all three agree)");
        }

        let mut group = c.benchmark_group("kernel_interval_tree_test");
        group.bench_function(BenchmarkId::new("insert_remove_batch", "mmn_fast"), |b| {
            let mut tree = IntervalTree::with_capacity(NNODES);
            let mut handles = Vec::with_capacity(NNODES);
            b.iter(|| {
                handles.extend(nodes.iter().zip(0u32..).map(|(&i, k)| tree.insert(i, k)));
                for h in handles.drain(..) {
                    black_box(tree.remove(h));
                }
            });
        });
        group.bench_function(BenchmarkId::new("insert_remove_batch", "iset"), |b| {
            let mut map: IntervalMap<u64, u32> = IntervalMap::with_capacity(NNODES);
            b.iter(|| {
                for (&i, k) in nodes.iter().zip(0u32..) {
                    map.force_insert(i.start()..i.last() + 1, k);
                }
                for &i in &nodes {
                    black_box(map.remove(i.start()..i.last() + 1));
                }
            });
        });
        for (name, qs) in [("search", &point_qs), ("search_all", &all_qs)] {
            group.bench_function(BenchmarkId::new(name, "mmn_fast"), |b| {
                b.iter(|| search_ours(&ours, black_box(qs)));
            });
            group.bench_function(BenchmarkId::new(name, "iset"), |b| {
                b.iter(|| search_iset(black_box(qs)));
            });
            group.bench_function(BenchmarkId::new(name, "coitrees"), |b| {
                b.iter(|| search_coi(black_box(qs)));
            });
        }
        group.finish();
    }
}

criterion_group! {
    name = benches;
    config = config();
    targets = kernel_port::bench, bench_queries, bench_batch, bench_insert_remove, bench_churn_and_build
}
/// `MMN_BENCH_INTERLEAVED=1`: instead of criterion's one-benchmark-after-another, time every
/// target on the same batch of queries (or updates) in turn, round after round, and keep each
/// target's best round. On a shared machine whose load swings between criterion groups, this
/// is the ratio that holds from run to run. Prints ns per operation and ratios; no criterion.
mod interleaved {
    use super::{black_box, fixtures, to_coi, to_range, Fixture, Rng, NQUERIES, SEED};
    use coitrees::IntervalTree as _;
    use mmn_fast::Interval;
    use std::fmt::Write as _;
    use std::time::Instant;

    const TARGETS: [&str; 4] = ["mmn_fast", super::WIDE, "coitrees", "iset"];

    /// Seconds to run `f` once.
    fn secs<R>(f: impl FnOnce() -> R) -> f64 {
        let t = Instant::now();
        black_box(f());
        t.elapsed().as_secs_f64()
    }

    fn queries(f: &Fixture, qs: &[Interval], count: bool) -> [f64; 4] {
        let coi: Vec<(i32, i32)> = qs.iter().map(|&q| to_coi(q)).collect();
        let sum = |v: &u32| u64::from(*v);
        if count {
            [
                secs(|| qs.iter().map(|&q| f.ours.count_overlap(q)).sum::<usize>()),
                secs(|| qs.iter().map(|&q| f.wide.count_overlap(q)).sum::<usize>()),
                secs(|| {
                    coi.iter()
                        .map(|&(a, b)| f.coi.query_count(a, b))
                        .sum::<usize>()
                }),
                secs(|| {
                    qs.iter()
                        .map(|&q| f.iset.values(q.start()..=q.last()).count())
                        .sum::<usize>()
                }),
            ]
        } else {
            [
                secs(|| {
                    qs.iter()
                        .map(|&q| f.ours.overlaps(q).map(|h| sum(h.2)).sum::<u64>())
                        .sum::<u64>()
                }),
                secs(|| {
                    qs.iter()
                        .map(|&q| f.wide.overlaps(q).map(|h| sum(h.2)).sum::<u64>())
                        .sum::<u64>()
                }),
                secs(|| {
                    let mut total = 0u64;
                    for &(a, b) in &coi {
                        f.coi.query(a, b, |n| total += u64::from(n.metadata));
                    }
                    total
                }),
                secs(|| {
                    qs.iter()
                        .map(|&q| f.iset.values(q.start()..=q.last()).map(sum).sum::<u64>())
                        .sum::<u64>()
                }),
            ]
        }
    }

    /// Churn (remove a random live interval, insert a fresh one) on copies of the fixture.
    struct Churn {
        ours: mmn_fast::IntervalTree<u32>,
        ours_live: Vec<mmn_fast::Handle>,
        wide: super::Wide,
        wide_live: Vec<mmn_fast::Handle>,
        iset: iset::IntervalMap<u64, u32>,
        iset_live: Vec<std::ops::Range<u64>>,
    }

    impl Churn {
        fn round(&mut self, picks: &[usize], fresh: &[Interval]) -> [f64; 4] {
            let ours = secs(|| {
                for (&k, &i) in picks.iter().zip(fresh) {
                    black_box(self.ours.remove(self.ours_live[k]));
                    self.ours_live[k] = self.ours.insert(i, k as u32);
                }
            });
            let wide = secs(|| {
                for (&k, &i) in picks.iter().zip(fresh) {
                    black_box(self.wide.remove(self.wide_live[k]));
                    self.wide_live[k] = self.wide.insert(i, k as u32);
                }
            });
            let iset = secs(|| {
                for (&k, &i) in picks.iter().zip(fresh) {
                    black_box(self.iset.remove(self.iset_live[k].clone()));
                    self.iset_live[k] = to_range(i);
                    self.iset.force_insert(to_range(i), k as u32);
                }
            });
            [ours, wide, f64::NAN, iset]
        }
    }

    pub fn run() {
        let rounds: usize = std::env::var("MMN_BENCH_ROUNDS")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(15);
        println!(
            "interleaved, best of {rounds} rounds, ns per operation (ratio to coitrees / iset)"
        );
        for f in fixtures() {
            let n = f.items.len();
            let mut rng = Rng(SEED ^ 0x1e);
            let mut churn = Churn {
                ours: f.ours.clone(),
                ours_live: f.handles.clone(),
                wide: f.wide.clone(),
                wide_live: f.handles.clone(),
                iset: f.iset.clone(),
                iset_live: f.items.iter().map(|&i| to_range(i)).collect(),
            };
            let stabs: Vec<Interval> = f.stabs.iter().map(|&p| super::iv(p, p)).collect();
            let mut best = [[f64::INFINITY; 4]; 5];
            for _ in 0..rounds {
                let picks: Vec<usize> = (0..NQUERIES)
                    .map(|_| rng.below(n as u64) as usize)
                    .collect();
                let fresh: Vec<Interval> = (0..NQUERIES)
                    .map(|_| super::page_interval(&mut rng))
                    .collect();
                let times = [
                    queries(f, &f.points, false),
                    queries(f, &f.ranges, false),
                    queries(f, &stabs, false),
                    queries(f, &f.ranges, true),
                    churn.round(&picks, &fresh),
                ];
                for (b, t) in best.iter_mut().zip(times) {
                    for (b, t) in b.iter_mut().zip(t) {
                        *b = b.min(t);
                    }
                }
            }
            for (name, b) in ["query_point", "query_range", "stab", "count", "churn"]
                .iter()
                .zip(best)
            {
                let ns = b.map(|t| t / NQUERIES as f64 * 1e9);
                let mut line = format!("{name:12} n={n:<8}");
                for (target, t) in TARGETS.iter().zip(ns) {
                    if t.is_finite() {
                        let _ = write!(line, " {target}={t:.0}");
                    }
                }
                for (k, target) in [(0, "mmn_fast"), (1, super::WIDE)] {
                    if ns[2].is_finite() {
                        let _ = write!(line, "  {target}/coitrees={:.2}", ns[k] / ns[2]);
                    }
                    let _ = write!(line, "  {target}/iset={:.2}", ns[k] / ns[3]);
                }
                println!("{line}");
            }
        }
    }
}

fn main() {
    if std::env::var_os("MMN_BENCH_INTERLEAVED").is_some() {
        interleaved::run();
        return;
    }
    benches();
    Criterion::default().configure_from_args().final_summary();
}
