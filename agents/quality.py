"""Time to quality: how long a training takes to reach a share of the oracle.

:func:`time_to_quality` computes the clairvoyant oracle (:mod:`agents.planners`) once on the
training's held-out evaluation seeds, then trains the config (:func:`agents.ppo.train`) and
watches every held-out evaluation (step 0, every ``eval_freq`` env steps, the end): the answer is
the training wall time, evaluation pauses excluded (``train_seconds`` of the evaluation hook),
at which the deterministic policy's objective (``objective_mean``: the reward it is trained to
maximise, $B per episode) first reaches ``target`` (0.95) of the oracle's on the same seeds.
``null`` if it never does; ``ratio_reached`` is the best ratio seen. The resolution is one
evaluation: a run evaluated every 25k env steps is timed to the evaluation after it crossed.

The oracle is planned with cheaper settings than ``scripts/evaluate.py``'s (:data:`QUALITY_EFFORT`,
stated in the output): it plans each of the 64 held-out episodes, and a weaker plan is a lower bar,
so the ratio it gives is, if anything, generous (on ``global``: objective 0.7% below the oracle of
``scripts/evaluate.py``'s defaults on the same 64 episodes). Like every reference policy it plays the
scenario scaled to the limit in soft budget mode (:func:`agents.constraint.scaled_to_limit`).

The training runs in a temporary run folder, removed afterwards: only the figures are kept.
"""

from __future__ import annotations

import dataclasses
import sys
import tempfile
import time
from pathlib import Path
from typing import Sequence, TextIO

from agents import lazy, runs
from agents.config import TrainConfig
from agents.constraint import scaled_to_limit
from agents.evaluation import PlannerEffort, reference_policies
from agents.planners import BASELINE_ITERATIONS, BASELINE_SEEDS
from agents.rollout import measure
from agents.seeds import eval_seeds
from agents.shutdown import Interrupted
from envs.scenario import load_scenario

#: the share of the oracle's objective a training must reach
TARGET_RATIO = 0.95
#: a ratio above this is a typo (no policy beats the clairvoyant oracle by much)
MAX_TARGET = 10.0
#: a planner budget above this is a typo (CMA-ES generations, seeds, processes)
MAX_EFFORT = 10_000
#: the oracle's settings for time to quality: one to a few minutes on 2 cores for 64 episodes,
#: about half of ``scripts/evaluate.py``'s generations per stage; ``best_static`` (its warm start)
#: as hard as a training searches its baseline
QUALITY_EFFORT = PlannerEffort(static_iterations=BASELINE_ITERATIONS, static_seeds=BASELINE_SEEDS, schedule_iterations=(60, 80),
                               oracle_scale_iterations=30, oracle_iterations=60, workers=1)


def check_inputs(target: float, effort: PlannerEffort) -> None:
    """One-line ``ValueError`` for a target or planner budget out of range (before any work)."""
    if not 0 < target <= MAX_TARGET:  # also refuses nan
        raise ValueError(f"--target must be in (0, {MAX_TARGET:g}] (a share of the oracle's objective), got {target:g}")
    for name, value in [("--static-iterations", effort.static_iterations), ("--schedule-iterations", min(effort.schedule_iterations)),
                        ("--oracle-scale-iterations", effort.oracle_scale_iterations), ("--oracle-iterations", effort.oracle_iterations)]:
        if not 0 <= value <= MAX_EFFORT:
            raise ValueError(f"{name} must be in [0, {MAX_EFFORT}], got {value}")
    for name, value in [("--static-seeds", effort.static_seeds), ("--workers", effort.workers)]:
        if not 1 <= value <= MAX_EFFORT:
            raise ValueError(f"{name} must be in [1, {MAX_EFFORT}], got {value}")


def oracle_objective(config: TrainConfig, effort: PlannerEffort = QUALITY_EFFORT) -> dict:
    """The oracle on the training's held-out seeds: ``objective_mean`` ($B per episode), seeds, seconds."""
    t0 = time.perf_counter()
    scenario = load_scenario(config.scenario, config.overrides)
    reference = scaled_to_limit(scenario)
    seeds = eval_seeds(config.eval_episodes)
    policies, extra = reference_policies(["oracle"], reference, seeds, effort)
    figures = measure(policies["oracle"], reference, seeds)
    return {"objective_mean": figures["objective_mean"], "gmv_mean": figures["gmv_mean"], "seeds": seeds,
            "seconds": time.perf_counter() - t0, "best_static_train_reward_mean": extra["best_static"]["train_reward_mean"]}


