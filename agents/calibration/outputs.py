"""Where a calibration writes, and what a replaced scenario hands on to the new one.

Outputs follow the project's one rule (:mod:`agents.io`): a path that exists is refused unless
``--force``, and ``--force`` replaces only an output this tool wrote and nobody changed since
(the sidecar ``.NAME.flywheel-output.json`` holds its SHA-256). For the scenario and the ensemble
calibrate.py also asks that the first line says calibrate.py wrote the file (:data:`MARK`), so
``--force`` never replaces another tool's YAML.

The ensemble's default location (``--posterior`` without ``--ensemble-out``):

* ``--out configs/scenarios/NAME.yaml`` (a built-in scenario): ``configs/ensembles/NAME.yaml``,
  where ``ensemble="NAME"`` and ``sensitivity.py --scenario NAME`` look for it;
* any other ``--out DIR/NAME.yaml``: ``DIR/NAME.ensemble.yaml``, beside it, never in the repo.

A default location that is taken gets the next free name (the io rule for defaults), and a line
says so.

When ``--force`` replaces an earlier calibrate output at ``--out``, the new scenario keeps the
values of the problem that file set (its ``--set`` values, e.g. ``target_run_rate``), unless the
command gives a ``--set`` for the same key: re-fitting does not change the problem.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from agents import io
from agents.calibration.report import MARK, SET_HEADING, is_calibrate_output
from envs.config_files import parse_yaml_text
from envs.ensemble import ENSEMBLE_DIR
from envs.scenario import SCENARIO_DIR

YAML_SUFFIXES = ("yaml", "yml")


def default_ensemble_path(out: Path) -> Path:
    """The ensemble of ``--out`` when ``--ensemble-out`` is not given (see the module docstring)."""
    out = Path(out)
    if out.resolve().parent == SCENARIO_DIR.resolve():
        return ENSEMBLE_DIR / f"{out.stem}.yaml"
    return out.parent / f"{out.stem}.ensemble{out.suffix}"


def plan_yaml(path: Path, option: str, force: bool, explicit: bool = True) -> io.Output:
    """Check a scenario or ensemble output before the fit: the io rule, and a file ``--force``
    replaces must also be one calibrate.py wrote (its first line is :data:`MARK`)."""
    out = io.plan_file(path, option=option, explicit=explicit, force=force, suffixes=YAML_SUFFIXES)
    if out.replace and not is_calibrate_output(out.path):
        if not explicit:
            free = io.next_free(out.path)
            return io.Output(free, "file", note=f"{out.path} exists; writing {free}", option=option)
        raise io.OutputError(f"{option} {path} exists and --force only replaces a file calibrate.py wrote "
                             f"(first line '{MARK}'); choose another path")
    return out


def plan_outputs(out: Path, ensemble_out: Path | None, posterior: int, force: bool) -> tuple[io.Output, io.Output | None]:
    """The checked ``--out`` and ensemble outputs (``None``: no ensemble is written)."""
    scenario = plan_yaml(out, "--out", force)
    ensemble = None
    if ensemble_out is not None:
        ensemble = plan_yaml(ensemble_out, "--ensemble-out", force)
    elif posterior:
        ensemble = plan_yaml(default_ensemble_path(out), "--ensemble-out (default)", force, explicit=False)
    if ensemble is not None:
        io.check_distinct([scenario, ensemble])
    return scenario, ensemble


def _lookup(doc: Any, dotted: str) -> Any:
    node = doc
    for key in dotted.split("."):
        if not isinstance(node, dict) or key not in node:
            raise KeyError(dotted)
        node = node[key]
    return node


def earlier_settings(path: Path) -> dict[str, Any]:
    """The values of the problem an earlier calibrate output set (its ``--set`` values), by
    dotted path: the keys listed under :data:`SET_HEADING` in its header, the values from its body."""
    text = Path(path).read_text(encoding="utf-8")
    keys: list[str] = []
    in_section = False
    for line in text.splitlines():
        if not line.startswith("#"):
            break
        if line.startswith(SET_HEADING):
            in_section = True
        elif in_section and line.startswith("#   ") and " = " in line:
            keys.append(line[4:].split(" = ", 1)[0].strip())
        else:
            in_section = False
    body = parse_yaml_text(text, str(path), ValueError)  # bounded, as every YAML the project reads
    kept = {}
    for key in keys:
        try:
            kept[key] = _lookup(body, key)
        except KeyError:
            raise ValueError(f"{path}: its header lists {key} among the values set, but the scenario does not set it") from None
    return kept


def kept_settings(scenario: io.Output, settings: dict[str, Any], fitted: Any = ()) -> dict[str, Any]:
    """What the scenario being replaced set and this command neither ``--set``s again nor fits
    (``fitted``: the history's free paths); empty when ``--out`` is new. The new scenario keeps these."""
    if not scenario.replace:
        return {}
    return {key: value for key, value in earlier_settings(scenario.path).items() if key not in settings and key not in fitted}
