"""History files: what was measured, what the platform did and what happened to it.

A history file (``configs/history/*.yaml``, format in ``docs/calibration.md``) names the scenario
it replays and holds

* ``observations``: measured figures, ``{region, period, metric, value, source}``; ``period`` a
  year ``"2024"``, a half ``"2025H1"`` or a quarter ``"2024Q4"``; ``region`` one of the
  scenario's or ``all``; ``metric`` one of :data:`METRICS`;
* ``plan``: lever intensities in [0, 1] per quarter and region (a lever not listed plays the null
  action: no cash, the commission at the region's reference rate);
* ``events``: scripted events in the scenario's format, added to the scenario's own;
* ``free``: parameters to fit, ``dotted.path: [lo, hi]`` into the scenario;
* ``holdout``: observations kept out of the fit and reported apart.

:func:`load_history` validates the file against its scenario; every mistake is a
:class:`HistoryError`, one line saying what, where and what is allowed. The replay itself (the
model run over the plan) is :mod:`agents.calibration`; this module only says what the file
means: the scenario to replay (:meth:`History.scenario`), the plan as intensities
(:meth:`History.plan_intensity`) and which quarters each observation covers.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, Mapping

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from envs import config_files, market
from envs.config_files import Float
from envs.scenario import SCENARIO_DIR, Scenario, ScenarioError, load_scenario, parse_quarter

__all__ = ["HISTORY_DIR", "METRICS", "History", "HistoryError", "Observation", "load_history", "period_quarters"]

HISTORY_DIR = Path(__file__).resolve().parent.parent / "configs" / "history"

#: What an observation can measure: ``gmv``, ``orders`` and ``revenue`` are sums over the period
#: ($B, M orders, $B); ``sellers`` (k) and ``buyers`` (M) are counts at the period's end.
METRICS: tuple[str, ...] = ("gmv", "orders", "revenue", "sellers", "buyers")
SUMMED: frozenset[str] = frozenset({"gmv", "orders", "revenue"})
#: Metrics the model reports for the whole platform only (no per-region figure).
PLATFORM_ONLY: frozenset[str] = frozenset({"revenue"})

_PERIOD = re.compile(r"^(\d{4})(?:(H[12])|(Q[1-4]))?$")


class HistoryError(ValueError):
    """A history file is invalid. The message is one line."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


class Observation(_Strict):
    region: str
    period: str
    metric: Literal[METRICS]  # type: ignore[valid-type]
    value: Float = Field(gt=0, description="the measured figure, in the metric's unit")
    source: str = Field(min_length=1, description="who published it, when")


class PlanRow(_Strict):
    quarter: str
    region: str
    levers: dict[str, Float] = Field(default_factory=dict)


class _HistoryFile(_Strict):
    scenario: str = Field(min_length=1)
    observations: list[Observation] = Field(min_length=1)
    plan: list[PlanRow] = Field(default_factory=list)
    events: list[dict[str, Any]] = Field(default_factory=list)
    free: dict[str, tuple[Float, Float]] = Field(default_factory=dict)
    holdout: list[Observation] = Field(default_factory=list)


def period_quarters(period: str) -> list[int] | None:
    """The calendar quarters of a period as serials ``year * 4 + quarter_index``, or ``None``
    when ``period`` is not ``"2024"``, ``"2025H1"`` or ``"2024Q4"``."""
    m = _PERIOD.match(str(period))
    if m is None:
        return None
    year = int(m.group(1))
    if m.group(2):
        first = 0 if m.group(2) == "H1" else 2
        return [year * 4 + first, year * 4 + first + 1]
    if m.group(3):
        return [year * 4 + int(m.group(3)[1]) - 1]
    return [year * 4 + q for q in range(4)]


