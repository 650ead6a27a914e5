# `make run` and `make test` work on a fresh machine with Python 3.11+ and npm.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
HOST ?= 127.0.0.1
PORT ?= 8000
TLS_PORT ?= 8443

.PHONY: run test install install-test clean bench

$(VENV)/bin/python:
	$(PYTHON) -m venv $(VENV)

$(VENV)/.installed: pyproject.toml | $(VENV)/bin/python
	$(PY) -m pip install --quiet --disable-pip-version-check -e '.[redis,postgres]'
	touch $@

$(VENV)/.installed-test: pyproject.toml $(VENV)/.installed
	$(PY) -m pip install --quiet --disable-pip-version-check -e '.[test,redis,postgres]'
	touch $@

node_modules/.installed: package.json package-lock.json
	npm ci --no-audit --no-fund --loglevel=error
	touch $@

install: $(VENV)/.installed node_modules/.installed

install-test: $(VENV)/.installed-test node_modules/.installed

run: install
	$(PY) manage.py migrate --noinput
	$(PY) manage.py init_admin
	$(PY) manage.py serve --host $(HOST) --port $(PORT) --tls-port $(TLS_PORT) --demo

test: install-test
	$(PY) -m pytest $(PYTEST_ARGS)

clean:
	rm -rf $(VENV) node_modules

# Benchmarks are run by hand, never by `make test`; websockify is their peer baseline.
$(VENV)/.installed-bench: pyproject.toml $(VENV)/.installed-test
	$(PY) -m pip install --quiet --disable-pip-version-check -e '.[test,redis,postgres,bench]'
	touch $@

bench: install-test $(VENV)/.installed-bench
	$(PY) -m bench $(BENCH_ARGS)
