"""Cost-constrained PPO: the multiplier updates, the cost penalty, soft vs hard budgets, a tiny run."""

from __future__ import annotations

import sys
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest

import envs  # noqa: F401  (registers the env)
from agents.config import ConfigError, LagrangianParams, load_config
from agents.constraint import GradientLagrangian, PIDLagrangian, make_multiplier, over_limit
from agents.lagrangian import ALGORITHM, CONSTRAINT_TAGS
from tests.conftest import assert_bad_inputs_exit_2, run_main

ROOT = Path(__file__).resolve().parent.parent
TRAIN = ROOT / "scripts" / "train.py"
CONFIG = ROOT / "configs" / "train" / "ppo_lagrangian.yaml"
TINY = ["--set", "n_envs=16", "--set", "ppo.n_steps=16", "--set", "ppo.batch_size=64", "--set", "ppo.n_epochs=2",
        "--set", "checkpoint_freq=512", "--set", "eval_freq=100000", "--set", "eval_episodes=4"]


def _params(**settings) -> LagrangianParams:
    """The shipped ``algo_params`` with some settings changed."""
    return LagrangianParams.model_validate({**load_config(CONFIG).algo_params, **settings})


MULTIPLIERS = {
    "pid": lambda: make_multiplier(_params(update="pid", kp=1.0, ki=0.1, kd=0.5, d_delay=5, delta_p_ema_alpha=0.5,
                                           delta_d_ema_alpha=0.5, lambda_init=1.0, lambda_max=5.0), 4.0),
    "gradient": lambda: make_multiplier(_params(update="gradient", lr=0.5, lambda_init=1.0, lambda_max=5.0), 4.0),
}


@pytest.mark.parametrize("kind", list(MULTIPLIERS))
def test_multiplier_rises_over_the_limit_falls_under_it_never_below_zero_and_capped(kind: str):
    lag = MULTIPLIERS[kind]()
    over = [lag.update(4.4) for _ in range(30)]  # 10% over the limit
    assert min(over) > 1.0 and over[-1] > over[0], over
    # once the derivative's look-back has passed, a steady overspend only raises it (integral)
    assert all(b > a for a, b in zip(over[10:], over[11:])), over
    capped = [lag.update(40.0) for _ in range(200)]
    assert max(capped) <= 5.0 + 1e-12 and capped[-1] == pytest.approx(5.0)
    under = [lag.update(1.0) for _ in range(300)]  # far under
    assert under[-1] < capped[-1] and min(under) >= 0.0
    assert under[-1] == pytest.approx(0.0, abs=1e-9)
    assert all(b <= a + 1e-12 for a, b in zip(under[5:], under[6:]))  # falls (after the EMA settles)


def test_pid_state_round_trips():
    a = MULTIPLIERS["pid"]()
    for cost in (5.0, 6.0, 3.0, 4.5):
        a.update(cost)
    b = MULTIPLIERS["pid"]()
    b.load_state_dict(a.state_dict())
    assert [a.update(c) for c in (7.0, 2.0)] == [b.update(c) for c in (7.0, 2.0)]


def test_params_and_factory():
    shipped = load_config(CONFIG).algo_params  # the models hold no defaults: the YAML does
    pid = make_multiplier(LagrangianParams.model_validate({**shipped, "lambda_init": 3.0}), 4.0)
    gradient = make_multiplier(LagrangianParams.model_validate({**shipped, "update": "gradient", "lambda_init": 0.5}), 4.0)
    assert isinstance(pid, PIDLagrangian) and isinstance(gradient, GradientLagrangian)
    # the multiplier starts where the config says (the rules have no default of their own)
    assert pid.multiplier == 3.0 and pid.integral == 3.0 and gradient.multiplier == 0.5
    assert pid.cost_limit == gradient.cost_limit == 4.0
    with pytest.raises(TypeError):
        PIDLagrangian(4.0)  # every setting comes from LagrangianParams
    with pytest.raises(ValueError):
        LagrangianParams.model_validate({**shipped, "lambda_init": 10, "lambda_max": 1})
    with pytest.raises(ValueError, match="cost_limit"):
        make_multiplier(LagrangianParams.model_validate(shipped), 0.0)


def test_over_limit_tolerates_float_rounding_only():
    limit = 4.0
    assert not over_limit(limit, limit) and not over_limit(limit * (1 + 1e-12), limit)
    assert over_limit(limit * (1 + 1e-6), limit)
    assert over_limit([3.0, 4.0, 4.1], limit).tolist() == [False, False, True]


