"""Training configs: typed, validated, loaded from YAML like scenarios.

A training config is data (``configs/train/*.yaml``)::

    cfg = load_config("configs/train/ppo.yaml", sets=["ppo.learning_rate=1e-4", "overrides.budget.mode=soft"])

The YAML files are the defaults: the models below define names, types and ranges only, so
a number lives in exactly one place. A config gives every key, usually by starting from a
shipped one: ``extends: ppo`` (a built-in name) or ``extends: ../ppo.yaml`` (a path relative
to the extending file's folder), then only what differs (mappings merge key by key). Keys:

* ``scenario``: a built-in scenario name or a path to a scenario YAML; ``overrides``: dotted
  scenario overrides (``{"budget.mode": "soft"}``), the same keys the env's ``overrides`` take.
  ``scenario_ensemble``: train across parameter sets (:mod:`envs.ensemble`), each market drawing
  one at every reset; ``null``: the nominal scenario. Periodic evaluation stays nominal.
* ``algo``: a name from :data:`ALGORITHMS` (``ppo``, ``ppo_lagrangian``). ``algo_params``: the
  algorithm's own section, validated by that algorithm's schema (``PPO`` has none;
  ``ppo_lagrangian``: :class:`LagrangianParams`).
* ``total_timesteps``, ``n_envs``, ``seed``; ``ppo``: stable-baselines3 ``PPO`` keyword
  arguments; ``vecnormalize``: ``VecNormalize`` settings; ``checkpoint_freq`` and ``eval_freq``
  (in env steps, summed over the parallel envs, like ``total_timesteps``); ``eval_episodes``.

``--set key=value`` overrides use dotted paths into this schema (``ppo.n_steps=24``) and are
validated exactly like the file; ``overrides.<scenario.path>=value`` sets a scenario override.
Every user mistake raises :class:`ConfigError`, a ``ValueError`` whose one-line message names
the file, the field, the value and what is allowed; :func:`load_config` also refuses a config
whose rollout buffer would not fit in the machine's available memory.

Seeds: training market ``i`` is seeded with ``seed + i``; evaluation episode ``k`` with
:data:`EVAL_SEED_BASE` ``+ k``, a range training never touches.

Plugging in an algorithm: add ``name: "module"`` to :data:`ALGORITHMS`; the module exposes
``ALGORITHM``, an object with the interface of :class:`agents.ppo.PPOAlgorithm` (a subclass of
it, usually) whose ``params_model`` (a pydantic model or ``None``) validates ``algo_params``.
"""

from __future__ import annotations

import copy
import importlib
from pathlib import Path
from typing import Any, Iterable, Literal, Mapping

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from envs.config_files import (Float, Int, apply_overrides, format_validation_error, load_document, parse_set_pairs, read_yaml_mapping,
                               resolve_reference)
from agents.policies import PLAYBOOKS
from envs.ensemble import EnsembleError, load_ensemble
from envs.scenario import SCENARIO_DIR, Scenario, ScenarioError, load_scenario

CONFIG_DIR = Path(__file__).resolve().parent.parent / "configs" / "train"
DEFAULT_CONFIG = CONFIG_DIR / "ppo.yaml"

#: Evaluation episode k is seeded with EVAL_SEED_BASE + k; training seeds stay below it.
EVAL_SEED_BASE = 10_000_000

#: Algorithm name -> module that defines ``ALGORITHM`` (imported on first use).
ALGORITHMS: dict[str, str] = {
    "ppo": "agents.ppo",
    "ppo_lagrangian": "agents.lagrangian",
}


class ConfigError(ValueError):
    """A training config (file, ``--set`` override or CLI value) is invalid. One line."""


class _Strict(BaseModel):
    """Every key required: the defaults are the shipped YAML files, never the models."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)


class PolicyKwargs(_Strict):
    """``policy_kwargs`` of SB3's ``MlpPolicy``."""

    net_arch: list[Int] = Field(min_length=1, max_length=8, description="hidden layer widths")
    activation_fn: Literal["tanh", "relu", "elu"]
    log_std_init: Float = Field(ge=-5, le=2)
    ortho_init: bool

    @model_validator(mode="after")
    def _widths(self) -> "PolicyKwargs":
        if any(w < 1 or w > 4096 for w in self.net_arch):
            raise ValueError("net_arch widths must be between 1 and 4096")
        return self


