"""Global sensitivity of the conclusions a strategist acts on, over what is not known.

Parameters and ranges (:func:`parameter_ranges`): every ASSUMPTION parameter of the scenario over
the range its scenario file states (``[low, high]`` at the end of its comment; +-50% of the value
where none is stated), and every parameter of a posterior ensemble over the ensemble's 5th to
95th percentile (a fitted value's uncertainty is its posterior, not a guess).

Outcomes (:data:`OUTCOMES`), on the deterministic model: cumulative GMV and the final quarter's
run rate of ``merchant_package`` and of the nominal ``best_static`` plan held fixed (computed
once on the nominal scenario), and the share of ``best_static``'s spend per lever. Every design
point and plan is a market of one batch (per-market parameter sets).

Method: Morris elementary effects (``SALib``; ``mu_star`` ranks the parameters), and one at a
time at both ends of every range (the tornado, and the test "does this parameter alone move a
headline by more than 25%?"). :func:`conclusions` says which statements hold at every design
point and which flip; ``best_static`` is re-optimised at the ends of the three most influential
ranges to see whether the plan itself changes.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np
from SALib.analyze import morris as morris_analyze
from SALib.sample import morris as morris_sample

from agents.planners import best_static
from agents.plots import pyplot
from agents.policies import playbook_intensity
from envs import market
from envs.ensemble import Ensemble, assumption_ranges, scenario_sets, stack_params, with_values
from envs.scenario import Scenario, load_scenario

#: A parameter alone moving a headline by more than this (relative) is reported.
HEADLINE_MOVE = 0.25
PLANS = ("merchant_package", "best_static")
HEADLINES = tuple(f"{p}.{k}" for p in PLANS for k in ("gmv_total", "run_rate_final"))
OUTCOMES = HEADLINES + tuple(f"best_static.spend_share.{lever}" for lever in market.LEVERS)


@dataclass(frozen=True)
class Range:
    path: str
    low: float
    high: float
    nominal: float
    source: str  # "stated", "+-50%" or "posterior p5-p95"


def _value(scenario: Scenario, dotted: str) -> float:
    node = scenario.model_dump()
    for key in dotted.split("."):
        node = node[key]
    return float(node)


def parameter_ranges(scenario_ref: str | Path, scenario: Scenario, ensemble: Ensemble | None = None) -> list[Range]:
    """The parameters and ranges of the analysis (module docstring). A range end the schema
    refuses is pulled halfway back toward the value until it is valid."""
    out: dict[str, Range] = {}
    for path, stated in assumption_ranges(scenario_ref).items():
        try:
            nominal = _value(scenario, path)
        except KeyError:
            continue  # a region the scenario does not keep
        if stated is None:
            if nominal == 0:
                continue
            lo, hi, source = sorted((0.5 * nominal, 1.5 * nominal)) + ["+-50%"]
        else:
            (lo, hi), source = stated, "stated"
        out[path] = Range(path, *_valid_ends(scenario, path, lo, hi, nominal), nominal, source)
    if ensemble is not None:
        p5, p95 = np.percentile(ensemble.values, [5, 95], axis=0)
        for k, path in enumerate(ensemble.parameters):
            nominal = _value(scenario, path)
            out[path] = Range(path, float(min(p5[k], nominal)), float(max(p95[k], nominal)), nominal, "posterior p5-p95")
    return [r for r in out.values() if r.high > r.low]


def _valid_ends(scenario: Scenario, path: str, lo: float, hi: float, nominal: float) -> tuple[float, float]:
    ends = []
    for end in (lo, hi):
        for _ in range(30):
            try:
                scenario_sets(scenario, [{path: end}])
                break
            except ValueError:
                end = 0.5 * (end + nominal)
        ends.append(end)
    return ends[0], ends[1]


def nominal_plans(scenario: Scenario, iterations: int = 60, seeds: int = 16) -> dict[str, np.ndarray]:
    """The plans held fixed: ``merchant_package`` and ``best_static`` found on the nominal scenario."""
    return {"merchant_package": playbook_intensity("merchant_package", scenario),
            "best_static": best_static(scenario, iterations=iterations, n_seeds=seeds).intensity}


def outcomes(scenario: Scenario, ranges: Sequence[Range], X: np.ndarray, plans: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Every outcome of :data:`OUTCOMES` at every design point (rows of ``X``), one batch of the
    deterministic model: market ``k * P + p`` is point ``k`` under plan ``p``."""
    det = scenario.model_copy(update={"deterministic": True})
    paths = [r.path for r in ranges]
    sets = [with_values(det, dict(zip(paths, map(float, row)))).to_params() for row in np.atleast_2d(X)]
    params = stack_params(sets)
    names = list(plans)
    P, K = len(names), len(sets)
    param_set = np.repeat(np.arange(K), P)
    state = market.init_state(params, [np.random.default_rng(0) for _ in range(K * P)], param_set)
    u = np.stack([plans[name] for name in names])[np.tile(np.arange(P), K)]
    gmv = np.zeros(K * P)
    spend = np.zeros((K * P, market.N_LEVERS))
    for _ in range(params.horizon):
        state, o = market.step(params, state, u)
        gmv += o["gmv"]
        spend += o["cost_lever"].sum(1)
    run_rate = o["run_rate"]
    out: dict[str, np.ndarray] = {}
    for p, name in enumerate(names):
        out[f"{name}.gmv_total"] = gmv[p::P]
        out[f"{name}.run_rate_final"] = run_rate[p::P]
    total = spend[names.index("best_static")::P].sum(1, keepdims=True)
    shares = np.divide(spend[names.index("best_static")::P], total, out=np.zeros((K, market.N_LEVERS)), where=total > 0)
    for j, lever in enumerate(market.LEVERS):
        out[f"best_static.spend_share.{lever}"] = shares[:, j]
    return out


