"""The train/val/test loaders every DataModule builds the same way.

A DataModule that mixes in :class:`SplitLoaders` provides ``dataset(split)`` and a ``cfg`` with
``batch_size`` and ``num_workers``. Training shuffles and drops a ragged last batch (when there
are at least two batches); loader workers use one thread each: torch's default (all cores) in
every worker oversubscribes the CPU that training also needs and slows everything down.

Exact resume (:class:`datamodules.base.PoseDataModule` keeps the state): the global
generators are saved and restored as tensors, ints and lists (:func:`global_rng_state`), which
a checkpoint loaded with ``weights_only`` reads back; the training loader is a
:class:`ResumableLoader`. With ``num_workers > 0`` its workers start afresh every epoch (not
persistent), so that every worker's random state in every epoch is a function of the global
generator's state when the epoch starts, which a checkpoint holds (:func:`start_worker`): a run
killed and resumed ends where the uninterrupted run ends. (Persistent workers would carry
their generators on from the first epoch, a state no checkpoint holds.) The price is one
worker start per epoch, and a rendering cache in the workers (``data.cache_mb``) lasts one epoch.
"""
from __future__ import annotations

import random
from typing import Any

import numpy as np
import torch
from torch.utils.data import BatchSampler, DataLoader, Dataset, DistributedSampler, SequentialSampler


def global_rng_state() -> dict[str, Any]:
    """The global generators (torch CPU and CUDA, numpy, Python) as tensors, ints and lists,
    which a checkpoint loaded with ``weights_only`` reads back."""
    kind, keys, position, has_gauss, cached = np.random.get_state()
    version, internal, gauss = random.getstate()
    state = {"torch": torch.get_rng_state(), "numpy": [kind, torch.from_numpy(keys.astype(np.int64)), position, has_gauss, cached],
             "python": [version, list(internal), gauss]}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_global_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    kind, keys, position, has_gauss, cached = state["numpy"]
    np.random.set_state((kind, keys.numpy().astype(np.uint32), position, has_gauss, cached))
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


class ResumableLoader(DataLoader):
    """The training loader: on a resume its first iterator shuffles for ``first_epoch``.

    Lightning sets a sampler's epoch (``set_epoch`` of a DistributedSampler or the mixed batch
    sampler) only after the first iterator of a fit exists, so without this a resumed run
    would shuffle its first epoch as epoch 0. ``first_epoch`` is an ``__init__`` argument so
    that it survives Lightning re-creating the loader with a distributed sampler.
    """

    def __init__(self, *args, first_epoch: int = 0, **kwargs):
        super().__init__(*args, **kwargs)
        self.first_epoch = int(first_epoch)

    def __iter__(self):
        if self.first_epoch:
            for sampler in (self.sampler, self.batch_sampler):
                if hasattr(sampler, "set_epoch"):
                    sampler.set_epoch(self.first_epoch)
            self.first_epoch = 0
        return super().__iter__()


class EpochSampler(SequentialSampler):
    """The inner sampler of a batch sampler that draws its own batches: Lightning tells the epoch
    to a batch sampler's ``sampler`` (``set_epoch``), never to the batch sampler itself."""

    epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)


class EpochBatchSampler(BatchSampler):
    """Base of the batch samplers that draw each epoch's batches themselves (fresh synthetic
    samples, mixed sources): the epoch and the DDP replica are read from the inner sampler, an
    :class:`EpochSampler`, or the ``DistributedSampler`` Lightning puts in its place under DDP
    (its indices are not used)."""

    @property
    def epoch(self) -> int:
        return int(getattr(self.sampler, "epoch", 0))

    def set_epoch(self, epoch: int) -> None:
        self.sampler.set_epoch(epoch)

    def replica(self) -> tuple[int, int]:
        """(rank, number of replicas)."""
        if isinstance(self.sampler, DistributedSampler):
            return int(self.sampler.rank), int(self.sampler.num_replicas)
        return 0, 1


def start_worker(worker_id: int) -> None:
    """A loader worker's start: one thread, and the dataset's own generators (``reseed``, e.g.
    albumentations') seeded from the worker's seed, which torch derives from a base seed the
    loader draws from the global generator when its iterator starts, plus the worker's id
    (torch seeds the worker's torch, numpy and Python generators from it too)."""
    torch.set_num_threads(1)
    info = torch.utils.data.get_worker_info()
    if info is not None and hasattr(info.dataset, "reseed"):
        info.dataset.reseed(info.seed)


class SplitLoaders:
    cfg: object

    def dataset(self, split: str) -> Dataset:
        raise NotImplementedError

    def _loader(self, split: str, **resume) -> DataLoader:
        dataset = self.dataset(split)
        return (ResumableLoader if split == "train" else DataLoader)(
            dataset,
            batch_size=self.cfg.batch_size,
            shuffle=split == "train",
            drop_last=split == "train" and len(dataset) >= 2 * self.cfg.batch_size,
            num_workers=self.cfg.num_workers,
            persistent_workers=self.cfg.num_workers > 0 and split != "train",  # see the module docstring
            worker_init_fn=start_worker,
            **resume,
        )

    def batched_train_loader(self, batch_sampler, first_epoch: int = 0) -> ResumableLoader:
        """The training loader of a module whose own ``batch_sampler`` picks the training batches."""
        return ResumableLoader(self.dataset("train"), batch_sampler=batch_sampler, num_workers=self.cfg.num_workers,
                               persistent_workers=False,  # workers seeded afresh each epoch: module docstring
                               worker_init_fn=start_worker, first_epoch=first_epoch)

    def build_train_loader(self, first_epoch: int = 0) -> DataLoader:
        return self._loader("train", first_epoch=first_epoch)

    def train_dataloader(self) -> DataLoader:
        return self.build_train_loader()

    def val_dataloader(self) -> DataLoader:
        return self._loader("val")

    def test_dataloader(self) -> DataLoader:
        return self._loader("test")