class PPOParams(_Strict):
    """Keyword arguments of ``stable_baselines3.PPO`` (same names, same meaning)."""

    learning_rate: Float = Field(gt=0, le=1)
    n_steps: Int = Field(ge=1, le=100_000, description="steps per env per rollout")
    batch_size: Int = Field(ge=2, le=1_000_000)
    n_epochs: Int = Field(ge=1, le=100)
    gamma: Float = Field(ge=0, le=1)
    gae_lambda: Float = Field(ge=0, le=1)
    clip_range: Float = Field(gt=0, le=1)
    ent_coef: Float = Field(ge=0, le=1)
    vf_coef: Float = Field(ge=0, le=10)
    max_grad_norm: Float = Field(gt=0, le=100)
    target_kl: Float | None = Field(gt=0, le=10, description="null: no early stop on KL")
    use_sde: bool
    policy_kwargs: PolicyKwargs


class VecNormalizeParams(_Strict):
    """``stable_baselines3.common.vec_env.VecNormalize`` settings."""

    norm_obs: bool
    norm_reward: bool
    gamma: Float = Field(ge=0, le=1, description="discount of the return used to scale rewards")
    clip_obs: Float = Field(gt=0, le=1000)
    clip_reward: Float = Field(gt=0, le=1000)


class LagrangianParams(_Strict):
    """``algo_params`` of ``ppo_lagrangian`` (values: ``configs/train/ppo_lagrangian.yaml``)."""

    update: Literal["pid", "gradient"] = Field(description="multiplier update rule")
    cost_limit: Float | None = Field(gt=0, le=1000, description="episode cost limit in $B (null: the scenario's budget.total)")
    lambda_init: Float = Field(ge=0, description="initial multiplier (GMV-$ per cost-$)")
    lambda_max: Float = Field(gt=0, description="the multiplier is capped here")
    # PID (on the relative violation (J_c - d) / d)
    kp: Float = Field(ge=0, description="proportional gain")
    ki: Float = Field(ge=0, description="integral gain (per rollout)")
    kd: Float = Field(ge=0, description="derivative gain")
    d_delay: Int = Field(ge=1, le=1000, description="rollouts over which the derivative looks back")
    delta_p_ema_alpha: Float = Field(ge=0, lt=1, description="EMA weight of the past for the P term (0: no smoothing)")
    delta_d_ema_alpha: Float = Field(ge=0, lt=1, description="EMA weight of the past for the cost in the D term")
    # gradient
    lr: Float = Field(gt=0, description="gradient-ascent step per rollout (per unit of relative violation)")
    start_at_limit: bool = Field(description="start the policy's mean action at the uniform intensity that spends the limit")
    # what the multiplier compares with the limit (runs made before these keys existed: ADDED_ALGO_PARAMS)
    cost_signal: Literal["sampled", "mean_action"] = Field(
        description="episodes whose cost moves the multiplier: sampled (the training episodes of the rollout) or "
        "mean_action (the current policy's mean action, the policy evaluation plays, on probe_episodes fixed episodes)")
    cost_quantile: Float | None = Field(
        gt=0, lt=1, description="compare this quantile of those episodes' costs with the limit "
        "(0.95: aims to keep at most 5% of them over it); null: their mean (the expected-cost constraint)")
    probe_episodes: Int = Field(ge=1, le=4096, description="episodes of the mean-action probe (cost_signal: mean_action)")

    @model_validator(mode="after")
    def _init_below_cap(self) -> "LagrangianParams":
        if self.lambda_init > self.lambda_max:
            raise ValueError(f"lambda_init {self.lambda_init} is above lambda_max {self.lambda_max}")
        return self


#: Keys added to an algorithm's ``algo_params`` after runs were made with it, with the values
#: that reproduce how those runs trained. Only a saved run's config reads them
#: (:func:`upgrade_run_config`, so that it still resumes as it began); a new config must set
#: every key, the YAML files being the values' only home.
ADDED_ALGO_PARAMS: dict[str, dict[str, Any]] = {
    "ppo_lagrangian": {"cost_signal": "sampled", "cost_quantile": None, "probe_episodes": 64},
}


