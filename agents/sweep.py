"""Sweeps on Ray Tune: many trainings, on this machine or on a Ray cluster, from one YAML file.

A sweep file (``configs/sweeps/*.yaml``) names a base training config and the axes to vary::

    config: ppo                            # base training config: a built-in name or a YAML path
    set: {total_timesteps: 200000}         # fixed dotted overrides for every trial
    axes:                                  # dotted config keys, one kind of range each
      ppo.learning_rate: {loguniform: [1.0e-4, 3.0e-3]}
      ppo.n_epochs: {choice: [5, 10]}
      n_envs: {grid: [64, 256]}
    seeds: [0, 1, 2]                       # shorthand for axes.seed: {grid: [...]}
    budgets: [1, 2, 4]                     # total budget in $B (per-quarter cap scaled with it)
    scenarios: [global, us]                # shorthand for axes.scenario: {grid: [...]}
    variants:                              # named (config, set) pairs, one grid axis
      hard: {}
      soft: {set: {overrides.budget.mode: soft}}
      lagrangian: {config: ppo_lagrangian}
    metric: eval/gmv_mean                  # or eval/ratio_to_best_static, eval/objective_mean, eval/objective_ratio_to_best_static
    mode: max
    num_samples: 1                         # repeats of the grid, each drawing the random axes
    max_concurrent: null                   # default: one trial per CPU of the Ray cluster
    search: random                         # or optuna (Ray's OptunaSearch; no grid axes)
    early_stopping: null                   # or {grace_steps: 50000, reduction_factor: 3} (ASHA)
    max_train_seconds: null                # or stop each trial at its first evaluation past it
    baseline: {iterations: 40, seeds: 16}  # best_static's search for the ratio (null: no ratio)

Axis kinds: ``grid`` (every value, crossed with the other grids), ``choice`` (one value drawn
per trial), ``uniform`` / ``loguniform`` (``[low, high]``, floats). Every axis is a key of the
training config (:class:`agents.config.TrainConfig`) and every value is validated against it
before Ray starts, so a typo is a one-line :class:`SweepError`, not a crashed trial.

Each trial is a normal run folder (:mod:`agents.runs`: config, checkpoints, TensorBoard,
``summary.json``) under ``<sweep folder>/runs/``, trained by :func:`agents.ppo.train` and
evaluated on the held-out seeds :func:`agents.ppo.eval_seeds`. A trial reports to Ray Tune
after every evaluation: ``timesteps``, ``train_seconds`` (evaluation pauses excluded),
``eval/gmv_mean`` ($B per episode) and ``eval/ratio_to_best_static`` (the same GMV divided by
``best_static``'s on the same seeds; ``best_static`` is searched once per scenario and cached
in ``<sweep folder>/baselines/``), ``eval/objective_mean`` (the reward per episode: the
scenario's objective plus its terminal value, what PPO maximises) and
``eval/objective_ratio_to_best_static`` (divided by best_static's on the same seeds). ASHA
stops trials on those intermediate reports.

The sweep folder (default ``runs/sweeps/<name>/``)::

    sweep.yaml       the sweep file as started (a resumed sweep must match it)
    tune/            Ray Tune's experiment state (Tuner.restore reads it)
    runs/            one run folder per trial
    baselines/       best_static per scenario (JSON)
    results.csv      one row per trial: status, axes, metrics, run folder
    results.json     the same rows and the sweep's settings and timings
    results.png      the metric against each axis
    report.md        the table, the best trial, how it was run

An interrupted sweep continues with ``resume=True`` (``Tuner.restore``): finished trials keep
their results, unfinished ones restart and continue their run folder from its last checkpoint.

Ray: without an address a local Ray starts with one CPU per core, one trial per CPU, torch at
one thread per trial (``FLYWHEEL_TORCH_THREADS``). With ``address`` (``auto`` or
``HOST:PORT``) trials go to an existing cluster; every node must have this project installed,
and for more than one node ``storage`` must be a folder all nodes mount (docs/scaling.md).
"""

from __future__ import annotations

import copy
import csv
import hashlib
import io
import json
import math
import os
import re
import signal
import socket
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Literal, Mapping, Sequence

import numpy as np
import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from agents import lazy, runs
from agents.config import DEFAULT_CONFIG, ConfigError, TrainConfig, load_config
from agents.constraint import scaled_to_limit
from agents.io import OutputError, atomic_path, atomic_write_json, atomic_write_text, check_folder_writable, check_name, new_folder
from agents.planners import best_static
from agents.policies import ConstantPolicy
from agents.rollout import measure
from agents.seeds import eval_seeds
from envs.config_files import read_yaml_mapping
from envs.scenario import Scenario, load_scenario

SWEEPS_DIR = runs.RUNS_DIR / "sweeps"
SWEEP_FILE = "sweep.yaml"
TUNE_DIR = "tune"
TRIALS_DIR = "runs"
BASELINES_DIR = "baselines"
RESULTS_CSV = "results.csv"
RESULTS_JSON = "results.json"
RESULTS_PNG = "results.png"
REPORT_MD = "report.md"

#: metrics a sweep can optimise, all reported by every trial ($B per episode, or a ratio to best_static)
METRICS = ("eval/gmv_mean", "eval/ratio_to_best_static", "eval/objective_mean", "eval/objective_ratio_to_best_static")
RATIO_METRICS = ("eval/ratio_to_best_static", "eval/objective_ratio_to_best_static")
#: axis names that are not config keys
BUDGET_AXIS = "budget"
VARIANT_AXIS = "variant"
#: seconds to wait for a TCP connection to a cluster's address before giving up
CONNECT_TIMEOUT_S = 3.0


class SweepError(ValueError):
    """A sweep file, option or folder is invalid, or Ray cannot be reached. One line."""


