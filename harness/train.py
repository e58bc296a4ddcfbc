"""Train, validate and test one run: ``python -m pose3d.train experiment=NAME [preset=P] [key=value ...]``.

Writes ``results/runs/<run>/``: ``config.yaml``, ``checkpoints/{last,best}.ckpt`` (best on
``val/mpjpe``), ``csv/metrics.csv`` (and a W&B run, offline unless logged in) and, at the end,
``metrics.json`` with the final ``test/*`` metrics of the best checkpoint. ``ckpt_path=last``
resumes the run from its last checkpoint. A bad config exits with status 2 and one line.

Before the model is built, the method's declared prerequisites are resolved
(:mod:`harness.prerequisites`); ``init_from`` loads another run's matching weights
(:mod:`harness.init_from`); after testing, the method's ``analyse(run_dir)`` writes its
figures. ``python -m pose3d.train`` is this module's command-line name.
"""
from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from harness.init_from import load_matching
from harness.prerequisites import resolve as resolve_prerequisites
from harness.run_identity import MAY_GROW_ON_RESUME, check_checkpoint, check_name, check_writable, require_same_config
from harness.wandb_id import run_id as wandb_run_id
from pose3d.config import ConfigError, build_config, run_name

EXIT_BAD_CONFIG = 2


def load_config(args: list[str]) -> DictConfig:
    from datamodules import DATAMODULES
    from lightning_modules import MODELS

    return build_config(args, MODELS, DATAMODULES)


def wandb_mode() -> str:
    """``WANDB_MODE`` when set, else ``online`` if the user is logged in to W&B, else ``offline``."""
    mode = os.environ.get("WANDB_MODE", "").lower()
    if mode in ("disabled", "offline", "online", "dryrun"):
        return "offline" if mode == "dryrun" else mode
    netrc = Path.home() / ".netrc"
    logged_in = bool(os.environ.get("WANDB_API_KEY")) or (
        netrc.is_file() and "api.wandb.ai" in netrc.read_text(errors="ignore")
    )
    return "online" if logged_in else "offline"


def prepare_run_dir(cfg: DictConfig, is_main_process: bool) -> tuple[Path, str | None]:
    """The run folder and the checkpoint to resume from; refuses to overwrite earlier results,
    to resume with other settings, or to read a checkpoint that is not this method's
    (:mod:`harness.run_identity`)."""
    check_name(cfg)
    run_dir = Path(cfg.results_dir) / "runs" / run_name(cfg)
    if is_main_process:
        check_writable(run_dir.parent)
    last = run_dir / "checkpoints" / "last.ckpt"
    if cfg.ckpt_path == "last":
        if not last.is_file():
            raise ConfigError(f"ckpt_path=last but {last} does not exist; expected an earlier run of this name to resume")
        check_checkpoint(last, cfg, "the run's last checkpoint")
        require_same_config(run_dir, cfg, "resuming", allow=MAY_GROW_ON_RESUME)
        return run_dir, str(last)
    if cfg.ckpt_path is not None:
        if not Path(cfg.ckpt_path).is_file():
            raise ConfigError(f"ckpt_path={cfg.ckpt_path} does not exist; expected a .ckpt file or 'last'")
        check_checkpoint(Path(cfg.ckpt_path), cfg, "ckpt_path")
        return run_dir, str(cfg.ckpt_path)
    earlier = [p.name for p in (last, run_dir / "metrics.json") if p.exists()]
    if is_main_process and earlier and not cfg.overwrite:
        raise ConfigError(
            f"{run_dir} already holds {', '.join(earlier)}; pass ckpt_path=last to resume, "
            "overwrite=true to start again, or name=<new name>"
        )
    return run_dir, None


def keep_earlier_results(run_dir: Path) -> None:
    """A finished run resumed for more epochs: its earlier config and metrics stay beside the new ones."""
    metrics = run_dir / "metrics.json"
    if not metrics.is_file():
        return
    step = json.loads(metrics.read_text()).get("global_step", "earlier")
    for name in ("metrics.json", "config.yaml"):
        old = run_dir / name
        kept = run_dir / f"{old.stem}.step{step}{old.suffix}"
        if old.is_file() and not kept.exists():
            old.replace(kept)


def build_loggers(cfg: DictConfig, run_dir: Path) -> list:
    from lightning.pytorch.loggers import CSVLogger, WandbLogger

    loggers = []
    if cfg.logger.csv:
        loggers.append(CSVLogger(save_dir=str(run_dir), name="csv"))  # csv/version_N: a resume adds one
    mode = wandb_mode()
    if cfg.logger.wandb and mode != "disabled":
        os.environ.setdefault("WANDB_DIR", str(run_dir))
        os.environ.setdefault("WANDB_CACHE_DIR", str(Path(cfg.results_dir) / ".wandb-cache"))
        loggers.append(
            WandbLogger(
                project=cfg.logger.project,
                name=run_name(cfg),
                group=cfg.experiment,
                save_dir=str(run_dir),
                offline=mode == "offline",
                config=OmegaConf.to_container(cfg, resolve=True),
                id=wandb_run_id(run_dir, resuming=cfg.ckpt_path == "last"),  # one W&B run per run folder
                resume="allow",
            )
        )
    return loggers


