"""Train, validate and test one run: ``python -m pose3d.train experiment=NAME [preset=P] [key=value ...]``.

Writes ``results/runs/<run>/``: ``config.yaml``, ``checkpoints/{last,best}.ckpt`` (best on
``val/mpjpe``), ``csv/metrics.csv`` (and a W&B run, offline unless logged in) and, at the end,
``metrics.json`` with the final ``test/*`` metrics of the best checkpoint. ``ckpt_path=last``
resumes the run from its last checkpoint. A bad config, a folder another run owns, an
unwritable folder or a full disk exits with status 2 and one line (:mod:`harness.run_folder`).

SIGTERM (a scheduler, the ablation runner) and SIGINT (Ctrl+C) stop the run at the next batch
through Lightning's own handling, which saves nothing at that moment: ``last.ckpt`` is the one
written (whole) at the last validation, the end of an epoch, because only a checkpoint at an
epoch's end resumes exactly (the training loader cannot restart in the middle of an epoch).
The exit status is then 143 (SIGTERM) or 130 (SIGINT), never 0.

Before the model is built, the method's declared prerequisites are resolved
(:mod:`harness.prerequisites`); ``init_from`` loads another run's matching weights
(:mod:`harness.init_from`); after testing, the method's ``analyse(run_dir)`` writes its
figures. ``python -m pose3d.train`` is this module's command-line name.
"""
from __future__ import annotations

import contextlib
import os
import signal
import sys
import threading
import time
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from harness.init_from import load_matching
from harness.prerequisites import resolve as resolve_prerequisites
from harness.run_folder import (keep_earlier_metrics, keep_earlier_results, owned, set_aside,
                                write_config, write_metrics)
from harness.run_identity import (MAY_GROW_ON_RESUME, check_checkpoint, check_checkpoint_source, check_name,
                                  require_same_config)
from harness.wandb_id import run_id as wandb_run_id
from pose3d.config import ConfigError, build_config, run_name
from pose3d.files import check_writable
from pose3d.machine import check_accelerator, describe_cpu

EXIT_BAD_CONFIG = 2
EXIT_SIGINT, EXIT_SIGTERM = 128 + 2, 128 + 15  # what a shell reports for a process these signals end


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


def run_folder(cfg: DictConfig) -> Path:
    check_name(cfg)
    return Path(cfg.results_dir) / "runs" / run_name(cfg)


def prepare_run_dir(cfg: DictConfig, run_dir: Path, is_main_process: bool) -> str | None:
    """The checkpoint to resume or test from; refuses to overwrite earlier results, to resume
    (or continue another run's checkpoint) with other settings, or to read a checkpoint that is
    not this method's (:mod:`harness.run_identity`)."""
    last = run_dir / "checkpoints" / "last.ckpt"
    if cfg.ckpt_path == "last":
        if not last.is_file():
            raise ConfigError(f"ckpt_path=last but {last} does not exist; expected an earlier run of this name to resume")
        check_checkpoint(last, cfg, "the run's last checkpoint")
        require_same_config(run_dir, cfg, "resuming", allow=MAY_GROW_ON_RESUME)
        return str(last)
    if cfg.ckpt_path is not None:
        source = Path(cfg.ckpt_path)
        if not source.is_file():
            raise ConfigError(f"ckpt_path={cfg.ckpt_path} does not exist; expected a .ckpt file or 'last'")
        check_checkpoint(source, cfg, "ckpt_path")
        check_checkpoint_source(source, cfg)
        if cfg.test_only:
            require_same_config(run_dir, cfg, "testing into it")
        elif is_main_process and not resumes_in_place(cfg, run_dir):
            refuse_earlier_results(cfg, run_dir)
        return str(source)
    if is_main_process:
        refuse_earlier_results(cfg, run_dir)
    return None


def resumes_in_place(cfg: DictConfig, run_dir: Path) -> bool:
    """``ckpt_path`` is one of ``run_dir``'s own checkpoints (``last``, or its path)."""
    return cfg.ckpt_path == "last" or (cfg.ckpt_path is not None and Path(cfg.ckpt_path).resolve().is_relative_to(run_dir.resolve()))


