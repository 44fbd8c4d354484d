"""Evaluation: planners (best_static, oracle), common random numbers, eval.json, the CLI.

Search budgets are tiny (a few CMA-ES generations, a few episodes): these tests check the
guarantees that hold at any budget (the oracle never below its warm start, best_static never
below the playbook it starts from, the hard budget, reproducibility), not the optimisers'
quality. No model numbers are hard-coded: the scenario YAML is still being tuned.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml

from agents.evaluation import evaluate
from agents.planners import best_static, best_static_policy, oracle, oracle_policy
from agents.planners.model import quantise, start_states
from agents.planners.search import from_unit, to_unit
from agents.policies import OpenLoopPlanPolicy, make_policy
from agents.report import write_report
from agents.rollout import bootstrap_ci
from agents.seeds import training_seeds
from envs import market
from envs.scenario import load_scenario

TINY_ORACLE = dict(schedule_seeds=training_seeds(2), schedule_iterations=(3, 3), scale_iterations=3, refine_iterations=4, search_episodes=1)
KEYS = ["gmv_mean", "gmv_ci95", "run_rate_final_mean", "target_reached_rate", "cost_mean", "violation_rate", "ratio_to_oracle",
        "objective_mean", "revenue_mean", "contribution_mean", "net_burn_mean"]


@pytest.fixture(scope="module")
def deterministic():
    return load_scenario("global", {"deterministic": True})


@pytest.fixture(scope="module")
def stochastic():
    return load_scenario("global")


def _reference_policies(scenario, seeds):
    static = best_static_policy(scenario, training_seeds(4), iterations=6)
    return {
        "uniform": make_policy("uniform", scenario),
        "best_static": static,
        "oracle": oracle_policy(scenario, seeds, static.intensity, **TINY_ORACLE),
    }


def test_oracle_beats_best_static_beats_uniform_on_deterministic(deterministic):
    seeds = [3, 4]
    ev = evaluate(_reference_policies(deterministic, seeds), deterministic, seed=3, episodes=2)
    # the planners maximise the reward (objective plus terminal value), so they are ranked on it
    value = {name: tr.reward.sum(1) for name, tr in ev.trajectories.items()}
    assert np.all(value["oracle"] >= value["best_static"])
    assert np.all(value["best_static"] >= value["uniform"])
    # a deterministic future is planned once, and every episode gets the same plan
    oracle_tr = ev.trajectories["oracle"]
    np.testing.assert_array_equal(oracle_tr.gmv[0], oracle_tr.gmv[1])
    # hard budget: never above the total nor the quarter's cap
    params = deterministic.to_params()
    assert np.all(oracle_tr.cost.sum(1) <= params.budget_total * (1 + 1e-9))
    assert np.all(oracle_tr.cost <= oracle_tr.cost_limit * (1 + 1e-9) + 1e-12)
    assert ev.metrics["oracle"]["violation_rate"] == 0.0


def test_oracle_plans_score_exactly_what_the_env_plays(stochastic):
    """The planner's value of a plan (its cumulative reward) is the evaluation's (common random
    numbers, the same float32 action encoding), and each plan is at least its warm start on its
    own episode."""
    seeds = [11, 12, 13]
    warm = make_policy("uniform", stochastic).intensity
    result = oracle(stochastic, seeds, warm, **TINY_ORACLE)
    assert result.plans.shape == (3, stochastic.horizon, len(stochastic.regions), market.N_LEVERS)
    assert np.all(result.value >= result.warm_value)
    assert np.all((result.plans >= 0) & (result.plans <= 1))
    policy = OpenLoopPlanPolicy(result.plans, len(stochastic.regions))
    ev = evaluate({"oracle": policy, "uniform": make_policy("uniform", stochastic)}, stochastic, seed=11, episodes=3)
    np.testing.assert_allclose(ev.trajectories["oracle"].reward.sum(1), result.value, rtol=1e-12)
    np.testing.assert_allclose(ev.trajectories["uniform"].reward.sum(1), result.warm_value, rtol=1e-12)
    np.testing.assert_allclose(ev.metrics["oracle"]["objective_mean"], result.value.mean(), rtol=1e-12)
    assert ev.metrics["oracle"]["ratio_to_oracle"] == pytest.approx(1.0)


def test_oracle_is_never_below_a_policy_it_starts_from(stochastic):
    """A closed-loop policy's own plays of the episodes, given as extra starts, are where the
    oracle's search starts when they are better: its plan is then at least that policy's
    reward on every episode (without them a weak warm start leaves the oracle below it)."""
    from agents.evaluation import applied_plans

    seeds = [21, 22, 23]
    strong = make_policy("uniform", stochastic)
    replay = applied_plans({"uniform": strong}, stochastic, seeds)["uniform"]
    played = evaluate({"uniform": strong}, stochastic, seed=21, episodes=3).trajectories["uniform"].reward.sum(1)
    weak = np.zeros((len(stochastic.regions), market.N_LEVERS))  # no cash levers, commission at 0
    tiny = dict(schedule_seeds=[], scale_iterations=0, knot_iterations=0, refine_iterations=0, search_episodes=1)
    without = oracle(stochastic, seeds, weak, **tiny)
    with_start = oracle(stochastic, seeds, weak, extra_starts=[replay], **tiny)
    assert np.all(without.value < played)
    # the replayed plan scores what the policy played, up to the hard budget scale solve's 1e-10 tolerance per quarter
    np.testing.assert_allclose(with_start.value, played, rtol=1e-8)
    with pytest.raises(ValueError, match="one plan per episode"):
        oracle(stochastic, seeds, weak, extra_starts=[replay[:2]], **tiny)


def test_oracle_result_does_not_depend_on_workers(stochastic):
    warm = make_policy("uniform", stochastic).intensity
    tiny = dict(schedule_seeds=[], scale_iterations=2, knot_iterations=2, refine_iterations=2, search_episodes=1)
    one = oracle(stochastic, [1, 2, 3], warm, workers=1, **tiny)
    two = oracle(stochastic, [1, 2, 3], warm, workers=2, **tiny)
    np.testing.assert_array_equal(one.plans, two.plans)
    np.testing.assert_array_equal(one.value, two.value)


def test_best_static_is_reproducible_and_never_below_its_playbook_start(stochastic):
    a = best_static(stochastic, training_seeds(3), iterations=5)
    b = best_static(stochastic, training_seeds(3), iterations=5)
    np.testing.assert_array_equal(a.intensity, b.intensity)
    assert a.intensity.shape == (len(stochastic.regions), market.N_LEVERS)
    assert np.all((a.intensity >= 0) & (a.intensity <= 1))
    assert a.history == sorted(a.history)  # best-so-far never falls
    params = stochastic.to_params()
    states = start_states(params, a.seeds)
    start = quantise(make_policy(a.start, stochastic).intensity)
    start_value = market.rollout(params, states, np.broadcast_to(start, (states.n, *start.shape)))["reward"].sum(1).mean()
    assert a.value_mean >= start_value * (1 - 1e-12)  # the scorer weights distinct futures: the same mean, to rounding


def test_soft_mode_oracle_respects_the_limit():
    soft = load_scenario("global", {"budget.mode": "soft"})
    result = oracle(soft, [5, 6], np.ones((len(soft.regions), market.N_LEVERS)), schedule_seeds=[], scale_iterations=2, refine_iterations=2)
    ev = evaluate({"oracle": OpenLoopPlanPolicy(result.plans, len(soft.regions))}, soft, seed=5, episodes=2)
    assert np.all(ev.trajectories["oracle"].cost.sum(1) <= soft.budget.total * (1 + 1e-6))


def test_soft_mode_overspending_policy_violates_and_scaled_reference_does_not():
    """In soft mode nothing is projected: a full-intensity plan on the soft scenario overspends in
    every episode; the same plan on the reference scenario (scaled to the limit) never does."""
    from agents.constraint import scaled_to_limit
    from agents.policies import ConstantPolicy

    soft = load_scenario("global", {"budget.mode": "soft"})
    fair = scaled_to_limit(soft)
    assert fair.budget.mode == "hard" and scaled_to_limit(fair) is fair
    full = np.ones((len(soft.regions), market.N_LEVERS))
    ev = evaluate({"full": ConstantPolicy(full), "full_scaled": ConstantPolicy(full), "uniform": make_policy("uniform", fair)},
                  soft, seed=5, episodes=2, scenarios={"full_scaled": fair, "uniform": fair})
    m = ev.metrics
    assert m["full"]["violation_rate"] == 1.0 and m["full"]["cost_mean"] > soft.budget.total and m["full"]["budget_mode"] == "soft"
    for name in ("full_scaled", "uniform"):
        assert m[name]["violation_rate"] == 0.0 and m[name]["budget_mode"] == "hard", name
        assert m[name]["cost_mean"] <= soft.budget.total + 1e-9, name


@pytest.mark.slow
def test_cli_soft_mode_reference_policies_are_scaled_to_the_limit(repo_root, tmp_path):
    out = tmp_path / "eval"
    proc = _evaluate_here(repo_root, "--scenario", "global", "--set", "budget.mode=soft", "--episodes", "2", "--out", str(out), *TINY_CLI)
    assert proc.returncode == 0, proc.stderr[-2000:]
    doc = json.loads((out / "eval.json").read_text())
    assert doc["budget"]["mode"] == "soft"
    assert {"zero", "uniform", "merchant_package", "livestream_first", "commerce_first", "best_static", "oracle"} == doc["policies"].keys()
    for name, f in doc["policies"].items():
        assert f["violation_rate"] == 0.0 and f["cost_mean"] <= doc["budget"]["total"] + 1e-9, (name, f)
        assert f["budget_mode"] == "hard", name
    assert "scaled_to_limit" in (out / "report.md").read_text()


def test_box_transform_maps_onto_unit_interval():
    y = np.linspace(0.0, 1.0, 101)
    np.testing.assert_allclose(to_unit(from_unit(y)), y, atol=1e-12)
    u = to_unit(np.linspace(-5.0, 5.0, 2001))
    assert u.min() >= 0.0 and u.max() <= 1.0


def test_quantise_is_the_env_encoding_and_idempotent():
    u = np.random.default_rng(0).random((4, 3, 7))
    q = quantise(u)
    np.testing.assert_array_equal(quantise(q), q)
    np.testing.assert_array_equal(market.action_to_intensity(market.intensity_to_action(q), 3), q)


def test_open_loop_policy_reads_the_quarter_from_the_observation(stochastic):
    params = stochastic.to_params()
    T, R = params.horizon, params.n_regions
    plans = np.zeros((2, T, R, market.N_LEVERS))
    for t in range(T):
        plans[:, t] = t / (T - 1)
    policy = OpenLoopPlanPolicy(plans, R)
    state = start_states(params, [0, 1])
    for t in range(T):
        action, _ = policy.predict(market.observe(params, state))
        np.testing.assert_allclose(market.action_to_intensity(action, R), plans[:, t], atol=1e-6)
        state, _ = market.step(params, state, plans[:, t])
    with pytest.raises(ValueError):
        policy.predict(np.zeros((3, params.obs_dim), dtype=np.float32))


def test_bootstrap_ci_contains_the_mean_even_when_degenerate():
    assert bootstrap_ci(np.array([3.0])) == (3.0, 3.0)
    assert bootstrap_ci(np.full(5, 2.5)) == (2.5, 2.5)
    x = np.random.default_rng(1).lognormal(size=30)
    lo, hi = bootstrap_ci(x)
    assert lo <= x.mean() <= hi and lo < hi
    assert bootstrap_ci(x) == (lo, hi)  # fixed seed


@pytest.mark.slow
def test_eval_json_schema_and_byte_identical_reruns(tmp_path, stochastic):
    seeds = [20, 21, 22]
    docs = []
    for k in range(2):
        ev = evaluate(_reference_policies(stochastic, seeds), stochastic, seed=20, episodes=3)
        write_report(ev, tmp_path / f"e{k}")
        docs.append((tmp_path / f"e{k}" / "eval.json").read_bytes())
    assert docs[0] == docs[1]
    doc = json.loads(docs[0])
    assert {"scenario", "episodes", "seed", "policies"} <= doc.keys()
    assert doc["scenario"] == "global" and doc["episodes"] == 3 and doc["seed"] == 20
    for name, figures in doc["policies"].items():
        for key in KEYS:
            assert key in figures, f"{name} lacks {key}"
        lo, hi = figures["gmv_ci95"]
        assert lo <= figures["gmv_mean"] <= hi
        assert figures["ratio_to_oracle"] == pytest.approx(figures["objective_mean"] / doc["policies"]["oracle"]["objective_mean"], rel=1e-5)
        assert figures["net_burn_mean"] == pytest.approx(-figures["contribution_mean"], abs=1e-5)
    assert doc["policies"]["oracle"]["ratio_to_oracle"] == 1.0
    # each policy against best_static, paired by episode: the mean of the per-episode differences
    for name, figures in doc["policies"].items():
        diff = ev.metrics[name]["objective_minus_best_static"]
        assert diff == pytest.approx(np.mean(ev.trajectories[name].reward.sum(1) - ev.trajectories["best_static"].reward.sum(1)), rel=1e-9, abs=1e-9)
        lo, hi = figures["objective_minus_best_static_ci95"]
        assert lo <= figures["objective_minus_best_static"] <= hi
    assert doc["policies"]["best_static"]["objective_minus_best_static_ci95"] == [0.0, 0.0]
    # the exit run rate: the env's exit quarter after each episode (the business left behind)
    for name, figures in doc["policies"].items():
        exit_rate = ev.trajectories[name].exit_run_rate
        assert exit_rate.shape == (3,) and (exit_rate > 0).all()
        assert figures["run_rate_exit_mean"] == pytest.approx(exit_rate.mean(), rel=1e-6)
        assert figures["target_reached_exit_rate"] == pytest.approx((exit_rate >= stochastic.target_run_rate).mean())
    out = tmp_path / "e0"
    for png in ("run_rate.png", "lever_mix.png", "cost.png"):
        assert (out / png).stat().st_size > 1000
    traj = json.loads((out / "trajectories.json").read_text())
    assert len(traj["policies"]["oracle"]["run_rate"]) == stochastic.horizon
    assert "oracle" in (out / "report.md").read_text()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temporary folders left


# --------------------------------------------------------------------------- the CLI

TINY_CLI = ["--static-iterations", "3", "--static-seeds", "2", "--schedule-iterations", "2", "2", "--oracle-scale-iterations", "2", "--oracle-iterations", "1"]


def _evaluate(repo_root: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "scripts/evaluate.py", *args], cwd=repo_root, capture_output=True, text=True, timeout=300,
    )


def _evaluate_here(repo_root: Path, *args: str) -> subprocess.CompletedProcess:
    """The same through the script's main in this process (no interpreter start-up); the rejection
    tests below keep real processes."""
    from tests.conftest import run_main

    return run_main(repo_root / "scripts" / "evaluate.py", list(args), cwd=repo_root)


def _assert_one_line_error(proc: subprocess.CompletedProcess) -> None:
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), proc.stderr


@pytest.fixture
def tiny_run(trained_run) -> Path:
    """The session's shared trained run."""
    return trained_run