def build_trainer(cfg: DictConfig, run_dir: Path, monitor: tuple[str, str] = ("val/mpjpe", "min")):
    import lightning.pytorch as pl
    from lightning.pytorch.callbacks import ModelCheckpoint

    from harness.checkpoint_io import SafeCheckpointIO

    checkpoint = ModelCheckpoint(
        dirpath=str(run_dir / "checkpoints"),
        filename="best",
        monitor=monitor[0],
        mode=monitor[1],
        save_last=True,
        save_top_k=1,
        auto_insert_metric_name=False,
    )
    t = cfg.trainer
    return pl.Trainer(
        default_root_dir=str(run_dir),
        max_epochs=t.max_epochs,
        max_steps=t.max_steps,
        limit_train_batches=t.limit_train_batches,
        limit_val_batches=t.limit_val_batches,
        limit_test_batches=t.limit_test_batches,
        accelerator=t.accelerator,
        devices=t.devices,
        num_nodes=t.num_nodes,
        strategy=t.strategy,
        precision=t.precision,
        gradient_clip_val=t.gradient_clip_val,
        check_val_every_n_epoch=t.check_val_every_n_epoch,
        log_every_n_steps=t.log_every_n_steps,
        enable_progress_bar=t.enable_progress_bar,
        deterministic=t.deterministic,
        logger=build_loggers(cfg, run_dir) or False,
        callbacks=[checkpoint],
        plugins=[SafeCheckpointIO()],  # resume and test read checkpoints as data
        enable_model_summary=False,
    )


def write_json_atomic(path: Path, content: dict) -> None:
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(content, indent=2, sort_keys=True) + "\n")
    tmp.replace(path)


def print_table(title: str, metrics: dict[str, float]) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=title)
    table.add_column("metric")
    table.add_column("value", justify="right")
    for name, value in metrics.items():
        table.add_row(name, f"{value:.2f}")
    Console().print(table)


def run(cfg: DictConfig) -> dict:
    """Fit, test the best checkpoint, write ``metrics.json``; returns the test metrics."""
    import lightning.pytorch as pl
    import torch
    from lightning.pytorch.utilities import rank_zero_only

    from datamodules import DATAMODULES
    from lightning_modules import MODELS
    from lightning_modules.blocks.two_d_source import resolve_auto_precision

    is_main = rank_zero_only.rank == 0
    resolve_auto_precision(cfg)  # before the resume check compares configs
    run_dir, resume_from = prepare_run_dir(cfg, is_main)
    if cfg.threads > 0:
        torch.set_num_threads(cfg.threads)
    method = MODELS.load(cfg.model.name)
    resolve_prerequisites(method, cfg)  # e.g. train the 2D network it reads; paths go into cfg
    # seeded after any prerequisite run, so a run starts from the same state whether its
    # prerequisite was trained just now or reused
    pl.seed_everything(cfg.seed, workers=True, verbose=False)
    if is_main:
        run_dir.mkdir(parents=True, exist_ok=True)
        if resume_from is not None and not cfg.test_only:
            keep_earlier_results(run_dir)
        OmegaConf.save(cfg, run_dir / "config.yaml")
    datamodule = DATAMODULES.load(cfg.data.name)(OmegaConf.to_container(cfg.data))
    model = method(
        model=OmegaConf.to_container(cfg.model),
        optim=OmegaConf.to_container(cfg.optim),
        data_info=datamodule.info.as_dict(),
    )
    if cfg.init_from:
        load_matching(model, cfg.init_from)
    datamodule.request_targets(model.required_targets())
    trainer = build_trainer(cfg, run_dir, method.monitor)
    started = time.perf_counter()
    if cfg.test_only:
        if resume_from is None:
            raise ConfigError("test_only=true needs ckpt_path=<file.ckpt> (or last); expected a trained checkpoint")
        best = resume_from
    else:
        trainer.fit(model, datamodule=datamodule, ckpt_path=resume_from)
        best = trainer.checkpoint_callback.best_model_path
    fit_seconds = time.perf_counter() - started
    trainer.test(model, datamodule=datamodule, ckpt_path=best or None, verbose=False)
    metrics = {k: float(v) for k, v in sorted(trainer.callback_metrics.items()) if k.startswith("test/")}
    if trainer.is_global_zero:
        write_json_atomic(
            run_dir / "metrics.json",
            {
                **metrics,
                "per_action": model.test_per_action,
                "run": run_name(cfg),
                "checkpoint": best,
                "global_step": trainer.global_step,
                "fit_seconds": round(fit_seconds, 2),
            },
        )
        print_table(f"{run_name(cfg)}: test subjects {datamodule.test_subjects_label}", metrics)
        if model.unscored_3d.get("test"):
            print(f"note: the test split of data.name={cfg.data.name} has no 3D labels, so no 3D metric was computed; "
                  f"computed: {', '.join(metrics) or 'none'}", flush=True)
        model.analyse(run_dir)
    finish_wandb_run()
    return metrics


def finish_wandb_run() -> None:
    """Close this run's W&B run, so that the next run in this process (a prerequisite's consumer,
    the fine-tuning after a pre-training) gets its own instead of logging into this one."""
    wandb = sys.modules.get("wandb")
    if wandb is not None and getattr(wandb, "run", None) is not None:
        wandb.finish()


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    try:
        cfg = load_config(args)
        run(cfg)
    except ConfigError as error:
        print(f"error: {error}", file=sys.stderr)
        return EXIT_BAD_CONFIG
    except FloatingPointError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