def refuse_earlier_results(cfg: DictConfig, run_dir: Path) -> None:
    earlier = [p.name for p in (run_dir / "checkpoints" / "last.ckpt", run_dir / "metrics.json") if p.exists()]
    if earlier and not cfg.overwrite:
        raise ConfigError(
            f"{run_dir} already holds {', '.join(earlier)}; pass ckpt_path=last to resume, "
            "overwrite=true to start again (the earlier results are moved aside), or name=<new name>"
        )


def start_writing(cfg: DictConfig, run_dir: Path) -> str:
    """What the run folder needs before the run writes into it (the run is validated and its
    trainer built): the earlier results moved aside (``overwrite``) or kept beside the new ones
    (a resume for more epochs), then ``config.yaml``; returns the config's hash."""
    if resumes_in_place(cfg, run_dir):
        if not cfg.test_only:
            keep_earlier_results(run_dir)
    elif cfg.overwrite and not cfg.test_only:
        set_aside(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    return write_config(run_dir, cfg)


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
    from lightning.pytorch.utilities.exceptions import MisconfigurationException

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
    try:
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
            logger=False,  # attached once the run folder is ready (:func:`attach_loggers`)
            callbacks=[checkpoint],
            plugins=[SafeCheckpointIO()],  # checkpoints read as data, written whole
            enable_model_summary=False,
        )
    except (ValueError, MisconfigurationException) as error:  # Lightning's own check of the trainer settings
        raise ConfigError(f"bad trainer settings: {str(error).splitlines()[0]}") from None


def attach_loggers(trainer, cfg: DictConfig, run_dir: Path) -> None:
    """The CSV / W&B loggers, built once the run folder is ready: they write into it."""
    trainer.loggers = build_loggers(cfg, run_dir)


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
    from lightning.pytorch.utilities import rank_zero_only

    is_main = rank_zero_only.rank == 0
    check_accelerator(cfg.trainer.accelerator)
    run_dir = run_folder(cfg)
    if is_main:
        check_writable(run_dir.parent)
    with owned(run_dir) if is_main else contextlib.nullcontext():  # one run per folder at a time
        return run_owned(cfg, run_dir, is_main)


