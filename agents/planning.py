"""Planners: the best constant plan and the clairvoyant per-episode oracle, by CMA-ES.

Both planners search lever intensities in [0, 1] with CMA-ES (the ``cma`` package, the box
[0, 1] by cma's bound transformation applied to whole populations (:func:`to_unit`), a fixed
seed so a plan is reproducible) and score every candidate by rolling it out
through the one batched model, :func:`envs.market.rollout`: a whole population, for every
episode at once, is one call.

* :func:`best_static` is the best **constant** allocation ``(n_regions, 7)``, the same every
  quarter, maximising the mean cumulative GMV ($B) over training seeds. It is what a
  marketing-mix budget optimiser (Robyn, Meridian) hands a strategist: one allocation for the
  whole plan. The playbooks are scored too and the search starts from the best of them, so
  ``best_static`` is never below a playbook on its training seeds.
* :func:`oracle` is, for each evaluation episode, an **open-loop plan** ``(T, n_regions, 7)``
  optimised on that episode's own random numbers (the start state drawn from the episode's
  seeded generator holds every future shock and suspension draw, see :mod:`envs.market`). It
  sees the future, so no policy can beat it on average: a clairvoyant upper bound, up to the
  optimiser's own gap (CMA-ES with a fixed budget is a local search: on ``global`` a run ten
  times longer moved the plans' GMV by well under 1%, up or down; see the evaluation report).

Oracle search:

1. *common schedule* (:func:`best_schedule`): one CMA-ES finds the best open-loop per-quarter
   plan on average over training seeds, first on a few knots per lever-region schedule
   (piecewise linear over the quarters: 84 numbers for ``global`` with 4 knots), then on every
   quarter (252 numbers). It captures what timing is worth for every episode alike; it starts
   from ``best_static``.
2. *per episode*, all episodes' CMA instances advanced in lockstep, their candidates rolled out
   in one batch, from the better (on that episode) of ``best_static`` and the common schedule.
   This is the clairvoyant part: acting in advance on the episode's own shocks and suspensions.
   First a scale per region and quarter (``T * R`` numbers, 36 for ``global``: moving money
   away from a region-quarter a suspension will waste, to where it pays); then the full
   per-quarter plan with a small step size and a diagonal covariance (sep-CMA: a full
   252 x 252 covariance per episode costs more than the rollouts). An optional per-episode
   knot stage can run between them.

The best plan ever scored is kept, and the warm start is scored first, so the oracle is never
below the warm start on its own episode. Episodes whose futures are identical (a deterministic
scenario, or equal draws) are solved once.

Every candidate is scored exactly as it will be played: intensities pass through the
float32 action encoding of the env (:func:`quantise`), so a plan's GMV here is the GMV the
evaluation measures. In a ``hard`` budget scenario the env's projection makes any plan
feasible and the oracle, like every policy, never exceeds the budget. In ``soft`` mode
nothing is projected: the planners then search under the hard projection, and the oracle
returns the intensities actually applied (:func:`feasible_plan`), which respect the limit in
both modes. ``best_static`` stays a constant allocation; in soft-mode evaluation it is computed
and played on the scenario scaled to the limit (``agents.evaluation.reference_scenario``).
"""

from __future__ import annotations

import time
import warnings
from dataclasses import dataclass, field, replace
from typing import Callable, Sequence

import cma
import numpy as np
from gymnasium.utils import seeding

from envs import market
from envs.scenario import Scenario

#: Training seeds of ``best_static`` start here; evaluation seeds must stay below it.
TRAIN_SEED_BASE = 1_000_000_000


# --------------------------------------------------------------------------- helpers


def training_seeds(n: int, base: int = TRAIN_SEED_BASE) -> list[int]:
    """``n`` seeds for fitting ``best_static``, disjoint from evaluation seeds ``< base``."""
    return [base + i for i in range(n)]


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


#: Width of the quadratic zones of the box transform, as cma's ``BoundTransform`` uses.
_EDGE = 0.05


