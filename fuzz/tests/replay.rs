//! The fuzz oracle under plain `cargo test` (no instrumentation, no libFuzzer): replay every
//! input of `fuzz/corpus/protocol`, then random inputs from a seeded generator. This is the
//! coverage-free fallback; the coverage-guided run is `fuzz/run.sh`.
//!
//! `MMN_FUZZ_SECONDS` (default 5) bounds the random part; `MMN_FUZZ_SEED` replays one seed.

use std::time::{Duration, Instant};

/// splitmix64: small, seedable, good enough to make inputs.
fn next(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

fn input(seed: u64) -> Vec<u8> {
    let mut st = seed;
    let len = (next(&mut st) % 2048) as usize;
    (0..len).map(|_| next(&mut st) as u8).collect()
}

#[test]
fn corpus() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("corpus/protocol");
    let mut n = 0;
    if let Ok(entries) = std::fs::read_dir(&dir) {
        for entry in entries.flatten() {
            let data = std::fs::read(entry.path()).unwrap();
            let path = entry.path();
            let r = std::panic::catch_unwind(|| mmn_fast_fuzz::run(&data));
            assert!(r.is_ok(), "corpus input {} fails", path.display());
            n += 1;
        }
    }
    eprintln!("replayed {n} corpus inputs");
}

#[test]
fn random() {
    if let Some(seed) = std::env::var("MMN_FUZZ_SEED").ok().and_then(|s| s.parse().ok()) {
        mmn_fast_fuzz::run(&input(seed));
        return;
    }
    let secs = std::env::var("MMN_FUZZ_SECONDS").ok().and_then(|s| s.parse().ok()).unwrap_or(5);
    let deadline = Instant::now() + Duration::from_secs(secs);
    let base = 0x6d6d_6e5f_6675_7a7a_u64;
    let mut runs = 0u64;
    while Instant::now() < deadline {
        let seed = base.wrapping_add(runs);
        let data = input(seed);
        if std::panic::catch_unwind(|| mmn_fast_fuzz::run(&data)).is_err() {
            panic!("fuzz input from seed {seed} fails; replay: MMN_FUZZ_SEED={seed} cargo test --test replay random");
        }
        runs += 1;
    }
    eprintln!("random fuzz: {runs} inputs in {secs} s");
}
