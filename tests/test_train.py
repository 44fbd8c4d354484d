"""Training from scripts: smoke runs of scripts/train.py in a subprocess with tiny budgets.

The run folder, TensorBoard tags (read back with tensorboard's event reader and from the real
TensorBoard server), resume after SIGTERM, reproducibility, and one-line errors on bad input.
"""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import threading
import urllib.request
from pathlib import Path

import pytest
import yaml
from tests.conftest import SHARED_RUN_ARGS, TINY_TRAIN, TRAIN, run_main, run_train, script_env

ROOT = Path(__file__).resolve().parent.parent
SUMMARY_KEYS = ["timesteps", "wall_seconds", "fps", "eval_gmv_mean", "eval_cost_mean", "eval_final_run_rate_mean", "eval_episodes", "eval_playbooks_gmv_mean"]


def scalar_events(run_dir: Path) -> dict[str, list]:
    """tag -> scalar events over every events file of the run (in file order)."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    out: dict[str, list] = {}
    for path in sorted(run_dir.rglob("events.out.tfevents*")):
        acc = EventAccumulator(str(path))
        acc.Reload()
        for tag in acc.Tags()["scalars"]:
            out.setdefault(tag, []).extend(acc.Scalars(tag))
    return out


@pytest.fixture
def smoke_run(trained_run: Path) -> Path:
    """The session's shared run (2048 steps, seed 1, tiny settings)."""
    return trained_run


# --------------------------------------------------------------------------- smoke run


@pytest.mark.slow
def test_run_folder_has_every_file(smoke_run: Path):
    for name in ["config.yaml", "scenario.yaml", "versions.json", "model.zip", "vecnormalize.pkl", "summary.json"]:
        assert (smoke_run / name).is_file(), name
    ckpts = smoke_run / "checkpoints"
    assert list(ckpts.glob("model_*.zip")) and list(ckpts.glob("vecnormalize_*.pkl"))
    assert json.loads((ckpts / "latest.json").read_text())["timesteps"] == 2048
    assert list(smoke_run.rglob("events.out.tfevents*"))
    assert not list(smoke_run.rglob(".*.tmp")) and not [p for p in smoke_run.rglob(".*") if p.is_file()], "temporary files left"

    summary = json.loads((smoke_run / "summary.json").read_text())
    for key in SUMMARY_KEYS:
        assert key in summary, key
    assert summary["timesteps"] == 2048 and summary["eval_episodes"] == 8
    assert set(summary["eval_playbooks_gmv_mean"]) == {"zero", "uniform", "merchant_package", "livestream_first", "commerce_first"}

    config = yaml.safe_load((smoke_run / "config.yaml").read_text())
    assert config["seed"] == 1 and config["total_timesteps"] == 2048 and config["ppo"]["n_steps"] == 16
    assert "learning_rate" in config["ppo"] and "norm_obs" in config["vecnormalize"], "config.yaml must be fully resolved"

    versions = json.loads((smoke_run / "versions.json").read_text())
    assert versions["python"] and versions["packages"]["stable_baselines3"] and versions["packages"]["torch"]
    assert "commit" in versions["git"]
    from envs import ENV_ID, MODEL_VERSION

    assert versions["env_id"] == ENV_ID and versions["model_version"] == MODEL_VERSION


@pytest.mark.slow
@pytest.mark.parametrize("recorded", [{"env_id": "flywheel/SocialCommerce-v0", "model_version": "1"}, {}])
def test_a_run_of_another_model_version_is_refused(smoke_run: Path, tmp_path: Path, recorded: dict, capsys):
    """Loading or resuming a run made on another market model: one line naming both versions."""
    import shutil

    from agents.runs import RunError, load_run, open_for_resume
    from envs import ENV_ID, MODEL_VERSION

    old = tmp_path / "old"
    shutil.copytree(smoke_run, old)
    (old / "versions.json").write_text(json.dumps({"python": "3.11", **recorded}))
    for opener in (load_run, open_for_resume):
        with pytest.raises(RunError) as err:
            opener(old)
        message = str(err.value)
        assert "\n" not in message and f"model version {MODEL_VERSION} ({ENV_ID})" in message, message
        if recorded:
            assert "model version 1 (flywheel/SocialCommerce-v0)" in message, message
    code, err = _main(["--resume", str(old)], capsys)
    assert code == 2 and err.count("\n") == 1 and "model version" in err, err


