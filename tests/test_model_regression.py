"""The model's numbers do not drift, and its random numbers are the generators' own.

The totals below were recorded on purpose from market model v2 (``envs.MODEL_VERSION`` "2",
``flywheel/SocialCommerce-v1``): four seeded episodes, two open-loop plans, hard and soft
budgets; GMV, cost and revenue are matched to 1e-9 relative. A change of the model's numbers
must re-record them in a commit that says so (v1's totals, from the numpy model, ended with v1).
"""

from __future__ import annotations

import numpy as np
import pytest
from gymnasium.utils import seeding

from envs import market
from envs.scenario import load_scenario

SEEDS = range(4)


def _plan(name: str, params: market.Params, t: int) -> np.ndarray:
    if name == "half":
        return np.full((len(SEEDS), params.n_regions, market.N_LEVERS), 0.5)
    ramp = np.linspace(0.0, 1.0, market.N_LEVERS) * (t + 1) / params.horizon  # grows each quarter
    return np.broadcast_to(ramp, (len(SEEDS), params.n_regions, market.N_LEVERS)).copy()


RECORDED = [
    # scenario, overrides, plan, cumulative GMV per seed ($B), total cost per seed ($B), total revenue per seed ($B)
    ("global", {}, "half", [66.0451829272, 59.5718715201, 53.4147247569, 64.9730511625], [4.0] * 4,
     [9.3834134519, 8.4045313273, 7.5756879074, 9.2282725401]),
    ("global", {}, "ramp", [63.8159523381, 58.100807326, 50.9369931018, 62.5325382195], [4.0] * 4,
     [7.602149174, 6.8222978742, 5.8535830645, 7.4203852896]),
    ("sea", {}, "half", [51.2879782099, 50.764096134, 50.7754297614, 48.0776218639], [2.0] * 4,
     [7.5339286087, 7.4592119111, 7.4619696076, 7.0527282468]),
    ("sea", {}, "ramp", [49.0046731764, 48.3412095743, 48.3006216611, 45.5695150215], [2.0] * 4,
     [6.0165407409, 5.9458701207, 5.9420826422, 5.5523621347]),
    ("global", {"budget.mode": "soft"}, "half", [118.9964526662, 108.9016000968, 87.9743541526, 117.2976894633],
     [17.469077972, 16.6462795553, 13.9075419673, 17.3570218534], [17.3184215144, 15.8049571114, 12.7057976124, 17.0702998207]),
    ("global", {"budget.mode": "soft"}, "ramp", [80.8758690148, 72.8382535727, 59.106263234, 80.2367227915],
     [9.7024082445, 9.1903383803, 7.5220072693, 9.6755905913], [8.8581772546, 7.9091808932, 6.2903713167, 8.7789109887]),
]


@pytest.mark.parametrize("scenario, overrides, plan, gmv, cost, revenue", RECORDED)
def test_episode_totals_match_the_recorded_model(scenario, overrides, plan, gmv, cost, revenue) -> None:
    params = load_scenario(scenario, overrides).to_params()
    state = market.init_state(params, [seeding.np_random(s)[0] for s in SEEDS])
    total_gmv, total_cost, total_revenue = np.zeros(len(SEEDS)), np.zeros(len(SEEDS)), np.zeros(len(SEEDS))
    for t in range(params.horizon):
        state, out = market.step(params, state, _plan(plan, params, t))
        total_gmv += out["gmv"]
        total_cost += out["cost"]
        total_revenue += out["revenue"]
    np.testing.assert_allclose(total_gmv, gmv, rtol=1e-9, atol=0)
    np.testing.assert_allclose(total_cost, cost, rtol=1e-9, atol=0)
    np.testing.assert_allclose(total_revenue, revenue, rtol=1e-9, atol=0)


def test_rollout_equals_stepping() -> None:
    params = load_scenario("global").to_params()
    start = market.init_state(params, [seeding.np_random(s)[0] for s in SEEDS])
    plans = np.stack([_plan("ramp", params, t) for t in range(params.horizon)], axis=1)
    result = market.rollout(params, start, plans)
    state = start
    for t in range(params.horizon):
        state, out = market.step(params, state, plans[:, t])
        np.testing.assert_array_equal(result["gmv"][:, t], out["gmv"])
    np.testing.assert_array_equal(result["state"].regional, state.regional)


def test_replacing_a_parameter_leaves_the_original_params_unchanged() -> None:
    from dataclasses import replace

    soft = load_scenario("global", {"budget.mode": "soft"}).to_params()
    hard = replace(soft, hard_budget=True, horizon=4)
    assert soft.packed[0][0, 0, market.EPISODE.hard_budget] == 0.0 and soft.packed[0][0, 0, market.EPISODE.horizon] == 12.0
    assert hard.packed[0][0, 0, market.EPISODE.hard_budget] == 1.0 and hard.packed[0][0, 0, market.EPISODE.horizon] == 4.0


