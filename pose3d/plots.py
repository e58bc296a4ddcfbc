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
    draw_bones(ax, view_coordinates(joints, view), color=colour, lw=width, **style)


def view_coordinates(joints, view: str) -> np.ndarray:
    """(17, 2) plot coordinates of a (17, 3) camera-frame pose: ``front`` x against -y, ``side`` z against -y."""
    joints = np.asarray(joints)
    horizontal = joints[:, 0] if view == "front" else joints[:, 2]
    return np.stack((horizontal, -joints[:, 1]), axis=-1)


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


PREDICTION_FIGURE_INCHES = (9.0, 3.2)  # 900 x 320 px at 100 dpi: every frame of a video the same, even size
VIEW_HALF_WIDTH_MM = 1100.0  # the 3D views show +/- this around the root (a standing person fits)


class PredictionFigure:
    """Predictions as RGB pictures (H, W, 3) uint8 of one fixed size: the image with the 2D
    skeleton drawn on it beside the 3D skeleton in a front and a side view. The layout is drawn
    once; each call only moves its lines (several times faster than a new figure per frame)."""

    def __init__(self):
        from pose3d.skeleton import H36M_BONES

        self.plt = pyplot()
        self.fig, self.axes = self.plt.subplots(1, 3, figsize=PREDICTION_FIGURE_INCHES, dpi=100,
                                                gridspec_kw={"width_ratios": [1.4, 1.0, 1.0]})
        self.bones = list(H36M_BONES)
        image_ax, *view_axes = self.axes
        self.picture = None
        self.bones_2d = [image_ax.plot([], [], color="#ff7f0e", lw=1.8)[0] for _ in self.bones]
        self.points_2d = image_ax.plot([], [], "o", color="#ffdd57", ms=2.5)[0]
        image_ax.set_title("2D on the image", fontsize=8)
        self.bones_3d, self.no_3d = {}, {}
        for ax, view in zip(view_axes, ("front", "side")):
            self.bones_3d[view] = [ax.plot([], [], color="#1f77b4", lw=2.0)[0] for _ in self.bones]
            self.no_3d[view] = ax.text(0.5, 0.5, "2D-only method:\nno 3D", ha="center", va="center", fontsize=9,
                                       transform=ax.transAxes, visible=False)
            ax.set_xlim(-VIEW_HALF_WIDTH_MM, VIEW_HALF_WIDTH_MM)
            ax.set_ylim(-VIEW_HALF_WIDTH_MM, VIEW_HALF_WIDTH_MM)
            ax.set_aspect("equal")
            ax.grid(alpha=0.3)
            ax.set_title(f"3D, {view} view ({'x' if view == 'front' else 'z'} vs y, mm)", fontsize=8)
        for ax in self.axes:
            ax.set_xticks([])
            ax.set_yticks([])
        self.title = self.fig.suptitle("", fontsize=9)
        self.fig.subplots_adjust(left=0.01, right=0.99, bottom=0.02, top=0.86, wspace=0.05)

    def __call__(self, image, joints_2d, joints_3d, title: str, window: Sequence[float] | None = None) -> np.ndarray:
        """``image`` (h, w, 3) with ``joints_2d`` (17, 2; its pixels), shown within ``window``
        (x0, y0, x1, y1; None: all of it); ``joints_3d`` (17, 3) root-relative camera-frame mm,
        or None for a 2D-only prediction (the views say so)."""
        image, joints_2d = np.asarray(image), np.asarray(joints_2d)
        height, width = image.shape[:2]
        if self.picture is None:
            self.picture = self.axes[0].imshow(image)
        self.picture.set_data(image)
        self.picture.set_extent((-0.5, width - 0.5, height - 0.5, -0.5))
        x0, y0, x1, y1 = window if window is not None else (-0.5, -0.5, width - 0.5, height - 0.5)
        self.axes[0].set_xlim(x0, x1)
        self.axes[0].set_ylim(y1, y0)
        self._move(self.bones_2d, joints_2d)
        self.points_2d.set_data(joints_2d[:, 0], joints_2d[:, 1])
        for view, lines in self.bones_3d.items():
            self.no_3d[view].set_visible(joints_3d is None)
            self._move(lines, np.full((len(joints_2d), 2), np.nan) if joints_3d is None else view_coordinates(joints_3d, view))
        self.title.set_text(title)
        self.fig.canvas.draw()
        return np.asarray(self.fig.canvas.buffer_rgba())[..., :3].copy()

    def _move(self, lines, points: np.ndarray) -> None:
        for line, (child, parent) in zip(lines, self.bones):
            line.set_data(points[[child, parent], 0], points[[child, parent], 1])

    def close(self) -> None:
        self.plt.close(self.fig)
