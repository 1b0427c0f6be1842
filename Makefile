# Two entry points: `make demo` runs the main job, `make test` runs the checks.
# Each creates .venv on first use and reinstalls when pyproject.toml changes; every phase
# prints a line with the seconds since make started, and uv lists what it fetches and installs.
PYTHON ?= python3
VENV := .venv
BIN := $(CURDIR)/$(VENV)/bin
INSTALLED := $(VENV)/.installed
PIP := $(BIN)/python -m pip --disable-pip-version-check
# uv reads no pip configuration: tools/uv_from_pip.py hands it this machine's indexes, wheel
# folders and constraints, and like pip it takes each package's best version across them all
UV_INSTALL = $(BIN)/uv pip install --python $(BIN)/python --compile-bytecode \
	--index-strategy unsafe-best-match $$($(BIN)/python tools/uv_from_pip.py)
export PATH := $(BIN):$(PATH)

START := $(shell date +%s)
# $(call phase,what is happening now)
phase = @printf '\n==> [%4ss] %s\n' "$$(( $$(date +%s) - $(START) ))" "$(1)"

.PHONY: demo test test-slow lint install slurm clean

install: $(INSTALLED)

$(INSTALLED): pyproject.toml
	$(call phase,creating $(VENV) with $(PYTHON))
	$(PYTHON) -m venv $(VENV)
	$(call phase,installing uv (it installs the packages below in parallel: minutes less than pip))
	$(PIP) install --progress-bar on 'uv>=0.5,<1'
	$(call phase,installing vcat with its dev and demo extras (DVC, PyTorch, matplotlib...; minutes on a fresh machine))
	$(UV_INSTALL) -e '.[dev,demo]'
	touch $@
	$(call phase,$(VENV) is ready)

demo: $(INSTALLED)
	$(call phase,building the demo world (vcat demo build))
	vcat demo build
	$(call phase,running the pipeline (dvc repro))
	dvc repro
	$(call phase,data-quality gates (vcat check --summary))
	vcat check --summary
	$(call phase,checking the catalog (vcat catalog lint))
	vcat catalog lint
	$(call phase,training and evaluation up to date; headline metrics (vcat run))
	vcat run
	$(call phase,demo done (every number: dvc metrics show))

lint: $(INSTALLED)
	$(call phase,lint (ruff))
	ruff check .
	ruff format --check .

test: lint slurm
	$(call phase,tests (pytest; the slow ones are left to make test-slow))
	pytest -m "not slow"

test-slow: $(INSTALLED) slurm
	$(call phase,slow tests (pytest -m slow: the whole pipeline, releases, rebuilds))
	pytest -m slow

# Debian's SLURM, munge and MariaDB for the cluster tests (vcat cluster up); nothing when present
slurm:
	$(call phase,SLURM, munge and MariaDB from Debian (tools/install-slurm))
	tools/install-slurm

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache
