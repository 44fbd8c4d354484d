"""The market model: pure, batched functions over N parallel markets.

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

Departures from the reference form in ``docs/model.md`` (each for a reason):

* Randomness. All of an episode's random numbers (a demand shock and a suspension draw per
  region and quarter) are drawn in :func:`init_state` from the environment's generator and kept
  in the state. :func:`step` itself is deterministic. Each quarter therefore uses the same
  numbers whatever the actions (common random numbers), and the clairvoyant oracle can plan on
  the very numbers an episode will see by copying the state.
* The commission waiver enters attractiveness through a concave curve
  ``fee(u) = u (1 + ec) / (u + ec)`` (``fee(0) = 0``, ``fee(1) = 1``) instead of linearly, so that
  every spend lever has diminishing returns (stylised fact 5).
* Subsidies are complements of selection: the shipping and commission terms of attractiveness
  are multiplied by the selection index. Free shipping converts demand only where there are
  sellers to buy from, so a platform below critical mass must build supply before subsidising
  demand ("subsidise early to reach critical mass"; a source of timing value, fact 12).
* Selection is S-shaped in sellers (critical mass) instead of logarithmic; see ``_selection``.
* Suspension (Indonesia, October 2023) shuts a share ``suspension_share`` of a region's demand
  (Indonesia was about half of TikTok Shop's SEA GMV), not always the whole region; incentives
  paid into the dark share buy nothing (stylised fact 11: reacting pays).
* The buyer pull on seller joins is ``(B/U / pen_ref) ** buyer_elasticity``, with the elasticity
  set so that in SEA the seller pull on buyers is ~3.5 times the buyer pull on sellers (Chu and
  Manchanda 2016; stylised fact 6).
* The observation carries last quarter's realised shopping-start share (computed in the step)
  rather than a share recomputed at zero levers.
* Orders per buyer use a per-region base rate ``f0`` derived so that the start state reproduces
  the calibrated orders per buyer per quarter (``docs/calibration.md``):
  ``f0 = orders_per_buyer / (base_orders + attr0)``.

Implementation. A market's quarter is written once, as scalar code over its regions compiled by
numba (:func:`step_market`; likewise :func:`observe_market` and :func:`clip_market`), and
loop kernels run it over every market (:func:`_step_kernel`; the environments' one-pass step in
:mod:`envs.batch` inlines the same bodies). One call advances any number of markets without
temporaries: a batch of one (the single env) pays a few microseconds, a batch of a thousand
about half a microsecond per market. The Python functions below (:func:`step`,
:func:`observe`, :func:`lever_costs`, ...) allocate the outputs and call the kernels.
Parameters reach the kernels packed in two arrays (:attr:`Params.packed`); the state's
per-region quantities live in one block ``(n, len(REGIONAL_FIELDS), R)``. Kernels are compiled
on first use and cached on disk (``envs/__pycache__``): about 25 s once on a fresh checkout.

Layouts. The levers, the observation features, the info entries, the parameters and the
regional state are each declared once, as a table at the top of this module (name, unit,
range or schema, description; entry types in :mod:`envs.layout`). The kernels index through
named tuples made from the tables (``g[BUYERS.churn]``, ``obs[i, o + OBS.trust]``), which numba
compiles as constants; the packed arrays, the spaces and :func:`info_layout` are built from the
same tables; ``tests/test_layout.py`` checks the rest (the info kernel's running offset, the env
manual's tables) against them. To add a parameter: a row in its table, a field in the scenario
schema (:mod:`envs.scenario`, which holds its allowed range) and a value in every scenario file.
"""

from __future__ import annotations

import ctypes
from dataclasses import dataclass, field, fields, replace
from typing import Any, NamedTuple

import numba
import numpy as np

from envs.layout import Feature, InfoEntry, Lever, Param, StateField, group_indices, indices, names

# ----------------------------------------------------------------------------- layouts
# Every layout of the model is declared once here (entry types and what is generated from them:
# envs/layout.py). They sit in the kernels' file on purpose: numba folds these indices into the
# cached kernels, and only an edit of this file makes it recompile them.
LEVER_TABLE: tuple[Lever, ...] = (
    Lever("commission_waiver", "share of the standard commission waived (1 = zero commission)",
          "`u * commission * G_last * season`", "sales"),
    Lever("shipping_subsidy", "subsidy per order `u * subsidy_max` (1 = free shipping)",
          "`u * subsidy_max * orders_last * season`", "sales"),
    Lever("seller_grants", "free listings and onboarding grants", "`u * pool_max`", "pool"),
    Lever("warehousing", "fulfilment capex (capacity from next quarter)", "`u * pool_max`", "pool"),
    Lever("creator_incentives", "livestream and affiliate bonus pool", "`u * pool_max`", "pool"),
    Lever("user_ads", "the platform's own marketing (geometric adstock)", "`u * pool_max`", "pool"),
    Lever("private_label", "share `u * private_label_max` of traffic steered to own products",
          "0 (paid in GMV and trust)", "free"),
)
LEVER = indices("LEVER", LEVER_TABLE)
LEVERS: tuple[str, ...] = names(LEVER_TABLE)
N_LEVERS = len(LEVERS)
WAIVER, SHIPPING, PRIVATE_LABEL = LEVER.commission_waiver, LEVER.shipping_subsidy, LEVER.private_label
POOL_LEVERS = tuple(k for k, lever in enumerate(LEVER_TABLE) if lever.kind == "pool")
SPEND_LEVERS = tuple(k for k, lever in enumerate(LEVER_TABLE) if lever.kind != "free")
# the kernels loop over these as ranges
assert POOL_LEVERS == tuple(range(POOL_LEVERS[0], POOL_LEVERS[-1] + 1)), "pool levers must be contiguous"
assert SPEND_LEVERS == tuple(range(SPEND_LEVERS[-1] + 1)), "spend levers must come first"

REGION_FEATURE_TABLE: tuple[Feature, ...] = (
    Feature("buyer_penetration", "buyers / users (penetration)", "share", 0.0, 1.0),
    Feature("selection", "selection index `Hill(S/S_half; n) / Hill(S_pot/S_half; n)` (S-shaped in sellers)", "index", 0.0, 1.0),
    Feature("creator_strength", "creator strength `C / (C + C_half)`", "index", 0.0, 1.0),
    Feature("user_saturation", "users / user ceiling", "share", 0.0, 1.0),
    Feature("capacity_cover", "capacity cover `K / (orders * season) / 2`", "ratio / 2, clipped", 0.0, 1.0),
    Feature("livestream", "livestream affinity / its ceiling", "share", 0.0, 1.0),
    Feature("trust", "seller trust", "index", 0.0, 1.0),
    Feature("ad_reach", "ad reach of the ad stock", "share", 0.0, 1.0),
    Feature("shopping_share", "last quarter's shopping-start share (the start value at reset)", "share", 0.0, 1.0),
    Feature("genz_habit", "Gen Z habit stock", "index", 0.0, 1.0),
    Feature("suspension_left", "suspension quarters left / suspension length (visible before the decision)", "share", 0.0, 1.0),
    Feature("run_rate_vs_target", "region's annualised run rate / the scenario's target ($20B)", "ratio, clipped", 0.0, 2.0),
)
GLOBAL_FEATURE_TABLE: tuple[Feature, ...] = (
    Feature("time_left", "quarters left / horizon", "share", 0.0, 1.0),
    Feature("budget_left", "budget left / total budget", "share", 0.0, 1.0),
    Feature("quarter_cap_left", "this quarter's cap / per-quarter cap", "share", 0.0, 1.0),
    Feature("next_season", "next quarter's season multiplier - 1", "multiplier - 1", -0.1, 0.2),
    Feature("spent_vs_total", "spent / total budget (above 1 only in soft mode)", "ratio, clipped", 0.0, 2.0),
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
    InfoEntry("cost", None, float, "$B", "spent this quarter, after any projection"),
    InfoEntry("cost_by_lever", "lever", float, "$B", "spent this quarter, summed over regions"),
    InfoEntry("cost_limit", None, float, "$B", "this quarter's cap, `min(per_quarter, budget_remaining)` before spending"),
    InfoEntry("budget_remaining", None, float, "$B", "budget left after this quarter"),
    InfoEntry("cost_total", None, float, "$B", "spent so far"),
    InfoEntry("cost_limit_exceeded", None, bool, "", "spent > `budget.total` (soft mode only)"),
    InfoEntry("shopping_start_share", "region", float, "share", "share of online shoppers starting here"),
    InfoEntry("buyers", "region", float, "M", "active buyers"),
    InfoEntry("sellers", "region", float, "k", "active sellers"),
    InfoEntry("creators", "region", float, "k", "selling creators"),
    InfoEntry("suspended", "region", bool, "", "region suspended next quarter"),
    InfoEntry("revenue", None, float, "$B", "commission, shop ads and private-label margin this quarter"),
    InfoEntry("clipped_actions", None, int, "count", "action entries outside [-1, 1], clipped"),
    InfoEntry("quarter", None, int, "quarters", "quarters played"),
)
"""The scalar entries of a market's ``info``, in the order of the info table
(:func:`fill_info_market` writes them in this order; a test checks each against the step's
outputs). ``lever_intensity`` (an array per market) is kept beside the table."""

_PARAMS_BY_GROUP: dict[str, tuple[tuple[str, str, str], ...]] = {
    "attr": (
        ("w_selection", "weight", "weight of selection in attractiveness"),
        ("w_shipping", "weight", "weight of the shipping subsidy (times selection)"),
        ("w_fee", "weight", "weight of the commission waiver (times selection)"),
        ("w_speed", "weight", "weight of delivery speed"),
        ("w_live", "weight", "weight of livestream content"),
        ("w_private_label", "weight", "attractiveness lost per unit private-label share"),
        ("shipping_ec", "ratio", "Hill half-point of subsidy / shipping cost"),
        ("fee_ec", "share", "half-point of the waiver's concave effect"),
        ("hill_ec", "ratio", "Hill half-point of pool spend / pool_max"),
        ("selection_slope", "slope", "Hill slope of selection in sellers (>1: critical mass)"),
    ),
    "buyers": (
        ("bass_p", "per quarter", "Bass innovation"),
        ("bass_q", "per quarter", "Bass imitation"),
        ("ad_lift", "multiplier", "innovation multiplier at full ad reach"),
        ("churn", "per quarter", "buyer churn at zero attractiveness"),
        ("loyalty", "per unit attr", "churn reduction per unit attractiveness"),
        ("share_sensitivity", "logit slope", "slope of the shopping-start logit in attractiveness"),
        ("genz_imitation", "multiplier", "Gen Z imitation multiplier"),
        ("habit_rate", "per quarter", "Gen Z habit stock adjustment"),
        ("habit_loyalty", "share", "Gen Z churn reduction at full habit"),
        ("base_orders", "multiplier", "intercept of the orders multiplier"),
        ("spill", "share", "share of orders over capacity still served"),
    ),
    "sellers": (
        ("join_rate", "per quarter", "organic seller join rate"),
        ("grant_rate", "per quarter", "extra join rate at full grant pool"),
        ("buyer_elasticity", "elasticity", "elasticity of joins to buyer penetration"),
        ("reference_penetration", "share", "buyer penetration at which the pull is 1"),
        ("commission_drag", "per unit commission", "join reduction per unit commission"),
        ("churn", "per quarter", "seller churn at full trust"),
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
        ("trust_hit", "per quarter", "trust lost at full private-label push"),
        ("capacity_depreciation", "per quarter", "capacity depreciation"),
        ("capacity_organic", "per order", "seller-built capacity per served order"),
        ("capex_per_order", "$ per order/quarter", "capex per unit of capacity"),
        ("shop_ads_rate", "share of GMV", "shop-ads revenue"),
        ("private_label_margin", "share", "margin on private-label GMV"),
    ),
    "": (
        ("demand_sigma", "log sd", "demand shock per quarter (0 when deterministic)"),
        ("budget_per_quarter", "$B", "spending cap per quarter"),
        ("budget_total", "$B", "budget over the horizon"),
        ("hard_budget", "flag", "1: spend is projected onto the cap; 0: soft mode"),
        ("horizon", "quarters", "quarters in an episode"),
        ("start_quarter", "quarter index", "calendar quarter of the first step, 0-based"),
        ("target_run_rate", "$B a year", "the strategic GMV goal"),
    ),
}
GLOBAL_PARAM_TABLE: tuple[Param, ...] = tuple(
    Param(group, name, unit, description) for group, rows in _PARAMS_BY_GROUP.items() for name, unit, description in rows
)
"""The scalar coefficients, in the order of :attr:`Params.packed`'s vector ``g``."""
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
    Param("region", "commission", "share", "standard commission rate"),
    Param("region", "shipping_cost", "$ per order", "shipping cost"),
    Param("region", "subsidy_max", "$ per order", "subsidy at full shipping intensity"),
    Param("region", "pool_max", "$B per quarter", "cost of a pool lever at full intensity"),
    Param("region", "shopping_share", "share", "shopping-start share at the start"),
    Param("region", "private_label_max", "share", "traffic share at full private-label push"),
    Param("region", "private_label_appeal", "ratio", "GMV per $ of displaced third-party demand"),
    Param("region", "suspension_hazard", "per quarter", "suspension hazard (0 when deterministic)"),
    Param("region", "suspension_quarters", "quarters", "length of a suspension"),
    Param("region", "suspension_share", "share", "share of the region's demand shut off"),
    Param("derived", "attr0", "index", "attractiveness of the start state at zero levers"),
    Param("derived", "order_rate", "orders per buyer", "base order rate f0 = orders_per_buyer / (base_orders + attr0)"),
    Param("derived", "share_logit0", "logit", "logit of the start shopping-start share"),
    Param("derived", "selection_norm", "ratio", "1 / Hill(S_pot/S_half; n): selection is 1 at the seller ceiling"),
)
"""The per-region coefficients, in the row order of :attr:`Params.packed`'s array ``rg``."""
REGION = indices("REGION", REGION_PARAM_TABLE)

