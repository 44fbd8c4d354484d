"""The batch of markets behind every environment face.

:class:`MarketBatch` owns the scenario's :class:`~envs.market.Params`, the batched
:class:`~envs.market.State` and one random generator per market; it validates actions, calls
:func:`envs.market.env_step` (the model's step, observation and info in one compiled pass) and
gives each face its ``info``. :class:`~envs.SocialCommerceEnv`
is a batch of one, :class:`~envs.SocialCommerceVectorEnv` and :class:`~envs.sb3.SB3VecEnv`
batches of N, so all run exactly the same code.

``info`` is computed once per step as a table (:class:`InfoTable`: one row per market, one
column per scalar entry of the contract, :func:`envs.market.info_layout`); each face reads it the way
it needs: arrays over markets (the vector env) or one dict of Python scalars per market (the
single env, the SB3 adapter).
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import fields
from pathlib import Path
from typing import Any, Mapping, NamedTuple, Sequence

import numpy as np
from gymnasium import spaces
from gymnasium.utils import seeding

from envs import market
from envs.ensemble import Ensemble, load_ensemble
from envs.scenario import Scenario, load_scenario

class InfoTable(NamedTuple):
    """One step's ``info`` for every market: ``table`` ``(n, entries)``, ``intensity`` and
    ``spend`` ``(n, R, L)`` (applied intensities and what each lever cost in each region)."""

    table: np.ndarray
    intensity: np.ndarray
    spend: np.ndarray


_PARAMS_CACHE: "OrderedDict[int, tuple[Scenario, market.Params]]" = OrderedDict()
_PARAMS_CACHE_SIZE = 16


def resolve(scenario: "str | Path | Scenario" = "global", overrides: Mapping[str, Any] | None = None) -> tuple[Scenario, market.Params]:
    """The validated scenario and its :class:`~envs.market.Params`, each made once.

    A name or path is loaded and validated (:func:`envs.scenario.load_scenario`); so is a
    :class:`Scenario` with ``overrides``. A :class:`Scenario` without overrides is used as it is:
    it was validated when it was made and cannot change (the model is frozen). Its ``Params``
    are built once per process and shared, read-only, by every environment made from that
    object, so a trainer's N single envs (or a batch and its warm-up) cost one build, not N.
    """
    if not isinstance(scenario, Scenario) or overrides:
        scenario = load_scenario(scenario, overrides)
    key = id(scenario)
    hit = _PARAMS_CACHE.get(key)
    if hit is not None and hit[0] is scenario:
        _PARAMS_CACHE.move_to_end(key)
        return hit
    resolved = (scenario, scenario.to_params())
    _PARAMS_CACHE[key] = resolved  # holds the scenario, so its id cannot be reused while cached
    if len(_PARAMS_CACHE) > _PARAMS_CACHE_SIZE:
        _PARAMS_CACHE.popitem(last=False)
    return resolved


def market_seeds(seed: "int | Sequence[int | None] | None", n: int) -> list[int | None]:
    """The seeds of ``n`` markets: ``seed + i`` for an int (as ``SyncVectorEnv`` does), the given
    list (one per market), or ``None`` for each (fresh entropy)."""
    if seed is None:
        return [None] * n
    if isinstance(seed, (int, np.integer)):
        return [int(seed) + i for i in range(n)]
    seeds = list(seed)
    if len(seeds) != n:
        raise ValueError(f"got {len(seeds)} seeds for {n} environments")
    return seeds


class MarketBatch:
    """N markets of one scenario, stepped together (all share the same quarter index).

    ``scenario``: a built-in name, a YAML path or a :class:`Scenario` (see :func:`resolve`; with
    no ``overrides`` a ``Scenario`` is neither copied nor validated again).

    ``ensemble``: an ensemble file (a name in ``configs/ensembles``, a path) or an
    :class:`~envs.ensemble.Ensemble`. Its parameter sets are applied to the scenario and packed
    into the one model; at every reset each market draws one set, uniformly, from its own
    generator right after the episode's other random numbers (the same seed, the same set; the
    demand shocks and suspensions are those of the nominal env with that seed).
    """

    def __init__(self, scenario: "str | Path | Scenario" = "global", overrides: Mapping[str, Any] | None = None, num_envs: int = 1,
                 ensemble: "str | Path | Ensemble | None" = None):
        if not isinstance(num_envs, (int, np.integer)) or isinstance(num_envs, bool) or num_envs < 1:
            raise ValueError(f"num_envs must be a positive integer, got {num_envs!r}")
        self.scenario, self.params = resolve(scenario, overrides)
        self.ensemble = None if ensemble is None else (ensemble if isinstance(ensemble, Ensemble) else load_ensemble(ensemble))
        if self.ensemble is not None:
            self.params = self.ensemble.params(self.scenario)
        self.num_envs = int(num_envs)
        p = self.params
        self.single_action_space = spaces.Box(-1.0, 1.0, (p.action_dim,), np.float32)
        self.single_observation_space = spaces.Box(market.OBS_LOW, market.OBS_HIGH, (p.obs_dim,), np.float32)
        self._rngs: list[np.random.Generator] | None = None
        self._sources: market.RandomSources | None = None
        self.state: market.State | None = None
        self._layout = market.info_layout(p.region_names)
        rows, self._groups = 0, []
        for key, sub, kind in self._layout:
            self._groups.append((key, sub, rows, kind))
            rows += 1 if sub is None else len(sub)
        self._rows = rows
        self._action_shape = (self.num_envs, p.action_dim)
        self._row = _row_builder(self._groups)
        self._columns = _columns_builder(self._groups)
        self._start: tuple[np.ndarray, np.ndarray] | None = None  # observation and info row of each parameter set at reset
        _warm_up(self)

    def __getstate__(self) -> dict:
        # the C interface of the generators and the generated builders are rebuilt on load
        state = self.__dict__.copy()
        state["_sources"] = state["_row"] = state["_columns"] = None
        return state

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        self._row = _row_builder(self._groups)
        self._columns = _columns_builder(self._groups)
        if self._rngs is not None:
            self._sources = market.random_sources(self._rngs)

    # ------------------------------------------------------------------ reset
    def seed_generators(self, seeds: list[int | None]) -> None:
        """Seed market i's generator with ``seeds[i]`` (gymnasium's ``np_random``)."""
        self.use_generators([seeding.np_random(s)[0] for s in seeds])

    def use_generators(self, rngs: list[np.random.Generator]) -> None:
        """Draw market i's episodes from ``rngs[i]`` from the next reset on."""
        if len(rngs) != self.num_envs:
            raise ValueError(f"got {len(rngs)} generators for {self.num_envs} markets")
        self._rngs = list(rngs)
        self._sources = market.random_sources(self._rngs)

    @property
    def rngs(self) -> list[np.random.Generator] | None:
        """Market i's generator (``None`` before the first seeding; set by :meth:`use_generators`)."""
        return self._rngs

    def reset(self) -> tuple[np.ndarray, InfoTable]:
        """Start a new episode in every market: observation and info table.

        The start state is the calibrated one whatever the seed (only the episode's random
        numbers differ), so its observation and info are computed once (per parameter set) and repeated.
        """
        if self.rngs is None:
            self.seed_generators([None] * self.num_envs)
        self.state, sets = self._fresh(np.arange(self.num_envs))
        return self._start_rows(sets)

    def reset_markets(self, mask: np.ndarray) -> tuple[np.ndarray, InfoTable]:
        """Start a new episode in the markets where ``mask`` (bool, ``(num_envs,)``) is true; the
        others go on where they are. Returns the observation and info table of the reset markets
        only (in market order). Each reset market draws its episode from its own generator, as
        :meth:`reset` does, so resetting market i alone gives what a reset of all gives market i.
        Before the first :meth:`reset` every market starts.
        """
        index = np.flatnonzero(mask)
        if self.state is None or index.size == self.num_envs:
            obs, info = self.reset()
            return obs[index], InfoTable(*(x[index] for x in info))
        fresh, sets = self._fresh(index)
        for f in fields(fresh):
            getattr(self.state, f.name)[index] = getattr(fresh, f.name)
        return self._start_rows(sets)

    def _fresh(self, index: np.ndarray) -> tuple[market.State, np.ndarray]:
        """New episodes of the markets ``index``: their start state and parameter sets. Each
        market draws its episode's numbers from its own generator and then, with an ensemble, its
        parameter set (uniformly), so the set is part of the episode's random numbers."""
        everyone = index.size == self.num_envs
        rngs = self._rngs if everyone else [self._rngs[i] for i in index]
        numbers = market.draw_episodes(self.params, self._sources if everyone else market.random_sources(rngs))
        sets = np.zeros(index.size, dtype=np.int64)
        if self.ensemble is not None:
            sets = np.array([int(g.integers(len(self.ensemble))) for g in rngs], dtype=np.int64)
        return market.start_from(self.params, *numbers, sets), sets

    def _start_rows(self, sets: np.ndarray) -> tuple[np.ndarray, InfoTable]:
        """Observation and info table at reset of markets playing parameter sets ``sets``."""
        if self._start is None:
            n_sets = 1 if self.ensemble is None else len(self.ensemble)
            u = np.full((n_sets, 3, self.params.horizon, self.params.n_regions), 0.5)  # the start does not depend on them
            self._start = self._start_observation_and_info(market.start_state(self.params, u, np.arange(n_sets)))
        obs, rows = self._start
        zeros = np.zeros((sets.size, self.params.n_regions, market.N_LEVERS))
        return obs[sets], InfoTable(rows[sets], zeros, zeros.copy())

    def _start_observation_and_info(self, start: market.State) -> tuple[np.ndarray, np.ndarray]:
        """Observation ``(n, obs_dim)`` and info table ``(n, entries)`` of start states (one market
        per parameter set): no GMV, cost or revenue yet; last quarter's run rate."""
        p = self.params
        n = start.n
        per_market = np.zeros((n, market.N_MARKET_OUT))
        per_region = np.zeros((n, market.N_REGION_OUT, p.n_regions))
        per_market[:, market.M_RUN_RATE] = 4.0 * start.gmv_region.sum(1) / p.season_at(start.t - 1)
        per_market[:, market.M_CAP] = market.quarter_cap(p, start)
        per_market[:, market.M_REMAINING] = start.budget_remaining
        per_market[:, market.M_SPENT] = start.spent
        per_region[:, market.P_GMV] = start.gmv_region
        per_region[:, market.P_ORDERS] = start.orders
        per_region[:, market.P_SHARE] = start.share
        table = np.empty((n, self._rows))
        market.fill_info(
            p.packed[0], per_market, per_region, np.zeros((n, p.n_regions, market.N_LEVERS)),
            np.zeros(n, dtype=np.int64), start.regional, start.t, start.param_set, table,
        )
        return market.observe(p, start), table

    def observe(self) -> np.ndarray:
        """Every market's observation of its current state (what its last step or reset returned)."""
        return market.observe(self.params, self.state)

    # ------------------------------------------------------------------ step
    def check_action(self, action: Any) -> np.ndarray:
        """``action`` as a float array of shape ``(num_envs, R*L)``, or a one-line ``ValueError``."""
        a = np.asarray(action)
        if a.shape != self._action_shape:
            raise ValueError(f"action has shape {a.shape}; expected {self._action_shape} (regions x levers, region-major)")
        if a.dtype != np.float32 and a.dtype != np.float64:
            if a.dtype.kind not in "fiub":
                raise ValueError(f"action has dtype {a.dtype}; expected numbers in [-1, 1]")
            a = a.astype(np.float64)
        return a

    def step(self, action: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray, InfoTable]:
        """Advance every market one quarter: observation, reward ($B: the objective's value, plus the
        terminal value at the last step), terminated, info table.

        Actions are clipped to [-1, 1] (and counted); NaN or infinite entries raise ``ValueError``
        and leave the state as it was.
        """
        if self.state is None:
            raise RuntimeError("call reset() before step()")
        a = self.check_action(action)
        self.state, obs, reward, table, u, spend = market.env_step(self.params, self.state, a)
        return obs, reward, self.state.t >= self.params.horizon, InfoTable(table, u, spend)

    # ------------------------------------------------------------------ info faces
    def info_dict(self, info: InfoTable) -> dict:
        """The ``info`` of the environment contract (:data:`envs.market.INFO_TABLE`) with arrays over markets (region/lever keys nest)."""
        table = info.table
        out: dict = {}
        for key, sub, row, kind in self._groups:
            if sub is None:
                out[key] = _column(table[:, row], kind)
            else:
                out[key] = {name: _column(table[:, row + k], kind) for k, name in enumerate(sub)}
        out["lever_intensity"] = info.intensity
        out["spend_by_region_lever"] = info.spend
        return out

    def info_dict_masked(self, info: InfoTable, mask: np.ndarray) -> dict:
        """:meth:`info_dict` of a step where every market has an ``info``, with SyncVectorEnv's
        ``_key`` masks: every one is ``mask``."""
        return self._columns(info.table, info.intensity, info.spend, mask)

    def info_row(self, info: InfoTable, i: int) -> dict:
        """Market ``i``'s ``info`` as Python scalars (region/lever keys nest)."""
        return self._row(info.table[i].tolist(), info.intensity[i].copy(), info.spend[i].copy())

    def info_rows(self, info: InfoTable) -> list[dict]:
        """Every market's ``info`` as Python scalars, one dict each."""
        return [self._row(values, info.intensity[i].copy(), info.spend[i].copy()) for i, values in enumerate(info.table.tolist())]



