# Two commands: `make run` serves the engine on its embedded default, `make test` passes the suite.
# Both create the virtualenv and install what they need on first use.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
N ?= 1000

.PHONY: run test lint fmt unit integration e2e contract browser walkthrough bench-booking bench-ws bench-login clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

run: $(STAMP)
	$(BIN)/healthmed serve

lint: $(STAMP)
	$(BIN)/ruff check engine gateway tests loadtest
	$(BIN)/ruff format --check engine gateway tests loadtest
	$(BIN)/mypy

fmt: $(STAMP)
	$(BIN)/ruff format engine gateway tests loadtest
	$(BIN)/ruff check --fix engine gateway tests loadtest

test: lint
	$(BIN)/pytest -q

unit: $(STAMP)
	$(BIN)/pytest -q tests/unit

integration: $(STAMP)
	$(BIN)/pytest -q tests/integration

e2e: $(STAMP)
	$(BIN)/pytest -q tests/e2e

contract: $(STAMP)
	$(BIN)/pytest -q tests/contract

browser: $(STAMP)
	$(BIN)/pytest -q tests/browser

walkthrough: $(STAMP)
	$(BIN)/python docs/walkthrough.py $(URL)

bench-login: $(STAMP)
	$(BIN)/python loadtest/bench_login.py

bench-booking: $(STAMP)
	$(BIN)/python loadtest/bench_booking.py

bench-ws: $(STAMP)
	$(BIN)/python loadtest/ws_swarm.py -n $(N)

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
