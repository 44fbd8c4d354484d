"""The evaluation report: ``eval.json``, ``trajectories.json``, ``report.md`` and its plots.

:func:`write_report` writes, into a temporary folder first and then renamed into place (so a
report is never half-written), ``eval.json`` (the figures of :mod:`agents.rollout` per policy,
plus ``budget_mode`` and ``ratio_to_oracle``), ``trajectories.json`` (per-quarter means per
policy, for plots), ``report.md`` (the table, the plots of :mod:`agents.plots`, and a paragraph
from :func:`describe_policy` on what the learned policy, or the oracle, does differently from
``best_static``). Same seed, same policies: the same ``eval.json``, byte for byte.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np

from agents import plots
from agents.io import Output, output_folder, plan_folder
from agents.evaluation import Evaluation
from agents.rollout import Trajectories
from envs import market


def _round(value, digits: int = 6):
    if isinstance(value, float):
        return round(value, digits)
    if isinstance(value, dict):
        return {k: _round(v, digits) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_round(v, digits) for v in value]
    return value


KEY_ORDER = (
    "gmv_mean", "gmv_ci95", "run_rate_final_mean", "target_reached_rate", "cost_mean",
    "violation_rate", "objective_mean", "ratio_to_oracle", "revenue_mean", "contribution_mean", "net_burn_mean",
)


def eval_json(ev: Evaluation, extra: Mapping | None = None) -> dict:
    """The ``eval.json`` document: ``{"scenario", "episodes", "seed", "policies": {...}}``."""
    policies = {}
    for name, figures in ev.metrics.items():
        ordered = {k: figures[k] for k in KEY_ORDER}
        ordered.update({k: v for k, v in figures.items() if k not in ordered})
        policies[name] = _round(ordered)
    doc = {"scenario": ev.scenario.name, "episodes": len(ev.seeds), "seed": ev.seed, "policies": policies}
    doc["target_run_rate"] = ev.scenario.target_run_rate
    doc["budget"] = {"total": ev.scenario.budget.total, "per_quarter": ev.scenario.budget.per_quarter, "mode": ev.scenario.budget.mode}
    if ev.learned:
        doc["learned_policy"] = ev.learned
    if ev.ensemble is not None:
        doc["ensemble"] = {"path": str(ev.ensemble.path), "sets": len(ev.ensemble), "parameters": list(ev.ensemble.parameters)}
    if extra:
        doc.update(_round(dict(extra)))
    return doc


def trajectories_json(ev: Evaluation) -> dict:
    """Per-quarter means per policy (what the plots draw): GMV, run rate, cost, spend mix."""
    p = ev.params
    out = {"regions": list(p.region_names), "levers": list(market.LEVERS), "quarters": p.horizon, "policies": {}}
    for name, tr in ev.trajectories.items():
        out["policies"][name] = _round({
            "gmv": tr.gmv.mean(0).tolist(),
            "run_rate": tr.run_rate.mean(0).tolist(),
            "cost": tr.cost.mean(0).tolist(),
            "cost_cumulative": tr.cost.cumsum(1).mean(0).tolist(),
            "cost_limit": tr.cost_limit.mean(0).tolist(),
            "revenue": tr.revenue.mean(0).tolist(),
            "reward": tr.reward.mean(0).tolist(),
            "cash_spend": tr.cash_spend.mean(0).tolist(),
            "budget_remaining": tr.budget_remaining.mean(0).tolist(),
            "gmv_region": tr.gmv_region.mean(0).tolist(),
            "spend": tr.spend.mean(0).tolist(),
            "intensity": tr.intensity.mean(0).tolist(),
            "suspended_share": tr.suspended.mean(0).tolist(),
        })
    return out


def describe_policy(ev: Evaluation, name: str, baseline: str = "best_static") -> str:
    """A paragraph, generated from the trajectories, on what ``name`` does differently from
    ``baseline``: how it times its spend, which levers and regions it favours, how it reacts to
    suspensions, and what that buys."""
    a, b = ev.trajectories[name], ev.trajectories[baseline]
    T = ev.params.horizon
    sentences = [_timing(a, b, name, baseline, max(1, T // 3))]
    sentences += _lever_mix(a, b)
    sentences += _spending_over_time(a, T)
    sentences += _private_label(a, b)
    sentences += _regions(a, b, ev.params.region_names, baseline)
    sentences.append(_suspensions(a, ev.params.region_names, baseline))
    sentences.append(_net_effect(ev.metrics[name], ev.metrics[baseline]))
    return " ".join(s for s in sentences if s)


def _mix(tr: Trajectories, quarters: slice) -> np.ndarray:
    """Share of spend by lever over ``quarters``."""
    spend = tr.spend[:, quarters].sum(axis=(0, 1, 2))
    return spend / spend.sum() if spend.sum() > 0 else spend


def _timing(a: Trajectories, b: Trajectories, name: str, baseline: str, third: int) -> str:
    def front(tr: Trajectories) -> float:
        total = tr.cost.sum(1).mean()
        return float(tr.cost[:, :third].sum(1).mean() / total) if total > 0 else 0.0

    fa, fb = front(a), front(b)
    if abs(fa - fb) < 0.05:
        return f"`{name}` times its spend much like `{baseline}`: {fa:.0%} of its spend falls in the first {third} quarters against {fb:.0%}."
    word = "front-loads" if fa > fb else "back-loads"
    return f"`{name}` {word} its spend: {fa:.0%} of it falls in the first {third} quarters, against {fb:.0%} for `{baseline}`."


def _lever_mix(a: Trajectories, b: Trajectories) -> list[str]:
    """The lever mix over the horizon against the baseline's."""
    levers = market.LEVERS
    ma, mb = _mix(a, slice(None)), _mix(b, slice(None))
    da = ma - mb
    more, less = int(da.argmax()), int(da.argmin())
    if da[more] > 0.03:
        return [f"It puts more of its budget into `{levers[more]}` ({ma[more]:.0%} of spend against "
                f"{mb[more]:.0%}) and less into `{levers[less]}` ({ma[less]:.0%} against {mb[less]:.0%})."]
    return []


