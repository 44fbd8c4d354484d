"""Scenarios: typed, validated market parameters loaded from YAML.

A scenario is data. Every number lives in a YAML file under ``configs/scenarios/`` with a
comment that names its source in ``docs/calibration.md`` (a row id) or says it is an assumption; this module
only defines the schema (names, types, allowed ranges) and turns a validated scenario into the
arrays the batched market model (:mod:`envs.market`) consumes.

Loading::

    sc = load_scenario("global")                        # configs/scenarios/global.yaml
    sc = load_scenario("my.yaml", overrides={"budget.mode": "soft", "deterministic": True})

A scenario file may start from another one with ``extends: NAME`` (a built-in name, or a path
relative to the extending file's folder; deep merge) and keep a subset of its regions with
``only_regions: [us]``. Reading, ``extends``, overrides and error lines are
:mod:`envs.config_files`, shared with the training configs. Overrides use dotted paths into the merged
document (``regions.us.aov``, ``budget.total``) and are validated exactly like the file.
Every user mistake raises :class:`ScenarioError`, a ``ValueError`` whose one-line message says
what is wrong, where, and what is allowed.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated, Any, Iterable, Literal, Mapping

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError, model_validator

from envs import config_files, market
from envs.config_files import Float, Int, deep_merge, load_document, parse_set_value, resolve_reference

__all__ = ["SCENARIO_DIR", "Scenario", "ScenarioError", "apply_overrides", "builtin_scenarios", "deep_merge",
           "format_validation_error", "load_scenario", "parse_set_pairs", "parse_set_value", "read_yaml_mapping"]

SCENARIO_DIR = Path(__file__).resolve().parent.parent / "configs" / "scenarios"


class ScenarioError(ValueError):
    """A scenario (file, name or override) is invalid. The message is one line."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


class Budget(_Strict):
    per_quarter: Float = Field(gt=0, le=100, description="$B a quarter at most")
    total: Float = Field(gt=0, le=1000, description="$B over the whole horizon")
    mode: Literal["hard", "soft"] = "hard"


class Noise(_Strict):
    demand_sigma: Float = Field(ge=0, le=1, description="log-normal demand shock, per quarter")


class Attractiveness(_Strict):
    w_selection: Float = Field(ge=0, le=5)
    selection_slope: Float = Field(ge=0.5, le=4, description="Hill slope of selection in sellers (>1: critical mass)")
    w_shipping: Float = Field(ge=0, le=5)
    w_speed: Float = Field(ge=0, le=5)
    w_live: Float = Field(ge=0, le=5)
    w_fee: Float = Field(ge=0, le=5)
    w_private_label: Float = Field(ge=0, le=5, description="demand per unit label share and unit of appeal above 1")
    shipping_ec: Float = Field(gt=0, le=10, description="Hill half-point of subsidy/shipping cost")
    fee_ec: Float = Field(gt=0, le=10, description="half-point of the discount's concave effect")
    hill_ec: Float = Field(gt=0, le=10, description="Hill half-point of pool spend / pool_max")
    private_label_ec: Float = Field(gt=0, le=10, description="half-point of the private label's concave GMV share")


class Buyers(_Strict):
    bass_p: Float = Field(ge=0, le=1, description="Bass innovation, per quarter")
    bass_q: Float = Field(ge=0, le=2, description="Bass imitation, per quarter")
    ad_lift: Float = Field(ge=0, le=20, description="innovation multiplier at full ad reach")
    churn: Float = Field(ge=0, le=1, description="buyer churn per quarter at zero attractiveness")
    loyalty: Float = Field(ge=0, le=1, description="churn reduction per unit attractiveness")
    share_rate: Float = Field(ge=0, le=1, description="shopping-start share adjustment toward its target per quarter")
    genz_imitation: Float = Field(ge=0, le=5, description="Gen Z imitation multiplier")
    habit_rate: Float = Field(ge=0, le=1, description="Gen Z habit stock adjustment per quarter")
    habit_loyalty: Float = Field(ge=0, le=1, description="Gen Z churn reduction at full habit")
    base_orders: Float = Field(ge=0, le=2, description="orders multiplier intercept (0.6 in DESIGN)")
    spill: Float = Field(ge=0, le=1, description="share of orders over capacity still served")
    attention_weight: Float = Field(ge=0, le=2, description="innovation's response to attention relative to the start")


