#!/usr/bin/env bash
# Coverage-guided fuzzing of the protocol with libFuzzer on the STABLE toolchain, without
# cargo-fuzz (which is not installed here): the same sancov instrumentation flags that
# `cargo fuzz build -s none` passes, all of them stable rustc flags.
#
#   fuzz/run.sh [SECONDS] [extra libFuzzer flags...]     default 60 s (the CI run)
#   fuzz/run.sh 3600 -jobs=2 -workers=2                  the documented long run
#
# The tracked corpus fuzz/corpus/protocol is read, never written: new interesting inputs, crash
# artifacts and job logs go under target/fuzz-work/ (so a clone stays clean after `make test`).
# Replay a crash:        fuzz/run.sh 0 target/fuzz-work/artifacts/<file>
# Fold new inputs back:  fuzz/run.sh 0 -merge=1 fuzz/corpus/protocol target/fuzz-work/corpus
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
secs="${1:-60}"
shift || true
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$here/../target/fuzz}"
work="$here/../target/fuzz-work"
export RUSTFLAGS="--cfg fuzzing -Cpasses=sancov-module -Cllvm-args=-sanitizer-coverage-level=4 \
-Cllvm-args=-sanitizer-coverage-inline-8bit-counters -Cllvm-args=-sanitizer-coverage-pc-table \
-Cllvm-args=-sanitizer-coverage-trace-compares -Cdebug-assertions -Coverflow-checks"
# A separate target triple directory keeps these instrumented objects apart from normal builds.
triple="$(rustc -vV | sed -n 's/^host: //p')"
cargo build --manifest-path "$here/Cargo.toml" --release --features libfuzzer --bin protocol --target "$triple"
bin="$CARGO_TARGET_DIR/$triple/release/protocol"
mkdir -p "$work/corpus" "$work/artifacts"
if [ "$secs" = 0 ]; then
    exec "$bin" "$@"
fi
cd "$work"  # -jobs writes its fuzz-N.log files into the working directory
# The first corpus directory receives the new inputs; the tracked one only seeds the run.
exec "$bin" -max_total_time="$secs" -max_len=4096 -timeout=10 -rss_limit_mb=2048 \
    -artifact_prefix="$work/artifacts/" -print_final_stats=1 "$@" "$work/corpus" "$here/corpus/protocol"
