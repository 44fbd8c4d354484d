"""The clairvoyant oracle: per evaluation episode, an open-loop plan optimised on its own future.

For each episode, an **open-loop plan** ``(T, n_regions, 7)`` optimised on that episode's own
random numbers (the start state drawn from the episode's seeded generator holds every future
shock and suspension draw, see :mod:`envs.market`). It sees the future, so no policy can beat it
on average: a clairvoyant upper bound, up to the optimiser's own gap (CMA-ES with a fixed budget
is a local search: on ``global`` a run ten times longer moved the plans' value by well under 1%,
up or down; see the evaluation report).

The search, step by step (:func:`oracle`):

1. *common schedule* (:func:`agents.planners.schedule.best_schedule`): the best open-loop
   per-quarter plan on average over training seeds, from the warm start (``best_static``).
2. *distinct futures*: episodes whose futures are identical (a deterministic scenario, or
   equal draws) are solved once.
3. *per episode* (:func:`search_each_episode`), all episodes' CMA instances advanced in lockstep,
   their candidates rolled out in one batch, from the better (on that episode) of the warm
   start and the common schedule. This is the clairvoyant part: acting in advance on the
   episode's own shocks and suspensions. First a scale per region and quarter (``T * R``
   numbers, 36 for ``global``: moving money away from a region-quarter a suspension will waste,
   to where it pays); then the full per-quarter plan with a small step size and a diagonal
   covariance (sep-CMA: a full 252 x 252 covariance per episode costs more than the rollouts).
   An optional per-episode knot stage can run between them. The episodes may be shared between
   processes; the result does not depend on how.
4. *playable plans*: in a ``hard`` budget scenario the env's projection makes any plan feasible
   and the oracle, like every policy, never exceeds the budget. In ``soft`` mode nothing is
   projected: the search ran under the hard projection, and the oracle returns the intensities
   actually applied (:func:`agents.planners.model.feasible_plan`), which respect the limit in
   both modes.

The best plan ever scored is kept, and the warm start is scored first, so the oracle is never
below the warm start on its own episode.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Callable, Sequence

import numpy as np

from agents.planners.model import cumulative_reward, feasible_plan, planning_params, quantise, start_states, unique_futures
from agents.planners.schedule import SchedulePlan, best_schedule
from agents.planners.search import knot_maps, lockstep, per_quarter, scorer
from agents.policies import OpenLoopPlanPolicy
from agents.seeds import training_seeds
from agents.workers import worker_pool
from envs import market
from envs.scenario import Scenario, load_scenario

#: training seeds of the common schedule by default
SCHEDULE_SEEDS = 16
#: the most a few distinct futures multiply the per-episode generations by
MAX_GENERATION_FACTOR = 10


@dataclass
class OraclePlans:
    """Per-episode open-loop plans and what they reach."""

    plans: np.ndarray
    """(n_episodes, T, n_regions, 7) intensities per quarter, quantised to the env's encoding."""
    value: np.ndarray
    """(n_episodes,) cumulative reward ($B) of each plan on its own episode (what the search maximises)."""
    warm_value: np.ndarray
    """(n_episodes,) cumulative reward of the warm start on the same episode."""
    start_value: np.ndarray
    """(n_episodes,) of the better of the warm start and the common schedule (the search's start)."""
    schedule: SchedulePlan | None
    """the common best schedule, if computed"""
    seeds: list[int]
    unique_episodes: int
    per_episode_iterations: int
    seconds: float
    history: list[float] = field(default_factory=list)
    """mean best cumulative reward over the episodes after each per-episode generation."""


# --------------------------------------------------------------------------- the steps


