"""The budget frontier: what does one more $B of incentive budget buy?

For a scenario and a list of total budgets ($B over the horizon), the cumulative GMV ($B)
reached at each budget by

* ``best_static``: the best constant allocation (:func:`agents.planners.best_static`, CMA-ES on
  training seeds), played on the evaluation episodes;
* ``oracle``: the clairvoyant per-episode open-loop plan (:func:`agents.planners.oracle`), an
  upper bound;
* ``ppo`` (with ``train=True``): a hard-budget PPO run per budget (``configs/train/ppo.yaml``,
  short training), its deterministic policy on the same episodes. The runs are one sweep on
  Ray Tune (:mod:`agents.sweep`: a local Ray, or a cluster), in a sweep folder that a rerun
  of the same command continues.

Every budget is played in ``hard`` mode (the env projects spending onto the budget), on the
same evaluation episodes (seeds :data:`agents.seeds.EVAL_SEED_BASE` ``+ k``: common random
numbers). The per-quarter cap scales with the total, keeping the scenario's ratio
``per_quarter / total`` (``global``: 0.8 / 4 = 0.2), unless a fixed ``per_quarter`` is given.

Monotone oracle. A larger budget can replay a smaller budget's plan exactly: the intensities
actually applied under the smaller budget (after its projection, :func:`agents.planners.model.feasible_plan`)
spend at most the smaller caps, so under larger caps (total and per-quarter both at least as
large) nothing is projected and the trajectory, hence the GMV, is the same. After the per-budget
searches (run in parallel processes), each budget in increasing order takes, episode by
episode, the better of its own plan and the next smaller budget's applied plan. The oracle's GMV
therefore never falls as the budget grows. ``best_static`` is chosen the same way among the
constant plans found at this and smaller budgets, scored on the training seeds (a constant plan
cannot replay a projected one exactly, so it is not guaranteed monotone).

The marginal GMV per extra $B between consecutive budgets is
``(GMV_k - GMV_{k-1}) / (budget_k - budget_{k-1})``: at the constrained optimum it is what the
Lagrange multiplier of cost-constrained PPO estimates (:mod:`agents.lagrangian`).
"""

from __future__ import annotations

import csv
import io
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import numpy as np

from agents import plots, sweep
from agents.io import atomic_write_json, atomic_write_text
from agents.planners import best_static, oracle
from agents.planners.model import cumulative_gmv, planning_params, quantise, start_states
from agents.rollout import episode_totals, rollout_policy
from agents.runs import load_run
from agents.seeds import eval_seeds, training_seeds
from agents.workers import worker_pool
from envs import market
from envs.scenario import Scenario, load_scenario

DEFAULT_BUDGETS = (1.0, 2.0, 4.0, 8.0)


class FrontierError(ValueError):
    """Bad frontier input (budgets, scenario, options). One line."""


@dataclass(frozen=True)
class Effort:
    """How hard the planners search (defaults: a whole frontier in about a minute on 2 cores).

    :ivar episodes: evaluation episodes per budget (the oracle plans each one).
    :ivar static_iterations: CMA-ES generations of ``best_static``.
    :ivar static_seeds: training seeds ``best_static`` averages over.
    :ivar schedule_seeds: training seeds of the oracle's common-schedule stage.
    :ivar schedule_iterations: (knot, per-quarter) generations of that stage.
    :ivar refine_iterations: per-episode generations of the oracle (per-quarter stage).
    :ivar scale_iterations: per-episode generations of the oracle's region-quarter scale stage.
    """

    episodes: int = 8
    static_iterations: int = 40
    static_seeds: int = 16
    schedule_seeds: int = 8
    schedule_iterations: tuple[int, int] = (40, 40)
    refine_iterations: int = 40
    scale_iterations: int = 20


