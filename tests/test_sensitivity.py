"""Sensitivity: the ranges it reads, and the script's outputs on a tiny design."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from agents.calibration.sensitivity import OUTCOMES, parameter_ranges
from envs.ensemble import Ensemble, assumption_ranges
from envs.scenario import load_scenario

ROOT = Path(__file__).resolve().parent.parent


def test_ranges_are_the_stated_ones_the_posterior_and_half_either_way():
    stated = assumption_ranges("global_prior")
    assert stated["attractiveness.w_selection"] == (0.3, 0.7)
    sc = load_scenario("global_prior")
    ens = Ensemble(None, "global_prior", ("sellers.grant_rate",), np.linspace(0.1, 0.3, 101)[:, None], {})
    ranges = {r.path: r for r in parameter_ranges("global_prior", sc, ens)}
    assert ranges["sellers.grant_rate"].source == "posterior p5-p95"
    assert ranges["sellers.grant_rate"].low == pytest.approx(0.11) and ranges["sellers.grant_rate"].high == pytest.approx(0.29)
    unranged = [p for p, r in stated.items() if r is None and p in ranges]
    for p in unranged:
        assert ranges[p].source == "+-50%" and ranges[p].low < ranges[p].nominal < ranges[p].high
    assert all(r.low <= r.nominal <= r.high for r in ranges.values())


def test_sensitivity_script_on_a_tiny_design(tmp_path, run_script):
    out = tmp_path / "sens"
    code, stdout, err = run_script("sensitivity", ["--scenario", "global_prior", "--out", out, "--trajectories", "2",
                                                   "--static-iterations", "2", "--static-seeds", "2", "--reoptimise", "1"])
    assert code == 0, err
    doc = json.loads((out / "sensitivity.json").read_text())
    assert set(OUTCOMES) <= set(doc["morris"]) and doc["ranges"]
    assert {c["verdict"] for c in doc["conclusions"]} <= {"holds", "flips"}
    for k in ("merchant_package.gmv_total", "best_static.run_rate_final"):
        assert all(v["mu_star"] >= 0 for v in doc["morris"][k].values())
    assert len(doc["reoptimised"]) == 2 and doc["paragraph"].startswith("Across ")
    shares = [doc["nominal"][f"best_static.spend_share.{lever}"] for lever in ("commission_rate", "shipping_subsidy")]
    assert all(0 <= s <= 1 for s in shares)
    assert (out / "tornado.png").stat().st_size > 5000 and (out / "sensitivity.md").read_text().startswith("# Sensitivity")
    code, _, err = run_script("sensitivity", ["--scenario", "global_prior", "--out", out])
    assert code == 2 and err.startswith("error: ") and err.count("\n") == 1


def test_an_ensemble_of_another_scenarios_regions_is_one_line(tmp_path, run_script):
    """The global ensemble on `us` (no SEA): one line naming the set and the key, as evaluate and
    train say it, not a KeyError from inside the analysis; nothing written."""
    code, _, err = run_script("sensitivity", ["--scenario", "us", "--ensemble", "global", "--out", tmp_path / "sens", "--trajectories", "2"])
    assert code == 2 and err.startswith("error: ") and err.count("\n") == 1, err
    assert "set 0" in err and "'sea' is not in regions" in err, err
    assert not (tmp_path / "sens").exists()
