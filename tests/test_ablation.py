"""The ablation runner: sweep files parse and expand, runs resume, summaries are right."""
from __future__ import annotations

import csv
import json
import math
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from harness import ablation, sweep_engine
from harness.ablation import Sweep, plan_runs
from pose3d.config import REPO_ROOT, available_experiments, experiment_variants

SWEEP_FILES = sorted(p for p in (REPO_ROOT / "ablations").glob("*.yaml") if p.name != "references.yaml")


@pytest.mark.parametrize("path", SWEEP_FILES, ids=lambda p: p.stem)
def test_sweep_file_is_a_wandb_grid_over_known_variants(path):
    config = yaml.safe_load(path.read_text())
    assert config["method"] == "grid" and config["metric"] == {"name": "val/mpjpe", "goal": "minimize"}
    assert config["command"][-1] == "${args_no_hyphens}" and "pose3d.train" in config["command"]
    experiments = config["parameters"]["experiment"]
    for experiment in experiments.get("values", [experiments.get("value")]):  # compare.yaml: several, default variants
        assert experiment in available_experiments()
        if "variant" in config["parameters"]:
            assert set(config["parameters"]["variant"]["values"]) <= set(experiment_variants(experiment))


def test_fusion_grid_expands_to_variants_times_seeds(tmp_path):
    sweep = Sweep.read(REPO_ROOT / "ablations" / "fusion.yaml")
    points = sweep.grid(preset="smoke", seeds=2)
    variants = ["image_only", "cm_only", "early", "late", "fixed_b2", "trainable"]
    assert len(points) == 12
    assert points[0] == {"experiment": "tekin_fusion", "preset": "smoke", "seed": 0, "variant": "image_only"}
    assert [p["variant"] for p in points[:6]] == variants and {p["seed"] for p in points[6:]} == {1}
    runs = plan_runs(points, [f"results_dir={tmp_path}"])
    assert runs[0].run_dir == tmp_path / "runs" / "tekin_fusion-image_only-smoke-s0"
    assert sweep.grid()[0]["preset"] == "paper" and len(sweep.grid()) == 18  # the file itself: 3 seeds


def engine_commands(config: dict) -> list[str]:
    """What a W&B sweep runs for ``config``: the engine's runs, each expanded as `wandb agent`
    expands the file's command (written out here, not taken from the runner)."""
    import sweeps

    runs = [r for r in sweeps.next_runs(config, [], n=10_000) if r is not None]
    out = []
    for run in runs:
        command = []
        for chunk in config["command"]:
            if chunk == "${env}":
                command.append("/usr/bin/env")
            elif chunk == "${interpreter}":
                command.append("python")
            elif chunk == "${program}":
                command.append(config["program"])
            elif chunk == "${args_no_hyphens}":
                command += [f"{name}={spec['value']}" for name, spec in run.config.items()]
            else:
                command.append(chunk)
        out.append(shlex.join(command))
    return out


@pytest.mark.parametrize("path", SWEEP_FILES, ids=lambda p: p.stem)
def test_every_sweep_file_passes_the_engines_schema(path):
    import sweeps

    config = yaml.safe_load(path.read_text())
    assert sweeps.schema_violations_from_proposed_config(config) == []
    assert sweep_engine.violations(config) == []


@pytest.mark.parametrize("path", SWEEP_FILES, ids=lambda p: p.stem)
@pytest.mark.parametrize("options", [[], ["--preset", "smoke", "--seeds", "2"]], ids=["file", "smoke-2-seeds"])
def test_planned_commands_are_the_engines_runs_in_its_order(path, options, capsys):
    config = yaml.safe_load(path.read_text())
    if options:
        config["parameters"]["preset"] = {"value": "smoke"}
        config["parameters"]["seed"] = {"values": [0, 1]}
    assert ablation.main(["plan", str(path), *options]) == 0
    printed = capsys.readouterr().out.strip().splitlines()
    assert printed == engine_commands(config)
    if not options:  # the file's own grid, e.g. 3 seeds x the variants, seed slowest (the engine sorts names)
        grid = [spec["values"] for spec in config["parameters"].values() if "values" in spec]
        assert len(printed) == math.prod(len(values) for values in grid)
        assert printed[0].startswith("/usr/bin/env python -m pose3d.train ") and " experiment=" in printed[0]
        if "variant" in config["parameters"]:
            seeds, variants = (config["parameters"][k]["values"] for k in ("seed", "variant"))
            assert printed[0].endswith(f"preset=paper seed={seeds[0]} variant={variants[0]}")


