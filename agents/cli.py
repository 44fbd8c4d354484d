"""What the command-line scripts share."""

from __future__ import annotations

import argparse
import sys
from typing import Iterable


def one_line_error(problem: object) -> int:
    """Print ``error: <problem>`` on stderr as one line (whitespace and newlines folded) and
    return the exit status of a user's mistake, 2: ``return one_line_error(exc)``."""
    print(f"error: {' '.join(str(problem).split())}", file=sys.stderr)
    return 2


class OneLineParser(argparse.ArgumentParser):
    """An ``ArgumentParser`` whose usage errors are one line on stderr and exit status 2."""

    def error(self, message: str) -> None:  # noqa: D401 - argparse API
        sys.exit(one_line_error(message))



def only_with(parser: argparse.ArgumentParser, args: argparse.Namespace, flags: Iterable[tuple[str, str]], option: str) -> str | None:
    """``"--a, --b go only with OPTION"`` when any of ``flags`` (``(flag, dest)`` pairs) differs
    from its default, for a command run without ``option`` (they would do nothing); else ``None``."""
    given = [flag for flag, dest in flags if getattr(args, dest) != parser.get_default(dest)]
    if not given:
        return None
    return f"{', '.join(given)} {'goes' if len(given) == 1 else 'go'} only with {option}"
