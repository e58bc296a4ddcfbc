"""python -m pose3d.predict on full frames of the synthetic renderer (256 px) and their person boxes.

Fast tests use an untrained baseline run folder written as ``pose3d.train`` writes one (config.yaml
and a checkpoint with weights and hyper-parameters), with ``predict`` replaced by the ground truth
where the geometry is checked exactly; the slow test smoke-trains every method.
"""
from __future__ import annotations

import json
from pathlib import Path

import av
import cv2
import numpy as np
import pytest
import torch
from omegaconf import OmegaConf

from harness.predict import main
from harness.train import load_config
from lightning_modules import MODELS
from pose3d import camera as cam
from pose3d.video import write_video

FRAME = 256
SAMPLES = (0, 4, 5)  # synthetic test samples drawn as full frames


@pytest.fixture(scope="module")
def frames() -> dict:
    """Full frames of a few synthetic test samples: image (N, S, S, 3) uint8, joints_2d (frame px),
    joints_3d (absolute mm), camera, box (the joints' 2D box)."""
    from datamodules.synthetic import SyntheticDataModule

    dataset = SyntheticDataModule({}).dataset("test")
    out = dataset.render_full_frames([dataset.describe(i) for i in SAMPLES], FRAME)
    image = (out["image"].permute(0, 2, 3, 1).numpy() * 255.0).round().astype(np.uint8)
    return {"image": image, **{k: out[k].double().numpy() for k in ("joints_2d", "joints_3d", "camera", "box")}}