class Sellers(_Strict):
    join_rate: Float = Field(ge=0, le=1, description="organic seller join rate per quarter")
    grant_rate: Float = Field(ge=0, le=1, description="extra join rate at full grant pool")
    buyer_elasticity: Float = Field(ge=0, le=3, description="elasticity of joins to buyer penetration")
    reference_penetration: Float = Field(gt=0, le=1, description="buyer penetration at which the pull is 1")
    commission_drag: Float = Field(ge=0, le=50, description="join reduction per unit commission rate charged")
    rate_churn: Float = Field(ge=0, le=10, description="extra churn per unit rate above the reference")
    churn: Float = Field(ge=0, le=1)
    trust_churn: Float = Field(ge=0, le=10, description="extra churn multiplier at zero trust")
    suspended_churn: Float = Field(ge=0, le=1, description="extra churn per quarter while suspended")


class Creators(_Strict):
    join_rate: Float = Field(ge=0, le=1)
    pool_rate: Float = Field(ge=0, le=1, description="extra join rate at full creator pool")
    churn: Float = Field(ge=0, le=1)
    live_rate: Float = Field(ge=0, le=1, description="livestream affinity adoption per quarter")
    user_boost: Float = Field(ge=0, le=10, description="user growth multiplier from creator content")


class Platform(_Strict):
    ad_decay: Float = Field(ge=0, lt=1, description="geometric adstock theta per quarter")
    trust_recovery: Float = Field(ge=0, le=1)
    trust_hit: Float = Field(ge=0, le=1, description="trust lost per quarter at full private-label push")
    warehouse_depreciation: Float = Field(ge=0, le=1, description="platform warehousing depreciation per quarter")
    logistics_rate: Float = Field(ge=0, le=2, description="3PL capacity added per unit of last quarter's unmet demand")
    logistics_depreciation: Float = Field(ge=0, le=1, description="3PL capacity depreciation per quarter")
    capex_per_order: Float = Field(gt=0, le=1000, description="$ of capex per order/quarter of capacity")
    shop_ads_max: Float = Field(ge=0, le=0.1, description="shop-ads revenue share of GMV at full selection")
    private_label_margin: Float = Field(ge=0, le=1)
    attention_rate: Float = Field(ge=0, le=1, description="attention adjustment toward creators' content per quarter")
    attention_draw: Float = Field(ge=0, le=1, description="attention drawn by shoppable content at full selection")


