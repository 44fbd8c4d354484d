"""Fault injection: locks, signals at any moment, worker pools, damaged checkpoints, full disks.

The units first (agents.locks, agents.shutdown, agents.workers, agents.recovery), then the
commands under real faults. Waits are on real conditions (a line on a pipe, a file appearing,
a process ending), each with a timeout, never a fixed sleep.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import subprocess
import sys
import textwrap
import time
import zipfile
from pathlib import Path

import pytest

from agents import recovery
from agents.locks import RunLock, RunLockedError, is_locked
from agents.shutdown import GracefulShutdown, Interrupted
from agents.workers import live_children, worker_pool

from conftest import REPO_ROOT, script_env


def wait_for(condition, timeout: float = 60.0, what: str = "condition"):
    """Poll ``condition()`` until it is truthy; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:g}s waiting for {what}")
        time.sleep(0.02)


def pid_alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] not in ("Z", "X")
    except OSError:
        return False


def python(code: str, **kwargs) -> subprocess.Popen:
    """A Python child running ``code`` from the repo root, stdout a pipe of lines."""
    return subprocess.Popen([sys.executable, "-c", textwrap.dedent(code)], cwd=REPO_ROOT, env=script_env(),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **kwargs)


def read_line(proc: subprocess.Popen) -> str:
    line = proc.stdout.readline()
    assert line, f"child ended early: rc={proc.wait()}, stderr={proc.stderr.read()[-2000:]}"
    return line.strip()


# --------------------------------------------------------------------------- run-folder lock


def test_a_locked_run_folder_names_its_holder_and_frees_on_sigkill(tmp_path) -> None:
    holder = python(f"""
        import sys
        from agents.locks import RunLock
        lock = RunLock({str(tmp_path)!r}).acquire()
        print("locked", flush=True)
        sys.stdin.readline()
    """, stdin=subprocess.PIPE)
    try:
        assert read_line(holder) == "locked"
        assert is_locked(tmp_path)
        with pytest.raises(RunLockedError, match=rf"in use by a running trainer \(PID {holder.pid}\)"):
            RunLock(tmp_path).acquire()
        holder.kill()  # SIGKILL: no cleanup runs, the kernel drops the lock
        holder.wait(timeout=30)
    finally:
        holder.kill()
        holder.communicate()
    with RunLock(tmp_path) as lock:
        assert lock.held and (tmp_path / "train.lock").read_text().strip() == str(os.getpid())
    assert not is_locked(tmp_path)


def test_the_lock_follows_a_renamed_folder(tmp_path) -> None:
    made = tmp_path / ".run.tmp"
    made.mkdir()
    lock = RunLock(made).acquire()
    os.rename(made, tmp_path / "run")
    lock.moved_to(tmp_path / "run")
    try:
        with pytest.raises(RunLockedError):
            RunLock(tmp_path / "run").acquire()
    finally:
        lock.release()
    RunLock(tmp_path / "run").acquire().release()


# --------------------------------------------------------------------------- graceful shutdown


def send(sig: int) -> None:
    """Deliver ``sig`` to this process and let Python run its handler."""
    os.kill(os.getpid(), sig)
    for _ in range(1000):  # the handler runs between bytecodes, right after the call returns
        pass


def test_first_signal_outside_a_loop_raises_at_once() -> None:
    with GracefulShutdown(phase="setup") as shutdown:
        with pytest.raises(Interrupted) as info:
            send(signal.SIGTERM)
    assert info.value.signum == signal.SIGTERM and info.value.phase == "setup" and info.value.exit_code == 143
    assert shutdown.requested


