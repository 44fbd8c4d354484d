"""Back-test and fit: a history the model generated itself is replayed with zero error, and its
parameters are recovered by the fit."""

from __future__ import annotations

import json
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
import yaml

from agents.config import ConfigError, load_config
from agents.evaluation import evaluate
from agents.policies import make_policy
from agents.report import write_report
from agents import io
from agents.calibration.backtest import backtest, backtest_json, path_csv
from agents.calibration.fit import Fit, fit, log_posterior, log_residuals, scenario_values
from agents.calibration.outputs import default_ensemble_path, kept_settings, plan_outputs, plan_yaml
from agents.calibration.report import scenario_text
from agents.calibration.replay import replay, simulated
from envs import ENV_ID, SocialCommerceVectorEnv
from envs.ensemble import ENSEMBLE_DIR, load_ensemble
from envs.history import load_history
from envs.scenario import SCENARIO_DIR, load_scenario

ROOT = Path(__file__).resolve().parent.parent
SHIPPED = ROOT / "configs" / "history" / "tiktok_shop.yaml"
TRUTH = {"regions.sea.buyers": 52.0, "regions.us.sellers_half": 320.0, "sellers.grant_rate": 0.22}
FREE = {"regions.sea.buyers": [30, 90], "regions.us.sellers_half": [100, 500], "sellers.grant_rate": [0.05, 0.4]}


def synthetic_history(tmp_path: Path, truth: dict, free: dict | None = None) -> Path:
    """The shipped plan and events, with observations the model makes at ``truth``: GMV by region
    and year, and sellers at each year's end."""
    doc = yaml.safe_load(SHIPPED.read_text())
    doc["scenario"] = str(ROOT / "configs" / "scenarios" / "global_prior.yaml")
    doc["observations"] = [{"region": r, "period": y, "metric": m, "value": 1.0, "source": "the model"}
                           for r in ("sea", "us", "uk") for y in ("2023", "2024", "2025") for m in ("gmv", "sellers")]
    doc["holdout"] = [{"region": "all", "period": "2025H1", "metric": "gmv", "value": 1.0, "source": "the model"},
                      {"region": "all", "period": "2024", "metric": "revenue", "value": 1.0, "source": "the model"}]
    doc["free"] = free or {}
    path = tmp_path / "synthetic.yaml"
    path.write_text(yaml.safe_dump(doc))
    h = load_history(path)
    rep = replay(h, [truth])
    for rows, quarters in ((doc["observations"], h.quarters), (doc["holdout"], h.holdout_quarters)):
        values = simulated(rep, [h.observations[0].__class__(**r) for r in rows], quarters)[0]
        for row, v in zip(rows, values):
            row["value"] = float(v)
    path.write_text(yaml.safe_dump(doc))
    return path


def test_backtest_of_the_models_own_history_has_zero_error(tmp_path):
    h = load_history(synthetic_history(tmp_path, {}))
    bt = backtest(h, seeds=4)
    doc = backtest_json(bt)
    assert doc["mape_in_sample"] < 1e-9 and doc["mape_holdout"] < 1e-9
    for row in doc["series"] + doc["holdout"]:
        assert abs(row["error"]) < 1e-9
        assert row["simulated_p10"] <= row["simulated_p90"]
    lines = path_csv(bt).splitlines()
    assert lines[0] == "quarter,region,gmv,orders,sellers,buyers,revenue,cost"
    assert len(lines) == 1 + 12 * 4 and lines[1].startswith("2023Q1,sea,")
    # the CSV's annual GMV sums are the back-test's simulated values
    sea_2023 = sum(float(line.split(",")[2]) for line in lines[1:] if ",sea," in line and line.startswith("2023"))
    assert sea_2023 == pytest.approx(next(r["simulated"] for r in doc["series"]
                                          if r["region"] == "sea" and r["period"] == "2023" and r["metric"] == "gmv"), rel=1e-5)


def test_a_batch_of_candidates_equals_each_candidate_alone(tmp_path):
    h = load_history(synthetic_history(tmp_path, {}, FREE))
    x = np.array([[52.0, 320.0, 0.22], [60.0, 250.0, 0.15], [35.0, 450.0, 0.3]])
    together = log_residuals(h, x)
    for k in range(len(x)):
        np.testing.assert_allclose(together[k], log_residuals(h, x[k:k + 1])[0], rtol=0, atol=1e-12)
    inside = log_posterior(h, np.vstack([x, [[10.0, 320.0, 0.22]]]), np.array(list(FREE.values()), dtype=float))
    assert np.isfinite(inside[:3]).all() and inside[3] == -np.inf


