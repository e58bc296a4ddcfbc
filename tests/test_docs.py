"""The docs check (tests/docs_check.py): README.md and docs/ hold no broken command, link or figure."""
from __future__ import annotations

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
