"""Fit a history file's free parameters and write the fitted scenario (and a posterior ensemble).

Example::

    python scripts/calibrate.py --history configs/history/tiktok_shop.yaml --out my_fit.yaml
    python scripts/calibrate.py --history tiktok_shop --out configs/scenarios/global.yaml \\
        --posterior 64 --ensemble-out configs/ensembles/global.yaml --plot docs/calibration_fit.png --force

The fit minimises the log errors of the in-sample observations (bounded least squares, every
Jacobian one batch of the model; error model: log-normal, sigma 0.15, see
``agents/calibration/fit.py``). ``--out`` gets a scenario that ``extends`` the history's scenario
with the fitted values, its own description and a provenance header (the history file, its
SHA-256, the fit errors, the date). ``--posterior N`` samples the posterior with emcee (walkers as
one batch) and writes N parameter sets to ``--ensemble-out``; by default to
``configs/ensembles/NAME.yaml`` for an ``--out configs/scenarios/NAME.yaml``, else beside
``--out`` as ``NAME.ensemble.yaml`` (never into the repo). Prints the fit table and the back-test
before and after the fit.

An output that exists is refused unless ``--force``, which replaces only a file calibrate.py wrote
and nobody changed since (the sidecar ``.NAME.flywheel-output.json`` holds its SHA-256, as for every
tool's outputs). A replaced scenario hands on the values it set with ``--set`` (e.g.
``target_run_rate``) unless the command sets them again; a line says what was kept. Bad input
prints one line ``error: ...`` and exits 2, writing nothing.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Sequence

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from agents.shutdown import starting  # noqa: E402

with starting():  # a signal while the modules load: one line, nothing written yet
    from agents import io  # noqa: E402
    from agents.calibration.backtest import backtest, format_table  # noqa: E402
    from agents.calibration.fit import fit, sample_posterior, scenario_values  # noqa: E402
    from agents.calibration.outputs import kept_settings, plan_outputs  # noqa: E402
    from agents.calibration.report import ensemble_text, scenario_reference, fit_table, plot_fit, scenario_text  # noqa: E402
    from agents.cli import OneLineParser, one_line_error  # noqa: E402
    from agents.shutdown import GracefulShutdown, Interrupted, report_stop  # noqa: E402
    from envs.ensemble import load_ensemble  # noqa: E402
    from envs.history import load_history  # noqa: E402
    from envs.scenario import load_scenario, parse_set_pairs  # noqa: E402


def build_parser() -> OneLineParser:
    parser = OneLineParser(description="Fit a history's free parameters; write the fitted scenario and a posterior ensemble.")
    parser.add_argument("--history", required=True, help="history file (a path, or a name in configs/history)")
    parser.add_argument("--out", type=Path, required=True, help="the fitted scenario to write (.yaml)")
    parser.add_argument("--posterior", type=int, default=0, metavar="N", help="also draw N parameter sets from the posterior (emcee)")
    parser.add_argument("--ensemble-out", type=Path,
                        help="where the ensemble goes (default: configs/ensembles/NAME.yaml for --out configs/scenarios/NAME.yaml, "
                             "else NAME.ensemble.yaml beside --out)")
    parser.add_argument("--plot", type=Path, help="write the fit (observed against simulated) and the posterior marginals (PNG)")
    parser.add_argument("--walkers", type=int, default=0, help="posterior walkers (default max(32, 4 x free parameters))")
    parser.add_argument("--steps", type=int, default=2000, help="posterior steps per walker (default 2000, the first fifth burn-in)")
    parser.add_argument("--starts", type=int, default=3, help="least-squares starts: the scenario's values, then random points (default 3)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the random starts and the sampler (default 0)")
    parser.add_argument("--set", dest="sets", action="append", default=[], metavar="KEY=VALUE",
                        help="a value of the problem the fitted scenario also sets (not fitted), repeatable (e.g. target_run_rate=45)")
    parser.add_argument("--force", action="store_true",
                        help="replace files calibrate.py wrote before and nobody changed since (a replaced scenario's --set values are kept)")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    io.set_writer("calibrate")  # --force replaces only what this command wrote
    args = build_parser().parse_args(argv)
    written: list[str] = []
    with GracefulShutdown(phase="calibration") as shutdown:
        try:
            return _run(args, shutdown, written)
        except Interrupted as exc:  # the files are written whole or not at all (agents.io)
            return report_stop(exc, "calibration", written)


def _run(args, shutdown: GracefulShutdown, written: list[str]) -> int:
    try:
        if args.posterior < 0 or args.walkers < 0 or args.steps < 2 or args.starts < 1:
            raise ValueError("--posterior and --walkers must be >= 0, --steps >= 2, --starts >= 1")
        if args.ensemble_out is not None and not args.posterior:
            raise ValueError("--ensemble-out goes only with --posterior N (the ensemble is N sets drawn from the posterior)")
        out, ensemble_out = plan_outputs(args.out, args.ensemble_out, args.posterior, args.force)
        plot = io.plan_file(args.plot, option="--plot", force=args.force, suffixes=io.PLOT_FORMATS) if args.plot else None
        io.check_distinct([o for o in (out, ensemble_out, plot) if o is not None])
        settings = parse_set_pairs(args.sets, example="target_run_rate=45", error=ValueError)
        history = load_history(args.history)
        if settings:
            fitted = sorted(set(settings) & set(history.free))
            if fitted:
                raise ValueError(f"--set {fitted[0]}: the history fits this parameter (its free: section); "
                                 "--set takes values of the problem the fit leaves alone, e.g. target_run_rate=45")
        kept = kept_settings(out, settings, fitted=history.free)
        for key, value in kept.items():
            print(f"keeping {key} = {value} from the replaced {out.path} (--set {key}=VALUE to change it)")
        settings = {**kept, **settings}
        if settings:
            load_scenario(history.scenario_path, settings)  # a bad --set fails before the fit
        if not history.free:
            raise ValueError(f"{history.path}: free is empty; name the parameters to fit as dotted.path: [low, high]")
        d = len(history.free)
        if args.posterior and args.walkers and args.walkers < 2 * d:  # emcee's stretch move needs two walkers a dimension
            raise ValueError(f"--walkers {args.walkers}: the sampler needs at least {2 * d} for the {d} fitted parameters "
                             f"(twice their number; default max(32, {4 * d}))")
        prior = scenario_values(history)
        before = backtest(history, seeds=0)
        print(format_table(before), "\n")
        best = fit(history, starts=args.starts, seed=args.seed)
        after = backtest(history, best.overrides(), seeds=0)
        posterior = None
        if args.posterior:
            t0 = time.perf_counter()
            posterior = sample_posterior(history, best, args.posterior, walkers=args.walkers or None, steps=args.steps,
                                         burn=args.steps // 5, seed=args.seed)
            print(f"posterior: {posterior.walkers} walkers x {posterior.steps} steps in {time.perf_counter() - t0:.1f} s, "
                  f"acceptance {posterior.acceptance:.2f}, autocorrelation times "
                  f"{', '.join(f'{t:.0f}' for t in posterior.autocorrelation)} steps"
                  + ("" if posterior.converged else " (the kept chain is shorter than 50 of them: run more --steps)"))
        print(fit_table(best, prior, posterior), "\n")
        print(format_table(after))
        text = scenario_text(history, after, best, out.path, name=out.path.stem, settings=settings)
        load_scenario(history.scenario_path, {**best.overrides(), **settings})  # what --out means, validated before writing
        with shutdown.critical("writing the fitted files"):  # a signal now waits: the scenario and its ensemble go together
            written.append(str(io.write_output_text(out, text)))
            print(f"wrote {written[-1]}")
            if posterior is not None:
                if ensemble_out.note and not ensemble_out.replace:  # a taken default: the next free name
                    print(ensemble_out.note)
                ref = scenario_reference(out.path, ensemble_out.path)  # the sets vary the fitted scenario
                written.append(str(io.write_output_text(ensemble_out, ensemble_text(history, after, best, posterior, ref))))
                print(f"wrote {written[-1]}")
                load_ensemble(ensemble_out.path)
            if plot is not None:
                written.append(str(io.write_output_file(plot, lambda tmp: plot_fit(before, after, best, posterior, tmp, plot.format))))
                print(f"wrote {written[-1]}")
    except (ValueError, OSError) as exc:
        return one_line_error(exc)
    return 0


if __name__ == "__main__":
    sys.exit(main())
