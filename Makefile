# Two entry points for a fresh machine (Rust and CPython present, nothing else):
#   make demo   build, install into .venv, run the device-mirror demo
#   make test   build, install, run every test (Rust and Python) and the short stress/bench checks
PYTHON ?= python3
VENV := .venv
VPY := $(VENV)/bin/python
SHARED_CONFORMANCE := ../shared/conformance
SOURCES := Cargo.toml Cargo.lock pyproject.toml $(shell find rust python -type f -not -name '*.so' -not -path '*/__pycache__/*')

.PHONY: demo test test-rust test-python test-short-runs bench bench-quick stress clean

$(VENV)/.installed: requirements-dev.txt $(SOURCES)
	test -x $(VPY) || $(PYTHON) -m venv $(VENV)
	$(VPY) -m pip install -q --upgrade pip
	$(VPY) -m pip install -q -r requirements-dev.txt
	VIRTUAL_ENV=$(abspath $(VENV)) $(VPY) -m maturin develop --release --locked -q
	touch $@

demo: $(VENV)/.installed
	$(VPY) -m mmn_fast demo

test: test-rust test-python test-short-runs

# Rust: unit, model and doc tests of the core, again with MMN_FAST_PORTABLE set (the walks'
# baseline copy, not the AVX2 one); its documentation (warnings are errors) and the example
# program that uses it without Python; the loom model check (bounded); the fuzz corpus replayed
# plus a short coverage-guided run (docs/reliability.md has the long commands).
test-rust:
	cargo fmt --check
	cargo clippy --locked --quiet --all-targets --features python -- -D warnings
	cargo test --locked --quiet
	MMN_FAST_PORTABLE=1 cargo test --locked --quiet
	RUSTDOCFLAGS="-D warnings" cargo doc --locked --quiet --no-deps
	cargo run --locked --quiet --example emulator_cache
	RUSTFLAGS="--cfg loom" LOOM_MAX_PREEMPTIONS=2 CARGO_TARGET_DIR=target/loom \
		cargo test --locked --release --quiet --test loom_protocol
	cd fuzz && CARGO_TARGET_DIR=../target/fuzz-replay cargo test --locked --release --quiet
	fuzz/run.sh 30

# Python: every suite (short stress included), the benchmarks as plain tests, the tree, model
# and rule suites again on the walks' baseline copy (MMN_FAST_PORTABLE), typing, the
# documentation site (strict: a broken link or reference fails), and the outside conformance
# suite when ../shared is present.
test-python: $(VENV)/.installed
	$(VPY) -m pytest tests/python benches -q -p no:cacheprovider --benchmark-disable
	MMN_FAST_PORTABLE=1 $(VPY) -m pytest tests/python/test_tree.py tests/python/test_model.py \
		tests/python/test_interval_rules.py -q -p no:cacheprovider
	$(VPY) -m mkdocs build --strict --quiet
	$(VPY) -m mypy python/mmn_fast examples
	$(VPY) -m ruff check python examples benches tests/python scripts
	$(VPY) -m mypy.stubtest mmn_fast --allowlist stubtest-allowlist.txt
	@if [ -d $(SHARED_CONFORMANCE) ]; then \
		cd $(SHARED_CONFORMANCE) && $(abspath $(VPY)) -m pytest -q -p no:cacheprovider --timeout=60 . ; \
	else echo "($(SHARED_CONFORMANCE) not present: outside conformance suite skipped)"; fi

# Short versions of the long runs: the peer comparison, the Unicorn benchmark, and the
# instruction-count regression guard.
test-short-runs: $(VENV)/.installed
	$(VPY) -m mmn_fast bench --quick --json target/bench-quick.json
	$(VPY) benches/bench_unicorn.py --quick
	$(VPY) benches/interleaved_queries.py --quick
	$(VPY) benches/callgrind_guard.py

# The full peer comparison (a few minutes) and its quick form.
bench: $(VENV)/.installed
	$(VPY) benches/compare.py --json docs/bench.json --plot docs/bench.png

bench-quick: $(VENV)/.installed
	$(VPY) benches/compare.py --quick

# The long threaded stress run (10 minutes).
stress: $(VENV)/.installed
	MMN_STRESS_SECONDS=600 $(VPY) -m pytest tests/python/test_stress.py -q -m stress

clean:
	rm -rf $(VENV) target

# Release artifacts: `make dist` builds two manylinux2014 abi3 wheels, cp311 and cp312 (maturin
# --zig, with the Zig toolchain from PyPI's ziglang; no Docker) and an sdist into dist/;
# `make test-dist` rebuilds them, then installs them into fresh venvs on every CPython it finds
# or fetches from Debian and runs the suites against the installed wheel.
.PHONY: dist test-dist
dist:
	PYTHON=$(PYTHON) bash scripts/build-dist.sh

test-dist: dist
	PYTHON=$(PYTHON) bash scripts/test-dist.sh
