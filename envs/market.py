"""The market model: pure, batched numpy functions over N parallel markets.

This module is the only implementation of the dynamics. The single env, the vector env, the
planners (best static plan, clairvoyant oracle) and the tests all call :func:`step`. It imports
numpy only and holds no parameters: every number comes from a scenario
(:mod:`envs.scenario`, ``configs/scenarios/*.yaml``) through :class:`Params`.

Shapes: ``n`` markets (environments), ``R`` regions, ``L = 7`` levers. Units: users and
buyers in millions (M), sellers and creators in thousands (k), money in $B, orders in M per
quarter, one step = one quarter.

``Hill(x; ec) = x / (x + ec)`` is the saturation curve of marketing-mix models (Meridian prior:
half-point ec about 0.8 of scaled spend, slope 1, so concave). Pool levers are scaled by the
region's ``pool_max``.

Departures from the reference form in ``DESIGN.md`` (each for a reason):

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
  the calibrated orders per buyer per quarter (``CALIBRATION.md``):
  ``f0 = orders_per_buyer / (base_orders + attr0)``.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields, replace

import numpy as np

LEVERS: tuple[str, ...] = (
    "commission_waiver",
    "shipping_subsidy",
    "seller_grants",
    "warehousing",
    "creator_incentives",
    "user_ads",
    "private_label",
)
N_LEVERS = len(LEVERS)
WAIVER, SHIPPING, GRANTS, WAREHOUSING, CREATORS, ADS, PRIVATE_LABEL = range(N_LEVERS)
POOL_LEVERS = (GRANTS, WAREHOUSING, CREATORS, ADS)
SPEND_LEVERS = (WAIVER, SHIPPING, GRANTS, WAREHOUSING, CREATORS, ADS)
assert SPEND_LEVERS == tuple(range(ADS + 1)) and POOL_LEVERS == tuple(range(GRANTS, ADS + 1))  # sliced below

REGION_FEATURES: tuple[str, ...] = (
    "buyer_penetration",
    "selection",
    "creator_strength",
    "user_saturation",
    "capacity_cover",
    "livestream",
    "trust",
    "ad_reach",
    "shopping_share",
    "genz_habit",
    "suspension_left",
    "run_rate_vs_target",
)
GLOBAL_FEATURES: tuple[str, ...] = (
    "time_left",
    "budget_left",
    "quarter_cap_left",
    "next_season",
    "spent_vs_total",
)


def hill(x: np.ndarray, ec: float | np.ndarray) -> np.ndarray:
    """Hill saturation with slope 1: ``x / (x + ec)``."""
    return x / (x + ec)


def fee_effect(u: np.ndarray, ec: float) -> np.ndarray:
    """Concave effect of the commission waiver share ``u``: 0 at 0, 1 at 1."""
    return u * (1.0 + ec) / (u + ec)


@dataclass(frozen=True)
class Params:
    """Scenario parameters as arrays (built by :meth:`envs.scenario.Scenario.to_params`).

    ``region`` maps each per-region field of the scenario to an array of shape ``(R,)``;
    ``attr``, ``buyers``, ``sellers``, ``creators`` and ``platform`` map coefficient names to
    floats. Derived quantities (start attractiveness, order rate) are computed once here.
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
    derived: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        r, a = self.region, self.attr
        sel0 = _selection(r["sellers"], r, a["selection_slope"])
        speed0 = np.minimum(1.0, r["capacity_headroom"])
        live0 = r["livestream_affinity"] * r["creators"] / (r["creators"] + r["creators_half"])
        attr0 = a["w_selection"] * sel0 + a["w_speed"] * speed0 + a["w_live"] * live0
        self.derived.update(
            attr0=attr0,
            order_rate=r["orders_per_buyer"] / (self.buyers["base_orders"] + attr0),
            share_logit0=np.log(r["shopping_share"] / (1.0 - r["shopping_share"])),
        )

    @property
    def n_regions(self) -> int:
        return len(self.region_names)

    @property
    def action_dim(self) -> int:
        return self.n_regions * N_LEVERS

    @property
    def obs_dim(self) -> int:
        return self.n_regions * len(REGION_FEATURES) + len(GLOBAL_FEATURES)

    def season_at(self, t: np.ndarray) -> np.ndarray:
        return self.season[(self.start_quarter + t) % 4]


def _selection(sellers: np.ndarray, r: dict, slope: float) -> np.ndarray:
    """Selection index in [0, 1]: ``Hill(S/S_half; 1, n) / Hill(S_pot/S_half; 1, n)``.

    With slope ``n > 1`` the curve is S-shaped: below about ``S_half`` sellers a marketplace
    offers too little choice to pull buyers (critical mass), above it the pull saturates.
    """
    x = (sellers / r["sellers_half"]) ** slope
    x_pot = (r["sellers_potential"] / r["sellers_half"]) ** slope
    return x / (1.0 + x) * (1.0 + x_pot) / x_pot


