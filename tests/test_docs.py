"""The docs check (tests/docs_check.py): README.md and docs/ hold no broken command, link or figure."""
from __future__ import annotations

import re
from pathlib import Path

from tests.docs_check import REPO_ROOT, broken_links, check_command, fenced_commands, markdown_files, problems


def test_every_command_and_link_in_the_docs_works():
    found = problems(markdown_files())
    assert not found, "\n".join(found)


def test_a_broken_command_or_link_is_reported(tmp_path):
    page = tmp_path / "page.md"
    page.write_text(
        "Text with [a link](missing.md), ![a figure](figures/none.png), [a site](https://example.org) and [an anchor](#x).\n\n"
        "```bash\n"
        "make test                                   # fine\n"
        "WANDB_MODE=offline python -m pose3d.train experiment=baseline preset=smoke   # fine\n"
        "python -m pose3d.train experiment=baseline model.nonsense=1\n"
        "python -m pose3d.train experiment=nope\n"
        "make no-such-target && python -m pose3d.bench render --rounds 2 \\\n"
        "    --batches 3\n"
        "python -m pose3d.bench nonsense\n"
        "```\n\n"
        "```text\n"
        "python -m pose3d.train experiment=NAME   (a synopsis, not checked)\n"
        "```\n")
    assert [c for _, c in fenced_commands(page)] == [
        "make test", "python -m pose3d.train experiment=baseline preset=smoke",
        "python -m pose3d.train experiment=baseline model.nonsense=1", "python -m pose3d.train experiment=nope",
        "make no-such-target", "python -m pose3d.bench render --rounds 2 --batches 3",
        "python -m pose3d.bench nonsense"]
    assert broken_links(page) == ["missing.md", "figures/none.png"]
    report = problems([page])
    assert len(report) == 6
    assert "model.nonsense" in report[0] and "nope" in report[1] and "no-such-target" in report[2]
    assert check_command("make test") is None and check_command("python -m pose3d.bench render --rounds 2") is None
    assert "invalid choice" in check_command("python -m pose3d.bench nonsense")


DEVELOPMENT_HISTORY = re.compile(r"\b(session|round) \d+|\bissue #?\d+", re.IGNORECASE)
UNNAMED_MACHINE = re.compile(r"\bthis machine\b", re.IGNORECASE)  # in prose a figure names its CPU instead


def history_hits(paths: list[Path], pattern: re.Pattern, root: Path = REPO_ROOT) -> list[str]:
    """``<path>:<line>: <text>`` of every line of ``paths`` that ``pattern`` matches."""
    return [f"{path.relative_to(root)}:{n}: {line.strip()}" for path in paths
            for n, line in enumerate(path.read_text().splitlines(), 1) if pattern.search(line)]


def test_the_docs_and_code_tell_no_development_history():
    """No development-round or issue numbers in README, docs, code (docstrings, comments) or YAML;
    no "this machine" in the docs, where a measurement names its CPU."""
    sources = [p for folder in ("pose3d", "harness", "lightning_modules", "datamodules", "experiments", "ablations",
                                "tests", "slurm") for p in sorted((REPO_ROOT / folder).rglob("*"))
               if p.suffix in (".py", ".yaml", ".sh") and p.name != "test_docs.py"]
    hits = history_hits(markdown_files() + sources + [REPO_ROOT / "Makefile"], DEVELOPMENT_HISTORY)
    hits += history_hits(markdown_files(), UNNAMED_MACHINE)
    assert not hits, "\n".join(hits)


def test_the_history_check_finds_a_round_label(tmp_path):
    label, number = "session", 8  # built here, so this file holds no label itself
    page = tmp_path / "page.md"
    page.write_text(f"Measured in {label} {number} on this machine.\nFixed (issue #{number + 4}).\n"
                    "The round trip of 3 files.\n")
    assert history_hits([page], DEVELOPMENT_HISTORY, tmp_path) == [
        f"page.md:1: Measured in {label} {number} on this machine.", f"page.md:2: Fixed (issue #{number + 4})."]
    assert history_hits([page], UNNAMED_MACHINE, tmp_path) == [f"page.md:1: Measured in {label} {number} on this machine."]


def test_the_readme_is_short_and_starts_with_the_two_commands():
    lines = (REPO_ROOT / "README.md").read_text().splitlines()
    assert len(lines) <= 250, f"README.md has {len(lines)} lines; details belong in docs/"
    first_block = lines[lines.index("```bash") + 1:lines.index("```")]
    assert [line.split("#")[0].strip() for line in first_block] == ["make ablation-fusion", "make test"]