STATE_TABLE: tuple[StateField, ...] = (
    StateField("users", "M", "monthly active users U"),
    StateField("buyers_genz", "M", "Gen Z buyers"),
    StateField("buyers_older", "M", "older buyers"),
    StateField("habit", "index", "Gen Z habit stock in [0, 1]"),
    StateField("sellers", "k", "active sellers S"),
    StateField("creators", "k", "selling creators C"),
    StateField("capacity", "M orders/quarter", "fulfilment capacity K"),
    StateField("livestream", "share", "livestream affinity L"),
    StateField("trust", "index", "seller trust T"),
    StateField("adstock", "$B", "ad stock A"),
    StateField("orders", "M per quarter", "last quarter's served orders O"),
    StateField("gmv_3p", "$B", "last quarter's third-party GMV G"),
    StateField("gmv_region", "$B", "last quarter's GMV"),
    StateField("suspended", "quarters", "quarters of suspension left X"),
    StateField("selection", "index", "selection index of S (computed once a quarter)"),
    StateField("share", "share", "last quarter's shopping-start share"),
)
"""The per-region state, in the row order of :attr:`State.regional`."""
F = indices("F", STATE_TABLE)
REGIONAL_FIELDS: tuple[str, ...] = names(STATE_TABLE)

compiled = numba.njit(cache=True, nogil=True, error_model="numpy")
"""Compiled, cached on disk, IEEE semantics (x/0 gives inf or nan as in numpy, never raises).

Every kernel that calls the model's compiled functions lives in this module: numba invalidates
a cached kernel only when its own file changes, so a kernel elsewhere would keep running an
old copy of the model after an edit here."""
per_market_kernel = numba.njit(cache=True, nogil=True, error_model="numpy", inline="always")
"""As :data:`compiled`, for the per-market bodies the loop kernels call: inlined into each caller
(a call passing a dozen arrays per market costs as much as the market's arithmetic)."""


@compiled
def hill(x, ec):
    """Hill saturation with slope 1: ``x / (x + ec)`` (scalars or arrays)."""
    return x / (x + ec)


@compiled
def fee_effect(u, ec):
    """Concave effect of the commission waiver share ``u``: ``u (1 + ec) / (u + ec)``, 0 at 0, 1 at 1."""
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
    x_pot = (region["sellers_potential"] / region["sellers_half"]) ** slope
    return (1.0 + x_pot) / x_pot


def selection_index(sellers: np.ndarray, region: dict, slope: float) -> np.ndarray:
    """The selection index of ``sellers`` (shape ``(..., R)``) in a scenario's regions."""
    return _selection(sellers, region["sellers_half"], selection_norm(region, slope), slope)


@dataclass(frozen=True)
class Params:
    """Scenario parameters as arrays (built by :meth:`envs.scenario.Scenario.to_params`).

    ``region`` maps each per-region field of the scenario to an array of shape ``(R,)``;
    ``attr``, ``buyers``, ``sellers``, ``creators`` and ``platform`` map coefficient names to
    floats. Derived quantities (start attractiveness, order rate, selection norm) and the packed
    arrays the kernels read (``derived["g"]``, ``derived["rg"]``) are computed once here.
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
    derived: dict = field(default_factory=dict, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        r, a = self.region, self.attr
        norm = selection_norm(r, a["selection_slope"])
        sel0 = _selection(r["sellers"], r["sellers_half"], norm, a["selection_slope"])
        speed0 = np.minimum(1.0, r["capacity_headroom"])
        live0 = r["livestream_affinity"] * r["creators"] / (r["creators"] + r["creators_half"])
        attr0 = a["w_selection"] * sel0 + a["w_speed"] * speed0 + a["w_live"] * live0
        object.__setattr__(self, "derived", {})  # a fresh dict: dataclasses.replace must not share it
        self.derived.update(
            attr0=attr0,
            order_rate=r["orders_per_buyer"] / (self.buyers["base_orders"] + attr0),
            share_logit0=np.log(r["shopping_share"] / (1.0 - r["shopping_share"])),
            selection_norm=norm,
            selection0=sel0,
        )
        groups = {"attr": self.attr, "buyers": self.buyers, "sellers": self.sellers, "creators": self.creators, "platform": self.platform}
        g = [groups[p.group][p.name] if p.group else getattr(self, p.name) for p in GLOBAL_PARAM_TABLE]
        per_region = {
            **r,
            "suspension_hazard": self.suspension_hazard,
            "suspension_quarters": self.suspension_quarters,
            "suspension_share": self.suspension_share,
            **self.derived,
        }
        self.derived["g"] = np.array(g, dtype=np.float64)
        self.derived["rg"] = np.array([np.broadcast_to(per_region[k], (self.n_regions,)) for k in names(REGION_PARAM_TABLE)], dtype=np.float64)
        self.derived["season"] = np.asarray(self.season, dtype=np.float64)
        self.derived["start"] = _start_regional(self)
        self.derived["packed"] = (self.derived["g"], self.derived["rg"], self.derived["season"])
        self.derived["info_entries"] = sum(1 if sub is None else len(sub) for _, sub, _ in info_layout(self.region_names))

    @property
    def packed(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``(g, rg, season)``: scalar coefficients, per-region coefficients ``(K, R)``, season (4,)."""
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

    def season_at(self, t: np.ndarray) -> np.ndarray:
        return self.season[(self.start_quarter + t) % 4]


# ----------------------------------------------------------------------------- state
@dataclass
class State:
    """State of ``n`` markets; every array has a leading ``n``.

    ``regional`` ``(n, len(REGIONAL_FIELDS), R)`` holds the per-region quantities of
    :data:`STATE_TABLE`, in its order (users, buyers by cohort, sellers, creators, capacity, ...;
    the selection index and the shopping-start share are kept so that they are computed once a
    quarter). Each is also an attribute (``state.sellers``, shape ``(n, R)``, a view: assigning to
    it writes into ``regional``). Per market: quarter index ``t``, budget remaining and spent so
    far ($B); and the episode's pre-drawn random numbers (``shock_z``, ``suspend_u``, shape
    ``(n, horizon, R)``).
    """

    regional: np.ndarray
    t: np.ndarray
    budget_remaining: np.ndarray
    spent: np.ndarray
    shock_z: np.ndarray
    suspend_u: np.ndarray

    @property
    def n(self) -> int:
        return self.t.shape[0]

    @property
    def buyers(self) -> np.ndarray:
        return self.buyers_genz + self.buyers_older

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