@dataclass
class State:
    """State of ``n`` markets. Per-region arrays have shape ``(n, R)``.

    users U (M), buyers by cohort (M; Gen Z and older), Gen Z habit stock in [0, 1],
    sellers S (k), creators C (k), capacity K (M orders/quarter), livestream affinity L,
    seller trust T, ad stock A ($B), last quarter's served orders O (M) and third-party GMV
    G ($B), quarters of suspension left X, the selection index of S and last quarter's
    shopping-start share (kept so they are computed once a quarter); per market: quarter index t, budget remaining and
    spent so far ($B); and the episode's pre-drawn random numbers (``shock_z``, ``suspend_u``,
    shape ``(n, horizon, R)``).
    """

    users: np.ndarray
    buyers_genz: np.ndarray
    buyers_older: np.ndarray
    habit: np.ndarray
    sellers: np.ndarray
    creators: np.ndarray
    capacity: np.ndarray
    livestream: np.ndarray
    trust: np.ndarray
    adstock: np.ndarray
    orders: np.ndarray
    gmv_3p: np.ndarray
    gmv_region: np.ndarray
    suspended: np.ndarray
    selection: np.ndarray
    share: np.ndarray
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


def draw_exogenous(params: Params, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """One episode's random numbers from one generator: demand shocks and suspension draws.

    Always the same count and order of draws (``3 * horizon * R`` uniforms in one call),
    whatever the scenario's noise level, so that a seed means the same future in stochastic and
    deterministic variants. Standard normals come from the Box-Muller transform.
    """
    u = rng.random((3, params.horizon, params.n_regions))
    return _box_muller(u[0], u[1]), u[2]


def _box_muller(u1: np.ndarray, u2: np.ndarray) -> np.ndarray:
    return np.sqrt(-2.0 * np.log1p(-u1)) * np.cos(2.0 * np.pi * u2)


def init_state(params: Params, rngs: list[np.random.Generator]) -> State:
    """Start state of ``len(rngs)`` markets (the calibrated 2023Q1 start), one generator each."""
    n, R = len(rngs), params.n_regions
    r = params.region
    # The draws of draw_exogenous, written in place (one generator call per market).
    u = np.empty((n, 3, params.horizon, R))
    for i, g in enumerate(rngs):
        g.random(out=u[i])
    shock_z = _box_muller(u[:, 0], u[:, 1])
    suspend_u = u[:, 2].copy()

    def full(v: np.ndarray) -> np.ndarray:
        return np.broadcast_to(np.asarray(v, dtype=np.float64), (n, R)).copy()

    buyers = full(r["buyers"])
    # The start state describes the quarter before the first step (its orders and GMV carry
    # that quarter's season), so run rates and cover ratios are consistent from step 0.
    season_prev = params.season[(params.start_quarter - 1) % 4]
    season0 = params.season[params.start_quarter]
    orders0 = buyers * r["orders_per_buyer"] * season_prev
    return State(
        users=full(r["users"]),
        buyers_genz=buyers * r["genz_buyer_share"],
        buyers_older=buyers * (1.0 - r["genz_buyer_share"]),
        habit=np.zeros((n, R)),
        sellers=full(r["sellers"]),
        creators=full(r["creators"]),
        capacity=orders0 / season_prev * season0 * r["capacity_headroom"],
        livestream=full(r["livestream_affinity"]),
        trust=np.ones((n, R)),
        adstock=np.zeros((n, R)),
        orders=orders0,
        gmv_3p=orders0 * r["aov"] / 1000.0,
        gmv_region=orders0 * r["aov"] / 1000.0,
        suspended=np.zeros((n, R)),
        selection=full(_selection(r["sellers"], r, params.attr["selection_slope"])),
        share=full(r["shopping_share"]),
        t=np.zeros(n, dtype=np.int64),
        budget_remaining=np.full(n, params.budget_total),
        spent=np.zeros(n),
        shock_z=shock_z,
        suspend_u=suspend_u,
    )


def lever_costs(params: Params, state: State, intensity: np.ndarray) -> np.ndarray:
    """Cost of each lever this quarter in $B, shape ``(n, R, L)``, known before the quarter.

    ``commission_waiver``: ``u * c_std * G * season`` (commission forgone on last quarter's
    third-party GMV); ``shipping_subsidy``: ``u * s_max * O * season`` (per-order subsidy on last
    quarter's orders); pool levers: ``u * pool_max``; ``private_label``: 0 (paid in GMV and trust).
    Linear in the intensities, so a budget can be enforced exactly by scaling.
    """
    r = params.region
    season = params.season_at(state.t)[:, None]
    cost = np.empty_like(intensity)
    cost[..., WAIVER] = intensity[..., WAIVER] * (r["commission"] * state.gmv_3p * season)
    cost[..., SHIPPING] = intensity[..., SHIPPING] * (r["subsidy_max"] / 1000.0 * state.orders * season)
    np.multiply(intensity[..., GRANTS : ADS + 1], r["pool_max"][:, None], out=cost[..., GRANTS : ADS + 1])
    cost[..., PRIVATE_LABEL] = 0.0
    return cost


def quarter_cap(params: Params, state: State) -> np.ndarray:
    """This quarter's spending cap in $B: ``min(per_quarter, budget_remaining)``."""
    return np.minimum(params.budget_per_quarter, state.budget_remaining)


def project_budget(params: Params, state: State, intensity: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Hard-budget projection: scale all spend levers by ``k = min(1, cap / cost)``.

    Returns the (possibly scaled) intensities and their costs, shape ``(n, R, L)``. In soft
    mode nothing is scaled. The private-label push costs nothing and is never scaled.
    """
    cost = lever_costs(params, state, intensity)
    if not params.hard_budget:
        return intensity, cost
    total = cost.sum(axis=(1, 2))
    cap = quarter_cap(params, state)
    over = total > cap
    if not over.any():
        return intensity, cost
    k = np.where(over, cap / np.maximum(total, 1e-300), 1.0)[:, None, None]
    scaled = intensity.copy()
    scaled[..., WAIVER : ADS + 1] *= k  # the spend levers; private label costs nothing
    cost *= k
    return scaled, cost


def step(params: Params, state: State, intensity: np.ndarray) -> tuple[State, dict]:
    """Simulate one quarter for every market. ``intensity`` in [0, 1], shape ``(n, R, L)``.

    Returns the new state (the input is not modified) and the quarter's outputs, all arrays
    with a leading ``n``: ``gmv`` ($B), ``gmv_region`` (n, R), ``run_rate`` ($B a year,
    de-seasonalised), ``cost`` ($B), ``cost_lever`` (n, R, L), ``cost_limit`` (the quarter's cap
    before spending), ``revenue`` ($B), ``intensity`` (after any projection), ``share`` (n, R),
    ``attractiveness``, ``new_buyers`` (M) and ``new_sellers`` (k) (gross acquisitions, (n, R)).

    One quarter, in order (the numbered steps of DESIGN.md):

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
    p, r, a, b, sp, cr, pf = params, params.region, params.attr, params.buyers, params.sellers, params.creators, params.platform
    d = params.derived
    s = state
    n = s.n
    t = np.minimum(s.t, params.horizon - 1)
    t0 = int(t[0])
    same_t = bool((t == t0).all())  # markets of one batch share the quarter: slice, don't gather
    season = params.season_at(s.t)[:, None]

    cap = quarter_cap(params, s)
    u, cost = project_budget(params, s, intensity)
    # Suspension: the share of demand that is dark this quarter. Incentives paid into the dark
    # share buy nothing (the shop is closed there), but they are still paid for.
    dark = np.where(s.suspended > 0, p.suspension_share, 0.0)
    live_share = 1.0 - dark
    u_eff = u * live_share[..., None]
    u_waive, u_ship, u_grant = u_eff[..., WAIVER], u_eff[..., SHIPPING], u_eff[..., GRANTS]
    u_wh, u_cre, u_ads, u_pl = u_eff[..., WAREHOUSING], u_eff[..., CREATORS], u_eff[..., ADS], u_eff[..., PRIVATE_LABEL]
    pool = r["pool_max"]
    rho = u_pl * r["private_label_max"]
    appeal = r["private_label_appeal"]

    # 1. attractiveness
    sel = s.selection
    ship = hill(u_ship * r["subsidy_max"] / r["shipping_cost"], a["shipping_ec"])
    speed = np.minimum(1.0, s.capacity / np.maximum(s.orders * season, 1e-9))
    live = s.livestream * s.creators / (s.creators + r["creators_half"])
    fee = fee_effect(u_waive, a["fee_ec"])
    attr = (
        a["w_selection"] * sel
        + sel * (a["w_shipping"] * ship + a["w_fee"] * fee)
        + a["w_speed"] * speed
        + a["w_live"] * live
        - a["w_private_label"] * rho * (1.0 - appeal)
    )
    attr = np.maximum(attr, 0.0)

    # 2. ad stock and reach
    spend_ads = u_ads * pool
    adstock = spend_ads + pf["ad_decay"] * s.adstock
    reach = hill(adstock / np.maximum(pool, 1e-12), a["hill_ec"])

    # 3. shopping-start share
    share = 1.0 / (1.0 + np.exp(-(d["share_logit0"] + b["share_sensitivity"] * (attr - d["attr0"]))))
    share_rel = share / r["shopping_share"]

    # 4. buyers (two cohorts)
    innovation = b["bass_p"] * (1.0 + b["ad_lift"] * reach) * share_rel
    churn_base = b["churn"] * np.maximum(0.0, 1.0 - b["loyalty"] * attr)
    users_genz = s.users * r["genz_share"]
    users_older = s.users - users_genz
    buyers_total = s.buyers
    penetration = buyers_total / s.users
    new_genz = (innovation + b["genz_imitation"] * b["bass_q"] * attr * penetration) * np.maximum(users_genz - s.buyers_genz, 0.0)
    new_older = (innovation + b["bass_q"] * attr * penetration) * np.maximum(users_older - s.buyers_older, 0.0)
    new_genz *= live_share
    new_older *= live_share
    churn_genz = churn_base * (1.0 - b["habit_loyalty"] * s.habit)
    buyers_genz = np.minimum(s.buyers_genz * (1.0 - churn_genz) + new_genz, users_genz)
    buyers_older = np.minimum(s.buyers_older * (1.0 - churn_base) + new_older, users_older)
    habit = s.habit + b["habit_rate"] * (np.minimum(attr, 1.0) - s.habit)

    # 5. orders and capacity
    z = s.shock_z[:, t0] if same_t else s.shock_z[np.arange(n), t]
    shock = np.exp(p.demand_sigma * z - 0.5 * p.demand_sigma**2)
    demand = (buyers_genz + buyers_older) * d["order_rate"] * (b["base_orders"] + attr) * season * shock * live_share
    served = np.minimum(demand, s.capacity) + b["spill"] * np.maximum(demand - s.capacity, 0.0)

    # 6. GMV and revenue
    gmv_3p = served * r["aov"] * (1.0 - rho) / 1000.0
    gmv_pl = served * r["aov"] * rho * appeal / 1000.0
    gmv_region = gmv_3p + gmv_pl
    gmv = gmv_region.sum(axis=1)
    revenue = (
        (r["commission"] * (1.0 - u_waive) * gmv_3p).sum(axis=1)
        + pf["shop_ads_rate"] * gmv
        + (pf["private_label_margin"] * gmv_pl).sum(axis=1)
    )

    # 7. sellers
    buyer_pull = ((buyers_genz + buyers_older) / s.users / sp["reference_penetration"]) ** sp["buyer_elasticity"]
    take = r["commission"] * (1.0 - u_waive)
    join = (sp["join_rate"] * buyer_pull + sp["grant_rate"] * hill(u_grant, a["hill_ec"])) * np.maximum(
        0.0, 1.0 - sp["commission_drag"] * take
    )
    seller_churn = sp["churn"] * (1.0 + sp["trust_churn"] * (1.0 - s.trust)) + sp["suspended_churn"] * dark
    new_sellers = join * (r["sellers_potential"] - s.sellers) * live_share
    sellers = s.sellers * (1.0 - np.minimum(seller_churn, 1.0)) + new_sellers
    sellers = np.clip(sellers, 1e-6, r["sellers_potential"])

    # 8. creators
    affinity = s.livestream / np.maximum(r["livestream_max"], 1e-9)
    c_join = (cr["join_rate"] + cr["pool_rate"] * hill(u_cre, a["hill_ec"])) * (0.25 + 0.75 * affinity)
    creators = s.creators * (1.0 - cr["churn"]) + c_join * (r["creators_potential"] - s.creators)
    creators = np.clip(creators, 1e-6, r["creators_potential"])

    # 9. livestream affinity
    activity = s.creators / (s.creators + r["creators_half"])
    livestream = s.livestream + cr["live_rate"] * activity * (r["livestream_max"] - s.livestream)

    # 10. trust
    trust = np.clip(s.trust + pf["trust_recovery"] * (1.0 - s.trust) - pf["trust_hit"] * u_pl, 0.0, 1.0)

    # 11. capacity (capex adds capacity from next quarter)
    capacity = (
        s.capacity * (1.0 - pf["capacity_depreciation"])
        + pf["capacity_organic"] * served
        + u_wh * pool * 1000.0 / pf["capex_per_order"]
    )

    # 12. users
    user_rate = cr["user_boost"] * s.creators / (s.creators + r["creators_half"])
    users = s.users + r["user_growth"] * (1.0 + user_rate) * s.users * (1.0 - s.users / r["users_max"])
    users = np.minimum(users, r["users_max"])

    # 13. suspensions for the next quarter
    draw = s.suspend_u[:, t0] if same_t else s.suspend_u[np.arange(n), t]
    starts = (s.suspended <= 0) & (draw < p.suspension_hazard)
    suspended = np.where(s.suspended > 0, s.suspended - 1.0, np.where(starts, p.suspension_quarters, 0.0))

    total_cost = cost.sum(axis=(1, 2))
    spent = s.spent + total_cost
    remaining = np.maximum(params.budget_total - spent, 0.0)

    new = State(
        users=users,
        buyers_genz=buyers_genz,
        buyers_older=buyers_older,
        habit=habit,
        sellers=sellers,
        creators=creators,
        capacity=capacity,
        livestream=livestream,
        trust=trust,
        adstock=adstock,
        orders=served,
        gmv_3p=gmv_3p,
        gmv_region=gmv_region,
        suspended=suspended,
        selection=_selection(sellers, r, a["selection_slope"]),
        share=share,
        t=s.t + 1,
        budget_remaining=remaining,
        spent=spent,
        shock_z=s.shock_z,
        suspend_u=s.suspend_u,
    )
    out = {
        "gmv": gmv,
        "gmv_region": gmv_region,
        "run_rate": 4.0 * gmv / season[:, 0],
        "cost": total_cost,
        "cost_lever": cost,
        "cost_limit": cap,
        "revenue": revenue,
        "intensity": u,
        "share": share,
        "attractiveness": attr,
        "new_buyers": new_genz + new_older,
        "new_sellers": new_sellers,
    }
    return new, out


def observe(params: Params, state: State) -> np.ndarray:
    """Observation ``(n, obs_dim)`` float32, every entry roughly in [0, 1].

    Per region (region-major), in :data:`REGION_FEATURES` order: buyers / users, selection
    index, ``C/(C + C_half)``, users / users_max, capacity cover ``K/(O*season)`` / 2 (clipped to
    1), livestream affinity / L_max, trust, ad reach, last quarter's shopping-start share,
    Gen Z habit, suspension quarters left / duration, region run rate / target. Then
    :data:`GLOBAL_FEATURES`: quarters left / horizon, budget left / total, this quarter's cap /
    per-quarter cap, next quarter's season - 1, spent / total (can exceed 1 in soft mode, clipped
    at 2).
    """
    r, a, n, R = params.region, params.attr, state.n, params.n_regions
    season = params.season_at(state.t)[:, None]
    obs = np.empty((n, R * len(REGION_FEATURES) + len(GLOBAL_FEATURES)), dtype=np.float32)
    reg = obs[:, : R * len(REGION_FEATURES)].reshape(n, R, len(REGION_FEATURES))
    reg[..., 0] = state.buyers_genz + state.buyers_older
    reg[..., 0] /= state.users
    reg[..., 1] = state.selection
    reg[..., 2] = state.creators / (state.creators + r["creators_half"])
    reg[..., 3] = state.users / r["users_max"]
    reg[..., 4] = np.minimum(1.0, 0.5 * state.capacity / np.maximum(state.orders * season, 1e-9))
    reg[..., 5] = state.livestream / np.maximum(r["livestream_max"], 1e-9)
    reg[..., 6] = state.trust
    reg[..., 7] = hill(state.adstock / np.maximum(r["pool_max"], 1e-12), a["hill_ec"])
    reg[..., 8] = state.share
    reg[..., 9] = state.habit
    reg[..., 10] = state.suspended / params.suspension_quarters
    reg[..., 11] = np.minimum(4.0 / params.target_run_rate * state.gmv_region / params.season_at(state.t - 1)[:, None], 2.0)
    g = obs[:, R * len(REGION_FEATURES):]
    g[:, 0] = 1.0 - state.t / params.horizon
    g[:, 1] = state.budget_remaining / params.budget_total
    g[:, 2] = quarter_cap(params, state) / params.budget_per_quarter
    g[:, 3] = params.season_at(state.t) - 1.0
    g[:, 4] = np.minimum(state.spent / params.budget_total, 2.0)
    return obs


def action_to_intensity(action: np.ndarray, n_regions: int) -> np.ndarray:
    """Map actions in [-1, 1], shape ``(n, R*L)`` region-major, to intensities ``(n, R, L)``."""
    return ((action.astype(np.float64) + 1.0) * 0.5).reshape(action.shape[0], n_regions, N_LEVERS)


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
