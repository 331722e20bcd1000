# regcli: every target builds .venv first (via the stamp file), so a fresh clone needs only
# `make all-variants` or `make test`.

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

# regularization strengths and run length for train / all-variants / sweep
L1 ?= 1e-5
WD ?= 1e-4
EPOCHS ?= 15
SEED ?= 1
# SEEDS=N trains seeds 0..N-1 per variant into models/<variant>/seed-<k>/, reusing finished ones
# of the same settings; without it, one run per variant with SEED, replacing the previous one.
SEEDS ?=
SEED_ARGS = $(if $(SEEDS),--seeds $(SEEDS),--seed $(SEED) --force)
# the four-variant study that `make report` draws and tabulates: each variant and its seeds
STUDY = $(foreach v,$(VARIANTS),models/$(v) $(sort $(wildcard models/$(v)/seed-*)))
SWEEP := models/sweep

.DEFAULT_GOAL := help
.PHONY: help install train all-variants study-onnx sweep atlas atlas-a atlas-b prune-study prune-a prune-b report bench bench-readme test lint format clean

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-14s %s\n", $$1, $$2}'

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --disable-pip-version-check -e '.[dev]'
	touch $(STAMP)

install: $(STAMP) ## build .venv and install regcli (editable) with the dev tools

train: $(SETUP) ## train one model into models/<mode>/, replacing it: make train L1=1e-5 WD=1e-4 (EPOCHS, SEED)
	$(REGCLI) train --l1 $(L1) --weight-decay $(WD) --epochs $(EPOCHS) --seed $(SEED) --force

all-variants: $(SETUP) ## the study: none/l1/l2/l1_l2 (one group on a GPU; SEEDS=5: seeds 0..4), exported, evaluated, reported
	$(REGCLI) train --variants $(subst $() ,$(comma),$(VARIANTS)) --l1 $(L1) --weight-decay $(WD) \
		--epochs $(EPOCHS) $(SEED_ARGS)
	$(MAKE) --no-print-directory study-onnx report SETUP=$(SETUP) REGCLI="$(REGCLI)"

study-onnx: $(SETUP)  # (a separate make: STUDY then sees the seeds just trained)
	$(REGCLI) export $(STUDY)
	$(REGCLI) evaluate $(STUDY) --backend torch --quiet
	$(REGCLI) evaluate $(STUDY) --backend onnx --quiet

# the committed path's grid (regcli sweep's default grids now reach further; see config.py)
PATH_L1 := 0,1e-6,3e-6,1e-5,3e-5,1e-4,3e-4,1e-3
PATH_WD := 0,1e-5,3e-5,1e-4,3e-4,1e-3,3e-3

sweep: $(SETUP) ## the regularization path: 14 strengths x 5 seeds x EPOCHS (for a GPU), exported, reported
	$(REGCLI) sweep --name $(notdir $(SWEEP)) --seeds 5 --epochs $(EPOCHS) --l1 $(PATH_L1) --weight-decay $(PATH_WD)
	$(REGCLI) export --models-dir $(SWEEP)
	$(MAKE) --no-print-directory report SETUP=$(SETUP) REGCLI="$(REGCLI)"

# the atlas: training-set size x strength on a CPU, in two processes of one thread each (each
# takes two sizes of about equal cost); 60,000 images come from the committed path
ATLAS := models/atlas
ATLAS_L1 := 0,3e-6,1e-5,3e-5,1e-4,3e-4,1e-3,3e-3
ATLAS_WD := 0,3e-5,1e-4,3e-4,1e-3,3e-3,1e-2,3e-2
ATLAS_ARGS = --name $(notdir $(ATLAS)) --l1 $(ATLAS_L1) --weight-decay $(ATLAS_WD) --seeds 5 \
	--epochs 5 --min-steps 600 --val-size 1000
ATLAS_SIZES_a := 500,5000
ATLAS_SIZES_b := 1000,2000

