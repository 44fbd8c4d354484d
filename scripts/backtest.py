"""Replay a history file through the model: every observation beside the simulated value.

Example::

    python scripts/backtest.py --history configs/history/tiktok_shop.yaml \\
        --json out/backtest.json --csv out/backtest.csv --plot out/backtest.png
    python scripts/backtest.py --history tiktok_shop --scenario global   # the fitted scenario

The plan and the events of the history are played in soft budget mode (the record's spend is
not scaled), deterministically and over ``--seeds`` stochastic episodes (the band). Prints the
table of observed against simulated values and the mean absolute percentage errors, in sample and
on the holdout observations. ``--scenario`` replays another scenario than the history's (its
numbers; the history's plan and events).

Bad input (a history file that does not validate, an unknown scenario, an output path that
exists) prints one line ``error: ...`` on stderr and exits with status 2, writing nothing.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Sequence

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from agents.shutdown import starting  # noqa: E402

with starting():  # a signal while the modules load: one line, nothing written yet
    from agents import io  # noqa: E402
    from agents.calibration.backtest import BAND_SEEDS, backtest, backtest_json, format_table, path_csv, plot_backtest  # noqa: E402
    from agents.cli import OneLineParser, one_line_error  # noqa: E402
    from envs.history import load_history  # noqa: E402


def build_parser() -> OneLineParser:
    parser = OneLineParser(description="Back-test a history file: observed against simulated, in sample and on the holdout.")
    parser.add_argument("--history", required=True, help="history file (a path, or a name in configs/history)")
    parser.add_argument("--scenario", help="replay this scenario's numbers instead of the history's scenario (name or path)")
    parser.add_argument("--seeds", type=int, default=BAND_SEEDS, help=f"stochastic episodes for the band (default {BAND_SEEDS}; 0: none)")
    parser.add_argument("--json", type=Path, help="write the report as JSON")
    parser.add_argument("--csv", type=Path, help="write the simulated path (one row per quarter and region) as CSV")
    parser.add_argument("--plot", type=Path, help="write observed against simulated by region (PNG, PDF or SVG)")
    parser.add_argument("--force", action="store_true", help="replace outputs this tool wrote before")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    io.set_writer("backtest")  # --force replaces only what this command wrote
    args = build_parser().parse_args(argv)
    try:
        if args.seeds < 0:
            raise ValueError(f"--seeds must be 0 or more, got {args.seeds}")
        outputs = {}
        for option, path, suffixes in (("--json", args.json, ("json",)), ("--csv", args.csv, ("csv",)),
                                       ("--plot", args.plot, io.PLOT_FORMATS)):
            if path is not None:
                outputs[option] = io.plan_file(path, option=option, force=args.force, suffixes=suffixes)
        io.check_distinct(outputs.values())
        history = load_history(args.history, scenario=args.scenario)
        bt = backtest(history, seeds=args.seeds)
        print(format_table(bt))
        if "--json" in outputs:
            print(f"wrote {io.write_output_json(outputs['--json'], backtest_json(bt))}")
        if "--csv" in outputs:
            print(f"wrote {io.write_output_text(outputs['--csv'], path_csv(bt))}")
        if "--plot" in outputs:
            print(f"wrote {io.write_output_file(outputs['--plot'], lambda tmp: plot_backtest(bt, tmp, outputs['--plot'].format))}")
    except (ValueError, OSError) as exc:
        return one_line_error(exc)
    return 0


if __name__ == "__main__":
    sys.exit(main())
