# The two commands a newcomer needs: `make run` and `make test`. Both set up everything first.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp

.PHONY: install system-deps bench-deps run test lint typecheck unit e2e bench clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

# containerd, skopeo, docker-registry (registry:2) and htpasswd (apache2-utils) for the tests.
system-deps:
	bash .ci/debian-packages.sh containerd skopeo docker-registry apache2-utils

bench-deps:
	bash .ci/debian-packages.sh wrk hey

# Reports throughput; asserts nothing (see bench/).
bench: install bench-deps system-deps
	$(BIN)/python bench/hotpath.py
	$(BIN)/python bench/sync.py

run: install
	$(BIN)/regfront serve

lint: install
	$(BIN)/ruff check .

typecheck: install
	$(BIN)/mypy

unit: install
	$(BIN)/pytest tests --ignore=tests/e2e

e2e: install system-deps
	$(BIN)/pytest tests/e2e

test: install system-deps lint typecheck
	$(BIN)/pytest

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
