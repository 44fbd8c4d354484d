"""Play a playbook through a scenario and print the quarter-by-quarter table.

Example::

    python scripts/simulate.py --scenario global --policy merchant_package --seed 0
    python scripts/simulate.py --policy uniform --set budget.total=6 --set deterministic=true \\
        --csv out/uniform.csv --plot out/uniform.png

Bad input (unknown scenario or policy, a bad ``--set``, an unwritable path) prints one line
``error: ...`` on stderr and exits with status 2.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Sequence

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from agents.shutdown import starting  # noqa: E402

with starting():  # a signal while the modules load: one line, nothing written yet
    from agents.io import PLOT_FORMATS, check_distinct, plan_file, set_writer  # noqa: E402
    from agents.policies import PLAYBOOKS  # noqa: E402
    from agents.plots import plot_simulation  # noqa: E402
    from agents.simulate import CSV_SUFFIXES, format_table, simulate, write_csv  # noqa: E402
    from envs.scenario import ScenarioError, builtin_scenarios, load_scenario, parse_set_pairs  # noqa: E402


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description="Play a playbook through a scenario and print a per-quarter table.")
    parser.add_argument("--scenario", default="global", help=f"built-in ({', '.join(builtin_scenarios())}) or a YAML path")
    parser.add_argument("--policy", default="merchant_package", help=f"playbook: {', '.join(PLAYBOOKS)}")
    parser.add_argument("--seed", type=int, default=0, help="episode seed (default 0)")
    parser.add_argument("--set", dest="sets", action="append", default=[], metavar="KEY=VALUE",
                        help="scenario override by dotted path, repeatable (e.g. budget.mode=soft)")
    parser.add_argument("--csv", type=Path, help="also write the rows to this CSV file (must not exist)")
    parser.add_argument("--plot", type=Path, help="also plot the run rate by region against the target (.png, .pdf, .svg, .eps, .ps; must not exist)")
    parser.add_argument("--force", action="store_true", help="let --csv / --plot replace an earlier output of this command (never another file)")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    set_writer("simulate")  # --force replaces only what this command wrote
    args = build_parser().parse_args(argv)
    try:
        if args.policy not in PLAYBOOKS:
            raise ValueError(f"unknown policy '{args.policy}'; allowed: {', '.join(PLAYBOOKS)}")
        if args.seed < 0:
            raise ValueError(f"--seed must be a non-negative integer, got {args.seed}")
        scenario = load_scenario(args.scenario, parse_set_pairs(args.sets, example="budget.total=6", error=ValueError))
        csv_out = plan_file(args.csv, option="--csv", force=args.force, suffixes=CSV_SUFFIXES) if args.csv else None
        plot_out = plan_file(args.plot, option="--plot", force=args.force, suffixes=PLOT_FORMATS) if args.plot else None
        check_distinct([o for o in (csv_out, plot_out) if o is not None])
        rows = simulate(scenario, args.policy, seed=args.seed)
        print(f"{scenario.name}: {scenario.description}")
        budget = scenario.budget
        limits = (f"hard: ${budget.per_quarter:g}B a quarter at most" if budget.mode == "hard"
                  else "soft: a limit for the agent, not enforced")
        print(f"policy {args.policy}, seed {args.seed}, budget ${budget.total:g}B ({limits})\n")
        print(format_table(rows, target_run_rate=scenario.target_run_rate))
        if csv_out:
            print(f"\nwrote {write_csv(rows, csv_out)}")
        if plot_out:
            title = f"{scenario.name} / {args.policy} / seed {args.seed}"
            print(f"wrote {plot_simulation(rows, plot_out, scenario.target_run_rate, scenario.region_names, title)}")
    except (ScenarioError, ValueError, OSError) as exc:
        message = " ".join(str(exc).split())  # one line, whatever the source
        print(f"error: {message}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
