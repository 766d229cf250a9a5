#!/usr/bin/env bash
# Build the release artifacts into dist/:
#   - one abi3 wheel (CPython >= 3.9) for this platform, tagged manylinux2014 (manylinux_2_17):
#     `maturin build --zig` with the Zig toolchain from PyPI's `ziglang`, so no Docker is needed;
#   - one sdist that builds from source (`pip install dist/mmn_fast-*.tar.gz`).
# The version is Cargo.toml's `version` (maturin writes it into both).
#
# Environment:
#   PYTHON            the interpreter that makes the tools' venv (default python3)
#   DIST_TOOLS_VENV   where the pinned build tools live (default target/dist-tools)
#   CARGO_TARGET_DIR  cargo's target dir, as usual (default target)
#   MMN_DIST_ZIG=0    skip zig and use the fallback below
# Fallback when the zig build fails: a plain `maturin build`, whose own auditwheel check gives the
# lowest manylinux tag this machine's glibc allows (this machine only, not manylinux2014).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
PYTHON=${PYTHON:-python3}
TOOLS=${DIST_TOOLS_VENV:-$ROOT/target/dist-tools}
REQS=$ROOT/scripts/requirements-dist.txt
DIST=$ROOT/dist
start=$(date +%s)

# The pinned tools, in their own venv (reinstalled only when requirements-dist.txt changes).
if ! cmp -s "$REQS" "$TOOLS/.requirements-dist.txt" 2>/dev/null; then
    echo "== build tools -> $TOOLS"
    rm -rf "$TOOLS"
    "$PYTHON" -m venv "$TOOLS"
    "$TOOLS/bin/python" -m pip install -q --upgrade pip
    "$TOOLS/bin/python" -m pip install -q -r "$REQS"
    cp "$REQS" "$TOOLS/.requirements-dist.txt"
fi
# maturin finds zig as `python3 -m ziglang`: the tools' venv must come first on PATH.
export PATH="$TOOLS/bin:$PATH"
echo "== maturin $(maturin --version | cut -d' ' -f2), zig $(python -m ziglang version)"

mkdir -p "$DIST"
rm -f "$DIST"/mmn_fast-*.whl "$DIST"/mmn_fast-*.tar.gz

built=""
if [ "${MMN_DIST_ZIG:-1}" != 0 ]; then
    echo "== wheel: maturin build --zig (manylinux2014)"
    if maturin build --release --locked --zig --compatibility manylinux2014 \
            -i "$TOOLS/bin/python" --out "$DIST"; then
        built=zig
    else
        echo "!! the zig build failed: falling back to a plain maturin build" >&2
    fi
fi
if [ -z "$built" ]; then
    echo "== wheel: maturin build (tag from maturin's own audit of this machine)"
    maturin build --release --locked -i "$TOOLS/bin/python" --out "$DIST"
    built=native
fi

echo "== sdist: maturin sdist"
maturin sdist --out "$DIST"

wheels=("$DIST"/mmn_fast-*.whl)
[ ${#wheels[@]} -eq 1 ] || { echo "expected one wheel in $DIST, got ${#wheels[@]}" >&2; exit 1; }
echo "== auditwheel show"
auditwheel show "${wheels[0]}"
echo "== built ($built) in $(( $(date +%s) - start ))s:"
ls -l "$DIST"/mmn_fast-*
