"""Benchmarks whose figures go to ``results/bench/<name>.json``.

``python -m pose3d.bench render [--batches N] [--rounds R] [--device cpu|cuda]``: images/s of
the synthetic data at the quick preset's resolution: ``render`` (pose, camera, scene, pixels)
and ``pipeline`` (the training loader's whole work: + augmentation and targets), next to the
baseline's training images/s (forward, backward, Adam step) measured in the same run. The
target is rendering at least 3x faster than training consumes.

``python -m pose3d.bench lifting [--batch-size B] [--rounds R] [--device cpu|cuda]``: poses/s of
the batched PPCA lifting layer (``pose3d.lifting``, Tome et al. 2017 Sec. 5.3) with a single
Gaussian and with a 3-component mixture (the published model when ``../shared/data`` has it,
else one fitted to synthetic poses), 80 quantised rotations plus refinement, and the mean
3D distance (mm) of its poses to an exhaustive search over 10,000 rotations on the same
inputs. Targets: >= 300,000 poses/s single, >= 100,000 mixture, <= 1 mm. Also, in ``as_found``
and ``beside_busy_process`` (a busy-loop Python process running), poses/s at batch 64 (a Tome
training step's) and at B, with the default intra-op threads and with one: medians over the
rounds, every setting measured once per round, so a shared machine's load hits them alike.

``python -m pose3d.bench deepskeleton [--batches N] [--rounds R] [--device cpu|cuda]``: images/s
of one DeepSkeleton training step (deconvolution and regression losses, backward, Adam) of all
11 hypotheses (l = 5..15, the quick preset's networks) computed batched, against 11
single-hypothesis modules stepped one after another (target: batched >= 3x faster), and the
time to render the 11 pairs of skeleton-map targets of a batch (one distance computation) as a
share of the batched step (target: under 20%); measured with the default intra-op threads and
with one.

``python -m pose3d.bench steps [--preset P] [--batches N] [--threads T] [--experiments a,b]``: images/s
of one training step (forward, backward, optimiser step; the batch is already loaded, so data
loading is excluded) of every experiment at the preset (default quick), prerequisites included,
at the intra-op threads the ablation runner gives a run (``JOBS=auto``: half the cores on a CPU),
median over ``N`` steps after two warm-up steps, each experiment in a fresh process. Trained
prerequisites (a frozen 2D network) are stood in by untrained networks of the same config
(:mod:`harness.stand_ins`), which cost the same per step. With the CPU's model and flags, so a
change that slows a method shows up as a number.

``python -m pose3d.bench compile [--preset P] [--batches N] [--threads T] [--experiments a,b]``: the
same training step eager and under ``torch.compile`` (each network the module holds, compiled
before ``fit``; compiling the whole LightningModule as Lightning documents fails in dynamo at
``self.log`` inside the step; inductor's C++ backend on a CPU), each in a fresh process:
images/s after three warm-up steps (the first compiles), the speed-up, and the seconds the
compiled run spent before its first timed step (the compile cost a run pays once). Default
experiments: baseline, tekin_fusion (every method's networks are convolution stacks of the
same kinds). What it measures decides whether ``torch.compile`` pays on a CPU.

``python -m pose3d.bench two_d_precision [--preset P] [--batches N] [--rounds R] [--device cpu|cuda]``:
the frozen 2D network that Tekin's confidence-map stream reads (``model.two_d`` of
``tekin_fusion`` at the preset; its heatmap chain is trained first if the results folder has
none) in ``float32`` and in ``bfloat16`` autocast: forward images/s with the default intra-op
threads and with one, and on the test split how far the bfloat16 maps and the joints decoded
from them are from the float32 ones, beside each one's 2D error against the labels.
"""
from __future__ import annotations

import argparse
import itertools
import json
import os
import statistics
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path

import torch
from omegaconf import OmegaConf

