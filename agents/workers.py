"""Worker processes that never outlive their parent.

:func:`worker_pool` is the one way the project starts a process pool (the oracle's per-episode
search, the frontier's budgets). Its children

* die with the parent even if the parent is killed with ``SIGKILL``: on Linux each worker asks
  the kernel for ``SIGKILL`` when its parent dies (``prctl(PR_SET_PDEATHSIG)``), and exits at
  once if the parent is already gone;
* ignore SIGINT: Ctrl-C reaches the whole terminal's process group, and the parent alone decides
  what to do (its :class:`agents.shutdown.GracefulShutdown`); the workers do not print
  ``KeyboardInterrupt`` tracebacks;
* are terminated (SIGTERM, then SIGKILL after a grace period) and joined when the ``with``
  block ends with an exception (a signal's :class:`~agents.shutdown.Interrupted`, an error in a
  task), so no orphan keeps burning a core.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import multiprocessing
import os
import signal
import sys
import threading
import concurrent.futures.process as cf_process
from concurrent.futures import ProcessPoolExecutor
from typing import Iterator

PR_SET_PDEATHSIG = 1
#: seconds a worker gets to end after SIGTERM before SIGKILL
GRACE_SECONDS = 5.0


def _set_parent_death_signal(signum: int) -> bool:
    """Linux: ask for ``signum`` when the parent dies. ``False`` where the OS has no such call."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        return libc.prctl(PR_SET_PDEATHSIG, signum, 0, 0, 0) == 0
    except (OSError, AttributeError):
        return False


def init_worker(parent_pid: int) -> None:
    """Pool initializer: die with the parent, leave SIGINT to it, default SIGTERM."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)  # a forked child inherits the parent's handler
    signal.pthread_sigmask(signal.SIG_UNBLOCK, SIGNALS)  # and the mask it was started under
    _set_parent_death_signal(signal.SIGKILL)
    os.environ.setdefault("FLYWHEEL_ENV_THREADS", "1")  # the pool's workers already share the cores
    if os.getppid() != parent_pid:  # the parent died before the request took effect
        os._exit(1)


def terminate_pool(pool: ProcessPoolExecutor, grace: float = GRACE_SECONDS) -> None:
    """Stop a pool's workers now: cancel pending tasks, SIGTERM, SIGKILL the stragglers, join."""
    processes = list((getattr(pool, "_processes", None) or {}).values())
    manager = getattr(pool, "_executor_manager_thread", None)
    pool.shutdown(wait=False, cancel_futures=True)  # wakes the manager thread: it winds the pool down
    _forget_exit_wakeup(manager)
    for proc in processes:
        with contextlib.suppress(Exception):
            if proc.is_alive():
                proc.terminate()
    for proc in processes:
        with contextlib.suppress(Exception):
            proc.join(grace)
            if proc.is_alive():
                proc.kill()
                proc.join(grace)
    if manager is not None:
        manager.join(grace)


def _forget_exit_wakeup(manager) -> None:
    """Drop the manager thread from the pipes CPython 3.11 pokes at interpreter exit.

    ``concurrent.futures.process._python_exit`` writes to every manager's wake-up pipe without
    the lock the manager takes to close it; a manager still winding down when the command exits
    (a slow machine, a stopped oracle) then races it, and the exit prints an ``OSError: [Errno 9]
    Bad file descriptor`` traceback after the command's one line. The
    manager has been woken already by ``shutdown``, and the interpreter joins it anyway (it is not
    a daemon thread), so the exit-time wake-up is redundant.
    """
    wakeups = getattr(cf_process, "_threads_wakeups", None)  # private; absent in other versions
    if manager is not None and wakeups is not None:
        with contextlib.suppress(Exception):
            wakeups.pop(manager, None)


@contextlib.contextmanager
def worker_pool(workers: int, start_method: str = "fork") -> Iterator[ProcessPoolExecutor]:
    """A ``ProcessPoolExecutor`` whose workers end with the block, or with the parent.

    :param workers: processes.
    :param start_method: ``"fork"`` (fast; the oracle's numpy-only tasks) or ``"spawn"`` (a
        fresh interpreter; tasks that import torch).
    """
    context = multiprocessing.get_context(start_method)
    pool = None
    try:
        # Start the workers with SIGINT/SIGTERM held back: a handler that raises while os.fork()
        # runs its at-fork hooks would be swallowed ("Exception ignored"), and the stop lost.
        # A signal that came meanwhile is delivered when the mask is restored, below.
        held = _hold_signals()
        try:
            pool = ProcessPoolExecutor(int(workers), mp_context=context, initializer=init_worker, initargs=(os.getpid(),))
            if start_method == "fork":
                pool.submit(int)  # forks every worker now (spawned ones start one by one, without at-fork hooks)
        finally:
            _release_signals(held)
        yield pool
    except BaseException:
        if pool is not None:
            terminate_pool(pool)
        raise
    pool.shutdown(wait=True)


SIGNALS = {signal.SIGINT, signal.SIGTERM}


def _hold_signals():
    if threading.current_thread() is not threading.main_thread():
        return None
    return signal.pthread_sigmask(signal.SIG_BLOCK, SIGNALS)


def _release_signals(previous) -> None:
    if previous is not None:
        signal.pthread_sigmask(signal.SIG_SETMASK, previous)


def live_children(pid: int | None = None) -> list[int]:
    """PIDs of the live children of ``pid`` (default: this process), read from Linux ``/proc``;
    for tests and diagnostics."""
    me = os.getpid() if pid is None else pid
    found = []
    for entry in os.listdir("/proc") if os.path.isdir("/proc") else []:
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == me and fields[0] not in ("Z", "X"):
            found.append(int(entry))
    return found
