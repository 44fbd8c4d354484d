"""Scenarios: typed, validated market parameters loaded from YAML.

A scenario is data. Every number lives in a YAML file under ``configs/scenarios/`` with a
comment that names its source in ``CALIBRATION.md`` or says it is an assumption; this module
only defines the schema (names, types, allowed ranges) and turns a validated scenario into the
arrays the batched market model (:mod:`envs.market`) consumes.

Loading::

    sc = load_scenario("global")                        # configs/scenarios/global.yaml
    sc = load_scenario("my.yaml", overrides={"budget.mode": "soft", "deterministic": True})

A scenario file may start from another one with ``extends: NAME`` (deep merge) and keep a
subset of its regions with ``only_regions: [us]``. Overrides use dotted paths into the merged
document (``regions.us.aov``, ``budget.total``) and are validated exactly like the file.
Every user mistake raises :class:`ScenarioError`, a ``ValueError`` whose one-line message says
what is wrong, where, and what is allowed.
"""

from __future__ import annotations

import copy
import re
from pathlib import Path
from typing import Any, Iterable, Literal, Mapping

import numpy as np
import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from envs import market

SCENARIO_DIR = Path(__file__).resolve().parent.parent / "configs" / "scenarios"


class ScenarioError(ValueError):
    """A scenario (file, name or override) is invalid. The message is one line."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


class Budget(_Strict):
    per_quarter: float = Field(gt=0, le=100, description="$B a quarter at most")
    total: float = Field(gt=0, le=1000, description="$B over the whole horizon")
    mode: Literal["hard", "soft"] = "hard"


class Noise(_Strict):
    demand_sigma: float = Field(ge=0, le=1, description="log-normal demand shock, per quarter")


class Attractiveness(_Strict):
    w_selection: float = Field(ge=0, le=5)
    selection_slope: float = Field(ge=0.5, le=4, description="Hill slope of selection in sellers (>1: critical mass)")
    w_shipping: float = Field(ge=0, le=5)
    w_speed: float = Field(ge=0, le=5)
    w_live: float = Field(ge=0, le=5)
    w_fee: float = Field(ge=0, le=5)
    w_private_label: float = Field(ge=0, le=5, description="attractiveness per unit label share and unit of appeal above 1")
    shipping_ec: float = Field(gt=0, le=10, description="Hill half-point of subsidy/shipping cost")
    fee_ec: float = Field(gt=0, le=10, description="half-point of the discount's concave effect")
    hill_ec: float = Field(gt=0, le=10, description="Hill half-point of pool spend / pool_max")
    private_label_ec: float = Field(gt=0, le=10, description="half-point of the private label's concave GMV share")


class Buyers(_Strict):
    bass_p: float = Field(ge=0, le=1, description="Bass innovation, per quarter")
    bass_q: float = Field(ge=0, le=2, description="Bass imitation, per quarter")
    ad_lift: float = Field(ge=0, le=20, description="innovation multiplier at full ad reach")
    churn: float = Field(ge=0, le=1, description="buyer churn per quarter at zero attractiveness")
    loyalty: float = Field(ge=0, le=1, description="churn reduction per unit attractiveness")
    share_rate: float = Field(ge=0, le=1, description="shopping-start share adjustment toward its target per quarter")
    genz_imitation: float = Field(ge=0, le=5, description="Gen Z imitation multiplier")
    habit_rate: float = Field(ge=0, le=1, description="Gen Z habit stock adjustment per quarter")
    habit_loyalty: float = Field(ge=0, le=1, description="Gen Z churn reduction at full habit")
    base_orders: float = Field(ge=0, le=2, description="orders multiplier intercept (0.6 in DESIGN)")
    spill: float = Field(ge=0, le=1, description="share of orders over capacity still served")
    attention_weight: float = Field(ge=0, le=2, description="innovation's response to attention relative to the start")


class Sellers(_Strict):
    join_rate: float = Field(ge=0, le=1, description="organic seller join rate per quarter")
    grant_rate: float = Field(ge=0, le=1, description="extra join rate at full grant pool")
    buyer_elasticity: float = Field(ge=0, le=3, description="elasticity of joins to buyer penetration")
    reference_penetration: float = Field(gt=0, le=1, description="buyer penetration at which the pull is 1")
    commission_drag: float = Field(ge=0, le=50, description="join reduction per unit commission rate charged")
    rate_churn: float = Field(ge=0, le=10, description="extra churn per unit rate above the reference")
    churn: float = Field(ge=0, le=1)
    trust_churn: float = Field(ge=0, le=10, description="extra churn multiplier at zero trust")
    suspended_churn: float = Field(ge=0, le=1, description="extra churn per quarter while suspended")


class Creators(_Strict):
    join_rate: float = Field(ge=0, le=1)
    pool_rate: float = Field(ge=0, le=1, description="extra join rate at full creator pool")
    churn: float = Field(ge=0, le=1)
    live_rate: float = Field(ge=0, le=1, description="livestream affinity adoption per quarter")
    user_boost: float = Field(ge=0, le=10, description="user growth multiplier from creator content")


class Platform(_Strict):
    ad_decay: float = Field(ge=0, lt=1, description="geometric adstock theta per quarter")
    trust_recovery: float = Field(ge=0, le=1)
    trust_hit: float = Field(ge=0, le=1, description="trust lost per quarter at full private-label push")
    warehouse_depreciation: float = Field(ge=0, le=1, description="platform warehousing depreciation per quarter")
    logistics_rate: float = Field(ge=0, le=2, description="3PL capacity added per unit of last quarter's unmet demand")
    logistics_depreciation: float = Field(ge=0, le=1, description="3PL capacity depreciation per quarter")
    capex_per_order: float = Field(gt=0, le=1000, description="$ of capex per order/quarter of capacity")
    shop_ads_max: float = Field(ge=0, le=0.1, description="shop-ads revenue share of GMV at full selection")
    private_label_margin: float = Field(ge=0, le=1)
    attention_rate: float = Field(ge=0, le=1, description="attention adjustment toward creators' content per quarter")
    attention_draw: float = Field(ge=0, le=1, description="attention drawn by shoppable content at full selection")


class Region(_Strict):
    users: float = Field(gt=0, le=2000, description="monthly active users, M")
    users_max: float = Field(gt=0, le=3000, description="user ceiling, M")
    user_growth: float = Field(ge=0, le=1, description="logistic user growth per quarter")
    genz_share: float = Field(ge=0, le=1, description="Gen Z share of users")
    buyers: float = Field(gt=0, le=2000, description="active buyers, M")
    genz_buyer_share: float = Field(ge=0, le=1, description="Gen Z share of buyers at start")
    sellers: float = Field(gt=0, le=100000, description="active sellers, k")
    sellers_potential: float = Field(gt=0, le=100000, description="seller ceiling, k")
    sellers_half: float = Field(gt=0, le=100000, description="selection half-point, k sellers")
    creators: float = Field(gt=0, le=100000, description="selling creators, k")
    creators_potential: float = Field(gt=0, le=100000, description="creator ceiling, k")
    creators_half: float = Field(gt=0, le=100000, description="live half-point, k creators")
    aov: float = Field(gt=0, le=1000, description="average order value, $")
    orders_per_buyer: float = Field(gt=0, le=50, description="orders per buyer per quarter at start")
    livestream_affinity: float = Field(ge=0, le=1)
    livestream_max: float = Field(ge=0, le=1)
    reference_rate: float = Field(ge=0, le=0.5, description="commission rate sellers expect (events can change it)")
    rate_max: float = Field(gt=0, le=0.5, description="commission rate at full intensity of lever 0")
    shipping_cost: float = Field(gt=0, le=100, description="$ per order")
    subsidy_max: float = Field(ge=0, le=100, description="$ per order at full shipping subsidy")
    pool_max: float = Field(ge=0, le=50, description="$B per quarter at full intensity, per pool lever")
    capacity_headroom: float = Field(gt=0, le=10, description="sellers' own capacity at the start / start orders")
    shopping_share: float = Field(gt=0, lt=1, description="share of online shoppers starting here")
    share_max: float = Field(gt=0, lt=1, description="ceiling of the shopping-start share (competitors keep the rest)")
    private_label_max: float = Field(ge=0, le=1, description="the label's GMV share at full push")
    private_label_appeal: float = Field(ge=0, le=3, description="demand for the label relative to the goods it displaces")
    suspension_hazard: float = Field(ge=0, le=1, description="per-quarter hazard")
    suspension_quarters: int = Field(ge=1, le=12)
    suspension_share: float = Field(ge=0, le=1, description="share of the region's demand shut off")

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
    quarters: int = Field(description="quarters the suspension lasts")
    share: float = Field(description="share of the region's demand shut off")


class SetParameter(_Strict):
    path: str = Field(description="dotted path of a model parameter: 'sellers.churn' or 'regions.us.aov'")
    value: float


class Event(_Strict):
    """A scripted event: in calendar ``quarter``, in ``region``, exactly one change."""

    quarter: str = Field(description="calendar quarter, e.g. 2023Q4")
    region: str | None = None
    suspend: Suspend | None = None
    reference_rate: float | None = None
    launch: bool | None = None
    set: SetParameter | None = None


EVENT_KINDS = ("suspend", "reference_rate", "launch", "set")


class Objective(_Strict):
    kind: Literal["gmv", "revenue", "contribution"] = "gmv"
    terminal_value: float = Field(default=0.0, ge=0, le=40, description="quarters of the final quarter's de-seasonalised value added at the end")


class Scenario(_Strict):
    name: str
    description: str = ""
    horizon: int = Field(ge=1, le=40, description="quarters in an episode")
    start: str = Field(description="calendar quarter of the first step, e.g. 2023Q1 (the start state is the quarter before)")
    season: tuple[float, float, float, float]
    target_run_rate: float = Field(gt=0, description="$B annual GMV goal")
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
        if any(s <= 0 for s in self.season):
            raise ValueError("season multipliers must all be > 0")
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
            if kind == "set":
                out.append(self._compile_set(label, t, ev))
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
                rate_max = self.regions[ev.region].rate_max
                if not 0.0 <= ev.reference_rate <= rate_max:
                    raise ValueError(f"{label}: reference_rate = {ev.reference_rate} must be in [0, rate_max = {rate_max}]")
                out.append(market.Event(t, j, "reference_rate", value=ev.reference_rate))
            else:
                if ev.launch is not True:
                    raise ValueError(f"{label}: launch must be true")
                out.append(market.Event(t, j, "launch"))
        return tuple(out)

    def _compile_set(self, label: str, t: int, ev: Event) -> market.Event:
        parts = ev.set.path.split(".")
        tables = {"attractiveness": "attr", "buyers": "buyers", "sellers": "sellers", "creators": "creators", "platform": "platform"}
        region_fields = [p.name for p in market.REGION_PARAM_TABLE if p.group == "region"]
        if len(parts) == 3 and parts[0] == "regions":
            if parts[1] not in self.regions:
                raise ValueError(f"{label}: set.path {ev.set.path!r} names region {parts[1]!r}, not in the scenario's regions ({', '.join(self.regions)})")
            if parts[2] not in region_fields:
                raise ValueError(f"{label}: set.path {ev.set.path!r} is not a parameter that can change; per region: {', '.join(region_fields)}")
            return market.Event(t, list(self.regions).index(parts[1]), "set", value=ev.set.value, target=("region", parts[2]))
        if len(parts) == 2 and parts[0] in tables:
            group = tables[parts[0]]
            allowed = [p.name for p in market.GLOBAL_PARAM_TABLE if p.group == group]
            if parts[1] in allowed:
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
    """Read a YAML file that must hold a mapping; every problem is one-line ``error``.

    :param what: the kind of file, for messages (``scenario``, ``config``).
    :param empty_ok: an empty file reads as ``{}`` instead of an error.
    """
    try:
        text = path.read_text()
    except FileNotFoundError:
        raise error(f"{what} file not found: {path}") from None
    except IsADirectoryError:
        raise error(f"{what} path is a directory, not a YAML file: {path}") from None
    except OSError as exc:
        raise error(f"cannot read {what} file {path}: {exc.strerror}") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" line {mark.line + 1}" if mark is not None else ""
        raise error(f"{path}{where}: not valid YAML ({getattr(exc, 'problem', exc)})") from None
    if data is None and empty_ok:
        data = {}
    if not isinstance(data, dict):
        article = "a training config" if what == "config" else f"a {what} file"
        raise error(f"{path}: {article} must be a mapping of keys to values")
    return data


def builtin_scenarios() -> list[str]:
    """Names of the scenarios shipped in ``configs/scenarios``."""
    return sorted(p.stem for p in SCENARIO_DIR.glob("*.yaml"))


def _resolve_path(name_or_path: str | Path) -> Path:
    text = str(name_or_path)
    if text.endswith((".yaml", ".yml")) or "/" in text or "\\" in text:
        return Path(text)
    path = SCENARIO_DIR / f"{text}.yaml"
    if not path.exists():
        raise ScenarioError(
            f"unknown scenario '{text}': built-in scenarios are {', '.join(builtin_scenarios())} "
            "(or give a path to a .yaml file)"
        )
    return path


def deep_merge(base: dict, top: Mapping) -> dict:
    """Recursive dict merge: values of ``top`` win; mappings merge key by key."""
    out = copy.deepcopy(base)
    for key, value in top.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), dict):
            out[key] = deep_merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def _load_document(path: Path, seen: tuple[Path, ...] = ()) -> dict:
    path = path.resolve()
    if path in seen:
        raise ScenarioError(f"{path}: 'extends' forms a cycle")
    data = read_yaml_mapping(path)
    parent = data.pop("extends", None)
    only = data.pop("only_regions", None)
    if parent is not None:
        parent_path = _resolve_path(parent)
        if not parent_path.is_absolute() and not parent_path.exists():
            parent_path = path.parent / parent_path  # relative to the extending file
        base = _load_document(parent_path, seen + (path,))
        data = deep_merge(base, data)
    if only is not None:
        regions = data.get("regions", {})
        unknown = [r for r in only if r not in regions]
        if unknown:
            raise ScenarioError(f"{path}: only_regions names unknown regions {unknown}; allowed: {list(regions)}")
        data["regions"] = {r: regions[r] for r in only}
    return data


def apply_overrides(doc: dict, overrides: Mapping[str, Any] | None, where: str = "overrides") -> dict:
    """Set ``dotted.path: value`` pairs in a nested dict; unknown paths are an error."""
    doc = copy.deepcopy(doc)
    for dotted, value in (overrides or {}).items():
        keys = str(dotted).split(".")
        node = doc
        for i, key in enumerate(keys):
            if not isinstance(node, dict) or key not in node:
                have = sorted(node) if isinstance(node, dict) else []
                prefix = ".".join(keys[:i]) or "top level"
                raise ScenarioError(f"{where}: unknown key '{dotted}' ('{key}' is not in {prefix}; allowed: {', '.join(map(str, have))})")
            if i == len(keys) - 1:
                if isinstance(value, Mapping) and isinstance(node[key], dict):
                    node[key] = deep_merge(node[key], value)
                else:
                    node[key] = value
            else:
                node = node[key]
    return doc


def _allowed_keys(model: type[BaseModel], loc: tuple) -> list[str]:
    """Field names of the (sub)model that ``loc`` points into (dict keys like region names skipped)."""
    for part in loc:
        if isinstance(part, str) and part in model.model_fields:
            annotation = model.model_fields[part].annotation
            args = getattr(annotation, "__args__", ())
            candidates = [annotation, *args]
            sub = next((c for c in candidates if isinstance(c, type) and issubclass(c, BaseModel)), None)
            if sub is None:
                return []
            model = sub
    return list(model.model_fields)


def format_validation_error(exc: ValidationError, source: str, doc: Mapping | None = None) -> str:
    """One line naming the first failing field, its value and what is allowed."""
    err = exc.errors()[0]
    loc = ".".join(str(p) for p in err["loc"]) or "(top level)"
    msg = err["msg"]
    if err["type"] == "extra_forbidden":
        allowed = _allowed_keys(Scenario, err["loc"][:-1])
        return f"{source}: unknown key '{loc}'; allowed here: {', '.join(allowed)}"
    if err["type"] == "missing":
        return f"{source}: missing required key '{loc}'"
    value = err.get("input")
    shown = "" if isinstance(value, (dict, list)) else f" = {value!r}"
    allowed = _allowed_range(Scenario, err["loc"])
    allowed = f" (allowed: {allowed})" if allowed else ""
    extra = f" (and {len(exc.errors()) - 1} more errors)" if len(exc.errors()) > 1 else ""
    return f"{source}: {loc}{shown}: {msg}{allowed}{extra}"


def _allowed_range(model: type[BaseModel], loc: tuple) -> str:
    """The bounds of the field at ``loc``, e.g. ``0 < x <= 1000``, or '' when unknown."""
    info = None
    for part in loc:
        if not (isinstance(part, str) and part in model.model_fields):
            continue
        info = model.model_fields[part]
        annotation = info.annotation
        sub = next(
            (c for c in (annotation, *getattr(annotation, "__args__", ())) if isinstance(c, type) and issubclass(c, BaseModel)),
            None,
        )
        if sub is not None:
            model = sub
    if info is None:
        return ""
    low = high = ""
    for m in info.metadata:
        if getattr(m, "gt", None) is not None:
            low = f"{m.gt} < "
        if getattr(m, "ge", None) is not None:
            low = f"{m.ge} <= "
        if getattr(m, "lt", None) is not None:
            high = f" < {m.lt}"
        if getattr(m, "le", None) is not None:
            high = f" <= {m.le}"
    if low or high:
        return f"{low}x{high}, a finite number"
    return ""


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
    doc = apply_overrides(doc, overrides, where=f"{source} overrides")
    try:
        return Scenario.model_validate(doc)
    except ValidationError as exc:
        raise ScenarioError(format_validation_error(exc, source, doc)) from None


def parse_set_pairs(pairs: "Iterable[str]", example: str = "budget.total=6", error: type[ValueError] = ScenarioError) -> dict[str, Any]:
    """``["budget.total=6", "deterministic=true"]`` -> ``{"budget.total": 6.0, "deterministic": True}``.

    The values of repeated ``--set key=value`` options, parsed with :func:`parse_set_value`;
    an item without ``=`` raises ``error`` with one line naming it.
    """
    out: dict[str, Any] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise error(f"--set expects key=value (a dotted path, e.g. --set {example}), got '{pair}'")
        out[key.strip()] = parse_set_value(value)
    return out


def parse_set_value(text: str) -> Any:
    """Parse the value of a ``--set key=value`` as YAML (numbers, booleans, lists, strings).

    YAML 1.1 reads exponent notation without a dot (``1e-3``) as a string; such strings that
    are numbers become floats.
    """
    try:
        value = yaml.safe_load(text)
    except yaml.YAMLError:
        return text
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            return value
    return value