def test_penalty_wrapper_subtracts_lambda_times_cost_and_sums_episode_cost():
    from stable_baselines3.common.vec_env import VecMonitor

    from agents.lagrangian import CostPenaltyWrapper
    from envs.sb3 import SB3VecEnv

    venv = SB3VecEnv(3, "global", {"budget.mode": "soft"})
    wrapped = CostPenaltyWrapper(VecMonitor(venv), multiplier=2.5)
    raw = VecMonitor(SB3VecEnv(3, "global", {"budget.mode": "soft"}))
    wrapped.seed(7), raw.seed(7)
    wrapped.reset(), raw.reset()
    total = np.zeros(3)
    action = np.full((3, venv.action_space.shape[0]), 0.2, np.float32)
    for _ in range(venv.params.horizon):
        wrapped.step_async(action), raw.step_async(action)
        _, r_pen, done, infos = wrapped.step_wait()
        _, r_raw, _, _ = raw.step_wait()
        cost = np.array([i["cost"] for i in infos])
        total += cost
        np.testing.assert_allclose(r_pen, r_raw - 2.5 * cost, rtol=1e-5, atol=1e-5)
    assert done.all()
    np.testing.assert_allclose(wrapped.pop_finished(), total)
    assert wrapped.pop_finished() == []


class _Finished:
    """A stand-in for the penalty wrapper: the rollout's finished training episodes' costs."""

    def __init__(self, costs):
        self.costs, self.multiplier = list(costs), 0.0

    def pop_finished(self):
        costs, self.costs = self.costs, []
        return costs


def _rollout_end(signal: str, quantile, sampled, probed):
    """One rollout end of LagrangianCallback: what it fed the multiplier and what it logged."""
    from types import SimpleNamespace

    from stable_baselines3.common.logger import Logger

    from agents.lagrangian import LagrangianCallback

    params = _params(cost_signal=signal, cost_quantile=quantile)
    calls = []

    def probe(model, vecnormalize):
        calls.append(vecnormalize)
        return np.array(probed)

    model = SimpleNamespace(logger=Logger(None, []), lagrangian=None, get_vec_normalize_env=lambda: "stats")
    callback = LagrangianCallback(make_multiplier(params, 4.0), probe=probe if signal == "mean_action" else None, quantile=quantile)
    callback.init_callback(model)
    callback.wrapper = _Finished(sampled)
    callback._on_rollout_end()
    return callback, model.logger.name_to_value, calls, params


@pytest.mark.parametrize("quantile", [None, 0.95])
@pytest.mark.parametrize("signal", ["sampled", "mean_action"])
def test_the_multiplier_sees_the_chosen_episodes_mean_or_quantile(signal: str, quantile):
    sampled, probed = [5.0, 5.5, 6.0, 4.5], [3.0, 3.5, 4.2, 3.9, 3.1]
    callback, logged, calls, params = _rollout_end(signal, quantile, sampled, probed)
    seen = np.array(probed if signal == "mean_action" else sampled)
    expected = seen.mean() if quantile is None else np.quantile(seen, quantile)
    assert logged["constraint/signal_cost"] == pytest.approx(expected, rel=1e-12)
    reference = make_multiplier(params, 4.0)
    reference.update(float(expected))
    assert callback.multiplier.state_dict() == reference.state_dict()  # exactly one update, with that cost
    assert callback.wrapper.multiplier == reference.multiplier
    # the training episodes' own figures keep their meaning whatever the signal
    assert logged["constraint/episode_cost"] == pytest.approx(np.mean(sampled))
    assert logged["constraint/violation_rate"] == pytest.approx(1.0 if min(sampled) > 4 else 0.75)
    assert calls == (["stats"] if signal == "mean_action" else [])  # the probe normalises with the training statistics


def test_a_rollout_with_no_finished_episode_still_updates_from_the_probe_and_sampled_does_not():
    callback, logged, _, _ = _rollout_end("mean_action", None, [], [3.0, 5.0])
    assert callback.multiplier.state_dict()["updates"] == 1 and logged["constraint/signal_cost"] == 4.0
    assert "constraint/episode_cost" not in logged
    callback, logged, _, _ = _rollout_end("sampled", None, [], [3.0, 5.0])
    assert callback.multiplier.state_dict()["updates"] == 0 and "constraint/signal_cost" not in logged


