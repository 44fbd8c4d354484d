"""Reference policies: the plans a strategist would write, behind one ``predict(obs)`` face.

Every policy maps a batch of observations ``(n, obs_dim)`` (or one observation) to actions in
[-1, 1] of the scenario's action space, like a stable-baselines3 model::

    policy = make_policy("merchant_package", scenario)
    action, _ = policy.predict(obs)

Playbooks are constant intensities per region and lever (``ConstantPolicy``):

* ``zero``: spend nothing, push nothing (the organic market).
* ``uniform``: the budget spread evenly: every spend lever in every region at one intensity,
  sized so that the first quarter spends ``budget.total / horizon``; no private-label push.
* ``merchant_package``: the June 2023 US merchant offer, everywhere: free listings (seller
  grants), free shipping, zero commission and warehousing at full intensity.
* ``livestream_first``: the China (Douyin) playbook: creator and livestream incentives and
  user ads at full intensity, free shipping at half.
* ``commerce_first``: the Amazon playbook: selection (grants), fulfilment (warehousing) and
  shipping at full intensity.

In a hard-budget scenario the env scales any plan down to the quarter's cap, so a playbook
spends at most the cap and stops when the budget is gone.
"""

from __future__ import annotations

from typing import Any, Callable

import numpy as np

from envs import market
from envs.market import LEVERS
from envs.scenario import Scenario, load_scenario


class Policy:
    """The one face every policy has: ``predict(obs) -> (action, None)``."""

    name = "policy"

    def predict(self, obs: np.ndarray, state: Any = None, episode_start: Any = None, deterministic: bool = True):
        raise NotImplementedError


class ConstantPolicy(Policy):
    """The same intensities every quarter. ``intensity``: array ``(n_regions, 7)`` in [0, 1]."""

    def __init__(self, intensity: np.ndarray, name: str = "constant"):
        intensity = np.asarray(intensity, dtype=np.float64)
        if intensity.ndim != 2 or intensity.shape[1] != market.N_LEVERS:
            raise ValueError(f"intensity must have shape (n_regions, {market.N_LEVERS}), got {intensity.shape}")
        if np.any(intensity < 0) or np.any(intensity > 1) or not np.all(np.isfinite(intensity)):
            raise ValueError("intensities must lie in [0, 1]")
        self.intensity = intensity
        self.name = name
        self._action = market.intensity_to_action(intensity[None])[0]

    def predict(self, obs, state=None, episode_start=None, deterministic=True):
        obs = np.asarray(obs)
        if obs.ndim == 1:
            return self._action.copy(), None
        return np.repeat(self._action[None], obs.shape[0], axis=0), None


def _levers(**on: float) -> np.ndarray:
    row = np.zeros(market.N_LEVERS)
    for lever, value in on.items():
        row[LEVERS.index(lever)] = value
    return row


def uniform_intensity(scenario: Scenario) -> float:
    """Intensity at which every spend lever, everywhere, spends ``total / horizon`` in quarter one."""
    params = scenario.to_params()
    state = market.init_state(params, [np.random.default_rng(0)])
    ones = np.ones((1, params.n_regions, market.N_LEVERS))
    full_cost = market.lever_costs(params, state, ones).sum()
    return float(min(1.0, params.budget_total / params.horizon / full_cost))


def _playbook_rows(scenario: Scenario) -> dict[str, Callable[[], np.ndarray]]:
    return {
        "zero": lambda: _levers(),
        "uniform": lambda: np.where(
            np.arange(market.N_LEVERS) == market.PRIVATE_LABEL, 0.0, uniform_intensity(scenario)
        ),
        "merchant_package": lambda: _levers(seller_grants=1, shipping_subsidy=1, commission_rate=0, warehousing=1),
        "livestream_first": lambda: _levers(creator_incentives=1, user_ads=1, shipping_subsidy=0.5),
        "commerce_first": lambda: _levers(seller_grants=1, warehousing=1, shipping_subsidy=1),
    }


PLAYBOOKS: tuple[str, ...] = ("zero", "uniform", "merchant_package", "livestream_first", "commerce_first")


