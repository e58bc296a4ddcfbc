"""2D from outside a method: one config block and one loader for every method that consumes it.

Tekin 2017 fuses a stacked hourglass's confidence maps, DeepSkeleton matches its hypotheses
against the same network's 2D detections; any such method embeds :class:`TwoDSourceConfig`
as ``model.two_d`` (same key names everywhere) and builds a :class:`TwoDSource`:

* ``source: predicted``: a trained 2D network (the run of ``experiment``, declared as a
  prerequisite by :func:`two_d_prerequisites` unless ``checkpoint`` is given), frozen and
  kept in eval mode under ``trainer.fit``;
* ``source: ground_truth``: Gaussian maps rendered from the 2D labels (the oracle for
  analysis), at the resolution the named network would predict.

The map stride is the 2D network's own (``map_stride`` of its method class), never a literal;
``decode`` turns maps into joints (``subpixel``: the quarter-pixel shift of
:func:`pose3d.heatmaps.decode_argmax`; ``argmax``: the arg-max pixel).

``precision`` is the frozen network's arithmetic: ``float32``, ``bfloat16`` autocast
(convolutions in bfloat16, the maps returned as float32), or ``auto``: bfloat16 where the
hardware multiplies it natively (a CUDA device, or a CPU with AVX512-BF16 or AMX), float32
elsewhere. ``auto`` is resolved before the run starts (:func:`resolve_auto_precision`), so the
run's ``config.yaml`` records the precision that was used. On a CPU with native bfloat16 the
quick hourglass's forward is 1.8x faster at one thread and 2.0x at two (not measured on a
GPU); the maps differ by bfloat16 rounding (8-bit mantissa). On a CPU without it, bfloat16 is
emulated and about 7x slower than float32 (386.7 against 53.7 images/s on a 2-core AMD EPYC
with AVX2): a run asked for bfloat16 there warns. ``python -m pose3d.bench two_d_precision``
measures both on a trained network.
"""
from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Optional

import torch
from torch import Tensor, nn

from pose3d.config import ConfigError, choice, read_experiment
from pose3d.heatmaps import decode_argmax
from pose3d.machine import native_bfloat16 as native_bfloat16_cpu
from pose3d.prerequisites import TrainedRun
from pose3d.safe_load import UnsafeFileError, load_checkpoint

# a frozen 2D network is in eval mode on purpose
warnings.filterwarnings("ignore", message=r"Found \d+ module\(s\) in eval mode at the start of training")


@dataclass
class TwoDSourceConfig:
    source: str = choice("predicted", ("predicted", "ground_truth"))
    experiment: str = "heatmap2d"  # the experiment whose trained run predicts the 2D
    checkpoint: Optional[str] = None  # a checkpoint of it; None: the harness trains or reuses one
    sigma: float = 1.0  # ground-truth maps: Gaussian width, map pixels
    decode: str = choice("subpixel", ("subpixel", "argmax"))
    precision: str = choice("float32", ("float32", "bfloat16", "auto"))  # the frozen network's forward


def cpu_has_native_bfloat16() -> bool:
    """Whether this CPU multiplies bfloat16 in hardware (AVX512-BF16 or AMX) and oneDNN may use
    it (:func:`pose3d.machine.native_bfloat16`); False where it cannot be told."""
    return native_bfloat16_cpu()


def native_bfloat16(accelerator: str = "auto") -> bool:
    """Whether the device a run trains on multiplies bfloat16 in hardware: a CUDA device (when
    ``trainer.accelerator`` picks one), else the CPU's flags (:func:`cpu_has_native_bfloat16`)."""
    on_gpu = str(accelerator) in ("gpu", "cuda") or (str(accelerator) == "auto" and torch.cuda.is_available())
    return on_gpu or cpu_has_native_bfloat16()


def resolve_auto_precision(cfg) -> None:
    """Replace ``model.two_d.precision: auto`` of a run config by what this machine does natively
    (``bfloat16`` or ``float32``), so the run's ``config.yaml`` says which was used."""
    two_d = cfg.model.get("two_d") if "model" in cfg else None
    if two_d is not None and two_d.get("precision") == "auto":
        two_d.precision = "bfloat16" if native_bfloat16(cfg.trainer.accelerator) else "float32"


def adopt_resolved_precision(cfg, stored: dict | None) -> None:
    """A planned ``model.two_d.precision: auto`` takes the value an existing run folder's
    ``config.yaml`` resolved it to: ``auto`` means whatever the machine that ran it does
    natively, so the ablation planner (which may run elsewhere, e.g. on a cluster's login node)
    counts that run as having the planned settings."""
    two_d = cfg.model.get("two_d") if "model" in cfg else None
    resolved = (((stored or {}).get("model") or {}).get("two_d") or {}).get("precision")
    if two_d is not None and two_d.get("precision") == "auto" and resolved in ("float32", "bfloat16"):
        two_d.precision = resolved


def two_d_only_data(data_name: str) -> dict | None:
    """Data overrides that keep only a data config's 2D-labelled, 2D-only samples (the stand-in
    for MPII + LSP of a 2D pre-training stage): the synthetic wild domain, or a mixed
    DataModule's 2D sources alone; None where the data has no such part."""
    return {"synthetic": {"train_domain": "wild"}, "mixed": {"ratio_3d": 0.0}}.get(str(data_name))


