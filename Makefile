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
# The main job (make all-variants) trains into MAIN: models/main-job/<variant>/ and its figures
# in figures/main-job/, never the committed study (models/<variant>/, images/, the README).
# Rerun, it continues where it stopped: finished runs of the same settings are reused and
# interrupted ones resumed; FORCE=1 trains them again. SEEDS=N trains seeds 0..N-1 per variant
# (<variant>/seed-<k>/), else one run per variant with SEED. MAIN=models reproduces the
# committed study in place, and its report then rewrites the README from those runs' records.
MAIN ?= models/main-job
MAIN_DIR = $(patsubst ./%,%,$(patsubst %/,%,$(MAIN)))
IN_STUDY = $(filter models,$(MAIN_DIR))
MAIN_IMAGES = $(if $(IN_STUDY),images,figures/$(notdir $(MAIN_DIR)))
SEEDS ?=
FORCE ?=
FORCE_ARG = $(if $(filter 1 yes true,$(FORCE)),--force)
SEED_ARGS = $(if $(SEEDS),--seeds $(SEEDS),--seed $(SEED)) $(FORCE_ARG)
# the four-variant study in a folder: each variant and its seeds
STUDY_IN = $(foreach v,$(VARIANTS),$(1)/$(v) $(sort $(wildcard $(1)/$(v)/seed-*)))
STUDY = $(call STUDY_IN,models)
SWEEP := models/sweep

.DEFAULT_GOAL := help
.PHONY: help install train all-variants study-onnx main-report sweep atlas prune-study report bench bench-main-job bench-readme test test-examples lint format clean

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-14s %s\n", $$1, $$2}'

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --disable-pip-version-check -e '.[dev]'
	touch $(STAMP)

install: $(STAMP) ## build .venv and install regcli (editable) with the dev tools

train: $(SETUP) ## train one model into models/main-job/<mode>/ (or <mode>-1, ... if taken): make train L1=1e-5 WD=1e-4 (EPOCHS, SEED, FORCE=1)
	$(REGCLI) train --l1 $(L1) --weight-decay $(WD) --epochs $(EPOCHS) --seed $(SEED) \
		--models-dir $(MAIN) --images-dir $(MAIN_IMAGES) $(FORCE_ARG)

all-variants: $(SETUP) ## the main job: none/l1/l2/l1_l2 into models/main-job/ (SEEDS=5: seeds 0..4; MAIN=models: the committed study), exported, evaluated, reported; rerun to continue
	$(REGCLI) train --variants $(subst $() ,$(comma),$(VARIANTS)) --l1 $(L1) --weight-decay $(WD) \
		--epochs $(EPOCHS) $(SEED_ARGS) --models-dir $(MAIN) --images-dir $(MAIN_IMAGES)
	$(MAKE) --no-print-directory study-onnx main-report MAIN=$(MAIN) SETUP=$(SETUP) REGCLI="$(REGCLI)"

study-onnx: $(SETUP) ## export the main job's models (MAIN) and evaluate them with PyTorch and onnxruntime
	$(REGCLI) export $(call STUDY_IN,$(MAIN)) --models-dir $(MAIN)
	$(REGCLI) evaluate $(call STUDY_IN,$(MAIN)) --models-dir $(MAIN) --backend torch --quiet
	$(REGCLI) evaluate $(call STUDY_IN,$(MAIN)) --models-dir $(MAIN) --backend onnx --quiet

main-report: $(SETUP) ## the main job's figures and results table (MAIN=models: make report, the README's)
ifeq ($(IN_STUDY),models)
	$(MAKE) --no-print-directory report SETUP=$(SETUP) REGCLI="$(REGCLI)"
else
	$(REGCLI) report $(call STUDY_IN,$(MAIN)) --models-dir $(MAIN) --images-dir $(MAIN_IMAGES) --quiet
	$(REGCLI) compare $(call STUDY_IN,$(MAIN)) --models-dir $(MAIN) --images-dir $(MAIN_IMAGES) --markdown
endif

# the committed path's grid (regcli sweep's default grids now reach further; see config.py)
PATH_L1 := 0,1e-6,3e-6,1e-5,3e-5,1e-4,3e-4,1e-3
PATH_WD := 0,1e-5,3e-5,1e-4,3e-4,1e-3,3e-3

