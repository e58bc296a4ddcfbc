"""The DataModule <-> method contract as types (DESIGN.md, "One batch contract").

Two things cross the boundary besides the batches themselves:

* :class:`DataInfo`, from the DataModule to the method: what a model must know about its data
  before it is built (joints, crop size, action names, the joints a protocol scores). A
  checkpoint stores it as a plain dict (:meth:`DataInfo.as_dict`); :meth:`DataInfo.from_any`
  reads either form back.
* target requests, from the method to the DataModule: optional batch keys rendered from the
  labels on demand. A method's ``required_targets()`` returns ``{batch_key: spec}``; ``spec["kind"]``
  names a registered :class:`TargetKind` and defaults to the key, the other fields are the
  kind's parameters::

      {"heatmaps": {"size": 16, "sigma": 1.0},                  # kind "heatmaps"
       "heatmaps_64": {"kind": "heatmaps", "size": 64},          # a second size, its own key
       "skeleton_maps": {"size": 56, "stick_width": [5, 10, 15]}}

  :func:`merge_target_requests` combines several requests (a method and its 2D sub-network,
  two methods sharing one DataModule) into one, and a DataModule renders every key with its
  kind's renderer (:class:`datamodules.targets.TargetMaker`).

Target kinds register with :func:`target_kind`; the built-in ones (``heatmaps``,
``skeleton_maps``) live in :mod:`pose3d.targets`, loaded on the first lookup. Like all of the
shared core, this module imports nothing from ``datamodules`` or ``lightning_modules``.
"""
from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, fields
from typing import Any

from torch import Tensor

from pose3d.config import ConfigError
from pose3d.skeleton import NUM_JOINTS


@dataclass(frozen=True)
class DataInfo:
    """What a method needs to know about its data; every DataModule fills every field."""

    num_joints: int = NUM_JOINTS
    image_size: int = 64  # side of the square input crop, pixels
    action_names: tuple[str, ...] = ()  # name of each ``action`` id; () = the data has no actions
    eval_joints: tuple[int, ...] | None = None  # joints the protocol scores (H36M #2/#3: 14); None = all
    test_subjects: tuple[str, ...] = ()  # dataset subject names of the test split (e.g. "S9", "S11"); () = none to guard
    domains: tuple[str, ...] = ()  # names of the val/test batches' ``domain`` ids (synthetic studio/wild); () = one domain

    def __post_init__(self) -> None:
        # checkpoints and YAML hold lists: store tuples so that infos compare equal either way
        object.__setattr__(self, "num_joints", int(self.num_joints))
        object.__setattr__(self, "image_size", int(self.image_size))
        object.__setattr__(self, "action_names", tuple(str(name) for name in self.action_names))
        object.__setattr__(self, "test_subjects", tuple(str(name) for name in self.test_subjects))
        object.__setattr__(self, "domains", tuple(str(name) for name in self.domains))
        if self.eval_joints is not None:
            joints = tuple(int(j) for j in self.eval_joints)
            outside = [j for j in joints if not 0 <= j < self.num_joints]
            if outside:
                raise ValueError(f"DataInfo.eval_joints {outside} are outside 0..{self.num_joints - 1}")
            object.__setattr__(self, "eval_joints", joints)

    def as_dict(self) -> dict[str, Any]:
        """Plain types only (ints, lists, None), as a checkpoint's hyper-parameters and YAML hold them."""
        return {
            "num_joints": self.num_joints,
            "image_size": self.image_size,
            "action_names": list(self.action_names),
            "eval_joints": None if self.eval_joints is None else list(self.eval_joints),
            "test_subjects": list(self.test_subjects),
            "domains": list(self.domains),
        }

    @classmethod
    def from_any(cls, info: DataInfo | Mapping[str, Any]) -> DataInfo:
        """``info`` itself, or a :class:`DataInfo` made from a dict (e.g. a checkpoint's hyper-parameters)."""
        if isinstance(info, cls):
            return info
        if not isinstance(info, Mapping):
            raise TypeError(f"expected a DataInfo or a dict of its fields, got {type(info).__name__}")
        names = [f.name for f in fields(cls)]
        unknown = sorted(set(info) - set(names))
        if unknown:
            raise ValueError(f"unknown DataInfo field(s) {unknown}; expected some of {names}")
        return cls(**dict(info))


