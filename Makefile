# GPUBROKER: `make run` serves the product, `make test` checks everything. Both set themselves up.
SHELL := /bin/bash
.DEFAULT_GOAL := help

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# cargo test links the PyO3 crate against libpython; find it where this interpreter lives.
PY_LIBDIR := $(shell $(PYTHON) -c "import sysconfig; print(sysconfig.get_config_var('LIBDIR'))" 2>/dev/null)

TEST_DATABASE_URL ?= postgres://postgres@127.0.0.1:5432/test
TEST_REDIS_URL ?= redis://127.0.0.1:6379/1
export TEST_DATABASE_URL TEST_REDIS_URL

.PHONY: help install run test test-rust test-python test-e2e bench chromium wrk clean

help:
	@echo "make run    build, migrate, load the sandbox catalog and serve http://127.0.0.1:8000"
	@echo "make test   cargo test, pytest on PostgreSQL + Redis, Playwright journeys in Chromium"
	@echo "make bench  benchmarks printed as ratios against baselines measured in the same run"

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip "maturin>=1.9.4,<2"

# One editable install builds corecalc (maturin, release) and installs every Python dependency.
$(STAMP): $(BIN)/python pyproject.toml Cargo.toml Cargo.lock $(wildcard corecalc/src/*.rs)
	PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/pip install --quiet --no-build-isolation -e ".[test]"
	@touch $@

install: $(STAMP)

run: install
	$(BIN)/python manage.py migrate --noinput
	$(BIN)/python manage.py load_catalog
	$(BIN)/python manage.py serve

test: test-rust test-python test-e2e

test-rust: install
	PYO3_PYTHON="$(CURDIR)/$(BIN)/python" LD_LIBRARY_PATH="$(PY_LIBDIR)" cargo test --quiet

test-python: install
	$(BIN)/python -m pytest

test-e2e: install chromium
	DJANGO_ALLOW_ASYNC_UNSAFE=true $(BIN)/python -m pytest -c e2e/pytest.ini e2e

# Debian's Chromium for Playwright (never `playwright install`: it downloads, and fails here).
chromium:
	@if [ ! -x /usr/bin/chromium ]; then \
		if [ "$$(id -u)" != 0 ]; then echo "Chromium is missing: run 'apt-get install -y chromium' as root" >&2; exit 1; fi; \
		echo "Installing Debian's chromium..."; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; \
	fi

# wrk drives the HTTP benchmark (bench/bench_http.py).
wrk:
	@if ! command -v wrk >/dev/null; then \
		if [ "$$(id -u)" != 0 ]; then echo "wrk is missing: run 'apt-get install -y wrk' as root" >&2; exit 1; fi; \
		echo "Installing wrk..."; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq wrk >/dev/null; \
	fi

bench: install wrk
	PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/pip install --quiet --no-build-isolation -e ".[test,bench]"
	$(BIN)/python -m bench

clean:
	rm -rf $(VENV) target var e2e/artifacts
