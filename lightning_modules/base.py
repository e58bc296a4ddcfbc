"""What every method shares: evaluation with the metric suite, logging, the optimiser, a NaN guard.

A method subclasses :class:`PoseModule`, declares its ``Config`` dataclass (the schema of
``model.*`` in a run config), and implements two methods:

* ``training_loss(batch) -> (loss, logs)``: the paper's objective on one batch;
* ``predict(batch) -> dict``: ``joints_3d`` (B, J, 3) root-relative mm and/or
  ``joints_2d`` (B, J, 2) crop pixels (a 2D-only network such as the heatmap net gives
  only the latter), plus one ``aux`` dict of anything else the method's metrics or
  analyses read (per-stage 2D, stream inputs, hypotheses).

Validation and test then log ``val/<metric>`` and ``test/<metric>`` (DESIGN.md): the 3D
suite for ``joints_3d``; pixel error and PCKh@0.5 for ``joints_2d`` (the head size is the
ground-truth 2D neck-to-head-top segment, our stand-in for MPII's head box, unless the batch
carries the dataset's ``head_size``), or, where the batch carries LSP's ``torso_size``, PCK@0.2
of the torso as ``<stage>/pck`` instead of PCKh; 2D and 3D metrics score ``DataInfo.eval_joints``
only (a protocol's joint subset: MPII's 14 without pelvis and thorax, LSP's 14), with a per-action breakdown of the test metrics in
:attr:`PoseModule.test_per_action` and, where the data has actions, ``test/<metric>_action_avg``
(the mean of the per-action means, Human3.6M papers' "Avg"; :data:`pose3d.metrics.ACTION_AVERAGED`). ``monitor`` names the validation metric that picks the
best checkpoint.

Extension points (each one mechanism for every method; see docs/adding_a_method.md):

* ``prerequisites(cfg)`` (classmethod): declarations of what must exist before the model is
  built (:mod:`pose3d.prerequisites`); the harness resolves them into the config;
* ``required_targets()``: optional batch keys rendered by the DataModule (heatmaps, maps);
* ``method_metrics()``: torchmetrics ``Metric``s created once, cloned per stage, synced under
  DDP and logged as ``val/<name>`` / ``test/<name>``; ``update_method_metrics(metrics,
  batch, prediction, stage)`` feeds them from the same prediction the suite scores;
* ``analyse(run_dir)``: after testing, on the main process, write figures and JSON;
* ``parameter_groups()``: optimiser groups (a method may give some parameters their own
  learning rate); parameters loaded by ``init_from`` get ``optim.pretrained_lr_scale``.
"""
from __future__ import annotations

import math
from collections import defaultdict
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import torch
from omegaconf import OmegaConf
from torch import Tensor

from torchmetrics import Metric

from pose3d.contract import DataInfo
from pose3d.metrics import PCKh, PixelError, action_averages, pose3d_metrics
from pose3d.skeleton import JOINT_INDEX


def head_size_2d(joints_2d: Tensor) -> Tensor:
    """PCKh normaliser (B,): the 2D length of the neck -> head-top segment (MPII's upper neck ->
    head top, whose length the official 0.6 x head-box diagonal approximates)."""
    return (joints_2d[:, JOINT_INDEX["head"]] - joints_2d[:, JOINT_INDEX["neck"]]).norm(dim=-1)


