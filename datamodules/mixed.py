"""Mixed 3D + 2D training: every batch holds ``round(ratio_3d * B)`` samples of a 3D-labelled
source and the rest from a 2D-only source; validation and test run on one named source.

Config (``data.*``)::

    data:
      name: mixed
      ratio_3d: 0.5                 # share of each training batch from sources.three_d
      eval_source: three_d          # val/test on this source (three_d or two_d)
      sources:
        three_d: {name: mpi_inf_3dhp, root: /data/mpi_inf_3dhp, cameras: [0, 2, 4]}
        two_d:   {name: mpii, root: /data/mpii}

Each source is a full data config of its own DataModule (its ``name`` picks the class from
:data:`datamodules.DATAMODULES`). A training source may also be a list of configs, whose
training sets are concatenated (e.g. ``two_d: [{name: mpii, ...}, {name: lsp, ...}]``; it is
evaluated, when ``eval_source`` names it, on its first entry). An optional ``sources.eval`` is a
source for validation and test only (``eval_source: eval``), e.g. train on Human3.6M + MPII + LSP
and test on MPI-INF-3DHP as Habibie et al. 2019 do. ``sources`` is free-form in the schema; it is validated here
(:func:`validate_sources`, run when :class:`MixedConfig` is built) against the source's own
``Config`` dataclass, so an unknown key gives the usual one-line :class:`ConfigError` naming
``data.sources.<source>``. ``image_size``, ``batch_size`` and ``num_workers`` are the mixed
module's and are passed to both sources (a source may not set a different ``image_size``).
``train_size`` is the number of training samples per epoch (default: both sources' sizes
added); ``val_size`` / ``test_size`` cap the evaluation source.

Batches are composed by :class:`MixedBatchSampler`: 3D samples first, then 2D ones, each
source walked through in its own reshuffled order (a smaller source is cycled). Under DDP
Lightning hands the sampler a ``DistributedSampler``, from which it only reads the rank, so
every rank draws its own batches of the same composition.

Keys that only one source makes and nobody asked for (``head_size`` of MPII, ``torso_size`` of
LSP) are dropped from mixed training batches. A batch-contract key or a requested target that
one source makes and the other does not is an error (:class:`ConfigError` naming the key and
the source that lacks it), never a silent drop.
"""
from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Optional

import numpy as np
import torch
from omegaconf import OmegaConf
from torch import Tensor
from torch.utils.data import DataLoader, Dataset

from datamodules.base import PoseDataModule
from datamodules.batch import BATCH_KEYS
from datamodules.loaders import EpochBatchSampler, EpochSampler
from datamodules.targets import TargetMaker
from pose3d.config import ConfigError, at_least, choice, probability, validated
from pose3d.contract import DataInfo
from pose3d.floors import PoseLabels
from pose3d.registry import Registry

SOURCE_KEYS = ("three_d", "two_d")  # the training sources
EVAL_KEY = "eval"  # optional: a source used for validation and test only
SHARED_KEYS = ("image_size", "batch_size", "num_workers")


def source_class(name: str, key: str) -> type:
    """The DataModule class of source ``key`` named ``name``."""
    from datamodules import DATAMODULES

    known = {k: v for k, v in DATAMODULES.entries.items() if k != "mixed"}
    if name not in known:
        raise ConfigError(f"bad value for data.sources.{key}.name: '{name}'; choose one of: {', '.join(sorted(known))}")
    return Registry(known).load(name)


def validate_sources(sources: Any, shared: dict[str, Any]) -> dict[str, list[tuple[type, dict]]]:
    """``{key: [(DataModule class, validated config dict), ...]}`` for ``three_d`` and ``two_d``
    (one entry each, or several when the key holds a list) and, when given, ``eval`` (one entry).

    ``shared`` (image_size, batch_size, num_workers) is written into each source config.
    Raises a one-line :class:`ConfigError` for a missing or unknown source, a missing ``name``,
    an unknown key or a bad value.
    """
    if OmegaConf.is_config(sources):
        sources = OmegaConf.to_container(sources, resolve=True)
    if not isinstance(sources, dict):
        raise ConfigError(f"data.sources must map {' and '.join(SOURCE_KEYS)} to data configs, got {sources!r}")
    unknown = sorted(set(sources) - set(SOURCE_KEYS) - {EVAL_KEY})
    if unknown:
        raise ConfigError(f"unknown config key 'data.sources.{unknown[0]}'; valid keys under 'data.sources': "
                          f"{', '.join((*SOURCE_KEYS, EVAL_KEY))}")
    out: dict[str, list[tuple[type, dict]]] = {}
    for key in (*SOURCE_KEYS, EVAL_KEY) if EVAL_KEY in sources else SOURCE_KEYS:
        specs = sources.get(key)
        listed = isinstance(specs, list) and key != EVAL_KEY and len(specs) > 0
        out[key] = [_validate_source(spec, f"{key}[{n}]" if listed else key, shared)
                    for n, spec in enumerate(specs if listed else [specs])]
    return out


