"""Check a real dataset's folder before training on it.

    python -m pose3d.data check DATASET PATH [key=value ...]

``DATASET`` is a ``data.name`` whose DataModule reads a copy of a real dataset (human36m,
mpi_inf_3dhp, mpii, lsp); optional ``key=value`` pairs set other ``data.*`` fields (e.g.
``layout=poses protocol=2``). Prints what was found (subjects, frames per split, cameras,
whether images are there) and exits 0, or prints the one-line error naming the missing file,
then the expected layout, and exits 2 -- the same message a training run with that
``data.root`` stops with. DataModules are imported lazily through the ``DATAMODULES`` registry.
"""
from __future__ import annotations

import sys

from pose3d.config import ConfigError

EXIT_BAD = 2
USAGE = "usage: python -m pose3d.data check DATASET PATH [key=value ...]"
# registry entries that do not read one dataset folder
NOT_CHECKABLE = ("synthetic", "mixed")


def checkable_datasets() -> list[str]:
    from datamodules import DATAMODULES

    return [name for name in DATAMODULES if name not in NOT_CHECKABLE]


def _overrides(args: list[str]) -> dict:
    from omegaconf import OmegaConf

    from pose3d.config import parse_overrides

    return OmegaConf.to_container(parse_overrides(args), resolve=True) if args else {}


def check(dataset: str, path: str, args: list[str] | None = None) -> str:
    """The dataset's report; raises :class:`ConfigError` (e.g. ``DatasetLayoutError``) with a one-line message."""
    from datamodules import DATAMODULES

    choices = checkable_datasets()
    if dataset not in choices:
        raise ConfigError(f"unknown dataset '{dataset}'; choose one of: {', '.join(choices)}")
    cls = DATAMODULES.load(dataset)
    if not hasattr(cls, "check"):
        raise ConfigError(f"dataset '{dataset}' has no layout check; choose one of: {', '.join(choices)}")
    overrides = _overrides(list(args or []))
    if "root" in overrides:
        raise ConfigError("give the dataset folder as PATH, not root=...; expected: " + USAGE[len("usage: "):])
    from omegaconf import OmegaConf

    from pose3d.config import validated

    cfg = validated(cls.Config, {**overrides, "root": path}, "command line")
    module = cls(OmegaConf.to_container(cfg, resolve=True))
    return module.check()


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else list(argv)
    if len(args) < 3 or args[0] != "check":
        print(USAGE, file=sys.stderr)
        try:
            print(f"datasets: {', '.join(checkable_datasets())}", file=sys.stderr)
        except Exception:  # noqa: BLE001 - the usage line matters more than the list
            pass
        return EXIT_BAD
    try:
        report = check(args[1], args[2], args[3:])
    except ConfigError as error:
        print(f"error: {error}", file=sys.stderr)
        hint = getattr(error, "hint", "")
        if hint:
            print("expected layout:\n" + hint, file=sys.stderr)
        return EXIT_BAD
    print(report)
    return 0


if __name__ == "__main__":
    sys.exit(main())