def test_plan_appends_the_extra_overrides(capsys):
    assert ablation.main(["plan", str(REPO_ROOT / "ablations" / "ppca.yaml"), "--seeds", "1", "--", "results_dir=/x"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 4 and all(line.endswith("seed=0 variant=" + line.split("variant=")[1]) for line in lines)
    assert all(line.split()[-1] == "results_dir=/x" for line in lines)


@pytest.mark.parametrize("change, key", [
    ({"method": "gird"}, "method: 'gird' is not one of"),
    ({"metric": {"name": "val/mpjpe", "goal": "lowest"}}, "metric.goal: 'lowest' is not one of ['minimize', 'maximize']"),
    ({"command": "python -m pose3d.train"}, "command: 'python -m pose3d.train' is not of type 'array'"),
    ({"early_stop": True}, "('early_stop' was unexpected)"),
    ({"parameters": {"experiment": {"value": "baseline"}, "seed": {"valuez": [0]}}}, "parameters.seed: {'valuez': [0]}"),
    ({"parameters": {"experiment": {"value": "baseline"}, "seed": {"min": 3, "max": 1}}}, "seed: min 3 is not less than max 1"),
])
@pytest.mark.parametrize("action", ["run", "plan"])
def test_a_schema_violation_is_one_line_naming_the_key_and_exit_2(change, key, action, tmp_path, capsys, monkeypatch):
    config = {**yaml.safe_load((REPO_ROOT / "ablations" / "fusion.yaml").read_text()), **change}
    path = tmp_path / "broken.yaml"
    path.write_text(yaml.safe_dump(config))
    run_instead(monkeypatch, lambda *a, **k: pytest.fail("nothing may run"))
    assert ablation.main([action, str(path), "--", f"results_dir={tmp_path}"]) == 2
    captured = capsys.readouterr()
    err = captured.err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"error: {path} is not a valid W&B sweep: ") and key in err[0], err
    assert captured.out == ""


def test_bad_sweep_files_are_one_line_errors(tmp_path, capsys):
    assert ablation.main(["run", str(tmp_path / "missing.yaml")]) == 2
    assert "does not exist; expected one of ablations/: compare.yaml, fusion.yaml" in capsys.readouterr().err
    random = tmp_path / "random.yaml"
    random.write_text("method: random\nparameters: {seed: {values: [0]}}\n")
    assert ablation.main(["run", str(random)]) == 2
    assert "only 'grid'" in capsys.readouterr().err


def run_instead(monkeypatch, fake) -> None:
    """Every child process the runner starts (:meth:`RunGroup.call`) is ``fake(command, **kwargs)`` instead."""
    monkeypatch.setattr(ablation.RunGroup, "call", lambda group, command, **kwargs: fake(command, **kwargs))


def fake_train(calls: list[list[str]]):
    """Stands in for `python -m pose3d.train`: writes metrics.json with an MPJPE per variant/seed."""

    def call(command, **kwargs):
        calls.append(command)
        assert command[:4] == ["/usr/bin/env", "python", "-m", "pose3d.train"]  # the agent's command
        assert kwargs["env"]["PATH"].split(":")[0] == str(Path(sys.executable).parent)  # `python` is this venv's
        args = dict(a.split("=", 1) for a in command[4:])
        run_dir = Path(args["results_dir"]) / "runs" / f"{args['experiment']}-{args['variant']}-{args['preset']}-s{args['seed']}"
        run_dir.mkdir(parents=True, exist_ok=True)
        mpjpe = {"early": 100.0, "late": 90.0}[args["variant"]] + 10 * int(args["seed"])
        (run_dir / "metrics.json").write_text(json.dumps({"test/mpjpe": mpjpe, "test/pck3d": 50.0, "fit_seconds": 3.0,
                                                             "machine": "a test CPU, 2 cores"}))
        return 0

    return call


def test_runner_skips_finished_runs_resumes_interrupted_ones_and_summarises(tmp_path, monkeypatch, capsys):
    sweep_file = tmp_path / "fusion.yaml"
    sweep_file.write_text(yaml.safe_dump({
        "method": "grid", "command": ["${env}", "python", "-m", "pose3d.train", "${args_no_hyphens}"],
        "parameters": {"experiment": {"value": "tekin_fusion"}, "seed": {"values": [0]},
                       "variant": {"values": ["early", "late"]}},
    }))
    finished = tmp_path / "runs" / "tekin_fusion-early-smoke-s0"
    finished.mkdir(parents=True)
    (finished / "metrics.json").write_text(json.dumps({"test/mpjpe": 100.0, "test/pck3d": 50.0, "fit_seconds": 3.0}))
    interrupted = tmp_path / "runs" / "tekin_fusion-late-smoke-s1" / "checkpoints"
    interrupted.mkdir(parents=True)
    (interrupted / "last.ckpt").write_text("")
    calls: list[list[str]] = []
    run_instead(monkeypatch, fake_train(calls))

    args = ["run", str(sweep_file), "--preset", "smoke", "--seeds", "2", "--jobs", "1", "--", f"results_dir={tmp_path}"]
    assert ablation.main(args) == 0
    ran = sorted(" ".join(c[4:]) for c in calls)
    assert len(ran) == 3  # early-s0 was done already
    assert any("variant=late" in c and "seed=1" in c and "ckpt_path=last" in c for c in ran)

    rows = list(csv.DictReader(open(tmp_path / "ablation-fusion" / "summary.csv")))
    assert [(r["variant"], r["seed"], float(r["mpjpe"])) for r in rows] == [
        ("early", "0", 100.0), ("late", "0", 90.0), ("early", "1", 110.0), ("late", "1", 100.0)]
    table = (tmp_path / "ablation-fusion" / "summary.md").read_text()
    assert "| early | 2 | 105.0 +/- 7.1 |" in table  # mean and sample std of 100, 110
    assert "| 76.41 |" in table and "| 74.12 |" in table  # the paper's Table 5 beside ours
    assert "on a CPU not recorded; a test CPU, 2 cores." in table  # the CPUs the fit seconds were measured on
    assert (tmp_path / "ablation-fusion" / "summary.png").is_file()

    calls.clear()
    assert ablation.main(args) == 0 and calls == []  # everything done: nothing reruns
    assert "4 of 4 runs already done" in capsys.readouterr().out


def two_variant_sweep(tmp_path) -> Path:
    sweep_file = tmp_path / "fusion.yaml"
    sweep_file.write_text(yaml.safe_dump({
        "method": "grid", "command": ["${env}", "python", "-m", "pose3d.train", "${args_no_hyphens}"],
        "parameters": {"experiment": {"value": "tekin_fusion"}, "seed": {"values": [0]},
                       "variant": {"values": ["early", "late"]}},
    }))
    return sweep_file


def test_parallel_cpu_runs_build_the_prerequisites_first_then_run_with_a_share_of_the_cores(tmp_path, monkeypatch):
    calls: list[list[str]] = []
    train = fake_train(calls)
    prepared: list[list[list[str]]] = []

    def call(command, **kwargs):
        if command[1:3] == ["-m", "harness.prerequisites"]:
            assert not calls  # before any run starts
            prepared.append(json.loads(command[3]))
            return 0
        return train(command, **kwargs)

    run_instead(monkeypatch, call)
    monkeypatch.setattr(ablation.os, "sched_getaffinity", lambda pid: {0, 1, 2, 3}, raising=False)
    args = ["run", str(two_variant_sweep(tmp_path)), "--preset", "smoke", "--jobs", "2", "--", f"results_dir={tmp_path}"]
    assert ablation.main(args) == 0
    [runs] = prepared
    assert sorted(next(a for a in r if a.startswith("variant=")) for r in runs) == ["variant=early", "variant=late"]
    assert not any(a.startswith("threads=") for r in runs for a in r)  # prerequisites get every core
    assert len(calls) == 2 and all(c[-1] == "threads=2" for c in calls)  # 4 cores / 2 runs


def test_parallel_runs_start_longest_first(tmp_path, monkeypatch):
    points = Sweep.read(REPO_ROOT / "ablations" / "fusion.yaml").grid(preset="smoke", seeds=1)
    runs = plan_runs(points, [f"results_dir={tmp_path}"])
    assert {r.params["variant"]: r.frozen_networks for r in runs} == {
        "image_only": 0, "cm_only": 1, "early": 1, "late": 1, "fixed_b2": 1, "trainable": 1}
    order = [r.params["variant"] for r in ablation.longest_first(runs)]
    assert order == ["cm_only", "early", "late", "fixed_b2", "trainable", "image_only"]  # grid order among equals
    runs[0].total_steps, runs[1].total_steps = 10 * (runs[1].total_steps or 1), 1  # image_only: 10x the steps
    assert [r.params["variant"] for r in ablation.longest_first(runs)][-2:] == ["cm_only", "image_only"]

    started: list[str] = []
    monkeypatch.setattr(ablation, "build_prerequisites", lambda todo, log, group: True)
    run_instead(monkeypatch, lambda command, **kwargs: started.append(next(a for a in command if a.startswith("variant="))) or 0)
    ablation.execute(runs, [None], tmp_path / "logs")  # one slot: grid order
    assert started[0] == "variant=image_only"
    started.clear()
    ablation.execute(runs, [None, None], tmp_path / "logs")  # taken last (the other slot may start after it)
    assert started.index("variant=image_only") >= len(runs) - 2


def test_a_failed_prerequisite_build_runs_nothing_and_fails(tmp_path, monkeypatch, capsys):
    calls: list[list[str]] = []
    run_instead(monkeypatch, lambda command, **kwargs: calls.append(command) or 1)
    args = ["run", str(two_variant_sweep(tmp_path)), "--preset", "smoke", "--jobs", "2", "--", f"results_dir={tmp_path}"]
    assert ablation.main(args) == 1
    assert len(calls) == 1 and "prerequisites FAILED (exit 1)" in capsys.readouterr().out


@pytest.mark.parametrize("devices, jobs, overrides, cores, cuda, expected", [
    (["0", "1"], "auto", [], 16, True, (["0", "1"], [])),  # one run per GPU
    ([], "auto", [], 2, False, ([None, None], ["threads=1"])),  # the 2-core CPU: two 1-thread runs
    ([], "auto", [], 2, True, ([None], [])),  # a GPU visible: one run at a time, as before
    ([], "auto", [], 1, False, ([None], [])),
    ([], "3", [], 12, False, ([None] * 3, ["threads=4"])),
    ([], "2", ["threads=1"], 8, False, ([None, None], [])),  # the user's threads stand
])
def test_local_slots(devices, jobs, overrides, cores, cuda, expected, monkeypatch):
    import torch

    monkeypatch.setattr(ablation.os, "sched_getaffinity", lambda pid: set(range(cores)), raising=False)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: cuda)
    assert ablation.local_slots(devices, jobs, overrides) == expected


