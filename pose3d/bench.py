"""Benchmarks whose figures go to ``results/bench/<name>.json``.

``python -m pose3d.bench render [--batches N] [--rounds R] [--device cpu|cuda]``: images/s of
the synthetic data at the quick preset's resolution: ``render`` (pose, camera, scene, pixels)
and ``pipeline`` (the training loader's whole work: + augmentation and targets), next to the
baseline's training images/s (forward, backward, Adam step) measured in the same run. The
target is rendering at least 3x faster than training consumes.
"""
from __future__ import annotations

import argparse
import itertools
import json
import platform
import statistics
import sys
import time
from pathlib import Path

import torch

from pose3d.train import load_config


def _throughput(step, images_per_call: int, calls: int) -> float:
    step()  # warm-up
    started = time.perf_counter()
    for _ in range(calls):
        step()
    return images_per_call * calls / (time.perf_counter() - started)


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
        "machine": platform.processor() or platform.machine(),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m pose3d.bench", description=__doc__.splitlines()[0])
    parser.add_argument("name", choices=["render"])
    parser.add_argument("--batches", type=int, default=10)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument("--out", default="results/bench")
    args = parser.parse_args(argv)
    result = bench_render(args.batches, args.rounds, args.device)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"{args.name}.json"
    path.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
