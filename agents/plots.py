"""Every figure the project draws (matplotlib, Agg backend), each written atomically.

* evaluation (:mod:`agents.report`): :func:`plot_run_rate`, :func:`plot_lever_mix`, :func:`plot_cost`;
* the budget frontier (:mod:`agents.frontier`): :func:`plot_frontier`;
* training curves read back from a run's TensorBoard events: :func:`plot_training`;
* one simulated episode (:mod:`agents.simulate`): :func:`plot_simulation`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np

from agents.evaluation import Evaluation
from agents.io import PLOT_FORMATS, Output, as_output, atomic_path, write_output_file
from envs import market


def pyplot():
    """``matplotlib.pyplot`` on the Agg backend (imported on first use: it is slow to load)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


# --------------------------------------------------------------------------- evaluation


def plot_run_rate(ev: Evaluation, path: Path) -> None:
    plt = pyplot()
    p = ev.params
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
    plt = pyplot()
    p = ev.params
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
    plt = pyplot()
    p = ev.params
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


def plot_gmv_spread(ev: Evaluation, path: Path) -> None:
    """Cumulative GMV over the episodes of every policy: box (p25-p75), whiskers p10-p90, the
    median; with an ensemble the spread includes the parameter draws."""
    plt = pyplot()
    totals = {name: tr.gmv.sum(1) for name, tr in ev.trajectories.items()}
    fig, ax = plt.subplots(figsize=(max(6, 1.1 * len(totals) + 2), 4.5))
    ax.boxplot(list(totals.values()), whis=(10, 90), showfliers=False)
    ax.set_xticks(np.arange(1, len(totals) + 1), list(totals), rotation=20, fontsize=8)
    ax.set_ylabel("cumulative GMV, $B")
    what = f"{len(ev.ensemble)} parameter sets" if ev.ensemble is not None else "the nominal parameters"
    ax.set_title(f"Spread over {len(ev.seeds)} episodes and {what}\n(box p25-p75, whiskers p10-p90)", fontsize=10)
    ax.grid(alpha=0.3, axis="y")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


# --------------------------------------------------------------------------- frontier


def plot_frontier(result: dict, path: Path) -> None:
    """GMV against budget per method; the oracle's marginal GMV per extra $B on each segment."""
    plt = pyplot()
    rows = result["rows"]
    budgets = [r["budget_total"] for r in rows]
    fig, ax = plt.subplots(figsize=(7, 4.5))
    styles = {"oracle": ("o-", "oracle (clairvoyant plan)"), "best_static": ("s--", "best static allocation"), "ppo": ("^-", "PPO (hard budget)")}
    for method in result["methods"]:
        marker, label = styles[method]
        ax.plot(budgets, [r[f"{method}_gmv"] for r in rows], marker, label=label)
    annotated = "oracle" if "oracle" in result["methods"] else result["methods"][0]
    for k in range(1, len(rows)):
        m = rows[k][f"{annotated}_marginal_gmv_per_b"]
        x = 0.5 * (budgets[k] + budgets[k - 1])
        y = 0.5 * (rows[k][f"{annotated}_gmv"] + rows[k - 1][f"{annotated}_gmv"])
        ax.annotate(f"+{m:.1f} $B GMV\nper extra $B", (x, y), textcoords="offset points", xytext=(0, 10), ha="center", fontsize=8)
    ax.set_xlabel("total incentive budget over the horizon ($B)")
    ax.set_ylabel("cumulative GMV ($B, mean over episodes)")
    ax.set_title(f"Budget frontier, scenario '{result['scenario']}' (hard budget, {result['episodes']} episodes)")
    ax.set_xticks(budgets)
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=120)
    plt.close(fig)


# --------------------------------------------------------------------------- training curves


CURVES: tuple[tuple[str, str], ...] = (
    ("market/gmv_episode", "GMV per episode ($B)"),
    ("eval/gmv_mean", "held-out evaluation GMV ($B)"),
    ("market/gmv_run_rate_final", "final run rate ($B/yr)"),
    ("market/cost_episode", "cost per episode ($B)"),
)


