# Two entry points that do all set-up on a fresh machine (Debian/Ubuntu, Python 3.11+):
#   make demo   - the wildfire demo on real processes (swarm demo: broker, 5 simulated
#                 copters, 5 agents, ground station; about two minutes)
#   make test   - the whole test suite
# Set-up is idempotent: system packages via apt when missing, the project and its test
# extras into .venv/ (re-installed when pyproject.toml changes).

PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

.PHONY: demo test bench setup system-packages clean

demo: setup
	$(PY) -m swarm demo

# Real ArduCopter SITL for the tests that run on both vehicles: the build in ../shared/ardupilot
# when present (as CI has it), unless ARDUPILOT_SITL_BIN is already set. Set, a missing or
# broken binary fails those tests; unset, their real-SITL half is skipped.
ARDUPILOT_SITL_DEFAULT := $(abspath ../shared/ardupilot/build/sitl/bin/arducopter)
ifeq ($(origin ARDUPILOT_SITL_BIN),undefined)
  ifneq ($(wildcard $(ARDUPILOT_SITL_DEFAULT)),)
    export ARDUPILOT_SITL_BIN := $(ARDUPILOT_SITL_DEFAULT)
  endif
endif

# Two parts, each on two pytest-xdist workers. First the in-process tests (the consensus
# core, its simulator and SQLite storage; the map and the planner): CPU-bound, no broker,
# vehicle or timing. Then the process-level tests (real brokers, agents, copters,
# Chromium), which mostly wait on those processes: 917 tests took 958 s one at a time and
# 555 s on two workers, which kept the two cores 45 % busy. They do not share a
# part with the CPU-bound tests, whose load would stretch their liveness waits. Each file
# runs whole on one worker (--dist loadfile): module fixtures such as a swarm of agents are
# set up once and their tests run in the order written. Every port is a free one chosen at
# random (swarm.bus.broker.free_port, sitl.vehicles.free_port_block), so workers do not
# collide. Both parts always run; the first failure's exit status is kept.
IN_PROCESS_TESTS := tests/consensus tests/swarm

test: setup
	@status=0; \
	$(PY) -m pytest -q -p no:cacheprovider -n 2 $(IN_PROCESS_TESTS) || status=$$?; \
	$(PY) -m pytest -q -p no:cacheprovider -n 2 --dist loadfile $(addprefix --ignore=,$(IN_PROCESS_TESTS)) || \
	  { rc=$$?; [ $$status -ne 0 ] || status=$$rc; }; \
	exit $$status

bench: setup
	$(PY) -m pip install -q -e '.[bench]'
	$(PY) bench/run_all.py

setup: system-packages $(STAMP)

# mosquitto is the real broker for integration tests; strace counts the fsyncs a storage
# batch costs (tests/consensus/test_sqlite_crash.py); chromium and chromium-driver run the
# ground station's browser tests (tests/gcs/). Installed only when missing (needs root or
# sudo).
system-packages:
	@missing=""; \
	command -v mosquitto >/dev/null 2>&1 || [ -x /usr/sbin/mosquitto ] || missing="$$missing mosquitto"; \
	command -v strace >/dev/null 2>&1 || missing="$$missing strace"; \
	command -v ip >/dev/null 2>&1 || missing="$$missing iproute2"; \
	[ -x /usr/bin/chromium ] || missing="$$missing chromium"; \
	[ -x /usr/bin/chromedriver ] || missing="$$missing chromium-driver"; \
	if [ -n "$$missing" ]; then \
	  echo "installing system packages:$$missing"; \
	  SUDO=""; [ "$$(id -u)" = 0 ] || SUDO=sudo; \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq $$missing; \
	fi

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[test]'
	touch $(STAMP)

clean:
	rm -rf $(VENV) build *.egg-info