class Region(_Strict):
    users: Float = Field(gt=0, le=2000, description="monthly active users, M")
    users_max: Float = Field(gt=0, le=3000, description="user ceiling, M")
    user_growth: Float = Field(ge=0, le=1, description="logistic user growth per quarter")
    genz_share: Float = Field(ge=0, le=1, description="Gen Z share of users")
    buyers: Float = Field(gt=0, le=2000, description="active buyers, M")
    genz_buyer_share: Float = Field(ge=0, le=1, description="Gen Z share of buyers at start")
    sellers: Float = Field(gt=0, le=100000, description="active sellers, k")
    sellers_potential: Float = Field(gt=0, le=100000, description="seller ceiling, k")
    sellers_half: Float = Field(ge=0.001, le=100000, description="selection half-point, k sellers (at least one seller: below, the Hill index overflows to NaN)")
    creators: Float = Field(gt=0, le=100000, description="selling creators, k")
    creators_potential: Float = Field(gt=0, le=100000, description="creator ceiling, k")
    creators_half: Float = Field(gt=0, le=100000, description="live half-point, k creators")
    aov: Float = Field(gt=0, le=1000, description="average order value, $")
    orders_per_buyer: Float = Field(gt=0, le=50, description="orders per buyer per quarter at start")
    livestream_affinity: Float = Field(ge=0, le=1)
    livestream_max: Float = Field(ge=0, le=1)
    reference_rate: Float = Field(ge=0, le=0.5, description="commission rate sellers expect (events can change it)")
    rate_max: Float = Field(gt=0, le=0.5, description="commission rate at full intensity of lever 0")
    shipping_cost: Float = Field(gt=0, le=100, description="$ per order")
    subsidy_max: Float = Field(ge=0, le=100, description="$ per order at full shipping subsidy")
    pool_max: Float = Field(ge=0, le=50, description="$B per quarter at full intensity, per pool lever")
    capacity_headroom: Float = Field(gt=0, le=10, description="sellers' own capacity at the start / start orders")
    shopping_share: Float = Field(gt=0, lt=1, description="share of online shoppers starting here")
    share_max: Float = Field(gt=0, lt=1, description="ceiling of the shopping-start share (competitors keep the rest)")
    private_label_max: Float = Field(ge=0, le=1, description="the label's GMV share at full push")
    private_label_appeal: Float = Field(ge=0, le=3, description="demand for the label relative to the goods it displaces")
    suspension_hazard: Float = Field(ge=0, le=1, description="per-quarter hazard")
    suspension_quarters: Int = Field(ge=1, le=12)
    suspension_share: Float = Field(ge=0, le=1, description="share of the region's demand shut off")

    @model_validator(mode="after")
    def _ceilings(self) -> "Region":
        for value, cap, name in [
            (self.users, self.users_max, "users"),
            (self.buyers, self.users, "buyers"),
            (self.sellers, self.sellers_potential, "sellers"),
            (self.creators, self.creators_potential, "creators"),
            (self.livestream_affinity, self.livestream_max, "livestream_affinity"),
        ]:
            if value > cap:
                raise ValueError(f"{name} = {value} must not exceed its ceiling {cap}")
        genz, older = self.buyers * self.genz_buyer_share, self.buyers * (1.0 - self.genz_buyer_share)
        if genz > self.users * self.genz_share * (1 + 1e-12) or older > self.users * (1.0 - self.genz_share) * (1 + 1e-12):
            raise ValueError(f"buyers x genz_buyer_share = {genz:.6g} M Gen Z and {older:.6g} M older buyers must not exceed "
                             f"users x genz_share = {self.users * self.genz_share:.6g} and {self.users * (1.0 - self.genz_share):.6g} M users of each cohort")
        if self.reference_rate > self.rate_max:
            raise ValueError(f"reference_rate = {self.reference_rate} must not exceed rate_max = {self.rate_max}")
        if self.shopping_share >= self.share_max:
            raise ValueError(f"shopping_share = {self.shopping_share} must be below share_max = {self.share_max}")
        return self


_QUARTER = re.compile(r"^(\d{4})Q([1-4])$")


def parse_quarter(text: Any) -> tuple[int, int] | None:
    """``"2023Q4"`` -> ``(2023, 3)`` (year, 0-based quarter); ``None`` if it is not such a label."""
    m = _QUARTER.match(str(text).strip())
    return (int(m.group(1)), int(m.group(2)) - 1) if m else None


class Suspend(_Strict):
    quarters: Int = Field(description="quarters the suspension lasts")
    share: Float = Field(description="share of the region's demand shut off")


class SetParameter(_Strict):
    path: str = Field(description="dotted path of a model parameter: 'sellers.churn' or 'regions.us.aov'")
    value: Float


class Event(_Strict):
    """A scripted event: in calendar ``quarter``, in ``region``, exactly one change."""

    quarter: str = Field(description="calendar quarter, e.g. 2023Q4")
    region: str | None = None
    suspend: Suspend | None = None
    reference_rate: Float | None = None
    launch: bool | None = None
    set: SetParameter | None = None


