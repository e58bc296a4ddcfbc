"""Small matplotlib figures written next to results (headless, Agg backend)."""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def curves(path: Path, x: Sequence[float], panels: dict[str, dict[str, Sequence[float]]], xlabel: str, title: str) -> None:
    """One panel per entry of ``panels`` ({panel title: {series label: values}}), side by side."""
    plt = _pyplot()
    fig, axes = plt.subplots(1, len(panels), figsize=(5 * len(panels), 3.6), squeeze=False)
    for ax, (panel, series) in zip(axes[0], panels.items()):
        for label, values in series.items():
            ax.plot(x, values, label=label)
        ax.set_title(panel)
        ax.set_xlabel(xlabel)
        ax.legend(fontsize=7, ncol=2)
        ax.grid(alpha=0.3)
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def matrix(path: Path, values: np.ndarray, title: str, split: int | None = None, label: str = "") -> None:
    """A square matrix as an image in [0, 1], with lines at ``split`` (block boundaries)."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(5.2, 4.6))
    image = ax.imshow(values, vmin=0.0, vmax=1.0, cmap="viridis")
    if split is not None:
        ax.axhline(split - 0.5, color="white", lw=1)
        ax.axvline(split - 0.5, color="white", lw=1)
    fig.colorbar(image, ax=ax, label=label)
    ax.set_title(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def bars(path: Path, labels: Sequence[str], means: Sequence[float], stds: Sequence[float], ylabel: str, title: str,
         reference: Sequence[float | None] | None = None) -> None:
    """Bar chart with error bars; optional reference values (e.g. the paper's) as markers."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(1.1 * len(labels) + 2.5, 3.8))
    x = np.arange(len(labels))
    ax.bar(x, means, yerr=stds, capsize=4, color="#4c72b0", label="ours (mean +/- std over seeds)")
    if reference is not None and any(r is not None for r in reference):
        ref = [np.nan if r is None else r for r in reference]
        ax.plot(x, ref, "D", color="#dd8452", label="paper")
    ax.set_xticks(x, labels, rotation=20, ha="right")
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.legend(fontsize=8)
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
