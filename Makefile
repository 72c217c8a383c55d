# Two commands do everything on a fresh Debian/Ubuntu machine with Python 3.11+:
#   make demo   set up what is missing, then compute verified envelopes of the IEEE European LV feeder
#   make test   set up what is missing, then run the whole test suite
VENV ?= .venv
PY := $(VENV)/bin/python
NFCA := $(VENV)/bin/nfca

.PHONY: setup demo lint test test-fast bench clean

setup:
	@bash scripts/setup.sh

demo: setup
	$(NFCA) envelopes feeders/ieee_eulv/Master.dss --out results/ieee_eulv --method optimal --method fair
	$(NFCA) powerflow feeders/ieee_eulv/Master.dss --json

lint: setup
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

test: lint
	$(PY) -m pytest -q -p no:cacheprovider

test-fast: setup
	$(PY) -m pytest -q -p no:cacheprovider -m "not slow"

bench: setup
	$(PY) benchmarks/run.py envelopes reduction scaling cli

clean:
	rm -rf results .pytest_cache
