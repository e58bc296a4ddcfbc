"""One LightningModule per method; shared networks live in :mod:`lightning_modules.blocks`.

The registry maps a config's ``model.name`` to ``module:Class``; classes are imported
on demand so that loading one method never imports the others.
"""
from __future__ import annotations

import importlib

MODELS: dict[str, str] = {
    "baseline": "lightning_modules.baseline:DirectRegression",
}


def model_class(name: str) -> type:
    module, cls = MODELS[name].split(":")
    return getattr(importlib.import_module(module), cls)


def model_schemas() -> dict[str, type]:
    """``model.name`` -> the method's config dataclass."""
    return {name: model_class(name).Config for name in MODELS}
