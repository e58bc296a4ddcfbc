"""``make gpu-check``: what every experiment's paper preset does on this machine's GPU.

``python -m harness.gpu_check [--steps 20] [--warmup 5] [--workers N] [--out results/bench/gpu.json]``

For every ``experiments/*.yaml`` at its ``paper`` preset: build the DataModule and the model
(a prerequisite network, e.g. Tekin's 2D heatmap net, is an untrained stand-in of the same
architecture, saved as a checkpoint the method loads as it would a trained one; a fitted
pose prior is fitted as for a real run), then

* the training step (forward, loss, backward, Adam step) on a batch of the data at paper
  resolution, resident on the GPU: images/s in float32 and with bf16 autocast plus
  ``channels_last`` (the faster is reported as ``best_mode``), and the peak GPU memory of each;
* the data pipeline (the training DataLoader: synthetic rendering, augmentation and targets)
  on ``--workers`` CPU worker processes: images/s;
* which one limits a training step: ``loader`` when the pipeline delivers fewer images/s
  than the best step consumes, else ``gpu``.

Results go to ``results/bench/gpu.json``. On a machine without CUDA the check says so and
exits 0 without writing anything. ``--device cpu --preset smoke`` runs the same code on the
CPU (the tests do, so the GPU path is exercised without a GPU). For synthetic data the
pipeline is measured a second time with ``data.render_device`` on the GPU (rasterised in the
main process, no workers): ``pipeline_gpu_render`` and ``limited_by_with_gpu_render``.
"""
from __future__ import annotations

import json
import os
import platform
import sys
import tempfile
import time
from contextlib import nullcontext
from pathlib import Path

from harness.stand_ins import build
from pose3d.arguments import OneLineParser, experiment_list, int_at_least, preset_option
from pose3d.config import EXPERIMENTS_DIR, REPO_ROOT, ConfigError
from pose3d.files import check_writable, write_atomic

MODES = ("fp32", "bf16_channels_last")
BUDGET_S = 420  # stop starting new experiments after this (the check must stay under 8 minutes)


def no_cuda_message() -> str | None:
    import torch

    if torch.cuda.is_available():
        return None
    build = torch.version.cuda or "none (a CPU build)"
    return (f"gpu-check: no CUDA device on this machine (torch {torch.__version__}, CUDA build {build}); "
            "nothing measured, nothing written. Run `make gpu-check` on a GPU machine.")


def experiments() -> list[str]:
    return sorted(p.stem for p in EXPERIMENTS_DIR.glob("*.yaml"))


def _sync(device: str) -> None:
    import torch

    if device == "cuda":
        torch.cuda.synchronize()


def measure_step(model, batch: dict, device: str, mode: str, steps: int, warmup: int) -> dict:
    """Images/s of the training step on a batch already on ``device``, and its peak memory."""
    import torch

    channels_last = mode == "bf16_channels_last"
    model = model.to(device=device, memory_format=torch.channels_last if channels_last else torch.contiguous_format)
    model.train()
    if channels_last:
        batch = {k: v.contiguous(memory_format=torch.channels_last) if k == "image" else v for k, v in batch.items()}
    parameters = [p for group in model.parameter_groups() for p in group["params"]]
    optimizer = torch.optim.Adam(parameters, lr=1e-4)
    autocast = torch.autocast(device_type=device, dtype=torch.bfloat16) if mode != "fp32" else nullcontext()
    if device == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()

    def step() -> None:
        with autocast:
            loss, _ = model.training_loss(batch)
        optimizer.zero_grad(set_to_none=True)
        loss.float().backward()
        optimizer.step()

    for _ in range(warmup):
        step()
    _sync(device)
    started = time.perf_counter()
    for _ in range(steps):
        step()
    _sync(device)
    seconds = time.perf_counter() - started
    size = int(batch["image"].shape[0])
    out = {"images_per_s": round(size * steps / seconds, 1), "step_ms": round(1000 * seconds / steps, 2)}
    if device == "cuda":
        out["peak_memory_mb"] = round(torch.cuda.max_memory_allocated() / 2**20, 1)
    return out


