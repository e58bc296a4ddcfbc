"""Exclusive locks between processes on one file system: ``fcntl.flock`` on a small file.

The kernel releases the lock of a holder that dies (killed, out of memory, a lost node), so a
crashed process never blocks the others. The holder writes who it is into the lock file
(pid, host, start time), so that a process that finds the lock taken can name the holder.
A prerequisite's build waits for the lock (:mod:`harness.prerequisites`); a run folder's owner
does not (:mod:`harness.run_folder`).
"""
from __future__ import annotations

import contextlib
import fcntl
import json
import os
import socket
import time
from collections.abc import Iterator
from pathlib import Path

from pose3d.config import ConfigError

POLL_S = 0.05


class Held(ConfigError):
    """The lock is held by another process; the message names it."""


def describe_holder(lock_file: Path) -> str:
    """``pid 123 on host h since 2024-01-02 03:04:05`` from the lock file (as far as it says)."""
    try:
        who = json.loads(lock_file.read_text() or "{}")
    except (OSError, ValueError):
        who = {}
    if not who:
        return "a process that has not yet said who it is"
    return f"pid {who.get('pid', '?')} on host {who.get('host', '?')} since {who.get('started', '?')}"


def _acquire(handle, wait_s: float | None) -> bool:
    if wait_s is None:
        fcntl.flock(handle, fcntl.LOCK_EX)
        return True
    deadline = time.monotonic() + wait_s
    while True:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return True
        except BlockingIOError:
            if time.monotonic() >= deadline:
                return False
            time.sleep(POLL_S)


@contextlib.contextmanager
def exclusive(lock_file: Path, wait_s: float | None = None, what: str = "", remedy: str = "") -> Iterator[None]:
    """Hold an exclusive lock on ``lock_file`` (created if needed) for the block. ``wait_s``:
    None waits as long as it takes; a number of seconds raises :class:`Held` (naming ``what``,
    the holder and then ``remedy``) when the lock is still taken after that long."""
    lock_file.parent.mkdir(parents=True, exist_ok=True)
    with open(lock_file, "a") as handle:
        if not _acquire(handle, wait_s):
            raise Held(f"{what or lock_file} is in use by {describe_holder(lock_file)}" + (f"; {remedy}" if remedy else ""))
        try:
            handle.truncate(0)
            handle.write(json.dumps({"pid": os.getpid(), "host": socket.gethostname(),
                                     "started": time.strftime("%Y-%m-%d %H:%M:%S")}))
            handle.flush()
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def holder(lock_file: Path) -> str | None:
    """Who holds ``lock_file`` now (:func:`describe_holder`), or None when nobody does. (It takes
    the lock for an instant to find out: a process starting to wait then waits that instant.)"""
    if not lock_file.is_file():
        return None
    with open(lock_file, "a") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return describe_holder(lock_file)
        fcntl.flock(handle, fcntl.LOCK_UN)
    return None