sweep: $(SETUP) ## the regularization path: 14 strengths x 5 seeds x EPOCHS (for a GPU), exported, reported
	$(REGCLI) sweep --name $(notdir $(SWEEP)) --seeds 5 --epochs $(EPOCHS) --l1 $(PATH_L1) --weight-decay $(PATH_WD)
	$(REGCLI) export --models-dir $(SWEEP)
	$(MAKE) --no-print-directory report SETUP=$(SETUP) REGCLI="$(REGCLI)"

# the atlas: training-set size x strength on a CPU, one model per core side by side (the
# default CPU layout); 60,000 images come from the committed path
ATLAS := models/atlas
ATLAS_L1 := 0,3e-6,1e-5,3e-5,1e-4,3e-4,1e-3,3e-3
ATLAS_WD := 0,3e-5,1e-4,3e-4,1e-3,3e-3,1e-2,3e-2
ATLAS_ARGS = --name $(notdir $(ATLAS)) --l1 $(ATLAS_L1) --weight-decay $(ATLAS_WD) --seeds 5 \
	--epochs 5 --min-steps 600 --val-size 1000 --train-sizes 500,1000,2000,5000

atlas: $(SETUP) ## the atlas: 4 sizes x 15 cells x 5 seeds on a CPU (its measured time: README), exported, reported
	$(REGCLI) sweep $(ATLAS_ARGS)
	$(REGCLI) export --models-dir $(ATLAS) --quiet
	$(MAKE) --no-print-directory report SETUP=$(SETUP) REGCLI="$(REGCLI)"

# pruning with retraining (Han et al. 2015) on a CPU, from the committed path: none and each
# penalty's strongest strength there, 5 seeds each, pruned to each level and retrained one-shot
# (1 epoch) and iteratively (2 prune-then-retrain steps of 1 epoch), one model per core
PRUNED := models/pruned
PRUNE_SOURCES := $(SWEEP)/l1-0_wd-0 $(SWEEP)/l1-0.001_wd-0 $(SWEEP)/l1-0_wd-0.003
PRUNE_LEVELS := 0.8,0.9,0.95
PRUNE_ARGS = $(PRUNE_SOURCES) --name $(notdir $(PRUNED)) --retrain 1 --sparsity $(PRUNE_LEVELS)

prune-study: $(SETUP) ## pruning with retraining: 3 cells x 5 seeds x 3 levels, one-shot and iterative, on a CPU, reported
	$(REGCLI) prune $(PRUNE_ARGS)
	$(REGCLI) prune $(PRUNE_ARGS) --iterative 2
	$(MAKE) --no-print-directory report SETUP=$(SETUP) REGCLI="$(REGCLI)"

report: $(SETUP) ## every figure and the README's result tables, from the study's models (no training)
	$(REGCLI) report $(STUDY) $(if $(wildcard $(SWEEP)),--sweep $(SWEEP)) \
		$(if $(wildcard $(ATLAS)),--atlas $(ATLAS)) $(if $(wildcard $(PRUNED)),--pruned $(PRUNED)) \
		--readme README.md

bench: $(SETUP) ## measure training and inference speed (CPU, or the GPU studies on CUDA), then judge
	$(PYTHON_BIN) benchmarks/bench.py
	$(MAKE) --no-print-directory bench-readme SETUP=$(SETUP)

bench-main-job: $(SETUP) ## time make all-variants' training: the code from before the CPU layout work, and today's in the previous and the default layout, then judge
	$(PYTHON_BIN) benchmarks/layouts.py
	$(MAKE) --no-print-directory bench-readme SETUP=$(SETUP)

bench-readme: $(SETUP) ## the README's speed sections and targets, from benchmarks/results*.json
	$(PYTHON_BIN) benchmarks/judge.py

test: lint ## ruff, then the whole test suite
	$(BIN)/pytest -q

test-examples: $(SETUP) ## the README's example block on a fresh clone, then git status (a minute or two)
	$(BIN)/pytest -q -m examples tests/test_readme_examples.py

lint: $(SETUP) ## ruff check and format check
	$(BIN)/ruff check regcli tests benchmarks samples
	$(BIN)/ruff format --check regcli tests benchmarks samples

format: $(SETUP) ## apply ruff's fixes and formatting
	$(BIN)/ruff check --fix regcli tests benchmarks samples
	$(BIN)/ruff format regcli tests benchmarks samples

clean: ## remove the virtual environment and caches
	rm -rf $(VENV) .pytest_cache .ruff_cache *.egg-info

comma := ,
