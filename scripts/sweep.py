#!/usr/bin/env python
"""Run a sweep of trainings on Ray Tune: on this machine, or on a Ray cluster.

    python scripts/sweep.py --config configs/sweeps/tiny.yaml                  # local Ray, 2 tiny trials
    python scripts/sweep.py --config configs/sweeps/ppo_speed.yaml --resume    # continue an interrupted sweep
    python scripts/sweep.py --config configs/sweeps/ppo_speed.yaml --address auto --storage /shared/sweeps

The sweep file (see ``agents/sweep.py`` and ``configs/sweeps/``) names a base training config,
the axes, the metric and how many trials run at once. Without ``--address`` a local Ray starts
with one CPU per core (``--cpus`` to change) and one trial per CPU. Each trial is a normal run
folder under ``<storage>/<name>/runs/``; the sweep writes ``results.csv``, ``results.json``,
``results.png`` and ``report.md`` beside them. Bad input (sweep file, address, folder) prints
one line ``error: ...`` and exits 2, writing nothing. Ctrl-C or SIGTERM prints one line with the
command that continues (exit 130 / 143).
"""

from __future__ import annotations

import signal
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from agents.shutdown import starting  # noqa: E402

with starting():  # a signal while the modules load: one line, nothing written yet
    from agents.cli import OneLineParser  # noqa: E402
    from agents.sweep import (  # noqa: E402
        SWEEP_FILE, SweepError, check_storage, check_sweep_dir, copy_spec, default_sweep_dir, load_sweep, run_sweep,
    )


def continue_with(args, sweep_dir: Path | None) -> str:
    """The command that continues: ``--resume`` once the sweep folder exists, else the same command."""
    storage = "".join(f" --{flag.replace('_', '-')} {getattr(args, flag)}" for flag in ("storage", "address", "cpus", "max_concurrent")
                      if getattr(args, flag) is not None)
    if sweep_dir is not None and (sweep_dir / SWEEP_FILE).is_file():
        return f"continue with: python scripts/sweep.py --config {args.config} --resume{storage}"
    return f"nothing was written; start it again with: python scripts/sweep.py --config {args.config}{storage}"


def main(argv: list[str] | None = None) -> int:
    parser = OneLineParser(description="Run a sweep of trainings on Ray Tune (configs/sweeps/*.yaml).")
    parser.add_argument("--config", required=True, help="sweep file, e.g. configs/sweeps/tiny.yaml")
    parser.add_argument("--address", help="an existing Ray cluster: 'auto' or HOST:PORT (default: start a local Ray)")
    parser.add_argument("--storage", help="folder the sweep folder goes in (default runs/sweeps); on a multi-node cluster, one every node mounts")
    parser.add_argument("--cpus", type=int, help="CPUs of the local Ray (default: the cores); not with --address")
    parser.add_argument("--max-concurrent", type=int, metavar="N", help="trials at a time (overrides the sweep file's max_concurrent)")
    parser.add_argument("--resume", action="store_true", help="continue the interrupted sweep of this file in its folder")
    args = parser.parse_args(argv)
    sweep_dir = None
    try:
        if args.cpus is not None and (args.cpus < 1 or args.address):
            raise SweepError("--cpus must be at least 1 and is for a local Ray only (not with --address)")
        spec = load_sweep(args.config)
        if args.max_concurrent is not None:
            if args.max_concurrent < 1:
                raise SweepError(f"--max-concurrent must be at least 1; got {args.max_concurrent}")
            spec = copy_spec(spec, max_concurrent=args.max_concurrent)
        check_storage(args.storage)  # before Ray starts: a file or a missing parent is one line
        sweep_dir = default_sweep_dir(spec, args.storage)
        check_sweep_dir(spec, sweep_dir, args.resume)
        result = run_sweep(spec, sweep_dir, resume=args.resume, address=args.address, cpus=args.cpus, log=lambda m: print(m, flush=True))
    except SweepError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt as exc:  # Ctrl-C or SIGTERM while Ray started (or a second one while Ray Tune saved)
        signum = getattr(exc, "signum", signal.SIGINT)
        print(f"interrupted ({signal.Signals(signum).name}): {continue_with(args, sweep_dir)}", flush=True)
        return 128 + signum
    if result.interrupted:
        finished = sum(r["status"] == "finished" for r in result.rows)
        print(f"interrupted: {finished} of {result.expected} trials finished; {continue_with(args, sweep_dir)}", flush=True)
        return 128 + (result.signum or signal.SIGINT)
    best = result.best
    failed = [r for r in result.rows if r["status"] == "error"]
    print(f"done: {len(result.rows)} trials in {result.wall_seconds:.0f}s; results in {result.sweep_dir}", flush=True)
    if best is not None:
        print(f"best: {spec.metric} {best[spec.metric]:.4g} ({best['run_dir']})", flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
