"""The native batched market as a stable-baselines3 ``VecEnv`` (imports SB3 and torch)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping

import numpy as np
import gymnasium as gym
from stable_baselines3.common.vec_env.base_vec_env import VecEnv

from envs.batch import MarketBatch, market_seeds
from envs.scenario import Scenario


class SB3VecEnv(VecEnv):
    """The native batched market as a stable-baselines3 ``VecEnv``.

    SB3 resets on the same step an episode ends: the returned observation is the first of the
    next episode, and each env's ``info`` carries ``terminal_observation`` (and SB3's
    ``TimeLimit.truncated = False``, since the horizon is a true terminal). ``infos`` are one dict
    per env with the scalar entries of the env contract. ``seed(s)`` seeds env i with ``s + i`` at
    the next reset, exactly as the Gymnasium faces do.
    """

    def __init__(self, num_envs: int = 1, scenario: "str | Path | Scenario" = "global", overrides: Mapping[str, Any] | None = None,
                 ensemble: "str | Path | None" = None):
        self._batch = MarketBatch(scenario, overrides, num_envs=num_envs, ensemble=ensemble)
        self.scenario = self._batch.scenario
        self.params = self._batch.params
        self.render_mode = None  # read by VecEnv.__init__ through get_attr; without it SB3 warns
        super().__init__(num_envs, self._batch.single_observation_space, self._batch.single_action_space)
        self._actions: np.ndarray | None = None
        self._pending_seeds: list[int | None] | None = None

    def seed(self, seed: int | None = None):  # noqa: D401 - SB3 API
        self._pending_seeds = market_seeds(seed, self.num_envs)
        return self._pending_seeds

    def reset(self):
        if self._pending_seeds is not None or self._batch.rngs is None:
            self._batch.seed_generators(self._pending_seeds or [None] * self.num_envs)
            self._pending_seeds = None
        obs, info = self._batch.reset()
        self.reset_infos = [{} for _ in range(self.num_envs)]
        return obs

    def step_async(self, actions: np.ndarray) -> None:
        self._actions = actions

    def step_wait(self):
        obs, reward, terminated, info = self._batch.step(self._actions)
        infos = self._batch.info_rows(info)
        if terminated.any():
            for i in np.flatnonzero(terminated):
                infos[i]["terminal_observation"] = obs[i].copy()
                infos[i]["TimeLimit.truncated"] = False
            obs, _ = self._batch.reset()
        return obs, reward.astype(np.float32), terminated.copy(), infos

    def close(self) -> None:
        pass

    def get_attr(self, attr_name: str, indices=None) -> list[Any]:
        return [getattr(self, attr_name)] * len(self._indices(indices))

    def set_attr(self, attr_name: str, value: Any, indices=None) -> None:
        setattr(self, attr_name, value)

    def env_method(self, method_name: str, *method_args, indices=None, **method_kwargs) -> list[Any]:
        result = getattr(self, method_name)(*method_args, **method_kwargs)
        return [result] * len(self._indices(indices))

    def env_is_wrapped(self, wrapper_class: type[gym.Wrapper], indices=None) -> list[bool]:
        return [False] * len(self._indices(indices))

    def _indices(self, indices) -> list[int]:
        if indices is None:
            return list(range(self.num_envs))
        if isinstance(indices, int):
            return [indices]
        return list(indices)

    @property
    def state(self):
        return self._batch.state