def test_parameter_recovery_within_15_percent(tmp_path):
    h = load_history(synthetic_history(tmp_path, TRUTH, FREE))
    result = fit(h, starts=1)
    for path, value in result.overrides().items():
        assert value == pytest.approx(TRUTH[path], rel=0.15), (path, value, TRUTH[path])
    assert result.cost < 1e-6


def test_the_shipped_free_parameters_are_recovered_within_15_percent(tmp_path):
    """Every parameter the shipped history fits, at the geometric middle of its bounds, is found
    again from the observations the model makes there (the shipped observation set and plan)."""
    free = yaml.safe_load(SHIPPED.read_text())["free"]
    truth = {path: float(np.sqrt(lo * hi)) for path, (lo, hi) in free.items()}
    result = fit(load_history(synthetic_history(tmp_path, truth, free)), starts=1)
    assert set(result.overrides()) == set(free)
    for path, value in result.overrides().items():
        assert value == pytest.approx(truth[path], rel=0.15), (path, value, truth[path])


def test_calibrate_set_refuses_a_fitted_parameter_and_writes_nothing(tmp_path, run_script):
    hist = synthetic_history(tmp_path, TRUTH, FREE)
    out = tmp_path / "fitted.yaml"
    code, _, err = run_script("calibrate", ["--history", hist, "--out", out, "--set", "regions.us.sellers_half=300"])
    assert code == 2 and err.startswith("error: --set regions.us.sellers_half") and err.count("\n") == 1, err
    assert not out.exists()
    # flags that would do nothing or fail only after the fit: refused first
    for argv, expect in ((["--ensemble-out", tmp_path / "e.yaml"], "--ensemble-out goes only with --posterior"),
                         (["--posterior", "8", "--walkers", "1"], "--walkers 1: the sampler needs at least")):
        code, _, err = run_script("calibrate", ["--history", hist, "--out", out, *argv])
        assert code == 2 and expect in err and err.count("\n") == 1, err
    assert not out.exists() and not (tmp_path / "e.yaml").exists()


def test_calibrate_script_writes_a_scenario_that_extends_and_an_ensemble(tmp_path, run_script):
    hist = synthetic_history(tmp_path, TRUTH, FREE)
    out, ens = tmp_path / "fitted.yaml", tmp_path / "fitted_ensemble.yaml"
    argv = ["--history", hist, "--out", out, "--starts", "1", "--posterior", "8", "--walkers", "8", "--steps", "6",
            "--ensemble-out", ens]
    code, stdout, err = run_script("calibrate", argv + ["--set", "target_run_rate=45"])
    assert code == 0, err
    text = out.read_text()
    assert text.startswith("# Written by scripts/calibrate.py") and "sha256" in text
    assert yaml.safe_load(text)["extends"] == "global_prior"
    sc = load_scenario(out)
    assert sc.regions["us"].sellers_half == pytest.approx(TRUTH["regions.us.sellers_half"], rel=0.15)
    e = load_ensemble(ens)
    assert len(e) == 8 and set(e.parameters) == set(FREE)
    # an existing output is refused without --force; --force replaces only a file calibrate.py wrote
    code, _, err = run_script("calibrate", argv)
    assert code == 2 and err.startswith("error: ") and err.count("\n") == 1 and "--force" in err
    # --force replaces its own outputs and keeps the value the replaced scenario set
    code, stdout, err = run_script("calibrate", argv + ["--force"])
    assert code == 0, err
    assert "keeping target_run_rate = 45" in stdout and load_scenario(out).target_run_rate == 45
    foreign = tmp_path / "mine.yaml"
    foreign.write_text("name: mine\n")
    code, _, err = run_script("calibrate", ["--history", hist, "--out", foreign, "--force"])
    assert code == 2 and "not written by this tool" in err and err.count("\n") == 1, err
    assert foreign.read_text() == "name: mine\n"


def _unfitted(history) -> Fit:
    """A Fit at the scenario's own values (no optimisation): enough to write a calibrate output."""
    value = scenario_values(history)
    return Fit(list(history.free), np.array(list(history.free.values()), dtype=float), value, value, 0.0, np.zeros(1), 0, 0.0, "")


