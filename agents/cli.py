"""What the command-line scripts share."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


class OneLineParser(argparse.ArgumentParser):
    """An ``ArgumentParser`` whose usage errors are one line on stderr and exit status 2."""

    def error(self, message: str) -> None:  # noqa: D401 - argparse API
        print(f"error: {message}", file=sys.stderr)
        sys.exit(2)


def existing_folder(path: "str | Path") -> Path:
    """``path`` if its folder exists; an output file is never written into a folder the user
    did not make (a typo in a path is an error, not a new tree)."""
    path = Path(path)
    directory = path.parent if str(path.parent) else Path(".")
    if not directory.is_dir():
        raise FileNotFoundError(f"directory does not exist: {directory}")
    return path