def _spending_over_time(a: Trajectories, T: int) -> list[str]:
    """The shift of its mix over time (quarters before and after half its spend is gone), and
    when the budget is spent."""
    levers = market.LEVERS
    sentences = []
    spent = a.cost.mean(0).cumsum()
    if spent[-1] <= 0:
        return sentences
    half = int(np.searchsorted(spent, 0.5 * spent[-1])) + 1
    if half < T:
        early, late = _mix(a, slice(0, half)), _mix(a, slice(half, T))
        shift = (late - early)[list(market.SPEND_LEVERS)]
        if late.sum() > 0 and np.abs(shift).max() > 0.05:
            up, down = market.SPEND_LEVERS[int(shift.argmax())], market.SPEND_LEVERS[int(shift.argmin())]
            sentences.append(
                f"Over time it shifts from `{levers[down]}` ({early[down]:.0%} of its spend in quarters 1-{half}, "
                f"{late[down]:.0%} after) towards `{levers[up]}` ({early[up]:.0%}, then {late[up]:.0%})."
            )
    last = int(np.nonzero(a.cost.mean(0) > 1e-3 * spent[-1])[0].max()) + 1
    if last < T:
        sentences.append(f"It has spent its budget by quarter {last} of {T}.")
    return sentences


def _private_label(a: Trajectories, b: Trajectories) -> list[str]:
    pl_a, pl_b = a.intensity[..., market.PRIVATE_LABEL].mean(), b.intensity[..., market.PRIVATE_LABEL].mean()
    if abs(pl_a - pl_b) > 0.05:
        return [f"It pushes the private label at a mean intensity of {pl_a:.2f} against {pl_b:.2f}."]
    return []


def _regions(a: Trajectories, b: Trajectories, regions: Sequence[str], baseline: str) -> list[str]:
    def region_share(tr: Trajectories) -> np.ndarray:
        spend = tr.spend.sum(axis=(0, 1, 3))
        return spend / spend.sum() if spend.sum() > 0 else spend

    ra, rb = region_share(a), region_share(b)
    top = int((ra - rb).argmax())
    if ra[top] - rb[top] > 0.03:
        return [f"By region it favours {regions[top]} ({ra[top]:.0%} of spend against {rb[top]:.0%})."]
    if len(regions) > 1:
        return ["Its split of spend across regions is close to `" + baseline + "`'s."]
    return []


def _suspensions(a: Trajectories, regions: Sequence[str], baseline: str) -> str:
    """Spend in a region while suspended against the same region-quarters unsuspended."""
    susp = a.suspended
    if not susp.any():
        return "No region was suspended in these episodes, so reactions to suspensions are not tested here."
    spend_region = a.spend.sum(axis=3)  # (n, T, R)
    reactions = []
    for r in range(len(regions)):
        on = susp[:, :, r]
        if not on.any() or on.all():
            continue
        during = spend_region[:, :, r][on].mean()
        quarters = np.unique(np.nonzero(on)[1])
        normal = spend_region[:, quarters, r][~on[:, quarters]].mean() if (~on[:, quarters]).any() else np.nan
        if np.isfinite(normal) and normal > 0:
            reactions.append((regions[r], during / normal, int(on.sum())))
    if not reactions:
        return ""
    parts = [f"{reg} {ratio:.0%} ({k} suspended region-quarters)" for reg, ratio, k in reactions]
    lowest = min(x[1] for x in reactions)
    if lowest < 0.5:
        verdict = "it largely stops spending where a shop is shut"
    elif lowest < 0.9:
        verdict = "it partly pulls back where a shop is shut"
    else:
        verdict = "it hardly reacts to suspensions"
    return ("Its spend in a suspended region, against the same region and quarters unsuspended: "
            + "; ".join(parts) + f": {verdict} (a constant plan such as `{baseline}` cannot react).")


