"""Score a trained run or a pose prior on a dataset's test split, without training.

    python -m pose3d.evaluate RUN|PRIOR [data.name=NAME] [data.KEY=VALUE ...] [out=FILE.json]
                              [lifting.rotations=80] [lifting.extrinsics=both|with|without] [threads=N]

``RUN`` is a run folder (``results/runs/<run>``, holding ``config.yaml`` and
``checkpoints/best.ckpt``) or one of its ``.ckpt`` files; ``PRIOR`` a pose prior (``.npz`` of
``python -m pose3d.ppca fit``, or the Tome et al. release's ``.mat``). The data is the run's own
(``data.*`` overrides it; another ``data.name`` starts from that DataModule's defaults at the
run's ``image_size``) or, for a prior, ``data.name`` (default ``synthetic``).

A run is tested exactly as its own test phase did (the same LightningModule and metric suite,
its weights read as data by :func:`harness.trained_run.read_checkpoint`): with its own data it gives the numbers its
``metrics.json`` holds. A prior lifts the test split's 2D (``joints_2d``: ground truth, or the
detections a ``data.source_2d`` file holds) into 3D (Tome et al. 2017, Sec. 5.3), with the
cameras' extrinsics ``E`` (``test/<metric>``) and without (``test/no_extrinsics/<metric>``:
level cameras), scored by the same suite. The prior must match the data's scale and must not
have seen its test subjects (one line, exit 2).

On Human3.6M without ``data.protocol`` one call scores Protocols #1 and #2 (S9, S11 every 5th
frame, MPJPE over 17 joints; S11 every 64th frame, PA-MPJPE over 14 joints), each with the
whole metric suite pooled over frames (``test/<metric>``) and averaged over actions
(``test/<metric>_action_avg``, the papers' "Avg") and per action; a protocol whose test
subjects the run or prior was fitted on, or whose frames the files cannot give (every 64th
frame of a 10 Hz copy), is left out with a note. ``python -m pose3d.evaluate`` is this
module's command-line name. Results go to ``out`` (default
``results/evaluate/<run or prior>-<data>.json``: per evaluation ``metrics``, ``per_action`` and, for
a prior, ``no_extrinsics_per_action``) and are printed as a table.
"""
from __future__ import annotations

import json
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig, OmegaConf

from harness.train import EXIT_BAD_CONFIG
from harness.trained_run import find_prerequisites, locate, read_checkpoint
from pose3d.files import check_writable, write_atomic
from lightning_modules.base import PoseModule
from pose3d.camera import known_camera_rotation
from pose3d.config import ConfigError, at_least, choice, parse_overrides, validated

USAGE = ("usage: python -m pose3d.evaluate RUN|PRIOR [data.name=NAME] [data.KEY=VALUE ...] [out=FILE.json] "
         "[lifting.rotations=80] [lifting.extrinsics=both|with|without] [threads=N]")
PRIOR_SUFFIXES = (".npz", ".mat")
DEFAULT_PROTOCOLS = (1, 2)  # Human3.6M: what one call scores when data.protocol is not given


@dataclass
class LiftingConfig:
    rotations: int = at_least(1, 80)  # quantised ground-plane rotations of the search (Sec. 5.3)
    extrinsics: str = choice("both", ("both", "with", "without"))  # lift with the cameras' E, without, or both


@dataclass
class EvaluateConfig:
    """The command line's keys besides the source (``data.*`` is validated by the DataModule's schema)."""

    data: Any = None
    out: str = ""
    results_dir: str = "results"
    threads: int = at_least(0, 0)
    lifting: LiftingConfig = field(default_factory=LiftingConfig)


