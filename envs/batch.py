"""The batch of markets behind both Gymnasium faces.

:class:`MarketBatch` owns the scenario's :class:`~envs.market.Params`, the batched
:class:`~envs.market.State` and one random generator per market; it validates actions, calls
:func:`envs.market.step` and builds observations and ``info``. :class:`~envs.SocialCommerceEnv`
is a batch of one and :class:`~envs.SocialCommerceVectorEnv` a batch of N, so both run exactly
the same code.
"""

from __future__ import annotations

from typing import Any, Mapping

import numpy as np
from gymnasium import spaces
from gymnasium.utils import seeding

from envs import market
from envs.scenario import Scenario, load_scenario

OBS_LOW, OBS_HIGH = -1.0, 2.0


class MarketBatch:
    """N markets of one scenario, stepped together (all share the same quarter index)."""

    def __init__(self, scenario: "str | Scenario" = "global", overrides: Mapping[str, Any] | None = None, num_envs: int = 1):
        if not isinstance(num_envs, (int, np.integer)) or num_envs < 1:
            raise ValueError(f"num_envs must be a positive integer, got {num_envs!r}")
        self.scenario = load_scenario(scenario, overrides)
        self.params = self.scenario.to_params()
        self.num_envs = int(num_envs)
        p = self.params
        self.single_action_space = spaces.Box(-1.0, 1.0, (p.action_dim,), np.float32)
        self.single_observation_space = spaces.Box(OBS_LOW, OBS_HIGH, (p.obs_dim,), np.float32)
        self.rngs: list[np.random.Generator] | None = None
        self.state: market.State | None = None

    # ------------------------------------------------------------------ reset
    def seed_generators(self, seeds: list[int | None]) -> None:
        """Seed market i's generator with ``seeds[i]`` (gymnasium's ``np_random``)."""
        self.rngs = [seeding.np_random(s)[0] for s in seeds]

    def reset(self) -> tuple[np.ndarray, dict]:
        if self.rngs is None:
            self.seed_generators([None] * self.num_envs)
        self.state = market.init_state(self.params, self.rngs)
        return market.observe(self.params, self.state), self.reset_info()

    def reset_info(self) -> dict:
        s, p = self.state, self.params
        zeros = np.zeros(self.num_envs)
        return self._info(
            gmv=zeros, run_rate=4.0 * s.gmv_region.sum(1) / p.season_at(s.t - 1), gmv_region=s.gmv_region,
            cost=zeros, cost_lever=np.zeros((self.num_envs, p.n_regions, market.N_LEVERS)),
            cost_limit=market.quarter_cap(p, s), revenue=zeros, share=s.share,
            clipped=np.zeros(self.num_envs, dtype=np.int64),
            intensity=np.zeros((self.num_envs, p.n_regions, market.N_LEVERS)),
        )

    # ------------------------------------------------------------------ step
    def check_action(self, action: Any) -> tuple[np.ndarray, np.ndarray]:
        """Validate a ``(num_envs, R*L)`` action; return it clipped and the count clipped per env."""
        a = np.asarray(action, dtype=np.float64)
        want = (self.num_envs, self.params.action_dim)
        if a.shape != want:
            raise ValueError(f"action has shape {a.shape}; expected {want} (regions x levers, region-major)")
        if not np.all(np.isfinite(a)):
            raise ValueError("action contains NaN or infinite values; actions must be finite numbers in [-1, 1]")
        clipped = np.clip(a, -1.0, 1.0)
        return clipped, np.count_nonzero(clipped != a, axis=1)

    def step(self, action: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray, dict]:
        if self.state is None:
            raise RuntimeError("call reset() before step()")
        a, clipped = self.check_action(action)
        intensity = market.action_to_intensity(a, self.params.n_regions)
        self.state, out = market.step(self.params, self.state, intensity)
        obs = market.observe(self.params, self.state)
        terminated = self.state.t >= self.params.horizon
        info = self._info(
            gmv=out["gmv"], run_rate=out["run_rate"], gmv_region=out["gmv_region"], cost=out["cost"],
            cost_lever=out["cost_lever"], cost_limit=out["cost_limit"], revenue=out["revenue"],
            share=out["share"], clipped=clipped, intensity=out["intensity"],
        )
        return obs, out["gmv"].copy(), terminated, info

    def _info(self, *, gmv, run_rate, gmv_region, cost, cost_lever, cost_limit, revenue, share, clipped, intensity) -> dict:
        """The ``info`` dict of DESIGN.md's contract, arrays with a leading ``num_envs``."""
        s, p = self.state, self.params
        names = p.region_names
        by_lever = cost_lever.sum(axis=1)
        return {
            "gmv": gmv,
            "gmv_run_rate": run_rate,
            "gmv_by_region": {r: gmv_region[:, i] for i, r in enumerate(names)},
            "cost": cost,
            "cost_by_lever": {lever: by_lever[:, j] for j, lever in enumerate(market.LEVERS)},
            "cost_limit": cost_limit,
            "budget_remaining": s.budget_remaining.copy(),
            "cost_total": s.spent.copy(),
            "cost_limit_exceeded": s.spent > p.budget_total * (1 + 1e-9),
            "shopping_start_share": {r: share[:, i] for i, r in enumerate(names)},
            "buyers": {r: s.buyers[:, i] for i, r in enumerate(names)},
            "sellers": {r: s.sellers[:, i].copy() for i, r in enumerate(names)},
            "creators": {r: s.creators[:, i].copy() for i, r in enumerate(names)},
            "suspended": {r: s.suspended[:, i] > 0 for i, r in enumerate(names)},
            "revenue": revenue,
            "clipped_actions": clipped,
            "quarter": s.t.copy(),
            "lever_intensity": intensity,
        }


def info_row(info: dict, i: int) -> dict:
    """Market ``i``'s entries of a batched ``info`` as Python scalars (nested dicts kept)."""
    out: dict = {}
    for key, value in info.items():
        if isinstance(value, dict):
            out[key] = {k: v[i].item() for k, v in value.items()}
        elif isinstance(value, np.ndarray) and value.ndim == 1:
            out[key] = value[i].item()
        else:
            out[key] = np.asarray(value[i]).copy()
    return out