def _start_regional(params: "Params") -> np.ndarray:
    """The calibrated start (no randomness) of one market's regional state, ``(F, R)``.

    The start state describes the quarter before the first step (its orders and GMV carry that
    quarter's season), so run rates and cover ratios are consistent from step 0.
    """
    r = params.region
    season_prev = params.season[(params.start_quarter - 1) % 4]
    season0 = params.season[params.start_quarter]
    orders0 = r["buyers"] * r["orders_per_buyer"] * season_prev
    start = np.empty((len(REGIONAL_FIELDS), params.n_regions))
    start[F.users] = r["users"]
    start[F.buyers_genz] = r["buyers"] * r["genz_buyer_share"]
    start[F.buyers_older] = r["buyers"] * (1.0 - r["genz_buyer_share"])
    start[F.habit] = 0.0
    start[F.sellers] = r["sellers"]
    start[F.creators] = r["creators"]
    start[F.capacity] = orders0 / season_prev * season0 * r["capacity_headroom"]
    start[F.livestream] = r["livestream_affinity"]
    start[F.trust] = 1.0
    start[F.adstock] = 0.0
    start[F.orders] = orders0
    start[F.gmv_3p] = orders0 * r["aov"] / 1000.0
    start[F.gmv_region] = orders0 * r["aov"] / 1000.0
    start[F.suspended] = 0.0
    start[F.selection] = params.derived["selection0"]
    start[F.share] = r["shopping_share"]
    return start


class RandomSources(NamedTuple):
    """The generators of ``n`` markets and, when they allow it, their C interface.

    ``next_double`` and ``states`` are numpy's documented ``BitGenerator.ctypes`` interface (the
    one numpy's own numba example uses): one C function shared by the generators and each
    generator's state address, so one compiled call can draw for every market. They are
    ``None`` when the generators are not all of one bit-generator type.
    """

    generators: list
    next_double: Any
    states: np.ndarray | None


def random_sources(rngs: list[np.random.Generator]) -> RandomSources:
    """Inspect ``rngs`` once (per seeding) for :func:`draw_uniforms`."""
    interfaces = [g.bit_generator.ctypes for g in rngs]
    functions = {ctypes.cast(c.next_double, ctypes.c_void_p).value for c in interfaces}
    if len(functions) != 1:
        return RandomSources(list(rngs), None, None)
    states = np.array([c.state_address for c in interfaces], dtype=np.uintp)
    return RandomSources(list(rngs), interfaces[0].next_double, states)


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


@compiled
def _start_kernel(start, u, regional, shock_z, suspend_u):
    """Fill the start state of every market: the calibrated start and the episode's numbers.

    Demand shocks are standard normals by the Box-Muller transform of the first two thirds of
    ``u``; suspension draws are its last third.
    """
    n, _, horizon, R = u.shape
    F = start.shape[0]
    for i in range(n):
        for f in range(F):
            for j in range(R):
                regional[i, f, j] = start[f, j]
        for q in range(horizon):
            for j in range(R):
                shock_z[i, q, j] = np.sqrt(-2.0 * np.log1p(-u[i, 0, q, j])) * np.cos(2.0 * np.pi * u[i, 1, q, j])
                suspend_u[i, q, j] = u[i, 2, q, j]


def start_state(params: "Params", u: np.ndarray) -> State:
    """Start state of ``n`` markets from one episode's uniforms each, ``u`` of shape ``(n, 3, horizon, R)``."""
    n = u.shape[0]
    shape = (n, params.horizon, params.n_regions)
    state = State(
        regional=np.empty((n, len(REGIONAL_FIELDS), params.n_regions)),
        t=np.zeros(n, dtype=np.int64),
        budget_remaining=np.full(n, params.budget_total),
        spent=np.zeros(n),
        shock_z=np.empty(shape),
        suspend_u=np.empty(shape),
    )
    _start_kernel(params.derived["start"], u, state.regional, state.shock_z, state.suspend_u)
    return state


def init_state(params: "Params", rngs: "list[np.random.Generator] | RandomSources") -> State:
    """Start state of ``len(rngs)`` markets (the calibrated 2023Q1 start), one generator each,
    with one episode's random numbers from each (:func:`draw_uniforms`)."""
    return start_state(params, draw_uniforms(params, rngs))


# ----------------------------------------------------------------------------- kernels
@compiled
def _season(season, g, t):
    """Season multiplier of quarter index ``t`` (``t = -1`` is the quarter before the start)."""
    return season[(int(g[EPISODE.start_quarter]) + t + 4) % 4]


@compiled
def _cap(g, remaining):
    """This quarter's spending cap in $B: ``min(per_quarter, budget_remaining)``."""
    return min(g[EPISODE.budget_per_quarter], remaining)


@per_market_kernel
def _lever_costs_one(rg, reg, i, season, u, cost):
    """Costs of market ``i``'s intensities ``u[i]`` (``(R, L)``), written to ``cost[i]``; returns their total."""
    total = 0.0
    for j in range(u.shape[1]):
        cost[i, j, WAIVER] = u[i, j, WAIVER] * (rg[REGION.commission, j] * reg[i, F.gmv_3p, j] * season)
        cost[i, j, SHIPPING] = u[i, j, SHIPPING] * (rg[REGION.subsidy_max, j] / 1000.0 * reg[i, F.orders, j] * season)
        for lever in range(LEVER.seller_grants, LEVER.user_ads + 1):
            cost[i, j, lever] = u[i, j, lever] * rg[REGION.pool_max, j]
        cost[i, j, PRIVATE_LABEL] = 0.0
        for lever in range(N_LEVERS):
            total += cost[i, j, lever]
    return total


@compiled
def _lever_costs_kernel(g, rg, season, regional, t, u, cost):
    for i in range(u.shape[0]):
        _lever_costs_one(rg, regional, i, _season(season, g, t[i]), u, cost)


M_GMV, M_RUN_RATE, M_COST, M_CAP, M_REVENUE, M_REMAINING, M_SPENT = range(7)  # rows of per_market
P_GMV, P_SHARE, P_ATTR, P_NEW_BUYERS, P_NEW_SELLERS = range(5)  # rows of per_region