def check_budgets(budgets: Sequence[float]) -> list[float]:
    """Sorted, distinct, positive budgets; :class:`FrontierError` otherwise."""
    values = [float(b) for b in budgets]
    if not values:
        raise FrontierError("--budgets: give at least one budget in $B, e.g. --budgets 1 2 4 8")
    bad = [b for b in values if not np.isfinite(b) or b <= 0]
    if bad:
        raise FrontierError(f"--budgets: every budget must be a positive number of $B; got {bad[0]:g}")
    if len(set(values)) != len(values):
        raise FrontierError(f"--budgets: budgets must be distinct; got {' '.join(f'{b:g}' for b in values)}")
    return sorted(values)


def budget_overrides(scenario: Scenario, total: float, per_quarter: float | None = None) -> dict[str, Any]:
    """Overrides that give ``scenario`` the total budget ``total`` ($B), in hard mode."""
    return sweep.budget_overrides(scenario, total, per_quarter, mode="hard")


# --------------------------------------------------------------------------- per budget (worker)


def _plan_budget(args: tuple) -> dict:
    """best_static and oracle at one budget (runs in a worker process)."""
    name, overrides, effort = args
    t0 = time.perf_counter()
    scenario = load_scenario(name, overrides)
    static = best_static(scenario, iterations=effort.static_iterations, n_seeds=effort.static_seeds)
    orc = oracle(
        scenario, eval_seeds(effort.episodes), static.intensity,
        schedule_seeds=training_seeds(effort.schedule_seeds), schedule_iterations=tuple(effort.schedule_iterations),
        refine_iterations=effort.refine_iterations, scale_iterations=effort.scale_iterations,
        search_episodes=effort.episodes,  # exactly the generations asked for, however few the futures
    )
    return {"static": static.intensity, "oracle_plans": orc.plans, "seconds": time.perf_counter() - t0}


def _train_budgets(scenario_name: str, budgets: Sequence[float], budget_sets: Sequence[Mapping[str, Any]], timesteps: int, seed: int,
                   sweep_dir: Path, episodes: int, address: str | None, log: Callable[[str], None]) -> list[dict]:
    """A short hard-budget PPO run per budget, as one sweep on Ray Tune (:mod:`agents.sweep`; an
    existing sweep folder is resumed), each run evaluated on the frontier's episodes."""
    spec = sweep.spec_from_dict({
        "name": "frontier_ppo",
        "baseline": None,  # the ratio to best_static is not needed here
        "set": {"scenario": scenario_name, "total_timesteps": int(timesteps), "seed": int(seed), "eval_episodes": min(episodes, 64)},
        "variants": {_variant(b): {"set": {f"overrides.{k}": v for k, v in o.items()}} for b, o in zip(budgets, budget_sets)},
    }, source="frontier --train")
    result = sweep.run_sweep(spec, sweep_dir, resume=(sweep_dir / sweep.SWEEP_FILE).is_file(), address=address, log=log)
    if result.interrupted:
        raise KeyboardInterrupt(f"PPO sweep stopped; rerun the same command to continue it ({sweep_dir})")
    rows = {r[sweep.VARIANT_AXIS]: r for r in result.rows}
    trained = []
    for b in budgets:
        row = rows.get(_variant(b))
        if row is None or row["status"] != "finished":
            raise FrontierError(f"PPO at budget {b:g} failed: {(row or {}).get('error', 'no result')} (see {sweep_dir / sweep.REPORT_MD})")
        run_dir = sweep_dir / row["run_dir"]
        run = load_run(run_dir)
        traj = rollout_policy(run.policy(), run.scenario, eval_seeds(episodes))
        trained.append({"gmv": episode_totals(traj.gmv), "cost": episode_totals(traj.cost), "run_dir": str(run_dir)})
    return trained


def _variant(budget: float) -> str:
    return f"budget_{budget:g}"


# --------------------------------------------------------------------------- frontier


def _marginals(budgets: Sequence[float], gmv: Sequence[float]) -> list[float | None]:
    return [None] + [(gmv[k] - gmv[k - 1]) / (budgets[k] - budgets[k - 1]) for k in range(1, len(budgets))]


