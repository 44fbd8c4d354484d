"""The best open-loop schedule on average over training seeds: what timing is worth.

One CMA-ES (full covariance) finds the per-quarter plan ``(T, R, 7)`` with the highest mean
cumulative GMV over training seeds, first on a few knots per lever-region schedule (piecewise
linear over the quarters: 84 numbers for ``global`` with 4 knots), then on every quarter (252
numbers). It is not clairvoyant: every episode gets the same plan. It is the common start of the
oracle's per-episode searches (:mod:`agents.planners.oracle`), most of whose gain it holds.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Sequence

import numpy as np

from agents.planners.model import planning_params, quantise
from agents.planners.search import average_scorer, knot_maps, lockstep, per_quarter
from envs import market
from envs.scenario import Scenario


@dataclass
class SchedulePlan:
    """The best open-loop schedule on average over training seeds (not clairvoyant)."""

    plan: np.ndarray
    """(T, n_regions, 7) intensities per quarter, quantised."""
    gmv_mean: float
    warm_gmv_mean: float
    seeds: list[int]
    evaluations: int
    seconds: float
    history: list[float] = field(default_factory=list)


def best_schedule(
    scenario: Scenario,
    seeds: Sequence[int],
    warm_start: np.ndarray,
    *,
    knots: int = 4,
    knot_iterations: int = 150,
    refine_iterations: int = 200,
    popsize: int | None = 24,
    sigma0: float = 0.08,
    refine_sigma0: float = 0.03,
    cma_seed: int = 3,
) -> SchedulePlan:
    """The per-quarter plan ``(T, R, 7)`` with the highest mean cumulative GMV over ``seeds``.

    Started from, and never below, ``warm_start`` (``(R, 7)`` or ``(T, R, 7)``): first
    ``knot_iterations`` generations on ``knots`` knots, then ``refine_iterations`` on every
    quarter.
    """
    t0 = time.perf_counter()
    params = planning_params(scenario)
    T, R, L = params.horizon, params.n_regions, market.N_LEVERS
    warm = quantise(np.broadcast_to(np.asarray(warm_start, dtype=np.float64), (T, R, L)))
    counter: dict = {}
    full = per_quarter(T, R)
    score_full = average_scorer(params, list(seeds), full, counter)
    warm_flat = warm.reshape(1, -1)
    best_x, best_f = warm_flat, score_full(warm_flat[None])[0]
    warm_f = float(best_f[0])
    history: list[float] = []
    if knots and knot_iterations > 0:
        to_plans, to_knots = knot_maps(T, R, knots)
        kx, kf = lockstep(
            to_knots(warm[None]), average_scorer(params, list(seeds), to_plans, counter),
            iterations=knot_iterations, sigma0=sigma0, seed=cma_seed, popsize=popsize, history=history,
        )
        if kf[0] > best_f[0]:
            best_x, best_f = to_plans(kx).reshape(1, -1), kf
    if refine_iterations > 0:
        best_x, best_f = lockstep(
            best_x, score_full, iterations=refine_iterations, sigma0=refine_sigma0, seed=cma_seed + 1,
            popsize=popsize, best_x=best_x, best_f=best_f, history=history,
        )
    return SchedulePlan(
        plan=quantise(full(best_x)[0]), gmv_mean=float(best_f[0]), warm_gmv_mean=warm_f, seeds=list(seeds),
        evaluations=counter.get("evaluations", 0), seconds=time.perf_counter() - t0, history=history,
    )
