"""`make compare`: one row per method, the metric, domain and cost columns, the paper's number,
prerequisite seconds counted once, and the runs still missing."""
from __future__ import annotations

import csv
import json

import pytest
import yaml
from omegaconf import OmegaConf

from harness import compare
from harness.ablation import Sweep, plan_runs
from harness.train import load_config


def fake_run(root, experiment, seed, mpjpe, prerequisite=None, per_domain=None):
    cfg = load_config([f"experiment={experiment}", "preset=smoke", f"seed={seed}", f"results_dir={root}",
                       "data.train_domain=mixed", "data.eval_domain=both"])  # the data of compare.yaml
    run_dir = root / "runs" / f"{experiment}-{cfg.variant}-smoke-s{seed}"
    run_dir.mkdir(parents=True)
    if prerequisite is not None:
        cfg.prerequisites = [{"kind": "trained_run", "experiment": "heatmap2d", "into": "model.two_d.checkpoint",
                              "key": "k", "path": str(prerequisite / "checkpoints" / "best.ckpt")}]
    OmegaConf.save(cfg, run_dir / "config.yaml")
    metrics = {"test/mpjpe": mpjpe, "test/pa_mpjpe": mpjpe / 2, "test/pck3d_scaled": 40.0, "fit_seconds": 10.0 * (seed + 1),
               "per_action": {"walking": {"mpjpe": mpjpe}, "sitting": {"mpjpe": mpjpe + 10}}}
    for domain, values in (per_domain or {}).items():
        metrics.update({f"test/{domain}/{key}": value for key, value in values.items()})
    (run_dir / "metrics.json").write_text(json.dumps(metrics))


@pytest.fixture()
def sweep_file(tmp_path):
    path = tmp_path / "compare.yaml"
    config = yaml.safe_load(compare.COMPARE_FILE.read_text())
    config["parameters"]["experiment"]["values"] = ["baseline", "tekin_fusion", "park_multiroot"]
    path.write_text(yaml.safe_dump(config))
    return path


def test_compare_file_lists_every_headline_and_the_references_cover_them():
    sweep = Sweep.read(compare.COMPARE_FILE)
    experiments = sweep.config["parameters"]["experiment"]["values"]
    assert {"baseline", "tekin_fusion", "tome_lifting", "park_multiroot"} <= set(experiments)
    paper = compare.references()["compare"]["values"]
    assert all(e in paper for e in experiments if e != "baseline")  # the baseline is no paper's


def test_summary_rows_columns_and_cost(tmp_path, sweep_file):
    pretraining, heatmap = tmp_path / "runs" / "heatmap2d-smoke-p", tmp_path / "runs" / "heatmap2d-smoke-k"
    for folder, seconds in ((pretraining, 12.0), (heatmap, 30.0)):
        folder.mkdir(parents=True)
        (folder / "metrics.json").write_text(json.dumps({"fit_seconds": seconds}))
    (heatmap / "config.yaml").write_text(yaml.safe_dump({"prerequisites": [  # fine-tuned from the pre-training run
        {"kind": "trained_run", "into": "init_from", "path": str(pretraining / "checkpoints" / "best.ckpt")}]}))
    for seed in (0, 1):
        fake_run(tmp_path, "baseline", seed, 100.0 + 10 * seed)
        fake_run(tmp_path, "tekin_fusion", seed, 90.0, prerequisite=heatmap,
                 per_domain={"wild": {"mpjpe": 150.0 + seed, "pck3d_scaled": 20.0}})
    fake_run(tmp_path, "park_multiroot", 0, 95.0)  # seed 1 not run yet
    sweep = Sweep.read(sweep_file)
    assert compare.own_results_dir(["a=1", "results_dir=/x"]) == ["a=1", "results_dir=/x/compare"]
    assert compare.own_results_dir([]) == ["results_dir=results/compare"]
    runs = plan_runs(sweep.grid("smoke", 2), [f"results_dir={tmp_path}"], str(sweep_file), sweep.config)
    table = compare.summarise(runs, tmp_path / "compare", measure=False)

    lines = table.splitlines()
    header = [c.strip() for c in lines[0].strip("|").split("|")]
    assert header[:4] == ["method", "seeds", "MPJPE", "PA-MPJPE"]
    assert "wild MPJPE" in header and "train s (+ prerequisites)" in header and header[-1] == "paper H36M P1 MPJPE"
    rows = {line.split("|")[1].strip(): [c.strip() for c in line.strip("|").split("|")] for line in lines[2:5]}
    assert set(rows) == {"baseline", "tekin_fusion (trainable)", "park_multiroot (both)"}
    baseline, tekin, park = rows["baseline"], rows["tekin_fusion (trainable)"], rows["park_multiroot (both)"]
    assert baseline[1] == "2" and baseline[2] == "105.0 +/- 7.1" and baseline[-1] == "-"
    assert tekin[header.index("wild MPJPE")] == "150.5 +/- 0.7" and baseline[header.index("wild MPJPE")] == "-"
    assert tekin[header.index("train s (+ prerequisites)")] == "15 (+ 42)"  # the shared 2D chain once, not per seed
    assert tekin[-1] == "70.8" and park[-1] == "117.3" and park[1] == "1"  # Tekin: the general model (Table 1, GM)
    assert "Missing from this table: park_multiroot-both-smoke-s1 (not run yet)." in table

    out = tmp_path / "compare"
    written = list(csv.DictReader(open(out / "summary.csv")))
    assert len(written) == 5 and {"method", "seed", "mpjpe", "wild/mpjpe", "prerequisite_seconds"} <= set(written[0])
    assert (out / "summary.md").read_text().endswith(table + "\n")
    assert (out / "summary.png").is_file() and (out / "per_action.png").is_file()


def test_bad_seeds_is_one_line_and_exit_2(capsys):
    with pytest.raises(SystemExit) as exit_:
        compare.main(["summary", "--seeds", "0"])
    assert exit_.value.code == 2
    assert capsys.readouterr().err.strip() == ("error: argument --seeds: expected an integer >= 1, got '0' "
                                               "(see python -m pose3d.compare --help)")
