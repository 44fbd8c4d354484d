"""The Gymnasium faces honour the environment contract (``docs/model.md``).

Checkers (Gymnasium and stable-baselines3) for every built-in scenario, ``gymnasium.make`` with
its passive checker, pickling, seeding, agreement of the single env, the native vector env and
the SB3 adapter, autoreset conventions, and action validation.
"""

from __future__ import annotations

import pickle
import warnings

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env as gym_check_env
from gymnasium.wrappers.common import PassiveEnvChecker
from stable_baselines3.common.env_checker import check_env as sb3_check_env
from stable_baselines3.common.vec_env import VecEnv

import envs
from envs import ENV_ID, SB3VecEnv, SocialCommerceEnv, SocialCommerceVectorEnv
from envs.batch import market_seeds
from tests.conftest import BUILTIN_SCENARIOS, assert_infos_equal, random_actions

CONTRACT_INFO_KEYS = {
    "gmv", "gmv_run_rate", "gmv_by_region", "cost", "cost_by_lever", "cost_limit",
    "budget_remaining", "shopping_start_share", "buyers", "sellers", "creators", "suspended",
    "revenue", "clipped_actions",
}
REGION_KEYS = ("gmv_by_region", "shopping_start_share", "buyers", "sellers", "creators", "suspended")


def play_single(env: SocialCommerceEnv, seed: int, actions: np.ndarray) -> list[tuple]:
    """Reset with ``seed`` and play ``actions``; return (obs, reward, terminated, truncated, info) per step."""
    obs, info = env.reset(seed=seed)
    steps = [(obs, 0.0, False, False, info)]
    for a in actions:
        steps.append(env.step(a))
    return steps


# ----------------------------------------------------------------------------- checkers


@pytest.mark.parametrize("scenario", BUILTIN_SCENARIOS)
def test_gymnasium_check_env_passes_without_warnings(scenario: str) -> None:
    env = SocialCommerceEnv(scenario)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        gym_check_env(env, skip_render_check=True)
    assert [str(w.message) for w in caught] == []


@pytest.mark.parametrize("scenario", BUILTIN_SCENARIOS)
def test_sb3_check_env_passes_without_warnings(scenario: str) -> None:
    env = SocialCommerceEnv(scenario)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        sb3_check_env(env, warn=True)
    assert [str(w.message) for w in caught] == []


def test_builtin_scenarios_are_the_documented_five() -> None:
    assert set(BUILTIN_SCENARIOS) >= {"global", "us", "uk", "sea", "booktok"}


@pytest.mark.parametrize("scenario", BUILTIN_SCENARIOS)
def test_gym_make_runs_a_full_episode_through_the_passive_checker(scenario: str) -> None:
    env = gym.make(ENV_ID, scenario=scenario)
    wrapper, found = env, False
    while isinstance(wrapper, gym.Wrapper):
        found |= isinstance(wrapper, PassiveEnvChecker)
        wrapper = wrapper.env
    assert found, "gym.make must apply the passive env checker"
    obs, info = env.reset(seed=0)
    assert env.observation_space.contains(obs)
    horizon = env.unwrapped.scenario.horizon
    for quarter in range(1, horizon + 1):
        obs, reward, terminated, truncated, info = env.step(env.action_space.sample())
        assert env.observation_space.contains(obs)
        assert isinstance(reward, float) and reward == pytest.approx(info["objective_value"] + info["terminal_value"])
        assert info["terminal_value"] == 0.0 or quarter == horizon
        assert truncated is False
        assert terminated is (quarter == horizon), "the episode terminates exactly at the horizon"
        assert CONTRACT_INFO_KEYS <= info.keys()
        assert info["quarter"] == quarter
    env.close()


def test_spaces_follow_the_contract() -> None:
    env = SocialCommerceEnv("global")
    n_regions = len(env.scenario.regions)
    assert env.action_space == gym.spaces.Box(-1, 1, (n_regions * len(envs.LEVERS),), np.float32)
    assert env.observation_space.dtype == np.float32
    obs, info = env.reset(seed=0)
    assert obs.dtype == np.float32 and obs.shape == env.observation_space.shape
    assert CONTRACT_INFO_KEYS <= info.keys(), "reset returns the same info keys as step"
    for key in REGION_KEYS:
        assert list(info[key]) == env.scenario.region_names
    assert list(info["cost_by_lever"]) == list(envs.LEVERS)


