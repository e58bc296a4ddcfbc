"""What every entry point's ``--help`` says about runs: the experiments with their variants, the
presets, the data names, and where each section of the config keys is defined.

:func:`config_guide` is the shared epilog of ``python -m pose3d.train --help`` and of the other
commands' ``--help`` (ablation, compare, bench, predict, evaluate); it reads the experiment
files and the registries' entries, so it imports no method or DataModule.
"""
from __future__ import annotations

import textwrap

from pose3d.config import PRESETS, available_experiments, read_experiment

WIDTH = 110  # characters per line of the wrapped lists

# one phrase per global preset (pose3d.config.PRESETS); an experiment refines it in its own presets: block
PRESET_NOTES = {
    "smoke": "a few batches, seconds: checks that a run works",
    "quick": "a real small training on a 2-core CPU, minutes",
    "paper": "the paper's sizes and schedule, for a GPU",
    "h36m_poses": "Human3.6M's pose files (data.root=PATH, no images): the image-free methods, sized for a 2-core CPU",
}


def source_file(entry: str) -> str:
    """``datamodules/human36m.py`` of a registry entry ``datamodules.human36m:Human36MDataModule``."""
    return entry.split(":")[0].replace(".", "/") + ".py"


def experiments_text() -> str:
    """One line per experiment file: its method and its variants (the default one starred)."""
    lines = []
    for name in available_experiments():
        experiment = read_experiment(name)
        variants = list((experiment.get("variants") or {}).keys())
        default = experiment.get("variant")
        shown = ", ".join(f"{v}*" if v == default else v for v in variants) or "none"
        method = (experiment.get("model") or {}).get("name", "?")
        lines.append(f"  {name:<20} model.name={method:<20} variants: {shown}")
    return "\n".join(lines)


def sweep_files_text() -> str:
    """One line per sweep file of ``ablations/``: its grid (each parameter's value or values)."""
    import yaml

    from pose3d.config import REPO_ROOT

    lines = []
    for path in sorted((REPO_ROOT / "ablations").glob("*.yaml")):
        parameters = (yaml.safe_load(path.read_text()) or {}).get("parameters")
        if not isinstance(parameters, dict):  # references.yaml: the papers' numbers, no grid
            continue
        grid = [f"{name}={spec['value']}" if "value" in spec else f"{name} in [{', '.join(map(str, spec['values']))}]"
                for name, spec in parameters.items() if isinstance(spec, dict) and ("value" in spec or "values" in spec)]
        lines.append(textwrap.fill(f"ablations/{path.name}: {'; '.join(grid)}", WIDTH, initial_indent="  ",
                                   subsequent_indent="    ", break_on_hyphens=False))
    return "\n".join(lines)


def presets_text() -> str:
    width = max(map(len, PRESETS)) + 1
    return "\n".join(f"  {name:<{width}} {PRESET_NOTES.get(name, '')}" for name in PRESETS)


def sections_text() -> str:
    """Where each section of the config keys is defined."""
    from datamodules import DATAMODULES
    from lightning_modules import MODELS

    def wrapped(text: str) -> str:
        return textwrap.fill(text, WIDTH, initial_indent="  ", subsequent_indent="    ", break_on_hyphens=False)

    methods = ", ".join(f"{name} ({source_file(MODELS.entries[name])})" for name in MODELS)
    data = ", ".join(f"{name} ({source_file(DATAMODULES.entries[name])})" for name in DATAMODULES)
    return "\n".join([
        "  run keys (experiment, preset, variant, seed, name, results_dir, ckpt_path, ...), trainer.*, optim.*,",
        "    logger.*: the dataclasses RunConfig, TrainerConfig, OptimConfig, LoggerConfig in pose3d/config.py",
        wrapped("model.*: the Config dataclass of the method that model.name names: " + methods),
        wrapped("data.*: the Config dataclass of the DataModule that data.name names: " + data),
        "  each experiment's values, presets: and variants: blocks: experiments/<experiment>.yaml;",
        "    the global presets: PRESETS in pose3d/config.py",
        "  python -m pose3d.train experiment=X [key=value ...] --keys lists every key of that run with its value,",
        "    valid values and note; --cfg prints the whole resolved config (nothing runs)",
    ])


def config_guide() -> str:
    """The epilog of every entry point's ``--help``."""
    return "\n\n".join([
        "experiments (experiment=NAME; variant=V picks one of its variants, * marks the default):\n" + experiments_text(),
        "presets (preset=P):\n" + presets_text(),
        "config keys (key=value; an unknown key or bad value is one line naming the valid ones, exit 2):\n"
        + sections_text(),
        "Run folders: results/runs/<experiment>-<variant>-<preset>-s<seed>, with -<data.name> before -s<seed> when\n"
        "the data is not the embedded synthetic data (baseline-default-smoke-human36m-s0); name=<name> replaces it.",
    ])