# ------------------------------------------------------------------------------ target kinds

Renderer = Callable[[Mapping[str, Tensor], int, Mapping[str, Any]], Tensor]


@dataclass(frozen=True)
class TargetKind:
    """A kind of optional batch key: ``render(batch, image_size, spec) -> Tensor`` (B, ...) and the
    fields a request of this kind must give (``required``) or may give (``defaults``)."""

    name: str
    render: Renderer
    required: tuple[str, ...]
    defaults: Mapping[str, Any]

    def normalise(self, key: str, spec: Mapping[str, Any]) -> dict[str, Any]:
        """The complete spec of one request (kind and defaults filled in), or a one-line
        :class:`ConfigError` naming a missing or unknown field."""
        given = {name: _plain(value) for name, value in spec.items() if name != "kind"}
        allowed = (*self.required, *self.defaults)
        missing = [name for name in self.required if name not in given]
        unknown = sorted(set(given) - set(allowed))
        if missing or unknown:
            problem = f"lacks {missing}" if missing else f"has unknown field(s) {unknown}"
            raise ConfigError(f"target '{key}' (kind {self.name}) {problem}; expected fields: {', '.join(allowed)}")
        complete = {**self.defaults, **given}
        return {"kind": self.name, **{name: complete[name] for name in allowed if name in complete}}


TARGET_KINDS: dict[str, TargetKind] = {}


def target_kind(name: str, *, required: Sequence[str] = ("size",), defaults: Mapping[str, Any] | None = None):
    """Decorator registering ``render(batch, image_size, spec) -> Tensor`` as the renderer of the
    target kind ``name``; ``required`` and ``defaults`` declare the fields of its requests."""

    def register(render: Renderer) -> Renderer:
        if name in TARGET_KINDS:
            raise ValueError(f"target kind '{name}' is registered twice")
        TARGET_KINDS[name] = TargetKind(name, render, tuple(required), dict(defaults or {}))
        return render

    return register


def get_target_kind(name: str) -> TargetKind:
    """The registered kind ``name``, or a one-line :class:`ConfigError` naming the known kinds."""
    import pose3d.targets  # noqa: F401  (registers the built-in kinds)

    if name not in TARGET_KINDS:
        raise ConfigError(f"unknown target kind '{name}'; known kinds: {', '.join(sorted(TARGET_KINDS))}")
    return TARGET_KINDS[name]


# --------------------------------------------------------------------------- target requests

def normalise_target_request(request: Mapping[str, Mapping[str, Any]]) -> dict[str, dict[str, Any]]:
    """``{batch_key: complete spec}``: each spec's ``kind`` (default: the key) checked against the
    registry and its fields completed with the kind's defaults, so equal renderings compare equal."""
    out = {}
    for key, spec in request.items():
        spec = dict(spec or {})
        out[str(key)] = get_target_kind(str(spec.get("kind", key))).normalise(str(key), spec)
    return out


def merge_target_requests(*requests: Mapping[str, Mapping[str, Any]]) -> dict[str, dict[str, Any]]:
    """One request holding every key of ``requests``: a key asked for twice with the same spec is
    made once; with different specs it is a one-line :class:`ConfigError` naming the key and both
    specs (give the second rendering its own key, e.g. ``heatmaps_64``)."""
    merged: dict[str, dict[str, Any]] = {}
    for request in requests:
        for key, spec in normalise_target_request(request or {}).items():
            if key in merged and merged[key] != spec:
                raise ConfigError(f"target '{key}' is requested with two different specs, {merged[key]} and {spec}; "
                                  "expected one spec per batch key (give the other its own key and a 'kind')")
            merged[key] = spec
    return merged


def _plain(value: Any) -> Any:
    """Lists (also OmegaConf's) as tuples, so that specs compare equal whatever made them."""
    if isinstance(value, Sequence) and not isinstance(value, str):
        return tuple(_plain(v) for v in value)
    return value