def test_render_ansi_describes_the_quarter() -> None:
    env = SocialCommerceEnv("global", render_mode="ansi")
    env.reset(seed=0)
    env.step(env.action_space.sample())
    text = env.render()
    assert isinstance(text, str) and "GMV" in text and "budget left" in text
    with pytest.raises(ValueError, match="render_mode"):
        SocialCommerceEnv("global", render_mode="video")


# ----------------------------------------------------------------------------- pickling


def test_fresh_env_pickles() -> None:
    env = pickle.loads(pickle.dumps(SocialCommerceEnv("global")))
    obs, _ = env.reset(seed=0)
    assert env.observation_space.contains(obs)


@pytest.mark.parametrize("scenario", ["global", "sea"])
def test_pickled_env_mid_episode_continues_identically(scenario: str) -> None:
    env = SocialCommerceEnv(scenario)
    actions = random_actions(7, env.scenario.horizon, env.action_space.shape)
    env.reset(seed=11)
    for a in actions[:5]:
        env.step(a)
    clone = pickle.loads(pickle.dumps(env))
    for a in actions[5:]:
        o1, r1, t1, tr1, i1 = env.step(a)
        o2, r2, t2, tr2, i2 = clone.step(a)
        np.testing.assert_array_equal(o1, o2)
        assert (r1, t1, tr1) == (r2, t2, tr2)
        assert_infos_equal(i1, i2)
    # the generator travelled too: the next (unseeded) episode is the same
    np.testing.assert_array_equal(env.reset()[0], clone.reset()[0])
    a = actions[0]
    assert env.step(a)[1] == clone.step(a)[1]


def test_vector_env_pickles_mid_episode() -> None:
    vec = SocialCommerceVectorEnv(num_envs=3, scenario="global")
    vec.reset(seed=4)
    actions = random_actions(1, 4, vec.action_space.shape)
    vec.step(actions[0])
    clone = pickle.loads(pickle.dumps(vec))
    for a in actions[1:]:
        np.testing.assert_array_equal(vec.step(a)[1], clone.step(a)[1])


# ----------------------------------------------------------------------------- seeding


@pytest.mark.parametrize("scenario", BUILTIN_SCENARIOS)
def test_same_seed_same_trajectory(scenario: str) -> None:
    env_a, env_b = SocialCommerceEnv(scenario), SocialCommerceEnv(scenario)
    actions = random_actions(3, env_a.scenario.horizon, env_a.action_space.shape)
    for step_a, step_b in zip(play_single(env_a, 5, actions), play_single(env_b, 5, actions)):
        np.testing.assert_array_equal(step_a[0], step_b[0])
        assert step_a[1:4] == step_b[1:4]
        assert_infos_equal(step_a[4], step_b[4])


def test_different_seeds_give_different_shocks() -> None:
    env = SocialCommerceEnv("global")
    actions = random_actions(3, env.scenario.horizon, env.action_space.shape)
    rewards_a = [s[1] for s in play_single(env, 1, actions)[1:]]
    rewards_b = [s[1] for s in play_single(env, 2, actions)[1:]]
    assert rewards_a != rewards_b


def test_deterministic_scenario_ignores_the_seed() -> None:
    env = SocialCommerceEnv("global", overrides={"deterministic": True})
    actions = random_actions(3, env.scenario.horizon, env.action_space.shape)
    rewards_a = [s[1] for s in play_single(env, 1, actions)[1:]]
    rewards_b = [s[1] for s in play_single(env, 2, actions)[1:]]
    assert rewards_a == rewards_b


