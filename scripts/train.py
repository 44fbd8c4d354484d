#!/usr/bin/env python
"""Train an agent from a config into a run folder; watch it in TensorBoard.

    python scripts/train.py                                   # configs/train/ppo.yaml
    python scripts/train.py --timesteps 50000 --seed 3 --set ppo.learning_rate=1e-4
    python scripts/train.py --resume runs/global__ppo__0__20240101-120000
    python scripts/train.py -n 20000 --n-envs 16 --eval-freq 5000 --save-freq 10000 --device auto -v 1 --tensorboard-log tb
    tensorboard --logdir runs

Bad input (config, --set, run folder) prints one line ``error: ...`` and exits 2, writing
nothing. Ctrl-C or SIGTERM at any moment ends with a saved state and one line (exit 130 / 143);
``--resume`` continues it. A run folder is held by one trainer at a time (a second one is
refused, naming the holder's PID); a damaged checkpoint is skipped for the newest that loads.
A file that cannot be written (a full disk) is one line, exit 1. See docs/reliability.md.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from agents.shutdown import starting  # noqa: E402

with starting():  # a signal while the modules load: one line, nothing written yet
    from agents import lazy  # noqa: E402
    from agents.cli import OneLineParser  # noqa: E402
    from agents.config import DEFAULT_CONFIG, ConfigError, load_config, whole_rollouts  # noqa: E402
    from agents.runs import (TB_DIR, RunError, check_new_run_dir, create_run_dir, default_run_dir, open_for_resume,  # noqa: E402
                             stopped_line, tensorboard_dir)
    from agents.shutdown import GracefulShutdown, Interrupted  # noqa: E402


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = OneLineParser(description="Train a PPO agent on a Flywheel scenario (see configs/train/).")
    parser.add_argument("--config", default=str(DEFAULT_CONFIG), help="training config YAML (default: configs/train/ppo.yaml)")
    parser.add_argument("-n", "--timesteps", type=int, help="total env steps (overrides total_timesteps)")
    parser.add_argument("--seed", type=int, help="seed (overrides seed)")
    parser.add_argument("--run-dir", help="run folder (default: runs/<scenario>__<algo>__<seed>__<timestamp>)")
    parser.add_argument("--resume", metavar="DIR", help="continue an interrupted run folder to its total timesteps")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="dotted config override, repeatable (e.g. ppo.n_steps=24, overrides.budget.mode=soft)")
    parser.add_argument("--progress", choices=["auto", "bar", "lines", "none"], default="auto", help="progress display (auto: a bar on a terminal)")
    # the flags SB3 and rl-zoo3 users type: config keys, and how this run is executed
    parser.add_argument("--n-envs", type=int, help="parallel markets (overrides n_envs)")
    parser.add_argument("--eval-freq", type=int, help="env steps between held-out evaluations (overrides eval_freq)")
    parser.add_argument("--save-freq", type=int, help="env steps between checkpoints (overrides checkpoint_freq)")
    parser.add_argument("--device", choices=["cpu", "cuda", "auto"], default="cpu", help="torch device, as SB3 reads it (auto: CUDA when available; default cpu, best for MLP policies)")
    parser.add_argument("--tensorboard-log", metavar="DIR", help="write TensorBoard events to DIR/<run folder name> instead of the run folder's tb/ (the run records it: --resume and plot_run.py find them)")
    parser.add_argument("-v", "--verbose", type=int, choices=[0, 1, 2], default=0, help="SB3 verbosity: 1 prints SB3's rollout/train tables, 2 also its debug messages")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    with GracefulShutdown(phase="setup") as shutdown:  # from here on, Ctrl-C and SIGTERM are one line
        try:
            return _run(args, shutdown)
        except Interrupted as exc:  # before the run folder exists: nothing was written
            print(f"{exc.signal_name}: stopped before the run folder was made; nothing was written", file=sys.stderr, flush=True)
            return exc.exit_code


CONFIG_FLAGS = {"timesteps": "total_timesteps", "seed": "seed", "n_envs": "n_envs", "eval_freq": "eval_freq", "save_freq": "checkpoint_freq"}


def _run(args: argparse.Namespace, shutdown: GracefulShutdown) -> int:
    try:
        if args.device != "cpu":
            lazy.training().check_device(args.device)  # needs torch; before anything is written
        if args.resume:
            given = [name for name, value in [("--config", args.config != str(DEFAULT_CONFIG)), ("--run-dir", args.run_dir), ("--set", args.set),
                                              ("--tensorboard-log", args.tensorboard_log)] if value]
            given += ["--" + flag.replace("_", "-") for flag in CONFIG_FLAGS if getattr(args, flag) is not None]
            if given:
                raise ConfigError(f"--resume continues a run with its saved config; it cannot be combined with {', '.join(given)}")
            run_dir = Path(args.resume)
            config, lock = open_for_resume(run_dir)
        else:
            sets = list(args.set) + [f"{key}={getattr(args, flag)}" for flag, key in CONFIG_FLAGS.items() if getattr(args, flag) is not None]
            config = load_config(args.config, sets)
            run_dir = check_new_run_dir(args.run_dir or default_run_dir(config), typed=args.run_dir is not None)
            lock = create_run_dir(run_dir, config, args.tensorboard_log)  # complete, locked, resumable from step 0
    except (ConfigError, RunError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2

    with lock:
        if not args.resume:
            planned = whole_rollouts(0, config.total_timesteps, config.rollout_steps)
            steps = f"{config.total_timesteps} steps" if planned == config.total_timesteps else \
                f"{planned} steps ({config.total_timesteps} rounded up to whole rollouts of {config.rollout_steps})"
            print(f"training {config.algo} on '{config.scenario}' for {steps} into {run_dir}", flush=True)
        try:
            training = lazy.training()  # torch only now
            result = training.train(config, run_dir, resume=bool(args.resume), progress=args.progress, shutdown=shutdown,
                                    device=args.device, verbose=args.verbose)
        except Interrupted as exc:  # while torch was being imported, or between two phases
            print(stopped_line(run_dir, exc.signum, exc.phase, exc.forced), flush=True)
            return exc.exit_code
        except RunError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
        except lazy.training().TrainError as exc:  # imported by now
            print(f"error: {exc}", file=sys.stderr, flush=True)
            return 1
    if result.interrupted:
        print(stopped_line(run_dir, result.signal, result.phase, result.forced), flush=True)
        return 128 + int(result.signal)
    s = result.summary
    playbooks = ", ".join(f"{k} {v:.2f}" for k, v in s["eval_playbooks_gmv_mean"].items())
    print(
        f"done: {s['timesteps']} steps in {s['wall_seconds']:.0f}s ({s['fps']:.0f} steps/s); "
        f"eval GMV {s['eval_gmv_mean']:.2f}$B over {s['eval_episodes']} held-out episodes "
        f"(playbooks: {playbooks}); run folder {run_dir}",
        flush=True,
    )
    events = tensorboard_dir(run_dir)
    logdir = run_dir.parent if events == run_dir / TB_DIR else events.parent  # every run beside this one
    print(f"TensorBoard: .venv/bin/tensorboard --logdir {logdir}  (or: make tensorboard)", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