class PoseModule(pl.LightningModule):
    Config: type
    monitor: tuple[str, str] = ("val/mpjpe", "min")  # (metric, mode) choosing the best checkpoint
    # whether its training objective needs 3D labels: the harness refuses, before training, data whose
    # training split has none (datamodules' ``train_has_3d``); a 2D network or a method whose 3D comes from
    # elsewhere (a pose prior) says False
    needs_3d: bool = True

    def __init__(self, model: dict, optim: dict, data_info: dict | DataInfo):
        super().__init__()
        self.save_hyperparameters()
        self.cfg = OmegaConf.merge(OmegaConf.structured(self.Config), model)
        self.optim_cfg = OmegaConf.create(optim)
        self.data_info = DataInfo.from_any(data_info)
        num_actions = len(self.data_info.action_names) or None
        self.val_metrics = pose3d_metrics()
        self.test_metrics = pose3d_metrics(num_actions=num_actions)
        self.val_pixel_error = PixelError()
        self.test_pixel_error = PixelError()
        self.val_pckh = PCKh(alpha=0.5)
        self.test_pckh = PCKh(alpha=0.5)
        self.val_pck_torso = PCKh(alpha=0.2)  # LSP's PCK@0.2: the same formula over the torso size
        self.test_pck_torso = PCKh(alpha=0.2)
        self.test_per_action: dict[str, dict[str, float]] = {}
        # the 3D suite per test domain (``domain`` ids of the batch, DataInfo.domains), logged as <stage>/<domain>/<metric>
        self.domain_metrics = torch.nn.ModuleDict({stage: torch.nn.ModuleDict(
            {domain: pose3d_metrics() for domain in self.data_info.domains}) for stage in ("val", "test")})
        own = self.method_metrics()
        self.own_metrics = torch.nn.ModuleDict(
            {stage: torch.nn.ModuleDict({name: metric.clone() for name, metric in own.items()}) for stage in ("val", "test")}
        )
        self.pretrained_names: set[str] = set()  # parameters loaded by init_from (see parameter_groups)
        self.unscored_3d: dict[str, bool] = {}  # stage -> 3D was predicted but the split has no 3D labels
        scored = torch.zeros(self.data_info.num_joints, dtype=torch.bool)
        scored[list(self.data_info.eval_joints or range(self.data_info.num_joints))] = True
        self.register_buffer("scored_joints", scored, persistent=False)

    # -- to implement -------------------------------------------------------------
    def training_loss(self, batch: dict[str, Tensor]) -> tuple[Tensor, dict[str, Tensor]]:
        raise NotImplementedError

    def predict(self, batch: dict[str, Tensor]) -> dict[str, Tensor]:
        raise NotImplementedError

    # -- optional extension points ------------------------------------------------
    @classmethod
    def image_size_multiple(cls, model_cfg) -> int:
        """What ``data.image_size`` must be a multiple of for this method's network with the model
        config ``model_cfg`` (its input stride); checked when the run's config is built."""
        return 1

    @classmethod
    def prerequisites(cls, cfg) -> list:
        """What must exist before this run's model is built, given its resolved config:
        :class:`pose3d.prerequisites.TrainedRun` / ``FittedArtifact`` declarations whose
        resolved paths the harness writes into ``cfg`` at their ``into`` keys."""
        return []

    def required_targets(self) -> dict[str, dict]:
        """Optional batch keys this method trains on (see :mod:`datamodules.targets`)."""
        return {}

    def method_metrics(self) -> dict[str, Metric]:
        """The method's own metrics (created once here; the base keeps a copy per stage)."""
        return {}

    def update_method_metrics(self, metrics: dict[str, Metric], batch: dict[str, Tensor],
                              prediction: dict[str, Any], stage: str) -> None:
        """Update this stage's copies of :meth:`method_metrics` from the scored prediction."""

    def analyse(self, run_dir: Path) -> None:
        """After testing, on the main process: write the method's figures and JSON into ``run_dir``."""

    @classmethod
    def summarise_ablation(cls, run_dirs: list[Path], out_dir: Path, reference: dict) -> str:
        """After an ablation's shared summary: write the method's own tables and figures of the
        finished ``run_dirs`` into ``out_dir`` (``reference``: the axis's block of
        ``ablations/references.yaml``) and return markdown to print under the table, or ""."""
        return ""

    @classmethod
    def from_checkpoint(cls, checkpoint: dict) -> "PoseModule":
        """The trained module of a checkpoint already read as data
        (:func:`pose3d.safe_load.load_checkpoint`): built from its hyper-parameters, then its
        method state (``on_load_checkpoint``) and weights loaded, as Lightning's
        ``load_from_checkpoint`` does without reading the file again."""
        hparams = checkpoint["hyper_parameters"]
        module = cls(model=hparams["model"], optim=hparams["optim"], data_info=hparams["data_info"])
        module.on_load_checkpoint(checkpoint)
        module.load_state_dict(checkpoint["state_dict"])
        return module

    # -- training -----------------------------------------------------------------
    def training_step(self, batch: dict[str, Tensor], batch_idx: int) -> Tensor:
        loss, logs = self.training_loss(batch)
        if not torch.isfinite(loss):
            raise FloatingPointError(
                f"training loss is {loss.item()} at step {self.global_step} (epoch {self.current_epoch}); "
                "expected a finite loss: lower optim.lr or check the data (checkpoints already written are kept)"
            )
        batch_size = batch["image"].shape[0]
        self.log("train/loss", loss, prog_bar=True, batch_size=batch_size)
        for name, value in logs.items():
            self.log(f"train/{name}", value, batch_size=batch_size)
        return loss

    # -- evaluation ---------------------------------------------------------------
    def _stage_metrics(self, stage: str) -> tuple:
        if stage == "val":
            return self.val_metrics, self.val_pixel_error, self.val_pckh, self.val_pck_torso
        return self.test_metrics, self.test_pixel_error, self.test_pckh, self.test_pck_torso

    def _update_metrics(self, batch: dict[str, Tensor], stage: str) -> dict[str, Tensor]:
        metrics, pixel_error, pckh, pck_torso = self._stage_metrics(stage)
        prediction = self.predict(batch)
        if "joints_3d" in prediction:
            self.unscored_3d.setdefault(stage, True)
            joint_mask = batch["has_3d"][:, None] & self.scored_joints
            if joint_mask.any() or stage == "val":  # a 2D-only test split (MPII, LSP) has no 3D to score;
                self.unscored_3d[stage] = False  # validation still logs its (NaN) monitor for the checkpoint
                metrics.update(prediction["joints_3d"].float(), batch["joints_3d"], joint_mask, batch["action"])
                for index, domain in enumerate(self.data_info.domains):
                    mask = joint_mask & (batch["domain"] == index)[:, None]
                    if mask.any():
                        self.domain_metrics[stage][domain].update(prediction["joints_3d"].float(), batch["joints_3d"], mask)
        if "joints_2d" in prediction:
            # the labelled joints among those the protocol scores (MPII's PCKh: 14 without pelvis and thorax)
            mask_2d = batch["has_2d"][:, None] & batch["visible"] & self.scored_joints
            pred_2d = prediction["joints_2d"].float()
            pixel_error.update(pred_2d, batch["joints_2d"], mask_2d)
            if "torso_size" in batch:  # LSP: PCK@0.2 of the torso (the data defines no head size)
                pck_torso.update(pred_2d, batch["joints_2d"], batch["torso_size"], mask_2d)
            else:  # PCKh@0.5: MPII's head size, elsewhere the neck -> head-top length
                head_size = batch["head_size"] if "head_size" in batch else head_size_2d(batch["joints_2d"])
                pckh.update(pred_2d, batch["joints_2d"], head_size, mask_2d)
        self.update_method_metrics(dict(self.own_metrics[stage]), batch, prediction, stage)
        return prediction

    def _log_metrics(self, stage: str) -> None:
        metrics, pixel_error, pckh, pck_torso = self._stage_metrics(stage)
        values = {}
        if any(m.update_called for m in metrics.values()):
            values.update({f"{stage}/{name}": value for name, value in metrics.compute().items()})
        for domain, suite in self.domain_metrics[stage].items():
            if any(m.update_called for m in suite.values()):
                values.update({f"{stage}/{domain}/{name}": value for name, value in suite.compute().items()})
        if pixel_error.update_called:
            values[f"{stage}/pixel_error"] = pixel_error.compute()
        if pckh.update_called:
            values[f"{stage}/pckh"] = pckh.compute()
        if pck_torso.update_called:
            values[f"{stage}/pck"] = pck_torso.compute()
        for name, metric in self.own_metrics[stage].items():
            if metric.update_called:
                values[f"{stage}/{name}"] = metric.compute()
        self.log_dict(values, prog_bar=stage == "val")

    def _reset_metrics(self, stage: str) -> None:
        for metric in (*self._stage_metrics(stage), *self.own_metrics[stage].values(), *self.domain_metrics[stage].values()):
            metric.reset()

    def validation_step(self, batch: dict[str, Tensor], batch_idx: int) -> None:
        self._update_metrics(batch, "val")

    def on_validation_epoch_end(self) -> None:
        self._log_metrics("val")
        self._reset_metrics("val")

    def test_step(self, batch: dict[str, Tensor], batch_idx: int) -> None:
        self._update_metrics(batch, "test")

    def on_test_epoch_end(self) -> None:
        self._log_metrics("test")
        names = self.data_info.action_names
        per_action: dict[str, dict[str, float]] = defaultdict(dict)
        for metric_name, metric in self.test_metrics.items():
            if not metric.update_called or not names:  # no actions (MPII, LSP): no breakdown
                continue
            for action, value in metric.compute_per_action().items():
                per_action[names[action] if action < len(names) else str(action)][metric_name] = value
        self.test_per_action = dict(per_action)
        if names:  # Human3.6M papers' "Avg": the mean of the per-action means, beside the pooled test/<metric>
            self.log_dict({f"test/{name}": value for name, value in action_averages(self.test_metrics).items()})
        self._reset_metrics("test")

    # -- optimisation -------------------------------------------------------------
    def parameter_groups(self) -> list[dict]:
        """Optimiser parameter groups; a method may override it to give some parameters their
        own settings (e.g. Tekin's alpha and beta)."""
        return [{"params": [p for p in self.parameters() if p.requires_grad]}]

    def configure_optimizers(self) -> Any:
        groups = split_pretrained(self.parameter_groups(), self.named_parameters(), self.pretrained_names,
                                  self.optim_cfg.get("pretrained_lr_scale", 1.0), self.optim_cfg.lr)
        return build_optimizer(groups, self.optim_cfg, self.trainer.max_epochs)


