"""Replaying a history through the batched model, and reading observations off the replay.

:func:`replay` plays a history's plan and events (:class:`envs.history.History`) for one or many
parameter sets at once: every set (a fit's candidates, a posterior's walkers) and every seed is a
market of ONE batch of :mod:`envs.market` (per-market parameter sets, :func:`envs.ensemble.stack_params`).
:func:`simulated` aggregates a replay to observation periods: ``gmv``, ``orders`` and
``revenue`` summed over the period's quarters, ``sellers`` and ``buyers`` at its last quarter,
region ``all`` summed over regions.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping, Sequence

import numpy as np
from gymnasium.utils import seeding

from envs import market
from envs.ensemble import stack_params, with_values
from envs.history import SUMMED, History, Observation

#: Per-quarter, per-region series of a replay (``(n, T, R)`` each) and their units.
REGION_SERIES: dict[str, str] = {"gmv": "$B", "orders": "M", "sellers": "k", "buyers": "M", "cost": "$B"}


@dataclass(frozen=True)
class Replay:
    """The simulated path of ``n`` markets: ``series[name]`` ``(n, T, R)`` (:data:`REGION_SERIES`,
    sellers and buyers at the quarter's end), ``revenue`` ``(n, T)`` (the platform's, $B).

    Market ``k * seeds + s`` is parameter set ``k`` under seed ``s`` (``seeds = 1`` when
    deterministic).
    """

    labels: tuple[str, ...]
    region_names: tuple[str, ...]
    series: dict[str, np.ndarray]
    revenue: np.ndarray
    n_sets: int
    n_seeds: int

    def per_set(self, values: np.ndarray) -> np.ndarray:
        """``(n, ...)`` values as ``(sets, seeds, ...)``."""
        return values.reshape(self.n_sets, self.n_seeds, *values.shape[1:])


def replay(history: History, overrides: Sequence[Mapping[str, Any]] = ({},), seeds: Sequence[int] | None = None) -> Replay:
    """Play the history once per parameter set (``overrides[k]``: dotted paths into the scenario)
    and seed, as one batch.

    ``seeds=None``: the deterministic model (no demand noise), one market per set. With seeds,
    the stochastic scenario, market ``k * len(seeds) + s`` seeded ``seeds[s]`` (common random
    numbers across sets).
    """
    deterministic = seeds is None
    seed_list: list[int | None] = [0] if deterministic else list(seeds)
    base = history.scenario(deterministic=deterministic)
    # the free paths and their bounds were validated when the history was loaded
    scenarios = [with_values(base, o) if set(o) <= set(history.free) else history.scenario(o, deterministic) for o in overrides]
    sets = [s.to_params() for s in scenarios]
    params = stack_params(sets)
    P, S = len(sets), len(seed_list)
    param_set = np.repeat(np.arange(P), S)
    rngs = [seeding.np_random(seed_list[i % S])[0] for i in range(P * S)]
    state = market.init_state(params, rngs, param_set)
    plan = np.stack([history.plan_intensity(params, k) for k in range(P)])[param_set]  # (n, T, R, L)
    out: dict[str, list] = {name: [] for name in REGION_SERIES}
    revenue = []
    for t in range(params.horizon):
        state, o = market.step(params, state, plan[:, t])
        out["gmv"].append(o["gmv_region"].copy())
        out["orders"].append(o["orders"].copy())
        out["cost"].append(o["cost_lever"].sum(-1))
        out["sellers"].append(state.sellers.copy())
        out["buyers"].append(state.buyers.copy())
        revenue.append(o["revenue"].copy())
    return Replay(
        labels=tuple(history.labels()),
        region_names=params.region_names,
        series={k: np.stack(v, axis=1) for k, v in out.items()},
        revenue=np.stack(revenue, axis=1),
        n_sets=P,
        n_seeds=S,
    )


def simulated(rep: Replay, observations: Sequence[Observation], quarters: Sequence[Sequence[int]]) -> np.ndarray:
    """The replay's value of every observation, ``(n, K)`` (one column per observation)."""
    n = rep.revenue.shape[0]
    out = np.empty((n, len(observations)))
    regions = list(rep.region_names)
    for k, (ob, ts) in enumerate(zip(observations, quarters)):
        ts = list(ts)
        if ob.metric == "revenue":
            path = rep.revenue  # the platform's (history files allow region: all only)
        else:
            series = rep.series[ob.metric]
            path = series.sum(-1) if ob.region == "all" else series[:, :, regions.index(ob.region)]
        out[:, k] = path[:, ts].sum(1) if ob.metric in SUMMED else path[:, ts[-1]]
    return out
