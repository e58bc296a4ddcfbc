"""Fine-tuning: start a run from another run's weights (``init_from=<run folder or .ckpt>``).

Parameters and buffers whose names and shapes match are loaded; the rest stay at their
initialisation, and one line says how many were loaded and which were not. The loaded
parameters are remembered on the module (``pretrained_names``), so that
``optim.pretrained_lr_scale`` can train them slower than the new layers. A declared
prerequisite with ``into="init_from"`` makes a two-stage recipe (pre-train, then fine-tune).
The checkpoint is read as data (:func:`pose3d.safe_load.load_checkpoint`).
"""
from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import torch

from pose3d.config import ConfigError
from pose3d.results import results_mismatch
from pose3d.safe_load import UnsafeFileError, load_checkpoint


def checkpoint_of(source: str) -> Path:
    """The checkpoint a run folder's ``metrics.json`` names (its best), else its best/last, or the file itself."""
    path = Path(source)
    if path.is_file():
        return path
    if path.is_dir():
        metrics = path / "metrics.json"
        if metrics.is_file() and (mismatch := results_mismatch(path)):
            raise ConfigError(f"init_from={source}: {mismatch}, so its weights are not those of its settings; "
                              "expected a finished run (move the folder aside, or name a .ckpt file)")
        if metrics.is_file():
            named = json.loads(metrics.read_text()).get("checkpoint")
            if named and Path(named).is_file():
                return Path(named)
        for candidate in (path / "checkpoints" / "best.ckpt", path / "checkpoints" / "last.ckpt"):
            if candidate.is_file():
                return candidate
        raise ConfigError(f"init_from={source} holds no checkpoint; expected a run folder with checkpoints/best.ckpt")
    raise ConfigError(f"init_from={source} does not exist; expected a run folder or a .ckpt file")


def _groups(names: list[str], depth: int = 2) -> str:
    """``a.b.* (n), ...``: names grouped by their first ``depth`` components."""
    counts = Counter(".".join(n.split(".")[:depth]) for n in names)
    return ", ".join(f"{prefix}.* ({count})" if count > 1 else prefix for prefix, count in counts.items())


def load_matching(module: torch.nn.Module, source: str) -> tuple[list[str], list[str]]:
    """Load the tensors of ``source``'s checkpoint whose names and shapes match ``module``'s;
    returns (loaded, left at initialisation) and prints one line about it."""
    path = checkpoint_of(source)
    try:
        state = load_checkpoint(path)["state_dict"]
    except UnsafeFileError:
        raise
    except Exception as error:
        raise ConfigError(f"init_from={source}: {path} is not a Lightning checkpoint ({type(error).__name__}); "
                          "expected a .ckpt written by python -m pose3d.train") from None
    own = module.state_dict()
    matching = {k: v for k, v in state.items() if k in own and own[k].shape == v.shape}
    module.load_state_dict(matching, strict=False)
    loaded = list(matching)
    left = [k for k in own if k not in matching]
    module.pretrained_names = {name for name, _ in module.named_parameters() if name in matching}
    print(f"init_from {path}: loaded {len(loaded)} of {len(own)} tensors"
          + (f"; left at initialisation: {_groups(left)}" if left else ""), flush=True)
    return loaded, left
