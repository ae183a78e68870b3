# The README's commands. Everything a fresh machine needs is installed from here.
SHELL := /bin/bash
VENV  := .venv
PY    := $(VENV)/bin/python
STAMP := $(VENV)/.installed
TEST_NET ?= 30
DEMO_NET ?= 20
PYTEST_ARGS ?=

.PHONY: install venv services-install containers-install test test-fast lint test-long fuzz chaos demo demo-down bench clean

$(STAMP): pyproject.toml demo/pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q -U pip
	$(PY) -m pip install -q -e '.[test,web]' -e ./demo
	touch $(STAMP)

venv: $(STAMP)

services-install:
	bash demo/install-services.sh

# podman, runc, debootstrap and the demo's images (a few minutes the first time, then
# cached); says why and carries on when the container engine cannot run here.
containers-install: venv
	bash demo/install-containers.sh $(PY)

install: venv services-install containers-install

# ruff, then mypy (strict on backends/ and issu_tui/; settings in pyproject.toml).
lint: venv
	$(VENV)/bin/ruff check .
	$(VENV)/bin/mypy

# Starts the services the tests use (through the pytest fixtures), runs the whole suite,
# and stops what it started even when a test fails.
test: install lint
	@export ISSU_TEST_NET=$(TEST_NET); unset ISSU_KEEP_SERVICES; \
	$(PY) -m pytest -q -p no:cacheprovider --durations=20 -m 'not long' $(PYTEST_ARGS); rc=$$?; \
	$(PY) -m demo.services down --net $(TEST_NET) --profile test >/dev/null 2>&1 || true; \
	exit $$rc

# The tests too long for make test's budget (marked `long`: the approach run-throughs that
# take a quarter of an hour each on 2 cores), with the same services and the same cleanup.
test-long: install
	@export ISSU_TEST_NET=$(TEST_NET); unset ISSU_KEEP_SERVICES; \
	$(PY) -m pytest -q -p no:cacheprovider --durations=20 -m long $(PYTEST_ARGS); rc=$$?; \
	$(PY) -m demo.services down --net $(TEST_NET) --profile test >/dev/null 2>&1 || true; \
	exit $$rc

# The edit-test loop: every test that needs no running service (no Cassandra, ZooKeeper,
# RabbitMQ or sshd; tests using the `services`/`launcher` fixtures are marked `services`) and
# is not `slow` (the demo-world and end-to-end tests start their own). No lint, no install of
# the services. `make test-fast PYTEST_ARGS='--lf'` reruns what failed last.
test-fast: venv
	$(PY) -m pytest -q -m 'not services and not slow' $(PYTEST_ARGS)

# The property-based fuzz tests (tests/fuzz/) at depth: FUZZ_EXAMPLES examples per property,
# random (not the fixed sequence of `make test`), failures kept in .hypothesis/ and tried first
# next time; the statistics name each property's example count. No services needed.
FUZZ_EXAMPLES ?= 10000
fuzz: venv
	ISSU_FUZZ_PROFILE=deep ISSU_FUZZ_EXAMPLES=$(FUZZ_EXAMPLES) $(PY) -m pytest -q \
	  -p no:cacheprovider -m 'not services' --hypothesis-show-statistics -o timeout=0 \
	  tests/fuzz $(PYTEST_ARGS)

# Shows the demo world coming up at once (demo/startup.py), opens the console on it, and takes
# the world down when you quit, unless a headless `issu daemon` still drives the upgrade on it
# (then it says so and how to stop it).
demo: install
	@trap '$(PY) -m demo.console_exit --net $(DEMO_NET)' EXIT; \
	$(VENV)/bin/issu demo up --net $(DEMO_NET) --containers-if-possible --console

demo-down: venv
	$(VENV)/bin/issu demo down --net $(DEMO_NET)

# Whole upgrades of a demo world under load with random faults, each checked by an independent
# checker (docs/chaos.md); report in docs/chaos-report.md/.json. Not part of `make test`.
ARGS ?=
chaos: install
	$(PY) -m bench.chaos $(ARGS)

bench: install
	$(PY) -m pip install -q -e '.[test,web,bench]' -e ./demo
	bash bench/run-all.sh

clean: demo-down
	rm -rf .run
