"""Parameter ensembles: many parameter sets of one scenario in one batched model.

The kernels of :mod:`envs.market` read market ``i``'s parameters from set ``state.param_set[i]``
of :attr:`envs.market.Params.packed` (``g`` ``(P, T, G)``, ``rg`` ``(P, T, K, R)``, the start
state ``(P, F, R)``). :func:`stack_params` builds such a ``Params`` from ``P`` scenarios that
differ only in their numbers, so that a calibration population, a posterior's walkers or an
ensemble's draws run as one batch.

An ensemble file (``configs/ensembles/*.yaml``, written by ``scripts/calibrate.py --posterior``)
holds parameter sets as values of dotted paths into a scenario::

    scenario: global_prior           # what the sets were drawn for (a name or a path)
    provenance: {history: ..., sha256: ..., sampler: ..., error_model: ...}
    parameters: [regions.sea.buyers, sellers.grant_rate]
    sets:
      - [61.2, 0.18]
      - [55.0, 0.21]

:func:`load_ensemble` validates it (every set must make a valid scenario); every mistake is an
:class:`EnsembleError`, one line.
"""

from __future__ import annotations

import copy
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from envs import config_files, market
from envs.config_files import Float
from envs.scenario import SCENARIO_DIR, Scenario, load_scenario

__all__ = ["ENSEMBLE_DIR", "assumption_ranges", "Ensemble", "EnsembleError", "load_ensemble", "scenario_sets", "stack_params", "with_values"]

ENSEMBLE_DIR = Path(__file__).resolve().parent.parent / "configs" / "ensembles"


class EnsembleError(ValueError):
    """An ensemble file or a parameter set is invalid. The message is one line."""


def stack_params(sets: Sequence[market.Params]) -> market.Params:
    """One ``Params`` holding every set's packed arrays (set ``k`` = ``sets[k]``).

    The sets must share regions, horizon, start and season (what the kernels read outside the
    packed sets). Python-side derived values other than the packed arrays are those of set 0.
    """
    if not sets:
        raise ValueError("stack_params needs at least one parameter set")
    first = sets[0]
    for k, p in enumerate(sets[1:], 1):
        if p.region_names != first.region_names or p.horizon != first.horizon:
            raise ValueError(f"parameter set {k} has regions {p.region_names} and horizon {p.horizon}; "
                             f"set 0 has {first.region_names} and {first.horizon}")
        if (p.start_year, p.start_quarter) != (first.start_year, first.start_quarter) or not np.array_equal(p.season, first.season):
            raise ValueError(f"parameter set {k} differs from set 0 in its start quarter or season, which all sets share")
    if len(sets) == 1:
        return first
    out = copy.copy(first)
    derived = dict(first.derived)
    for key in ("g", "rg", "start"):
        derived[key] = np.ascontiguousarray(np.concatenate([p.derived[key] for p in sets], axis=0))
    derived["packed"] = (derived["g"], derived["rg"], derived["season"])
    object.__setattr__(out, "derived", derived)
    return out


def scenario_sets(base: Scenario, overrides: Sequence[Mapping[str, Any]], error: type[ValueError] = EnsembleError,
                  where: str = "parameter set") -> list[Scenario]:
    """``base`` with each mapping of dotted paths applied, validated (one-line ``error``)."""
    doc = base.model_dump(mode="json")
    out = []
    for k, values in enumerate(overrides):
        try:
            out.append(Scenario.model_validate(config_files.apply_overrides(doc, values, where=f"{where} {k}", error=error)))
        except ValidationError as exc:
            raise error(config_files.format_validation_error(exc, f"{where} {k}", Scenario)) from None
    return out


def with_values(scenario: Scenario, values: Mapping[str, float]) -> Scenario:
    """``scenario`` with numbers set by dotted path, WITHOUT validation (a fast copy).

    For the many candidates of a fit or a sampler, whose paths and bounds were validated once
    (:func:`envs.history.load_history` checks every free path and both its bounds); anything
    else goes through :func:`scenario_sets`.
    """
    updates: dict[str, Any] = {}
    for dotted, value in values.items():
        keys = dotted.split(".")
        updates.setdefault(keys[0], []).append((keys[1:], value))

    def put(node: Any, rest: list[str], value: float) -> Any:
        if not rest:
            return float(value)
        if isinstance(node, dict):
            return {**node, rest[0]: put(node[rest[0]], rest[1:], value)}
        return node.model_copy(update={rest[0]: put(getattr(node, rest[0]), rest[1:], value)})

    out = scenario
    for top, items in updates.items():
        node = getattr(out, top)
        for rest, value in items:
            node = put(node, rest, value)
        out = out.model_copy(update={top: node})
    return out


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


class _EnsembleFile(_Strict):
    scenario: str = Field(min_length=1)
    provenance: dict[str, Any] = Field(default_factory=dict)
    parameters: list[str] = Field(min_length=1)
    sets: list[list[Float]] = Field(min_length=1)


