"""A live progress line for a local ablation: which run, where it is, how long the rest takes.

While a run trains, :class:`Progress` redraws one terminal line about once a second::

    [3/12] tekin_fusion-late-smoke-s0: epoch 2/8, step 150/752, 1m12s, ~4m49s left (ablation ~31m)

read from the run's own files, so it needs nothing from the training process: the last row
of its newest ``csv/version_*/metrics.csv`` (Lightning writes a row every
``trainer.log_every_n_steps`` steps and at each validation) and its log file, whose
``training prerequisite run NAME ... first`` / ``fitting NAME ... first`` lines say that a
prerequisite trains first (the line then follows that run's CSV). The estimate extrapolates
the steps done since the line first saw the run; the ablation's adds the mean time of the
runs finished so far for each run still waiting. Only on a terminal: in a log (CI) nothing is
drawn, and each run's one result line is all that is printed.
"""
from __future__ import annotations

import re
import shutil
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

PREREQUISITE = re.compile(r"^training prerequisite run (\S+) \(experiment (\S+)\) first")
FITTING = re.compile(r"^fitting (\S+) .*first")


def duration(seconds: float) -> str:
    seconds = int(max(seconds, 0))
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"


def last_csv_row(run_dir: Path) -> dict[str, str] | None:
    """The newest metrics row of a run (``epoch``, ``step``, ...), or None before its first one."""
    versions = sorted((run_dir / "csv").glob("version_*/metrics.csv"),
                      key=lambda p: int(p.parent.name.split("_")[-1]) if p.parent.name.split("_")[-1].isdigit() else -1)
    if not versions:
        return None
    try:
        with open(versions[-1], "rb") as handle:
            header = handle.readline().decode(errors="replace").strip().split(",")
            handle.seek(0, 2)
            size = handle.tell()
            handle.seek(max(0, size - 8192))
            lines = [line for line in handle.read().decode(errors="replace").splitlines() if line.strip()]
    except OSError:
        return None
    if len(lines) < 1 or lines[-1].split(",") == header:
        return None
    return dict(zip(header, lines[-1].split(",")))


def prerequisite_in_progress(log_file: Path) -> tuple[str, str] | None:
    """(kind, name) of the prerequisite the run's log says is being built now, if any."""
    try:
        text = log_file.read_text(errors="replace")[-20000:]
    except OSError:
        return None
    found = None
    for line in text.splitlines():
        line = line.strip()
        if match := PREREQUISITE.match(line):
            found = ("train", match.group(1))
        elif match := FITTING.match(line):
            found = ("fit", match.group(1))
    return found  # the latest one; once the run's own CSV has a row, that wins


@dataclass
class Active:
    index: int
    name: str
    run_dir: Path
    log_file: Path
    total_steps: int | None
    max_epochs: int | None
    started: float = field(default_factory=time.monotonic)
    first_seen: tuple[float, int] | None = None  # (time, step) when its own CSV first showed a step


