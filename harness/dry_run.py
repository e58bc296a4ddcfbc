"""``make dry-run``: every experiment at every preset builds and takes one training and one
validation step on the CPU, without training anything first.

``python -m harness.dry_run [--out results/dry_run.json] [--human36m-root DIR] [--experiments a,b]
[--presets smoke,quick,paper] [--threads N]``

For every ``experiments/*.yaml`` (the prerequisite experiments ``heatmap2d`` and
``habibie_2d_pretrain`` included) and every preset, on the synthetic data, and at the
``paper`` preset also on the Human3.6M copy at ``--human36m-root`` (the tests write a tiny one
in the published layout, ``python -m tests.fixtures_h36m DIR``): resolve the config, build the
model with its prerequisites stood in by freshly built, untrained networks
(:mod:`harness.stand_ins`), then run one training step (forward, loss, backward, the
configured optimiser's step with its schedule) and one validation step through a Lightning
``Trainer(fast_dev_run=1)`` at batch 2 and the preset's own image size. A case that cannot
resolve, build or step is reported with its one-line error and makes the command exit 1.

Each case runs in its own child process, forked after the shared imports (so that a case
costs its build and its steps, not seconds of imports) and ended after the case, so that one
case's memory is not another's. Memory is the peak resident set size (RSS) of that process
during the step minus its RSS when the step starts (the model, the batch and the stand-ins
already in memory): the gradients, the optimiser state and the activations the step needs.
RSS, not ``tracemalloc``: torch's CPU tensors are allocated by its C++ allocator, which
``tracemalloc`` (Python allocations only) does not see. The peak is read from the kernel's
high-water mark ``VmHWM``, reset to the current RSS just before each step
(``/proc/self/clear_refs``), so memory touched while building (stand-in checkpoints, the pose
prior's fit) does not count; where that reset is not allowed, the lifetime peak
``getrusage(RUSAGE_SELF).ru_maxrss`` stands in (an upper bound) and ``memory_method`` says so.
The child sets glibc's ``mallopt`` so that every block of 128 kB or more is its own mapping
and freed memory is trimmed back to the system: memory freed before the step is not silently
reused by it, and the step's own needs show in the RSS (an allocator that keeps freed memory,
such as a preloaded tcmalloc, would hide them; run the dry run without it).

The JSON (``--out``) has one entry per case (``<experiment>/<preset>/<data>``) with the
parameter count, the step's peak memory (MB and MB per image, training and validation; the
training figure includes the gradients and the optimiser state, ``grad_and_optimizer_state_mb``,
which do not grow with the batch), the loss and the seconds, and ``paper``: per experiment on the synthetic data the paper preset's
parameters and training-step memory per image, the basis for sizing GPU runs (a GPU's
activation memory differs from the CPU's; the parameter, gradient and optimiser memory is the
same).
"""
from __future__ import annotations

import argparse
import json
import math
import os
import platform
import resource
import sys
import tempfile
import time
from pathlib import Path

from pose3d.config import PRESETS, REPO_ROOT, available_experiments

BATCH = 2
MB = 2**20
M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3  # glibc's mallopt parameters
ALLOCATOR_THRESHOLD = 128 * 1024
HUMAN36M_ONLY = ("h36m_poses",)  # presets that read Human3.6M's pose files: no synthetic case
DEFAULT_PRESETS = tuple(p for p in PRESETS if p not in HUMAN36M_ONLY)  # h36m_poses: tests/test_h36m_standin.py


# -- memory of this process ------------------------------------------------------------------
def _status_kb(field: str) -> int | None:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
    except OSError:
        return None
    return None


def rss_bytes() -> int:
    """The current resident set size (0 where /proc is missing)."""
    return 1024 * (_status_kb("VmRSS") or 0)


