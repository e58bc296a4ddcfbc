"""The docs check: every command a reader can copy from README.md or docs/ parses, and every
relative link and figure exists.

* Commands: the lines of fenced ``bash`` / ``sh`` / ``console`` blocks (and unlabelled ones) that start
  with ``make`` or ``python -m`` (after an optional ``$ `` prompt and ``KEY=value`` environment
  words; ``\\`` continues a line; ``#`` starts a comment). Nothing trains or writes: a ``make``
  line runs as ``make -n`` (the recipe is printed, not run), and a project module's arguments
  and config are parsed only (:func:`check_python`): ``pose3d.train`` resolves its config
  (unknown keys, bad values, unknown experiments or variants fail), ``pose3d.evaluate`` validates
  its keys, and every argparse command parses its arguments and stops there.
* Links: ``[text](target)`` and ``![alt](target)`` whose target is not a URL or an anchor must
  name an existing file or folder relative to the Markdown file (the ``#anchor`` part dropped).

Used by ``tests/test_docs.py``; ``python -m tests.docs_check [FILES]`` prints what it finds.
"""
from __future__ import annotations

import argparse
import contextlib
import importlib
import io
import re
import shlex
import subprocess
import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
FENCE = re.compile(r"^\s*```(\w*)\s*$")
CHECKED_FENCES = {"", "bash", "sh", "shell", "console"}
LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)(?:\s+\"[^\"]*\")?\)")
ENV_WORD = re.compile(r"^[A-Z_][A-Z0-9_]*=\S*$")
PROJECT_PACKAGES = ("pose3d.", "harness.", "datamodules.", "lightning_modules.", "tests.")
# python -m MODULE -> (module holding main, how its arguments are parsed)
ENTRY_POINTS = {
    "pose3d.train": ("harness.train", "config"),
    "pose3d.evaluate": ("harness.evaluate", "evaluate"),
    "pose3d.ablation": ("harness.ablation", "argparse"),
    "pose3d.compare": ("harness.compare", "argparse"),
    "pose3d.bench": ("harness.bench", "argparse"),
    "pose3d.report": ("harness.report", "argparse"),
    "pose3d.data": ("harness.data", "data"),
    "pose3d.predict": ("harness.predict", "argparse"),
    "pose3d.h36m_standin": ("harness.h36m_standin", "argparse"),
    "pose3d.ppca": ("pose3d.ppca", "argparse"),
    "harness.dry_run": ("harness.dry_run", "argparse"),
    "harness.gpu_check": ("harness.gpu_check", "argparse"),
    "harness.compare": ("harness.compare", "argparse"),
    "tests.fixtures_h36m": (None, "module"),
}


def markdown_files() -> list[Path]:
    """README.md and every Markdown file under docs/."""
    return [REPO_ROOT / "README.md", *sorted((REPO_ROOT / "docs").rglob("*.md"))]


def fenced_commands(path: Path) -> list[tuple[int, str]]:
    """(line number, command) of every ``make`` / ``python -m`` line in the checked fenced blocks."""
    commands, fence, pending, start = [], None, "", 0
    for number, line in enumerate(path.read_text().splitlines(), 1):
        match = FENCE.match(line)
        if match:
            fence = None if fence is not None else match.group(1).lower()
            continue
        if fence is None or fence not in CHECKED_FENCES:
            continue
        text = line.strip()
        if pending:
            text, start = pending + " " + text, start
        else:
            start = number
        if text.endswith("\\"):
            pending = text[:-1].strip()
            continue
        pending = ""
        for words in _simple_commands(text.removeprefix("$ ").strip()):
            while words and ENV_WORD.match(words[0]):
                words = words[1:]
            if words[:1] == ["make"] or words[:2] == ["python", "-m"]:
                commands.append((start, shlex.join(words)))
    return commands


def _simple_commands(text: str) -> list[list[str]]:
    """The words of each simple command of a shell line (split at ``&&``, ``||``, ``;``, ``|``,
    ``&``), a trailing ``#`` comment dropped."""
    try:
        lexer = shlex.shlex(text, posix=True, punctuation_chars=True)
        lexer.whitespace_split, lexer.commenters = True, "#"
        tokens = list(lexer)
    except ValueError:
        return []
    commands, current = [], []
    for token in tokens:
        if token and set(token) <= set("&|;"):
            commands.append(current)
            current = []
        else:
            current.append(token)
    return [c for c in commands + [current] if c]


