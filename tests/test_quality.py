"""Time to quality (``scripts/benchmark.py --time-to-quality``, :mod:`agents.quality`): the JSON a
user reads, null when the ratio is never reached, and one-line errors for bad input."""

from __future__ import annotations

import json

import pytest

from agents.config import EVAL_SEED_BASE
from agents.quality import TARGET_RATIO, first_reaching

#: a training of a few thousand steps, evaluated three times on four held-out episodes
TINY_CONFIG = ["--set", "total_timesteps=2048", "--set", "n_envs=16", "--set", "ppo.n_steps=16", "--set", "ppo.batch_size=64",
               "--set", "ppo.n_epochs=1", "--set", "eval_freq=1024", "--set", "eval_episodes=4", "--set", "checkpoint_freq=2048"]
#: an oracle of a few seconds (a handful of CMA-ES generations, no common schedule)
TINY_ORACLE = ["--static-iterations", "2", "--static-seeds", "2", "--schedule-iterations", "0", "0",
               "--oracle-scale-iterations", "2", "--oracle-iterations", "2"]


def evaluation(timesteps: int, seconds: float, ratio: float) -> dict:
    return {"timesteps": timesteps, "train_seconds": seconds, "ratio_to_oracle": ratio}


def test_first_reaching_is_the_first_evaluation_at_or_above_the_target() -> None:
    evaluations = [evaluation(0, 0.0, 0.70), evaluation(1000, 2.5, 0.96), evaluation(2000, 5.0, 0.94), evaluation(3000, 7.5, 0.97)]
    assert first_reaching(evaluations, 0.95) == {"time_to_quality_s": 2.5, "timesteps_to_quality": 1000, "ratio_reached": 0.97}
    assert first_reaching(evaluations, 0.97)["time_to_quality_s"] == 7.5  # reaching the target exactly counts
    assert first_reaching(evaluations, 0.98) == {"time_to_quality_s": None, "timesteps_to_quality": None, "ratio_reached": 0.97}


@pytest.mark.slow
def test_time_to_quality_json_keys_and_null_when_never_reached(run_script, tmp_path) -> None:
    out = tmp_path / "ttq.json"
    # a tenfold target: no policy beats the clairvoyant oracle by that much, so it is never reached
    code, stdout, stderr = run_script("benchmark", ["--time-to-quality", *TINY_CONFIG, *TINY_ORACLE, "--target", "10", "--json", out])
    assert code == 0, stderr
    result = json.loads(stdout)
    assert json.loads(out.read_text()) == result
    for key in ("time_to_quality_s", "timesteps_to_quality", "ratio_reached", "target_ratio", "oracle_objective_mean",
                "oracle_settings", "oracle_seconds", "eval_seeds", "eval_episodes", "total_timesteps", "train_seconds", "evaluations"):
        assert key in result, key
    assert result["time_to_quality_s"] is None and result["timesteps_to_quality"] is None and result["target_ratio"] == 10
    assert result["eval_seeds"] == [EVAL_SEED_BASE, EVAL_SEED_BASE + 3] and result["eval_episodes"] == 4
    assert result["oracle_settings"] == {"static_iterations": 2, "static_seeds": 2, "schedule_iterations": [0, 0],
                                         "oracle_scale_iterations": 2, "oracle_iterations": 2, "workers": 1}
    assert result["oracle_objective_mean"] > 0

    evaluations = result["evaluations"]
    assert evaluations[0]["timesteps"] == 0 and evaluations[-1]["timesteps"] == result["total_timesteps"] == 2048
    assert [e["train_seconds"] for e in evaluations] == sorted(e["train_seconds"] for e in evaluations)
    for e in evaluations:
        assert e["ratio_to_oracle"] == pytest.approx(e["objective_mean"] / result["oracle_objective_mean"])
    assert result["ratio_reached"] == max(e["ratio_to_oracle"] for e in evaluations)
    # the same evaluations against a target they do reach: the first one at or above it
    reachable = first_reaching(evaluations, evaluations[0]["ratio_to_oracle"])
    assert reachable["time_to_quality_s"] == evaluations[0]["train_seconds"] and reachable["timesteps_to_quality"] == 0


@pytest.mark.parametrize("args, expected", [
    (["--target", "0"], "--target must be in (0, 10]"),
    (["--target", "nan"], "--target must be in"),
    (["--oracle-iterations", "-1"], "--oracle-iterations must be in [0,"),
    (["--static-seeds", "0"], "--static-seeds must be in [1,"),
    (["--set", "ppo.n_epochs=0"], "n_epochs"),
    (["--set", "no_such_key=1"], "no_such_key"),
    (["--config", "no/such/config.yaml"], "no/such/config.yaml"),
])
def test_time_to_quality_bad_input_is_one_line_status_2_nothing_written(args, expected, run_script, tmp_path) -> None:
    out = tmp_path / "ttq.json"
    code, stdout, stderr = run_script("benchmark", ["--time-to-quality", *args, "--json", out])
    lines = stderr.strip().splitlines()
    assert code == 2 and len(lines) == 1 and lines[0].startswith("error: ") and expected in lines[0], stderr
    assert stdout == "" and not out.exists()


def test_time_to_quality_options_without_the_flag_are_refused(run_script) -> None:
    code, _, stderr = run_script("benchmark", ["--set", "seed=1", "--target", str(TARGET_RATIO / 2)])
    assert code == 2 and stderr.strip() == "error: --set, --target go only with --time-to-quality"
    code, _, stderr = run_script("benchmark", ["--static-iterations", "3"])  # a planner effort too: it would do nothing
    assert code == 2 and stderr.strip() == "error: --static-iterations goes only with --time-to-quality"
