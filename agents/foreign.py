"""Models trained outside this project's run folders, as policies beside the reference ones.

Two shapes are read:

* a plain stable-baselines3 (or sb3-contrib) model file ``model.zip``, with the ``VecNormalize``
  statistics it was trained with (``vecnormalize.pkl``) if any: :func:`load_model_file`;
* an rl-zoo3 experiment folder (``logs/ppo/flywheel-SocialCommerce-v1_1/``: the model
  ``<env>.zip`` there, ``config.yml``, ``args.yml`` and ``vecnormalize.pkl`` in its ``<env>/``
  subfolder): :func:`load_zoo_experiment`, which also takes the algorithm and the env's
  ``env_kwargs`` (scenario, overrides) from ``args.yml``.

Model ``.zip`` and ``.pkl`` files are pickles: loading one runs code it contains. Load only files
you made or trust. (``args.yml`` and ``config.yml`` are read as plain YAML: no code runs.)

The algorithm is the rl-zoo3 name (:data:`ALGORITHMS`); without one it is read from the model
file's policy class (SAC, TD3, TQC, CrossQ, RecurrentPPO are told apart; an actor-critic policy
is loaded as ``ppo``, which predicts the same for A2C and TRPO models). Every mistake (a missing
file, a wrong algorithm, spaces that do not fit the scenario) is a :class:`ForeignModelError`,
one line. Imports stable-baselines3 (and torch): reach it through :mod:`agents.lazy`.
"""

from __future__ import annotations

import importlib
import json
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import yaml
from stable_baselines3.common.vec_env import VecNormalize

from agents.policies import NormalizedPolicy
from agents.runs import RunError
from envs.batch import MarketBatch
from envs.sb3 import SB3VecEnv
from envs.scenario import Scenario, load_scenario

#: rl-zoo3's algorithm names for continuous actions -> (module, class)
ALGORITHMS: dict[str, tuple[str, str]] = {
    "a2c": ("stable_baselines3", "A2C"),
    "ddpg": ("stable_baselines3", "DDPG"),
    "ppo": ("stable_baselines3", "PPO"),
    "sac": ("stable_baselines3", "SAC"),
    "td3": ("stable_baselines3", "TD3"),
    "ars": ("sb3_contrib", "ARS"),
    "crossq": ("sb3_contrib", "CrossQ"),
    "ppo_lstm": ("sb3_contrib", "RecurrentPPO"),
    "tqc": ("sb3_contrib", "TQC"),
    "trpo": ("sb3_contrib", "TRPO"),
}
#: policy module (in the model file) -> algorithm, for models saved without a name
_POLICY_MODULES = {
    "stable_baselines3.sac.": "sac",
    "stable_baselines3.td3.": "td3",
    "sb3_contrib.ppo_recurrent.": "ppo_lstm",
    "sb3_contrib.tqc.": "tqc",
    "sb3_contrib.crossq.": "crossq",
    "sb3_contrib.ars.": "ars",
    "stable_baselines3.common.policies": "ppo",
}


class ForeignModelError(RunError):
    """A model file, statistics file or experiment folder that cannot be evaluated. One line."""


@dataclass
class ForeignModel:
    """A loaded model: its policy face (:meth:`policy`), the scenario to play and where it came from."""

    name: str
    model: Any
    vecnormalize: Any
    scenario: Scenario
    source: str

    def policy(self) -> "ForeignPolicy":
        return ForeignPolicy(self.model, self.vecnormalize, name=self.name)


class ForeignPolicy(NormalizedPolicy):
    """:class:`NormalizedPolicy` that also carries a recurrent policy's state (RecurrentPPO)
    across the quarters of the episodes it plays (the evaluation plays them in one batch, all
    starting together; :meth:`reset` marks a new start)."""

    def __init__(self, model, vecnormalize, name: str):
        super().__init__(model, vecnormalize, name=name)
        self.recurrent = hasattr(model.policy, "lstm_actor")
        self.reset()

    def reset(self) -> None:
        self._state = None
        self._start = True

    def predict(self, obs, state: Any = None, episode_start: Any = None, deterministic: bool = True):
        if not self.recurrent:
            return super().predict(obs, deterministic=deterministic)
        obs = np.asarray(obs, dtype=np.float32)
        single = obs.ndim == 1
        batch = obs[None] if single else obs
        normed = self.vecnormalize.normalize_obs(batch) if self.vecnormalize is not None else batch
        starts = np.full(batch.shape[0], self._start)
        action, self._state = self.model.predict(normed, state=self._state, episode_start=starts, deterministic=deterministic)
        self._start = False
        return (action[0] if single else action), None


def model_class(algo: str):
    """The SB3 / sb3-contrib class of an rl-zoo3 algorithm name."""
    if algo not in ALGORITHMS:
        raise ForeignModelError(f"--algo {algo!r}: allowed {', '.join(ALGORITHMS)}")
    module, name = ALGORITHMS[algo]
    try:
        return getattr(importlib.import_module(module), name)
    except ImportError:
        raise ForeignModelError(f"--algo {algo} needs {module}: pip install -e '.[zoo]'") from None


