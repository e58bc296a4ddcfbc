"""Every method on the same data, one table: ``make compare [PRESET=quick] [SEEDS=n]``.

``ablations/compare.yaml`` is a W&B grid sweep file like the others, over ``experiment`` (and
``seed``): each experiment runs its default variant, its headline (Tekin ``trainable``, Tome
``mixture``, Park ``both``, ...), on the same DataModule, split and preset. The runs are
planned and run by :mod:`harness.ablation` (the same commands as a sweep agent, with
``results_dir=<results>/compare``: the comparison's data, studio 3D plus wild 2D-only images,
tested on both domains, is no ablation's, so its runs and their prerequisites, each trained
once and shared, live in ``results/compare/runs``), then summarised here into
``results/compare/``:

* ``summary.csv`` (one row per run) and ``summary.md`` (one row per method, mean +/- std over
  seeds): test MPJPE, PA-MPJPE, N-MPJPE, 3D PCK and AUC unaligned and globally scaled, the 2D
  pixel error where the method predicts 2D (both test domains together), MPJPE and globally
  scaled PCK of each test domain (``test/<domain>/<metric>``: studio, wild), and the cost: parameters (with any frozen
  2D network the method runs at test time), training wall time of the run plus its
  prerequisites (each counted once per method, as it is shared), and inference ms per image
  on the CPU that writes the summary (batch of the test loader, median of 3 after a warm-up); beside them
  each paper's Human3.6M Protocol #1 number from ``ablations/references.yaml`` (``compare:``).
* ``summary.png``: test MPJPE per method; ``per_action.png``: MPJPE per action (activity
  family), one line per method; ``predictions.png``: the same five test images with every
  method's 3D prediction (seed 0) beside the ground truth, front and side views.

``python -m harness.compare summary`` rewrites the files from the runs finished so far.
"""
from __future__ import annotations

import json
import shlex
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import yaml

from harness.ablation import (EXIT_BAD_INPUT, REPO_ROOT, PlannedRun, Sweep, add_grid_options, add_local_options,
                              device_ids, execute, local_slots, missing_reason, parse_with_overrides, plan_runs,
                              references, write_table)
from harness.floors import data_floors, floor_rows, versus_floor
from harness.stopping import Stopped
from pose3d.arguments import OneLineParser
from pose3d.config import ConfigError
from pose3d.files import check_writable, write_atomic
from pose3d.machine import describe_cpu, recorded_machines
from pose3d.summaries import mean_std

COMPARE_FILE = REPO_ROOT / "ablations" / "compare.yaml"
# (metrics.json key without "test/", column title); 3D first, then 2D
COLUMNS = (("mpjpe", "MPJPE"), ("pa_mpjpe", "PA-MPJPE"), ("n_mpjpe", "N-MPJPE"), ("pck3d", "PCK"),
           ("auc3d", "AUC"), ("pck3d_scaled", "PCK GS"), ("auc3d_scaled", "AUC GS"), ("pixel_error", "2D px"))
DOMAIN_COLUMNS = (("mpjpe", "MPJPE"), ("pa_mpjpe", "PA-MPJPE"), ("pck3d_scaled", "PCK GS"))


# -- what a finished run says -----------------------------------------------------------
def read_run(run: PlannedRun) -> dict[str, Any] | None:
    """The run's test metrics, config and training seconds (its own and its prerequisites')."""
    if not run.done:
        return None
    metrics = json.loads(run.metrics_file.read_text())
    config = yaml.safe_load((run.run_dir / "config.yaml").read_text()) or {}
    return {"run": run, "experiment": str(run.params.get("experiment")), "seed": int(run.params.get("seed", 0)),
            "variant": config.get("variant"), "model": (config.get("model") or {}).get("name"),
            "metrics": metrics, "config": config, "fit_seconds": float(metrics.get("fit_seconds") or 0.0),
            "prerequisites": prerequisite_seconds(config)}


