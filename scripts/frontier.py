#!/usr/bin/env python
"""The budget frontier: GMV that best_static and the oracle (and, with --train, PPO) reach per budget.

    python scripts/frontier.py --scenario global --budgets 1 2 4 8 --out runs/frontier
    python scripts/frontier.py --scenario global --budgets 2 4 --out /tmp/fr            # ~1 min
    python scripts/frontier.py --scenario us --per-quarter 0.5 --train --timesteps 60000 --out /tmp/fr_us

Budgets are total $B over the horizon (default 1 2 4 8); the per-quarter cap scales with the
total at the scenario's ratio (``global``: 0.2 of the total) unless ``--per-quarter`` fixes it.
Every budget is played in hard mode on the same evaluation episodes; each budget's planning
is one task for ``--workers`` processes; with ``--train`` the PPO runs (one per budget) are one
sweep on Ray Tune in ``--out/ppo`` (``--address`` for a cluster). The oracle's GMV never falls as the
budget grows (see :mod:`agents.frontier`). Writes ``frontier.csv``, ``frontier.json`` and
``frontier.png`` into ``--out``. Planner effort: ``--episodes``, ``--static-iterations``,
``--refine-iterations``, ``--scale-iterations``, ``--schedule-iterations``. Bad input prints one line ``error: ...`` and
exits 2, writing nothing.
"""

from __future__ import annotations

import os

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")  # small matrices; the workers share 2 cores

import sys  # noqa: E402
from pathlib import Path  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from agents.shutdown import starting  # noqa: E402

with starting():  # a signal while the modules load: one line, nothing written yet
    from agents.cli import OneLineParser, only_with  # noqa: E402
    from agents.io import OutputError, describe_os_error, output_folder, plan_folder, set_writer  # noqa: E402
    from agents.shutdown import GracefulShutdown, Interrupted  # noqa: E402
    from agents.frontier import DEFAULT_BUDGETS, Effort, FrontierError, budget_overrides, check_budgets, compute_frontier, frontier_table, write_frontier  # noqa: E402
    from agents.sweep import SweepError  # noqa: E402
    from envs.scenario import ScenarioError, load_scenario, parse_set_pairs  # noqa: E402


DEFAULT_OUT = Path("runs") / "frontier"


