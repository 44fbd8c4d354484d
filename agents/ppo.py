"""Build and train stable-baselines3 PPO from a training config, on the native batched env.

The pipeline, one function each::

    SB3VecEnv (N markets, one batched step)  ->  VecMonitor (rollout/ep_rew_mean)
        -> algorithm.wrap_env (PPO: nothing; cost-constrained PPO: r - lambda*c)
        -> VecNormalize (observations and rewards; statistics saved beside the model)
        -> PPO

:func:`train` runs that pipeline into a run folder (:mod:`agents.runs`): TensorBoard, periodic
checkpoints, evaluation on held-out seeds (:mod:`agents.rollout`), a checkpoint on
Ctrl-C/SIGTERM, ``summary.json``. :class:`PPOAlgorithm` is the plug-in face another algorithm
extends (``agents/lagrangian.py`` subclasses it and is selected with ``algo: ppo_lagrangian``,
see :mod:`agents.config`). This module imports torch: light code reaches it through
:mod:`agents.lazy`.
"""

from __future__ import annotations

import contextlib
import os
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import torch
from stable_baselines3 import PPO
from stable_baselines3.common.callbacks import BaseCallback, CallbackList
from stable_baselines3.common.vec_env import DummyVecEnv, VecEnv, VecMonitor, VecNormalize

from agents import callbacks as cb
from agents import runs
from agents.config import EVAL_SEED_BASE, TrainConfig, get_algorithm, load_config, whole_rollouts
from agents.constraint import scaled_to_limit
from agents.io import atomic_save, atomic_write_json, stale_temporaries
from agents.planners import BASELINE_ITERATIONS, BASELINE_SEEDS, best_static
from agents.policies import PLAYBOOKS, ConstantPolicy, NormalizedPolicy, make_policy
from agents.rollout import SUMMARY_KEYS, measure, publish
from agents.recovery import describe_skipped, find_checkpoints, has_tag, load_newest, truncate_events
from agents.seeds import eval_seeds
from agents.shutdown import GracefulShutdown, Interrupted
from envs.scenario import Scenario, load_scenario
from envs.sb3 import SB3VecEnv
from envs.social_commerce import SocialCommerceEnv

ACTIVATIONS = {"tanh": torch.nn.Tanh, "relu": torch.nn.ReLU, "elu": torch.nn.ELU}


def set_torch_threads(threads: int | None = None) -> int:
    """Use one torch thread by default.

    On a 2-core machine PPO's 64x64 networks and minibatches of a few hundred rows are too small
    to gain from intra-op parallelism; a second thread only contends with the env stepping in
    the main thread (measured: one thread is as fast or faster). ``FLYWHEEL_TORCH_THREADS``
    overrides.
    """
    if threads is None:
        threads = int(os.environ.get("FLYWHEEL_TORCH_THREADS", "1"))
    threads = max(1, min(int(threads), os.cpu_count() or 1))
    torch.set_num_threads(threads)
    return threads


# --------------------------------------------------------------------------- building


def scenario_of(config: TrainConfig) -> Scenario:
    return load_scenario(config.scenario, config.overrides)


def make_vec_env(config: TrainConfig, num_envs: int | None = None, scenario: Scenario | None = None,
                 ensemble: str | None = None) -> VecEnv:
    """The native batched env as an SB3 VecEnv, with ``VecMonitor`` for SB3's episode stats;
    with an ``ensemble`` each market draws a parameter set from it at every reset."""
    scenario = scenario or scenario_of(config)
    return VecMonitor(SB3VecEnv(num_envs or config.n_envs, scenario, ensemble=ensemble))


def ppo_kwargs(config: TrainConfig) -> dict[str, Any]:
    """SB3 ``PPO`` keyword arguments from the config's ``ppo`` section."""
    p = config.ppo.model_dump()
    pk = p.pop("policy_kwargs")
    p["policy_kwargs"] = {
        "net_arch": {"pi": list(pk["net_arch"]), "vf": list(pk["net_arch"])},
        "activation_fn": ACTIVATIONS[pk["activation_fn"]],
        "log_std_init": pk["log_std_init"],
        "ortho_init": pk["ortho_init"],
    }
    return p