def prerequisite_seconds(config: dict) -> dict[str, float]:
    """{prerequisite path: its training or fitting seconds} from a run's ``prerequisites:`` record,
    with theirs in turn (a fine-tuned 2D network's pre-training run)."""
    from harness.prerequisites import artifact_record

    seconds = {}
    for record in config.get("prerequisites") or []:
        path = Path(str(record.get("path", "")))
        if record.get("kind") == "trained_run":  # <results>/runs/<folder>/checkpoints/best.ckpt
            run_dir = path.parent.parent
            source = run_dir / "metrics.json"
            if (run_dir / "config.yaml").is_file():
                seconds.update(prerequisite_seconds(yaml.safe_load((run_dir / "config.yaml").read_text()) or {}))
        else:
            source = artifact_record(path)
        if source.is_file():
            seconds[str(path)] = float(json.loads(source.read_text()).get("fit_seconds") or 0.0)
    return seconds


def load_trained(run_dir: Path):
    """(model in eval mode, its DataModule) rebuilt from a run's ``config.yaml`` and checkpoint."""
    from omegaconf import OmegaConf

    from datamodules import DATAMODULES
    from harness.trained_run import load_run

    run = load_run(run_dir)
    return run.model, DATAMODULES.load(run.cfg.data.name)(OmegaConf.to_container(run.cfg.data))


def first_test_batch(datamodule) -> dict:
    datamodule.setup("test")
    return next(iter(datamodule.test_dataloader()))


FIGURE_IMAGES = 5  # test images in predictions.png


def measure_run(run_dir: Path, repeats: int = 3) -> dict[str, Any]:
    """One load of a trained run: its parameters, inference ms per image (CPU, the test loader's
    first batch, median of ``repeats``) and, for the figure, that batch's first
    :data:`FIGURE_IMAGES` images, ground truth and predicted 3D."""
    import torch

    model, datamodule = load_trained(run_dir)
    batch = first_test_batch(datamodule)
    with torch.no_grad():
        prediction = model.predict(batch)  # also the warm-up
        times = []
        for _ in range(repeats):
            started = time.perf_counter()
            model.predict(batch)
            times.append(time.perf_counter() - started)
    shown = slice(0, FIGURE_IMAGES)
    return {"parameters": float(sum(p.numel() for p in model.parameters())),
            "ms_per_image": 1000.0 * statistics.median(times) / len(batch["image"]),
            "shown": {"image": batch["image"][shown], "joints_3d": batch["joints_3d"][shown].float(),
                      "prediction": prediction["joints_3d"][shown].float()}}


# -- the tables ----------------------------------------------------------------------------
def _label(record: dict) -> str:
    variant = record.get("variant")
    return f"{record['experiment']} ({variant})" if variant and variant != "default" else record["experiment"]


def domain_metric(metrics: dict, domain: str, key: str) -> float | None:
    """``test/<domain>/<key>`` of a run's metrics.json (the shared suite per test domain)."""
    return metrics.get(f"test/{domain}/{key}")


def domains_of(records: list[dict]) -> list[str]:
    """The test domains the runs were scored on, from their ``test/<domain>/mpjpe`` keys."""
    return sorted({key.split("/")[1] for r in records for key in r["metrics"]
                   if key.startswith("test/") and key.count("/") == 2 and key.endswith("/mpjpe")})