def main(argv: list[str] | None = None) -> int:
    set_writer("frontier")  # --force replaces only what this command wrote
    effort = Effort()
    parser = OneLineParser(description="GMV against total incentive budget for best_static, oracle and (--train) PPO.")
    parser.add_argument("--scenario", default="global", help="built-in scenario name or YAML path (default global)")
    parser.add_argument("--budgets", type=float, nargs="+", default=list(DEFAULT_BUDGETS), metavar="B", help="total budgets in $B (default 1 2 4 8)")
    parser.add_argument("--per-quarter", type=float, help="fixed per-quarter cap in $B (default: scaled with the total)")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="scenario override, repeatable (e.g. deterministic=true)")
    parser.add_argument("--out", help=f"output folder, must not exist (default {DEFAULT_OUT}, or the next free name)")
    parser.add_argument("--force", action="store_true", help="let --out replace an earlier frontier folder of this command (not one holding trained runs)")
    parser.add_argument("--workers", type=int, default=2, help="processes (default 2)")
    parser.add_argument("--episodes", type=int, default=effort.episodes, help=f"evaluation episodes (default {effort.episodes})")
    parser.add_argument("--static-iterations", type=int, default=effort.static_iterations, help="best_static CMA-ES generations")
    parser.add_argument("--schedule-iterations", type=int, nargs=2, default=list(effort.schedule_iterations), metavar=("KNOT", "FULL"),
                        help="oracle common-schedule generations (knots, per quarter)")
    parser.add_argument("--refine-iterations", type=int, default=effort.refine_iterations, help="oracle per-episode generations")
    parser.add_argument("--scale-iterations", type=int, default=effort.scale_iterations, help="oracle per-episode region-quarter scale generations")
    parser.add_argument("--train", action="store_true", help="also train a hard-budget PPO per budget")
    parser.add_argument("--timesteps", type=int, default=50_000, help="PPO env steps per budget with --train (default 50000)")
    parser.add_argument("--seed", type=int, default=0, help="PPO seed with --train")
    parser.add_argument("--address", help="with --train: run the PPO sweep on this Ray cluster ('auto' or HOST:PORT; default a local Ray)")
    args = parser.parse_args(argv)

    try:
        budgets = check_budgets(args.budgets)
        for name, value, low in [("--workers", args.workers, 1), ("--episodes", args.episodes, 1), ("--static-iterations", args.static_iterations, 0),
                                 ("--refine-iterations", args.refine_iterations, 0), ("--scale-iterations", args.scale_iterations, 0), ("--timesteps", args.timesteps, 1), ("--seed", args.seed, 0)]:
            if value < low:
                raise FrontierError(f"{name} must be at least {low}; got {value}")
        unused = None if args.train else only_with(parser, args, [("--timesteps", "timesteps"), ("--seed", "seed"), ("--address", "address")], "--train")
        if unused:
            raise FrontierError(f"{unused} (they set the PPO runs)")
        if min(args.schedule_iterations) < 0:
            raise FrontierError("--schedule-iterations must be non-negative")
        if args.per_quarter is not None and not args.per_quarter > 0:
            raise FrontierError(f"--per-quarter must be a positive number of $B; got {args.per_quarter:g}")
        overrides = parse_set_pairs(args.set, example="deterministic=true", error=FrontierError)
        if str(overrides.get("budget.mode", "hard")) != "hard":
            raise FrontierError(f"--set budget.mode={overrides['budget.mode']}: the frontier plays every budget in hard mode "
                                "(each budget is a limit the planners keep exactly); drop this --set")
        if "budget.total" in overrides:
            raise FrontierError(f"--set budget.total={overrides['budget.total']}: --budgets gives each point's total budget; "
                                "drop this --set (--per-quarter fixes the quarterly cap)")
        base = load_scenario(args.scenario, overrides)
        for b in budgets:  # every budget must be a valid scenario (e.g. within the schema's ranges)
            try:
                load_scenario(args.scenario, {**overrides, **budget_overrides(base, b, args.per_quarter)})
            except ScenarioError as exc:
                raise FrontierError(f"--budgets {b:g}: {exc}") from None
        output = plan_folder(args.out or DEFAULT_OUT, option="--out", explicit=args.out is not None, force=args.force,
                             create_parents=args.out is None)
        if args.train and output.replace:
            raise FrontierError(f"--out {output.path} exists: --train writes its runs into a new folder; choose another --out")
    except (FrontierError, ScenarioError, OutputError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if output.note:
        print(output.note, flush=True)

    effort = Effort(episodes=args.episodes, static_iterations=args.static_iterations, static_seeds=effort.static_seeds,
                    schedule_seeds=effort.schedule_seeds, schedule_iterations=tuple(args.schedule_iterations),
                    refine_iterations=args.refine_iterations, scale_iterations=args.scale_iterations)
    with GracefulShutdown(phase="planning") as shutdown:
        try:
            # trained runs are written in place (an interruption keeps them); plans and tables at the end
            with output_folder(output, in_place=args.train) as out:
                result = compute_frontier(args.scenario, budgets, per_quarter=args.per_quarter, overrides=overrides, effort=effort,
                                          workers=args.workers, train=args.train, timesteps=args.timesteps, seed=args.seed,
                                          runs_dir=out / "ppo", address=args.address, log=lambda m: print(m, flush=True))
                with shutdown.critical("writing the frontier"):
                    write_frontier(result, out)
        except Interrupted as exc:  # the workers are terminated by then (agents.workers)
            kept = f"; what the PPO runs wrote so far is in {output.path / 'ppo'}" if args.train and (output.path / "ppo").exists() else "; nothing was written"
            print(f"{exc.signal_name}: frontier stopped{kept}", file=sys.stderr, flush=True)
            return exc.exit_code
        except KeyboardInterrupt as exc:  # Ctrl-C while Ray Tune ran the PPO sweep (it saved its state)
            print(f"interrupted: {exc}", file=sys.stderr, flush=True)
            return 130
        except (FrontierError, SweepError) as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
        except OSError as exc:
            print(f"error: {describe_os_error(exc, str(exc.filename or output.path))}", file=sys.stderr)
            return 1
    paths = {kind: output.path / f"frontier.{kind}" for kind in ("csv", "json", "png")}
    print(frontier_table(result))
    print(f"wrote {paths['csv']}, {paths['json']}, {paths['png']} in {result['wall_seconds']:.0f}s", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
