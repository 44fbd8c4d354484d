"""Training callbacks: TensorBoard in the platform's terms, evaluation, checkpoints, progress.

All of them extend SB3 through ``BaseCallback`` and ``self.logger.record``; SB3's own
``rollout/`` and ``train/`` scalars stay as they are. TensorBoard tags:

* ``market/gmv_episode`` ($B over the episode), ``market/gmv_run_rate_final`` ($B annualised,
  last quarter), ``market/cost_episode`` ($B spent), ``market/budget_utilisation`` (spent /
  ``budget.total``), ``market/revenue_episode`` ($B), ``market/buyers_final`` (M, all regions),
  ``market/sellers_final`` (k, all regions): means over the training episodes that ended in
  the last rollout (the latest ones if none ended).
* ``levers/<lever>``: mean intensity in [0, 1] of each lever over the rollout's quarters,
  markets and regions, after the budget projection (what was actually spent).
* ``eval/gmv_mean``, ``eval/cost_mean``, ``eval/final_run_rate_mean``: deterministic policy on
  held-out seeds every ``eval_freq`` env steps.
"""

from __future__ import annotations

import sys
import time
from collections import deque
from typing import Any, Callable

import numpy as np
from stable_baselines3.common.callbacks import BaseCallback
from stable_baselines3.common.logger import TensorBoardOutputFormat

from agents.rollout import EVAL_TAG_KEYS
from envs.market import LEVERS

MARKET_TAGS = (
    "market/gmv_episode",
    "market/gmv_run_rate_final",
    "market/cost_episode",
    "market/budget_utilisation",
    "market/revenue_episode",
    "market/buyers_final",
    "market/sellers_final",
)
LEVER_TAGS = tuple(f"levers/{lever}" for lever in LEVERS)
EVAL_TAGS = tuple(EVAL_TAG_KEYS.values())


def tensorboard_writer(logger):
    """The ``SummaryWriter`` behind an SB3 logger, or ``None`` if it does not write TensorBoard."""
    for fmt in getattr(logger, "output_formats", []):
        if isinstance(fmt, TensorBoardOutputFormat):
            return fmt.writer
    return None


def custom_scalars_layout() -> dict:
    """The TensorBoard custom-scalars layout: market charts together, then levers, then eval."""
    return {
        "Market": {
            "GMV ($B per episode, eval vs training)": ["Multiline", ["market/gmv_episode", "eval/gmv_mean"]],
            "Final run rate ($B a year)": ["Multiline", ["market/gmv_run_rate_final", "eval/final_run_rate_mean"]],
            "Spend ($B per episode)": ["Multiline", ["market/cost_episode", "eval/cost_mean"]],
            "Budget utilisation": ["Multiline", ["market/budget_utilisation"]],
            "Revenue ($B per episode)": ["Multiline", ["market/revenue_episode"]],
            "Buyers (M) and sellers (k), final": ["Multiline", ["market/buyers_final", "market/sellers_final"]],
        },
        "Levers": {"Mean intensity by lever": ["Multiline", list(LEVER_TAGS)]},
    }


def write_run_header(logger, config_yaml: str) -> None:
    """Write the custom-scalars layout and the resolved config (as text) into the TB events."""
    writer = tensorboard_writer(logger)
    if writer is None:
        return
    writer.add_custom_scalars(custom_scalars_layout())
    # four-space indent: TensorBoard renders text summaries as Markdown
    writer.add_text("config", "\n".join("    " + line for line in config_yaml.splitlines()), global_step=0)
    writer.flush()


class MarketLoggerCallback(BaseCallback):
    """Log training episodes and lever intensities in the platform's terms (see module doc).

    :param budget_total: the scenario's ``budget.total`` ($B), for ``budget_utilisation``.
    """

    def __init__(self, budget_total: float, verbose: int = 0):
        super().__init__(verbose)
        self.budget_total = float(budget_total)
        self._recent: deque[dict[str, float]] = deque(maxlen=256)
        self._finished: list[dict[str, float]] = []

    def _on_training_start(self) -> None:
        n = self.training_env.num_envs
        self._gmv = np.zeros(n)
        self._revenue = np.zeros(n)
        self._lever_sum = np.zeros(len(LEVERS))
        self._lever_count = 0

    def _on_rollout_start(self) -> None:
        self._finished = []
        self._lever_sum[:] = 0.0
        self._lever_count = 0

    def _on_step(self) -> bool:
        infos = self.locals["infos"]
        dones = self.locals["dones"]
        for i, info in enumerate(infos):
            self._gmv[i] += info["gmv"]
            self._revenue[i] += info["revenue"]
            intensity = np.asarray(info["lever_intensity"])  # (n_regions, n_levers)
            self._lever_sum += intensity.mean(axis=0)
            self._lever_count += 1
            if dones[i]:
                episode = {
                    "market/gmv_episode": self._gmv[i],
                    "market/gmv_run_rate_final": info["gmv_run_rate"],
                    "market/cost_episode": info["cost_total"],
                    "market/budget_utilisation": info["cost_total"] / self.budget_total,
                    "market/revenue_episode": self._revenue[i],
                    "market/buyers_final": float(sum(info["buyers"].values())),
                    "market/sellers_final": float(sum(info["sellers"].values())),
                }
                self._finished.append(episode)
                self._recent.append(episode)
                self._gmv[i] = 0.0
                self._revenue[i] = 0.0
        return True

    def _on_rollout_end(self) -> None:
        episodes = self._finished or list(self._recent)[-self.training_env.num_envs :]
        if episodes:
            for tag in MARKET_TAGS:
                self.logger.record(tag, float(np.mean([e[tag] for e in episodes])))
        if self._lever_count:
            means = self._lever_sum / self._lever_count
            for tag, value in zip(LEVER_TAGS, means):
                self.logger.record(tag, float(value))