class SweepInterrupted(KeyboardInterrupt):
    """SIGTERM stopped a sweep outside Ray Tune's own handling (while Ray started, or a second
    signal while Tune saved); what was saved stays, ``resume=True`` continues it. (Ctrl-C there
    is Python's plain ``KeyboardInterrupt``.)

    :ivar signum: the signal (``signal.SIGTERM``).
    """

    def __init__(self, signum: int):
        self.signum = int(signum)
        super().__init__(signal.Signals(self.signum).name)


# --------------------------------------------------------------------------- the sweep file


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)


class Axis(_Strict):
    """One axis: exactly one of ``grid``, ``choice`` (lists of values), ``uniform``,
    ``loguniform`` (``[low, high]``)."""

    grid: list[Any] | None = Field(default=None, min_length=1)
    choice: list[Any] | None = Field(default=None, min_length=1)
    uniform: tuple[float, float] | None = None
    loguniform: tuple[float, float] | None = None

    @model_validator(mode="after")
    def _one_kind(self) -> "Axis":
        given = [k for k in ("grid", "choice", "uniform", "loguniform") if getattr(self, k) is not None]
        if len(given) != 1:
            raise ValueError(f"an axis takes exactly one of grid, choice, uniform, loguniform; got {', '.join(given) or 'none'}")
        for kind in ("uniform", "loguniform"):
            bounds = getattr(self, kind)
            if bounds is not None:
                low, high = bounds
                if not low < high:
                    raise ValueError(f"{kind}: low must be below high; got [{low:g}, {high:g}]")
                if kind == "loguniform" and low <= 0:
                    raise ValueError(f"loguniform: low must be positive; got {low:g}")
        return self

    @property
    def kind(self) -> str:
        return next(k for k in ("grid", "choice", "uniform", "loguniform") if getattr(self, k) is not None)

    def probes(self) -> list[Any]:
        """Values to validate against the training config: every listed value, or a range's
        ends and middle (the middle catches a float range on an integer key)."""
        if self.kind in ("grid", "choice"):
            return list(getattr(self, self.kind))
        low, high = getattr(self, self.kind)
        return [low, high, math.sqrt(low * high) if self.kind == "loguniform" else 0.5 * (low + high)]


class Variant(_Strict):
    """A named training setup: a base config and dotted overrides."""

    config: str | None = None
    set: dict[str, Any] = Field(default_factory=dict)


class EarlyStopping(_Strict):
    """ASHA (asynchronous successive halving) on the trials' intermediate evaluations."""

    grace_steps: int = Field(ge=1, description="env steps every trial trains before it can be stopped")
    reduction_factor: float = Field(default=3.0, gt=1, le=16)


class Baseline(_Strict):
    """How hard ``best_static`` is searched for the ratio metric (CMA-ES on training seeds)."""

    iterations: int = Field(default=40, ge=0, le=1000)
    seeds: int = Field(default=16, ge=1, le=1024)