def test_common_random_numbers_shocks_do_not_depend_on_actions() -> None:
    """Two policies on one seed face the same suspensions (common random numbers, ``docs/model.md``)."""
    overrides = {f"regions.{r}.suspension_hazard": 0.5 for r in ("sea", "us", "uk")}
    env = SocialCommerceEnv("global", overrides=overrides)
    zero = np.full(env.action_space.shape, -1.0, np.float32)
    full = np.ones(env.action_space.shape, np.float32)
    runs = []
    for action in (zero, full):
        env.reset(seed=9)
        runs.append([env.step(action)[4]["suspended"] for _ in range(env.scenario.horizon)])
    assert runs[0] == runs[1]
    assert any(any(q.values()) for q in runs[0]), "hazard 0.5 must suspend some region"


# ----------------------------------------------------------------------------- vector env


def make_native_vec(num_envs: int, **kwargs) -> gym.vector.VectorEnv:
    return gym.make_vec(ENV_ID, num_envs=num_envs, vectorization_mode="vector_entry_point", **kwargs)


def test_make_vec_gives_the_native_vector_env() -> None:
    vec = make_native_vec(3, scenario="us")
    assert isinstance(vec.unwrapped, SocialCommerceVectorEnv)
    assert vec.num_envs == 3 and vec.unwrapped.scenario.name == "us"
    assert vec.action_space.shape == (3, vec.single_action_space.shape[0])


@pytest.mark.parametrize("scenario", ["global", "sea"])
def test_vector_env_equals_single_envs_seeded_s_plus_i(scenario: str) -> None:
    n, seed = 4, 100
    vec = make_native_vec(n, scenario=scenario)
    singles = [SocialCommerceEnv(scenario) for _ in range(n)]
    horizon = singles[0].scenario.horizon
    actions = random_actions(0, horizon, vec.action_space.shape, scale=1.3)

    obs, info = vec.reset(seed=seed)
    for i, env in enumerate(singles):
        o, inf = env.reset(seed=seed + i)
        np.testing.assert_array_equal(obs[i], o)
        assert_infos_equal(inf, info, index=i)
    for k in range(horizon):
        obs, reward, terminated, truncated, info = vec.step(actions[k])
        for i, env in enumerate(singles):
            o, r, t, tr, inf = env.step(actions[k, i])
            np.testing.assert_array_equal(obs[i], o)
            assert reward[i] == r and terminated[i] == t and truncated[i] == tr
            assert_infos_equal(inf, info, index=i)
    assert terminated.all()


def test_vector_env_next_step_autoreset_continues_like_unseeded_single_reset() -> None:
    """NEXT_STEP: the step after the terminal one resets (reward 0, not terminated, action ignored)."""
    n, seed = 3, 20
    vec = make_native_vec(n, scenario="global")
    assert vec.metadata["autoreset_mode"] == gym.vector.AutoresetMode.NEXT_STEP
    singles = [SocialCommerceEnv("global") for _ in range(n)]
    horizon = singles[0].scenario.horizon
    actions = random_actions(1, 2 * horizon + 1, vec.action_space.shape)

    vec.reset(seed=seed)
    for i, env in enumerate(singles):
        env.reset(seed=seed + i)
    for k in range(horizon):
        _, _, terminated, _, _ = vec.step(actions[k])
        for i, env in enumerate(singles):
            env.step(actions[k, i])
    assert terminated.all()

    obs, reward, terminated, truncated, info = vec.step(actions[horizon])  # the reset step
    np.testing.assert_array_equal(reward, np.zeros(n))
    assert not terminated.any() and not truncated.any()
    np.testing.assert_array_equal(info["quarter"], np.zeros(n))
    for i, env in enumerate(singles):
        o, inf = env.reset()  # no seed: the generator carries on, as in the vector env
        np.testing.assert_array_equal(obs[i], o)
    # the second episode matches too
    for k in range(horizon + 1, 2 * horizon + 1):
        obs, reward, terminated, _, _ = vec.step(actions[k])
        for i, env in enumerate(singles):
            o, r, t, _, _ = env.step(actions[k, i])
            np.testing.assert_array_equal(obs[i], o)
            assert reward[i] == r and terminated[i] == t
    assert terminated.all()


