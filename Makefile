# One set of entry points for developers and CI (.ci/run calls `make lint test`).
PYTHON ?= python3
PIP := $(PYTHON) -m pip install --quiet --disable-pip-version-check

.PHONY: install demo test-deps test lint bench develop clean

# Build the Rust core and install the package (a release build, as users get it).
install:
	$(PIP) .

# The nova-compute flatten story: several processes, one lock, no server needed.
demo: install
	$(PYTHON) -m ferrolock demo

test-deps:
	$(PIP) -r tests/requirements.txt

# Every test: the Rust core's cargo tests, then the pytest suites against the installed wheel.
test: install test-deps
	cargo test --quiet
	$(PYTHON) -m pytest -q -p no:cacheprovider

lint: install
	$(PIP) ruff mypy typing_extensions
	cargo fmt --check
	cargo clippy --quiet --all-targets --features python -- -D warnings
	@# The core must stay free of Python: only src/python/ may speak PyO3.
	@! grep -rln pyo3 src --include='*.rs' | grep -v '^src/python/'
	$(PYTHON) -m ruff check python tests bench
	$(PYTHON) -m ruff format --check python tests bench
	$(PYTHON) -m mypy
	$(PYTHON) -m mypy --strict --ignore-missing-imports bench
	$(PYTHON) -m mypy.stubtest ferrolock._native

# ferrolock and oslo.concurrency side by side (see bench/README.md).
bench: install
	$(PIP) -r bench/requirements.txt
	$(PYTHON) bench/run.py

# Editable install for working on the Python side (rebuild after Rust changes).
develop:
	$(PIP) -e .

clean:
	cargo clean