EVENT_KINDS = ("suspend", "reference_rate", "launch", "set")

#: Region fields that set a stock's start, which a ``set`` event cannot change (the stock has moved on
#: by then), with what to change instead.
START_VALUES = {
    "shopping_share": "the shopping-start share is a stock that moves toward its target each quarter; "
                      "to model competitors taking share, set regions.<region>.share_max",
}


def _check_set_value(label: str, path: str, section: BaseModel, name: str, value: float) -> None:
    """A ``set`` event's value must be in the range the scenario file's own field allows, one line
    if not. (Only the field's range: checks across fields would compare it with the file's
    starting values, not those of the event's quarter, after earlier events.)"""
    info = type(section).model_fields[name]
    try:
        TypeAdapter(Annotated[info.annotation, info]).validate_python(value)
    except ValidationError as exc:
        raise ValueError(f"{label}: set.value = {value} for {path}: {exc.errors()[0]['msg']}") from None


class Objective(_Strict):
    kind: Literal["gmv", "revenue", "contribution"] = "gmv"
    terminal_value: Float = Field(default=0.0, ge=0, le=40, description="quarters of the exit quarter's de-seasonalised value (one more quarter at the null action) added at the end")


class Scenario(_Strict):
    name: str
    description: str = ""
    horizon: Int = Field(ge=1, le=40, description="quarters in an episode")
    start: str = Field(description="calendar quarter of the first step, e.g. 2023Q1 (the start state is the quarter before)")
    season: tuple[Float, Float, Float, Float]
    target_run_rate: Float = Field(gt=0, description="$B annual GMV goal")
    deterministic: bool = False
    budget: Budget
    noise: Noise
    attractiveness: Attractiveness
    buyers: Buyers
    sellers: Sellers
    creators: Creators
    platform: Platform
    regions: dict[str, Region] = Field(min_length=1)
    objective: Objective = Objective()
    events: list[Event] = Field(default_factory=list)

    @model_validator(mode="after")
    def _checks(self) -> "Scenario":
        if any(not 0 < s <= 3 for s in self.season):
            raise ValueError(f"season multipliers must all be in (0, 3], got {list(self.season)}")
        if parse_quarter(self.start) is None:
            raise ValueError(f"start = {self.start!r} is not a calendar quarter like 2023Q1")
        self.compiled_events()  # every event checked here, with a message naming it
        return self

    @property
    def start_year(self) -> int:
        return parse_quarter(self.start)[0]

    @property
    def start_quarter(self) -> int:
        """Calendar quarter of the first step, 1-4."""
        return parse_quarter(self.start)[1] + 1

    def compiled_events(self) -> tuple[market.Event, ...]:
        """The events as :class:`envs.market.Event` (quarter indices, region indices); a bad
        event raises ``ValueError`` with one line naming it."""
        year, q0 = parse_quarter(self.start)
        first = year * 4 + q0
        names = list(self.regions)
        out = []
        labels: dict[int, str] = {}  # compiled event -> its label, for the checks across quarters
        seen: dict[tuple, str] = {}
        for k, ev in enumerate(self.events):
            label = f"events[{k}] ({ev.quarter}{', ' + ev.region if ev.region else ''})"
            parsed = parse_quarter(ev.quarter)
            if parsed is None:
                raise ValueError(f"{label}: quarter {ev.quarter!r} is not a calendar quarter like 2023Q4")
            t = parsed[0] * 4 + parsed[1] - first
            if not 0 <= t < self.horizon:
                last = market.serial_label(first + self.horizon - 1)
                raise ValueError(f"{label}: quarter {ev.quarter} is outside the horizon {self.start}..{last}")
            kinds = [kind for kind in EVENT_KINDS if getattr(ev, kind) is not None]
            if len(kinds) != 1:
                raise ValueError(f"{label}: an event makes exactly one change, one of {', '.join(EVENT_KINDS)} (got {kinds or 'none'})")
            kind = kinds[0]
            # one key per thing changed: a reference_rate event and a set of regions.<r>.reference_rate are one change
            what = (t, ev.set.path) if kind == "set" else (t, f"regions.{ev.region}.reference_rate") if kind == "reference_rate" else (t, kind, ev.region)
            if what in seen:
                raise ValueError(f"{label}: {seen[what]} already changes {what[1] if len(what) == 2 else kind} in {ev.quarter}; keep one")
            seen[what] = f"events[{k}]"
            if kind == "set":
                out.append(self._compile_set(label, t, ev))
                labels[len(out) - 1] = label
                continue
            if ev.region not in self.regions:
                raise ValueError(f"{label}: region {ev.region!r} is not in the scenario's regions ({', '.join(names)})")
            j = names.index(ev.region)
            if kind == "suspend":
                if not 0.0 <= ev.suspend.share <= 1.0:
                    raise ValueError(f"{label}: suspend.share = {ev.suspend.share} must be in [0, 1]")
                if not 1 <= ev.suspend.quarters <= 40:
                    raise ValueError(f"{label}: suspend.quarters = {ev.suspend.quarters} must be in 1..40")
                out.append(market.Event(t, j, "suspend", value=ev.suspend.share, quarters=ev.suspend.quarters))
            elif kind == "reference_rate":
                if not ev.reference_rate >= 0.0:  # its ceiling, rate_max as events leave it, is checked over time below
                    raise ValueError(f"{label}: reference_rate = {ev.reference_rate} must be in [0, rate_max]")
                out.append(market.Event(t, j, "reference_rate", value=ev.reference_rate))
                labels[len(out) - 1] = label
            else:
                if ev.launch is not True:
                    raise ValueError(f"{label}: launch must be true")
                out.append(market.Event(t, j, "launch"))
        self._check_rates_over_time(out, labels)
        return tuple(out)

    def _check_rates_over_time(self, events: list[market.Event], labels: dict[int, str]) -> None:
        """In every quarter, after the events so far, each region's reference rate is within
        [0, rate_max] (the file's own check, kept over time): a reference above the rate lever 0
        can charge would make the null action pay a discount. One line naming the event."""
        ref = {j: r.reference_rate for j, r in enumerate(self.regions.values())}
        top = {j: r.rate_max for j, r in enumerate(self.regions.values())}
        for t in sorted({ev.t for ev in events}):  # a quarter's events hold together: check after all of them
            touched: dict[int, int] = {}
            for k, ev in enumerate(events):
                if ev.t != t:
                    continue
                if ev.kind == "reference_rate" or (ev.kind == "set" and ev.target == ("region", "reference_rate")):
                    ref[ev.region] = ev.value
                elif ev.kind == "set" and ev.target == ("region", "rate_max"):
                    top[ev.region] = ev.value
                else:
                    continue
                touched[ev.region] = k
            for j, k in touched.items():
                if ref[j] > top[j]:
                    name = list(self.regions)[j]
                    raise ValueError(f"{labels[k]}: from then on regions.{name}.reference_rate = {ref[j]:g} would exceed "
                                     f"regions.{name}.rate_max = {top[j]:g}; the reference must stay within [0, rate_max]")

    def _compile_set(self, label: str, t: int, ev: Event) -> market.Event:
        parts = ev.set.path.split(".")
        tables = {"attractiveness": "attr", "buyers": "buyers", "sellers": "sellers", "creators": "creators", "platform": "platform"}
        region_fields = [p.name for p in market.REGION_PARAM_TABLE if p.group == "region"]
        region_fields = [f for f in region_fields if f not in START_VALUES]
        if len(parts) == 3 and parts[0] == "regions":
            if parts[1] not in self.regions:
                raise ValueError(f"{label}: set.path {ev.set.path!r} names region {parts[1]!r}, not in the scenario's regions ({', '.join(self.regions)})")
            if ev.region is not None and ev.region != parts[1]:
                raise ValueError(f"{label}: the event's region is {ev.region!r} but set.path {ev.set.path!r} changes region {parts[1]!r}; make them one")
            if parts[2] in START_VALUES:
                raise ValueError(f"{label}: set.path {ev.set.path!r} is a start value, not a parameter that can change: {START_VALUES[parts[2]]}")
            if parts[2] not in region_fields:
                raise ValueError(f"{label}: set.path {ev.set.path!r} is not a parameter that can change; per region: {', '.join(region_fields)}")
            _check_set_value(label, ev.set.path, self.regions[parts[1]], parts[2], ev.set.value)
            value = 0.0 if parts[2] == "suspension_hazard" and self.deterministic else ev.set.value  # deterministic: no hazards, events included
            return market.Event(t, list(self.regions).index(parts[1]), "set", value=value, target=("region", parts[2]))
        if len(parts) == 2 and parts[0] in tables:
            group = tables[parts[0]]
            allowed = [p.name for p in market.GLOBAL_PARAM_TABLE if p.group == group]
            if parts[1] in allowed and ev.region is not None:
                raise ValueError(f"{label}: set.path {ev.set.path!r} is platform-wide (it changes every region); drop region: "
                                 f"{ev.region!r}, or change a regional parameter (regions.<region>.<name>)")
            if parts[1] in allowed:
                _check_set_value(label, ev.set.path, getattr(self, parts[0]), parts[1], ev.set.value)
                return market.Event(t, -1, "set", value=ev.set.value, target=(group, parts[1]))
        raise ValueError(
            f"{label}: set.path {ev.set.path!r} is not a model parameter; use '<section>.<name>' "
            f"({', '.join(tables)}) or 'regions.<region>.<name>'"
        )

    @property
    def region_names(self) -> list[str]:
        return list(self.regions)

    def to_params(self) -> market.Params:
        """Arrays for :mod:`envs.market`, region order as in the file."""
        regions = list(self.regions.values())

        def col(field: str) -> np.ndarray:
            return np.array([getattr(r, field) for r in regions], dtype=np.float64)

        det = self.deterministic
        return market.Params(
            region_names=tuple(self.regions),
            horizon=self.horizon,
            start_quarter=self.start_quarter - 1,
            start_year=self.start_year,
            objective_kind=market.OBJECTIVES.index(self.objective.kind),
            terminal_value=self.objective.terminal_value,
            events=self.compiled_events(),
            season=np.array(self.season, dtype=np.float64),
            target_run_rate=self.target_run_rate,
            hard_budget=self.budget.mode == "hard",
            budget_per_quarter=self.budget.per_quarter,
            budget_total=self.budget.total,
            demand_sigma=0.0 if det else self.noise.demand_sigma,
            suspension_hazard=col("suspension_hazard") * (0.0 if det else 1.0),
            suspension_quarters=col("suspension_quarters"),
            suspension_share=col("suspension_share"),
            attr=self.attractiveness.model_dump(),
            buyers=self.buyers.model_dump(),
            sellers=self.sellers.model_dump(),
            creators=self.creators.model_dump(),
            platform=self.platform.model_dump(),
            region={f: col(f) for f in Region.model_fields if f not in _REGION_NON_ARRAY},
        )


