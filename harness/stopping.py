"""SIGINT and SIGTERM to a runner of training runs (``python -m pose3d.ablation run``,
``make compare``): the signal goes on to every run in flight, no new run starts, the runner
waits for the runs to stop and then exits 130 (SIGINT) or 143 (SIGTERM).

Each run starts in a session of its own (its own process group), so that what reaches it is the
runner's decision: Ctrl-C in a terminal reaches the runner, which passes it on to each run's
main process once, and a signal sent to the runner alone (``timeout``, a job scheduler's
cancellation, a parent script) reaches the runs as well. The run's own children (W&B's service
process, loader workers) get no signal from the runner, so that the run can close them itself.
A stopped run keeps its ``last.ckpt`` (Lightning saves it at every validation, and on SIGTERM it
stops after the batch in progress), so the runner's command, run again, resumes it. A run still
running :data:`STOP_GRACE_S` seconds after the signal is killed with its process group, and
whatever a run left behind in its group is killed when the runner returns: no child outlives
the runner.
"""
from __future__ import annotations

import os
import signal
import subprocess
import threading
from dataclasses import dataclass, field

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)
STOP_GRACE_S = 60  # after the signal, how long a run may take to stop before it is killed


@dataclass
class Stopped(Exception):
    """The runner was stopped by ``signum``: ``interrupted`` were running, ``not_started`` were not."""

    signum: int
    interrupted: list[str] = field(default_factory=list)
    not_started: list[str] = field(default_factory=list)

    @property
    def exit_code(self) -> int:
        return 128 + self.signum  # the shell's convention: 130 for SIGINT, 143 for SIGTERM

    def line(self, command: str) -> str:
        """One line: what was stopped and how to resume."""
        parts = [f"stopped by {signal.Signals(self.signum).name}"]
        if self.interrupted:
            parts.append(f"interrupted {', '.join(self.interrupted)} (a run resumes from its last.ckpt)")
        if self.not_started:
            parts.append(f"not started {', '.join(self.not_started)}")
        return "; ".join(parts) + f"; to resume, run the same command again: {command}"


def _signal_group(pgid: int, signum: int) -> None:
    try:
        os.killpg(pgid, signum)
    except (ProcessLookupError, PermissionError):  # the group is gone already
        pass


class RunGroup:
    """The child processes of a runner, and what SIGINT/SIGTERM does to them (see the module).

    Used as a context manager in the main thread, which then owns the two signals; :meth:`call`
    runs one child to its end from any thread."""

    def __init__(self, grace_s: float = STOP_GRACE_S):
        self.grace_s = grace_s
        self.signum: int | None = None
        self._lock = threading.RLock()  # re-entered when a signal arrives while the main thread starts a child
        self._running: dict[int, subprocess.Popen] = {}
        self._groups: set[int] = set()
        self._previous: dict[int, object] = {}
        self._killer: threading.Timer | None = None

    @property
    def stopping(self) -> bool:
        return self.signum is not None

    def __enter__(self) -> "RunGroup":
        if threading.current_thread() is threading.main_thread():
            for signum in STOP_SIGNALS:
                self._previous[signum] = signal.signal(signum, self._on_signal)
        return self

    def __exit__(self, *exc) -> None:
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)
        if self._killer is not None:
            self._killer.cancel()
        if self.stopping:
            self._kill_groups()

    def call(self, command: list[str], **popen_kwargs) -> int | None:
        """Run ``command`` to its end and return its exit status; None (and nothing runs) once stopping."""
        with self._lock:
            if self.stopping:
                return None
            child = subprocess.Popen(command, start_new_session=True, **popen_kwargs)
            self._running[child.pid] = child
            self._groups.add(child.pid)
            if self.stopping:  # the signal came while it started
                child.send_signal(self.signum)
        try:
            return child.wait()
        finally:
            with self._lock:
                self._running.pop(child.pid, None)

    def _on_signal(self, signum: int, frame) -> None:
        with self._lock:
            first = not self.stopping
            if first:
                self.signum = signum
            running = list(self._running.values())
        for child in running:
            if child.poll() is None:
                child.send_signal(signum)
        if first:
            self._killer = threading.Timer(self.grace_s, self._kill_groups)
            self._killer.daemon = True
            self._killer.start()

    def _kill_groups(self) -> None:
        with self._lock:
            groups = list(self._groups)
        for pgid in groups:
            _signal_group(pgid, signal.SIGKILL)
