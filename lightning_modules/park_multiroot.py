"""Park, Hwang, Kwak 2016: "3D Human Pose Estimation Using Convolutional Neural Networks with 2D
Pose Information" (ECCV Workshops), Sections 3.1-3.3 and 4.

One CNN, trained end to end, classifies every joint's 2D position on a grid of image cells and
regresses its 3D position relative to one or several root joints:

* Sec. 3.1 (Figure 1): five convolutional and three max-pooling layers with ZFNet's filter
  sizes (conv 7x7 stride 2, pool 3x3/2, conv 5x5 stride 2, pool 3x3/2, three conv 3x3, pool
  3x3/2) and fewer feature maps; after the last pooling layer two parallel pairs of fully
  connected layers: ``fc1 2D -> fc2 2D`` (one softmax over the ``N_g x N_g`` cells per joint)
  and ``fc1 3D -> fc2 3D``. Batch normalisation follows every convolutional and hidden fully
  connected layer, dropout 0.3 every hidden fully connected layer (Sec. 4).
* 2D loss (Eq. 1-3, :mod:`lightning_modules.blocks.grid2d`): soft labels inversely
  proportional to the distance to each cell centre closer than one cell width, cross-entropy
  summed over joints; joints that are not visible or not labelled carry no 2D loss.
* 2D-cls (Sec. 3.2, Figure 2; ``model.cls2d``): the softmax outputs, flattened to
  ``N_g * N_g * J`` ("probs 2D"), pass a fully connected layer ("fc probs 2D") whose output is
  concatenated with ``fc1 3D`` ("fc 2D-3D") before every ``fc2 3D``. The probabilities are
  detached: the 3D loss trains fc probs 2D and the 3D layers, never the 2D layers.
* Multi-reg (Sec. 3.3; ``model.roots``): one ``fc2 3D`` per root joint, each predicting every
  joint relative to its root (Eq. 4); the loss is Eq. 6,
  ``lambda_2D sum_j L2D(j) + lambda_3D sum_r sum_{j != r} ||R_j - (J_j - J_r)||^2``. At test
  time each root's pose is translated to zero mean and the poses are averaged (Eq. 7).
* Targets (Sec. 4): the ground truth translated to zero mean and scaled to unit Frobenius norm.
  ``predict`` recovers the scale so that the predicted torso bones are as long, in total, as
  the mean torso of the training set, then expresses the pose relative to the pelvis (the
  project's metric suite scores root-relative mm).

Choices where the paper is silent (its Figures 1-3 are not in our copy):

* feature maps: ``conv_widths`` = half of ZFNet's 96-256-384-384-256 in the paper preset
  (48-128-192-192-128; "fewer feature maps"), and 32-96-128-128-96 in the quick preset. Every
  conv and pool pads by half its kernel, so each stride-2 layer maps ``n`` to ``ceil(n / 2)``
  pixels at any crop size (225 px -> 8 x 8 after the last pool, 64 px -> 2 x 2; ZFNet's 6 x 6
  at 225 px pads less, which would not fit 32 px smoke crops).
* fully connected widths (Figure 2's numbers): fc1 2D = fc1 3D = 1024 and fc probs 2D = 512
  in the paper preset (256 / 256 / 128 quick). The output layers (fc2 2D logits, fc2 3D) have
  no batch norm or dropout: normalising them per batch would fix their scale.
* the six roots (Figure 3b): pelvis, r_knee, l_knee, neck, l_elbow, r_elbow. With knees and
  elbows (the middle of each limb) and the neck every joint is a root or a neighbour of one,
  as Sec. 3.3 asks; the sixth covers spine and pelvis, and the pelvis is the single root of
  the baseline ("around the position of the hip"), so the one-root model is one of the six.
  Ankles and wrists, the joints far from the pelvis that motivate Multi-reg, are one bone from
  a root.
* scale recovery: the training set's mean bone lengths are accumulated from the 3D labels of
  the first training epoch (buffers saved in the checkpoint, summed over DDP processes); the
  scale makes the sum of the six torso bones (pelvis-hips, pelvis-spine, spine-thorax,
  thorax-shoulders) equal to the sum of their means (``model.scale_bones=all``: every bone,
  the variant Sec. 4 tried first). Before any training batch (the sanity check) the template
  body's bones of :mod:`pose3d.body` stand in.
* the 3D loss logged for Figure 4 (``train/loss_3d``, ``val/loss_3d``, ``test/loss_3d``) is
  Eq. 4 summed over joints and averaged over roots, in unit-Frobenius units, so variants with
  one and six roots compare; Figure 4's test loss is our validation split (unseen subjects 2,
  3), measured every epoch.

Method metrics: ``cell_accuracy`` (the arg-max cell is the cell that holds the joint) and
``loss_3d``; the decoded 2D (the expected cell centre under each softmax) is ``joints_2d``,
so the base logs its pixel error and PCKh.

What the quick preset simplifies (each a config value; ``preset=paper`` has the paper's):
64 px crops (225), 6,000 images, 8 epochs (28) with ``lambda_2D`` dropped after epoch 5 (16),
narrower layers, batch 64 (128). Three settings of the quick preset were chosen on validation
subjects 2 and 3 (variant ``both``, 5 epochs), never on the test subjects: conv1 stride 1 (at
64 px ZFNet's stride 2 leaves a 2 x 2 map after pool5; stride 1 leaves 4 x 4, about the
paper's 8 x 8 at 225 px in cells per body), Adam 1e-3 halved every 2 epochs instead of SGD
0.01 halved every 4 (SGD halved every 1 or 2 epochs reached val MPJPE 395-440 mm, Adam 287 mm,
in 5 epochs of this short schedule), and the scale recovered from every bone
(``scale_bones=all``): on the same checkpoint, torso bones 286.6 mm, every bone 225.8 mm, the
oracle least-squares scale 204.9 mm; even the true torso length gives 297.1 mm, because this
small net's predicted torso is off in proportion to the rest of the body, which the paper's
"stable" torso assumes it is not. The paper trains one model per action
(``data.actions=[walking]``); the ablation trains one model on all actions. The data side
cannot be matched here: the paper crops 225 px at random from a 250 px person crop and adds
PCA colour noise; our DataModules render / crop directly at ``data.image_size`` with their
own crop jitter and photometric augmentation.
"""
from __future__ import annotations

