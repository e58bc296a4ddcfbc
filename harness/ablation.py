"""Run an ablation grid locally or on SLURM, or create it as a W&B sweep, from one sweep file.

``ablations/<axis>.yaml`` is a W&B sweep configuration used as it is: ``method: grid``, a
``command`` calling ``python -m pose3d.train ${args_no_hyphens}``, and ``parameters`` whose
``values`` lists span the grid (usually ``variant`` and ``seed``). W&B's own sweep engine
(``sweeps``, :mod:`harness.sweep_engine`) validates the file and plans the grid, and each run
is the command ``wandb agent`` would run for it, so a local ablation and a cluster sweep run
the same commands::

    python -m pose3d.ablation plan ablations/fusion.yaml [--preset P] [--seeds N] [-- key=value ...]
    python -m pose3d.ablation run ablations/fusion.yaml [--preset quick] [--seeds N] [--devices 0,1]
                              [--launcher local|slurm|submitit-local] [--slurm "partition=... gpus_per_node=1"]
                              [-- key=value ...]

``plan`` prints the commands, one a line, and runs nothing (without options: the file's own
grid, as an agent would run it, in the engine's order). ``run`` (``--preset`` replaces the
file's ``preset``, ``--seeds N`` its seed list by seeds 0..N-1) runs each point one after
another, or one per device in parallel, with a live progress line on a terminal
(:mod:`harness.progress`), and skips runs that are done (a ``metrics.json`` computed under
the folder's ``config.yaml``: :mod:`pose3d.results`) or that another runner is running now
(held elsewhere: :mod:`harness.run_folder`): an interrupted ablation resumes (a run with a
``last.ckpt`` but no metrics resumes from it). ``--launcher
slurm`` submits the pending points as one SLURM job array instead, ``submitit-local`` through
submitit's local executor (:mod:`harness.launch`). It then writes
``results/ablation-<axis>/summary.csv`` (one row per run), ``summary.md`` (mean +/- std over
seeds per variant beside the paper's numbers from ``ablations/references.yaml``) and
``summary.png``, and prints the table.

``python -m pose3d.ablation sweep ablations/fusion.yaml`` creates the W&B sweep and prints
the ``wandb agent`` command (or says that W&B is not logged in);
``python -m pose3d.ablation summary ...`` rewrites the summary from the runs finished so far
and names the missing ones. A sweep file that the engine rejects is one line naming the key
(exit 2).
"""
from __future__ import annotations

import argparse
import csv
import io
import json
import os
import queue
import shlex
import statistics
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from harness import sweep_engine
from harness.floors import data_floors, floor_rows, versus_floor
from harness.launch import QUIET, child_env, resume_args, result_line
from harness.run_folder import held_elsewhere
from harness.stopping import RunGroup, Stopped
from pose3d.arguments import OneLineParser, int_at_least, preset_option
from pose3d.config import REPO_ROOT, ConfigError
from pose3d.files import check_writable, write_atomic
from pose3d.readers import read_yaml
from pose3d.results import finished, results_mismatch

REFERENCES = REPO_ROOT / "ablations" / "references.yaml"
TABLE_METRICS = ("mpjpe", "pa_mpjpe", "n_mpjpe", "pck3d", "auc3d", "pck3d_scaled", "auc3d_scaled", "pck3d_pa", "auc3d_pa")
EXIT_BAD_INPUT = 2
LAUNCHERS = ("local", "slurm", "submitit-local")
# the command of a sweep file that names none: what ours all say
DEFAULT_COMMAND = ["${env}", "python", "-m", "pose3d.train", "${args_no_hyphens}"]


