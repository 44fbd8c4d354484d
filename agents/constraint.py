"""The budget constraint: what "over the limit" means, the fair scenario of a reference policy,
and the Lagrange multiplier rules of cost-constrained PPO.

The problem (a constrained MDP, soft budget mode): maximise expected episode GMV subject to
expected episode cost ``J_c = E[sum_t c_t] <= d``, where ``c_t = info["cost"]`` is the quarter's
incentive spend ($B) and the limit ``d`` is the scenario's ``budget.total`` ($B; or
``algo_params.cost_limit``). The Lagrangian relaxation trains PPO on ``r_t - lambda * c_t`` and
moves ``lambda >= 0`` toward the smallest value at which the policy respects the limit.
``r`` and ``c`` are both $B, so ``lambda`` reads as *GMV dollars a policy must gain for each extra
dollar of spend*: at the constrained optimum it is the marginal GMV of one more $ of budget
(the slope of the budget frontier, ``scripts/frontier.py``).

A :class:`Multiplier` is updated once per rollout from an episode cost ``J_c``: the mean (or a
quantile) of the costs of the training episodes finished in the rollout, or of the current
policy's mean action on fixed probe episodes (``algo_params.cost_signal``; why the second is the
shipped choice: :mod:`agents.lagrangian`). Both rules work on the *relative* violation
``delta = (J_c - d) / d`` so that the gains do not depend on the budget's size:

* ``pid`` (:class:`PIDLagrangian`): Stooke, Achiam and Abbeel (2020), "Responsive Safety in
  Reinforcement Learning by PID Lagrangian Methods", as OmniSafe's ``CPPOPID``
  (``omnisafe/common/pid_lagrange.py``): ``lambda = clip(kp * EMA(delta) + I + kd * D, 0,
  lambda_max)`` with the integral ``I = max(0, I + ki * delta)`` and ``D`` the rise of the EMA of
  the cost over the last ``d_delay`` updates (only rises count); the integral is also kept
  below ``lambda_max`` (anti-windup: after a long overspend the multiplier can fall at once).
  The proportional and derivative terms damp the oscillation a pure integral (gradient) update
  shows.
* ``gradient`` (:class:`GradientLagrangian`): plain projected gradient ascent on the dual,
  ``lambda = clip(lambda + lr * delta, 0, lambda_max)``.

Their settings, ``lambda_init`` included, come from the config
(:class:`agents.config.LagrangianParams`, ``algo_params`` of ``ppo_lagrangian``, valued in
``configs/train/ppo_lagrangian.yaml``); the rules have no defaults of their own. The SB3 wiring
(reward penalty, callback, the algorithm) is :mod:`agents.lagrangian`.
"""

from __future__ import annotations

from collections import deque
from typing import Any, Protocol

import numpy as np

from agents.config import LagrangianParams
from agents.planners.model import start_states
from agents.seeds import LIMIT_PROBE_SEEDS
from envs import market
from envs.scenario import Scenario

#: relative tolerance of "over the limit" (float sums of quarterly costs)
OVER_LIMIT_RTOL = 1e-9


def over_limit(cost, limit: float):
    """``cost > limit`` up to float rounding (:data:`OVER_LIMIT_RTOL`); elementwise on arrays."""
    return np.asarray(cost) > limit * (1 + OVER_LIMIT_RTOL)


def cost_signal(costs, quantile: float | None) -> float:
    """The episode cost ``J_c`` a multiplier compares with the limit: the mean of the episode
    costs (the expected-cost constraint), or their ``quantile`` (numpy's default, linear
    interpolation)."""
    costs = np.asarray(costs, dtype=np.float64)
    return float(np.mean(costs) if quantile is None else np.quantile(costs, quantile))


def scaled_to_limit(scenario: Scenario) -> Scenario:
    """The scenario in which a reference policy plays "scaled to the limit" in soft mode.

    A reference policy (playbook, ``best_static``, ``oracle``) knows nothing of a soft limit;
    for a fair comparison with a cost-constrained agent its spend levers are scaled each
    quarter by ``k = min(1, cap / cost)``: exactly the hard-budget projection. So the fair
    scenario is the same one with ``budget.mode: hard`` (unchanged if it already is); costs
    and GMV are then reported as usual. Evaluation rolls the reference policies out on
    ``scaled_to_limit(run.scenario)`` and the learned policy on ``run.scenario``.
    """
    if scenario.budget.mode == "hard":
        return scenario
    return scenario.model_copy(update={"budget": scenario.budget.model_copy(update={"mode": "hard"})})


def intensity_at_limit(scenario: Scenario, cost_limit: float, seeds: tuple[int, ...] = LIMIT_PROBE_SEEDS) -> float:
    """The uniform lever intensity whose episodes spend ``cost_limit`` ($B) on average (bisection).

    Why: a fresh policy's mean action 0 is intensity 0.5 everywhere, about 3.5 times the
    ``global`` budget. Starting there, the multiplier winds up while PPO slowly learns to spend
    less, then overshoots for long (measured: lambda near 28, cost half the limit). Starting the
    policy's mean at the limit keeps the multiplier near its equilibrium from the first rollout;
    PPO then learns where to spend, not how much.
    """
    params = scenario.to_params()
    states = start_states(params, list(seeds))
    shape = (states.n, params.horizon, params.n_regions, market.N_LEVERS)

    def cost(u: float) -> float:
        return float(market.rollout(params, states, np.full(shape, u))["cost"].sum(axis=1).mean())

    if cost(1.0) <= cost_limit:
        return 1.0
    low, high = 0.0, 1.0
    for _ in range(20):
        mid = 0.5 * (low + high)
        low, high = (mid, high) if cost(mid) <= cost_limit else (low, mid)
    return low


