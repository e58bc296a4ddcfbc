"""Command-line options with their valid ranges, for every entry point's ``argparse`` parser.

:class:`OneLineParser` reports a bad option as the project reports every user error: one line
(``error: argument --batches: expected an integer >= 1, got '0' (see python -m pose3d.bench
--help)``) and exit status 2, instead of argparse's usage block. The type functions check a
value's range where it is parsed, so no command starts with a count of zero, a fraction outside
its interval or an experiment that does not exist.
"""
from __future__ import annotations

import argparse
from collections.abc import Callable


class OneLineParser(argparse.ArgumentParser):
    """argparse with the project's one-line error and exit status 2 (subcommands inherit it)."""

    def error(self, message: str):
        self.exit(2, f"error: {message} (see {self.prog} --help)\n")


def bounded_int(minimum: int, maximum: int | None = None) -> Callable[[str], int]:
    """An argparse type: an integer >= ``minimum`` (and <= ``maximum``)."""
    expected = f"an integer >= {minimum}" + (f" and <= {maximum}" if maximum is not None else "")

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {expected}, got {text!r}") from None
        if value < minimum or (maximum is not None and value > maximum):
            raise argparse.ArgumentTypeError(f"expected {expected}, got {text!r}")
        return value

    parse.__name__ = expected  # argparse names the type in its own messages
    return parse


def int_at_least(minimum: int) -> Callable[[str], int]:
    """An argparse type: an integer >= ``minimum`` (a count: batches, rounds, steps, seeds)."""
    return bounded_int(minimum)


def open_fraction(text: str) -> float:
    """An argparse type: a number strictly between 0 and 1."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a fraction in (0, 1), got {text!r}") from None
    if not 0.0 < value < 1.0:
        raise argparse.ArgumentTypeError(f"expected a fraction in (0, 1), got {text!r}")
    return value


def experiment_list(text: str) -> list[str]:
    """An argparse type: comma-separated names of ``experiments/*.yaml`` (empty: none given)."""
    from pose3d.config import available_experiments

    names = [name.strip() for name in text.split(",") if name.strip()]
    known = available_experiments()
    unknown = [name for name in names if name not in known]
    if unknown:
        raise argparse.ArgumentTypeError(f"unknown experiment {unknown[0]!r}; choose among {', '.join(known)}")
    return names


def preset_option(parser: argparse.ArgumentParser, default: str | None, help: str) -> None:
    """``--preset`` limited to the global presets (smoke, quick, paper)."""
    from pose3d.config import PRESETS

    parser.add_argument("--preset", default=default, choices=tuple(PRESETS), help=help)


def require_cuda(parser: argparse.ArgumentParser, device: str) -> None:
    """``--device cuda`` on a machine where torch sees no CUDA device is a one-line error."""
    if device.startswith("cuda"):
        import torch

        if not torch.cuda.is_available():
            parser.error(f"argument --device: {device} was asked for, but this machine has no CUDA device; "
                         "expected --device cpu")
