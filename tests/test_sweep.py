"""Sweeps on Ray Tune: a tiny sweep on local Ray, resuming an interrupted one, one-line errors.

One local Ray (2 CPUs) serves the whole module; the trials are a few thousand env steps each.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "scripts"))

import sweep as sweep_script  # noqa: E402  (scripts/sweep.py)

from agents import runs  # noqa: E402
from agents.constraint_benchmark import run_benchmark  # noqa: E402
from agents.frontier import Effort, compute_frontier, write_frontier  # noqa: E402
from agents.sweep import (  # noqa: E402
    RESULTS_CSV, RESULTS_JSON, SWEEP_FILE, RayInfo, SweepError, SweepInterrupted, SweepResult, _SigtermAsCtrlC, connect, result_rows,
    run_sweep, spec_from_dict, trial_config, write_results,
)

TINY = ROOT / "configs" / "sweeps" / "tiny.yaml"


@pytest.fixture(scope="session")
def ray_local():
    """One local Ray for the test run (2 CPUs, no dashboard)."""
    import ray

    info = connect(None, cpus=2)
    yield info
    ray.shutdown()


def tiny_doc(**changes) -> dict:
    doc = yaml.safe_load(TINY.read_text())
    doc.update(changes)
    return doc


@pytest.mark.slow
def test_a_tiny_sweep_resumes_after_an_interrupt_with_a_row_and_a_run_folder_per_trial(ray_local, tmp_path):
    spec = spec_from_dict(tiny_doc(max_concurrent=1), source=str(TINY), name="tiny")
    out = tmp_path / "tiny"

    def interrupt_after_first(message: str) -> None:
        if message.startswith("trial done (1 of"):
            os.kill(os.getpid(), signal.SIGINT)  # what Ctrl-C does; Ray Tune saves its state and returns

    first = run_sweep(spec, out, log=interrupt_after_first)
    assert first.interrupted
    done = [r for r in first.rows if r["status"] == "finished"]
    assert len(done) == 1
    summary = out / done[0]["run_dir"] / runs.SUMMARY_FILE
    stamp = summary.stat().st_mtime_ns

    with pytest.raises(SweepError, match="already exists"):
        run_sweep(spec, out)
    second = run_sweep(spec, out, resume=True)
    assert not second.interrupted
    assert summary.stat().st_mtime_ns == stamp  # the finished trial was not trained again

    rows = (out / RESULTS_CSV).read_text().splitlines()
    assert len(rows) == 1 + 2  # header + one row per trial
    doc = json.loads((out / RESULTS_JSON).read_text())
    assert sorted(r["seed"] for r in doc["rows"]) == [0, 1]
    for row in doc["rows"]:
        assert row["status"] == "finished"
        run_dir = out / row["run_dir"]
        run_summary = json.loads((run_dir / runs.SUMMARY_FILE).read_text())
        assert run_summary["seed"] == row["seed"] and run_summary["timesteps"] == row["timesteps"] >= 2048
        assert row["eval/gmv_mean"] == pytest.approx(run_summary["eval_gmv_mean"])  # held-out seeds, as train reports
        assert row["eval/ratio_to_best_static"] == pytest.approx(row["eval/gmv_mean"] / row["best_static_gmv"])
        assert row["eval/objective_mean"] == pytest.approx(run_summary["eval_objective_mean"])  # the reward, what PPO maximises
        assert row["eval/objective_ratio_to_best_static"] == pytest.approx(row["eval/objective_mean"] / row["best_static_objective"])
        assert row["best_static_objective"] > row["best_static_gmv"]  # the terminal value counts in the objective
        assert runs.read_run_config(run_dir) == trial_config(spec, {"seed": row["seed"]})  # a normal run folder
    assert doc["best"][spec.metric] == max(r[spec.metric] for r in doc["rows"])
    for name in ("results.png", "report.md", "sweep.yaml"):
        assert (out / name).is_file()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def write_sweep(tmp_path: Path, doc: dict) -> Path:
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(doc))
    return path


BAD_SWEEPS = {
    "unknown axis": ({"axes": {"ppo.learning_rat": {"grid": [1e-4]}}}, "ppo.learning_rat"),
    "empty grid": ({"axes": {"ppo.n_epochs": {"grid": []}}}, "axes.ppo.n_epochs.grid"),
    "unknown metric": ({"metric": "eval/gmv"}, "metric"),
    "value out of range": ({"axes": {"ppo.n_epochs": {"choice": [5, 0]}}}, "ppo.n_epochs"),
    "float range on an integer key": ({"axes": {"n_envs": {"uniform": [8, 17]}}}, "n_envs"),
    "two kinds": ({"axes": {"n_envs": {"grid": [8], "choice": [16]}}}, "exactly one"),
    "optuna with a grid": ({"search": "optuna"}, "optuna"),
    "unknown key": ({"num_trials": 3}, "num_trials"),
}


@pytest.mark.parametrize("case", list(BAD_SWEEPS))
def test_bad_sweep_files_are_one_line_errors(case, tmp_path, capsys):
    changes, needle = BAD_SWEEPS[case]
    path = write_sweep(tmp_path, tiny_doc(**changes))
    code = sweep_script.main(["--config", str(path), "--storage", str(tmp_path / "out")])
    err = capsys.readouterr().err
    assert code == 2
    assert err.startswith("error: ") and err.count("\n") == 1 and needle in err
    assert not (tmp_path / "out").exists()  # nothing written


def test_an_unreachable_address_is_a_one_line_error(tmp_path, capsys):
    port = free_port()  # nothing listens there any more
    code = sweep_script.main(["--config", str(TINY), "--address", f"127.0.0.1:{port}", "--storage", str(tmp_path / "out")])
    err = capsys.readouterr().err
    assert code == 2
    assert err.startswith("error: --address 127.0.0.1:") and err.count("\n") == 1
    assert not (tmp_path / "out").exists()


class _Analysis:
    """What a ResultGrid keeps of the experiment: every trial's config, reported or not."""

    def __init__(self, configs: dict):
        self.configs = configs

    def get_all_configs(self) -> dict:
        return self.configs