def upgrade_run_config(doc: Mapping) -> Mapping:
    """A saved run's config document with the ``algo_params`` keys it predates
    (:data:`ADDED_ALGO_PARAMS`) set to the values it trained with; anything else unchanged."""
    added = ADDED_ALGO_PARAMS.get(doc.get("algo")) if isinstance(doc.get("algo"), str) else None
    params = doc.get("algo_params")
    if not added or not isinstance(params, Mapping):
        return doc
    return {**doc, "algo_params": {**added, **params}}


class TrainConfig(_Strict):
    """A complete training config; :meth:`model_dump` of it is the resolved ``config.yaml``."""

    scenario: str = Field(description="built-in scenario name or path to a scenario YAML")
    overrides: dict[str, Any] = Field(description="dotted scenario overrides")
    scenario_ensemble: str | None = Field(description="ensemble file (a name in configs/ensembles or a path): "
                                          "every training market draws a parameter set from it at every reset; null: the nominal scenario")
    algo: str = Field(description="a name from ALGORITHMS")
    algo_params: dict[str, Any] = Field(description="the algorithm's own section, validated by its params_model")
    total_timesteps: Int = Field(ge=1, le=1_000_000_000)
    n_envs: Int = Field(ge=1, le=4096)
    seed: Int = Field(ge=0, lt=EVAL_SEED_BASE)
    start_policy: str | None = Field(description="a playbook whose action is the fresh policy's mean "
                                     "(null: SB3's mean action 0)")
    ppo: PPOParams
    vecnormalize: VecNormalizeParams
    checkpoint_freq: Int = Field(ge=1, description="env steps between checkpoints")
    eval_freq: Int = Field(ge=1, description="env steps between evaluations")
    eval_episodes: Int = Field(ge=1, le=10_000)

    @model_validator(mode="after")
    def _checks(self) -> "TrainConfig":
        if self.algo not in ALGORITHMS:
            raise ValueError(f"algo '{self.algo}' is unknown; allowed: {', '.join(ALGORITHMS)}")
        if self.start_policy is not None and self.start_policy not in PLAYBOOKS:
            raise ValueError(f"start_policy '{self.start_policy}' is unknown; allowed: null, {', '.join(PLAYBOOKS)}")
        if self.seed + self.n_envs > EVAL_SEED_BASE:
            raise ValueError(f"seed + n_envs must stay below {EVAL_SEED_BASE} (evaluation seeds start there)")
        if self.rollout_steps < 2:
            raise ValueError("ppo.n_steps * n_envs must be at least 2")
        return self

    @property
    def rollout_steps(self) -> int:
        """Env steps of one rollout: ``ppo.n_steps`` x ``n_envs``."""
        return self.ppo.n_steps * self.n_envs

    @property
    def scenario_label(self) -> str:
        """The scenario's name for run folders: the built-in name or the file's stem."""
        return Path(self.scenario).stem if self.scenario.endswith((".yaml", ".yml")) else self.scenario

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.model_dump(mode="json"), sort_keys=False)


def get_algorithm(name: str):
    """The ``ALGORITHM`` object of a registered algorithm (imports its module)."""
    if name not in ALGORITHMS:
        raise ConfigError(f"algo '{name}' is unknown; allowed: {', '.join(ALGORITHMS)}")
    try:
        module = importlib.import_module(ALGORITHMS[name])
    except ModuleNotFoundError as exc:
        if exc.name == ALGORITHMS[name]:
            raise ConfigError(f"algo '{name}' is not available (module {ALGORITHMS[name]} is missing)") from None
        raise
    return module.ALGORITHM


# --------------------------------------------------------------------------- loading


def _read_yaml(path: Path) -> dict:
    """A training config file with its ``extends:`` chain resolved (not yet validated)."""
    return load_document(path, builtin_dir=CONFIG_DIR, what="config", error=ConfigError, empty_ok=True)


