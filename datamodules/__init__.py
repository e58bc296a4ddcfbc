"""DataModules sharing one batch contract (DESIGN.md, :mod:`datamodules.batch`).

``DATAMODULES`` maps a config's ``data.name`` to its class, imported on demand.
"""
from pose3d.registry import Registry

DATAMODULES = Registry({
    "synthetic": "datamodules.synthetic:SyntheticDataModule",
})