@pytest.mark.slow
def test_a_run_whose_checkpoint_models_are_gone_is_not_restarted_from_zero(smoke_run: Path, tmp_path: Path, capsys):
    """checkpoints/ keeps statistics and latest.json but no model: --resume refuses in one line
    and changes nothing (starting again from step 0 would also cut the TensorBoard curve)."""
    import shutil

    run = tmp_path / "run"
    shutil.copytree(smoke_run, run)
    (run / "model.zip").unlink()
    (run / "summary.json").unlink()  # an unfinished run
    for model in (run / "checkpoints").glob("model_*.zip"):
        model.unlink()
    def files() -> dict:  # train.lock holds the PID of the last process that locked the run
        return {p: p.read_bytes() for p in run.rglob("*") if p.is_file() and p.name != "train.lock"}

    before = files()
    code, err = _main(["--resume", str(run)], capsys)
    assert code == 2 and err.count("\n") == 1, err
    assert "no whole checkpoint" in err and "nothing was changed" in err and "latest.json" in err, err
    assert files() == before
    # a first checkpoint cut short (statistics written, the model and latest.json not yet) is no
    # loss: the run still resumes from step 0
    from agents.runs import open_for_resume

    first = min((run / "checkpoints").glob("vecnormalize_*.pkl"), key=lambda p: int(p.stem.split("_")[1]))
    for path in (run / "checkpoints").iterdir():
        if path != first:
            path.unlink()
    assert [p.name for p in (run / "checkpoints").iterdir()] == [first.name]
    _, lock = open_for_resume(run)
    lock.release()


@pytest.mark.slow
def test_tensorboard_events_have_market_and_lever_tags(smoke_run: Path):
    from agents.callbacks import EVAL_TAGS, LEVER_TAGS, MARKET_TAGS

    events = scalar_events(smoke_run)
    for tag in (*MARKET_TAGS, *LEVER_TAGS, *EVAL_TAGS, "rollout/ep_rew_mean", "train/value_loss"):
        assert tag in events, tag
    assert len([t for t in events if t.startswith("levers/")]) == 7
    gmv = [e.value for e in events["market/gmv_episode"]]
    assert all(10 < v < 200 for v in gmv), gmv
    assert all(0 <= e.value <= 1 for t in LEVER_TAGS for e in events[t])
    assert all(0 <= e.value <= 1 + 1e-9 for e in events["market/budget_utilisation"])


@pytest.mark.slow
def test_tensorboard_has_layout_and_config_text(smoke_run: Path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    tags: dict = {}
    for path in smoke_run.rglob("events.out.tfevents*"):
        acc = EventAccumulator(str(path), size_guidance={"tensors": 0})
        acc.Reload()
        for kind, names in acc.Tags().items():
            if isinstance(names, list):
                tags.setdefault(kind, set()).update(names)
    assert "config/text_summary" in tags.get("tensors", set())
    raw = b"".join(p.read_bytes() for p in smoke_run.rglob("events.out.tfevents*"))
    assert b"custom_scalars__config__" in raw and b"market/gmv_episode" in raw


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _kill_after(proc: subprocess.Popen, seconds: float) -> threading.Timer:
    """A watchdog: kill ``proc`` if the test still waits on it after ``seconds``."""
    timer = threading.Timer(seconds, proc.kill)
    timer.daemon = True
    timer.start()
    return timer


def _read_until(stream, condition, what: str) -> str:
    """Lines of ``stream`` until one meets ``condition`` (blocking; a watchdog ends a hang)."""
    seen = []
    for line in stream:
        seen.append(line)
        if condition(line):
            return line
    raise AssertionError(f"{what} never appeared; output: {''.join(seen)[-2000:]}")


@pytest.mark.slow
def test_tensorboard_server_lists_tags(smoke_run: Path):
    # --reload_task blocking --reload_interval 0: the events are loaded before the server
    # listens, so its first answer holds every tag (no polling)
    port = _free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "tensorboard.main", "--logdir", str(smoke_run), "--host", "127.0.0.1", "--port", str(port),
         "--load_fast", "false", "--reload_task", "blocking", "--reload_interval", "0"],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=script_env(),
    )
    watchdog = _kill_after(server, 90)
    try:
        _read_until(server.stderr, lambda line: f"127.0.0.1:{port}" in line, "TensorBoard's serving line")
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/data/plugin/scalars/tags", timeout=30) as resp:
            data = json.loads(resp.read())
        tags = {tag for run in data.values() for tag in run}
        assert "market/gmv_episode" in tags and "market/budget_utilisation" in tags, sorted(tags)
        assert len([t for t in tags if t.startswith("levers/")]) == 7
        assert "eval/gmv_mean" in tags
    finally:
        watchdog.cancel()
        server.terminate()
        try:
            server.wait(timeout=15)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()