class _Parsed(Exception):
    """Raised by the patched argparse once a command's arguments have parsed."""


def check_python(module: str, args: list[str]) -> str | None:
    """None when ``python -m module args`` parses; else what is wrong, in one line."""
    if not module.startswith(PROJECT_PACKAGES):
        return None  # another tool (pytest, pip, ...): not the project's to check
    if module not in ENTRY_POINTS:
        return f"unknown module {module}; expected one of the project's entry points: {', '.join(ENTRY_POINTS)}"
    target, kind = ENTRY_POINTS[module]
    if kind == "module":
        return None if importlib.util.find_spec(module) else f"cannot import {module}"
    flags = [a for a in args if a.startswith("--")]
    if kind == "config":
        from harness.train import load_config
        from pose3d.config import ConfigError

        try:
            load_config([a for a in args if a not in flags])
        except ConfigError as error:
            return str(error)
        return None
    if kind == "evaluate":
        from omegaconf import OmegaConf

        from harness.evaluate import EvaluateConfig
        from pose3d.config import ConfigError, parse_overrides, validated

        if not args or "=" in args[0]:
            return "expected a run folder or a pose prior first"
        try:
            overrides = OmegaConf.to_container(parse_overrides(args[1:]), resolve=True) if args[1:] else {}
            validated(EvaluateConfig, {k: v for k, v in overrides.items() if k != "data"}, "command line")
        except ConfigError as error:
            return str(error)
        return None
    if kind == "data":  # check DATASET PATH [keys]: the dataset and its keys, not the folder
        from harness.data import _overrides, checkable_datasets
        from pose3d.config import ConfigError, validated

        if len(args) < 3 or args[0] != "check" or args[1] not in checkable_datasets():
            return f"expected: check DATASET PATH [key=value ...] with DATASET one of {', '.join(checkable_datasets())}"
        from datamodules import DATAMODULES

        try:
            validated(DATAMODULES.load(args[1]).Config, {**_overrides(args[3:]), "root": args[2]}, "command line")
        except ConfigError as error:
            return str(error)
        return None
    main = importlib.import_module(target).main
    original = argparse.ArgumentParser.parse_known_args

    def parse_and_stop(self, *a, **k):
        original(self, *a, **k)
        raise _Parsed

    stderr = io.StringIO()
    argparse.ArgumentParser.parse_known_args = parse_and_stop
    try:
        with contextlib.redirect_stderr(stderr), contextlib.redirect_stdout(io.StringIO()):
            code = main(args)
    except _Parsed:
        return None
    except SystemExit as exit_:
        return None if exit_.code in (0, None) else (stderr.getvalue().strip().splitlines() or ["exit"])[-1]
    finally:
        argparse.ArgumentParser.parse_known_args = original
    return None if code == 0 else (stderr.getvalue().strip().splitlines() or [f"exit {code}"])[-1]


def check_make(args: list[str]) -> str | None:
    """None when ``make -n args`` succeeds in the repository (nothing runs)."""
    done = subprocess.run(["make", "-n", *args], cwd=REPO_ROOT, capture_output=True, text=True, timeout=60)
    return None if done.returncode == 0 else (done.stderr.strip().splitlines() or [f"exit {done.returncode}"])[-1]


def check_command(command: str) -> str | None:
    words = shlex.split(command)
    if words[0] == "make":
        return check_make(words[1:])
    return check_python(words[2], words[3:])


def broken_links(path: Path) -> list[str]:
    """The relative link targets of ``path`` that name no file or folder."""
    broken = []
    for target in LINK.findall(path.read_text()):
        if re.match(r"^[a-z]+:", target) or target.startswith("#"):
            continue
        if not (path.parent / target.split("#", 1)[0]).exists():
            broken.append(target)
    return broken


def problems(paths: list[Path]) -> list[str]:
    """``file:line: command: why`` and ``file: broken link target`` for every problem found."""
    found = []
    for path in paths:
        name = path.relative_to(REPO_ROOT) if path.is_relative_to(REPO_ROOT) else path
        for number, command in fenced_commands(path):
            why = check_command(command)
            if why:
                found.append(f"{name}:{number}: {command}: {why}")
        found += [f"{name}: broken link {target}" for target in broken_links(path)]
    return found


if __name__ == "__main__":
    files = [Path(p).resolve() for p in sys.argv[1:]] or markdown_files()
    report = problems(files)
    print("\n".join(report) or "no problems")
    sys.exit(1 if report else 0)