@dataclass
class Sensitivity:
    scenario: str
    ranges: list[Range]
    plans: dict[str, np.ndarray]
    nominal: dict[str, float]
    morris: dict[str, dict[str, list[float]]]  # outcome -> {"mu_star", "sigma"} per parameter
    oat: dict[str, dict[str, tuple[float, float]]]  # outcome -> parameter -> (at low, at high)
    design: dict[str, np.ndarray]  # outcomes at the Morris points
    reoptimised: list[dict]
    trajectories: int


def analyse(scenario_ref: str | Path, ensemble: Ensemble | None = None, trajectories: int = 10, levels: int = 4,
            seed: int = 0, static_iterations: int = 60, static_seeds: int = 16, reoptimise: int = 3) -> Sensitivity:
    """Morris elementary effects and one-at-a-time ends for every range (module docstring)."""
    scenario = load_scenario(scenario_ref)
    ranges = parameter_ranges(scenario_ref, scenario, ensemble)
    plans = nominal_plans(scenario, static_iterations, static_seeds)
    problem = {"num_vars": len(ranges), "names": [r.path for r in ranges], "bounds": [[r.low, r.high] for r in ranges]}
    X = morris_sample.sample(problem, trajectories, num_levels=levels, seed=seed)
    nominal_x = np.array([r.nominal for r in ranges])
    ends = np.repeat(nominal_x[None], 2 * len(ranges), axis=0)
    for i, r in enumerate(ranges):
        ends[2 * i, i], ends[2 * i + 1, i] = r.low, r.high
    Y = outcomes(scenario, ranges, np.vstack([nominal_x[None], ends, X]), plans)
    nominal = {k: float(v[0]) for k, v in Y.items()}
    oat = {k: {r.path: (float(v[1 + 2 * i]), float(v[2 + 2 * i])) for i, r in enumerate(ranges)} for k, v in Y.items()}
    design = {k: v[1 + 2 * len(ranges):] for k, v in Y.items()}
    morris = {}
    for k, v in design.items():
        si = morris_analyze.analyze(problem, X, v, num_levels=levels, print_to_console=False)
        morris[k] = {"mu_star": [float(x) for x in si["mu_star"]], "sigma": [float(x) for x in np.nan_to_num(si["sigma"])]}
    # best_static re-optimised at both ends of the ranges that move its GMV most
    order = np.argsort(morris["best_static.gmv_total"]["mu_star"])[::-1][:reoptimise]
    reopt = []
    for i in order:
        r = ranges[int(i)]
        for end, value in (("low", r.low), ("high", r.high)):
            sc = scenario_sets(scenario, [{r.path: value}])[0]
            plan = best_static(sc, iterations=static_iterations, n_seeds=static_seeds).intensity
            both = outcomes(sc, [], np.zeros((1, 0)), {"merchant_package": plans["merchant_package"], "best_static": plan})
            held = outcomes(sc, [], np.zeros((1, 0)), plans)
            reopt.append({"parameter": r.path, "end": end, "value": value,
                          "gmv_reoptimised": float(both["best_static.gmv_total"][0]),
                          "gmv_nominal_plan": float(held["best_static.gmv_total"][0]),
                          "top_lever_reoptimised": _top_lever(both), "top_lever_nominal_plan": _top_lever(held)})
    return Sensitivity(str(scenario_ref), ranges, plans, nominal, morris, oat, design, reopt, trajectories)


