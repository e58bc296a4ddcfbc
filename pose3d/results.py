"""A run folder's results: ``metrics.json`` belongs to the ``config.yaml`` beside it.

A run writes into its ``metrics.json`` the :func:`config_hash` of the config it was computed
under: a hash of every key of the stored ``config.yaml`` but :data:`NOT_IDENTITY` (run-time
switches that cannot change a result: the run's name and folders, ``ckpt_path``, ``test_only``,
``overwrite``, ``threads``, the loggers, progress bars and logging interval, and the record of
prerequisites, whose paths are in the config already). Every reader of results (the ablation
runner's "done" test, the summaries, ``compare``, ``init_from``) takes a folder's metrics only
when the hash matches its ``config.yaml`` (:func:`finished`); :func:`results_mismatch` says why
not. A ``metrics.json`` without the hash was written before it was recorded and is taken as it is.
"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

NOT_IDENTITY = ("name", "results_dir", "ckpt_path", "test_only", "overwrite", "threads", "logger", "prerequisites",
                "trainer.enable_progress_bar", "trainer.log_every_n_steps")
CONFIG_HASH = "config_hash"  # the metrics.json key


def flatten(tree: Any, prefix: str = "") -> dict[str, Any]:
    """``{"a": {"b": 1}}`` -> ``{"a.b": 1}``."""
    if isinstance(tree, dict):
        out: dict[str, Any] = {}
        for key, value in tree.items():
            out.update(flatten(value, f"{prefix}{key}."))
        return out
    return {prefix[:-1]: tree}


def exempt(key: str, keys: tuple[str, ...]) -> bool:
    """``key`` is one of ``keys`` or below one of them."""
    return any(key == e or key.startswith(e + ".") for e in keys)


def config_hash(config: dict) -> str:
    """A short hash of a stored run config's identity keys (every key but :data:`NOT_IDENTITY`)."""
    identity = {k: v for k, v in flatten(config).items() if not exempt(k, NOT_IDENTITY)}
    return hashlib.sha1(json.dumps(identity, sort_keys=True, default=str).encode()).hexdigest()[:12]


def results_mismatch(run_dir: Path) -> str | None:
    """Why ``run_dir``'s ``metrics.json`` is not the result of its ``config.yaml`` (one phrase),
    or None when it is (or carries no hash)."""
    import yaml

    try:
        recorded = json.loads((run_dir / "metrics.json").read_text()).get(CONFIG_HASH)
    except (OSError, ValueError, AttributeError):
        return "its metrics.json is unreadable"
    if recorded is None:
        return None
    try:
        stored = yaml.safe_load((run_dir / "config.yaml").read_text()) or {}
    except (OSError, yaml.YAMLError):
        return "its metrics.json has no readable config.yaml beside it"
    if config_hash(stored) != recorded:
        return "its metrics.json was computed under other settings than its config.yaml"
    return None


def finished(run_dir: Path) -> bool:
    """``run_dir`` holds a ``metrics.json`` computed under its ``config.yaml``."""
    return (run_dir / "metrics.json").is_file() and results_mismatch(run_dir) is None
