"""Training configs: typed, validated, loaded from YAML like scenarios.

A training config is data (``configs/train/*.yaml``)::

    cfg = load_config("configs/train/ppo.yaml", sets=["ppo.learning_rate=1e-4", "overrides.budget.mode=soft"])

Keys (every one optional in the file; defaults below):

* ``scenario``: a built-in scenario name or a path to a scenario YAML; ``overrides``: dotted
  scenario overrides (``{"budget.mode": "soft"}``), the same keys the env's ``overrides`` take.
* ``algo``: a name from :data:`ALGORITHMS` (``ppo``; ``ppo_lagrangian`` once
  ``agents/lagrangian.py`` exists). ``algo_params``: the algorithm's own section, validated by
  that algorithm's schema (``PPO`` has none).
* ``total_timesteps``, ``n_envs``, ``seed``; ``ppo``: stable-baselines3 ``PPO`` keyword
  arguments; ``vecnormalize``: ``VecNormalize`` settings; ``checkpoint_freq`` and ``eval_freq``
  (in env steps, summed over the parallel envs, like ``total_timesteps``); ``eval_episodes``.

``--set key=value`` overrides use dotted paths into this schema (``ppo.n_steps=24``) and are
validated exactly like the file; ``overrides.<scenario.path>=value`` sets a scenario override.
Every user mistake raises :class:`ConfigError`, a ``ValueError`` whose one-line message names
the field, the value and what is allowed.

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

from envs.scenario import ScenarioError, format_validation_error, load_scenario, parse_set_pairs, read_yaml_mapping

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
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)


class PolicyKwargs(_Strict):
    """``policy_kwargs`` of SB3's ``MlpPolicy``."""

    net_arch: list[int] = Field(default_factory=lambda: [64, 64], min_length=1, max_length=8)
    activation_fn: Literal["tanh", "relu", "elu"] = "tanh"
    log_std_init: float = Field(default=0.0, ge=-5, le=2)
    ortho_init: bool = True

    @model_validator(mode="after")
    def _widths(self) -> "PolicyKwargs":
        if any(w < 1 or w > 4096 for w in self.net_arch):
            raise ValueError("net_arch widths must be between 1 and 4096")
        return self


class PPOParams(_Strict):
    """Keyword arguments of ``stable_baselines3.PPO`` (same names, same meaning)."""

    learning_rate: float = Field(default=3e-4, gt=0, le=1)
    n_steps: int = Field(default=24, ge=1, le=100_000, description="steps per env per rollout")
    batch_size: int = Field(default=256, ge=2, le=1_000_000)
    n_epochs: int = Field(default=10, ge=1, le=100)
    gamma: float = Field(default=0.99, ge=0, le=1)
    gae_lambda: float = Field(default=0.95, ge=0, le=1)
    clip_range: float = Field(default=0.2, gt=0, le=1)
    ent_coef: float = Field(default=0.0, ge=0, le=1)
    vf_coef: float = Field(default=0.5, ge=0, le=10)
    max_grad_norm: float = Field(default=0.5, gt=0, le=100)
    target_kl: float | None = Field(default=None, gt=0, le=10)
    use_sde: bool = False
    policy_kwargs: PolicyKwargs = Field(default_factory=PolicyKwargs)


class VecNormalizeParams(_Strict):
    """``stable_baselines3.common.vec_env.VecNormalize`` settings."""

    norm_obs: bool = True
    norm_reward: bool = True
    gamma: float = Field(default=0.99, ge=0, le=1, description="discount of the return used to scale rewards")
    clip_obs: float = Field(default=10.0, gt=0, le=1000)
    clip_reward: float = Field(default=10.0, gt=0, le=1000)


class TrainConfig(_Strict):
    """A complete training config; :meth:`model_dump` of it is the resolved ``config.yaml``."""

    scenario: str = "global"
    overrides: dict[str, Any] = Field(default_factory=dict)
    algo: str = "ppo"
    algo_params: dict[str, Any] = Field(default_factory=dict)
    total_timesteps: int = Field(default=200_000, ge=1, le=1_000_000_000)
    n_envs: int = Field(default=32, ge=1, le=4096)
    seed: int = Field(default=0, ge=0, lt=EVAL_SEED_BASE)
    ppo: PPOParams = Field(default_factory=PPOParams)
    vecnormalize: VecNormalizeParams = Field(default_factory=VecNormalizeParams)
    checkpoint_freq: int = Field(default=50_000, ge=1, description="env steps between checkpoints")
    eval_freq: int = Field(default=50_000, ge=1, description="env steps between evaluations")
    eval_episodes: int = Field(default=32, ge=1, le=10_000)

    @model_validator(mode="after")
    def _checks(self) -> "TrainConfig":
        if self.algo not in ALGORITHMS:
            raise ValueError(f"algo '{self.algo}' is unknown; allowed: {', '.join(ALGORITHMS)}")
        if self.seed + self.n_envs > EVAL_SEED_BASE:
            raise ValueError(f"seed + n_envs must stay below {EVAL_SEED_BASE} (evaluation seeds start there)")
        rollout = self.ppo.n_steps * self.n_envs
        if rollout < 2:
            raise ValueError("ppo.n_steps * n_envs must be at least 2")
        return self

    @property
    def rollout_size(self) -> int:
        """Env steps collected per PPO iteration (``n_steps * n_envs``)."""
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
    return read_yaml_mapping(path, what="config", error=ConfigError, empty_ok=True)


