"""The budget frontier: outputs, a monotone oracle, one-line errors."""

from __future__ import annotations

import csv
import json
import sys
from pathlib import Path

import pytest

from agents.frontier import Effort, FrontierError, budget_overrides, check_budgets, compute_frontier
from envs.scenario import load_scenario
from tests.conftest import assert_bad_inputs_exit_2, run_main

ROOT = Path(__file__).resolve().parent.parent
FRONTIER = ROOT / "scripts" / "frontier.py"
TINY = ["--episodes", "2", "--static-iterations", "3", "--schedule-iterations", "2", "2", "--refine-iterations", "3", "--scale-iterations", "2"]


@pytest.mark.slow
def test_script_writes_csv_json_png_and_the_oracle_does_not_fall(tmp_path: Path):
    out = tmp_path / "fr"
    proc = run_main(FRONTIER, ["--scenario", "global", "--budgets", "2", "4", "--out", str(out), *TINY])  # in this process
    assert proc.returncode == 0, proc.stderr[-2000:]
    for name in ("frontier.csv", "frontier.json", "frontier.png"):
        assert (out / name).is_file() and (out / name).stat().st_size > 0
    rows = list(csv.DictReader((out / "frontier.csv").open()))
    assert [float(r["budget_total"]) for r in rows] == [2.0, 4.0]
    result = json.loads((out / "frontier.json").read_text())
    oracle = [r["oracle_objective"] for r in result["rows"]]
    assert oracle[1] >= oracle[0]
    gmv = [r["oracle_gmv"] for r in result["rows"]]
    assert result["rows"][1]["oracle_marginal_gmv_per_b"] == pytest.approx((gmv[1] - gmv[0]) / 2.0)
    for method in ("best_static", "oracle"):
        for figure in ("objective", "revenue", "contribution", "net_burn"):
            assert f"{method}_{figure}" in rows[0]
        row = result["rows"][0]
        assert row[f"{method}_net_burn"] == pytest.approx(-row[f"{method}_contribution"])
    assert result["rows"][0]["budget_per_quarter"] == pytest.approx(0.4)  # global: per-quarter = 0.2 x total
    for row in result["rows"]:
        assert row["oracle_cost"] <= row["budget_total"] * (1 + 1e-9)


def test_oracle_is_monotone_even_when_the_larger_search_is_weak():
    # a larger budget searched with no effort at all still replays the smaller budget's plan
    effort = Effort(episodes=2, static_iterations=2, static_seeds=4, schedule_seeds=2, schedule_iterations=(0, 0), refine_iterations=2, scale_iterations=2)
    result = compute_frontier("global", [1.0, 1.5, 6.0], effort=effort, workers=1)
    # monotone in what the oracle maximises: the reward
    value = [r["oracle_objective"] for r in result["rows"]]
    assert all(b >= a for a, b in zip(value, value[1:])), value
    assert all(r["oracle_objective"] >= r["oracle_objective_own_search"] - 1e-12 for r in result["rows"])


def test_budget_overrides_scale_the_quarter_cap():
    base = load_scenario("global")
    o = budget_overrides(base, 8.0)
    assert o["budget.total"] == 8.0 and o["budget.per_quarter"] == pytest.approx(8.0 * base.budget.per_quarter / base.budget.total)
    assert budget_overrides(base, 8.0, per_quarter=0.5)["budget.per_quarter"] == 0.5
    assert check_budgets([4, 1, 2]) == [1.0, 2.0, 4.0]
    for bad in ([], [0.0], [-1.0, 2.0], [2.0, 2.0], [float("nan")]):
        with pytest.raises(FrontierError):
            check_budgets(bad)


BAD = {
    "zero budget": (["--budgets", "0", "2"], "positive"),
    "negative budget": (["--budgets", "-1"], "positive"),
    "repeated budget": (["--budgets", "2", "2"], "distinct"),
    "not a number": (["--budgets", "two"], "invalid float"),
    "unknown scenario": (["--scenario", "mars"], "unknown scenario 'mars'"),
    "budget over the schema": (["--budgets", "5000"], "--budgets 5000: "),
    "bad per-quarter": (["--per-quarter", "0"], "--per-quarter"),
    "no workers": (["--workers", "0"], "--workers"),
    "PPO flags without --train": (["--timesteps", "100", "--seed", "3"], "--timesteps, --seed go only with --train"),
}


def test_bad_input_is_one_line_exit_2_nothing_written(tmp_path: Path):
    assert_bad_inputs_exit_2([sys.executable, str(FRONTIER)], BAD, "--out", tmp_path)
