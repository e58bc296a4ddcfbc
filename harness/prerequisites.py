"""Resolve a method's declared prerequisites (:mod:`pose3d.prerequisites`) before its run starts.

Every declaration goes through the same three steps:

1. a cache key from everything that determines the artifact (:func:`trained_run_key`,
   :func:`fitted_artifact_key`): for a trained run, its experiment file's text and its
   resolved config without the settings that cannot change its weights (run name, folders,
   logging, progress bars, threads); for a fitted file, its recipe. The consuming run's seed
   is not part of it, so every seed of an ablation shares one prerequisite;
2. one lock per key (:func:`harness.locks.exclusive`, ``fcntl.flock`` on a file beside the artifact):
   concurrent sweep agents on one file system wait while one of them builds; the kernel
   releases the lock of a holder that dies, so a killed agent never blocks the others;
3. the resolved path written into the consuming config at the declaration's ``into`` key,
   and a record (kind, what, key, path) under ``prerequisites`` of its ``config.yaml``.

A trained prerequisite runs with the consuming run's trainer settings (accelerator, devices,
nodes, strategy, precision, progress bar), threads, results folder and logger switch; an
interrupted one resumes from its ``last.ckpt``.
"""
from __future__ import annotations

import hashlib
import json
import os
import time
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from harness.locks import exclusive
from pose3d.config import EXPERIMENTS_DIR, ConfigError
from pose3d.prerequisites import FittedArtifact, TrainedRun

# run-config keys that cannot change a trained run's weights (left out of its cache key)
NOT_IN_KEY = ("name", "results_dir", "ckpt_path", "test_only", "overwrite", "threads", "logger", "prerequisites")
PASSED_ON_TRAINER = ("accelerator", "devices", "num_nodes", "strategy", "precision", "enable_progress_bar")
KEY_LENGTH = 10


def _digest(content: object) -> str:
    return hashlib.sha1(json.dumps(content, sort_keys=True, default=str).encode()).hexdigest()[:KEY_LENGTH]


# -- trained runs --------------------------------------------------------------------------
def trained_run_config(declaration: TrainedRun, consumer: DictConfig) -> DictConfig:
    """The prerequisite's full run config (its name not yet set)."""
    from harness.train import load_config

    overrides = [f"experiment={declaration.experiment}", f"preset={consumer.preset}", "seed=0"]
    if declaration.same_data:
        overrides.append(f"data.name={consumer.data.name}")
    cfg = load_config([*overrides, *declaration.overrides])
    if declaration.same_data:
        cfg.data = OmegaConf.merge(cfg.data, consumer.data)
    if declaration.data_overrides:
        cfg.data = OmegaConf.merge(cfg.data, declaration.data_overrides)
    for key in PASSED_ON_TRAINER:
        cfg.trainer[key] = consumer.trainer[key]
    cfg.threads = consumer.threads
    cfg.results_dir = consumer.results_dir
    cfg.logger.wandb = consumer.logger.wandb
    return cfg


def trained_run_key(cfg: DictConfig) -> str:
    """Hash of the prerequisite's experiment file and its weight-determining settings."""
    experiment_file = EXPERIMENTS_DIR / f"{cfg.experiment}.yaml"
    settings = {k: v for k, v in OmegaConf.to_container(cfg, resolve=True).items() if k not in NOT_IN_KEY}
    settings["trainer"] = {k: v for k, v in settings["trainer"].items() if k != "enable_progress_bar"}
    return _digest({"experiment_file": experiment_file.read_text(), "config": settings})


def ensure_trained_run(declaration: TrainedRun, consumer: DictConfig) -> tuple[str, str]:
    """(best checkpoint, key) of the prerequisite run, trained first unless already finished."""
    from harness.train import run

    cfg = trained_run_config(declaration, consumer)
    key = trained_run_key(cfg)
    cfg.name = f"{cfg.experiment}-{cfg.preset}-{key}"
    run_dir = Path(cfg.results_dir) / "runs" / cfg.name
    metrics_file = run_dir / "metrics.json"
    with exclusive(run_dir.parent / f".{cfg.name}.lock"):
        if not metrics_file.is_file():
            print(f"training prerequisite run {cfg.name} (experiment {cfg.experiment}) first", flush=True)
            if (run_dir / "checkpoints" / "last.ckpt").is_file():
                cfg.ckpt_path = "last"
            else:
                cfg.overwrite = True
            run(cfg)
        checkpoint = json.loads(metrics_file.read_text()).get("checkpoint")
    if not checkpoint or not Path(checkpoint).is_file():
        raise ConfigError(f"{metrics_file} names checkpoint {checkpoint!r}, which is missing; "
                          f"move {run_dir} away to retrain it")
    return checkpoint, key