@pytest.mark.slow
def test_cli_evaluates_a_trained_run(tiny_run, repo_root, tmp_path):
    out = tmp_path / "eval"
    proc = _evaluate_here(repo_root, str(tiny_run), "--episodes", "3", "--out", str(out), *TINY_CLI)
    assert proc.returncode == 0, proc.stderr[-2000:]
    doc = json.loads((out / "eval.json").read_text())
    algo = yaml.safe_load((tiny_run / "config.yaml").read_text())["algo"]
    assert list(doc["policies"])[0] == algo
    assert {"zero", "uniform", "merchant_package", "livestream_first", "commerce_first", "best_static", "oracle"} <= doc["policies"].keys()
    assert doc["learned_policy"] == algo
    report = (out / "report.md").read_text()
    assert f"What `{algo}` does differently" in report and "| policy |" in report
    for png in ("run_rate.png", "lever_mix.png", "cost.png"):
        assert (out / png).stat().st_size > 1000


def test_cli_rejects_a_folder_that_is_not_a_run(repo_root, tmp_path):
    not_a_run = tmp_path / "not_a_run"
    not_a_run.mkdir()
    proc = _evaluate_here(repo_root, str(not_a_run), "--episodes", "2", *TINY_CLI)
    _assert_one_line_error(proc)
    assert not (not_a_run / "eval").exists()