def run_owned(cfg: DictConfig, run_dir: Path, is_main: bool) -> dict:
    """:func:`run` once the run owns its folder."""
    import lightning.pytorch as pl
    import torch

    from datamodules import DATAMODULES
    from datamodules.loaders import global_rng_state, set_global_rng_state
    from harness.data_requirements import check_data
    from lightning_modules import MODELS
    from lightning_modules.blocks.two_d_source import resolve_auto_precision

    resolve_auto_precision(cfg)  # before the resume check compares configs
    resume_from = prepare_run_dir(cfg, run_dir, is_main)
    if cfg.test_only and resume_from is None:
        raise ConfigError("test_only=true needs ckpt_path=<file.ckpt> (or last); expected a trained checkpoint")
    if cfg.threads > 0:
        torch.set_num_threads(cfg.threads)
    method = MODELS.load(cfg.model.name)
    pl.seed_everything(cfg.seed, workers=True, verbose=False)
    datamodule = DATAMODULES.load(cfg.data.name)(OmegaConf.to_container(cfg.data))
    random_state = global_rng_state()  # what the model's initialisation draws from
    check_data(method, datamodule, cfg)  # before anything trains, the prerequisites included
    resolve_prerequisites(method, cfg)  # e.g. train the 2D network it reads; paths go into cfg
    # seeded again and the generators put back after any prerequisite run, so a run starts from the
    # same state whether its prerequisite was trained just now or reused
    pl.seed_everything(cfg.seed, workers=True, verbose=False)
    set_global_rng_state(random_state)
    model = method(
        model=OmegaConf.to_container(cfg.model),
        optim=OmegaConf.to_container(cfg.optim),
        data_info=datamodule.info.as_dict(),
    )
    if cfg.init_from:
        load_matching(model, cfg.init_from)
    datamodule.request_targets(model.required_targets())
    trainer = build_trainer(cfg, run_dir, method.monitor)
    hash_of_config = start_writing(cfg, run_dir) if is_main else ""
    attach_loggers(trainer, cfg, run_dir)
    started = time.perf_counter()
    if cfg.test_only:
        best = resume_from
    else:
        trainer.fit(model, datamodule=datamodule, ckpt_path=resume_from)
        best = trainer.checkpoint_callback.best_model_path
    fit_seconds = time.perf_counter() - started
    trainer.test(model, datamodule=datamodule, ckpt_path=best or None, verbose=False)
    metrics = {k: float(v) for k, v in sorted(trainer.callback_metrics.items()) if k.startswith("test/")}
    if trainer.is_global_zero:
        if cfg.test_only:
            keep_earlier_metrics(run_dir)
        write_metrics(
            run_dir,
            {
                **metrics,
                "per_action": model.test_per_action,
                "run": run_name(cfg),
                "checkpoint": best,
                "global_step": trainer.global_step,
                "fit_seconds": round(fit_seconds, 2),
                "machine": describe_cpu(),  # the CPU the fit's seconds were measured on
            },
            hash_of_config,
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


@contextlib.contextmanager
def noting_sigint(received: list[int]):
    """Ctrl+C (SIGINT) raises KeyboardInterrupt as usual, and is noted in ``received``: Lightning
    turns it into ``sys.exit(1)`` inside ``fit``/``test``, which :func:`main` then reports as 130."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def note(signum, frame):
        received.append(signum)
        signal.default_int_handler(signum, frame)

    previous = signal.signal(signal.SIGINT, note)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


def stopped(name: str, code: int) -> int:
    print(f"stopped by {name}: the run did not finish; ckpt_path=last resumes it from the last.ckpt of its last "
          "validation", file=sys.stderr)
    return code


USAGE = "usage: python -m pose3d.train experiment=NAME [preset=P] [variant=V] [seed=N] [key=value ...] [--cfg | --keys]"
# switches that print the run's config instead of running it (harness.config_keys)
SHOW_SWITCHES = {"--cfg": "config_text", "--keys": "keys_text"}


def help_text() -> str:
    from harness.cli_help import config_guide

    return "\n\n".join([
        USAGE,
        "Train, validate and test one run, writing results/runs/<run>/ (config.yaml, checkpoints/, csv/, metrics.json);\n"
        "ckpt_path=last resumes it, overwrite=true starts it again, test_only=true ckpt_path=<file> only tests.",
        "options:\n"
        "  key=value   any config key, e.g. data.name=human36m data.root=PATH trainer.max_epochs=3 (OmegaConf dotlist)\n"
        "  --cfg       print the resolved config (experiment file, presets, variant, overrides) as YAML; nothing runs\n"
        "  --keys      list every key of that config with its value, valid values and note; nothing runs\n"
        "  -h, --help  show this help and exit",
        config_guide(),
    ])


def show_config(cfg: DictConfig, switches: list[str]) -> str:
    """What ``--cfg`` or ``--keys`` prints (:mod:`harness.config_keys`)."""
    from harness import config_keys

    if len(set(switches)) > 1:
        raise ConfigError(f"got {' and '.join(dict.fromkeys(switches))}; expected one of them")
    return getattr(config_keys, SHOW_SWITCHES[switches[0]])(cfg)


def main(argv: list[str] | None = None) -> int:
    from lightning.pytorch.utilities.exceptions import SIGTERMException

    args = sys.argv[1:] if argv is None else argv
    if "-h" in args or "--help" in args:
        print(help_text())
        return 0
    switches = [arg for arg in args if arg in SHOW_SWITCHES]
    interrupted: list[int] = []
    try:
        with noting_sigint(interrupted):
            cfg = load_config([arg for arg in args if arg not in SHOW_SWITCHES])
            if switches:
                print(show_config(cfg, switches))
                return 0
            run(cfg)
    except ConfigError as error:
        print(f"error: {error}", file=sys.stderr)
        return EXIT_BAD_CONFIG
    except FloatingPointError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    except SIGTERMException:  # Lightning's: raised at the next batch after SIGTERM
        return stopped("SIGTERM", EXIT_SIGTERM)
    except KeyboardInterrupt:
        return stopped("SIGINT", EXIT_SIGINT)
    except SystemExit:
        if interrupted:  # Lightning's KeyboardInterrupt handling exits with 1
            return stopped("SIGINT", EXIT_SIGINT)
        raise
    return 0


if __name__ == "__main__":
    sys.exit(main())
