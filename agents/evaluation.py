"""Evaluation: every policy on the same episodes (common random numbers), compared.

:func:`evaluate` rolls every policy out on the episodes ``seed .. seed + episodes - 1``
(:func:`agents.rollout.rollout_policy`) and measures each (:func:`agents.rollout.summarise`),
adding per policy ``budget_mode`` (the budget mode it was played in) and ``ratio_to_oracle``
(``objective_mean / objective_mean`` of the oracle, ``null`` without one: the ratio is taken on
what the policies are asked to maximise, the reward). :func:`reference_policies` builds
the playbooks and the planners (``best_static``, ``oracle``) for a scenario; the report
(``eval.json``, ``report.md``, plots) is :mod:`agents.report`.

Soft budget mode: a reference policy (playbook, ``best_static``, ``oracle``) knows nothing of a
limit it is not forced to respect, so for a fair comparison it is computed and played on
``agents.constraint.scaled_to_limit(scenario)`` (the same scenario with the hard projection, each
quarter's spend scaled down to the limit), while a learned policy plays the soft scenario
itself: ``evaluate(..., scenarios={name: scaled_to_limit(s)})``. Cost and violations are
measured against the one ``budget.total`` for every policy.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, Mapping, Sequence

import numpy as np

from agents.planners import best_static_policy, oracle_policy
from agents.policies import PLAYBOOKS, make_policy
from agents.rollout import bootstrap_ci, episode_totals, rollout_policy, summarise
from agents.seeds import eval_seeds, training_seeds
from envs import market
from envs.ensemble import Ensemble
from envs.scenario import Scenario

PLANNERS = ("best_static", "oracle")
#: percentiles of cumulative GMV over episodes in every policy's figures (``gmv_p10``, ...)
PERCENTILES = (10, 50, 90)


@dataclass
class Evaluation:
    scenario: Scenario
    seed: int
    seeds: list[int]
    metrics: dict
    """name -> figures (with ``ratio_to_oracle``), in evaluation order"""
    trajectories: dict
    """name -> :class:`agents.rollout.Trajectories`"""
    learned: str | None = None
    """name of the learned policy, if any"""
    scenarios: dict | None = None
    """name -> the scenario the policy was played on, where it is not :attr:`scenario`"""
    params: market.Params | None = None
    """the scenario's model parameters (resolved once)"""
    ensemble: Ensemble | None = None
    """the parameter sets the episodes drew from, if any"""

    def __post_init__(self) -> None:
        if self.params is None:
            self.params = self.scenario.to_params()


def evaluate(
    policies: Mapping[str, object],
    scenario: Scenario,
    seed: int = 0,
    episodes: int = 100,
    oracle_name: str = "oracle",
    learned: str | None = None,
    scenarios: Mapping[str, Scenario] | None = None,
    ensemble: Ensemble | None = None,
) -> Evaluation:
    """Roll out every policy on the episodes ``seed .. seed + episodes - 1`` and measure them.

    :param policies: name -> object with ``predict(obs) -> (actions, state)``.
    :param oracle_name: the policy the ratios refer to; without it ``ratio_to_oracle`` is None.
    :param scenarios: name -> the scenario to play that policy on instead of ``scenario`` (in
        soft mode, ``scaled_to_limit(scenario)`` for the reference policies). It must differ from
        ``scenario`` in nothing the figures depend on (same regions, horizon, ``budget.total``):
        every policy is measured against ``scenario``'s limit and target.
    :param ensemble: parameter sets (:mod:`envs.ensemble`): every episode draws one from its seed,
        the same for every policy, so the spread of GMV over episodes includes what is not known.

    Besides :func:`agents.rollout.summarise`'s figures, every policy gets ``gmv_p10``,
    ``gmv_p50`` and ``gmv_p90``: percentiles of cumulative GMV over the episodes ($B).
    """
    params = scenario.to_params()
    seeds = eval_seeds(episodes, seed)
    played = {name: scenario for name in policies}
    for name, other in (scenarios or {}).items():
        if name not in policies:
            raise ValueError(f"scenarios names '{name}', which is not among the policies ({', '.join(policies)})")
        if other.budget.total != scenario.budget.total or other.horizon != scenario.horizon or list(other.regions) != list(scenario.regions):
            raise ValueError(f"the scenario of '{name}' differs from the evaluation's in budget.total, horizon or regions")
        played[name] = other
    trajectories = {name: rollout_policy(policy, played[name], seeds, ensemble) for name, policy in policies.items()}
    metrics = {name: summarise(traj, params) for name, traj in trajectories.items()}
    for name, figures in metrics.items():
        figures["budget_mode"] = played[name].budget.mode
        p10, p50, p90 = np.percentile(episode_totals(trajectories[name].gmv), PERCENTILES)
        figures.update(gmv_p10=float(p10), gmv_p50=float(p50), gmv_p90=float(p90))
    _add_ratios_to_oracle(metrics, trajectories, oracle_name)
    _add_differences(metrics, trajectories, "best_static")
    moved = {name: sc for name, sc in played.items() if sc is not scenario}
    return Evaluation(scenario, int(seed), seeds, metrics, trajectories, learned, moved or None, params, ensemble)


