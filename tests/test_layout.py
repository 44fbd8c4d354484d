"""The layout tables of :mod:`envs.market` are the one declaration of every layout.

What is generated from them (the kernels' index namespaces, the packed parameter arrays, the
spaces, ``info_layout``) is checked here against what the kernels actually write, quantity by
quantity; what is written by hand beside them (the running offset of ``fill_info_market``, the
env manual's tables) is checked against them.
"""

from __future__ import annotations

import inspect

import numpy as np
import pytest

from envs import SocialCommerceEnv, SocialCommerceVectorEnv, layout, load_scenario, market, scenario as schema
from tests.conftest import BUILTIN_SCENARIOS, random_actions


def _manual() -> str:
    return inspect.cleandoc(SocialCommerceEnv.__doc__)


@pytest.mark.parametrize(
    "name, table",
    [
        ("levers", lambda: layout.lever_table(market.LEVER_TABLE)),
        ("region features", lambda: layout.feature_table(market.REGION_FEATURE_TABLE)),
        ("platform features", lambda: layout.feature_table(market.GLOBAL_FEATURE_TABLE, f"{market.N_REGION_FEATURES}R + ")),
        ("info", lambda: layout.info_table(market.INFO_TABLE)),
    ],
)
def test_the_env_manual_shows_the_tables_as_declared(name: str, table) -> None:
    expected = table()
    assert expected in _manual(), f"the {name} table of SocialCommerceEnv's docstring is stale; paste:\n{expected}"


def test_the_manual_states_the_space_shapes_of_the_tables() -> None:
    text = _manual()
    assert f"``Box(-1, 1, (n_regions * {market.N_LEVERS},), float32)``" in text
    obs = f"``Box({market.OBS_LOW:g}, {market.OBS_HIGH:g}, (n_regions * {market.N_REGION_FEATURES} + {market.N_GLOBAL_FEATURES},), float32)``"
    assert obs in text


def test_indices_follow_table_order_and_refuse_duplicate_names() -> None:
    assert tuple(market.OBS) == tuple(range(market.N_REGION_FEATURES))
    assert market.OBS._fields == market.REGION_FEATURES
    assert tuple(market.F) == tuple(range(len(market.REGIONAL_FIELDS)))
    groups = (market.ATTR, market.BUYERS, market.SELLERS, market.CREATORS, market.PLATFORM, market.EPISODE)
    assert sorted(k for g in groups for k in g) == list(range(len(market.GLOBAL_PARAM_TABLE)))
    with pytest.raises(ValueError, match="duplicate names \\['x'\\]"):
        layout.indices("T", [market.StateField("x", "", ""), market.StateField("x", "", "")])


def test_spaces_have_the_dimensions_of_the_tables() -> None:
    env = SocialCommerceEnv("global")
    R = env.params.n_regions
    assert env.action_space.shape == (R * len(market.LEVER_TABLE),)
    assert env.observation_space.shape == (R * len(market.REGION_FEATURE_TABLE) + len(market.GLOBAL_FEATURE_TABLE),)
    assert env.observation_space.low.min() == market.OBS_LOW and env.observation_space.high.max() == market.OBS_HIGH
    for feature in market.REGION_FEATURE_TABLE + market.GLOBAL_FEATURE_TABLE:
        assert market.OBS_LOW <= feature.low < feature.high <= market.OBS_HIGH, feature.name


def test_lever_kinds_give_the_cost_structure() -> None:
    """Pool levers cost ``u * pool_max``, the free lever nothing, the sales lever scales with sales;
    the price lever costs its discount below the reference and nothing at or above it."""
    params = load_scenario("global").to_params()
    state = market.init_state(params, [np.random.default_rng(0)])
    null = market.null_intensity(params)
    for k, lever in enumerate(market.LEVER_TABLE):
        u = null[None].copy()
        u[..., k] = 1.0
        cost = market.lever_costs(params, state, u)[0, :, k]
        if lever.kind == "pool":
            np.testing.assert_allclose(cost, params.region["pool_max"])
        elif lever.kind == "free":
            np.testing.assert_array_equal(cost, 0.0)
        elif lever.kind == "price":
            np.testing.assert_array_equal(cost, 0.0)  # the top rate is above every reference
            u[..., k] = 0.0
            assert np.all(market.lever_costs(params, state, u)[0, :, k] > 0), lever.name
            np.testing.assert_array_equal(market.lever_costs(params, state, null[None])[0, :, k], 0.0)
        else:
            assert lever.kind == "sales" and np.all(cost > 0), lever.name


# ----------------------------------------------------------------------------- parameters
_SECTIONS = {"attr": schema.Attractiveness, "buyers": schema.Buyers, "sellers": schema.Sellers,
             "creators": schema.Creators, "platform": schema.Platform}
_TOP = {"demand_sigma": ("noise", "demand_sigma"), "budget_per_quarter": ("budget", "per_quarter"),
        "budget_total": ("budget", "total"), "hard_budget": ("budget", "mode"), "horizon": ("horizon",),
        "start_quarter": ("start_quarter",), "target_run_rate": ("target_run_rate",),
        "start_serial": ("start_serial",), "objective_kind": ("objective", "kind"),
        "terminal_value": ("objective", "terminal_value")}


