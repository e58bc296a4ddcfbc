"""3D pose of your own images and videos: ``python -m pose3d.predict RUN INPUT... [options]``.

``RUN`` is a trained run of any method (its folder or a checkpoint in it; :mod:`harness.trained_run`),
``INPUT`` images, folders of images and videos (PyAV reads them). Options::

    --box X,Y,W,H          the person's box in every frame (pixel coordinates: pixel centres at
                           whole numbers, as pose3d.camera; x, y the top-left corner)
    --boxes FILE           boxes per file: JSON {"<file>": [x, y, w, h]} (a video: one box for
                           every frame, or a list of one per frame), or a COCO file ("images" with
                           "file_name", "annotations" with "bbox"; the largest box of an image)
    --camera FX,FY,CX,CY   the frames' intrinsics in pixels; default: the run's data's typical
                           focal length scaled to the frame's larger side, principal point at the centre
    --out DIR              default results/predict/<run>/
    --batch-size N         frames per forward pass (default 16)
    --device cpu|cuda
    --example DIR          write a picture anyone can try (a full frame rendered by the synthetic
                           renderer, person.png) and its box (boxes.json) into DIR, and nothing else

Each frame is cropped as the run's training data was (:func:`datamodules.crop.crop_record`: the
square around the person's box enlarged by the data's margin, resized to the model's input
size; the margin and the typical focal length come from the run's DataModule,
:meth:`~datamodules.base.PoseDataModule.framing`); a frame without a box is used whole (the
square around it), with one warning line. The crop's intrinsics go into the batch
(``camera``) for the methods that read them; the camera's rotation is unknown
(``has_camera_rotation`` false: Tome's level camera).

Written into ``--out``: ``predictions.json`` (per frame: file, frame index, box, camera and the
17 joints in Human3.6M order: ``joints_3d`` root-relative camera-frame mm, ``joints_2d`` pixels
of the original image) and the same arrays in ``predictions.npz`` (``file_name``, ``frame``, ``box``,
``whole_frame``, ``camera``, ``joints_3d``: NaN for a 2D-only method, ``joints_2d``, ``joint_names``); per image
``<name>.prediction.png`` (the 2D on the image beside the 3D in a front and a side view,
:class:`pose3d.plots.PredictionFigure`) and per video ``<name>.prediction.mp4`` of those
figures. The 2D is the method's own where it predicts 2D, else its 3D projected with the camera,
the root placed where the pose fills the box as a training crop's person does
(:func:`pose3d.camera.translation_filling_box`).

A missing, unreadable or corrupt input, a box outside its image, a run without ``config.yaml`` or
a run of a 2D-only method (its 2D is still written) is a one-line error and exit status 2; the
frames that could be read are written all the same.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path

import numpy as np

from pose3d import readers
from pose3d.config import ConfigError
from pose3d.video import DEFAULT_FPS, VideoReader, VideoWriter

EXIT_BAD_INPUT = 2
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp")
VIDEO_SUFFIXES = (".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v", ".mpg", ".mpeg")
DEFAULT_BATCH_SIZE = 16
BOX_SLACK_PX = 1.0  # a box may pass the image's edge by this much (rounding of a detector's box)
EXAMPLE_SIZE = 256  # --example: the frame's side, pixels
EXAMPLE_SAMPLE = 4  # --example: the synthetic test sample drawn (a clear, upright pose)


# -- what to read --------------------------------------------------------------------------
@dataclass
class Input:
    path: Path
    kind: str  # image | video


def parse_numbers(text: str, count: int, option: str, meaning: str) -> np.ndarray:
    """``count`` comma-separated numbers of a command-line option, or a one-line ConfigError."""
    try:
        values = np.array([float(v) for v in text.split(",")], dtype=np.float64)
    except ValueError:
        values = np.array([])
    if values.shape != (count,) or not np.isfinite(values).all():
        raise ConfigError(f"{option} {text}: expected {count} comma-separated numbers {meaning}")
    return values


def list_inputs(paths: list[str], problems: list[str]) -> list[Input]:
    """The images and videos that ``paths`` name (a folder: its images and videos, sorted); a path
    that is none adds a line to ``problems``."""
    found = []
    for text in paths:
        path = Path(text)
        if path.is_dir():
            inside = [Input(p, kind) for p in sorted(path.iterdir()) if (kind := input_kind(p))]
            if not inside:
                problems.append(f"{path} holds no image or video; expected files ending in "
                                f"{', '.join(IMAGE_SUFFIXES + VIDEO_SUFFIXES)}")
            found += inside
        elif not path.exists():
            problems.append(f"{path} does not exist; expected an image, a video or a folder of them")
        elif not input_kind(path):
            problems.append(f"{path} is neither an image nor a video; expected a file ending in "
                            f"{', '.join(IMAGE_SUFFIXES + VIDEO_SUFFIXES)}")
        else:
            found.append(Input(path, input_kind(path)))
    return found


def input_kind(path: Path) -> str:
    suffix = path.suffix.lower()
    return "image" if suffix in IMAGE_SUFFIXES else "video" if suffix in VIDEO_SUFFIXES else ""


def read_image(path: Path) -> np.ndarray:
    """(H, W, 3) uint8 RGB; an empty, truncated or corrupt file is a one-line ConfigError (:func:`pose3d.readers.read_image`)."""
    return readers.read_image(path, f"a readable {'/'.join(s[1:] for s in IMAGE_SUFFIXES)} image")


# -- where the person is -------------------------------------------------------------------
class Boxes:
    """The person's box (x, y, w, h) of each frame: ``--box`` for all, or ``--boxes FILE`` per file."""

    def __init__(self, every: np.ndarray | None = None, table: dict[str, list[np.ndarray]] | None = None):
        self.every, self.table = every, table or {}

    @classmethod
    def from_options(cls, box: str | None, boxes: str | None) -> "Boxes":
        if box is not None:
            return cls(every=parse_numbers(box, 4, "--box", "X,Y,W,H (the person's box in pixels)"))
        if boxes is None:
            return cls()
        path = Path(boxes)
        if not path.is_file():
            raise ConfigError(f"--boxes {path} does not exist; expected a JSON file of boxes")
        content = readers.read_json(path, '--boxes as {"<file>": [x, y, w, h]} or a COCO file')
        return cls(table=coco_boxes(content, path) if "annotations" in content else named_boxes(content, path))

    def lookup(self, path: Path, frame: int) -> np.ndarray | None:
        if self.every is not None:
            return self.every
        for key in (str(path), str(path.resolve()), path.name):
            if key in self.table:
                boxes = self.table[key]
                return boxes[0] if len(boxes) == 1 else boxes[frame] if frame < len(boxes) else None
        return None


