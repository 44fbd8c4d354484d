"""Rollouts and their figures: every policy (learned, playbook, planner) is measured here.

:func:`rollout_policy` plays a policy on a list of episode seeds in one batch through the native
vector env (:class:`envs.SocialCommerceVectorEnv`): episode i is seeded with ``seeds[i]``, so two
policies given the same seeds face the same demand shocks and suspensions (common random
numbers), and a policy's ``predict(obs)`` is called once a quarter with the observations of every
episode. It returns :class:`Trajectories`: per episode and quarter, GMV, annualised run rate,
reward, cost, cash spend, the quarter's cost cap, revenue, spend by region and lever, suspensions.

:func:`summarise` turns them into one set of figures, under these names:

========================  ====================================================================
``gmv_mean``              cumulative GMV over the horizon, $B, mean over episodes
``gmv_ci95``              95% bootstrap confidence interval of that mean
``run_rate_final_mean``   annualised, de-seasonalised GMV run rate of the last quarter, $B
``target_reached_rate``   share of episodes ending at or above ``target_run_rate``
``run_rate_exit_mean``    the run rate the business keeps: the exit quarter's (the quarter after
                          the horizon at the null action, no shock), annualised, $B a year
``target_reached_exit_rate``  share of episodes whose exit run rate reaches ``target_run_rate``
``cost_mean``             incentive spend over the horizon, $B
``violation_rate``        share of episodes spending more than ``budget.total`` (soft mode)
``revenue_mean``          commission, shop ads and private-label margin over the horizon, $B
``objective_mean``        cumulative reward over the horizon, $B: the scenario's objective
                          (``objective_value``: GMV, revenue or contribution) plus the terminal
                          value of the business left at the horizon; what the policies are asked
                          to maximise (with ``kind: gmv``, ``terminal_value: 0``: ``gmv_mean``)
``contribution_mean``     revenue minus cash spend over the horizon, $B
``net_burn_mean``         cash spend minus revenue over the horizon, $B
``gmv_std``               standard deviation of cumulative GMV over episodes, $B
========================  ====================================================================

``eval.json`` (:mod:`agents.report`) publishes them under these names. Training's ``summary.json``,
its TensorBoard tags and the constraint benchmark publish some of them under older names; the
maps :data:`SUMMARY_KEYS`, :data:`EVAL_TAG_KEYS` and :data:`BENCHMARK_KEYS` are the one place
that says which.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping, Sequence

import numpy as np

from agents.constraint import over_limit
from envs import market
from envs.ensemble import Ensemble
from envs.scenario import Scenario
from envs.vector import SocialCommerceVectorEnv

CONFIDENCE = 0.95
BOOTSTRAP_RESAMPLES = 2000
BOOTSTRAP_SEED = 12345

#: figure -> ``summary.json`` key (training's final held-out evaluation)
SUMMARY_KEYS = {
    "gmv_mean": "eval_gmv_mean",
    "gmv_std": "eval_gmv_std",
    "cost_mean": "eval_cost_mean",
    "run_rate_final_mean": "eval_final_run_rate_mean",
    "run_rate_exit_mean": "eval_exit_run_rate_mean",
    "target_reached_rate": "eval_target_reached_rate",
    "revenue_mean": "eval_revenue_mean",
    "objective_mean": "eval_objective_mean",
    "contribution_mean": "eval_contribution_mean",
    "net_burn_mean": "eval_net_burn_mean",
}
#: figure -> TensorBoard tag (training's periodic held-out evaluation)
EVAL_TAG_KEYS = {
    "gmv_mean": "eval/gmv_mean",
    "cost_mean": "eval/cost_mean",
    "run_rate_final_mean": "eval/final_run_rate_mean",
    "run_rate_exit_mean": "eval/exit_run_rate_mean",
    "objective_mean": "eval/objective_mean",
    "revenue_mean": "eval/revenue_mean",
    "contribution_mean": "eval/contribution_mean",
    "net_burn_mean": "eval/net_burn_mean",
}
#: figure -> TensorBoard tag of training's own episodes (:class:`agents.callbacks.MarketLoggerCallback`;
#: the figure of one episode, the tag's value the mean over the rollout's finished episodes)
MARKET_TAG_KEYS = {
    "gmv_mean": "market/gmv_episode",
    "run_rate_final_mean": "market/gmv_run_rate_final",
    "run_rate_exit_mean": "market/exit_run_rate",
    "cost_mean": "market/cost_episode",
    "revenue_mean": "market/revenue_episode",
    "objective_mean": "market/objective_episode",
    "contribution_mean": "market/contribution_episode",
    "net_burn_mean": "market/net_burn_episode",
}
#: figure -> key of a run's row in ``constraint_benchmark.json``
BENCHMARK_KEYS = {
    "gmv_mean": "gmv_mean",
    "cost_mean": "cost_mean",
    "violation_rate": "violation_rate",
    "run_rate_final_mean": "final_run_rate_mean",
    "objective_mean": "objective_mean",
    "revenue_mean": "revenue_mean",
    "contribution_mean": "contribution_mean",
    "net_burn_mean": "net_burn_mean",
}


def publish(figures: Mapping[str, float], keys: Mapping[str, str]) -> dict[str, float]:
    """The figures ``keys`` names, under their public names (in the order of ``keys``)."""
    return {public: figures[name] for name, public in keys.items()}


# --------------------------------------------------------------------------- rollouts


@dataclass
class Trajectories:
    """One policy's episodes, quarter by quarter. Leading axes ``(n_episodes, T)``; $B."""

    gmv: np.ndarray
    run_rate: np.ndarray
    reward: np.ndarray
    """objective_value + terminal_value"""
    cost: np.ndarray
    """cash_spend + commission_discount"""
    cash_spend: np.ndarray
    cost_limit: np.ndarray
    revenue: np.ndarray
    budget_remaining: np.ndarray
    gmv_region: np.ndarray
    """(n, T, R)"""
    spend: np.ndarray
    """(n, T, R, L) spend by region and lever after any projection"""
    intensity: np.ndarray
    """(n, T, R, L) intensities actually applied"""
    suspended: np.ndarray
    """(n, T, R) region suspended during the quarter (known before the decision)"""
    clipped: np.ndarray
    """(n,) actions outside [-1, 1] clipped by the env over the episode"""
    exit_run_rate: np.ndarray
    """(n,) the run rate the business keeps after the horizon: the exit quarter (the quarter
    after the last, at the null action) annualised and de-seasonalised, $B a year"""


