"""Plot a run's training curves (read from its TensorBoard events) to a figure (PNG, PDF, SVG...).

    python scripts/plot_run.py RUN_DIR --out docs/training.png
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from agents.shutdown import starting  # noqa: E402

with starting():  # a signal while the modules load: one line, nothing written yet
    from agents.cli import one_line_error  # noqa: E402
    from agents.io import PLOT_FORMATS, plan_file, set_writer  # noqa: E402
    from agents.plots import plot_training  # noqa: E402
    from agents.shutdown import GracefulShutdown, Interrupted, report_stop  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    set_writer("plot_run")  # --force replaces only what this command wrote
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run_dir", type=Path, help="a run folder made by scripts/train.py")
    parser.add_argument("--out", type=Path, required=True, help="figure to write, must not exist (.png, .pdf, .svg, .eps, .ps)")
    parser.add_argument("--force", action="store_true", help="let --out replace an earlier figure of this command (never another file)")
    args = parser.parse_args(argv)
    with GracefulShutdown(phase="plotting") as shutdown:
        try:
            output = plan_file(args.out, option="--out", force=args.force, suffixes=PLOT_FORMATS)
            summary = args.run_dir / "summary.json"
            playbooks = json.loads(summary.read_text()).get("eval_playbooks_gmv_mean") if summary.exists() else None
            path = plot_training(args.run_dir, output, playbooks)  # the figure appears whole or not at all (agents.io)
        except Interrupted as exc:
            return report_stop(exc, "plot")
        except (OSError, ValueError) as exc:
            return one_line_error(exc)
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
