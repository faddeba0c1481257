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
JOBS ?= 2
NB ?=
P ?=
OUT ?=
PY ?= $(BIN)/python
OFFICIAL ?=
export JUPYTER_PLATFORM_DIRS := 1

.PHONY: help setup tables notebook test test-fast lint lab clean-results clean-cache gpu-check

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

tables:  ## run every notebook into results/PROFILE/ (PROFILE=smoke: ~2 min | demo: ~25 min | real: ~15 min, DATA=../shared/datasets | paper, DATA=DIR, JOBS=notebooks at once (2), SET="scope:key=value ...")
	$(if $(SET),STARS_OVERRIDES="$(SET)") $(BIN)/python -m stars.notebooks run-all --profile $(PROFILE) $(if $(DATA),--data $(DATA)) --jobs $(JOBS)

notebook:  ## run one notebook: make notebook NB=table09_batch_size P='batch_sizes=[8,48] seed=1' [PROFILE=...] [OUT=DIR]
	@test -n "$(NB)" || { echo "NB=<name> is required; the notebooks: $$($(BIN)/python -m stars.notebooks list | tr '\n' ' ')"; exit 2; }
	$(BIN)/python -m stars.notebooks run $(NB) --profile $(PROFILE) $(if $(DATA),--data $(DATA)) $(if $(OUT),--out $(OUT)) $(foreach p,$(P),--set '$(p)')

test:  ## run the test suite
	$(BIN)/python -m pytest -q

test-fast:  ## run the tests that are not marked slow
	$(BIN)/python -m pytest -q -m "not slow"

lint:  ## ruff over the package, notebooks and tests
	$(BIN)/python -m ruff check stars tests notebooks

# JupyterLab at the repository root (results/ and notebooks/ side by side); jupyter/lab/settings/overrides.json
# makes the notebooks' paired .py files open as notebooks (jupytext) by default.
LAB_ARGS = --ServerApp.root_dir=$(CURDIR) --LabApp.app_settings_dir=$(CURDIR)/jupyter/lab/settings \
	$(if $(filter 0,$(shell id -u)),--allow-root)

lab:  ## open JupyterLab at the repository root; notebooks/*.py open as notebooks
	$(BIN)/jupyter lab $(LAB_ARGS)

clean-results:  ## remove results/ of PROFILE
	rm -rf results/$(PROFILE)

clean-cache:  ## remove the trained runs and datasets cached for PROFILE (cache/PROFILE, cache/data/synthetic-PROFILE)
	rm -rf $${STARS_CACHE:-cache}/$(PROFILE) $${STARS_CACHE:-cache}/data/synthetic-$(PROFILE)

gpu-check:  ## on a CUDA machine: gpu tests, bf16 vs fp32, resume, torchrun, bench, attention kernels, smoke -> results/gpu/ (OFFICIAL=DIR: time the official code too; GPU_BUDGET=seconds, default 540)
	$(PY) -m stars.gpu_check $(if $(OFFICIAL),--against-official $(OFFICIAL)) $(if $(GPU_BUDGET),--budget-s $(GPU_BUDGET))