def _box(value, where: str) -> np.ndarray:
    box = np.asarray(value, dtype=np.float64) if isinstance(value, list) else np.array([])
    if box.shape != (4,) or not np.isfinite(box).all():
        raise ConfigError(f"{where}: {value!r} is no box; expected [x, y, w, h]")
    return box


def named_boxes(content, path: Path) -> dict[str, list[np.ndarray]]:
    """``{"<file>": [x, y, w, h] | [[x, y, w, h], ...]}``."""
    if not isinstance(content, dict):
        raise ConfigError(f"--boxes {path}: expected a JSON object {{\"<file>\": [x, y, w, h]}} or a COCO file")
    table = {}
    for name, value in content.items():
        nested = isinstance(value, list) and bool(value) and isinstance(value[0], list)
        table[name] = [_box(v, f"--boxes {path}, {name}") for v in (value if nested else [value])]
    return table


def coco_boxes(content: dict, path: Path) -> dict[str, list[np.ndarray]]:
    """A COCO file's largest person box per image (``images`` name the files)."""
    try:
        names = {image["id"]: image["file_name"] for image in content["images"]}
        table: dict[str, np.ndarray] = {}
        for note in content["annotations"]:
            if note.get("category_id", 1) != 1 or note["image_id"] not in names:
                continue
            box = _box(note["bbox"], f"--boxes {path}, annotation {note.get('id', '?')}")
            name = names[note["image_id"]]
            if name not in table or box[2] * box[3] > table[name][2] * table[name][3]:
                table[name] = box
    except (KeyError, TypeError) as error:
        raise ConfigError(f"--boxes {path}: a COCO file lacks {error}; expected images with id and file_name, "
                          "annotations with image_id and bbox") from None
    return {name: [box] for name, box in table.items()}


