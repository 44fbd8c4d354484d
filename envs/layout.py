"""Layout tables: the entry types every layout of the model is declared with, and what is
generated from them.

A layout (the levers, the observation features, the info entries, the model parameters, the
regional state) is one table of entries, declared once at the top of :mod:`envs.market`. From a
table this module makes

* the index namespace the compiled kernels read (:func:`indices`): a named tuple of integer
  positions, so a kernel writes ``g[BUYERS.churn]`` or ``obs[i, o + OBS.trust]``;
* the Markdown tables of the env manual (:func:`markdown_table`), which a test compares with the
  docstrings of :class:`envs.SocialCommerceEnv`.

Why the tables live in :mod:`envs.market` and not here: numba compiles a module global into a
kernel as a constant, and its on-disk cache (``cache=True``) is invalidated only when the
kernel's own file changes. An index table in another file could be edited (say, two parameters
swapped) while the cached kernels kept the old positions and read the wrong numbers without a
word. Declared in the kernels' file, every edit of a layout recompiles the kernels that use it.
Why named tuples rather than generated module constants: a name the kernels use is then visible
to a reader and to linters (``BUYERS.churn`` is defined where ``BUYERS`` is), and numba folds a
global named tuple's fields into constants, so the compiled code is the same as with literal
integers.

This module imports nothing from the project and not numba: documentation and tests can read the
layouts' types without compiling anything.
"""

from __future__ import annotations

from collections import namedtuple
from typing import Iterable, NamedTuple, Sequence


class Feature(NamedTuple):
    """One entry of an observation: ``name`` (the key), ``description`` (how it is computed),
    ``unit``, and the range ``[low, high]`` the value stays in."""

    name: str
    description: str
    unit: str
    low: float
    high: float


class Lever(NamedTuple):
    """One lever of the action: ``name``, what its intensity ``u`` in [0, 1] means, its cost this
    quarter (a formula in $B) and ``kind``: ``"price"`` (a rate charged; its cost is the discount
    below a reference, on this quarter's sales), ``"sales"`` (cost scales with this quarter's
    sales), ``"pool"`` (cost ``u * pool_max`` in the open share of a region) or ``"free"``
    (costs no budget)."""

    name: str
    description: str
    cost: str
    kind: str


class InfoEntry(NamedTuple):
    """One key of a step's ``info``: ``per`` is ``None`` (one value), ``"region"`` or ``"lever"``
    (a dict with one value per region or lever); ``kind`` is the Python type of each value."""

    name: str
    per: str | None
    kind: type
    unit: str
    description: str


class Param(NamedTuple):
    """One coefficient the kernels read from :attr:`envs.market.Params.packed`.

    ``group`` is the scenario section it comes from (``"attr"`` for ``attractiveness``,
    ``"buyers"``, ...; ``""`` for a top-level or budget field; ``"derived"`` for a quantity
    computed from the scenario in :class:`envs.market.Params`). Its allowed range is the one of
    the scenario schema (:mod:`envs.scenario`), which validates it; a test checks that every
    non-derived entry is a field of that schema.
    """

    group: str
    name: str
    unit: str
    description: str


class StateField(NamedTuple):
    """One per-region quantity of the market state (:class:`envs.market.State`)."""

    name: str
    unit: str
    description: str


def names(table: Iterable[NamedTuple]) -> tuple[str, ...]:
    """The ``name`` of every entry, in table order."""
    return tuple(entry.name for entry in table)


def indices(typename: str, table: Sequence[NamedTuple], start: int = 0):
    """A named tuple ``typename`` whose field ``entry.name`` is the entry's position (from ``start``).

    Names must be unique and valid identifiers (a ``ValueError`` says which is not).
    """
    keys = names(table)
    duplicates = sorted({k for k in keys if keys.count(k) > 1})
    if duplicates:
        raise ValueError(f"layout {typename}: duplicate names {duplicates}")
    return namedtuple(typename, keys)(*range(start, start + len(keys)))


def group_indices(typename: str, table: Sequence[Param], group: str):
    """A named tuple ``typename`` of the positions, in the whole ``table``, of the entries of ``group``."""
    rows = [(k, p.name) for k, p in enumerate(table) if p.group == group]
    if not rows:
        raise ValueError(f"layout {typename}: no entry of group {group!r}")
    return namedtuple(typename, [name for _, name in rows])(*(k for k, _ in rows))


def _number(x: float) -> str:
    return f"{x:g}"


def markdown_table(header: Sequence[str], rows: Iterable[Sequence[str]]) -> str:
    """A GitHub Markdown table, one line per row, no padding."""
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def feature_table(features: Sequence[Feature], index_prefix: str = "") -> str:
    """The manual's table of observation features: index, description, range."""
    rows = [
        (f"{index_prefix}{k}", f.description, f"[{_number(f.low)}, {_number(f.high)}]")
        for k, f in enumerate(features)
    ]
    return markdown_table(("index", "feature", "range"), rows)


def lever_table(levers: Sequence[Lever]) -> str:
    """The manual's table of levers: name, index, meaning of the intensity, cost."""
    rows = [(f"`{lever.name}`", str(k), lever.description, lever.cost) for k, lever in enumerate(levers)]
    return markdown_table(("lever", "index", "intensity u means", "cost this quarter ($B)"), rows)


def info_table(entries: Sequence[InfoEntry]) -> str:
    """The manual's table of info keys: key, per, type, unit, meaning."""
    rows = [
        (f"`{e.name}`", e.per or "", e.kind.__name__, e.unit, e.description)
        for e in entries
    ]
    return markdown_table(("key", "per", "type", "unit", "meaning"), rows)
