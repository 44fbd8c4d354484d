"""Shared fixtures and helpers: the repo root, scripts in subprocesses or through their main, one shared trained run.

Markers: ``slow`` marks a test that trains or runs a whole script pipeline; ``make test-fast``
runs the others (the edit loop), ``make test`` all.
"""

from __future__ import annotations

import contextlib
import importlib.util
import io
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

REPO_ROOT = Path(__file__).resolve().parent.parent
if str(REPO_ROOT) not in sys.path:  # scripts' tests import from the repo root
    sys.path.insert(0, str(REPO_ROOT))

import envs  # noqa: E402  (registers flywheel/SocialCommerce-v1)


def _one_blas_thread() -> list[str]:
    """One OpenBLAS thread in this process (numpy's and scipy's libraries, loaded by now), and in
    the scripts' processes through the environment, as the planners' commands set it for
    themselves (scripts/evaluate.py): their small matrices gain nothing from more threads, and on
    a busy 2-core machine OpenBLAS's spinning threads made the CMA-ES tests many times slower.
    (numpy is imported before this file, by pytest's plugins, so the variable alone is too late.)"""
    import ctypes

    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
    try:
        with open("/proc/self/maps") as maps:  # the shared libraries loaded (Linux, as CI)
            libraries = sorted({line.split()[-1] for line in maps if "openblas" in line.rsplit("/", 1)[-1].lower()})
    except OSError:
        return []
    limited = []
    for path in libraries:
        library = ctypes.CDLL(path)
        for name in ("scipy_openblas_set_num_threads64_", "scipy_openblas_set_num_threads", "openblas_set_num_threads64_", "openblas_set_num_threads"):
            if hasattr(library, name):
                getattr(library, name)(1)
                limited.append(path)
                break
    return limited


_one_blas_thread()

BUILTIN_SCENARIOS: list[str] = envs.builtin_scenarios()


@pytest.fixture(scope="session")
def repo_root() -> Path:
    """The repository root (scripts are run from here, as a user would)."""
    return REPO_ROOT


def random_actions(seed: int, n_steps: int, shape: tuple[int, ...], scale: float = 1.0) -> np.ndarray:
    """``n_steps`` reproducible uniform actions in ``[-scale, scale]`` of the given shape."""
    rng = np.random.default_rng(seed)
    return rng.uniform(-scale, scale, size=(n_steps, *shape)).astype(np.float32)


def flatten_info(info: dict[str, Any]) -> dict[str, np.ndarray]:
    """An ``info`` dict with nested region/lever dicts flattened to ``key/sub`` arrays."""
    flat: dict[str, np.ndarray] = {}
    for key, value in info.items():
        if isinstance(value, dict):
            for sub, v in value.items():
                flat[f"{key}/{sub}"] = np.asarray(v)
        else:
            flat[key] = np.asarray(value)
    return flat


def assert_infos_equal(a: dict[str, Any], b: dict[str, Any], index: int | None = None) -> None:
    """Two ``info`` dicts hold exactly the same keys and values (``b`` row ``index`` if batched;
    a batched ``info``'s ``_key`` masks must be true there)."""
    fa, fb = flatten_info(a), flatten_info(b)
    if index is not None:
        masks = {k for k in fb if k.rsplit("/", 1)[-1].startswith("_")}
        assert all(bool(fb[k][index]) for k in masks), "a _key mask is false for a market that has the entry"
        fb = {k: v for k, v in fb.items() if k not in masks}
    assert fa.keys() == fb.keys()
    for key in fa:
        vb = fb[key] if index is None else fb[key][index]
        np.testing.assert_array_equal(fa[key], vb, err_msg=key)


