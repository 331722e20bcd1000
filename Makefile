# regcli: every target builds .venv first (via the stamp file), so a fresh clone needs only
# `make train` or `make test`.

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

# regularization strengths and run length for train / all-variants
L1 ?= 1e-5
WD ?= 1e-4
EPOCHS ?= 15
SEED ?= 1

.DEFAULT_GOAL := help
.PHONY: help install train test lint format clean

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-14s %s\n", $$1, $$2}'

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --disable-pip-version-check -e '.[dev]'
	touch $(STAMP)

install: $(STAMP) ## build .venv and install regcli (editable) with the dev tools

train: $(STAMP) ## train one model: make train L1=1e-5 WD=1e-4 (EPOCHS, SEED)
	$(BIN)/regcli train --l1 $(L1) --weight-decay $(WD) --epochs $(EPOCHS) --seed $(SEED) --force

test: lint ## ruff, then the whole test suite
	$(BIN)/pytest -q

lint: $(STAMP) ## ruff check and format check
	$(BIN)/ruff check regcli tests
	$(BIN)/ruff format --check regcli tests

format: $(STAMP) ## apply ruff's fixes and formatting
	$(BIN)/ruff check --fix regcli tests
	$(BIN)/ruff format regcli tests

clean: ## remove the virtual environment and caches
	rm -rf $(VENV) .pytest_cache .ruff_cache *.egg-info