class PriorLifting(PoseModule):
    """A pose prior as a scorer: lifts each test batch's 2D (Tome et al. 2017, Sec. 5.3, Eq. 4) and
    leaves the scoring to :class:`PoseModule`'s suite. Nothing is trained."""

    @dataclass
    class Config:
        name: str = "prior_lifting"
        rotations: int = 80
        extrinsics: bool = True

    def __init__(self, prior, model: dict, data_info: dict, what: str):
        super().__init__(model=model, optim={}, data_info=data_info)
        self.prior, self.what = prior, what
        self._scale_checked = False

    def predict(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        if not self._scale_checked and bool(batch["has_3d"].any()):
            self._scale_checked = True
            try:
                self.prior.check_scale(batch["joints_3d"][batch["has_3d"]].double().cpu().numpy(), self.what)
            except ValueError as error:
                raise ConfigError(str(error)) from None
        rotation = known_camera_rotation(batch) if self.cfg.extrinsics and "camera_rotation" in batch else None
        lifted = self.prior.lift(batch["joints_2d"].float(), batch["visible"].float(), rotations=self.cfg.rotations,
                                 camera_rotation=rotation)
        return {"joints_3d": lifted.joints_3d}


@dataclass
class Source:
    """What is scored: a run (its config and checkpoint) or a prior."""

    path: Path
    kind: str  # "run" | "prior"
    name: str
    run_cfg: DictConfig | None = None
    checkpoint: Path | None = None
    prior: Any = None

    @property
    def fitted_subjects(self) -> tuple[str, ...]:
        """Human3.6M subjects it was fitted on ("S1", ...), so that none is tested; () when unknown or not Human3.6M."""
        if self.kind == "prior":
            return tuple(self.prior.subjects)
        data = self.run_cfg.data
        if data.get("name") != "human36m":
            return ()
        from datamodules.human36m import PROTOCOLS

        return tuple(f"S{s}" for s in PROTOCOLS[int(data.get("protocol", 1))].train_subjects)


def resolve_source(text: str) -> Source:
    path = Path(text).expanduser()
    if path.suffix in PRIOR_SUFFIXES:
        if not path.is_file():
            raise ConfigError(f"{path} does not exist; expected a pose prior (python -m pose3d.ppca fit) or a run folder")
        from pose3d.ppca import PosePrior, load_tome_release

        try:
            prior = load_tome_release(path) if path.suffix == ".mat" else PosePrior.load(path)
        except (OSError, ValueError, KeyError) as error:
            raise ConfigError(f"cannot read pose prior {path}: {str(error).splitlines()[0]}; expected the .npz of "
                              "python -m pose3d.ppca fit") from None
        return Source(path, "prior", path.stem, prior=prior)
    run_dir, checkpoint = locate(path)
    cfg = OmegaConf.load(run_dir / "config.yaml")
    find_prerequisites(cfg, run_dir)  # a frozen 2D network or a prior, where the run's results folder holds it
    return Source(run_dir, "run", run_dir.name, run_cfg=cfg, checkpoint=checkpoint)


def data_config(source: Source, overrides: dict) -> dict:
    """The evaluation's ``data`` config: the run's own (or, for another ``data.name`` or a prior,
    that DataModule's defaults), then the command line's ``data.*``, validated by the schema."""
    from datamodules import DATAMODULES

    given = dict(overrides.get("data") or {})
    if source.kind == "run":
        own = OmegaConf.to_container(source.run_cfg.data, resolve=True)
        name = given.get("name", own["name"])
        base = own if name == own["name"] else {"name": name, "image_size": own["image_size"]}
    else:
        name = given.get("name", "synthetic")
        base = {"name": name, "image_size": 64}  # the lifting reads 2D only: small (black) crops suffice
    if name not in DATAMODULES:
        raise ConfigError(f"bad value for data.name: '{name}'; choose one of: {', '.join(sorted(DATAMODULES))}")
    schema = DATAMODULES.load(name).Config
    return OmegaConf.to_container(validated(schema, {**base, **given}, "command line", "data."), resolve=True)


def evaluation_plan(source: Source, data: dict, overrides: dict) -> list[tuple[str, dict, bool]]:
    """(label, data config, required) per evaluation: Human3.6M's protocols (module doc; each left out with a
    note when it cannot be scored, as long as one can) or the one test split asked for."""
    if data["name"] != "human36m" or "protocol" in (overrides.get("data") or {}):
        label = f"protocol{data['protocol']}" if data["name"] == "human36m" else data["name"]
        return [(label, data, True)]
    return [(f"protocol{p}", {**data, "protocol": p}, False) for p in DEFAULT_PROTOCOLS]


def build_module(source: Source, info: dict, lifting: DictConfig, extrinsics: bool) -> PoseModule:
    if source.kind == "prior":
        return PriorLifting(source.prior, {"rotations": lifting.rotations, "extrinsics": extrinsics}, info, str(source.path))
    from lightning_modules import MODELS

    cfg = source.run_cfg
    method = MODELS.load(cfg.model.name)
    model = method(model=OmegaConf.to_container(cfg.model, resolve=True),
                   optim=OmegaConf.to_container(cfg.optim, resolve=True), data_info=info)
    model.load_state_dict(read_checkpoint(source.checkpoint)["state_dict"])
    return model


def test_split(module: PoseModule, datamodule, trainer_cfg: DictConfig | None) -> dict:
    """``{"metrics": {test/...}, "per_action": {...}}`` of one Lightning test pass."""
    import lightning.pytorch as pl

    t = trainer_cfg
    trainer = pl.Trainer(logger=False, enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
                         accelerator=t.accelerator if t else "auto", devices=1, precision=t.precision if t else "32-true",
                         limit_test_batches=t.limit_test_batches if t else None, deterministic=t.deterministic if t else False)
    trainer.test(module, datamodule=datamodule, verbose=False)
    metrics = {k: float(v) for k, v in sorted(trainer.callback_metrics.items()) if k.startswith("test/")}
    return {"metrics": metrics, "per_action": module.test_per_action}


def evaluate(source: Source, data: dict, required: bool, cfg: DictConfig) -> dict | str:
    """One evaluation's report, or (for a protocol added by default) a note saying why it was left out."""
    from datamodules import DATAMODULES

    try:
        datamodule = DATAMODULES.load(data["name"])(data)
        seen = sorted(set(source.fitted_subjects) & set(datamodule.info.test_subjects))
        if seen:
            raise ConfigError(f"{source.path} was fitted on test subject(s) {', '.join(seen)} of data.protocol="
                              f"{data.get('protocol')}; expected a test split it has not seen (set data.protocol or "
                              "data.test_subjects)")
        datamodule.setup("test")
        frames = len(datamodule.dataset("test"))
    except ConfigError as error:
        if required:
            raise
        return str(error)
    info = datamodule.info.as_dict()
    lifting_modes = (("", True, "with"), ("no_extrinsics/", False, "without"))
    modes = [("", True)] if source.kind == "run" else \
        [(prefix, e) for prefix, e, name in lifting_modes if cfg.lifting.extrinsics in ("both", name)]
    report: dict[str, Any] = {"test_subjects": datamodule.test_subjects_label, "frames": frames,
                              "metrics": {}}
    for prefix, extrinsics in modes:
        module = build_module(source, info, cfg.lifting, extrinsics)
        datamodule.request_targets(module.required_targets())
        result = test_split(module, datamodule, source.run_cfg.trainer if source.kind == "run" else None)
        report["metrics"].update({k.replace("test/", f"test/{prefix}", 1): v for k, v in result["metrics"].items()})
        report[f"{prefix.replace('/', '_')}per_action"] = result["per_action"]  # per_action, no_extrinsics_per_action
    if "protocol" in data:
        report["protocol"] = {k: list(v) if isinstance(v, tuple) else v for k, v in datamodule.protocol_info.items()}
    return report


def print_results(title: str, evaluations: dict[str, dict]) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=title)
    table.add_column("metric")
    for label in evaluations:
        table.add_column(label, justify="right")
    names = list(dict.fromkeys(k for e in evaluations.values() for k in e["metrics"]))
    for name in names:
        table.add_row(name, *(f"{e['metrics'][name]:.2f}" if name in e["metrics"] else "-" for e in evaluations.values()))
    Console().print(table)
    for label, e in evaluations.items():
        print(f"{label}: {e['test_subjects']}, {e['frames']:,} frames")