class PPOAlgorithm:
    """Plain PPO. The hooks below are what :func:`train` and :func:`agents.runs.load_run` call;
    another algorithm subclasses this and overrides some of them."""

    name = "ppo"
    #: pydantic model validating ``algo_params`` (``None``: the algorithm takes none)
    params_model = None
    model_class = PPO

    def wrap_env(self, venv: VecEnv, config: TrainConfig, scenario: Scenario) -> VecEnv:
        """Wrap the monitored env before normalisation (e.g. a reward shaped by a multiplier)."""
        return venv

    def build_model(self, config: TrainConfig, env: VecEnv, scenario: Scenario, device: str = "cpu", verbose: int = 0):
        model = self.model_class("MlpPolicy", env, seed=config.seed, device=device, verbose=verbose, **ppo_kwargs(config))
        if config.start_policy is not None:
            start_mean_at(model, make_policy(config.start_policy, scenario).predict(np.zeros(0))[0])
        return model

    def load_model(self, path: str, env: VecEnv | None = None, device: str = "cpu"):
        return self.model_class.load(path, env=env, device=device)

    def load_frozen(self, model_path: str, vecnormalize_path: str, config: TrainConfig, scenario: Scenario):
        """A saved model and its ``VecNormalize`` statistics, frozen (``training=False``, raw
        rewards), for evaluation. :class:`agents.runs.RunError` if they do not fit ``scenario``."""
        venv = make_vec_env(config, num_envs=1, scenario=scenario)
        try:
            vecnormalize = VecNormalize.load(vecnormalize_path, venv)
        except (AssertionError, ValueError) as exc:
            raise runs.RunError(f"{vecnormalize_path}: normalisation statistics do not fit scenario '{config.scenario}' ({exc})") from None
        vecnormalize.training = False
        vecnormalize.norm_reward = False
        try:
            model = self.load_model(model_path, env=vecnormalize)
        except (AssertionError, ValueError) as exc:
            raise runs.RunError(f"{model_path}: model does not fit scenario '{config.scenario}' ({str(exc).splitlines()[0]})") from None
        return model, vecnormalize

    def callbacks(self, config: TrainConfig, scenario: Scenario, run_dir: Path) -> list[BaseCallback]:
        """Extra callbacks (logging the algorithm's own state)."""
        return []


ALGORITHM = PPOAlgorithm()


def start_mean_at(model, action: np.ndarray) -> None:
    """Set a fresh policy's mean action to ``action`` (the action net's bias; its orthogonal
    init with gain 0.01 leaves the mean near the bias for any observation).

    Why: SB3's mean action 0 is intensity 0.5 on every lever, several times a hard budget's
    quarterly cap. The env then scales every quarter's spend down to the cap, so spending less
    on any lever changes nothing until the budget is gone (a flat direction for the gradient):
    PPO keeps that front-loaded plan (measured on ``global``: the budget gone in quarter 5,
    0.81 of the oracle). Starting at a plan that paces the budget (``uniform``), PPO learns the
    mix and the timing from there.
    """
    with torch.no_grad():
        model.policy.action_net.bias.copy_(torch.as_tensor(np.asarray(action, dtype=np.float32).reshape(-1)))


def make_training_env(config: TrainConfig, scenario: Scenario, algorithm=None, vecnormalize_path: str | None = None) -> VecNormalize:
    """Monitored, wrapped, normalised training env: fresh, or with saved statistics."""
    algorithm = algorithm or get_algorithm(config.algo)
    venv = algorithm.wrap_env(make_vec_env(config, scenario=scenario, ensemble=config.scenario_ensemble), config, scenario)
    if vecnormalize_path is not None:
        env = VecNormalize.load(vecnormalize_path, venv)
        env.training = True
        return env
    return VecNormalize(venv, **config.vecnormalize.model_dump())


# --------------------------------------------------------------------------- evaluation


def evaluate_model(model, vecnormalize: VecNormalize | None, scenario: Scenario, episodes: int, name: str = "ppo") -> dict[str, float]:
    """Deterministic policy on the held-out seeds, observations normalised with the statistics
    of ``vecnormalize`` (read, never updated); figures of :func:`agents.rollout.summarise`."""
    return measure(NormalizedPolicy(model, vecnormalize, name=name), scenario, eval_seeds(episodes))


