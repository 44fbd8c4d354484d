"""Scripted events, calendar quarters and objectives (model v2).

Events fire in their calendar quarter and region and nowhere else; a bad event is one line naming
it; each objective's reward is its info terms; the start quarter names the calendar.
"""

from __future__ import annotations

import numpy as np
import pytest

from envs import SocialCommerceEnv, market
from envs.scenario import ScenarioError, load_scenario

DET = {"deterministic": True}


def _run(overrides: dict, plan=None) -> dict:
    params = load_scenario("global", {**DET, **overrides}).to_params()
    state = market.init_state(params, [np.random.default_rng(0)])
    plan = market.null_plan(params)[None] if plan is None else plan
    return market.rollout(params, state, plan) | {"params": params}


def test_quarter_labels_follow_the_start_quarter() -> None:
    env = SocialCommerceEnv("global", {"start": "2024Q3", "horizon": 6})
    _, info = env.reset(seed=0)
    assert info["quarter_label"] == "2024Q2"  # the start state is the quarter before
    labels = [env.step(np.zeros(env.action_space.shape, np.float32))[4]["quarter_label"] for _ in range(6)]
    assert labels == ["2024Q3", "2024Q4", "2025Q1", "2025Q2", "2025Q3", "2025Q4"]


def test_a_scripted_suspension_fires_in_its_quarter_and_region_only() -> None:
    ev = [{"quarter": "2023Q3", "region": "sea", "suspend": {"quarters": 2, "share": 0.5}}]
    base, hit = _run({}), _run({"events": ev})
    dark = hit["state"].suspended  # random suspensions stay off in the deterministic variant
    assert np.all(dark == 0)
    params = hit["params"]
    np.testing.assert_array_equal(params.schedule("scripted_dark")[:, 0], [0, 0, 0.5, 0.5] + [0] * 8)
    sea, us = 0, 1
    np.testing.assert_array_equal(hit["gmv_region"][0, :2], base["gmv_region"][0, :2])  # nothing before
    assert np.all(hit["gmv_region"][0, 2:4, sea] < 0.6 * base["gmv_region"][0, 2:4, sea])
    np.testing.assert_allclose(hit["gmv_region"][0, 2, us], base["gmv_region"][0, 2, us], rtol=1e-12)  # the US untouched that quarter


def test_the_observation_shows_a_scripted_suspension_before_its_quarter() -> None:
    ev = [{"quarter": "2023Q2", "region": "us", "suspend": {"quarters": 1, "share": 1.0}}]
    env = SocialCommerceEnv("global", {**DET, "events": ev})
    obs, _ = env.reset(seed=0)
    k = market.N_REGION_FEATURES + market.OBS.suspension_left  # the US block
    assert obs[k] == 0.0
    obs, _, _, _, info = env.step(np.zeros(env.action_space.shape, np.float32))
    assert obs[k] > 0.0 and not info["suspended"]["us"]
    _, _, _, _, info = env.step(np.zeros(env.action_space.shape, np.float32))
    assert info["suspended"]["us"] and info["gmv_by_region"]["us"] == 0.0
    assert np.all(info["spend_by_region_lever"][1] == 0.0) and info["cost"] > 0.0  # a dark region is billed nothing


def test_a_reference_rate_event_moves_the_null_action_and_the_observation() -> None:
    ev = [{"quarter": "2024Q2", "region": "us", "reference_rate": 0.06}, {"quarter": "2024Q3", "region": "us", "reference_rate": 0.08}]
    params = load_scenario("global", {**DET, "events": ev}).to_params()
    ref = params.schedule("reference_rate")[:, 1]
    np.testing.assert_array_equal(ref, [0.029] * 5 + [0.06] + [0.08] * 6)
    assert market.null_intensity(params, 6)[1, market.RATE] == pytest.approx(0.8)
    res = _run({"events": ev})
    assert np.all(res["commission_discount"] == 0.0)  # the null plan follows the reference
    env = SocialCommerceEnv("global", {**DET, "events": ev})
    obs, _ = env.reset(seed=0)
    k = market.N_REGION_FEATURES + market.OBS.reference_rate
    for t in range(6):
        obs = env.step(np.zeros(env.action_space.shape, np.float32))[0]
    assert obs[k] == pytest.approx(0.8)  # after 2024Q2 is played, the next quarter's 8% shows


