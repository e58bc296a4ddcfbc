"""torchmetrics ``Metric`` classes for the functional metrics.

All of them share one pattern (:class:`SumCountMetric`): the state is the running
``total`` of per-item values and the ``count`` of valid items, both summed across
processes under DDP (``dist_reduce_fx="sum"``), and ``compute() = total / count``,
which equals the functional twin on the concatenation of every update. With
``num_actions`` the same two sums are also kept per action id.

A sample whose joints are all masked out (a 2D-only sample, ``has_3d`` False)
adds nothing. If nothing valid was seen at all, ``compute()`` returns NaN
(0 / 0) instead of raising; torchmetrics also warns when ``compute`` runs before
any ``update``.
"""
from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor
from torchmetrics import Metric, MetricCollection

from pose3d.metrics import functional as F
from pose3d.skeleton import H36M_BONES


class SumCountMetric(Metric):
    """Running mean ``total / count`` of per-item values, optionally per action.

    Subclasses compute per-sample ``(sums (B,), counts (B,))`` with a
    ``functional.*_sum_count`` function and pass them to :meth:`_accumulate`.
    Sums are kept in float64 so long evaluations do not lose precision.
    """

    full_state_update = False
    is_differentiable = False
    higher_is_better: bool | None = None

    def __init__(self, num_actions: int | None = None, **kwargs) -> None:
        super().__init__(**kwargs)
        self.num_actions = num_actions
        self.add_state("total", torch.zeros((), dtype=torch.float64), dist_reduce_fx="sum")
        self.add_state("count", torch.zeros((), dtype=torch.float64), dist_reduce_fx="sum")
        if num_actions is not None:
            self.add_state("action_total", torch.zeros(num_actions, dtype=torch.float64), dist_reduce_fx="sum")
            self.add_state("action_count", torch.zeros(num_actions, dtype=torch.float64), dist_reduce_fx="sum")

    def _accumulate(self, sums: Tensor, counts: Tensor, action: Tensor | None = None) -> None:
        sums, counts = sums.detach().double(), counts.detach().double()
        self.total += sums.sum()
        self.count += counts.sum()
        if self.num_actions is not None and action is not None:
            action = action.to(device=sums.device, dtype=torch.long).reshape(-1)
            if action.numel() and (action.min() < 0 or action.max() >= self.num_actions):
                raise ValueError(f"action ids must lie in [0, {self.num_actions}), got {action.tolist()}")
            self.action_total.index_add_(0, action, sums)
            self.action_count.index_add_(0, action, counts)

    def compute(self) -> Tensor:
        """Overall mean over every valid item seen; NaN if there was none."""
        return (self.total / self.count).to(torch.get_default_dtype())

    def compute_per_action(self) -> dict[int, float]:
        """``{action id: mean}`` for every action with at least one valid item (synced under DDP)."""
        if self.num_actions is None:
            raise RuntimeError(f"{type(self).__name__} was built without num_actions")
        with self.sync_context():
            seen = torch.nonzero(self.action_count > 0).flatten().tolist()
            return {a: (self.action_total[a] / self.action_count[a]).item() for a in seen}


