"""Where an ablation's runs execute: this machine, a SLURM job array, or submitit's local executor.

Every launcher runs each grid point as the same command, the one ``wandb agent`` would run
(:func:`harness.sweep_engine.agent_command`), plus the runner's own switches: the ablation's
extra overrides, ``trainer.enable_progress_bar=false`` and, decided when the run starts from
what its folder holds (:func:`resume_args`), ``ckpt_path=last`` (an interrupted run resumes
from its ``last.ckpt``) or ``overwrite=true`` (a folder without a checkpoint starts again;
what it holds is moved aside). ``python`` in that command is this interpreter (:func:`child_env` puts its folder
first on ``PATH``: the virtual environment is active).

SLURM (``--launcher slurm``): the pending runs go to SLURM as one job array through
``submitit``, one grid point per array task (:class:`GridTask`). SLURM sends the task
``SIGUSR2`` (submitit's preemption signal, ``signal_delay_s`` before its time limit, or when
the cluster preempts it); submitit's handler calls :meth:`GridTask.checkpoint`, which stops
the training with ``SIGTERM`` (Lightning finishes the batch in progress, closes its loggers
and exits; the training process itself ignores ``SIGUSR2``) and hands back the same task,
which submitit requeues; when it starts again the run resumes from ``last.ckpt`` (saved at
every validation) and continues its W&B run (:mod:`harness.wandb_id`). ``scancel`` and
``scontrol requeue`` send the task's processes SIGTERM: the run stops the same way, and the
task ends without a result (a requeued task is no failed one; SLURM starts it again, and the
run resumes). A run takes as many threads as SLURM gave its task CPUs (:func:`slurm_threads`).
Options come as
``key=value`` words (``SLURM="partition=gpu gpus_per_node=1 timeout_min=600"``): submitit's
generic names (``timeout_min``, ``gpus_per_node``, ``nodes``, ``cpus_per_task``,
``mem_gb``, ``tasks_per_node``) and any ``SlurmExecutor`` parameter (``partition``,
``account``, ``qos``, ``constraint``, ``array_parallelism``, ``signal_delay_s``, ``setup``,
...), plus ``max_num_timeout`` (requeues after a time-out, default 20). More than one GPU
per node or more than one node makes each grid point one Lightning DDP run across them:
one SLURM task per GPU (``srun``), ``trainer.devices``/``num_nodes``/``strategy=ddp`` added
to its command.

``--launcher submitit-local``: the same tasks through submitit's ``LocalExecutor`` on this
machine (one at a time), so the whole submission, signal and requeue path runs without a
cluster (the tests use it).
"""
from __future__ import annotations

import json
import os
import shlex
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from harness.stopping import STOP_GRACE_S
from pose3d.config import REPO_ROOT, ConfigError
from pose3d.results import finished

QUIET = ["trainer.enable_progress_bar=false"]  # the run's log file is for reading
GENERIC = {"timeout_min", "gpus_per_node", "nodes", "cpus_per_task", "mem_gb", "tasks_per_node", "name"}
DEFAULT_TIMEOUT_MIN = 240
DEFAULT_MAX_TIMEOUTS = 20
NO_SLURM = ("cannot submit to SLURM: {tool} not found; expected a SLURM login node (LAUNCHER=submitit-local "
            "tries the same submission path on this machine)")


def resume_args(run_dir: Path) -> list[str]:
    """What a run's folder asks for when its command starts: resume, start over, or nothing."""
    if (run_dir / "checkpoints" / "last.ckpt").is_file():
        return ["ckpt_path=last"]  # interrupted earlier: resume
    if run_dir.exists():
        return ["overwrite=true"]  # no checkpoint to resume: start again (what it holds is moved aside)
    return []


def child_env(base: dict | None = None) -> dict:
    """The environment of a run: ``python`` on ``PATH`` is this interpreter (the active venv)."""
    env = dict(os.environ if base is None else base)
    here = str(Path(sys.executable).parent)
    env["PATH"] = here + os.pathsep + env.get("PATH", "") if env.get("PATH") else here
    return env


