"""Files from elsewhere are read as data: the one reader of every checkpoint and pickle the project opens.

Researchers pass checkpoints around (a colleague's run, a model-zoo file, ``init_from=``,
``model.two_d.checkpoint=``, ``ckpt_path=``) and download converted dataset files (the OpenMMLab
``cameras.pkl``, VideoPose3D's ``.npz`` of pickled dictionaries). A pickle names functions that
run while it loads (``__reduce__``), so a crafted file runs its code as the user the moment a
plain ``pickle.load`` / ``torch.load(weights_only=False)`` / ``np.load(allow_pickle=True)``
reads it. Here nothing is called that is not data:

* :func:`load_checkpoint`: ``torch.load(weights_only=True)``: tensors, containers and numbers,
  plus :data:`CHECKPOINT_GLOBALS`. Every experiment's checkpoint at the smoke preset (with the
  ``cosine`` and ``step`` schedulers, Adam and SGD) refers to nothing beyond what
  ``weights_only`` admits by default: ``collections.OrderedDict`` and torch's tensor rebuilders.
  The hyper-parameters are plain dicts (``DataInfo.as_dict``), the method states
  (``fusion_history``, ``loss_history``) lists of dicts of floats, and the DataModule's resume
  state keeps the random generators as tensors, ints and lists (:mod:`datamodules.loaders`), so
  the list is empty; ``tests/test_safe_load.py`` loads every experiment's own checkpoints
  through this function and fails when a change puts another type there.
* :func:`read_pickle` and :func:`read_npz_object`: a restricted unpickler (:class:`DataUnpickler`)
  that builds dicts, lists, tuples, strings, bytes, numbers, ``None`` and numpy arrays, dtypes
  and scalars (numpy 1 and 2 module names, pickle protocols 2 to 5) and nothing else.

A file that names anything else is refused before any of it runs, with one line naming the file
and what it would have run (:class:`UnsafeFileError`, a :class:`~pose3d.config.ConfigError`, so
a command exits with status 2). Other problems (a missing, truncated or foreign file) come out as
the underlying exception, for the caller to name in its own terms.

Resuming: Lightning 2.6.6 reads ``trainer.fit(ckpt_path=...)`` / ``trainer.test(ckpt_path=...)``
through ``strategy.checkpoint_io.load_checkpoint(path, weights_only=None)``, which reaches
``lightning.fabric.utilities.cloud_io._load`` and ``torch.load(f, weights_only=None)``; torch
2.13 then defaults to ``weights_only=True``, but ``TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD=1`` in the
environment turns an unset ``weights_only`` into ``False`` (and ``_load`` itself picks ``False`` for
an ``http`` path). :class:`harness.checkpoint_io.SafeCheckpointIO` makes the trainer read
through :func:`load_checkpoint` instead, so a resume takes the same path as every other reader.
"""
from __future__ import annotations

import pickle
import re
import zipfile
from pathlib import Path
from typing import IO, Any

import numpy as np

from pose3d.config import ConfigError

# what the project's checkpoints need beyond the default of torch.load(weights_only=True): nothing
# (see the module docstring); a type added here must be data, never something that runs code
CHECKPOINT_GLOBALS: tuple = ()

DATA_ONLY = "only tensors, arrays, numbers, strings, lists and dicts are read from a file"


class UnsafeFileError(ConfigError):
    """A file whose loading would run code (one line naming the file and what it would run)."""

    def __init__(self, path: str | Path, names: list[str] | str):
        names = ", ".join(names) if isinstance(names, list) else names
        super().__init__(f"refused to load {path}: it would run {names}; {DATA_ONLY}")


# -- checkpoints ----------------------------------------------------------------------------------
def load_checkpoint(path: str | Path, map_location: Any = "cpu", *, mmap: bool = False) -> dict:
    """The checkpoint at ``path`` as data: ``torch.load(weights_only=True)`` admitting
    :data:`CHECKPOINT_GLOBALS` besides torch's own tensors and containers.

    ``map_location`` as for ``torch.load`` (default: every tensor on the CPU); ``mmap=True``
    maps the tensors instead of reading them (for a look at the hyper-parameters only; a file
    in torch's legacy format, which cannot be mapped, is read).
    Raises :class:`UnsafeFileError` (one line: the file and the types it would run) for a file
    that refers to anything else; ``FileNotFoundError``, ``RuntimeError`` and
    ``pickle.UnpicklingError`` as ``torch.load`` does for a missing, truncated or foreign one.
    """
    import torch

    mmap = mmap and zipfile.is_zipfile(path)
    with torch.serialization.safe_globals(list(CHECKPOINT_GLOBALS)):
        try:
            return torch.load(path, map_location=map_location, weights_only=True, mmap=mmap)
        except pickle.UnpicklingError as error:
            names = _unsafe_checkpoint_globals(path, error)
            if names:
                raise UnsafeFileError(path, names) from None
            raise


