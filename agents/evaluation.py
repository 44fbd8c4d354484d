"""Evaluation: roll policies out on common random numbers, measure, compare, report.

Every policy is played on the same episodes: episode i is seeded with ``seed + i`` through the
native vector env (:class:`envs.SocialCommerceVectorEnv`), so two policies face the same demand
shocks and suspensions (common random numbers). All episodes of one policy run as one batch:
a policy's ``predict(obs)`` is called once a quarter with the observations of every episode.

Per policy and episode (:class:`Trajectories`): GMV, annualised run rate, cost, the quarter's
cost cap, revenue, spend by region and lever, suspensions; per policy (:func:`summarise`):

========================  ====================================================================
``gmv_mean``              cumulative GMV over the horizon, $B, mean over episodes
``gmv_ci95``              95% bootstrap confidence interval of that mean
``run_rate_final_mean``   annualised, de-seasonalised GMV run rate of the last quarter, $B
``target_reached_rate``   share of episodes ending at or above ``target_run_rate``
``cost_mean``             incentive spend over the horizon, $B
``violation_rate``        share of episodes spending more than ``budget.total`` (soft mode)
``budget_mode``           the budget mode the policy was played in (``hard`` for the reference
                          policies of a soft scenario: see below)
``revenue_mean``          commission, shop ads and private-label margin over the horizon, $B
``ratio_to_oracle``       ``gmv_mean / gmv_mean`` of the oracle (``null`` without an oracle)
========================  ====================================================================

:func:`write_report` writes ``eval.json`` (those figures), ``trajectories.json`` (per-quarter
means per policy, for plots), ``report.md`` and three PNG plots, into a temporary folder first
and then renames it into place, so a report is never half-written. Same seed, same policies:
the same ``eval.json``, byte for byte.

Soft budget mode (issue 5): a reference policy (playbook, ``best_static``, ``oracle``) knows
nothing of a limit it is not forced to respect, so for a fair comparison it is computed and
played on :func:`reference_scenario` (``agents.lagrangian.scaled_to_limit``: the same scenario
with the hard projection, each quarter's spend scaled down to the limit), while a learned
policy plays the soft scenario itself: ``evaluate(..., scenarios={name: reference_scenario(s)})``.
Cost and violations are measured against the one ``budget.total`` for every policy.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np
from scipy import stats

from envs import market
from envs.scenario import Scenario
from envs.vector import SocialCommerceVectorEnv

CONFIDENCE = 0.95
BOOTSTRAP_RESAMPLES = 2000
BOOTSTRAP_SEED = 12345
#: Default first evaluation seed: above the seeds training uses for its markets (``seed + i``)
#: and for its periodic held-out evaluation (``agents.config.EVAL_SEED_BASE + k``, 10 000 000),
#: and below best_static's training seeds (``agents.planning.TRAIN_SEED_BASE``).
DEFAULT_SEED = 20_000_000


# --------------------------------------------------------------------------- rollouts


@dataclass
class Trajectories:
    """One policy's episodes, quarter by quarter. Leading axes ``(n_episodes, T)``; $B."""

    gmv: np.ndarray
    run_rate: np.ndarray
    cost: np.ndarray
    cost_limit: np.ndarray
    revenue: np.ndarray
    budget_remaining: np.ndarray
    gmv_region: np.ndarray
    """(n, T, R)"""
    spend: np.ndarray
    """(n, T, R, L) spend by region and lever after any projection"""
    intensity: np.ndarray
    """(n, T, R, L) intensities actually applied"""
    suspended: np.ndarray
    """(n, T, R) region suspended during the quarter (known before the decision)"""
    clipped: np.ndarray
    """(n,) actions outside [-1, 1] clipped by the env over the episode"""


def reference_scenario(scenario: Scenario) -> Scenario:
    """The scenario reference policies are computed and played on: ``scenario`` itself in hard
    budget mode; in soft mode ``agents.lagrangian.scaled_to_limit(scenario)`` (hard projection)."""
    if scenario.budget.mode == "hard":
        return scenario
    from agents.lagrangian import scaled_to_limit

    return scaled_to_limit(scenario)