from harness.train import load_config
from pose3d.arguments import OneLineParser, experiment_list, int_at_least, preset_option, require_cuda
from pose3d.config import ConfigError
from pose3d.files import check_writable, write_atomic
from pose3d.machine import describe_cpu
from pose3d.threads import intra_op_threads


def _throughput(step, images_per_call: int, calls: int) -> float:
    step()  # warm-up
    started = time.perf_counter()
    for _ in range(calls):
        step()
    return images_per_call * calls / (time.perf_counter() - started)


def _throughput_by_threads(steps: dict, images_per_call: int, calls: int, rounds: int) -> dict[str, tuple]:
    """Images/s of each named step, ``rounds`` alternating rounds, with the default intra-op
    threads and with one (the default restored after): ``{"default_threads" | "one_thread":
    (threads, {name: median}, {name: [every round, rounded]})}``."""
    threads = torch.get_num_threads()
    measurements = {}
    for label, count in (("default_threads", threads), ("one_thread", 1)):
        measured: dict[str, list[float]] = {name: [] for name in steps}
        with intra_op_threads(count):
            for _ in range(rounds):
                for name, step in steps.items():
                    measured[name].append(_throughput(step, images_per_call, calls))
        medians = {name: statistics.median(values) for name, values in measured.items()}
        measurements[label] = (count, medians, {name: [round(v, 1) for v in values] for name, values in measured.items()})
    return measurements


def bench_render(batches: int, rounds: int, device: str) -> dict:
    """Median over ``rounds`` of alternating measurements, so that load from other processes
    on a shared machine hits rendering and training alike."""
    from datamodules import DATAMODULES
    from lightning_modules import MODELS

    cfg = load_config(["experiment=baseline", "preset=quick"])
    datamodule = DATAMODULES.load(cfg.data.name)(dict(cfg.data))
    train_set = datamodule.dataset("train")
    batch_size = cfg.data.batch_size
    starts = itertools.count(0, batch_size)

    def next_indices() -> list[int]:
        start = next(starts) % (len(train_set) - batch_size)
        return list(range(start, start + batch_size))

    def render_step() -> None:  # the synthetic data itself: pose, camera, scene, pixels
        train_set.render([train_set.describe(i) for i in next_indices()])

    def pipeline_step() -> None:  # what the training loader does: + augmentation, targets
        train_set.__getitems__(next_indices())

    model = MODELS.load(cfg.model.name)(dict(cfg.model), dict(cfg.optim), datamodule.info).to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=cfg.optim.lr)
    samples = train_set.__getitems__(list(range(batch_size)))
    batch = {k: torch.stack([s[k] for s in samples]).to(device) for k in samples[0]}

    def train_step() -> None:
        loss, _ = model.training_loss(batch)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        if device == "cuda":
            torch.cuda.synchronize()

    model.train()
    measured: dict[str, list[float]] = {"render": [], "pipeline": [], "train": []}
    for _ in range(rounds):
        for name, step in (("render", render_step), ("pipeline", pipeline_step), ("train", train_step)):
            measured[name].append(_throughput(step, batch_size, batches))
    render, pipeline, train = (statistics.median(measured[k]) for k in ("render", "pipeline", "train"))
    return {
        "image_size": cfg.data.image_size,
        "batch_size": batch_size,
        "batches_per_round": batches,
        "rounds": rounds,
        "render_images_per_s": round(render, 1),
        "pipeline_images_per_s": round(pipeline, 1),
        "train_images_per_s": round(train, 1),
        "render_over_train": round(render / train, 2),
        "pipeline_over_train": round(pipeline / train, 2),
        "target_render_over_train": 3.0,
        "all_rounds": {k: [round(v, 1) for v in vals] for k, vals in measured.items()},
        "torch_threads": torch.get_num_threads(),
        "train_device": device,
        "render_device": "cpu",
        "machine": describe_cpu(),
    }


SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


