"""Native vectorised face of the market: a Gymnasium ``VectorEnv`` (the SB3 ``VecEnv`` is in :mod:`envs.sb3`).

Both hold one :class:`~envs.batch.MarketBatch` of N markets and step them with a single call of
the batched model: no per-env Python objects besides one random generator each.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
from gymnasium.vector import AutoresetMode, VectorEnv
from gymnasium.vector.utils import batch_space

from envs.batch import MarketBatch, market_seeds
from envs.scenario import Scenario


class SocialCommerceVectorEnv(VectorEnv):
    """N markets of :class:`envs.SocialCommerceEnv` as one batched ``gymnasium.vector.VectorEnv``.

    ``reset(seed=s)`` seeds market i with ``s + i`` (as ``SyncVectorEnv`` does) and gives exactly
    the results of N single envs so seeded. All markets share the horizon, so they terminate
    together; autoreset is gymnasium's default ``NEXT_STEP`` mode: the step after a terminal
    step resets every market (reward 0, not terminated) and ignores the action.
    ``info`` holds arrays of shape ``(num_envs,)`` (region/lever keys map to such arrays).
    """

    metadata = {"autoreset_mode": AutoresetMode.NEXT_STEP, "render_modes": []}

    def __init__(self, num_envs: int = 1, scenario: "str | Path | Scenario" = "global", overrides: Mapping[str, Any] | None = None,
                 ensemble: "str | Path | None" = None, **kwargs: Any):
        if kwargs:
            raise TypeError(f"unexpected arguments {sorted(kwargs)}; allowed: num_envs, scenario, overrides, ensemble")
        self._batch = MarketBatch(scenario, overrides, num_envs=num_envs, ensemble=ensemble)
        self.scenario = self._batch.scenario
        self.params = self._batch.params
        self.num_envs = self._batch.num_envs
        self.single_action_space = self._batch.single_action_space
        self.single_observation_space = self._batch.single_observation_space
        self.action_space = batch_space(self.single_action_space, self.num_envs)
        self.observation_space = batch_space(self.single_observation_space, self.num_envs)
        self._autoreset = False

    def reset(self, *, seed: int | Sequence[int] | None = None, options: dict | None = None):
        if seed is not None or self._batch.rngs is None:
            self._batch.seed_generators(market_seeds(seed, self.num_envs))
        self._autoreset = False
        obs, info = self._batch.reset()
        return obs, self._batch.info_dict(info)

    def step(self, actions):
        n = self.num_envs
        if self._autoreset:
            obs, info = self.reset()
            return obs, np.zeros(n), np.zeros(n, dtype=bool), np.zeros(n, dtype=bool), info
        obs, reward, terminated, info = self._batch.step(actions)
        self._autoreset = bool(terminated.any())
        return obs, reward, terminated, np.zeros(n, dtype=bool), self._batch.info_dict(info)

    @property
    def state(self):
        return self._batch.state