def rollout_policy(policy, scenario: Scenario, seeds: Sequence[int], ensemble: Ensemble | None = None) -> Trajectories:
    """Play ``policy`` on the episodes ``seeds`` in one batch through the native vector env.

    ``policy.predict(obs)`` receives the ``(n_episodes, obs_dim)`` observations of every
    episode, row i being the episode seeded ``seeds[i]``, and returns ``(actions, state)``.
    With an ``ensemble``, each episode plays the parameter set its seed draws (the same set for
    every policy given the same seeds).
    """
    env = SocialCommerceVectorEnv(num_envs=len(seeds), scenario=scenario, ensemble=ensemble)
    p = env.params
    names = p.region_names
    obs, info = env.reset(seed=[int(s) for s in seeds])
    if hasattr(policy, "reset"):
        policy.reset()
    rows: dict[str, list] = {k: [] for k in Trajectories.__dataclass_fields__ if k not in ("clipped", "exit_run_rate")}
    clipped = np.zeros(len(seeds), dtype=np.int64)
    for _ in range(p.horizon):
        suspended = np.stack([info["suspended"][r] for r in names], axis=1)
        action, _ = policy.predict(obs, deterministic=True)
        obs, reward, terminated, truncated, info = env.step(np.asarray(action, dtype=np.float32))
        rows["gmv"].append(info["gmv"])
        rows["run_rate"].append(info["gmv_run_rate"])
        rows["reward"].append(reward)
        rows["cost"].append(info["cost"])
        rows["cash_spend"].append(info["cash_spend"])
        rows["cost_limit"].append(info["cost_limit"])
        rows["revenue"].append(info["revenue"])
        rows["budget_remaining"].append(info["budget_remaining"])
        rows["gmv_region"].append(np.stack([info["gmv_by_region"][r] for r in names], axis=1))
        rows["intensity"].append(info["lever_intensity"])
        rows["spend"].append(info["spend_by_region_lever"])
        rows["suspended"].append(suspended)
        clipped += info["clipped_actions"]
    env.close()
    arrays = {k: np.stack(v, axis=1).astype(np.float64) for k, v in rows.items()}
    arrays["suspended"] = arrays["suspended"] > 0
    return Trajectories(**arrays, clipped=clipped, exit_run_rate=np.asarray(info["exit_run_rate"], dtype=np.float64))