def _lifting_inputs(count: int, seed: int = 0):
    """2D joints (count, 17, 2) float64: synthetic poses at random yaw, weak perspective at
    about 200 px per body height, with 2 px Gaussian noise."""
    import numpy as np

    from pose3d.ppca import load_synthetic

    rng = np.random.default_rng(seed)
    poses = load_synthetic(count, seed=seed)
    joints = 0.12 * poses[..., :2] + rng.uniform(100, 400, (count, 1, 2)) + rng.normal(0, 2.0, (count, 17, 2))
    return torch.as_tensor(joints)


def _lifting_prior():
    """(mixture prior, where it came from): the published model, or a fit to synthetic poses."""
    from pose3d import ppca

    release = SHARED_DATA / "tome2017_ppca" / "prob_model_params.mat"
    if release.is_file():
        return ppca.load_tome_release(release), "tome2017 release (3 x 25)"
    return ppca.fit(ppca.load_synthetic(20000), components=3, basis=25), "fitted to synthetic poses (3 x 25)"


def _single(prior, k: int = 0):
    from pose3d.ppca import PosePrior

    return PosePrior(prior.means[k:k + 1], prior.basis[k:k + 1], prior.variances[k:k + 1],
                     prior.noise[k:k + 1], [1.0], prior.unit_mm)


@contextmanager
def _competing_process():
    """A busy-loop Python process (pinned to no core) for the duration of the block: the load
    that another run or program puts on a shared machine."""
    child = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        time.sleep(0.5)  # let it start spinning
        yield child
    finally:
        child.kill()
        child.wait()


def _lifting_throughputs(lifters: dict, inputs, batch_sizes: dict[int, int], rounds: int, device: str) -> dict:
    """``{"batch_<B>": {"default_threads" | "one_thread": {name: median poses/s}, "all_rounds": ...}}``
    of each lifter, ``batch_sizes`` mapping a batch size to the calls per round."""
    out = {}
    for batch_size, calls in batch_sizes.items():
        batch = inputs[:batch_size].to(device=device, dtype=torch.float32)

        def step(lifter) -> None:
            lifter(batch)
            if device == "cuda":
                torch.cuda.synchronize()

        steps = {name: (lambda lifter=lifter: step(lifter)) for name, lifter in lifters.items()}
        measured = _throughput_by_threads(steps, batch_size, calls, rounds)
        out[f"batch_{batch_size}"] = {
            **{label: {name: round(v, 1) for name, v in median.items()} for label, (_, median, _) in measured.items()},
            "all_rounds": {label: rounds_of for label, (_, _, rounds_of) in measured.items()}}
    return out


