"""Cost-constrained PPO: PPO on the reward ``r - lambda * c`` with a Lagrange multiplier.

The problem (a constrained MDP, soft budget mode): maximise expected episode GMV subject to
expected episode cost ``J_c = E[sum_t c_t] <= d``, where ``c_t = info["cost"]`` is the quarter's
incentive spend ($B) and the limit ``d`` is the scenario's ``budget.total`` ($B; or
``algo_params.cost_limit``). The Lagrangian relaxation trains PPO on ``r_t - lambda * c_t`` and
moves ``lambda >= 0`` toward the smallest value at which the policy respects the limit.
``r`` and ``c`` are both $B, so ``lambda`` reads as *GMV dollars a policy must gain for each extra
dollar of spend*: at the constrained optimum it is the marginal GMV of one more $ of budget
(the slope of the budget frontier, ``scripts/frontier.py``).

Built from stable-baselines3 pieces, not a copy of PPO::

    SB3VecEnv -> VecMonitor (raw GMV in rollout/ep_rew_mean)
        -> CostPenaltyWrapper (reads info["cost"], sums episode costs, reward r - lambda*c)
        -> VecNormalize (normalises the *penalised* reward)
        -> PPO
    LagrangianCallback: at each rollout end, mean cost of the episodes finished in that rollout
        -> multiplier.update(mean_cost) -> wrapper.multiplier; logs constraint/*.

Multiplier updates (``algo_params.update``), both on the *relative* violation
``delta = (J_c - d) / d`` so that the gains do not depend on the budget's size:

* ``pid`` (:class:`PIDLagrangian`): Stooke, Achiam and Abbeel (2020), "Responsive Safety in
  Reinforcement Learning by PID Lagrangian Methods", as OmniSafe's ``CPPOPID``
  (``omnisafe/common/pid_lagrange.py``): ``lambda = clip(kp * EMA(delta) + I + kd * D, 0,
  lambda_max)`` with the integral ``I = max(0, I + ki * delta)`` and ``D`` the rise of the EMA of
  the cost over the last ``d_delay`` updates (only rises count); the integral is also kept
  below ``lambda_max`` (anti-windup: after a long overspend the multiplier can fall at once). The proportional and derivative
  terms damp the oscillation a pure integral (gradient) update shows.
* ``gradient`` (:class:`GradientLagrangian`): plain projected gradient ascent on the dual,
  ``lambda = clip(lambda + lr * delta, 0, lambda_max)``.

TensorBoard (every rollout): ``constraint/lambda``, ``constraint/episode_cost`` (mean $B of the
episodes finished in the rollout), ``constraint/cost_limit`` ($B), ``constraint/violation_rate``
(share of those episodes over the limit).

Resume: the multiplier's state is an attribute of the model (``model.lagrangian``), so it is in
every checkpoint's ``model_*.zip`` together with the weights it belongs to, and ``--resume``
continues it. A readable copy of the latest state is written to ``<run>/lagrangian.json``.

The algorithm needs ``budget.mode: soft``: in ``hard`` mode the env projects every action onto
the budget, the cost can never exceed the limit and the multiplier has nothing to do.
"""

from __future__ import annotations

from collections import deque
from pathlib import Path
from typing import Any

import numpy as np
from stable_baselines3.common.callbacks import BaseCallback
from stable_baselines3.common.vec_env import VecEnv, VecEnvWrapper

from agents.config import ConfigError, LagrangianParams, TrainConfig
from agents.ppo import PPOAlgorithm
from envs.scenario import Scenario, ScenarioError, load_scenario

CONSTRAINT_TAGS = ("constraint/lambda", "constraint/episode_cost", "constraint/cost_limit", "constraint/violation_rate")
STATE_FILE = "lagrangian.json"
#: relative tolerance of "over the limit" (float sums of quarterly costs)
_OVER = 1e-9


# --------------------------------------------------------------------------- multipliers


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

    def __init__(self, cost_limit: float, *, kp: float = 1.0, ki: float = 0.1, kd: float = 0.5, d_delay: int = 5,
                 delta_p_ema_alpha: float = 0.5, delta_d_ema_alpha: float = 0.5, lambda_init: float = 2.0, lambda_max: float = 100.0):
        if not cost_limit > 0:
            raise ValueError(f"cost_limit must be > 0, got {cost_limit}")
        self.cost_limit = float(cost_limit)
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
        """One update from the mean episode cost ($B) of the latest rollout; returns lambda."""
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

    def __init__(self, cost_limit: float, *, lr: float = 0.5, lambda_init: float = 1.0, lambda_max: float = 100.0):
        if not cost_limit > 0:
            raise ValueError(f"cost_limit must be > 0, got {cost_limit}")
        self.cost_limit = float(cost_limit)
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


