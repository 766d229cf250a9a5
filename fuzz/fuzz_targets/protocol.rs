//! libFuzzer target: arbitrary bytes -> protocol operations, checked against the brute-force
//! model in `src/lib.rs`. Build and run with `fuzz/run.sh` (stable toolchain).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    mmn_fast_fuzz::run(data);
});
