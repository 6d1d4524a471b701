# freshet — every target installs what it needs into .venv first (a fresh clone needs only Python 3.11,
# Java 17 and Maven; Redis, Prometheus (with promtool), Alertmanager and Chromium are installed from
# Debian's packages when missing and running as root).
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
DEMO_ARGS ?=

.DEFAULT_GOAL := help
.PHONY: help install lint typecheck monitoring-check test test-fast faults demo bench services-up services-down monitoring-up clean

help: ## list the targets and what each does
	@grep -E '^[a-zA-Z_-]+:.*?## ' $(MAKEFILE_LIST) | awk 'BEGIN {FS = ":.*?## "}; {printf "  %-18s %s\n", $$1, $$2}'

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	@touch $(STAMP)

install: $(STAMP) ## create .venv and install freshet with its dev tools

lint: $(STAMP) ## ruff over the whole tree
	$(BIN)/ruff check streams models producers tests bench

typecheck: $(STAMP) ## mypy over the packages
	$(BIN)/mypy

monitoring-check: $(STAMP) ## promtool check config, check rules and test rules over deploy/prometheus
	$(BIN)/freshet monitoring check

test: lint typecheck monitoring-check ## what CI runs: lint, types, promtool, then every test (unit, agent, property, doctests, integration on real Kafka + Redis + Prometheus, the report in Chromium)
	$(BIN)/pytest -q -m "not long"

long: $(STAMP) ## acceptance runs of many minutes (e.g. SEA with two drifts, 90,000 events at 100/s)
	$(BIN)/pytest -q -m long

faults: $(STAMP) ## the fault suite: malformed inputs, junk versions, Redis and broker outages, worker SIGKILLs (12 min in one run on a busy 2-core machine; reports/faults/latest.json)
	timeout 1800 $(BIN)/python -m tests.faults

test-fast: $(STAMP) ## the tests that need no servers
	$(BIN)/pytest -q -m "not integration"

demo: $(STAMP) ## start Kafka + Redis, run worker, learner and a drifting synthetic stream for about a minute, print a summary
	$(BIN)/freshet demo $(DEMO_ARGS)

BENCH_ARGS ?=

bench: $(STAMP) ## freshet beside Quix Streams, Bytewax and an aiokafka ceiling (peers in .cache/bench-peers-venv); writes bench/results/latest.json
	$(BIN)/python -m bench.run $(BENCH_ARGS)

services-up: $(STAMP) ## start the local Kafka broker and Redis server (loopback only)
	$(BIN)/freshet services up

monitoring-up: $(STAMP) ## the same plus Prometheus (UI on 127.0.0.1:9090) and Alertmanager when installed
	$(BIN)/freshet services up --with-monitoring

services-down: $(STAMP) ## stop the local servers freshet started
	$(BIN)/freshet services down

clean: ## remove the virtualenv, caches and local server data
	rm -rf $(VENV) .cache .mypy_cache .ruff_cache .hypothesis reports
