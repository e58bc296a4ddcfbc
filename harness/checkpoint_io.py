"""How the trainer reads and writes checkpoints: as data, and whole.

Reading: resuming (``ckpt_path=last`` or a file) and testing a checkpoint go through
:func:`pose3d.safe_load.load_checkpoint`.

Lightning 2.6.6 hands ``trainer.fit(ckpt_path=...)`` and ``trainer.test(ckpt_path=...)`` to
``strategy.checkpoint_io.load_checkpoint(path, weights_only=None)``; its ``TorchCheckpointIO``
calls ``torch.load`` with ``weights_only`` unset, which torch 2.13 reads as ``True`` unless
``TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD`` is set in the environment (then as ``False``: the file may run
code). :class:`SafeCheckpointIO` replaces that reader. Tensors come to the CPU first (the
strategy then moves the weights and optimiser state where the run is), so a run saved on a GPU
resumes on any machine.

Writing: a checkpoint is serialised in memory, written to a temporary name beside its target
and renamed over it (:func:`pose3d.files.write_atomic`), so the previous ``last.ckpt`` /
``best.ckpt`` stays whole until the new one is complete (a full disk, a kill mid-write).
"""
from __future__ import annotations

import io
from pathlib import Path
from typing import Any, Optional

from lightning.fabric.plugins.io.torch_io import TorchCheckpointIO

from pose3d.files import write_atomic
from pose3d.safe_load import load_checkpoint


class SafeCheckpointIO(TorchCheckpointIO):
    """Lightning's checkpoint plugin with :func:`pose3d.safe_load.load_checkpoint` as its reader
    and whole-file writes (module docstring)."""

    def save_checkpoint(self, checkpoint: dict[str, Any], path, storage_options: Any | None = None) -> None:
        import torch

        if storage_options is not None:
            raise TypeError(f"{type(self).__name__} takes no storage_options")
        buffer = io.BytesIO()
        torch.save(checkpoint, buffer)
        write_atomic(Path(path), buffer.getbuffer())

    def load_checkpoint(self, path, map_location: Optional[Any] = "cpu", weights_only: Optional[bool] = None) -> dict:
        """``path`` read as data whatever ``weights_only`` the caller asks for (never ``False``)."""
        return load_checkpoint(path, map_location=map_location)