def _validate_source(spec: Any, key: str, shared: dict[str, Any]) -> tuple[type, dict]:
    """(DataModule class, validated config dict) of the source at ``data.sources.<key>``."""
    if not isinstance(spec, dict) or not spec.get("name"):
        raise ConfigError(f"data.sources.{key} must be a data config with a name, e.g. {{name: mpii, root: PATH}}; got {spec!r}")
    cls = source_class(str(spec["name"]), key)
    for shared_key, value in shared.items():
        if shared_key in spec and shared_key == "image_size" and spec[shared_key] != value:
            raise ConfigError(
                f"data.sources.{key}.image_size={spec[shared_key]} differs from data.image_size={value}; "
                "expected one image size for all sources (set data.image_size)"
            )
    spec = {**spec, **shared}
    schema = cls.Config
    merged = validated(schema, spec, f"data.sources.{key}", f"data.sources.{key}.")
    return cls, OmegaConf.to_container(merged)


@dataclass
class MixedConfig:
    name: str = "mixed"
    sources: Any = None  # {three_d: {name: ..., ...}, two_d: {name: ..., ...}}
    ratio_3d: float = probability(0.5)
    eval_source: str = choice("three_d", (*SOURCE_KEYS, EVAL_KEY))
    image_size: int = at_least(1, 256)
    batch_size: int = at_least(1, 64)
    num_workers: int = at_least(0, 0)
    train_size: Optional[int] = at_least(0, None, special=(None,))  # training samples per epoch; None/0 = both sources' sizes added
    val_size: Optional[int] = at_least(0, None, special=(None,))  # caps of the evaluation source
    test_size: Optional[int] = at_least(0, None, special=(None,))

    def __post_init__(self) -> None:
        if not 0.0 <= float(self.ratio_3d) <= 1.0:
            raise ConfigError(f"bad value for data.ratio_3d: {self.ratio_3d}; expected a share in [0, 1]")
        if self.eval_source not in (*SOURCE_KEYS, EVAL_KEY):
            raise ConfigError(f"bad value for data.eval_source: '{self.eval_source}'; choose one of: "
                              f"{', '.join((*SOURCE_KEYS, EVAL_KEY))}")
        if self.batch_size < 1:
            raise ConfigError(f"bad value for data.batch_size: {self.batch_size}; expected an integer >= 1")
        self.validated = validate_sources(self.sources, {k: getattr(self, k) for k in SHARED_KEYS})
        if self.eval_source == EVAL_KEY and EVAL_KEY not in self.validated:
            raise ConfigError("data.eval_source=eval needs data.sources.eval, a data config for validation and test "
                              "(e.g. {name: mpi_inf_3dhp, root: PATH})")


class MixedDataset(Dataset):
    """The concatenation of the sources' training datasets; ``__getitems__`` asks each source
    for its part of a batch at once (their own batched rendering / cropping) and keeps the keys
    every part makes. ``names`` label the parts in errors; ``requested`` holds the target
    requests (read at each batch), whose keys, like the batch contract's, every part must make."""

    def __init__(self, parts: list[Dataset], names: Sequence[str] = (), requested: TargetMaker | None = None):
        self.parts = parts
        self.names = list(names) or [f"part {p}" for p in range(len(parts))]
        self.requested = requested
        self.offsets = np.cumsum([0] + [len(p) for p in parts])

    def required_keys(self) -> set[str]:
        """The batch-contract keys and the requested targets."""
        return set(BATCH_KEYS) | set(self.requested.spec if self.requested is not None else ())

    def random_state(self) -> list:
        """Each part's own generators (see the exact-resume part of :class:`datamodules.base.PoseDataModule`)."""
        return [part.random_state() if hasattr(part, "random_state") else None for part in self.parts]

    def set_random_state(self, states: list) -> None:
        for part, state in zip(self.parts, states):
            if state is not None and hasattr(part, "set_random_state"):
                part.set_random_state(state)

    def reseed(self, seed: int) -> None:
        """Seed each part's own generators, each from its own stream of ``seed``."""
        for index, part in enumerate(self.parts):
            if hasattr(part, "reseed"):
                part.reseed(int(np.random.SeedSequence([seed, index]).generate_state(1)[0]))

    def __len__(self) -> int:
        return int(self.offsets[-1])

    def __getitems__(self, indices: list[int]) -> list[dict[str, Tensor]]:
        indices = [int(i) for i in indices]
        part_of = np.searchsorted(self.offsets, indices, side="right") - 1
        out: list[dict[str, Tensor] | None] = [None] * len(indices)
        made: dict[str, set[str]] = {}  # part name -> the keys its samples carry
        for p, part in enumerate(self.parts):
            where = [n for n, q in enumerate(part_of) if q == p]
            if not where:
                continue
            local = [indices[n] - int(self.offsets[p]) for n in where]
            if hasattr(part, "__getitems__"):
                samples = part.__getitems__(local)
            else:
                samples = [part[i] for i in local]
            for n, sample in zip(where, samples):
                out[n] = sample
            made[self.names[p]] = set(samples[0])
        common = set.intersection(*made.values())
        self._check_required(made, common)
        return [{k: v for k, v in s.items() if k in common} for s in out]

    def _check_required(self, made: dict[str, set[str]], common: set[str]) -> None:
        """Stop on a required key that some parts of the batch make and others do not."""
        for key in sorted((set.union(*made.values()) - common) & self.required_keys()):
            has = [name for name, keys in made.items() if key in keys]
            lacks = [name for name, keys in made.items() if key not in keys]
            raise ConfigError(f"mixed training batch: '{key}' is made by {', '.join(has)} but not by {', '.join(lacks)}; "
                              "expected every batch-contract key and requested target from both sources")

    def __getitem__(self, index: int) -> dict[str, Tensor]:
        return self.__getitems__([index])[0]


