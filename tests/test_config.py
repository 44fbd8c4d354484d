"""Training configs: the YAML files are the defaults, ``extends`` works like scenarios, and every
bad input (file, ``--set``, a config too big for the machine) is one line naming the file.

The models in :mod:`agents.config` carry names, types and ranges but no values, so a number the
default training uses lives in ``configs/train/ppo.yaml`` only and cannot drift from a copy.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from pydantic import BaseModel

from agents import config as config_module
from agents.config import (CONFIG_DIR, DEFAULT_CONFIG, ConfigError, LagrangianParams, PolicyKwargs, PPOParams, TrainConfig,
                           VecNormalizeParams, config_from_dict, estimate_memory, load_config)
from envs.config_files import MAX_FILE_BYTES, MAX_NODES, read_yaml_mapping
from tests.conftest import assert_bad_inputs_exit_2

LAGRANGIAN = CONFIG_DIR / "ppo_lagrangian.yaml"


def config_error(path, sets=None) -> str:
    """Load a bad config; assert a one-line ConfigError and return its message."""
    with pytest.raises(ConfigError) as caught:
        load_config(path, sets)
    message = str(caught.value)
    assert message and "\n" not in message, message
    return message


def write(tmp_path: Path, text: str | bytes, name: str = "cfg.yaml") -> Path:
    path = tmp_path / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(text if isinstance(text, bytes) else text.encode())
    return path


def bomb(levels: int = 7) -> str:
    """A YAML 'billion laughs': ten aliases per level, 10**levels values once expanded."""
    lines = ["a0: &a0 [x, x, x, x, x, x, x, x, x, x]"]
    for i in range(1, levels):
        lines.append(f"a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * 10) + "]")
    return "\n".join(lines)


# ----------------------------------------------------------------------------- defaults in one place


@pytest.mark.parametrize("model", [TrainConfig, PPOParams, PolicyKwargs, VecNormalizeParams, LagrangianParams])
def test_models_hold_no_default_values(model: type[BaseModel]) -> None:
    # the shipped YAML files are the only home of the numbers: a default in a model would be a
    # second copy that could drift from them
    with_default = [name for name, field in model.model_fields.items() if not field.is_required()]
    assert with_default == [], f"{model.__name__} has defaults for {with_default}; put the value in configs/train/ppo.yaml"


def test_default_training_values_are_those_of_ppo_yaml() -> None:
    cfg = load_config()
    assert (cfg.scenario, cfg.algo, cfg.total_timesteps, cfg.n_envs, cfg.seed) == ("global", "ppo", 1_000_000, 64, 0)
    assert (cfg.ppo.n_steps, cfg.ppo.batch_size, cfg.ppo.gamma, cfg.vecnormalize.gamma) == (12, 768, 1.0, 1.0)
    assert cfg.ppo.policy_kwargs.log_std_init == -1.0 and cfg.ppo.learning_rate == 1.3e-3
    assert cfg.start_policy == "uniform"
    assert (cfg.checkpoint_freq, cfg.eval_freq, cfg.eval_episodes) == (50_000, 25_000, 64)
    assert cfg.overrides == {} and cfg.algo_params == {}


def test_lagrangian_config_is_ppo_plus_what_differs() -> None:
    raw = read_yaml_mapping(LAGRANGIAN, what="config")
    assert raw["extends"] == "ppo.yaml"
    base, lag = load_config(DEFAULT_CONFIG).model_dump(), load_config(LAGRANGIAN).model_dump()
    differ = {key for key in base if base[key] != lag[key]}
    # the Lagrangian keeps the rollout shape and step sizes it was tuned with, not the hard-budget defaults
    assert differ == {"overrides", "algo", "algo_params", "total_timesteps", "start_policy", "ppo", "vecnormalize"}
    assert lag["ppo"] == {**base["ppo"], "learning_rate": 3e-4, "n_steps": 24, "batch_size": 256, "n_epochs": 10,
                          "gamma": 0.995, "gae_lambda": 0.95}
    assert lag["n_envs"] == 64 and lag["start_policy"] is None and lag["vecnormalize"]["gamma"] == 0.995
    assert lag["overrides"] == {"budget.mode": "soft"} and lag["total_timesteps"] == 300_000
    params = LagrangianParams.model_validate(lag["algo_params"])
    assert (params.update, params.lambda_init, params.kp, params.ki, params.cost_limit) == ("pid", 4.0, 4.0, 0.5, None)


def test_start_policy_is_a_playbook_or_null() -> None:
    with pytest.raises(ConfigError, match="start_policy 'bogus' is unknown; allowed: null, zero, uniform"):
        load_config(DEFAULT_CONFIG, sets=["start_policy=bogus"])
    assert load_config(DEFAULT_CONFIG, sets=["start_policy=null"]).start_policy is None


def test_a_config_that_omits_keys_is_refused_and_told_to_extend(tmp_path: Path) -> None:
    message = config_error(write(tmp_path, "n_envs: 8\n"))
    assert "missing required key" in message and "extends: ppo" in message
    assert "missing required key" in config_error(write(tmp_path, "", "empty.yaml"))


# ----------------------------------------------------------------------------- extends


def test_extends_a_builtin_name_and_only_what_differs(tmp_path: Path) -> None:
    cfg = load_config(write(tmp_path, "extends: ppo\nn_envs: 8\nppo:\n  n_steps: 12\n"))
    base = load_config()
    assert (cfg.n_envs, cfg.ppo.n_steps, cfg.ppo.gamma, cfg.total_timesteps) == (8, 12, base.ppo.gamma, base.total_timesteps)


def test_extends_resolves_beside_the_extending_file_not_the_current_directory(tmp_path: Path, monkeypatch) -> None:
    ppo = DEFAULT_CONFIG.read_text()
    assert "n_envs: 64 " in ppo
    write(tmp_path, ppo.replace("n_envs: 64 ", "n_envs: 2 "), "parent.yaml")  # a decoy in the working directory
    write(tmp_path, ppo.replace("n_envs: 64 ", "n_envs: 16 "), "sub/parent.yaml")
    child = write(tmp_path, "extends: parent.yaml\nseed: 3\n", "sub/child.yaml")
    monkeypatch.chdir(tmp_path)
    cfg = load_config(child)
    assert (cfg.n_envs, cfg.seed) == (16, 3)
    deeper = write(tmp_path, "extends: ../sub/child.yaml\n", "other/grandchild.yaml")
    assert load_config(deeper).n_envs == 16


def test_extends_errors_name_the_file(tmp_path: Path) -> None:
    a = write(tmp_path, "extends: b.yaml\n", "a.yaml")
    write(tmp_path, "extends: a.yaml\n", "b.yaml")
    message = config_error(a)
    assert "cycle" in message and "a.yaml -> b.yaml -> a.yaml" in message
    missing = write(tmp_path, "extends: nowhere.yaml\n", "m.yaml")
    message = config_error(missing)
    assert str(missing) in message and "not found" in message and str(tmp_path / "nowhere.yaml") in message
    message = config_error(write(tmp_path, "extends: 5\n", "n.yaml"))
    assert "extends" in message and "5" in message
    message = config_error(write(tmp_path, "extends: pppo\n", "u.yaml"))
    assert "unknown config 'pppo'" in message and "ppo_lagrangian" in message


# ----------------------------------------------------------------------------- bad input, one line


def test_unknown_training_key_lists_the_training_keys(tmp_path: Path) -> None:
    message = config_error(write(tmp_path, "extends: ppo\nfoo: 1\n"))
    assert "unknown key 'foo'" in message and "n_envs" in message and "total_timesteps" in message
    assert "attractiveness" not in message  # the scenario's keys are not the allowed ones here
    message = config_error(write(tmp_path, "extends: ppo\nppo:\n  n_stepz: 3\n", "p.yaml"))
    assert "unknown key 'ppo.n_stepz'" in message and "n_steps" in message and "clip_range" in message
    message = config_error(LAGRANGIAN, ["algo_params.kpp=1"])
    assert "algo_params" in message and "kpp" in message and "lambda_init" in message


@pytest.mark.parametrize("sets, field", [
    (["n_envs=true"], "n_envs"),
    (["total_timesteps=false"], "total_timesteps"),
    (["ppo.policy_kwargs.net_arch=[true]"], "net_arch"),
    (["ppo.learning_rate=true"], "learning_rate"),
    (["ppo.target_kl=true"], "target_kl"),
    (["overrides.horizon=true"], "horizon"),
])
def test_booleans_are_not_numbers_in_set(sets, field: str) -> None:
    message = config_error(DEFAULT_CONFIG, sets)
    assert field in message and "boolean" in message


def test_booleans_are_not_numbers_in_files(tmp_path: Path) -> None:
    assert "boolean" in config_error(write(tmp_path, "extends: ppo\nn_envs: true\n"))
    assert "boolean" in config_error(write(tmp_path, f"extends: {LAGRANGIAN}\nalgo_params:\n  lambda_init: yes\n", "l.yaml"))


def test_numeric_strings_still_count_as_numbers(tmp_path: Path) -> None:
    # PyYAML reads 1e-4 (no dot) as a string; it is a number to the schema
    cfg = load_config(write(tmp_path, "extends: ppo\nppo:\n  learning_rate: 1e-4\n"))
    assert cfg.ppo.learning_rate == pytest.approx(1e-4)
    assert load_config(DEFAULT_CONFIG, ["ppo.learning_rate=1e-4"]).ppo.learning_rate == pytest.approx(1e-4)


def test_unreadable_files_are_one_line(tmp_path: Path) -> None:
    message = config_error(write(tmp_path, b"extends: ppo\nseed: \xff\xfe\n", "latin.yaml"))
    assert "not UTF-8" in message and "latin.yaml" in message
    message = config_error(write(tmp_path, "extends: ppo\nn_envs: [1\n", "broken.yaml"))
    assert "not valid YAML" in message and "line" in message
    message = config_error(write(tmp_path, "# " + "x" * MAX_FILE_BYTES + "\n", "huge.yaml"))
    assert "too large" in message
    message = config_error(write(tmp_path, "- 1\n", "list.yaml"))
    assert "mapping" in message
    assert "directory" in config_error(tmp_path)
    assert "too large" in config_error("/dev/zero")  # reading is bounded: a device never ends
    message = config_error(write(tmp_path, "extends: ppo\nseed: " + "[" * 5000 + "]" * 5000 + "\n", "deep.yaml"))
    assert "nested too deeply" in message


def test_a_bad_parent_file_is_named(tmp_path: Path) -> None:
    write(tmp_path, b"seed: \xff\n", "parent.yaml")
    message = config_error(write(tmp_path, "extends: parent.yaml\n", "child.yaml"))
    assert str(tmp_path / "parent.yaml") in message and "UTF-8" in message


def test_alias_bomb_is_refused_before_it_expands(tmp_path: Path) -> None:
    text = DEFAULT_CONFIG.read_text().replace("overrides: {}", "overrides:\n  " + bomb().replace("\n", "\n  "))
    message = config_error(write(tmp_path, text), ["seed=1"])
    assert "expands to more than" in message and str(MAX_NODES) in message
    message = config_error(DEFAULT_CONFIG, ["overrides={" + bomb().replace("\n", ", ") + "}"])
    assert "--set value" in message and "expands" in message
    message = config_error(write(tmp_path, "extends: ppo\noverrides: &o {x: *o}\n", "loop.yaml"))
    assert "refers to itself" in message


def test_set_errors_name_set_and_the_file(tmp_path: Path) -> None:
    message = config_error(DEFAULT_CONFIG, ["n_envs=0"])
    assert "with --set" in message and str(DEFAULT_CONFIG) in message and "n_envs" in message
    assert "unknown key 'nope'" in config_error(DEFAULT_CONFIG, ["nope=1"])
    assert "is a value, not a section" in config_error(DEFAULT_CONFIG, ["ppo.n_steps.x=1"])
    assert "not a dotted path" in config_error(DEFAULT_CONFIG, ["ppo..n_steps=1"])
    assert "expects key=value" in config_error(DEFAULT_CONFIG, ["n_envs"])
    assert "must be empty for algo 'ppo'" in config_error(DEFAULT_CONFIG, ["algo_params.kp=1"])


def test_a_reward_scale_on_another_discount_than_ppos_is_refused() -> None:
    message = config_error(DEFAULT_CONFIG, ["ppo.gamma=0.99"])
    assert "vecnormalize.gamma 1.0 differs from ppo.gamma 0.99" in message
    assert load_config(DEFAULT_CONFIG, ["ppo.gamma=0.99", "vecnormalize.gamma=0.99"]).ppo.gamma == 0.99
    # without reward normalisation its gamma is not used
    assert load_config(DEFAULT_CONFIG, ["ppo.gamma=0.99", "vecnormalize.norm_reward=false"]).vecnormalize.gamma == 1.0
    # a run trained so before the check still loads (and resumes): only a new training is refused
    saved = load_config(DEFAULT_CONFIG).model_dump(mode="json")
    saved["ppo"]["gamma"] = 0.99
    assert config_from_dict(saved).ppo.gamma == 0.99


# ----------------------------------------------------------------------------- memory


def test_memory_estimate_is_the_rollout_buffer_plus_overheads() -> None:
    cfg = load_config()
    obs, act = 41, 21
    need = estimate_memory(cfg, obs, act)
    assert need["rollout_buffer"] == 64 * 12 * (obs + act + 6) * 4
    assert need["total"] > need["rollout_buffer"] + 64 * 12 * obs * 4


def test_a_config_that_does_not_fit_in_memory_is_refused(monkeypatch) -> None:
    monkeypatch.setattr(config_module, "available_memory", lambda: 2 << 30)
    message = config_error(DEFAULT_CONFIG, ["n_envs=1024", "ppo.n_steps=10000"])
    assert "GiB" in message and "2.0 GiB available" in message and "n_envs" in message and "ppo.n_steps" in message
    assert load_config(DEFAULT_CONFIG).n_envs == 64  # the default fits
    # a saved run's config is not refused for memory (evaluating it needs no rollout buffer)
    doc = load_config(DEFAULT_CONFIG).model_dump(mode="json")
    doc["n_envs"], doc["ppo"]["n_steps"] = 1024, 10000
    assert config_from_dict(doc).n_envs == 1024


# ----------------------------------------------------------------------------- the script


def test_train_script_bad_configs_exit_2_with_one_line_and_no_run_folder(repo_root: Path, tmp_path: Path) -> None:
    files = tmp_path / "inputs"
    nonutf8 = write(files, b"extends: ppo\nseed: \xff\n", "latin.yaml")
    unknown = write(files, "extends: ppo\nfoo: 1\n", "unknown.yaml")
    bombed = write(files, DEFAULT_CONFIG.read_text().replace("overrides: {}", "overrides:\n  " + bomb().replace("\n", "\n  ")), "bomb.yaml")
    cases = {
        "n_envs true": (["--set", "n_envs=true"], "boolean"),
        "net_arch true": (["--set", "ppo.policy_kwargs.net_arch=[true]"], "boolean"),
        "horizon true": (["--set", "overrides.horizon=true"], "boolean"),
        "non utf8": (["--config", str(nonutf8)], "not UTF-8"),
        "unknown key": (["--config", str(unknown)], "allowed here: scenario, overrides"),
        "bomb": (["--config", str(bombed), "--set", "seed=1"], "expands to more than"),
        "sellers_half": (["--set", "overrides.regions.us.sellers_half=1e-100"], "sellers_half"),
        # ~180 GiB of rollout buffer: more than any machine this suite runs on has available
        "too big": (["--set", "n_envs=4096", "--set", "ppo.n_steps=100000"], "available"),
    }
    assert_bad_inputs_exit_2([sys.executable, "scripts/train.py"], cases, "--run-dir", tmp_path)
