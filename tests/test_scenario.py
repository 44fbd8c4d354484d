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
    path = write_yaml(tmp_path, "extends: global\nregions:\n  us:\n    reference_rate: 0.9\n")
    message = scenario_error(str(path))
    assert str(path) in message and "regions.us.reference_rate" in message and "0.5" in message


def test_population_above_its_ceiling_is_rejected() -> None:
    message = scenario_error("global", {"regions.us.buyers": 1000.0})
    assert "regions.us" in message and "buyers" in message and "ceiling" in message


def test_each_buyer_cohort_fits_its_users_and_seasons_keep_the_observation_box() -> None:
    # 3.6M Gen Z buyers against 1.5M Gen Z users: accepted, the first quarter would wipe out a quarter of the buyers
    message = scenario_error("us", {"regions.us.genz_share": 0.01, "regions.us.genz_buyer_share": 0.6})
    assert "regions.us" in message and "Gen Z" in message and "must not exceed" in message
    # next_season = season - 1 is an observation in [-1, 2]
    assert "season multipliers must all be in (0, 3]" in scenario_error("global", {"season": [1, 1, 1, 3.5]})


def test_unknown_key_in_override_lists_the_allowed_keys() -> None:
    message = scenario_error("global", {"budget.totl": 3.0})
    assert "budget.totl" in message
    for allowed in ("mode", "per_quarter", "total"):
        assert allowed in message
    message = scenario_error("global", {"regions.fr.aov": 30.0})
    assert "fr" in message and all(r in message for r in ("sea", "us", "uk"))


def test_a_key_given_twice_is_refused_not_silently_the_last(tmp_path: Path) -> None:
    path = write_yaml(tmp_path, "extends: global\nregions:\n  us:\n    aov: 35\n    aov: 350\n")
    message = scenario_error(str(path))
    assert str(path) in message and "line 5: key 'aov' appears twice" in message


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


# ----------------------------------------------------------------------------- round 2: the shared reader


@pytest.mark.parametrize("overrides, field", [
    ({"horizon": True}, "horizon"),
    ({"budget.total": True}, "budget.total"),
    ({"season": [True, 1, 1, 1]}, "season"),
    ({"regions.us.suspension_quarters": False}, "regions.us.suspension_quarters"),
])
def test_booleans_are_not_numbers(overrides, field: str) -> None:
    message = scenario_error("global", overrides)
    assert field in message and "boolean" in message


def test_boolean_in_a_file_is_not_a_number(tmp_path: Path) -> None:
    message = scenario_error(str(write_yaml(tmp_path, "extends: global\nhorizon: true\n")))
    assert str(tmp_path) in message and "horizon" in message and "boolean" in message


def test_numeric_string_in_a_file_is_a_number(tmp_path: Path) -> None:
    sc = load_scenario(str(write_yaml(tmp_path, "extends: global\nnoise:\n  demand_sigma: 1e-3\n")))
    assert sc.noise.demand_sigma == pytest.approx(1e-3)


def test_sellers_half_below_one_seller_is_refused_and_the_bound_stays_finite() -> None:
    # below ~1e-77 k sellers the Hill index (sellers / half) ** slope overflows: GMV was NaN
    message = scenario_error("global", {"regions.us.sellers_half": 1e-100})
    assert "regions.us.sellers_half" in message and "0.001 <= x" in message
    sc = load_scenario("global", {"regions.us.sellers_half": 0.001, "attractiveness.selection_slope": 4.0})
    venv = envs.SocialCommerceVectorEnv(num_envs=2, scenario=sc)
    venv.reset(seed=0)
    for _ in range(sc.horizon):
        obs, reward, *_, info = venv.step(np.ones((2, venv.single_action_space.shape[0]), np.float32))
        assert np.isfinite(obs).all() and np.isfinite(reward).all() and np.isfinite(info["gmv"]).all()