def test_native_vector_env_equals_gymnasium_sync_vectorization() -> None:
    """Gymnasium's own SyncVectorEnv (seeds s+i, NEXT_STEP autoreset) and ours play identically."""
    n, seed = 3, 8
    native = make_native_vec(n, scenario="global")
    sync = gym.make_vec(ENV_ID, num_envs=n, vectorization_mode="sync", scenario="global")
    horizon = native.unwrapped.scenario.horizon
    actions = random_actions(4, horizon + 3, native.action_space.shape, scale=1.2)
    np.testing.assert_array_equal(native.reset(seed=seed)[0], sync.reset(seed=seed)[0])
    for a in actions:  # crosses the autoreset step
        o1, r1, t1, tr1, _ = native.step(a)
        o2, r2, t2, tr2, _ = sync.step(a)
        np.testing.assert_array_equal(o1, o2)
        np.testing.assert_array_equal(r1, r2)
        np.testing.assert_array_equal(t1, t2)
        np.testing.assert_array_equal(tr1, tr2)
    sync.close()


def test_vector_env_info_arrays_have_leading_num_envs() -> None:
    n = 5
    vec = SocialCommerceVectorEnv(num_envs=n, scenario="global")
    vec.reset(seed=0)
    _, reward, _, _, info = vec.step(np.zeros(vec.action_space.shape, np.float32))
    assert reward.shape == (n,)
    assert CONTRACT_INFO_KEYS <= info.keys()
    for key in CONTRACT_INFO_KEYS:
        values = info[key].values() if isinstance(info[key], dict) else [info[key]]
        for v in values:
            assert np.asarray(v).shape == (n,), key


def test_vector_env_rejects_bad_construction() -> None:
    with pytest.raises(ValueError, match="num_envs"):
        SocialCommerceVectorEnv(num_envs=0)
    with pytest.raises(TypeError, match="unexpected keyword argument"):
        SocialCommerceVectorEnv(num_envs=2, scenaro="global")
    with pytest.raises(ValueError, match="seeds"):
        SocialCommerceVectorEnv(num_envs=2).reset(seed=[1, 2, 3])


# ----------------------------------------------------------------------------- SB3 adapter


def test_sb3_adapter_matches_single_envs_and_autoresets_on_the_terminal_step() -> None:
    n, seed = 3, 42
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        venv = SB3VecEnv(num_envs=n, scenario="global")
    assert [str(w.message) for w in caught] == [], "building the adapter must not warn"
    assert isinstance(venv, VecEnv)
    singles = [SocialCommerceEnv("global") for _ in range(n)]
    horizon = singles[0].scenario.horizon
    actions = random_actions(2, 2 * horizon, (n, venv.action_space.shape[0]))

    venv.seed(seed)
    obs = venv.reset()
    for i, env in enumerate(singles):
        np.testing.assert_array_equal(obs[i], env.reset(seed=seed + i)[0])

    for k in range(2 * horizon):
        obs, reward, dones, infos = venv.step(actions[k])
        assert reward.dtype == np.float32 and dones.dtype == bool and len(infos) == n
        for i, env in enumerate(singles):
            o, r, t, _, inf = env.step(actions[k, i])
            assert reward[i] == np.float32(r)
            assert dones[i] == t
            assert infos[i]["gmv"] == inf["gmv"] and infos[i]["cost"] == inf["cost"]
            if t:
                # SB3 convention: the terminal observation rides in info, obs is the next episode's first
                np.testing.assert_array_equal(infos[i]["terminal_observation"], o)
                assert infos[i]["TimeLimit.truncated"] is False
                o, _ = env.reset()
            else:
                assert "terminal_observation" not in infos[i]
            np.testing.assert_array_equal(obs[i], o)
        assert dones.all() == ((k + 1) % horizon == 0)


def test_sb3_adapter_runs_sb3_evaluate_policy() -> None:
    from stable_baselines3.common.evaluation import evaluate_policy

    from agents.policies import make_policy

    venv = SB3VecEnv(num_envs=2, scenario="global")
    venv.seed(0)
    policy = make_policy("merchant_package", venv.scenario)
    mean, std = evaluate_policy(policy, venv, n_eval_episodes=2, warn=False)
    assert np.isfinite(mean) and mean > 0