@dataclass
class Sweep:
    axis: str  # the file's stem: ablations/fusion.yaml -> fusion
    config: dict
    path: Path | None = None

    @classmethod
    def read(cls, path: str | Path) -> "Sweep":
        path = Path(path)
        if not path.is_file():
            available = ", ".join(sorted(p.name for p in (REPO_ROOT / "ablations").glob("*.yaml") if p != REFERENCES))
            raise ConfigError(f"sweep file {path} does not exist; expected one of ablations/: {available}")
        config = read_yaml(path, "a W&B sweep file (method, command, parameters)")
        if not isinstance(config, dict) or not isinstance(config.get("parameters"), dict):
            raise ConfigError(f"{path} has no 'parameters' mapping; expected a W&B sweep file (method, command, parameters)")
        for name, spec in config["parameters"].items():
            if isinstance(spec, dict) and "values" in spec and not (isinstance(spec["values"], list) and spec["values"]):
                raise ConfigError(f"{path}: parameter '{name}' has no values ({spec['values']!r}); expected a non-empty list")
        sweep_engine.require_valid(config, str(path))
        if config.get("method") != "grid":
            raise ConfigError(f"{path}: method is {config.get('method')!r}; the local runner expands only 'grid' sweeps")
        sweep_engine.require_train_command(config, str(path))
        return cls(path.stem, config, path)

    def planned(self, preset: str | None = None, seeds: int | None = None) -> dict:
        """The sweep config that is run: the file's, with ``--preset`` / ``--seeds`` applied."""
        return sweep_engine.planned_config(self.config, preset, seeds)

    def grid(self, preset: str | None = None, seeds: int | None = None) -> list[dict[str, Any]]:
        """Every grid point as ``{parameter: value}``, in the order of W&B's engine."""
        return sweep_engine.grid_runs(self.planned(preset, seeds))

    def command(self, params: dict[str, Any]) -> list[str]:
        """The command ``wandb agent`` runs for one grid point."""
        return sweep_engine.agent_command(self.config, params)


@dataclass
class PlannedRun:
    params: dict[str, Any]
    name: str
    run_dir: Path
    agent_command: list[str] = field(default_factory=list)  # what `wandb agent` runs (+ extra overrides)
    args: list[str] = field(default_factory=list)  # its key=value arguments (the point's and the extra ones)
    total_steps: int | None = None
    max_epochs: int | None = None
    frozen_networks: int = 0  # trained networks it reads at every step (see :func:`frozen_networks`)

    def expected_cost(self) -> tuple[int, int]:
        """Sort key of the parallel runner, larger first (:func:`longest_first`)."""
        return self.frozen_networks, self.total_steps or 0

    @property
    def metrics_file(self) -> Path:
        return self.run_dir / "metrics.json"

    @property
    def done(self) -> bool:
        """Finished, with a ``metrics.json`` computed under its ``config.yaml`` (:func:`pose3d.results.finished`)."""
        return finished(self.run_dir)

    def base_command(self) -> list[str]:
        """The agent's command plus the runner's quiet switch (the run's log file is for reading)."""
        return self.agent_command + QUIET

    def command(self) -> list[str]:
        """What runs now: the base command and what the run's folder asks for (resume or restart)."""
        return self.base_command() + resume_args(self.run_dir)


def frozen_networks(cfg) -> int:
    """How many trained prerequisite networks a run evaluates beside its own (a frozen heatmap
    network: every step pays its forward pass); an ``init_from`` start or a fitted file costs
    nothing per step."""
    from lightning_modules import MODELS
    from pose3d.prerequisites import TrainedRun

    declared = MODELS.load(cfg.model.name).prerequisites(cfg)
    return sum(isinstance(d, TrainedRun) and d.into != "init_from" for d in declared)


def longest_first(runs: list[PlannedRun]) -> list[PlannedRun]:
    """The runs in the order a parallel runner starts them: the expected longest first (more
    frozen networks read, then more steps; grid order among equals), so that the last run to
    finish is a short one and no slot idles through a long tail: in grid order the quick fusion
    grid of seeds 1 and 2 (2 slots) starts with Image-Only (no heatmap network, 3x shorter) and
    ends with one map-reading run alone; longest first pairs the ten long runs and ends with the
    two short ones side by side. (Seed 0 alone, five long runs on two slots, gains nothing.)"""
    return sorted(runs, key=lambda run: tuple(-c for c in run.expected_cost()))