def _top_lever(y: Mapping[str, np.ndarray], k: int = 0) -> str:
    shares = [float(y[f"best_static.spend_share.{lever}"][k]) for lever in market.LEVERS]
    return market.LEVERS[int(np.argmax(shares))]


def big_movers(s: Sensitivity, threshold: float = HEADLINE_MOVE) -> list[dict]:
    """Every (parameter, headline) whose range alone moves the headline by more than ``threshold``."""
    out = []
    for k in HEADLINES:
        base = s.nominal[k]
        for path, (lo, hi) in s.oat[k].items():
            move = max(abs(lo / base - 1.0), abs(hi / base - 1.0)) if base else 0.0
            if move > threshold:
                out.append({"parameter": path, "headline": k, "at_low": lo / base - 1.0, "at_high": hi / base - 1.0})
    return sorted(out, key=lambda m: -max(abs(m["at_low"]), abs(m["at_high"])))


def conclusions(s: Sensitivity, target_run_rate: float) -> list[dict]:
    """Statements a strategist draws from the nominal model, each with the share of design points
    (Morris points across every range) at which it is as true or false as at the nominal values:
    ``holds`` at all of them, else ``flips``."""
    def statements(y: Mapping[str, np.ndarray], top: str) -> list[tuple[str, np.ndarray]]:
        n = len(y["best_static.gmv_total"])
        return [
            ("best_static beats merchant_package on cumulative GMV", y["best_static.gmv_total"] > y["merchant_package.gmv_total"]),
            ("best_static ends at a higher run rate than merchant_package", y["best_static.run_rate_final"] > y["merchant_package.run_rate_final"]),
            (f"best_static reaches the target run rate (${target_run_rate:g}B a year)", y["best_static.run_rate_final"] >= target_run_rate),
            (f"merchant_package reaches the target run rate (${target_run_rate:g}B a year)", y["merchant_package.run_rate_final"] >= target_run_rate),
            (f"{top} takes the largest share of best_static's spend", np.array([_top_lever(y, k) == top for k in range(n)])),
        ]

    nominal = {k: np.array([v]) for k, v in s.nominal.items()}
    top = _top_lever(nominal)
    out = []
    for (text, at_nominal), (_, at_points) in zip(statements(nominal, top), statements(s.design, top)):
        same = float(np.mean(at_points == at_nominal[0]))
        out.append({"statement": text, "nominal": bool(at_nominal[0]), "share_of_points_agreeing": same,
                    "verdict": "holds" if same == 1.0 else "flips"})
    return out