class SweepSpec(_Strict):
    """A validated sweep; paths are absolute after :func:`load_sweep`."""

    name: str = Field(default="sweep", pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")
    config: str = str(DEFAULT_CONFIG)
    set: dict[str, Any] = Field(default_factory=dict)
    axes: dict[str, Axis] = Field(default_factory=dict)
    seeds: list[int] | None = Field(default=None, min_length=1)
    budgets: list[float] | None = Field(default=None, min_length=1)
    scenarios: list[str] | None = Field(default=None, min_length=1)
    variants: dict[str, Variant] | None = Field(default=None, min_length=1)
    metric: Literal["eval/gmv_mean", "eval/ratio_to_best_static", "eval/objective_mean", "eval/objective_ratio_to_best_static"] = "eval/gmv_mean"
    mode: Literal["max", "min"] = "max"
    num_samples: int = Field(default=1, ge=1, le=100_000)
    max_concurrent: int | None = Field(default=None, ge=1, le=100_000)
    search: Literal["random", "optuna"] = "random"
    early_stopping: EarlyStopping | None = None
    max_train_seconds: float | None = Field(default=None, gt=0, description="stop a trial at its first evaluation past this training time")
    baseline: Baseline | None = Field(default_factory=Baseline)

    @model_validator(mode="after")
    def _axes(self) -> "SweepSpec":
        if self.baseline is None and self.metric in RATIO_METRICS:
            raise ValueError(f"metric {self.metric} needs a baseline (baseline: null leaves best_static out)")
        for short, key in (("seeds", "seed"), ("scenarios", "scenario")):
            if getattr(self, short) is not None and key in self.axes:
                raise ValueError(f"'{short}' and axes.{key} name the same axis; keep one")
        if self.budgets is not None and any(not b > 0 for b in self.budgets):
            raise ValueError(f"budgets: every budget must be a positive number of $B; got {[b for b in self.budgets if not b > 0][0]:g}")
        for name, values in (("seeds", self.seeds), ("budgets", self.budgets), ("scenarios", self.scenarios)):
            if values is not None and len(set(values)) != len(values):
                raise ValueError(f"{name}: values must be distinct")
        if self.search == "optuna":
            grids = [f"axes.{k}" for k, a in self.axes.items() if a.kind == "grid"]
            grids += [k for k in ("seeds", "budgets", "scenarios", "variants") if getattr(self, k) is not None]
            if grids:
                raise ValueError(f"search: optuna samples every axis, so it takes no grid axes; got {', '.join(grids)} (use choice)")
        return self

    def axis_domains(self) -> dict[str, Axis]:
        """Every axis by its name in the results: config keys, ``budget``, ``variant``."""
        axes = dict(self.axes)
        if self.seeds is not None:
            axes["seed"] = Axis(grid=list(self.seeds))
        if self.scenarios is not None:
            axes["scenario"] = Axis(grid=list(self.scenarios))
        if self.budgets is not None:
            axes[BUDGET_AXIS] = Axis(grid=list(self.budgets))
        if self.variants is not None:
            axes[VARIANT_AXIS] = Axis(grid=list(self.variants))
        return axes

    @property
    def grid_size(self) -> int:
        """Trials per sample of the grid axes (1 without grids)."""
        return int(np.prod([len(a.grid) for a in self.axis_domains().values() if a.kind == "grid"] or [1]))

    @property
    def n_trials(self) -> int:
        return self.grid_size * self.num_samples


def _format_error(exc: ValidationError, source: str) -> str:
    """One line: the first failing key, its value and what is wrong or allowed."""
    err = exc.errors()[0]
    loc = tuple(str(p) for p in err["loc"])
    where = ".".join(loc)
    msg = err["msg"].removeprefix("Value error, ")
    if err["type"] == "extra_forbidden":
        sections = {"axes": Axis, "variants": Variant, "early_stopping": EarlyStopping, "baseline": Baseline}
        parent = sections.get(loc[0], SweepSpec) if len(loc) > 1 else SweepSpec
        return f"{source}: unknown key '{where}'; allowed here: {', '.join(parent.model_fields)}"
    if not where:
        return f"{source}: {msg}"
    value = err.get("input")
    shown = "" if isinstance(value, (dict, list)) or err["type"] == "missing" else f" = {value!r}"
    return f"{source}: {where}{shown}: {msg}"


def _resolve(path: str, base: Path) -> str:
    """A config path made absolute (found relative to the current folder, the project or the
    sweep file), so that trials on other nodes and folders read the same file; anything else
    (a built-in name such as ``ppo``) is left for :func:`agents.config.load_config`."""
    p = Path(path)
    if p.is_absolute():
        return str(p)
    for root in (Path.cwd(), runs.PROJECT_ROOT, base):
        if (root / p).is_file():
            return str((root / p).resolve())
    return path


def spec_from_dict(doc: Mapping, source: str = "sweep", name: str | None = None) -> SweepSpec:
    """Validate a sweep document (a mapping as read from YAML) and every axis value against the
    training config; :class:`SweepError` (one line) otherwise."""
    doc = dict(doc)
    if name is not None:
        doc.setdefault("name", name)
    try:
        spec = SweepSpec.model_validate(doc)
    except ValidationError as exc:
        raise SweepError(_format_error(exc, source)) from None
    base = Path(source).parent if source != "sweep" else Path.cwd()
    spec.config = _resolve(spec.config, base)
    for variant in (spec.variants or {}).values():
        variant.config = _resolve(variant.config, base) if variant.config else spec.config
    check_spec(spec, source)
    return spec


def load_sweep(path: str | Path) -> SweepSpec:
    """Read and validate a sweep file; its name defaults to the file's stem."""
    path = Path(path)
    doc = read_yaml_mapping(path, what="sweep", error=SweepError)  # bounded size and aliases, one-line errors
    return spec_from_dict(doc, source=str(path), name=path.stem)


def _config_or_error(config_path: str, sets: Mapping[str, Any], source: str, what: str) -> TrainConfig:
    """The training config ``config_path`` with dotted ``sets``, or a one-line :class:`SweepError`."""
    try:
        return load_config(config_path, dict(sets))
    except ConfigError as exc:
        raise SweepError(f"{source}: {what}: {str(exc).removeprefix('--set: ')}") from None


def check_spec(spec: SweepSpec, source: str = "sweep") -> None:
    """Every axis value, alone, on top of the base (and each variant): a valid training config."""
    setups = {None: (spec.config, {})} if spec.variants is None else {k: (v.config, v.set) for k, v in spec.variants.items()}
    for variant, (config_path, variant_sets) in setups.items():
        where = f"variants.{variant}" if variant is not None else "set"
        base_sets = {**spec.set, **variant_sets}
        config = _config_or_error(config_path, base_sets, source, where)
        for name, axis in spec.axis_domains().items():
            label = f"axes.{name}" if name in spec.axes else {"seed": "seeds", "scenario": "scenarios"}.get(name, name)
            if name == VARIANT_AXIS:
                continue
            if name == BUDGET_AXIS:
                scenario = load_scenario(config.scenario, config.overrides)
                for b in axis.grid:
                    sets = {**base_sets, **_prefixed(budget_overrides(scenario, b))}
                    _config_or_error(config_path, sets, source, f"budgets ({b:g})")
                continue
            for value in axis.probes():
                _config_or_error(config_path, {**base_sets, name: value}, source, f"{label} ({value!r})")
        if spec.early_stopping is not None:
            if spec.early_stopping.grace_steps >= config.total_timesteps:
                raise SweepError(f"{source}: early_stopping.grace_steps ({spec.early_stopping.grace_steps}) must be below total_timesteps ({config.total_timesteps})")
            if config.eval_freq >= config.total_timesteps:
                raise SweepError(f"{source}: early_stopping needs evaluations during training: eval_freq ({config.eval_freq}) must be below total_timesteps ({config.total_timesteps})")


# --------------------------------------------------------------------------- trial configs


def budget_overrides(scenario: Scenario, total: float, per_quarter: float | None = None, mode: str | None = None) -> dict[str, Any]:
    """Scenario overrides giving ``scenario`` the total budget ``total`` ($B over the horizon).

    The per-quarter cap scales with the total, keeping the scenario's ratio ``per_quarter /
    total``, unless a fixed ``per_quarter`` ($B) is given; ``mode`` (``hard`` / ``soft``) is set
    only if given.
    """
    if per_quarter is None:
        per_quarter = total * scenario.budget.per_quarter / scenario.budget.total
    overrides: dict[str, Any] = {"budget.total": float(total), "budget.per_quarter": float(per_quarter)}
    if mode is not None:
        overrides["budget.mode"] = mode
    return overrides


def _prefixed(overrides: Mapping[str, Any]) -> dict[str, Any]:
    return {f"overrides.{k}": v for k, v in overrides.items()}


def trial_config(spec: SweepSpec, params: Mapping[str, Any]) -> TrainConfig:
    """The training config of one trial: base (or variant), fixed sets, then the axis values."""
    params = dict(params)
    variant = spec.variants[params.pop(VARIANT_AXIS)] if spec.variants is not None else Variant(config=spec.config)
    budget = params.pop(BUDGET_AXIS, None)
    config_path = variant.config or spec.config
    sets = {**spec.set, **variant.set, **params}
    config = _config_or_error(config_path, sets, spec.name, "trial")
    if budget is not None:
        scenario = load_scenario(config.scenario, config.overrides)
        config = _config_or_error(config_path, {**sets, **_prefixed(budget_overrides(scenario, budget))}, spec.name, "trial")
    return config


def _short(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.3g}"
    if isinstance(value, (list, tuple)):
        return "x".join(_short(v) for v in value)
    return str(value)


def trial_label(params: Mapping[str, Any]) -> str:
    """A readable, file-safe label of a trial's axis values (``budget=2__seed=0``)."""
    parts = [f"{key.rsplit('.', 1)[-1]}={_short(value)}" for key, value in params.items()]
    label = re.sub(r"[^A-Za-z0-9._=-]+", "-", "__".join(parts))
    return label[:80] or "trial"


# --------------------------------------------------------------------------- baselines


def _scenario_key(scenario: Scenario) -> str:
    text = json.dumps(scenario.model_dump(mode="json"), sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def best_static_figures(scenario: Scenario, seeds: Sequence[int], baseline: Baseline, cache_dir: Path) -> dict:
    """``best_static`` on ``seeds``: its mean GMV and objective ($B per episode, keys
    ``gmv_mean`` and ``objective_mean``), its plan searched once per scenario (on training seeds;
    in soft mode on the scenario scaled to the limit) and cached."""
    reference = scaled_to_limit(scenario)
    path = Path(cache_dir) / f"best_static_{_scenario_key(reference)}.json"
    try:
        intensity = np.asarray(json.loads(path.read_text())["intensity"])
    except (FileNotFoundError, json.JSONDecodeError, KeyError):
        plan = best_static(reference, iterations=baseline.iterations, n_seeds=baseline.seeds)
        intensity = plan.intensity
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_json(path, {"scenario": reference.name, "iterations": baseline.iterations, "seeds": baseline.seeds,
                                 "intensity": intensity.tolist(), "train_value_mean": plan.value_mean})
    figures = measure(ConstantPolicy(intensity, name="best_static"), reference, list(seeds))
    return {"gmv_mean": float(figures["gmv_mean"]), "objective_mean": float(figures["objective_mean"])}


# --------------------------------------------------------------------------- one trial (a Ray worker)


def _trial_prefix(trial_id: str) -> str:
    """``0003`` for Ray's grid and random trials (``<run>_00003``); a searcher's trials (Optuna)
    have random ids, kept as they are."""
    index = re.search(r"_(\d+)$", trial_id)
    return f"{int(index.group(1)):04d}" if index else trial_id


def run_trial(params: dict, spec: SweepSpec, sweep_dir: str) -> None:
    """Ray Tune's trainable: train one trial into its run folder, reporting every evaluation.

    A finished run folder is read, an unfinished one with a checkpoint continued (a restored
    sweep), otherwise a new one is created.
    """
    from ray import tune

    sweep_dir = Path(sweep_dir)
    context = tune.get_context()
    run_dir = sweep_dir / TRIALS_DIR / f"{_trial_prefix(str(context.get_trial_id()))}__{trial_label(params)}"
    # a restored sweep continues a trial's run with the config it began with (as train.py --resume), not today's YAML
    config = runs.read_run_config(run_dir) if run_dir.exists() else trial_config(spec, params)
    scenario = load_scenario(config.scenario, config.overrides)
    baseline = None
    if spec.baseline is not None:
        baseline = best_static_figures(scenario, eval_seeds(config.eval_episodes), spec.baseline, sweep_dir / BASELINES_DIR)

    def metrics(timesteps: int, gmv_mean: float, objective_mean: float, train_seconds: float, **extra) -> dict:
        gmv_ratio = float(gmv_mean / baseline["gmv_mean"]) if baseline else None
        objective_ratio = float(objective_mean / baseline["objective_mean"]) if baseline else None
        return {"timesteps": int(timesteps), "train_seconds": round(float(train_seconds), 3),
                "eval/gmv_mean": float(gmv_mean), "eval/ratio_to_best_static": gmv_ratio,
                "eval/objective_mean": float(objective_mean), "eval/objective_ratio_to_best_static": objective_ratio,
                "best_static_gmv": baseline["gmv_mean"] if baseline else None,
                "best_static_objective": baseline["objective_mean"] if baseline else None,
                "run_dir": str(run_dir.relative_to(sweep_dir)), **extra}

    summary_path = run_dir / runs.SUMMARY_FILE
    if runs.is_finished(run_dir):
        s = json.loads(summary_path.read_text())
    else:
        def report(timesteps: int, figures: dict, train_seconds: float) -> None:
            if timesteps < config.total_timesteps:  # the final evaluation is reported below, with the summary
                tune.report(metrics(timesteps, figures["gmv_mean"], figures["objective_mean"], train_seconds, done=False, finished=False))
            else:
                final_train_seconds[0] = train_seconds

        final_train_seconds = [None]

        resume = run_dir.exists()  # a restored sweep: continue the trial's run (from step 0 if it has no checkpoint)
        lock = runs.open_for_resume(run_dir)[1] if resume else runs.create_run_dir(run_dir, config)
        with lock:
            result = lazy.training().train(config, run_dir, resume=resume, progress="none", on_evaluation=report)
        if result.interrupted:
            raise RuntimeError(f"trial {run_dir.name} was stopped by signal {result.signal}; resume the sweep to continue it")
        s = dict(result.summary, train_seconds=final_train_seconds[0])
    final = metrics(s["timesteps"], s["eval_gmv_mean"], s["eval_objective_mean"], s.get("train_seconds") or s["wall_seconds"], done=True, finished=True,
                    wall_seconds=s["wall_seconds"], fps=s["fps"], eval_cost_mean=s["eval_cost_mean"],
                    eval_final_run_rate_mean=s["eval_final_run_rate_mean"], beats_all_playbooks=s["beats_all_playbooks"])
    tune.report(final)


# --------------------------------------------------------------------------- Ray


@dataclass
class RayInfo:
    address: str
    local: bool
    cpus: float
    start_seconds: float
    version: str


def _check_reachable(address: str, timeout: float = CONNECT_TIMEOUT_S) -> None:
    """A TCP connection to ``HOST:PORT`` within ``timeout`` seconds, else one line.

    Ray itself retries an unreachable address for minutes; this answers in seconds.
    """
    host, sep, port = address.rpartition(":")
    if address.startswith("ray://"):
        host, _, port = address[len("ray://"):].rpartition(":")
    if not sep or not host or not port.isdigit():
        raise SweepError(f"--address {address!r}: give 'auto' or HOST:PORT (the head node's GCS port, 6379 by default)")
    try:
        with socket.create_connection((host, int(port)), timeout=timeout):
            pass
    except OSError as exc:
        reason = "timed out" if isinstance(exc, socket.timeout) else (exc.strerror or str(exc))
        raise SweepError(f"--address {address}: no Ray head node answers there ({reason} within {timeout:g}s); start one with 'ray start --head' or fix the address") from None


def connect(address: str | None = None, cpus: int | None = None, log: Callable[[str], None] = lambda m: None) -> RayInfo:
    """Start a local Ray (``address`` None) or join a cluster; reuse Ray if already initialised.

    :param cpus: CPUs of a local Ray (default: the machine's cores).
    :raises SweepError: the address is malformed or nothing answers there.
    """
    t0 = time.perf_counter()  # Ray's start: its import and ray.init
    import ray

    env_vars = {"RAY_CHDIR_TO_TRIAL_DIR": "0", "FLYWHEEL_TORCH_THREADS": os.environ.get("FLYWHEEL_TORCH_THREADS", "1"),
                "OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1", "FLYWHEEL_ENV_THREADS": "1"}
    os.environ.update({"RAY_CHDIR_TO_TRIAL_DIR": "0", "RAY_AIR_NEW_OUTPUT": "0"})
    if address is not None and address != "auto":
        _check_reachable(address)
    if not ray.is_initialized():
        kwargs = dict(include_dashboard=False, log_to_driver=False, logging_level="warning", configure_logging=True,
                      runtime_env={"env_vars": env_vars})
        try:
            if address is None:
                # Ray nices its workers by 15 to keep its own processes responsive; here the
                # workers are the job, and on a shared machine niceness 19 starves them.
                os.environ.setdefault("RAY_worker_niceness", "0")
                ray.init(num_cpus=cpus or os.cpu_count() or 1, **kwargs)
            else:
                ray.init(address=address, **kwargs)
        except ConnectionError as exc:
            raise SweepError(f"--address {address}: {str(exc).splitlines()[0]}") from None
    context = ray.get_runtime_context()
    resources = ray.cluster_resources()
    info = RayInfo(address=getattr(context, "gcs_address", None) or str(address or "local"), local=address is None,
                   cpus=float(resources.get("CPU", 0)), start_seconds=time.perf_counter() - t0, version=ray.__version__)
    log(f"Ray {info.version} {'started locally' if info.local else 'connected at ' + info.address}: {info.cpus:g} CPUs in {info.start_seconds:.1f}s")
    return info


def param_space(spec: SweepSpec) -> dict[str, Any]:
    """Ray Tune's ``param_space``: one entry per axis (grid_search, choice, uniform, loguniform)."""
    from ray import tune

    space = {}
    for name, axis in spec.axis_domains().items():
        if axis.kind == "grid":
            space[name] = tune.grid_search(list(axis.grid))
        elif axis.kind == "choice":
            space[name] = tune.choice(list(axis.choice))
        elif axis.kind == "uniform":
            space[name] = tune.uniform(*axis.uniform)
        else:
            space[name] = tune.loguniform(*axis.loguniform)
    return space


# --------------------------------------------------------------------------- running a sweep


@dataclass
class SweepResult:
    """A finished (or stopped) sweep: one row per trial (see :func:`result_rows`)."""

    sweep_dir: Path
    rows: list[dict]
    wall_seconds: float
    ray: RayInfo
    metric: str = "eval/gmv_mean"
    mode: str = "max"
    resumed: bool = False
    paths: dict[str, Path] = field(default_factory=dict)
    expected: int = 0
    """trials the sweep asks for (``num_samples`` times the grid)"""
    signum: int | None = None
    """the signal that stopped an interrupted sweep (SIGINT, or SIGTERM)"""

    @property
    def interrupted(self) -> bool:
        """Some trials never ran or never ended (Ctrl-C): ``resume=True`` continues them."""
        return len(self.rows) < self.expected or any(r["status"] == "unfinished" for r in self.rows)

    @property
    def best(self) -> dict | None:
        return best_row(self.rows, self.metric, self.mode)


def default_sweep_dir(spec: SweepSpec, storage: str | Path | None = None) -> Path:
    """``<storage>/<name>`` (storage default ``runs/sweeps``), absolute."""
    return (Path(storage) if storage is not None else SWEEPS_DIR).expanduser().resolve() / spec.name


def check_storage(storage: str | Path | None) -> None:
    """``--storage``: an existing folder this process can write in, or a new one (made with the
    sweep folder) whose parent folder exists, as for other explicit output paths. Checked before
    Ray starts; nothing is created. ``None`` (the default ``runs/sweeps``, made as needed) passes.

    :raises SweepError: a file or other non-folder, a missing parent, a folder that refuses writes.
    """
    if storage is None:
        return
    path = Path(storage).expanduser()
    what = f"--storage {storage}"
    try:
        check_name(path, what)
        check_folder_writable(path if os.path.lexists(path) else path.parent, what)
    except OutputError as exc:
        raise SweepError(str(exc)) from None


def check_sweep_dir(spec: SweepSpec, sweep_dir: Path, resume: bool) -> None:
    """A new sweep needs a new folder; a resumed one its own folder, started from the same file."""
    stored = sweep_dir / SWEEP_FILE
    if not resume:
        if sweep_dir.exists():
            raise SweepError(f"sweep folder {sweep_dir} already exists; continue it with --resume or choose another --storage or name")
        return
    if not stored.is_file():
        raise SweepError(f"--resume: {sweep_dir} is not a sweep folder (no {SWEEP_FILE}); start it without --resume")
    differs = settings_difference(spec, sweep_dir)
    if differs is not None:
        raise SweepError(f"--resume: {sweep_dir} was started with {differs} asked now ({stored}); use the same settings or start a new sweep")


def settings_difference(spec: SweepSpec, sweep_dir: Path) -> str | None:
    """How the sweep stored in ``sweep_dir`` differs from ``spec`` (``key=started, not asked``:
    the first difference), or ``None``; only how many trials run at once may change."""
    stored = yaml.safe_load((Path(sweep_dir) / SWEEP_FILE).read_text())
    return _first_difference(_comparable(stored), _comparable(spec_document(spec)))


def spec_document(spec: SweepSpec) -> dict:
    return spec.model_dump(mode="json")


def _first_difference(started: Any, asked: Any, prefix: str = "") -> str | None:
    """``key=started, not asked`` for the first key where two documents differ, or ``None``."""
    if isinstance(started, dict) and isinstance(asked, dict):
        for key in sorted(set(started) | set(asked)):
            found = _first_difference(started.get(key), asked.get(key), f"{prefix}{key}.")
            if found:
                return found
        return None
    return None if started == asked else f"{prefix.rstrip('.')}={started!r}, not {asked!r}"


def _comparable(doc: Mapping) -> dict:
    """What must not change when a sweep resumes (how many trials run at once may)."""
    return {k: v for k, v in dict(doc or {}).items() if k != "max_concurrent"}


def _ended(trials, trial) -> int:
    """Trials that have ended, this one included (its status may not be updated yet)."""
    return sum(t.status in ("TERMINATED", "ERROR") for t in trials if t is not trial) + 1


def _progress_callback(log: Callable[[str], None], total: int, metric: str):
    """A Ray Tune callback logging one line per ended trial."""
    from ray.tune import Callback

    class Progress(Callback):
        def on_trial_complete(self, iteration, trials, trial, **info):
            value = (trial.last_result or {}).get(metric)
            shown = f"{value:.4g}" if isinstance(value, float) else "n/a"
            log(f"trial done ({_ended(trials, trial)} of {total}): {metric} {shown} ({trial_label(trial.config)})")

        def on_trial_error(self, iteration, trials, trial, **info):
            log(f"trial FAILED ({_ended(trials, trial)} of {total}): {trial_label(trial.config)}; see {trial.path}")

    return Progress()


def run_sweep(
    spec: SweepSpec,
    sweep_dir: str | Path | None = None,
    *,
    resume: bool = False,
    address: str | None = None,
    cpus: int | None = None,
    log: Callable[[str], None] = lambda message: None,
) -> SweepResult:
    """Run (or, with ``resume``, continue) a sweep and write its results into ``sweep_dir``.

    :param sweep_dir: the sweep folder (default :func:`default_sweep_dir`).
    :param address: ``None`` for a local Ray, ``auto`` or ``HOST:PORT`` for a cluster.
    :param cpus: CPUs of a local Ray (default: the cores).
    :raises SweepError: bad folder, unreachable cluster (one line).
    :raises SweepInterrupted: a signal before Ray Tune ran (while Ray started); a signal while it
        ran returns an interrupted result instead (``result.signum``).
    """
    sweep_dir = Path(sweep_dir).resolve() if sweep_dir is not None else default_sweep_dir(spec)
    check_sweep_dir(spec, sweep_dir, resume)
    with _SigtermAsCtrlC() as sigterm:
        try:
            info = connect(address, cpus, log=log)
        except SystemExit as exc:  # SIGTERM while Ray started: ray.init's own handler calls sys.exit(SIGTERM)
            if exc.code != signal.SIGTERM:
                raise
            raise SweepInterrupted(signal.SIGTERM) from None
        sigterm.install()  # again: Ray's driver replaces the SIGTERM handler (it aborts the process)
        result = _run_tuner(spec, sweep_dir, resume, info, log)
    result.signum = sigterm.signum or (signal.SIGINT if result.interrupted else None)
    return result


class _SigtermAsCtrlC:
    """While a sweep runs, SIGTERM does what Ctrl-C does: during ``Tuner.fit`` Ray Tune's SIGINT
    handler saves the experiment and returns; elsewhere :class:`SweepInterrupted` is raised.

    Without it Ray's driver aborts on SIGTERM (exit 134, a stack dump, the state not saved last).
    """

    def __init__(self):
        self.signum: int | None = None
        self._previous = None

    def install(self) -> None:
        if threading.current_thread() is threading.main_thread():
            previous = signal.signal(signal.SIGTERM, self._handle)
            self._previous = previous if self._previous is None else self._previous

    def _handle(self, signum, frame) -> None:
        self.signum = signum
        handler = signal.getsignal(signal.SIGINT)
        if callable(handler) and handler is not signal.default_int_handler:
            handler(signal.SIGINT, frame)  # Ray Tune's: stop the trials, save, return from fit
        else:
            raise SweepInterrupted(signum)

    def __enter__(self) -> "_SigtermAsCtrlC":
        self.install()
        return self

    def __exit__(self, *exc) -> None:
        if self._previous is not None:
            signal.signal(signal.SIGTERM, self._previous)


def _run_tuner(spec: SweepSpec, sweep_dir: Path, resume: bool, info: RayInfo, log: Callable[[str], None]) -> SweepResult:
    from ray import tune
    from ray.tune.schedulers import ASHAScheduler

    t0 = time.perf_counter()
    if not resume:
        try:  # the folder appears with its sweep.yaml or not at all (an interrupt leaves no half-made folder)
            with new_folder(sweep_dir, f"sweep folder {sweep_dir}") as tmp:
                atomic_write_text(tmp / SWEEP_FILE, yaml.safe_dump(spec_document(spec), sort_keys=False))
        except OutputError as exc:
            raise SweepError(str(exc)) from None
    trainable = tune.with_resources(tune.with_parameters(run_trial, spec=spec, sweep_dir=str(sweep_dir)), {"cpu": 1})
    tune_path = sweep_dir / TUNE_DIR
    run_config = tune.RunConfig(name=TUNE_DIR, storage_path=str(sweep_dir), verbose=0,
                                callbacks=[_progress_callback(log, spec.n_trials, spec.metric)],
                                failure_config=tune.FailureConfig(max_failures=0),
                                stop={"train_seconds": spec.max_train_seconds} if spec.max_train_seconds else None)
    if resume and tune.Tuner.can_restore(str(tune_path)):
        tuner = tune.Tuner.restore(str(tune_path), trainable=trainable, resume_unfinished=True, resume_errored=True)
        log(f"resuming {sweep_dir}")
    else:
        search_alg = None
        if spec.search == "optuna":
            from ray.tune.search.optuna import OptunaSearch

            search_alg = OptunaSearch(seed=0)
        scheduler = None
        if spec.early_stopping is not None:
            scheduler = ASHAScheduler(time_attr="timesteps", max_t=max_timesteps(spec), grace_period=spec.early_stopping.grace_steps,
                                      reduction_factor=spec.early_stopping.reduction_factor)
        max_concurrent = spec.max_concurrent or max(1, int(info.cpus))
        tuner = tune.Tuner(
            trainable,
            param_space=param_space(spec),
            tune_config=tune.TuneConfig(metric=spec.metric, mode=spec.mode, num_samples=spec.num_samples,
                                        max_concurrent_trials=max_concurrent, search_alg=search_alg, scheduler=scheduler,
                                        reuse_actors=True),  # a trial process imports torch once, not per trial
            run_config=run_config,
        )
        log(f"sweep '{spec.name}': {spec.n_trials} trials, up to {max_concurrent} at a time, into {sweep_dir}")
    grid = tuner.fit()
    rows = result_rows(grid, spec, sweep_dir)
    wall = time.perf_counter() - t0
    result = SweepResult(sweep_dir, rows, wall, info, metric=spec.metric, mode=spec.mode, resumed=resume, expected=spec.n_trials)
    result.paths = write_results(result, spec)
    return result


def max_timesteps(spec: SweepSpec) -> int:
    """The largest ``total_timesteps`` any trial can have (ASHA's ``max_t``)."""
    values = [trial_config(spec, {}).total_timesteps] if "total_timesteps" not in spec.axes else \
        [int(v) for v in spec.axes["total_timesteps"].probes()]
    return max(values)


# --------------------------------------------------------------------------- results


def _trial_configs(grid) -> dict[str, dict]:
    """Each trial's config by trial id, from the experiment behind a ResultGrid.

    A trial that never reported (Ctrl-C while it imported or searched its baseline) has a
    Result without metrics, hence without a config (``Result.config`` is read from the
    metrics); its config is still in the experiment's trials (``get_all_configs``). A grid
    without them (a plain list of results) gives ``{}``.
    """
    analysis = getattr(grid, "_experiment_analysis", None)
    return dict(analysis.get_all_configs()) if analysis is not None and hasattr(analysis, "get_all_configs") else {}


def result_rows(grid, spec: SweepSpec, sweep_dir: Path) -> list[dict]:
    """One row per trial: status, its axis values, its last metrics, its run folder.

    A trial that has not reported yet (interrupted before its first evaluation), or that reported
    and was then interrupted (Ray has not ended it), is a row too: ``unfinished``, its axis values
    if Ray still knows its config, its last metrics if any.
    """
    axes = list(spec.axis_domains())
    configs = _trial_configs(grid)
    rows = []
    for result in grid:
        m = dict(result.metrics or {})
        trial_id = m.get("trial_id")
        config = result.config or configs.get(trial_id) or {}
        if result.error is not None:
            status = "error"
        elif m.get("finished", m.get("done")):  # the trial's own last report (results of sweeps before "finished": Ray's done)
            status = "finished"
        elif "timesteps" in m and m.get("done"):
            status = "stopped early"  # Ray ended it after a report: ASHA or max_train_seconds (Ray sets done on its last result)
        else:
            status = "unfinished"  # never reported, or reported and then interrupted
        row = {"trial": trial_id or Path(result.path).name, "status": status}
        row.update({name: config.get(name) for name in axes})
        for key in ("timesteps", "train_seconds", "wall_seconds", "fps", *METRICS, "best_static_gmv", "best_static_objective", "eval_cost_mean",
                    "eval_final_run_rate_mean", "beats_all_playbooks", "run_dir"):
            row[key] = m.get(key)
        if result.error is not None:
            row["error"] = str(result.error).strip().splitlines()[-1][:300] if str(result.error).strip() else type(result.error).__name__
        rows.append(row)
    rows.sort(key=lambda r: r["run_dir"] or r["trial"])
    return rows


def best_row(rows: Sequence[dict], metric: str, mode: str) -> dict | None:
    scored = [r for r in rows if isinstance(r.get(metric), (int, float)) and math.isfinite(r[metric])]
    if not scored:
        return None
    return (max if mode == "max" else min)(scored, key=lambda r: r[metric])


def _cell(value: Any) -> Any:
    if isinstance(value, float):
        return round(value, 6)
    if isinstance(value, (list, tuple, dict)):
        return json.dumps(value)
    return "" if value is None else value


def results_csv(rows: Sequence[dict]) -> str:
    fields: list[str] = []
    for row in rows:
        fields += [k for k in row if k not in fields]
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=fields, lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: _cell(row.get(k)) for k in fields})
    return buffer.getvalue()


