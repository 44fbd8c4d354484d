"""The market model (v2): pure, batched functions over N parallel markets.

This module is the only implementation of the dynamics. The planners (best static plan,
clairvoyant oracle) and the tests call :func:`step`; the single env, the vector env and the SB3
adapter call :func:`env_step`, one compiled pass of the same per-market code. It imports
numpy and numba only and holds no parameters: every number comes from a scenario
(:mod:`envs.scenario`, ``configs/scenarios/*.yaml``) through :class:`Params`.

Shapes: ``n`` markets (environments), ``R`` regions, ``L = 7`` levers. Units: users and
buyers in millions (M), sellers and creators in thousands (k), money in $B, orders in M per
quarter, one step = one quarter.

``Hill(x; ec) = x / (x + ec)`` is the saturation curve of marketing-mix models (Meridian prior:
half-point ec about 0.8 of scaled spend, slope 1, so concave). Pool levers are scaled by the
region's ``pool_max``.

The quarter (the equations of :func:`step`; ``docs/model.md`` gives them with their reasons)
------------------------------------------------------------------------------------------------

Per region, with season ``s``, ``live = launched * (1 - dark)`` the share of the region where
the shop is open (``dark``: a random or scripted suspension):

1. Commission is a price: ``rate = u_0 * rate_max``. Below the region's ``reference_rate`` (a
   scenario value events can change) the difference is a discount counted as incentive spend;
   above it the premium earns revenue and drags seller joins and retention. The null action (no
   incentives) is every cash lever at 0 and ``rate = reference_rate``.
2. Attractiveness ``attr = w_sel*sel + sel*(w_ship*ship + w_fee*fee) + w_speed*fast
   + w_live*live``: ``ship = Hill(u_1*subsidy_max/ship_cost)``, ``fee`` the concave effect of
   the discount's share of the reference rate, ``fast`` the share of capacity the platform runs
   (warehousing), ``live = L*C/(C + C_half)``. The private label's share of GMV ``pl`` is
   concave in its push; its appeal acts on demand, ``x (1 + w_pl*pl*(appeal - 1))``.
3. Ad stock ``A = u_5*pool + theta*A``, reach ``Hill(A/pool)``.
4. Shopping-start share with memory, bounded by competitors:
   ``share += share_rate*(share_max*attr^2/(attr^2 + c) - share)``.
5. Buyers, Bass diffusion in two cohorts, innovation raised by ads, share and attention.
6. Demand ``D = B*f0*(base + attr)*(1 + w_pl*pl*(appeal - 1))*s*shock*live``; capacity follows the season,
   ``K = (kappa*S + W + P)*s`` (sellers' own fulfilment, platform warehousing, 3PL);
   served ``min(D, K) + spill*max(D - K, 0)``; the rest is ``orders_lost``.
7. Money on this quarter's served volume: GMV ``served*AOV``; the discount
   ``(ref - rate)^+ * gmv_3p``; shipping ``u_1*subsidy_max*served``; pools ``u*pool*live``
   (nothing is billed into a dark share); revenue ``rate*gmv_3p + ads_max*sel*gmv
   + margin*gmv_pl``.
8. Sellers: joins pulled by buyers (weakly), grants and a low rate; churn lowered by buyer
   penetration (buyers retain sellers: the pull that carries the flywheel past critical mass),
   raised by low trust, a rate above the reference and suspension.
9. Creators, livestream affinity, trust (hit convex in the private-label push), warehousing
   (one quarter's lag), 3PL capacity following unmet demand, users (logistic, faster with
   creator content), attention (the media stock: toward creators' content, drawn on by
   shoppable content), Gen Z habit.
10. Suspensions for the next quarter from this quarter's draws (visible before the decision).

Budget. Volume-priced levers are billed on this quarter's served volume, so cost is not linear
in the intensities; in hard mode, when the cost exceeds the cap ``min(per_quarter,
budget_remaining)``, every cash lever and the discount below the reference rate are scaled by
one factor ``k`` (the charged rate moves toward the reference; a rate above it is never scaled;
the private label costs nothing) found by a bracketed secant iteration on the monotone
``cost(k)``: the cost then equals the cap to 1e-12 and never exceeds it. Soft mode scales nothing.

Departures from the reference form in ``docs/model.md`` (each for a reason):

* Randomness. All of an episode's random numbers (a demand shock and a suspension draw per
  region and quarter) are drawn in :func:`init_state` from the environment's generator and kept
  in the state; :func:`step` itself is deterministic (common random numbers).
* Subsidies are complements of selection: free shipping and low commission convert demand
  only where there are sellers to buy from (timing value, fact 12).
* Selection is S-shaped in sellers (critical mass) instead of logarithmic; see ``_selection``.
* A suspension shuts a share of a region (Indonesia was about half of SEA's GMV), not always
  all of it.
* Orders per buyer and sellers' fulfilment per seller use per-region rates derived so that the
  start state reproduces the scenario's orders per buyer and capacity headroom.

Implementation. A market's quarter is written once, as scalar code over its regions compiled by
numba (:func:`step_market`; likewise :func:`observe_market` and :func:`clip_market`), and loop
kernels run it over every market. Parameters reach the kernels as per-quarter schedules, one per
parameter set: ``g`` ``(P, T, G)`` and ``rg`` ``(P, T, K, R)`` (:attr:`Params.packed`); market
``i`` reads set ``state.param_set[i]`` at its own quarter ``state.t[i]``. Scripted events are
compiled into these schedules (:func:`_schedules`), so the kernels never interpret events.
Every array a kernel reads or writes per market is market-major (``regional`` ``(n, F, R)``, the
step's outputs and scratch ``per_market`` ``(n, M)`` and ``per_region`` ``(n, P, R)``), so one
market's quarter touches a few contiguous cache lines. From :data:`PARALLEL_MIN_MARKETS` markets
the loops run on threads, a range of markets each (:func:`in_parts`); markets are independent,
so the numbers do not depend on the thread count. The terminal value's exit quarter (the
quarter after the horizon at the null action) runs in kernels of its own, called only for a
step in which some market ends its horizon (:func:`_finish_market`): inside the step's kernel
it slowed every quarter's step (docs/speed.md).

Layouts. The levers, the observation features, the info entries, the parameters and the
regional state are each declared once, as a table at the top of this module (entry types in
:mod:`envs.layout`). The kernels index through named tuples made from the tables
(``g[BUYERS.churn]``, ``obs[i, o + OBS.trust]``), which numba compiles as constants. To add a
parameter: a row in its table, a field in the scenario schema (:mod:`envs.scenario`), a value
with its source in the scenario files.
"""

from __future__ import annotations

import ctypes
import os
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, fields, replace
from typing import Any, NamedTuple

import numba
import numpy as np

from envs.layout import Feature, InfoEntry, Lever, Param, StateField, group_indices, indices, names

MODEL_VERSION = "2.1"
"""The model's version: run folders record it and refuse to load a run made on another. "2.1":
model v2 with the terminal value taken from the exit quarter (the quarter after the horizon: the
business left behind) instead of the last played quarter, changed on December 2, 2026; a policy
trained for one reward is not resumed under the other."""

# ----------------------------------------------------------------------------- layouts
# Every layout of the model is declared once here (entry types and what is generated from them:
# envs/layout.py). They sit in the kernels' file on purpose: numba folds these indices into the
# cached kernels, and only an edit of this file makes it recompile them.
LEVER_TABLE: tuple[Lever, ...] = (
    Lever("commission_rate", "commission charged, `u * rate_max` (null action: `reference_rate / rate_max`)",
          "`(reference_rate - rate)^+ * G_3p` (the discount; 0 at or above the reference)", "price"),
    Lever("shipping_subsidy", "subsidy per order `u * subsidy_max` (1 = free shipping)",
          "`u * subsidy_max * orders_served`", "sales"),
    Lever("seller_grants", "free listings and onboarding grants", "`u * pool_max * live`", "pool"),
    Lever("warehousing", "platform fulfilment capex (capacity from next quarter)", "`u * pool_max * live`", "pool"),
    Lever("creator_incentives", "livestream and affiliate bonus pool", "`u * pool_max * live`", "pool"),
    Lever("user_ads", "the platform's own marketing (geometric adstock)", "`u * pool_max * live`", "pool"),
    Lever("private_label", "push of own products; their GMV share `pl_max * c(u)`, concave", "0 (paid in GMV and trust)", "free"),
)
LEVER = indices("LEVER", LEVER_TABLE)
LEVERS: tuple[str, ...] = names(LEVER_TABLE)
N_LEVERS = len(LEVERS)
RATE, SHIPPING, PRIVATE_LABEL = LEVER.commission_rate, LEVER.shipping_subsidy, LEVER.private_label
WAIVER = RATE  # the v1 name of lever 0, kept for callers that index it
POOL_LEVERS = tuple(k for k, lever in enumerate(LEVER_TABLE) if lever.kind == "pool")
SPEND_LEVERS = tuple(k for k, lever in enumerate(LEVER_TABLE) if lever.kind != "free")
CASH_LEVERS = tuple(k for k, lever in enumerate(LEVER_TABLE) if lever.kind in ("sales", "pool"))
# the kernels loop over these as ranges
assert POOL_LEVERS == tuple(range(POOL_LEVERS[0], POOL_LEVERS[-1] + 1)), "pool levers must be contiguous"
assert SPEND_LEVERS == tuple(range(SPEND_LEVERS[-1] + 1)), "spend levers must come first"
assert CASH_LEVERS == tuple(range(1, SPEND_LEVERS[-1] + 1)), "cash levers follow the commission rate"

REGION_FEATURE_TABLE: tuple[Feature, ...] = (
    Feature("buyer_penetration", "buyers / users (penetration)", "share", 0.0, 1.0),
    Feature("selection", "selection index `Hill(S/S_half; n) / Hill(S_pot/S_half; n)` (S-shaped in sellers)", "index", 0.0, 1.0),
    Feature("creator_strength", "creator strength `C / (C + C_half)`", "index", 0.0, 1.0),
    Feature("user_saturation", "users / user ceiling", "share", 0.0, 1.0),
    Feature("capacity_cover", "capacity / last quarter's demand (both de-seasonalised) / 2", "ratio / 2, clipped", 0.0, 1.0),
    Feature("livestream", "livestream affinity / its ceiling", "share", 0.0, 1.0),
    Feature("trust", "seller trust", "index", 0.0, 1.0),
    Feature("ad_reach", "ad reach of the ad stock", "share", 0.0, 1.0),
    Feature("shopping_share", "shopping-start share (a stock; the start value at reset)", "share", 0.0, 1.0),
    Feature("genz_habit", "Gen Z habit stock", "index", 0.0, 1.0),
    Feature("suspension_left", "suspension quarters left / suspension length (visible before the decision)", "share, clipped", 0.0, 1.0),
    Feature("run_rate_vs_target", "region's annualised run rate / the scenario's target (`target_run_rate`)", "ratio, clipped", 0.0, 2.0),
    Feature("reference_rate", "next quarter's reference commission rate / rate_max", "share", 0.0, 1.0),
    Feature("attention", "attention, the media stock", "index", 0.0, 1.0),
    Feature("platform_fulfilment", "share of capacity the platform runs (warehousing)", "share", 0.0, 1.0),
)
GLOBAL_FEATURE_TABLE: tuple[Feature, ...] = (
    Feature("time_left", "quarters left / horizon", "share", 0.0, 1.0),
    Feature("budget_left", "budget left / total budget", "share", 0.0, 1.0),
    Feature("quarter_cap_left", "this quarter's cap / per-quarter cap", "share", 0.0, 1.0),
    Feature("next_season", "next quarter's season multiplier - 1", "multiplier - 1", -0.1, 0.2),
    Feature("spent_vs_total", "spent / total budget (above 1 only in soft mode)", "ratio, clipped", 0.0, 2.0),
    Feature("quarter_of_year", "calendar quarter of the next quarter: (Q - 1) / 3", "share", 0.0, 1.0),
)
OBS = indices("OBS", REGION_FEATURE_TABLE)
OBS_GLOBAL = indices("OBS_GLOBAL", GLOBAL_FEATURE_TABLE)
REGION_FEATURES: tuple[str, ...] = names(REGION_FEATURE_TABLE)
GLOBAL_FEATURES: tuple[str, ...] = names(GLOBAL_FEATURE_TABLE)
N_REGION_FEATURES, N_GLOBAL_FEATURES = len(REGION_FEATURES), len(GLOBAL_FEATURES)
OBS_LOW, OBS_HIGH = -1.0, 2.0
"""Bounds of the observation space: a margin around every feature's range (checked by a test),
kept fixed so that saved policies keep matching the space when a range is refined."""

