"""Run folders: creation, provenance, checkpoints, and loading a trained run for evaluation.

A run folder (default ``runs/<scenario>__<algo>__<seed>__<timestamp>/``) holds::

    config.yaml         the fully resolved training config (agents.config.TrainConfig)
    scenario.yaml       the scenario exactly as trained on (overrides applied): a snapshot, so
                        later edits of configs/scenarios/ do not change what the run means
    versions.json       Python and package versions, git commit
    tb/                 TensorBoard events (one continuous curve across resumes)
    checkpoints/        model_<steps>.zip + vecnormalize_<steps>.pkl, and latest.json
    model.zip           the final model
    vecnormalize.pkl    its VecNormalize statistics
    summary.json        timesteps, wall time, fps, evaluation figures

Every file is written atomically (a temporary file in the same folder, then ``os.replace``),
so a kill never leaves a half-written file. A run folder is never overwritten.

Evaluation uses :func:`load_run`; the run's algorithm (:func:`agents.config.get_algorithm`, or
one handed in) loads the model and its frozen statistics, so this module knows run folders
only::

    run = load_run("runs/global__ppo__0__20240101-120000")
    run.config, run.scenario            # TrainConfig, envs.scenario.Scenario
    run.model, run.vecnormalize         # SB3 model, VecNormalize (training=False)
    policy = run.policy()               # predict(raw_obs) -> (action, None), obs normalised
"""

from __future__ import annotations

import json
import platform
import subprocess
import sys
import time
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

import yaml

from agents.config import ConfigError, TrainConfig, config_from_dict, get_algorithm
from agents.io import atomic_save, atomic_write_json, atomic_write_text
from agents.policies import NormalizedPolicy
from envs.batch import MarketBatch
from envs.scenario import Scenario, ScenarioError, load_scenario

PROJECT_ROOT = Path(__file__).resolve().parent.parent
RUNS_DIR = PROJECT_ROOT / "runs"

CONFIG_FILE = "config.yaml"
SCENARIO_FILE = "scenario.yaml"
VERSIONS_FILE = "versions.json"
SUMMARY_FILE = "summary.json"
MODEL_FILE = "model.zip"
VECNORM_FILE = "vecnormalize.pkl"
CHECKPOINT_DIR = "checkpoints"
LATEST_FILE = "latest.json"
TB_DIR = "tb"

PACKAGES = ("numpy", "gymnasium", "stable_baselines3", "torch", "tensorboard", "pydantic", "PyYAML", "flywheel")


class RunError(ValueError):
    """A run folder cannot be created, resumed or loaded. The message is one line."""


# --------------------------------------------------------------------------- creating


def default_run_dir(config: TrainConfig, root: Path = RUNS_DIR) -> Path:
    """``runs/<scenario>__<algo>__<seed>__<YYYYmmdd-HHMMSS>``."""
    stamp = time.strftime("%Y%m%d-%H%M%S")
    return root / f"{config.scenario_label}__{config.algo}__{config.seed}__{stamp}"


def check_new_run_dir(run_dir: str | Path) -> Path:
    """Refuse an existing path (never overwrite a run); nothing is created here."""
    run_dir = Path(run_dir)
    if run_dir.exists():
        raise RunError(f"run folder {run_dir} already exists; choose another --run-dir or continue it with --resume {run_dir}")
    return run_dir


def create_run_dir(run_dir: str | Path, config: TrainConfig) -> Path:
    """Create the folder and write ``config.yaml``, ``scenario.yaml`` and ``versions.json``."""
    scenario = load_scenario(config.scenario, config.overrides)
    run_dir = check_new_run_dir(run_dir)
    try:
        run_dir.mkdir(parents=True)
    except FileExistsError:
        raise RunError(f"run folder {run_dir} already exists") from None
    except OSError as exc:
        raise RunError(f"cannot create run folder {run_dir}: {exc.strerror}") from None
    (run_dir / CHECKPOINT_DIR).mkdir()
    atomic_write_text(run_dir / CONFIG_FILE, config.to_yaml())
    atomic_write_text(run_dir / SCENARIO_FILE, yaml.safe_dump(scenario.model_dump(mode="json"), sort_keys=False))
    atomic_write_json(run_dir / VERSIONS_FILE, versions())
    return run_dir


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
    """Python, platform, package versions and git commit, for ``versions.json``."""
    packages = {}
    for name in PACKAGES:
        try:
            packages[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            packages[name] = None
    return {
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
        return config_from_dict(doc, source=str(path))
    except ConfigError as exc:
        raise RunError(str(exc)) from None


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
    """The checkpoint ``latest.json`` points at, or ``None`` if there is none."""
    ckpt = Path(run_dir) / CHECKPOINT_DIR
    try:
        meta = json.loads((ckpt / LATEST_FILE).read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return None
    model_path, vec_path = ckpt / meta["model"], ckpt / meta["vecnormalize"]
    if not (model_path.is_file() and vec_path.is_file()):
        return None
    return Checkpoint(int(meta["timesteps"]), model_path, vec_path, float(meta.get("wall_seconds", 0.0)))


def open_for_resume(run_dir: str | Path) -> tuple[TrainConfig, Checkpoint]:
    """Check that a run folder can be resumed: it is a run, unfinished, with a checkpoint."""
    run_dir = Path(run_dir)
    config = read_run_config(run_dir)
    if (run_dir / SUMMARY_FILE).is_file() and (run_dir / MODEL_FILE).is_file():
        raise RunError(f"run {run_dir} is already finished ({SUMMARY_FILE} and {MODEL_FILE} exist); nothing to resume")
    checkpoint = latest_checkpoint(run_dir)
    if checkpoint is None:
        raise RunError(f"run {run_dir} has no checkpoint to resume from ({CHECKPOINT_DIR}/{LATEST_FILE} missing)")
    return config, checkpoint


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
            raise RunError(f"run {run_dir} is not finished: {path.name} is missing (load_run(..., checkpoint=True) for the latest checkpoint)")
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
