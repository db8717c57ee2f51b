# tokenbridge: `make demo` runs the whole story, `make test` runs every test.
# Both set up .venv and node_modules first when missing or stale (quick when up to date).
SHELL := /bin/bash
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
# two workers for two cores; each gets its own anvil and PostgreSQL database
PYTEST_ARGS ?= -n 2

.PHONY: setup demo test lint fmt compile check-artifacts bench soak clean web e2e-deps

WEB_JS := src/tokenbridge/entrypoints/web/static/app.js

setup: $(VENV)/.installed node_modules/.installed $(WEB_JS)

$(VENV)/.installed: pyproject.toml
	@test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e '.[dev]'
	@touch $@

node_modules/.installed: package.json package-lock.json
	npm ci --no-audit --no-fund --loglevel=error
	@touch $@

# the transparency page's script, bundled offline from web/src + node_modules (viem)
web: $(WEB_JS)

$(WEB_JS): node_modules/.installed scripts/build_web.mjs $(wildcard web/src/*.js) src/tokenbridge/adapters/chain/artifacts/CoinVault.json
	node scripts/build_web.mjs

# Debian's chromium for tests/e2e/test_web_page.py (never a browser downloaded through npm)
e2e-deps:
	command -v chromium >/dev/null || (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y chromium)

demo: setup
	$(BIN)/tokenbridge demo

test: setup
	$(BIN)/pytest $(PYTEST_ARGS)

lint: setup
	$(BIN)/ruff check src tests bench scripts
	$(BIN)/ruff format --check src tests bench scripts
	$(BIN)/mypy

fmt: setup
	$(BIN)/ruff format src tests bench scripts
	$(BIN)/ruff check --fix src tests bench scripts

compile: setup
	$(BIN)/python scripts/compile_contracts.py

check-artifacts: setup
	$(BIN)/python scripts/compile_contracts.py --check

bench: setup
	$(BIN)/python bench/gas.py

# the whole-system fault tests, longer: more worker kills, more anvil restarts, more traffic, on
# SQLite and PostgreSQL (override any of them: make soak TOKENBRIDGE_SOAK_KILLS=500)
TOKENBRIDGE_SOAK_KILLS ?= 100
TOKENBRIDGE_SOAK_CHAIN_RESTARTS ?= 10
TOKENBRIDGE_SOAK_SCALE ?= 4
TOKENBRIDGE_FAULT_BACKENDS ?= sqlite,postgres
soak: setup
	TOKENBRIDGE_SOAK_KILLS=$(TOKENBRIDGE_SOAK_KILLS) TOKENBRIDGE_SOAK_CHAIN_RESTARTS=$(TOKENBRIDGE_SOAK_CHAIN_RESTARTS) \
	TOKENBRIDGE_SOAK_SCALE=$(TOKENBRIDGE_SOAK_SCALE) TOKENBRIDGE_FAULT_BACKENDS=$(TOKENBRIDGE_FAULT_BACKENDS) \
	$(BIN)/pytest tests/faults/test_kill9.py tests/faults/test_anvil_restart.py -s $(PYTEST_ARGS)

clean:
	rm -rf $(VENV) node_modules .pytest_cache .mypy_cache .ruff_cache .hypothesis .tokenbridge
