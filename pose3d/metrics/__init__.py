"""Pose metrics: torchmetrics classes (DDP-safe) and their functional twins.

    from pose3d.metrics import MPJPE, pose3d_metrics
    from pose3d.metrics import functional as PF   # mpjpe(pred, target, mask) ...
"""
from pose3d.metrics import functional
from pose3d.metrics.classes import (
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
    pose3d_metrics,
)

__all__ = [
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
    "functional",
    "pose3d_metrics",
]