def reset_peak() -> bool:
    """Reset the kernel's RSS high-water mark to the current RSS; False if not allowed."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        return False
    return _status_kb("VmHWM") is not None


def peak_bytes(resettable: bool) -> int:
    """The RSS high-water mark since :func:`reset_peak` (else since the process started)."""
    if resettable:
        return 1024 * (_status_kb("VmHWM") or 0)
    return 1024 * resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # kB on Linux


def step_memory_callback():
    """A Lightning callback recording each training / validation step's peak RSS increase."""
    from lightning.pytorch.callbacks import Callback

    class StepMemory(Callback):
        def __init__(self) -> None:
            self.start: dict[str, int] = {}
            self.peak_mb: dict[str, float] = {}
            self.resettable = True
            self.loss: float | None = None
            self.state_bytes = 0

        def _start(self, stage: str) -> None:
            self.resettable = reset_peak() and self.resettable
            self.start[stage] = rss_bytes()

        def _end(self, stage: str) -> None:
            increase = max(0, peak_bytes(self.resettable) - self.start[stage])
            self.peak_mb[stage] = max(self.peak_mb.get(stage, 0.0), increase / MB)

        def on_train_batch_start(self, trainer, module, batch, batch_idx) -> None:
            self._start("train")

        def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx) -> None:
            self._end("train")
            self.state_bytes = grad_and_optimizer_state_bytes(module, trainer.optimizers)
            loss = outputs["loss"] if isinstance(outputs, dict) else outputs
            self.loss = float(loss.detach()) if loss is not None else None

        def on_validation_batch_start(self, trainer, module, batch, batch_idx, dataloader_idx=0) -> None:
            self._start("val")

        def on_validation_batch_end(self, trainer, module, outputs, batch, batch_idx, dataloader_idx=0) -> None:
            self._end("val")

    return StepMemory()


def grad_and_optimizer_state_bytes(model, optimizers) -> int:
    """Bytes of the gradients and the optimisers' state tensors after a step."""
    import torch

    grads = sum(p.grad.numel() * p.grad.element_size() for p in model.parameters() if p.grad is not None)
    state = sum(t.numel() * t.element_size() for optimizer in optimizers for values in optimizer.state.values()
                for t in values.values() if isinstance(t, torch.Tensor))
    return grads + state


# -- one case, in this process ---------------------------------------------------------------
def case_overrides(data: str, human36m_root: str | None) -> list[str]:
    """Batch 2, no workers, a few samples per split; the Human3.6M copy for ``data=human36m``."""
    overrides = [f"data.batch_size={BATCH}", "data.num_workers=0", "data.train_size=4", "data.val_size=4",
                 "data.test_size=4", "trainer.accelerator=cpu", "trainer.devices=1", "trainer.precision=32-true"]
    if data == "human36m":
        overrides += ["data.name=human36m", f"data.root={human36m_root}"]
    return overrides


def run_case(experiment: str, preset: str, data: str, human36m_root: str | None, threads: int) -> dict:
    """Build and step one case in this process; the entry of the JSON."""
    import lightning.pytorch as pl
    import torch

    from harness.stand_ins import build

    if threads > 0:
        torch.set_num_threads(threads)
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="dry-run-") as folder:
        pl.seed_everything(0, verbose=False)
        cfg, datamodule, model = build(experiment, preset, Path(folder), tuple(case_overrides(data, human36m_root)))
        built = time.perf_counter()
        memory = step_memory_callback()
        trainer = pl.Trainer(fast_dev_run=1, max_epochs=cfg.trainer.max_epochs, accelerator="cpu", devices=1,
                             precision="32-true", logger=False, enable_checkpointing=False, enable_progress_bar=False,
                             enable_model_summary=False, default_root_dir=folder, callbacks=[memory])
        trainer.fit(model, datamodule=datamodule)
    stepped = time.perf_counter()
    if "train" not in memory.peak_mb or "val" not in memory.peak_mb:
        raise RuntimeError(f"the trainer ran {sorted(memory.peak_mb) or 'no'} step(s); expected train and val")
    if memory.loss is None or not math.isfinite(memory.loss):
        raise FloatingPointError(f"training loss {memory.loss}; expected a finite number")
    parameters = sum(p.numel() for p in model.parameters())
    return {
        "experiment": experiment, "preset": preset, "data": data, "model": cfg.model.name, "variant": cfg.variant,
        "image_size": int(cfg.data.image_size), "batch_size": BATCH, "optimizer": cfg.optim.name,
        "parameters": parameters, "parameters_m": round(parameters / 1e6, 2),
        "trainable_parameters": sum(p.numel() for p in model.parameters() if p.requires_grad),
        "parameter_mb": round(sum(p.numel() * p.element_size() for p in model.parameters()) / MB, 1),
        "grad_and_optimizer_state_mb": round(memory.state_bytes / MB, 1),
        "train_step_peak_mb": round(memory.peak_mb["train"], 1),
        "train_step_peak_mb_per_image": round(memory.peak_mb["train"] / BATCH, 1),
        "val_step_peak_mb": round(memory.peak_mb["val"], 1),
        "val_step_peak_mb_per_image": round(memory.peak_mb["val"] / BATCH, 1),
        "memory_method": "VmHWM reset before the step" if memory.resettable else "ru_maxrss (lifetime peak)",
        "loss": memory.loss, "build_seconds": round(built - started, 2), "step_seconds": round(stepped - built, 2),
    }