def split_pretrained(groups: list[dict], named_parameters, pretrained: set[str], scale: float, lr: float) -> list[dict]:
    """``groups`` with the parameters named in ``pretrained`` moved to copies of their group
    whose learning rate is ``scale`` times the group's (fine-tuning a loaded network slower
    than the new layers, e.g. Habibie et al. 2019, Sec. 4.2: a factor of 100)."""
    if not pretrained or scale == 1.0:
        return groups
    loaded = {id(p) for name, p in named_parameters if name in pretrained}
    out = []
    for group in groups:
        fresh = [p for p in group["params"] if id(p) not in loaded]
        old = [p for p in group["params"] if id(p) in loaded]
        if fresh:
            out.append({**group, "params": fresh})
        if old:
            out.append({**group, "params": old, "lr": group.get("lr", lr) * scale})
    return out


def phase_schedule(optim, start: int, end: int):
    """The learning-rate factor per epoch of a parameter group trained from epoch ``start`` to
    ``end``: the configured schedule (``cosine`` over the group's own epochs, ``step`` every
    ``step_size`` of them) counted from ``start`` (1 before it, when the group does not train)."""
    span = max(1, end - start)

    def factor(epoch: int) -> float:
        t = min(max(0, epoch - start), span)
        if optim.scheduler == "cosine":
            return 0.5 * (1.0 + math.cos(math.pi * t / span))
        return optim.gamma ** (t // optim.step_size)

    return factor


def build_optimizer(parameters, optim, max_epochs: int) -> Any:
    """Adam / AdamW / SGD / Adadelta with an optional per-epoch cosine or step schedule.

    A parameter group that names its training phase, ``"epochs": (start, end)`` (``end`` None:
    the run's last epoch), gets the schedule restarted at its own first epoch
    (:func:`phase_schedule`), so that a method training its networks one after another (e.g.
    DeepSkeleton's deconvolution, then regression networks) starts each phase at its own
    learning rate; the other groups' schedules span the whole run."""
    if optim.name == "adam":
        optimizer = torch.optim.Adam(parameters, lr=optim.lr, weight_decay=optim.weight_decay)
    elif optim.name == "adamw":
        optimizer = torch.optim.AdamW(parameters, lr=optim.lr, weight_decay=optim.weight_decay)
    elif optim.name == "adadelta":
        optimizer = torch.optim.Adadelta(parameters, lr=optim.lr, rho=optim.rho, weight_decay=optim.weight_decay)
    else:
        optimizer = torch.optim.SGD(parameters, lr=optim.lr, momentum=optim.momentum, weight_decay=optim.weight_decay)
    if optim.scheduler == "none":
        return optimizer
    phases = [group.get("epochs") for group in optimizer.param_groups]
    if any(phase is not None for phase in phases):
        scheduler = torch.optim.lr_scheduler.LambdaLR(
            optimizer, [phase_schedule(optim, start, max_epochs if end is None else end)
                        for start, end in (phase or (0, None) for phase in phases)])
    elif optim.scheduler == "cosine":
        scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=max(1, max_epochs))
    else:
        scheduler = torch.optim.lr_scheduler.StepLR(optimizer, step_size=optim.step_size, gamma=optim.gamma)
    return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "epoch"}}


def masked_mean(values: Tensor, mask: Tensor) -> Tensor:
    """Mean of ``values`` (B, ...) over samples where ``mask`` (B,) is true; 0 (with a gradient) if none."""
    weights = mask.to(values.dtype).view(-1, *([1] * (values.dim() - 1))).expand_as(values)
    return (values * weights).sum() / weights.sum().clamp(min=1.0)