@dataclass(frozen=True)
class History:
    """A validated history file and the scenario document it replays.

    ``quarters[k]`` / ``holdout_quarters[k]`` are the quarter indices (0 = the first quarter
    played) observation ``k`` covers; ``free`` maps each fitted path to its bounds.
    """

    path: Path
    sha256: str
    scenario_path: Path
    document: dict  # the scenario document, history events appended, budget in soft mode
    observations: tuple[Observation, ...]
    holdout: tuple[Observation, ...]
    quarters: tuple[tuple[int, ...], ...]
    holdout_quarters: tuple[tuple[int, ...], ...]
    plan: tuple[PlanRow, ...]
    free: dict[str, tuple[float, float]]
    region_names: tuple[str, ...]
    horizon: int
    start_serial: int

    def scenario(self, overrides: Mapping[str, Any] | None = None, deterministic: bool = True) -> Scenario:
        """The scenario a replay runs: the history's scenario with its events, soft budget (the
        record's spend is not scaled), random suspensions off (the record's suspensions are
        scripted events), ``deterministic`` as asked, then ``overrides`` (dotted paths)."""
        doc = dict(self.document, deterministic=bool(deterministic))
        doc = config_files.apply_overrides(doc, overrides, where=f"{self.path}: parameters", error=HistoryError)
        try:
            return Scenario.model_validate(doc)
        except ValidationError as exc:
            raise HistoryError(config_files.format_validation_error(exc, f"{self.path}: scenario {self.scenario_path.name}", Scenario)) from None

    def plan_intensity(self, params: market.Params, param_set: int = 0) -> np.ndarray:
        """The plan as intensities ``(T, R, L)``: the null action of every quarter (commission at
        that quarter's reference rate, nothing else), then the listed levers."""
        u = np.stack([market.null_intensity(params, t, param_set) for t in range(params.horizon)])
        regions = list(params.region_names)
        for row in self.plan:
            t = _serial(row.quarter) - self.start_serial
            j = regions.index(row.region)
            for lever, value in row.levers.items():
                u[t, j, market.LEVERS.index(lever)] = value
        return u

    def labels(self) -> list[str]:
        """Calendar labels of the quarters played, ``2023Q1``..."""
        return [market.serial_label(self.start_serial + t) for t in range(self.horizon)]


def _serial(label: str) -> int:
    year, q0 = parse_quarter(label)
    return year * 4 + q0


def _check_observations(rows: list[Observation], where: str, regions: list[str], start: int, horizon: int) -> list[tuple[int, ...]]:
    first, last = market.serial_label(start), market.serial_label(start + horizon - 1)
    out = []
    seen: set[tuple[str, str, str]] = set()
    for k, ob in enumerate(rows):
        label = f"{where}[{k}] ({ob.region} {ob.period} {ob.metric})"
        if ob.region != "all" and ob.region not in regions:
            raise HistoryError(f"{label}: unknown region {ob.region!r}; allowed: {', '.join(regions)}, all")
        if ob.metric in PLATFORM_ONLY and ob.region != "all":
            raise HistoryError(f"{label}: the model reports {ob.metric} for the whole platform only; use region: all")
        serials = period_quarters(ob.period)
        if serials is None:
            raise HistoryError(f"{label}: period {ob.period!r} is not a year (2024), a half (2025H1) or a quarter (2024Q4)")
        ts = tuple(s - start for s in serials)
        if ts[0] < 0 or ts[-1] >= horizon:
            raise HistoryError(f"{label}: period {ob.period} is outside the scenario's quarters {first}..{last}")
        key = (ob.region, ob.period, ob.metric)
        if key in seen:
            raise HistoryError(f"{label}: the same region, period and metric is observed twice")
        seen.add(key)
        out.append(ts)
    return out


def _check_plan(rows: list[PlanRow], where: Path, regions: list[str], start: int, horizon: int) -> None:
    first, last = market.serial_label(start), market.serial_label(start + horizon - 1)
    seen: set[tuple[str, str]] = set()
    for k, row in enumerate(rows):
        label = f"{where}: plan[{k}] ({row.quarter} {row.region})"
        parsed = parse_quarter(row.quarter)
        if parsed is None:
            raise HistoryError(f"{label}: quarter {row.quarter!r} is not a calendar quarter like 2023Q4")
        t = parsed[0] * 4 + parsed[1] - start
        if not 0 <= t < horizon:
            raise HistoryError(f"{label}: quarter {row.quarter} is outside the scenario's quarters {first}..{last}")
        if row.region not in regions:
            raise HistoryError(f"{label}: unknown region {row.region!r}; allowed: {', '.join(regions)}")
        if (row.quarter, row.region) in seen:
            raise HistoryError(f"{label}: a second row for the same quarter and region")
        seen.add((row.quarter, row.region))
        for lever, value in row.levers.items():
            if lever not in market.LEVERS:
                raise HistoryError(f"{label}: unknown lever {lever!r}; allowed: {', '.join(market.LEVERS)}")
            if not 0.0 <= value <= 1.0:
                raise HistoryError(f"{label}: levers.{lever} = {value} must be an intensity in [0, 1]")


