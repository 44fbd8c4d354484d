"""The ``flywheel`` console command: one entry point, one subcommand per script.

    flywheel train --timesteps 50000          # = python scripts/train.py --timesteps 50000
    flywheel evaluate RUN_DIR --episodes 20   # = python scripts/evaluate.py RUN_DIR --episodes 20
    flywheel --help                           # the commands and what each does

Each subcommand is a script of ``scripts/`` run with the same flags (``flywheel NAME ARGS`` runs
``scripts/NAME.py ARGS``; ``constraint-benchmark`` is ``scripts/constraint_benchmark.py``), so a
flag is defined once, in its script, and both spellings behave the same: the same output, the
same one-line ``error: ...`` and exit status 2 on bad input. The scripts are found beside this
package (the source tree that ``make`` installs in editable mode); a script added there is a
command with no change here.
"""

from __future__ import annotations

import ast
import importlib.util
import sys
from pathlib import Path
from typing import Callable, Sequence

SCRIPTS_DIR = Path(__file__).resolve().parent.parent / "scripts"
PROG = "flywheel"


def commands() -> dict[str, Path]:
    """Subcommand name -> script: every ``scripts/*.py`` that defines ``main`` (``_`` spelt ``-``)."""
    found = {}
    for path in sorted(SCRIPTS_DIR.glob("*.py")):
        if path.name.startswith("_"):
            continue
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        if any(isinstance(node, ast.FunctionDef) and node.name == "main" for node in tree.body):
            found[path.stem.replace("_", "-")] = path
    return found


def summary(path: Path) -> str:
    """The first line of a script's docstring (read without running it)."""
    doc = ast.get_docstring(ast.parse(path.read_text(encoding="utf-8"), filename=str(path))) or ""
    return doc.strip().splitlines()[0] if doc.strip() else ""


def usage(found: dict[str, Path]) -> str:
    width = max(map(len, found), default=0)
    lines = [f"usage: {PROG} COMMAND [ARGS...]   ({PROG} COMMAND --help for a command's flags)", "", "commands:"]
    lines += [f"  {name.ljust(width)}  {summary(path)}" for name, path in found.items()]
    lines += ["", f"Each command is scripts/NAME.py with the same flags: '{PROG} train -n 20000' = 'python scripts/train.py -n 20000'."]
    return "\n".join(lines)


def load_main(name: str, path: Path) -> Callable[[list[str]], int]:
    """The script's ``main``: the script is loaded as a module (its ``__main__`` block does not run)."""
    module_name = f"flywheel_command_{name.replace('-', '_')}"
    spec = importlib.util.spec_from_file_location(module_name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module  # so that what the script defines can be pickled by name
    spec.loader.exec_module(module)
    return module.main


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    found = commands()
    if not argv or argv[0] in ("-h", "--help"):
        print(usage(found))
        return 0 if argv else 2
    name, rest = argv[0], argv[1:]
    if name not in found:
        print(f"error: unknown command {name!r}; commands: {', '.join(found)} (see {PROG} --help)", file=sys.stderr)
        return 2
    sys.argv = [f"{PROG} {name}", *rest]  # argparse names the program from argv[0]: 'usage: flywheel train ...'
    return int(load_main(name, found[name])(rest) or 0)


if __name__ == "__main__":
    sys.exit(main())
