"""What the command-line scripts share."""

from __future__ import annotations

import argparse
import sys


def one_line_error(problem: object) -> int:
    """Print ``error: <problem>`` on stderr as one line (whitespace and newlines folded) and
    return the exit status of a user's mistake, 2: ``return one_line_error(exc)``."""
    print(f"error: {' '.join(str(problem).split())}", file=sys.stderr)
    return 2


class OneLineParser(argparse.ArgumentParser):
    """An ``ArgumentParser`` whose usage errors are one line on stderr and exit status 2."""

    def error(self, message: str) -> None:  # noqa: D401 - argparse API
        sys.exit(one_line_error(message))

