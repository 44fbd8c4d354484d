"""The model's numbers do not drift, and its random numbers are the generators' own.

The totals below were recorded on purpose from market model v2 (``envs.MODEL_VERSION`` "2", now "2.1",
``flywheel/SocialCommerce-v1``): four seeded episodes, two open-loop plans, hard and soft
budgets; GMV, cost and revenue are matched to 1e-9 relative. A change of the model's numbers
must re-record them in a commit that says so (v1's totals, from the numpy model, ended with v1).
Re-recorded when ``global`` became the scenario fitted to the public record (``extends:
global_prior``; ``sea`` extends the fitted values too). The terminal values were recorded when
the terminal value became the exit quarter's (one more quarter at the null action from the final
state) instead of the last played quarter's; GMV, cost and revenue did not move then.
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
    # scenario, overrides, plan, cumulative GMV per seed ($B), total cost per seed ($B), total revenue per seed ($B),
    # terminal value per seed ($B: 4 quarters of the exit quarter's GMV)
    ("global", {}, "half", [81.3082596852, 75.0700138673, 66.1121416772, 79.8850012201], [4.0] * 4,
     [11.934475248, 10.9954558626, 9.6682091714, 11.7213795246],
     [37.3535731123, 35.7277001449, 31.688581324, 37.3881453156]),
    ("global", {}, "ramp", [80.3786669631, 74.6640164579, 64.799678684, 79.0100782451], [4.0] * 4,
     [9.9039381246, 9.1367583356, 7.6724577442, 9.6972531743],
     [39.3291524762, 37.9052768385, 33.7671582274, 39.3889845189]),
    ("sea", {}, "half", [57.5071416288, 56.8283930636, 56.7555810579, 54.1003107523], [2.0] * 4,
     [8.4574020334, 8.3613081305, 8.3519135164, 7.949848987],
     [23.5850316019, 23.684892405, 23.6629561354, 22.9299568442]),
    ("sea", {}, "ramp", [55.4459442638, 54.8790041684, 54.66644967, 51.9347062004], [2.0] * 4,
     [6.7744361233, 6.7300315951, 6.7031517771, 6.2948454677],
     [24.25257389, 24.3035232429, 24.2851542573, 23.6302430001]),
    ("global", {'budget.mode': 'soft'}, "half", [139.5996900681, 130.6841778961, 107.4782854145, 136.9060538857], [18.9266487602, 18.1688059432, 15.2774897101, 18.7532250515],
     [20.6353791502, 19.3010981437, 15.8462751471, 20.2329761164],
     [64.2021598321, 62.7405851413, 55.2938520746, 64.2021598321]),
    ("global", {'budget.mode': 'soft'}, "ramp", [104.2341010773, 96.584531449, 78.5145258022, 102.1183615714], [10.6660000896, 10.1772367993, 8.3104334504, 10.5727165393],
     [11.7802476836, 10.8987104504, 8.6799099722, 11.5104298809],
     [57.1129580792, 55.103045503, 47.416327488, 57.1129580792]),
]


@pytest.mark.parametrize("scenario, overrides, plan, gmv, cost, revenue, terminal", RECORDED)
def test_episode_totals_match_the_recorded_model(scenario, overrides, plan, gmv, cost, revenue, terminal) -> None:
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
    np.testing.assert_allclose(out["terminal_value"], terminal, rtol=1e-9, atol=0)


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


@pytest.mark.parametrize("n, threads", [(5, "1"), (130, "2")], ids=["one pass", "two threads"])
def test_drawing_an_episode_in_one_pass_equals_the_uniforms_then_the_transform(n, threads, monkeypatch) -> None:
    """The start's compiled path (draw and transform a market at a time, on threads from 128
    markets) gives exactly the numbers of ``draw_uniforms`` then ``start_state``, and leaves
    the generators where those leave them; generators of mixed types take the fallback, and one
    generator shared by every market is drawn from in market order."""
    monkeypatch.setenv("FLYWHEEL_ENV_THREADS", threads)
    params = load_scenario("global").to_params()
    shared = (np.random.default_rng(7), np.random.default_rng(7))  # one generator for every market
    for make in (lambda s: seeding.np_random(s)[0], lambda s: np.random.Generator(np.random.MT19937(s) if s % 2 else np.random.PCG64(s)), None):
        ours, theirs = ([make(s) for s in range(n)], [make(s) for s in range(n)]) if make else ([shared[0]] * n, [shared[1]] * n)
        for _ in range(2):  # two successive episodes
            shock_z, suspend_u = market.draw_episodes(params, market.random_sources(ours))
            expected = market.start_state(params, market.draw_uniforms(params, theirs))
            np.testing.assert_array_equal(shock_z, expected.shock_z)
            np.testing.assert_array_equal(suspend_u, expected.suspend_u)
        assert [g.random() for g in ours] == [h.random() for h in theirs]  # each generator left where the two calls leave it


def test_stepped_states_keep_contiguous_arrays_so_the_kernels_compile_once() -> None:
    """A state's arrays stay C-contiguous through steps: a strided one (a view of the step's
    outputs) would make numba compile every kernel a second time, ~30 s on first use."""
    params = load_scenario("global").to_params()
    state = market.init_state(params, [seeding.np_random(s)[0] for s in SEEDS])
    action = np.zeros((len(SEEDS), params.action_dim), dtype=np.float32)
    for _ in range(2):
        state, _ = market.step(params, state, np.full((len(SEEDS), params.n_regions, market.N_LEVERS), 0.5))
        state = market.env_step(params, state, action)[0]
        for name in ("regional", "t", "budget_remaining", "spent", "shock_z", "suspend_u", "param_set"):
            assert getattr(state, name).flags.c_contiguous, name
