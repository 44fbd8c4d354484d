"""The batched model as the planners see it: start states, plans, and their GMV.

Every candidate plan is scored exactly as it will be played: the start state of episode ``s`` is
drawn from the generator the envs seed with ``s`` (so it holds the episode's every future shock
and suspension draw, see :mod:`envs.market`), and intensities pass through the float32 action
encoding of the env (:func:`quantise`), so a plan's GMV here is the GMV the evaluation measures.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Sequence

import numpy as np
from gymnasium.utils import seeding

from envs import market
from envs.scenario import Scenario


def start_states(params: market.Params, seeds: Sequence[int]) -> market.State:
    """Start states of the episodes ``seeds``, drawn exactly as the envs draw them."""
    return market.init_state(params, [seeding.np_random(int(s))[0] for s in seeds])


def planning_params(scenario: Scenario) -> market.Params:
    """Model parameters for planning: the scenario's, always with the hard-budget projection."""
    params = scenario.to_params()
    return params if params.hard_budget else replace(params, hard_budget=True)


def quantise(intensity: np.ndarray) -> np.ndarray:
    """Intensities as the env will apply them: through the float32 action in [-1, 1].

    Idempotent, so a quantised plan played through ``intensity_to_action`` gives back itself.
    """
    u = np.clip(np.asarray(intensity, dtype=np.float64), 0.0, 1.0)
    action = (2.0 * u - 1.0).astype(np.float32)
    return (action.astype(np.float64) + 1.0) * 0.5


def unique_futures(params: market.Params, state: market.State) -> tuple[np.ndarray, np.ndarray]:
    """Group episodes with identical futures.

    The model uses the pre-drawn numbers only through ``demand_sigma * shock_z`` and
    ``suspend_u < hazard``; episodes equal in both face the same future. Returns the index of
    one representative per group and, for every episode, its group.
    """
    shocks = params.demand_sigma * state.shock_z + 0.0  # + 0.0: no -0.0, whose bytes differ
    starts = state.suspend_u < params.suspension_hazard
    keys = [shocks[i].tobytes() + starts[i].tobytes() for i in range(state.n)]
    first: dict[bytes, int] = {}
    group = np.empty(state.n, dtype=np.int64)
    reps: list[int] = []
    for i, key in enumerate(keys):
        if key not in first:
            first[key] = len(reps)
            reps.append(i)
        group[i] = first[key]
    return np.array(reps, dtype=np.int64), group


def cumulative_gmv(params: market.Params, state: market.State, plans: np.ndarray) -> np.ndarray:
    """Cumulative GMV ($B) of each market's plan; ``plans`` (n, T, R, L) or (n, R, L)."""
    return market.rollout(params, state, plans)["gmv"].sum(axis=1)


def feasible_plan(params: market.Params, state: market.State, plans: np.ndarray) -> np.ndarray:
    """The intensities actually applied when ``plans`` are played under the hard projection."""
    return market.rollout(params, state, plans)["intensity"]
