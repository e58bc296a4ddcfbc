"""The one reader of each file format the project reads from a user: npz, MATLAB (v5 and v7.3 =
HDF5), JSON, YAML, text and JPEG/PNG images (pickles and checkpoints: :mod:`pose3d.safe_load`;
BVH motion: :mod:`pose3d.bvh`, which parses the text this module reads).

A file can be missing, a folder, empty, truncated, random bytes, another format, or hold the
wrong keys, shapes or non-finite numbers. Each reader turns every one of these into a
:class:`FileFormatError`, a :class:`~pose3d.config.ConfigError` (a command exits with status 2)
whose one line names the file, what was found and what was expected, before the caller uses any
of it: a corrupt file never ends in a traceback, and a NaN never reaches a training loop or a
lifting search. The callers say what they expect (``expected``: the file's role, e.g. "a
PosePrior .npz (python -m pose3d.ppca fit)") and which arrays hold coordinates, scales, cameras or
priors (``finite``), which are then checked for NaN and infinity, naming the key and the first bad
index.

Shapes are given per key as tuples of ints (that size), ``None`` (any size) or names ("N", "K"):
a name binds to the size it first meets and must agree wherever it appears again, so
``{"means": ("K", 17, 3), "weights": ("K",)}`` also checks that both hold K components.
"""
from __future__ import annotations

import json
import struct
import zipfile
import zlib
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any, Optional, Union

import numpy as np

from pose3d.config import ConfigError

Dim = Union[int, str, None]
Shape = tuple[Dim, ...]

# what decoders of a corrupt file raise (zip, zlib, npy headers, scipy's and h5py's MATLAB readers)
DECODE_ERRORS: tuple[type[BaseException], ...] = (
    OSError, ValueError, EOFError, KeyError, IndexError, TypeError, AttributeError, NotImplementedError,
    MemoryError, OverflowError, struct.error, zlib.error, zipfile.BadZipFile, UnicodeDecodeError,
)


class FileFormatError(ConfigError):
    """A file that is not what its reader expects; one line: the file, what was found, what was expected."""

    def __init__(self, path: str | Path, found: str, expected: str):
        self.path = str(path)
        super().__init__(" ".join(f"{path}: {found}; expected {expected}".split()))


def first_line(error: BaseException) -> str:
    """The first line of an exception's message, or its type's name when it has none."""
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__


def require_file(path: str | Path, expected: str) -> Path:
    """``path`` as a :class:`~pathlib.Path` of an existing, non-empty file, else one line saying what it is."""
    path = Path(path)
    if not path.exists():
        raise FileFormatError(path, "does not exist", expected)
    if not path.is_file():
        raise FileFormatError(path, "a folder, not a file", expected)
    if path.stat().st_size == 0:
        raise FileFormatError(path, "an empty file (0 bytes)", expected)
    return path


# -- arrays ------------------------------------------------------------------------------------------
def require_finite(path: str | Path, key: str, array: Any, expected: str = "finite numbers") -> np.ndarray:
    """``array`` as a numeric numpy array with no NaN or infinity, else one line naming ``key`` and the first bad index."""
    values = np.asarray(array)
    if values.dtype.kind not in "biuf":
        raise FileFormatError(path, f"'{key}' holds {values.dtype} values", expected)
    if values.dtype.kind == "f":
        bad = ~np.isfinite(values)
        if bad.any():
            index = tuple(int(i) for i in np.argwhere(bad)[0])
            where = f" at index {index}" if values.ndim else ""
            raise FileFormatError(path, f"'{key}' holds {int(bad.sum())} NaN or infinite value(s), the first "
                                        f"{values[index]!r}{where}", expected)
    return values


def _describe(shape: Shape) -> str:
    return "(" + ", ".join("any" if d is None else str(d) for d in shape) + ("," if len(shape) == 1 else "") + ")"


def check_shapes(path: str | Path, arrays: Mapping[str, np.ndarray], shapes: Mapping[str, Shape],
                 expected: str) -> dict[str, int]:
    """Every ``arrays[key]`` has the shape ``shapes[key]`` (see the module docstring); returns the
    sizes the names bound to."""
    sizes: dict[str, int] = {}
    for key, shape in shapes.items():
        actual = np.shape(arrays[key])
        ok = len(actual) == len(shape)
        for dim, size in zip(shape, actual) if ok else ():
            if isinstance(dim, str):
                ok = ok and sizes.setdefault(dim, size) == size
            elif dim is not None:
                ok = ok and dim == size
        if not ok:
            bound = ", ".join(f"{name}={size}" for name, size in sizes.items())
            raise FileFormatError(path, f"'{key}' has shape {tuple(actual)}",
                                  f"{_describe(shape)}{f' with {bound}' if bound else ''} in {expected}")
    return sizes