def _write_calibrate_output(path: Path, history, settings: dict | None = None) -> str:
    """``path`` as calibrate.py writes it (header, body and the io sidecar), without a fit."""
    f = _unfitted(history)
    text = scenario_text(history, backtest(history, f.overrides(), seeds=0), f, path, name=path.stem, settings=settings)
    io.write_output_text(plan_yaml(path, "--out", force=True), text)
    return text


def test_calibrate_force_replaces_only_its_own_unchanged_output(tmp_path):
    history = load_history(synthetic_history(tmp_path, TRUTH, FREE))
    out = tmp_path / "fitted.yaml"
    _write_calibrate_output(out, history, {"target_run_rate": 45})
    assert plan_yaml(out, "--out", force=True).replace  # its own, unchanged
    with pytest.raises(io.OutputError, match="add --force"):
        plan_yaml(out, "--out", force=False)
    # a hand edit, even one that keeps calibrate's first line, makes it the user's file
    out.write_text(out.read_text().replace("target_run_rate: 45", "target_run_rate: 50   # my edit"))
    with pytest.raises(io.OutputError, match="changed since this tool wrote it"):
        plan_yaml(out, "--out", force=True)
    # calibrate's first line without the writer's record is not proof of ownership
    marked = tmp_path / "marked.yaml"
    marked.write_text(out.read_text())
    with pytest.raises(io.OutputError, match="not written by this tool"):
        plan_yaml(marked, "--out", force=True)
    # another tool's output (a sidecar, no calibrate first line) is not calibrate's either
    other = tmp_path / "other.yaml"
    io.write_output_text(io.plan_file(other, option="--out"), "name: other\n")
    with pytest.raises(io.OutputError, match="calibrate.py wrote"):
        plan_yaml(other, "--out", force=True)
    assert "# my edit" in out.read_text() and other.read_text() == "name: other\n"


def test_the_shipped_scenario_and_ensemble_count_as_calibrates_own():
    """``make calibrate`` (``--force``) may replace them: both are unchanged since calibrate's record."""
    scenario, ensemble = plan_outputs(SCENARIO_DIR / "global.yaml", ENSEMBLE_DIR / "global.yaml", 64, force=True)
    assert scenario.replace and ensemble.replace


def test_the_default_ensemble_goes_beside_an_out_outside_the_scenario_folder(tmp_path):
    assert default_ensemble_path(SCENARIO_DIR / "global.yaml") == ENSEMBLE_DIR / "global.yaml"
    assert default_ensemble_path(tmp_path / "global.yaml") == tmp_path / "global.ensemble.yaml"
    scenario, ensemble = plan_outputs(tmp_path / "global.yaml", None, 2, force=True)
    assert ensemble.path == tmp_path / "global.ensemble.yaml" and not ensemble.replace
    assert plan_outputs(tmp_path / "global.yaml", None, 0, force=True)[1] is None  # no --posterior: no ensemble
    # a taken default that is not calibrate's own gets the next free name, and the file stays
    (tmp_path / "global.ensemble.yaml").write_text("mine\n")
    _, ensemble = plan_outputs(tmp_path / "global.yaml", None, 2, force=True)
    assert ensemble.path == tmp_path / "global.ensemble-2.yaml" and "exists" in ensemble.note


def test_a_replaced_scenario_keeps_the_values_it_set(tmp_path):
    history = load_history(synthetic_history(tmp_path, TRUTH, FREE))
    out = tmp_path / "fitted.yaml"
    assert kept_settings(plan_yaml(out, "--out", force=True), {}) == {}  # a new --out keeps nothing
    _write_calibrate_output(out, history, {"target_run_rate": 45})
    planned = plan_yaml(out, "--out", force=True)
    assert kept_settings(planned, {}, fitted=history.free) == {"target_run_rate": 45}
    assert kept_settings(planned, {"target_run_rate": 30}) == {}  # --set again: the command's value
    assert kept_settings(planned, {}, fitted=["target_run_rate"]) == {}  # now fitted: the fit's value
    # the rewritten scenario keeps the target, and says it is fitted rather than inheriting the prior's description
    _write_calibrate_output(out, history, kept_settings(planned, {}, fitted=history.free))
    sc = load_scenario(out)
    assert sc.target_run_rate == 45
    assert "fitted to the record" in sc.description and "before calibration" not in sc.description