def playbook_figures(scenario: Scenario, episodes: int, names: Sequence[str] = PLAYBOOKS) -> dict[str, dict[str, float]]:
    """Each reference playbook on the same held-out seeds as :func:`evaluate_model`."""
    seeds = eval_seeds(episodes)
    return {name: measure(make_policy(name, scenario), scenario, seeds) for name in names}




def best_static_figures(scenario: Scenario, episodes: int, iterations: int = BASELINE_ITERATIONS,
                        n_seeds: int = BASELINE_SEEDS) -> dict[str, float]:
    """``best_static`` (the best constant allocation, searched on the planners' training seeds; in
    soft mode on the scenario scaled to the limit, as every reference policy) on the same
    held-out seeds as :func:`evaluate_model`."""
    reference = scaled_to_limit(scenario)
    plan = best_static(reference, iterations=iterations, n_seeds=n_seeds)
    return measure(ConstantPolicy(plan.intensity, name=cb.BEST_STATIC), reference, eval_seeds(episodes))


def ratio_to_best_static(figures: dict, static: dict) -> float | None:
    """Held-out GMV over ``best_static``'s on the same seeds (``None`` if that GMV is not positive)."""
    return float(figures["gmv_mean"] / static["gmv_mean"]) if static["gmv_mean"] > 0 else None


# --------------------------------------------------------------------------- training


@dataclass
class TrainResult:
    """What :func:`train` did. ``interrupted``: a signal stopped it in ``phase`` (the state on
    disk is what :func:`agents.runs.stopped_line` describes); ``forced``: a third signal cut a
    save short."""

    run_dir: Path
    timesteps: int
    wall_seconds: float
    interrupted: bool = False
    signal: int | None = None
    summary: dict = field(default_factory=dict)
    phase: str | None = None
    forced: bool = False


class TrainError(RuntimeError):
    """Training could not write its files (a full disk, a lost mount). One line, exit status 1."""


DEVICES = ("cpu", "cuda", "auto")


def check_device(device: str) -> str:
    """``device`` as SB3 reads it (``auto``: CUDA when available, else the CPU), or a one-line
    ``ValueError``. The CPU is the default: SB3 advises it for MLP policies, which a GPU does not speed up."""
    if device not in DEVICES:
        raise ValueError(f"--device {device!r}: allowed {', '.join(DEVICES)}")
    if device == "cuda" and not torch.cuda.is_available():
        raise ValueError("--device cuda: no CUDA device is available here (torch.cuda.is_available() is False); use cpu or auto")
    return device


def planned_timesteps(model, total_timesteps: int) -> int:
    """The env steps :meth:`learn` will run to reach ``total_timesteps``: PPO collects whole
    rollouts (``n_steps`` x ``n_envs``), so it stops at the first multiple at or above it."""
    return whole_rollouts(int(model.num_timesteps), int(total_timesteps), int(getattr(model, "n_steps", 1)) * int(model.n_envs))


def _open_model(config: TrainConfig, scenario: Scenario, algorithm, run_dir: Path, resume: bool, log, device: str = "cpu", verbose: int = 0):
    """A fresh model, or the newest checkpoint that loads; ``(model, wall seconds before)``.

    On resume every newer checkpoint that does not load is skipped with one line; a run that
    has no checkpoint at all (stopped before its first) starts again from step 0.
    """
    if resume:
        for note in runs.checkpoint_notes(run_dir):
            log(note)
        found = find_checkpoints(run_dir / runs.CHECKPOINT_DIR)
        if found:
            def load(ckpt):
                env = make_training_env(config, scenario, algorithm, vecnormalize_path=str(ckpt.vecnormalize_path))
                return algorithm.load_model(str(ckpt.model_path), env=env, device=device)

            got = load_newest(found, load)
            for line in describe_skipped(got.skipped):
                log(line)
            if got.checkpoint is None:
                raise runs.RunError(f"run {run_dir}: no checkpoint loads ({'; '.join(describe_skipped(got.skipped))}); nothing was changed")
            model = got.loaded
            model.verbose = verbose
            # fresh training markets after a resume (still below the evaluation seeds)
            model.set_random_seed(config.seed + int(model.num_timesteps) % (EVAL_SEED_BASE - config.seed - config.n_envs))
            return model, got.checkpoint.wall_seconds
    env = make_training_env(config, scenario, algorithm)
    return algorithm.build_model(config, env, scenario, device=device, verbose=verbose), 0.0


