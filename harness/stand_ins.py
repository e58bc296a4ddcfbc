"""A run's DataModule and model without training its prerequisites first.

A trained prerequisite (Tekin's 2D heatmap network, Habibie's stage 1, ...) is replaced by an
untrained network of the same run config, saved as the Lightning checkpoint the method loads
as it would a trained one; a fitted artifact (Tome's pose prior) is fitted as for a real run;
``init_from`` is loaded as :func:`harness.train.run` loads it. Used by the checks that build
every experiment at full size without training anything (:mod:`harness.gpu_check`,
:mod:`harness.dry_run`).
"""
from __future__ import annotations

from pathlib import Path


def stand_in_checkpoint(declaration, consumer, folder: Path) -> str:
    """An untrained network of the prerequisite run's config, saved as a Lightning checkpoint."""
    import lightning
    import torch
    from omegaconf import OmegaConf

    from datamodules import DATAMODULES
    from harness.prerequisites import trained_run_config
    from lightning_modules import MODELS

    cfg = trained_run_config(declaration, consumer)
    datamodule = DATAMODULES.load(cfg.data.name)(OmegaConf.to_container(cfg.data))
    model = MODELS.load(cfg.model.name)(model=OmegaConf.to_container(cfg.model), optim=OmegaConf.to_container(cfg.optim),
                                        data_info=datamodule.info.as_dict())
    path = folder / f"stand-in-{cfg.experiment}-{cfg.preset}.ckpt"
    torch.save({"state_dict": model.state_dict(), "hyper_parameters": dict(model.hparams),
                "pytorch-lightning_version": lightning.__version__, "epoch": 0, "global_step": 0}, path)
    return str(path)


def build(experiment: str, preset: str, folder: Path, overrides: tuple[str, ...] = (), workers: int | None = None):
    """(cfg, datamodule, model) of one experiment at ``preset`` with command-line ``overrides``,
    its prerequisites stood in or fitted under ``folder``; ``workers``: the DataLoader workers
    (None: the config's)."""
    from omegaconf import OmegaConf

    from datamodules import DATAMODULES
    from harness.init_from import load_matching
    from harness.prerequisites import ensure_fitted_artifact
    from harness.train import load_config
    from lightning_modules import MODELS
    from pose3d.prerequisites import FittedArtifact, TrainedRun

    cfg = load_config([f"experiment={experiment}", f"preset={preset}", f"results_dir={folder}", "logger.wandb=false",
                       *overrides])
    method = MODELS.load(cfg.model.name)
    for declaration in method.prerequisites(cfg):
        if isinstance(declaration, TrainedRun):
            path = stand_in_checkpoint(declaration, cfg, folder)
        elif isinstance(declaration, FittedArtifact):
            path, _ = ensure_fitted_artifact(declaration, cfg)
        else:
            raise TypeError(f"unknown prerequisite {declaration!r}")
        OmegaConf.update(cfg, declaration.into, path, merge=False)
    data = OmegaConf.to_container(cfg.data)
    if workers is not None:
        data["num_workers"] = workers
    datamodule = DATAMODULES.load(cfg.data.name)(data)
    model = method(model=OmegaConf.to_container(cfg.model), optim=OmegaConf.to_container(cfg.optim),
                   data_info=datamodule.info.as_dict())
    if cfg.init_from:
        load_matching(model, cfg.init_from)
    datamodule.request_targets(model.required_targets())
    return cfg, datamodule, model