def two_d_pretraining_run(experiment: str, data_name: str, overrides: tuple[str, ...],
                          pretrain_overrides=()) -> TrainedRun | None:
    """The declared 2D pre-training run of ``experiment`` that a consumer initialises from
    (``init_from``): on the data its ``pretrain_overrides`` name (real data: e.g. MPII), else on
    the 2D-only part of the consumer's own data (:func:`two_d_only_data`); None where neither
    exists."""
    if pretrain_overrides:
        return TrainedRun(experiment, into="init_from", same_data=False,
                          overrides=tuple(overrides) + tuple(str(o) for o in pretrain_overrides))
    data = two_d_only_data(data_name)
    return None if data is None else TrainedRun(experiment, into="init_from", overrides=tuple(overrides),
                                                data_overrides=data)


def two_d_prerequisites(two_d, into: str = "model.two_d.checkpoint") -> list[TrainedRun]:
    """The 2D network's trained run, when the 2D is predicted and no checkpoint is given."""
    if two_d.source != "predicted" or two_d.checkpoint:
        return []
    return [TrainedRun(experiment=str(two_d.experiment), into=into)]


def method_class(experiment: str) -> type:
    """The method class that ``experiments/<experiment>.yaml`` trains."""
    from lightning_modules import MODELS

    name = (read_experiment(experiment).get("model") or {}).get("name")
    if name not in MODELS.entries:
        raise ConfigError(f"experiments/{experiment}.yaml names model {name!r}; expected a 2D method of: {', '.join(MODELS)}")
    return MODELS.load(name)


def load_frozen_maps(checkpoint: str, image_size: int, key: str = "model.two_d.checkpoint") -> tuple[nn.Module, int]:
    """The map network (image -> maps) of a trained 2D method's checkpoint (read as data:
    :func:`pose3d.safe_load.load_checkpoint`), frozen, and its stride."""
    from lightning_modules import MODELS

    try:
        state = load_checkpoint(checkpoint)
        cls = MODELS.load(state["hyper_parameters"]["model"]["name"])
    except UnsafeFileError:
        raise
    except FileNotFoundError:
        raise ConfigError(f"{key}={checkpoint} does not exist; expected a checkpoint of a trained 2D network") from None
    except Exception as error:  # not a Lightning checkpoint of one of our methods
        raise ConfigError(f"{key}={checkpoint} is not a pose3d checkpoint ({type(error).__name__}); "
                          "expected a .ckpt written by python -m pose3d.train") from None
    trained = cls.from_checkpoint(state)
    if not hasattr(trained, "map_network"):
        raise ConfigError(f"{key}={checkpoint} is a {cls.__name__} checkpoint, which predicts no 2D maps")
    if trained.data_info.image_size != image_size:
        raise ConfigError(f"{key}={checkpoint} was trained on {trained.data_info.image_size} px crops; "
                          f"expected {image_size} px like data.image_size")
    network = trained.map_network().eval()
    network.requires_grad_(False)
    return network, int(cls.map_stride)


class TwoDSource(nn.Module):
    """Confidence maps and 2D joints from ``model.two_d`` (see the module docstring)."""

    def __init__(self, cfg, image_size: int):
        super().__init__()
        self.cfg, self.image_size = cfg, int(image_size)
        if cfg.source == "predicted":
            if not cfg.checkpoint:
                raise ConfigError("model.two_d.source=predicted needs model.two_d.checkpoint (a trained 2D network); "
                                  "runs through python -m pose3d.train train one, or use model.two_d.source=ground_truth")
            self.network, self.stride = load_frozen_maps(cfg.checkpoint, self.image_size)
        else:
            self.network, self.stride = None, int(method_class(cfg.experiment).map_stride)
        self.map_size = self.image_size // self.stride
        precision = cfg.precision if cfg.precision != "auto" else ("bfloat16" if native_bfloat16() else "float32")
        self.bfloat16 = self.predicted and precision == "bfloat16"
        if self.bfloat16 and not torch.cuda.is_available() and not cpu_has_native_bfloat16():
            warnings.warn("model.two_d.precision=bfloat16 on a CPU without native bfloat16 (avx512_bf16 or amx_bf16) "
                          "is emulated and slower than float32; expected model.two_d.precision=float32 on this machine")

    @property
    def predicted(self) -> bool:
        return self.network is not None

    def train(self, mode: bool = True):
        super().train(mode)
        if self.network is not None:
            self.network.eval()  # frozen: batch-norm statistics stay those of its training
        return self

    def required_targets(self) -> dict[str, dict]:
        """Ground truth: Gaussian maps of the labels at the network's resolution."""
        if self.predicted:
            return {}
        return {"heatmaps": {"kind": "heatmaps", "size": self.map_size, "sigma": float(self.cfg.sigma)}}

    def maps(self, batch: dict[str, Tensor]) -> Tensor:
        """(B, J, h, w) confidence maps of the batch."""
        if self.network is None:
            return batch["heatmaps"]
        image = batch["image"]
        with torch.no_grad(), torch.autocast(image.device.type, dtype=torch.bfloat16, enabled=self.bfloat16):
            return self.network(image).float()

    def joints_2d(self, maps: Tensor) -> Tensor:
        """(B, J, 2) crop pixels decoded from ``maps``."""
        size = (self.image_size, self.image_size)
        return decode_argmax(maps, size, subpixel=self.cfg.decode == "subpixel")[0]
