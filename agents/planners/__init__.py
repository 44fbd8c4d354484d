"""Planners: the best constant plan and the clairvoyant per-episode oracle, by CMA-ES.

* :mod:`agents.planners.static`: ``best_static``, the best constant allocation on training seeds.
* :mod:`agents.planners.schedule`: the best open-loop schedule on average (the oracle's start).
* :mod:`agents.planners.oracle`: the oracle, an open-loop plan per episode on its own future.
* :mod:`agents.planners.search`: CMA-ES in lockstep on [0, 1] and the batched scorers.
* :mod:`agents.planners.model`: start states, the env's action encoding, plans' value (cumulative reward).

The planners' training seeds come from :mod:`agents.seeds` (disjoint from evaluation seeds).
"""

from agents.planners.oracle import OraclePlans, oracle, oracle_policy
from agents.planners.schedule import SchedulePlan, best_schedule
from agents.planners.static import BASELINE_ITERATIONS, BASELINE_SEEDS, StaticPlan, best_static, best_static_policy

__all__ = ["BASELINE_ITERATIONS", "BASELINE_SEEDS", "OraclePlans", "SchedulePlan", "StaticPlan", "best_schedule", "best_static", "best_static_policy", "oracle", "oracle_policy"]
