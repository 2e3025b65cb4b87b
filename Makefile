# The README's two commands: `make run` and `make test`.
# Each creates .venv with Python 3.12 and installs requirements.txt on first use
# (and again whenever requirements.txt changes).

SHELL := /bin/bash
VENV := .venv
PY := $(VENV)/bin/python
REQ_HASH := $(shell sha1sum requirements.txt | cut -c1-12)
STAMP := $(VENV)/.installed-$(REQ_HASH)
HOST ?= 127.0.0.1
PORT ?= 8501
EXPORTER_PORT ?= 9108
PYTEST_ARGS ?=
# INSECURE_NO_AUTH=1: serve a console without sign-in beyond loopback (everyone reaching it acts as admin)
INSECURE_NO_AUTH ?=
LAUNCH_FLAGS := $(if $(filter 1 true yes,$(INSECURE_NO_AUTH)),--insecure-no-auth)

.PHONY: run test lint bench exporter stop-store clean-venv

$(STAMP): requirements.txt
	@PY312=$$(command -v python3.12 || (command -v pyenv >/dev/null && pyenv root >/dev/null && ls -d $$(pyenv root)/versions/3.12*/bin/python3.12 2>/dev/null | tail -n1)); \
	if [ -z "$$PY312" ]; then echo "Python 3.12 not found: install it (e.g. 'pyenv install 3.12' or your OS package) and re-run" >&2; exit 1; fi; \
	if [ ! -x $(PY) ]; then echo "creating $(VENV) with $$PY312"; "$$PY312" -m venv $(VENV); fi
	$(PY) -m pip install --quiet --disable-pip-version-check --upgrade pip
	$(PY) -m pip install --quiet --disable-pip-version-check -r requirements.txt
	rm -f $(VENV)/.installed-*
	touch $(STAMP)

# The launcher decides first (before the store starts) whether the console may listen on HOST: beyond loopback it
# needs sign-in ([auth] in .streamlit/secrets.toml) or INSECURE_NO_AUTH=1; it generates the cookie secret into the
# data dir when [auth] has none. `store start` first: the console's graph server is then one that stays up for it
# (a server a plain command starts is stopped when that command exits) until Ctrl-C, when the trap saves and stops it.
run: $(STAMP)
	$(PY) -m console.launch --check --host $(HOST) $(LAUNCH_FLAGS)
	trap '$(PY) -m engine store stop' EXIT; \
	$(PY) -m engine store start && \
	$(PY) -m engine demo --ensure && \
	$(PY) -m console.launch --host $(HOST) --port $(PORT) $(LAUNCH_FLAGS)

# ruff (lint and format) and mypy; each runs even when another failed, so one pass shows every problem.
LINT = $(PY) -m ruff check . || status=1; $(PY) -m ruff format --check . || status=1; $(PY) -m mypy || status=1

# Lint and types, then the whole suite; all always run, and any failing fails the target.
test: $(STAMP)
	@status=0; $(LINT); \
	$(PY) -m pytest $(PYTEST_ARGS) || status=1; \
	exit $$status

lint: $(STAMP)
	@status=0; $(LINT); exit $$status

bench: $(STAMP)
	$(PY) -m engine bench discovery
	$(PY) -m engine bench store --entities 3400

# /metrics for Prometheus from the data dir's ops DB, on HOST (loopback by default) until Ctrl-C.
exporter: $(STAMP)
	$(PY) -m engine exporter --host $(HOST) --port $(EXPORTER_PORT)

stop-store: $(STAMP)
	$(PY) -m engine store stop

clean-venv:
	rm -rf $(VENV)