def infer_algorithm(path: Path) -> str:
    """The algorithm of a saved SB3 model, from the policy class its ``data`` records."""
    try:
        with zipfile.ZipFile(path) as archive:
            data = json.loads(archive.read("data"))
        module = data["policy_class"]["__module__"]
    except (zipfile.BadZipFile, KeyError, ValueError, TypeError, OSError) as exc:
        raise ForeignModelError(f"{path}: not a stable-baselines3 model file ({type(exc).__name__}: {exc})") from None
    for prefix, algo in _POLICY_MODULES.items():
        if module.startswith(prefix):
            return algo
    raise ForeignModelError(f"{path}: cannot tell the algorithm from its policy ({module}); give --algo ({', '.join(ALGORITHMS)})")


def check_spaces(model, scenario: Scenario, source: str) -> None:
    """The model's observation and action shapes must be the scenario's."""
    batch = MarketBatch(scenario)
    for what, have, want in [
        ("observation", model.observation_space.shape, batch.single_observation_space.shape),
        ("action", model.action_space.shape, batch.single_action_space.shape),
    ]:
        if tuple(have) != tuple(want):
            raise ForeignModelError(f"{source}: the model's {what} space has shape {tuple(have)} but scenario '{scenario.name}' needs {tuple(want)}")


def load_model_file(model_path: str | Path, scenario: Scenario, vecnormalize_path: str | Path | None = None,
                    algo: str | None = None, device: str = "cpu") -> ForeignModel:
    """A plain SB3 / sb3-contrib model (and its frozen ``VecNormalize`` statistics) for ``scenario``."""
    model_path = Path(model_path)
    if not model_path.is_file():
        what = "is a folder, not a model file (.zip)" if model_path.is_dir() else "no such file"
        raise ForeignModelError(f"--model {model_path}: {what}")
    algo = algo or infer_algorithm(model_path)
    cls = model_class(algo)
    try:
        model = cls.load(str(model_path), device=device)
    except Exception as exc:  # noqa: BLE001 - a foreign file: any failure to load is bad input
        raise ForeignModelError(f"--model {model_path}: cannot load it as {algo} ({type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''})") from None
    check_spaces(model, scenario, str(model_path))
    vecnormalize = None
    if vecnormalize_path is not None:
        vecnormalize_path = Path(vecnormalize_path)
        if not vecnormalize_path.is_file():
            raise ForeignModelError(f"--vecnormalize {vecnormalize_path}: no such file")
        try:
            vecnormalize = VecNormalize.load(str(vecnormalize_path), SB3VecEnv(1, scenario))
        except Exception as exc:  # noqa: BLE001
            raise ForeignModelError(f"--vecnormalize {vecnormalize_path}: not VecNormalize statistics for scenario '{scenario.name}' ({type(exc).__name__}: {exc})") from None
        vecnormalize.training = False
        vecnormalize.norm_reward = False
    return ForeignModel(algo, model, vecnormalize, scenario, str(model_path))


# ----------------------------------------------------------------------------- rl-zoo3


class _ZooLoader(yaml.SafeLoader):
    """rl-zoo3 dumps ``args.yml`` / ``config.yml`` as ordered dicts; read them as plain dicts, safely."""


_ZooLoader.add_constructor(
    "tag:yaml.org,2002:python/object/apply:collections.OrderedDict",
    lambda loader, node: dict(loader.construct_sequence(node.value[0], deep=True)) if node.value else {},
)


def zoo_files(folder: str | Path) -> tuple[Path, Path] | None:
    """``(model zip, env subfolder)`` if ``folder`` is an rl-zoo3 experiment, else ``None``."""
    folder = Path(folder)
    if not folder.is_dir():
        return None
    for sub in sorted(p for p in folder.iterdir() if p.is_dir()):
        if (sub / "args.yml").is_file() and (sub / "config.yml").is_file():
            for name in (f"{sub.name}.zip", "best_model.zip"):
                if (folder / name).is_file():
                    return folder / name, sub
            raise ForeignModelError(f"{folder}: an rl-zoo3 experiment without its model {sub.name}.zip")
    return None


def read_zoo_yaml(path: Path) -> dict:
    try:
        data = yaml.load(path.read_text(encoding="utf-8"), Loader=_ZooLoader)  # noqa: S506 - a SafeLoader subclass
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
        raise ForeignModelError(f"{path}: cannot read it ({type(exc).__name__})") from None
    if not isinstance(data, dict):
        raise ForeignModelError(f"{path}: not an rl-zoo3 {path.name}")
    return data


def load_zoo_experiment(folder: str | Path, overrides: dict | None = None, device: str = "cpu") -> ForeignModel:
    """An rl-zoo3 experiment folder: the algorithm and ``env_kwargs`` (``scenario``,
    ``overrides``) from ``args.yml``, the model, and ``vecnormalize.pkl`` when it trained normalised."""
    found = zoo_files(folder)
    if found is None:
        raise ForeignModelError(f"{folder}: not an rl-zoo3 experiment folder (no <env>/args.yml beside <env>.zip)")
    model_path, sub = found
    args = read_zoo_yaml(sub / "args.yml")
    env_kwargs = dict(args.get("env_kwargs") or {})
    env_overrides = {**dict(env_kwargs.pop("overrides", None) or {}), **dict(overrides or {})}
    scenario = load_scenario(env_kwargs.pop("scenario", "global"), env_overrides or None)
    if env_kwargs:
        raise ForeignModelError(f"{sub / 'args.yml'}: env_kwargs {sorted(env_kwargs)} are not Flywheel's (scenario, overrides)")
    vec_path = sub / "vecnormalize.pkl"
    loaded = load_model_file(model_path, scenario, vec_path if vec_path.is_file() else None, algo=str(args.get("algo", "")) or None, device=device)
    loaded.source = str(folder)
    return loaded