def test_model_functions_reject_wrong_shapes() -> None:
    params = load_scenario("global").to_params()
    state = market.init_state(params, [seeding.np_random(0)[0]])
    for shape in [(1, 5, market.N_LEVERS), (3, params.n_regions, market.N_LEVERS), (params.n_regions, market.N_LEVERS)]:
        with pytest.raises(ValueError, match="expected"):
            market.lever_costs(params, state, np.zeros(shape))
        with pytest.raises(ValueError, match="expected"):
            market.step(params, state, np.zeros(shape))
    for shape in [(1, 14), (21,), (1, 21, 1)]:
        with pytest.raises(ValueError, match="expected"):
            market.action_to_intensity(np.zeros(shape), params.n_regions)
    with pytest.raises(ValueError, match="NaN"):
        market.action_to_intensity(np.full((1, 21), np.nan), params.n_regions)


def test_step_leaves_its_input_state_unchanged() -> None:
    params = load_scenario("global").to_params()
    state = market.init_state(params, [seeding.np_random(0)[0]])
    before = state.copy()
    market.step(params, state, np.full((1, params.n_regions, market.N_LEVERS), 0.7))
    for name in ("regional", "t", "budget_remaining", "spent", "shock_z", "suspend_u"):
        np.testing.assert_array_equal(getattr(state, name), getattr(before, name), err_msg=name)


# ----------------------------------------------------------------------------- random numbers


def test_episode_draws_are_the_generators_own_numbers_and_advance_them_alike() -> None:
    params = load_scenario("global").to_params()
    ours = [seeding.np_random(s)[0] for s in range(5)]
    theirs = [seeding.np_random(s)[0] for s in range(5)]
    sources = market.random_sources(ours)
    assert sources.next_double is not None  # the compiled path
    for _ in range(2):  # two successive episodes
        u = market.draw_uniforms(params, sources)
        expected = np.stack([g.random((3, params.horizon, params.n_regions)) for g in theirs])
        np.testing.assert_array_equal(u, expected)
    for g, h in zip(ours, theirs):
        assert g.bit_generator.state == h.bit_generator.state


def test_mixed_bit_generators_fall_back_to_the_generator_calls() -> None:
    params = load_scenario("global").to_params()
    rngs = [np.random.Generator(np.random.MT19937(1)), np.random.Generator(np.random.PCG64(2))]
    sources = market.random_sources(rngs)
    assert sources.next_double is None
    u = market.draw_uniforms(params, sources)
    expected = [np.random.Generator(np.random.MT19937(1)), np.random.Generator(np.random.PCG64(2))]
    np.testing.assert_array_equal(u, np.stack([g.random((3, params.horizon, params.n_regions)) for g in expected]))


def test_shocks_are_box_muller_normals_of_the_draws() -> None:
    params = load_scenario("global").to_params()
    u = np.random.default_rng(3).random((2, 3, params.horizon, params.n_regions))
    state = market.start_state(params, u)
    z = np.sqrt(-2.0 * np.log1p(-u[:, 0])) * np.cos(2.0 * np.pi * u[:, 1])
    np.testing.assert_allclose(state.shock_z, z, rtol=1e-14, atol=1e-15)
    np.testing.assert_array_equal(state.suspend_u, u[:, 2])


def test_env_step_in_one_pass_equals_the_model_functions() -> None:
    """The faces' fused step (clip, step, observe, info in one compiled pass) is the model's."""
    from envs import SocialCommerceVectorEnv
    from tests.conftest import random_actions

    vec = SocialCommerceVectorEnv(num_envs=6, scenario="sea", overrides={"regions.sea.suspension_hazard": 0.5})
    params = vec.params
    vec.reset(seed=3)
    actions = random_actions(4, params.horizon, vec.action_space.shape, scale=1.3)  # some get clipped
    for a in actions:
        before = vec.state.copy()
        obs, reward, terminated, _, info = vec.step(a)
        state, out = market.step(params, before, market.action_to_intensity(a, params.n_regions))
        np.testing.assert_array_equal(vec.state.regional, state.regional)
        np.testing.assert_array_equal(obs, market.observe(params, state))
        np.testing.assert_array_equal(reward, out["reward"])
        np.testing.assert_array_equal(info["lever_intensity"], out["intensity"])
        np.testing.assert_array_equal(info["cost"], out["cost"])
        np.testing.assert_array_equal(info["budget_remaining"], state.budget_remaining)
        np.testing.assert_array_equal(terminated, state.t >= params.horizon)
        for j, lever in enumerate(market.LEVERS):
            np.testing.assert_allclose(info["cost_by_lever"][lever], out["cost_lever"][:, :, j].sum(1), rtol=1e-15)
        for k, region in enumerate(params.region_names):
            np.testing.assert_array_equal(info["gmv_by_region"][region], out["gmv_region"][:, k])
            np.testing.assert_array_equal(info["suspended"][region], out["dark"][:, k] > 0)