def slurm_threads(env: dict) -> int | None:
    """The CPUs SLURM gave each task of the job (``--cpus-per-task``, else the node's CPUs of the
    job shared by its tasks on the node), or None outside SLURM. A run's torch takes as many
    threads as the machine has cores unless told otherwise, so without this two tasks of one
    CPU each on a 2-core node would run 2 threads each."""
    if env.get("SLURM_CPUS_PER_TASK", "").isdigit():
        return int(env["SLURM_CPUS_PER_TASK"])
    cpus, tasks = env.get("SLURM_CPUS_ON_NODE", ""), env.get("SLURM_NTASKS_PER_NODE", "1").split("(")[0]
    if cpus.isdigit() and tasks.isdigit() and int(tasks) > 0:
        return max(int(cpus) // int(tasks), 1)
    return None


def result_line(index: int, total: int, name: str, metrics_file: Path, seconds: float, code: int, log_file: Path) -> tuple[bool, str]:
    if code == 0 and metrics_file.is_file():
        mpjpe = json.loads(metrics_file.read_text()).get("test/mpjpe", float("nan"))
        return True, f"[{index}/{total}] {name}: test MPJPE {mpjpe:.1f} mm ({seconds:.0f} s)"
    return False, f"[{index}/{total}] {name}: FAILED (exit {code}); see {log_file}"


# -- one grid point as a submitit task ---------------------------------------------------------
def _preemption_signal() -> int:
    import submitit

    return submitit.JobEnvironment._usr_sig()  # SIGUSR2 unless SUBMITIT_PREEMPT_SIGNAL says otherwise


class GridTask:
    """One grid point: runs its command (resuming when its folder has a ``last.ckpt``) and
    returns its test metrics; checkpointable, so that submitit requeues it on preemption or
    time-out."""

    def __init__(self, name: str, command: list[str], run_dir: str, log_file: str, cwd: str = str(REPO_ROOT)):
        self.name = name
        self.command = list(command)
        self.run_dir = str(run_dir)
        self.log_file = str(log_file)
        self.cwd = cwd
        self._child: subprocess.Popen | None = None

    def __getstate__(self) -> dict:
        state = dict(self.__dict__)
        state["_child"] = None
        return state

    def full_command(self) -> list[str]:
        return self.command + resume_args(Path(self.run_dir))

    def __call__(self) -> dict:
        run_dir, log_file = Path(self.run_dir), Path(self.log_file)
        rank = int(os.environ.get("SLURM_PROCID", "0") or 0)  # one task per GPU under srun: DDP ranks
        if rank > 0:
            log_file = log_file.with_suffix(f".rank{rank}.log")
        metrics_file = run_dir / "metrics.json"
        if finished(run_dir):
            return {"run": self.name, "metrics": json.loads(metrics_file.read_text()), "skipped": True}
        command = self.full_command()
        log_file.parent.mkdir(parents=True, exist_ok=True)
        attempt = 1 + (log_file.read_text(errors="replace").count("\n# attempt ") if log_file.is_file() else 0)
        job = os.environ.get("SLURM_ARRAY_JOB_ID", os.environ.get("SLURM_JOB_ID", os.environ.get("SUBMITIT_LOCAL_JOB_ID", "-")))
        header = f"\n# attempt {attempt} (task pid {os.getpid()}, job {job}): {shlex.join(command)}\n"
        print(header.strip(), flush=True)
        started = time.perf_counter()
        env = child_env()
        threads = slurm_threads(env)
        if threads and "OMP_NUM_THREADS" not in env:
            env["OMP_NUM_THREADS"] = str(threads)
        terminated = self._on_sigterm_stop_the_run()
        with open(log_file, "a") as log:
            log.write(header)
            log.flush()
            preemption = _preemption_signal()
            self._child = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=env, cwd=self.cwd,
                                           preexec_fn=lambda: signal.signal(preemption, signal.SIG_IGN))
            if terminated:  # it came while the run started
                self._child.send_signal(signal.SIGTERM)
            while self._child.poll() is None:  # not wait(): the signal handler may have to wait on it
                time.sleep(0.5)
        code = self._child.returncode
        self._child = None
        if terminated:
            # scancel or `scontrol requeue`: the run stopped (its last.ckpt stays); no result is
            # written, so that a requeued task is not taken for a failed one
            print(f"{self.name}: stopped by SIGTERM (cancelled or requeued); it resumes from its last.ckpt", flush=True)
            raise SystemExit(128 + signal.SIGTERM)
        if rank > 0:  # rank 0 writes the metrics and reports the run
            return {"run": self.name, "rank": rank, "exit": code}
        if code == 0 and metrics_file.is_file():
            metrics = json.loads(metrics_file.read_text())
            print(f"{self.name}: test MPJPE {metrics.get('test/mpjpe', float('nan')):.1f} mm "
                  f"({time.perf_counter() - started:.0f} s)", flush=True)
            return {"run": self.name, "metrics": metrics, "skipped": False}
        raise RuntimeError(f"{self.name} exited with status {code} without metrics.json; see {log_file}")

    def _on_sigterm_stop_the_run(self) -> list[int]:
        """From now on SIGTERM to the task (SLURM's scancel or requeue) passes on to the run and is
        recorded in the list returned. (submitit itself ignores SIGTERM; SLURM sends it to the run too,
        unless the run escaped the job's process tracking.)"""
        received: list[int] = []
        if threading.current_thread() is not threading.main_thread():
            return received

        def stop(signum, frame):
            received.append(signum)
            child = self._child
            if child is not None and child.poll() is None:
                child.send_signal(signal.SIGTERM)

        signal.signal(signal.SIGTERM, stop)
        return received

    def checkpoint(self, *args: Any, **kwargs: Any):
        """Stop the training (it resumes from ``last.ckpt``) and hand back the same task to requeue."""
        import submitit

        child = self._child
        if child is not None and child.poll() is None:
            print(f"{self.name}: preempted or out of time: stopping the run; it resumes from last.ckpt", flush=True)
            child.send_signal(signal.SIGTERM)  # Lightning: finish the batch, close the loggers, exit
            deadline = time.monotonic() + STOP_GRACE_S
            while child.poll() is None and time.monotonic() < deadline:
                time.sleep(0.2)
            if child.poll() is None:
                child.kill()
        fresh = GridTask(self.name, self.command, self.run_dir, self.log_file, self.cwd)
        return submitit.helpers.DelayedSubmission(fresh)