# --------------------------------------------------------------------------- figures


def episode_totals(per_quarter: np.ndarray) -> np.ndarray:
    """Per-episode totals of an ``(n_episodes, T)`` array, summed quarter by quarter (as the env
    accumulates ``cost_total``, so the totals are the env's to the last bit)."""
    return np.cumsum(per_quarter, axis=1)[:, -1]


def bootstrap_ci(values: np.ndarray, confidence: float = CONFIDENCE) -> tuple[float, float]:
    """95% percentile-bootstrap CI of the mean (fixed seed), widened to contain the mean.

    One episode, or episodes all equal, give the degenerate interval ``[mean, mean]``.
    """
    from scipy import stats  # on first use: seconds to import, and the commands' bad-input paths need none of it

    values = np.asarray(values, dtype=np.float64)
    mean = float(values.mean())
    if values.size < 2 or np.ptp(values) <= 1e-12 * max(1.0, abs(mean)):
        return mean, mean
    res = stats.bootstrap(
        (values,), np.mean, confidence_level=confidence, n_resamples=BOOTSTRAP_RESAMPLES,
        method="percentile", rng=np.random.default_rng(BOOTSTRAP_SEED), vectorized=True,
    )
    lo, hi = float(res.confidence_interval.low), float(res.confidence_interval.high)
    if not (np.isfinite(lo) and np.isfinite(hi)):
        return mean, mean
    return min(lo, mean), max(hi, mean)


def summarise(traj: Trajectories, params: market.Params) -> dict:
    """A policy's figures over its episodes (see the module docstring), measured against
    ``params``' budget and target."""
    gmv = episode_totals(traj.gmv)
    cost = episode_totals(traj.cost)
    final = traj.run_rate[:, -1]
    revenue = episode_totals(traj.revenue)
    contribution = episode_totals(traj.revenue - traj.cash_spend)
    return {
        "gmv_mean": float(gmv.mean()),
        "gmv_ci95": list(bootstrap_ci(gmv)),
        "run_rate_final_mean": float(final.mean()),
        "run_rate_final_ci95": list(bootstrap_ci(final)),
        "target_reached_rate": float((final >= params.target_run_rate).mean()),
        "run_rate_exit_mean": float(traj.exit_run_rate.mean()),
        "target_reached_exit_rate": float((traj.exit_run_rate >= params.target_run_rate).mean()),
        "cost_mean": float(cost.mean()),
        "cost_ci95": list(bootstrap_ci(cost)),
        "violation_rate": float(over_limit(cost, params.budget_total).mean()),
        "revenue_mean": float(revenue.mean()),
        "objective_mean": float(episode_totals(traj.reward).mean()),
        "contribution_mean": float(contribution.mean()),
        "net_burn_mean": float(-contribution.mean()),
        "gmv_std": float(gmv.std()),
    }


def measure(policy, scenario: Scenario, seeds: Sequence[int], params: market.Params | None = None) -> dict:
    """:func:`summarise` of :func:`rollout_policy`: ``policy`` on ``scenario``'s episodes
    ``seeds``, measured against ``params`` (default: the scenario's own)."""
    traj = rollout_policy(policy, scenario, seeds)
    return summarise(traj, scenario.to_params() if params is None else params)