class _Grid(list):
    """A ResultGrid stand-in: a list of Ray's own Result objects, and the experiment behind them."""

    def __init__(self, results, configs: dict | None = None):
        super().__init__(results)
        if configs is not None:
            self._experiment_analysis = _Analysis(configs)


@pytest.mark.parametrize("knows_configs", [True, False])
@pytest.mark.parametrize("stopping", [{}, {"max_train_seconds": 60}])
def test_an_interrupt_before_any_trial_reported_is_an_interrupted_sweep_with_a_row_per_trial(knows_configs, stopping, tmp_path):
    """Ctrl-C while the trials still imported or searched their baseline: Ray's Results have no
    metrics beyond the trial id and no config (``Result.config`` is None); the sweep is
    interrupted (resumable), not done, and its results are still written."""
    from ray.tune import Result

    spec = spec_from_dict(tiny_doc(**stopping), source=str(TINY), name="tiny")
    ids = ["fe384_00000", "fe384_00001"]
    results = [Result(metrics={"trial_id": i}, checkpoint=None, error=None, path=str(tmp_path / "tune" / f"run_trial_{i}")) for i in ids]
    assert all(r.config is None for r in results)  # what Ray gives for a trial that never reported
    grid = _Grid(results, {ids[0]: {"seed": 0}, ids[1]: {"seed": 1}} if knows_configs else None)

    rows = result_rows(grid, spec, tmp_path)
    assert [r["trial"] for r in rows] == ids
    assert all(r["status"] == "unfinished" and r["timesteps"] is None and r[spec.metric] is None for r in rows)
    assert [r["seed"] for r in rows] == ([0, 1] if knows_configs else [None, None])
    result = SweepResult(tmp_path, rows, 1.0, RayInfo("local", True, 2.0, 1.0, "2.60.0"), metric=spec.metric, expected=spec.n_trials)
    assert result.interrupted and result.best is None  # scripts/sweep.py: the --resume line, exit 130
    paths = write_results(result, spec)
    assert len(paths["csv"].read_text().splitlines()) == 1 + 2 and paths["report"].is_file()
    assert not paths["png"].exists()  # nothing to plot yet


