#!/usr/bin/env bash
# Build the release artifacts into dist/:
#   - two abi3 wheels for this platform, tagged manylinux2014 (manylinux_2_17): cp311-abi3
#     (CPython >= 3.11) and cp312-abi3 (>= 3.12, where PyO3 calls Python callbacks with
#     vectorcall: ~11% fewer instructions per Python-callback invalidation); pip picks the
#     highest tag that fits. `maturin build --zig` with the Zig toolchain from PyPI's `ziglang`,
#     so no Docker is needed;
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

# One wheel per stable-ABI floor: the Cargo feature that sets it (pyproject.toml's default is
# abi3-py311; --features replaces pyproject's list) and `-i python3.MINOR`: maturin builds an
# abi3 wheel for a named interpreter that is not installed, but a version-specific one for an
# installed interpreter older than the floor.
ABI3_FEATURES="abi3-py311 abi3-py312"
built=""
for abi3 in $ABI3_FEATURES; do
    features=(--features "python,$abi3" -i "python3.${abi3#abi3-py3}")
    if [ "${MMN_DIST_ZIG:-1}" != 0 ] && [ "$built" != native ]; then
        echo "== wheel $abi3: maturin build --zig (manylinux2014)"
        if maturin build --release --locked --zig --compatibility manylinux2014 "${features[@]}" \
                --out "$DIST"; then
            built=zig
            continue
        fi
        echo "!! the zig build failed: falling back to a plain maturin build" >&2
    fi
    echo "== wheel $abi3: maturin build (tag from maturin's own audit of this machine)"
    maturin build --release --locked "${features[@]}" --out "$DIST"
    built=native
done

echo "== sdist: maturin sdist"
maturin sdist --out "$DIST"

wheels=("$DIST"/mmn_fast-*.whl)
[ ${#wheels[@]} -eq 2 ] || { echo "expected two wheels in $DIST, got ${#wheels[@]}" >&2; exit 1; }
for wheel in "${wheels[@]}"; do
    echo "== auditwheel show $(basename "$wheel")"
    auditwheel show "$wheel"
done
echo "== built ($built) in $(( $(date +%s) - start ))s:"
ls -l "$DIST"/mmn_fast-*