def episode_seeds(seed: int, episodes: int) -> list[int]:
    """The evaluation episodes' seeds: ``seed, seed + 1, ...`` (as the vector env seeds them)."""
    return [int(seed) + i for i in range(int(episodes))]


def rollout_policy(policy, scenario: Scenario, seeds: Sequence[int]) -> Trajectories:
    """Play ``policy`` on the episodes ``seeds`` in one batch through the native vector env.

    ``policy.predict(obs)`` receives the ``(n_episodes, obs_dim)`` observations of every
    episode, row i being the episode seeded ``seeds[i]``, and returns ``(actions, state)``.
    """
    env = SocialCommerceVectorEnv(num_envs=len(seeds), scenario=scenario)
    p = env.params
    names = p.region_names
    obs, info = env.reset(seed=[int(s) for s in seeds])
    if hasattr(policy, "reset"):
        policy.reset()
    rows: dict[str, list] = {k: [] for k in Trajectories.__dataclass_fields__ if k != "clipped"}
    clipped = np.zeros(len(seeds), dtype=np.int64)
    for _ in range(p.horizon):
        suspended = np.stack([info["suspended"][r] for r in names], axis=1)
        before = env.state
        action, _ = policy.predict(obs, deterministic=True)
        obs, reward, terminated, truncated, info = env.step(np.asarray(action, dtype=np.float32))
        rows["gmv"].append(info["gmv"])
        rows["run_rate"].append(info["gmv_run_rate"])
        rows["cost"].append(info["cost"])
        rows["cost_limit"].append(info["cost_limit"])
        rows["revenue"].append(info["revenue"])
        rows["budget_remaining"].append(info["budget_remaining"])
        rows["gmv_region"].append(np.stack([info["gmv_by_region"][r] for r in names], axis=1))
        rows["intensity"].append(info["lever_intensity"])
        rows["spend"].append(market.lever_costs(p, before, info["lever_intensity"]))
        rows["suspended"].append(suspended)
        clipped += info["clipped_actions"]
    env.close()
    arrays = {k: np.stack(v, axis=1).astype(np.float64) for k, v in rows.items()}
    arrays["suspended"] = arrays["suspended"] > 0
    return Trajectories(**arrays, clipped=clipped)


# --------------------------------------------------------------------------- metrics


def bootstrap_ci(values: np.ndarray, confidence: float = CONFIDENCE) -> tuple[float, float]:
    """95% percentile-bootstrap CI of the mean (fixed seed), widened to contain the mean.

    One episode, or episodes all equal, give the degenerate interval ``[mean, mean]``.
    """
    values = np.asarray(values, dtype=np.float64)
    mean = float(values.mean())
    if values.size < 2 or np.ptp(values) <= 1e-12 * max(1.0, abs(mean)):
        return mean, mean
    res = stats.bootstrap(
        (values,), np.mean, confidence_level=confidence, n_resamples=BOOTSTRAP_RESAMPLES,
        method="percentile", rng=np.random.default_rng(BOOTSTRAP_SEED), vectorized=True,
    )
    lo, hi = float(res.confidence_interval.low), float(res.confidence_interval.high)
    if not (np.isfinite(lo) and np.isfinite(hi)):
        return mean, mean
    return min(lo, mean), max(hi, mean)


def summarise(traj: Trajectories, params: market.Params) -> dict:
    """Per-policy figures (see the module docstring), before ``ratio_to_oracle``."""
    gmv = traj.gmv.sum(axis=1)
    cost = traj.cost.sum(axis=1)
    final = traj.run_rate[:, -1]
    revenue = traj.revenue.sum(axis=1)
    violated = cost > params.budget_total * (1.0 + 1e-9)
    return {
        "gmv_mean": float(gmv.mean()),
        "gmv_ci95": list(bootstrap_ci(gmv)),
        "run_rate_final_mean": float(final.mean()),
        "run_rate_final_ci95": list(bootstrap_ci(final)),
        "target_reached_rate": float((final >= params.target_run_rate).mean()),
        "cost_mean": float(cost.mean()),
        "cost_ci95": list(bootstrap_ci(cost)),
        "violation_rate": float(violated.mean()),
        "revenue_mean": float(revenue.mean()),
        "gmv_std": float(gmv.std()),
    }