INFO_TABLE: tuple[InfoEntry, ...] = (
    InfoEntry("gmv", None, float, "$B", "GMV this quarter (third party plus private label)"),
    InfoEntry("gmv_run_rate", None, float, "$B a year", "annualised GMV, de-seasonalised"),
    InfoEntry("gmv_by_region", "region", float, "$B", "GMV this quarter"),
    InfoEntry("cost", None, float, "$B", "incentive spend this quarter, `cash_spend + commission_discount` (what budgets limit)"),
    InfoEntry("cost_by_lever", "lever", float, "$B", "cost this quarter, summed over regions (the discount under `commission_rate`)"),
    InfoEntry("cost_limit", None, float, "$B", "this quarter's cap, `min(per_quarter, budget_remaining)` before spending"),
    InfoEntry("budget_remaining", None, float, "$B", "budget left after this quarter"),
    InfoEntry("cost_total", None, float, "$B", "cost so far"),
    InfoEntry("cost_limit_exceeded", None, bool, "", "cost so far > `budget.total` (soft mode only)"),
    InfoEntry("cash_spend", None, float, "$B", "paid out: shipping, grants, warehousing, creators, ads"),
    InfoEntry("commission_discount", None, float, "$B", "commission given up below the reference rates"),
    InfoEntry("revenue", None, float, "$B", "commission charged, shop ads and private-label margin"),
    InfoEntry("net_burn", None, float, "$B", "`cash_spend - revenue`"),
    InfoEntry("objective_value", None, float, "$B", "this quarter's value of the scenario's objective (GMV, revenue or contribution)"),
    InfoEntry("terminal_value", None, float, "$B", "value of the business left at the horizon: `terminal_value` quarters of the exit quarter's objective (last step only, else 0)"),
    InfoEntry("exit_run_rate", None, float, "$B a year", "annualised, de-seasonalised GMV of the exit quarter: the quarter after the horizon at the null action (last step only, else 0)"),
    InfoEntry("orders", "region", float, "M", "orders served this quarter"),
    InfoEntry("orders_lost", "region", float, "M", "orders demanded but not served (capacity)"),
    InfoEntry("shopping_start_share", "region", float, "share", "share of online shoppers starting here"),
    InfoEntry("buyers", "region", float, "M", "active buyers"),
    InfoEntry("sellers", "region", float, "k", "active sellers"),
    InfoEntry("creators", "region", float, "k", "selling creators"),
    InfoEntry("suspended", "region", bool, "", "part of the region was dark this quarter (suspension or not yet launched)"),
    InfoEntry("clipped_actions", None, int, "count", "action entries outside [-1, 1], clipped"),
    InfoEntry("quarter", None, int, "quarters", "quarters played"),
    InfoEntry("quarter_label", None, str, "", "calendar quarter just played, e.g. `2023Q1` (at reset: the start state's)"),
)
"""The scalar entries of a market's ``info``, in the order of the info table
(:func:`fill_info_market` writes them in this order). ``lever_intensity`` and
``spend_by_region_lever`` (arrays ``(n_regions, n_levers)`` per market) are kept beside the table."""

OBJECTIVES: tuple[str, ...] = ("gmv", "revenue", "contribution")
"""Objective kinds, in the order of the code ``g[EPISODE.objective_kind]``."""

_PARAMS_BY_GROUP: dict[str, tuple[tuple[str, str, str], ...]] = {
    "attr": (
        ("w_selection", "weight", "weight of selection in attractiveness"),
        ("w_shipping", "weight", "weight of the shipping subsidy (times selection)"),
        ("w_fee", "weight", "weight of the commission discount (times selection)"),
        ("w_speed", "weight", "weight of platform-run (fast) fulfilment"),
        ("w_live", "weight", "weight of livestream content"),
        ("w_private_label", "weight", "demand per unit private-label share and unit of appeal above 1"),
        ("shipping_ec", "ratio", "Hill half-point of subsidy / shipping cost"),
        ("fee_ec", "share", "half-point of the discount's concave effect"),
        ("hill_ec", "ratio", "Hill half-point of pool spend / pool_max"),
        ("selection_slope", "slope", "Hill slope of selection in sellers (>1: critical mass)"),
        ("private_label_ec", "share", "half-point of the private label's concave share"),
    ),
    "buyers": (
        ("bass_p", "per quarter", "Bass innovation"),
        ("bass_q", "per quarter", "Bass imitation"),
        ("ad_lift", "multiplier", "innovation multiplier at full ad reach"),
        ("churn", "per quarter", "buyer churn at zero attractiveness"),
        ("loyalty", "per unit attr", "churn reduction per unit attractiveness"),
        ("share_rate", "per quarter", "adjustment of the shopping-start share toward its target"),
        ("genz_imitation", "multiplier", "Gen Z imitation multiplier"),
        ("habit_rate", "per quarter", "Gen Z habit stock adjustment"),
        ("habit_loyalty", "share", "Gen Z churn reduction at full habit"),
        ("base_orders", "multiplier", "intercept of the orders multiplier"),
        ("spill", "share", "share of orders over capacity still served"),
        ("attention_weight", "elasticity", "innovation's response to attention relative to the start"),
    ),
    "sellers": (
        ("join_rate", "per quarter", "organic seller join rate"),
        ("grant_rate", "per quarter", "extra join rate at full grant pool"),
        ("buyer_elasticity", "elasticity", "elasticity of joins to buyer penetration"),
        ("reference_penetration", "share", "buyer penetration at which the pulls are 1"),
        ("commission_drag", "per unit rate", "join reduction per unit commission rate charged"),
        ("rate_churn", "per unit rate", "extra churn per unit rate above the reference"),
        ("churn", "per quarter", "seller churn at full trust and the reference penetration"),
        ("trust_churn", "multiplier", "extra churn multiplier at zero trust"),
        ("suspended_churn", "per quarter", "extra churn while suspended"),
    ),
    "creators": (
        ("join_rate", "per quarter", "organic creator join rate"),
        ("pool_rate", "per quarter", "extra join rate at full creator pool"),
        ("churn", "per quarter", "creator churn"),
        ("live_rate", "per quarter", "livestream affinity adoption"),
        ("user_boost", "multiplier", "user growth multiplier from creator content"),
    ),
    "platform": (
        ("ad_decay", "per quarter", "geometric adstock theta"),
        ("trust_recovery", "per quarter", "trust recovery toward 1"),
        ("trust_hit", "per quarter", "trust lost at full private-label push (times u^2)"),
        ("warehouse_depreciation", "per quarter", "platform warehousing depreciation"),
        ("logistics_rate", "per quarter", "3PL capacity added per unit of last quarter's unmet demand"),
        ("logistics_depreciation", "per quarter", "3PL capacity depreciation"),
        ("capex_per_order", "$ per order/quarter", "warehousing capex per unit of capacity"),
        ("shop_ads_max", "share of GMV", "shop-ads revenue at full selection"),
        ("private_label_margin", "share", "margin on private-label GMV"),
        ("attention_rate", "per quarter", "attention adjustment toward creators' content"),
        ("attention_draw", "share", "attention drawn by shoppable content at full selection"),
    ),
    "": (
        ("demand_sigma", "log sd", "demand shock per quarter (0 when deterministic)"),
        ("budget_per_quarter", "$B", "spending cap per quarter"),
        ("budget_total", "$B", "budget over the horizon"),
        ("hard_budget", "flag", "1: spend is projected onto the cap; 0: soft mode"),
        ("horizon", "quarters", "quarters in an episode"),
        ("start_quarter", "quarter index", "calendar quarter of the first step, 0-based"),
        ("start_serial", "quarters", "year * 4 + start_quarter of the first step (for quarter labels)"),
        ("target_run_rate", "$B a year", "the strategic GMV goal"),
        ("objective_kind", "code", "0 gmv, 1 revenue, 2 contribution (revenue - cash_spend)"),
        ("terminal_value", "quarters", "quarters of the exit quarter's objective added to the last reward (the quarter after the horizon at the null action, de-seasonalised)"),
    ),
}
GLOBAL_PARAM_TABLE: tuple[Param, ...] = tuple(
    Param(group, name, unit, description) for group, rows in _PARAMS_BY_GROUP.items() for name, unit, description in rows
)
"""The scalar coefficients, in the order of the last axis of :attr:`Params.packed`'s ``g``."""
ATTR = group_indices("ATTR", GLOBAL_PARAM_TABLE, "attr")
BUYERS = group_indices("BUYERS", GLOBAL_PARAM_TABLE, "buyers")
SELLERS = group_indices("SELLERS", GLOBAL_PARAM_TABLE, "sellers")
CREATORS = group_indices("CREATORS", GLOBAL_PARAM_TABLE, "creators")
PLATFORM = group_indices("PLATFORM", GLOBAL_PARAM_TABLE, "platform")
EPISODE = group_indices("EPISODE", GLOBAL_PARAM_TABLE, "")

REGION_PARAM_TABLE: tuple[Param, ...] = (
    Param("region", "users_max", "M", "user ceiling"),
    Param("region", "user_growth", "per quarter", "logistic user growth"),
    Param("region", "genz_share", "share", "Gen Z share of users"),
    Param("region", "sellers_potential", "k", "seller ceiling"),
    Param("region", "sellers_half", "k", "selection half-point"),
    Param("region", "creators_potential", "k", "creator ceiling"),
    Param("region", "creators_half", "k", "live half-point"),
    Param("region", "aov", "$", "average order value"),
    Param("region", "livestream_max", "share", "livestream affinity ceiling"),
    Param("region", "reference_rate", "share", "the commission rate sellers expect (events can change it)"),
    Param("region", "rate_max", "share", "commission rate at full intensity of lever 0"),
    Param("region", "shipping_cost", "$ per order", "shipping cost"),
    Param("region", "subsidy_max", "$ per order", "subsidy at full shipping intensity"),
    Param("region", "pool_max", "$B per quarter", "cost of a pool lever at full intensity"),
    Param("region", "shopping_share", "share", "shopping-start share at the start"),
    Param("region", "share_max", "share", "ceiling of the shopping-start share (competitors keep the rest)"),
    Param("region", "private_label_max", "share", "private label's GMV share at full push"),
    Param("region", "private_label_appeal", "ratio", "demand for the label relative to the sellers' goods it displaces"),
    Param("region", "suspension_hazard", "per quarter", "suspension hazard (0 when deterministic)"),
    Param("region", "suspension_quarters", "quarters", "length of a random suspension"),
    Param("region", "suspension_share", "share", "share of the region's demand a random suspension shuts off"),
    Param("derived", "scripted_dark", "share", "share of the region dark this quarter by a scripted suspension"),
    Param("derived", "scripted_left", "quarters", "quarters of scripted suspension left, this one included"),
    Param("derived", "launched", "flag", "1 once the region's shop is live (scripted launch)"),
    Param("derived", "attr0", "index", "attractiveness of the start state under the null action"),
    Param("derived", "order_rate", "orders per buyer", "base order rate f0 = orders_per_buyer / (base_orders + attr0)"),
    Param("derived", "share_c", "attr^2", "competitors' attraction in the share target, set by the start share"),
    Param("derived", "selection_norm", "ratio", "1 / Hill(S_pot/S_half; n): selection is 1 at the seller ceiling"),
    Param("derived", "seller_capacity", "M orders per k sellers", "sellers' own fulfilment per seller, set by the start headroom"),
    Param("derived", "attention0", "index", "attention of the start state"),
    # reciprocals and products the kernels multiply by (a division costs ~15 multiplications)
    Param("derived", "inv_reference_rate", "1/share", "1 / reference_rate (0 if the reference is 0)"),
    Param("derived", "inv_rate_max", "1/share", "1 / rate_max"),
    Param("derived", "subsidy_ratio", "ratio", "subsidy_max / shipping_cost"),
    Param("derived", "inv_pool", "1/$B", "1 / pool_max (0 if 0)"),
    Param("derived", "inv_shopping_share", "1/share", "1 / shopping_share"),
    Param("derived", "inv_attention0", "1/index", "1 / attention0"),
    Param("derived", "aov_b", "$B per M orders", "aov / 1000"),
    Param("derived", "subsidy_b", "$B per M orders", "subsidy_max / 1000"),
    Param("derived", "inv_users_max", "1/M", "1 / users_max"),
    Param("derived", "inv_sellers_half", "1/k", "1 / sellers_half"),
    Param("derived", "inv_livestream_max", "1/share", "1 / livestream_max (0 if 0)"),
    Param("derived", "warehouse_per_intensity", "M orders/quarter", "capacity a full warehousing pool adds: pool_max * 1000 / capex_per_order"),
)
"""The per-region coefficients, in the row order of the third axis of :attr:`Params.packed`'s ``rg``."""
REGION = indices("REGION", REGION_PARAM_TABLE)
N_REGION_PARAMS = len(REGION_PARAM_TABLE)