def plot_results(rows: Sequence[dict], spec: SweepSpec, path: Path) -> None:
    """The sweep's metric against each axis, one panel per axis, the best trial ringed."""
    import matplotlib
    import matplotlib.ticker

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    axes_names = list(spec.axis_domains()) or ["trial"]
    scored = [r for r in rows if isinstance(r.get(spec.metric), (int, float))]
    best = best_row(rows, spec.metric, spec.mode)
    cols = min(3, len(axes_names))
    nrows = math.ceil(len(axes_names) / cols)
    fig, panels = plt.subplots(nrows, cols, figsize=(max(6.0, 4.2 * cols), 3.6 * nrows), squeeze=False)
    for k, name in enumerate(axes_names):
        ax = panels[k // cols][k % cols]
        values = [r.get(name, r["trial"]) for r in scored]
        numeric = all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values)
        labels = sorted({_short(v) for v in values}) if not numeric else None
        xs = values if numeric else [labels.index(_short(v)) for v in values]
        ys = [r[spec.metric] for r in scored]
        ax.scatter(xs, ys, s=22, alpha=0.8)
        if best is not None and best in scored:
            i = scored.index(best)
            ax.scatter([xs[i]], [ys[i]], s=120, facecolors="none", edgecolors="red", label="best")
        if not numeric:
            ax.set_xticks(range(len(labels)), labels, rotation=30, fontsize=8)
        elif spec.axis_domains().get(name) is not None and spec.axis_domains()[name].kind == "loguniform":
            ax.set_xscale("log")
            ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())  # minor labels overlap on a short range
        ax.set_xlabel(name)
        ax.set_ylabel(spec.metric)
        ax.grid(alpha=0.3)
    for k in range(len(axes_names), nrows * cols):
        panels[k // cols][k % cols].axis("off")
    fig.suptitle(f"sweep '{spec.name}': {len(scored)} trials ({spec.metric}, held-out seeds)", fontsize=10)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=110)
    plt.close(fig)