class Progress:
    """Thread-safe result lines plus, on a terminal, a live line of the runs in progress."""

    def __init__(self, total: int, stream=None, live: bool | None = None, interval: float = 1.0):
        self.total = total
        self.stream = stream or sys.stdout
        self.live = self.stream.isatty() if live is None else live
        self.interval = interval
        self.lock = threading.Lock()
        self.active: dict[int, Active] = {}
        self.durations: list[float] = []
        self.finished = 0
        self.parallel = 1
        self._drawn = False
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # -- what the runner calls ------------------------------------------------------------
    def start(self) -> None:
        if self.live and self._thread is None:
            self._thread = threading.Thread(target=self._loop, daemon=True)
            self._thread.start()

    def run_started(self, index: int, name: str, run_dir: Path, log_file: Path,
                    total_steps: int | None = None, max_epochs: int | None = None) -> None:
        with self.lock:
            self.active[index] = Active(index, name, Path(run_dir), Path(log_file), total_steps, max_epochs)

    def run_finished(self, index: int, line: str) -> None:
        with self.lock:
            run = self.active.pop(index, None)
            if run is not None:
                self.durations.append(time.monotonic() - run.started)
            self.finished += 1
            self._clear()
            print(line, file=self.stream, flush=True)
            self._draw()

    def print(self, line: str) -> None:
        with self.lock:
            self._clear()
            print(line, file=self.stream, flush=True)
            self._draw()

    def close(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        with self.lock:
            self._clear()

    # -- the line ------------------------------------------------------------------------
    def describe(self, run: Active, now: float | None = None) -> str:
        now = time.monotonic() if now is None else now
        elapsed = now - run.started
        own = last_csv_row(run.run_dir)
        prerequisite = prerequisite_in_progress(run.log_file)
        head = f"[{run.index}/{self.total}] {run.name}"
        if own is None and prerequisite is not None:
            kind, name = prerequisite
            if kind == "fit":
                return f"{head}: fitting {name} first, {duration(elapsed)}"
            row = last_csv_row(run.run_dir.parent / name)
            where = f"epoch {int(float(row['epoch'])) + 1}, step {row['step']}" if row and row.get("epoch") else "starting"
            return f"{head}: training prerequisite {name} first ({where}), {duration(elapsed)}"
        if own is None or not own.get("step"):
            return f"{head}: starting, {duration(elapsed)}"
        step = int(float(own["step"]))
        epoch = int(float(own["epoch"])) + 1 if own.get("epoch") else None
        parts = []
        if epoch is not None:
            parts.append(f"epoch {epoch}" + (f"/{run.max_epochs}" if run.max_epochs else ""))
        parts.append(f"step {step}" + (f"/{run.total_steps}" if run.total_steps else ""))
        parts.append(duration(elapsed))
        if run.first_seen is None:
            run.first_seen = (now, step)
        left = None
        seen_at, seen_step = run.first_seen
        if run.total_steps and step > seen_step and now > seen_at:
            left = (run.total_steps - step) * (now - seen_at) / (step - seen_step)
            parts.append(f"~{duration(left)} left")
        waiting = self.total - self.finished - len(self.active)
        if waiting > 0:
            per_run = sum(self.durations) / len(self.durations) if self.durations else (
                elapsed + left if left is not None else None)
            if per_run is not None:
                rest = (left or 0.0) + per_run * waiting / max(self.parallel, 1)
                parts[-1] += f" (ablation ~{duration(rest)})"
        return f"{head}: " + ", ".join(parts)

    def line(self) -> str:
        now = time.monotonic()
        text = " | ".join(self.describe(run, now) for _, run in sorted(self.active.items()))
        width = shutil.get_terminal_size((120, 20)).columns - 1
        return text if len(text) <= width else text[: width - 3] + "..."

    def _clear(self) -> None:
        if self.live and self._drawn:
            self.stream.write("\r\033[K")
            self.stream.flush()
            self._drawn = False

    def _draw(self) -> None:
        if self.live and self.active:
            self.stream.write("\r\033[K" + self.line())
            self.stream.flush()
            self._drawn = True

    def _loop(self) -> None:
        while not self._stop.wait(self.interval):
            with self.lock:
                try:
                    self._draw()
                except Exception:  # a half-written CSV row: try again next second
                    pass


def estimated_steps(cfg) -> tuple[int | None, int | None]:
    """(total optimiser steps, epochs) a run's config asks for, when its data says how many
    training samples an epoch has (``data.train_size``); (None, epochs) otherwise."""
    epochs = int(cfg.trainer.max_epochs)
    size = cfg.data.get("train_size") if hasattr(cfg.data, "get") else None
    batch = cfg.data.get("batch_size") if hasattr(cfg.data, "get") else None
    if not size or not batch:
        return (int(cfg.trainer.max_steps) if cfg.trainer.max_steps and cfg.trainer.max_steps > 0 else None), epochs
    per_epoch = size // batch if size >= 2 * batch else -(-size // batch)  # a ragged last batch is dropped
    if cfg.trainer.limit_train_batches:
        per_epoch = min(per_epoch, int(cfg.trainer.limit_train_batches))
    total = per_epoch * epochs
    if cfg.trainer.max_steps and cfg.trainer.max_steps > 0:
        total = min(total, int(cfg.trainer.max_steps))
    return total, epochs