# --------------------------------------------------------------------------- multipliers


class Multiplier(Protocol):
    """A Lagrange multiplier rule: ``update`` once per rollout, state saved with the model."""

    cost_limit: float
    multiplier: float
    updates: int

    def update(self, episode_cost: float) -> float:
        """One update from the mean episode cost ($B) of the latest rollout; returns lambda."""

    def state_dict(self) -> dict[str, Any]: ...

    def load_state_dict(self, state: dict[str, Any]) -> None: ...


def _check_limit(cost_limit: float) -> float:
    if not cost_limit > 0:
        raise ValueError(f"cost_limit must be > 0, got {cost_limit}")
    return float(cost_limit)


class PIDLagrangian:
    """PID Lagrange multiplier (Stooke et al. 2020; OmniSafe's ``PIDLagrangian``).

    :param cost_limit: ``d``, the episode cost limit ($B).
    :param kp, ki, kd: gains on the relative violation ``delta = (J_c - d) / d``.
    :param d_delay: the derivative compares the cost EMA with its value ``d_delay`` updates ago.
    :param delta_p_ema_alpha: EMA weight of the past for the proportional term.
    :param delta_d_ema_alpha: EMA weight of the past for the cost used by the derivative.
    :param lambda_init: start of the multiplier (and of the integral).
    :param lambda_max: cap of the multiplier.
    """

    def __init__(self, cost_limit: float, *, kp: float, ki: float, kd: float, d_delay: int,
                 delta_p_ema_alpha: float, delta_d_ema_alpha: float, lambda_init: float, lambda_max: float):
        self.cost_limit = _check_limit(cost_limit)
        self.kp, self.ki, self.kd = float(kp), float(ki), float(kd)
        self.d_delay = int(d_delay)
        self.delta_p_ema_alpha, self.delta_d_ema_alpha = float(delta_p_ema_alpha), float(delta_d_ema_alpha)
        self.lambda_max = float(lambda_max)
        self.integral = float(lambda_init)
        self.delta_p = 0.0
        self.cost_d = 0.0
        self.cost_ds: deque[float] = deque([0.0], maxlen=self.d_delay)
        self.multiplier = min(float(lambda_init), self.lambda_max)
        self.updates = 0

    def update(self, episode_cost: float) -> float:
        delta = (float(episode_cost) - self.cost_limit) / self.cost_limit
        # anti-windup: the integral alone never needs to exceed the cap (OmniSafe bounds it below only)
        self.integral = min(max(0.0, self.integral + self.ki * delta), self.lambda_max)
        a_p, a_d = self.delta_p_ema_alpha, self.delta_d_ema_alpha
        self.delta_p = a_p * self.delta_p + (1.0 - a_p) * delta
        self.cost_d = a_d * self.cost_d + (1.0 - a_d) * float(episode_cost)
        derivative = max(0.0, (self.cost_d - self.cost_ds[0]) / self.cost_limit)  # only rising cost
        self.cost_ds.append(self.cost_d)
        self.multiplier = float(np.clip(self.kp * self.delta_p + self.integral + self.kd * derivative, 0.0, self.lambda_max))
        self.updates += 1
        return self.multiplier

    def state_dict(self) -> dict[str, Any]:
        return {"update": "pid", "multiplier": self.multiplier, "integral": self.integral, "delta_p": self.delta_p,
                "cost_d": self.cost_d, "cost_ds": list(self.cost_ds), "updates": self.updates}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.multiplier = float(state["multiplier"])
        self.integral = float(state["integral"])
        self.delta_p = float(state["delta_p"])
        self.cost_d = float(state["cost_d"])
        self.cost_ds = deque([float(c) for c in state["cost_ds"]], maxlen=self.d_delay)
        self.updates = int(state["updates"])


class GradientLagrangian:
    """Projected gradient ascent on the dual: ``lambda <- clip(lambda + lr * (J_c - d) / d, 0, lambda_max)``."""

    def __init__(self, cost_limit: float, *, lr: float, lambda_init: float, lambda_max: float):
        self.cost_limit = _check_limit(cost_limit)
        self.lr = float(lr)
        self.lambda_max = float(lambda_max)
        self.multiplier = min(float(lambda_init), self.lambda_max)
        self.updates = 0

    def update(self, episode_cost: float) -> float:
        delta = (float(episode_cost) - self.cost_limit) / self.cost_limit
        self.multiplier = float(np.clip(self.multiplier + self.lr * delta, 0.0, self.lambda_max))
        self.updates += 1
        return self.multiplier

    def state_dict(self) -> dict[str, Any]:
        return {"update": "gradient", "multiplier": self.multiplier, "updates": self.updates}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.multiplier = float(state["multiplier"])
        self.updates = int(state["updates"])


def make_multiplier(params: LagrangianParams, cost_limit: float) -> Multiplier:
    """The multiplier rule ``params.update`` names, for the episode cost limit ``cost_limit`` ($B)."""
    if params.update == "gradient":
        return GradientLagrangian(cost_limit, lr=params.lr, lambda_init=params.lambda_init, lambda_max=params.lambda_max)
    return PIDLagrangian(
        cost_limit, kp=params.kp, ki=params.ki, kd=params.kd, d_delay=params.d_delay,
        delta_p_ema_alpha=params.delta_p_ema_alpha, delta_d_ema_alpha=params.delta_d_ema_alpha,
        lambda_init=params.lambda_init, lambda_max=params.lambda_max,
    )
