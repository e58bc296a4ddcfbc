"""A run's identity is its configuration; bad values and bad files are one line and exit 2."""
from __future__ import annotations

import json
import os

import pytest
import yaml
from omegaconf import OmegaConf

from harness import ablation
from harness.train import load_config, main
from pose3d.config import ConfigError
from tests.test_mpii_lsp import lsp_layout  # noqa: F401  (the tiny LSP layout, a fixture)


def err_line(capsys) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    return err[0]


@pytest.mark.parametrize("override, expected", [
    ("optim.lr=-1", "bad value for optim.lr: -1.0; expected a number > 0"),
    ("data.batch_size=0", "bad value for data.batch_size: 0; expected a number >= 1"),
    ("trainer.max_epochs=-5", "bad value for trainer.max_epochs: -5; expected a number >= 1"),
    ("data.train_size=-1", "bad value for data.train_size: -1; expected a number >= 1"),
    ("trainer.devices=0", "bad value for trainer.devices: 0; expected a count >= 1"),
    ("model.width=[1,2", "bad argument 'model.width=[1,2': its value is not valid YAML"),
    ("variant=nope", "experiments/baseline.yaml defines no variants (none)"),
    ("name=..", "bad value for name: '..'; expected a plain run name"),
    ("name=/elsewhere", "bad value for name: '/elsewhere'; expected a plain run name"),
    ("name=a/b", "expected a plain run name"),
])
def test_bad_values_are_one_line_and_exit_2(override, expected, tmp_path, smoke_args, capsys):
    assert main(["experiment=baseline", *smoke_args, override]) == 2
    assert expected in err_line(capsys)
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").iterdir())


def test_resume_with_other_settings_is_refused_and_extending_keeps_the_old_results(tmp_path, smoke_args, capsys):
    assert main(["experiment=baseline", *smoke_args]) == 0
    run = tmp_path / "runs" / "baseline-default-smoke-s0"
    before = (run / "metrics.json").read_text(), (run / "config.yaml").read_text()
    capsys.readouterr()
    assert main(["experiment=baseline", *smoke_args, "ckpt_path=last", "optim.lr=0.5", "trainer.max_epochs=2"]) == 2
    line = err_line(capsys)
    assert "was run with other settings (optim.lr: 0.001 -> 0.5)" in line and "trainer.max_epochs" not in line
    assert ((run / "metrics.json").read_text(), (run / "config.yaml").read_text()) == before
    assert main(["experiment=baseline", *smoke_args, "ckpt_path=last", "trainer.max_epochs=2"]) == 0
    kept = json.loads(before[0])["global_step"]
    assert (run / f"metrics.step{kept}.json").read_text() == before[0]  # the old results beside the new
    assert (run / f"config.step{kept}.yaml").read_text() == before[1]
    assert json.loads((run / "metrics.json").read_text())["global_step"] == 2 * kept