def run(source_text: str, args: list[str]) -> dict:
    overrides = OmegaConf.to_container(parse_overrides(args), resolve=True) if args else {}
    cfg = validated(EvaluateConfig, {k: v for k, v in overrides.items() if k != "data"}, "command line")
    if cfg.out:
        check_writable(Path(cfg.out).parent)  # before any work: an unwritable out= is one line, at once
    if cfg.threads > 0:
        torch.set_num_threads(cfg.threads)
    source = resolve_source(source_text)
    data = data_config(source, overrides)
    evaluations, skipped = {}, {}
    for label, data_cfg, required in evaluation_plan(source, data, overrides):
        result = evaluate(source, data_cfg, required, cfg)
        if isinstance(result, str):
            skipped[label] = result
            print(f"note: {label} left out: {result}", flush=True)
        else:
            evaluations[label] = result
    if not evaluations:  # every protocol of the default plan was left out: the first reason is the error
        raise ConfigError(next(iter(skipped.values())))
    suffix = f"{data['name']}-{data['layout']}" if "layout" in data else data["name"]
    out = Path(cfg.out or Path(cfg.results_dir) / "evaluate" / f"{source.name}-{suffix}.json")
    content = {"source": str(source.path), "kind": source.kind, "data": data, "evaluations": evaluations, "skipped": skipped}
    out.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(out, json.dumps(content, indent=2, sort_keys=True) + "\n")
    print_results(f"{source.kind} {source.name} on {suffix}", evaluations)
    print(f"wrote {out}")
    return content


def help_text() -> str:
    from harness.cli_help import config_guide

    return "\n\n".join([
        USAGE,
        "Score a trained run or a pose prior on a dataset's test split, without training; writes\n"
        "results/evaluate/<run or prior>-<data>.json (out=FILE.json) and prints the table.",
        "arguments:\n"
        "  RUN|PRIOR       a run folder of python -m pose3d.train (results/runs/<run>) or one of its .ckpt files;\n"
        "                  or a pose prior: an .npz of python -m pose3d.ppca fit, or the Tome et al. release's .mat\n"
        "  data.KEY=VALUE  the test data: the run's own unless given (a prior's: data.name, default synthetic);\n"
        "                  its keys are the Config dataclass of the DataModule (datamodules/<data.name>.py)\n"
        "  KEY=VALUE       out, results_dir, threads, lifting.rotations, lifting.extrinsics: EvaluateConfig and\n"
        "                  LiftingConfig in harness/evaluate.py\n"
        "  -h, --help      show this help and exit",
        "RUN is a run of any of these experiments:\n\n" + config_guide(),
    ])


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else list(argv)
    if "-h" in args or "--help" in args:
        print(help_text())
        return 0
    if not args or "=" in args[0]:
        print(USAGE, file=sys.stderr)
        return EXIT_BAD_CONFIG
    try:
        run(args[0], args[1:])
    except ConfigError as error:
        print(f"error: {error}", file=sys.stderr)
        return EXIT_BAD_CONFIG
    return 0


if __name__ == "__main__":
    sys.exit(main())