def first_reaching(evaluations: Sequence[dict], target: float) -> dict:
    """From evaluations in training order (``timesteps``, ``train_seconds``, ``ratio_to_oracle``):
    the first that reaches ``target`` (``None``s if none does) and the best ratio seen."""
    reached = next((e for e in evaluations if e["ratio_to_oracle"] >= target), None)
    return {
        "time_to_quality_s": None if reached is None else reached["train_seconds"],
        "timesteps_to_quality": None if reached is None else reached["timesteps"],
        "ratio_reached": max((e["ratio_to_oracle"] for e in evaluations), default=None),
    }


def time_to_quality(config: TrainConfig, *, target: float = TARGET_RATIO, effort: PlannerEffort = QUALITY_EFFORT,
                    progress: str = "lines", stream: TextIO | None = None, config_source: str | None = None) -> dict:
    """Train ``config`` and time it to ``target`` of the oracle (see the module docstring).

    :param progress: the training's progress display (:func:`agents.ppo.train`).
    :param stream: where the progress lines go (default stderr: stdout is the JSON).
    :param config_source: how the config was given (stated in the result).
    :returns: the result (``time_to_quality_s``, ``ratio_reached``, the oracle's figures and
        settings, every evaluation).
    :raises agents.shutdown.Interrupted: a signal stopped the training (nothing is kept).
    :raises OSError: the training could not write its temporary run folder.
    """
    check_inputs(target, effort)
    stream = stream or sys.stderr
    print(f"oracle on {config.eval_episodes} held-out episodes (scenario {config.scenario})...", file=stream, flush=True)
    oracle = oracle_objective(config, effort)
    if oracle["objective_mean"] <= 0:
        raise ValueError(f"the oracle's objective on scenario {config.scenario} is {oracle['objective_mean']:g} $B, not positive: no ratio to it is defined")
    print(f"oracle objective {oracle['objective_mean']:.3f} $B per episode ({oracle['seconds']:.0f} s); training...", file=stream, flush=True)

    evaluations: list[dict] = []

    def on_evaluation(timesteps: int, figures: dict, train_seconds: float) -> None:
        evaluations.append({"timesteps": int(timesteps), "train_seconds": round(float(train_seconds), 3),
                            "objective_mean": figures["objective_mean"], "gmv_mean": figures["gmv_mean"],
                            "ratio_to_oracle": figures["objective_mean"] / oracle["objective_mean"]})

    training = lazy.training()
    with tempfile.TemporaryDirectory(prefix="flywheel-time-to-quality-") as tmp:
        run_dir = Path(tmp) / "run"
        with runs.create_run_dir(run_dir, config):
            try:
                result = training.train(config, run_dir, progress=progress, stream=stream, on_evaluation=on_evaluation)
            except training.TrainError as exc:
                raise OSError(str(exc)) from None
    if result.interrupted:
        raise Interrupted(result.signal, result.phase or "training", result.forced)

    seeds = oracle["seeds"]
    return {
        **first_reaching(evaluations, target),
        "target_ratio": target,
        "objective": "objective_mean: reward per episode ($B, the scenario's objective plus terminal value), deterministic policy",
        "oracle_objective_mean": oracle["objective_mean"],
        "oracle_gmv_mean": oracle["gmv_mean"],
        "oracle_seconds": round(oracle["seconds"], 3),
        "oracle_settings": dataclasses.asdict(effort),
        "eval_seeds": [seeds[0], seeds[-1]],
        "eval_episodes": len(seeds),
        "config": config_source,
        "scenario": config.scenario,
        "total_timesteps": result.timesteps,
        "eval_freq": config.eval_freq,
        "train_seconds": evaluations[-1]["train_seconds"] if evaluations else None,
        "wall_seconds": round(result.wall_seconds, 3),
        "evaluations": evaluations,
    }
