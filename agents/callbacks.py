"""Training callbacks: TensorBoard in the platform's terms, evaluation, checkpoints, progress.

All of them extend SB3 through ``BaseCallback`` and ``self.logger.record``; SB3's own
``rollout/`` and ``train/`` scalars stay as they are. TensorBoard tags:

* ``market/gmv_episode`` ($B over the episode), ``market/gmv_run_rate_final`` ($B annualised,
  last quarter), ``market/exit_run_rate`` ($B annualised: the quarter after the horizon at the
  null action, the business left behind), ``market/cost_episode`` ($B spent), ``market/budget_utilisation`` (spent /
  ``budget.total``), ``market/revenue_episode`` ($B), ``market/objective_episode`` ($B: the
  episode's reward, objective plus terminal value), ``market/contribution_episode`` ($B:
  revenue - cash spend), ``market/net_burn_episode`` ($B: cash spend - revenue),
  ``market/buyers_final`` (M, all regions),
  ``market/sellers_final`` (k, all regions): means over the training episodes that ended in
  the last rollout (the latest ones if none ended).
* ``levers/<lever>``: mean intensity in [0, 1] of each lever over the rollout's quarters,
  markets and regions, after the budget projection (what was actually spent).
* ``eval/gmv_mean``, ``eval/cost_mean``, ``eval/final_run_rate_mean``, ``eval/exit_run_rate_mean``, ``eval/objective_mean``,
  ``eval/revenue_mean``, ``eval/contribution_mean``, ``eval/net_burn_mean``: deterministic policy
  on held-out seeds at step 0, every ``eval_freq`` env steps and at the end
  (:data:`agents.rollout.EVAL_TAG_KEYS`), and ``eval/ratio_to_best_static``: the same
  ``eval/gmv_mean`` divided by ``best_static``'s GMV on the same seeds.
* ``baselines/<playbook>`` and ``baselines/best_static`` ($B per episode): the best reference
  playbook's and the best constant allocation's GMV on the same held-out seeds, and
  ``baselines/budget_total`` ($B): logged at the first and the last step, so each draws a flat
  line beside the learned policy's.

Every one of these tags carries a description (TensorBoard shows it beside the chart; see
:data:`TAG_DESCRIPTIONS`); the custom-scalars layout (:func:`custom_scalars_layout`) puts them on
charts a strategist reads: GMV against the baselines, spend against the budget, the seven
levers on one chart with one named line each, buyers and sellers on charts of their own. The
HParams tab holds the config's hyperparameters against the final ``eval/gmv_mean``,
``eval/final_run_rate_mean`` and ``eval/ratio_to_best_static`` (:func:`hparams`).
"""

from __future__ import annotations

import sys
import time
from collections import deque
from typing import Any, Callable, Sequence

import numpy as np
from stable_baselines3.common.callbacks import BaseCallback
from stable_baselines3.common.logger import HParam, HumanOutputFormat, Logger, TensorBoardOutputFormat
from tensorboard.compat.proto.summary_pb2 import Summary, SummaryMetadata

from agents.rollout import EVAL_TAG_KEYS, MARKET_TAG_KEYS, publish
from envs.market import LEVER_TABLE, LEVERS

MARKET_TAGS = (
    *MARKET_TAG_KEYS.values(),
    "market/budget_utilisation",
    "market/buyers_final",
    "market/sellers_final",
)
LEVER_TAGS = tuple(f"levers/{lever}" for lever in LEVERS)
#: held-out GMV / best_static's GMV on the same seeds (the figure ``ratio_to_best_static``)
RATIO_TAG = "eval/ratio_to_best_static"
EVAL_TAGS = (*EVAL_TAG_KEYS.values(), RATIO_TAG)
BUDGET_TAG = "baselines/budget_total"
#: the best constant allocation (:func:`agents.planners.best_static`), a baseline of every run
BEST_STATIC = "best_static"


def baseline_tag(name: str) -> str:
    return f"baselines/{name}"


#: what each lever's intensity means, from the one lever table (backticks dropped for TensorBoard's text)
_LEVER_MEANING = {lever.name: lever.description.replace("`", "") for lever in LEVER_TABLE}