def summarise(runs: list[PlannedRun], out_dir: Path, measure: bool = True) -> str:
    """Write ``summary.csv``, ``summary.md``, ``summary.png``, ``per_action.png`` and
    ``predictions.png`` into ``out_dir`` from the finished ``runs``; returns the markdown."""
    from pose3d import plots

    records = [r for r in (read_run(run) for run in runs) if r is not None]
    for record in records:
        record.update(measure_run(record["run"].run_dir) if measure else {})
    reference = references().get("compare", {})
    paper = reference.get("values", {})
    domains = domains_of(records)
    methods = list(dict.fromkeys(r["experiment"] for r in records))
    by_method = {m: [r for r in records if r["experiment"] == m] for m in methods}

    out_dir.mkdir(parents=True, exist_ok=True)
    write_csv(out_dir / "summary.csv", records, domains)
    floors = data_floors(records[0]["config"]["data"], out_dir.parent / "floors") if records else None
    header = ["method", "seeds", *[title for _, title in COLUMNS], "MPJPE / orientation floor"]
    header += [f"{domain} {title}" for domain in domains for _, title in (*DOMAIN_COLUMNS, ("", "/ floor"))]
    header += ["parameters", "train s (+ prerequisites)", "ms / image", "paper H36M P1 MPJPE"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    means: dict[str, tuple[float, float]] = {}

    def mean_of(values: list[float]) -> float | None:
        return statistics.fmean(values) if values else None

    for method, group in by_method.items():
        cells = [_label(group[0]), str(len(group))]
        for key, _ in COLUMNS:
            cells.append(mean_std([r["metrics"][f"test/{key}"] for r in group if f"test/{key}" in r["metrics"]]))
        cells.append(versus_floor(mean_of([r["metrics"]["test/mpjpe"] for r in group if "test/mpjpe" in r["metrics"]]), floors))
        for domain in domains:
            for key, _ in DOMAIN_COLUMNS:
                cells.append(mean_std([v for r in group if (v := domain_metric(r["metrics"], domain, key)) is not None]))
            cells.append(versus_floor(mean_of([v for r in group if (v := domain_metric(r["metrics"], domain, "mpjpe")) is not None]),
                                      floors, f"{domain}/"))
        cells.append(mean_std([r["parameters"] / 1e6 for r in group if "parameters" in r], 2) + (" M" if measure else ""))
        prerequisites = {path: s for r in group for path, s in r["prerequisites"].items()}
        own = statistics.fmean(r["fit_seconds"] for r in group)
        cells.append(f"{own:.0f}" + (f" (+ {sum(prerequisites.values()):.0f})" if prerequisites else ""))
        cells.append(mean_std([r["ms_per_image"] for r in group if "ms_per_image" in r], 2))
        cells.append(f"{paper[method]:.1f}" if method in paper else "-")
        lines.append("| " + " | ".join(cells) + " |")
        values = [r["metrics"]["test/mpjpe"] for r in group if "test/mpjpe" in r["metrics"]]
        if values:
            means[method] = (statistics.fmean(values), statistics.stdev(values) if len(values) > 1 else 0.0)
    for title, values in floor_rows(floors):
        cells = [f"*{title}*", "-", *[f"{values[key]:.1f}" if key in values else "-" for key, _ in COLUMNS],
                 versus_floor(values.get("mpjpe"), floors)]
        for domain in domains:
            cells += [f"{values[f'{domain}/{key}']:.1f}" if f"{domain}/{key}" in values else "-" for key, _ in DOMAIN_COLUMNS]
            cells.append(versus_floor(values.get(f"{domain}/mpjpe"), floors, f"{domain}/"))
        lines.append("| " + " | ".join(cells + ["-"] * 4) + " |")
    absent = [f"{run.name} ({missing_reason(run)})" for run in runs if not run.done]
    if absent:
        lines += ["", f"Missing from this table: {', '.join(absent)}."]
    table = "\n".join(lines)
    notes = ["# compare: every method's headline variant on the same data, split and preset", "",
             "Test split: both domains together, then each on its own (studio, wild); mean +/- std over seeds. "
             "Train s: the run's fit, mean over seeds; in brackets its prerequisites (a 2D network, a fitted prior), "
             f"counted once as they are shared, on {recorded_machines([r['metrics'] for r in records]) or '-'}. "
             f"ms / image: predict on {describe_cpu()}.", ""]
    if reference:
        notes += [f"Paper numbers: {reference.get('source', '')}", ""]
    write_atomic(out_dir / "summary.md", "\n".join(notes) + "\n" + table + "\n")
    if means:
        plots.bars(out_dir / "summary.png", list(means), [m for m, _ in means.values()], [s for _, s in means.values()],
                   "test MPJPE (mm)", "compare: headline variants", [paper.get(m) for m in means] if paper else None,
                   floors={title: values["mpjpe"] for title, values in floor_rows(floors)})
        per_action_plot(out_dir / "per_action.png", by_method)
        if measure:
            predictions_figure(out_dir / "predictions.png", by_method)
    return table


def write_csv(path: Path, records: list[dict], domains: list[str]) -> None:
    """One row per run: its method, seed, seconds, cost and every test metric."""
    rows = []
    for r in records:
        row = {"method": r["experiment"], "variant": r["variant"], "seed": r["seed"], "run": r["run"].name,
               "fit_seconds": r["fit_seconds"], "prerequisite_seconds": sum(r["prerequisites"].values()),
               "parameters": r.get("parameters"), "ms_per_image": r.get("ms_per_image")}
        row.update({k[len("test/"):]: v for k, v in r["metrics"].items() if k.startswith("test/")})  # incl. <domain>/<metric>
        rows.append(row)
    write_table(path, list(dict.fromkeys(k for row in rows for k in row)), rows)


def per_action_plot(path: Path, by_method: dict[str, list[dict]]) -> None:
    from pose3d.plots import lines_over_categories

    actions = sorted({a for group in by_method.values() for r in group for a in r["metrics"].get("per_action", {})})
    series = {}
    for method, group in by_method.items():
        series[method] = [statistics.fmean(v) if (v := [r["metrics"]["per_action"][a]["mpjpe"] for r in group
                                                          if a in r["metrics"].get("per_action", {})]) else float("nan")
                          for a in actions]
    if actions:
        lines_over_categories(path, actions, series, "test MPJPE (mm)", "compare: MPJPE per action")


def predictions_figure(path: Path, by_method: dict[str, list[dict]]) -> None:
    """The same test images; per method (its lowest seed) the 3D prediction over the ground truth."""
    from pose3d.plots import pose_panels

    shown = {method: min(group, key=lambda r: r["seed"])["shown"] for method, group in by_method.items()}
    first = next(iter(shown.values()))
    pose_panels(path, first["image"], first["joints_3d"], {m: s["prediction"] for m, s in shown.items()},
                "compare: the same test images, prediction (colour) over the ground truth (grey)")


# -- the command line ----------------------------------------------------------------------
def own_results_dir(overrides: list[str]) -> list[str]:
    """The comparison's runs live in ``<results_dir>/compare/`` (their data is not an ablation's,
    so their run folders must not be an ablation's either); its prerequisites are trained there once."""
    base = next((o.split("=", 1)[1] for o in reversed(overrides) if o.startswith("results_dir=")), "results")
    return [o for o in overrides if not o.startswith("results_dir=")] + [f"results_dir={Path(base) / 'compare'}"]


def main(argv: list[str] | None = None) -> int:
    parser = OneLineParser(prog="python -m pose3d.compare", description=__doc__.splitlines()[0])
    parser.add_argument("action", choices=("run", "summary"), nargs="?", default="run")
    parser.add_argument("--sweep-file", default=str(COMPARE_FILE))
    add_grid_options(parser)
    add_local_options(parser)
    parser.add_argument("--no-cost", action="store_true", help="skip loading checkpoints (parameters, ms / image, figure)")
    args = parse_with_overrides(parser, argv)
    try:
        sweep = Sweep.read(args.sweep_file)
        overrides = own_results_dir(list(args.overrides))
        runs = plan_runs(sweep.grid(args.preset, args.seeds), overrides, str(sweep.path), sweep.config)
        out_dir = Path(runs[0].run_dir).parents[1] if runs else Path("results") / "compare"
        check_writable(out_dir, "a writable results folder (results_dir=...)")
        failed = []
        if args.action == "run":
            slots, told = local_slots(device_ids(args.devices), args.jobs, overrides)
            try:
                failed = execute(runs, slots, out_dir / "logs", run_overrides=told)
            except Stopped as stop:  # SIGINT/SIGTERM: the summary names the unfinished runs (no checkpoint loads)
                summarise(runs, out_dir, measure=False)
                print(stop.line("python -m pose3d.compare " + shlex.join(args.argv)), file=sys.stderr, flush=True)
                return stop.exit_code
        table = summarise(runs, out_dir, measure=not args.no_cost)
    except ConfigError as error:
        print(f"error: {error}", file=sys.stderr)
        return EXIT_BAD_INPUT
    done = sum(r.done for r in runs)
    print(f"\n{table}\n\n{done} of {len(runs)} runs finished; written: {out_dir}/summary.csv, summary.md, summary.png, "
          "per_action.png, predictions.png")
    if failed:
        print(f"{len(failed)} run(s) failed: {', '.join(failed)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