STATE_TABLE: tuple[StateField, ...] = (
    StateField("users", "M", "monthly active users U"),
    StateField("buyers_genz", "M", "Gen Z buyers"),
    StateField("buyers_older", "M", "older buyers"),
    StateField("habit", "index", "Gen Z habit stock in [0, 1]"),
    StateField("sellers", "k", "active sellers S"),
    StateField("creators", "k", "selling creators C"),
    StateField("warehouse", "M orders/quarter", "platform warehousing capacity W (de-seasonalised)"),
    StateField("logistics", "M orders/quarter", "third-party logistics capacity P (de-seasonalised)"),
    StateField("livestream", "share", "livestream affinity L"),
    StateField("trust", "index", "seller trust T"),
    StateField("adstock", "$B", "ad stock A"),
    StateField("attention", "index", "attention E, the media stock"),
    StateField("orders", "M per quarter", "last quarter's served orders"),
    StateField("demand", "M per quarter", "last quarter's demand, de-seasonalised"),
    StateField("gmv_region", "$B", "last quarter's GMV"),
    StateField("suspended", "quarters", "quarters of random suspension left X"),
    StateField("selection", "index", "selection index of S (computed once a quarter)"),
    StateField("share", "share", "shopping-start share (a stock)"),
)
"""The per-region state, in the row order of :attr:`State.regional`."""
F = indices("F", STATE_TABLE)
REGIONAL_FIELDS: tuple[str, ...] = names(STATE_TABLE)

_FAST = {"nsz", "arcp", "contract", "afn", "reassoc"}
compiled = numba.njit(cache=True, nogil=True, error_model="numpy", fastmath=_FAST)
"""Compiled, cached on disk, IEEE semantics (x/0 gives inf or nan as in numpy, never raises).

Every kernel that calls the model's compiled functions lives in this module: numba invalidates
a cached kernel only when its own file changes, so a kernel elsewhere would keep running an
old copy of the model after an edit here."""
per_market_kernel = numba.njit(cache=True, nogil=True, error_model="numpy", inline="always", fastmath=_FAST)
"""As :data:`compiled`, for the per-market bodies the loop kernels call: inlined into each caller
(a call passing a dozen arrays per market costs as much as the market's arithmetic)."""


@compiled
def hill(x, ec):
    """Hill saturation with slope 1: ``x / (x + ec)`` (scalars or arrays)."""
    return x / (x + ec)


@compiled
def fee_effect(u, ec):
    """Concave curve ``u (1 + ec) / (u + ec)``: 0 at 0, 1 at 1 (the discount's effect, the private label's share)."""
    return u * (1.0 + ec) / (u + ec)


@compiled
def _power(x, e):
    """``x ** e`` for scalars ``x >= 0``, faster than libm's pow (the model's costliest calls).

    Small integer exponents are plain products; others ``exp(e * log x)`` (relative error a few
    1e-15 at the model's magnitudes).
    """
    if e == 3.0:
        return x * x * x
    if e == 2.0:
        return x * x
    if e == 1.0:
        return x
    if x > 0.0:
        return np.exp(e * np.log(x))
    return x**e


@numba.vectorize(["float64(float64, float64, float64, float64)"], cache=True)
def _selection(sellers, sellers_half, norm, slope):
    """Selection index in [0, 1]: ``Hill(S/S_half; 1, n) / Hill(S_pot/S_half; 1, n)``.

    ``norm = 1 / Hill(S_pot/S_half; 1, n)`` (:func:`selection_norm`). With slope ``n > 1`` the
    curve is S-shaped: below about ``S_half`` sellers a marketplace offers too little choice to
    pull buyers (critical mass), above it the pull saturates.
    """
    x = _power(sellers / sellers_half, slope)
    return x / (1.0 + x) * norm


def selection_norm(region: dict, slope: float) -> np.ndarray:
    """``(1 + x_pot) / x_pot`` with ``x_pot = (S_pot/S_half)^n``: selection is 1 at the seller ceiling."""
    x_pot = (np.asarray(region["sellers_potential"]) / np.asarray(region["sellers_half"])) ** slope
    return (1.0 + x_pot) / x_pot


def selection_index(sellers: np.ndarray, region: dict, slope: float) -> np.ndarray:
    """The selection index of ``sellers`` (shape ``(..., R)``) in a scenario's regions."""
    return _selection(sellers, region["sellers_half"], selection_norm(region, slope), slope)


# ----------------------------------------------------------------------------- parameters
class Event(NamedTuple):
    """A scripted event compiled from a scenario (:mod:`envs.scenario` validates them).

    ``t``: quarter index (0 = the first quarter played); ``region``: region index, or -1 for a
    scalar parameter; ``kind``: ``"suspend"`` (``value`` = share, ``quarters``), ``"reference_rate"``
    (``value``), ``"launch"`` or ``"set"`` (``target`` = ``(group, name)`` of a parameter table
    entry, ``value``: from quarter ``t`` on).
    """

    t: int
    region: int
    kind: str
    value: float = 0.0
    quarters: int = 0
    target: tuple[str, str] = ("", "")