def samples_per_batch(batch_size: int, ratio_3d: float) -> dict[str, int]:
    """{source key: its samples in each training batch}: ``round(ratio_3d * batch_size)`` from
    the 3D source, the rest from the 2D source."""
    count_3d = min(batch_size, max(0, int(round(ratio_3d * batch_size))))
    return {"three_d": count_3d, "two_d": batch_size - count_3d}


class MixedBatchSampler(EpochBatchSampler):
    """Batches of ``count_3d = round(ratio_3d * batch_size)`` indices below ``sizes[0]`` (the 3D
    source, first) and the rest from ``[sizes[0], sizes[0] + sizes[1])`` (the 2D source).

    Each source is walked through in a fresh random order per pass (cycled when exhausted); the
    order depends on ``seed``, the epoch and the DDP rank (:class:`datamodules.loaders.EpochBatchSampler`).
    ``num_batches`` is the total over all ranks.
    """

    def __init__(self, sampler, batch_size: int, drop_last: bool = True, *, sizes: tuple[int, int] = (0, 0),
                 ratio_3d: float = 0.5, num_batches: int = 1, seed: int = 0):
        super().__init__(sampler, batch_size, drop_last)
        self.sizes = (int(sizes[0]), int(sizes[1]))
        counts = samples_per_batch(batch_size, ratio_3d)
        self.count_3d, self.count_2d = counts["three_d"], counts["two_d"]
        for count, size, which in ((self.count_3d, self.sizes[0], "3D"), (self.count_2d, self.sizes[1], "2D")):
            if count and not size:
                raise ConfigError(f"the {which} source of data.sources has no training samples, but batches need {count}")
        self.num_batches = max(1, int(num_batches))
        self.seed = int(seed)

    def __len__(self) -> int:
        return math.ceil(self.num_batches / self.replica()[1])

    @staticmethod
    def _stream(rng: np.random.Generator, size: int) -> Iterator[int]:
        while True:
            yield from rng.permutation(size).tolist()

    def __iter__(self) -> Iterator[list[int]]:
        rank, _ = self.replica()
        rng = np.random.default_rng((self.seed, self.epoch, rank))
        stream_3d = self._stream(rng, self.sizes[0]) if self.count_3d else iter(())
        stream_2d = self._stream(rng, self.sizes[1]) if self.count_2d else iter(())
        for _ in range(len(self)):
            batch = [next(stream_3d) for _ in range(self.count_3d)]
            batch += [self.sizes[0] + next(stream_2d) for _ in range(self.count_2d)]
            yield batch