def _learn(model, callbacks: list[BaseCallback], total_timesteps: int, resume: bool, progress_bar: bool) -> None:
    """Train to ``total_timesteps`` (a stop request ends it at the next step: :class:`StopOnRequest`)."""
    # whole rollouts, said up front: the progress bar's total is what will run (never > 100%)
    remaining = planned_timesteps(model, total_timesteps) - int(model.num_timesteps)
    if remaining > 0:
        model.learn(total_timesteps=remaining, callback=CallbackList(callbacks), reset_num_timesteps=not resume, progress_bar=progress_bar)


def _prepare_resume(run_dir: Path, timesteps: int, tb_dir: Path) -> None:
    """Before training continues from ``timesteps``: one TensorBoard curve, no stale temporaries.

    Events logged after the checkpoint (steps the resumed run repeats) are dropped from the
    event files; leftovers of writes killed before their rename are removed (the lock makes
    them this run's own).
    """
    truncate_events(tb_dir, timesteps)
    for folder in (run_dir, run_dir / runs.CHECKPOINT_DIR, tb_dir):
        for leftover in stale_temporaries(folder):
            if leftover.is_file():
                leftover.unlink()


def training_summary(config: TrainConfig, timesteps: int, wall: float, final: dict, playbooks: dict[str, dict],
                     static: dict | None = None) -> dict:
    """``summary.json``: the run, its speed, and the final held-out evaluation beside the
    playbooks' and ``best_static``'s."""
    return {
        "algo": config.algo,
        "scenario": config.scenario,
        "seed": config.seed,
        "timesteps": timesteps,
        "wall_seconds": round(wall, 3),
        "fps": round(timesteps / max(wall, 1e-9), 1),
        "eval_episodes": config.eval_episodes,
        "eval_seeds": [EVAL_SEED_BASE, EVAL_SEED_BASE + config.eval_episodes - 1],
        **publish(final, SUMMARY_KEYS),
        "eval_playbooks_gmv_mean": {name: s["gmv_mean"] for name, s in playbooks.items()},
        "beats_all_playbooks": bool(all(final["gmv_mean"] > s["gmv_mean"] for s in playbooks.values())),
        **({} if static is None else {"eval_best_static_gmv_mean": static["gmv_mean"],
                                      "eval_ratio_to_best_static": ratio_to_best_static(final, static)}),
    }


def train(config: TrainConfig, run_dir: str | Path, *, resume: bool = False, progress: str = "auto", stream=None,
          shutdown: GracefulShutdown | None = None, on_evaluation: Callable[[int, dict, float], None] | None = None,
          device: str = "cpu", verbose: int = 0) -> TrainResult:
    """Train ``config`` into ``run_dir`` (created beforehand by :func:`agents.runs.create_run_dir`,
    which also records where its TensorBoard events go: :func:`agents.runs.tensorboard_dir`).

    :param resume: continue from the run's newest checkpoint that loads (from step 0 if it has
        none) to ``config.total_timesteps``, normalisation restored, TensorBoard one curve.
    :param progress: ``"bar"`` (SB3's progress bar), ``"lines"`` (plain periodic lines), ``"none"``,
        or ``"auto"`` (a bar when ``stream`` is a terminal, lines otherwise).
    :param shutdown: the command's signal handling; by default :func:`train` installs its own.
        SIGINT/SIGTERM during setup stop at once (the folder is already resumable), during the
        rollouts at the next step with a checkpoint, during a save after it, during the final
        evaluation at once (the final model is saved first).
    :param on_evaluation: called after every held-out evaluation (the periodic ones and the final
        one) with ``(timesteps, figures, train_seconds)``: the figures of :func:`evaluate_model`
        (and ``ratio_to_best_static``, :func:`ratio_to_best_static`) and the training wall time
        so far with the evaluation pauses left out (a sweep reports it to Ray Tune).
    :param device: ``cpu``, ``cuda`` or ``auto``, as SB3 reads it (:func:`check_device`).
    :param verbose: SB3's verbosity: 0 quiet, 1 also SB3's tables of ``rollout/`` and ``train/``
        on stdout, 2 also SB3's debug messages.
    :returns: a :class:`TrainResult`; ``interrupted`` if a signal stopped training.
    :raises TrainError: a file could not be written (one line; the previous checkpoint is intact).
    :raises agents.runs.RunError: on resume, checkpoints exist but none loads.
    """
    own = shutdown is None
    shutdown = (shutdown or GracefulShutdown()).install() if own else shutdown
    try:
        with _writer_thread_errors_reported_once():
            return _train(config, Path(run_dir), resume, progress, stream or sys.stdout, shutdown, on_evaluation,
                          check_device(device), int(verbose))
    except OSError as exc:
        raise TrainError(runs.write_failure_line(Path(run_dir), exc)) from None
    finally:
        if own:
            shutdown.uninstall()


