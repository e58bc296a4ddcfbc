"""A run's config explained without running it: ``python -m pose3d.train [key=value ...] --cfg | --keys``.

``--cfg`` (:func:`config_text`): the resolved config as YAML (the experiment file, the presets,
the variant and the overrides applied; the declared prerequisites named in comments, not
built). ``--keys`` (:func:`keys_text`): each key one line that reads as a command-line
override, ``model.trunk=small``, followed by its schema default where the run's value differs,
its valid values (a field's :func:`pose3d.config.choice` or :func:`pose3d.config.bounded`) and
the note its schema dataclass gives it (the comment beside the field in the source). Sections
come in the order of the run config, each headed by the dataclass and file that define it.
"""
from __future__ import annotations

import ast
import dataclasses
import inspect
import io
import textwrap
import tokenize
from typing import Any

import yaml
from omegaconf import DictConfig, OmegaConf

from harness.cli_help import source_file


def field_notes(schema: type) -> dict[str, str]:
    """{field: the comment beside it in the source}, a base class's fields included; a comment
    line right below a field continues its note."""
    notes: dict[str, str] = {}
    for klass in reversed(schema.__mro__):
        if not dataclasses.is_dataclass(klass):
            continue
        try:
            source = textwrap.dedent(inspect.getsource(klass))
        except (OSError, TypeError):
            continue
        lines = source.splitlines()
        comments = {token.start[0]: token.string.lstrip("#").strip()
                    for token in tokenize.generate_tokens(io.StringIO(source).readline) if token.type == tokenize.COMMENT}
        for node in ast.parse(source).body[0].body:
            if not (isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name)):
                continue
            found = [comments[n] for n in range(node.lineno, node.end_lineno + 1) if n in comments]
            below = node.end_lineno + 1
            while below in comments and lines[below - 1].lstrip().startswith("#"):
                found.append(comments[below])
                below += 1
            notes[node.target.id] = " ".join(found)
    return notes


def shown(value: Any) -> str:
    """A value as it is written on the command line (YAML flow style)."""
    if isinstance(value, DictConfig) or OmegaConf.is_list(value):
        value = OmegaConf.to_container(value, resolve=True)
    if value is None or isinstance(value, (bool, list, dict)):
        return yaml.safe_dump(value, default_flow_style=True, width=10**6).strip().removesuffix("...").strip()
    return "''" if value == "" else str(value)


def valid_values(spec: dataclasses.Field) -> str:
    choices = spec.metadata.get("choices")
    if choices is not None:
        return "one of: " + ", ".join(map(str, choices))
    valid = spec.metadata.get("range")
    return valid.describe() if valid is not None else ""


def field_default(spec: dataclasses.Field) -> Any:
    if spec.default is not dataclasses.MISSING:
        return spec.default
    if spec.default_factory is not dataclasses.MISSING:
        return spec.default_factory()
    return None


def section_lines(prefix: str, schema: type, node: DictConfig, skip: tuple[str, ...] = ()) -> list[str]:
    """``key=value  # default, valid values. note`` for each field of ``schema``."""
    notes = field_notes(schema)
    lines = []
    for spec in dataclasses.fields(schema):
        if spec.name in skip:
            continue
        value = node.get(spec.name)
        default = field_default(spec)
        if dataclasses.is_dataclass(default) and isinstance(value, DictConfig):  # a sub-section: its own keys
            lines += section_lines(f"{prefix}{spec.name}.", type(default), value)
            continue
        comment = []
        if shown(default) != shown(value):
            comment.append(f"default {shown(default)}")
        comment += [part for part in (valid_values(spec), notes.get(spec.name, "")) if part]
        line = f"{prefix}{spec.name}={shown(value)}"
        lines.append(f"  {line:<40}  # {'; '.join(comment)}" if comment else f"  {line}")
    return lines


def keys_text(cfg: DictConfig) -> str:
    """Every key of the resolved run config ``cfg`` (from :func:`harness.train.load_config`)."""
    from datamodules import DATAMODULES
    from lightning_modules import MODELS
    from pose3d.config import LoggerConfig, OptimConfig, RunConfig, TrainerConfig

    model, data = cfg.model.name, cfg.data.name
    model_schema, data_schema = MODELS.load(model).Config, DATAMODULES.load(data).Config
    sections = [
        ("", RunConfig, cfg, "run keys: RunConfig in pose3d/config.py"),
        ("trainer.", TrainerConfig, cfg.trainer, "trainer.*: TrainerConfig in pose3d/config.py (Lightning's Trainer)"),
        ("optim.", OptimConfig, cfg.optim, "optim.*: OptimConfig in pose3d/config.py"),
        ("logger.", LoggerConfig, cfg.logger, "logger.*: LoggerConfig in pose3d/config.py"),
        ("model.", model_schema, cfg.model, f"model.* of model.name={model}: {model_schema.__name__} in "
                                            f"{source_file(MODELS.entries[model])}"),
        ("data.", data_schema, cfg.data, f"data.* of data.name={data}: {data_schema.__name__} in "
                                         f"{source_file(DATAMODULES.entries[data])}"),
    ]
    out = [f"# the config keys of experiment={cfg.experiment} preset={cfg.preset} variant={cfg.variant} with their values "
           "here; set any with key=value (python -m pose3d.train --help lists the experiments)"]
    for prefix, schema, node, title in sections:
        skip = ("trainer", "optim", "logger", "model", "data") if schema is RunConfig else ()
        out += ["", f"# {title}", *section_lines(prefix, schema, node, skip)]
    return "\n".join(out)


def config_text(cfg: DictConfig) -> str:
    """The run config as YAML, headed by comments: its run folder and the prerequisites a run
    would build first (nothing is built here)."""
    from harness.train import run_folder
    from lightning_modules import MODELS
    from pose3d.prerequisites import describe as describe_prerequisite

    header = [f"# the resolved config of run {run_folder(cfg)} (nothing runs; drop --cfg to train it)"]
    for declaration in MODELS.load(cfg.model.name).prerequisites(cfg):
        header.append(f"# built before training, its path set at {declaration.into}: {describe_prerequisite(declaration)}")
    return "\n".join(header) + "\n" + OmegaConf.to_yaml(cfg)
