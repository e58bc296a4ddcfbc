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
JOBS ?= auto
LAUNCHER ?= local
SLURM ?=
# W&B's sweep engine. Its wheel declares numpy<2 (the project pins numpy 2.4.6), but what we
# use of it, grid planning (next_run), the schema check (schema_violations_from_proposed_config)
# and random/Bayes search, runs on numpy 2: tests/test_ablation.py plans every sweep file with
# it. So it is installed without its declared requirements, which pyproject.toml pins instead
# (scipy, pyyaml, scikit-learn, jsonschema, jsonref; pydantic comes with wandb). `pip check`
# reports this one mismatch.
SWEEPS := sweeps==0.3.0

export NO_ALBUMENTATIONS_UPDATE := 1
export WANDB_DIR ?= $(CURDIR)/results/wandb
export WANDB_CACHE_DIR ?= $(CURDIR)/results/.wandb-cache
export PYTHONDONTWRITEBYTECODE := 1

.PHONY: install test test-slow train smoke dry-run bench gpu-check slurm-check compare report clean

install: $(STAMP)

$(STAMP): pyproject.toml Makefile
	@echo "install: a Python virtual environment in $(VENV) ($(PYTHON_BIN))"
	test -x $(PY) || $(PYTHON_BIN) -m venv $(VENV)
	@echo "install: torch 2.13.0, the largest download (a few minutes on a first install)"
	$(PY) -m pip install --quiet torch==2.13.0
	@echo "install: the project and its pinned dependencies (pyproject.toml: lightning, wandb, albumentations, ...)"
	$(PY) -m pip install --quiet -e '.[dev]'
	@echo "install: W&B's sweep engine ($(SWEEPS); its declared numpy<2 is left out, as the Makefile explains)"
	$(PY) -m pip install --quiet --no-deps $(SWEEPS)
	touch $(STAMP)
	@echo "install: done; $(VENV)/bin/python runs the project (python -m pose3d.train --help lists what it runs)"

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

# make ablation-fusion [PRESET=smoke|quick|paper] [SEEDS=n] [DEVICES=0,1 | JOBS=auto|n] [ARGS="key=value ..."]
#                     [LAUNCHER=local|slurm|submitit-local] [SLURM="partition=gpu gpus_per_node=1 timeout_min=600"]
ablation-%: install
	$(PY) -m pose3d.ablation run ablations/$*.yaml --preset $(PRESET) --seeds $(SEEDS) $(if $(DEVICES),--devices $(DEVICES)) --jobs $(JOBS) \
		--launcher $(LAUNCHER) $(if $(SLURM),--slurm "$(SLURM)") -- $(ARGS)

# the commands of an ablation, one a line, as a W&B agent runs them (nothing runs)
plan-%: install
	$(PY) -m pose3d.ablation plan ablations/$*.yaml $(if $(filter command line environment,$(origin PRESET)),--preset $(PRESET)) \
		$(if $(filter command line environment,$(origin SEEDS)),--seeds $(SEEDS)) -- $(ARGS)

summary-%: install
	$(PY) -m pose3d.ablation summary ablations/$*.yaml --preset $(PRESET) --seeds $(SEEDS) -- $(ARGS)

# every method's headline variant on the same data -> results/compare/ (ARGS as for ablations)
compare: install
	$(PY) -m pose3d.compare run --preset $(PRESET) --seeds $(SEEDS) $(if $(DEVICES),--devices $(DEVICES)) --jobs $(JOBS) -- $(ARGS)

# the tables and figures of README.md and docs/results/ rewritten from a results folder
# (make report [RESULTS=results]; the prose around them stays hand-written)
report: install
	$(PY) -m pose3d.report --results $(or $(RESULTS),results)

sweep-%: install
	$(PY) -m pose3d.ablation sweep ablations/$*.yaml

# every experiment x preset builds and takes one training and one validation step on the CPU, the
# paper presets also on a tiny Human3.6M copy -> results/dry_run.json (parameters, memory per image)
dry-run: install
	$(PY) -m tests.fixtures_h36m results/dry-run/h36m
	$(PY) -m harness.dry_run --human36m-root results/dry-run/h36m --out results/dry_run.json

bench: install
	$(PY) -m pose3d.bench render

# the SLURM launcher on a SLURM cluster (tests/test_slurm.py, 15 minutes on a busy 2-core machine); on this
# machine: `slurm/local_cluster.sh up` first (a one-node cluster; CI does so), `down` after
slurm-check: install
	POSE3D_SLURM_REQUIRED=1 WANDB_MODE=disabled $(PY) -m pytest -q -p no:xdist -m slurm tests/test_slurm.py

# every experiment's paper preset on this machine's GPU -> results/bench/gpu.json (says so and exits 0 without CUDA)
gpu-check: install
	$(PY) -m harness.gpu_check

clean:
	rm -rf results/runs results/bench results/ablation-* results/compare results/dry-run results/dry_run.json
