"""The market's dashboard: what ``render()`` draws for the ``rgb_array`` and ``human`` modes.

One frame shows an episode so far:

* **GMV by region** (left): each quarter's annualised, de-seasonalised run rate ($B a year),
  stacked by region, against the scenario's target run rate (dashed line, `target_run_rate`: $45B for ``global``);
* **spend by lever** (top right): what each lever has cost so far this episode ($B);
* **budget left** (bottom right): the budget remaining after each quarter ($B) out of the total.

The figure is a matplotlib ``Figure`` on the Agg canvas (no pyplot, no GUI backend, no global
state), made once per dashboard and reused: the axes, ticks and labels are drawn once as a
background, and each frame only redraws the bars, lines and labels that change (blitting), so a
frame costs a few milliseconds rather than a full redraw. :class:`Window` shows frames in a Tk
window where a display exists and does nothing where none does.
"""

from __future__ import annotations

import os
import sys
from typing import Any, Mapping

import numpy as np

from envs import market

_WIDTH, _HEIGHT, _DPI = 720, 400, 80  # pixels; a frame is (_HEIGHT, _WIDTH, 3) uint8
_REGION_COLOURS = ("#4C72B0", "#DD8452", "#55A868", "#C44E52", "#8172B3", "#937860", "#DA8BC3", "#8C8C8C")
_LEVER_COLOUR = "#4C72B0"
_BUDGET_COLOUR = "#55A868"


def ansi_line(info: Mapping[str, Any]) -> str:
    """The ``ansi`` render: one line of text for one market's last quarter (its ``info`` dict)."""
    regions = ", ".join(f"{r} {v:.2f}" for r, v in info["gmv_by_region"].items())
    return (
        f"Q{info['quarter']}: GMV ${info['gmv']:.2f}B (run rate ${info['gmv_run_rate']:.1f}B; {regions}), "
        f"cost ${info['cost']:.2f}B, budget left ${info['budget_remaining']:.2f}B"
    )


class EpisodeTrace:
    """One market's episode so far, as the dashboard needs it (one row per quarter, the start first).

    ``record`` takes the ``info`` dict of one market (the single env's, or one market's row of the
    vector env's, :meth:`envs.batch.MarketBatch.info_row`).
    """

    def __init__(self, region_names: tuple[str, ...], levers: tuple[str, ...] = market.LEVERS):
        self.region_names = tuple(region_names)
        self.levers = tuple(levers)
        self.clear()

    def clear(self) -> None:
        self.quarter: list[int] = []
        self.run_rate_by_region: list[np.ndarray] = []  # $B a year, sums to the run rate
        self.spend_by_lever = np.zeros(len(self.levers))  # $B so far this episode
        self.budget_remaining: list[float] = []  # $B
        self.gmv_run_rate: list[float] = []  # $B a year

    def __len__(self) -> int:
        return len(self.quarter)

    def record(self, info: Mapping[str, Any], *, start: bool = False) -> None:
        """Append one quarter from a single market's ``info``; ``start=True`` begins a new episode."""
        gmv = np.array([info["gmv_by_region"][r] for r in self.region_names], dtype=float)
        cost = np.array([info["cost_by_lever"][k] for k in self.levers], dtype=float)
        self._append(int(info["quarter"]), gmv, float(info["gmv_run_rate"]), cost, float(info["budget_remaining"]), start)

    def _append(self, quarter: int, gmv_by_region: np.ndarray, run_rate: float, cost_by_lever: np.ndarray,
                budget_remaining: float, start: bool) -> None:
        if start:
            self.clear()
        total = gmv_by_region.sum()
        # the regions' split of this quarter's GMV, scaled to the de-seasonalised annual run rate
        shares = gmv_by_region / total if total > 0 else np.full(len(gmv_by_region), 1.0 / max(len(gmv_by_region), 1))
        self.quarter.append(quarter)
        self.run_rate_by_region.append(shares * run_rate)
        self.gmv_run_rate.append(run_rate)
        self.spend_by_lever = self.spend_by_lever + cost_by_lever
        self.budget_remaining.append(budget_remaining)


