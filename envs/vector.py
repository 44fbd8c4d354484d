"""Native vectorised face of the market: a Gymnasium ``VectorEnv`` (the SB3 ``VecEnv`` is in :mod:`envs.sb3`).

Both hold one :class:`~envs.batch.MarketBatch` of N markets and step them with a single call of
the batched model: no per-env Python objects besides one random generator each.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
from gymnasium.error import ResetNeeded
from gymnasium.utils import seeding
from gymnasium.vector import AutoresetMode, VectorEnv
from gymnasium.vector.utils import batch_space

from envs.batch import InfoTable, MarketBatch, market_seeds
from envs.render import Dashboard, EpisodeTrace, Window, ansi_line
from envs.scenario import Scenario

RENDER_MODES = ("ansi", "rgb_array", "human")


class SocialCommerceVectorEnv(VectorEnv):
    """N markets of :class:`envs.SocialCommerceEnv` as one batched ``gymnasium.vector.VectorEnv``.

    It follows Gymnasium 1.x's vector contract and gives exactly what ``SyncVectorEnv`` over N
    single envs gives on the same seeds (observations, rewards, flags and ``info`` with its
    ``_key`` masks), in one compiled call per step:

    * ``reset(seed=s)`` seeds market i with ``s + i`` (a list gives one seed each; ``None`` keeps
      a market's generator going). ``reset(options={"reset_mask": mask})`` resets only the markets
      where the boolean ``mask`` is true; the others go on, and ``info`` holds only the reset
      markets (``info["_key"]`` masks say which).
    * ``autoreset_mode`` (``make_vec(..., vectorization_mode="vector_entry_point",
      autoreset_mode=...)``, also in ``metadata["autoreset_mode"]``):
      ``NEXT_STEP`` (the default): the step after a market's last one resets it (reward 0, not
      terminated; its action is ignored). ``SAME_STEP``: a market that ends is reset in the same
      step; ``info["final_obs"]`` (an object array, ``None`` for the others) and
      ``info["final_info"]`` hold its last observation and info, the returned observation and
      ``info`` are those of the new episode. ``DISABLED``: nothing resets by itself; reset ended
      markets with ``reset_mask`` (stepping one raises ``gymnasium.error.ResetNeeded``).
    * The horizon is a termination. ``max_episode_steps`` (not registered; if given) truncates
      like gymnasium's ``TimeLimit`` does for the single env.
    * ``render_mode`` (``ansi``, ``rgb_array``, ``human``): ``render()`` gives one frame per
      market (a tuple); in ``human`` mode market 0's dashboard is shown in a window where a
      display exists.

    ``info`` holds arrays of shape ``(num_envs,)`` (region/lever keys map to such arrays); the
    ``_key`` masks are one read-only boolean array shared by every key of a step.

    Threads: a batch of 128 markets or more (``envs.market.PARALLEL_MIN_MARKETS``) is stepped
    and reset in equal market ranges on ``FLYWHEEL_ENV_THREADS`` threads (default: the cores,
    at most 8); markets are independent, so every number is the same whatever the count. Set
    ``FLYWHEEL_ENV_THREADS=1`` where other processes already use the cores (sweep trials and the
    oracle's workers do).
    """

    metadata = {"autoreset_mode": AutoresetMode.NEXT_STEP, "render_modes": list(RENDER_MODES), "render_fps": 4}

    def __init__(
        self,
        num_envs: int = 1,
        scenario: "str | Path | Scenario" = "global",
        overrides: Mapping[str, Any] | None = None,
        render_mode: str | None = None,
        autoreset_mode: "AutoresetMode | str" = AutoresetMode.NEXT_STEP,
        max_episode_steps: int | None = None,
        ensemble: "str | Path | None" = None,
    ):
        if render_mode is not None and render_mode not in RENDER_MODES:
            raise ValueError(f"render_mode must be one of {list(RENDER_MODES)} or None, got {render_mode!r}")
        try:
            mode = AutoresetMode(autoreset_mode)
        except ValueError:
            raise ValueError(f"autoreset_mode must be one of {[m.value for m in AutoresetMode]}, got {autoreset_mode!r}") from None
        if max_episode_steps is not None and (isinstance(max_episode_steps, bool) or not isinstance(max_episode_steps, (int, np.integer)) or max_episode_steps < 1):
            raise ValueError(f"max_episode_steps must be a positive integer or None, got {max_episode_steps!r}")
        self._batch = MarketBatch(scenario, overrides, num_envs=num_envs, ensemble=ensemble)
        self.scenario = self._batch.scenario
        self.params = self._batch.params
        self.num_envs = self._batch.num_envs
        self.single_action_space = self._batch.single_action_space
        self.single_observation_space = self._batch.single_observation_space
        self.action_space = batch_space(self.single_action_space, self.num_envs)
        self.observation_space = batch_space(self.single_observation_space, self.num_envs)
        self.autoreset_mode = mode
        self.metadata = {**type(self).metadata, "autoreset_mode": mode}
        self.render_mode = render_mode
        self.max_episode_steps = None if max_episode_steps is None else int(max_episode_steps)
        n = self.num_envs
        self._rngs: list[np.random.Generator | None] = [None] * n
        self._ended = np.zeros(n, dtype=bool)  # terminated or truncated at the last step, not reset since
        self._last: InfoTable | None = None  # the info of each market's last reset or step (for render)
        draws = render_mode in ("rgb_array", "human")
        self._traces = [EpisodeTrace(self.params.region_names) for _ in range(n)] if draws else None
        self._dashboard: Dashboard | None = None
        self._window: Window | None = None

    # ------------------------------------------------------------------ reset
    def reset(self, *, seed: int | Sequence[int | None] | None = None, options: dict | None = None):
        n = self.num_envs
        seeds = market_seeds(seed, n)
        mask = np.ones(n, dtype=bool)
        if options is not None and "reset_mask" in options:
            mask = _check_reset_mask(options["reset_mask"], n)
        for i in np.flatnonzero(mask):
            # as gymnasium's Env.reset: a seed makes a new generator, None keeps the market's own
            if seeds[i] is not None or self._rngs[i] is None:
                self._rngs[i] = seeding.np_random(seeds[i])[0]
        self._batch.use_generators(_fill(self._rngs))
        if mask.all() or self._last is None:  # before the first reset every market starts
            obs, info = self._batch.reset()
        else:
            _, start = self._batch.reset_markets(mask)
            obs = self._batch.observe()  # the others' last observations, the reset ones' first
            info = self._merge(self._last, start, mask)
        self._ended[mask] = False
        self._last = info
        self._record(info, mask, new_episode=True)
        return obs, self._vector_info(info, mask)

    # ------------------------------------------------------------------ step
    def step(self, actions):
        n = self.num_envs
        mode = self.autoreset_mode
        actions = self._batch.check_action(actions)
        resetting = self._ended.copy() if mode is AutoresetMode.NEXT_STEP else np.zeros(n, dtype=bool)
        if mode is AutoresetMode.DISABLED and self._ended.any():
            ended = np.flatnonzero(self._ended).tolist()
            raise ResetNeeded(f"markets {ended} ended at the last step and autoreset_mode is DISABLED; call reset(options={{'reset_mask': mask}}) first")

        if resetting.all():  # every market ended at the last step (the usual case: one horizon)
            obs, info = self._reset_all_after_end()
            return obs, np.zeros(n), np.zeros(n, dtype=bool), np.zeros(n, dtype=bool), self._vector_info(info, np.ones(n, dtype=bool))

        if resetting.any():  # their actions are ignored: make sure a NaN there cannot stop the others
            actions = actions.copy()
            actions[resetting] = 0.0
        obs, reward, terminated, info = self._batch.step(actions)
        terminated = np.asarray(terminated, dtype=bool)  # a new array each step
        truncated = np.zeros(n, dtype=bool)
        if self.max_episode_steps is not None:
            truncated = self._batch.state.t >= self.max_episode_steps
        final = None
        if resetting.any():
            obs, info = self._reset_rows(obs, info, resetting)
            reward[resetting] = 0.0
            terminated[resetting] = False
            truncated[resetting] = False
        ended = terminated | truncated
        if mode is AutoresetMode.SAME_STEP and ended.any():
            final = (obs.copy(), info, ended)
            obs, info = self._reset_rows(obs, info, ended)
            self._ended[:] = False
        else:
            self._ended = ended
        self._last = info
        everyone = np.ones(n, dtype=bool)
        self._record(info, everyone, new_episode=resetting | (ended if final is not None else np.zeros(n, dtype=bool)))
        out = self._vector_info(info, everyone)
        if final is not None:
            final_obs, final_table, mask = final
            out = {
                "final_obs": _object_rows(final_obs, mask),
                "_final_obs": mask.copy(),
                "final_info": self._vector_info(final_table, mask),
                "_final_info": mask.copy(),
                **out,
            }
        return obs, reward, terminated, truncated, out  # obs is this step's own array, kept nowhere else

    def _reset_all_after_end(self) -> tuple[np.ndarray, InfoTable]:
        obs, info = self._batch.reset()
        self._ended[:] = False
        self._last = info
        self._record(info, np.ones(self.num_envs, dtype=bool), new_episode=True)
        return obs, info

    def _reset_rows(self, obs: np.ndarray, info: InfoTable, mask: np.ndarray) -> tuple[np.ndarray, InfoTable]:
        """``obs`` and ``info`` with the rows ``mask`` replaced by a new episode's start."""
        rows, start = self._batch.reset_markets(mask)
        obs = obs.copy()
        obs[mask] = rows
        return obs, self._merge(info, start, mask)

    @staticmethod
    def _merge(info: InfoTable | None, rows: InfoTable, mask: np.ndarray) -> InfoTable:
        if info is None:
            n = mask.shape[0]
            info = InfoTable(np.zeros((n, rows.table.shape[1])), np.zeros((n, *rows.intensity.shape[1:])),
                             np.zeros((n, *rows.spend.shape[1:])))
        table, intensity, spend = info.table.copy(), info.intensity.copy(), info.spend.copy()
        table[mask], intensity[mask], spend[mask] = rows.table, rows.intensity, rows.spend
        return InfoTable(table, intensity, spend)

    # ------------------------------------------------------------------ info
    def _vector_info(self, info: InfoTable, present: np.ndarray) -> dict:
        """``info`` as ``SyncVectorEnv`` builds it: arrays over markets, zero where a market has no
        entry this call, and a ``_key`` mask beside every key (nested dicts too)."""
        mask = present.copy()  # one array for every ``_key`` (a copy per key costs more than the rest of a 1024-market info)
        mask.flags.writeable = False
        if present.all():  # the usual step: one generated dict display
            return self._batch.info_dict_masked(info, mask)
        return _masked(self._batch.info_dict(info), present, mask)

    # ------------------------------------------------------------------ render
    def _record(self, info: InfoTable, rows: np.ndarray, new_episode) -> None:
        if self._traces is None:
            return
        fresh = np.broadcast_to(np.asarray(new_episode, dtype=bool), rows.shape)
        for i in np.flatnonzero(rows):
            self._traces[i].record(self._batch.info_row(info, int(i)), start=bool(fresh[i]))
        if self.render_mode == "human":
            self.render()

    def render(self) -> tuple | None:
        """One frame per market (a tuple, as ``SyncVectorEnv``): ``ansi`` lines or ``rgb_array``
        dashboards; ``human`` shows market 0's dashboard in a window (where a display exists) and
        returns ``None``."""
        if self.render_mode is None or self._last is None:
            return None
        if self.render_mode == "ansi":
            return tuple(ansi_line(self._batch.info_row(self._last, i)) for i in range(self.num_envs))
        if self._dashboard is None:
            self._dashboard = Dashboard(self.params, title=self.scenario.name)
        if self.render_mode == "rgb_array":
            return tuple(self._dashboard.frame(trace) for trace in self._traces)
        if self._window is None:
            self._window = Window(f"Flywheel: {self.scenario.name}")
        self._window.show(self._dashboard.frame(self._traces[0]))
        return None

    def close_extras(self, **kwargs: Any) -> None:
        if self._window is not None:
            self._window.close()
            self._window = None

    @property
    def state(self):
        return self._batch.state


def _check_reset_mask(mask: Any, n: int) -> np.ndarray:
    """``options["reset_mask"]`` checked as ``SyncVectorEnv`` checks it."""
    if not isinstance(mask, np.ndarray):
        raise TypeError(f"`options['reset_mask']` must be a numpy array, got {type(mask)}")
    if mask.shape != (n,):
        raise ValueError(f"`options['reset_mask']` must have shape `({n},)`, got {mask.shape}")
    if mask.dtype != np.bool_:
        raise TypeError(f"`options['reset_mask']` must have `dtype=np.bool_`, got {mask.dtype}")
    if not mask.any():
        raise ValueError(f"`options['reset_mask']` must contain a boolean array with at least one True value, got reset_mask={mask}")
    return mask.copy()


def _fill(rngs: list) -> list[np.random.Generator]:
    """Generators for markets never seeded yet (they start from fresh entropy when first reset)."""
    for i, g in enumerate(rngs):
        if g is None:
            rngs[i] = seeding.np_random(None)[0]
    return rngs


def _masked(info: dict, present: np.ndarray, mask: np.ndarray) -> dict:
    """``info`` of a call where only the markets ``present`` have one, as SyncVectorEnv masks it:
    the others' entries blank, every ``_key`` mask the one read-only array ``mask``."""
    out: dict = {}
    for key, value in info.items():
        if isinstance(value, dict):
            out[key] = _masked(value, present, mask)
        else:
            value = np.array(value)
            value[~present] = None if value.dtype == object else 0  # SyncVectorEnv's blank for each dtype
            out[key] = value
        out[f"_{key}"] = mask
    return out


def _object_rows(obs: np.ndarray, mask: np.ndarray) -> np.ndarray:
    rows = np.full(obs.shape[0], None, dtype=object)
    for i in np.flatnonzero(mask):
        rows[i] = obs[i].copy()
    return rows
