# Entry points for developers and CI (`make help` lists them; .ci/run calls `make lint test`).
#
# Everything runs in a virtual environment of its own, $(VENV) (ignored by git), made on first
# use from $(PYTHON): the interpreter on PATH is never installed into (Debian's refuses anyway,
# PEP 668). `make test` and `make demo` build the release wheel users get (fat LTO, the profile
# pyproject.toml names); `make develop` is the fast build for iterating.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip install --quiet --disable-pip-version-check
PYTEST_ARGS ?=

.DEFAULT_GOAL := help
.PHONY: help venv install develop demo test-deps test test-rust test-py lint bench wheel sdist \
	clean distclean

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | sed 's/:.*## /\t/' | expand -t 14

# python3 -m venv needs ensurepip, which Debian ships apart (python3.X-venv): the test services'
# scripts install what they miss the same way, so do it here too when we may, else say how.
$(PY):
	@$(PYTHON) -c 'import sys; assert sys.version_info >= (3, 9), "ferrolock needs Python >= 3.9"'
	@if ! $(PYTHON) -m venv $(VENV) >/dev/null 2>&1; then \
		rm -rf $(VENV); \
		pkg=$$($(PYTHON) -c 'import sys; print("python%d.%d-venv" % sys.version_info[:2])'); \
		if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
			echo "make: $(PYTHON) cannot make a virtual environment; installing $$pkg"; \
			apt-get -o DPkg::Lock::Timeout=900 install -y -q $$pkg >/dev/null || \
			{ apt-get update -q >/dev/null && apt-get install -y -q $$pkg >/dev/null; } || exit 1; \
			$(PYTHON) -m venv $(VENV) || exit 1; \
		else \
			echo "make: $(PYTHON) -m venv failed; on Debian/Ubuntu: sudo apt-get install $$pkg" >&2; \
			exit 1; \
		fi; \
	fi
	@echo "make: virtual environment $(VENV) ready ($$($(PY) --version))"

venv: $(PY) ## make the virtual environment .venv/ (automatic for every target)

install: $(PY) ## build the release wheel (LTO) and install it into .venv/
	$(PIP) .

develop: $(PY) ## fast build for iterating: debug profile, editable install into .venv/
	$(PIP) 'maturin>=1.5,<2'
	$(VENV)/bin/maturin develop --profile dev --quiet

demo: install ## the nova-compute flatten story: several processes, one lock, no server
	$(PY) -m ferrolock demo

test-deps: $(PY)
	$(PIP) -r tests/requirements.txt

test: install test-rust test-py ## every test: cargo test, then pytest against the release build

test-rust: ## the Rust core's cargo tests (the MySQL ones against a throwaway MariaDB)
	python3 tests/services/mariadb.py -- cargo test --quiet

# Tests whatever ferrolock .venv/ holds (`make develop` or `make install`), building the
# release one if there is none. PYTEST_ARGS='-k name tests/test_x.py' narrows it.
test-py: test-deps ## pytest suites against the ferrolock installed in .venv/
	@$(PY) -c 'import ferrolock._native' 2>/dev/null || $(MAKE) --no-print-directory install
	$(PY) -m pytest -q -p no:cacheprovider $(PYTEST_ARGS)

lint: install test-deps ## cargo fmt/clippy, ruff, mypy --strict, stubtest (mypy reads the test deps' types)
	$(PIP) ruff mypy typing_extensions
	cargo fmt --check
	cargo clippy --quiet --all-targets --features python -- -D warnings
	@# The core must stay free of Python: only src/python/ may speak PyO3.
	@! grep -rln pyo3 src --include='*.rs' | grep -v '^src/python/'
	$(PY) -m ruff check python tests bench
	$(PY) -m ruff format --check python tests bench
	$(PY) -m mypy
	$(PY) -m mypy --strict --ignore-missing-imports bench
	$(PY) -m mypy.stubtest ferrolock._native

bench: install ## ferrolock and oslo.concurrency side by side (see bench/README.md)
	$(PIP) -r bench/requirements.txt
	$(PY) bench/run.py

# PyPI takes manylinux wheels only. Linking with zig against glibc 2.17's symbols makes one
# here without a manylinux container; maturin checks the manylinux2014 policy while tagging and
# auditwheel, the tool PyPI's rule comes from, confirms it. zig links differently, so it keeps
# its own cargo cache (else it and `make install` would rebuild each other's); maturin finds zig
# as `python3 -m ziglang` on PATH, hence .venv/bin first.
wheel: $(PY) ## build the release abi3 wheel (manylinux2014) into dist/, checked with auditwheel
	$(PIP) 'maturin>=1.5,<2' auditwheel ziglang
	PATH="$(abspath $(VENV))/bin:$$PATH" CARGO_TARGET_DIR=target/manylinux \
		$(VENV)/bin/maturin build --release --zig \
		--compatibility manylinux2014 --out dist
	$(VENV)/bin/auditwheel show dist/ferrolock-*-abi3-manylinux2014*.whl

sdist: $(PY) ## build the source distribution into dist/
	$(PIP) 'maturin>=1.5,<2'
	$(VENV)/bin/maturin sdist --out dist

clean: ## remove build output (cargo's target/, dist/)
	cargo clean
	rm -rf dist

distclean: clean ## also remove .venv/
	rm -rf $(VENV)
