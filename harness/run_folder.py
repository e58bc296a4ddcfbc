"""A run folder holds one run's results: one owner at a time, nothing earlier lost, nothing half-written.

* **One owner:** a run holds ``<results>/.owners/<name>.lock`` (:func:`harness.locks.exclusive`)
  from before it reads its folder until it exits; the kernel frees it when the holder dies. A
  second run of that name refuses with one line naming the holder (pid, host, start time), and
  the ablation runner skips a run that another runner's child holds (:func:`held_elsewhere`).
* **Nothing earlier lost:** ``overwrite=true`` moves the whole earlier folder (metrics, config,
  checkpoints, logs) to ``<name>.replaced-<date>`` beside it (:func:`set_aside`); a resume for more
  epochs keeps the earlier ``metrics.json`` / ``config.yaml`` as ``*.step<N>.*``
  (:func:`keep_earlier_results`); ``test_only`` keeps the earlier ``metrics.json`` as
  ``metrics.before-<date>.json`` (:func:`keep_earlier_metrics`).
* **Whole files:** checkpoints (:class:`harness.checkpoint_io.SafeCheckpointIO`), ``config.yaml`` and
  ``metrics.json`` are written to a temporary name and renamed (:mod:`pose3d.files`); a full
  disk is one line naming the file and the space it needs, and the last good checkpoint stays.
"""
from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml
from omegaconf import DictConfig, OmegaConf

from harness.locks import exclusive, holder
from pose3d.files import dated_sibling, output_error, write_atomic
from pose3d.results import CONFIG_HASH, config_hash

OWNER_WAIT_S = 2.0  # how long a run waits for its folder's owner before refusing


def owner_lock(run_dir: Path) -> Path:
    """``<results>/.owners/<name>.lock``: outside ``runs/``, which holds run folders only, and
    outside the run folder, which ``overwrite=true`` moves aside while its owner holds it."""
    return run_dir.parent.parent / ".owners" / f"{run_dir.name}.lock"


@contextlib.contextmanager
def owned(run_dir: Path) -> Iterator[None]:
    """Own ``run_dir`` for the block, or refuse (:class:`harness.locks.Held`, one line)."""
    with exclusive(owner_lock(run_dir), wait_s=OWNER_WAIT_S, what=f"run folder {run_dir}",
                   remedy="wait until it has finished (or stop it), or use name=<new name>"):
        yield


def held_elsewhere(run_dir: Path) -> str | None:
    """Who owns ``run_dir`` now (pid, host, start time), or None."""
    return holder(owner_lock(run_dir))


def set_aside(run_dir: Path) -> Path | None:
    """Move a non-empty ``run_dir`` to ``<name>.replaced-<date>`` beside it; returns where."""
    if not run_dir.is_dir() or not any(run_dir.iterdir()):
        return None
    target = dated_sibling(run_dir, "replaced")
    try:
        run_dir.rename(target)
    except OSError as error:
        raise output_error(run_dir, error) from None
    print(f"overwrite=true: the earlier results of {run_dir.name} are kept in {target}", flush=True)
    return target


def keep_earlier_results(run_dir: Path) -> None:
    """A finished run resumed for more epochs: its earlier config and metrics stay beside the new ones."""
    metrics = run_dir / "metrics.json"
    if not metrics.is_file():
        return
    step = json.loads(metrics.read_text()).get("global_step", "earlier")
    for name in ("metrics.json", "config.yaml"):
        old = run_dir / name
        kept = run_dir / f"{old.stem}.step{step}{old.suffix}"
        if old.is_file() and not kept.exists():
            old.replace(kept)


def keep_earlier_metrics(run_dir: Path) -> Path | None:
    """``test_only`` on a folder with results: its ``metrics.json`` becomes ``metrics.before-<date>.json``."""
    metrics = run_dir / "metrics.json"
    if not metrics.is_file():
        return None
    kept = dated_sibling(metrics, "before")
    metrics.replace(kept)
    return kept


def write_config(run_dir: Path, cfg: DictConfig) -> str:
    """Write ``config.yaml`` (whole or not at all); returns its :func:`config_hash`."""
    text = OmegaConf.to_yaml(cfg)
    write_atomic(run_dir / "config.yaml", text)
    return config_hash(yaml.safe_load(text) or {})


def write_metrics(run_dir: Path, metrics: dict[str, Any], hash_of_config: str) -> None:
    """Write ``metrics.json`` with the hash of the config it was computed under."""
    content = {**metrics, CONFIG_HASH: hash_of_config}
    write_atomic(run_dir / "metrics.json", json.dumps(content, indent=2, sort_keys=True) + "\n")
