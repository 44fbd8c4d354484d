"""The tools RL users already have work on Flywheel as they are: Gymnasium's checker in every render
mode, stable-baselines3's ``make_vec_env`` with the id for its algorithms and sb3-contrib's,
the dashboard frame, the ``human`` mode on a machine without a display."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tomllib
from importlib import metadata
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
import yaml
from gymnasium.utils.env_checker import check_env
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

import envs
from agents.config import DEFAULT_CONFIG, load_config
from envs.render import Dashboard, EpisodeTrace



@pytest.fixture(autouse=True)
def one_torch_thread():
    """As training does (agents.ppo.set_torch_threads): tiny networks gain nothing from more
    threads, and on a shared 2-core machine extra threads only contend."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def small_net() -> dict:
    return {"net_arch": [16, 16]}  # a fresh dict: SB3 writes into the policy_kwargs it is given


@pytest.mark.parametrize("mode", [None, "ansi", "rgb_array", "human"])
def test_gymnasium_checker_passes_in_every_render_mode(mode, monkeypatch):
    monkeypatch.delenv("DISPLAY", raising=False)
    monkeypatch.delenv("WAYLAND_DISPLAY", raising=False)
    env = gym.make(envs.ENV_ID, render_mode=mode)
    check_env(env.unwrapped)
    assert env.render_mode == mode


def test_rgb_array_is_the_dashboard_of_the_episode():
    env = gym.make(envs.ENV_ID, render_mode="rgb_array")
    env.reset(seed=0)
    start = env.render()
    assert start.dtype == np.uint8 and start.ndim == 3 and start.shape[2] == 3
    frames = [start]
    terminated = False
    while not terminated:
        terminated = env.step(np.ones(env.action_space.shape, np.float32))[2]
        frames.append(env.render())
    assert all(f.shape == start.shape for f in frames)
    assert not np.array_equal(frames[0], frames[-1]), "spend and GMV bars must change the frame"
    frames[-1][0, 0] = 0  # each frame is its own array
    assert not np.shares_memory(frames[-1], frames[-2])
    env.reset(seed=0)
    np.testing.assert_array_equal(env.render(), start)  # a new episode clears the chart


def test_dashboard_widens_an_axis_for_values_beyond_it():
    env = gym.make(envs.ENV_ID).unwrapped
    dashboard = Dashboard(env.params)
    trace = EpisodeTrace(env.params.region_names)
    _, info = env.reset(seed=0)
    trace.record(info, start=True)
    normal = dashboard.frame(trace)
    huge = dict(info, gmv_run_rate=10 * env.params.target_run_rate, budget_remaining=-1.0)
    trace.record(huge)
    wide = dashboard.frame(trace)
    assert wide.shape == normal.shape and not np.array_equal(wide, normal)


def test_human_mode_without_a_display_shows_nothing_and_fails_nowhere(monkeypatch):
    monkeypatch.delenv("DISPLAY", raising=False)
    monkeypatch.delenv("WAYLAND_DISPLAY", raising=False)
    env = gym.make(envs.ENV_ID, render_mode="human")
    env.reset(seed=0)
    env.step(env.action_space.sample())
    assert env.render() is None
    env.close()


def test_unknown_render_mode_raises():
    with pytest.raises(ValueError, match="render_mode must be one of"):
        envs.SocialCommerceEnv(render_mode="video")


# ----------------------------------------------------------------------------- stable-baselines3


def test_make_vec_env_with_the_id_trains_ppo():
    from stable_baselines3 import PPO
    from stable_baselines3.common.env_util import make_vec_env

    venv = make_vec_env(envs.ENV_ID, n_envs=4, seed=0)  # SB3 asks for render_mode="rgb_array"
    assert venv.render_mode == "rgb_array"
    model = PPO("MlpPolicy", venv, n_steps=64, batch_size=64, n_epochs=2, seed=0, policy_kwargs=small_net(), device="cpu")
    model.learn(256)
    assert model.num_timesteps == 256
    frame = venv.render()  # what VecVideoRecorder records
    assert frame.ndim == 3 and frame.shape[2] == 3