def _unsafe_checkpoint_globals(path: str | Path, error: Exception) -> list[str]:
    """The globals a refused checkpoint names (module.name), from its pickle, else from torch's message."""
    import torch

    try:
        return sorted(torch.serialization.get_unsafe_globals_in_checkpoint(path))
    except Exception:  # noqa: BLE001 - not a zip checkpoint (torch's legacy format): torch's message names it
        return re.findall(r"GLOBAL ([\w.]+)", str(error))[:1]


# -- pickles ----------------------------------------------------------------------------------------
def _latin1_bytes(text: str, encoding: str) -> bytes:
    """What protocol-2 pickles call (as ``_codecs.encode``) to make bytes; only that encoding."""
    if encoding not in ("latin1", "latin-1"):
        raise pickle.UnpicklingError(f"the pickle encodes bytes as {encoding!r}; expected 'latin1'")
    return text.encode("latin1")


def _data_globals() -> dict[tuple[str, str], Any]:
    """Every global a pickle of containers, numbers and numpy arrays refers to (numpy 1 and 2 names)."""
    core = np._core if hasattr(np, "_core") else np.core
    allowed: dict[tuple[str, str], Any] = {("numpy", "ndarray"): np.ndarray, ("numpy", "dtype"): np.dtype,
                                           ("_codecs", "encode"): _latin1_bytes}
    for package in ("numpy.core", "numpy._core"):
        allowed[(f"{package}.multiarray", "_reconstruct")] = core.multiarray._reconstruct
        allowed[(f"{package}.multiarray", "scalar")] = core.multiarray.scalar
        allowed[(f"{package}.numeric", "_frombuffer")] = core.numeric._frombuffer  # protocol 5 arrays
    return allowed


class DataUnpickler(pickle.Unpickler):
    """Builds containers, numbers, strings and numpy arrays only (pickle opcodes make the
    containers and numbers without naming any global); any other global stops the load with
    :class:`UnsafeFileError` naming it, before it is called."""

    allowed = _data_globals()

    def __init__(self, file: IO[bytes], source: str | Path):
        super().__init__(file)
        self.source = source

    def find_class(self, module: str, name: str) -> Any:
        try:
            return self.allowed[(module, name)]
        except KeyError:
            raise UnsafeFileError(self.source, f"{module}.{name}") from None


def read_pickle(path: str | Path) -> Any:
    """The data pickled in the file at ``path`` (a ``cameras.pkl``), read by :class:`DataUnpickler`."""
    with open(path, "rb") as file:
        return DataUnpickler(file, path).load()


def read_pickle_file(path: str | Path, expected: str) -> Any:
    """:func:`read_pickle` for a file a user names: a missing, truncated or foreign file is a one-line
    :class:`~pose3d.readers.FileFormatError` saying what was ``expected`` (a pickle that would run
    code stays an :class:`UnsafeFileError`)."""
    from pose3d.readers import DECODE_ERRORS, FileFormatError, first_line, require_file

    path = require_file(path, expected)
    try:
        return read_pickle(path)
    except UnsafeFileError:
        raise
    except (*DECODE_ERRORS, pickle.UnpicklingError, RecursionError) as error:
        raise FileFormatError(path, f"not a readable pickle ({type(error).__name__}: {first_line(error)})",
                              expected) from None


class NpzContentError(ValueError):
    """An ``.npz`` without the wanted object array; one line (the caller adds the file's name)."""


def read_npz_object(path: str | Path, key: str) -> Any:
    """The object that ``np.savez`` pickled as the 0-d object array ``key`` of the ``.npz`` at ``path``
    (a dict or list), read by :class:`DataUnpickler`, where ``np.load(allow_pickle=True)`` would run it.

    :class:`NpzContentError` when the archive has no ``key`` (naming the arrays it holds) or ``key``
    is not a 0-d object array; :class:`UnsafeFileError` for a pickle naming anything but data;
    zip, header and unpickling errors of a foreign file as they come.
    """
    with zipfile.ZipFile(path) as archive:
        names = [n[:-4] for n in archive.namelist() if n.endswith(".npy")]
        if key not in names:
            raise NpzContentError(f"has no '{key}' (it holds {', '.join(names) or 'nothing'})")
        with archive.open(f"{key}.npy") as fp:
            version = np.lib.format.read_magic(fp)
            if version not in ((1, 0), (2, 0)):
                raise NpzContentError(f"'{key}' is in npy format version {version}; expected 1.0 or 2.0")
            header = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
            shape, _, dtype = header(fp)
            if dtype != np.dtype(object) or shape != ():
                raise NpzContentError(f"'{key}' is a {dtype} array of shape {shape}, not a pickled object")
            value = DataUnpickler(fp, f"{path} ('{key}')").load()
    if not isinstance(value, np.ndarray) or value.shape != ():
        raise NpzContentError(f"'{key}' unpickles to a {type(value).__name__}, not a 0-d object array")
    return value.item()