def _checked(path: Path, arrays: dict[str, Any], keys: Iterable[str], shapes: Mapping[str, Shape] | None,
             finite: Iterable[str], expected: str, kind: str) -> dict[str, Any]:
    """``arrays`` limited to ``keys``, after the key, shape and finiteness checks."""
    keys = list(keys)
    missing = [k for k in keys if k not in arrays]
    if missing:
        held = ", ".join(sorted(arrays)) or "nothing"
        raise FileFormatError(path, f"no {kind} {', '.join(repr(k) for k in missing)} (it holds {held})", expected)
    out = {k: arrays[k] for k in keys}
    if shapes:
        check_shapes(path, out, shapes, expected)
    for key in finite:
        out[key] = require_finite(path, key, out[key], f"finite numbers in {expected}")
    return out


# -- npz ---------------------------------------------------------------------------------------------
def read_npz(path: str | Path, expected: str, keys: Iterable[str] = (), shapes: Mapping[str, Shape] | None = None,
             finite: Iterable[str] = (), optional: Iterable[str] = ()) -> dict[str, np.ndarray]:
    """The arrays ``keys`` (and those of ``shapes``) of the ``.npz`` at ``path``, plus those of
    ``optional`` that it holds, read without pickles (an object array is refused:
    :func:`pose3d.safe_load.read_npz_object` reads those)."""
    path = require_file(path, expected)
    wanted = list(dict.fromkeys([*keys, *(shapes or {})]))
    optional = [k for k in optional if k not in wanted]
    if not zipfile.is_zipfile(path):
        raise FileFormatError(path, "not a zip archive (truncated, or another format)", expected)
    try:
        with np.load(path, allow_pickle=False) as data:
            held = set(data.files)
            arrays = {k: data[k] for k in [*wanted, *optional] if k in held}
    except ValueError as error:
        if "allow_pickle" in str(error):
            raise FileFormatError(path, "an array of pickled Python objects", expected) from None
        raise FileFormatError(path, f"a damaged archive ({first_line(error)})", expected) from None
    except DECODE_ERRORS as error:
        raise FileFormatError(path, f"a damaged archive ({first_line(error)})", expected) from None
    present = [k for k in optional if k in arrays]
    arrays.update({k: None for k in held - set(arrays)})  # named in a 'no key' message, never returned
    return _checked(path, arrays, wanted + present, shapes, finite, expected, "array")


# -- MATLAB ------------------------------------------------------------------------------------------
def is_hdf5(path: Path) -> bool:
    """A MATLAB v7.3 file (HDF5), judged by its signature."""
    import h5py

    return bool(h5py.is_hdf5(str(path)))


def _open_hdf5(path: Path, expected: str):
    import h5py

    try:
        return h5py.File(path, "r")
    except DECODE_ERRORS as error:
        raise FileFormatError(path, f"a damaged MATLAB v7.3 (HDF5) file ({first_line(error)})", expected) from None


def _hdf5_variable(path: Path, handle, key: str, expected: str) -> Any:
    try:
        return handle[key][()]
    except DECODE_ERRORS as error:
        raise FileFormatError(path, f"variable '{key}' cannot be read ({first_line(error)})", expected) from None


def read_mat(path: str | Path, expected: str, keys: Iterable[str] = (), shapes: Mapping[str, Shape] | None = None,
             finite: Iterable[str] = (), **options) -> dict[str, Any]:
    """The variables of a MATLAB file: v5 (``scipy.io.loadmat(**options)``) or v7.3 (HDF5, read with
    h5py and transposed back to MATLAB's dimension order). Without ``keys`` (and ``shapes``) every
    variable of a v5 file; with them only those, checked as :func:`read_npz` checks its arrays."""
    path = require_file(path, expected)
    wanted = list(dict.fromkeys([*keys, *(shapes or {})]))
    if is_hdf5(path):
        with _open_hdf5(path, expected) as handle:
            held = list(handle.keys())
            arrays: dict[str, Any] = {k: None for k in held}
            for key in (k for k in wanted if k in held):
                arrays[key] = np.asarray(_hdf5_variable(path, handle, key, expected)).transpose()
    else:
        from scipy.io import loadmat, whosmat
        from scipy.io.matlab import MatReadError

        if wanted:
            options.setdefault("variable_names", wanted)
        try:
            arrays = loadmat(str(path), **options)
            if any(k not in arrays for k in wanted):  # name what the file holds instead
                arrays = {name: None for name, _, _ in whosmat(str(path))}
        except (*DECODE_ERRORS, MatReadError) as error:
            raise FileFormatError(path, f"not a readable MATLAB file ({first_line(error)})", expected) from None
        if not wanted:
            return arrays
    return _checked(path, arrays, wanted, shapes, finite, expected, "variable")