def plan_runs(points: list[dict[str, Any]], extra: list[str], source: str = "the sweep file",
              sweep_config: dict | None = None, check_identity: bool = True) -> list[PlannedRun]:
    """Resolve each point's run folder with the same config code the run will use; a bad
    parameter names ``source`` (the sweep file), a bad extra override the command line; a
    finished or interrupted run folder must hold the same settings (``check_identity``)."""
    from harness.progress import estimated_steps
    from harness.run_identity import require_same_config, stored_config
    from harness.train import load_config
    from lightning_modules.blocks.two_d_source import adopt_resolved_precision
    from pose3d.config import run_name

    sweep_config = sweep_config or {"command": DEFAULT_COMMAND}
    runs = []
    for point in points:
        args = sweep_engine.agent_args(point)
        try:
            load_config(args)
        except ConfigError as error:
            raise ConfigError(f"{source}: {str(error).replace(' (command line)', '')}") from None
        cfg = load_config(args + list(extra))
        total, epochs = estimated_steps(cfg)
        run = PlannedRun(point, run_name(cfg), Path(cfg.results_dir) / "runs" / run_name(cfg),
                         sweep_engine.agent_command(sweep_config, point) + list(extra), args + list(extra), total, epochs,
                         frozen_networks(cfg))
        if check_identity and (run.metrics_file.is_file() or (run.run_dir / "checkpoints" / "last.ckpt").is_file()):
            action = "counting it as done" if run.metrics_file.is_file() else "resuming it"
            adopt_resolved_precision(cfg, stored_config(run.run_dir))  # `auto`: what that run's machine chose
            require_same_config(run.run_dir, cfg, action)
        runs.append(run)
    return runs


def add_grid_options(parser: argparse.ArgumentParser) -> None:
    """``--preset`` and ``--seeds``: what replaces the sweep file's preset and seed list."""
    preset_option(parser, None, "replaces the sweep file's preset")
    parser.add_argument("--seeds", type=int_at_least(1), default=None, help="run seeds 0..N-1 instead of the file's list")


def add_local_options(parser: argparse.ArgumentParser) -> None:
    """``--devices`` and ``--jobs``: where the local launcher runs (:func:`local_slots`)."""
    parser.add_argument("--devices", default="", help="local launcher: comma-separated GPU ids, one run per device in parallel")
    parser.add_argument("--jobs", default="auto", help="local launcher without --devices: runs at a time on this CPU "
                                                       "(auto: 2 on a CPU-only machine of 2+ cores, else 1)")


def device_ids(devices: str) -> list[str]:
    """``--devices 0,1`` -> ["0", "1"]; anything but GPU numbers is a one-line error."""
    ids = [d.strip() for d in devices.split(",") if d.strip()]
    if not all(d.isdigit() for d in ids):
        raise ConfigError(f"--devices {devices}: expected comma-separated GPU numbers such as 0,1")
    return ids


def local_slots(devices: list[str], jobs: str, overrides: list[str]) -> tuple[list[str | None], list[str]]:
    """Where the local launcher's runs go, and what each run is told: one run per listed GPU
    (``CUDA_VISIBLE_DEVICES``); else ``jobs`` runs at a time on this machine's CPU, each with
    ``threads = cores // jobs`` unless the overrides set ``threads``. ``jobs="auto"``: 2 on a
    machine of 2 or more cores with no GPU visible (measured on the 2-core CPU: the quick fusion
    grid finishes 1.6x sooner as two 1-thread runs than as one 2-thread run at a time), else 1."""
    if devices:
        return list(devices), []
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    if jobs == "auto":
        import torch

        count = 2 if cores >= 2 and not torch.cuda.is_available() else 1
    elif jobs.isdigit() and int(jobs) >= 1:
        count = int(jobs)
    else:
        raise ConfigError(f"--jobs {jobs}: expected a positive number of runs at a time, or auto")
    given_threads = any(o.split("=", 1)[0] == "threads" for o in overrides)
    told = [] if count == 1 or given_threads else [f"threads={max(cores // count, 1)}"]
    return [None] * count, told