@dataclass
class Evaluation:
    scenario: Scenario
    seed: int
    seeds: list[int]
    metrics: dict
    """name -> figures (with ``ratio_to_oracle``), in evaluation order"""
    trajectories: dict
    """name -> :class:`Trajectories`"""
    learned: str | None = None
    """name of the learned policy, if any"""
    scenarios: dict | None = None
    """name -> the scenario the policy was played on, where it is not :attr:`scenario`"""


def evaluate(
    policies: Mapping[str, object],
    scenario: Scenario,
    seed: int = 0,
    episodes: int = 100,
    oracle_name: str = "oracle",
    learned: str | None = None,
    scenarios: Mapping[str, Scenario] | None = None,
) -> Evaluation:
    """Roll out every policy on the episodes ``seed .. seed + episodes - 1`` and measure them.

    :param policies: name -> object with ``predict(obs) -> (actions, state)``.
    :param oracle_name: the policy the ratios refer to; without it ``ratio_to_oracle`` is None.
    :param scenarios: name -> the scenario to play that policy on instead of ``scenario`` (in
        soft mode, :func:`reference_scenario` for the reference policies). It must differ from
        ``scenario`` in nothing the figures depend on (same regions, horizon, ``budget.total``):
        every policy is measured against ``scenario``'s limit and target.
    """
    params = scenario.to_params()
    seeds = episode_seeds(seed, episodes)
    played = {name: scenario for name in policies}
    for name, other in (scenarios or {}).items():
        if name not in policies:
            raise ValueError(f"scenarios names '{name}', which is not among the policies ({', '.join(policies)})")
        if other.budget.total != scenario.budget.total or other.horizon != scenario.horizon or list(other.regions) != list(scenario.regions):
            raise ValueError(f"the scenario of '{name}' differs from the evaluation's in budget.total, horizon or regions")
        played[name] = other
    trajectories = {name: rollout_policy(policy, played[name], seeds) for name, policy in policies.items()}
    metrics = {name: summarise(traj, params) for name, traj in trajectories.items()}
    for name, figures in metrics.items():
        figures["budget_mode"] = played[name].budget.mode
    oracle_gmv = metrics[oracle_name]["gmv_mean"] if oracle_name in metrics else None
    for name, figures in metrics.items():
        if oracle_gmv is None or oracle_gmv <= 0:
            figures["ratio_to_oracle"] = None
        else:
            figures["ratio_to_oracle"] = figures["gmv_mean"] / oracle_gmv
            per_episode = trajectories[name].gmv.sum(1) / trajectories[oracle_name].gmv.sum(1)
            figures["ratio_to_oracle_ci95"] = list(bootstrap_ci(per_episode))
    moved = {name: sc for name, sc in played.items() if sc is not scenario}
    return Evaluation(scenario, int(seed), seeds, metrics, trajectories, learned, moved or None)


# --------------------------------------------------------------------------- outputs


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
    "violation_rate", "ratio_to_oracle",
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
    if extra:
        doc.update(_round(dict(extra)))
    return doc