@per_market_kernel
def step_market(g, rg, season, regional, t, remaining, spent, shock_z, suspend_u, u_in,
                new, new_t, u, cost, per_market, per_region, i):
    """Market ``i``'s quarter (the equations of :func:`step`).

    Reads the state arrays and the requested intensities ``u_in`` at row ``i``; writes the new
    regional state ``new[i]`` and quarter ``new_t[i]``, the applied intensities ``u[i]`` and their
    costs ``cost[i]``, ``per_market[:, i]`` (rows ``M_*``: GMV, run rate, cost, cap, revenue,
    budget remaining, spent) and ``per_region[:, i]`` (rows ``P_*``). ``u`` may be ``u_in``.
    """
    R = u_in.shape[1]
    horizon = int(g[EPISODE.horizon])
    sigma = g[EPISODE.demand_sigma]
    se = _season(season, g, t[i])
    tc = min(t[i], horizon - 1)
    cap = _cap(g, remaining[i])
    per_market[M_CAP, i] = cap
    # costs, known before the quarter, and the exact hard-budget projection
    for j in range(R):
        for lever in range(N_LEVERS):
            u[i, j, lever] = u_in[i, j, lever]
    total = _lever_costs_one(rg, regional, i, se, u, cost)
    if g[EPISODE.hard_budget] > 0.0 and total > cap:
        k = cap / max(total, 1e-300)
        total = 0.0
        for j in range(R):
            for lever in range(WAIVER, LEVER.user_ads + 1):  # the spend levers; private label costs nothing
                u[i, j, lever] *= k
                cost[i, j, lever] *= k
                total += cost[i, j, lever]
    per_market[M_COST, i] = total
    spent_i = spent[i] + total

    gmv_i = 0.0
    revenue_i = 0.0
    for j in range(R):
        # Suspension: the share of demand that is dark this quarter. Incentives paid into
        # the dark share buy nothing (the shop is closed there), but they are still paid for.
        dark = rg[REGION.suspension_share, j] if regional[i, F.suspended, j] > 0.0 else 0.0
        live_share = 1.0 - dark
        u_waive = u[i, j, WAIVER] * live_share
        u_ship = u[i, j, SHIPPING] * live_share
        u_grant = u[i, j, LEVER.seller_grants] * live_share
        u_wh = u[i, j, LEVER.warehousing] * live_share
        u_cre = u[i, j, LEVER.creator_incentives] * live_share
        u_ads = u[i, j, LEVER.user_ads] * live_share
        u_pl = u[i, j, PRIVATE_LABEL] * live_share
        pool = rg[REGION.pool_max, j]
        rho = u_pl * rg[REGION.private_label_max, j]
        appeal = rg[REGION.private_label_appeal, j]
        users, bg, bo = regional[i, F.users, j], regional[i, F.buyers_genz, j], regional[i, F.buyers_older, j]
        sellers, creators, capacity = regional[i, F.sellers, j], regional[i, F.creators, j], regional[i, F.capacity, j]
        livestream, trust = regional[i, F.livestream, j], regional[i, F.trust, j]
        c_half = rg[REGION.creators_half, j]

        # 1. attractiveness
        sel = regional[i, F.selection, j]
        ship = hill(u_ship * rg[REGION.subsidy_max, j] / rg[REGION.shipping_cost, j], g[ATTR.shipping_ec])
        speed = min(1.0, capacity / max(regional[i, F.orders, j] * se, 1e-9))
        live = livestream * creators / (creators + c_half)
        fee = fee_effect(u_waive, g[ATTR.fee_ec])
        attr = (
            g[ATTR.w_selection] * sel
            + sel * (g[ATTR.w_shipping] * ship + g[ATTR.w_fee] * fee)
            + g[ATTR.w_speed] * speed
            + g[ATTR.w_live] * live
            - g[ATTR.w_private_label] * rho * (1.0 - appeal)
        )
        attr = max(attr, 0.0)

        # 2. ad stock and reach
        adstock = u_ads * pool + g[PLATFORM.ad_decay] * regional[i, F.adstock, j]
        reach = hill(adstock / max(pool, 1e-12), g[ATTR.hill_ec])

        # 3. shopping-start share
        share = 1.0 / (1.0 + np.exp(-(rg[REGION.share_logit0, j] + g[BUYERS.share_sensitivity] * (attr - rg[REGION.attr0, j]))))

        # 4. buyers (two cohorts)
        innovation = g[BUYERS.bass_p] * (1.0 + g[BUYERS.ad_lift] * reach) * (share / rg[REGION.shopping_share, j])
        churn_base = g[BUYERS.churn] * max(0.0, 1.0 - g[BUYERS.loyalty] * attr)
        users_genz = users * rg[REGION.genz_share, j]
        users_older = users - users_genz
        penetration = (bg + bo) / users
        new_genz = (innovation + g[BUYERS.genz_imitation] * g[BUYERS.bass_q] * attr * penetration) * max(users_genz - bg, 0.0)
        new_older = (innovation + g[BUYERS.bass_q] * attr * penetration) * max(users_older - bo, 0.0)
        new_genz *= live_share
        new_older *= live_share
        churn_genz = churn_base * (1.0 - g[BUYERS.habit_loyalty] * regional[i, F.habit, j])
        bg_next = min(bg * (1.0 - churn_genz) + new_genz, users_genz)
        bo_next = min(bo * (1.0 - churn_base) + new_older, users_older)
        habit = regional[i, F.habit, j] + g[BUYERS.habit_rate] * (min(attr, 1.0) - regional[i, F.habit, j])

        # 5. orders and capacity
        shock = np.exp(sigma * shock_z[i, tc, j] - 0.5 * sigma * sigma)
        demand = (bg_next + bo_next) * rg[REGION.order_rate, j] * (g[BUYERS.base_orders] + attr) * se * shock * live_share
        served = min(demand, capacity) + g[BUYERS.spill] * max(demand - capacity, 0.0)

        # 6. GMV and revenue
        gmv_3p = served * rg[REGION.aov, j] * (1.0 - rho) / 1000.0
        gmv_pl = served * rg[REGION.aov, j] * rho * appeal / 1000.0
        gmv_j = gmv_3p + gmv_pl
        gmv_i += gmv_j
        take = rg[REGION.commission, j] * (1.0 - u_waive)
        revenue_i += take * gmv_3p + g[PLATFORM.private_label_margin] * gmv_pl

        # 7. sellers
        buyer_pull = _power((bg_next + bo_next) / users / g[SELLERS.reference_penetration], g[SELLERS.buyer_elasticity])
        join = (g[SELLERS.join_rate] * buyer_pull + g[SELLERS.grant_rate] * hill(u_grant, g[ATTR.hill_ec])) * max(0.0, 1.0 - g[SELLERS.commission_drag] * take)
        seller_churn = g[SELLERS.churn] * (1.0 + g[SELLERS.trust_churn] * (1.0 - trust)) + g[SELLERS.suspended_churn] * dark
        joined = join * (rg[REGION.sellers_potential, j] - sellers) * live_share
        sellers_next = sellers * (1.0 - min(seller_churn, 1.0)) + joined
        sellers_next = min(max(sellers_next, 1e-6), rg[REGION.sellers_potential, j])

        # 8. creators
        affinity = livestream / max(rg[REGION.livestream_max, j], 1e-9)
        c_join = (g[CREATORS.join_rate] + g[CREATORS.pool_rate] * hill(u_cre, g[ATTR.hill_ec])) * (0.25 + 0.75 * affinity)
        creators_next = creators * (1.0 - g[CREATORS.churn]) + c_join * (rg[REGION.creators_potential, j] - creators)
        creators_next = min(max(creators_next, 1e-6), rg[REGION.creators_potential, j])

        # 9. livestream affinity
        activity = creators / (creators + c_half)
        livestream_next = livestream + g[CREATORS.live_rate] * activity * (rg[REGION.livestream_max, j] - livestream)

        # 10. trust
        trust_next = min(max(trust + g[PLATFORM.trust_recovery] * (1.0 - trust) - g[PLATFORM.trust_hit] * u_pl, 0.0), 1.0)

        # 11. capacity (capex adds capacity from next quarter)
        capacity_next = (
            capacity * (1.0 - g[PLATFORM.capacity_depreciation]) + g[PLATFORM.capacity_organic] * served + u_wh * pool * 1000.0 / g[PLATFORM.capex_per_order]
        )

        # 12. users
        user_rate = g[CREATORS.user_boost] * creators / (creators + c_half)
        users_next = users + rg[REGION.user_growth, j] * (1.0 + user_rate) * users * (1.0 - users / rg[REGION.users_max, j])
        users_next = min(users_next, rg[REGION.users_max, j])

        # 13. suspensions for the next quarter
        if regional[i, F.suspended, j] > 0.0:
            suspended = regional[i, F.suspended, j] - 1.0
        elif suspend_u[i, tc, j] < rg[REGION.suspension_hazard, j]:
            suspended = rg[REGION.suspension_quarters, j]
        else:
            suspended = 0.0

        new[i, F.users, j] = users_next
        new[i, F.buyers_genz, j] = bg_next
        new[i, F.buyers_older, j] = bo_next
        new[i, F.habit, j] = habit
        new[i, F.sellers, j] = sellers_next
        new[i, F.creators, j] = creators_next
        new[i, F.capacity, j] = capacity_next
        new[i, F.livestream, j] = livestream_next
        new[i, F.trust, j] = trust_next
        new[i, F.adstock, j] = adstock
        new[i, F.orders, j] = served
        new[i, F.gmv_3p, j] = gmv_3p
        new[i, F.gmv_region, j] = gmv_j
        new[i, F.suspended, j] = suspended
        new[i, F.selection, j] = _selection(sellers_next, rg[REGION.sellers_half, j], rg[REGION.selection_norm, j], g[ATTR.selection_slope])
        new[i, F.share, j] = share
        per_region[P_GMV, i, j] = gmv_j
        per_region[P_SHARE, i, j] = share
        per_region[P_ATTR, i, j] = attr
        per_region[P_NEW_BUYERS, i, j] = new_genz + new_older
        per_region[P_NEW_SELLERS, i, j] = joined

    per_market[M_GMV, i] = gmv_i
    per_market[M_REVENUE, i] = revenue_i + g[PLATFORM.shop_ads_rate] * gmv_i
    per_market[M_RUN_RATE, i] = 4.0 * gmv_i / se
    per_market[M_SPENT, i] = spent_i
    per_market[M_REMAINING, i] = max(g[EPISODE.budget_total] - spent_i, 0.0)
    new_t[i] = t[i] + 1