# -- every case, each in a child ---------------------------------------------------------------
def cases(experiments: list[str], presets: list[str], human36m_root: str | None) -> list[tuple[str, str, str]]:
    """(experiment, preset, data): every preset on the synthetic data, the paper preset also on
    Human3.6M; ``h36m_poses`` (Human3.6M's pose files, no images) on Human3.6M only."""
    out = []
    for experiment in experiments:
        for preset in presets:
            if preset in HUMAN36M_ONLY:
                if human36m_root:
                    out.append((experiment, preset, "human36m"))
                continue
            out.append((experiment, preset, "synthetic"))
            if preset == "paper" and human36m_root:
                out.append((experiment, preset, "human36m"))
    return out


def limit_allocator_caching() -> None:
    """glibc's malloc in this process: every block of 128 kB or more its own mapping, and freed
    memory trimmed back to the system, so that the RSS follows the memory in use."""
    import ctypes
    import ctypes.util

    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        libc.mallopt(M_TRIM_THRESHOLD, ALLOCATOR_THRESHOLD)
        libc.mallopt(M_MMAP_THRESHOLD, ALLOCATOR_THRESHOLD)
        libc.malloc_trim(0)
    except (OSError, AttributeError):  # not glibc: the measurement may then read low
        pass


def preload() -> None:
    """Import what every case imports once, before the children fork (each would take seconds)."""
    import lightning.pytorch  # noqa: F401

    from datamodules import DATAMODULES
    from lightning_modules import MODELS

    for registry, names in ((MODELS, list(MODELS)), (DATAMODULES, ["synthetic", "human36m"])):
        for name in names:
            registry.load(name)


def _child(connection, case: tuple[str, str, str], human36m_root: str | None, threads: int, verbose: bool) -> None:
    os.environ["WANDB_MODE"] = "disabled"
    if not verbose:  # the trainer's and the builders' own lines: the parent prints one line per case
        quiet = os.open(os.devnull, os.O_WRONLY)
        os.dup2(quiet, 1)
        os.dup2(quiet, 2)
    limit_allocator_caching()
    experiment, preset, data = case
    try:
        entry = run_case(experiment, preset, data, human36m_root, threads)
    except Exception as error:  # reported as the case's one line; the parent goes on
        first = str(error).strip().splitlines()[0] if str(error).strip() else ""
        entry = {"experiment": experiment, "preset": preset, "data": data, "error": f"{type(error).__name__}: {first}"}
    connection.send(entry)
    connection.close()


def run_child(case: tuple[str, str, str], human36m_root: str | None, threads: int, verbose: bool = False) -> dict:
    """One case in a child forked from this process (the imports done once, its memory its own):
    its entry, or ``{"error": one line}``."""
    import multiprocessing

    context = multiprocessing.get_context("fork")
    receiver, sender = context.Pipe(duplex=False)
    started = time.perf_counter()
    process = context.Process(target=_child, args=(sender, case, human36m_root, threads, verbose))
    process.start()
    sender.close()
    try:
        entry = receiver.recv()
    except EOFError:
        entry = {"error": f"the case's process ended without a result (exit code {process.exitcode})"}
    process.join()
    if process.exitcode and "error" not in entry:
        entry = {**entry, "error": f"the case's process exited with {process.exitcode}"}
    entry["seconds"] = round(time.perf_counter() - started, 2)
    return entry