class MixedDataModule(PoseDataModule):
    """Train on batches mixing ``sources.three_d`` and ``sources.two_d``; validate and test on
    ``sources.<eval_source>``. Target requests go to both sources, which render them; the
    module's own ``targets`` only records them (for the check of :class:`MixedDataset`)."""

    Config = MixedConfig

    @classmethod
    def framing(cls, cfg: dict) -> tuple[float, float]:
        """The evaluation source's (the data the model is tested on)."""
        source, source_cfg = MixedConfig(**cfg).validated[cfg.get("eval_source", "three_d")][0]
        return source.framing(source_cfg)

    def __init__(self, cfg: dict):
        super().__init__(MixedConfig(**cfg))
        # every key's modules: one, or one per entry of a listed training key (its first evaluates)
        self.source_modules: dict[str, list[PoseDataModule]] = {}
        for key, entries in self.cfg.validated.items():
            modules = []
            for n, (cls, source_cfg) in enumerate(entries):
                if key == self.cfg.eval_source and n == 0:
                    for split in ("val", "test"):
                        cap = getattr(self.cfg, f"{split}_size")
                        if cap is not None:
                            source_cfg[f"{split}_size"] = cap
                modules.append(cls(source_cfg))
            self.source_modules[key] = modules
        self._train: MixedDataset | None = None
        # training order follows the run seed (seed_everything), as the other modules' augmentation
        self.seed = int(torch.randint(2**31 - 1, ()))

    @property
    def sources(self) -> dict[str, PoseDataModule]:
        """The first module of each key (the one a key evaluates on)."""
        return {key: modules[0] for key, modules in self.source_modules.items()}

    @property
    def eval_module(self) -> PoseDataModule:
        return self.sources[self.cfg.eval_source]

    @property
    def info(self) -> DataInfo:
        """The evaluation source's (its actions, the joints its protocol scores)."""
        return dataclasses.replace(self.eval_module.info, image_size=self.cfg.image_size)

    @property
    def test_subjects_label(self) -> str:
        return self.eval_module.test_subjects_label

    def drawn_sources(self) -> list[PoseDataModule]:
        """The training sources that batches draw samples from (``data.ratio_3d`` 0 or 1 leaves one out)."""
        counts = samples_per_batch(self.cfg.batch_size, self.cfg.ratio_3d)
        return [module for key in SOURCE_KEYS if counts[key] for module in self.source_modules[key]]

    @property
    def train_has_3d(self) -> bool:
        """Some training source that batches draw from has 3D labels (``data.sources.three_d``)."""
        return any(module.train_has_3d for module in self.drawn_sources())

    def check_splits(self, splits: Sequence[str] = ("train", "val", "test")) -> None:
        """Training: every source that batches draw from; validation and test: the evaluation source."""
        for split in splits:
            for module in self.drawn_sources() if split == "train" else [self.eval_module]:
                module.check_splits((split,))

    def setup(self, stage: str | None = None) -> None:
        """The evaluation source sets itself up (real-data modules look for a few frames of each
        split); the other source is only used for training, so only its training frames are probed."""
        for key, modules in self.source_modules.items():
            for n, source in enumerate(modules):
                if key == self.cfg.eval_source and n == 0:
                    source.setup(stage)
                elif key != EVAL_KEY and (stage or "fit") == "fit" and hasattr(source, "probe_images"):
                    source.probe_images("train")

    def request_targets(self, spec: dict) -> None:
        super().request_targets(spec)
        for modules in self.source_modules.values():
            for source in modules:
                source.request_targets(spec)

    def dataset(self, split: str) -> Dataset:
        if split != "train":
            return self.eval_module.dataset(split)
        if self._train is None:
            parts, names = [], []
            for key in SOURCE_KEYS:
                modules = self.source_modules[key]
                labels = [f"data.sources.{key}{f'[{n}]' if len(modules) > 1 else ''} ({m.cfg.name})"
                          for n, m in enumerate(modules)]
                datasets = [m.dataset("train") for m in modules]
                parts.append(datasets[0] if len(datasets) == 1 else MixedDataset(datasets, labels, self.targets))
                names.append(labels[0] if len(labels) == 1 else f"data.sources.{key}")
            self._train = MixedDataset(parts, names, self.targets)
        return self._train

    def pose_labels(self, split: str) -> PoseLabels:
        """Validation and test: the evaluation source's; training: every training source's."""
        if split != "train":
            return self.eval_module.pose_labels(split)
        parts = [m.pose_labels("train") for key in SOURCE_KEYS for m in self.source_modules[key]]
        known = all(p.down is not None for p in parts)
        return PoseLabels(torch.cat([p.joints_3d for p in parts]), torch.cat([p.has_3d for p in parts]),
                          down=torch.cat([p.down for p in parts]) if known else None)

    def batch_sampler(self) -> MixedBatchSampler:
        dataset = self.dataset("train")
        sizes = (len(dataset.parts[0]), len(dataset.parts[1]))
        total = self.cfg.train_size or sum(sizes)
        return MixedBatchSampler(
            EpochSampler(dataset), self.cfg.batch_size, True, sizes=sizes, ratio_3d=self.cfg.ratio_3d,
            num_batches=max(1, total // self.cfg.batch_size), seed=self.seed,
        )

    def build_train_loader(self, first_epoch: int = 0) -> DataLoader:
        return self.batched_train_loader(self.batch_sampler(), first_epoch)

    def val_dataloader(self) -> DataLoader:
        return self.eval_module.val_dataloader()

    def test_dataloader(self) -> DataLoader:
        return self.eval_module.test_dataloader()
