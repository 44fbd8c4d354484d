"""The back-test: every observation of a history beside the model's value and its error.

:func:`backtest` replays the history (:func:`agents.calibration.replay.replay`) deterministically
and over ``N`` seeds (the stochastic scenario, for a band), and gives the rows of the report:
``{"region", "period", "metric", "observed", "simulated", "error", "simulated_p10",
"simulated_p90"}`` with ``error = simulated / observed - 1`` (a fraction of the observed value)
and the band the 10th to 90th percentile over seeds. :func:`backtest_json`, :func:`path_csv` and
:func:`plot_backtest` are the three outputs of ``scripts/backtest.py``.
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass
from typing import Any, Mapping, Sequence

import numpy as np

from agents.plots import pyplot
from agents.calibration.replay import Replay, replay, simulated
from envs.history import History, Observation

#: Seeds of the stochastic band (``scripts/backtest.py --seeds``).
BAND_SEEDS = 32
BAND_SEED_BASE = 0
#: The band's percentiles.
BAND = (10, 90)


@dataclass(frozen=True)
class Backtest:
    history: History
    scenario_name: str
    overrides: dict
    path: Replay  # deterministic, one market
    band: Replay | None  # stochastic, one market per seed
    series: list[dict]
    holdout: list[dict]


def _rows(observations: Sequence[Observation], quarters, det: Replay, band: Replay | None) -> list[dict]:
    sim = simulated(det, observations, quarters)[0]
    lo = hi = None
    if band is not None and band.revenue.shape[0] > 1:
        values = simulated(band, observations, quarters)
        lo, hi = np.percentile(values, BAND, axis=0)
    rows = []
    for k, ob in enumerate(observations):
        row = {"region": ob.region, "period": ob.period, "metric": ob.metric, "observed": ob.value,
               "simulated": float(sim[k]), "error": float(sim[k] / ob.value - 1.0)}
        if lo is not None:
            row["simulated_p10"], row["simulated_p90"] = float(lo[k]), float(hi[k])
        row["source"] = ob.source
        rows.append(row)
    return rows


def backtest(history: History, overrides: Mapping[str, Any] | None = None, seeds: int = BAND_SEEDS) -> Backtest:
    """Replay ``history`` (its scenario with ``overrides``) deterministically and, if ``seeds`` > 0,
    over ``seeds`` stochastic episodes."""
    overrides = dict(overrides or {})
    det = replay(history, [overrides])
    band = replay(history, [overrides], seeds=range(BAND_SEED_BASE, BAND_SEED_BASE + seeds)) if seeds > 0 else None
    return Backtest(
        history=history,
        scenario_name=history.scenario(overrides).name,
        overrides=overrides,
        path=det,
        band=band,
        series=_rows(history.observations, history.quarters, det, band),
        holdout=_rows(history.holdout, history.holdout_quarters, det, band),
    )


def mape(rows: Sequence[Mapping], metric: str | None = None) -> float | None:
    """Mean absolute error (a fraction) over ``rows`` (of ``metric`` only, if given); ``None`` if none."""
    errors = [abs(r["error"]) for r in rows if metric is None or r["metric"] == metric]
    return float(np.mean(errors)) if errors else None


def backtest_json(bt: Backtest) -> dict:
    """The JSON report: every in-sample and holdout observation beside its simulated value."""
    def rounded(rows):
        return [{k: (round(v, 6) if isinstance(v, float) else v) for k, v in r.items()} for r in rows]

    return {
        "history": str(bt.history.path),
        "history_sha256": bt.history.sha256,
        "scenario": bt.scenario_name,
        "overrides": bt.overrides,
        "band": {"seeds": 0 if bt.band is None else bt.band.n_seeds, "percentiles": list(BAND)},
        "series": rounded(bt.series),
        "mape_in_sample": mape(bt.series),
        "mape_in_sample_gmv": mape(bt.series, "gmv"),
        "max_abs_error_in_sample": max((abs(r["error"]) for r in bt.series), default=None),
        "holdout": rounded(bt.holdout),
        "mape_holdout": mape(bt.holdout),
    }


CSV_COLUMNS = ("quarter", "region", "gmv", "orders", "sellers", "buyers", "revenue", "cost")


def path_csv(bt: Backtest) -> str:
    """The deterministic simulated path, one row per quarter and region, then the platform
    (``all``: sums, and the platform's revenue, which the model does not split by region)."""
    rep = bt.path
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(CSV_COLUMNS)
    for t, label in enumerate(rep.labels):
        for j, region in enumerate(rep.region_names):
            w.writerow([label, region, *(f"{rep.series[k][0, t, j]:.6g}" for k in ("gmv", "orders", "sellers", "buyers")),
                        "", f"{rep.series['cost'][0, t, j]:.6g}"])
        w.writerow([label, "all", *(f"{rep.series[k][0, t].sum():.6g}" for k in ("gmv", "orders", "sellers", "buyers")),
                    f"{rep.revenue[0, t]:.6g}", f"{rep.series['cost'][0, t].sum():.6g}"])
    return buf.getvalue()


def format_table(bt: Backtest) -> str:
    """The report as a text table: in-sample rows, then the holdout, then the errors."""
    band = bt.band is not None and bt.band.n_seeds > 1
    head = f"{'region':<6} {'period':<7} {'metric':<8} {'observed':>9} {'simulated':>9} {'error':>7}"
    head += f"  {'p10..p90 over ' + str(bt.band.n_seeds) + ' seeds':>24}" if band else ""
    lines = [f"history {bt.history.path} (sha256 {bt.history.sha256[:12]}), scenario {bt.scenario_name}", head]
    for title, rows in (("in sample", bt.series), ("holdout", bt.holdout)):
        if not rows:
            continue
        lines.append(f"-- {title}")
        for r in rows:
            line = f"{r['region']:<6} {r['period']:<7} {r['metric']:<8} {r['observed']:>9.4g} {r['simulated']:>9.4g} {r['error']:>+7.1%}"
            if band:
                line += f"  {r['simulated_p10']:>11.4g}..{r['simulated_p90']:<11.4g}"
            lines.append(line)
    fmt = lambda v: "n/a" if v is None else f"{v:.1%}"  # noqa: E731
    lines.append(f"MAPE in sample {fmt(mape(bt.series))} (gmv {fmt(mape(bt.series, 'gmv'))}), holdout {fmt(mape(bt.holdout))}")
    return "\n".join(lines)


def plot_backtest(bt: Backtest, path, fmt: str = "png") -> None:
    """Observed against simulated, by region: quarterly GMV (simulated path and band; each
    observed period drawn at its quarterly average) and sellers."""
    plt = pyplot()

    rep, band = bt.path, bt.band
    regions = [*rep.region_names, "all"]
    x = np.arange(len(rep.labels))
    fig, axes = plt.subplots(2, len(regions), figsize=(4.2 * len(regions), 7), squeeze=False)
    for col, region in enumerate(regions):
        for row, metric in enumerate(("gmv", "sellers")):
            ax = axes[row, col]

            def series(r: Replay) -> np.ndarray:
                s = r.series[metric]
                return s.sum(-1) if region == "all" else s[..., list(rep.region_names).index(region)]

            ax.plot(x, series(rep)[0], color="C0", label="simulated (deterministic)")
            if band is not None and band.revenue.shape[0] > 1:
                lo, hi = np.percentile(series(band), BAND, axis=0)
                ax.fill_between(x, lo, hi, color="C0", alpha=0.2, label=f"p{BAND[0]}-p{BAND[1]} over {band.n_seeds} seeds")
            for rows, color, marker, name in ((bt.series, "k", "o", "observed (fit)"), (bt.holdout, "C3", "s", "observed (holdout)")):
                quarters = bt.history.quarters if rows is bt.series else bt.history.holdout_quarters
                first = True
                for r, ts in zip(rows, quarters):
                    if r["region"] != region or r["metric"] != metric:
                        continue
                    ts = list(ts)
                    y = r["observed"] / len(ts) if metric == "gmv" else r["observed"]
                    xs = ts if metric == "gmv" else [ts[-1]]
                    ax.plot(xs, [y] * len(xs), color=color, marker=marker, lw=2, label=name if first else None)
                    first = False
            ax.set_title(f"{region}: {'GMV, $B a quarter' if metric == 'gmv' else 'sellers, k'}")
            ax.set_xticks(x[::2], [rep.labels[t] for t in x[::2]], rotation=45, fontsize=7)
            if row == 0 and col == 0:
                ax.legend(fontsize=7)
    fig.suptitle(f"Back-test of {bt.history.path.name} on {bt.scenario_name}: observed periods at their quarterly average")
    fig.tight_layout()
    fig.savefig(path, dpi=110, format=fmt)
    plt.close(fig)