def save_png(path: Path, image: np.ndarray) -> Path:
    cv2.imwrite(str(path), cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
    return path


def numbers(values) -> str:
    return ",".join(f"{float(v):.6f}" for v in values)


@pytest.fixture(scope="module")
def baseline_run(tmp_path_factory) -> Path:
    """An untrained smoke baseline saved as pose3d.train saves a run (config.yaml, checkpoints/best.ckpt)."""
    from datamodules import DATAMODULES

    run_dir = tmp_path_factory.mktemp("results") / "runs" / "baseline-smoke"
    cfg = load_config(["experiment=baseline", "preset=smoke", "logger.wandb=false"])
    info = DATAMODULES.load(cfg.data.name)(OmegaConf.to_container(cfg.data)).info.as_dict()
    hyper = {"model": OmegaConf.to_container(cfg.model), "optim": OmegaConf.to_container(cfg.optim), "data_info": info}
    model = MODELS.load("baseline")(**hyper)
    (run_dir / "checkpoints").mkdir(parents=True)
    OmegaConf.save(cfg, run_dir / "config.yaml")
    torch.save({"state_dict": model.state_dict(), "hyper_parameters": hyper}, run_dir / "checkpoints" / "best.ckpt")
    return run_dir


def ground_truth_predict(frames: dict, sample: int, with_2d: bool):
    """A ``predict`` that returns sample ``sample``'s ground truth: root-relative 3D and, with
    ``with_2d``, its 2D projected with the crop's camera the batch carries."""
    absolute = torch.from_numpy(frames["joints_3d"][sample])

    def predict(self, batch):
        size = len(batch["image"])
        out = {"joints_3d": (absolute - absolute[:1]).float().expand(size, -1, -1)}
        if with_2d:
            out["joints_2d"] = cam.project(absolute.expand(size, -1, -1), batch["camera"].double())
        return out

    return predict


def predictions(out: Path) -> dict:
    with np.load(out / "predictions.npz") as data:
        return {key: data[key] for key in data.files}


@pytest.mark.parametrize("with_2d", [False, True], ids=["3d_projected", "own_2d"])
def test_ground_truth_through_crop_and_back_lands_on_the_renderers_2d(frames, baseline_run, tmp_path, monkeypatch,
                                                                      with_2d):
    """Crop as the data does, predict the ground truth, undo the crop: the renderer's own 2D in
    frame pixels (projecting 3D-only predictions places the root from the box alone)."""
    for k in range(len(SAMPLES)):
        monkeypatch.setattr(MODELS.load("baseline"), "predict", ground_truth_predict(frames, k, with_2d))
        image = save_png(tmp_path / f"frame{k}.png", frames["image"][k])
        out = tmp_path / f"out{k}"
        code = main([str(baseline_run), str(image), "--box", numbers(frames["box"][k]),
                     "--camera", numbers(frames["camera"][k]), "--out", str(out)])
        assert code == 0
        result = predictions(out)
        assert result["joints_2d"].shape == (1, 17, 2) and result["joints_3d"].shape == (1, 17, 3)
        np.testing.assert_allclose(result["joints_2d"][0], frames["joints_2d"][k], atol=0.02)
        truth = frames["joints_3d"][k] - frames["joints_3d"][k][:1]
        np.testing.assert_allclose(result["joints_3d"][0], truth, atol=0.01)
        listed = json.loads((out / "predictions.json").read_text())
        assert listed["joint_names"][0] == "pelvis" and len(listed["joint_names"]) == 17
        assert listed["frames"][0]["file"] == str(image) and listed["frames"][0]["frame"] == 0
        assert (out / "frame{}.prediction.png".format(k)).is_file()


def test_a_video_of_rendered_frames_round_trips_to_an_mp4_of_as_many_frames(frames, baseline_run, tmp_path):
    video = tmp_path / "clip.mp4"
    write_video(video, list(frames["image"]))
    boxes = tmp_path / "boxes.json"
    boxes.write_text(json.dumps({"clip.mp4": frames["box"].round(2).tolist()}))
    out = tmp_path / "out"
    assert main([str(baseline_run), str(video), "--boxes", str(boxes), "--out", str(out), "--batch-size", "2"]) == 0
    result = predictions(out)
    assert result["frame"].tolist() == list(range(len(SAMPLES)))
    np.testing.assert_allclose(result["box"], frames["box"].round(2))
    with av.open(str(out / "clip.prediction.mp4")) as container:
        decoded = [frame.to_ndarray(format="rgb24") for frame in container.decode(video=0)]
    assert len(decoded) == len(SAMPLES) and decoded[0].shape == (320, 900, 3)


def test_a_frame_without_a_box_is_used_whole_with_one_warning(frames, baseline_run, tmp_path, capsys):
    image = save_png(tmp_path / "frame.png", frames["image"][0])
    assert main([str(baseline_run), str(image), "--out", str(tmp_path / "out")]) == 0
    err = capsys.readouterr().err
    assert err.count("warning:") == 1 and "used whole" in err and "1.145 x the frame's larger side" in err
    result = predictions(tmp_path / "out")
    assert result["whole_frame"].tolist() == [True]
    np.testing.assert_allclose(result["camera"][0], [1.145 * FRAME, 1.145 * FRAME, 127.5, 127.5])


def corrupt(path: Path) -> Path:
    path.write_bytes(np.random.default_rng(0).integers(0, 256, 4000, dtype=np.uint8).tobytes())
    return path


@pytest.mark.parametrize("case, expected", [
    ("missing", "missing.png does not exist; expected an image, a video or a folder of them"),
    ("corrupt_image", "broken.png: 4000 bytes that do not decode as an image"),
    ("corrupt_video", "cannot read video"),
    ("box_outside", "lies outside the image (256 x 256 px)"),
])
def test_a_bad_input_is_one_line_and_exit_2_while_the_readable_frames_are_written(case, expected, frames, baseline_run,
                                                                                   tmp_path, capsys):
    good = save_png(tmp_path / "good.png", frames["image"][0])
    bad = {"missing": lambda: tmp_path / "missing.png",
           "corrupt_image": lambda: corrupt(tmp_path / "broken.png"),
           "corrupt_video": lambda: corrupt(tmp_path / "broken.mp4"),
           "box_outside": lambda: save_png(tmp_path / "other.png", frames["image"][1])}[case]()
    boxes = tmp_path / "boxes.json"
    boxes.write_text(json.dumps({"good.png": frames["box"][0].tolist(), bad.name: [240.0, 10.0, 40.0, 50.0]}))
    out = tmp_path / "out"
    assert main([str(baseline_run), str(good), str(bad), "--boxes", str(boxes), "--out", str(out)]) == 2
    errors = [line for line in capsys.readouterr().err.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and expected in errors[0] and str(bad.name) in errors[0]
    assert predictions(out)["file_name"].tolist() == [str(good)]


def test_a_run_folder_without_config_yaml_is_one_line_and_exit_2(frames, tmp_path, capsys):
    (tmp_path / "run" / "checkpoints").mkdir(parents=True)
    image = save_png(tmp_path / "frame.png", frames["image"][0])
    assert main([str(tmp_path / "run"), str(image), "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err.strip()
    assert err == (f"error: {tmp_path / 'run' / 'config.yaml'} does not exist; expected the config.yaml that "
                   f"python -m pose3d.train writes into a run folder (RUN: {tmp_path / 'run'})")
    assert not (tmp_path / "out").exists()


def test_a_2d_only_method_says_so_and_still_writes_its_2d(frames, baseline_run, tmp_path, monkeypatch, capsys):
    truth_2d = ground_truth_predict(frames, 0, with_2d=True)
    monkeypatch.setattr(MODELS.load("baseline"), "predict", lambda self, batch: {"joints_2d": truth_2d(self, batch)["joints_2d"]})
    image = save_png(tmp_path / "frame.png", frames["image"][0])
    out = tmp_path / "out"
    assert main([str(baseline_run), str(image), "--box", numbers(frames["box"][0]),
                 "--camera", numbers(frames["camera"][0]), "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert "which predicts 2D only: wrote its 2D (no 3D)" in err
    result = predictions(out)
    assert np.isnan(result["joints_3d"]).all()
    np.testing.assert_allclose(result["joints_2d"][0], frames["joints_2d"][0], atol=0.02)
    assert json.loads((out / "predictions.json").read_text())["frames"][0]["joints_3d"] is None


def test_a_run_that_reads_labels_at_test_time_is_one_line_and_exit_2(frames, baseline_run, tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(MODELS.load("baseline"), "predict", lambda self, batch: {"joints_2d": batch["joints_2d"]})
    image = save_png(tmp_path / "frame.png", frames["image"][0])
    assert main([str(baseline_run), str(image), "--box", numbers(frames["box"][0]), "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert err == (f"error: {baseline_run} reads the label 'joints_2d' at test time, which images of your own do not "
                   "have; expected a run whose 2D comes from a network (e.g. model.two_d.source=predicted)")


@pytest.mark.parametrize("option, expected", [
    (["--box", "1,2,3"], "--box 1,2,3: expected 4 comma-separated numbers"),
    (["--camera", "0,300,128,128"], "expected positive focal lengths"),
])
def test_a_bad_option_is_one_line_and_exit_2(option, expected, baseline_run, tmp_path, capsys):
    assert main([str(baseline_run), str(tmp_path / "any.png"), *option]) == 2
    assert expected in capsys.readouterr().err


def test_example_writes_a_full_frame_and_its_box(tmp_path):
    assert main(["--example", str(tmp_path)]) == 0
    image = cv2.imread(str(tmp_path / "person.png"))
    box = json.loads((tmp_path / "boxes.json").read_text())["person.png"]
    assert image.shape == (256, 256, 3) and len(box) == 4
    x, y, w, h = (int(round(v)) for v in box)
    person, background = image[y:y + h, x:x + w].std(), image[:20, :20].std()
    assert person > 5 * max(background, 1.0)  # the box holds the person, the corner plain backdrop


EXPERIMENTS = ("baseline", "heatmap2d", "tekin_fusion", "tome_lifting", "habibie_projection", "park_multiroot",
               "deepskeleton")


@pytest.fixture(scope="module")
def trained_runs(tmp_path_factory) -> dict[str, Path]:
    """One smoke-trained run of every method (prerequisites trained once, shared)."""
    from harness.train import run
    from pose3d.config import run_name

    results = tmp_path_factory.mktemp("trained")
    runs = {}
    for experiment in EXPERIMENTS:
        cfg = load_config([f"experiment={experiment}", "preset=smoke", f"results_dir={results}", "logger.wandb=false",
                           "trainer.enable_progress_bar=false"])
        run(cfg)
        runs[experiment] = results / "runs" / run_name(cfg)
    return runs


@pytest.mark.slow
@pytest.mark.parametrize("experiment", EXPERIMENTS)
def test_every_methods_smoke_run_predicts_on_the_person_of_a_full_frame(experiment, trained_runs, frames, tmp_path):
    images = [save_png(tmp_path / f"frame{k}.png", frames["image"][k]) for k in range(len(SAMPLES))]
    boxes = tmp_path / "boxes.json"
    boxes.write_text(json.dumps({p.name: frames["box"][k].tolist() for k, p in enumerate(images)}))
    out = tmp_path / "out"
    code = main([str(trained_runs[experiment]), *map(str, images), "--boxes", str(boxes), "--out", str(out)])
    assert code == (2 if experiment == "heatmap2d" else 0)
    result = predictions(out)
    count = len(SAMPLES)
    assert result["joints_2d"].shape == (count, 17, 2) and result["joints_3d"].shape == (count, 17, 3)
    assert np.isnan(result["joints_3d"]).all() == (experiment == "heatmap2d")
    # on the person: inside the crop, within the box's size of the renderer's joints on average
    side = frames["box"][:, 2:].max(-1)
    error = np.linalg.norm(result["joints_2d"] - frames["joints_2d"], axis=-1).mean(-1)
    assert (error < side).all(), error / side
    centre = frames["box"][:, :2] + frames["box"][:, 2:] / 2
    assert (np.abs(result["joints_2d"] - centre[:, None]).max(-1) <= 0.65 * side[:, None] * 1.3).all()
    assert len(list(out.glob("*.prediction.png"))) == count