def _net_effect(ma: Mapping, mb: Mapping) -> str:
    gain = ma["gmv_mean"] / mb["gmv_mean"] - 1.0 if mb["gmv_mean"] > 0 else float("nan")
    exit_rates = ""
    if "run_rate_exit_mean" in ma and "run_rate_exit_mean" in mb:
        exit_rates = (f" (${ma['run_rate_exit_mean']:.1f}B against ${mb['run_rate_exit_mean']:.1f}B in the exit quarter, the "
                      "quarter after the horizon at the null action: the business left behind)")
    return (f"Net effect: cumulative GMV ${ma['gmv_mean']:.1f}B against ${mb['gmv_mean']:.1f}B ({gain:+.1%}), "
            f"final run rate ${ma['run_rate_final_mean']:.1f}B against ${mb['run_rate_final_mean']:.1f}B{exit_rates}, "
            f"spending ${ma['cost_mean']:.2f}B against ${mb['cost_mean']:.2f}B."
            + _paired(ma))


def _paired(ma: Mapping) -> str:
    """The objective difference to best_static paired by episode, where the evaluation has it."""
    if ma.get("objective_minus_best_static_ci95") is None:
        return ""
    lo, hi = ma["objective_minus_best_static_ci95"]
    return (f" Objective against `best_static` on the same episodes: {ma['objective_minus_best_static']:+.2f} $B "
            f"(paired 95% CI {lo:+.2f} to {hi:+.2f}).")


def _fmt(x, spec: str = ".2f") -> str:
    return "n/a" if x is None else format(x, spec)