def test_every_parameter_of_the_tables_is_a_field_of_the_scenario_schema() -> None:
    """The schema holds each parameter's allowed range; the tables hold its place in the kernels."""
    for p in market.GLOBAL_PARAM_TABLE:
        if p.group:
            assert p.name in _SECTIONS[p.group].model_fields, f"{p.group}.{p.name} is not in the scenario schema"
        else:
            assert p.name in _TOP, p.name
    for p in market.REGION_PARAM_TABLE:
        assert p.group in ("region", "derived"), p
        if p.group == "region":
            assert p.name in schema.Region.model_fields, p.name
    # and every coefficient of the schema's model sections reaches the kernels
    for group, model in _SECTIONS.items():
        declared = {p.name for p in market.GLOBAL_PARAM_TABLE if p.group == group}
        assert set(model.model_fields) == declared, group


@pytest.mark.parametrize("name", BUILTIN_SCENARIOS)
def test_packed_parameters_hold_each_scenario_value_at_its_table_index(name: str) -> None:
    sc = load_scenario(name, {"deterministic": False})
    params = sc.to_params()
    g, rg, _ = params.packed
    T = params.horizon
    assert g.shape == (1, T, len(market.GLOBAL_PARAM_TABLE)) and rg.shape == (1, T, len(market.REGION_PARAM_TABLE), params.n_regions)
    assert not sc.events, "the built-in scenarios script no events: every quarter holds the file's values"
    for k, p in enumerate(market.GLOBAL_PARAM_TABLE):
        if p.group:
            want = getattr(getattr(sc, {"attr": "attractiveness"}.get(p.group, p.group)), p.name)
        elif p.name == "start_serial":
            want = sc.start_year * 4 + sc.start_quarter - 1
        else:
            node = sc
            for part in _TOP[p.name]:
                node = getattr(node, part)
            want = {"hard": 1.0, "soft": 0.0, **{kind: float(i) for i, kind in enumerate(market.OBJECTIVES)}}.get(node, node)
            want = want - 1 if p.name == "start_quarter" else want
        np.testing.assert_array_equal(g[0, :, k], want, err_msg=p.name)
    derived_elsewhere = {"scripted_dark": 0.0, "scripted_left": 0.0, "launched": 1.0}
    for k, p in enumerate(market.REGION_PARAM_TABLE):
        if p.group == "region":
            want = [getattr(r, p.name) for r in sc.regions.values()]
        elif p.name in derived_elsewhere:
            want = derived_elsewhere[p.name]
        elif p.name in params.derived:
            want = params.derived[p.name]
        else:  # reciprocals and products of the table's own rows
            continue
        np.testing.assert_array_equal(rg[0, :, k], np.broadcast_to(want, (T, params.n_regions)), err_msg=p.name)


# ----------------------------------------------------------------------------- observation and info
def _reference_observation(params: market.Params, s: market.State) -> np.ndarray:
    """Each feature of the tables computed from the state by name, in numpy."""
    r = params.region
    season = params.season_at(s.t)[:, None]
    season_prev = params.season_at(s.t - 1)[:, None]
    hill_ec = params.attr["hill_ec"]
    capacity = params.derived["seller_capacity"] * s.sellers + s.warehouse + s.logistics
    region = {
        "buyer_penetration": s.buyers / s.users,
        "selection": s.selection,
        "creator_strength": s.creators / (s.creators + r["creators_half"]),
        "user_saturation": s.users / r["users_max"],
        "capacity_cover": np.minimum(1.0, 0.5 * capacity / np.maximum(s.demand, 1e-9)),
        "livestream": s.livestream / np.maximum(r["livestream_max"], 1e-9),
        "trust": s.trust,
        "ad_reach": market.hill(s.adstock / np.maximum(r["pool_max"], 1e-12), hill_ec),
        "shopping_share": s.share,
        "genz_habit": s.habit,
        "suspension_left": np.minimum(1.0, s.suspended / params.suspension_quarters),
        "run_rate_vs_target": np.minimum(4.0 / params.target_run_rate * s.gmv_region / season_prev, 2.0),
        "reference_rate": np.broadcast_to(r["reference_rate"] / r["rate_max"], s.sellers.shape),
        "attention": s.attention,
        "platform_fulfilment": s.warehouse / capacity,
    }
    platform = {
        "time_left": 1.0 - s.t / params.horizon,
        "budget_left": s.budget_remaining / params.budget_total,
        "quarter_cap_left": market.quarter_cap(params, s) / params.budget_per_quarter,
        "next_season": season[:, 0] - 1.0,
        "spent_vs_total": np.minimum(s.spent / params.budget_total, 2.0),
        "quarter_of_year": ((params.start_quarter + s.t) % 4) / 3.0,
    }
    assert set(region) == set(market.REGION_FEATURES) and set(platform) == set(market.GLOBAL_FEATURES)
    per_region = np.stack([region[k] for k in market.REGION_FEATURES], axis=-1)  # (n, R, features)
    return np.concatenate([per_region.reshape(s.n, -1), np.stack([platform[k] for k in market.GLOBAL_FEATURES], -1)], axis=1)


