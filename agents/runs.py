"""Run folders: creation, provenance, checkpoints, and loading a trained run for evaluation.

A run folder (default ``runs/<scenario>__<algo>__<seed>__<timestamp>/``) holds::

    config.yaml         the fully resolved training config (agents.config.TrainConfig)
    scenario.yaml       the scenario exactly as trained on (overrides applied): a snapshot, so
                        later edits of configs/scenarios/ do not change what the run means
    versions.json       env id and market model version, Python and package versions, git
                        commit; a run made on another model version is not loaded or resumed
    tb/                 TensorBoard events (one continuous curve across resumes)
    checkpoints/        model_<steps>.zip + vecnormalize_<steps>.pkl, and latest.json
    train.lock          the running trainer's PID; locked (fcntl.flock) while it runs
    model.zip           the final model
    vecnormalize.pkl    its VecNormalize statistics
    summary.json        timesteps, wall time, fps, evaluation figures

Every file is written atomically (a temporary file in the same folder, then ``os.replace``),
so a kill never leaves a half-written file. A run folder is never overwritten. It appears in
one step, complete and resumable from step 0 (:func:`create_run_dir`), and one trainer at a
time holds it (:mod:`agents.locks`; POSIX systems).

Evaluation uses :func:`load_run`; the run's algorithm (:func:`agents.config.get_algorithm`, or
one handed in) loads the model and its frozen statistics, so this module knows run folders
only::

    run = load_run("runs/global__ppo__0__20240101-120000")
    run.config, run.scenario            # TrainConfig, envs.scenario.Scenario
    run.model, run.vecnormalize         # SB3 model, VecNormalize (training=False)
    policy = run.policy()               # predict(raw_obs) -> (action, None), obs normalised
"""

from __future__ import annotations

import errno
import json
import os
import platform
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

import yaml

from agents.config import ConfigError, TrainConfig, config_from_dict, get_algorithm, upgrade_run_config
from agents.io import (RUNS_DIR, OutputError, atomic_save, atomic_write_json, atomic_write_text, check_folder_writable, check_name,
                       in_project_runs, new_folder)
from agents.locks import RunLock, RunLockedError
from agents.policies import NormalizedPolicy
from agents.recovery import check_model_file, find_checkpoints, lost_checkpoints, read_latest
from envs import ENV_ID, MODEL_VERSION
from envs.batch import MarketBatch
from envs.scenario import Scenario, ScenarioError, load_scenario

PROJECT_ROOT = Path(__file__).resolve().parent.parent

CONFIG_FILE = "config.yaml"
SCENARIO_FILE = "scenario.yaml"
VERSIONS_FILE = "versions.json"
SUMMARY_FILE = "summary.json"
MODEL_FILE = "model.zip"
VECNORM_FILE = "vecnormalize.pkl"
CHECKPOINT_DIR = "checkpoints"
LATEST_FILE = "latest.json"
TB_DIR = "tb"
TB_LOCATION_FILE = "tensorboard.json"
"""Where a run trained with ``--tensorboard-log DIR`` writes its events (``DIR/<run name>``),
recorded at creation so that a resume and the plots find them."""

PACKAGES = ("numpy", "gymnasium", "stable_baselines3", "torch", "tensorboard", "pydantic", "PyYAML", "flywheel")


class RunError(ValueError):
    """A run folder cannot be created, resumed or loaded. The message is one line."""


# --------------------------------------------------------------------------- creating


def default_run_dir(config: TrainConfig, root: Path = RUNS_DIR) -> Path:
    """``runs/<scenario>__<algo>__<seed>__<YYYYmmdd-HHMMSS>``."""
    stamp = time.strftime("%Y%m%d-%H%M%S")
    return root / f"{config.scenario_label}__{config.algo}__{config.seed}__{stamp}"


def check_new_run_dir(run_dir: str | Path, typed: bool = False) -> Path:
    """Refuse an existing path (never overwrite a run), a name the file system cannot hold, or a
    place nothing can be written; nothing is created here. A ``typed`` ``--run-dir`` needs its
    folder to exist, like every other output path the user names, unless that folder is the
    project's ``runs/`` (made when missing, as for the default run folder)."""
    run_dir = Path(run_dir)
    create_parents = not typed or in_project_runs(run_dir)
    if os.path.lexists(run_dir):
        raise RunError(f"run folder {run_dir} already exists; choose another --run-dir or continue it with --resume {run_dir}")
    try:
        check_name(run_dir, f"--run-dir {run_dir}")
        check_folder_writable(run_dir.parent, f"--run-dir {run_dir}", create=create_parents)
    except OutputError as exc:
        raise RunError(str(exc)) from None
    return run_dir