@pytest.mark.slow
def test_same_config_and_seed_give_same_evaluation(smoke_run: Path, tmp_path: Path):
    again = tmp_path / "again"
    proc = run_main(TRAIN, [*SHARED_RUN_ARGS, "--run-dir", str(again)])  # in this process; the shared run was a process of its own
    assert proc.returncode == 0, proc.stderr[-2000:]
    first, second = (json.loads((d / "summary.json").read_text()) for d in (smoke_run, again))
    figures = [k for k in first if k.startswith("eval_")]
    assert "eval_gmv_mean" in figures and {k: first[k] for k in figures} == {k: second[k] for k in figures}
    assert (smoke_run / "model.zip").read_bytes() != b"" and first["timesteps"] == second["timesteps"]


@pytest.mark.slow
def test_load_run_gives_a_policy_on_raw_observations(smoke_run: Path):
    import numpy as np

    from agents.ppo import evaluate_model
    from agents.rollout import episode_totals, rollout_policy
    from agents.runs import load_run

    run = load_run(smoke_run)
    assert run.config.seed == 1 and run.scenario.name == "global" and run.algo == "ppo"
    assert run.vecnormalize.training is False and run.vecnormalize.norm_reward is False
    policy = run.policy()
    # the held-out episodes of training's final evaluation, replayed from the saved run: the same figure, to the bit
    traj = rollout_policy(policy, run.scenario, [10_000_000 + k for k in range(8)])
    assert episode_totals(traj.gmv).mean() == run.summary["eval_gmv_mean"]
    figures = evaluate_model(run.model, run.vecnormalize, run.scenario, 8)
    assert figures["gmv_mean"] == run.summary["eval_gmv_mean"]
    assert figures["run_rate_final_mean"] == run.summary["eval_final_run_rate_mean"]
    obs = np.zeros(run.model.observation_space.shape, np.float32)
    action, state = policy.predict(obs)
    assert action.shape == run.model.action_space.shape and state is None


# --------------------------------------------------------------------------- resume
# A real process stopped by a signal, then resumed to the full timesteps on one TensorBoard
# curve: tests/test_faults.py (test_signals_from_outside_during_the_rollouts_then_resume).


# --------------------------------------------------------------------------- bad input


def _main(argv: list[str], capsys) -> tuple[int, str]:
    sys.path.insert(0, str(ROOT / "scripts"))
    try:
        import train as train_script
    finally:
        sys.path.pop(0)
    try:
        code = train_script.main(argv)
    except SystemExit as exc:  # argparse errors
        code = exc.code
    return code, capsys.readouterr().err


@pytest.fixture
def existing_run(tmp_path: Path) -> Path:
    run = tmp_path / "existing"
    run.mkdir()
    (run / "marker.txt").write_text("keep me")
    return run


BAD_INPUTS = {
    "missing config": (["--config", "configs/train/nope.yaml"], "not found"),
    "config is not YAML": (["--config", "{bad}"], "not valid YAML"),
    "config key unknown": (["--config", "{unknown_key}"], "unknown key 'unknown_key'"),
    "config value invalid": (["--config", "{bad_value}"], "ppo.learning_rate"),
    "--set key unknown": (["--set", "ppo.learnin_rate=1e-3"], "unknown key 'ppo.learnin_rate'"),
    "--set top key unknown": (["--set", "nope=1"], "allowed:"),
    "--set value bad": (["--set", "n_envs=0"], "n_envs"),
    "--set activation bad": (["--set", "ppo.policy_kwargs.activation_fn=sigmoid"], "'tanh', 'relu' or 'elu'"),
    "--set without =": (["--set", "n_envs"], "key=value"),
    "unknown scenario": (["--set", "scenario=mars"], "unknown scenario 'mars'"),
    "bad scenario override": (["--set", "overrides.budget.total=-1"], "budget.total"),
    "unknown algo": (["--set", "algo=dqn"], "allowed: ppo"),
    "negative timesteps": (["--timesteps", "-5"], "total_timesteps"),
    "not an int": (["--timesteps", "many"], "invalid int value"),
    "--tensorboard-log is a file": (["--tensorboard-log", "{a_file}"], "is not a folder"),
    "a scenario as --config": (["--config", "configs/scenarios/us.yaml"], "is a scenario file, not a training config"),
}