def _plan_all(tasks: list[tuple], workers: int) -> list[dict]:
    """Each budget's planning as one task, in ``workers`` processes."""
    workers = max(1, int(workers))
    if workers == 1:
        return [_plan_budget(t) for t in tasks]
    with worker_pool(workers, "spawn") as pool:  # fresh interpreters; they die with this one
        return [f.result() for f in [pool.submit(_plan_budget, t) for t in tasks]]


def _budget_rows(budgets: Sequence[float], scenarios: Sequence[Scenario], planned: list[dict], trained: list[dict],
                 seeds: Sequence[int], effort: Effort) -> list[dict]:
    """One row per budget, in increasing order; the oracle replays the smaller budget's applied
    plan where it does better (monotone, see the module docstring)."""
    rows = []
    previous_applied = None
    statics: list[np.ndarray] = []
    for k, (b, sc, found) in enumerate(zip(budgets, scenarios, planned)):
        params = planning_params(sc)
        states = start_states(params, seeds)
        plans = quantise(found["oracle_plans"])
        gmv = cumulative_gmv(params, states, plans)
        own_gmv = gmv.copy()
        if previous_applied is not None:
            replay = cumulative_gmv(params, states, previous_applied)
            better = replay > gmv
            plans = np.where(better[:, None, None, None], previous_applied, plans)
            gmv = np.maximum(gmv, replay)
        applied = market.rollout(params, states, plans)
        previous_applied = applied["intensity"]
        oracle_cost = applied["cost"].sum(axis=1)

        # best_static: the best of the constant plans found at this and smaller budgets (training seeds)
        statics.append(found["static"])
        train_states = start_states(params, training_seeds(effort.static_seeds))
        scores = [cumulative_gmv(params, train_states, np.broadcast_to(s, (train_states.n,) + s.shape)).mean() for s in statics]
        static = statics[int(np.argmax(scores))]
        static_run = market.rollout(params, states, np.broadcast_to(static, (states.n,) + static.shape))
        row = {
            "budget_total": b,
            "budget_per_quarter": sc.budget.per_quarter,
            "best_static_gmv": float(static_run["gmv"].sum(axis=1).mean()),
            "best_static_cost": float(static_run["cost"].sum(axis=1).mean()),
            "oracle_gmv": float(gmv.mean()),
            "oracle_gmv_own_search": float(own_gmv.mean()),
            "oracle_cost": float(oracle_cost.mean()),
            "oracle_replayed_episodes": int(np.sum(gmv > own_gmv)),
            "plan_seconds": round(found["seconds"], 1),
        }
        if trained:
            row["ppo_gmv"] = float(np.mean(trained[k]["gmv"]))
            row["ppo_cost"] = float(np.mean(trained[k]["cost"]))
            row["ppo_run_dir"] = trained[k]["run_dir"]
        rows.append(row)
    return rows


