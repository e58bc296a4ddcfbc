"""Small matplotlib figures written next to results (headless, Agg backend)."""
from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import numpy as np


def pyplot():
    """matplotlib.pyplot on the headless Agg backend (every figure of the project draws through it)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save(fig, path: Path, dpi: int) -> None:
    """Write ``fig`` to ``path`` whole (:func:`pose3d.files.atomic_path`) and close it."""
    from pose3d.files import atomic_path

    path = Path(path)
    try:
        with atomic_path(path) as partial:
            fig.savefig(partial, dpi=dpi, format=path.suffix.lstrip(".") or None)
    finally:
        pyplot().close(fig)


def curves(path: Path, x: Sequence[float], panels: dict[str, dict[str, Sequence[float]]], xlabel: str, title: str) -> None:
    """One panel per entry of ``panels`` ({panel title: {series label: values}}), side by side."""
    plt = pyplot()
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
    save(fig, path, dpi=110)


def matrix(path: Path, values: np.ndarray, title: str, split: int | None = None, label: str = "") -> None:
    """A square matrix as an image in [0, 1], with lines at ``split`` (block boundaries)."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(5.2, 4.6))
    image = ax.imshow(values, vmin=0.0, vmax=1.0, cmap="viridis")
    if split is not None:
        ax.axhline(split - 0.5, color="white", lw=1)
        ax.axvline(split - 0.5, color="white", lw=1)
    fig.colorbar(image, ax=ax, label=label)
    ax.set_title(title, fontsize=9)
    fig.tight_layout()
    save(fig, path, dpi=110)


def bars(path: Path, labels: Sequence[str], means: Sequence[float], stds: Sequence[float], ylabel: str, title: str,
         reference: Sequence[float | None] | None = None, floors: dict[str, float] | None = None) -> None:
    """Bar chart with error bars; optional reference values (e.g. the paper's) as markers and
    ``floors`` ({label: value}, e.g. the chance floors of :mod:`pose3d.floors`) as dashed lines."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(1.1 * len(labels) + 2.5, 3.8))
    x = np.arange(len(labels))
    ax.bar(x, means, yerr=stds, capsize=4, color="#4c72b0", label="ours (mean +/- std over seeds)")
    if reference is not None and any(r is not None for r in reference):
        ref = [np.nan if r is None else r for r in reference]
        ax.plot(x, ref, "D", color="#dd8452", label="paper")
    for (label, value), style in zip((floors or {}).items(), ("--", ":")):
        ax.axhline(value, color="#555555", linestyle=style, linewidth=1, label=label)
    ax.set_xticks(x, labels, rotation=20, ha="right")
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.legend(fontsize=8)
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    save(fig, path, dpi=110)


def lines_over_categories(path: Path, categories: Sequence[str], series: dict[str, Sequence[float]], ylabel: str,
                          title: str) -> None:
    """One line per entry of ``series`` over the same categories (e.g. MPJPE per action and method)."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(0.7 * len(categories) + 4.0, 3.8))
    x = np.arange(len(categories))
    for label, values in series.items():
        ax.plot(x, values, marker="o", label=label)
    ax.set_xticks(x, categories, rotation=30, ha="right")
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.legend(fontsize=7)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    save(fig, path, dpi=110)


def draw_bones(ax, points, **style) -> None:
    """The 16 bones of (17, 2) plot coordinates as lines on ``ax`` (``style``: matplotlib's)."""
    from pose3d.skeleton import H36M_BONES

    points = np.asarray(points)
    for child, parent in H36M_BONES:
        ax.plot(points[[child, parent], 0], points[[child, parent], 1], **style)


def draw_pose(ax, joints, view: str, colour: str, width: float = 1.6, **style) -> None:
    """A (17, 3) camera-frame pose (mm; x right, y down, z forward) as bones on ``ax``:
    ``view="front"`` plots x against y, ``"side"`` z against y (image rows point down)."""
    joints = np.asarray(joints)
    horizontal = joints[:, 0] if view == "front" else joints[:, 2]
    draw_bones(ax, np.stack((horizontal, -joints[:, 1]), axis=-1), color=colour, lw=width, **style)


def pose_panels(path: Path, images, truth, predictions: dict[str, Any], title: str) -> None:
    """Rows of test samples: the input image, then per method its prediction (colour) over the
    ground truth (grey) in a front and a side view. ``images`` (N, 3, H, W) in [0, 1] or
    normalised, ``truth`` (N, 17, 3) and each prediction (N, 17, 3) root-relative mm."""
    plt = pyplot()
    rows, methods = len(truth), list(predictions)
    fig, axes = plt.subplots(rows, 1 + 2 * len(methods), figsize=(1.6 * (1 + 2 * len(methods)), 1.7 * rows),
                             squeeze=False)
    colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for row in range(rows):
        image = np.asarray(images[row], dtype=np.float32).transpose(1, 2, 0)
        span = image.max() - image.min()
        axes[row, 0].imshow((image - image.min()) / span if span > 0 else image)
        for k, method in enumerate(methods):
            for v, view in enumerate(("front", "side")):
                ax = axes[row, 1 + 2 * k + v]
                draw_pose(ax, np.asarray(truth[row]), view, "0.6", 2.4)
                draw_pose(ax, np.asarray(predictions[method][row]), view, colours[k % len(colours)])
                ax.set_aspect("equal")
                if row == 0:
                    ax.set_title(f"{method}\n{view}", fontsize=7)
    for ax in axes.flat:
        ax.set_xticks([])
        ax.set_yticks([])
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    save(fig, path, dpi=100)