@compiled
def _step_kernel(g, rg, season, regional, t, remaining, spent, shock_z, suspend_u, u_in,
                 new, new_t, u, cost, per_market, per_region):
    for i in range(u_in.shape[0]):
        step_market(g, rg, season, regional, t, remaining, spent, shock_z, suspend_u, u_in,
                    new, new_t, u, cost, per_market, per_region, i)


@per_market_kernel
def observe_market(g, rg, season, regional, t, remaining, spent, obs, i):
    """Write market ``i``'s observation into ``obs[i]`` (see :func:`observe`)."""
    R = regional.shape[2]
    horizon, budget_q, budget_total = g[EPISODE.horizon], g[EPISODE.budget_per_quarter], g[EPISODE.budget_total]
    se = _season(season, g, t[i])
    se_prev = _season(season, g, t[i] - 1)
    for j in range(R):
        o = j * N_REGION_FEATURES
        obs[i, o + OBS.buyer_penetration] = (regional[i, F.buyers_genz, j] + regional[i, F.buyers_older, j]) / regional[i, F.users, j]
        obs[i, o + OBS.selection] = regional[i, F.selection, j]
        obs[i, o + OBS.creator_strength] = regional[i, F.creators, j] / (regional[i, F.creators, j] + rg[REGION.creators_half, j])
        obs[i, o + OBS.user_saturation] = regional[i, F.users, j] / rg[REGION.users_max, j]
        obs[i, o + OBS.capacity_cover] = min(1.0, 0.5 * regional[i, F.capacity, j] / max(regional[i, F.orders, j] * se, 1e-9))
        obs[i, o + OBS.livestream] = regional[i, F.livestream, j] / max(rg[REGION.livestream_max, j], 1e-9)
        obs[i, o + OBS.trust] = regional[i, F.trust, j]
        obs[i, o + OBS.ad_reach] = hill(regional[i, F.adstock, j] / max(rg[REGION.pool_max, j], 1e-12), g[ATTR.hill_ec])
        obs[i, o + OBS.shopping_share] = regional[i, F.share, j]
        obs[i, o + OBS.genz_habit] = regional[i, F.habit, j]
        obs[i, o + OBS.suspension_left] = regional[i, F.suspended, j] / rg[REGION.suspension_quarters, j]
        obs[i, o + OBS.run_rate_vs_target] = min(4.0 / g[EPISODE.target_run_rate] * regional[i, F.gmv_region, j] / se_prev, 2.0)
    o = R * N_REGION_FEATURES
    obs[i, o + OBS_GLOBAL.time_left] = 1.0 - t[i] / horizon
    obs[i, o + OBS_GLOBAL.budget_left] = remaining[i] / budget_total
    obs[i, o + OBS_GLOBAL.quarter_cap_left] = _cap(g, remaining[i]) / budget_q
    obs[i, o + OBS_GLOBAL.next_season] = se - 1.0
    obs[i, o + OBS_GLOBAL.spent_vs_total] = min(spent[i] / budget_total, 2.0)