_REGION_NON_ARRAY = {"suspension_hazard", "suspension_quarters", "suspension_share"}


# --------------------------------------------------------------------------- loading


def read_yaml_mapping(path: Path, what: str = "scenario", error: type[ValueError] = ScenarioError, empty_ok: bool = False) -> dict:
    """Read a YAML file that must hold a mapping (:func:`envs.config_files.read_yaml_mapping`)."""
    return config_files.read_yaml_mapping(path, what=what, error=error, empty_ok=empty_ok)


def builtin_scenarios() -> list[str]:
    """Names of the scenarios shipped in ``configs/scenarios``."""
    return sorted(p.stem for p in SCENARIO_DIR.glob("*.yaml"))


def _resolve_path(name_or_path: str | Path, base_dir: Path | None = None) -> Path:
    """A built-in scenario name or a path (relative to ``base_dir``, else the current directory)."""
    return resolve_reference(name_or_path, base_dir, SCENARIO_DIR, "scenario", ScenarioError)


def _only_regions(doc: dict, own: dict, path: Path) -> dict:
    """Apply a file's ``only_regions: [names]`` to the merged document (region order as listed)."""
    if "only_regions" not in own:
        return doc
    doc = dict(doc)
    only = doc.pop("only_regions")
    regions = doc.get("regions", {})
    allowed = list(regions) if isinstance(regions, dict) else []
    if not isinstance(only, list) or not only or not all(isinstance(r, str) for r in only):
        raise ScenarioError(f"{path}: only_regions must be a non-empty list of region names, e.g. [{', '.join(allowed[:1]) or 'us'}], "
                            f"not {only!r}; allowed: {', '.join(allowed)}")
    unknown = [r for r in only if r not in allowed]
    if unknown:
        raise ScenarioError(f"{path}: only_regions names unknown regions {unknown}; allowed: {', '.join(allowed)}")
    if len(set(only)) < len(only):
        raise ScenarioError(f"{path}: only_regions names a region twice: {only}")
    doc["regions"] = {r: regions[r] for r in only}
    return doc


