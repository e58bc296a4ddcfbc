"""A command line that explains itself: every entry point's ``--help``, and a run's config shown
without running it (``python -m pose3d.train ... --cfg`` / ``--keys``)."""
from __future__ import annotations

import subprocess
import sys
from dataclasses import dataclass, field

import pytest
import yaml
from omegaconf import OmegaConf

from harness.config_keys import field_notes
from harness.train import load_config, main
from pose3d.config import PRESETS, REPO_ROOT, available_experiments, experiment_variants, run_name


def assert_lists_the_experiments(text: str) -> None:
    """Every experiment with every variant, every preset, and where each section of keys is defined."""
    for experiment in available_experiments():
        line = next(line for line in text.splitlines()
                    if line.strip().startswith(experiment + " ") and "model.name=" in line)
        for variant in experiment_variants(experiment):
            assert variant in line, (experiment, variant)
    for preset in PRESETS:
        assert f"\n  {preset} " in text
    for where in ("pose3d/config.py", "RunConfig", "lightning_modules/tekin_fusion.py", "datamodules/human36m.py",
                  "experiments/<experiment>.yaml", "--keys", "--cfg"):
        assert where in text, where


def test_train_help_lists_its_arguments_experiments_presets_and_where_keys_are(capsys):
    assert main(["--help"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("usage: python -m pose3d.train experiment=NAME")
    assert_lists_the_experiments(out)
    assert "tekin_fusion" in out and "trainable*" in out  # the default variant is marked
    assert main(["experiment=baseline", "-h"]) == 0  # anywhere among the arguments


def test_train_help_as_a_command():
    """The module entry point answers --help (it used to be "bad argument 'help'")."""
    result = subprocess.run([sys.executable, "-m", "pose3d.train", "--help"], cwd=REPO_ROOT, capture_output=True,
                            text=True, timeout=300)
    assert result.returncode == 0 and result.stderr == ""
    assert "experiments (experiment=NAME" in result.stdout


@pytest.mark.parametrize("module", ["harness.ablation", "harness.compare", "harness.bench", "harness.predict"])
def test_every_entry_point_help_lists_the_experiments(module, capsys):
    import importlib

    with pytest.raises(SystemExit) as exit_:
        importlib.import_module(module).main(["--help"])
    assert exit_.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith(f"usage: python -m pose3d.{module.split('.')[1]}")
    assert_lists_the_experiments(out)
    if module == "harness.ablation":  # and the sweep files with their grids
        assert "ablations/fusion.yaml: experiment=tekin_fusion" in out and "ablations/references.yaml" not in out
    if module == "harness.bench":
        assert "  steps            images/s of one training step" in out


def test_evaluate_help_lists_its_arguments_and_the_experiments(capsys):
    from harness.evaluate import main as evaluate

    assert evaluate(["--help"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("usage: python -m pose3d.evaluate RUN|PRIOR")
    assert "LiftingConfig in harness/evaluate.py" in out
    assert_lists_the_experiments(out)


def test_every_preset_has_a_line_of_help():
    from harness.cli_help import PRESET_NOTES

    assert set(PRESET_NOTES) == set(PRESETS)


def test_ppca_help_lists_its_arguments_and_the_experiment_that_reads_its_file(capsys):
    from pose3d import ppca

    with pytest.raises(SystemExit) as exit_:
        ppca.main(["fit", "--help"])
    assert exit_.value.code == 0
    out = capsys.readouterr().out
    for argument in ("--source", "--components", "--basis", "--out", "--subjects"):
        assert argument in out
    assert "experiment=tome_lifting model.prior=<file.npz>" in " ".join(out.split())


def test_cfg_prints_the_resolved_config_and_runs_nothing(tmp_path, capsys):
    args = ["experiment=tekin_fusion", "preset=smoke", "variant=late", "trainer.max_epochs=3", f"results_dir={tmp_path}"]
    assert main([*args, "--cfg"]) == 0
    out = capsys.readouterr().out
    printed = yaml.safe_load(out)
    assert printed == OmegaConf.to_container(load_config(args))
    assert printed["model"]["fusion"] == "late" and printed["trainer"]["max_epochs"] == 3  # variant, then overrides
    assert printed["data"]["train_size"] == PRESETS["smoke"]["data"]["train_size"]  # the preset
    assert printed["model"]["two_d"]["checkpoint"] is None  # the prerequisite is named, not trained
    assert f"# the resolved config of run {tmp_path / 'runs' / 'tekin_fusion-late-smoke-s0'}" in out
    assert "# built before training, its path set at model.two_d.checkpoint: run of experiment heatmap2d" in out
    assert list(tmp_path.iterdir()) == []


def test_keys_list_every_key_with_its_value_default_valid_values_and_note(capsys):
    args = ["experiment=tekin_fusion", "preset=smoke", "variant=late"]
    assert main([*args, "--keys"]) == 0
    lines = capsys.readouterr().out.splitlines()
    cfg = load_config(args)
    flat = {k: v for k, v in _leaves(OmegaConf.to_container(cfg))}
    listed = {line.split("=", 1)[0].strip() for line in lines if line.startswith("  ")}
    assert listed == set(flat)  # every key of the run, nothing else
    by_key = {line.split("=", 1)[0].strip(): line for line in lines if line.startswith("  ")}
    assert by_key["model.fusion"].split("#")[0].strip() == "model.fusion=late"
    assert "one of: image_only, cm_only, early, late, fixed, trainable" in by_key["model.fusion"]
    assert "default 6000; a number >= 1; training samples per epoch" in by_key["data.train_size"]
    assert "the experiment whose trained run predicts the 2D" in by_key["model.two_d.experiment"]  # a sub-section's note
    assert "# model.* of model.name=tekin_fusion: TrainableFusionConfig in lightning_modules/tekin_fusion.py" in lines
    assert "# data.* of data.name=synthetic: SyntheticConfig in datamodules/synthetic.py" in lines


def test_cfg_and_keys_stop_on_a_bad_config_with_one_line(capsys):
    assert main(["experiment=baseline", "trainer.foo=1", "--cfg"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("error: unknown config key 'trainer.foo'")
    assert main(["experiment=baseline", "--cfg", "--keys"]) == 2
    assert capsys.readouterr().err.strip() == "error: got --cfg and --keys; expected one of them"


@dataclass
class _Documented:
    plain: int = 1
    noted: str = "a"  # the note
    continued: float = 0.5  # first line;
    # second line
    listed: list = field(default_factory=list)


@dataclass
class _Derived(_Documented):
    extra: bool = True  # its own


def test_field_notes_read_the_comments_beside_each_field():
    assert field_notes(_Derived) == {"plain": "", "noted": "the note", "continued": "first line; second line",
                                     "listed": "", "extra": "its own"}


def test_run_name_carries_the_data_unless_it_is_the_synthetic_default():
    base = ["experiment=baseline", "preset=smoke"]
    assert run_name(load_config(base)) == "baseline-default-smoke-s0"
    assert run_name(load_config([*base, "data.name=human36m", "seed=2"])) == "baseline-default-smoke-human36m-s2"
    assert run_name(load_config([*base, "data.name=mixed"])) == "baseline-default-smoke-mixed-s0"
    assert run_name(load_config([*base, "data.name=human36m", "name=mine"])) == "mine"


def test_the_ablation_runner_predicts_the_run_folders_with_the_data(tmp_path):
    from harness import ablation

    sweep = ablation.Sweep.read(REPO_ROOT / "ablations" / "fusion.yaml")
    points = sweep.grid("smoke", 1)[:1]
    synthetic = ablation.plan_runs(points, [f"results_dir={tmp_path}"], check_identity=False)
    real = ablation.plan_runs(points, [f"results_dir={tmp_path}", "data.name=human36m"], check_identity=False)
    assert synthetic[0].run_dir == tmp_path / "runs" / "tekin_fusion-image_only-smoke-s0"
    assert real[0].run_dir == tmp_path / "runs" / "tekin_fusion-image_only-smoke-human36m-s0"


def test_make_install_says_what_it_installs():
    """Each pip step of the install recipe is announced by an echo line before it runs."""
    result = subprocess.run(["make", "-n", "-B", "install"], cwd=REPO_ROOT, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    steps = [n for n, line in enumerate(lines) if "pip install" in line or " -m venv " in line]
    assert len(steps) == 4
    for n in steps:
        assert lines[n - 1].startswith('echo "install: '), lines[n - 1]
    assert "torch 2.13.0" in lines[steps[1] - 1]


def _leaves(tree, prefix=""):
    for key, value in tree.items():
        if isinstance(value, dict) and value:
            yield from _leaves(value, f"{prefix}{key}.")
        else:
            yield f"{prefix}{key}", value