#: tag -> the description TensorBoard shows with its chart (prefixes: ``baselines/`` for any playbook)
TAG_DESCRIPTIONS: dict[str, str] = {
    "market/gmv_episode": "GMV of a training episode, $B (third party plus private label), mean over the episodes that ended in the rollout.",
    "market/gmv_run_rate_final": "Annualised, de-seasonalised GMV run rate in the last quarter of a training episode, $B a year; the target is the scenario's target_run_rate ($45B by 2025Q4 for the calibrated global).",
    "market/exit_run_rate": "Exit run rate of a training episode, $B a year: the quarter after the horizon played at the null action from the final state, annualised and de-seasonalised (the business left behind; the terminal value is taken on it).",
    "market/cost_episode": "Incentive spend over a training episode, $B (after the hard-budget projection).",
    "market/budget_utilisation": "Spend over the episode / budget.total: 1 spends the whole budget (above 1 only in soft-budget mode).",
    "market/revenue_episode": "Platform revenue over a training episode, $B: commission, shop ads and private-label margin.",
    "market/objective_episode": "Reward of a training episode, $B: the scenario's objective (GMV, revenue or contribution) summed over the quarters plus the terminal value of the business left at the horizon.",
    "market/contribution_episode": "Revenue minus cash spend over a training episode, $B.",
    "market/net_burn_episode": "Cash spend minus revenue over a training episode, $B.",
    "market/buyers_final": "Active buyers at the end of a training episode, M, all regions.",
    "market/sellers_final": "Active sellers at the end of a training episode, k, all regions.",
    **{f"levers/{lever}": f"Mean intensity of {lever} in [0, 1] over the rollout's quarters, markets and regions, after the budget projection: {meaning}."
       for lever, meaning in _LEVER_MEANING.items()},
    "eval/gmv_mean": "GMV per episode of the deterministic policy on held-out seeds (never trained on), $B; logged at step 0, every eval_freq steps and at the end.",
    "eval/cost_mean": "Spend per episode of the deterministic policy on the held-out seeds, $B.",
    "eval/final_run_rate_mean": "Annualised GMV run rate in the last quarter on the held-out seeds, $B a year (target: the scenario's target_run_rate).",
    "eval/exit_run_rate_mean": "Exit run rate on the held-out seeds, $B a year: the quarter after the horizon at the null action from each episode's final state (the business left behind).",
    "eval/objective_mean": "Reward per episode (objective plus terminal value) of the deterministic policy on the held-out seeds, $B: what the policy is trained to maximise.",
    "eval/revenue_mean": "Platform revenue per episode on the held-out seeds, $B: commission, shop ads and private-label margin.",
    "eval/contribution_mean": "Revenue minus cash spend per episode on the held-out seeds, $B.",
    "eval/net_burn_mean": "Cash spend minus revenue per episode on the held-out seeds, $B.",
    RATIO_TAG: "eval/gmv_mean divided by best_static's GMV on the same held-out seeds: above 1 the policy beats the best constant allocation; logged with every evaluation.",
    f"baselines/{BEST_STATIC}": "GMV per episode of best_static, the best constant allocation (the same intensities every quarter, searched by CMA-ES on the planners' training seeds), on the same held-out seeds as eval/gmv_mean, $B; logged at the first and the last step (a flat line).",
    BUDGET_TAG: "The scenario's total incentive budget over an episode, $B (budget.total): the line spend is measured against.",
    "constraint/episode_cost": "Cost-constrained PPO: mean spend per training episode, $B.",
    "constraint/violation_rate": "Cost-constrained PPO: share of training episodes whose spend exceeded the cost limit.",
    "constraint/lambda": "Cost-constrained PPO: the Lagrange multiplier on spend ($ of GMV per $ of spend over the limit).",
    "constraint/cost_limit": "Cost-constrained PPO: the episode cost limit, $B.",
    "constraint/signal_cost": "Cost-constrained PPO: the episode cost the multiplier compared with the limit, $B "
                              "(mean or quantile of the training episodes' or the mean action's costs: algo_params.cost_signal).",
}


def describe(tag: str) -> str | None:
    """The description of a Flywheel tag (``None`` for SB3's own ``rollout/``, ``train/``, ``time/``)."""
    if tag in TAG_DESCRIPTIONS:
        return TAG_DESCRIPTIONS[tag]
    if tag.startswith("baselines/"):
        name = tag.split("/", 1)[1]
        return f"GMV per episode of the reference policy {name} on the same held-out seeds as eval/gmv_mean, $B; logged at the first and the last step (a flat line)."
    return None


