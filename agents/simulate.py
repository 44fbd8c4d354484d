"""Play a policy through a scenario, quarter by quarter, and present the result.

The logic behind ``scripts/simulate.py``::

    from agents.simulate import simulate, format_table
    rows = simulate("global", "merchant_package", seed=0)
    print(format_table(rows))

:func:`simulate` steps the single Gymnasium env (:class:`envs.SocialCommerceEnv`) with a
policy's ``predict`` and returns one flat row per quarter (a dict of scalars, the columns of
the CSV); :func:`format_table` prints the rows as three aligned tables (growth, spend,
market); :func:`write_csv` writes them atomically (a temporary file renamed into place, so a
failed run never leaves half a file); the plot is :func:`agents.plots.plot_simulation`.
"""

from __future__ import annotations

import csv
import io
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

from agents.io import Output, as_output, write_output_text
from agents.policies import PLAYBOOKS, Policy, make_policy
from envs import SocialCommerceEnv
from envs.scenario import Scenario, ScenarioError, load_scenario

START_YEAR = 2023
"""Calendar year of the first quarter (the scenarios start in 2023; they carry no year field)."""

Row = dict[str, Any]

SHORT_LEVER = {
    "commission_rate": "commission",
    "shipping_subsidy": "shipping",
    "seller_grants": "grants",
    "warehousing": "warehouse",
    "creator_incentives": "creators",
    "user_ads": "ads",
}
"""Column headers of the spend levers (``private_label`` costs nothing, so it has no column)."""


def quarter_label(step: int, start_quarter: int, start_year: int = START_YEAR) -> str:
    """Calendar label of the quarter played at ``step`` (0-based): ``2023Q1``, ``2023Q2``, ...

    :param step: quarters since the start of the episode.
    :param start_quarter: calendar quarter (1-4) of the first step.
    :param start_year: calendar year of the first step.
    """
    index = start_quarter - 1 + step
    return f"{start_year + index // 4}Q{index % 4 + 1}"


def resolve_policy(policy: "str | Policy", scenario: Scenario) -> Policy:
    """A policy object from a playbook name (``agents.policies.PLAYBOOKS``) or a policy as is."""
    if isinstance(policy, str):
        if policy not in PLAYBOOKS:
            raise ValueError(f"unknown policy '{policy}'; allowed: {', '.join(PLAYBOOKS)}")
        return make_policy(policy, scenario)
    return policy


def quarter_row(info: Mapping[str, Any], label: str, regions: Sequence[str]) -> Row:
    """One flat row of scalars from a step's ``info`` (units: $B, M buyers, k sellers/creators).

    Keys: ``quarter``, ``gmv`` and ``gmv.<region>``, ``run_rate`` and ``run_rate.<region>``
    (annualised, de-seasonalised), ``spend.<lever>`` for the six spend levers, ``spend`` (the
    quarter's cost), ``budget_left``, ``revenue``, ``buyers``/``sellers``/``creators`` (totals)
    and per region, ``share.<region>`` (shopping-start share) and ``suspended.<region>``.
    """
    gmv_total = float(info["gmv"])
    run_rate_total = float(info["gmv_run_rate"])
    row: Row = {"quarter": label, "gmv": gmv_total}
    for r in regions:
        row[f"gmv.{r}"] = float(info["gmv_by_region"][r])
    row["run_rate"] = run_rate_total
    # the run rate is de-seasonalised with one factor for the whole platform, so it splits by GMV share
    for r in regions:
        row[f"run_rate.{r}"] = run_rate_total * float(info["gmv_by_region"][r]) / gmv_total if gmv_total > 0 else 0.0
    for lever in SHORT_LEVER:
        row[f"spend.{lever}"] = float(info["cost_by_lever"][lever])
    row["spend"] = float(info["cost"])
    row["budget_left"] = float(info["budget_remaining"])
    row["revenue"] = float(info["revenue"])
    for key in ("buyers", "sellers", "creators"):
        row[key] = float(sum(info[key].values()))
        for r in regions:
            row[f"{key}.{r}"] = float(info[key][r])
    for r in regions:
        row[f"share.{r}"] = float(info["shopping_start_share"][r])
    for r in regions:
        row[f"suspended.{r}"] = bool(info["suspended"][r])
    return row


def simulate(
    scenario: "str | Path | Scenario" = "global",
    policy: "str | Policy" = "merchant_package",
    seed: int = 0,
    overrides: Mapping[str, Any] | None = None,
    start_year: int = START_YEAR,
) -> list[Row]:
    """Play ``policy`` through one episode of ``scenario`` and return one row per quarter.

    :param scenario: a built-in name, a YAML path or a :class:`Scenario`.
    :param policy: a playbook name (``agents.policies.PLAYBOOKS``) or any object with
        ``predict(obs) -> (action, state)``.
    :param seed: the episode's seed (``env.reset(seed=seed)``).
    :param overrides: ``{"dotted.path": value}`` scenario overrides.
    :param start_year: calendar year of the first quarter, for the labels.
    :raises ScenarioError: bad scenario or overrides.
    :raises ValueError: unknown policy name or bad seed.
    """
    sc = load_scenario(scenario, overrides)
    pol = resolve_policy(policy, sc)
    env = SocialCommerceEnv(sc)
    obs, _ = env.reset(seed=seed)
    rows: list[Row] = []
    terminated = truncated = False
    step = 0
    while not (terminated or truncated):
        action, _ = pol.predict(obs, deterministic=True)
        obs, _, terminated, truncated, info = env.step(action)
        rows.append(quarter_row(info, quarter_label(step, sc.start_quarter, start_year), sc.region_names))
        step += 1
    return rows