def test_backtest_script_outputs(tmp_path, run_script):
    out = {k: tmp_path / f"bt.{k}" for k in ("json", "csv", "png")}
    code, stdout, err = run_script("backtest", ["--history", SHIPPED, "--seeds", "4", "--json", out["json"],
                                                "--csv", out["csv"], "--plot", out["png"]])
    assert code == 0, err
    assert "MAPE in sample" in stdout
    doc = json.loads(out["json"].read_text())
    assert {"history", "scenario", "series", "mape_in_sample", "holdout", "mape_holdout"} <= set(doc)
    assert out["png"].stat().st_size > 5000
    code, _, err = run_script("backtest", ["--history", tmp_path / "none.yaml"])
    assert code == 2 and err.count("\n") == 1 and "history file not found" in err


def test_shipped_ensemble_loads_and_envs_draw_a_set_per_market_at_reset():
    ens = load_ensemble("global")
    assert len(ens) >= 16 and ens.values.shape == (len(ens), len(ens.parameters))
    env = SocialCommerceVectorEnv(16, ensemble="global")
    env.reset(seed=0)
    sets = env._batch.state.param_set.copy()
    assert len(set(sets.tolist())) > 1  # markets draw different parameter sets
    env.reset(seed=0)
    np.testing.assert_array_equal(env._batch.state.param_set, sets)  # the same seed, the same draw
    env.reset(seed=1)
    assert not np.array_equal(env._batch.state.param_set, sets)
    nominal = SocialCommerceVectorEnv(16)
    nominal.reset(seed=1)
    np.testing.assert_array_equal(nominal._batch.state.shock_z, env._batch.state.shock_z)  # the draw comes after the shocks
    # a market plays its set's parameters: the same as a nominal env made of that set alone
    env.reset(seed=0)
    k = int(sets[0])
    alone = SocialCommerceVectorEnv(1, scenario=ens.scenarios(load_scenario("global"))[k])
    alone.reset(seed=0)
    a = np.zeros((16, env.single_action_space.shape[0]), dtype=np.float32)
    total, alone_total = 0.0, 0.0
    for _ in range(12):
        _, r, _, _, _ = env.step(a)
        _, r1, _, _, _ = alone.step(a[:1])
        total += r[0]
        alone_total += r1[0]
    assert total == pytest.approx(alone_total, rel=1e-12)
    # a market reset alone draws the set a reset of all would give it
    env.reset(seed=0)
    env._batch.reset_markets(np.arange(16) == 3)
    again = SocialCommerceVectorEnv(16, ensemble="global")
    again.reset(seed=0)
    again._batch.reset_markets(np.arange(16) == 3)
    np.testing.assert_array_equal(again._batch.state.param_set, env._batch.state.param_set)
    single = gym.make(ENV_ID, ensemble="global")
    single.reset(seed=0)
    assert single.unwrapped._batch.state.param_set[0] == sets[0]


def test_evaluation_across_the_ensemble_gains_gmv_percentiles(tmp_path):
    scenario = load_scenario("global")
    ens = load_ensemble("global")
    policies = {name: make_policy(name, scenario) for name in ("zero", "merchant_package")}
    nominal = evaluate(policies, scenario, seed=0, episodes=16)
    across = evaluate(policies, scenario, seed=0, episodes=16, ensemble=ens)
    for ev in (nominal, across):
        for figures in ev.metrics.values():
            assert figures["gmv_p10"] <= figures["gmv_p50"] <= figures["gmv_p90"]
    doc = write_report(across, tmp_path / "eval")
    assert doc["ensemble"]["sets"] == len(ens) and "gmv_p90" in doc["policies"]["zero"]
    assert (tmp_path / "eval" / "gmv_spread.png").exists()
    def spread(ev):
        return ev.metrics["merchant_package"]["gmv_p90"] - ev.metrics["merchant_package"]["gmv_p10"]

    assert spread(across) > spread(nominal)  # the parameter draws widen the spread


def test_training_config_names_an_ensemble():
    cfg = load_config("ppo_robust")
    assert cfg.scenario_ensemble == "global"
    with pytest.raises(ConfigError, match="scenario_ensemble: unknown ensemble 'nope'"):
        load_config("ppo_robust", ["scenario_ensemble=nope"])