def parse_sets(sets: Iterable[str]) -> dict[str, Any]:
    """``["a.b=1", ...]`` -> ``{"a.b": 1}`` (values parsed as YAML)."""
    return parse_set_pairs(sets, example="ppo.learning_rate=1e-4", error=ConfigError)


def _set_dotted(doc: dict, dotted: str, value: Any, source: str) -> None:
    """Set one override in a fully resolved config dict; unknown keys are an error."""
    keys = dotted.split(".")
    if keys[0] in ("overrides", "algo_params") and len(keys) > 1:
        # free-form sections: the scenario (or the algorithm's schema) validates the keys
        section = doc.setdefault(keys[0], {})
        if keys[0] == "overrides":
            section[".".join(keys[1:])] = value
        else:
            node = section
            for key in keys[1:-1]:
                node = node.setdefault(key, {})
                if not isinstance(node, dict):
                    raise ConfigError(f"{source}: cannot set '{dotted}': '{key}' is not a section")
            node[keys[-1]] = value
        return
    node = doc
    for i, key in enumerate(keys):
        if not isinstance(node, dict) or key not in node:
            have = sorted(node) if isinstance(node, dict) else []
            prefix = ".".join(keys[:i]) or "top level"
            allowed = f"allowed: {', '.join(have)}" if have else f"'{prefix}' is a value, not a section"
            raise ConfigError(f"{source}: unknown key '{dotted}' ('{key}' is not in {prefix}; {allowed})")
        if i == len(keys) - 1:
            node[key] = value
        else:
            node = node[key]


def _validate(doc: Mapping, source: str) -> TrainConfig:
    try:
        return TrainConfig.model_validate(doc)
    except ValidationError as exc:
        err = exc.errors()[0]
        if err["type"] == "value_error" and not err["loc"]:
            raise ConfigError(f"{source}: {err['msg'].removeprefix('Value error, ')}") from None
        raise ConfigError(format_validation_error(exc, source, doc)) from None


def validate_config(cfg: TrainConfig, source: str = "config") -> TrainConfig:
    """Check what the schema alone cannot: the scenario (and its overrides), ``algo_params`` and the
    algorithm's own ``check_config(cfg)`` if it has one (``ppo_lagrangian``: the budget must be soft)."""
    try:
        load_scenario(cfg.scenario, cfg.overrides)
    except ScenarioError as exc:
        raise ConfigError(f"{source}: scenario: {exc}") from None
    algorithm = get_algorithm(cfg.algo)
    params_model = getattr(algorithm, "params_model", None)
    if params_model is None:
        if cfg.algo_params:
            raise ConfigError(f"{source}: algo_params must be empty for algo '{cfg.algo}' (it takes none)")
    else:
        try:
            params_model.model_validate(cfg.algo_params)
        except ValidationError as exc:
            raise ConfigError(format_validation_error(exc, f"{source}: algo_params")) from None
    check = getattr(algorithm, "check_config", None)  # what the algorithm needs of the whole config
    if check:
        try:
            check(cfg)
        except ValueError as exc:  # ConfigError is a ValueError
            raise ConfigError(f"{source}: {exc}") from None
    return cfg


def config_from_dict(doc: Mapping, sets: Mapping[str, Any] | None = None, source: str = "config") -> TrainConfig:
    """Validate a config document, apply dotted ``sets`` to the resolved config, validate again."""
    base = _validate(doc, source)
    if not sets:
        return validate_config(base, source)
    resolved = base.model_dump(mode="json")
    for dotted, value in sets.items():
        _set_dotted(resolved, dotted, copy.deepcopy(value), "--set")
    return validate_config(_validate(resolved, "--set"), "--set")


def load_config(path: str | Path = DEFAULT_CONFIG, sets: Iterable[str] | Mapping[str, Any] | None = None) -> TrainConfig:
    """Load, override and validate a training config.

    :param path: a YAML file (``configs/train/ppo.yaml`` by default).
    :param sets: ``["key=value", ...]`` as given on the command line, or ``{"key": value}``.
    :raises ConfigError: one line saying what, where and what is allowed.
    """
    path = Path(path)
    doc = _read_yaml(path)
    if sets is not None and not isinstance(sets, Mapping):
        sets = parse_sets(sets)
    return config_from_dict(doc, sets, source=str(path))