# ----------------------------------------------------------------------------- actions


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_action_raises_value_error(bad: float) -> None:
    env = SocialCommerceEnv("global")
    env.reset(seed=0)
    action = np.zeros(env.action_space.shape, np.float32)
    action[4] = bad
    with pytest.raises(ValueError, match="NaN or infinite"):
        env.step(action)
    vec = SocialCommerceVectorEnv(num_envs=2, scenario="global")
    vec.reset(seed=0)
    actions = np.zeros(vec.action_space.shape, np.float32)
    actions[1, 0] = bad
    with pytest.raises(ValueError, match="NaN or infinite"):
        vec.step(actions)


def test_wrong_shaped_action_raises_value_error() -> None:
    env = SocialCommerceEnv("global")
    env.reset(seed=0)
    dim = env.action_space.shape[0]
    for shape in [(dim - 1,), (dim + 1,), (1, dim), ()]:
        with pytest.raises(ValueError, match="expected"):
            env.step(np.zeros(shape, np.float32))
    vec = SocialCommerceVectorEnv(num_envs=3, scenario="global")
    vec.reset(seed=0)
    for shape in [(dim,), (2, dim), (3, dim - 1), (3, dim, 1)]:
        with pytest.raises(ValueError, match="expected"):
            vec.step(np.zeros(shape, np.float32))


def test_actions_of_any_numeric_type_are_accepted_and_non_numbers_rejected() -> None:
    env = SocialCommerceEnv("global")
    dim = env.action_space.shape[0]
    rewards = []
    for action in (np.zeros(dim, np.float32), np.zeros(dim), np.zeros(dim, np.int64), [0] * dim):
        env.reset(seed=1)
        rewards.append(env.step(action)[1])
    assert len(set(rewards)) == 1
    env.reset(seed=1)
    with pytest.raises(ValueError, match="expected numbers"):
        env.step(np.array(["0.5"] * dim))


def test_out_of_range_actions_are_clipped_and_counted() -> None:
    env = SocialCommerceEnv("global")
    dim = env.action_space.shape[0]
    raw = np.zeros(dim, np.float32)
    raw[[0, 3, 9]] = [1.5, -7.0, 1.0001]
    raw[5] = 1.0  # on the boundary: not clipped
    env.reset(seed=3)
    obs_raw, r_raw, _, _, info_raw = env.step(raw)
    assert info_raw["clipped_actions"] == 3
    env.reset(seed=3)
    obs_clip, r_clip, _, _, info_clip = env.step(np.clip(raw, -1, 1))
    assert info_clip["clipped_actions"] == 0
    np.testing.assert_array_equal(obs_raw, obs_clip)
    assert r_raw == r_clip


def test_vector_env_counts_clipped_actions_per_env() -> None:
    vec = SocialCommerceVectorEnv(num_envs=3, scenario="global")
    vec.reset(seed=0)
    actions = np.zeros(vec.action_space.shape, np.float32)
    actions[0, :2] = 2.0
    actions[2, :] = -3.0
    _, _, _, _, info = vec.step(actions)
    np.testing.assert_array_equal(info["clipped_actions"], [2, 0, actions.shape[1]])


def test_step_before_reset_raises() -> None:
    env = SocialCommerceEnv("global")
    with pytest.raises(RuntimeError, match="reset"):
        env.step(np.zeros(env.action_space.shape, np.float32))


def test_stepping_an_ended_episode_raises_reset_needed_until_reset() -> None:
    env = SocialCommerceEnv("global", overrides={"horizon": 3})
    a = np.zeros(env.action_space.shape, np.float32)
    env.reset(seed=0)
    terminated = [env.step(a)[2] for _ in range(3)]
    assert terminated == [False, False, True]
    quarter = env.state.t.copy()
    with pytest.raises(gym.error.ResetNeeded, match="^the episode ended after 3 quarters; call reset\\(\\) before step\\(\\)$"):
        env.step(a)
    np.testing.assert_array_equal(env.state.t, quarter)  # nothing was stepped
    env.reset()
    assert env.step(a)[4]["quarter"] == 1