def measure_pipeline(datamodule, batches: int) -> dict:
    """Images/s of the training DataLoader on its CPU workers (after the first batch: the
    workers' start-up is not part of the rate)."""
    loader = datamodule.train_dataloader()
    iterator = iter(loader)
    first = next(iterator)
    started = time.perf_counter()
    images = 0
    for _ in range(batches):
        try:
            batch = next(iterator)
        except StopIteration:
            break
        images += int(batch["image"].shape[0])
    seconds = time.perf_counter() - started
    del iterator, first
    return {"images_per_s": round(images / seconds, 1) if seconds > 0 and images else None,
            "workers": loader.num_workers, "batches": batches}


def check_experiment(experiment: str, preset: str, device: str, modes: tuple[str, ...], steps: int, warmup: int,
                     workers: int, loader_batches: int, folder: Path) -> dict:
    import torch

    cfg, datamodule, model = build(experiment, preset, folder, workers=workers)
    result: dict = {"model": cfg.model.name, "image_size": int(cfg.data.image_size), "batch_size": int(cfg.data.batch_size),
                    "parameters_m": round(sum(p.numel() for p in model.parameters()) / 1e6, 2), "modes": {}}
    samples = datamodule.dataset("train").__getitems__(list(range(int(cfg.data.batch_size))))
    batch = {k: torch.stack([s[k] for s in samples]).to(device, non_blocking=True) for k in samples[0]}
    for mode in modes:
        try:
            result["modes"][mode] = measure_step(model, batch, device, mode, steps, warmup)
        except torch.cuda.OutOfMemoryError as error:
            result["modes"][mode] = {"error": f"out of GPU memory: {str(error).splitlines()[0]}"}
            torch.cuda.empty_cache()
        except RuntimeError as error:  # e.g. an op of the method that bf16 autocast does not cover
            result["modes"][mode] = {"error": f"{type(error).__name__}: {str(error).splitlines()[0]}"}
        finally:
            model.to(memory_format=torch.contiguous_format)
    measured = {m: r for m, r in result["modes"].items() if "images_per_s" in r}
    if not measured:
        raise RuntimeError("no mode ran: " + "; ".join(f"{m}: {r['error']}" for m, r in result["modes"].items()))
    if measured:
        best = max(measured, key=lambda m: measured[m]["images_per_s"])
        result["best_mode"] = best
        result["step_images_per_s"] = measured[best]["images_per_s"]
        if "fp32" in measured and best != "fp32":
            result["speedup_over_fp32"] = round(measured[best]["images_per_s"] / measured["fp32"]["images_per_s"], 2)
    pipeline = measure_pipeline(datamodule, loader_batches)
    result["pipeline_cpu_workers"] = pipeline
    result["pipeline_gpu_render"] = measure_device_rendering(cfg, model, device, loader_batches)
    if measured and pipeline["images_per_s"]:
        ratio = pipeline["images_per_s"] / result["step_images_per_s"]
        result["loader_over_step"] = round(ratio, 2)
        result["limited_by"] = "loader" if ratio < 1.0 else "gpu" if device == "cuda" else "compute"
        rendered = (result["pipeline_gpu_render"] or {}).get("images_per_s")
        if rendered:
            result["limited_by_with_gpu_render"] = "loader" if rendered < result["step_images_per_s"] else (
                "gpu" if device == "cuda" else "compute")
    return result


def measure_device_rendering(cfg, model, device: str, batches: int) -> dict | None:
    """The synthetic pipeline with ``data.render_device`` on the step's device (main process,
    no workers: a forked worker cannot use CUDA); None for real data (nothing to render)."""
    from omegaconf import OmegaConf

    from datamodules import DATAMODULES

    if cfg.data.name != "synthetic":
        return None
    data = {**OmegaConf.to_container(cfg.data), "num_workers": 0, "render_device": device}
    datamodule = DATAMODULES.load("synthetic")(data)
    datamodule.request_targets(model.required_targets())
    return {**measure_pipeline(datamodule, batches), "render_device": device}


