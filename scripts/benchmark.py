"""Benchmark the environment and PPO training throughput: print a table, optionally write JSON.

Example::

    python scripts/benchmark.py                      # ~2.5 s per measurement
    python scripts/benchmark.py --seconds 1 --json out/benchmark.json
    python scripts/benchmark.py --json          # runs/benchmark.json, or benchmark-2.json if taken

JSON keys: ``single_env_steps_per_s``, ``vector_env_steps_per_s`` (native vector env at 1024),
``sync_vector_env_steps_per_s`` (gymnasium ``SyncVectorEnv`` at 64), ``vector_speedup`` (per
env-step), plus the extras of :func:`envs.benchmark.run_benchmark`, and the training keys of
:func:`measure_training`.
"""

from __future__ import annotations

import argparse
import platform
import sys
from pathlib import Path
from typing import Sequence

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from agents import lazy  # noqa: E402
from agents.io import plan_file, write_output_json  # noqa: E402
from envs.benchmark import format_table, run_benchmark  # noqa: E402
from envs.scenario import ScenarioError, load_scenario  # noqa: E402


def measure_training(timesteps: int) -> dict[str, float]:
    """PPO training throughput (frames/s, learning included) with the default training config.

    The same PPO (hyperparameters, ``VecMonitor``, ``VecNormalize``) on the native batched env
    (``envs.SB3VecEnv``) and on SB3's ``DummyVecEnv`` of single envs, one after the other:
    keys ``ppo_fps_vector``, ``ppo_fps_dummy`` and ``ppo_speedup``. ``timesteps=0`` skips it.
    """
    if timesteps <= 0:
        return {}
    measure_fps = lazy.training().measure_fps
    vector = measure_fps(True, timesteps=timesteps)
    dummy = measure_fps(False, timesteps=timesteps)
    return {"ppo_fps_vector": vector, "ppo_fps_dummy": dummy, "ppo_speedup": vector / dummy}


#: ``--json`` without a path writes here (the next free name, benchmark-2.json, ... if taken)
DEFAULT_JSON = Path("runs") / "benchmark.json"
#: bounds of --seconds and --ppo-timesteps: a measurement that never ends is a typo
MAX_SECONDS = 600.0
MAX_PPO_TIMESTEPS = 2_000_000


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description="Measure environment throughput (steps per second).")
    parser.add_argument("--seconds", type=float, default=2.5, help="wall-clock seconds per measurement (default 2.5)")
    parser.add_argument("--scenario", default="global", help="scenario to step (default global)")
    parser.add_argument("--json", type=Path, nargs="?", const=DEFAULT_JSON,
                        help=f"also write the results to this JSON file, which must not exist (no path: {DEFAULT_JSON}, or the next free name)")
    parser.add_argument("--force", action="store_true", help="let --json replace an earlier output of this command (never another file)")
    parser.add_argument(
        "--ppo-timesteps", type=int, default=16_384,
        help="env steps of PPO training per throughput measurement (default 16384; 0 skips it)",
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        if not 0 < args.seconds <= MAX_SECONDS:  # also refuses nan and inf
            raise ValueError(f"--seconds must be in (0, {MAX_SECONDS:g}], got {args.seconds:g}")
        if not 0 <= args.ppo_timesteps <= MAX_PPO_TIMESTEPS:
            raise ValueError(f"--ppo-timesteps must be in [0, {MAX_PPO_TIMESTEPS}], got {args.ppo_timesteps}")
        scenario = load_scenario(args.scenario)  # a bad name fails here, before any output
        output = None
        if args.json is not None:
            default = args.json is DEFAULT_JSON
            output = plan_file(args.json, option="--json", explicit=not default, force=args.force, suffixes=("json",), create_parents=default)
            if output.note:
                print(output.note, file=sys.stderr)
        print(f"measuring {args.seconds:g} s each, scenario {scenario.name}, Python {platform.python_version()}", file=sys.stderr)
        runs, summary = run_benchmark(args.seconds, scenario, progress=lambda m: print(f"  {m}...", file=sys.stderr))
        print(format_table(runs, summary))

        # ---- training throughput (PPO): see measure_training ----
        if args.ppo_timesteps:
            print(f"  PPO training, {args.ppo_timesteps} env steps each on the vector and DummyVecEnv...", file=sys.stderr)
        training = measure_training(args.ppo_timesteps)
        if training:
            print(
                f"\nPPO training: native vector env {training['ppo_fps_vector']:,.0f} frames/s, "
                f"DummyVecEnv {training['ppo_fps_dummy']:,.0f} frames/s, speedup {training['ppo_speedup']:.2f}x"
            )
        summary.update(training)

        if output is not None:
            print(f"wrote {write_output_json(output, summary, sort_keys=True)}")
    except (ScenarioError, ValueError, OSError) as exc:
        print(f"error: {' '.join(str(exc).split())}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("SIGINT: benchmark stopped; nothing was written", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