def read_scalars(run_dir: str | Path) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Every scalar tag of the run's event files: ``tag -> (steps, values)``, sorted by step."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    from agents.runs import TB_DIR, tensorboard_dir

    folders = [Path(run_dir)]
    events = tensorboard_dir(run_dir) if Path(run_dir).is_dir() else Path(run_dir) / TB_DIR
    if events != Path(run_dir) / TB_DIR:  # trained with --tensorboard-log
        folders.append(events)
    files = sorted(f for folder in folders for f in folder.rglob("events.out.tfevents*"))
    if not files:
        raise FileNotFoundError(f"no TensorBoard event files under {' or '.join(map(str, folders))}")
    points: dict[str, dict[int, float]] = {}
    for path in files:
        acc = EventAccumulator(str(path), size_guidance={"scalars": 0})
        acc.Reload()
        for tag in acc.Tags().get("scalars", []):
            for event in acc.Scalars(tag):
                points.setdefault(tag, {})[event.step] = event.value
    return {tag: (np.array(sorted(d)), np.array([d[k] for k in sorted(d)])) for tag, d in points.items()}


def plot_training(run_dir: str | Path, out: "Output | str | Path", playbooks: dict[str, float] | None = None) -> Path:
    """A 2x2 figure of the market curves of a run; playbook GMVs as dashed reference lines.

    :param out: checked beforehand (:func:`agents.io.plan_file`), or a path for a new file; the
        format follows the extension.
    """
    out = as_output(out, "plot", PLOT_FORMATS)
    plt = pyplot()
    scalars = read_scalars(run_dir)
    fig, axes = plt.subplots(2, 2, figsize=(10, 6.5), sharex=True)
    for ax, (tag, label) in zip(axes.ravel(), CURVES):
        if tag in scalars:
            steps, values = scalars[tag]
            ax.plot(steps, values, color="tab:blue", lw=1.5)
        if playbooks and tag in ("market/gmv_episode", "eval/gmv_mean"):
            for i, (name, gmv) in enumerate(sorted(playbooks.items(), key=lambda kv: -kv[1])[:3]):
                ax.axhline(gmv, ls="--", lw=0.8, color=f"C{i + 1}", label=name)
            ax.legend(fontsize=7, loc="lower right")
        ax.set_title(f"{label}\n[{tag}]", fontsize=9)
        ax.grid(alpha=0.3)
    for ax in axes[-1]:
        ax.set_xlabel("env steps (quarters)")
    fig.suptitle(f"Training curves from TensorBoard: {Path(run_dir).name}", fontsize=10)
    fig.tight_layout()
    try:
        write_output_file(out, lambda p: fig.savefig(p, dpi=110, format=out.format))
    finally:
        plt.close(fig)
    return out.path


# --------------------------------------------------------------------------- one episode


def plot_simulation(rows: Sequence[dict], output: "Output | str | Path", target_run_rate: float, regions: Sequence[str], title: str = "") -> Path:
    """The annualised run rate by region per quarter (stacked), with the target dashed.

    :param output: checked beforehand (:func:`agents.io.plan_file` with
        :data:`agents.io.PLOT_FORMATS`), or a path for a new file; the format follows the
        extension (``.png``, ``.pdf``, ``.svg``...).
    """
    output = as_output(output, "plot", PLOT_FORMATS)
    plt = pyplot()
    x = np.arange(len(rows))
    fig, ax = plt.subplots(figsize=(9, 4.8))
    try:
        ax.stackplot(x, *[[row[f"run_rate.{r}"] for row in rows] for r in regions], labels=regions, alpha=0.85)
        ax.axhline(target_run_rate, color="black", linestyle="--", linewidth=1.2, label=f"target ${target_run_rate:g}B")
        ax.set_xticks(x, [row["quarter"] for row in rows], rotation=45, ha="right")
        ax.set_ylabel("GMV run rate ($B a year)")
        ax.set_ylim(0, max(target_run_rate, max(row["run_rate"] for row in rows)) * 1.1)
        ax.set_title(title or "GMV run rate by region")
        ax.legend(loc="upper left")
        ax.grid(axis="y", alpha=0.3)
        fig.tight_layout()
        write_output_file(output, lambda tmp: fig.savefig(tmp, format=output.format, dpi=100))
    finally:
        plt.close(fig)
    return output.path