def build_prerequisites(runs: list[PlannedRun], log_file: Path, group: RunGroup) -> bool:
    """Build the prerequisites the runs declare, one after another with every core, in one child
    process (:func:`harness.prerequisites.main`) of ``group``, so that parallel runs find them
    built instead of waiting on one another's lock. True when they all resolved."""
    print(f"building the runs' prerequisites first (log: {log_file})", flush=True)
    started = time.perf_counter()
    command = [sys.executable, "-m", "harness.prerequisites", json.dumps([run.args + QUIET for run in runs])]
    log_file.parent.mkdir(parents=True, exist_ok=True)
    with open(log_file, "w") as log:
        code = group.call(command, stdout=log, stderr=subprocess.STDOUT, env=child_env(), cwd=REPO_ROOT)
    if group.stopping:
        raise Stopped(group.signum, ["the prerequisites' build"], [run.name for run in runs])
    seconds = time.perf_counter() - started
    print(f"prerequisites ready ({seconds:.0f} s)" if code == 0 else
          f"prerequisites FAILED (exit {code}); see {log_file}", flush=True)
    return code == 0


def execute(runs: list[PlannedRun], slots: list[str | None], log_dir: Path, progress=None,
            run_overrides: list[str] = ()) -> list[str]:
    """Run the pending runs, one per slot at a time (a GPU id, or None: this CPU), each with
    ``run_overrides`` added; with more than one slot the prerequisites are built first and the
    runs start longest first (:func:`longest_first`). Returns the names of failed runs; raises
    :class:`Stopped` when SIGINT or SIGTERM stopped the runs (:mod:`harness.stopping`)."""
    from harness.progress import Progress

    pending: queue.Queue = queue.Queue()
    todo = [r for r in runs if not r.done]
    if len(slots) > 1:
        todo = longest_first(todo)
    for index, run in enumerate(todo, 1):
        pending.put((index, run))
    print(f"{len(runs) - len(todo)} of {len(runs)} runs already done; running {len(todo)}"
          + (f", {len(slots)} at a time" if len(slots) > 1 else ""), flush=True)
    slots = list(slots) or [None]
    group = RunGroup()
    failed: list[str] = []
    interrupted: list[str] = []
    not_started: list[str] = []
    log_dir.mkdir(parents=True, exist_ok=True)

    def worker(device: str | None) -> None:
        env = child_env()
        if device is not None:
            env["CUDA_VISIBLE_DEVICES"] = device
        while not group.stopping:
            try:
                index, run = pending.get_nowait()
            except queue.Empty:
                return
            log_file = log_dir / f"{run.name}.log"
            progress.run_started(index, run.name, run.run_dir, log_file, run.total_steps, run.max_epochs)
            holder = held_elsewhere(run.run_dir)  # another runner's run: not trained twice, its log kept
            if holder is None:
                started = time.perf_counter()
                with open(log_file, "w") as log:
                    code = group.call(run.command() + list(run_overrides), stdout=log, stderr=subprocess.STDOUT,
                                      env=env, cwd=REPO_ROOT)
                if code is None:  # stopping: it did not start
                    not_started.append(run.name)
                    progress.run_finished(index, f"[{index}/{len(todo)}] {run.name}: not started")
                    continue
                ok, line = result_line(index, len(todo), run.name, run.metrics_file, time.perf_counter() - started, code,
                                       log_file)
                holder = None if ok or group.stopping else held_elsewhere(run.run_dir)  # it refused: taken meanwhile
            if holder is not None:
                ok, line = True, f"[{index}/{len(todo)}] {run.name}: held elsewhere ({holder}); skipped"
            if not ok and group.stopping:
                interrupted.append(run.name)
                line = f"[{index}/{len(todo)}] {run.name}: stopped" + (
                    "; it resumes from its last.ckpt" if (run.run_dir / "checkpoints" / "last.ckpt").is_file()
                    else " before its first checkpoint; it starts over")
            elif not ok:
                failed.append(run.name)
            progress.run_finished(index, line)

    threads = [threading.Thread(target=worker, args=(slot,)) for slot in slots]
    with group:  # SIGINT/SIGTERM from here on: passed on to the runs, no new run (harness.stopping)
        if todo and len(slots) > 1 and not build_prerequisites(todo, log_dir / "prerequisites.log", group):
            return [run.name for run in todo]
        progress = progress or Progress(len(todo))
        progress.parallel = len(slots)
        progress.start()
        try:
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join()
        finally:
            progress.close()
    if group.stopping:
        raise Stopped(group.signum, interrupted, not_started + [run.name for _, run in list(pending.queue)])
    return failed