def test_statuses_tell_finished_from_stopped_early_from_interrupted(tmp_path):
    """What Ray 2.60 leaves, checked with a real ASHA sweep interrupted by SIGINT: a trial ASHA
    stopped has Ray's done=True on its last report (ours said done=False, finished=False); one a
    Ctrl-C interrupted keeps done=False. Only the trial's own final report says finished=True.
    The sweep is then interrupted (its --resume line), not done."""
    from ray.tune import Result

    spec = spec_from_dict(tiny_doc(early_stopping={"grace_steps": 1024, "reduction_factor": 2}), source=str(TINY), name="tiny")
    reports = {"ab123_00000": {"timesteps": 2048, "done": True, "finished": True},
               "ab123_00001": {"timesteps": 1024, "done": True, "finished": False},
               "ab123_00002": {"timesteps": 1024, "done": False, "finished": False},
               "ab123_00003": {"timesteps": 2048, "done": True}}  # a result written before "finished" existed
    results = [Result(metrics={"trial_id": i, spec.metric: 0.9, **m}, checkpoint=None, error=None,
                      path=str(tmp_path / "tune" / f"run_trial_{i}")) for i, m in reports.items()]
    rows = result_rows(_Grid(results, {i: {"seed": k} for k, i in enumerate(reports)}), spec, tmp_path)
    assert [r["status"] for r in rows] == ["finished", "stopped early", "unfinished", "finished"]
    assert rows[2]["timesteps"] == 1024  # the interrupted trial's last report is kept
    result = SweepResult(tmp_path, rows, 1.0, RayInfo("local", True, 2.0, 1.0, "2.60.0"), metric=spec.metric, expected=4)
    assert result.interrupted
    done = SweepResult(tmp_path, rows[:2], 1.0, RayInfo("local", True, 2.0, 1.0, "2.60.0"), metric=spec.metric, expected=2)
    assert not done.interrupted  # stopped early is an end