_warmed_up = False


def _warm_up(batch: MarketBatch) -> None:
    """Load (or, on a fresh checkout, compile: ~25 s once) the kernels of every face, once per process.

    numba compiles on first call; doing it here keeps that cost out of the first ``reset`` and
    ``step``, and so out of any timing of them.
    """
    global _warmed_up
    if _warmed_up:
        return
    _warmed_up = True
    one = MarketBatch(batch.scenario, num_envs=1)  # the same Scenario: its Params are reused
    one.seed_generators([0])
    for dtype in (np.float32, np.float64):
        one.reset()
        one.step(np.zeros((1, batch.params.action_dim), dtype=dtype))
    market.step(one.params, one.state, np.zeros((1, one.params.n_regions, market.N_LEVERS)))
    market.lever_costs(one.params, one.state, np.zeros((1, one.params.n_regions, market.N_LEVERS)))
    market.observe(one.params, one.state)


def _dict_display(groups: list[tuple[str, tuple[str, ...] | None, int, type]], value, masks: bool) -> str:
    """The entries of an ``info`` dict display over the layout ``groups`` (region/lever keys
    nest), each entry ``value(row, kind)``; with ``masks`` every key is followed by its ``_key``
    entry ``m`` (SyncVectorEnv's layout), the two array entries last."""

    def entry(key: str, text: str) -> str:
        return f"{key!r}: {text}" + (f", {'_' + key!r}: m" if masks else "")

    items = []
    for key, sub, row, kind in groups:
        if sub is None:
            items.append(entry(key, value(row, kind)))
        else:
            items.append(entry(key, "{" + ", ".join(entry(name, value(row + k, kind)) for k, name in enumerate(sub)) + "}"))
    items += [entry("lever_intensity", "intensity"), entry("spend_by_region_lever", "spend")]
    return "{" + ", ".join(items) + "}"