@pytest.mark.parametrize("jobs", ["0", "two"])
def test_bad_jobs_is_a_one_line_error(jobs, tmp_path, capsys):
    args = ["run", str(two_variant_sweep(tmp_path)), "--preset", "smoke", "--jobs", jobs, "--", f"results_dir={tmp_path}"]
    assert ablation.main(args) == 2
    assert f"--jobs {jobs}: expected a positive number of runs at a time, or auto" in capsys.readouterr().err


def test_sweep_without_login_says_so(monkeypatch, capsys):
    monkeypatch.setenv("WANDB_MODE", "disabled")
    assert ablation.main(["sweep", str(REPO_ROOT / "ablations" / "fusion.yaml")]) == 1
    assert "W&B is not logged in" in capsys.readouterr().err


def test_cli_entry_point_runs():
    result = subprocess.run([sys.executable, "-m", "pose3d.ablation", "--help"], capture_output=True, text=True, cwd=REPO_ROOT)
    assert result.returncode == 0 and "sweep_file" in result.stdout


def test_summary_works_on_partial_results_and_names_the_missing(tmp_path, capsys):
    path = tmp_path / "fusion.yaml"
    path.write_text(yaml.safe_dump({
        "method": "grid", "command": ["${env}", "python", "-m", "pose3d.train", "${args_no_hyphens}"],
        "parameters": {"experiment": {"value": "tekin_fusion"}, "seed": {"values": [0]},
                       "variant": {"values": ["early", "late", "trainable"]}}}))
    runs = tmp_path / "runs"
    (runs / "tekin_fusion-early-smoke-s0").mkdir(parents=True)
    (runs / "tekin_fusion-early-smoke-s0" / "metrics.json").write_text(json.dumps({"test/mpjpe": 100.0, "fit_seconds": 1.0}))
    (runs / "tekin_fusion-late-smoke-s0" / "checkpoints").mkdir(parents=True)
    (runs / "tekin_fusion-late-smoke-s0" / "checkpoints" / "last.ckpt").write_text("")  # a task still running
    assert ablation.main(["summary", str(path), "--preset", "smoke", "--", f"results_dir={tmp_path}"]) == 0
    out = capsys.readouterr().out
    assert "| early | 1 | 100.0 |" in out and "1 of 3 runs finished" in out
    assert ("Missing from this table: tekin_fusion-late-smoke-s0 (running or interrupted: has a last.ckpt), "
            "tekin_fusion-trainable-smoke-s0 (not run yet).") in out


