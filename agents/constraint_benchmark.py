"""The constraint benchmark: hard budget, soft budget without and with the constraint.

Three variants, each trained from its default config with several seeds and evaluated on
held-out seeds (:func:`agents.seeds.eval_seeds`, never seen in training), in the OmniSafe
benchmark style (mean and spread over training seeds):

===================  ==========================================  ==============================
variant              config                                       what it shows
===================  ==========================================  ==============================
``ppo_hard``         ``configs/train/ppo.yaml``                   the env enforces the budget
``ppo_soft``         the same, ``overrides.budget.mode=soft``     nothing enforces it: overspends
``ppo_lagrangian``   ``configs/train/ppo_lagrangian.yaml``        the agent learns to respect it
===================  ==========================================  ==============================

Per variant: cumulative GMV ($B per episode) and episode cost ($B) against the limit
(``budget.total``), violation rate (episodes over the limit), GMV relative to ``ppo_hard``, and
the objective (cumulative reward), revenue, contribution (revenue - cash spend) and net burn.
Each training seed's figures are means over the evaluation episodes; the table gives the mean
and the standard deviation of those over training seeds. Targets: ``ppo_lagrangian``
mean episode cost at most 1.05 x the limit, GMV at least 0.97 x ``ppo_hard``'s;
``ppo_soft`` overspends.

The trainings are one sweep on Ray Tune (:mod:`agents.sweep`): on this machine one run per core
at a time, or on a Ray cluster. An interrupted benchmark continues where it stopped (finished
runs are kept, unfinished ones continue from their last checkpoint).
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from agents import runs, sweep
from agents.config import CONFIG_DIR, parse_sets
from agents.constraint import over_limit
from agents.io import atomic_write_json, atomic_write_text
from agents.rollout import BENCHMARK_KEYS, episode_totals, publish, rollout_policy, summarise
from agents.seeds import eval_seeds


@dataclass(frozen=True)
class Variant:
    name: str
    label: str
    config: Path
    sets: tuple[str, ...] = ()


VARIANTS: tuple[Variant, ...] = (
    Variant("ppo_hard", "PPO, hard budget (env projects)", CONFIG_DIR / "ppo.yaml"),
    Variant("ppo_soft", "PPO, soft budget, no constraint", CONFIG_DIR / "ppo.yaml", ("overrides.budget.mode=soft",)),
    Variant("ppo_lagrangian", "PPO-Lagrangian (PID), soft budget", CONFIG_DIR / "ppo_lagrangian.yaml"),
)
VARIANT_NAMES = tuple(v.name for v in VARIANTS)

COST_TOLERANCE = 1.05  # cost-constrained PPO: mean episode cost at most 5% over the limit
GMV_RATIO_TARGET = 0.97  # ... and GMV at least 0.97 of hard-budget PPO's


def benchmark_spec(variants: Sequence[str] = VARIANT_NAMES, seeds: Sequence[int] = (0, 1, 2), timesteps: int | None = None) -> sweep.SweepSpec:
    """The benchmark as one sweep: the chosen variants crossed with the training seeds."""
    chosen = [v for v in VARIANTS if v.name in variants]
    doc: dict = {
        "name": "constraint_benchmark",
        "baseline": None,  # the ratio to best_static is not needed here
        "seeds": [int(s) for s in seeds],
        "variants": {v.name: {"config": str(v.config), "set": parse_sets(v.sets)} for v in chosen},
    }
    if timesteps is not None:
        doc["set"] = {"total_timesteps": int(timesteps)}
    return sweep.spec_from_dict(doc, source="constraint benchmark")


class BenchmarkError(ValueError):
    """The output folder cannot hold this benchmark (a file, or foreign content). One line."""


#: what this benchmark writes into its folder; anything else there is the user's
OWN_ENTRIES = ("sweep", "constraint_benchmark.json", "constraint_benchmark.md")


def check_out(out: Path) -> None:
    """``out`` is new, or a folder of an earlier (maybe stopped) benchmark, which is continued
    (its sweep must have the same settings: :func:`agents.sweep.check_sweep_dir`)."""
    if not os.path.lexists(out):
        return
    if out.is_symlink() or not out.is_dir():
        raise BenchmarkError(f"--out {out} exists and is not a folder; give a folder for the runs, the table and the JSON")
    foreign = sorted(p.name for p in out.iterdir() if p.name not in OWN_ENTRIES)
    if foreign:
        raise BenchmarkError(f"--out {out} holds {', '.join(foreign[:3])}, which this benchmark did not write; choose another --out")


def evaluate_run(run_dir: Path, episodes: int) -> dict[str, float]:
    """The run's deterministic policy on ``episodes`` held-out seeds, in the mode it trained in."""
    run = runs.load_run(run_dir)
    params = run.scenario.to_params()
    traj = rollout_policy(run.policy(), run.scenario, eval_seeds(episodes))
    figures = publish(summarise(traj, params), BENCHMARK_KEYS)
    return {
        **figures,
        "cost_max": float(episode_totals(traj.cost).max()),
        "cost_limit": float(run.scenario.budget.total),
        "budget_mode": run.scenario.budget.mode,
    }