@pytest.mark.parametrize("value, expected", [
    ("5", "non-empty list of region names"),
    ("[[us]]", "non-empty list of region names"),
    ("us", "non-empty list of region names"),
    ("[]", "non-empty list of region names"),
    ("[us, us]", "twice"),
])
def test_only_regions_must_be_a_list_of_names(tmp_path: Path, value: str, expected: str) -> None:
    message = scenario_error(str(write_yaml(tmp_path, f"extends: global\nonly_regions: {value}\n")))
    assert expected in message and "['u', 's']" not in message
    if expected != "twice":
        assert "allowed: sea, us, uk" in message


def test_extends_resolves_beside_the_extending_file(tmp_path: Path, monkeypatch) -> None:
    write_yaml(tmp_path, "extends: global\nname: decoy\n", "parent.yaml")  # in the working directory
    (tmp_path / "sub").mkdir()
    write_yaml(tmp_path / "sub", "extends: global\nname: real\n", "parent.yaml")
    child = write_yaml(tmp_path / "sub", "extends: parent.yaml\nhorizon: 8\n", "child.yaml")
    monkeypatch.chdir(tmp_path)
    sc = load_scenario(str(child))
    assert (sc.name, sc.horizon) == ("real", 8)


def test_extends_errors_name_the_extending_file(tmp_path: Path) -> None:
    child = write_yaml(tmp_path, "extends: missing.yaml\n", "child.yaml")
    message = scenario_error(str(child))
    assert str(child) in message and "not found" in message
    assert "extends" in scenario_error(str(write_yaml(tmp_path, "extends: [global]\n", "list.yaml")))
    assert "extends" in scenario_error(str(write_yaml(tmp_path, "extends:\n", "empty.yaml")))


def test_unreadable_scenario_files_are_one_line(tmp_path: Path) -> None:
    path = tmp_path / "latin.yaml"
    path.write_bytes(b"extends: global\nname: caf\xe9\n")
    message = scenario_error(str(path))
    assert str(path) in message and "not UTF-8" in message and "0xe9" in message
    parent = tmp_path / "parent.yaml"
    parent.write_bytes(b"name: \xff\n")
    message = scenario_error(str(write_yaml(tmp_path, "extends: parent.yaml\n", "child.yaml")))
    assert str(parent) in message and "UTF-8" in message


def test_alias_bomb_is_refused(tmp_path: Path) -> None:
    lines = ["a0: &a0 [x, x, x, x, x, x, x, x, x, x]"] + [f"a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * 10) + "]" for i in range(1, 7)]
    path = write_yaml(tmp_path, "extends: global\nlaughs:\n  " + "\n  ".join(lines) + "\n")
    assert "expands to more than" in scenario_error(str(path))


def test_overrides_must_be_a_mapping() -> None:
    assert "overrides must be a mapping" in scenario_error("global", ["horizon=3"])


def test_simulate_script_bad_scenarios_exit_2_with_one_line(repo_root: Path, tmp_path: Path) -> None:
    import sys

    from tests.conftest import assert_bad_inputs_exit_2

    inputs = tmp_path / "inputs"
    inputs.mkdir()
    (inputs / "latin.yaml").write_bytes(b"extends: global\nname: \xff\n")
    (inputs / "regions.yaml").write_text("extends: global\nonly_regions: us\n")
    laughs = "{a: &a [x,x,x,x,x,x,x,x,x,x], " + ", ".join(f"{c}: &{c} [" + ",".join([f"*{p}"] * 10) + "]" for p, c in zip("abcde", "bcdef")) + "}"
    cases = {
        "horizon true": (["--set", "horizon=true"], "boolean"),
        "sellers_half": (["--set", "regions.us.sellers_half=1e-100"], "sellers_half"),
        "non utf8": (["--scenario", str(inputs / "latin.yaml")], "not UTF-8"),
        "only_regions string": (["--scenario", str(inputs / "regions.yaml")], "only_regions must be a non-empty list"),
        "bomb": (["--set", f"regions.us={laughs}"], "expands to more than"),
    }
    assert_bad_inputs_exit_2([sys.executable, "scripts/simulate.py"], cases, "--csv", tmp_path)