@pytest.mark.parametrize("algo", ["SAC", "TD3", "A2C"])
def test_other_sb3_algorithms_learn_on_make_vec_env(algo):
    import stable_baselines3 as sb3
    from stable_baselines3.common.env_util import make_vec_env

    cls = getattr(sb3, algo)
    venv = make_vec_env(envs.ENV_ID, n_envs=2, seed=0)
    kwargs = {"learning_starts": 16, "batch_size": 16, "buffer_size": 1000} if algo != "A2C" else {"n_steps": 8}
    model = cls("MlpPolicy", venv, seed=0, policy_kwargs=small_net(), device="cpu", **kwargs)
    model.learn(48)
    assert model.num_timesteps >= 48


@pytest.mark.parametrize("algo", ["TRPO", "RecurrentPPO"])
def test_sb3_contrib_algorithms_learn_on_make_vec_env(algo):
    import sb3_contrib
    from stable_baselines3.common.env_util import make_vec_env

    cls = getattr(sb3_contrib, algo)
    policy = "MlpLstmPolicy" if algo == "RecurrentPPO" else "MlpPolicy"
    kwargs = {"lstm_hidden_size": 16} if algo == "RecurrentPPO" else {}
    venv = make_vec_env(envs.ENV_ID, n_envs=2, seed=0)
    model = cls(policy, venv, n_steps=32, batch_size=32, seed=0, device="cpu", policy_kwargs={**small_net(), **kwargs})
    model.learn(64)
    assert model.num_timesteps >= 64


# ----------------------------------------------------------------------------- installing and commands

ROOT = Path(__file__).resolve().parent.parent


def declared_requirements() -> list[Requirement]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    reqs = [Requirement(r) for r in project["dependencies"]]
    for extra in project["optional-dependencies"].values():
        reqs += [Requirement(r) for r in extra]
    return reqs


def locked_versions() -> dict[str, Version]:
    pins = {}
    for line in (ROOT / "requirements.lock").read_text(encoding="utf-8").splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            req = Requirement(line)
            (spec,) = req.specifier
            assert spec.operator == "==", f"requirements.lock: {line!r} is not an exact pin"
            pins[canonicalize_name(req.name)] = Version(spec.version)
    return pins


def test_every_declared_range_holds_its_locked_version_and_the_lock_is_installed():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    assert project["requires-python"] == ">=3.11"
    pins = locked_versions()
    for req in declared_requirements():
        name = canonicalize_name(req.name)
        assert name in pins, f"{req.name} is declared in pyproject.toml but not pinned in requirements.lock"
        assert req.specifier.contains(pins[name], prereleases=True), f"requirements.lock pins {name}=={pins[name]}, outside pyproject's {req}"
        assert any(s.operator == "<" for s in req.specifier), f"{req}: give an upper bound (the next major release)"
        lower = [Version(s.version) for s in req.specifier if s.operator == ">="]
        assert lower and lower[0].release == pins[name].release[: len(lower[0].release)], f"{req}: the lower bound is the tested version {pins[name]}"
    for name, version in pins.items():  # what runs these tests is the lock
        assert Version(metadata.version(name)) == version, f"installed {name} {metadata.version(name)} != locked {version}"
    makefile = (ROOT / "Makefile").read_text(encoding="utf-8")
    assert f"torch=={pins['torch'].base_version}" in makefile, "the Makefile installs the locked torch first"


def start_flywheel(*args: str) -> subprocess.Popen:
    exe = Path(sys.executable).parent / "flywheel"
    assert exe.exists(), f"no console command {exe}: pip install -e . declares it ([project.scripts])"
    return subprocess.Popen([str(exe), *args], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def finished(proc: subprocess.Popen, timeout: float = 120) -> subprocess.CompletedProcess:
    out, err = proc.communicate(timeout=timeout)
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)


@pytest.mark.slow
def test_flywheel_console_command_dispatches_to_the_scripts_with_their_flags(tmp_path):
    out = tmp_path / "sim.csv"
    started = {  # all at once: each pays an interpreter's start-up
        "listing": start_flywheel("--help"),
        "helped": start_flywheel("train", "--help"),
        "via_script": subprocess.Popen([sys.executable, "scripts/train.py", "--help"], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True),
        "sim": start_flywheel("simulate", "--scenario", "us", "--policy", "uniform", "--seed", "0", "--csv", str(out)),
        "unknown": start_flywheel("tarin"),
    }
    done = {name: finished(proc) for name, proc in started.items()}
    listing, helped, via_script, sim, unknown = (done[name] for name in started)
    assert listing.returncode == 0, listing.stderr
    for name in ("train", "evaluate", "simulate", "benchmark", "frontier", "constraint-benchmark"):
        assert f"  {name} " in listing.stdout, listing.stdout
    assert helped.returncode == 0 and helped.stdout.startswith("usage: flywheel train"), helped.stdout
    options = lambda text: text[text.index("\noptions:"):]  # noqa: E731 - the usage line wraps by the program's name
    assert options(helped.stdout) == options(via_script.stdout), "the same flags as scripts/train.py"
    assert sim.returncode == 0, sim.stderr
    assert out.exists() and out.read_text().count("\n") >= 12
    assert unknown.returncode == 2 and unknown.stderr.strip().splitlines() == [unknown.stderr.strip()] and "train" in unknown.stderr


