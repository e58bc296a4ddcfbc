"""Run an ablation grid locally, or create it as a W&B sweep, from one sweep file.

``ablations/<axis>.yaml`` is a W&B sweep configuration used as it is: ``method: grid``, a
``command`` calling ``python -m pose3d.train ${args_no_hyphens}``, and ``parameters`` whose
``values`` lists span the grid (usually ``variant`` and ``seed``). Locally::

    python -m pose3d.ablation run ablations/fusion.yaml [--preset quick] [--seeds N] [--devices 0,1] [-- key=value ...]

expands the same grid (``--preset`` replaces the file's ``preset``, ``--seeds N`` its seed list
by seeds 0..N-1), runs each point as ``python -m pose3d.train key=value ...`` (the command a
sweep agent runs), one after another or one per device in parallel, and skips runs whose
``metrics.json`` exists: an interrupted ablation resumes (a run with a ``last.ckpt`` but no
metrics resumes from it). It then writes ``results/ablation-<axis>/summary.csv`` (one row per
run), ``summary.md`` (mean +/- std over seeds per variant beside the paper's numbers from
``ablations/references.yaml``) and ``summary.png``, and prints the table.

``python -m pose3d.ablation sweep ablations/fusion.yaml`` creates the W&B sweep and prints
the ``wandb agent`` command (or says that W&B is not logged in);
``python -m pose3d.ablation summary ...`` rewrites the summary from finished runs.
"""
from __future__ import annotations

import argparse
import csv
import itertools
import json
import os
import queue
import statistics
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import yaml

from pose3d.config import REPO_ROOT, ConfigError

REFERENCES = REPO_ROOT / "ablations" / "references.yaml"
TABLE_METRICS = ("mpjpe", "pa_mpjpe", "n_mpjpe", "pck3d", "auc3d")
EXIT_BAD_INPUT = 2


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
        try:
            config = yaml.safe_load(path.read_text())
        except yaml.YAMLError as error:
            raise ConfigError(f"{path} is not valid YAML: {str(error).splitlines()[0]}") from None
        if not isinstance(config, dict) or not isinstance(config.get("parameters"), dict):
            raise ConfigError(f"{path} has no 'parameters' mapping; expected a W&B sweep file (method, command, parameters)")
        if config.get("method") != "grid":
            raise ConfigError(f"{path}: method is {config.get('method')!r}; the local runner expands only 'grid' sweeps")
        for name, spec in config["parameters"].items():
            if not isinstance(spec, dict) or not ("value" in spec or "values" in spec):
                raise ConfigError(f"{path}: parameter '{name}' needs 'value' or 'values'; got {spec!r}")
            if "values" in spec and not (isinstance(spec["values"], list) and spec["values"]):
                raise ConfigError(f"{path}: parameter '{name}' has no values ({spec['values']!r}); expected a non-empty list")
        return cls(path.stem, config, path)

    def grid(self, preset: str | None = None, seeds: int | None = None) -> list[dict[str, str]]:
        """Every grid point as ``{parameter: value}``, in the file's order (last parameter fastest)."""
        axes = []
        for name, spec in self.config["parameters"].items():
            values = list(spec["values"]) if "values" in spec else [spec["value"]]
            if name == "preset" and preset is not None:
                values = [preset]
            if name == "seed" and seeds is not None:
                values = list(range(seeds))
            axes.append([(name, str(v)) for v in values])
        if preset is not None and "preset" not in self.config["parameters"]:
            axes.append([("preset", preset)])
        if seeds is not None and "seed" not in self.config["parameters"]:
            axes.append([("seed", str(s)) for s in range(seeds)])
        return [dict(point) for point in itertools.product(*axes)]


@dataclass
class PlannedRun:
    params: dict[str, str]
    name: str
    run_dir: Path

    @property
    def metrics_file(self) -> Path:
        return self.run_dir / "metrics.json"

    def command(self, extra: list[str]) -> list[str]:
        quiet = ["trainer.enable_progress_bar=false"]  # the run's log file is for reading
        args = [f"{k}={v}" for k, v in self.params.items()] + quiet + list(extra)
        if (self.run_dir / "checkpoints" / "last.ckpt").is_file():
            args.append("ckpt_path=last")  # interrupted earlier: resume
        elif self.run_dir.exists():
            args.append("overwrite=true")  # a folder without a checkpoint holds nothing to keep
        return [sys.executable, "-m", "pose3d.train", *args]


