# Two commands for a new user: `make run` and `make test`. Everything else is for contributors.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp

.PHONY: install run test test-gpu test-fast lint fmt clean bench demo


$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --disable-pip-version-check -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

## serve the top-level cog.yaml model at http://127.0.0.1:8000 (SQLite, local instances)
run: install
	$(BIN)/cogway serve

## the whole suite: unit, API and integration tiers (real Cog processes, SQLite and PostgreSQL)
test: install
	$(BIN)/pytest

## on a machine with NVIDIA GPUs: instances get their own GPU, checked against nvidia-smi
test-gpu: install
	$(BIN)/pytest tests/integration/test_gpu.py -v

## unit and API tiers only (seconds, no Cog processes)
test-fast: install
	$(BIN)/pytest -m "not integration"

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

fmt: install
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

## gateway overhead vs. Cog direct on a trivial predictor (about a minute)
bench: install
	$(BIN)/python bench/gateway.py

clean:
	rm -rf .cogway .cache .mypy_cache .ruff_cache .pytest_cache

## push every example predictor to the gateway `make run` serves and run each once (timings)
demo: install
	$(BIN)/cogway demo