def bench_lifting(batch_size: int, rounds: int, device: str, compare: int = 2000, rotations: int = 80,
                  small_batch: int = 64) -> dict:
    """Median poses/s over ``rounds`` (each lifting ``batch_size`` poses 3 times), and the
    difference to an exhaustive 10,000-rotation search (float64) on ``compare`` poses.

    ``small_batch`` (a Tome training step's batch) and ``batch_size`` are also measured with the
    default intra-op threads and with one, on the machine as it is (``as_found``) and beside a
    busy-loop process (``beside_busy_process``), all settings alternating within each round."""
    from pose3d.lifting import SINGLE_THREAD_BELOW, Lifter

    mixture, source = _lifting_prior()
    models = {"single": _single(mixture), "mixture": mixture}
    inputs = _lifting_inputs(max(batch_size, compare))
    batch = inputs[:batch_size].to(device=device, dtype=torch.float32)
    result: dict = {"prior": source}
    threads = torch.get_num_threads()
    load_before = os.getloadavg()[0] if hasattr(os, "getloadavg") else None
    lifters = {}
    for name, prior in models.items():
        lifter = lifters[name] = Lifter(prior, rotations=rotations, device=device, dtype=torch.float32)

        def step() -> None:
            lifter(batch)
            if device == "cuda":
                torch.cuda.synchronize()

        speeds = [_throughput(step, batch_size, 3) for _ in range(rounds)]
        result[f"poses_per_s_{name}"] = round(statistics.median(speeds), 1)
        result[f"all_rounds_{name}"] = [round(v, 1) for v in speeds]
        if device == "cpu" and threads > 1:  # one intra-op thread: robust on a shared machine
            with intra_op_threads(1):
                one = [_throughput(step, batch_size, 3) for _ in range(rounds)]
            result[f"poses_per_s_{name}_1_thread"] = round(statistics.median(one), 1)
        fast = lifter(inputs[:compare].to(device=device, dtype=torch.float32)).joints_3d.double().cpu()
        exhaustive = Lifter(prior, rotations=10000, refine=False, device=device, dtype=torch.float64)
        slow = exhaustive(inputs[:compare].to(device)).joints_3d.cpu()
        diff = (fast - slow).norm(dim=-1).mean(-1)
        result[f"mean_diff_vs_exhaustive_mm_{name}"] = round(float(diff.mean()), 4)
        result[f"median_diff_vs_exhaustive_mm_{name}"] = round(float(diff.median()), 4)
        result[f"max_diff_vs_exhaustive_mm_{name}"] = round(float(diff.max()), 2)
    sizes = {small_batch: max(3, 3 * batch_size // small_batch // 16), batch_size: 3}
    result["as_found"] = _lifting_throughputs(lifters, inputs, sizes, rounds, device)
    with _competing_process():
        result["beside_busy_process"] = _lifting_throughputs(lifters, inputs, sizes, rounds, device)
    result.update({
        "mean_diff_vs_exhaustive_mm": max(result["mean_diff_vs_exhaustive_mm_single"],
                                          result["mean_diff_vs_exhaustive_mm_mixture"]),
        "batch_size": batch_size,
        "small_batch_size": small_batch,
        "single_thread_below": SINGLE_THREAD_BELOW,
        "competing_process": "python -c 'while True: pass', not pinned, alive during beside_busy_process",
        "device": device,
        "rotations": rotations,
        "refine": True,
        "exhaustive_rotations": 10000,
        "compared_poses": compare,
        "dtype": "float32",
        "target_poses_per_s_single": 300000,
        "target_poses_per_s_mixture": 100000,
        "target_mean_diff_mm": 1.0,
        "torch_threads": threads,
        "load_average_before": load_before,
        "load_average_after": os.getloadavg()[0] if hasattr(os, "getloadavg") else None,
        "machine": describe_cpu(),
    })
    return result


def bench_deepskeleton(batches: int, rounds: int, device: str) -> dict:
    """See the module docstring (``deepskeleton``)."""
    from datamodules import DATAMODULES
    from lightning_modules import MODELS
    from pose3d.targets import skeleton_maps

    overrides = ["experiment=deepskeleton", "preset=quick", "variant=multi_hyp", "model.max_hypotheses=null",
                 "model.deconv_epochs=0", "model.freeze_deconv=false", "model.two_d.source=ground_truth"]
    cfg = load_config(overrides)
    datamodule = DATAMODULES.load(cfg.data.name)(dict(cfg.data))
    train_set = datamodule.dataset("train")
    batch_size, size = cfg.data.batch_size, cfg.data.image_size
    samples = train_set.__getitems__(list(range(batch_size)))
    batch = {k: torch.stack([s[k] for s in samples]) for k in samples[0] if torch.is_tensor(samples[0][k])}
    cls = MODELS.load(cfg.model.name)
    torch.manual_seed(0)
    batched = cls(dict(cfg.model), dict(cfg.optim), datamodule.info).to(device).train()
    spec = batched.required_targets()["skeleton_maps"]
    batch["skeleton_maps"] = skeleton_maps(batch, size, spec)
    batch = {k: v.to(device) for k, v in batch.items()}
    singles = []
    for width in cfg.model.stick_widths:
        model = cls({**dict(cfg.model), "stick_widths": [width]}, dict(cfg.optim), datamodule.info).to(device).train()
        singles.append((model, torch.optim.Adam(model.parameters(), lr=cfg.optim.lr),
                        {**batch, "skeleton_maps": skeleton_maps(batch, size, model.required_targets()["skeleton_maps"])}))
    optimizer = torch.optim.Adam(batched.parameters(), lr=cfg.optim.lr)

    def sync() -> None:
        if device == "cuda":
            torch.cuda.synchronize()

    def step(model, opt, data) -> None:
        loss, _ = model.training_loss(data)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    def batched_step() -> None:
        step(batched, optimizer, batch)
        sync()

    def separate_step() -> None:
        for model, opt, data in singles:
            step(model, opt, data)
        sync()

    def render_step() -> None:
        skeleton_maps(batch, size, spec)
        sync()

    result: dict = {"hypotheses": len(singles), "image_size": size, "map_size": batched.map_size,
                    "stick_widths_map_px": [round(w, 3) for w in batched.map_widths], "batch_size": batch_size,
                    "batches_per_round": batches, "rounds": rounds, "train_device": device,
                    "machine": describe_cpu(),
                    "load_average_before": list(os.getloadavg()) if hasattr(os, "getloadavg") else None}
    steps = {"batched": batched_step, "separate": separate_step, "render": render_step}
    for label, (count, median, all_rounds) in _throughput_by_threads(steps, batch_size, batches, rounds).items():
        b, sep, r = median["batched"], median["separate"], median["render"]
        result[label] = {
            "torch_threads": count,
            "batched_images_per_s": round(b, 1),
            "separate_images_per_s": round(sep, 1),
            "batched_speedup": round(b / sep, 2),
            "render_images_per_s": round(r, 1),
            "render_share_of_step": round(b / r, 3),  # render time / batched step time
            "all_rounds": all_rounds,
        }
    result["target_batched_speedup"] = 3.0
    result["target_render_share_of_step"] = 0.2
    return result


def bench_two_d_precision(preset: str, batches: int, rounds: int, device: str, overrides: tuple[str, ...] = ()) -> dict:
    """See the module docstring (``two_d_precision``); ``overrides``: more ``key=value`` settings
    of the tekin_fusion run (``results_dir=...``)."""
    from datamodules import DATAMODULES
    from harness.prerequisites import resolve
    from lightning_modules import MODELS
    from lightning_modules.blocks.two_d_source import TwoDSource, cpu_has_native_bfloat16

    cfg = load_config(["experiment=tekin_fusion", f"preset={preset}", "model.two_d.source=predicted", *overrides])
    resolve(MODELS.load(cfg.model.name), cfg)  # the heatmap chain: reused, or trained now
    datamodule = DATAMODULES.load(cfg.data.name)(dict(cfg.data))
    test_set = datamodule.dataset("test")
    batch_size, size = cfg.data.batch_size, cfg.data.image_size
    sources = {precision: TwoDSource(OmegaConf.merge(cfg.model.two_d, {"precision": precision}), size).to(device)
               for precision in ("float32", "bfloat16")}

    def load(start: int) -> dict:
        samples = test_set.__getitems__([(start + i) % len(test_set) for i in range(batch_size)])
        return {k: torch.stack([s[k] for s in samples]).to(device) for k in ("image", "joints_2d", "visible")}

    batches_seen = [load(i * batch_size) for i in range(batches)]
    maps = {p: [source.maps(b) for b in batches_seen] for p, source in sources.items()}
    joints = {p: [sources[p].joints_2d(m) for m in maps[p]] for p in maps}
    visible = torch.cat([b["visible"] for b in batches_seen])
    labels = torch.cat([b["joints_2d"] for b in batches_seen])[visible]

    def error(p: str) -> float:
        return float((torch.cat(joints[p])[visible] - labels).norm(dim=-1).mean())

    moved = (torch.cat(joints["bfloat16"]) - torch.cat(joints["float32"])).norm(dim=-1)[visible]
    map_difference = max(float((a - b).abs().max()) for a, b in zip(maps["bfloat16"], maps["float32"]))
    result: dict = {"preset": preset, "image_size": size, "map_size": sources["float32"].map_size,
                    "batch_size": batch_size, "batches_per_round": batches, "rounds": rounds, "device": device,
                    "checkpoint": cfg.model.two_d.checkpoint, "cpu_native_bfloat16": cpu_has_native_bfloat16(),
                    "machine": describe_cpu(),
                    "test_images": batch_size * batches,
                    "max_abs_map_difference": round(map_difference, 5),
                    "joints_moved_px": {"mean": round(float(moved.mean()), 4), "max": round(float(moved.max()), 4),
                                        "share_moved": round(float((moved > 0).float().mean()), 4)},
                    "error_2d_px": {p: round(error(p), 4) for p in sources}}

    def forward(p: str):
        def step() -> None:
            sources[p].maps(batches_seen[0])
            if device == "cuda":
                torch.cuda.synchronize()
        return step

    steps = {p: forward(p) for p in sources}
    for label, (count, median, all_rounds) in _throughput_by_threads(steps, batch_size, batches, rounds).items():
        f32, bf16 = median["float32"], median["bfloat16"]
        result[label] = {"torch_threads": count, "float32_images_per_s": round(f32, 1),
                         "bfloat16_images_per_s": round(bf16, 1), "bfloat16_speedup": round(bf16 / f32, 2),
                         "all_rounds": all_rounds}
    return result


def _step_images_per_s(experiment: str, preset: str, batches: int, threads: int, compiled: bool = False) -> dict:
    """One experiment's training-step speed (see ``steps`` in the module docstring), in this
    process; ``compiled``: the module under ``torch.compile``, one more warm-up step."""
    import tempfile

    import lightning.pytorch as pl

    from harness.stand_ins import build

    torch.set_num_threads(threads)
    times: list[float] = []
    warm_up = 3 if compiled else 2

    class StepTimer(pl.Callback):
        def on_train_batch_start(self, trainer, module, batch, batch_idx) -> None:
            self.started = time.perf_counter()

        def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx) -> None:
            times.append(time.perf_counter() - self.started)

    with tempfile.TemporaryDirectory() as folder:
        cfg, datamodule, model = build(experiment, preset, Path(folder), ("data.num_workers=0",))
        if compiled:  # the networks, not the LightningModule: dynamo cannot trace self.log in a step
            for name, child in list(model.named_children()):
                if any(True for _ in child.parameters()):
                    setattr(model, name, torch.compile(child))
        started = time.perf_counter()
        trainer = pl.Trainer(max_steps=batches + warm_up, default_root_dir=folder, limit_val_batches=0, num_sanity_val_steps=0, logger=False,
                             enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
                             accelerator="cpu", callbacks=[StepTimer()])
        trainer.fit(model, datamodule=datamodule)
        total = time.perf_counter() - started
    step = statistics.median(times[warm_up:])
    batch_size = int(cfg.data.batch_size)
    return {"images_per_s": round(batch_size / step, 1), "batch_size": batch_size, "step_ms": round(1000 * step, 1),
            "image_size": int(cfg.data.image_size), "steps_timed": len(times) - warm_up,
            "seconds_before_timed_steps": round(total - sum(times[warm_up:]), 1)}


def _step_in_fresh_process(*args) -> dict:
    """:func:`_step_images_per_s` in a spawned child process (a clean allocator and thread pool,
    no state from the previous measurement)."""
    import multiprocessing

    with multiprocessing.get_context("spawn").Pool(1) as pool:
        return pool.apply(_step_images_per_s, args)


def _steps_header(preset: str, batches: int, threads: int) -> dict:
    return {"preset": preset, "torch_threads": threads, "steps_per_experiment": batches, "torch": torch.__version__,
            "machine": describe_cpu(), "load_average_before": list(os.getloadavg()), "experiments": {}}


def bench_steps(preset: str, batches: int, threads: int, experiments: list[str]) -> dict:
    """Each experiment's :func:`_step_images_per_s`, each in a fresh process."""
    result = _steps_header(preset, batches, threads)
    for experiment in experiments:
        result["experiments"][experiment] = _step_in_fresh_process(experiment, preset, batches, threads)
        print(f"{experiment}: {result['experiments'][experiment]['images_per_s']} images/s", flush=True)
    return result


def bench_compile(preset: str, batches: int, threads: int, experiments: list[str]) -> dict:
    """Each experiment's :func:`_step_images_per_s` eager and compiled, each in a fresh process."""
    result = _steps_header(preset, batches, threads)
    for experiment in experiments:
        runs = {mode: _step_in_fresh_process(experiment, preset, batches, threads, mode == "compiled")
                for mode in ("eager", "compiled")}
        runs["speedup"] = round(runs["compiled"]["images_per_s"] / runs["eager"]["images_per_s"], 2)
        result["experiments"][experiment] = runs
        print(f"{experiment}: eager {runs['eager']['images_per_s']}, compiled {runs['compiled']['images_per_s']} "
              f"images/s ({runs['speedup']}x)", flush=True)
    return result


BENCHMARKS = {
    "render": "images/s of the synthetic data's rendering and loading beside the baseline's training",
    "lifting": "poses/s and accuracy of the batched PPCA lifting (Tome 2017), single and mixture",
    "deepskeleton": "images/s of DeepSkeleton's 11 hypotheses batched against one after another",
    "two_d_precision": "the frozen 2D network of tekin_fusion in float32 and bfloat16 (--preset)",
    "steps": "images/s of one training step of every experiment (--preset, --experiments, --threads)",
    "compile": "the training step eager and under torch.compile (--preset, --experiments, --threads)",
}


def main(argv: list[str] | None = None) -> int:
    from harness.cli_help import config_guide

    parser = OneLineParser(prog="python -m pose3d.bench", description=__doc__.splitlines()[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter,
                                     epilog="benchmarks (NAME):\n" + "\n".join(f"  {name:<16} {what}" for name, what in
                                                                             BENCHMARKS.items())
                                            + "\n(each in detail: the docstring of harness/bench.py)\n\n" + config_guide())
    parser.add_argument("name", choices=list(BENCHMARKS))
    preset_option(parser, "quick", "steps, compile, two_d_precision: the experiments' preset")
    parser.add_argument("--threads", type=int_at_least(1), default=max(1, (os.cpu_count() or 2) // 2),
                        help="steps, compile: intra-op threads (default: what the ablation runner gives a run, half the cores)")
    parser.add_argument("--experiments", type=experiment_list, default=[],
                        help="steps, compile: comma-separated experiments (default: all; compile: baseline, tekin_fusion)")
    parser.add_argument("--batches", type=int_at_least(1), default=10)
    parser.add_argument("--rounds", type=int_at_least(1), default=3)
    parser.add_argument("--batch-size", type=int_at_least(1), default=16384, help="lifting: poses per call")
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument("--out", default="results/bench")
    args = parser.parse_args(argv)
    require_cuda(parser, args.device)
    try:
        check_writable(args.out, "a writable folder for --out")
    except ConfigError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    if args.name == "lifting":
        result = bench_lifting(args.batch_size, args.rounds, args.device)
    elif args.name == "deepskeleton":
        result = bench_deepskeleton(args.batches, args.rounds, args.device)
    elif args.name == "steps":
        from pose3d.config import available_experiments

        result = bench_steps(args.preset, args.batches, args.threads, args.experiments or available_experiments())
    elif args.name == "compile":
        result = bench_compile(args.preset, args.batches, args.threads, args.experiments or ["baseline", "tekin_fusion"])
    elif args.name == "two_d_precision":
        result = bench_two_d_precision(args.preset, args.batches, args.rounds, args.device)
    else:
        result = bench_render(args.batches, args.rounds, args.device)
    path = Path(args.out) / f"{args.name}.json"
    try:
        write_atomic(path, json.dumps(result, indent=2) + "\n")
    except ConfigError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(json.dumps(result, indent=2))
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
