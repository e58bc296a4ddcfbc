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


class _Pose3DMetric(SumCountMetric):
    """A 3D metric updated with ``(pred, target, mask=None, action=None)``."""

    def _sum_count(self, pred: Tensor, target: Tensor, mask: Tensor | None) -> F.SumCount:
        raise NotImplementedError

    def update(self, pred: Tensor, target: Tensor, mask: Tensor | None = None, action: Tensor | None = None) -> None:
        """pred, target (B, J, 3) mm; mask (B, J) bool; action (B,) int ids."""
        self._accumulate(*self._sum_count(pred, target, mask), action)


class MPJPE(_Pose3DMetric):
    """Mean per-joint position error (mm), see :func:`functional.mpjpe`."""

    higher_is_better = False

    def _sum_count(self, pred, target, mask):
        return F.mpjpe_sum_count(pred, target, mask)


class PAMPJPE(_Pose3DMetric):
    """MPJPE after Procrustes alignment (mm), see :func:`functional.pa_mpjpe`."""

    higher_is_better = False

    def _sum_count(self, pred, target, mask):
        return F.pa_mpjpe_sum_count(pred, target, mask)


class NMPJPE(_Pose3DMetric):
    """MPJPE after the optimal uniform scale (mm), see :func:`functional.n_mpjpe`."""

    higher_is_better = False

    def _sum_count(self, pred, target, mask):
        return F.n_mpjpe_sum_count(pred, target, mask)


class PCK3D(_Pose3DMetric):
    """Percentage of joints within ``threshold`` mm, see :func:`functional.pck3d`."""

    higher_is_better = True

    def __init__(self, threshold: float = 150.0, num_actions: int | None = None, **kwargs) -> None:
        super().__init__(num_actions=num_actions, **kwargs)
        self.threshold = threshold

    def _sum_count(self, pred, target, mask):
        return F.pck3d_sum_count(pred, target, self.threshold, mask)


class AUC3D(_Pose3DMetric):
    """Mean 3DPCK over 0, 5, ..., 150 mm in percent, see :func:`functional.auc3d`."""

    higher_is_better = True

    def _sum_count(self, pred, target, mask):
        return F.auc3d_sum_count(pred, target, mask)


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


def pose3d_metrics(num_actions: int | None = None) -> MetricCollection:
    """The 3D suite as one collection, each updated with ``(pred, target, mask, action)``.

    Keys: ``mpjpe, pa_mpjpe, n_mpjpe, pck3d, auc3d`` (3DPCK at 150 mm). Use
    ``.clone(prefix="val/")`` for logging names. Compute groups are off: these
    metrics share state names and shapes, and a first batch with no valid joint
    (all zeros) would otherwise make torchmetrics merge them into one group.
    """
    return MetricCollection(
        {
            "mpjpe": MPJPE(num_actions=num_actions),
            "pa_mpjpe": PAMPJPE(num_actions=num_actions),
            "n_mpjpe": NMPJPE(num_actions=num_actions),
            "pck3d": PCK3D(threshold=150.0, num_actions=num_actions),
            "auc3d": AUC3D(num_actions=num_actions),
        },
        compute_groups=False,
    )