def paper_summary(entries: dict[str, dict]) -> dict[str, dict]:
    """Per experiment, its paper preset on the synthetic data: parameters and memory per image."""
    return {e["experiment"]: {"parameters": e["parameters"], "image_size": e["image_size"],
                              "train_step_peak_mb_per_image": e["train_step_peak_mb_per_image"],
                              "val_step_peak_mb_per_image": e["val_step_peak_mb_per_image"]}
            for e in entries.values() if e.get("preset") == "paper" and e.get("data") == "synthetic" and "error" not in e}


def summary_line(name: str, entry: dict) -> str:
    if "error" in entry:
        return f"dry-run: {name}: FAILED ({entry['error']}) [{entry['seconds']} s]"
    return (f"dry-run: {name}: {entry['parameters_m']} M parameters, {entry['image_size']} px, training step "
            f"{entry['train_step_peak_mb_per_image']} MB per image, validation {entry['val_step_peak_mb_per_image']} MB "
            f"per image [{entry['seconds']} s]")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m harness.dry_run", description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=str(REPO_ROOT / "results" / "dry_run.json"))
    parser.add_argument("--human36m-root", default=None,
                        help="a Human3.6M copy (images layout) for the paper presets; without it those cases are skipped")
    parser.add_argument("--experiments", default="", help="comma-separated (default: every experiments/*.yaml)")
    parser.add_argument("--presets", default=",".join(DEFAULT_PRESETS),
                        help=f"comma-separated, of {', '.join(PRESETS)} (default: {', '.join(DEFAULT_PRESETS)})")
    parser.add_argument("--threads", type=int, default=0, help="torch threads per case (0: torch's default)")
    parser.add_argument("--verbose", action="store_true", help="show each case's own output (the trainer's lines)")
    args = parser.parse_args(argv)
    known = available_experiments()
    names = [n for n in args.experiments.split(",") if n] or known
    presets = [p for p in args.presets.split(",") if p]
    for kind, values, valid in (("experiment", names, known), ("preset", presets, list(PRESETS))):
        wrong = [v for v in values if v not in valid]
        if wrong:
            print(f"error: unknown {kind} {wrong[0]!r}; expected some of {', '.join(valid)}", file=sys.stderr)
            return 2
    if args.human36m_root and not Path(args.human36m_root).is_dir():
        print(f"error: --human36m-root {args.human36m_root} is not a folder; expected a Human3.6M copy "
              "(python -m tests.fixtures_h36m DIR writes a tiny one)", file=sys.stderr)
        return 2
    preload()
    started = time.perf_counter()
    entries: dict[str, dict] = {}
    for case in cases(names, presets, args.human36m_root):
        name = "/".join(case)
        entries[name] = run_child(case, args.human36m_root, args.threads, args.verbose)
        print(summary_line(name, entries[name]), flush=True)
    failed = [name for name, entry in entries.items() if "error" in entry]

    import torch

    report = {
        "device": platform.processor() or platform.machine(), "cpu_count": os.cpu_count(), "torch": torch.__version__,
        "threads": args.threads or torch.get_num_threads(), "batch_size": BATCH,
        "human36m_root": args.human36m_root, "seconds": round(time.perf_counter() - started, 1),
        "failed": failed, "paper": paper_summary(entries), "cases": entries,
        "notes": "memory: peak RSS increase of a fresh process during the step over its RSS at the step's start "
                 "(gradients, optimiser state, activations); per image = that / batch_size. Human3.6M cases read "
                 "human36m_root; paper: the paper presets on the synthetic data.",
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"dry-run: {len(entries)} cases in {report['seconds']} s, {len(failed)} failed; written {out}", flush=True)
    if failed:
        print(f"error: dry run failed for {', '.join(failed)}; see {out}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
