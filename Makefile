# The README's commands. Everything a fresh machine needs is installed from here.
SHELL := /bin/bash
VENV  := .venv
PY    := $(VENV)/bin/python
STAMP := $(VENV)/.installed
TEST_NET ?= 30
DEMO_NET ?= 20
PYTEST_ARGS ?=

.PHONY: install venv services-install test lint fuzz demo demo-down bench clean

$(STAMP): pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q -U pip
	$(PY) -m pip install -q -e '.[test,demo,web]'
	touch $(STAMP)

venv: $(STAMP)

services-install:
	bash demo/install-services.sh

install: venv services-install

lint: venv
	$(VENV)/bin/ruff check .

# Starts the services the tests use (through the pytest fixtures), runs the whole suite,
# and stops what it started even when a test fails.
test: install lint
	@export ISSU_TEST_NET=$(TEST_NET); unset ISSU_KEEP_SERVICES; \
	$(PY) -m pytest -q -p no:cacheprovider --durations=20 $(PYTEST_ARGS); rc=$$?; \
	$(PY) -m demo.services down --net $(TEST_NET) --profile test >/dev/null 2>&1 || true; \
	exit $$rc

# The property-based fuzz tests (tests/fuzz/) at depth: FUZZ_EXAMPLES examples per property,
# random (not the fixed sequence of `make test`), failures kept in .hypothesis/ and tried first
# next time; the statistics name each property's example count. No services needed.
FUZZ_EXAMPLES ?= 10000
fuzz: venv
	ISSU_FUZZ_PROFILE=deep ISSU_FUZZ_EXAMPLES=$(FUZZ_EXAMPLES) $(PY) -m pytest -q \
	  -p no:cacheprovider -m 'not services' --hypothesis-show-statistics -o timeout=0 \
	  tests/fuzz $(PYTEST_ARGS)

# Starts the demo world, opens the console, and takes the world down when you quit.
demo: install
	@trap '$(VENV)/bin/issu demo down' EXIT; \
	$(VENV)/bin/issu demo up && $(VENV)/bin/issu tui --config demo/issu.toml

demo-down: venv
	$(VENV)/bin/issu demo down

bench: install
	$(PY) -m pip install -q -e '.[test,demo,web,bench]'
	bash bench/run-all.sh

clean: demo-down
	rm -rf .run
