"""What a method needs before it is built, declared instead of coded (the harness resolves it).

A method's ``prerequisites(cfg)`` classmethod returns a list of declarations:

* :class:`TrainedRun`: a trained run of ``experiments/<experiment>.yaml`` with given
  overrides (by default on the consuming run's data), resolved to its best checkpoint;
* :class:`FittedArtifact`: a file fitted from a recipe (e.g. Tome's PPCA pose prior),
  resolved to its path.

Each declaration names the dotted config key that receives the resolved path (``into``),
e.g. ``model.two_d.checkpoint`` or ``init_from`` (fine-tuning from a first stage). The
harness (:mod:`harness.prerequisites`) keys each one by everything that determines it,
builds it once under a lock that concurrent sweep agents share, and records what it used
in the consuming run's ``config.yaml``. This module is the vocabulary only: it imports no
method, DataModule or entry point.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Union


@dataclass(frozen=True)
class TrainedRun:
    """A trained run of ``experiments/<experiment>.yaml``; resolves to its best checkpoint.

    ``overrides`` are command-line style ``key=value`` settings of the prerequisite (its
    preset is the consumer's unless given). ``same_data``: train on the consumer's resolved
    data section (a heatmap network must see the crops its consumer sees); otherwise on the
    data its experiment file and overrides define. Its seed is fixed (0 unless overridden),
    so every seed of an ablation shares one prerequisite.
    """

    experiment: str
    into: str
    overrides: tuple[str, ...] = ()
    same_data: bool = True
    data_overrides: dict = field(default_factory=dict, hash=False)  # applied on top of the consumer's data


@dataclass(frozen=True)
class FittedArtifact:
    """A file made by ``build(path)`` from ``recipe`` (a plain dict of everything that
    determines it: the cache key is its hash); resolves to
    ``<results_dir>/<folder>/<name>-<key><suffix>``."""

    name: str
    into: str
    recipe: dict = field(hash=False)
    build: Callable[[Path], None] = field(hash=False, compare=False)
    folder: str = "artifacts"
    suffix: str = ".npz"


Prerequisite = Union[TrainedRun, FittedArtifact]


def describe(prerequisite: Any) -> str:
    """One line for logs: what is being built."""
    if isinstance(prerequisite, TrainedRun):
        return f"run of experiment {prerequisite.experiment} ({' '.join(prerequisite.overrides) or 'its defaults'})"
    return f"{prerequisite.name} from {prerequisite.recipe}"
