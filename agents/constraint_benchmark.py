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
(``budget.total``), violation rate (episodes over the limit), and GMV relative to ``ppo_hard``.
Each training seed's figures are means over the evaluation episodes; the table gives the mean
and the standard deviation of those over training seeds. Targets: ``ppo_lagrangian``
mean episode cost at most 1.05 x the limit, GMV at least 0.97 x ``ppo_hard``'s;
``ppo_soft`` overspends.

A finished run (its ``summary.json`` present) is reused, so an interrupted benchmark continues
where it stopped.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from agents import lazy, runs
from agents.config import CONFIG_DIR, TrainConfig, load_config
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


def variant_config(variant: Variant, seed: int, timesteps: int | None = None) -> TrainConfig:
    sets = list(variant.sets) + [f"seed={seed}"]
    if timesteps is not None:
        sets.append(f"total_timesteps={timesteps}")
    return load_config(variant.config, sets)


class BenchmarkError(ValueError):
    """The output folder cannot hold this benchmark (a file, foreign content, runs trained
    otherwise). One line."""


#: what this benchmark writes into its folder; anything else there is the user's
OWN_ENTRIES = ("runs", "constraint_benchmark.json", "constraint_benchmark.md")


def check_out(out: Path) -> None:
    """``out`` is new, or a folder of an earlier (maybe stopped) benchmark, which is continued."""
    if not os.path.lexists(out):
        return
    if out.is_symlink() or not out.is_dir():
        raise BenchmarkError(f"--out {out} exists and is not a folder; give a folder for the runs, the table and the JSON")
    foreign = sorted(p.name for p in out.iterdir() if p.name not in OWN_ENTRIES)
    if foreign:
        raise BenchmarkError(f"--out {out} holds {', '.join(foreign[:3])}, which this benchmark did not write; choose another --out")


def _first_difference(a: dict, b: dict, prefix: str = "") -> str | None:
    for key in sorted(set(a) | set(b)):
        va, vb = a.get(key), b.get(key)
        if isinstance(va, dict) and isinstance(vb, dict):
            found = _first_difference(va, vb, f"{prefix}{key}.")
            if found:
                return found
        elif va != vb:
            return f"{prefix}{key}={va!r}, not {vb!r}"
    return None


def train_one(variant: Variant, seed: int, run_dir: Path, timesteps: int | None = None) -> Path:
    """Train one (variant, seed) into ``run_dir``; a run there is reused (finished) or continued
    (interrupted) only if it was trained with exactly this config, else :class:`BenchmarkError`."""
    config = variant_config(variant, seed, timesteps)
    if run_dir.exists():
        saved = runs.read_run_config(run_dir)
        differs = _first_difference(saved.model_dump(mode="json"), config.model_dump(mode="json"))
        if differs is not None:
            raise BenchmarkError(f"{run_dir} was trained with {differs} asked now; choose another --out, or the same settings as before")
        if runs.is_finished(run_dir):
            return run_dir
        saved, lock = runs.open_for_resume(run_dir)  # an interrupted run: continue it
        with lock:
            _finished(lazy.training().train(saved, run_dir, resume=True, progress="none"))
        return run_dir
    with runs.create_run_dir(run_dir, config):
        _finished(lazy.training().train(config, run_dir, progress="none"))
    return run_dir


def _finished(result) -> None:
    if result.interrupted:  # Ctrl-C / SIGTERM: a checkpoint was saved, rerun to continue
        raise KeyboardInterrupt(f"stopped at step {result.timesteps}; rerun the same command to continue")


def evaluate_run(run_dir: Path, episodes: int) -> dict[str, float]:
    """The run's deterministic policy on ``episodes`` held-out seeds, in the mode it trained in."""
    run = runs.load_run(run_dir)
    params = run.scenario.to_params()
    traj = rollout_policy(run.policy(), run.scenario, eval_seeds(episodes))
    figures = publish(summarise(traj, params), BENCHMARK_KEYS)
    return {
        "gmv_mean": figures["gmv_mean"],
        "cost_mean": figures["cost_mean"],
        "cost_max": float(episode_totals(traj.cost).max()),
        "cost_limit": float(run.scenario.budget.total),
        "violation_rate": figures["violation_rate"],
        "final_run_rate_mean": figures["final_run_rate_mean"],
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
    log: Callable[[str], None] = print,
) -> dict:
    """Train and evaluate every (variant, seed); write ``constraint_benchmark.json`` and ``.md``."""
    out = Path(out)
    check_out(out)
    out.mkdir(parents=True, exist_ok=True)
    chosen = [v for v in VARIANTS if v.name in variants]
    per_seed: dict[str, list[dict]] = {v.name: [] for v in chosen}
    t0 = time.monotonic()
    result: dict = {}
    # seed-major order: after each seed the table holds every variant (written as it grows)
    for seed in seeds:
        for variant in chosen:
            run_dir = out / "runs" / f"{variant.name}__{seed}"
            start = time.monotonic()
            train_one(variant, seed, run_dir, timesteps)
            row = {"seed": int(seed), "run_dir": str(run_dir), **evaluate_run(run_dir, episodes)}
            per_seed[variant.name].append(row)
            log(f"{variant.name} seed {seed}: GMV {row['gmv_mean']:.2f}$B, cost {row['cost_mean']:.2f}$B "
                f"(limit {row['cost_limit']:g}), violations {row['violation_rate']:.2f} [{time.monotonic() - start:.0f}s]")
            summary = aggregate({name: rows for name, rows in per_seed.items() if rows})
            result = {
                "episodes": episodes,
                "seeds": list(seeds),
                "complete": all(len(rows) == len(seeds) for rows in per_seed.values()),
                "timesteps": timesteps,
                "wall_seconds": round(time.monotonic() - t0, 1),
                "variants": summary,
                "per_seed": per_seed,
                "targets": targets(summary),
            }
            atomic_write_json(out / "constraint_benchmark.json", result)
            atomic_write_text(out / "constraint_benchmark.md", markdown_table(summary, episodes))
    return result
