# Two commands: `make run` serves the engine on its embedded default, `make test` passes the suite.
# Both create the virtualenv and install what they need on first use.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
RUN_STAMP := $(VENV)/.installed-runtime
UV := $(BIN)/uv
UV_REQ := uv>=0.13.8,<0.14
INFRA := .venv-infra
N ?= 1000
# axe-core (the browser tests' accessibility check) from the npm registry; not committed.
AXE_VERSION := 4.14.1
AXE := .cache/axe/node_modules/axe-core/axe.min.js

.PHONY: system-deps run test lint fmt unit integration e2e contract browser walkthrough bench-booking bench-ws \
	chaos bench-login bench-waitlist clean lock check-infra axe screenshots demo loadtest bench-store

# uv installs the runtime in seconds where pip took half a minute or more (README "Your first
# hour" has the figures); pip only bootstraps uv, in the dev extra's range. The venv gets no
# pip of its own (ensurepip was the slowest step left): $(PY)'s pip installs uv into it, or,
# where $(PY) has no pip, the venv's own ensurepip does.
$(UV):
	test -x $(BIN)/python || $(PY) -m venv --without-pip $(VENV)
	$(PY) -m pip --python $(BIN)/python install --quiet '$(UV_REQ)' || \
		{ $(BIN)/python -m ensurepip --default-pip && $(BIN)/python -m pip install --quiet '$(UV_REQ)'; }

# The dev extras include the walkthrough's, so the runtime stamp is met as well.
$(STAMP): pyproject.toml | $(UV)
	$(UV) pip install --quiet --python $(BIN)/python -e '.[dev]'
	touch $(STAMP) $(RUN_STAMP)

# `make run`, `make demo` and `make walkthrough` install the runtime dependencies and the
# walkthrough's client (no package the runtime lacks); `make test` (through lint) adds the dev extras.
$(RUN_STAMP): pyproject.toml | $(UV)
	$(UV) pip install --quiet --python $(BIN)/python -e '.[walkthrough]'
	touch $(RUN_STAMP)

run: $(RUN_STAMP)
	$(BIN)/healthmed serve

# The image's locked runtime dependencies (hashes): rerun after changing [project] dependencies.
lock: $(STAMP)
	$(BIN)/uv pip compile pyproject.toml --quiet --generate-hashes --universal \
		--python-version 3.11 --custom-compile-command "make lock" -o requirements.lock

# checkov pins boto3 and others against ours, so it gets a virtualenv of its own.
$(INFRA)/.installed: | $(STAMP)
	$(BIN)/uv venv --quiet --allow-existing --python $(PY) $(INFRA)
	$(BIN)/uv pip install --quiet --python $(INFRA)/bin/python checkov==3.3.30
	touch $(INFRA)/.installed

# Terraform's static checks (checkov, zero failed checks); tests/infra covers the rest.
check-infra: $(INFRA)/.installed
	$(INFRA)/bin/checkov --quiet --compact --skip-download --framework terraform -d infra/terraform

# The demo cast (doctors, patients, a confirmed and a requested appointment, a shared record),
# its logins printed, then the server on the same data directory.
demo: $(RUN_STAMP)
	$(BIN)/healthmed seed --demo
	$(BIN)/healthmed serve

lint: $(STAMP)
	$(BIN)/ruff check engine gateway tests loadtest
	$(BIN)/ruff format --check engine gateway tests loadtest
	$(BIN)/mypy
	$(BIN)/hadolint Dockerfile

fmt: $(STAMP)
	$(BIN)/ruff format engine gateway tests loadtest
	$(BIN)/ruff check --fix engine gateway tests loadtest

# Debian packages the suite needs (redis-server, chromium, npm, kubectl), apt-get'd when missing.
system-deps:
	bash .ci/system-deps

# Branch coverage of engine and gateway across every process the tests start (the servers
# too: pyproject.toml [tool.coverage.run]), combined, and failing under its floor (fail_under).
test: system-deps lint check-infra $(AXE)
	$(BIN)/pytest -q --cov --cov-report=term

unit: $(STAMP)
	$(BIN)/pytest -q tests/unit

integration: $(STAMP)
	$(BIN)/pytest -q tests/integration

e2e: $(STAMP)
	$(BIN)/pytest -q tests/e2e

contract: $(STAMP)
	$(BIN)/pytest -q tests/contract

browser: $(STAMP) $(AXE)
	$(BIN)/pytest -q tests/browser

# The README's story against a running server (`make demo` or `make run` in another terminal).
walkthrough: $(RUN_STAMP)
	$(BIN)/python docs/walkthrough.py $(URL)

$(AXE):
	npm install --prefix .cache/axe --no-save --no-audit --no-fund --loglevel=error axe-core@$(AXE_VERSION)

axe: $(AXE)

# Desktop and phone screenshots of the main pages, taken by the browser tests (docs/screenshots).
screenshots: $(STAMP) $(AXE)
	HEALTHMED_SCREENSHOTS=docs/screenshots $(BIN)/pytest -q tests/browser

bench-login: $(STAMP)
	$(BIN)/python loadtest/bench_login.py

bench-booking: $(STAMP)
	$(BIN)/python loadtest/bench_booking.py

# 10,000 patients waiting for one doctor: hand-over latency, booking with and without a waitlist.
bench-waitlist: $(STAMP)
	$(BIN)/python loadtest/bench_waitlist.py

bench-store: $(STAMP)
	$(BIN)/python loadtest/bench_store.py

# The locust mix on this machine: private redis-server, WORKERS gateway processes, the seed,
# distributed headless locust, then the end state checked through the API (loadtest/README.md).
USERS ?= 200
MINUTES ?= 1
WORKERS ?= 2
loadtest: $(STAMP)
	$(BIN)/python loadtest/run_locust.py --users $(USERS) --minutes $(MINUTES) --workers $(WORKERS) $(LOADTEST_ARGS)

bench-ws: $(STAMP)
	$(BIN)/python loadtest/ws_swarm.py -n $(N)

chaos: $(STAMP)
	$(BIN)/python loadtest/chaos_redis.py

clean:
	rm -rf $(VENV) $(INFRA) .pytest_cache .mypy_cache .ruff_cache .cache/axe