# ----------------------------------------------------------------------------- rl-zoo3

ZOO_DIR = ROOT / "configs" / "rl_zoo3"
ZOO_ACTIVATIONS = {"tanh": "nn.Tanh", "relu": "nn.ReLU", "elu": "nn.ELU"}


def zoo_hyperparams(algo: str) -> dict:
    documents = yaml.safe_load((ZOO_DIR / f"{algo}.yml").read_text(encoding="utf-8"))
    assert list(documents) == [envs.ENV_ID], f"configs/rl_zoo3/{algo}.yml must hold the newest env id {envs.ENV_ID}"
    return documents[envs.ENV_ID]


def zoo_eval(text: str):
    """rl-zoo3 evaluates its string entries with ``torch.nn`` in scope; ``nn.X`` is read back as its name."""
    nn = type("nn", (), {name.split(".")[1]: name for name in ZOO_ACTIVATIONS.values()})
    return eval(text, {"nn": nn, "dict": dict})  # noqa: S307 - our own file, as rl-zoo3 reads it


def test_rl_zoo3_hyperparameters_agree_with_the_training_config():
    config = load_config(DEFAULT_CONFIG)
    ppo = config.ppo.model_dump()
    kwargs = ppo.pop("policy_kwargs")
    zoo = zoo_hyperparams("ppo")
    assert zoo.pop("n_envs") == config.n_envs
    assert zoo.pop("n_timesteps") == config.total_timesteps
    assert zoo.pop("policy") == "MlpPolicy"
    assert zoo_eval(zoo.pop("normalize")) == config.vecnormalize.model_dump()
    assert zoo_eval(zoo.pop("policy_kwargs")) == {
        "net_arch": {"pi": kwargs["net_arch"], "vf": kwargs["net_arch"]},
        "activation_fn": ZOO_ACTIVATIONS[kwargs["activation_fn"]],
        "log_std_init": kwargs["log_std_init"],
        "ortho_init": kwargs["ortho_init"],
    }
    unset = {k for k, v in ppo.items() if v is None}  # rl-zoo3 leaves these to SB3's default, None
    assert zoo == {k: v for k, v in ppo.items() if k not in unset}

    sac = zoo_hyperparams("sac")
    assert sac["gamma"] == config.ppo.gamma
    assert zoo_eval(sac["normalize"]) == config.vecnormalize.model_dump()
    assert zoo_eval(sac["policy_kwargs"]) == {"net_arch": kwargs["net_arch"], "activation_fn": ZOO_ACTIVATIONS[kwargs["activation_fn"]]}


