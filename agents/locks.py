"""One trainer per run folder: an OS-level lock held for the trainer's whole life.

:class:`RunLock` takes ``fcntl.flock(LOCK_EX | LOCK_NB)`` on ``RUN/train.lock`` and writes its
PID into the file. The kernel releases the lock when the process ends, however it ends (also
``SIGKILL`` or a crash), so a stale lock file never blocks a resume: the lock is the ``flock``,
not the file's existence. A second trainer, or ``--resume`` while the first still runs, gets
:class:`RunLockedError` naming the holder's PID.

POSIX only: where ``fcntl`` is missing (Windows) the lock is a no-op and concurrent trainers
are not detected.
"""

from __future__ import annotations

import os
from pathlib import Path

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None  # type: ignore[assignment]

from agents.io import file_mode

LOCK_FILE = "train.lock"


class RunLockedError(RuntimeError):
    """The run folder is held by another live trainer. One line, naming its PID."""


def read_holder(run_dir: str | Path) -> int | None:
    """The PID written in the lock file (the holder's, if the folder is locked now)."""
    try:
        text = (Path(run_dir) / LOCK_FILE).read_text().strip()
        return int(text.split()[0]) if text else None
    except (OSError, ValueError, IndexError):
        return None


class RunLock:
    """An exclusive lock on a run folder; use as a context manager or ``acquire()``/``release()``.

    :param run_dir: the run folder (it must exist).
    """

    def __init__(self, run_dir: str | Path):
        self.run_dir = Path(run_dir)
        self._fd: int | None = None

    @property
    def path(self) -> Path:
        return self.run_dir / LOCK_FILE

    @property
    def held(self) -> bool:
        return self._fd is not None

    def acquire(self) -> "RunLock":
        """Take the lock or raise :class:`RunLockedError` at once (never waits)."""
        if self._fd is not None:
            return self
        if fcntl is None:  # pragma: no cover - Windows
            return self
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, file_mode())
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            pid = read_holder(self.run_dir)
            holder = f"PID {pid}" if pid else "another process"
            raise RunLockedError(
                f"run folder {self.run_dir} is in use by a running trainer ({holder}); wait for it to end or stop it "
                f"(kill -INT {pid or 'PID'} saves a checkpoint), then --resume"
            ) from None
        except OSError as exc:
            os.close(fd)
            raise RunLockedError(f"cannot lock run folder {self.run_dir}: {exc.strerror}") from None
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        os.fsync(fd)
        self._fd = fd
        return self

    def release(self) -> None:
        if self._fd is None:
            return
        fd, self._fd = self._fd, None
        try:
            fcntl.flock(fd, fcntl.LOCK_UN)
        finally:
            os.close(fd)

    def moved_to(self, run_dir: str | Path) -> None:
        """The locked folder was renamed (created under a temporary name): follow it.

        The lock stays held: it belongs to the open file, which a rename does not touch.
        """
        self.run_dir = Path(run_dir)

    def __enter__(self) -> "RunLock":
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()


def is_locked(run_dir: str | Path) -> bool:
    """Whether a live process holds the folder's lock now (probes without keeping it)."""
    if fcntl is None or not (Path(run_dir) / LOCK_FILE).exists():  # pragma: no cover - Windows
        return False
    try:
        fd = os.open(Path(run_dir) / LOCK_FILE, os.O_RDONLY)
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(fd)
    return False