def _add_ratios_to_oracle(metrics: dict, trajectories: dict, oracle_name: str) -> None:
    # on the objective (what every policy is asked to maximise), not on GMV
    oracle_value = metrics[oracle_name]["objective_mean"] if oracle_name in metrics else None
    for name, figures in metrics.items():
        if oracle_value is None or oracle_value <= 0:
            figures["ratio_to_oracle"] = None
        else:
            figures["ratio_to_oracle"] = figures["objective_mean"] / oracle_value
            per_episode = episode_totals(trajectories[name].reward) / episode_totals(trajectories[oracle_name].reward)
            figures["ratio_to_oracle_ci95"] = list(bootstrap_ci(per_episode))


def _add_differences(metrics: dict, trajectories: dict, baseline: str) -> None:
    """Each policy's objective minus the ``baseline``'s, paired by episode (every policy plays the
    same episodes), with a bootstrap CI of that paired difference: the interval "beats
    best_static" rests on (the per-policy intervals overlap though the ranking is clear)."""
    if baseline not in trajectories:
        return
    base = episode_totals(trajectories[baseline].reward)
    for name, figures in metrics.items():
        diff = episode_totals(trajectories[name].reward) - base
        figures[f"objective_minus_{baseline}"] = float(diff.mean())
        figures[f"objective_minus_{baseline}_ci95"] = list(bootstrap_ci(diff))


# --------------------------------------------------------------------------- reference policies


@dataclass(frozen=True)
class PlannerEffort:
    """How hard the planners search (CMA-ES generations; ``scripts/evaluate.py``'s flags)."""

    static_iterations: int = 120
    static_seeds: int = 64
    schedule_iterations: tuple[int, int] = (150, 200)
    oracle_scale_iterations: int = 60
    oracle_iterations: int = 150
    workers: int = 1


def applied_plans(policies: Mapping[str, object], scenario: Scenario, seeds: Sequence[int]) -> dict[str, np.ndarray]:
    """name -> the intensities each policy applied on the episodes ``seeds`` ``(n, T, R, 7)``:
    open-loop plans that replay it on those episodes (the oracle's extra starts)."""
    return {name: rollout_policy(policy, scenario, list(seeds)).intensity for name, policy in policies.items()}


def reference_policies(names: Sequence[str], reference: Scenario, seeds: Sequence[int], effort: PlannerEffort,
                       timings: dict[str, float] | None = None,
                       oracle_starts: Mapping[str, np.ndarray] | None = None) -> tuple[dict[str, Any], dict[str, Any]]:
    """The playbooks and planners among ``names``, computed on ``reference`` (in soft mode the
    scenario scaled to the limit); the oracle plans the episodes ``seeds``, its search started
    on each episode from the best of best_static, its common schedule and ``oracle_starts``
    (name -> plans of :func:`applied_plans`, e.g. the learned policy's), so it is never below
    any of them on an episode.

    Returns ``(policies, extra)``: name -> policy in canonical order (playbooks, ``best_static``,
    ``oracle``), and what the planners found, for ``eval.json``. ``timings`` receives the
    planners' seconds.
    """
    timings = {} if timings is None else timings
    policies: dict[str, Any] = {name: make_policy(name, reference) for name in PLAYBOOKS if name in names}
    extra: dict[str, Any] = {}
    if "best_static" not in names and "oracle" not in names:
        return policies, extra
    t0 = time.perf_counter()
    static = best_static_policy(reference, training_seeds(effort.static_seeds), iterations=effort.static_iterations)
    timings["best_static"] = time.perf_counter() - t0
    plan = static.plan
    extra["best_static"] = {
        "intensity": {r: dict(zip(market.LEVERS, row)) for r, row in zip(reference.regions, plan.intensity.tolist())},
        "train_seeds": len(plan.seeds), "train_reward_mean": plan.value_mean, "started_from": plan.start,
        "iterations": plan.iterations, "evaluations": plan.evaluations,
    }
    if "best_static" in names:
        policies["best_static"] = static
    if "oracle" in names:
        t0 = time.perf_counter()
        oracle = oracle_policy(
            reference, seeds, static.intensity, schedule_iterations=tuple(effort.schedule_iterations),
            scale_iterations=effort.oracle_scale_iterations, refine_iterations=effort.oracle_iterations, workers=effort.workers,
            extra_starts=list((oracle_starts or {}).values()),
        )
        timings["oracle"] = time.perf_counter() - t0
        res = oracle.result
        extra["oracle"] = {
            "planned_reward_mean": float(res.value.mean()),
            "best_static_reward_mean": float(res.warm_value.mean()),
            "search_start_reward_mean": float(res.start_value.mean()),
            "search_started_from": ["best_static", *(["schedule"] if res.schedule else []), *(oracle_starts or {})],
            "distinct_futures": res.unique_episodes,
            "schedule_iterations": list(effort.schedule_iterations),
            "schedule_train_reward_mean": res.schedule.value_mean if res.schedule else None,
            "per_episode_scale_iterations": effort.oracle_scale_iterations,
            "per_episode_iterations": res.per_episode_iterations,
            "gain_last_10_generations": (res.history[-1] - res.history[-11]) if len(res.history) > 10 else None,
        }
        policies["oracle"] = oracle
    return policies, extra