def main(argv: list[str] | None = None) -> int:
    parser = OneLineParser(prog="python -m harness.gpu_check", description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda", choices=["cuda", "cpu"],
                        help="cuda (default); cpu runs the same measurements on the CPU (for testing)")
    preset_option(parser, "paper", "the experiments' preset")
    parser.add_argument("--experiments", type=experiment_list, default=[],
                        help="comma-separated (default: every experiments/*.yaml)")
    parser.add_argument("--modes", default=",".join(MODES), help=f"of {', '.join(MODES)}")
    parser.add_argument("--steps", type=int_at_least(1), default=20)
    parser.add_argument("--warmup", type=int_at_least(0), default=5)
    parser.add_argument("--workers", type=int_at_least(0), default=min(os.cpu_count() or 1, 16), help="DataLoader workers")
    parser.add_argument("--loader-batches", type=int_at_least(1), default=20)
    parser.add_argument("--out", default=str(REPO_ROOT / "results" / "bench" / "gpu.json"))
    args = parser.parse_args(argv)
    modes = tuple(m for m in args.modes.split(",") if m)
    unknown = [m for m in modes if m not in MODES]
    if unknown or not modes:
        parser.error(f"argument --modes: unknown mode {unknown[0] if unknown else ''!r}; expected some of {', '.join(MODES)}")
    if args.device == "cuda":
        message = no_cuda_message()
        if message:
            print(message, flush=True)
            return 0
    try:
        check_writable(Path(args.out).parent, "a writable folder for --out")
    except ConfigError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    import torch

    if args.device == "cuda":
        torch.backends.cudnn.benchmark = True  # fixed input sizes: let cuDNN pick its fastest kernels
    names = args.experiments or experiments()
    report: dict = {
        "device": torch.cuda.get_device_name(0) if args.device == "cuda" else platform.processor() or platform.machine(),
        "torch": torch.__version__, "cuda": torch.version.cuda, "preset": args.preset, "cpu_count": os.cpu_count(),
        "steps": args.steps, "warmup": args.warmup, "experiments": {},
        "notes": "images/s of the training step on a resident batch; pipeline = the training DataLoader on CPU "
                 "workers; limited_by: loader if the pipeline delivers fewer images/s than the best step consumes; "
                 "pipeline_gpu_render: the synthetic pipeline rendering on the GPU (data.render_device).",
    }
    started = time.perf_counter()
    failed = []
    with tempfile.TemporaryDirectory(prefix="gpu-check-") as folder:
        for name in names:
            if time.perf_counter() - started > BUDGET_S:
                report["experiments"][name] = {"skipped": f"over the {BUDGET_S} s budget"}
                continue
            print(f"gpu-check: {name} ({args.preset}) ...", flush=True)
            t0 = time.perf_counter()
            try:
                result = check_experiment(name, args.preset, args.device, modes, args.steps, args.warmup, args.workers,
                                          args.loader_batches, Path(folder))
            except Exception as error:  # one experiment's failure is reported, the others still run
                result = {"error": f"{type(error).__name__}: {str(error).splitlines()[0] if str(error) else ''}"}
                failed.append(name)
            result["seconds"] = round(time.perf_counter() - t0, 1)
            report["experiments"][name] = result
            print(f"gpu-check: {name}: {summary_line(result)}", flush=True)
    report["seconds"] = round(time.perf_counter() - started, 1)
    out = Path(args.out)
    try:
        write_atomic(out, json.dumps(report, indent=2) + "\n")
    except ConfigError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(f"gpu-check: written {out} ({report['seconds']} s)", flush=True)
    if failed:
        print(f"error: gpu-check failed for {', '.join(failed)}; see {out}", file=sys.stderr)
        return 1
    return 0


def summary_line(result: dict) -> str:
    if "error" in result:
        return f"FAILED ({result['error']})"
    parts = [f"{m} {r['images_per_s']} img/s" + (f", peak {r['peak_memory_mb']} MB" if "peak_memory_mb" in r else "")
             for m, r in result["modes"].items() if "images_per_s" in r]
    parts += [f"{m}: {r['error']}" for m, r in result["modes"].items() if "error" in r]
    pipeline = result.get("pipeline_cpu_workers", {})
    parts.append(f"loader {pipeline.get('images_per_s')} img/s on {pipeline.get('workers')} workers")
    if "limited_by" in result:
        parts.append(f"limited by the {result['limited_by']}")
    return "; ".join(parts)


if __name__ == "__main__":
    sys.exit(main())