def check_box(box: np.ndarray, shape: tuple[int, ...], where: str) -> None:
    height, width = shape[:2]
    x, y, w, h = box
    inside = (x >= -BOX_SLACK_PX and y >= -BOX_SLACK_PX and x + w <= width + BOX_SLACK_PX
              and y + h <= height + BOX_SLACK_PX)
    if not (w > 0 and h > 0 and inside):
        raise ConfigError(f"box {','.join(f'{v:g}' for v in box)} of {where} lies outside the image "
                          f"({width} x {height} px); expected x, y >= 0, w, h > 0, x + w <= {width}, y + h <= {height}")


# -- crops and the model -------------------------------------------------------------------
@dataclass(frozen=True)
class Framing:
    """How the run's data framed a person (:meth:`datamodules.base.PoseDataModule.framing`)."""

    image_size: int  # the model's input crop, pixels
    margin: float  # crop side / the person box's longer side
    focal_per_frame_side: float  # typical focal length / the larger frame side
    data_name: str

    @classmethod
    def of_run(cls, run) -> "Framing":
        from omegaconf import OmegaConf

        from datamodules import DATAMODULES

        data = run.cfg.data
        margin, focal = DATAMODULES.load(str(data.name)).framing(OmegaConf.to_container(data, resolve=True))
        return cls(int(run.model.data_info.image_size), margin, focal, str(data.name))

    def camera(self, shape: tuple[int, ...]) -> np.ndarray:
        """The default intrinsics of a frame of ``shape``: the data's typical focal, scaled."""
        height, width = shape[:2]
        focal = self.focal_per_frame_side * max(height, width)
        return np.array([focal, focal, (width - 1) / 2.0, (height - 1) / 2.0])

    def describe_camera(self) -> str:
        return (f"camera: focal length {self.focal_per_frame_side:.3f} x the frame's larger side (typical of the run's "
                f"{self.data_name} data), principal point at the frame centre; --camera FX,FY,CX,CY gives yours")


@dataclass
class Crop:
    """One frame cut for the model."""

    file: str
    frame: int
    box: np.ndarray  # the person box used (x, y, w, h), or the whole frame's
    whole_frame: bool
    camera: np.ndarray  # (4,) the frame's intrinsics
    image: np.ndarray  # (S, S, 3) uint8, the crop
    crop_camera: np.ndarray  # (4,) the crop's intrinsics
    affine: np.ndarray  # (2, 3) frame -> crop pixels
    extent: float  # crop pixels spanned by the person box's longer side
    frame_image: np.ndarray  # (H, W, 3) uint8, for the figure

    @property
    def window(self) -> tuple[float, float, float, float]:
        """The crop's square in frame pixels (x0, y0, x1, y1): what the figure shows of the frame."""
        corners = to_frame_pixels(np.array([[0.0, 0.0], [self.image.shape[1] - 1.0] * 2]), self.affine)
        return (*corners[0], *corners[1])


def cut(image: np.ndarray, box: np.ndarray | None, camera: np.ndarray, framing: Framing, file: str, frame: int) -> Crop:
    """The crop of ``image`` around ``box`` as the run's training data was cut (a box-less frame: the square around it)."""
    from datamodules.crop import PIXEL_STD, crop_record
    from datamodules.records import PoseRecord
    from pose3d.skeleton import NUM_JOINTS

    height, width = image.shape[:2]
    whole = box is None
    if whole:
        box, margin = np.array([-0.5, -0.5, width, height]), 1.0  # pixel centres at whole numbers: edges at -0.5
    else:
        margin = framing.margin
    centre = box[:2] + box[2:] / 2
    record = PoseRecord(image_path="", center=centre, scale=float(box[2:].max()) / PIXEL_STD,
                        joints_2d=np.zeros((NUM_JOINTS, 2)), visible=np.zeros(NUM_JOINTS, dtype=bool), intrinsics=camera)
    out = crop_record(image, record, framing.image_size, None, margin=margin)
    return Crop(file, frame, box, whole, camera, out["image"], out["camera"], out["affine"],
                framing.image_size / margin, image)