atlas: $(SETUP) ## the atlas: 4 sizes x 15 cells x 5 seeds on a CPU (its measured time: README), exported, reported
	$(MAKE) --no-print-directory -j2 atlas-a atlas-b SETUP=$(SETUP) REGCLI="$(REGCLI)"
	$(REGCLI) export --models-dir $(ATLAS) --quiet
	$(MAKE) --no-print-directory report SETUP=$(SETUP) REGCLI="$(REGCLI)"

atlas-a atlas-b: $(SETUP)  # one process, one thread: two of the atlas's sizes
	OMP_NUM_THREADS=1 $(REGCLI) sweep $(ATLAS_ARGS) --train-sizes $(ATLAS_SIZES_$(subst atlas-,,$@))

# pruning with retraining (Han et al. 2015) on a CPU, from the committed path: none and each
# penalty's strongest strength there, 5 seeds each, pruned to each level and retrained one-shot
# (1 epoch) and iteratively (2 prune-then-retrain steps of 1 epoch), in two processes of one thread
PRUNED := models/pruned
PRUNE_SOURCES := $(SWEEP)/l1-0_wd-0 $(SWEEP)/l1-0.001_wd-0 $(SWEEP)/l1-0_wd-0.003
PRUNE_LEVELS := 0.8,0.9,0.95
PRUNE_ARGS = $(PRUNE_SOURCES) --name $(notdir $(PRUNED)) --retrain 1

prune-study: $(SETUP) ## pruning with retraining: 3 cells x 5 seeds x 3 levels, one-shot and iterative, on a CPU, reported
	$(MAKE) --no-print-directory -j2 prune-a prune-b SETUP=$(SETUP) REGCLI="$(REGCLI)"
	$(MAKE) --no-print-directory report SETUP=$(SETUP) REGCLI="$(REGCLI)"

prune-a: $(SETUP)  # one process, one thread: one-shot at every level, iterative at the first
	OMP_NUM_THREADS=1 $(REGCLI) prune $(PRUNE_ARGS) --sparsity $(PRUNE_LEVELS)
	OMP_NUM_THREADS=1 $(REGCLI) prune $(PRUNE_ARGS) --sparsity $(firstword $(subst $(comma), ,$(PRUNE_LEVELS))) --iterative 2

prune-b: $(SETUP)  # one process, one thread: iterative at the other levels
	OMP_NUM_THREADS=1 $(REGCLI) prune $(PRUNE_ARGS) --sparsity $(subst $() ,$(comma),$(wordlist 2,9,$(subst $(comma), ,$(PRUNE_LEVELS)))) --iterative 2

report: $(SETUP) ## every figure and the README's result tables, from the study's models (no training)
	$(REGCLI) report $(STUDY) $(if $(wildcard $(SWEEP)),--sweep $(SWEEP)) \
		$(if $(wildcard $(ATLAS)),--atlas $(ATLAS)) $(if $(wildcard $(PRUNED)),--pruned $(PRUNED)) \
		--readme README.md

bench: $(SETUP) ## measure training and inference speed (CPU, or the GPU studies on CUDA), then judge
	$(PYTHON_BIN) benchmarks/bench.py
	$(MAKE) --no-print-directory bench-readme SETUP=$(SETUP)

bench-readme: $(SETUP) ## the README's speed sections and targets, from benchmarks/results*.json
	$(PYTHON_BIN) benchmarks/judge.py

test: lint ## ruff, then the whole test suite
	$(BIN)/pytest -q

lint: $(SETUP) ## ruff check and format check
	$(BIN)/ruff check regcli tests benchmarks samples
	$(BIN)/ruff format --check regcli tests benchmarks samples

format: $(SETUP) ## apply ruff's fixes and formatting
	$(BIN)/ruff check --fix regcli tests benchmarks samples
	$(BIN)/ruff format regcli tests benchmarks samples

clean: ## remove the virtual environment and caches
	rm -rf $(VENV) .pytest_cache .ruff_cache *.egg-info

comma := ,
