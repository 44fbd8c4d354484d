"""What a calibration writes: the fitted scenario, the ensemble, the fit table and its plot.

The fitted scenario ``extends`` the history's scenario and sets only the fitted values; its
header records where they come from (the history file and its SHA-256, the error model, the fit
errors, the date), so that a reader of ``configs/scenarios/global.yaml`` sees what was fitted to
what. The ensemble (:mod:`envs.ensemble`) holds the posterior draws with the same provenance.
"""

from __future__ import annotations

import datetime as dt
import os
from pathlib import Path

import numpy as np
import yaml

from agents.plots import pyplot
from agents.calibration.backtest import Backtest, mape
from agents.calibration.fit import SIGMA, Fit, Posterior
from envs.ensemble import Ensemble
from envs.history import History
from envs.config_files import deep_merge
from envs.scenario import SCENARIO_DIR

#: First line of every file calibrate.py writes.
MARK = "# Written by scripts/calibrate.py"
#: The header line above the values of the problem a fitted scenario sets without fitting them
#: (``--set``, or kept from the earlier output it replaced); one ``#   path = value`` line each.
SET_HEADING = "# Set, not fitted"


def _nested(values: dict[str, float]) -> dict:
    return _nested_any({path: float(f"{value:.6g}") for path, value in values.items()})


def _nested_any(values: dict) -> dict:
    out: dict = {}
    for dotted, value in values.items():
        node = out
        keys = dotted.split(".")
        for key in keys[:-1]:
            node = node.setdefault(key, {})
        node[keys[-1]] = value
    return out


def scenario_reference(scenario_path: Path, from_file: Path) -> str:
    """How a file at ``from_file`` names the scenario at ``scenario_path``: its built-in name when
    it is one (in ``configs/scenarios``), else a path relative to ``from_file``'s folder."""
    target = Path(scenario_path).resolve()
    if target.parent == SCENARIO_DIR.resolve():
        return target.stem
    return os.path.relpath(target, Path(from_file).resolve().parent)


def provenance(history: History, bt: Backtest, fit: Fit, posterior: Posterior | None = None) -> dict:
    prov = {
        "history": _display(history.path),
        "history_sha256": history.sha256,
        "scenario": history.scenario_path.stem,
        "date": dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "error_model": f"log-normal observation error, sigma {SIGMA} (log observed = log simulated + N(0, sigma^2))",
        "fit": "scipy.optimize.least_squares (trf, bounded) on the log errors",
        "mape_in_sample": round(mape(bt.series), 4),
        "mape_holdout": None if mape(bt.holdout) is None else round(mape(bt.holdout), 4),
    }
    if posterior is not None:
        prov["sampler"] = (f"emcee affine-invariant ensemble, {posterior.walkers} walkers x {posterior.steps} steps, "
                           f"{posterior.burn} burn-in, acceptance {posterior.acceptance:.2f}; uniform prior on the bounds; "
                           f"autocorrelation times {', '.join(f'{t:.0f}' for t in posterior.autocorrelation)} steps"
                           + ("" if posterior.converged else " (the kept chain is shorter than 50 of them: run more --steps)"))
    return prov