def whole_rollouts(done: int, total: int, rollout: int) -> int:
    """The env steps PPO will have run when it reaches ``total`` from ``done``: it collects whole
    rollouts of ``rollout`` steps, so it stops at the first multiple at or above ``total``."""
    return done + -(-max(total - done, 0) // rollout) * rollout


def _refuse_a_scenario_file(path: Path) -> None:
    """After a config failed to load: if it is a scenario, say so (its ``extends:`` was looked up
    among the training configs, and the error named the wrong thing)."""
    try:
        head = read_yaml_mapping(path, what="config", error=ConfigError)  # bounded, as every config read
    except ConfigError:
        return  # the config reader's own message says what is wrong
    parent = head.get("extends") if isinstance(head, dict) else None
    from_scenario = isinstance(parent, str) and (SCENARIO_DIR / f"{parent}.yaml").is_file() and not (CONFIG_DIR / f"{parent}.yaml").is_file()
    if isinstance(head, dict) and ("regions" in head or from_scenario):
        raise ConfigError(f"--config {path} is a scenario file, not a training config; a training config names its scenario "
                          f"(--set scenario={path.stem if path.parent.name == 'scenarios' else path})")


def parse_sets(sets: Iterable[str]) -> dict[str, Any]:
    """``["a.b=1", ...]`` -> ``{"a.b": 1}`` (values parsed as YAML)."""
    return parse_set_pairs(sets, example="ppo.learning_rate=1e-4", error=ConfigError)


def apply_sets(resolved: dict, sets: Mapping[str, Any], where: str = "--set") -> dict:
    """Dotted ``sets`` applied to a resolved config dict (a copy); unknown keys are an error.

    ``overrides.<scenario.path>`` adds a scenario override (checked by the scenario);
    ``algo_params.<key>`` may create keys (checked by the algorithm's schema).
    """
    resolved = copy.deepcopy(resolved)
    rest: dict[str, Any] = {}
    for dotted, value in sets.items():
        head, _, tail = str(dotted).partition(".")
        if head == "overrides" and tail:
            if not isinstance(resolved.get("overrides"), dict):
                raise ConfigError(f"{where}: cannot set '{dotted}': overrides is not a section")
            resolved["overrides"][tail] = copy.deepcopy(value)
        else:
            rest[dotted] = value
    return apply_overrides(resolved, rest, where=where, error=ConfigError, open_sections=("algo_params",))


def _validate(doc: Mapping, source: str) -> TrainConfig:
    try:
        return TrainConfig.model_validate(doc)
    except ValidationError as exc:
        message = format_validation_error(exc, source, TrainConfig)
        if all(e["type"] == "missing" for e in exc.errors()):  # reported first only when nothing else is wrong
            message += f" (a training config gives every key; start one with 'extends: {DEFAULT_CONFIG.stem}')"
        raise ConfigError(message) from None


def _scenario(cfg: TrainConfig, source: str) -> Scenario:
    try:
        return load_scenario(cfg.scenario, cfg.overrides)
    except ScenarioError as exc:
        raise ConfigError(f"{source}: scenario: {exc}") from None


def validate_config(cfg: TrainConfig, source: str = "config") -> TrainConfig:
    """Check what the schema alone cannot: the scenario (and its overrides), ``algo_params`` and the
    algorithm's own ``check_config(cfg)`` if it has one (``ppo_lagrangian``: the budget must be soft)."""
    scenario = _scenario(cfg, source)
    if cfg.scenario_ensemble is not None:
        try:
            load_ensemble(cfg.scenario_ensemble).scenarios(scenario)
        except EnsembleError as exc:
            raise ConfigError(f"{source}: scenario_ensemble: {exc}") from None
    algorithm = get_algorithm(cfg.algo)
    params_model = getattr(algorithm, "params_model", None)
    if params_model is None:
        if cfg.algo_params:
            raise ConfigError(f"{source}: algo_params must be empty for algo '{cfg.algo}' (it takes none)")
    else:
        try:
            params_model.model_validate(cfg.algo_params)
        except ValidationError as exc:
            raise ConfigError(format_validation_error(exc, f"{source}: algo_params", params_model)) from None
    check = getattr(algorithm, "check_config", None)  # what the algorithm needs of the whole config
    if check:
        try:
            check(cfg)
        except ValueError as exc:  # ConfigError is a ValueError
            raise ConfigError(f"{source}: {exc}") from None
    return cfg


# --------------------------------------------------------------------------- memory

#: Python, torch, numba and the policy before any buffer (bytes). ASSUMPTION: the resident size
#: of a default training, rounded up.
BASE_MEMORY = 1 << 30
#: Per parallel env beyond the rollout buffer: market state, VecNormalize's and VecMonitor's
#: per-env arrays, the info dicts of a step (bytes). ASSUMPTION, generous.
PER_ENV_MEMORY = 64 << 10
#: Float32 scalars SB3's ``RolloutBuffer`` keeps per step besides observation and action:
#: rewards, returns, episode_starts, values, log_probs, advantages.
BUFFER_SCALARS = 6


def estimate_memory(cfg: TrainConfig, obs_dim: int, action_dim: int) -> dict[str, int]:
    """Bytes a training of ``cfg`` needs at its peak: the rollout buffer (float32, ``n_envs *
    n_steps`` steps of observation, action and :data:`BUFFER_SCALARS`), the flattened copy of the
    observations ``RolloutBuffer.get`` makes, the per-env state and the fixed :data:`BASE_MEMORY`."""
    steps = cfg.n_envs * cfg.ppo.n_steps
    buffer = steps * (obs_dim + action_dim + BUFFER_SCALARS) * 4
    flatten = steps * obs_dim * 4
    total = buffer + flatten + cfg.n_envs * PER_ENV_MEMORY + BASE_MEMORY
    return {"rollout_buffer": buffer, "total": total}


def available_memory() -> int | None:
    """``MemAvailable`` of ``/proc/meminfo`` in bytes (None where there is no such file)."""
    try:
        with open("/proc/meminfo", encoding="ascii") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        return None
    return None


def _gib(n: int) -> str:
    return f"{n / (1 << 30):.1f} GiB"


def check_memory(cfg: TrainConfig, scenario: Scenario, source: str = "config") -> None:
    """Refuse a config whose buffers would not fit in this machine's available memory."""
    params = scenario.to_params()
    need = estimate_memory(cfg, params.obs_dim, params.action_dim)
    have = available_memory()
    if have is not None and need["total"] > have:
        raise ConfigError(
            f"{source}: n_envs * ppo.n_steps = {cfg.n_envs} * {cfg.ppo.n_steps} steps a rollout need about {_gib(need['total'])} "
            f"of memory (rollout buffer {_gib(need['rollout_buffer'])}); this machine has {_gib(have)} available: "
            "lower n_envs or ppo.n_steps"
        )


def config_from_dict(doc: Mapping, sets: Mapping[str, Any] | None = None, source: str = "config", check_resources: bool = False) -> TrainConfig:
    """Validate a config document, apply dotted ``sets`` to the resolved config, validate again.

    :param check_resources: a new training's checks: also refuse a config whose buffers do not fit
        in available memory, or whose rewards would be scaled on another discount than PPO's (a
        saved run's config is not refused for them: it trained so, and must still load and resume).
    """
    cfg = _validate(doc, source)
    if sets:
        source = f"{source} with --set"
        cfg = _validate(apply_sets(cfg.model_dump(mode="json"), sets), source)
    validate_config(cfg, source)
    if check_resources:
        check_discounts(cfg, source)
        check_memory(cfg, _scenario(cfg, source), source)
    return cfg


def check_discounts(cfg: TrainConfig, source: str = "config") -> None:
    """VecNormalize scales rewards by the spread of the return discounted with its own gamma; with
    another gamma than PPO's it scales them by a return PPO does not optimise (rl-zoo3 sets it to
    PPO's). Refused for a new training, one line."""
    if cfg.vecnormalize.norm_reward and cfg.vecnormalize.gamma != cfg.ppo.gamma:
        raise ConfigError(f"{source}: vecnormalize.gamma {cfg.vecnormalize.gamma} differs from ppo.gamma {cfg.ppo.gamma}; "
                          "set both to the same discount (the reward scale is taken on that return)")


def load_config(path: str | Path = DEFAULT_CONFIG, sets: Iterable[str] | Mapping[str, Any] | None = None) -> TrainConfig:
    """Load, override and validate a training config for a new training.

    :param path: a YAML file (``configs/train/ppo.yaml`` by default) or a built-in name (``ppo``).
    :param sets: ``["key=value", ...]`` as given on the command line, or ``{"key": value}``.
    :raises ConfigError: one line saying what, where and what is allowed, including a config
        whose rollout buffer would not fit in this machine's available memory.
    """
    path = resolve_reference(path, None, CONFIG_DIR, "config", ConfigError)
    try:
        doc = _read_yaml(path)
    except ConfigError:
        _refuse_a_scenario_file(path)
        raise
    if sets is not None and not isinstance(sets, Mapping):
        sets = parse_sets(sets)
    return config_from_dict(doc, sets, source=str(path), check_resources=True)