def trajectories_json(ev: Evaluation) -> dict:
    """Per-quarter means per policy (what the plots draw): GMV, run rate, cost, spend mix."""
    p = ev.scenario.to_params()
    out = {"regions": list(p.region_names), "levers": list(market.LEVERS), "quarters": p.horizon, "policies": {}}
    for name, tr in ev.trajectories.items():
        out["policies"][name] = _round({
            "gmv": tr.gmv.mean(0).tolist(),
            "run_rate": tr.run_rate.mean(0).tolist(),
            "cost": tr.cost.mean(0).tolist(),
            "cost_cumulative": tr.cost.cumsum(1).mean(0).tolist(),
            "cost_limit": tr.cost_limit.mean(0).tolist(),
            "revenue": tr.revenue.mean(0).tolist(),
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
    p = ev.scenario.to_params()
    regions, levers = p.region_names, market.LEVERS
    a, b = ev.trajectories[name], ev.trajectories[baseline]
    ma, mb = ev.metrics[name], ev.metrics[baseline]
    T = p.horizon
    third = max(1, T // 3)
    sentences = []

    def front(tr: Trajectories) -> float:
        total = tr.cost.sum(1).mean()
        return float(tr.cost[:, :third].sum(1).mean() / total) if total > 0 else 0.0

    fa, fb = front(a), front(b)
    if abs(fa - fb) < 0.05:
        sentences.append(
            f"`{name}` times its spend much like `{baseline}`: {fa:.0%} of its spend falls in the first {third} quarters against {fb:.0%}."
        )
    else:
        word = "front-loads" if fa > fb else "back-loads"
        sentences.append(
            f"`{name}` {word} its spend: {fa:.0%} of it falls in the first {third} quarters, against {fb:.0%} for `{baseline}`."
        )

    # lever mix over the horizon and its shift between the first and the last third
    def mix(tr: Trajectories, quarters: slice) -> np.ndarray:
        spend = tr.spend[:, quarters].sum(axis=(0, 1, 2))
        return spend / spend.sum() if spend.sum() > 0 else spend

    da = mix(a, slice(None)) - mix(b, slice(None))
    more, less = int(da.argmax()), int(da.argmin())
    if da[more] > 0.03:
        sentences.append(
            f"It puts more of its budget into `{levers[more]}` ({mix(a, slice(None))[more]:.0%} of spend against "
            f"{mix(b, slice(None))[more]:.0%}) and less into `{levers[less]}` ({mix(a, slice(None))[less]:.0%} against {mix(b, slice(None))[less]:.0%})."
        )
    # the shift of its mix over time: quarters before vs after half its spend is gone
    spent = a.cost.mean(0).cumsum()
    if spent[-1] > 0:
        half = int(np.searchsorted(spent, 0.5 * spent[-1])) + 1
        if half < T:
            early, late = mix(a, slice(0, half)), mix(a, slice(half, T))
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
    pl_a, pl_b = a.intensity[..., market.PRIVATE_LABEL].mean(), b.intensity[..., market.PRIVATE_LABEL].mean()
    if abs(pl_a - pl_b) > 0.05:
        sentences.append(f"It pushes the private label at a mean intensity of {pl_a:.2f} against {pl_b:.2f}.")

    # regions
    def region_share(tr: Trajectories) -> np.ndarray:
        spend = tr.spend.sum(axis=(0, 1, 3))
        return spend / spend.sum() if spend.sum() > 0 else spend

    ra, rb = region_share(a), region_share(b)
    top = int((ra - rb).argmax())
    if ra[top] - rb[top] > 0.03:
        sentences.append(f"By region it favours {regions[top]} ({ra[top]:.0%} of spend against {rb[top]:.0%}).")
    elif len(regions) > 1:
        sentences.append("Its split of spend across regions is close to `" + baseline + "`'s.")

    # reaction to suspensions: spend in a region while suspended vs the same region-quarters unsuspended
    susp = a.suspended
    if susp.any():
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
        if reactions:
            parts = [f"{reg} {ratio:.0%} ({k} suspended region-quarters)" for reg, ratio, k in reactions]
            lowest = min(x[1] for x in reactions)
            if lowest < 0.5:
                verdict = "it largely stops spending where a shop is shut"
            elif lowest < 0.9:
                verdict = "it partly pulls back where a shop is shut"
            else:
                verdict = "it hardly reacts to suspensions"
            sentences.append(
                "Its spend in a suspended region, against the same region and quarters unsuspended: "
                + "; ".join(parts) + f": {verdict} (a constant plan such as `{baseline}` cannot react)."
            )
    else:
        sentences.append("No region was suspended in these episodes, so reactions to suspensions are not tested here.")

    gain = ma["gmv_mean"] / mb["gmv_mean"] - 1.0 if mb["gmv_mean"] > 0 else float("nan")
    sentences.append(
        f"Net effect: cumulative GMV ${ma['gmv_mean']:.1f}B against ${mb['gmv_mean']:.1f}B ({gain:+.1%}), "
        f"final run rate ${ma['run_rate_final_mean']:.1f}B against ${mb['run_rate_final_mean']:.1f}B, "
        f"spending ${ma['cost_mean']:.2f}B against ${mb['cost_mean']:.2f}B."
    )
    return " ".join(sentences)


def plot_run_rate(ev: Evaluation, path: Path) -> None:
    import matplotlib.pyplot as plt

    p = ev.scenario.to_params()
    fig, ax = plt.subplots(figsize=(8, 4.5))
    quarters = np.arange(1, p.horizon + 1)
    for name, tr in ev.trajectories.items():
        style = "-" if name in (ev.learned, "oracle", "best_static") else "--"
        ax.plot(quarters, tr.run_rate.mean(0), style, marker="o", ms=3, label=name, lw=2 if name == ev.learned else 1.3)
    ax.axhline(p.target_run_rate, color="k", lw=1, ls=":", label=f"target ${p.target_run_rate:g}B")
    ax.set_xlabel("quarter")
    ax.set_ylabel("GMV run rate, $B a year (mean over episodes)")
    ax.set_title(f"GMV run rate by quarter: {ev.scenario.name}, {len(ev.seeds)} episodes")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, ncol=2)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_lever_mix(ev: Evaluation, name: str, path: Path) -> None:
    import matplotlib.pyplot as plt

    p = ev.scenario.to_params()
    tr = ev.trajectories[name]
    spend = tr.spend.mean(0)  # (T, R, L)
    quarters = np.arange(1, p.horizon + 1)
    R = p.n_regions
    fig, axes = plt.subplots(1, R, figsize=(4.2 * R, 4), sharey=True, squeeze=False)
    colours = plt.get_cmap("tab10").colors
    for r, ax in enumerate(axes[0]):
        bottom = np.zeros(p.horizon)
        for j, lever in enumerate(market.LEVERS):
            if j == market.PRIVATE_LABEL:
                continue
            ax.bar(quarters, spend[:, r, j], bottom=bottom, color=colours[j], label=lever)
            bottom += spend[:, r, j]
        pl = tr.intensity[..., r, market.PRIVATE_LABEL].mean(0)
        if pl.max() > 0.01:
            twin = ax.twinx()
            twin.plot(quarters, pl, "k:", label="private_label intensity")
            twin.set_ylim(0, 1)
            twin.set_ylabel("private_label intensity (dotted)", fontsize=8)
        ax.set_title(p.region_names[r])
        ax.set_xlabel("quarter")
        ax.grid(alpha=0.3, axis="y")
    axes[0][0].set_ylabel("spend, $B a quarter (mean)")
    handles, labels = axes[0][0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=len(labels), fontsize=8, frameon=False)
    fig.suptitle(f"Lever mix of {name} by quarter and region")
    fig.tight_layout(rect=(0, 0.07, 1, 1))
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_cost(ev: Evaluation, path: Path) -> None:
    import matplotlib.pyplot as plt

    p = ev.scenario.to_params()
    quarters = np.arange(1, p.horizon + 1)
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4.2))
    for name, tr in ev.trajectories.items():
        ax1.plot(quarters, tr.cost.mean(0), marker="o", ms=3, label=name)
        ax2.plot(quarters, tr.cost.cumsum(1).mean(0), marker="o", ms=3, label=name)
    ax1.axhline(p.budget_per_quarter, color="k", ls=":", lw=1, label=f"per-quarter cap ${p.budget_per_quarter:g}B")
    ax2.axhline(p.budget_total, color="k", ls=":", lw=1, label=f"budget ${p.budget_total:g}B")
    ax1.set_title("spend per quarter")
    ax2.set_title("cumulative spend")
    for ax in (ax1, ax2):
        ax.set_xlabel("quarter")
        ax.set_ylabel("$B (mean over episodes)")
        ax.grid(alpha=0.3)
    ax2.legend(fontsize=7, ncol=2)
    fig.suptitle(f"Cost against the limit ({p.hard_budget and 'hard' or 'soft'} budget)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _fmt(x, spec: str = ".2f") -> str:
    return "n/a" if x is None else format(x, spec)


def report_markdown(ev: Evaluation, doc: dict, mix_policy: str | None, notes: Sequence[str] = ()) -> str:
    p = ev.scenario.to_params()
    lines = [
        f"# Evaluation: {ev.scenario.name}",
        "",
        f"{len(ev.seeds)} episodes, seeds {ev.seeds[0]} to {ev.seeds[-1]} (common random numbers: every policy faces "
        f"the same shocks and suspensions); {p.horizon} quarters; budget ${p.budget_total:g}B "
        f"(${p.budget_per_quarter:g}B a quarter at most, {doc['budget']['mode']} mode); target run rate ${p.target_run_rate:g}B.",
        "",
        "| policy | GMV $B (95% CI) | ratio to oracle | final run rate $B | target reached | cost $B | violations | revenue $B |",
        "| --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for name, f in doc["policies"].items():
        label = f"**{name}**" if name == ev.learned else name
        lines.append(
            f"| {label} | {f['gmv_mean']:.2f} ({f['gmv_ci95'][0]:.2f} to {f['gmv_ci95'][1]:.2f}) | {_fmt(f['ratio_to_oracle'], '.3f')} "
            f"| {f['run_rate_final_mean']:.2f} | {f['target_reached_rate']:.0%} | {f['cost_mean']:.2f} | {f['violation_rate']:.0%} "
            f"| {f['revenue_mean']:.2f} |"
        )
    lines += [
        "",
        "GMV is cumulative over the horizon; the run rate is the last quarter's GMV, annualised and de-seasonalised; "
        "the oracle is a clairvoyant open-loop plan per episode (an upper bound), `best_static` the best constant allocation.",
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
            "the hard projection (`agents.lagrangian.scaled_to_limit`: each quarter's spend scaled down to the limit) so the "
            "comparison is fair" + (f", while the learned policy `{ev.learned}` plays the soft scenario unprojected"
                                     if ev.learned and ev.learned not in scaled else "")
            + f"; cost and violations (episode cost above ${p.budget_total:g}B) are measured the same way for every policy.",
            *notes,
        ]
    if notes:
        lines += ["## Notes", ""] + [f"- {n}" for n in notes] + [""]
    return "\n".join(lines)


def write_report(ev: Evaluation, out: Path, extra: Mapping | None = None, notes: Sequence[str] = ()) -> dict:
    """Write eval.json, trajectories.json, report.md and the plots into ``out`` atomically.

    Everything goes to a temporary sibling folder first, which then replaces ``out``.
    Returns the eval.json document.
    """
    import matplotlib

    matplotlib.use("Agg")
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    doc = eval_json(ev, extra)
    mix_policy = ev.learned or ("oracle" if "oracle" in ev.trajectories else next(iter(ev.trajectories), None))
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        (tmp / "eval.json").write_text(json.dumps(doc, indent=2) + "\n")
        (tmp / "trajectories.json").write_text(json.dumps(trajectories_json(ev)) + "\n")
        plot_run_rate(ev, tmp / "run_rate.png")
        if mix_policy:
            plot_lever_mix(ev, mix_policy, tmp / "lever_mix.png")
        plot_cost(ev, tmp / "cost.png")
        (tmp / "report.md").write_text(report_markdown(ev, doc, mix_policy, notes))
        os.chmod(tmp, 0o755)
        if out.exists():
            old = Path(tempfile.mkdtemp(prefix=f".{out.name}.old.", dir=out.parent))
            os.rename(out, old / out.name)
            os.rename(tmp, out)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.rename(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return doc