def missing_reason(run: PlannedRun, failed=()) -> str:
    if run.name in failed:
        return "failed"
    if run.metrics_file.is_file() and (mismatch := results_mismatch(run.run_dir)):
        return f"{mismatch}: not counted"
    if (holder := held_elsewhere(run.run_dir)) is not None:
        return f"held elsewhere: {holder}"
    if (run.run_dir / "checkpoints" / "last.ckpt").is_file():
        return "running or interrupted: has a last.ckpt"
    return "not run yet"


def _mean_std(values: list[float]) -> tuple[float, float]:
    return statistics.fmean(values), (statistics.stdev(values) if len(values) > 1 else 0.0)


def summarise(sweep: Sweep, runs: list[PlannedRun], out_dir: Path, failed: list[str] = ()) -> str:
    """Write summary.csv / .md / .png from the finished runs; returns the markdown table, followed
    by a line naming the runs that failed or have not run yet."""
    from pose3d import plots
    from pose3d.machine import recorded_machines

    rows, run_metrics = [], []
    missing = [run.name for run in runs if not run.done]
    for run in runs:
        if not run.done:
            continue
        metrics = json.loads(run.metrics_file.read_text())
        run_metrics.append(metrics)
        tests = {k[len("test/"):]: v for k, v in metrics.items() if k.startswith("test/")}
        rows.append({"variant": run.params.get("variant", "default"), "seed": run.params.get("seed", "0"),
                     "run": run.name, "fit_seconds": metrics.get("fit_seconds"), **tests})
    columns = ["variant", "seed", "run", "fit_seconds"] + sorted({k for r in rows for k in r} - {"variant", "seed", "run", "fit_seconds"})
    write_table(out_dir / "summary.csv", columns, rows)

    reference = references().get(sweep.axis, {})
    paper = reference.get("values", {})
    variants = list(dict.fromkeys(r["variant"] for r in rows))
    configs = [c for c in (run.run_dir / "config.yaml" for run in runs if run.done) if c.is_file()]
    data = yaml.safe_load(configs[0].read_text())["data"] if configs else None
    floors = data_floors(data, out_dir.parent / "floors") if data else None
    # the action averages are Human3.6M's "Avg" (the papers' headline there); elsewhere the CSV has them
    averaged = bool(data) and data.get("name") == "human36m"
    extra = sorted(k for k in {k for r in rows for k in r} - set(TABLE_METRICS)
                   - {"variant", "seed", "run", "fit_seconds", "pixel_error", "pckh"}
                   if averaged or not k.endswith("_action_avg"))
    metrics = [m for m in TABLE_METRICS if any(m in r for r in rows)] + extra
    header = ["variant", "seeds", *metrics, "MPJPE / orientation floor", "fit s"]
    if paper:
        header.append(f"paper {reference.get('metric', 'mpjpe')}")
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    means, stds = [], []
    for variant in variants:
        group = [r for r in rows if r["variant"] == variant]
        cells = [variant, str(len(group))]
        mean_mpjpe = None
        for metric in metrics:
            values = [r[metric] for r in group if r.get(metric) is not None]
            if values:
                mean, std = _mean_std(values)
                cells.append(f"{mean:.1f} +/- {std:.1f}" if len(values) > 1 else f"{mean:.1f}")
                if metric == "mpjpe":
                    means.append(mean)
                    stds.append(std)
                    mean_mpjpe = mean
            else:
                cells.append("-")
        cells.append(versus_floor(mean_mpjpe, floors))
        fits = [r["fit_seconds"] for r in group if r.get("fit_seconds") is not None]
        cells.append(f"{statistics.fmean(fits):.0f}" if fits else "-")
        if paper:
            cells.append(f"{paper[variant]:.2f}" if variant in paper else "-")
        lines.append("| " + " | ".join(cells) + " |")
    for title, values in floor_rows(floors):
        cells = [f"*{title}*", "-", *[f"{values[m]:.1f}" if m in values else "-" for m in metrics],
                 versus_floor(values.get("mpjpe"), floors), "-"] + (["-"] if paper else [])
        lines.append("| " + " | ".join(cells) + " |")
    absent = [f"{run.name} ({missing_reason(run, failed)})" for run in runs if run.name in missing]
    if absent:
        lines += ["", f"Missing from this table: {', '.join(absent)}."]
    title = f"ablation-{sweep.axis}: test metrics, mean +/- std over seeds"
    notes = [f"# {title}", ""]
    if reference:
        notes += [f"Paper reference: {reference.get('source', '')}", ""]
    if run_metrics:
        notes += [f"fit s: each run's training wall time (mean over seeds), on {recorded_machines(run_metrics)}.", ""]
    table = "\n".join(lines)
    own = method_summaries(runs, out_dir, reference)
    if own:
        table += "\n\n" + own
    write_atomic(out_dir / "summary.md", "\n".join(notes) + "\n" + table + "\n")
    if means:
        plots.bars(out_dir / "summary.png", variants, means, stds, "test MPJPE (mm)", f"ablation-{sweep.axis}",
                   [paper.get(v) for v in variants] if paper else None,
                   floors={title: values["mpjpe"] for title, values in floor_rows(floors)})
    return table