def to_frame_pixels(points: np.ndarray, affine: np.ndarray) -> np.ndarray:
    """Crop pixels (..., 2) back to the frame's, through the inverse of ``affine`` (2, 3)."""
    return (points - affine[:, 2]) @ np.linalg.inv(affine[:, :2]).T


class RunNeedsLabels(ConfigError):
    """The run's ``predict`` reads a label (ground-truth 2D) that frames of one's own do not have."""


class Predictor:
    """Batches of crops through a loaded run's ``predict``: 3D root-relative mm (or None) and 2D in frame pixels."""

    def __init__(self, run, device: str):
        self.run, self.device = run, device
        self.seconds = 0.0
        self.predicts_3d: bool | None = None
        self.predicts_2d = False

    def batch(self, crops: list[Crop]) -> dict:
        import torch

        images = torch.from_numpy(np.stack([c.image for c in crops])).permute(0, 3, 1, 2).float().div(255.0)
        size = len(crops)
        batch = {"image": images, "camera": torch.tensor(np.stack([c.crop_camera for c in crops]), dtype=torch.float32),
                 "camera_rotation": torch.eye(3).expand(size, 3, 3).clone(),
                 "has_camera_rotation": torch.zeros(size, dtype=torch.bool)}
        return {key: value.to(self.device) for key, value in batch.items()}

    def __call__(self, crops: list[Crop]) -> list[tuple[np.ndarray | None, np.ndarray]]:
        import torch

        from pose3d.camera import project, translation_filling_box

        batch = self.batch(crops)
        started = time.perf_counter()
        with torch.no_grad():
            try:
                prediction = self.run.model.predict(batch)
            except KeyError as error:
                raise RunNeedsLabels(self.label_message(error.args[0])) from None
        self.seconds += time.perf_counter() - started
        joints_3d = prediction.get("joints_3d")
        self.predicts_3d = joints_3d is not None
        self.predicts_2d = "joints_2d" in prediction
        if self.predicts_2d:
            joints_2d = prediction["joints_2d"].float()
        else:
            size = self.run.model.data_info.image_size
            centre = torch.full((len(crops), 2), (size - 1) / 2.0, device=joints_3d.device, dtype=torch.float64)
            extent = torch.tensor([c.extent for c in crops], device=joints_3d.device, dtype=torch.float64)
            points = joints_3d.double()
            camera = batch["camera"].double()
            joints_2d = project(points + translation_filling_box(points, camera, centre, extent)[:, None], camera)
        joints_2d = joints_2d.cpu().double().numpy()
        joints_3d = None if joints_3d is None else joints_3d.float().cpu().numpy()
        return [(None if joints_3d is None else joints_3d[k], to_frame_pixels(joints_2d[k], crop.affine))
                for k, crop in enumerate(crops)]

    def label_message(self, key: str) -> str:
        from omegaconf import OmegaConf

        settings = OmegaConf.to_container(self.run.cfg.model, resolve=True)
        labelled = [key_ for key_, value in flat(settings) if value == "ground_truth"]
        hint = f" (its {', '.join(f'model.{k}=ground_truth' for k in labelled)})" if labelled else ""
        return (f"{self.run.run_dir} reads the label '{key}' at test time{hint}, which images of your own do not have; "
                "expected a run whose 2D comes from a network (e.g. model.two_d.source=predicted)")


def flat(settings: dict, prefix: str = ""):
    """(dotted key, value) of a nested dict's leaves."""
    for key, value in settings.items():
        if isinstance(value, dict):
            yield from flat(value, f"{prefix}{key}.")
        else:
            yield f"{prefix}{key}", value