@pytest.mark.slow
def test_rl_zoo3_trains_and_enjoys_the_env_in_a_subprocess(tmp_path):
    """A user's rl-zoo3 round trip with our hyperparameter file: train (a few thousand steps), then enjoy."""
    env = {k: v for k, v in os.environ.items() if k not in ("DISPLAY", "WAYLAND_DISPLAY")}  # enjoy renders 'human': no window here
    env["PYTHONPATH"] = str(ROOT)
    common = ["--algo", "ppo", "--env", envs.ENV_ID, "--gym-packages", "envs", "--num-threads", "1"]
    train = subprocess.run(
        [sys.executable, "-m", "rl_zoo3.train", *common, "-conf", str(ZOO_DIR / "ppo.yml"), "-n", "2048", "--seed", "0",
         "--log-folder", str(tmp_path), "--eval-freq", "-1", "--verbose", "0", "-params", "n_envs:8", "n_epochs:2"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=240,
    )
    assert train.returncode == 0, train.stderr[-2000:]
    name = envs.ENV_ID.replace("/", "-")
    experiment = tmp_path / "ppo" / f"{name}_1"
    for path in (experiment / f"{name}.zip", experiment / name / "config.yml", experiment / name / "args.yml", experiment / name / "vecnormalize.pkl"):
        assert path.exists(), f"rl-zoo3 did not write {path.relative_to(tmp_path)}"
    enjoy = subprocess.Popen(
        [sys.executable, "-m", "rl_zoo3.enjoy", *common, "-f", str(tmp_path), "-n", "24"],
        cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    # meanwhile, the same folder, beside the playbooks, with this project's evaluation
    doc = run_evaluate("ppo", str(experiment), "--out", str(tmp_path / "eval"))
    assert "ppo" in doc["policies"] and "uniform" in doc["policies"]
    out, err = enjoy.communicate(timeout=240)
    assert enjoy.returncode == 0, err[-2000:]
    assert out.count("Episode Length 12") == 2, out


def run_evaluate(learned: str, *args: str) -> dict:
    """``scripts/evaluate.py ARGS`` through its main in this process (what these tests check is the folder and the model it reads)."""
    from tests.conftest import run_main

    done = run_main(ROOT / "scripts" / "evaluate.py", [*args, "--episodes", "4", "--policies", f"{learned},uniform"])
    assert done.returncode == 0, done.stderr[-2000:]
    out = Path(args[args.index("--out") + 1])
    return json.loads((out / "eval.json").read_text())


@pytest.mark.slow
def test_evaluate_plays_a_plain_sb3_model_with_its_statistics(tmp_path):
    from stable_baselines3 import SAC
    from stable_baselines3.common.env_util import make_vec_env
    from stable_baselines3.common.vec_env import VecNormalize

    venv = VecNormalize(make_vec_env(envs.ENV_ID, n_envs=2, seed=0))
    model = SAC("MlpPolicy", venv, learning_starts=16, batch_size=16, buffer_size=1000, seed=0, policy_kwargs=small_net(), device="cpu")
    model.learn(48)
    model.save(tmp_path / "sac.zip")
    venv.save(tmp_path / "vecnormalize.pkl")
    doc = run_evaluate("sac", "--model", str(tmp_path / "sac.zip"), "--vecnormalize", str(tmp_path / "vecnormalize.pkl"),
                       "--scenario", "global", "--out", str(tmp_path / "eval"))
    assert set(doc["policies"]) >= {"sac", "uniform"}
    from tests.conftest import run_main  # a real evaluate process refusing a loaded model: test_evaluation's spaces test

    # without --vecnormalize, the statistics beside the model are used (as rl-zoo3's enjoy), and said
    beside = run_main(ROOT / "scripts" / "evaluate.py", ["--model", str(tmp_path / "sac.zip"), "--scenario", "global", "--out", str(tmp_path / "eval2"),
                                                         "--episodes", "4", "--policies", "sac,uniform"])
    assert beside.returncode == 0 and f"using the VecNormalize statistics beside the model: {tmp_path / 'vecnormalize.pkl'}" in beside.stdout
    same = json.loads((tmp_path / "eval2" / "eval.json").read_text())["policies"]["sac"]["gmv_mean"]
    assert same == pytest.approx(doc["policies"]["sac"]["gmv_mean"])

    bad = run_main(ROOT / "scripts" / "evaluate.py", ["--model", str(tmp_path / "sac.zip"), "--scenario", "us"])
    assert bad.returncode == 2 and bad.stderr.startswith("error: ") and "space has shape" in bad.stderr, bad.stderr


# ----------------------------------------------------------------------------- TensorBoard

TINY_TRAIN = ["-n", "512", "--n-envs", "16", "--eval-freq", "256", "--save-freq", "512", "--set", "ppo.n_steps=16",
              "--set", "ppo.batch_size=64", "--set", "ppo.n_epochs=1", "--set", "eval_episodes=4", "--progress", "lines"]


@pytest.mark.slow
def test_tensorboard_layout_descriptions_baselines_and_hparams_read_back(tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    from tensorboard.plugins.custom_scalar import layout_pb2
    from tensorboard.plugins.hparams import plugin_data_pb2

    from agents.callbacks import BEST_STATIC, BUDGET_TAG, EVAL_TAGS, LEVER_TAGS, MARKET_TAGS, RATIO_TAG, describe

    from tests.conftest import run_main

    done = run_main(ROOT / "scripts" / "train.py", [*TINY_TRAIN, "--run-dir", str(tmp_path / "run")])  # what it writes, in this process
    assert done.returncode == 0, done.stderr[-2000:]
    lines = [line for line in done.stdout.splitlines() if line.startswith("step ")]
    assert lines[-1].startswith("step 512/512 (100%)"), lines

    acc = EventAccumulator(str(tmp_path / "run" / "tb"), size_guidance={"scalars": 0, "tensors": 0})
    acc.Reload()
    scalars = set(acc.Tags()["scalars"])
    static_tag = f"baselines/{BEST_STATIC}"
    playbook = sorted(t for t in scalars if t.startswith("baselines/") and t not in (BUDGET_TAG, static_tag))
    assert len(playbook) == 1, playbook  # the best playbook
    baselines = [*playbook, static_tag]
    assert RATIO_TAG in EVAL_TAGS
    flywheel_tags = [t for t in scalars if t.split("/")[0] in ("market", "levers", "eval", "baselines")]
    assert sorted(flywheel_tags) == sorted({*MARKET_TAGS, *LEVER_TAGS, *EVAL_TAGS, BUDGET_TAG, *baselines})
    for tag in flywheel_tags:
        description = acc.SummaryMetadata(tag).summary_description
        assert description and description == describe(tag), tag
    assert "best constant allocation" in describe(static_tag)
    for tag in (*EVAL_TAGS, BUDGET_TAG, *baselines):
        steps = [e.step for e in acc.Scalars(tag)]
        assert steps[0] == 0 and steps[-1] == 512, (tag, steps)
    for tag in baselines:
        flat = acc.Scalars(tag)
        assert flat[0].value == flat[-1].value > 0, tag

    # the ratio: held-out GMV over best_static's on the same seeds, at every evaluation
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    best_static_gmv = acc.Scalars(static_tag)[0].value
    assert summary["eval_best_static_gmv_mean"] == pytest.approx(best_static_gmv, rel=1e-6)
    gmv = {e.step: e.value for e in acc.Scalars("eval/gmv_mean")}
    ratio = {e.step: e.value for e in acc.Scalars(RATIO_TAG)}
    assert set(ratio) == set(gmv) and len(ratio) >= 3  # step 0, every eval_freq, the end
    for step, value in ratio.items():
        assert value == pytest.approx(gmv[step] / best_static_gmv, rel=1e-5), step
    assert summary["eval_ratio_to_best_static"] == pytest.approx(ratio[512], rel=1e-5)

    # the custom-scalars layout, where TensorBoard's plugin reads it (the config tag's tensor)
    assert list(acc.PluginTagToContent("custom_scalars")) == ["custom_scalars__config__"]
    (event,) = acc.Tensors("custom_scalars__config__")
    layout = layout_pb2.Layout.FromString(event.tensor_proto.string_val[0])
    charts = {chart.title: list(chart.multiline.tag) for category in layout.category for chart in category.chart}
    levers = [tags for title, tags in charts.items() if title.startswith("Mean intensity by lever")]
    assert levers == [list(LEVER_TAGS)] and len(LEVER_TAGS) == 7
    assert ["market/buyers_final"] in charts.values() and ["market/sellers_final"] in charts.values()
    assert any(BUDGET_TAG in tags and "market/cost_episode" in tags for tags in charts.values())
    assert any({*baselines, "eval/gmv_mean"} <= set(tags) for tags in charts.values())  # the best playbook and best_static beside GMV
    assert [RATIO_TAG] in charts.values()

    # the HParams tab: the config's hyperparameters against the final eval figures
    hp = acc.PluginTagToContent("hparams")
    experiment = plugin_data_pb2.HParamsPluginData.FromString(hp["_hparams_/experiment"]).experiment
    assert {m.name.tag for m in experiment.metric_infos} == {"eval/gmv_mean", "eval/final_run_rate_mean", RATIO_TAG}
    start = plugin_data_pb2.HParamsPluginData.FromString(hp["_hparams_/session_start_info"]).session_start_info
    assert start.hparams["ppo.learning_rate"].number_value == pytest.approx(load_config(DEFAULT_CONFIG).ppo.learning_rate)  # the default config's
    assert start.hparams["algo"].string_value == "ppo"
