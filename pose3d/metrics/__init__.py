"""Pose metrics: torchmetrics classes (DDP-safe) and their functional twins.

    from pose3d.metrics import MPJPE, pose3d_metrics
    from pose3d.metrics import functional as PF   # mpjpe(pred, target, mask) ...
"""
from pose3d.metrics import functional
from pose3d.metrics.classes import (
    ACTION_AVERAGED,
    AUC3D,
    MPJPE,
    NMPJPE,
    PAMPJPE,
    PCK3D,
    PCP,
    PCKh,
    PixelError,
    Pose3DMetric,
    Pose3DMetrics,
    SumCountMetric,
    action_averages,
    pose3d_metrics,
)

__all__ = [
    "ACTION_AVERAGED",
    "AUC3D",
    "MPJPE",
    "NMPJPE",
    "PAMPJPE",
    "PCK3D",
    "PCP",
    "PCKh",
    "PixelError",
    "Pose3DMetric",
    "Pose3DMetrics",
    "SumCountMetric",
    "action_averages",
    "functional",
    "pose3d_metrics",
]