def write_table(path: Path, columns: list[str], rows: list[dict]) -> None:
    """A CSV table with a header, written whole (:func:`pose3d.files.write_atomic`)."""
    handle = io.StringIO(newline="")
    writer = csv.DictWriter(handle, fieldnames=columns)
    writer.writeheader()
    writer.writerows(rows)
    write_atomic(path, handle.getvalue())


def method_summaries(runs: list[PlannedRun], out_dir: Path, reference: dict) -> str:
    """The markdown of each swept method's :meth:`PoseModule.summarise_ablation` over its finished runs."""
    from lightning_modules import MODELS
    from pose3d.config import read_experiment

    by_method: dict[str, list[Path]] = {}
    for run in runs:
        if run.done and "experiment" in run.params:
            method = read_experiment(str(run.params["experiment"]))["model"]["name"]
            by_method.setdefault(method, []).append(run.run_dir)
    texts = [MODELS.load(method).summarise_ablation(dirs, out_dir, reference) for method, dirs in by_method.items()]
    return "\n\n".join(t.strip() for t in texts if t and t.strip())


def references() -> dict:
    return yaml.safe_load(REFERENCES.read_text()) if REFERENCES.is_file() else {}


def create_sweep(sweep: Sweep, project: str) -> int:
    from harness.train import wandb_mode

    if wandb_mode() != "online":
        print("error: W&B is not logged in (or WANDB_MODE is offline/disabled), so no sweep can be created; "
              "run `wandb login` first, or run the grid locally with `make ablation-" + sweep.axis + "`", file=sys.stderr)
        return 1
    import wandb

    sweep_id = wandb.sweep(sweep.config, project=project)
    entity = wandb.Api().default_entity
    print(f"start agents (one per GPU) with:\n  wandb agent {entity}/{project}/{sweep_id}")
    return 0