# -- what is written -----------------------------------------------------------------------
@dataclass
class Written:
    """The predictions gathered for predictions.json / .npz, and the figures' writers."""

    out_dir: Path
    rows: list[dict] = field(default_factory=list)
    figures: list[Path] = field(default_factory=list)
    videos: dict[str, VideoWriter] = field(default_factory=dict)
    names: set[str] = field(default_factory=set)
    drawing: object = None  # pose3d.plots.PredictionFigure, made for the first figure

    def figure_path(self, file: str, suffix: str) -> Path:
        stem = Path(file).stem
        name, n = f"{stem}.prediction{suffix}", 2
        while name in self.names:
            name, n = f"{stem}-{n}.prediction{suffix}", n + 1
        self.names.add(name)
        return self.out_dir / name

    def add(self, crop: Crop, joints_3d: np.ndarray | None, joints_2d: np.ndarray, method: str, video: Input | None,
            fps: Fraction) -> None:
        import cv2

        self.rows.append({"crop": crop, "joints_3d": joints_3d, "joints_2d": joints_2d})
        title = f"{Path(crop.file).name}{f' frame {crop.frame}' if video else ''}: {method}"
        if self.drawing is None:
            from pose3d.plots import PredictionFigure

            self.drawing = PredictionFigure()
        figure = self.drawing(crop.frame_image, joints_2d, joints_3d, title, None if crop.whole_frame else crop.window)
        if video is None:
            path = self.figure_path(crop.file, ".png")
            cv2.imwrite(str(path), cv2.cvtColor(figure, cv2.COLOR_RGB2BGR))
            self.figures.append(path)
        else:
            if crop.file not in self.videos:
                self.videos[crop.file] = VideoWriter(self.figure_path(crop.file, ".mp4"), fps)
            self.videos[crop.file].add(figure)

    def close_video(self, file: str) -> None:
        if file in self.videos:
            writer = self.videos[file]
            writer.close()
            self.figures.append(writer.path)

    def predictions(self, run, framing: Framing, two_d_from: str) -> None:
        """``predictions.json`` and ``predictions.npz``."""
        from pose3d.skeleton import H36M_JOINTS

        count = len(self.rows)
        joints_3d = np.full((count, len(H36M_JOINTS), 3), np.nan)
        for k, row in enumerate(self.rows):
            if row["joints_3d"] is not None:
                joints_3d[k] = row["joints_3d"]
        arrays = {
            "file_name": np.array([r["crop"].file for r in self.rows], dtype=str),  # np.savez takes "file" itself
            "frame": np.array([r["crop"].frame for r in self.rows], dtype=np.int64),
            "box": np.array([r["crop"].box for r in self.rows], dtype=np.float64).reshape(count, 4),
            "whole_frame": np.array([r["crop"].whole_frame for r in self.rows], dtype=bool),
            "camera": np.array([r["crop"].camera for r in self.rows], dtype=np.float64).reshape(count, 4),
            "joints_3d": joints_3d,
            "joints_2d": np.array([r["joints_2d"] for r in self.rows], dtype=np.float64).reshape(count, len(H36M_JOINTS), 2),
            "joint_names": np.array(H36M_JOINTS),
        }
        np.savez(self.out_dir / "predictions.npz", **arrays)
        rounded = lambda a: np.round(a, 2).tolist()  # noqa: E731
        frames = [{"file": str(arrays["file_name"][k]), "frame": int(arrays["frame"][k]), "box": rounded(arrays["box"][k]),
                   "whole_frame": bool(arrays["whole_frame"][k]), "camera": rounded(arrays["camera"][k]),
                   "joints_3d": None if self.rows[k]["joints_3d"] is None else rounded(joints_3d[k]),
                   "joints_2d": rounded(arrays["joints_2d"][k])} for k in range(count)]
        content = {"run": str(run.run_dir), "checkpoint": str(run.checkpoint), "method": run.method,
                   "joint_names": list(H36M_JOINTS),
                   "units": {"joints_3d": "mm, camera frame (x right, y down, z forward), relative to the pelvis",
                             "joints_2d": "pixels of the original image (pixel centres at whole numbers)",
                             "box": "x, y, w, h in pixels of the original image", "camera": "fx, fy, cx, cy in pixels"},
                   "joints_2d_from": two_d_from, "crop_margin": framing.margin, "frames": []}
        one_line_each = ",\n  ".join(json.dumps(frame) for frame in frames)  # a frame per line: readable, diffable
        text = json.dumps(content, indent=1).replace('"frames": []', f'"frames": [\n  {one_line_each}\n ]')
        (self.out_dir / "predictions.json").write_text(text + "\n")