def test_a_launch_keeps_a_region_dark_until_its_quarter() -> None:
    ev = [{"quarter": "2023Q3", "region": "us", "launch": True}]
    res = _run({"events": ev}, plan=None)
    assert np.all(res["gmv_region"][0, :2, 1] == 0.0) and np.all(res["gmv_region"][0, 2:, 1] > 0.0)
    full = np.ones((1, 12, 3, 7))
    spent = _run({"events": ev, "budget.mode": "soft"}, plan=full)["intensity"]  # nothing billed before the launch
    assert spent.shape == (1, 12, 3, 7)


def test_a_parameter_event_changes_the_value_from_its_quarter_on() -> None:
    ev = [{"quarter": "2024Q1", "region": "us", "set": {"path": "regions.us.aov", "value": 40}},
          {"quarter": "2024Q1", "set": {"path": "sellers.churn", "value": 0.03}}]
    params = load_scenario("global", {**DET, "events": ev}).to_params()
    np.testing.assert_array_equal(params.schedule("aov")[:, 1], [35] * 4 + [40] * 8)
    g = params.packed[0][0, :, market.SELLERS.churn]
    np.testing.assert_array_equal(g, [0.06] * 4 + [0.03] * 8)


@pytest.mark.parametrize(
    "event, message",
    [
        ({"quarter": "2023Q4", "region": "mars", "suspend": {"quarters": 1, "share": 0.5}}, "region 'mars' is not in the scenario's regions"),
        ({"quarter": "2027Q1", "region": "sea", "suspend": {"quarters": 1, "share": 0.5}}, "outside the horizon 2023Q1..2025Q4"),
        ({"quarter": "2022Q4", "region": "sea", "launch": True}, "outside the horizon"),
        ({"quarter": "Q4 2023", "region": "sea", "launch": True}, "is not a calendar quarter"),
        ({"quarter": "2023Q4", "region": "sea", "suspend": {"quarters": 1, "share": 1.5}}, "suspend.share = 1.5 must be in [0, 1]"),
        ({"quarter": "2023Q4", "region": "sea", "set": {"path": "sellers.nonsense", "value": 1}}, "is not a model parameter"),
        ({"quarter": "2023Q4", "region": "us", "reference_rate": 0.2}, "regions.us.reference_rate = 0.2 would exceed regions.us.rate_max = 0.1"),
        ({"quarter": "2023Q4", "region": "us", "reference_rate": -0.01}, "reference_rate = -0.01 must be in [0, rate_max]"),
        ({"quarter": "2023Q4", "region": "us", "reference_rate": 0.05, "launch": True}, "exactly one change"),
        ({"quarter": "2023Q4", "region": "us", "bogus": 1}, "unknown key"),
        # a set event's value is checked as the scenario file's own value would be
        ({"quarter": "2024Q1", "region": "us", "set": {"path": "regions.us.aov", "value": -40}}, "set.value = -40.0 for regions.us.aov: Input should be greater than 0"),
        ({"quarter": "2024Q1", "set": {"path": "sellers.churn", "value": 7}}, "set.value = 7.0 for sellers.churn: Input should be less than or equal to 1"),
        # a set event changes a parameter of its own region, from then on, within what the file would allow
        ({"quarter": "2024Q1", "region": "us", "set": {"path": "regions.us.shopping_share", "value": 0.05}}, "is a start value, not a parameter that can change"),
        ({"quarter": "2024Q1", "region": "uk", "set": {"path": "sellers.churn", "value": 0.3}}, "is platform-wide (it changes every region); drop region: 'uk'"),
        ({"quarter": "2024Q1", "region": "narnia", "set": {"path": "regions.us.aov", "value": 30}}, "the event's region is 'narnia' but set.path 'regions.us.aov' changes region 'us'"),
        ({"quarter": "2024Q1", "region": "us", "set": {"path": "regions.us.reference_rate", "value": 0.2}}, "regions.us.reference_rate = 0.2 would exceed regions.us.rate_max = 0.1"),
        ({"quarter": "2024Q1", "set": {"path": "regions.us.rate_max", "value": 0.02}}, "regions.us.reference_rate = 0.029 would exceed regions.us.rate_max = 0.02"),
        # two changes of one thing in one quarter: which would hold is not the user's to guess
        ({"quarter": "2023Q2", "region": "us", "launch": True}, "events[0] already changes launch in 2023Q2; keep one"),
    ],
)
def test_bad_events_are_one_line_errors_naming_the_event(event: dict, message: str) -> None:
    with pytest.raises(ScenarioError) as err:
        load_scenario("global", {"events": [{"quarter": "2023Q2", "region": "us", "launch": True}, event]})
    text = str(err.value)
    assert "\n" not in text and message in text, text
    assert "events" in text and ("events[1]" in text or "events.1" in text), text