def parse_with_overrides(parser: argparse.ArgumentParser, argv: list[str] | None) -> argparse.Namespace:
    """The options before ``--``; the ``key=value`` overrides for every run after it, as ``.overrides``."""
    from harness.cli_help import config_guide

    parser.formatter_class = argparse.RawDescriptionHelpFormatter  # the epilog's lines as they are
    parser.epilog = "\n\n".join(filter(None, [parser.epilog, "Extra key=value overrides for every run go after `--` "
                                                              "(the keys of python -m pose3d.train).", config_guide()]))
    argv = list(sys.argv[1:] if argv is None else argv)
    split = argv.index("--") if "--" in argv else len(argv)
    args = parser.parse_args(argv[:split])
    args.overrides = argv[split + 1:]
    args.argv = argv
    return args


def main(argv: list[str] | None = None) -> int:
    from harness.cli_help import sweep_files_text

    parser = OneLineParser(prog="python -m pose3d.ablation", description=__doc__.splitlines()[0],
                                     epilog="sweep files (SWEEP_FILE; --preset and --seeds replace theirs):\n"
                                            + sweep_files_text())
    parser.add_argument("action", choices=("run", "plan", "summary", "sweep"))
    parser.add_argument("sweep_file")
    add_grid_options(parser)
    add_local_options(parser)
    parser.add_argument("--launcher", default="local", choices=LAUNCHERS,
                        help="local: this machine (default); slurm: one SLURM job array through submitit; "
                             "submitit-local: the same tasks through submitit's local executor")
    parser.add_argument("--slurm", default="", help='submitit/SLURM options as key=value words, e.g. '
                                                   '"partition=gpu gpus_per_node=1 timeout_min=600"')
    parser.add_argument("--wait", action="store_true", help="slurm: wait for the array and write the summary")
    parser.add_argument("--project", default="pose3d-lab", help="W&B project of the sweep")
    args = parse_with_overrides(parser, argv)
    try:
        sweep = Sweep.read(args.sweep_file)
        if args.action == "sweep":
            return create_sweep(sweep, args.project)
        if args.action == "plan":  # every key checked as the run will check it; nothing runs
            runs = plan_runs(sweep.grid(args.preset, args.seeds), args.overrides, str(sweep.path), sweep.config,
                             check_identity=False)
            print("\n".join(shlex.join(run.agent_command) for run in runs), flush=True)
            return 0
        return run_action(sweep, args)
    except ConfigError as error:
        print(f"error: {error}", file=sys.stderr)
        return EXIT_BAD_INPUT


