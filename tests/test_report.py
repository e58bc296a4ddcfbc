"""``python -m pose3d.report``: the docs' tables written from a results folder."""
from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
import yaml

from harness import report
from harness.floors import floors_file

DATA = {"name": "synthetic", "test_size": 8}
FLOORS = {"mean_pose": {"mpjpe": 300.0, "pa_mpjpe": 200.0, "studio/mpjpe": 310.0, "wild/mpjpe": 290.0},
          "orientation": {"mpjpe": 200.0, "pa_mpjpe": 130.0, "studio/mpjpe": 210.0, "wild/mpjpe": 190.0}}


def write_csv(path: Path, rows: list[dict]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)


def write_run(results: Path, folder: Path, name: str) -> None:
    (folder / name).mkdir(parents=True, exist_ok=True)
    (folder / name / "config.yaml").write_text(yaml.safe_dump({"data": DATA}))
    floors = floors_file(DATA, results / "floors")
    floors.parent.mkdir(parents=True, exist_ok=True)
    floors.write_text(json.dumps(FLOORS))


@pytest.fixture
def results(tmp_path: Path) -> Path:
    """Two fusion variants over two seeds, and a two-method comparison over studio and wild."""
    results = tmp_path / "results"
    rows = []
    for variant, mpjpes in (("image_only", (210.0, 230.0)), ("trainable", (150.0, 170.0))):
        for seed, mpjpe in enumerate(mpjpes):
            run = f"tekin_fusion-{variant}-quick-s{seed}"
            write_run(results, results / "runs", run)
            rows.append({"variant": variant, "seed": seed, "run": run, "fit_seconds": 100 + seed * 20,
                         "mpjpe": mpjpe, "pa_mpjpe": mpjpe / 2})
    write_csv(results / "ablation-fusion" / "summary.csv", rows)
    write_run(results, results / "compare" / "runs", "baseline-default-quick-s0")
    write_csv(results / "compare" / "summary.csv", [
        {"method": "baseline", "variant": "default", "seed": 0, "run": "baseline-default-quick-s0", "fit_seconds": 300,
         "prerequisite_seconds": 0, "mpjpe": 250.0, "pa_mpjpe": 150.0, "studio/mpjpe": 189.0, "wild/mpjpe": 311.0},
        {"method": "tekin_fusion", "variant": "trainable", "seed": 0, "run": "tekin", "fit_seconds": 200,
         "prerequisite_seconds": 60, "mpjpe": 240.0, "pa_mpjpe": 140.0, "studio/mpjpe": 168.0, "wild/mpjpe": 285.0}])
    return results


def test_ablation_table_means_stds_and_floors(results):
    lines = report.ablation_table(results, "fusion")
    assert lines[0] == "| variant | seeds | MPJPE | PA-MPJPE | x floor | fit s | paper MPJPE |"
    # image_only: mean 220, sample std 14.1; 220 / 200 = 1.10x; fit (100 + 120) / 2; Table 5's 124.13
    assert lines[2] == "| `image_only` | 2 | 220.0 +/- 14.1 | 110.0 +/- 7.1 | 1.10x | 110 | 124.13 |"
    assert lines[3].startswith("| `trainable` | 2 | 160.0 +/- 14.1 | 80.0 +/- 7.1 | 0.80x |")
    assert lines[4] == "| *floor: training mean pose* | - | 300.0 | 200.0 | 1.50x | - | - |"
    assert lines[5] == "| *floor: mean pose, true orientation* | - | 200.0 | 130.0 | 1.00x | - | - |"


def test_compact_table_keeps_the_orientation_floor_only(results):
    lines = report.ablation_table(results, "fusion", compact=True)
    assert lines[0] == "| variant | MPJPE | PA-MPJPE | x floor | paper MPJPE |"
    assert [line.split(" | ")[0] for line in lines[2:]] == ["| `image_only`", "| `trainable`",
                                                           "| *floor: mean pose, true orientation*"]


def test_compare_table_reads_each_domain_against_its_own_floor(results):
    lines = report.compare_table(results)
    assert "studio x floor" in lines[0] and "wild x floor" in lines[0]
    # studio 189 / 210 = 0.90x, wild 311 / 190 = 1.64x; Tekin's prerequisites in brackets
    assert "| 189.0 | 311.0 | 0.90x | 1.64x | 300 | - |" in lines[2]
    assert lines[3].endswith("| 168.0 | 285.0 | 0.80x | 1.50x | 200 (+ 60) | 70.81 |")