@pytest.mark.parametrize("kind", ["gmv", "revenue", "contribution"])
@pytest.mark.parametrize("terminal", [0.0, 4.0])
def test_each_objective_rewards_its_info_terms(kind: str, terminal: float) -> None:
    env = SocialCommerceEnv("global", {"objective.kind": kind, "objective.terminal_value": terminal})
    env.reset(seed=2)
    rng = np.random.default_rng(2)
    for t in range(env.params.horizon):
        _, reward, done, _, info = env.step(rng.uniform(-1, 1, env.action_space.shape).astype(np.float32))
        value = {"gmv": info["gmv"], "revenue": info["revenue"], "contribution": info["revenue"] - info["cash_spend"]}[kind]
        assert info["objective_value"] == pytest.approx(value, rel=1e-12, abs=1e-15)
        if not done:
            assert info["terminal_value"] == 0.0 and info["exit_run_rate"] == 0.0
        assert reward == pytest.approx(info["objective_value"] + info["terminal_value"], rel=1e-12, abs=1e-15)
        if kind == "gmv" and terminal == 0.0:
            assert reward == info["gmv"]


@pytest.mark.parametrize("kind", ["gmv", "revenue", "contribution"])
def test_the_terminal_value_is_the_exit_quarter_at_the_null_action(kind: str) -> None:
    """The terminal value is ``terminal_value`` quarters of the business left at the horizon: one
    more quarter from the final state at the null action, de-seasonalised; so a last-quarter spike
    is worth only what it leaves behind. Checked against the model's own step from that state
    (deterministic: no shock, no random suspension, as the exit quarter assumes)."""
    env = SocialCommerceEnv("global", {"objective.kind": kind, "deterministic": True})
    env.reset(seed=3)
    rng = np.random.default_rng(3)
    done = False
    while not done:
        _, _, done, _, info = env.step(rng.uniform(-1, 1, env.action_space.shape).astype(np.float32))
    p = env.params
    _, after = market.step(p, env.state, market.null_intensity(p, p.horizon - 1)[None])
    season = p.season_at(p.horizon)
    assert after["cost"][0] == 0.0  # the null action pays nothing
    value = {"gmv": after["gmv"], "revenue": after["revenue"], "contribution": after["revenue"] - after["cash_spend"]}[kind][0]
    assert info["terminal_value"] == pytest.approx(p.terminal_value * value / season, rel=1e-12)
    assert info["exit_run_rate"] == pytest.approx(4.0 * after["gmv"][0] / season, rel=1e-12)
    assert p.terminal_value == 4.0  # the default scenario's, stated in its file


def _exit_by_hand(params, state) -> float:
    """The exit run rate rebuilt with the model's own step: one quarter from ``state`` at the
    null action, annualised and de-seasonalised."""
    _, after = market.step(params, state, market.null_intensity(params, params.horizon - 1)[None])
    assert after["cost"][0] == 0.0
    return 4.0 * after["gmv"][0] / params.season_at(params.horizon)


