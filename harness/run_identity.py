"""A run's identity is its configuration: what may reuse, resume or replace a run folder.

* A finished run counts as done only for the configuration it was run with, and a resume
  (``ckpt_path=last``) must use the stored ``config.yaml``'s settings: :func:`differences`
  names the keys that differ (run-time switches such as ``ckpt_path``, the logger, progress
  bars, threads and the results folder are not part of a run's identity, nor are paths the
  harness filled in for declared prerequisites). ``trainer.max_epochs`` / ``max_steps`` may
  grow on a resume; the earlier results are then kept beside the new ones.
* ``metrics.json`` carries the hash of the config it was computed under, and its readers
  check it (:mod:`pose3d.results`, which also names the keys that are not a run's identity).
* ``ckpt_path=<file>`` inside another run's folder must hold that run's settings, as a resume must.
* A run name is a plain name (no folders); a checkpoint to resume from must be readable and
  of the same experiment's method; the results folder must be writable. Each failure is one
  line naming the file and what to do (nothing is deleted for the user).
"""
from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml
from omegaconf import DictConfig, OmegaConf

from pose3d.config import ConfigError, run_name
from pose3d.results import NOT_IDENTITY, exempt, flatten
from pose3d.safe_load import UnsafeFileError, load_checkpoint

MAY_GROW_ON_RESUME = ("trainer.max_epochs", "trainer.max_steps")
MAX_NAME_LENGTH = 160  # leaves room for the dated '.<label>-YYYYmmdd-HHMMSS' copies of a run folder
PLAIN_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._+=-]*")


def stored_config(run_dir: Path) -> dict | None:
    path = run_dir / "config.yaml"
    if not path.is_file():
        return None
    try:
        return yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError:
        raise ConfigError(f"{path} is not valid YAML; expected the config.yaml a run wrote (keep it, and move the "
                          f"folder away to start the run again)") from None


def schema_default(cfg: DictConfig, key: str) -> Any:
    """The schema's default of a dotted key of a run config (``optim.rho``, ``data.cache_mb``),
    or a marker that equals nothing when no schema declares it."""
    import dataclasses

    from datamodules import DATAMODULES
    from lightning_modules import MODELS
    from pose3d.config import RunConfig

    section, _, rest = key.partition(".")
    registries = {"model": MODELS, "data": DATAMODULES}
    if section in registries:
        name = OmegaConf.select(cfg, f"{section}.name")
        if name not in registries[section]:
            return _NO_DEFAULT
        node: Any = registries[section].load(name).Config()
    else:
        node = RunConfig()
        rest = key
    for part in rest.split("."):
        if not dataclasses.is_dataclass(node) or not hasattr(node, part):
            return _NO_DEFAULT
        node = getattr(node, part)
    return node


_NO_DEFAULT = object()


def differences(stored: dict, cfg: DictConfig, allow: tuple[str, ...] = ()) -> list[str]:
    """``key: stored -> new`` for every identity key that differs between a stored config and ``cfg``."""
    filled = tuple(record.get("into", "") for record in (stored.get("prerequisites") or []))
    new = flatten(OmegaConf.to_container(cfg, resolve=True))
    old = flatten(stored)
    out = []
    for key in sorted(set(new) | set(old)):
        if exempt(key, NOT_IDENTITY + allow):
            continue
        if key in filled and not new.get(key):  # a prerequisite path the harness fills in again
            continue
        if key not in old and (new.get(key) in (None, [], {}, "") or new.get(key) == schema_default(cfg, key)):
            continue  # a key added to a schema later: its default is what the code did before it existed
        if new.get(key) != old.get(key):
            out.append(f"{key}: {old.get(key)!r} -> {new.get(key)!r}")
    return out


def require_same_config(run_dir: Path, cfg: DictConfig, action: str, allow: tuple[str, ...] = (),
                        remedy: str = "use name=<new name> (or another results_dir) for the new settings, "
                                      "or drop the changed keys") -> None:
    """Refuse ``action`` on ``run_dir`` when its stored config differs from ``cfg`` (one line)."""
    stored = stored_config(run_dir)
    if stored is None:
        return
    changed = differences(stored, cfg, allow)
    if changed:
        shown = "; ".join(changed[:4]) + (f"; and {len(changed) - 4} more" if len(changed) > 4 else "")
        raise ConfigError(f"{run_dir} was run with other settings ({shown}); {action} would mix them: {remedy}")


MAY_DIFFER_WHEN_TESTING = ("trainer", "data")  # where and on what a trained checkpoint is tested


def check_checkpoint_source(path: Path, cfg: DictConfig) -> None:
    """``ckpt_path=<file>`` in a run folder (``<run>/checkpoints/*.ckpt``): that run's settings
    must be ``cfg``'s, as for a resume (``trainer.max_epochs`` / ``max_steps`` may grow); a test of
    it (``test_only=true``) may run on other devices and test data (:data:`MAY_DIFFER_WHEN_TESTING`),
    since those do not change what was trained."""
    run_dir = path.resolve().parent.parent
    if path.resolve().parent.name == "checkpoints":
        testing = bool(cfg.test_only)
        require_same_config(run_dir, cfg, f"{'testing' if testing else 'continuing from'} its checkpoint {path.name}",
                            allow=MAY_GROW_ON_RESUME + (MAY_DIFFER_WHEN_TESTING if testing else ()),
                            remedy="init_from=<run folder> starts new settings from its weights, or drop the "
                                   "changed keys")


def check_name(cfg: DictConfig) -> None:
    if cfg.name is not None and (not PLAIN_NAME.fullmatch(str(cfg.name)) or str(cfg.name) in (".", "..")):
        raise ConfigError(f"bad value for name: {cfg.name!r}; expected a plain run name (letters, digits, '.', '_', "
                          "'-'), not a path: runs live in <results_dir>/runs/<name>")
    name = run_name(cfg)
    if len(name) > MAX_NAME_LENGTH:
        raise ConfigError(f"the run name {name[:40]}... has {len(name)} characters; expected at most {MAX_NAME_LENGTH} "
                          "(set a shorter name=...; a folder name must fit the file system's 255 bytes with its dated copies)")


def check_checkpoint(path: Path, cfg: DictConfig, what: str) -> None:
    """``path`` is a readable Lightning checkpoint of ``cfg``'s method, read as data (a file that
    would run code is refused here, before the trainer opens it)."""
    try:
        checkpoint = load_checkpoint(path, mmap=True)
        model_name = checkpoint["hyper_parameters"]["model"]["name"]
    except UnsafeFileError:
        raise
    except Exception as error:  # truncated, random bytes, not a Lightning checkpoint
        raise ConfigError(f"{what} {path} is unreadable ({type(error).__name__}); it is kept as it is: inspect or move "
                          "it away, then start the run again with overwrite=true (or resume from another checkpoint)") from None
    if model_name != cfg.model.name:
        raise ConfigError(f"{what} {path} is a checkpoint of model {model_name!r}; expected one of {cfg.model.name!r} "
                          f"(experiment {cfg.experiment})")
