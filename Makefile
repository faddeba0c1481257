# stars: make help lists the targets.
SHELL := /bin/bash
PYTHON ?= python3.11
VENV ?= .venv
BIN := $(VENV)/bin
# CPU build of torch by default; on a CUDA machine set TORCH_SPEC to a CUDA build, e.g.
#   make setup TORCH_SPEC="torch==2.13.0 --index-url https://download.pytorch.org/whl/cu128"
TORCH_SPEC ?= torch==2.13.0
PROFILE ?= demo
DATA ?=
JOBS ?= 1
PY ?= $(BIN)/python
OFFICIAL ?=
export JUPYTER_PLATFORM_DIRS := 1

.PHONY: help setup tables test test-fast lint lab clean-results gpu-check

help:  ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk 'BEGIN {FS = ":.*## "}; {printf "  %-14s %s\n", $$1, $$2}'

$(BIN)/python:
	@command -v $(PYTHON) >/dev/null || { echo "need $(PYTHON) on PATH (or make setup PYTHON=/path/to/python3.11)"; exit 1; }
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --upgrade pip setuptools wheel

setup: $(BIN)/python  ## create .venv, install torch + the package (editable) + test tools, register the kernel
	$(BIN)/python -m pip install $(TORCH_SPEC)
	$(BIN)/python -m pip install -e ".[test]"
	$(BIN)/python -m ipykernel install --user --name stars --display-name "Python (stars)"
	@echo "set-up done: $(BIN)/stars --help"

tables:  ## run every notebook with papermill (PROFILE=demo|real|paper, DATA=DIR, SET="scope:key=value ...") into results/
	$(if $(SET),STARS_OVERRIDES="$(SET)") $(BIN)/python -m stars.notebooks run-all --profile $(PROFILE) $(if $(DATA),--data $(DATA))

test:  ## run the test suite
	$(BIN)/python -m pytest -q

test-fast:  ## run the tests that are not marked slow
	$(BIN)/python -m pytest -q -m "not slow"

lint:  ## ruff over the package, notebooks and tests
	$(BIN)/python -m ruff check stars tests notebooks

lab:  ## open JupyterLab on notebooks/
	$(BIN)/jupyter lab notebooks/ $(if $(filter 0,$(shell id -u)),--allow-root)

clean-results:  ## remove results/ of PROFILE
	rm -rf results/$(PROFILE)

gpu-check:  ## on a CUDA machine: gpu tests, bf16 vs fp32, resume, torchrun, bench, smoke -> results/gpu/ (OFFICIAL=DIR: time the official code too)
	$(PY) -m stars.gpu_check $(if $(OFFICIAL),--against-official $(OFFICIAL)) $(if $(GPU_BUDGET),--budget-s $(GPU_BUDGET))
