"""Run configuration: a structured OmegaConf schema, experiment files, presets and overrides.

A run's config is built in layers, each validated against the schema:

1. the schema defaults (:class:`RunConfig`, plus the chosen model's and data module's own
   ``Config`` dataclasses under ``model`` and ``data``),
2. the experiment file ``experiments/<experiment>.yaml`` (without its ``presets`` and
   ``variants`` blocks),
3. the global preset (:data:`PRESETS`: ``smoke``, ``quick`` or ``paper``),
4. the experiment's own ``presets.<preset>`` block, then its ``for_data.<data.name>`` block if
   any (settings that exist only for one DataModule, e.g. Human3.6M's test frame step),
5. the experiment's ``variants.<variant>`` block: an ablation's named settings, so that a
   sweep grid over ``variant`` (and ``seed``) runs exactly the paper's configurations,
6. the command-line dotlist (``key.sub=value``).

Any unknown key or bad value raises :class:`ConfigError` whose message is one line naming the
key and the valid keys or choices; the train entry prints it and exits with status 2.
A field declares its valid values with :func:`choice` (one of a tuple) or :func:`bounded`
(a finite number in a range, plus optional special values such as ``-1`` = no limit; helpers
:func:`positive`, :func:`at_least`, :func:`probability`, :func:`seed_field`); a schema's
``ordered`` class attribute names (low, high) field pairs that must be ordered (distances);
all are checked for every layer before anything starts, as are ``trainer.devices``,
``trainer.strategy`` (Lightning's names) and ``data.image_size`` (a multiple of the method's
``image_size_multiple``). ``trainer.accelerator`` is checked against the machine when a run
starts (:func:`pose3d.machine.check_accelerator`).
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

import yaml
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import ConfigKeyError, OmegaConfBaseException, ValidationError

REPO_ROOT = Path(__file__).resolve().parents[1]
EXPERIMENTS_DIR = REPO_ROOT / "experiments"
DEFAULT_DATA = "synthetic"  # data.name when no layer sets one: the embedded synthetic data


class ConfigError(ValueError):
    """A bad configuration; its message is a single line meant for the user."""


def choice(default: Any, choices: tuple) -> Any:
    """A dataclass field whose value must be one of ``choices``."""
    return field(default=default, metadata={"choices": tuple(choices)})


@dataclass(frozen=True)
class Range:
    """Valid numbers ``low <= x <= high`` (``>`` when ``open_low``), or one of ``special``."""

    low: Optional[float] = None
    high: Optional[float] = None
    open_low: bool = False
    special: tuple = ()

    def allows(self, value: Any) -> bool:
        if value in self.special:
            return True
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            return False
        if self.low is not None and (value <= self.low if self.open_low else value < self.low):
            return False
        return self.high is None or value <= self.high

    def describe(self) -> str:
        parts = []
        if self.low is not None:
            parts.append(f"{'>' if self.open_low else '>='} {_number(self.low)}")
        if self.high is not None:
            parts.append(f"<= {_number(self.high)}")
        text = "a number " + " and ".join(parts) if parts else "a number"
        specials = [("null" if v is None else str(v)) for v in self.special]
        return text + (f" (or {', '.join(specials)})" if specials else "")


def _number(value: float) -> str:
    """A bound as written: integers in full (a seed's 4294967295), others as ``%g``."""
    return str(int(value)) if float(value).is_integer() and abs(value) < 1e16 else f"{value:g}"


def bounded(default: Any, low: Optional[float] = None, high: Optional[float] = None, *,
            open_low: bool = False, special: tuple = ()) -> Any:
    """A numeric dataclass field with a valid range (see :class:`Range`)."""
    return field(default=default, metadata={"range": Range(low, high, open_low, tuple(special))})


def positive(default: Any, special: tuple = ()) -> Any:
    """A number > 0."""
    return bounded(default, 0, open_low=True, special=special)


def at_least(minimum: float, default: Any, special: tuple = ()) -> Any:
    """A number >= ``minimum``."""
    return bounded(default, minimum, special=special)


SEED_RANGE = (0, 2**32 - 1)  # what numpy's and Lightning's seeding accept


def seed_field(default: int = 0) -> Any:
    """A random seed: an integer numpy and ``lightning.seed_everything`` accept."""
    return bounded(default, *SEED_RANGE)


def probability(default: float) -> Any:
    """A share or probability in [0, 1]."""
    return bounded(default, 0, 1)


def _check_strategy(value: Any) -> None:
    """``trainer.strategy``: 'auto' or a name of Lightning's strategy registry (checked before Lightning sees it)."""
    if value == "auto":
        return
    from lightning.pytorch.strategies import StrategyRegistry

    names = StrategyRegistry.available_strategies()
    if value not in names:
        raise ConfigError(f"bad value for trainer.strategy: {value!r}; choose one of: auto, {', '.join(names)}")


def _check_devices(value: Any) -> None:
    """``trainer.devices``: a count >= 1, -1 (all), "auto", or a non-empty list / comma string of device ids."""
    ok = value in ("auto", -1) or (isinstance(value, int) and not isinstance(value, bool) and value >= 1)
    if isinstance(value, str) and value != "auto":
        ok = all(part.strip().isdigit() for part in value.split(",")) and bool(value.strip())
    if OmegaConf.is_list(value) or isinstance(value, list):
        ok = len(value) > 0 and all(isinstance(v, int) and v >= 0 for v in value)
    if not ok:
        raise ConfigError(f"bad value for trainer.devices: {value!r}; expected a count >= 1, -1 (all), 'auto', "
                          "or a list of device ids such as [0, 1]")


@dataclass
class TrainerConfig:
    max_epochs: int = at_least(1, 10)
    max_steps: int = at_least(1, -1, special=(-1,))
    limit_train_batches: Optional[int] = at_least(1, None, special=(None,))
    limit_val_batches: Optional[int] = at_least(0, None, special=(None,))
    limit_test_batches: Optional[int] = at_least(1, None, special=(None,))
    accelerator: str = choice("auto", ("auto", "cpu", "gpu", "cuda", "mps"))
    devices: Any = 1
    num_nodes: int = at_least(1, 1)
    strategy: str = "auto"  # 'auto' or a Lightning strategy name (:func:`_check_strategy`)
    precision: str = choice("32-true", ("32-true", "16-mixed", "bf16-mixed", "64-true"))
    gradient_clip_val: Optional[float] = positive(None, special=(None,))
    check_val_every_n_epoch: int = at_least(1, 1)
    log_every_n_steps: int = at_least(1, 10)
    enable_progress_bar: bool = True
    deterministic: bool = False


@dataclass
class OptimConfig:
    name: str = choice("adam", ("adam", "adamw", "sgd", "adadelta"))
    lr: float = positive(1e-3)
    weight_decay: float = at_least(0, 0.0)
    momentum: float = bounded(0.9, 0, 1)
    rho: float = bounded(0.9, 0, 1)  # Adadelta's running-average factor (Habibie 2019's "momentum of 0.9")
    scheduler: str = choice("none", ("none", "cosine", "step"))
    step_size: int = at_least(1, 10)
    gamma: float = positive(0.1)
    pretrained_lr_scale: float = at_least(0, 1.0)  # learning rate of parameters loaded by init_from, relative to lr


@dataclass
class LoggerConfig:
    wandb: bool = True
    project: str = "pose3d-lab"
    csv: bool = True


@dataclass
class RunConfig:
    experiment: str = "baseline"
    preset: str = choice("quick", ("smoke", "quick", "paper", "h36m_poses"))
    seed: int = seed_field()
    variant: str = "default"
    name: Optional[str] = None
    results_dir: str = "results"
    ckpt_path: Optional[str] = None
    test_only: bool = False
    overwrite: bool = False
    threads: int = at_least(0, 0)
    init_from: Optional[str] = None  # start from another run's weights: a run folder or a .ckpt file
    prerequisites: Any = None  # written by the harness: what this run's declared prerequisites resolved to
    model: Any = None
    data: Any = None
    trainer: TrainerConfig = field(default_factory=TrainerConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    logger: LoggerConfig = field(default_factory=LoggerConfig)


# Global presets; an experiment refines them in its own `presets:` block.
PRESETS: dict[str, dict] = {
    "smoke": {
        "data": {"train_size": 64, "val_size": 32, "test_size": 32, "batch_size": 16},
        "trainer": {"max_epochs": 1, "log_every_n_steps": 1, "enable_progress_bar": False},
    },
    "quick": {
        "data": {"train_size": 6000, "val_size": 256, "test_size": 1024, "batch_size": 64},
        "trainer": {"max_epochs": 8},
    },
    "paper": {
        "data": {"train_size": 200_000, "val_size": 2048, "test_size": 8192, "batch_size": 64},
        "trainer": {"max_epochs": 50},
    },
    # Human3.6M's pose files (VideoPose3D's layout, no images; pass data.root): the methods that
    # need no image, sized for a 2-core CPU in their experiment files (docs/human36m.md)
    "h36m_poses": {
        "data": {"name": "human36m", "layout": "poses", "train_size": None, "val_size": 2048, "test_size": None,
                 "batch_size": 64, "flip": False, "rotation_deg": 0.0, "scale_jitter": 0.0, "photometric": False},
        "trainer": {"max_epochs": 1},
    },
}


def experiment_variants(name: str) -> list[str]:
    """The variant names an experiment file defines (empty if it has no ``variants`` block)."""
    return list((read_experiment(name).get("variants") or {}).keys())


def available_experiments() -> list[str]:
    return sorted(p.stem for p in EXPERIMENTS_DIR.glob("*.yaml"))


def read_experiment(name: str) -> dict:
    """The experiment file as a plain dict, or a one-line error naming the known experiments (a
    name, never a path: ``experiment=../experiments/baseline`` is refused)."""
    path = EXPERIMENTS_DIR / f"{name}.yaml"
    if name not in available_experiments():
        raise ConfigError(f"unknown experiment '{name}'; choose one of: {', '.join(available_experiments())}")
    try:
        content = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as error:
        raise ConfigError(f"{path} is not valid YAML: {str(error).splitlines()[0]}") from None
    if not isinstance(content, dict):
        raise ConfigError(f"{path} must hold a mapping of config keys, got {type(content).__name__}")
    return content


def _deep_get(tree: dict, dotted: str) -> Any:
    node: Any = tree
    for part in dotted.split("."):
        if not isinstance(node, dict) or part not in node:
            return None
        node = node[part]
    return node


def _schema_for(section: str, name: str, registry: Any) -> type:
    """The ``Config`` dataclass of ``name`` in a lazy :class:`pose3d.registry.Registry` (only that
    entry's module is imported) or a plain ``{name: schema}`` dict."""
    if name not in registry:
        raise ConfigError(f"bad value for {section}.name: '{name}'; choose one of: {', '.join(sorted(registry))}")
    return registry.load(name).Config if hasattr(registry, "load") else registry[name]


def _valid_keys(cfg: DictConfig, dotted_parent: str) -> str:
    node = OmegaConf.select(cfg, dotted_parent) if dotted_parent else cfg
    keys = list(node.keys()) if isinstance(node, DictConfig) else []
    return ", ".join(str(k) for k in keys)


def _section_given_a_value(base: DictConfig, layer: Any, prefix: str = "") -> str:
    """The dotted key of ``layer`` that sets a whole section of ``base`` to a plain value ('' if none)."""
    if not isinstance(layer, (dict, DictConfig)):
        return ""
    for key, value in layer.items():
        node = base.get(key) if isinstance(base, DictConfig) else None
        if isinstance(node, DictConfig):
            if not isinstance(value, (dict, DictConfig)) and value is not None:
                return f"{prefix}{key}"
            found = _section_given_a_value(node, value, f"{prefix}{key}.")
            if found:
                return found
    return ""


def _merge(base: DictConfig, layer: Any, source: str) -> DictConfig:
    """Merge one layer into the structured config, turning OmegaConf errors into one-line ConfigErrors."""
    try:
        return OmegaConf.merge(base, layer)
    except ConfigKeyError as error:
        key = error.full_key or str(error.key)
        parent = key.rsplit(".", 1)[0] if "." in key else ""
        raise ConfigError(
            f"unknown config key '{key}' ({source}); valid keys{' under ' + repr(parent) if parent else ''}: "
            f"{_valid_keys(base, parent)}"
        ) from None
    except ValidationError as error:
        message = (error.msg or str(error) or type(error).__name__).splitlines()[0]
        key = error.full_key or _section_given_a_value(base, layer)
        if key and not error.full_key:
            message = f"{key} is a section of settings; expected {key}.<key>=<value>"
        raise ConfigError(f"bad value for {key or 'the config'} ({source}): {message}") from None
    except OmegaConfBaseException as error:
        raise ConfigError(f"bad config ({source}): {str(error).splitlines()[0]}") from None


def _check_choices(schema: type, cfg: DictConfig, prefix: str = "") -> None:
    """Every field declared with :func:`choice` holds one of its choices and every :func:`bounded`
    field a number in its range (recursing into sub-configs)."""
    for f in dataclasses.fields(schema):
        value = cfg.get(f.name)
        key = f"{prefix}{f.name}"
        choices = f.metadata.get("choices")
        if choices is not None and value not in choices:
            raise ConfigError(f"bad value for {key}: '{value}'; choose one of: {', '.join(map(str, choices))}")
        valid = f.metadata.get("range")
        if valid is not None and not valid.allows(value):
            raise ConfigError(f"bad value for {key}: {value!r}; expected {valid.describe()}")
        if f.default_factory is not dataclasses.MISSING and isinstance(value, DictConfig):
            _check_choices(type(f.default_factory()), value, key + ".")
    for low, high in getattr(schema, "ordered", ()):
        if not cfg.get(low) <= cfg.get(high):
            raise ConfigError(f"bad values for {prefix}{low}={cfg.get(low)} and {prefix}{high}={cfg.get(high)}; "
                              f"expected {low} <= {high}")


def validated(schema: type, values: Any, source: str, prefix: str = "") -> DictConfig:
    """``values`` merged onto the dataclass ``schema`` and checked (unknown keys, types,
    choices); a one-line :class:`ConfigError` names ``source`` and the key (e.g. a config
    section that another component validates, such as a mixed DataModule's sources)."""
    cfg = _merge(OmegaConf.structured(schema), values, source)
    _check_choices(schema, cfg, prefix)
    return cfg


def parse_overrides(args: list[str]) -> DictConfig:
    """``key=value`` command-line arguments (a leading ``--`` is accepted) as an OmegaConf dotlist."""
    cleaned = []
    for arg in args:
        arg = arg[2:] if arg.startswith("--") else arg
        if "=" not in arg:
            raise ConfigError(f"bad argument '{arg}': expected key=value, e.g. experiment=baseline preset=smoke")
        cleaned.append(arg)
    for arg in cleaned:  # each value is YAML: name the argument whose value is not
        try:
            yaml.safe_load(arg.split("=", 1)[1])
        except yaml.YAMLError as error:
            raise ConfigError(f"bad argument '{arg}': its value is not valid YAML ({str(error).splitlines()[0]})") from None
    try:
        return OmegaConf.from_dotlist(cleaned)
    except (OmegaConfBaseException, yaml.YAMLError) as error:
        raise ConfigError(f"bad argument list: {str(error).splitlines()[0]}") from None


def build_config(overrides: list[str], model_schemas: Any, data_schemas: Any) -> DictConfig:
    """The validated run config for command-line ``overrides`` (see the module docstring).
    ``model_schemas`` / ``data_schemas``: the method and DataModule registries; only the
    chosen entries are imported."""
    cli_dict = OmegaConf.to_container(parse_overrides(overrides), resolve=False)
    experiment_name = str(cli_dict.get("experiment", RunConfig.experiment))
    experiment = read_experiment(experiment_name)
    experiment_presets = experiment.pop("presets", {}) or {}
    variants = experiment.pop("variants", {}) or {}
    preset = str(cli_dict.get("preset", RunConfig.preset))
    if preset not in PRESETS:
        raise ConfigError(f"bad value for preset: '{preset}'; choose one of: {', '.join(PRESETS)}")
    variant = str(cli_dict.get("variant", experiment.get("variant", RunConfig.variant)))
    if variants and variant not in variants:
        raise ConfigError(
            f"bad value for variant: '{variant}'; experiments/{experiment_name}.yaml defines: {', '.join(variants)}"
        )
    if not variants and variant != RunConfig.variant:
        raise ConfigError(f"bad value for variant: '{variant}'; experiments/{experiment_name}.yaml defines no variants "
                          "(none); drop variant=")

    preset_layer = dict(experiment_presets.get(preset, {}) or {})
    for_data = preset_layer.pop("for_data", None) or {}
    layers = [
        (experiment, f"experiments/{experiment_name}.yaml"),
        (PRESETS[preset], f"preset {preset}"),
        (preset_layer, f"experiments/{experiment_name}.yaml presets.{preset}"),
        (variants.get(variant, {}) or {}, f"experiments/{experiment_name}.yaml variants.{variant}"),
        (cli_dict, "command line"),
    ]
    # the model and data schemas are chosen by the last layer that names them
    model_name = data_name = None
    for layer, _ in layers:
        model_name = _deep_get(layer, "model.name") or model_name
        data_name = _deep_get(layer, "data.name") or data_name
    unknown = [name for name in for_data if name not in data_schemas]
    if unknown:
        raise ConfigError(f"experiments/{experiment_name}.yaml presets.{preset}.for_data names '{unknown[0]}'; "
                          f"expected data names: {', '.join(sorted(data_schemas))}")
    data_block = for_data.get(data_name or DEFAULT_DATA)
    if data_block:
        layers.insert(3, (data_block, f"experiments/{experiment_name}.yaml presets.{preset}.for_data.{data_name or DEFAULT_DATA}"))
    if model_name is None:
        raise ConfigError(f"experiments/{experiment_name}.yaml does not set model.name")
    model_schema = _schema_for("model", model_name, model_schemas)
    data_schema = _schema_for("data", data_name or DEFAULT_DATA, data_schemas)

    cfg = OmegaConf.structured(RunConfig)
    cfg.model = OmegaConf.structured(model_schema)
    cfg.data = OmegaConf.structured(data_schema)
    cfg.experiment = experiment_name
    for layer, source in layers:
        cfg = _merge(cfg, layer, source)
    _check_choices(RunConfig, cfg)
    _check_choices(model_schema, cfg.model, "model.")
    _check_choices(data_schema, cfg.data, "data.")
    _check_devices(cfg.trainer.devices)
    _check_strategy(cfg.trainer.strategy)
    _check_image_size(cfg, model_schemas)
    return cfg


def _check_image_size(cfg: DictConfig, model_schemas: Any) -> None:
    """``data.image_size`` is a multiple of what the method's network needs (its
    ``image_size_multiple`` classmethod, asked of a registry's class)."""
    size = cfg.data.get("image_size")
    if size is None or not hasattr(model_schemas, "load"):
        return
    multiple = model_schemas.load(cfg.model.name).image_size_multiple(cfg.model)
    if size % multiple:
        raise ConfigError(f"bad value for data.image_size: {size}; model.name={cfg.model.name} with these settings has "
                          f"an input stride of {multiple}, so expected a multiple of {multiple} (e.g. {max(1, round(size / multiple)) * multiple})")


def run_name(cfg: DictConfig) -> str:
    """``<experiment>-<variant>-<preset>-s<seed>`` unless ``name`` is set, with the data's name
    before the seed when it is not the embedded default (``baseline-default-smoke-human36m-s0``),
    so that runs of one experiment on two datasets get two folders."""
    if cfg.name:
        return str(cfg.name)
    parts = [cfg.experiment, cfg.variant, cfg.preset]
    data = OmegaConf.select(cfg, "data.name", default=None) or DEFAULT_DATA
    if data != DEFAULT_DATA:
        parts.append(data)
    return "-".join(str(part) for part in parts) + f"-s{cfg.seed}"
