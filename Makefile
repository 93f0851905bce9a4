# One entry point for everything: `make run` (the stack), `make check` (lint, types, tests).
VENV ?= .venv
BIN := $(VENV)/bin
PYTHON ?= python3

.PHONY: setup redis run demo test test-fast lint types docs docs-config rules check bench bench-push bench-memory bench-replicas bench-accounts bench-lease bench-receiver bench-freshness bench-reconcile clean

$(BIN)/.installed: pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --disable-pip-version-check -c constraints.txt -e '.[dev]'
	touch $@

setup: $(BIN)/.installed

redis: setup
	scripts/ensure-redis

run: setup redis
	$(BIN)/esms-callbacks run

demo: setup redis
	$(BIN)/esms-callbacks demo

lint: setup
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

types: setup
	$(BIN)/mypy .

# Tests run on TEST_WORKERS pytest-xdist workers (most wait on sockets and subprocesses, so
# more workers than cores pay), each on a Redis database of its own: D, D+1, ... where D is
# ESMS_TEST_REDIS_URL's (tests/isolation.py); worksteal: a worker waiting for one of the three
# places for slow tests has its queued tests taken by the others. Then the serial tests, alone.
TEST_WORKERS ?= 4
TEST_REDIS := ESMS_TEST_REDIS_URL=$${ESMS_TEST_REDIS_URL:-redis://127.0.0.1:6379/12}

test: setup
	$(TEST_REDIS) scripts/ensure-redis
	scripts/ensure-postgres
	$(TEST_REDIS) $(BIN)/pytest -q -n $(TEST_WORKERS) --dist worksteal -m 'not serial'
	$(TEST_REDIS) $(BIN)/pytest -q -m serial

# Everything not marked slow (no worker subprocesses, no thousands of RefIds): for quick loops.
test-fast: setup
	$(TEST_REDIS) scripts/ensure-redis
	scripts/ensure-postgres
	$(TEST_REDIS) $(BIN)/pytest -q -n $(TEST_WORKERS) --dist worksteal -m 'not slow and not serial'
	$(TEST_REDIS) $(BIN)/pytest -q -m 'serial and not slow'

# The docs site (mkdocs.yml, docs/), built strictly: a broken link fails it. .run/ is git-ignored.
docs: setup
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict --site-dir .run/site

# Rewrite the settings table of docs/configuration.md from esms_callbacks/settings.py.
docs-config: setup
	$(BIN)/python docs/settings_reference.py docs/configuration.md

# The alert rules (monitoring/prometheus/): valid, and firing as their unit tests expect.
rules:
	scripts/ensure-promtool
	promtool check rules monitoring/prometheus/esms-alerts.yml
	cd monitoring/prometheus && promtool test rules esms-alerts.test.yml

check: lint types docs rules test

bench: setup redis
	$(BIN)/python -m bench.perf_bench $(BENCH_ARGS)

bench-push: setup redis
	$(BIN)/python -m bench.push_bench $(BENCH_ARGS)

# Redis bytes per RefId parked, pending and remembered as done (a redis-server of its own).
bench-memory: setup
	$(BIN)/python -m bench.memory_bench $(BENCH_ARGS)

# What confirming writes with a replica costs (ESMS_REDIS_REPLICAS; a primary and replica of its own).
bench-replicas: setup
	$(BIN)/python -m bench.replicas_bench $(BENCH_ARGS)

# 1, 10, 100 and 1,000 eSMS accounts sharing one worker pool (a redis-server of its own).
bench-accounts: setup
	$(BIN)/python -m bench.accounts_bench $(BENCH_ARGS)

# What finding the next OA costs at 1 to 10,000 OAs (a redis-server of its own).
bench-lease: setup
	$(BIN)/python -m bench.lease_bench $(BENCH_ARGS)

# One receiver of 1,000 accounts: threads, connections, memory, start, stop (a redis-server of its own).
bench-receiver: setup
	$(BIN)/python -m bench.receiver_bench $(BENCH_ARGS)

# Lag from "final at eSMS" to the event, and each endpoint's rate used, on eSMS's current
# terms without pushes (a redis-server of its own).
bench-freshness: setup
	$(BIN)/python -m bench.freshness_bench $(BENCH_ARGS)

# eSMS's ledger, 100,000 messages of which 1% never submitted: found and settled by the sweep
# (ESMS_RECONCILE=adopt). BENCH_ARGS=--quick for 10,000.
bench-reconcile: setup
	$(BIN)/python -m bench.reconcile_bench $(BENCH_ARGS)

clean:
	rm -rf $(VENV) .run build *.egg-info .pytest_cache .mypy_cache .ruff_cache