def _row_builder(groups: list[tuple[str, tuple[str, ...] | None, int, type]]):
    """A function ``(values, intensity, spend) -> info dict`` for one market's column of the table.

    Written as one dict display (generated once per layout, like ``collections.namedtuple``
    does), the fastest way CPython builds the ~45 entries of a single env's ``info``.
    """

    def scalar(row: int, kind: type) -> str:
        if kind is str:
            return f"label(v[{row}])"
        return f"v[{row}]" if kind is float else f"{kind.__name__}(v[{row}])"

    source = "lambda v, intensity, spend: " + _dict_display(groups, scalar, masks=False)
    return eval(source, {"bool": bool, "int": int, "label": market.serial_label})  # noqa: S307 - keys are repr()-quoted literals


def _columns_builder(groups: list[tuple[str, tuple[str, ...] | None, int, type]]):
    """A function ``(table, intensity, spend, mask) -> info dict`` of arrays over markets, each
    key beside its ``_key`` mask ``mask`` (nested keys too), as SyncVectorEnv builds the ``info``
    of a step where every market has one: :func:`_dict_display` over columns, as
    :func:`_row_builder` over one row, instead of a loop over ~50 keys per step."""

    def column(row: int, kind: type) -> str:
        if kind is float:
            return f"t[:, {row}]"
        if kind is bool:
            return f"t[:, {row}] > 0.0"
        return f"column(t[:, {row}], {kind.__name__})"

    source = "lambda t, intensity, spend, m: " + _dict_display(groups, column, masks=True)
    return eval(source, {"column": _column, "int": int, "str": str})  # noqa: S307 - keys are repr()-quoted literals


def _column(values: np.ndarray, kind: type) -> np.ndarray:
    if kind is float:
        return values
    if kind is bool:
        return values > 0.0
    if kind is str:
        first = values[0]
        if (values == first).all():  # the usual case: every market in the same quarter
            labels = np.empty(values.shape, dtype=object)
            labels.fill(market.serial_label(first))
            return labels
        serial = values.astype(np.int64)
        first, last = int(serial.min()), int(serial.max())
        labels = np.array([market.serial_label(s) for s in range(first, last + 1)], dtype=object)  # as SyncVectorEnv stacks str
        return labels[serial - first]
    return values.astype(np.int64)