def test_a_scripted_suspension_darkens_the_exit_quarter_only_if_it_runs_past_the_horizon() -> None:
    """A suspension that ends with the last played quarter is over in the exit quarter; one that
    runs a quarter longer keeps its share dark there (and in the observation's quarters left)."""
    base = load_scenario("global", DET).to_params()
    runs = {}
    for quarters in (1, 2):
        ev = [{"quarter": "2025Q4", "region": "sea", "suspend": {"quarters": quarters, "share": 1.0}}]
        out = _run({"events": ev})
        runs[quarters] = out
        p = out["params"]
        np.testing.assert_array_equal(p.schedule("scripted_dark")[:, 0], [0] * 11 + [1.0])  # the horizon clips the darkness
        assert p.schedule("scripted_left")[-1, 0] == quarters  # but not the quarters left
        assert out["gmv_region"][0, -1, 0] == 0.0
        # the exit quarter: SEA live after a suspension ending with the horizon (the schedule
        # without the event), dark after one that runs on (the last quarter's schedule)
        expected = _exit_by_hand(base if quarters == 1 else p, out["state"])
        assert out["exit_run_rate"][0, -1] == pytest.approx(expected, rel=1e-12)
    assert runs[2]["exit_run_rate"][0, -1] < 0.8 * runs[1]["exit_run_rate"][0, -1]


def test_the_exit_quarter_lifts_every_random_suspension() -> None:
    """A random suspension, drawn in the last quarter or under way, does not darken the exit
    quarter: it lasts a quarter or two and would otherwise be charged for all ``terminal_value``
    quarters. Checked against the model's own step from the final state with the suspension lifted."""
    sc = load_scenario("global", {"noise.demand_sigma": 0.0, "regions.sea.suspension_hazard": 1.0,
                                  "regions.sea.suspension_quarters": 4, "regions.us.suspension_hazard": 0.5,
                                  "regions.us.suspension_quarters": 3})
    p = sc.to_params()
    start = market.init_state(p, [np.random.default_rng(s) for s in range(16)])
    out = market.rollout(p, start, market.null_plan(p)[None].repeat(16, axis=0))
    final = out["state"]
    left = final.suspended
    assert np.all(left[:, 0] == 3)  # SEA: a suspension under way at the horizon in every market (4, 3, 2, 1, 0, 4, ...)
    assert np.any(left[:, 1] == 3) and np.any((left[:, 1] > 0) & (left[:, 1] < 3))  # US: drawn last quarter in some, under way in others
    lifted = final.copy()
    lifted.suspended[:] = 0.0
    for i in range(16):
        assert out["exit_run_rate"][i, -1] == pytest.approx(_exit_by_hand(p, lifted.take(np.array([i]))), rel=1e-12)


def test_a_last_quarter_spike_earns_less_terminal_value_than_its_played_run_rate() -> None:
    """The defect the exit quarter mends: the terminal value used to be four quarters of the last
    quarter's own GMV, so spending in quarter 12 paid four more times. Now it pays through the
    state it leaves (buyers, stocks), which is less than the quarter's own push."""
    sc = load_scenario("global", {"deterministic": True})
    p = sc.to_params()
    start = market.init_state(p, [np.random.default_rng(0)])
    null = market.null_plan(p)[None]
    spike = null.copy()
    spike[0, -1, :, market.LEVER.shipping_subsidy:market.LEVER.user_ads + 1] = 1.0
    a, b = market.rollout(p, start, null), market.rollout(p, start, spike)
    played_gain = b["run_rate"][0, -1] - a["run_rate"][0, -1]
    exit_gain = b["exit_run_rate"][0, -1] - a["exit_run_rate"][0, -1]
    assert played_gain > 0 and 0 < exit_gain < played_gain
    assert b["terminal_value"][0, -1] - a["terminal_value"][0, -1] == pytest.approx(exit_gain, rel=1e-9)  # 4 quarters = 4 x (run rate / 4)


