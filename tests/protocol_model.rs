//! Seeded random model test of the interval protocol (SPEC R7-R42, R81-R84): random operations
//! run on `Protocol` and on the brute-force model of `tests/support/protocol_model.rs` (the one
//! the fuzz target uses too), compared after every step.
//!
//! A failure prints its seed; `PROTOCOL_MODEL_SEED=<seed> cargo test --test protocol_model`
//! replays that seed alone.

use mmn_fast::Interval;

#[path = "support/protocol_model.rs"]
mod model;
mod support;

use model::{Op, Pair};
use support::Rng;

/// One operation, drawn over a small address space so that overlaps are common.
fn draw(rng: &mut Rng, inserted: usize) -> Op {
    match rng.below(20) {
        0..=5 if inserted < 200 => Op::Insert {
            start: rng.below(64) * 0x100,
            length: 1 + rng.below(4) * 0x100,
            native: rng.below(3) == 0,
        },
        0..=9 => Op::Remove {
            pick: u8::try_from(rng.below(0x80)).unwrap(), // a live one
        },
        10..=12 => Op::Start {
            q: range(rng),
            set_mask: u8::try_from(rng.below(256)).unwrap(),
        },
        13 => Op::Batch {
            queries: [range(rng), range(rng), range(rng), range(rng)],
            count: u8::try_from(1 + rng.below(4)).unwrap(),
            set_mask: u8::try_from(rng.below(256)).unwrap(),
        },
        14..=17 => Op::End,
        18 => Op::Drain,
        _ => match rng.below(41) {
            40 => Op::Release, // D12: inserts are refused from here on
            0..=9 => Op::ReadBegin {
                pick: u8::try_from(rng.below(256)).unwrap(),
            },
            10..=19 => Op::ReadRetry {
                pick: u8::try_from(rng.below(256)).unwrap(),
            },
            20..=29 => Op::Payloads,
            _ => Op::Conversions {
                a: rng.next(),
                b: rng.below(4),
            },
        },
    }
}

/// A range over the same small address space.
fn range(rng: &mut Rng) -> Interval {
    let start = rng.below(64) * 0x100;
    Interval::from_start_length(start, 1 + rng.below(4) * 0x100).unwrap()
}

fn run(seed: u64, steps: usize) {
    let mut rng = Rng(seed);
    let mut pair = Pair::new();
    for step in 0..steps {
        let op = draw(&mut rng, pair.inserted());
        let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| pair.apply(op)));
        assert!(outcome.is_ok(), "seed {seed} step {step}: {op:?}");
    }
    pair.quiesce();
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