def test_the_probe_plays_the_mean_action_on_the_training_scenario():
    """A policy whose mean action is one plan for every observation: the probe's episode costs
    are that plan's, played in the soft-budget training scenario on the probe's seeds."""
    import torch
    from stable_baselines3 import PPO
    from stable_baselines3.common.vec_env import VecNormalize

    from agents.lagrangian import MeanActionCost
    from agents.policies import ConstantPolicy, NormalizedPolicy
    from agents.rollout import episode_totals, rollout_policy
    from envs import market
    from envs.scenario import load_scenario
    from envs.sb3 import SB3VecEnv

    scenario = load_scenario("global", {"budget.mode": "soft"})
    vecnormalize = VecNormalize(SB3VecEnv(2, scenario))
    model = PPO("MlpPolicy", vecnormalize, policy_kwargs={"log_std_init": 1.0}, seed=0, device="cpu")
    plan = np.random.default_rng(4).uniform(0.0, 0.6, (len(scenario.regions), market.N_LEVERS))
    with torch.no_grad():
        for layer in model.policy.mlp_extractor.policy_net:
            if hasattr(layer, "weight"):
                layer.weight.zero_()
        model.policy.action_net.weight.zero_()
        model.policy.action_net.bias.copy_(torch.as_tensor(2.0 * plan.reshape(-1) - 1.0))
    seeds = [11, 12, 13]
    costs = MeanActionCost(scenario, seeds)(model, vecnormalize)
    expected = episode_totals(rollout_policy(ConstantPolicy(plan), scenario, seeds).cost)
    np.testing.assert_allclose(costs, expected, rtol=1e-6)
    assert costs.shape == (3,) and costs.min() > 0.0

    # a policy that reads its observations: the probe sees them through the training statistics
    torch.manual_seed(1)
    with torch.no_grad():
        for layer in [*model.policy.mlp_extractor.policy_net, model.policy.action_net]:
            if hasattr(layer, "weight"):
                layer.weight.normal_(0.0, 1.0)
    vecnormalize.obs_rms.mean[:] = np.linspace(-1.0, 1.0, vecnormalize.obs_rms.mean.size)
    vecnormalize.obs_rms.var[:] = 4.0
    costs = MeanActionCost(scenario, seeds)(model, vecnormalize)
    normalised = episode_totals(rollout_policy(NormalizedPolicy(model, vecnormalize), scenario, seeds).cost)
    raw = episode_totals(rollout_policy(NormalizedPolicy(model, None), scenario, seeds).cost)
    np.testing.assert_array_equal(costs, normalised)
    assert np.abs(raw - normalised).max() > 1e-3  # the statistics matter here: a probe that skipped them would fail


def test_the_shipped_config_builds_the_mean_action_probe_on_its_own_seeds(tmp_path: Path):
    from agents.lagrangian import MeanActionCost
    from agents.seeds import COST_PROBE_SEED_BASE
    from envs.scenario import load_scenario

    cfg = load_config(CONFIG)
    scenario = load_scenario(cfg.scenario, cfg.overrides)
    [callback] = ALGORITHM.callbacks(cfg, scenario, tmp_path)
    assert isinstance(callback.probe, MeanActionCost) and callback.quantile == cfg.algo_params["cost_quantile"] == 0.95
    assert callback.probe.seeds == [COST_PROBE_SEED_BASE + k for k in range(cfg.algo_params["probe_episodes"])]
    assert callback.probe.scenario is scenario and callback.probe.ensemble is None
    sampled = cfg.model_copy(update={"algo_params": {**cfg.algo_params, "cost_signal": "sampled", "cost_quantile": None}})
    [callback] = ALGORITHM.callbacks(sampled, scenario, tmp_path)
    assert callback.probe is None and callback.quantile is None


def test_a_run_made_before_the_cost_signal_keys_resumes_with_the_rule_it_trained_with(tmp_path: Path):
    import yaml

    from agents.runs import read_run_config

    doc = load_config(CONFIG).model_dump(mode="json")
    for key in ("cost_signal", "cost_quantile", "probe_episodes"):
        del doc["algo_params"][key]
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(doc))
    old = ALGORITHM.params(read_run_config(tmp_path))
    assert (old.cost_signal, old.cost_quantile) == ("sampled", None)  # the mean of the training episodes, as before
    assert ALGORITHM.params(load_config(CONFIG)).cost_signal == "mean_action"  # what new runs get
    # a new config has no such fallback: every key is set in the YAML
    bad = tmp_path / "new.yaml"
    bad.write_text(yaml.safe_dump(doc))
    with pytest.raises(ConfigError, match="cost_signal"):
        load_config(bad)


@pytest.mark.parametrize("mode", ["soft", "hard"])
def test_soft_mode_never_projects_hard_mode_keeps_the_cap_and_cost_is_the_sum_of_levers(mode: str):
    env = gym.make("flywheel/SocialCommerce-v1", scenario="global", overrides={"budget.mode": mode})
    env.reset(seed=3)
    over = False
    for _ in range(env.unwrapped.scenario.horizon):
        _, _, terminated, _, info = env.step(np.ones(env.action_space.shape, np.float32))
        assert info["cost"] == pytest.approx(sum(info["cost_by_lever"].values()), rel=1e-9, abs=1e-12)
        if mode == "hard":
            assert not over_limit(info["cost"], info["cost_limit"])
        over |= bool(over_limit(info["cost"], info["cost_limit"]))
        if terminated:
            break
    if mode == "soft":
        assert over, "full intensity should exceed the quarter's cap in soft mode (nothing projected)"
        assert info["cost_total"] > env.unwrapped.scenario.budget.total and info["cost_limit_exceeded"]
    else:
        assert not over_limit(info["cost_total"], env.unwrapped.scenario.budget.total)


