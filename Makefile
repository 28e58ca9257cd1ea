# driftloop: the two commands a new user runs are `make demo` and `make test`.
# Both bootstrap uv (pip-installs it when missing) and the locked environment.
SHELL := /bin/bash
# uv on PATH, else uv as a Python module (pip-installed on first use).
UV := $(shell command -v uv 2>/dev/null || echo "python3 -m uv")
PYTEST_ARGS ?=
DEMO_ARGS ?=

.PHONY: .uv-bootstrap demo test lint bench bench-smoke env clean-state help

help:  ## list targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | sed 's/:.*## /\t/'

.uv-bootstrap:
	@$(UV) --version >/dev/null 2>&1 || { echo "uv not found: pip-installing it" >&2; \
	  python3 -m pip install --quiet uv || python3 -m pip install --quiet --user uv; }

.venv/.synced: pyproject.toml uv.lock | .uv-bootstrap
	$(UV) sync --frozen
	@touch $@

env: .venv/.synced  ## create the locked environment

demo: env  ## run the whole loop on the shipped Telco data, on local servers
	$(UV) run --frozen driftloop demo $(DEMO_ARGS)

test: env  ## lint, then the whole test suite (unit, integration, end-to-end, bench smoke)
	$(UV) run --frozen ruff check .
	$(UV) run --frozen pytest $(PYTEST_ARGS)

lint: env  ## ruff check and format check
	$(UV) run --frozen ruff check .
	$(UV) run --frozen ruff format --check .

bench: env  ## every benchmark; writes BENCHMARKS.md and bench/results/
	$(UV) run --frozen python -m bench.run

bench-smoke: env  ## seconds-long harness check, no speed assertions
	$(UV) run --frozen python -m bench.run --quick

clean-state:  ## remove local state (.driftloop/)
	rm -rf .driftloop