import json
import statistics
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn
from torchmetrics import MeanMetric, Metric

from lightning_modules.base import PoseModule, masked_mean
from lightning_modules.blocks.backbones import conv_bn_relu
from lightning_modules.blocks.grid2d import containing_cell, expected_position, grid_cross_entropy, soft_labels
from pose3d.body import MEAN_BONE_LENGTHS
from pose3d.config import ConfigError, at_least, bounded, choice
from pose3d.skeleton import BONE_CHILDREN, JOINT_INDEX, ROOT, bone_lengths
from pose3d.summaries import mean_std, ordering_line, read_finished_run

SIX_ROOTS = ("pelvis", "r_knee", "l_knee", "neck", "l_elbow", "r_elbow")
TORSO_BONES = ("r_hip", "l_hip", "spine", "thorax", "l_shoulder", "r_shoulder")  # child joint of each bone


@dataclass
class MultiRootConfig:
    name: str = "park_multiroot"
    conv_widths: list[int] = field(default_factory=lambda: [24, 64, 96, 96, 64])  # conv1..conv5
    conv1_stride: int = at_least(1, 2)  # ZFNet: 2
    fc_2d: int = at_least(1, 256)  # fc1 2D
    fc_3d: int = at_least(1, 256)  # fc1 3D
    fc_probs: int = at_least(1, 128)  # fc probs 2D (2D-cls only)
    dropout: float = bounded(0.3, 0, 1)
    fc_batch_norm: bool = True  # batch norm in the hidden fully connected layers (Sec. 4)
    grid: int = at_least(2, 16)  # N_g
    roots: list[str] = field(default_factory=lambda: list(SIX_ROOTS))  # R of Eq. 6; [pelvis] = one root
    cls2d: bool = True  # feed the 2D softmax to the 3D layers (Sec. 3.2)
    lambda_2d_schedule: list[list[float]] = field(default_factory=lambda: [[0, 0.1], [16, 0.01]])  # [from epoch, lambda_2D]
    lambda_3d: float = at_least(0, 0.5)
    scale_bones: str = choice("torso", ("torso", "all"))


