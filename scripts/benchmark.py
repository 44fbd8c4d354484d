"""Benchmark the environment and PPO training throughput: print a table, optionally write JSON.

Example::

    python scripts/benchmark.py                      # ~2.5 s per measurement
    python scripts/benchmark.py --seconds 1 --json out/benchmark.json
    python scripts/benchmark.py --json          # runs/benchmark.json, or benchmark-2.json if taken
    python scripts/benchmark.py --time-to-quality --json runs/ttq.json   # trains configs/train/ppo.yaml

``--time-to-quality`` measures something else (:mod:`agents.quality`): it plans the oracle on
the training's held-out seeds, trains the config (``--config``, ``--set``) and prints JSON with
``time_to_quality_s`` (training seconds, evaluation pauses excluded, at which the held-out
objective first reaches ``--target`` of the oracle's; null if never), ``ratio_reached``, the
oracle's objective, settings and seeds, and every evaluation. Progress goes to stderr.

JSON keys: ``single_env_steps_per_s``, ``vector_env_steps_per_s`` (native vector env at 1024),
``sync_vector_env_steps_per_s`` (gymnasium ``SyncVectorEnv`` at 64), ``vector_speedup`` (per
env-step), plus the extras of :func:`envs.benchmark.run_benchmark`, and the training keys of
:func:`measure_training`.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
from pathlib import Path
from typing import Sequence

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from agents.shutdown import starting  # noqa: E402

with starting():  # a signal while the modules load: one line, nothing written yet
    from agents import lazy, quality  # noqa: E402
    from agents.cli import OneLineParser, one_line_error, only_with  # noqa: E402
    from agents.config import DEFAULT_CONFIG, ConfigError, load_config  # noqa: E402
    from agents.evaluation import PlannerEffort  # noqa: E402
    from agents.io import plan_file, write_output_json, set_writer  # noqa: E402
    from agents.shutdown import Interrupted  # noqa: E402
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
#: ``--time-to-quality --json`` without a path writes here (or the next free name)
DEFAULT_TTQ_JSON = Path("runs") / "time_to_quality.json"
#: bounds of --seconds and --ppo-timesteps: a measurement that never ends is a typo
MAX_SECONDS = 600.0
MAX_PPO_TIMESTEPS = 2_000_000


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineParser(description="Measure environment throughput (steps per second), or with --time-to-quality a training's time to 0.95 of the oracle.")
    parser.add_argument("--seconds", type=float, default=2.5, help="wall-clock seconds per measurement (default 2.5)")
    parser.add_argument("--scenario", default="global", help="scenario to step (default global)")
    parser.add_argument("--json", type=Path, nargs="?", const=DEFAULT_JSON,
                        help=f"also write the results to this JSON file, which must not exist (no path: {DEFAULT_JSON}, or the next free name)")
    parser.add_argument("--force", action="store_true", help="let --json replace an earlier output of this command (never another file)")
    parser.add_argument(
        "--ppo-timesteps", type=int, default=16_384,
        help="env steps of PPO training per throughput measurement (default 16384; 0 skips it)",
    )
    ttq = parser.add_argument_group("time to quality (--time-to-quality; see agents/quality.py)")
    ttq.add_argument("--time-to-quality", action="store_true", help="train --config and report when its held-out objective first reaches --target of the oracle's")
    ttq.add_argument("--config", default=str(DEFAULT_CONFIG), help="training config YAML (default: configs/train/ppo.yaml)")
    ttq.add_argument("--set", dest="sets", action="append", default=[], metavar="KEY=VALUE", help="dotted config override, repeatable")
    ttq.add_argument("--target", type=float, default=quality.TARGET_RATIO, help=f"share of the oracle's objective to reach (default {quality.TARGET_RATIO})")
    effort = quality.QUALITY_EFFORT
    ttq.add_argument("--static-iterations", type=int, default=effort.static_iterations, help=f"best_static generations, the oracle's warm start (default {effort.static_iterations})")
    ttq.add_argument("--static-seeds", type=int, default=effort.static_seeds, help=f"training seeds for best_static (default {effort.static_seeds})")
    ttq.add_argument("--schedule-iterations", type=int, nargs=2, default=list(effort.schedule_iterations), metavar=("KNOTS", "QUARTERS"),
                     help=f"oracle's common-schedule generations (default {' '.join(map(str, effort.schedule_iterations))})")
    ttq.add_argument("--oracle-scale-iterations", type=int, default=effort.oracle_scale_iterations, help=f"oracle's per-episode scale generations (default {effort.oracle_scale_iterations})")
    ttq.add_argument("--oracle-iterations", type=int, default=effort.oracle_iterations, help=f"oracle's per-episode per-quarter generations (default {effort.oracle_iterations})")
    ttq.add_argument("--workers", type=int, default=effort.workers, help=f"processes for the oracle (default {effort.workers})")
    return parser


TIME_TO_QUALITY_FLAGS = [("--config", "config"), ("--set", "sets"), ("--target", "target"), ("--static-iterations", "static_iterations"),
                         ("--static-seeds", "static_seeds"), ("--schedule-iterations", "schedule_iterations"),
                         ("--oracle-scale-iterations", "oracle_scale_iterations"), ("--oracle-iterations", "oracle_iterations"),
                         ("--workers", "workers")]
"""The options of the time-to-quality group: refused without ``--time-to-quality`` (they would do nothing)."""


def _effort(args: argparse.Namespace) -> PlannerEffort:
    return PlannerEffort(static_iterations=args.static_iterations, static_seeds=args.static_seeds,
                         schedule_iterations=tuple(args.schedule_iterations), oracle_scale_iterations=args.oracle_scale_iterations,
                         oracle_iterations=args.oracle_iterations, workers=args.workers)


def _time_to_quality(args: argparse.Namespace) -> int:
    """``--time-to-quality``: inputs checked and the output planned before the oracle and the training."""
    effort = _effort(args)
    quality.check_inputs(args.target, effort)
    config = load_config(args.config, args.sets)
    output = _plan_json(args, DEFAULT_TTQ_JSON)
    result = quality.time_to_quality(config, target=args.target, effort=effort,
                                     config_source=" ".join([args.config, *(f"--set {s}" for s in args.sets)]))
    print(json.dumps(result, indent=2))
    if output is not None:
        print(f"wrote {write_output_json(output, result, sort_keys=True)}", file=sys.stderr)
    return 0


def _plan_json(args: argparse.Namespace, default_path: Path = DEFAULT_JSON):
    if args.json is None:
        return None
    default = args.json is DEFAULT_JSON
    path = default_path if default else args.json
    output = plan_file(path, option="--json", explicit=not default, force=args.force, suffixes=("json",), create_parents=default)
    if output.note:
        print(output.note, file=sys.stderr)
    return output


def main(argv: Sequence[str] | None = None) -> int:
    set_writer("benchmark")  # --force replaces only what this command wrote
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        if not 0 < args.seconds <= MAX_SECONDS:  # also refuses nan and inf
            raise ValueError(f"--seconds must be in (0, {MAX_SECONDS:g}], got {args.seconds:g}")
        if not 0 <= args.ppo_timesteps <= MAX_PPO_TIMESTEPS:
            raise ValueError(f"--ppo-timesteps must be in [0, {MAX_PPO_TIMESTEPS}], got {args.ppo_timesteps}")
        if args.time_to_quality:
            return _time_to_quality(args)
        unused = only_with(parser, args, TIME_TO_QUALITY_FLAGS, "--time-to-quality")
        if unused:
            raise ValueError(unused)
        scenario = load_scenario(args.scenario)  # a bad name fails here, before any output
        output = _plan_json(args)
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
    except (ScenarioError, ConfigError, ValueError, OSError) as exc:
        return one_line_error(exc)
    except Interrupted as exc:
        print(f"{exc.signal_name}: benchmark stopped; nothing was written", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("SIGINT: benchmark stopped; nothing was written", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
