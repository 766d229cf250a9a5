#!/usr/bin/env bash
# Test the built artifacts in dist/ (scripts/build-dist.sh) as a user gets them:
#   1. each wheel's tags and contents (cp311-abi3 and cp312-abi3, manylinux, py.typed, stubs,
#      the .so, no tests);
#   2. on every CPython found (below), a FRESH venv in a temp dir where pip itself picks the
#      wheel from dist/ (cp312-abi3 on 3.12 and later, cp311-abi3 on 3.11; checked), the
#      `test` and `unicorn` extras' pins (requirements-dev.txt), `mmn_fast.__version__` ==
#      Cargo.toml's version, then the project's pytest suites (from a copy, so nothing of
#      python/ can be imported) and ../shared/conformance (also from a copy), each asserting
#      that the mmn_fast it imported is the installed one in site-packages;
#   3. another fresh venv, `pip install dist/mmn_fast-*.tar.gz` (a build from source), imported
#      and smoke-tested.
# The interpreters: PYTHON (default python3, also used for steps 1 and 3), then for each of
# 3.11 .. 3.14 a working python3.MINOR on PATH or pyenv's newest 3.MINOR.x, and for 3.13 / 3.14
# where neither has one, CPython fetched from Debian's newer suites by scripts/debian-pythons.sh
# (MMN_DIST_FETCH_PYTHONS=0 skips that). No registry this project reaches has CPython 3.12: it
# is tested only where it is installed. MMN_DIST_EXTRA_PYTHONS (space-separated paths) replaces
# that search. MMN_DIST_KEEP=1 keeps the temp dir.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
PYTHON=${PYTHON:-python3}
SHARED_CONFORMANCE=$ROOT/../shared/conformance
start=$(date +%s)
unset PYTHONPATH VIRTUAL_ENV MMN_MODULE PYTHONHOME
export PYTHONDONTWRITEBYTECODE=1 PIP_DISABLE_PIP_VERSION_CHECK=1