def check_tensorboard_log(folder: str | Path, run_dir: Path) -> Path:
    """``--tensorboard-log``: a writable folder, or a new one whose parent exists (as for every
    output path a user names; the project's ``runs/`` may be made), without a ``<run name>``
    entry yet (a new run starts its own curve). Returns it absolute; nothing is created here."""
    folder = Path(folder)
    try:
        if os.path.lexists(folder):
            check_folder_writable(folder, f"--tensorboard-log {folder}")
        else:
            check_folder_writable(folder.parent, f"--tensorboard-log {folder}", create=in_project_runs(folder))
    except OutputError as exc:
        raise RunError(str(exc)) from None
    if os.path.lexists(folder / run_dir.name):
        raise RunError(f"--tensorboard-log {folder}: {folder / run_dir.name} already exists; choose another folder or --run-dir name")
    return folder.absolute()


def _tensorboard_record(run_dir: Path) -> dict | None:
    """The run's :data:`TB_LOCATION_FILE` (``None`` when it logs into ``RUN/tb``); one line if unusable."""
    try:
        doc = json.loads((run_dir / TB_LOCATION_FILE).read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        raise RunError(f"run {run_dir}: {TB_LOCATION_FILE} cannot be read ({exc}); it names the run's TensorBoard folder") from None
    if not isinstance(doc, dict) or not isinstance(doc.get("logdir"), str):
        raise RunError(f"run {run_dir}: {TB_LOCATION_FILE} does not name a folder (expected {{\"logdir\": \"...\"}})")
    return doc


def tensorboard_dir(run_dir: str | Path) -> Path:
    """The folder of the run's TensorBoard events: ``RUN/tb``, or ``DIR/<run name>`` recorded
    by ``--tensorboard-log DIR`` (:data:`TB_LOCATION_FILE`)."""
    run_dir = Path(run_dir)
    doc = _tensorboard_record(run_dir)
    return run_dir / TB_DIR if doc is None else Path(doc["logdir"])


def tensorboard_owner_problem(run_dir: Path) -> str | None:
    """Why a resume must not write into the TensorBoard folder the run records, or ``None``: the
    record names another run folder (this one is a copy, or was moved), whose curve a resume
    would cut back to this run's checkpoint."""
    doc = _tensorboard_record(run_dir)
    owner = doc.get("run") if doc is not None else None
    if isinstance(owner, str) and os.path.abspath(owner) != os.path.abspath(run_dir):
        return (f"run {run_dir}: its {TB_LOCATION_FILE} names the TensorBoard folder {doc.get('logdir')} of run {owner} "
                f"(a copy, or the folder moved); a resume would cut that run's curve. Edit {TB_LOCATION_FILE} to name a "
                f"new folder (and this run), or delete it to log into {run_dir / TB_DIR}; nothing was changed")
    return None


def create_run_dir(run_dir: str | Path, config: TrainConfig, tensorboard_log: str | Path | None = None) -> RunLock:
    """Create the run folder in one step, locked for this process; return the held lock.

    ``config.yaml``, ``scenario.yaml``, ``versions.json``, ``checkpoints/`` (and, with
    ``tensorboard_log``, :data:`TB_LOCATION_FILE`) are written into a temporary sibling that is then renamed to ``run_dir``: the folder appears complete, ready
    for ``--resume`` from step 0, or not at all. The lock (:class:`agents.locks.RunLock`) is taken
    before the rename, so no other trainer can open the folder in between; it is held until
    released or the process ends.
    """
    scenario = load_scenario(config.scenario, config.overrides)
    run_dir = check_new_run_dir(run_dir)
    logdir = None if tensorboard_log is None else check_tensorboard_log(tensorboard_log, run_dir)
    lock = None
    try:
        with new_folder(run_dir, f"run folder {run_dir}") as tmp:
            (tmp / CHECKPOINT_DIR).mkdir()
            if logdir is not None:
                atomic_write_json(tmp / TB_LOCATION_FILE, {"logdir": str(logdir / run_dir.name), "run": str(run_dir.absolute())})
            atomic_write_text(tmp / CONFIG_FILE, config.to_yaml())
            atomic_write_text(tmp / SCENARIO_FILE, yaml.safe_dump(scenario.model_dump(mode="json"), sort_keys=False))
            atomic_write_json(tmp / VERSIONS_FILE, versions())
            lock = RunLock(tmp).acquire()
    except OutputError as exc:
        if lock is not None:
            lock.release()
        raise RunError(str(exc)) from None
    except OSError as exc:
        if lock is not None:
            lock.release()
        raise RunError(f"cannot create run folder {run_dir}: {exc.strerror}") from None
    lock.moved_to(run_dir)
    return lock


def lock_run(run_dir: str | Path) -> RunLock:
    """Take the run folder's lock for this process; :class:`RunError` naming the holder's PID."""
    try:
        return RunLock(run_dir).acquire()
    except RunLockedError as exc:
        raise RunError(str(exc)) from None


def git_commit(root: Path = PROJECT_ROOT) -> dict[str, Any]:
    """``{"commit": sha or None, "dirty": bool or None}`` of the project's git checkout."""

    def git(*args: str) -> str | None:
        try:
            out = subprocess.run(["git", *args], cwd=root, capture_output=True, text=True, timeout=10)
        except (OSError, subprocess.SubprocessError):
            return None
        return out.stdout.strip() if out.returncode == 0 else None

    sha = git("rev-parse", "HEAD")
    status = git("status", "--porcelain", "--untracked-files=no")
    return {"commit": sha, "dirty": None if status is None else bool(status)}


def versions() -> dict[str, Any]:
    """Env id, model version, Python, platform, package versions and git commit, for ``versions.json``."""
    packages = {}
    for name in PACKAGES:
        try:
            packages[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            packages[name] = None
    return {
        "env_id": ENV_ID,
        "model_version": MODEL_VERSION,
        "python": platform.python_version(),
        "implementation": platform.python_implementation(),
        "platform": platform.platform(),
        "executable": sys.executable,
        "packages": packages,
        "git": git_commit(),
    }


# --------------------------------------------------------------------------- reading


def read_run_config(run_dir: str | Path) -> TrainConfig:
    """The resolved config of an existing run folder; :class:`RunError` if it is not a run."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise RunError(f"{run_dir} is not a run folder (no such directory)")
    path = run_dir / CONFIG_FILE
    if not path.is_file():
        raise RunError(f"{run_dir} is not a run folder (no {CONFIG_FILE})")
    try:
        doc = yaml.safe_load(path.read_text())
    except yaml.YAMLError:
        raise RunError(f"{path}: not valid YAML") from None
    if not isinstance(doc, dict):
        raise RunError(f"{path}: not a training config")
    try:
        return config_from_dict(upgrade_run_config(doc), source=str(path))
    except ConfigError as exc:
        raise RunError(str(exc)) from None


def check_model_version(run_dir: str | Path) -> None:
    """A run is only meaningful on the market model it was trained on: :class:`RunError` (one
    line naming both versions) if its ``versions.json`` records another env id or model version,
    or none (a run from before model versions were recorded)."""
    path = Path(run_dir) / VERSIONS_FILE
    try:
        doc = json.loads(path.read_text())
    except FileNotFoundError:
        doc = {}
    except json.JSONDecodeError:
        raise RunError(f"{path}: not valid JSON") from None
    doc = doc if isinstance(doc, dict) else {}
    have_version, have_env = doc.get("model_version"), doc.get("env_id")
    if str(have_version) != MODEL_VERSION or have_env != ENV_ID:
        made = f"model version {have_version} ({have_env})" if have_version is not None else "an unrecorded model version (before version 2)"
        raise RunError(f"run {run_dir} was made on {made}; this is model version {MODEL_VERSION} ({ENV_ID}): retrain it")


def run_scenario(run_dir: str | Path, config: TrainConfig) -> Scenario:
    """The scenario a run trained on: its ``scenario.yaml`` snapshot, else the config's scenario."""
    snapshot = Path(run_dir) / SCENARIO_FILE
    try:
        if snapshot.is_file():
            return load_scenario(snapshot)
        return load_scenario(config.scenario, config.overrides)
    except ScenarioError as exc:
        raise RunError(f"run {run_dir}: {exc}") from None


@dataclass(frozen=True)
class Checkpoint:
    """A saved model and its normalisation statistics at ``timesteps``."""

    timesteps: int
    model_path: Path
    vecnormalize_path: Path
    wall_seconds: float


def checkpoint_paths(run_dir: Path, timesteps: int) -> tuple[Path, Path]:
    ckpt = Path(run_dir) / CHECKPOINT_DIR
    return ckpt / f"model_{timesteps}.zip", ckpt / f"vecnormalize_{timesteps}.pkl"


def save_checkpoint(run_dir: Path, model, vecnormalize, wall_seconds: float) -> Checkpoint:
    """Save model and statistics atomically, then point ``latest.json`` at them."""
    steps = int(model.num_timesteps)
    model_path, vec_path = checkpoint_paths(run_dir, steps)
    atomic_save(vec_path, vecnormalize.save)
    atomic_save(model_path, model.save)
    atomic_write_json(
        Path(run_dir) / CHECKPOINT_DIR / LATEST_FILE,
        {"timesteps": steps, "model": model_path.name, "vecnormalize": vec_path.name, "wall_seconds": wall_seconds},
    )
    return Checkpoint(steps, model_path, vec_path, wall_seconds)


def latest_checkpoint(run_dir: str | Path) -> Checkpoint | None:
    """The newest whole checkpoint in the run (``latest.json`` is only a hint), or ``None``.

    Whole means both files are there and the model is a complete archive; whether it loads
    is for :func:`agents.recovery.load_newest` to find out.
    """
    for found in find_checkpoints(Path(run_dir) / CHECKPOINT_DIR):
        if check_model_file(found.model_path) is None:
            return Checkpoint(found.timesteps, found.model_path, found.vecnormalize_path, found.wall_seconds)
    return None


def is_finished(run_dir: str | Path) -> bool:
    run_dir = Path(run_dir)
    return (run_dir / SUMMARY_FILE).is_file() and (run_dir / MODEL_FILE).is_file()


def open_for_resume(run_dir: str | Path) -> tuple[TrainConfig, RunLock]:
    """Check that a run folder can be resumed (a run, unfinished) and lock it for this process.

    A run without any checkpoint (stopped before its first) resumes from step 0; which
    checkpoint a resume continues from is chosen when it loads (:func:`agents.ppo.train`). A run
    whose ``checkpoints/`` holds checkpoint files but no whole checkpoint (a model deleted, its
    statistics left) is refused: starting it again from step 0 would also drop its TensorBoard
    curve.
    """
    run_dir = Path(run_dir)
    config = read_run_config(run_dir)
    check_model_version(run_dir)
    lock = lock_run(run_dir)
    if is_finished(run_dir):
        lock.release()
        raise RunError(f"run {run_dir} is already finished ({SUMMARY_FILE} and {MODEL_FILE} exist); nothing to resume")
    try:
        elsewhere = tensorboard_owner_problem(run_dir)
    except RunError:
        lock.release()
        raise
    if elsewhere:
        lock.release()
        raise RunError(elsewhere)
    traces = lost_checkpoints(run_dir / CHECKPOINT_DIR)
    if traces:
        lock.release()
        shown = ", ".join(traces[:4]) + (f" and {len(traces) - 4} more" if len(traces) > 4 else "")
        raise RunError(
            f"run {run_dir}: {CHECKPOINT_DIR}/ holds {shown} but no whole checkpoint (model_<steps>.zip with "
            f"vecnormalize_<steps>.pkl), so a resume would start again from step 0 and drop the run's TensorBoard "
            f"curve; nothing was changed. Restore the missing files, or train a new run (--run-dir)"
        )
    return config, lock


def checkpoint_notes(run_dir: str | Path) -> list[str]:
    """What is wrong with ``latest.json``, in one line, when it does not name a whole checkpoint."""
    ckpt = Path(run_dir) / CHECKPOINT_DIR
    doc, problem = read_latest(ckpt)
    if doc is None:
        return [] if problem.endswith("missing") and not find_checkpoints(ckpt) else [f"{CHECKPOINT_DIR}/{problem}"]
    missing = [doc.get(key) for key in ("model", "vecnormalize") if isinstance(doc.get(key), str) and not (ckpt / doc[key]).is_file()]
    return [f"{CHECKPOINT_DIR}/{LATEST_FILE} names {name}, which is missing" for name in missing]


def resume_command(run_dir: Path) -> str:
    return f"python scripts/train.py --resume {run_dir}"


def stopped_line(run_dir: str | Path, signum: int, phase: str | None, forced: bool = False) -> str:
    """The one line a trainer stopped by a signal prints: what is saved, how to continue."""
    run_dir = Path(run_dir)
    name = signal.Signals(signum).name
    ckpt = latest_checkpoint(run_dir)
    step = ckpt.timesteps if ckpt else 0
    resume = f"Continue with: {resume_command(run_dir)}"
    if phase in ("saving the final model", "final evaluation") and (run_dir / MODEL_FILE).is_file():
        return f"{name}: stopped during the final evaluation; the final model (step {step}) is saved, {SUMMARY_FILE} is not. {resume}"
    if forced:
        return f"{name} a third time: stopped without finishing the save; the newest whole checkpoint is at step {step}. {resume}"
    if ckpt is None:
        return f"{name}: stopped during {phase or 'setup'}, before the first checkpoint; the run folder is ready to start from step 0. {resume}"
    if phase == "setup":
        return f"{name}: stopped during setup; nothing new to save (the checkpoint at step {step} is kept). {resume}"
    return f"{name}: stopped at step {step}; checkpoint saved. {resume}"


def write_failure_line(run_dir: Path, exc: OSError) -> str:
    """One line for a training that could not write a file: what, why, what is still safe."""
    what = exc.filename or f"into {run_dir}"
    ckpt = latest_checkpoint(run_dir)
    kept = f"the checkpoint at step {ckpt.timesteps} is intact" if ckpt else "no checkpoint was written yet"
    fix = "Free some space, then" if exc.errno == errno.ENOSPC else "Fix the cause, then"
    return f"cannot write {what}: {exc.strerror or exc}; {kept}. {fix}: {resume_command(run_dir)}"


# --------------------------------------------------------------------------- loading for evaluation


@dataclass
class LoadedRun:
    """A trained run, ready for evaluation.

    :ivar run_dir: the folder.
    :ivar config: its resolved :class:`~agents.config.TrainConfig`.
    :ivar scenario: the scenario it trained on (overrides applied; from the run's
        ``scenario.yaml`` snapshot).
    :ivar model: the SB3 model (``model.zip``, or the latest checkpoint if asked).
    :ivar vecnormalize: the ``VecNormalize`` statistics, ``training=False`` and
        ``norm_reward=False`` (frozen; raw rewards).
    :ivar summary: ``summary.json`` as a dict (empty if the run did not finish).
    """

    run_dir: Path
    config: TrainConfig
    scenario: Scenario
    model: Any
    vecnormalize: Any
    summary: dict

    @property
    def algo(self) -> str:
        return self.config.algo

    def policy(self) -> NormalizedPolicy:
        """The learned policy, named after its algorithm, on raw observations."""
        return NormalizedPolicy(self.model, self.vecnormalize, name=self.config.algo)


def load_run(run_dir: str | Path, checkpoint: bool = False, algorithm=None) -> LoadedRun:
    """Load a run folder's config, scenario, model and frozen normalisation statistics.

    :param run_dir: a folder written by ``scripts/train.py``.
    :param checkpoint: load the latest checkpoint instead of the final model (for an
        unfinished run).
    :param algorithm: the object that loads the run's files (``load_frozen``); default: the
        registered algorithm the run's config names.
    :raises RunError: one line if the folder is not a (finished) run or its model does not fit
        its scenario's spaces.
    """
    run_dir = Path(run_dir)
    config = read_run_config(run_dir)
    check_model_version(run_dir)
    model_path, vec_path = _model_files(run_dir, checkpoint)
    scenario = run_scenario(run_dir, config)
    algorithm = algorithm or get_algorithm(config.algo)
    model, vecnormalize = algorithm.load_frozen(str(model_path), str(vec_path), config, scenario)
    summary_path = run_dir / SUMMARY_FILE
    summary = json.loads(summary_path.read_text()) if summary_path.is_file() else {}
    return LoadedRun(run_dir, config, scenario, model, vecnormalize, summary)


def _model_files(run_dir: Path, checkpoint: bool) -> tuple[Path, Path]:
    """The model and statistics files to load: the final ones, or the latest checkpoint's."""
    if checkpoint:
        ckpt = latest_checkpoint(run_dir)
        if ckpt is None:
            raise RunError(f"run {run_dir} has no checkpoint")
        return ckpt.model_path, ckpt.vecnormalize_path
    model_path, vec_path = run_dir / MODEL_FILE, run_dir / VECNORM_FILE
    for path in (model_path, vec_path):
        if not path.is_file():
            raise RunError(f"run {run_dir} is not finished: {path.name} is missing; finish it with {resume_command(run_dir)}")
    problem = check_model_file(model_path)
    if problem is not None:  # say so, rather than let the loader call it a scenario mismatch
        raise RunError(f"{model_path} {problem}; its checkpoints are in {run_dir / CHECKPOINT_DIR}")
    if vec_path.stat().st_size == 0:
        raise RunError(f"{vec_path} is empty (0 bytes): the file is damaged")
    return model_path, vec_path


def check_spaces(run: LoadedRun, scenario: Scenario) -> None:
    """The model's observation and action shapes must be ``scenario``'s; :class:`RunError`."""
    batch = MarketBatch(scenario)
    for what, have, want in [
        ("observation", run.model.observation_space.shape, batch.single_observation_space.shape),
        ("action", run.model.action_space.shape, batch.single_action_space.shape),
    ]:
        if tuple(have) != tuple(want):
            raise RunError(f"run {run.run_dir}: the model's {what} space has shape {tuple(have)} but scenario '{scenario.name}' needs {tuple(want)}")