def test_a_storage_that_is_a_file_or_has_no_parent_is_refused_before_ray_starts(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(sweep_script, "run_sweep", lambda *a, **k: pytest.fail("Ray was started"))
    afile = tmp_path / "afile"
    afile.write_text("mine\n")
    for storage, needle in [(afile, f"{afile} is not a folder"), (afile / "x", f"{afile} is not a folder"),
                            (tmp_path / "nope" / "deeper", f"folder {tmp_path / 'nope'} does not exist; create it first")]:
        code = sweep_script.main(["--config", str(TINY), "--storage", str(storage)])
        err = capsys.readouterr().err
        assert code == 2
        assert err == f"error: --storage {storage}: {needle}\n"
    assert afile.read_text() == "mine\n" and sorted(p.name for p in tmp_path.iterdir()) == ["afile"]  # nothing written


def test_sigterm_does_what_ctrl_c_does_while_a_sweep_runs():
    """In Tuner.fit (Ray Tune's SIGINT handler installed) SIGTERM calls it: Tune saves and returns;
    elsewhere (Ray starting) it raises at once. Without this Ray's driver aborts (exit 134)."""
    calls = []
    before = signal.getsignal(signal.SIGTERM)
    previous_int = signal.signal(signal.SIGINT, lambda signum, frame: calls.append(signum))  # stands for Ray Tune's
    try:
        with _SigtermAsCtrlC() as guard:
            os.kill(os.getpid(), signal.SIGTERM)
            assert calls == [signal.SIGINT] and guard.signum == signal.SIGTERM
            signal.signal(signal.SIGINT, signal.default_int_handler)  # outside fit
            with pytest.raises(SweepInterrupted) as stopped:
                os.kill(os.getpid(), signal.SIGTERM)
            assert stopped.value.signum == signal.SIGTERM
    finally:
        signal.signal(signal.SIGINT, previous_int)
    assert signal.getsignal(signal.SIGTERM) == before


@pytest.mark.parametrize("started", [False, True])
def test_a_signal_while_ray_starts_is_one_line_with_the_command_that_continues(started, tmp_path, capsys, monkeypatch):
    def stopped_while_ray_starts(spec, sweep_dir, **kwargs):
        if started:
            sweep_dir.mkdir()
            (sweep_dir / SWEEP_FILE).write_text("{}\n")
        raise SweepInterrupted(signal.SIGTERM)

    monkeypatch.setattr(sweep_script, "run_sweep", stopped_while_ray_starts)
    code = sweep_script.main(["--config", str(TINY), "--storage", str(tmp_path)])
    out = capsys.readouterr()
    assert code == 143 and out.err == "" and out.out.count("\n") == 1
    command = f"python scripts/sweep.py --config {TINY}" + (" --resume" if started else "") + f" --storage {tmp_path}\n"
    assert out.out.startswith("interrupted (SIGTERM): ") and out.out.endswith(command)


def test_budgets_and_variants_become_trial_configs():
    spec = spec_from_dict(tiny_doc(seeds=None, budgets=[1, 8], variants={"hard": {}, "soft": {"set": {"overrides.budget.mode": "soft"}}}))
    assert spec.n_trials == 4
    config = trial_config(spec, {"budget": 8.0, "variant": "soft"})
    assert config.overrides["budget.total"] == 8.0 and config.overrides["budget.mode"] == "soft"
    assert config.overrides["budget.per_quarter"] == pytest.approx(8.0 * 0.2)  # global: per-quarter cap 0.2 of the total
    assert config.total_timesteps == 2048  # the sweep's fixed sets apply to every variant


@pytest.mark.slow
def test_the_frontier_trains_its_ppo_runs_through_the_sweep_layer(ray_local, tmp_path):
    effort = Effort(episodes=2, static_iterations=2, static_seeds=4, schedule_seeds=2, schedule_iterations=(0, 0), refine_iterations=2, scale_iterations=2)
    result = compute_frontier("global", [2.0, 4.0], effort=effort, workers=1, train=True, timesteps=1536, runs_dir=tmp_path / "ppo")
    paths = write_frontier(result, tmp_path / "fr")
    assert all(p.is_file() for p in paths.values())
    sweep_rows = json.loads((tmp_path / "ppo" / RESULTS_JSON).read_text())["rows"]
    assert sorted(r["variant"] for r in sweep_rows) == ["budget_2", "budget_4"]
    for row in result["rows"]:
        run = runs.read_run_config(Path(row["ppo_run_dir"]))
        assert run.overrides["budget.total"] == row["budget_total"] and run.overrides["budget.mode"] == "hard"
        assert row["ppo_cost"] <= row["budget_total"] * (1 + 1e-9)  # hard mode: the env enforces the budget


@pytest.mark.slow
def test_the_constraint_benchmark_trains_through_the_sweep_layer(ray_local, tmp_path):
    result = run_benchmark(tmp_path / "cb", variants=["ppo_hard", "ppo_soft"], seeds=[0], timesteps=1536, episodes=4, log=lambda m: None)
    assert set(result["variants"]) == {"ppo_hard", "ppo_soft"}
    assert (tmp_path / "cb" / "constraint_benchmark.md").is_file()
    soft = runs.read_run_config(Path(result["per_seed"]["ppo_soft"][0]["run_dir"]))
    assert soft.overrides["budget.mode"] == "soft" and soft.total_timesteps == 1536
    assert len(json.loads((tmp_path / "cb" / "sweep" / RESULTS_JSON).read_text())["rows"]) == 2  # one sweep, a row per run


def test_trial_folders_are_named_by_index_or_by_a_searchers_id():
    from agents.sweep import _trial_prefix, trial_label

    assert _trial_prefix("f63ec_00003") == "0003"  # grid and random trials
    assert _trial_prefix("3698f253") == "3698f253"  # Optuna's trials have random ids
    assert trial_label({"ppo.learning_rate": 0.000638, "ppo.policy_kwargs.net_arch": [64, 64]}) == "learning_rate=0.000638__net_arch=64x64"
