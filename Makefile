# Millstream developer entry points. `make run` and `make test` work on a fresh Debian/Ubuntu machine.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
PIP    := $(VENV)/bin/pip
DATA   ?= ./var
SUDO   := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: run test test-fast venv deps system-deps js-deps lint generate docs pyz lock units clean bench faults faults-long

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PIP) install --quiet --upgrade pip
	$(PIP) install --quiet -e .
	touch $@

venv: $(VENV)/.installed

# Runs the plant role on its embedded defaults, data in ./var/.
run: venv
	mkdir -p $(DATA)
	$(VENV)/bin/millstream run --role plant --data-dir $(DATA)

# command:package pairs; only what is missing gets installed (node may come from elsewhere).
SYSTEM_TOOLS := openssl:openssl kcat:kcat mosquitto:mosquitto mosquitto_pub:mosquitto-clients tmux:tmux node:nodejs npm:npm

system-deps:
	@pkgs=""; for pair in $(SYSTEM_TOOLS); do \
	  command -v $${pair%%:*} >/dev/null 2>&1 || pkgs="$$pkgs $${pair#*:}"; done; \
	if [ -n "$$pkgs" ]; then \
	  echo "installing:$$pkgs"; \
	  $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get update -qq && \
	  $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$pkgs >/dev/null; \
	fi

# The test suite builds the pyz too, so it needs the build tools.
$(VENV)/.test-installed: pyproject.toml $(VENV)/.installed
	$(PIP) install --quiet -e '.[test,build]'
	touch $@

$(VENV)/.build-installed: pyproject.toml $(VENV)/.installed
	$(PIP) install --quiet -e '.[build]'
	touch $@

js-deps: tests/js/package.json
	cd tests/js && npm install --silent --no-audit --no-fund >/dev/null

deps: system-deps $(VENV)/.test-installed js-deps

# Installs every dependency (apt, pip, npm) and runs the whole test suite.
test: deps
	$(VENV)/bin/ruff check appliance tui tests packaging bench
	$(PY) -m pytest -q

test-fast: $(VENV)/.test-installed
	$(PY) -m pytest -q -x -m "not slow"

lint: $(VENV)/.test-installed
	$(VENV)/bin/ruff check appliance tui tests packaging bench

# Regenerates the Kafka message classes from ../shared/kafka-protocol/message-specs.
generate: venv
	$(PY) packaging/gen_kafka_protocol.py

# Rewrites docs/configuration.md and the README's configuration index from appliance/config.py.
docs: venv
	$(PY) packaging/gen_config_reference.py

# dist/millstream.pyz: one zipapp for CPython 3.10-3.13 on x86_64 Linux (glibc >= 2.28), built
# reproducibly from packaging/requirements.lock. See packaging/README.md.
pyz: $(VENV)/.build-installed
	$(PY) packaging/build_pyz.py

# Re-resolves packaging/requirements.lock (needs CPython 3.10-3.13 installed, e.g. with pyenv).
lock: $(VENV)/.build-installed
	$(PY) packaging/lock.py

# Rewrites packaging/systemd/*.service from appliance/cli_service.py.
units: venv
	$(PY) packaging/systemd/render.py

bench: deps
	$(PY) bench/kafka_produce_consume.py

# Reliability harness (tests/faults/): crash loops, full disk, torn WAL, object-store outage and
# corruption, WAN cuts with crashes on either side, stuck clients, hostile input.
# The short version also runs in `make test`; the long one (100 kills, 1M hostile frames, ...) takes
# about half an hour and appends its figures to bench/faults-report.jsonl for bench/RESULTS.md.
faults: $(VENV)/.test-installed
	$(PY) -m pytest -q tests/faults

faults-long: $(VENV)/.test-installed
	FAULTS_LONG=1 FAULTS_REPORT=bench/faults-report.jsonl $(PY) -m pytest -q -s -p no:warnings tests/faults
	$(PY) -m tests.faults.report bench/faults-report.jsonl

clean:
	rm -rf $(VENV) build dist *.egg-info