def test_a_scenario_object_is_used_as_is_and_its_params_built_once() -> None:
    sc = envs.load_scenario("global")
    single, vec, other = SocialCommerceEnv(sc), SocialCommerceVectorEnv(num_envs=2, scenario=sc), SocialCommerceEnv(sc)
    assert single.scenario is sc and vec.scenario is sc
    assert single.params is vec.params is other.params
    # overrides make a new, validated scenario
    soft = SocialCommerceEnv(sc, overrides={"budget.mode": "soft"})
    assert soft.scenario is not sc and soft.scenario.budget.mode == "soft" and not soft.params.hard_budget


def test_market_seeds_follow_gymnasium_s_plus_i() -> None:
    assert market_seeds(5, 3) == [5, 6, 7]
    assert market_seeds(None, 2) == [None, None]
    assert market_seeds([1, None], 2) == [1, None]
    with pytest.raises(ValueError, match="got 1 seeds for 2 environments"):
        market_seeds([1], 2)


# ----------------------------------------------------------------------------- scripts
# The command-line faces of the environment: scripts/simulate.py and scripts/benchmark.py, run
# as a user runs them (from the repo root, no PYTHONPATH), plus their library functions.


def run_script(repo_root, *args: str, timeout: float = 120) -> "subprocess.CompletedProcess[str]":
    """Run ``python scripts/...`` from the repo root with a clean PYTHONPATH."""
    import os
    import subprocess
    import sys

    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env["MPLBACKEND"] = "Agg"
    return subprocess.run([sys.executable, *args], cwd=repo_root, env=env, capture_output=True, text=True, timeout=timeout)


def test_simulate_script_prints_the_table_and_writes_csv_and_png(repo_root, tmp_path) -> None:
    import csv

    csv_path, png_path = tmp_path / "run.csv", tmp_path / "run.png"
    proc = run_script(
        repo_root, "scripts/simulate.py", "--scenario", "global", "--policy", "merchant_package", "--seed", "0",
        "--set", "budget.total=3", "--csv", str(csv_path), "--plot", str(png_path),
    )
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    for label in ("2023Q1", "2023Q4", "2025Q4"):
        assert label in out
    for header in ("GMV sea", "rate us", "run rate", "commission", "warehouse", "budget left", "buyers", "sellers", "creators", "share uk"):
        assert header in out, header
    assert "budget $3B" in out, "--set budget.total=3 must reach the scenario"
    with csv_path.open() as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 12 and rows[0]["quarter"] == "2023Q1" and rows[-1]["quarter"] == "2025Q4"
    assert sum(float(r["spend"]) for r in rows) == pytest.approx(3.0, rel=1e-6)
    assert png_path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == [".run.csv.flywheel-output.json", ".run.png.flywheel-output.json", "run.csv", "run.png"], \
        "no temp files left behind, only the outputs and their manifests (agents.io)"


