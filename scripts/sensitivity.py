"""Global sensitivity of the headline outcomes to every uncertain parameter.

Example::

    python scripts/sensitivity.py --scenario global --out runs/sensitivity
    python scripts/sensitivity.py --scenario global --ensemble configs/ensembles/global.yaml --trajectories 20 --out out/

Writes ``sensitivity.json`` (ranges, Morris mu*/sigma per outcome, one-at-a-time ends, the
conclusions that hold or flip, the paragraph), ``tornado.png`` and ``sensitivity.md`` (the
paragraph) into ``--out``. Ranges: each ASSUMPTION parameter's stated range in its scenario
file (+-50% where none is stated) and, with ``--ensemble`` (default: ``configs/ensembles/<scenario>.yaml``
if it exists), the posterior's 5th-95th percentile of the fitted parameters.

Bad input prints one line ``error: ...`` and exits 2, writing nothing.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Sequence

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from agents.shutdown import starting  # noqa: E402

with starting():  # a signal while the modules load: one line, nothing written yet
    from agents import io  # noqa: E402
    from agents.calibration.sensitivity import analyse, paragraph, plot_tornado, sensitivity_json  # noqa: E402
    from agents.cli import OneLineParser, one_line_error  # noqa: E402
    from agents.shutdown import GracefulShutdown, Interrupted, report_stop  # noqa: E402
    from envs.ensemble import ENSEMBLE_DIR, load_ensemble  # noqa: E402
    from envs.scenario import load_scenario  # noqa: E402


def build_parser() -> OneLineParser:
    parser = OneLineParser(description="Morris sensitivity of cumulative GMV, run rate and spend mix to every uncertain parameter.")
    parser.add_argument("--scenario", default="global", help="scenario name or path (default global)")
    parser.add_argument("--out", type=Path, required=True, help="output folder")
    parser.add_argument("--ensemble", help="posterior ensemble for the fitted parameters' ranges (default: the scenario's, if any; 'none' for none)")
    parser.add_argument("--trajectories", type=int, default=10, help="Morris trajectories (default 10; points = trajectories x (parameters + 1))")
    parser.add_argument("--static-iterations", type=int, default=60, help="CMA-ES generations of best_static (default 60)")
    parser.add_argument("--static-seeds", type=int, default=16, help="training seeds of best_static (default 16)")
    parser.add_argument("--reoptimise", type=int, default=3, help="re-optimise best_static at both ends of this many top ranges (default 3)")
    parser.add_argument("--seed", type=int, default=0, help="Morris design seed (default 0)")
    parser.add_argument("--force", action="store_true", help="replace an output folder this tool wrote before")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    io.set_writer("sensitivity")  # --force replaces only what this command wrote
    args = build_parser().parse_args(argv)
    written: list[str] = []
    with GracefulShutdown(phase="sensitivity analysis") as shutdown:
        try:
            return _run(args, shutdown, written)
        except Interrupted as exc:  # the folder appears whole or not at all (agents.io)
            return report_stop(exc, "sensitivity analysis", written)


def _run(args, shutdown: GracefulShutdown, written: list[str]) -> int:
    try:
        if args.trajectories < 2 or args.static_iterations < 1 or args.static_seeds < 1 or args.reoptimise < 0:
            raise ValueError("--trajectories must be >= 2, --static-iterations and --static-seeds >= 1, --reoptimise >= 0")
        out = io.plan_folder(args.out, option="--out", force=args.force)
        scenario = load_scenario(args.scenario)
        ens_ref = args.ensemble
        if ens_ref is None and (ENSEMBLE_DIR / f"{Path(args.scenario).stem}.yaml").exists():
            ens_ref = str(ENSEMBLE_DIR / f"{Path(args.scenario).stem}.yaml")
        ensemble = load_ensemble(ens_ref) if ens_ref not in (None, "none") else None
        if ensemble is not None:
            ensemble.scenarios(scenario)  # its parameters must be this scenario's (global's on us: no sea), one line if not
        s = analyse(args.scenario, ensemble, trajectories=args.trajectories, seed=args.seed,
                    static_iterations=args.static_iterations, static_seeds=args.static_seeds, reoptimise=args.reoptimise)
        doc = sensitivity_json(s, scenario.target_run_rate)
        with shutdown.critical("writing the results"):
            with io.output_folder(out) as tmp:
                io.atomic_write_json(tmp / "sensitivity.json", doc)
                io.atomic_write_text(tmp / "sensitivity.md", f"# Sensitivity of {scenario.name}\n\n{doc['paragraph']}\n")
                plot_tornado(s, tmp / "tornado.png")
            written.append(str(out.path))
        print(paragraph(s, scenario.target_run_rate))
        print(f"wrote {out.path}/sensitivity.json, sensitivity.md, tornado.png" + (f" ({out.note})" if out.note else ""))
    except (ValueError, OSError) as exc:
        return one_line_error(exc)
    return 0


if __name__ == "__main__":
    sys.exit(main())