class DescribedTensorBoardOutputFormat(TensorBoardOutputFormat):
    """SB3's TensorBoard output, writing each Flywheel scalar's first value with its description
    (``SummaryMetadata.summary_description``: TensorBoard keeps the metadata of a tag's first event)."""

    def __init__(self, folder: str):
        super().__init__(folder)
        self._described: set[str] = set()

    def write(self, key_values: dict[str, Any], key_excluded: dict[str, tuple[str, ...]], step: int = 0) -> None:
        first = {k: v for k, v in key_values.items() if k not in self._described and describe(k) is not None
                 and isinstance(v, (int, float, np.integer, np.floating)) and not isinstance(v, bool)}
        if first:
            values = [Summary.Value(tag=k, simple_value=float(v), metadata=SummaryMetadata(display_name=k, summary_description=describe(k),
                                                                                   plugin_data=SummaryMetadata.PluginData(plugin_name="scalars")))
                      for k, v in sorted(first.items())]
            self.writer.file_writer.add_summary(Summary(value=values), step)
            self._described.update(first)
        rest = {k: v for k, v in key_values.items() if k not in first}
        super().write(rest, {k: key_excluded[k] for k in rest}, step)


def make_logger(folder: str, verbose: int = 0) -> Logger:
    """An SB3 logger writing described TensorBoard events to ``folder`` (and SB3's tables on
    stdout when ``verbose >= 1``)."""
    formats = [DescribedTensorBoardOutputFormat(folder)]
    if verbose >= 1:
        formats.insert(0, HumanOutputFormat(sys.stdout))
    return Logger(folder, formats)


def tensorboard_writer(logger):
    """The ``SummaryWriter`` behind an SB3 logger, or ``None`` if it does not write TensorBoard."""
    for fmt in getattr(logger, "output_formats", []):
        if isinstance(fmt, TensorBoardOutputFormat):
            return fmt.writer
    return None


def custom_scalars_layout(baselines: Sequence[str] = ()) -> dict:
    """The TensorBoard custom-scalars layout: the market against its references, then the levers
    (one line per lever), then the evaluation. ``baselines``: the reference policies logged as
    ``baselines/<name>`` (the best playbook and ``best_static``)."""
    gmv_refs = [baseline_tag(name) for name in baselines]
    return {
        "Market": {
            "GMV ($B per episode): training, held-out eval and the baselines": ["Multiline", ["market/gmv_episode", "eval/gmv_mean", *gmv_refs]],
            "Held-out GMV / best_static's GMV (1 = as good as the best constant allocation)": ["Multiline", [RATIO_TAG]],
            "Final run rate ($B a year)": ["Multiline", ["market/gmv_run_rate_final", "eval/final_run_rate_mean"]],
            "Exit run rate ($B a year)": ["Multiline", ["market/exit_run_rate", "eval/exit_run_rate_mean"]],
            "Spend against the budget ($B per episode)": ["Multiline", ["market/cost_episode", "eval/cost_mean", BUDGET_TAG]],
            "Budget utilisation (spend / budget)": ["Multiline", ["market/budget_utilisation"]],
            "Objective ($B per episode: the reward, training and held-out eval)": ["Multiline", ["market/objective_episode", "eval/objective_mean"]],
            "Revenue, contribution, net burn ($B per episode)": ["Multiline", [
                "market/revenue_episode", "market/contribution_episode", "market/net_burn_episode",
                "eval/revenue_mean", "eval/contribution_mean", "eval/net_burn_mean"]],
            "Buyers (M), final": ["Multiline", ["market/buyers_final"]],
            "Sellers (k), final": ["Multiline", ["market/sellers_final"]],
        },
        "Levers": {"Mean intensity by lever (0 = off, 1 = full)": ["Multiline", list(LEVER_TAGS)]},
    }


def hparams(config) -> dict:
    """The config's hyperparameters as the HParams tab shows them (scalars and strings only)."""
    flat: dict[str, Any] = {"algo": config.algo, "scenario": str(config.scenario), "n_envs": config.n_envs,
                            "total_timesteps": config.total_timesteps, "seed": config.seed}
    for key, value in config.ppo.model_dump().items():
        if key == "policy_kwargs":
            for k, v in value.items():
                flat[f"ppo.policy_kwargs.{k}"] = "x".join(map(str, v)) if isinstance(v, list) else v
        elif value is not None:
            flat[f"ppo.{key}"] = value
    for key, value in config.vecnormalize.model_dump().items():
        flat[f"vecnormalize.{key}"] = value
    return flat


def record_hparams(logger, config, figures: dict) -> None:
    """Fill the HParams tab: the config against the final held-out figures (the metrics are the
    ``eval/`` tags, so TensorBoard reads their last values; the ratio to ``best_static`` when the
    figures have it)."""
    metrics = {EVAL_TAG_KEYS["gmv_mean"]: figures["gmv_mean"], EVAL_TAG_KEYS["run_rate_final_mean"]: figures["run_rate_final_mean"]}
    if figures.get("ratio_to_best_static") is not None:
        metrics[RATIO_TAG] = figures["ratio_to_best_static"]
    logger.record("hparams", HParam(hparams(config), metrics), exclude=("stdout", "log", "json", "csv"))