class MultiRootRegression(PoseModule):
    Config = MultiRootConfig

    def __init__(self, model: dict, optim: dict, data_info: dict):
        super().__init__(model, optim, data_info)
        cfg, joints, size = self.cfg, self.data_info.num_joints, self.data_info.image_size
        self.root_index = _joint_indices(cfg.roots, "model.roots")
        self.register_buffer("root_joints", torch.tensor(self.root_index), persistent=False)
        off_root = torch.ones(len(self.root_index), joints, 1)
        off_root[torch.arange(len(self.root_index)), self.root_joints] = 0.0
        self.register_buffer("off_root", off_root, persistent=False)
        self.schedule = _schedule(cfg.lambda_2d_schedule)
        if len(cfg.conv_widths) != 5:
            raise ConfigError(f"bad value for model.conv_widths: {list(cfg.conv_widths)}; expected 5 widths (conv1..conv5)")
        c1, c2, c3, c4, c5 = cfg.conv_widths
        pool = lambda: nn.MaxPool2d(3, 2, 1)  # noqa: E731
        self.features = nn.Sequential(
            conv_bn_relu(3, c1, cfg.conv1_stride, 7), pool(),
            conv_bn_relu(c1, c2, 2, 5), pool(),
            conv_bn_relu(c2, c3, 1, 3), conv_bn_relu(c3, c4, 1, 3), conv_bn_relu(c4, c5, 1, 3), pool(),
            nn.Flatten(),
        )
        side = size
        for stride in (cfg.conv1_stride, 2, 2, 2, 2):  # conv1, pool1, conv2, pool2, pool5
            side = -(-side // stride)
        flat, cells = c5 * side * side, cfg.grid * cfg.grid
        self.fc1_2d = fc_bn_relu(flat, cfg.fc_2d, cfg.dropout, cfg.fc_batch_norm)
        self.fc2_2d = nn.Linear(cfg.fc_2d, joints * cells)
        self.fc1_3d = fc_bn_relu(flat, cfg.fc_3d, cfg.dropout, cfg.fc_batch_norm)
        self.fc_probs_2d = fc_bn_relu(joints * cells, cfg.fc_probs, cfg.dropout, cfg.fc_batch_norm) if cfg.cls2d else None
        width_3d = cfg.fc_3d + (cfg.fc_probs if cfg.cls2d else 0)
        self.fc2_3d = nn.ModuleList(nn.Linear(width_3d, 3 * joints) for _ in self.root_index)
        bones = list(BONE_CHILDREN)
        scale_bones = bones if cfg.scale_bones == "all" else [JOINT_INDEX[name] for name in TORSO_BONES]
        self.register_buffer("scale_bones", torch.tensor([bones.index(j) for j in scale_bones]), persistent=False)
        # the training set's bone lengths (mm): sums over the first epoch's 3D samples, and their count
        self.register_buffer("bone_length_sum", torch.zeros(len(bones), dtype=torch.float64))
        self.register_buffer("bone_length_count", torch.zeros((), dtype=torch.float64))
        self.register_buffer("template_bones", torch.from_numpy(MEAN_BONE_LENGTHS[bones]).double(), persistent=False)
        self.history: list[dict[str, float]] = []  # per-epoch 3D losses (Figure 4)
        self._epoch_loss_3d = [0.0, 0]
        self._val_loss_3d: float | None = None

    # -- the network ----------------------------------------------------------------
    def forward(self, image: Tensor) -> dict[str, Tensor]:
        """``logits`` (B, J, N_g^2) of the 2D cells and ``per_root`` (B, N_r, J, 3): each root
        head's ``R_j``, every other joint relative to its root (Eq. 4; the root's own row is
        zero, not an output), in unit-Frobenius units."""
        joints = self.data_info.num_joints
        features = self.features(image)
        logits = self.fc2_2d(self.fc1_2d(features)).view(len(image), joints, -1)
        hidden = self.fc1_3d(features)
        if self.fc_probs_2d is not None:  # the 2D layers are trained by the 2D loss only
            probabilities = torch.softmax(logits.detach(), dim=-1).flatten(1)
            hidden = torch.cat((hidden, self.fc_probs_2d(probabilities)), dim=1)
        raw = torch.stack([head(hidden) for head in self.fc2_3d], dim=1).view(len(image), -1, joints, 3)
        return {"logits": logits, "per_root": raw * self.off_root}  # R_j for j != r; the root row is 0

    # -- targets and losses -----------------------------------------------------------
    def root_targets(self, joints_3d: Tensor) -> Tensor:
        """(B, N_r, J, 3): Eq. 4's ``J_j - J_r`` of the unit-Frobenius ground truth, for every root."""
        unit = normalise_pose(joints_3d)
        return unit[:, None] - unit[:, self.root_joints][:, :, None]

    def loss_3d_per_root(self, per_root: Tensor, joints_3d: Tensor) -> Tensor:
        """Eq. 4 summed over joints, (B, N_r)."""
        return (per_root - self.root_targets(joints_3d)).pow(2).sum(dim=(-1, -2))

    def loss_2d_per_joint(self, logits: Tensor, batch: dict[str, Tensor]) -> Tensor:
        """Eq. 3 for every joint (B, J); 0 where the joint has no 2D label."""
        mask = batch["has_2d"][:, None] & batch["visible"]
        labels = soft_labels(batch["joints_2d"], mask, self.data_info.image_size, self.cfg.grid)
        return grid_cross_entropy(logits, labels)

    def lambda_2d(self, epoch: int) -> float:
        """``lambda_2D`` at ``epoch``: the value of the last schedule entry starting at or before it."""
        return [value for start, value in self.schedule if start <= epoch][-1]

    def training_loss(self, batch: dict[str, Tensor]) -> tuple[Tensor, dict[str, Tensor]]:
        out = self(batch["image"])
        loss_2d = masked_mean(self.loss_2d_per_joint(out["logits"], batch).sum(-1), batch["has_2d"])
        per_root = self.loss_3d_per_root(out["per_root"], batch["joints_3d"])
        loss_3d = masked_mean(per_root.sum(-1), batch["has_3d"])  # Eq. 6: summed over the roots
        lambda_2d = self.lambda_2d(self.current_epoch)
        loss = lambda_2d * loss_2d + self.cfg.lambda_3d * loss_3d
        mean_root = masked_mean(per_root.mean(-1), batch["has_3d"]).detach()
        if batch["has_3d"].any():
            self._epoch_loss_3d = [self._epoch_loss_3d[0] + float(mean_root), self._epoch_loss_3d[1] + 1]
        return loss, {"loss_2d": loss_2d.detach(), "loss_3d": mean_root, "lambda_2d": torch.tensor(lambda_2d)}

    # -- prediction ----------------------------------------------------------------------
    def reference_length(self) -> Tensor:
        """The training set's mean total length (mm) of the bones that fix the scale."""
        if self.bone_length_count > 0:
            means = self.bone_length_sum / self.bone_length_count
        else:  # nothing seen yet (the sanity check before training): the template body
            means = self.template_bones
        return means[self.scale_bones].sum()

    def recover_scale(self, pose: Tensor) -> Tensor:
        """Scale a (B, J, 3) unit-Frobenius pose so that its scale bones sum to the training mean."""
        length = bone_lengths(pose)[:, self.scale_bones].sum(-1)
        return pose * (self.reference_length().to(pose.dtype) / length.clamp(min=1e-8))[:, None, None]

    def predict(self, batch: dict[str, Tensor]) -> dict[str, Any]:
        out = self(batch["image"])
        probabilities = torch.softmax(out["logits"], dim=-1)
        pose = self.recover_scale(average_roots(out["per_root"]))
        return {
            "joints_3d": pose - pose[:, ROOT : ROOT + 1],
            "joints_2d": expected_position(probabilities, self.data_info.image_size),
            "aux": {"logits": out["logits"], "per_root": out["per_root"]},
        }

    # -- the training set's bone lengths -------------------------------------------------
    def on_train_batch_start(self, batch: dict[str, Tensor], batch_idx: int) -> None:
        if self.current_epoch != 0:
            return
        stats = bone_length_stats(batch["joints_3d"], batch["has_3d"])
        stats = self.trainer.strategy.reduce(stats, reduce_op="sum")  # every DDP process adds every batch's sums
        self.bone_length_sum += stats[:-1]
        self.bone_length_count += stats[-1]

    # -- metrics ---------------------------------------------------------------------------
    def method_metrics(self) -> dict[str, Metric]:
        return {"cell_accuracy": MeanMetric(), "loss_3d": MeanMetric()}

    def update_method_metrics(self, metrics: dict[str, Metric], batch: dict[str, Tensor],
                              prediction: dict[str, Any], stage: str) -> None:
        logits = prediction["aux"]["logits"]
        cell, inside = containing_cell(batch["joints_2d"], self.data_info.image_size, self.cfg.grid)
        labelled = inside & batch["visible"] & batch["has_2d"][:, None]
        metrics["cell_accuracy"].update((logits.argmax(-1) == cell).float(), labelled.float())
        per_root = self.loss_3d_per_root(prediction["aux"]["per_root"], batch["joints_3d"]).mean(-1)
        metrics["loss_3d"].update(per_root, batch["has_3d"].float())

    # -- Figure 4: 3D losses over the epochs ------------------------------------------------
    def on_validation_epoch_end(self) -> None:
        metric = self.own_metrics["val"]["loss_3d"]
        if not self.trainer.sanity_checking and metric.update_called:
            self._val_loss_3d = float(metric.compute())
        super().on_validation_epoch_end()

    def on_train_epoch_end(self) -> None:
        total, count = self._epoch_loss_3d
        row = {"epoch": float(self.current_epoch), "lambda_2d": self.lambda_2d(self.current_epoch),
               "train_loss_3d": total / count if count else float("nan"),
               "val_loss_3d": float("nan") if self._val_loss_3d is None else self._val_loss_3d}
        self.history.append(row)
        self._epoch_loss_3d, self._val_loss_3d = [0.0, 0], None

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        checkpoint["loss_history"] = self.history

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        self.history = list(checkpoint.get("loss_history", []))

    def on_fit_end(self) -> None:
        if self.trainer.is_global_zero and self.history:
            path = Path(self.trainer.default_root_dir) / "loss_curves.json"
            path.write_text(json.dumps(self.history, indent=2) + "\n")

    # -- the ablation's tables and Figure 4 ------------------------------------------------
    @classmethod
    def summarise_ablation(cls, run_dirs: list[Path], out_dir: Path, reference: dict | None = None) -> str:
        """``per_action.md`` (our per-action MPJPE beside the paper's Table 2, the ordering of
        the variants) and ``figure4.png`` (3D training and validation loss per epoch) in
        ``out_dir`` from finished runs; returns the markdown."""
        return summarise_runs([Path(p) for p in run_dirs], Path(out_dir), reference or {})


# -- the maths, batched -------------------------------------------------------------------
def fc_bn_relu(cin: int, cout: int, dropout: float, batch_norm: bool = True) -> nn.Sequential:
    """A hidden fully connected layer: linear, batch norm (or none), ReLU, dropout (Sec. 4)."""
    norm = nn.BatchNorm1d(cout) if batch_norm else nn.Identity()
    return nn.Sequential(nn.Linear(cin, cout, bias=not batch_norm), norm, nn.ReLU(inplace=True), nn.Dropout(dropout))


def normalise_pose(joints_3d: Tensor) -> Tensor:
    """(B, J, 3) -> zero mean over the joints, unit Frobenius norm (Sec. 4); all-zero poses stay zero."""
    centred = joints_3d - joints_3d.mean(dim=1, keepdim=True)
    return centred / centred.flatten(1).norm(dim=1).clamp(min=1e-8)[:, None, None]


def average_roots(per_root: Tensor) -> Tensor:
    """Eq. 7: translate each root's pose (B, N_r, J, 3) to zero mean and average them, (B, J, 3)."""
    return (per_root - per_root.mean(dim=2, keepdim=True)).mean(dim=1)


def bone_length_stats(joints_3d: Tensor, has_3d: Tensor) -> Tensor:
    """(17,) float64: the bone lengths (mm) summed over the samples with 3D labels, then their count."""
    lengths = bone_lengths(joints_3d.double())[has_3d].sum(0)
    return torch.cat((lengths, has_3d.sum().double()[None]))


def _joint_indices(names, key: str) -> tuple[int, ...]:
    names = list(names)
    unknown = [n for n in names if n not in JOINT_INDEX]
    if unknown or not names or len(set(names)) != len(names):
        raise ConfigError(f"bad value for {key}: {names}; expected distinct joint names of: {', '.join(JOINT_INDEX)}")
    return tuple(JOINT_INDEX[n] for n in names)


def _schedule(entries) -> list[tuple[int, float]]:
    schedule = [(int(e[0]), float(e[1])) for e in entries if len(e) == 2]
    starts = [s for s, _ in schedule]
    if len(schedule) != len(entries) or not schedule or starts[0] != 0 or starts != sorted(set(starts)):
        raise ConfigError(f"bad value for model.lambda_2d_schedule: {[list(e) for e in entries]}; expected "
                          "[[0, lambda], [epoch, lambda], ...] with increasing start epochs, the first 0")
    return schedule


# -- the ablation's per-action table and Figure 4 (read from finished run folders) ------------
ORDER = ("baseline", "multi_reg", "cls2d", "both")  # Table 2's rows, worst to best in the paper
CLS2D_PAIRS = (("baseline", "cls2d"), ("multi_reg", "both"))  # without / with 2D-cls


def _mean_curve(runs: list[dict], key: str) -> list[float]:
    curves = [[row[key] for row in run["loss_curves"]] for run in runs if run["loss_curves"]]
    if not curves:
        return []
    length = min(len(c) for c in curves)
    return [statistics.fmean(c[e] for c in curves) for e in range(length)]


def summarise_runs(run_dirs: list[Path], out_dir: Path, reference: dict) -> str:
    """See :meth:`MultiRootRegression.summarise_ablation`."""
    from pose3d import plots

    runs = [r for r in (read_finished_run(d, ["loss_curves.json"]) for d in run_dirs) if r is not None]
    variants = sorted({r["variant"] for r in runs}, key=lambda v: (ORDER.index(v) if v in ORDER else len(ORDER), v))
    by_variant = {v: [r for r in runs if r["variant"] == v] for v in variants}
    actions = sorted({a for r in runs for a in r["metrics"].get("per_action", {})})
    paper = reference.get("per_action", {}) or {}
    paper_actions = list(next(iter(paper.values()), {}))
    shared = {a: p for a in actions for p in paper_actions if a.lower() == p.lower()}

    lines = ["# ablation-multiroot: per-action test MPJPE (mm)", "",
             "Ours: one model per variant trained on all actions, mean +/- std over seeds"
             + (f"; in brackets the paper's value for the same action ({reference.get('source', '')})" if shared else "") + ".", "",
             "| variant | seeds | " + " | ".join(actions) + " | mean |", "|" + "---|" * (len(actions) + 3)]
    means: dict[str, float] = {}
    for variant, group in by_variant.items():
        cells = [variant, str(len(group))]
        for action in actions:
            values = [r["metrics"]["per_action"][action]["mpjpe"] for r in group if action in r["metrics"].get("per_action", {})]
            text = mean_std(values)
            if action in shared and variant in paper:
                text += f" ({paper[variant][shared[action]]:.2f})"
            cells.append(text)
        overall = [r["metrics"]["test/mpjpe"] for r in group if "test/mpjpe" in r["metrics"]]
        if overall:
            means[variant] = statistics.fmean(overall)
        cells.append(mean_std(overall))
        lines.append("| " + " | ".join(cells) + " |")
    if paper:
        lines += ["", f"The paper, {reference.get('source', '')}:", "",
                  "| variant | " + " | ".join(paper_actions) + " | mean |", "|" + "---|" * (len(paper_actions) + 2)]
        for variant, row in paper.items():
            values = [row[a] for a in paper_actions]
            lines.append(f"| {variant} | " + " | ".join(f"{v:.2f}" for v in values) + f" | {statistics.fmean(values):.2f} |")
    lines += ordering_line(means, ORDER)
    lines += _figure4_findings(by_variant)
    text = "\n".join(lines) + "\n"
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "per_action.md").write_text(text)

    panels = {"(a) training 3D loss": {}, "(b) held-out 3D loss (val subjects)": {}}
    for variant, group in by_variant.items():
        label = f"{variant} ({'with' if variant in ('cls2d', 'both') else 'without'} 2D-cls)"
        for panel, key in zip(panels, ("train_loss_3d", "val_loss_3d")):
            curve = _mean_curve(group, key)
            if curve:
                panels[panel][label] = curve
    length = min((len(c) for series in panels.values() for c in series.values()), default=0)
    if length:
        panels = {p: {k: v[:length] for k, v in series.items()} for p, series in panels.items()}
        plots.curves(out_dir / "figure4.png", list(range(1, length + 1)), panels, "epoch",
                     "Figure 4: Eq. 4 loss (unit-Frobenius targets, mean over roots)")
    return text


def _figure4_findings(by_variant: dict[str, list[dict]]) -> list[str]:
    """Figure 4's claim, per pair: 2D-cls lowers the held-out 3D loss more than the training loss."""
    out = []
    for without, with_ in CLS2D_PAIRS:
        if without not in by_variant or with_ not in by_variant:
            continue
        change = {}
        for key in ("train_loss_3d", "val_loss_3d"):
            a, b = _mean_curve(by_variant[without], key), _mean_curve(by_variant[with_], key)
            if a and b and a[-1] > 0:
                change[key] = 100.0 * (b[-1] - a[-1]) / a[-1]
        if len(change) == 2:
            holds = change["val_loss_3d"] < change["train_loss_3d"]
            out.append(f"Figure 4, {without} -> {with_}: last-epoch 3D loss {change['train_loss_3d']:+.1f}% on training "
                       f"data, {change['val_loss_3d']:+.1f}% held out; 2D-cls lowers the held-out loss more than the "
                       f"training loss: {'yes' if holds else 'no'}.")
    return ([""] + out) if out else []
