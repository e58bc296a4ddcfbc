"""What the ablation summaries of every method share: reading a finished run folder and
writing a mean +/- std cell (the methods' ``summarise_ablation`` and ``harness.compare``)."""
from __future__ import annotations

import json
import statistics
from pathlib import Path
from typing import Any, Sequence

from pose3d.results import finished


def read_finished_run(run_dir: Path, extra: Sequence[str] = ()) -> dict[str, Any] | None:
    """``{"variant", "seed", "config", "metrics", <stem of each extra JSON file>}`` of a run
    with ``metrics.json`` and ``config.yaml``, or None while it has not finished (or when its
    metrics were computed under another config: :func:`pose3d.results.finished`). An
    ``extra`` file the run did not write reads as ``[]``."""
    import yaml

    metrics_file, config_file = run_dir / "metrics.json", run_dir / "config.yaml"
    if not config_file.is_file() or not finished(run_dir):
        return None
    config = yaml.safe_load(config_file.read_text()) or {}
    record = {"variant": str(config.get("variant")), "seed": config.get("seed"), "config": config,
              "metrics": json.loads(metrics_file.read_text())}
    for name in extra:
        path = run_dir / name
        record[Path(name).stem] = json.loads(path.read_text()) if path.is_file() else []
    return record


def mean_std(values: Sequence[float], digits: int = 1) -> str:
    """``"-"``, ``"12.3"`` (one value) or ``"12.3 +/- 0.4"`` (mean and sample std)."""
    if not values:
        return "-"
    if len(values) == 1:
        return f"{values[0]:.{digits}f}"
    return f"{statistics.fmean(values):.{digits}f} +/- {statistics.stdev(values):.{digits}f}"


def ordering_line(means: dict[str, float], order: Sequence[str], source: str = "the paper's") -> list[str]:
    """``["", "Ordering a > b > c in mean test MPJPE (<source>): holds (a 120.0 > ...)."]`` for
    the variants of ``order`` (worst to best in the paper) that have a mean; [] for fewer than two."""
    ordered = [v for v in order if v in means]
    if len(ordered) < 2:
        return []
    holds = all(means[a] > means[b] for a, b in zip(ordered, ordered[1:]))
    chain = " > ".join(f"{v} {means[v]:.1f}" for v in ordered)
    return ["", f"Ordering {' > '.join(ordered)} in mean test MPJPE ({source}): "
                f"{'holds' if holds else 'does not hold'} ({chain})."]
