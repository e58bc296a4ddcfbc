"""DataModules sharing one batch contract (DESIGN.md, :mod:`datamodules.batch`).

The registry maps a config's ``data.name`` to ``module:Class``; classes are imported on demand.
"""
from __future__ import annotations

import importlib

DATAMODULES: dict[str, str] = {
    "synthetic": "datamodules.synthetic:SyntheticDataModule",
}


def datamodule_class(name: str) -> type:
    module, cls = DATAMODULES[name].split(":")
    return getattr(importlib.import_module(module), cls)


def datamodule_schemas() -> dict[str, type]:
    """``data.name`` -> the DataModule's config dataclass."""
    return {name: datamodule_class(name).Config for name in DATAMODULES}