@dataclass(frozen=True)
class Params:
    """Scenario parameters as arrays (built by :meth:`envs.scenario.Scenario.to_params`).

    ``region`` maps each per-region field of the scenario to an array of shape ``(R,)``;
    ``attr``, ``buyers``, ``sellers``, ``creators`` and ``platform`` map coefficient names to
    floats. ``start_year`` and ``start_quarter`` (0-based) name the first quarter played;
    ``events`` are compiled into per-quarter schedules. Derived quantities and the packed arrays
    the kernels read (:attr:`packed`) are computed once here.
    """

    region_names: tuple[str, ...]
    horizon: int
    start_quarter: int
    season: np.ndarray
    target_run_rate: float
    hard_budget: bool
    budget_per_quarter: float
    budget_total: float
    demand_sigma: float
    suspension_hazard: np.ndarray
    suspension_quarters: np.ndarray
    suspension_share: np.ndarray
    attr: dict
    buyers: dict
    sellers: dict
    creators: dict
    platform: dict
    region: dict
    start_year: int = 2023
    objective_kind: int = 0
    terminal_value: float = 0.0
    events: tuple = ()
    derived: dict = field(default_factory=dict, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "derived", {})  # a fresh dict: dataclasses.replace must not share it
        g, rg = _schedules(self)
        start, derived0 = _start_regional(self, rg[0])
        self.derived.update(derived0)
        for name in ("attr0", "order_rate", "share_c", "seller_capacity", "attention0"):
            rg[:, getattr(REGION, name)] = derived0[name]  # calibrated on the start, the same every quarter
        rg[:, REGION.inv_attention0] = 1.0 / derived0["attention0"]
        self.derived["g"], self.derived["rg"] = g[None], rg[None]
        self.derived["season"] = np.asarray(self.season, dtype=np.float64)
        self.derived["start"] = start[None]
        self.derived["packed"] = (self.derived["g"], self.derived["rg"], self.derived["season"])
        self.derived["info_entries"] = sum(1 if sub is None else len(sub) for _, sub, _ in info_layout(self.region_names))

    @property
    def packed(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``(g, rg, season)``: scalar coefficients ``(P, T, G)``, per-region coefficients
        ``(P, T, K, R)`` (parameter sets x quarters), season (4,)."""
        return self.derived["packed"]

    @property
    def n_regions(self) -> int:
        return len(self.region_names)

    @property
    def action_dim(self) -> int:
        return self.n_regions * N_LEVERS

    @property
    def obs_dim(self) -> int:
        return self.n_regions * N_REGION_FEATURES + N_GLOBAL_FEATURES

    @property
    def objective(self) -> str:
        return OBJECTIVES[self.objective_kind]

    def season_at(self, t: np.ndarray) -> np.ndarray:
        return self.season[(self.start_quarter + t) % 4]

    def quarter_label(self, t: int) -> str:
        """Calendar label of quarter index ``t`` (0 = the first quarter played, -1 = the start state's)."""
        return serial_label(self.start_year * 4 + self.start_quarter + int(t))

    def schedule(self, name: str, param_set: int = 0) -> np.ndarray:
        """A per-region parameter's schedule, shape ``(horizon, R)`` (events applied)."""
        return self.derived["rg"][param_set, :, getattr(REGION, name)]


def serial_label(serial: int) -> str:
    """``year * 4 + quarter_index`` to ``"2023Q1"``."""
    serial = int(serial)
    return f"{serial // 4}Q{serial % 4 + 1}"


_GROUP_OF = {"attr": "attr", "buyers": "buyers", "sellers": "sellers", "creators": "creators", "platform": "platform"}


def _schedules(p: Params) -> tuple[np.ndarray, np.ndarray]:
    """The per-quarter parameter arrays of one parameter set, events applied: ``g`` ``(T, G)``
    and ``rg`` ``(T, K, R)``."""
    T, R = p.horizon, p.n_regions
    groups = {"attr": p.attr, "buyers": p.buyers, "sellers": p.sellers, "creators": p.creators, "platform": p.platform}
    scalars = {
        "demand_sigma": p.demand_sigma, "budget_per_quarter": p.budget_per_quarter, "budget_total": p.budget_total,
        "hard_budget": float(p.hard_budget), "horizon": p.horizon, "start_quarter": p.start_quarter,
        "start_serial": p.start_year * 4 + p.start_quarter,
        "target_run_rate": p.target_run_rate, "objective_kind": p.objective_kind, "terminal_value": p.terminal_value,
    }
    g0 = np.array([groups[q.group][q.name] if q.group else scalars[q.name] for q in GLOBAL_PARAM_TABLE], dtype=np.float64)
    per_region = {
        **p.region,
        "suspension_hazard": p.suspension_hazard,
        "suspension_quarters": p.suspension_quarters,
        "suspension_share": p.suspension_share,
    }
    rg0 = np.zeros((len(REGION_PARAM_TABLE), R))
    for k, q in enumerate(REGION_PARAM_TABLE):
        if q.group == "region":
            rg0[k] = np.broadcast_to(np.asarray(per_region[q.name], dtype=np.float64), (R,))
    rg0[REGION.launched] = 1.0
    g = np.repeat(g0[None], T, axis=0)
    rg = np.repeat(rg0[None], T, axis=0)
    for e in sorted(p.events, key=lambda e: e.t):
        j, t = e.region, e.t
        if e.kind == "suspend":
            end = min(T, t + e.quarters)
            rg[t:end, REGION.scripted_dark, j] = np.maximum(rg[t:end, REGION.scripted_dark, j], e.value)
            # quarters left are counted past the horizon: the exit quarter is dark only if the
            # suspension runs beyond the last played quarter (_exit_quarter)
            for q in range(t, end):
                rg[q, REGION.scripted_left, j] = max(rg[q, REGION.scripted_left, j], t + e.quarters - q)
        elif e.kind == "reference_rate":
            rg[t:, REGION.reference_rate, j] = e.value
        elif e.kind == "launch":
            rg[:t, REGION.launched, j] = 0.0
        elif e.kind == "set":
            group, name = e.target
            if group == "region":
                rg[t:, getattr(REGION, name), j] = e.value
            else:
                g[t:, GLOBAL_PARAM_TABLE.index(next(q for q in GLOBAL_PARAM_TABLE if q.group == group and q.name == name))] = e.value
        else:  # pragma: no cover - the scenario schema admits no other kind
            raise ValueError(f"unknown event kind {e.kind!r}")
    # quantities derived from each quarter's parameters
    slope = g[:, ATTR.selection_slope][:, None]
    x_pot = (rg[:, REGION.sellers_potential] / rg[:, REGION.sellers_half]) ** slope
    rg[:, REGION.selection_norm] = (1.0 + x_pot) / x_pot

    def inverse(x: np.ndarray) -> np.ndarray:
        """``1 / x``, and 0 where ``x`` is 0 or so small (subnormal) that ``1 / x`` overflows."""
        return np.divide(1.0, x, out=np.zeros_like(x), where=x > 1e-300)

    rg[:, REGION.inv_reference_rate] = inverse(rg[:, REGION.reference_rate])
    rg[:, REGION.inv_rate_max] = inverse(rg[:, REGION.rate_max])
    rg[:, REGION.subsidy_ratio] = rg[:, REGION.subsidy_max] / rg[:, REGION.shipping_cost]
    rg[:, REGION.inv_pool] = inverse(rg[:, REGION.pool_max])
    rg[:, REGION.inv_shopping_share] = inverse(rg[:, REGION.shopping_share])
    rg[:, REGION.aov_b] = rg[:, REGION.aov] / 1000.0
    rg[:, REGION.subsidy_b] = rg[:, REGION.subsidy_max] / 1000.0
    rg[:, REGION.inv_users_max] = inverse(rg[:, REGION.users_max])
    rg[:, REGION.inv_sellers_half] = inverse(rg[:, REGION.sellers_half])
    rg[:, REGION.inv_livestream_max] = inverse(rg[:, REGION.livestream_max])
    rg[:, REGION.warehouse_per_intensity] = rg[:, REGION.pool_max] * 1000.0 / g[:, PLATFORM.capex_per_order][:, None]
    return g, rg


def _start_regional(p: Params, rq: np.ndarray) -> tuple[np.ndarray, dict]:
    """The calibrated start of one market's regional state ``(F, R)`` (no randomness), and the
    derived per-region rates written into ``rq`` (quarter 0's row of every quarter's array).

    The start state is the quarter before the first step (its orders and GMV carry that
    quarter's season), so run rates and cover ratios are consistent from step 0.
    """
    r, a, b = p.region, p.attr, p.buyers
    slope = a["selection_slope"]
    season_prev = p.season[(p.start_quarter - 1) % 4]
    sel0 = _selection(r["sellers"], r["sellers_half"], rq[REGION.selection_norm], slope)
    content0 = r["creators"] / (r["creators"] + r["creators_half"])
    live0 = r["livestream_affinity"] * content0
    attr0 = a["w_selection"] * sel0 + a["w_live"] * live0  # null action, no platform fulfilment yet
    share0 = r["shopping_share"]
    attention0 = content0 * (1.0 - p.platform["attention_draw"] * sel0)
    orders_ds = r["buyers"] * r["orders_per_buyer"]  # de-seasonalised orders of the start quarter
    derived = dict(
        attr0=attr0,
        order_rate=r["orders_per_buyer"] / (b["base_orders"] + attr0),
        share_c=attr0 * attr0 * (np.asarray(r["share_max"]) / share0 - 1.0),
        seller_capacity=r["capacity_headroom"] * orders_ds / r["sellers"],
        attention0=attention0,
    )
    start = np.empty((len(REGIONAL_FIELDS), p.n_regions))
    start[F.users] = r["users"]
    start[F.buyers_genz] = r["buyers"] * r["genz_buyer_share"]
    start[F.buyers_older] = r["buyers"] * (1.0 - r["genz_buyer_share"])
    start[F.habit] = 0.0
    start[F.sellers] = r["sellers"]
    start[F.creators] = r["creators"]
    start[F.warehouse] = 0.0
    start[F.logistics] = 0.0
    start[F.livestream] = r["livestream_affinity"]
    start[F.trust] = 1.0
    start[F.adstock] = 0.0
    start[F.attention] = attention0
    start[F.orders] = orders_ds * season_prev
    start[F.demand] = orders_ds
    start[F.gmv_region] = orders_ds * season_prev * r["aov"] / 1000.0
    start[F.suspended] = 0.0
    start[F.selection] = sel0
    start[F.share] = share0
    return start, {**derived, "selection0": sel0}


# ----------------------------------------------------------------------------- state
@dataclass
class State:
    """State of ``n`` markets; every array has a leading ``n``.

    ``regional`` ``(n, len(REGIONAL_FIELDS), R)`` holds the per-region quantities of
    :data:`STATE_TABLE`; each is also an attribute (``state.sellers``, shape ``(n, R)``, a view:
    assigning to it writes into ``regional``). Per market: quarter index ``t`` (quarters played),
    parameter set ``param_set`` (an index into :attr:`Params.packed`), budget remaining and spent
    so far ($B); and the episode's pre-drawn random numbers (``shock_z``, ``suspend_u``, shape
    ``(n, horizon, R)``).
    """

    regional: np.ndarray
    t: np.ndarray
    budget_remaining: np.ndarray
    spent: np.ndarray
    shock_z: np.ndarray
    suspend_u: np.ndarray
    param_set: np.ndarray

    @property
    def n(self) -> int:
        return self.t.shape[0]

    @property
    def buyers(self) -> np.ndarray:
        return self.buyers_genz + self.buyers_older

    @property
    def capacity(self) -> np.ndarray:
        """Fulfilment capacity outside sellers' own, de-seasonalised: warehousing plus 3PL (M orders/quarter)."""
        return self.warehouse + self.logistics

    def copy(self) -> "State":
        return replace(self, **{f.name: getattr(self, f.name).copy() for f in fields(self)})

    def take(self, index: np.ndarray) -> "State":
        """A new state holding the markets ``index`` (an int array or boolean mask)."""
        return State(**{f.name: getattr(self, f.name)[index].copy() for f in fields(self)})

    def repeat(self, k: int) -> "State":
        """Each market repeated ``k`` times (market-major), e.g. to roll out k plans per episode."""
        return State(**{f.name: np.repeat(getattr(self, f.name), k, axis=0) for f in fields(self)})


def _regional_property(k: int, name: str) -> property:
    def get(self: State) -> np.ndarray:
        return self.regional[:, k]

    def set(self: State, value: np.ndarray) -> None:
        self.regional[:, k] = value

    return property(get, set, doc=f"``{name}`` of every market and region, shape ``(n, R)`` (a view of ``regional``).")


for _k, _name in enumerate(REGIONAL_FIELDS):
    setattr(State, _name, _regional_property(_k, _name))


class RandomSources(NamedTuple):
    """The generators of ``n`` markets and, when they allow it, their C interface.

    ``next_double`` and ``states`` are numpy's documented ``BitGenerator.ctypes`` interface (the
    one numpy's own numba example uses): one C function shared by the generators and each
    generator's state address, so one compiled call can draw for every market. They are
    ``None`` when the generators are not all of one bit-generator type. ``distinct``: no
    generator serves two markets (then markets may draw on separate threads).
    """

    generators: list
    next_double: Any
    states: np.ndarray | None
    distinct: bool = True


def random_sources(rngs: list[np.random.Generator]) -> RandomSources:
    """Inspect ``rngs`` once (per seeding) for :func:`draw_uniforms`."""
    interfaces = [g.bit_generator.ctypes for g in rngs]
    functions = {ctypes.cast(c.next_double, ctypes.c_void_p).value for c in interfaces}
    if len(functions) != 1:
        return RandomSources(list(rngs), None, None)
    states = np.array([c.state_address for c in interfaces], dtype=np.uintp)
    return RandomSources(list(rngs), interfaces[0].next_double, states, bool(np.unique(states).size == states.size))


@numba.njit(cache=True)  # holds the GIL: it advances the generators' states
def _draw_kernel(next_double, states, out):
    n, k = out.shape
    for i in range(n):
        state = states[i]
        for j in range(k):
            out[i, j] = next_double(state)


def draw_uniforms(params: "Params", rngs: "list[np.random.Generator] | RandomSources") -> np.ndarray:
    """One episode of random numbers per market, ``(n, 3, horizon, R)`` uniforms in [0, 1).

    Market ``i``'s numbers are exactly ``rngs[i].random((3, horizon, R))``: always the same count
    and order whatever the scenario's noise level, so that a seed means the same future in
    stochastic and deterministic variants. With :class:`RandomSources` of one bit-generator
    type, one compiled call draws them for every market.
    """
    sources = rngs if isinstance(rngs, RandomSources) else random_sources(rngs)
    u = np.empty((len(sources.generators), 3, params.horizon, params.n_regions))
    if sources.next_double is not None:
        _draw_kernel(sources.next_double, sources.states, u.reshape(u.shape[0], -1))
    else:
        for i, g in enumerate(sources.generators):
            g.random(out=u[i])
    return u


@per_market_kernel
def _standard_normal(u0, u1):
    """A standard normal from two uniforms in [0, 1) (Box-Muller)."""
    return np.sqrt(-2.0 * np.log1p(-u0)) * np.cos(2.0 * np.pi * u1)


@compiled
def _numbers_kernel(u, shock_z, suspend_u, lo, hi):
    """The episode's numbers of markets ``lo`` to ``hi - 1`` from their uniforms ``u``
    ``(n, 3, horizon, R)``: demand shocks, standard normals from the first two thirds
    (:func:`_standard_normal`), and suspension draws, the last third."""
    _, _, horizon, R = u.shape
    for i in range(lo, hi):
        for q in range(horizon):
            for j in range(R):
                shock_z[i, q, j] = _standard_normal(u[i, 0, q, j], u[i, 1, q, j])
                suspend_u[i, q, j] = u[i, 2, q, j]


@compiled
def _draw_numbers_kernel(next_double, states, shock_z, suspend_u, lo, hi):
    """As :func:`_draw_kernel` then :func:`_numbers_kernel` for markets ``lo`` to ``hi - 1``, in
    one pass without the uniforms' array: the first third of a market's draws waits in
    ``shock_z``. Releases the GIL: each market's generator state is advanced by the one thread
    that owns its range (the generators must not be used elsewhere meanwhile)."""
    _, horizon, R = shock_z.shape
    for i in range(lo, hi):
        state = states[i]
        for q in range(horizon):
            for j in range(R):
                shock_z[i, q, j] = next_double(state)
        for q in range(horizon):
            for j in range(R):
                shock_z[i, q, j] = _standard_normal(shock_z[i, q, j], next_double(state))
        for q in range(horizon):
            for j in range(R):
                suspend_u[i, q, j] = next_double(state)


def draw_episodes(params: "Params", rngs: "list[np.random.Generator] | RandomSources") -> tuple[np.ndarray, np.ndarray]:
    """One episode's random numbers per market: demand shocks ``shock_z`` (standard normals)
    and suspension draws ``suspend_u`` (uniforms), each ``(n, horizon, R)``, made from exactly
    the uniforms of :func:`draw_uniforms` (so from ``rngs[i].random((3, horizon, R))``)."""
    sources = rngs if isinstance(rngs, RandomSources) else random_sources(rngs)
    n = len(sources.generators)
    shape = (n, params.horizon, params.n_regions)
    shock_z, suspend_u = np.empty(shape), np.empty(shape)
    if sources.next_double is not None:
        def draw(lo: int, hi: int) -> None:
            _draw_numbers_kernel(sources.next_double, sources.states, shock_z, suspend_u, lo, hi)

        if sources.distinct:
            in_parts(n, draw)
        else:  # a generator shared by several markets is drawn from in market order, on one thread
            draw(0, n)
    else:
        u = draw_uniforms(params, sources)
        in_parts(n, lambda lo, hi: _numbers_kernel(u, shock_z, suspend_u, lo, hi))
    return shock_z, suspend_u


def start_from(params: "Params", shock_z: np.ndarray, suspend_u: np.ndarray, param_set: np.ndarray | None = None) -> State:
    """Start state of ``n`` markets (their parameter sets' calibrated start) playing the episode
    numbers ``shock_z``, ``suspend_u`` (:func:`draw_episodes`; kept, not copied).

    ``param_set``: each market's parameter set (default all 0).
    """
    n = shock_z.shape[0]
    sets = np.zeros(n, dtype=np.int64) if param_set is None else np.ascontiguousarray(param_set, dtype=np.int64)
    g = params.derived["g"]
    return State(
        regional=params.derived["start"][sets],
        t=np.zeros(n, dtype=np.int64),
        budget_remaining=g[sets, 0, EPISODE.budget_total].copy(),
        spent=np.zeros(n),
        shock_z=shock_z,
        suspend_u=suspend_u,
        param_set=sets,
    )


def start_state(params: "Params", u: np.ndarray, param_set: np.ndarray | None = None) -> State:
    """Start state of ``n`` markets from one episode's uniforms each, ``u`` of shape ``(n, 3, horizon, R)``.

    ``param_set``: each market's parameter set (default all 0).
    """
    n = u.shape[0]
    shape = (n, params.horizon, params.n_regions)
    shock_z, suspend_u = np.empty(shape), np.empty(shape)
    in_parts(n, lambda lo, hi: _numbers_kernel(u, shock_z, suspend_u, lo, hi))
    return start_from(params, shock_z, suspend_u, param_set)


def init_state(params: "Params", rngs: "list[np.random.Generator] | RandomSources", param_set: np.ndarray | None = None) -> State:
    """Start state of ``len(rngs)`` markets (the scenario's calibrated start), one generator each,
    with one episode's random numbers from each (:func:`draw_episodes`)."""
    return start_from(params, *draw_episodes(params, rngs), param_set)


# ----------------------------------------------------------------------------- kernels
@compiled
def _season(season, gq, t):
    """Season multiplier of quarter index ``t`` (``t = -1`` is the quarter before the start)."""
    return season[(int(gq[EPISODE.start_quarter]) + t + 4) % 4]


@compiled
def _cap(gq, remaining):
    """This quarter's spending cap in $B: ``min(per_quarter, budget_remaining)``."""
    return min(gq[EPISODE.budget_per_quarter], remaining)


# columns of per_market, (n, N_MARKET_OUT): market-major, so that one market's outputs and scratch
# share a few cache lines (as rows of a (quantity, market) array they were ~30 lines apart)
(M_GMV, M_RUN_RATE, M_COST, M_CAP, M_REVENUE, M_REMAINING, M_SPENT, M_CASH, M_DISCOUNT, M_NET_BURN,
 M_OBJECTIVE, M_TERMINAL, M_REWARD, M_EXIT_RUN_RATE) = range(14)
N_MARKET_OUT = 14
# second index of per_region, (n, N_REGION_OUT, R): outputs, then the kernels' scratch (quantities a quarter computes once and
# the demand side reads at every trial of the hard-budget scale factor)
(P_GMV, P_SHARE, P_ATTR, P_NEW_BUYERS, P_NEW_SELLERS, P_ORDERS, P_LOST, P_DARK, P_GMV_3P, P_DEMAND,
 P_SHOCK, P_LIVE, P_CAPACITY, P_ATTR_BASE, P_PL, P_IMITATION, P_INNOVATION, P_CONTENT, P_PL_DEMAND) = range(19)
N_REGION_OUT = 19


@per_market_kernel
def _prepare_market(gq, rq, regional, i, shock, per_region):
    """The parts of market ``i``'s quarter that do not depend on the intensities' scale: dark and
    live shares, the demand shock ``shock(j)``-style factor given in ``shock[j]``, capacity
    (de-seasonalised), the attractiveness terms not driven by cash levers, the private label's
    share and the Bass rates' fixed factors, written to the scratch rows of ``per_region``."""
    R = regional.shape[2]
    for j in range(R):
        dark = rq[REGION.scripted_dark, j]
        if regional[i, F.suspended, j] > 0.0 and rq[REGION.suspension_share, j] > dark:
            dark = rq[REGION.suspension_share, j]
        if rq[REGION.launched, j] <= 0.0:
            dark = 1.0
        per_region[i, P_DARK, j] = dark
        per_region[i, P_LIVE, j] = 1.0 - dark
        per_region[i, P_SHOCK, j] = shock[j]
        sellers, creators, users = regional[i, F.sellers, j], regional[i, F.creators, j], regional[i, F.users, j]
        platform = regional[i, F.warehouse, j]
        capacity_ds = rq[REGION.seller_capacity, j] * sellers + platform + regional[i, F.logistics, j]
        fast = platform / capacity_ds if capacity_ds > 0.0 else 0.0
        content = creators / (creators + rq[REGION.creators_half, j])
        u_pl = per_region[i, P_PL, j]  # the caller put the private-label intensity here
        pl = rq[REGION.private_label_max, j] * fee_effect(u_pl, gq[ATTR.private_label_ec])
        per_region[i, P_CAPACITY, j] = capacity_ds
        per_region[i, P_CONTENT, j] = content
        per_region[i, P_PL, j] = pl
        per_region[i, P_ATTR_BASE, j] = (
            gq[ATTR.w_selection] * regional[i, F.selection, j]
            + gq[ATTR.w_speed] * fast
            + gq[ATTR.w_live] * regional[i, F.livestream, j] * content
        )
        # the label's appeal acts on demand: a label people want adds orders, one they do not loses them
        per_region[i, P_PL_DEMAND, j] = max(0.0, 1.0 + gq[ATTR.w_private_label] * pl * (rq[REGION.private_label_appeal, j] - 1.0))
        per_region[i, P_IMITATION, j] = gq[BUYERS.bass_q] * (regional[i, F.buyers_genz, j] + regional[i, F.buyers_older, j]) / users
        attention = 1.0 + gq[BUYERS.attention_weight] * (regional[i, F.attention, j] * rq[REGION.inv_attention0, j] - 1.0)
        per_region[i, P_INNOVATION, j] = gq[BUYERS.bass_p] * attention * rq[REGION.inv_shopping_share, j]


@per_market_kernel
def _demand_pass(gq, rq, se, regional, i, u_in, k, u, cost, new, per_region):
    """Market ``i``'s demand side of the quarter with every cash lever and the discount below the
    reference scaled by ``k``: writes the applied intensities ``u[i]``, their costs ``cost[i]``
    (this quarter's volume), buyers, ad stock and share into ``new[i]`` and the per-region
    outputs; returns the total cost. :func:`_prepare_market` must have filled the scratch rows.

    Runs once when the budget does not bind and a few times when it does (:func:`step_market`
    solves ``cost(k) = cap``); everything after demand is computed once, at the final ``k``.
    """
    R = u_in.shape[1]
    total = 0.0
    for j in range(R):
        live = per_region[i, P_LIVE, j]
        ref, rate_max = rq[REGION.reference_rate, j], rq[REGION.rate_max, j]
        rate = u_in[i, j, RATE] * rate_max
        disc = 0.0
        if abs(rate - ref) <= 1e-6 * rate_max:
            rate = ref  # the null action, through a float32 action, charges the reference exactly
        elif rate < ref:
            # the discount itself is scaled (ref - rate after scaling the rate would lose its digits
            # to cancellation when k is tiny: cost(k) a staircase the budget solver cannot settle on)
            disc = k * (ref - rate)
            rate = ref - disc
        u[i, j, RATE] = rate * rq[REGION.inv_rate_max, j]
        for lever in range(SHIPPING, LEVER.user_ads + 1):
            u[i, j, lever] = k * u_in[i, j, lever]
        u[i, j, PRIVATE_LABEL] = u_in[i, j, PRIVATE_LABEL]
        u_ship = u[i, j, SHIPPING]
        pool = rq[REGION.pool_max, j]
        sel = regional[i, F.selection, j]

        # attractiveness: the cash-driven terms on top of the prepared ones
        ship = hill(u_ship * rq[REGION.subsidy_ratio, j], gq[ATTR.shipping_ec])
        fee = fee_effect(disc * rq[REGION.inv_reference_rate, j], gq[ATTR.fee_ec])
        attr = per_region[i, P_ATTR_BASE, j] + sel * (gq[ATTR.w_shipping] * ship + gq[ATTR.w_fee] * fee)
        attr = max(attr, 0.0)

        # ad stock, shopping-start share (a stock bounded by competitors)
        adstock = u[i, j, LEVER.user_ads] * pool * live + gq[PLATFORM.ad_decay] * regional[i, F.adstock, j]
        reach = hill(adstock * rq[REGION.inv_pool, j], gq[ATTR.hill_ec])
        a2 = attr * attr
        target = rq[REGION.share_max, j] * a2 / (a2 + rq[REGION.share_c, j])
        share = regional[i, F.share, j] + gq[BUYERS.share_rate] * (target - regional[i, F.share, j])

        # buyers, Bass in two cohorts, in the live share only
        innovation = per_region[i, P_INNOVATION, j] * (1.0 + gq[BUYERS.ad_lift] * reach) * share
        imitation = per_region[i, P_IMITATION, j] * attr
        churn = gq[BUYERS.churn] * (1.0 - gq[BUYERS.loyalty] * min(attr, 1.0))
        users = regional[i, F.users, j]
        bg, bo = regional[i, F.buyers_genz, j], regional[i, F.buyers_older, j]
        users_genz = users * rq[REGION.genz_share, j]
        users_older = users - users_genz
        new_genz = (innovation + gq[BUYERS.genz_imitation] * imitation) * max(users_genz - bg, 0.0) * live
        new_older = (innovation + imitation) * max(users_older - bo, 0.0) * live
        churn_genz = churn * (1.0 - gq[BUYERS.habit_loyalty] * regional[i, F.habit, j])
        bg_next = min(bg * (1.0 - churn_genz) + new_genz, users_genz)
        bo_next = min(bo * (1.0 - churn) + new_older, users_older)

        # orders against capacity that follows the season
        demand = (bg_next + bo_next) * rq[REGION.order_rate, j] * (gq[BUYERS.base_orders] + attr) * per_region[i, P_PL_DEMAND, j] * se * per_region[i, P_SHOCK, j] * live
        capacity = per_region[i, P_CAPACITY, j] * se
        served = min(demand, capacity) + gq[BUYERS.spill] * max(demand - capacity, 0.0)
        gmv = served * rq[REGION.aov_b, j]
        gmv_3p = gmv * (1.0 - per_region[i, P_PL, j])

        # this quarter's costs, on this quarter's volume; nothing billed into a dark share
        cost[i, j, RATE] = disc * gmv_3p
        cost[i, j, SHIPPING] = u_ship * rq[REGION.subsidy_b, j] * served
        subtotal = cost[i, j, RATE] + cost[i, j, SHIPPING]
        for lever in range(LEVER.seller_grants, LEVER.user_ads + 1):
            cost[i, j, lever] = u[i, j, lever] * pool * live
            subtotal += cost[i, j, lever]
        cost[i, j, PRIVATE_LABEL] = 0.0
        total += subtotal

        new[i, F.buyers_genz, j] = bg_next
        new[i, F.buyers_older, j] = bo_next
        new[i, F.adstock, j] = adstock
        new[i, F.share, j] = share
        per_region[i, P_GMV, j] = gmv
        per_region[i, P_GMV_3P, j] = gmv_3p
        per_region[i, P_SHARE, j] = share
        per_region[i, P_ATTR, j] = attr
        per_region[i, P_NEW_BUYERS, j] = new_genz + new_older
        per_region[i, P_ORDERS, j] = served
        per_region[i, P_LOST, j] = demand - served
        per_region[i, P_DEMAND, j] = demand
    return total


@per_market_kernel
def _solve_budget(gq, rq, se, regional, i, u_in, cap, u, cost, new, per_region):
    """The quarter's demand side and its total cost, in hard mode scaled so the cost is the cap.

    Cost is increasing in the common scale factor ``k`` (more subsidy, more served volume) and
    nearly ``a k + b k^2`` (pools are linear in ``k``, volume costs are ``k`` times a volume that
    grows slowly with ``k``). When the requested intensities cost ``C1 > cap``: a pass at
    ``k = cap / C1`` (feasible), then the root of the quadratic through ``(0, 0)``, that point and
    ``(1, C1)``, then secant steps bracketed in ``[0, 1]`` until ``cost = cap (1 - 2e-10)`` to
    1e-10 (typically three passes in all; the bracket's feasible end if it ever fails). The
    arrays are left holding the pass at the final ``k``.
    """
    if gq[EPISODE.hard_budget] > 0.0 and cap <= 0.0:
        return _demand_pass(gq, rq, se, regional, i, u_in, 0.0, u, cost, new, per_region)
    c1 = _demand_pass(gq, rq, se, regional, i, u_in, 1.0, u, cost, new, per_region)
    if gq[EPISODE.hard_budget] <= 0.0 or c1 <= cap:
        return c1
    target = cap * (1.0 - 2e-10)
    tol = 1e-10 * cap
    k0 = target / c1
    c0 = _demand_pass(gq, rq, se, regional, i, u_in, k0, u, cost, new, per_region)
    if abs(c0 - target) <= tol:
        return c0
    lo, hi = 0.0, 1.0
    if c0 < target:
        lo = k0
    else:
        hi = k0
    # the quadratic a k + b k^2 through (k0, c0) and (1, c1)
    b = (c0 - c1 * k0) / (k0 * (k0 - 1.0)) if 0.0 < k0 < 1.0 else 0.0
    a = c1 - b
    disc = a * a + 4.0 * b * target
    x = 2.0 * target / (a + np.sqrt(disc)) if disc > 0.0 and a + np.sqrt(disc) > 0.0 else 0.5 * (lo + hi)
    x0, f0 = k0, c0 - target
    for _ in range(40):
        if not (lo < x < hi):
            x = 0.5 * (lo + hi)
        f = _demand_pass(gq, rq, se, regional, i, u_in, x, u, cost, new, per_region) - target
        if abs(f) <= tol:
            return f + target
        if f < 0.0:
            lo = x
        else:
            hi = x
        x_next = x - f * (x - x0) / (f - f0) if f != f0 else 0.5 * (lo + hi)
        x0, f0, x = x, f, x_next
    return _demand_pass(gq, rq, se, regional, i, u_in, lo, u, cost, new, per_region)


@per_market_kernel
def _revenue(gq, rate, sel, gmv, gmv_3p):
    """A region's revenue this quarter, $B: commission at ``rate`` on third-party GMV, shop ads
    (``shop_ads_max * selection`` of GMV) and the private label's margin on its own GMV."""
    return rate * gmv_3p + gq[PLATFORM.shop_ads_max] * sel * gmv + gq[PLATFORM.private_label_margin] * (gmv - gmv_3p)


@per_market_kernel
def _objective(gq, gmv, revenue, cash):
    """The scenario objective's value of a quarter: GMV, revenue or contribution (revenue - cash)."""
    kind = gq[EPISODE.objective_kind]
    return gmv if kind == 0.0 else (revenue if kind == 1.0 else revenue - cash)


@compiled
def exit_scratch(n_features, R):
    """Scratch arrays of one market for :func:`_exit_quarter` (a kernel allocates them once per call)."""
    return (np.zeros((1, n_features, R)), np.zeros((1, n_features, R)), np.zeros((1, R, N_LEVERS)),
            np.zeros((1, R, N_LEVERS)), np.zeros((1, R, N_LEVERS)), np.zeros((1, N_REGION_OUT, R)),
            np.zeros((N_REGION_PARAMS, R)))


@per_market_kernel
def _exit_quarter(gq, rq, se, new, i, scratch):
    """The business left at the horizon: market ``i``'s next quarter from its new state ``new[i]``,
    played at the null action (every cash lever 0, no private-label push, the commission at the
    reference rate), with no demand shock, the last quarter's parameters and the season ``se`` of
    that quarter. Returns its de-seasonalised GMV and objective value ($B a quarter). Nothing of
    market ``i`` is written: the pass runs on ``scratch``.

    Suspensions. Every random suspension is lifted, one drawn in the last quarter or one under
    way: it lasts ``suspension_quarters`` (1-2), and a dark exit quarter would charge it for all
    ``terminal_value`` quarters. A scripted suspension stays dark only if it runs past the last
    played quarter (``scripted_left > 1`` there); one that ends with the horizon is over."""
    state, after, u_in, u, cost, per_region, rx = scratch
    R = state.shape[2]
    rx[:] = rq  # the last quarter's parameters, with the scripted darkness of the exit quarter
    state[0] = new[i]
    shock = per_region[0, P_SHOCK]
    for j in range(R):
        if rq[REGION.scripted_left, j] <= 1.0:
            rx[REGION.scripted_dark, j] = 0.0
        state[0, F.suspended, j] = 0.0
        shock[j] = 1.0
        per_region[0, P_PL, j] = 0.0
        for lever in range(N_LEVERS):
            u_in[0, j, lever] = 0.0
        u_in[0, j, RATE] = min(rq[REGION.reference_rate, j] * rq[REGION.inv_rate_max, j], 1.0)
    _prepare_market(gq, rx, state, 0, shock, per_region)
    cash = _demand_pass(gq, rx, se, state, 0, u_in, 1.0, u, cost, after, per_region)  # 0: the null action pays nothing
    gmv = 0.0
    revenue = 0.0
    for j in range(R):
        g_j, g3_j = per_region[0, P_GMV, j], per_region[0, P_GMV_3P, j]
        gmv += g_j
        revenue += _revenue(gq, rx[REGION.reference_rate, j], state[0, F.selection, j], g_j, g3_j)
    return gmv / se, _objective(gq, gmv, revenue, cash) / se


@per_market_kernel
def step_market(g, rg, season, regional, t, param_set, remaining, spent, shock_z, suspend_u, u_in,
                new, new_t, u, cost, per_market, per_region, i):
    """Market ``i``'s quarter (the equations of the module docstring).

    Reads the state arrays and the requested intensities ``u_in`` at row ``i`` and the market's
    parameters at its quarter; writes the new regional state ``new[i]`` and quarter ``new_t[i]``,
    the applied intensities ``u[i]`` and their costs ``cost[i]``, ``per_market[i]`` (columns
    ``M_*``) and ``per_region[i]`` (rows ``P_*``). ``u`` must not be ``u_in``. The terminal
    value of the last step is left at 0: :func:`_finish_market` adds it.
    """
    R = u_in.shape[1]
    gp = g[param_set[i]]
    horizon = gp.shape[0]
    tc = min(t[i], horizon - 1)
    gq = gp[tc]
    rq = rg[param_set[i], tc]
    sigma = gq[EPISODE.demand_sigma]
    se = _season(season, gq, t[i])
    inv_se = 1.0 / se
    cap = _cap(gq, remaining[i])
    per_market[i, M_CAP] = cap
    shock = per_region[i, P_SHOCK]  # a view, filled here
    for j in range(R):
        shock[j] = np.exp(sigma * shock_z[i, tc, j] - 0.5 * sigma * sigma) if sigma > 0.0 else 1.0
        per_region[i, P_PL, j] = u_in[i, j, PRIVATE_LABEL]
    _prepare_market(gq, rq, regional, i, shock, per_region)
    total = _solve_budget(gq, rq, se, regional, i, u_in, cap, u, cost, new, per_region)
    per_market[i, M_COST] = total
    spent_i = spent[i] + total

    gmv_i = 0.0
    revenue_i = 0.0
    discount_i = 0.0
    hill_ec = gq[ATTR.hill_ec]
    ref_pen = gq[SELLERS.reference_penetration]
    inv_ref_pen = 1.0 / ref_pen
    for j in range(R):
        dark = per_region[i, P_DARK, j]
        live = per_region[i, P_LIVE, j]
        users = regional[i, F.users, j]
        sellers, creators = regional[i, F.sellers, j], regional[i, F.creators, j]
        livestream, trust = regional[i, F.livestream, j], regional[i, F.trust, j]
        ref = rq[REGION.reference_rate, j]
        rate = u[i, j, RATE] * rq[REGION.rate_max, j]
        sel = regional[i, F.selection, j]
        attr = per_region[i, P_ATTR, j]
        buyers = new[i, F.buyers_genz, j] + new[i, F.buyers_older, j]
        gmv = per_region[i, P_GMV, j]
        gmv_3p = per_region[i, P_GMV_3P, j]
        demand_ds = per_region[i, P_DEMAND, j] * inv_se
        content = per_region[i, P_CONTENT, j]

        # money
        gmv_i += gmv
        discount_i += cost[i, j, RATE]
        revenue_i += _revenue(gq, rate, sel, gmv, gmv_3p)

        # sellers: the buyer pull on joins is weak, buyers' pull on retention carries the flywheel
        penetration = buyers / users
        buyer_pull = _power(penetration * inv_ref_pen, gq[SELLERS.buyer_elasticity])
        join = (gq[SELLERS.join_rate] * buyer_pull + gq[SELLERS.grant_rate] * hill(u[i, j, LEVER.seller_grants], hill_ec)) * max(
            0.0, 1.0 - gq[SELLERS.commission_drag] * rate
        )
        retention = 2.0 * ref_pen / (ref_pen + penetration)
        seller_churn = (
            gq[SELLERS.churn] * retention * (1.0 + gq[SELLERS.trust_churn] * (1.0 - trust))
            + gq[SELLERS.rate_churn] * max(rate - ref, 0.0)
            + gq[SELLERS.suspended_churn] * dark
        )
        joined = join * (rq[REGION.sellers_potential, j] - sellers) * live
        sellers_next = sellers * (1.0 - min(seller_churn, 1.0)) + joined
        sellers_next = min(max(sellers_next, 1e-6), rq[REGION.sellers_potential, j])

        # creators
        affinity = livestream * rq[REGION.inv_livestream_max, j]
        c_join = (gq[CREATORS.join_rate] + gq[CREATORS.pool_rate] * hill(u[i, j, LEVER.creator_incentives], hill_ec) * live) * (
            0.25 + 0.75 * affinity
        )
        creators_next = creators * (1.0 - gq[CREATORS.churn]) + c_join * (rq[REGION.creators_potential, j] - creators)
        creators_next = min(max(creators_next, 1e-6), rq[REGION.creators_potential, j])

        # livestream affinity, trust (a full private-label push costs four times a moderate one)
        livestream_next = livestream + gq[CREATORS.live_rate] * content * (rq[REGION.livestream_max, j] - livestream)
        u_pl = u[i, j, PRIVATE_LABEL]
        trust_next = min(max(trust + gq[PLATFORM.trust_recovery] * (1.0 - trust) - gq[PLATFORM.trust_hit] * u_pl * u_pl * live, 0.0), 1.0)

        # capacity stocks, de-seasonalised: warehousing (one quarter's lag), 3PL following unmet demand
        gap = demand_ds - per_region[i, P_CAPACITY, j]
        warehouse_next = regional[i, F.warehouse, j] * (1.0 - gq[PLATFORM.warehouse_depreciation]) + (
            u[i, j, LEVER.warehousing] * rq[REGION.warehouse_per_intensity, j] * live
        )
        logistics_next = regional[i, F.logistics, j] * (1.0 - gq[PLATFORM.logistics_depreciation]) + gq[PLATFORM.logistics_rate] * max(gap, 0.0)

        # media: users grow with creator content; attention moves toward it, drawn on by shoppable content
        user_rate = gq[CREATORS.user_boost] * content
        users_next = users + rq[REGION.user_growth, j] * (1.0 + user_rate) * users * (1.0 - users * rq[REGION.inv_users_max, j])
        users_next = min(users_next, rq[REGION.users_max, j])
        attention = regional[i, F.attention, j]
        attention_next = attention + gq[PLATFORM.attention_rate] * (content * (1.0 - gq[PLATFORM.attention_draw] * sel) - attention)
        habit = regional[i, F.habit, j] + gq[BUYERS.habit_rate] * (min(attr, 1.0) - regional[i, F.habit, j])

        # random suspensions for the next quarter
        if regional[i, F.suspended, j] > 0.0:
            suspended = regional[i, F.suspended, j] - 1.0
        elif suspend_u[i, tc, j] < rq[REGION.suspension_hazard, j]:
            suspended = rq[REGION.suspension_quarters, j]
        else:
            suspended = 0.0

        x = _power(sellers_next * rq[REGION.inv_sellers_half, j], gq[ATTR.selection_slope])
        new[i, F.users, j] = users_next
        new[i, F.habit, j] = habit
        new[i, F.sellers, j] = sellers_next
        new[i, F.creators, j] = creators_next
        new[i, F.warehouse, j] = warehouse_next
        new[i, F.logistics, j] = logistics_next
        new[i, F.livestream, j] = livestream_next
        new[i, F.trust, j] = trust_next
        new[i, F.attention, j] = attention_next
        new[i, F.orders, j] = per_region[i, P_ORDERS, j]
        new[i, F.demand, j] = demand_ds
        new[i, F.gmv_region, j] = gmv
        new[i, F.suspended, j] = suspended
        new[i, F.selection, j] = x / (1.0 + x) * rq[REGION.selection_norm, j]
        per_region[i, P_NEW_SELLERS, j] = joined

    cash_i = total - discount_i
    per_market[i, M_GMV] = gmv_i
    per_market[i, M_REVENUE] = revenue_i
    per_market[i, M_CASH] = cash_i
    per_market[i, M_DISCOUNT] = discount_i
    per_market[i, M_NET_BURN] = cash_i - revenue_i
    objective = _objective(gq, gmv_i, revenue_i, cash_i)
    per_market[i, M_OBJECTIVE] = objective
    per_market[i, M_TERMINAL] = 0.0
    per_market[i, M_REWARD] = objective
    per_market[i, M_RUN_RATE] = 4.0 * gmv_i * inv_se
    per_market[i, M_EXIT_RUN_RATE] = 0.0
    per_market[i, M_SPENT] = spent_i
    per_market[i, M_REMAINING] = max(gq[EPISODE.budget_total] - spent_i, 0.0)
    new_t[i] = t[i] + 1


@per_market_kernel
def _finish_market(g, rg, season, t, param_set, new, per_market, scratch, i):
    """If market ``i``'s step (from quarter ``t[i]``, to the state ``new[i]``) was its last, add the
    terminal value to its reward: ``terminal_value`` quarters of the exit quarter's objective
    (:func:`_exit_quarter`), and record the exit run rate. Returns whether it was the last."""
    gp = g[param_set[i]]
    horizon = gp.shape[0]
    if t[i] + 1 != horizon:
        return False
    gq = gp[horizon - 1]
    rq = rg[param_set[i], horizon - 1]
    exit_gmv_ds, exit_objective_ds = _exit_quarter(gq, rq, _season(season, gq, t[i] + 1), new, i, scratch)
    terminal = gq[EPISODE.terminal_value] * exit_objective_ds
    per_market[i, M_TERMINAL] = terminal
    per_market[i, M_REWARD] += terminal
    per_market[i, M_EXIT_RUN_RATE] = 4.0 * exit_gmv_ds
    return True


# The exit quarters run in kernels of their own, after the step's kernel and only when a market
# ends its horizon: in the step's own kernel (as a call, or in a second loop) they slowed
# every quarter's step by 10-21% (docs/speed.md).
@compiled
def _exit_kernel(g, rg, season, t, param_set, new, per_market):
    scratch = exit_scratch(new.shape[1], new.shape[2])
    for i in range(new.shape[0]):
        _finish_market(g, rg, season, t, param_set, new, per_market, scratch, i)


@compiled
def _env_exit_kernel(g, rg, season, t, param_set, new, new_t, per_market, per_region, cost, clipped, reward, table, lo, hi):
    scratch = exit_scratch(new.shape[1], new.shape[2])
    for i in range(lo, hi):
        if _finish_market(g, rg, season, t, param_set, new, per_market, scratch, i):
            reward[i] = per_market[i, M_REWARD]
            fill_info_market(g, per_market, per_region, cost, clipped, new, new_t, param_set, table, i)


@compiled
def _step_kernel(g, rg, season, regional, t, param_set, remaining, spent, shock_z, suspend_u, u_in,
                 new, new_t, u, cost, per_market, per_region):
    for i in range(u_in.shape[0]):
        step_market(g, rg, season, regional, t, param_set, remaining, spent, shock_z, suspend_u, u_in,
                    new, new_t, u, cost, per_market, per_region, i)


@per_market_kernel
def observe_market(g, rg, season, regional, t, param_set, remaining, spent, obs, i):
    """Write market ``i``'s observation into ``obs[i]`` (see :func:`observe`)."""
    R = regional.shape[2]
    gp = g[param_set[i]]
    horizon = gp.shape[0]
    tc = min(t[i], horizon - 1)
    gq, rq = gp[tc], rg[param_set[i], tc]
    budget_q, budget_total = gq[EPISODE.budget_per_quarter], gq[EPISODE.budget_total]
    se = _season(season, gq, t[i])
    se_prev = _season(season, gq, t[i] - 1)
    run_rate_scale = 4.0 / (gq[EPISODE.target_run_rate] * se_prev)
    for j in range(R):
        o = j * N_REGION_FEATURES
        users, creators = regional[i, F.users, j], regional[i, F.creators, j]
        own = rq[REGION.seller_capacity, j] * regional[i, F.sellers, j]
        platform = regional[i, F.warehouse, j]
        capacity_ds = own + platform + regional[i, F.logistics, j]
        # ratios to a ceiling are at most 1 on every path the scenario file allows; a set event that
        # lowers a ceiling below the stock (users_max, livestream_max) is read as 1, inside the box
        obs[i, o + OBS.buyer_penetration] = min(1.0, (regional[i, F.buyers_genz, j] + regional[i, F.buyers_older, j]) / users)
        obs[i, o + OBS.selection] = regional[i, F.selection, j]
        obs[i, o + OBS.creator_strength] = creators / (creators + rq[REGION.creators_half, j])
        obs[i, o + OBS.user_saturation] = min(1.0, users * rq[REGION.inv_users_max, j])
        obs[i, o + OBS.capacity_cover] = min(1.0, 0.5 * capacity_ds / max(regional[i, F.demand, j], 1e-9))
        obs[i, o + OBS.livestream] = min(1.0, regional[i, F.livestream, j] * rq[REGION.inv_livestream_max, j])
        obs[i, o + OBS.trust] = regional[i, F.trust, j]
        pool = rq[REGION.pool_max, j]
        obs[i, o + OBS.ad_reach] = hill(regional[i, F.adstock, j] * rq[REGION.inv_pool, j], gq[ATTR.hill_ec])
        obs[i, o + OBS.shopping_share] = regional[i, F.share, j]
        obs[i, o + OBS.genz_habit] = regional[i, F.habit, j]
        left = max(regional[i, F.suspended, j], rq[REGION.scripted_left, j] if t[i] < horizon else 0.0)
        obs[i, o + OBS.suspension_left] = min(1.0, left / rq[REGION.suspension_quarters, j])
        obs[i, o + OBS.run_rate_vs_target] = min(run_rate_scale * regional[i, F.gmv_region, j], 2.0)
        obs[i, o + OBS.reference_rate] = min(1.0, rq[REGION.reference_rate, j] * rq[REGION.inv_rate_max, j])
        obs[i, o + OBS.attention] = regional[i, F.attention, j]
        obs[i, o + OBS.platform_fulfilment] = platform / capacity_ds if capacity_ds > 0.0 else 0.0
    o = R * N_REGION_FEATURES
    obs[i, o + OBS_GLOBAL.time_left] = 1.0 - t[i] / horizon
    obs[i, o + OBS_GLOBAL.budget_left] = remaining[i] / budget_total
    obs[i, o + OBS_GLOBAL.quarter_cap_left] = _cap(gq, remaining[i]) / budget_q
    obs[i, o + OBS_GLOBAL.next_season] = se - 1.0
    obs[i, o + OBS_GLOBAL.spent_vs_total] = min(spent[i] / budget_total, 2.0)
    obs[i, o + OBS_GLOBAL.quarter_of_year] = ((int(gq[EPISODE.start_quarter]) + t[i]) % 4) / 3.0


@compiled
def _observe_kernel(g, rg, season, regional, t, param_set, remaining, spent, obs):
    for i in range(regional.shape[0]):
        observe_market(g, rg, season, regional, t, param_set, remaining, spent, obs, i)


# ----------------------------------------------------------------------------- Python face
def _check_intensity(params: Params, state: State, intensity: np.ndarray) -> np.ndarray:
    u = np.ascontiguousarray(intensity, dtype=np.float64)
    if u.shape != (state.n, params.n_regions, N_LEVERS):
        raise ValueError(f"intensity has shape {u.shape}; expected {(state.n, params.n_regions, N_LEVERS)}")
    if not np.all(np.isfinite(u)):
        raise ValueError("intensity contains NaN or infinite values")
    return u


def lever_costs(params: Params, state: State, intensity: np.ndarray) -> np.ndarray:
    """Cost of each lever this quarter in $B, shape ``(n, R, L)``, if ``intensity`` were played unscaled.

    Volume-priced levers are billed on the quarter's own served volume, so this runs the
    quarter's demand side: ``commission_rate`` the discount ``(reference - rate)^+ * G_3p``,
    ``shipping_subsidy`` ``u * subsidy_max * served``, pool levers ``u * pool_max * live``,
    ``private_label`` 0. For the intensities an env step applied (``info["lever_intensity"]``)
    these are the costs it billed (``info["spend_by_region_lever"]``).
    """
    u_in = _check_intensity(params, state, intensity)
    n, R = state.n, params.n_regions
    u, cost = np.empty_like(u_in), np.empty_like(u_in)
    scratch = np.empty_like(state.regional)
    per_region = np.empty((n, N_REGION_OUT, R))
    g, rg, season = params.packed
    tc = np.minimum(state.t, params.horizon - 1)
    shock = np.exp(g[state.param_set, tc, EPISODE.demand_sigma][:, None] * state.shock_z[np.arange(n), tc]
                   - 0.5 * g[state.param_set, tc, EPISODE.demand_sigma][:, None] ** 2)
    _lever_costs_with_shock(g, rg, season, state.regional, state.t, state.param_set, shock, u_in, u, cost, scratch, per_region)
    return cost


@compiled
def _lever_costs_with_shock(g, rg, season, regional, t, param_set, shock, u_in, u, cost, new, per_region):
    for i in range(u_in.shape[0]):
        gp = g[param_set[i]]
        tc = min(t[i], gp.shape[0] - 1)
        gq, rq = gp[tc], rg[param_set[i], tc]
        for j in range(u_in.shape[1]):
            per_region[i, P_PL, j] = u_in[i, j, PRIVATE_LABEL]
        _prepare_market(gq, rq, regional, i, shock[i], per_region)
        _demand_pass(gq, rq, _season(season, gq, t[i]), regional, i, u_in, 1.0, u, cost, new, per_region)


def null_intensity(params: Params, t: int = 0, param_set: int = 0) -> np.ndarray:
    """The null action's intensities ``(R, L)`` at quarter index ``t``: no incentives (every cash
    lever 0, no private-label push) and the commission at the region's reference rate."""
    rq = params.derived["rg"][param_set, min(max(int(t), 0), params.horizon - 1)]
    u = np.zeros((params.n_regions, N_LEVERS))
    u[:, RATE] = np.minimum(rq[REGION.reference_rate] / rq[REGION.rate_max], 1.0)
    return u


def null_plan(params: Params) -> np.ndarray:
    """The null action for every quarter, ``(T, R, L)`` (reference rates may change by events)."""
    return np.stack([null_intensity(params, t) for t in range(params.horizon)])


def quarter_cap(params: Params, state: State) -> np.ndarray:
    """This quarter's spending cap in $B: ``min(per_quarter, budget_remaining)``."""
    g = params.derived["g"]
    tc = np.minimum(state.t, params.horizon - 1)
    return np.minimum(g[state.param_set, tc, EPISODE.budget_per_quarter], state.budget_remaining)


_MARKET_OUT = ("gmv", "run_rate", "cost", "cost_limit", "revenue", "budget_remaining", "spent", "cash_spend",
               "commission_discount", "net_burn", "objective_value", "terminal_value", "reward",
               "exit_run_rate")  # rows M_*
_REGION_OUT = ("gmv_region", "share", "attractiveness", "new_buyers", "new_sellers", "orders", "orders_lost",
               "dark", "gmv_3p", "demand")  # rows P_GMV ... P_DEMAND (the scratch rows after them are not outputs)


def step(params: Params, state: State, intensity: np.ndarray) -> tuple[State, dict]:
    """Simulate one quarter for every market. ``intensity`` in [0, 1], shape ``(n, R, L)``.

    Returns the new state (the input is not modified) and the quarter's outputs, all arrays
    with a leading ``n``: ``gmv`` ($B), ``gmv_region`` (n, R), ``run_rate`` ($B a year,
    de-seasonalised), ``cost`` ($B, ``cash_spend + commission_discount``), ``cost_lever``
    (n, R, L), ``cost_limit`` (the quarter's cap before spending), ``cash_spend``,
    ``commission_discount``, ``revenue``, ``net_burn``, ``objective_value``, ``terminal_value``,
    ``reward`` (their sum), ``exit_run_rate`` ($B a year, de-seasonalised: the exit quarter's GMV
    at a market's last step, else 0), ``intensity`` (after any projection), ``share``,
    ``attractiveness``,
    ``new_buyers`` (M) and ``new_sellers`` (k) (gross acquisitions), ``orders`` and
    ``orders_lost`` (M), ``dark`` (share of each region dark this quarter), ``gmv_3p``, ``demand``
    (n, R). See the module docstring for the equations and the hard-budget projection.
    """
    u_in = _check_intensity(params, state, intensity)
    new, applied, cost, per_market, per_region = allocate_step(params, state)
    s = state
    _step_kernel(
        *params.packed, s.regional, s.t, s.param_set, s.budget_remaining, s.spent, s.shock_z, s.suspend_u, u_in,
        new.regional, new.t, applied, cost, per_market, per_region,
    )
    if (s.t == params.horizon - 1).any():
        _exit_kernel(*params.packed, s.t, s.param_set, new.regional, per_market)
    _settle_budget(new, per_market)
    return new, _outputs(per_market, per_region, applied, cost)


def allocate_step(params: Params, state: State) -> tuple[State, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Uninitialised outputs of one step of ``state``: the new state (sharing the episode's
    random numbers and parameter sets), applied intensities, their costs, ``per_market`` and ``per_region``."""
    n, R = state.n, params.n_regions
    per_market = np.empty((n, N_MARKET_OUT))
    new = State(
        regional=np.empty_like(state.regional),
        t=np.empty_like(state.t),
        budget_remaining=np.empty(n),  # filled by the env step kernel, or from per_market by _settle_budget
        spent=np.empty(n),
        shock_z=state.shock_z,
        suspend_u=state.suspend_u,
        param_set=state.param_set,
    )
    lever_shape = (n, R, N_LEVERS)
    return new, np.empty(lever_shape), np.empty(lever_shape), per_market, np.empty((n, N_REGION_OUT, R))


def _settle_budget(new: State, per_market: np.ndarray) -> None:
    """Copy the step's budget columns into the new state's own contiguous arrays (a strided view
    of ``per_market`` would make numba compile every kernel a second time for that layout)."""
    np.copyto(new.budget_remaining, per_market[:, M_REMAINING])
    np.copyto(new.spent, per_market[:, M_SPENT])


def _outputs(per_market: np.ndarray, per_region: np.ndarray, applied: np.ndarray, cost: np.ndarray) -> dict:
    """The output dict of :func:`step` from the kernel's arrays (views, no copies)."""
    out = {name: per_market[:, k] for k, name in enumerate(_MARKET_OUT)}
    for k, name in enumerate(_REGION_OUT):
        out[name] = per_region[:, k]
    out["intensity"], out["cost_lever"] = applied, cost
    return out


def observe(params: Params, state: State) -> np.ndarray:
    """Observation ``(n, obs_dim)`` float32, every entry roughly in [0, 1].

    Per region (region-major), in :data:`REGION_FEATURE_TABLE` order, then
    :data:`GLOBAL_FEATURE_TABLE` (each entry's description says how it is computed).
    """
    obs = np.empty((state.n, params.obs_dim), dtype=np.float32)
    _observe_kernel(*params.packed, state.regional, state.t, state.param_set, state.budget_remaining, state.spent, obs)
    return obs


@per_market_kernel
def clip_market(action, intensity, clipped, i):
    """Market ``i``'s actions ``action[i]`` (region-major) clipped to [-1, 1] into ``intensity[i]``
    as ``(a + 1) / 2``, the count clipped into ``clipped[i]``; returns the count of NaN/inf entries."""
    R, L = intensity.shape[1], intensity.shape[2]
    non_finite = 0
    count = 0
    for j in range(R):
        for lever in range(L):
            a = np.float64(action[i, j * L + lever])
            if not np.isfinite(a):
                non_finite += 1
                a = 0.0
            elif a > 1.0:
                a = 1.0
                count += 1
            elif a < -1.0:
                a = -1.0
                count += 1
            intensity[i, j, lever] = (a + 1.0) * 0.5
    clipped[i] = count
    return non_finite


@compiled
def _actions_kernel(action, intensity, clipped):
    """:func:`clip_market` of every market; returns their count of NaN/inf entries."""
    non_finite = 0
    for i in range(action.shape[0]):
        non_finite += clip_market(action, intensity, clipped, i)
    return non_finite


def clip_actions(action: np.ndarray, n_regions: int) -> tuple[np.ndarray, np.ndarray, int]:
    """Actions ``(n, R*L)`` region-major to intensities ``(n, R, L)``, ``u = (clip(a, -1, 1) + 1) / 2``.

    Returns the intensities, the count of entries clipped per market (finite values outside
    [-1, 1]) and the number of NaN or infinite entries (the caller decides what to do with them;
    they map to 0.5).
    """
    a = np.asarray(action)
    if a.ndim != 2 or a.shape[1] != n_regions * N_LEVERS:
        raise ValueError(f"action has shape {a.shape}; expected (n, {n_regions * N_LEVERS}) (regions x levers, region-major)")
    if a.dtype != np.float32 and a.dtype != np.float64:
        a = a.astype(np.float64)
    n = a.shape[0]
    intensity = np.empty((n, n_regions, N_LEVERS))
    clipped = np.empty(n, dtype=np.int64)
    non_finite = _actions_kernel(a, intensity, clipped)
    return intensity, clipped, non_finite


def action_to_intensity(action: np.ndarray, n_regions: int) -> np.ndarray:
    """Map actions in [-1, 1], shape ``(n, R*L)`` region-major, to intensities ``(n, R, L)`` (clipped).

    NaN or infinite actions raise ``ValueError``.
    """
    intensity, _, non_finite = clip_actions(action, n_regions)
    if non_finite:
        raise ValueError("action contains NaN or infinite values; actions must be finite numbers in [-1, 1]")
    return intensity


def intensity_to_action(intensity: np.ndarray) -> np.ndarray:
    """Inverse of :func:`action_to_intensity`: ``(n, R, L)`` in [0, 1] to ``(n, R*L)`` in [-1, 1]."""
    return (2.0 * np.asarray(intensity) - 1.0).reshape(intensity.shape[0], -1).astype(np.float32)


ROLLOUT_KEYS: tuple[str, ...] = ("gmv", "run_rate", "cost", "intensity", "gmv_region", "reward", "revenue",
                                 "cash_spend", "commission_discount", "objective_value", "terminal_value", "exit_run_rate")


def rollout(params: Params, state: State, plan: np.ndarray) -> dict:
    """Play open-loop plans from ``state`` to the horizon, all markets at once.

    ``plan``: intensities of shape ``(n, T, R, L)`` (one per remaining quarter) or ``(n, R, L)``
    (constant). Returns the stacked outputs of :data:`ROLLOUT_KEYS` (``gmv`` (n, T), ``reward``
    (n, T), ``intensity`` (n, T, R, L), ...) and the final state under ``"state"``. Used by planners.
    """
    s = state
    steps = params.horizon - int(s.t.max())
    plan = np.asarray(plan, dtype=np.float64)
    outs: dict[str, list] = {key: [] for key in ROLLOUT_KEYS}
    for k in range(steps):
        u = plan[:, k] if plan.ndim == 4 else plan
        s, o = step(params, s, u)
        for key in outs:
            outs[key].append(o[key])
    result = {key: np.stack(v, axis=1) for key, v in outs.items()}
    result["state"] = s
    return result


# ----------------------------------------------------------------------------- environment step
def info_layout(region_names: tuple[str, ...]) -> list[tuple[str, tuple[str, ...] | None, type]]:
    """Entries of a market's ``info`` (the environment contract, :data:`INFO_TABLE`) in table
    order: ``(key, sub-keys or None, type)``, with the sub-keys of a per-region or per-lever key.

    A key with sub-keys takes one column of the info table per sub-key. A ``str`` entry
    (``quarter_label``) holds the quarter's serial number ``year * 4 + quarter_index``
    (:func:`serial_label` makes the label).
    """
    per = {None: None, "region": tuple(region_names), "lever": LEVERS}
    return [(e.name, per[e.per], e.kind) for e in INFO_TABLE]


@per_market_kernel
def fill_info_market(g, per_market, per_region, cost_lever, clipped, regional, t, param_set, table, i):
    """Write market ``i``'s entries of :func:`info_layout`, in order, into ``table[i]``.

    ``per_market``/``per_region``: the step's outputs (indexed ``[i, M_*]``, ``[i, P_*, j]``); ``regional``, ``t``:
    the new state.
    """
    R, L = cost_lever.shape[1], cost_lever.shape[2]
    gq = g[param_set[i], 0]
    spent = per_market[i, M_SPENT]
    k = 0
    table[i, k] = per_market[i, M_GMV]
    table[i, k + 1] = per_market[i, M_RUN_RATE]
    k += 2
    for j in range(R):
        table[i, k + j] = per_region[i, P_GMV, j]
    k += R
    table[i, k] = per_market[i, M_COST]
    k += 1
    for lever in range(L):
        total = 0.0
        for j in range(R):
            total += cost_lever[i, j, lever]
        table[i, k + lever] = total
    k += L
    table[i, k] = per_market[i, M_CAP]
    table[i, k + 1] = per_market[i, M_REMAINING]
    table[i, k + 2] = spent
    table[i, k + 3] = 1.0 if spent > gq[EPISODE.budget_total] * (1.0 + 1e-9) else 0.0
    table[i, k + 4] = per_market[i, M_CASH]
    table[i, k + 5] = per_market[i, M_DISCOUNT]
    table[i, k + 6] = per_market[i, M_REVENUE]
    table[i, k + 7] = per_market[i, M_NET_BURN]
    table[i, k + 8] = per_market[i, M_OBJECTIVE]
    table[i, k + 9] = per_market[i, M_TERMINAL]
    table[i, k + 10] = per_market[i, M_EXIT_RUN_RATE]
    k += 11
    for j in range(R):
        table[i, k + j] = per_region[i, P_ORDERS, j]
        table[i, k + R + j] = per_region[i, P_LOST, j]
        table[i, k + 2 * R + j] = per_region[i, P_SHARE, j]
        table[i, k + 3 * R + j] = regional[i, F.buyers_genz, j] + regional[i, F.buyers_older, j]
        table[i, k + 4 * R + j] = regional[i, F.sellers, j]
        table[i, k + 5 * R + j] = regional[i, F.creators, j]
        table[i, k + 6 * R + j] = 1.0 if per_region[i, P_DARK, j] > 0.0 else 0.0
    k += 7 * R
    table[i, k] = clipped[i]
    table[i, k + 1] = t[i]
    table[i, k + 2] = gq[EPISODE.start_serial] + t[i] - 1.0


@compiled
def fill_info(g, per_market, per_region, cost_lever, clipped, regional, t, param_set, table):
    """Every market's row of the info table (:func:`fill_info_market`)."""
    for i in range(table.shape[0]):
        fill_info_market(g, per_market, per_region, cost_lever, clipped, regional, t, param_set, table, i)


@compiled
def _env_step_kernel(g, rg, season, regional, t, param_set, remaining, spent, shock_z, suspend_u,
                     action, u_in, u, clipped, new, new_t, new_remaining, new_spent, reward, cost, per_market, per_region,
                     obs, table, lo, hi):
    """One environment step of markets ``lo`` to ``hi - 1`` in one pass: clip the actions
    (:func:`clip_market`, into ``u_in``), step the model, observe, fill the info table, the
    per-market bodies of :func:`step`, :func:`observe` and :func:`fill_info`; the new budget
    (``new_remaining``, ``new_spent``) and the ``reward`` go to contiguous arrays of their own (as
    :func:`_settle_budget` copies them for :func:`step`). Returns the count of NaN/inf action
    entries (the caller then discards the step) and the count of markets whose step was their
    last (the caller then adds their terminal value, :func:`_env_exit_kernel`). Markets are independent, so disjoint ranges may
    run at once (on threads: the kernel releases the GIL)."""
    non_finite = 0
    ended = 0
    horizon = g.shape[1]
    for i in range(lo, hi):
        non_finite += clip_market(action, u_in, clipped, i)
        if t[i] + 1 == horizon:
            ended += 1
        step_market(g, rg, season, regional, t, param_set, remaining, spent, shock_z, suspend_u, u_in,
                    new, new_t, u, cost, per_market, per_region, i)
        new_remaining[i] = per_market[i, M_REMAINING]
        new_spent[i] = per_market[i, M_SPENT]
        reward[i] = per_market[i, M_REWARD]
        observe_market(g, rg, season, new, new_t, param_set, new_remaining, new_spent, obs, i)
        fill_info_market(g, per_market, per_region, cost, clipped, new, new_t, param_set, table, i)
    return non_finite, ended


# ----------------------------------------------------------------------------- threads
PARALLEL_MIN_MARKETS = 128
"""Smallest batch whose step and start are split over threads (below it one thread is faster:
handing work to a thread costs some 10-20 us)."""


def _env_threads() -> int:
    """Threads for the batched kernels: ``FLYWHEEL_ENV_THREADS``, default the cores this process
    may use (at most 8)."""
    value = os.environ.get("FLYWHEEL_ENV_THREADS", "").strip()
    if value:
        try:
            return max(1, int(value))
        except ValueError:
            raise ValueError(f"environment variable FLYWHEEL_ENV_THREADS must be a whole number of threads (1 or more), got {value!r}") from None
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        cores = os.cpu_count() or 1
    return max(1, min(cores, 8))


_pool: tuple[int, ThreadPoolExecutor] | None = None  # (threads, executor)
_pool_lock = threading.Lock()


def _forget_pool_in_child() -> None:
    """After ``fork``: the parent's helper threads do not exist here, and its lock may have been
    held by one of them at the fork; start from nothing."""
    global _pool, _pool_lock
    _pool, _pool_lock = None, threading.Lock()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_pool_in_child)


def _thread_pool(threads: int) -> ThreadPoolExecutor:
    """This process's ``threads`` helper threads (a forked child makes its own, see
    :func:`_forget_pool_in_child`); a new count replaces the pool, ending the old one's threads."""
    global _pool
    with _pool_lock:
        if _pool is None or _pool[0] != threads:
            if _pool is not None:
                _pool[1].shutdown(wait=False)
            _pool = (threads, ThreadPoolExecutor(max_workers=threads, thread_name_prefix="flywheel-env"))
        return _pool[1]


def in_parts(n: int, work) -> list:
    """Run ``work(lo, hi)`` over markets ``0 .. n - 1``: in one call below
    :data:`PARALLEL_MIN_MARKETS` markets or with one thread, otherwise in equal ranges, one per
    thread (:func:`_env_threads`; the calling thread takes the first). ``work`` must be made of
    compiled kernels that release the GIL and touch only its range's rows. Returns what each
    call returned, in market order.

    Equal ranges measured faster than ranges handed out in turn (guided self-scheduling, ranges
    of 32 markets and more): 0.92x the step rate at 1024 markets while another process held a
    core (alternating 0.5 s windows, 30 pairs), though a thread sharing its core with another
    process then holds the step up."""
    threads = _env_threads() if n >= PARALLEL_MIN_MARKETS else 1
    if threads <= 1:
        return [work(0, n)]
    bounds = [n * k // threads for k in range(threads + 1)]
    pool = _thread_pool(threads - 1)
    futures = [pool.submit(work, bounds[k], bounds[k + 1]) for k in range(1, threads)]
    try:
        first = work(bounds[0], bounds[1])
    finally:
        rest = [f.result() for f in futures]
    return [first, *rest]


def env_step(params: Params, state: State, action: np.ndarray) -> tuple[State, np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The environments' step of every market, in one compiled pass.

    ``action``: float32 or float64, shape ``(n, R*L)``, region-major, clipped to [-1, 1] (the
    count clipped per market is in the info table). Returns the new state, the observation
    ``(n, obs_dim)`` float32, the reward (``objective_value + terminal_value``, $B, ``(n,)``), the
    info table ``(n, entries)`` in :func:`info_layout` order, the applied intensities and their
    costs ``(n, R, L)``. NaN or infinite actions raise ``ValueError`` and leave ``state`` as it was.
    """
    n = state.n
    if action.shape != (n, params.action_dim) or action.dtype not in (np.float32, np.float64):
        raise ValueError(f"action must be float32 or float64 of shape {(n, params.action_dim)}, got {action.dtype} {action.shape}")
    new, u, cost, per_market, per_region = allocate_step(params, state)
    u_in = np.empty_like(u)
    clipped = np.empty(n, dtype=np.int64)
    reward = np.empty(n)
    obs = np.empty((n, params.obs_dim), dtype=np.float32)
    table = np.empty((n, params.derived["info_entries"]))
    s = state
    g, rg, season = params.packed

    def part(lo: int, hi: int) -> int:
        # a NaN found here discards the step's new arrays; the state is untouched
        return _env_step_kernel(g, rg, season, s.regional, s.t, s.param_set, s.budget_remaining, s.spent, s.shock_z, s.suspend_u,
                                action, u_in, u, clipped, new.regional, new.t, new.budget_remaining, new.spent, reward,
                                cost, per_market, per_region, obs, table, lo, hi)

    if n < PARALLEL_MIN_MARKETS:
        non_finite, ended = part(0, n)
    else:
        counts = in_parts(n, part)
        non_finite, ended = sum(c[0] for c in counts), sum(c[1] for c in counts)
    if non_finite:
        raise ValueError("action contains NaN or infinite values; actions must be finite numbers in [-1, 1]")
    if ended:

        def finish(lo: int, hi: int) -> None:
            _env_exit_kernel(g, rg, season, s.t, s.param_set, new.regional, new.t, per_market, per_region, cost, clipped,
                             reward, table, lo, hi)

        finish(0, n) if n < PARALLEL_MIN_MARKETS else in_parts(n, finish)
    return new, obs, reward, table, u, cost