def make_multiplier(params: LagrangianParams, cost_limit: float) -> PIDLagrangian | GradientLagrangian:
    """The multiplier object ``params.update`` names, for the episode cost limit ``cost_limit`` ($B)."""
    if params.update == "gradient":
        return GradientLagrangian(cost_limit, lr=params.lr, lambda_init=params.lambda_init, lambda_max=params.lambda_max)
    return PIDLagrangian(
        cost_limit, kp=params.kp, ki=params.ki, kd=params.kd, d_delay=params.d_delay,
        delta_p_ema_alpha=params.delta_p_ema_alpha, delta_d_ema_alpha=params.delta_d_ema_alpha,
        lambda_init=params.lambda_init, lambda_max=params.lambda_max,
    )


# --------------------------------------------------------------------------- SB3 pieces


class CostPenaltyWrapper(VecEnvWrapper):
    """Reward ``r - multiplier * info["cost"]``; sums each episode's cost ($B).

    Sits below ``VecNormalize`` (which then normalises the penalised reward) and above
    ``VecMonitor`` (whose episode returns stay raw GMV). Finished episodes' costs wait in
    :attr:`finished` until :meth:`pop_finished`.
    """

    def __init__(self, venv: VecEnv, multiplier: float = 0.0, cost_key: str = "cost"):
        super().__init__(venv)
        self.multiplier = float(multiplier)
        self.cost_key = cost_key
        self.episode_cost = np.zeros(self.num_envs)
        self.finished: list[float] = []

    def reset(self):
        self.episode_cost[:] = 0.0
        return self.venv.reset()

    def step_wait(self):
        obs, reward, dones, infos = self.venv.step_wait()
        cost = np.array([float(info[self.cost_key]) for info in infos])
        self.episode_cost += cost
        for i in np.flatnonzero(dones):
            self.finished.append(float(self.episode_cost[i]))
            self.episode_cost[i] = 0.0
        penalised = (reward - self.multiplier * cost).astype(reward.dtype, copy=False)
        return obs, penalised, dones, infos

    def pop_finished(self) -> list[float]:
        finished, self.finished = self.finished, []
        return finished


def find_penalty_wrapper(env: VecEnv) -> CostPenaltyWrapper:
    """The :class:`CostPenaltyWrapper` in a chain of VecEnv wrappers."""
    node = env
    while node is not None:
        if isinstance(node, CostPenaltyWrapper):
            return node
        node = getattr(node, "venv", None)
    raise ValueError("the training env has no CostPenaltyWrapper (was it built by the ppo_lagrangian algorithm?)")


class LagrangianCallback(BaseCallback):
    """Update the multiplier once per rollout from the finished episodes' mean cost; log it.

    The multiplier's state lives in ``model.lagrangian`` (saved in every checkpoint) and in
    ``<run_dir>/lagrangian.json``.
    """

    def __init__(self, multiplier: PIDLagrangian | GradientLagrangian, run_dir: Path | None = None, verbose: int = 0):
        super().__init__(verbose)
        self.multiplier = multiplier
        self.run_dir = Path(run_dir) if run_dir is not None else None
        self.wrapper: CostPenaltyWrapper | None = None

    def _on_training_start(self) -> None:
        self.wrapper = find_penalty_wrapper(self.training_env)
        saved = getattr(self.model, "lagrangian", None)
        if saved:  # a resumed run continues its multiplier
            self.multiplier.load_state_dict(saved)
        self.wrapper.multiplier = self.multiplier.multiplier
        self.model.lagrangian = self.multiplier.state_dict()

    def _on_step(self) -> bool:
        return True

    def _on_rollout_end(self) -> None:
        costs = self.wrapper.pop_finished()
        limit = self.multiplier.cost_limit
        if costs:
            mean_cost = float(np.mean(costs))
            self.multiplier.update(mean_cost)
            self.wrapper.multiplier = self.multiplier.multiplier
            self.model.lagrangian = self.multiplier.state_dict()
            self.logger.record("constraint/episode_cost", mean_cost)
            self.logger.record("constraint/violation_rate", float(np.mean(np.asarray(costs) > limit * (1 + _OVER))))
            if self.run_dir is not None:
                from agents.io import atomic_write_json

                atomic_write_json(self.run_dir / STATE_FILE, {"timesteps": int(self.num_timesteps), "cost_limit": limit,
                                                              "episode_cost": mean_cost, **self.multiplier.state_dict()})
        self.logger.record("constraint/lambda", self.multiplier.multiplier)
        self.logger.record("constraint/cost_limit", limit)