@pytest.mark.slow
def test_tiny_constrained_run_logs_constraint_tags_and_saves_the_multiplier(tmp_path: Path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    run = tmp_path / "run"
    proc = run_main(TRAIN, ["--config", str(CONFIG), "--timesteps", "1024", "--seed", "1", "--run-dir", str(run), *TINY])  # in this process
    assert proc.returncode == 0, proc.stderr[-2000:]
    tags: set[str] = set()
    lam: list[float] = []
    for path in run.rglob("events.out.tfevents*"):
        acc = EventAccumulator(str(path))
        acc.Reload()
        tags |= set(acc.Tags()["scalars"])
        if "constraint/lambda" in acc.Tags()["scalars"]:
            lam += [e.value for e in acc.Scalars("constraint/lambda")]
    assert set(CONSTRAINT_TAGS) <= tags, sorted(tags)
    assert lam and min(lam) >= 0.0
    assert (run / "lagrangian.json").is_file()
    from agents.runs import load_run

    loaded = load_run(run)
    assert loaded.model.lagrangian["updates"] >= 1  # the multiplier is saved inside the model (checkpoints too)
    assert loaded.algo == "ppo_lagrangian"


def test_hard_mode_is_refused_with_one_line():
    cfg = load_config(CONFIG)
    ALGORITHM.check_config(cfg)  # soft: fine
    hard = cfg.model_copy(update={"overrides": {**cfg.overrides, "budget.mode": "hard"}})
    with pytest.raises(ConfigError, match="needs a soft budget"):
        ALGORITHM.check_config(hard)
    # validate_config runs the algorithm's check: the config is refused as it is loaded
    with pytest.raises(ConfigError, match=r"ppo_lagrangian.yaml with --set: algo 'ppo_lagrangian' needs a soft budget"):
        load_config(CONFIG, ["overrides.budget.mode=hard"])
    with pytest.raises(ValueError):
        load_config(CONFIG, ["algo_params.update=newton"])


BAD = {
    "unknown algorithm": (["--set", "algo=trpo"], "allowed: ppo, ppo_lagrangian"),
    "zero budget": (["--set", "overrides.budget.total=0"], "budget.total"),
    "negative budget": (["--set", "overrides.budget.total=-2"], "budget.total"),
    "negative cost limit": (["--set", "algo_params.cost_limit=-1"], "cost_limit"),
    "unknown algo_params key": (["--set", "algo_params.kq=1"], "kq"),
    "unknown cost signal": (["--set", "algo_params.cost_signal=bogus"], "cost_signal"),
    "quantile of 1": (["--set", "algo_params.cost_quantile=1"], "cost_quantile"),
    "no probe episode": (["--set", "algo_params.probe_episodes=0"], "probe_episodes"),
}


def test_bad_input_is_one_line_exit_2(tmp_path: Path):
    assert_bad_inputs_exit_2([sys.executable, str(TRAIN), "--config", str(CONFIG)], BAD, "--run-dir", tmp_path)


def test_hard_mode_on_the_command_line_is_one_line_exit_2_and_creates_no_run_folder(tmp_path: Path):
    run = tmp_path / "run"
    # through main in this process: test_bad_input_is_one_line_exit_2 runs this config's refusals in a real one
    proc = run_main(TRAIN, ["--config", str(CONFIG), "--set", "overrides.budget.mode=hard", "--run-dir", str(run)])
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 2, proc.stderr[-1000:]
    assert len(lines) == 1 and lines[0].startswith("error:") and "needs a soft budget" in lines[0], proc.stderr
    assert not run.exists() and list(tmp_path.iterdir()) == []


def test_reference_policies_scaled_to_the_limit_respect_it_in_soft_mode():
    from agents.constraint import scaled_to_limit
    from agents.policies import make_policy
    from agents.rollout import episode_totals, rollout_policy
    from envs.scenario import load_scenario

    soft = load_scenario("global", {"budget.mode": "soft"})
    fair = scaled_to_limit(soft)
    assert fair.budget.mode == "hard" and fair.budget.total == soft.budget.total and soft.budget.mode == "soft"
    raw = episode_totals(rollout_policy(make_policy("uniform", soft), soft, [5, 6]).cost)
    scaled = episode_totals(rollout_policy(make_policy("uniform", soft), fair, [5, 6]).cost)
    assert over_limit(raw, soft.budget.total).all() and not over_limit(scaled, soft.budget.total).any()