class Dashboard:
    """Draws :class:`EpisodeTrace` frames for one scenario's :class:`~envs.market.Params`.

    ``frame(trace)`` returns an ``(H, W, 3)`` uint8 array (400 x 720). The axes are fixed per
    scenario (quarters 0..horizon; GMV up to 1.5 x the target; spend and budget up to the total
    budget); a value beyond them widens the axis and the background is drawn again.
    """

    def __init__(self, params: market.Params, title: str = ""):
        # matplotlib (~2 s to import) is loaded by the first dashboard, not by ``import envs``
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.collections import PolyCollection
        from matplotlib.figure import Figure
        from matplotlib.patches import Patch
        self.params = params
        self.region_names = tuple(params.region_names)
        self.levers = tuple(market.LEVERS)
        horizon = int(params.horizon)
        target = float(params.target_run_rate)
        budget = float(params.budget_total)
        self.figure = Figure(figsize=(_WIDTH / _DPI, _HEIGHT / _DPI), dpi=_DPI)
        self.canvas = FigureCanvasAgg(self.figure)
        grid = self.figure.add_gridspec(2, 2, width_ratios=(1.45, 1.0), left=0.07, right=0.985, bottom=0.11, top=0.86, wspace=0.42, hspace=0.55)
        self.ax_gmv = self.figure.add_subplot(grid[:, 0])
        self.ax_spend = self.figure.add_subplot(grid[0, 1])
        self.ax_budget = self.figure.add_subplot(grid[1, 1])
        self.figure.suptitle(f"Flywheel market{': ' + title if title else ''}", x=0.07, ha="left", fontsize=12, fontweight="bold")

        ax = self.ax_gmv
        ax.set_title("GMV run rate by region ($B a year)", loc="left", fontsize=10)
        ax.set_xlim(-0.6, horizon + 0.6)
        self._gmv_top = 1.5 * target
        ax.set_ylim(0.0, self._gmv_top)
        ax.set_xlabel("quarter (0 = start)")
        ax.axhline(target, color="black", linestyle="--", linewidth=1.2)
        ax.text(0.0, target, f" target ${target:g}B", va="bottom", ha="left", fontsize=8)
        ax.grid(axis="y", alpha=0.3)
        # every bar of the chart is one rectangle of one collection: one draw call per frame
        colours = [_REGION_COLOURS[j % len(_REGION_COLOURS)] for j in range(len(self.region_names))]
        self._quarters = np.arange(horizon + 1, dtype=float)
        self._gmv_bars = PolyCollection(_rectangles(np.tile(self._quarters, len(colours)), 0.0, 0.0, 0.4),
                                        facecolors=np.repeat(colours, horizon + 1), edgecolors="none", animated=True)
        ax.add_collection(self._gmv_bars)
        ax.legend(handles=[Patch(color=c, label=name) for c, name in zip(colours, self.region_names)], loc="upper left",
                  fontsize=8, ncol=len(self.region_names), frameon=False, bbox_to_anchor=(0.0, 0.93))

        ax = self.ax_spend
        ax.set_title("spend by lever so far ($B)", loc="left", fontsize=10)
        y = np.arange(len(self.levers))
        ax.set_yticks(y, [name.replace("_", " ") for name in self.levers], fontsize=7)
        self._spend_right = max(budget, 1e-9)
        ax.set_xlim(0.0, self._spend_right)
        ax.tick_params(axis="x", labelsize=7)
        ax.grid(axis="x", alpha=0.3)
        ax.set_ylim(len(self.levers) - 0.5, -0.5)
        self._lever_rows = y.astype(float)
        self._spend_bars = PolyCollection(_horizontal_rectangles(self._lever_rows, np.zeros(len(y)), 0.4),
                                          facecolors=_LEVER_COLOUR, edgecolors="none", animated=True)
        ax.add_collection(self._spend_bars)

        ax = self.ax_budget
        ax.set_title(f"budget left ($B of {budget:g})", loc="left", fontsize=10)
        ax.set_xlim(-0.3, horizon + 0.3)
        self._budget_top = max(budget, 1e-9) * 1.05
        ax.set_ylim(0.0, self._budget_top)
        ax.tick_params(labelsize=7)
        ax.grid(alpha=0.3)
        (self._budget_line,) = ax.plot([], [], color=_BUDGET_COLOUR, marker="o", markersize=3, linewidth=1.5, animated=True)

        self._status = self.figure.text(0.985, 0.925, "", ha="right", va="bottom", fontsize=9, animated=True, parse_math=False)
        self._background = None
        self._initial_limits = (self._gmv_top, self._spend_right, self.ax_budget.get_ylim())
        self._animated = [self._gmv_bars, self._spend_bars, self._budget_line, self._status]

    def _fit_axes(self, trace: EpisodeTrace) -> None:
        """Widen an axis (and redraw the background) when a value would leave it; a new episode
        starts again from the scenario's axes."""
        changed = False
        if len(trace) <= 1 and (self._gmv_top, self._spend_right, self.ax_budget.get_ylim()) != self._initial_limits:
            self._gmv_top, self._spend_right, budget_limits = self._initial_limits
            self.ax_gmv.set_ylim(0.0, self._gmv_top)
            self.ax_spend.set_xlim(0.0, self._spend_right)
            self.ax_budget.set_ylim(*budget_limits)
            changed = True
        if trace.gmv_run_rate and max(trace.gmv_run_rate) > self._gmv_top:
            self._gmv_top = 1.25 * max(trace.gmv_run_rate)
            self.ax_gmv.set_ylim(0.0, self._gmv_top)
            changed = True
        spend = float(trace.spend_by_lever.max(initial=0.0))
        if spend > self._spend_right:
            self._spend_right = 1.25 * spend
            self.ax_spend.set_xlim(0.0, self._spend_right)
            changed = True
        if trace.budget_remaining:
            low, high = min(trace.budget_remaining), max(trace.budget_remaining)
            bottom, top = self.ax_budget.get_ylim()
            if low < bottom or high > top:
                self.ax_budget.set_ylim(min(bottom, 1.1 * low), max(top, 1.05 * high))
                changed = True
        if changed:
            self._background = None

    def frame(self, trace: EpisodeTrace) -> np.ndarray:
        """The dashboard of ``trace`` as an ``(H, W, 3)`` uint8 RGB array."""
        self._fit_axes(trace)
        canvas = self.canvas
        if self._background is None:
            canvas.draw()  # animated artists are left out of a full draw
            self._background = canvas.copy_from_bbox(self.figure.bbox)
        else:
            canvas.restore_region(self._background)
        n = len(trace)
        quarters, regions = len(self._quarters), len(self.region_names)
        heights = np.zeros((quarters, regions))
        if n:
            heights[: min(n, quarters)] = np.array(trace.run_rate_by_region)[:quarters]
        top = np.cumsum(heights, axis=1)
        # region-major rectangles, as the colours were given
        self._gmv_bars.set_verts(_rectangles(np.tile(self._quarters, regions), (top - heights).T.ravel(), top.T.ravel(), 0.4))
        self._spend_bars.set_verts(_horizontal_rectangles(self._lever_rows, trace.spend_by_lever, 0.4))
        self._budget_line.set_data(np.arange(n), trace.budget_remaining)
        if n:
            self._status.set_text(f"Q{trace.quarter[-1]}  run rate ${trace.gmv_run_rate[-1]:.1f}B/yr  spent ${trace.spend_by_lever.sum():.2f}B")
        else:
            self._status.set_text("")
        for artist in self._animated:
            self.figure.draw_artist(artist)
        # Agg's buffer is RGBA; the frame is a copy, so later frames do not change it
        return np.array(canvas.buffer_rgba())[:, :, :3]