def paragraph(s: Sensitivity, target_run_rate: float) -> str:
    """The analysis in words: what holds, what flips, which parameters alone move a headline."""
    cs = conclusions(s, target_run_rate)
    held = [c for c in cs if c["verdict"] == "holds"]
    flips = [c for c in cs if c["verdict"] == "flips"]
    movers = big_movers(s)
    n = len(s.design["best_static.gmv_total"])
    ranked = np.argsort(s.morris["best_static.gmv_total"]["mu_star"])[::-1][:3]
    words = [f"Across {len(s.ranges)} uncertain parameters of {s.scenario} ({n} Morris design points, "
             f"{s.trajectories} trajectories, every range at once),"]
    if held:
        words.append(" these conclusions hold at every point: " + "; ".join(
            (c["statement"] if c["nominal"] else "it is not true that " + c["statement"]) for c in held) + ".")
    else:
        words.append(" no conclusion holds at every point.")
    if flips:
        words.append(" These flip: " + "; ".join(
            f"{c['statement']} ({'true' if c['nominal'] else 'false'} at the nominal values, "
            f"the same at {c['share_of_points_agreeing']:.0%} of points)" for c in flips) + ".")
    words.append(" The parameters that move best_static's cumulative GMV most (Morris mu*) are "
                 + ", ".join(s.ranges[int(i)].path for i in ranked) + ".")
    if s.reoptimised:
        changed = [r for r in s.reoptimised if r["top_lever_reoptimised"] != r["top_lever_nominal_plan"]]
        gain = max(r["gmv_reoptimised"] / r["gmv_nominal_plan"] - 1.0 for r in s.reoptimised)
        words.append(f" Re-optimising best_static at the ends of those ranges gains at most {gain:.1%} over the nominal plan"
                     + (f", and changes its main lever at {len(changed)} of {len(s.reoptimised)} ends ("
                        + ", ".join(f"{r['parameter']} {r['end']}: {r['top_lever_reoptimised']}" for r in changed) + ")."
                        if changed else ", and keeps its main lever at every end."))
    if movers:
        by_param: dict[str, list[str]] = {}
        for m in movers:
            by_param.setdefault(m["parameter"], []).append(f"{m['headline']} {m['at_low']:+.0%}/{m['at_high']:+.0%}")
        words.append(f" Alone, over its range (low/high end), each of these moves a headline by more than "
                     f"{HEADLINE_MOVE:.0%}: " + "; ".join(f"{p} ({', '.join(v)})" for p, v in by_param.items()) + ".")
    else:
        words.append(f" No parameter alone moves a headline by more than {HEADLINE_MOVE:.0%}.")
    return "".join(words)


def sensitivity_json(s: Sensitivity, target_run_rate: float) -> dict:
    return {
        "scenario": s.scenario,
        "method": {"morris_trajectories": s.trajectories, "design_points": int(len(s.design["best_static.gmv_total"])),
                   "one_at_a_time": "each range's ends, the others at their values", "model": "deterministic"},
        "plans": {k: np.round(v, 4).tolist() for k, v in s.plans.items()},
        "ranges": [{"parameter": r.path, "low": r.low, "high": r.high, "value": r.nominal, "source": r.source} for r in s.ranges],
        "nominal": s.nominal,
        "morris": {k: {r.path: {"mu_star": v["mu_star"][i], "sigma": v["sigma"][i]} for i, r in enumerate(s.ranges)}
                   for k, v in s.morris.items()},
        "one_at_a_time": {k: {p: {"low": lo, "high": hi} for p, (lo, hi) in v.items()} for k, v in s.oat.items()},
        "headline_moves_over_25pct": big_movers(s),
        "reoptimised": s.reoptimised,
        "conclusions": conclusions(s, target_run_rate),
        "paragraph": paragraph(s, target_run_rate),
    }


def plot_tornado(s: Sensitivity, path, fmt: str = "png", top: int = 15) -> None:
    """One tornado per headline: the relative change at each end of the ``top`` ranges that move it most."""
    plt = pyplot()

    fig, axes = plt.subplots(1, len(HEADLINES), figsize=(5.2 * len(HEADLINES), 0.32 * top + 2), squeeze=False)
    for ax, k in zip(axes[0], HEADLINES):
        base = s.nominal[k] or 1.0
        rows = sorted(s.oat[k].items(), key=lambda kv: -max(abs(kv[1][0] / base - 1), abs(kv[1][1] / base - 1)))[:top][::-1]
        y = np.arange(len(rows))
        lo = [v[0] / base - 1 for _, v in rows]
        hi = [v[1] / base - 1 for _, v in rows]
        ax.barh(y, lo, color="C0", label="range low end")
        ax.barh(y, hi, color="C3", alpha=0.7, label="range high end")
        ax.axvline(0, color="k", lw=0.8)
        for x in (-HEADLINE_MOVE, HEADLINE_MOVE):
            ax.axvline(x, color="k", lw=0.6, ls=":")
        ax.set_yticks(y, [p for p, _ in rows], fontsize=7)
        ax.set_title(f"{k}\n(nominal {s.nominal[k]:.3g})", fontsize=9)
        ax.xaxis.set_major_formatter(lambda x, _: f"{x:.0%}")
    axes[0, 0].legend(fontsize=7, loc="lower left")
    fig.suptitle(f"Sensitivity of {s.scenario}: one parameter at a time at the ends of its range (dotted: +-25%)")
    fig.tight_layout()
    fig.savefig(path, dpi=110, format=fmt)
    plt.close(fig)
