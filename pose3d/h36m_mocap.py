"""VideoPose3D's Human3.6M pose files (its ``data/prepare_data_h36m.py``), read in one place.

* ``data_3d_h36m.npz``: ``positions_3d[subject][action]`` (T, 32, 3), world metres, z up;
* ``data_2d_h36m_<source>.npz``: ``positions_2d[subject][action]`` a list of 4 cameras'
  (T, 17 or 32, 2) pixels (plus ``metadata``, not read).

Subjects are named as in the files (``"S1"``), actions too (``"Directions 1"``). 32-joint
arrays are reduced to the project's 17 joints with :data:`pose3d.skeleton.H36M_32_TO_17`.

The dictionaries are stored as pickled object arrays, so the format does need unpickling, but
numpy's loader with pickles allowed would run whatever code a crafted file names. The pickle is
read by :func:`pose3d.safe_load.read_npz_object`, whose unpickler builds nothing but containers,
numbers and numpy arrays. Every problem (missing file, not an npz, wrong key or shape, a pickle
naming anything else) is a one-line :class:`PoseFileError` naming the file.
"""
from __future__ import annotations

import zipfile
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np

from pose3d.config import ConfigError
from pose3d.safe_load import NpzContentError, UnsafeFileError, read_npz_object
from pose3d.skeleton import H36M_32_TO_17, NUM_JOINTS


# Human3.6M's training subjects per protocol (#3 trains as #1): a pose prior fitted for a
# protocol must see only these, never its test subjects (S9, S11; #2: S11).
PROTOCOL_TRAIN_SUBJECTS = {
    1: ("S1", "S5", "S6", "S7", "S8"),
    2: ("S1", "S5", "S6", "S7", "S8", "S9"),
    3: ("S1", "S5", "S6", "S7", "S8"),
}


class PoseFileError(ConfigError):
    """A pose file that cannot be read as the VideoPose3D format; the message is one line naming it."""


MOCAP_3D_FILE = "data_3d_h36m.npz"  # the 3D file's name under a Human3.6M root (datamodules.human36m, poses layout)


def mocap_3d_path(root: str | Path, why: str, remedy: str = "", root_key: str = "data.root") -> Path:
    """``<root>/data_3d_h36m.npz``; a one-line :class:`PoseFileError` saying ``why`` it is needed (and
    ``remedy``) when the root is unset or the file is absent (the images layout does not ship it)."""
    remedy = f"; {remedy}" if remedy else ""
    if not str(root):
        raise PoseFileError(f"{why} needs {root_key}, the Human3.6M folder holding {MOCAP_3D_FILE}, which is empty{remedy}")
    path = Path(root) / MOCAP_3D_FILE
    if not path.is_file():
        raise PoseFileError(f"{why} needs {path} (VideoPose3D's Human3.6M mocap, data/prepare_data_h36m.py), "
                            f"which does not exist{remedy}")
    return path


def read_positions_3d(path: str | Path, subjects: Iterable[str] | None = None) -> dict[str, dict[str, np.ndarray]]:
    """``{subject: {action: (T, 17, 3) world metres}}`` of ``data_3d_h36m.npz``, for every subject
    or only ``subjects`` (names as in the file, e.g. ``["S1", "S5"]``)."""
    positions = _read_pickled_dict(path, "positions_3d")
    if subjects is not None:
        wanted = [str(s) for s in subjects]
        absent = [s for s in wanted if s not in positions]
        if absent:
            raise PoseFileError(f"{path}: positions_3d has no subject {absent[0]}; it has {', '.join(map(str, positions))}")
        positions = {s: positions[s] for s in wanted}
    return {str(subject): {str(action): _joints_17(path, f"positions_3d[{subject!r}][{action!r}]", seq, 3)
                           for action, seq in _items(path, f"positions_3d[{subject!r}]", actions)}
            for subject, actions in _items(path, "positions_3d", positions)}


def read_positions_2d(path: str | Path) -> dict[str, dict[str, list[np.ndarray]]]:
    """``{subject: {action: [(T, 17, 2) pixels per camera]}}`` of a ``data_2d_h36m_<source>.npz``."""
    positions = _read_pickled_dict(path, "positions_2d")
    out: dict[str, dict[str, list[np.ndarray]]] = {}
    for subject, actions in _items(path, "positions_2d", positions):
        out[str(subject)] = {}
        for action, views in _items(path, f"positions_2d[{subject!r}]", actions):
            where = f"positions_2d[{subject!r}][{action!r}]"
            if not isinstance(views, (list, tuple)):
                raise PoseFileError(f"{path}: {where} is {type(views).__name__}; expected a list of per-camera arrays")
            out[str(subject)][str(action)] = [_joints_17(path, f"{where}[{k}]", v, 2) for k, v in enumerate(views)]
    return out


def _items(path, where: str, value: Any) -> list[tuple[Any, Any]]:
    if not isinstance(value, dict):
        raise PoseFileError(f"{path}: {where} is {type(value).__name__}; expected a dictionary")
    if not value:
        raise PoseFileError(f"{path}: {where} is empty; expected VideoPose3D's {where}[subject][action] arrays")
    return list(value.items())


def _joints_17(path, where: str, seq: Any, dims: int) -> np.ndarray:
    """``seq`` (T, 17 or 32, dims) as (T, 17, dims), or an error naming the entry."""
    array = np.asarray(seq)
    if array.ndim != 3 or array.shape[1] not in (NUM_JOINTS, 32) or array.shape[2] != dims or array.dtype.kind not in "fiu":
        raise PoseFileError(f"{path}: {where} is {array.dtype} {array.shape}; expected (T, 17 or 32, {dims}) numbers")
    return array[:, list(H36M_32_TO_17)] if array.shape[1] == 32 else array


def _read_pickled_dict(path: str | Path, key: str) -> dict:
    """The dictionary pickled as the 0-d object array ``key`` of the npz at ``path``."""
    path = Path(path)
    if not path.is_file():
        raise PoseFileError(f"{path}: no such file; expected VideoPose3D's npz with '{key}'")
    try:
        with zipfile.ZipFile(path) as archive:
            names = [n[:-4] for n in archive.namelist() if n.endswith(".npy")]
        if key not in names:
            raise PoseFileError(f"{path}: expected {key} (VideoPose3D's dictionary); found {_summary(names)}")
        value = read_npz_object(path, key)
    except PoseFileError:
        raise
    except UnsafeFileError as error:
        raise PoseFileError(str(error)) from None
    except NpzContentError as error:
        raise PoseFileError(f"{path}: {error}; expected VideoPose3D's pickled {key} dictionary") from None
    except Exception as error:  # noqa: BLE001 - zip, npy header or pickle: the file is not what we expect
        reason = str(error).splitlines()[0] if str(error) else type(error).__name__
        raise PoseFileError(f"cannot read {path}: {reason}; expected VideoPose3D's npz with the '{key}' dictionary") from None
    if not isinstance(value, dict):
        raise PoseFileError(f"{path}: '{key}' holds a {type(value).__name__}; expected a dictionary")
    return value


def _summary(names: list[str], shown: int = 3) -> str:
    """'nothing', 'a, b', or '205 keys like a, b, c': what an archive holds, in one short phrase."""
    if not names:
        return "nothing"
    if len(names) <= shown:
        return ", ".join(names)
    return f"{len(names)} keys like {', '.join(names[:shown])}"
