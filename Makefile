# Two commands for a fresh clone: `make serve` and `make test`. Both create .venv when it is missing.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp
# axe-core (the accessibility engine the browser tests inject), from npm, kept inside the ignored venv.
AXE    := $(VENV)/npm/node_modules/axe-core/axe.min.js
HOST   ?= 127.0.0.1
PORT   ?= 7860

.PHONY: serve test lint typecheck pytest zoo bench clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade "pip>=24"
	$(BIN)/python -m pip install --quiet -e ".[dev]"
	touch $(STAMP)

$(AXE):
	npm install --silent --no-audit --no-fund --prefix $(VENV)/npm axe-core@4

serve: $(STAMP)
	$(BIN)/biaslab serve --host $(HOST) --port $(PORT)

lint: $(STAMP)
	$(BIN)/ruff check backend app tests
	$(BIN)/ruff format --check backend app tests

typecheck: $(STAMP)
	$(BIN)/mypy backend app

pytest: $(STAMP) $(AXE)
	$(BIN)/python -m pytest -ra $(PYTEST_ARGS)

test: lint typecheck pytest

zoo: $(STAMP)
	$(BIN)/biaslab zoo train --all

# Ratios measured side by side; writes bench/results.json and bench/RESULTS.md (under 10 minutes on 2 cores).
bench: $(STAMP)
	$(BIN)/biaslab bench --out bench $(BENCH_ARGS)

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache artifacts
