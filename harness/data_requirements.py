"""What a run's data must give before anything trains (its prerequisites included).

* every split the run reads has a sample: a training run reads all three (the validation split
  unless ``trainer.limit_val_batches=0``), a ``test_only`` run the test split (:meth:`datamodules.base.PoseDataModule.check_splits`); an empty split would
  otherwise stop the run at its first epoch, or after ``fit`` at testing;
* a method that learns 3D from labels (:attr:`lightning_modules.base.PoseModule.needs_3d`)
  trains on data whose training split has 3D labels
  (:attr:`datamodules.base.PoseDataModule.train_has_3d`): on 2D-only data its loss is 0
  and its validation MPJPE NaN, which would pick a "best" checkpoint on NaN.

Each failure is a one-line :class:`pose3d.config.ConfigError` (exit status 2).
"""
from __future__ import annotations

from omegaconf import DictConfig

from pose3d.config import ConfigError


def check_data(method: type, datamodule, cfg: DictConfig) -> None:
    """Raise a one-line :class:`ConfigError` where ``datamodule`` cannot serve the run ``cfg`` of ``method``."""
    validates = cfg.trainer.limit_val_batches != 0
    datamodule.check_splits(("test",) if cfg.test_only else ("train", "val", "test") if validates else ("train", "test"))
    if not cfg.test_only and method.needs_3d and not datamodule.train_has_3d:
        raise ConfigError(
            f"experiment={cfg.experiment} (model.name={cfg.model.name}) learns 3D from 3D labels, but the training "
            f"split of data.name={cfg.data.name} has none; expected training data with 3D labels (human36m, "
            "mpi_inf_3dhp, synthetic without data.train_domain=wild) or data.name=mixed, which gives both 3D and "
            "2D-only samples")