def test_a_bad_objective_is_one_line() -> None:
    with pytest.raises(ScenarioError) as err:
        load_scenario("global", {"objective.kind": "happiness"})
    assert "\n" not in str(err.value) and "objective.kind" in str(err.value)


def test_one_change_named_two_ways_is_refused_and_a_set_value_is_checked_by_its_own_range_only() -> None:
    """A reference_rate event and a set of regions.<r>.reference_rate in one quarter are one
    change made twice; a set value is checked against its field's range, not against the file's
    starting values of other fields (those an earlier event may have changed)."""
    twice = [{"quarter": "2024Q1", "region": "us", "reference_rate": 0.05},
             {"quarter": "2024Q1", "set": {"path": "regions.us.reference_rate", "value": 0.04}}]
    with pytest.raises(ScenarioError, match=r"events\[0\] already changes regions.us.reference_rate in 2024Q1"):
        load_scenario("global", {"events": twice})
    later = [{"quarter": "2024Q1", "region": "us", "reference_rate": 0.01},
             {"quarter": "2024Q2", "set": {"path": "regions.us.rate_max", "value": 0.02}}]
    assert len(load_scenario("global", {"events": later}).events) == 2
    # a quarter's events hold together: lowering rate_max below the reference is fine when the same quarter lowers the reference
    together = [{"quarter": "2024Q1", "set": {"path": "regions.us.rate_max", "value": 0.02}},
                {"quarter": "2024Q1", "region": "us", "reference_rate": 0.01}]
    assert len(load_scenario("global", {"events": together}).events) == 2
    # a reference between the file's rate_max and one an earlier event raised is fine, however it is spelt
    raised = [{"quarter": "2024Q1", "set": {"path": "regions.us.rate_max", "value": 0.3}},
              {"quarter": "2024Q2", "region": "us", "reference_rate": 0.25}]
    assert len(load_scenario("global", {"events": raised}).events) == 2


def test_deterministic_means_no_suspension_hazard_even_one_an_event_sets() -> None:
    """`deterministic: true` zeroes the hazards; a set event raising one must not bring chance back."""
    events = [{"quarter": "2023Q2", "region": "us", "set": {"path": "regions.us.suspension_hazard", "value": 0.5}}]
    runs = []
    for seed in (0, 1, 2):
        env = SocialCommerceEnv("global", {"deterministic": True, "events": events})
        env.reset(seed=seed)
        total = 0.0
        for _ in range(env.params.horizon):
            total += env.step(np.zeros(env.action_space.shape, dtype=np.float32))[4]["gmv"]
        runs.append(total)
    assert runs[0] == runs[1] == runs[2]
    stochastic = load_scenario("global", {"events": events}).compiled_events()
    assert stochastic[0].value == 0.5  # the same file without deterministic keeps the event


def test_observations_stay_in_their_box_when_an_event_lowers_a_ceiling_below_its_stock() -> None:
    """Livestream affinity read 3.24 and user saturation 3.46 after such events (Box(-1, 2) declared)."""
    events = [{"quarter": "2024Q1", "set": {"path": "regions.sea.livestream_max", "value": 0.2}},
              {"quarter": "2024Q1", "set": {"path": "regions.sea.users_max", "value": 100}}]
    env = SocialCommerceEnv("global", {"deterministic": True, "events": events})
    obs, _ = env.reset(seed=0)
    rng = np.random.default_rng(0)
    seen = [obs]
    for _ in range(env.params.horizon):
        seen.append(env.step(rng.uniform(-1, 1, env.action_space.shape).astype(np.float32))[0])
    assert all(env.observation_space.contains(o) for o in seen)
    sea = env.params.region_names.index("sea") * market.N_REGION_FEATURES
    assert max(o[sea + market.OBS.user_saturation] for o in seen) == 1.0  # read at its ceiling once users_max fell below the users
