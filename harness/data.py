"""Check a real dataset's folder before training on it.

    python -m pose3d.data check DATASET PATH [data.key=value ...]

``DATASET`` is a ``data.name`` whose DataModule reads a copy of a real dataset (human36m,
mpi_inf_3dhp, mpii, lsp); optional ``data.key=value`` pairs set other ``data.*`` fields as a
training run takes them (e.g. ``data.layout=poses data.protocol=2``; the bare ``layout=poses``
is accepted too). Prints what was found (subjects, frames per split, cameras, whether images
are there) and exits 0; exits 2 with a one-line error when a split a run reads (train, val,
test) would be empty, or with the error naming the missing file, then the expected layout --
the same message a training run with that ``data.root`` stops with. DataModules are imported
lazily through the ``DATAMODULES`` registry.
"""
from __future__ import annotations

import sys

from pose3d.config import ConfigError

EXIT_BAD = 2
USAGE = "usage: python -m pose3d.data check DATASET PATH [data.key=value ...]"
# registry entries that do not read one dataset folder
NOT_CHECKABLE = ("synthetic", "mixed")


def checkable_datasets() -> list[str]:
    from datamodules import DATAMODULES

    return [name for name in DATAMODULES if name not in NOT_CHECKABLE]


def data_key(arg: str) -> str:
    """``key=value`` of a ``data.key=value`` argument (the key as a training run names it)."""
    arg = arg[2:] if arg.startswith("--") else arg
    return arg[len("data."):] if arg.startswith("data.") else arg


def _overrides(args: list[str]) -> dict:
    from omegaconf import OmegaConf

    from pose3d.config import parse_overrides

    return OmegaConf.to_container(parse_overrides([data_key(arg) for arg in args]), resolve=True) if args else {}


def checked_module(dataset: str, path: str, args: list[str] | None = None):
    """The DataModule of ``dataset`` at ``path`` with the ``data.*`` settings ``args``; raises
    :class:`ConfigError` (e.g. ``DatasetLayoutError``) with a one-line message."""
    from datamodules import DATAMODULES

    choices = checkable_datasets()
    if dataset not in choices:
        raise ConfigError(f"unknown dataset '{dataset}'; choose one of: {', '.join(choices)}")
    cls = DATAMODULES.load(dataset)
    if not hasattr(cls, "check"):
        raise ConfigError(f"dataset '{dataset}' has no layout check; choose one of: {', '.join(choices)}")
    overrides = _overrides(list(args or []))
    if "root" in overrides:
        raise ConfigError("give the dataset folder as PATH, not data.root=...; expected: " + USAGE[len("usage: "):])
    if overrides.get("name", dataset) != dataset:
        raise ConfigError(f"data.name={overrides['name']} differs from DATASET {dataset}; expected DATASET alone")
    from omegaconf import OmegaConf

    from pose3d.config import validated

    cfg = validated(cls.Config, {**overrides, "root": path}, "command line", "data.")
    return cls(OmegaConf.to_container(cfg, resolve=True))


def help_text() -> str:
    from datamodules import DATAMODULES
    from harness.cli_help import source_file

    datasets = "\n".join(f"  {name:<13} data.* keys: the Config dataclass in {source_file(DATAMODULES.entries[name])}"
                         for name in checkable_datasets())
    return "\n\n".join([
        USAGE,
        "Check a copy of a real dataset before training on it: prints the subjects, frames per split, cameras and\n"
        "whether the images are there, and exits 0; a missing file (with the expected layout) or a split a run\n"
        "reads (train, val, test) that would be empty exits 2 with one line.",
        "arguments:\n"
        "  DATASET           one of the datasets below (a training run's data.name)\n"
        "  PATH              the dataset's folder (a training run's data.root)\n"
        "  data.key=value    other data.* settings, named as a training run names them, e.g. data.layout=poses\n"
        "                    data.protocol=2 data.val_subjects=[7] (key=value without data. works too)\n"
        "  -h, --help        show this help and exit",
        "datasets:\n" + datasets + "\n  (python -m pose3d.train experiment=X data.name=DATASET --keys lists each key "
        "with its value and note)",
    ])


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else list(argv)
    if "-h" in args or "--help" in args:
        print(help_text())
        return 0
    if len(args) < 3 or args[0] != "check":
        print(USAGE, file=sys.stderr)
        try:
            print(f"datasets: {', '.join(checkable_datasets())}", file=sys.stderr)
        except Exception:  # noqa: BLE001 - the usage line matters more than the list
            pass
        return EXIT_BAD
    try:
        module = checked_module(args[1], args[2], args[3:])
        print(module.check())  # what was found, also when a split then turns out empty
        module.check_splits()
    except ConfigError as error:
        print(f"error: {error}", file=sys.stderr)
        hint = getattr(error, "hint", "")
        if hint:
            print("expected layout:\n" + hint, file=sys.stderr)
        return EXIT_BAD
    return 0


if __name__ == "__main__":
    sys.exit(main())