# -- the command ---------------------------------------------------------------------------
def predict(args: argparse.Namespace) -> int:
    from harness.trained_run import load_run

    import torch

    if args.device == "cuda" and not torch.cuda.is_available():
        raise ConfigError("--device cuda: no CUDA device on this machine; expected --device cpu")
    if args.batch_size < 1:
        raise ConfigError(f"--batch-size {args.batch_size}: expected a positive number of frames")
    boxes = Boxes.from_options(args.box, args.boxes)
    camera = None if args.camera is None else parse_numbers(args.camera, 4, "--camera", "FX,FY,CX,CY (pixels)")
    if camera is not None and not (camera[:2] > 0).all():
        raise ConfigError(f"--camera {args.camera}: expected positive focal lengths FX, FY")
    run = load_run(Path(args.run), args.device)
    framing = Framing.of_run(run)
    out_dir = Path(args.out) if args.out else Path("results") / "predict" / run.run_dir.name
    out_dir.mkdir(parents=True, exist_ok=True)

    problems: list[str] = []
    inputs = list_inputs(args.inputs, problems)
    if camera is None and inputs:
        print(framing.describe_camera(), file=sys.stderr)
    predictor, written = Predictor(run, args.device), Written(out_dir)
    started = time.perf_counter()
    boxless = run_frames(inputs, boxes, camera, framing, predictor, written, args.batch_size, problems)
    if boxless:
        print(f"warning: {boxless} frame(s) had no box (--box or --boxes) and were used whole; the models expect a "
              "person-centred crop, so give the person's box for results like the training data's", file=sys.stderr)
    if written.rows:
        two_d_from = ("the method's 2D prediction" if predictor.predicts_2d else
                      "the 3D projected with the camera, the root placed where the pose fills the box as in a training crop")
        written.predictions(run, framing, two_d_from)
    elapsed = time.perf_counter() - started
    count = len(written.rows)
    if count:
        rate = f"{count / elapsed:.1f} frames/s, the model alone {count / max(predictor.seconds, 1e-9):.1f}"
        print(f"{count} frame(s) of {run.method} ({rate}): {out_dir}/predictions.json, predictions.npz and "
              f"{len(written.figures)} figure(s)")
    if predictor.predicts_3d is False:
        problems.append(f"{run.run_dir} is a run of {run.method}, which predicts 2D only: wrote its 2D (no 3D) to "
                        f"{out_dir}/predictions.json; expected a run of a method that predicts 3D for 3D poses")
    for problem in problems:
        print(f"error: {problem}", file=sys.stderr)
    return EXIT_BAD_INPUT if problems else 0


