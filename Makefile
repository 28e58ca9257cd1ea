# driftloop: the two commands a new user runs are `make demo` and `make test`.
# Both bootstrap uv (pip-installs it when missing) and the locked environment.
SHELL := /bin/bash
# uv on PATH, else uv as a Python module (pip-installed on first use).
UV := $(shell command -v uv 2>/dev/null || echo "python3 -m uv")
PYTEST_ARGS ?=
# `make test` runs the suite in parallel (pytest-xdist): much of it waits on servers booting
# (Prefect, bentoml serve, workers), so even 2 cores gain. Workers: cores + 1, at least 3 and
# at most 8 (PYTEST_WORKERS=0: one process). --dist loadfile keeps each test module on one
# worker, so a module's shared server or demo run (module-scoped fixtures) is built once, not
# once a worker. (Not loadgroup: with pytest 9.2 it silently ignores xdist_group marks,
# pytest-xdist issue 1386.)
PYTEST_WORKERS ?= $(shell n=$$(( $$(nproc 2>/dev/null || echo 2) + 1 )); echo $$(( n < 3 ? 3 : n > 8 ? 8 : n )))
DEMO_ARGS ?=

.PHONY: .uv-bootstrap demo test lint bench bench-smoke env sysdeps clean-state help

help:  ## list targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | sed 's/:.*## /\t/'

.uv-bootstrap:
	@$(UV) --version >/dev/null 2>&1 || { echo "uv not found: pip-installing it" >&2; \
	  python3 -m pip install --quiet uv || python3 -m pip install --quiet --user uv; }

# --compile-bytecode: where PYTHONDONTWRITEBYTECODE is set (CI boxes, most Docker images)
# Python would otherwise recompile every imported module from source in every process: 13 s
# of a flow-run start here, 5 s of a whylogs import. (Not in [tool.uv]: every `uv run` would
# then re-check 13k files.)
.venv/.synced: pyproject.toml uv.lock | .uv-bootstrap
	$(UV) sync --frozen --compile-bytecode
	@touch $@

# Our own modules' bytecode too (seconds): every flow run, worker and CLI call imports them.
env: .venv/.synced  ## create the locked environment
	@$(UV) run --frozen python -m compileall -q -j 0 driftloop flows tasks schemas bentos bench >/dev/null

demo: env  ## run the whole loop on the shipped Telco data, on local servers
	$(UV) run --frozen driftloop demo $(DEMO_ARGS)

# Debian packages the Prometheus and browser tests run (apt-get only when one is missing).
sysdeps:  ## system packages for the tests: prometheus (promtool), chromium (+ driver)
	@scripts/sysdeps.sh

test: env sysdeps  ## lint, then the whole test suite (unit, integration, end-to-end, bench smoke)
	$(UV) run --frozen ruff check .
	$(UV) run --frozen pytest -n $(PYTEST_WORKERS) --dist loadfile --no-loadscope-reorder $(PYTEST_ARGS)

lint: env  ## ruff check and format check
	$(UV) run --frozen ruff check .
	$(UV) run --frozen ruff format --check .

bench: env  ## every benchmark; writes BENCHMARKS.md and bench/results/
	$(UV) run --frozen python -m bench.run

bench-smoke: env  ## seconds-long harness check, no speed assertions
	$(UV) run --frozen python -m bench.run --quick

clean-state:  ## remove local state (.driftloop/)
	rm -rf .driftloop