class Pose3DMetric(SumCountMetric):
    """A 3D metric: a statistic of the joint errors under one alignment protocol.

    Updated with ``(pred, target, mask=None, action=None)``; ``alignment`` is one of
    :data:`functional.ALIGNMENTS` (``none``, ``scaled``, ``pa``, ``bone_scaled``). ``update`` also takes
    ``errors``, the batch's :func:`functional.aligned_errors` under this metric's
    alignment, already computed: :class:`Pose3DMetrics` aligns each batch once per
    protocol and hands the errors to every metric of that protocol.
    """

    def __init__(self, alignment: str = "none", num_actions: int | None = None, **kwargs) -> None:
        if alignment not in F.ALIGNMENTS:
            raise ValueError(f"unknown alignment '{alignment}'; choose one of: {', '.join(F.ALIGNMENTS)}")
        super().__init__(num_actions=num_actions, **kwargs)
        self.alignment = alignment

    def _statistic(self, errors: Tensor, mask: Tensor | None) -> F.SumCount:
        raise NotImplementedError

    def update(
        self,
        pred: Tensor,
        target: Tensor,
        mask: Tensor | None = None,
        action: Tensor | None = None,
        errors: Tensor | None = None,
    ) -> None:
        """pred, target (B, J, 3) mm; mask (B, J) bool; action (B,) int ids; errors (B, J) mm."""
        if errors is None:
            errors = F.aligned_errors(pred, target, mask, self.alignment)
        elif errors.shape != pred.shape[:2]:
            raise ValueError(f"errors must be (B, J) = {tuple(pred.shape[:2])}, got {tuple(errors.shape)}")
        self._accumulate(*self._statistic(errors, mask), action)


class MPJPE(Pose3DMetric):
    """Mean per-joint position error (mm), see :func:`functional.mpjpe`; any ``alignment``."""

    higher_is_better = False

    def _statistic(self, errors, mask):
        return F.mean_sum_count(errors, mask)


class PAMPJPE(MPJPE):
    """MPJPE after Procrustes alignment (mm), see :func:`functional.pa_mpjpe`."""

    def __init__(self, num_actions: int | None = None, **kwargs) -> None:
        super().__init__(alignment="pa", num_actions=num_actions, **kwargs)


class NMPJPE(MPJPE):
    """MPJPE after the optimal uniform scale (mm), see :func:`functional.n_mpjpe`."""

    def __init__(self, num_actions: int | None = None, **kwargs) -> None:
        super().__init__(alignment="scaled", num_actions=num_actions, **kwargs)


class PCK3D(Pose3DMetric):
    """Percentage of joints within ``threshold`` mm after ``alignment``, see :func:`functional.pck3d`
    (``scaled``: :func:`functional.pck3d_scaled`, ``pa``: :func:`functional.pck3d_pa`)."""

    higher_is_better = True

    def __init__(self, threshold: float = 150.0, alignment: str = "none", num_actions: int | None = None,
                 **kwargs) -> None:
        super().__init__(alignment=alignment, num_actions=num_actions, **kwargs)
        self.threshold = threshold

    def _statistic(self, errors, mask):
        return F.within_sum_count(errors, self.threshold, mask)


class AUC3D(Pose3DMetric):
    """Mean 3DPCK over 0, 5, ..., 150 mm in percent after ``alignment``, see :func:`functional.auc3d`
    (``scaled``: :func:`functional.auc3d_scaled`, ``pa``: :func:`functional.auc3d_pa`)."""

    higher_is_better = True

    def _statistic(self, errors, mask):
        return F.auc_sum_count(errors, mask)


class PixelError(SumCountMetric):
    """Mean 2D joint error in pixels, see :func:`functional.pixel_error`."""

    higher_is_better = False

    def update(
        self, pred2d: Tensor, target2d: Tensor, mask: Tensor | None = None, action: Tensor | None = None
    ) -> None:
        self._accumulate(*F.mpjpe_sum_count(pred2d, target2d, mask), action)


class PCKh(SumCountMetric):
    """PCKh@alpha in percent, see :func:`functional.pckh`."""

    higher_is_better = True

    def __init__(self, alpha: float = 0.5, **kwargs) -> None:
        super().__init__(**kwargs)
        self.alpha = alpha

    def update(self, pred2d: Tensor, target2d: Tensor, head_size: Tensor, mask: Tensor | None = None) -> None:
        self._accumulate(*F.pckh_sum_count(pred2d, target2d, head_size, self.alpha, mask))


