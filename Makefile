# Two commands do all the set-up on a fresh machine:
#   make serve   - install into .venv (first time) and run the server on http://127.0.0.1:8080
#   make test    - install into .venv (first time), run `make lint`, then the whole test suite
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

BENCH_STAMP := $(VENV)/.installed-bench

.PHONY: serve test lint bench bench-quick clean

# The browser tests (tests/browser) drive Debian's headless Chromium through chromedriver.
CHROMEDRIVER ?= /usr/bin/chromedriver
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

$(STAMP): pyproject.toml
	[ -x $(CHROMEDRIVER) ] || ($(SUDO) apt-get update && $(SUDO) apt-get install -y chromium chromium-driver)
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip setuptools
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

serve: $(STAMP)
	$(BIN)/workstream serve

# The checks (make lint) first, then the tests.
test: lint
	$(BIN)/pytest

# Benchmarks beside the peers (Dramatiq, Huey, Celery, RQ, procrastinate): writes docs/benchmarks.md.
$(BENCH_STAMP): $(STAMP)
	$(BIN)/pip install --quiet -e '.[dev,bench]'
	touch $(BENCH_STAMP)

bench: $(BENCH_STAMP)
	$(BIN)/python -m benchmarks run

bench-quick: $(BENCH_STAMP)
	$(BIN)/python -m benchmarks run --quick

# Lint, formatting and types; no tests.
lint: $(STAMP)
	$(BIN)/ruff check workstream tests
	$(BIN)/ruff format --check workstream tests
	$(BIN)/mypy workstream

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