def test_fill_rewrites_only_the_marked_table_and_is_idempotent(results):
    text = ("Prose before.\n\n<!-- table: ablation-fusion compact -->\n| old | table |\n|---|---|\n| x | 1 |\n\n"
            "Prose after names 160.0.\n\n| untouched | table |\n")
    filled = report.fill_tables(text, results)
    assert filled.startswith("Prose before.\n\n<!-- table: ablation-fusion compact -->\n| variant | MPJPE |")
    assert "| old | table |" not in filled
    assert filled.endswith("\n\nProse after names 160.0.\n\n| untouched | table |\n")
    assert report.fill_tables(filled, results) == filled


def test_headlines_fill_the_ours_column_from_the_experiments_default_variant(results):
    table = ["| method | module | ours (MPJPE) | paper |", "|---|---|---|---|",
             "| Tekin 2017 | [`tekin_fusion`](lightning_modules/tekin_fusion.py) | old | 70.81 |"]
    lines = report.fill_headlines(results, table)
    assert lines[2] == ("| Tekin 2017 | [`tekin_fusion`](lightning_modules/tekin_fusion.py) | "
                        "`trainable`: 160.0 +/- 14.1 (0.80x floor) | 70.81 |")
    # a method whose ablation has not run in this folder keeps its value
    park = "| Park 2016 | [`park_multiroot`](lightning_modules/park_multiroot.py) | 214.3 | 117.34 |"
    assert report.fill_headlines(results, table[:2] + [park])[2] == park


def test_figures_are_copied_where_the_link_points_and_shrunk(results, tmp_path):
    from PIL import Image

    noise = Image.effect_noise((400, 400), 100).convert("RGB")
    noise.save(results / "ablation-fusion" / "summary.png")
    page = tmp_path.resolve() / "docs" / "results" / "page.md"
    page.parent.mkdir(parents=True)
    text = "![a](../figures/fusion_summary.png) ![b](../figures/fusion_absent.png) ![c](../figures/other.png)"
    copied = report.copy_figures(page, text, results)
    assert copied == [tmp_path.resolve() / "docs" / "figures" / "fusion_summary.png"]
    small = 20_000
    report.shrink(copied[0], limit=small)
    assert copied[0].stat().st_size <= small and Image.open(copied[0]).width < 400


def test_main_check_then_write(results, tmp_path, capsys):
    page = tmp_path / "page.md"
    page.write_text("<!-- table: ablation-fusion -->\n| stale |\n")
    assert report.main(["--results", str(results), "--check", str(page)]) == 1
    assert page.read_text() == "<!-- table: ablation-fusion -->\n| stale |\n"  # --check writes nothing
    assert report.main(["--results", str(results), str(page)]) == 0
    assert report.main(["--results", str(results), "--check", str(page)]) == 0


def test_a_table_without_runs_is_kept_and_named(results, tmp_path, capsys):
    page = tmp_path / "page.md"
    page.write_text("<!-- table: ablation-ppca -->\n| old |\n\n<!-- table: ablation-fusion -->\n| stale |\n")
    assert report.main(["--results", str(results), str(page)]) == 0
    text = page.read_text()
    assert text.startswith("<!-- table: ablation-ppca -->\n| old |\n") and "| stale |" not in text
    assert "kept as it was: ablation-ppca: no summary at" in capsys.readouterr().out


def test_bad_input_is_one_line_and_exit_2(results, tmp_path, capsys):
    page = tmp_path / "page.md"
    page.write_text("<!-- table: leaderboard -->\n| x |\n")
    assert report.main(["--results", str(results), str(page)]) == report.EXIT_BAD_INPUT
    err = capsys.readouterr().err
    assert "unknown table 'leaderboard'" in err and err.count("\n") == 1
    assert page.read_text() == "<!-- table: leaderboard -->\n| x |\n"
    assert report.main(["--results", str(tmp_path / "absent"), str(page)]) == report.EXIT_BAD_INPUT
    assert "does not exist" in capsys.readouterr().err