def run_frames(inputs: list[Input], boxes: Boxes, camera: np.ndarray | None, framing: Framing, predictor: Predictor,
               written: Written, batch_size: int, problems: list[str]) -> int:
    """Read, crop, predict (in batches across inputs) and write every frame; returns how many had
    no box. A frame whose box lies outside it is skipped (one line per file in ``problems``); an
    input that cannot be read or decoded further adds its line, and what it gave is kept."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    pending: list[tuple[Crop, Input | None, Fraction]] = []
    bad_boxes: dict[str, list] = {}  # file -> [first message, frames skipped]
    boxless = 0

    def flush() -> None:
        if pending:
            results = predictor([crop for crop, _, _ in pending])
            for (crop, video, fps), (joints_3d, joints_2d) in zip(pending, results):
                written.add(crop, joints_3d, joints_2d, predictor.run.method, video, fps)
            progress.advance(task, len(pending))
            pending.clear()

    images = sum(item.kind == "image" for item in inputs)
    with Progress(TextColumn("predicting"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(), transient=True,
                  disable=images <= batch_size and images == len(inputs)) as progress:
        task = progress.add_task("frames", total=images)
        for item in inputs:
            try:
                if item.kind == "image":
                    video, fps, frames = None, DEFAULT_FPS, [(0, read_image(item.path))]
                else:
                    reader = VideoReader(item.path)
                    video, fps, frames = item, reader.fps, enumerate(reader)
                    progress.update(task, total=progress.tasks[0].total + reader.frames)
                for index, image in frames:
                    box = boxes.lookup(item.path, index)
                    if box is not None:
                        try:
                            check_box(box, image.shape, f"{item.path}" + (f" frame {index}" if video else ""))
                        except ConfigError as error:
                            bad_boxes.setdefault(str(item.path), [str(error), 0])[1] += 1
                            continue
                    boxless += box is None
                    frame_camera = framing.camera(image.shape) if camera is None else camera
                    pending.append((cut(image, box, frame_camera, framing, str(item.path), index), video, fps))
                    if len(pending) >= batch_size:
                        flush()
            except RunNeedsLabels:
                raise
            except ConfigError as error:
                problems.append(str(error))
        flush()
    for file in list(written.videos):
        written.close_video(file)
    if written.drawing is not None:
        written.drawing.close()
    problems += [message + (f" ({skipped} frames skipped)" if skipped > 1 else " (frame skipped)")
                 for message, skipped in bad_boxes.values()]
    return boxless


def write_example(folder: Path, size: int = EXAMPLE_SIZE) -> tuple[Path, Path, np.ndarray]:
    """A picture anyone can try: a full frame of the synthetic renderer (``person.png``) and its
    person box (``boxes.json``: the joints' 2D box, which training crops enlarge by the margin);
    returns the two paths and the frame's intrinsics."""
    import cv2

    from datamodules.synthetic import SyntheticDataModule

    dataset = SyntheticDataModule({}).dataset("test")
    frame = dataset.render_full_frames([dataset.describe(EXAMPLE_SAMPLE)], size)
    folder.mkdir(parents=True, exist_ok=True)
    image = (frame["image"][0].permute(1, 2, 0).numpy() * 255.0).round().astype(np.uint8)
    picture, boxes = folder / "person.png", folder / "boxes.json"
    cv2.imwrite(str(picture), cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
    boxes.write_text(json.dumps({picture.name: np.round(frame["box"][0].numpy(), 2).tolist()}) + "\n")
    return picture, boxes, frame["camera"][0].numpy()


def parser() -> argparse.ArgumentParser:
    from harness.cli_help import config_guide

    parser = argparse.ArgumentParser(prog="python -m pose3d.predict", description=__doc__.splitlines()[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter,
                                     epilog="Written: predictions.json, predictions.npz, <name>.prediction.png per "
                                            "image, <name>.prediction.mp4 per video.\n\nRUN is a run folder of "
                                            "python -m pose3d.train, of any of these experiments:\n\n" + config_guide())
    parser.add_argument("run", nargs="?", help="a run folder (results/runs/<run>) or a checkpoint file in one")
    parser.add_argument("inputs", nargs="*", help="images, folders of images, videos")
    where = parser.add_mutually_exclusive_group()
    where.add_argument("--box", metavar="X,Y,W,H", help="the person's box in every frame, pixels")
    where.add_argument("--boxes", metavar="FILE", help='JSON {"<file>": [x, y, w, h]} or a COCO file')
    parser.add_argument("--camera", metavar="FX,FY,CX,CY", help="the frames' intrinsics, pixels")
    parser.add_argument("--out", metavar="DIR", help="default results/predict/<run>/")
    parser.add_argument("--batch-size", type=int, default=DEFAULT_BATCH_SIZE, metavar="N")
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    parser.add_argument("--example", metavar="DIR", help="write person.png and boxes.json (a synthetic full frame) "
                                                         "into DIR and stop")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(sys.argv[1:] if argv is None else argv)
    try:
        if args.example:
            picture, boxes, camera = write_example(Path(args.example))
            print(f"wrote {picture} and {boxes}; try: python -m pose3d.predict RUN {picture} --boxes {boxes} "
                  f"--camera {','.join(f'{v:.1f}' for v in camera)}")
            return 0
        if not args.run or not args.inputs:
            raise ConfigError("expected RUN and at least one INPUT: python -m pose3d.predict RUN INPUT... "
                              "(or --example DIR)")
        return predict(args)
    except ConfigError as error:
        print(f"error: {error}", file=sys.stderr)
        return EXIT_BAD_INPUT


if __name__ == "__main__":
    sys.exit(main())
