# regcli: every target builds .venv first (via the stamp file), so a fresh clone needs only
# `make train` or `make test`.

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# SETUP is what every target needs first; REGCLI how to run the tool. Override both to use a
# Python that already has the dependencies: make all-variants SETUP= REGCLI="python3 -m regcli"
SETUP ?= $(STAMP)
REGCLI ?= $(BIN)/regcli
PYTHON_BIN ?= $(BIN)/python
VARIANTS := none l1 l2 l1_l2

# regularization strengths and run length for train / all-variants
L1 ?= 1e-5
WD ?= 1e-4
EPOCHS ?= 15
SEED ?= 1
# SEEDS=N trains seeds 0..N-1 per variant into models/<variant>/seed-<k>/, reusing finished ones;
# without it, one run per variant with SEED, replacing the previous one.
SEEDS ?=
SEED_ARGS = $(if $(SEEDS),--seeds $(SEEDS),--seed $(SEED) --force)

.DEFAULT_GOAL := help
.PHONY: help install train all-variants report bench test lint format clean

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-14s %s\n", $$1, $$2}'

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --disable-pip-version-check -e '.[dev]'
	touch $(STAMP)

install: $(STAMP) ## build .venv and install regcli (editable) with the dev tools

train: $(SETUP) ## train one model: make train L1=1e-5 WD=1e-4 (EPOCHS, SEED)
	$(REGCLI) train --l1 $(L1) --weight-decay $(WD) --epochs $(EPOCHS) --seed $(SEED) --force

all-variants: $(SETUP) ## the study: train none/l1/l2/l1_l2 (SEEDS=5 for seeds 0..4), export, evaluate, report
	$(REGCLI) train --name none --epochs $(EPOCHS) $(SEED_ARGS)
	$(REGCLI) train --name l1 --l1 $(L1) --epochs $(EPOCHS) $(SEED_ARGS)
	$(REGCLI) train --name l2 --weight-decay $(WD) --epochs $(EPOCHS) $(SEED_ARGS)
	$(REGCLI) train --name l1_l2 --l1 $(L1) --weight-decay $(WD) --epochs $(EPOCHS) $(SEED_ARGS)
	$(REGCLI) export
	$(REGCLI) evaluate --backend torch
	$(REGCLI) evaluate --backend onnx
	$(MAKE) --no-print-directory report SETUP=$(SETUP) REGCLI="$(REGCLI)"

report: $(SETUP) ## rebuild figures, the comparison and the README table from models/ (no training)
	$(REGCLI) report
	$(REGCLI) compare

bench: $(SETUP) ## training and inference speed vs the classic pipeline and the limit
	$(PYTHON_BIN) benchmarks/bench.py

test: lint ## ruff, then the whole test suite
	$(BIN)/pytest -q

lint: $(SETUP) ## ruff check and format check
	$(BIN)/ruff check regcli tests benchmarks
	$(BIN)/ruff format --check regcli tests benchmarks

format: $(SETUP) ## apply ruff's fixes and formatting
	$(BIN)/ruff check --fix regcli tests benchmarks
	$(BIN)/ruff format regcli tests benchmarks

clean: ## remove the virtual environment and caches
	rm -rf $(VENV) .pytest_cache .ruff_cache *.egg-info