def to_unit(genotype: np.ndarray) -> np.ndarray:
    """Map CMA-ES's unbounded search space onto the box [0, 1], elementwise and vectorised.

    The transformation of cma's ``BoundTransform`` (the package's default for ``bounds``),
    written for a whole population at once: periodic mirroring into ``[-a, 1 + a]``, identity
    inside ``[a, 1 - a]`` and quadratic near each bound, so an optimum on a bound is a smooth
    optimum of the search space. (cma's own handler repairs one candidate at a time in Python,
    which costs more than the model's rollouts when hundreds of searches run in lockstep.)
    """
    a = _EDGE
    lo, hi = -a, 1.0 + a
    x = lo + np.mod(np.asarray(genotype, dtype=np.float64) - lo, 2.0 * (hi - lo))
    x = np.where(x > hi, 2.0 * hi - x, x)
    y = np.where(x < a, (x - lo) ** 2 / (4.0 * a), x)
    return np.where(x > 1.0 - a, 1.0 - (x - hi) ** 2 / (4.0 * a), y)


def from_unit(intensity: np.ndarray) -> np.ndarray:
    """A genotype that :func:`to_unit` maps to ``intensity`` (in [0, 1])."""
    a = _EDGE
    y = np.clip(np.asarray(intensity, dtype=np.float64), 0.0, 1.0)
    x = np.where(y < a, -a + np.sqrt(4.0 * a * y), y)
    return np.where(y > 1.0 - a, 1.0 + a - np.sqrt(4.0 * a * (1.0 - y)), x)


def _cma(x0: np.ndarray, sigma0: float, seed: int, popsize: int | None, diagonal: bool = False) -> cma.CMAEvolutionStrategy:
    rng = np.random.default_rng(int(seed))
    opts = {
        "seed": int(seed),
        # each instance draws from its own generator (cma's default is numpy's global one, shared
        # by all instances), so an episode's search does not depend on the others in its batch
        "randn": lambda *shape: rng.standard_normal(shape),
        "verbose": -9,
        "verb_log": 0,
        "verb_disp": 0,
        "tolfun": 0.0,  # the iteration budget, not cma's defaults, ends the search (reproducible)
        "tolfunhist": 0.0,
        "tolx": 0.0,
        "tolflatfitness": 10**9,
        "tolstagnation": 10**9,
    }
    if popsize:
        opts["popsize"] = int(popsize)
    if diagonal:
        opts["CMA_diagonal"] = True
    return cma.CMAEvolutionStrategy(from_unit(x0), sigma0, opts)