def compute_frontier(
    scenario: str,
    budgets: Sequence[float] = DEFAULT_BUDGETS,
    *,
    per_quarter: float | None = None,
    overrides: Mapping[str, Any] | None = None,
    effort: Effort = Effort(),
    workers: int = 2,
    train: bool = False,
    timesteps: int = 50_000,
    seed: int = 0,
    runs_dir: Path | None = None,
    address: str | None = None,
    log: Callable[[str], None] = lambda message: None,
) -> dict:
    """GMV against total budget for ``best_static``, ``oracle`` (and ``ppo`` if ``train``).

    :param scenario: a built-in scenario name or a YAML path.
    :param budgets: total budgets in $B (positive, distinct; sorted here).
    :param per_quarter: a fixed per-quarter cap in $B for every budget (default: scaled with
        the total, keeping the scenario's ratio).
    :param overrides: further scenario overrides (the budget keys are set here).
    :param workers: processes for the planners; each budget's search is one task.
    :param train: also train a hard-budget PPO per budget: one sweep on Ray Tune (a local Ray, or
        the cluster at ``address``) into the sweep folder ``runs_dir``, resumed if it exists.
    :returns: a JSON-ready dict with ``rows`` (one per budget) and the settings.
    """
    t0 = time.perf_counter()
    budgets = check_budgets(budgets)
    if per_quarter is not None and not per_quarter > 0:
        raise FrontierError(f"--per-quarter must be a positive number of $B; got {per_quarter:g}")
    base = load_scenario(scenario, dict(overrides or {}))  # ScenarioError: the caller reports it
    budget_sets = [{**dict(overrides or {}), **budget_overrides(base, b, per_quarter)} for b in budgets]
    scenarios = [load_scenario(scenario, o) for o in budget_sets]
    seeds = eval_seeds(effort.episodes)

    planned = _plan_all([(scenario, o, effort) for o in budget_sets], workers)
    log(f"planned {len(budgets)} budgets in {time.perf_counter() - t0:.0f}s")
    trained = []
    if train:
        sweep_dir = Path(runs_dir) if runs_dir is not None else Path("runs") / "frontier" / "ppo"
        trained = _train_budgets(scenario, budgets, budget_sets, timesteps, seed, sweep_dir.resolve(), effort.episodes, address, log)

    rows = _budget_rows(budgets, scenarios, planned, trained, seeds, effort)

    methods = ["best_static", "oracle"] + (["ppo"] if train else [])
    for method in methods:
        for row, marginal in zip(rows, _marginals(budgets, [r[f"{method}_gmv"] for r in rows])):
            row[f"{method}_marginal_gmv_per_b"] = marginal
    return {
        "scenario": scenario,
        "overrides": dict(overrides or {}),
        "budgets": budgets,
        "per_quarter": "scaled with the total" if per_quarter is None else per_quarter,
        "per_quarter_ratio": base.budget.per_quarter / base.budget.total,
        "budget_mode": "hard",
        "episodes": effort.episodes,
        "episode_seeds": [seeds[0], seeds[-1]],
        "effort": asdict(effort),
        "train": {"timesteps": timesteps, "seed": seed} if train else None,
        "methods": methods,
        "rows": rows,
        "wall_seconds": round(time.perf_counter() - t0, 1),
    }


# --------------------------------------------------------------------------- outputs


CSV_FIELDS = ("budget_total", "budget_per_quarter", "best_static_gmv", "best_static_marginal_gmv_per_b", "best_static_cost",
              "oracle_gmv", "oracle_marginal_gmv_per_b", "oracle_cost", "ppo_gmv", "ppo_marginal_gmv_per_b", "ppo_cost")


def frontier_csv(result: dict) -> str:
    fields = [f for f in CSV_FIELDS if f in result["rows"][0]]
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=fields, extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    for row in result["rows"]:
        writer.writerow({k: ("" if row[k] is None else (round(row[k], 4) if isinstance(row[k], float) else row[k])) for k in fields})
    return buffer.getvalue()


def frontier_table(result: dict) -> str:
    """The terminal table: GMV per budget and method, with the marginal GMV per extra $B."""
    methods = result["methods"]
    lines = ["budget $B | " + " | ".join(f"{m} GMV $B (+/$B)" for m in methods)]
    for row in result["rows"]:
        cells = []
        for m in methods:
            marginal = row[f"{m}_marginal_gmv_per_b"]
            cells.append(f"{row[f'{m}_gmv']:.2f}" + (f" (+{marginal:.2f})" if marginal is not None else ""))
        lines.append(f"{row['budget_total']:g} | " + " | ".join(cells))
    return "\n".join(lines)


def write_frontier(result: dict, out: Path) -> dict[str, Path]:
    """Write ``frontier.csv``, ``frontier.json`` and ``frontier.png`` into the folder ``out``
    (atomically; ``scripts/frontier.py`` hands in a checked one, :func:`agents.io.output_folder`)."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    paths = {"csv": out / "frontier.csv", "json": out / "frontier.json", "png": out / "frontier.png"}
    atomic_write_text(paths["csv"], frontier_csv(result))
    atomic_write_json(paths["json"], result)
    plots.plot_frontier(result, paths["png"])
    return paths
