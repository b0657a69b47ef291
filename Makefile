# Two commands for a fresh machine: `make demo` and `make test`. Both create .venv if missing.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install system-deps test test-cluster typecheck demo bench bench-full check-install clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

$(STAMP): $(BIN)/python pyproject.toml
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[test,bench,cluster]'
	touch $(STAMP)

install: $(STAMP)

# System packages the tests use, installed when missing (scripts/system-deps): PostgreSQL's
# server binaries for the cluster tests, Debian's Chromium for the dashboard's browser tests.
system-deps:
	@scripts/system-deps

test: $(STAMP) system-deps
	$(BIN)/ruff check runtime mailbox supervisor benchmarks tests examples
	$(MAKE) --no-print-directory typecheck
	$(BIN)/python -m pytest -q -m "not cluster_long"

# The long cluster tests (faults: SIGSTOP past a lease, links and the database cut,
# PostgreSQL restarted under load, rolling drain; and the two-node feature suites of
# replicated agents and cross-node links): `make test` keeps the kill -9 failover, the auth
# tests and the quicker cluster tests under its 15 minutes; .ci/run runs both targets.
test-cluster: $(STAMP) system-deps
	$(BIN)/python -m pytest -q -m cluster_long

# mypy must see the installed names (beamish.runtime is the folder runtime/, see package-dir in
# pyproject.toml), and it follows neither package-dir nor the editable install's import hook:
# so it reads a tree of symlinks that gives the checkout's folders their package names. The
# packages to check and the tree's path are in pyproject.toml [tool.mypy]. Errors are shown
# with the checkout's paths (runtime/x.py, not .venv/typecheck/beamish/runtime/x.py).
TYPECHECK := $(VENV)/typecheck/beamish
typecheck: $(STAMP)
	@mkdir -p $(TYPECHECK)
	@for p in runtime supervisor mailbox benchmarks; do ln -sfn ../../../$$p $(TYPECHECK)/$$p; done
	@out=$$($(BIN)/mypy 2>&1); rc=$$?; printf '%s\n' "$$out" | sed 's#^$(TYPECHECK)/##'; exit $$rc

demo: $(STAMP)
	$(BIN)/python examples/demo.py

bench: $(STAMP)
	$(BIN)/beamish bench --quick

bench-full: $(STAMP)
	$(BIN)/beamish bench

# A non-editable install into a throwaway venv, used from outside the checkout.
check-install:
	rm -rf /tmp/beamish-check-venv
	$(PYTHON) -m venv /tmp/beamish-check-venv
	/tmp/beamish-check-venv/bin/python -m pip install -q .
	cd /tmp && /tmp/beamish-check-venv/bin/beamish --help > /dev/null
	cd /tmp && /tmp/beamish-check-venv/bin/python $(CURDIR)/scripts/check_install.py
	/tmp/beamish-check-venv/bin/python -m pip install -q '.[cluster]'
	cd /tmp && /tmp/beamish-check-venv/bin/python $(CURDIR)/scripts/check_install.py --require psycopg
	rm -rf /tmp/beamish-check-venv

clean:
	rm -rf $(VENV) build *.egg-info .beamish benchmarks/results