def test_a_corrupt_or_foreign_checkpoint_names_itself(tmp_path, smoke_args, capsys):
    assert main(["experiment=baseline", *smoke_args]) == 0
    last = tmp_path / "runs" / "baseline-default-smoke-s0" / "checkpoints" / "last.ckpt"
    good = last.read_bytes()
    last.write_bytes(good[: len(good) // 3])
    capsys.readouterr()
    assert main(["experiment=baseline", *smoke_args, "ckpt_path=last"]) == 2
    line = err_line(capsys)
    assert str(last) in line and "unreadable" in line and "kept as it is" in line
    assert last.stat().st_size == len(good) // 3  # nothing deleted for the user
    last.write_bytes(good)
    assert main(["experiment=heatmap2d", *smoke_args, f"ckpt_path={last}", "test_only=true"]) == 2
    assert "is a checkpoint of model 'baseline'; expected one of 'heatmap2d'" in err_line(capsys)
    junk = tmp_path / "junk.ckpt"
    junk.write_bytes(os.urandom(256))
    assert main(["experiment=baseline", *smoke_args, f"ckpt_path={junk}", "test_only=true"]) == 2
    assert "junk.ckpt is unreadable" in err_line(capsys)


def test_a_read_only_results_dir_is_one_line(tmp_path, smoke_args, capsys):
    if os.geteuid() == 0:
        target = "/proc/pose3d-results"  # root may write anywhere else
    else:
        locked = tmp_path / "locked"
        locked.mkdir()
        locked.chmod(0o500)
        target = str(locked)
    args = [a for a in smoke_args if not a.startswith("results_dir=")]
    assert main(["experiment=baseline", *args, f"results_dir={target}"]) == 2
    assert f"cannot write to {target}/runs" in err_line(capsys)


def sweep_file(tmp_path, parameters: dict):
    path = tmp_path / "fusion.yaml"
    path.write_text(yaml.safe_dump({"method": "grid", "command": ["python", "-m", "pose3d.train", "${args_no_hyphens}"],
                                    "parameters": parameters}))
    return path


def test_sweep_files_with_no_values_or_unknown_keys_name_themselves(tmp_path, capsys):
    empty = sweep_file(tmp_path, {"experiment": {"value": "baseline"}, "seed": {"values": []}})
    assert ablation.main(["run", str(empty)]) == 2
    assert f"{empty}: parameter 'seed' has no values ([]); expected a non-empty list" in err_line(capsys)
    unknown = sweep_file(tmp_path, {"experiment": {"value": "baseline"}, "model.nope": {"values": [1]}})
    assert ablation.main(["run", str(unknown), "--", f"results_dir={tmp_path}"]) == 2
    line = err_line(capsys)
    assert line.startswith(f"error: {unknown}: unknown config key 'model.nope'") and "command line" not in line


def test_a_finished_ablation_run_counts_as_done_only_for_its_own_settings(tmp_path, smoke_args, capsys):
    assert main(["experiment=baseline", *smoke_args]) == 0
    path = sweep_file(tmp_path, {"experiment": {"value": "baseline"}, "seed": {"values": [0]}})
    common = ["--preset", "smoke", "--", f"results_dir={tmp_path}", "logger.wandb=false"]
    capsys.readouterr()
    assert ablation.main(["summary", str(path), *common]) == 0  # same settings: done
    assert ablation.main(["run", str(path), *common, "optim.lr=0.1", "data.train_size=16"]) == 2
    line = err_line(capsys)
    assert "baseline-default-smoke-s0 was run with other settings" in line
    assert "data.train_size: 64 -> 16" in line and "optim.lr: 0.001 -> 0.1" in line


def test_summary_marks_missing_and_failed_runs(tmp_path):
    path = sweep_file(tmp_path, {"experiment": {"value": "tekin_fusion"}, "seed": {"values": [0]},
                                 "variant": {"values": ["early", "late"]}})
    sweep = ablation.Sweep.read(path)
    runs = ablation.plan_runs(sweep.grid("smoke"), [f"results_dir={tmp_path}"])
    runs[0].run_dir.mkdir(parents=True)
    runs[0].metrics_file.write_text(json.dumps({"test/mpjpe": 100.0, "fit_seconds": 1.0}))
    ablation.summarise(sweep, runs, tmp_path / "out", failed=[runs[1].name])
    text = (tmp_path / "out" / "summary.md").read_text()
    assert f"Missing from this table: {runs[1].name} (failed)." in text


def test_no_3d_metrics_on_a_2d_only_test_split_is_said(lsp_layout, smoke_args, capsys):
    """Trained on the synthetic studio's 3D, validated and tested on LSP's 2D-only images."""
    data = ["data.name=mixed", "data.image_size=32", "data.eval_source=two_d", "data.sources.three_d={name: synthetic}",
            f"data.sources.two_d={{name: lsp, root: {lsp_layout[0]}}}"]
    assert main(["experiment=baseline", *smoke_args, *data]) == 0
    out = capsys.readouterr().out
    assert "has no 3D labels, so no 3D metric was computed" in out


def test_a_key_added_to_a_schema_later_counts_as_its_default_for_older_runs():
    """A run folder written before ``optim.rho`` / ``data.cache_mb`` existed ran with what their
    defaults do; it differs only where the new config sets such a key to something else."""
    from harness.run_identity import differences
    from harness.train import load_config

    cfg = load_config(["experiment=baseline", "preset=smoke"])
    stored = yaml.safe_load(OmegaConf.to_yaml(cfg))
    del stored["optim"]["rho"], stored["data"]["cache_mb"]
    assert differences(stored, cfg) == []
    changed = load_config(["experiment=baseline", "preset=smoke", "optim.rho=0.5"])
    assert differences(stored, changed) == ["optim.rho: None -> 0.5"]


def test_a_run_whose_auto_precision_was_resolved_counts_as_planned(tmp_path):
    """``model.two_d.precision: auto`` is stored resolved (float32 or bfloat16, what the run's
    machine does natively); re-planning the grid (e.g. SEEDS=3 after one seed) counts that run as
    done instead of refusing it as run with other settings."""
    path = sweep_file(tmp_path, {"experiment": {"value": "tekin_fusion"}, "seed": {"values": [0]},
                                 "variant": {"values": ["late"]}, "model.two_d.precision": {"value": "auto"}})
    sweep = ablation.Sweep.read(path)
    [planned] = ablation.plan_runs(sweep.grid("smoke"), [f"results_dir={tmp_path}"])
    config = OmegaConf.to_container(load_config(planned.args), resolve=True)
    for resolved in ("bfloat16", "float32"):
        config["model"]["two_d"]["precision"] = resolved
        planned.run_dir.mkdir(parents=True, exist_ok=True)
        (planned.run_dir / "config.yaml").write_text(yaml.safe_dump(config))
        planned.metrics_file.write_text(json.dumps({"test/mpjpe": 100.0, "fit_seconds": 1.0}))
        [again] = ablation.plan_runs(sweep.grid("smoke"), [f"results_dir={tmp_path}"])
        assert again.done
    config["model"]["two_d"]["source"] = "ground_truth"  # a real difference is still refused
    (planned.run_dir / "config.yaml").write_text(yaml.safe_dump(config))
    with pytest.raises(ConfigError, match="model.two_d.source"):
        ablation.plan_runs(sweep.grid("smoke"), [f"results_dir={tmp_path}"])