@compiled
def _observe_kernel(g, rg, season, regional, t, remaining, spent, obs):
    for i in range(regional.shape[0]):
        observe_market(g, rg, season, regional, t, remaining, spent, obs, i)


# ----------------------------------------------------------------------------- Python face
def lever_costs(params: Params, state: State, intensity: np.ndarray) -> np.ndarray:
    """Cost of each lever this quarter in $B, shape ``(n, R, L)``, known before the quarter.

    ``commission_waiver``: ``u * c_std * G * season`` (commission forgone on last quarter's
    third-party GMV); ``shipping_subsidy``: ``u * s_max * O * season`` (per-order subsidy on last
    quarter's orders); pool levers: ``u * pool_max``; ``private_label``: 0 (paid in GMV and trust).
    Linear in the intensities, so a budget can be enforced exactly by scaling.
    """
    u = np.ascontiguousarray(intensity, dtype=np.float64)
    if u.shape != (state.n, params.n_regions, N_LEVERS):
        raise ValueError(f"intensity has shape {u.shape}; expected {(state.n, params.n_regions, N_LEVERS)}")
    cost = np.empty_like(u)
    _lever_costs_kernel(*params.packed, state.regional, state.t, u, cost)
    return cost


def quarter_cap(params: Params, state: State) -> np.ndarray:
    """This quarter's spending cap in $B: ``min(per_quarter, budget_remaining)``."""
    return np.minimum(params.budget_per_quarter, state.budget_remaining)


_MARKET_OUT = ("gmv", "run_rate", "cost", "cost_limit", "revenue")  # rows M_GMV ... M_REVENUE
_REGION_OUT = ("gmv_region", "share", "attractiveness", "new_buyers", "new_sellers")  # rows P_*


def step(params: Params, state: State, intensity: np.ndarray) -> tuple[State, dict]:
    """Simulate one quarter for every market. ``intensity`` in [0, 1], shape ``(n, R, L)``.

    Returns the new state (the input is not modified) and the quarter's outputs, all arrays
    with a leading ``n``: ``gmv`` ($B), ``gmv_region`` (n, R), ``run_rate`` ($B a year,
    de-seasonalised), ``cost`` ($B), ``cost_lever`` (n, R, L), ``cost_limit`` (the quarter's cap
    before spending), ``revenue`` ($B), ``intensity`` (after any projection), ``share`` (n, R),
    ``attractiveness``, ``new_buyers`` (M) and ``new_sellers`` (k) (gross acquisitions, (n, R)).

    Before the quarter: costs (:func:`lever_costs`) against the cap
    ``min(per_quarter, budget_remaining)``; in hard budget mode, when they exceed it, every spend
    lever is scaled by ``k = cap / cost`` so that the cost equals the cap exactly (private label
    costs nothing and is never scaled). Soft mode scales nothing.

    One quarter, in order (the numbered steps of ``docs/model.md``):

    1. attractiveness ``attr = w_sel*sel + sel*(w_ship*ship + w_fee*fee(u_waiver))
       + w_speed*speed + w_live*live - w_pl*rho*(1 - appeal_pl)`` with ``sel`` the selection index,
       ``ship = Hill(subsidy/ship_cost; ec_ship)``, ``speed = min(1, K/(O*season))``,
       ``live = L*C/(C + C_half)``.
    2. ad stock ``A = ads + theta*A`` (Robyn's geometric adstock), reach ``Hill(A/pool_max; ec)``.
    3. shopping-start share: logit against fixed competitors,
       ``logit(share) = logit(share0) + beta*(attr - attr0)`` (US share0 = 17%, Jungle Scout).
    4. buyers, Bass diffusion per cohort (Gen Z imitates faster; its churn falls with a habit
       stock that forms with attractiveness), ``new = (p*(1 + k_ad*reach)*share/share0 +
       q*attr*B/U)*(U - B)``, churn ``d_B*(1 - loyalty*attr)``; no new buyers in the dark share
       of a suspended region.
    5. orders ``B*f0*(base + attr)*season*shock``, served ``min(O, K) + spill*max(O - K, 0)``.
    6. GMV: third party ``served*AOV*(1 - rho)``, private label ``served*AOV*rho*appeal``;
       revenue: commission charged, shop ads, private-label margin.
    7. sellers: joins pulled by grants and by buyer penetration relative to a reference
       (``(B/U / pen_ref) ** buyer_elasticity``: the buyer pull on sellers), net of commission, churn raised by low trust and by suspension.
    8. creators: joins pulled by the creator pool, scaled by livestream affinity; churn.
    9. livestream affinity moves toward ``L_max`` with creator activity.
    10. trust recovers toward 1 and falls with the private-label push.
    11. capacity depreciates, grows with sellers' own fulfilment and with warehousing capex
        (used from the next quarter: a one-quarter lag).
    12. users grow logistically toward ``U_max``, faster with creator content.
    13. shocks: suspensions start from this quarter's draws and are visible before the next
        decision; the demand shock of step 5 is log-normal with mean 1. While a share of a
        region is suspended, the incentives paid into that share have no effect.
    """
    u = np.ascontiguousarray(intensity, dtype=np.float64)
    n, R = state.n, params.n_regions
    if u.shape != (n, R, N_LEVERS):
        raise ValueError(f"intensity has shape {u.shape}; expected {(n, R, N_LEVERS)}")
    new, applied, cost, per_market, per_region = allocate_step(params, state)
    s = state
    _step_kernel(
        *params.packed, s.regional, s.t, s.budget_remaining, s.spent, s.shock_z, s.suspend_u, u,
        new.regional, new.t, applied, cost, per_market, per_region,
    )
    return new, _outputs(per_market, per_region, applied, cost)


