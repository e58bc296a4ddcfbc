"""The intra-op thread count for a block of work.

``with intra_op_threads(1): ...`` runs the block with one torch intra-op thread and restores
the previous count after it (``None``: leave the count as it is). Small operations cannot pay
for a second thread: each parallel region ends at a barrier, which on a machine whose other
core is busy waits for that core's time slice.
"""
from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch


@contextmanager
def intra_op_threads(count: int | None) -> Iterator[None]:
    """Set torch's intra-op thread count to ``count`` (>= 1) inside the block, then restore it."""
    previous = torch.get_num_threads()
    if count is None or count == previous:
        yield
        return
    if count < 1:
        raise ValueError(f"intra-op thread count must be at least 1, got {count}")
    torch.set_num_threads(count)
    try:
        yield
    finally:
        torch.set_num_threads(previous)