@contextlib.contextmanager
def _writer_thread_errors_reported_once():
    """TensorBoard writes its events from a thread of its own; on a full disk that thread dies with
    an ``OSError`` traceback while the training's own write fails with the same error and ends in
    one line (:func:`agents.runs.write_failure_line`). Keep that one line: a writer thread's
    ``OSError`` is not printed (the training's next write to TensorBoard raises it again); every
    other thread error goes to the previous hook."""
    previous = threading.excepthook

    def hook(args) -> None:
        if issubclass(args.exc_type, OSError) and type(args.thread).__module__.startswith("tensorboard."):
            return
        previous(args)

    threading.excepthook = hook
    try:
        yield
    finally:
        threading.excepthook = previous


def _train(config: TrainConfig, run_dir: Path, resume: bool, progress: str, stream, shutdown: GracefulShutdown,
           on_evaluation: Callable[[int, dict, float], None] | None = None,
           device: str = "cpu", verbose: int = 0) -> TrainResult:
    def log(line: str) -> None:
        print(line, file=stream, flush=True)

    try:
        with shutdown.interruptible("setup"):
            set_torch_threads()
            algorithm = get_algorithm(config.algo)
            scenario = runs.run_scenario(run_dir, config)
            model, wall_before = _open_model(config, scenario, algorithm, run_dir, resume, log, device=device, verbose=verbose)
            tb_dir = runs.tensorboard_dir(run_dir)
            if resume:
                _prepare_resume(run_dir, int(model.num_timesteps), tb_dir)
                done = int(model.num_timesteps)
                left = f"to {planned_timesteps(model, config.total_timesteps)}" if done < config.total_timesteps else \
                    f"(past {config.total_timesteps}: only the final evaluation is left)"
                log(f"resuming {run_dir} from step {done} {left}")
            model.set_logger(cb.make_logger(str(tb_dir), verbose))
            # the reference playbooks and best_static on the held-out seeds: the best playbook and
            # best_static are drawn beside the learned policy, best_static's GMV divides its own
            playbooks = playbook_figures(scenario, config.eval_episodes)
            best = max(playbooks, key=lambda name: playbooks[name]["gmv_mean"])
            static = best_static_figures(scenario, config.eval_episodes)
            baselines = {best: playbooks[best], cb.BEST_STATIC: static}
            if not has_tag(tb_dir, "config"):
                cb.write_run_header(model.logger, config.to_yaml(), baselines=list(baselines))
    except Interrupted as exc:
        return TrainResult(run_dir, 0, 0.0, interrupted=True, signal=exc.signum, phase="setup", forced=exc.forced)

    start = time.monotonic()
    paused = [0.0]  # seconds spent evaluating in this process (not training)

    def elapsed() -> float:
        return wall_before + time.monotonic() - start

    def save_checkpoint() -> None:
        with shutdown.critical("checkpoint"):
            runs.save_checkpoint(run_dir, model, model.get_vec_normalize_env(), elapsed())

    def evaluate(m, vecnormalize) -> dict:
        t0 = time.monotonic()
        figures = evaluate_model(m, vecnormalize, scenario, config.eval_episodes, name=config.algo)
        figures["ratio_to_best_static"] = ratio_to_best_static(figures, static)
        paused[0] += time.monotonic() - t0
        if on_evaluation is not None:
            on_evaluation(int(m.num_timesteps), figures, elapsed() - paused[0])
        return figures

    if progress == "auto":
        progress = "bar" if getattr(stream, "isatty", lambda: False)() else "lines"
    market = cb.MarketLoggerCallback(scenario.budget.total)
    callbacks: list[BaseCallback] = [
        market,
        cb.PeriodicEvalCallback(evaluate, config.eval_freq, at_start=lambda figures: cb.record_baselines(model.logger, baselines, scenario.budget.total)),
        cb.PeriodicCheckpointCallback(save_checkpoint, config.checkpoint_freq),
        *algorithm.callbacks(config, scenario, run_dir),
        cb.StopOnRequest(shutdown),
    ]
    if progress == "lines":
        callbacks.append(cb.PlainProgress(planned_timesteps(model, config.total_timesteps), market, stream=stream))
    try:
        with shutdown.cooperative("training"):
            _learn(model, callbacks, config.total_timesteps, resume, progress == "bar")
            if shutdown.requested:
                save_checkpoint()
    except Interrupted as exc:
        with contextlib.suppress(Exception):
            model.logger.close()
        return TrainResult(run_dir, int(model.num_timesteps), elapsed(), interrupted=True, signal=exc.signum, phase=exc.phase, forced=exc.forced)
    wall = elapsed()

    try:
        vecnormalize = model.get_vec_normalize_env()
        with shutdown.critical("saving the final model"):
            save_checkpoint()
            atomic_save(run_dir / runs.VECNORM_FILE, vecnormalize.save)
            atomic_save(run_dir / runs.MODEL_FILE, model.save)
        with shutdown.interruptible("final evaluation"):
            final = evaluate(model, vecnormalize)
            cb.record_eval(model.logger, final)
            cb.record_baselines(model.logger, baselines, scenario.budget.total)
            cb.record_hparams(model.logger, config, final)
            model.logger.dump(int(model.num_timesteps))
            model.logger.close()
            timesteps = int(model.num_timesteps)
            summary = training_summary(config, timesteps, wall, final, playbooks, static)
            with shutdown.critical("final evaluation"):
                atomic_write_json(run_dir / runs.SUMMARY_FILE, summary)
    except Interrupted as exc:
        with contextlib.suppress(Exception):
            model.logger.close()
        return TrainResult(run_dir, int(model.num_timesteps), wall, interrupted=True, signal=exc.signum, phase=exc.phase, forced=exc.forced)
    return TrainResult(run_dir, timesteps, wall, summary=summary)


