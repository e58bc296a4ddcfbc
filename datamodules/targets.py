"""Optional batch keys made on demand for the methods that ask for them.

A method's ``required_targets()`` returns e.g.
``{"heatmaps": {"size": 16, "sigma": 1.0}, "skeleton_maps": {"size": 56, "stick_width": 4.0}}``;
the DataModule passes it to :meth:`TargetMaker.request` and every batch then carries
``heatmaps`` (B, J, size, size; :func:`pose3d.heatmaps.render_heatmaps`) and ``skeleton_maps``
(B, 6, size, size: foreground RGB then background RGB; :func:`pose3d.skeleton_maps.render_skeleton_maps`)
rendered from its labels (the depth order of skeleton maps uses ``joints_3d`` z + ``root_depth``). Shared by every DataModule.
"""
from __future__ import annotations

from torch import Tensor

KNOWN_TARGETS = ("heatmaps", "skeleton_maps")


class TargetMaker:
    def __init__(self, image_size: int):
        self.image_size = image_size
        self.spec: dict[str, dict] = {}

    def request(self, spec: dict[str, dict]) -> None:
        unknown = set(spec) - set(KNOWN_TARGETS)
        if unknown:
            raise ValueError(f"unknown target(s) {sorted(unknown)}; expected some of {KNOWN_TARGETS}")
        self.spec = {key: dict(value) for key, value in spec.items()}

    def __call__(self, batch: dict[str, Tensor]) -> dict[str, Tensor]:
        size = (self.image_size, self.image_size)
        if "heatmaps" in self.spec:
            from pose3d.heatmaps import render_heatmaps

            s = self.spec["heatmaps"]
            batch["heatmaps"] = render_heatmaps(
                batch["joints_2d"], size, (s["size"], s["size"]), sigma=s.get("sigma", 1.0), visible=batch["visible"]
            )
        if "skeleton_maps" in self.spec:
            from pose3d.skeleton_maps import render_skeleton_maps, stack_skeleton_maps

            s = self.spec["skeleton_maps"]
            depth = batch["joints_3d"][..., 2] + batch["root_depth"][:, None]
            maps = render_skeleton_maps(batch["joints_2d"], depth, size, (s["size"], s["size"]), s.get("stick_width", 4.0))
            batch["skeleton_maps"] = stack_skeleton_maps(maps).contiguous()
        return batch
