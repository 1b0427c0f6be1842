# Two entry points: `make demo` runs the main job, `make test` runs the checks.
# Each creates .venv on first use and reinstalls when pyproject.toml changes.
PYTHON ?= python3
VENV := .venv
BIN := $(CURDIR)/$(VENV)/bin
INSTALLED := $(VENV)/.installed
export PATH := $(BIN):$(PATH)

.PHONY: demo test lint install clean

install: $(INSTALLED)

$(INSTALLED): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check --upgrade pip
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e '.[dev,demo]'
	touch $@

demo: $(INSTALLED)
	vcat demo build
	dvc repro
	vcat catalog lint
	dvc metrics show

lint: $(INSTALLED)
	ruff check .
	ruff format --check .

test: lint
	pytest

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache
