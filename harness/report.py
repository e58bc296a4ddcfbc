"""The result tables and figures of the docs, written from a results folder: ``make report``.

``python -m pose3d.report [--results results] [--check] [FILE ...]`` reads what the ablations and
``make compare`` wrote (``<results>/ablation-<axis>/summary.csv``, ``<results>/compare/summary.csv``,
each run's ``config.yaml`` for the floors of its data) and rewrites, in README.md and
docs/results/*.md by default:

* the table after each ``<!-- table: NAME -->`` line (the table is the run of lines that start
  with ``|``). NAME is ``ablation-<axis>`` (every variant: seeds, MPJPE, PA-MPJPE, each test
  domain's MPJPE, the paper's metric where it is another, MPJPE over the orientation floor, fit
  seconds, the paper's value, then both chance floors), ``ablation-<axis> compact`` (the same
  without seeds and fit seconds, and only the orientation floor), ``compare`` (one row per
  method, each test domain's MPJPE against its own floor) or ``headlines`` (a hand-written table
  whose ``ours`` column is filled with each row's experiment's headline variant -- its experiment
  file's ``variant:`` -- from the ablation that sweeps it);
* every image the file links as ``.../figures/<axis>_<name>.png`` or ``.../figures/compare_<name>.png``:
  copied to where the link points, from ``<results>/ablation-<axis>/<name>.png`` (else from the first of the ablation's
  runs that has it) or ``<results>/compare/<name>.png``, and shrunk (palette, then size) to at
  most :data:`FIGURE_BYTES`.

Values are means over the seeds a summary holds (``mean +/- std`` where there are several). The
prose around the tables stays hand-written: rerun this after a rerun, then read the prose against
the new numbers. A table whose runs the folder does not hold (one ablation run of five) is kept
as it is and named in the output. ``--check`` writes nothing and exits 1 when a file would change.
"""
from __future__ import annotations

import csv
import re
import shutil
import statistics
import sys
from pathlib import Path

import yaml

from harness.ablation import EXIT_BAD_INPUT, REPO_ROOT, references
from harness.floors import data_floors, floor_rows, versus_floor
from pose3d.arguments import OneLineParser
from pose3d.config import ConfigError, read_experiment
from pose3d.files import write_atomic
from pose3d.summaries import mean_std

FIGURE_BYTES = 195_000
MARKER = re.compile(r"^<!-- table: (?P<name>[\w-]+)(?P<compact> compact)? -->$")
FIGURE_LINK = re.compile(r"\((?P<link>(?:[\w.-]+/)*figures/(?P<source>[a-z0-9]+)_(?P<name>[\w-]+\.png))\)")
TITLES = {"mpjpe": "MPJPE", "pa_mpjpe": "PA-MPJPE", "n_mpjpe": "N-MPJPE", "pck3d": "PCK", "pck3d_scaled": "PCK (GS)",
          "auc3d": "AUC", "auc3d_scaled": "AUC (GS)"}
ORIENTATION = "orientation"


def title(metric: str) -> str:
    """``"wild/pck3d_scaled"`` -> ``"wild PCK (GS)"``."""
    domain, _, name = metric.rpartition("/")
    return f"{domain} {TITLES.get(name, name)}".strip()


class NoSummary(ConfigError):
    """A table's runs are not in the results folder (yet): the table is kept as it is."""


def read_rows(path: Path) -> list[dict[str, str]]:
    if not path.is_file():
        raise NoSummary(f"no summary at {path}; run the ablation or `make compare` with this results folder first")
    with path.open(newline="") as handle:
        return list(csv.DictReader(handle))


def values(rows: list[dict[str, str]], key: str) -> list[float]:
    return [float(r[key]) for r in rows if r.get(key) not in (None, "")]


def domains_of(rows: list[dict[str, str]]) -> list[str]:
    return sorted({k.split("/")[0] for k in rows[0] if k.endswith("/mpjpe")}) if rows else []


def run_floors(results: Path, run_dir: Path) -> dict[str, dict[str, float]]:
    config = run_dir / "config.yaml"
    if not config.is_file():
        raise ConfigError(f"no config.yaml in {run_dir}; the floors are computed from a run's data config")
    return data_floors(yaml.safe_load(config.read_text())["data"], results / "floors") or {}


def row(cells: list[str]) -> str:
    return "| " + " | ".join(cells) + " |"


def mean_of(numbers: list[float]) -> float | None:
    return statistics.fmean(numbers) if numbers else None


def shown_floors(floors: dict, compact: bool) -> list[tuple[str, dict[str, float]]]:
    """Both floors' rows, or only the orientation floor's in a compact table."""
    return [(name, floor) for name, floor in floor_rows(floors) if not compact or floor is floors.get(ORIENTATION)]


# -- tables ---------------------------------------------------------------------------------
def ablation_table(results: Path, axis: str, compact: bool = False) -> list[str]:
    rows = read_rows(results / f"ablation-{axis}" / "summary.csv")
    reference = references().get(axis, {})
    paper, paper_metric = reference.get("values", {}), reference.get("metric", "mpjpe")
    floors = run_floors(results, results / "runs" / rows[0]["run"])
    metrics = ["mpjpe", "pa_mpjpe"] + [f"{d}/mpjpe" for d in domains_of(rows)]
    if paper_metric not in metrics and any(r.get(paper_metric) for r in rows):
        metrics.append(paper_metric)
    header = ["variant"] + ([] if compact else ["seeds"]) + [title(m) for m in metrics] + ["x floor"]
    header += ([] if compact else ["fit s"]) + ([f"paper {title(paper_metric)}"] if paper else [])
    lines = [row(header), "|" + "---|" * len(header)]
    for variant in dict.fromkeys(r["variant"] for r in rows):
        group = [r for r in rows if r["variant"] == variant]
        cells = [f"`{variant}`"] + ([] if compact else [str(len(group))])
        cells += [mean_std(values(group, m)) for m in metrics]
        cells.append(versus_floor(mean_of(values(group, "mpjpe")), floors))
        if not compact:
            fits = values(group, "fit_seconds")
            cells.append(f"{statistics.fmean(fits):.0f}" if fits else "-")
        if paper:
            cells.append(f"{paper[variant]}" if variant in paper else "-")
        lines.append(row(cells))
    for name, floor in shown_floors(floors, compact):
        cells = [f"*{name}*"] + ([] if compact else ["-"]) + [f"{floor[m]:.1f}" if m in floor else "-" for m in metrics]
        cells += [versus_floor(floor.get("mpjpe"), floors)] + ([] if compact else ["-"]) + (["-"] if paper else [])
        lines.append(row(cells))
    return lines


def compare_table(results: Path, compact: bool = False) -> list[str]:
    rows = read_rows(results / "compare" / "summary.csv")
    paper = references().get("compare", {}).get("values", {})
    floors = run_floors(results, results / "compare" / "runs" / rows[0]["run"])
    domains = domains_of(rows)
    metrics = ["mpjpe", "pa_mpjpe"] + [f"{d}/mpjpe" for d in domains]
    header = (["method", "seeds", "MPJPE", "PA-MPJPE"] + [f"{d} MPJPE" for d in domains]
              + [f"{d} x floor" for d in domains] + ["train s (+ prerequisites)", "paper MPJPE"])
    lines = [row(header), "|" + "---|" * len(header)]
    for method in dict.fromkeys(r["method"] for r in rows):
        group = [r for r in rows if r["method"] == method]
        cells = [f"{method} (`{group[0]['variant'] or 'default'}`)", str(len(group))]
        cells += [mean_std(values(group, m)) for m in metrics]
        cells += [versus_floor(mean_of(values(group, f"{d}/mpjpe")), floors, f"{d}/") for d in domains]
        fit, before = mean_of(values(group, "fit_seconds")), mean_of(values(group, "prerequisite_seconds"))
        cost = f"{fit:.0f}" if fit is not None else "-"
        if before:
            cost += f" (+ {before:.0f})"
        cells += [cost, f"{paper[method]}" if method in paper else "-"]
        lines.append(row(cells))
    for name, floor in shown_floors(floors, compact):
        cells = [f"*{name}*", "-"] + [f"{floor[m]:.1f}" if m in floor else "-" for m in metrics]
        cells += [versus_floor(floor.get(f"{d}/mpjpe"), floors, f"{d}/") for d in domains] + ["-", "-"]
        lines.append(row(cells))
    return lines


def sweeps_by_experiment() -> dict[str, str]:
    """``{experiment: axis}`` of every ablation sweep file that names one experiment."""
    found = {}
    for path in sorted((REPO_ROOT / "ablations").glob("*.yaml")):
        experiment = (yaml.safe_load(path.read_text()) or {}).get("parameters", {}).get("experiment", {})
        if isinstance(experiment, dict) and "value" in experiment:
            found.setdefault(str(experiment["value"]), path.stem)
    return found


def headline_cell(results: Path, experiment: str, axis: str | None) -> str:
    """``experiment``'s default variant in the summary of ablation ``axis`` (the one sweeping it)."""
    variant = read_experiment(experiment).get("variant")
    if axis is None or variant is None:
        raise ConfigError(f"experiment '{experiment}' has no ablation sweep or default variant to take a headline from")
    rows = read_rows(results / f"ablation-{axis}" / "summary.csv")
    mpjpe = values([r for r in rows if r["variant"] == variant], "mpjpe")
    if not mpjpe:
        return f"`{variant}`: not run"
    floors = run_floors(results, results / "runs" / rows[0]["run"])
    return f"`{variant}`: {mean_std(mpjpe)} ({versus_floor(statistics.fmean(mpjpe), floors)} floor)"


def fill_headlines(results: Path, table: list[str]) -> list[str]:
    """The hand-written table with its ``ours...`` column rewritten; a row names its experiment
    as the first backticked word of the column titled ``module``."""
    header = [c.strip() for c in table[0].strip().strip("|").split("|")]
    ours = next((i for i, c in enumerate(header) if c.startswith("ours")), None)
    module = header.index("module") if "module" in header else None
    if ours is None or module is None:
        raise ConfigError("a `headlines` table needs columns titled 'module' and 'ours ...'")
    out, axes = table[:2], sweeps_by_experiment()
    for line in table[2:]:
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        name = re.search(r"`([\w-]+)`", cells[module])
        if name:
            try:
                cells[ours] = headline_cell(results, name.group(1), axes.get(name.group(1)))
            except NoSummary:  # that ablation has not run here: the row keeps its value
                pass
        out.append(row(cells))
    return out


def generated(results: Path, name: str, compact: bool, table: list[str]) -> list[str]:
    if name == "compare":
        return compare_table(results, compact)
    if name == "headlines":
        return fill_headlines(results, table)
    if name.startswith("ablation-"):
        return ablation_table(results, name[len("ablation-"):], compact)
    raise ConfigError(f"unknown table '{name}'; expected ablation-<axis>, compare or headlines")


def fill_tables(text: str, results: Path, kept: list[str] | None = None) -> str:
    """``text`` with every marked table rebuilt; a table whose summary the results folder lacks
    stays as it is, and its marker and reason are appended to ``kept``."""
    lines, out, i = text.split("\n"), [], 0
    while i < len(lines):
        out.append(lines[i])
        marker = MARKER.match(lines[i].strip())
        i += 1
        if marker:
            start = i
            while i < len(lines) and lines[i].startswith("|"):
                i += 1
            try:
                out += generated(results, marker["name"], bool(marker["compact"]), lines[start:i])
            except NoSummary as missing:
                out += lines[start:i]
                if kept is not None:
                    kept.append(f"{marker['name']}: {missing}")
    return "\n".join(out)


# -- figures --------------------------------------------------------------------------------
def figure_source(results: Path, source: str, name: str) -> Path | None:
    folder = results / ("compare" if source == "compare" else f"ablation-{source}")
    if (folder / name).is_file():
        return folder / name
    summary = folder / "summary.csv"
    for r in (read_rows(summary) if summary.is_file() else []):
        if (results / "runs" / r["run"] / name).is_file():
            return results / "runs" / r["run"] / name
    return None


def shrink(path: Path, limit: int = FIGURE_BYTES) -> None:
    """Palette (128 colours), then 15% smaller steps, until the PNG is at most ``limit`` bytes."""
    from PIL import Image

    original, scale = Image.open(path).convert("RGB"), 1.0
    while path.stat().st_size > limit:
        image = original if scale == 1.0 else original.resize(
            (int(original.width * scale), int(original.height * scale)), Image.LANCZOS)
        image.quantize(colors=128).save(path, optimize=True)
        scale *= 0.85


def copy_figures(path: Path, text: str, results: Path) -> list[Path]:
    """Copy every figure the markdown file ``path`` links that the results folder has (to where
    the link points); returns the files written."""
    copied = []
    for link, source, name in dict.fromkeys(m.group("link", "source", "name") for m in FIGURE_LINK.finditer(text)):
        found = figure_source(results, source, name)
        if found is not None:
            target = (path.parent / link).resolve()
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(found, target)
            if target.stat().st_size > FIGURE_BYTES:
                shrink(target)
            copied.append(target)
    return copied


def main(argv: list[str] | None = None) -> int:
    parser = OneLineParser(prog="python -m pose3d.report", description=__doc__.splitlines()[0])
    parser.add_argument("files", nargs="*", type=Path, help="markdown files (default: README.md, docs/results/*.md)")
    parser.add_argument("--results", type=Path, default=REPO_ROOT / "results", help="the results folder (default: results)")
    parser.add_argument("--check", action="store_true", help="write nothing; exit 1 when a table would change")
    args = parser.parse_args(argv)
    files = args.files or [REPO_ROOT / "README.md", *sorted((REPO_ROOT / "docs" / "results").glob("*.md"))]
    try:
        if not args.results.is_dir():
            raise ConfigError(f"results folder {args.results} does not exist; expected the results_dir of the runs")
        for path in files:
            if not path.is_file():
                raise ConfigError(f"no markdown file {path}; expected files holding `<!-- table: NAME -->` lines")
        kept: dict[Path, list[str]] = {path: [] for path in files}
        texts = {path: path.read_text() for path in files}
        texts = {path: (text, fill_tables(text, args.results, kept[path])) for path, text in texts.items()}
    except ConfigError as error:  # every table is built before any file is written
        print(f"error: {error}", file=sys.stderr)
        return EXIT_BAD_INPUT
    stale = [path for path, (old, new) in texts.items() if new != old]
    if args.check:
        if stale:
            print("tables out of date: " + ", ".join(str(p) for p in stale))
        return 1 if stale else 0
    for path, (old, new) in texts.items():
        if new != old:
            write_atomic(path, new)
        copied = copy_figures(path, new, args.results)
        print(f"{path}: tables {'rewritten' if new != old else 'unchanged'}; figures copied: {len(copied)}")
        for reason in kept[path]:
            print(f"  kept as it was: {reason}")
    return 0

if __name__ == "__main__":
    sys.exit(main())