def _display(path: Path) -> str:
    try:
        return str(Path(path).resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(path)


def _header(history: History, bt: Backtest, fit: Fit, what: str) -> list[str]:
    lines = [f"{MARK} (make calibrate regenerates it; calibrate.py --force replaces only its own files).",
             f"# {what}",
             f"# Fitted to {_display(history.path)} (sha256 {history.sha256}) on "
             f"{dt.datetime.now(dt.timezone.utc):%Y-%m-%d %H:%M} UTC.",
             f"# Error model: log-normal, sigma {SIGMA}; bounded least squares on the log errors.",
             f"# In-sample MAPE {mape(bt.series):.1%}" + ("" if mape(bt.holdout) is None else f", holdout {mape(bt.holdout):.1%}")
             + "; every observation (observed -> simulated, error):"]
    for tag, rows in (("fit", bt.series), ("holdout", bt.holdout)):
        for r in rows:
            lines.append(f"#   {tag:<7} {r['region']:<4} {r['period']:<7} {r['metric']:<8} {r['observed']:>8.4g} -> {r['simulated']:<8.4g} {r['error']:+.1%}")
    lines.append("# Fitted (bounds from the history's free: section):")
    for path, value, (lo, hi) in zip(fit.paths, fit.value, fit.bounds):
        lines.append(f"#   {path} = {value:.4g}  [{lo:g}, {hi:g}]")
    return lines


def fitted_description(history: History, fit: Fit, settings: dict | None = None) -> str:
    """The fitted scenario's own ``description`` (else it would inherit the hand-set one of the
    scenario it extends): what was fitted to which record, and what was set."""
    text = (f"{history.scenario_path.stem} with {len(fit.paths)} parameters fitted to the record in "
            f"{_display(history.path)} by scripts/calibrate.py ({', '.join(fit.paths)})")
    if settings:
        text += "; " + ", ".join(f"{path} set to {value}" for path, value in settings.items()) + " (not fitted)"
    return text + "."


def scenario_text(history: History, bt: Backtest, fit: Fit, out: Path, name: str, description: str | None = None,
                  settings: dict | None = None) -> str:
    """The fitted scenario: ``extends`` the history's scenario, the fitted values, a provenance header.

    :param description: the scenario's description; default :func:`fitted_description`.
    :param settings: values of the problem (not fitted) the scenario also sets, by dotted path
        (``calibrate.py --set target_run_rate=45``, and those kept from a replaced output); the
        header lists them apart, under :data:`SET_HEADING`.
    """
    doc = {"extends": scenario_reference(history.scenario_path, out), "name": name,
           "description": description or fitted_description(history, fit, settings)}
    doc = deep_merge(doc, _nested(fit.overrides()))
    if settings:
        doc = deep_merge(doc, _nested_any(settings))
    body = yaml.safe_dump(doc, sort_keys=False, default_flow_style=False)
    header = _header(history, bt, fit, f"{name}: {history.scenario_path.stem} with the parameters fitted to the record.")
    if settings:
        header.append(f"{SET_HEADING} (the problem: --set, or kept from the output replaced; see the Makefile's calibrate):")
        header += [f"#   {path} = {value}" for path, value in settings.items()]
    return "\n".join(header) + "\n" + body


def ensemble_text(history: History, bt: Backtest, fit: Fit, posterior: Posterior, scenario_ref: str) -> str:
    """The posterior draws as an ensemble file (:func:`envs.ensemble.load_ensemble`)."""
    ens = Ensemble(None, scenario_ref, tuple(posterior.paths), posterior.samples, provenance(history, bt, fit, posterior))
    body = yaml.safe_dump(ens.to_document(), sort_keys=False, default_flow_style=None, width=200)
    return "\n".join(_header(history, bt, fit, f"{len(posterior.samples)} parameter sets drawn from the posterior.")) + "\n" + body


def is_calibrate_output(path: Path) -> bool:
    """Whether ``path`` is a file calibrate.py wrote (its first line is :data:`MARK`)."""
    try:
        with open(path, encoding="utf-8") as f:
            return f.readline().startswith(MARK)
    except (OSError, UnicodeDecodeError):
        return False


def fit_table(fit: Fit, prior: np.ndarray, posterior: Posterior | None = None) -> str:
    head = f"{'parameter':<36} {'prior':>9} {'fitted':>9} {'bounds':>17}"
    if posterior is not None:
        head += f" {'posterior p10':>13} {'p50':>9} {'p90':>9}"
    lines = [head]
    pct = posterior.percentiles() if posterior is not None else None
    for i, path in enumerate(fit.paths):
        lo, hi = fit.bounds[i]
        line = f"{path:<36} {prior[i]:>9.4g} {fit.value[i]:>9.4g} {f'[{lo:g}, {hi:g}]':>17}"
        if pct is not None:
            line += f" {pct[0, i]:>13.4g} {pct[1, i]:>9.4g} {pct[2, i]:>9.4g}"
        lines.append(line)
    lines.append(f"cost {fit.cost:.4g} (0.5 x sum of squared log errors / sigma^2), {fit.evaluations} model evaluations "
                 f"in {fit.seconds:.1f} s; {fit.message}")
    return "\n".join(lines)


def plot_fit(bt_prior: Backtest, bt_fit: Backtest, fit: Fit, posterior: Posterior | None, path, fmt: str = "png") -> None:
    """Left: every observation, observed against simulated before and after the fit (log axes).
    Right: the posterior marginals (histograms over each parameter's bounds)."""
    plt = pyplot()

    d = len(fit.paths)
    cols = 1 + (d if posterior is not None else 0)
    fig, axes = plt.subplots(1, cols, figsize=(5 + 2.6 * (cols - 1), 4.5), squeeze=False)
    ax = axes[0, 0]
    for bt, color, name in ((bt_prior, "C7", "before the fit"), (bt_fit, "C0", "fitted")):
        for rows, marker, tag in ((bt.series, "o", "fit"), (bt.holdout, "s", "holdout")):
            if rows:
                ax.scatter([r["observed"] for r in rows], [r["simulated"] for r in rows], color=color, marker=marker,
                           label=f"{name} ({tag})", alpha=0.8)
    values = [r["observed"] for r in bt_fit.series + bt_fit.holdout]
    lo, hi = min(values) / 2, max(values) * 2
    ax.plot([lo, hi], [lo, hi], "k--", lw=1)
    ax.set(xscale="log", yscale="log", xlabel="observed", ylabel="simulated", title="observations (all metrics)")
    ax.legend(fontsize=7)
    if posterior is not None:
        for i, p in enumerate(fit.paths):
            ax = axes[0, 1 + i]
            ax.hist(posterior.samples[:, i], bins=20, range=tuple(fit.bounds[i]), color="C0", alpha=0.7)
            ax.axvline(fit.value[i], color="k", lw=1)
            ax.set_title(p, fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110, format=fmt)
    plt.close(fig)