def record_eval(logger, figures: dict) -> None:
    """Record the held-out evaluation's figures under their TensorBoard tags (``eval/``)."""
    for name, tag in EVAL_TAG_KEYS.items():
        logger.record(tag, figures[name])


class _Periodic(BaseCallback):
    """A callback whose work falls due each time the env steps (summed over the parallel envs)
    pass the next multiple of ``freq``, counted from where training (or a resume) starts."""

    def __init__(self, freq: int, verbose: int = 0):
        super().__init__(verbose)
        self.freq = int(freq)

    def _on_training_start(self) -> None:
        self._next = (self.num_timesteps // self.freq + 1) * self.freq

    def _on_step(self) -> bool:
        return True

    def _due(self) -> bool:
        if self.num_timesteps < self._next:
            return False
        self._next = (self.num_timesteps // self.freq + 1) * self.freq
        return True


class PeriodicEvalCallback(_Periodic):
    """Every ``eval_freq`` env steps, evaluate the deterministic policy on held-out seeds.

    (Not SB3's ``EvalCallback``: this one is handed the evaluation as a function.)

    :param evaluate: ``evaluate(model, vecnormalize) -> dict`` of :func:`agents.rollout.summarise`
        figures (see :func:`agents.ppo.evaluate_model`).
    :param eval_freq: env steps between evaluations (summed over parallel envs).
    """

    def __init__(self, evaluate: Callable[..., dict], eval_freq: int, verbose: int = 0):
        super().__init__(eval_freq, verbose)
        self.evaluate = evaluate

    def _on_rollout_end(self) -> None:
        if self._due():
            record_eval(self.logger, self.evaluate(self.model, self.model.get_vec_normalize_env()))


class PeriodicCheckpointCallback(_Periodic):
    """Save model and normalisation statistics every ``checkpoint_freq`` env steps (atomically).

    (Not SB3's ``CheckpointCallback``: this one is handed the saving as a function.)

    :param save: ``save() -> None``, writes one checkpoint (see :func:`agents.runs.save_checkpoint`).
    """

    def __init__(self, save: Callable[[], Any], checkpoint_freq: int, verbose: int = 0):
        super().__init__(checkpoint_freq, verbose)
        self.save = save

    def _on_rollout_start(self) -> None:
        # here the previous rollout has been trained on: the weights, the statistics and
        # num_timesteps agree, so a resume loses nothing
        if self._due():
            self.save()


class StopOnRequest(BaseCallback):
    """End ``learn`` at the next env step once a stop was requested (Ctrl-C, SIGTERM).

    :param shutdown: the command's :class:`agents.shutdown.GracefulShutdown`; the signal
        handling is its job, this callback only polls :attr:`~GracefulShutdown.requested`.
    """

    def __init__(self, shutdown, verbose: int = 0):
        super().__init__(verbose)
        self.shutdown = shutdown

    def _on_step(self) -> bool:
        return not self.shutdown.requested


class PlainProgress(BaseCallback):
    """Plain progress lines for logs (when stdout is not a terminal), every ``every_seconds``."""

    def __init__(self, total_timesteps: int, market: MarketLoggerCallback, every_seconds: float = 10.0, stream=None):
        super().__init__(0)
        self.total = int(total_timesteps)
        self.market = market
        self.every = float(every_seconds)
        self.stream = stream or sys.stdout

    def _on_training_start(self) -> None:
        self._start_time = time.monotonic()
        self._start_steps = self.num_timesteps
        self._last = -float("inf")

    def _on_step(self) -> bool:
        return True

    def _on_rollout_end(self) -> None:
        now = time.monotonic()
        if now - self._last < self.every and self.num_timesteps < self.total:
            return
        self._last = now
        fps = (self.num_timesteps - self._start_steps) / max(now - self._start_time, 1e-9)
        recent = list(self.market._recent)[-self.training_env.num_envs :]
        gmv = f" gmv_episode {np.mean([e['market/gmv_episode'] for e in recent]):.2f}$B" if recent else ""
        pct = 100.0 * self.num_timesteps / max(self.total, 1)
        print(f"step {self.num_timesteps}/{self.total} ({pct:.0f}%) fps {fps:.0f}{gmv}", file=self.stream, flush=True)