# -- fitted artifacts ----------------------------------------------------------------------
def fitted_artifact_key(declaration: FittedArtifact) -> str:
    return _digest({"name": declaration.name, "recipe": declaration.recipe})


def ensure_fitted_artifact(declaration: FittedArtifact, consumer: DictConfig) -> tuple[str, str]:
    """(path, key) of the fitted file, built first (atomically, under the lock) if missing."""
    key = fitted_artifact_key(declaration)
    path = Path(consumer.results_dir) / declaration.folder / f"{declaration.name}-{key}{declaration.suffix}"
    with exclusive(path.parent / f".{path.name}.lock"):
        if not path.is_file():
            print(f"fitting {path.name} ({declaration.recipe}) first", flush=True)
            partial = path.parent / f".{path.stem}.{os.getpid()}.tmp{declaration.suffix}"
            started = time.perf_counter()
            declaration.build(partial)
            partial.replace(path)  # readers never see half a file
            record = {"fit_seconds": round(time.perf_counter() - started, 2), "recipe": declaration.recipe}
            artifact_record(path).write_text(json.dumps(record, indent=2, default=str) + "\n")
    return str(path), key


def artifact_record(path: Path) -> Path:
    """``<artifact>.json`` beside a fitted file: how long it took to fit, from which recipe."""
    return path.with_name(path.name + ".json")


def resolve(method: type, cfg: DictConfig) -> list[dict]:
    """Resolve ``method.prerequisites(cfg)`` into ``cfg`` and record them in ``cfg.prerequisites``."""
    records = []
    for declaration in method.prerequisites(cfg):
        if isinstance(declaration, TrainedRun):
            path, key = ensure_trained_run(declaration, cfg)
            record = {"kind": "trained_run", "experiment": declaration.experiment}
        elif isinstance(declaration, FittedArtifact):
            path, key = ensure_fitted_artifact(declaration, cfg)
            record = {"kind": "fitted_artifact", "name": declaration.name}
        else:
            raise TypeError(f"{method.__name__}.prerequisites returned {declaration!r}; expected TrainedRun or FittedArtifact")
        OmegaConf.update(cfg, declaration.into, path, merge=False)
        records.append({**record, "into": declaration.into, "key": key, "path": path})
    if records:
        cfg.prerequisites = records
    return records


def build_for(argument_lists: list[list[str]]) -> None:
    """Resolve the prerequisites of each run's ``key=value`` arguments, in order (the ablation
    runner's first step before parallel runs); a run's own training does not start."""
    import torch

    from harness.train import load_config
    from lightning_modules import MODELS

    for arguments in argument_lists:
        cfg = load_config(list(arguments))
        if cfg.threads > 0:
            torch.set_num_threads(cfg.threads)
        resolve(MODELS.load(cfg.model.name), cfg)


def main(argv: list[str] | None = None) -> int:
    """``python -m harness.prerequisites '[["experiment=tekin_fusion", ...], ...]'``"""
    import sys

    from harness.train import EXIT_BAD_CONFIG

    args = sys.argv[1:] if argv is None else argv
    expected = "expected one argument: a JSON list of runs' key=value argument lists"
    try:
        try:
            argument_lists = json.loads(args[0]) if len(args) == 1 else None
        except json.JSONDecodeError:
            raise ConfigError(f"{args[0]!r} is not JSON; {expected}") from None
        if not (isinstance(argument_lists, list) and all(isinstance(a, list) for a in argument_lists)):
            raise ConfigError(f"got {len(args)} argument(s); {expected}")
        build_for(argument_lists)
    except ConfigError as error:
        print(f"error: {error}", file=sys.stderr)
        return EXIT_BAD_CONFIG
    return 0


if __name__ == "__main__":
    import sys

    sys.exit(main())