def allocate_step(params: Params, state: State) -> tuple[State, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Uninitialised outputs of one step of ``state``: the new state (sharing the episode's
    random numbers), applied intensities, their costs, ``per_market`` and ``per_region``."""
    n, R = state.n, params.n_regions
    per_market = np.empty((7, n))
    new = State(
        regional=np.empty_like(state.regional),
        t=np.empty_like(state.t),
        budget_remaining=per_market[M_REMAINING],
        spent=per_market[M_SPENT],
        shock_z=state.shock_z,
        suspend_u=state.suspend_u,
    )
    lever_shape = (n, R, N_LEVERS)
    return new, np.empty(lever_shape), np.empty(lever_shape), per_market, np.empty((len(_REGION_OUT), n, R))


def _outputs(per_market: np.ndarray, per_region: np.ndarray, applied: np.ndarray, cost: np.ndarray) -> dict:
    """The output dict of :func:`step` from the kernel's arrays (views, no copies)."""
    out = {name: per_market[k] for k, name in enumerate(_MARKET_OUT)}
    for k, name in enumerate(_REGION_OUT):
        out[name] = per_region[k]
    out["intensity"], out["cost_lever"] = applied, cost
    return out


def observe(params: Params, state: State) -> np.ndarray:
    """Observation ``(n, obs_dim)`` float32: per region (region-major) the features of
    :data:`REGION_FEATURE_TABLE`, then the platform's :data:`GLOBAL_FEATURE_TABLE`, each within
    its declared range (:func:`observe_market` computes them).
    """
    obs = np.empty((state.n, params.obs_dim), dtype=np.float32)
    _observe_kernel(*params.packed, state.regional, state.t, state.budget_remaining, state.spent, obs)
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


def rollout(params: Params, state: State, plan: np.ndarray) -> dict:
    """Play open-loop plans from ``state`` to the horizon, all markets at once.

    ``plan``: intensities of shape ``(n, T, R, L)`` (one per remaining quarter) or ``(n, R, L)``
    (constant). Returns stacked outputs ``gmv`` (n, T), ``run_rate`` (n, T), ``cost`` (n, T),
    ``intensity`` (n, T, R, L) and the final state under ``"state"``. Used by planners.
    """
    s = state
    steps = params.horizon - int(s.t.max())
    plan = np.asarray(plan, dtype=np.float64)
    outs: dict[str, list] = {"gmv": [], "run_rate": [], "cost": [], "intensity": [], "gmv_region": []}
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

    A key with sub-keys takes one column of the info table per sub-key.
    """
    per = {None: None, "region": tuple(region_names), "lever": LEVERS}
    return [(e.name, per[e.per], e.kind) for e in INFO_TABLE]


@per_market_kernel
def fill_info_market(gmv, run_rate, gmv_region, cost, cost_lever, cost_limit, revenue, share, clipped,
                     regional, t, remaining, spent, budget_total, table, i):
    """Write market ``i``'s entries of :func:`info_layout`, in order, into ``table[i]``."""
    R, L = cost_lever.shape[1], cost_lever.shape[2]
    exceeded = budget_total * (1.0 + 1e-9)
    k = 0
    table[i, k] = gmv[i]
    table[i, k + 1] = run_rate[i]
    k += 2
    for j in range(R):
        table[i, k + j] = gmv_region[i, j]
    k += R
    table[i, k] = cost[i]
    k += 1
    for lever in range(L):
        total = 0.0
        for j in range(R):
            total += cost_lever[i, j, lever]
        table[i, k + lever] = total
    k += L
    table[i, k] = cost_limit[i]
    table[i, k + 1] = remaining[i]
    table[i, k + 2] = spent[i]
    table[i, k + 3] = 1.0 if spent[i] > exceeded else 0.0
    k += 4
    for j in range(R):
        table[i, k + j] = share[i, j]
        table[i, k + R + j] = regional[i, F.buyers_genz, j] + regional[i, F.buyers_older, j]
        table[i, k + 2 * R + j] = regional[i, F.sellers, j]
        table[i, k + 3 * R + j] = regional[i, F.creators, j]
        table[i, k + 4 * R + j] = 1.0 if regional[i, F.suspended, j] > 0.0 else 0.0
    k += 5 * R
    table[i, k] = revenue[i]
    table[i, k + 1] = clipped[i]
    table[i, k + 2] = t[i]


@compiled
def fill_info(gmv, run_rate, gmv_region, cost, cost_lever, cost_limit, revenue, share, clipped,
              regional, t, remaining, spent, budget_total, table):
    """Every market's row of the info table (:func:`fill_info_market`)."""
    for i in range(table.shape[0]):
        fill_info_market(gmv, run_rate, gmv_region, cost, cost_lever, cost_limit, revenue, share, clipped,
                         regional, t, remaining, spent, budget_total, table, i)


@compiled
def _env_step_kernel(g, rg, season, action, regional, t, remaining, spent, shock_z, suspend_u, budget_total,
                     u, clipped, new, new_t, cost, per_market, per_region, obs, table):
    """One environment step of every market in one pass: clip the actions (returning the count of
    NaN/inf entries, and doing nothing else, if there are any), step the model, observe, fill
    the info table: the per-market bodies of :func:`step`, :func:`observe` and :func:`fill_info`."""
    n = action.shape[0]
    non_finite = 0
    for i in range(n):
        non_finite += clip_market(action, u, clipped, i)
    if non_finite > 0:
        return non_finite
    new_remaining, new_spent = per_market[M_REMAINING], per_market[M_SPENT]
    gmv, run_rate, cost_total = per_market[M_GMV], per_market[M_RUN_RATE], per_market[M_COST]
    cap, revenue = per_market[M_CAP], per_market[M_REVENUE]
    gmv_region, share = per_region[P_GMV], per_region[P_SHARE]
    for i in range(n):
        step_market(g, rg, season, regional, t, remaining, spent, shock_z, suspend_u, u,
                    new, new_t, u, cost, per_market, per_region, i)
        observe_market(g, rg, season, new, new_t, new_remaining, new_spent, obs, i)
        fill_info_market(gmv, run_rate, gmv_region, cost_total, cost, cap, revenue, share, clipped,
                         new, new_t, new_remaining, new_spent, budget_total, table, i)
    return 0


def env_step(params: Params, state: State, action: np.ndarray) -> tuple[State, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The environments' step of every market, in one compiled pass.

    ``action``: float32 or float64, shape ``(n, R*L)``, region-major, clipped to [-1, 1] (the
    count clipped per market is in the info table). Returns the new state, the observation
    ``(n, obs_dim)`` float32, the reward (GMV, $B, ``(n,)``), the info table ``(n, entries)`` in
    :func:`info_layout` order and the applied intensities ``(n, R, L)``. NaN or infinite
    actions raise ``ValueError`` and compute nothing.
    """
    n = state.n
    if action.shape != (n, params.action_dim) or action.dtype not in (np.float32, np.float64):
        raise ValueError(f"action must be float32 or float64 of shape {(n, params.action_dim)}, got {action.dtype} {action.shape}")
    new, u, cost, per_market, per_region = allocate_step(params, state)
    clipped = np.empty(n, dtype=np.int64)
    obs = np.empty((n, params.obs_dim), dtype=np.float32)
    table = np.empty((n, params.derived["info_entries"]))
    s = state
    non_finite = _env_step_kernel(
        *params.packed, action, s.regional, s.t, s.budget_remaining, s.spent, s.shock_z, s.suspend_u,
        params.budget_total, u, clipped, new.regional, new.t, cost, per_market, per_region, obs, table,
    )
    if non_finite:
        raise ValueError("action contains NaN or infinite values; actions must be finite numbers in [-1, 1]")
    return new, obs, per_market[M_GMV], table, u
