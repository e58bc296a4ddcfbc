"""W&B's own sweep engine for the local grid: validation, planning and the agent's command.

A sweep file (``ablations/<axis>.yaml``) is planned exactly as W&B plans it:

* :func:`violations` checks it with ``sweeps.schema_violations_from_proposed_config`` (the
  JSON schema W&B's server uses, plus its min/max and probability checks) and names the key
  of each violation (the engine's own messages do not always name it);
* :func:`grid_runs` asks ``sweeps.next_run`` for one run after another, handing back the
  runs suggested so far, as ``wandb sweep --controller`` (``wandb_controller.py``) does, until
  the engine says the grid is exhausted. The engine sorts parameters by name and varies the
  last one fastest: that order, not the file's, is the order a W&B sweep runs;
* :func:`agent_command` expands the file's ``command`` as ``wandb agent`` 0.31 does
  (``wandb_agent.Agent._command_run``): ``${env}`` -> ``/usr/bin/env``, ``${interpreter}`` ->
  ``python`` (the literal: activate the virtual environment), ``${program}`` -> the file's
  ``program``, ``${args_no_hyphens}`` -> ``key=value`` per parameter (W&B's own
  ``create_sweep_command_args``), ``${envvar:NAME}`` -> the variable's value, any other
  ``${...}`` macro -> its expansion or nothing.

``sweeps`` is installed without its declared dependencies (it pins ``numpy<2``; its grid,
random and Bayes search and the schema check run on numpy 2, see the Makefile).
"""
from __future__ import annotations

import copy
import re
import warnings
from typing import Any

from pose3d.config import ConfigError

AGENT_ENV = "/usr/bin/env"  # ${env} on anything but Windows
AGENT_INTERPRETER = "python"  # ${interpreter}: always this literal in wandb agent


def _sweeps():
    with warnings.catch_warnings():  # sweeps 0.3.0 declares a pydantic-v1 config key
        warnings.simplefilter("ignore")
        import sweeps
        from sweeps import grid_search, random_search, bayes_search  # noqa: F401  (next_runs imports them)
    return sweeps


def _where(path) -> str:
    return ".".join(str(p) for p in path)


def violations(config: Any) -> list[str]:
    """The engine's schema violations of a sweep config, each prefixed with the key it concerns."""
    sweeps = _sweeps()
    from sweeps.config.schema import validator

    if not isinstance(config, dict):
        return [f"expected a mapping (method, command, parameters); got {type(config).__name__}"]
    try:
        messages = sweeps.schema_violations_from_proposed_config(config)
    except ValueError as error:  # e.g. a parameter that is not a mapping
        return [str(error)]
    located: dict[str, str] = {}
    for error in validator.iter_errors(config):  # the same validator: recover where each message points
        located.setdefault(error.message, _where(error.absolute_path))
    out: list[str] = []
    for message in messages:
        where = located.get(message, "")
        if where.startswith("parameters.") and "is not valid under any of the given schemas" in message:
            message += " (expected value: X, values: [a non-empty list], or a distribution with min/max)"
        elif message.startswith("invalid hyperparameter configuration: "):
            name = message.rsplit(": ", 1)[1]
            if any(line.startswith(f"parameters.{name}: ") for line in out):
                continue  # the schema line above already names it
            where = f"parameters.{name}"
        line = f"{where}: {message}" if where else message
        if line not in out:
            out.append(line)
    return out


def require_valid(config: Any, source: str) -> None:
    """Raise a one-line :class:`ConfigError` naming ``source`` and the keys of every violation."""
    found = violations(config)
    if found:
        raise ConfigError(f"{source} is not a valid W&B sweep: " + "; ".join(found))


TRAIN_MODULE = ("-m", "pose3d.train")  # what every sweep file's command runs
TRAIN_SCRIPT = "pose3d/train.py"  # the same entry as a program path (W&B's default command runs ${program})


def _runs_train(command: list[str]) -> bool:
    """``command`` is ``[/usr/bin/env] python[3[.x]] (-m pose3d.train | pose3d/train.py) key=value ...``."""
    rest = command[1:] if command[:1] == [AGENT_ENV] else command
    if not rest or not re.fullmatch(r"python(3(\.\d+)?)?", rest[0].rsplit("/", 1)[-1]):
        return False
    if tuple(rest[1:3]) == TRAIN_MODULE:
        arguments = rest[3:]
    elif rest[1:2] and rest[1].lstrip("./") == TRAIN_SCRIPT:
        arguments = rest[2:]
    else:
        return False
    return all("=" in argument for argument in arguments)


def require_train_command(config: dict, source: str) -> None:
    """The sweep file's command (as ``wandb agent`` expands it for a grid point) runs this project's
    ``pose3d.train`` with ``key=value`` arguments only: the local runner runs nothing else."""
    sample = {name: spec.get("value", (spec.get("values") or [None])[0]) if isinstance(spec, dict) else spec
              for name, spec in config["parameters"].items()}
    command = agent_command(config, sample)
    if not _runs_train(command):
        raise ConfigError(f"{source}: its command runs {' '.join(command)[:120]!r}; expected python -m pose3d.train "
                          "${args_no_hyphens} (the local runner runs only this project's training command)")


def planned_config(config: dict, preset: str | None = None, seeds: int | None = None) -> dict:
    """The sweep config with its ``preset`` replaced and its ``seed`` values set to 0..N-1."""
    config = copy.deepcopy(config)
    parameters = config.setdefault("parameters", {})
    if preset is not None:
        parameters["preset"] = {"value": preset}
    if seeds is not None:
        parameters["seed"] = {"values": list(range(seeds))}
    return config


def _flat(run_config: dict) -> dict[str, Any]:
    return {name: spec["value"] for name, spec in run_config.items()}


def grid_runs(config: dict) -> list[dict[str, Any]]:
    """Every run the engine proposes, as ``{parameter: value}`` (the run config's values), in
    the engine's order."""
    sweeps = _sweeps()
    suggested: list = []
    while True:
        run = sweeps.next_run(config, suggested)
        if run is None:
            return [_flat(r.config) for r in suggested]
        run.state = sweeps.RunState.finished
        suggested.append(run)


def agent_args(params: dict[str, Any]) -> list[str]:
    """``${args_no_hyphens}``: W&B's own formatting of a run's parameters."""
    from wandb.sdk.launch.sweeps import utils as sweep_utils

    return sweep_utils.create_sweep_command_args({"args": {k: {"value": v} for k, v in params.items()}})["args_no_hyphens"]


def agent_command(config: dict, params: dict[str, Any]) -> list[str]:
    """The command ``wandb agent`` runs for one grid point of ``config``."""
    from wandb.sdk.launch.sweeps import utils as sweep_utils

    command = config.get("command")
    template = sweep_utils.create_sweep_command(list(command) if isinstance(command, list) else None)
    variables: dict[str, Any] = sweep_utils.create_sweep_command_args({"args": {k: {"value": v} for k, v in params.items()}})
    variables["interpreter"] = [AGENT_INTERPRETER]
    variables["program"] = [config.get("program")] if config.get("program") is not None else []
    variables["args_json_file"] = []  # the agent writes a file there; our sweep files do not use it
    variables["env"] = [AGENT_ENV]
    out: list[str] = []
    for chunk in template:
        chunk = str(chunk)
        if chunk.startswith("${") and chunk.endswith("}"):
            out += variables.get(chunk[2:-1]) or []
        else:
            out.append(chunk)
    return out
