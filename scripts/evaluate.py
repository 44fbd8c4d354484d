#!/usr/bin/env python
"""Evaluate a trained run beside the playbooks, the best static plan and the oracle.

    python scripts/evaluate.py runs/global__ppo__0__20240101-120000        # -> RUN_DIR/eval/
    python scripts/evaluate.py RUN_DIR --episodes 20 --seed 5 --out /tmp/eval
    python scripts/evaluate.py RUN_DIR --set deterministic=true --out RUN_DIR/eval_det
    python scripts/evaluate.py --scenario global --episodes 100             # -> eval/global/
    python scripts/evaluate.py --scenario us --policies uniform best_static oracle
    python scripts/evaluate.py RUN_DIR --ensemble global   # across the posterior's parameter sets
    python scripts/evaluate.py --model sac.zip --vecnormalize vecnormalize.pkl --scenario global   # plain SB3
    python scripts/evaluate.py logs/ppo/flywheel-SocialCommerce-v1_1                              # rl-zoo3

With ``--ensemble``, every episode plays a parameter set drawn from the ensemble by its seed (the
same set for every policy), and each policy's ``gmv_p10``, ``gmv_p50``, ``gmv_p90`` (in every
``eval.json``) measure the spread across what the calibration leaves unknown; the planners are
still computed on the nominal scenario.

Every policy plays the same episodes (seeds ``SEED .. SEED + N - 1``: common random numbers).
The learned policy appears under its algorithm's name (``ppo``, ``ppo_lagrangian``), with the
run's frozen observation normalisation. ``best_static`` is fitted by CMA-ES on training seeds
disjoint from the evaluation seeds; ``oracle`` is planned per evaluation episode on its own
future (warm-started from ``best_static``). In a soft-budget scenario the reference policies
(playbooks, ``best_static``, ``oracle``) are computed and played on the same scenario with the
hard projection (``agents.constraint.scaled_to_limit``: spend scaled to the limit), the learned
policy on the soft scenario itself; cost and violation rate are reported for all. Writes ``eval.json``, ``trajectories.json``,
``report.md`` and PNG plots into ``--out`` atomically.

Bad input (a folder that is not a run, a model whose spaces do not fit its scenario, an unknown
policy or scenario, a bad ``--set``) prints one line ``error: ...`` and exits 2, writing nothing.
"""

from __future__ import annotations

import os

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")  # small matrices; the planner's processes share 2 cores

import argparse  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any, Sequence  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from agents.shutdown import starting  # noqa: E402

with starting():  # a signal while the modules load: one line, nothing written yet
    from agents import lazy  # noqa: E402
    from agents.cli import OneLineParser, one_line_error  # noqa: E402
    from agents.constraint import scaled_to_limit  # noqa: E402
    from agents.io import OutputError, describe_os_error, plan_folder, set_writer  # noqa: E402
    from agents.evaluation import PLANNERS, PlannerEffort, applied_plans, evaluate, reference_policies  # noqa: E402
    from agents.policies import PLAYBOOKS  # noqa: E402
    from agents.report import format_table, write_report  # noqa: E402
    from agents.runs import RunError, check_spaces, load_run  # noqa: E402
    from agents.shutdown import GracefulShutdown, Interrupted  # noqa: E402
    from agents.seeds import DEFAULT_EVAL_SEED, TRAIN_SEED_BASE, eval_seeds  # noqa: E402
    from envs.ensemble import EnsembleError, load_ensemble  # noqa: E402
    from envs.scenario import ScenarioError, builtin_scenarios, load_scenario, parse_set_pairs  # noqa: E402


#: upper bound of --episodes: every policy's trajectories are kept in memory (~20 kB an episode
#: for all policies) and the oracle plans each episode on its own
MAX_EPISODES = 10_000


