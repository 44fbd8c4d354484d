"""Every seed range, in one place.

No policy is ever scored on an episode it was trained or fitted on: the scoring ranges never
overlap the others (the two probes lie inside the training range on purpose: they are training
signals, never scores):

==========================  ===============================  ==================================
range                       who uses it                       seeds
==========================  ===============================  ==================================
training markets            PPO (``agents.ppo``)              ``seed + i``, below 10 000 000
held-out evaluation         training's periodic evaluation,   :data:`EVAL_SEED_BASE` ``+ k``
                            the frontier, the constraint
                            benchmark
``scripts/evaluate.py``     every policy of a report          :data:`DEFAULT_EVAL_SEED` ``+ k``
                                                              by default (``--seed``)
planners' training seeds    ``best_static``, the oracle's     :data:`TRAIN_SEED_BASE` ``+ i``
                            common schedule
spend probe                 cost-constrained PPO's start      :data:`LIMIT_PROBE_SEEDS`
                            (``intensity_at_limit``)
cost probe                  cost-constrained PPO's            :data:`COST_PROBE_SEED_BASE` ``+ k``
                            multiplier (``cost_signal:
                            mean_action``)
==========================  ===============================  ==================================

Episode ``k`` of a list of seeds is the market the vector envs seed with ``seeds[k]``.
"""

from __future__ import annotations

from agents.config import EVAL_SEED_BASE

#: Default first seed of ``scripts/evaluate.py``: above the training markets and the held-out
#: range of training (``EVAL_SEED_BASE + k``), below the planners' training seeds.
DEFAULT_EVAL_SEED = 20_000_000
#: The planners fit on seeds from here on; evaluation seeds must stay below it.
TRAIN_SEED_BASE = 1_000_000_000
#: Episodes on which cost-constrained PPO measures the uniform intensity that spends its limit
#: (a few training-range markets: it only sets where the policy's mean action starts).
LIMIT_PROBE_SEEDS = (1, 2, 3, 4)
#: First of the fixed episodes on which cost-constrained PPO measures its mean action's spend
#: (training-range markets: a training signal, never a score), the same ones at every update so
#: that the multiplier follows the policy and not the draw.
COST_PROBE_SEED_BASE = 9_000_000

__all__ = ["COST_PROBE_SEED_BASE", "DEFAULT_EVAL_SEED", "EVAL_SEED_BASE", "LIMIT_PROBE_SEEDS", "TRAIN_SEED_BASE", "eval_seeds", "training_seeds"]


def eval_seeds(episodes: int, first: int = EVAL_SEED_BASE) -> list[int]:
    """The seeds of ``episodes`` evaluation episodes: ``first, first + 1, ...`` (default: the
    held-out range training never touches)."""
    return [int(first) + k for k in range(int(episodes))]


def training_seeds(n: int, base: int = TRAIN_SEED_BASE) -> list[int]:
    """``n`` seeds for fitting a planner, disjoint from every evaluation seed (``< base``)."""
    return [base + i for i in range(n)]