def test_a_loop_stops_by_itself_and_a_save_waits_for_its_end(capsys) -> None:
    steps, saved = 0, []
    with GracefulShutdown() as shutdown:
        with pytest.raises(Interrupted) as info:
            with shutdown.cooperative("training"):
                while not shutdown.requested:
                    steps += 1
                    if steps == 5:
                        send(signal.SIGINT)
                with shutdown.critical("checkpoint"):
                    send(signal.SIGINT)  # a second signal during the save: it waits
                    saved.append(steps)
    assert steps == 5 and saved == [5]
    assert info.value.signum == signal.SIGINT and info.value.phase == "training" and not info.value.forced
    assert "a third signal exits without waiting" in capsys.readouterr().err


def test_a_third_signal_exits_without_waiting() -> None:
    saved = []
    with GracefulShutdown() as shutdown:
        with pytest.raises(Interrupted) as info:
            with shutdown.cooperative("training"):
                send(signal.SIGTERM)
                with shutdown.critical("checkpoint"):
                    send(signal.SIGTERM)
                    send(signal.SIGTERM)
                    saved.append("never")
    assert info.value.forced and saved == []


def test_handlers_are_restored() -> None:
    before = signal.getsignal(signal.SIGTERM)
    with GracefulShutdown():
        assert signal.getsignal(signal.SIGTERM) is not before
    assert signal.getsignal(signal.SIGTERM) is before


# --------------------------------------------------------------------------- worker pools


def _sleep_task(seconds: float) -> int:
    time.sleep(seconds)
    return os.getpid()


def _failing_task(_: int) -> None:
    raise ValueError("a task failed")


def test_pool_workers_end_with_an_error_in_the_block() -> None:
    with pytest.raises(ValueError):
        with worker_pool(2) as pool:
            slow = pool.submit(_sleep_task, 60)
            pool.submit(_failing_task, 0).result()
    assert live_children() == [] and slow.done()


@pytest.mark.parametrize("how", ["SIGTERM", "SIGKILL"])
def test_pool_workers_die_with_their_parent(how) -> None:
    parent = python("""
        import os, time
        from agents.shutdown import GracefulShutdown, Interrupted
        from agents.workers import live_children, worker_pool

        def _sleep_task(seconds):
            time.sleep(seconds)

        with GracefulShutdown() as shutdown:
            try:
                with worker_pool(2) as pool:
                    futures = [pool.submit(_sleep_task, 600) for _ in range(2)]
                    while len(live_children()) < 2:
                        time.sleep(0.01)
                    with shutdown.interruptible("planning"):
                        # announced inside the interruptible phase, so the signal cannot land before it
                        print(" ".join(map(str, live_children())), flush=True)
                        futures[0].result()
            except Interrupted as exc:
                print(f"error: {exc}", flush=True)
                raise SystemExit(exc.exit_code)
    """)
    children = [int(p) for p in read_line(parent).split()]
    assert len(children) == 2 and all(pid_alive(p) for p in children)
    parent.send_signal(getattr(signal, how))
    rc = parent.wait(timeout=60)
    wait_for(lambda: not any(pid_alive(p) for p in children), timeout=30, what="the workers to end")
    out, err = parent.communicate()
    if how == "SIGTERM":
        assert rc == 143 and "error: SIGTERM during planning" in out and "Traceback" not in err, err
    else:
        assert rc == -signal.SIGKILL


# --------------------------------------------------------------------------- checkpoints


