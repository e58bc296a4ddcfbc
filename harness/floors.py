"""The chance floors of a run's data (:mod:`pose3d.floors`), computed once per data config.

Summaries (ablations, ``compare``) show them beside their tables. The floors depend only on the
data's labels, so they are cached under ``<results>/floors/<hash of the data config>.json``.
"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from pose3d.files import write_atomic
from pose3d.floors import FLOOR_TITLES, floor_metrics


def data_floors(data_cfg: dict[str, Any], cache_dir: Path) -> dict[str, dict[str, float]] | None:
    """``{floor: {metric: value, "<domain>/<metric>": value}}`` of the data config's test split (from
    its training split), or None when the data has no 3D labels to build them from."""
    from datamodules import DATAMODULES

    cache = floors_file(data_cfg, cache_dir)
    if cache.is_file():
        return json.loads(cache.read_text()) or None
    datamodule = DATAMODULES.load(data_cfg["name"])(dict(data_cfg))
    try:
        floors = floor_metrics(datamodule.pose_labels("train"), datamodule.pose_labels("test"),
                               datamodule.info.eval_joints, datamodule.domains)
    except ValueError:  # no 3D labels in a split (2D-only data)
        floors = {}
    cache.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(cache, json.dumps(floors, indent=2))
    return floors or None


def floors_file(data_cfg: dict[str, Any], cache_dir: Path) -> Path:
    """Where :func:`data_floors` keeps the floors of ``data_cfg``: ``<cache_dir>/<hash>.json``."""
    key = hashlib.sha256(json.dumps(data_cfg, sort_keys=True, default=str).encode()).hexdigest()[:16]
    return Path(cache_dir) / f"{key}.json"


def floor_rows(floors: dict[str, dict[str, float]] | None) -> list[tuple[str, dict[str, float]]]:
    """``[(title, metrics)]`` of each floor, in the order of :data:`FLOOR_TITLES`."""
    return [(FLOOR_TITLES[name], floors[name]) for name in FLOOR_TITLES if floors and name in floors]


def versus_floor(mpjpe: float | None, floors: dict[str, dict[str, float]] | None, prefix: str = "") -> str:
    """An entry's MPJPE as a multiple of the orientation floor's (``"0.62x"``), or ``"-"``."""
    floor = (floors or {}).get("orientation", {}).get(f"{prefix}mpjpe")
    return f"{mpjpe / floor:.2f}x" if mpjpe is not None and floor else "-"
