"""CMA-ES in lockstep on the box [0, 1], and the scorers it maximises.

The planners search lever intensities in [0, 1] with CMA-ES (the ``cma`` package; the box by
cma's bound transformation applied to whole populations, :func:`to_unit`; a fixed seed so a plan
is reproducible) and score every candidate by rolling it out through the one batched model,
:func:`envs.market.rollout`: a whole population, for every episode at once, is one call
(:func:`scorer`). A plan may be searched in a smaller space than its ``(T, R, 7)`` intensities:
knots of piecewise-linear schedules (:func:`knot_maps`) or scales of a start plan; ``to_plans``
maps the search space onto plans.
"""

from __future__ import annotations

import warnings
from typing import TYPE_CHECKING, Callable, Sequence

import numpy as np

from agents.planners.model import cumulative_gmv, quantise, start_states, unique_futures
from envs import market

if TYPE_CHECKING:
    import cma

Scorer = Callable[[np.ndarray], np.ndarray]


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


def _cma(x0: np.ndarray, sigma0: float, seed: int, popsize: int | None, diagonal: bool = False) -> "cma.CMAEvolutionStrategy":
    import cma  # on first use: cma loads scipy.stats (seconds), which bad-input paths must not wait for

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


def lockstep(
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


def scorer(
    params: market.Params,
    base: market.State,
    to_plans: Callable[[np.ndarray], np.ndarray],
    *,
    weights: np.ndarray | None = None,
    counter: dict | None = None,
) -> Scorer:
    """``score(candidates (k, p, d) in [0, 1]) -> (k, p)``: cumulative GMV ($B) of the plans
    ``to_plans`` makes of the candidates (quantised: as the env will play them).

    :param base: the episodes' start states.
    :param weights: ``None``: row i of the candidates is scored on episode i of ``base``
        (``k == base.n``, one search per episode). Given (one weight per episode of ``base``):
        every candidate of the single row (``k == 1``) is scored on every episode and the
        weighted sum returned (one search for all episodes).
    :param counter: ``counter["evaluations"]`` counts the candidates scored (averaged scorer).
    """

    def per_episode(candidates: np.ndarray) -> np.ndarray:
        k, p, _ = candidates.shape
        plans = quantise(to_plans(candidates.reshape(k * p, -1)))
        return cumulative_gmv(params, base.repeat(p), plans).reshape(k, p)

    def averaged(candidates: np.ndarray) -> np.ndarray:
        cand = quantise(to_plans(candidates.reshape(candidates.shape[1], -1)))
        p = cand.shape[0]
        plans = np.tile(cand, (base.n,) + (1,) * (cand.ndim - 1))  # market-major, as State.repeat
        gmv = cumulative_gmv(params, base.repeat(p), plans).reshape(base.n, p)
        if counter is not None:
            counter["evaluations"] = counter.get("evaluations", 0) + p
        return (weights[:, None] * gmv).sum(axis=0)[None]

    return per_episode if weights is None else averaged


# --------------------------------------------------------------------------- search spaces


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


def knot_maps(T: int, R: int, knots: int) -> tuple[Callable, Callable]:
    """(knot values -> plans, plans -> knot values) for ``knots`` knots."""
    basis = knot_basis(T, knots)
    K, L = basis.shape[1], market.N_LEVERS
    average = basis.T / basis.sum(axis=0)[:, None]  # each knot: mean of the quarters it covers
    to_plans = lambda x: np.einsum("tk,nkrl->ntrl", basis, x.reshape(-1, K, R, L))  # noqa: E731
    to_knots = lambda plans: np.einsum("kt,ntrl->nkrl", average, plans.reshape(-1, T, R, L)).reshape(plans.shape[0], -1)  # noqa: E731
    return to_plans, to_knots




def per_quarter(T: int, R: int) -> Callable[[np.ndarray], np.ndarray]:
    """The identity search space: one number per quarter, region and lever."""
    return lambda x: x.reshape(-1, T, R, market.N_LEVERS)


def average_scorer(params: market.Params, seeds: Sequence[int], to_plans: Callable[[np.ndarray], np.ndarray], counter: dict) -> Scorer:
    """A :func:`scorer` of each candidate's mean cumulative GMV over the futures of ``seeds``
    (identical futures simulated once, weighted by their count)."""
    states = start_states(params, seeds)
    reps, group = unique_futures(params, states)
    weights = np.bincount(group, minlength=len(reps)) / len(seeds)
    return scorer(params, states.take(reps), to_plans, weights=weights, counter=counter)
