# pose3d-lab entry points. Every target installs the project first (once).
SHELL := /bin/bash
PYTHON_BIN ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
EXP ?= baseline
PRESET ?= quick
SEEDS ?= 1
ARGS ?=
DEVICES ?=

export NO_ALBUMENTATIONS_UPDATE := 1
export WANDB_DIR ?= $(CURDIR)/results/wandb
export WANDB_CACHE_DIR ?= $(CURDIR)/results/.wandb-cache
export PYTHONDONTWRITEBYTECODE := 1

.PHONY: install test test-slow train smoke bench clean

install: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON_BIN) -m venv $(VENV)
	$(PY) -m pip install --quiet torch==2.13.0
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

test: install
	WANDB_MODE=disabled $(PY) -m pytest -q -n 2 --dist loadfile

test-slow: install
	WANDB_MODE=disabled $(PY) -m pytest -q -m slow

train: install
	$(PY) -m pose3d.train experiment=$(EXP) preset=$(PRESET) $(ARGS)

smoke: install
	for exp in $$(ls experiments/*.yaml | xargs -n1 basename | sed 's/\.yaml$$//'); do \
		WANDB_MODE=$${WANDB_MODE:-offline} $(PY) -m pose3d.train experiment=$$exp preset=smoke overwrite=true || exit 1; \
	done

# make ablation-fusion [PRESET=smoke|quick|paper] [SEEDS=n] [DEVICES=0,1] [ARGS="key=value ..."]
ablation-%: install
	$(PY) -m pose3d.ablation run ablations/$*.yaml --preset $(PRESET) --seeds $(SEEDS) $(if $(DEVICES),--devices $(DEVICES)) -- $(ARGS)

sweep-%: install
	$(PY) -m pose3d.ablation sweep ablations/$*.yaml

bench: install
	$(PY) -m pose3d.bench render

clean:
	rm -rf results/runs results/bench results/ablation-*