def _load_document(path: Path) -> dict:
    """A scenario file with its ``extends`` chain and ``only_regions`` resolved."""
    return load_document(path, builtin_dir=SCENARIO_DIR, what="scenario", error=ScenarioError, after_merge=_only_regions)


def apply_overrides(doc: dict, overrides: Mapping[str, Any] | None, where: str = "overrides") -> dict:
    """Set ``dotted.path: value`` pairs in a nested dict; unknown paths are an error."""
    return config_files.apply_overrides(doc, overrides, where=where, error=ScenarioError)


def format_validation_error(exc: ValidationError, source: str, doc: Mapping | None = None) -> str:
    """One line naming the first failing field of the scenario, its value and what is allowed."""
    return config_files.format_validation_error(exc, source, Scenario)


def load_scenario(
    scenario: "str | Path | Scenario" = "global", overrides: Mapping[str, Any] | None = None
) -> Scenario:
    """Load and validate a scenario.

    :param scenario: a built-in name (``global``, ``us``, ...), a path to a YAML file, or a
        :class:`Scenario` (overrides are then applied to its fields).
    :param overrides: ``{"dotted.path": value}``, validated like the file.
    :raises ScenarioError: one line saying what, where and what is allowed.
    """
    if isinstance(scenario, Scenario):
        doc, source = scenario.model_dump(), f"scenario '{scenario.name}'"
    elif isinstance(scenario, (str, Path)):
        path = _resolve_path(scenario)
        doc, source = _load_document(path), str(path)
    else:
        raise ScenarioError(f"scenario must be a name, a path or a Scenario, not {type(scenario).__name__}")
    if overrides is not None and not isinstance(overrides, Mapping):
        raise ScenarioError(f"{source}: overrides must be a mapping of dotted paths to values, not {type(overrides).__name__}")
    doc = apply_overrides(doc, overrides, where=f"{source} overrides")
    try:
        return Scenario.model_validate(doc)
    except ValidationError as exc:
        raise ScenarioError(format_validation_error(exc, source, doc)) from None


def parse_set_pairs(pairs: "Iterable[str]", example: str = "budget.total=6", error: type[ValueError] = ScenarioError) -> dict[str, Any]:
    """``["budget.total=6", "deterministic=true"]`` -> ``{"budget.total": 6.0, "deterministic": True}``
    (:func:`envs.config_files.parse_set_pairs`, raising ``error``, :class:`ScenarioError` by default)."""
    return config_files.parse_set_pairs(pairs, example=example, error=error)
