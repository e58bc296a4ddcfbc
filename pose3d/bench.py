"""Benchmarks whose figures go to ``results/bench/<name>.json``.

``python -m pose3d.bench render [--batches N] [--device cpu|cuda]``: images/s of the synthetic
data pipeline (pose sampling, scene, rendering and training augmentation) at the quick
preset's resolution, next to the baseline's training images/s (forward, backward, Adam step)
measured in the same run; the target is rendering at least 3x faster than training consumes.
"""
from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

import torch

from pose3d.train import load_config


def _throughput(step, images_per_call: int, calls: int, warmup: int = 2) -> float:
    for _ in range(warmup):
        step()
    started = time.perf_counter()
    for _ in range(calls):
        step()
    return images_per_call * calls / (time.perf_counter() - started)


def bench_render(batches: int, device: str) -> dict:
    from datamodules import datamodule_class
    from lightning_modules import model_class

    cfg = load_config(["experiment=baseline", "preset=quick"])
    datamodule = datamodule_class(cfg.data.name)(dict(cfg.data))
    train_set = datamodule.dataset("train")
    batch_size = cfg.data.batch_size
    counter = iter(range(10**9))

    def render_step() -> None:
        start = next(counter) * batch_size % len(train_set)
        train_set.__getitems__(list(range(start, min(start + batch_size, len(train_set)))))

    render_ips = _throughput(render_step, batch_size, batches)

    model = model_class(cfg.model.name)(dict(cfg.model), dict(cfg.optim), datamodule.info).to(device)
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
    train_ips = _throughput(train_step, batch_size, batches)
    return {
        "image_size": cfg.data.image_size,
        "batch_size": batch_size,
        "batches": batches,
        "render_images_per_s": round(render_ips, 1),
        "train_images_per_s": round(train_ips, 1),
        "render_over_train": round(render_ips / train_ips, 2),
        "target_render_over_train": 3.0,
        "torch_threads": torch.get_num_threads(),
        "train_device": device,
        "render_device": "cpu",
        "machine": platform.processor() or platform.machine(),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m pose3d.bench", description=__doc__.splitlines()[0])
    parser.add_argument("name", choices=["render"])
    parser.add_argument("--batches", type=int, default=20)
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument("--out", default="results/bench")
    args = parser.parse_args(argv)
    result = bench_render(args.batches, args.device)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"{args.name}.json"
    path.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