class UsageError(ValueError):
    """Bad command-line input; reported as one line, exit 2."""


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineParser(description="Evaluate a learned policy against playbooks, best_static and a clairvoyant oracle.")
    parser.add_argument("run_dir", nargs="?", type=Path, help="run folder written by scripts/train.py, or an rl-zoo3 experiment folder (omit with --scenario)")
    parser.add_argument("--scenario", help=f"evaluate the reference policies alone on a scenario ({', '.join(builtin_scenarios())} or a YAML path)")
    parser.add_argument("--episodes", type=int, default=100, help="evaluation episodes (default 100)")
    parser.add_argument("--seed", type=int, default=DEFAULT_EVAL_SEED, help=f"first episode's seed (default {DEFAULT_EVAL_SEED}, a range training never uses)")
    parser.add_argument("--policies", nargs="+", metavar="NAME", help="policies to evaluate (default: all); names may also be comma-separated")
    parser.add_argument("--out", type=Path, help="output folder, must not exist (default RUN_DIR/eval, or eval/<scenario> with --scenario; "
                                                 "a taken default gets the next free name, eval-2, ...)")
    parser.add_argument("--force", action="store_true", help="let --out replace an earlier output folder of this command (never a run folder "
                                                             "or a folder holding anything else)")
    parser.add_argument("--set", dest="sets", action="append", default=[], metavar="KEY=VALUE",
                        help="scenario override by dotted path, repeatable (e.g. deterministic=true)")
    parser.add_argument("--ensemble", help="play every episode on a parameter set drawn from this ensemble (a name in "
                        "configs/ensembles or a path; the same draw for every policy): adds the spread plot gmv_spread.png")
    foreign = parser.add_argument_group("a model trained elsewhere (pickles run code when loaded: load only your own files)")
    foreign.add_argument("--model", type=Path, metavar="PATH.zip", help="a stable-baselines3 or sb3-contrib model file, played on --scenario")
    foreign.add_argument("--vecnormalize", type=Path, metavar="PATH.pkl",
                         help="the VecNormalize statistics the --model was trained with (default: a vecnormalize.pkl beside it, if any)")
    foreign.add_argument("--algo", help="the --model's algorithm, rl-zoo3's name (ppo, sac, td3, a2c, tqc, trpo, ppo_lstm, ...; default: read from the file)")
    search = parser.add_argument_group("planner budgets (CMA-ES generations)")
    search.add_argument("--static-iterations", type=int, default=120, help="best_static generations (default 120)")
    search.add_argument("--static-seeds", type=int, default=64, help="training seeds for best_static (default 64)")
    search.add_argument("--schedule-iterations", type=int, nargs=2, default=[150, 200], metavar=("KNOTS", "QUARTERS"),
                        help="oracle's common schedule: knot-stage and per-quarter generations (default 150 200)")
    search.add_argument("--oracle-scale-iterations", type=int, default=60, help="oracle's per-episode region-quarter scale generations (default 60)")
    search.add_argument("--oracle-iterations", type=int, default=150, help="oracle's per-episode per-quarter generations (default 150; up to 10x with few distinct futures)")
    search.add_argument("--workers", type=int, default=min(2, os.cpu_count() or 1), help="processes for the oracle (default: 2 or the cores)")
    return parser


def _check(args: argparse.Namespace) -> None:
    if args.run_dir is None and args.scenario is None:
        raise UsageError("give a run folder (RUN_DIR) or --scenario NAME")
    if args.model is not None and args.run_dir is not None:
        raise UsageError("give either a folder (RUN_DIR) or --model PATH.zip, not both")
    if args.model is not None and args.scenario is None:
        raise UsageError("--model needs --scenario NAME: the scenario the model plays")
    if args.model is None and (args.vecnormalize is not None or args.algo is not None):
        raise UsageError("--vecnormalize and --algo go with --model PATH.zip")
    if args.run_dir is not None and args.scenario is not None:
        raise UsageError("give either a run folder or --scenario, not both (a run brings its own scenario; use --set to vary it)")
    if not 1 <= args.episodes <= MAX_EPISODES:
        raise UsageError(f"--episodes must be in [1, {MAX_EPISODES}], got {args.episodes}")
    if args.seed < 0 or args.seed + args.episodes > TRAIN_SEED_BASE:
        raise UsageError(f"--seed must be in [0, {TRAIN_SEED_BASE - args.episodes}] (best_static trains on seeds from {TRAIN_SEED_BASE})")
    for name, value in [("--static-iterations", args.static_iterations), ("--schedule-iterations", min(args.schedule_iterations)),
                        ("--oracle-iterations", args.oracle_iterations), ("--oracle-scale-iterations", args.oracle_scale_iterations)]:
        if value < 0:
            raise UsageError(f"{name} must be >= 0, got {value}")
    if args.static_seeds < 1 or args.workers < 1:
        raise UsageError("--static-seeds and --workers must be at least 1")


def _selected(args: argparse.Namespace, learned: str | None) -> list[str]:
    allowed = ([learned] if learned else []) + list(PLAYBOOKS) + list(PLANNERS)
    if not args.policies:
        return allowed
    names = [n.strip() for item in args.policies for n in item.split(",") if n.strip()]
    if not names:
        raise UsageError(f"--policies names no policy; allowed: {', '.join(allowed)}")
    unknown = [n for n in names if n not in allowed]
    if unknown:
        raise UsageError(f"unknown policies {', '.join(unknown)}; allowed: {', '.join(allowed)}")
    return [n for n in allowed if n in names]  # canonical order, no duplicates


def _load(run_dir: Path):
    """The run to evaluate; a folder that is not a run, or a corrupt model, is bad input."""
    try:
        run = load_run(run_dir)
    except RunError as exc:
        raise UsageError(str(exc)) from None
    except Exception as exc:  # a corrupt model or statistics file is bad input too
        raise UsageError(f"{run_dir}: cannot load the run's model ({type(exc).__name__}: {exc})") from None
    lazy.training().set_torch_threads()
    return run