def intensity_at_limit(scenario: Scenario, cost_limit: float, seeds: tuple[int, ...] = (1, 2, 3, 4)) -> float:
    """The uniform lever intensity whose episodes spend ``cost_limit`` ($B) on average (bisection).

    Why: a fresh policy's mean action 0 is intensity 0.5 everywhere, about 3.5 times the
    ``global`` budget. Starting there, the multiplier winds up while PPO slowly learns to spend
    less, then overshoots for long (measured: lambda near 28, cost half the limit). Starting the
    policy's mean at the limit keeps the multiplier near its equilibrium from the first rollout;
    PPO then learns where to spend, not how much.
    """
    from envs import market
    from agents.planning import start_states

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


def scaled_to_limit(scenario: Scenario) -> Scenario:
    """The scenario in which a reference policy plays "scaled to the limit" in soft mode.

    A reference policy (playbook, ``best_static``, ``oracle``) knows nothing of a soft limit;
    for a fair comparison with a cost-constrained agent its spend levers are scaled each
    quarter by ``k = min(1, cap / cost)``: exactly the hard-budget projection. So the fair
    scenario is the same one with ``budget.mode: hard`` (unchanged if it already is); costs
    and GMV are then reported as usual. Evaluation hook: roll the reference policies out on
    ``scaled_to_limit(run.scenario)`` and the learned policy on ``run.scenario``.
    """
    if scenario.budget.mode == "hard":
        return scenario
    return scenario.model_copy(update={"budget": scenario.budget.model_copy(update={"mode": "hard"})})


# --------------------------------------------------------------------------- the algorithm


class LagrangianAlgorithm(PPOAlgorithm):
    """``algo: ppo_lagrangian``: PPO with the cost penalty wrapper and the multiplier callback."""

    name = "ppo_lagrangian"
    params_model = LagrangianParams

    def params(self, config: TrainConfig) -> LagrangianParams:
        return LagrangianParams.model_validate(config.algo_params)

    def check_config(self, config: TrainConfig, scenario: Scenario | None = None) -> None:
        """What ``algo_params`` alone cannot say: the scenario must be in soft budget mode.

        :raises ConfigError: one line.
        """
        if scenario is None:
            try:
                scenario = load_scenario(config.scenario, config.overrides)
            except ScenarioError as exc:
                raise ConfigError(f"scenario: {exc}") from None
        if scenario.budget.mode != "soft":
            raise ConfigError(
                f"algo 'ppo_lagrangian' needs a soft budget (the limit it learns to respect); scenario '{config.scenario}' "
                f"has budget.mode '{scenario.budget.mode}': set overrides: {{budget.mode: soft}}"
            )

    def cost_limit(self, config: TrainConfig, scenario: Scenario) -> float:
        """The episode cost limit in $B: ``algo_params.cost_limit`` or the scenario's ``budget.total``."""
        limit = self.params(config).cost_limit
        return float(scenario.budget.total if limit is None else limit)

    def wrap_env(self, venv: VecEnv, config: TrainConfig, scenario: Scenario) -> VecEnv:
        self.check_config(config, scenario)
        return CostPenaltyWrapper(venv, multiplier=self.params(config).lambda_init)

    def build_model(self, config: TrainConfig, env: VecEnv):
        model = super().build_model(config, env)
        model.lagrangian = None  # set by LagrangianCallback; saved with the model
        if self.params(config).start_at_limit:
            import torch

            scenario = load_scenario(config.scenario, config.overrides)
            u0 = intensity_at_limit(scenario, self.cost_limit(config, scenario))
            with torch.no_grad():
                model.policy.action_net.bias.fill_(2.0 * u0 - 1.0)
        return model

    def callbacks(self, config: TrainConfig, scenario: Scenario, run_dir: Path) -> list[BaseCallback]:
        multiplier = make_multiplier(self.params(config), self.cost_limit(config, scenario))
        return [LagrangianCallback(multiplier, run_dir)]


ALGORITHM = LagrangianAlgorithm()