def record_baselines(logger, baselines: dict[str, dict], budget_total: float) -> None:
    """``baselines/<name>`` (GMV per episode on the held-out seeds) and ``baselines/budget_total``."""
    for name, figures in baselines.items():
        logger.record(baseline_tag(name), figures["gmv_mean"])
    logger.record(BUDGET_TAG, float(budget_total))


def write_run_header(logger, config_yaml: str, baselines: Sequence[str] = ()) -> None:
    """Write the custom-scalars layout and the resolved config (as text) into the TB events."""
    writer = tensorboard_writer(logger)
    if writer is None:
        return
    writer.add_custom_scalars(custom_scalars_layout(baselines))
    # four-space indent: TensorBoard renders text summaries as Markdown
    writer.add_text("config", "\n".join("    " + line for line in config_yaml.splitlines()), global_step=0)
    writer.flush()


class MarketLoggerCallback(BaseCallback):
    """Log training episodes and lever intensities in the platform's terms (see module doc).

    :param budget_total: the scenario's ``budget.total`` ($B), for ``budget_utilisation``.
    """

    SUMMED = ("gmv", "revenue", "cash_spend", "objective_value", "terminal_value")

    def __init__(self, budget_total: float, verbose: int = 0):
        super().__init__(verbose)
        self.budget_total = float(budget_total)
        self._recent: deque[dict[str, float]] = deque(maxlen=256)
        self._finished: list[dict[str, float]] = []

    def _on_training_start(self) -> None:
        n = self.training_env.num_envs
        # per market, the episode so far: quarter sums of these info entries
        self._sums = {key: np.zeros(n) for key in self.SUMMED}
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
            for key, total in self._sums.items():
                total[i] += info[key]
            intensity = np.asarray(info["lever_intensity"])  # (n_regions, n_levers)
            self._lever_sum += intensity.mean(axis=0)
            self._lever_count += 1
            if dones[i]:
                sums = {key: float(total[i]) for key, total in self._sums.items()}
                figures = {  # one episode's figures, under agents.rollout's names
                    "gmv_mean": sums["gmv"],
                    "run_rate_final_mean": info["gmv_run_rate"],
                    "run_rate_exit_mean": info["exit_run_rate"],
                    "cost_mean": info["cost_total"],
                    "revenue_mean": sums["revenue"],
                    "objective_mean": sums["objective_value"] + sums["terminal_value"],
                    "contribution_mean": sums["revenue"] - sums["cash_spend"],
                    "net_burn_mean": sums["cash_spend"] - sums["revenue"],
                }
                episode = publish(figures, MARKET_TAG_KEYS)
                episode.update({
                    "market/budget_utilisation": info["cost_total"] / self.budget_total,
                    "market/buyers_final": float(sum(info["buyers"].values())),
                    "market/sellers_final": float(sum(info["sellers"].values())),
                })
                self._finished.append(episode)
                self._recent.append(episode)
                for total in self._sums.values():
                    total[i] = 0.0
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
    """Record the held-out evaluation's figures under their TensorBoard tags (``eval/``; the
    ratio to ``best_static`` when the figures have it)."""
    for name, tag in EVAL_TAG_KEYS.items():
        logger.record(tag, figures[name])
    if figures.get("ratio_to_best_static") is not None:
        logger.record(RATIO_TAG, figures["ratio_to_best_static"])


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

    def __init__(self, evaluate: Callable[..., dict], eval_freq: int, verbose: int = 0, at_start: Callable[[dict], None] | None = None):
        super().__init__(eval_freq, verbose)
        self.evaluate = evaluate
        self.at_start = at_start

    def _on_training_start(self) -> None:
        super()._on_training_start()
        if self.num_timesteps == 0:  # a fresh run: the untrained policy is the first point of every eval curve
            figures = self.evaluate(self.model, self.model.get_vec_normalize_env())
            record_eval(self.logger, figures)
            if self.at_start is not None:
                self.at_start(figures)
            self.logger.dump(0)

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
    """Plain progress lines for logs (when stdout is not a terminal), every ``every_seconds``.

    ``total_timesteps`` is what training will run (:func:`agents.ppo.planned_timesteps`: whole
    rollouts), so the last line reads 100%."""

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
        pct = min(100.0, 100.0 * self.num_timesteps / max(self.total, 1))
        print(f"step {self.num_timesteps}/{self.total} ({pct:.0f}%) fps {fps:.0f}{gmv}", file=self.stream, flush=True)