def _lockstep(
    x0: np.ndarray,
    score: Callable[[np.ndarray], np.ndarray],
    *,
    iterations: int,
    sigma0: float,
    seed: int,
    popsize: int | None,
    diagonal: bool = False,
    best_x: np.ndarray | None = None,
    best_f: np.ndarray | None = None,
    history: list | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Advance one CMA-ES per row of ``x0`` (m, d) in [0, 1] in lockstep, maximising ``score``.

    ``score`` maps candidates (m, p, d) in [0, 1] to values (m, p): all m*p candidates in one
    batch. Returns the best candidate ever scored per row and its value (seeded with
    ``best_x``, ``best_f`` when given, else with ``x0`` scored). Instance i uses seed
    ``seed + i``; a fixed iteration budget (no early stop) keeps runs reproducible.
    """
    m, d = x0.shape
    if best_x is None:
        best_x, best_f = x0.copy(), score(x0[:, None, :])[:, 0]
    best_x, best_f = best_x.copy(), best_f.copy()
    if iterations <= 0:
        return best_x, best_f
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # cma's notes on its internal state, not user errors
        strategies = [_cma(x0[i], sigma0, seed + i, popsize, diagonal) for i in range(m)]
        for _ in range(iterations):
            genotypes = np.stack([np.asarray(es.ask()) for es in strategies])  # (m, p, d)
            candidates = to_unit(genotypes)
            values = score(candidates)
            for i, es in enumerate(strategies):
                es.tell(list(genotypes[i]), list(-values[i]))
            top = values.argmax(axis=1)
            top_values = values[np.arange(m), top]
            better = top_values > best_f
            best_x[better] = candidates[better, top[better]]
            best_f[better] = top_values[better]
            if history is not None:
                history.append(float(best_f.mean()))
    return best_x, best_f


# --------------------------------------------------------------------------- best static


def _average_scorer(params: market.Params, seeds: Sequence[int], to_plans: Callable[[np.ndarray], np.ndarray], counter: dict):
    """``score(candidates (1, p, d)) -> (1, p)``: each candidate's mean cumulative GMV over the
    futures of ``seeds`` (identical futures simulated once, weighted by their count)."""
    states = start_states(params, seeds)
    reps, group = unique_futures(params, states)
    weights = np.bincount(group, minlength=len(reps)) / len(seeds)
    base = states.take(reps)

    def score(candidates: np.ndarray) -> np.ndarray:
        cand = quantise(to_plans(candidates.reshape(candidates.shape[1], -1)))
        p = cand.shape[0]
        plans = np.tile(cand, (len(reps),) + (1,) * (cand.ndim - 1))  # market-major, as State.repeat
        gmv = cumulative_gmv(params, base.repeat(p), plans).reshape(len(reps), p)
        counter["evaluations"] = counter.get("evaluations", 0) + p
        return (weights[:, None] * gmv).sum(axis=0)[None]

    return score


@dataclass
class StaticPlan:
    """The best constant allocation found and how it was found."""

    intensity: np.ndarray
    """(n_regions, 7) lever intensities in [0, 1] (already quantised to the env's encoding)."""
    gmv_mean: float
    """mean cumulative GMV ($B) over the training seeds."""
    seeds: list[int]
    start: str
    """the playbook the search started from."""
    iterations: int
    evaluations: int
    seconds: float
    history: list[float] = field(default_factory=list)
    """best mean cumulative GMV after each CMA generation."""


def best_static(
    scenario: Scenario,
    seeds: Sequence[int] | None = None,
    *,
    iterations: int = 120,
    popsize: int | None = None,
    sigma0: float = 0.25,
    cma_seed: int = 1,
    n_seeds: int = 64,
) -> StaticPlan:
    """The constant allocation with the highest mean cumulative GMV over training ``seeds``.

    :param scenario: a validated scenario.
    :param seeds: training seeds (default :func:`training_seeds` of ``n_seeds``); keep them
        disjoint from the evaluation seeds. Seeds with identical futures count once each but
        are simulated once.
    :param iterations: CMA-ES generations.
    :param popsize: CMA-ES population (default cma's ``4 + 3 ln(d)``, 13 for 21 numbers).
    :param sigma0: initial step size in intensity units.
    :param cma_seed: CMA-ES seed: same inputs, same plan.
    """
    from agents.policies import PLAYBOOKS, playbook_intensity  # policies exposes the planners

    t0 = time.perf_counter()
    seeds = list(training_seeds(n_seeds) if seeds is None else seeds)
    if not seeds:
        raise ValueError("best_static needs at least one training seed")
    params = planning_params(scenario)
    R, L = params.n_regions, market.N_LEVERS
    counter: dict = {}
    score = _average_scorer(params, seeds, lambda x: x.reshape(-1, R, L), counter)

    names = list(PLAYBOOKS)
    books = np.stack([playbook_intensity(name, scenario).ravel() for name in names])
    book_values = score(books[None])[0]
    start = int(book_values.argmax())
    history: list[float] = []
    best_x, best_f = _lockstep(
        books[start][None], score, iterations=iterations, sigma0=sigma0, seed=cma_seed, popsize=popsize,
        best_x=books[start][None], best_f=book_values[start : start + 1], history=history,
    )
    return StaticPlan(
        intensity=quantise(best_x[0].reshape(R, L)),
        gmv_mean=float(best_f[0]),
        seeds=seeds,
        start=names[start],
        iterations=iterations,
        evaluations=counter["evaluations"],
        seconds=time.perf_counter() - t0,
        history=history,
    )


# --------------------------------------------------------------------------- best schedule


def knot_basis(horizon: int, knots: int) -> np.ndarray:
    """(T, K) weights of piecewise-linear interpolation through K evenly spread knots."""
    knots = max(1, min(int(knots), horizon))
    if knots == 1:
        return np.ones((horizon, 1))
    where = np.linspace(0.0, knots - 1.0, horizon)
    basis = np.zeros((horizon, knots))
    low = np.minimum(np.floor(where).astype(int), knots - 2)
    frac = where - low
    basis[np.arange(horizon), low] = 1.0 - frac
    basis[np.arange(horizon), low + 1] = frac
    return basis


def _knot_maps(T: int, R: int, knots: int) -> tuple[Callable, Callable]:
    """(knot values -> plans, plans -> knot values) for ``knots`` knots."""
    basis = knot_basis(T, knots)
    K, L = basis.shape[1], market.N_LEVERS
    average = basis.T / basis.sum(axis=0)[:, None]  # each knot: mean of the quarters it covers
    to_plans = lambda x: np.einsum("tk,nkrl->ntrl", basis, x.reshape(-1, K, R, L))  # noqa: E731
    to_knots = lambda plans: np.einsum("kt,ntrl->nkrl", average, plans.reshape(-1, T, R, L)).reshape(plans.shape[0], -1)  # noqa: E731
    return to_plans, to_knots


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

    One CMA-ES (full covariance): first on ``knots`` knots per lever-region schedule, then on
    every quarter. Started from, and never below, ``warm_start`` (``(R, 7)`` or ``(T, R, 7)``).
    Timing is what it adds to ``best_static``; it is the common start of the oracle's
    per-episode searches, most of whose gain it already holds.
    """
    t0 = time.perf_counter()
    params = planning_params(scenario)
    T, R, L = params.horizon, params.n_regions, market.N_LEVERS
    warm = quantise(np.broadcast_to(np.asarray(warm_start, dtype=np.float64), (T, R, L)))
    counter: dict = {}
    full = lambda x: x.reshape(-1, T, R, L)  # noqa: E731
    score_full = _average_scorer(params, list(seeds), full, counter)
    warm_flat = warm.reshape(1, -1)
    best_x, best_f = warm_flat, score_full(warm_flat[None])[0]
    warm_f = float(best_f[0])
    history: list[float] = []
    if knots and knot_iterations > 0:
        to_plans, to_knots = _knot_maps(T, R, knots)
        kx, kf = _lockstep(
            to_knots(warm[None]), _average_scorer(params, list(seeds), to_plans, counter),
            iterations=knot_iterations, sigma0=sigma0, seed=cma_seed, popsize=popsize, history=history,
        )
        if kf[0] > best_f[0]:
            best_x, best_f = to_plans(kx).reshape(1, -1), kf
    if refine_iterations > 0:
        best_x, best_f = _lockstep(
            best_x, score_full, iterations=refine_iterations, sigma0=refine_sigma0, seed=cma_seed + 1,
            popsize=popsize, best_x=best_x, best_f=best_f, history=history,
        )
    return SchedulePlan(
        plan=quantise(full(best_x)[0]), gmv_mean=float(best_f[0]), warm_gmv_mean=warm_f, seeds=list(seeds),
        evaluations=counter.get("evaluations", 0), seconds=time.perf_counter() - t0, history=history,
    )


# --------------------------------------------------------------------------- oracle


@dataclass
class OraclePlans:
    """Per-episode open-loop plans and what they reach."""

    plans: np.ndarray
    """(n_episodes, T, n_regions, 7) intensities per quarter, quantised to the env's encoding."""
    gmv: np.ndarray
    """(n_episodes,) cumulative GMV ($B) of each plan on its own episode."""
    warm_gmv: np.ndarray
    """(n_episodes,) cumulative GMV of the warm start on the same episode."""
    start_gmv: np.ndarray
    """(n_episodes,) of the better of the warm start and the common schedule (the search's start)."""
    schedule: SchedulePlan | None
    """the common best schedule, if computed"""
    seeds: list[int]
    unique_episodes: int
    per_episode_iterations: int
    seconds: float
    history: list[float] = field(default_factory=list)
    """mean best cumulative GMV over the episodes after each per-episode generation."""


def _search(
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
    T, R, L = params.horizon, params.n_regions, market.N_LEVERS
    m = base.n

    def scorer(to_plans: Callable[[np.ndarray], np.ndarray]) -> Callable[[np.ndarray], np.ndarray]:
        def score(candidates: np.ndarray) -> np.ndarray:
            k, p, _ = candidates.shape
            plans = quantise(to_plans(candidates.reshape(k * p, -1)))
            return cumulative_gmv(params, base.repeat(p), plans).reshape(k, p)

        return score

    history: list[float] = []
    full = lambda x: x.reshape(-1, T, R, L)  # noqa: E731
    flats = [start.reshape(m, -1) for start in starts]
    values = np.stack([scorer(full)(flat[:, None, :])[:, 0] for flat in flats])  # (n_starts, m)
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
        # each region's whole spend in each quarter scaled by 2x in [0, 2] (x = 0.5: the start):
        # few numbers (T*R) for what clairvoyance is mostly about, moving money away from a
        # region and quarter that a suspension or a shock will waste, to where it pays
        start = full(best_flat.copy())
        def scale_scorer(candidates: np.ndarray) -> np.ndarray:
            k, p, _ = candidates.shape
            scales = 2.0 * candidates.reshape(k, p, T, R, 1)
            plans = quantise(np.clip(start[:, None] * scales, 0.0, 1.0)).reshape(k * p, T, R, L)
            return cumulative_gmv(params, base.repeat(p), plans).reshape(k, p)

        sx, sf = _lockstep(
            np.full((m, T * R), 0.5), scale_scorer, iterations=scale_iterations, sigma0=0.1, seed=seed,
            popsize=None, history=history,
        )
        adopt(lambda x: np.clip(start * 2.0 * x.reshape(m, T, R, 1), 0.0, 1.0), sx, sf)

    if knots and knot_iterations > 0:
        to_plans, to_knots = _knot_maps(T, R, knots)
        kx, kf = _lockstep(
            to_knots(best_flat), scorer(to_plans), iterations=knot_iterations, sigma0=sigma0, seed=seed + 3571,
            popsize=popsize, history=history,
        )
        adopt(to_plans, kx, kf)

    if refine_iterations > 0:
        best_flat, best_f = _lockstep(
            best_flat, scorer(full), iterations=refine_iterations, sigma0=refine_sigma0,
            seed=seed + 7919, popsize=popsize, diagonal=True, best_x=best_flat, best_f=best_f,
            history=history,
        )
    return {"plans": full(best_flat), "gmv": best_f, "warm_gmv": values[0], "start_gmv": start_f, "history": history}


def _search_chunk(args: tuple) -> dict:
    params, base, starts, kwargs = args
    return _search(params, base, starts, **kwargs)


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
) -> OraclePlans:
    """Clairvoyant open-loop plans, one per episode, optimised on the episode's own future.

    :param scenario: a validated scenario.
    :param episode_seeds: the evaluation seeds; episode i starts from ``init_state`` with the
        generator ``gymnasium.utils.seeding.np_random(episode_seeds[i])``, as the envs do.
    :param warm_start: intensities ``(R, 7)`` (e.g. ``best_static``), ``(T, R, 7)``, or one plan
        per episode ``(n, T, R, 7)``; always scored, so each plan is at least as good on its
        episode.
    :param schedule_seeds: training seeds for the common schedule (default 16 from
        :func:`training_seeds`, disjoint from evaluation seeds); ``[]`` skips that stage.
    :param schedule_iterations: (knot, per-quarter) generations of :func:`best_schedule`.
    :param scale_iterations: generations of the per-episode region-quarter scale stage.
    :param knots: knots per lever-region schedule of the optional per-episode knot stage.
    :param knot_iterations: its generations (default 0: the common schedule does that part).
    :param refine_iterations: generations of the per-episode per-quarter search (sep-CMA).
    :param popsize: per-episode CMA-ES population (default cma's ``4 + 3 ln(d)``).
    :param cma_seed: the CMA-ES seeds of distinct future i are ``cma_seed + i`` (reproducible).
    :param workers: processes to share the episodes between (the result does not depend on it).
    :param search_episodes: ``refine_iterations`` is the per-episode budget for this many
        distinct futures; ``m`` fewer futures get ``sqrt(search_episodes / m)`` times as many
        generations each (at most 10: a deterministic scenario has one future), so that they
        come closer to the optimum at less total cost.
    """
    t0 = time.perf_counter()
    seeds = [int(s) for s in episode_seeds]
    params = planning_params(scenario)
    T, R, L = params.horizon, params.n_regions, market.N_LEVERS
    states = start_states(params, seeds)
    n = states.n
    warm = np.asarray(warm_start, dtype=np.float64)
    common = warm.shape in ((R, L), (T, R, L))
    if not common and warm.shape != (n, T, R, L):
        raise ValueError(f"warm_start has shape {warm.shape}; expected ({R}, {L}), ({T}, {R}, {L}) or ({n}, {T}, {R}, {L})")
    warm = quantise(np.broadcast_to(warm, (n, T, R, L)) if common else warm)

    schedule = None
    if common and sum(schedule_iterations) > 0 and (schedule_seeds is None or len(schedule_seeds)):
        schedule = best_schedule(
            scenario, training_seeds(16) if schedule_seeds is None else schedule_seeds, warm[0],
            knot_iterations=schedule_iterations[0], refine_iterations=schedule_iterations[1], cma_seed=cma_seed + 1,
        )

    reps, group = unique_futures(params, states)
    # Episodes sharing a future may have different warm starts: then solve them apart.
    if len(reps) < n and not all(np.array_equal(warm[i], warm[reps[group[i]]]) for i in range(n)):
        reps, group = np.arange(n), np.arange(n)
    m = len(reps)
    base = states.take(reps)
    starts = [np.ascontiguousarray(warm[reps])]
    if schedule is not None:
        starts.append(np.broadcast_to(schedule.plan, (m, T, R, L)).copy())
    per_episode = int(refine_iterations) * int(np.clip(np.sqrt(search_episodes / m), 1, 10))
    search = dict(
        scale_iterations=scale_iterations, knots=knots, knot_iterations=knot_iterations, refine_iterations=per_episode,
        popsize=popsize, sigma0=sigma0, refine_sigma0=refine_sigma0,
    )
    workers = max(1, min(int(workers), m))
    if workers == 1:
        found = _search(params, base, starts, seed=cma_seed, **search)
    else:
        import multiprocessing
        from concurrent.futures import ProcessPoolExecutor

        bounds = np.linspace(0, m, workers + 1).astype(int)
        chunks = [
            (params, base.take(np.arange(a, b)), [s[a:b] for s in starts], dict(search, seed=cma_seed + int(a)))
            for a, b in zip(bounds[:-1], bounds[1:])
        ]
        with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("fork")) as pool:
            parts = list(pool.map(_search_chunk, chunks))
        found = {key: np.concatenate([part[key] for part in parts]) for key in ("plans", "gmv", "warm_gmv", "start_gmv")}
        found["history"] = list(np.average([part["history"] for part in parts], axis=0, weights=np.diff(bounds))) if parts[0]["history"] else []

    plans, best_f = quantise(found["plans"]), found["gmv"]
    if not scenario.to_params().hard_budget:
        # soft mode: play the intensities the projection applied, so the limit holds unprojected
        plans = quantise(feasible_plan(params, base, plans))
        best_f = cumulative_gmv(scenario.to_params(), base, plans)
    return OraclePlans(
        plans=plans[group],
        gmv=best_f[group],
        warm_gmv=found["warm_gmv"][group],
        start_gmv=found["start_gmv"][group],
        schedule=schedule,
        seeds=seeds,
        unique_episodes=m,
        per_episode_iterations=per_episode,
        seconds=time.perf_counter() - t0,
        history=[float(h) for h in found["history"]],
    )