def report_markdown(result: SweepResult, spec: SweepSpec) -> str:
    rows = result.rows
    axes = list(spec.axis_domains())
    finished = [r for r in rows if r["status"] == "finished"]
    best = result.best
    ordered = sorted(rows, key=lambda r: (r.get(spec.metric) is None, -(r.get(spec.metric) or 0) if spec.mode == "max" else (r.get(spec.metric) or 0)))
    lines = [f"# Sweep `{spec.name}`", ""]
    hours = result.wall_seconds / 3600
    lines.append(f"{len(rows)} trials ({len(finished)} finished) in {result.wall_seconds:.0f} s on Ray {result.ray.version} "
                 f"({'local' if result.ray.local else result.ray.address}, {result.ray.cpus:g} CPUs; Ray started in {result.ray.start_seconds:.1f} s)"
                 + (f": {len(finished) / hours:.0f} trials per hour." if finished and hours > 0 else "."))
    lines += ["", f"Base config `{Path(spec.config).name}`; metric `{spec.metric}` ({spec.mode}), on held-out evaluation seeds; "
              f"`eval/ratio_to_best_static` divides a trial's GMV, `eval/objective_ratio_to_best_static` its objective "
              f"(the reward: objective plus terminal value), by the best constant allocation's on the same seeds.", ""]
    cols = ["status", *axes, "eval/gmv_mean", "eval/ratio_to_best_static", "eval/objective_mean", "eval/objective_ratio_to_best_static",
            "timesteps", "train_seconds", "run_dir"]
    lines.append("| " + " | ".join(cols) + " |")
    lines.append("|" + "---|" * len(cols))
    for r in ordered:
        cells = []
        for c in cols:
            v = r.get(c)
            cells.append(f"{v:.4g}" if isinstance(v, float) else ("" if v is None else f"`{v}`" if c == "run_dir" else _short(v)))
        lines.append("| " + " | ".join(cells) + " |")
    if best is not None:
        lines += ["", f"Best: {', '.join(f'{k} = {_short(best.get(k))}' for k in axes) or 'the only setup'}: "
                  f"{spec.metric} {best[spec.metric]:.4g} (run folder `{best['run_dir']}`)."]
    failed = [r for r in rows if r["status"] == "error"]
    if failed:
        lines += ["", f"{len(failed)} trials failed: " + "; ".join(f"{r['trial']}: {r.get('error', '')}" for r in failed)]
    lines += ["", f"![{spec.metric} against each axis]({RESULTS_PNG})", ""]
    return "\n".join(lines)