@pytest.mark.parametrize("name", BUILTIN_SCENARIOS)
def test_observation_features_are_what_the_tables_say_and_stay_in_their_ranges(name: str) -> None:
    vec = SocialCommerceVectorEnv(num_envs=4, scenario=name, overrides={"budget.mode": "soft"})
    params = vec.params
    obs, _ = vec.reset(seed=3)
    low = np.array([f.low for f in market.REGION_FEATURE_TABLE] * params.n_regions + [f.low for f in market.GLOBAL_FEATURE_TABLE])
    high = np.array([f.high for f in market.REGION_FEATURE_TABLE] * params.n_regions + [f.high for f in market.GLOBAL_FEATURE_TABLE])
    for a in random_actions(5, params.horizon, vec.action_space.shape, scale=1.5):
        np.testing.assert_allclose(obs, _reference_observation(params, vec.state), rtol=2e-6, atol=1e-7)
        assert np.all(obs >= low - 1e-6) and np.all(obs <= high + 1e-6), "an observation left its feature's declared range"
        obs, *_ = vec.step(a)


def test_info_entries_are_what_the_table_says() -> None:
    """The info table's columns (written by a running offset) hold the step's outputs by name."""
    vec = SocialCommerceVectorEnv(num_envs=3, scenario="global", overrides={"budget.mode": "soft"})
    params = vec.params
    vec.reset(seed=1)
    for a in random_actions(2, 4, vec.action_space.shape, scale=1.2):
        before = vec.state.copy()
        intensity = market.action_to_intensity(np.clip(a, -1, 1).astype(np.float64), params.n_regions)
        after, out = market.step(params, before, intensity)
        info = vec.step(a)[4]
        assert [e.name for e in market.INFO_TABLE] == [k for k in info if k not in ("lever_intensity", "spend_by_region_lever") and not k.startswith("_")]  # "_key": gymnasium's masks
        regions = params.region_names
        expected = {
            "gmv": out["gmv"], "gmv_run_rate": out["run_rate"], "cost": out["cost"],
            "gmv_by_region": dict(zip(regions, out["gmv_region"].T)),
            "cost_by_lever": dict(zip(market.LEVERS, out["cost_lever"].sum(axis=1).T)),
            "cost_limit": out["cost_limit"], "budget_remaining": after.budget_remaining, "cost_total": after.spent,
            "cost_limit_exceeded": after.spent > params.budget_total * (1 + 1e-9),
            "cash_spend": out["cash_spend"], "commission_discount": out["commission_discount"],
            "revenue": out["revenue"], "net_burn": out["net_burn"],
            "objective_value": out["objective_value"], "terminal_value": out["terminal_value"],
            "exit_run_rate": out["exit_run_rate"],
            "orders": dict(zip(regions, out["orders"].T)), "orders_lost": dict(zip(regions, out["orders_lost"].T)),
            "shopping_start_share": dict(zip(regions, out["share"].T)),
            "buyers": dict(zip(regions, after.buyers.T)), "sellers": dict(zip(regions, after.sellers.T)),
            "creators": dict(zip(regions, after.creators.T)), "suspended": dict(zip(regions, (out["dark"] > 0).T)),
            "clipped_actions": ((a < -1) | (a > 1)).sum(axis=1), "quarter": after.t,
            "quarter_label": np.array([params.quarter_label(t - 1) for t in after.t]),
        }
        assert set(expected) == {e.name for e in market.INFO_TABLE}
        for entry in market.INFO_TABLE:
            got, want = info[entry.name], expected[entry.name]
            if entry.per is None:
                got, want = {"": got}, {"": want}
            else:  # nested dicts carry gymnasium's "_key" masks beside the values
                got = {k: v for k, v in got.items() if not k.startswith("_")}
            assert list(got) == list(want), entry.name
            for sub in want:
                if entry.kind is str:
                    np.testing.assert_array_equal(got[sub], want[sub], err_msg=entry.name)
                    continue
                np.testing.assert_allclose(got[sub], want[sub], rtol=1e-12, err_msg=f"{entry.name}/{sub}")
                assert np.asarray(got[sub]).dtype.kind == {float: "f", bool: "b", int: "i"}[entry.kind], entry.name
        np.testing.assert_allclose(info["lever_intensity"], out["intensity"], rtol=1e-12)
        np.testing.assert_allclose(info["spend_by_region_lever"], out["cost_lever"], rtol=1e-12)


def test_state_fields_are_views_of_the_regional_block_in_table_order() -> None:
    params = load_scenario("global").to_params()
    state = market.init_state(params, [np.random.default_rng(0)])
    for k, field in enumerate(market.STATE_TABLE):
        assert np.shares_memory(getattr(state, field.name), state.regional)
        np.testing.assert_array_equal(getattr(state, field.name), state.regional[:, k])
