"""Result files that are whole or absent: written to a temporary name beside the target and
renamed over it (a reader, or a run killed in the middle, never sees half a file).

A write that fails (a full disk, a read-only folder) leaves the earlier file as it was, removes
its temporary file and raises :class:`OutputError`, a :class:`~pose3d.config.ConfigError` whose
one line names the path and, for a full disk, the space it needed and the space left.
"""
from __future__ import annotations

import contextlib
import errno
import os
import shutil
import time
from collections.abc import Iterator
from pathlib import Path

from pose3d.config import ConfigError


class OutputError(ConfigError):
    """An output file or folder could not be written (one line: the path and why)."""


def _megabytes(count: float) -> str:
    return f"{count / 2**20:.1f} MB"


def output_error(path: Path, error: OSError, needed: int | None = None) -> OutputError:
    """The one-line error of a failed write of ``path`` (``needed`` bytes, when known)."""
    if error.errno in (errno.ENOSPC, errno.EDQUOT):
        try:
            free = _megabytes(shutil.disk_usage(next(p for p in (path, *path.parents) if p.exists())).free)
        except (OSError, StopIteration):
            free = "unknown"
        size = f"{_megabytes(needed)}" if needed is not None else "more space"
        return OutputError(f"no space left on the device for {path}: it needs {size}, {free} free; the earlier "
                           f"file is kept as it was: free some space, then run again (ckpt_path=last resumes)")
    return OutputError(f"cannot write {path} ({error.strerror or error}); expected a writable folder")


def temporary_name(path: Path) -> Path:
    """``.<name>.<pid>.tmp<suffix>`` beside ``path``: hidden, unique per process, same file system."""
    return path.with_name(f".{path.stem}.{os.getpid()}.tmp{path.suffix}")


def _write_file(path: Path, data: bytes | memoryview) -> None:
    """Write ``data`` to a new file ``path`` and flush it to the disk."""
    with open(path, "wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())


def write_atomic(path: str | Path, data: bytes | memoryview | str) -> None:
    """Replace ``path`` by ``data`` (text is UTF-8) in one rename; see the module docstring."""
    path = Path(path)
    content = data.encode() if isinstance(data, str) else data
    with atomic_path(path, needed=len(content)) as partial:
        _write_file(partial, content)


@contextlib.contextmanager
def atomic_path(path: str | Path, needed: int | None = None) -> Iterator[Path]:
    """A temporary path to write ``path``'s content to (for writers that want a file name:
    ``savefig``, ``np.savez``); renamed over ``path`` when the block ends without error."""
    path = Path(path)
    partial = temporary_name(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        yield partial
        partial.replace(path)
    except OSError as error:
        partial.unlink(missing_ok=True)
        raise output_error(path, error, needed) from None
    except BaseException:
        partial.unlink(missing_ok=True)
        raise


def check_writable(folder: str | Path, expected: str = "a writable results_dir") -> None:
    """``folder`` exists (created if needed) and accepts a new file; else one line naming it."""
    folder = Path(folder)
    try:
        folder.mkdir(parents=True, exist_ok=True)
        probe = folder / f".write-test-{os.getpid()}"
        probe.write_text("")
        probe.unlink()
    except OSError as error:
        raise ConfigError(f"cannot write to {folder} ({error.strerror or error}); expected {expected}") from None


def dated_sibling(path: Path, label: str) -> Path:
    """``<stem>.<label>-<YYYYmmdd-HHMMSS><suffix>`` beside the file ``path`` (a folder: its whole
    name, then the label), with ``-2``, ``-3``, ... when that name is taken."""
    stamp = time.strftime("%Y%m%d-%H%M%S")
    stem, suffix = (path.name, "") if path.is_dir() else (path.stem, path.suffix)
    for count in range(1, 1000):
        tail = "" if count == 1 else f"-{count}"
        candidate = path.with_name(f"{stem}.{label}-{stamp}{tail}{suffix}")
        if not candidate.exists():
            return candidate
    raise ConfigError(f"{path.parent} already holds 999 copies of {path.name} dated {stamp}; expected fewer")