def write_results(result: SweepResult, spec: SweepSpec) -> dict[str, Path]:
    """``results.csv``, ``results.json``, ``results.png`` and ``report.md`` (atomically)."""
    out = result.sweep_dir
    paths = {"csv": out / RESULTS_CSV, "json": out / RESULTS_JSON, "png": out / RESULTS_PNG, "report": out / REPORT_MD}
    finished = sum(r["status"] == "finished" for r in result.rows)
    doc = {
        "name": spec.name,
        "metric": spec.metric,
        "mode": spec.mode,
        "axes": list(spec.axis_domains()),
        "trials": len(result.rows),
        "finished": finished,
        "wall_seconds": round(result.wall_seconds, 1),
        "trials_per_hour": round(finished / (result.wall_seconds / 3600), 1) if result.wall_seconds > 0 else None,
        "ray": {"version": result.ray.version, "local": result.ray.local, "address": result.ray.address, "cpus": result.ray.cpus,
                "start_seconds": round(result.ray.start_seconds, 2)},
        "resumed": result.resumed,
        "best": result.best,
        "rows": result.rows,
    }
    atomic_write_text(paths["csv"], results_csv(result.rows))
    atomic_write_json(paths["json"], doc)
    if any(isinstance(r.get(spec.metric), (int, float)) for r in result.rows):
        plot_results(result.rows, spec, paths["png"])
    atomic_write_text(paths["report"], report_markdown(result, spec))
    return paths


def copy_spec(spec: SweepSpec, **changes) -> SweepSpec:
    """A validated copy of ``spec`` with some fields changed (e.g. ``name``, ``set``)."""
    doc = copy.deepcopy(spec_document(spec))
    doc.update(changes)
    return spec_from_dict(doc, source=spec.name)