def script_env() -> dict[str, str]:
    """The environment for running a script in a subprocess, with the repo root importable."""
    env = dict(os.environ)
    env["PYTHONPATH"] = str(REPO_ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    return env


_SCRIPTS: dict[Path, Any] = {}


def script_module(path: str | Path) -> Any:
    """``scripts/NAME.py`` loaded as a module (once per session), to call its ``main(argv)`` here."""
    path = (REPO_ROOT / path).resolve()
    if path not in _SCRIPTS:
        spec = importlib.util.spec_from_file_location(f"{path.stem}_script", path)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        _SCRIPTS[path] = module
    return _SCRIPTS[path]


def run_main(path: str | Path, argv: list[str], cwd: Path = REPO_ROOT) -> subprocess.CompletedProcess:
    """``main(argv)`` of the script at ``path``, called in this process from ``cwd``, as a finished
    process: its status (``main``'s return value or ``SystemExit`` code) and what it printed."""
    main = script_module(path).main
    out, err = io.StringIO(), io.StringIO()
    with contextlib.chdir(cwd), contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code = main(list(argv))
        except SystemExit as exc:  # argparse's errors
            code = exc.code
    return subprocess.CompletedProcess([str(path), *argv], code, out.getvalue(), err.getvalue())


def assert_bad_inputs_exit_2(command: list[str], cases: dict[str, tuple[list[str], str]], out_flag: str, tmp_path: Path) -> None:
    """Run ``command + argv + [out_flag, folder]`` for every bad-input case; each must exit 2 with
    one ``error:`` line containing the expected text and write no output folder.

    ``command`` is ``[python, script, *fixed args]``. The first case runs as a real process (its
    exit status and stderr are the command's); the others call the script's ``main`` in this
    process (while the real one starts), which decides the same status and line without paying
    the interpreter's and the imports' start-up once per case."""
    _, script, *fixed = command
    first, *others = cases
    folder = {case: tmp_path / case.replace(" ", "_") for case in cases}
    real = subprocess.Popen([*command, *cases[first][0], out_flag, str(folder[first])], cwd=REPO_ROOT, env=script_env(),
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    done = {case: run_main(script, [*fixed, *cases[case][0], out_flag, str(folder[case])]) for case in others}  # meanwhile
    _, err = real.communicate(timeout=180)  # a guard against a hang, not a timing
    done[first] = subprocess.CompletedProcess(real.args, real.returncode, None, err)
    for case, proc in done.items():
        err = proc.stderr
        lines = err.strip().splitlines()
        assert proc.returncode == 2, (case, err[-500:])
        assert len(lines) == 1 and lines[0].startswith("error: ") and cases[case][1] in lines[0], (case, err)
        assert not folder[case].exists()


@pytest.fixture
def run_script(capsys):
    """Run ``scripts/NAME.py``'s ``main(argv)`` in this process (no interpreter start-up, the
    compiled kernels already loaded): returns ``(exit status, stdout, stderr)``."""
    import importlib.util

    def run(name: str, argv: list[str]) -> tuple[int, str, str]:
        spec = importlib.util.spec_from_file_location(f"_script_{name}", REPO_ROOT / "scripts" / f"{name}.py")
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        capsys.readouterr()
        code = module.main([str(a) for a in argv])
        captured = capsys.readouterr()
        return code, captured.out, captured.err

    return run


# --------------------------------------------------------------------------- training

TRAIN = REPO_ROOT / "scripts" / "train.py"
#: 16 markets x 16 quarters = 256 env steps per rollout: a few seconds per run
TINY_TRAIN = [
    "--set", "n_envs=16", "--set", "ppo.n_steps=16", "--set", "ppo.batch_size=64", "--set", "ppo.n_epochs=2",
    "--set", "checkpoint_freq=512", "--set", "eval_freq=512", "--set", "eval_episodes=8",
]
#: the shared run: ``scripts/train.py`` with these arguments (and ``--run-dir``)
SHARED_RUN_ARGS = ["--timesteps", "2048", "--seed", "1", *TINY_TRAIN]


def run_train(*args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    """``scripts/train.py ARGS`` in a subprocess from the repo root, output captured."""
    return subprocess.run([sys.executable, str(TRAIN), *args], cwd=REPO_ROOT, env=script_env(), capture_output=True, text=True, timeout=timeout)


@pytest.fixture(scope="session")
def trained_run(tmp_path_factory) -> Path:
    """One small finished PPO run folder (:data:`SHARED_RUN_ARGS`), trained once per session and
    shared by every test that needs a trained run. Read it; copy it before changing anything."""
    run_dir = tmp_path_factory.mktemp("shared_run") / "run"
    proc = run_train(*SHARED_RUN_ARGS, "--run-dir", str(run_dir))
    assert proc.returncode == 0, proc.stderr[-2000:]
    return run_dir
