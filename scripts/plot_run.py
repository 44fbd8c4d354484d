"""Plot a run's training curves (read from its TensorBoard events) to a PNG.

    python scripts/plot_run.py RUN_DIR --out docs/training.png
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from agents.plots import plot_training  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run_dir", type=Path, help="a run folder made by scripts/train.py")
    parser.add_argument("--out", type=Path, required=True, help="PNG file to write")
    args = parser.parse_args(argv)
    try:
        summary = args.run_dir / "summary.json"
        playbooks = json.loads(summary.read_text()).get("eval_playbooks_gmv_mean") if summary.exists() else None
        path = plot_training(args.run_dir, args.out, playbooks)
    except (OSError, ValueError) as exc:
        print(f"error: {' '.join(str(exc).split())}", file=sys.stderr)
        return 2
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
