"""Training curves of a run, read back from its TensorBoard event files.

The same numbers TensorBoard shows, as a PNG for reports and the README::

    python scripts/plot_run.py runs/global__ppo__0__... --out docs/training.png
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

CURVES: tuple[tuple[str, str], ...] = (
    ("market/gmv_episode", "GMV per episode ($B)"),
    ("eval/gmv_mean", "held-out evaluation GMV ($B)"),
    ("market/gmv_run_rate_final", "final run rate ($B/yr)"),
    ("market/cost_episode", "cost per episode ($B)"),
)


def read_scalars(run_dir: str | Path) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Every scalar tag of the run's event files: ``tag -> (steps, values)``, sorted by step."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    files = sorted(Path(run_dir).rglob("events.out.tfevents*"))
    if not files:
        raise FileNotFoundError(f"no TensorBoard event files under {run_dir}")
    points: dict[str, dict[int, float]] = {}
    for path in files:
        acc = EventAccumulator(str(path), size_guidance={"scalars": 0})
        acc.Reload()
        for tag in acc.Tags().get("scalars", []):
            for event in acc.Scalars(tag):
                points.setdefault(tag, {})[event.step] = event.value
    return {tag: (np.array(sorted(d)), np.array([d[k] for k in sorted(d)])) for tag, d in points.items()}


def plot_training(run_dir: str | Path, out: str | Path, playbooks: dict[str, float] | None = None) -> Path:
    """A 2x2 PNG of the market curves of a run; playbook GMVs as dashed reference lines."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from agents.io import atomic_save

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
    out = Path(out)
    atomic_save(out, lambda p: fig.savefig(p, dpi=110, format="png"))
    plt.close(fig)
    return out