shopt -s nullglob
wheels=("$ROOT"/dist/mmn_fast-*.whl)
sdists=("$ROOT"/dist/mmn_fast-*.tar.gz)
shopt -u nullglob
if [ ${#wheels[@]} -ne 2 ] || [ ${#sdists[@]} -ne 1 ]; then
    echo "need exactly two wheels and one sdist in dist/ (run \`make dist\` first)" >&2
    exit 1
fi
SDIST=${sdists[0]}
VERSION=$(awk -F'"' '/^\[/{p = ($0 == "[package]")} p && /^version *=/{print $2; exit}' Cargo.toml)
[ -n "$VERSION" ] || { echo "no version in Cargo.toml [package]" >&2; exit 1; }

TMP=$(mktemp -d "${TMPDIR:-/tmp}/mmn-test-dist.XXXXXX")
if [ "${MMN_DIST_KEEP:-0}" = 1 ]; then echo "(keeping $TMP)"; else trap 'rm -rf "$TMP"' EXIT; fi

echo "== 1. wheels $(cd dist && echo mmn_fast-*.whl) (Cargo version $VERSION)"
for wheel in "${wheels[@]}"; do "$PYTHON" -m zipfile -l "$wheel"; done
"$PYTHON" - "$VERSION" "${wheels[@]}" <<'PY'
import re, sys, zipfile
version, paths = sys.argv[1], sys.argv[2:]
floors = []
for path in paths:
    names = zipfile.ZipFile(path).namelist()
    dist_info = f"mmn_fast-{version}.dist-info"
    wheel_meta = zipfile.ZipFile(path).read(f"{dist_info}/WHEEL").decode()
    tags = re.findall(r"^Tag: (\S+)$", wheel_meta, re.M)
    print(path.rsplit("/", 1)[-1], "tags:", ", ".join(tags))
    floor = tags[0].split("-")[0] if tags else None
    assert tags and all(t.startswith(f"{floor}-abi3-") for t in tags), tags
    assert any("manylinux" in t for t in tags), tags
    assert f"mmn_fast-{version}-{floor}-abi3-" in path, (path, version)
    floors.append(floor)
    for need in ("mmn_fast/py.typed", "mmn_fast/_mmn_fast.pyi", "mmn_fast/__init__.py",
                 "mmn_fast/_version.py", "mmn_fast/unicorn.py"):
        assert need in names, f"{need} missing from {path}"
    assert [n for n in names if re.fullmatch(r"mmn_fast/_mmn_fast\.abi3\.so", n)], "no native module"
    bad = [n for n in names if re.search(r"(^|/)(tests?|conftest\.py|test_[^/]*\.py|benches)(/|$)", n)
           or n.endswith(".rs")]
    assert not bad, f"{path} ships tests or sources: {bad}"
assert sorted(floors) == ["cp311", "cp312"], floors
print("wheel contents: OK (py.typed, _mmn_fast.pyi, the abi3 .so; no tests), cp311 and cp312")
PY

# The plugin that makes every pytest run prove which mmn_fast it tests.
mkdir -p "$TMP/plugin"
cat > "$TMP/plugin/mmn_dist_check.py" <<'PY'
"""pytest plugin (test-dist only): the mmn_fast under test is the installed one."""
import os
import sys
import sysconfig


def _where():
    import mmn_fast
    import mmn_fast._mmn_fast as native
    sites = {os.path.realpath(sysconfig.get_paths()[k]) for k in ("purelib", "platlib")}
    files = [os.path.realpath(mmn_fast.__file__), os.path.realpath(native.__file__)]
    wrong = [f for f in files if not any(f.startswith(s + os.sep) for s in sites)]
    return files[0], mmn_fast.__version__, wrong


def pytest_configure(config):
    _file, _version, wrong = _where()
    if wrong:
        raise SystemExit(f"mmn_fast is not the installed one: {wrong}")


def pytest_report_header(config):
    file, version, _ = _where()
    return f"mmn_fast {version} under test: {file}"


def pytest_sessionfinish(session, exitstatus):
    file, _version, wrong = _where()
    if wrong or "site-packages" not in file:
        print(f"\nmmn_fast was not the installed one at the end: {wrong}", file=sys.stderr)
        session.exitstatus = 1
PY

check_installed() {  # $1: venv python; run from $TMP, where no mmn_fast source is
    local py=$1 got
    got=$(cd "$TMP" && "$py" -c "import mmn_fast; print(mmn_fast.__version__)")
    echo "mmn_fast.__version__ = $got"
    [ "$got" = "$VERSION" ] || { echo "version $got != Cargo.toml's $VERSION" >&2; exit 1; }
    (cd "$TMP" && "$py" - <<'PY')
import os, sysconfig
import mmn_fast, mmn_fast._mmn_fast as native
site = os.path.realpath(sysconfig.get_paths()["platlib"])
for f in (mmn_fast.__file__, native.__file__):
    assert os.path.realpath(f).startswith(site + os.sep), f"{f} is not under {site}"
print("imported from", os.path.dirname(mmn_fast.__file__))
mm = mmn_fast.MM()
subs = [mm.insert_interval_notifier(a, 0x100, tag=a) for a in range(0x1000, 0x2000, 0x100)]
assert mm.invalidate_many([0x1050], [0x1150]) == 2
assert sorted(mm.drain_invalidated()) == [0x1000, 0x1100]
print("smoke test: OK")
PY
}

# The suites run from a copy that has no python/ directory (tests/python/test_readme.py,
# test_docs_rules.py and friends read README.md, CHANGELOG.md, docs/ and examples/ relative to
# the tests, so those come along).
mkdir -p "$TMP/src/tests" "$TMP/src/benches"
cp -r tests/python "$TMP/src/tests/python"
cp benches/*.py "$TMP/src/benches/" 2>/dev/null || true
cp -r README.md CHANGELOG.md pyproject.toml "$TMP/src/"
for d in docs examples; do [ -d "$d" ] && cp -r "$d" "$TMP/src/"; done
find "$TMP/src" \( -name __pycache__ -o -name .hypothesis -o -name '*.so' \) -prune -exec rm -rf {} +
[ ! -e "$TMP/src/python" ] && [ ! -e "$TMP/src/mmn_fast" ]
if [ -d "$SHARED_CONFORMANCE" ]; then
    mkdir -p "$TMP/shared"
    cp -r "$SHARED_CONFORMANCE" "$TMP/shared/conformance"
    find "$TMP/shared" \( -name __pycache__ -o -name .hypothesis -o -name .pytest_cache \) \
        -prune -exec rm -rf {} +
fi
grep -v '^maturin' requirements-dev.txt > "$TMP/requirements-test.txt"

# The interpreters to test the wheels on (see the header).
interpreters=("$PYTHON")
if [ -n "${MMN_DIST_EXTRA_PYTHONS:-}" ]; then
    read -r -a extra <<< "$MMN_DIST_EXTRA_PYTHONS"
    interpreters+=("${extra[@]}")
else
    missing=()
    for minor in 11 12 13 14; do
        found=""
        # On PATH (a pyenv shim that has no such version fails: it is skipped), else pyenv's
        # newest 3.MINOR.x.
        for py in "$(command -v "python3.$minor" || true)" \
                $(ls -d "${PYENV_ROOT:-$HOME/.pyenv}"/versions/3."$minor".*/bin/python3."$minor" 2>/dev/null | sort -V -r); do
            if [ -n "$py" ] && "$py" -c 'import venv' >/dev/null 2>&1; then found=$py; break; fi
        done
        if [ -n "$found" ]; then interpreters+=("$found"); else missing+=("3.$minor"); fi
    done
    # Debian's newer suites for the rest (3.13: trixie, 3.14: sid; no suite has 3.12).
    specs=()
    for v in "${missing[@]}"; do
        case $v in 3.13) specs+=(3.13:trixie) ;; 3.14) specs+=(3.14:sid) ;; esac
    done
    if [ "${MMN_DIST_FETCH_PYTHONS:-1}" != 0 ] && [ ${#specs[@]} -gt 0 ]; then
        while read -r py; do interpreters+=("$py"); done < <(bash scripts/debian-pythons.sh \
            "${MMN_DIST_PYTHONS_DIR:-$ROOT/target/debian-pythons}" "${specs[@]}" || true)
    fi
fi
tested=()

test_wheels_on() {  # $1: interpreter; runs step 2 with it unless its version was tested already
    local py=$1 version name venv vpy want got
    version=$("$py" -c 'import sys; print("%d.%d" % sys.version_info[:2])')
    for v in "${tested[@]}"; do [ "$v" = "$version" ] && return 0; done
    name=venv-wheel-$version
    venv=$TMP/$name
    echo "== 2. CPython $version ($py): fresh venv, the wheel pip picks, [test,unicorn]"
    # Debian's interpreters come without ensurepip: then pip is bootstrapped from its wheel.
    if ! "$py" -m venv "$venv" >/dev/null 2>&1; then
        rm -rf "$venv"
        "$py" -m venv --without-pip "$venv"
        mkdir -p "$TMP/pip-wheel"
        [ -n "$(ls "$TMP"/pip-wheel/pip-*.whl 2>/dev/null)" ] \
            || "$PYTHON" -m pip download -q --no-deps -d "$TMP/pip-wheel" pip
        local pip_wheel
        pip_wheel=$(ls "$TMP"/pip-wheel/pip-*.whl)
        "$venv/bin/python" "$pip_wheel/pip" install -q --no-index "$pip_wheel"
    fi
    vpy=$venv/bin/python
    "$vpy" -m pip install -q --upgrade pip
    # pip chooses between the two wheels by itself: the highest abi3 floor this Python meets.
    "$vpy" -m pip install -q --no-index --no-deps --find-links "$ROOT/dist" "mmn_fast==$VERSION"
    "$vpy" -m pip install -q -r "$TMP/requirements-test.txt" "mmn_fast[test,unicorn]==$VERSION" \
        --find-links "$ROOT/dist"
    want=$("$vpy" -c 'import sys; print("cp312" if sys.version_info >= (3, 12) else "cp311")')
    got=$(cd "$TMP" && "$vpy" -c 'import importlib.metadata as m, re
print(re.search(r"^Tag: (\S+)", m.distribution("mmn_fast").read_text("WHEEL"), re.M)[1])')
    echo "installed wheel tag: $got"
    [[ $got == "$want-abi3-"* ]] || { echo "pip installed the $got wheel on $version, want $want" >&2; exit 1; }
    check_installed "$vpy"

    # The same selection as `make test-python` (tests/python and benches/).
    echo "== 2a. CPython $version: pytest tests/python benches (against the installed wheel)"
    (cd "$TMP/src" && PYTHONPATH="$TMP/plugin" "$vpy" -m pytest tests/python benches -q -rs \
        -p no:cacheprovider --benchmark-disable -p mmn_dist_check)
    if [ -d "$TMP/shared/conformance" ]; then
        echo "== 2b. CPython $version: ../shared/conformance (against the installed wheel)"
        (cd "$TMP/shared/conformance" && PYTHONPATH="$TMP/plugin" "$vpy" -m pytest -q -rs \
            -p no:cacheprovider --timeout=60 -p mmn_dist_check .)
    else
        echo "(../shared/conformance not present: outside conformance suite skipped)"
    fi
    tested+=("$version")
}

for py in "${interpreters[@]}"; do test_wheels_on "$py"; done

echo "== 3. fresh venv + pip install $(basename "$SDIST") (build from source)"
"$PYTHON" -m venv "$TMP/venv-sdist"
SPY=$TMP/venv-sdist/bin/python
"$SPY" -m pip install -q --upgrade pip
sdist_start=$(date +%s)
"$SPY" -m pip install "$SDIST" 2>&1 | tail -3
echo "sdist built and installed in $(( $(date +%s) - sdist_start ))s"
check_installed "$SPY"

echo "== test-dist: all passed in $(( $(date +%s) - start ))s; the wheels were tested on CPython ${tested[*]}"
for v in 3.11 3.12 3.13 3.14; do
    [[ " ${tested[*]} " == *" $v "* ]] || echo "   (no CPython $v was found: not tested there)"
done
