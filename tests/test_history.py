"""History files: the shipped one loads; every schema mistake is one line naming what and where."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import yaml

from envs import market
from envs.history import HistoryError, load_history, period_quarters

SHIPPED = Path(__file__).resolve().parent.parent / "configs" / "history" / "tiktok_shop.yaml"


def _write(tmp_path: Path, **changes) -> Path:
    doc = yaml.safe_load(SHIPPED.read_text())
    doc["scenario"] = str(SHIPPED.parent.parent / "scenarios" / "global_prior.yaml")
    for key, value in changes.items():
        doc[key] = value
    path = tmp_path / "h.yaml"
    path.write_text(yaml.safe_dump(doc))
    return path


def test_shipped_history_loads():
    h = load_history("tiktok_shop")
    assert h.observations and h.holdout and h.plan
    assert len(h.quarters) == len(h.observations)
    assert h.labels()[0] == "2023Q1"


def test_periods():
    assert period_quarters("2024") == [2024 * 4 + q for q in range(4)]
    assert period_quarters("2025H1") == [2025 * 4, 2025 * 4 + 1]
    assert period_quarters("2023Q4") == [2023 * 4 + 3]
    assert period_quarters("2024H3") is None and period_quarters("24") is None


def _observation(**kw):
    return [{"region": "sea", "period": "2023", "metric": "gmv", "value": 16.3, "source": "test", **kw}]


@pytest.mark.parametrize("changes, expected", [
    ({"observations": _observation(region="mars")}, "unknown region 'mars'; allowed: sea, us, uk, all"),
    ({"observations": _observation(metric="profit")}, "observations.0.metric"),
    ({"observations": _observation(period="2024H3")}, "is not a year (2024), a half (2025H1) or a quarter (2024Q4)"),
    ({"observations": _observation(period="2031")}, "outside the scenario's quarters 2023Q1..2025Q4"),
    ({"observations": _observation(metric="revenue")}, "use region: all"),
    ({"free": {"regions.us.not_a_parameter": [1, 2]}}, "free.regions.us.not_a_parameter: not a numeric parameter"),
    ({"free": {"sellers.grant_rate": [0.4, 0.1]}}, "bounds [0.4, 0.1] must be [low, high] with low < high"),
    ({"free": {"sellers.grant_rate": [0.1, 3.0]}}, "bound 3.0 is not a valid value"),
    ({"plan": [{"quarter": "2023Q1", "region": "us", "levers": {"teleport": 1.0}}]}, "unknown lever 'teleport'"),
    ({"plan": [{"quarter": "2023Q1", "region": "us", "levers": {"user_ads": 1.5}}]}, "must be an intensity in [0, 1]"),
    ({"plan": [{"quarter": "2029Q1", "region": "us", "levers": {}}]}, "outside the scenario's quarters"),
    ({"events": [{"quarter": "2023Q2", "region": "atlantis", "launch": True}]}, "events[0]"),
    ({"scenario": "no_such_scenario"}, "unknown scenario 'no_such_scenario'"),
])
def test_schema_errors_are_one_line(tmp_path, changes, expected):
    with pytest.raises(HistoryError) as exc:
        load_history(_write(tmp_path, **changes))
    message = str(exc.value)
    assert "\n" not in message
    assert expected in message, message


def test_unlisted_levers_play_the_null_action(tmp_path):
    h = load_history(_write(tmp_path, plan=[{"quarter": "2023Q2", "region": "us", "levers": {"user_ads": 0.5}}]))
    params = h.scenario().to_params()
    u = h.plan_intensity(params)
    null = market.null_plan(params)
    us = list(params.region_names).index("us")
    assert u[1, us, market.LEVERS.index("user_ads")] == 0.5
    u[1, us, market.LEVERS.index("user_ads")] = 0.0
    np.testing.assert_array_equal(u, null)
    # the history's reference-rate events are in the replayed schedule
    assert params.schedule("reference_rate")[-1, us] == pytest.approx(0.08)


def test_replay_is_soft_and_without_random_suspensions():
    sc = load_history("tiktok_shop").scenario(deterministic=False)
    assert sc.budget.mode == "soft"
    assert all(r.suspension_hazard == 0.0 for r in sc.regions.values())