def regions_of(rows: Sequence[Row]) -> list[str]:
    """Region names present in the rows (from their ``gmv.<region>`` keys), in order."""
    return [key.split(".", 1)[1] for key in rows[0] if key.startswith("gmv.")] if rows else []


def _table(title: str, columns: Sequence[tuple[str, str, Callable[[Row], str]]], rows: Sequence[Row]) -> str:
    """An aligned text table: ``columns`` are (header, unit, formatter)."""
    headers = [h for h, _, _ in columns]
    units = [u for _, u, _ in columns]
    cells = [[fmt(row) for _, _, fmt in columns] for row in rows]
    widths = [max(len(headers[j]), len(units[j]), *(len(c[j]) for c in cells)) for j in range(len(columns))]

    def line(values: Sequence[str]) -> str:
        first = values[0].ljust(widths[0])
        return "  ".join([first] + [v.rjust(w) for v, w in zip(values[1:], widths[1:])]).rstrip()

    out = [title, line(headers), line(units), "  ".join("-" * w for w in widths)]
    out += [line(c) for c in cells]
    return "\n".join(out)


def format_table(rows: Sequence[Row], target_run_rate: float | None = None) -> str:
    """Three per-quarter tables (growth, spend, market) and a one-line summary.

    Growth: GMV and annualised run rate, total and by region ($B). Spend: cost by lever, the
    quarter's total and the budget left ($B). Market: buyers (M), sellers and creators (k),
    shopping-start share by region (%); a region suspended that quarter is marked ``*``.
    """
    if not rows:
        return "(no quarters played)"
    regions = regions_of(rows)

    def money(key: str, digits: int = 2) -> Callable[[Row], str]:
        return lambda row: f"{row[key]:.{digits}f}"

    def flagged(r: str) -> Callable[[Row], str]:
        return lambda row: f"{row[f'run_rate.{r}']:.2f}" + ("*" if row[f"suspended.{r}"] else "")

    q = ("quarter", "", lambda row: str(row["quarter"]))
    growth = [q, ("GMV", "$B", money("gmv"))]
    growth += [(f"GMV {r}", "$B", money(f"gmv.{r}")) for r in regions]
    growth += [("run rate", "$B/yr", money("run_rate"))]
    growth += [(f"rate {r}", "$B/yr", flagged(r)) for r in regions]
    spend = [q] + [(short, "$B", money(f"spend.{lever}", 3)) for lever, short in SHORT_LEVER.items()]
    spend += [("total", "$B", money("spend", 3)), ("budget left", "$B", money("budget_left", 3))]
    market = [
        q,
        ("buyers", "M", money("buyers", 1)),
        ("sellers", "k", money("sellers", 0)),
        ("creators", "k", money("creators", 0)),
    ]
    market += [(f"share {r}", "%", (lambda r: lambda row: f"{100 * row[f'share.{r}']:.1f}")(r)) for r in regions]

    last = rows[-1]
    summary = (
        f"cumulative GMV ${sum(r['gmv'] for r in rows):.2f}B, final run rate ${last['run_rate']:.2f}B"
        + (f" (target ${target_run_rate:.0f}B)" if target_run_rate is not None else "")
        + f", spent ${sum(r['spend'] for r in rows):.2f}B, revenue ${sum(r['revenue'] for r in rows):.2f}B"
    )
    parts = [
        _table("Growth (* = region suspended)", growth, rows),
        _table("Spend by lever", spend, rows),
        _table("Market", market, rows),
        summary,
    ]
    return "\n\n".join(parts)


def write_csv(rows: Sequence[Row], output: "Output | str | Path") -> Path:
    """Write the rows as CSV (one column per row key) through the output writer.

    :param output: checked beforehand (:func:`agents.io.plan_file`), or a path for a new file.
    """
    buffer = io.StringIO()
    if rows:
        writer = csv.DictWriter(buffer, fieldnames=list(rows[0]), lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
    return write_output_text(as_output(output, "csv", CSV_SUFFIXES), buffer.getvalue())


CSV_SUFFIXES = ("csv",)

__all__ = [
    "PLAYBOOKS",
    "START_YEAR",
    "ScenarioError",
    "format_table",
    "quarter_label",
    "quarter_row",
    "simulate",
    "write_csv",
]