def _rectangles(x: np.ndarray, bottom, top, half_width: float) -> np.ndarray:
    """Vertical bars centred on ``x`` from ``bottom`` to ``top``, as ``(k, 4, 2)`` polygon vertices."""
    x = np.asarray(x, dtype=float)
    bottom = np.broadcast_to(np.asarray(bottom, dtype=float), x.shape)
    top = np.broadcast_to(np.asarray(top, dtype=float), x.shape)
    left, right = x - half_width, x + half_width
    return np.stack([np.stack([left, bottom], -1), np.stack([right, bottom], -1),
                     np.stack([right, top], -1), np.stack([left, top], -1)], axis=1)


def _horizontal_rectangles(y: np.ndarray, width: np.ndarray, half_height: float) -> np.ndarray:
    """Horizontal bars from 0 to ``width`` centred on ``y``, as ``(k, 4, 2)`` polygon vertices."""
    y = np.asarray(y, dtype=float)
    w = np.asarray(width, dtype=float)
    zero = np.zeros_like(y)
    low, high = y - half_height, y + half_height
    return np.stack([np.stack([zero, low], -1), np.stack([w, low], -1),
                     np.stack([w, high], -1), np.stack([zero, high], -1)], axis=1)


def display_available() -> bool:
    """Whether a window can be shown: a display on Linux and other X11/Wayland systems, always on
    macOS and Windows."""
    if sys.platform in ("darwin", "win32"):
        return True
    return bool(os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"))


class Window:
    """A Tk window showing dashboard frames (the ``human`` render mode).

    Where no display exists, or Tk cannot open one, :meth:`show` does nothing: gymnasium's checker
    renders every declared mode, and a headless machine must not fail it.
    """

    def __init__(self, title: str = "Flywheel"):
        self.title = title
        self._root = None
        self._label = None
        self._image = None
        self._failed = not display_available()

    def show(self, frame: np.ndarray) -> None:
        if self._failed:
            return
        try:
            if self._root is None:
                import tkinter  # stdlib, needed only where a window is shown

                self._tk = tkinter
                self._root = tkinter.Tk()
                self._root.title(self.title)
                self._label = tkinter.Label(self._root)
                self._label.pack()
            h, w, _ = frame.shape
            ppm = b"P6 %d %d 255\n" % (w, h) + np.ascontiguousarray(frame, dtype=np.uint8).tobytes()
            self._image = self._tk.PhotoImage(data=ppm, format="PPM")
            self._label.configure(image=self._image)
            self._root.update()
        except Exception:  # noqa: BLE001 - no usable display (Tk's TclError, a closed window): show nothing
            self._failed = True
            self.close()

    def close(self) -> None:
        if self._root is not None:
            try:
                self._root.destroy()
            except Exception:  # noqa: BLE001 - already gone
                pass
        self._root = self._label = self._image = None
