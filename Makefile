# tclearn — set-up, checks and benchmarks. Every target installs what it needs.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV   := .venv
PY     := $(VENV)/bin/python
PIP    := $(PY) -m pip install --disable-pip-version-check -q -c constraints.txt
NODE_MODULES := contracts/node_modules

.PHONY: demo test notebooks lint types contracts contracts-check bench install dev chain-tools browser-tools postgres-tools clean

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --disable-pip-version-check -q --upgrade pip

$(VENV)/.stamp-install: $(PY) pyproject.toml constraints.txt
	$(PIP) -e .
	touch $@

$(VENV)/.stamp-dev: $(VENV)/.stamp-install
	$(PIP) -e '.[dev]'
	touch $@

$(NODE_MODULES)/.stamp: contracts/package.json contracts/package-lock.json
	cd contracts && npm ci --no-audit --no-fund --loglevel=error
	touch $@

## A headless browser for the dashboard test: Debian's chromium (playwright drives it, never downloads one).
browser-tools:
	@command -v chromium >/dev/null || command -v chromium-browser >/dev/null || \
	  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium)

## A PostgreSQL server for the state suite: Debian's postgresql (the tests start their own cluster in a temp dir).
postgres-tools:
	@ls /usr/lib/postgresql/*/bin/postgres >/dev/null 2>&1 || \
	  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql)

install: $(VENV)/.stamp-install
dev: $(VENV)/.stamp-dev
chain-tools: $(NODE_MODULES)/.stamp

demo: install
	$(VENV)/bin/tclearn demo --out out/demo

lint: dev
	$(VENV)/bin/ruff check tclearn services tests bench
	$(VENV)/bin/ruff format --check tclearn services tests bench

types: dev
	$(VENV)/bin/mypy

## Recompile the contract and rewrite contracts/build/Coalition.json.
contracts: dev chain-tools
	$(PY) -m tclearn.ledger.compiler

## Fail if the committed artifact is not what the source compiles to.
contracts-check: dev chain-tools
	$(PY) -m tclearn.ledger.compiler --check

test: dev chain-tools browser-tools postgres-tools lint types contracts-check
	$(PY) -m pytest -q -p no:cacheprovider
	$(NBMAKE)

## Every notebook top to bottom in a fresh kernel (notebooks/README.md); each under 2 minutes, a cell under 100 s.
NBMAKE = $(PY) -m pytest -q -p no:cacheprovider --nbmake --nbmake-timeout=100 --timeout=120 notebooks/*.ipynb
notebooks: dev
	$(NBMAKE)

bench: dev chain-tools
	$(PY) bench/cli.py
	$(PY) bench/gas.py
	$(PY) bench/ledger_latency.py
	$(PY) bench/vault.py
	$(PY) bench/train.py
	$(PY) bench/coalition.py
	$(PY) bench/services.py
	$(PY) bench/he.py
	$(PY) bench/update_sizes.py
	$(PY) bench/attacks.py
	PYTHONPATH=. $(PY) bench/dp.py
	PYTHONPATH=. $(PY) bench/watermark.py
	PYTHONPATH=. $(PY) bench/active.py
	PYTHONPATH=. $(PY) bench/coding.py
	PYTHONPATH=. $(PY) bench/console.py

clean:
	rm -rf $(VENV) $(NODE_MODULES) .pytest_cache .mypy_cache .ruff_cache out