# --------------------------------------------------------------------------- benchmark


def measure_fps(vectorized: bool, config: TrainConfig | None = None, timesteps: int = 16_384, seed: int = 0) -> float:
    """PPO training frames per second (env steps/s, learning included).

    :param vectorized: ``True``: the native batched env (:class:`envs.SB3VecEnv`); ``False``: the
        same number of single :class:`envs.SocialCommerceEnv` in a ``DummyVecEnv``. Everything
        else (PPO hyperparameters, ``VecMonitor``, ``VecNormalize``) is the same.
    :param config: the training config (default: ``configs/train/ppo.yaml``).
    :param timesteps: env steps to train for (rounded up to whole rollouts by PPO).
    """
    config = config or load_config()
    set_torch_threads()
    scenario = scenario_of(config)
    if vectorized:
        base: VecEnv = SB3VecEnv(config.n_envs, scenario)
    else:
        base = DummyVecEnv([lambda: SocialCommerceEnv(scenario=scenario) for _ in range(config.n_envs)])
    env = VecNormalize(VecMonitor(base), **config.vecnormalize.model_dump())
    model = PPO("MlpPolicy", env, seed=seed, device="cpu", verbose=0, **ppo_kwargs(config))
    start = time.perf_counter()
    model.learn(total_timesteps=timesteps)
    return model.num_timesteps / (time.perf_counter() - start)