def warm_plans(warm_start: np.ndarray, params: market.Params, n: int) -> tuple[np.ndarray, bool]:
    """The warm start as one quantised plan per episode ``(n, T, R, 7)``, and whether it is
    common to all episodes (given as ``(R, 7)`` or ``(T, R, 7)``)."""
    T, R, L = params.horizon, params.n_regions, market.N_LEVERS
    warm = np.asarray(warm_start, dtype=np.float64)
    common = warm.shape in ((R, L), (T, R, L))
    if not common and warm.shape != (n, T, R, L):
        raise ValueError(f"warm_start has shape {warm.shape}; expected ({R}, {L}), ({T}, {R}, {L}) or ({n}, {T}, {R}, {L})")
    return quantise(np.broadcast_to(warm, (n, T, R, L)) if common else warm), common


def distinct_futures(params: market.Params, states: market.State, warm: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """One representative episode per distinct future and every episode's group; episodes that
    share a future but not a warm start are solved apart."""
    reps, group = unique_futures(params, states)
    n = states.n
    if len(reps) < n and not all(np.array_equal(warm[i], warm[reps[group[i]]]) for i in range(n)):
        return np.arange(n), np.arange(n)
    return reps, group


def generations_per_episode(refine_iterations: int, search_episodes: int, futures: int) -> int:
    """``refine_iterations`` is the budget for ``search_episodes`` distinct futures; fewer futures
    get ``sqrt(search_episodes / futures)`` times as many generations each (at most
    :data:`MAX_GENERATION_FACTOR`), coming closer to the optimum at less total cost."""
    return int(refine_iterations) * int(np.clip(np.sqrt(search_episodes / futures), 1, MAX_GENERATION_FACTOR))


def _region_quarter_scales(start: np.ndarray) -> Callable[[np.ndarray], np.ndarray]:
    """Plans from scales: each region's whole spend in each quarter of ``start`` (m, T, R, L)
    scaled by ``2x`` in [0, 2] (``x = 0.5``: the start itself)."""
    m, T, R, L = start.shape
    return lambda x: np.clip(start[:, None] * (2.0 * x.reshape(m, -1, T, R, 1)), 0.0, 1.0).reshape(-1, T, R, L)


def search_each_episode(
    params: market.Params,
    base: market.State,
    starts: list[np.ndarray],
    *,
    seed: int,
    scale_iterations: int,
    knots: int,
    knot_iterations: int,
    refine_iterations: int,
    popsize: int | None,
    sigma0: float,
    refine_sigma0: float,
) -> dict:
    """The oracle's search for the episodes ``base`` (m markets) from candidate plans ``starts``
    (each (m, T, R, L)): the best candidate of each episode is where its search starts.

    Stages, each from the best plan so far: region-quarter scales (``scale_iterations``), knots
    (``knot_iterations``), every quarter (``refine_iterations``, sep-CMA). Row i's CMA-ES
    instances use seeds ``seed + i``, ``seed + 3571 + i`` and ``seed + 7919 + i``, so a row's
    result does not depend on which other rows share its batch.
    """
    T, R = params.horizon, params.n_regions
    m = base.n
    full = per_quarter(T, R)
    history: list[float] = []
    flats = [start.reshape(m, -1) for start in starts]
    values = np.stack([scorer(params, base, full)(flat[:, None, :])[:, 0] for flat in flats])  # (n_starts, m)
    choice = values.argmax(axis=0)
    best_flat = np.stack([flats[c][i] for i, c in enumerate(choice)])
    best_f = values[choice, np.arange(m)]
    start_f = best_f.copy()

    def adopt(to_plans: Callable[[np.ndarray], np.ndarray], x: np.ndarray, f: np.ndarray) -> None:
        better = f > best_f
        if better.any():
            best_flat[better] = to_plans(x)[better].reshape(int(better.sum()), -1)
            best_f[better] = f[better]

    if scale_iterations > 0:
        # few numbers (T*R) for what clairvoyance is mostly about: moving money away from a
        # region and quarter that a suspension or a shock will waste, to where it pays
        to_plans = _region_quarter_scales(full(best_flat.copy()))
        sx, sf = lockstep(
            np.full((m, T * R), 0.5), scorer(params, base, to_plans), iterations=scale_iterations, sigma0=0.1, seed=seed,
            popsize=None, history=history,
        )
        adopt(to_plans, sx, sf)

    if knots and knot_iterations > 0:
        to_plans, to_knots = knot_maps(T, R, knots)
        kx, kf = lockstep(
            to_knots(best_flat), scorer(params, base, to_plans), iterations=knot_iterations, sigma0=sigma0, seed=seed + 3571,
            popsize=popsize, history=history,
        )
        adopt(to_plans, kx, kf)

    if refine_iterations > 0:
        best_flat, best_f = lockstep(
            best_flat, scorer(params, base, full), iterations=refine_iterations, sigma0=refine_sigma0,
            seed=seed + 7919, popsize=popsize, diagonal=True, best_x=best_flat, best_f=best_f,
            history=history,
        )
    return {"plans": full(best_flat), "value": best_f, "warm_value": values[0], "start_value": start_f, "history": history}


def _search_chunk(args: tuple) -> dict:
    params, base, starts, kwargs = args
    return search_each_episode(params, base, starts, **kwargs)


def search_in_processes(params: market.Params, base: market.State, starts: list[np.ndarray], search: dict, *, seed: int, workers: int) -> dict:
    """:func:`search_each_episode` with the episodes split between ``workers`` processes (row i's
    seeds stay ``seed + i``, so the result is the same as in one process)."""
    m = base.n
    workers = max(1, min(int(workers), m))
    if workers == 1:
        return search_each_episode(params, base, starts, seed=seed, **search)
    bounds = np.linspace(0, m, workers + 1).astype(int)
    chunks = [
        (params, base.take(np.arange(a, b)), [s[a:b] for s in starts], dict(search, seed=seed + int(a)))
        for a, b in zip(bounds[:-1], bounds[1:])
    ]
    with worker_pool(workers, "fork") as pool:  # the workers end with this block, or with this process
        parts = list(pool.map(_search_chunk, chunks))
    found = {key: np.concatenate([part[key] for part in parts]) for key in ("plans", "value", "warm_value", "start_value")}
    found["history"] = list(np.average([part["history"] for part in parts], axis=0, weights=np.diff(bounds))) if parts[0]["history"] else []
    return found


def playable(played: market.Params, params: market.Params, base: market.State, plans: np.ndarray, value: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Plans as they will be played under ``played`` (the scenario's own parameters) and their
    value: in soft mode the intensities the projection applied, so the limit holds unprojected."""
    plans = quantise(plans)
    if played.hard_budget:
        return plans, value
    plans = quantise(feasible_plan(params, base, plans))
    return plans, cumulative_reward(played, base, plans)


# --------------------------------------------------------------------------- the oracle


def oracle(
    scenario: Scenario,
    episode_seeds: Sequence[int],
    warm_start: np.ndarray,
    *,
    schedule_seeds: Sequence[int] | None = None,
    schedule_iterations: tuple[int, int] = (150, 200),
    scale_iterations: int = 60,
    knots: int = 4,
    knot_iterations: int = 0,
    refine_iterations: int = 150,
    popsize: int | None = None,
    sigma0: float = 0.08,
    refine_sigma0: float = 0.03,
    cma_seed: int = 2,
    workers: int = 1,
    search_episodes: int = 100,
    extra_starts: Sequence[np.ndarray] = (),
) -> OraclePlans:
    """Clairvoyant open-loop plans, one per episode, optimised on the episode's own future.

    :param scenario: a validated scenario.
    :param episode_seeds: the evaluation seeds; episode i starts from ``init_state`` with the
        generator ``gymnasium.utils.seeding.np_random(episode_seeds[i])``, as the envs do.
    :param warm_start: intensities ``(R, 7)`` (e.g. ``best_static``), ``(T, R, 7)``, or one plan
        per episode ``(n, T, R, 7)``; always scored, so each plan is at least as good on its
        episode.
    :param schedule_seeds: training seeds for the common schedule (default
        :data:`SCHEDULE_SEEDS` from :func:`agents.seeds.training_seeds`); ``[]`` skips that stage.
    :param schedule_iterations: (knot, per-quarter) generations of the common schedule.
    :param scale_iterations: generations of the per-episode region-quarter scale stage.
    :param knots: knots per lever-region schedule of the optional per-episode knot stage.
    :param knot_iterations: its generations (default 0: the common schedule does that part).
    :param refine_iterations: generations of the per-episode per-quarter search (sep-CMA).
    :param popsize: per-episode CMA-ES population (default cma's ``4 + 3 ln(d)``).
    :param cma_seed: the CMA-ES seeds of distinct future i are ``cma_seed + i`` (reproducible).
    :param workers: processes to share the episodes between (the result does not depend on it).
    :param search_episodes: see :func:`generations_per_episode`.
    :param extra_starts: more candidate starts, each one plan per episode ``(n, T, R, 7)``: the
        intensities other policies applied on these episodes (a learned policy's, say), so the
        search starts from the best of them on each episode and the oracle is never below any
        of them on its own episode (a closed-loop policy can otherwise beat an open-loop
        search that starts far from it).
    """
    t0 = time.perf_counter()
    seeds = [int(s) for s in episode_seeds]
    params = planning_params(scenario)
    T, R, L = params.horizon, params.n_regions, market.N_LEVERS
    states = start_states(params, seeds)
    warm, common = warm_plans(warm_start, params, states.n)

    schedule = None
    if common and sum(schedule_iterations) > 0 and (schedule_seeds is None or len(schedule_seeds)):
        schedule = best_schedule(
            scenario, training_seeds(SCHEDULE_SEEDS) if schedule_seeds is None else schedule_seeds, warm[0],
            knot_iterations=schedule_iterations[0], refine_iterations=schedule_iterations[1], cma_seed=cma_seed + 1,
        )

    reps, group = distinct_futures(params, states, warm)
    m = len(reps)
    base = states.take(reps)
    starts = [np.ascontiguousarray(warm[reps])]
    if schedule is not None:
        starts.append(np.broadcast_to(schedule.plan, (m, T, R, L)).copy())
    for extra in extra_starts:
        extra = np.asarray(extra, dtype=np.float64)
        if extra.shape != (states.n, T, R, L):
            raise ValueError(f"an extra start has shape {extra.shape}; expected one plan per episode {(states.n, T, R, L)}")
        starts.append(np.ascontiguousarray(quantise(extra)[reps]))
    per_episode = generations_per_episode(refine_iterations, search_episodes, m)
    search = dict(
        scale_iterations=scale_iterations, knots=knots, knot_iterations=knot_iterations, refine_iterations=per_episode,
        popsize=popsize, sigma0=sigma0, refine_sigma0=refine_sigma0,
    )
    found = search_in_processes(params, base, starts, search, seed=cma_seed, workers=workers)
    plans, value = playable(scenario.to_params(), params, base, found["plans"], found["value"])
    return OraclePlans(
        plans=plans[group],
        value=value[group],
        warm_value=found["warm_value"][group],
        start_value=found["start_value"][group],
        schedule=schedule,
        seeds=seeds,
        unique_episodes=m,
        per_episode_iterations=per_episode,
        seconds=time.perf_counter() - t0,
        history=[float(h) for h in found["history"]],
    )


def oracle_policy(scenario: "Scenario | str", episode_seeds, warm_start: np.ndarray, **search) -> OpenLoopPlanPolicy:
    """The oracle behind the policy face: per-episode clairvoyant plans (:func:`oracle`) for the
    episodes ``episode_seeds``, warm-started from ``warm_start`` (e.g. best_static's
    intensities). Play it on exactly those episodes, in that order. The search result is kept
    as ``policy.result``."""
    if isinstance(scenario, str):
        scenario = load_scenario(scenario)
    result = oracle(scenario, episode_seeds, warm_start, **search)
    policy = OpenLoopPlanPolicy(result.plans, len(scenario.regions), name="oracle")
    policy.result = result
    return policy
