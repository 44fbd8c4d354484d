"""Cost-constrained PPO in stable-baselines3: PPO on the reward ``r - lambda * c``.

The constraint itself (the problem, the multiplier rules, their settings) is
:mod:`agents.constraint`; this module wires it into SB3 pieces, not a copy of PPO::

    SB3VecEnv -> VecMonitor (raw GMV in rollout/ep_rew_mean)
        -> CostPenaltyWrapper (reads info["cost"], sums episode costs, reward r - lambda*c)
        -> VecNormalize (normalises the *penalised* reward)
        -> PPO
    LagrangianCallback: at each rollout end, the cost signal (below)
        -> multiplier.update(signal) -> wrapper.multiplier; logs constraint/*.

The cost signal (``algo_params``): the mean, or the ``cost_quantile``, of the episode costs of
either the episodes finished in the rollout (``cost_signal: sampled``, the textbook rule) or of
the current policy's *mean action* on ``probe_episodes`` fixed episodes (``mean_action``).
Why the second: PPO trains a Gaussian policy and SB3 clips its samples to the action box, so a
lever held off still spends whenever the noise lifts it; the sampled policy spends more than the
mean action that evaluation and deployment play (measured on ``global``: 3.86 against 3.04 $B
an episode), and a multiplier that holds the sampled spend at the limit leaves a quarter of the
budget unused. The probe holds the played policy's spend at the limit instead; a quantile aims
at the limit episode by episode, not only on average (on the probe episodes, once the multiplier
has settled: the README's constraint benchmark measures how far held-out episodes follow).

TensorBoard (every rollout): ``constraint/lambda``, ``constraint/episode_cost`` (mean $B of the
training episodes finished in the rollout), ``constraint/cost_limit`` ($B),
``constraint/violation_rate`` (share of those episodes over the limit) and
``constraint/signal_cost`` (the cost the multiplier compared with the limit, $B).

Resume: the multiplier's state is an attribute of the model (``model.lagrangian``), so it is in
every checkpoint's ``model_*.zip`` together with the weights it belongs to, and ``--resume``
continues it. A readable copy of the latest state is written to ``<run>/lagrangian.json``.

The algorithm needs ``budget.mode: soft``: in ``hard`` mode the env projects every action onto
the budget, the cost can never exceed the limit and the multiplier has nothing to do.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
from stable_baselines3.common.callbacks import BaseCallback
from stable_baselines3.common.vec_env import VecEnv, VecEnvWrapper

from agents.config import ConfigError, LagrangianParams, TrainConfig
from agents.constraint import Multiplier, cost_signal, intensity_at_limit, make_multiplier, over_limit
from agents.io import atomic_write_json
from agents.policies import NormalizedPolicy
from agents.ppo import PPOAlgorithm
from agents.rollout import episode_totals, rollout_policy
from agents.seeds import COST_PROBE_SEED_BASE
from envs.ensemble import load_ensemble
from envs.scenario import Scenario, ScenarioError, load_scenario

CONSTRAINT_TAGS = ("constraint/lambda", "constraint/episode_cost", "constraint/cost_limit", "constraint/violation_rate", "constraint/signal_cost")
STATE_FILE = "lagrangian.json"


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
    """Update the multiplier once per rollout from the cost signal (the module docstring); log it.

    The multiplier's state lives in ``model.lagrangian`` (saved in every checkpoint) and in
    ``<run_dir>/lagrangian.json``.
    """

    def __init__(self, multiplier: Multiplier, run_dir: Path | None = None, verbose: int = 0,
                 probe: "Callable[[Any, Any], np.ndarray] | None" = None, quantile: float | None = None):
        """``probe(model, vecnormalize)``: the episode costs ($B) of the model's mean action on
        fixed episodes (``None``: the rollout's finished training episodes are the signal);
        ``quantile``: compare this quantile of the costs with the limit (``None``: their mean)."""
        super().__init__(verbose)
        self.multiplier = multiplier
        self.run_dir = Path(run_dir) if run_dir is not None else None
        self.wrapper: CostPenaltyWrapper | None = None
        self.probe = probe
        self.quantile = quantile

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
        sampled = self.wrapper.pop_finished()
        limit = self.multiplier.cost_limit
        if sampled:
            self.logger.record("constraint/episode_cost", float(np.mean(sampled)))
            self.logger.record("constraint/violation_rate", float(np.mean(over_limit(sampled, limit))))
        costs = self.probe(self.model, self.model.get_vec_normalize_env()) if self.probe is not None else sampled
        if len(costs):
            signal = cost_signal(costs, self.quantile)
            self.multiplier.update(signal)
            self.wrapper.multiplier = self.multiplier.multiplier
            self.model.lagrangian = self.multiplier.state_dict()
            self.logger.record("constraint/signal_cost", signal)
            if self.run_dir is not None:
                atomic_write_json(self.run_dir / STATE_FILE, {
                    "timesteps": int(self.num_timesteps), "cost_limit": limit, "signal_cost": signal,
                    "episode_cost": float(np.mean(sampled)) if sampled else None, **self.multiplier.state_dict()})
        self.logger.record("constraint/lambda", self.multiplier.multiplier)
        self.logger.record("constraint/cost_limit", limit)


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

    def build_model(self, config: TrainConfig, env: VecEnv, scenario: Scenario, device: str = "cpu", verbose: int = 0):
        model = super().build_model(config, env, scenario, device=device, verbose=verbose)
        model.lagrangian = None  # set by LagrangianCallback; saved with the model
        if self.params(config).start_at_limit:
            u0 = intensity_at_limit(scenario, self.cost_limit(config, scenario))
            with torch.no_grad():
                model.policy.action_net.bias.fill_(2.0 * u0 - 1.0)
        return model

    def callbacks(self, config: TrainConfig, scenario: Scenario, run_dir: Path) -> list[BaseCallback]:
        params = self.params(config)
        multiplier = make_multiplier(params, self.cost_limit(config, scenario))
        probe = None
        if params.cost_signal == "mean_action":
            ensemble = None if config.scenario_ensemble is None else load_ensemble(config.scenario_ensemble)
            probe = MeanActionCost(scenario, [COST_PROBE_SEED_BASE + k for k in range(params.probe_episodes)], ensemble)
        return [LagrangianCallback(multiplier, run_dir, probe=probe, quantile=params.cost_quantile)]


class MeanActionCost:
    """``probe(model, vecnormalize)``: the episode costs ($B) of the model's mean action (the
    policy evaluation plays) on the training scenario's episodes ``seeds``, observations
    normalised with the training statistics (read, not updated)."""

    def __init__(self, scenario: Scenario, seeds: list[int], ensemble=None):
        self.scenario, self.seeds, self.ensemble = scenario, list(seeds), ensemble

    def __call__(self, model, vecnormalize) -> np.ndarray:
        trajectories = rollout_policy(NormalizedPolicy(model, vecnormalize), self.scenario, self.seeds, ensemble=self.ensemble)
        return episode_totals(trajectories.cost)


ALGORITHM = LagrangianAlgorithm()