def plan_runs(points: list[dict[str, str]], extra: list[str], source: str = "the sweep file") -> list[PlannedRun]:
    """Resolve each point's run folder with the same config code the run will use; a bad
    parameter names ``source`` (the sweep file), a bad extra override the command line."""
    from pose3d.config import run_name
    from harness.train import load_config

    from harness.run_identity import require_same_config

    runs = []
    for point in points:
        try:
            load_config([f"{k}={v}" for k, v in point.items()])
        except ConfigError as error:
            raise ConfigError(f"{source}: {str(error).replace(' (command line)', '')}") from None
        cfg = load_config([f"{k}={v}" for k, v in point.items()] + list(extra))
        run = PlannedRun(point, run_name(cfg), Path(cfg.results_dir) / "runs" / run_name(cfg))
        if run.metrics_file.is_file() or (run.run_dir / "checkpoints" / "last.ckpt").is_file():
            action = "counting it as done" if run.metrics_file.is_file() else "resuming it"
            require_same_config(run.run_dir, cfg, action)
        runs.append(run)
    return runs


def execute(runs: list[PlannedRun], extra: list[str], devices: list[str], log_dir: Path) -> list[str]:
    """Run the pending runs, one per device at a time; returns the names of failed runs."""
    pending: queue.Queue = queue.Queue()
    todo = [r for r in runs if not r.metrics_file.is_file()]
    for index, run in enumerate(todo, 1):
        pending.put((index, run))
    print(f"{len(runs) - len(todo)} of {len(runs)} runs already done; running {len(todo)}", flush=True)
    failed: list[str] = []
    lock = threading.Lock()
    log_dir.mkdir(parents=True, exist_ok=True)

    def worker(device: str | None) -> None:
        env = dict(os.environ)
        if device is not None:
            env["CUDA_VISIBLE_DEVICES"] = device
        while True:
            try:
                index, run = pending.get_nowait()
            except queue.Empty:
                return
            started = time.perf_counter()
            with open(log_dir / f"{run.name}.log", "w") as log:
                code = subprocess.call(run.command(extra), stdout=log, stderr=subprocess.STDOUT, env=env, cwd=REPO_ROOT)
            seconds = time.perf_counter() - started
            with lock:
                if code == 0 and run.metrics_file.is_file():
                    mpjpe = json.loads(run.metrics_file.read_text()).get("test/mpjpe", float("nan"))
                    print(f"[{index}/{len(todo)}] {run.name}: test MPJPE {mpjpe:.1f} mm ({seconds:.0f} s)", flush=True)
                else:
                    failed.append(run.name)
                    print(f"[{index}/{len(todo)}] {run.name}: FAILED (exit {code}); see {log_dir / (run.name + '.log')}", flush=True)

    threads = [threading.Thread(target=worker, args=(d,)) for d in (devices or [None])]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return failed


def _mean_std(values: list[float]) -> tuple[float, float]:
    return statistics.fmean(values), (statistics.stdev(values) if len(values) > 1 else 0.0)


