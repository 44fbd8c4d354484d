"""Fault injection: locks, signals at any moment, worker pools, damaged checkpoints, full disks.

The units first (agents.locks, agents.shutdown, agents.workers, agents.recovery), then the
commands under real faults. Waits are on real conditions (a line on a pipe, a file appearing,
a process ending), each with a timeout, never a fixed sleep.
"""

from __future__ import annotations

import json
import os
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
                    print(" ".join(map(str, live_children())), flush=True)
                    with shutdown.interruptible("planning"):
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