class PCP(SumCountMetric):
    """Strict percentage of correct parts over ``bones`` (2D or 3D), see :func:`functional.pcp`."""

    higher_is_better = True

    def __init__(self, bones: Sequence[tuple[int, int]] = H36M_BONES, alpha: float = 0.5, **kwargs) -> None:
        super().__init__(**kwargs)
        self.bones = tuple(tuple(b) for b in bones)
        self.alpha = alpha

    def update(self, pred: Tensor, target: Tensor, mask: Tensor | None = None) -> None:
        self._accumulate(*F.pcp_sum_count(pred, target, self.bones, self.alpha, mask))


class Pose3DMetrics(MetricCollection):
    """A collection of :class:`Pose3DMetric` s that aligns each batch once per protocol.

    ``update(pred, target, mask, action)`` computes :func:`functional.aligned_errors` once
    for every alignment its metrics use and passes them on, so the Procrustes fit behind
    ``pa_mpjpe``, ``pck3d_pa`` and ``auc3d_pa`` runs once per batch. Compute groups are
    always off: these metrics share state names and shapes, and a first batch with no
    valid joint (all zeros) would otherwise make torchmetrics merge them into one group.
    """

    def __init__(self, metrics: dict[str, Pose3DMetric], **kwargs) -> None:
        super().__init__(metrics, compute_groups=False, **kwargs)

    def update(self, pred: Tensor, target: Tensor, mask: Tensor | None = None, action: Tensor | None = None) -> None:
        errors: dict[str, Tensor] = {}
        for metric in self.values(copy_state=False):
            if metric.alignment not in errors:
                errors[metric.alignment] = F.aligned_errors(pred, target, mask, metric.alignment)
            metric.update(pred, target, mask, action, errors=errors[metric.alignment])


def pose3d_metrics(num_actions: int | None = None) -> Pose3DMetrics:
    """The 3D suite as one collection, each updated with ``(pred, target, mask, action)``.

    Keys: ``mpjpe, pa_mpjpe, n_mpjpe, pck3d, auc3d`` (3DPCK at 150 mm, AUC over 0..150 mm,
    unaligned), ``pck3d_scaled, auc3d_scaled`` (after the least-squares scale of N-MPJPE)
    and ``pck3d_pa, auc3d_pa`` (after the Procrustes fit of PA-MPJPE). Use
    ``.clone(prefix="val/")`` for logging names.
    """
    metrics: dict[str, Pose3DMetric] = {
        "mpjpe": MPJPE(num_actions=num_actions),
        "pa_mpjpe": PAMPJPE(num_actions=num_actions),
        "n_mpjpe": NMPJPE(num_actions=num_actions),
        "pck3d": PCK3D(threshold=150.0, num_actions=num_actions),
        "auc3d": AUC3D(num_actions=num_actions),
    }
    for alignment in ("scaled", "pa"):
        metrics[f"pck3d_{alignment}"] = PCK3D(threshold=150.0, alignment=alignment, num_actions=num_actions)
        metrics[f"auc3d_{alignment}"] = AUC3D(alignment=alignment, num_actions=num_actions)
    return Pose3DMetrics(metrics)


# The metrics Human3.6M papers tabulate per action, with an "Avg" column that is the mean of the
# per-action means (every action weighs the same); our pooled ``<metric>`` weighs every frame the same.
ACTION_AVERAGED: tuple[str, ...] = ("mpjpe", "pa_mpjpe", "n_mpjpe")


def action_averages(metrics: Pose3DMetrics, names: tuple[str, ...] = ACTION_AVERAGED) -> dict[str, float]:
    """``{"<name>_action_avg": mean over the actions seen of the per-action means}`` of the metrics
    ``names`` of a suite built with ``num_actions`` (those never updated are left out)."""
    out = {}
    for name in names:
        metric = metrics[name] if name in metrics else None
        if metric is None or not metric.update_called or metric.num_actions is None:
            continue
        per_action = metric.compute_per_action()
        if per_action:
            out[f"{name}_action_avg"] = sum(per_action.values()) / len(per_action)
    return out