def _load_foreign(args: argparse.Namespace, overrides: dict):
    """A model trained elsewhere: ``--model`` on ``--scenario``, or an rl-zoo3 folder (its own scenario)."""
    foreign = lazy.foreign()
    lazy.training().set_torch_threads()
    if args.model is not None:
        vecnormalize = args.vecnormalize
        beside = args.model.parent / "vecnormalize.pkl"
        if vecnormalize is None and beside.is_file():  # as rl-zoo3's enjoy: a normalised model is played with its statistics
            vecnormalize = beside
            print(f"using the VecNormalize statistics beside the model: {beside} (--vecnormalize PATH names others)", flush=True)
        return foreign.load_model_file(args.model, load_scenario(args.scenario, overrides), vecnormalize, algo=args.algo)
    return foreign.load_zoo_experiment(args.run_dir, overrides)


def _effort(args: argparse.Namespace) -> PlannerEffort:
    return PlannerEffort(static_iterations=args.static_iterations, static_seeds=args.static_seeds,
                         schedule_iterations=tuple(args.schedule_iterations), oracle_scale_iterations=args.oracle_scale_iterations,
                         oracle_iterations=args.oracle_iterations, workers=args.workers)


def main(argv: Sequence[str] | None = None) -> int:
    set_writer("evaluate")  # --force replaces only what this command wrote
    args = build_parser().parse_args(argv)
    with GracefulShutdown(phase="evaluation") as shutdown:
        try:
            return _run(args, shutdown)
        except Interrupted as exc:  # the oracle's workers are terminated by then (agents.workers)
            print(f"{exc.signal_name}: evaluation stopped; nothing was written", file=sys.stderr, flush=True)
            return exc.exit_code


def _run(args: argparse.Namespace, shutdown: GracefulShutdown) -> int:
    try:
        _check(args)
        overrides = parse_set_pairs(args.sets, example="deterministic=true", error=UsageError)
        output = _plan_output(args.out, args) if args.out is not None else None  # before any work
        run = learned = None
        if args.model is not None or (args.run_dir is not None and lazy.foreign().zoo_files(args.run_dir)):
            run = _load_foreign(args, overrides)
            scenario, learned = run.scenario, run.name
            default = args.run_dir / "eval" if args.run_dir is not None else Path("eval") / f"{scenario.name}__{args.model.stem}"
        elif args.run_dir is not None:
            run = _load(args.run_dir)
            scenario = load_scenario(run.scenario, overrides) if overrides else run.scenario
            learned = run.algo
            check_spaces(run, scenario)
            default = args.run_dir / "eval"
        else:
            scenario = load_scenario(args.scenario, overrides)
            default = Path("eval") / scenario.name
        names = _selected(args, learned)
        ensemble = load_ensemble(args.ensemble) if args.ensemble is not None else None
        output = output or _plan_output(default, args)
        if output.note:
            print(output.note, flush=True)

        reference = scaled_to_limit(scenario)  # soft mode: the hard projection (scaled to the limit)
        timings: dict[str, float] = {}
        policies: dict[str, Any] = {learned: run.policy()} if learned in names else {}
        seeds = eval_seeds(args.episodes, args.seed)
        # the oracle's search also starts from the learned policy's own plays of these episodes
        starts = applied_plans({learned: policies[learned]}, reference, seeds) if learned in policies and "oracle" in names else None
        references, extra = reference_policies(names, reference, seeds, _effort(args), timings, oracle_starts=starts)
        policies.update(references)
        t0 = time.perf_counter()
        played = {name: reference for name in policies if name != learned}
        ev = evaluate(policies, scenario, seed=args.seed, episodes=args.episodes, learned=learned if learned in policies else None,
                      scenarios=played, ensemble=ensemble)
        timings["rollouts"] = time.perf_counter() - t0
        notes = []  # soft mode: report.md says how the reference policies were played (agents.report)
        if learned is not None and not hasattr(run, "run_dir"):
            notes.append(f"Learned policy from `{run.source}` ({learned}), deterministic actions, frozen observation normalisation."
                         + ("" if run.vecnormalize is not None else " No VecNormalize statistics: raw observations."))
        elif args.run_dir is not None:
            notes.append(f"Learned policy from run `{args.run_dir}` ({learned}), deterministic actions, frozen observation normalisation.")
        with shutdown.critical("writing the report"):
            doc = write_report(ev, output, extra=extra, notes=notes)
    except (ScenarioError, EnsembleError, UsageError, RunError, OutputError) as exc:
        return one_line_error(exc)
    except OSError as exc:
        print(f"error: {describe_os_error(exc, str(exc.filename or args.out or 'the report'))}", file=sys.stderr)
        return 1

    print(format_table(doc))
    print("timings: " + ", ".join(f"{k} {v:.1f}s" for k, v in timings.items()))
    print(f"wrote {output.path}/ (eval.json, trajectories.json, report.md, run_rate.png, lever_mix.png, cost.png"
          + (", gmv_spread.png)" if args.ensemble is not None else ")"))
    return 0


def _plan_output(out: Path, args: argparse.Namespace):
    """The checked output folder: an explicit ``--out`` must not exist (unless ``--force`` on an
    earlier output); a taken default gets the next free name."""
    return plan_folder(out, option="--out", explicit=args.out is not None, force=args.force, create_parents=args.out is None)


if __name__ == "__main__":
    sys.exit(main())