def test_simulate_script_bad_scenario_or_policy_exits_2_with_one_line(repo_root) -> None:
    import os
    import subprocess
    import sys

    cases = {"unknown scenario 'atlantis'": ["--scenario", "atlantis"], "unknown policy 'yolo'": ["--policy", "yolo"]}
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    procs = {  # run both at once: each pays the interpreter and import start-up
        expected: subprocess.Popen([sys.executable, "scripts/simulate.py", *args], cwd=repo_root, env=env,
                                   stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for expected, args in cases.items()
    }
    for expected, proc in procs.items():
        out, err = proc.communicate(timeout=120)
        assert proc.returncode == 2, err
        lines = err.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("error: ") and expected in lines[0], err
        assert "Traceback" not in err and out == ""


@pytest.mark.parametrize(
    "args, expected",
    [
        (["--set", "budget.totl=3"], "unknown key 'budget.totl'"),
        (["--set", "budget.total"], "key=value"),
        (["--set", "budget.total=-1"], "budget.total"),
        (["--seed", "-1"], "--seed"),
        (["--csv", "/nonexistent-dir/x.csv"], "does not exist"),
    ],
)
def test_simulate_main_bad_input_is_one_line_and_status_2(args, expected: str, capsys) -> None:
    from scripts.simulate import main

    assert main(args) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ") and expected in err[0]


def test_simulate_rows_agree_with_the_env() -> None:
    from agents.simulate import format_table, quarter_label, simulate

    from agents.policies import make_policy

    rows = simulate("global", "uniform", seed=3)
    env = SocialCommerceEnv("global")
    policy = make_policy("uniform", env.scenario)
    obs = env.reset(seed=3)[0]
    assert len(rows) == env.scenario.horizon
    for k, row in enumerate(rows):
        obs, reward, _, _, info = env.step(policy.predict(obs)[0])
        assert row["quarter"] == quarter_label(k, 1)
        assert row["gmv"] == info["gmv"]
        assert row["budget_left"] == info["budget_remaining"]
        assert row["spend"] == pytest.approx(sum(row[f"spend.{lever}"] for lever in envs.LEVERS[:-1]))
        assert row["run_rate"] == pytest.approx(sum(row[f"run_rate.{r}"] for r in env.scenario.region_names))
        assert row["buyers"] == pytest.approx(sum(info["buyers"].values()))
    table = format_table(rows, target_run_rate=20.0)
    assert table.count("2025Q4") == 3 and "target $20B" in table


def test_quarter_labels_roll_over_years() -> None:
    from agents.simulate import quarter_label

    assert [quarter_label(k, 3) for k in range(4)] == ["2023Q3", "2023Q4", "2024Q1", "2024Q2"]
    assert quarter_label(0, 1, start_year=2030) == "2030Q1"


def test_failed_write_leaves_no_file_and_keeps_the_old_one(tmp_path) -> None:
    from agents.io import atomic_path

    target = tmp_path / "out.csv"
    target.write_text("old")

    def half_write(tmp):
        tmp.write_text("half")
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        with atomic_path(target) as tmp:
            half_write(tmp)
    assert target.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["out.csv"]


@pytest.mark.slow
def test_benchmark_script_writes_the_json_keys(repo_root, tmp_path) -> None:
    import json

    from tests.conftest import run_main

    out = tmp_path / "bench.json"
    proc = run_main(repo_root / "scripts" / "benchmark.py", ["--seconds", "0.05", "--ppo-timesteps", "256", "--json", str(out)])
    assert proc.returncode == 0, proc.stderr
    data = json.loads(out.read_text())
    for key in ("single_env_steps_per_s", "vector_env_steps_per_s", "sync_vector_env_steps_per_s", "vector_speedup",
                "ppo_fps_vector", "ppo_fps_dummy", "ppo_speedup"):
        assert isinstance(data[key], float) and data[key] > 0, key
    assert data["vector_num_envs"] == 1024 and data["sync_num_envs"] == 64
    assert data["vector_speedup"] == pytest.approx(data["vector_env_steps_per_s"] / data["sync_vector_env_steps_per_s"])
    assert data["ppo_speedup"] == pytest.approx(data["ppo_fps_vector"] / data["ppo_fps_dummy"])
    for label in ("SocialCommerceEnv (raw, no wrappers)", "SocialCommerceVectorEnv x 1024", "SyncVectorEnv x 64", "us per step", "MB"):
        assert label in proc.stdout


def test_state_memory_is_the_sum_of_state_arrays() -> None:
    from envs.benchmark import state_nbytes

    vec = SocialCommerceVectorEnv(num_envs=8, scenario="global")
    vec.reset(seed=0)
    s = vec.state
    expected = sum(a.nbytes for a in vars(s).values() if isinstance(a, np.ndarray))
    assert state_nbytes(s) == expected > 0


@pytest.mark.parametrize("args, expected", [(["--scenario", "atlantis"], "unknown scenario"), (["--seconds", "0"], "--seconds")])
def test_benchmark_main_bad_input_is_one_line_and_status_2(args, expected: str, capsys) -> None:
    from scripts.benchmark import main

    assert main(args) == 2
    captured = capsys.readouterr()
    err = captured.err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ") and expected in err[0]
    assert captured.out == ""