@pytest.mark.parametrize("case", list(BAD_INPUTS))
def test_bad_input_is_one_line_exit_2_nothing_written(case: str, tmp_path: Path, capsys):
    argv, expect = BAD_INPUTS[case]
    files = {
        "{bad}": "ppo: [unclosed\n",
        "{unknown_key}": "unknown_key: 1\n",
        "{bad_value}": "ppo:\n  learning_rate: -1\n",
        "{a_file}": "not a folder\n",
    }
    argv = [str(_write(tmp_path, files[a])) if a in files else a for a in argv]
    run_dir = tmp_path / "run"
    code, err = _main([*argv, "--run-dir", str(run_dir)], capsys)
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    assert expect in lines[0], lines[0]
    assert not run_dir.exists()


def test_a_tensorboard_log_in_a_missing_folder_is_refused(tmp_path: Path, capsys):
    """As every output path a user names: the folder may be new, its parent must exist."""
    code, err = _main(["--tensorboard-log", str(tmp_path / "nowhere" / "tb"), "--run-dir", str(tmp_path / "run")], capsys)
    assert code == 2 and err.count("\n") == 1 and "does not exist; create it first" in err, err
    assert not (tmp_path / "nowhere").exists() and not (tmp_path / "run").exists()


def _write(folder: Path, text: str) -> Path:
    path = folder / "config.yaml"
    path.write_text(text)
    return path


def test_a_run_dir_in_a_missing_folder_is_refused(tmp_path: Path, capsys, monkeypatch):
    code, err = _main(["--run-dir", str(tmp_path / "nowhere" / "run")], capsys)
    assert code == 2 and err.count("\n") == 1 and "does not exist; create it first" in err, err
    assert not (tmp_path / "nowhere").exists()
    # the project's own runs/ is made when missing, as for the default run folder (the docs' --run-dir runs/r1)
    import train as train_script

    from agents import io

    monkeypatch.setattr(io, "RUNS_DIR", tmp_path / "runs")
    monkeypatch.setattr(train_script, "create_run_dir", lambda *a, **k: pytest.fail("checked only"))
    with pytest.raises(pytest.fail.Exception, match="checked only"):
        train_script.main(["--run-dir", str(tmp_path / "runs" / "r1")])


@pytest.mark.slow
def test_tensorboard_log_is_recorded_for_resume_and_plots(smoke_run: Path, tmp_path: Path, capsys):
    """--tensorboard-log DIR: the events go to DIR/<run name>, the run records it (a resume
    writes there, plot_run reads there), and --resume cannot send them elsewhere."""
    from agents import plots, runs

    logs = tmp_path / "logs"
    run = tmp_path / "run"
    code, err = _main(["--timesteps", "512", *TINY_TRAIN, "--set", "eval_episodes=2", "--run-dir", str(run),
                       "--tensorboard-log", str(logs)], capsys)
    assert code == 0, err
    assert runs.tensorboard_dir(run) == (logs / "run").absolute()
    assert list((logs / "run").glob("events.out.tfevents*")) and not (run / "tb").exists()
    assert "market/gmv_episode" in plots.read_scalars(run)
    code, err = _main(["--resume", str(run), "--tensorboard-log", str(tmp_path / "elsewhere")], capsys)
    assert code == 2 and "--tensorboard-log" in err and err.count("\n") == 1, err
    (logs / "run4").mkdir()  # a curve of another run by that name: a new run does not write into it
    code, err = _main(["--timesteps", "512", *TINY_TRAIN, "--run-dir", str(tmp_path / "run4"), "--tensorboard-log", str(logs)], capsys)
    assert code == 2 and "already exists" in err and err.count("\n") == 1, err
    assert not (tmp_path / "run4").exists() and not list((logs / "run4").iterdir())


def test_a_copied_run_does_not_resume_into_the_original_runs_tensorboard_folder(tmp_path: Path):
    """tensorboard.json names its run: a copy (or a moved folder) is refused on resume, in one
    line, instead of cutting the original run's curve back to the copy's checkpoint."""
    import shutil

    from agents.config import load_config
    from agents.runs import RunError, create_run_dir, open_for_resume

    create_run_dir(tmp_path / "r1", load_config(), tmp_path / "logs").release()
    shutil.copytree(tmp_path / "r1", tmp_path / "r1b", ignore=shutil.ignore_patterns("train.lock"))
    with pytest.raises(RunError) as err:
        open_for_resume(tmp_path / "r1b")
    assert "\n" not in str(err.value) and "a copy, or the folder moved" in str(err.value) and "nothing was changed" in str(err.value)
    _, lock = open_for_resume(tmp_path / "r1")  # the original resumes
    lock.release()


