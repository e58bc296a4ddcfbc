"""The train/val/test loaders every DataModule builds the same way.

A DataModule that mixes in :class:`SplitLoaders` provides ``dataset(split)`` and a ``cfg`` with
``batch_size`` and ``num_workers``. Training shuffles and drops a ragged last batch (when there
are at least two batches); loader workers use one thread each: torch's default (all cores) in
every worker oversubscribes the CPU that training also needs and slows everything down.
"""
from __future__ import annotations

import torch
from torch.utils.data import DataLoader, Dataset


def one_thread_per_worker(worker_id: int) -> None:
    torch.set_num_threads(1)


class SplitLoaders:
    cfg: object

    def dataset(self, split: str) -> Dataset:
        raise NotImplementedError

    def _loader(self, split: str) -> DataLoader:
        dataset = self.dataset(split)
        return DataLoader(
            dataset,
            batch_size=self.cfg.batch_size,
            shuffle=split == "train",
            drop_last=split == "train" and len(dataset) >= 2 * self.cfg.batch_size,
            num_workers=self.cfg.num_workers,
            persistent_workers=self.cfg.num_workers > 0,
            worker_init_fn=one_thread_per_worker,
        )

    def train_dataloader(self) -> DataLoader:
        return self._loader("train")

    def val_dataloader(self) -> DataLoader:
        return self._loader("val")

    def test_dataloader(self) -> DataLoader:
        return self._loader("test")
