"""Scenarios: built-ins load, overrides apply, and every user mistake is one clear line.

A user who mistypes a scenario name, a file, a key or a value must get an
:class:`envs.ScenarioError` (a ``ValueError``) whose single-line message names the field and
what is allowed, from the file, from ``overrides=`` and through ``gymnasium.make``.
"""

from __future__ import annotations

from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest

import envs
from envs import ENV_ID, ScenarioError, SocialCommerceEnv, load_scenario
from envs.scenario import parse_set_value
from tests.conftest import BUILTIN_SCENARIOS


def scenario_error(scenario, overrides=None) -> str:
    """Load a bad scenario; assert it raises a one-line ScenarioError and return the message."""
    with pytest.raises(ScenarioError) as caught:
        load_scenario(scenario, overrides)
    assert isinstance(caught.value, ValueError)
    message = str(caught.value)
    assert message and "\n" not in message, f"message must be one line: {message!r}"
    assert "Traceback" not in message
    return message


def write_yaml(tmp_path: Path, text: str, name: str = "bad.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


# ----------------------------------------------------------------------------- good input


@pytest.mark.parametrize("name", BUILTIN_SCENARIOS)
def test_builtin_scenarios_load_and_build_params(name: str) -> None:
    sc = load_scenario(name)
    params = sc.to_params()
    assert sc.name == name
    assert params.n_regions == len(sc.regions) >= 1
    assert params.horizon == sc.horizon
    assert params.budget_total == sc.budget.total


def test_extends_and_only_regions() -> None:
    us = load_scenario("us")
    assert us.region_names == ["us"]
    assert us.regions["us"].aov == load_scenario("global").regions["us"].aov


def test_overrides_change_fields_by_dotted_path() -> None:
    sc = load_scenario("global", {"budget.mode": "soft", "regions.us.aov": 40.0, "horizon": 8})
    assert sc.budget.mode == "soft" and sc.regions["us"].aov == 40.0 and sc.horizon == 8
    assert sc.to_params().hard_budget is False


def test_deterministic_switch_zeroes_noise_and_hazards() -> None:
    params = load_scenario("global", {"deterministic": True}).to_params()
    assert params.demand_sigma == 0.0
    np.testing.assert_array_equal(params.suspension_hazard, 0.0)
    stochastic = load_scenario("global").to_params()
    assert stochastic.demand_sigma > 0 and stochastic.suspension_hazard.max() > 0


def test_overrides_on_a_scenario_object_and_a_file_path(tmp_path: Path) -> None:
    base = load_scenario("global")
    assert load_scenario(base, {"budget.total": 2.0}).budget.total == 2.0
    path = write_yaml(tmp_path, "extends: global\nname: mine\nbudget:\n  total: 3.0\n")
    sc = load_scenario(str(path), {"budget.per_quarter": 0.5})
    assert (sc.name, sc.budget.total, sc.budget.per_quarter) == ("mine", 3.0, 0.5)


def test_gym_make_passes_scenario_and_overrides() -> None:
    env = gym.make(ENV_ID, scenario="uk", overrides={"budget.total": 0.5})
    assert env.unwrapped.scenario.region_names == ["uk"]
    assert env.unwrapped.scenario.budget.total == 0.5


@pytest.mark.parametrize(
    "text, value",
    [("0.5", 0.5), ("12", 12), ("soft", "soft"), ("true", True), ("[0.9, 1, 1, 1.2]", [0.9, 1, 1, 1.2])],
)
def test_parse_set_value_reads_yaml_scalars(text: str, value) -> None:
    assert parse_set_value(text) == value


def test_set_value_in_exponent_notation_still_validates_as_a_number() -> None:
    # PyYAML reads "1e-3" as a string; the schema must still accept it as a float
    sc = load_scenario("global", {"noise.demand_sigma": parse_set_value("1e-3")})
    assert sc.noise.demand_sigma == pytest.approx(1e-3)


# ----------------------------------------------------------------------------- bad input


def test_unknown_scenario_name_lists_the_builtins() -> None:
    message = scenario_error("globl")
    assert "globl" in message
    for name in BUILTIN_SCENARIOS:
        assert name in message


def test_unknown_scenario_name_through_gym_make_and_the_env() -> None:
    with pytest.raises(ScenarioError, match="unknown scenario 'nowhere'"):
        gym.make(ENV_ID, scenario="nowhere")
    with pytest.raises(ScenarioError, match="unknown scenario"):
        SocialCommerceEnv("nowhere")
    with pytest.raises(ScenarioError, match="unknown scenario"):
        envs.SocialCommerceVectorEnv(num_envs=2, scenario="nowhere")


def test_missing_file_names_the_path(tmp_path: Path) -> None:
    missing = tmp_path / "absent.yaml"
    message = scenario_error(str(missing))
    assert "not found" in message and str(missing) in message


def test_wrong_scenario_argument_type() -> None:
    message = scenario_error(42)
    assert "name, a path or a Scenario" in message and "int" in message


def test_invalid_yaml_names_the_line(tmp_path: Path) -> None:
    path = write_yaml(tmp_path, "name: x\nseason: [1, 2\n")
    message = scenario_error(str(path))
    assert str(path) in message and "line" in message and "YAML" in message


def test_file_that_is_not_a_mapping(tmp_path: Path) -> None:
    message = scenario_error(str(write_yaml(tmp_path, "- 1\n- 2\n")))
    assert "mapping" in message


@pytest.mark.parametrize(
    "text, field, expected",
    [
        ("budget:\n  total: lots\n", "budget.total", "valid number"),
        ("horizon: 2.5\n", "horizon", "valid integer"),
        ("deterministic: maybe\n", "deterministic", "valid boolean"),
        ("budget: 5\n", "budget", "dictionary"),
        ("budget:\n  mode: medium\n", "budget.mode", "'hard' or 'soft'"),
    ],
)
def test_wrong_type_in_file_names_field_and_expected_type(tmp_path: Path, text: str, field: str, expected: str) -> None:
    path = write_yaml(tmp_path, "extends: global\n" + text)
    message = scenario_error(str(path))
    assert str(path) in message and field in message and expected in message


@pytest.mark.parametrize(
    "overrides, field, expected",
    [
        ({"budget.total": "lots"}, "budget.total", "valid number"),
        ({"regions.us.suspension_quarters": 1.5}, "regions.us.suspension_quarters", "valid integer"),
        ({"regions.us": 3}, "regions.us", "dictionary"),
    ],
)
def test_wrong_type_in_override_names_field(overrides, field: str, expected: str) -> None:
    message = scenario_error("global", overrides)
    assert field in message and expected in message


@pytest.mark.parametrize(
    "overrides, field, bound",
    [
        ({"budget.total": -1.0}, "budget.total", "greater than 0"),
        ({"budget.total": 5000.0}, "budget.total", "less than or equal to 1000"),
        ({"budget.per_quarter": 0}, "budget.per_quarter", "greater than 0"),
        ({"noise.demand_sigma": 2.0}, "noise.demand_sigma", "less than or equal to 1"),
        ({"regions.sea.suspension_hazard": 1.5}, "regions.sea.suspension_hazard", "less than or equal to 1"),
        ({"regions.us.aov": 0.0}, "regions.us.aov", "greater than 0"),
        ({"horizon": 0}, "horizon", "greater than or equal to 1"),
        ({"platform.ad_decay": 1.0}, "platform.ad_decay", "less than 1"),
    ],
)
def test_out_of_range_override_names_field_value_and_bound(overrides, field: str, bound: str) -> None:
    message = scenario_error("global", overrides)
    value = next(iter(overrides.values()))
    assert field in message and bound in message and repr(value) in message


def test_out_of_range_in_file_names_file_field_and_bound(tmp_path: Path) -> None:
    path = write_yaml(tmp_path, "extends: global\nregions:\n  us:\n    commission: 0.9\n")
    message = scenario_error(str(path))
    assert str(path) in message and "regions.us.commission" in message and "0.5" in message


def test_population_above_its_ceiling_is_rejected() -> None:
    message = scenario_error("global", {"regions.us.buyers": 1000.0})
    assert "regions.us" in message and "buyers" in message and "ceiling" in message


def test_unknown_key_in_override_lists_the_allowed_keys() -> None:
    message = scenario_error("global", {"budget.totl": 3.0})
    assert "budget.totl" in message
    for allowed in ("mode", "per_quarter", "total"):
        assert allowed in message
    message = scenario_error("global", {"regions.fr.aov": 30.0})
    assert "fr" in message and all(r in message for r in ("sea", "us", "uk"))


def test_unknown_key_in_file_names_the_key(tmp_path: Path) -> None:
    message = scenario_error(str(write_yaml(tmp_path, "extends: global\nbudget:\n  totl: 3.0\n")))
    assert "unknown key 'budget.totl'" in message
    message = scenario_error(str(write_yaml(tmp_path, "extends: global\nfoo: 1\n", "top.yaml")))
    assert "unknown key 'foo'" in message


def test_unknown_key_in_file_lists_the_allowed_keys(tmp_path: Path) -> None:
    message = scenario_error(str(write_yaml(tmp_path, "extends: global\nbudget:\n  totl: 3.0\n")))
    for allowed in ("mode", "per_quarter", "total"):
        assert allowed in message


def test_unknown_region_in_only_regions(tmp_path: Path) -> None:
    message = scenario_error(str(write_yaml(tmp_path, "extends: global\nonly_regions: [fr]\n")))
    assert "fr" in message and "sea" in message


def test_extends_cycle_is_an_error(tmp_path: Path) -> None:
    a = write_yaml(tmp_path, f"extends: {tmp_path / 'b.yaml'}\n", "a.yaml")
    write_yaml(tmp_path, f"extends: {a}\n", "b.yaml")
    assert "cycle" in scenario_error(str(a))
