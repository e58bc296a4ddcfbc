"""A run folder's W&B run id: one W&B run per run folder, continued by every resume.

The id is stored in ``<run folder>/wandb_id`` the first time a run starts and read back
whenever it resumes (``ckpt_path=last``: a local resume, a requeued SLURM task), so the
logger continues the same W&B run (``resume="allow"``). A fresh start (a new folder, or
``overwrite=true``) takes the id a sweep agent assigned (``WANDB_RUN_ID``, which ``wandb
agent`` sets for each run it starts) or a new one, and stores it.
"""
from __future__ import annotations

import os
import secrets
import string
from pathlib import Path

ID_FILE = "wandb_id"


def run_id(run_dir: Path, resuming: bool) -> str:
    """The W&B id of ``run_dir``'s run (stored by the main process only)."""
    from lightning.pytorch.utilities import rank_zero_only

    path = Path(run_dir) / ID_FILE
    stored = path.read_text().strip() if path.is_file() else ""
    if resuming and stored:
        return stored
    if stored and rank_zero_only.rank != 0:  # another rank of this run has just stored it
        return stored
    new = os.environ.get("WANDB_RUN_ID") or new_id()
    if rank_zero_only.rank == 0:
        path.parent.mkdir(parents=True, exist_ok=True)
        partial = path.with_name(f".{ID_FILE}.{os.getpid()}.tmp")
        partial.write_text(new + "\n")
        partial.replace(path)
    return new


def new_id(length: int = 8) -> str:
    """A fresh id in W&B's own form (lower-case letters and digits)."""
    return "".join(secrets.choice(string.ascii_lowercase + string.digits) for _ in range(length))
