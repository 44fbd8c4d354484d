"""Graceful shutdown on SIGINT (Ctrl-C) and SIGTERM, at any moment of a long command.

A command installs one :class:`GracefulShutdown` for its whole life and marks its phases:

* by default (setup, final evaluation: nothing half-done worth keeping) the first signal raises
  :class:`Interrupted` at once; the caller ends with what is already saved and one line;
* in :meth:`~GracefulShutdown.cooperative` phases (the training loop) the first signal only sets
  :attr:`~GracefulShutdown.requested`; the loop polls it, stops at the next step and saves;
* in :meth:`~GracefulShutdown.critical` phases (writing a checkpoint) signals wait: the save
  completes, then the enclosing phase reacts as above.

In a cooperative or critical phase a second signal says in one line that the save is under way
and waits for it; a third raises :class:`Interrupted` with ``forced=True`` at once (the atomic
writes of :mod:`agents.io` still leave every file whole: the old version or the new one). In a
default phase every signal raises (a first exception that Python swallowed, as it does inside
``os.fork()``'s hooks, cannot leave the command running).
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import threading
from typing import Iterator, TextIO

SIGNALS = (signal.SIGINT, signal.SIGTERM)
DEFAULT, COOPERATIVE, CRITICAL = "default", "cooperative", "critical"


class Interrupted(Exception):
    """A signal ended the command.

    :ivar signum: the first signal received.
    :ivar phase: the phase it arrived in (``"setup"``, ``"training"``, ``"final evaluation"``...).
    :ivar forced: a third signal cut the work short without waiting.
    """

    def __init__(self, signum: int, phase: str, forced: bool = False):
        self.signum = int(signum)
        self.phase = phase
        self.forced = forced
        super().__init__(f"{self.signal_name} during {phase}" + (" (forced)" if forced else ""))

    @property
    def signal_name(self) -> str:
        return signal.Signals(self.signum).name

    @property
    def exit_code(self) -> int:
        """The shell's convention: 128 + the signal number (130 for SIGINT, 143 for SIGTERM)."""
        return 128 + self.signum


class GracefulShutdown:
    """Turn SIGINT and SIGTERM into a controlled stop (see the module docstring).

    :param stream: where the one-line notices for repeated signals go (default stderr).
    :param phase: the name of the first phase.
    """

    def __init__(self, stream: TextIO | None = None, phase: str = "setup"):
        self.stream = stream
        self.phase = phase
        self.signum: int | None = None
        #: the phase the first signal arrived in
        self.signal_phase: str | None = None
        self.count = 0
        self._modes: list[str] = [DEFAULT]
        self._previous: dict[int, object] = {}

    # ---- installing
    def install(self) -> "GracefulShutdown":
        """Install the handlers (main thread only; elsewhere this is a no-op)."""
        if threading.current_thread() is not threading.main_thread() or self._previous:
            return self
        for sig in SIGNALS:
            self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def uninstall(self) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        self._previous.clear()

    def __enter__(self) -> "GracefulShutdown":
        return self.install()

    def __exit__(self, *exc) -> None:
        self.uninstall()

    # ---- state
    @property
    def requested(self) -> bool:
        """A signal asked the command to stop."""
        return self.signum is not None

    @property
    def mode(self) -> str:
        return self._modes[-1]

    def check(self) -> None:
        """Raise :class:`Interrupted` if a stop was requested (call at phase boundaries)."""
        if self.signum is not None:
            raise Interrupted(self.signum, self.signal_phase or self.phase)

    # ---- phases
    @contextlib.contextmanager
    def _enter(self, mode: str, phase: str | None) -> Iterator["GracefulShutdown"]:
        previous_phase = self.phase
        if phase is not None:
            self.phase = phase
        self._modes.append(mode)
        try:
            yield self
        finally:
            self._modes.pop()
            self.phase = previous_phase if phase is not None else self.phase
        if self.mode == DEFAULT and mode != DEFAULT:
            self.check()

    def cooperative(self, phase: str | None = None):
        """A phase that polls :attr:`requested` and stops by itself (a training loop)."""
        return self._enter(COOPERATIVE, phase)

    def critical(self, phase: str | None = None):
        """A phase that must not be cut (a save): signals wait for its end."""
        return self._enter(CRITICAL, phase)

    def interruptible(self, phase: str | None = None):
        """A phase a signal may end at once (evaluation); :class:`Interrupted` is raised in it."""
        return self._enter(DEFAULT, phase)

    def set_phase(self, phase: str) -> None:
        self.phase = phase

    # ---- the handler
    def _say(self, text: str) -> None:
        print(text, file=self.stream or sys.stderr, flush=True)

    def _handle(self, signum: int, frame) -> None:
        self.count += 1
        if self.signum is None:
            self.signum, self.signal_phase = signum, self.phase
        name = signal.Signals(signum).name
        if self.count >= 3:
            raise Interrupted(self.signum, self.phase, forced=True)
        if self.mode == DEFAULT:
            # nothing to wait for here; a repeated signal raises again, in case the first
            # exception was swallowed (Python ignores exceptions raised in some hooks)
            raise Interrupted(self.signum, self.signal_phase or self.phase)
        if self.count == 2:
            self._say(f"{name} again: already stopping ({self.phase}), saving what is done; a third signal exits without waiting")
            return
        # cooperative or critical: the work stops at its next safe point


def report_stop(exc: Interrupted, what: str, written: "list[str] | tuple[str, ...]" = ()) -> int:
    """The one line a command ends with after a signal (``SIGINT: calibration stopped; nothing
    was written``), on stderr; returns its exit status (130 or 143)."""
    kept = f"wrote {', '.join(map(str, written))}" if written else "nothing was written"
    print(f"{exc.signal_name}: {what} stopped; {kept}", file=sys.stderr, flush=True)
    return exc.exit_code


@contextlib.contextmanager
def starting() -> Iterator[None]:
    """Around a command's module imports (the first second or two of every script): a signal
    there ends the command with one line instead of Python's traceback; nothing is written yet.
    It exits with ``os._exit``: half-loaded compiled modules would complain at a normal exit."""
    try:
        with GracefulShutdown(phase="start"):
            yield
    except Interrupted as stopped:
        print(f"interrupted ({stopped.signal_name}) while starting: nothing was written", file=sys.stderr, flush=True)
        os._exit(stopped.exit_code)