def _spread(values: Sequence[float]) -> dict[str, float]:
    values = np.asarray(values, dtype=float)
    return {"mean": float(values.mean()), "std": float(values.std(ddof=1)) if len(values) > 1 else 0.0}


def aggregate(per_seed: dict[str, list[dict]]) -> dict[str, dict]:
    """Mean and spread over training seeds of each variant's evaluation figures."""
    out: dict[str, dict] = {}
    for name, rows in per_seed.items():
        limit = rows[0]["cost_limit"]
        out[name] = {
            "seeds": [r["seed"] for r in rows],
            "budget_mode": rows[0]["budget_mode"],
            "cost_limit": limit,
            "gmv": _spread([r["gmv_mean"] for r in rows]),
            "cost": _spread([r["cost_mean"] for r in rows]),
            "cost_to_limit": _spread([r["cost_mean"] / limit for r in rows]),
            "violation_rate": _spread([r["violation_rate"] for r in rows]),
            **{key: _spread([r[key] for r in rows]) for key in ("objective_mean", "revenue_mean", "contribution_mean", "net_burn_mean")},
        }
    hard = out.get("ppo_hard")
    for name, row in out.items():
        row["gmv_to_hard"] = row["gmv"]["mean"] / hard["gmv"]["mean"] if hard else None
    return out


def targets(summary: dict[str, dict]) -> dict[str, bool | None]:
    """The issue's targets, measured (``None`` when a variant is missing)."""
    lag, soft = summary.get("ppo_lagrangian"), summary.get("ppo_soft")
    return {
        "lagrangian_cost_within_5pct_of_limit": None if lag is None else bool(lag["cost"]["mean"] <= COST_TOLERANCE * lag["cost_limit"]),
        "lagrangian_gmv_at_least_0.97_of_hard": None if lag is None or lag["gmv_to_hard"] is None else bool(lag["gmv_to_hard"] >= GMV_RATIO_TARGET),
        "soft_unconstrained_overspends": None if soft is None else bool(over_limit(soft["cost"]["mean"], soft["cost_limit"])),
    }