@pytest.mark.slow
def test_cli_rejects_a_model_whose_spaces_do_not_match(tiny_run, repo_root, tmp_path):
    broken = tmp_path / "broken"
    shutil.copytree(tiny_run, broken)
    snapshot = yaml.safe_load((broken / "scenario.yaml").read_text())
    snapshot["regions"].pop(next(iter(snapshot["regions"])))  # one region fewer: smaller spaces
    (broken / "scenario.yaml").write_text(yaml.safe_dump(snapshot, sort_keys=False))
    proc = _evaluate(repo_root, str(broken), "--episodes", "2", *TINY_CLI)
    _assert_one_line_error(proc)
    assert not (broken / "eval").exists()


def test_cli_rejects_unknown_policies_and_writes_nothing(repo_root, tmp_path):
    out = tmp_path / "eval"
    proc = _evaluate(repo_root, "--scenario", "us", "--policies", "uniform", "no_such_policy", "--out", str(out), *TINY_CLI)
    _assert_one_line_error(proc)
    assert "no_such_policy" in proc.stderr
    assert not out.exists()


def test_objective_figures_are_the_reward_and_the_money_lines():
    """``objective_mean`` is the cumulative reward (objective plus terminal value): with
    ``kind: gmv`` and no terminal value it is ``gmv_mean``; contribution is revenue - cash spend."""
    plain = load_scenario("global", {"objective.terminal_value": 0, "deterministic": True})
    ev = evaluate({name: make_policy(name, plain) for name in ("zero", "merchant_package")}, plain, seed=5, episodes=2)
    for name, figures in ev.metrics.items():
        assert figures["objective_mean"] == pytest.approx(figures["gmv_mean"], rel=1e-12)
        tr = ev.trajectories[name]
        assert figures["contribution_mean"] == pytest.approx((tr.revenue - tr.cash_spend).sum(1).mean(), rel=1e-12)
        assert figures["net_burn_mean"] == pytest.approx(-figures["contribution_mean"], rel=1e-12)
    default = load_scenario("global", {"deterministic": True})
    ev = evaluate({"zero": make_policy("zero", default)}, default, seed=5, episodes=1)
    tr = ev.trajectories["zero"]
    assert ev.metrics["zero"]["objective_mean"] > ev.metrics["zero"]["gmv_mean"]  # the business left at the horizon counts
    assert ev.metrics["zero"]["objective_mean"] == pytest.approx(tr.reward.sum(), rel=1e-12)
    # the zero playbook is the null action: no cash, no commission discount
    assert tr.cost.sum() == pytest.approx(0.0, abs=1e-12) and tr.cash_spend.sum() == pytest.approx(0.0, abs=1e-12)
