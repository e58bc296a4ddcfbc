"""One LightningModule per method; shared networks live in :mod:`lightning_modules.blocks`.

``MODELS`` maps a config's ``model.name`` to its class, imported on demand.
"""
from pose3d.registry import Registry

MODELS = Registry({
    "baseline": "lightning_modules.baseline:DirectRegression",
    "heatmap2d": "lightning_modules.heatmap2d:HeatmapNetwork",
    "tekin_fusion": "lightning_modules.tekin_fusion:TrainableFusion",
    "tome_lifting": "lightning_modules.tome_lifting:LiftingFromTheDeep",
    "park_multiroot": "lightning_modules.park_multiroot:MultiRootRegression",
    "habibie_projection": "lightning_modules.habibie_projection:ExplicitProjection",
    "habibie_2d_pretrain": "lightning_modules.habibie_projection:HeatmapPretraining",
    "deepskeleton": "lightning_modules.deepskeleton:DeepSkeleton",
})
