# Two commands matter: `make demo` (the whole system on this machine) and `make test`.
# Both install what they need: Debian packages (mosquitto, influxdb) and the Python venv.
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed-stamp
PYTEST_ARGS ?=

.PHONY: help setup system-packages venv demo test lint format unit integration bench bench-registry bench-vqd bench-telemetry schemas clean

help:
	@echo "make demo   - bring up mosquitto, influxd, gateway, police/fire and fleet simulators"
	@echo "make test   - lint + unit + integration tests (installs what it needs)"
	@echo "make lint   - ruff + mypy --strict on gateway/ and drivers/"
	@echo "make bench  - print throughput and alarm latency figures"
	@echo "make bench-registry - 100k devices: import, coverage, API latency, memory"
	@echo "make bench-vqd - video checks: precision/recall on a labelled set, snapshots/s"
	@echo "make bench-telemetry - MQTT -> InfluxDB rate/delay vs mosquitto_sub, mqtt2influxdb; memory"
	@echo "make schemas- regenerate docs/schemas/ from the pydantic models"

setup: system-packages venv

system-packages:
	@bash .ci/install-system-packages

venv: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q --disable-pip-version-check -e '.[dev]'
	touch $(STAMP)

demo: setup
	$(VENV)/bin/campusgw demo

test: setup lint
	@bash .ci/install-system-packages --browser
	$(PY) -m pytest -q $(PYTEST_ARGS)

lint: venv
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy --strict gateway drivers

format: venv
	$(VENV)/bin/ruff format .
	$(VENV)/bin/ruff check --fix .

unit: venv
	$(PY) -m pytest -q tests/unit

integration: setup
	$(PY) -m pytest -q tests/integration

bench: setup
	$(PY) bench/pipeline.py

bench-registry: setup
	$(PY) bench/registry_scale.py

bench-vqd: venv
	$(PY) bench/vqd.py

bench-telemetry: setup
	flock /tmp/bench.lock $(PY) bench/telemetry.py

schemas: venv
	$(VENV)/bin/campusgw schemas

clean:
	rm -rf var .pytest_cache .mypy_cache .ruff_cache