def markdown_table(summary: dict[str, dict], episodes: int) -> str:
    labels = {v.name: v.label for v in VARIANTS}
    lines = [
        "| algorithm | budget | GMV ($B / episode) | episode cost ($B) | cost / limit | violation rate | GMV / hard PPO |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for name, row in summary.items():
        g, c, r, v = row["gmv"], row["cost"], row["cost_to_limit"], row["violation_rate"]
        ratio = f"{row['gmv_to_hard']:.3f}" if row["gmv_to_hard"] is not None else "-"
        lines.append(
            f"| {labels.get(name, name)} | {row['budget_mode']}, limit {row['cost_limit']:g} | {g['mean']:.2f} ± {g['std']:.2f} "
            f"| {c['mean']:.2f} ± {c['std']:.2f} | {r['mean']:.3f} ± {r['std']:.3f} | {v['mean']:.2f} ± {v['std']:.2f} | {ratio} |"
        )
    seeds = sorted({s for row in summary.values() for s in row["seeds"]})
    lines.append("")
    lines.append(f"Mean ± standard deviation over training seeds {seeds}; each seed's figure is the mean over {episodes} held-out "
                 f"evaluation episodes (deterministic policy).")
    return "\n".join(lines) + "\n"


def run_benchmark(
    out: Path,
    *,
    variants: Sequence[str] = VARIANT_NAMES,
    seeds: Sequence[int] = (0, 1, 2),
    timesteps: int | None = None,
    episodes: int = 64,
    address: str | None = None,
    log: Callable[[str], None] = print,
) -> dict:
    """Train every (variant, seed) as one sweep on Ray Tune (:mod:`agents.sweep`; a local Ray, or
    the cluster at ``address``) in ``out/sweep``, evaluate each run; write
    ``constraint_benchmark.json`` and ``.md``. An existing sweep folder is continued: its
    finished runs are kept.

    :raises KeyboardInterrupt: the sweep was stopped (Ctrl-C); rerun to continue.
    """
    out = Path(out)
    check_out(out)
    spec = benchmark_spec(variants, seeds, timesteps)
    sweep_dir = (out / "sweep").resolve()
    if (sweep_dir / sweep.SWEEP_FILE).is_file():
        differs = sweep.settings_difference(spec, sweep_dir)
        if differs is not None:
            raise BenchmarkError(f"--out {out} holds a benchmark started with {differs} asked now; "
                                 "rerun with its --variants, --seeds and --timesteps to continue it, or choose another --out")
    t0 = time.monotonic()
    trained = sweep.run_sweep(spec, sweep_dir, resume=(sweep_dir / sweep.SWEEP_FILE).is_file(), address=address, log=log)
    if trained.interrupted:
        raise KeyboardInterrupt(f"the sweep stopped; rerun the same command to continue it ({sweep_dir})")
    failed = [r for r in trained.rows if r["status"] != "finished"]
    if failed:
        raise sweep.SweepError(f"{len(failed)} runs failed, e.g. {failed[0][sweep.VARIANT_AXIS]} seed {failed[0]['seed']}: "
                               f"{failed[0].get('error', failed[0]['status'])} (see {sweep_dir / sweep.REPORT_MD})")
    by_trial = {(r[sweep.VARIANT_AXIS], r["seed"]): r for r in trained.rows}
    per_seed: dict[str, list[dict]] = {name: [] for name in spec.variants}
    for name in spec.variants:
        for seed in seeds:
            run_dir = sweep_dir / by_trial[(name, seed)]["run_dir"]
            row = {"seed": int(seed), "run_dir": str(run_dir), **evaluate_run(run_dir, episodes)}
            per_seed[name].append(row)
            log(f"{name} seed {seed}: GMV {row['gmv_mean']:.2f}$B, cost {row['cost_mean']:.2f}$B "
                f"(limit {row['cost_limit']:g}), violations {row['violation_rate']:.2f}")
    summary = aggregate(per_seed)
    result = {
        "episodes": episodes,
        "seeds": list(seeds),
        "complete": True,
        "timesteps": timesteps,
        "wall_seconds": round(time.monotonic() - t0, 1),
        "sweep_dir": str(sweep_dir),
        "variants": summary,
        "per_seed": per_seed,
        "targets": targets(summary),
    }
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_json(out / "constraint_benchmark.json", result)
    atomic_write_text(out / "constraint_benchmark.md", markdown_table(summary, episodes))
    return result