def _leaf(doc: Mapping, dotted: str) -> Any:
    node: Any = doc
    for key in dotted.split("."):
        if not isinstance(node, Mapping) or key not in node:
            return None
        node = node[key]
    return node


def _check_free(free: dict[str, tuple[float, float]], where: Path, doc: dict) -> None:
    for dotted, (lo, hi) in free.items():
        label = f"{where}: free.{dotted}"
        value = _leaf(doc, dotted)
        if value is None or isinstance(value, (bool, Mapping, list)) or not isinstance(value, (int, float)):
            parent, _, name = dotted.rpartition(".")
            node = _leaf(doc, parent) if parent else doc
            allowed = ", ".join(k for k, v in node.items() if isinstance(v, (int, float)) and not isinstance(v, bool)) \
                if isinstance(node, Mapping) else ""
            raise HistoryError(f"{label}: not a numeric parameter of the scenario"
                               + (f"; numbers in {parent or 'the top level'}: {allowed}" if allowed else
                                  "; give a dotted path such as regions.us.sellers_half"))
        if not lo < hi:
            raise HistoryError(f"{label}: bounds [{lo}, {hi}] must be [low, high] with low < high")
        for bound in (lo, hi):
            try:
                Scenario.model_validate(config_files.apply_overrides(doc, {dotted: bound}, error=HistoryError))
            except ValidationError as exc:
                msg = config_files.format_validation_error(exc, "scenario", Scenario).removeprefix("scenario: ")
                raise HistoryError(f"{label}: bound {bound} is not a valid value ({msg})") from None


def load_history(path: str | Path, scenario: str | Path | None = None) -> History:
    """Read and validate a history file (a built-in name from ``configs/history`` or a path).

    ``scenario``: replay this scenario (a name, or a path from the current folder) instead of
    the one the file names (the plan, events and free parameters are checked against it).

    :raises HistoryError: one line saying what is wrong, where, and what is allowed.
    """
    path, data = config_files.load_data_file(path, HISTORY_DIR, "history", _HistoryFile, HistoryError)
    try:
        if scenario is None:
            scenario_path = config_files.resolve_reference(data.scenario, path.resolve().parent, SCENARIO_DIR, "scenario", HistoryError)
        else:
            scenario_path = config_files.resolve_reference(scenario, None, SCENARIO_DIR, "scenario", HistoryError)
        base = load_scenario(scenario_path)
    except ValueError as exc:
        raise HistoryError(f"{path if scenario is None else '--scenario'}: scenario: {exc}") from None
    doc = base.model_dump(mode="json")
    doc["events"] = [*doc.get("events", []), *data.events]
    doc["budget"] = dict(doc["budget"], mode="soft")
    doc["regions"] = {name: dict(r, suspension_hazard=0.0) for name, r in doc["regions"].items()}
    try:
        scenario = Scenario.model_validate(doc)
    except ValidationError as exc:
        msg = config_files.format_validation_error(exc, "", Scenario).removeprefix(": ")
        if "events" in msg:
            n0 = len(base.events)
            msg = re.sub(r"events\[(\d+)\]", lambda m: f"events[{int(m.group(1)) - n0}]", msg)
        raise HistoryError(f"{path}: {msg}") from None
    except ScenarioError as exc:
        raise HistoryError(f"{path}: {exc}") from None
    params = scenario.to_params()
    regions = list(scenario.regions)
    start, horizon = params.start_year * 4 + params.start_quarter, scenario.horizon
    quarters = _check_observations(data.observations, f"{path}: observations", regions, start, horizon)
    holdout_quarters = _check_observations(data.holdout, f"{path}: holdout", regions, start, horizon)
    both = {(o.region, o.period, o.metric) for o in data.observations} & {(o.region, o.period, o.metric) for o in data.holdout}
    if both:
        raise HistoryError(f"{path}: {sorted(both)[0]} is both an observation and a holdout")
    _check_plan(data.plan, path, regions, start, horizon)
    _check_free(dict(data.free), path, doc)
    return History(
        path=path,
        sha256=hashlib.sha256(path.read_bytes()).hexdigest(),
        scenario_path=scenario_path,
        document=doc,
        observations=tuple(data.observations),
        holdout=tuple(data.holdout),
        quarters=tuple(quarters),
        holdout_quarters=tuple(holdout_quarters),
        plan=tuple(data.plan),
        free={k: (float(lo), float(hi)) for k, (lo, hi) in data.free.items()},
        region_names=tuple(regions),
        horizon=horizon,
        start_serial=start,
    )
