"""Benchmark the environment (and, later, training): print a table, optionally write JSON.

Example::

    python scripts/benchmark.py                      # ~2.5 s per measurement
    python scripts/benchmark.py --seconds 1 --json out/benchmark.json

JSON keys: ``single_env_steps_per_s``, ``vector_env_steps_per_s`` (native vector env at 1024),
``sync_vector_env_steps_per_s`` (gymnasium ``SyncVectorEnv`` at 64), ``vector_speedup`` (per
env-step), plus the extras of :func:`envs.benchmark.run_benchmark`, and the training keys of
:func:`measure_training` once it is filled in.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
from pathlib import Path
from typing import Sequence

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from envs.benchmark import format_table, run_benchmark  # noqa: E402
from envs.scenario import ScenarioError, load_scenario  # noqa: E402


def measure_training(seconds: float) -> dict[str, float]:
    """Training throughput: the hook for PPO (not measured yet).

    To be filled by the PPO work: call ``agents.ppo.measure_fps`` and return the keys
    ``ppo_fps_vector`` (PPO on the native vector env through ``envs.SB3VecEnv``),
    ``ppo_fps_dummy`` (PPO on SB3's ``DummyVecEnv``) and ``ppo_speedup`` (their ratio).
    They are printed after the environment table and merged into the JSON.
    """
    return {}


def write_json(data: dict, path: Path) -> None:
    """Write ``data`` as JSON atomically (temp file beside ``path``, then rename)."""
    directory = path.parent if str(path.parent) else Path(".")
    if not directory.is_dir():
        raise FileNotFoundError(f"directory does not exist: {directory}")
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as f:
            json.dump(data, f, indent=2, sort_keys=True)
            f.write("\n")
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description="Measure environment throughput (steps per second).")
    parser.add_argument("--seconds", type=float, default=2.5, help="wall-clock seconds per measurement (default 2.5)")
    parser.add_argument("--scenario", default="global", help="scenario to step (default global)")
    parser.add_argument("--json", type=Path, help="also write the results to this JSON file")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        if not args.seconds > 0:
            raise ValueError(f"--seconds must be > 0, got {args.seconds}")
        scenario = load_scenario(args.scenario)  # a bad name fails here, before any output
        print(f"measuring {args.seconds:g} s each, scenario {scenario.name}, Python {platform.python_version()}", file=sys.stderr)
        runs, summary = run_benchmark(args.seconds, scenario, progress=lambda m: print(f"  {m}...", file=sys.stderr))
        print(format_table(runs, summary))

        # ---- training throughput (PPO): see measure_training ----
        training = measure_training(args.seconds)
        for key, value in training.items():
            print(f"{key}: {value:,.1f}")
        summary.update(training)

        if args.json:
            write_json(summary, args.json)
            print(f"wrote {args.json}")
    except (ScenarioError, ValueError, OSError) as exc:
        print(f"error: {' '.join(str(exc).split())}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