def report_markdown(ev: Evaluation, doc: dict, mix_policy: str | None, notes: Sequence[str] = ()) -> str:
    p = ev.params
    lines = [
        f"# Evaluation: {ev.scenario.name}",
        "",
        f"{len(ev.seeds)} episodes, seeds {ev.seeds[0]} to {ev.seeds[-1]} (common random numbers: every policy faces "
        f"the same shocks and suspensions); {p.horizon} quarters; budget ${p.budget_total:g}B "
        f"(${p.budget_per_quarter:g}B a quarter at most, {doc['budget']['mode']} mode); target run rate ${p.target_run_rate:g}B.",
        "",
        "| policy | objective $B | ratio to oracle | GMV $B (95% CI) | final run rate $B | target reached | exit run rate $B | cost $B | violations | revenue $B | contribution $B | net burn $B |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for name, f in doc["policies"].items():
        label = f"**{name}**" if name == ev.learned else name
        lines.append(
            f"| {label} | {f['objective_mean']:.2f} | {_fmt(f['ratio_to_oracle'], '.3f')} "
            f"| {f['gmv_mean']:.2f} ({f['gmv_ci95'][0]:.2f} to {f['gmv_ci95'][1]:.2f}) "
            f"| {f['run_rate_final_mean']:.2f} | {f['target_reached_rate']:.0%} | {f['run_rate_exit_mean']:.2f} | {f['cost_mean']:.2f} | {f['violation_rate']:.0%} "
            f"| {f['revenue_mean']:.2f} | {f['contribution_mean']:.2f} | {f['net_burn_mean']:.2f} |"
        )
    lines += [
        "",
        f"The objective is the cumulative reward, what every policy is asked to maximise: the scenario's objective "
        f"(`{p.objective}`) summed over the quarters plus the terminal value of the business left at the horizon "
        f"({p.terminal_value:g} quarters of the exit quarter's de-seasonalised value); the ratio to the oracle is taken on it. "
        "Contribution is revenue minus cash spend, net burn its opposite. "
        "GMV is cumulative over the horizon; the final run rate is the last quarter's GMV, annualised and de-seasonalised; "
        "the exit run rate is the same for the exit quarter, one more quarter from the final state at the null action "
        "(the business left behind, without the last quarters' incentive push); "
        "the oracle is a clairvoyant open-loop plan per episode, the best a local search (CMA-ES, started from `best_static`, "
        "its schedule and the learned policy's own plays) finds: a bound on what an open-loop plan reaches, not a proven optimum; "
        "`best_static` the best constant allocation."
        + (" With an ensemble, the planners search on the nominal parameters while each episode plays a parameter set drawn "
           "from the ensemble: the oracle is not clairvoyant about those parameters, and a policy may score above it."
           if ev.ensemble is not None else ""),
        "",
        "![GMV run rate by quarter](run_rate.png)",
        "",
    ]
    if mix_policy:
        lines += [f"![Lever mix of {mix_policy}](lever_mix.png)", ""]
    lines += ["![Cost against the limit](cost.png)", ""]
    if ev.learned and "best_static" in ev.trajectories:
        lines += [f"## What `{ev.learned}` does differently", "", describe_policy(ev, ev.learned, "best_static"), ""]
    elif "oracle" in ev.trajectories and "best_static" in ev.trajectories:
        lines += ["## What the oracle does differently", "", describe_policy(ev, "oracle", "best_static"), ""]
    scaled = [name for name, sc in (ev.scenarios or {}).items() if sc.budget.mode == "hard" and doc["budget"]["mode"] == "soft"]
    if scaled:
        notes = [
            "Soft budget: the reference policies (" + ", ".join(f"`{n}`" for n in scaled) + ") are computed and played with "
            "the hard projection (`agents.constraint.scaled_to_limit`: each quarter's spend scaled down to the limit) so the "
            "comparison is fair" + (f", while the learned policy `{ev.learned}` plays the soft scenario unprojected"
                                     if ev.learned and ev.learned not in scaled else "")
            + f"; cost and violations (episode cost above ${p.budget_total:g}B) are measured the same way for every policy.",
            *notes,
        ]
    if notes:
        lines += ["## Notes", ""] + [f"- {n}" for n in notes] + [""]
    return "\n".join(lines)


def format_table(doc: dict) -> str:
    """The terminal table of an ``eval.json`` document: one line per policy."""
    lines = [f"{doc['scenario']}: {doc['episodes']} episodes from seed {doc['seed']}",
             f"{'policy':<18}{'obj. $B':>9}{'/oracle':>8}{'GMV $B':>9}  {'95% CI':<17}{'run rate':>10}{'target':>8}{'exit':>7}{'cost':>7}{'viol.':>7}"
             f"{'revenue':>9}{'contrib.':>9}"]
    for name, f in doc["policies"].items():
        ratio = "n/a" if f["ratio_to_oracle"] is None else f"{f['ratio_to_oracle']:.3f}"
        ci = f"{f['gmv_ci95'][0]:.2f}-{f['gmv_ci95'][1]:.2f}"
        lines.append(f"{name:<18}{f['objective_mean']:>9.2f}{ratio:>8}{f['gmv_mean']:>9.2f}  {ci:<17}{f['run_rate_final_mean']:>10.2f}"
                     f"{f['target_reached_rate']:>8.0%}{_fmt(f.get('run_rate_exit_mean'), '.2f'):>7}{f['cost_mean']:>7.2f}{f['violation_rate']:>7.0%}"
                     f"{f['revenue_mean']:>9.2f}{f['contribution_mean']:>9.2f}")
    return "\n".join(lines)


def write_report(ev: Evaluation, output: "Output | str | Path", extra: Mapping | None = None, notes: Sequence[str] = ()) -> dict:
    """Write eval.json, trajectories.json, report.md and the plots into a checked output folder.

    :param output: from :func:`agents.io.plan_folder` (checked before the evaluation ran).
        Everything goes to a temporary sibling folder first, which then becomes the output
        (:func:`agents.io.output_folder`: an earlier output is replaced only if it is provably
        this command's). Returns the eval.json document.
    """
    if not isinstance(output, Output):  # a path: a new folder (library use)
        output = plan_folder(output, option="output folder", create_parents=True)
    doc = eval_json(ev, extra)
    mix_policy = ev.learned or ("oracle" if "oracle" in ev.trajectories else next(iter(ev.trajectories), None))
    with output_folder(output) as tmp:
        (tmp / "eval.json").write_text(json.dumps(doc, indent=2) + "\n")
        (tmp / "trajectories.json").write_text(json.dumps(trajectories_json(ev)) + "\n")
        plots.plot_run_rate(ev, tmp / "run_rate.png")
        if mix_policy:
            plots.plot_lever_mix(ev, mix_policy, tmp / "lever_mix.png")
        plots.plot_cost(ev, tmp / "cost.png")
        if ev.ensemble is not None:
            plots.plot_gmv_spread(ev, tmp / "gmv_spread.png")
        (tmp / "report.md").write_text(report_markdown(ev, doc, mix_policy, notes))
    return doc
