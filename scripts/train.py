#!/usr/bin/env python
"""Train an agent from a config into a run folder; watch it in TensorBoard.

    python scripts/train.py                                   # configs/train/ppo.yaml
    python scripts/train.py --timesteps 50000 --seed 3 --set ppo.learning_rate=1e-4
    python scripts/train.py --resume runs/global__ppo__0__20240101-120000
    tensorboard --logdir runs

Bad input (config, --set, run folder) prints one line ``error: ...`` and exits 2, writing
nothing. Ctrl-C or SIGTERM saves a checkpoint and exits (130 / 143); ``--resume`` continues it.
"""

from __future__ import annotations

import argparse
import signal
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from agents import lazy  # noqa: E402
from agents.cli import OneLineParser  # noqa: E402
from agents.config import DEFAULT_CONFIG, ConfigError, load_config  # noqa: E402
from agents.runs import RunError, check_new_run_dir, create_run_dir, default_run_dir, open_for_resume  # noqa: E402


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = OneLineParser(description="Train a PPO agent on a Flywheel scenario (see configs/train/).")
    parser.add_argument("--config", default=str(DEFAULT_CONFIG), help="training config YAML (default: configs/train/ppo.yaml)")
    parser.add_argument("--timesteps", type=int, help="total env steps (overrides total_timesteps)")
    parser.add_argument("--seed", type=int, help="seed (overrides seed)")
    parser.add_argument("--run-dir", help="run folder (default: runs/<scenario>__<algo>__<seed>__<timestamp>)")
    parser.add_argument("--resume", metavar="DIR", help="continue an interrupted run folder to its total timesteps")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="dotted config override, repeatable (e.g. ppo.n_steps=24, overrides.budget.mode=soft)")
    parser.add_argument("--progress", choices=["auto", "bar", "lines", "none"], default="auto", help="progress display (auto: a bar on a terminal)")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        if args.resume:
            given = [name for name, value in [("--config", args.config != str(DEFAULT_CONFIG)), ("--timesteps", args.timesteps is not None),
                                              ("--seed", args.seed is not None), ("--run-dir", args.run_dir), ("--set", args.set)] if value]
            if given:
                raise ConfigError(f"--resume continues a run with its saved config; it cannot be combined with {', '.join(given)}")
            config, checkpoint = open_for_resume(args.resume)
            run_dir = Path(args.resume)
        else:
            sets = list(args.set)
            if args.timesteps is not None:
                sets.append(f"total_timesteps={args.timesteps}")
            if args.seed is not None:
                sets.append(f"seed={args.seed}")
            config = load_config(args.config, sets)
            run_dir = check_new_run_dir(args.run_dir or default_run_dir(config))
    except (ConfigError, RunError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2

    if args.resume:
        print(f"resuming {run_dir} from step {checkpoint.timesteps} to {config.total_timesteps}", flush=True)
    else:
        try:
            create_run_dir(run_dir, config)
        except RunError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
        print(f"training {config.algo} on '{config.scenario}' for {config.total_timesteps} steps into {run_dir}", flush=True)
    result = lazy.training().train(config, run_dir, resume=bool(args.resume), progress=args.progress)  # torch only now
    if result.interrupted:
        name = signal.Signals(result.signal).name
        print(f"{name}: stopped at step {result.timesteps}; checkpoint saved. Continue with: python scripts/train.py --resume {run_dir}", flush=True)
        return 128 + int(result.signal)
    s = result.summary
    playbooks = ", ".join(f"{k} {v:.2f}" for k, v in s["eval_playbooks_gmv_mean"].items())
    print(
        f"done: {s['timesteps']} steps in {s['wall_seconds']:.0f}s ({s['fps']:.0f} steps/s); "
        f"eval GMV {s['eval_gmv_mean']:.2f}$B over {s['eval_episodes']} held-out episodes "
        f"(playbooks: {playbooks}); run folder {run_dir}",
        flush=True,
    )
    print(f"TensorBoard: .venv/bin/tensorboard --logdir {run_dir.parent}  (or: make tensorboard)", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
