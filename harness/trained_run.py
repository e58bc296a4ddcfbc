"""A finished run loaded back for inference: its model, rebuilt from the run's ``config.yaml`` and checkpoint.

``RUN`` is a run folder (``<results>/runs/<run>/``: the checkpoint its ``metrics.json`` names, else
``checkpoints/best.ckpt``, else ``checkpoints/last.ckpt``) or a checkpoint file inside one
(``<run>/checkpoints/<name>.ckpt``). The model is built from the run's ``config.yaml`` (``model``,
``optim``) and the checkpoint's ``data_info``, so a run on real data loads without the dataset.
Files the run's prerequisites resolved to (a frozen 2D network's checkpoint, a fitted pose prior:
the ``prerequisites`` record of its ``config.yaml``) are read where recorded or, when that path
does not exist from here, at the same place under the run's own results folder (a results folder
that was moved or copied). Checkpoints are read in one place, :func:`read_checkpoint`.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from pose3d.config import ConfigError

CHECKPOINT_NAMES = ("best.ckpt", "last.ckpt")  # a run folder's checkpoints, in order of preference


@dataclass
class LoadedRun:
    model: Any  # the method's LightningModule, in eval mode
    cfg: DictConfig  # the run's config.yaml, prerequisite paths as found from here
    run_dir: Path
    checkpoint: Path

    @property
    def method(self) -> str:
        return str(self.cfg.model.name)


def read_checkpoint(path: Path) -> dict:
    """The contents of a checkpoint written by ``python -m pose3d.train``, read as data
    (:func:`pose3d.safe_load.load_checkpoint`: weights only, never code); a file that is not
    one is a one-line :class:`ConfigError` naming it."""
    import pickle

    from pose3d.safe_load import load_checkpoint

    try:
        content = load_checkpoint(path)
    except ConfigError:  # refused: it would run code (its own one line)
        raise
    except (pickle.UnpicklingError, RuntimeError, EOFError, OSError, ValueError) as error:
        reason = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise ConfigError(f"cannot read checkpoint {path} ({reason[:160]}); expected a .ckpt written by "
                          "python -m pose3d.train") from None
    if not isinstance(content, dict) or "state_dict" not in content or "hyper_parameters" not in content:
        raise ConfigError(f"{path} holds no model weights and hyper-parameters; expected a .ckpt written by "
                          "python -m pose3d.train")
    return content


def locate(path: Path) -> tuple[Path, Path]:
    """(run folder, checkpoint) of ``RUN``, a run folder or a checkpoint file inside one."""
    path = Path(path)
    if not path.exists():
        raise ConfigError(f"run {path} does not exist; expected a run folder (results/runs/<run>) or a .ckpt file in one")
    run_dir = path if path.is_dir() else path.resolve().parent.parent
    if not (run_dir / "config.yaml").is_file():
        raise ConfigError(f"{run_dir / 'config.yaml'} does not exist; expected the config.yaml that "
                          f"python -m pose3d.train writes into a run folder (RUN: {path})")
    return run_dir, run_checkpoint(run_dir) if path.is_dir() else path


def run_checkpoint(run_dir: Path) -> Path:
    """The checkpoint a run folder's ``metrics.json`` names (the one it was tested with), else its
    best, else its last."""
    import json

    candidates = []
    metrics = run_dir / "metrics.json"
    if metrics.is_file():
        named = json.loads(metrics.read_text()).get("checkpoint")
        if named:
            candidates += [Path(named), run_dir / "checkpoints" / Path(named).name]
    candidates += [run_dir / "checkpoints" / name for name in CHECKPOINT_NAMES]
    for candidate in candidates:
        if candidate.is_file():
            return candidate
    raise ConfigError(f"{run_dir} holds no checkpoint; expected {run_dir / 'checkpoints' / 'best.ckpt'} "
                      "(a run trained by python -m pose3d.train)")


def find_prerequisites(cfg: DictConfig, run_dir: Path) -> None:
    """Point the config keys that the run's prerequisites resolved to at files that exist from
    here: as recorded, or under the run's own results folder (``<results>/runs/<run>``)."""
    results = run_dir.parent.parent
    for record in cfg.get("prerequisites") or []:
        recorded = Path(str(record.path))
        if recorded.exists():
            continue
        try:
            moved = results / recorded.relative_to(str(cfg.results_dir))
        except ValueError:
            moved = results / recorded.name
        if not moved.exists():
            raise ConfigError(f"{record.into}={recorded} (a prerequisite of {run_dir}) does not exist, nor {moved}; "
                              "expected the run's results folder as training left it")
        OmegaConf.update(cfg, str(record.into), str(moved), merge=False)


def load_run(path: Path, device: str = "cpu") -> LoadedRun:
    """The run at ``path`` (folder or checkpoint) with its trained weights, in eval mode on ``device``."""
    from lightning_modules import MODELS

    run_dir, checkpoint = locate(Path(path))
    cfg = OmegaConf.load(run_dir / "config.yaml")
    find_prerequisites(cfg, run_dir)
    state = read_checkpoint(checkpoint)
    method = MODELS.load(str(cfg.model.name))
    model = method(model=OmegaConf.to_container(cfg.model, resolve=True), optim=OmegaConf.to_container(cfg.optim),
                   data_info=state["hyper_parameters"]["data_info"])
    model.load_state_dict(state["state_dict"])
    model.on_load_checkpoint(state)
    return LoadedRun(model.eval().to(device), cfg, run_dir, checkpoint)
