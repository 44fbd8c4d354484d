#!/usr/bin/env python
"""The constraint benchmark for the README: hard budget, soft budget, cost-constrained PPO.

    python scripts/constraint_benchmark.py --out runs/constraint_benchmark          # 3 x 3 runs, ~30-40 min
    python scripts/constraint_benchmark.py --seeds 0 --timesteps 20000 --out /tmp/cb  # a quick look

Trains PPO (hard budget), PPO on soft mode without the constraint, and cost-constrained PPO
(``configs/train/ppo_lagrangian.yaml``), one run per seed, as one sweep on Ray Tune in
``--out/sweep`` (one run per core at a time, or on the cluster at ``--address``), evaluates
each on held-out episodes, and writes ``constraint_benchmark.md`` (the table) and
``constraint_benchmark.json`` into ``--out``. Rerunning the same command continues a stopped
benchmark (finished runs are kept). See :mod:`agents.constraint_benchmark`.
Bad input prints one line ``error: ...`` and exits 2.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from agents.shutdown import starting  # noqa: E402

with starting():  # a signal while the modules load: one line, nothing written yet
    from agents.cli import OneLineParser  # noqa: E402
    from agents.constraint_benchmark import VARIANT_NAMES, BenchmarkError, check_out, run_benchmark  # noqa: E402
    from agents.runs import RunError  # noqa: E402
    from agents.sweep import SweepError  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    parser = OneLineParser(description="Train and evaluate hard-budget PPO, soft-budget PPO and cost-constrained PPO.")
    parser.add_argument("--out", default="runs/constraint_benchmark", help="output folder (runs, table, JSON)")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2], help="training seeds (default 0 1 2)")
    parser.add_argument("--timesteps", type=int, help="env steps per run (default: each config's total_timesteps)")
    parser.add_argument("--episodes", type=int, default=64, help="held-out evaluation episodes per run (default 64)")
    parser.add_argument("--variants", nargs="+", default=list(VARIANT_NAMES), choices=VARIANT_NAMES, metavar="NAME",
                        help=f"subset of {', '.join(VARIANT_NAMES)}")
    parser.add_argument("--address", help="run the trainings on this Ray cluster ('auto' or HOST:PORT; default a local Ray)")
    args = parser.parse_args(argv)
    if args.timesteps is not None and args.timesteps < 1:
        parser.error(f"--timesteps must be a positive number of env steps; got {args.timesteps}")
    if args.episodes < 1:
        parser.error(f"--episodes must be at least 1; got {args.episodes}")
    if any(s < 0 for s in args.seeds) or len(set(args.seeds)) != len(args.seeds):
        parser.error("--seeds must be distinct non-negative integers")

    try:
        check_out(Path(args.out))  # before any training
        result = run_benchmark(Path(args.out), variants=args.variants, seeds=args.seeds, timesteps=args.timesteps,
                               episodes=args.episodes, address=args.address, log=lambda m: print(m, flush=True))
    except (BenchmarkError, RunError, SweepError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt as exc:
        print(f"interrupted: {exc}", flush=True)
        return 130
    print((Path(args.out) / "constraint_benchmark.md").read_text(), end="")
    print("targets: " + ", ".join(f"{k} {v}" for k, v in result["targets"].items()), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