def run_action(sweep: Sweep, args) -> int:
    from harness import launch

    options = launch.parse_options(args.slurm) if args.launcher != "local" else {}
    if args.slurm and args.launcher == "local":
        raise ConfigError("SLURM options need LAUNCHER=slurm (or submitit-local); the local launcher runs here")
    devices = device_ids(args.devices)
    if devices and args.launcher != "local":
        raise ConfigError(f"DEVICES is for LAUNCHER=local; with LAUNCHER={args.launcher} ask for GPUs with "
                          "SLURM=\"gpus_per_node=N\"")
    extra = list(args.overrides)
    if args.launcher == "slurm":
        extra += [o for o in launch.ddp_overrides(options) if o.split("=")[0] not in {e.split("=")[0] for e in extra}]
    runs = plan_runs(sweep.grid(args.preset, args.seeds), extra, str(sweep.path), sweep.config)
    out_dir = Path(runs[0].run_dir).parents[1] / f"ablation-{sweep.axis}" if runs else Path("results")
    check_writable(out_dir, "a writable results folder (results_dir=...)")
    if args.action == "run" and runs:
        check_writable(runs[0].run_dir.parent, "a writable results folder (results_dir=...)")
    failed: list[str] = []
    if args.action == "run":
        todo = [r for r in runs if not r.done]
        tasks = [launch.GridTask(r.name, r.base_command(), str(r.run_dir), str(out_dir / "logs" / f"{r.name}.log"))
                 for r in todo]
        indices = list(range(1, len(todo) + 1))
        if args.launcher == "local":
            slots, told = local_slots(devices, args.jobs, extra)
            try:
                failed = execute(runs, slots, out_dir / "logs", run_overrides=told)
            except Stopped as stop:  # SIGINT/SIGTERM: the summary names the unfinished runs
                summarise(sweep, runs, out_dir)
                print(stop.line("python -m pose3d.ablation " + shlex.join(args.argv)), file=sys.stderr, flush=True)
                return stop.exit_code
        elif args.launcher == "submitit-local":
            from harness.progress import Progress

            print(f"{len(runs) - len(todo)} of {len(runs)} runs already done; running {len(todo)} through "
                  f"submitit's local executor ({out_dir / 'submitit'})", flush=True)
            progress = Progress(len(todo))
            progress.start()
            try:
                failed = launch.run_local_executor(tasks, indices, len(todo), out_dir / "submitit", options, progress, todo)
            finally:
                progress.close()
        else:
            if not todo:
                print(f"all {len(runs)} runs already done; nothing to submit", flush=True)
            else:
                submitted = launch.submit(tasks, indices, "slurm", out_dir / "submitit", options, f"ablation-{sweep.axis}")
                array = str(submitted.jobs[0].job_id).split("_")[0]
                write_submission(out_dir, array, submitted)
                print(f"{len(runs) - len(todo)} of {len(runs)} runs already done; submitted {len(todo)} as SLURM job "
                      f"array {array} (one grid point per task); logs: {out_dir / 'logs'}, {out_dir / 'submitit'}",
                      flush=True)
                if not args.wait:
                    print(f"watch it with `squeue -j {array}`; the summary of the runs finished so far: "
                          f"python -m pose3d.ablation summary {sweep.path}"
                          + (f" --preset {args.preset}" if args.preset else "")
                          + (f" --seeds {args.seeds}" if args.seeds else "")
                          + (" -- " + shlex.join(extra) if extra else ""), flush=True)
                    return 0
                failed = wait_for(submitted, len(todo))
    table = summarise(sweep, runs, out_dir, failed)
    done = sum(r.done for r in runs)
    print(f"\n{table}\n\n{done} of {len(runs)} runs finished; written: {out_dir}/summary.csv, summary.md, summary.png")
    if failed:
        print(f"{len(failed)} run(s) failed: {', '.join(failed)}", file=sys.stderr)
        return 1
    return 0


def write_submission(out_dir: Path, array: str, submitted) -> None:
    out_dir.mkdir(parents=True, exist_ok=True)
    record = {"job_array": array, "tasks": [{"task": str(job.job_id), "run": task.name}
                                              for job, task in zip(submitted.jobs, submitted.tasks)]}
    (out_dir / "submitted.json").write_text(json.dumps(record, indent=2) + "\n")


def wait_for(submitted, total: int) -> list[str]:
    failed = []
    for job, task, index in zip(submitted.jobs, submitted.tasks, submitted.indices):
        try:
            job.result()
            ok = True
        except Exception:
            ok = False
        metrics_file = Path(task.run_dir) / "metrics.json"
        ok, line = result_line(index, total, task.name, metrics_file, 0.0, 0 if ok else 1, Path(task.log_file))
        if not ok:
            failed.append(task.name)
        print(line, flush=True)
    return failed


if __name__ == "__main__":
    sys.exit(main())