@dataclass(frozen=True)
class Ensemble:
    """Parameter sets, ``values[k, i]`` the value of ``parameters[i]`` in set ``k``."""

    path: Path | None
    scenario: str
    parameters: tuple[str, ...]
    values: np.ndarray
    provenance: dict

    def __len__(self) -> int:
        return int(self.values.shape[0])

    def overrides(self) -> list[dict[str, float]]:
        """Each set as ``{dotted.path: value}``."""
        return [dict(zip(self.parameters, map(float, row))) for row in self.values]

    def scenarios(self, base: Scenario) -> list[Scenario]:
        """``base`` with each set's values (the env's scenario may differ from the file's in
        budget, horizon, noise: only the listed parameters are set)."""
        return scenario_sets(base, self.overrides(), where=f"{self.path or 'ensemble'}: set")

    def params(self, base: Scenario) -> market.Params:
        """The sets on ``base`` as one :class:`~envs.market.Params` (set ``k`` = row ``k``)."""
        return stack_params([s.to_params() for s in self.scenarios(base)])

    def to_document(self) -> dict:
        return {"scenario": self.scenario, "provenance": self.provenance, "parameters": list(self.parameters),
                "sets": [[float(f"{v:.6g}") for v in row] for row in self.values]}


def load_ensemble(path: str | Path) -> Ensemble:
    """Read an ensemble file (a built-in name from ``configs/ensembles`` or a path) and check
    that every set makes a valid scenario of the file's ``scenario``.

    :raises EnsembleError: one line saying what, where and what is allowed.
    """
    path, data = config_files.load_data_file(path, ENSEMBLE_DIR, "ensemble", _EnsembleFile, EnsembleError)
    width = len(data.parameters)
    for k, row in enumerate(data.sets):
        if len(row) != width:
            raise EnsembleError(f"{path}: sets[{k}] has {len(row)} values for {width} parameters ({', '.join(data.parameters)})")
    try:
        scenario_path = config_files.resolve_reference(data.scenario, path.resolve().parent, SCENARIO_DIR, "scenario", EnsembleError)
        base = load_scenario(scenario_path)
    except ValueError as exc:
        raise EnsembleError(f"{path}: scenario: {exc}") from None
    ens = Ensemble(path, data.scenario, tuple(data.parameters), np.array(data.sets, dtype=np.float64), dict(data.provenance))
    ens.scenarios(base)  # every set is a valid scenario
    return ens


# --------------------------------------------------------------------------- stated ranges

#: Sections of a scenario that hold model parameters (the rest: horizon, budget, noise, objective).
PARAMETER_SECTIONS = ("attractiveness", "buyers", "sellers", "creators", "platform", "regions")
_RANGE = re.compile(r"\[\s*(-?\d+(?:\.\d*)?(?:[eE][-+]?\d+)?)\s*,\s*(-?\d+(?:\.\d*)?(?:[eE][-+]?\d+)?)\s*\]\s*$")


def _file_ranges(path: Path) -> dict[str, tuple[float, float] | None]:
    """``{dotted.path: (low, high) or None}`` of one scenario file: every parameter whose line
    comment says ASSUMPTION, with the range ``[low, high]`` that ends the comment (``None``
    without one)."""
    text = path.read_text(encoding="utf-8")
    lines = text.splitlines()
    out: dict[str, tuple[float, float] | None] = {}

    def walk(node: yaml.Node, prefix: list[str]) -> None:
        if not isinstance(node, yaml.MappingNode):
            return
        for key, value in node.value:
            dotted = [*prefix, str(key.value)]
            if isinstance(value, yaml.MappingNode):
                walk(value, dotted)
            elif isinstance(value, yaml.ScalarNode) and dotted[0] in PARAMETER_SECTIONS:
                line = lines[value.start_mark.line]
                comment = line[line.index("#") + 1:] if "#" in line else ""
                m = _RANGE.search(comment)
                if "ASSUMPTION" in comment:
                    out[".".join(dotted)] = (float(m.group(1)), float(m.group(2))) if m else None

    root = yaml.compose(text, Loader=yaml.SafeLoader)
    if root is not None:
        walk(root, [])
    return out


def assumption_ranges(scenario: str | Path) -> dict[str, tuple[float, float] | None]:
    """Every ASSUMPTION parameter of a scenario with its stated range (``None`` where the comment
    states none), read from the comments of its file and of the files it ``extends``; the
    nearest file's statement wins."""
    path = config_files.resolve_reference(scenario, None, SCENARIO_DIR, "scenario", EnsembleError)
    chain: list[Path] = []
    while True:
        chain.append(path)
        raw = config_files.read_yaml_mapping(path, what="scenario", error=EnsembleError)
        parent = raw.get("extends")
        if parent is None:
            break
        path = config_files.resolve_reference(parent, path.resolve().parent, SCENARIO_DIR, "scenario", EnsembleError)
    out: dict[str, tuple[float, float] | None] = {}
    for p in reversed(chain):
        out.update(_file_ranges(p))
    return out
