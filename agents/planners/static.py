"""``best_static``: the best constant allocation, the same every quarter, by CMA-ES.

It is what a marketing-mix budget optimiser (Robyn, Meridian) hands a strategist: one allocation
``(n_regions, 7)`` for the whole plan, maximising the mean cumulative reward ($B) over training
seeds. The playbooks are scored too and the search starts from the best of them, so
``best_static`` is never below a playbook on its training seeds. In soft-mode evaluation it is
computed and played on the scenario scaled to the limit (``agents.constraint.scaled_to_limit``).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Sequence

import numpy as np

from agents.planners.model import planning_params, quantise
from agents.planners.search import average_scorer, lockstep
from agents.policies import PLAYBOOKS, ConstantPolicy, playbook_intensity
from agents.seeds import training_seeds
from envs import market
from envs.scenario import Scenario, load_scenario


#: how hard a training (and the time-to-quality benchmark) searches its ``best_static`` baseline:
#: CMA-ES generations and planners' training seeds. ``scripts/evaluate.py``'s generations on half
#: its seeds: a few seconds at the start of a run (measured on ``global``: ~4 s on a loaded 2-core
#: machine, objective within 0.1% of 64 seeds'; 40 generations stop ~6% lower, barely past the
#: best playbook's GMV).
BASELINE_ITERATIONS = 120
BASELINE_SEEDS = 32


@dataclass
class StaticPlan:
    """The best constant allocation found and how it was found."""

    intensity: np.ndarray
    """(n_regions, 7) lever intensities in [0, 1] (already quantised to the env's encoding)."""
    value_mean: float
    """mean cumulative reward ($B) over the training seeds."""
    seeds: list[int]
    start: str
    """the playbook the search started from."""
    iterations: int
    evaluations: int
    seconds: float
    history: list[float] = field(default_factory=list)
    """best mean cumulative reward after each CMA generation."""


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
    """The constant allocation with the highest mean cumulative reward over training ``seeds``.

    :param scenario: a validated scenario.
    :param seeds: training seeds (default :func:`agents.seeds.training_seeds` of ``n_seeds``);
        keep them disjoint from the evaluation seeds. Seeds with identical futures count once
        each but are simulated once.
    :param iterations: CMA-ES generations.
    :param popsize: CMA-ES population (default cma's ``4 + 3 ln(d)``, 13 for 21 numbers).
    :param sigma0: initial step size in intensity units.
    :param cma_seed: CMA-ES seed: same inputs, same plan.
    """
    t0 = time.perf_counter()
    seeds = list(training_seeds(n_seeds) if seeds is None else seeds)
    if not seeds:
        raise ValueError("best_static needs at least one training seed")
    params = planning_params(scenario)
    R, L = params.n_regions, market.N_LEVERS
    counter: dict = {}
    score = average_scorer(params, seeds, lambda x: x.reshape(-1, R, L), counter)

    names = list(PLAYBOOKS)
    books = np.stack([playbook_intensity(name, scenario).ravel() for name in names])
    book_values = score(books[None])[0]
    start = int(book_values.argmax())
    history: list[float] = []
    best_x, best_f = lockstep(
        books[start][None], score, iterations=iterations, sigma0=sigma0, seed=cma_seed, popsize=popsize,
        best_x=books[start][None], best_f=book_values[start : start + 1], history=history,
    )
    return StaticPlan(
        intensity=quantise(best_x[0].reshape(R, L)),
        value_mean=float(best_f[0]),
        seeds=seeds,
        start=names[start],
        iterations=iterations,
        evaluations=counter["evaluations"],
        seconds=time.perf_counter() - t0,
        history=history,
    )


def best_static_policy(scenario: "Scenario | str", seeds=None, **search) -> ConstantPolicy:
    """``best_static`` behind the policy face (a :class:`ConstantPolicy`).

    :param seeds: training seeds, disjoint from evaluation seeds (default: 64 seeds from
        :data:`agents.seeds.TRAIN_SEED_BASE`).
    :param search: passed on to :func:`best_static` (``iterations``, ``popsize``, ``sigma0``,
        ``cma_seed``, ``n_seeds``). The search result is kept as ``policy.plan``.
    """
    if isinstance(scenario, str):
        scenario = load_scenario(scenario)
    plan = best_static(scenario, seeds, **search)
    policy = ConstantPolicy(plan.intensity, name="best_static")
    policy.plan = plan
    return policy
