"""Optional batch keys made on demand for the methods that ask for them.

A method's ``required_targets()`` returns e.g.
``{"heatmaps": {"size": 16, "sigma": 1.0}, "skeleton_maps": {"size": 56, "stick_width": 4.0}}``
(the request format and the kinds are :mod:`pose3d.contract` and :mod:`pose3d.targets`); the
DataModule passes it to :meth:`TargetMaker.request`, and every batch then carries those keys,
rendered from its labels after augmentation. Shared by every DataModule.
"""
from __future__ import annotations

from collections.abc import Mapping

from torch import Tensor

from datamodules.batch import BATCH_KEYS
from pose3d.config import ConfigError
from pose3d.contract import get_target_kind, merge_target_requests


class TargetMaker:
    """Renders the requested keys into a batch; ``spec`` is the merge of every request so far."""

    def __init__(self, image_size: int):
        self.image_size = int(image_size)
        self.spec: dict[str, dict] = {}

    def request(self, spec: Mapping[str, Mapping]) -> None:
        """Add ``spec`` to the earlier requests (:func:`pose3d.contract.merge_target_requests`)."""
        taken = sorted(set(spec) & set(BATCH_KEYS))
        if taken:
            raise ConfigError(f"target key '{taken[0]}' is a batch-contract key; expected a new key for a target")
        self.spec = merge_target_requests(self.spec, spec)

    def __call__(self, batch: dict[str, Tensor]) -> dict[str, Tensor]:
        for key, spec in self.spec.items():
            batch[key] = get_target_kind(spec["kind"]).render(batch, self.image_size, spec)
        return batch