def test_existing_run_folder_is_refused(existing_run: Path, capsys):
    code, err = _main(["--run-dir", str(existing_run)], capsys)
    assert code == 2 and err.count("\n") == 1 and "already exists" in err
    assert sorted(p.name for p in existing_run.iterdir()) == ["marker.txt"]


@pytest.mark.parametrize("which", ["empty folder", "missing folder", "with --set"])
def test_resume_of_a_non_run_is_refused(which: str, existing_run: Path, tmp_path: Path, capsys):
    target = {"empty folder": existing_run, "missing folder": tmp_path / "nowhere", "with --set": existing_run}[which]
    extra = ["--set", "seed=3"] if which == "with --set" else []
    code, err = _main(["--resume", str(target), *extra], capsys)
    assert code == 2 and err.count("\n") == 1 and err.startswith("error: "), err
    assert sorted(p.name for p in existing_run.iterdir()) == ["marker.txt"]
    assert not (tmp_path / "nowhere").exists()


def test_bad_input_from_the_real_process(tmp_path: Path):
    proc = run_train("--set", "ppo.nope=1", "--run-dir", str(tmp_path / "run"))
    assert proc.returncode == 2
    assert proc.stderr.strip().count("\n") == 0 and proc.stderr.startswith("error: ")
    assert proc.stdout == "" and not (tmp_path / "run").exists()


# --------------------------------------------------------------------------- config


def test_default_config_is_valid_and_sets_apply():
    from agents.config import DEFAULT_CONFIG, load_config

    base = load_config(DEFAULT_CONFIG)
    assert base.scenario == "global" and base.algo == "ppo"
    cfg = load_config(DEFAULT_CONFIG, ["ppo.policy_kwargs.net_arch=[32, 16]", "overrides.budget.mode=soft", "seed=7"])
    assert cfg.ppo.policy_kwargs.net_arch == [32, 16] and cfg.overrides == {"budget.mode": "soft"} and cfg.seed == 7
    assert cfg.ppo.learning_rate == base.ppo.learning_rate


def test_algorithm_registry_is_pluggable():
    from agents.config import ConfigError, get_algorithm
    from agents.lagrangian import LagrangianAlgorithm, LagrangianParams
    from agents.ppo import PPOAlgorithm

    ppo, lagrangian = get_algorithm("ppo"), get_algorithm("ppo_lagrangian")
    assert type(ppo) is PPOAlgorithm and ppo.params_model is None
    # a plug-in is found by its name, extends the PPO face and brings its own algo_params schema
    assert isinstance(lagrangian, LagrangianAlgorithm) and isinstance(lagrangian, PPOAlgorithm)
    assert lagrangian.name == "ppo_lagrangian" and lagrangian.params_model is LagrangianParams
    with pytest.raises(ConfigError, match="unknown; allowed"):
        get_algorithm("dqn")


def test_a_fresh_policy_starts_at_the_start_policys_action():
    # the default training starts at the uniform playbook, which paces the hard budget, rather
    # than at SB3's mean 0 (intensity 0.5 everywhere, the quarterly cap from quarter one)
    import numpy as np
    from agents.config import DEFAULT_CONFIG, load_config
    from agents.policies import make_policy
    from agents.ppo import ALGORITHM, make_training_env, scenario_of

    config = load_config(DEFAULT_CONFIG, ["n_envs=4"])
    scenario = scenario_of(config)
    env = make_training_env(config, scenario)
    model = ALGORITHM.build_model(config, env, scenario)
    action, _ = model.predict(env.reset(), deterministic=True)  # SB3 clips to [-1, 1]
    expected = make_policy("uniform", scenario).predict(np.zeros(0))[0]
    assert np.allclose(action, expected[None], atol=0.05)
    fresh = ALGORITHM.build_model(load_config(DEFAULT_CONFIG, ["n_envs=4", "start_policy=null"]), env, scenario)
    assert np.allclose(fresh.predict(env.reset(), deterministic=True)[0], 0.0, atol=0.05)