def test_summary_adds_the_methods_own_tables(tmp_path, capsys):
    """The runner hands its finished run folders to the swept method's ``summarise_ablation``
    (Park: per-action table beside Table 2 and Figure 4)."""
    path = tmp_path / "multiroot.yaml"
    path.write_text(yaml.safe_dump({
        "method": "grid", "command": ["${env}", "python", "-m", "pose3d.train", "${args_no_hyphens}"],
        "parameters": {"experiment": {"value": "park_multiroot"}, "seed": {"values": [0]},
                       "variant": {"values": ["baseline", "both"]}}}))
    from omegaconf import OmegaConf

    from harness.train import load_config

    for variant, mpjpe in (("baseline", 120.0), ("both", 110.0)):
        run = tmp_path / "runs" / f"park_multiroot-{variant}-smoke-s0"
        run.mkdir(parents=True)
        cfg = load_config(["experiment=park_multiroot", "preset=smoke", f"variant={variant}", "seed=0", f"results_dir={tmp_path}"])
        OmegaConf.save(cfg, run / "config.yaml")
        (run / "metrics.json").write_text(json.dumps({"test/mpjpe": mpjpe, "per_action": {"walking": {"mpjpe": mpjpe}}}))
    assert ablation.main(["summary", str(path), "--preset", "smoke", "--", f"results_dir={tmp_path}"]) == 0
    out_dir = tmp_path / "ablation-multiroot"
    summary = (out_dir / "summary.md").read_text()
    assert "per-action test MPJPE" in summary and "| both | 1 | 110.0 (62.64) | 110.0 |" in summary
    assert "Ordering baseline > both in mean test MPJPE (the paper's): holds" in capsys.readouterr().out
    assert (out_dir / "per_action.md").is_file()