def read_mat_cells(path: str | Path, keys: Iterable[str], expected: str) -> dict[str, list[np.ndarray]]:
    """The matrices (MATLAB order, column-major cell order) of the MATLAB cell arrays ``keys``, from a
    v5 or v7.3 file (in HDF5 a cell is an array of object references; each is transposed back)."""
    path = require_file(path, expected)
    keys = list(keys)
    if not is_hdf5(path):
        content = read_mat(path, expected, keys)
        return {key: [np.asarray(cell) for cell in np.asarray(content[key]).reshape(-1, order="F")] for key in keys}
    with _open_hdf5(path, expected) as handle:
        _checked(path, {k: None for k in handle.keys()}, keys, None, (), expected, "variable")
        out = {}
        for key in keys:
            refs = np.asarray(_hdf5_variable(path, handle, key, expected)).transpose().reshape(-1, order="F")
            try:
                out[key] = [np.asarray(handle[ref][()]).transpose() for ref in refs]
            except DECODE_ERRORS as error:
                raise FileFormatError(path, f"cell array '{key}' cannot be read ({first_line(error)})", expected) from None
        return out


# -- text, JSON, YAML ------------------------------------------------------------------------------
def read_text(path: str | Path, expected: str) -> str:
    """The UTF-8 text of the file at ``path``."""
    path = require_file(path, expected)
    try:
        return path.read_bytes().decode("utf-8")
    except UnicodeDecodeError as error:
        raise FileFormatError(path, f"binary content (byte {error.start} is not UTF-8 text)", expected) from None
    except OSError as error:
        raise FileFormatError(path, f"an unreadable file ({error.strerror or error})", expected) from None


def read_json(path: str | Path, expected: str) -> Any:
    """The JSON value in the file at ``path``."""
    text = read_text(path, expected)
    try:
        return json.loads(text)
    except json.JSONDecodeError as error:
        raise FileFormatError(path, f"invalid JSON ({error.msg} at line {error.lineno}, column {error.colno})",
                              expected) from None
    except RecursionError:
        raise FileFormatError(path, "JSON nested too deeply", expected) from None


def read_yaml(path: str | Path, expected: str) -> Any:
    """The YAML value in the file at ``path`` (safe loader: data only)."""
    import yaml

    text = read_text(path, expected)
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as error:
        raise FileFormatError(path, f"invalid YAML ({first_line(error)})", expected) from None


# -- images ------------------------------------------------------------------------------------------
def _truncation(data: bytes) -> Optional[str]:
    """What is missing at the end of a JPEG or PNG file (libjpeg decodes a truncated JPEG, greying
    the rest), or None."""
    if data[:3] == b"\xff\xd8\xff" and not data.rstrip(b"\x00\r\n ").endswith(b"\xff\xd9"):
        return "a truncated JPEG (no end-of-image marker)"
    if data[:8] == b"\x89PNG\r\n\x1a\n" and b"IEND" not in data[-12:]:
        return "a truncated PNG (no IEND chunk)"
    return None


def read_image(path: str | Path, expected: str = "a JPEG or PNG image") -> np.ndarray:
    """The image at ``path`` as RGB uint8 (H, W, 3), decoded whole."""
    import cv2

    path = require_file(path, expected)
    try:
        data = path.read_bytes()
    except OSError as error:
        raise FileFormatError(path, f"an unreadable file ({error.strerror or error})", expected) from None
    truncated = _truncation(data)
    if truncated:
        raise FileFormatError(path, truncated, expected)
    image = cv2.imdecode(np.frombuffer(data, dtype=np.uint8), cv2.IMREAD_COLOR)
    if image is None:
        raise FileFormatError(path, f"{len(data)} bytes that do not decode as an image", expected)
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)