# -- options ---------------------------------------------------------------------------
def parse_options(text: str) -> dict[str, Any]:
    """``"partition=gpu gpus_per_node=1"`` -> ``{"partition": "gpu", "gpus_per_node": 1}``."""
    out: dict[str, Any] = {}
    for word in shlex.split(text or ""):
        key, sep, value = word.partition("=")
        if not sep or not key:
            raise ConfigError(f"bad SLURM option {word!r}: expected key=value, e.g. SLURM=\"partition=gpu gpus_per_node=1 "
                              "timeout_min=600\"")
        try:
            out[key] = yaml.safe_load(value) if value else ""
        except yaml.YAMLError:
            out[key] = value
    return out


def ddp_overrides(options: dict[str, Any]) -> list[str]:
    """One grid point on several GPUs or nodes: Lightning DDP across the SLURM tasks."""
    gpus, nodes = int(options.get("gpus_per_node") or 0), int(options.get("nodes") or 1)
    if gpus > 1 or nodes > 1:
        return [f"trainer.devices={max(gpus, 1)}", f"trainer.num_nodes={nodes}", "trainer.strategy=ddp"]
    return []


def _executor(cluster: str, folder: Path, options: dict[str, Any], job_name: str):
    import submitit

    options = dict(options)
    max_timeouts = int(options.pop("max_num_timeout", DEFAULT_MAX_TIMEOUTS))
    if cluster == "local":
        executor = submitit.LocalExecutor(folder=folder, max_num_timeout=max_timeouts)
        executor.update_parameters(timeout_min=int(options.get("timeout_min", 7 * 24 * 60)),
                                   signal_delay_s=int(options.get("signal_delay_s", 90)))
        return executor
    try:
        executor = submitit.AutoExecutor(folder=folder / "%j", cluster="slurm", slurm_max_num_timeout=max_timeouts)
    except RuntimeError:  # submitit looks for srun first
        raise ConfigError(NO_SLURM.format(tool="srun")) from None
    params: dict[str, Any] = {"name": job_name, "timeout_min": DEFAULT_TIMEOUT_MIN, "nodes": 1,
                              "slurm_additional_parameters": {"requeue": True}}
    gpus = int(options.get("gpus_per_node") or 0)
    params["tasks_per_node"] = max(gpus, 1)  # Lightning under srun: one task per GPU
    for key, value in options.items():
        if key == "additional_parameters":
            params["slurm_additional_parameters"] = {**params["slurm_additional_parameters"], **dict(value)}
        elif key in GENERIC:
            params[key] = value
        else:
            params[f"slurm_{key}"] = value
    try:
        executor.update_parameters(**params)
    except (NameError, AssertionError, ValueError) as error:
        first = str(error).splitlines()[0]
        raise ConfigError(f"bad SLURM options ({first}); expected submitit's generic names "
                          f"({', '.join(sorted(GENERIC - {'name'}))}) or SlurmExecutor parameters (partition, account, "
                          "qos, constraint, array_parallelism, signal_delay_s, ...)") from None
    return executor


@dataclass
class Submitted:
    jobs: list
    tasks: list[GridTask]
    indices: list[int]


def submit(tasks: list[GridTask], indices: list[int], cluster: str, folder: Path, options: dict[str, Any],
           job_name: str) -> Submitted:
    """Submit ``tasks`` as one job array (SLURM)."""
    executor = _executor(cluster, folder, options, job_name)
    try:
        jobs = executor.submit_array(tasks)
    except FileNotFoundError as error:
        raise ConfigError(NO_SLURM.format(tool=error.filename or "sbatch")) from None
    except subprocess.CalledProcessError as error:
        output = (error.output or b"").decode(errors="replace").strip().splitlines()
        raise ConfigError(f"sbatch refused the job array: {output[-1] if output else error}") from None
    return Submitted(jobs, tasks, indices)


def run_local_executor(tasks: list[GridTask], indices: list[int], total: int, folder: Path,
                       options: dict[str, Any], progress, runs) -> list[str]:
    """Each task through submitit's local executor, one at a time; returns the failed names."""
    executor = _executor("local", folder, options, "ablation")
    failed = []
    for task, index, run in zip(tasks, indices, runs):
        progress.run_started(index, task.name, run.run_dir, Path(task.log_file), run.total_steps, run.max_epochs)
        started = time.perf_counter()
        job = executor.submit(task)
        code = 0
        try:
            job.result()
        except Exception:  # the task raised, or the job died: its log says why
            code = 1
        ok, line = result_line(index, total, task.name, run.metrics_file, time.perf_counter() - started, code,
                               Path(task.log_file))
        if not ok:
            failed.append(task.name)
        progress.run_finished(index, line + ("" if ok else f" (submitit log: {job.paths.stdout})"))
    return failed