def summarise(sweep: Sweep, runs: list[PlannedRun], out_dir: Path, failed: list[str] = ()) -> str:
    """Write summary.csv / .md / .png from the finished runs; returns the markdown table, followed
    by a line naming the runs that failed or have not run yet."""
    from pose3d import plots

    rows = []
    missing = [run.name for run in runs if not run.metrics_file.is_file()]
    for run in runs:
        if not run.metrics_file.is_file():
            continue
        metrics = json.loads(run.metrics_file.read_text())
        tests = {k[len("test/"):]: v for k, v in metrics.items() if k.startswith("test/")}
        rows.append({"variant": run.params.get("variant", "default"), "seed": run.params.get("seed", "0"),
                     "run": run.name, "fit_seconds": metrics.get("fit_seconds"), **tests})
    out_dir.mkdir(parents=True, exist_ok=True)
    columns = ["variant", "seed", "run", "fit_seconds"] + sorted({k for r in rows for k in r} - {"variant", "seed", "run", "fit_seconds"})
    with open(out_dir / "summary.csv", "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=columns)
        writer.writeheader()
        writer.writerows(rows)

    reference = references().get(sweep.axis, {})
    paper = reference.get("values", {})
    variants = list(dict.fromkeys(r["variant"] for r in rows))
    extra = sorted({k for r in rows for k in r} - set(TABLE_METRICS) - {"variant", "seed", "run", "fit_seconds", "pixel_error", "pckh"})
    metrics = [m for m in TABLE_METRICS if any(m in r for r in rows)] + extra
    header = ["variant", "seeds", *metrics, "fit s"]
    if paper:
        header.append(f"paper {reference.get('metric', 'mpjpe')}")
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    means, stds = [], []
    for variant in variants:
        group = [r for r in rows if r["variant"] == variant]
        cells = [variant, str(len(group))]
        for metric in metrics:
            values = [r[metric] for r in group if r.get(metric) is not None]
            if values:
                mean, std = _mean_std(values)
                cells.append(f"{mean:.1f} +/- {std:.1f}" if len(values) > 1 else f"{mean:.1f}")
                if metric == "mpjpe":
                    means.append(mean)
                    stds.append(std)
            else:
                cells.append("-")
        fits = [r["fit_seconds"] for r in group if r.get("fit_seconds") is not None]
        cells.append(f"{statistics.fmean(fits):.0f}" if fits else "-")
        if paper:
            cells.append(f"{paper[variant]:.2f}" if variant in paper else "-")
        lines.append("| " + " | ".join(cells) + " |")
    absent = [f"{name} ({'failed' if name in failed else 'not run yet'})" for name in missing]
    if absent:
        lines += ["", f"Missing from this table: {', '.join(absent)}."]
    title = f"ablation-{sweep.axis}: test metrics, mean +/- std over seeds"
    notes = [f"# {title}", ""]
    if reference:
        notes += [f"Paper reference: {reference.get('source', '')}", ""]
    table = "\n".join(lines)
    (out_dir / "summary.md").write_text("\n".join(notes) + table + "\n")
    if means:
        plots.bars(out_dir / "summary.png", variants, means, stds, "test MPJPE (mm)", f"ablation-{sweep.axis}",
                   [paper.get(v) for v in variants] if paper else None)
    return table


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


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m pose3d.ablation", description=__doc__.splitlines()[0])
    parser.add_argument("action", choices=("run", "summary", "sweep"))
    parser.add_argument("sweep_file")
    parser.add_argument("--preset", default=None, help="replaces the sweep file's preset (smoke|quick|paper)")
    parser.add_argument("--seeds", type=int, default=None, help="run seeds 0..N-1 instead of the file's list")
    parser.add_argument("--devices", default="", help="comma-separated GPU ids: one run per device in parallel")
    parser.add_argument("--project", default="pose3d-lab", help="W&B project of the sweep")
    parser.epilog = "Extra key=value overrides for every run go after `--`."
    argv = list(sys.argv[1:] if argv is None else argv)
    split = argv.index("--") if "--" in argv else len(argv)
    args = parser.parse_args(argv[:split])
    args.overrides = argv[split + 1:]
    try:
        sweep = Sweep.read(args.sweep_file)
        if args.action == "sweep":
            return create_sweep(sweep, args.project)
        if args.seeds is not None and args.seeds < 1:
            raise ConfigError(f"--seeds {args.seeds}: expected a positive number of seeds")
        runs = plan_runs(sweep.grid(args.preset, args.seeds), args.overrides, str(sweep.path))
        out_dir = Path(runs[0].run_dir).parents[1] / f"ablation-{sweep.axis}" if runs else Path("results")
        failed = []
        if args.action == "run":
            devices = [d for d in args.devices.split(",") if d.strip()]
            failed = execute(runs, args.overrides, devices, out_dir / "logs")
        table = summarise(sweep, runs, out_dir, failed)
    except ConfigError as error:
        print(f"error: {error}", file=sys.stderr)
        return EXIT_BAD_INPUT
    print(f"\n{table}\n\nwritten: {out_dir}/summary.csv, summary.md, summary.png")
    if failed:
        print(f"{len(failed)} run(s) failed: {', '.join(failed)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
