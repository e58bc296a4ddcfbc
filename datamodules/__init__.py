"""DataModules sharing one batch contract (DESIGN.md, :mod:`datamodules.batch`).

``DATAMODULES`` maps a config's ``data.name`` to its class, imported on demand.
"""
from pose3d.registry import Registry

DATAMODULES = Registry({
    "synthetic": "datamodules.synthetic:SyntheticDataModule",
    "human36m": "datamodules.human36m:Human36MDataModule",
    "mpi_inf_3dhp": "datamodules.mpi_inf_3dhp:MPIInf3DHPDataModule",
    "mpii": "datamodules.mpii:MPIIDataModule",
    "lsp": "datamodules.lsp:LSPDataModule",
    "mixed": "datamodules.mixed:MixedDataModule",
})