def playbook_intensity(name: str, scenario: "Scenario | str") -> np.ndarray:
    """The ``(n_regions, 7)`` intensities of a named playbook in a scenario."""
    if isinstance(scenario, str):
        scenario = load_scenario(scenario)
    rows = _playbook_rows(scenario)
    if name not in rows:
        raise ValueError(f"unknown policy '{name}'; allowed: {', '.join(PLAYBOOKS)}")
    intensity = np.tile(rows[name](), (len(scenario.regions), 1))
    if name != "merchant_package":  # the commission at the reference rate: no discount (model v2's null action)
        intensity[:, market.RATE] = market.null_intensity(scenario.to_params())[:, market.RATE]
    return intensity


def make_policy(name: str, scenario: "Scenario | str") -> Policy:
    """A reference policy by name (see the module docstring)."""
    return ConstantPolicy(playbook_intensity(name, scenario), name=name)


# --------------------------------------------------------------------------- plans and learned models
# The planners (agents.planners) fit best_static and the oracle; these are the faces their
# plans, and a trained model, are played through.


class OpenLoopPlanPolicy(Policy):
    """Per-episode open-loop plans played by quarter (the clairvoyant oracle's face).

    ``plans``: intensities ``(n_episodes, T, n_regions, 7)`` in [0, 1]. ``predict(obs)`` takes
    the observations of all episodes at once, row i being episode i (the order the plans were
    made in, i.e. the evaluation seeds' order), and plays each row's plan at the current quarter.

    The quarter is read from the observation's ``time_left`` feature
    (``quarter = round((1 - time_left) * T)``) rather than from an internal counter: ``predict``
    is then a pure function of its input, so an extra call (or a reset the policy was not told
    about) cannot put it out of step with the env. Past the horizon the last quarter is repeated.
    """

    def __init__(self, plans: np.ndarray, n_regions: int, name: str = "oracle"):
        plans = np.asarray(plans, dtype=np.float64)
        if plans.ndim != 4 or plans.shape[2:] != (n_regions, market.N_LEVERS):
            raise ValueError(f"plans must have shape (n_episodes, T, {n_regions}, {market.N_LEVERS}), got {plans.shape}")
        if np.any(plans < 0) or np.any(plans > 1) or not np.all(np.isfinite(plans)):
            raise ValueError("plan intensities must lie in [0, 1]")
        self.plans = plans
        self.name = name
        self.horizon = plans.shape[1]
        self._time_left = n_regions * len(market.REGION_FEATURES) + market.GLOBAL_FEATURES.index("time_left")
        self._actions = np.stack([market.intensity_to_action(plans[:, t]) for t in range(self.horizon)], axis=1)

    def quarter(self, obs: np.ndarray) -> np.ndarray:
        """Quarter index (0-based) of each observation row."""
        t = np.rint((1.0 - obs[:, self._time_left].astype(np.float64)) * self.horizon).astype(np.int64)
        return np.clip(t, 0, self.horizon - 1)

    def predict(self, obs, state=None, episode_start=None, deterministic=True):
        obs = np.asarray(obs)
        single = obs.ndim == 1
        batch = obs[None] if single else obs
        if batch.shape[0] != self.plans.shape[0]:
            raise ValueError(f"{self.name} holds plans for {self.plans.shape[0]} episodes, got {batch.shape[0]} observations")
        actions = self._actions[np.arange(batch.shape[0]), self.quarter(batch)]
        return (actions[0] if single else actions), None


class NormalizedPolicy(Policy):
    """A trained model behind the policy face: ``predict(obs) -> (action, None)``.

    Raw observations (as the envs return them) are normalised with the run's ``VecNormalize``
    statistics before the model sees them (``normalize_obs`` reads the statistics, it never
    updates them); actions are deterministic.
    """

    def __init__(self, model, vecnormalize, name: str = "ppo"):
        self.model = model
        self.vecnormalize = vecnormalize
        self.name = name

    def predict(self, obs, state: Any = None, episode_start: Any = None, deterministic: bool = True):
        obs = np.asarray(obs, dtype=np.float32)
        single = obs.ndim == 1
        batch = obs[None] if single else obs
        normed = self.vecnormalize.normalize_obs(batch) if self.vecnormalize is not None else batch
        action, _ = self.model.predict(normed, deterministic=deterministic)
        return (action[0] if single else action), None