def fake_checkpoint(folder: Path, steps: int, ok: bool = True) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(folder / f"model_{steps}.zip", "w") as z:
        z.writestr("data", "{}")
        z.writestr("policy.pth", b"weights")
    (folder / f"vecnormalize_{steps}.pkl").write_bytes(b"stats")
    if not ok:
        data = (folder / f"model_{steps}.zip").read_bytes()
        (folder / f"model_{steps}.zip").write_bytes(data[: len(data) // 2])


def test_resume_falls_back_to_the_newest_checkpoint_that_loads(tmp_path) -> None:
    ckpt = tmp_path / "checkpoints"
    fake_checkpoint(ckpt, 100)
    fake_checkpoint(ckpt, 200)
    fake_checkpoint(ckpt, 300, ok=False)  # truncated
    fake_checkpoint(ckpt, 400)
    (ckpt / "model_400.zip").write_bytes(b"")  # zero bytes
    fake_checkpoint(ckpt, 500)
    (ckpt / "vecnormalize_500.pkl").unlink()  # incomplete: not a checkpoint at all
    (ckpt / "latest.json").write_text('{"timesteps": 4')  # malformed
    assert recovery.read_latest(ckpt) == (None, "latest.json is not valid JSON")
    found = recovery.find_checkpoints(ckpt)
    assert [c.timesteps for c in found] == [400, 300, 200, 100]

    def load(c):
        if c.timesteps == 200:
            raise ValueError("observation space mismatch")
        return f"model at {c.timesteps}"

    got = recovery.load_newest(found, load)
    assert got.checkpoint.timesteps == 100 and got.loaded == "model at 100"
    lines = recovery.describe_skipped(got.skipped)
    assert lines[0] == "skipped checkpoint at step 400: model_400.zip is empty (0 bytes)"
    assert "step 300: model_300.zip is truncated" in lines[1] and "step 200: does not load (ValueError" in lines[2]
    assert recovery.load_newest(found[:1], load).checkpoint is None


def test_tensorboard_after_a_resume_is_one_curve(tmp_path) -> None:
    from torch.utils.tensorboard import SummaryWriter

    tb = tmp_path / "tb"
    first = SummaryWriter(str(tb))
    for step in range(0, 1100, 100):
        first.add_scalar("market/gmv_episode", step / 100, step)
    first.add_text("config", "algo: ppo", 0)
    first.close()
    with open(next(tb.glob("events.*")), "ab") as f:
        f.write(b"\x10\x00\x00")  # a record cut short by a kill
    result = recovery.truncate_events(tb, after_step=500)
    assert result == {"dropped": 5, "files": 1}
    second = SummaryWriter(str(tb))
    for step in range(600, 1100, 100):
        second.add_scalar("market/gmv_episode", step / 100, step)
    second.close()
    steps = recovery.scalar_steps(tb)["market/gmv_episode"]
    assert steps == list(range(0, 1100, 100))
    assert recovery.has_tag(tb, "config") and recovery.truncate_events(tb, 10_000) == {"dropped": 0, "files": 0}


# =========================================================================== the trainer under faults
#
# Tiny trainings: 16 markets x 16 quarters = 256 env steps a rollout, a checkpoint every 512,
# 2048 steps in all. The phases are hit exactly, not by timing: a signal sent from inside the
# writer's fault hook arrives while that file is being saved (agents.io.fault_hook), one sent
# from the env builder arrives during setup; the rollout and SIGKILL cases send real signals
# from outside once a checkpoint file has appeared.

TRAIN_SCRIPT = REPO_ROOT / "scripts" / "train.py"
TOTAL = 2048
TINY = [
    "--timesteps", str(TOTAL), "--seed", "3",
    "--set", "n_envs=16", "--set", "ppo.n_steps=16", "--set", "ppo.batch_size=64", "--set", "ppo.n_epochs=2",
    "--set", "checkpoint_freq=512", "--set", "eval_freq=100000", "--set", "eval_episodes=4", "--progress", "none",
]


def _train_module():
    import importlib.util

    spec = importlib.util.spec_from_file_location("train_script", TRAIN_SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def train_in_process(argv: list[str], capsys) -> tuple[int, str, str]:
    """Run ``scripts/train.py``'s ``main`` here (its signal handling is the real one)."""
    try:
        code = _train_module().main(argv)
    except SystemExit as exc:
        code = exc.code
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def train_process(*argv: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, str(TRAIN_SCRIPT), *argv], cwd=REPO_ROOT, env=script_env(),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def signal_on_write(name: str, sig: int, times: int = 1):
    """A fault hook that sends ``sig`` to this process ``times`` times while ``name`` is being saved."""
    fired = []

    def hook(path: Path) -> None:
        if path.name == name and not fired:
            fired.append(path)
            for _ in range(times):
                send(sig)

    return hook


def user_files(tmp_path: Path, run_dir: Path | None = None) -> list[Path]:
    """Files a user keeps beside and inside a run folder; none may change."""
    notes = tmp_path / "notes.md"
    notes.write_text("my notes on these runs\n")
    made = [notes]
    if run_dir is not None and run_dir.is_dir():
        mine = run_dir / "my_analysis.txt"
        mine.write_text("the user's own file inside the run folder\n")
        made.append(mine)
    return made


def assert_unchanged(files: dict[Path, bytes]) -> None:
    for path, data in files.items():
        assert path.read_bytes() == data, f"{path} changed"


def assert_finished_with_one_curve(run_dir: Path, total: int = TOTAL) -> None:
    summary = json.loads((run_dir / "summary.json").read_text())
    assert total <= summary["timesteps"] < total + 256
    steps = recovery.scalar_steps(run_dir / "tb")
    assert "market/gmv_episode" in steps and "eval/gmv_mean" in steps
    for tag, seen in steps.items():
        # one curve: steps only go forward over the event files in order (a resume that replays
        # steps would go back); train/ values of the last update share the final step
        assert seen == sorted(seen) and len(set(seen[:-1])) == len(seen) - 1, f"{tag}: steps {seen} go back (two curves)"
    assert max(steps["market/gmv_episode"]) >= total - 256
    assert recovery.has_tag(run_dir / "tb", "config")


def resume_in_process(run_dir: Path, capsys) -> tuple[int, str, str]:
    return train_in_process(["--resume", str(run_dir)], capsys)


def setup_signal(monkeypatch, sig: int) -> None:
    """Send ``sig`` while the trainer builds its env (after the run folder exists)."""
    from agents import ppo

    build = ppo.make_training_env

    def build_then_signal(*args, **kwargs):
        send(sig)
        return build(*args, **kwargs)

    monkeypatch.setattr(ppo, "make_training_env", build_then_signal)


@pytest.mark.slow
@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
@pytest.mark.parametrize("phase", ["setup", "checkpoint", "final evaluation"])
def test_a_signal_in_any_phase_saves_the_state_says_one_line_and_resumes(phase, sig, tmp_path, capsys, monkeypatch) -> None:
    from agents import io

    run = tmp_path / "run"
    before = {p: p.read_bytes() for p in user_files(tmp_path)}
    hook = contextlib.nullcontext()
    if phase == "setup":
        setup_signal(monkeypatch, sig)
    elif phase == "checkpoint":  # two signals mid-save: the save completes, then training stops
        hook = io.fault_hook(signal_on_write("model_512.zip", sig, times=2))
    else:  # signals while the final model is saved: it is kept, the final evaluation is cut
        hook = io.fault_hook(signal_on_write("model.zip", sig))
    with hook:
        code, out, err = train_in_process([*TINY, "--run-dir", str(run)], capsys)
    name = signal.Signals(sig).name
    assert code == 128 + sig, (out, err)
    said = [line for line in out.splitlines() if line.startswith(name)]
    assert len(said) == 1 and f"--resume {run}" in said[0], (out, err)
    if phase == "checkpoint":  # the second signal's notice, and nothing else
        assert err.splitlines() == [f"{name} again: already stopping (checkpoint), saving what is done; a third signal exits without waiting"]
    else:
        assert err == "", err
    if phase == "checkpoint":
        assert json.loads((run / "checkpoints" / "latest.json").read_text())["timesteps"] >= 512
    if phase == "setup":
        assert (run / "config.yaml").is_file() and not list((run / "checkpoints").glob("model_*.zip"))
    if phase == "final evaluation":
        assert (run / "model.zip").is_file() and not (run / "summary.json").exists()
    mine = run / "my_analysis.txt"
    mine.write_text("written by the user between the runs\n")
    before[mine] = mine.read_bytes()

    monkeypatch.undo()
    code, out, err = resume_in_process(run, capsys)
    assert code == 0, (out, err)
    assert_finished_with_one_curve(run)
    assert_unchanged(before)


@pytest.mark.slow
def test_signals_from_outside_during_the_rollouts_then_resume(tmp_path, capsys) -> None:
    total = 4096
    argv = [*TINY, "--timesteps", str(total)]
    runs = {sig: tmp_path / f"run_{signal.Signals(sig).name}" for sig in (signal.SIGINT, signal.SIGTERM)}
    before = {p: p.read_bytes() for p in user_files(tmp_path)}
    procs = {sig: train_process(*argv, "--run-dir", str(run)) for sig, run in runs.items()}
    waiting = dict(procs)

    def signal_each_at_its_first_checkpoint() -> bool:
        # one loop for both: each process is signalled as soon as its own first checkpoint
        # exists, not after the other's (a fast one could otherwise finish before its turn)
        for sig, proc in list(waiting.items()):
            if (runs[sig] / "checkpoints" / "latest.json").exists() or proc.poll() is not None:
                proc.send_signal(sig)
                del waiting[sig]
        return not waiting

    wait_for(signal_each_at_its_first_checkpoint, what="the first checkpoints")
    for sig, proc in procs.items():
        out, err = proc.communicate(timeout=120)
        name = signal.Signals(sig).name
        assert proc.returncode == 128 + sig, (proc.returncode, out[-2000:], err[-2000:])
        said = [line for line in out.splitlines() if line.startswith(name)]
        assert len(said) == 1 and "--resume" in said[0] and err.strip() == "", (out, err)
    stopped_at = {}
    for sig, run in runs.items():
        stopped_at[sig] = json.loads((run / "checkpoints" / "latest.json").read_text())["timesteps"]
        assert 0 < stopped_at[sig] < total
        assert not (run / "model.zip").exists() and not (run / "summary.json").exists()
    for sig, run in runs.items():
        code, out, err = resume_in_process(run, capsys)
        assert code == 0, (out, err)
        assert_finished_with_one_curve(run, total)
        summary = json.loads((run / "summary.json").read_text())
        from stable_baselines3 import PPO

        assert PPO.load(run / "model.zip", device="cpu").num_timesteps == summary["timesteps"]
        assert min(recovery.scalar_steps(run / "tb")["market/gmv_episode"]) < stopped_at[sig]  # the curve began before the stop
        assert len(list((run / "tb").glob("events.out.tfevents*"))) >= 2, "the resume writes into the same TensorBoard folder"
    code, out, err = resume_in_process(runs[signal.SIGTERM], capsys)  # a finished run is not trained again
    assert code == 2 and "already finished" in err, (out, err)
    assert_unchanged(before)


@pytest.mark.slow
def test_sigkill_at_any_moment_then_resume(tmp_path, capsys) -> None:
    early, late = tmp_path / "killed_in_setup", tmp_path / "killed_after_checkpoints"
    before = {p: p.read_bytes() for p in user_files(tmp_path)}
    procs = {early: train_process(*TINY, "--run-dir", str(early)), late: train_process(*TINY, "--run-dir", str(late))}
    # the folder appears whole (config.yaml with it) before torch is even imported
    wait_for(lambda: (early / "config.yaml").exists() or procs[early].poll() is not None, what="the run folder")
    procs[early].kill()

    def two_checkpoints() -> bool:
        doc, _ = recovery.read_latest(late / "checkpoints")
        return (doc is not None and doc["timesteps"] >= 1024) or procs[late].poll() is not None

    wait_for(two_checkpoints, what="two checkpoints")
    procs[late].kill()
    for proc in procs.values():
        proc.communicate(timeout=60)
        assert proc.returncode == -signal.SIGKILL
    assert not list((early / "checkpoints").glob("model_*.zip"))
    said = {}
    for run in (early, late):
        code, out, err = resume_in_process(run, capsys)
        assert code == 0, (out, err)
        assert_finished_with_one_curve(run)
        said[run] = out
    assert "from step 0 " in said[early], said[early]
    assert int(re.search(r"from step (\d+)", said[late]).group(1)) >= 1024, said[late]
    assert_unchanged(before)


@pytest.mark.slow
@pytest.mark.parametrize("damage", ["truncated, zero bytes, bad latest.json", "deleted"])
def test_a_damaged_checkpoint_falls_back_to_the_newest_that_loads(damage, tmp_path, capsys) -> None:
    from agents import io

    run = tmp_path / "run"
    argv = [*TINY, "--set", "checkpoint_freq=256", "--run-dir", str(run)]
    with io.fault_hook(signal_on_write("model_1024.zip", signal.SIGTERM)):
        code, out, err = train_in_process(argv, capsys)
    assert code == 143, (out, err)
    ckpt = run / "checkpoints"
    newest = recovery.find_checkpoints(ckpt)
    assert [c.timesteps for c in newest[:2]] == [1040, 1024]
    if damage == "deleted":
        newest[0].model_path.unlink()  # latest.json still names it
        expect_skipped, expect_from = [], 1024
    else:
        data = newest[0].model_path.read_bytes()
        newest[0].model_path.write_bytes(data[: len(data) // 3])
        newest[1].model_path.write_bytes(b"")
        (ckpt / "latest.json").write_text('{"timesteps": 10')
        expect_skipped, expect_from = [1040, 1024], 768
    before = {p: p.read_bytes() for p in user_files(tmp_path, run)}
    code, out, err = resume_in_process(run, capsys)
    assert code == 0, (out, err)
    for steps in expect_skipped:
        assert re.search(rf"skipped checkpoint at step {steps}: model_{steps}.zip is (truncated|empty)", out), out
    if damage == "deleted":
        assert "latest.json names model_1040.zip, which is missing" in out, out
    assert f"from step {expect_from} " in out, out
    assert_finished_with_one_curve(run)
    assert_unchanged(before)


@pytest.mark.slow
def test_a_second_trainer_or_resume_is_refused_while_one_runs(tmp_path, capsys) -> None:
    run = tmp_path / "run"
    first = train_process(*TINY, "--run-dir", str(run))
    try:
        wait_for(lambda: is_locked(run) or first.poll() is not None, what="the first trainer's lock")
        assert first.poll() is None, first.communicate()
        code, out, err = resume_in_process(run, capsys)
        assert code == 2 and err.count("\n") == 1 and f"in use by a running trainer (PID {first.pid})" in err, err
        code, out, err = train_in_process([*TINY, "--run-dir", str(run)], capsys)
        assert code == 2 and "already exists" in err and err.count("\n") == 1, err
    finally:
        out, err = first.communicate(timeout=300)
    assert first.returncode == 0, err[-2000:]
    assert_finished_with_one_curve(run)


@contextlib.contextmanager
def full_disk_at(tmp_path: Path, after_file: str):
    """Make the disk full once ``after_file`` has been saved: a real tmpfs that fills up when
    the machine allows mounting one (root), else the writer's ENOSPC fault hook from then on.

    Yields ``(folder, free)``: the folder on the small disk, and ``free()`` to make room again."""
    from agents import io

    mount = tmp_path / "disk"
    mount.mkdir()
    mounted = os.geteuid() == 0 and subprocess.run(["mount", "-t", "tmpfs", "-o", "size=16m", "tmpfs", str(mount)],
                                                   capture_output=True).returncode == 0
    state = ["armed"]

    def hook(path: Path) -> None:
        if state[0] == "full" and not mounted:
            io.disk_full(path)
        if state[0] == "armed" and path.name == "latest.json" and (path.parent / after_file).exists():
            state[0] = "full"
            if mounted:
                with contextlib.suppress(OSError), open(mount / "filler", "wb", buffering=0) as f:
                    while True:
                        f.write(b"\0" * 65536)

    def free() -> None:
        state[0] = "freed"
        with contextlib.suppress(FileNotFoundError):
            (mount / "filler").unlink()

    try:
        with io.fault_hook(hook):
            yield mount, free
    finally:
        if mounted:
            subprocess.run(["umount", "-l", str(mount)], check=False)


@pytest.mark.slow
# TensorBoard's writer thread meets the full disk too: its traceback must not follow the one line
@pytest.mark.filterwarnings("error::pytest.PytestUnhandledThreadExceptionWarning")
def test_a_full_disk_during_a_checkpoint_is_one_line_and_keeps_the_previous(tmp_path, capsys) -> None:
    from agents import io

    with full_disk_at(tmp_path, "model_512.zip") as (disk, free):
        run = disk / "run"
        code, out, err = train_in_process([*TINY, "--run-dir", str(run)], capsys)
        assert code == 1, (out, err)
        lines = err.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("error: cannot write") and "No space left on device" in lines[0], err
        assert "checkpoint at step 512 is intact" in lines[0] and f"--resume {run}" in lines[0]
        doc, _ = recovery.read_latest(run / "checkpoints")
        assert doc["timesteps"] == 512 and recovery.check_model_file(run / "checkpoints" / "model_512.zip") is None
        assert io.stale_temporaries(run / "checkpoints") == []
        free()
        code, out, err = resume_in_process(run, capsys)
        assert code == 0, (out, err)
        assert_finished_with_one_curve(run)


@pytest.mark.slow
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_evaluate_stopped_during_the_oracle_leaves_no_worker_and_no_output(sig, tmp_path) -> None:
    out = tmp_path / "eval"
    proc = subprocess.Popen(
        [sys.executable, str(REPO_ROOT / "scripts" / "evaluate.py"), "--scenario", "global", "--episodes", "6", "--workers", "2",
         "--static-iterations", "1", "--static-seeds", "2", "--schedule-iterations", "1", "1", "--oracle-scale-iterations", "1",
         "--oracle-iterations", "5000", "--out", str(out)],
        cwd=REPO_ROOT, env=script_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        workers = wait_for(lambda: live_children(proc.pid) or proc.poll() is not None, timeout=180, what="the oracle's workers")
        assert proc.poll() is None, proc.communicate()
        proc.send_signal(sig)
        _, err = proc.communicate(timeout=60)
    finally:
        proc.kill()
    wait_for(lambda: not any(pid_alive(p) for p in workers), timeout=30, what="the workers to end")
    name = signal.Signals(sig).name
    assert proc.returncode == 128 + sig and err.strip().splitlines() == [f"{name}: evaluation stopped; nothing was written"], err
    assert not out.exists() and list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("sig, code", [("SIGINT", 130), ("SIGTERM", 143)])
def test_a_signal_while_a_script_loads_its_modules_is_one_line(sig: str, code: int) -> None:
    """Every script loads its modules inside agents.shutdown.starting(): a signal there (the first
    second or two) prints one line instead of Python's traceback, and exits 128 + the signal."""
    program = ("import os, signal, time\n"
               "from agents.shutdown import starting\n"
               "with starting():\n"
               f"    os.kill(os.getpid(), signal.{sig})\n"
               "    time.sleep(5)\n"
               "print('not reached')\n")
    done = subprocess.run([sys.executable, "-c", program], cwd=REPO_ROOT, capture_output=True, text=True, timeout=60,
                          env={**os.environ, "PYTHONPATH": str(REPO_ROOT)})
    assert done.returncode == code and done.stdout == ""
    assert done.stderr == f"interrupted ({sig}) while starting: nothing was written\n"
    for script in sorted((REPO_ROOT / "scripts").glob("*.py")):  # and every script does load them so
        text = script.read_text()
        if "def main" in text:
            assert "with starting():" in text, script.name
